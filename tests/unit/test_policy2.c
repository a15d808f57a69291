/*
 * test_policy2.c - policy ABI 2 through the public API: the loader's
 * checks, statistics counted exactly from several threads (memory
 * storage), context features and time reaching choose and update, explain,
 * write-behind retry of statistics, and the refusal of a storage plugin
 * that cannot keep statistics. ABI 1 fixtures are covered, unchanged, by
 * test_loader and test_engine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/policy.h"
#include "fixture.h"

/* One experiment "exp" with three arms, policy and storage as given. */
static void write_config(const char *policy_json, const char *storage_json)
{
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 5, \"storage\": %s,\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     storage_json, policy_json),
                     0);
}

#define MEMORY "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\"}"
#define MEMORY_SYNC "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", \"sync\": \"always\"}"
#define FIXTURE(name) "{\"plugin\": \"" MAB_FIXTURE_DIR "/" name ".so\"}"

typedef struct policy_stats {
    mab_policy_stats_info info;
    double arm[3 * 2];
    double exp[3];
} policy_stats;

static policy_stats read_stats(mab_engine *e)
{
    policy_stats s;
    memset(&s, 0, sizeof s);
    s.info.struct_size = sizeof s.info;
    mab_error err = {0, ""};
    int rc = mab_policy_stats(e, "exp", &s.info, s.arm, 6, s.exp, 3, &err);
    if (rc)
        print_error("mab_policy_stats: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return s;
}

static void setup_dir(void)
{
    fixture_dir_make("policy2");
}

static int setup(void **unused)
{
    (void)unused;
    setup_dir();
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    fixture_dir_remove();
    return 0;
}

/* ---- loader ----------------------------------------------------------- */

static void test_newer_core_table_refused(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_v2_newer_api"), MEMORY);
    char needs[64], has[64];
    snprintf(needs, sizeof needs, "needs core API table version %d", MAB_CORE_API_VERSION + 1);
    snprintf(has, sizeof has, "provides version %d", MAB_CORE_API_VERSION);
    const char *needles[] = {"policy_v2_newer_api.so", needs, has, NULL};
    open_refused(MAB_EPLUGIN, needles);
}

static void test_newer_minor_refused(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_v2_newer_minor"), MEMORY);
    char built[64], ours[64];
    snprintf(built, sizeof built, "policy ABI 2.%d", MAB_POLICY2_ABI_MINOR + 1);
    snprintf(ours, sizeof ours, "this libmab's 2.%d", MAB_POLICY2_ABI_MINOR);
    const char *needles[] = {"policy_v2_newer_minor.so", built, ours, NULL};
    open_refused(MAB_EPLUGIN, needles);
}

static void test_stats_without_update_refused(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_v2_no_update"), MEMORY);
    const char *needles[] = {"experiments.exp.policy", "policy_v2_no_update.so",
                             "leaves update NULL", NULL};
    open_refused(MAB_EPLUGIN, needles);
}

static void test_storage_without_stats_refused(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"),
                 "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory_v11.so\"}");
    const char *needles[] = {"experiments.exp", "policy stats", "policy_stats.so",
                             "storage_memory_v11.so", "ABI 1.1", "storage ABI 1.4", NULL};
    open_refused(MAB_EPLUGIN, needles);
    /* The same storage still serves an ABI 1 policy, and an ABI 2 one
       without statistics would too. */
    write_config(FIXTURE("policy_uniform"),
                 "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory_v11.so\"}");
    close_ok(open_ok());
}

static void test_features_key_abi1_unknown(void **unused)
{
    (void)unused;
    /* ABI 1 policies read no features: the key stays unknown, as before. */
    write_config("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_uniform.so\", \"features\": [\"x\"]}",
                 MEMORY);
    const char *needles[] = {"unknown key", "features", NULL};
    open_refused(MAB_ECONFIG, needles);
}

static void test_bad_features_refused(void **unused)
{
    (void)unused;
    write_config("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_echo.so\", \"features\": [\"x\", \"x\"]}",
                 MEMORY);
    const char *twice[] = {"experiments.exp.policy.features[1]", "listed twice", NULL};
    open_refused(MAB_ECONFIG, twice);
    write_config("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_echo.so\", \"features\": \"x\"}",
                 MEMORY);
    const char *not_array[] = {"experiments.exp.policy.features", "array", NULL};
    open_refused(MAB_ECONFIG, not_array);
    /* create()'s own error reaches the caller. */
    write_config(FIXTURE("policy_echo"), MEMORY);
    const char *create[] = {"create failed", "policy_echo needs \"features\"", NULL};
    open_refused(MAB_EPLUGIN, create);
}

/* ---- statistics ------------------------------------------------------- */

static void test_stats_counted_and_read_by_choose(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"), MEMORY);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 30; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        assert_true(c.probability == 1.0);
        counts[c.arm_index]++;
    }
    /* choose plays the arm with the fewest arm[0]: exact round robin only
       when each pull's delta is visible to the next choose. */
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    assert_int_equal(counts[2], 10);
    assert_int_equal(mab_reward(e, "exp", "b", 0.25, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "b", 0.5, &err), MAB_OK);
    policy_stats s = read_stats(e);
    assert_string_equal(s.info.layout, "stats/1:2,1");
    assert_int_equal(s.info.per_arm, 2);
    assert_int_equal(s.info.per_experiment, 1);
    assert_true(s.arm[0] == 10.0 && s.arm[2] == 10.0 && s.arm[4] == 10.0);
    assert_true(s.arm[1] == 0.0 && s.arm[3] == 0.75 && s.arm[5] == 0.0);
    assert_true(s.exp[0] == 32.0);

    double scores[3];
    int kind = 0;
    assert_int_equal(mab_explain(e, "exp", NULL, scores, 3, &kind, &err), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
    assert_true(scores[0] == 10.0 && scores[1] == 10.0 && scores[2] == 10.0);

    /* Flushed to storage under the layout tag. */
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    close_ok(e);
}

static int seen_layout(void *ctx, const char *layout)
{
    char *out = ctx;
    strncat(out, layout, 200);
    strncat(out, ";", 2);
    return 0;
}

static void test_stats_reach_storage(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"), MEMORY);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    char layouts[256] = "";
    assert_int_equal(mab_stored_layouts(e, "exp", seen_layout, layouts, &err), MAB_OK);
    assert_string_equal(layouts, "stats/1:2,1;");
    /* mab_reset clears the statistics in memory and in storage. */
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    policy_stats s = read_stats(e);
    assert_true(s.arm[0] == 0.0 && s.exp[0] == 0.0);
    layouts[0] = '\0';
    assert_int_equal(mab_stored_layouts(e, "exp", seen_layout, layouts, &err), MAB_OK);
    assert_string_equal(layouts, "");
    close_ok(e);
}

static void test_stats_kept_when_apply_fails(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"),
                 "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", \"fail_apply\": true}");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    /* Requeued, not lost, not doubled. */
    policy_stats s = read_stats(e);
    assert_true(s.arm[0] == 1.0 && s.arm[2] == 1.0 && s.arm[4] == 1.0);
    assert_true(s.exp[0] == 3.0);
    assert_int_equal(mab_close(e, &err), MAB_ESTORAGE);
}

/* Re-read everything from storage: published = stored + unapplied. */
static void reload(mab_engine *e)
{
    mab_error err = {0, ""};
    int rc = mab_import(e, NULL, 0, 0, &err);
    if (rc)
        print_error("mab_import: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

static void test_stats_retried_after_failure(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"),
                 "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", \"fail_stats\": 2}");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "a", 1.0, &err), MAB_OK);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    /* Stored once, exactly: the failed batches were offered again whole. */
    reload(e);
    policy_stats s = read_stats(e);
    assert_true(s.arm[0] == 1.0 && s.arm[1] == 1.0 && s.arm[2] == 1.0 && s.arm[4] == 1.0);
    assert_true(s.exp[0] == 4.0);
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[0].pulls, 1);
    assert_int_equal(st[0].rewards, 1);
    close_ok(e);
}

static void test_refused_stats_split_out(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"),
                 "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\", "
                 "\"refuse_stats_arm\": \"b\"}");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    /* b's statistics were dropped (and counted); everything else written. */
    assert_int_equal(mab_dropped_deltas(e, &err), 1);
    assert_non_null(strstr(err.message, "arm \"b\""));
    policy_stats s = read_stats(e);
    assert_true(s.arm[0] == 1.0 && s.arm[2] == 0.0 && s.arm[4] == 1.0);
    reload(e);
    s = read_stats(e);
    assert_true(s.arm[0] == 1.0 && s.arm[2] == 0.0 && s.arm[4] == 1.0 && s.exp[0] == 3.0);
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[1].pulls, 1); /* b's counters were written */
    close_ok(e);
}

#define THREADS 4
#define PER_THREAD 5000

static void *hammer(void *arg)
{
    mab_engine *e = arg;
    mab_error err;
    for (int i = 0; i < PER_THREAD; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "exp", &c, &err) != MAB_OK)
            return (void *)1;
        if (i % 2 == 0 && mab_reward(e, "exp", c.arm_id, 0.5, &err) != MAB_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_stats_exact_across_threads(void **unused)
{
    (void)unused;
    write_config(FIXTURE("policy_stats"), MEMORY_SYNC);
    mab_engine *e = open_ok();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, e), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    policy_stats s = read_stats(e);
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    mab_error err;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    double pulls = 0, reward_sum = 0;
    for (int i = 0; i < 3; i++) {
        /* each arm's own statistics agree with its counters */
        assert_true(s.arm[2 * i] == (double)st[i].pulls);
        assert_true(s.arm[2 * i + 1] == st[i].reward_sum);
        pulls += s.arm[2 * i];
        reward_sum += s.arm[2 * i + 1];
    }
    assert_true(pulls == THREADS * PER_THREAD);
    assert_true(reward_sum == THREADS * PER_THREAD / 2 * 0.5);
    assert_true(s.exp[0] == THREADS * PER_THREAD * 1.5);
    close_ok(e);
}

/* ---- context and time ------------------------------------------------- */

static int64_t fixed_clock(void *ctx)
{
    return *(const int64_t *)ctx;
}

static void test_features_reach_choose_and_update(void **unused)
{
    (void)unused;
    write_config("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_echo.so\", "
                 "\"features\": [\"slot\", \"unused\"]}",
                 MEMORY);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    int64_t now = 1700000000LL * 1000000000LL;
    assert_int_equal(mab_set_clock(e, fixed_clock, &now, &err), MAB_OK);
    const char *names[] = {"other", "slot"};
    for (int arm = 0; arm < 3; arm++) {
        double values[] = {99.0, (double)arm};
        mab_context ctx = {sizeof ctx, names, values, 2, 0, 0, 0, 0};
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        int estimated = 0;
        assert_int_equal(mab_choose_ctx(e, "exp", &ctx, &c, &estimated, &err), MAB_OK);
        assert_int_equal(c.arm_index, (size_t)arm);
        assert_int_equal(estimated, 1);
    }
    /* Missing feature: NAN reaches choose (arm 0) and update (exp[1]). */
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose_ctx(e, "exp", NULL, &c, NULL, &err), MAB_OK);
    assert_int_equal(c.arm_index, 0);
    /* A reward with a feature and the caller's time; one on the clock. */
    double seven[] = {0.0, 7.0};
    mab_context at = {sizeof at, names, seven, 2, 5LL * 1000000000LL, 0.5, 0, 0};
    assert_int_equal(mab_reward_ctx(e, "exp", "c", 1.0, &at, &err), MAB_OK);
    assert_int_equal(mab_reward_ctx(e, "exp", "a", 1.0, NULL, &err), MAB_OK);
    policy_stats s = read_stats(e);
    assert_string_equal(s.info.layout, "echo/1:1,3");
    /* arm[0] summed the feature at each pull: arm b got 1, arm c got 2 */
    assert_true(s.arm[0] == 0.0 && s.arm[1] == 1.0 && s.arm[2] == 2.0);
    assert_true(s.exp[0] == 7.0);
    assert_true(s.exp[1] == 2.0); /* the pull and the reward without it */
    assert_true(s.exp[2] == 5.0 + 1700000000.0);
    /* A context too small for this library is refused, naming the field. */
    mab_context small = {4, names, seven, 2, 0, 0, 0, 0};
    assert_int_equal(mab_choose_ctx(e, "exp", &small, &c, NULL, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "struct_size"));
    close_ok(e);
}

/* ---- EXP3 through the engine ---------------------------------------- */

static void test_exp3_through_the_engine(void **unused)
{
    (void)unused;
    write_config("{\"plugin\": \"" MAB_PLUGIN_DIR "/exp3.so\", \"gamma\": 0.5}", MEMORY);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    /* Nothing learnt yet: uniform, exactly. */
    assert_true(fabs(c.probability - 1.0 / 3.0) < 1e-15);
    /* A reward without its probability cannot be weighted: refused whole. */
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_EPLUGIN);
    assert_non_null(strstr(err.message, "refused the reward for arm \"b\""));
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    assert_int_equal(mab_stats(e, "exp", st, 3, &n, &err), MAB_OK);
    assert_int_equal(st[1].rewards, 0);
    /* With it: G_b += r / p. */
    mab_context ctx = {sizeof ctx, NULL, NULL, 0, 0, 0.25, 0, 0};
    assert_int_equal(mab_reward_ctx(e, "exp", "b", 0.5, &ctx, &err), MAB_OK);
    mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
    double g[3];
    assert_int_equal(mab_policy_stats(e, "exp", &info, g, 3, NULL, 0, &err), MAB_OK);
    assert_string_equal(info.layout, "exp3/1:1,0");
    assert_true(g[0] == 0.0 && g[1] == 2.0 && g[2] == 0.0);
    /* choose reads G: p_b = 0.5 w_b / sum w + 0.5 / 3 with w = exp(0.5 G / 3). */
    double wb = exp(0.5 * 2.0 / 3.0), expected_b = 0.5 * wb / (wb + 2.0) + 0.5 / 3.0;
    double p[3];
    int kind;
    assert_int_equal(mab_explain(e, "exp", NULL, p, 3, &kind, &err), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_PROBABILITIES);
    assert_true(fabs(p[1] - expected_b) < 1e-12);
    int saw_b = 0;
    for (int i = 0; i < 200 && !saw_b; i++) {
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
        if (c.arm_index == 1) {
            saw_b = 1;
            assert_true(fabs(c.probability - expected_b) < 1e-12);
        }
    }
    assert_true(saw_b);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_newer_core_table_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_minor_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_without_update_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_without_stats_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_features_key_abi1_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_features_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_counted_and_read_by_choose, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_reach_storage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_kept_when_apply_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_retried_after_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_stats_split_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_exact_across_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_features_reach_choose_and_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exp3_through_the_engine, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
