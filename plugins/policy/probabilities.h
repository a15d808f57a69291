/*
 * probabilities.h - how the bundled ABI 2 policies report the probability
 * of every arm from choose() (policy ABI 2.2, mab_policy_input.probabilities)
 * for the core's sample-ratio check.
 */
#ifndef MAB_POLICY_PROBABILITIES_H
#define MAB_POLICY_PROBABILITIES_H

#include <stddef.h>

#include "mab/policy.h"

/* The array to fill, or NULL: an older core (struct_size too small) or a
   core that does not ask. */
static inline double *policy_probabilities_out(const mab_policy_input *in)
{
    if (in->struct_size < offsetof(mab_policy_input, probabilities) + sizeof(double *))
        return NULL;
    return in->probabilities;
}

/* A choice uniform among the arms whose value is at least top - tolerance
   (n_ties of them): 1 / n_ties on those, 0 elsewhere, as mab_argmax draws. */
static inline void policy_probabilities_ties(const mab_policy_input *in, const double *values,
                                             double top, double tolerance, size_t n_ties)
{
    double *out = policy_probabilities_out(in);
    if (!out || n_ties == 0)
        return;
    for (size_t i = 0; i < in->n_arms; i++)
        out[i] = values[i] >= top - tolerance ? 1.0 / (double)n_ties : 0.0;
}

/* A draw from the distribution p: p itself. */
static inline void policy_probabilities_copy(const mab_policy_input *in, const double *p)
{
    double *out = policy_probabilities_out(in);
    if (!out)
        return;
    for (size_t i = 0; i < in->n_arms; i++)
        out[i] = p[i];
}

#endif
