/*
 * test_attribution.c - the attribution window (core/rules.c, core/buckets.c
 * mab__mature_view; docs/operating.md): with the injected clock, a pull
 * that was not rewarded is absent from the denominator a policy sees until
 * W + B have passed since its bucket began, then present; a rewarded one is
 * present at once; a reward after W is refused (MAB_ELATE), counted, and
 * changes nothing; the maturing survives a reopen (the buckets are stored);
 * ABI 1 and ABI 2 policies, explain() and the leader served while paused
 * all see the matured view, while mab_stats() keeps reporting every pull.
 * Late rewards are counted in storage ("exp@late"): a reopen keeps them,
 * mab_reset() clears them, and (over lmdb) another process's count reaches
 * this one's mab_rules() and report with a refresh.
 *
 * Buckets of B = 10 s and a window of W = 25 s: a pull at t = 1000 s is in
 * the bucket [1000, 1010), which matures at 1010 + 25 = 1035 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/policy.h"
#include "fixture.h"

#define S 1000000000LL

static char store[300];

static int64_t fake_clock(void *ctx);

static int each(void **state)
{
    (void)state;
    fixture_dir_make("attribution");
    fixture_clock = fake_clock; /* open_ok sets it on every engine */
    snprintf(store, sizeof store, "%s/state.json", dir);
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#define PULLS2 "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_pulls.so\", \"features\": [\"arm\"]}"
#define PULLS1 "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_pulls_v1.so\"}"
#define MEMORY "\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\""
#define MEMORY_V11 "\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory_v11.so\""

/* One experiment "exp" (arms a, b, c), buckets of 10 s; `storage` is the
   storage object's plugin keys, `rules` extra keys of the experiment. */
static void write_config(const char *storage, const char *policy, const char *rules)
{
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 5, \"plugin_path\": [\"%s\"],\n"
                                     " \"storage\": {%s, \"bucket_seconds\": 10},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}%s%s}}}\n",
                                     MAB_PLUGIN_DIR, storage, policy, rules[0] ? ", " : "",
                                     rules),
                     0);
}

static void write_json_config(const char *policy, const char *rules)
{
    char storage[400];
    snprintf(storage, sizeof storage, "\"plugin\": \"json_file\", \"path\": \"%s\"", store);
    write_config(storage, policy, rules);
}

static int64_t fake_now;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

/* Choose with the policy_pulls fixture steered to `arm` (-1: unsteered,
   the arm of fewest pulls it sees) at the clock's time; the arm chosen. */
static size_t choose(mab_engine *e, int arm)
{
    const char *names[] = {"arm"};
    double values[] = {(double)arm};
    mab_context ctx = {sizeof ctx, names, values, arm >= 0 ? 1 : 0, 0, 0, 0, 0};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    int rc = mab_choose_ctx(e, "exp", &ctx, &c, NULL, &err);
    if (rc)
        print_error("choose: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return c.arm_index;
}

/* A reward of 1 for `arm` assigned at `assigned_s`, in the bucket of that
   time (as the adapter gives it, from the cookie) or, with at_pull 0, of
   the engine's clock. */
static int reward(mab_engine *e, const char *arm, int64_t assigned_s, int at_pull,
                  mab_error *err)
{
    mab_context ctx = {sizeof ctx, NULL, NULL, 0, at_pull ? assigned_s * S : 0, 0, 0,
                       assigned_s * S};
    return mab_reward_ctx(e, "exp", arm, 1.0, &ctx, err);
}

/* The pulls of each arm as the policy sees them (its explain()). */
static void seen(mab_engine *e, double out[3])
{
    int kind = 0;
    mab_error err = {0, ""};
    int rc = mab_explain(e, "exp", NULL, out, 3, &kind, &err);
    if (rc)
        print_error("explain: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
}

static void expect_seen(mab_engine *e, double a, double b, double c)
{
    double v[3];
    seen(e, v);
    if (v[0] != a || v[1] != b || v[2] != c)
        fail_msg("the policy sees pulls %g %g %g, expected %g %g %g", v[0], v[1], v[2], a, b,
                 c);
}

static uint64_t stored_pulls(mab_engine *e, size_t arm, uint64_t *rewards)
{
    mab_arm_stats st[3];
    for (int i = 0; i < 3; i++)
        st[i].struct_size = sizeof st[i];
    size_t n = 0;
    mab_error err = {0, ""};
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(n, 3);
    if (rewards)
        *rewards = st[arm].rewards;
    return st[arm].pulls;
}

/* A pull never rewarded is absent until its bucket's end + W, then present;
   mab_stats() counts it all along. */
static void test_unrewarded_pull_matures_after_w_plus_b(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    fake_now = 1003 * S;
    assert_int_equal(choose(e, 1), 1);
    assert_int_equal(choose(e, 1), 1);
    expect_seen(e, 0, 0, 0);
    assert_int_equal(stored_pulls(e, 1, NULL), 2);
    fake_now = 1030 * S; /* W after the pulls, but not after their bucket's end */
    expect_seen(e, 0, 0, 0);
    fake_now = 1035 * S - 1;
    expect_seen(e, 0, 0, 0);
    fake_now = 1035 * S; /* the bucket [1000, 1010) has matured */
    expect_seen(e, 0, 2, 0);
    fake_now = 5000 * S;
    expect_seen(e, 0, 2, 0);
    assert_int_equal(stored_pulls(e, 1, NULL), 2);
    close_ok(e);
}

/* Without a window the policy sees every pull at once (the control case). */
static void test_no_window_sees_every_pull(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS2, "");
    mab_engine *e = open_ok();
    fake_now = 1003 * S;
    choose(e, 1);
    expect_seen(e, 0, 1, 0);
    close_ok(e);
}

/* A rewarded pull counts at once, whether its reward lands in the pull's
   bucket (the adapter's way) or in the bucket of the reward's arrival. */
static void test_rewarded_pull_is_present_at_once(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    choose(e, 0);
    choose(e, 0);
    choose(e, 2);
    fake_now = 1008 * S;
    assert_int_equal(reward(e, "a", 1003, 1, &err), MAB_OK);
    expect_seen(e, 1, 0, 0);
    fake_now = 1020 * S; /* the next-but-one bucket: the reward's own is immature too */
    assert_int_equal(reward(e, "c", 1003, 0, &err), MAB_OK);
    expect_seen(e, 1, 0, 1);
    fake_now = 1035 * S; /* the pulls' bucket matured: every pull counts */
    expect_seen(e, 2, 0, 1);
    close_ok(e);
}

/* A reward beyond W is refused, counted as late, and changes nothing: not
   the stats, not what the policy sees. */
static void test_late_reward_is_refused_counted_and_changes_nothing(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    choose(e, 1);
    fake_now = 1029 * S; /* 26 s after the assignment */
    assert_int_equal(reward(e, "b", 1003, 1, &err), MAB_ELATE);
    assert_non_null(strstr(err.message, "attribution window of 25 s"));
    expect_seen(e, 0, 0, 0);
    uint64_t rewards = 9;
    assert_int_equal(stored_pulls(e, 1, &rewards), 1);
    assert_int_equal(rewards, 0);
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    assert_int_equal(mab_rules(e, "exp", &info, &err), MAB_OK);
    assert_int_equal(info.late_rewards, 1);
    fake_now = 1035 * S;
    expect_seen(e, 0, 1, 0);
    assert_int_equal(reward(e, "b", 1003, 1, &err), MAB_ELATE);
    assert_int_equal(mab_rules(e, "exp", &info, &err), MAB_OK);
    assert_int_equal(info.late_rewards, 2);
    close_ok(e);
}

/* An ABI 1 policy's choose sees the matured view: the least-pulled fixture
   keeps playing an arm whose pulls have not matured. */
static void test_abi1_choose_sees_the_matured_view(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS1, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        assert_int_equal(c.arm_index, 0); /* a's pulls are not seen yet */
    }
    fake_now = 1035 * S; /* seen now: a has 3, b and c none */
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_int_equal(c.arm_index, 1);
    assert_int_equal(stored_pulls(e, 0, NULL), 3);
    close_ok(e);
}

/* ABI 2 choose too (unsteered: the arm of fewest pulls it sees). */
static void test_abi2_choose_sees_the_matured_view(void **unused)
{
    (void)unused;
    write_config(MEMORY, PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    choose(e, 0);
    choose(e, 1);
    assert_int_equal(reward(e, "b", 1003, 1, &err), MAB_OK);
    /* a's pull is unseen, b's rewarded one seen: a and c tie at 0. */
    assert_int_equal(choose(e, -1), 0);
    fake_now = 1035 * S; /* a has 2 pulls now, b 1, c 0 */
    assert_int_equal(choose(e, -1), 2);
    close_ok(e);
}

/* The buckets are stored: a reopened engine matures the pulls of before
   its open exactly as the engine that made them would have. */
static void test_reopen_keeps_the_maturing(void **unused)
{
    (void)unused;
    write_json_config(PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    choose(e, 0);
    choose(e, 0);
    choose(e, 2);
    fake_now = 1012 * S; /* a later bucket, also immature */
    choose(e, 2);
    assert_int_equal(reward(e, "c", 1003, 1, &err), MAB_OK);
    close_ok(e);
    fake_now = 1030 * S;
    e = open_ok();
    expect_seen(e, 0, 0, 1);
    assert_int_equal(stored_pulls(e, 2, NULL), 2);
    fake_now = 1035 * S; /* [1000, 1010) matured, [1010, 1020) not */
    expect_seen(e, 2, 0, 1);
    fake_now = 1045 * S;
    expect_seen(e, 2, 0, 2);
    close_ok(e);
}

/* Paused, the experiment serves the leader of the matured view: b's one
   rewarded recent pull makes it lead (1 of 1 seen) though its raw mean
   (1 of 10) is below a's (2 of 10, all matured). */
static void test_paused_leader_uses_the_matured_view(void **unused)
{
    (void)unused;
    write_json_config(PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 100 * S;
    for (int i = 0; i < 10; i++)
        choose(e, 0);
    assert_int_equal(reward(e, "a", 100, 1, &err), MAB_OK);
    assert_int_equal(reward(e, "a", 100, 1, &err), MAB_OK);
    fake_now = 1003 * S;
    for (int i = 0; i < 10; i++)
        choose(e, 1);
    assert_int_equal(reward(e, "b", 1003, 1, &err), MAB_OK);
    close_ok(e);
    write_json_config(PULLS2, "\"attribution_window\": 25, \"state\": \"paused\"");
    fake_now = 1004 * S;
    e = open_ok();
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_string_equal(c.arm_id, "b");
    assert_true(c.flags & MAB_CHOICE_NOT_LEARNING);
    fake_now = 1035 * S; /* b's pulls matured: 1 of 10, a leads again */
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_string_equal(c.arm_id, "a");
    close_ok(e);
}

/* A store without buckets (ABI 1.1): this process's pulls mature as they
   would over any store (its ring holds them since open). */
static void test_store_without_buckets_matures_this_process(void **unused)
{
    (void)unused;
    write_config(MEMORY_V11, PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    fake_now = 1003 * S;
    choose(e, 1);
    expect_seen(e, 0, 0, 0);
    fake_now = 1035 * S;
    expect_seen(e, 0, 1, 0);
    close_ok(e);
}

static uint64_t late_of(mab_engine *e)
{
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    mab_error err = {0, ""};
    assert_int_equal(mab_rules(e, "exp", &info, &err), MAB_OK);
    return info.late_rewards;
}

static void expect_report_late(mab_engine *e, uint64_t total, uint64_t a, uint64_t b)
{
    mab_report r;
    r.struct_size = sizeof r;
    mab_error err = {0, ""};
    assert_int_equal(mab_report_get(e, "exp", &r, &err), MAB_OK);
    assert_true(r.available & MAB_REPORT_HAS_LATE);
    assert_int_equal(r.late_rewards, total);
    assert_int_equal(mab_report_arm_at(&r, 0)->late_rewards, a);
    assert_int_equal(mab_report_arm_at(&r, 1)->late_rewards, b);
    mab_report_free(&r);
}

/* Late rewards are stored: a reopened engine reports them per arm, the
   ledger counts them in the bucket of their arrival, reset clears them. */
static void test_late_rewards_are_stored(void **unused)
{
    (void)unused;
    write_json_config(PULLS2, "\"attribution_window\": 25");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1003 * S;
    choose(e, 0);
    choose(e, 1);
    fake_now = 1100 * S;
    assert_int_equal(reward(e, "a", 1003, 1, &err), MAB_ELATE);
    assert_int_equal(reward(e, "a", 1003, 1, &err), MAB_ELATE);
    assert_int_equal(reward(e, "b", 1003, 1, &err), MAB_ELATE);
    assert_int_equal(late_of(e), 3);
    close_ok(e);
    e = open_ok();
    assert_int_equal(late_of(e), 3);
    expect_report_late(e, 3, 2, 1);
    assert_int_equal(stored_pulls(e, 0, NULL), 1); /* the experiment's own: unchanged */
    mab_arm_stats st[3];
    for (int i = 0; i < 3; i++)
        st[i].struct_size = sizeof st[i];
    size_t n = 0;
    assert_int_equal(mab_stats(e, "exp@late", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[0].pulls, 2);
    assert_int_equal(st[0].rewards, 0);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp@late", &c, &err), MAB_EINVAL); /* a ledger */
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    assert_int_equal(late_of(e), 0);
    close_ok(e);
    e = open_ok();
    assert_int_equal(late_of(e), 0);
    close_ok(e);
}

/* An id too long for its "@late" ledger is refused with the reason. */
static void test_long_id_with_a_window_is_refused(void **unused)
{
    (void)unused;
    char id[130];
    memset(id, 'x', 124);
    id[124] = '\0';
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY "},\n"
                                     " \"experiments\": {\"%s\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2}, "
                                     "\"attribution_window\": 60}}}\n",
                                     id, PULLS1),
                     0);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "an id of at most 123 characters"));
    id[123] = '\0';
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY "},\n"
                                     " \"experiments\": {\"%s\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2}, "
                                     "\"attribution_window\": 60}}}\n",
                                     id, PULLS1),
                     0);
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    close_ok(e);
}

#ifdef MAB_TEST_LMDB
/* Two processes over one lmdb store: each refuses a late reward; after a
   refresh each one's mab_rules() and report count both. The child is forked
   before this process opens an engine (threads and LMDB must not cross
   fork); it reports through its exit code. No timing is asserted: the
   parent waits for the refresh (at most a generous while). */
static void test_late_rewards_agree_across_processes(void **unused)
{
    (void)unused;
    char storage[400];
    snprintf(storage, sizeof storage,
             "\"plugin\": \"lmdb\", \"path\": \"store\", \"refresh_ms\": 20, "
             "\"sync\": {\"interval_ms\": 10}");
    write_config(storage, PULLS2, "\"attribution_window\": 25");
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(go[1]);
        char ch;
        if (read(go[0], &ch, 1) != 1)
            _exit(2);
        mab_engine *e = NULL;
        if (mab_open(config, &e, NULL) != MAB_OK ||
            mab_set_clock(e, fake_clock, NULL, NULL) != MAB_OK)
            _exit(3);
        fake_now = 1100 * S;
        mab_context ctx = {sizeof ctx, NULL, NULL, 0, 1003 * S, 0, 0, 1003 * S};
        if (mab_reward_ctx(e, "exp", "b", 1.0, &ctx, NULL) != MAB_ELATE)
            _exit(4);
        _exit(mab_close(e, NULL) == MAB_OK ? 0 : 5);
    }
    close(go[0]);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    fake_now = 1100 * S;
    assert_int_equal(reward(e, "a", 1003, 1, &err), MAB_ELATE);
    assert_int_equal(late_of(e), 1);
    assert_int_equal(write(go[1], "g", 1), 1);
    close(go[1]);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int tries = 0; tries < 3000 && late_of(e) < 2; tries++) {
        struct timespec pause = {0, 10000000};
        nanosleep(&pause, NULL);
    }
    assert_int_equal(late_of(e), 2);
    expect_report_late(e, 2, 1, 1);
    close_ok(e);
}
#endif

static void open_fails(const char *storage_extra, const char *rules, const char *needle)
{
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY "%s},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2}, %s}}}\n",
                                     storage_extra, PULLS1, rules),
                     0);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    if (rc != MAB_ECONFIG || !strstr(err.message, needle))
        print_error("rc %d: %s (wanted \"%s\")\n", rc, err.message, needle);
    assert_int_equal(rc, MAB_ECONFIG);
    assert_null(e);
}

/* A window whose buckets the store would compact before they mature, or
   that spans more buckets than a ring keeps, is refused at open. */
static void test_windows_the_buckets_cannot_hold_are_refused(void **unused)
{
    (void)unused;
    open_fails(", \"bucket_seconds\": 60, \"retention_seconds\": 600",
               "\"attribution_window\": 541",
               "experiments.exp.attribution_window: 541 s plus one bucket");
    open_fails(", \"bucket_seconds\": 1", "\"attribution_window\": 9000",
               "experiments.exp.attribution_window: 9000 s spans 9001 time buckets");
    /* The largest that fit are accepted. */
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY ", \"bucket_seconds\": 60, "
                                     "\"retention_seconds\": 600},\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2}, "
                                     "\"attribution_window\": 540}}}\n",
                                     PULLS1),
                     0);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unrewarded_pull_matures_after_w_plus_b, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_no_window_sees_every_pull, each, cleanup),
        cmocka_unit_test_setup_teardown(test_rewarded_pull_is_present_at_once, each, cleanup),
        cmocka_unit_test_setup_teardown(test_late_reward_is_refused_counted_and_changes_nothing,
                                        each, cleanup),
        cmocka_unit_test_setup_teardown(test_abi1_choose_sees_the_matured_view, each, cleanup),
        cmocka_unit_test_setup_teardown(test_abi2_choose_sees_the_matured_view, each, cleanup),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_the_maturing, each, cleanup),
        cmocka_unit_test_setup_teardown(test_paused_leader_uses_the_matured_view, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_store_without_buckets_matures_this_process, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_windows_the_buckets_cannot_hold_are_refused, each,
                                        cleanup),
        cmocka_unit_test_setup_teardown(test_late_rewards_are_stored, each, cleanup),
        cmocka_unit_test_setup_teardown(test_long_id_with_a_window_is_refused, each, cleanup),
#ifdef MAB_TEST_LMDB
        cmocka_unit_test_setup_teardown(test_late_rewards_agree_across_processes, each,
                                        cleanup),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
