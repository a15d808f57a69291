/*
 * mab_bench_calls.c - one policy, one experiment, N calls of choose and N of
 * reward, for counting instructions per call with callgrind (the machine is
 * shared and noisy; instruction counts are not):
 *
 *   valgrind --tool=callgrind --toggle-collect=choose_loop \
 *       --callgrind-out-file=choose.out mab-bench-calls epsilon_greedy 10 20000 string
 *
 * counts only what choose_loop() runs: N calls of mab_choose() (or, with
 * "handle", of mab_choose_h()) and nothing else; reward_loop() likewise.
 * Divide the total by N. The engine is warmed up first (means differ, as in
 * a running experiment), through mab_choose_ctx and mab_reward_ctx, so that
 * --toggle-collect=mab_choose_h (mab_choose, mab_reward_h, mab_reward)
 * counts the library call alone, N times (tests/bench/floor_callgrind.sh).
 * exp3's rewards carry a probability (1/K) in a mab_context: its rewards go
 * through mab_reward_h and mab_reward_ctx. It also prints the thread CPU time per call of each
 * loop ("choose_cpu_ns reward_cpu_ns"), which a loaded machine disturbs much
 * less than wall time: run two builds alternately and compare medians.
 * It builds against libmab 0.1 as well (without the handle path), so that
 * the build before 0.2 can be measured with the same program:
 * cc -O2 mab_bench_calls.c -I<0.1 include> -L<0.1 lib> -lmab.
 * MAB_BENCH_RULES, when set, is added to the experiment's keys, e.g.
 * MAB_BENCH_RULES='"attribution_window": 86400' (docs/benchmarks.md).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkstemps */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mab/mab.h"

#ifdef MAB_STRUCT_INIT
#define CHOICE_INIT MAB_STRUCT_INIT(mab_choice)
#define HAVE_HANDLES 1
#else
#define CHOICE_INIT {0, NULL, NULL, 0}
#define HAVE_HANDLES 0
#endif

#ifndef MAB_BENCH_PLUGIN_DIR
#define MAB_BENCH_PLUGIN_DIR "."
#endif

static mab_engine *engine;
static const char *arm_ids[100];
static size_t n_arms;
#if HAVE_HANDLES
static mab_handle handle;
/* Policies whose update needs each reward's probability (ABI 2's exp3):
   rewards go through mab_reward_h / mab_reward_ctx with a context. */
static int with_probability;
static mab_context reward_ctx;
#endif

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int fail(const mab_error *err)
{
    fprintf(stderr, "mab-bench-calls: %s\n", err->message);
    return 1;
}

__attribute__((noinline, noclone)) static int choose_loop(long n, int by_handle, mab_error *err)
{
    (void)by_handle;
    for (long i = 0; i < n; i++) {
        mab_choice c = CHOICE_INIT;
#if HAVE_HANDLES
        int rc = by_handle ? mab_choose_h(engine, handle, NULL, &c, err)
                           : mab_choose(engine, "e", &c, err);
#else
        int rc = mab_choose(engine, "e", &c, err);
#endif
        if (rc != MAB_OK)
            return rc;
    }
    return MAB_OK;
}

__attribute__((noinline, noclone)) static int reward_loop(long n, int by_handle, mab_error *err)
{
    (void)by_handle;
    size_t a = 0;
    for (long i = 0; i < n; i++) {
#if HAVE_HANDLES
        int rc;
        if (with_probability) /* exp3: each reward carries its probability */
            rc = by_handle ? mab_reward_h(engine, handle, a, (double)(i & 1), &reward_ctx, err)
                           : mab_reward_ctx(engine, "e", arm_ids[a], (double)(i & 1),
                                            &reward_ctx, err);
        else
            rc = by_handle ? mab_reward_h(engine, handle, a, (double)(i & 1), NULL, err)
                           : mab_reward(engine, "e", arm_ids[a], (double)(i & 1), err);
#else
        int rc = mab_reward(engine, "e", arm_ids[a], (double)(i & 1), err);
#endif
        if (rc != MAB_OK)
            return rc;
        if (++a == n_arms)
            a = 0;
    }
    return MAB_OK;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[4], "string") != 0 && strcmp(argv[4], "handle") != 0)) {
        fprintf(stderr, "usage: mab-bench-calls POLICY K N string|handle\n");
        return 2;
    }
    const char *policy = argv[1];
    size_t k = strtoul(argv[2], NULL, 10);
    long n = strtol(argv[3], NULL, 10);
    int by_handle = strcmp(argv[4], "handle") == 0;
    if (k < 1 || k > 100 || n < 1 || (by_handle && !HAVE_HANDLES)) {
        fprintf(stderr, "mab-bench-calls: K in 1..100, N > 0, handle needs libmab >= 0.2\n");
        return 2;
    }
    const char *plugin_dir = getenv("MAB_BENCH_PLUGIN_DIR");
    /* MAB_BENCH_POLICY: more members of the policy object, e.g.
       "\"probability_draws\": 0" (floor_callgrind.sh's thompson). */
    const char *policy_extra = getenv("MAB_BENCH_POLICY");
    char path[] = "/tmp/mab-bench-calls-XXXXXX.json";
    int fd = mkstemps(path, 5);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f)
        return 1;
    fprintf(f, "{\"plugin_path\": [\"%s\"], \"seed\": 1, \"storage\": {\"plugin\": \"json_file\","
               " \"path\": \"unused.json\"}, \"experiments\": {\"e\": {\"policy\": {\"plugin\":"
               " \"%s\"%s%s}, \"arms\": {",
            plugin_dir ? plugin_dir : MAB_BENCH_PLUGIN_DIR, policy,
            policy_extra && *policy_extra ? ", " : "", policy_extra ? policy_extra : "");
    for (size_t a = 0; a < k; a++)
        fprintf(f, "%s\"a%zu\": %zu", a ? ", " : "", a, a);
    const char *rules = getenv("MAB_BENCH_RULES");
    fprintf(f, "}%s%s}}}\n", rules && *rules ? ", " : "", rules ? rules : "");
    fclose(f);
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE, 0};
    mab_error err = {0, ""};
    int rc = mab_open_ex(path, &opts, &engine, &err);
    unlink(path);
    if (rc != MAB_OK)
        return fail(&err);
    /* The arm ids, from choices of every arm (mab_stats' struct differs
       between versions; mab_arm_lookup's answer is all this needs). */
    for (size_t a = 0; a < k; a++) {
        char id[16];
        snprintf(id, sizeof id, "a%zu", a);
        mab_choice c = CHOICE_INIT;
        if (mab_arm_lookup(engine, "e", id, &c, &err) != MAB_OK)
            return fail(&err);
        arm_ids[a] = c.arm_id;
    }
    n_arms = k;
#if HAVE_HANDLES
    if (mab_experiment_handle(engine, "e", &handle, &err) != MAB_OK)
        return fail(&err);
    with_probability = strcmp(policy, "exp3") == 0;
    reward_ctx = (mab_context)MAB_STRUCT_INIT(mab_context);
    reward_ctx.probability = 1.0 / (double)k;
#endif
    /* Warm up: arm a rewarded with probability about (a + 1) / (K + 1). */
    unsigned long long lcg = 12345;
    for (size_t i = 0; i < 50 * k; i++) {
        mab_choice c = CHOICE_INIT;
#if HAVE_HANDLES
        /* Through the _ctx calls, so that --toggle-collect=mab_choose (or
           mab_reward, mab_choose_h, mab_reward_h) counts the loops alone. */
        mab_context wctx = MAB_STRUCT_INIT(mab_context);
        if (mab_choose_ctx(engine, "e", NULL, &c, NULL, &err) != MAB_OK)
            return fail(&err);
        wctx.probability = c.probability;
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(lcg >> 11) * 0x1.0p-53;
        if (u * (double)(k + 1) < (double)(c.arm_index + 1) &&
            mab_reward_ctx(engine, "e", c.arm_id, 1.0, with_probability ? &wctx : NULL, &err) !=
                MAB_OK)
            return fail(&err);
#else
        if (mab_choose(engine, "e", &c, &err) != MAB_OK)
            return fail(&err);
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(lcg >> 11) * 0x1.0p-53;
        if (u * (double)(k + 1) < (double)(c.arm_index + 1) &&
            mab_reward(engine, "e", c.arm_id, 1.0, &err) != MAB_OK)
            return fail(&err);
#endif
    }
    double t0 = cpu_ns();
    if (choose_loop(n, by_handle, &err) != MAB_OK)
        return fail(&err);
    double t1 = cpu_ns();
    if (reward_loop(n, by_handle, &err) != MAB_OK)
        return fail(&err);
    double t2 = cpu_ns();
    printf("%.1f %.1f\n", (t1 - t0) / (double)n, (t2 - t1) / (double)n);
    if (mab_close(engine, &err) != MAB_OK)
        return fail(&err);
    return 0;
}
