/*
 * mab_bench_threads.c - CPU time per choose and per reward at 1, 2 and 64
 * threads (issue 18: "choose and reward scale to 16 threads at least 12x one
 * thread"; this machine has 2 cores, so what is shown is that the work per
 * operation does not grow with threads: no shared write per operation).
 *
 *   mab-bench-threads [--policy NAME] [--ops N] [--repeat R] [THREADS...]
 *
 * For each thread count T (default 1 2 64): one engine without storage, one
 * experiment of 10 arms, warmed up; T threads start together and each runs
 * N choose calls (then N reward calls) through the handle path, then the
 * same through the string API, reading its own CLOCK_THREAD_CPUTIME_ID
 * around each loop. The figure is the CPU time of all threads summed,
 * divided by the operations of all threads (T N): the CPU each operation
 * costs, whatever the machine's cores and load do to wall time. Flat across
 * T means no operation waits on, or bounces, a cache line another thread
 * writes per operation. Median of R runs. Prints a markdown table.
 *
 * The control: the same runs with an engine per thread (nothing of the
 * library shared between threads at all). What grows with T there is the
 * machine (cores shared with other work, caches refilled after each context
 * switch), not the library; the ratio "one engine / an engine per thread"
 * at the same T is what sharing one engine costs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkstemps */
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mab/mab.h"

#ifndef MAB_BENCH_PLUGIN_DIR
#define MAB_BENCH_PLUGIN_DIR "."
#endif

#define ARMS 10
#define MAX_THREADS 256
#define MAX_REPEAT 31

enum { CHOOSE_H, REWARD_H, CHOOSE_S, REWARD_S, N_OPS };
static const char *op_names[N_OPS] = {"choose, handle", "reward, handle", "choose, string",
                                      "reward, string"};

static long ops_per_thread;
static pthread_barrier_t start;

typedef struct worker {
    pthread_t thread;
    unsigned index;
    mab_engine *engine;
    mab_handle handle;
    double cpu_ns[N_OPS];
    int rc;
    mab_error err;
} worker;

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *run(void *arg)
{
    worker *w = arg;
    mab_engine *engine = w->engine;
    mab_handle handle = w->handle;
    char arm_ids[ARMS][8];
    for (int a = 0; a < ARMS; a++)
        snprintf(arm_ids[a], sizeof arm_ids[a], "a%d", a);
    pthread_barrier_wait(&start);
    double t = thread_cpu_ns();
    for (long i = 0; i < ops_per_thread && w->rc == MAB_OK; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        w->rc = mab_choose_h(engine, handle, NULL, &c, &w->err);
    }
    double t1 = thread_cpu_ns();
    w->cpu_ns[CHOOSE_H] = t1 - t;
    size_t a = w->index % ARMS;
    for (long i = 0; i < ops_per_thread && w->rc == MAB_OK; i++) {
        w->rc = mab_reward_h(engine, handle, a, (double)(i & 1), NULL, &w->err);
        if (++a == ARMS)
            a = 0;
    }
    double t2 = thread_cpu_ns();
    w->cpu_ns[REWARD_H] = t2 - t1;
    for (long i = 0; i < ops_per_thread && w->rc == MAB_OK; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        w->rc = mab_choose(engine, "e", &c, &w->err);
    }
    double t3 = thread_cpu_ns();
    w->cpu_ns[CHOOSE_S] = t3 - t2;
    for (long i = 0; i < ops_per_thread && w->rc == MAB_OK; i++) {
        w->rc = mab_reward(engine, "e", arm_ids[a], (double)(i & 1), &w->err);
        if (++a == ARMS)
            a = 0;
    }
    w->cpu_ns[REWARD_S] = thread_cpu_ns() - t3;
    return NULL;
}

static int open_engine(const char *policy, mab_engine **out, mab_handle *out_handle,
                       mab_error *err)
{
    mab_engine *engine;
    mab_handle handle;
    const char *plugin_dir = getenv("MAB_BENCH_PLUGIN_DIR");
    char path[] = "/tmp/mab-bench-threads-XXXXXX.json";
    int fd = mkstemps(path, 5);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f)
        return mab_error_set(err, MAB_EIO, "cannot write a config in /tmp");
    fprintf(f, "{\"plugin_path\": [\"%s\"], \"seed\": 1, \"storage\": {\"plugin\": \"json_file\","
               " \"path\": \"unused.json\"}, \"experiments\": {\"e\": {\"policy\": {\"plugin\":"
               " \"%s\"}, \"arms\": {",
            plugin_dir ? plugin_dir : MAB_BENCH_PLUGIN_DIR, policy);
    for (int a = 0; a < ARMS; a++)
        fprintf(f, "%s\"a%d\": %d", a ? ", " : "", a, a);
    fputs("}}}}\n", f);
    fclose(f);
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    int rc = mab_open_ex(path, &opts, &engine, err);
    unlink(path);
    if (rc != MAB_OK)
        return rc;
    *out = engine;
    if ((rc = mab_experiment_handle(engine, "e", &handle, err)) != MAB_OK)
        return rc;
    *out_handle = handle;
    /* Warm up from this thread: means differ, as in a running experiment. */
    for (int i = 0; i < 50 * ARMS; i++) {
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if ((rc = mab_choose_h(engine, handle, NULL, &c, err)) != MAB_OK)
            return rc;
        if (i % (ARMS + 1) <= (int)c.arm_index &&
            (rc = mab_reward_h(engine, handle, c.arm_index, 1.0, NULL, err)) != MAB_OK)
            return rc;
    }
    return MAB_OK;
}

/* CPU ns per operation of each kind with T threads, one run: all threads
   on one engine, or (separate) each on its own. */
static int one_run(const char *policy, unsigned threads, int separate, double per_op[N_OPS],
                   mab_error *err)
{
    worker *w = calloc(threads, sizeof *w);
    if (!w)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    int rc = MAB_OK;
    for (unsigned i = 0; i < threads && rc == MAB_OK; i++) {
        if (i == 0 || separate) {
            rc = open_engine(policy, &w[i].engine, &w[i].handle, err);
        } else {
            w[i].engine = w[0].engine;
            w[i].handle = w[0].handle;
        }
    }
    if (rc != MAB_OK) {
        fprintf(stderr, "mab-bench-threads: %s\n", err->message);
        exit(1);
    }
    pthread_barrier_init(&start, NULL, threads);
    unsigned started = 0;
    for (; started < threads; started++) {
        w[started].index = started;
        if (pthread_create(&w[started].thread, NULL, run, &w[started]) != 0)
            break;
    }
    if (started < threads) {
        /* The barrier waits for all: without every thread there is no run. */
        fprintf(stderr, "mab-bench-threads: cannot start %u threads\n", threads);
        exit(1);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(w[i].thread, NULL);
    pthread_barrier_destroy(&start);
    for (int op = 0; op < N_OPS; op++)
        per_op[op] = 0;
    for (unsigned i = 0; i < threads; i++) {
        if (w[i].rc != MAB_OK && rc == MAB_OK) {
            rc = w[i].rc;
            *err = w[i].err;
        }
        for (int op = 0; op < N_OPS; op++)
            per_op[op] += w[i].cpu_ns[op];
    }
    for (int op = 0; op < N_OPS; op++)
        per_op[op] /= (double)threads * (double)ops_per_thread;
    for (unsigned i = 0; i < threads; i++) {
        mab_error close_err;
        if ((i == 0 || separate) && mab_close(w[i].engine, &close_err) != MAB_OK &&
            rc == MAB_OK) {
            rc = MAB_EIO;
            *err = close_err;
        }
    }
    free(w);
    return rc;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *policy = "epsilon_greedy";
    long repeat = 5;
    ops_per_thread = 200000;
    unsigned counts[16];
    size_t n_counts = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            ops_per_thread = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = strtol(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && n_counts < 16)
            counts[n_counts++] = (unsigned)strtoul(argv[i], NULL, 10);
        else {
            fprintf(stderr, "usage: mab-bench-threads [--policy NAME] [--ops N] [--repeat R] "
                            "[THREADS...]\n");
            return 2;
        }
    }
    if (!n_counts) {
        counts[n_counts++] = 1;
        counts[n_counts++] = 2;
        counts[n_counts++] = 64;
    }
    if (ops_per_thread < 1 || repeat < 1 || repeat > MAX_REPEAT) {
        fprintf(stderr, "mab-bench-threads: --ops > 0, --repeat in 1..%d\n", MAX_REPEAT);
        return 2;
    }
    for (size_t c = 0; c < n_counts; c++)
        if (counts[c] < 1 || counts[c] > MAX_THREADS) {
            fprintf(stderr, "mab-bench-threads: threads in 1..%d\n", MAX_THREADS);
            return 2;
        }
    double median[2][16][N_OPS];
    for (int separate = 0; separate < 2; separate++)
        for (size_t c = 0; c < n_counts; c++) {
            double runs[N_OPS][MAX_REPEAT];
            for (long r = 0; r < repeat; r++) {
                double per_op[N_OPS] = {0};
                mab_error err = {0, ""};
                if (one_run(policy, counts[c], separate, per_op, &err) != MAB_OK) {
                    fprintf(stderr, "mab-bench-threads: %s\n", err.message);
                    return 1;
                }
                for (int op = 0; op < N_OPS; op++)
                    runs[op][r] = per_op[op];
            }
            for (int op = 0; op < N_OPS; op++) {
                qsort(runs[op], (size_t)repeat, sizeof runs[op][0], by_value);
                median[separate][c][op] = runs[op][repeat / 2];
            }
        }
    printf("%s, K = %d, engine without storage, %ld operations per thread, CPU ns per "
           "operation (all threads' CPU time / all operations), median of %ld runs; "
           "\"own\": every thread on an engine of its own (the control):\n\n",
           policy, ARMS, ops_per_thread, repeat);
    printf("| operation |");
    for (size_t c = 0; c < n_counts; c++)
        printf(" %u thread%s | own |", counts[c], counts[c] == 1 ? "" : "s");
    printf(" %u / %u threads | own |\n|---|", counts[n_counts - 1], counts[0]);
    for (size_t c = 0; c <= n_counts; c++)
        printf("---:|---:|");
    printf("\n");
    for (int op = 0; op < N_OPS; op++) {
        printf("| %s |", op_names[op]);
        for (size_t c = 0; c < n_counts; c++)
            printf(" %.1f | %.1f |", median[0][c][op], median[1][c][op]);
        printf(" %.2f | %.2f |\n", median[0][n_counts - 1][op] / median[0][0][op],
               median[1][n_counts - 1][op] / median[1][0][op]);
    }
    return 0;
}
