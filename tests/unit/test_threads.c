/*
 * test_threads.c - many threads choosing and rewarding on one engine: every
 * pull and reward is counted exactly once, in memory and in storage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/rng.h"
#include "support.h"

#define THREADS 4
#define ARMS 4

static char *dir;
static char config[300];

struct worker {
    mab_engine *engine;
    int iterations;
    uint64_t seed;
    int unit_rewards; /* every reward is 1.0 */
    uint64_t pulls[ARMS], rewards[ARMS];
    double reward_sum[ARMS];
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    mab_rng *rng = mab_rng_create(w->seed);
    static const char *const ids[ARMS] = {"a0", "a1", "a2", "a3"};
    for (int i = 0; i < w->iterations; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        mab_error err;
        if (mab_choose(w->engine, "exp", &c, &err) != MAB_OK || c.arm_index >= ARMS) {
            w->failures++;
            continue;
        }
        w->pulls[c.arm_index]++;
        /* Click rates 0.1 .. 0.4; a click rewards 1, sometimes a half. */
        if (mab_rng_uniform(rng) < 0.1 * (double)(c.arm_index + 1)) {
            double value = (i % 3 == 0 && !w->unit_rewards) ? 0.5 : 1.0;
            if (mab_reward(w->engine, "exp", ids[c.arm_index], value, &err) != MAB_OK) {
                w->failures++;
                continue;
            }
            w->rewards[c.arm_index]++;
            w->reward_sum[c.arm_index] += value;
        }
    }
    mab_rng_destroy(rng);
    return NULL;
}

static void run(const char *sync, int iterations)
{
    test_write_file(config,
                    "{\"plugin_path\": [\"%s\"],"
                    " \"storage\": {\"plugin\": \"json_file\", \"path\": \"state.json\", \"sync\": %s},"
                    " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.2},"
                    " \"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2, \"a3\": 3}}}}\n",
                    MAB_PLUGIN_DIR, sync);
    char state_path[320];
    snprintf(state_path, sizeof state_path, "%s/state.json", dir);
    unlink(state_path);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        memset(&workers[t], 0, sizeof workers[t]);
        workers[t].engine = e;
        workers[t].iterations = iterations;
        workers[t].seed = 100 + (uint64_t)t;
        assert_int_equal(pthread_create(&threads[t], NULL, work, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);

    uint64_t pulls[ARMS] = {0}, rewards[ARMS] = {0};
    double sums[ARMS] = {0};
    uint64_t all_pulls = 0;
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(workers[t].failures, 0);
        for (int a = 0; a < ARMS; a++) {
            pulls[a] += workers[t].pulls[a];
            rewards[a] += workers[t].rewards[a];
            sums[a] += workers[t].reward_sum[a];
            all_pulls += workers[t].pulls[a];
        }
    }
    assert_int_equal(all_pulls, (uint64_t)THREADS * (uint64_t)iterations);

    for (int pass = 0; pass < 2; pass++) {
        mab_arm_stats st[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
        size_t n = 0;
        assert_int_equal(mab_stats(e, "exp", st, ARMS, &n, &err), MAB_OK);
        assert_int_equal(n, ARMS);
        for (int a = 0; a < ARMS; a++) {
            assert_int_equal(st[a].pulls, pulls[a]);
            assert_int_equal(st[a].rewards, rewards[a]);
            /* Sums of 1.0 and 0.5 are exact in binary floating point. */
            assert_true(st[a].reward_sum == sums[a]);
        }
        /* Second pass: after close and reopen, from storage. */
        assert_int_equal(mab_close(e, &err), MAB_OK);
        if (pass == 0)
            assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    }
}

static void test_interval_sync(void **state)
{
    (void)state;
    run("{\"interval_ms\": 5}", 100000);
}

static void test_always_sync_group_commit(void **state)
{
    (void)state;
    run("\"always\"", 1500);
}

/*
 * The writer takes each arm's queued totals while other threads publish to
 * them: it must never take a publish half-way (its reward count without its
 * reward sum), or a crash between two batches would leave a stored record
 * whose count and sum disagree. The memory fixture refuses such a delta.
 * A stress check: it never fails on correct code, and catches the race only
 * in runs where a publish is preempted in its few-instruction window (seen
 * as test_lmdb_engine's "reward count 18500 and sum 18468 disagree" under
 * load before the writer took publish_lock).
 */
static void test_batches_hold_whole_publishes(void **state)
{
    (void)state;
    test_write_file(config,
                    "{\"plugin_path\": [\"%s\"],"
                    " \"storage\": {\"plugin\": \"%s/storage_memory.so\", \"whole_rewards\": true,"
                    " \"sync\": {\"interval_ms\": 1}},"
                    " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.2},"
                    " \"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2, \"a3\": 3}}}}\n",
                    MAB_PLUGIN_DIR, MAB_FIXTURE_DIR);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        memset(&workers[t], 0, sizeof workers[t]);
        workers[t].engine = e;
        workers[t].iterations = 300000;
        workers[t].seed = 200 + (uint64_t)t;
        workers[t].unit_rewards = 1;
        assert_int_equal(pthread_create(&threads[t], NULL, work, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(workers[t].failures, 0);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    mab_error last = {0, ""};
    uint64_t dropped = mab_dropped_deltas(e, &last);
    if (dropped)
        fail_msg("%llu deltas were torn: %s", (unsigned long long)dropped, last.message);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static int setup(void **state)
{
    (void)state;
    dir = test_tmpdir("threads");
    snprintf(config, sizeof config, "%s/mab.json", dir);
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    test_rm_tree(dir);
    free(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interval_sync),
        cmocka_unit_test(test_always_sync_group_commit),
        cmocka_unit_test(test_batches_hold_whole_publishes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
