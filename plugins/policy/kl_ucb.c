/*
 * kl_ucb.c - Bernoulli KL-UCB (Garivier & Cappe 2011), policy ABI 2.
 *
 * Params: "c" (number in [0, 10], default 0), the weight of the ln ln t
 * term of the exploration bound (0 in practice, 3 in the paper's theorem).
 *
 * Choice: every untried arm first (uniformly among them, probability
 * 1 / |untried|); then the arm of largest index
 *     U_i = max{ q in [mu_i, 1] : n_i KL(mu_i, q) <= ln t + c ln ln t },
 * KL(p, q) = p ln(p / q) + (1 - p) ln((1 - p) / (1 - q)), t the total pulls,
 * mu_i = reward_sum / pulls clamped to [0, 1]. The ln ln t term is used only
 * once ln t > 1 (below, it is negative or undefined). KL(mu, q) grows with q
 * on [mu, 1], so U_i is found by Newton's method from above (see
 * kl_ucb_index), to about 1e-10.
 * Deterministic given the counters: the probability is exactly 1, or
 * 1 / |ties| among arms of equal index.
 *
 * Statistics: none (the counters suffice); ABI 2 is used so the choice
 * reports its probability and explain() gives the indices.
 */
#include <math.h>
#include <stdlib.h>

#include "mab/policy.h"
#include "probabilities.h"

typedef struct kl_ucb_state {
    double c;
} kl_ucb_state;

static int kl_ucb_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                         mab_error *err)
{
    double c;
    int rc = init->api->params_double(init->params, "c", 0.0, 0.0, 10.0, &c);
    if (rc != MAB_OK)
        return rc;
    kl_ucb_state *s = malloc(sizeof *s);
    if (!s)
        return init->api->error_set(err, MAB_ENOMEM, "kl_ucb: out of memory");
    s->c = c;
    layout->arm_stats = 0;
    layout->experiment_stats = 0;
    layout->stats_version = 1;
    *state = s;
    return MAB_OK;
}

static void kl_ucb_destroy(void *state)
{
    free(state);
}

/* p ln(p / q) with 0 ln 0 = 0. */
static double xlogx_over(double p, double q)
{
    return p > 0.0 ? p * log(p / q) : 0.0;
}

/* Bernoulli KL divergence, q strictly inside (0, 1). */
static double bernoulli_kl(double p, double q)
{
    return xlogx_over(p, q) + xlogx_over(1.0 - p, 1.0 - q);
}

/* Newton steps stop below this; the index is then within about its square
   of the root (the brief asks for 1e-6). */
#define KL_UCB_STEP 1e-10
#define KL_UCB_MAX_STEPS 100

/*
 * Largest q in [mu, 1) with n KL(mu, q) <= bound, by Newton's method on
 * f(q) = KL(mu, q) - bound / n, f'(q) = (q - mu) / (q (1 - q)). f is convex
 * and increasing on [mu, 1), so Newton started above the root stays above it
 * and decreases to it monotonically; Pinsker's inequality, KL(mu, q) >=
 * 2 (q - mu)^2, gives such a start: mu + sqrt(level / 2). A handful of
 * steps, against ~30 of bisection with two logarithms each.
 */
static double kl_ucb_index(double mu, double n, double bound)
{
    if (mu >= 1.0)
        return 1.0;
    double level = bound / n;
    if (!(level > 0.0))
        return mu;
    const double top = 1.0 - 1e-15;
    double q = mu + sqrt(level / 2.0);
    if (q > top)
        q = top;
    for (int i = 0; i < KL_UCB_MAX_STEPS; i++) {
        double f = bernoulli_kl(mu, q) - level;
        if (f <= 0.0)
            return q; /* at the root up to rounding (or the start was below 1 - 1e-15) */
        double step = f * q * (1.0 - q) / (q - mu);
        q -= step;
        if (step < KL_UCB_STEP)
            break;
    }
    return q;
}

/* Indices of all arms into values; returns how many arms are untried (their
   value is INFINITY). */
static size_t kl_ucb_indices(const kl_ucb_state *s, const mab_policy_input *in, double *values)
{
    uint64_t total = 0;
    size_t untried = 0;
    for (size_t i = 0; i < in->n_arms; i++)
        total += in->arms[i].pulls;
    double log_t = total > 0 ? log((double)total) : 0.0;
    double bound = log_t + (log_t > 1.0 ? s->c * log(log_t) : 0.0);
    for (size_t i = 0; i < in->n_arms; i++) {
        const mab_arm_view *arm = &in->arms[i];
        if (arm->pulls == 0) {
            values[i] = INFINITY;
            untried++;
            continue;
        }
        double mu = mab_arm_mean(arm);
        mu = mu < 0.0 ? 0.0 : mu > 1.0 ? 1.0 : mu; /* damaged stored totals */
        values[i] = kl_ucb_index(mu, (double)(int64_t)arm->pulls, bound);
    }
    return untried;
}

#define KL_UCB_STACK_ARMS 64

static int kl_ucb_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    double stack[KL_UCB_STACK_ARMS];
    double *values = in->n_arms <= KL_UCB_STACK_ARMS ? stack : malloc(in->n_arms * sizeof *values);
    if (!values)
        return MAB_ENOMEM;
    kl_ucb_indices(state, in, values);
    /* Untried arms are INFINITY and tie among themselves; otherwise indices
       tie only when equal (same counters give the same Newton steps). */
    size_t n_ties = 1;
    out->arm = in->api->argmax(values, in->n_arms, 0.0, in->rng, &n_ties);
    out->probability = 1.0 / (double)n_ties;
    out->estimated = 0;
    policy_probabilities_ties(in, values, values[out->arm], 0.0, n_ties);
    if (values != stack)
        free(values);
    return MAB_OK;
}

static int kl_ucb_explain(const void *state, const mab_policy_input *in, double *values,
                          int *kind)
{
    kl_ucb_indices(state, in, values);
    *kind = MAB_EXPLAIN_SCORES;
    return MAB_OK;
}

static const mab_policy2 kl_ucb_policy = {
    MAB_POLICY2_HEADER, "kl_ucb",
    "KL-UCB: plays the largest Bernoulli KL upper confidence bound (policy ABI 2)",
    1, kl_ucb_create, kl_ucb_destroy, NULL, kl_ucb_choose, kl_ucb_explain,
};
MAB_POLICY2_DEFINE(kl_ucb_policy)
