/*
 * write_behind.c - per-thread slots, publishing, and the write-behind queue
 * that hands batches of increments to the storage plugin (group commit,
 * splitting of refused batches, the background writer and refresh). See
 * engine.h for where counts live and why.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slots.h"

/* ---- slots ------------------------------------------------------------ */

_Thread_local mab__thread_slot mab__thread_slots[MAB__THREAD_CACHE];
_Thread_local unsigned mab__thread_slots_next;

/*
 * Rows. A slot's pending totals and statistics were dense over every arm of
 * the engine (issue 18: 720 MB a slot at 10^6 experiments of 10 arms, for
 * each of up to 64 threads). They are now in rows: an experiment's row is
 * taken from the slot's arena at its first event since the slot's last
 * publish, and publishing walks the rows taken (the dirty list), then
 * empties the arena. So a slot holds what its thread did between two
 * publishes (MAB__PUBLISH_OPS operations and MAB__PUBLISH_NS), plus one
 * 32-bit offset per experiment (row_at, 0: no row). Why an offset table and
 * not a hash of the experiments with rows: the choose and reward paths find
 * the row with one load (row_at[x->slot_index]), where the dense array took
 * one add; a hash probe would cost reward ~15 instructions of its 150
 * (docs/benchmarks.md). And offsets, not pointers: half the bytes per
 * experiment, and the arena can grow by realloc. Offset 0 is the zero row
 * (zero_units units, enough for any experiment's totals and statistics,
 * never written), so readers (build_view, windows, the reward check) read a
 * row without a test. A row taken marks its experiment dirty once, so an
 * event no longer tests whether its arm's totals were empty.
 */
int mab__slot_init(mab_engine *e, mab__slot *s)
{
    size_t stat_units = ((e->max_stats ? e->max_stats : 1) * sizeof(double) +
                         sizeof(mab_totals) - 1) / sizeof(mab_totals);
    s->zero_units = e->max_arms + stat_units;
    s->rows_cap = 2 * s->zero_units + 64;
    s->rows_used = s->zero_units;
    s->dirty_cap = 64;
    s->row_at = calloc(e->n_experiments ? e->n_experiments : 1, sizeof *s->row_at);
    s->rows = calloc(s->rows_cap, sizeof *s->rows);
    s->dirty = calloc(s->dirty_cap, sizeof *s->dirty);
    s->view = calloc(e->max_arms, sizeof *s->view);
    s->view_stats = calloc(e->max_stats ? e->max_stats : 1, sizeof *s->view_stats);
    s->delta_stats = calloc(e->max_stats ? e->max_stats : 1, sizeof *s->delta_stats);
    s->probabilities = calloc(e->max_arms, sizeof *s->probabilities);
    if (!s->row_at || !s->rows || !s->dirty || !s->view || !s->view_stats || !s->delta_stats ||
        !s->probabilities || s->zero_units > UINT32_MAX ||
        e->n_experiments > UINT32_MAX /* dirty holds 32-bit positions */) {
        free(s->row_at);
        free(s->rows);
        free(s->dirty);
        free(s->view);
        free(s->view_stats);
        free(s->delta_stats);
        free(s->probabilities);
        s->probabilities = NULL;
        s->row_at = NULL;
        s->rows = NULL;
        s->dirty = NULL;
        s->view = NULL;
        s->view_stats = s->delta_stats = NULL;
        return MAB_ENOMEM;
    }
    size_t index = (size_t)(s - e->slots);
    if (e->has_seed)
        mab__rng_seed(&s->rng, e->seed + 0x9e3779b97f4a7c15ULL * index);
    else
        mab__rng_seed_random(&s->rng);
    s->ready = 1;
    return MAB_OK;
}

int mab__slot_take_row(mab__slot *s, const mab__experiment *x)
{
    size_t stats = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
    size_t units = x->n_arms + (stats * sizeof(double) + sizeof(mab_totals) - 1) /
                                   sizeof(mab_totals);
    if (s->n_dirty == s->dirty_cap) {
        if (s->dirty_cap > UINT32_MAX / 2)
            return MAB_ENOMEM;
        uint32_t *dirty = realloc(s->dirty, 2 * (size_t)s->dirty_cap * sizeof *dirty);
        if (!dirty)
            return MAB_ENOMEM;
        s->dirty = dirty;
        s->dirty_cap *= 2;
    }
    /* Offsets are 32 bits (row_at): 128 GiB of rows. */
    if (units > UINT32_MAX - s->rows_used)
        return MAB_ENOMEM;
    if (units > s->rows_cap - s->rows_used) {
        size_t cap = 2 * s->rows_cap;
        if (cap < s->rows_used + units)
            cap = s->rows_used + units;
        mab_totals *rows = realloc(s->rows, cap * sizeof *rows);
        if (!rows)
            return MAB_ENOMEM;
        s->rows = rows;
        s->rows_cap = cap;
    }
    memset(s->rows + s->rows_used, 0, units * sizeof *s->rows);
    s->row_at[x->slot_index] = (uint32_t)s->rows_used;
    s->rows_used += units;
    s->dirty[s->n_dirty++] = (uint32_t)x->slot_index;
    return MAB_OK;
}

/* Move n pending statistics into the published ones from `at` and the
   write-behind queue (already-zero entries cost a test). */
static void stats_publish(mab_engine *e, const double *pending, size_t at, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double d = pending[i];
        if (d == 0.0)
            continue;
        atomic_add_double(&e->stats_unapplied[at + i], d);
        atomic_add_double(&e->stats_published[at + i], d);
    }
}

/* ---- the arms queue ---------------------------------------------------- */

/*
 * What is unapplied, and which arms a write must look at. A write
 * (mab__write_queued) used to take an `unapplied` total of every arm of
 * the engine (32 bytes in each mab__arm, two per arm of the config with the
 * sample-ratio ledger), under publish_lock held exclusively. Now the queue
 * holds the unapplied totals of the arms a publish or a requeue listed, and
 * nothing for the others: e->queue, entries {arm, totals} in the order
 * listed, found through queue_index (a hash on the arm index). Unapplied
 * statistics stay in stats_unapplied (one double each), their arms listed.
 *
 * The invariant: an arm with unapplied totals or statistics is listed once,
 * its totals in its entry. An entry may hold nothing (statistics only,
 * reset): a take skips it for the counters, as the full pass skipped idle
 * arms. An experiment's own statistics are non-zero only while its first
 * arm is listed (publish_row lists it, requeue_stats lists it again).
 *
 * Room. Listing needs memory, and a publish that could not list would lose
 * what it moved. So a publish reserves first: its slot's rows_used bounds
 * the arms it can list, and the queue grows to hold them before anything
 * moves; when it cannot, the publish moves nothing and says so (returns 0):
 * the slot keeps its rows, which stay in its own view and are published by
 * a later publish, and the callers that must be exact (flush, close, the
 * reads that gather, a reward under sync "always") report MAB_ENOMEM. The
 * take leaves the queue's capacity as it is and counts what it took in
 * queue_held, and every reservation keeps cap_queue >= n_queue + queue_held
 * (or total_arms, the most there can be), so a failed batch goes back
 * (requeue) without allocating: nothing is lost, and nothing is counted
 * twice (an entry taken is gone from the queue; a requeue adds it back
 * into the arm's one entry).
 *
 * Concurrency. The queue is guarded by queue_mu, taken always last (after
 * publish_lock and buckets_mu), so no cycle. Its writers:
 * - mab__slot_publish (and slot_publish_some) hold publish_lock shared and
 *   buckets_mu, then take queue_mu once for the whole publish: reserve, then
 *   add every row. Publishes were already serialised by buckets_mu, so
 *   holding queue_mu through them adds no serialisation;
 * - the take (mab__write_queued) holds publish_lock exclusively and flush_mu,
 *   and takes every entry at once under queue_mu;
 * - requeue and requeue_stats run after the take, outside publish_lock but
 *   under the take's flush_mu (never during a take), under queue_mu;
 * - the readers: mab__queue_unapplied, and refresh and load (engine.c,
 *   published = stored + unapplied) under flush_mu and publish_lock held
 *   exclusively, so no publish, take or requeue is half-way;
 * - reset (engine_stats.c) zeroes the entries of an experiment's arms under
 *   flush_mu and publish_lock exclusively.
 * Every add and every take of a total is under queue_mu, and a total is in
 * exactly one place at a time (a slot's rows, an entry, a batch on its way):
 * no increment is missed and none is taken twice.
 */

/* Below this, the queue keeps its memory between takes. */
#define QUEUE_KEEP 4096

static size_t queue_hash(uint32_t arm, size_t mask)
{
    return (size_t)(((uint64_t)arm * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & mask;
}

/* Caller holds queue_mu: index every entry again (queue_index has 2 *
   cap_queue slots). */
static void queue_rehash_locked(mab_engine *e)
{
    size_t mask = 2 * e->cap_queue - 1;
    memset(e->queue_index, 0, 2 * e->cap_queue * sizeof *e->queue_index);
    for (size_t k = 0; k < e->n_queue; k++) {
        size_t h = queue_hash(e->queue[k].arm, mask);
        while (e->queue_index[h])
            h = (h + 1) & mask;
        e->queue_index[h] = (uint32_t)(k + 1);
    }
}

/* Caller holds queue_mu: room for `more` arms listed beyond those listed
   and those on their way to storage (at most total_arms in all). 0, or -1
   when out of memory (the queue is as it was). */
static int queue_reserve_locked(mab_engine *e, size_t more)
{
    size_t want = e->n_queue + e->queue_held + more;
    if (want > e->total_arms)
        want = e->total_arms;
    if (want <= e->cap_queue)
        return 0;
    size_t cap = e->cap_queue ? 2 * e->cap_queue : 64;
    while (cap < want)
        cap *= 2;
    if (cap > UINT32_MAX / 2)
        return -1; /* positions are 32 bits */
    mab__queued *queue = realloc(e->queue, cap * sizeof *queue);
    if (!queue)
        return -1;
    e->queue = queue;
    uint32_t *index = malloc(2 * cap * sizeof *index);
    if (!index)
        return -1;
    free(e->queue_index);
    e->queue_index = index;
    e->cap_queue = cap;
    queue_rehash_locked(e);
    return 0;
}

/* Caller holds queue_mu: the entry of `arm`, or NULL when it is not listed. */
static mab__queued *queue_find_locked(const mab_engine *e, uint32_t arm)
{
    if (!e->cap_queue)
        return NULL;
    size_t mask = 2 * e->cap_queue - 1;
    for (size_t h = queue_hash(arm, mask); e->queue_index[h]; h = (h + 1) & mask)
        if (e->queue[e->queue_index[h] - 1].arm == arm)
            return &e->queue[e->queue_index[h] - 1];
    return NULL;
}

/* Caller holds queue_mu and has reserved room: the entry of `arm`, listed
   now (zero totals) when it was not. NULL only when the reservation was
   not made and the queue cannot grow (see the callers). */
static mab__queued *queue_list_locked(mab_engine *e, uint32_t arm)
{
    mab__queued *q = queue_find_locked(e, arm);
    if (q)
        return q;
    if (e->n_queue == e->cap_queue && queue_reserve_locked(e, 1) != 0)
        return NULL;
    size_t mask = 2 * e->cap_queue - 1, h = queue_hash(arm, mask);
    while (e->queue_index[h])
        h = (h + 1) & mask;
    q = &e->queue[e->n_queue++];
    e->queue_index[h] = (uint32_t)e->n_queue;
    q->arm = arm;
    memset(&q->t, 0, sizeof q->t);
    return q;
}

/* Caller holds queue_mu: add t to arm's unapplied totals. Room is
   reserved (a publish) or held (a requeue); should it not be, the
   increment is counted as dropped, with the reason, rather than lost
   silently. */
static void queue_add_locked(mab_engine *e, uint32_t arm, const mab_totals *t)
{
    mab__queued *q = queue_list_locked(e, arm);
    if (q) {
        totals_add(&q->t, t);
        return;
    }
    atomic_fetch_add(&e->dropped_deltas, 1);
    pthread_mutex_lock(&e->dropped_mu);
    mab_error_set(&e->last_drop, MAB_ENOMEM,
                  "out of memory for the write-behind queue: the increment of experiment "
                  "\"%s\", arm \"%s\" (%llu pulls, %llu rewards) was dropped",
                  mab__arm_experiment(e, arm)->id, mab__arm_id_at(e, arm),
                  (unsigned long long)t->pulls, (unsigned long long)t->rewards);
    pthread_mutex_unlock(&e->dropped_mu);
}

/* Caller holds queue_mu: forget the entries once they are taken, keeping
   the room for them (queue_held) until the write is over. */
static void queue_clear_locked(mab_engine *e)
{
    e->queue_held = e->n_queue;
    e->n_queue = 0;
    if (e->cap_queue)
        memset(e->queue_index, 0, 2 * e->cap_queue * sizeof *e->queue_index);
}

/* After a write: what it took is written, dropped or back in the queue. A
   burst (the first write of a large store) gives its memory back. */
static void queue_write_done(mab_engine *e)
{
    pthread_mutex_lock(&e->queue_mu);
    e->queue_held = 0;
    if (e->cap_queue > QUEUE_KEEP && !e->n_queue) {
        free(e->queue);
        free(e->queue_index);
        e->queue = NULL;
        e->queue_index = NULL;
        e->cap_queue = 0;
    }
    pthread_mutex_unlock(&e->queue_mu);
}

static int arm_order(const void *a, const void *b)
{
    uint32_t x = ((const mab__queued *)a)->arm, y = ((const mab__queued *)b)->arm;
    return (x > y) - (x < y);
}

void mab__queue_unapplied(mab_engine *e, uint64_t *pulls, uint64_t *rewards)
{
    *pulls = *rewards = 0;
    pthread_mutex_lock(&e->queue_mu);
    for (size_t k = 0; k < e->n_queue; k++) {
        *pulls += e->queue[k].t.pulls;
        *rewards += e->queue[k].t.rewards;
    }
    pthread_mutex_unlock(&e->queue_mu);
    /* And what slots still hold: rows a publish could not move (out of
       memory for the queue) are not in it. */
    for (unsigned i = 0; i < MAB__SLOTS; i++) {
        mab__slot *s = &e->slots[i];
        slot_lock(s);
        for (uint32_t k = 0; s->ready && k < s->n_dirty; k++) {
            const mab__experiment *x = &e->experiments[s->dirty[k]];
            const mab_totals *row = slot_row(s, x);
            for (size_t a = 0; a < x->n_arms; a++) {
                *pulls += row[a].pulls;
                *rewards += row[a].rewards;
            }
        }
        slot_unlock(s);
    }
}

void mab__queue_add_to(mab_engine *e, mab_totals *to, size_t first_arm, size_t n)
{
    pthread_mutex_lock(&e->queue_mu);
    if (n == 1 || n < e->n_queue / 8) {
        for (size_t j = 0; j < n; j++) {
            const mab__queued *q = queue_find_locked(e, (uint32_t)(first_arm + j));
            if (q)
                totals_add(&to[j], &q->t);
        }
    } else {
        for (size_t k = 0; k < e->n_queue; k++)
            if (e->queue[k].arm >= first_arm && e->queue[k].arm - first_arm < n)
                totals_add(&to[e->queue[k].arm - first_arm], &e->queue[k].t);
    }
    pthread_mutex_unlock(&e->queue_mu);
}

void mab__queue_forget(mab_engine *e, size_t first_arm, size_t n)
{
    pthread_mutex_lock(&e->queue_mu);
    for (size_t k = 0; k < e->n_queue; k++)
        if (e->queue[k].arm >= first_arm && e->queue[k].arm - first_arm < n)
            memset(&e->queue[k].t, 0, sizeof e->queue[k].t);
    pthread_mutex_unlock(&e->queue_mu);
}


/* How many dirty experiments ahead mab__slot_publish fetches (twice as far
   for the experiment itself). */
#define PUBLISH_AHEAD 4

/* Move x's row of a locked slot (publish_lock shared, buckets_mu and
   queue_mu held, room reserved) into the published totals, the write-behind
   queue and the bucket queue. */
static void publish_row(mab_engine *e, mab__slot *s, const mab__experiment *x)
{
    const mab_totals *row = slot_row(s, x);
    const double *stats = slot_stats(s, x);
    for (size_t j = 0; j < x->n_arms; j++) {
        const mab_totals *p = &row[j];
        mab__arm *a = &x->arms[j];
        uint32_t arm = (uint32_t)(x->first_arm + j);
        if (!totals_empty(p)) {
            queue_add_locked(e, arm, p);
            atomic_totals_add(&a->published, p);
            mab__buckets_add(e, arm, s->bucket_start, p);
        } else if (x->layout.arm_stats) {
            (void)queue_list_locked(e, arm); /* its statistics are taken with it */
        }
        if (x->layout.arm_stats)
            stats_publish(e, stats + j * x->layout.arm_stats, mab__arm_stats_at(x, j),
                          x->layout.arm_stats);
    }
    if (x->layout.experiment_stats) {
        stats_publish(e, stats + x->n_arms * x->layout.arm_stats, x->stats_at,
                      x->layout.experiment_stats);
        /* The write takes an experiment's own statistics with its arms'
           (stats_take): list its first arm so that it is looked at. */
        if (x->n_arms && !x->layout.arm_stats)
            (void)queue_list_locked(e, (uint32_t)x->first_arm);
    }
}

/* Caller holds publish_lock shared and buckets_mu: take queue_mu and room
   in the queue for every arm the slot's rows can hold. 0, or -1 (queue_mu
   not held) when out of memory. */
static int publish_begin(mab_engine *e, const mab__slot *s)
{
    pthread_mutex_lock(&e->queue_mu);
    if (queue_reserve_locked(e, s->rows_used - s->zero_units) == 0)
        return 0;
    pthread_mutex_unlock(&e->queue_mu);
    return -1;
}

/* Move a locked slot's pending totals into the published totals and the
   write-behind queue, and empty its rows. Returns the publish sequence
   number covering them, or 0 when the queue could not grow to list them
   (out of memory): then nothing moved, and the slot keeps its rows. */
uint64_t mab__slot_publish(mab_engine *e, mab__slot *s)
{
    pthread_rwlock_rdlock(&e->publish_lock);
    /* Every pending total is of the slot's bucket (slot_bucket). */
    if (s->n_dirty) {
        pthread_mutex_lock(&e->buckets_mu);
        if (publish_begin(e, s) != 0) {
            pthread_mutex_unlock(&e->buckets_mu);
            pthread_rwlock_unlock(&e->publish_lock);
            return 0;
        }
    }
    for (uint32_t k = 0; k < s->n_dirty; k++) {
        /* After choices on many experiments, each dirty one is a few cache
           misses (the experiment, its arms, its ring): fetch them ahead, so
           that they overlap rather than wait one after another. */
        if (k + 2 * PUBLISH_AHEAD < s->n_dirty)
            __builtin_prefetch(&e->experiments[s->dirty[k + 2 * PUBLISH_AHEAD]], 0);
        if (k + PUBLISH_AHEAD < s->n_dirty) {
            const mab__experiment *ahead = &e->experiments[s->dirty[k + PUBLISH_AHEAD]];
            __builtin_prefetch(ahead->arms, 1);
            __builtin_prefetch(ahead->ring, 0);
            if (ahead->n_arms)
                mab__buckets_prefetch(e, ahead, ahead->first_arm, s->bucket_start);
        }
        publish_row(e, s, &e->experiments[s->dirty[k]]);
        s->row_at[s->dirty[k]] = 0;
    }
    if (s->n_dirty) {
        pthread_mutex_unlock(&e->queue_mu);
        pthread_mutex_unlock(&e->buckets_mu);
        mab__view_changed(e);
    }
    s->n_dirty = 0;
    s->rows_used = s->zero_units;
    s->pending_ops = 0;
    s->last_publish_ns = now_ns();
    /* Release: a writer that reads this number finds the adds above. */
    uint64_t seq = atomic_fetch_add_explicit(&e->publish_seq, 1, memory_order_release) + 1;
    pthread_rwlock_unlock(&e->publish_lock);
    return seq;
}

static int publish_failed(mab_error *err, const char *what)
{
    return mab_error_set(err, MAB_ENOMEM,
                         "%sout of memory for the write-behind queue: a thread's pending pulls "
                         "and rewards could not be published (they stay pending in its slot, "
                         "and a later publish moves them)",
                         what);
}

/* Publish every thread's pending totals, so reads after this are exact.
   MAB_ENOMEM when a slot's could not be (each slot is tried). */
int mab__gather_all(mab_engine *e, mab_error *err)
{
    int rc = MAB_OK;
    for (unsigned i = 0; i < MAB__SLOTS; i++) {
        mab__slot *s = &e->slots[i];
        slot_lock(s);
        if (s->ready && s->pending_ops && mab__slot_publish(e, s) == 0)
            rc = MAB_ENOMEM;
        slot_unlock(s);
    }
    return rc == MAB_OK ? MAB_OK : publish_failed(err, "");
}

/* Whether x is one of xs[0..n). */
static int experiment_in(const mab__experiment *const *xs, size_t n, const mab__experiment *x)
{
    for (size_t i = 0; i < n; i++)
        if (xs[i] == x)
            return 1;
    return 0;
}

/* Publish what a locked slot holds of experiments xs[0..n) only, as
   mab__slot_publish does for all (publish_row), and take them out of its
   dirty list. The rest stays pending. Their rows' space stays taken in the
   arena until the slot's next publish empties it. */
static int slot_publish_some(mab_engine *e, mab__slot *s, const mab__experiment *const *xs,
                             size_t n)
{
    uint32_t kept = 0;
    /* Most slots hold nothing of the experiment read: look before locking
       (publish_lock and buckets_mu are the busy threads' publishes' too). */
    while (kept < s->n_dirty && !experiment_in(xs, n, &e->experiments[s->dirty[kept]]))
        kept++;
    if (kept == s->n_dirty)
        return MAB_OK;
    pthread_rwlock_rdlock(&e->publish_lock);
    pthread_mutex_lock(&e->buckets_mu);
    if (publish_begin(e, s) != 0) {
        pthread_mutex_unlock(&e->buckets_mu);
        pthread_rwlock_unlock(&e->publish_lock);
        return MAB_ENOMEM;
    }
    for (uint32_t k = kept; k < s->n_dirty; k++) {
        uint32_t at = s->dirty[k];
        if (!experiment_in(xs, n, &e->experiments[at])) {
            s->dirty[kept++] = at;
            continue;
        }
        publish_row(e, s, &e->experiments[at]);
        s->row_at[at] = 0;
    }
    pthread_mutex_unlock(&e->queue_mu);
    pthread_mutex_unlock(&e->buckets_mu);
    s->n_dirty = kept;
    mab__view_changed(e); /* other slots' kept views of these arms are stale */
    atomic_fetch_add_explicit(&e->publish_seq, 1, memory_order_release);
    pthread_rwlock_unlock(&e->publish_lock);
    return MAB_OK;
}

/*
 * Publish every thread's pending totals of experiments xs[0..n) (NULLs
 * skipped): a read of one experiment (mab_stats, mab_policy_stats,
 * mab_rules) is then exact for it, whatever thread chose or rewarded, and
 * costs a scan of each busy slot's dirty list (4 bytes an experiment with
 * events) plus the publishing of that experiment's row, not the publishing
 * of everything every thread holds (mab__gather_all: every pending arm's
 * atomic adds, cache misses and bucket entries, under the same slot locks
 * the threads wait on).
 */
int mab__gather_experiments(mab_engine *e, const mab__experiment *const *xs, size_t n,
                            mab_error *err)
{
    int rc = MAB_OK;
    for (unsigned i = 0; i < MAB__SLOTS; i++) {
        mab__slot *s = &e->slots[i];
        slot_lock(s);
        if (s->ready && s->n_dirty && slot_publish_some(e, s, xs, n) != MAB_OK)
            rc = MAB_ENOMEM;
        slot_unlock(s);
    }
    if (rc == MAB_OK)
        return MAB_OK;
    char what[160];
    snprintf(what, sizeof what, "experiments.%s: ", n && xs[0] ? xs[0]->id : "?");
    return publish_failed(err, what);
}

int mab__gather_experiment(mab_engine *e, const mab__experiment *x, mab_error *err)
{
    const mab__experiment *xs[4] = {x, x->part->ledger, x->part->late_ledger, x->srm};
    return mab__gather_experiments(e, xs, 4, err);
}

/* ---- write-behind ----------------------------------------------------- */

/* Take n unapplied statistics from `at` into the stats batch as one entry
   (none when they are all zero). */
static void stats_take_one(mab_engine *e, size_t *k, size_t *used, const char *experiment,
                           const char *arm, const char *layout, size_t at, size_t n)
{
    double *values = &e->stats_batch_values[*used];
    int any = 0;
    for (size_t j = 0; j < n; j++) {
        values[j] = atomic_exchange_explicit(&e->stats_unapplied[at + j], 0.0,
                                             memory_order_relaxed);
        any |= values[j] != 0.0;
    }
    if (!any)
        return;
    e->stats_batch[*k] = (mab_stats_delta){experiment, arm, layout, values, n};
    e->stats_batch_at[*k] = at;
    ++*k;
    *used += n;
}

/* Fill the stats batch from the unapplied statistics; returns its length.
   Caller holds queue_mu: the statistics of the listed arms (sorted) and of
   their experiments, in the order of the full pass (an experiment's arms,
   then its own). An experiment whose own statistics change has its first
   arm listed (publish_row, requeue_stats). */
static size_t stats_take(mab_engine *e)
{
    size_t k = 0, used = 0;
    if (!e->total_stats)
        return 0;
    for (size_t q = 0; q < e->n_queue; q++) {
        uint32_t i = e->queue[q].arm;
        mab__experiment *x = mab__arm_experiment(e, i);
        if (x->layout.arm_stats) {
            size_t j = i - x->first_arm;
            stats_take_one(e, &k, &used, x->id, mab__arm_id(x, j), x->part->layout_tag,
                           mab__arm_stats_at(x, j), x->layout.arm_stats);
        }
        /* The experiment's own after its last listed arm. */
        if (x->layout.experiment_stats &&
            (q + 1 == e->n_queue || mab__arm_experiment(e, e->queue[q + 1].arm) != x))
            stats_take_one(e, &k, &used, x->id, NULL, x->part->layout_tag, x->stats_at,
                           x->layout.experiment_stats);
    }
    return k;
}

/* Give batch entries [from, from + n) back to the queue, to be offered again
   (into their arms' entries: see "the arms queue"; the room is held). */
static void requeue(mab_engine *e, size_t from, size_t n)
{
    pthread_mutex_lock(&e->queue_mu);
    for (size_t k = from; k < from + n; k++)
        queue_add_locked(e, (uint32_t)e->batch_arm[k], &e->batch[k].add);
    pthread_mutex_unlock(&e->queue_mu);
}

/* Forget batch entry k, which storage refused on its own: count it, keep
   the reason, and take it out of the published totals too, so that this
   process's counts stay those of the store. */
static void drop_delta(mab_engine *e, size_t k, const mab_error *why)
{
    const mab_delta *d = &e->batch[k];
    mab__arm *a = mab__arm_at(e, e->batch_arm[k]);
    atomic_fetch_sub_explicit(&a->published.pulls, d->add.pulls, memory_order_relaxed);
    atomic_fetch_sub_explicit(&a->published.rewards, d->add.rewards, memory_order_relaxed);
    if (isfinite(d->add.reward_sum) && isfinite(d->add.reward_sum_sq)) {
        atomic_add_double(&a->published.reward_sum, -d->add.reward_sum);
        atomic_add_double(&a->published.reward_sum_sq, -d->add.reward_sum_sq);
    }
    mab__view_changed(e);
    if (e->arm_drops) /* sync "always" only: what its rewards compare */
        atomic_fetch_add(&e->arm_drops[e->batch_arm[k]], 1);
    atomic_fetch_add(&e->dropped_deltas, 1);
    pthread_mutex_lock(&e->dropped_mu);
    mab_error_set(&e->last_drop, why->code,
                  "storage refused the increment of experiment \"%s\", arm \"%s\" (%llu "
                  "pulls, %llu rewards, reward sum %g, sum of squares %g) and it was dropped: %s",
                  d->experiment, d->arm, (unsigned long long)d->add.pulls,
                  (unsigned long long)d->add.rewards, d->add.reward_sum, d->add.reward_sum_sq,
                  why->message);
    pthread_mutex_unlock(&e->dropped_mu);
}

/*
 * Apply batch entries [from, from + n). When storage refuses them as
 * invalid, apply each half on its own, down to the single delta at fault,
 * which is dropped: the rest is written. Entries that fail for any other
 * reason (the store is unavailable) go back to the queue whole. Returns
 * MAB_OK when every entry was written or dropped, else the first such error.
 */
static int apply_split(mab_engine *e, size_t from, size_t n, mab_error *err)
{
    mab_error why = {0, ""};
    int rc = e->storage->apply(e->storage_state, e->batch + from, n, &why);
    if (rc == MAB_OK)
        return MAB_OK;
    if (!refused_as_invalid(rc)) {
        requeue(e, from, n);
        return mab_error_set(err, rc, "%s", why.message);
    }
    if (n == 1) {
        if (!why.message[0])
            mab_error_set(&why, rc, "%s", mab_strerror(rc));
        drop_delta(e, from, &why);
        return MAB_OK;
    }
    size_t half = n / 2;
    int first = apply_split(e, from, half, err);
    mab_error second_err;
    int second = apply_split(e, from + half, n - half, first == MAB_OK ? err : &second_err);
    return first != MAB_OK ? first : second;
}

/* Give stats batch entries [from, from + n) back to the queue. */
static void requeue_stats(mab_engine *e, size_t from, size_t n)
{
    pthread_mutex_lock(&e->queue_mu);
    for (size_t k = from; k < from + n; k++) {
        const mab_stats_delta *d = &e->stats_batch[k];
        for (size_t j = 0; j < d->n_values; j++)
            atomic_add_double(&e->stats_unapplied[e->stats_batch_at[k] + j], d->values[j]);
        /* Listed again through its arm, or its experiment's first arm (a
           take covers an experiment's own statistics with any of its arms).
           The entry names them by id: a failed write looks them up. */
        long x = mab__id_index_find(&e->experiment_index, e->experiments,
                                    sizeof *e->experiments, d->experiment);
        const mab__experiment *ex = x >= 0 ? &e->experiments[x] : NULL;
        long a = ex && d->arm ? mab__id_index_find(&ex->arm_index, ex->arm_ids, sizeof *ex->arm_ids,
                                                    d->arm)
                              : 0;
        /* (The entry is ours, so both are found; its arm was listed at the
           take, so the room is held.) */
        if (ex && a >= 0 && ex->n_arms)
            (void)queue_list_locked(e, (uint32_t)(ex->first_arm + (size_t)a));
    }
    pthread_mutex_unlock(&e->queue_mu);
}

/* Forget stats batch entry k, which storage refused on its own (as
   drop_delta does for counters). */
static void drop_stats(mab_engine *e, size_t k, const mab_error *why)
{
    const mab_stats_delta *d = &e->stats_batch[k];
    for (size_t j = 0; j < d->n_values; j++)
        if (isfinite(d->values[j]))
            atomic_add_double(&e->stats_published[e->stats_batch_at[k] + j], -d->values[j]);
    atomic_fetch_add(&e->dropped_deltas, 1);
    pthread_mutex_lock(&e->dropped_mu);
    mab_error_set(&e->last_drop, why->code,
                  "storage refused the policy statistics of experiment \"%s\"%s%s%s (layout "
                  "%s) and they were dropped: %s",
                  d->experiment, d->arm ? ", arm \"" : "", d->arm ? d->arm : "",
                  d->arm ? "\"" : "", d->layout, why->message);
    pthread_mutex_unlock(&e->dropped_mu);
}

/*
 * A batch holding policy statistics: counters and statistics go to storage
 * in one apply_stats() call, so they commit together. When storage refuses
 * it as invalid, the counters go through apply_split() alone and each
 * statistics record is offered on its own, dropped when refused as invalid:
 * a poisoned record costs only itself (that batch then loses the
 * all-together commit of counters and statistics, nothing else).
 */
static int apply_with_stats(mab_engine *e, size_t n, size_t n_stats, mab_error *err)
{
    mab_error why = {0, ""};
    int rc = e->storage->apply_stats(e->storage_state, e->batch, n, e->stats_batch, n_stats,
                                     &why);
    if (rc == MAB_OK)
        return MAB_OK;
    if (!refused_as_invalid(rc)) {
        requeue(e, 0, n);
        requeue_stats(e, 0, n_stats);
        return mab_error_set(err, rc, "%s", why.message);
    }
    rc = n ? apply_split(e, 0, n, err) : MAB_OK;
    if (rc != MAB_OK) {
        requeue_stats(e, 0, n_stats);
        return rc;
    }
    for (size_t k = 0; k < n_stats; k++) {
        mab_error one = {0, ""};
        int one_rc = e->storage->apply_stats(e->storage_state, NULL, 0, &e->stats_batch[k], 1,
                                             &one);
        if (one_rc == MAB_OK)
            continue;
        if (!refused_as_invalid(one_rc)) {
            requeue_stats(e, k, n_stats - k);
            return mab_error_set(err, one_rc, "%s", one.message);
        }
        if (!one.message[0])
            mab_error_set(&one, one_rc, "%s", mab_strerror(one_rc));
        drop_stats(e, k, &one);
    }
    return MAB_OK;
}

/*
 * Apply bucket batch entries [from, from + n) alone, splitting them as
 * apply_split() splits counters: a bucket increment storage refuses as
 * invalid on its own is dropped alone.
 */
static int apply_buckets_split(mab_engine *e, size_t from, size_t n, int64_t keep_from,
                               mab_error *err)
{
    mab_error why = {0, ""};
    int rc = e->storage->apply_buckets(e->storage_state, NULL, 0, NULL, 0, e->bucket_batch + from,
                                       n, keep_from, &why);
    if (rc == MAB_OK)
        return MAB_OK;
    if (!refused_as_invalid(rc)) {
        mab__buckets_requeue(e, from, n);
        return mab_error_set(err, rc, "%s", why.message);
    }
    if (n == 1) {
        if (!why.message[0])
            mab_error_set(&why, rc, "%s", mab_strerror(rc));
        mab__buckets_drop(e, from, &why);
        return MAB_OK;
    }
    size_t half = n / 2;
    int first = apply_buckets_split(e, from, half, keep_from, err);
    mab_error second_err;
    int second = apply_buckets_split(e, from + half, n - half, keep_from,
                                     first == MAB_OK ? err : &second_err);
    return first != MAB_OK ? first : second;
}

/*
 * A batch holding bucket increments: counters, statistics and buckets go
 * to storage in one apply_buckets() call. When storage refuses it as
 * invalid, the counters and statistics go their own way (apply_with_stats,
 * apply_split) and the bucket increments are offered alone, split down to
 * the one at fault (apply_buckets_split).
 */
static int apply_with_buckets(mab_engine *e, size_t n, size_t n_stats, size_t n_buckets,
                              mab_error *err)
{
    int64_t now = mab__engine_now(e, NULL) / 1000000000LL;
    int64_t keep_from = now - e->retention_seconds;
    mab_error why = {0, ""};
    int rc = e->storage->apply_buckets(e->storage_state, e->batch, n, e->stats_batch, n_stats,
                                       e->bucket_batch, n_buckets, keep_from, &why);
    if (rc == MAB_OK)
        return MAB_OK;
    if (!refused_as_invalid(rc)) {
        requeue(e, 0, n);
        requeue_stats(e, 0, n_stats);
        mab__buckets_requeue(e, 0, n_buckets);
        return mab_error_set(err, rc, "%s", why.message);
    }
    rc = n_stats ? apply_with_stats(e, n, n_stats, err) : n ? apply_split(e, 0, n, err) : MAB_OK;
    if (rc != MAB_OK) {
        mab__buckets_requeue(e, 0, n_buckets);
        return rc;
    }
    return apply_buckets_split(e, 0, n_buckets, keep_from, err);
}

/*
 * Room for batch entry n: the batch grows with the arms that changed since
 * the last write (doubling), rather than holding one entry per arm of the
 * engine (56 bytes an arm, most of them idle at a million experiments).
 * -1 when out of memory.
 */
static int batch_reserve(mab_engine *e, size_t n)
{
    if (n < e->cap_batch)
        return 0;
    size_t cap = e->cap_batch ? 2 * e->cap_batch : 64;
    if (cap > e->total_arms)
        cap = e->total_arms > n ? e->total_arms : n + 1;
    mab_delta *batch = realloc(e->batch, cap * sizeof *batch);
    if (batch)
        e->batch = batch;
    size_t *arms = batch ? realloc(e->batch_arm, cap * sizeof *arms) : NULL;
    if (!arms)
        return -1;
    e->batch_arm = arms;
    e->cap_batch = cap;
    return 0;
}

/* After a write: a batch grown past BATCH_KEEP entries (a burst, or the first
   write of a large store) is given back rather than held until close. */
#define BATCH_KEEP 4096

static void batch_trim(mab_engine *e)
{
    if (e->cap_batch <= BATCH_KEEP)
        return;
    free(e->batch);
    free(e->batch_arm);
    e->batch = NULL;
    e->batch_arm = NULL;
    e->cap_batch = 0;
}

/* Hand everything queued to storage as one batch. Caller holds flush_mu.
   On failure the batch goes back into the queue, to be offered again,
   except the deltas storage refused as invalid (see apply_split). */
int mab__write_queued(mab_engine *e, mab_error *err)
{
    /* Acquire: every publish numbered up to seq has added its increments. */
    /* Exclusive: a publish adds an arm's four totals one by one, so taking
       them while one is half-way would split its reward count from its
       reward sum across two batches (and a crash between the two would
       store a record whose count and sum disagree). The loop does no I/O. */
    pthread_rwlock_wrlock(&e->publish_lock);
    uint64_t seq = atomic_load_explicit(&e->publish_seq, memory_order_acquire);
    /* The listed arms only (see "the arms queue"), in arm order, as the full
       pass gave them. */
    pthread_mutex_lock(&e->queue_mu);
    size_t n = 0;
    for (size_t q = 0; q < e->n_queue; q++)
        n += !totals_empty(&e->queue[q].t);
    /* Room for the batch first: out of memory, nothing is taken. */
    int out_of_memory = batch_reserve(e, 0) != 0; /* never a NULL batch, even empty */
    while (!out_of_memory && e->cap_batch < n)
        out_of_memory = batch_reserve(e, e->cap_batch) != 0;
    if (out_of_memory) {
        pthread_mutex_unlock(&e->queue_mu);
        pthread_rwlock_unlock(&e->publish_lock);
        return mab_error_set(err, MAB_ENOMEM,
                             "out of memory for the write batch (%zu changed arms); "
                             "everything stays queued",
                             n);
    }
    if (e->n_queue > 1) {
        qsort(e->queue, e->n_queue, sizeof *e->queue, arm_order);
        queue_rehash_locked(e); /* stats_take reads the queue in this order */
    }
    n = 0;
    for (size_t q = 0; q < e->n_queue; q++) {
        const mab__queued *t = &e->queue[q];
        if (totals_empty(&t->t))
            continue;
        e->batch[n].experiment = mab__arm_experiment(e, t->arm)->id;
        e->batch[n].arm = mab__arm_id_at(e, t->arm);
        e->batch[n].add = t->t;
        e->batch_arm[n++] = t->arm;
    }
    /* Under the same lock: a publish adds an arm's statistics one by one too. */
    size_t n_stats = stats_take(e);
    queue_clear_locked(e);
    pthread_mutex_unlock(&e->queue_mu);
    /* And the bucket increments of the same publishes. */
    size_t n_buckets = e->buckets_stored ? mab__buckets_take(e) : 0;
    pthread_rwlock_unlock(&e->publish_lock);
    if ((!n && !n_stats && !n_buckets) || !e->storage) {
        queue_write_done(e);
        atomic_store(&e->durable_seq, seq);
        return MAB_OK;
    }
    uint64_t dropped_before = atomic_load(&e->dropped_deltas);
    int rc = n_buckets ? apply_with_buckets(e, n, n_stats, n_buckets, err)
             : n_stats ? apply_with_stats(e, n, n_stats, err)
                       : apply_split(e, 0, n, err);
    if (rc != MAB_OK || atomic_load(&e->dropped_deltas) != dropped_before)
        atomic_fetch_add(&e->flush_failures, 1);
    queue_write_done(e);
    if (rc == MAB_OK)
        atomic_store(&e->durable_seq, seq);
    batch_trim(e);
    return rc;
}

/*
 * Group commit: return once publish `seq` is durable. The first caller to
 * find no commit under way leads one: it writes everything published so far
 * (its own increments and those of every caller that published meanwhile).
 * Callers arriving during that write wait on durable_cv, not on flush_mu, so
 * that when the commit ends they all return at once instead of queueing on
 * flush_mu behind the next leader's fsync with their rewards already durable.
 */
int mab__wait_durable(mab_engine *e, uint64_t seq, mab_error *err)
{
    if (seq == 0)
        return publish_failed(err, ""); /* mab__slot_publish could not list it */
    int rc = MAB_OK;
    pthread_mutex_lock(&e->durable_mu);
    while (atomic_load(&e->durable_seq) < seq) {
        if (e->committing) {
            pthread_cond_wait(&e->durable_cv, &e->durable_mu);
            continue;
        }
        e->committing = 1;
        pthread_mutex_unlock(&e->durable_mu);
        /* Callers released by the previous commit are about to publish
           again: let them, so that they join this commit rather than wait
           a whole commit for the next one (costs nothing when alone). */
        sched_yield();
        pthread_mutex_lock(&e->flush_mu);
        rc = atomic_load(&e->durable_seq) >= seq ? MAB_OK : mab__write_queued(e, err);
        pthread_mutex_unlock(&e->flush_mu);
        pthread_mutex_lock(&e->durable_mu);
        e->committing = 0;
        pthread_cond_broadcast(&e->durable_cv);
        if (rc != MAB_OK)
            break; /* a waiter whose publish is not durable either leads a retry */
    }
    pthread_mutex_unlock(&e->durable_mu);
    return rc;
}

int mab_flush(mab_engine *e, mab_error *err)
{
    if (!e)
        return mab_error_set(err, MAB_EINVAL, "mab_flush: engine is NULL");
    if (forked_since_open(e))
        return mab__fork_error(e, err);
    /* Out of memory publishing, what could be published is still written;
       the error says that some is not. */
    /* Both failing (out of memory for the queue, then for the batch), the
       message names both: the write's alone would say everything stays
       queued, when the slots hold what was not published. */
    mab_error gather_err, write_err = {0, ""};
    int gathered = mab__gather_all(e, &gather_err);
    pthread_mutex_lock(&e->flush_mu);
    int rc = mab__write_queued(e, &write_err);
    pthread_mutex_unlock(&e->flush_mu);
    if (rc != MAB_OK && gathered != MAB_OK)
        return mab_error_set(err, rc, "mab_flush: %s; and %s", gather_err.message,
                             write_err.message);
    if (gathered != MAB_OK)
        return mab_error_set(err, gathered, "mab_flush: %s", gather_err.message);
    if (rc != MAB_OK)
        return mab_error_set(err, rc, "%s", write_err.message);
    return MAB_OK;
}


/* Re-read what other processes added: published = stored + unapplied. */
static int refresh_totals(mab_engine *e, mab_error *err)
{
    pthread_mutex_lock(&e->flush_mu);
    int rc = mab__load_totals(e, err);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

static int64_t now_ms(void)
{
    return now_ns() / 1000000;
}

/* The background writer: flush every interval_ms, refresh every refresh_ms. */
static void *writer_main(void *arg)
{
    mab_engine *e = arg;
    int64_t next_flush = now_ms() + e->interval_ms;
    int64_t next_refresh = e->refresh_ms ? now_ms() + e->refresh_ms : INT64_MAX;
    pthread_mutex_lock(&e->writer_mu);
    while (!e->writer_stop) {
        int64_t wake = next_flush < next_refresh ? next_flush : next_refresh;
        struct timespec until = {(time_t)(wake / 1000), (long)(wake % 1000) * 1000000L};
        int wait_rc = 0;
        while (!e->writer_stop && wait_rc != ETIMEDOUT)
            wait_rc = pthread_cond_timedwait(&e->writer_cv, &e->writer_mu, &until);
        if (e->writer_stop)
            break;
        pthread_mutex_unlock(&e->writer_mu);
        /* Failures are counted (flush_failures) and retried next time;
           mab_flush() and mab_close() report them to the caller. */
        mab_error ignored;
        int64_t now = now_ms();
        if (now >= next_flush) {
            (void)mab_flush(e, &ignored);
            next_flush = now + e->interval_ms;
        }
        if (now >= next_refresh) {
            if (refresh_totals(e, &ignored) != MAB_OK)
                atomic_fetch_add(&e->flush_failures, 1);
            next_refresh = now + e->refresh_ms;
        }
        pthread_mutex_lock(&e->writer_mu);
    }
    pthread_mutex_unlock(&e->writer_mu);
    return NULL;
}

int mab__writer_start(mab_engine *e, mab_error *err)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&e->writer_cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0)
        rc = pthread_create(&e->writer, NULL, writer_main, e);
    if (rc)
        return mab_error_set(err, MAB_ENOMEM, "cannot start the storage writer thread: %s",
                             strerror(rc));
    e->writer_running = 1;
    return MAB_OK;
}

void mab__writer_stop(mab_engine *e)
{
    if (!e->writer_running)
        return;
    pthread_mutex_lock(&e->writer_mu);
    e->writer_stop = 1;
    pthread_cond_signal(&e->writer_cv);
    pthread_mutex_unlock(&e->writer_mu);
    pthread_join(e->writer, NULL);
    pthread_cond_destroy(&e->writer_cv);
    e->writer_running = 0;
}

