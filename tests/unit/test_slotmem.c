/*
 * test_slotmem.c - a thread's slot holds what it did since its last publish
 * (issue 18): its memory does not grow with the arms of the config, out of
 * memory taking an experiment's row fails the operation and changes
 * nothing, and counts stay exact over many rows and publishes.
 *
 * Out of memory is injected by fail_realloc.h. A slot's rows and dirty
 * list grow by realloc; the policies' scratch (thompson's draws) is
 * malloc'd, so a failure is the row's rather than the policy's.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

/* ---- allocation failure -------------------------------------------------- */

#include "fail_realloc.h"

/* ---- configs ------------------------------------------------------------- */

/* n experiments "e0".."e{n-1}" of `arms` arms with policy; storage: memory. */
static void write_many(size_t n, size_t arms, const char *policy)
{
    size_t cap = 256 + n * (64 + arms * 16) + strlen(policy) * n;
    char *text = malloc(cap), *p = text;
    assert_non_null(text);
    p += sprintf(p,
                 "{\"seed\": 3, \"plugin_path\": [\"%s\"], \"storage\": {\"plugin\": "
                 "\"%s/storage_memory.so\"}, \"experiments\": {",
                 MAB_PLUGIN_DIR, MAB_FIXTURE_DIR);
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "%s\"e%zu\": {\"policy\": %s, \"arms\": {", i ? ", " : "", i, policy);
        for (size_t a = 0; a < arms; a++)
            p += sprintf(p, "%s\"a%zu\": %zu", a ? ", " : "", a, a);
        p += sprintf(p, "}}");
    }
    sprintf(p, "}}\n");
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
}

static void arm_totals(mab_engine *e, const char *id, size_t n, uint64_t *pulls,
                       uint64_t *rewards, double *sum)
{
    mab_arm_stats st[2048] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t got = 0;
    mab_error err = {0, ""};
    assert_true(n <= 2048);
    assert_int_equal(mab_stats(e, id, st, n, &got, &err), MAB_OK);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        pulls[i] = st[i].pulls;
        if (rewards)
            rewards[i] = st[i].rewards;
        if (sum)
            sum[i] = st[i].reward_sum;
    }
}

static uint64_t sum_pulls(mab_engine *e, const char *id, size_t n)
{
    uint64_t pulls[2048], total = 0;
    arm_totals(e, id, n, pulls, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        total += pulls[i];
    return total;
}

/* ---- out of memory taking a row ------------------------------------------ */

#define BIG 1000 /* arms: a few such rows outgrow a slot's first arena */
#define N_BIG 8

/* The context of fails_cleanly's rewards: NULL (mab_reward), or one for a
   policy with an event (reward_event's two paths: core/engine.c). */
static const mab_context *reward_ctx;

/* With every allocation failing, choose on e1, e2, ... (each a new row)
   until one fails: MAB_ENOMEM naming it, and nothing of it counted (its
   arms, its sample-ratio ledger), while the choices before it count.
   Then the same with rewards on the experiments after it. */
static void fails_cleanly(const char *policy, int srm)
{
    write_many(N_BIG, BIG, policy);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    assert_int_equal(mab_choose(e, "e0", &c, &err), MAB_OK); /* the slot's first use */
    uint64_t expected_pulls[N_BIG] = {1};
    char id[16];

    int k = 1, rc = MAB_OK;
    failing = 1;
    failed = 0;
    for (; k < N_BIG; k++) {
        snprintf(id, sizeof id, "e%d", k);
        if ((rc = mab_choose(e, id, &c, &err)) != MAB_OK)
            break;
        expected_pulls[k] = 1;
    }
    unsigned long failures = failed;
    failing = 0;
    assert_true(k < N_BIG);
    assert_int_equal(rc, MAB_ENOMEM);
    assert_true(failures > 0);
    char named[32];
    snprintf(named, sizeof named, "experiments.e%d:", k);
    assert_non_null(strstr(err.message, named));
    assert_non_null(strstr(err.message, "nothing was recorded"));
    int choose_failed = k;

    /* A reward on an experiment without a row fails the same way. */
    int j = k + 1;
    failing = 1;
    for (rc = MAB_OK; j < N_BIG; j++) {
        snprintf(id, sizeof id, "e%d", j);
        if ((rc = mab_reward_ctx(e, id, "a7", 1.0, reward_ctx, &err)) != MAB_OK)
            break;
    }
    failing = 0;
    assert_true(j < N_BIG);
    int reward_failed = j;
    assert_int_equal(rc, MAB_ENOMEM);
    assert_non_null(strstr(err.message, "was not recorded"));

    uint64_t pulls[BIG], rewards[BIG];
    for (int x = 0; x < N_BIG; x++) {
        snprintf(id, sizeof id, "e%d", x);
        arm_totals(e, id, BIG, pulls, rewards, NULL);
        uint64_t total = 0, rewarded = 0;
        for (size_t i = 0; i < BIG; i++) {
            total += pulls[i];
            rewarded += rewards[i];
        }
        assert_int_equal(total, expected_pulls[x]);
        assert_int_equal(rewarded, x > choose_failed && x < reward_failed ? 1 : 0);
        if (srm) {
            char ledger[24];
            snprintf(ledger, sizeof ledger, "%s@srm", id);
            assert_int_equal(sum_pulls(e, ledger, BIG), expected_pulls[x]);
        }
    }

    /* Memory back: the failed calls succeed and count once. */
    snprintf(id, sizeof id, "e%d", choose_failed);
    assert_int_equal(mab_choose(e, id, &c, &err), MAB_OK);
    assert_int_equal(sum_pulls(e, id, BIG), 1);
    snprintf(id, sizeof id, "e%d", reward_failed);
    assert_int_equal(mab_reward_ctx(e, id, "a7", 1.0, reward_ctx, &err), MAB_OK);
    arm_totals(e, id, BIG, pulls, rewards, NULL);
    assert_int_equal(rewards[7], 1);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

static void test_choose_out_of_memory_abi1(void **unused)
{
    (void)unused;
    fails_cleanly("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_pulls_v1.so\"}", 0);
}

static void test_choose_out_of_memory_abi2(void **unused)
{
    (void)unused;
    /* Statistics in the row and the sample-ratio ledger's row. */
    fails_cleanly("{\"plugin\": \"thompson\"}", 1);
}

/* A policy with an event: its rewards without a context and with one fail
   the same way, the policy's statistics with them (policy_event's). */
static void test_reward_out_of_memory_event(void **unused)
{
    (void)unused;
    reward_ctx = NULL;
    fails_cleanly("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_event.so\"}", 0);
}

static void test_reward_out_of_memory_event_ctx(void **unused)
{
    (void)unused;
    static const mab_context half = {sizeof half, NULL, NULL, 0, 0, 0.5, 0, 0};
    reward_ctx = &half;
    fails_cleanly("{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_event.so\"}", 0);
    reward_ctx = NULL;
}

/* ---- memory that does not grow with the config --------------------------- */

#define MANY 20000
#define ARMS 10

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

struct chooser {
    mab_engine *e;
    size_t grew; /* heap growth over this thread's first choose */
    int failures;
};

static pthread_mutex_t one_at_a_time = PTHREAD_MUTEX_INITIALIZER;

static void *choose_once(void *arg)
{
    struct chooser *c = arg;
    mab_choice ch = MAB_STRUCT_INIT(mab_choice);
    mab_error err;
    /* One thread at a time, so that the growth measured is this one's. */
    pthread_mutex_lock(&one_at_a_time);
    size_t before = heap_in_use();
    c->failures += mab_choose(c->e, "e17", &ch, &err) != MAB_OK;
    c->grew = heap_in_use() - before;
    pthread_mutex_unlock(&one_at_a_time);
    return NULL;
}

/* A thread's first choice sets its slot up: 4 bytes per experiment and rows
   for what it holds, where the dense totals took 36 bytes per arm and the
   statistics 8 per statistic (2 x 200,000 arms here, with the ledgers:
   about 17 MB a thread). Bounded at 1 MB: 2 x 20,000 x 4 bytes is 160 kB. */
static void test_slot_memory_not_per_arm(void **unused)
{
    (void)unused;
    write_many(MANY, ARMS, "{\"plugin\": \"thompson\"}");
    mab_engine *e = open_ok();
    enum { THREADS = 4 };
    struct chooser c[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (struct chooser){e, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, choose_once, &c[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].failures, 0);
        if (c[i].grew > (size_t)1 << 20)
            fail_msg("thread %d's first choose grew the heap by %zu bytes", i, c[i].grew);
    }
    assert_int_equal(sum_pulls(e, "e17", ARMS), THREADS);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* Without storage each experiment keeps a ring of its recent buckets
   (core/buckets.c): one whose events all fall in one bucket holds one
   bucket per arm, where the full ring (168 of 40 bytes per arm, the
   sample-ratio ledger's too) took 2 x 1,000 x 3 x 6,720 bytes = 40 MB
   here. Bounded at 4 MB (with the slot's rows and the engine's queues). */
static int count_pulls(void *ctx, size_t arm_index, const char *arm_id,
                       const mab_bucket_stats *b)
{
    (void)arm_index;
    (void)arm_id;
    *(uint64_t *)ctx += b->pulls;
    return 0;
}

static void test_ring_memory_tracks_use(void **unused)
{
    (void)unused;
    write_many(1000, 3, "{\"plugin\": \"epsilon_greedy\"}");
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    if (mab_open_ex(config, &opts, &e, &err) != MAB_OK)
        fail_msg("mab_open: %s", err.message);
    size_t before = heap_in_use();
    for (int round = 0; round < 3; round++)
        for (int x = 0; x < 1000; x++) {
            char id[16];
            snprintf(id, sizeof id, "e%d", x);
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, id, &c, &err), MAB_OK);
        }
    assert_int_equal(mab_flush(e, &err), MAB_OK); /* every pull in its ring */
    size_t grew = heap_in_use() - before;
    if (grew > (size_t)4 << 20)
        fail_msg("3,000 chooses in one bucket grew the heap by %zu bytes", grew);
    assert_int_equal(sum_pulls(e, "e999", 3), 3);
    uint64_t in_ring = 0; /* the rings hold the pulls: history reads them */
    assert_int_equal(mab_history(e, "e999", INT64_MIN, count_pulls, &in_ring, &err), MAB_OK);
    assert_int_equal(in_ring, 3);
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

/* ---- exact over many rows and publishes ----------------------------------- */

/* 300 experiments (more rows than a slot's first dirty list and arena
   hold), each chosen and rewarded in turn from 2 threads, over many
   publishes: every count lands once, in its experiment, its arm. */
struct worker {
    mab_engine *e;
    int id;
    uint64_t pulls[300][4], rewards[300][4];
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    mab_error err;
    for (int round = 0; round < 20; round++)
        for (int x = 0; x < 300; x++) {
            int k = (x * 7 + round * 3 + w->id) % 300;
            char id[16];
            snprintf(id, sizeof id, "e%d", k);
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            if (mab_choose(w->e, id, &c, &err) != MAB_OK) {
                w->failures++;
                continue;
            }
            w->pulls[k][c.arm_index]++;
            if ((round + x) % 3 == 0) {
                char arm[8];
                snprintf(arm, sizeof arm, "a%zu", c.arm_index);
                if (mab_reward(w->e, id, arm, 1.0, &err) != MAB_OK)
                    w->failures++;
                else
                    w->rewards[k][c.arm_index]++;
            }
        }
    return NULL;
}

static void test_counts_exact_over_rows(void **unused)
{
    (void)unused;
    write_many(300, 4, "{\"plugin\": \"thompson\"}");
    mab_engine *e = open_ok();
    static struct worker w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].e = e;
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    for (int x = 0; x < 300; x++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", x);
        uint64_t pulls[4], rewards[4];
        double sum[4];
        arm_totals(e, id, 4, pulls, rewards, sum);
        for (int a = 0; a < 4; a++) {
            assert_int_equal(pulls[a], w[0].pulls[x][a] + w[1].pulls[x][a]);
            assert_int_equal(rewards[a], w[0].rewards[x][a] + w[1].rewards[x][a]);
            assert_true(sum[a] == (double)rewards[a]);
        }
        /* Its sample-ratio ledger's row moved with it: one pull a choice. */
        char srm[24];
        snprintf(srm, sizeof srm, "%s@srm", id);
        uint64_t chosen = 0;
        for (int a = 0; a < 4; a++)
            chosen += pulls[a];
        assert_int_equal(sum_pulls(e, srm, 4), chosen);
    }
    assert_int_equal(mab_close(e, NULL), MAB_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_out_of_memory_abi1),
        cmocka_unit_test(test_choose_out_of_memory_abi2),
        cmocka_unit_test(test_reward_out_of_memory_event),
        cmocka_unit_test(test_reward_out_of_memory_event_ctx),
        cmocka_unit_test(test_slot_memory_not_per_arm),
        cmocka_unit_test(test_ring_memory_tracks_use),
        cmocka_unit_test(test_counts_exact_over_rows),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
