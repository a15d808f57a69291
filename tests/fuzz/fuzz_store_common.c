/*
 * fuzz_store_common.c - open, use, close and reopen a planted store
 * (fuzz_store_common.h).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_store_common.h"
#include "mab/mab.h"
#include "mab/storage.h"

static int count_record(void *ctx, const mab_record *record)
{
    if (!record->experiment || !record->arm)
        abort();
    (*(size_t *)ctx)++;
    return 0;
}

#define EXPERIMENTS_MAX 8
#define ARMS_MAX 8

/* Stats of every experiment, and what this run added to them. */
typedef struct snapshot {
    size_t n_experiments;
    const char *id[EXPERIMENTS_MAX];
    size_t n_arms[EXPERIMENTS_MAX];
    mab_arm_stats stats[EXPERIMENTS_MAX][ARMS_MAX];
    int pulled[EXPERIMENTS_MAX][ARMS_MAX];   /* acknowledged pulls */
    int rewarded[EXPERIMENTS_MAX][ARMS_MAX]; /* acknowledged rewards */
} snapshot;

static void use(mab_engine *engine, snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
    size_t n = mab_experiment_count(engine);
    if (n > EXPERIMENTS_MAX)
        abort();
    snap->n_experiments = n;
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        mab_error err = {0, ""};
        if (mab_experiment_at(engine, i, &info, &err) != MAB_OK || info.n_arms > ARMS_MAX)
            abort();
        snap->id[i] = info.id;
        if (mab_stats(engine, info.id, snap->stats[i], ARMS_MAX, &snap->n_arms[i], &err) !=
            MAB_OK)
            abort();
        mab_choice choice;
        if (mab_choose(engine, info.id, &choice, &err) == MAB_OK) {
            snap->pulled[i][choice.arm_index] = 1;
            if (mab_reward(engine, info.id, choice.arm_id, info.reward_max, &err) == MAB_OK)
                snap->rewarded[i][choice.arm_index] = 1;
        }
    }
    size_t records = 0;
    mab_error err = {0, ""};
    mab_export(engine, count_record, &records, &err);
}

/* After a clean close, the store holds what was there plus what was
   acknowledged: pulls and rewards exactly. */
static void check_nothing_lost(mab_engine *engine, const snapshot *snap)
{
    for (size_t i = 0; i < snap->n_experiments; i++) {
        mab_arm_stats now[ARMS_MAX];
        size_t n_arms;
        mab_error err = {0, ""};
        if (mab_stats(engine, snap->id[i], now, ARMS_MAX, &n_arms, &err) != MAB_OK ||
            n_arms != snap->n_arms[i])
            abort();
        for (size_t a = 0; a < n_arms; a++) {
            const mab_arm_stats *was = &snap->stats[i][a];
            if (now[a].pulls != was->pulls + (uint64_t)snap->pulled[i][a] ||
                now[a].rewards != was->rewards + (uint64_t)snap->rewarded[i][a]) {
                fprintf(stderr,
                        "fuzz: %s.%s: %llu pulls and %llu rewards were stored, %d and %d were "
                        "added and acknowledged, %llu and %llu read back\n",
                        snap->id[i], now[a].arm_id, (unsigned long long)was->pulls,
                        (unsigned long long)was->rewards, snap->pulled[i][a],
                        snap->rewarded[i][a], (unsigned long long)now[a].pulls,
                        (unsigned long long)now[a].rewards);
                abort();
            }
        }
    }
}

void fuzz_store_exercise(const char *config_path)
{
    mab_engine *engine = NULL;
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_SEED, 3};
    int rc = mab_open_ex(config_path, &opts, &engine, &err);
    if (rc != MAB_OK) {
        if (rc > 0 || err.message[0] == '\0' || engine)
            abort();
        return;
    }
    static snapshot snap;
    use(engine, &snap);
    /* The ids in snap point into the engine; keep them past its close. */
    static char ids[EXPERIMENTS_MAX][256];
    for (size_t i = 0; i < snap.n_experiments; i++) {
        snprintf(ids[i], sizeof ids[i], "%s", snap.id[i]);
        snap.id[i] = ids[i];
    }
    /* An increment the store refuses as invalid (a counter already at the
       store's limit: 2^64 in LMDB, 2^53 in json_file) is dropped by the
       engine, written around and reported (mab_dropped_deltas): a reported
       loss, not a silent one, so exactness is checked only without drops. */
    int flushed = mab_flush(engine, &err);
    uint64_t dropped = mab_dropped_deltas(engine, NULL);
    int closed = mab_close(engine, &err);

    rc = mab_open_ex(config_path, &opts, &engine, &err);
    if (rc != MAB_OK) {
        fprintf(stderr, "fuzz: a store that opened, then was written by its plugin, is "
                        "refused: %s\n",
                err.message);
        abort();
    }
    if (flushed == MAB_OK && closed == MAB_OK && dropped == 0)
        check_nothing_lost(engine, &snap);
    mab_close(engine, &err);
}

/* ---- time buckets, through the plugin ---------------------------------- */

typedef struct bucket_walk {
    int64_t since, last;
    size_t n;
    int64_t want_start; /* the bucket added by the exercise */
    uint64_t want_pulls; /* its pulls when seen, else 0 */
} bucket_walk;

static void finite_or_abort(const mab_totals *add)
{
    if (!isfinite(add->reward_sum) || !isfinite(add->reward_sum_sq)) {
        fprintf(stderr, "fuzz: a bucket with a sum that is not finite was handed out\n");
        abort();
    }
}

static int scan_one(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                    const mab_totals *add)
{
    (void)bucket;
    if (!experiment || !arm)
        abort();
    finite_or_abort(add);
    (*(size_t *)ctx)++;
    return 0;
}

static int load_one(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add)
{
    bucket_walk *w = ctx;
    finite_or_abort(add);
    if (arm_index >= 3 || bucket < w->since || (w->n && bucket < w->last)) {
        fprintf(stderr, "fuzz: load_buckets since %lld visited arm %zu at %lld after %lld\n",
                (long long)w->since, arm_index, (long long)bucket, (long long)w->last);
        abort();
    }
    if (bucket == w->want_start && arm_index == 0)
        w->want_pulls += add->pulls;
    w->last = bucket;
    w->n++;
    return 0;
}

static void refused_says_why(int rc, const mab_error *err)
{
    if (rc > 0 || err->message[0] == '\0')
        abort();
}

void fuzz_store_buckets(const char *plugin_so, const char *params_json)
{
    void *handle = dlopen(plugin_so, RTLD_NOW | RTLD_LOCAL);
    const mab_storage *(*entry)(void) =
        handle ? (const mab_storage *(*)(void))dlsym(handle, "mab_storage_entry") : NULL;
    const mab_storage *p = entry ? entry() : NULL;
    if (!p)
        abort();
    if (p->abi_minor < 5 ||
        p->struct_size < offsetof(mab_storage, scan_buckets) + sizeof p->scan_buckets ||
        !p->apply_buckets || !p->load_buckets || !p->scan_buckets) {
        dlclose(handle);
        return;
    }
    mab_params *params;
    mab_error err = {0, ""};
    void *st = NULL;
    if (mab_params_parse(params_json, "storage", &params, &err) != MAB_OK)
        abort();
    int rc = p->open(params, &st, &err);
    mab_params_free(params);
    if (rc != MAB_OK) {
        refused_says_why(rc, &err);
        dlclose(handle);
        return;
    }
    size_t n = 0;
    rc = p->scan_buckets(st, scan_one, &n, &err);
    if (rc != MAB_OK)
        refused_says_why(rc, &err);
    const char *arms[] = {"green", "red", "blue"};
    const int64_t start = INT64_C(1700000000) / 3600 * 3600;
    bucket_walk w = {start - 3600 * 24, 0, 0, start, 0};
    rc = p->load_buckets(st, "color_btn", arms, 3, w.since, load_one, &w, &err);
    if (rc != MAB_OK) {
        refused_says_why(rc, &err);
    } else {
        uint64_t before = w.want_pulls;
        mab_delta d = {"color_btn", "green", {1, 1, 1.0, 1.0}};
        mab_bucket_delta b = {"color_btn", "green", start, {1, 1, 1.0, 1.0}};
        rc = p->apply_buckets(st, &d, 1, NULL, 0, &b, 1, start - 3600 * 48, &err);
        if (rc != MAB_OK) {
            refused_says_why(rc, &err);
        } else {
            bucket_walk again = {start - 3600 * 24, 0, 0, start, 0};
            rc = p->load_buckets(st, "color_btn", arms, 3, again.since, load_one, &again, &err);
            if (rc == MAB_OK && again.want_pulls != before + 1) {
                fprintf(stderr, "fuzz: apply_buckets accepted one pull; the bucket went from "
                                "%llu to %llu\n",
                        (unsigned long long)before, (unsigned long long)again.want_pulls);
                abort();
            }
            if (rc != MAB_OK)
                refused_says_why(rc, &err);
        }
    }
    p->close(st);
    dlclose(handle);
}
