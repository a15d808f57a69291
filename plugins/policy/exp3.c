/*
 * exp3.c - EXP3 (Auer, Cesa-Bianchi, Freund, Schapire 2002), the first
 * policy on ABI 2: it learns a statistic the four counters cannot hold.
 *
 * Params: "gamma" (number in (0, 1], default 0.1), the share of uniform
 * exploration.
 *
 * Statistics: one double per arm, G_i = the sum of r / p_i over the rewards
 * of arm i, where p_i is the probability the arm had been chosen with (the
 * importance-weighted reward sum). update() adds r / p_i at each reward, so
 * G_i is additive like the counters and every process adds to one store. A
 * reward whose probability is unknown cannot be weighted: update refuses it
 * (MAB_EINVAL) and the engine records nothing.
 *
 * Choice: w_i = exp(gamma G_i / K), p_i = (1 - gamma) w_i / sum_j w_j +
 * gamma / K, computed with G_i - max_j G_j in the exponent so that large
 * sums never overflow. The arm is drawn from p with one uniform number and
 * its probability is exact.
 */
#include <math.h>
#include <stdlib.h>

#include "mab/policy.h"
#include "probabilities.h"

typedef struct exp3_state {
    double gamma;
    size_t n_arms;
} exp3_state;

static int exp3_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                       mab_error *err)
{
    double gamma;
    int rc = init->api->params_double(init->params, "gamma", 0.1, 0.0, 1.0, &gamma);
    if (rc != MAB_OK)
        return rc;
    if (gamma == 0.0)
        return init->api->params_fail(init->params, "gamma",
                                      "must be above 0 (EXP3 needs some exploration)");
    exp3_state *s = malloc(sizeof *s);
    if (!s)
        return init->api->error_set(err, MAB_ENOMEM, "exp3: out of memory");
    s->gamma = gamma;
    s->n_arms = init->n_arms;
    layout->arm_stats = 1;
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void exp3_destroy(void *state)
{
    free(state);
}

/* p[0..n) from the G_i (one per arm, stride 1). */
static void exp3_probabilities(const exp3_state *s, const double *g, size_t n, double *p)
{
    double max = g[0];
    for (size_t i = 1; i < n; i++)
        if (g[i] > max)
            max = g[i];
    double k = (double)n, total = 0.0;
    for (size_t i = 0; i < n; i++) {
        p[i] = exp(s->gamma * (g[i] - max) / k);
        total += p[i];
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (1.0 - s->gamma) * p[i] / total + s->gamma / k;
}

static int exp3_update(const void *state, const mab_policy_event *ev, double *arm_delta,
                       double *experiment_delta)
{
    (void)state;
    (void)experiment_delta;
    if (ev->kind != MAB_EVENT_REWARD)
        return MAB_OK; /* a pull adds nothing to G */
    if (!(ev->probability > 0.0 && ev->probability <= 1.0))
        return MAB_EINVAL;
    arm_delta[0] = ev->reward / ev->probability;
    return MAB_OK;
}

/* At most this many arms on the stack; more are allocated. */
#define EXP3_STACK_ARMS 64

static int exp3_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    const exp3_state *s = state;
    double stack[EXP3_STACK_ARMS];
    double *p = in->n_arms <= EXP3_STACK_ARMS ? stack : malloc(in->n_arms * sizeof *p);
    if (!p)
        return MAB_ENOMEM;
    exp3_probabilities(s, in->arm_stats, in->n_arms, p);
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
    if (p != stack)
        free(p);
    return MAB_OK;
}

static int exp3_explain(const void *state, const mab_policy_input *in, double *values,
                        int *kind)
{
    exp3_probabilities(state, in->arm_stats, in->n_arms, values);
    *kind = MAB_EXPLAIN_PROBABILITIES;
    return MAB_OK;
}

static const mab_policy2 exp3_policy = {
    MAB_POLICY2_HEADER, "exp3",
    "EXP3: exponential weights over importance-weighted reward sums (policy ABI 2)",
    1, exp3_create, exp3_destroy, exp3_update, exp3_choose, exp3_explain,
};
MAB_POLICY2_DEFINE(exp3_policy)
