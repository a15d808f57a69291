/*
 * thompson.c - Thompson sampling with Beta-Bernoulli posteriors (Thompson
 * 1933; Agrawal & Goyal 2012): draw theta_i ~ Beta(alpha0 + s_i,
 * beta0 + max(0, n_i - s_i)) for every arm and play the largest.
 *
 * Params: "alpha0", "beta0" (numbers in [1e-9, 1e6], default 1: the uniform
 * prior). Rewards in [0, 1] enter s_i fractionally as they are.
 *
 * "likelihood": "bernoulli" (the default, above) or "gaussian", for
 * revenue-like rewards whose spread matters (order values, time on page):
 * theta_i ~ Normal(mu_i, v_i / n_i), mu_i = s_i / n_i and v_i the arm's
 * sample variance from reward_sum_sq, v_i = (q_i - s_i^2 / n_i + 1/4) / n_i
 * with q_i the sum of squared normalised rewards. The 1/4 is one
 * pseudo-observation of the largest variance a reward in [0, 1] can have,
 * so that an arm with one pull or identical rewards stays uncertain; an
 * untried arm draws from Normal(1/2, 1/4). alpha0 and beta0 do not apply
 * (an unknown key with "gaussian").
 *
 * The probability of the choice stays NAN: this is an ABI 1 plugin, which
 * cannot flag an estimate as such (docs/policies.md says why it stays ABI 1).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mab/policy.h"

typedef struct thompson_state {
    double alpha0;
    double beta0;
    int gaussian;
} thompson_state;

static int thompson_create(mab_params *params, size_t n_arms, void **state)
{
    double alpha0 = 1.0, beta0 = 1.0;
    const char *likelihood;
    int rc = mab_params_string(params, "likelihood", "bernoulli", &likelihood);
    if (rc != MAB_OK)
        return rc;
    int gaussian = strcmp(likelihood, "gaussian") == 0;
    if (!gaussian && strcmp(likelihood, "bernoulli") != 0)
        return mab_params_fail(params, "likelihood",
                               "\"%s\" is neither \"bernoulli\" nor \"gaussian\"", likelihood);
    if (!gaussian) {
        rc = mab_params_double(params, "alpha0", 1.0, 1e-9, 1e6, &alpha0);
        if (rc != MAB_OK)
            return rc;
        rc = mab_params_double(params, "beta0", 1.0, 1e-9, 1e6, &beta0);
        if (rc != MAB_OK)
            return rc;
    }
    thompson_state *s = malloc(sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    s->alpha0 = alpha0;
    s->beta0 = beta0;
    s->gaussian = gaussian;
    *state = s;
    return MAB_OK;
}

static void thompson_destroy(void *state)
{
    free(state);
}

/* One draw of arm's mean under the Gaussian likelihood (see the top). */
static double gaussian_draw(const mab_arm_view *arm, mab_rng *rng)
{
    if (arm->pulls == 0)
        return 0.5 + 0.5 * mab_rng_normal(rng);
    double n = (double)(int64_t)arm->pulls, sum = arm->reward_sum;
    double deviations = fmax(0.0, arm->reward_sum_sq - sum * sum / n);
    double variance = (deviations + 0.25) / n;
    return sum / n + sqrt(variance / n) * mab_rng_normal(rng);
}

static int thompson_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                           mab_rng *rng, size_t *arm, double *probability)
{
    const thompson_state *s = state;

    /* One pass, reservoir sampling over exact ties (possible when draws
       underflow to 0 or round to 1). */
    double best = -INFINITY; /* Gaussian draws can be negative */
    size_t chosen = 0, n_ties = 0;
    for (size_t i = 0; i < n_arms; i++) {
        /* A store can hand over totals no run of the engine makes (a damaged
           or hand-edited record with a negative sum): keep the Beta shapes
           above 0, where they are defined. */
        double theta;
        if (s->gaussian) {
            theta = gaussian_draw(&arms[i], rng);
        } else {
            double successes = fmax(0.0, arms[i].reward_sum);
            double failures = fmax(0.0, (double)(int64_t)arms[i].pulls - successes);
            theta = mab_rng_beta(rng, s->alpha0 + successes, s->beta0 + failures);
        }
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
