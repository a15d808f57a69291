/*
 * threshold_greedy.c - an out-of-tree policy on ABI 2 (state model 2): it
 * keeps a statistic of its own, which the four counters cannot give.
 *
 * Goal: the arm whose rewards most often reach a threshold ("how often is
 * the basket above 80% of the target?"), not the arm of the best mean.
 * An arm paid 0.6 every time has the better mean than one paid 1 or 0, but
 * never reaches 0.8; this policy prefers the second.
 *
 * Params: "threshold" (number in [0, 1], default 1): a reward, normalised
 * to [0, 1], counts as a hit when it is at least this; "epsilon" (in
 * [0, 1], default 0.1): the share of uniform exploration.
 *
 * Statistics: one double per arm, the number of hits. update() adds 1 at
 * each reward that reaches the threshold, so the count is additive and every
 * process adds to one store; the core keeps it, the storage plugin persists
 * it, and choose() reads it back in arm_stats.
 *
 * Choice: an arm without rewards first (the first one, probability 1); else
 * with probability epsilon a uniform arm, otherwise the arm of the largest
 * hit rate hits / rewards (ties: the first). The probability is exact.
 */
#include <stdlib.h>

#include "mab/policy.h"

typedef struct tg_state {
    double threshold;
    double epsilon;
} tg_state;

static int tg_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                     mab_error *err)
{
    const mab_core_api *api = init->api;
    double threshold, epsilon;
    int rc = api->params_double(init->params, "threshold", 1.0, 0.0, 1.0, &threshold);
    if (rc == MAB_OK)
        rc = api->params_double(init->params, "epsilon", 0.1, 0.0, 1.0, &epsilon);
    if (rc != MAB_OK)
        return rc;
    tg_state *s = malloc(sizeof *s);
    if (!s)
        return api->error_set(err, MAB_ENOMEM, "threshold_greedy: out of memory");
    s->threshold = threshold;
    s->epsilon = epsilon;
    layout->arm_stats = 1;        /* hits */
    layout->experiment_stats = 0;
    layout->stats_version = 1;    /* bump if the double ever means something else */
    *state = s;
    return MAB_OK;
}

static void tg_destroy(void *state)
{
    free(state);
}

/* One event: a reward at or above the threshold adds a hit to its arm. */
static int tg_update(const void *state, const mab_policy_event *ev, double *arm_delta,
                     double *experiment_delta)
{
    const tg_state *s = state;
    (void)experiment_delta;
    if (ev->kind == MAB_EVENT_REWARD && ev->reward >= s->threshold)
        arm_delta[0] = 1.0;
    return MAB_OK;
}

/* The greedy arm: largest hits / rewards; SIZE_MAX when one has no rewards. */
static size_t tg_leader(const mab_policy_input *in, size_t *untried)
{
    size_t best = 0;
    double best_rate = -1.0;
    for (size_t i = 0; i < in->n_arms; i++) {
        if (in->arms[i].rewards == 0) {
            *untried = i;
            return SIZE_MAX;
        }
        double rate = in->arm_stats[i] / (double)in->arms[i].rewards;
        if (rate > best_rate) {
            best_rate = rate;
            best = i;
        }
    }
    return best;
}

static int tg_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    const tg_state *s = state;
    size_t untried = 0, leader = tg_leader(in, &untried);
    out->estimated = 0;
    if (leader == SIZE_MAX) {
        out->arm = untried;
        out->probability = 1.0;
        return MAB_OK;
    }
    double k = (double)in->n_arms;
    out->arm = leader;
    if (s->epsilon > 0.0 && in->api->rng_uniform(in->rng) < s->epsilon) {
        out->arm = (size_t)(in->api->rng_uniform(in->rng) * k);
        if (out->arm >= in->n_arms)
            out->arm = in->n_arms - 1;
    }
    out->probability = s->epsilon / k + (out->arm == leader ? 1.0 - s->epsilon : 0.0);
    return MAB_OK;
}

/* Scores: each arm's hit rate (0 without rewards). */
static int tg_explain(const void *state, const mab_policy_input *in, double *values, int *kind)
{
    (void)state;
    for (size_t i = 0; i < in->n_arms; i++)
        values[i] = in->arms[i].rewards ? in->arm_stats[i] / (double)in->arms[i].rewards : 0.0;
    *kind = MAB_EXPLAIN_SCORES;
    return MAB_OK;
}

static const mab_policy2 tg_policy = {
    MAB_POLICY2_HEADER, "threshold_greedy",
    "epsilon-greedy on the share of rewards reaching a threshold (policy ABI 2, "
    "out-of-tree example)",
    1, tg_create, tg_destroy, tg_update, tg_choose, tg_explain,
};
MAB_POLICY2_DEFINE(tg_policy)
