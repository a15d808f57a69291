/*
 * beta_draws.h - helpers shared by the Beta-posterior policies of ABI 2
 * (top_two_thompson.c, discounted_thompson.c): one Thompson draw over all
 * arms, and a Monte Carlo estimate of each arm's chance to lead. Header
 * only: each plugin stays one self-contained .so.
 */
#ifndef MAB_POLICY_BETA_DRAWS_H
#define MAB_POLICY_BETA_DRAWS_H

#include <stddef.h>

#include "mab/policy.h"

/*
 * Draw theta_i ~ Beta(a[i], b[i]) for every arm not equal to `skip` (pass
 * n to skip none) and return the index of the largest, ties (draws that
 * underflow to 0 or round to 1) broken uniformly by reservoir sampling.
 */
static inline size_t beta_draw_leader(const mab_core_api *api, mab_rng *rng, const double *a,
                                      const double *b, size_t n, size_t skip)
{
    double best = -1.0;
    size_t chosen = skip == 0 ? 1 : 0, n_ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == skip)
            continue;
        double theta = api->rng_beta(rng, a[i], b[i]);
        if (theta > best) {
            best = theta;
            chosen = i;
            n_ties = 1;
        } else if (theta == best && api->rng_below(rng, ++n_ties) == 0) {
            chosen = i;
        }
    }
    return chosen;
}

/* Leader counts over `draws` independent Thompson draws: counts[i] is how
   many times arm i led. */
static inline void beta_leader_counts(const mab_core_api *api, mab_rng *rng, const double *a,
                                      const double *b, size_t n, size_t draws, size_t *counts)
{
    for (size_t i = 0; i < n; i++)
        counts[i] = 0;
    for (size_t d = 0; d < draws; d++)
        counts[beta_draw_leader(api, rng, a, b, n, n)]++;
}

/* An estimated probability reported for an arm that was played is never 0
   (it would make an inverse-probability weight infinite): at least half a
   draw's worth. */
static inline double estimate_floor(double p, size_t draws)
{
    double floor = 0.5 / (double)draws;
    return p < floor ? floor : p;
}

#endif
