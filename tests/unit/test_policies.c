/*
 * test_policies.c - the policy plugins (three of ABI 1; exp3, sw_ucb and
 * thompson of ABI 2),
 * loaded from their built .so files as the engine loads them, driven with
 * hand-made arm statistics.
 *
 * Statistical cases use fixed seeds and a chi-square goodness-of-fit test
 * at p < 1e-6, so a false failure is practically impossible and a wrong
 * distribution fails at once with 10^5 draws.
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

/* cmocka 1.1.5 has no floating-point assertion. */
#define assert_near(actual, expected, tolerance)                                        \
    do {                                                                               \
        double actual_ = (actual), expected_ = (expected);                             \
        if (!(fabs(actual_ - expected_) <= (tolerance)))                               \
            fail_msg("%s = %.17g, expected %.17g within %g", #actual, actual_, expected_, \
                     (double)(tolerance));                                             \
    } while (0)

/* Chi-square critical values for p = 1e-6, by degrees of freedom (index).
   Checked two ways: the closed-form survival functions (df 2, 4:
   e^{-x/2} sum_{j<df/2} (x/2)^j / j!; df 1: erfc(sqrt(x/2)); df 3: that plus
   sqrt(2x/pi) e^{-x/2}) and Simpson integration of the density's tail. */
static const double CHI2_CRIT_P1E6[] = {
    0.0,
    23.928, /* df = 1, p = 1e-6 */
    27.631, /* df = 2, p = 1e-6 (= -2 ln 1e-6) */
    30.665, /* df = 3, p = 1e-6 */
    33.377, /* df = 4, p = 1e-6 */
};

/* ---- helpers ---------------------------------------------------------- */

typedef struct loaded_policy {
    void *handle;
    const mab_policy *policy;
} loaded_policy;

static loaded_policy load_policy(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", MAB_PLUGIN_DIR, name);
    loaded_policy lp;
    lp.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lp.handle)
        fail_msg("dlopen %s: %s", path, dlerror());
    const mab_policy *(*entry)(void) =
        (const mab_policy *(*)(void))dlsym(lp.handle, MAB_POLICY_ENTRY_SYMBOL);
    assert_non_null(entry);
    lp.policy = entry();
    assert_non_null(lp.policy);
    assert_int_equal(lp.policy->abi_major, MAB_POLICY_ABI_MAJOR);
    assert_int_equal(lp.policy->struct_size, sizeof(mab_policy));
    assert_string_equal(lp.policy->name, name);
    return lp;
}

static void unload_policy(loaded_policy *lp)
{
    dlclose(lp->handle);
}

/*
 * create() with the given JSON params. Returns its status; on failure the
 * params' last error is copied to message (when not NULL).
 */
static int try_create(const loaded_policy *lp, const char *json, size_t n_arms, void **state,
                      char *message, size_t message_len)
{
    mab_params *params = NULL;
    mab_error err;
    assert_int_equal(mab_params_parse(json, "test", &params, &err), MAB_OK);
    int rc = lp->policy->create(params, n_arms, state);
    if (message)
        snprintf(message, message_len, "%s", mab_params_last_error(params));
    mab_params_free(params);
    return rc;
}

static void *create_ok(const loaded_policy *lp, const char *json, size_t n_arms)
{
    void *state = NULL;
    char message[MAB_ERROR_MAX];
    int rc = try_create(lp, json, n_arms, &state, message, sizeof message);
    if (rc != MAB_OK)
        fail_msg("create(%s) failed: %s", json, message);
    return state;
}

static size_t choose_ok(const loaded_policy *lp, const void *state, const mab_arm_view *arms,
                        size_t n_arms, mab_rng *rng, double *probability)
{
    size_t arm = n_arms;
    double p = -1.0;
    assert_int_equal(lp->policy->choose(state, arms, n_arms, rng, &arm, &p), MAB_OK);
    assert_true(arm < n_arms);
    if (probability)
        *probability = p;
    return arm;
}

/* An arm with the given pulls and reward sum (rewards counted as pulls). */
static mab_arm_view arm_stats(uint64_t pulls, double reward_sum)
{
    mab_arm_view a = {pulls, pulls, reward_sum, reward_sum};
    return a;
}

/* Pearson's statistic of counts against probabilities over `total` draws.
   Cells of probability 0 must be empty and add nothing. */
static double chi_square(const uint64_t *counts, const double *probs, size_t n, uint64_t total)
{
    double stat = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (probs[i] == 0.0) {
            assert_int_equal(counts[i], 0);
            continue;
        }
        double expected = probs[i] * (double)total;
        double diff = (double)counts[i] - expected;
        stat += diff * diff / expected;
    }
    return stat;
}

static void assert_chi_square_fits(const uint64_t *counts, const double *probs, size_t n,
                                   uint64_t total, size_t df)
{
    assert_true(df >= 1 && df < sizeof CHI2_CRIT_P1E6 / sizeof CHI2_CRIT_P1E6[0]);
    double stat = chi_square(counts, probs, n, total);
    if (!(stat < CHI2_CRIT_P1E6[df])) {
        for (size_t i = 0; i < n; i++)
            print_error("arm %zu: observed %llu, expected %.1f\n", i,
                        (unsigned long long)counts[i], probs[i] * (double)total);
        fail_msg("chi-square %.2f >= %.3f (df %zu, p 1e-6)", stat, CHI2_CRIT_P1E6[df], df);
    }
}

/* Count DRAWS choices. When expected_probability is not NULL, each reported
   probability must equal expected_probability[arm] to within 1e-12. */
static void count_choices(const loaded_policy *lp, const void *state, const mab_arm_view *arms,
                          size_t n_arms, uint64_t seed, uint64_t *counts,
                          const double *expected_probability)
{
    mab_rng *rng = mab_rng_create(seed);
    assert_non_null(rng);
    memset(counts, 0, n_arms * sizeof counts[0]);
    for (int d = 0; d < DRAWS; d++) {
        double p;
        size_t arm = choose_ok(lp, state, arms, n_arms, rng, &p);
        counts[arm]++;
        if (expected_probability)
            assert_near(p, expected_probability[arm], 1e-12);
    }
    mab_rng_destroy(rng);
}

/* ---- epsilon-greedy --------------------------------------------------- */

static void test_epsilon_zero_picks_best(void **unused)
{
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = create_ok(&lp, "{\"epsilon\":0}", 4);
    mab_arm_view arms[4] = {arm_stats(10, 2), arm_stats(10, 7), arm_stats(5, 1),
                            arm_stats(0, 0)};
    mab_rng *rng = mab_rng_create(1);
    for (int d = 0; d < 10000; d++) {
        double p;
        assert_int_equal(choose_ok(&lp, state, arms, 4, rng, &p), 1);
        assert_true(p == 1.0);
    }
    mab_rng_destroy(rng);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_epsilon_one_is_uniform(void **unused)
{
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = create_ok(&lp, "{\"epsilon\":1}", 5);
    mab_arm_view arms[5] = {arm_stats(10, 9), arm_stats(10, 1), arm_stats(10, 2),
                            arm_stats(10, 3), arm_stats(10, 4)};
    /* Formula: 1/5 + 0 for every arm, best or not. */
    const double probs[5] = {0.2, 0.2, 0.2, 0.2, 0.2};
    uint64_t counts[5];
    count_choices(&lp, state, arms, 5, 2, counts, probs);
    assert_chi_square_fits(counts, probs, 5, DRAWS, 4);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_epsilon_mixed_matches_formula(void **unused)
{
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = create_ok(&lp, "{\"epsilon\":0.3}", 4);
    /* Means 0.2, 0.5, 0.5, 0.1: B = {1, 2}. Best arms: 0.3/4 + 0.7/2 = 0.425;
       the others 0.3/4 = 0.075. Arm 2 reaches 0.5 with other counts. */
    mab_arm_view arms[4] = {arm_stats(10, 2), arm_stats(10, 5), arm_stats(20, 10),
                            arm_stats(10, 1)};
    const double probs[4] = {0.075, 0.425, 0.425, 0.075};
    uint64_t counts[4];
    count_choices(&lp, state, arms, 4, 3, counts, probs);
    assert_chi_square_fits(counts, probs, 4, DRAWS, 3);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_epsilon_breaks_ties_at_random(void **unused)
{
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = create_ok(&lp, "{\"epsilon\":0}", 3);
    mab_arm_view arms[3] = {arm_stats(10, 6), arm_stats(10, 1), arm_stats(5, 3)};
    const double probs[3] = {0.5, 0.0, 0.5};
    uint64_t counts[3];
    count_choices(&lp, state, arms, 3, 4, counts, probs);
    assert_chi_square_fits(counts, probs, 3, DRAWS, 1);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

/* A seeded run chooses as it did before issue 18's changes to the policy:
   these choices and the stream's next value after them were recorded from
   epsilon_greedy.so at commit 43d90b2 (one best arm, then two tied). */
static void test_epsilon_seeded_choices_recorded(void **unused)
{
    (void)unused;
    static const struct {
        mab_arm_view arms[4];
        const char *choices;
        uint64_t next;
    } recorded[] = {
        {{{10, 10, 2, 2}, {10, 10, 7, 7}, {5, 5, 1, 1}, {0, 0, 0, 0}},
         "11101111102112101111111111312121111311110111012131111110111111311101111113111111",
         1181496508080045485ULL},
        {{{10, 10, 6, 6}, {10, 10, 1, 1}, {5, 5, 3, 3}, {4, 4, 1, 1}},
         "22022222210221212223002220230022022220022300020000222002222200102020000230200203",
         9871686807886243971ULL},
    };
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = create_ok(&lp, "{\"epsilon\":0.3}", 4);
    for (size_t k = 0; k < 2; k++) {
        mab_rng *rng = mab_rng_create(7 + k);
        char got[81];
        for (int d = 0; d < 80; d++) {
            double p;
            got[d] = (char)('0' + choose_ok(&lp, state, recorded[k].arms, 4, rng, &p));
        }
        got[80] = '\0';
        uint64_t next = mab_rng_u64(rng);
        if (strcmp(got, recorded[k].choices) != 0 || next != recorded[k].next)
            fail_msg("case %zu: got \"%s\" then %lluULL", k, got, (unsigned long long)next);
        mab_rng_destroy(rng);
    }
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_epsilon_params_are_validated(void **unused)
{
    loaded_policy lp = load_policy("epsilon_greedy");
    void *state = NULL;
    char message[MAB_ERROR_MAX];

    assert_int_equal(try_create(&lp, "{\"epsilon\":1.5}", 3, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "epsilon"));
    assert_non_null(strstr(message, "outside [0, 1]"));

    assert_int_equal(try_create(&lp, "{\"epsilon\":\"x\"}", 3, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "epsilon"));

    assert_int_equal(try_create(&lp, "{\"epsilon\":-0.1}", 3, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_null(state);

    /* Default 0.1: with a unique best among 4, 0.1/4 + 0.9 = 0.925. */
    state = create_ok(&lp, "{}", 4);
    mab_arm_view arms[4] = {arm_stats(1, 1), arm_stats(1, 0), arm_stats(1, 0),
                            arm_stats(1, 0)};
    const double probs[4] = {0.925, 0.025, 0.025, 0.025};
    uint64_t counts[4];
    count_choices(&lp, state, arms, 4, 5, counts, probs);
    assert_chi_square_fits(counts, probs, 4, DRAWS, 3);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

/* ---- UCB1 ------------------------------------------------------------- */

static void test_ucb1_tries_untried_arms_first(void **unused)
{
    loaded_policy lp = load_policy("ucb1");
    void *state = create_ok(&lp, "{}", 5);
    /* Arms 0 and 3 are far better, but 1, 2 and 4 were never pulled. */
    mab_arm_view arms[5] = {arm_stats(100, 100), arm_stats(0, 0), arm_stats(0, 0),
                            arm_stats(50, 50), arm_stats(0, 0)};
    const double probs[5] = {0.0, 1.0 / 3, 1.0 / 3, 0.0, 1.0 / 3};
    uint64_t counts[5];
    count_choices(&lp, state, arms, 5, 6, counts, probs);
    assert_chi_square_fits(counts, probs, 5, DRAWS, 2);

    /* A single untried arm is certain. */
    arms[1] = arm_stats(1, 0);
    arms[2] = arm_stats(1, 0);
    mab_rng *rng = mab_rng_create(7);
    double p;
    assert_int_equal(choose_ok(&lp, state, arms, 5, rng, &p), 4);
    assert_true(p == 1.0);
    mab_rng_destroy(rng);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_ucb1_matches_hand_computed_indices(void **unused)
{
    loaded_policy lp = load_policy("ucb1");
    void *state = create_ok(&lp, "{}", 3);
    mab_rng *rng = mab_rng_create(8);
    double p;

    /* t = 20, 2 ln 20 = 5.991465:
       arm 0: 0.6 + sqrt(5.991465 / 10) = 0.6 + 0.774046 = 1.374046
       arm 1: 0.4 + sqrt(5.991465 / 2)  = 0.4 + 1.730818 = 2.130818  <- max
       arm 2: 0.7 + sqrt(5.991465 / 8)  = 0.7 + 0.865409 = 1.565409
       The rarely pulled arm wins on its bonus despite the lowest mean. */
    mab_arm_view explore[3] = {arm_stats(10, 6), arm_stats(2, 0.8), arm_stats(8, 5.6)};
    for (int d = 0; d < 100; d++) {
        assert_int_equal(choose_ok(&lp, state, explore, 3, rng, &p), 1);
        assert_true(p == 1.0);
    }

    /* t = 250, 2 ln 250 = 11.042922:
       arm 0: 0.9 + sqrt(11.042922 / 100) = 0.9 + 0.332309 = 1.232309  <- max
       arm 1: 0.5 + sqrt(11.042922 / 100) = 0.5 + 0.332309 = 0.832309
       arm 2: 0.4 + sqrt(11.042922 / 50)  = 0.4 + 0.469956 = 0.869956 */
    mab_arm_view exploit[3] = {arm_stats(100, 90), arm_stats(100, 50), arm_stats(50, 20)};
    for (int d = 0; d < 100; d++) {
        assert_int_equal(choose_ok(&lp, state, exploit, 3, rng, &p), 0);
        assert_true(p == 1.0);
    }

    /* Close calls, so that a wrong constant flips the answer.
       t = 15, 2 ln 15 = 5.416100:
       arm 0: 0   + sqrt(5.416100 / 5)  = 1.040779  <- max
       arm 1: 0.3 + sqrt(5.416100 / 10) = 0.3 + 0.735942 = 1.035942
       (with ln t instead of 2 ln t arm 1 would win). */
    mab_arm_view close_a[2] = {arm_stats(5, 0), arm_stats(10, 3)};
    assert_int_equal(choose_ok(&lp, state, close_a, 2, rng, &p), 0);
    /* t = 20, 2 ln 20 = 5.991465:
       arm 0: 14/17 = 0.823529 + sqrt(5.991465 / 17) = 0.823529 + 0.593666 = 1.417195  <- max
       arm 1: 0 + sqrt(5.991465 / 3) = 1.413207
       (with ln(t + 1) arm 1 would win). */
    mab_arm_view close_b[2] = {arm_stats(17, 14), arm_stats(3, 0)};
    assert_int_equal(choose_ok(&lp, state, close_b, 2, rng, &p), 0);

    mab_rng_destroy(rng);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_ucb1_breaks_ties_at_random(void **unused)
{
    loaded_policy lp = load_policy("ucb1");
    void *state = create_ok(&lp, "{}", 3);
    /* t = 40, 2 ln 40 = 7.377759:
       arms 0 and 1: 0.5 + sqrt(0.7377759) = 1.358939 (tied)
       arm 2: 0.25 + sqrt(0.3688879) = 0.857361 */
    mab_arm_view arms[3] = {arm_stats(10, 5), arm_stats(10, 5), arm_stats(20, 5)};
    const double probs[3] = {0.5, 0.5, 0.0};
    uint64_t counts[3];
    count_choices(&lp, state, arms, 3, 9, counts, probs);
    assert_chi_square_fits(counts, probs, 3, DRAWS, 1);

    /* Indices equal only up to rounding (one ulp apart) still tie. */
    mab_arm_view near[3] = {arm_stats(10, nextafter(5.0, 6.0)), arm_stats(10, 5.0),
                            arm_stats(20, 5)};
    count_choices(&lp, state, near, 3, 10, counts, probs);
    assert_chi_square_fits(counts, probs, 3, DRAWS, 1);
    lp.policy->destroy(state);

    /* Many arms (the plugin's path without a stack buffer): arms 7 and 41 tie
       at mean 0.5 with 10 pulls each, the 48 others have mean 0.1 and 10 pulls,
       so their index is lower by exactly 0.4. */
    enum { MANY = 50 };
    state = create_ok(&lp, "{}", MANY);
    mab_arm_view many[MANY];
    double many_probs[MANY];
    uint64_t many_counts[MANY];
    for (size_t i = 0; i < MANY; i++) {
        int tied = i == 7 || i == 41;
        many[i] = arm_stats(10, tied ? 5 : 1);
        many_probs[i] = tied ? 0.5 : 0.0;
    }
    count_choices(&lp, state, many, MANY, 11, many_counts, many_probs);
    assert_chi_square_fits(many_counts, many_probs, MANY, DRAWS, 1);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

/* ---- softmax ---------------------------------------------------------- */

/* exp(mu_i / tau) normalised, computed directly (fine for moderate tau). */
static void boltzmann(const double *means, size_t n, double tau, double *probs)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += exp(means[i] / tau);
    for (size_t i = 0; i < n; i++)
        probs[i] = exp(means[i] / tau) / sum;
}

static void test_softmax_frequencies_match_boltzmann(void **unused)
{
    loaded_policy lp = load_policy("softmax");
    void *state = create_ok(&lp, "{\"tau\":0.1}", 4);
    mab_arm_view arms[4] = {arm_stats(10, 1), arm_stats(10, 2), arm_stats(10, 3),
                            arm_stats(10, 5)};
    const double means[4] = {0.1, 0.2, 0.3, 0.5};
    double probs[4];
    boltzmann(means, 4, 0.1, probs);
    uint64_t counts[4];
    count_choices(&lp, state, arms, 4, 11, counts, probs);
    assert_chi_square_fits(counts, probs, 4, DRAWS, 3);
    lp.policy->destroy(state);

    /* Default tau is 0.1 too. */
    state = create_ok(&lp, "{}", 4);
    count_choices(&lp, state, arms, 4, 12, counts, probs);
    assert_chi_square_fits(counts, probs, 4, DRAWS, 3);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

/* Beyond the 64 arms whose weights softmax keeps on the stack it recomputes
   them: the same distribution and the same reported probabilities on both
   sides of that edge. */
static void test_softmax_many_arms_match_boltzmann(void **unused)
{
    (void)unused;
    enum { K = 70 };
    loaded_policy lp = load_policy("softmax");
    void *state = create_ok(&lp, "{\"tau\":0.05}", K);
    mab_arm_view arms[K];
    double means[K], probs[K];
    for (size_t i = 0; i < K; i++) {
        /* The best arms last, past the edge, so that they carry weight. */
        arms[i] = arm_stats(100, (double)i);
        means[i] = (double)i / 100.0;
    }
    boltzmann(means, K, 0.05, probs);
    uint64_t counts[K];
    count_choices(&lp, state, arms, K, 13, counts, probs);
    /* Two groups, the kept arms and the recomputed ones: df 1. */
    uint64_t groups[2] = {0, 0};
    double group_probs[2] = {0.0, 0.0};
    for (size_t i = 0; i < K; i++) {
        groups[i >= 64] += counts[i];
        group_probs[i >= 64] += probs[i];
    }
    assert_true(group_probs[1] > 0.2);
    assert_chi_square_fits(groups, group_probs, 2, DRAWS, 1);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_softmax_small_tau_does_not_overflow(void **unused)
{
    loaded_policy lp = load_policy("softmax");
    mab_arm_view arms[2] = {arm_stats(10, 9), arm_stats(10, 1)};
    const char *configs[] = {"{\"tau\":1e-3}", "{\"tau\":1e-9}"};
    mab_rng *rng = mab_rng_create(13);
    for (size_t c = 0; c < 2; c++) {
        /* exp(0.9 / 1e-3) = exp(900) overflows a double; exp(-800) is 0. */
        void *state = create_ok(&lp, configs[c], 2);
        for (int d = 0; d < 1000; d++) {
            double p;
            assert_int_equal(choose_ok(&lp, state, arms, 2, rng, &p), 0);
            assert_false(isnan(p));
            assert_true(p == 1.0);
        }
        lp.policy->destroy(state);
    }
    mab_rng_destroy(rng);
    unload_policy(&lp);
}

static void test_softmax_annealing(void **unused)
{
    loaded_policy lp = load_policy("softmax");
    void *state = create_ok(&lp, "{\"annealing\":true}", 2);
    /* t = 10 total pulls, means 1 and 0: tau = 1 / ln(11.0000001), so
       exp(mu / tau) = 11.0000001^mu and P(arm 0) = 11.0000001 / 12.0000001
       = 0.91666666736..., P(arm 1) = 1 / 12.0000001 = 0.08333333264... */
    mab_arm_view arms[2] = {arm_stats(5, 5), arm_stats(5, 0)};
    const double probs[2] = {11.0000001 / 12.0000001, 1.0 / 12.0000001};
    assert_near(probs[0], 0.91666666736, 1e-10);
    uint64_t counts[2];
    count_choices(&lp, state, arms, 2, 14, counts, probs);
    assert_chi_square_fits(counts, probs, 2, DRAWS, 1);

    /* t = 0: tau = 1 / ln(1 + 1e-7) ~ 1e7, effectively uniform. */
    mab_arm_view fresh[2] = {arm_stats(0, 0), arm_stats(0, 0)};
    mab_rng *rng = mab_rng_create(15);
    double p;
    choose_ok(&lp, state, fresh, 2, rng, &p);
    assert_near(p, 0.5, 1e-12);
    mab_rng_destroy(rng);
    lp.policy->destroy(state);

    /* annealing: false with a tau is fine. */
    state = create_ok(&lp, "{\"annealing\":false,\"tau\":0.5}", 2);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_softmax_params_are_validated(void **unused)
{
    loaded_policy lp = load_policy("softmax");
    void *state = NULL;
    char message[MAB_ERROR_MAX];

    assert_int_equal(try_create(&lp, "{\"tau\":0.5,\"annealing\":true}", 2, &state, message,
                                sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "tau"));
    assert_non_null(strstr(message, "annealing"));

    assert_int_equal(try_create(&lp, "{\"tau\":0}", 2, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "tau"));

    assert_int_equal(try_create(&lp, "{\"annealing\":1}", 2, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "annealing"));
    assert_null(state);
    unload_policy(&lp);
}

/* ---- Thompson --------------------------------------------------------- */

static double beta_pdf(double x, double a, double b)
{
    if (x <= 0.0 || x >= 1.0)
        return 0.0; /* all tests use a, b >= 1, where the endpoints are harmless */
    double log_norm = lgamma(a + b) - lgamma(a) - lgamma(b);
    return exp(log_norm + (a - 1.0) * log(x) + (b - 1.0) * log1p(-x));
}

/* Exact Beta CDF for integer a, b: P(at least a successes in a + b - 1
   Bernoulli(x) trials). */
static double beta_cdf_integer(double x, int a, int b)
{
    int m = a + b - 1;
    double sum = 0.0;
    for (int j = a; j <= m; j++)
        sum += exp(lgamma(m + 1.0) - lgamma(j + 1.0) - lgamma(m - j + 1.0)) * pow(x, j) *
               pow(1.0 - x, m - j);
    return sum;
}

#define GRID 20000

/* F(g / GRID) for g = 0..GRID of Beta(a, b), accumulated from the density
   by Simpson's rule on each grid interval (its midpoint included). */
static void beta_cdf_grid(double a, double b, double *cdf)
{
    const double h = 1.0 / GRID;
    cdf[0] = 0.0;
    for (int g = 0; g < GRID; g++) {
        double x = g * h;
        double piece = h / 6.0 *
                       (beta_pdf(x, a, b) + 4.0 * beta_pdf(x + h / 2, a, b) +
                        beta_pdf(x + h, a, b));
        cdf[g + 1] = cdf[g] + piece;
    }
}

static double cdf_grids[4][GRID + 1]; /* too large for the stack */

/*
 * P(theta_i is the largest) = integral_0^1 f_i(x) prod_{j != i} F_j(x) dx
 * for n <= 4 Beta(a_i, b_i) posteriors, by Simpson's rule over the grid.
 */
static void beta_p_best(const double *a, const double *b, size_t n, double *p_best)
{
    const double h = 1.0 / GRID;
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        beta_cdf_grid(a[i], b[i], cdf_grids[i]);
        assert_near(cdf_grids[i][GRID], 1.0, 1e-9);
    }
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (int g = 0; g <= GRID; g++) {
            double integrand = beta_pdf(g * h, a[i], b[i]);
            for (size_t j = 0; j < n; j++)
                if (j != i)
                    integrand *= cdf_grids[j][g];
            double weight = (g == 0 || g == GRID) ? 1.0 : (g % 2 ? 4.0 : 2.0);
            sum += weight * integrand;
        }
        p_best[i] = sum * h / 3.0;
    }
}

/* ---- EXP3 (policy ABI 2) --------------------------------------------- */

/* The core's table as a plugin sees it, built here from the public API. */
static const mab_core_api test_api = {
    MAB_CORE_API_VERSION, (uint32_t)sizeof(mab_core_api),
    mab_argmax, mab_rng_u64, mab_rng_uniform, mab_rng_below, mab_rng_normal, mab_rng_gamma,
    mab_rng_beta, mab_params_double, mab_params_int, mab_params_bool, mab_params_string,
    mab_params_fail, mab_error_set,
};

typedef struct loaded_policy2 {
    void *handle;
    const mab_policy2 *policy;
} loaded_policy2;

static loaded_policy2 load_policy2(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", MAB_PLUGIN_DIR, name);
    loaded_policy2 lp;
    lp.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lp.handle)
        fail_msg("dlopen %s: %s", path, dlerror());
    const mab_policy2 *(*entry)(const mab_core_api *) =
        (const mab_policy2 *(*)(const mab_core_api *))dlsym(lp.handle,
                                                           MAB_POLICY2_ENTRY_SYMBOL);
    assert_non_null(entry);
    lp.policy = entry(&test_api);
    assert_non_null(lp.policy);
    assert_int_equal(lp.policy->abi_major, MAB_POLICY2_ABI_MAJOR);
    assert_int_equal(lp.policy->struct_size, sizeof(mab_policy2));
    assert_true(lp.policy->core_api_version <= MAB_CORE_API_VERSION);
    assert_string_equal(lp.policy->name, name);
    return lp;
}

static int try_create2(const loaded_policy2 *lp, const char *json, size_t n_arms,
                       mab_policy_layout *layout, void **state, char *message, size_t len)
{
    mab_params *params = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_params_parse(json, "test", &params, &err), MAB_OK);
    mab_policy_init init = {sizeof init, &test_api, params, n_arms, 0, NULL, 3600};
    memset(layout, 0, sizeof *layout);
    layout->struct_size = sizeof *layout;
    int rc = lp->policy->create(&init, layout, state, &err);
    if (message)
        snprintf(message, len, "%s", mab_params_last_error(params));
    mab_params_free(params);
    return rc;
}

/* EXP3's probabilities, written out from ALGORITHMS.md independently of the
   plugin: p_i = (1 - gamma) w_i / sum w + gamma / K, w_i = exp(gamma G_i / K). */
static void exp3_expected(const double *g, size_t k, double gamma, double *p)
{
    double max = g[0], total = 0.0;
    for (size_t i = 1; i < k; i++)
        max = g[i] > max ? g[i] : max;
    for (size_t i = 0; i < k; i++)
        total += exp(gamma * (g[i] - max) / (double)k);
    for (size_t i = 0; i < k; i++)
        p[i] = (1.0 - gamma) * exp(gamma * (g[i] - max) / (double)k) / total + gamma / (double)k;
}

static void test_exp3_frequencies_match_probabilities(void **unused)
{
    loaded_policy2 lp = load_policy2("exp3");
    mab_policy_layout layout;
    void *state = NULL;
    assert_int_equal(try_create2(&lp, "{\"gamma\": 0.3}", 4, &layout, &state, NULL, 0), MAB_OK);
    assert_int_equal(layout.arm_stats, 1);
    assert_int_equal(layout.experiment_stats, 0);
    const double g[4] = {0.0, 5.0, 12.0, 3.0};
    double expected[4];
    exp3_expected(g, 4, 0.3, expected);
    mab_arm_view arms[4] = {arm_stats(10, 1), arm_stats(10, 2), arm_stats(10, 3), arm_stats(0, 0)};
    mab_rng *rng = mab_rng_create(77);
    uint64_t counts[4] = {0, 0, 0, 0};
    for (int d = 0; d < DRAWS; d++) {
        mab_policy_input in = {sizeof in, &test_api, arms, 4, g, NULL, 0, NULL, 0, rng, NULL, 0, 0, 0, NULL};
        mab_policy_choice c = {4, -1.0, 1};
        assert_int_equal(lp.policy->choose(state, &in, &c), MAB_OK);
        assert_true(c.arm < 4);
        assert_near(c.probability, expected[c.arm], 1e-12);
        assert_int_equal(c.estimated, 0);
        counts[c.arm]++;
    }
    assert_chi_square_fits(counts, expected, 4, DRAWS, 3);
    /* explain gives the same probabilities. */
    double values[4];
    int kind = 0;
    mab_policy_input in = {sizeof in, &test_api, arms, 4, g, NULL, 0, NULL, 0, rng, NULL, 0, 0, 0, NULL};
    assert_int_equal(lp.policy->explain(state, &in, values, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_PROBABILITIES);
    for (int i = 0; i < 4; i++)
        assert_near(values[i], expected[i], 1e-12);
    mab_rng_destroy(rng);
    lp.policy->destroy(state);
    dlclose(lp.handle);
}

static void test_exp3_update_adds_importance_weighted_reward(void **unused)
{
    loaded_policy2 lp = load_policy2("exp3");
    mab_policy_layout layout;
    void *state = NULL;
    assert_int_equal(try_create2(&lp, "{}", 3, &layout, &state, NULL, 0), MAB_OK);
    double arm_delta[1] = {0.0};
    mab_policy_event reward = {sizeof reward, &test_api, MAB_EVENT_REWARD, 1, 3, 0.6, 0.25, 0,
                               NULL, 0};
    assert_int_equal(lp.policy->update(state, &reward, arm_delta, NULL), MAB_OK);
    assert_near(arm_delta[0], 2.4, 1e-15);
    arm_delta[0] = 0.0;
    mab_policy_event pull = {sizeof pull, &test_api, MAB_EVENT_PULL, 1, 3, 0.0, 0.25, 0,
                             NULL, 0};
    assert_int_equal(lp.policy->update(state, &pull, arm_delta, NULL), MAB_OK);
    assert_true(arm_delta[0] == 0.0);
    /* Without the probability the reward cannot be weighted. */
    reward.probability = NAN;
    assert_int_equal(lp.policy->update(state, &reward, arm_delta, NULL), MAB_EINVAL);
    reward.probability = 0.0;
    assert_int_equal(lp.policy->update(state, &reward, arm_delta, NULL), MAB_EINVAL);
    lp.policy->destroy(state);
    dlclose(lp.handle);
}

static void test_exp3_large_sums_do_not_overflow(void **unused)
{
    loaded_policy2 lp = load_policy2("exp3");
    mab_policy_layout layout;
    void *state = NULL;
    assert_int_equal(try_create2(&lp, "{\"gamma\": 1.0}", 3, &layout, &state, NULL, 0), MAB_OK);
    const double g[3] = {1e9, 1e9 + 30.0, 0.0};
    double values[3];
    int kind;
    mab_arm_view arms[3] = {arm_stats(1, 1), arm_stats(1, 1), arm_stats(1, 1)};
    mab_policy_input in = {sizeof in, &test_api, arms, 3, g, NULL, 0, NULL, 0, NULL, NULL, 0, 0, 0, NULL};
    assert_int_equal(lp.policy->explain(state, &in, values, &kind), MAB_OK);
    double expected[3];
    exp3_expected(g, 3, 1.0, expected);
    for (int i = 0; i < 3; i++) {
        assert_true(isfinite(values[i]));
        assert_near(values[i], expected[i], 1e-12);
    }
    assert_near(values[0] + values[1] + values[2], 1.0, 1e-12);
    lp.policy->destroy(state);
    dlclose(lp.handle);
}

static void test_exp3_params_are_validated(void **unused)
{
    loaded_policy2 lp = load_policy2("exp3");
    mab_policy_layout layout;
    void *state = NULL;
    char message[MAB_ERROR_MAX];
    assert_int_equal(try_create2(&lp, "{\"gamma\": 0}", 3, &layout, &state, message,
                                 sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "gamma"));
    assert_int_equal(try_create2(&lp, "{\"gamma\": 1.5}", 3, &layout, &state, message,
                                 sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "gamma"));
    dlclose(lp.handle);
}

/* ---- sliding-window UCB (policy ABI 2.1) ------------------------------ */

/* A 3-arm input whose window (2 buckets) is w[arm][bucket] = {pulls, sum}. */
typedef struct sw_input {
    mab_arm_view totals[3];
    mab_arm_view window[3 * 2];
    mab_policy_input in;
} sw_input;

static void sw_fill(sw_input *x, const double w[3][2][2], mab_rng *rng)
{
    for (int a = 0; a < 3; a++) {
        /* Totals that would make arm 0 the clear winner: the policy must
           look at the window only. */
        x->totals[a] = a == 0 ? arm_stats(1000, 1000) : arm_stats(1000, 0);
        for (int b = 0; b < 2; b++) {
            mab_arm_view v = {(uint64_t)w[a][b][0], (uint64_t)w[a][b][0], w[a][b][1],
                              w[a][b][1]};
            x->window[a * 2 + b] = v;
        }
    }
    mab_policy_input in = {sizeof in, &test_api, x->totals, 3, NULL, NULL, 0, NULL, 0, rng,
                           x->window, 2, 3600, 7200, NULL};
    x->in = in;
}

/*
 * Worked by hand: n = (20, 10, 40), s = (8, 5, 18), N = 70, xi = 0.6:
 * xi ln 70 = 2.549097; indices 0.4 + sqrt(2.549097 / 20) = 0.757008,
 * 0.5 + sqrt(2.549097 / 10) = 1.004886, 0.45 + sqrt(2.549097 / 40) = 0.702443:
 * arm 1, with probability 1. With xi = 0.01 the bonus shrinks (xi ln 70 =
 * 0.042485): 0.4 + 0.046090 = 0.446090, 0.5 + 0.065181 = 0.565181,
 * 0.45 + 0.032590 = 0.482590: still arm 1; with arm 1's window at
 * (10, 3): 0.3 + 0.065181 = 0.365181 and arm 2 wins.
 */
static void test_sw_ucb_hand_computed(void **unused)
{
    loaded_policy2 lp = load_policy2("sw_ucb");
    mab_policy_layout layout;
    void *state = NULL;
    assert_int_equal(try_create2(&lp, "{\"window\": 7200}", 3, &layout, &state, NULL, 0),
                     MAB_OK);
    assert_int_equal(layout.window_buckets, 2);
    assert_int_equal(layout.arm_stats, 0);
    mab_rng *rng = mab_rng_create(5);
    const double w[3][2][2] = {{{10, 6}, {10, 2}}, {{5, 4}, {5, 1}}, {{30, 12}, {10, 6}}};
    sw_input x;
    sw_fill(&x, w, rng);
    mab_policy_choice c = {3, -1.0, 1};
    assert_int_equal(lp.policy->choose(state, &x.in, &c), MAB_OK);
    assert_int_equal(c.arm, 1);
    assert_true(c.probability == 1.0);
    assert_int_equal(c.estimated, 0);
    double p[3];
    int kind = 0;
    assert_int_equal(lp.policy->explain(state, &x.in, p, &kind), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_PROBABILITIES);
    assert_true(p[0] == 0.0 && p[1] == 1.0 && p[2] == 0.0);
    lp.policy->destroy(state);

    assert_int_equal(try_create2(&lp, "{\"window\": 7200, \"xi\": 0.01}", 3, &layout, &state,
                                 NULL, 0),
                     MAB_OK);
    assert_int_equal(lp.policy->choose(state, &x.in, &c), MAB_OK);
    assert_int_equal(c.arm, 1);
    const double w2[3][2][2] = {{{10, 6}, {10, 2}}, {{5, 2}, {5, 1}}, {{30, 12}, {10, 6}}};
    sw_fill(&x, w2, rng);
    assert_int_equal(lp.policy->choose(state, &x.in, &c), MAB_OK);
    assert_int_equal(c.arm, 2);
    lp.policy->destroy(state);
    mab_rng_destroy(rng);
    dlclose(lp.handle);
}

/* Untried arms (no pulls in the window) first, uniformly; equal windows
   tie uniformly; the reported probability matches; one seed, one sequence. */
static void test_sw_ucb_ties_uniform_and_deterministic(void **unused)
{
    loaded_policy2 lp = load_policy2("sw_ucb");
    mab_policy_layout layout;
    void *state = NULL;
    assert_int_equal(try_create2(&lp, "{}", 3, &layout, &state, NULL, 0), MAB_OK);
    assert_int_equal(layout.window_buckets, 24); /* a day of hourly buckets */
    lp.policy->destroy(state);
    assert_int_equal(try_create2(&lp, "{\"window\": 3601}", 3, &layout, &state, NULL, 0),
                     MAB_OK);
    assert_int_equal(layout.window_buckets, 2); /* rounded up */
    const double untried[3][2][2] = {{{0, 0}, {0, 0}}, {{5, 4}, {5, 1}}, {{0, 0}, {0, 0}}};
    const double equal[3][2][2] = {{{4, 1}, {4, 2}}, {{4, 1}, {4, 2}}, {{4, 1}, {4, 2}}};
    const double p_untried[3] = {0.5, 0.0, 0.5}, p_equal[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    const double(*cases[2])[2][2] = {untried, equal};
    const double *probs[2] = {p_untried, p_equal};
    for (int k = 0; k < 2; k++) {
        mab_rng *rng = mab_rng_create(99), *again = mab_rng_create(99);
        sw_input x, y;
        sw_fill(&x, cases[k], rng);
        sw_fill(&y, cases[k], again);
        uint64_t counts[3] = {0, 0, 0};
        for (int d = 0; d < DRAWS / 10; d++) {
            mab_policy_choice c = {3, -1.0, 1}, c2 = {3, -1.0, 1};
            assert_int_equal(lp.policy->choose(state, &x.in, &c), MAB_OK);
            assert_int_equal(lp.policy->choose(state, &y.in, &c2), MAB_OK);
            assert_int_equal(c.arm, c2.arm);
            assert_true(c.arm < 3);
            assert_true(fabs(c.probability - probs[k][c.arm]) < 1e-12);
            counts[c.arm]++;
        }
        assert_chi_square_fits(counts, probs[k], 3, DRAWS / 10, k == 0 ? 1 : 2);
        double p[3];
        int kind = 0;
        assert_int_equal(lp.policy->explain(state, &x.in, p, &kind), MAB_OK);
        for (int a = 0; a < 3; a++)
            assert_true(fabs(p[a] - probs[k][a]) < 1e-12);
        mab_rng_destroy(rng);
        mab_rng_destroy(again);
    }
    lp.policy->destroy(state);
    dlclose(lp.handle);
}

static void test_sw_ucb_params_are_validated(void **unused)
{
    loaded_policy2 lp = load_policy2("sw_ucb");
    mab_policy_layout layout;
    void *state = NULL;
    char message[MAB_ERROR_MAX];
    assert_int_equal(try_create2(&lp, "{\"xi\": 0}", 3, &layout, &state, message, sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "xi"));
    assert_int_equal(try_create2(&lp, "{\"window\": 0}", 3, &layout, &state, message,
                                 sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "window"));
    /* 8761 hourly buckets: more than MAB_POLICY_WINDOW_MAX. */
    assert_int_equal(try_create2(&lp, "{\"window\": 31539600}", 3, &layout, &state, message,
                                 sizeof message),
                     MAB_ECONFIG);
    assert_non_null(strstr(message, "8761 buckets"));
    dlclose(lp.handle);
}

/* exp3.so and thompson.so export exactly one dynamic symbol, the ABI 2
   entry. */
static void test_exp3_exports_one_symbol(void **unused)
{
    static const char *const names[] = {"exp3", "thompson"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char command[1200];
        snprintf(command, sizeof command, "nm -D --defined-only '%s/%s.so' 2>/dev/null",
                 MAB_PLUGIN_DIR, names[k]);
        FILE *pipe = popen(command, "r");
        if (!pipe)
            skip();
        char line[512];
        int n_symbols = 0, has_entry2 = 0;
        while (fgets(line, sizeof line, pipe)) {
            n_symbols++;
            if (strstr(line, " " MAB_POLICY2_ENTRY_SYMBOL "\n"))
                has_entry2 = 1;
        }
        if (pclose(pipe) != 0)
            skip(); /* nm not installed */
        if (n_symbols != 1 || !has_entry2)
            fail_msg("%s.so exports %d symbols (entry2: %d)", names[k], n_symbols, has_entry2);
    }
}

/* ---- Thompson (policy ABI 2) ------------------------------------------ */

static void *thompson_open(loaded_policy2 *lp, const char *json, size_t n_arms)
{
    *lp = load_policy2("thompson");
    assert_null(dlsym(lp->handle, MAB_POLICY_ENTRY_SYMBOL)); /* ABI 2 only */
    mab_policy_layout layout;
    void *state = NULL;
    char message[MAB_ERROR_MAX];
    if (try_create2(lp, json, n_arms, &layout, &state, message, sizeof message) != MAB_OK)
        fail_msg("thompson create(%s): %s", json, message);
    assert_int_equal(layout.arm_stats, 0);
    assert_int_equal(layout.experiment_stats, 0);
    return state;
}

static void thompson_close(loaded_policy2 *lp, void *state)
{
    lp->policy->destroy(state);
    dlclose(lp->handle);
}

/* One choose over `arms`; probabilities (n_arms doubles, or NULL) is the
   ABI 2.2 array. */
static mab_policy_choice thompson_choose2(const loaded_policy2 *lp, const void *state,
                                          const mab_arm_view *arms, size_t n_arms,
                                          mab_rng *rng, double *probabilities)
{
    mab_policy_input in = {.struct_size = sizeof in,
                           .api = &test_api,
                           .arms = arms,
                           .n_arms = n_arms,
                           .rng = rng,
                           .probabilities = probabilities};
    mab_policy_choice c = {n_arms, -1.0, -1};
    assert_int_equal(lp->policy->choose(state, &in, &c), MAB_OK);
    assert_true(c.arm < n_arms);
    assert_int_equal(c.estimated, 1);
    return c;
}

/* DRAWS choices with the given seed, counted per arm; every probability
   must be NaN (probability_draws 0) or not, as `nan` says. */
static void thompson_count(const loaded_policy2 *lp, const void *state,
                           const mab_arm_view *arms, size_t n_arms, uint64_t seed, int nan,
                           uint64_t *counts)
{
    mab_rng *rng = mab_rng_create(seed);
    memset(counts, 0, n_arms * sizeof *counts);
    for (int d = 0; d < DRAWS; d++) {
        mab_policy_choice c = thompson_choose2(lp, state, arms, n_arms, rng, NULL);
        if (nan)
            assert_true(isnan(c.probability));
        else
            assert_true(c.probability > 0.0 && c.probability <= 1.0);
        counts[c.arm]++;
    }
    mab_rng_destroy(rng);
}

static void test_thompson_matches_p_best(void **unused)
{
    loaded_policy2 lp;
    void *state = thompson_open(&lp, "{\"probability_draws\": 0}", 3);
    /* Posteriors with the uniform prior: Beta(4, 8), Beta(6, 6), Beta(9, 13). */
    mab_arm_view arms[3] = {arm_stats(10, 3), arm_stats(10, 5), arm_stats(20, 8)};
    const double a[3] = {4, 6, 9}, b[3] = {8, 6, 13};
    double probs[3];
    beta_p_best(a, b, 3, probs);
    assert_near(probs[0] + probs[1] + probs[2], 1.0, 1e-9);

    /* The accumulated CDFs agree with the exact binomial sums. */
    for (int k = 0; k < 3; k++)
        for (int tenth = 1; tenth < 10; tenth++)
            assert_near(cdf_grids[k][tenth * (GRID / 10)],
                        beta_cdf_integer(tenth / 10.0, (int)a[k], (int)b[k]), 1e-10);

    uint64_t counts[3];
    thompson_count(&lp, state, arms, 3, 16, 1, counts); /* NaN: probability_draws 0 */
    assert_chi_square_fits(counts, probs, 3, DRAWS, 2);
    thompson_close(&lp, state);
}

static void test_thompson_fractional_rewards_and_prior(void **unused)
{
    loaded_policy2 lp;
    void *state =
        thompson_open(&lp, "{\"alpha0\":2,\"beta0\":3,\"probability_draws\":0}", 3);
    /* Posteriors Beta(2 + s, 3 + n - s): Beta(4.5, 4.5), Beta(3.5, 7.5),
       Beta(5.25, 4.75). Fractional sums enter as they are. */
    mab_arm_view arms[3] = {arm_stats(4, 2.5), arm_stats(6, 1.5), arm_stats(5, 3.25)};
    const double a[3] = {4.5, 3.5, 5.25}, b[3] = {4.5, 7.5, 4.75};
    double probs[3];
    beta_p_best(a, b, 3, probs);
    assert_near(probs[0] + probs[1] + probs[2], 1.0, 1e-9);
    uint64_t counts[3];
    thompson_count(&lp, state, arms, 3, 17, 1, counts);
    assert_chi_square_fits(counts, probs, 3, DRAWS, 2);
    thompson_close(&lp, state);
}

/* Totals no engine run produces (a damaged store, found by fuzz_lmdb): a
   negative reward sum must not make a Beta shape <= 0. */
/* Without a probability estimate (probability_draws 0) thompson draws its
   leader on a path of its own (beta_leader_direct); with one, the leader is
   drawn first the general way, from the same stream. The two must choose
   the same arm from the same state of the generator: over views with
   unpulled arms, rewards without pulls, negative sums (a store's), equal
   posteriors, and a prior of its own. (Equal draws, the tie branch, do not
   occur in practice: it is the same code as beta_draw_leader's.) */
static void test_thompson_direct_leader_as_general(void **unused)
{
    (void)unused;
    static const char *const priors[][2] = {
        {"{\"probability_draws\": 0}", "{\"probability_draws\": 1}"},
        {"{\"alpha0\": 0.5, \"beta0\": 3, \"probability_draws\": 0}",
         "{\"alpha0\": 0.5, \"beta0\": 3, \"probability_draws\": 1}"}};
    mab_rng *views = mab_rng_create(41);
    for (size_t k = 0; k < 2; k++) {
        loaded_policy2 direct_lp, general_lp;
        void *direct = thompson_open(&direct_lp, priors[k][0], 12);
        void *general = thompson_open(&general_lp, priors[k][1], 12);
        for (int round = 0; round < 400; round++) {
            size_t n = 2 + (size_t)mab_rng_below(views, 11);
            mab_arm_view arms[12];
            for (size_t i = 0; i < n; i++) {
                uint64_t pulls = mab_rng_below(views, 4) == 0 ? 0 : mab_rng_below(views, 200);
                double sum = mab_rng_uniform(views) * (double)pulls;
                if (mab_rng_below(views, 10) == 0)
                    sum = -mab_rng_uniform(views); /* a store's rounding below 0 */
                if (mab_rng_below(views, 10) == 0)
                    sum = 3.0; /* rewards of another process's pulls */
                arms[i] = arm_stats(pulls, sum);
            }
            if (round % 5 == 0) /* every posterior equal */
                for (size_t i = 1; i < n; i++)
                    arms[i] = arms[0];
            uint64_t seed = 1000 + (uint64_t)round;
            mab_rng *a = mab_rng_create(seed), *b = mab_rng_create(seed);
            mab_policy_choice one = thompson_choose2(&direct_lp, direct, arms, n, a, NULL);
            mab_policy_choice two = thompson_choose2(&general_lp, general, arms, n, b, NULL);
            if (one.arm != two.arm)
                fail_msg("prior %zu, round %d: direct %zu, general %zu", k, round, one.arm,
                         two.arm);
            assert_true(isnan(one.probability));
            mab_rng_destroy(a);
            mab_rng_destroy(b);
        }
        thompson_close(&direct_lp, direct);
        thompson_close(&general_lp, general);
    }
    mab_rng_destroy(views);
}

static void test_thompson_negative_sum_from_storage(void **unused)
{
    loaded_policy2 lp;
    void *state = thompson_open(&lp, "{\"probability_draws\": 2}", 3);
    mab_arm_view arms[3] = {arm_stats(0, -5), arm_stats(10, 0), arm_stats(UINT64_MAX, -1.6e163)};
    uint64_t counts[3];
    thompson_count(&lp, state, arms, 3, 29, 0, counts);
    /* Clamped to 0 successes, the first arm is Beta(1, 1) and beats the
       second, Beta(1, 11), most of the time (it would never be chosen with
       its draw NaN, and the third would recurse without end). */
    assert_true(counts[0] > 4 * counts[1]);
    assert_true(counts[2] > 4 * counts[1]);
    thompson_close(&lp, state);
}

static void thompson_refused(const char *json, const char *key)
{
    loaded_policy2 lp = load_policy2("thompson");
    mab_policy_layout layout;
    void *state = NULL;
    char message[MAB_ERROR_MAX];
    int rc = try_create2(&lp, json, 2, &layout, &state, message, sizeof message);
    if (rc != MAB_ECONFIG || !strstr(message, key))
        fail_msg("thompson create(%s) returned %d, \"%s\"; expected MAB_ECONFIG naming %s",
                 json, rc, message, key);
    assert_null(state);
    dlclose(lp.handle);
}

static void test_thompson_params_are_validated(void **unused)
{
    thompson_refused("{\"alpha0\":0}", "alpha0");
    thompson_refused("{\"beta0\":-1}", "beta0");
    thompson_refused("{\"beta0\":2e6}", "beta0");
    thompson_refused("{\"alpha0\":true}", "alpha0");
    thompson_refused("{\"probability_draws\": -1}", "probability_draws");
    thompson_refused("{\"probability_draws\": 100001}", "probability_draws");
    thompson_refused("{\"probability_draws\": \"x\"}", "probability_draws");
    thompson_refused("{\"probability_draws\": 2.5}", "probability_draws");
    thompson_refused("{\"likelihood\": \"gaussian\", \"probability_draws\": -1}",
                     "probability_draws");
    /* The bounds themselves are accepted. */
    loaded_policy2 lp;
    thompson_close(&lp, thompson_open(&lp, "{\"probability_draws\": 100000}", 2));
    thompson_close(&lp, thompson_open(&lp, "{\"probability_draws\": 0}", 2));
}

/* ln B(x, y). */
static double log_beta_fn(double x, double y)
{
    return lgamma(x) + lgamma(y) - lgamma(x + y);
}

/*
 * P(theta_B > theta_A) for theta_A ~ Beta(a_a, b_a), theta_B ~ Beta(a_b,
 * b_b), a_b an integer (Evan Miller, "Formulas for Bayesian A/B testing"):
 * sum_{i=0}^{a_b - 1} B(a_a + i, b_a + b_b) / ((b_b + i) B(1 + i, b_b) B(a_a, b_a)).
 */
static double beta_b_beats_a(double a_a, double b_a, int a_b, double b_b)
{
    double sum = 0.0;
    for (int i = 0; i < a_b; i++)
        sum += exp(log_beta_fn(a_a + i, b_a + b_b) - log(b_b + i) - log_beta_fn(1.0 + i, b_b) -
                   log_beta_fn(a_a, b_a));
    return sum;
}

/*
 * The estimate against the exact two-arm probability, on hand-picked
 * posteriors (integer shapes): every arm's value of each of R chooses
 * within 5 standard errors sqrt(p (1 - p) / S) at S = 4096 (plus the floor,
 * 1/(2S), which an arm that led no draw gets when chosen), and their mean
 * over R chooses within 5 standard errors of a mean (unbiased). The
 * closed form is checked against the quadrature first.
 */
#define EST_DRAWS 4096
#define EST_REPEATS 32

static void test_thompson_estimate_matches_two_arm_exact(void **unused)
{
    static const struct {
        uint64_t pulls[2];
        double sums[2];
    } cases[] = {
        {{10, 10}, {3, 5}},       /* Beta(4, 8) vs Beta(6, 6) */
        {{0, 2}, {0, 1}},         /* Beta(1, 1) vs Beta(2, 2): exactly 1/2 */
        {{100, 100}, {30, 36}},   /* close rates, more data */
        {{5, 50}, {3, 10}},       /* little data against much */
        {{400, 400}, {40, 64}},   /* an arm far behind: P ~ 0.008 */
    };
    loaded_policy2 lp;
    void *state = thompson_open(&lp, "{\"probability_draws\": 4096}", 2);
    mab_rng *rng = mab_rng_create(4096);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mab_arm_view arms[2];
        double a[2], b[2];
        for (int i = 0; i < 2; i++) {
            arms[i] = arm_stats(cases[k].pulls[i], cases[k].sums[i]);
            a[i] = 1.0 + cases[k].sums[i];
            b[i] = 1.0 + (double)cases[k].pulls[i] - cases[k].sums[i];
        }
        double exact[2], quadrature[2];
        exact[1] = beta_b_beats_a(a[0], b[0], (int)a[1], b[1]);
        exact[0] = 1.0 - exact[1];
        if (k == 1) {
            assert_near(exact[1], 0.5, 1e-12); /* by symmetry */
        } else { /* (the quadrature drops Beta(1, 1)'s endpoints) */
            beta_p_best(a, b, 2, quadrature);
            assert_near(exact[1], quadrature[1], 1e-8);
        }

        double mean[2] = {0.0, 0.0};
        for (int r = 0; r < EST_REPEATS; r++) {
            double p[2] = {-1.0, -1.0};
            mab_policy_choice c = thompson_choose2(&lp, state, arms, 2, rng, p);
            assert_true(c.probability == p[c.arm]);
            assert_near(p[0] + p[1], 1.0, 1e-12);
            for (int i = 0; i < 2; i++) {
                double se = sqrt(exact[i] * (1.0 - exact[i]) / EST_DRAWS);
                assert_near(p[i], exact[i], 5.0 * se + 0.5 / EST_DRAWS);
                mean[i] += p[i] / EST_REPEATS;
            }
        }
        for (int i = 0; i < 2; i++) {
            double se = sqrt(exact[i] * (1.0 - exact[i]) / EST_DRAWS / EST_REPEATS);
            assert_near(mean[i], exact[i], 5.0 * se + 0.5 / EST_DRAWS);
        }
    }
    mab_rng_destroy(rng);
    thompson_close(&lp, state);
}

/* Choice frequencies of two arms against the exact probability (chi-square,
   1 degree of freedom); the estimate's draws (here 8) come after the
   choice's and leave its distribution alone. */
static void test_thompson_choices_match_two_arm_exact(void **unused)
{
    loaded_policy2 lp;
    void *state = thompson_open(&lp, "{\"probability_draws\": 8}", 2);
    mab_arm_view arms[2] = {arm_stats(20, 7), arm_stats(12, 6)}; /* Beta(8, 14), Beta(7, 7) */
    double probs[2];
    probs[1] = beta_b_beats_a(8, 14, 7, 7);
    probs[0] = 1.0 - probs[1];
    uint64_t counts[2];
    thompson_count(&lp, state, arms, 2, 31, 0, counts);
    assert_chi_square_fits(counts, probs, 2, DRAWS, 1);
    thompson_close(&lp, state);
}

/*
 * With probability_draws 0 the choice consumes the random stream exactly as
 * the ABI 1 plugin did: these sequences (and the stream's next value after
 * them) were recorded from thompson.so of ABI 1 (commit 9eead85) with the
 * same seeds and counters, so seeded simulations keep their figures.
 */
static void test_thompson_draws_zero_keeps_the_abi1_choices(void **unused)
{
    static const struct {
        const char *json;
        size_t n;
        mab_arm_view arms[4];
        uint64_t seed;
        const char *choices;
        uint64_t next;
    } recorded[] = {
        {"{\"probability_draws\":0}", 3,
         {{10, 10, 3, 3}, {10, 10, 5, 5}, {20, 20, 8, 8}}, 1313,
         "101111111112212111110011111111211111111122122211120110111221111212111201221122111011"
         "102121111011110221011112111210110212",
         0x7d967e91644ba094ULL},
        {"{\"alpha0\":2,\"beta0\":3,\"probability_draws\":0}", 4,
         {{0, 0, 0, 0}, {5, 5, 1, 1}, {100, 100, 60, 60}, {0, 0, 0, 0}}, 99,
         "223222222222222222232032202222000122203203322223231022222222200223223232222322220322"
         "200223200020032233223203222220230202",
         0x8b44a95ca793cfc1ULL},
        {"{\"likelihood\":\"gaussian\",\"probability_draws\":0}", 3,
         {{0, 0, 0, 0}, {1, 1, 0.4, 0.16}, {50, 50, 20, 10}}, 4242,
         "102012201120210020020100010200020110000021102022001201102000200002010010200210000111"
         "000210210001121102002000120010001212",
         0x78de12eef5df5b23ULL},
    };
    for (size_t k = 0; k < sizeof recorded / sizeof recorded[0]; k++) {
        loaded_policy2 lp;
        void *state = thompson_open(&lp, recorded[k].json, recorded[k].n);
        mab_rng *rng = mab_rng_create(recorded[k].seed);
        char got[256];
        size_t len = strlen(recorded[k].choices);
        assert_true(len < sizeof got);
        for (size_t d = 0; d < len; d++) {
            mab_policy_choice c =
                thompson_choose2(&lp, state, recorded[k].arms, recorded[k].n, rng, NULL);
            assert_true(isnan(c.probability)); /* and flagged (thompson_choose2) */
            got[d] = (char)('0' + c.arm);
        }
        got[len] = '\0';
        assert_string_equal(got, recorded[k].choices);
        assert_true(mab_rng_u64(rng) == recorded[k].next);
        mab_rng_destroy(rng);
        thompson_close(&lp, state);
    }
}

/*
 * ABI 2.2's probabilities, over random counters (untried arms, huge counts,
 * 2 to 100 arms: past the plugin's 64 arms on the stack), both
 * likelihoods and several draw counts: every value in [0, 1], summing to 1,
 * the chosen arm's equal to the choice's and at least 1/(2S); with S = 1 an
 * arm that did not lead the one draw reports exactly 1/2. The array is left
 * alone when the core's struct_size does not cover it, and the choice's
 * probability is the same with or without it.
 */
static void test_thompson_probabilities_sum_to_one(void **unused)
{
    enum { MAX_ARMS = 100 };
    static const char *const configs[] = {
        "{\"probability_draws\": 1}", "{\"probability_draws\": 7}", "{}",
        "{\"likelihood\": \"gaussian\", \"probability_draws\": 1}",
        "{\"likelihood\": \"gaussian\"}",
    };
    static const size_t draws[] = {1, 7, 256, 1, 256};
    mab_arm_view arms[MAX_ARMS];
    double p[MAX_ARMS + 1];
    memset(arms, 0, sizeof arms);
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        loaded_policy2 lp;
        void *state = thompson_open(&lp, configs[k], MAX_ARMS);
        mab_rng *stats_rng = mab_rng_create(300 + k);
        int floored = 0;
        for (int round = 0; round < 300; round++) {
            size_t n = 2 + (size_t)mab_rng_below(stats_rng, MAX_ARMS - 1);
            uint64_t scale = (uint64_t)1 << mab_rng_below(stats_rng, 40);
            for (size_t i = 0; i < n; i++) {
                uint64_t pulls = mab_rng_below(stats_rng, 4) == 0
                                     ? 0
                                     : mab_rng_below(stats_rng, scale) + 1;
                double sum = mab_rng_uniform(stats_rng) * (double)pulls;
                arms[i] = (mab_arm_view){pulls, pulls, sum, sum * sum / (double)(pulls + 1)};
            }
            for (size_t i = 0; i <= n; i++)
                p[i] = -1.0; /* p[n]: a guard the plugin must not write */
            uint64_t seed = 1000 * k + (uint64_t)round;
            mab_rng *rng = mab_rng_create(seed), *again = mab_rng_create(seed);
            mab_policy_choice c = thompson_choose2(&lp, state, arms, n, rng, p);
            mab_policy_choice c2 = thompson_choose2(&lp, state, arms, n, again, NULL);
            assert_int_equal(c.arm, c2.arm);
            assert_true(c.probability == c2.probability);
            assert_true(c.probability == p[c.arm]);
            assert_true(c.probability >= 0.5 / (double)draws[k]);
            double total = 0.0;
            for (size_t i = 0; i < n; i++) {
                assert_true(p[i] >= 0.0 && p[i] <= 1.0);
                total += p[i];
            }
            assert_near(total, 1.0, 1e-12);
            assert_true(p[n] == -1.0);
            if (draws[k] == 1 && p[c.arm] != 1.0) {
                assert_true(p[c.arm] == 0.5);
                floored++;
            }
            mab_rng_destroy(rng);
            mab_rng_destroy(again);
        }
        if (draws[k] == 1)
            assert_true(floored > 0); /* the floor's case was exercised */
        mab_rng_destroy(stats_rng);

        /* An ABI 2.1 core: struct_size ends before probabilities. */
        mab_rng *rng = mab_rng_create(7);
        mab_policy_input in = {.struct_size = offsetof(mab_policy_input, probabilities),
                               .api = &test_api,
                               .arms = arms,
                               .n_arms = 3,
                               .rng = rng,
                               .probabilities = p};
        p[0] = p[1] = p[2] = -1.0;
        mab_policy_choice c = {3, -1.0, -1};
        assert_int_equal(lp.policy->choose(state, &in, &c), MAB_OK);
        assert_true(c.probability > 0.0 && c.probability <= 1.0);
        assert_true(p[0] == -1.0 && p[1] == -1.0 && p[2] == -1.0);
        mab_rng_destroy(rng);
        thompson_close(&lp, state);
    }
}

/* explain(): scores, each arm's posterior mean, by hand. */
static void test_thompson_explain_gives_posterior_means(void **unused)
{
    mab_arm_view arms[3] = {arm_stats(10, 3), arm_stats(0, 0), arm_stats(4, 2.5)};
    arms[2].reward_sum_sq = 2.0;
    mab_policy_input in = {.struct_size = sizeof in, .api = &test_api, .arms = arms,
                           .n_arms = 3};
    static const char *const configs[] = {"{}", "{\"alpha0\": 2, \"beta0\": 3}",
                                          "{\"likelihood\": \"gaussian\"}"};
    /* Beta(1 + s, 1 + n - s): 4/12, 1/2, 3.5/6; Beta(2 + s, 3 + n - s):
       5/15, 2/5, 4.5/9; Normal: s/n, 1/2 untried, s/n. */
    const double expected[3][3] = {{4.0 / 12, 0.5, 3.5 / 6},
                                   {5.0 / 15, 2.0 / 5, 4.5 / 9},
                                   {0.3, 0.5, 2.5 / 4}};
    for (int k = 0; k < 3; k++) {
        loaded_policy2 lp;
        void *state = thompson_open(&lp, configs[k], 3);
        assert_non_null(lp.policy->explain);
        double values[3] = {-1, -1, -1};
        int kind = 0;
        assert_int_equal(lp.policy->explain(state, &in, values, &kind), MAB_OK);
        assert_int_equal(kind, MAB_EXPLAIN_SCORES);
        for (int i = 0; i < 3; i++)
            assert_near(values[i], expected[k][i], 1e-15);
        thompson_close(&lp, state);
    }
}

/* Flask-MAB's Monte-Carlo test (as run_convergence below) through ABI 2, with
   the default estimate and without. */
static void test_thompson_converges(void **unused)
{
    const double rates[3] = {0.99, 0.01, 0.01};
    static const char *const configs[] = {"{}", "{\"probability_draws\": 0}"};
    for (int k = 0; k < 2; k++) {
        loaded_policy2 lp;
        void *state = thompson_open(&lp, configs[k], 3);
        mab_rng *rng = mab_rng_create(23), *world = mab_rng_create(1023);
        mab_arm_view arms[3] = {arm_stats(0, 0), arm_stats(0, 0), arm_stats(0, 0)};
        for (int step = 0; step < 2000; step++) {
            size_t arm = thompson_choose2(&lp, state, arms, 3, rng, NULL).arm;
            arms[arm].pulls++;
            if (mab_rng_uniform(world) < rates[arm]) {
                arms[arm].rewards++;
                arms[arm].reward_sum += 1.0;
                arms[arm].reward_sum_sq += 1.0;
            }
        }
        for (size_t i = 1; i < 3; i++)
            if (arms[i].pulls >= arms[0].pulls)
                fail_msg("thompson %s: arm %zu pulled %llu times, best arm only %llu",
                         configs[k], i, (unsigned long long)arms[i].pulls,
                         (unsigned long long)arms[0].pulls);
        mab_rng_destroy(world);
        mab_rng_destroy(rng);
        thompson_close(&lp, state);
    }
}

/* ---- every policy ----------------------------------------------------- */

/* The ABI 1 plugins (thompson, ABI 2 since issue 13, has its own tests above). */
static const char *const POLICIES[] = {"epsilon_greedy", "softmax", "ucb1"};
#define N_POLICIES (sizeof POLICIES / sizeof POLICIES[0])

/* Random statistics, including the corners: untried arms, all-zero arms,
   huge counts, rewards never recorded. choose must always succeed. */
static void test_every_policy_returns_valid_arms(void **unused)
{
    enum { MAX_ARMS = 40 };
    for (size_t k = 0; k < N_POLICIES; k++) {
        loaded_policy lp = load_policy(POLICIES[k]);
        void *state = create_ok(&lp, "{}", MAX_ARMS);
        mab_rng *rng = mab_rng_create(100 + k);
        mab_rng *stats_rng = mab_rng_create(200 + k);
        mab_arm_view arms[MAX_ARMS];
        for (int round = 0; round < 5000; round++) {
            size_t n = 2 + (size_t)mab_rng_below(stats_rng, MAX_ARMS - 1);
            uint64_t scale = (uint64_t)1 << mab_rng_below(stats_rng, 50);
            for (size_t i = 0; i < n; i++) {
                uint64_t pulls = mab_rng_below(stats_rng, 4) == 0
                                     ? 0
                                     : mab_rng_below(stats_rng, scale) + 1;
                double sum = round % 7 == 0 ? 0.0
                                            : mab_rng_uniform(stats_rng) * (double)pulls;
                arms[i] = arm_stats(pulls, sum);
            }
            double p;
            choose_ok(&lp, state, arms, n, rng, &p);
            assert_true(p > 0.0 && p <= 1.0);
        }
        mab_rng_destroy(stats_rng);
        mab_rng_destroy(rng);
        lp.policy->destroy(state);
        unload_policy(&lp);
    }
}

/* A plugin exports exactly one dynamic symbol, mab_policy_entry. */
static void test_every_policy_exports_one_symbol(void **unused)
{
    for (size_t k = 0; k < N_POLICIES; k++) {
        char command[1200];
        snprintf(command, sizeof command, "nm -D --defined-only '%s/%s.so' 2>/dev/null",
                 MAB_PLUGIN_DIR, POLICIES[k]);
        FILE *pipe = popen(command, "r");
        if (!pipe)
            skip();
        char line[512];
        int n_symbols = 0, has_entry = 0;
        while (fgets(line, sizeof line, pipe)) {
            n_symbols++;
            if (strstr(line, " mab_policy_entry"))
                has_entry = 1;
        }
        int status = pclose(pipe);
        if (status != 0)
            skip(); /* nm not installed */
        if (n_symbols != 1 || !has_entry)
            fail_msg("%s.so exports %d symbols", POLICIES[k], n_symbols);
    }
}

/* Flask-MAB's Monte-Carlo test without the engine: 3 Bernoulli arms, our
   own counters, and the best arm must end up the most chosen. */
static void run_convergence(const char *policy, const char *json, const double *rates,
                            size_t best, uint64_t seed)
{
    loaded_policy lp = load_policy(policy);
    void *state = create_ok(&lp, json, 3);
    mab_rng *rng = mab_rng_create(seed);
    mab_rng *world = mab_rng_create(seed + 1000);
    mab_arm_view arms[3] = {arm_stats(0, 0), arm_stats(0, 0), arm_stats(0, 0)};
    for (int step = 0; step < 2000; step++) {
        size_t arm = choose_ok(&lp, state, arms, 3, rng, NULL);
        arms[arm].pulls++;
        if (mab_rng_uniform(world) < rates[arm]) {
            arms[arm].rewards++;
            arms[arm].reward_sum += 1.0;
            arms[arm].reward_sum_sq += 1.0;
        }
    }
    for (size_t i = 0; i < 3; i++)
        if (i != best && arms[i].pulls >= arms[best].pulls)
            fail_msg("%s %s: arm %zu pulled %llu times, best arm %zu only %llu", policy, json,
                     i, (unsigned long long)arms[i].pulls, best,
                     (unsigned long long)arms[best].pulls);
    mab_rng_destroy(world);
    mab_rng_destroy(rng);
    lp.policy->destroy(state);
    unload_policy(&lp);
}

static void test_every_policy_converges(void **unused)
{
    const double first_best[3] = {0.99, 0.01, 0.01};
    const double last_best[3] = {0.01, 0.01, 0.98};
    run_convergence("epsilon_greedy", "{}", first_best, 0, 21);
    run_convergence("ucb1", "{}", first_best, 0, 22);
    run_convergence("softmax", "{\"tau\":0.1}", last_best, 2, 24);
    run_convergence("softmax", "{\"annealing\":true}", last_best, 2, 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp3_frequencies_match_probabilities),
        cmocka_unit_test(test_exp3_update_adds_importance_weighted_reward),
        cmocka_unit_test(test_exp3_large_sums_do_not_overflow),
        cmocka_unit_test(test_exp3_params_are_validated),
        cmocka_unit_test(test_exp3_exports_one_symbol),
        cmocka_unit_test(test_sw_ucb_hand_computed),
        cmocka_unit_test(test_sw_ucb_ties_uniform_and_deterministic),
        cmocka_unit_test(test_sw_ucb_params_are_validated),
        cmocka_unit_test(test_epsilon_zero_picks_best),
        cmocka_unit_test(test_epsilon_one_is_uniform),
        cmocka_unit_test(test_epsilon_mixed_matches_formula),
        cmocka_unit_test(test_epsilon_breaks_ties_at_random),
        cmocka_unit_test(test_epsilon_seeded_choices_recorded),
        cmocka_unit_test(test_epsilon_params_are_validated),
        cmocka_unit_test(test_ucb1_tries_untried_arms_first),
        cmocka_unit_test(test_ucb1_matches_hand_computed_indices),
        cmocka_unit_test(test_ucb1_breaks_ties_at_random),
        cmocka_unit_test(test_softmax_frequencies_match_boltzmann),
        cmocka_unit_test(test_softmax_many_arms_match_boltzmann),
        cmocka_unit_test(test_softmax_small_tau_does_not_overflow),
        cmocka_unit_test(test_softmax_annealing),
        cmocka_unit_test(test_softmax_params_are_validated),
        cmocka_unit_test(test_thompson_matches_p_best),
        cmocka_unit_test(test_thompson_fractional_rewards_and_prior),
        cmocka_unit_test(test_thompson_params_are_validated),
        cmocka_unit_test(test_thompson_direct_leader_as_general),
        cmocka_unit_test(test_thompson_negative_sum_from_storage),
        cmocka_unit_test(test_thompson_estimate_matches_two_arm_exact),
        cmocka_unit_test(test_thompson_choices_match_two_arm_exact),
        cmocka_unit_test(test_thompson_draws_zero_keeps_the_abi1_choices),
        cmocka_unit_test(test_thompson_probabilities_sum_to_one),
        cmocka_unit_test(test_thompson_explain_gives_posterior_means),
        cmocka_unit_test(test_thompson_converges),
        cmocka_unit_test(test_every_policy_returns_valid_arms),
        cmocka_unit_test(test_every_policy_exports_one_symbol),
        cmocka_unit_test(test_every_policy_converges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
