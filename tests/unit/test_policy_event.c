/*
 * test_policy_event.c - rewards with a policy event (issue 18, branch
 * `event`): the common one takes reward_event's short path (core/engine.c),
 * every other the general one, and both give the policy's update the same
 * event and record the same thing. Each test holds one condition of the
 * short path: with the condition removed from engine.c, the test fails
 * (docs/benchmarks.md lists them). The fixture policy_event keeps each
 * reward's event in its statistics; its experiment's rewards are in
 * [0, 2], so an event's reward is half the value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/policy.h"
#include "fixture.h"

#define S 1000000000LL
#define EVENT "\"plugin\": \"" MAB_FIXTURE_DIR "/policy_event.so\""
#define MEMORY "\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", \"bucket_seconds\": 10"

static int64_t fake_now;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static int each(void **state)
{
    (void)state;
    fixture_dir_make("policy_event");
    fixture_clock = fake_clock; /* open_ok sets it on every engine */
    fake_now = 1000 * S;
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

/* One experiment "exp" (arms a, b, c) of policy_event: `policy` is extra
   keys of its policy object, `storage` of the storage object, `extra` of
   the experiment (after a comma), `range` its reward object. */
static void write_config_range(const char *policy, const char *storage, const char *extra,
                               const char *range)
{
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 5, \"plugin_path\": [\"%s\"],\n"
                                     " \"storage\": {" MEMORY "%s},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": {" EVENT "%s},\n"
                                     "   \"reward\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}%s%s}}}\n",
                                     MAB_PLUGIN_DIR, storage, policy, range,
                                     extra[0] ? ", " : "", extra),
                     0);
}

static void write_config(const char *policy, const char *storage, const char *extra)
{
    write_config_range(policy, storage, extra, "{\"min\": 0, \"max\": 2}");
}

/* The policy's statistics: 3 arms of `per_arm` each, then the 4 of the
   experiment. */
typedef struct event_stats {
    double arm[3 * 16];
    double exp[4];
} event_stats;

static event_stats read_layout(mab_engine *e, size_t per_arm, size_t per_experiment)
{
    event_stats s;
    memset(&s, 0, sizeof s);
    mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
    mab_error err = {0, ""};
    int rc = mab_policy_stats(e, "exp", &info, s.arm, 3 * per_arm, s.exp, per_experiment, &err);
    if (rc)
        print_error("mab_policy_stats: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(info.per_arm, per_arm);
    assert_int_equal(info.per_experiment, per_experiment);
    return s;
}

static event_stats read_stats(mab_engine *e, size_t per_arm)
{
    return read_layout(e, per_arm, 4);
}

static uint64_t rewards_of(mab_engine *e)
{
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    mab_error err = {0, ""};
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    return st[0].rewards + st[1].rewards + st[2].rewards;
}

/* Nothing was recorded: no reward counted and every statistic 0. */
static void expect_nothing(mab_engine *e, size_t per_arm)
{
    assert_int_equal(rewards_of(e), 0);
    event_stats s = read_stats(e, per_arm);
    for (size_t k = 0; k < 3 * per_arm; k++)
        assert_true(s.arm[k] == 0.0);
    for (size_t k = 0; k < 4; k++)
        assert_true(s.exp[k] == 0.0);
}

static mab_handle handle_of(mab_engine *e)
{
    mab_handle h;
    mab_error err = {0, ""};
    assert_int_equal(mab_experiment_handle(e, "exp", &h, &err), MAB_OK);
    return h;
}

static mab_context plain(double probability, int64_t time_ns)
{
    mab_context ctx = MAB_STRUCT_INIT(mab_context);
    ctx.probability = probability;
    ctx.time_ns = time_ns;
    return ctx;
}

/* The event's fields: the reward normalised, the probability or NAN (none,
   0, negative or NAN given), the context's time or the engine's clock, no
   features; by string, by handle, without a context, and with a context
   of 0.1's size (the general path's). The counters too. */
static void test_event_fields(void **unused)
{
    (void)unused;
    write_config("", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context quarter = plain(0.25, 0), zero_at_7 = plain(0.0, 7 * S), nan = plain(NAN, 0),
                negative = plain(-0.5, 0);
    assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &quarter, &err), MAB_OK);
    assert_int_equal(mab_reward_h(e, h, 2, 2.0, &zero_at_7, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 0.5, &err), MAB_OK);
    assert_int_equal(mab_reward_h(e, h, 0, 0.0, NULL, &err), MAB_OK);
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 0.0, &nan, &err), MAB_OK);
    assert_int_equal(mab_reward_h(e, h, 1, 0.5, &negative, &err), MAB_OK);
    mab_context v01 = plain(0.5, 3 * S);
    v01.struct_size = offsetof(mab_context, flags);
    assert_int_equal(mab_reward_ctx(e, "exp", "c", 1.0, &v01, &err), MAB_OK);
    event_stats s = read_stats(e, 1);
    assert_true(s.arm[0] == 0.25);        /* a: 0.5 / 2, 0, 0 */
    assert_true(s.arm[1] == 0.5 + 0.25);  /* b: 1 / 2 and 0.5 / 2 */
    assert_true(s.arm[2] == 1.0 + 0.5);   /* c: 2 / 2 and 1 / 2 */
    assert_true(s.exp[0] == 0.25 + 0.5);  /* the probabilities given */
    assert_true(s.exp[1] == 5.0);         /* 0, none twice, NAN, negative */
    assert_true(s.exp[2] == 7.0 + 3.0 + 5 * 1000.0);
    assert_true(s.exp[3] == 0.0);         /* no features */
    assert_int_equal(rewards_of(e), 7);
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_true(st[0].reward_sum == 0.5 && st[0].reward_sum_sq == 0.25);
    assert_true(st[1].reward_sum == 1.5 && st[1].reward_sum_sq == 1.25);
    assert_true(st[2].reward_sum == 3.0 && st[2].reward_sum_sq == 5.0);
    close_ok(e);
}

/* A refused update records nothing and says why, on every path. */
static void test_refused_update_records_nothing(void **unused)
{
    (void)unused;
    write_config(", \"refuse\": 1", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.5, 0);
    char expected[200];
    snprintf(expected, sizeof expected, "refused the reward for arm \"b\": %s; nothing was "
             "recorded", mab_strerror(MAB_EINVAL));
    assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &ctx, &err), MAB_EPLUGIN);
    if (!strstr(err.message, expected) || !strstr(err.message, "experiments.exp: policy "))
        fail_msg("unexpected message: %s", err.message);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 1, 1.0, &ctx, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, expected));
    err.message[0] = '\0';
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, expected));
    expect_nothing(e, 1);
    close_ok(e);
}

/* A delta that is not finite records nothing (not even the finite ones
   written before it) and is refused as MAB_ERANGE's. */
static void test_infinite_delta_records_nothing(void **unused)
{
    (void)unused;
    write_config(", \"infinite\": 1", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.5, 0);
    char expected[200];
    snprintf(expected, sizeof expected, "refused the reward for arm \"c\": %s; nothing was "
             "recorded", mab_strerror(MAB_ERANGE));
    assert_int_equal(mab_reward_ctx(e, "exp", "c", 1.0, &ctx, &err), MAB_EPLUGIN);
    if (!strstr(err.message, expected))
        fail_msg("unexpected message: %s", err.message);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 2, 1.0, &ctx, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, expected));
    err.message[0] = '\0';
    assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, expected));
    expect_nothing(e, 1);
    close_ok(e);
}

/* A layout of more statistics than the short path's deltas hold (16 per
   arm and 4: 20) is recorded whole. */
static void test_many_statistics_recorded(void **unused)
{
    (void)unused;
    write_config(", \"arm_stats\": 16", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.25, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &ctx, &err), MAB_OK);
        assert_int_equal(mab_reward_h(e, h, 1, 1.0, &ctx, &err), MAB_OK);
        assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    }
    event_stats s = read_stats(e, 16);
    for (size_t k = 0; k < 16; k++) {
        assert_true(s.arm[k] == 0.0 && s.arm[32 + k] == 0.0);
        assert_true(s.arm[16 + k] == (k == 0 ? 9 * 0.5 : 9.0));
    }
    assert_true(s.exp[0] == 6 * 0.25 && s.exp[1] == 3.0 && s.exp[2] == 9 * 1000.0 &&
                s.exp[3] == 0.0);
    assert_int_equal(rewards_of(e), 9);
    close_ok(e);
}

/* A layout of one statistic (the short path's branch without loops), an
   arm's or the experiment's: recorded where it belongs, and an infinite
   delta refused, nothing recorded. */
static void test_one_statistic(void **unused)
{
    (void)unused;
    static const char *const layouts[] = {", \"arm_stats\": 1, \"experiment_stats\": 0",
                                          ", \"arm_stats\": 0, \"experiment_stats\": 1"};
    for (int own = 0; own < 2; own++) {
        write_config(layouts[own], "", "");
        mab_engine *e = open_ok();
        mab_handle h = handle_of(e);
        mab_error err = {0, ""};
        mab_context quarter = plain(0.25, 0), half = plain(0.5, 0);
        assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &quarter, &err), MAB_OK);
        assert_int_equal(mab_reward_h(e, h, 1, 2.0, &half, &err), MAB_OK);
        assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_OK);
        event_stats s = read_layout(e, own ? 0 : 1, own ? 1 : 0);
        if (own) {
            assert_true(s.exp[0] == 0.75); /* the probabilities given */
            assert_true(s.arm[0] == 0.0 && s.arm[1] == 0.0 && s.arm[2] == 0.0);
        } else {
            assert_true(s.arm[0] == 0.0 && s.arm[1] == 0.5 + 1.0 && s.arm[2] == 0.5);
            assert_true(s.exp[0] == 0.0);
        }
        assert_int_equal(rewards_of(e), 3);
        close_ok(e);
        char infinite[100];
        snprintf(infinite, sizeof infinite, "%s, \"infinite\": 1", layouts[own]);
        write_config(infinite, "", "");
        e = open_ok();
        h = handle_of(e);
        assert_int_equal(mab_reward_ctx(e, "exp", "b", 1.0, &quarter, &err), MAB_EPLUGIN);
        assert_int_equal(mab_reward_h(e, h, 1, 1.0, &half, &err), MAB_EPLUGIN);
        assert_non_null(strstr(err.message, mab_strerror(MAB_ERANGE)));
        assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_EPLUGIN);
        assert_int_equal(rewards_of(e), 0);
        s = read_layout(e, own ? 0 : 1, own ? 1 : 0);
        assert_true(s.exp[0] == 0.0 && s.arm[0] == 0.0 && s.arm[1] == 0.0 && s.arm[2] == 0.0);
        close_ok(e);
    }
}

/* An experiment that asks for features gives them to update (NAN when the
   context has none): a context without features, one with, and none. */
static void test_features_asked_for_reach_update(void **unused)
{
    (void)unused;
    write_config(", \"features\": [\"f\"]", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.5, 0);
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &ctx, &err), MAB_OK);
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &ctx, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    const char *names[] = {"f"};
    double five[] = {5.0};
    mab_context with = plain(0.5, 0);
    with.feature_names = names;
    with.feature_values = five;
    with.n_features = 1;
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &with, &err), MAB_OK);
    event_stats s = read_stats(e, 1);
    assert_true(s.exp[3] == 4 * 1.0 + 5.0); /* n_features 1 each, and f = 5 once */
    close_ok(e);
}

/* A context is checked as mab__context_check checks it, even for a policy
   whose experiment asks for no features: features without names or values,
   a NULL name, a struct_size below 0.1's; and its flags reach the rules (a
   holdout reward on an experiment without a holdout). Nothing recorded. */
static void test_context_checked(void **unused)
{
    (void)unused;
    write_config("", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context no_names = plain(0.5, 0);
    no_names.n_features = 1;
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &no_names, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "1 features but no names or values"));
    const char *names[] = {NULL};
    double one[] = {1.0};
    mab_context null_name = plain(0.5, 0);
    null_name.feature_names = names;
    null_name.feature_values = one;
    null_name.n_features = 1;
    err.message[0] = '\0';
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &null_name, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "feature name 0 is NULL"));
    mab_context small = plain(0.5, 0);
    small.struct_size = 4;
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &small, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "mab_context.struct_size is 4"));
    mab_context holdout = plain(0.5, 0);
    holdout.flags = MAB_CONTEXT_HOLDOUT;
    err.message[0] = '\0';
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &holdout, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "the experiment has no holdout"));
    expect_nothing(e, 1);
    close_ok(e);
}

/* A reward after the attribution window is refused (MAB_ELATE) with a
   context that carries its assignment's time; one without a context, or
   within the window, is recorded. */
static void test_attribution_window_checked(void **unused)
{
    (void)unused;
    write_config("", "", "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context late = plain(0.5, 0);
    late.assigned_ns = 900 * S;
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &late, &err), MAB_ELATE);
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &late, &err), MAB_ELATE);
    expect_nothing(e, 1);
    mab_context in_time = plain(0.5, 0);
    in_time.assigned_ns = 990 * S;
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &in_time, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(rewards_of(e), 2);
    close_ok(e);
}

/* A read-only engine takes no event reward. */
static void test_read_only_takes_no_event_reward(void **unused)
{
    (void)unused;
    write_config("", "", "");
    mab_options opts = {sizeof opts, MAB_OPEN_READ_ONLY | MAB_OPEN_NO_STORAGE, 0};
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open_ex(config, &opts, &e, &err), MAB_OK);
    mab_handle h = handle_of(e);
    mab_context ctx = plain(0.5, 0);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &ctx, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "opened read-only"));
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, &ctx, &err), MAB_EINVAL);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_EINVAL);
    expect_nothing(e, 1);
    close_ok(e);
}

/* Under sync "always" an event reward waits for its write: one the store
   refused (and the queue dropped) is not acknowledged. */
static void test_sync_always_waits(void **unused)
{
    (void)unused;
    write_config("", ", \"sync\": \"always\", \"refuse_arm\": \"c\"", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.5, 0);
    assert_int_equal(mab_reward_h(e, h, 0, 1.0, &ctx, &err), MAB_OK);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 2, 1.0, &ctx, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "the reward for arm \"c\" was not written"));
    err.message[0] = '\0';
    assert_int_equal(mab_reward(e, "exp", "c", 1.0, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "the reward for arm \"c\" was not written"));
    close_ok(e);
}

/* A value outside the range, or not finite, is refused; nothing recorded. */
static void test_value_outside_range_refused(void **unused)
{
    (void)unused;
    write_config("", "", "");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_context ctx = plain(0.5, 0);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 0, 2.5, &ctx, &err), MAB_ERANGE);
    assert_non_null(strstr(err.message, "is outside the reward range [0, 2]"));
    assert_int_equal(mab_reward_ctx(e, "exp", "a", -0.5, &ctx, &err), MAB_ERANGE);
    assert_int_equal(mab_reward_h(e, h, 0, NAN, &ctx, &err), MAB_EINVAL);
    assert_int_equal(mab_reward(e, "exp", "a", 3.0, &err), MAB_ERANGE);
    expect_nothing(e, 1);
    close_ok(e);
}

/* A range where a sum could overflow keeps the finite-sums check: an arm
   whose sum of squares is already the largest double takes no reward. */
static void test_sums_checked_by_range(void **unused)
{
    (void)unused;
    write_config_range("", "", "", "{\"min\": 0, \"max\": 1e150}");
    mab_engine *e = open_ok();
    mab_handle h = handle_of(e);
    mab_error err = {0, ""};
    mab_record full = {"exp", "a", 1, 1, 1.0, DBL_MAX};
    assert_int_equal(mab_import(e, &full, 1, 0, &err), MAB_OK);
    mab_context ctx = plain(0.5, 0);
    err.message[0] = '\0';
    assert_int_equal(mab_reward_h(e, h, 0, 1e150, &ctx, &err), MAB_ERANGE);
    assert_non_null(strstr(err.message, "would make a sum"));
    assert_int_equal(mab_reward(e, "exp", "a", 1e150, &err), MAB_ERANGE);
    assert_int_equal(rewards_of(e), 1); /* the import's */
    event_stats s = read_stats(e, 1);
    assert_true(s.arm[0] == 0.0 && s.exp[0] == 0.0 && s.exp[1] == 0.0);
    /* A fresh arm takes it. */
    assert_int_equal(mab_reward_h(e, h, 1, 1e150, &ctx, &err), MAB_OK);
    assert_int_equal(rewards_of(e), 2);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_fields, each, cleanup),
        cmocka_unit_test_setup_teardown(test_refused_update_records_nothing, each, cleanup),
        cmocka_unit_test_setup_teardown(test_infinite_delta_records_nothing, each, cleanup),
        cmocka_unit_test_setup_teardown(test_many_statistics_recorded, each, cleanup),
        cmocka_unit_test_setup_teardown(test_one_statistic, each, cleanup),
        cmocka_unit_test_setup_teardown(test_features_asked_for_reach_update, each, cleanup),
        cmocka_unit_test_setup_teardown(test_context_checked, each, cleanup),
        cmocka_unit_test_setup_teardown(test_attribution_window_checked, each, cleanup),
        cmocka_unit_test_setup_teardown(test_read_only_takes_no_event_reward, each, cleanup),
        cmocka_unit_test_setup_teardown(test_sync_always_waits, each, cleanup),
        cmocka_unit_test_setup_teardown(test_value_outside_range_refused, each, cleanup),
        cmocka_unit_test_setup_teardown(test_sums_checked_by_range, each, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
