/*
 * sim_shared.c - the storage plugin behind `mab simulate --workers N`: one
 * in-memory store shared by the N engines of one simulated run, so that each
 * engine sees the others' counts when it reloads them, as processes over
 * one real store do.
 *
 * Not a store for production (nothing is durable): the simulator writes it
 * into its temporary config. It takes no parameters. Every engine that opens
 * it from the same thread gets the same table, for as long as one of them
 * has it open; the last close frees it. A run opens all its engines from the
 * thread that runs it and closes them before the next run starts there, so
 * runs on other threads (or later on the same thread) never share counts.
 *
 * The engines serialise their own calls, but not against each other's, so
 * every callback takes the table's lock. Claims are kept first-wins for the
 * life of the table (the simulator does not use them).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mab/storage.h>

typedef struct shared_record {
    char *experiment, *arm;
    mab_totals totals;
} shared_record;

typedef struct shared_stats {
    char *experiment, *arm, *layout; /* arm "" for the experiment's own */
    double *values;
    size_t n_values;
} shared_stats;

typedef struct shared_table {
    struct shared_table *next;
    pthread_t owner;
    unsigned users;
    pthread_mutex_t mu;
    shared_record *records;
    size_t n_records, cap_records;
    shared_stats *stats;
    size_t n_stats, cap_stats;
    uint8_t (*claims)[MAB_ASSIGNMENT_ID_BYTES];
    size_t n_claims, cap_claims;
} shared_table;

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static shared_table *registry;

static int oom(mab_error *err)
{
    return mab_error_set(err, MAB_ENOMEM, "sim_shared: out of memory");
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void table_free(shared_table *t)
{
    for (size_t i = 0; i < t->n_records; i++) {
        free(t->records[i].experiment);
        free(t->records[i].arm);
    }
    for (size_t i = 0; i < t->n_stats; i++) {
        free(t->stats[i].experiment);
        free(t->stats[i].arm);
        free(t->stats[i].layout);
        free(t->stats[i].values);
    }
    free(t->records);
    free(t->stats);
    free(t->claims);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static int shared_open(mab_params *params, void **state, mab_error *err)
{
    (void)params;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&registry_mu);
    shared_table *t = registry;
    while (t && !pthread_equal(t->owner, self))
        t = t->next;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (t) {
            pthread_mutex_init(&t->mu, NULL);
            t->owner = self;
            t->next = registry;
            registry = t;
        }
    }
    if (t)
        t->users++;
    pthread_mutex_unlock(&registry_mu);
    if (!t)
        return oom(err);
    *state = t;
    return MAB_OK;
}

static void shared_close(void *state)
{
    shared_table *t = state;
    pthread_mutex_lock(&registry_mu);
    if (--t->users == 0) {
        shared_table **p = &registry;
        while (*p != t)
            p = &(*p)->next;
        *p = t->next;
        table_free(t);
    }
    pthread_mutex_unlock(&registry_mu);
}

static shared_record *find_record(shared_table *t, const char *experiment, const char *arm)
{
    for (size_t i = 0; i < t->n_records; i++)
        if (strcmp(t->records[i].experiment, experiment) == 0 &&
            strcmp(t->records[i].arm, arm) == 0)
            return &t->records[i];
    return NULL;
}

static shared_stats *find_stats(shared_table *t, const char *experiment, const char *arm,
                                const char *layout)
{
    for (size_t i = 0; i < t->n_stats; i++)
        if (strcmp(t->stats[i].experiment, experiment) == 0 && strcmp(t->stats[i].arm, arm) == 0 &&
            strcmp(t->stats[i].layout, layout) == 0)
            return &t->stats[i];
    return NULL;
}

static int shared_load(void *state, const char *experiment, const char *const *arm_ids,
                       size_t n_arms, mab_totals *out, mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n_arms; i++) {
        const shared_record *r = find_record(t, experiment, arm_ids[i]);
        out[i] = r ? r->totals : (mab_totals){0, 0, 0, 0};
    }
    pthread_mutex_unlock(&t->mu);
    return MAB_OK;
}

/* Room for the records and statistics a batch may add, so that applying it
   cannot fail half-way. */
static int reserve(shared_table *t, size_t more_records, size_t more_stats)
{
    if (t->n_records + more_records > t->cap_records) {
        size_t cap = 2 * (t->n_records + more_records) + 8;
        shared_record *grown = realloc(t->records, cap * sizeof *grown);
        if (!grown)
            return -1;
        t->records = grown;
        t->cap_records = cap;
    }
    if (t->n_stats + more_stats > t->cap_stats) {
        size_t cap = 2 * (t->n_stats + more_stats) + 8;
        shared_stats *grown = realloc(t->stats, cap * sizeof *grown);
        if (!grown)
            return -1;
        t->stats = grown;
        t->cap_stats = cap;
    }
    return 0;
}

/* Applies a batch whose room is reserved; new records copy their keys
   first, so a failed copy leaves the table as it was. */
static int apply_locked(shared_table *t, const mab_delta *deltas, size_t n_deltas,
                        const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    for (size_t i = 0; i < n_stats; i++) {
        const shared_stats *s = find_stats(t, stats[i].experiment,
                                           stats[i].arm ? stats[i].arm : "", stats[i].layout);
        if (s && s->n_values != stats[i].n_values)
            return mab_error_set(err, MAB_EINVAL,
                                 "sim_shared: experiment \"%s\": statistics of layout %s "
                                 "have %zu values, the batch %zu",
                                 stats[i].experiment, stats[i].layout, s->n_values,
                                 stats[i].n_values);
    }
    if (reserve(t, n_deltas, n_stats) != 0)
        return oom(err);
    /* New entries first (all allocations), then the additions. */
    size_t records_before = t->n_records, stats_before = t->n_stats;
    int failed = 0;
    for (size_t i = 0; !failed && i < n_deltas; i++) {
        if (find_record(t, deltas[i].experiment, deltas[i].arm))
            continue;
        shared_record r = {dup_str(deltas[i].experiment), dup_str(deltas[i].arm), {0, 0, 0, 0}};
        if (!r.experiment || !r.arm) {
            free(r.experiment);
            free(r.arm);
            failed = 1;
            break;
        }
        t->records[t->n_records++] = r;
    }
    for (size_t i = 0; !failed && i < n_stats; i++) {
        const char *arm = stats[i].arm ? stats[i].arm : "";
        if (find_stats(t, stats[i].experiment, arm, stats[i].layout))
            continue;
        shared_stats s = {dup_str(stats[i].experiment), dup_str(arm), dup_str(stats[i].layout),
                          calloc(stats[i].n_values ? stats[i].n_values : 1, sizeof(double)),
                          stats[i].n_values};
        if (!s.experiment || !s.arm || !s.layout || !s.values) {
            free(s.experiment);
            free(s.arm);
            free(s.layout);
            free(s.values);
            failed = 1;
            break;
        }
        t->stats[t->n_stats++] = s;
    }
    if (failed) {
        while (t->n_records > records_before) {
            shared_record *r = &t->records[--t->n_records];
            free(r->experiment);
            free(r->arm);
        }
        while (t->n_stats > stats_before) {
            shared_stats *s = &t->stats[--t->n_stats];
            free(s->experiment);
            free(s->arm);
            free(s->layout);
            free(s->values);
        }
        return oom(err);
    }
    for (size_t i = 0; i < n_deltas; i++) {
        mab_totals *to = &find_record(t, deltas[i].experiment, deltas[i].arm)->totals;
        to->pulls += deltas[i].add.pulls;
        to->rewards += deltas[i].add.rewards;
        to->reward_sum += deltas[i].add.reward_sum;
        to->reward_sum_sq += deltas[i].add.reward_sum_sq;
    }
    for (size_t i = 0; i < n_stats; i++) {
        shared_stats *s = find_stats(t, stats[i].experiment, stats[i].arm ? stats[i].arm : "",
                                     stats[i].layout);
        for (size_t v = 0; v < s->n_values; v++)
            s->values[v] += stats[i].values[v];
    }
    return MAB_OK;
}

static int shared_apply_stats(void *state, const mab_delta *deltas, size_t n_deltas,
                              const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    int rc = apply_locked(t, deltas, n_deltas, stats, n_stats, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int shared_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return shared_apply_stats(state, deltas, n_deltas, NULL, 0, err);
}

static void remove_experiment(shared_table *t, const char *experiment)
{
    size_t kept = 0;
    for (size_t i = 0; i < t->n_records; i++) {
        if (strcmp(t->records[i].experiment, experiment) == 0) {
            free(t->records[i].experiment);
            free(t->records[i].arm);
        } else {
            t->records[kept++] = t->records[i];
        }
    }
    t->n_records = kept;
    kept = 0;
    for (size_t i = 0; i < t->n_stats; i++) {
        shared_stats *s = &t->stats[i];
        if (strcmp(s->experiment, experiment) == 0) {
            free(s->experiment);
            free(s->arm);
            free(s->layout);
            free(s->values);
        } else {
            t->stats[kept++] = *s;
        }
    }
    t->n_stats = kept;
}

static int shared_reset(void *state, const char *experiment, mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    remove_experiment(t, experiment);
    pthread_mutex_unlock(&t->mu);
    return MAB_OK;
}

static int shared_replace(void *state, const char *const *experiments, size_t n_experiments,
                          const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    /* Reserve first so that the removal is never followed by a failure. */
    int rc = reserve(t, n_deltas, 0) == 0 ? MAB_OK : oom(err);
    if (rc == MAB_OK) {
        for (size_t i = 0; i < n_experiments; i++)
            remove_experiment(t, experiments[i]);
        rc = apply_locked(t, deltas, n_deltas, NULL, 0, err);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int shared_scan(void *state,
                       int (*visit)(void *ctx, const char *experiment, const char *arm,
                                    const mab_totals *totals),
                       void *ctx, mab_error *err)
{
    shared_table *t = state;
    int rc = MAB_OK;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; rc == 0 && i < t->n_records; i++)
        rc = visit(ctx, t->records[i].experiment, t->records[i].arm, &t->records[i].totals);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int shared_load_stats(void *state, const char *experiment, const char *layout,
                             const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                             double *arm_out, size_t n_experiment_stats, double *experiment_out,
                             mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i <= n_arms; i++) {
        size_t n = i < n_arms ? n_arm_stats : n_experiment_stats;
        double *out = i < n_arms ? arm_out + i * n_arm_stats : experiment_out;
        const shared_stats *s = find_stats(t, experiment, i < n_arms ? arm_ids[i] : "", layout);
        for (size_t v = 0; v < n; v++)
            out[v] = s && v < s->n_values ? s->values[v] : 0.0;
    }
    pthread_mutex_unlock(&t->mu);
    return MAB_OK;
}

static int shared_scan_stats(void *state,
                             int (*visit)(void *ctx, const char *experiment, const char *arm,
                                          const char *layout, const double *values,
                                          size_t n_values),
                             void *ctx, mab_error *err)
{
    shared_table *t = state;
    int rc = MAB_OK;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; rc == 0 && i < t->n_stats; i++) {
        const shared_stats *s = &t->stats[i];
        rc = visit(ctx, s->experiment, s->arm[0] ? s->arm : NULL, s->layout, s->values,
                   s->n_values);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int shared_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                        mab_error *err)
{
    shared_table *t = state;
    pthread_mutex_lock(&t->mu);
    int rc = MAB_OK;
    size_t before = t->n_claims, n_deltas = 0;
    if (t->n_claims + n_claims > t->cap_claims) {
        size_t cap = 2 * (t->n_claims + n_claims) + 8;
        void *grown = realloc(t->claims, cap * sizeof *t->claims);
        if (!grown)
            rc = oom(err);
        else {
            t->claims = grown;
            t->cap_claims = cap;
        }
    }
    for (size_t c = 0; rc == MAB_OK && c < n_claims; c++) {
        size_t i = 0;
        while (i < t->n_claims &&
               memcmp(t->claims[i], claims[c].assignment_id, MAB_ASSIGNMENT_ID_BYTES) != 0)
            i++;
        claims[c].result = i < t->n_claims ? MAB_ECLAIMED : MAB_OK;
        if (claims[c].result == MAB_OK) {
            memcpy(t->claims[t->n_claims++], claims[c].assignment_id, MAB_ASSIGNMENT_ID_BYTES);
            n_deltas += claims[c].n_deltas;
        }
    }
    /* The granted claims' increments, as one batch. */
    mab_delta *all = rc == MAB_OK ? calloc(n_deltas ? n_deltas : 1, sizeof *all) : NULL;
    if (rc == MAB_OK && !all)
        rc = oom(err);
    size_t k = 0;
    for (size_t c = 0; rc == MAB_OK && c < n_claims; c++)
        for (size_t d = 0; claims[c].result == MAB_OK && d < claims[c].n_deltas; d++)
            all[k++] = claims[c].deltas[d];
    if (rc == MAB_OK)
        rc = apply_locked(t, all, k, NULL, 0, err);
    free(all);
    if (rc != MAB_OK)
        t->n_claims = before;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static const mab_storage sim_shared = {
    MAB_STORAGE_HEADER,
    "sim_shared",
    "in-memory store shared by the engines of one simulated run (mab simulate --workers)",
    shared_open,
    shared_load,
    shared_apply,
    shared_reset,
    shared_close,
    0, /* refresh_ms: the simulator reloads at simulated times */
    shared_scan,
    shared_replace,
    NULL,
    NULL,
    shared_claim,
    shared_apply_stats,
    shared_load_stats,
    shared_scan_stats,
    NULL, NULL, NULL, /* ABI 1.5 time buckets: a simulated run keeps none */
    NULL, /* changed (ABI 1.6, optional) */
};

MAB_STORAGE_DEFINE(sim_shared)
