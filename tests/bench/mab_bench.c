/*
 * mab_bench.c - how long mab_choose() and mab_reward() take.
 *
 * For each policy (epsilon_greedy, softmax, ucb1, thompson with
 * probability_draws 0) and K = 2, 10, 100 arms, it opens an engine without
 * storage on a config it writes to a temporary file, warms the experiment
 * up with rewards so that means differ,
 * then times N calls of mab_choose (each counts a pull) and N calls of
 * mab_reward, from 1 thread and from 2 threads on the same experiment. Each
 * measurement is repeated R times and the median printed.
 *
 * "ns/op" is wall time divided by the calls made by all threads together
 * (the inverse of throughput); "2t/1t" is the 2-thread throughput over the
 * 1-thread throughput, 2.0 being perfect scaling.
 *
 * With --storage it measures instead mab_reward with the json_file storage
 * plugin, at sync "always" (each call returns once its reward is durable;
 * concurrent callers share an fsync) and at {"interval_ms": 1000} (rewards
 * batched in memory, written by a background thread), from 1 and 2 threads.
 * --tsv prints tab-separated rows for scripts (scripts/bench).
 *
 * With --handle choose and reward go through the handle fast path (mab.h:
 * the experiment looked up once by mab_experiment_handle(), then
 * mab_choose_h() and mab_reward_h() by arm index) instead of the string
 * API; the rows are the same, so the two runs compare side by side.
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

#define MAX_THREADS 2
#define EXPERIMENT "e"

typedef struct bench_policy {
    const char *name;
    const char *params_json; /* extra members of the policy object */
} bench_policy;

static const bench_policy policies[] = {
    {"epsilon_greedy", ", \"epsilon\": 0.1"},
    {"softmax", ", \"tau\": 0.1"},
    {"ucb1", ""},
    /* The choice's cost (issue 2's target): without the Monte Carlo
       probability, whose 256 draws per choose by default are measured by
       mab-bench-policies (docs/benchmarks.md). */
    {"thompson", ", \"probability_draws\": 0"},
};
static const size_t arm_counts[] = {2, 10, 100};

typedef struct bench_options {
    const char *plugin_dir;
    uint64_t iterations;
    uint64_t durable_iterations; /* per thread, for sync "always" */
    unsigned repeat;
    bool storage;
    bool tsv;
    bool handle;
} bench_options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mab-bench [--iterations N] [--repeat R] [--plugin-dir DIR]\n"
            "                 [--storage [--durable-iterations N]] [--handle] [--tsv]\n"
            "\n"
            "Time mab_choose and mab_reward for every policy at K = 2, 10, 100 arms,\n"
            "from 1 and 2 threads on one experiment, and print the median of R runs.\n"
            "\n"
            "  --iterations N   calls per thread and measurement (default 1000000)\n"
            "  --repeat R       runs per measurement (default 5)\n"
            "  --plugin-dir DIR where the plugins are (default %s)\n"
            "  --storage        time mab_reward with json_file storage instead, at sync\n"
            "                   \"always\" and {\"interval_ms\": 1000}, in $TMPDIR or /tmp\n"
            "  --durable-iterations N  calls per thread at sync \"always\" (default 2000)\n"
            "  --handle         choose and reward by handle and arm index (mab_choose_h,\n"
            "                   mab_reward_h) instead of by experiment and arm id\n"
            "  --tsv            tab-separated rows instead of a table\n",
            MAB_BENCH_PLUGIN_DIR);
}

static bool parse_count(const char *s, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE || v == 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* 0 to run, 1 on --help, 2 on a usage error. */
static int parse_options(int argc, char **argv, bench_options *opts)
{
    opts->plugin_dir = MAB_BENCH_PLUGIN_DIR;
    opts->iterations = 1000000;
    opts->durable_iterations = 2000;
    opts->repeat = 5;
    opts->storage = false;
    opts->tsv = false;
    opts->handle = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--storage") == 0 || strcmp(arg, "--tsv") == 0) {
            *(strcmp(arg, "--tsv") == 0 ? &opts->tsv : &opts->storage) = true;
            continue;
        }
        if (strcmp(arg, "--handle") == 0) {
            opts->handle = true;
            continue;
        }
        bool known = strcmp(arg, "--iterations") == 0 || strcmp(arg, "--repeat") == 0 ||
                     strcmp(arg, "--plugin-dir") == 0 || strcmp(arg, "--durable-iterations") == 0;
        if (!known) {
            fprintf(stderr, "mab-bench: unknown argument '%s'\n", arg);
            usage(stderr);
            return 2;
        }
        if (i + 1 == argc) {
            fprintf(stderr, "mab-bench: %s needs a value\n", arg);
            usage(stderr);
            return 2;
        }
        const char *value = argv[++i];
        uint64_t n;
        if (strcmp(arg, "--plugin-dir") == 0) {
            opts->plugin_dir = value;
        } else if (!parse_count(value, &n) || (strcmp(arg, "--repeat") == 0 && n > 1000)) {
            fprintf(stderr, "mab-bench: %s '%s' is not a positive count\n", arg, value);
            usage(stderr);
            return 2;
        } else if (strcmp(arg, "--iterations") == 0) {
            opts->iterations = n;
        } else if (strcmp(arg, "--durable-iterations") == 0) {
            opts->durable_iterations = n;
        } else {
            opts->repeat = (unsigned)n;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The temporary config                                                */

static void write_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Write the config for one policy and K arms into a fresh temporary file
   whose name is put in path (size >= 64). sync_json: the storage's "sync"
   value, or NULL for none. */
static bool write_config(const bench_options *opts, const bench_policy *policy, size_t k,
                         const char *sync_json, char *path, size_t path_size)
{
    const char *tmpdir = getenv("TMPDIR");
    snprintf(path, path_size, "%s/mab-bench-XXXXXX.json", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemps(path, 5);
    if (fd < 0) {
        fprintf(stderr, "mab-bench: cannot create %s: %s\n", path, strerror(errno));
        return false;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return false;
    }
    fputs("{\"plugin_path\": [", f);
    write_json_string(f, opts->plugin_dir);
    /* Opened without storage unless sync_json is given. */
    fputs("], \"seed\": 1,\n \"storage\": {\"plugin\": \"json_file\", \"path\": ", f);
    char store[4200];
    snprintf(store, sizeof store, "%s.state", path);
    write_json_string(f, store);
    if (sync_json)
        fprintf(f, ", \"sync\": %s", sync_json);
    fprintf(f, "},\n \"experiments\": {\"" EXPERIMENT "\": {\"policy\": {\"plugin\": \"%s\"%s},\n",
            policy->name, policy->params_json);
    fputs("  \"arms\": {", f);
    for (size_t a = 0; a < k; a++)
        fprintf(f, "%s\"a%zu\": %zu", a ? ", " : "", a, a);
    fputs("}}}}\n", f);
    bool ok = !ferror(f);
    if (fclose(f) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "mab-bench: cannot write %s\n", path);
        unlink(path);
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* Timing                                                              */

typedef enum { OP_CHOOSE, OP_REWARD } bench_op;

typedef struct worker {
    mab_engine *engine;
    const mab_handle *handle; /* NULL: the string API */
    bench_op op;
    uint64_t iterations;
    char **arm_ids;
    size_t n_arms;
    unsigned thread_index;
    pthread_barrier_t *start;
    int status;
    mab_error err;
    double t0, t1; /* when this thread started and finished its calls */
} worker;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The calls of one thread. */
static void worker_calls(worker *w)
{
    if (w->op == OP_CHOOSE && w->handle) {
        for (uint64_t i = 0; i < w->iterations; i++) {
            mab_choice choice = MAB_STRUCT_INIT(mab_choice);
            if ((w->status = mab_choose_h(w->engine, *w->handle, NULL, &choice, &w->err)) !=
                MAB_OK)
                break;
        }
    } else if (w->op == OP_CHOOSE) {
        for (uint64_t i = 0; i < w->iterations; i++) {
            mab_choice choice = MAB_STRUCT_INIT(mab_choice);
            if ((w->status = mab_choose(w->engine, EXPERIMENT, &choice, &w->err)) != MAB_OK)
                break;
        }
    } else if (w->handle) {
        size_t a = w->thread_index * (w->n_arms / 2);
        for (uint64_t i = 0; i < w->iterations; i++) {
            double value = (double)(i & 1);
            if ((w->status = mab_reward_h(w->engine, *w->handle, a, value, NULL, &w->err)) !=
                MAB_OK)
                break;
            if (++a == w->n_arms)
                a = 0;
        }
    } else {
        /* Threads start at different arms so they do not always share one. */
        size_t a = w->thread_index * (w->n_arms / 2);
        for (uint64_t i = 0; i < w->iterations; i++) {
            double value = (double)(i & 1);
            if ((w->status = mab_reward(w->engine, EXPERIMENT, w->arm_ids[a], value, &w->err)) !=
                MAB_OK)
                break;
            if (++a == w->n_arms)
                a = 0;
        }
    }
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    w->t0 = now_ns();
    w->status = MAB_OK;
    worker_calls(w);
    w->t1 = now_ns();
    return NULL;
}

/* Run one measurement: ns per call over all threads, or a negative value. */
static double time_once(mab_engine *engine, const mab_handle *handle, bench_op op,
                        unsigned n_threads, uint64_t iterations, char **arm_ids, size_t n_arms)
{
    pthread_barrier_t start;
    pthread_t threads[MAX_THREADS];
    worker workers[MAX_THREADS];
    unsigned started = 0;

    pthread_barrier_init(&start, NULL, n_threads + 1);
    for (unsigned t = 0; t < n_threads; t++) {
        workers[t] = (worker){.engine = engine, .handle = handle, .op = op,
                              .iterations = iterations,
                              .arm_ids = arm_ids, .n_arms = n_arms, .thread_index = t,
                              .start = &start};
        if (pthread_create(&threads[t], NULL, worker_run, &workers[t]) != 0) {
            fprintf(stderr, "mab-bench: cannot start a thread\n");
            exit(1); /* the barrier would wait for it forever */
        }
        started++;
    }
    pthread_barrier_wait(&start);
    for (unsigned t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);
    /* From the first thread's start to the last one's end, as the threads
       saw them: on a loaded machine this thread may run again long after
       the barrier let the workers go. */
    double first = workers[0].t0, last = workers[0].t1;
    for (unsigned t = 1; t < started; t++) {
        first = workers[t].t0 < first ? workers[t].t0 : first;
        last = workers[t].t1 > last ? workers[t].t1 : last;
    }
    double elapsed = last - first;

    for (unsigned t = 0; t < started; t++) {
        if (workers[t].status != MAB_OK) {
            fprintf(stderr, "mab-bench: %s\n", workers[t].err.message);
            return -1;
        }
    }
    return elapsed / ((double)iterations * n_threads);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double time_median(mab_engine *engine, const mab_handle *handle, bench_op op,
                          unsigned n_threads, const bench_options *opts, uint64_t iterations,
                          char **arm_ids, size_t n_arms)
{
    double *runs = malloc(opts->repeat * sizeof *runs);
    if (!runs)
        return -1;
    for (unsigned r = 0; r < opts->repeat; r++) {
        runs[r] = time_once(engine, handle, op, n_threads, iterations, arm_ids, n_arms);
        if (runs[r] < 0) {
            free(runs);
            return -1;
        }
    }
    qsort(runs, opts->repeat, sizeof *runs, compare_doubles);
    double median = opts->repeat % 2 ? runs[opts->repeat / 2]
                                     : (runs[opts->repeat / 2 - 1] + runs[opts->repeat / 2]) / 2;
    free(runs);
    return median;
}

/*
 * Pull and reward so that arm means differ (arm a clicks with probability
 * about (a + 1) / (K + 1)), as in a running experiment: a policy on all-zero
 * statistics can take shortcuts it would not take in production.
 */
static int warm_up(mab_engine *engine, size_t k, mab_error *err)
{
    uint64_t lcg = 12345;
    for (size_t i = 0; i < 50 * k; i++) {
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        int rc = mab_choose(engine, EXPERIMENT, &choice, err);
        if (rc != MAB_OK)
            return rc;
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(lcg >> 11) * 0x1.0p-53;
        if (u * (double)(k + 1) < (double)(choice.arm_index + 1) &&
            (rc = mab_reward(engine, EXPERIMENT, choice.arm_id, 1.0, err)) != MAB_OK)
            return rc;
    }
    return MAB_OK;
}

typedef struct bench_row {
    double choose_ns[MAX_THREADS];
    double reward_ns[MAX_THREADS];
} bench_row;

static int bench_one(const bench_options *opts, const bench_policy *policy, size_t k,
                     bench_row *row)
{
    char path[4096];
    if (!write_config(opts, policy, k, NULL, path, sizeof path))
        return 1;

    mab_options open_opts = {.struct_size = sizeof open_opts,
                             .flags = MAB_OPEN_NO_STORAGE | MAB_OPEN_SEED, .seed = 1};
    mab_engine *engine = NULL;
    mab_error err = {0};
    int rc = mab_open_ex(path, &open_opts, &engine, &err);
    unlink(path);
    if (rc != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        return 1;
    }

    int status = 0;
    mab_arm_stats *stats = calloc(k, sizeof *stats);
    char **arm_ids = calloc(k, sizeof *arm_ids);
    size_t n_arms = 0;
    if (stats)
        stats[0].struct_size = sizeof *stats;
    if (!stats || !arm_ids) {
        fprintf(stderr, "mab-bench: out of memory\n");
        status = 1;
    } else if (mab_stats(engine, EXPERIMENT, stats, k, &n_arms, &err) != MAB_OK ||
               warm_up(engine, k, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        status = 1;
    }
    for (size_t a = 0; status == 0 && a < k; a++)
        arm_ids[a] = (char *)stats[a].arm_id;
    mab_handle handle;
    if (status == 0 && opts->handle &&
        mab_experiment_handle(engine, EXPERIMENT, &handle, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        status = 1;
    }
    const mab_handle *by = opts->handle ? &handle : NULL;

    for (unsigned t = 1; status == 0 && t <= MAX_THREADS; t++) {
        row->choose_ns[t - 1] =
            time_median(engine, by, OP_CHOOSE, t, opts, opts->iterations, arm_ids, k);
        row->reward_ns[t - 1] =
            time_median(engine, by, OP_REWARD, t, opts, opts->iterations, arm_ids, k);
        if (row->choose_ns[t - 1] < 0 || row->reward_ns[t - 1] < 0)
            status = 1;
    }
    free(arm_ids);
    free(stats);
    if (mab_close(engine, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        status = 1;
    }
    return status;
}

/* ------------------------------------------------------------------ */
/* Storage: mab_reward through json_file                               */

typedef struct storage_mode {
    const char *name;
    const char *sync_json;
    bool durable; /* each reward waits for its fsync */
} storage_mode;

static const storage_mode storage_modes[] = {
    {"always", "\"always\"", true},
    {"interval_ms=1000", "{\"interval_ms\": 1000}", false},
};

/* ns per reward from 1 and 2 threads for one sync mode, K = 10 arms. */
static int bench_storage(const bench_options *opts, const storage_mode *mode, double ns[2])
{
    static const bench_policy policy = {"epsilon_greedy", ", \"epsilon\": 0.1"};
    const size_t k = 10;
    char path[4096];
    if (!write_config(opts, &policy, k, mode->sync_json, path, sizeof path))
        return 1;
    mab_options open_opts = {.struct_size = sizeof open_opts, .flags = MAB_OPEN_SEED, .seed = 1};
    mab_engine *engine = NULL;
    mab_error err = {0};
    int rc = mab_open_ex(path, &open_opts, &engine, &err);
    if (rc != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        unlink(path);
        return 1;
    }
    int status = 0;
    mab_arm_stats stats[10] = {MAB_STRUCT_INIT(mab_arm_stats)};
    char *arm_ids[10];
    size_t n_arms = 0;
    if (mab_stats(engine, EXPERIMENT, stats, k, &n_arms, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        status = 1;
    }
    for (size_t a = 0; status == 0 && a < k; a++)
        arm_ids[a] = (char *)stats[a].arm_id;
    uint64_t iterations = mode->durable ? opts->durable_iterations : opts->iterations;
    for (unsigned t = 1; status == 0 && t <= MAX_THREADS; t++) {
        ns[t - 1] = time_median(engine, NULL, OP_REWARD, t, opts, iterations, arm_ids, k);
        if (ns[t - 1] < 0)
            status = 1;
    }
    if (mab_close(engine, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench: %s\n", err.message);
        status = 1;
    }
    char state[4200];
    snprintf(state, sizeof state, "%s.state", path);
    unlink(state);
    unlink(path);
    return status;
}

static int run_storage(const bench_options *opts)
{
    if (!opts->tsv) {
        printf("mab %s: mab_reward with json_file storage, K = 10; %" PRIu64
               " calls per thread (%" PRIu64 " at sync always), median of %u runs\n\n",
               mab_version(), opts->iterations, opts->durable_iterations, opts->repeat);
        printf("%-18s %14s %14s %14s %14s %6s\n", "sync", "reward 1t", "reward 2t", "rewards/s 1t",
               "rewards/s 2t", "2t/1t");
    }
    for (size_t m = 0; m < sizeof storage_modes / sizeof storage_modes[0]; m++) {
        double ns[2];
        if (bench_storage(opts, &storage_modes[m], ns) != 0)
            return 1;
        if (opts->tsv)
            printf("storage\t%s\t%.1f\t%.1f\n", storage_modes[m].name, ns[0], ns[1]);
        else
            printf("%-18s %11.1f ns %11.1f ns %14.0f %14.0f %6.2f\n", storage_modes[m].name,
                   ns[0], ns[1], 1e9 / ns[0], 1e9 / ns[1], ns[0] / ns[1]);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_options opts;
    int parsed = parse_options(argc, argv, &opts);
    if (parsed)
        return parsed == 1 ? 0 : 2;

    if (opts.storage)
        return run_storage(&opts);
    if (!opts.tsv) {
        printf("mab %s%s: %" PRIu64 " calls per thread, median of %u runs; ns/op is wall time\n"
               "per call of all threads together, 2t/1t the throughput ratio\n\n",
               mab_version(), opts.handle ? " (handle path)" : "", opts.iterations,
               opts.repeat);
        printf("%-14s %4s  %12s %12s %6s  %12s %12s %6s\n", "policy", "K", "choose 1t",
               "choose 2t", "2t/1t", "reward 1t", "reward 2t", "2t/1t");
    }
    fflush(stdout);

    for (size_t p = 0; p < sizeof policies / sizeof policies[0]; p++) {
        for (size_t i = 0; i < sizeof arm_counts / sizeof arm_counts[0]; i++) {
            bench_row row;
            if (bench_one(&opts, &policies[p], arm_counts[i], &row) != 0)
                return 1;
            if (opts.tsv)
                printf("policy\t%s\t%zu\t%.2f\t%.2f\t%.2f\t%.2f\n", policies[p].name,
                       arm_counts[i], row.choose_ns[0], row.choose_ns[1], row.reward_ns[0],
                       row.reward_ns[1]);
            else
                printf("%-14s %4zu  %9.1f ns %9.1f ns %6.2f  %9.1f ns %9.1f ns %6.2f\n",
                       policies[p].name, arm_counts[i], row.choose_ns[0], row.choose_ns[1],
                       row.choose_ns[0] / row.choose_ns[1], row.reward_ns[0],
                       row.reward_ns[1], row.reward_ns[0] / row.reward_ns[1]);
            fflush(stdout);
        }
    }
    return 0;
}
