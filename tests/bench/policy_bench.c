/*
 * policy_bench.c - mab-bench-policies: ns per mab_choose_ctx() for the
 * policies for real traffic (issue 13) at K = 10 arms, and for lin_ucb and
 * lin_igw at d = 5, 10 and 20 features, beside thompson, ucb1 and exp3
 * measured the same way in the same run.
 *
 * Each case opens an engine without storage on a config it writes to a
 * temporary file, sets a fixed clock (2026-01-02, inside discounted
 * Thompson's retention), warms the experiment up with WARMUP choices and
 * rewards (Bernoulli rewards, rate rising with the arm index; features drawn
 * from a fixed pool of 1024 standard-normal contexts), then times N choices
 * (each one a counted pull, so update() runs too) from one thread. Each
 * measurement is repeated R times and the median printed. The cost is
 * everything a host pays per choose: the snapshot of counters and
 * statistics, choose(), the pull's update().
 */
#include <errno.h>
#include <math.h>
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

#define ARMS 10
#define WARMUP 2000
#define POOL 1024
#define MAX_FEATURES 20

typedef struct bench_case {
    const char *label;
    const char *policy_json; /* members of the policy object after "plugin" */
    size_t features;
} bench_case;

static const bench_case cases[] = {
    {"ucb1", "\"plugin\": \"ucb1\"", 0},
    {"thompson", "\"plugin\": \"thompson\"", 0},
    {"thompson draws=0", "\"plugin\": \"thompson\", \"probability_draws\": 0", 0},
    {"thompson gaussian", "\"plugin\": \"thompson\", \"likelihood\": \"gaussian\"", 0},
    {"thompson gaussian draws=0",
     "\"plugin\": \"thompson\", \"likelihood\": \"gaussian\", \"probability_draws\": 0", 0},
    {"exp3", "\"plugin\": \"exp3\"", 0},
    {"exp3 srm=false", "\"plugin\": \"exp3\"", 0},
    {"kl_ucb", "\"plugin\": \"kl_ucb\"", 0},
    {"kl_ucb srm=false", "\"plugin\": \"kl_ucb\"", 0},
    {"top_two_thompson", "\"plugin\": \"top_two_thompson\"", 0},
    {"top_two_thompson draws=0",
     "\"plugin\": \"top_two_thompson\", \"probability_draws\": 0", 0},
    {"discounted_thompson", "\"plugin\": \"discounted_thompson\", \"half_life\": 3600", 0},
    {"discounted_thompson draws=0",
     "\"plugin\": \"discounted_thompson\", \"half_life\": 3600, \"probability_draws\": 0", 0},
    {"lin_ucb d=5", "\"plugin\": \"lin_ucb\"", 5},
    {"lin_ucb d=10", "\"plugin\": \"lin_ucb\"", 10},
    {"lin_ucb d=20", "\"plugin\": \"lin_ucb\"", 20},
    {"lin_igw d=5", "\"plugin\": \"lin_igw\"", 5},
    {"lin_igw d=10", "\"plugin\": \"lin_igw\"", 10},
    {"lin_igw d=20", "\"plugin\": \"lin_igw\"", 20},
};

static int64_t fixed_clock(void *ctx)
{
    return *(const int64_t *)ctx;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A small deterministic generator for the bench's own draws. */
static uint64_t bench_state = 0x9E3779B97F4A7C15ULL;
static double bench_uniform(void)
{
    bench_state ^= bench_state << 13;
    bench_state ^= bench_state >> 7;
    bench_state ^= bench_state << 17;
    return (double)(bench_state >> 11) * 0x1p-53;
}

static double pool[POOL][MAX_FEATURES];
static char feature_name_storage[MAX_FEATURES][8];
static const char *feature_names[MAX_FEATURES];

static void fill_pool(void)
{
    for (int i = 0; i < MAX_FEATURES; i++) {
        snprintf(feature_name_storage[i], sizeof feature_name_storage[i], "f%d", i);
        feature_names[i] = feature_name_storage[i];
    }
    for (int c = 0; c < POOL; c++)
        for (int i = 0; i < MAX_FEATURES; i += 2) {
            /* Box-Muller: two standard normals per pair of uniforms. */
            double u = 1.0 - bench_uniform(), v = bench_uniform();
            double r = sqrt(-2.0 * log(u));
            pool[c][i] = r * cos(2.0 * M_PI * v);
            if (i + 1 < MAX_FEATURES)
                pool[c][i + 1] = r * sin(2.0 * M_PI * v);
        }
}

static int write_config(const char *path, const bench_case *bc)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    /* The storage is named (the key is required) but never opened. */
    fprintf(f, "{\"plugin_path\": [\"%s\"], \"seed\": 1,\n"
               " \"storage\": {\"plugin\": \"json_file\", \"path\": \"unused.json\"},\n"
               " \"experiments\": {\"e\": {\"policy\": {%s",
            MAB_BENCH_PLUGIN_DIR, bc->policy_json);
    if (bc->features) {
        fprintf(f, ", \"features\": [");
        for (size_t i = 0; i < bc->features; i++)
            fprintf(f, "%s\"f%zu\"", i ? ", " : "", i);
        fprintf(f, "]");
    }
    fprintf(f, "},\n  \"arms\": {");
    for (int a = 0; a < ARMS; a++)
        fprintf(f, "%s\"a%d\": %d", a ? ", " : "", a, a);
    /* A label ending in "srm=false" turns the sample-ratio ledger off: the
       check's cost is the difference from the case above it. */
    fprintf(f, "}%s}}}\n", strstr(bc->label, "srm=false") ? ", \"srm\": false" : "");
    return fclose(f);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* The timed loop, a function of its own so that callgrind can count its
   instructions alone (--toggle-collect=timed_choices). 0, or -1 on error. */
__attribute__((noinline)) int timed_choices(mab_engine *e, const bench_case *bc,
                                            uint64_t iterations);
__attribute__((noinline)) int timed_choices(mab_engine *e, const bench_case *bc,
                                            uint64_t iterations)
{
    mab_error err = {0, ""};
    for (uint64_t i = 0; i < iterations; i++) {
        mab_context ctx = {sizeof ctx, feature_names, pool[i % POOL], bc->features, 0, 0, 0, 0};
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose_ctx(e, "e", &ctx, &c, NULL, &err) != MAB_OK) {
            fprintf(stderr, "mab-bench-policies: %s: %s\n", bc->label, err.message);
            return -1;
        }
    }
    return 0;
}

/* Median ns per choose over `repeat` runs of `iterations`, or -1. */
static double run_case(const char *config, const bench_case *bc, uint64_t iterations,
                       unsigned repeat)
{
    mab_engine *e = NULL;
    mab_error err = {0, ""};
    mab_options open_opts = {.struct_size = sizeof open_opts,
                             .flags = MAB_OPEN_NO_STORAGE | MAB_OPEN_SEED, .seed = 1};
    if (write_config(config, bc) != 0 || mab_open_ex(config, &open_opts, &e, &err) != MAB_OK) {
        fprintf(stderr, "mab-bench-policies: %s: %s\n", bc->label, err.message);
        return -1.0;
    }
    int64_t now = (1767225600LL + 86400LL) * 1000000000LL;
    mab_set_clock(e, fixed_clock, &now, &err);
    for (int i = 0; i < WARMUP; i++) {
        mab_context ctx = {sizeof ctx, feature_names, pool[i % POOL], bc->features, 0, 0, 0, 0};
        mab_choice c = MAB_STRUCT_INIT(mab_choice);
        if (mab_choose_ctx(e, "e", &ctx, &c, NULL, &err) != MAB_OK) {
            fprintf(stderr, "mab-bench-policies: %s: %s\n", bc->label, err.message);
            mab_close(e, NULL);
            return -1.0;
        }
        if (bench_uniform() < 0.02 + 0.01 * (double)c.arm_index) {
            ctx.probability = c.probability;
            if (mab_reward_ctx(e, "e", c.arm_id, 1.0, &ctx, &err) != MAB_OK) {
                fprintf(stderr, "mab-bench-policies: %s: %s\n", bc->label, err.message);
                mab_close(e, NULL);
                return -1.0;
            }
        }
    }
    double runs[1000];
    for (unsigned r = 0; r < repeat; r++) {
        double start = now_seconds();
        if (timed_choices(e, bc, iterations) != 0) {
            mab_close(e, NULL);
            return -1.0;
        }
        runs[r] = (now_seconds() - start) * 1e9 / (double)iterations;
    }
    mab_close(e, NULL);
    qsort(runs, repeat, sizeof runs[0], cmp_double);
    return runs[repeat / 2];
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

static void usage(FILE *out)
{
    fprintf(out, "usage: mab-bench-policies [--iterations N] [--repeat R] [--case I]\n"
                 "\n"
                 "ns per mab_choose_ctx() at K = 10 arms, one thread, median of R runs of N\n"
                 "choices (defaults 20000 and 3), for the policies of issue 13 (lin_ucb and\n"
                 "lin_igw at d = 5, 10, 20) beside ucb1, thompson and exp3.\n"
                 "\n"
                 "  --case I   run only the I-th case (1-based; for callgrind, whose\n"
                 "             --toggle-collect=timed_choices counts the timed loop alone)\n");
}

int main(int argc, char **argv)
{
    uint64_t iterations = 20000, repeat = 3, only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        uint64_t *target = strcmp(argv[i], "--iterations") == 0 ? &iterations
                           : strcmp(argv[i], "--repeat") == 0   ? &repeat
                           : strcmp(argv[i], "--case") == 0     ? &only
                                                                : NULL;
        if (!target || i + 1 == argc || !parse_count(argv[i + 1], target) ||
            (target == &repeat && repeat > 1000) ||
            (target == &only && only > sizeof cases / sizeof cases[0])) {
            usage(stderr);
            return 2;
        }
        i++;
    }
    fill_pool();
    const char *tmp = getenv("TMPDIR");
    char config[4096];
    snprintf(config, sizeof config, "%s/mab-bench-policies-%ld.json", tmp ? tmp : "/tmp",
             (long)getpid());
    printf("%-30s %12s\n", "policy (K = 10)", "ns/choose");
    int status = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (only && k + 1 != only)
            continue;
        double ns = run_case(config, &cases[k], iterations, (unsigned)repeat);
        if (ns < 0) {
            status = 1;
            continue;
        }
        printf("%-30s %12.0f\n", cases[k].label, ns);
        fflush(stdout);
    }
    unlink(config);
    return status;
}
