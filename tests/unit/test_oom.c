/*
 * test_oom.c - out of memory while mab_open grows the engine's arm pool
 * (core/engine.c, mab__arms_take: the configured experiments' arms while
 * parsing, then their ledgers'; issue 18). Each open that meets the failure
 * must fail with MAB_ENOMEM and a message, leave no engine and leak
 * nothing (the sanitizer build's leak check fails the binary otherwise),
 * and the same config opens once memory is back.
 *
 * This binary defines realloc, passing every call on to the next definition
 * (the C library's, or the sanitizer runtime's), so that one chosen call
 * fails: the k-th, in the opening thread, that asks for a power-of-two
 * number of arms from 64 up. Those are the pool's sizes (it starts at 64
 * arms and doubles); the config's total (1,600 arms, ledgers included) is
 * none of them, so the pool's final fit never matches.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "engine.h" /* sizeof (mab__arm) */
#include "fixture.h"

static _Thread_local long fail_at = -1; /* pool-sized reallocs to let through; -1: all */
static _Thread_local long pool_reallocs; /* pool-sized reallocs seen while fail_at >= 0 */

static int pool_sized(size_t n)
{
    if (n % sizeof(mab__arm))
        return 0;
    size_t arms = n / sizeof(mab__arm);
    return arms >= 64 && (arms & (arms - 1)) == 0;
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
    static void *(*next)(void *, size_t);
    if (!next)
        next = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    if (fail_at >= 0 && pool_sized(n) && pool_reallocs++ == fail_at)
        return NULL;
    return next(p, n);
}

#define N_EXP 8
#define N_ARMS 100

/* N_EXP experiments "e0".. of N_ARMS arms, each with its sample-ratio
   ledger (the default), so that the pool grows for both. */
static void write_many(void)
{
    size_t cap = 1024 + N_EXP * (128 + N_ARMS * 16), len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len,
                            "{\"plugin_path\": [\"%s\"], \"seed\": 3,\n"
                            " \"storage\": {\"plugin\": \"" MAB_FIXTURE_DIR "/storage_memory.so\"},\n"
                            " \"experiments\": {",
                            MAB_PLUGIN_DIR);
    for (int i = 0; i < N_EXP; i++) {
        len += (size_t)snprintf(text + len, cap - len,
                                "%s\"e%d\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                                "\"arms\": {",
                                i ? ", " : "", i);
        for (int a = 0; a < N_ARMS; a++)
            len += (size_t)snprintf(text + len, cap - len, "%s\"a%d\": %d", a ? ", " : "", a, a);
        len += (size_t)snprintf(text + len, cap - len, "}}");
    }
    len += (size_t)snprintf(text + len, cap - len, "}}\n");
    assert_true(len < cap);
    assert_int_equal(test_write_file(config, "%s", text), 0);
    free(text);
}

/* Fail the first pool growth, then the second, ... until an open meets no
   failure: every open before it fails cleanly; that one works. */
static void test_open_out_of_memory_growing_arms(void **state)
{
    (void)state;
    write_many();
    int failed = 0, named = 0;
    for (long k = 0;; k++) {
        mab_engine *e = NULL;
        mab_error err = {0, ""};
        pool_reallocs = 0;
        fail_at = k;
        int rc = mab_open(config, &e, &err);
        fail_at = -1;
        if (pool_reallocs <= k) { /* nothing failed: all growths seen */
            if (rc != MAB_OK)
                fail_msg("open with memory: %d: %s", rc, err.message);
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            assert_int_equal(mab_choose(e, "e7", &c, &err), MAB_OK);
            close_ok(e);
            break;
        }
        if (rc != MAB_ENOMEM)
            fail_msg("growth %ld failed: open returned %d: %s", k, rc, err.message);
        assert_null(e);
        if (!strstr(err.message, "out of memory"))
            fail_msg("growth %ld: message without the cause: %s", k, err.message);
        /* While parsing, the message names the experiment and its arms. */
        if (strstr(err.message, config) && strstr(err.message, "experiments.e") &&
            strstr(err.message, ".arms: out of memory for 100 arms"))
            named++;
        failed++;
    }
    /* The pool grows to 128 arms for e0, 256 for e1, 512 for e2 and 1024
       for e5 while parsing, then to 2048 for the ledgers. */
    assert_true(named >= 4);
    assert_true(failed > named);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_out_of_memory_growing_arms),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
