/*
 * softmax.c - Boltzmann exploration: P(i) proportional to exp(mu_i / tau).
 *
 * Params: "tau" (number in [1e-9, 1e9], default 0.1) or "annealing": true,
 * which sets tau = 1 / ln(t + 1 + 1e-7) with t the total pulls (White 2012).
 * Giving both is an error: the fixed tau would be silently ignored.
 */
#include <math.h>
#include <stdlib.h>

#include "mab/policy.h"

typedef struct softmax_state {
    double tau;    /* used when annealing is 0 */
    int annealing; /* 1: tau follows the total pulls */
} softmax_state;

static int softmax_create(mab_params *params, size_t n_arms, void **state)
{
    int annealing;
    double tau;
    int rc = mab_params_bool(params, "annealing", 0, &annealing);
    if (rc != MAB_OK)
        return rc;
    rc = mab_params_double(params, "tau", 0.1, 1e-9, 1e9, &tau);
    if (rc != MAB_OK)
        return rc;
    if (annealing && mab_params_has(params, "tau"))
        return mab_params_fail(params, "tau",
                               "cannot be given together with \"annealing\": true");
    softmax_state *s = malloc(sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    s->tau = tau;
    s->annealing = annealing;
    *state = s;
    return MAB_OK;
}

static void softmax_destroy(void *state)
{
    free(state);
}

/* Up to this many arms, each arm's mean and weight are kept on the stack and
   computed once (one division and one exp an arm); beyond, the weights are
   recomputed in the second pass, so that choose allocates nothing for any K.
   Either way the same arithmetic: the same choice from the same stream. */
#define SOFTMAX_STACK_ARMS 64

static int softmax_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                          mab_rng *rng, size_t *arm, double *probability)
{
    const softmax_state *s = state;
    double means[SOFTMAX_STACK_ARMS], weights[SOFTMAX_STACK_ARMS];
    size_t kept = n_arms < SOFTMAX_STACK_ARMS ? n_arms : SOFTMAX_STACK_ARMS;

    double tau = s->tau;
    double best_mean = mab_arm_mean(&arms[0]);
    uint64_t total_pulls = 0;
    for (size_t i = 0; i < n_arms; i++) {
        double mean = mab_arm_mean(&arms[i]);
        if (i < kept)
            means[i] = mean;
        if (mean > best_mean)
            best_mean = mean;
        total_pulls += arms[i].pulls;
    }
    if (s->annealing)
        tau = 1.0 / log((double)total_pulls + 1.0 + 1e-7);

    /* Exponents are <= 0, so no weight overflows and the best arm's weight
       is exactly 1: the normaliser is >= 1 however small tau is. */
    double inv_tau = 1.0 / tau;
    double normaliser = 0.0;
    for (size_t i = 0; i < kept; i++) {
        weights[i] = exp((means[i] - best_mean) * inv_tau);
        normaliser += weights[i];
    }
    for (size_t i = kept; i < n_arms; i++)
        normaliser += exp((mab_arm_mean(&arms[i]) - best_mean) * inv_tau);

    /* Inverse CDF with one uniform draw. */
    double target = mab_rng_uniform(rng) * normaliser;
    double cumulative = 0.0, weight = 0.0;
    size_t chosen = n_arms;
    size_t last_positive = 0;
    for (size_t i = 0; i < n_arms; i++) {
        double w = i < kept ? weights[i] : exp((mab_arm_mean(&arms[i]) - best_mean) * inv_tau);
        if (w > 0.0)
            last_positive = i;
        cumulative += w;
        if (target < cumulative) {
            chosen = i;
            weight = w;
            break;
        }
    }
    if (chosen == n_arms) {
        /* target rounded up to the normaliser: take the last arm that can be chosen. */
        chosen = last_positive;
        weight = chosen < kept ? weights[chosen]
                               : exp((mab_arm_mean(&arms[chosen]) - best_mean) * inv_tau);
    }
    *arm = chosen;
    *probability = weight / normaliser;
    return MAB_OK;
}

static const mab_policy softmax_policy = {
    MAB_POLICY_HEADER,
    "softmax",
    "plays each arm with probability proportional to exp(mean / tau), optionally annealed",
    softmax_create,
    softmax_destroy,
    softmax_choose,
};

MAB_POLICY_DEFINE(softmax_policy)
