/*
 * test_import.c - mab_import of many experiments at once (issue 18): an
 * additive import, then a replacing one that names every other experiment
 * in records that interleave them, checked arm by arm; and the overflow
 * check of a replace, which starts the experiments it names from nothing
 * (core/engine_stats.c: the experiments named are marked by index, one
 * pass over the records, not a scan of the list per record).
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

#define N_EXP 10000
#define N_ARMS 3

static char ids[N_EXP][16];
static const char *const arm_ids[N_ARMS] = {"a", "b", "c"};

/* N_EXP experiments "x0".. of arms a, b, c over a json_file store (the
   memory fixture finds a record by a scan: quadratic at this size). */
static void write_many(void)
{
    size_t cap = 256 + (size_t)N_EXP * 128, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len,
                            "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                            " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/state.json\"},\n"
                            " \"experiments\": {",
                            MAB_PLUGIN_DIR, dir);
    for (int i = 0; i < N_EXP; i++) {
        snprintf(ids[i], sizeof ids[i], "x%d", i);
        len += (size_t)snprintf(text + len, cap - len,
                                "%s\"x%d\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                                "\"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}",
                                i ? ",\n  " : "", i);
    }
    len += (size_t)snprintf(text + len, cap - len, "}}\n");
    assert_true(len < cap);
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
}

/* What the first import gives arm a of experiment i, and the second. */
static uint64_t first_pulls(int i, int a)
{
    return (uint64_t)i * N_ARMS + (uint64_t)a + 1;
}

static uint64_t second_pulls(int i, int a)
{
    return 1000000u + (uint64_t)i * 10 + (uint64_t)a;
}

static void test_large_import_adds_then_replaces(void **state)
{
    (void)state;
    write_many();
    mab_engine *e = open_ok();
    mab_error err = {0, ""};

    /* Additive: every arm of every experiment, arm by arm across them. */
    mab_record *r = calloc((size_t)N_EXP * N_ARMS, sizeof *r);
    assert_non_null(r);
    size_t n = 0;
    for (int a = 0; a < N_ARMS; a++)
        for (int i = 0; i < N_EXP; i++)
            r[n++] = (mab_record){ids[i], arm_ids[a], first_pulls(i, a), 1, 0.5, 0.25};
    assert_int_equal(mab_import(e, r, n, 0, &err), MAB_OK);

    /* Replace: the even experiments, arms a and b only, interleaved (a of
       every even one, then b of every even one): c of each is cleared. */
    n = 0;
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < N_EXP; i += 2)
            r[n++] = (mab_record){ids[i], arm_ids[a], second_pulls(i, a), 2, 1.5, 1.25};
    assert_int_equal(mab_import(e, r, n, 1, &err), MAB_OK);
    free(r);

    for (int i = 0; i < N_EXP; i++) {
        mab_arm_stats st[N_ARMS];
        stats_ok(e, ids[i], st, N_ARMS);
        for (int a = 0; a < N_ARMS; a++) {
            uint64_t pulls = i % 2 == 0 ? (a < 2 ? second_pulls(i, a) : 0) : first_pulls(i, a);
            uint64_t rewards = i % 2 == 0 ? (a < 2 ? 2 : 0) : 1;
            double sum = i % 2 == 0 ? (a < 2 ? 1.5 : 0.0) : 0.5;
            if (st[a].pulls != pulls || st[a].rewards != rewards || st[a].reward_sum != sum)
                fail_msg("%s/%s: %llu pulls, %llu rewards, sum %g; expected %llu, %llu, %g",
                         ids[i], arm_ids[a], (unsigned long long)st[a].pulls,
                         (unsigned long long)st[a].rewards, st[a].reward_sum,
                         (unsigned long long)pulls, (unsigned long long)rewards, sum);
        }
    }
    close_ok(e);
}

/* A replace checks its records' sums from nothing, as the experiments they
   name are cleared (a sum that would overflow added to the current one is
   fine); an additive import checks them added to the current totals. The
   experiment at stake is the last: a wrong index into the marks misses it. */
static void test_replace_checks_named_experiments_from_nothing(void **state)
{
    (void)state;
    write_many();
    mab_engine *e = open_ok();
    mab_error err = {0, ""};
    const char *last = ids[N_EXP - 1];
    mab_record big = {last, "b", 1, 1, 1.0, 1e308};
    assert_int_equal(mab_import(e, &big, 1, 0, &err), MAB_OK);
    /* Added to the stored 1e308, the sum of squares overflows: refused. */
    mab_record two[2] = {{ids[0], "a", 1, 1, 1.0, 1.0}, big};
    assert_int_equal(mab_import(e, two, 2, 0, &err), MAB_ERANGE);
    if (!strstr(err.message, "record 1 (x9999/b)"))
        fail_msg("unexpected message: %s", err.message);
    /* Replacing last, it starts from nothing: accepted. */
    assert_int_equal(mab_import(e, two, 2, 1, &err), MAB_OK);
    mab_arm_stats st[N_ARMS];
    stats_ok(e, ids[N_EXP - 1], st, N_ARMS);
    assert_int_equal(st[1].pulls, 1);
    assert_true(st[1].reward_sum_sq == 1e308);
    close_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_large_import_adds_then_replaces, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_replace_checks_named_experiments_from_nothing,
                                        fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
