/*
 * test_storage_mongodb.c - the mongodb storage plugin, loaded as the real .so,
 * and engines using it.
 *
 * Without MAB_TEST_MONGODB_URI the tests start the wire-protocol stand-in
 * (tests/storage/mongo/standin.py, run with /usr/bin/python3) on a free loopback port
 * and stop it by its pid; the outage tests stop and restart it on the same
 * port, keeping its data in a state file. With MAB_TEST_MONGODB_URI set they
 * run against that server instead, each test in a database of its own that
 * is dropped afterwards; the tests that need to stop the server or inject
 * faults are then skipped.
 *
 * Children of fork() report through exit codes and pipes only, never through
 * cmocka's asserts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mongoc/mongoc.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "mab/storage.h"
#include "support.h"

#define STANDIN MAB_SOURCE_DIR "/tests/storage/mongo/standin.py"
#define PYTHON "/usr/bin/python3"
#define PASSWORD "s3cret-Pa55"

static void *plugin_handle;
static const mab_storage *storage;

/* The server every test uses. */
static struct {
    int real;            /* MAB_TEST_MONGODB_URI is set */
    char uri[512];
    char dir[64];        /* scratch directory: stand-in state, port file, log */
    pid_t pid;           /* the stand-in, 0 when stopped */
    int port;
    mongoc_client_t *client; /* the tests' own connection, for checks */
} server;

static char database[64]; /* per test */
static unsigned test_counter;

/* ---- the stand-in ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* Start the stand-in on server.port (0: a free one) with the state file of
   server.dir; wait until it listens. */
static int standin_start(void)
{
    char port_file[128], state[128], log[128], port_arg[16];
    snprintf(port_file, sizeof port_file, "%s/port", server.dir);
    snprintf(state, sizeof state, "%s/state.bson", server.dir);
    snprintf(log, sizeof log, "%s/standin.log", server.dir);
    snprintf(port_arg, sizeof port_arg, "%d", server.port);
    unlink(port_file);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(PYTHON, PYTHON, STANDIN, "--port", port_arg, "--port-file", port_file, "--state",
              state, (char *)NULL);
        _exit(127);
    }
    server.pid = pid;
    for (int64_t until = now_ms() + 15000; now_ms() < until; sleep_ms(20)) {
        char *text = test_read_file(port_file);
        if (text) {
            server.port = atoi(text);
            free(text);
            snprintf(server.uri, sizeof server.uri, "mongodb://127.0.0.1:%d/", server.port);
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            server.pid = 0;
            fprintf(stderr, "the stand-in exited; see %s\n", log);
            return -1;
        }
    }
    fprintf(stderr, "the stand-in did not start within 15 s; see %s\n", log);
    return -1;
}

/* SIGTERM: the stand-in finishes the request in progress, saves its data
   and exits. */
static void standin_stop(void)
{
    if (!server.pid)
        return;
    kill(server.pid, SIGTERM);
    waitpid(server.pid, NULL, 0);
    server.pid = 0;
}

/* ---- checks through the tests' own client ------------------------------- */

static int run_command(const char *db, const bson_t *command, bson_t *reply)
{
    bson_error_t error;
    if (!mongoc_client_command_simple(server.client, db, command, NULL, reply, &error)) {
        fprintf(stderr, "command on %s failed: %s\n", db, error.message);
        return -1;
    }
    return 0;
}

/* Make the stand-in hang up on the next k update commands after applying
   half of each. */
static void inject_hangups(int k)
{
    bson_t *command = BCON_NEW("mabStandinFault", BCON_INT32(1), "hangupUpdates", BCON_INT32(k));
    bson_t reply;
    assert_int_equal(run_command("admin", command, &reply), 0);
    bson_destroy(&reply);
    bson_destroy(command);
}

static void set_auth_fail(int on)
{
    bson_t *command = BCON_NEW("mabStandinFault", BCON_INT32(1), "authFail", BCON_BOOL(on));
    bson_t reply;
    assert_int_equal(run_command("admin", command, &reply), 0);
    bson_destroy(&reply);
    bson_destroy(command);
}

/* A copy of the stored document with this _id, or NULL. */
static bson_t *stored_doc_in(const char *db, const char *id)
{
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, db, "mab_arms");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(c, filter, NULL, NULL);
    const bson_t *doc;
    bson_t *copy = mongoc_cursor_next(cursor, &doc) ? bson_copy(doc) : NULL;
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    return copy;
}

static bson_t *stored_doc(const char *id)
{
    return stored_doc_in(database, id);
}

static int64_t doc_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) ? bson_iter_as_int64(&it) : -1;
}

/* ---- fixtures ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    mongoc_init();
    mongoc_log_set_handler(NULL, NULL);
    if (!(storage = test_load_storage(MAB_PLUGIN_DIR "/mongodb.so", &plugin_handle)))
        return -1;
    snprintf(server.dir, sizeof server.dir, "/tmp/mab-test-mongodb-XXXXXX");
    if (!mkdtemp(server.dir))
        return -1;
    const char *uri = getenv("MAB_TEST_MONGODB_URI");
    if (uri && uri[0]) {
        server.real = 1;
        snprintf(server.uri, sizeof server.uri, "%s", uri);
    } else if (standin_start() != 0) {
        return -1;
    }
    server.client = mongoc_client_new(server.uri);
    if (!server.client)
        return -1;
    mongoc_client_set_error_api(server.client, MONGOC_ERROR_API_VERSION_2);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (server.client)
        mongoc_client_destroy(server.client);
    standin_stop();
    test_rm_tree(server.dir);
    dlclose(plugin_handle);
    mongoc_cleanup();
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(database, sizeof database, "mab_test_%ld_%u", (long)getpid(), ++test_counter);
    return 0;
}

/* The stand-in's data goes with its directory; a real server's test
   databases are dropped. */
static int teardown(void **state)
{
    (void)state;
    if (!server.real)
        return 0;
    char always_db[80];
    snprintf(always_db, sizeof always_db, "%s_always", database);
    const char *dbs[] = {database, always_db};
    for (size_t i = 0; i < 2; i++) {
        bson_t *command = BCON_NEW("dropDatabase", BCON_INT32(1));
        bson_t reply;
        run_command(dbs[i], command, &reply);
        bson_destroy(&reply);
        bson_destroy(command);
    }
    return 0;
}

static int need_standin(void)
{
    if (server.real)
        fprintf(stderr, "skipped: needs the stand-in (MAB_TEST_MONGODB_URI is set)\n");
    return !server.real;
}

/* ---- plugin helpers -------------------------------------------------------- */

/* Open the plugin on `uri` (NULL: the test server) with extra JSON members. */
static int store_open_with(const char *uri, const char *extra, void **st, mab_error *err)
{
    char json[1024];
    snprintf(json, sizeof json, "{\"uri\": \"%s\", \"database\": \"%s\"%s%s}",
             uri ? uri : server.uri, database, extra && extra[0] ? ", " : "", extra ? extra : "");
    mab_params *params;
    if (mab_params_parse(json, "test", &params, err) != MAB_OK)
        return err->code;
    int rc = storage->open(params, st, err);
    mab_params_free(params);
    return rc;
}

static void *store_open(void)
{
    void *st = NULL;
    mab_error err = {0, ""};
    int rc = store_open_with(NULL, NULL, &st, &err);
    if (rc != MAB_OK)
        fail_msg("open: %s", err.message);
    return st;
}

static mab_delta delta(const char *e, const char *a, uint64_t pulls, uint64_t rewards,
                       double sum)
{
    return (mab_delta){e, a, {pulls, rewards, sum, sum * sum}};
}

static void assert_totals(const mab_totals *t, uint64_t pulls, uint64_t rewards, double sum)
{
    assert_int_equal(t->pulls, pulls);
    assert_int_equal(t->rewards, rewards);
    assert_true(t->reward_sum == sum);
}

struct collected {
    char keys[16][64];
    mab_totals totals[16];
    int n;
};

static int collect(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    struct collected *c = ctx;
    if (c->n == 16)
        return 99;
    snprintf(c->keys[c->n], sizeof c->keys[c->n], "%s/%s", experiment, arm);
    c->totals[c->n++] = *t;
    return 0;
}

/* ---- round trip ------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    void *st = store_open();
    mab_error err = {0, ""};
    mab_delta batch[] = {delta("color", "red", 10, 2, 1.5), delta("color", "green", 4, 1, 1.0),
                         delta("size", "big", 1, 0, 0.0)};
    assert_int_equal(storage->apply(st, batch, 3, &err), MAB_OK);
    assert_int_equal(storage->apply(st, batch, 1, &err), MAB_OK);
    storage->close(st);

    st = store_open();
    const char *arms[] = {"red", "green", "blue"};
    mab_totals out[3];
    assert_int_equal(storage->load(st, "color", arms, 3, out, &err), MAB_OK);
    assert_totals(&out[0], 20, 4, 3.0);
    assert_true(out[0].reward_sum_sq == 4.5);
    assert_totals(&out[1], 4, 1, 1.0);
    assert_totals(&out[2], 0, 0, 0.0);

    /* The documents: _id from both ids, the ids as fields, a schema version,
       counts as integers; no writer numbers left after a clean close. */
    bson_t *doc = stored_doc("color/red");
    assert_non_null(doc);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, "experiment") && BSON_ITER_HOLDS_UTF8(&it));
    assert_string_equal(bson_iter_utf8(&it, NULL), "color");
    assert_true(bson_iter_init_find(&it, doc, "arm") && BSON_ITER_HOLDS_UTF8(&it));
    assert_string_equal(bson_iter_utf8(&it, NULL), "red");
    assert_int_equal(doc_int(doc, "v"), 1);
    assert_true(bson_iter_init_find(&it, doc, "pulls") &&
                (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)));
    bson_iter_t w;
    assert_true(!bson_iter_init_find(&it, doc, "w") || !bson_iter_recurse(&it, &w) ||
                !bson_iter_next(&w));
    bson_destroy(doc);

    /* The index the refresh query uses. */
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database, "mab_arms");
    mongoc_cursor_t *indexes = mongoc_collection_find_indexes_with_opts(c, NULL);
    const bson_t *index;
    int found = 0;
    while (mongoc_cursor_next(indexes, &index)) {
        bson_iter_t key;
        if (bson_iter_init_find(&key, index, "key") && BSON_ITER_HOLDS_DOCUMENT(&key) &&
            bson_iter_recurse(&key, &key) && bson_iter_find(&key, "experiment"))
            found = 1;
    }
    mongoc_cursor_destroy(indexes);
    mongoc_collection_destroy(c);
    assert_true(found);

    /* scan sees every record; reset removes one experiment; replace makes
       the listed experiments hold exactly the given records. */
    struct collected seen = {.n = 0};
    assert_int_equal(storage->scan(st, collect, &seen, &err), MAB_OK);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.keys[0], "color/green");
    assert_string_equal(seen.keys[2], "size/big");
    assert_int_equal(storage->reset(st, "color", &err), MAB_OK);
    assert_int_equal(storage->load(st, "color", arms, 3, out, &err), MAB_OK);
    assert_totals(&out[0], 0, 0, 0.0);
    const char *size_arms[] = {"big", "small"};
    assert_int_equal(storage->load(st, "size", size_arms, 2, out, &err), MAB_OK);
    assert_totals(&out[0], 1, 0, 0.0);
    const char *cleared[] = {"size"};
    mab_delta records[] = {delta("size", "small", 7, 3, 2.5)};
    assert_int_equal(storage->replace(st, cleared, 1, records, 1, &err), MAB_OK);
    assert_int_equal(storage->load(st, "size", size_arms, 2, out, &err), MAB_OK);
    assert_totals(&out[0], 0, 0, 0.0);
    assert_totals(&out[1], 7, 3, 2.5);
    storage->close(st);
}

/* A document whose sums are not finite (no apply writes one: the plugin and
   the core refuse such deltas) is refused at load and scan as corrupt. */
static void test_non_finite_document_refused(void **state)
{
    (void)state;
    void *st = store_open();
    mab_error err = {0, ""};
    mab_delta d = delta("e", "a", 2, 1, 0.5);
    assert_int_equal(storage->apply(st, &d, 1, &err), MAB_OK);
    storage->close(st);
    const char *fields[] = {"reward_sum", "reward_sum_sq", "reward_sum"};
    double values[] = {NAN, INFINITY, -INFINITY};
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database, "mab_arms");
    for (size_t i = 0; i < 3; i++) {
        bson_t *filter = BCON_NEW("_id", BCON_UTF8("e/a"));
        bson_t *update = BCON_NEW("$set", "{", "reward_sum", BCON_DOUBLE(0.5), "reward_sum_sq",
                                  BCON_DOUBLE(0.25), "}");
        bson_error_t error;
        assert_true(mongoc_collection_update_one(c, filter, update, NULL, NULL, &error));
        bson_destroy(update);
        update = BCON_NEW("$set", "{", fields[i], BCON_DOUBLE(values[i]), "}");
        if (!mongoc_collection_update_one(c, filter, update, NULL, NULL, &error))
            fail_msg("cannot plant %s: %s", fields[i], error.message);
        bson_destroy(update);
        bson_destroy(filter);

        st = store_open();
        const char *arms[] = {"a"};
        mab_totals out;
        err.message[0] = '\0';
        assert_int_equal(storage->load(st, "e", arms, 1, &out, &err), MAB_ECORRUPT);
        if (!strstr(err.message, "document \"e/a\"") || !strstr(err.message, "sums finite"))
            fail_msg("case %zu: unexpected message: %s", i, err.message);
        struct collected seen = {.n = 0};
        assert_int_equal(storage->scan(st, collect, &seen, &err), MAB_ECORRUPT);
        assert_int_equal(seen.n, 0);
        storage->close(st);
    }
    mongoc_collection_destroy(c);
}

/* Two writers add to the same documents; nothing is lost. */
static void test_two_writers(void **state)
{
    (void)state;
    void *a = store_open(), *b = store_open();
    mab_error err = {0, ""};
    for (int i = 0; i < 20; i++) {
        mab_delta d = delta("x", "arm", 1, 1, 0.5);
        assert_int_equal(storage->apply(i % 2 ? a : b, &d, 1, &err), MAB_OK);
    }
    const char *arms[] = {"arm"};
    mab_totals out;
    assert_int_equal(storage->load(a, "x", arms, 1, &out, &err), MAB_OK);
    assert_totals(&out, 20, 20, 10.0);
    storage->close(a);
    storage->close(b);
}

/* ---- errors --------------------------------------------------------------------- */

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    bind(fd, (struct sockaddr *)&addr, sizeof addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}

static void assert_no_password(const char *message)
{
    if (strstr(message, PASSWORD) || strstr(message, "s3cret"))
        fail_msg("the message shows the password: %s", message);
}

static void test_bad_uri_and_keys(void **state)
{
    (void)state;
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(store_open_with("mongodb://bob:" PASSWORD "@db1.example.com:notaport/", NULL,
                                     &st, &err),
                     MAB_ECONFIG);
    assert_non_null(strstr(err.message, "test.uri: mongodb://db1.example.com:notaport/"));
    assert_non_null(strstr(err.message, "db1.example.com"));
    assert_no_password(err.message);

    assert_int_equal(store_open_with("mongodb://db1.example.com:notaport/"
                                     "?tls=true&tlsCertificateKeyFilePassword=" PASSWORD,
                                     NULL, &st, &err),
                     MAB_ECONFIG);
    assert_non_null(strstr(err.message, "tlsCertificateKeyFilePassword=***"));
    assert_no_password(err.message);

    assert_int_equal(store_open_with("http://bob:" PASSWORD "@db1.example.com/", NULL, &st, &err),
                     MAB_ECONFIG);
    assert_non_null(strstr(err.message, "db1.example.com"));
    assert_no_password(err.message);

    mab_params *params;
    assert_int_equal(mab_params_parse("{\"database\": \"x\"}", "test", &params, &err), MAB_OK);
    assert_int_equal(storage->open(params, &st, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "uri: is required"));
    mab_params_free(params);

    assert_int_equal(store_open_with(NULL, "\"write_concern\": \"0\"", &st, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "write_concern"));
    assert_int_equal(store_open_with(NULL, "\"collection\": \"\"", &st, &err), MAB_ECONFIG);
    assert_non_null(strstr(err.message, "collection"));
}

static void test_unreachable_host(void **state)
{
    (void)state;
    char uri[256];
    int port = closed_port();
    snprintf(uri, sizeof uri, "mongodb://bob:%s@127.0.0.1:%d/?connectTimeoutMS=500", PASSWORD,
             port);
    void *st = NULL;
    mab_error err = {0, ""};
    int64_t start = now_ms();
    assert_int_equal(store_open_with(uri, NULL, &st, &err), MAB_ESTORAGE);
    assert_true(now_ms() - start < 5000);
    char host[64];
    snprintf(host, sizeof host, "MongoDB at 127.0.0.1:%d, database %s", port, database);
    if (!strstr(err.message, host) || !strstr(err.message, "cannot connect"))
        fail_msg("unexpected message: %s", err.message);
    assert_no_password(err.message);
}

static void test_authentication_failure(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    set_auth_fail(1);
    char uri[256];
    snprintf(uri, sizeof uri, "mongodb://bob:%s@127.0.0.1:%d/", PASSWORD, server.port);
    void *st = NULL;
    mab_error err = {0, ""};
    int rc = store_open_with(uri, NULL, &st, &err);
    set_auth_fail(0);
    assert_int_equal(rc, MAB_ESTORAGE);
    if (!strstr(err.message, "authentication failed") || !strstr(err.message, "127.0.0.1"))
        fail_msg("unexpected message: %s", err.message);
    assert_no_password(err.message);
}

/* ---- exactly once --------------------------------------------------------------- */

/*
 * Play the core: increments collect in `unapplied`; a failed apply keeps
 * them and they are offered again merged with newer ones. The stand-in
 * applies half of some bulks and hangs up. After every call, load() must
 * read exactly what successful calls applied.
 */
static void test_exactly_once_across_hangups(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    enum { ARMS = 6, ROUNDS = 24 };
    const char *arms[ARMS] = {"a", "b", "c", "d", "e", "f"};
    mab_totals unapplied[ARMS] = {{0}}, applied[ARMS] = {{0}};
    void *st = store_open();
    mab_error err;
    int failures = 0;
    srand(7);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < ARMS; i++) {
            uint64_t pulls = (uint64_t)(rand() % 5), rewards = (uint64_t)(rand() % 3);
            unapplied[i].pulls += pulls;
            unapplied[i].rewards += rewards;
            unapplied[i].reward_sum += 0.25 * (double)rewards;
            unapplied[i].reward_sum_sq += 0.0625 * (double)rewards;
        }
        if (round % 4 == 1)
            inject_hangups(round % 8 == 1 ? 2 : 1); /* 2: the resend fails too */
        mab_delta batch[ARMS];
        size_t n = 0;
        for (int i = 0; i < ARMS; i++)
            if (unapplied[i].pulls || unapplied[i].rewards)
                batch[n++] = (mab_delta){"exp", arms[i], unapplied[i]};
        int rc = storage->apply(st, batch, n, &err);
        if (rc == MAB_OK) {
            for (int i = 0; i < ARMS; i++) {
                applied[i].pulls += unapplied[i].pulls;
                applied[i].rewards += unapplied[i].rewards;
                applied[i].reward_sum += unapplied[i].reward_sum;
                memset(&unapplied[i], 0, sizeof unapplied[i]);
            }
        } else {
            failures++;
            assert_int_equal(rc, MAB_ESTORAGE);
            assert_non_null(strstr(err.message, "127.0.0.1"));
        }
        mab_totals out[ARMS];
        rc = storage->load(st, "exp", arms, ARMS, out, &err);
        if (rc != MAB_OK)
            continue; /* the connection may be down right after a hang-up */
        for (int i = 0; i < ARMS; i++)
            assert_totals(&out[i], applied[i].pulls, applied[i].rewards, applied[i].reward_sum);
    }
    assert_true(failures >= ROUNDS / 4);

    /* A failed call that is not offered again (an import) leaves nothing
       once the next call succeeds. */
    mab_delta import = delta("exp", "a", 1000, 1000, 1000.0);
    mab_delta other = delta("exp", "b", 1000, 0, 0.0);
    mab_delta both[] = {import, other};
    inject_hangups(1);
    assert_int_equal(storage->apply(st, both, 2, &err), MAB_ESTORAGE);
    mab_delta batch[ARMS];
    size_t n = 0;
    for (int i = 0; i < ARMS; i++)
        batch[n++] = (mab_delta){"exp", arms[i], unapplied[i]};
    int rc = MAB_ESTORAGE;
    for (int tries = 0; tries < 50 && rc != MAB_OK; tries++)
        rc = storage->apply(st, batch, n, &err);
    assert_int_equal(rc, MAB_OK);
    storage->close(st);

    for (int i = 0; i < ARMS; i++) {
        char id[16];
        snprintf(id, sizeof id, "exp/%s", arms[i]);
        bson_t *doc = stored_doc(id);
        assert_non_null(doc);
        assert_int_equal(doc_int(doc, "pulls"), applied[i].pulls + unapplied[i].pulls);
        assert_int_equal(doc_int(doc, "rewards"), applied[i].rewards + unapplied[i].rewards);
        bson_destroy(doc);
    }
}

/* ---- engines --------------------------------------------------------------------- */

#define REFRESH_MS 300

static void write_config_db(const char *path, const char *db, const char *sync)
{
    assert_int_equal(
        test_write_file(path,
                        "{\"plugin_path\": [\"%s\"],\n"
                        " \"storage\": {\"plugin\": \"mongodb\", \"uri\": \"%s\",\n"
                        "   \"database\": \"%s\", \"sync\": %s, \"refresh_ms\": %d},\n"
                        " \"experiments\": {\"btn\": {\"policy\": {\"plugin\": "
                        "\"epsilon_greedy\", \"epsilon\": 0.3},\n"
                        "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                        MAB_PLUGIN_DIR, server.uri, db, sync, REFRESH_MS),
        0);
}

static void write_config(const char *path, const char *sync)
{
    write_config_db(path, database, sync);
}

static void engine_totals(mab_engine *e, uint64_t *pulls, uint64_t *rewards, double *sum)
{
    mab_arm_stats stats[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n;
    *pulls = *rewards = 0;
    *sum = 0;
    if (mab_stats(e, "btn", stats, 3, &n, NULL) != MAB_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        *pulls += stats[i].pulls;
        *rewards += stats[i].rewards;
        *sum += stats[i].reward_sum;
    }
}

/* n choose + reward pairs; rewards alternate 1 and 0.5 (exact in binary). */
static int play(mab_engine *e, int n)
{
    for (int i = 0; i < n; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "btn", &c, NULL) != MAB_OK ||
            mab_reward(e, "btn", c.arm_id, i % 2 ? 0.5 : 1.0, NULL) != MAB_OK)
            return -1;
    }
    return 0;
}

enum { PROCESSES = 3, REWARDS_EACH = 20000 };

/* One of the three machines: play, flush, report; at the barrier, wait
   until the others' totals show up, and report how long that took. */
static int machine(const char *config, int done_fd, int go_fd)
{
    mab_engine *e;
    if (mab_open(config, &e, NULL) != MAB_OK)
        return 10;
    if (play(e, REWARDS_EACH) != 0 || mab_flush(e, NULL) != MAB_OK)
        return 11;
    char byte = 1;
    if (write(done_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1)
        return 12;
    int64_t start = now_ms(), lag = -1;
    while (now_ms() - start < 5000) {
        uint64_t pulls, rewards;
        double sum;
        engine_totals(e, &pulls, &rewards, &sum);
        if (pulls == PROCESSES * REWARDS_EACH) {
            lag = now_ms() - start;
            break;
        }
        sleep_ms(5);
    }
    if (write(done_fd, &lag, sizeof lag) != sizeof lag)
        return 13;
    return mab_close(e, NULL) == MAB_OK ? 0 : 14;
}

static void test_three_processes(void **state)
{
    (void)state;
    char config[160];
    snprintf(config, sizeof config, "%s/three.json", server.dir);
    write_config(config, "{\"interval_ms\": 100}");
    int done[2], go[2];
    assert_int_equal(pipe(done), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pids[PROCESSES];
    int64_t start = now_ms();
    for (int i = 0; i < PROCESSES; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(done[0]);
            close(go[1]);
            _exit(machine(config, done[1], go[0]));
        }
    }
    close(done[1]);
    close(go[0]);
    char byte;
    for (int i = 0; i < PROCESSES; i++)
        assert_int_equal(read(done[0], &byte, 1), 1);
    int64_t played = now_ms() - start;
    char go_bytes[PROCESSES] = {0};
    assert_int_equal(write(go[1], go_bytes, PROCESSES), PROCESSES);
    int64_t worst = 0;
    for (int i = 0; i < PROCESSES; i++) {
        int64_t lag;
        assert_int_equal(read(done[0], &lag, sizeof lag), sizeof lag);
        assert_true(lag >= 0); /* saw the others' totals within 5 s at all */
        worst = lag > worst ? lag : worst;
    }
    for (int i = 0; i < PROCESSES; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    close(done[0]);
    close(go[1]);
    fprintf(stderr, "# %d processes x %d rewards in %" PRId64 " ms; others' totals seen within %"
            PRId64 " ms (refresh_ms %d)\n",
            PROCESSES, REWARDS_EACH, played, worst, REFRESH_MS);
    /* refresh_ms, plus one read of the totals and the poll, on a busy machine. */
    assert_true(worst <= REFRESH_MS + 250);

    mab_engine *e;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    uint64_t pulls, rewards;
    double sum;
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, PROCESSES * REWARDS_EACH);
    assert_int_equal(rewards, PROCESSES * REWARDS_EACH);
    assert_true(sum == PROCESSES * REWARDS_EACH * 0.75);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/*
 * One outage (the client waits about 5 s before it reconnects to a server
 * it failed to reach, so the tests share one): a plugin handle, an engine
 * with sync {"interval_ms": 50} and one with sync "always".
 *  - During it: apply and load fail naming the host; the engines keep
 *    choosing and rewarding from memory; flush and a synchronous reward fail
 *    naming the host.
 *  - After the restart on the same port (with the stand-in's data kept),
 *    and bulks the server half-applies and hangs up on, everything lands
 *    exactly once.
 */
static void test_outage(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    char config[160], always_config[160], always_db[80];
    snprintf(config, sizeof config, "%s/outage.json", server.dir);
    snprintf(always_config, sizeof always_config, "%s/always.json", server.dir);
    snprintf(always_db, sizeof always_db, "%s_always", database);
    write_config(config, "{\"interval_ms\": 50}");
    write_config_db(always_config, always_db, "\"always\"");
    char host[64];
    snprintf(host, sizeof host, "MongoDB at 127.0.0.1:%d", server.port);

    void *st = store_open();
    mab_error err = {0, ""};
    mab_delta d = delta("o", "x", 5, 5, 5.0);
    assert_int_equal(storage->apply(st, &d, 1, &err), MAB_OK);
    mab_engine *e, *always;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    assert_int_equal(mab_open(always_config, &always, &err), MAB_OK);
    assert_int_equal(play(e, 3000), 0);
    assert_int_equal(mab_flush(e, &err), MAB_OK);
    assert_int_equal(mab_reward(always, "btn", "a", 1.0, &err), MAB_OK);

    standin_stop();
    d.add = (mab_totals){8, 8, 8.0, 8.0};
    assert_int_equal(storage->apply(st, &d, 1, &err), MAB_ESTORAGE);
    if (!strstr(err.message, host) || !strstr(err.message, "cannot apply"))
        fail_msg("unexpected message: %s", err.message);
    const char *arms[] = {"x"};
    mab_totals out;
    assert_int_equal(storage->load(st, "o", arms, 1, &out, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, host));

    assert_int_equal(play(e, 3000), 0); /* served from memory */
    assert_int_equal(mab_flush(e, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, host));
    uint64_t pulls, rewards;
    double sum;
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 6000);
    assert_int_equal(mab_reward(always, "btn", "a", 1.0, &err), MAB_ESTORAGE);
    assert_non_null(strstr(err.message, "127.0.0.1"));

    assert_int_equal(standin_start(), 0);
    inject_hangups(3);
    assert_int_equal(play(e, 3000), 0);
    int rc = MAB_ESTORAGE;
    for (int64_t until = now_ms() + 12000; rc != MAB_OK && now_ms() < until; sleep_ms(100))
        rc = mab_flush(e, &err);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    rc = MAB_ESTORAGE;
    for (int64_t until = now_ms() + 12000; rc != MAB_OK && now_ms() < until; sleep_ms(100))
        rc = storage->apply(st, &d, 1, &err);
    assert_int_equal(rc, MAB_OK);
    assert_int_equal(storage->load(st, "o", arms, 1, &out, &err), MAB_OK);
    assert_totals(&out, 13, 13, 13.0);
    storage->close(st);
    assert_int_equal(mab_reward(always, "btn", "b", 1.0, &err), MAB_OK);
    assert_int_equal(mab_close(always, &err), MAB_OK);

    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 9000);
    assert_int_equal(rewards, 9000);
    assert_true(sum == 9000 * 0.75);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    bson_t *doc = stored_doc_in(always_db, "btn/a");
    assert_non_null(doc);
    assert_int_equal(doc_int(doc, "rewards"), 2);
    bson_destroy(doc);
}

/* ---- export and import ------------------------------------------------------------ */

struct records {
    mab_record r[8];
    char ids[8][2][32];
    size_t n;
};

static int keep_record(void *ctx, const mab_record *r)
{
    struct records *x = ctx;
    if (x->n == 8)
        return 1;
    snprintf(x->ids[x->n][0], 32, "%s", r->experiment);
    snprintf(x->ids[x->n][1], 32, "%s", r->arm);
    x->r[x->n] = *r;
    x->r[x->n].experiment = x->ids[x->n][0];
    x->r[x->n].arm = x->ids[x->n][1];
    x->n++;
    return 0;
}

/* mab_export / mab_import through the engine, then `mab export` and
   `mab import` (add, then --replace: back to the exported counts). */
static void test_export_import(void **state)
{
    (void)state;
    char config[160];
    snprintf(config, sizeof config, "%s/export.json", server.dir);
    write_config(config, "{\"interval_ms\": 1000}");
    mab_engine *e;
    mab_error err;
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    assert_int_equal(play(e, 500), 0);
    struct records saved = {.n = 0};
    assert_int_equal(mab_export(e, keep_record, &saved, &err), MAB_OK);
    uint64_t total = 0;
    for (size_t i = 0; i < saved.n; i++)
        total += saved.r[i].pulls;
    assert_int_equal(total, 500);

    assert_int_equal(mab_reset(e, "btn", &err), MAB_OK);
    uint64_t pulls, rewards;
    double sum;
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 0);
    assert_int_equal(mab_import(e, saved.r, saved.n, 1, &err), MAB_OK);
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 500);
    assert_true(sum == 500 * 0.75);
    assert_int_equal(mab_import(e, saved.r, saved.n, 0, &err), MAB_OK); /* adds */
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 1000);
    assert_int_equal(mab_import(e, saved.r, saved.n, 1, &err), MAB_OK); /* replaces */
    assert_int_equal(mab_close(e, &err), MAB_OK);

    /* The same through the command line tool. */
    char command[512], out[200];
    snprintf(out, sizeof out, "%s/export.out.json", server.dir);
    snprintf(command, sizeof command,
             "'%s/mab' export '%s' --out '%s' && '%s/mab' import '%s' '%s' && "
             "'%s/mab' import '%s' '%s' --replace",
             MAB_BIN_DIR, config, out, MAB_BIN_DIR, config, out, MAB_BIN_DIR, config, out);
    assert_int_equal(system(command), 0);
    char *text = test_read_file(out);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"mab-export\""));
    assert_non_null(strstr(text, "\"btn\""));
    free(text);

    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    engine_totals(e, &pulls, &rewards, &sum);
    assert_int_equal(pulls, 500);
    assert_int_equal(rewards, 500);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/* ---- claims (storage ABI 1.3) ------------------------------------------------ */

static int claim_rc(void *st, uint8_t n, int64_t expires_at, const mab_delta *d, size_t nd,
                    mab_error *err)
{
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    memset(id, 0xa5, sizeof id);
    id[0] = n;
    mab_claim c = {id, expires_at, d, nd, -1};
    int rc = storage->claim(st, &c, 1, 0, err);
    return rc == MAB_OK ? c.result : rc;
}

static int64_t count_claims(void)
{
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database,
                                                          "mab_arms_claims");
    bson_t filter = BSON_INITIALIZER; /* find: the stand-in has no aggregate (count) */
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
    const bson_t *doc;
    int64_t n = 0;
    while (mongoc_cursor_next(cursor, &doc))
        n++;
    bson_error_t error;
    if (mongoc_cursor_error(cursor, &error))
        n = -1;
    mongoc_cursor_destroy(cursor);
    bson_destroy(&filter);
    mongoc_collection_destroy(c);
    return n;
}

/* Two stores (two machines) claim one id: the first insert wins, the other
   gets "duplicate key" = MAB_ECLAIMED, and only the winner's reward counts.
   The claims collection has a TTL index, and the server (here the
   stand-in's TTL monitor) deletes an expired claim. */
static void test_claims(void **state)
{
    (void)state;
    void *a = store_open(), *b = store_open();
    mab_error err = {0, ""};
    int64_t later = (int64_t)time(NULL) + 3600;
    mab_delta d = delta("x", "arm", 0, 1, 1.0);
    assert_int_equal(claim_rc(a, 1, later, &d, 1, &err), MAB_OK);
    assert_int_equal(claim_rc(b, 1, later, &d, 1, &err), MAB_ECLAIMED);
    assert_int_equal(claim_rc(a, 1, later, NULL, 0, &err), MAB_ECLAIMED);
    assert_int_equal(claim_rc(b, 2, later, &d, 1, &err), MAB_OK);
    const char *arms[] = {"arm"};
    mab_totals out;
    assert_int_equal(storage->load(a, "x", arms, 1, &out, &err), MAB_OK);
    assert_totals(&out, 0, 2, 2.0);
    assert_int_equal(count_claims(), 2);

    /* The TTL index on expires_at, expireAfterSeconds 0. */
    bson_t *command = BCON_NEW("listIndexes", BCON_UTF8("mab_arms_claims"));
    bson_t reply;
    assert_int_equal(run_command(database, command, &reply), 0);
    bson_iter_t it;
    assert_true(bson_iter_init(&it, &reply));
    assert_true(bson_iter_find_descendant(&it, "cursor.firstBatch.1.expireAfterSeconds", &it));
    assert_int_equal(bson_iter_as_int64(&it), 0);
    bson_destroy(&reply);
    bson_destroy(command);

    if (need_standin()) {
        assert_int_equal(claim_rc(a, 3, (int64_t)time(NULL) - 5, NULL, 0, &err), MAB_OK);
        assert_int_equal(count_claims(), 3);
        command = BCON_NEW("mabStandinFault", BCON_INT32(1), "ttlSweep", BCON_BOOL(true));
        assert_int_equal(run_command("admin", command, &reply), 0);
        bson_destroy(&reply);
        bson_destroy(command);
        assert_int_equal(count_claims(), 2); /* only the expired one went */
        assert_int_equal(claim_rc(b, 3, later, NULL, 0, &err), MAB_OK);
        assert_int_equal(claim_rc(a, 1, later, NULL, 0, &err), MAB_ECLAIMED);
    }
    storage->close(a);
    storage->close(b);
}

/* A claim whose reward cannot be written (the server hangs up on the
   update) is taken back: the retry is granted and counts once. */
static void test_claim_released_when_reward_fails(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    void *a = store_open();
    mab_error err = {0, ""};
    int64_t later = (int64_t)time(NULL) + 3600;
    mab_delta d = delta("x", "arm", 0, 1, 1.0);
    inject_hangups(1);
    assert_int_equal(claim_rc(a, 7, later, &d, 1, &err), MAB_ESTORAGE);
    assert_int_equal(count_claims(), 0);
    assert_int_equal(claim_rc(a, 7, later, &d, 1, &err), MAB_OK);
    assert_int_equal(claim_rc(a, 7, later, &d, 1, &err), MAB_ECLAIMED);
    const char *arms[] = {"arm"};
    mab_totals out;
    assert_int_equal(storage->load(a, "x", arms, 1, &out, &err), MAB_OK);
    assert_totals(&out, 0, 1, 1.0);
    storage->close(a);
}

/* Two engines with adapters on one MongoDB store (two machines): one cookie
   rewarded through both is counted once. */
static void test_reward_once_across_engines(void **state)
{
    (void)state;
    char config[160], key[160];
    snprintf(config, sizeof config, "%s/claims_%s.json", server.dir, database);
    snprintf(key, sizeof key, "%s/claims_%s.key", server.dir, database);
    assert_int_equal(mab_adapter_keygen(key, NULL), MAB_OK);
    assert_int_equal(
        test_write_file(config,
                        "{\"plugin_path\": [\"%s\"], \"secret_file\": \"%s\",\n"
                        " \"storage\": {\"plugin\": \"mongodb\", \"uri\": \"%s\",\n"
                        "   \"database\": \"%s\", \"sync\": \"always\"},\n"
                        " \"experiments\": {\"btn\": {\"policy\": {\"plugin\": "
                        "\"epsilon_greedy\"}, \"arms\": {\"a\": 1, \"b\": 2}}}}\n",
                        MAB_PLUGIN_DIR, key, server.uri, database),
        0);
    mab_engine *e[2];
    mab_adapter *ad[2];
    mab_error err = {0, ""};
    for (int i = 0; i < 2; i++) {
        if (mab_open(config, &e[i], &err) != MAB_OK)
            fail_msg("mab_open: %s", err.message);
        assert_int_equal(mab_adapter_open(e[i], &ad[i], &err), MAB_OK);
        assert_int_equal(mab_storage_has_claims(e[i]), 1);
    }
    mab_request *rq;
    mab_assignment assignment = MAB_STRUCT_INIT(mab_assignment);
    assert_int_equal(mab_request_begin(ad[0], NULL, NULL, &rq, NULL), MAB_OK);
    assert_int_equal(mab_request_choose(rq, "btn", &assignment, NULL), MAB_OK);
    char token[4200];
    snprintf(token, sizeof token, "%s", mab_request_token(rq));
    mab_request_end(rq);
    int counted = 0;
    for (int i = 0; i < 10; i++) {
        mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
        assert_int_equal(mab_request_begin(ad[i % 2], NULL, token, &rq, NULL), MAB_OK);
        assert_int_equal(mab_request_reward(rq, "btn", 1, &r, NULL), MAB_OK);
        counted += r.counted;
        mab_request_end(rq);
    }
    assert_int_equal(counted, 1);
    for (int i = 0; i < 2; i++) {
        mab_adapter_close(ad[i]);
        assert_int_equal(mab_close(e[i], NULL), MAB_OK);
    }
    void *st = store_open();
    const char *arms[] = {"a", "b"};
    mab_totals out[2];
    assert_int_equal(storage->load(st, "btn", arms, 2, out, &err), MAB_OK);
    assert_int_equal(out[0].rewards + out[1].rewards, 1);
    storage->close(st);
}

/* ---- policy statistics and time buckets (ABI 1.4 and 1.5) ------------------- */

static double doc_double(const bson_t *doc, const char *dotted)
{
    bson_iter_t it, found;
    if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, dotted, &found) ||
        !BSON_ITER_HOLDS_NUMBER(&found))
        return NAN;
    return bson_iter_as_double(&found);
}

/* How many documents of the test's collection match a filter. */
static int64_t count_docs(const bson_t *filter)
{
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database, "mab_arms");
    /* a find, not countDocuments (an aggregate the stand-in does not serve) */
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(c, filter, NULL, NULL);
    const bson_t *doc;
    int64_t n = 0;
    while (mongoc_cursor_next(cursor, &doc))
        n++;
    bson_error_t error;
    if (mongoc_cursor_error(cursor, &error))
        n = -1;
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(c);
    return n;
}

static int64_t ttl_sweep(void)
{
    bson_t *command = BCON_NEW("mabStandinFault", BCON_INT32(1), "ttlSweep", BCON_BOOL(1));
    bson_t reply;
    assert_int_equal(run_command("admin", command, &reply), 0);
    int64_t n = doc_int(&reply, "deleted");
    bson_destroy(&reply);
    bson_destroy(command);
    return n;
}

typedef struct seen_bucket {
    size_t arm;
    int64_t bucket;
    mab_totals add;
} seen_bucket;

typedef struct seen_buckets {
    seen_bucket b[64];
    size_t n;
} seen_buckets;

static int note_bucket(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add)
{
    seen_buckets *s = ctx;
    if (s->n == 64)
        return 99;
    s->b[s->n++] = (seen_bucket){arm_index, bucket, *add};
    return 0;
}

static int load_buckets_of(void *st, const char *exp, int64_t since, seen_buckets *s,
                           mab_error *err)
{
    memset(s, 0, sizeof *s);
    const char *arms[] = {"a", "b"};
    return storage->load_buckets(st, exp, arms, 2, since, note_bucket, s, err);
}

static int note_stats(void *ctx, const char *experiment, const char *arm, const char *layout,
                      const double *values, size_t n_values)
{
    char *out = ctx;
    size_t len = strlen(out);
    len += (size_t)snprintf(out + len, 400 - len, "%s.%s %s [", experiment, arm ? arm : "",
                            layout);
    for (size_t j = 0; j < n_values && len < 400; j++)
        len += (size_t)snprintf(out + len, 400 - len, "%s%.17g", j ? " " : "", values[j]);
    if (len < 400)
        snprintf(out + len, 400 - len, "];");
    return 0;
}

static int note_scanned_bucket(void *ctx, const char *experiment, const char *arm,
                               int64_t bucket, const mab_totals *add)
{
    char *out = ctx;
    size_t len = strlen(out);
    snprintf(out + len, 400 - len, "%s.%s@%" PRId64 "=%" PRIu64 ";", experiment, arm, bucket,
             add->pulls);
    return 0;
}

/*
 * Statistics and buckets through bulks the stand-in half-applies and hangs
 * up on (as test_exactly_once_across_hangups for the counters): after
 * every call, loads show exactly what was acknowledged, and at the end the
 * documents hold every increment exactly once.
 */
static void test_stats_buckets_exactly_once_across_hangups(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    enum { ROUNDS = 24 };
    const char *arms[] = {"a", "b"};
    const int64_t B = 1700000000 - 1700000000 % 3600;
    /* per arm: stats[2], bucket B + (round % 3) * 3600 pulls */
    double un_s[2][2] = {{0}}, ap_s[2][2] = {{0}}, un_e = 0, ap_e = 0;
    uint64_t un_b[2][3] = {{0}}, ap_b[2][3] = {{0}};
    void *st = store_open();
    mab_error err;
    int failures = 0;
    srand(11);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < 2; i++) {
            un_s[i][0] += 0.25 * (rand() % 4);
            un_s[i][1] += 1.0 + rand() % 3;
            un_b[i][round % 3] += 1 + (uint64_t)(rand() % 4);
        }
        un_e += 0.5;
        if (round % 4 == 1)
            inject_hangups(round % 8 == 1 ? 2 : 1); /* 2: the resend fails too */
        mab_stats_delta sd[3] = {{"exp", "a", "t/1:2,1", un_s[0], 2},
                                 {"exp", "b", "t/1:2,1", un_s[1], 2},
                                 {"exp", NULL, "t/1:2,1", &un_e, 1}};
        mab_bucket_delta bd[6];
        size_t nb = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 3; k++)
                if (un_b[i][k])
                    bd[nb++] = (mab_bucket_delta){"exp", arms[i], B + k * 3600,
                                                  {un_b[i][k], 0, 0, 0}};
        int rc = storage->apply_buckets(st, NULL, 0, sd, 3, bd, nb, INT64_MIN, &err);
        if (rc == MAB_OK) {
            for (int i = 0; i < 2; i++) {
                for (int j = 0; j < 2; j++)
                    ap_s[i][j] += un_s[i][j], un_s[i][j] = 0;
                for (int k = 0; k < 3; k++)
                    ap_b[i][k] += un_b[i][k], un_b[i][k] = 0;
            }
            ap_e += un_e;
            un_e = 0;
        } else {
            failures++;
            assert_int_equal(rc, MAB_ESTORAGE);
            assert_non_null(strstr(err.message, "127.0.0.1"));
        }
        double out[4], eout[1];
        rc = storage->load_stats(st, "exp", "t/1:2,1", arms, 2, 2, out, 1, eout, &err);
        if (rc != MAB_OK)
            continue; /* the connection may be down right after a hang-up */
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                if (out[2 * i + j] != ap_s[i][j])
                    fail_msg("round %d: %s stat %d reads %.17g, applied %.17g", round, arms[i],
                             j, out[2 * i + j], ap_s[i][j]);
        assert_true(eout[0] == ap_e);
        seen_buckets sb;
        if (load_buckets_of(st, "exp", INT64_MIN, &sb, &err) != MAB_OK)
            continue;
        for (size_t k = 0; k < sb.n; k++)
            if (sb.b[k].add.pulls != ap_b[sb.b[k].arm][(sb.b[k].bucket - B) / 3600])
                fail_msg("round %d: bucket %" PRId64 " of %s reads %" PRIu64 ", applied %" PRIu64,
                         round, sb.b[k].bucket, arms[sb.b[k].arm], sb.b[k].add.pulls,
                         ap_b[sb.b[k].arm][(sb.b[k].bucket - B) / 3600]);
    }
    assert_true(failures >= ROUNDS / 4);
    /* The rest, until it is through. */
    mab_stats_delta sd[3] = {{"exp", "a", "t/1:2,1", un_s[0], 2},
                             {"exp", "b", "t/1:2,1", un_s[1], 2},
                             {"exp", NULL, "t/1:2,1", &un_e, 1}};
    mab_bucket_delta bd[6];
    size_t nb = 0;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            bd[nb++] = (mab_bucket_delta){"exp", arms[i], B + k * 3600, {un_b[i][k], 0, 0, 0}};
    int rc = MAB_ESTORAGE;
    for (int tries = 0; tries < 50 && rc != MAB_OK; tries++)
        rc = storage->apply_buckets(st, NULL, 0, sd, 3, bd, nb, INT64_MIN, &err);
    assert_int_equal(rc, MAB_OK);
    storage->close(st);
    for (int i = 0; i < 2; i++) {
        char id[64];
        snprintf(id, sizeof id, "exp/%s/s:t/1:2,1", arms[i]);
        bson_t *doc = stored_doc(id);
        assert_non_null(doc);
        assert_true(doc_double(doc, "s.0") == ap_s[i][0] + un_s[i][0]);
        assert_true(doc_double(doc, "s.1") == ap_s[i][1] + un_s[i][1]);
        bson_destroy(doc);
        for (int k = 0; k < 3; k++) {
            snprintf(id, sizeof id, "exp/%s/b:%" PRId64, arms[i], B + k * 3600);
            doc = stored_doc(id);
            assert_non_null(doc);
            assert_int_equal(doc_int(doc, "pulls"), ap_b[i][k] + un_b[i][k]);
            bson_destroy(doc);
        }
    }
    bson_t *doc = stored_doc("exp//s:t/1:2,1");
    assert_non_null(doc);
    assert_true(doc_double(doc, "s.0") == ap_e + un_e);
    bson_destroy(doc);
}

/*
 * Credit: a call whose in-doubt batch is settled (counted) and whose new
 * batch then fails. The core still holds all of it, so loads subtract both
 * the settled part (credit) and the new part the server reached (doubt);
 * the next call counts everything once.
 */
static void test_stats_buckets_credit(void **state)
{
    (void)state;
    if (!need_standin())
        return;
    void *st = store_open();
    mab_error err = {0, ""};
    const char *arms[] = {"a", "b"};
    double v1[] = {1.0, 2.0}, w1[] = {3.0, 4.0};
    mab_stats_delta s1[] = {{"exp", "a", "t/1:2,0", v1, 2}, {"exp", "b", "t/1:2,0", w1, 2}};
    mab_bucket_delta b1[] = {{"exp", "a", 7200, {1, 0, 0, 0}}, {"exp", "b", 7200, {2, 0, 0, 0}}};
    inject_hangups(1); /* half of the 4 updates land, no reply */
    assert_int_equal(storage->apply_buckets(st, NULL, 0, s1, 2, b1, 2, INT64_MIN, &err),
                     MAB_ESTORAGE);
    /* The next call: the resend of the in-doubt batch passes (its first
       bulk, then the duplicates' second), the new batch is half-applied. */
    bson_t *command = BCON_NEW("mabStandinFault", BCON_INT32(1), "hangupUpdates", BCON_INT32(1),
                               "passUpdates", BCON_INT32(2));
    bson_t reply;
    assert_int_equal(run_command("admin", command, &reply), 0);
    bson_destroy(&reply);
    bson_destroy(command);
    double v2[] = {1.0 + 0.5, 2.0 + 0.5}, w2[] = {3.0 + 0.5, 4.0 + 0.5};
    mab_stats_delta s2[] = {{"exp", "a", "t/1:2,0", v2, 2}, {"exp", "b", "t/1:2,0", w2, 2}};
    mab_bucket_delta b2[] = {{"exp", "a", 7200, {1 + 1, 0, 0, 0}},
                             {"exp", "b", 7200, {2 + 1, 0, 0, 0}}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, s2, 2, b2, 2, INT64_MIN, &err),
                     MAB_ESTORAGE);
    bson_t *doc = stored_doc("exp/a/s:t/1:2,0");
    assert_non_null(doc);
    assert_true(doc_double(doc, "s.0") >= 1.0); /* the settled batch is stored */
    bson_destroy(doc);
    double out[4];
    assert_int_equal(storage->load_stats(st, "exp", "t/1:2,0", arms, 2, 2, out, 0, NULL, &err),
                     MAB_OK);
    for (int k = 0; k < 4; k++)
        if (out[k] != 0.0)
            fail_msg("stat %d reads %.17g; the core still holds all of it", k, out[k]);
    seen_buckets sb;
    assert_int_equal(load_buckets_of(st, "exp", INT64_MIN, &sb, &err), MAB_OK);
    for (size_t k = 0; k < sb.n; k++)
        assert_int_equal(sb.b[k].add.pulls, 0);
    assert_int_equal(storage->apply_buckets(st, NULL, 0, s2, 2, b2, 2, INT64_MIN, &err), MAB_OK);
    assert_int_equal(storage->load_stats(st, "exp", "t/1:2,0", arms, 2, 2, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 1.5 && out[1] == 2.5 && out[2] == 3.5 && out[3] == 4.5);
    storage->close(st);
    doc = stored_doc("exp/b/b:7200");
    assert_non_null(doc);
    assert_int_equal(doc_int(doc, "pulls"), 3);
    bson_destroy(doc);
}

/* Statistics: exact round trip, records of one layout only, non-finite
   values refused with nothing written, scan, a damaged document named,
   reset removes them; counters never confused with them. */
static void test_stats_store(void **state)
{
    (void)state;
    void *st = store_open();
    mab_error err = {0, ""};
    mab_delta d = delta("btn", "a", 1, 0, 0);
    double tiny[] = {1e-18, 0.1}, other[] = {5.0};
    mab_stats_delta s[] = {{"btn", "a", "p/1:2,0", tiny, 2}, {"btn", "b", "q/2:1,0", other, 1}};
    assert_int_equal(storage->apply_stats(st, &d, 1, s, 2, &err), MAB_OK);
    assert_int_equal(storage->apply_stats(st, NULL, 0, s, 1, &err), MAB_OK);
    const char *arms[] = {"a", "b"};
    double out[4] = {9, 9, 9, 9};
    assert_int_equal(storage->load_stats(st, "btn", "p/1:2,0", arms, 2, 2, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 2e-18 && out[1] == 0.1 + 0.1 && out[2] == 0 && out[3] == 0);
    mab_totals t[2];
    assert_int_equal(storage->load(st, "btn", arms, 2, t, &err), MAB_OK);
    assert_totals(&t[0], 1, 0, 0);
    struct collected seen_counters = {.n = 0};
    assert_int_equal(storage->scan(st, collect, &seen_counters, &err), MAB_OK);
    assert_int_equal(seen_counters.n, 1);

    double bad[] = {1.0, NAN};
    mab_stats_delta sb = {"btn", "a", "p/1:2,0", bad, 2};
    mab_delta more = delta("btn", "a", 1, 0, 0);
    assert_int_equal(storage->apply_stats(st, &more, 1, &sb, 1, &err), MAB_EINVAL);
    assert_non_null(strstr(err.message, "not finite"));
    assert_non_null(strstr(err.message, "btn.a"));
    bad[1] = -INFINITY;
    assert_int_equal(storage->apply_stats(st, &more, 1, &sb, 1, &err), MAB_EINVAL);
    bson_t *doc = stored_doc("btn/a");
    assert_int_equal(doc_int(doc, "pulls"), 1);
    bson_destroy(doc);
    doc = stored_doc("btn/a/s:p/1:2,0");
    assert_non_null(doc);
    assert_true(doc_double(doc, "s.0") == 2e-18 && doc_double(doc, "s.1") == 0.1 + 0.1);
    bson_destroy(doc);

    char seen[400] = "";
    assert_int_equal(storage->scan_stats(st, note_stats, seen, &err), MAB_OK);
    assert_string_equal(seen, "btn.a p/1:2,0 [2.0000000000000001e-18 0.20000000000000001];"
                              "btn.b q/2:1,0 [5];");

    /* A document someone damaged: named, with the server. */
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database, "mab_arms");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("btn/b/s:q/2:1,0"));
    bson_t *update = BCON_NEW("$set", "{", "s", BCON_UTF8("oops"), "}");
    bson_error_t error;
    assert_true(mongoc_collection_update_one(c, filter, update, NULL, NULL, &error));
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    double one[1];
    assert_int_equal(storage->load_stats(st, "btn", "q/2:1,0", arms, 2, 1, out, 0, NULL, &err),
                     MAB_ECORRUPT);
    fprintf(stderr, "# damaged statistics: %s\n", err.message);
    assert_non_null(strstr(err.message, "127.0.0.1"));
    assert_non_null(strstr(err.message, "btn/b/s:q/2:1,0"));
    seen[0] = '\0';
    assert_int_equal(storage->scan_stats(st, note_stats, seen, &err), MAB_ECORRUPT);
    (void)one;

    assert_int_equal(storage->reset(st, "btn", &err), MAB_OK);
    bson_t *all = bson_new();
    assert_int_equal(count_docs(all), 0);
    bson_destroy(all);
    storage->close(st);
}

/*
 * Buckets: one document per (experiment, arm, bucket start); loaded from
 * `since` on in ascending order, listed arms only; expire_at = start +
 * retention (retention = now - keep_from) for the server's TTL index; the
 * bounded sweep removes buckets before keep_from, and none is returned
 * after; reset removes them.
 */
static void test_buckets(void **state)
{
    (void)state;
    void *st = store_open();
    mab_error err = {0, ""};
    const int64_t H = 3600, now = (int64_t)time(NULL), B = now - now % H, retention = 48 * H;
    mab_bucket_delta b[] = {{"btn", "a", B, {1, 1, 1, 1}},
                            {"btn", "b", B - 2 * H, {2, 0, 0, 0}},
                            {"btn", "a", B - 2 * H, {3, 1, 0.5, 0.25}},
                            {"btn", "c", B - H, {4, 0, 0, 0}},
                            {"size", "a", B, {5, 0, 0, 0}}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, b, 5, now - retention, &err),
                     MAB_OK);
    seen_buckets s;
    assert_int_equal(load_buckets_of(st, "btn", INT64_MIN, &s, &err), MAB_OK);
    assert_int_equal(s.n, 3);
    assert_true(s.b[0].bucket == B - 2 * H && s.b[1].bucket == B - 2 * H && s.b[2].bucket == B);
    assert_int_equal(s.b[0].arm, 0); /* a before b within a bucket (by _id) */
    assert_totals(&s.b[0].add, 3, 1, 0.5);
    assert_totals(&s.b[1].add, 2, 0, 0);
    assert_totals(&s.b[2].add, 1, 1, 1);
    assert_int_equal(load_buckets_of(st, "btn", B - H, &s, &err), MAB_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.b[0].bucket, B);
    const char *arms[] = {"a"};
    mab_totals t[1];
    assert_int_equal(storage->load(st, "btn", arms, 1, t, &err), MAB_OK);
    assert_totals(&t[0], 0, 0, 0); /* totals are not made from buckets */

    char id[64];
    snprintf(id, sizeof id, "btn/a/b:%" PRId64, B - 2 * H);
    bson_t *doc = stored_doc(id);
    assert_non_null(doc);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, "expire_at") && BSON_ITER_HOLDS_DATE_TIME(&it));
    int64_t at = bson_iter_date_time(&it) / 1000;
    fprintf(stderr, "# bucket %" PRId64 " expires at %" PRId64 " (start + %" PRId64 " s)\n",
            B - 2 * H, at, at - (B - 2 * H));
    assert_true(at >= B - 2 * H + retention && at <= B - 2 * H + retention + 5);
    bson_destroy(doc);

    /* keep_from past B - 2H: swept by the next call, never returned again. */
    mab_bucket_delta later = {"btn", "a", B, {1, 0, 0, 0}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &later, 1, B - H, &err),
                     MAB_OK);
    doc = stored_doc(id);
    assert_null(doc);
    snprintf(id, sizeof id, "btn/b/b:%" PRId64, B - 2 * H);
    assert_null(stored_doc(id));
    assert_int_equal(load_buckets_of(st, "btn", INT64_MIN, &s, &err), MAB_OK);
    assert_int_equal(s.n, 1);
    assert_totals(&s.b[0].add, 2, 1, 1);
    mab_bucket_delta old = {"btn", "a", B - 5 * H, {1, 0, 0, 0}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &old, 1, B - H, &err), MAB_OK);
    snprintf(id, sizeof id, "btn/a/b:%" PRId64, B - 5 * H);
    assert_null(stored_doc(id));

    /* The sweep is bounded (64 per call): while it lags, loads still never
       return a bucket before the latest keep_from. */
    mab_bucket_delta many[70];
    for (int i = 0; i < 70; i++)
        many[i] = (mab_bucket_delta){"lag", "a", B - (100 + i) * H, {1, 0, 0, 0}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, many, 70, INT64_MIN, &err),
                     MAB_OK);
    mab_bucket_delta fresh = {"lag", "b", B, {1, 0, 0, 0}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &fresh, 1, B - H, &err),
                     MAB_OK);
    bson_t *lagging = BCON_NEW("experiment", BCON_UTF8("lag"));
    assert_int_equal(count_docs(lagging), 70 + 1 - 64);
    assert_int_equal(load_buckets_of(st, "lag", INT64_MIN, &s, &err), MAB_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.b[0].bucket, B);
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &fresh, 1, B - H, &err),
                     MAB_OK);
    assert_int_equal(count_docs(lagging), 1);
    bson_destroy(lagging);
    assert_int_equal(storage->reset(st, "lag", &err), MAB_OK);

    char seen[400] = "";
    assert_int_equal(storage->scan_buckets(st, note_scanned_bucket, seen, &err), MAB_OK);
    char want[400];
    snprintf(want, sizeof want, "btn.a@%" PRId64 "=2;btn.c@%" PRId64 "=4;size.a@%" PRId64 "=5;",
             B, B - H, B);
    assert_string_equal(seen, want);

    /* The TTL index: a bucket whose retention has passed is removed by the
       server's monitor (the stand-in's, run on demand here). */
    if (!server.real) {
        mab_bucket_delta soon = {"row", "a", B, {1, 0, 0, 0}};
        assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &soon, 1, B - 1, &err),
                         MAB_OK); /* retention now - (B - 1): expires at now + 1 */
        snprintf(id, sizeof id, "row/a/b:%" PRId64, B);
        doc = stored_doc(id);
        assert_non_null(doc);
        bson_destroy(doc);
        for (int64_t until = now_ms() + 10000; now_ms() < until; sleep_ms(200)) {
            ttl_sweep();
            if (!(doc = stored_doc(id)))
                break;
            bson_destroy(doc);
        }
        assert_null(stored_doc(id));
        /* ... and not the counters, statistics or other buckets. */
        snprintf(id, sizeof id, "size/a/b:%" PRId64, B);
        doc = stored_doc(id);
        assert_non_null(doc);
        bson_destroy(doc);
    }

    assert_int_equal(storage->reset(st, "btn", &err), MAB_OK);
    bson_t *filter = BCON_NEW("experiment", BCON_UTF8("btn"));
    assert_int_equal(count_docs(filter), 0);
    bson_destroy(filter);
    filter = BCON_NEW("experiment", BCON_UTF8("size"));
    assert_int_equal(count_docs(filter), 1);
    bson_destroy(filter);
    storage->close(st);
}

/* A damaged bucket document (the "wrong type" of a document store): a clear
   error naming the document and the server. */
static void test_damaged_bucket(void **state)
{
    (void)state;
    void *st = store_open();
    mab_error err = {0, ""};
    mab_bucket_delta b = {"btn", "a", 7200, {1, 0, 0, 0}};
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &b, 1, INT64_MIN, &err),
                     MAB_OK);
    mongoc_collection_t *c = mongoc_client_get_collection(server.client, database, "mab_arms");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("btn/a/b:7200"));
    bson_t *update = BCON_NEW("$set", "{", "pulls", BCON_UTF8("many"), "}");
    bson_error_t error;
    assert_true(mongoc_collection_update_one(c, filter, update, NULL, NULL, &error));
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    seen_buckets s;
    assert_int_equal(load_buckets_of(st, "btn", INT64_MIN, &s, &err), MAB_ECORRUPT);
    fprintf(stderr, "# damaged bucket: %s\n", err.message);
    assert_non_null(strstr(err.message, "127.0.0.1"));
    assert_non_null(strstr(err.message, "btn/a/b:7200"));
    char seen[400] = "";
    assert_int_equal(storage->scan_buckets(st, note_scanned_bucket, seen, &err), MAB_ECORRUPT);
    assert_non_null(strstr(err.message, "btn/a/b:7200"));
    /* Adding to it: the server refuses ($inc of a string), named. */
    assert_int_equal(storage->apply_buckets(st, NULL, 0, NULL, 0, &b, 1, INT64_MIN, &err),
                     MAB_ESTORAGE);
    fprintf(stderr, "# adding to it: %s\n", err.message);
    assert_non_null(strstr(err.message, "127.0.0.1"));
    if (!server.real)
        assert_non_null(strstr(err.message, "non-numeric"));
    storage->close(st);
}

static void write_policy_config(const char *path, const char *policy, const char *sync)
{
    assert_int_equal(
        test_write_file(path,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 5,\n"
                        " \"storage\": {\"plugin\": \"mongodb\", \"uri\": \"%s\",\n"
                        "   \"database\": \"%s\", \"sync\": %s},\n"
                        " \"experiments\": {\"btn\": {\"policy\": %s,\n"
                        "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                        MAB_PLUGIN_DIR, server.uri, database, sync, policy),
        0);
}

typedef struct policy_snapshot {
    mab_policy_stats_info info;
    double arm[6];
    double exp[2];
    mab_arm_stats counters[3];
} policy_snapshot;

static policy_snapshot policy_read(mab_engine *e)
{
    policy_snapshot s;
    memset(&s, 0, sizeof s);
    s.info.struct_size = sizeof s.info;
    mab_error err = {0, ""};
    if (mab_policy_stats(e, "btn", &s.info, s.arm, 6, s.exp, 2, &err) != MAB_OK)
        fail_msg("mab_policy_stats: %s", err.message);
    size_t n;
    s.counters[0].struct_size = sizeof s.counters[0];
    if (mab_stats(e, "btn", s.counters, 3, &n, &err) != MAB_OK)
        fail_msg("mab_stats: %s", err.message);
    return s;
}

/* EXP3 (statistics per arm) opens over MongoDB, and what it learnt reads
   back exactly after close and reopen. */
static void test_exp3_survives_restart(void **state)
{
    (void)state;
    char config[160];
    snprintf(config, sizeof config, "%s/exp3_%s.json", server.dir, database);
    write_policy_config(config, "{\"plugin\": \"exp3\", \"gamma\": 0.2}", "{\"interval_ms\": 20}");
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config, &e, &err) != MAB_OK)
        fail_msg("exp3 over mongodb: %s", err.message);
    for (int i = 0; i < 2000; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "btn", &c, &err), MAB_OK);
        if (i % 3 == 0) {
            mab_context ctx = {sizeof ctx, NULL, NULL, 0, 0, c.probability, 0, 0};
            if (mab_reward_ctx(e, "btn", c.arm_id, c.arm_index == 2 ? 1.0 : 0.25, &ctx, &err) !=
                MAB_OK)
                fail_msg("reward: %s", err.message);
        }
    }
    policy_snapshot before = policy_read(e);
    assert_string_equal(before.info.layout, "exp3/1:1,0");
    assert_true(before.arm[0] > 0 && before.arm[1] > 0 && before.arm[2] > 0);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    bson_t *doc = stored_doc("btn/c/s:exp3/1:1,0");
    assert_non_null(doc);
    assert_true(doc_double(doc, "s.0") == before.arm[2]);
    bson_destroy(doc);
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    policy_snapshot after = policy_read(e);
    assert_memory_equal(before.arm, after.arm, 3 * sizeof(double));
    assert_int_equal(after.counters[0].pulls + after.counters[1].pulls + after.counters[2].pulls,
                     2000);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

enum { STAT_PROCS = 4, STAT_EACH = 3000 };

/* 4 processes over the policy_stats fixture (statistics that mirror the
   counters): the stored statistics are exact. */
static void test_stats_four_processes(void **state)
{
    (void)state;
    char config[160];
    snprintf(config, sizeof config, "%s/pstats_%s.json", server.dir, database);
    write_policy_config(config, "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_stats.so\"}",
                        "{\"interval_ms\": 20}");
    pid_t pids[STAT_PROCS];
    for (int i = 0; i < STAT_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            mab_engine *e = NULL;
            if (mab_open(config, &e, NULL) != MAB_OK)
                _exit(2);
            for (int k = 0; k < STAT_EACH; k++) {
                mab_choice c = MAB_STRUCT_INIT(mab_choice);
                if (mab_choose(e, "btn", &c, NULL) != MAB_OK ||
                    (k % 2 == 0 && mab_reward(e, "btn", c.arm_id, 0.5, NULL) != MAB_OK))
                    _exit(3);
            }
            _exit(mab_close(e, NULL) == MAB_OK ? 0 : 4);
        }
    }
    for (int i = 0; i < STAT_PROCS; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d ended with status 0x%x", i, status);
    }
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    policy_snapshot s = policy_read(e);
    assert_string_equal(s.info.layout, "stats/1:2,1");
    double pulls = 0, rewards = 0;
    for (int i = 0; i < 3; i++) {
        if (s.arm[2 * i] != (double)s.counters[i].pulls ||
            s.arm[2 * i + 1] != s.counters[i].reward_sum)
            fail_msg("arm %d: stats %g, %g; counters %llu pulls, reward sum %g", i, s.arm[2 * i],
                     s.arm[2 * i + 1], (unsigned long long)s.counters[i].pulls,
                     s.counters[i].reward_sum);
        pulls += s.arm[2 * i];
        rewards += s.arm[2 * i + 1];
    }
    assert_true(pulls == (double)STAT_PROCS * STAT_EACH);
    assert_true(rewards == (double)STAT_PROCS * (STAT_EACH / 2) * 0.5);
    assert_true(s.exp[0] == (double)STAT_PROCS * (STAT_EACH + STAT_EACH / 2));
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_finite_document_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_uri_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authentication_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exactly_once_across_hangups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_released_when_reward_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reward_once_across_engines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_buckets_exactly_once_across_hangups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stats_buckets_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exp3_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_four_processes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
