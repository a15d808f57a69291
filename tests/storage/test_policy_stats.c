/*
 * test_policy_stats.c - policy statistics (policy ABI 2, storage ABI 1.4)
 * through real storage backends: stored with the counters and read back
 * exactly after close and reopen; over LMDB from 4 threads and then from 4
 * processes at once; and a policy change in the config starts its
 * statistics from zero while the old policy's stay untouched.
 *
 * Run as: test_policy_stats BACKEND (lmdb or json_file; the
 * threads-then-processes case runs for lmdb only, the one backend shared by
 * processes). Children are
 * forked before the parent opens an engine in that test.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "support.h"

static const char *backend;
static char *dir;
static char config[300];

#define POLICY_A "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_stats.so\"}"
#define POLICY_B "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_echo.so\", \"features\": [\"f\"]}"

static void write_config(const char *policy)
{
    char storage[200];
    if (strcmp(backend, "lmdb") == 0)
        snprintf(storage, sizeof storage, "{\"plugin\": \"lmdb\", \"path\": \"store\"}");
    else
        snprintf(storage, sizeof storage, "{\"plugin\": \"%s\", \"path\": \"state.json\"}",
                 backend);
    assert_int_equal(test_write_file(config,
                                     "{\"plugin_path\": [\"%s\"], \"seed\": 9,\n"
                                     " \"storage\": %s,\n"
                                     " \"experiments\": {\"exp\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     MAB_PLUGIN_DIR, storage, policy),
                     0);
}

static mab_engine *open_ok(void)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config, &e, &err) != MAB_OK)
        fail_msg("mab_open: %s", err.message);
    return e;
}

static void close_ok(mab_engine *e)
{
    mab_error err = {0, ""};
    if (mab_close(e, &err) != MAB_OK)
        fail_msg("mab_close: %s", err.message);
}

typedef struct snapshot {
    mab_policy_stats_info info;
    double arm[9];
    double exp[3];
    mab_arm_stats counters[3];
} snapshot;

static snapshot read_all(mab_engine *e)
{
    snapshot s;
    memset(&s, 0, sizeof s);
    s.info.struct_size = sizeof s.info;
    s.counters[0].struct_size = sizeof s.counters[0];
    mab_error err = {0, ""};
    if (mab_policy_stats(e, "exp", &s.info, s.arm, 9, s.exp, 3, &err) != MAB_OK)
        fail_msg("mab_policy_stats: %s", err.message);
    size_t n;
    if (mab_stats(e, "exp", s.counters, 3, &n, &err) != MAB_OK)
        fail_msg("mab_stats: %s", err.message);
    return s;
}

static int setup(void **unused)
{
    (void)unused;
    dir = test_tmpdir("policy-stats");
    assert_non_null(dir);
    snprintf(config, sizeof config, "%s/mab.json", dir);
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    test_rm_tree(dir);
    free(dir);
    return 0;
}

#define STEPS 3000

/* STEPS choices, a reward of 0.5 after every other one. 0 on success. */
static int work(mab_engine *e)
{
    mab_error err;
    for (int i = 0; i < STEPS; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "exp", &c, &err) != MAB_OK)
            return 1;
        if (i % 2 == 0 && mab_reward(e, "exp", c.arm_id, 0.5, &err) != MAB_OK)
            return 1;
    }
    return 0;
}

static void *work_thread(void *e)
{
    return work(e) ? (void *)1 : NULL;
}

/* The policy_stats fixture's statistics agree with the counters and with
   `runs` runs of work(). */
static void check_exact(const snapshot *s, int runs)
{
    assert_string_equal(s->info.layout, "stats/1:2,1");
    double pulls = 0, rewards = 0;
    for (int i = 0; i < 3; i++) {
        if (s->arm[2 * i] != (double)s->counters[i].pulls ||
            s->arm[2 * i + 1] != s->counters[i].reward_sum)
            fail_msg("arm %d: stats %g, %g; counters %llu pulls, reward sum %g", i,
                     s->arm[2 * i], s->arm[2 * i + 1], (unsigned long long)s->counters[i].pulls,
                     s->counters[i].reward_sum);
        pulls += s->arm[2 * i];
        rewards += s->arm[2 * i + 1];
    }
    assert_true(pulls == (double)runs * STEPS);
    assert_true(rewards == (double)runs * (STEPS / 2) * 0.5);
    assert_true(s->exp[0] == (double)runs * (STEPS + STEPS / 2));
}

static void test_round_trip(void **unused)
{
    (void)unused;
    write_config(POLICY_A);
    mab_engine *e = open_ok();
    assert_int_equal(work(e), 0);
    snapshot before = read_all(e);
    check_exact(&before, 1);
    close_ok(e);
    e = open_ok();
    snapshot after = read_all(e);
    check_exact(&after, 1);
    assert_memory_equal(before.arm, after.arm, sizeof before.arm);
    assert_memory_equal(before.exp, after.exp, sizeof before.exp);
    close_ok(e);
}

static void test_threads_then_processes(void **unused)
{
    (void)unused;
    write_config(POLICY_A);
    mab_engine *e = open_ok();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work_thread, e), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    close_ok(e);
    e = open_ok();
    snapshot s = read_all(e);
    check_exact(&s, 4);
    close_ok(e);

    /* Four processes at once, each with its own engine on the one store. */
    pid_t child[4];
    for (int i = 0; i < 4; i++) {
        child[i] = fork();
        assert_true(child[i] >= 0);
        if (child[i] == 0) {
            mab_engine *c = NULL;
            mab_error err;
            if (mab_open(config, &c, &err) != MAB_OK)
                _exit(2);
            int rc = work(c);
            _exit(mab_close(c, &err) != MAB_OK ? 3 : rc);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        assert_int_equal(waitpid(child[i], &status, 0), child[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d ended with status 0x%x", i, status);
    }
    e = open_ok();
    s = read_all(e);
    check_exact(&s, 8);
    close_ok(e);
}

static int add_layout(void *ctx, const char *layout)
{
    strncat(ctx, layout, 100);
    strncat(ctx, ";", 2);
    return 0;
}

static void test_policy_change_starts_afresh(void **unused)
{
    (void)unused;
    write_config(POLICY_A);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 6; i++)
        assert_int_equal(mab_choose(e, "exp", &c, &err), MAB_OK);
    snapshot a = read_all(e);
    assert_true(a.arm[0] == 2.0 && a.arm[2] == 2.0 && a.arm[4] == 2.0 && a.exp[0] == 6.0);
    close_ok(e);

    /* Policy B: its statistics start at zero, the counters are kept. */
    write_config(POLICY_B);
    e = open_ok();
    snapshot b = read_all(e);
    assert_string_equal(b.info.layout, "echo/1:1,3");
    for (int i = 0; i < 3; i++)
        assert_true(b.arm[i] == 0.0 && b.exp[i] == 0.0);
    assert_int_equal(b.counters[0].pulls, 2);
    char layouts[256] = "";
    assert_int_equal(mab_stored_layouts(e, "exp", add_layout, layouts, &err), MAB_OK);
    assert_string_equal(layouts, "stats/1:2,1;"); /* A's, still there */
    const char *names[] = {"f"};
    double two[] = {2.0};
    mab_context ctx = {sizeof ctx, names, two, 1, 0, 0, 0, 0};
    assert_int_equal(mab_choose_ctx(e, "exp", &ctx, &c, NULL, &err), MAB_OK);
    assert_int_equal(c.arm_index, 2);
    close_ok(e);

    /* Back to A: exactly what A had; B's pull counted only in the counters. */
    write_config(POLICY_A);
    e = open_ok();
    snapshot again = read_all(e);
    assert_memory_equal(a.arm, again.arm, sizeof a.arm);
    assert_memory_equal(a.exp, again.exp, sizeof a.exp);
    assert_int_equal(again.counters[2].pulls, 3);
    layouts[0] = '\0';
    assert_int_equal(mab_stored_layouts(e, "exp", add_layout, layouts, &err), MAB_OK);
    assert_true(strstr(layouts, "stats/1:2,1;") && strstr(layouts, "echo/1:1,3;"));
    close_ok(e);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s BACKEND (e.g. lmdb)\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_change_starts_afresh, setup, teardown),
    };
    const struct CMUnitTest shared[] = {
        cmocka_unit_test_setup_teardown(test_threads_then_processes, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (strcmp(backend, "lmdb") == 0)
        failed += cmocka_run_group_tests(shared, NULL, NULL);
    return failed;
}
