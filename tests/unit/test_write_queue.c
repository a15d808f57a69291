/*
 * test_write_queue.c - the write-behind queue takes only the arms published
 * since the last take (core/write_behind.c, "the arms queue"), and that
 * must lose no increment and write none twice:
 *  - many threads choose and reward on many experiments (policies with and
 *    without statistics) while another thread flushes, over a store that
 *    fails every third write; then the store holds exactly what was sent,
 *    counters and policy statistics, arm by arm (under sync "always" too);
 *  - an arm whose increment a failed write gave back is in the next batch,
 *    with nothing else published meanwhile (counters and statistics);
 *  - a read of one experiment (mab_stats, mab_policy_stats, mab_rules)
 *    gathers that experiment's pending totals from every thread's slot,
 *    not only the reader's (core/write_behind.c, mab__gather_experiment);
 *  - a reset of an experiment whose arms are listed forgets their unapplied
 *    totals; a refresh adds this process's unapplied totals (the queue's)
 *    to what it reads, with and without changed().
 * Over the memory fixture with "shared" (a reopen reads what was stored).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

static int round_no;

static int each(void **state)
{
    (void)state;
    fixture_dir_make("write_queue");
    round_no++;
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#define N_EXP 48
#define N_ARMS 3
#define N_THREADS 4
#define OPS 6000

/* Experiment i: "x<i>", policy_stats (statistics) when i is even, else
   uniform (none); the memory store of this round with `storage_extra`. */
static void write_config(const char *sync, const char *storage_extra)
{
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len,
                            "{\"seed\": 11, \"plugin_path\": [\"%s\"],\n"
                            " \"storage\": {\"plugin\": \"" MAB_FIXTURE_DIR
                            "/storage_memory.so\", \"shared\": \"wq%d\", \"sync\": %s%s},\n"
                            " \"experiments\": {\n",
                            MAB_PLUGIN_DIR, round_no, sync, storage_extra);
    for (int i = 0; i < N_EXP; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "  \"x%d\": {\"policy\": {\"plugin\": \"" MAB_FIXTURE_DIR
                                "/%s.so\"}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}%s\n",
                                i, i % 2 ? "policy_uniform" : "policy_stats",
                                i + 1 < N_EXP ? "," : "");
    len += (size_t)snprintf(text + len, cap - len, "}}\n");
    assert_true(len < cap);
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
}

static int arm_index(const char *id)
{
    return id[0] - 'a';
}

/* What was sent, per experiment and arm: pulls (counted choices), rewards
   (all of value 1, so sums are counts), and the events of the experiment. */
typedef struct sent {
    uint64_t pulls[N_EXP][N_ARMS];
    uint64_t rewards[N_EXP][N_ARMS];
} sent;

typedef struct worker {
    mab_engine *e;
    unsigned seed;
    sent counts;
    int errors;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int k = 0; k < OPS; k++) {
        int x = (int)(rand_r(&w->seed) % N_EXP);
        char id[16];
        snprintf(id, sizeof id, "x%d", x);
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        mab_error err = {0, ""};
        if (mab_choose(w->e, id, &c, &err) != MAB_OK) {
            w->errors++;
            continue;
        }
        int a = arm_index(c.arm_id);
        w->counts.pulls[x][a]++;
        if (rand_r(&w->seed) % 2 == 0) {
            int rc = mab_reward(w->e, id, c.arm_id, 1.0, &err);
            /* A failed write under sync "always" leaves the reward queued
               (MAB_ESTORAGE): it is sent all the same. */
            if (rc == MAB_OK || rc == MAB_ESTORAGE)
                w->counts.rewards[x][a]++;
            else
                w->errors++;
        }
    }
    return NULL;
}

typedef struct flusher {
    mab_engine *e;
    _Atomic int stop;
    int flushes, failures;
} flusher;

static void *flush_loop(void *arg)
{
    flusher *f = arg;
    while (!atomic_load(&f->stop)) {
        mab_error err = {0, ""};
        int rc = mab_flush(f->e, &err);
        f->flushes++;
        f->failures += rc != MAB_OK;
        /* A read of one experiment between flushes (gathers every slot's). */
        mab_arm_stats st[N_ARMS];
        st[0].struct_size = sizeof st[0];
        size_t n = 0;
        (void)mab_stats(f->e, "x0", st, N_ARMS, &n, NULL);
    }
    return NULL;
}

/* Everything sent was stored once: a reopen over the store (no faults)
   reads every arm's totals and statistics equal to the sums of the
   workers' counts. */
static void check_stored(const char *sync, const worker *w)
{
    write_config(sync, "");
    mab_engine *e = open_ok();
    uint64_t total = 0;
    for (int x = 0; x < N_EXP; x++) {
        char id[16];
        snprintf(id, sizeof id, "x%d", x);
        mab_arm_stats st[N_ARMS];
        stats_ok(e, id, st, N_ARMS);
        uint64_t events = 0;
        double arm_stats[2 * N_ARMS], experiment_stats[1];
        mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
        if (x % 2 == 0)
            assert_int_equal(mab_policy_stats(e, id, &info, arm_stats, 2 * N_ARMS,
                                              experiment_stats, 1, NULL),
                             MAB_OK);
        for (int a = 0; a < N_ARMS; a++) {
            uint64_t pulls = 0, rewards = 0;
            for (int t = 0; t < N_THREADS; t++) {
                pulls += w[t].counts.pulls[x][a];
                rewards += w[t].counts.rewards[x][a];
            }
            if (st[a].pulls != pulls || st[a].rewards != rewards)
                print_error("x%d arm %d: stored %llu pulls %llu rewards, sent %llu and %llu\n",
                            x, a, (unsigned long long)st[a].pulls,
                            (unsigned long long)st[a].rewards, (unsigned long long)pulls,
                            (unsigned long long)rewards);
            assert_int_equal(st[a].pulls, pulls);
            assert_int_equal(st[a].rewards, rewards);
            assert_true(st[a].reward_sum == (double)rewards);
            if (x % 2 == 0) {
                assert_true(arm_stats[2 * a] == (double)pulls);
                assert_true(arm_stats[2 * a + 1] == (double)rewards);
            }
            events += pulls + rewards;
            total += pulls;
        }
        if (x % 2 == 0)
            assert_true(experiment_stats[0] == (double)events);
    }
    assert_true(total > 0);
    mab_error err = {0, ""};
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static void run_stress(const char *sync)
{
    write_config(sync, ", \"fail_every\": 3");
    mab_engine *e = open_ok();
    static worker w[N_THREADS];
    memset(w, 0, sizeof w);
    pthread_t t[N_THREADS], ft;
    flusher f = {e, 0, 0, 0};
    assert_int_equal(pthread_create(&ft, NULL, flush_loop, &f), 0);
    for (int i = 0; i < N_THREADS; i++) {
        w[i].e = e;
        w[i].seed = 1000u + (unsigned)i;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].errors, 0);
    }
    atomic_store(&f.stop, 1);
    assert_int_equal(pthread_join(ft, NULL), 0);
    /* Three more writes of one reward each: one of them fails whatever the
       threads' timing was (every third write call does). */
    mab_error err = {0, ""};
    for (int k = 0; k < 3; k++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "x2", &c, NULL), MAB_OK);
        int reward_rc = mab_reward(e, "x2", c.arm_id, 1.0, NULL);
        assert_true(reward_rc == MAB_OK || reward_rc == MAB_ESTORAGE);
        w[0].counts.pulls[2][arm_index(c.arm_id)]++;
        w[0].counts.rewards[2][arm_index(c.arm_id)]++;
        (void)mab_flush(e, &err);
    }
    /* The store failed some writes, and everything was offered again. */
    int rc = MAB_ESTORAGE;
    for (int tries = 0; tries < 10 && rc != MAB_OK; tries++)
        rc = mab_flush(e, &err);
    if (rc != MAB_OK)
        print_error("mab_flush: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    assert_true(f.flushes > 0);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    assert_true(mab_storage_errors(e) > 0);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    check_stored(sync, w);
}

static void test_stress_interval(void **state)
{
    (void)state;
    run_stress("{\"interval_ms\": 1}");
}

static void test_stress_always(void **state)
{
    (void)state;
    run_stress("\"always\"");
}

/* One choice and one reward on x0 (statistics) and x1 (none); the first
   write fails; the second, with nothing published since, must hold them. */
static void test_requeued_in_next_batch(void **state)
{
    (void)state;
    /* The memory store keeps buckets: a write is one apply_buckets. */
    write_config("{\"interval_ms\": 86400000}", ", \"fail_buckets\": 1");
    mab_engine *e = open_ok();
    worker w[N_THREADS];
    memset(w, 0, sizeof w);
    for (int x = 0; x < 2; x++) {
        char id[16];
        snprintf(id, sizeof id, "x%d", x);
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, id, &c, NULL), MAB_OK);
        assert_int_equal(mab_reward(e, id, c.arm_id, 1.0, NULL), MAB_OK);
        w[0].counts.pulls[x][arm_index(c.arm_id)]++;
        w[0].counts.rewards[x][arm_index(c.arm_id)]++;
    }
    mab_error err = {0, ""};
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    /* (Close writes only what is listed too: what the second flush missed
       would stay missing.) */
    assert_int_equal(mab_close(e, &err), MAB_OK);
    check_stored("{\"interval_ms\": 86400000}", w);
}

/* A thread that chooses a few times on x0 and x1 (fewer than a slot
   publishes at) and keeps them pending in its slot until told to end. */
typedef struct holder {
    mab_engine *e;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int chosen, end;
    uint64_t pulls[N_ARMS];
} holder;

static void *hold(void *arg)
{
    holder *h = arg;
    for (int k = 0; k < 10; k++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(h->e, "x0", &c, NULL), MAB_OK);
        h->pulls[arm_index(c.arm_id)]++;
        assert_int_equal(mab_choose(h->e, "x1", &c, NULL), MAB_OK);
    }
    pthread_mutex_lock(&h->mu);
    h->chosen = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->end)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* A read of x0 from this thread sees another thread's pending choices of
   x0 (its slot's, gathered for the read), totals and statistics. */
static void test_read_gathers_other_slots(void **state)
{
    (void)state;
    write_config("{\"interval_ms\": 86400000}", "");
    mab_engine *e = open_ok();
    holder h = {e, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hold, &h), 0);
    pthread_mutex_lock(&h.mu);
    while (!h.chosen)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    mab_arm_stats st[N_ARMS];
    for (int a = 0; a < N_ARMS; a++)
        st[a].struct_size = sizeof st[a];
    size_t n = 0;
    assert_int_equal(mab_stats(e, "x0", st, N_ARMS, &n, NULL), MAB_OK);
    double arm_stats[2 * N_ARMS], experiment_stats[1];
    mab_policy_stats_info info = {sizeof info, NULL, 0, 0};
    assert_int_equal(
        mab_policy_stats(e, "x0", &info, arm_stats, 2 * N_ARMS, experiment_stats, 1, NULL),
        MAB_OK);
    uint64_t total = 0;
    for (int a = 0; a < N_ARMS; a++) {
        assert_int_equal(st[a].pulls, h.pulls[a]);
        assert_true(arm_stats[2 * a] == (double)h.pulls[a]);
        total += h.pulls[a];
    }
    assert_int_equal(total, 10);
    assert_true(experiment_stats[0] == 10.0);
    /* And x1's, read the same way. */
    assert_int_equal(mab_stats(e, "x1", st, N_ARMS, &n, NULL), MAB_OK);
    assert_int_equal(st[0].pulls + st[1].pulls + st[2].pulls, 10);
    pthread_mutex_lock(&h.mu);
    h.end = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    assert_int_equal(pthread_join(t, NULL), 0);
    mab_error err = {0, ""};
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/* mab_import checks the sums of the arms its records name (core/engine_stats.c,
   import_check_totals, arm by arm in record order): two records of one arm
   that overflow only together are refused, naming the second, and nothing
   is imported; a record of another arm before them changes nothing. */
static void test_import_checks_records_together(void **state)
{
    (void)state;
    write_config("{\"interval_ms\": 86400000}", "");
    mab_engine *e = open_ok();
    mab_record r[4] = {{"x1", "a", 1, 1, 1.0, 1.0},
                       {"x0", "b", 1, 1, 1.0, 1e308},
                       {"x0", "c", 1, 1, 1.0, 1.0},
                       {"x0", "b", 1, 1, 1.0, 1e308}};
    mab_error err = {0, ""};
    assert_int_equal(mab_import(e, r, 4, 0, &err), MAB_ERANGE);
    if (!strstr(err.message, "record 3 (x0/b): the arm's reward sums would overflow"))
        fail_msg("unexpected message: %s", err.message);
    assert_int_equal(mab_import(e, r, 3, 0, &err), MAB_OK); /* each alone is fine */
    mab_arm_stats st[N_ARMS];
    for (int a = 0; a < N_ARMS; a++)
        st[a].struct_size = sizeof st[a];
    size_t n = 0;
    assert_int_equal(mab_stats(e, "x0", st, N_ARMS, &n, NULL), MAB_OK);
    assert_int_equal(st[1].pulls, 1);
    /* Now the stored sum is held: the fourth alone overflows it. */
    assert_int_equal(mab_import(e, &r[3], 1, 0, &err), MAB_ERANGE);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

static void stats_of(mab_engine *e, const char *id, mab_arm_stats *st)
{
    for (int a = 0; a < N_ARMS; a++)
        st[a].struct_size = sizeof st[a];
    size_t n = 0;
    mab_error err = {0, ""};
    if (mab_stats(e, id, st, N_ARMS, &n, &err) != MAB_OK)
        fail_msg("mab_stats %s: %s", id, err.message);
    assert_int_equal(n, N_ARMS);
}

/* k choices of experiment x, each rewarded, noted in w. */
static void choose_rewarded(mab_engine *e, int x, int k, worker *w)
{
    char id[16];
    snprintf(id, sizeof id, "x%d", x);
    for (int i = 0; i < k; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, id, &c, NULL), MAB_OK);
        assert_int_equal(mab_reward(e, id, c.arm_id, 1.0, NULL), MAB_OK);
        w->counts.pulls[x][arm_index(c.arm_id)]++;
        w->counts.rewards[x][arm_index(c.arm_id)]++;
    }
}

/* A reset of an experiment whose arms are listed in the queue with
   unapplied totals: the reset forgets them (a write after it stores
   nothing of them), and the other experiments' stay queued and written. */
static void test_reset_while_listed(void **state)
{
    (void)state;
    write_config("{\"interval_ms\": 86400000}", "");
    mab_engine *e = open_ok();
    static worker w[N_THREADS];
    memset(w, 0, sizeof w);
    choose_rewarded(e, 0, 20, &w[0]);
    choose_rewarded(e, 1, 20, &w[0]);
    mab_arm_stats st[N_ARMS];
    stats_of(e, "x0", st); /* x0 published: listed, unapplied */
    assert_int_equal(st[0].pulls + st[1].pulls + st[2].pulls, 20);
    mab_error err = {0, ""};
    assert_int_equal(mab_reset(e, "x0", &err), MAB_OK);
    memset(w[0].counts.pulls[0], 0, sizeof w[0].counts.pulls[0]);
    memset(w[0].counts.rewards[0], 0, sizeof w[0].counts.rewards[0]);
    stats_of(e, "x0", st);
    assert_int_equal(st[0].pulls + st[1].pulls + st[2].pulls, 0);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    check_stored("{\"interval_ms\": 86400000}", w);
}

/* A refresh (published = stored + unapplied) adds what this process has
   in the queue, unwritten, to what it reads: another process's write
   shows, and this process's own unapplied counts stay. */
static void refresh_keeps_unapplied(const char *changed)
{
    char extra[80];
    snprintf(extra, sizeof extra, ", \"refresh_ms\": 5%s", changed);
    write_config("{\"interval_ms\": 86400000}", extra);
    mab_engine *a = open_ok(), *b = open_ok();
    static worker w[N_THREADS];
    memset(w, 0, sizeof w);
    choose_rewarded(a, 0, 30, &w[0]);
    mab_arm_stats st[N_ARMS];
    stats_of(a, "x0", st); /* published by a: in its queue, not written */
    /* b writes 3 rewards of arm "a" of x0 and 1 of x5. */
    mab_error err = {0, ""};
    for (int i = 0; i < 3; i++)
        assert_int_equal(mab_reward(b, "x0", "a", 1.0, NULL), MAB_OK);
    assert_int_equal(mab_reward(b, "x5", "b", 1.0, NULL), MAB_OK);
    assert_int_equal(mab_flush(b, &err), MAB_OK);
    w[0].counts.rewards[0][0] += 3;
    w[0].counts.rewards[5][1] += 1;
    /* Wait for a's refresh to read b's write (an event, not a time: the
       deadline only ends a hang). */
    int seen = 0;
    for (int tries = 0; tries < 30000 && !seen; tries++) {
        mab_arm_stats s5[N_ARMS];
        stats_of(a, "x5", s5);
        seen = s5[1].rewards == 1;
        if (!seen)
            nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    assert_true(seen);
    /* Each refresh reads x0 too: a's 30 unapplied choices are still there
       on top of b's rewards. */
    stats_of(a, "x0", st);
    for (int k = 0; k < N_ARMS; k++) {
        assert_int_equal(st[k].pulls, w[0].counts.pulls[0][k]);
        assert_int_equal(st[k].rewards, w[0].counts.rewards[0][k]);
    }
    assert_int_equal(mab_close(b, &err), MAB_OK);
    assert_int_equal(mab_close(a, &err), MAB_OK);
    check_stored("{\"interval_ms\": 86400000}", w);
}

static void test_refresh_adds_queued(void **state)
{
    (void)state;
    refresh_keeps_unapplied("");
}

static void test_refresh_changed_adds_queued(void **state)
{
    (void)state;
    refresh_keeps_unapplied(", \"changed\": true");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stress_interval, each, cleanup),
        cmocka_unit_test_setup_teardown(test_stress_always, each, cleanup),
        cmocka_unit_test_setup_teardown(test_requeued_in_next_batch, each, cleanup),
        cmocka_unit_test_setup_teardown(test_read_gathers_other_slots, each, cleanup),
        cmocka_unit_test_setup_teardown(test_import_checks_records_together, each, cleanup),
        cmocka_unit_test_setup_teardown(test_reset_while_listed, each, cleanup),
        cmocka_unit_test_setup_teardown(test_refresh_adds_queued, each, cleanup),
        cmocka_unit_test_setup_teardown(test_refresh_changed_adds_queued, each, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
