/*
 * fixture.h - the set-up the engine's unit tests share (header-only).
 *
 * Each test gets a fresh directory `dir` with the config path `config` in
 * it (fixture_dir_make in its cmocka set-up, fixture_dir_remove in its
 * tear-down), writes its own config there, and opens, closes and flushes
 * engines that must succeed, reads an experiment's counters, or opens one
 * that must be refused, through the helpers below: on failure they print the engine's message and fail the
 * test. fixture_setup and fixture_teardown do the directory alone. A test whose engine runs on a fake clock sets fixture_clock, and
 * open_ok sets it on every engine it opens.
 */
#ifndef MAB_TEST_FIXTURE_H
#define MAB_TEST_FIXTURE_H

#include <errno.h> /* program_invocation_short_name */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "support.h"

static char *dir;
static char config[300];
static int64_t (*fixture_clock)(void *ctx);

/* A fresh directory "/tmp/mab-<tag>-XXXXXX" as dir, and config in it. */
static inline void fixture_dir_make(const char *tag)
{
    dir = test_tmpdir(tag);
    assert_non_null(dir);
    snprintf(config, sizeof config, "%s/mab.json", dir);
}

static inline void fixture_dir_remove(void)
{
    if (dir) {
        test_rm_tree(dir);
        free(dir);
        dir = NULL;
    }
}

/* The engine of the config at path, on fixture_clock if the test set one. */
static inline mab_engine *open_path_ok(const char *path)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(path, &e, &err);
    if (rc)
        print_error("mab_open: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
    if (fixture_clock)
        assert_int_equal(mab_set_clock(e, fixture_clock, NULL, &err), MAB_OK);
    return e;
}

static inline mab_engine *open_ok(void)
{
    return open_path_ok(config);
}

static inline void close_ok(mab_engine *e)
{
    mab_error err = {0, ""};
    int rc = mab_close(e, &err);
    if (rc)
        print_error("mab_close: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

static inline void flush_ok(mab_engine *e)
{
    mab_error err = {0, ""};
    int rc = mab_flush(e, &err);
    if (rc)
        print_error("mab_flush: %s\n", err.message);
    assert_int_equal(rc, MAB_OK);
}

/* experiment's arms' counters into st[0..n_arms) (their struct_size set
   here): the read must succeed and give n_arms arms. */
static inline void stats_ok(mab_engine *e, const char *experiment, mab_arm_stats *st,
                            size_t n_arms)
{
    for (size_t a = 0; a < n_arms; a++)
        st[a].struct_size = sizeof st[a];
    size_t n = 0;
    mab_error err = {0, ""};
    int rc = mab_stats(e, experiment, st, n_arms, &n, &err);
    if (rc)
        print_error("mab_stats %s: %s\n", experiment, err.message);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(n, n_arms);
}

/* Opening config must fail with `code`, no engine, and a message holding
   every string of the NULL-terminated needles. */
static inline void open_refused(int code, const char *const *needles)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    if (rc != code)
        print_error("mab_open returned %d: %s\n", rc, err.message);
    assert_int_equal(rc, code);
    assert_null(e);
    for (const char *const *n = needles; *n; n++) {
        if (!strstr(err.message, *n))
            print_error("missing \"%s\" in: %s\n", *n, err.message);
        assert_non_null(strstr(err.message, *n));
    }
}

/* As cmocka set-up and tear-down: a directory named after the test binary. */
static inline int fixture_setup(void **state)
{
    (void)state;
    fixture_dir_make(program_invocation_short_name);
    return 0;
}

static inline int fixture_teardown(void **state)
{
    (void)state;
    fixture_dir_remove();
    return 0;
}

#endif
