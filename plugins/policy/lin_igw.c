/*
 * lin_igw.c - inverse-gap weighting over a linear model (Abe & Long 1999;
 * Foster & Rakhlin 2020's SquareCB, Simchi-Levi & Xu 2020's FALCON), policy
 * ABI 2: a contextual policy whose probability of every arm is known in
 * closed form, so logged propensities are exact.
 *
 * Params: "gamma" (number in (0, 1e9], default 100): how sharply the play
 * concentrates on the best arm (larger: greedier); "features" (read by the
 * core): the names of the features, at most 32.
 *
 * Model and statistics: the ridge regression of linear.h, per arm (G_i,
 * b_i, an intercept added); the score of arm a is its estimate
 * s_a = x^T A_a^-1 b_a. A missing feature is an error (MAB_EINVAL).
 *
 * Choice: with b the best-scoring arm (the first of equal best scores, so
 * that the probabilities below are exact whatever the ties),
 *     p(a) = 1 / (K + gamma (s_b - s_a))   for a != b,
 *     p(b) = 1 - sum of the others (at least 1/K),
 * drawn with one uniform number; the probability reported is exact.
 * Cost per choose: one Cholesky factorisation per arm, O(K d^3 / 6).
 */
#include <math.h>
#include <stdlib.h>

#include "linear.h"
#include "mab/policy.h"
#include "probabilities.h"

typedef struct lin_igw_state {
    double gamma;
    size_t d;
} lin_igw_state;

static int lin_igw_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                          mab_error *err)
{
    double gamma;
    int rc = init->api->params_double(init->params, "gamma", 100.0, 0.0, 1e9, &gamma);
    if (rc != MAB_OK)
        return rc;
    if (gamma == 0.0)
        return init->api->params_fail(init->params, "gamma",
                                      "must be above 0 (0 would ignore the model)");
    if ((rc = linear_check_features(init, "lin_igw")) != MAB_OK)
        return rc;
    lin_igw_state *s = malloc(sizeof *s);
    if (!s)
        return init->api->error_set(err, MAB_ENOMEM, "lin_igw: out of memory");
    s->gamma = gamma;
    s->d = init->n_features + 1;
    layout->arm_stats = linear_arm_stats(s->d);
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void lin_igw_destroy(void *state)
{
    free(state);
}

static int lin_igw_update(const void *state, const mab_policy_event *ev, double *arm_delta,
                          double *experiment_delta)
{
    (void)state;
    (void)experiment_delta;
    return linear_update(ev, arm_delta);
}

/* Every arm's probability at this input's context. */
static int lin_igw_probabilities(const lin_igw_state *s, const mab_policy_input *in, double *p)
{
    double x[LINEAR_MAX_DIM];
    if (in->n_features + 1 != s->d || linear_context(in->features, in->n_features, x) != MAB_OK)
        return MAB_EINVAL;
    size_t per_arm = linear_arm_stats(s->d), best = 0;
    for (size_t i = 0; i < in->n_arms; i++) {
        double width;
        int rc = linear_estimate(in->arm_stats + i * per_arm, s->d, x, &p[i], &width);
        if (rc != MAB_OK)
            return rc;
        if (p[i] > p[best])
            best = i;
    }
    double k = (double)in->n_arms, best_score = p[best], others = 0.0;
    for (size_t i = 0; i < in->n_arms; i++) {
        if (i == best)
            continue;
        p[i] = 1.0 / (k + s->gamma * (best_score - p[i]));
        others += p[i];
    }
    p[best] = 1.0 - others;
    return MAB_OK;
}

#define LIN_IGW_STACK_ARMS 64

static int lin_igw_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    double stack[LIN_IGW_STACK_ARMS];
    double *p = in->n_arms <= LIN_IGW_STACK_ARMS ? stack : malloc(in->n_arms * sizeof *p);
    if (!p)
        return MAB_ENOMEM;
    int rc = lin_igw_probabilities(state, in, p);
    if (rc == MAB_OK) {
        double u = in->api->rng_uniform(in->rng), cumulative = 0.0;
        size_t arm = in->n_arms - 1; /* what rounding leaves past the last sum */
        for (size_t i = 0; i < in->n_arms; i++) {
            cumulative += p[i];
            if (u < cumulative) {
                arm = i;
                break;
            }
        }
        out->arm = arm;
        out->probability = p[arm];
        out->estimated = 0;
        policy_probabilities_copy(in, p);
    }
    if (p != stack)
        free(p);
    return rc;
}

static int lin_igw_explain(const void *state, const mab_policy_input *in, double *values,
                           int *kind)
{
    *kind = MAB_EXPLAIN_PROBABILITIES;
    return lin_igw_probabilities(state, in, values);
}

static const mab_policy2 lin_igw_policy = {
    MAB_POLICY2_HEADER, "lin_igw",
    "inverse-gap weighting over per-arm ridge regressions on the request's features: exact "
    "probabilities (policy ABI 2)",
    1, lin_igw_create, lin_igw_destroy, lin_igw_update, lin_igw_choose, lin_igw_explain,
};
MAB_POLICY2_DEFINE(lin_igw_policy)
