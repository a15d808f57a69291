/* argmax.c - the tie-breaking helper policies share (policy.h). */
#include "mab/policy.h"

size_t mab_argmax(const double *values, size_t n, double tolerance, mab_rng *rng,
                  size_t *n_ties)
{
    double best = values[0];
    for (size_t i = 1; i < n; i++)
        if (values[i] > best)
            best = values[i];
    /* Reservoir sampling over the tied arms: one pass, uniform choice. */
    size_t chosen = 0, ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (values[i] >= best - tolerance) {
            ties++;
            if (ties == 1 || mab_rng_below(rng, ties) == 0)
                chosen = i;
        }
    }
    if (n_ties)
        *n_ties = ties;
    return chosen;
}
