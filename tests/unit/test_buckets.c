/*
 * test_buckets.c - time buckets, driven by the injected clock (mab_set_clock)
 * and by mab_context.time_ns: counts land in the bucket of their time (edges,
 * times before 1970), a window policy (tests/fixtures/policy_window.c) sees
 * exact per-bucket counts from 4 threads, retention drops old buckets while
 * the totals stay exact, a restart keeps history and windows (the memory
 * fixture's "shared" store), a bucket increment storage refuses is dropped
 * alone, a failed write is offered again, a store without buckets serves
 * this process's history, each pull on a random one of many experiments
 * lands in its bucket exactly once across flushes, and the config keys'
 * errors.
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

#define S 1000000000LL /* ns per second */
#define MEMORY_PLUGIN "\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\""
#define WINDOW_POLICY(n)                                                                 \
    "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_window.so\", \"buckets\": " #n            \
    ", \"features\": [\"arm\", \"bucket\", \"field\"]}"

/* Experiment "win" (the window fixture, `buckets` buckets) and "plain"
   (ucb1, ABI 1), three arms each, over the storage object given. */
static void write_config(int buckets, const char *storage_json)
{
    char policy[300];
    snprintf(policy, sizeof policy,
             "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_window.so\", \"buckets\": %d, "
             "\"features\": [\"arm\", \"bucket\", \"field\"]}",
             buckets);
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 3, \"storage\": %s,\n"
                                     " \"experiments\": {\n"
                                     "  \"win\": {\"policy\": %s,\n"
                                     "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}},\n"
                                     "  \"plain\": {\"policy\": {\"plugin\": \"%s/ucb1.so\"},\n"
                                     "   \"arms\": {\"x\": 1, \"y\": 2, \"z\": 3}}}}\n",
                                     storage_json, policy, MAB_PLUGIN_DIR),
                     0);
}

static _Atomic int64_t clock_ns;

static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return clock_ns;
}

/* ---- helpers: choose and reward at a time ------------------------------ */

static const char *const features[] = {"arm", "bucket", "field"};

static void choose_at(mab_engine *e, const char *experiment, int arm, int64_t t_ns)
{
    double values[3] = {arm, NAN, NAN};
    mab_context ctx = {sizeof ctx, features, values, 3, t_ns, 0, 0, 0};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    int rc = mab_choose_ctx(e, experiment, &ctx, &c, NULL, &err);
    if (rc)
        print_error("mab_choose_ctx: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    if (strcmp(experiment, "win") == 0)
        assert_int_equal(c.arm_index, arm);
}

static void reward_at(mab_engine *e, const char *experiment, const char *arm, double value,
                      int64_t t_ns)
{
    mab_context ctx = {sizeof ctx, NULL, NULL, 0, t_ns, 0, 0, 0};
    mab_error err = {0, ""};
    int rc = mab_reward_ctx(e, experiment, arm, value, &ctx, &err);
    if (rc)
        print_error("mab_reward_ctx: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

/* ---- helpers: history --------------------------------------------------- */

typedef struct seen_bucket {
    int64_t start;
    size_t arm;
    uint64_t pulls, rewards;
    double reward_sum;
} seen_bucket;

typedef struct history {
    seen_bucket b[64];
    size_t n;
} history;

static int collect(void *ctx, size_t arm_index, const char *arm_id, const mab_bucket_stats *b)
{
    (void)arm_id;
    history *h = ctx;
    assert_true(h->n < 64);
    h->b[h->n++] = (seen_bucket){b->start, arm_index, b->pulls, b->rewards, b->reward_sum};
    return 0;
}

static history read_history(mab_engine *e, const char *experiment, int64_t since)
{
    history h;
    memset(&h, 0, sizeof h);
    mab_error err = {0, ""};
    int rc = mab_history(e, experiment, since, collect, &h, &err);
    if (rc)
        print_error("mab_history: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return h;
}

static void expect_bucket(const history *h, size_t k, int64_t start, size_t arm, uint64_t pulls,
                          uint64_t rewards, double reward_sum)
{
    if (k >= h->n)
        print_error("history has %zu buckets, expected one at %zu\n", h->n, k);
    assert_true(k < h->n);
    const seen_bucket *b = &h->b[k];
    if (b->start != start || b->arm != arm || b->pulls != pulls || b->rewards != rewards)
        print_error("bucket %zu: start %lld arm %zu pulls %llu rewards %llu; expected %lld %zu "
                    "%llu %llu\n",
                    k, (long long)b->start, b->arm, (unsigned long long)b->pulls,
                    (unsigned long long)b->rewards, (long long)start, arm,
                    (unsigned long long)pulls, (unsigned long long)rewards);
    assert_int_equal(b->start, start);
    assert_int_equal(b->arm, arm);
    assert_int_equal(b->pulls, pulls);
    assert_int_equal(b->rewards, rewards);
    assert_true(fabs(b->reward_sum - reward_sum) < 1e-9);
}

/* What the window policy sees: field of bucket b for each of 3 arms. */
static void window_field(mab_engine *e, int bucket, int field, double out[3])
{
    double values[3] = {0, bucket, field};
    mab_context ctx = {sizeof ctx, features, values, 3, 0, 0, 0, 0};
    int kind = 0;
    mab_error err = {0, ""};
    int rc = mab_explain(e, "win", &ctx, out, 3, &kind, &err);
    if (rc)
        print_error("mab_explain: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_SCORES);
}

static uint64_t total_pulls(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[3];
    st[0].struct_size = sizeof st[0];
    size_t n = 0;
    mab_error err = {0, ""};
    assert_int_equal(mab_stats(e, experiment, st, 3, &n, &err), MAB_OK);
    return st[0].pulls + st[1].pulls + st[2].pulls;
}

/* ---- tests -------------------------------------------------------------- */

/* Edges: exactly on a boundary is the new bucket, 1 ns before is the old
   one, a time before 1970 floors downwards; the ABI 1 path (mab_choose,
   mab_reward: the injected clock) counts the same way. */
static void test_counts_land_in_their_bucket(void **unused)
{
    (void)unused;
    write_config(3, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60}");
    mab_engine *e = open_ok();
    assert_int_equal(mab_bucket_seconds(e), 60);
    int64_t edge = 6000 * S; /* a multiple of 60 s */
    choose_at(e, "win", 0, edge);          /* bucket 6000 */
    choose_at(e, "win", 0, edge - 1);      /* bucket 5940 */
    choose_at(e, "win", 1, edge + 59 * S + (S - 1)); /* still 6000 */
    choose_at(e, "win", 2, edge + 60 * S); /* bucket 6060 */
    choose_at(e, "win", 2, -1);            /* bucket -60 */
    reward_at(e, "win", "a", 0.25, edge - 1); /* 5940 */
    reward_at(e, "win", "b", 0.5, edge + 30 * S);
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    clock_ns = edge + 61 * S; /* bucket 6060 */
    assert_int_equal(mab_choose(e, "plain", &c, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "plain", c.arm_id, 1.0, &err), MAB_OK);
    clock_ns = edge - 60 * S; /* bucket 5940 */
    assert_int_equal(mab_reward(e, "plain", "z", 0.75, &err), MAB_OK);

    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 5);
    expect_bucket(&h, 0, -60, 2, 1, 0, 0.0);
    expect_bucket(&h, 1, 5940, 0, 1, 1, 0.25);
    expect_bucket(&h, 2, 6000, 0, 1, 0, 0.0);
    expect_bucket(&h, 3, 6000, 1, 1, 1, 0.5);
    expect_bucket(&h, 4, 6060, 2, 1, 0, 0.0);
    /* since: buckets that start before it are left out. */
    h = read_history(e, "win", 6000);
    assert_int_equal(h.n, 3);
    expect_bucket(&h, 0, 6000, 0, 1, 0, 0.0);

    h = read_history(e, "plain", INT64_MIN);
    assert_int_equal(h.n, 2);
    expect_bucket(&h, 0, 5940, 2, 0, 1, 0.75);
    assert_int_equal(h.b[1].start, 6060);
    assert_int_equal(h.b[1].pulls, 1);
    assert_int_equal(h.b[1].rewards, 1);
    /* The same after the write: now from the store. */
    flush_ok(e);
    h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 5);
    expect_bucket(&h, 1, 5940, 0, 1, 1, 0.25);
    expect_bucket(&h, 3, 6000, 1, 1, 1, 0.5);
    close_ok(e);
}

/* ---- four threads, one window ------------------------------------------- */

#define THREADS 4
#define PER_BUCKET 500

typedef struct worker {
    mab_engine *e;
    int index;
    int64_t first; /* ns: start of the window's first bucket */
} worker;

/* Thread k pulls arm k % 3, PER_BUCKET * (b + 1) times in bucket b
   (b = 0..2), and rewards it 1.0 once per pull in bucket 1 only. */
static void *work(void *arg)
{
    worker *w = arg;
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < PER_BUCKET * (b + 1); i++) {
            int64_t t = w->first + b * 60 * S + (int64_t)(i % 60) * S;
            choose_at(w->e, "win", w->index % 3, t);
            if (b == 1)
                reward_at(w->e, "win", w->index % 3 == 0 ? "a" : w->index % 3 == 1 ? "b" : "c",
                          3.0, t);
        }
    return NULL;
}

static void expect_window(mab_engine *e, int64_t first_s)
{
    /* Arm 0: threads 0 and 3; arms 1, 2: one thread each. */
    const double threads_of[3] = {2, 1, 1};
    double v[3];
    for (int b = 0; b < 3; b++) {
        window_field(e, b, 0, v);
        for (int a = 0; a < 3; a++)
            assert_true(v[a] == threads_of[a] * PER_BUCKET * (b + 1));
        window_field(e, b, 1, v);
        for (int a = 0; a < 3; a++)
            assert_true(v[a] == (b == 1 ? threads_of[a] * PER_BUCKET * 2 : 0));
        /* Rewards 3.0 in [1, 3] normalise to 1: sums equal the counts. */
        window_field(e, b, 2, v);
        for (int a = 0; a < 3; a++)
            assert_true(v[a] == (b == 1 ? threads_of[a] * PER_BUCKET * 2 : 0));
    }
    window_field(e, 0, 4, v);
    assert_true(v[0] == (double)first_s);
    window_field(e, 0, 5, v);
    assert_true(v[0] == 3);
    window_field(e, 0, 6, v);
    assert_true(v[0] == 60);
    window_field(e, 3, 0, v); /* past the window */
    assert_true(v[0] == -1);
}

static void test_window_from_four_threads(void **unused)
{
    (void)unused;
    char policy[] = WINDOW_POLICY(3);
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY_PLUGIN ", \"bucket_seconds\": 60, "
                                     "\"shared\": \"window\"},\n"
                                     " \"experiments\": {\"win\": {\"policy\": %s,\n"
                                     "  \"reward\": {\"min\": 1, \"max\": 3},\n"
                                     "  \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     policy),
                     0);
    mab_engine *e = open_ok();
    int64_t first = 120000 * S;
    worker w[THREADS];
    pthread_t t[THREADS];
    for (int k = 0; k < THREADS; k++) {
        w[k] = (worker){e, k, first};
        assert_int_equal(pthread_create(&t[k], NULL, work, &w[k]), 0);
    }
    for (int k = 0; k < THREADS; k++)
        pthread_join(t[k], NULL);
    /* The window ends at the clock's bucket: the third. */
    clock_ns = first + 2 * 60 * S + 5 * S;
    flush_ok(e); /* every thread's pending counts published (and written) */
    expect_window(e, 120000);
    /* Restart over the same store: the window is read back from it. */
    close_ok(e);
    e = open_ok();
    expect_window(e, 120000);
    /* A bucket later the window has moved on by one. */
    clock_ns += 60 * S;
    double v[3];
    window_field(e, 0, 0, v);
    assert_true(v[0] == 2 * PER_BUCKET * 2 && v[1] == PER_BUCKET * 2);
    window_field(e, 2, 0, v);
    assert_true(v[0] == 0 && v[1] == 0 && v[2] == 0);
    /* mab_history across the restart: 3 buckets of 3 arms. */
    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 9);
    expect_bucket(&h, 0, 120000, 0, 2 * PER_BUCKET, 0, 0.0);
    expect_bucket(&h, 4, 120060, 1, 2 * PER_BUCKET, 2 * PER_BUCKET, 6.0 * PER_BUCKET);
    expect_bucket(&h, 8, 120120, 2, 3 * PER_BUCKET, 0, 0.0);
    /* Reset forgets the buckets, in memory and in the store. */
    mab_error err = {0, ""};
    assert_int_equal(mab_reset(e, "win", &err), MAB_OK);
    h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 0);
    close_ok(e);
}

/* Retention: the store keeps the buckets of the last retention_seconds
   only, while the totals keep every event. */
static void test_retention_drops_old_buckets(void **unused)
{
    (void)unused;
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60, \"retention_seconds\": 180}");
    mab_engine *e = open_ok();
    int64_t base = 60000;
    for (int b = 0; b < 10; b++) {
        clock_ns = (base + 60 * b) * S + 7 * S;
        for (int i = 0; i <= b; i++)
            choose_at(e, "win", b % 3, 0);
        flush_ok(e);
    }
    /* now = base + 547 s: keep_from = base + 367: buckets base+420.. stay. */
    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 3);
    expect_bucket(&h, 0, base + 420, 7 % 3, 8, 0, 0.0);
    expect_bucket(&h, 1, base + 480, 8 % 3, 9, 0, 0.0);
    expect_bucket(&h, 2, base + 540, 9 % 3, 10, 0, 0.0);
    assert_int_equal(total_pulls(e, "win"), 55);
    close_ok(e);
}

/* A bucket increment storage refuses as invalid is dropped alone: the
   counters of the same batch and the other buckets are written. */
static void test_refused_bucket_dropped_alone(void **unused)
{
    (void)unused;
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60, \"refuse_bucket\": 6000}");
    mab_engine *e = open_ok();
    clock_ns = 6030 * S;
    choose_at(e, "win", 0, 5990 * S);
    choose_at(e, "win", 1, 6000 * S); /* refused bucket */
    choose_at(e, "win", 2, 6060 * S);
    flush_ok(e);
    mab_error why = {0, ""};
    assert_int_equal(mab_dropped_deltas(e, &why), 1);
    assert_non_null(strstr(why.message, "6000"));
    assert_non_null(strstr(why.message, "\"b\""));
    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 2);
    expect_bucket(&h, 0, 5940, 0, 1, 0, 0.0);
    expect_bucket(&h, 1, 6060, 2, 1, 0, 0.0);
    assert_int_equal(total_pulls(e, "win"), 3); /* the counters all went in */
    /* The window shows what the store holds. */
    clock_ns = 6060 * S;
    double v[3];
    window_field(e, 0, 0, v);
    assert_true(v[0] == 0 && v[1] == 0 && v[2] == 0);
    window_field(e, 1, 0, v);
    assert_true(v[0] == 0 && v[1] == 0 && v[2] == 1);
    close_ok(e);
}

/* A failed write keeps the bucket increments queued, offered again. */
static void test_failed_write_requeues_buckets(void **unused)
{
    (void)unused;
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60, \"fail_buckets\": 1}");
    mab_engine *e = open_ok();
    clock_ns = 6000 * S;
    choose_at(e, "win", 0, 6000 * S);
    choose_at(e, "win", 0, 6060 * S);
    mab_error err = {0, ""};
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    history h = read_history(e, "win", INT64_MIN); /* still queued: seen */
    assert_int_equal(h.n, 2);
    flush_ok(e);
    h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 2);
    expect_bucket(&h, 0, 6000, 0, 1, 0, 0.0);
    expect_bucket(&h, 1, 6060, 0, 1, 0, 0.0);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    close_ok(e);
}

/* A store without buckets (ABI 1.1): this process's buckets since open. */
static void test_store_without_buckets(void **unused)
{
    (void)unused;
    write_config(2, "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory_v11.so\", "
                    "\"bucket_seconds\": 60}");
    mab_engine *e = open_ok();
    clock_ns = 6000 * S;
    choose_at(e, "win", 1, 6000 * S);
    choose_at(e, "win", 1, 6060 * S);
    flush_ok(e);
    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 2);
    expect_bucket(&h, 0, 6000, 1, 1, 0, 0.0);
    expect_bucket(&h, 1, 6060, 1, 1, 0, 0.0);
    clock_ns = 6060 * S;
    double v[3];
    window_field(e, 0, 0, v);
    assert_true(v[1] == 1);
    window_field(e, 1, 0, v);
    assert_true(v[1] == 1);
    close_ok(e);
}

/* Over a store without buckets the ring starts at one bucket per arm and
   grows as buckets accumulate (core/buckets.c): every bucket a window
   spans is still in it, and mab_history sees every bucket the full ring
   (168) holds. The buckets are chosen so that each size meets a bucket of
   another residue in an entry it uses: 0 and 1 at size 1, 0 and 2 at 2, 0
   and 4 at 4, 0 and 8 at 8, 0 and 24 at 24, then buckets inside the window
   and before it, and one 168 before bucket 29 (the same entry at every
   size: the newer bucket stays, as at full size). */
static void test_ring_grows_keeping_buckets(void **unused)
{
    (void)unused;
    write_config(30, "{\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory_v11.so\", "
                     "\"bucket_seconds\": 60}");
    mab_engine *e = open_ok();
    const int64_t base = 600000; /* seconds: bucket number 10000 */
    const int ks[] = {0, 1, 2, 4, 8, 24, 29, 3, 13, -121, -139};
    const int n = (int)(sizeof ks / sizeof ks[0]);
    for (int i = 0; i < n; i++) {
        clock_ns = (base + 60 * ks[i]) * S;
        for (int j = 0; j <= i % 4; j++)
            choose_at(e, "win", (ks[i] + 300) % 3, (base + 60 * ks[i]) * S + j * S);
        flush_ok(e);
    }
    clock_ns = (base + 60 * 29) * S + S;
    double v[3];
    for (int b = 0; b < 30; b++) {
        double expected[3] = {0, 0, 0};
        for (int i = 0; i < n; i++)
            if (ks[i] == b)
                expected[(ks[i] + 300) % 3] = i % 4 + 1;
        window_field(e, b, 0, v);
        for (int a = 0; a < 3; a++)
            if (v[a] != expected[a])
                fail_msg("window bucket %d arm %d: %g pulls, expected %g", b, a, v[a],
                         expected[a]);
    }
    history h = read_history(e, "win", INT64_MIN);
    const int in_order[] = {-121, 0, 1, 2, 3, 4, 8, 13, 24, 29};
    assert_int_equal(h.n, 10);
    for (int i = 0; i < 10; i++) {
        int at = 0;
        while (ks[at] != in_order[i])
            at++;
        expect_bucket(&h, (size_t)i, base + 60 * in_order[i], (size_t)((in_order[i] + 300) % 3),
                      (uint64_t)(at % 4 + 1), 0, 0.0);
    }
    close_ok(e);
}

/* A thread's own events, not yet published (fewer than the publish
   threshold), are in its window, in the bucket of their time; an event of
   a later bucket publishes the earlier ones into the ring first. */
static void test_window_sees_own_pending(void **unused)
{
    (void)unused;
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60}");
    mab_engine *e = open_ok();
    clock_ns = 6060 * S;
    choose_at(e, "win", 2, 6000 * S);
    choose_at(e, "win", 2, 6010 * S);
    choose_at(e, "win", 1, 6061 * S);
    double v[3];
    window_field(e, 0, 0, v);
    assert_true(v[0] == 0 && v[1] == 0 && v[2] == 2);
    window_field(e, 1, 0, v);
    assert_true(v[0] == 0 && v[1] == 1 && v[2] == 0);
    close_ok(e);
}

/* sw_ucb over the engine: its window is the last "window" seconds; arms
   without pulls there come first, whatever the totals hold. */
static void test_sw_ucb_forgets_old_buckets(void **unused)
{
    (void)unused;
    assert_int_equal(test_write_file(config,
                                     "{\"seed\": 1, \"storage\": {" MEMORY_PLUGIN
                                     ", \"bucket_seconds\": 60},\n"
                                     " \"experiments\": {\"sw\": {\"policy\": {\"plugin\": "
                                     "\"%s/sw_ucb.so\", \"window\": 120},\n"
                                     "  \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                                     MAB_PLUGIN_DIR),
                     0);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    clock_ns = 6000 * S;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (int i = 0; i < 30; i++) { /* every arm tried, then b rewarded most */
        assert_int_equal(mab_choose(e, "sw", &c, &err), MAB_OK);
        if (strcmp(c.arm_id, "b") == 0)
            assert_int_equal(mab_reward(e, "sw", "b", 1.0, &err), MAB_OK);
    }
    double p[3];
    int kind = 0;
    assert_int_equal(mab_explain(e, "sw", NULL, p, 3, &kind, &err), MAB_OK);
    assert_int_equal(kind, MAB_EXPLAIN_PROBABILITIES);
    assert_true(p[1] == 1.0);
    /* Two buckets later nothing is in the 2-bucket window: all untried. */
    clock_ns = 6120 * S;
    assert_int_equal(mab_explain(e, "sw", NULL, p, 3, &kind, &err), MAB_OK);
    for (int a = 0; a < 3; a++)
        assert_true(fabs(p[a] - 1.0 / 3) < 1e-12);
    close_ok(e);
    /* A window longer than the retention is refused, naming both. */
    assert_int_equal(test_write_file(config,
                                     "{\"storage\": {" MEMORY_PLUGIN
                                     ", \"bucket_seconds\": 60, \"retention_seconds\": 600},\n"
                                     " \"experiments\": {\"sw\": {\"policy\": {\"plugin\": "
                                     "\"%s/sw_ucb.so\", \"window\": 601},\n"
                                     "  \"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                                     MAB_PLUGIN_DIR),
                     0);
    open_refused(MAB_ECONFIG, (const char *[]){"experiments.sw.policy", "11 time buckets",
                                               "storage.retention_seconds 600", NULL});
}

/* A restart over a real store (json_file, storage ABI 1.5) keeps the
   history and the windows; so does lmdb when built. */
static void restart_keeps_history(const char *storage_json)
{
    write_config(3, storage_json);
    mab_engine *e = open_ok();
    clock_ns = 9000 * S;
    for (int b = 0; b < 3; b++)
        for (int i = 0; i <= b; i++) {
            choose_at(e, "win", b, (9000 + 60 * b) * S);
            reward_at(e, "win", b == 0 ? "a" : b == 1 ? "b" : "c", 0.5, (9000 + 60 * b) * S);
        }
    close_ok(e);
    e = open_ok();
    clock_ns = 9120 * S;
    history h = read_history(e, "win", INT64_MIN);
    assert_int_equal(h.n, 3);
    for (int b = 0; b < 3; b++)
        expect_bucket(&h, (size_t)b, 9000 + 60 * b, (size_t)b, (uint64_t)b + 1, (uint64_t)b + 1,
                      0.5 * (b + 1));
    double v[3];
    for (int b = 0; b < 3; b++) {
        window_field(e, b, 0, v);
        for (int a = 0; a < 3; a++)
            assert_true(v[a] == (a == b ? b + 1 : 0));
    }
    assert_int_equal(total_pulls(e, "win"), 6);
    close_ok(e);
}

static void test_restart_keeps_history_json_file(void **unused)
{
    (void)unused;
    char storage[600];
    snprintf(storage, sizeof storage,
             "{\"plugin\": \"%s/json_file.so\", \"path\": \"%s/state.json\", "
             "\"bucket_seconds\": 60}",
             MAB_PLUGIN_DIR, dir);
    restart_keeps_history(storage);
}

#ifdef MAB_TEST_LMDB
static void test_restart_keeps_history_lmdb(void **unused)
{
    (void)unused;
    char storage[600];
    snprintf(storage, sizeof storage,
             "{\"plugin\": \"%s/lmdb.so\", \"path\": \"%s/lmdb\", \"bucket_seconds\": 60}",
             MAB_PLUGIN_DIR, dir);
    restart_keeps_history(storage);
}
#endif

/* ---- many experiments: each pull once, across flushes ------------------ */

#define MANY 1000       /* experiments of 3 arms: a queue of thousands of arms */
#define MANY_OPS 30000  /* chooses and rewards on a random experiment each */

/* Pulls and rewards of experiment x, bucket b (0..2), arm a, as made. */
static uint32_t many_pulls[MANY][3][3], many_rewards[MANY][3][3];

static int many_collect(void *ctx, size_t arm_index, const char *arm_id,
                        const mab_bucket_stats *b)
{
    (void)arm_id;
    uint64_t (*seen)[3][2] = ctx;
    int64_t k = (b->start - 12000) / 60;
    if (k < 0 || k > 2 || arm_index > 2) {
        print_error("a bucket no pull was made in: start %lld arm %zu\n", (long long)b->start,
                    arm_index);
        fail();
    }
    seen[k][arm_index][0] += b->pulls;
    seen[k][arm_index][1] += b->rewards;
    return 0;
}

/* A choice on a random one of many experiments lands in its bucket exactly
   once, whichever flush it falls before, and so does a reward: the bucket
   queue holds thousands of (arm, bucket) entries, mostly of one bucket,
   some of the other two (each bucket move publishes the slot), and is taken
   by a flush every few thousand operations. Read back from the store after
   a restart, every bucket of every arm holds what was made, no more (an
   entry added twice, or left in the queue's hash after a take) and no less
   (an increment added to an entry the take had already handed over). */
static void test_many_experiments_each_pull_once(void **unused)
{
    (void)unused;
    size_t size = 200 + (size_t)MANY * 200;
    char *text = malloc(size);
    assert_non_null(text);
    int at = snprintf(text, size,
                      "{\"seed\": 5, \"storage\": {\"plugin\": \"%s/json_file.so\", "
                      "\"path\": \"%s/many.json\", \"bucket_seconds\": 60, "
                      "\"sync\": {\"interval_ms\": 3600000}},\n \"experiments\": {\n",
                      MAB_PLUGIN_DIR, dir);
    for (int x = 0; x < MANY; x++)
        at += snprintf(text + at, size - (size_t)at,
                       "  \"m%d\": {\"policy\": {\"plugin\": \"%s/epsilon_greedy.so\"}, "
                       "\"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}%s\n",
                       x, MAB_PLUGIN_DIR, x + 1 < MANY ? "," : "");
    snprintf(text + at, size - (size_t)at, " }}\n");
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
    memset(many_pulls, 0, sizeof many_pulls);
    memset(many_rewards, 0, sizeof many_rewards);

    mab_engine *e = open_ok();
    uint64_t r = 0x853c49e6748fea9bULL;
    mab_error err = {0, ""};
    for (int op = 0; op < MANY_OPS; op++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int x = (int)(r % MANY);
        int b = (r >> 20) % 8 == 0 ? (int)((r >> 24) % 3) : 1; /* mostly bucket 1 */
        int64_t t = (12000 + 60 * b) * S + (int64_t)((r >> 32) % 60) * S;
        char id[16];
        snprintf(id, sizeof id, "m%d", x);
        clock_ns = t;
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        int rc = mab_choose(e, id, &c, &err);
        if (rc)
            print_error("mab_choose %s: %s\n", id, err.message);
        assert_int_equal(rc, MAB_OK);
        many_pulls[x][b][c.arm_index]++;
        if ((r >> 40) % 3 == 0) {
            reward_at(e, id, c.arm_id, 1.0, t);
            many_rewards[x][b][c.arm_index]++;
        }
        if ((r >> 48) % 2500 == 0) /* a flush every ~2,500 operations */
            flush_ok(e);
    }
    close_ok(e);

    e = open_ok();
    uint64_t made = 0, found = 0;
    for (int x = 0; x < MANY; x++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", x);
        uint64_t seen[3][3][2];
        memset(seen, 0, sizeof seen);
        int rc = mab_history(e, id, INT64_MIN, many_collect, seen, &err);
        if (rc)
            print_error("mab_history %s: %s\n", id, err.message);
        assert_int_equal(rc, MAB_OK);
        for (int b = 0; b < 3; b++)
            for (int a = 0; a < 3; a++) {
                if (seen[b][a][0] != many_pulls[x][b][a] ||
                    seen[b][a][1] != many_rewards[x][b][a])
                    print_error("%s bucket %d arm %d: %llu pulls %llu rewards stored, %u and "
                                "%u made\n",
                                id, 12000 + 60 * b, a, (unsigned long long)seen[b][a][0],
                                (unsigned long long)seen[b][a][1], many_pulls[x][b][a],
                                many_rewards[x][b][a]);
                assert_int_equal(seen[b][a][0], many_pulls[x][b][a]);
                assert_int_equal(seen[b][a][1], many_rewards[x][b][a]);
                made += many_pulls[x][b][a];
                found += seen[b][a][0];
            }
        mab_arm_stats st[3];
        st[0].struct_size = sizeof st[0];
        size_t n = 0;
        assert_int_equal(mab_stats(e, id, st, 3, &n, &err), MAB_OK);
        for (int a = 0; a < 3; a++)
            assert_int_equal(st[a].pulls,
                             many_pulls[x][0][a] + many_pulls[x][1][a] + many_pulls[x][2][a]);
    }
    assert_int_equal(made, MANY_OPS);
    assert_int_equal(found, MANY_OPS);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    close_ok(e);
}

static void test_config_errors(void **unused)
{
    (void)unused;
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 0}");
    open_refused(MAB_ECONFIG, (const char *[]){"storage.bucket_seconds", "[1, 604800]", NULL});
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": \"60\"}");
    open_refused(MAB_ECONFIG, (const char *[]){"storage.bucket_seconds", NULL});
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60.5}");
    open_refused(MAB_ECONFIG, (const char *[]){"storage.bucket_seconds", NULL});
    write_config(2, "{" MEMORY_PLUGIN ", \"retention_seconds\": 600}");
    open_refused(MAB_ECONFIG, (const char *[]){"storage.retention_seconds", "shorter than one bucket",
                                               "3600", NULL});
    /* 4 buckets of 60 s do not fit in 180 s: both named. */
    write_config(4, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60, \"retention_seconds\": 180}");
    open_refused(MAB_ECONFIG, (const char *[]){"experiments.win.policy", "4 time buckets", "240 s",
                                               "storage.retention_seconds 180", NULL});
    /* Exactly the retention is fine. */
    write_config(3, "{" MEMORY_PLUGIN ", \"bucket_seconds\": 60, \"retention_seconds\": 180}");
    mab_engine *e = open_ok();
    close_ok(e);
    /* Still an unknown key is an error (the core's keys are its own). */
    write_config(2, "{" MEMORY_PLUGIN ", \"bucket_second\": 60}");
    open_refused(MAB_ECONFIG, (const char *[]){"bucket_second", NULL});
}

static int setup(void **unused)
{
    (void)unused;
    fixture_dir_make("buckets");
    fixture_clock = test_clock;
    clock_ns = 1000 * S;
    return 0;
}

static int teardown(void **unused)
{
    (void)unused;
    fixture_dir_remove();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counts_land_in_their_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_from_four_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_drops_old_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_bucket_dropped_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_requeues_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_without_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_grows_keeping_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_sees_own_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sw_ucb_forgets_old_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_history_json_file, setup, teardown),
#ifdef MAB_TEST_LMDB
        cmocka_unit_test_setup_teardown(test_restart_keeps_history_lmdb, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(test_many_experiments_each_pull_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
