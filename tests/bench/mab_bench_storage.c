/*
 * mab_bench_storage.c - what the lmdb storage costs the engine.
 *
 * 1. Rewards per second into an LMDB store with sync "always" from 1, 4 and
 *    16 threads: every mab_reward returns only once its reward is committed
 *    (fsync), so this measures group commit.
 * 2. Rewards per second with sync {"interval_ms": 100} from one thread.
 * 3. ns per mab_choose on an engine whose totals are refreshed from LMDB
 *    every refresh_ms, against the same engine opened without storage.
 *
 * Each case runs on a fresh store in a temporary directory (TMPDIR or /tmp:
 * point TMPDIR at the disk you mean to measure), removed afterwards.
 *
 * --redis URL measures the redis plugin instead, on a running server
 * (redis://HOST:PORT/DB): rewards/s at sync "always" and interval_ms 100
 * from 1, 4 and 16 threads, each case under a fresh key prefix, and beside
 * them redis-benchmark's INCR rate on the same server in the same run.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mab/mab.h"

#ifndef MAB_BENCH_PLUGIN_DIR
#error "MAB_BENCH_PLUGIN_DIR must name the build's plugins directory"
#endif

#define EXPERIMENT "e"
#define ARMS 10
#define MAX_THREADS 16

typedef struct bench_options {
    double seconds;      /* per sync "always" measurement */
    uint64_t interval_n; /* rewards for the interval measurement */
    uint64_t choose_n;   /* chooses per choose measurement */
    unsigned repeat;
} bench_options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --redis URL: the redis plugin on this server instead of LMDB. */
static const char *redis_url;
static unsigned scratch_count;

static void usage(FILE *out)
{
    fprintf(out, "usage: mab-bench-storage [--quick] [--redis redis://HOST:PORT/DB]\n"
                 "\n"
                 "Rewards per second into LMDB with sync \"always\" (1, 4, 16 threads) and\n"
                 "with interval_ms 100, and ns per choose with totals refreshed from LMDB\n"
                 "against an engine without storage. --quick runs a short smoke version.\n"
                 "Stores are created under TMPDIR (default /tmp).\n"
                 "--redis URL: rewards/s through the redis plugin on that server (sync\n"
                 "\"always\" and interval_ms 100, 1, 4, 16 threads) beside redis-benchmark's\n"
                 "INCR rate on the same server; keys under mab-bench-PID-N: prefixes.\n");
}

/* ---- a scratch directory with a config -------------------------------- */

typedef struct scratch {
    char dir[256];
    char config[300];
} scratch;

static bool scratch_create(scratch *s, const char *storage_json)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/mab-bench-storage-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "mab-bench-storage: cannot create %s: %s\n", s->dir, strerror(errno));
        return false;
    }
    snprintf(s->config, sizeof s->config, "%s/mab.json", s->dir);
    FILE *f = fopen(s->config, "w");
    if (!f)
        return false;
    char where[400];
    if (redis_url)
        snprintf(where, sizeof where, "\"plugin\": \"redis\", \"url\": \"%s\", "
                 "\"prefix\": \"mab-bench-%ld-%u:\"", redis_url, (long)getpid(), ++scratch_count);
    else
        snprintf(where, sizeof where, "\"plugin\": \"lmdb\", \"path\": \"store\"");
    fprintf(f,
            "{\"plugin_path\": [\"%s\"], \"seed\": 1,\n"
            " \"storage\": {%s, %s},\n"
            " \"experiments\": {\"" EXPERIMENT "\": {\"policy\": {\"plugin\": \"epsilon_greedy\"},\n"
            "  \"arms\": {",
            MAB_BENCH_PLUGIN_DIR, where, storage_json);
    for (int a = 0; a < ARMS; a++)
        fprintf(f, "%s\"a%d\": %d", a ? ", " : "", a, a);
    fputs("}}}}\n", f);
    return fclose(f) == 0;
}

static void scratch_remove(const scratch *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "mab-bench-storage: could not remove %s\n", s->dir);
}

static mab_engine *engine_open(const char *config, unsigned flags)
{
    mab_options opts = {.struct_size = sizeof opts, .flags = flags | MAB_OPEN_SEED, .seed = 1};
    mab_engine *e = NULL;
    mab_error err = {0};
    if (mab_open_ex(config, &opts, &e, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench-storage: %s\n", err.message);
        return NULL;
    }
    return e;
}

static bool engine_close(mab_engine *e)
{
    mab_error err = {0};
    if (mab_close(e, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench-storage: %s\n", err.message);
        return false;
    }
    return true;
}

/* ---- rewards per second ------------------------------------------------ */

typedef struct reward_worker {
    mab_engine *engine;
    unsigned index;
    double until;      /* stop at this time (0: use count) */
    uint64_t count;    /* rewards to make when until is 0 */
    uint64_t done;
    pthread_barrier_t *start;
    int status;
    mab_error err;
} reward_worker;

static void *reward_run(void *arg)
{
    static const char *const ids[ARMS] = {"a0", "a1", "a2", "a3", "a4",
                                          "a5", "a6", "a7", "a8", "a9"};
    reward_worker *w = arg;
    pthread_barrier_wait(w->start);
    size_t arm = w->index % ARMS;
    for (uint64_t i = 0;; i++) {
        if (w->until > 0 ? (i % 16 == 0 && now_s() >= w->until) : i == w->count)
            break;
        w->status = mab_reward(w->engine, EXPERIMENT, ids[arm], (double)(i & 1), &w->err);
        if (w->status != MAB_OK)
            break;
        w->done++;
        if (++arm == ARMS)
            arm = 0;
    }
    return NULL;
}

/* Rewards per second from n_threads threads; < 0 on failure. With seconds > 0
   the threads run for that long, else each makes `count` rewards. */
static double rewards_per_second(const char *storage_json, unsigned n_threads, double seconds,
                                 uint64_t count)
{
    scratch s;
    if (!scratch_create(&s, storage_json))
        return -1;
    mab_engine *e = engine_open(s.config, 0);
    if (!e) {
        scratch_remove(&s);
        return -1;
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, n_threads + 1);
    pthread_t threads[MAX_THREADS];
    reward_worker workers[MAX_THREADS];
    for (unsigned t = 0; t < n_threads; t++) {
        workers[t] = (reward_worker){.engine = e, .index = t, .count = count, .start = &start};
        if (pthread_create(&threads[t], NULL, reward_run, &workers[t]) != 0) {
            fprintf(stderr, "mab-bench-storage: cannot start a thread\n");
            exit(1);
        }
    }
    double t0 = now_s();
    for (unsigned t = 0; t < n_threads; t++)
        workers[t].until = seconds > 0 ? t0 + seconds : 0;
    pthread_barrier_wait(&start);
    uint64_t total = 0;
    bool ok = true;
    for (unsigned t = 0; t < n_threads; t++) {
        pthread_join(threads[t], NULL);
        total += workers[t].done;
        if (workers[t].status != MAB_OK) {
            fprintf(stderr, "mab-bench-storage: %s\n", workers[t].err.message);
            ok = false;
        }
    }
    /* Interval mode: the rewards count once they are in the store. */
    mab_error err = {0};
    if (mab_flush(e, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench-storage: %s\n", err.message);
        ok = false;
    }
    double elapsed = now_s() - t0;
    pthread_barrier_destroy(&start);

    /* Every reward must be in the store. */
    mab_arm_stats stats[ARMS] = {MAB_STRUCT_INIT(mab_arm_stats)};
    size_t n = 0;
    uint64_t stored = 0;
    if (mab_stats(e, EXPERIMENT, stats, ARMS, &n, &err) == MAB_OK)
        for (size_t a = 0; a < n; a++)
            stored += stats[a].rewards;
    if (stored != total) {
        fprintf(stderr, "mab-bench-storage: %" PRIu64 " rewards made, %" PRIu64 " stored\n",
                total, stored);
        ok = false;
    }
    ok = engine_close(e) && ok;
    scratch_remove(&s);
    return ok ? (double)total / elapsed : -1;
}

/* ---- choose cost ------------------------------------------------------- */

/* ns per choose, median of repeat runs; < 0 on failure. */
static double choose_ns(mab_engine *e, uint64_t n, unsigned repeat)
{
    double runs[64];
    if (repeat > 64)
        repeat = 64;
    for (unsigned r = 0; r < repeat; r++) {
        double t0 = now_s();
        for (uint64_t i = 0; i < n; i++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            mab_error err;
            if (mab_choose(e, EXPERIMENT, &c, &err) != MAB_OK) {
                fprintf(stderr, "mab-bench-storage: %s\n", err.message);
                return -1;
            }
        }
        runs[r] = (now_s() - t0) * 1e9 / (double)n;
    }
    for (unsigned i = 1; i < repeat; i++)
        for (unsigned j = i; j > 0 && runs[j - 1] > runs[j]; j--) {
            double t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    return repeat % 2 ? runs[repeat / 2] : (runs[repeat / 2 - 1] + runs[repeat / 2]) / 2;
}

/* Choose cost with LMDB refreshed every refresh_ms, and without storage. */
static bool choose_cost(const bench_options *o, unsigned refresh_ms, double *with_lmdb,
                        double *in_memory)
{
    char storage[128];
    snprintf(storage, sizeof storage, "\"sync\": {\"interval_ms\": 100}, \"refresh_ms\": %u",
             refresh_ms);
    scratch s;
    if (!scratch_create(&s, storage))
        return false;
    bool ok = false;
    mab_engine *lmdb = engine_open(s.config, 0);
    mab_engine *memory = lmdb ? engine_open(s.config, MAB_OPEN_NO_STORAGE) : NULL;
    if (lmdb && memory) {
        /* The same warm start for both: some pulls and rewards per arm. */
        for (int i = 0; i < 2000; i++) {
            mab_choice c = MAB_STRUCT_INIT(mab_choice);
            mab_choose(lmdb, EXPERIMENT, &c, NULL);
            mab_choose(memory, EXPERIMENT, &c, NULL);
            if (i % 3 == 0) {
                mab_reward(lmdb, EXPERIMENT, c.arm_id, 1.0, NULL);
                mab_reward(memory, EXPERIMENT, c.arm_id, 1.0, NULL);
            }
        }
        /* Interleave the runs so that both see the same machine noise. */
        double a = 0, b = 0;
        for (unsigned r = 0; r < o->repeat; r++) {
            a += choose_ns(lmdb, o->choose_n, 1);
            b += choose_ns(memory, o->choose_n, 1);
        }
        *with_lmdb = a / o->repeat;
        *in_memory = b / o->repeat;
        ok = *with_lmdb > 0 && *in_memory > 0;
    }
    if (memory)
        ok = engine_close(memory) && ok;
    if (lmdb)
        ok = engine_close(lmdb) && ok;
    scratch_remove(&s);
    return ok;
}

/* redis-benchmark -t incr against the server of redis_url: requests/s. */
static double redis_incr_rate(const bench_options *o, unsigned clients)
{
    char host[256] = "127.0.0.1";
    int port = 6379;
    const char *rest = strncmp(redis_url, "redis://", 8) == 0 ? redis_url + 8 : redis_url;
    if (strchr(rest, '@'))
        rest = strchr(rest, '@') + 1;
    size_t n = strcspn(rest, ":/");
    if (n && n < sizeof host)
        snprintf(host, sizeof host, "%.*s", (int)n, rest);
    if (rest[n] == ':')
        port = atoi(rest + n + 1);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-benchmark -h '%s' -p %d -t incr -n %u -c %u -q 2>&1", host,
             port, o->repeat > 1 ? 100000u : 20000u, clients);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    double rate = -1;
    while (fgets(line, sizeof line, p)) {
        /* "INCR: 123456.79 requests per second, p50=0.191 msec" (progress lines
           before it end in '\r') */
        char *last = strrchr(line, '\r');
        char *at = strstr(last ? last : line, "INCR: ");
        if (at)
            rate = atof(at + 6);
    }
    if (pclose(p) != 0)
        rate = -1;
    return rate;
}

static int redis_main(const bench_options *o)
{
    printf("mab %s: redis storage at %s, %d arms, epsilon_greedy\n\n", mab_version(), redis_url,
           ARMS);
    printf("%-34s %8s %16s\n", "case", "threads", "rewards/s");
    fflush(stdout);
    static const unsigned thread_counts[] = {1, 4, 16};
    static const char *const syncs[][2] = {{"\"sync\": \"always\"", "reward, sync \"always\""},
                                           {"\"sync\": {\"interval_ms\": 100}",
                                            "reward, sync interval_ms 100"}};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof thread_counts / sizeof thread_counts[0]; i++) {
            double rate = rewards_per_second(syncs[k][0], thread_counts[i], o->seconds, 0);
            if (rate < 0)
                return 1;
            printf("%-34s %8u %16.0f\n", syncs[k][1], thread_counts[i], rate);
            fflush(stdout);
        }
    printf("\n%-34s %8s %16s\n", "redis-benchmark -t incr", "clients", "requests/s");
    static const unsigned clients[] = {1, 4, 16};
    for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++) {
        double rate = redis_incr_rate(o, clients[i]);
        if (rate < 0) {
            fprintf(stderr, "mab-bench-storage: redis-benchmark failed (Debian: redis-tools)\n");
            return 1;
        }
        printf("%-34s %8u %16.0f\n", "INCR", clients[i], rate);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_options o = {.seconds = 3.0, .interval_n = 10000000, .choose_n = 2000000, .repeat = 5};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o = (bench_options){.seconds = 0.2, .interval_n = 200000, .choose_n = 100000,
                                .repeat = 1};
        } else if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
            redis_url = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "mab-bench-storage: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (redis_url)
        return redis_main(&o);
    printf("mab %s: lmdb storage, %d arms, epsilon_greedy; stores under %s\n\n", mab_version(),
           ARMS, getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    printf("%-34s %8s %16s\n", "case", "threads", "rewards/s");
    fflush(stdout);
    static const unsigned thread_counts[] = {1, 4, 16};
    for (size_t i = 0; i < sizeof thread_counts / sizeof thread_counts[0]; i++) {
        double rate = rewards_per_second("\"sync\": \"always\"", thread_counts[i], o.seconds, 0);
        if (rate < 0)
            return 1;
        printf("%-34s %8u %16.0f\n", "reward, sync \"always\"", thread_counts[i], rate);
        fflush(stdout);
    }
    double rate = rewards_per_second("\"sync\": {\"interval_ms\": 100}", 1, 0, o.interval_n);
    if (rate < 0)
        return 1;
    printf("%-34s %8u %16.0f\n", "reward, sync interval_ms 100", 1u, rate);

    printf("\n%-34s %12s %12s %8s\n", "choose (1 thread)", "lmdb ns", "memory ns", "ratio");
    static const unsigned refreshes[] = {100, 10};
    for (size_t i = 0; i < sizeof refreshes / sizeof refreshes[0]; i++) {
        double with_lmdb, in_memory;
        if (!choose_cost(&o, refreshes[i], &with_lmdb, &in_memory))
            return 1;
        char label[64];
        snprintf(label, sizeof label, "refresh_ms %u", refreshes[i]);
        printf("%-34s %12.1f %12.1f %8.3f\n", label, with_lmdb, in_memory, with_lmdb / in_memory);
        fflush(stdout);
    }
    return 0;
}
