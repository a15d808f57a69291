/*
 * test_gather.c - mab_reset and mab_history publish what other threads hold
 * pending of the experiment they touch (mab__gather_experiment), and leave
 * what those threads hold of other experiments alone (issue 18).
 *
 * Another thread chooses on "exp" and "other" and then waits, alive, so
 * that what its slot holds stays pending (fewer than MAB__PUBLISH_OPS
 * events: it is published only by a gather, or by its own publish when
 * MAB__PUBLISH_NS passed between two of its events). This thread then
 * resets or reads "exp".
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

#define EVENTS 10 /* a thread's chooses on each experiment */

static void write_two(void)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                        " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/state.json\", "
                        "\"sync\": {\"interval_ms\": 86400000}},\n"
                        " \"experiments\": {\n"
                        "  \"exp\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                        "\"arms\": {\"a\": 1, \"b\": 2}},\n"
                        "  \"other\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                        "\"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                        MAB_PLUGIN_DIR, dir),
        0);
}

struct busy {
    mab_engine *e;
    pthread_barrier_t chosen, done;
    int errors;
};

/* EVENTS chooses on each experiment, interleaved, then wait until told. */
static void *busy_thread(void *arg)
{
    struct busy *b = arg;
    for (int i = 0; i < EVENTS; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(b->e, "exp", &c, NULL) != MAB_OK ||
            mab_choose(b->e, "other", &c, NULL) != MAB_OK)
            b->errors++;
    }
    pthread_barrier_wait(&b->chosen);
    pthread_barrier_wait(&b->done);
    return NULL;
}

/* The engine of write_two's config, with the busy thread waiting. */
static mab_engine *open_beside_busy(struct busy *b, pthread_t *t)
{
    write_two();
    mab_engine *e = open_ok();
    b->e = e;
    b->errors = 0;
    assert_int_equal(pthread_barrier_init(&b->chosen, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&b->done, NULL, 2), 0);
    assert_int_equal(pthread_create(t, NULL, busy_thread, b), 0);
    pthread_barrier_wait(&b->chosen);
    assert_int_equal(b->errors, 0);
    return e;
}

static void stop_busy(struct busy *b, pthread_t t)
{
    pthread_barrier_wait(&b->done);
    assert_int_equal(pthread_join(t, NULL), 0);
    pthread_barrier_destroy(&b->chosen);
    pthread_barrier_destroy(&b->done);
}

static uint64_t pulls(mab_engine *e, const char *experiment)
{
    mab_arm_stats st[2] = {MAB_STRUCT_INIT(mab_arm_stats), MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    mab_error err = {0, ""};
    assert_int_equal(mab_stats(e, experiment, st, 2, &n, &err), MAB_OK);
    assert_int_equal(n, 2);
    return st[0].pulls + st[1].pulls;
}

/* The reset takes the other thread's pending pulls of exp with it (they
   do not come back at its next publish) and keeps its pulls of other. */
static void test_reset_beside_pending_events(void **state)
{
    (void)state;
    struct busy b;
    pthread_t t;
    mab_engine *e = open_beside_busy(&b, &t);
    mab_error err = {0, ""};
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    stop_busy(&b, t); /* its slot stays as it was: nothing published since */
    assert_int_equal(pulls(e, "exp"), 0);
    assert_int_equal(pulls(e, "other"), EVENTS);
    flush_ok(e); /* and so in storage: a reopen reads them */
    close_ok(e);
    e = open_ok();
    assert_int_equal(pulls(e, "exp"), 0);
    assert_int_equal(pulls(e, "other"), EVENTS);
    close_ok(e);
}

static int add_pulls(void *ctx, size_t arm_index, const char *arm_id,
                     const mab_bucket_stats *bucket)
{
    (void)arm_index;
    (void)arm_id;
    *(uint64_t *)ctx += bucket->pulls;
    return 0;
}

/* The history of exp counts the other thread's pending pulls of it. */
static void test_history_sees_pending_events(void **state)
{
    (void)state;
    struct busy b;
    pthread_t t;
    mab_engine *e = open_beside_busy(&b, &t);
    mab_error err = {0, ""};
    uint64_t seen = 0;
    assert_int_equal(mab_history(e, "exp", 0, add_pulls, &seen, &err), MAB_OK);
    stop_busy(&b, t);
    assert_int_equal(seen, EVENTS);
    assert_int_equal(pulls(e, "other"), EVENTS);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_beside_pending_events, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_history_sees_pending_events, fixture_setup,
                                        fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
