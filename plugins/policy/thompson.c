/*
 * thompson.c - Thompson sampling with Beta-Bernoulli posteriors (Thompson
 * 1933; Agrawal & Goyal 2012): draw theta_i ~ Beta(alpha0 + s_i,
 * beta0 + max(0, n_i - s_i)) for every arm and play the largest.
 *
 * Params: "alpha0", "beta0" (numbers in [1e-9, 1e6], default 1: the uniform
 * prior). Rewards in [0, 1] enter s_i fractionally as they are.
 */
#include <math.h>
#include <stdlib.h>

#include "mab/policy.h"

typedef struct thompson_state {
    double alpha0;
    double beta0;
} thompson_state;

static int thompson_create(mab_params *params, size_t n_arms, void **state)
{
    double alpha0, beta0;
    int rc = mab_params_double(params, "alpha0", 1.0, 1e-9, 1e6, &alpha0);
    if (rc != MAB_OK)
        return rc;
    rc = mab_params_double(params, "beta0", 1.0, 1e-9, 1e6, &beta0);
    if (rc != MAB_OK)
        return rc;
    thompson_state *s = malloc(sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    s->alpha0 = alpha0;
    s->beta0 = beta0;
    *state = s;
    return MAB_OK;
}

static void thompson_destroy(void *state)
{
    free(state);
}

static int thompson_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                           mab_rng *rng, size_t *arm, double *probability)
{
    const thompson_state *s = state;

    /* One pass, reservoir sampling over exact ties (possible when draws
       underflow to 0 or round to 1). */
    double best = -1.0;
    size_t chosen = 0, n_ties = 0;
    for (size_t i = 0; i < n_arms; i++) {
        /* A store can hand over totals no run of the engine makes (a damaged
           or hand-edited record with a negative sum): keep the Beta shapes
           above 0, where they are defined. */
        double successes = fmax(0.0, arms[i].reward_sum);
        double failures = fmax(0.0, (double)(int64_t)arms[i].pulls - successes);
        double theta = mab_rng_beta(rng, s->alpha0 + successes, s->beta0 + failures);
        if (theta > best) {
            best = theta;
            chosen = i;
            n_ties = 1;
        } else if (theta == best) {
            n_ties++;
            if (mab_rng_below(rng, n_ties) == 0)
                chosen = i;
        }
    }
    *arm = chosen;
    /* P(theta_i is the largest) has no cheap closed form. */
    *probability = NAN;
    return MAB_OK;
}

static const mab_policy thompson_policy = {
    MAB_POLICY_HEADER,
    "thompson",
    "Thompson sampling from Beta posteriors of each arm's reward rate",
    thompson_create,
    thompson_destroy,
    thompson_choose,
};

MAB_POLICY_DEFINE(thompson_policy)
