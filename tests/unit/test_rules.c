/*
 * test_rules.c - the operating rules the core applies around any policy
 * (core/rules.c; ALGORITHMS.md "Operating rules"): the floor's, burn-in's
 * and holdout's choice frequencies against their exact probabilities, the
 * probability reported with each choice, paused and concluded states, the
 * attribution window with the injected clock, the holdout comparison, the
 * config's errors, and the adapter's cookie tags.
 *
 * Frequencies are checked category by category: |count - N p| must stay
 * within 5.5 standard deviations (sqrt(N p (1 - p))), a false failure
 * probability below 1e-7 per category with these fixed seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "fixture.h"

#define DRAWS 100000

static char key_file[300], store[300];

static int each(void **state)
{
    (void)state;
    fixture_dir_make("rules");
    snprintf(key_file, sizeof key_file, "%s/mab.key", dir);
    snprintf(store, sizeof store, "%s/state.json", dir);
    mab_error err = {0, ""};
    assert_int_equal(mab_adapter_keygen(key_file, &err), MAB_OK);
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#define FIXED(arm) "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_fixed.so\", \"arm\": " #arm "}"
#define UNIFORM "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_uniform.so\"}"
#define EXP3 "{\"plugin\": \"exp3\"}"
#define MEMORY "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\"}"

/* One experiment "exp" with `arms` (a JSON object), a policy and the rules
   given as extra keys of the experiment (`rules`, "" for none). */
static void write_config_full(const char *storage, const char *policy, const char *arms,
                              const char *rules)
{
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 11, \"plugin_path\": [\"%s\"],\n"
                                     " \"secret_file\": \"mab.key\",\n"
                                     " \"storage\": %s,\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": %s%s%s}}}\n",
                                     MAB_PLUGIN_DIR, storage, policy, arms,
                                     rules[0] ? ", " : "", rules),
                     0);
}

#define ARMS3 "{\"a\": 1, \"b\": 2, \"c\": 3}"
#define ARMS4 "{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}"

static void write_config(const char *policy, const char *arms, const char *rules)
{
    write_config_full(MEMORY, policy, arms, rules);
}

static mab_choice choose_ok(mab_engine *e, int *estimated)
{
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    int est = -1;
    int rc = mab_choose_ctx(e, "exp", NULL, &c, &est, &err);
    if (rc)
        print_error("choose: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    if (estimated)
        *estimated = est;
    return c;
}

static void assert_frequency(uint64_t count, double p, uint64_t n, const char *what)
{
    double expected = (double)n * p, sd = sqrt((double)n * p * (1.0 - p));
    if (fabs((double)count - expected) > 5.5 * sd + 1e-9)
        fail_msg("%s: %llu of %llu, expected %.1f (sd %.1f)", what, (unsigned long long)count,
                 (unsigned long long)n, expected, sd);
}

static uint64_t pulls_of(mab_engine *e, const char *experiment, size_t arm)
{
    mab_arm_stats st[8];
    st[0].struct_size = sizeof st[0];
    size_t n = 0;
    assert_int_equal(mab_stats(e, experiment, st, 8, &n, NULL), MAB_OK);
    assert_true(arm < n);
    return st[arm].pulls;
}

/* ---- floor ------------------------------------------------------------ */

/* A policy that always picks c: p_i = f + (1 - 4f) 1[i = c], reported
   exactly with every choice. */
static void test_floor_over_a_fixed_policy(void **state)
{
    (void)state;
    write_config(FIXED(2), ARMS4, "\"floor\": 0.05");
    mab_engine *e = open_ok();
    const double p[4] = {0.05, 0.05, 0.85, 0.05};
    uint64_t counts[4] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int est;
        mab_choice c = choose_ok(e, &est);
        assert_true(c.arm_index < 4);
        assert_float_equal(c.probability, p[c.arm_index], 1e-12);
        assert_int_equal(est, 0);
        if (c.arm_index != 2)
            assert_true(c.flags & MAB_CHOICE_FLOOR);
        counts[c.arm_index]++;
    }
    for (size_t i = 0; i < 4; i++)
        assert_frequency(counts[i], p[i], DRAWS, "floor over fixed");
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pulls_of(e, "exp", i), counts[i]);
    close_ok(e);
}

/* A policy that reports only its own arm's probability (1/4, not 1): the
   floor's arm gets a Monte Carlo estimate, flagged; the distribution is
   still exact (uniform). */
static void test_floor_estimates_when_it_must(void **state)
{
    (void)state;
    write_config(UNIFORM, ARMS4, "\"floor\": 0.1");
    mab_engine *e = open_ok();
    uint64_t counts[4] = {0}, estimated = 0;
    for (int d = 0; d < DRAWS / 4; d++) {
        int est;
        mab_choice c = choose_ok(e, &est);
        counts[c.arm_index]++;
        if (est) {
            estimated++;
            assert_true(c.flags & MAB_CHOICE_FLOOR);
            assert_true(c.probability >= 0.1 - 1e-12 && c.probability <= 0.7 + 1e-12);
        } else {
            /* f + (1 - 4f) * 1/4 */
            assert_float_equal(c.probability, 0.25, 1e-12);
        }
    }
    /* The floor draw (0.4) picks another arm than the policy's 3/4 of the
       time: 0.3 of the choices are estimated. */
    assert_frequency(estimated, 0.3, DRAWS / 4, "estimated choices");
    for (size_t i = 0; i < 4; i++)
        assert_frequency(counts[i], 0.25, DRAWS / 4, "floor over uniform");
    close_ok(e);
}

/* EXP3 explains its probabilities: the floor's arm is then exact too. */
static void test_floor_exact_from_explain(void **state)
{
    (void)state;
    write_config(EXP3, ARMS4, "\"floor\": 0.1");
    mab_engine *e = open_ok();
    uint64_t counts[4] = {0};
    for (int d = 0; d < DRAWS / 4; d++) {
        int est;
        mab_choice c = choose_ok(e, &est);
        assert_int_equal(est, 0);
        /* Without rewards EXP3 is uniform: every p_i is 1/4 exactly. */
        assert_float_equal(c.probability, 0.25, 1e-12);
        counts[c.arm_index]++;
    }
    for (size_t i = 0; i < 4; i++)
        assert_frequency(counts[i], 0.25, DRAWS / 4, "floor over exp3");
    close_ok(e);
}

/* ---- burn-in ---------------------------------------------------------- */

static void test_burn_in_is_uniform_until_every_arm_has_its_pulls(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"burn_in\": 1000000000");
    mab_engine *e = open_ok();
    uint64_t counts[3] = {0};
    for (int d = 0; d < DRAWS / 2; d++) {
        mab_choice c = choose_ok(e, NULL);
        assert_true(c.flags & MAB_CHOICE_BURN_IN);
        assert_float_equal(c.probability, 1.0 / 3.0, 1e-12);
        counts[c.arm_index]++;
    }
    for (size_t i = 0; i < 3; i++)
        assert_frequency(counts[i], 1.0 / 3.0, DRAWS / 2, "burn-in");
    close_ok(e);

    write_config(FIXED(0), ARMS3, "\"burn_in\": 20");
    e = open_ok();
    uint64_t pulls[3] = {0};
    int after = 0;
    for (int d = 0; d < 400; d++) {
        int burning = pulls[0] < 20 || pulls[1] < 20 || pulls[2] < 20;
        mab_choice c = choose_ok(e, NULL);
        assert_int_equal((c.flags & MAB_CHOICE_BURN_IN) != 0, burning);
        if (!burning) {
            assert_int_equal(c.arm_index, 0);
            assert_float_equal(c.probability, 1.0, 0);
            after++;
        }
        pulls[c.arm_index]++;
    }
    assert_true(after > 0);
    close_ok(e);
}

/* ---- holdout ---------------------------------------------------------- */

static void test_holdout_is_served_uniformly_and_counted_apart(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"holdout\": 0.2");
    mab_engine *e = open_ok();
    assert_int_equal(mab_experiment_count(e), 1); /* the ledger is not listed */
    uint64_t held[3] = {0}, bandit = 0;
    for (int d = 0; d < DRAWS; d++) {
        mab_choice c = choose_ok(e, NULL);
        if (c.flags & MAB_CHOICE_HOLDOUT) {
            assert_float_equal(c.probability, 1.0 / 3.0, 1e-12);
            held[c.arm_index]++;
        } else {
            assert_int_equal(c.arm_index, 0);
            assert_float_equal(c.probability, 1.0, 0);
            bandit++;
        }
    }
    assert_frequency(bandit, 0.8, DRAWS, "bandit share");
    for (size_t i = 0; i < 3; i++)
        assert_frequency(held[i], 0.2 / 3.0, DRAWS, "holdout arm");
    /* The policy's arms saw only the bandit's pulls; the ledger the rest. */
    assert_int_equal(pulls_of(e, "exp", 0), bandit);
    assert_int_equal(pulls_of(e, "exp", 1), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(pulls_of(e, "exp@holdout", i), held[i]);
    /* A holdout reward goes to the ledger, others to the experiment. */
    mab_error err = {0, ""};
    mab_context hold = {sizeof hold, NULL, NULL, 0, 0, 0, MAB_CONTEXT_HOLDOUT, 0};
    assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &hold, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n;
    assert_int_equal(mab_stats(e, "exp@holdout", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[1].rewards, 1);
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[0].rewards, 1);
    assert_int_equal(st[1].rewards, 0);
    /* The ledger has no policy to choose with. */
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp@holdout", &c, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "holdout"));
    /* A reset takes the holdout's counters with the experiment's. */
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    assert_int_equal(pulls_of(e, "exp@holdout", 0), 0);
    close_ok(e);
}

static void test_holdout_control_arm(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"holdout\": {\"share\": 0.3, \"arm\": \"c\"}");
    mab_engine *e = open_ok();
    uint64_t held = 0;
    for (int d = 0; d < DRAWS / 4; d++) {
        mab_choice c = choose_ok(e, NULL);
        if (c.flags & MAB_CHOICE_HOLDOUT) {
            assert_int_equal(c.arm_index, 2);
            assert_float_equal(c.probability, 1.0, 0);
            held++;
        } else {
            assert_int_equal(c.arm_index, 0);
        }
    }
    assert_frequency(held, 0.3, DRAWS / 4, "control share");
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, "exp", &info, NULL), MAB_OK);
    assert_string_equal(info.holdout_arm, "c");
    assert_float_equal(info.holdout_share, 0.3, 0);
    assert_string_equal(info.state, "running");
    close_ok(e);
}

/* Welch's interval computed by hand for 0/1 rewards: the first 30 bandit
   visitors and the first 5 holdout visitors convert. */
static void test_holdout_comparison(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"holdout\": 0.5");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    uint64_t bandit = 0, held = 0;
    mab_context hold = {sizeof hold, NULL, NULL, 0, 0, 0, MAB_CONTEXT_HOLDOUT, 0};
    for (int v = 0; v < 300; v++) {
        mab_choice c = choose_ok(e, NULL);
        if (c.flags & MAB_CHOICE_HOLDOUT) {
            if (held++ < 5)
                assert_int_equal(mab_reward_ctx(e, "exp", c.arm_id, 1.0, &hold, &err), MAB_OK);
        } else if (bandit++ < 30) {
            assert_int_equal(mab_reward(e, "exp", c.arm_id, 1.0, &err), MAB_OK);
        }
    }
    assert_true(bandit > 30 && held > 5);
    mab_holdout_comparison h = {sizeof h, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(mab_holdout_compare(e, "exp", &h, &err), MAB_OK);
    double nb = (double)bandit, nh = (double)held;
    assert_int_equal(h.bandit_visitors, bandit);
    assert_int_equal(h.holdout_visitors, held);
    assert_float_equal(h.bandit_mean, 30.0 / nb, 1e-12);
    assert_float_equal(h.holdout_mean, 5.0 / nh, 1e-12);
    assert_float_equal(h.difference, 30.0 / nb - 5.0 / nh, 1e-12);
    /* s^2 = (k - k^2/n) / (n - 1) for k conversions of n visitors. */
    double vb = (30.0 - 900.0 / nb) / (nb - 1), vh = (5.0 - 25.0 / nh) / (nh - 1);
    double se = sqrt(vb / nb + vh / nh);
    assert_float_equal(h.ci_low, h.difference - 1.959963984540054 * se, 1e-12);
    assert_float_equal(h.ci_high, h.difference + 1.959963984540054 * se, 1e-12);
    /* The report carries the same comparison. */
    mab_report r;
    r.struct_size = sizeof r;
    assert_int_equal(mab_report_get(e, "exp", &r, &err), MAB_OK);
    assert_true(r.available & MAB_REPORT_HAS_HOLDOUT);
    assert_float_equal(r.holdout_diff, h.difference, 1e-12);
    assert_float_equal(r.holdout_diff_low, h.ci_low, 1e-12);
    assert_float_equal(r.holdout_diff_high, h.ci_high, 1e-12);
    mab_report_free(&r);
    close_ok(e);

    write_config(FIXED(0), ARMS3, "");
    e = open_ok();
    assert_int_equal(mab_holdout_compare(e, "exp", &h, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "no holdout"));
    close_ok(e);
}

/* ---- state ------------------------------------------------------------ */

static void test_paused_serves_the_leader_and_counts_nothing(void **state)
{
    (void)state;
    char storage[400];
    snprintf(storage, sizeof storage, "{\"plugin\": \"json_file\", \"path\": \"%s\"}", store);
    write_config_full(storage, UNIFORM, ARMS3, "");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    for (int i = 0; i < 30; i++) {
        mab_choice c = choose_ok(e, NULL);
        if (c.arm_index == 1)
            assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    }
    close_ok(e);

    write_config_full(storage, UNIFORM, ARMS3, "\"state\": \"paused\"");
    e = open_ok();
    uint64_t before[3] = {pulls_of(e, "exp", 0), pulls_of(e, "exp", 1), pulls_of(e, "exp", 2)};
    for (int i = 0; i < 200; i++) {
        mab_choice c = choose_ok(e, NULL);
        assert_string_equal(c.arm_id, "b"); /* the only arm with rewards */
        assert_float_equal(c.probability, 1.0, 0);
        assert_int_equal(c.flags, MAB_CHOICE_NOT_LEARNING);
    }
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(pulls_of(e, "exp", i), before[i]);
    close_ok(e);

    write_config_full(storage, UNIFORM, ARMS3, "\"state\": \"paused\", \"serve\": \"c\"");
    e = open_ok();
    assert_string_equal(choose_ok(e, NULL).arm_id, "c");
    close_ok(e);
}

static void test_concluded_serves_the_winner_with_the_floor(void **state)
{
    (void)state;
    write_config(UNIFORM, ARMS3, "\"state\": \"concluded\", \"serve\": \"a\", \"floor\": 0.1");
    mab_engine *e = open_ok();
    const double p[3] = {0.8, 0.1, 0.1};
    uint64_t counts[3] = {0};
    for (int d = 0; d < DRAWS / 2; d++) {
        mab_choice c = choose_ok(e, NULL);
        assert_true(c.flags & MAB_CHOICE_CONCLUDED);
        assert_float_equal(c.probability, p[c.arm_index], 1e-12);
        counts[c.arm_index]++;
    }
    for (size_t i = 0; i < 3; i++) {
        assert_frequency(counts[i], p[i], DRAWS / 2, "concluded");
        assert_int_equal(pulls_of(e, "exp", i), counts[i]); /* still counted */
    }
    close_ok(e);
}

/* ---- attribution window ----------------------------------------------- */

static int64_t fake_now;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static void test_attribution_window_refuses_late_rewards(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"attribution_window\": 60");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_int_equal(mab_set_clock(e, fake_clock, NULL, &err), MAB_OK);
    const int64_t s = 1000000000LL;
    fake_now = 1000 * s;
    mab_context late = {sizeof late, NULL, NULL, 0, 0, 0, 0, (1000 - 61) * s};
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &late, &err), MAB_ELATE);
    assert_non_null(strstr(err.message, "attribution window of 60 s"));
    mab_context in_time = {sizeof in_time, NULL, NULL, 0, 0, 0, 0, (1000 - 59) * s};
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &in_time, &err), MAB_OK);
    /* Exactly on the edge still counts. */
    mab_context edge = {sizeof edge, NULL, NULL, 0, 0, 0, 0, (1000 - 60) * s};
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &edge, &err), MAB_OK);
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[0].rewards, 2);
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, "exp", &info, &err), MAB_OK);
    assert_int_equal(info.late_rewards, 1);
    assert_int_equal(info.attribution_window, 60);
    mab_report r;
    r.struct_size = sizeof r;
    assert_int_equal(mab_report_get(e, "exp", &r, &err), MAB_OK);
    assert_true(r.available & MAB_REPORT_HAS_LATE);
    assert_false(r.available & MAB_REPORT_HAS_HOLDOUT);
    assert_int_equal(r.late_rewards, 1);
    assert_int_equal(mab_report_arm_at(&r, 0)->late_rewards, 1);
    assert_int_equal(mab_report_arm_at(&r, 1)->late_rewards, 0);
    mab_report_free(&r);
    /* A 0.1 caller's context (no assigned_ns) is not checked. */
    mab_context old = {offsetof(mab_context, flags), NULL, NULL, 0, 0, 0, 0, 1};
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &old, &err), MAB_OK);
    close_ok(e);
}

/* ---- config ----------------------------------------------------------- */

static void open_fails(const char *rules, const char *needle)
{
    write_config(FIXED(0), ARMS3, rules);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    if (rc != MAB_ECONFIG || !strstr(err.message, needle))
        print_error("%s: rc %d: %s (wanted \"%s\")\n", rules, rc, err.message, needle);
    assert_int_equal(rc, MAB_ECONFIG);
    assert_null(e);
    assert_non_null(strstr(err.message, needle));
}

static void test_bad_rules_are_refused_naming_the_key(void **state)
{
    (void)state;
    open_fails("\"floor\": 0.4", "experiments.exp.floor");   /* 3 * 0.4 > 1 */
    open_fails("\"floor\": -0.1", "experiments.exp.floor");
    open_fails("\"burn_in\": 1.5", "experiments.exp.burn_in");
    open_fails("\"holdout\": 0.6", "experiments.exp.holdout");
    open_fails("\"holdout\": {\"share\": 0.1, \"arm\": \"z\"}",
               "experiments.exp.holdout.arm: no arm \"z\"");
    open_fails("\"holdout\": {\"shares\": 0.1}", "unknown key \"shares\"");
    open_fails("\"holdout\": {\"arm\": \"a\"}", "experiments.exp.holdout.share");
    open_fails("\"state\": \"stopped\"", "experiments.exp.state");
    open_fails("\"serve\": \"a\"", "experiments.exp.serve: only a paused or concluded");
    open_fails("\"state\": \"paused\", \"serve\": \"q\"", "experiments.exp.serve: no arm \"q\"");
    open_fails("\"attribution_window\": -5", "experiments.exp.attribution_window");
    open_fails("\"flor\": 0.1", "unknown key \"flor\"");
}

/* ---- adapter ---------------------------------------------------------- */

static void cookie_value(const char *set_cookie, char *out, size_t cap)
{
    assert_non_null(set_cookie);
    size_t n = strcspn(set_cookie + 4, ";");
    assert_true(n < cap);
    memcpy(out, set_cookie + 4, n);
    out[n] = '\0';
}

static mab_assignment adapter_choose(mab_adapter *ad, const char *cookie, char *out, size_t cap)
{
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie ? cookie : "");
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, cookie ? header : NULL, NULL, &rq, NULL), MAB_OK);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_choose(rq, "exp", &a, NULL), MAB_OK);
    const char *sc = mab_request_set_cookie(rq);
    if (sc)
        cookie_value(sc, out, cap);
    else
        snprintf(out, cap, "%s", cookie ? cookie : "");
    mab_request_end(rq);
    return a;
}

static mab_reward_reason adapter_reward(mab_adapter *ad, const char *cookie)
{
    char header[5000];
    snprintf(header, sizeof header, "mab=%s", cookie);
    mab_request *rq;
    assert_int_equal(mab_request_begin(ad, header, NULL, &rq, NULL), MAB_OK);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_error err = {0, ""};
    int rc = mab_request_reward(rq, "exp", 1.0, &r, &err);
    if (rc)
        print_error("reward: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    mab_request_end(rq);
    return r.reason;
}

static mab_adapter *adapter_open(mab_engine *e)
{
    mab_adapter *ad = NULL;
    mab_error err = {0, ""};
    int rc = mab_adapter_open(e, &ad, &err);
    if (rc)
        print_error("adapter: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return ad;
}

/* The cookie remembers the holdout: the visitor's reward lands in the
   ledger, through the claim path of the memory store. */
static void test_adapter_tags_holdout_visitors(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"holdout\": 0.5");
    mab_engine *e = open_ok();
    mab_adapter *ad = adapter_open(e);
    int seen_holdout = 0, seen_bandit = 0;
    for (int v = 0; v < 64 && !(seen_holdout && seen_bandit); v++) {
        char cookie[4096], again[4096];
        mab_assignment a = adapter_choose(ad, NULL, cookie, sizeof cookie);
        int holdout = (a.flags & MAB_CHOICE_HOLDOUT) != 0;
        /* The returning visitor keeps the arm and the tag. */
        mab_assignment b = adapter_choose(ad, cookie, again, sizeof again);
        assert_int_equal(b.is_new, 0);
        assert_int_equal((b.flags & MAB_CHOICE_HOLDOUT) != 0, holdout);
        size_t arm = (size_t)(a.arm_id[0] - 'a');
        uint64_t ledger_before = 0, main_before = 0;
        mab_arm_stats st[3];
        st[0].struct_size = sizeof st[0];
        size_t n;
        assert_int_equal(mab_stats(e, "exp@holdout", st, 3, &n, NULL), MAB_OK);
        ledger_before = st[arm].rewards;
        assert_int_equal(mab_stats(e, "exp", st, 3, &n, NULL), MAB_OK);
        main_before = st[arm].rewards;
        assert_int_equal(adapter_reward(ad, cookie), MAB_REWARD_COUNTED);
        assert_int_equal(mab_stats(e, "exp@holdout", st, 3, &n, NULL), MAB_OK);
        assert_int_equal(st[arm].rewards, ledger_before + (holdout ? 1 : 0));
        assert_int_equal(mab_stats(e, "exp", st, 3, &n, NULL), MAB_OK);
        assert_int_equal(st[arm].rewards, main_before + (holdout ? 0 : 1));
        seen_holdout |= holdout;
        seen_bandit |= !holdout;
    }
    assert_true(seen_holdout && seen_bandit);
    mab_adapter_close(ad);
    close_ok(e);
}

static void test_adapter_refuses_paused_and_late_rewards(void **state)
{
    (void)state;
    write_config(FIXED(0), ARMS3, "\"state\": \"paused\"");
    mab_engine *e = open_ok();
    mab_adapter *ad = adapter_open(e);
    char cookie[4096];
    mab_assignment a = adapter_choose(ad, NULL, cookie, sizeof cookie);
    assert_true(a.flags & MAB_CHOICE_NOT_LEARNING);
    assert_int_equal(adapter_reward(ad, cookie), MAB_REWARD_PAUSED);
    assert_string_equal(mab_reward_reason_name(MAB_REWARD_PAUSED), "paused");
    mab_adapter_close(ad);
    close_ok(e);

    /* Resumed: the paused visitor gets an assignment that learns. */
    write_config(FIXED(1), ARMS3, "\"attribution_window\": 3600");
    e = open_ok();
    ad = adapter_open(e);
    char learning[4096];
    mab_assignment b = adapter_choose(ad, cookie, learning, sizeof learning);
    assert_int_equal(b.is_new, 1);
    assert_int_equal(b.flags & MAB_CHOICE_NOT_LEARNING, 0);
    /* Two hours later by the engine's clock: late, not counted. */
    mab_error err = {0, ""};
    fake_now = ((int64_t)time(NULL) + 7200) * 1000000000LL;
    assert_int_equal(mab_set_clock(e, fake_clock, NULL, &err), MAB_OK);
    assert_int_equal(adapter_reward(ad, learning), MAB_REWARD_LATE);
    assert_int_equal(pulls_of(e, "exp", 1), 1);
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[1].rewards, 0);
    /* Back in time: within the window it counts. */
    fake_now = (int64_t)time(NULL) * 1000000000LL;
    assert_int_equal(adapter_reward(ad, learning), MAB_REWARD_COUNTED);
    mab_adapter_close(ad);
    close_ok(e);
}

/* A reload that removes the holdout: its visitors are assigned afresh, and
   a reward for their old holdout assignment is refused, not counted in the
   arms the policy learns from. */
static void test_adapter_after_the_holdout_is_removed(void **state)
{
    (void)state;
    char storage[400];
    snprintf(storage, sizeof storage, "{\"plugin\": \"json_file\", \"path\": \"%s\"}", store);
    write_config_full(storage, FIXED(0), ARMS3, "\"holdout\": {\"share\": 0.5, \"arm\": \"c\"}");
    mab_engine *e = open_ok();
    mab_adapter *ad = adapter_open(e);
    char cookie[4096] = "";
    for (int v = 0; v < 64; v++) {
        mab_assignment a = adapter_choose(ad, NULL, cookie, sizeof cookie);
        if (a.flags & MAB_CHOICE_HOLDOUT)
            break;
        cookie[0] = '\0';
    }
    assert_true(cookie[0] != '\0');
    mab_adapter_close(ad);
    close_ok(e);

    write_config_full(storage, FIXED(0), ARMS3, "");
    e = open_ok();
    ad = adapter_open(e);
    assert_int_equal(adapter_reward(ad, cookie), MAB_REWARD_HOLDOUT_REMOVED);
    assert_string_equal(mab_reward_reason_name(MAB_REWARD_HOLDOUT_REMOVED), "holdout_removed");
    assert_int_equal(pulls_of(e, "exp", 2), 0);
    char fresh[4096];
    mab_assignment b = adapter_choose(ad, cookie, fresh, sizeof fresh);
    assert_int_equal(b.is_new, 1); /* not kept: its group is gone */
    assert_string_equal(b.arm_id, "a");
    assert_int_equal(b.flags & MAB_CHOICE_HOLDOUT, 0);
    assert_int_equal(adapter_reward(ad, fresh), MAB_REWARD_COUNTED);
    mab_adapter_close(ad);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_floor_over_a_fixed_policy, each, cleanup),
        cmocka_unit_test_setup_teardown(test_floor_estimates_when_it_must, each, cleanup),
        cmocka_unit_test_setup_teardown(test_floor_exact_from_explain, each, cleanup),
        cmocka_unit_test_setup_teardown(test_burn_in_is_uniform_until_every_arm_has_its_pulls,
                                        each, cleanup),
        cmocka_unit_test_setup_teardown(test_holdout_is_served_uniformly_and_counted_apart, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_holdout_control_arm, each, cleanup),
        cmocka_unit_test_setup_teardown(test_holdout_comparison, each, cleanup),
        cmocka_unit_test_setup_teardown(test_paused_serves_the_leader_and_counts_nothing, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_concluded_serves_the_winner_with_the_floor, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_attribution_window_refuses_late_rewards, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_bad_rules_are_refused_naming_the_key, each, cleanup),
        cmocka_unit_test_setup_teardown(test_adapter_tags_holdout_visitors, each, cleanup),
        cmocka_unit_test_setup_teardown(test_adapter_refuses_paused_and_late_rewards, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_adapter_after_the_holdout_is_removed, each,
                                        cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
