/*
 * test_storage_lmdb.c - the lmdb storage plugin, loaded as the real .so,
 * against real LMDB environments in fresh mkdtemp directories.
 *
 * Tests that need other processes fork; a child opens its own store (an LMDB
 * environment must not be used across fork) and reports through its exit
 * code and pipes only, never through cmocka's asserts. Tests reach into the
 * environment with liblmdb directly to plant what the plugin must refuse.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "mab/storage.h"
#include "support.h"

static void *plugin_handle;
static const mab_storage *storage;

typedef struct fixture {
    char *dir;
    char path[300]; /* DIR/store: the LMDB directory */
    char mount[300]; /* a tmpfs the test mounted, unmounted by teardown; "" if none */
} fixture;

/* ---- helpers ---------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    storage = test_load_storage(MAB_PLUGIN_DIR "/lmdb.so", &plugin_handle);
    return storage ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    dlclose(plugin_handle);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = test_tmpdir("lmdb"))) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/store", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->mount[0] && umount(f->mount) != 0)
        fprintf(stderr, "teardown: cannot unmount %s: %s\n", f->mount, strerror(errno));
    test_rm_tree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Open with extra members of the storage object (e.g. ", \"map_size\": 32768"). */
static int store_open_with(const char *path, const char *extra, void **store, mab_error *err)
{
    char json[600];
    snprintf(json, sizeof json, "{\"path\":\"%s\"%s}", path, extra ? extra : "");
    mab_params *params;
    int rc = mab_params_parse(json, "test", &params, err);
    if (rc != MAB_OK)
        return rc;
    rc = storage->open(params, store, err);
    mab_params_free(params);
    return rc;
}

static void *open_ok_with(const fixture *f, const char *extra)
{
    void *store = NULL;
    mab_error err = {0};
    int rc = store_open_with(f->path, extra, &store, &err);
    if (rc != MAB_OK)
        fail_msg("open %s: %d %s", f->path, rc, err.message);
    return store;
}

static void *open_ok(const fixture *f)
{
    return open_ok_with(f, NULL);
}

static mab_totals load_one(void *store, const char *experiment, const char *arm)
{
    mab_totals t;
    mab_error err = {0};
    const char *ids[] = {arm};
    int rc = storage->load(store, experiment, ids, 1, &t, &err);
    if (rc != MAB_OK)
        fail_msg("load %s.%s: %s", experiment, arm, err.message);
    return t;
}

static void apply_ok(void *store, const mab_delta *deltas, size_t n)
{
    mab_error err = {0};
    int rc = storage->apply(store, deltas, n, &err);
    if (rc != MAB_OK)
        fail_msg("apply: %d %s", rc, err.message);
}

static void assert_totals(mab_totals got, uint64_t pulls, uint64_t rewards, double sum,
                          double sum_sq)
{
    assert_int_equal(got.pulls, pulls);
    assert_int_equal(got.rewards, rewards);
    assert_memory_equal(&got.reward_sum, &sum, sizeof sum);
    assert_memory_equal(&got.reward_sum_sq, &sum_sq, sizeof sum_sq);
}

static mab_delta delta(const char *experiment, const char *arm, uint64_t pulls,
                       uint64_t rewards, double sum, double sum_sq)
{
    mab_delta d = {experiment, arm, {pulls, rewards, sum, sum_sq}};
    return d;
}

static void expect_error(int got, int want, const mab_error *err, const char *fragment)
{
    if (got != want)
        fail_msg("expected %d, got %d: %s", want, got, err->message);
    if (!strstr(err->message, fragment))
        fail_msg("\"%s\" does not contain \"%s\"", err->message, fragment);
}

/* Put key -> value into a named database of the environment at path, directly. */
static void lmdb_put_raw(const char *path, const char *db, const void *key, size_t key_len,
                         const void *value, size_t value_len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
    MDB_val k = {key_len, (void *)key}, v = {value_len, (void *)value};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* ---- round trip, accumulation, reset ---------------------------------- */

static void test_round_trip(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0); /* the directory was created */
    assert_true(S_ISDIR(sb.st_mode));
    mab_delta batch[] = {
        delta("color_btn", "green", 3, 2, 0.1, 0.01),
        delta("color_btn", "red", 1, 1, 1.0 / 3.0, 1.0 / 9.0),
        delta("color_btn", "blue", 7, 0, 0, 0),
        delta("color_btn", "green", 1, 1, 0.2, 0.04),
        delta("txt_btn", "casual", UINT64_MAX - 1, (uint64_t)1 << 60, -2.5e-300,
              1.7976931348623157e308),
    };
    apply_ok(store, batch, sizeof batch / sizeof batch[0]);
    storage->close(store);

    store = open_ok(f);
    const char *ids[] = {"green", "red", "nope"};
    mab_totals t[3];
    mab_error err = {0};
    assert_int_equal(storage->load(store, "color_btn", ids, 3, t, &err), MAB_OK);
    assert_totals(t[0], 4, 3, 0.1 + 0.2, 0.01 + 0.04);
    assert_totals(t[1], 1, 1, 1.0 / 3.0, 1.0 / 9.0);
    assert_totals(t[2], 0, 0, 0, 0);
    assert_totals(load_one(store, "color_btn", "blue"), 7, 0, 0, 0);
    assert_totals(load_one(store, "txt_btn", "casual"), UINT64_MAX - 1, (uint64_t)1 << 60,
                  -2.5e-300, 1.7976931348623157e308);
    assert_totals(load_one(store, "nope", "green"), 0, 0, 0, 0);
    apply_ok(store, NULL, 0); /* an empty batch is fine */
    storage->close(store);
}

static void test_increments_accumulate(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    double sum = 0, sum_sq = 0;
    for (int i = 0; i < 10; i++) {
        double r = 0.1 * i;
        mab_delta batch[] = {delta("e", "a", 1, 0, 0, 0), delta("e", "a", 0, 1, r, r * r),
                             delta("e", "b", 2, 0, 0, 0)};
        apply_ok(store, batch, 3);
        sum += r;
        sum_sq += r * r;
    }
    assert_totals(load_one(store, "e", "a"), 10, 10, sum, sum_sq);
    assert_totals(load_one(store, "e", "b"), 20, 0, 0, 0);
    storage->close(store);
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 10, 10, sum, sum_sq);
    storage->close(store);
}

static void test_reset_removes_one_experiment(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    /* "e" is a prefix of "e2" and of "e-x": only "e\0..." keys are e's. */
    mab_delta batch[] = {delta("e", "a", 1, 1, 1, 1), delta("e2", "a", 2, 0, 0, 0),
                         delta("e", "b", 3, 0, 0, 0), delta("e-x", "b", 4, 1, 0.5, 0.25),
                         delta("d", "a", 5, 0, 0, 0)};
    apply_ok(store, batch, 5);
    mab_error err = {0};
    assert_int_equal(storage->reset(store, "e", &err), MAB_OK);
    assert_int_equal(storage->reset(store, "never-there", &err), MAB_OK);
    assert_totals(load_one(store, "e", "a"), 0, 0, 0, 0);
    assert_totals(load_one(store, "e", "b"), 0, 0, 0, 0);
    assert_totals(load_one(store, "e2", "a"), 2, 0, 0, 0);
    assert_totals(load_one(store, "e-x", "b"), 4, 1, 0.5, 0.25);
    assert_totals(load_one(store, "d", "a"), 5, 0, 0, 0);
    mab_delta again = delta("e", "a", 1, 0, 0, 0);
    apply_ok(store, &again, 1);
    storage->close(store);
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 1, 0, 0, 0);
    assert_totals(load_one(store, "e", "b"), 0, 0, 0, 0);
    storage->close(store);
}

static void test_failed_apply_is_all_or_nothing(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta first[] = {delta("e", "a", 2, 1, 0.5, 0.25), delta("e", "big", UINT64_MAX, 0, 0, 0)};
    apply_ok(store, first, 2);
    /* The third delta overflows: the first two must not land either. */
    mab_delta failing[] = {delta("e", "a", 5, 5, 5, 5), delta("e", "new", 1, 1, 1, 1),
                           delta("e", "big", 1, 0, 0, 0)};
    mab_error err = {0};
    expect_error(storage->apply(store, failing, 3, &err), MAB_ERANGE, &err, "e.big");
    assert_non_null(strstr(err.message, f->path));
    mab_delta nan_delta = delta("e", "a", 1, 1, NAN, 0);
    expect_error(storage->apply(store, &nan_delta, 1, &err), MAB_EINVAL, &err, "not finite");
    assert_totals(load_one(store, "e", "a"), 2, 1, 0.5, 0.25);
    assert_totals(load_one(store, "e", "new"), 0, 0, 0, 0);
    storage->close(store);
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 2, 1, 0.5, 0.25);
    assert_totals(load_one(store, "e", "new"), 0, 0, 0, 0);
    storage->close(store);
}

/* ---- refusals and errors ---------------------------------------------- */

static void test_unknown_version_refused(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta d = delta("e", "a", 3, 0, 0, 0);
    apply_ok(store, &d, 1);
    storage->close(store);

    uint32_t version = 2;
    lmdb_put_raw(f->path, "meta", "version", 7, &version, sizeof version);
    for (int attempt = 0; attempt < 2; attempt++) {
        mab_error err = {0};
        store = NULL;
        expect_error(store_open_with(f->path, NULL, &store, &err), MAB_ECORRUPT, &err,
                     "unsupported store version 2 (this lmdb plugin reads version 1)");
        assert_non_null(strstr(err.message, f->path));
        assert_null(store);
    }
    /* Left as it was: putting version 1 back makes it readable again. */
    version = 1;
    lmdb_put_raw(f->path, "meta", "version", 7, &version, sizeof version);
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 3, 0, 0, 0);
    storage->close(store);
}

static void test_foreign_environment_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(mkdir(f->path, 0755), 0);
    lmdb_put_raw(f->path, "someone-else", "k", 1, "v", 1);
    mab_error err = {0};
    void *store = NULL;
    expect_error(store_open_with(f->path, NULL, &store, &err), MAB_ECORRUPT, &err,
                 "not a mab store");
    assert_non_null(strstr(err.message, f->path));
}

static void test_unreadable_record_refused(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    storage->close(store);
    struct {
        uint32_t version, reserved;
        uint64_t pulls, rewards;
        double sum, sum_sq;
    } future = {7, 0, 1, 1, 1, 1};
    lmdb_put_raw(f->path, "records", "e\0a", 3, &future, sizeof future);
    store = open_ok(f);
    mab_error err = {0};
    const char *ids[] = {"a"};
    mab_totals t;
    expect_error(storage->load(store, "e", ids, 1, &t, &err), MAB_ECORRUPT, &err,
                 "record e.a is unreadable");
    assert_non_null(strstr(err.message, "record version 7"));
    mab_delta d = delta("e", "a", 1, 0, 0, 0);
    expect_error(storage->apply(store, &d, 1, &err), MAB_ECORRUPT, &err, "e.a");
    storage->close(store);
}

static void test_path_errors(void **state)
{
    fixture *f = *state;
    mab_error err = {0};
    void *store = NULL;

    /* path is a regular file (tests run as root: permission bits would not stop us). */
    test_write_file(f->path, "not a directory\n");
    expect_error(store_open_with(f->path, NULL, &store, &err), MAB_ESTORAGE, &err,
                 strerror(ENOTDIR));
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, "must name a directory"));
    assert_null(store);

    /* A directory below a regular file cannot be created. */
    char below[400];
    snprintf(below, sizeof below, "%s/sub", f->path);
    expect_error(store_open_with(below, NULL, &store, &err), MAB_ESTORAGE, &err, below);
    assert_non_null(strstr(err.message, "cannot create the store's directory"));

    /* data.mdb that is not an LMDB file. */
    unlink(f->path);
    assert_int_equal(mkdir(f->path, 0755), 0);
    char data[400];
    snprintf(data, sizeof data, "%s/data.mdb", f->path);
    char junk[8192];
    memset(junk, 'x', sizeof junk);
    FILE *fp = fopen(data, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);
    expect_error(store_open_with(f->path, NULL, &store, &err), MAB_ECORRUPT, &err,
                 "is not an LMDB file");
    assert_non_null(strstr(err.message, data));

    /* Config errors name the key. */
    mab_params *params;
    assert_int_equal(mab_params_parse("{}", "test", &params, &err), MAB_OK);
    expect_error(storage->open(params, &store, &err), MAB_ECONFIG, &err, "path");
    mab_params_free(params);
    expect_error(store_open_with(f->path, ", \"map_size\": 10", &store, &err), MAB_ECONFIG,
                 &err, "map_size");
    expect_error(store_open_with(f->path, ", \"max_readers\": 0", &store, &err), MAB_ECONFIG,
                 &err, "max_readers");
}

static void test_second_open_in_process_refused(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    void *again = NULL;
    mab_error err = {0};
    char alias[400];
    snprintf(alias, sizeof alias, "%s/./store", f->dir); /* same directory, other name */
    expect_error(store_open_with(alias, NULL, &again, &err), MAB_EBUSY, &err,
                 "already open in this process");
    assert_null(again);
    storage->close(store);
    store = open_ok(f); /* closed: open again */
    storage->close(store);
}

/* ---- growth ----------------------------------------------------------- */

#define GROWTH_RECORDS 20000

static void test_map_grows(void **state)
{
    fixture *f = *state;
    /* 32 KiB holds a few hundred records: this must grow the map many times. */
    void *store = open_ok_with(f, ", \"map_size\": 32768");
    static char names[GROWTH_RECORDS][16];
    static mab_delta batch[1000];
    for (int i = 0; i < GROWTH_RECORDS; i += 1000) {
        for (int j = 0; j < 1000; j++) {
            snprintf(names[i + j], sizeof names[i + j], "arm%05d", i + j);
            batch[j] = delta("grow", names[i + j], (uint64_t)(i + j) + 1, 1, 0.5, 0.25);
        }
        apply_ok(store, batch, 1000);
    }
    storage->close(store);

    store = open_ok_with(f, ", \"map_size\": 32768");
    for (int i = 0; i < GROWTH_RECORDS; i++)
        assert_totals(load_one(store, "grow", names[i]), (uint64_t)i + 1, 1, 0.5, 0.25);
    storage->close(store);
    char data[400];
    snprintf(data, sizeof data, "%s/data.mdb", f->path);
    struct stat sb;
    assert_int_equal(stat(data, &sb), 0);
    assert_true(sb.st_size > 32768);
}

/* ---- time buckets (storage ABI 1.5) ----------------------------------- */

#define HOUR INT64_C(3600)
#define T0 (INT64_C(1700000000) / HOUR * HOUR)

static void apply_buckets_ok(void *store, const mab_delta *d, size_t nd,
                             const mab_bucket_delta *b, size_t nb, int64_t keep_from)
{
    mab_error err = {0};
    int rc = storage->apply_buckets(store, d, nd, NULL, 0, b, nb, keep_from, &err);
    if (rc != MAB_OK)
        fail_msg("apply_buckets: %d %s", rc, err.message);
}

static int count_bucket(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                        const mab_totals *add)
{
    (void)experiment;
    (void)arm;
    (void)add;
    size_t *n = ctx;
    n[bucket < T0 + 1000 * HOUR ? 0 : 1]++;
    return 0;
}

/* Retention deletes at most 256 old buckets per call (the bound docs/storage.md
   gives), the oldest first, and the next call goes on. */
static void test_bucket_retention_bound(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    static mab_bucket_delta b[1000];
    for (int h = 0; h < 1000; h++)
        b[h] = (mab_bucket_delta){"exp", "a", T0 + h * HOUR, {1, 0, 0, 0}};
    apply_buckets_ok(store, NULL, 0, b, 1000, INT64_MIN);
    mab_bucket_delta young = {"exp", "a", T0 + 1000 * HOUR, {1, 0, 0, 0}};
    size_t expect_old = 1000;
    for (int call = 0; call < 5; call++) {
        apply_buckets_ok(store, NULL, 0, &young, 1, T0 + 1000 * HOUR);
        size_t n[2] = {0, 0};
        mab_error err = {0};
        assert_int_equal(storage->scan_buckets(store, count_bucket, n, &err), MAB_OK);
        expect_old = expect_old > 256 ? expect_old - 256 : 0;
        assert_int_equal(n[0], expect_old);
        assert_int_equal(n[1], 1);
    }
    storage->close(store);
}

/* Buckets grow a small map like records do, and read back after a reopen. */
static void test_buckets_grow_the_map(void **state)
{
    fixture *f = *state;
    void *store = open_ok_with(f, ", \"map_size\": 32768");
    static mab_bucket_delta b[1000];
    static char arms[20][8];
    for (int a = 0; a < 20; a++) {
        snprintf(arms[a], sizeof arms[a], "arm%02d", a);
        for (int h = 0; h < 1000; h++)
            b[h] = (mab_bucket_delta){"grow", arms[a], T0 + h * HOUR,
                                      {(uint64_t)h + 1, 1, 0.5, 0.25}};
        apply_buckets_ok(store, NULL, 0, b, 1000, INT64_MIN);
    }
    storage->close(store);
    store = open_ok_with(f, ", \"map_size\": 32768");
    size_t n[2] = {0, 0};
    mab_error err = {0};
    assert_int_equal(storage->scan_buckets(store, count_bucket, n, &err), MAB_OK);
    assert_int_equal(n[0], 20000);
    storage->close(store);
}

/* A store written before buckets existed (no "buckets" and "bucket_starts"
   databases) opens, reads no buckets and takes them. */
static void test_store_without_bucket_databases(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta d = delta("exp", "a", 3, 1, 0.5, 0.25);
    apply_ok(store, &d, 1);
    storage->close(store);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, f->path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    const char *names[] = {"buckets", "bucket_starts"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mdb_dbi_open(txn, names[i], 0, &dbi), 0);
        assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    store = open_ok(f);
    assert_totals(load_one(store, "exp", "a"), 3, 1, 0.5, 0.25);
    size_t n[2] = {0, 0};
    mab_error err = {0};
    assert_int_equal(storage->scan_buckets(store, count_bucket, n, &err), MAB_OK);
    assert_int_equal(n[0] + n[1], 0);
    mab_bucket_delta b = {"exp", "a", T0, {1, 1, 1, 1}};
    apply_buckets_ok(store, &d, 1, &b, 1, INT64_MIN);
    assert_int_equal(storage->scan_buckets(store, count_bucket, n, &err), MAB_OK);
    assert_int_equal(n[0], 1);
    storage->close(store);
}

/* A writer of counters and buckets SIGKILLed at random moments: after every
   kill the counter equals the sum of its buckets (they commit together or
   not at all) and holds every commit the writer reported. The parent kills
   only after the first report, so every round has commits to check. */
static void bucket_kill_child(const fixture *f, int report_fd)
{
    void *store = NULL;
    if (store_open_with(f->path, NULL, &store, NULL) != MAB_OK)
        _exit(2);
    mab_delta d = delta("kill", "a", 1, 0, 0, 0);
    for (uint64_t i = 0;; i++) {
        mab_bucket_delta b = {"kill", "a", T0 + (int64_t)(i % 64) * HOUR, {1, 0, 0, 0}};
        if (storage->apply_buckets(store, &d, 1, NULL, 0, &b, 1, INT64_MIN, NULL) != MAB_OK)
            _exit(4);
        if (write(report_fd, &i, sizeof i) != (ssize_t)sizeof i)
            _exit(5);
    }
}

static int sum_pulls(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add)
{
    (void)arm_index, (void)bucket;
    *(uint64_t *)ctx += add->pulls;
    return 0;
}

static void test_kill_during_bucket_writes(void **state)
{
    fixture *f = *state;
    srand((unsigned)time(NULL));
    for (int round = 0; round < 10; round++) {
        void *store = open_ok(f);
        uint64_t before = load_one(store, "kill", "a").pulls;
        storage->close(store);
        int report[2];
        assert_int_equal(pipe(report), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(report[0]);
            bucket_kill_child(f, report[1]);
        }
        close(report[1]);
        uint64_t value, reported = 0;
        assert_int_equal(read(report[0], &value, sizeof value), (ssize_t)sizeof value);
        reported = 1;
        struct timespec delay = {0, (long)(rand() % 20) * 1000000L};
        nanosleep(&delay, NULL);
        assert_int_equal(kill(child, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFSIGNALED(status));
        while (read(report[0], &value, sizeof value) == (ssize_t)sizeof value)
            reported = value + 1;
        close(report[0]);

        store = open_ok(f);
        uint64_t pulls = load_one(store, "kill", "a").pulls, in_buckets = 0;
        const char *arms[] = {"a"};
        mab_error err = {0};
        assert_int_equal(storage->load_buckets(store, "kill", arms, 1, INT64_MIN, sum_pulls,
                                               &in_buckets, &err),
                         MAB_OK);
        storage->close(store);
        if (pulls != in_buckets)
            fail_msg("round %d: the counter has %" PRIu64 " pulls, its buckets %" PRIu64, round,
                     pulls, in_buckets);
        if (pulls - before != reported && pulls - before != reported + 1)
            fail_msg("round %d: %" PRIu64 " commits stored, the writer reported %" PRIu64, round,
                     pulls - before, reported);
    }
}

/* ---- several processes ------------------------------------------------ */

#define WRITERS 4
#define WRITES 500

static void test_processes_share_one_store(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f); /* held open by the parent the whole time */
    mab_delta seed = delta("e", "a", 1, 0, 0, 0);
    apply_ok(store, &seed, 1);

    pid_t children[WRITERS];
    for (int c = 0; c < WRITERS; c++) {
        children[c] = fork();
        assert_true(children[c] >= 0);
        if (children[c] == 0) {
            void *s = NULL;
            /* A small map: growth while others write must lose nothing either. */
            if (store_open_with(f->path, ", \"map_size\": 32768", &s, NULL) != MAB_OK)
                _exit(2);
            char arm[16];
            snprintf(arm, sizeof arm, "own%d", c);
            for (int i = 0; i < WRITES; i++) {
                mab_delta d[] = {delta("e", "a", 1, 1, 0.5, 0.25), delta("e", arm, 1, 0, 0, 0)};
                if (storage->apply(s, d, 2, NULL) != MAB_OK)
                    _exit(3);
            }
            storage->close(s);
            _exit(0);
        }
    }
    for (int c = 0; c < WRITERS; c++) {
        int status;
        assert_int_equal(waitpid(children[c], &status, 0), children[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    /* The parent's open environment sees what the children committed. */
    assert_totals(load_one(store, "e", "a"), 1 + WRITERS * WRITES, WRITERS * WRITES,
                  0.5 * WRITERS * WRITES, 0.25 * WRITERS * WRITES);
    for (int c = 0; c < WRITERS; c++) {
        char arm[16];
        snprintf(arm, sizeof arm, "own%d", c);
        assert_totals(load_one(store, "e", arm), WRITES, 0, 0, 0);
    }
    storage->close(store);
}

#define KILL_ROUNDS 20

/* Child: +1 pull on kill.a forever, reporting each committed value. */
static void kill_child(const fixture *f, int report_fd)
{
    void *store = NULL;
    if (store_open_with(f->path, NULL, &store, NULL) != MAB_OK)
        _exit(2);
    uint64_t value = load_one(store, "kill", "a").pulls;
    for (;;) {
        mab_delta d = delta("kill", "a", 1, 0, 0, 0);
        if (storage->apply(store, &d, 1, NULL) != MAB_OK)
            _exit(3);
        value++;
        if (write(report_fd, &value, sizeof value) != (ssize_t)sizeof value)
            _exit(4);
    }
}

static void test_kill_during_write(void **state)
{
    fixture *f = *state;
    uint64_t last_seen = 0;
    srand((unsigned)time(NULL));
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int report[2];
        assert_int_equal(pipe(report), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(report[0]);
            kill_child(f, report[1]);
        }
        close(report[1]);
        struct timespec delay = {0, (long)(rand() % 30 + 5) * 1000000L};
        nanosleep(&delay, NULL);
        assert_int_equal(kill(child, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFSIGNALED(status));

        uint64_t reported = last_seen, value;
        while (read(report[0], &value, sizeof value) == (ssize_t)sizeof value)
            reported = value;
        close(report[0]);

        void *store = open_ok(f);
        uint64_t pulls = load_one(store, "kill", "a").pulls;
        /* Every reported commit is there; the one in flight may be too. */
        if (pulls != reported && pulls != reported + 1)
            fail_msg("round %d: store has %" PRIu64 " pulls, child reported %" PRIu64, round,
                     pulls, reported);
        storage->close(store);
        last_seen = pulls;
    }
    assert_true(last_seen > 0);
}

/* ---- scan and replace (ABI 1.1) --------------------------------------- */

#if MAB_STORAGE_ABI_MINOR >= 1
typedef struct scanned {
    char keys[16][64];
    mab_totals totals[16];
    int n;
    int stop_after;
} scanned;

static int collect(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    scanned *s = ctx;
    if (s->n == 16)
        return -100;
    snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s.%s", experiment, arm);
    s->totals[s->n++] = *t;
    return s->n == s->stop_after ? 42 : 0;
}

static void test_scan_and_replace(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    assert_int_equal(storage->refresh_ms, 100);
    mab_delta batch[] = {delta("e", "b", 1, 1, 0.25, 0.0625), delta("e", "a", 2, 0, 0, 0),
                         delta("e2", "a", 3, 1, 1, 1), delta("d", "x", 4, 0, 0, 0)};
    apply_ok(store, batch, 4);
    scanned s = {.stop_after = -1};
    mab_error err = {0};
    assert_int_equal(storage->scan(store, collect, &s, &err), MAB_OK);
    assert_int_equal(s.n, 4); /* in key order */
    assert_string_equal(s.keys[0], "d.x");
    assert_string_equal(s.keys[1], "e.a");
    assert_string_equal(s.keys[2], "e.b");
    assert_string_equal(s.keys[3], "e2.a");
    assert_totals(s.totals[2], 1, 1, 0.25, 0.0625);
    scanned stop = {.stop_after = 2};
    assert_int_equal(storage->scan(store, collect, &stop, &err), 42);
    assert_int_equal(stop.n, 2);

    /* Replace e (and a never-stored experiment): e.b disappears, d and e2 stay. */
    const char *exps[] = {"e", "fresh"};
    mab_delta fresh[] = {delta("e", "a", 10, 5, 2.5, 1.25), delta("fresh", "z", 1, 0, 0, 0),
                         delta("e", "a", 1, 0, 0, 0)};
    assert_int_equal(storage->replace(store, exps, 2, fresh, 3, &err), MAB_OK);
    assert_totals(load_one(store, "e", "a"), 11, 5, 2.5, 1.25);
    assert_totals(load_one(store, "e", "b"), 0, 0, 0, 0);
    assert_totals(load_one(store, "e2", "a"), 3, 1, 1, 1);
    assert_totals(load_one(store, "d", "x"), 4, 0, 0, 0);
    assert_totals(load_one(store, "fresh", "z"), 1, 0, 0, 0);

    /* A failing replace changes nothing: not even the removal. */
    mab_delta bad[] = {delta("e2", "a", 1, 0, 0, 0), delta("e2", "b", 1, 1, INFINITY, 0)};
    const char *exps2[] = {"e2"};
    assert_int_equal(storage->replace(store, exps2, 1, bad, 2, &err), MAB_EINVAL);
    mab_delta overflow[] = {delta("e", "a", UINT64_MAX, 0, 0, 0)};
    const char *exps3[] = {"e2"};
    assert_int_equal(storage->replace(store, exps3, 1, overflow, 1, &err), MAB_ERANGE);
    assert_totals(load_one(store, "e2", "a"), 3, 1, 1, 1);
    assert_totals(load_one(store, "e", "a"), 11, 5, 2.5, 1.25);
    storage->close(store);
}
#endif

/* ---- claims (ABI 1.3) --------------------------------------------------- */

static void claim_id(uint8_t id[MAB_ASSIGNMENT_ID_BYTES], uint32_t n)
{
    memset(id, 0, MAB_ASSIGNMENT_ID_BYTES);
    /* Spread like random ids: the sweep walks them in key order. */
    uint64_t h = (n + 1) * 0x9e3779b97f4a7c15ULL;
    memcpy(id, &h, sizeof h);
    memcpy(id + 8, &n, sizeof n);
}

static int claim_rc_flags(void *store, uint32_t n, int64_t expires_at, const mab_delta *d,
                          size_t n_deltas, unsigned flags)
{
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    claim_id(id, n);
    mab_error err = {0, ""};
    mab_claim c = {id, expires_at, d, n_deltas, -1};
    int rc = storage->claim(store, &c, 1, flags, &err);
    return rc == MAB_OK ? c.result : rc;
}

static int claim_rc(void *store, uint32_t n, int64_t expires_at, const mab_delta *d,
                    size_t n_deltas)
{
    return claim_rc_flags(store, n, expires_at, d, n_deltas, 0);
}

/* Entries of the "claims" database, read with liblmdb directly. */
static size_t claims_stored(const char *path)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "claims", 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return st.ms_entries;
}

/* Store claims 0..n-1 expiring at `expires`, in one transaction, directly. */
static void plant_claims(const char *path, uint32_t n, int64_t expires)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "claims", MDB_CREATE, &dbi), 0);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
        claim_id(id, i);
        MDB_val k = {sizeof id, id}, v = {sizeof expires, &expires};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* ---- the change log (storage ABI 1.6, changed()) --------------------- */

typedef struct changed_seen {
    char ids[16][16];
    size_t n;
} changed_seen;

static int see_changed(void *ctx, const char *experiment)
{
    changed_seen *c = ctx;
    if (c->n < 16)
        snprintf(c->ids[c->n], sizeof c->ids[0], "%s", experiment);
    c->n++;
    return 0;
}

/* changed() on store: *everything, and the ids named, joined by ",". */
static int changed_ok(void *store, char *names, size_t cap)
{
    changed_seen c = {.n = 0};
    int everything = -1;
    mab_error err = {0};
    int rc = storage->changed(store, &everything, see_changed, &c, &err);
    if (rc != MAB_OK)
        fail_msg("changed: %d %s", rc, err.message);
    names[0] = '\0';
    for (size_t i = 0; i < c.n && i < 16; i++)
        snprintf(names + strlen(names), cap - strlen(names), "%s%s", i ? "," : "", c.ids[i]);
    return everything;
}

/* Child: at each byte on go, one write to the store, then a byte on done:
   1 = apply to c3 through the plugin, 2 = reset c4 through the plugin,
   3 = a record of c2 put with liblmdb directly (a writer that keeps no change
   log, as an older plugin). */
static void change_log_child(const fixture *f, int go, int done)
{
    char step;
    while (read(go, &step, 1) == 1 && step != 0) {
        if (step == 3) {
            MDB_env *env;
            MDB_txn *txn;
            MDB_dbi dbi;
            /* the plugin's 40-byte record (lmdb.c, stored_record): version 1 */
            struct {
                uint32_t version, reserved;
                uint64_t pulls, rewards;
                double reward_sum, reward_sum_sq;
            } r = {1, 0, 9, 0, 0.0, 0.0};
            MDB_val k = {5, "c2\0zz"}, v = {sizeof r, &r};
            if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
                mdb_env_open(env, f->path, 0, 0644) || mdb_txn_begin(env, NULL, 0, &txn) ||
                mdb_dbi_open(txn, "records", 0, &dbi) || mdb_put(txn, dbi, &k, &v, 0) ||
                mdb_txn_commit(txn))
                _exit(2);
            mdb_env_close(env);
        } else {
            void *store = NULL;
            if (store_open_with(f->path, NULL, &store, NULL) != MAB_OK)
                _exit(3);
            mab_delta d = delta("c3", "a", 1, 1, 1.0, 1.0);
            int rc = step == 1 ? storage->apply(store, &d, 1, NULL)
                               : storage->reset(store, "c4", NULL);
            storage->close(store);
            if (rc != MAB_OK)
                _exit(4);
        }
        if (write(done, "d", 1) != 1)
            _exit(5);
    }
    _exit(0);
}

static void test_change_log_names_what_changed(void **state)
{
    fixture *f = *state;
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t child = fork(); /* before this process opens any environment */
    assert_true(child >= 0);
    if (child == 0) {
        close(go[1]);
        close(done[0]);
        change_log_child(f, go[0], done[1]);
    }
    close(go[0]);
    close(done[1]);

    void *store = open_ok(f);
    char names[400];
    const char *ids[] = {"c0", "c1", "c2", "c3", "c4", "c5"};
    for (int i = 0; i < 6; i++) {
        mab_delta d = delta(ids[i], "a", 1, 0, 0, 0);
        apply_ok(store, &d, 1);
    }
    assert_int_equal(changed_ok(store, names, sizeof names), 1); /* first call: no position */
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "");
    /* Its own writes are named too (another state of this process could not
       tell them from anyone's), once per experiment however many records. */
    mab_delta two[] = {delta("c1", "a", 1, 0, 0, 0), delta("c1", "b", 1, 0, 0, 0),
                       delta("c5", "a", 1, 0, 0, 0)};
    apply_ok(store, two, 3);
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "c1,c5");
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "");

    char c, step = 1;
    assert_int_equal(write(go[1], &step, 1), 1);
    assert_int_equal(read(done[0], &c, 1), 1);
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "c3");
    assert_totals(load_one(store, "c3", "a"), 2, 1, 1.0, 1.0);

    step = 2;
    assert_int_equal(write(go[1], &step, 1), 1);
    assert_int_equal(read(done[0], &c, 1), 1);
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "c4");
    assert_totals(load_one(store, "c4", "a"), 0, 0, 0.0, 0.0);

    /* A writer that keeps no log: the plugin cannot name its change, so it
       asks for everything; then it knows its position again. */
    step = 3;
    assert_int_equal(write(go[1], &step, 1), 1);
    assert_int_equal(read(done[0], &c, 1), 1);
    assert_int_equal(changed_ok(store, names, sizeof names), 1);
    assert_int_equal(load_one(store, "c2", "zz").pulls, 9);
    assert_int_equal(changed_ok(store, names, sizeof names), 0);
    assert_string_equal(names, "");

    step = 0;
    assert_int_equal(write(go[1], &step, 1), 1);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(go[1]);
    close(done[0]);
    storage->close(store);
}

/* First wins; the reward's deltas go with the winning claim only; a failed
   claim (bad delta) claims nothing. */
static void test_claim_first_wins(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    int64_t later = (int64_t)time(NULL) + 3600;
    mab_delta reward = delta("e", "a", 0, 1, 0.5, 0.25);
    assert_int_equal(claim_rc(store, 1, later, &reward, 1), MAB_OK);
    assert_int_equal(claim_rc(store, 1, later, &reward, 1), MAB_ECLAIMED);
    assert_int_equal(claim_rc(store, 1, later, NULL, 0), MAB_ECLAIMED);
    assert_totals(load_one(store, "e", "a"), 0, 1, 0.5, 0.25);
    /* A delta the store refuses: neither the claim nor the delta stays. */
    mab_delta overflow = delta("e", "a", 0, UINT64_MAX, 0, 0);
    assert_int_equal(claim_rc(store, 2, later, &overflow, 1), MAB_ERANGE);
    assert_int_equal(claim_rc(store, 2, later, &reward, 1), MAB_OK);
    assert_totals(load_one(store, "e", "a"), 0, 2, 1.0, 0.5);
    /* After a restart (close and open again) the claims hold. */
    storage->close(store);
    store = open_ok(f);
    assert_int_equal(claim_rc(store, 1, later, &reward, 1), MAB_ECLAIMED);
    assert_int_equal(claim_rc(store, 2, later, NULL, 0), MAB_ECLAIMED);
    assert_int_equal(claim_rc(store, 3, later, NULL, 0), MAB_OK);
    assert_totals(load_one(store, "e", "a"), 0, 2, 1.0, 0.5);
    /* One call, several claims: one transaction; an id given twice is
       granted to its first entry only; a refused delta fails them all. */
    uint8_t id5[MAB_ASSIGNMENT_ID_BYTES], id6[MAB_ASSIGNMENT_ID_BYTES];
    claim_id(id5, 5);
    claim_id(id6, 6);
    mab_claim batch[] = {{id5, later, &reward, 1, -1}, {id6, later, &reward, 1, -1},
                         {id5, later, &reward, 1, -1}};
    mab_error err = {0, ""};
    assert_int_equal(storage->claim(store, batch, 3, 0, &err), MAB_OK);
    assert_int_equal(batch[0].result, MAB_OK);
    assert_int_equal(batch[1].result, MAB_OK);
    assert_int_equal(batch[2].result, MAB_ECLAIMED);
    assert_totals(load_one(store, "e", "a"), 0, 4, 2.0, 1.0);
    uint8_t id7[MAB_ASSIGNMENT_ID_BYTES], id8[MAB_ASSIGNMENT_ID_BYTES];
    claim_id(id7, 7);
    claim_id(id8, 8);
    mab_claim poisoned[] = {{id7, later, &reward, 1, -1}, {id6, later, &reward, 1, -1},
                            {id8, later, &overflow, 1, -1}};
    assert_int_equal(storage->claim(store, poisoned, 3, 0, &err), MAB_ERANGE);
    assert_int_equal(claim_rc(store, 7, later, NULL, 0), MAB_OK); /* 7 was not claimed */
    assert_totals(load_one(store, "e", "a"), 0, 4, 2.0, 1.0);
    /* A claim whose sync is deferred is decided at once: another process
       is refused it before any apply. */
    assert_int_equal(claim_rc_flags(store, 4, later, NULL, 0, MAB_CLAIM_DEFER_SYNC), MAB_OK);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        void *s = NULL;
        if (store_open_with(f->path, NULL, &s, NULL) != MAB_OK)
            _exit(2);
        int rc = claim_rc(s, 4, later, NULL, 0);
        storage->close(s);
        _exit(rc == MAB_ECLAIMED ? 0 : 3);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    storage->close(store);
}

#define CLAIMERS 4
#define CLAIM_IDS 300

/* Four processes claim the same ids, each with a reward: every id is won
   exactly once, and the store holds one reward per id. */
static void test_claim_across_processes(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    int64_t later = (int64_t)time(NULL) + 3600;
    int pipes[CLAIMERS][2];
    pid_t children[CLAIMERS];
    for (int c = 0; c < CLAIMERS; c++) {
        assert_int_equal(pipe(pipes[c]), 0);
        children[c] = fork();
        assert_true(children[c] >= 0);
        if (children[c] == 0) {
            void *s = NULL;
            if (store_open_with(f->path, NULL, &s, NULL) != MAB_OK)
                _exit(2);
            uint32_t won = 0;
            for (uint32_t i = 0; i < CLAIM_IDS; i++) {
                /* Each process walks the ids from its own start. */
                uint32_t n = (i + (uint32_t)c * 71) % CLAIM_IDS;
                mab_delta d = delta("e", "a", 0, 1, 1, 1);
                int rc = claim_rc(s, n, later, &d, 1);
                if (rc == MAB_OK)
                    won++;
                else if (rc != MAB_ECLAIMED)
                    _exit(3);
            }
            storage->close(s);
            if (write(pipes[c][1], &won, sizeof won) != (ssize_t)sizeof won)
                _exit(4);
            _exit(0);
        }
        close(pipes[c][1]);
    }
    uint32_t total = 0;
    for (int c = 0; c < CLAIMERS; c++) {
        int status;
        assert_int_equal(waitpid(children[c], &status, 0), children[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        uint32_t won = 0;
        assert_int_equal(read(pipes[c][0], &won, sizeof won), (ssize_t)sizeof won);
        close(pipes[c][0]);
        total += won;
    }
    assert_int_equal(total, CLAIM_IDS);
    assert_totals(load_one(store, "e", "a"), 0, CLAIM_IDS, CLAIM_IDS, CLAIM_IDS);
    for (uint32_t n = 0; n < CLAIM_IDS; n++)
        assert_int_equal(claim_rc(store, n, later, NULL, 0), MAB_ECLAIMED);
    storage->close(store);
}

/* Expired claims are swept by later claims (bounded work each), and an
   expired claim not swept yet is granted again. */
static void test_expired_claims_swept(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(claim_rc(store, 5000, now + 3600, NULL, 0), MAB_OK); /* creates "claims" */
    storage->close(store);
    plant_claims(f->path, 200, now - 10); /* ids 0..199, expired 10 s ago */
    assert_int_equal(claims_stored(f->path), 201);
    store = open_ok(f);
    /* An expired claim still stored does not refuse. */
    assert_int_equal(claim_rc(store, 0, now + 3600, NULL, 0), MAB_OK);
    assert_int_equal(claim_rc(store, 0, now + 3600, NULL, 0), MAB_ECLAIMED);
    /* 100 live claims sweep the whole table (8 entries per claim). */
    for (uint32_t n = 1000; n < 1100; n++)
        assert_int_equal(claim_rc(store, n, now + 3600, NULL, 0), MAB_OK);
    assert_int_equal(claims_stored(f->path), 102); /* 100 + id 0 + id 5000 */
    for (uint32_t n = 1000; n < 1100; n++)
        assert_int_equal(claim_rc(store, n, now + 3600, NULL, 0), MAB_ECLAIMED);
    storage->close(store);
}

/* ---- damaged files and a full disk (issue 10, item 3) ------------------ */

/* What an open in a child process did: its status and message, or the
   signal that killed it (a store that is mapped past the end of its file
   dies of SIGBUS when a page is touched). */
typedef struct child_open {
    int signal; /* 0 when the child exited */
    int rc;
    char message[MAB_ERROR_MAX];
} child_open;

/* Open path in a child and, when that works, write and read one record. */
static child_open open_in_child(const char *path)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Die of the signal, as a server would: cmocka's handlers must not
           turn it into a test result in the child. */
        signal(SIGBUS, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        signal(SIGFPE, SIG_DFL);
        close(fds[0]);
        mab_error err = {0, ""};
        void *store = NULL;
        int rc = store_open_with(path, NULL, &store, &err);
        if (rc == MAB_OK) {
            mab_delta d = {"e", "a", {1, 1, 0.5, 0.25}};
            rc = storage->apply(store, &d, 1, &err);
            const char *ids[] = {"a"};
            mab_totals t;
            if (rc == MAB_OK)
                rc = storage->load(store, "e", ids, 1, &t, &err);
            storage->close(store);
        }
        child_open out = {0, rc, ""};
        snprintf(out.message, sizeof out.message, "%s", rc == MAB_OK ? "" : err.message);
        ssize_t w = write(fds[1], &out, sizeof out);
        _exit(w == (ssize_t)sizeof out ? 0 : 1);
    }
    close(fds[1]);
    child_open out = {0, 0, ""};
    ssize_t got = read(fds[0], &out, sizeof out);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        out.signal = WTERMSIG(status);
        return out;
    }
    if (got != (ssize_t)sizeof out)
        fail_msg("the child reported nothing (exit status %d)", WEXITSTATUS(status));
    return out;
}

static void expect_child_error(child_open got, int want, const char *fragment,
                               const char *fragment2)
{
    if (got.signal)
        fail_msg("opening the store killed the process with signal %d (%s)", got.signal,
                 strsignal(got.signal));
    if (got.rc != want)
        fail_msg("expected %d, got %d: %s", want, got.rc, got.message);
    if (!strstr(got.message, fragment) || (fragment2 && !strstr(got.message, fragment2)))
        fail_msg("\"%s\" does not name \"%s\"%s%s", got.message, fragment,
                 fragment2 ? " and " : "", fragment2 ? fragment2 : "");
}

/* A store with enough records to span many pages; returns data.mdb's size. */
static off_t make_store_with_pages(const fixture *f, char *data_mdb, size_t cap)
{
    void *store = open_ok(f);
    char arms[400][8];
    mab_delta d[400];
    for (int i = 0; i < 400; i++) {
        snprintf(arms[i], sizeof arms[i], "a%d", i);
        d[i] = delta("e", arms[i], 1, 1, 1.0, 1.0);
    }
    apply_ok(store, d, 400);
    storage->close(store);
    snprintf(data_mdb, cap, "%s/data.mdb", f->path);
    struct stat sb;
    assert_int_equal(stat(data_mdb, &sb), 0);
    return sb.st_size;
}

static void test_truncated_data_refused(void **state)
{
    fixture *f = *state;
    char data_mdb[400];
    off_t size = make_store_with_pages(f, data_mdb, sizeof data_mdb);
    assert_true(size > 4 * 8192); /* the cuts below remove pages that hold records */
    off_t cuts[] = {8191, size / 2, size - 4096};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(data_mdb, cuts[i]), 0);
        for (int attempt = 0; attempt < 2; attempt++) {
            child_open got = open_in_child(f->path);
            expect_child_error(got, MAB_ECORRUPT, data_mdb, "truncated");
            if (attempt == 0)
                print_message("%s\n", got.message);
        }
        /* Refused without being changed. */
        struct stat sb;
        assert_int_equal(stat(data_mdb, &sb), 0);
        assert_int_equal(sb.st_size, cuts[i]);
    }
}

static void test_short_and_empty_data_refused(void **state)
{
    fixture *f = *state;
    char data_mdb[400];
    make_store_with_pages(f, data_mdb, sizeof data_mdb);
    /* Empty: a store that lost its data, not a new store. */
    assert_int_equal(truncate(data_mdb, 0), 0);
    expect_child_error(open_in_child(f->path), MAB_ECORRUPT, data_mdb, "is empty");
    struct stat sb;
    assert_int_equal(stat(data_mdb, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    /* Too short to hold LMDB's meta pages. */
    assert_int_equal(truncate(data_mdb, 100), 0);
    expect_child_error(open_in_child(f->path), MAB_ECORRUPT, data_mdb, "meta page");
    /* Garbage where the meta pages should be. */
    int fd = open(data_mdb, O_WRONLY);
    assert_true(fd >= 0);
    char junk[16384];
    memset(junk, 'x', sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    expect_child_error(open_in_child(f->path), MAB_ECORRUPT, data_mdb, "not an LMDB");
}

/* A creation killed between LMDB creating data.mdb and writing its meta
   pages leaves an empty data.mdb beside the creation marker: that holds no
   data and is started afresh (test_lmdb_engine's kill rounds met it); the
   same empty file without the marker stays MAB_ECORRUPT (above). */
static void test_interrupted_creation_restarts(void **state)
{
    fixture *f = *state;
    char data_mdb[400], marker[400];
    assert_int_equal(mkdir(f->path, 0755), 0);
    snprintf(data_mdb, sizeof data_mdb, "%s/data.mdb", f->path);
    snprintf(marker, sizeof marker, "%s/data.mdb.creating", f->path);
    test_write_file(data_mdb, "%s", "");
    test_write_file(marker, "%s", "");
    void *store = open_ok(f);
    mab_error err = {0};
    mab_delta d = {"e", "a", {1, 1, 1.0, 1.0}};
    assert_int_equal(storage->apply(store, &d, 1, &err), MAB_OK);
    storage->close(store);
    assert_int_equal(access(marker, F_OK), -1); /* removed once the store was whole */
    store = open_ok(f);
    const char *ids[] = {"a"};
    mab_totals t;
    assert_int_equal(storage->load(store, "e", ids, 1, &t, &err), MAB_OK);
    assert_int_equal(t.pulls, 1);
    storage->close(store);
    /* Later, the store losing its data is corruption again: no marker. */
    assert_int_equal(truncate(data_mdb, 0), 0);
    expect_child_error(open_in_child(f->path), MAB_ECORRUPT, data_mdb, "is empty");
}

static void test_non_finite_record_refused(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    storage->close(store);
    struct {
        uint32_t version, reserved;
        uint64_t pulls, rewards;
        double sum, sum_sq;
    } bad[] = {{1, 0, 2, 1, NAN, 1.0}, {1, 0, 2, 1, 1.0, INFINITY}, {1, 0, 2, 1, -INFINITY, 1.0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmdb_put_raw(f->path, "records", "e\0a", 3, &bad[i], sizeof bad[i]);
        store = open_ok(f);
        mab_error err = {0};
        const char *ids[] = {"a"};
        mab_totals t;
        expect_error(storage->load(store, "e", ids, 1, &t, &err), MAB_ECORRUPT, &err,
                     "record e.a holds a reward sum that is not finite");
        assert_non_null(strstr(err.message, f->path));
        mab_delta d = delta("e", "a", 1, 0, 0, 0);
        expect_error(storage->apply(store, &d, 1, &err), MAB_ECORRUPT, &err, "e.a");
#if MAB_STORAGE_ABI_MINOR >= 1
        scanned seen = {.n = 0};
        expect_error(storage->scan(store, collect, &seen, &err), MAB_ECORRUPT, &err, "e.a");
        assert_int_equal(seen.n, 0);
#endif
        storage->close(store);
    }
}

/* Several processes creating one new store at once: while the first writes
   data.mdb's meta pages, the others must wait for them, not call the empty
   file corrupt. Rounds of children released together by closing a pipe. */
static void test_concurrent_creation(void **state)
{
    fixture *f = *state;
    enum { ROUNDS = 30, CHILDREN = 6 };
    int failures = 0;
    char first_failure[MAB_ERROR_MAX] = "";
    for (int round = 0; round < ROUNDS; round++) {
        char path[400];
        snprintf(path, sizeof path, "%s/new%d", f->dir, round);
        int gate[2], report[2];
        assert_int_equal(pipe(gate), 0);
        assert_int_equal(pipe(report), 0);
        fflush(NULL);
        pid_t pids[CHILDREN];
        for (int c = 0; c < CHILDREN; c++) {
            pids[c] = fork();
            assert_true(pids[c] >= 0);
            if (pids[c] == 0) {
                close(gate[1]);
                close(report[0]);
                char byte;
                (void)!read(gate[0], &byte, 1); /* returns when the parent closes the gate */
                mab_error err = {0, ""};
                void *store = NULL;
                int rc = store_open_with(path, NULL, &store, &err);
                if (rc == MAB_OK)
                    storage->close(store);
                char line[MAB_ERROR_MAX] = "";
                if (rc != MAB_OK)
                    snprintf(line, sizeof line, "%d %s", rc, err.message);
                (void)!write(report[1], line, sizeof line);
                _exit(rc == MAB_OK ? 0 : 1);
            }
        }
        close(gate[0]);
        close(report[1]);
        close(gate[1]); /* go */
        char line[MAB_ERROR_MAX];
        while (read(report[0], line, sizeof line) == (ssize_t)sizeof line)
            if (line[0] && !first_failure[0])
                snprintf(first_failure, sizeof first_failure, "%s", line);
        close(report[0]);
        for (int c = 0; c < CHILDREN; c++) {
            int status;
            assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failures++;
        }
    }
    if (failures)
        fail_msg("%d of %d opens of a store being created failed; first: %s", failures,
                 ROUNDS * CHILDREN, first_failure);
}

/* Mount a tmpfs of `size` at DIR/disk and fill it up; returns 0, or -1 (with
   a loud message) when this machine does not let the test mount one. */
static int mount_full_tmpfs(fixture *f, const char *size, char *filler, size_t cap)
{
    char disk[300];
    snprintf(disk, sizeof disk, "%s/disk", f->dir);
    assert_int_equal(mkdir(disk, 0755), 0);
    char options[64];
    snprintf(options, sizeof options, "size=%s", size);
    if (mount("tmpfs", disk, "tmpfs", 0, options) != 0) {
        fprintf(stderr,
                "\n*** SKIPPED: cannot mount a tmpfs at %s (%s); the full-disk test needs "
                "root or CAP_SYS_ADMIN. It did NOT pass. ***\n\n",
                disk, strerror(errno));
        return -1;
    }
    snprintf(f->mount, sizeof f->mount, "%s", disk);
    snprintf(filler, cap, "%s/filler", disk);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char block[4096];
    memset(block, 0xab, sizeof block);
    while (write(fd, block, sizeof block) > 0)
        ;
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(fsync(fd), 0);
    close(fd);
    return 0;
}

static int disk_skipped;

static void test_new_store_on_full_disk(void **state)
{
    fixture *f = *state;
    char filler[400];
    if (mount_full_tmpfs(f, "1m", filler, sizeof filler) != 0) {
        disk_skipped = 1;
        skip();
    }
    struct stat sb;
    assert_int_equal(stat(filler, &sb), 0);
    /* From no space at all to a little less than a new store needs. */
    off_t frees[] = {0, 4096, 8192, 12288, 16384, 24576};
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        assert_int_equal(truncate(filler, sb.st_size - frees[i]), 0);
        char path[400];
        snprintf(path, sizeof path, "%s/store%zu", f->mount, i);
        child_open got = open_in_child(path);
        if (got.signal)
            fail_msg("with %lld bytes free, creating %s killed the process with signal %d (%s)",
                     (long long)frees[i], path, got.signal, strsignal(got.signal));
        if (got.rc == MAB_OK)
            fail_msg("with %lld bytes free, %s was created: the test needs a disk too small",
                     (long long)frees[i], path);
        expect_child_error(got, MAB_ESTORAGE, path, "No space left on device");
        print_message("%lld bytes freed: %s\n", (long long)frees[i], got.message);
        assert_int_equal(truncate(filler, sb.st_size), 0);
    }
    /* With room, the same disk takes a new store, also where a creation
       failed: what it left behind is not taken for a damaged store. */
    assert_int_equal(unlink(filler), 0);
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/store%zu", f->mount, i);
        child_open got = open_in_child(path);
        if (got.signal || got.rc != MAB_OK)
            fail_msg("with the disk emptied, opening %s: signal %d, %d %s", path, got.signal,
                     got.rc, got.message);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_increments_accumulate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_removes_one_experiment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_apply_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_environment_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_record_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_in_process_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_processes_share_one_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_write, setup, teardown),
#if MAB_STORAGE_ABI_MINOR >= 1
        cmocka_unit_test_setup_teardown(test_scan_and_replace, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(test_claim_first_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_log_names_what_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_claims_swept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_data_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_and_empty_data_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_creation_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_finite_record_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_retention_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets_grow_the_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_without_bucket_databases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_bucket_writes, setup, teardown),
    };
    /* The full-disk test is its own CTest entry, so that a machine where it
       cannot mount a tmpfs reports it skipped (77), never passed. */
    const struct CMUnitTest disk_tests[] = {
        cmocka_unit_test_setup_teardown(test_new_store_on_full_disk, setup, teardown),
    };
    if (argc > 1 && strcmp(argv[1], "full-disk") == 0) {
        int failed = cmocka_run_group_tests(disk_tests, group_setup, group_teardown);
        return failed ? failed : disk_skipped ? 77 : 0;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
