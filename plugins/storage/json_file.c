/*
 * json_file.c - storage in a JSON snapshot and an append-only journal, for one writing process.
 *
 * Config: {"plugin": "json_file", "path": "var/mab.json"}; "path" is
 * required and relative to the config file's directory.
 *
 * File format (version 1):
 *
 *   {"format": "mab-json-storage", "version": 1,
 *    "experiments": {"EXP": {"ARM": {"pulls": N, "rewards": N,
 *                                    "reward_sum": X, "reward_sum_sq": X}}}}
 *
 * Policy statistics (storage ABI 1.4) are in the same file, in the
 * document's optional "policy_stats" field (include/mab/records.h), and are
 * written in the same snapshot as the counters, so both commit together.
 *
 * This is libmab's record-set document (include/mab/records.h), the same
 * reader and writer as `mab export`/`mab import`, with its own "format" tag.
 * pulls and rewards are integers in [0, 2^53]; reward_sum is a finite
 * number, reward_sum_sq a finite number >= 0, both written with enough
 * digits to read back bit for bit. A file with another "format", another
 * "version", a missing, mistyped or duplicate field or record, or anything
 * that is not complete JSON is refused at open with MAB_ECORRUPT and left
 * exactly as it is.
 *
 * Time buckets (storage ABI 1.5) are in the same file too, in the optional
 * "buckets" field: {"EXP": {"ARM": [[START, PULLS, REWARDS, SUM, SUM_SQ],
 * ...]}}, each arm's in ascending START order (records.h). apply_buckets
 * commits counters, statistics and buckets in one journal entry, and drops
 * every bucket that starts before keep_from from the table at once (the
 * entry carries keep_from, so replay drops the same ones). The reader
 * refuses a bucket that is not finite, malformed, duplicated or out of
 * order (MAB_ECORRUPT naming "buckets.EXP.ARM[I]"), as it does counters.
 * In memory the buckets are one array sorted by (experiment, arm, start):
 * load_buckets(since) binary-searches each listed arm's run.
 *
 * Claims (storage ABI 1.3): the store's set of rewarded assignments is kept
 * in the same file, after the records, as "claims": {"HEX-ID": EXPIRES_AT}
 * (records.h), written only when there are claims. A claim and the reward it
 * guards are one journal entry (and then in one snapshot), so they are
 * durable together or not at all. Expired claims are left out of every snapshot written (and then
 * forgotten in memory); a claim of an id whose claim has expired is granted.
 *
 * The whole table lives in memory. PATH is a snapshot of it; every commit
 * after the snapshot is one entry appended to the journal PATH.journal and
 * fsynced (fdatasync) before the commit returns, so a commit costs what it
 * changes. An entry is the commit itself (payload version 1, entry_encode:
 * the experiments cleared, the bucket retention, the counter, statistics
 * and bucket increments with their doubles as bits, the claims granted),
 * framed with its length and a checksum (include/mab/records.h), so that
 * replay at open adds exactly what the writer added, in the same order, and
 * a partial entry is never applied: the first entry cut short or failing
 * its checksum ends the journal, and the writer's open cuts it off. A failed
 * append is cut back (the entry is never replayed); if even that fails the
 * journal is dropped and the next commit writes a snapshot.
 *
 * The snapshot is rewritten when the journal holds more bytes than it (at
 * least 64 KiB) and at a clean close: to PATH.tmp, fsynced, renamed over
 * PATH, the directory fsynced; then a new journal (its header only) is
 * written to PATH.journal.tmp, fsynced and renamed over PATH.journal. The
 * header holds the length and checksum of the snapshot it follows, so a
 * journal is replayed onto that snapshot only: a crash between the two
 * renames leaves the new snapshot (which holds every commit) beside the old
 * journal, which then follows another snapshot and is ignored. A snapshot
 * that fails after the commit's entry is durable fails no commit (it is
 * tried again once the journal has grown as much again). A crash at any
 * moment leaves a whole snapshot and a journal of whole entries plus at
 * most one torn one (a stale PATH.tmp or PATH.journal.tmp is harmless).
 *
 * One process at a time: open takes flock(LOCK_EX) on PATH.lock (a separate
 * file, since PATH itself is replaced by rename) and writes its pid there so
 * a second opener can say who holds the store. The kernel drops the lock when
 * the holder exits or is killed. The lock file is never removed: unlinking it
 * while another process has it open would let two processes lock two
 * different inodes. Note that a child forked while the store is open shares
 * the lock's open file description and so keeps the store locked until it
 * exits or execs.
 *
 * Read-only commands (`mab check`, `mab stats`, `mab export`) do not take the
 * lock: they read the snapshot, then the journal that follows it (read again
 * when a snapshot was written between the two reads), so they see every
 * commit the writer has made durable, never a torn state. A read-only state
 * follows the writer with changed() (storage ABI 1.6): it applies the
 * entries appended since the last byte it read and names their experiments;
 * when PATH or PATH.journal is another file than the one it read (it keeps
 * both open, so their inode numbers cannot come back), it reads both again
 * and asks for everything. The writer's changed() names its own commits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mab/records.h"
#include "mab/storage.h"

/* Counters are stored as JSON numbers, which readers hold as doubles: exact up to 2^53. */
#define JSON_STORE_COUNTER_MAX MAB_RECORDS_COUNTER_MAX
#define NO_RECORD SIZE_MAX

typedef struct record {
    char *experiment; /* one allocation "EXP\0ARM\0"; arm points inside it */
    const char *arm;
    mab_totals totals;
    size_t next; /* next record in the same hash bucket, or NO_RECORD */
    int dropped; /* being removed by a replace: not written, freed once written */
} record;

/* One record of policy statistics; arm NULL for the experiment's own. */
typedef struct stats_entry {
    char *experiment;
    char *arm;
    char *layout;
    double *values;
    size_t n_values;
} stats_entry;

typedef struct stats_table {
    stats_entry *entries;
    size_t n, cap;
} stats_table;

/* One time bucket (storage ABI 1.5) of one (experiment, arm). */
typedef struct time_bucket {
    char *key;       /* one allocation "EXP\0ARM\0"; arm points inside it */
    const char *arm;
    int64_t start;   /* unix seconds */
    mab_totals add;  /* what happened in the bucket */
    int fresh;       /* allocated by the change being built (freed if it fails) */
} time_bucket;

/* Sorted by (experiment, arm, start), so an arm's buckets are one run. */
typedef struct time_bucket_table {
    time_bucket *entries;
    size_t n, cap;
} time_bucket_table;

typedef struct json_store {
    char path[PATH_MAX];
    char tmp_path[PATH_MAX];
    char lock_path[PATH_MAX];
    char dir_path[PATH_MAX];
    int lock_fd;
    record *records; /* in order of creation, which is also the file's order */
    size_t n_records, cap_records;
    size_t *buckets; /* index of the first record of each bucket, or NO_RECORD */
    size_t n_buckets; /* a power of two */
    stats_table stats;
    const stats_table *snapshot_stats; /* what snapshot_text writes (stats, or a candidate) */
    time_bucket_table time_buckets;
    const time_bucket_table *snapshot_time_buckets; /* likewise for the buckets */
    mab_record_claim *claims; /* the claim set, in no order */
    size_t n_claims, cap_claims;
    uint32_t *claim_slots; /* open addressing: claims index + 1, 0 when empty */
    size_t claim_mask;     /* slots - 1; slots >= 2 * cap_claims */

    /* The journal (PATH.journal, see the top). */
    char journal_path[PATH_MAX];
    char journal_tmp_path[PATH_MAX];
    unsigned char header[MAB_RECORDS_JOURNAL_HEADER]; /* what a journal of PATH starts with */
    size_t snapshot_bytes;    /* PATH's length */
    int snapshot_replaced;    /* set by snapshot_write once PATH is the new snapshot */
    int journal_fd;           /* the writer's; -1: the next commit writes a snapshot */
    uint64_t journal_end;     /* offset after the last whole entry */
    uint64_t compact_at;      /* journal size at which the next snapshot is written */
    int replaying;            /* change() applies an entry read back: write nothing */
    const mab_record_claim *entry_claims; /* the claims granted by the change being made */
    size_t n_entry_claims;
    /* A read-only state's view of the files it read (changed()). */
    int read_only;
    int told_everything;      /* changed() has been called once */
    dev_t snapshot_dev, journal_dev;
    ino_t snapshot_ino, journal_ino; /* of the files read (their fds keep them) */
    int snapshot_fd;          /* a read-only state's: the snapshot it read */
    int journal_follows;      /* the journal read follows that snapshot */
    uint64_t read_end;        /* offset after the last whole entry read */
    /* The experiments changed since the last changed() call (its own
       commits and, in a read-only state, the entries read back). */
    char **changed_ids;
    size_t n_changed;
    int changed_overflow;     /* too many, or out of memory: everything */
} json_store;

/* ---- policy statistics ------------------------------------------------ */

static void stats_entry_free(stats_entry *e)
{
    free(e->experiment);
    free(e->arm);
    free(e->layout);
    free(e->values);
}

static void stats_table_free(stats_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        stats_entry_free(&t->entries[i]);
    free(t->entries);
    memset(t, 0, sizeof *t);
}

static int same_arm(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static stats_entry *stats_find(const stats_table *t, const char *experiment, const char *arm,
                               const char *layout)
{
    for (size_t i = 0; i < t->n; i++) {
        stats_entry *e = &t->entries[i];
        if (strcmp(e->experiment, experiment) == 0 && same_arm(e->arm, arm) &&
            strcmp(e->layout, layout) == 0)
            return e;
    }
    return NULL;
}

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    else
        *failed = 1;
    return copy;
}

/* Append a copy of a record; NULL when out of memory. */
static stats_entry *stats_append(stats_table *t, const char *experiment, const char *arm,
                                 const char *layout, const double *values, size_t n_values)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        stats_entry *grown = realloc(t->entries, cap * sizeof *grown);
        if (!grown)
            return NULL;
        t->entries = grown;
        t->cap = cap;
    }
    int failed = 0;
    stats_entry e = {dup_or_null(experiment, &failed), dup_or_null(arm, &failed),
                     dup_or_null(layout, &failed),
                     malloc((n_values ? n_values : 1) * sizeof(double)), n_values};
    if (failed || !e.values) {
        stats_entry_free(&e);
        return NULL;
    }
    if (n_values)
        memcpy(e.values, values, n_values * sizeof(double));
    t->entries[t->n] = e;
    return &t->entries[t->n++];
}

/*
 * The statistics table after a change: `from` without the cleared
 * experiments, plus the deltas. `from` is not modified, so a failed write
 * leaves the store as it was. MAB_OK or an error with err set.
 */
static int stats_next(const json_store *st, const stats_table *from, const char *const *clear,
                      size_t n_clear, const mab_stats_delta *deltas, size_t n_deltas,
                      stats_table *out, mab_error *err)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < from->n; i++) {
        const stats_entry *e = &from->entries[i];
        int cleared = 0;
        for (size_t k = 0; k < n_clear && !cleared; k++)
            cleared = strcmp(e->experiment, clear[k]) == 0;
        if (!cleared &&
            !stats_append(out, e->experiment, e->arm, e->layout, e->values, e->n_values))
            goto nomem;
    }
    for (size_t i = 0; i < n_deltas; i++) {
        const mab_stats_delta *d = &deltas[i];
        stats_entry *e = stats_find(out, d->experiment, d->arm, d->layout);
        if (!e) {
            if (!(e = stats_append(out, d->experiment, d->arm, d->layout, NULL, 0)))
                goto nomem;
            double *zeros = calloc(d->n_values ? d->n_values : 1, sizeof *zeros);
            if (!zeros)
                goto nomem;
            free(e->values);
            e->values = zeros;
            e->n_values = d->n_values;
        }
        if (e->n_values != d->n_values) {
            stats_table_free(out);
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: policy statistics %s.%s (layout %s) hold %zu values, the "
                                 "batch %zu",
                                 st->path, d->experiment, d->arm ? d->arm : "(experiment)",
                                 d->layout, e->n_values, d->n_values);
        }
        for (size_t j = 0; j < d->n_values; j++) {
            e->values[j] += d->values[j];
            if (!isfinite(e->values[j])) {
                stats_table_free(out);
                return mab_error_set(err, MAB_ERANGE,
                                     "%s: %s.%s (%s): statistic %zu would overflow", st->path,
                                     d->experiment, d->arm ? d->arm : "(experiment)", d->layout,
                                     j);
            }
        }
    }
    return MAB_OK;
nomem:
    stats_table_free(out);
    return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
}

/* ---- time buckets (storage ABI 1.5) ------------------------------------- */

static void time_bucket_table_free(time_bucket_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->entries[i].key);
    free(t->entries);
    memset(t, 0, sizeof *t);
}

static int time_bucket_cmp(const char *experiment, const char *arm, int64_t start,
                           const time_bucket *e)
{
    int c = strcmp(experiment, e->key);
    if (c == 0)
        c = strcmp(arm, e->arm);
    if (c == 0)
        c = start < e->start ? -1 : start > e->start;
    return c;
}

static int time_bucket_order(const void *a, const void *b)
{
    const time_bucket *x = a;
    return time_bucket_cmp(x->key, x->arm, x->start, b);
}

/* The index of the first entry at or after (experiment, arm, start). */
static size_t time_bucket_lower(const time_bucket_table *t, const char *experiment,
                                const char *arm, int64_t start)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (time_bucket_cmp(experiment, arm, start, &t->entries[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Whether an entry of the table survives a change clearing `clear` and
   dropping buckets that start before keep_from. */
static int time_bucket_kept(const time_bucket *e, const char *const *clear, size_t n_clear,
                            int64_t keep_from)
{
    if (e->start < keep_from)
        return 0;
    for (size_t k = 0; k < n_clear; k++)
        if (strcmp(e->key, clear[k]) == 0)
            return 0;
    return 1;
}

static char *key_alloc(const char *experiment, const char *arm, const char **arm_in_key)
{
    size_t el = strlen(experiment) + 1, al = strlen(arm) + 1;
    char *key = malloc(el + al);
    if (key) {
        memcpy(key, experiment, el);
        memcpy(key + el, arm, al);
        *arm_in_key = key + el;
    }
    return key;
}

static int check_time_buckets(const json_store *st, const mab_bucket_delta *b, size_t n,
                              mab_error *err)
{
    if (n && !b)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_buckets: NULL batch", st->path);
    for (size_t i = 0; i < n; i++) {
        const mab_bucket_delta *d = &b[i];
        if (!d->experiment || !d->arm || !d->experiment[0] || !d->arm[0])
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: bucket %zu has no experiment or arm",
                                 st->path, i);
        if (d->bucket > MAB_RECORDS_BUCKET_START_MAX || d->bucket < -MAB_RECORDS_BUCKET_START_MAX)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: %s.%s: bucket start %lld is beyond 2^53",
                                 st->path, d->experiment, d->arm, (long long)d->bucket);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq) ||
            d->add.reward_sum_sq < 0)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: %s.%s (bucket %lld): reward is not finite "
                                 "(or its square negative)",
                                 st->path, d->experiment, d->arm, (long long)d->bucket);
    }
    return MAB_OK;
}

/*
 * The bucket table after a change: `from` without the cleared experiments
 * and the buckets before keep_from, plus the increments. `from` is not
 * modified (entries carried over share its keys; new ones are marked fresh),
 * so a failed write leaves the store as it was. MAB_OK or an error.
 */
static int time_buckets_next(const json_store *st, const time_bucket_table *from,
                             const char *const *clear, size_t n_clear,
                             const mab_bucket_delta *b, size_t n, int64_t keep_from,
                             time_bucket_table *out, size_t *n_removed, mab_error *err)
{
    memset(out, 0, sizeof *out);
    out->cap = from->n + n;
    out->entries = malloc((out->cap ? out->cap : 1) * sizeof *out->entries);
    if (!out->entries)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    *n_removed = 0;
    for (size_t i = 0; i < from->n; i++) {
        if (time_bucket_kept(&from->entries[i], clear, n_clear, keep_from)) {
            out->entries[out->n] = from->entries[i];
            out->entries[out->n++].fresh = 0;
        } else {
            (*n_removed)++;
        }
    }
    int rc = MAB_OK;
    for (size_t i = 0; i < n && rc == MAB_OK; i++) {
        const mab_bucket_delta *d = &b[i];
        if (d->bucket < keep_from)
            continue; /* added, then dropped by this same call's retention */
        size_t at = time_bucket_lower(out, d->experiment, d->arm, d->bucket);
        time_bucket *e = at < out->n ? &out->entries[at] : NULL;
        if (!e || time_bucket_cmp(d->experiment, d->arm, d->bucket, e) != 0) {
            const char *arm;
            char *key = key_alloc(d->experiment, d->arm, &arm);
            if (!key) {
                rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
                break;
            }
            memmove(&out->entries[at + 1], &out->entries[at],
                    (out->n - at) * sizeof *out->entries);
            out->n++;
            e = &out->entries[at];
            *e = (time_bucket){key, arm, d->bucket, {0, 0, 0, 0}, 1};
        }
        mab_totals t = e->add;
        int too_big = d->add.pulls > JSON_STORE_COUNTER_MAX - t.pulls ||
                      d->add.rewards > JSON_STORE_COUNTER_MAX - t.rewards;
        t.pulls += d->add.pulls;
        t.rewards += d->add.rewards;
        t.reward_sum += d->add.reward_sum;
        t.reward_sum_sq += d->add.reward_sum_sq;
        if (too_big || !isfinite(t.reward_sum) || !isfinite(t.reward_sum_sq))
            rc = mab_error_set(err, MAB_ERANGE, "%s: %s.%s: bucket %lld would overflow",
                               st->path, d->experiment, d->arm, (long long)d->bucket);
        else
            e->add = t;
    }
    if (rc != MAB_OK) {
        for (size_t i = 0; i < out->n; i++)
            if (out->entries[i].fresh)
                free(out->entries[i].key);
        free(out->entries);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* Adopt `next` after its snapshot was written: free the keys of the entries
   it dropped, and the old array. */
static void time_buckets_adopt(json_store *st, time_bucket_table *next, const char *const *clear,
                               size_t n_clear, int64_t keep_from)
{
    for (size_t i = 0; i < st->time_buckets.n; i++)
        if (!time_bucket_kept(&st->time_buckets.entries[i], clear, n_clear, keep_from))
            free(st->time_buckets.entries[i].key);
    free(st->time_buckets.entries);
    for (size_t i = 0; i < next->n; i++)
        next->entries[i].fresh = 0;
    st->time_buckets = *next;
}

/* A failed change: free what `next` allocated, keep the table. */
static void time_buckets_discard(time_bucket_table *next)
{
    for (size_t i = 0; i < next->n; i++)
        if (next->entries[i].fresh)
            free(next->entries[i].key);
    free(next->entries);
    memset(next, 0, sizeof *next);
}

/* ---- the claim set ------------------------------------------------------ */

static size_t claim_home(const json_store *st, const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, sizeof h); /* ids are random */
    return (size_t)(h * 0x9e3779b97f4a7c15u >> 17) & st->claim_mask;
}

/* Index of the claim of id, or SIZE_MAX. */
static size_t claim_find(const json_store *st, const uint8_t *id)
{
    if (!st->claim_slots)
        return SIZE_MAX;
    for (size_t i = claim_home(st, id); st->claim_slots[i]; i = (i + 1) & st->claim_mask) {
        size_t k = st->claim_slots[i] - 1;
        if (memcmp(st->claims[k].assignment_id, id, MAB_ASSIGNMENT_ID_BYTES) == 0)
            return k;
    }
    return SIZE_MAX;
}

/* Rebuild the index over claims[0..n_claims) (never allocates). */
static void claim_reindex(json_store *st)
{
    memset(st->claim_slots, 0, (st->claim_mask + 1) * sizeof *st->claim_slots);
    for (size_t k = 0; k < st->n_claims; k++) {
        size_t i = claim_home(st, st->claims[k].assignment_id);
        while (st->claim_slots[i])
            i = (i + 1) & st->claim_mask;
        st->claim_slots[i] = (uint32_t)k + 1;
    }
}

/* Room for one more claim; 0 when out of memory (the set is unchanged). */
static int claim_reserve(json_store *st)
{
    if (st->n_claims < st->cap_claims)
        return 1;
    size_t cap = st->cap_claims ? st->cap_claims * 2 : 64;
    if (cap > UINT32_MAX / 4)
        return 0;
    mab_record_claim *grown = realloc(st->claims, cap * sizeof *grown);
    if (!grown)
        return 0;
    st->claims = grown;
    uint32_t *slots = calloc(cap * 2, sizeof *slots);
    if (!slots)
        return 0;
    free(st->claim_slots);
    st->claim_slots = slots;
    st->claim_mask = cap * 2 - 1;
    st->cap_claims = cap;
    claim_reindex(st);
    return 1;
}

/* Append a claim (room reserved); its index is n_claims - 1. */
static void claim_append(json_store *st, const uint8_t *id, int64_t expires_at)
{
    size_t k = st->n_claims++;
    memcpy(st->claims[k].assignment_id, id, MAB_ASSIGNMENT_ID_BYTES);
    st->claims[k].expires_at = expires_at;
    size_t i = claim_home(st, id);
    while (st->claim_slots[i])
        i = (i + 1) & st->claim_mask;
    st->claim_slots[i] = (uint32_t)k + 1;
}

/* Forget claims that expired by `now` (after a snapshot left them out). */
static void claims_forget_expired(json_store *st, int64_t now)
{
    size_t n = 0;
    for (size_t k = 0; k < st->n_claims; k++)
        if (st->claims[k].expires_at > now)
            st->claims[n++] = st->claims[k];
    if (n != st->n_claims) {
        st->n_claims = n;
        claim_reindex(st);
    }
}

/* ---- the in-memory table ---------------------------------------------- */

static size_t key_hash(const char *experiment, const char *arm)
{
    /* FNV-1a over "EXP\0ARM". */
    uint64_t h = 1469598103934665603u;
    for (const unsigned char *s = (const unsigned char *)experiment; *s; s++)
        h = (h ^ *s) * 1099511628211u;
    h = h * 1099511628211u;
    for (const unsigned char *s = (const unsigned char *)arm; *s; s++)
        h = (h ^ *s) * 1099511628211u;
    return (size_t)h;
}

/* Rebuild the bucket chains from the records (never allocates). */
static void index_relink(json_store *st)
{
    for (size_t b = 0; b < st->n_buckets; b++)
        st->buckets[b] = NO_RECORD;
    for (size_t i = 0; i < st->n_records; i++) {
        record *r = &st->records[i];
        size_t b = key_hash(r->experiment, r->arm) & (st->n_buckets - 1);
        r->next = st->buckets[b];
        st->buckets[b] = i;
    }
}

static record *table_find(const json_store *st, const char *experiment, const char *arm)
{
    if (st->n_buckets == 0)
        return NULL;
    size_t i = st->buckets[key_hash(experiment, arm) & (st->n_buckets - 1)];
    for (; i != NO_RECORD; i = st->records[i].next) {
        record *r = &st->records[i];
        if (strcmp(r->experiment, experiment) == 0 && strcmp(r->arm, arm) == 0)
            return r;
    }
    return NULL;
}

/* Append a zeroed record; NULL when out of memory (the table is unchanged). */
static record *table_insert(json_store *st, const char *experiment, const char *arm)
{
    if (st->n_records == st->cap_records) {
        size_t cap = st->cap_records ? st->cap_records * 2 : 64;
        record *grown = realloc(st->records, cap * sizeof *grown);
        if (!grown)
            return NULL;
        st->records = grown;
        st->cap_records = cap;
    }
    if (st->n_records + 1 > st->n_buckets) {
        size_t n = st->n_buckets ? st->n_buckets * 2 : 64;
        size_t *buckets = malloc(n * sizeof *buckets);
        if (!buckets)
            return NULL;
        free(st->buckets);
        st->buckets = buckets;
        st->n_buckets = n;
        index_relink(st);
    }
    size_t exp_len = strlen(experiment), arm_len = strlen(arm);
    char *key = malloc(exp_len + arm_len + 2);
    if (!key)
        return NULL;
    memcpy(key, experiment, exp_len + 1);
    memcpy(key + exp_len + 1, arm, arm_len + 1);

    size_t i = st->n_records++;
    record *r = &st->records[i];
    r->experiment = key;
    r->arm = key + exp_len + 1;
    memset(&r->totals, 0, sizeof r->totals);
    r->dropped = 0;
    size_t b = key_hash(experiment, arm) & (st->n_buckets - 1);
    r->next = st->buckets[b];
    st->buckets[b] = i;
    return r;
}

/* Drop the records created after the first `n` (undoing a failed batch). */
static void table_truncate(json_store *st, size_t n)
{
    for (size_t i = n; i < st->n_records; i++)
        free(st->records[i].experiment);
    st->n_records = n;
    index_relink(st);
}

/* changed() names at most this many experiments; past it, everything. */
#define CHANGED_MAX 4096

static void changed_forget(json_store *st)
{
    for (size_t i = 0; i < st->n_changed; i++)
        free(st->changed_ids[i]);
    free(st->changed_ids);
    st->changed_ids = NULL;
    st->n_changed = 0;
}

static void changed_note(json_store *st, const char *experiment)
{
    if (st->changed_overflow)
        return;
    if (st->n_changed > 0 && strcmp(st->changed_ids[st->n_changed - 1], experiment) == 0)
        return; /* the common case: one experiment's arms in a row */
    if (!st->changed_ids && !(st->changed_ids = malloc(CHANGED_MAX * sizeof *st->changed_ids)))
        st->changed_overflow = 1;
    char *copy = st->changed_overflow || st->n_changed == CHANGED_MAX ? NULL : strdup(experiment);
    if (!copy) {
        st->changed_overflow = 1;
        changed_forget(st);
        return;
    }
    st->changed_ids[st->n_changed++] = copy;
}

static void store_free(json_store *st)
{
    table_truncate(st, 0);
    stats_table_free(&st->stats);
    time_bucket_table_free(&st->time_buckets);
    free(st->records);
    free(st->buckets);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    if (st->journal_fd >= 0)
        close(st->journal_fd);
    if (st->snapshot_fd >= 0)
        close(st->snapshot_fd);
    changed_forget(st);
    free(st->claims);
    free(st->claim_slots);
    free(st);
}

/* A state with no table and no files open yet. */
static json_store *store_new(void)
{
    json_store *st = calloc(1, sizeof *st);
    if (st)
        st->lock_fd = st->journal_fd = st->snapshot_fd = -1;
    return st;
}

/* ---- writing a snapshot ----------------------------------------------- */

/* The file's text for every record not marked dropped and every claim not
   expired by `now`; NULL with err set. */
static char *snapshot_text(const json_store *st, int64_t now, mab_error *err)
{
    mab_record *records = malloc((st->n_records ? st->n_records : 1) * sizeof *records);
    mab_record_claim *claims = malloc((st->n_claims ? st->n_claims : 1) * sizeof *claims);
    if (!records || !claims) {
        free(records);
        free(claims);
        mab_error_set(err, MAB_ENOMEM, "%s: out of memory building the snapshot", st->path);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < st->n_records; i++) {
        const record *r = &st->records[i];
        if (r->dropped)
            continue;
        records[n++] = (mab_record){r->experiment, r->arm, r->totals.pulls, r->totals.rewards,
                                    r->totals.reward_sum, r->totals.reward_sum_sq};
    }
    const stats_table *t = st->snapshot_stats ? st->snapshot_stats : &st->stats;
    mab_stats_record *stats = malloc((t->n ? t->n : 1) * sizeof *stats);
    if (!stats) {
        free(records);
        free(claims);
        mab_error_set(err, MAB_ENOMEM, "%s: out of memory building the snapshot", st->path);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++)
        stats[i] = (mab_stats_record){t->entries[i].experiment, t->entries[i].arm,
                                      t->entries[i].layout, t->entries[i].values,
                                      t->entries[i].n_values};
    size_t n_claims = 0;
    for (size_t k = 0; k < st->n_claims; k++)
        if (st->claims[k].expires_at > now)
            claims[n_claims++] = st->claims[k];
    const time_bucket_table *tb =
        st->snapshot_time_buckets ? st->snapshot_time_buckets : &st->time_buckets;
    mab_bucket_record *bk = malloc((tb->n ? tb->n : 1) * sizeof *bk);
    char *text = NULL;
    mab_error why = {0};
    if (!bk) {
        mab_error_set(err, MAB_ENOMEM, "%s: out of memory building the snapshot", st->path);
    } else {
        /* The table's order (experiment, arm, start) is the one the writer wants. */
        for (size_t i = 0; i < tb->n; i++) {
            const time_bucket *e = &tb->entries[i];
            bk[i] = (mab_bucket_record){e->key, e->arm, e->start, e->add.pulls, e->add.rewards,
                                        e->add.reward_sum, e->add.reward_sum_sq};
        }
        if (mab_records_print_state(MAB_RECORDS_JSON_STORE, records, n, claims, n_claims, stats,
                                    t->n, bk, tb->n, &text, NULL, &why) != MAB_OK)
            mab_error_set(err, why.code, "%s: cannot write the snapshot: %s", st->path,
                          why.message);
    }
    free(bk);
    free(stats);
    free(records);
    free(claims);
    return text;
}

/* write_all's offset for "at the file's position" (write, not pwrite). */
#define AT_POSITION UINT64_MAX

/* Write all len bytes of buf at offset (pwrite), or at the file's position
   with AT_POSITION (write); -1 with errno. */
static int write_all(int fd, const void *buf, size_t len, uint64_t offset)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = offset == AT_POSITION ? write(fd, p, len) : pwrite(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        if (offset != AT_POSITION)
            offset += (uint64_t)n;
    }
    return 0;
}

static int fsync_directory(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/*
 * Replace the file with a snapshot of the table (minus dropped records),
 * durably. On failure the file is the previous snapshot, except when only the
 * final directory fsync failed: then it may already hold the new one
 * (snapshot_replaced says so, and the journal that followed the old one is
 * then never appended to again: compact()), which is harmless because the
 * table is the source of truth and the next commit writes a snapshot again.
 */
static int snapshot_write(json_store *st, int64_t now, mab_error *err)
{
    mab_error why = {0};
    char *text = snapshot_text(st, now, &why);
    if (!text)
        return mab_error_set(err, why.code, "%s", why.message);

    const char *step = "cannot create";
    int fd = open(st->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto fail;
    step = "cannot write";
    /* The text ends with a newline, which makes the file friendlier to cat and diff. */
    int rc = write_all(fd, text, strlen(text), AT_POSITION);
    if (rc != 0)
        goto fail;
    step = "cannot fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "cannot close";
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    step = "cannot rename";
    if (rename(st->tmp_path, st->path) != 0)
        goto fail;
    /* PATH is this snapshot now: a journal must follow it from here on. */
    mab_records_journal_header(text, strlen(text), st->header);
    st->snapshot_bytes = strlen(text);
    st->snapshot_replaced = 1;
    free(text);
    if (fsync_directory(st->dir_path) != 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot fsync directory %s: %s", st->path,
                             st->dir_path, strerror(errno));
    return MAB_OK;

fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(st->tmp_path); /* may fail (e.g. it was never created): nothing to undo then */
    free(text);
    return mab_error_set(err, MAB_ESTORAGE, "%s: %s temporary file %s: %s", st->path, step,
                         st->tmp_path, strerror(saved));
}

/* ---- the journal ------------------------------------------------------ */

/* A growable byte buffer for one entry's payload. */
typedef struct byte_buf {
    unsigned char *p;
    size_t n, cap;
    int failed; /* out of memory (or too large): the buffer is unusable */
} byte_buf;

static void buf_put(byte_buf *b, const void *data, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n && cap < SIZE_MAX / 2)
            cap *= 2;
        unsigned char *grown = cap - b->n >= n ? realloc(b->p, cap) : NULL;
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_u8(byte_buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    buf_put(b, &c, 1);
}

static void buf_u32(byte_buf *b, size_t v)
{
    unsigned char c[4];
    if (v > UINT32_MAX)
        b->failed = 1;
    for (int i = 0; i < 4; i++)
        c[i] = (unsigned char)((uint32_t)v >> (8 * i));
    buf_put(b, c, 4);
}

static void buf_u64(byte_buf *b, uint64_t v)
{
    unsigned char c[8];
    for (int i = 0; i < 8; i++)
        c[i] = (unsigned char)(v >> (8 * i));
    buf_put(b, c, 8);
}

/* Doubles as their bits: replay adds exactly what the writer added. */
static void buf_f64(byte_buf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    buf_u64(b, v);
}

static void buf_str(byte_buf *b, const char *s)
{
    size_t n = strlen(s);
    buf_u32(b, n);
    buf_put(b, s, n);
}

static void buf_totals(byte_buf *b, const mab_totals *t)
{
    buf_u64(b, t->pulls);
    buf_u64(b, t->rewards);
    buf_f64(b, t->reward_sum);
    buf_f64(b, t->reward_sum_sq);
}

/* Payload version 1: the arguments of one change() (see the top). */
#define ENTRY_VERSION 1

static void entry_encode(byte_buf *b, const json_store *st, const char *const *clear,
                         size_t n_clear, const mab_delta *deltas, size_t n_deltas,
                         const mab_stats_delta *stats, size_t n_stats,
                         const mab_bucket_delta *bk, size_t n_bk, int64_t keep_from)
{
    buf_u8(b, ENTRY_VERSION);
    buf_u32(b, n_clear);
    for (size_t i = 0; i < n_clear; i++)
        buf_str(b, clear[i]);
    buf_u64(b, (uint64_t)keep_from);
    buf_u32(b, n_deltas);
    for (size_t i = 0; i < n_deltas; i++) {
        buf_str(b, deltas[i].experiment);
        buf_str(b, deltas[i].arm);
        buf_totals(b, &deltas[i].add);
    }
    buf_u32(b, n_stats);
    for (size_t i = 0; i < n_stats; i++) {
        buf_str(b, stats[i].experiment);
        buf_u8(b, stats[i].arm != NULL);
        if (stats[i].arm)
            buf_str(b, stats[i].arm);
        buf_str(b, stats[i].layout);
        buf_u32(b, stats[i].n_values);
        for (size_t j = 0; j < stats[i].n_values; j++)
            buf_f64(b, stats[i].values[j]);
    }
    buf_u32(b, n_bk);
    for (size_t i = 0; i < n_bk; i++) {
        buf_str(b, bk[i].experiment);
        buf_str(b, bk[i].arm);
        buf_u64(b, (uint64_t)bk[i].bucket);
        buf_totals(b, &bk[i].add);
    }
    buf_u32(b, st->n_entry_claims);
    for (size_t i = 0; i < st->n_entry_claims; i++) {
        buf_put(b, st->entry_claims[i].assignment_id, MAB_ASSIGNMENT_ID_BYTES);
        buf_u64(b, (uint64_t)st->entry_claims[i].expires_at);
    }
    if (b->n > MAB_RECORDS_JOURNAL_ENTRY_MAX)
        b->failed = 1;
}

/* One entry read back: arrays and strings point into its own allocations. */
typedef struct entry_view {
    const unsigned char *p, *end;
    char *arena;   /* the strings, NUL-terminated (at most the payload's size) */
    size_t arena_used;
    double *values; /* every statistics value (at most payload / 8) */
    size_t values_used;
    int bad;
    const char **clear;
    size_t n_clear;
    int64_t keep_from;
    mab_delta *deltas;
    size_t n_deltas;
    mab_stats_delta *stats;
    size_t n_stats;
    mab_bucket_delta *bk;
    size_t n_bk;
    mab_record_claim *claims;
    size_t n_claims;
} entry_view;

static uint64_t get_u(entry_view *v, int bytes)
{
    if (v->bad || (size_t)(v->end - v->p) < (size_t)bytes) {
        v->bad = 1;
        return 0;
    }
    uint64_t x = 0;
    for (int i = bytes - 1; i >= 0; i--)
        x = x << 8 | v->p[i];
    v->p += bytes;
    return x;
}

static double get_f64(entry_view *v)
{
    uint64_t x = get_u(v, 8);
    double d;
    memcpy(&d, &x, sizeof d);
    return d;
}

static const char *get_str(entry_view *v)
{
    size_t n = (size_t)get_u(v, 4);
    if (v->bad || (size_t)(v->end - v->p) < n) {
        v->bad = 1;
        return "";
    }
    char *s = v->arena + v->arena_used;
    memcpy(s, v->p, n);
    s[n] = '\0';
    if (memchr(s, '\0', n))
        v->bad = 1; /* an id never holds a NUL */
    v->arena_used += n + 1;
    v->p += n;
    return s;
}

/* An array of count items, each at least min_bytes of payload; NULL (and
   bad set) when the payload cannot hold them or memory runs out. */
static void *get_array(entry_view *v, size_t count, size_t size, size_t min_bytes)
{
    if (v->bad || count > (size_t)(v->end - v->p) / min_bytes) {
        v->bad = 1;
        return NULL;
    }
    void *a = malloc((count ? count : 1) * size);
    if (!a)
        v->bad = 2;
    return a;
}

static void entry_view_free(entry_view *v)
{
    free(v->arena);
    free(v->values);
    free(v->clear);
    free(v->deltas);
    free(v->stats);
    free(v->bk);
    free(v->claims);
}

/* Decode a payload; 0, 1 (malformed) or 2 (out of memory). */
static int entry_decode(entry_view *v, const unsigned char *payload, size_t n)
{
    memset(v, 0, sizeof *v);
    v->p = payload;
    v->end = payload + n;
    v->arena = malloc(n + 1);
    v->values = malloc((n / 8 + 1) * sizeof *v->values);
    if (!v->arena || !v->values)
        return 2;
    if (get_u(v, 1) != ENTRY_VERSION)
        return 1;
    v->n_clear = (size_t)get_u(v, 4);
    if ((v->clear = get_array(v, v->n_clear, sizeof *v->clear, 4)))
        for (size_t i = 0; i < v->n_clear; i++)
            v->clear[i] = get_str(v);
    v->keep_from = (int64_t)get_u(v, 8);
    v->n_deltas = (size_t)get_u(v, 4);
    if ((v->deltas = get_array(v, v->n_deltas, sizeof *v->deltas, 40)))
        for (size_t i = 0; i < v->n_deltas && !v->bad; i++) {
            mab_delta *d = &v->deltas[i];
            d->experiment = get_str(v);
            d->arm = get_str(v);
            d->add.pulls = get_u(v, 8);
            d->add.rewards = get_u(v, 8);
            d->add.reward_sum = get_f64(v);
            d->add.reward_sum_sq = get_f64(v);
        }
    v->n_stats = (size_t)get_u(v, 4);
    if ((v->stats = get_array(v, v->n_stats, sizeof *v->stats, 13)))
        for (size_t i = 0; i < v->n_stats && !v->bad; i++) {
            mab_stats_delta *d = &v->stats[i];
            d->experiment = get_str(v);
            d->arm = get_u(v, 1) ? get_str(v) : NULL;
            d->layout = get_str(v);
            d->n_values = (size_t)get_u(v, 4);
            if (v->bad || d->n_values > (size_t)(v->end - v->p) / 8) {
                v->bad = 1;
                break;
            }
            double *values = v->values + v->values_used;
            for (size_t j = 0; j < d->n_values; j++)
                values[j] = get_f64(v);
            d->values = values;
            v->values_used += d->n_values;
        }
    v->n_bk = (size_t)get_u(v, 4);
    if ((v->bk = get_array(v, v->n_bk, sizeof *v->bk, 48)))
        for (size_t i = 0; i < v->n_bk && !v->bad; i++) {
            mab_bucket_delta *d = &v->bk[i];
            d->experiment = get_str(v);
            d->arm = get_str(v);
            d->bucket = (int64_t)get_u(v, 8);
            d->add.pulls = get_u(v, 8);
            d->add.rewards = get_u(v, 8);
            d->add.reward_sum = get_f64(v);
            d->add.reward_sum_sq = get_f64(v);
        }
    v->n_claims = (size_t)get_u(v, 4);
    if ((v->claims = get_array(v, v->n_claims, sizeof *v->claims, MAB_ASSIGNMENT_ID_BYTES + 8)))
        for (size_t i = 0; i < v->n_claims && !v->bad; i++) {
            memcpy(v->claims[i].assignment_id, v->p, MAB_ASSIGNMENT_ID_BYTES);
            v->p += MAB_ASSIGNMENT_ID_BYTES;
            v->claims[i].expires_at = (int64_t)get_u(v, 8);
        }
    if (!v->bad && v->p != v->end)
        v->bad = 1; /* bytes left over */
    return v->bad;
}

static int change(json_store *st, const char *const *clear, size_t n_clear,
                  const mab_delta *deltas, size_t n_deltas, const mab_stats_delta *stats,
                  size_t n_stats, const mab_bucket_delta *bk, size_t n_bk, int64_t keep_from,
                  int claimed, mab_error *err);
static size_t claim_find(const json_store *st, const uint8_t *id);
static int claim_reserve(json_store *st);
static void claim_append(json_store *st, const uint8_t *id, int64_t expires_at);

/* What replaying entries needs besides the payload. */
typedef struct replay_ctx {
    json_store *st;
    mab_error *err;
} replay_ctx;

/* mab_records_journal_entries' visitor: apply one entry to the table. An
   entry whose frame is whole but whose payload does not decode or apply is
   damage the checksum did not catch (or a writer's bug): MAB_ECORRUPT. */
static int replay_entry(void *ctx, const unsigned char *payload, size_t n, uint64_t offset)
{
    replay_ctx *r = ctx;
    json_store *st = r->st;
    entry_view v;
    int bad = entry_decode(&v, payload, n);
    int rc = MAB_OK;
    if (bad == 2) {
        rc = mab_error_set(r->err, MAB_ENOMEM, "%s: out of memory", st->journal_path);
    } else if (bad) {
        rc = mab_error_set(r->err, MAB_ECORRUPT,
                           "%s: the entry at byte %llu is malformed (its checksum holds)",
                           st->journal_path, (unsigned long long)offset);
    } else {
        for (size_t k = 0; k < v.n_claims && rc == MAB_OK; k++) {
            size_t at = claim_find(st, v.claims[k].assignment_id);
            if (at != SIZE_MAX)
                st->claims[at].expires_at = v.claims[k].expires_at;
            else if (!claim_reserve(st))
                rc = mab_error_set(r->err, MAB_ENOMEM, "%s: out of memory", st->journal_path);
            else
                claim_append(st, v.claims[k].assignment_id, v.claims[k].expires_at);
        }
        mab_error why = {0};
        st->replaying = 1;
        if (rc == MAB_OK &&
            (rc = change(st, v.clear, v.n_clear, v.deltas, v.n_deltas, v.stats, v.n_stats, v.bk,
                         v.n_bk, v.keep_from, v.n_claims > 0, &why)) != MAB_OK)
            rc = mab_error_set(r->err, rc == MAB_ENOMEM ? MAB_ENOMEM : MAB_ECORRUPT,
                               "%s: the entry at byte %llu does not apply: %s", st->journal_path,
                               (unsigned long long)offset, why.message);
        st->replaying = 0;
    }
    entry_view_free(&v);
    return rc;
}

/* The journal stops being usable: the next commit writes a snapshot. */
static void journal_drop(json_store *st)
{
    if (st->journal_fd >= 0)
        close(st->journal_fd);
    st->journal_fd = -1;
}

/* Compaction when the journal holds more than the snapshot (or 64 KiB):
   replay costs at most a second read of the snapshot's size, and the
   snapshot's cost is spread over the commits that filled the journal. */
#define JOURNAL_MIN_COMPACT (64 * 1024)

static uint64_t compact_threshold(const json_store *st)
{
    uint64_t size = st->snapshot_bytes > JOURNAL_MIN_COMPACT ? st->snapshot_bytes
                                                             : JOURNAL_MIN_COMPACT;
    return st->journal_end + size;
}

/* A new, empty journal following the current snapshot: written aside,
   fsynced and renamed over PATH.journal, so a crash leaves the old journal
   (which follows the old snapshot and is then ignored) or the new one. */
static int journal_reset(json_store *st, mab_error *err)
{
    journal_drop(st);
    const char *step = "cannot create";
    int fd = open(st->journal_tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto fail;
    step = "cannot write";
    if (write_all(fd, st->header, sizeof st->header, 0) != 0)
        goto fail;
    step = "cannot fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "cannot rename";
    if (rename(st->journal_tmp_path, st->journal_path) != 0)
        goto fail;
    step = "cannot fsync the directory of";
    if (fsync_directory(st->dir_path) != 0)
        goto fail;
    st->journal_fd = fd;
    st->journal_end = MAB_RECORDS_JOURNAL_HEADER;
    st->compact_at = compact_threshold(st);
    return MAB_OK;
fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(st->journal_tmp_path);
    return mab_error_set(err, MAB_ESTORAGE, "%s: %s %s: %s", st->path, step, st->journal_tmp_path,
                         strerror(saved));
}

/* Write the snapshot, then start a new journal after it. MAB_OK when the
   snapshot is in place (then it holds every commit, even if the new journal
   could not be started: the next commit tries again). */
static int compact(json_store *st, int64_t now, mab_error *err)
{
    st->snapshot_replaced = 0;
    int rc = snapshot_write(st, now, err);
    if (st->snapshot_replaced) {
        /* The old journal follows the old snapshot: never append to it again. */
        journal_drop(st);
        if (rc == MAB_OK) {
            mab_error ignored = {0};
            journal_reset(st, &ignored);
        }
    }
    return rc;
}

/* Append one entry and fsync it. On failure the journal is cut back to
   where it was, so the failed entry is never replayed; if even that fails
   the journal is dropped (the next commit writes a snapshot, which starts a
   new journal without it). */
static int journal_append(json_store *st, const byte_buf *payload, mab_error *err)
{
    size_t total = MAB_RECORDS_JOURNAL_FRAME + payload->n;
    unsigned char *frame = malloc(total);
    if (!frame)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    mab_records_journal_frame(payload->p, payload->n, frame);
    memcpy(frame + MAB_RECORDS_JOURNAL_FRAME, payload->p, payload->n);
    const char *step = "cannot write";
    int failed = write_all(st->journal_fd, frame, total, st->journal_end) != 0;
    if (!failed) {
        step = "cannot fsync";
        failed = fdatasync(st->journal_fd) != 0;
    }
    free(frame);
    if (!failed) {
        st->journal_end += total;
        return MAB_OK;
    }
    int saved = errno;
    if (ftruncate(st->journal_fd, (off_t)st->journal_end) != 0 || fdatasync(st->journal_fd) != 0)
        journal_drop(st);
    return mab_error_set(err, MAB_ESTORAGE, "%s: %s journal %s: %s", st->path, step,
                         st->journal_path, strerror(saved));
}

/*
 * Make one change durable: one journal entry, or a snapshot when there is
 * no usable journal. A journal that has grown past its threshold is then
 * compacted into a snapshot; that step failing (a full disk) does not fail
 * the commit, which is already durable: it is tried again once the journal
 * has grown by as much again.
 */
static int commit_write(json_store *st, const char *const *clear, size_t n_clear,
                        const mab_delta *deltas, size_t n_deltas, const mab_stats_delta *stats,
                        size_t n_stats, const mab_bucket_delta *bk, size_t n_bk,
                        int64_t keep_from, int64_t now, mab_error *err)
{
    if (st->replaying)
        return MAB_OK;
    if (st->journal_fd < 0)
        return compact(st, now, err);
    byte_buf b = {0};
    entry_encode(&b, st, clear, n_clear, deltas, n_deltas, stats, n_stats, bk, n_bk, keep_from);
    int rc = MAB_ENOMEM;
    if (b.failed && b.n <= MAB_RECORDS_JOURNAL_ENTRY_MAX) {
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    } else if (b.failed || st->journal_end + MAB_RECORDS_JOURNAL_FRAME + b.n >= st->compact_at) {
        /* An entry that would fill the journal (the first write of a large
           store, an import): one snapshot instead of the entry and then a
           snapshot. If that snapshot fails before replacing PATH, the entry
           is appended after all (when it fits in an entry). */
        rc = compact(st, now, err);
        if (rc != MAB_OK && !st->snapshot_replaced && !b.failed && st->journal_fd >= 0)
            rc = journal_append(st, &b, err);
    } else {
        rc = journal_append(st, &b, err);
    }
    free(b.p);
    if (rc == MAB_OK && st->journal_fd >= 0 && st->journal_end >= st->compact_at) {
        mab_error ignored = {0};
        if (compact(st, now, &ignored) != MAB_OK || st->journal_fd < 0)
            st->compact_at = compact_threshold(st);
    }
    return rc;
}

/* ---- reading the file ------------------------------------------------- */

/* Fill the (empty) table from the file's text; the reader checks every field. */
static int table_from_text(json_store *st, const char *text, size_t len, mab_error *err)
{
    mab_record *records;
    mab_record_claim *claims;
    mab_stats_record *stats;
    mab_bucket_record *bk;
    size_t n, n_claims, n_stats, n_bk;
    int rc = mab_records_parse_state(text, len, st->path, MAB_RECORDS_JSON_STORE, &records, &n,
                                     &claims, &n_claims, &stats, &n_stats, &bk, &n_bk, err);
    if (rc != MAB_OK)
        return rc;
    /* The reader refused duplicates and anything not finite; the table is
       sorted, the document grouped by experiment and arm in its own order. */
    if (n_bk && !(st->time_buckets.entries = malloc(n_bk * sizeof *st->time_buckets.entries)))
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < n_bk && rc == MAB_OK; i++) {
        const char *arm;
        char *key = key_alloc(bk[i].experiment, bk[i].arm, &arm);
        if (!key) {
            rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        st->time_buckets.entries[st->time_buckets.n++] = (time_bucket){
            key, arm, bk[i].start,
            {bk[i].pulls, bk[i].rewards, bk[i].reward_sum, bk[i].reward_sum_sq}, 0};
    }
    st->time_buckets.cap = st->time_buckets.n;
    mab_records_buckets_free(bk);
    if (st->time_buckets.n > 1)
        qsort(st->time_buckets.entries, st->time_buckets.n, sizeof *st->time_buckets.entries,
              time_bucket_order);
    for (size_t k = 0; k < n_claims && rc == MAB_OK; k++) {
        if (!claim_reserve(st))
            rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
        else
            claim_append(st, claims[k].assignment_id, claims[k].expires_at);
    }
    free(claims);
    for (size_t i = 0; i < n_stats && rc == MAB_OK; i++)
        if (!stats_append(&st->stats, stats[i].experiment, stats[i].arm, stats[i].layout,
                          stats[i].values, stats[i].n_values))
            rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    mab_records_stats_free(stats);
    for (size_t i = 0; i < n && rc == MAB_OK; i++) {
        record *r = table_insert(st, records[i].experiment, records[i].arm);
        if (!r) {
            rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        r->totals = (mab_totals){.pulls = records[i].pulls, .rewards = records[i].rewards,
                                 .reward_sum = records[i].reward_sum,
                                 .reward_sum_sq = records[i].reward_sum_sq};
    }
    mab_records_free(records);
    return rc;
}

/* Read the rest of an open file into a NUL-terminated buffer; -1 with errno. */
static int read_fd(int fd, char **text, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        if (n + 1 == cap) {
            char *grown = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                free(buf);
                errno = ENOMEM;
                return -1;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            free(buf);
            errno = saved;
            return -1;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/*
 * Replay the journal that follows the snapshot `text` (already in the
 * table). A missing journal, or one that follows another snapshot (a crash
 * between a snapshot and its new journal: that snapshot holds its commits),
 * replays nothing. Whole entries are applied in order; the first one cut
 * short or failing its checksum ends the journal (the writer was killed
 * appending it, or the bytes were damaged). The writer cuts such a tail off
 * and appends after the last whole entry; a read-only state leaves the file
 * as it is. A whole entry that does not decode or apply, or a header that is
 * not a journal's, is MAB_ECORRUPT naming the journal and the byte.
 */
static int journal_load(json_store *st, const char *text, size_t len, int writable,
                        mab_error *err)
{
    mab_records_journal_header(text, len, st->header);
    st->snapshot_bytes = len;
    int fd = open(st->journal_path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return MAB_OK; /* journal_fd stays -1: the first commit writes a snapshot */
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot open %s: %s", st->path,
                             st->journal_path, strerror(errno));
    }
    struct stat sb;
    char *data;
    size_t size;
    if (fstat(fd, &sb) != 0 || read_fd(fd, &data, &size) != 0) {
        int saved = errno;
        close(fd);
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot read %s: %s", st->path,
                             st->journal_path, strerror(saved));
    }
    int follows = 0;
    int rc = mab_records_journal_follows(st->journal_path, (unsigned char *)data, size, text, len,
                                         &follows, err);
    uint64_t end = MAB_RECORDS_JOURNAL_HEADER;
    if (rc == MAB_OK && follows) {
        replay_ctx r = {st, err};
        rc = mab_records_journal_entries((unsigned char *)data + MAB_RECORDS_JOURNAL_HEADER,
                                         size - MAB_RECORDS_JOURNAL_HEADER,
                                         MAB_RECORDS_JOURNAL_HEADER, replay_entry, &r, &end, NULL,
                                         0);
    }
    free(data);
    if (rc == MAB_OK && writable && follows && end < size &&
        (ftruncate(fd, (off_t)end) != 0 || fdatasync(fd) != 0))
        rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot cut the torn end off %s: %s", st->path,
                           st->journal_path, strerror(errno));
    if (rc != MAB_OK || (writable && !follows)) {
        close(fd); /* a writer starts a new journal with its first commit */
        return rc;
    }
    st->journal_fd = fd;
    st->journal_dev = sb.st_dev;
    st->journal_ino = sb.st_ino;
    st->journal_follows = follows;
    st->journal_end = st->read_end = end;
    st->compact_at = compact_threshold(st);
    return MAB_OK;
}

/* Load the file into the table; a missing file starts an empty store on disk. */
static int store_load_file(json_store *st, mab_error *err)
{
    char *text;
    size_t len;
    int fd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = snapshot_write(st, (int64_t)time(NULL), err);
        if (rc == MAB_OK)
            rc = journal_reset(st, err);
        return rc;
    }
    if (fd < 0 || read_fd(fd, &text, &len) != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot read: %s", st->path,
                             strerror(saved));
    }
    close(fd);
    /* An empty file, a NUL byte or anything else the reader refuses is
       MAB_ECORRUPT, and the file is left as it is. */
    int rc = table_from_text(st, text, len, err);
    if (rc == MAB_OK)
        rc = journal_load(st, text, len, 1, err);
    free(text);
    return rc;
}

/* ---- the lock --------------------------------------------------------- */

/* The pid the holder wrote into the lock file, or 0 when it cannot be read yet. */
static long lock_holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return (end != buf && pid > 0) ? pid : 0;
}

static int store_lock(json_store *st, mab_error *err)
{
    st->lock_fd = open(st->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot open lock file %s: %s", st->path,
                             st->lock_path, strerror(errno));
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return mab_error_set(err, MAB_ESTORAGE, "%s: cannot lock %s: %s", st->path,
                                 st->lock_path, strerror(errno));
        /* The holder writes its pid right after locking: give it a moment. */
        long pid = 0;
        for (int tries = 0; tries < 50 && (pid = lock_holder_pid(st->lock_fd)) == 0; tries++)
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        if (pid)
            return mab_error_set(err, MAB_EBUSY,
                                 "%s is in use by pid %ld (json_file storage is for one "
                                 "process; use lmdb to share)",
                                 st->path, pid);
        return mab_error_set(err, MAB_EBUSY, "%s is in use by another process (see %s)",
                             st->path, st->lock_path);
    }
    char pid_text[32];
    int n = snprintf(pid_text, sizeof pid_text, "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid_text, (size_t)n, 0) != n)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot write pid to %s: %s", st->path,
                             st->lock_path, strerror(errno));
    return MAB_OK;
}

/* ---- the plugin ------------------------------------------------------- */

static int store_paths(json_store *st, mab_error *err)
{
    if ((size_t)snprintf(st->tmp_path, sizeof st->tmp_path, "%s.tmp", st->path) >=
            sizeof st->tmp_path ||
        (size_t)snprintf(st->lock_path, sizeof st->lock_path, "%s.lock", st->path) >=
            sizeof st->lock_path ||
        (size_t)snprintf(st->journal_path, sizeof st->journal_path, "%s.journal", st->path) >=
            sizeof st->journal_path ||
        (size_t)snprintf(st->journal_tmp_path, sizeof st->journal_tmp_path, "%s.journal.tmp",
                         st->path) >= sizeof st->journal_tmp_path)
        return mab_error_set(err, MAB_ECONFIG, "%s: path is too long", st->path);
    const char *slash = strrchr(st->path, '/');
    if (!slash)
        snprintf(st->dir_path, sizeof st->dir_path, ".");
    else if (slash == st->path)
        snprintf(st->dir_path, sizeof st->dir_path, "/");
    else
        snprintf(st->dir_path, sizeof st->dir_path, "%.*s", (int)(slash - st->path), st->path);
    return MAB_OK;
}

static int json_open(mab_params *params, void **state, mab_error *err)
{
    json_store *st = store_new();
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "json_file: out of memory");
    int rc = mab_params_path(params, "path", NULL, st->path, sizeof st->path);
    if (rc != MAB_OK) {
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
        store_free(st);
        return rc;
    }
    if ((rc = store_paths(st, err)) != MAB_OK || (rc = store_lock(st, err)) != MAB_OK ||
        (rc = store_load_file(st, err)) != MAB_OK) {
        store_free(st);
        return rc;
    }
    *state = st;
    return MAB_OK;
}

/* A directory a new store could be created in; `what` names the store. */
static int directory_usable(const char *dir, const char *what, mab_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: directory %s: %s", what, dir,
                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return mab_error_set(err, MAB_ESTORAGE, "%s: %s is not a directory", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: directory %s is not writable: %s", what, dir,
                             strerror(errno));
    return MAB_OK;
}

/* Path and derived paths from params, without touching the file system. */
static int store_from_params(mab_params *params, json_store **out, mab_error *err)
{
    json_store *st = store_new();
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "json_file: out of memory");
    int rc = mab_params_path(params, "path", NULL, st->path, sizeof st->path);
    if (rc != MAB_OK)
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
    else
        rc = store_paths(st, err);
    if (rc != MAB_OK) {
        store_free(st);
        return rc;
    }
    *out = st;
    return MAB_OK;
}

#define READ_AGAIN 1

/* One read of the snapshot and its journal into the empty table of st;
   READ_AGAIN when the writer replaced the snapshot meanwhile. */
static int read_unlocked_once(json_store *st, mab_error *err)
{
    char *text;
    size_t len;
    struct stat sb, now;
    int fd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return directory_usable(st->dir_path, st->path, err);
    if (fd < 0 || fstat(fd, &sb) != 0 || read_fd(fd, &text, &len) != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot read: %s", st->path,
                             strerror(saved));
    }
    st->snapshot_fd = fd; /* keeps the inode, so a later one cannot take its number */
    st->snapshot_dev = sb.st_dev;
    st->snapshot_ino = sb.st_ino;
    int rc = table_from_text(st, text, len, err);
    if (rc == MAB_OK)
        rc = journal_load(st, text, len, 0, err);
    free(text);
    /* A journal that does not follow the snapshot read: a compaction
       between the two reads (read both again), or a crash's leftover. */
    if (rc == MAB_OK && st->journal_fd >= 0 && !st->journal_follows &&
        stat(st->path, &now) == 0 && (now.st_ino != sb.st_ino || now.st_dev != sb.st_dev))
        return READ_AGAIN;
    return rc;
}

/* The paths of `from` in a new empty state. */
static json_store *store_like(const json_store *from)
{
    json_store *st = store_new();
    if (st) {
        memcpy(st->path, from->path, sizeof st->path);
        store_paths(st, NULL);
        st->read_only = from->read_only;
    }
    return st;
}

/* Read the file as open() would, without the lock: a missing file is an
   empty store (when its directory could hold one). The snapshot and the
   journal it is followed by, as both were when read. On success *out is a
   new state (st itself, when it was given empty). */
static int store_read_unlocked(json_store *st, mab_error *err)
{
    int rc = read_unlocked_once(st, err);
    for (int tries = 0; rc == READ_AGAIN && tries < 8; tries++) {
        json_store *fresh = store_like(st);
        if (!fresh)
            return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
        rc = read_unlocked_once(fresh, err);
        json_store swap = *st;
        *st = *fresh;
        *fresh = swap;
        store_free(fresh);
    }
    return rc == READ_AGAIN ? MAB_OK : rc; /* still moving: what was read is consistent */
}

/* ABI 1.2 check: params and the file as it is; no lock, nothing created.
   The lock is not tried either: a server holding it is the normal case. */
static int json_check(mab_params *params, mab_error *err)
{
    json_store *st = NULL;
    int rc = store_from_params(params, &st, err);
    if (rc == MAB_OK) {
        rc = store_read_unlocked(st, err);
        store_free(st);
    }
    return rc;
}

/* ABI 1.2 read-only open: a snapshot of the file as last written (by rename,
   so never torn), read without the lock that a serving process holds. */
static int json_open_read_only(mab_params *params, void **state, mab_error *err)
{
    json_store *st = NULL;
    int rc = store_from_params(params, &st, err);
    if (rc == MAB_OK) {
        st->read_only = 1;
        if ((rc = store_read_unlocked(st, err)) != MAB_OK)
            store_free(st);
    }
    if (rc == MAB_OK)
        *state = st;
    return rc;
}

static int json_load(void *state, const char *experiment, const char *const *arm_ids,
                     size_t n_arms, mab_totals *out, mab_error *err)
{
    json_store *st = state;
    if (!experiment || (n_arms && (!arm_ids || !out)))
        return mab_error_set(err, MAB_EINVAL, "%s: load: NULL argument", st->path);
    for (size_t i = 0; i < n_arms; i++) {
        const record *r = arm_ids[i] ? table_find(st, experiment, arm_ids[i]) : NULL;
        if (r)
            out[i] = r->totals;
        else
            memset(&out[i], 0, sizeof out[i]);
    }
    return MAB_OK;
}

/* What a record held before the batch touched it. */
typedef struct undo_entry {
    size_t index;
    mab_totals before;
    int dropped;
} undo_entry;

static int check_deltas(const json_store *st, const mab_delta *deltas, size_t n, mab_error *err)
{
    if (n && !deltas)
        return mab_error_set(err, MAB_EINVAL, "%s: apply: NULL batch", st->path);
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        if (!d->experiment || !d->arm)
            return mab_error_set(err, MAB_EINVAL, "%s: apply: delta %zu has no experiment or arm",
                                 st->path, i);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq))
            return mab_error_set(err, MAB_EINVAL, "%s: apply: %s.%s: reward is not finite",
                                 st->path, d->experiment, d->arm);
    }
    return MAB_OK;
}

/* Add one delta; a dropped record is revived from zero. */
static int add_delta(json_store *st, const mab_delta *d, size_t n_before, undo_entry *undo,
                     size_t *n_undo, mab_error *err)
{
    record *r = table_find(st, d->experiment, d->arm);
    if (!r && !(r = table_insert(st, d->experiment, d->arm)))
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    size_t index = (size_t)(r - st->records);
    if (index < n_before)
        undo[(*n_undo)++] = (undo_entry){index, r->totals, r->dropped};
    mab_totals t = r->totals;
    if (r->dropped)
        memset(&t, 0, sizeof t);
    int too_big = d->add.pulls > JSON_STORE_COUNTER_MAX - t.pulls ||
                  d->add.rewards > JSON_STORE_COUNTER_MAX - t.rewards;
    t.pulls += d->add.pulls;
    t.rewards += d->add.rewards;
    t.reward_sum += d->add.reward_sum;
    t.reward_sum_sq += d->add.reward_sum_sq;
    if (too_big || !isfinite(t.reward_sum) || !isfinite(t.reward_sum_sq))
        return mab_error_set(err, MAB_ERANGE, "%s: %s.%s: counters would overflow", st->path,
                             d->experiment, d->arm);
    r->totals = t;
    r->dropped = 0;
    return MAB_OK;
}

/*
 * The one way the table changes: drop every record of the listed
 * experiments, add the deltas, write the snapshot. All or nothing: if
 * anything fails the table is put back as it was. apply, reset and replace
 * are all this.
 */
static int change(json_store *st, const char *const *clear, size_t n_clear,
                  const mab_delta *deltas, size_t n_deltas, const mab_stats_delta *stats,
                  size_t n_stats, const mab_bucket_delta *bk, size_t n_bk, int64_t keep_from,
                  int claimed, mab_error *err)
{
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc == MAB_OK)
        rc = check_time_buckets(st, bk, n_bk, err);
    if (rc != MAB_OK)
        return rc;
    if (n_stats && !stats)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_stats: NULL batch", st->path);
    for (size_t i = 0; i < n_stats; i++) {
        const mab_stats_delta *d = &stats[i];
        if (!d->experiment || !d->layout || !d->layout[0] || (d->arm && !d->arm[0]) ||
            (d->n_values && !d->values) || d->n_values > MAB_RECORDS_STATS_MAX)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: statistics %zu lack an experiment, a layout "
                                 "or values",
                                 st->path, i);
        for (size_t j = 0; j < d->n_values; j++)
            if (!isfinite(d->values[j]))
                return mab_error_set(err, MAB_EINVAL,
                                     "%s: apply_stats: %s.%s (%s): value %zu is not finite",
                                     st->path, d->experiment, d->arm ? d->arm : "(experiment)",
                                     d->layout, j);
    }
    /* The statistics after the change, built aside; written with the
       counters in one snapshot, adopted only once that write succeeded. */
    stats_table next;
    int stats_change = n_stats || n_clear;
    if (stats_change &&
        (rc = stats_next(st, &st->stats, clear, n_clear, stats, n_stats, &next, err)) != MAB_OK)
        return rc;
    /* The buckets after the change, likewise built aside. */
    time_bucket_table next_tb;
    size_t n_tb_removed = 0;
    int tb_change = n_bk || n_clear || keep_from != INT64_MIN;
    if (tb_change && (rc = time_buckets_next(st, &st->time_buckets, clear, n_clear, bk, n_bk,
                                             keep_from, &next_tb, &n_tb_removed, err)) != MAB_OK) {
        if (stats_change)
            stats_table_free(&next);
        return rc;
    }
    size_t n_before = st->n_records, n_undo = 0, n_dropped = 0;
    undo_entry *undo = malloc((n_deltas + n_before + 1) * sizeof *undo);
    if (!undo) {
        if (stats_change)
            stats_table_free(&next);
        if (tb_change)
            time_buckets_discard(&next_tb);
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    }
    for (size_t i = 0; i < n_before && n_clear; i++) {
        record *r = &st->records[i];
        for (size_t k = 0; k < n_clear; k++) {
            if (strcmp(r->experiment, clear[k]) == 0) {
                undo[n_undo++] = (undo_entry){i, r->totals, r->dropped};
                r->dropped = 1;
                n_dropped++;
                break;
            }
        }
    }
    for (size_t i = 0; i < n_deltas && rc == MAB_OK; i++)
        rc = add_delta(st, &deltas[i], n_before, undo, &n_undo, err);
    if (stats_change)
        st->snapshot_stats = &next;
    if (tb_change)
        st->snapshot_time_buckets = &next_tb;
    int64_t now = (int64_t)time(NULL);
    int write = n_deltas || n_dropped || n_stats || claimed || n_bk || n_tb_removed;
    if (rc == MAB_OK && write)
        rc = commit_write(st, clear, n_clear, deltas, n_deltas, stats, n_stats, bk, n_bk,
                          keep_from, now, err);
    st->snapshot_stats = NULL;
    st->snapshot_time_buckets = NULL;
    if (tb_change && rc == MAB_OK)
        time_buckets_adopt(st, &next_tb, clear, n_clear, keep_from);
    else if (tb_change)
        time_buckets_discard(&next_tb);
    if (rc == MAB_OK && write) {
        claims_forget_expired(st, now); /* the file no longer has them */
        for (size_t k = 0; k < n_clear; k++)
            changed_note(st, clear[k]);
        for (size_t i = 0; i < n_deltas; i++)
            changed_note(st, deltas[i].experiment);
        for (size_t i = 0; i < n_stats; i++)
            changed_note(st, stats[i].experiment);
        for (size_t i = 0; i < n_bk; i++)
            changed_note(st, bk[i].experiment);
    }
    if (stats_change && rc == MAB_OK) {
        stats_table_free(&st->stats);
        st->stats = next;
    } else if (stats_change) {
        stats_table_free(&next);
    }
    if (rc != MAB_OK) {
        /* Newest first, so a record touched twice ends with its oldest state. */
        while (n_undo > 0) {
            n_undo--;
            st->records[undo[n_undo].index].totals = undo[n_undo].before;
            st->records[undo[n_undo].index].dropped = undo[n_undo].dropped;
        }
        table_truncate(st, n_before);
    } else if (n_dropped) {
        size_t n = 0;
        for (size_t i = 0; i < st->n_records; i++) {
            if (st->records[i].dropped)
                free(st->records[i].experiment);
            else
                st->records[n++] = st->records[i];
        }
        st->n_records = n;
        index_relink(st);
    }
    free(undo);
    return rc;
}

static int json_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return change(state, NULL, 0, deltas, n_deltas, NULL, 0, NULL, 0, INT64_MIN, 0, err);
}

static int json_reset(void *state, const char *experiment, mab_error *err)
{
    json_store *st = state;
    if (!experiment)
        return mab_error_set(err, MAB_EINVAL, "%s: reset: NULL experiment", st->path);
    return change(st, &experiment, 1, NULL, 0, NULL, 0, NULL, 0, INT64_MIN, 0, err);
}

static int json_replace(void *state, const char *const *experiments, size_t n_experiments,
                        const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    json_store *st = state;
    for (size_t k = 0; k < n_experiments; k++)
        if (!experiments[k])
            return mab_error_set(err, MAB_EINVAL, "%s: replace: NULL experiment", st->path);
    return change(st, experiments, n_experiments, deltas, n_deltas, NULL, 0, NULL, 0, INT64_MIN, 0,
                  err);
}

static int json_apply_stats(void *state, const mab_delta *deltas, size_t n_deltas,
                            const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    return change(state, NULL, 0, deltas, n_deltas, stats, n_stats, NULL, 0, INT64_MIN, 0, err);
}

/* Counters, statistics and buckets in one commit; buckets before keep_from
   are dropped from the table, all of them at once (in memory; the journal
   entry carries keep_from, and the next snapshot leaves them out). */
static int json_apply_buckets(void *state, const mab_delta *deltas, size_t n_deltas,
                              const mab_stats_delta *stats, size_t n_stats,
                              const mab_bucket_delta *buckets, size_t n_buckets,
                              int64_t keep_from, mab_error *err)
{
    return change(state, NULL, 0, deltas, n_deltas, stats, n_stats, buckets, n_buckets,
                  keep_from, 0, err);
}

typedef struct bucket_hit {
    int64_t start;
    size_t arm_index;
    const mab_totals *add;
} bucket_hit;

static int bucket_hit_order(const void *a, const void *b)
{
    const bucket_hit *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->arm_index < y->arm_index ? -1 : x->arm_index > y->arm_index;
}

static int json_load_buckets(void *state, const char *experiment, const char *const *arm_ids,
                             size_t n_arms, int64_t since,
                             int (*visit)(void *ctx, size_t arm_index, int64_t bucket,
                                          const mab_totals *add),
                             void *ctx, mab_error *err)
{
    const json_store *st = state;
    if (!experiment || !visit || (n_arms && !arm_ids))
        return mab_error_set(err, MAB_EINVAL, "%s: load_buckets: NULL argument", st->path);
    const time_bucket_table *t = &st->time_buckets;
    /* Each listed arm's buckets since `since` are one run of the table. */
    size_t n_hits = 0;
    for (size_t i = 0; i < n_arms; i++) {
        if (!arm_ids[i])
            continue;
        for (size_t at = time_bucket_lower(t, experiment, arm_ids[i], since);
             at < t->n && strcmp(t->entries[at].key, experiment) == 0 &&
             strcmp(t->entries[at].arm, arm_ids[i]) == 0;
             at++)
            n_hits++;
    }
    if (n_hits == 0)
        return MAB_OK;
    bucket_hit *hits = malloc(n_hits * sizeof *hits);
    if (!hits)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    size_t n = 0;
    for (size_t i = 0; i < n_arms; i++) {
        if (!arm_ids[i])
            continue;
        for (size_t at = time_bucket_lower(t, experiment, arm_ids[i], since);
             at < t->n && strcmp(t->entries[at].key, experiment) == 0 &&
             strcmp(t->entries[at].arm, arm_ids[i]) == 0;
             at++)
            hits[n++] = (bucket_hit){t->entries[at].start, i, &t->entries[at].add};
    }
    qsort(hits, n, sizeof *hits, bucket_hit_order);
    int rc = MAB_OK;
    for (size_t k = 0; k < n && rc == MAB_OK; k++)
        rc = visit(ctx, hits[k].arm_index, hits[k].start, hits[k].add);
    free(hits);
    return rc;
}

static int json_scan_buckets(void *state,
                             int (*visit)(void *ctx, const char *experiment, const char *arm,
                                          int64_t bucket, const mab_totals *add),
                             void *ctx, mab_error *err)
{
    const json_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_buckets: NULL visitor", st->path);
    for (size_t i = 0; i < st->time_buckets.n; i++) {
        const time_bucket *e = &st->time_buckets.entries[i];
        int rc = visit(ctx, e->key, e->arm, e->start, &e->add);
        if (rc != 0)
            return rc;
    }
    return MAB_OK;
}

static void copy_one_stats(const json_store *st, const char *experiment, const char *arm,
                           const char *layout, size_t n, double *out)
{
    const stats_entry *e = stats_find(&st->stats, experiment, arm, layout);
    for (size_t j = 0; j < n; j++)
        out[j] = e && e->n_values == n ? e->values[j] : 0.0;
}

static int json_load_stats(void *state, const char *experiment, const char *layout,
                           const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                           double *arm_out, size_t n_experiment_stats, double *experiment_out,
                           mab_error *err)
{
    const json_store *st = state;
    if (!experiment || !layout || (n_arms && n_arm_stats && (!arm_ids || !arm_out)) ||
        (n_experiment_stats && !experiment_out))
        return mab_error_set(err, MAB_EINVAL, "%s: load_stats: NULL argument", st->path);
    for (size_t i = 0; i < n_arms && n_arm_stats; i++) {
        const stats_entry *e = arm_ids[i] ? stats_find(&st->stats, experiment, arm_ids[i], layout)
                                          : NULL;
        /* The layout tag fixes the count: another one is damage. */
        if (e && e->n_values != n_arm_stats)
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: policy statistics %s.%s (layout %s) hold %zu values, not "
                                 "%zu",
                                 st->path, experiment, arm_ids[i], layout, e->n_values,
                                 n_arm_stats);
        copy_one_stats(st, experiment, arm_ids[i], layout, n_arm_stats,
                       arm_out + i * n_arm_stats);
    }
    const stats_entry *own = stats_find(&st->stats, experiment, NULL, layout);
    if (own && n_experiment_stats && own->n_values != n_experiment_stats)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: policy statistics of %s (layout %s) hold %zu values, not %zu",
                             st->path, experiment, layout, own->n_values, n_experiment_stats);
    copy_one_stats(st, experiment, NULL, layout, n_experiment_stats, experiment_out);
    return MAB_OK;
}

static int json_scan_stats(void *state,
                           int (*visit)(void *ctx, const char *experiment, const char *arm,
                                        const char *layout, const double *values,
                                        size_t n_values),
                           void *ctx, mab_error *err)
{
    const json_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_stats: NULL visitor", st->path);
    for (size_t i = 0; i < st->stats.n; i++) {
        const stats_entry *e = &st->stats.entries[i];
        int rc = visit(ctx, e->experiment, e->arm, e->layout, e->values, e->n_values);
        if (rc != 0)
            return rc;
    }
    return MAB_OK;
}

static int json_scan(void *state,
                     int (*visit)(void *ctx, const char *experiment, const char *arm,
                                  const mab_totals *totals),
                     void *ctx, mab_error *err)
{
    const json_store *st = state;
    for (size_t i = 0; i < st->n_records; i++) {
        int rc = visit(ctx, st->records[i].experiment, st->records[i].arm, &st->records[i].totals);
        if (rc != 0)
            return rc;
    }
    return MAB_OK;
}

/* What a claim changed in the claim set, to undo it. */
typedef struct claim_undo {
    const uint8_t *id;
    int64_t previous; /* 0: the claim was appended */
} claim_undo;

/* The claims and the granted ones' deltas are one journal entry (see the
   top); on failure the claim set is put back as it was. */
static int json_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                      mab_error *err)
{
    (void)flags; /* every claim is written at once: one process, one file */
    json_store *st = state;
    if (n_claims && !claims)
        return mab_error_set(err, MAB_EINVAL, "%s: claim: NULL claims", st->path);
    size_t n_deltas = 0;
    for (size_t k = 0; k < n_claims; k++) {
        if (!claims[k].assignment_id)
            return mab_error_set(err, MAB_EINVAL, "%s: claim %zu: NULL assignment id", st->path,
                                 k);
        n_deltas += claims[k].n_deltas;
    }
    if (n_claims == 0)
        return MAB_OK;
    claim_undo *undo = malloc(n_claims * sizeof *undo);
    mab_delta *deltas = malloc((n_deltas ? n_deltas : 1) * sizeof *deltas);
    if (!undo || !deltas) {
        free(undo);
        free(deltas);
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    }
    int64_t now = (int64_t)time(NULL);
    size_t n_undo = 0, n_taken = 0;
    int rc = MAB_OK;
    for (size_t k = 0; k < n_claims && rc == MAB_OK; k++) {
        mab_claim *c = &claims[k];
        size_t at = claim_find(st, c->assignment_id);
        int earlier = 0;
        for (size_t u = 0; u < n_undo && !earlier; u++)
            earlier = memcmp(undo[u].id, c->assignment_id, MAB_ASSIGNMENT_ID_BYTES) == 0;
        if (earlier || (at != SIZE_MAX && st->claims[at].expires_at > now)) {
            c->result = MAB_ECLAIMED;
            continue;
        }
        if (at != SIZE_MAX) {
            /* Expired but not yet forgotten: renew it in place. */
            undo[n_undo++] = (claim_undo){c->assignment_id, st->claims[at].expires_at};
            st->claims[at].expires_at = c->expires_at;
        } else if (!claim_reserve(st)) {
            rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            break;
        } else {
            undo[n_undo++] = (claim_undo){c->assignment_id, 0};
            claim_append(st, c->assignment_id, c->expires_at);
        }
        c->result = MAB_OK;
        for (size_t i = 0; i < c->n_deltas; i++)
            deltas[n_taken++] = c->deltas[i];
    }
    /* The journal entry names the granted claims (new or renewed). */
    mab_record_claim *granted = NULL;
    if (rc == MAB_OK && n_undo && !(granted = malloc(n_undo * sizeof *granted)))
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
    for (size_t u = 0; u < n_undo && rc == MAB_OK; u++) {
        memcpy(granted[u].assignment_id, undo[u].id, MAB_ASSIGNMENT_ID_BYTES);
        granted[u].expires_at = st->claims[claim_find(st, undo[u].id)].expires_at;
    }
    if (rc == MAB_OK) {
        st->entry_claims = granted;
        st->n_entry_claims = n_undo;
        rc = change(st, NULL, 0, deltas, n_taken, NULL, 0, NULL, 0, INT64_MIN, 1, err);
        st->entry_claims = NULL;
        st->n_entry_claims = 0;
    }
    free(granted);
    if (rc != MAB_OK) {
        /* The file was not replaced (or, if only the directory fsync
           failed, the next write replaces it again): undo in memory,
           newest first. */
        while (n_undo > 0) {
            const claim_undo *u = &undo[--n_undo];
            size_t at = claim_find(st, u->id);
            if (at != SIZE_MAX && u->previous)
                st->claims[at].expires_at = u->previous;
            else if (at != SIZE_MAX) {
                st->claims[at] = st->claims[--st->n_claims];
                claim_reindex(st);
            }
        }
    }
    free(undo);
    free(deltas);
    return rc;
}

/* A clean close folds the journal into a new snapshot (nothing is lost
   when that fails: the journal is replayed at the next open). */
static void json_close(void *state)
{
    json_store *st = state;
    if (!st)
        return;
    if (!st->read_only && st->lock_fd >= 0 &&
        (st->journal_fd < 0 || st->journal_end > MAB_RECORDS_JOURNAL_HEADER))
        compact(st, (int64_t)time(NULL), NULL);
    store_free(st);
}

/*
 * ABI 1.6: the experiments changed since the last call. The writer names
 * those of its own commits (it is the store's only writer). A read-only
 * state follows the writer: it first applies the entries appended since it
 * last looked (an entry still being appended is read next time) and names
 * their experiments; when the writer has written a snapshot meanwhile (a
 * new snapshot or journal file), it reads both again and asks for
 * everything.
 */
static int json_changed(void *state, int *everything,
                        int (*visit)(void *ctx, const char *experiment), void *ctx,
                        mab_error *err)
{
    json_store *st = state;
    if (!everything || !visit)
        return mab_error_set(err, MAB_EINVAL, "%s: changed: NULL argument", st->path);
    int all = !st->told_everything;
    if (st->read_only) {
        struct stat a, b;
        int snapshot_moved = stat(st->path, &a) != 0 || st->snapshot_fd < 0 ||
                             a.st_ino != st->snapshot_ino || a.st_dev != st->snapshot_dev;
        int has_journal = stat(st->journal_path, &b) == 0;
        int journal_moved = has_journal != (st->journal_fd >= 0) ||
                            (has_journal && (b.st_ino != st->journal_ino ||
                                             b.st_dev != st->journal_dev));
        if (snapshot_moved || journal_moved) {
            json_store *fresh = store_like(st);
            if (!fresh)
                return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            int rc = store_read_unlocked(fresh, err);
            if (rc != MAB_OK) {
                store_free(fresh);
                return rc;
            }
            json_store swap = *st;
            *st = *fresh;
            *fresh = swap;
            store_free(fresh);
            all = 1;
        } else if (st->journal_fd >= 0 && st->journal_follows &&
                   b.st_size > (off_t)st->read_end) {
            size_t n = (size_t)((uint64_t)b.st_size - st->read_end);
            unsigned char *data = malloc(n);
            if (!data)
                return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            size_t got = 0;
            while (got < n) {
                ssize_t r = pread(st->journal_fd, data + got, n - got,
                                  (off_t)(st->read_end + got));
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
            replay_ctx r = {st, err};
            uint64_t end = st->read_end;
            int rc = mab_records_journal_entries(data, got, st->read_end, replay_entry, &r, &end,
                                                 NULL, 0);
            free(data);
            st->read_end = end;
            if (rc != MAB_OK) {
                st->changed_overflow = 1; /* what was applied is named next time */
                return rc;
            }
        }
    }
    all = all || st->changed_overflow;
    int rc = 0;
    for (size_t i = 0; !all && i < st->n_changed && rc == 0; i++)
        rc = visit(ctx, st->changed_ids[i]);
    if (rc != 0)
        return rc; /* the position stays: the same names next time */
    changed_forget(st);
    st->changed_overflow = 0;
    st->told_everything = 1;
    *everything = all;
    return MAB_OK;
}

static const mab_storage json_file_storage = {
    MAB_STORAGE_HEADER,
    "json_file",
    "one JSON snapshot and an append-only journal of commits; one writing process",
    json_open,
    json_load,
    json_apply,
    json_reset,
    json_close,
    0, /* refresh_ms: one process owns the file */
    json_scan,
    json_replace,
    json_check,
    json_open_read_only,
    json_claim,
    json_apply_stats,
    json_load_stats,
    json_scan_stats,
    json_apply_buckets,
    json_load_buckets,
    json_scan_buckets,
    json_changed,
};

MAB_STORAGE_DEFINE(json_file_storage)
