/*
 * mab-bench-scale: how the engine scales in the number of experiments.
 * For each count N it writes a config of N experiments of K arms
 * (epsilon_greedy), then in a fresh child process: mab_open's time, the
 * memory it took per arm (VmRSS after minus before, and malloc's bytes in
 * use after minus before, beside what the id and value strings themselves
 * hold), and choose on one hot
 * experiment against choose on a random experiment of the N (the cost of
 * cache misses), as ns of the thread's CPU time per call and their ratio. Storage is off
 * (MAB_OPEN_NO_STORAGE) unless --storage PLUGIN names one (json_file, lmdb),
 * which then also measures the first write of every experiment and a reopen
 * over the stored records, and the size of the store after the first write
 * (bytes per arm of the config). The open and the close are also given in
 * CPU seconds of the process (steadier than the wall clock on a busy
 * machine). --policy NAME sets the experiments'
 * policy; --no-srm adds "srm": false to each (the sample-ratio ledger
 * "ID@srm" then takes neither memory nor storage: compare the two runs).
 * --redis URL is --storage redis on that server (each count under a fresh
 * key prefix). With a storage, --commits R also measures R commits of one
 * changed record each (a reward on one experiment, then mab_flush: ms per
 * commit), and a refresh (re-reading the store as a refresh_ms tick does,
 * through mab_import of no records) after one such change, and after none
 * (the refresh after a settling one, which read what the writes before it
 * changed).
 *
 * --warm chooses once on every experiment before measuring, so that the
 * random column is the steady state rather than first touches. --handle
 * chooses through handles (mab_experiment_handle() once per experiment
 * before the clock starts, then mab_choose_h()), so the string lookup is
 * out of both columns. --only hot|random measures one column alone (the
 * other prints 0), for a profiler (perf, callgrind) to see one kind of
 * choose. --miss adds the ns of one dependent load at a random place in a
 * buffer as large as the engine's heap (a pointer chase: the price of a
 * cache and TLB miss on this machine at that working set; 0 without it).
 *
 * --parse-only measures instead what cJSON alone costs on the same config
 * (read, parse, free), --parse-own the same with core/json.c, the parser
 * mab_open uses (compiled in): the parse's part of mab_open.
 *
 * --read-threads T measures instead a read of one experiment (mab_stats of
 * "e0", C reads) while T threads choose and reward on random experiments
 * without pause: CPU time per read on the reading thread (what gathering
 * the threads' pending totals costs it), and wall time per read. On a
 * machine with fewer cores than T the CPU time then mostly measures waiting
 * for the slot of a thread the scheduler preempted (slot_lock yields).
 * --read-burst B makes the threads take turns with the reader instead: each
 * does B chooses and rewards, then waits (what it left pending stays in its
 * slot) while the reader reads once, C times: the read's CPU time is then
 * the gathering of what T threads hold, and nothing else.
 *
 *   mab-bench-scale [--arms K] [--calls C] [--storage PLUGIN] [--redis URL]
 *                   [--commits R] [--warm] [--handle] [--only hot|random]
 *                   [--miss] [--policy NAME] [--no-srm] [--parse-only | --parse-own]
 *                   [--read-threads T [--read-burst B]] N [N ...]
 *
 * Not a test: it prints a table (TSV with --tsv). docs/benchmarks.md records
 * its figures with the command.
 */
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mab/mab.h"
#include "../../core/json.h" /* --parse-own */
#include "bench_mem.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process (user + system), for open and close: steadier
   than the wall clock on a machine shared with other builds. */
static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The calling thread's CPU time: the choose loops run on one thread and
   call no storage, so on a loaded machine (other processes running) their
   CPU time per call is what the call costs, where the wall clock would add
   every time slice given to someone else. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *policy = "epsilon_greedy";
static int no_srm;
static const char *redis_url;

static int write_config(const char *path, const char *dir, size_t n, size_t k,
                        const char *storage)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"seed\": 1, \"plugin_path\": [\"%s\"],\n", MAB_BENCH_PLUGIN_DIR);
    if (storage && strcmp(storage, "lmdb") == 0)
        fprintf(f, " \"storage\": {\"plugin\": \"lmdb\", \"path\": \"%s/db\", "
                   "\"map_size\": 17179869184, \"sync\": {\"interval_ms\": 3600000}},\n", dir);
    else if (storage && strcmp(storage, "redis") == 0)
        fprintf(f, " \"storage\": {\"plugin\": \"redis\", \"url\": \"%s\", "
                   "\"prefix\": \"%s:\", \"sync\": {\"interval_ms\": 3600000}},\n",
                redis_url, dir);
    else if (storage)
        fprintf(f, " \"storage\": {\"plugin\": \"%s\", \"path\": \"%s/state.json\", "
                   "\"sync\": {\"interval_ms\": 3600000}},\n", storage, dir);
    else
        fprintf(f, " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/unused.json\"},\n",
                dir);
    fputs(" \"experiments\": {\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  \"e%zu\": {\"policy\": {\"plugin\": \"%s\"}, \"arms\": {", i, policy);
        for (size_t a = 0; a < k; a++)
            fprintf(f, "%s\"a%zu\": %zu", a ? ", " : "", a, a);
        fprintf(f, "}%s}%s\n", no_srm ? ", \"srm\": false" : "", i + 1 < n ? "," : "");
    }
    fputs(" }\n}\n", f);
    return fclose(f);
}

static int use_handles;
static const char *only; /* "hot", "random" or NULL: both */

/* ns per mab_choose (mab_choose_h with --handle) over `calls` calls, on
   experiment pick(i). */
static double choose_ns(mab_engine *e, char **ids, const mab_handle *handles, size_t n,
                        size_t calls, int random)
{
    if (only && strcmp(only, random ? "random" : "hot") != 0)
        return 0;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    double t0 = cpu_s();
    for (size_t i = 0; i < calls; i++) {
        size_t at = 0;
        if (random) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            at = (size_t)(x % n);
        }
        int rc = handles ? mab_choose_h(e, handles[at], NULL, &c, NULL)
                         : mab_choose(e, ids[at], &c, NULL);
        if (rc != MAB_OK)
            return -1;
    }
    return (cpu_s() - t0) * 1e9 / (double)calls;
}

/* --miss: ns per dependent load over a buffer of `bytes`, one load per
   64-byte line in a random cyclic order (Sattolo's shuffle), so that each
   load waits for the previous one and hits neither cache nor prefetcher
   once the buffer is beyond the caches. */
static double miss_ns(size_t bytes, size_t loads)
{
    size_t lines = bytes / 64 < 2 ? 2 : bytes / 64;
    size_t *order = malloc(lines * sizeof *order);
    char *buf = aligned_alloc(64, lines * 64);
    if (!order || !buf) {
        free(order);
        free(buf);
        return -1;
    }
    for (size_t i = 0; i < lines; i++)
        order[i] = i;
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (size_t i = lines - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % i); /* j < i: one cycle through every line */
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        *(void **)(buf + order[i] * 64) = buf + order[(i + 1) % lines] * 64;
    free(order);
    void *p = buf;
    for (size_t i = 0; i < lines; i++) /* once round, so the page tables are in */
        p = *(void **)p;
    double t0 = cpu_s();
    for (size_t i = 0; i < loads; i++)
        p = *(void **)p;
    double ns = (cpu_s() - t0) * 1e9 / (double)loads;
    if (p == NULL) /* never: keeps the chase from being optimised away */
        ns = -1;
    free(buf);
    return ns;
}

/* Bytes of the store under dir (the json_file's file, LMDB's data file). */
static double store_bytes(const char *dir, const char *storage)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir,
             strcmp(storage, "lmdb") == 0 ? "db/data.mdb" : "state.json");
    return stat(path, &st) == 0 ? (double)st.st_size : -1.0;
}

/* ms per commit of one changed record: a reward on one experiment, then mab_flush. */
static double commit_ms(mab_engine *e, char **ids, size_t n, size_t commits)
{
    mab_error err = {0, ""};
    double t0 = now_s();
    for (size_t i = 0; i < commits; i++) {
        if (mab_reward(e, ids[(i * 7919) % n], "a0", 1.0, &err) != MAB_OK ||
            mab_flush(e, &err) != MAB_OK) {
            fprintf(stderr, "commit: %s\n", err.message);
            return -1;
        }
    }
    return (now_s() - t0) * 1e3 / (double)commits;
}

/* s of one refresh: the store re-read as a refresh_ms tick does (mab_import of
   no records flushes nothing new, applies nothing, then reloads the totals). */
static double refresh_s(mab_engine *e)
{
    mab_error err = {0, ""};
    double t0 = now_s();
    if (mab_import(e, NULL, 0, 0, &err) != MAB_OK) {
        fprintf(stderr, "refresh: %s\n", err.message);
        return -1;
    }
    return now_s() - t0;
}

static size_t commits;
static int warm;
static int miss;
static unsigned read_threads;

/* --read-threads T: T threads choose and reward on random experiments
   without pause while this thread reads one experiment (mab_stats of "e0"):
   the read's CPU time per call (its own thread's: what the read did,
   gathering included, not the time slices the busy threads took), and the
   busy threads' operations meanwhile. */
typedef struct busy {
    mab_engine *e;
    char **ids;
    size_t n;
    unsigned seed;
    _Atomic int *stop;
    uint64_t ops;
} busy;

static size_t read_burst;
static pthread_barrier_t burst_start, burst_end;

static void *busy_main(void *arg)
{
    busy *b = arg;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    /* --read-burst B: B operations, then wait (holding what they left
       pending) while the reader reads; again, until stopped. */
    while (read_burst) {
        pthread_barrier_wait(&burst_start);
        if (atomic_load(b->stop))
            return NULL;
        for (size_t k = 0; k < read_burst; k++) {
            const char *id = b->ids[(size_t)rand_r(&b->seed) % b->n];
            if (mab_choose(b->e, id, &c, NULL) == MAB_OK)
                (void)mab_reward(b->e, id, c.arm_id, 1.0, NULL);
            b->ops += 2;
        }
        pthread_barrier_wait(&burst_end);
    }
    while (!atomic_load_explicit(b->stop, memory_order_relaxed)) {
        const char *id = b->ids[(size_t)rand_r(&b->seed) % b->n];
        if (mab_choose(b->e, id, &c, NULL) == MAB_OK)
            (void)mab_reward(b->e, id, c.arm_id, 1.0, NULL);
        b->ops += 2;
    }
    return NULL;
}

static int read_busy(mab_engine *e, char **ids, size_t n, size_t k, size_t reads)
{
    _Atomic int stop = 0;
    if (read_burst && (pthread_barrier_init(&burst_start, NULL, read_threads + 1) != 0 ||
                       pthread_barrier_init(&burst_end, NULL, read_threads + 1) != 0))
        return 1;
    busy *b = calloc(read_threads, sizeof *b);
    pthread_t *t = calloc(read_threads, sizeof *t);
    mab_arm_stats *st = calloc(k, sizeof *st);
    if (!b || !t || !st)
        return 1;
    for (unsigned i = 0; i < read_threads; i++) {
        b[i] = (busy){e, ids, n, 7u + i, &stop, 0};
        if (pthread_create(&t[i], NULL, busy_main, &b[i]) != 0)
            return 1;
    }
    for (size_t a = 0; a < k; a++)
        st[a].struct_size = sizeof st[a];
    double cpu = 0, wall = 0;
    uint64_t pulls = 0;
    if (read_burst) {
        /* Each read while every thread waits with its burst's pending
           totals: the read's CPU time is its gathering and nothing else
           (no slot held by a thread the scheduler took off a core). */
        for (size_t r = 0; r < reads; r++) {
            pthread_barrier_wait(&burst_start);
            pthread_barrier_wait(&burst_end);
            size_t got = 0;
            double c0 = cpu_s(), t0 = now_s();
            if (mab_stats(e, "e0", st, k, &got, NULL) != MAB_OK)
                return 1;
            cpu += cpu_s() - c0;
            wall += now_s() - t0;
            pulls = st[0].pulls;
        }
        atomic_store(&stop, 1);
        pthread_barrier_wait(&burst_start);
    } else {
        struct timespec settle = {0, 200000000L};
        nanosleep(&settle, NULL); /* the threads get going, their slots fill */
        double c0 = cpu_s(), t0 = now_s();
        for (size_t r = 0; r < reads; r++) {
            size_t got = 0;
            if (mab_stats(e, "e0", st, k, &got, NULL) != MAB_OK)
                return 1;
            pulls = st[0].pulls;
        }
        cpu = cpu_s() - c0;
        wall = now_s() - t0;
        atomic_store(&stop, 1);
    }
    uint64_t ops = 0;
    for (unsigned i = 0; i < read_threads; i++) {
        pthread_join(t[i], NULL);
        ops += b[i].ops;
    }
    printf("%10zu %4zu mab_stats of one experiment, %u threads busy (%s %zu): %.2f us CPU, "
           "%.2f us wall per read (%zu reads; busy threads %" PRIu64 " operations, e0 arm 0 at "
           "%" PRIu64 " pulls)\n",
           n, k, read_threads, read_burst ? "bursts of" : "without pause", read_burst,
           cpu * 1e6 / (double)reads, wall * 1e6 / (double)reads, reads, ops, pulls);
    fflush(stdout);
    free(b);
    free(t);
    free(st);
    return 0;
}

/* --parse-only: what cJSON alone costs on the config mab_open would read
   (read the file, parse, free the tree; core/config.c does the same), in
   wall and CPU seconds, and the bytes of the file per arm. */
static int parse_only(const char *config, size_t n, size_t k, int own)
{
    double t0 = now_s(), c0 = process_cpu_s();
    FILE *f = fopen(config, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0)
        return 1;
    char *text = malloc((size_t)st.st_size + 1);
    if (!text || fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        return 1;
    fclose(f);
    text[st.st_size] = '\0';
    double read_cpu = process_cpu_s() - c0;
    cJSON *root = own ? mab__json_parse(text, (size_t)st.st_size, NULL)
                      : cJSON_ParseWithOpts(text, NULL, 1);
    free(text);
    if (!root)
        return 1;
    double parse_wall = now_s() - t0, parse_cpu = process_cpu_s() - c0;
    c0 = process_cpu_s();
    if (own)
        mab__json_free(root);
    else
        cJSON_Delete(root);
    double delete_cpu = process_cpu_s() - c0;
    printf("%10zu %4zu parse only (%s): %.3f s wall, %.3f s CPU (read %.3f s), delete %.3f s CPU, "
           "%.1f bytes of config per arm\n",
           n, k, own ? "core/json.c" : "cJSON", parse_wall, parse_cpu, read_cpu, delete_cpu, (double)st.st_size / (double)(n * k));
    fflush(stdout); /* the child leaves with _exit */
    return 0;
}

static int measure(const char *config, const char *dir, size_t n, size_t k, size_t calls,
                   const char *storage, int tsv)
{
    char **ids = malloc(n * sizeof *ids);
    for (size_t i = 0; ids && i < n; i++)
        if (asprintf(&ids[i], "e%zu", i) < 0)
            return 1;
    long before = rss_kib();
    struct mallinfo2 m0 = mallinfo2();
    size_t heap_before = m0.uordblks + m0.hblkhd; /* small chunks + mmapped big ones */
    mab_options opts = {sizeof opts, storage ? 0u : MAB_OPEN_NO_STORAGE, 0};
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    double t0 = now_s(), c0 = process_cpu_s();
    if (mab_open_ex(config, &opts, &e, &err) != MAB_OK) {
        fprintf(stderr, "mab_open: %s\n", err.message);
        return 1;
    }
    double open_s = now_s() - t0, open_cpu = process_cpu_s() - c0;
    long after = rss_kib();
    struct mallinfo2 m1 = mallinfo2();
    size_t heap_after = m1.uordblks + m1.hblkhd;
    /* What the ids and values themselves take (strings, NUL included; a
       malloc'd string costs at least 32 bytes with glibc's header). */
    double strings = 0;
    for (size_t a = 0; a < k; a++) {
        char id[32], value[32];
        int id_len = snprintf(id, sizeof id, "a%zu", a);
        int value_len = snprintf(value, sizeof value, "%zu", a);
        strings += (double)(id_len + 1 + value_len + 1);
    }
    strings /= (double)k;
    /* --warm: one choose on every experiment first, so that the random
       column is the steady state (cache and TLB misses), not first touches
       (a slot's pending totals, an experiment's history ring, queue growth). */
    mab_choice warm_choice = MAB_STRUCT_INIT(mab_choice);
    for (size_t i = 0; warm && i < n; i++)
        if (mab_choose(e, ids[i], &warm_choice, NULL) != MAB_OK)
            return 1;
    mab_handle *handles = use_handles ? malloc(n * sizeof *handles) : NULL;
    if (use_handles && !handles)
        return 1;
    for (size_t i = 0; use_handles && i < n; i++)
        if (mab_experiment_handle(e, ids[i], &handles[i], &err) != MAB_OK) {
            fprintf(stderr, "mab_experiment_handle: %s\n", err.message);
            return 1;
        }
    if (read_threads) {
        int rc = read_busy(e, ids, n, k, calls);
        mab_close(e, NULL);
        return rc;
    }
    double hot = choose_ns(e, ids, handles, n, calls, 0);
    double cold = choose_ns(e, ids, handles, n, calls, 1);
    free(handles);
    /* The chase spans what the engine holds in the heap (at least 1 MiB). */
    struct mallinfo2 m2 = mallinfo2();
    size_t heap_now = m2.uordblks + m2.hblkhd;
    size_t span = heap_now - heap_before > (1u << 20) ? heap_now - heap_before : (1u << 20);
    double miss_cost = miss ? miss_ns(span, calls) : 0;
    double flush_s = 0, reopen_s = 0, stored = 0;
    if (storage) {
        t0 = now_s();
        if (mab_flush(e, &err) != MAB_OK) {
            fprintf(stderr, "mab_flush: %s\n", err.message);
            return 1;
        }
        flush_s = now_s() - t0;
    }
    double commit = 0, refresh_one = 0, refresh_none = 0;
    if (storage && commits) {
        /* Settle first: a refresh reads what the first write changed (over a
           change log, every experiment written), so that the commits below
           do not wait behind that read in the background writer. */
        refresh_s(e);
        commit = commit_ms(e, ids, n, commits);
        /* Settle: the first refresh reads what the first write and the
           commits changed (over a change log, all of it), so that the
           next one is a refresh after no change. */
        refresh_s(e);
        refresh_none = refresh_s(e);
        commit_ms(e, ids, n, 1);
        refresh_one = refresh_s(e);
    }
    c0 = process_cpu_s();
    mab_close(e, NULL);
    double close_cpu = process_cpu_s() - c0;
    if (storage) {
        stored = store_bytes(dir, storage) / (double)(n * k);
        t0 = now_s();
        if (mab_open_ex(config, &opts, &e, &err) != MAB_OK) {
            fprintf(stderr, "mab_open (again): %s\n", err.message);
            return 1;
        }
        reopen_s = now_s() - t0;
        mab_close(e, NULL);
    }
    double per_arm = (double)(after - before) * 1024.0 / (double)(n * k);
    double heap_per_arm = (double)(heap_after - heap_before) / (double)(n * k);
    double ratio = hot > 0 ? cold / hot : 0;
    if (tsv)
        printf("%zu\t%zu\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.3f\t%.3f\t%.1f\t%.3f"
               "\t%.4f\t%.4f\t%.1f\t%.3f\t%.3f\n",
               n, k, storage ? storage : "none", open_s, per_arm, heap_per_arm, strings, hot,
               cold, ratio, flush_s, reopen_s, stored, commit, refresh_one, refresh_none,
               miss_cost, open_cpu, close_cpu);
    else
        printf("%10zu %4zu %-9s %9.3f s %8.1f B %8.1f B %6.1f B %8.1f ns %8.1f ns %6.2fx %9.3f s "
               "%9.3f s %8.1f B %9.3f ms %9.4f s %9.4f s %6.1f ns %8.3f s %8.3f s\n",
               n, k, storage ? storage : "none", open_s, per_arm, heap_per_arm, strings, hot, cold,
               ratio, flush_s, reopen_s, stored, commit, refresh_one, refresh_none, miss_cost,
               open_cpu, close_cpu);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    size_t k = 10, calls = 1000000;
    const char *storage = NULL;
    int tsv = 0, i = 1, parse_only_mode = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--arms") == 0 && i + 1 < argc)
            k = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            calls = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--storage") == 0 && i + 1 < argc)
            storage = argv[++i];
        else if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc)
            storage = "redis", redis_url = argv[++i];
        else if (strcmp(argv[i], "--commits") == 0 && i + 1 < argc)
            commits = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--warm") == 0)
            warm = 1;
        else if (strcmp(argv[i], "--handle") == 0)
            use_handles = 1;
        else if (strcmp(argv[i], "--miss") == 0)
            miss = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "hot") == 0 || strcmp(argv[i + 1], "random") == 0))
            only = argv[++i];
        else if (strcmp(argv[i], "--tsv") == 0)
            tsv = 1;
        else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(argv[i], "--no-srm") == 0)
            no_srm = 1;
        else if (strcmp(argv[i], "--parse-only") == 0)
            parse_only_mode = 1;
        else if (strcmp(argv[i], "--parse-own") == 0)
            parse_only_mode = 2;
        else if (strcmp(argv[i], "--read-threads") == 0 && i + 1 < argc)
            read_threads = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--read-burst") == 0 && i + 1 < argc)
            read_burst = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: mab-bench-scale [--arms K] [--calls C] [--storage PLUGIN] "
                            "[--redis URL] [--commits R] [--warm] [--handle] "
                            "[--only hot|random] [--miss] [--policy NAME] [--no-srm] "
                            "[--parse-only | --parse-own] [--read-threads T [--read-burst B]] "
                            "[--tsv] N [N ...]\n");
            return 2;
        }
    }
    if (i == argc) {
        fprintf(stderr, "mab-bench-scale: give at least one experiment count\n");
        return 2;
    }
    if (parse_only_mode || read_threads)
        ;
    else if (tsv)
        printf("experiments\tarms\tstorage\topen_s\trss_per_arm\theap_per_arm\tid_value_bytes\t"
               "hot_ns\trandom_ns\tratio\tflush_s\treopen_s\tstore_per_arm\tcommit_ms\t"
               "refresh_one_s\trefresh_none_s\tmiss_ns\topen_cpu_s\tclose_cpu_s\n");
    else
        printf("%10s %4s %-9s %11s %10s %10s %8s %11s %11s %7s %11s %11s %10s %12s %11s %11s "
               "%9s %10s %10s\n",
               "experiments", "K", "storage", "open", "RSS/arm", "heap/arm", "id+value",
               "choose hot", "random", "ratio", "first write", "reopen", "store/arm", "commit 1",
               "refresh 1", "refresh 0", "miss", "open CPU", "close CPU");
    for (; i < argc; i++) {
        size_t n = strtoul(argv[i], NULL, 10);
        char dir[] = "/tmp/mab-bench-scale-XXXXXX";
        if (!mkdtemp(dir) || n == 0)
            return 1;
        char config[sizeof dir + 16];
        snprintf(config, sizeof config, "%s/mab.json", dir);
        if (write_config(config, dir, n, k, storage) != 0)
            return 1;
        fflush(stdout);
        /* A fresh process per count, so RSS and caches start clean. */
        pid_t pid = fork();
        if (pid == 0)
            _exit(parse_only_mode ? parse_only(config, n, k, parse_only_mode == 2)
                                  : measure(config, dir, n, k, calls, storage, tsv));
        int status = 0;
        waitpid(pid, &status, 0);
        char cmd[sizeof dir + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}
