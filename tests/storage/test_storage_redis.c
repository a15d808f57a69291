/*
 * test_storage_redis.c - the redis storage plugin against Debian's
 * redis-server (tests/storage/redis_server.h), beyond the conformance suite:
 *
 *  - a lost reply (a proxy in this process drops the server's answer to an
 *    update or a claim, or the update itself, and closes the connection) and a reply
 *    that comes too late (the server stalled by DEBUG SLEEP past
 *    timeout_ms): the retry counts every increment exactly once;
 *  - 4 processes x 50,000 rewards: exact totals, and each process sees the
 *    others' through refresh;
 *  - the server down at open, down mid-run and restarted: decisions go on,
 *    totals exact afterwards;
 *  - wrong password, no password, unreachable host, unix socket, bad urls:
 *    clear errors naming the server, never the password.
 *
 * No assertion depends on timing: waits poll until a condition holds or a
 * generous deadline passes; measured latencies are printed, not asserted.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mab/mab.h"
#include "mab/storage.h"
#include "child.h"
#include "redis_server.h"
#include "support.h"

#define PLUGIN MAB_PLUGIN_DIR "/redis.so"

static const mab_storage *plugin;
static void *plugin_handle;
static char run_dir[128];
static redis_server srv;
static unsigned seq; /* fresh prefixes and file names */

static void assert_mentions(const char *message, const char *what)
{
    if (!strstr(message, what))
        fail_msg("the message does not name %s: %s", what, message);
}

static void assert_not_mentions(const char *message, const char *what)
{
    if (strstr(message, what))
        fail_msg("the message shows \"%s\": %s", what, message);
}

/* Open the plugin on a JSON object of its keys. */
static int open_keys(const char *json, void **st, mab_error *err)
{
    mab_params *params;
    int rc = mab_params_parse(json, "test", &params, err);
    if (rc != MAB_OK)
        return rc;
    rc = plugin->open(params, st, err);
    if (rc != MAB_OK && mab_params_last_error(params)[0])
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
    mab_params_free(params);
    return rc;
}

/* A store of its own on the test server: prefix NAME<n>: into prefix (32
   bytes) and its storage keys into keys (200 bytes), opened. */
static void *open_fresh(const char *name, char *prefix, char *keys)
{
    snprintf(prefix, 32, "%s%u:", name, ++seq);
    snprintf(keys, 200, "{\"url\": \"%s\", \"prefix\": \"%s\"}", srv.url, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    if (open_keys(keys, &st, &err) != MAB_OK)
        fail_msg("open %s: %s", prefix, err.message);
    return st;
}

/* The stored fields of ARM in PREFIX{EXP}:totals, read with our own client. */
static int64_t stored_count(const char *prefix, const char *exp, const char *field)
{
    redisContext *c = redis_server_connect(&srv);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "HGET %s{%s}:totals %s", prefix, exp, field);
    int64_t n = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                : r && r->type == REDIS_REPLY_NIL  ? 0
                                                   : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

static double stored_sum(const char *prefix, const char *exp, const char *field)
{
    redisContext *c = redis_server_connect(&srv);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "HGET %s{%s}:totals %s", prefix, exp, field);
    double x = r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : 0;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return x;
}

static void assert_totals(const mab_totals *t, uint64_t pulls, uint64_t rewards, double sum,
                          double sum_sq)
{
    if (t->pulls != pulls || t->rewards != rewards || t->reward_sum != sum ||
        t->reward_sum_sq != sum_sq)
        fail_msg("totals %" PRIu64 " %" PRIu64 " %.17g %.17g; expected %" PRIu64 " %" PRIu64
                 " %.17g %.17g",
                 t->pulls, t->rewards, t->reward_sum, t->reward_sum_sq, pulls, rewards, sum,
                 sum_sq);
}

/* ---- a proxy that loses what it is told to ------------------------------- */

enum proxy_mode { PASS, LOSE_REPLY, LOSE_REQUEST };

static struct {
    int listen_fd;
    int port;
    atomic_int mode;     /* what to do with the next bytes */
    atomic_int then;     /* the mode after the next loss */
    atomic_int lost;     /* how many times it lost something */
    atomic_int stop;
    pthread_t thread;
} proxy;

static void *proxy_main(void *arg)
{
    (void)arg;
    /* Writes to a connection the plugin closed must not kill the test. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    while (!atomic_load(&proxy.stop)) {
        struct pollfd lp = {proxy.listen_fd, POLLIN, 0};
        if (poll(&lp, 1, 100) <= 0)
            continue;
        int client = accept(proxy.listen_fd, NULL, NULL);
        if (client < 0)
            continue;
        int server = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)srv.port);
        if (server < 0 || connect(server, (struct sockaddr *)&a, sizeof a) != 0) {
            close(client);
            if (server >= 0)
                close(server);
            continue;
        }
        /* One connection at a time: the plugin keeps one. */
        while (!atomic_load(&proxy.stop)) {
            struct pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
            if (poll(p, 2, 100) <= 0)
                continue;
            char buf[65536];
            int done = 0;
            for (int k = 0; k < 2 && !done; k++) {
                if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t n = read(p[k].fd, buf, sizeof buf);
                if (n <= 0) {
                    done = 1;
                    break;
                }
                int mode = atomic_load(&proxy.mode);
                if ((k == 1 && mode == LOSE_REPLY) || (k == 0 && mode == LOSE_REQUEST)) {
                    /* The bytes go nowhere and the connection breaks. */
                    atomic_store(&proxy.mode, atomic_exchange(&proxy.then, PASS));
                    atomic_fetch_add(&proxy.lost, 1);
                    done = 1;
                    break;
                }
                int to = k == 0 ? server : client;
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(to, buf + off, (size_t)(n - off));
                    if (w <= 0) {
                        done = 1;
                        break;
                    }
                    off += w;
                }
            }
            if (done)
                break;
        }
        close(client);
        close(server);
    }
    return NULL;
}

static int proxy_start(void)
{
    proxy.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (proxy.listen_fd < 0 || bind(proxy.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(proxy.listen_fd, 4) != 0 ||
        getsockname(proxy.listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    proxy.port = ntohs(a.sin_port);
    atomic_store(&proxy.stop, 0);
    return pthread_create(&proxy.thread, NULL, proxy_main, NULL) == 0 ? 0 : -1;
}

static void proxy_stop(void)
{
    atomic_store(&proxy.stop, 1);
    pthread_join(proxy.thread, NULL);
    close(proxy.listen_fd);
}

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(run_dir, sizeof run_dir, "/tmp/mab-redis-XXXXXX");
    if (!mkdtemp(run_dir))
        return -1;
    if (!(plugin = test_load_storage(PLUGIN, &plugin_handle)))
        return -1;
    snprintf(srv.dir, sizeof srv.dir, "%s/server", run_dir);
    if (mkdir(srv.dir, 0755) != 0 || redis_server_start(&srv) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_server_stop(&srv, SIGTERM);
    if (plugin_handle)
        dlclose(plugin_handle);
    test_rm_tree(run_dir);
    return 0;
}

/* ---- lost replies ------------------------------------------------------------ */

/* What a scan saw of lost_once's experiments: pulls per arm, visits. */
typedef struct lost_seen {
    int64_t btn, size, calm;
    int visits;
} lost_seen;

static int lost_visit(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    lost_seen *l = ctx;
    l->visits++;
    if (strcmp(experiment, "btn") == 0 && strcmp(arm, "a") == 0)
        l->btn = (int64_t)t->pulls;
    else if (strcmp(experiment, "size") == 0 && strcmp(arm, "s") == 0)
        l->size = (int64_t)t->pulls;
    else if (strcmp(experiment, "calm") == 0 && strcmp(arm, "c") == 0)
        l->calm = (int64_t)t->pulls;
    return 0;
}

/*
 * The proxy loses the reply to an update (the server ran it) or the update
 * itself (the server never saw it), and then the first request on the
 * plugin's new connection (its retry within the same apply). Either way
 * apply fails naming the server, load shows what is stored minus what the
 * core still holds, and the next apply, offered the failed batch merged
 * with a newer one, leaves every increment counted exactly once.
 */
static void lost_once(enum proxy_mode mode)
{
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "lost%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"redis://127.0.0.1:%d/0\", \"prefix\": \"%s\"}",
             proxy.port, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    mab_delta first[] = {{"btn", "a", {10, 4, 2.5, 1.75}}, {"size", "s", {1, 1, 1, 1}},
                         {"calm", "c", {7, 0, 0, 0}}};
    assert_int_equal(plugin->apply(st, first, 3, &err), MAB_OK);

    mab_delta second[] = {{"btn", "a", {3, 1, 0.5, 0.25}}, {"size", "s", {2, 0, 0, 0}}};
    int lost_before = atomic_load(&proxy.lost);
    atomic_store(&proxy.then, LOSE_REQUEST);
    atomic_store(&proxy.mode, mode);
    int rc = plugin->apply(st, second, 2, &err);
    assert_int_equal(atomic_load(&proxy.lost), lost_before + 2);
    assert_int_equal(rc, MAB_ESTORAGE);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", proxy.port);
    assert_mentions(err.message, where);
    fprintf(stderr, "# %s: %s\n", mode == LOSE_REPLY ? "reply lost" : "request lost",
            err.message);
    /* What the server holds: the second batch too when only its reply was lost. */
    int64_t pulls = stored_count(prefix, "btn", "a:pulls");
    assert_int_equal(pulls, mode == LOSE_REPLY ? 13 : 10);

    /* load: stored minus what the core still holds (the second batch). */
    const char *arms[] = {"a"};
    mab_totals out[1];
    assert_int_equal(plugin->load(st, "btn", arms, 1, out, &err), MAB_OK);
    assert_totals(&out[0], 10, 4, 2.5, 1.75);
    /* A scan likewise, its reads in flight together: btn and size (in doubt)
       read with this writer's batch number, calm (not in doubt) by its
       totals alone; each gets its own replies. */
    lost_seen seen = {-1, -1, -1, 0};
    assert_int_equal(plugin->scan(st, lost_visit, &seen, &err), MAB_OK);
    assert_int_equal(seen.btn, 10);
    assert_int_equal(seen.size, 1);
    assert_int_equal(seen.calm, 7);
    assert_int_equal(seen.visits, 3);

    /* The core offers the failed batch again, merged with a newer one. */
    mab_delta third[] = {{"btn", "a", {3 + 5, 1 + 2, 0.5 + 1.0, 0.25 + 0.5}},
                         {"size", "s", {2 + 1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(st, third, 2, &err), MAB_OK);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 18);
    assert_int_equal(plugin->load(st, "btn", arms, 1, out, &err), MAB_OK);
    assert_totals(&out[0], 18, 7, 4.0, 2.5);
    const char *size_arms[] = {"s"};
    assert_int_equal(plugin->load(st, "size", size_arms, 1, out, &err), MAB_OK);
    assert_totals(&out[0], 4, 1, 1, 1);
    plugin->close(st);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 18);
    assert_int_equal(stored_count(prefix, "btn", "a:rewards"), 7);
    assert_true(stored_sum(prefix, "btn", "a:reward_sum") == 4.0);
    assert_int_equal(stored_count(prefix, "size", "s:pulls"), 4);
}

/* One loss only: the apply itself sends again on a new connection and
   succeeds, counting once (the first reward after a server restart is not
   refused). */
static void lost_then_retried(void)
{
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "retry%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"redis://127.0.0.1:%d/0\", \"prefix\": \"%s\"}",
             proxy.port, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    mab_delta d = {"btn", "a", {5, 2, 1.5, 1.25}};
    int lost_before = atomic_load(&proxy.lost);
    atomic_store(&proxy.mode, LOSE_REPLY);
    assert_int_equal(plugin->apply(st, &d, 1, &err), MAB_OK);
    assert_int_equal(atomic_load(&proxy.lost), lost_before + 1);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 5);
    assert_int_equal(plugin->apply(st, &d, 1, &err), MAB_OK);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 10);
    plugin->close(st);
}

/*
 * A claim (SET NX PX in a script, with its reward) whose reply is lost, and
 * the retry within the call lost too: claim fails naming the server; the
 * server holds the claim and the reward. The retry recognises its own win
 * (MAB_OK, reward not added again); a replay of the id afterwards, from
 * this process or another, is refused.
 */
static void lost_claim(void)
{
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "claim%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"redis://127.0.0.1:%d/0\", \"prefix\": \"%s\"}",
             proxy.port, prefix);
    void *st = NULL, *other = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    memset(id, 0x5c, sizeof id);
    mab_delta reward = {"btn", "a", {0, 1, 0.5, 0.25}};
    mab_claim c = {id, (int64_t)time(NULL) + 3600, &reward, 1, -1};
    int lost_before = atomic_load(&proxy.lost);
    atomic_store(&proxy.then, LOSE_REQUEST);
    atomic_store(&proxy.mode, LOSE_REPLY);
    int rc = plugin->claim(st, &c, 1, 0, &err);
    assert_int_equal(atomic_load(&proxy.lost), lost_before + 2);
    assert_int_equal(rc, MAB_ESTORAGE);
    fprintf(stderr, "# claim reply lost: %s\n", err.message);
    assert_int_equal(stored_count(prefix, "btn", "a:rewards"), 1);
    c.result = -1;
    rc = plugin->claim(st, &c, 1, 0, &err);
    if (rc != MAB_OK)
        fail_msg("the retried claim: %s", err.message);
    assert_int_equal(c.result, MAB_OK);
    assert_int_equal(stored_count(prefix, "btn", "a:rewards"), 1);
    /* A replay: refused, from this process and from another. */
    c.result = -1;
    assert_int_equal(plugin->claim(st, &c, 1, 0, &err), MAB_OK);
    assert_int_equal(c.result, MAB_ECLAIMED);
    char direct[200]; /* the proxy serves one connection at a time */
    snprintf(direct, sizeof direct, "{\"url\": \"%s\", \"prefix\": \"%s\"}", srv.url, prefix);
    assert_int_equal(open_keys(direct, &other, &err), MAB_OK);
    c.result = -1;
    assert_int_equal(plugin->claim(other, &c, 1, 0, &err), MAB_OK);
    assert_int_equal(c.result, MAB_ECLAIMED);
    assert_int_equal(stored_count(prefix, "btn", "a:rewards"), 1);
    plugin->close(other);
    plugin->close(st);
    /* The claim key expires with the cookie: SET ... PX. */
    redisContext *rc2 = redis_server_connect(&srv);
    assert_non_null(rc2);
    redisReply *ttl = redisCommand(rc2, "PTTL %sclaim:5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c", prefix);
    assert_int_equal(ttl->type, REDIS_REPLY_INTEGER);
    assert_true(ttl->integer > 3500 * 1000LL && ttl->integer <= 3600 * 1000LL);
    freeReplyObject(ttl);
    redisFree(rc2);
}

static void test_lost_reply_counted_once(void **state)
{
    (void)state;
    assert_int_equal(proxy_start(), 0);
    lost_once(LOSE_REPLY);
    lost_once(LOSE_REQUEST);
    lost_then_retried();
    lost_claim();
    proxy_stop();
}

/* A stalled server: the update reaches it, the plugin gives up after
   timeout_ms, the server runs it when the stall ends. The retry must not
   count it again. */
static void test_late_reply_counted_once(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "late%u:", ++seq);
    snprintf(keys, sizeof keys,
             "{\"url\": \"%s\", \"prefix\": \"%s\", \"timeout_ms\": 200}", srv.url, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    mab_delta one = {"btn", "a", {1, 1, 1.0, 1.0}};
    assert_int_equal(plugin->apply(st, &one, 1, &err), MAB_OK);

    /* Stall the server for 1.5 s from a connection of our own. */
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    assert_int_equal(redisAppendCommand(c, "DEBUG SLEEP 1.5"), REDIS_OK);
    int done = 0;
    assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
    assert_true(done);
    redis_test_sleep_ms(100); /* not needed for correctness: only makes the stall likely first */
    mab_delta two = {"btn", "a", {2, 2, 2.0, 2.0}};
    int rc = plugin->apply(st, &two, 1, &err);
    fprintf(stderr, "# apply during the stall: %d %s\n", rc, rc ? err.message : "");
    redisReply *r = NULL;
    assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
    freeReplyObject(r);
    redisFree(c);
    if (rc == MAB_OK) {
        /* The stall ended before the timeout (a slow machine): still exact. */
        assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 3);
    } else {
        assert_int_equal(rc, MAB_ESTORAGE);
        assert_mentions(err.message, srv.where);
        /* The server ran the update after the plugin gave up. */
        int64_t pulls = -1;
        for (int64_t until = redis_test_now_ms() + 20000;
             redis_test_now_ms() < until && pulls != 3; redis_test_sleep_ms(20))
            pulls = stored_count(prefix, "btn", "a:pulls");
        assert_int_equal(pulls, 3);
        rc = MAB_ESTORAGE;
        for (int64_t until = redis_test_now_ms() + 20000;
             redis_test_now_ms() < until && rc != MAB_OK; redis_test_sleep_ms(50))
            rc = plugin->apply(st, &two, 1, &err);
        assert_int_equal(rc, MAB_OK);
    }
    plugin->close(st);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 3);
    assert_int_equal(stored_count(prefix, "btn", "a:rewards"), 3);
    assert_true(stored_sum(prefix, "btn", "a:reward_sum") == 3.0);
}

/*
 * A connection the server closed: the next apply writes a batch far larger
 * than a socket buffer into it, so write(2) meets the peer's reset and the
 * kernel raises SIGPIPE. This test process keeps SIGPIPE's default action
 * (death): the plugin must take it back. The increments are written once on
 * the next try.
 */
static void test_closed_connection_no_sigpipe(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "pipe%u:", ++seq);
    /* A batch this wide takes the server a while: no timeout gets in the way. */
    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"prefix\": \"%s\", \"timeout_ms\": 60000}",
             srv.url, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    enum { N = 60000 };
    static char names[N][8];
    static mab_delta big[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "a%d", i);
        big[i] = (mab_delta){"wide", names[i], {1, 0, 0, 0}};
    }
    assert_int_equal(plugin->apply(st, big, 1, &err), MAB_OK);
    for (int round = 0; round < 3; round++) {
        redisContext *c = redis_server_connect(&srv);
        assert_non_null(c);
        redisReply *r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
        assert_non_null(r);
        freeReplyObject(r);
        redisFree(c);
        redis_test_sleep_ms(50);
        sigset_t before, after;
        sigpending(&before);
        int rc = plugin->apply(st, big, N, &err);
        sigpending(&after);
        assert_int_equal(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE));
        if (rc != MAB_OK) {
            assert_int_equal(rc, MAB_ESTORAGE);
            assert_mentions(err.message, srv.where);
            fprintf(stderr, "# round %d: %s\n", round, err.message);
            rc = plugin->apply(st, big, N, &err);
            if (rc != MAB_OK)
                fail_msg("the retry: %s", err.message);
        }
        redisContext *slow = redis_server_connect(&srv);
        redisReply *log = redisCommand(slow, "SLOWLOG GET 1");
        if (log && log->type == REDIS_REPLY_ARRAY && log->elements == 1)
            fprintf(stderr, "# round %d: the server spent %lld us on the widest call\n", round,
                    log->element[0]->element[2]->integer);
        freeReplyObject(log);
        freeReplyObject(redisCommand(slow, "SLOWLOG RESET"));
        redisFree(slow);
        const char *arms[] = {"a0", "a59999"};
        mab_totals out[2];
        assert_int_equal(plugin->load(st, "wide", arms, 2, out, &err), MAB_OK);
        assert_int_equal(out[0].pulls, (uint64_t)round + 2);
        assert_int_equal(out[1].pulls, (uint64_t)round + 1);
    }
    plugin->close(st);
}

/* ---- engines over Redis --------------------------------------------------------- */

static void write_config(char *path, size_t cap, const char *url, const char *prefix,
                         const char *sync, const char *more)
{
    snprintf(path, cap, "%s/c%u.json", run_dir, ++seq);
    assert_int_equal(
        test_write_file(path,
                        "{\"plugin_path\": [\"%s\"],\n"
                        " \"storage\": {\"plugin\": \"redis\", \"url\": \"%s\", \"prefix\": "
                        "\"%s\", \"sync\": %s%s},\n"
                        " \"experiments\": {\"btn\": {\"policy\": {\"plugin\": "
                        "\"epsilon_greedy\", \"epsilon\": 0.3},\n"
                        "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                        MAB_PLUGIN_DIR, url, prefix, sync, more ? more : ""),
        0);
}

typedef struct tally {
    uint64_t pulls, rewards;
    double sum;
} tally;

static int engine_tally(mab_engine *e, tally *t)
{
    mab_arm_stats st[3] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    *t = (tally){0, 0, 0};
    if (mab_stats(e, "btn", st, 3, &n, NULL) != MAB_OK || n != 3)
        return -1;
    for (size_t i = 0; i < n; i++) {
        t->pulls += st[i].pulls;
        t->rewards += st[i].rewards;
        t->sum += st[i].reward_sum;
    }
    return 0;
}

enum { PROCS = 4, EACH = 50000 };

/* One of PROCS processes: EACH choose + reward 1.0 pairs, flush, report
   done; on "go" poll until its engine shows every process's rewards, and
   write how long that took (ms) to the pipe. Exit codes say what failed. */
static int storm_child(const char *config, int done_fd, int go_fd)
{
    mab_engine *e;
    mab_error err;
    if (mab_open(config, &e, &err) != MAB_OK) {
        fprintf(stderr, "child: %s\n", err.message);
        return 10;
    }
    for (int i = 0; i < EACH; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose(e, "btn", &c, NULL) != MAB_OK ||
            mab_reward(e, "btn", c.arm_id, 1.0, NULL) != MAB_OK)
            return 11;
    }
    if (mab_flush(e, &err) != MAB_OK)
        return 12;
    char byte = 1;
    if (write(done_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1)
        return 13;
    int64_t start = redis_test_now_ms();
    tally t = {0, 0, 0};
    for (int64_t until = start + 60000; redis_test_now_ms() < until; redis_test_sleep_ms(5))
        if (engine_tally(e, &t) == 0 && t.rewards >= (uint64_t)PROCS * EACH)
            break;
    int64_t took = redis_test_now_ms() - start;
    if (t.pulls != (uint64_t)PROCS * EACH || t.rewards != (uint64_t)PROCS * EACH ||
        t.sum != (double)PROCS * EACH)
        return 14;
    dprintf(done_fd, "%c%" PRId64 "\n", 'T', took);
    return mab_close(e, NULL) == MAB_OK ? 0 : 15;
}

static void test_four_processes(void **state)
{
    (void)state;
    char config[200], prefix[32];
    snprintf(prefix, sizeof prefix, "storm%u:", ++seq);
    write_config(config, sizeof config, srv.url, prefix, "{\"interval_ms\": 20}", NULL);
    int done[2], go[2];
    assert_int_equal(pipe(done), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(done[0]);
            close(go[1]);
            _exit(storm_child(config, done[1], go[0]));
        }
    }
    close(done[1]);
    close(go[0]);
    char byte;
    for (int i = 0; i < PROCS; i++)
        if (read(done[0], &byte, 1) != 1)
            break;
    char go_bytes[PROCS] = {0};
    assert_int_equal(write(go[1], go_bytes, PROCS), PROCS);
    FILE *f = fdopen(done[0], "r");
    char line[64];
    int reports = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == 'T') {
            reports++;
            line[strcspn(line, "\n")] = '\0';
            fprintf(stderr, "# a process saw all %d rewards %s ms after every process had "
                    "flushed (refresh_ms 1000: the default)\n", PROCS * EACH, line + 1);
        }
    }
    fclose(f);
    for (int i = 0; i < PROCS; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("a storm process failed (status %d; 14: its totals were not exact)",
                     status);
    }
    close(go[1]);
    assert_int_equal(reports, PROCS);
    int64_t stored = 0;
    for (int a = 0; a < 3; a++) {
        char field[16];
        snprintf(field, sizeof field, "%c:rewards", 'a' + a);
        stored += stored_count(prefix, "btn", field);
    }
    assert_int_equal(stored, (int64_t)PROCS * EACH);
}

/* The server down at open, down mid-run, restarted. */
static void test_outage(void **state)
{
    (void)state;
    char config[200], prefix[32];
    snprintf(prefix, sizeof prefix, "out%u:", ++seq);
    /* No timeout gets in the way: a server that is down refuses the
       connection or resets it at once, and a loaded machine may keep a
       server that is up (appendfsync always) from answering within a
       short timeout_ms, which would be taken for an outage. */
    write_config(config, sizeof config, srv.url, prefix, "\"always\"",
                 ", \"refresh_ms\": 50, \"timeout_ms\": 60000");

    /* Down at open: a clear error naming the server. */
    redis_server_stop(&srv, SIGTERM);
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    int rc = mab_open(config, &e, &err);
    assert_int_equal(rc, MAB_ESTORAGE);
    assert_null(e);
    assert_mentions(err.message, srv.where);
    assert_mentions(err.message, "Connection refused");
    fprintf(stderr, "# down at open: %s\n", err.message);
    assert_int_equal(redis_server_start(&srv), 0);

    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    uint64_t acked = 0, refused = 0, chosen_down = 0;
    for (int i = 0; i < 200; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "btn", &c, NULL), MAB_OK);
        if (mab_reward(e, "btn", c.arm_id, 1.0, &err) == MAB_OK)
            acked++;
    }
    assert_int_equal(acked, 200);

    /* Down mid-run: decisions continue from the last snapshot; rewards are
       refused (sync "always") but stay queued; stats include them. */
    redis_server_stop(&srv, SIGKILL);
    for (int i = 0; i < 300; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "btn", &c, &err), MAB_OK);
        chosen_down++;
        rc = mab_reward(e, "btn", c.arm_id, 0.5, &err);
        if (rc == MAB_OK) {
            acked++;
        } else {
            assert_int_equal(rc, MAB_ESTORAGE);
            assert_mentions(err.message, srv.where);
            refused++;
        }
    }
    assert_true(refused > 0);
    fprintf(stderr, "# down mid-run: %" PRIu64 " decisions, %" PRIu64 " rewards refused: %s\n",
            chosen_down, refused, err.message);
    tally t;
    assert_int_equal(engine_tally(e, &t), 0);
    assert_int_equal(t.pulls, 500);
    assert_int_equal(t.rewards, 500);
    redis_test_sleep_ms(200); /* a few refreshes fail meanwhile; the snapshot stays */
    assert_int_equal(engine_tally(e, &t), 0);
    assert_int_equal(t.rewards, 500);

    /* Restarted: the queued rewards are written once. */
    assert_int_equal(redis_server_start(&srv), 0);
    rc = MAB_ESTORAGE;
    for (int64_t until = redis_test_now_ms() + 20000;
         rc != MAB_OK && redis_test_now_ms() < until; redis_test_sleep_ms(50))
        rc = mab_flush(e, &err);
    assert_int_equal(rc, MAB_OK);
    for (int i = 0; i < 100; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(e, "btn", &c, NULL), MAB_OK);
        assert_int_equal(mab_reward(e, "btn", c.arm_id, 0.25, &err), MAB_OK);
    }
    /* Refreshes during and after the outage change nothing. */
    redis_test_sleep_ms(200);
    assert_int_equal(engine_tally(e, &t), 0);
    assert_int_equal(t.rewards, 600);
    assert_int_equal(mab_close(e, &err), MAB_OK);
    int64_t stored = 0;
    double sum = 0;
    for (int a = 0; a < 3; a++) {
        char field[24];
        snprintf(field, sizeof field, "%c:rewards", 'a' + a);
        stored += stored_count(prefix, "btn", field);
        snprintf(field, sizeof field, "%c:reward_sum", 'a' + a);
        sum += stored_sum(prefix, "btn", field);
    }
    assert_int_equal(stored, 600);
    assert_true(sum == 200 * 1.0 + 300 * 0.5 + 100 * 0.25);
}

/* ---- errors ------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    /* A server with a password. */
    redis_server pw = {0};
    snprintf(pw.dir, sizeof pw.dir, "%s/pw", run_dir);
    snprintf(pw.extra, sizeof pw.extra, "--requirepass s3cr3t-Pa55");
    assert_int_equal(mkdir(pw.dir, 0755), 0);
    assert_int_equal(redis_server_start(&pw), 0);
    char good[200], bad[200], keys[600];
    snprintf(good, sizeof good, "%s/good.pw", run_dir);
    snprintf(bad, sizeof bad, "%s/bad.pw", run_dir);
    assert_int_equal(test_write_file(good, "s3cr3t-Pa55\n"), 0);
    assert_int_equal(test_write_file(bad, "wr0ng-Pa55\n"), 0);
    void *st = NULL;
    mab_error err = {0, ""};

    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"password_file\": \"%s\"}", pw.url, good);
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    mab_delta d = {"btn", "a", {1, 1, 1, 1}};
    assert_int_equal(plugin->apply(st, &d, 1, &err), MAB_OK);
    plugin->close(st);

    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"password_file\": \"%s\"}", pw.url, bad);
    assert_int_equal(open_keys(keys, &st, &err), MAB_ESTORAGE);
    fprintf(stderr, "# wrong password: %s\n", err.message);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "authentication failed");
    assert_not_mentions(err.message, "wr0ng-Pa55");
    assert_not_mentions(err.message, "s3cr3t-Pa55");

    snprintf(keys, sizeof keys, "{\"url\": \"%s\"}", pw.url);
    assert_int_equal(open_keys(keys, &st, &err), MAB_ESTORAGE);
    fprintf(stderr, "# no password: %s\n", err.message);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "password_file");

    /* A password in the url is refused, and not repeated. */
    snprintf(keys, sizeof keys, "{\"url\": \"redis://user:s3cr3t-Pa55@127.0.0.1:%d/0\"}",
             pw.port);
    assert_int_equal(open_keys(keys, &st, &err), MAB_ECONFIG);
    fprintf(stderr, "# password in the url: %s\n", err.message);
    assert_mentions(err.message, "password_file");
    assert_not_mentions(err.message, "s3cr3t-Pa55");

    /* A password_file that cannot be read: named, config error. */
    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"password_file\": \"%s/none.pw\"}", pw.url,
             run_dir);
    assert_int_equal(open_keys(keys, &st, &err), MAB_ECONFIG);
    assert_mentions(err.message, "none.pw");
    redis_server_stop(&pw, SIGTERM);

    /* Unreachable: nobody listens on the port. */
    int port = redis_test_free_port();
    snprintf(keys, sizeof keys, "{\"url\": \"redis://127.0.0.1:%d/0\", \"timeout_ms\": 500}",
             port);
    assert_int_equal(open_keys(keys, &st, &err), MAB_ESTORAGE);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    fprintf(stderr, "# unreachable: %s\n", err.message);
    assert_mentions(err.message, where);
    assert_mentions(err.message, "cannot connect");

    /* Through the engine, the config file is named too. */
    char config[200];
    snprintf(keys, sizeof keys, "redis://127.0.0.1:%d/0", port);
    write_config(config, sizeof config, keys, "x:", "\"always\"", NULL);
    mab_engine *e = NULL;
    assert_int_equal(mab_open(config, &e, &err), MAB_ESTORAGE);
    assert_mentions(err.message, config);
    assert_mentions(err.message, where);

    /* Bad urls and keys: config errors naming the key. */
    static const char *const bad_keys[][2] = {
        {"{\"url\": \"http://127.0.0.1:6379\"}", "url"},
        {"{\"url\": \"rediss://127.0.0.1:6379\"}", "TLS"},
        {"{\"url\": \"redis://127.0.0.1:99999\"}", "port"},
        {"{\"url\": \"unix:relative.sock\"}", "absolute"},
        {"{\"url\": \"redis://127.0.0.1\", \"prefix\": \"a{b}\"}", "prefix"},
        {"{\"url\": \"redis://127.0.0.1\", \"timeout_ms\": 0}", "timeout_ms"},
    };
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        int rc = open_keys(bad_keys[i][0], &st, &err);
        if (rc != MAB_ECONFIG)
            fail_msg("%s: %d, not MAB_ECONFIG: %s", bad_keys[i][0], rc, err.message);
        assert_mentions(err.message, bad_keys[i][1]);
    }
}

/* A unix socket, and a database other than 0. */
static void test_unix_socket(void **state)
{
    (void)state;
    redis_server us = {0};
    snprintf(us.dir, sizeof us.dir, "%s/us", run_dir);
    assert_int_equal(mkdir(us.dir, 0755), 0);
    snprintf(us.extra, sizeof us.extra, "--unixsocket %s/redis.sock --unixsocketperm 700",
             us.dir);
    assert_int_equal(redis_server_start(&us), 0);
    char keys[400];
    snprintf(keys, sizeof keys, "{\"url\": \"unix:%s/redis.sock?db=3\"}", us.dir);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    mab_delta d = {"btn", "a", {2, 1, 0.5, 0.25}};
    assert_int_equal(plugin->apply(st, &d, 1, &err), MAB_OK);
    const char *arms[] = {"a"};
    mab_totals out[1];
    assert_int_equal(plugin->load(st, "btn", arms, 1, out, &err), MAB_OK);
    assert_totals(&out[0], 2, 1, 0.5, 0.25);
    plugin->close(st);
    redisContext *c = redis_server_connect(&us);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "SELECT 3");
    freeReplyObject(r);
    r = redisCommand(c, "HGET mab:{btn}:totals a:pulls");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    redisFree(c);
    redis_server_stop(&us, SIGTERM);
    /* The socket is gone now: the error names it. */
    assert_int_equal(open_keys(keys, &st, &err), MAB_ESTORAGE);
    assert_mentions(err.message, "redis.sock");
}

/* scan_stats into text: "EXP.ARM LAYOUT [v v];" */
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

/* scan_buckets into text: "EXP.ARM@BUCKET=PULLS;" */
static int note_scanned_bucket(void *ctx, const char *experiment, const char *arm,
                               int64_t bucket, const mab_totals *add)
{
    char *out = ctx;
    size_t len = strlen(out);
    snprintf(out + len, 400 - len, "%s.%s@%" PRId64 "=%" PRIu64 ";", experiment, arm, bucket,
             add->pulls);
    return 0;
}

/* ---- policy statistics and time buckets (ABI 1.4 and 1.5) --------------------------- */

/* A field of a hash of the plugin's, read with our own client; NAN when absent. */
static double stored_field(const char *key, const char *field)
{
    redisContext *c = redis_server_connect(&srv);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "HGET %s %s", key, field);
    double x = r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : NAN;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return x;
}

/* A command of our own; the integer reply (-2 when it is not one). */
static long long server_integer(const char *fmt, ...)
{
    redisContext *c = redis_server_connect(&srv);
    if (!c)
        return -3;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

static void server_do(const char *fmt, ...)
{
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s", r->str);
    freeReplyObject(r);
    redisFree(c);
}

/* How many keys of experiments start with PREFIX (PREFIX{...}; not the
   change log's PREFIXchanges and PREFIXchanges:log, which outlive resets). */
static long long keys_under(const char *prefix)
{
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "KEYS %s{*", prefix);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long n = (long long)r->elements;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* load_buckets into a list. */
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

static seen_buckets load_all_buckets(void *st, const char *exp, int64_t since)
{
    seen_buckets s;
    memset(&s, 0, sizeof s);
    const char *arms[] = {"a", "b"};
    mab_error err = {0, ""};
    if (plugin->load_buckets(st, exp, arms, 2, since, note_bucket, &s, &err) != MAB_OK)
        fail_msg("load_buckets: %s", err.message);
    return s;
}

/* A bucket of arm A ("a" is 0, "b" is 1) in what load_buckets saw, or NULL. */
static const seen_bucket *find_bucket(const seen_buckets *s, size_t arm, int64_t bucket)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->b[i].arm == arm && s->b[i].bucket == bucket)
            return &s->b[i];
    return NULL;
}

/*
 * Statistics and buckets across a lost reply, as lost_once() for the
 * counters: the proxy loses the reply to a batch (the server ran it) or
 * the batch itself, and the retry within the call; apply_buckets fails;
 * load_stats and load_buckets show stored minus what the core still holds;
 * the core's next offer (the failed batch merged with a newer one) leaves
 * every statistic and bucket increment counted exactly once.
 */
static void lost_stats_and_buckets(enum proxy_mode mode, int many)
{
    char prefix[32], keys[200];
    snprintf(prefix, sizeof prefix, "lostsb%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"redis://127.0.0.1:%d/0\", \"prefix\": \"%s\"}",
             proxy.port, prefix);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    const int64_t B = 1700000000 - 1700000000 % 3600, keep = B - 24 * 3600;
    mab_delta d1 = {"btn", "a", {1, 1, 0.5, 0.25}};
    double v1[] = {0.5, 2.0}, e1[] = {7.0};
    mab_stats_delta s1[] = {{"btn", "a", "t/1:2,1", v1, 2}, {"btn", NULL, "t/1:2,1", e1, 1}};
    mab_bucket_delta b1 = {"btn", "a", B, {1, 1, 0.5, 0.25}};
    assert_int_equal(plugin->apply_buckets(st, &d1, 1, s1, 2, &b1, 1, keep, &err), MAB_OK);
    if (many) {
        /* 300 more bucket records (of an arm the loads below do not list):
           the plugin then drops the ledger entries that hold nothing, and
           what follows must work on the compacted ledger. */
        mab_bucket_delta wide[300];
        for (int i = 0; i < 300; i++)
            wide[i] = (mab_bucket_delta){"btn", "z", B + (1 + i) * 3600, {1, 0, 0, 0}};
        assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, wide, 300, keep, &err),
                         MAB_OK);
    }

    double v2[] = {0.25, 1.0}, e2[] = {3.0};
    mab_stats_delta s2[] = {{"btn", "a", "t/1:2,1", v2, 2}, {"btn", NULL, "t/1:2,1", e2, 1}};
    mab_bucket_delta b2[] = {{"btn", "a", B, {2, 1, 0.25, 0.0625}},
                             {"btn", "b", B + 3600, {1, 0, 0, 0}}};
    int lost_before = atomic_load(&proxy.lost);
    atomic_store(&proxy.then, LOSE_REQUEST);
    atomic_store(&proxy.mode, mode);
    int rc = plugin->apply_buckets(st, NULL, 0, s2, 2, b2, 2, keep, &err);
    assert_int_equal(atomic_load(&proxy.lost), lost_before + 2);
    assert_int_equal(rc, MAB_ESTORAGE);
    char skey[64], bkey[64];
    snprintf(skey, sizeof skey, "%s{btn}:stats", prefix);
    snprintf(bkey, sizeof bkey, "%s{btn}:b:%" PRId64, prefix, B);
    /* The server holds the second batch too when only its reply was lost. */
    assert_true(stored_field(skey, "t/1:2,1|a|1") == (mode == LOSE_REPLY ? 3.0 : 2.0));
    assert_true(stored_field(bkey, "a:pulls") == (mode == LOSE_REPLY ? 3.0 : 1.0));

    /* Loads: stored minus what the core still holds. */
    const char *arms[] = {"a", "b"};
    double arm_out[4], exp_out[1];
    assert_int_equal(plugin->load_stats(st, "btn", "t/1:2,1", arms, 2, 2, arm_out, 1, exp_out,
                                        &err),
                     MAB_OK);
    assert_true(arm_out[0] == 0.5 && arm_out[1] == 2.0 && arm_out[2] == 0 && arm_out[3] == 0);
    assert_true(exp_out[0] == 7.0);
    seen_buckets sb = load_all_buckets(st, "btn", INT64_MIN);
    const seen_bucket *a0 = find_bucket(&sb, 0, B);
    assert_non_null(a0);
    assert_totals(&a0->add, 1, 1, 0.5, 0.25);
    /* stored when only the reply was lost, but still held by the core */
    assert_null(find_bucket(&sb, 1, B + 3600));

    /* The core offers the failed batch again, merged with a newer one. */
    double v3[] = {0.25 + 1.0, 1.0 + 1.0}, e3[] = {3.0 + 1.0};
    mab_stats_delta s3[] = {{"btn", "a", "t/1:2,1", v3, 2}, {"btn", NULL, "t/1:2,1", e3, 1}};
    mab_bucket_delta b3[] = {{"btn", "a", B, {2 + 1, 1, 0.25, 0.0625}},
                             {"btn", "b", B + 3600, {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, s3, 2, b3, 2, keep, &err), MAB_OK);
    assert_int_equal(plugin->load_stats(st, "btn", "t/1:2,1", arms, 2, 2, arm_out, 1, exp_out,
                                        &err),
                     MAB_OK);
    assert_true(arm_out[0] == 0.5 + 1.25 && arm_out[1] == 4.0 && exp_out[0] == 11.0);
    plugin->close(st);
    assert_true(stored_field(skey, "t/1:2,1|a|0") == 1.75);
    assert_true(stored_field(skey, "t/1:2,1|a|1") == 4.0);
    assert_true(stored_field(skey, "t/1:2,1||0") == 11.0);
    assert_true(stored_field(bkey, "a:pulls") == 4.0);
    assert_true(stored_field(bkey, "a:rewards") == 2.0);
    assert_true(stored_field(bkey, "a:reward_sum") == 0.75);
    snprintf(bkey, sizeof bkey, "%s{btn}:b:%" PRId64, prefix, B + 3600);
    assert_true(stored_field(bkey, "b:pulls") == 1.0);
}

static void test_lost_reply_stats_and_buckets(void **state)
{
    (void)state;
    assert_int_equal(proxy_start(), 0);
    lost_stats_and_buckets(LOSE_REPLY, 0);
    lost_stats_and_buckets(LOSE_REQUEST, 0);
    lost_stats_and_buckets(LOSE_REPLY, 1);
    proxy_stop();
}

/* Statistics: stored exactly (17 digits, no HINCRBYFLOAT rounding), scanned
   per layout, non-finite values refused with nothing written, reset
   removes them. */
static void test_stats_store(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    void *st = open_fresh("stats", prefix, keys);
    mab_error err = {0, ""};
    mab_delta d = {"btn", "a", {1, 0, 0, 0}};
    double tiny[] = {1e-18, 0.1}, other[] = {5.0};
    /* a layout tag may hold the field separator: fields are split from the right */
    mab_stats_delta s[] = {{"btn", "a", "p/1:2,0", tiny, 2}, {"btn", "b", "q|r/2:1,0", other, 1}};
    assert_int_equal(plugin->apply_stats(st, &d, 1, s, 2, &err), MAB_OK);
    assert_int_equal(plugin->apply_stats(st, NULL, 0, s, 1, &err), MAB_OK);
    const char *arms[] = {"a", "b"};
    double out[4] = {9, 9, 9, 9};
    assert_int_equal(plugin->load_stats(st, "btn", "p/1:2,0", arms, 2, 2, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 1e-18 + 1e-18 && out[1] == 0.1 + 0.1);
    assert_true(out[2] == 0 && out[3] == 0); /* b has no p record */

    /* Not finite: refused, nothing of the batch written. */
    double bad[] = {1.0, NAN};
    mab_stats_delta sb = {"btn", "a", "p/1:2,0", bad, 2};
    mab_delta more = {"btn", "a", {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_stats(st, &more, 1, &sb, 1, &err), MAB_EINVAL);
    assert_mentions(err.message, "not finite");
    assert_mentions(err.message, "btn.a");
    bad[1] = INFINITY;
    assert_int_equal(plugin->apply_stats(st, &more, 1, &sb, 1, &err), MAB_EINVAL);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 1);
    char skey[64];
    snprintf(skey, sizeof skey, "%s{btn}:stats", prefix);
    assert_true(stored_field(skey, "p/1:2,0|a|0") == 2e-18);
    /* A sum that would overflow: refused by the server, nothing written. */
    double huge[] = {1.5e308, 0};
    mab_stats_delta sh = {"btn", "a", "p/1:2,0", huge, 2};
    assert_int_equal(plugin->apply_stats(st, NULL, 0, &sh, 1, &err), MAB_OK);
    assert_int_equal(plugin->apply_stats(st, &more, 1, &sh, 1, &err), MAB_ERANGE);
    assert_mentions(err.message, srv.where);
    assert_int_equal(stored_count(prefix, "btn", "a:pulls"), 1);

    /* scan_stats: every record of every layout. */
    char seen[400] = "";
    assert_int_equal(plugin->scan_stats(st, note_stats, seen, &err), MAB_OK);
    assert_string_equal(seen, "btn.a p/1:2,0 [1.5e+308 0.20000000000000001];"
                              "btn.b q|r/2:1,0 [5];");
    assert_int_equal(plugin->reset(st, "btn", &err), MAB_OK);
    assert_int_equal(keys_under(prefix), 0);
    seen[0] = '\0';
    assert_int_equal(plugin->scan_stats(st, note_stats, seen, &err), MAB_OK);
    assert_string_equal(seen, "");
    plugin->close(st);
}

/*
 * Buckets: they land in one hash per (experiment, bucket start) with an
 * index; load_buckets(since) returns them in ascending order, from since
 * on, arms listed only; the hash expires at start + retention (retention =
 * now - keep_from); buckets before keep_from are removed by the next call
 * and never returned; reset removes them all.
 */
static void test_buckets(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    void *st = open_fresh("buck", prefix, keys);
    mab_error err = {0, ""};
    const int64_t H = 3600, now = (int64_t)time(NULL), B = now - now % H;
    const int64_t retention = 48 * H;
    /* Buckets out of order, an arm not asked for (c), two experiments. */
    mab_bucket_delta b[] = {{"btn", "a", B, {1, 1, 1, 1}},
                            {"btn", "b", B - 2 * H, {2, 0, 0, 0}},
                            {"btn", "a", B - 2 * H, {3, 1, 0.5, 0.25}},
                            {"btn", "c", B - H, {4, 0, 0, 0}},
                            {"size", "a", B, {5, 0, 0, 0}}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, b, 5, now - retention, &err),
                     MAB_OK);
    seen_buckets s = load_all_buckets(st, "btn", INT64_MIN);
    assert_int_equal(s.n, 3);
    assert_true(s.b[0].bucket == B - 2 * H && s.b[1].bucket == B - 2 * H && s.b[2].bucket == B);
    assert_totals(&find_bucket(&s, 1, B - 2 * H)->add, 2, 0, 0, 0);
    assert_totals(&find_bucket(&s, 0, B - 2 * H)->add, 3, 1, 0.5, 0.25);
    assert_totals(&find_bucket(&s, 0, B)->add, 1, 1, 1, 1);
    s = load_all_buckets(st, "btn", B - H);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.b[0].bucket, B);
    /* The totals are not made from buckets: none were added here. */
    const char *arms[] = {"a"};
    mab_totals t[1];
    assert_int_equal(plugin->load(st, "btn", arms, 1, t, &err), MAB_OK);
    assert_totals(&t[0], 0, 0, 0, 0);

    /* Retention: each bucket's hash expires at start + retention. */
    long long at = server_integer("EXPIRETIME %s{btn}:b:%" PRId64, prefix, B - 2 * H);
    fprintf(stderr, "# bucket %" PRId64 " expires at %lld (start + %lld s)\n", B - 2 * H, at,
            at - (B - 2 * H));
    assert_true(at >= B - 2 * H + retention && at <= B - 2 * H + retention + 5);

    /* keep_from moves past B - 2H: removed by the next call, and never
       returned again (also not by a load asking for older ones). */
    mab_bucket_delta later = {"btn", "a", B, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, &later, 1, B - H, &err),
                     MAB_OK);
    assert_int_equal(server_integer("EXISTS %s{btn}:b:%" PRId64, prefix, B - 2 * H), 0);
    assert_int_equal(server_integer("ZCARD %s{btn}:buckets", prefix), 2);
    s = load_all_buckets(st, "btn", INT64_MIN);
    assert_int_equal(s.n, 1); /* c's bucket B - H holds no listed arm */
    assert_totals(&s.b[0].add, 2, 1, 1, 1);
    /* An increment to a bucket before keep_from is not stored. */
    mab_bucket_delta old = {"btn", "a", B - 5 * H, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, &old, 1, B - H, &err), MAB_OK);
    assert_int_equal(server_integer("EXISTS %s{btn}:b:%" PRId64, prefix, B - 5 * H), 0);
    /* Another process that has not seen keep_from: since filters. */
    void *other = NULL;
    assert_int_equal(open_keys(keys, &other, &err), MAB_OK);
    s = load_all_buckets(other, "btn", B);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.b[0].bucket, B);
    /* A bucket whose hash expired: left out, index or not. */
    server_do("DEL %s{btn}:b:%" PRId64, prefix, B);
    s = load_all_buckets(other, "btn", INT64_MIN);
    assert_int_equal(s.n, 0);
    plugin->close(other);

    /* Removal is bounded (64 per call): while it lags, loads still never
       return a bucket before the latest keep_from. */
    mab_bucket_delta many[70];
    for (int i = 0; i < 70; i++)
        many[i] = (mab_bucket_delta){"lag", "a", B - (100 + i) * H, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, many, 70, INT64_MIN, &err),
                     MAB_OK);
    mab_bucket_delta fresh = {"lag", "b", B, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, &fresh, 1, B - H, &err),
                     MAB_OK);
    assert_int_equal(server_integer("ZCARD %s{lag}:buckets", prefix), 70 + 1 - 64);
    s = load_all_buckets(st, "lag", INT64_MIN);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.b[0].bucket, B);
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, &fresh, 1, B - H, &err),
                     MAB_OK);
    assert_int_equal(server_integer("ZCARD %s{lag}:buckets", prefix), 1);
    const char *lag[] = {"lag"};
    assert_int_equal(plugin->replace(st, lag, 1, NULL, 0, &err), MAB_OK);

    /* scan_buckets: every experiment and arm. */
    char seen[400] = "";
    assert_int_equal(plugin->scan_buckets(st, note_scanned_bucket, seen, &err), MAB_OK);
    char want[400];
    snprintf(want, sizeof want, "btn.c@%" PRId64 "=4;size.a@%" PRId64 "=5;", B - H, B);
    assert_string_equal(seen, want);

    /* Reset removes every bucket and the index of that experiment only. */
    assert_int_equal(plugin->reset(st, "btn", &err), MAB_OK);
    assert_int_equal(server_integer("EXISTS %s{btn}:b:%" PRId64, prefix, B - H), 0);
    assert_int_equal(server_integer("EXISTS %s{btn}:buckets", prefix), 0);
    assert_int_equal(server_integer("EXISTS %s{size}:b:%" PRId64, prefix, B), 1);
    const char *replaced[] = {"size"};
    assert_int_equal(plugin->replace(st, replaced, 1, NULL, 0, &err), MAB_OK);
    assert_int_equal(keys_under(prefix), 0);
    plugin->close(st);
}

/*
 * A batch over two experiments of which one is refused (its stats key has
 * another type): the other's call is counted, yet the core keeps the whole
 * batch. Loads show what the core must see (stored minus that credit), and
 * the batch offered again once the key is fixed counts each increment once.
 */
static void test_partial_batch_credit(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    void *st = open_fresh("part", prefix, keys);
    mab_error err = {0, ""};
    server_do("SET %s{size}:stats oops", prefix);
    double v[] = {1.5}, w[] = {2.0};
    mab_stats_delta s[] = {{"btn", "a", "t/1:1,0", v, 1}, {"size", "a", "t/1:1,0", w, 1}};
    mab_bucket_delta b[] = {{"btn", "a", 7200, {1, 0, 0, 0}}, {"size", "a", 7200, {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, s, 2, b, 2, INT64_MIN, &err),
                     MAB_ECORRUPT);
    char skey[64];
    snprintf(skey, sizeof skey, "%s{btn}:stats", prefix);
    assert_true(stored_field(skey, "t/1:1,0|a|0") == 1.5); /* btn's call counted */
    const char *arms[] = {"a"};
    double out[1] = {9};
    assert_int_equal(plugin->load_stats(st, "btn", "t/1:1,0", arms, 1, 1, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 0.0); /* the core still holds it */
    seen_buckets sb = load_all_buckets(st, "btn", INT64_MIN);
    assert_int_equal(sb.n, 0); /* stored, but only what the core still holds */
    server_do("DEL %s{size}:stats", prefix);
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, s, 2, b, 2, INT64_MIN, &err), MAB_OK);
    assert_int_equal(plugin->load_stats(st, "btn", "t/1:1,0", arms, 1, 1, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 1.5);
    assert_int_equal(plugin->load_stats(st, "size", "t/1:1,0", arms, 1, 1, out, 0, NULL, &err),
                     MAB_OK);
    assert_true(out[0] == 2.0);
    sb = load_all_buckets(st, "btn", INT64_MIN);
    assert_int_equal(sb.n, 1);
    assert_totals(&sb.b[0].add, 1, 0, 0, 0);
    plugin->close(st);
    char bkey[64];
    snprintf(bkey, sizeof bkey, "%s{size}:b:7200", prefix);
    assert_true(stored_field(bkey, "a:pulls") == 1.0);
}

/* A key of the wrong type at a statistics or bucket key: a clear error
   naming the key and the server (never the password), nothing written. */
static void test_wrong_type_stats_and_buckets(void **state)
{
    (void)state;
    redis_server pw = {0};
    snprintf(pw.dir, sizeof pw.dir, "%s/pw2", run_dir);
    snprintf(pw.extra, sizeof pw.extra, "--requirepass Hush-5ecret");
    assert_int_equal(mkdir(pw.dir, 0755), 0);
    assert_int_equal(redis_server_start(&pw), 0);
    char pwfile[200], keys[400];
    snprintf(pwfile, sizeof pwfile, "%s/pw2.pw", run_dir);
    assert_int_equal(test_write_file(pwfile, "Hush-5ecret\n"), 0);
    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"password_file\": \"%s\"}", pw.url, pwfile);
    void *st = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &st, &err), MAB_OK);
    redisContext *c = redis_server_connect(&pw);
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "AUTH Hush-5ecret"));
    freeReplyObject(redisCommand(c, "SET mab:{btn}:stats oops"));
    freeReplyObject(redisCommand(c, "HSET mab:{size}:buckets x 1"));
    freeReplyObject(redisCommand(c, "SET mab:{row}:b:7200 oops"));
    freeReplyObject(redisCommand(c, "ZADD mab:{row}:buckets 7200 7200"));

    mab_delta d = {"btn", "a", {1, 0, 0, 0}};
    double v[] = {1.0};
    mab_stats_delta s = {"btn", "a", "t/1:1,0", v, 1};
    assert_int_equal(plugin->apply_stats(st, &d, 1, &s, 1, &err), MAB_ECORRUPT);
    fprintf(stderr, "# stats key of another type: %s\n", err.message);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "mab:{btn}:stats");
    assert_not_mentions(err.message, "Hush-5ecret");
    const char *arms[] = {"a"};
    double out[1];
    assert_int_equal(plugin->load_stats(st, "btn", "t/1:1,0", arms, 1, 1, out, 0, NULL, &err),
                     MAB_ECORRUPT);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "mab:{btn}:stats");
    char seen[200] = "";
    assert_int_equal(plugin->scan_stats(st, note_stats, seen, &err), MAB_ECORRUPT);
    assert_mentions(err.message, pw.where);

    mab_bucket_delta b = {"size", "a", 3600, {1, 0, 0, 0}};
    mab_delta ds = {"size", "a", {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, &ds, 1, NULL, 0, &b, 1, INT64_MIN, &err),
                     MAB_ECORRUPT);
    fprintf(stderr, "# bucket index of another type: %s\n", err.message);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "mab:{size}:buckets");
    assert_not_mentions(err.message, "Hush-5ecret");
    seen_buckets sb;
    memset(&sb, 0, sizeof sb);
    assert_int_equal(plugin->load_buckets(st, "size", arms, 1, INT64_MIN, note_bucket, &sb, &err),
                     MAB_ECORRUPT);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "mab:{size}:buckets");
    mab_bucket_delta br = {"row", "a", 7200, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, &br, 1, INT64_MIN, &err),
                     MAB_ECORRUPT);
    assert_mentions(err.message, "mab:{row}:b:7200");
    assert_int_equal(plugin->load_buckets(st, "row", arms, 1, INT64_MIN, note_bucket, &sb, &err),
                     MAB_ECORRUPT);
    assert_mentions(err.message, pw.where);
    assert_mentions(err.message, "mab:{row}:b:7200");
    assert_not_mentions(err.message, "Hush-5ecret");
    /* Nothing of the refused batches was written. */
    redisReply *r = redisCommand(c, "HGET mab:{btn}:totals a:pulls");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = redisCommand(c, "HGET mab:{size}:totals a:pulls");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    redisFree(c);
    plugin->close(st);
    redis_server_stop(&pw, SIGTERM);
}

/* ---- an ABI 2 policy over Redis ------------------------------------------------------ */

static void write_policy_config(char *path, size_t cap, const char *prefix, const char *policy,
                                const char *sync)
{
    snprintf(path, cap, "%s/p%u.json", run_dir, ++seq);
    assert_int_equal(
        test_write_file(path,
                        "{\"plugin_path\": [\"%s\"], \"seed\": 5,\n"
                        " \"storage\": {\"plugin\": \"redis\", \"url\": \"%s\", \"prefix\": "
                        "\"%s\", \"sync\": %s},\n"
                        " \"experiments\": {\"btn\": {\"policy\": %s,\n"
                        "   \"arms\": {\"a\": 1, \"b\": 2, \"c\": 3}}}}\n",
                        MAB_PLUGIN_DIR, srv.url, prefix, sync, policy),
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

/* EXP3 keeps a statistic per arm: it opens over Redis, and what it learnt
   reads back exactly after close and reopen. */
static void test_exp3_survives_restart(void **state)
{
    (void)state;
    char config[200], prefix[32];
    snprintf(prefix, sizeof prefix, "exp3%u:", ++seq);
    write_policy_config(config, sizeof config, prefix, "{\"plugin\": \"exp3\", \"gamma\": 0.2}",
                        "{\"interval_ms\": 20}");
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config, &e, &err) != MAB_OK)
        fail_msg("exp3 over redis: %s", err.message);
    for (int i = 0; i < 3000; i++) {
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
    /* What the server holds is what the engine had. */
    char skey[64];
    snprintf(skey, sizeof skey, "%s{btn}:stats", prefix);
    assert_true(stored_field(skey, "exp3/1:1,0|c|0") == before.arm[2]);
    assert_int_equal(mab_open(config, &e, &err), MAB_OK);
    policy_snapshot after = policy_read(e);
    assert_memory_equal(before.arm, after.arm, 3 * sizeof(double));
    assert_int_equal(after.counters[0].pulls + after.counters[1].pulls + after.counters[2].pulls,
                     3000);
    assert_int_equal(mab_close(e, &err), MAB_OK);
}

/* Refresh reads the statistics too: what one engine adds, another engine
   on the same server shows within refresh_ms, value for value. */
static void test_stats_refresh(void **state)
{
    (void)state;
    char config[200], prefix[32];
    snprintf(prefix, sizeof prefix, "refresh%u:", ++seq);
    write_policy_config(config, sizeof config, prefix,
                        "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_stats.so\"}",
                        "{\"interval_ms\": 10}, \"refresh_ms\": 50");
    mab_engine *a = NULL, *b = NULL;
    mab_error err = {0, ""};
    assert_int_equal(mab_open(config, &a, &err), MAB_OK);
    assert_int_equal(mab_open(config, &b, &err), MAB_OK);
    for (int i = 0; i < 300; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        assert_int_equal(mab_choose(a, "btn", &c, &err), MAB_OK);
        if (i % 3 == 0)
            assert_int_equal(mab_reward(a, "btn", c.arm_id, 0.75, &err), MAB_OK);
    }
    assert_int_equal(mab_flush(a, &err), MAB_OK);
    policy_snapshot want = policy_read(a), got;
    memset(&got, 0, sizeof got);
    for (int64_t until = redis_test_now_ms() + 20000; redis_test_now_ms() < until;
         redis_test_sleep_ms(20)) {
        got = policy_read(b);
        if (got.exp[0] == want.exp[0])
            break;
    }
    assert_true(want.exp[0] == 300 + 100); /* the fixture: one per pull and per reward */
    assert_memory_equal(want.arm, got.arm, sizeof want.arm);
    assert_memory_equal(want.exp, got.exp, sizeof want.exp);
    assert_int_equal(mab_close(b, &err), MAB_OK);
    assert_int_equal(mab_close(a, &err), MAB_OK);
}

enum { STAT_PROCS = 4, STAT_EACH = 5000 };

/* 4 processes, each STAT_EACH choices and a reward after every other one,
   over the policy_stats fixture (its statistics mirror the counters): the
   stored statistics are exact. */
static void test_stats_four_processes(void **state)
{
    (void)state;
    char config[200], prefix[32];
    snprintf(prefix, sizeof prefix, "pstorm%u:", ++seq);
    write_policy_config(config, sizeof config, prefix,
                        "{\"plugin\": \"" MAB_FIXTURE_DIR "/policy_stats.so\"}",
                        "{\"interval_ms\": 10}");
    pid_t pids[STAT_PROCS];
    for (int i = 0; i < STAT_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            mab_engine *e = NULL;
            mab_error err;
            if (mab_open(config, &e, &err) != MAB_OK) {
                fprintf(stderr, "child: %s\n", err.message);
                _exit(2);
            }
            for (int k = 0; k < STAT_EACH; k++) {
                mab_choice c = MAB_STRUCT_INIT(mab_choice);
                if (mab_choose(e, "btn", &c, &err) != MAB_OK ||
                    (k % 2 == 0 && mab_reward(e, "btn", c.arm_id, 0.5, &err) != MAB_OK))
                    _exit(3);
            }
            _exit(mab_close(e, &err) == MAB_OK ? 0 : 4);
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

/* ---- what changed (storage ABI 1.6) --------------------------------------------- */

/* What one changed() call said: "*" for everything, else the ids, each
   followed by ';', in the order visited. */
typedef struct seen_changes {
    char ids[2000];
    int everything;
} seen_changes;

static int note_changed(void *ctx, const char *experiment)
{
    seen_changes *c = ctx;
    size_t len = strlen(c->ids);
    snprintf(c->ids + len, sizeof c->ids - len, "%s;", experiment);
    return 0;
}

/* One changed() call on st: MAB_OK asserted; "*" when it asks for everything. */
static const char *changes_of(void *st, seen_changes *c)
{
    mab_error err = {0, ""};
    c->ids[0] = '\0';
    c->everything = -1;
    if (plugin->changed(st, &c->everything, note_changed, c, &err) != MAB_OK)
        fail_msg("changed: %s", err.message);
    assert_true(c->everything == 0 || c->everything == 1);
    return c->everything ? "*" : c->ids;
}

static int stop_at_first(void *ctx, const char *experiment)
{
    (void)experiment;
    return ++*(int *)ctx == 1 ? 7 : 0;
}

/* The change log's sequence as the server holds it (-1: no log). */
static long long log_seq(const char *prefix)
{
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "HGET %schanges:log seq", prefix);
    long long n = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Rewrite the server's AOF (BGREWRITEAOF, polled until done): the storms
   before leave an AOF of hundreds of thousands of script calls whose replay
   at a restart, on a loaded machine, can outlast redis_server_start's 20 s;
   the rewritten one holds only the data. */
static void compact_aof(void)
{
    server_do("BGREWRITEAOF");
    for (int64_t until = redis_test_now_ms() + 120000;; redis_test_sleep_ms(20)) {
        redisContext *c = redis_server_connect(&srv);
        assert_non_null(c);
        redisReply *r = redisCommand(c, "INFO persistence");
        int busy = !r || r->type != REDIS_REPLY_STRING ||
                   !strstr(r->str, "aof_rewrite_in_progress:0") ||
                   !strstr(r->str, "aof_rewrite_scheduled:0");
        if (r)
            freeReplyObject(r);
        redisFree(c);
        if (!busy)
            break;
        if (redis_test_now_ms() > until)
            fail_msg("BGREWRITEAOF did not finish within 120 s");
    }
}

/* Restart the server on its port and directory, its AOF compacted first. */
static void restart_compacted(void)
{
    compact_aof();
    redis_server_stop(&srv, SIGTERM);
    assert_int_equal(redis_server_start(&srv), 0);
}

/*
 * changed() between two states on one prefix (another process's writes,
 * seen by a reader): the first call asks for everything, then each write
 * names its experiment once (apply, a granted claim, reset, replace), a
 * refused write, a write to a stopped server and a refused claim name
 * nothing and leave the log's sequence where it was; another prefix's
 * writes are not seen; a visit's nonzero return stops the call without
 * moving the position.
 */
static void test_changed_names_each_write(void **state)
{
    (void)state;
    char prefix[32], other_prefix[32], keys[200], other_keys[200];
    snprintf(prefix, sizeof prefix, "chg%u:", ++seq);
    snprintf(other_prefix, sizeof other_prefix, "chgother%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"prefix\": \"%s\"}", srv.url, prefix);
    snprintf(other_keys, sizeof other_keys, "{\"url\": \"%s\", \"prefix\": \"%s\"}", srv.url,
             other_prefix);
    void *reader = NULL, *writer = NULL, *other = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &reader, &err), MAB_OK);
    assert_int_equal(open_keys(keys, &writer, &err), MAB_OK);
    assert_int_equal(open_keys(other_keys, &other, &err), MAB_OK);
    seen_changes c;
    assert_string_equal(changes_of(reader, &c), "*"); /* the first call */
    assert_string_equal(changes_of(reader, &c), "");

    mab_delta d1[] = {{"btn", "a", {1, 1, 1, 1}}, {"btn", "b", {2, 0, 0, 0}},
                      {"size", "s", {1, 0, 0, 0}}};
    /* The first write starts the log: a reader that saw none cannot tell
       what was written before it, and asks for everything once. */
    mab_delta first[] = {{"first", "a", {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(writer, first, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    assert_int_equal(plugin->apply(writer, d1, 3, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "btn;size;");
    assert_string_equal(changes_of(reader, &c), "");
    /* The writer sees its own writes too (the core reloads them: harmless). */
    assert_string_equal(changes_of(writer, &c), "*");
    /* Another prefix is another log. */
    assert_int_equal(plugin->apply(other, d1, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "");

    /* Statistics alone and buckets alone are changes of their experiment. */
    double v[] = {0.5};
    mab_stats_delta sd = {"stat", "a", "p/1:1,0", v, 1};
    assert_int_equal(plugin->apply_stats(writer, NULL, 0, &sd, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "stat;");
    mab_bucket_delta bd = {"buck", "a", 3600, {1, 0, 0, 0}};
    assert_int_equal(plugin->apply_buckets(writer, NULL, 0, NULL, 0, &bd, 1, INT64_MIN, &err),
                     MAB_OK);
    assert_string_equal(changes_of(reader, &c), "buck;");

    /* A refused write (a string where the totals hash belongs: the script
       refuses before writing anything) leaves the log as it was. */
    server_do("SET %s{bad}:totals hello", prefix);
    long long before = log_seq(prefix);
    assert_true(before > 0);
    mab_delta bad[] = {{"bad", "a", {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(writer, bad, 1, &err), MAB_ECORRUPT);
    assert_int_equal(log_seq(prefix), before);
    assert_string_equal(changes_of(reader, &c), "");
    /* Refused by a later check (a count that is a word): the same. */
    server_do("DEL %s{bad}:totals", prefix);
    server_do("HSET %s{bad}:totals v 1 a:pulls many", prefix);
    assert_int_equal(plugin->apply(writer, bad, 1, &err), MAB_ECORRUPT);
    assert_int_equal(log_seq(prefix), before);
    assert_string_equal(changes_of(reader, &c), "");
    server_do("DEL %s{bad}:totals", prefix);

    /* A write to a stopped server: refused, nothing logged (the restart
       itself makes the reader ask for everything once: another run_id). */
    compact_aof(); /* see there */
    redis_server_stop(&srv, SIGTERM);
    mab_delta d2[] = {{"size", "s", {5, 0, 0, 0}}};
    assert_int_equal(plugin->apply(writer, d2, 1, &err), MAB_ESTORAGE);
    assert_int_equal(redis_server_start(&srv), 0);
    assert_int_equal(log_seq(prefix), before);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    /* The failed batch, offered again, is a change when it lands. */
    assert_int_equal(plugin->apply(writer, d2, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "size;");

    /* Claims: a granted one with its reward names the experiment; a
       refused one (claimed already) and one without deltas name nothing. */
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    memset(id, 0x3c, sizeof id);
    mab_delta reward = {"clm", "a", {0, 1, 1, 1}};
    mab_claim cl = {id, (int64_t)time(NULL) + 3600, &reward, 1, -1};
    assert_int_equal(plugin->claim(writer, &cl, 1, 0, &err), MAB_OK);
    assert_int_equal(cl.result, MAB_OK);
    assert_string_equal(changes_of(reader, &c), "clm;");
    before = log_seq(prefix);
    assert_int_equal(plugin->claim(writer, &cl, 1, 0, &err), MAB_OK);
    assert_int_equal(cl.result, MAB_ECLAIMED);
    uint8_t bare[MAB_ASSIGNMENT_ID_BYTES];
    memset(bare, 0x4d, sizeof bare);
    mab_claim nothing = {bare, (int64_t)time(NULL) + 3600, NULL, 0, -1};
    assert_int_equal(plugin->claim(writer, &nothing, 1, 0, &err), MAB_OK);
    assert_int_equal(nothing.result, MAB_OK);
    assert_int_equal(log_seq(prefix), before);
    assert_string_equal(changes_of(reader, &c), "");

    /* Reset and replace name what they removed (and what replace added). */
    assert_int_equal(plugin->reset(writer, "btn", &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "btn;");
    const char *replaced[] = {"size", "gone"};
    mab_delta fresh[] = {{"size", "s", {9, 0, 0, 0}}};
    assert_int_equal(plugin->replace(writer, replaced, 2, fresh, 1, &err), MAB_OK);
    seen_changes r;
    changes_of(reader, &r);
    assert_false(r.everything);
    assert_non_null(strstr(r.ids, "size;"));
    assert_non_null(strstr(r.ids, "gone;"));
    /* One member per experiment however often it changed. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(plugin->apply(writer, d2, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "size;");

    /* A visit that stops the call: its value returned, the position kept,
       so the next call names the same again. */
    assert_int_equal(plugin->apply(writer, d1, 3, &err), MAB_OK);
    int visits = 0, everything = 0;
    assert_int_equal(plugin->changed(reader, &everything, stop_at_first, &visits, &err), 7);
    assert_int_equal(visits, 1);
    assert_string_equal(changes_of(reader, &c), "btn;size;");
    assert_int_equal(plugin->changed(reader, NULL, note_changed, &c, &err), MAB_EINVAL);

    plugin->close(reader);
    plugin->close(writer);
    plugin->close(other);
}

/*
 * The fallbacks: a reader asks for everything when the log cannot vouch for
 * what it missed. FLUSHALL, then more writes than the reader had seen (its
 * sequence number is passed again, under a new epoch); the log deleted; a
 * log of another type (the next write starts it afresh); a log trimmed past
 * the reader's position (change_log_max); a server restart (another
 * run_id). After each, one call says everything and the next is exact again.
 */
static void test_changed_fallbacks(void **state)
{
    (void)state;
    char prefix[32], keys[200], trim_keys[240];
    snprintf(prefix, sizeof prefix, "fall%u:", ++seq);
    snprintf(keys, sizeof keys, "{\"url\": \"%s\", \"prefix\": \"%s\"}", srv.url, prefix);
    snprintf(trim_keys, sizeof trim_keys,
             "{\"url\": \"%s\", \"prefix\": \"%s\", \"change_log_max\": 3}", srv.url, prefix);
    void *reader = NULL, *writer = NULL;
    mab_error err = {0, ""};
    assert_int_equal(open_keys(keys, &reader, &err), MAB_OK);
    assert_int_equal(open_keys(keys, &writer, &err), MAB_OK);
    seen_changes c;
    mab_delta d[] = {{"e0", "a", {1, 0, 0, 0}}};
    for (int i = 0; i < 5; i++)
        assert_int_equal(plugin->apply(writer, d, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    long long seen = log_seq(prefix);

    /* FLUSHALL, then more writes than the reader saw: the sequence passes
       the reader's again, but under another epoch. */
    server_do("FLUSHALL");
    mab_delta d1[] = {{"e1", "a", {1, 0, 0, 0}}};
    for (long long i = 0; i <= seen; i++)
        assert_int_equal(plugin->apply(writer, d1, 1, &err), MAB_OK);
    assert_true(log_seq(prefix) > seen);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    /* FLUSHALL and no write since: no log at all, still everything once. */
    server_do("FLUSHALL");
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    assert_int_equal(plugin->apply(writer, d1, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "*"); /* a log again, a new epoch */
    assert_string_equal(changes_of(reader, &c), "");

    /* Only the sorted set deleted: the next write starts a new log. */
    server_do("DEL %schanges", prefix);
    assert_int_equal(plugin->apply(writer, d, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");

    /* A log hash of another type: reads ask for everything, writes go on
       and start it afresh. */
    server_do("DEL %schanges:log", prefix);
    server_do("SET %schanges:log junk", prefix);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "*"); /* no position until a write */
    assert_int_equal(plugin->apply(writer, d, 1, &err), MAB_OK);
    assert_true(log_seq(prefix) == 1);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    /* A seq that is not a number: the same. */
    server_do("HSET %schanges:log seq x", prefix);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_int_equal(plugin->apply(writer, d1, 1, &err), MAB_OK);
    assert_int_equal(log_seq(prefix), 1);
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");

    /* Trimmed: a writer keeping at most 3 experiments in the log. */
    void *trimmer = NULL;
    assert_int_equal(open_keys(trim_keys, &trimmer, &err), MAB_OK);
    mab_delta t1[] = {{"t1", "a", {1, 0, 0, 0}}, {"t2", "a", {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(trimmer, t1, 2, &err), MAB_OK);
    /* The log (restarted above) holds e1 at 1, t1 and t2 at 2: three. */
    assert_int_equal(server_integer("ZCARD %schanges", prefix), 3);
    assert_string_equal(changes_of(reader, &c), "t1;t2;"); /* at 2 now */
    mab_delta t3[] = {{"t3", "a", {1, 0, 0, 0}}};
    mab_delta t4[] = {{"t4", "a", {1, 0, 0, 0}}};
    mab_delta t5[] = {{"t5", "a", {1, 0, 0, 0}}};
    mab_delta t6[] = {{"t6", "a", {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(trimmer, t3, 1, &err), MAB_OK); /* e1 out: floor 1 */
    assert_string_equal(changes_of(writer, &c), "*");              /* its first call: at 3 */
    assert_int_equal(plugin->apply(trimmer, t4, 1, &err), MAB_OK); /* t1 out: floor 2 */
    assert_int_equal(plugin->apply(trimmer, t5, 1, &err), MAB_OK); /* t2 out: floor 2 */
    assert_int_equal(server_integer("ZCARD %schanges", prefix), 3);
    /* Trimmed only up to the reader's position: the log still holds all
       it missed. */
    assert_string_equal(changes_of(reader, &c), "t3;t4;t5;"); /* at 5 */
    assert_string_equal(changes_of(writer, &c), "t4;t5;");    /* at 5 */
    assert_int_equal(plugin->apply(trimmer, t6, 1, &err), MAB_OK); /* t3 out: floor 3 */
    assert_string_equal(changes_of(reader, &c), "t6;");
    /* Past a position: t7, t8, t9 push out t4, t5 and t6 (floor 6), beyond
       the reader's 6... */
    mab_delta t7[] = {{"t7", "a", {1, 0, 0, 0}}}, t8[] = {{"t8", "a", {1, 0, 0, 0}}},
              t9[] = {{"t9", "a", {1, 0, 0, 0}}};
    assert_int_equal(plugin->apply(trimmer, t7, 1, &err), MAB_OK);
    assert_int_equal(plugin->apply(trimmer, t8, 1, &err), MAB_OK);
    assert_int_equal(plugin->apply(trimmer, t9, 1, &err), MAB_OK);
    assert_string_equal(changes_of(reader, &c), "t7;t8;t9;"); /* 6 >= floor 6 */
    /* ...and past the writer's 5: it missed t6, which the log lost. */
    assert_string_equal(changes_of(writer, &c), "*");
    assert_string_equal(changes_of(writer, &c), "");
    plugin->close(trimmer);

    /* A restart (AOF: the log survives it, but a restart may lose its
       tail with the writes it named): everything once. */
    restart_compacted();
    assert_string_equal(changes_of(reader, &c), "*");
    assert_string_equal(changes_of(reader, &c), "");
    plugin->close(reader);
    plugin->close(writer);
}

/* ---- an engine's refresh reads only what changed ------------------------------------ */

#define MANY 60
#define MANY_ARMS 3

/* MANY experiments e0..e59 of 3 arms over the counting_redis fixture (the
   redis plugin behind a counter of load() calls) on PREFIX; refreshes only
   when the test asks. `more` adds storage keys. */
static void write_many_config(char *path, size_t cap, const char *prefix, const char *more)
{
    snprintf(path, cap, "%s/many%u.json", run_dir, ++seq);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fprintf(out, "{\"plugin_path\": [\"%s\", \"%s\"],\n"
                 " \"storage\": {\"plugin\": \"counting_redis\", \"url\": \"%s\", "
                 "\"prefix\": \"%s\", \"sync\": {\"interval_ms\": 3600000}, "
                 "\"refresh_ms\": 86400000%s},\n"
                 " \"experiments\": {\n", MAB_FIXTURE_DIR, MAB_PLUGIN_DIR, srv.url, prefix,
            more ? more : "");
    for (int i = 0; i < MANY; i++)
        fprintf(out, "  \"e%d\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, "
                     "\"arms\": {\"a0\": 0, \"a1\": 1, \"a2\": 2}}%s\n", i,
                i + 1 < MANY ? "," : "");
    fputs(" }}\n", out);
    assert_int_equal(fclose(out), 0);
}

static uint64_t loads_so_far(void)
{
    void *h = dlopen(MAB_FIXTURE_DIR "/counting_redis.so", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        fail_msg("counting_redis.so is not loaded: %s", dlerror());
    uint64_t (*loads)(void) = (uint64_t (*)(void))dlsym(h, "storage_counting_loads");
    assert_non_null(loads);
    uint64_t n = loads();
    dlclose(h); /* drops only the reference RTLD_NOLOAD took */
    return n;
}

/* What a refresh_ms tick does, on demand: mab_import of no records flushes,
   applies nothing, then refreshes the totals. */
static void refresh_now(mab_engine *e)
{
    mab_error err = {0, ""};
    if (mab_import(e, NULL, 0, 0, &err) != MAB_OK)
        fail_msg("refresh (mab_import of nothing): %s", err.message);
}

static mab_engine *open_many(const char *config)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    if (mab_open(config, &e, &err) != MAB_OK)
        fail_msg("mab_open %s: %s", config, err.message);
    return e;
}

/* Every arm's counters of e0..e59, as the engine shows them. */
typedef struct many_state {
    mab_arm_stats s[MANY][MANY_ARMS];
} many_state;

static void state_of(mab_engine *e, many_state *out)
{
    for (int i = 0; i < MANY; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        size_t n = 0;
        for (int a = 0; a < MANY_ARMS; a++)
            out->s[i][a] = (mab_arm_stats)MAB_STRUCT_INIT(mab_arm_stats);
        mab_error err = {0, ""};
        if (mab_stats(e, id, out->s[i], MANY_ARMS, &n, &err) != MAB_OK || n != MANY_ARMS)
            fail_msg("mab_stats %s: %s", id, err.message);
    }
}

/* The engine's state equals what a fresh engine reads from the store. */
static void assert_state_is_stored(mab_engine *e, const char *config, const char *when)
{
    many_state *mine = calloc(1, sizeof *mine), *fresh = calloc(1, sizeof *fresh);
    assert_non_null(mine);
    assert_non_null(fresh);
    state_of(e, mine);
    mab_engine *f = open_many(config);
    state_of(f, fresh);
    mab_close(f, NULL);
    for (int i = 0; i < MANY; i++)
        for (int a = 0; a < MANY_ARMS; a++) {
            const mab_arm_stats *x = &mine->s[i][a], *y = &fresh->s[i][a];
            if (x->pulls != y->pulls || x->rewards != y->rewards ||
                x->reward_sum != y->reward_sum)
                fail_msg("%s: e%d.a%d shows %" PRIu64 " pulls %" PRIu64 " rewards %.17g after "
                         "the refresh; the store holds %" PRIu64 " %" PRIu64 " %.17g",
                         when, i, a, x->pulls, x->rewards, x->reward_sum, y->pulls, y->rewards,
                         y->reward_sum);
        }
    free(mine);
    free(fresh);
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

enum { RANDOM_WRITES = 400, RANDOM_RESETS = 4 };

/* The random writes of step 2, from seed: rewards on (experiment, arm) and
   resets of experiments; marks each experiment touched (1) or reset (2). */
static int random_writes(mab_engine *e, uint64_t seed, unsigned char *touched)
{
    uint64_t x = seed;
    for (int i = 0; i < RANDOM_WRITES + RANDOM_RESETS; i++) {
        int reset = (int)(xorshift(&x) % (RANDOM_WRITES + RANDOM_RESETS)) < RANDOM_RESETS;
        int exp = (int)(xorshift(&x) % MANY), arm = (int)(xorshift(&x) % MANY_ARMS);
        double value = (double)(xorshift(&x) % 5) / 4;
        char id[16], arm_id[8];
        snprintf(id, sizeof id, "e%d", exp);
        snprintf(arm_id, sizeof arm_id, "a%d", arm);
        touched[exp] |= reset ? 2 : 1;
        if (!e)
            continue;
        if ((reset ? mab_reset(e, id, NULL) : mab_reward(e, id, arm_id, value, NULL)) != MAB_OK)
            return -1;
    }
    return 0;
}

/* Child: at each byte on go, one step, durable before the byte on done:
   1 = a reward of 1 on e17.a1; 2 = random_writes(seed 42); 3 = under the
   config `trim` (change_log_max 5), a reward on each of e30..e39. */
typedef struct changes_configs {
    const char *config, *trim;
} changes_configs;

static int changes_step(mab_engine *e, char step, void *ctx)
{
    const changes_configs *c = ctx;
    int ok = 1;
    unsigned char touched[MANY] = {0};
    if (step == 1)
        ok = mab_reward(e, "e17", "a1", 1.0, NULL) == MAB_OK;
    if (step == 2)
        ok = random_writes(e, 42, touched) == 0;
    if (step == 3) {
        mab_engine *t = NULL;
        ok = mab_open(c->trim, &t, NULL) == MAB_OK;
        for (int i = 30; ok && i < 40; i++) {
            char id[16];
            snprintf(id, sizeof id, "e%d", i);
            ok = mab_reward(t, id, "a0", 0.5, NULL) == MAB_OK && mab_flush(t, NULL) == MAB_OK;
        }
        if (t && mab_close(t, NULL) != MAB_OK)
            ok = 0;
    }
    return ok ? 0 : -1;
}

static void changes_child(void *arg, int go, int done)
{
    const changes_configs *c = arg;
    test_child_engine_steps(c->config, go, done, changes_step, arg);
}

/*
 * An engine over Redis, another process writing: a refresh after no change
 * loads no experiment, after one change one (counted load() calls), after
 * 400 random rewards and 4 resets exactly the experiments they touched (and
 * the resets' sample-ratio ledgers), and shows every change; after a
 * FLUSHALL, and after a writer that trims the log past this engine's
 * position, it re-reads everything, and again shows what the store holds.
 */
static void test_engine_refresh_reads_only_changed(void **state)
{
    (void)state;
    char config[256], trim[256], prefix[32];
    snprintf(prefix, sizeof prefix, "eng%u:", ++seq);
    write_many_config(config, sizeof config, prefix, NULL);
    write_many_config(trim, sizeof trim, prefix, ", \"change_log_max\": 5");
    changes_configs configs = {config, trim};
    test_child child = test_child_fork(changes_child, &configs);

    /* Something stored before anyone opens (the first write starts the log). */
    mab_engine *e = open_many(config);
    assert_int_equal(mab_reward(e, "e5", "a0", 1.0, NULL), MAB_OK);
    assert_int_equal(mab_reward(e, "e17", "a0", 1.0, NULL), MAB_OK);
    mab_close(e, NULL);

    e = open_many(config);
    uint64_t opened = loads_so_far();
    /* The open read everything (the plugin's first answer is "everything");
       a refresh with nothing changed anywhere reads nothing. */
    refresh_now(e);
    assert_int_equal(loads_so_far() - opened, 0);
    refresh_now(e);
    assert_int_equal(loads_so_far() - opened, 0);

    /* Ours, not yet applied: it must survive the refresh of its experiment. */
    assert_int_equal(mab_reward(e, "e17", "a2", 0.25, NULL), MAB_OK);
    uint64_t before = loads_so_far();
    test_child_step(&child, 1);
    /* mab_import flushes ours first (e17 again): still one experiment. */
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, 1);
    mab_arm_stats s[MANY_ARMS] = {MAB_STRUCT_INIT(mab_arm_stats), MAB_STRUCT_INIT(mab_arm_stats),
                                  MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    assert_int_equal(mab_stats(e, "e17", s, MANY_ARMS, &n, NULL), MAB_OK);
    assert_int_equal(s[0].rewards, 1); /* stored before */
    assert_int_equal(s[1].rewards, 1); /* the other process's */
    assert_int_equal(s[2].rewards, 1); /* ours */
    before = loads_so_far();
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, 0);

    /* Random writes from the other process: exactly what they touched. */
    unsigned char touched[MANY] = {0};
    random_writes(NULL, 42, touched);
    uint64_t want = 0;
    for (int i = 0; i < MANY; i++)
        want += (touched[i] != 0) + ((touched[i] & 2) != 0); /* a reset: its "@srm" too */
    before = loads_so_far();
    test_child_step(&child, 2);
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, want);
    assert_state_is_stored(e, config, "after random writes");

    /* FLUSHALL between refreshes: everything re-read, nothing shown that
       the store no longer holds. */
    server_do("FLUSHALL");
    before = loads_so_far();
    refresh_now(e);
    assert_true(loads_so_far() - before >= MANY);
    assert_state_is_stored(e, config, "after FLUSHALL");
    assert_int_equal(mab_stats(e, "e17", s, MANY_ARMS, &n, NULL), MAB_OK);
    assert_int_equal(s[1].rewards, 0);
    /* ...and a FLUSHALL followed by more writes than this engine had seen
       (the sequence passes its position again, under a new epoch). */
    test_child_step(&child, 1);
    refresh_now(e); /* the log was started afresh: everything once */
    server_do("FLUSHALL");
    test_child_step(&child, 2); /* a call per experiment: beyond the seq seen */
    before = loads_so_far();
    refresh_now(e);
    assert_true(loads_so_far() - before >= MANY);
    assert_state_is_stored(e, config, "after FLUSHALL and writes");

    /* A writer keeping 5 experiments in the log writes 10: this engine's
       position is trimmed away, so it re-reads everything. */
    before = loads_so_far();
    refresh_now(e);
    assert_int_equal(loads_so_far() - before, 0);
    test_child_step(&child, 3);
    before = loads_so_far();
    refresh_now(e);
    assert_true(loads_so_far() - before >= MANY);
    assert_state_is_stored(e, config, "after a trimmed log");
    assert_int_equal(mab_stats(e, "e35", s, MANY_ARMS, &n, NULL), MAB_OK);
    assert_true(s[0].reward_sum >= 0.5);

    test_child_wait_ok(&child);
    mab_close(e, NULL);
}

/* ---- full reads keep many requests in flight -------------------------------------- */

#define PIPE_N 300 /* several times the plugin's SCAN_AHEAD (64) */

/* What a scan saw: per experiment "eNNN" its visits and arm a's pulls. */
typedef struct pipe_seen {
    int visits[PIPE_N];
    uint64_t pulls[PIPE_N];
    int in_order; /* every visit's experiment at or after the previous one */
    int last;
    int stop_at;  /* the visitor asks to stop at this experiment (-1: never) */
} pipe_seen;

static int pipe_index(const char *experiment)
{
    int i = -1;
    if (experiment[0] == 'e' && sscanf(experiment + 1, "%d", &i) == 1 && i >= 0 && i < PIPE_N)
        return i;
    return -1;
}

static int pipe_note(pipe_seen *p, const char *experiment, uint64_t pulls)
{
    int i = pipe_index(experiment);
    if (i < 0)
        return 0;
    if (i < p->last)
        p->in_order = 0;
    p->last = i;
    p->visits[i]++;
    p->pulls[i] = pulls;
    return i == p->stop_at ? 7 : 0;
}

static int pipe_totals(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    return strcmp(arm, "a") == 0 ? pipe_note(ctx, experiment, t->pulls) : 0;
}

static int pipe_stats(void *ctx, const char *experiment, const char *arm, const char *layout,
                      const double *values, size_t n_values)
{
    (void)layout;
    return arm && strcmp(arm, "a") == 0 && n_values == 1
               ? pipe_note(ctx, experiment, (uint64_t)values[0])
               : 0;
}

static int pipe_buckets(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                        const mab_totals *add)
{
    (void)bucket;
    return strcmp(arm, "a") == 0 ? pipe_note(ctx, experiment, add->pulls) : 0;
}

static void pipe_reset(pipe_seen *p, int stop_at)
{
    memset(p, 0, sizeof *p);
    p->in_order = 1;
    p->stop_at = stop_at;
}

/* Every experiment visited once, in order, with its own figures. */
static void pipe_assert_all(const pipe_seen *p)
{
    assert_true(p->in_order);
    for (int i = 0; i < PIPE_N; i++) {
        assert_int_equal(p->visits[i], 1);
        assert_int_equal(p->pulls[i], (uint64_t)i + 1);
    }
}

/* The next call on the connection reads its own replies (none left in
   flight by the scan that stopped): e151's totals, statistics, buckets. */
static void pipe_assert_next_call(void *st, int64_t bucket)
{
    mab_error err = {0, ""};
    const char *arms[] = {"a"};
    mab_totals t[1];
    assert_int_equal(plugin->load(st, "e151", arms, 1, t, &err), MAB_OK);
    assert_int_equal(t[0].pulls, 152);
    double v[1] = {0};
    assert_int_equal(plugin->load_stats(st, "e151", "t/1:1,0", arms, 1, 1, v, 0, NULL, &err),
                     MAB_OK);
    assert_true(v[0] == 152.0);
    seen_buckets sb;
    memset(&sb, 0, sizeof sb);
    assert_int_equal(plugin->load_buckets(st, "e151", arms, 1, INT64_MIN, note_bucket, &sb, &err),
                     MAB_OK);
    assert_int_equal(sb.n, 1);
    assert_int_equal(sb.b[0].bucket, bucket);
    assert_int_equal(sb.b[0].add.pulls, 152);
}

/* scan, scan_stats and scan_buckets send the reads of the next experiments
   before the first reply is read (redis.c, read_pipelined). What they visit
   is what reads one by one would visit; an experiment whose key is corrupt
   stops the scan with an error naming that key, a visitor that asks to
   stop stops it with its value, and in either case the replies still in
   flight are not taken by the next call for its own. */
static void test_scan_pipelined(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    void *st = open_fresh("pipe", prefix, keys);
    mab_error err = {0, ""};
    const int64_t H = 3600, now = (int64_t)time(NULL), B = now - now % H;
    static char names[PIPE_N][8];
    static mab_delta d[PIPE_N];
    static mab_stats_delta sd[PIPE_N];
    static mab_bucket_delta bd[PIPE_N];
    static double values[PIPE_N];
    for (int i = 0; i < PIPE_N; i++) {
        snprintf(names[i], sizeof names[i], "e%03d", i);
        mab_totals t = {(uint64_t)i + 1, 0, 0, 0};
        d[i] = (mab_delta){names[i], "a", t};
        values[i] = i + 1;
        sd[i] = (mab_stats_delta){names[i], "a", "t/1:1,0", &values[i], 1};
        bd[i] = (mab_bucket_delta){names[i], "a", B, t};
    }
    assert_int_equal(plugin->apply_stats(st, d, PIPE_N, sd, PIPE_N, &err), MAB_OK);
    assert_int_equal(plugin->apply_buckets(st, NULL, 0, NULL, 0, bd, PIPE_N, now - 48 * H, &err),
                     MAB_OK);

    pipe_seen *p = calloc(1, sizeof *p);
    assert_non_null(p);
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan(st, pipe_totals, p, &err), MAB_OK);
    pipe_assert_all(p);
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan_stats(st, pipe_stats, p, &err), MAB_OK);
    pipe_assert_all(p);
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan_buckets(st, pipe_buckets, p, &err), MAB_OK);
    pipe_assert_all(p);

    /* A visitor that stops at e150: its value, nothing after it visited. */
    pipe_reset(p, 150);
    assert_int_equal(plugin->scan(st, pipe_totals, p, &err), 7);
    assert_int_equal(p->visits[150], 1);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);
    pipe_reset(p, 150);
    assert_int_equal(plugin->scan_stats(st, pipe_stats, p, &err), 7);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);
    pipe_reset(p, 150);
    assert_int_equal(plugin->scan_buckets(st, pipe_buckets, p, &err), 7);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);

    /* e150's keys of another type: the scans stop there, naming the key. */
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "RENAME %s{e150}:totals %s{e150}:kept", prefix, prefix));
    freeReplyObject(redisCommand(c, "SET %s{e150}:totals oops", prefix));
    freeReplyObject(redisCommand(c, "RENAME %s{e150}:stats %s{e150}:kept_stats", prefix, prefix));
    freeReplyObject(redisCommand(c, "SET %s{e150}:stats oops", prefix));
    freeReplyObject(redisCommand(c, "RENAME %s{e150}:buckets %s{e150}:kept_buckets", prefix,
                                 prefix));
    freeReplyObject(redisCommand(c, "SET %s{e150}:buckets oops", prefix));
    redisFree(c);
    char key[64];
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan(st, pipe_totals, p, &err), MAB_ECORRUPT);
    snprintf(key, sizeof key, "%s{e150}:totals", prefix);
    assert_mentions(err.message, key);
    assert_int_equal(p->visits[149], 1);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan_stats(st, pipe_stats, p, &err), MAB_ECORRUPT);
    snprintf(key, sizeof key, "%s{e150}:stats", prefix);
    assert_mentions(err.message, key);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);
    pipe_reset(p, -1);
    assert_int_equal(plugin->scan_buckets(st, pipe_buckets, p, &err), MAB_ECORRUPT);
    snprintf(key, sizeof key, "%s{e150}:buckets", prefix);
    assert_mentions(err.message, key);
    assert_int_equal(p->visits[151], 0);
    pipe_assert_next_call(st, B);
    free(p);
    plugin->close(st);
}

/* What a scan visits of wide_seen's experiment "wide". */
typedef struct wide_seen {
    uint64_t pulls[40];
    int visits;
} wide_seen;

static int wide_visit(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    wide_seen *w = ctx;
    int a = -1;
    if (strcmp(experiment, "wide") == 0 && sscanf(arm, "a%d", &a) == 1 && a >= 0 && a < 40) {
        w->pulls[a] = t->pulls;
        w->visits++;
    }
    return 0;
}

/* A read parses a record of up to 16 arms in place and a wider one in
   memory it allocates (redis.c, parse_totals): both read back whole, by
   load and by scan, and a corrupt field is refused in either. */
static void test_wide_and_narrow_records(void **state)
{
    (void)state;
    char prefix[32], keys[200];
    void *st = open_fresh("wide", prefix, keys);
    mab_error err = {0, ""};
    static const size_t widths[] = {16, 17, 40};
    const char *names[] = {"wide16", "wide17", "wide"};
    static char arm_names[40][8];
    const char *arms[40];
    mab_delta d[40];
    for (int a = 0; a < 40; a++) {
        snprintf(arm_names[a], sizeof arm_names[a], "a%d", a);
        arms[a] = arm_names[a];
    }
    for (int k = 0; k < 3; k++) {
        for (size_t a = 0; a < widths[k]; a++)
            d[a] = (mab_delta){names[k], arms[a], {a + 1, a, 0.5 * (double)a, 0.25 * (double)a}};
        assert_int_equal(plugin->apply(st, d, widths[k], &err), MAB_OK);
        mab_totals out[40];
        memset(out, 0, sizeof out);
        assert_int_equal(plugin->load(st, names[k], arms, widths[k], out, &err), MAB_OK);
        for (size_t a = 0; a < widths[k]; a++)
            assert_totals(&out[a], a + 1, a, 0.5 * (double)a, 0.25 * (double)a);
    }
    wide_seen w;
    memset(&w, 0, sizeof w);
    assert_int_equal(plugin->scan(st, wide_visit, &w, &err), MAB_OK);
    assert_int_equal(w.visits, 40);
    for (int a = 0; a < 40; a++)
        assert_int_equal(w.pulls[a], (uint64_t)a + 1);
    /* A field that is not a count, in a narrow record and in a wide one. */
    redisContext *c = redis_server_connect(&srv);
    assert_non_null(c);
    for (int k = 0; k < 3; k++) {
        freeReplyObject(redisCommand(c, "HSET %s{%s}:totals a3:pulls many", prefix, names[k]));
        mab_totals out[40];
        assert_int_equal(plugin->load(st, names[k], arms, widths[k], out, &err), MAB_ECORRUPT);
        assert_mentions(err.message, "holds \"many\", not a whole count");
    }
    redisFree(c);
    plugin->close(st);
}

int main(int argc, char **argv)
{
    /* test_storage_redis [PATTERN]: only the tests whose name matches (cmocka's
       filter, * and ? wildcards), e.g. 'test_*changed*'. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    /* The plugin must survive writes to closed connections without this;
       the tests themselves keep the default SIGPIPE action to prove it. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_reply_counted_once),
        cmocka_unit_test(test_late_reply_counted_once),
        cmocka_unit_test(test_closed_connection_no_sigpipe),
        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_four_processes),
        cmocka_unit_test(test_lost_reply_stats_and_buckets),
        cmocka_unit_test(test_stats_store),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_partial_batch_credit),
        cmocka_unit_test(test_wrong_type_stats_and_buckets),
        cmocka_unit_test(test_exp3_survives_restart),
        cmocka_unit_test(test_stats_four_processes),
        cmocka_unit_test(test_stats_refresh),
        cmocka_unit_test(test_changed_names_each_write),
        cmocka_unit_test(test_changed_fallbacks),
        cmocka_unit_test(test_engine_refresh_reads_only_changed),
        cmocka_unit_test(test_scan_pipelined),
        cmocka_unit_test(test_wide_and_narrow_records),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
