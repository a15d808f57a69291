/*
 * test_storage_json.c - the json_file storage plugin, loaded as the real .so.
 *
 * Every test gets a fresh mkdtemp directory holding the store "s.json" (and
 * its s.json.journal / s.json.lock / s.json.tmp), removed afterwards. A
 * "crash image" (crash_image) is a copy of the snapshot and the journal as
 * they are on disk while the store is open: what a crash at that moment
 * leaves, opened without the clean close that folds the journal in.
 * MAB_TEST_FILTER=NAME runs one test. Tests that need a second
 * process fork; children report through exit codes and pipes only, never
 * through cmocka's asserts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/records.h"
#include "mab/storage.h"
#include "child.h"
#include "support.h"

static void *plugin_handle;
static const mab_storage *storage;

typedef struct fixture {
    char dir[64];
    char path[128];     /* DIR/s.json */
    char tmp_path[140]; /* DIR/s.json.tmp */
} fixture;

/* ---- helpers ---------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    storage = test_load_storage(MAB_PLUGIN_DIR "/json_file.so", &plugin_handle);
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
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mab-test-storage-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/s.json", f->dir);
    snprintf(f->tmp_path, sizeof f->tmp_path, "%s.tmp", f->path);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int store_open(const char *path, void **store, mab_error *err)
{
    char json[256];
    snprintf(json, sizeof json, "{\"path\":\"%s\"}", path);
    mab_params *params;
    int rc = mab_params_parse(json, "test", &params, err);
    if (rc != MAB_OK)
        return rc;
    rc = storage->open(params, store, err);
    mab_params_free(params);
    return rc;
}

static void *open_ok(const fixture *f)
{
    void *store = NULL;
    mab_error err = {0};
    int rc = store_open(f->path, &store, &err);
    if (rc != MAB_OK)
        fail_msg("open %s: %d %s", f->path, rc, err.message);
    return store;
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
    /* Exact, bit for bit: the file must round-trip doubles. */
    assert_memory_equal(&got.reward_sum, &sum, sizeof sum);
    assert_memory_equal(&got.reward_sum_sq, &sum_sq, sizeof sum_sq);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* The file's bytes (NUL-terminated); the caller frees. */
static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/*
 * Make every write more than 20 bytes past the journal's current end fail,
 * as a full disk would (a torn entry is left, then EFBIG: RLIMIT_FSIZE holds for root too, and SIGXFSZ is ignored so
 * the write returns the error). journal_writable() lifts it.
 */
static void journal_unwritable(const fixture *f)
{
    char path[160];
    snprintf(path, sizeof path, "%s.journal", f->path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = (rlim_t)sb.st_size + 20; /* the first 20 bytes of an entry land */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void journal_writable(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* The snapshot's text after a clean close (which folds the journal in);
   the store is opened again in *store. */
static char *snapshot_after_close(const fixture *f, void **store);
static void crash_image(const fixture *f, char *out, size_t cap);
static void *open_path_ok(const char *path);

static mab_delta delta(const char *experiment, const char *arm, uint64_t pulls,
                       uint64_t rewards, double sum, double sum_sq)
{
    mab_delta d = {experiment, arm, {pulls, rewards, sum, sum_sq}};
    return d;
}

/* ---- round trip and accumulation -------------------------------------- */

static void test_round_trip(void **state)
{
    fixture *f = *state;
    const double big = 9007199254740992.0; /* 2^53 */
    void *store = open_ok(f);
    assert_true(exists(f->path)); /* an empty snapshot is written at open */
    mab_delta batch[] = {
        delta("color_btn", "green", 3, 2, 0.1, 0.01),
        delta("color_btn", "red", 1, 1, 1.0 / 3.0, 1.0 / 9.0),
        delta("color_btn", "blue", 7, 0, 0, 0),
        delta("color_btn", "green", 1, 1, 0.2, 0.04),
        delta("txt_btn", "casual", (uint64_t)big, (uint64_t)big, -2.5e-300, 1.7976931348623157e308),
        delta("txt_btn", "neutral \"quoted\" \\ ü", 5, 4, 123456.789, 1e-320),
    };
    apply_ok(store, batch, sizeof batch / sizeof batch[0]);
    storage->close(store);

    store = open_ok(f);
    const char *ids[] = {"green", "red"}; /* blue left out: as if removed from the config */
    mab_totals t[2];
    mab_error err = {0};
    assert_int_equal(storage->load(store, "color_btn", ids, 2, t, &err), MAB_OK);
    assert_totals(t[0], 4, 3, 0.1 + 0.2, 0.01 + 0.04);
    assert_totals(t[1], 1, 1, 1.0 / 3.0, 1.0 / 9.0);
    assert_totals(load_one(store, "txt_btn", "casual"), (uint64_t)big, (uint64_t)big, -2.5e-300,
                  1.7976931348623157e308);
    assert_totals(load_one(store, "txt_btn", "neutral \"quoted\" \\ ü"), 5, 4, 123456.789,
                  1e-320);
    /* A write that touches only green keeps every other record. */
    mab_delta more = delta("color_btn", "green", 1, 0, 0, 0);
    apply_ok(store, &more, 1);
    storage->close(store);

    store = open_ok(f);
    assert_totals(load_one(store, "color_btn", "blue"), 7, 0, 0, 0);
    assert_totals(load_one(store, "color_btn", "green"), 5, 3, 0.1 + 0.2, 0.01 + 0.04);
    assert_totals(load_one(store, "txt_btn", "casual"), (uint64_t)big, (uint64_t)big, -2.5e-300,
                  1.7976931348623157e308);
    storage->close(store);

    char *text = read_text(f->path);
    assert_non_null(strstr(text, "\"format\":\t\"mab-json-storage\""));
    assert_non_null(strstr(text, "9007199254740992"));
    free(text);
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
    assert_totals(load_one(store, "e", "nope"), 0, 0, 0, 0);
    assert_totals(load_one(store, "nope", "a"), 0, 0, 0, 0);
    apply_ok(store, NULL, 0); /* an empty batch is fine */
    storage->close(store);

    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 10, 10, sum, sum_sq);
    storage->close(store);
}

/* ---- one process at a time -------------------------------------------- */

static void test_second_opener_refused(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);

    /* The same process, twice. */
    void *again = NULL;
    mab_error err = {0};
    char expect[64];
    snprintf(expect, sizeof expect, "in use by pid %ld", (long)getpid());
    assert_int_equal(store_open(f->path, &again, &err), MAB_EBUSY);
    assert_int_equal(err.code, MAB_EBUSY);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, expect));
    assert_null(again);

    /* Another process, while this one holds the store. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        void *s = NULL;
        mab_error e = {0};
        char want[64];
        snprintf(want, sizeof want, "in use by pid %ld", (long)getppid());
        int rc = store_open(f->path, &s, &e);
        _exit(rc != MAB_EBUSY ? 1 : !strstr(e.message, want) ? 2 : 0);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The refused openers changed nothing. */
    mab_delta d = delta("e", "a", 1, 0, 0, 0);
    apply_ok(store, &d, 1);
    storage->close(store);

    /* Closed: the next opener gets it. */
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 1, 0, 0, 0);
    storage->close(store);
}

/* Child: open the store, say 'y' (or 'n') on done, and hold it. */
static void holder_child(void *arg, int go, int done)
{
    const fixture *f = arg;
    (void)go;
    void *s = NULL;
    char ok = store_open(f->path, &s, NULL) == MAB_OK ? 'y' : 'n';
    if (write(done, &ok, 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

static void test_lock_released_when_holder_killed(void **state)
{
    fixture *f = *state;
    test_child holder = test_child_fork(holder_child, f);
    pid_t child = holder.pid;
    char ok = 0;
    assert_int_equal(test_child_read(&holder, &ok, 1), 0);
    assert_int_equal(ok, 'y');

    void *store = NULL;
    mab_error err = {0};
    char expect[64];
    snprintf(expect, sizeof expect, "in use by pid %ld", (long)child);
    assert_int_equal(store_open(f->path, &store, &err), MAB_EBUSY);
    assert_non_null(strstr(err.message, expect));

    test_child_kill(&holder, 0);
    test_child_close(&holder);
    store = open_ok(f);
    storage->close(store);
}

/* ---- corrupt files are refused and left alone ------------------------- */

static void expect_refused(const fixture *f, const char *content, const char *fragment)
{
    write_text(f->path, content);
    for (int attempt = 0; attempt < 2; attempt++) { /* twice: the lock was released */
        void *store = NULL;
        mab_error err = {0};
        int rc = store_open(f->path, &store, &err);
        if (rc != MAB_ECORRUPT)
            fail_msg("expected MAB_ECORRUPT, got %d: %s", rc, err.message);
        assert_null(store);
        assert_non_null(strstr(err.message, f->path));
        if (!strstr(err.message, fragment))
            fail_msg("\"%s\" does not contain \"%s\"", err.message, fragment);
    }
    char *after = read_text(f->path);
    assert_string_equal(after, content);
    free(after);
    assert_false(exists(f->tmp_path));
}

static void test_corrupt_truncated(void **state)
{
    expect_refused(*state, "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{",
                   "line 1, column");
    expect_refused(*state, "{\"format\":\"mab-json-storage\",\n\"version\":1,\n\"experiments\":{x}}",
                   "line 3, column 1"); /* where cJSON stopped: at or just past the 'x' */
    expect_refused(*state, "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{}} extra",
                   "line 1");
}

static void test_corrupt_bad_field(void **state)
{
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"color_btn\":"
                   "{\"green\":{\"pulls\":\"7\",\"rewards\":0,\"reward_sum\":0,"
                   "\"reward_sum_sq\":0}}}}",
                   "experiments.color_btn.green.pulls: expected a non-negative integer");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":-1,\"rewards\":0,\"reward_sum\":0,\"reward_sum_sq\":0}}}}",
                   "experiments.e.a.pulls");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":1,\"rewards\":0.5,\"reward_sum\":0,\"reward_sum_sq\":0}}}}",
                   "experiments.e.a.rewards");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":1,\"rewards\":0,\"reward_sum\":null,\"reward_sum_sq\":0}}}}",
                   "experiments.e.a.reward_sum: expected a finite number");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":1,\"rewards\":0,\"reward_sum\":0}}}}",
                   "experiments.e.a.reward_sum_sq");
    /* Numbers past a double read as infinite: refused, not loaded. */
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":1,\"rewards\":1,\"reward_sum\":1e999,\"reward_sum_sq\":1}}}}",
                   "experiments.e.a.reward_sum: expected a finite number");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":"
                   "{\"a\":{\"pulls\":1,\"rewards\":1,\"reward_sum\":1,\"reward_sum_sq\":-1e999}}}}",
                   "experiments.e.a.reward_sum_sq: expected a finite, non-negative number");
    expect_refused(*state,
                   "{\"format\":\"mab-json-storage\",\"version\":1,\"experiments\":{\"e\":[]}}",
                   "experiments.e: expected an object");
    expect_refused(*state, "{\"format\":\"something-else\",\"version\":1,\"experiments\":{}}",
                   "format");
    expect_refused(*state, "[1,2,3]", "top level");
}

static void test_corrupt_unknown_version(void **state)
{
    expect_refused(*state, "{\"format\":\"mab-json-storage\",\"version\":2,\"experiments\":{}}",
                   "version 2");
}

static void test_corrupt_empty(void **state)
{
    expect_refused(*state, "", "empty");
}

static void test_unwritable_location(void **state)
{
    fixture *f = *state;
    char path[200];
    snprintf(path, sizeof path, "%s/no/such/dir/s.json", f->dir);
    void *store = NULL;
    mab_error err = {0};
    assert_int_equal(store_open(path, &store, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, strerror(ENOENT)));

    /* A missing "path" is a config error. */
    mab_params *params;
    assert_int_equal(mab_params_parse("{}", "test", &params, &err), MAB_OK);
    assert_int_equal(storage->open(params, &store, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "path"));
    mab_params_free(params);
}

/* ---- crash safety ----------------------------------------------------- */

#define KILL_ARMS 2000
#define KILL_ROUNDS 20

static void arm_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, "arm%04d", i);
}

/* Child: add +1 pull to kill.arm0000 forever, reporting each durable value. */
static void kill_child(void *arg, int go, int report_fd)
{
    const fixture *f = arg;
    (void)go;
    void *store = NULL;
    if (store_open(f->path, &store, NULL) != MAB_OK)
        _exit(2);
    const char *ids[] = {"arm0000"};
    mab_totals t;
    if (storage->load(store, "kill", ids, 1, &t, NULL) != MAB_OK)
        _exit(3);
    uint64_t pulls = t.pulls;
    /* Open: the parent's delay before the kill starts now. */
    if (write(report_fd, &pulls, sizeof pulls) != (ssize_t)sizeof pulls)
        _exit(5);
    mab_delta d = delta("kill", "arm0000", 1, 0, 0, 0);
    for (;;) {
        if (storage->apply(store, &d, 1, NULL) != MAB_OK)
            _exit(4);
        pulls++;
        if (write(report_fd, &pulls, sizeof pulls) != (ssize_t)sizeof pulls)
            _exit(5);
    }
}

static void check_complete_snapshot(void *store)
{
    static const char *ids[KILL_ARMS];
    static char names[KILL_ARMS][16];
    static mab_totals totals[KILL_ARMS];
    for (int i = 0; i < KILL_ARMS; i++) {
        arm_name(names[i], sizeof names[i], i);
        ids[i] = names[i];
    }
    assert_int_equal(storage->load(store, "kill", ids, KILL_ARMS, totals, NULL), MAB_OK);
    for (int i = 0; i < KILL_ARMS; i++) {
        assert_int_equal(totals[i].rewards, 1);
        assert_true(totals[i].reward_sum == 0.5);
        if (i > 0)
            assert_int_equal(totals[i].pulls, (uint64_t)i);
    }
}

static void test_kill_during_write(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    static mab_delta seed[KILL_ARMS];
    static char names[KILL_ARMS][16];
    for (int i = 0; i < KILL_ARMS; i++) {
        arm_name(names[i], sizeof names[i], i);
        seed[i] = delta("kill", names[i], (uint64_t)i, 1, 0.5, 0.25);
    }
    apply_ok(store, seed, KILL_ARMS);
    storage->close(store);

    unsigned rng = 20240601u; /* fixed seed: the same delays on every run */
    uint64_t last_seen = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        test_child child = test_child_fork(kill_child, f);
        uint64_t opened;
        assert_int_equal(test_child_read(&child, &opened, sizeof opened), 0);
        assert_int_equal(opened, last_seen);
        /* Odd rounds wait for the child's first durable write before the
         * delay starts (an event, not a time: on a loaded machine the child
         * may not get a write done in 80 ms), so the store grows whatever
         * the load; even rounds start it at the open. */
        uint64_t reported = last_seen, value;
        if (round % 2 == 1) {
            assert_int_equal(test_child_read(&child, &value, sizeof value), 0);
            assert_int_equal(value, reported + 1);
            reported = value;
        }
        rng = rng * 1103515245u + 12345u;
        /* 2 to 80 ms: a commit takes a few ms, a snapshot of 2000 records
         * ~15 ms on a slow disk, so the kill lands before the first write,
         * between writes and in them. */
        long delay_us = 2000 + (long)((rng >> 8) % 78000);
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = delay_us * 1000}, NULL);
        test_child_kill(&child, round);

        /* The last value the child knew durable; the write in flight may have landed too. */
        while (test_child_read(&child, &value, sizeof value) == 0) {
            assert_int_equal(value, reported + 1);
            reported = value;
        }
        test_child_close(&child);

        store = open_ok(f);
        uint64_t pulls = load_one(store, "kill", "arm0000").pulls;
        if (pulls != reported && pulls != reported + 1)
            fail_msg("round %d: file has %" PRIu64 " pulls, child reported %" PRIu64, round,
                     pulls, reported);
        assert_true(pulls >= last_seen);
        check_complete_snapshot(store);
        storage->close(store);
        last_seen = pulls;
    }
    assert_true(last_seen >= KILL_ROUNDS / 2); /* a write at least in each odd round */
}

/* ---- failures change nothing ------------------------------------------ */

static void test_failed_apply_is_all_or_nothing(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta first[] = {delta("e", "a", 2, 1, 0.5, 0.25), delta("e", "b", 1, 0, 0, 0)};
    apply_ok(store, first, 2);

    /* The journal cannot grow: the entry is not written. */
    journal_unwritable(f);
    mab_delta failing[] = {delta("e", "a", 5, 5, 5, 5), delta("e", "new", 1, 1, 1, 1),
                           delta("e", "a", 1, 0, 0, 0), delta("other", "x", 3, 0, 0, 0)};
    mab_error err = {0};
    assert_int_equal(storage->apply(store, failing, 4, &err), MAB_ESTORAGE);
    assert_int_equal(err.code, MAB_ESTORAGE);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, strerror(EFBIG)));
    assert_totals(load_one(store, "e", "a"), 2, 1, 0.5, 0.25);
    assert_totals(load_one(store, "e", "b"), 1, 0, 0, 0);
    assert_totals(load_one(store, "e", "new"), 0, 0, 0, 0);
    assert_totals(load_one(store, "other", "x"), 0, 0, 0, 0);

    /* Reset fails the same way and keeps the records. */
    assert_int_equal(storage->reset(store, "e", &err), MAB_ESTORAGE);
    assert_totals(load_one(store, "e", "a"), 2, 1, 0.5, 0.25);

    journal_writable();
    /* A crash now: the failed entries were cut off, never replayed. */
    char image[200];
    crash_image(f, image, sizeof image);
    void *copy = open_path_ok(image);
    assert_totals(load_one(copy, "e", "a"), 2, 1, 0.5, 0.25);
    assert_totals(load_one(copy, "e", "new"), 0, 0, 0, 0);
    assert_totals(load_one(copy, "other", "x"), 0, 0, 0, 0);
    storage->close(copy);
    /* The next commit lands where the failed ones did not: a crash after it
       finds it. */
    mab_delta after_failure = delta("e", "b", 1, 0, 0, 0);
    apply_ok(store, &after_failure, 1);
    crash_image(f, image, sizeof image);
    copy = open_path_ok(image);
    assert_totals(load_one(copy, "e", "b"), 2, 0, 0, 0);
    assert_totals(load_one(copy, "e", "new"), 0, 0, 0, 0);
    storage->close(copy);
    mab_delta next[] = {delta("e", "a", 1, 1, 0.25, 0.0625), delta("e", "c", 4, 0, 0, 0)};
    apply_ok(store, next, 2);
    assert_totals(load_one(store, "e", "a"), 3, 2, 0.75, 0.3125);
    assert_totals(load_one(store, "e", "new"), 0, 0, 0, 0);
    storage->close(store);
    assert_false(exists(f->tmp_path));

    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 3, 2, 0.75, 0.3125);
    assert_totals(load_one(store, "e", "b"), 2, 0, 0, 0);
    assert_totals(load_one(store, "e", "c"), 4, 0, 0, 0);
    assert_totals(load_one(store, "e", "new"), 0, 0, 0, 0);
    assert_totals(load_one(store, "other", "x"), 0, 0, 0, 0);
    storage->close(store);
}

/* ---- time buckets (storage ABI 1.5) ----------------------------------- */

#define HOUR INT64_C(3600)
#define T0 (INT64_C(1700000000) / HOUR * HOUR)

static int count_buckets(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                         const mab_totals *add)
{
    (void)experiment, (void)arm, (void)bucket, (void)add;
    (*(size_t *)ctx)++;
    return 0;
}

static size_t n_buckets(void *store)
{
    size_t n = 0;
    mab_error err = {0};
    assert_int_equal(storage->scan_buckets(store, count_buckets, &n, &err), MAB_OK);
    return n;
}

static void apply_buckets_ok(void *store, const mab_delta *d, size_t nd,
                             const mab_bucket_delta *b, size_t nb, int64_t keep_from)
{
    mab_error err = {0};
    int rc = storage->apply_buckets(store, d, nd, NULL, 0, b, nb, keep_from, &err);
    if (rc != MAB_OK)
        fail_msg("apply_buckets: %d %s", rc, err.message);
}

/* A file of a version without buckets reads; the "buckets" field appears
   only while there are buckets, so a store without them is written as
   before; buckets of experiments and arms in any order read back sorted. */
static void test_buckets_file_format(void **state)
{
    fixture *f = *state;
    write_text(f->path, "{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": "
                        "{\"e\": {\"a\": {\"pulls\": 2, \"rewards\": 1, \"reward_sum\": 0.5, "
                        "\"reward_sum_sq\": 0.25}}}}");
    void *store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 2, 1, 0.5, 0.25);
    assert_int_equal(n_buckets(store), 0);
    mab_delta d = delta("e", "a", 1, 0, 0, 0);
    apply_ok(store, &d, 1);
    char *text = snapshot_after_close(f, &store);
    assert_null(strstr(text, "buckets"));
    free(text);
    mab_bucket_delta b[] = {{"z", "b", T0, {1, 0, 0, 0}}, {"e", "b", T0 + HOUR, {1, 0, 0, 0}},
                            {"e", "b", T0, {2, 0, 0, 0}}, {"e", "a", T0, {3, 0, 0, 0}}};
    apply_buckets_ok(store, &d, 1, b, 4, INT64_MIN);
    text = snapshot_after_close(f, &store);
    assert_non_null(strstr(text, "\"buckets\""));
    free(text);
    storage->close(store);
    store = open_ok(f);
    assert_int_equal(n_buckets(store), 4);
    assert_totals(load_one(store, "e", "a"), 4, 1, 0.5, 0.25);
    /* Retention past every bucket: the field goes, in the same write. */
    apply_buckets_ok(store, NULL, 0, NULL, 0, T0 + 2 * HOUR);
    assert_int_equal(n_buckets(store), 0);
    text = snapshot_after_close(f, &store);
    assert_null(strstr(text, "buckets"));
    free(text);
    storage->close(store);
}

/* A write that fails keeps the buckets in memory as they were (the new ones
   absent, the old ones not retired), and lands whole once it can. */
static void test_buckets_failed_write(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_bucket_delta old = {"e", "a", T0 - 100 * HOUR, {1, 1, 1, 1}};
    apply_buckets_ok(store, NULL, 0, &old, 1, INT64_MIN);
    journal_unwritable(f);
    mab_delta d = delta("e", "a", 1, 1, 1, 1);
    mab_bucket_delta b = {"e", "a", T0, {1, 1, 1, 1}};
    mab_error err = {0};
    assert_int_equal(storage->apply_buckets(store, &d, 1, NULL, 0, &b, 1, T0 - HOUR, &err),
                     MAB_ESTORAGE);
    assert_non_null(strstr(err.message, f->path));
    assert_int_equal(n_buckets(store), 1);
    assert_totals(load_one(store, "e", "a"), 0, 0, 0, 0);
    /* reset fails the same way and keeps them */
    assert_int_equal(storage->reset(store, "e", &err), MAB_ESTORAGE);
    assert_int_equal(n_buckets(store), 1);
    journal_writable();
    apply_buckets_ok(store, &d, 1, &b, 1, T0 - HOUR);
    assert_int_equal(n_buckets(store), 1); /* the old one retired, the new one in */
    storage->close(store);
    store = open_ok(f);
    assert_int_equal(n_buckets(store), 1);
    assert_totals(load_one(store, "e", "a"), 1, 1, 1, 1);
    /* An experiment with buckets only: reset writes their removal. */
    mab_bucket_delta only = {"only", "a", T0, {1, 0, 0, 0}};
    apply_buckets_ok(store, NULL, 0, &only, 1, INT64_MIN);
    assert_int_equal(n_buckets(store), 2);
    assert_int_equal(storage->reset(store, "only", &err), MAB_OK);
    storage->close(store);
    store = open_ok(f);
    assert_int_equal(n_buckets(store), 1);
    storage->close(store);
}

/* ---- reset ------------------------------------------------------------ */

static void test_reset_removes_one_experiment(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta batch[] = {delta("gone", "a", 1, 1, 1, 1), delta("kept", "a", 2, 0, 0, 0),
                         delta("gone", "b", 3, 0, 0, 0), delta("kept", "b", 4, 1, 0.5, 0.25)};
    apply_ok(store, batch, 4);
    mab_error err = {0};
    assert_int_equal(storage->reset(store, "gone", &err), MAB_OK);
    assert_int_equal(storage->reset(store, "never-there", &err), MAB_OK);
    assert_totals(load_one(store, "gone", "a"), 0, 0, 0, 0);
    assert_totals(load_one(store, "gone", "b"), 0, 0, 0, 0);
    assert_totals(load_one(store, "kept", "a"), 2, 0, 0, 0);
    assert_totals(load_one(store, "kept", "b"), 4, 1, 0.5, 0.25);
    /* The table still works after the removal. */
    mab_delta again[] = {delta("gone", "a", 1, 0, 0, 0), delta("kept", "a", 1, 0, 0, 0)};
    apply_ok(store, again, 2);
    storage->close(store);

    store = open_ok(f);
    assert_totals(load_one(store, "gone", "a"), 1, 0, 0, 0);
    assert_totals(load_one(store, "gone", "b"), 0, 0, 0, 0);
    assert_totals(load_one(store, "kept", "a"), 3, 0, 0, 0);
    assert_totals(load_one(store, "kept", "b"), 4, 1, 0.5, 0.25);
    storage->close(store);
    char *text = read_text(f->path);
    assert_null(strstr(text, "\"b\":\t{\n\t\t\t\"pulls\":\t3"));
    free(text);
}

/* ---- claims (storage ABI 1.3) ---------------------------------------------- */

static int claim_rc(void *store, uint8_t n, int64_t expires_at, const mab_delta *d,
                    size_t nd, mab_error *err)
{
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    memset(id, 0x3c, sizeof id);
    id[15] = n;
    mab_claim c = {id, expires_at, d, nd, -1};
    int rc = storage->claim(store, &c, 1, 0, err);
    return rc == MAB_OK ? c.result : rc;
}

/* First wins; the claim is written with the records (one snapshot) and read
   back after a reopen; expired claims are left out of the next snapshot; a
   claim whose snapshot cannot be written claims and applies nothing. */
static void test_claims(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_error err = {0};
    int64_t now = (int64_t)time(NULL), later = now + 3600;
    mab_delta d = delta("e", "a", 0, 1, 0.5, 0.25);
    assert_int_equal(claim_rc(store, 1, later, &d, 1, &err), MAB_OK);
    assert_int_equal(claim_rc(store, 1, later, &d, 1, &err), MAB_ECLAIMED);
    assert_int_equal(claim_rc(store, 2, now - 1, NULL, 0, &err), MAB_OK); /* expired at once */
    assert_totals(load_one(store, "e", "a"), 0, 1, 0.5, 0.25);
    /* A crash now: the journal holds the claim with its reward. */
    char image[200];
    crash_image(f, image, sizeof image);
    void *copy = open_path_ok(image);
    assert_int_equal(claim_rc(copy, 1, later, &d, 1, &err), MAB_ECLAIMED);
    assert_totals(load_one(copy, "e", "a"), 0, 1, 0.5, 0.25);
    storage->close(copy);
    char *text = snapshot_after_close(f, &store);
    assert_non_null(strstr(text, "\"claims\""));
    /* Only the store's reader takes claims: the plain reader (export,
       import) calls the field unknown. */
    mab_record *records = NULL;
    size_t n_records = 0;
    assert_int_equal(mab_records_parse(text, strlen(text), "s.json", MAB_RECORDS_JSON_STORE,
                                       &records, &n_records, &err),
                     MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "claims: unknown field"));
    assert_non_null(strstr(text, "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c01"));
    /* Written already expired: not in the file. */
    assert_null(strstr(text, "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c02"));
    free(text);

    /* An entry that cannot be written: nothing claimed, nothing added. */
    journal_unwritable(f);
    assert_int_equal(claim_rc(store, 3, later, &d, 1, &err), MAB_ESTORAGE);
    journal_writable();
    assert_totals(load_one(store, "e", "a"), 0, 1, 0.5, 0.25);
    storage->close(store);

    store = open_ok(f); /* a restart */
    assert_int_equal(claim_rc(store, 1, later, NULL, 0, &err), MAB_ECLAIMED);
    assert_int_equal(claim_rc(store, 2, later, NULL, 0, &err), MAB_OK);
    assert_int_equal(claim_rc(store, 3, later, &d, 1, &err), MAB_OK);
    assert_totals(load_one(store, "e", "a"), 0, 2, 1.0, 0.5);
    storage->close(store);

    /* A malformed claim in the file is refused at open, naming it. */
    write_text(f->path, "{\"format\": \"mab-json-storage\", \"version\": 1, \"experiments\": {},"
                        " \"claims\": {\"xyz\": 5}}");
    void *refused = NULL;
    assert_int_equal(store_open(f->path, &refused, &err), MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "claims.xyz: expected 32 lowercase hex digits"));
}

/* ---- the journal -------------------------------------------------------- */

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* What a crash now would leave: the snapshot and the journal as they are on
   disk, copied to DIR/c.json and DIR/c.json.journal (whose path is put in
   out). The store stays open. */
static void crash_image(const fixture *f, char *out, size_t cap)
{
    char from[200], to[200];
    snprintf(out, cap, "%s/c.json", f->dir);
    copy_file(f->path, out);
    snprintf(from, sizeof from, "%s.journal", f->path);
    snprintf(to, sizeof to, "%s.journal", out);
    copy_file(from, to);
}

static void *open_path_ok(const char *path)
{
    void *store = NULL;
    mab_error err = {0};
    int rc = store_open(path, &store, &err);
    if (rc != MAB_OK)
        fail_msg("open %s: %d %s", path, rc, err.message);
    return store;
}

/* A crash image replays every commit the journal holds beyond the snapshot. */
static void test_journal_replays_after_crash(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta d1[] = {delta("e", "a", 1, 1, 0.5, 0.25), delta("e", "b", 2, 0, 0, 0)};
    mab_delta d2[] = {delta("e", "a", 1, 0, 0.1, 0.01), delta("g", "x", 7, 7, 7, 7)};
    apply_ok(store, d1, 2);
    apply_ok(store, d2, 2);
    mab_error err = {0};
    assert_int_equal(storage->reset(store, "g", &err), MAB_OK);
    apply_ok(store, d2, 1);
    char image[200];
    crash_image(f, image, sizeof image);
    /* The snapshot alone holds none of it: the journal does. */
    char *text = read_text(image);
    assert_null(strstr(text, "\"e\""));
    free(text);
    void *copy = open_path_ok(image);
    /* Replayed bit for bit: 0.5 + 0.1 + 0.1 in that order, as the writer added. */
    mab_totals want = load_one(store, "e", "a");
    mab_totals got = load_one(copy, "e", "a");
    assert_int_equal(got.pulls, 3);
    assert_memory_equal(&got, &want, sizeof got);
    assert_totals(load_one(copy, "e", "b"), 2, 0, 0, 0);
    assert_totals(load_one(copy, "g", "x"), 0, 0, 0, 0); /* reset replayed too */
    storage->close(copy);
    storage->close(store);
}

/* The image after commits 1 and 2, then the journal's length after 2 and 3. */
static void three_commits(const fixture *f, char *image, size_t cap, long *after2, long *after3)
{
    void *store = open_ok(f);
    mab_delta c1 = delta("e", "a", 1, 0, 0, 0);
    mab_delta c2[] = {delta("e", "a", 2, 0, 0, 0), delta("e", "b", 1, 0, 0, 0)};
    mab_delta c3[] = {delta("e", "a", 4, 0, 0, 0), delta("e", "c", 1, 0, 0, 0)};
    apply_ok(store, &c1, 1);
    apply_ok(store, c2, 2);
    char journal[220];
    snprintf(journal, sizeof journal, "%s.journal", f->path);
    *after2 = file_size(journal);
    apply_ok(store, c3, 2);
    *after3 = file_size(journal);
    crash_image(f, image, cap);
    storage->close(store);
}

/* A journal cut anywhere inside its last entry, or with any byte of it
   flipped: the entry is ignored, the two before it are not lost, the open
   cuts the tail off (the check and a read-only open leave it). A flipped
   byte in the middle entry ends the journal there. */
static void test_journal_torn_tail(void **state)
{
    fixture *f = *state;
    char image[200], journal[220], saved[220];
    long after2, after3;
    three_commits(f, image, sizeof image, &after2, &after3);
    snprintf(journal, sizeof journal, "%s.journal", image);
    snprintf(saved, sizeof saved, "%s/saved.journal", f->dir);
    copy_file(journal, saved);
    char snap_saved[220];
    snprintf(snap_saved, sizeof snap_saved, "%s/saved.json", f->dir);
    copy_file(image, snap_saved);
    assert_true(after3 > after2 && after2 > MAB_RECORDS_JOURNAL_HEADER);
    char json[300];
    snprintf(json, sizeof json, "{\"path\":\"%s\"}", image);
    for (long cut = after2; cut < after3; cut++) {
        copy_file(snap_saved, image);
        copy_file(saved, journal);
        assert_int_equal(truncate(journal, cut), 0);
        /* check and the read-only open accept it and change nothing */
        mab_params *params;
        mab_error err = {0};
        assert_int_equal(mab_params_parse(json, "test", &params, &err), MAB_OK);
        assert_int_equal(storage->check(params, &err), MAB_OK);
        void *ro = NULL;
        assert_int_equal(storage->open_read_only(params, &ro, &err), MAB_OK);
        mab_params_free(params);
        assert_totals(load_one(ro, "e", "a"), 3, 0, 0, 0);
        assert_totals(load_one(ro, "e", "c"), 0, 0, 0, 0);
        storage->close(ro);
        assert_int_equal(file_size(journal), cut);
        /* The writer's open (fsyncs: at every fourth cut and both ends). */
        if ((cut - after2) % 4 != 0 && cut != after3 - 1)
            continue;
        void *copy = open_path_ok(image);
        assert_totals(load_one(copy, "e", "a"), 3, 0, 0, 0);
        assert_totals(load_one(copy, "e", "b"), 1, 0, 0, 0);
        assert_totals(load_one(copy, "e", "c"), 0, 0, 0, 0);
        assert_int_equal(file_size(journal), after2); /* the torn end is cut off */
        if (cut > after2 + 1 && cut < after3 - 1) {
            storage->close(copy);
            continue;
        }
        /* (at both ends) the next commit lands after entry 2, where a
           reopen after a crash finds it */
        mab_delta d = delta("e", "c", 5, 0, 0, 0);
        apply_ok(copy, &d, 1);
        char image2[200];
        fixture g = *f;
        snprintf(g.path, sizeof g.path, "%s", image);
        snprintf(g.dir, sizeof g.dir, "%s/g", f->dir);
        mkdir(g.dir, 0700);
        crash_image(&g, image2, sizeof image2);
        storage->close(copy);
        void *again = open_path_ok(image2);
        assert_totals(load_one(again, "e", "a"), 3, 0, 0, 0);
        assert_totals(load_one(again, "e", "c"), 5, 0, 0, 0);
        storage->close(again);
    }
    for (long at = after2; at < after3; at++) {
        copy_file(snap_saved, image);
        copy_file(saved, journal);
        FILE *fp = fopen(journal, "r+b");
        assert_non_null(fp);
        assert_int_equal(fseek(fp, at, SEEK_SET), 0);
        int c = fgetc(fp);
        assert_int_equal(fseek(fp, at, SEEK_SET), 0);
        fputc(c ^ 0x10, fp);
        assert_int_equal(fclose(fp), 0);
        mab_params *params;
        mab_error err = {0};
        assert_int_equal(mab_params_parse(json, "test", &params, &err), MAB_OK);
        void *copy = NULL;
        assert_int_equal(storage->open_read_only(params, &copy, &err), MAB_OK);
        mab_params_free(params);
        assert_totals(load_one(copy, "e", "a"), 3, 0, 0, 0);
        assert_totals(load_one(copy, "e", "c"), 0, 0, 0, 0);
        storage->close(copy);
    }
    /* A flipped byte in entry 2: entry 1 stays, 2 and 3 are not replayed. */
    copy_file(snap_saved, image);
    copy_file(saved, journal);
    FILE *fp = fopen(journal, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, after2 - 3, SEEK_SET), 0);
    fputc('#', fp);
    assert_int_equal(fclose(fp), 0);
    void *copy = open_path_ok(image);
    assert_totals(load_one(copy, "e", "a"), 1, 0, 0, 0);
    assert_totals(load_one(copy, "e", "b"), 0, 0, 0, 0);
    storage->close(copy);
}

/* A journal that follows another snapshot is never replayed onto this one
   (the crash between a snapshot and its new journal leaves exactly that);
   a file that is no journal is refused at open naming it, left as it is. */
static void test_journal_other_generation(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    mab_delta c1 = delta("e", "a", 1, 0, 0, 0), c2 = delta("e", "a", 10, 0, 0, 0);
    apply_ok(store, &c1, 1);
    char image[200], journal[220], old_journal[220];
    crash_image(f, image, sizeof image);
    snprintf(old_journal, sizeof old_journal, "%s.journal", image);
    storage->close(store); /* snapshot with c1, a new empty journal */
    store = open_ok(f);
    apply_ok(store, &c2, 1);
    storage->close(store); /* snapshot with c1 + c2 */
    snprintf(journal, sizeof journal, "%s.journal", f->path);
    copy_file(old_journal, journal); /* c1's entry, following the first snapshot */
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 11, 0, 0, 0);
    mab_delta c3 = delta("e", "a", 100, 0, 0, 0);
    apply_ok(store, &c3, 1); /* writes a snapshot and a journal of its own */
    storage->close(store);
    store = open_ok(f);
    assert_totals(load_one(store, "e", "a"), 111, 0, 0, 0);
    storage->close(store);

    /* Not a journal: MAB_ECORRUPT naming it and byte 0, nothing changed. */
    write_text(journal, "this is not a journal, but it is longer than a header");
    char *before = read_text(f->path);
    void *refused = NULL;
    mab_error err = {0};
    assert_int_equal(store_open(f->path, &refused, &err), MAB_ECORRUPT);
    assert_non_null(strstr(err.message, journal));
    assert_non_null(strstr(err.message, "byte 0"));
    char *after = read_text(f->path), *j = read_text(journal);
    assert_string_equal(before, after);
    assert_string_equal(j, "this is not a journal, but it is longer than a header");
    free(before);
    free(after);
    free(j);
}

/* The journal grows past the snapshot's size (or 64 KiB): the snapshot is
   rewritten and a new journal started. A snapshot that cannot be written
   then fails no commit (each is in the journal already). */
static void test_journal_compaction(void **state)
{
    fixture *f = *state;
    void *store = open_ok(f);
    char journal[220];
    snprintf(journal, sizeof journal, "%s.journal", f->path);
    /* 64 records an entry, so that a few dozen entries fill 64 KiB. */
    static mab_delta d[64];
    static char names[64][16];
    for (int i = 0; i < 64; i++) {
        arm_name(names[i], sizeof names[i], i);
        d[i] = delta("e", names[i], 1, 0, 0, 0);
    }
    /* One commit larger than the journal's threshold (2,000 records, about
       100 KB of entry): written as a snapshot at once, which a crash keeps. */
    static mab_delta big[2000];
    static char big_names[2000][16];
    for (int i = 0; i < 2000; i++) {
        snprintf(big_names[i], sizeof big_names[i], "b%04d", i);
        big[i] = delta("big", big_names[i], 3, 1, 0.5, 0.25);
    }
    apply_ok(store, big, 2000);
    assert_int_equal(file_size(journal), MAB_RECORDS_JOURNAL_HEADER);
    char image[200];
    crash_image(f, image, sizeof image);
    void *copy = open_path_ok(image);
    assert_totals(load_one(copy, "big", "b1999"), 3, 1, 0.5, 0.25);
    storage->close(copy);
    long snapshot0 = file_size(f->path), largest = 0;
    int compacted = 0;
    for (int i = 0; i < 1000 && !compacted; i++) {
        apply_ok(store, d, 64);
        long size = file_size(journal);
        compacted = size < largest;
        largest = size > largest ? size : largest;
    }
    assert_true(compacted);
    assert_true(largest >= 60 * 1024);
    assert_true(file_size(f->path) > snapshot0);
    uint64_t pulls = load_one(store, "e", "arm0000").pulls;
    /* PATH.tmp as a directory: no snapshot can be written (even as root). */
    assert_int_equal(mkdir(f->tmp_path, 0700), 0);
    /* Until the journal has passed the snapshot's size (a snapshot was due,
       and failed), then as many commits again. */
    uint64_t n_more = 0;
    while (file_size(journal) <= file_size(f->path) && n_more < 2000) {
        apply_ok(store, d, 64);
        n_more++;
    }
    assert_true(file_size(journal) > file_size(f->path) && file_size(journal) > 64 * 1024);
    for (uint64_t i = n_more; i > 0; i--)
        apply_ok(store, d, 64);
    n_more *= 2;
    crash_image(f, image, sizeof image);
    copy = open_path_ok(image);
    assert_int_equal(load_one(copy, "e", "arm0063").pulls, pulls + n_more);
    storage->close(copy);
    storage->close(store); /* its snapshot fails too: the journal keeps it all */
    store = open_ok(f);
    assert_int_equal(load_one(store, "e", "arm0063").pulls, pulls + n_more);
    assert_int_equal(rmdir(f->tmp_path), 0);
    storage->close(store);
}

/* Child: +1 pull on each of JOURNAL_KILL_ARMS arms per commit (one entry
   of them all), forever, reporting each commit once it is durable. */
#define JOURNAL_KILL_ARMS 300
static void journal_kill_child(void *arg, int go, int report_fd)
{
    const fixture *f = arg;
    (void)go;
    static mab_delta batch[JOURNAL_KILL_ARMS];
    static char names[JOURNAL_KILL_ARMS][16];
    void *store = NULL;
    if (store_open(f->path, &store, NULL) != MAB_OK)
        _exit(2);
    for (int i = 0; i < JOURNAL_KILL_ARMS; i++) {
        arm_name(names[i], sizeof names[i], i);
        batch[i] = delta("k", names[i], 1, 0, 0, 0);
    }
    uint64_t ready = 0; /* open: the kill's delay starts now */
    if (write(report_fd, &ready, sizeof ready) != (ssize_t)sizeof ready)
        _exit(5);
    for (uint64_t n = 1;; n++) {
        if (storage->apply(store, batch, JOURNAL_KILL_ARMS, NULL) != MAB_OK)
            _exit(4);
        if (write(report_fd, &n, sizeof n) != (ssize_t)sizeof n)
            _exit(5);
    }
}

/* SIGKILL at random moments while commits (and compactions) flow: the
   store then holds exactly a prefix of the commits: every arm the same
   count, the last acknowledged one or the one in flight, never part of an
   entry. */
static void test_journal_kill_mid_append(void **state)
{
    fixture *f = *state;
    static const char *ids[JOURNAL_KILL_ARMS];
    static char names[JOURNAL_KILL_ARMS][16];
    static mab_totals totals[JOURNAL_KILL_ARMS];
    for (int i = 0; i < JOURNAL_KILL_ARMS; i++) {
        arm_name(names[i], sizeof names[i], i);
        ids[i] = names[i];
    }
    unsigned rng = 20261201u; /* fixed seed: the same delays on every run */
    uint64_t stored = 0;
    int torn_seen = 0;
    for (int round = 0; round < 20; round++) {
        test_child child = test_child_fork(journal_kill_child, f);
        uint64_t value;
        assert_int_equal(test_child_read(&child, &value, sizeof value), 0);
        assert_int_equal(value, 0);
        rng = rng * 1103515245u + 12345u;
        long delay_us = 200 + (long)((rng >> 8) % 40000);
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = delay_us * 1000}, NULL);
        test_child_kill(&child, round);
        uint64_t acked = 0;
        while (test_child_read(&child, &value, sizeof value) == 0)
            acked = value;
        test_child_close(&child);
        char journal[220];
        snprintf(journal, sizeof journal, "%s.journal", f->path);
        long before_open = file_size(journal);
        void *store = open_ok(f);
        if (file_size(journal) < before_open)
            torn_seen++;
        assert_int_equal(storage->load(store, "k", ids, JOURNAL_KILL_ARMS, totals, NULL), MAB_OK);
        uint64_t pulls = totals[0].pulls;
        for (int i = 1; i < JOURNAL_KILL_ARMS; i++)
            if (totals[i].pulls != pulls)
                fail_msg("round %d: arm %d has %" PRIu64 " pulls, arm 0 %" PRIu64
                         ": part of an entry was applied",
                         round, i, totals[i].pulls, pulls);
        if (pulls != stored + acked && pulls != stored + acked + 1)
            fail_msg("round %d: %" PRIu64 " pulls stored, %" PRIu64 " before + %" PRIu64
                     " acknowledged",
                     round, pulls, stored, acked);
        stored = pulls;
        /* Close without folding the journal in: the next child finds it. */
        int status;
        pid_t crash = fork();
        assert_true(crash >= 0);
        if (crash == 0)
            _exit(0);
        assert_int_equal(waitpid(crash, &status, 0), crash);
        storage->close(store);
    }
    fprintf(stderr, "# journal kill: %" PRIu64 " commits stored over 20 kills, %d torn tails "
            "cut off at open\n", stored, torn_seen);
    assert_true(stored > 0);
}

static int note_changed(void *ctx, const char *experiment)
{
    struct {
        int n, e, g;
    } *seen = ctx;
    seen->n++;
    seen->e += strcmp(experiment, "e") == 0;
    seen->g += strcmp(experiment, "g") == 0;
    return 0;
}

/* Child: the writer of test_journal_second_process. Opens the store (a
   byte on done), then at each step byte: 1 one commit, 2 enough commits
   to compact, each followed by a byte on done; waits for end of file on
   go and exits without closing (killed, in effect). */
static void journal_writer_child(void *arg, int go, int done)
{
    const fixture *f = arg;
    void *w = NULL;
    if (store_open(f->path, &w, NULL) != MAB_OK)
        _exit(2);
    char byte = 0;
    if (write(done, &byte, 1) != 1) /* open */
        _exit(3);
    /* step 1: one commit; step 2: enough to compact */
    if (read(go, &byte, 1) != 1)
        _exit(4);
    mab_delta d = delta("e", "a", 2, 1, 0.5, 0.25);
    if (storage->apply(w, &d, 1, NULL) != MAB_OK || write(done, &byte, 1) != 1)
        _exit(5);
    if (read(go, &byte, 1) != 1)
        _exit(6);
    mab_delta g = delta("g", "b", 1, 0, 0, 0);
    for (int i = 0; i < 2000; i++)
        if (storage->apply(w, &g, 1, NULL) != MAB_OK)
            _exit(7);
    if (write(done, &byte, 1) != 1)
        _exit(8);
    if (read(go, &byte, 1) != 0) /* until the parent is done */
        _exit(9);
    _exit(0); /* killed, in effect: no close */
}

/* A second process reads the store read-only while the writer commits:
   changed() names what the writer's new entries changed and load() sees
   it; after a snapshot (compaction) it asks for everything and sees all. */
static void test_journal_second_process(void **state)
{
    fixture *f = *state;
    void *seed = open_ok(f);
    mab_delta d0 = delta("x", "a", 1, 0, 0, 0);
    apply_ok(seed, &d0, 1);
    storage->close(seed);
    test_child child = test_child_fork(journal_writer_child, f);
    char byte = 0;
    assert_int_equal(test_child_read(&child, &byte, 1), 0);
    char json[300];
    snprintf(json, sizeof json, "{\"path\":\"%s\"}", f->path);
    mab_params *params;
    mab_error err = {0};
    assert_int_equal(mab_params_parse(json, "test", &params, &err), MAB_OK);
    void *ro = NULL;
    assert_int_equal(storage->open_read_only(params, &ro, &err), MAB_OK);
    mab_params_free(params);
    struct seen {
        int n, e, g;
    } seen = {0, 0, 0};
    int everything = 0;
    assert_int_equal(storage->changed(ro, &everything, note_changed, &seen, &err), MAB_OK);
    assert_int_equal(everything, 1); /* the first call */
    assert_int_equal(storage->changed(ro, &everything, note_changed, &seen, &err), MAB_OK);
    assert_int_equal(everything, 0);
    assert_int_equal(seen.n, 0);
    assert_totals(load_one(ro, "e", "a"), 0, 0, 0, 0);

    test_child_step(&child, 1);
    assert_int_equal(storage->changed(ro, &everything, note_changed, &seen, &err), MAB_OK);
    assert_int_equal(everything, 0);
    assert_true(seen.e >= 1);
    assert_int_equal(seen.g, 0);
    assert_totals(load_one(ro, "e", "a"), 2, 1, 0.5, 0.25);
    assert_totals(load_one(ro, "x", "a"), 1, 0, 0, 0);

    test_child_step(&child, 2);
    assert_int_equal(storage->changed(ro, &everything, note_changed, &seen, &err), MAB_OK);
    assert_int_equal(everything, 1); /* the writer wrote a snapshot meanwhile */
    assert_totals(load_one(ro, "g", "b"), 2000, 0, 0, 0);
    assert_totals(load_one(ro, "e", "a"), 2, 1, 0.5, 0.25);
    storage->close(ro);
    test_child_wait_ok(&child);
}

static char *snapshot_after_close(const fixture *f, void **store)
{
    storage->close(*store);
    char *text = read_text(f->path);
    *store = open_ok(f);
    return text;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_increments_accumulate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_opener_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_released_when_holder_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_bad_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_unknown_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_location, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_apply_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_removes_one_experiment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets_file_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets_failed_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_replays_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_other_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_kill_mid_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_second_process, setup, teardown),
    };
    if (getenv("MAB_TEST_FILTER")) /* one test, e.g. MAB_TEST_FILTER=test_journal_torn_tail */
        cmocka_set_test_filter(getenv("MAB_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
