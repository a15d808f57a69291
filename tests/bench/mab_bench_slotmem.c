/*
 * mab-bench-slotmem: what a config's experiments and the threads that use
 * it hold in memory (issue 18). It writes a config of N experiments of K
 * arms (epsilon_greedy, the sample-ratio ledger on) and opens it without
 * storage (MAB_OPEN_NO_STORAGE: every experiment keeps its history ring in
 * memory), then measures malloc's bytes in use (mallinfo2: small chunks
 * plus mmapped ones, every arena) and VmRSS at three points:
 *   open    after mab_open;
 *   warm    after one choose on every experiment and C random ones from the
 *           main thread (its slot, each experiment's ring at its first
 *           event, and the write-behind queue at its size for C chooses);
 *   threads after C random chooses (C / T each, xorshift over the N) from
 *           T new threads, each of which takes a slot of its own.
 * and prints the deltas: warm is the rings and one slot; threads is the T
 * threads' slots (what a slot holds is its rows, between two publishes).
 * --store opens a json_file store instead (it keeps time buckets, so no
 * experiment keeps a ring: the deltas are the slots alone), written every
 * hour; the bench then leaves without closing (no write of N records).
 * --no-warm skips the warm pass.
 *
 *   mab-bench-slotmem [--arms K] [--calls C] [--threads T] [--store] [--no-warm] N
 *
 * Not a test: it prints one line per run. docs/benchmarks.md records its
 * figures with the command.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mab/mab.h"
#include "bench_mem.h"

static size_t heap(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

struct worker {
    mab_engine *e;
    mab_handle *handles;
    size_t n, calls;
    uint64_t seed;
    int failed;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t x = w->seed;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (size_t i = 0; i < w->calls; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (mab_choose_h(w->e, w->handles[x % w->n], NULL, &c, NULL) != MAB_OK) {
            w->failed = 1;
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t k = 10, calls = 1000000, threads = 1, n = 0;
    int store = 0, warm = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--arms") == 0 && i + 1 < argc)
            k = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            calls = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--store") == 0)
            store = 1;
        else if (strcmp(argv[i], "--no-warm") == 0)
            warm = 0;
        else if (argv[i][0] != '-' && !n)
            n = strtoul(argv[i], NULL, 10);
        else {
            fprintf(stderr, "usage: mab-bench-slotmem [--arms K] [--calls C] [--threads T] "
                            "[--store] [--no-warm] N\n");
            return 2;
        }
    }
    if (!n || !k || !threads || threads > 64) {
        fprintf(stderr, "mab-bench-slotmem: N, K >= 1 and 1 <= T <= 64\n");
        return 2;
    }
    char dir[] = "/tmp/mab-bench-slotmem.XXXXXX", config[64];
    if (!mkdtemp(dir))
        return 1;
    snprintf(config, sizeof config, "%s/mab.json", dir);
    FILE *f = fopen(config, "w");
    if (!f)
        return 1;
    fprintf(f, "{\"seed\": 1, \"plugin_path\": [\"%s\"],\n", MAB_BENCH_PLUGIN_DIR);
    fprintf(f, " \"storage\": {\"plugin\": \"json_file\", \"path\": \"%s/state.json\", "
               "\"sync\": {\"interval_ms\": 3600000}},\n", dir);
    fputs(" \"experiments\": {\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  \"e%zu\": {\"policy\": {\"plugin\": \"epsilon_greedy\"}, \"arms\": {", i);
        for (size_t a = 0; a < k; a++)
            fprintf(f, "%s\"a%zu\": %zu", a ? ", " : "", a, a);
        fprintf(f, "}}%s\n", i + 1 < n ? "," : "");
    }
    fputs(" }\n}\n", f);
    if (fclose(f) != 0)
        return 1;

    mab_options opts = {sizeof opts, store ? 0u : MAB_OPEN_NO_STORAGE, 0};
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    size_t h0 = heap();
    long r0 = rss_kib();
    if (mab_open_ex(config, &opts, &e, &err) != MAB_OK) {
        fprintf(stderr, "mab_open: %s\n", err.message);
        return 1;
    }
    unlink(config);
    size_t h1 = heap();
    long r1 = rss_kib();
    mab_handle *handles = malloc(n * sizeof *handles);
    if (!handles)
        return 1;
    mab_choice c = MAB_STRUCT_INIT(mab_choice);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "e%zu", i);
        if (mab_experiment_handle(e, id, &handles[i], &err) != MAB_OK ||
            (warm && mab_choose_h(e, handles[i], NULL, &c, &err) != MAB_OK)) {
            fprintf(stderr, "warm: %s\n", err.message);
            return 1;
        }
    }
    struct worker main_worker = {e, handles, n, warm ? calls : 0, 0x2545f4914f6cdd1dULL, 0};
    work(&main_worker);
    if (main_worker.failed)
        return 1;
    size_t h2 = heap();
    long r2 = rss_kib();
    struct worker *w = calloc(threads, sizeof *w);
    pthread_t *t = calloc(threads, sizeof *t);
    if (!w || !t)
        return 1;
    for (size_t i = 0; i < threads; i++) {
        w[i] = (struct worker){e, handles, n, calls / threads, 0x9e3779b97f4a7c15ULL * (i + 1), 0};
        if (pthread_create(&t[i], NULL, work, &w[i]) != 0)
            return 1;
    }
    for (size_t i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "mab_choose_h failed in thread %zu\n", i);
            return 1;
        }
    }
    size_t h3 = heap();
    long r3 = rss_kib();
    double mib = 1024.0 * 1024.0;
    printf("%zu x %zu%s, %zu chooses from %zu threads: heap open %.1f MiB (%.1f B/arm), "
           "warm +%.1f MiB (%.1f B/arm), threads +%.1f MiB (%.2f MiB/thread); "
           "RSS open %.1f MiB, warm +%.1f MiB, threads +%.1f MiB\n",
           n, k, store ? " (json_file)" : " (no storage)", calls, threads,
           (double)(h1 - h0) / mib, (double)(h1 - h0) / (double)(n * k),
           (double)(h2 - h1) / mib, (double)(h2 - h1) / (double)(n * k),
           ((double)h3 - (double)h2) / mib, ((double)h3 - (double)h2) / mib / (double)threads,
           (double)(r1 - r0) / 1024.0, (double)(r2 - r1) / 1024.0, (double)(r3 - r2) / 1024.0);
    fflush(stdout);
    if (store) { /* no write of N records at close */
        char state[80];
        snprintf(state, sizeof state, "%s/state.json", dir);
        unlink(state);
        rmdir(dir);
        _exit(0);
    }
    free(w);
    free(t);
    free(handles);
    mab_close(e, NULL);
    rmdir(dir);
    return 0;
}
