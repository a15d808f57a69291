/*
 * test_policies2.c - the policies for real traffic (issue 13), each loaded
 * from its built .so as the engine loads it (ABI 2 entry, a core table
 * built from the public API) and driven with hand-made counters,
 * statistics, times and features: kl_ucb, top_two_thompson,
 * discounted_thompson, lin_ucb, lin_igw, and thompson's Gaussian
 * likelihood; and the ABI 2.2 probabilities of every arm that the three
 * Thompson policies fill.
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
    mab_policy_init init = {sizeof init, &test_api, params, n_arms, n_features, features, 3600};
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
    /* Designated: fields appended by later minors start at zero. */
    mab_policy_input in = {.struct_size = sizeof in,
                           .api = &test_api,
                           .arms = arms,
                           .n_arms = lp->n_arms,
                           .arm_stats = stats,
                           .experiment_stats = experiment_stats,
                           .time_ns = time_ns,
                           .features = features,
                           .n_features = n_features,
                           .rng = rng};
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
    assert_near(u[0], 0.700629438194187, 1e-9);
    assert_near(u[1], 0.842997142733071, 1e-9);
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
    assert_near(u[0], 0.835734277574316, 1e-9); /* ln 30 + 3 ln ln 30 */
    close2(&lp);

    lp = open2("kl_ucb", "{}", 2, NULL, 0);
    mab_arm_view zero[2] = {arm(5, 0), arm(25, 10)};
    in = input(&lp, zero, NULL, NULL, 0, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, u, &kind), MAB_OK);
    assert_near(u[0], 1.0 - pow(30.0, -1.0 / 5.0), 1e-9);
    /* Extremes: a mean of 1 has index 1; 10^12 pulls sit between the mean
       and Pinsker's bound mu + sqrt(ln t / (2 n)). */
    mab_arm_view extreme[2] = {arm(4, 4), arm(1000000000000ULL, 3e11)};
    in = input(&lp, extreme, NULL, NULL, 0, NULL, 0, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, u, &kind), MAB_OK);
    assert_true(u[0] == 1.0);
    double pinsker = sqrt(log(1000000000004.0) / 2e12);
    assert_true(u[1] > 0.3 && u[1] <= 0.3 + pinsker);
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
    /* The reported estimates (256 or 64 draws each) average to the exact
       value: their own noise averages out over ~3e4 reports per arm, what
       is left is the plug-in estimator's O(1/draws) bias. */
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
    check_ttts("{\"beta\": 0.2, \"probability_draws\": 64}", 0.2, 32);
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
    assert_int_equal(lp.layout.arm_stats, 2 * 64);
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
    for (size_t i = 0; i < 2 * 64; i++)
        dt_stats[i] *= 1e6;
    for (size_t i = 0; i < 2 * 64; i++)
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
    /* Before the origin and past the retention (64 epochs): refused. */
    double none[3 * 512] = {0};
    assert_int_equal(feed(&lp, none, MAB_EVENT_PULL, 0, 0.0, T0_NS - SEC, NULL, 0), MAB_EINVAL);
    int64_t end = T0_NS + (int64_t)(64.0 * epoch_s * 1e9);
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
    policy2 lp = open2("discounted_thompson", "{\"half_life\": 100, \"probability_draws\": 64}",
                       3, NULL, 0);
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

/* ---- lin_ucb and lin_igw ---------------------------------------------- */

static const char *const ONE_FEATURE[] = {"f"};

/* One feature f plus the intercept: d = 2, 6 statistics per arm. Arm 0
   pulled at f = 1 and f = 2 and rewarded 1 at f = 2; arm 2 pulled twice at
   f = 1 and rewarded 1 both times; arm 1 never. */
static void linear_history(const policy2 *lp, double *stats)
{
    memset(stats, 0, 3 * 6 * sizeof *stats);
    const double f1[1] = {1.0}, f2[1] = {2.0};
    assert_int_equal(feed(lp, stats, MAB_EVENT_PULL, 0, 0.0, 0, f1, 1), MAB_OK);
    assert_int_equal(feed(lp, stats, MAB_EVENT_PULL, 0, 0.0, 0, f2, 1), MAB_OK);
    assert_int_equal(feed(lp, stats, MAB_EVENT_REWARD, 0, 1.0, 0, f2, 1), MAB_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(feed(lp, stats, MAB_EVENT_PULL, 2, 0.0, 0, f1, 1), MAB_OK);
        assert_int_equal(feed(lp, stats, MAB_EVENT_REWARD, 2, 1.0, 0, f1, 1), MAB_OK);
    }
}

/*
 * By hand, at f = 1 (x = (1, 1)):
 *  arm 0: G = [[2, 3], [3, 5]], A = [[3, 3], [3, 6]], b = (1, 2),
 *         A^-1 = [[2/3, -1/3], [-1/3, 1/3]], theta = (0, 1/3):
 *         mean 1/3, x^T A^-1 x = 1/3;
 *  arm 1: A = I, b = 0: mean 0, x^T A^-1 x = 2;
 *  arm 2: G = [[2, 2], [2, 2]], A = [[3, 2], [2, 3]], b = (2, 2),
 *         A^-1 = [[3, -2], [-2, 3]] / 5, theta = (2/5, 2/5):
 *         mean 4/5, x^T A^-1 x = 2/5.
 */
static const double HAND_MEAN[3] = {1.0 / 3.0, 0.0, 0.8};
static const double HAND_VAR[3] = {1.0 / 3.0, 2.0, 0.4};

static void test_lin_ucb_hand_computed_scores(void **unused)
{
    (void)unused;
    policy2 lp = open2("lin_ucb", "{}", 3, ONE_FEATURE, 1);
    assert_int_equal(lp.layout.arm_stats, 6);
    double stats[18];
    linear_history(&lp, stats);
    const double g0[6] = {2, 3, 3, 5, 1, 2}; /* G row-major, then b */
    for (int i = 0; i < 6; i++)
        assert_true(stats[i] == g0[i]);
    mab_arm_view arms[3] = {arm(2, 1), arm(0, 0), arm(2, 2)};
    const double f1[1] = {1.0};
    double scores[3];
    int kind;
    mab_policy_input in = input(&lp, arms, stats, NULL, 0, f1, 1, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, scores, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
    for (int i = 0; i < 3; i++)
        assert_near(scores[i], HAND_MEAN[i] + sqrt(HAND_VAR[i]), 1e-12);
    /* alpha = 1: arm 2 (0.8 + 0.632) beats arm 1 (1.414), always. */
    mab_rng *rng = mab_rng_create(51);
    in.rng = rng;
    mab_policy_choice c = choose_ok(&lp, &in);
    assert_int_equal(c.arm, 2);
    assert_true(c.probability == 1.0 && c.estimated == 0);
    close2(&lp);
    /* alpha = 2: the untried arm 1 (2.828) beats arm 2 (0.8 + 1.265). */
    lp = open2("lin_ucb", "{\"alpha\": 2}", 3, ONE_FEATURE, 1);
    in = input(&lp, arms, stats, NULL, 0, f1, 1, rng);
    assert_int_equal(lp.policy->explain(lp.state, &in, scores, &kind), MAB_OK);
    for (int i = 0; i < 3; i++)
        assert_near(scores[i], HAND_MEAN[i] + 2.0 * sqrt(HAND_VAR[i]), 1e-12);
    c = choose_ok(&lp, &in);
    assert_int_equal(c.arm, 1);
    mab_rng_destroy(rng);
    close2(&lp);
}

static void test_lin_ucb_ties_match_probabilities(void **unused)
{
    (void)unused;
    policy2 lp = open2("lin_ucb", "{\"alpha\": 2}", 4, ONE_FEATURE, 1);
    /* Arms 1 and 3 never played: equal bounds (2.828), 1/2 each; the
       others lower (1.488, 2.065). */
    double stats[24];
    linear_history(&lp, stats);
    memset(stats + 18, 0, 6 * sizeof *stats);
    mab_arm_view arms[4] = {arm(2, 1), arm(0, 0), arm(2, 2), arm(0, 0)};
    const double f1[1] = {1.0}, p[4] = {0.0, 0.5, 0.0, 0.5};
    uint64_t counts[4];
    count_choices(&lp, input(&lp, arms, stats, NULL, 0, f1, 1, NULL), 52, counts, p, NULL);
    assert_fits(counts, p, 4, DRAWS);
    close2(&lp);
}

/* A missing feature (NAN) is an error in choose and update: nothing is
   learnt from a guess. */
static void test_linear_missing_feature_is_an_error(void **unused)
{
    (void)unused;
    const char *names[2] = {"lin_ucb", "lin_igw"};
    for (int k = 0; k < 2; k++) {
        policy2 lp = open2(names[k], "{}", 3, ONE_FEATURE, 1);
        double stats[18];
        linear_history(&lp, stats);
        const double missing[1] = {NAN}, infinite[1] = {INFINITY};
        double before[18];
        memcpy(before, stats, sizeof stats);
        assert_int_equal(feed(&lp, stats, MAB_EVENT_PULL, 0, 0.0, 0, missing, 1), MAB_EINVAL);
        assert_int_equal(feed(&lp, stats, MAB_EVENT_REWARD, 0, 1.0, 0, missing, 1), MAB_EINVAL);
        assert_int_equal(feed(&lp, stats, MAB_EVENT_PULL, 0, 0.0, 0, infinite, 1), MAB_EINVAL);
        assert_memory_equal(before, stats, sizeof stats);
        mab_arm_view arms[3] = {arm(2, 1), arm(0, 0), arm(2, 2)};
        mab_rng *rng = mab_rng_create(53);
        mab_policy_input in = input(&lp, arms, stats, NULL, 0, missing, 1, rng);
        mab_policy_choice c;
        assert_int_equal(lp.policy->choose(lp.state, &in, &c), MAB_EINVAL);
        double values[3];
        int kind;
        assert_int_equal(lp.policy->explain(lp.state, &in, values, &kind), MAB_EINVAL);
        mab_rng_destroy(rng);
        close2(&lp);
    }
}

static void test_lin_ucb_params_are_validated(void **unused)
{
    (void)unused;
    create_refused("lin_ucb", "{\"alpha\": -0.1}", 3, ONE_FEATURE, 1, PATH ".alpha");
    create_refused("lin_ucb", "{\"alpha\": 2e6}", 3, ONE_FEATURE, 1, PATH ".alpha");
    create_refused("lin_ucb", "{\"alpha\": \"1\"}", 3, ONE_FEATURE, 1, PATH ".alpha");
    const char *many[33];
    for (int i = 0; i < 33; i++)
        many[i] = "x";
    create_refused("lin_ucb", "{}", 3, many, 33, PATH ".features");
    create_refused("lin_igw", "{}", 3, many, 33, PATH ".features");
    /* 32 features: d = 33, 33 * 33 + 33 statistics per arm. */
    policy2 lp = open2("lin_ucb", "{}", 3, many, 32);
    assert_int_equal(lp.layout.arm_stats, 33 * 33 + 33);
    close2(&lp);
}

/* With the hand-computed means (1/3, 0, 4/5) and gamma = 10, arm 2 is best:
   p(0) = 1 / (3 + 10 (4/5 - 1/3)) = 3/23, p(1) = 1 / (3 + 8) = 1/11,
   p(2) = 1 - 3/23 - 1/11 = 197/253. */
static void test_lin_igw_hand_computed_probabilities(void **unused)
{
    (void)unused;
    policy2 lp = open2("lin_igw", "{\"gamma\": 10}", 3, ONE_FEATURE, 1);
    double stats[18];
    linear_history(&lp, stats);
    mab_arm_view arms[3] = {arm(2, 1), arm(0, 0), arm(2, 2)};
    const double f1[1] = {1.0}, p[3] = {3.0 / 23.0, 1.0 / 11.0, 197.0 / 253.0};
    double values[3];
    int kind;
    mab_policy_input in = input(&lp, arms, stats, NULL, 0, f1, 1, NULL);
    assert_int_equal(lp.policy->explain(lp.state, &in, values, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_PROBABILITIES);
    for (int i = 0; i < 3; i++)
        assert_near(values[i], p[i], 1e-12);
    uint64_t counts[3];
    count_choices(&lp, in, 54, counts, p, NULL);
    assert_fits(counts, p, 3, DRAWS);
    close2(&lp);
    /* Ties for the best: the first is "best", the other gets 1/K. Nothing
       learnt: all scores 0, so 1/3 each. */
    lp = open2("lin_igw", "{}", 3, ONE_FEATURE, 1);
    double none[18] = {0};
    const double uniform[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    count_choices(&lp, input(&lp, arms, none, NULL, 0, f1, 1, NULL), 55, counts, uniform, NULL);
    assert_fits(counts, uniform, 3, DRAWS);
    close2(&lp);
}

static void test_lin_igw_params_are_validated(void **unused)
{
    (void)unused;
    create_refused("lin_igw", "{\"gamma\": 0}", 3, ONE_FEATURE, 1, PATH ".gamma");
    create_refused("lin_igw", "{\"gamma\": -5}", 3, ONE_FEATURE, 1, PATH ".gamma");
    create_refused("lin_igw", "{\"gamma\": 2e9}", 3, ONE_FEATURE, 1, PATH ".gamma");
}

/* ---- thompson, Gaussian likelihood ----------------------------------- */

static double normal_pdf(double x, double mu, double sd)
{
    double z = (x - mu) / sd;
    return exp(-0.5 * z * z) / (sd * sqrt(2.0 * M_PI));
}

static double normal_cdf(double x, double mu, double sd)
{
    return 0.5 * erfc(-(x - mu) / (sd * sqrt(2.0)));
}

/* P(theta_i is the largest) for Normal(mu_i, sd_i), Simpson's rule over
   mu +- 12 sd of every arm. */
static void normal_leader_probabilities(const double *mu, const double *sd, size_t n, double *p)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, mu[i] - 12.0 * sd[i]);
        hi = fmax(hi, mu[i] + 12.0 * sd[i]);
    }
    const int steps = 200000;
    double h = (hi - lo) / steps, total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (int g = 0; g <= steps; g++) {
            double x = lo + g * h, f = normal_pdf(x, mu[i], sd[i]);
            for (size_t j = 0; j < n; j++)
                if (j != i)
                    f *= normal_cdf(x, mu[j], sd[j]);
            sum += (g == 0 || g == steps ? 1.0 : g % 2 ? 4.0 : 2.0) * f;
        }
        p[i] = sum * h / 3.0;
        total += p[i];
    }
    assert_near(total, 1.0, 1e-8);
}

/* Normal posteriors from the sample variance, written out from the
   documented formula: v = (q - s^2 / n + 1/4) / n, theta ~ N(s / n, v / n);
   an untried arm N(1/2, 1/4). */
static void gaussian_posteriors(const mab_arm_view *arms, size_t n, double *mu, double *sd)
{
    for (size_t i = 0; i < n; i++) {
        if (arms[i].pulls == 0) {
            mu[i] = 0.5;
            sd[i] = 0.5;
            continue;
        }
        double pulls = (double)arms[i].pulls, s = arms[i].reward_sum, q = arms[i].reward_sum_sq;
        mu[i] = s / pulls;
        sd[i] = sqrt((q - s * s / pulls + 0.25) / pulls / pulls);
    }
}

static void test_thompson_gaussian_matches_normal_posteriors(void **unused)
{
    (void)unused;
    /* Revenue-like: arm 0 few large rewards, arm 1 many small ones. */
    mab_arm_view arms[3] = {{10, 2, 1.6, 1.28}, {12, 12, 3.0, 0.9}, {0, 0, 0.0, 0.0}};
    double mu[3], sd[3], p[3], reported[3];
    gaussian_posteriors(arms, 3, mu, sd);
    normal_leader_probabilities(mu, sd, 3, p);
    /* The frequencies fit the exact leader probabilities, and so do the
       reported estimates (64 draws each), on average. */
    policy2 lp = open2("thompson", "{\"likelihood\": \"gaussian\", \"probability_draws\": 64}",
                       3, NULL, 0);
    uint64_t counts[3];
    count_choices(&lp, input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL), 61, counts, NULL,
                  reported);
    assert_fits(counts, p, 3, DRAWS);
    for (int i = 0; i < 3; i++)
        assert_near(reported[i], p[i], 0.005);
    close2(&lp);
    /* probability_draws 0: NaN, flagged, the same distribution. */
    lp = open2("thompson", "{\"likelihood\": \"gaussian\", \"probability_draws\": 0}", 3, NULL,
               0);
    mab_rng *rng = mab_rng_create(62);
    mab_policy_input in = input(&lp, arms, NULL, NULL, 0, NULL, 0, rng);
    memset(counts, 0, sizeof counts);
    for (int d = 0; d < DRAWS; d++) {
        mab_policy_choice c = choose_ok(&lp, &in);
        assert_true(isnan(c.probability));
        assert_int_equal(c.estimated, 1);
        counts[c.arm]++;
    }
    assert_fits(counts, p, 3, DRAWS);
    mab_rng_destroy(rng);
    close2(&lp);
}

static void test_thompson_likelihood_is_validated(void **unused)
{
    (void)unused;
    create_refused("thompson", "{\"likelihood\": \"poisson\"}", 3, NULL, 0, PATH ".likelihood");
    create_refused("thompson", "{\"likelihood\": 1}", 3, NULL, 0, PATH ".likelihood");
    create_refused("thompson", "{\"probability_draws\": 100001}", 3, NULL, 0,
                   PATH ".probability_draws");
    /* "bernoulli" is the default, spelt out. */
    policy2 lp = open2("thompson", "{\"likelihood\": \"bernoulli\", \"alpha0\": 2}", 3, NULL, 0);
    close2(&lp);
}

/*
 * Two Normal posteriors: P(theta_1 > theta_0) = Phi((mu_1 - mu_0) /
 * sqrt(sd_0^2 + sd_1^2)). Every arm's estimate of each choose within 5
 * standard errors at S = 4096 (plus the floor, 1/(2S)).
 */
static void test_thompson_gaussian_estimate_matches_two_arm_exact(void **unused)
{
    (void)unused;
    static const mab_arm_view cases[][2] = {
        {{10, 2, 1.6, 1.28}, {12, 12, 3.0, 0.9}},
        {{0, 0, 0.0, 0.0}, {40, 40, 22.0, 13.0}},
        {{200, 200, 50.0, 20.0}, {200, 200, 60.0, 25.0}},
    };
    policy2 lp = open2("thompson", "{\"likelihood\": \"gaussian\", \"probability_draws\": 4096}",
                       2, NULL, 0);
    mab_rng *rng = mab_rng_create(4097);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double mu[2], sd[2], exact[2];
        gaussian_posteriors(cases[k], 2, mu, sd);
        exact[1] = normal_cdf(mu[1] - mu[0], 0.0, sqrt(sd[0] * sd[0] + sd[1] * sd[1]));
        exact[0] = 1.0 - exact[1];
        mab_policy_input in = input(&lp, cases[k], NULL, NULL, 0, NULL, 0, rng);
        for (int r = 0; r < 16; r++) {
            double p[2] = {-1.0, -1.0};
            in.probabilities = p;
            mab_policy_choice c = choose_ok(&lp, &in);
            assert_true(c.probability == p[c.arm]);
            assert_near(p[0] + p[1], 1.0, 1e-12);
            for (int i = 0; i < 2; i++)
                assert_near(p[i], exact[i],
                            5.0 * sqrt(exact[i] * (1.0 - exact[i]) / 4096) + 0.5 / 4096);
        }
    }
    mab_rng_destroy(rng);
    close2(&lp);
}

/*
 * ABI 2.2's probabilities from thompson (both likelihoods), top_two_thompson
 * and discounted_thompson: each choose fills all n_arms (in [0, 1], summing
 * to 1, nothing past them), the choice's probability is probabilities[arm],
 * and their mean over many chooses is each arm's exact probability (every
 * arm's, not only the chosen one's: the sample-ratio check of reports sums
 * them). An older input (struct_size before the field) is left alone.
 */
static void check_probabilities(const policy2 *lp, mab_policy_input in, const double *exact,
                                double tolerance, uint64_t seed)
{
    enum { CHOOSES = 4000 };
    size_t n = lp->n_arms;
    double p[9], mean[8] = {0};
    assert_true(n <= 8);
    mab_rng *rng = mab_rng_create(seed);
    in.rng = rng;
    in.probabilities = p;
    for (int d = 0; d < CHOOSES; d++) {
        for (size_t i = 0; i <= n; i++)
            p[i] = -1.0;
        mab_policy_choice c = choose_ok(lp, &in);
        assert_int_equal(c.estimated, 1);
        assert_true(c.probability == p[c.arm]);
        double total = 0.0;
        for (size_t i = 0; i < n; i++) {
            assert_true(p[i] >= 0.0 && p[i] <= 1.0);
            total += p[i];
            mean[i] += p[i] / CHOOSES;
        }
        assert_near(total, 1.0, 1e-12);
        assert_true(p[n] == -1.0);
    }
    for (size_t i = 0; i < n; i++)
        assert_near(mean[i], exact[i], tolerance);
    in.struct_size = offsetof(mab_policy_input, probabilities);
    for (size_t i = 0; i < n; i++)
        p[i] = -1.0;
    mab_policy_choice c = choose_ok(lp, &in);
    assert_true(c.probability > 0.0 && c.probability <= 1.0);
    for (size_t i = 0; i < n; i++)
        assert_true(p[i] == -1.0);
    mab_rng_destroy(rng);
}

static void test_thompson_family_fills_probabilities(void **unused)
{
    (void)unused;
    mab_arm_view arms[3] = {arm(10, 3), arm(10, 5), arm(20, 8)};
    const double a[3] = {4, 6, 9}, b[3] = {8, 6, 13};
    double leader[3], exact[3];
    beta_leader_probabilities(a, b, 3, leader);

    /* thompson: leader shares, unbiased (the mean of 4000 x 256 draws has
       a standard error below 0.0008). */
    policy2 lp = open2("thompson", "{}", 3, NULL, 0);
    check_probabilities(&lp, input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL), leader, 0.004, 71);
    close2(&lp);

    mab_arm_view revenue[3] = {{10, 2, 1.6, 1.28}, {12, 12, 3.0, 0.9}, {0, 0, 0.0, 0.0}};
    double mu[3], sd[3], normal_leader[3];
    gaussian_posteriors(revenue, 3, mu, sd);
    normal_leader_probabilities(mu, sd, 3, normal_leader);
    lp = open2("thompson", "{\"likelihood\": \"gaussian\"}", 3, NULL, 0);
    check_probabilities(&lp, input(&lp, revenue, NULL, NULL, 0, NULL, 0, NULL), normal_leader,
                        0.004, 72);
    close2(&lp);

    /* top_two_thompson: the top-two formula over the leader counts (a
       plug-in estimate, O(1/draws) biased: 0.01 as check_ttts). */
    lp = open2("top_two_thompson", "{\"beta\": 0.3}", 3, NULL, 0);
    ttts_exact(leader, 3, 0.3, exact);
    check_probabilities(&lp, input(&lp, arms, NULL, NULL, 0, NULL, 0, NULL), exact, 0.01, 73);
    close2(&lp);

    /* discounted_thompson: leader shares of the decayed posteriors, here
       undecayed (every event at the choice's time): the same Beta(4, 8),
       Beta(6, 6), Beta(9, 13). */
    lp = open2("discounted_thompson", "{\"half_life\": 100}", 3, NULL, 0);
    memset(dt_stats, 0, sizeof dt_stats);
    int64_t now = T0_NS + 5000 * SEC;
    for (size_t i = 0; i < 3; i++) {
        for (uint64_t j = 0; j < arms[i].pulls; j++)
            feed_ok(&lp, dt_stats, MAB_EVENT_PULL, i, 0.0, now);
        for (int j = 0; j < (int)arms[i].reward_sum; j++)
            feed_ok(&lp, dt_stats, MAB_EVENT_REWARD, i, 1.0, now);
    }
    check_probabilities(&lp, input(&lp, arms, dt_stats, NULL, now, NULL, 0, NULL), leader, 0.004,
                        74);
    close2(&lp);
}

/* ---- through the engine ----------------------------------------------- */

#include "mab/mab.h"
#include "support.h"

static int64_t fixed_clock(void *ctx)
{
    return *(const int64_t *)ctx;
}

/* Every new policy by name in one config, on the memory storage fixture:
   the names and keys resolve, features reach choose and update, estimated
   probabilities are flagged, a contextual reward without its features is
   refused and records nothing. */
static void test_new_policies_through_the_engine(void **unused)
{
    (void)unused;
    char *dir = test_tmpdir("policies2");
    assert_non_null(dir);
    char config[300];
    snprintf(config, sizeof config, "%s/mab.json", dir);
    assert_int_equal(
        test_write_file(
            config,
            "{\"seed\": 9, \"storage\": {\"plugin\": \"%s/storage_memory.so\"},\n"
            " \"experiments\": {\n"
            "  \"kl\": {\"policy\": {\"plugin\": \"kl_ucb\", \"c\": 3}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
            "  \"tt\": {\"policy\": {\"plugin\": \"top_two_thompson\", \"beta\": 0.4}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
            "  \"dt\": {\"policy\": {\"plugin\": \"discounted_thompson\", \"half_life\": 3600}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
            "  \"lu\": {\"policy\": {\"plugin\": \"lin_ucb\", \"alpha\": 0.5, \"features\": [\"f\"]}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
            "  \"ig\": {\"policy\": {\"plugin\": \"lin_igw\", \"gamma\": 20, \"features\": [\"f\"]}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
            "  \"ga\": {\"policy\": {\"plugin\": \"thompson\", \"likelihood\": \"gaussian\"}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
            MAB_FIXTURE_DIR),
        0);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    if (rc)
        fail_msg("mab_open: %s", err.message);
    int64_t now = T0_NS + 1000 * SEC;
    assert_int_equal(mab_set_clock(e, fixed_clock, &now, &err), MAB_OK);
    const char *names[] = {"f"};
    const double two[] = {2.0};
    mab_context ctx = {sizeof ctx, names, two, 1, 0, 0, 0, 0};
    static const char *const ids[] = {"kl", "tt", "dt", "lu", "ig", "ga"};
    static const int estimated_expected[] = {0, 1, 1, 0, 0, 1};
    for (int k = 0; k < 6; k++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        int estimated = -1;
        rc = mab_choose_ctx(e, ids[k], &ctx, &c, &estimated, &err);
        if (rc)
            fail_msg("choose %s: %s", ids[k], err.message);
        assert_int_equal(estimated, estimated_expected[k]);
        if (k == 0 || k == 3)
            assert_near(c.probability, 1.0 / 3.0, 1e-15); /* all tied */
        if (k == 4)
            assert_near(c.probability, 1.0 / 3.0, 1e-15); /* nothing learnt */
        if (k == 1 || k == 2 || k == 5)
            assert_true(c.probability > 0.0 && c.probability <= 1.0);
        mab_context at = ctx;
        at.probability = c.probability;
        rc = mab_reward_ctx(e, ids[k], c.arm_id, 1.0, &at, &err);
        if (rc)
            fail_msg("reward %s: %s", ids[k], err.message);
    }
    /* lin_ucb learnt x x^T = [[1, 2], [2, 4]] and b = (1, 2) for its arm. */
    mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
    double stats[18];
    assert_int_equal(mab_policy_stats(e, "lu", &info, stats, 18, NULL, 0, &err), MAB_OK);
    assert_string_equal(info.layout, "lin_ucb/1:6,0");
    double total[6] = {0};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 6; i++)
            total[i] += stats[a * 6 + i];
    const double expected[6] = {1, 2, 2, 4, 1, 2};
    for (int i = 0; i < 6; i++)
        assert_true(total[i] == expected[i]);
    /* Without its feature the reward is refused whole. */
    assert_int_equal(mab_reward(e, "lu", "a", 1.0, &err), MAB_EPLUGIN);
    double after[18];
    assert_int_equal(mab_policy_stats(e, "lu", &info, after, 18, NULL, 0, &err), MAB_OK);
    assert_memory_equal(stats, after, sizeof stats);
    /* discounted_thompson's layout carries its half-life. */
    assert_int_equal(mab_policy_stats(e, "dt", &info, NULL, 0, NULL, 0, &err), MAB_OK);
    assert_string_equal(info.layout, "discounted_thompson/3600:128,0");
    assert_int_equal(mab_close(e, &err), MAB_OK);

    /* An unknown key of an ABI 2 policy is an error naming it. */
    assert_int_equal(
        test_write_file(config,
                        "{\"storage\": {\"plugin\": \"%s/storage_memory.so\"}, \"experiments\": "
                        "{\"kl\": {\"policy\": {\"plugin\": \"kl_ucb\", \"C\": 3}, "
                        "\"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                        MAB_FIXTURE_DIR),
        0);
    e = NULL;
    assert_int_equal(mab_open(config, &e, &err), MAB_ECONFIG);
    if (!strstr(err.message, "experiments.kl.policy") || !strstr(err.message, "\"C\""))
        fail_msg("unknown key not named: %s", err.message);
    /* thompson's too (probability_draws misspelt; alpha0 with the Gaussian
       likelihood, which does not read it); a bad value is named. */
    static const char *const thompson_bad[][2] = {
        {"\"probability_drawz\": 3", "\"probability_drawz\""},
        {"\"likelihood\": \"gaussian\", \"alpha0\": 2", "\"alpha0\""},
        {"\"probability_draws\": -1", "experiments.ts.policy.probability_draws"},
    };
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(
            test_write_file(config,
                            "{\"storage\": {\"plugin\": \"%s/storage_memory.so\"}, "
                            "\"experiments\": {\"ts\": {\"policy\": {\"plugin\": \"thompson\", %s}, "
                            "\"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                            MAB_FIXTURE_DIR, thompson_bad[k][0]),
            0);
        e = NULL;
        assert_int_equal(mab_open(config, &e, &err), MAB_ECONFIG);
        if (!strstr(err.message, "experiments.ts.policy") ||
            !strstr(err.message, thompson_bad[k][1]))
            fail_msg("thompson's bad key not named: %s", err.message);
    }
    test_rm_tree(dir);
    free(dir);
}

/* 100 arms (past every plugin's on-stack arrays), random counters with
   untried and all-zero arms: choose succeeds with a valid arm and a
   probability in (0, 1], explain fills every arm. */
static void test_many_arms(void **unused)
{
    (void)unused;
    enum { K = 100 };
    static const char *const names[] = {"kl_ucb", "top_two_thompson", "discounted_thompson",
                                        "lin_ucb", "lin_igw"};
    static const char *const params[] = {"{}", "{\"probability_draws\": 16}",
                                         "{\"probability_draws\": 16}", "{}", "{}"};
    static double stats[K * 128];
    static mab_arm_view arms[K];
    mab_rng *world = mab_rng_create(71);
    for (int k = 0; k < 5; k++) {
        policy2 lp = open2(names[k], params[k], K, ONE_FEATURE, k >= 3 ? 1 : 0);
        assert_true(lp.layout.arm_stats <= 128);
        memset(stats, 0, sizeof stats);
        const double f[1] = {0.5};
        for (int i = 0; i < K; i++) {
            uint64_t pulls = mab_rng_below(world, 3) == 0 ? 0 : mab_rng_below(world, 1000) + 1;
            arms[i] = arm(pulls, mab_rng_uniform(world) * (double)pulls);
            for (uint64_t j = 0; lp.layout.arm_stats && j < pulls % 5; j++)
                assert_int_equal(feed(&lp, stats, MAB_EVENT_PULL, (size_t)i, 0.0,
                                      T0_NS + 100 * SEC, f, k >= 3 ? 1 : 0),
                                 MAB_OK);
        }
        mab_rng *rng = mab_rng_create(72 + (uint64_t)k);
        mab_policy_input in = input(&lp, arms, stats, NULL, T0_NS + 200 * SEC, f,
                                    k >= 3 ? 1 : 0, rng);
        for (int d = 0; d < 200; d++) {
            mab_policy_choice c = choose_ok(&lp, &in);
            assert_true(c.probability > 0.0 && c.probability <= 1.0);
        }
        double values[K];
        int kind;
        for (int i = 0; i < K; i++)
            values[i] = NAN;
        assert_int_equal(lp.policy->explain(lp.state, &in, values, &kind), MAB_OK);
        for (int i = 0; i < K; i++)
            assert_false(isnan(values[i]));
        mab_rng_destroy(rng);
        close2(&lp);
    }
    mab_rng_destroy(world);
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
        cmocka_unit_test(test_lin_ucb_hand_computed_scores),
        cmocka_unit_test(test_lin_ucb_ties_match_probabilities),
        cmocka_unit_test(test_linear_missing_feature_is_an_error),
        cmocka_unit_test(test_lin_ucb_params_are_validated),
        cmocka_unit_test(test_lin_igw_hand_computed_probabilities),
        cmocka_unit_test(test_lin_igw_params_are_validated),
        cmocka_unit_test(test_thompson_gaussian_matches_normal_posteriors),
        cmocka_unit_test(test_thompson_likelihood_is_validated),
        cmocka_unit_test(test_thompson_gaussian_estimate_matches_two_arm_exact),
        cmocka_unit_test(test_thompson_family_fills_probabilities),
        cmocka_unit_test(test_new_policies_through_the_engine),
        cmocka_unit_test(test_many_arms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
