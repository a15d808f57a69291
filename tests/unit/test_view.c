/*
 * test_view.c - the view a slot keeps between chooses (issue 18).
 *
 * A slot keeps the view it built for an experiment and reuses it while the
 * engine's view_version has not moved and its own pending totals have not
 * changed (its pending_ops; core/engine.c, current_view). Each test here
 * makes one writer of the view's inputs change them after the slot kept its
 * view, then checks that the next choose sees the change: each fails when
 * that writer's bump of view_version is removed (or, for the slot's own
 * changes, the pending_ops check, build_view's clearing of the kept view,
 * or choose's in-place add of its pull).
 *
 * Most use the fixture policy policy_pulls_v1 (ABI 1: the arm of fewest
 * pulls, lowest index among ties), so the arm chosen tells the pulls the
 * policy saw. Writers that run inside one storage call (a dropped delta,
 * reset, a refresh) are reached through the memory fixture's hook
 * (memory_fixture_hook, tests/fixtures/storage_memory.c): the test chooses
 * from inside the storage call, after whatever the engine published before
 * it, so that only the writer under test can move the version after.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "fixture.h"

/* The id of the arm the engine chooses in experiment. */
static const char *choose_id(mab_engine *e, const char *experiment)
{
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    int rc = mab_choose(e, experiment, &c, &err);
    if (rc)
        print_error("mab_choose: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    return c.arm_id;
}

static void assert_chooses(mab_engine *e, const char *experiment, const char *arm)
{
    const char *got = choose_id(e, experiment);
    if (strcmp(got, arm) != 0)
        fail_msg("%s: chose %s, expected %s", experiment, got, arm);
}

/* "exp" of the given policy and arms over the given storage members (or
   none), with `extra` experiments after it. */
static void write_config(const char *policy, const char *arms, const char *storage,
                         const char *extra)
{
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\", \"%s\"], \"seed\": 7,\n"
                        " %s%s%s"
                        " \"experiments\": {\n"
                        "  \"exp\": {\"policy\": %s, \"arms\": %s}%s}}\n",
                        MAB_PLUGIN_DIR, MAB_FIXTURE_DIR, storage ? "\"storage\": {" : "",
                        storage ? storage : "", storage ? "},\n" : "", policy, arms,
                        extra ? extra : ""),
        0);
}

#define MEMORY "\"plugin\": \"storage_memory\", \"sync\": {\"interval_ms\": 86400000}"
#define LEAST "{\"plugin\": \"policy_pulls_v1\"}"

/* ---- the memory fixture's hook --------------------------------------- */

static void (**hook_slot)(const char *call);
static mab_engine *hook_engine;
static const char *hook_call;  /* the storage call to act in */
static int hook_chooses;       /* how many chooses of "exp" to make there, once */
static const char *hook_chose[4];

static void hook(const char *call)
{
    if (strcmp(call, hook_call) != 0 || hook_chooses == 0)
        return;
    for (int i = 0; i < hook_chooses; i++)
        hook_chose[i] = choose_id(hook_engine, "exp");
    hook_chooses = 0;
}

/* Make n chooses of "exp" in the engine's first storage call named call. */
static void set_hook(mab_engine *e, const char *call, int n)
{
    void *handle = dlopen(MAB_FIXTURE_DIR "/storage_memory.so", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(handle);
    hook_slot = dlsym(handle, "memory_fixture_hook");
    assert_non_null(hook_slot);
    dlclose(handle); /* the engine still holds it */
    hook_engine = e;
    hook_call = call;
    hook_chooses = n;
    memset(hook_chose, 0, sizeof hook_chose);
    *hook_slot = hook;
}

static void clear_hook(void)
{
    assert_int_equal(hook_chooses, 0); /* the hook ran */
    *hook_slot = NULL;
}

/* ---- the slot's own changes ------------------------------------------ */

/* A choose adds its pull to the kept view: three chooses go round three
   arms (fails if the pull is not added in place: a, a, a). */
static void test_kept_view_counts_own_pulls(void **state)
{
    (void)state;
    write_config(LEAST, "{\"a\": 1, \"b\": 2, \"c\": 3}", MEMORY, NULL);
    mab_engine *e = open_ok();
    assert_chooses(e, "exp", "a");
    assert_chooses(e, "exp", "b");
    assert_chooses(e, "exp", "c");
    assert_chooses(e, "exp", "a");
    close_ok(e);
}

/* A reward of the slot's own changes its pending totals: the next choose
   sees it (fails without current_view's check of pending_ops). */
static void test_kept_view_sees_own_reward(void **state)
{
    (void)state;
    write_config("{\"plugin\": \"epsilon_greedy\", \"epsilon\": 0}", "{\"a\": 1, \"b\": 2}",
                 MEMORY, NULL);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_record held[] = {{"exp", "a", 10, 10, 5.0, 5.0}, {"exp", "b", 10, 10, 4.0, 4.0}};
    assert_int_equal(mab_import(e, held, 2, 0, &err), MAB_OK);
    assert_chooses(e, "exp", "a"); /* 5/10 against 4/10 */
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    assert_int_equal(mab_reward(e, "exp", "b", 1.0, &err), MAB_OK);
    assert_chooses(e, "exp", "b"); /* 6/10 against 5/11 */
    close_ok(e);
}

/* A view built for another experiment in the same slot (here by the rules
   path, which builds its view without keeping it) is not taken for exp's. */
static void test_kept_view_is_of_its_experiment(void **state)
{
    (void)state;
    write_config(LEAST, "{\"a\": 1, \"b\": 2, \"c\": 3}", MEMORY,
                 ",\n  \"held\": {\"policy\": " LEAST ", \"arms\": {\"p\": 1, \"q\": 2, \"r\": 3},"
                 " \"state\": \"paused\", \"serve\": \"p\"}");
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_record held[] = {{"held", "q", 5, 0, 0.0, 0.0}, {"held", "r", 5, 0, 0.0, 0.0}};
    assert_int_equal(mab_import(e, held, 2, 0, &err), MAB_OK);
    assert_chooses(e, "exp", "a");  /* exp's view kept: 1, 0, 0 */
    assert_chooses(e, "held", "p"); /* held's view (0, 5, 5) built in the slot */
    assert_chooses(e, "exp", "b");  /* 1, 0, 0 again, not held's 0, 5, 5 (a) */
    close_ok(e);
}

/* ---- the engine's writers of published totals ------------------------ */

#define OTHER_CHOOSES 64 /* MAB__PUBLISH_OPS: a fresh slot publishes at the 64th */

struct other {
    mab_engine *e;
    size_t counts[3];
    int failed;
};

static void *other_thread(void *arg)
{
    struct other *o = arg;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    mab_error err = {0, ""};
    for (int i = 0; i < OTHER_CHOOSES; i++) {
        if (mab_choose(o->e, "exp", &c, &err) != MAB_OK || c.arm_index >= 3) {
            o->failed = 1;
            return NULL;
        }
        o->counts[c.arm_index]++;
    }
    return NULL;
}

/* Another thread's slot publishes by itself (mab__slot_publish from its
   64th choose; this slot is not touched): this thread's kept view must take
   its pulls. Through an ABI 1 and an ABI 2 policy. */
static void check_other_slot_publish(const char *policy)
{
    write_config(policy, "{\"a\": 1, \"b\": 2, \"c\": 3}", MEMORY, NULL);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    mab_record held[] = {{"exp", "b", 5, 0, 0.0, 0.0}, {"exp", "c", 5, 0, 0.0, 0.0}};
    assert_int_equal(mab_import(e, held, 2, 0, &err), MAB_OK);
    assert_chooses(e, "exp", "a"); /* kept: 1, 5, 5 */
    struct other o = {e, {0, 0, 0}, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &o), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(o.failed, 0);
    /* What this slot must see now: the store's, the other slot's (all
       published), its own pending pull of a; the fewest pulls, lowest
       index first. The kept 1, 5, 5 would choose a. */
    size_t seen[3] = {1 + o.counts[0], 5 + o.counts[1], 5 + o.counts[2]};
    size_t fewest = 0;
    for (size_t i = 1; i < 3; i++)
        if (seen[i] < seen[fewest])
            fewest = i;
    assert_true(fewest != 0); /* the test tells the two apart */
    assert_chooses(e, "exp", (const char *[]){"a", "b", "c"}[fewest]);
    close_ok(e);
}

static void test_view_after_other_slot_publish(void **state)
{
    (void)state;
    check_other_slot_publish(LEAST);
    check_other_slot_publish("{\"plugin\": \"policy_pulls\", \"features\": [\"arm\"]}");
}

/* A delta storage refuses is taken out of the published totals
   (write_behind.c, drop_delta) after the publish that queued it. */
static void test_view_after_dropped_delta(void **state)
{
    (void)state;
    write_config(LEAST, "{\"a\": 1, \"bad\": 2}", MEMORY ", \"refuse_arm\": \"bad\"", NULL);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_chooses(e, "exp", "a");
    assert_chooses(e, "exp", "bad");
    /* mab_flush publishes 1, 1; in the store's apply this slot chooses
       twice more (a, bad: kept 2, 2); then bad's pull is dropped. */
    set_hook(e, "apply", 2);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    clear_hook();
    assert_string_equal(hook_chose[0], "a");
    assert_string_equal(hook_chose[1], "bad");
    assert_int_equal(mab_dropped_deltas(e, NULL), 1);
    /* Published 1, 0 plus pending 1, 1 (kept: 2, 2 would choose a). */
    assert_chooses(e, "exp", "bad");
    close_ok(e);
}

/* mab_reset zeroes the published totals (engine_stats.c, reset_one) after
   publishing what every slot holds of the experiment. */
static void test_view_after_reset(void **state)
{
    (void)state;
    /* No sample-ratio ledger: its reset would publish this slot again. */
    write_config("{\"plugin\": \"policy_pulls_v1\"}, \"srm\": false",
                 "{\"a\": 1, \"b\": 2, \"c\": 3}", MEMORY, NULL);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_chooses(e, "exp", "a");
    assert_chooses(e, "exp", "b");
    assert_chooses(e, "exp", "c");
    assert_chooses(e, "exp", "a");
    /* Published 2, 1, 1; in the store's reset this slot chooses b (kept
       2, 2, 1); then the totals are zeroed. */
    set_hook(e, "reset", 1);
    assert_int_equal(mab_reset(e, "exp", &err), MAB_OK);
    clear_hook();
    assert_string_equal(hook_chose[0], "b");
    /* Pending 0, 1, 0 (kept: 2, 2, 1 would choose c). */
    assert_chooses(e, "exp", "a");
    close_ok(e);
}

/* mab_import re-reads the store through the storage call named `call`:
   in it this slot chooses b (kept 1, 1); the re-read then publishes a's 5
   imported pulls, so the next choose sees published 5, 0 plus pending 1, 1
   and chooses b (the kept 1, 1 would choose a). */
static void check_view_after_reread(const char *storage, const char *extra, const char *call)
{
    write_config(LEAST, "{\"a\": 1, \"b\": 2}", storage, extra);
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    assert_chooses(e, "exp", "a"); /* kept: 1, 0 */
    set_hook(e, call, 1);
    mab_record five = {"exp", "a", 5, 0, 0.0, 0.0};
    assert_int_equal(mab_import(e, &five, 1, 0, &err), MAB_OK);
    clear_hook();
    assert_string_equal(hook_chose[0], "b");
    assert_chooses(e, "exp", "b");
    close_ok(e);
}

/* What changed() names, one experiment at a time (engine.c,
   load_one_experiment). */
static void test_view_after_changed_load(void **state)
{
    (void)state;
    check_view_after_reread(MEMORY ", \"changed\": true", NULL, "load");
}

/* A full re-read (a store whose changed() cannot tell): a load per
   experiment, or one scan of the store with MAB__SCAN_FROM (256)
   experiments or more (engine.c, load_all_totals). */
static void test_view_after_load(void **state)
{
    (void)state;
    check_view_after_reread(MEMORY, NULL, "load");
}

static void test_view_after_scan(void **state)
{
    (void)state;
    size_t cap = 300 * 80, n = 0;
    char *extra = malloc(cap);
    assert_non_null(extra);
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(extra + n, cap - n,
                              ",\n  \"x%d\": {\"policy\": " LEAST ", \"arms\": {\"a\": 1, \"b\": 2}}",
                              i);
    assert_true(n < cap);
    check_view_after_reread(MEMORY, extra, "scan");
    free(extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_view_counts_own_pulls),
        cmocka_unit_test(test_kept_view_sees_own_reward),
        cmocka_unit_test(test_kept_view_is_of_its_experiment),
        cmocka_unit_test(test_view_after_other_slot_publish),
        cmocka_unit_test(test_view_after_dropped_delta),
        cmocka_unit_test(test_view_after_reset),
        cmocka_unit_test(test_view_after_changed_load),
        cmocka_unit_test(test_view_after_load),
        cmocka_unit_test(test_view_after_scan),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
