/*
 * engine_stats.c - reading an engine: experiment descriptions, totals,
 * policy statistics, explain, stored layouts, failure counters; and reset,
 * export and import.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slots.h"

/* ---- statistics and reset -------------------------------------------- */

size_t mab_experiment_count(const mab_engine *e)
{
    return e ? e->n_configured : 0;
}

int mab_experiment_at(const mab_engine *e, size_t index, mab_experiment_info *out,
                      mab_error *err)
{
    if (!e || index >= e->n_configured)
        return mab_error_set(err, MAB_ENOTFOUND, "no experiment number %zu", index);
    if (!out || out->struct_size < MAB_EXPERIMENT_INFO_SIZE_0_1)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_experiment_info is NULL or its struct_size (%zu) is below "
                             "%zu",
                             out ? out->struct_size : 0, (size_t)MAB_EXPERIMENT_INFO_SIZE_0_1);
    const mab__experiment *x = &e->experiments[index];
    mab_experiment_info info = {out->struct_size, x->id, mab__policy_name(x), x->policy_path,
                                x->n_arms, x->reward_min, x->reward_max,
                                x->policy2 ? 2u : 1u, x->n_features};
    /* What the caller's struct_size holds: older callers have fewer fields. */
    memcpy(out, &info, out->struct_size < sizeof info ? out->struct_size : sizeof info);
    return MAB_OK;
}

const char *mab_storage_name(const mab_engine *e)
{
    return e && e->storage ? e->storage->name : "none";
}

int mab_stats(mab_engine *e, const char *experiment, mab_arm_stats *out, size_t cap,
              size_t *n_arms, mab_error *err)
{
    mab__experiment *x;
    int found = mab__find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (cap && (!out || out[0].struct_size < MAB_ARM_STATS_SIZE_0_1))
        return mab_error_set(err, MAB_EINVAL,
                             "mab_stats: out is NULL or out[0].struct_size (%zu) is below %zu",
                             out ? out[0].struct_size : 0, (size_t)MAB_ARM_STATS_SIZE_0_1);
    /* out[0].struct_size is the caller's stride: its mab_arm_stats may be
       an older, shorter one. */
    size_t stride = cap ? out[0].struct_size : 0;
    size_t fill = stride < sizeof(mab_arm_stats) ? stride : sizeof(mab_arm_stats);
    if ((found = mab__gather_experiment(e, x, err)) != MAB_OK)
        return found;
    for (size_t i = 0; i < x->n_arms && i < cap; i++) {
        const mab__arm *a = &x->arms[i];
        mab_totals t = atomic_totals_read(&a->published);
        mab_arm_stats st = {stride, mab__arm_id(x, i), t.pulls, t.rewards, t.reward_sum, t.reward_sum_sq,
                            t.pulls ? t.reward_sum / (double)t.pulls : 0.0,
                            mab__arm_value(x, i)};
        memcpy((char *)out + i * stride, &st, fill);
    }
    if (n_arms)
        *n_arms = x->n_arms;
    return MAB_OK;
}

int mab_policy_stats(mab_engine *e, const char *experiment, mab_policy_stats_info *info,
                     double *arm_stats, size_t arm_cap, double *experiment_stats,
                     size_t experiment_cap, mab_error *err)
{
    mab__experiment *x;
    int found = mab__find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (!info || info->struct_size < sizeof *info)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_policy_stats: info is NULL or its struct_size is too small");
    if ((arm_cap && !arm_stats) || (experiment_cap && !experiment_stats))
        return mab_error_set(err, MAB_EINVAL, "mab_policy_stats: NULL array with a capacity");
    if ((found = mab__gather_experiment(e, x, err)) != MAB_OK)
        return found;
    info->layout = x->part->layout_tag ? x->part->layout_tag : "";
    info->per_arm = x->layout.arm_stats;
    info->per_experiment = x->layout.experiment_stats;
    size_t n_arm = x->n_arms * x->layout.arm_stats;
    size_t at = mab__arm_stats_at(x, 0);
    for (size_t i = 0; i < n_arm && i < arm_cap; i++)
        arm_stats[i] = atomic_load_explicit(&e->stats_published[at + i], memory_order_relaxed);
    for (size_t i = 0; i < x->layout.experiment_stats && i < experiment_cap; i++)
        experiment_stats[i] =
            atomic_load_explicit(&e->stats_published[x->stats_at + i], memory_order_relaxed);
    return MAB_OK;
}

int mab_explain(mab_engine *e, const char *experiment, const mab_context *ctx, double *values,
                size_t cap, int *kind, mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if ((rc = mab__context_check(ctx, err)) != MAB_OK)
        return rc;
    if (!x->policy2 || !x->policy2->explain)
        return mab_error_set(err, MAB_EINVAL, "experiments.%s: policy %s has no explain()",
                             x->id, x->policy_path);
    if (!kind || (cap && !values))
        return mab_error_set(err, MAB_EINVAL, "mab_explain: values and kind must not be NULL");
    double features[MAB_POLICY_FEATURES_MAX];
    mab__resolve_features(x, ctx, features);
    int64_t now = mab__engine_now(e, ctx);
    double *scores = calloc(x->n_arms, sizeof *scores);
    if (!scores)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab__slot *s = slot_acquire(e);
    if (!s) {
        free(scores);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    mab__build_view(x, s);
    mab__mature_view(e, x, s, now);
    mab__build_stats_view(e, x, s);
    mab_policy_input in;
    *kind = 0;
    rc = mab__policy_input(e, x, s, now, features, &in);
    if (rc == MAB_OK)
        rc = x->policy2->explain(x->policy_state, &in, scores, kind);
    slot_unlock(s);
    if (rc == MAB_OK)
        memcpy(values, scores, (cap < x->n_arms ? cap : x->n_arms) * sizeof *values);
    free(scores);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s: explain failed: %s",
                             x->id, x->policy_path, mab_strerror(rc));
    return MAB_OK;
}

struct layouts_ctx {
    const char *experiment;
    char **seen;
    size_t n_seen;
    int (*visit)(void *ctx, const char *layout);
    void *ctx;
    int failed; /* out of memory */
};

static int layout_seen(void *ctx, const char *experiment, const char *arm, const char *layout,
                       const double *values, size_t n_values)
{
    (void)arm;
    (void)values;
    (void)n_values;
    struct layouts_ctx *l = ctx;
    if (strcmp(experiment, l->experiment) != 0)
        return 0;
    for (size_t i = 0; i < l->n_seen; i++)
        if (strcmp(l->seen[i], layout) == 0)
            return 0;
    char **grown = realloc(l->seen, (l->n_seen + 1) * sizeof *grown);
    if (!grown || !(grown[l->n_seen] = mab__strdup(layout))) {
        if (grown)
            l->seen = grown;
        l->failed = 1;
        return MAB_ENOMEM;
    }
    l->seen = grown;
    l->n_seen++;
    return l->visit(l->ctx, layout);
}

int mab_stored_layouts(mab_engine *e, const char *experiment,
                       int (*visit)(void *ctx, const char *layout), void *ctx, mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "mab_stored_layouts: visit is NULL");
    if (e->storage && e->read_only && !e->storage_state) {
        /* MAB_OPEN_CHECK: what the check read, if it could. */
        if (!e->check_layouts_read)
            return mab_error_set(err, MAB_EINVAL, "%s", e->check_layouts_why);
        for (size_t i = 0; i < e->n_check_layouts; i++)
            if (strcmp(e->check_layouts[2 * i], x->id) == 0 &&
                (rc = visit(ctx, e->check_layouts[2 * i + 1])) != 0)
                return rc;
        return MAB_OK;
    }
    if (!e->storage || !e->storage_state)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_stored_layouts: the engine has no open store (opened with "
                             "MAB_OPEN_NO_STORAGE)");
    if (!mab__storage_has_stats(e->storage))
        return MAB_OK;
    if (!e->read_only && (rc = mab_flush(e, err)) != MAB_OK)
        return rc;
    struct layouts_ctx l = {x->id, NULL, 0, visit, ctx, 0};
    pthread_mutex_lock(&e->flush_mu);
    rc = e->storage->scan_stats(e->storage_state, layout_seen, &l, err);
    pthread_mutex_unlock(&e->flush_mu);
    for (size_t i = 0; i < l.n_seen; i++)
        free(l.seen[i]);
    free(l.seen);
    if (l.failed)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    return rc;
}

uint64_t mab_storage_errors(const mab_engine *e)
{
    return e ? (uint64_t)atomic_load(&((mab_engine *)e)->flush_failures) : 0;
}

uint64_t mab_dropped_deltas(const mab_engine *e, mab_error *last)
{
    if (!e)
        return 0;
    mab_engine *m = (mab_engine *)e;
    uint64_t n = atomic_load(&m->dropped_deltas);
    if (last && n) {
        pthread_mutex_lock(&m->dropped_mu);
        *last = m->last_drop;
        pthread_mutex_unlock(&m->dropped_mu);
    }
    return n;
}

static int reset_one(mab_engine *e, mab__experiment *x, mab_error *err);

int mab_reset(mab_engine *e, const char *experiment, mab_error *err)
{
    mab__experiment *x;
    int found = mab__find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (e->read_only)
        return mab__read_only_error(e, "reset", err);
    int rc = reset_one(e, x, err);
    /* The holdout's counters go with the experiment's, and so do its late
       rewards and the sample-ratio check's (srm.c). */
    if (rc == MAB_OK && x->part->late_ledger)
        rc = reset_one(e, x->part->late_ledger, err);
    if (rc == MAB_OK && x->srm)
        rc = reset_one(e, x->srm, err);
    return rc == MAB_OK && x->part->ledger ? reset_one(e, x->part->ledger, err) : rc;
}

static int reset_one(mab_engine *e, mab__experiment *x, mab_error *err)
{
    /* Exact without publishing every slot: what any thread holds pending of
       x is published here, then zeroed below, so none of it comes back at
       that thread's next publish. An event added to x by another thread
       during the reset stays pending in its slot and counts after it (or is
       zeroed, if that thread publishes it before the zeroing), as when
       every slot was published: only the zeroing is under publish_lock.
       Other experiments' pending totals stay pending. */
    if (mab__gather_experiment(e, x, err) != MAB_OK)
        return MAB_ENOMEM; /* what stays pending would come back: nothing is reset */
    pthread_mutex_lock(&e->flush_mu);
    int rc = e->storage ? e->storage->reset(e->storage_state, x->id, err) : MAB_OK;
    if (rc == MAB_OK) {
        static const mab_totals zero;
        pthread_rwlock_wrlock(&e->publish_lock);
        for (size_t i = 0; i < x->n_arms; i++)
            atomic_totals_store(&x->arms[i].published, &zero);
        mab__queue_forget(e, x->first_arm, x->n_arms);
        size_t n = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
        size_t at = mab__arm_stats_at(x, 0);
        for (size_t i = at; i < at + n; i++) {
            atomic_store_explicit(&e->stats_published[i], 0.0, memory_order_relaxed);
            atomic_store_explicit(&e->stats_unapplied[i], 0.0, memory_order_relaxed);
        }
        mab__view_changed(e);
        mab__buckets_reset(e, x);
        pthread_rwlock_unlock(&e->publish_lock);
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

/* ---- export and import ------------------------------------------------ */

static int storage_v11(const mab_engine *e, const char *what, mab_error *err)
{
    if (!e->storage || !e->storage_state)
        return mab_error_set(err, MAB_EINVAL, "%s: the engine was opened without storage%s", what,
                             e->storage ? " (MAB_OPEN_CHECK)" : "");
    if (!mab__storage_has(e->storage, replace))
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: storage plugin %s is ABI 1.0, which cannot list or replace "
                             "records; rebuild it against storage ABI 1.1",
                             what, e->storage_path);
    return MAB_OK;
}

struct export_ctx {
    int (*visit)(void *ctx, const mab_record *record);
    void *ctx;
};

static int export_one(void *ctx, const char *experiment, const char *arm,
                      const mab_totals *totals)
{
    struct export_ctx *x = ctx;
    mab_record r = {experiment, arm, totals->pulls, totals->rewards, totals->reward_sum,
                    totals->reward_sum_sq};
    return x->visit(x->ctx, &r);
}

int mab_export(mab_engine *e, int (*visit)(void *ctx, const mab_record *record), void *ctx,
               mab_error *err)
{
    if (!e || !visit)
        return mab_error_set(err, MAB_EINVAL, "mab_export: engine and visit must not be NULL");
    int rc = storage_v11(e, "export", err);
    if (rc == MAB_OK)
        rc = mab_flush(e, err);
    if (rc != MAB_OK)
        return rc;
    struct export_ctx x = {visit, ctx};
    pthread_mutex_lock(&e->flush_mu);
    rc = e->storage->scan(e->storage_state, export_one, &x, err);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

/* Check a record against the config; on success *experiment is its experiment. */
static int import_check(mab_engine *e, const mab_record *r, size_t index,
                        mab__experiment **experiment, mab_error *err)
{
    mab_error inner;
    if (!r->experiment || mab__find_experiment(e, r->experiment, experiment, &inner) != MAB_OK)
        return mab_error_set(err, MAB_ENOTFOUND,
                             "import: record %zu: experiment \"%s\" is not in %s; nothing "
                             "was imported",
                             index, r->experiment ? r->experiment : "(null)", e->config_path);
    if (mab__find_arm(e, *experiment, r->arm, &inner) < 0)
        return mab_error_set(err, MAB_ENOTFOUND,
                             "import: record %zu: experiments.%s has no arm \"%s\" in %s; "
                             "nothing was imported",
                             index, r->experiment, r->arm ? r->arm : "(null)", e->config_path);
    if (!isfinite(r->reward_sum) || !isfinite(r->reward_sum_sq) || r->reward_sum_sq < 0)
        return mab_error_set(err, MAB_EINVAL,
                             "import: record %zu (%s/%s): reward sums must be finite and the "
                             "sum of squares non-negative; nothing was imported",
                             index, r->experiment, r->arm);
    return MAB_OK;
}

/* A record's arm (engine-wide index), to walk the records arm by arm. */
typedef struct import_arm {
    size_t arm, record;
} import_arm;

static int import_arm_order(const void *a, const void *b)
{
    const import_arm *x = a, *y = b;
    if (x->arm != y->arm)
        return x->arm < y->arm ? -1 : 1;
    return (x->record > y->record) - (x->record < y->record);
}

/* Check that every arm's totals stay finite once the records are added (to
   nothing for the experiments `cleared` marks, by index in e->experiments,
   else to the current totals):
   storage would refuse them otherwise. The arms the records name only, in
   record order per arm (n log n, not a pass over every arm of the engine:
   an import of a few records, or of none, costs what it holds); the error
   names the first record, in record order, at which an arm's sums fail. */
static int import_check_totals(mab_engine *e, const mab_record *records,
                               const mab_delta *deltas, size_t n,
                               const unsigned char *cleared, mab_error *err)
{
    if (!n)
        return MAB_OK;
    import_arm *order = malloc(n * sizeof *order);
    if (!order)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        mab__experiment *x;
        mab_error inner;
        mab__find_experiment(e, deltas[i].experiment, &x, &inner); /* checked by import_check */
        order[i] = (import_arm){x->first_arm + (size_t)mab__find_arm(e, x, deltas[i].arm, &inner),
                                i};
    }
    qsort(order, n, sizeof *order, import_arm_order);
    size_t bad = SIZE_MAX;
    mab_totals bad_sums = {0, 0, 0.0, 0.0};
    for (size_t g = 0; g < n;) {
        size_t arm = order[g].arm;
        const mab__experiment *x = mab__arm_experiment(e, arm);
        mab_totals sums = {0, 0, 0.0, 0.0};
        if (!cleared || !cleared[x - e->experiments])
            sums = atomic_totals_read(&mab__arm_at(e, arm)->published);
        int failed = 0;
        for (; g < n && order[g].arm == arm; g++) {
            if (failed)
                continue;
            totals_add(&sums, &deltas[order[g].record].add);
            if (!mab__sums_finite(x, (double)sums.rewards, sums.reward_sum, sums.reward_sum_sq)) {
                failed = 1;
                if (order[g].record < bad) {
                    bad = order[g].record;
                    bad_sums = sums;
                }
            }
        }
    }
    free(order);
    if (bad == SIZE_MAX)
        return MAB_OK;
    return mab_error_set(err, MAB_ERANGE,
                         "import: record %zu (%s/%s): the arm's reward sums would "
                         "overflow (sum %g, sum of squares %g once added); nothing was "
                         "imported",
                         bad, records[bad].experiment, records[bad].arm, bad_sums.reward_sum,
                         bad_sums.reward_sum_sq);
}

int mab_import(mab_engine *e, const mab_record *records, size_t n, int replace, mab_error *err)
{
    if (!e || (!records && n))
        return mab_error_set(err, MAB_EINVAL, "mab_import: engine and records must not be NULL");
    int rc = e->read_only ? mab__read_only_error(e, "import", err) : storage_v11(e, "import", err);
    mab_delta *deltas = rc == MAB_OK ? calloc(n ? n : 1, sizeof *deltas) : NULL;
    /* The experiments the records name, in the order first named (what
       replace clears), and a mark per experiment index so that each record
       finds whether its experiment is listed at once: O(n), where a scan
       of the list per record was O(n x experiments named). */
    size_t n_x = e->n_experiments ? e->n_experiments : 1;
    const char **cleared = rc == MAB_OK ? calloc(n_x, sizeof *cleared) : NULL;
    unsigned char *listed = rc == MAB_OK ? calloc(n_x, 1) : NULL;
    if (rc == MAB_OK && (!deltas || !cleared || !listed))
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t n_cleared = 0;
    for (size_t i = 0; rc == MAB_OK && i < n; i++) {
        mab__experiment *x;
        rc = import_check(e, &records[i], i, &x, err);
        if (rc != MAB_OK)
            break;
        deltas[i].experiment = x->id;
        deltas[i].arm = records[i].arm;
        deltas[i].add = (mab_totals){records[i].pulls, records[i].rewards, records[i].reward_sum,
                                     records[i].reward_sum_sq};
        if (!listed[x - e->experiments]) {
            listed[x - e->experiments] = 1;
            cleared[n_cleared++] = x->id;
        }
    }
    if (rc == MAB_OK)
        rc = mab_flush(e, err);
    if (rc == MAB_OK)
        rc = import_check_totals(e, records, deltas, n, replace ? listed : NULL, err);
    if (rc == MAB_OK) {
        pthread_mutex_lock(&e->flush_mu);
        rc = replace ? e->storage->replace(e->storage_state, cleared, n_cleared, deltas, n, err)
                     : e->storage->apply(e->storage_state, deltas, n, err);
        if (rc == MAB_OK)
            rc = mab__load_totals(e, err);
        pthread_mutex_unlock(&e->flush_mu);
    }
    free(deltas);
    free(cleared);
    free(listed);
    return rc;
}

