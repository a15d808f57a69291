/*
 * thompson.c - Thompson sampling (Thompson 1933; Agrawal & Goyal 2012),
 * policy ABI 2: draw each arm's mean from its posterior and play the
 * largest.
 *
 * "likelihood": "bernoulli" (the default): theta_i ~ Beta(alpha0 + s_i,
 * beta0 + max(0, n_i - s_i)), with "alpha0", "beta0" (numbers in
 * [1e-9, 1e6], default 1: the uniform prior). Rewards in [0, 1] enter s_i
 * fractionally as they are; s_i is clamped at 0 (a damaged stored total).
 *
 * "likelihood": "gaussian", for revenue-like rewards whose spread matters
 * (order values, time on page): theta_i ~ Normal(mu_i, v_i / n_i),
 * mu_i = s_i / n_i and v_i the arm's sample variance from reward_sum_sq,
 * v_i = (q_i - s_i^2 / n_i + 1/4) / n_i with q_i the sum of squared
 * normalised rewards. The 1/4 is one pseudo-observation of the largest
 * variance a reward in [0, 1] can have, so that an arm with one pull or
 * identical rewards stays uncertain; an untried arm draws from
 * Normal(1/2, 1/4). alpha0 and beta0 do not apply (an unknown key with
 * "gaussian").
 *
 * The choice consumes the thread's stream exactly as the ABI 1 plugin did
 * (one Beta or one standard normal draw per arm in arm order, one
 * rng_below per exact tie), so seeded runs with probability_draws 0 give
 * the same choices as before.
 *
 * Probability (estimated, flagged): P(theta_arm is the largest) has no cheap
 * closed form. "probability_draws" (integer in [0, 100000], default 256): S
 * fresh joint draws of all arms from this thread's stream, after the
 * choice's draws (so independent of the choice); the estimate is the share
 * of them that the chosen arm leads, never below 1 / (2S) (an arm that was
 * played has a probability above 0). Its standard error is
 * sqrt(p (1 - p) / S); its cost S K posterior draws. With ABI 2.2's
 * in->probabilities every arm's share of the same draws is reported too
 * (summing to 1; see floor_chosen() in beta_draws.h for the floor).
 * probability_draws 0: the probability is NaN (still flagged) and costs
 * nothing. explain(): scores, each arm's posterior mean.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "beta_draws.h"
#include "mab/policy.h"

typedef struct thompson_state {
    double alpha0;
    double beta0;
    int gaussian;
    size_t probability_draws;
} thompson_state;

static int thompson_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                           mab_error *err)
{
    const mab_core_api *api = init->api;
    double alpha0 = 1.0, beta0 = 1.0;
    int64_t draws;
    const char *likelihood;
    int rc = api->params_string(init->params, "likelihood", "bernoulli", &likelihood);
    if (rc != MAB_OK)
        return rc;
    int gaussian = strcmp(likelihood, "gaussian") == 0;
    if (!gaussian && strcmp(likelihood, "bernoulli") != 0)
        return api->params_fail(init->params, "likelihood",
                                "\"%s\" is neither \"bernoulli\" nor \"gaussian\"", likelihood);
    if (!gaussian &&
        ((rc = api->params_double(init->params, "alpha0", 1.0, 1e-9, 1e6, &alpha0)) != MAB_OK ||
         (rc = api->params_double(init->params, "beta0", 1.0, 1e-9, 1e6, &beta0)) != MAB_OK))
        return rc;
    rc = api->params_int(init->params, "probability_draws", 256, 0, 100000, &draws);
    if (rc != MAB_OK)
        return rc;
    thompson_state *s = malloc(sizeof *s);
    if (!s)
        return api->error_set(err, MAB_ENOMEM, "thompson: out of memory");
    s->alpha0 = alpha0;
    s->beta0 = beta0;
    s->gaussian = gaussian;
    s->probability_draws = (size_t)draws;
    layout->arm_stats = 0;
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void thompson_destroy(void *state)
{
    free(state);
}

/*
 * Every arm's posterior: Beta shapes (x, y) = (a, b), or under the Gaussian
 * likelihood the Normal's (x, y) = (mean, standard deviation). A store can
 * hand over totals no run of the engine makes (a damaged or hand-edited
 * record with a negative sum): the Beta shapes stay above 0, where they are
 * defined.
 */
/* max(0, v), NaN to 0, as fmax(0.0, v) gives, without fmax's libm call (an
   arm's guard runs K times a choose). */
static inline double nonnegative(double v)
{
    return v > 0.0 ? v : 0.0;
}

static void thompson_posteriors(const thompson_state *s, const mab_arm_view *arms, size_t n,
                                double *x, double *y)
{
    if (!s->gaussian) {
        double alpha0 = s->alpha0, beta0 = s->beta0;
        for (size_t i = 0; i < n; i++) {
            double successes = nonnegative(arms[i].reward_sum);
            double failures = nonnegative((double)(int64_t)arms[i].pulls - successes);
            x[i] = alpha0 + successes;
            y[i] = beta0 + failures;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (arms[i].pulls == 0) {
            x[i] = 0.5;
            y[i] = 0.5;
            continue;
        }
        double pulls = (double)(int64_t)arms[i].pulls, sum = arms[i].reward_sum;
        double deviations = nonnegative(arms[i].reward_sum_sq - sum * sum / pulls);
        double variance = (deviations + 0.25) / pulls;
        x[i] = sum / pulls;
        y[i] = sqrt(variance / pulls);
    }
}

#define THOMPSON_STACK_ARMS 64

/* The Bernoulli leader when no probability is estimated: each arm's
   posterior made as it is drawn, in arm order, the ties broken as
   beta_draw_leader breaks them, so the same draws give the same arm as
   thompson_posteriors then beta_draw_leader, without the two arrays or the
   general path's frame (tests/unit/test_policies.c compares the two). */
static size_t beta_leader_direct(const thompson_state *s, const mab_core_api *api, mab_rng *rng,
                                 const mab_arm_view *arms, size_t n)
{
    double alpha0 = s->alpha0, beta0 = s->beta0, best = -1.0;
    size_t chosen = 0, n_ties = 0;
    for (size_t i = 0; i < n; i++) {
        double successes = nonnegative(arms[i].reward_sum);
        double failures = nonnegative((double)(int64_t)arms[i].pulls - successes);
        double theta = api->rng_beta(rng, alpha0 + successes, beta0 + failures);
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

static int thompson_choose_general(const thompson_state *s, const mab_policy_input *in,
                                   mab_policy_choice *out);

static int thompson_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    const thompson_state *s = state;
    if (!s->gaussian && s->probability_draws == 0) {
        out->arm = beta_leader_direct(s, in->api, in->rng, in->arms, in->n_arms);
        out->estimated = 1;
        out->probability = NAN;
        return MAB_OK;
    }
    return thompson_choose_general(s, in, out);
}

__attribute__((noinline)) static int thompson_choose_general(const thompson_state *s,
                                                             const mab_policy_input *in,
                                                             mab_policy_choice *out)
{
    const mab_core_api *api = in->api;
    size_t n = in->n_arms;
    double stack[2 * THOMPSON_STACK_ARMS];
    size_t count_stack[THOMPSON_STACK_ARMS];
    int small = n <= THOMPSON_STACK_ARMS;
    double *x = small ? stack : malloc(2 * n * sizeof *x);
    size_t *counts = small || s->probability_draws == 0 ? count_stack
                                                        : malloc(n * sizeof *counts);
    if (!x || !counts) {
        if (!small) {
            free(x);
            if (counts != count_stack)
                free(counts);
        }
        return MAB_ENOMEM;
    }
    double *y = x + n;
    thompson_posteriors(s, in->arms, n, x, y);

    out->arm = s->gaussian ? normal_draw_leader(api, in->rng, x, y, n)
                           : beta_draw_leader(api, in->rng, x, y, n, n);
    out->estimated = 1;
    out->probability = NAN;
    if (s->probability_draws > 0) {
        if (s->gaussian)
            normal_leader_counts(api, in->rng, x, y, n, s->probability_draws, counts);
        else
            beta_leader_counts(api, in->rng, x, y, n, s->probability_draws, counts);
        out->probability = leader_shares(counts, n, s->probability_draws, out->arm,
                                         input_probabilities(in));
    }
    if (!small) {
        free(x);
        if (counts != count_stack)
            free(counts);
    }
    return MAB_OK;
}

/* Scores: each arm's posterior mean (Beta: a / (a + b); Normal: the mean). */
static int thompson_explain(const void *state, const mab_policy_input *in, double *values,
                            int *kind)
{
    const thompson_state *s = state;
    size_t n = in->n_arms;
    double *y = malloc(n * sizeof *y);
    if (!y)
        return MAB_ENOMEM;
    thompson_posteriors(s, in->arms, n, values, y);
    if (!s->gaussian)
        for (size_t i = 0; i < n; i++)
            values[i] = values[i] / (values[i] + y[i]);
    free(y);
    *kind = MAB_EXPLAIN_SCORES;
    return MAB_OK;
}

static const mab_policy2 thompson_policy = {
    MAB_POLICY2_HEADER, "thompson",
    "Thompson sampling from Beta (or Normal) posteriors of each arm's reward rate, with a "
    "Monte Carlo estimate of the choice's probability (policy ABI 2)",
    1, thompson_create, thompson_destroy, NULL, thompson_choose, thompson_explain,
};
MAB_POLICY2_DEFINE(thompson_policy)
