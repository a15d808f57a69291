/*
 * lin_ucb.c - disjoint LinUCB (Li, Chu, Langford & Schapire 2010), policy
 * ABI 2: a ridge regression of the reward on the request's features per
 * arm, played by its upper confidence bound
 *     x^T A_i^-1 b_i + alpha sqrt(x^T A_i^-1 x).
 *
 * Params: "alpha" (number in [0, 1e6], default 1), the width of the bound;
 * "features" (read by the core): the names of the features, at most 32.
 * The model (linear.h) adds an intercept: d = features + 1.
 *
 * Statistics: G_i = sum x x^T (d * d) and b_i = sum r x (d) per arm, both
 * additive (linear.h). A missing feature is an error (MAB_EINVAL) in choose
 * and update.
 *
 * Deterministic given the statistics and the context: the probability is
 * exactly 1, or 1 / |ties|. Cost per choose: one Cholesky factorisation per
 * arm, O(K d^3 / 6).
 */
#include <math.h>
#include <stdlib.h>

#include "linear.h"
#include "mab/policy.h"
#include "probabilities.h"

typedef struct lin_ucb_state {
    double alpha;
    size_t d;
} lin_ucb_state;

static int lin_ucb_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                          mab_error *err)
{
    double alpha;
    int rc = init->api->params_double(init->params, "alpha", 1.0, 0.0, 1e6, &alpha);
    if (rc != MAB_OK || (rc = linear_check_features(init, "lin_ucb")) != MAB_OK)
        return rc;
    lin_ucb_state *s = malloc(sizeof *s);
    if (!s)
        return init->api->error_set(err, MAB_ENOMEM, "lin_ucb: out of memory");
    s->alpha = alpha;
    s->d = init->n_features + 1;
    layout->arm_stats = linear_arm_stats(s->d);
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void lin_ucb_destroy(void *state)
{
    free(state);
}

static int lin_ucb_update(const void *state, const mab_policy_event *ev, double *arm_delta,
                          double *experiment_delta)
{
    (void)state;
    (void)experiment_delta;
    return linear_update(ev, arm_delta);
}

/* Upper confidence bounds of every arm at this input's context. */
static int lin_ucb_scores(const lin_ucb_state *s, const mab_policy_input *in, double *values)
{
    double x[LINEAR_MAX_DIM];
    if (in->n_features + 1 != s->d || linear_context(in->features, in->n_features, x) != MAB_OK)
        return MAB_EINVAL;
    size_t per_arm = linear_arm_stats(s->d);
    for (size_t i = 0; i < in->n_arms; i++) {
        double mean, width;
        int rc = linear_estimate(in->arm_stats + i * per_arm, s->d, x, &mean, &width);
        if (rc != MAB_OK)
            return rc;
        values[i] = mean + s->alpha * width;
    }
    return MAB_OK;
}

#define LIN_UCB_STACK_ARMS 64

static int lin_ucb_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    double stack[LIN_UCB_STACK_ARMS];
    double *values =
        in->n_arms <= LIN_UCB_STACK_ARMS ? stack : malloc(in->n_arms * sizeof *values);
    if (!values)
        return MAB_ENOMEM;
    int rc = lin_ucb_scores(state, in, values);
    if (rc == MAB_OK) {
        size_t n_ties = 1;
        out->arm = in->api->argmax(values, in->n_arms, 0.0, in->rng, &n_ties);
        out->probability = 1.0 / (double)n_ties;
        out->estimated = 0;
        policy_probabilities_ties(in, values, values[out->arm], 0.0, n_ties);
    }
    if (values != stack)
        free(values);
    return rc;
}

static int lin_ucb_explain(const void *state, const mab_policy_input *in, double *values,
                           int *kind)
{
    *kind = MAB_EXPLAIN_SCORES;
    return lin_ucb_scores(state, in, values);
}

static const mab_policy2 lin_ucb_policy = {
    MAB_POLICY2_HEADER, "lin_ucb",
    "disjoint LinUCB: per-arm ridge regression on the request's features, played by its "
    "upper confidence bound (policy ABI 2)",
    1, lin_ucb_create, lin_ucb_destroy, lin_ucb_update, lin_ucb_choose, lin_ucb_explain,
};
MAB_POLICY2_DEFINE(lin_ucb_policy)
