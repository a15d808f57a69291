/*
 * test_queue_oom.c - the write-behind queue holds what is published and
 * not yet written (core/write_behind.c, "the arms queue"), so a publish
 * must find room in it before it moves anything (issue 18). Out of memory:
 *  - a flush, a read that gathers (mab_stats) and a reset report
 *    MAB_ENOMEM naming the write-behind queue; the thread's pending counts
 *    stay in its slot, and once memory is back they are published, written
 *    and stored exactly once (a reopen reads them);
 *  - a take whose batch cannot grow takes nothing: the queue keeps it all;
 *  - a reward under sync "always" that cannot be published is reported
 *    MAB_ENOMEM, and is written once by the next flush.
 *
 * Out of memory is injected by fail_realloc.h (the queue and the batch
 * grow by realloc).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

#include "fail_realloc.h"

static int round_no; /* each test's own shared store */

static int each(void **state)
{
    (void)state;
    fixture_dir_make("queue_oom");
    round_no++;
    return 0;
}

/* Fewer events than a slot publishes at (64), on more arms than the
   queue's first room (64 entries): nothing is published before the test
   asks, and that publish must grow the queue. */
#define N_EXP 30
#define N_ARMS 3

static void write_config(const char *sync)
{
    char text[8192];
    size_t len = (size_t)snprintf(text, sizeof text,
                                  "{\"seed\": 5, \"plugin_path\": [\"%s\"],\n"
                                  " \"storage\": {\"plugin\": \"" MAB_FIXTURE_DIR
                                  "/storage_memory.so\", \"shared\": \"oom%d\", \"sync\": %s},\n"
                                  " \"experiments\": {\n",
                                  MAB_PLUGIN_DIR, round_no, sync);
    for (int i = 0; i < N_EXP; i++)
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "  \"x%d\": {\"policy\": {\"plugin\": \"" MAB_FIXTURE_DIR
                                "/%s.so\"}, \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}%s\n",
                                i, i % 2 ? "policy_uniform" : "policy_stats",
                                i + 1 < N_EXP ? "," : "");
    len += (size_t)snprintf(text + len, sizeof text - len, "}}\n");
    assert_true(len < sizeof text);
    assert_int_equal(test_write_file(config, "%s", text), 0);
}

typedef struct sent {
    uint64_t pulls[N_EXP][N_ARMS], rewards[N_EXP][N_ARMS];
} sent;

/* One choice of every experiment, rewarded: 2 * N_EXP events. */
static void choose_all(mab_engine *e, sent *s)
{
    for (int x = 0; x < N_EXP; x++) {
        char id[16];
        snprintf(id, sizeof id, "x%d", x);
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        mab_error err = {0, ""};
        if (mab_choose(e, id, &c, &err) != MAB_OK)
            fail_msg("mab_choose %s: %s", id, err.message);
        assert_int_equal(mab_reward(e, id, c.arm_id, 1.0, &err), MAB_OK);
        s->pulls[x][c.arm_id[0] - 'a']++;
        s->rewards[x][c.arm_id[0] - 'a']++;
    }
}

/* Every experiment's totals in e are those sent, once. */
static void check(mab_engine *e, const sent *s)
{
    for (int x = 0; x < N_EXP; x++) {
        char id[16];
        snprintf(id, sizeof id, "x%d", x);
        mab_arm_stats st[N_ARMS];
        stats_ok(e, id, st, N_ARMS);
        for (int a = 0; a < N_ARMS; a++) {
            if (st[a].pulls != s->pulls[x][a] || st[a].rewards != s->rewards[x][a])
                fail_msg("%s arm %d: %llu pulls %llu rewards, sent %llu and %llu", id, a,
                         (unsigned long long)st[a].pulls, (unsigned long long)st[a].rewards,
                         (unsigned long long)s->pulls[x][a],
                         (unsigned long long)s->rewards[x][a]);
        }
    }
}

/* Closed, reopened over the same store: what it holds is what was sent. */
static void check_stored(mab_engine *e, const sent *s)
{
    close_ok(e);
    e = open_ok();
    check(e, s);
    assert_int_equal(mab_dropped_deltas(e, NULL), 0);
    close_ok(e);
}

static void expect_enomem(int rc, const mab_error *err, const char *what)
{
    assert_int_equal(rc, MAB_ENOMEM);
    if (!strstr(err->message, what))
        fail_msg("unexpected message: %s", err->message);
}

/* A new engine writing at an interval, each experiment chosen and rewarded
   once (what was sent in s): everything still in the thread's slot. */
static mab_engine *open_with_events(sent *s)
{
    write_config("{\"interval_ms\": 86400000}");
    mab_engine *e = open_ok();
    memset(s, 0, sizeof *s);
    choose_all(e, s);
    return e;
}

/* Out of memory at a publish: nothing moves, nothing is lost or doubled. */
static void test_publish_oom_loses_nothing(void **state)
{
    (void)state;
    static sent s;
    mab_engine *e = open_with_events(&s);
    mab_error err = {0, ""};
    mab_arm_stats st[N_ARMS];
    for (int a = 0; a < N_ARMS; a++)
        st[a].struct_size = sizeof st[a];
    size_t n = 0;
    failed = 0;
    failing = 1;
    int flush_rc = mab_flush(e, &err);
    mab_error flush_err = err;
    int stats_rc = mab_stats(e, "x3", st, N_ARMS, &n, &err);
    mab_error stats_err = err;
    int reset_rc = mab_reset(e, "x4", &err);
    failing = 0;
    assert_true(failed > 0);
    expect_enomem(flush_rc, &flush_err, "out of memory for the write-behind queue");
    expect_enomem(stats_rc, &stats_err, "experiments.x3: out of memory for the write-behind queue");
    expect_enomem(reset_rc, &err, "out of memory for the write-behind queue");
    /* Memory back: everything, x4 too (the reset changed nothing). */
    check(e, &s);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    check_stored(e, &s);
}

/* A close whose last publish cannot be made: it fails, and counts what it
   could not write, in the slots as well as in the queue (every event here
   is still in its thread's slot). */
static void test_close_oom_counts_slot_rows(void **state)
{
    (void)state;
    static sent s;
    mab_engine *e = open_with_events(&s);
    mab_error err = {0, ""};
    failed = 0;
    failing = 1;
    int rc = mab_close(e, &err);
    failing = 0;
    assert_true(failed > 0);
    expect_enomem(rc, &err, "out of memory for the write-behind queue");
    char counted[80];
    snprintf(counted, sizeof counted, "; %d pulls and %d rewards were not written", N_EXP, N_EXP);
    if (!strstr(err.message, counted))
        fail_msg("expected \"%s\" in: %s", counted, err.message);
}

/* Out of memory for the write batch: the queue keeps everything. */
static void test_take_oom_keeps_queue(void **state)
{
    (void)state;
    static sent s;
    mab_engine *e = open_with_events(&s);
    check(e, &s); /* publishes everything into the queue (memory there) */
    mab_error err = {0, ""};
    failing = 1;
    int rc = mab_flush(e, &err);
    failing = 0;
    expect_enomem(rc, &err, "out of memory for the write batch");
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    check_stored(e, &s);
}

/* A reward under sync "always" that cannot be published is not reported
   written; it stays pending and the next flush writes it, once. */
static void test_sync_reward_oom(void **state)
{
    (void)state;
    write_config("\"always\"");
    mab_engine *e = open_ok();
    static sent s;
    memset(&s, 0, sizeof s);
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    assert_int_equal(mab_choose(e, "x1", &c, &err), MAB_OK);
    s.pulls[1][c.arm_id[0] - 'a']++;
    failing = 1;
    int rc = mab_reward(e, "x1", c.arm_id, 1.0, &err);
    failing = 0;
    expect_enomem(rc, &err, "out of memory for the write-behind queue");
    s.rewards[1][c.arm_id[0] - 'a']++;
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    check_stored(e, &s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_oom_loses_nothing, each, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_take_oom_keeps_queue, each, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_close_oom_counts_slot_rows, each, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sync_reward_oom, each, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
