/*
 * test_lmdb_engine.c - the engine over the lmdb plugin, with real processes:
 * several processes counting into one store lose nothing, each sees the
 * others' totals within refresh_ms, and SIGKILL loses no acknowledged
 * reward ("always") or nothing up to the last flush (interval mode).
 *
 * Children are forked before the parent opens any engine (an engine's
 * threads and an LMDB environment must not cross fork), open their own
 * engine, and report through pipes and exit codes only.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/rng.h"
#include "child.h"
#include "support.h"

#define ARMS 3

typedef struct fixture {
    char *dir;
    char config[300];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = test_tmpdir("lmdb-engine"))) {
        free(f);
        return -1;
    }
    snprintf(f->config, sizeof f->config, "%s/mab.json", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    test_rm_tree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A config with the lmdb store "store" next to it; storage_extra goes into
   the storage object (e.g. "\"sync\": \"always\""). */
static void write_config(const fixture *f, const char *storage_extra)
{
    assert_int_equal(
        test_write_file(f->config,
                        "{\"plugin_path\": [\"%s\"],\n"
                        " \"storage\": {\"plugin\": \"lmdb\", \"path\": \"store\", %s},\n"
                        " \"experiments\": {\"exp\": {\"policy\": {\"plugin\": "
                        "\"epsilon_greedy\", \"epsilon\": 0.3},\n"
                        "   \"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2}}}}\n",
                        MAB_PLUGIN_DIR, storage_extra),
        0);
}

static mab_engine *open_ok(const fixture *f)
{
    mab_engine *e = NULL;
    mab_error err = {0};
    if (mab_open(f->config, &e, &err) != MAB_OK)
        fail_msg("mab_open: %s", err.message);
    return e;
}

static void close_ok(mab_engine *e)
{
    mab_error err = {0};
    if (mab_close(e, &err) != MAB_OK)
        fail_msg("mab_close: %s", err.message);
}

static void stats_ok(mab_engine *e, mab_arm_stats out[ARMS])
{
    mab_error err = {0};
    size_t n = 0;
    if (mab_stats(e, "exp", out, ARMS, &n, &err) != MAB_OK)
        fail_msg("mab_stats: %s", err.message);
    assert_int_equal(n, ARMS);
}

static void wait_ok(pid_t child)
{
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %ld ended with status 0x%x", (long)child, status);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- four processes, one store ---------------------------------------- */

#define PROCESSES 4
#define STEPS 50000

typedef struct counts {
    uint64_t pulls[ARMS], rewards[ARMS];
    double reward_sum[ARMS];
} counts;

/* A forked child's failure, said on stderr (the test's log) before it ends. */
static void child_fail(int code, const char *call, const mab_error *err)
{
    fprintf(stderr, "# child %d: %s: %s\n", (int)getpid(), call, err->message);
    _exit(code);
}

/* Child: STEPS choose + (sometimes) reward; send what it counted. */
static void count_child(const fixture *f, int seed, int report_fd)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(f->config, &e, &err) != MAB_OK)
        child_fail(2, "mab_open", &err);
    mab_rng *rng = mab_rng_create((uint64_t)seed);
    counts c = {0};
    for (int i = 0; i < STEPS; i++) {
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "exp", &choice, &err) != MAB_OK || choice.arm_index >= ARMS)
            child_fail(3, "mab_choose", &err);
        c.pulls[choice.arm_index]++;
        if (mab_rng_uniform(rng) < 0.2 + 0.2 * (double)choice.arm_index) {
            double value = i % 4 == 0 ? 0.5 : 1.0;
            if (mab_reward(e, "exp", choice.arm_id, value, &err) != MAB_OK)
                child_fail(4, "mab_reward", &err);
            c.rewards[choice.arm_index]++;
            c.reward_sum[choice.arm_index] += value;
        }
    }
    mab_rng_destroy(rng);
    if (mab_close(e, &err) != MAB_OK)
        child_fail(5, "mab_close", &err);
    if (write(report_fd, &c, sizeof c) != (ssize_t)sizeof c)
        _exit(6);
    _exit(0);
}

static void test_processes_count_exactly(void **state)
{
    fixture *f = *state;
    write_config(f, "\"sync\": {\"interval_ms\": 20}, \"refresh_ms\": 10");
    int report[2];
    assert_int_equal(pipe(report), 0);
    pid_t children[PROCESSES];
    for (int p = 0; p < PROCESSES; p++) {
        children[p] = fork();
        assert_true(children[p] >= 0);
        if (children[p] == 0) {
            close(report[0]);
            count_child(f, 1000 + p, report[1]);
        }
    }
    close(report[1]);
    counts total = {0};
    for (int p = 0; p < PROCESSES; p++) {
        counts c;
        if (test_read_full(report[0], &c, sizeof c) != 0) {
            /* A child ended without its report: say how (count_child's
               exit codes name the call that failed). */
            close(report[0]);
            char why[256] = "";
            for (int q = 0; q < PROCESSES; q++) {
                int status = 0;
                waitpid(children[q], &status, 0);
                size_t len = strlen(why);
                snprintf(why + len, sizeof why - len, " child %d: %s %d;", q,
                         WIFEXITED(status) ? "exit" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            }
            fail_msg("a child sent no report:%s", why);
        }
        for (int a = 0; a < ARMS; a++) {
            total.pulls[a] += c.pulls[a];
            total.rewards[a] += c.rewards[a];
            total.reward_sum[a] += c.reward_sum[a];
        }
    }
    close(report[0]);
    for (int p = 0; p < PROCESSES; p++)
        wait_ok(children[p]);

    mab_engine *e = open_ok(f);
    mab_arm_stats s[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
    stats_ok(e, s);
    uint64_t pulls = 0;
    for (int a = 0; a < ARMS; a++) {
        assert_int_equal(s[a].pulls, total.pulls[a]);
        assert_int_equal(s[a].rewards, total.rewards[a]);
        /* Sums of 0.5 and 1.0 are exact in any order. */
        assert_true(s[a].reward_sum == total.reward_sum[a]);
        pulls += s[a].pulls;
    }
    assert_int_equal(pulls, (uint64_t)PROCESSES * STEPS);
    close_ok(e);
}

/* ---- each process sees the others within refresh_ms ------------------- */

#define REFRESH_MS 50
/* How long the refresh tests wait for another process's writes to show. */
#define SEEN_DEADLINE_MS 60000

/* Child of test_others_seen_by_refresh: at the first byte on go, 5
   rewards on a1, flushed (the time of the flush on done), then one more on
   a2 left unflushed until the next byte, then a clean close. */
static void seen_child(void *arg, int go, int done)
{
    const fixture *f = arg;
    char c;
    if (read(go, &c, 1) != 1)
        _exit(2);
    mab_engine *e = NULL;
    if (mab_open(f->config, &e, NULL) != MAB_OK)
        _exit(3);
    for (int i = 0; i < 5; i++)
        if (mab_reward(e, "exp", "a1", 1.0, NULL) != MAB_OK)
            _exit(4);
    if (mab_flush(e, NULL) != MAB_OK)
        _exit(5);
    int64_t flushed = now_ms();
    if (write(done, &flushed, sizeof flushed) != (ssize_t)sizeof flushed)
        _exit(6);
    /* Stay open, unflushed increments and all, until told to go. */
    if (mab_reward(e, "exp", "a2", 1.0, NULL) != MAB_OK || read(go, &c, 1) != 1)
        _exit(7);
    _exit(mab_close(e, NULL) == MAB_OK ? 0 : 8);
}

static void test_others_seen_by_refresh(void **state)
{
    fixture *f = *state;
    char storage[128];
    snprintf(storage, sizeof storage, "\"sync\": {\"interval_ms\": 60000}, \"refresh_ms\": %d",
             REFRESH_MS);
    write_config(f, storage);
    test_child child = test_child_fork(seen_child, f);

    mab_engine *e = open_ok(f);
    /* This process's own reward, unapplied: must survive every refresh. */
    assert_int_equal(mab_reward(e, "exp", "a0", 1.0, NULL), MAB_OK);
    assert_int_equal(write(child.go, "g", 1), 1);
    int64_t flushed;
    assert_int_equal(test_child_read(&child, &flushed, sizeof flushed), 0);
    mab_arm_stats s[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
    /* Nothing here reads the store (mab_stats does not): only the engine's
       periodic refresh can bring the other process's rewards in. Waited for
       as an event with a generous deadline, not timed: how soon after the
       flush they show is a matter of refresh_ms and the scheduler, and no
       test asserts a latency (a loaded or sanitized run may take long). */
    int seen = 0;
    while (!seen && now_ms() - flushed < SEEN_DEADLINE_MS) {
        stats_ok(e, s);
        seen = s[1].rewards == 5;
        struct timespec pause = {0, 2000000};
        if (!seen)
            nanosleep(&pause, NULL);
    }
    if (!seen)
        fail_msg("the other process's flushed rewards were not seen in %d ms (refresh_ms %d)",
                 SEEN_DEADLINE_MS, REFRESH_MS);
    stats_ok(e, s);
    assert_int_equal(s[0].rewards, 1);  /* ours, still unapplied */
    assert_int_equal(s[2].rewards, 0);  /* theirs, not yet flushed */
    assert_int_equal(write(child.go, "g", 1), 1);
    test_child_wait_ok(&child);

    /* The child's close wrote its last reward: seen after the next refresh. */
    int64_t closed = now_ms();
    while (now_ms() - closed < SEEN_DEADLINE_MS) {
        stats_ok(e, s);
        if (s[2].rewards == 1)
            break;
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
    }
    assert_int_equal(s[2].rewards, 1);
    assert_int_equal(s[0].rewards, 1);
    assert_int_equal(s[1].rewards, 5);
    close_ok(e);

    /* refresh_ms 0 turns refreshing off. */
    snprintf(storage, sizeof storage, "\"sync\": {\"interval_ms\": 60000}, \"refresh_ms\": 0");
    write_config(f, storage);
    e = open_ok(f);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        mab_engine *w = NULL;
        if (mab_open(f->config, &w, NULL) != MAB_OK ||
            mab_reward(w, "exp", "a0", 1.0, NULL) != MAB_OK)
            _exit(2);
        _exit(mab_close(w, NULL) == MAB_OK ? 0 : 3);
    }
    wait_ok(writer);
    struct timespec pause = {0, 3 * REFRESH_MS * 1000000L};
    nanosleep(&pause, NULL);
    stats_ok(e, s);
    assert_int_equal(s[0].rewards, 1);
    close_ok(e);
}

/* ---- durability under SIGKILL ----------------------------------------- */

#define KILL_ROUNDS 20

/*
 * Child: reward a0 in a loop; with report_every == 1 ("always") report the
 * reward count after each mab_reward returned, otherwise flush every
 * report_every rewards and report the count after mab_flush returned.
 */
typedef struct reward_args {
    const fixture *f;
    int report_every;
} reward_args;

static void reward_child(void *arg, int go, int report_fd)
{
    const reward_args *args = arg;
    const fixture *f = args->f;
    int report_every = args->report_every;
    (void)go;
    mab_engine *e = NULL;
    if (mab_open(f->config, &e, NULL) != MAB_OK)
        _exit(2);
    mab_arm_stats s[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    if (mab_stats(e, "exp", s, ARMS, &n, NULL) != MAB_OK)
        _exit(3);
    uint64_t count = s[0].rewards;
    for (;;) {
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "exp", &choice, NULL) != MAB_OK ||
            mab_reward(e, "exp", "a0", 1.0, NULL) != MAB_OK)
            _exit(4);
        count++;
        if (report_every > 1) {
            if (count % (uint64_t)report_every != 0)
                continue;
            if (mab_flush(e, NULL) != MAB_OK)
                _exit(5);
        }
        if (write(report_fd, &count, sizeof count) != (ssize_t)sizeof count)
            _exit(6);
    }
}

static void kill_rounds(const fixture *f, int report_every)
{
    uint64_t total_reported = 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < KILL_ROUNDS; round++) {
        reward_args args = {f, report_every};
        test_child child = test_child_fork(reward_child, &args);
        uint64_t reported = total_reported, value;
        /* Odd rounds wait for the child's first acknowledged reward (an
           event: on a loaded machine 50 ms may not see the open) before the
           delay starts, so every run acknowledges some; even rounds start
           it at the fork, and the kill may land before the open. */
        if (round % 2 == 1) {
            assert_int_equal(test_child_read(&child, &value, sizeof value), 0);
            reported = value;
        }
        struct timespec delay = {0, (long)(rand() % 40 + 10) * 1000000L};
        nanosleep(&delay, NULL);
        test_child_kill(&child, round);

        while (test_child_read(&child, &value, sizeof value) == 0)
            reported = value;
        test_child_close(&child);

        mab_engine *e = open_ok(f); /* opens cleanly after the kill */
        mab_arm_stats s[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
        stats_ok(e, s);
        close_ok(e);
        if (s[0].rewards < reported)
            fail_msg("round %d: %" PRIu64 " rewards were acknowledged, the store holds %" PRIu64,
                     round, reported, s[0].rewards);
        if (s[0].reward_sum != (double)s[0].rewards)
            fail_msg("round %d: reward count %" PRIu64 " and sum %g disagree", round,
                     s[0].rewards, s[0].reward_sum);
        total_reported = s[0].rewards;
    }
    /* Each odd round acknowledged one report at least. */
    assert_true(total_reported >= (uint64_t)(KILL_ROUNDS / 2) * (uint64_t)report_every);
}

static void test_kill_loses_no_acknowledged_reward(void **state)
{
    fixture *f = *state;
    write_config(f, "\"sync\": \"always\"");
    kill_rounds(f, 1);
}

static void test_kill_keeps_everything_flushed(void **state)
{
    fixture *f = *state;
    write_config(f, "\"sync\": {\"interval_ms\": 5}");
    kill_rounds(f, 500);
}

/* ---- a refresh re-reads only what changed (storage ABI 1.6) ----------- */

#define MANY 60

/* n experiments e0..e(n-1) of 3 arms over the counting_lmdb fixture (lmdb
   behind a counter of load() and scan() calls); refreshes only when the
   test asks. */
static void write_n_config(const fixture *f, int n)
{
    FILE *out = fopen(f->config, "w");
    assert_non_null(out);
    fprintf(out, "{\"plugin_path\": [\"%s\", \"%s\"],\n"
                 " \"storage\": {\"plugin\": \"counting_lmdb\", \"path\": \"store\", "
                 "\"sync\": {\"interval_ms\": 3600000}, \"refresh_ms\": 86400000},\n"
                 " \"experiments\": {\n", MAB_FIXTURE_DIR, MAB_PLUGIN_DIR);
    for (int i = 0; i < n; i++)
        fprintf(out, "  \"e%d\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                     "\"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2}}%s\n", i,
                i + 1 < n ? "," : "");
    fputs(" }}\n", out);
    assert_int_equal(fclose(out), 0);
}

static void write_many_config(const fixture *f)
{
    write_n_config(f, MANY);
}

/* A function of the loaded counting_lmdb fixture. */
static void *counting_symbol(const char *name)
{
    void *h = dlopen(MAB_FIXTURE_DIR "/counting_lmdb.so", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        fail_msg("counting_lmdb.so is not loaded: %s", dlerror());
    void *sym = dlsym(h, name);
    assert_non_null(sym);
    dlclose(h); /* drops only the reference RTLD_NOLOAD took; the engine holds it */
    return sym;
}

static uint64_t loads_so_far(void)
{
    uint64_t (*loads)(void) = (uint64_t (*)(void))counting_symbol("storage_counting_loads");
    return loads();
}

static uint64_t scans_so_far(void)
{
    uint64_t (*scans)(void) = (uint64_t (*)(void))counting_symbol("storage_counting_scans");
    return scans();
}

static void full_reads(int on)
{
    void (*everything)(int) = (void (*)(int))counting_symbol("storage_counting_everything");
    everything(on);
}

/* What a refresh_ms tick does, on demand: mab_import of no records flushes
   (nothing new here), applies nothing, then refreshes the totals. */
static void refresh_now(mab_engine *e)
{
    mab_error err = {0};
    if (mab_import(e, NULL, 0, 0, &err) != MAB_OK)
        fail_msg("refresh (mab_import of nothing): %s", err.message);
}

static void arm_stats_of(mab_engine *e, const char *experiment, mab_arm_stats out[ARMS])
{
    mab_error err = {0};
    size_t n = 0;
    for (int a = 0; a < ARMS; a++)
        out[a] = (mab_arm_stats)MAB_STRUCT_INIT(mab_arm_stats);
    if (mab_stats(e, experiment, out, ARMS, &n, &err) != MAB_OK)
        fail_msg("mab_stats %s: %s", experiment, err.message);
    assert_int_equal(n, ARMS);
}

static uint64_t bucket_loads_so_far(void)
{
    uint64_t (*loads)(void) =
        (uint64_t (*)(void))counting_symbol("storage_counting_bucket_loads");
    return loads();
}

/* MANY experiments whose policy keeps a window of time buckets (each has a
   ring the store's buckets fill): a refresh after no change reads no
   experiment's buckets, and after a change of one experiment that one's
   only (the ring of the others is left as it was, and still right). */
static void test_refresh_reads_only_changed_buckets(void **state)
{
    fixture *f = *state;
    FILE *out = fopen(f->config, "w");
    assert_non_null(out);
    fprintf(out, "{\"plugin_path\": [\"%s\", \"%s\"],\n"
                 " \"storage\": {\"plugin\": \"counting_lmdb\", \"path\": \"store\", "
                 "\"sync\": {\"interval_ms\": 3600000}, \"refresh_ms\": 86400000},\n"
                 " \"experiments\": {\n", MAB_FIXTURE_DIR, MAB_PLUGIN_DIR);
    for (int i = 0; i < MANY; i++)
        fprintf(out, "  \"e%d\": {\"policy\": {\"plugin\": \"policy_window\", "
                     "\"features\": [\"arm\", \"bucket\", \"field\"]}, "
                     "\"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2}}%s\n", i,
                i + 1 < MANY ? "," : "");
    fputs(" }}\n", out);
    assert_int_equal(fclose(out), 0);
    mab_engine *e = open_ok(f);
    assert_int_equal(mab_reward(e, "e3", "a1", 1.0, NULL), MAB_OK);
    assert_int_equal(mab_flush(e, NULL), MAB_OK);
    refresh_now(e); /* reads what the write changed (e3) */
    uint64_t base = bucket_loads_so_far();
    refresh_now(e);
    assert_int_equal(bucket_loads_so_far() - base, 0);
    assert_int_equal(mab_reward(e, "e7", "a2", 1.0, NULL), MAB_OK);
    refresh_now(e); /* flushes e7, then reads it */
    assert_int_equal(bucket_loads_so_far() - base, 1);
    /* The rings are still right: e3's and e7's windows hold one reward. */
    static const char *const names[3] = {"arm", "bucket", "field"};
    double features[3] = {0, 2, 1}; /* arm 0, window bucket 2 (the latest), rewards */
    const char *ids[2] = {"e3", "e7"};
    int arm[2] = {1, 2};
    for (int k = 0; k < 2; k++) {
        mab_context ctx = MAB_STRUCT_INIT(mab_context);
        ctx.feature_names = names;
        ctx.feature_values = features;
        ctx.n_features = 3;
        double scores[ARMS];
        int kind = 0;
        mab_error err = {0};
        if (mab_explain(e, ids[k], &ctx, scores, ARMS, &kind, &err) != MAB_OK)
            fail_msg("mab_explain %s: %s", ids[k], err.message);
        for (int a = 0; a < ARMS; a++)
            assert_true(scores[a] == (a == arm[k] ? 1.0 : 0.0));
    }
    close_ok(e);
}

/* Child: at each byte on go, one step: 1 = a reward of 1 on e17.a1, 2 = the
   same plus 0.5 on e42.a2, 3 = reset e5; each durable before the byte on done. */
static int changes_step(mab_engine *e, char step, void *ctx)
{
    (void)ctx;
    int ok = 1;
    if (step == 1 || step == 2)
        ok = mab_reward(e, "e17", "a1", 1.0, NULL) == MAB_OK;
    if (ok && step == 2)
        ok = mab_reward(e, "e42", "a2", 0.5, NULL) == MAB_OK;
    if (ok && step == 3)
        ok = mab_reset(e, "e5", NULL) == MAB_OK;
    return ok ? 0 : -1;
}

static void changes_child(void *arg, int go, int done)
{
    const fixture *f = arg;
    test_child_engine_steps(f->config, go, done, changes_step, NULL);
}

static void test_refresh_reads_only_changed(void **state)
{
    fixture *f = *state;
    write_many_config(f);
    test_child child = test_child_fork(changes_child, f);

    /* Something stored in e5 (for the reset) and in e17, before anyone opens. */
    mab_engine *e = open_ok(f);
    assert_int_equal(mab_reward(e, "e5", "a0", 1.0, NULL), MAB_OK);
    assert_int_equal(mab_reward(e, "e17", "a0", 1.0, NULL), MAB_OK);
    close_ok(e);

    e = open_ok(f);
    uint64_t opened = loads_so_far();
    /* The open read everything (the plugin's first answer is "everything");
       a refresh with nothing changed anywhere reads nothing. */
    refresh_now(e);
    uint64_t base = loads_so_far();
    assert_int_equal(base - opened, 0);

    /* Ours, not yet applied: it must survive the refresh of its experiment. */
    assert_int_equal(mab_reward(e, "e17", "a2", 0.25, NULL), MAB_OK);
    uint64_t before = loads_so_far();
    test_child_step(&child, 1);
    /* mab_import flushes ours first (e17 again): still one experiment. */
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, 1);
    mab_arm_stats s[ARMS];
    arm_stats_of(e, "e17", s);
    assert_int_equal(s[0].rewards, 1);  /* stored before */
    assert_int_equal(s[1].rewards, 1);  /* the other process's */
    assert_int_equal(s[2].rewards, 1);  /* ours */

    before = loads_so_far();
    test_child_step(&child, 2);
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, 2);
    arm_stats_of(e, "e17", s);
    assert_int_equal(s[1].rewards, 2);
    arm_stats_of(e, "e42", s);
    assert_int_equal(s[2].rewards, 1);
    assert_true(s[2].reward_sum == 0.5);

    before = loads_so_far();
    test_child_step(&child, 3);
    refresh_now(e);
    /* mab_reset of e5 resets its sample-ratio ledger "e5@srm" with it: two
       experiments changed, two read. */
    assert_int_equal(loads_so_far() - before, 2);
    arm_stats_of(e, "e5", s);
    assert_int_equal(s[0].rewards, 0); /* reset elsewhere: gone here too */

    test_child_wait_ok(&child);
    close_ok(e);
}

/* ---- a full read: one scan, no load() per admin record ---------------- */

/* At least MAB__SCAN_FROM (core/engine.h), from which a full read scans. */
#define MANY_FOR_SCAN 300

static const char *state_of(mab_engine *e, const char *experiment)
{
    mab_rules_info info = MAB_STRUCT_INIT(mab_rules_info);
    mab_error err = {0};
    if (mab_rules(e, experiment, &info, &err) != MAB_OK)
        fail_msg("mab_rules %s: %s", experiment, err.message);
    return info.state;
}

/* Child: pause e7 on a1 and reward e250.a1 (durable), before the byte on done. */
static void pause_child(void *arg, int go, int done)
{
    const fixture *f = arg;
    (void)go;
    mab_engine *e = NULL;
    if (mab_open(f->config, &e, NULL) != MAB_OK ||
        mab_set_state(e, "e7", "paused", "a1", NULL) != MAB_OK ||
        mab_reward(e, "e250", "a1", 1.0, NULL) != MAB_OK || mab_flush(e, NULL) != MAB_OK ||
        mab_close(e, NULL) != MAB_OK)
        _exit(3);
    _exit(write(done, "d", 1) == 1 ? 0 : 4);
}

/* A config of N experiments, none with an admin record: a full read (at open,
   and a refresh after a writer without change log) is one scan() and no
   load() at all, where it was a load() per experiment, per sample-ratio
   ledger and per "ID@admin" record (3N). A pause taken by another engine is
   still seen by that full read, and so are the totals. */
static void test_full_read_scans_once(void **state)
{
    fixture *f = *state;
    write_n_config(f, MANY_FOR_SCAN);
    mab_engine *e = open_ok(f);
    uint64_t loads = loads_so_far(), scans = scans_so_far();
    assert_int_equal(scans, 1);
    assert_int_equal(loads, 0);
    assert_string_equal(state_of(e, "e7"), "running");

    test_child child = test_child_fork(pause_child, f);
    char c;
    assert_int_equal(test_child_read(&child, &c, 1), 0);
    test_child_wait_ok(&child);

    full_reads(1);
    refresh_now(e);
    full_reads(0);
    assert_int_equal(scans_so_far() - scans, 1);
    assert_int_equal(loads_so_far() - loads, 0);
    assert_string_equal(state_of(e, "e7"), "paused");
    assert_string_equal(state_of(e, "e8"), "running");
    mab_arm_stats s[ARMS];
    arm_stats_of(e, "e250", s);
    assert_int_equal(s[1].rewards, 1);
    assert_true(s[1].reward_sum == 1.0);
    assert_int_equal(s[0].rewards, 0);
    close_ok(e);

    /* A later engine sees both at its open, through the same single scan. */
    e = open_ok(f);
    assert_string_equal(state_of(e, "e7"), "paused");
    arm_stats_of(e, "e250", s);
    assert_int_equal(s[1].rewards, 1);
    close_ok(e);
}

/* The write batch grows with the arms that changed (it starts at 64 entries):
   one flush of every arm of MANY experiments writes each once, exactly. */
static void test_batch_holds_every_changed_arm(void **state)
{
    fixture *f = *state;
    write_many_config(f);
    mab_engine *e = open_ok(f);
    char id[16];
    const char *arms[] = {"a0", "a1", "a2"};
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++)
            for (int a = 0; a < ARMS; a++) {
                snprintf(id, sizeof id, "e%d", i);
                assert_int_equal(mab_reward(e, id, arms[a], 1.0, NULL), MAB_OK);
            }
        mab_error err = {0};
        if (mab_flush(e, &err) != MAB_OK)
            fail_msg("flush: %s", err.message);
    }
    close_ok(e);
    e = open_ok(f);
    mab_arm_stats s[ARMS];
    for (int i = 0; i < MANY; i++) {
        snprintf(id, sizeof id, "e%d", i);
        arm_stats_of(e, id, s);
        for (int a = 0; a < ARMS; a++)
            if (s[a].rewards != 2)
                fail_msg("%s.%s holds %" PRIu64 " rewards, not 2", id, arms[a], s[a].rewards);
    }
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_processes_count_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_others_seen_by_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_reads_only_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_reads_only_changed_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_holds_every_changed_arm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_read_scans_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_loses_no_acknowledged_reward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_keeps_everything_flushed, setup, teardown),
    };
    if (getenv("MAB_TEST_FILTER")) /* one test, e.g. MAB_TEST_FILTER=test_kill_keeps_everything_flushed */
        cmocka_set_test_filter(getenv("MAB_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
