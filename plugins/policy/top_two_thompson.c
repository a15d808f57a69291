/*
 * top_two_thompson.c - top-two Thompson sampling (Russo 2016), policy ABI 2,
 * for finding the best arm rather than only earning: draw theta from the
 * Beta posteriors; the arm of largest theta is the leader; with probability
 * beta play it, otherwise redraw until another arm leads and play that one.
 *
 * Params: "beta" (number in (0, 1), default 0.5), the share of plays given
 * to the leader; "alpha0", "beta0" (in [1e-9, 1e6], default 1): the Beta
 * prior, as thompson's; "probability_draws" (integer in [0, 100000],
 * default 256): the Monte Carlo draws behind the reported probability, 0 to
 * report NAN and save the cost.
 *
 * Posterior of arm i: Beta(alpha0 + s_i, beta0 + max(0, n_i - s_i)), s_i the
 * normalised reward sum (clamped at 0 for damaged stored totals).
 *
 * Bounded cost: at most TTTS_MAX_REDRAWS redraws look for a challenger;
 * should all of them be led by the leader again (its chance to lead is then
 * above ~0.95), the challenger is the arm of largest theta among the others
 * in one more draw. The exact procedure and this one differ only then.
 *
 * Probability (estimated, flagged): with L_i the chance that arm i leads,
 * P(a) = beta L_a + (1 - beta) sum_{i != a} L_i L_a / (1 - L_i)  (given that
 * i leads, the redraw is a draw conditioned on i not leading). L is
 * estimated from probability_draws fresh draws of this thread's stream
 * (seeded by the config's "seed"), independent of the draws that chose: a
 * leader count c_i over S draws gives L_i = c_i / S and L_a / (1 - L_i) =
 * c_a / (S - c_i) (1 / (K - 1) when i led every draw). Cost: S K Beta draws.
 * Never below 1 / (2S). With ABI 2.2's in->probabilities, every arm's
 * estimate by the same formula from the same counts (summing to 1; the
 * chosen arm's floor is kept in the sum as floor_chosen() in beta_draws.h
 * says), and the choice's probability is probabilities[arm].
 */
#include <math.h>
#include <stdlib.h>

#include "beta_draws.h"
#include "mab/policy.h"

typedef struct ttts_state {
    double beta;
    double alpha0;
    double beta0;
    size_t probability_draws;
} ttts_state;

#define TTTS_MAX_REDRAWS 100

static int ttts_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                       mab_error *err)
{
    const mab_core_api *api = init->api;
    double beta, alpha0, beta0;
    int64_t draws;
    int rc = api->params_double(init->params, "beta", 0.5, 0.0, 1.0, &beta);
    if (rc != MAB_OK)
        return rc;
    if (beta == 0.0 || beta == 1.0)
        return api->params_fail(init->params, "beta",
                                "%g is outside (0, 1): the leader's share must leave room "
                                "for a challenger and for the leader", beta);
    if ((rc = api->params_double(init->params, "alpha0", 1.0, 1e-9, 1e6, &alpha0)) != MAB_OK ||
        (rc = api->params_double(init->params, "beta0", 1.0, 1e-9, 1e6, &beta0)) != MAB_OK ||
        (rc = api->params_int(init->params, "probability_draws", 256, 0, 100000, &draws)) !=
            MAB_OK)
        return rc;
    ttts_state *s = malloc(sizeof *s);
    if (!s)
        return api->error_set(err, MAB_ENOMEM, "top_two_thompson: out of memory");
    s->beta = beta;
    s->alpha0 = alpha0;
    s->beta0 = beta0;
    s->probability_draws = (size_t)draws;
    layout->arm_stats = 0;
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void ttts_destroy(void *state)
{
    free(state);
}

/* Beta shapes of every arm. */
static void ttts_posteriors(const ttts_state *s, const mab_policy_input *in, double *a,
                            double *b)
{
    for (size_t i = 0; i < in->n_arms; i++) {
        double successes = fmax(0.0, in->arms[i].reward_sum);
        double failures = fmax(0.0, (double)(int64_t)in->arms[i].pulls - successes);
        a[i] = s->alpha0 + successes;
        b[i] = s->beta0 + failures;
    }
}

/*
 * The estimate of every arm's probability from leader counts over S draws,
 * into p (n doubles): with L_i = c_i / S, P(a) = beta L_a + (1 - beta) L_a
 * sum_{i != a, 0 < c_i} c_i / (S - c_i), in O(K) through the full sum T
 * over every arm that led some draws but not all; when one arm m led every
 * draw, P(m) = beta and every other arm (1 - beta) / (K - 1). The values
 * sum to 1 (sum_a L_a / (1 - L_i) over a != i is 1).
 */
static void ttts_probabilities(const ttts_state *s, const size_t *counts, size_t n, double *p)
{
    double total = (double)s->probability_draws, sum_ratio = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (counts[i] == s->probability_draws) {
            for (size_t a = 0; a < n; a++)
                p[a] = a == i ? s->beta : (1.0 - s->beta) / (double)(n - 1);
            return;
        }
        if (counts[i] > 0)
            sum_ratio += (double)counts[i] / (total - (double)counts[i]);
    }
    for (size_t a = 0; a < n; a++) {
        double leads = (double)counts[a] / total;
        double others = counts[a] > 0 ? sum_ratio - (double)counts[a] / (total - (double)counts[a])
                                      : sum_ratio;
        p[a] = s->beta * leads + (1.0 - s->beta) * leads * others;
    }
}

#define TTTS_STACK_ARMS 64

static int ttts_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    const ttts_state *s = state;
    const mab_core_api *api = in->api;
    size_t n = in->n_arms;
    double stack[3 * TTTS_STACK_ARMS];
    size_t count_stack[TTTS_STACK_ARMS];
    int small = n <= TTTS_STACK_ARMS;
    double *a = small ? stack : malloc(3 * n * sizeof *a);
    size_t *counts = small ? count_stack : malloc(n * sizeof *counts);
    if (!a || !counts) {
        if (!small) {
            free(a);
            free(counts);
        }
        return MAB_ENOMEM;
    }
    double *b = a + n, *shares = a + 2 * n;
    ttts_posteriors(s, in, a, b);

    size_t leader = beta_draw_leader(api, in->rng, a, b, n, n), arm = leader;
    if (!(api->rng_uniform(in->rng) < s->beta)) {
        int found = 0;
        for (int r = 0; r < TTTS_MAX_REDRAWS && !found; r++) {
            arm = beta_draw_leader(api, in->rng, a, b, n, n);
            found = arm != leader;
        }
        if (!found)
            arm = beta_draw_leader(api, in->rng, a, b, n, leader);
    }
    out->arm = arm;
    out->estimated = 1;
    out->probability = NAN;
    if (s->probability_draws > 0) {
        beta_leader_counts(api, in->rng, a, b, n, s->probability_draws, counts);
        double *p = input_probabilities(in);
        if (!p)
            p = shares;
        ttts_probabilities(s, counts, n, p);
        out->probability = floor_chosen(p, n, arm, s->probability_draws);
    }
    if (!small) {
        free(a);
        free(counts);
    }
    return MAB_OK;
}

/* Scores: each arm's posterior mean. */
static int ttts_explain(const void *state, const mab_policy_input *in, double *values, int *kind)
{
    const ttts_state *s = state;
    for (size_t i = 0; i < in->n_arms; i++) {
        double successes = fmax(0.0, in->arms[i].reward_sum);
        double failures = fmax(0.0, (double)(int64_t)in->arms[i].pulls - successes);
        values[i] = (s->alpha0 + successes) / (s->alpha0 + s->beta0 + successes + failures);
    }
    *kind = MAB_EXPLAIN_SCORES;
    return MAB_OK;
}

static const mab_policy2 ttts_policy = {
    MAB_POLICY2_HEADER, "top_two_thompson",
    "top-two Thompson sampling: the posterior leader or, with probability 1 - beta, a "
    "challenger (policy ABI 2)",
    1, ttts_create, ttts_destroy, NULL, ttts_choose, ttts_explain,
};
MAB_POLICY2_DEFINE(ttts_policy)
