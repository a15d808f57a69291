/*
 * beta_draws.h - helpers shared by the Thompson-sampling policies of ABI 2
 * (thompson.c, top_two_thompson.c, discounted_thompson.c): one Thompson draw
 * over all arms from Beta or Normal posteriors, and a Monte Carlo estimate
 * of each arm's chance to lead. Header only: each plugin stays one
 * self-contained .so.
 */
#ifndef MAB_POLICY_BETA_DRAWS_H
#define MAB_POLICY_BETA_DRAWS_H

#include <math.h>
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

/*
 * Draw theta_i ~ Normal(mu[i], sd[i]^2) for every arm and return the index
 * of the largest, ties broken uniformly by reservoir sampling (one standard
 * normal per arm, in arm order; a tie costs one rng_below).
 */
static inline size_t normal_draw_leader(const mab_core_api *api, mab_rng *rng, const double *mu,
                                        const double *sd, size_t n)
{
    double best = -INFINITY; /* Normal draws can be negative */
    size_t chosen = 0, n_ties = 0;
    for (size_t i = 0; i < n; i++) {
        double theta = mu[i] + sd[i] * api->rng_normal(rng);
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

/* Leader counts over `draws` independent draws from the Normal posteriors. */
static inline void normal_leader_counts(const mab_core_api *api, mab_rng *rng, const double *mu,
                                        const double *sd, size_t n, size_t draws,
                                        size_t *counts)
{
    for (size_t i = 0; i < n; i++)
        counts[i] = 0;
    for (size_t d = 0; d < draws; d++)
        counts[normal_draw_leader(api, rng, mu, sd, n)]++;
}

/*
 * Estimated probabilities p[0..n) summing to 1 (each an estimate of its
 * arm's probability), of which p[arm] is reported for the chosen arm: when
 * p[arm] is below estimate_floor(), it is raised to it and every other arm's
 * value is scaled by (1 - floor) / (1 - p[arm]), so that the sum stays 1
 * (the floor is at most 1/2, so the scale is finite and positive). Returns
 * the chosen arm's value, p[arm] after the floor.
 */
static inline double floor_chosen(double *p, size_t n, size_t arm, size_t draws)
{
    double floored = estimate_floor(p[arm], draws);
    if (floored != p[arm]) {
        double scale = (1.0 - floored) / (1.0 - p[arm]);
        for (size_t i = 0; i < n; i++)
            if (i != arm)
                p[i] *= scale;
        p[arm] = floored;
    }
    return floored;
}

/*
 * Leader shares c_i / S of S = draws draws into p (n doubles, or NULL when
 * only the chosen arm's is needed), floored for the chosen arm as
 * floor_chosen() says; returns the chosen arm's share. c_i / S is an
 * unbiased estimate of arm i's chance to lead (the draws are independent of
 * the choice); the floor biases the chosen arm's value upwards, by less
 * than 1 / (2S), only when it led none of the draws.
 */
static inline double leader_shares(const size_t *counts, size_t n, size_t draws, size_t arm,
                                   double *p)
{
    double total = (double)draws;
    if (!p)
        return estimate_floor((double)counts[arm] / total, draws);
    for (size_t i = 0; i < n; i++)
        p[i] = (double)counts[i] / total;
    return floor_chosen(p, n, arm, draws);
}

/* The probabilities array of an ABI 2.2 input: NULL from an older core (a
   struct_size that does not cover it) or when the core does not need it. */
static inline double *input_probabilities(const mab_policy_input *in)
{
    if (in->struct_size < offsetof(mab_policy_input, probabilities) + sizeof in->probabilities)
        return NULL;
    return in->probabilities;
}

#endif
