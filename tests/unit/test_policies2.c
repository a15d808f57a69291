/*
 * test_policies2.c - the policies for real traffic (issue 13), each loaded
 * from its built .so as the engine loads it (ABI 2 entry, a core table
 * built from the public API) and driven with hand-made counters,
 * statistics, times and features: kl_ucb, top_two_thompson,
 * discounted_thompson, lin_ucb, lin_igw, and thompson's Gaussian
 * likelihood (ABI 1).
 *
 * Each policy gets a chi-square test of 10^5 choices against probabilities
 * (its own reported ones, and exact ones computed here independently of the
 * plugin where the plugin only estimates), a hand-computed case, and a test
 * of every parameter's range (MAB_ECONFIG naming the JSON path). Fixed
 * seeds, p < 1e-6: a false failure is practically impossible and a wrong
 * formula fails at once.
 */
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mab/policy.h"

#define DRAWS 100000
#define PATH "experiments.e.policy"

#define assert_near(actual, expected, tolerance)                                        \
    do {                                                                               \
        double actual_ = (actual), expected_ = (expected);                             \
        if (!(fabs(actual_ - expected_) <= (tolerance)))                               \
            fail_msg("%s = %.17g, expected %.17g within %g", #actual, actual_, expected_, \
                     (double)(tolerance));                                             \
    } while (0)

/* Chi-square critical values at p = 1e-6 by degrees of freedom (index),
   from the regularised upper incomplete gamma function (mpmath, 30 digits;
   df 1-4 agree with test_policies.c's table). */
static const double CHI2_CRIT_P1E6[] = {
    0.0, 23.928, 27.631, 30.665, 33.377, 35.888, 38.258, 40.522, 42.701, 44.811,
};

static void assert_fits(const uint64_t *counts, const double *probs, size_t n, uint64_t total)
{
    double stat = 0.0;
    size_t cells = 0;
    for (size_t i = 0; i < n; i++) {
        if (probs[i] == 0.0) {
            if (counts[i] != 0)
                fail_msg("arm %zu of probability 0 chosen %llu times", i,
                         (unsigned long long)counts[i]);
            continue;
        }
        double expected = probs[i] * (double)total, diff = (double)counts[i] - expected;
        stat += diff * diff / expected;
        cells++;
    }
    size_t df = cells - 1;
    assert_true(df >= 1 && df < sizeof CHI2_CRIT_P1E6 / sizeof CHI2_CRIT_P1E6[0]);
    if (!(stat < CHI2_CRIT_P1E6[df])) {
        for (size_t i = 0; i < n; i++)
            print_error("arm %zu: observed %llu, expected %.1f\n", i,
                        (unsigned long long)counts[i], probs[i] * (double)total);
        fail_msg("chi-square %.2f >= %.3f (df %zu, p 1e-6)", stat, CHI2_CRIT_P1E6[df], df);
    }
}

/* ---- loading ---------------------------------------------------------- */

static const mab_core_api test_api = {
    MAB_CORE_API_VERSION, (uint32_t)sizeof(mab_core_api),
    mab_argmax, mab_rng_u64, mab_rng_uniform, mab_rng_below, mab_rng_normal, mab_rng_gamma,
    mab_rng_beta, mab_params_double, mab_params_int, mab_params_bool, mab_params_string,
    mab_params_fail, mab_error_set,
};

typedef struct policy2 {
    void *handle;
    const mab_policy2 *policy;
    mab_policy_layout layout;
    void *state;
    size_t n_arms;
} policy2;

static policy2 load2(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", MAB_PLUGIN_DIR, name);
    policy2 lp;
    memset(&lp, 0, sizeof lp);
    lp.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lp.handle)
        fail_msg("dlopen %s: %s", path, dlerror());
    const mab_policy2 *(*entry)(const mab_core_api *) =
        (const mab_policy2 *(*)(const mab_core_api *))dlsym(lp.handle,
                                                           MAB_POLICY2_ENTRY_SYMBOL);
    assert_non_null(entry);
    assert_null(dlsym(lp.handle, MAB_POLICY_ENTRY_SYMBOL)); /* ABI 2 only */
    lp.policy = entry(&test_api);
    assert_non_null(lp.policy);
    assert_int_equal(lp.policy->abi_major, MAB_POLICY2_ABI_MAJOR);
    assert_int_equal(lp.policy->struct_size, sizeof(mab_policy2));
    assert_true(lp.policy->core_api_version <= MAB_CORE_API_VERSION);
    assert_string_equal(lp.policy->name, name);
    return lp;
}

/* create() with JSON params under the path PATH; the params' last error
   goes to message. */
static int try_create(policy2 *lp, const char *json, size_t n_arms, const char *const *features,
                      size_t n_features, char *message, size_t len)
{
    mab_params *params = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_params_parse(json, PATH, &params, &err), MAB_OK);
    mab_policy_init init = {sizeof init, &test_api, params, n_arms, n_features, features};
    memset(&lp->layout, 0, sizeof lp->layout);
    lp->layout.struct_size = sizeof lp->layout;
    lp->state = NULL;
    lp->n_arms = n_arms;
    int rc = lp->policy->create(&init, &lp->layout, &lp->state, &err);
    if (message)
        snprintf(message, len, "%s%s", mab_params_last_error(params), err.message);
    mab_params_free(params);
    return rc;
}

static policy2 open2(const char *name, const char *json, size_t n_arms,
                     const char *const *features, size_t n_features)
{
    policy2 lp = load2(name);
    char message[2 * MAB_ERROR_MAX];
    int rc = try_create(&lp, json, n_arms, features, n_features, message, sizeof message);
    if (rc != MAB_OK)
        fail_msg("%s create(%s): %s", name, json, message);
    return lp;
}

static void close2(policy2 *lp)
{
    lp->policy->destroy(lp->state);
    dlclose(lp->handle);
}

/* create() must fail with MAB_ECONFIG and a message holding `needle`. */
static void create_refused(const char *name, const char *json, size_t n_arms,
                           const char *const *features, size_t n_features, const char *needle)
{
    policy2 lp = load2(name);
    char message[2 * MAB_ERROR_MAX];
    int rc = try_create(&lp, json, n_arms, features, n_features, message, sizeof message);
    if (rc != MAB_ECONFIG || !strstr(message, needle))
        fail_msg("%s create(%s) returned %d, \"%s\"; expected MAB_ECONFIG naming \"%s\"", name,
                 json, rc, message, needle);
    assert_null(lp.state);
    dlclose(lp.handle);
}

static mab_arm_view arm(uint64_t pulls, double reward_sum)
{
    mab_arm_view a = {pulls, pulls, reward_sum, reward_sum};
    return a;
}

static mab_policy_input input(const policy2 *lp, const mab_arm_view *arms, const double *stats,
                              const double *experiment_stats, int64_t time_ns,
                              const double *features, size_t n_features, mab_rng *rng)
{
    mab_policy_input in = {sizeof in,  &test_api, arms,     lp->n_arms, stats, experiment_stats,
                           time_ns,    features,  n_features, rng};
    return in;
}

static mab_policy_choice choose_ok(const policy2 *lp, const mab_policy_input *in)
{
    mab_policy_choice c = {lp->n_arms, -1.0, -1};
    int rc = lp->policy->choose(lp->state, in, &c);
    if (rc != MAB_OK)
        fail_msg("%s choose: %d", lp->policy->name, rc);
    assert_true(c.arm < lp->n_arms);
    return c;
}

/*
 * DRAWS choices from `in` with the given seed, counted per arm. When
 * exact_probability is not NULL each report must equal it for its arm
 * (1e-12) and be flagged exact; otherwise reports must be flagged estimated
 * and mean_reported (when not NULL) receives their mean per arm.
 */
static void count_choices(const policy2 *lp, mab_policy_input in, uint64_t seed,
                          uint64_t *counts, const double *exact_probability,
                          double *mean_reported)
{
    mab_rng *rng = mab_rng_create(seed);
    assert_non_null(rng);
    in.rng = rng;
    double sums[64] = {0};
    assert_true(lp->n_arms <= 64);
    memset(counts, 0, lp->n_arms * sizeof *counts);
    for (int d = 0; d < DRAWS; d++) {
        mab_policy_choice c = choose_ok(lp, &in);
        counts[c.arm]++;
        if (exact_probability) {
            assert_int_equal(c.estimated, 0);
            assert_near(c.probability, exact_probability[c.arm], 1e-12);
        } else {
            assert_int_equal(c.estimated, 1);
            assert_true(c.probability > 0.0 && c.probability <= 1.0);
            sums[c.arm] += c.probability;
        }
    }
    if (mean_reported)
        for (size_t i = 0; i < lp->n_arms; i++)
            mean_reported[i] = counts[i] ? sums[i] / (double)counts[i] : 0.0;
    mab_rng_destroy(rng);
}

/* ---- Beta posteriors by quadrature (independent of the plugins) -------- */

static double beta_pdf(double x, double a, double b)
{
    if (x <= 0.0 || x >= 1.0)
        return 0.0; /* shapes >= 1 here: the endpoints are harmless */
    return exp(lgamma(a + b) - lgamma(a) - lgamma(b) + (a - 1.0) * log(x) +
               (b - 1.0) * log1p(-x));
}

#define GRID 20000
static double cdf_grid[8][GRID + 1];

/* P(theta_i is the largest) for n <= 8 Beta(a_i, b_i), Simpson's rule: the
   CDFs accumulated interval by interval, then integral f_i prod_j F_j. */
static void beta_leader_probabilities(const double *a, const double *b, size_t n, double *p)
{
    const double h = 1.0 / GRID;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        cdf_grid[i][0] = 0.0;
        for (int g = 0; g < GRID; g++) {
            double x = g * h;
            cdf_grid[i][g + 1] = cdf_grid[i][g] + h / 6.0 *
                                                      (beta_pdf(x, a[i], b[i]) +
                                                       4.0 * beta_pdf(x + h / 2, a[i], b[i]) +
                                                       beta_pdf(x + h, a[i], b[i]));
        }
        assert_near(cdf_grid[i][GRID], 1.0, 1e-9);
    }
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (int g = 0; g <= GRID; g++) {
            double f = beta_pdf(g * h, a[i], b[i]);
            for (size_t j = 0; j < n; j++)
                if (j != i)
                    f *= cdf_grid[j][g];
            sum += (g == 0 || g == GRID ? 1.0 : g % 2 ? 4.0 : 2.0) * f;
        }
        p[i] = sum * h / 3.0;
        total += p[i];
    }
    assert_near(total, 1.0, 1e-8);
}

/* ---- kl_ucb ----------------------------------------------------------- */

/* Indices computed by hand: U solves n KL(mu, U) = ln t + c ln ln t, found
   by 200 bisections in 30-digit arithmetic (mpmath); for mu = 0 the root is
   closed: n (-ln(1 - U)) = ln t, U = 1 - t^(-1/n). */
static void test_kl_ucb_hand_computed_indices(void **unused)
{
    (void)unused;
    policy2 lp = open2("kl_ucb", "{}", 2, NULL, 0);
    assert_int_equal(lp.layout.arm_stats, 0);
    assert_int_equal(lp.layout.experiment_stats, 0);
    mab_arm_view arms[2] = {arm(10, 3), arm(20, 12)}; /* t = 30 */
    double u[2];
    int kind = 0;
    mab_policy_input in = input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, u, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
    assert_near(u[0], 0.700629438194187, 1e-6);
    assert_near(u[1], 0.842997142733071, 1e-6);
    /* The arm of largest index is played, with probability exactly 1. */
    mab_rng *rng = mab_rng_create(3);
    in.rng = rng;
    for (int i = 0; i < 100; i++) {
        mab_policy_choice c = choose_ok(&lp, &in);
        assert_int_equal(c.arm, 1);
        assert_true(c.probability == 1.0 && c.estimated == 0);
    }
    mab_rng_destroy(rng);
    close2(&lp);

    lp = open2("kl_ucb", "{\"c\": 3}", 2, NULL, 0);
    in = input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, u, &kind), MAB_OK);
    assert_near(u[0], 0.835734277574316, 1e-6); /* ln 30 + 3 ln ln 30 */
    close2(&lp);

    lp = open2("kl_ucb", "{}", 2, NULL, 0);
    mab_arm_view zero[2] = {arm(5, 0), arm(25, 10)};
    in = input(&lp, zero, NULL, NULL, 0, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, u, &kind), MAB_OK);
    assert_near(u[0], 1.0 - pow(30.0, -1.0 / 5.0), 1e-6);
    close2(&lp);
}

static void test_kl_ucb_ties_and_untried_match_probabilities(void **unused)
{
    (void)unused;
    policy2 lp = open2("kl_ucb", "{}", 4, NULL, 0);
    /* Three equal arms tie: 1/3 each, the worse arm never. */
    mab_arm_view tied[4] = {arm(10, 5), arm(10, 1), arm(10, 5), arm(10, 5)};
    const double p_tied[4] = {1.0 / 3, 0.0, 1.0 / 3, 1.0 / 3};
    uint64_t counts[4];
    count_choices(&lp, input(&lp, tied, NULL, NULL, 0, NULL, 0, NULL), 11, counts, p_tied, NULL);
    assert_fits(counts, p_tied, 4, DRAWS);
    /* Untried arms first, uniformly, whatever the others' means. */
    mab_arm_view untried[4] = {arm(0, 0), arm(50, 50), arm(0, 0), arm(3, 0)};
    const double p_untried[4] = {0.5, 0.0, 0.5, 0.0};
    count_choices(&lp, input(&lp, untried, NULL, NULL, 0, NULL, 0, NULL), 12, counts, p_untried,
                  NULL);
    assert_fits(counts, p_untried, 4, DRAWS);
    close2(&lp);
}

static void test_kl_ucb_params_are_validated(void **unused)
{
    (void)unused;
    create_refused("kl_ucb", "{\"c\": -1}", 3, NULL, 0, PATH ".c");
    create_refused("kl_ucb", "{\"c\": 11}", 3, NULL, 0, PATH ".c");
    create_refused("kl_ucb", "{\"c\": \"x\"}", 3, NULL, 0, PATH ".c");
}

/* ---- top_two_thompson ------------------------------------------------- */

/* Russo's top-two rule written out: P(a) = beta L_a + (1 - beta) L_a
   sum_{i != a} L_i / (1 - L_i), with L the leader probabilities. */
static void ttts_exact(const double *leader, size_t n, double beta, double *p)
{
    for (size_t a = 0; a < n; a++) {
        double challenger = 0.0;
        for (size_t i = 0; i < n; i++)
            if (i != a)
                challenger += leader[i] * leader[a] / (1.0 - leader[i]);
        p[a] = beta * leader[a] + (1.0 - beta) * challenger;
    }
}

static void check_ttts(const char *json, double beta, uint64_t seed)
{
    policy2 lp = open2("top_two_thompson", json, 3, NULL, 0);
    /* Posteriors Beta(4, 8), Beta(6, 6), Beta(9, 13) under the uniform prior. */
    mab_arm_view arms[3] = {arm(10, 3), arm(10, 5), arm(20, 8)};
    const double a[3] = {4, 6, 9}, b[3] = {8, 6, 13};
    double leader[3], exact[3], reported[3];
    beta_leader_probabilities(a, b, 3, leader);
    ttts_exact(leader, 3, beta, exact);
    uint64_t counts[3];
    count_choices(&lp, input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL), seed, counts, NULL,
                  reported);
    assert_fits(counts, exact, 3, DRAWS);
    /* The reported estimates (256 draws each) average to the exact value;
       their own noise averages out over ~3e4 reports per arm, what is left
       is the plug-in estimator's O(1/256) bias. */
    double total = 0.0;
    for (int i = 0; i < 3; i++) {
        assert_near(reported[i], exact[i], 0.01);
        total += reported[i];
    }
    /* And the frequencies fit the reported probabilities too. */
    for (int i = 0; i < 3; i++)
        reported[i] /= total;
    assert_fits(counts, reported, 3, DRAWS);
    close2(&lp);
}

static void test_ttts_matches_top_two_rule(void **unused)
{
    (void)unused;
    check_ttts("{}", 0.5, 31);
    check_ttts("{\"beta\": 0.2}", 0.2, 32);
}

static void test_ttts_prior_and_no_probability(void **unused)
{
    (void)unused;
    policy2 lp = open2("top_two_thompson",
                       "{\"alpha0\": 2, \"beta0\": 3, \"probability_draws\": 0, \"beta\": 0.7}",
                       3, NULL, 0);
    /* Beta(2 + s, 3 + n - s): Beta(4.5, 4.5), Beta(3.5, 7.5), Beta(5.25, 4.75). */
    mab_arm_view arms[3] = {arm(4, 2.5), arm(6, 1.5), arm(5, 3.25)};
    const double a[3] = {4.5, 3.5, 5.25}, b[3] = {4.5, 7.5, 4.75};
    double leader[3], exact[3];
    beta_leader_probabilities(a, b, 3, leader);
    ttts_exact(leader, 3, 0.7, exact);
    mab_rng *rng = mab_rng_create(33);
    mab_policy_input in = input(&lp, arms, NULL, NULL, 0, NULL, 0, rng);
    uint64_t counts[3] = {0, 0, 0};
    for (int d = 0; d < DRAWS; d++) {
        mab_policy_choice c = choose_ok(&lp, &in);
        assert_true(isnan(c.probability));
        counts[c.arm]++;
    }
    assert_fits(counts, exact, 3, DRAWS);
    /* explain: posterior means. */
    double means[3];
    int kind;
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
    for (int i = 0; i < 3; i++)
        assert_near(means[i], a[i] / (a[i] + b[i]), 1e-15);
    mab_rng_destroy(rng);
    close2(&lp);
}

static void test_ttts_params_are_validated(void **unused)
{
    (void)unused;
    create_refused("top_two_thompson", "{\"beta\": 0}", 3, NULL, 0, PATH ".beta");
    create_refused("top_two_thompson", "{\"beta\": 1}", 3, NULL, 0, PATH ".beta");
    create_refused("top_two_thompson", "{\"beta\": 1.5}", 3, NULL, 0, PATH ".beta");
    create_refused("top_two_thompson", "{\"alpha0\": 0}", 3, NULL, 0, PATH ".alpha0");
    create_refused("top_two_thompson", "{\"beta0\": 2e6}", 3, NULL, 0, PATH ".beta0");
    create_refused("top_two_thompson", "{\"probability_draws\": -1}", 3, NULL, 0,
                   PATH ".probability_draws");
    create_refused("top_two_thompson", "{\"probability_draws\": 1000001}", 3, NULL, 0,
                   PATH ".probability_draws");
    create_refused("top_two_thompson", "{\"probability_draws\": 2.5}", 3, NULL, 0,
                   PATH ".probability_draws");
}

/* ---- discounted_thompson ---------------------------------------------- */

#define T0_NS (1767225600LL * 1000000000LL) /* the plugin's origin, 2026-01-01 */
#define SEC 1000000000LL

/* Feed one event through update() and add its deltas to stats, as the
   core does. Returns update's status. */
static int feed(const policy2 *lp, double *stats, int kind, size_t a, double reward,
                int64_t time_ns, const double *features, size_t n_features)
{
    double delta[4096 + 64];
    size_t per_arm = lp->layout.arm_stats;
    assert_true(per_arm <= 4096);
    memset(delta, 0, sizeof delta);
    mab_policy_event ev = {sizeof ev, &test_api, kind,     a,        lp->n_arms,
                           reward,    NAN,       time_ns, features, n_features};
    int rc = lp->policy->update(lp->state, &ev, delta, delta + per_arm);
    if (rc == MAB_OK)
        for (size_t i = 0; i < per_arm; i++) {
            assert_true(isfinite(delta[i]));
            stats[a * per_arm + i] += delta[i];
        }
    return rc;
}

static void feed_ok(const policy2 *lp, double *stats, int kind, size_t a, double reward,
                    int64_t time_ns)
{
    assert_int_equal(feed(lp, stats, kind, a, reward, time_ns, NULL, 0), MAB_OK);
}

static double dt_stats[3 * 512];

/* Decayed masses after known times, by hand: with half_life 100 s an event
   100 s old weighs 1/2, 200 s old 1/4. */
static void test_dt_discounted_sums_after_known_times(void **unused)
{
    (void)unused;
    policy2 lp = open2("discounted_thompson", "{\"half_life\": 100}", 3, NULL, 0);
    assert_int_equal(lp.layout.arm_stats, 2 * 256);
    assert_int_equal(lp.layout.stats_version, 100);
    memset(dt_stats, 0, sizeof dt_stats);
    int64_t base = T0_NS + 1000 * SEC;
    for (int i = 0; i < 4; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 0, 0.0, base);
    feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 0, 1.0, base);
    feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 0, 0.0, base + 100 * SEC);
    feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 0, 0.0, base + 100 * SEC);
    feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 1, 0.0, base + 200 * SEC);
    feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 1, 0.5, base + 200 * SEC);
    mab_arm_view arms[3] = {arm(6, 1), arm(1, 0.5), arm(0, 0)};
    double means[3];
    int kind;
    mab_policy_input in = input(&lp, arms, dt_stats, NULL, base + 200 * SEC, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
    /* arm 0: S = 1/4, F = 3/4 + 2/2 = 7/4; Beta(1 + 1/4, 1 + 7/4). */
    assert_near(means[0], 1.25 / 4.0, 1e-12);
    assert_near(means[1], 1.5 / 3.0, 1e-12); /* S = F = 1/2, no time elapsed */
    assert_near(means[2], 0.5, 1e-15);
    /* 300 s later everything weighs 1/8 as much. */
    in.time_ns = base + 500 * SEC;
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_OK);
    assert_near(means[0], (1.0 + 0.25 / 8) / (2.0 + 2.0 / 8), 1e-12);
    assert_near(means[1], (1.0 + 0.5 / 8) / (2.0 + 1.0 / 8), 1e-12);
    close2(&lp);
}

/* Across epochs: the frame changes, the decay does not. Epochs are
   E = 1300 tau = 1300 * 100 / ln 2 s long from the origin. */
static void test_dt_epochs_and_retention(void **unused)
{
    (void)unused;
    policy2 lp = open2("discounted_thompson", "{\"half_life\": 100}", 3, NULL, 0);
    double epoch_s = 1300.0 * 100.0 / log(2.0);
    int64_t boundary = T0_NS + (int64_t)(epoch_s * 1e9);
    memset(dt_stats, 0, sizeof dt_stats);
    /* 10^6 pulls and 10^6 rewards at the end of epoch 0, where the frame's
       weight is near e^650: the sums stay finite. */
    for (int i = 0; i < 3; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 0, 0.0, boundary - 10 * SEC);
    feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 0, 1.0, boundary - 10 * SEC);
    for (size_t i = 0; i < 2 * 256; i++)
        dt_stats[i] *= 1e6;
    for (size_t i = 0; i < 2 * 256; i++)
        assert_true(isfinite(dt_stats[i]));
    /* Read 100 s later, in epoch 1: each event weighs 2^-(110/100). */
    mab_arm_view arms[3] = {arm(3, 1), arm(0, 0), arm(0, 0)};
    double means[3];
    int kind;
    double w = pow(2.0, -1.1) * 1e6;
    mab_policy_input in = input(&lp, arms, dt_stats, NULL, boundary + 100 * SEC, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_OK);
    assert_near(means[0], (1.0 + w) / (2.0 + 3.0 * w), 1e-12);
    /* An epoch later they weigh e^-1300: nothing, and the prior is back. */
    in.time_ns = boundary + (int64_t)(epoch_s * 1e9) + 100 * SEC;
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_OK);
    assert_near(means[0], 0.5, 1e-12);
    /* Before the origin and past the retention (256 epochs): refused. */
    double none[3 * 512] = {0};
    assert_int_equal(feed(&lp, none, MAB_EVENT_PULL, 0, 0.0, T0_NS - SEC, NULL, 0), MAB_EINVAL);
    int64_t end = T0_NS + (int64_t)(256.0 * epoch_s * 1e9);
    assert_int_equal(feed(&lp, none, MAB_EVENT_REWARD, 0, 1.0, end + SEC, NULL, 0), MAB_EINVAL);
    assert_int_equal(feed(&lp, none, MAB_EVENT_PULL, 0, 0.0, end - SEC, NULL, 0), MAB_OK);
    mab_rng *rng = mab_rng_create(5);
    in.rng = rng;
    in.time_ns = T0_NS - SEC;
    mab_policy_choice c;
    assert_int_equal(lp.policy->choose(lp.state, &in, &c), MAB_ERANGE);
    in.time_ns = end + SEC;
    assert_int_equal(lp.policy->choose(lp.state, &in, &c), MAB_ERANGE);
    assert_int_equal(lp.policy->explain(lp.state, &in, means, &kind), MAB_ERANGE);
    mab_rng_destroy(rng);
    close2(&lp);
    /* A day's half-life keeps 100 years in 20 epochs. */
    lp = open2("discounted_thompson", "{}", 3, NULL, 0);
    assert_int_equal(lp.layout.arm_stats, 2 * 20);
    assert_int_equal(lp.layout.stats_version, 86400);
    close2(&lp);
}

static void test_dt_matches_decayed_posteriors(void **unused)
{
    (void)unused;
    policy2 lp = open2("discounted_thompson", "{\"half_life\": 100}", 3, NULL, 0);
    memset(dt_stats, 0, sizeof dt_stats);
    int64_t base = T0_NS + 5000 * SEC, now = base + 100 * SEC;
    /* arm 0: 10 pulls, 3 rewards, 100 s before now: S = 1.5, F = 3.5;
       arm 1: 10 pulls, 5 rewards, now: S = F = 5; arm 2: 20 pulls, 8 rewards. */
    for (int i = 0; i < 10; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 0, 0.0, base);
    for (int i = 0; i < 3; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 0, 1.0, base);
    for (int i = 0; i < 10; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 1, 0.0, now);
    for (int i = 0; i < 5; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 1, 1.0, now);
    for (int i = 0; i < 20; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_PULL, 2, 0.0, now);
    for (int i = 0; i < 8; i++)
        feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, 2, 1.0, now);
    const double a[3] = {2.5, 6, 9}, b[3] = {4.5, 6, 13};
    double exact[3], reported[3];
    beta_leader_probabilities(a, b, 3, exact);
    mab_arm_view arms[3] = {arm(10, 3), arm(10, 5), arm(20, 8)};
    uint64_t counts[3];
    count_choices(&lp, input(&lp, arms, dt_stats, NULL, now, NULL, 0, NULL), 41, counts, NULL,
                  reported);
    assert_fits(counts, exact, 3, DRAWS);
    double total = 0.0;
    for (int i = 0; i < 3; i++) {
        assert_near(reported[i], exact[i], 0.01);
        total += reported[i];
    }
    for (int i = 0; i < 3; i++)
        reported[i] /= total;
    assert_fits(counts, reported, 3, DRAWS);
    close2(&lp);
}

static void test_dt_params_are_validated(void **unused)
{
    (void)unused;
    create_refused("discounted_thompson", "{\"half_life\": 0}", 3, NULL, 0, PATH ".half_life");
    create_refused("discounted_thompson", "{\"half_life\": 1.5}", 3, NULL, 0, PATH ".half_life");
    create_refused("discounted_thompson", "{\"half_life\": 2e9}", 3, NULL, 0, PATH ".half_life");
    create_refused("discounted_thompson", "{\"alpha0\": 0}", 3, NULL, 0, PATH ".alpha0");
    create_refused("discounted_thompson", "{\"beta0\": -1}", 3, NULL, 0, PATH ".beta0");
    create_refused("discounted_thompson", "{\"probability_draws\": 100001}", 3, NULL, 0,
                   PATH ".probability_draws");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kl_ucb_hand_computed_indices),
        cmocka_unit_test(test_kl_ucb_ties_and_untried_match_probabilities),
        cmocka_unit_test(test_kl_ucb_params_are_validated),
        cmocka_unit_test(test_ttts_matches_top_two_rule),
        cmocka_unit_test(test_ttts_prior_and_no_probability),
        cmocka_unit_test(test_ttts_params_are_validated),
        cmocka_unit_test(test_dt_discounted_sums_after_known_times),
        cmocka_unit_test(test_dt_epochs_and_retention),
        cmocka_unit_test(test_dt_matches_decayed_posteriors),
        cmocka_unit_test(test_dt_params_are_validated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
