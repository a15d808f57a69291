/*
 * buckets.c - time buckets: the bucket of an event, each experiment's ring
 * of recent buckets (windows; history over a store without buckets), the
 * unapplied bucket queue the writer hands to apply_buckets(), the window a
 * policy sees, and mab_history(). engine.h says how they move.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

/* Times beyond +-2^62 ns (146 years) are clamped, so that floor and the
   bucket's end never overflow. */
#define TIME_LIMIT_NS (INT64_C(1) << 62)

int64_t mab__bucket_of(const mab_engine *e, int64_t t_ns)
{
    if (t_ns > TIME_LIMIT_NS)
        t_ns = TIME_LIMIT_NS;
    if (t_ns < -TIME_LIMIT_NS)
        t_ns = -TIME_LIMIT_NS;
    int64_t q = t_ns / e->bucket_ns;
    if (t_ns % e->bucket_ns < 0)
        q--; /* floor, also before 1970 */
    return q * e->bucket_seconds;
}

void mab__slot_move_bucket(mab_engine *e, mab__slot *s, int64_t t_ns)
{
    /* Out of memory for the write-behind queue the slot keeps its rows,
       which are of its bucket: it stays there (this event counts in the
       bucket before its own; totals are exact) until a publish succeeds. */
    if (s->n_dirty && mab__slot_publish(e, s) == 0)
        return;
    s->bucket_start = mab__bucket_of(e, t_ns);
    s->bucket_lo_ns = s->bucket_start * 1000000000LL;
    s->bucket_hi_ns = s->bucket_lo_ns + e->bucket_ns;
}

/* ---- the ring ---------------------------------------------------------- */

/*
 * An experiment's ring keeps, per arm, its buckets by number (start /
 * bucket_seconds) modulo ring_cap: each entry the newest bucket of its
 * residue. It is allocated small and grows (issue 18: 168 buckets of 40
 * bytes per arm from the first event made 2 GB at 10^5 experiments of 3
 * arms, most of whose buckets were never used). Its size ring_size divides
 * ring_cap, and so does each larger size it grows to (ring_next), so that
 * it holds exactly the buckets a ring of ring_cap would hold: an entry's
 * bucket is at its number modulo ring_size, and two buckets of the same
 * residue modulo ring_cap share an entry at every size (the newer kept, as
 * at full size). When a bucket meets another of a different residue
 * modulo ring_cap in its entry, the full ring would keep both: the ring
 * grows instead (re-placing its buckets, which cannot collide: they differ
 * modulo the smaller size). An experiment whose events all fall in one
 * bucket thus holds one bucket per arm; one with events in b consecutive
 * buckets, the first size of 1, 2, 4, 8, 24, 168 (at ring_cap 168) that
 * is at least b. Windows and mab_history read every bucket the
 * full ring would hold (test_buckets.c, test_ring_grows_keeping_buckets).
 * Guarded by buckets_mu, as the ring.
 */
static mab__bucket *ring_entry(const mab_engine *e, const mab__experiment *x, size_t arm,
                               int64_t start)
{
    int64_t k = start / e->bucket_seconds, size = (int64_t)x->ring_size;
    return &x->ring[arm * x->ring_size + (size_t)(((k % size) + size) % size)];
}

/* The next size after `size`: its smallest multiple above it that divides
   cap (cap itself at the latest). */
static size_t ring_next(size_t size, size_t cap)
{
    for (size_t d = 2 * size; d < cap; d += size)
        if (cap % d == 0)
            return d;
    return cap;
}

/* Make x's ring `size` buckets per arm, keeping its buckets. MAB_ENOMEM
   leaves it as it was. */
static int ring_resize(const mab_engine *e, mab__experiment *x, size_t size)
{
    mab__bucket *old = x->ring, *ring = malloc(x->n_arms * size * sizeof *ring);
    if (!ring)
        return MAB_ENOMEM;
    for (size_t i = 0; i < x->n_arms * size; i++)
        ring[i] = (mab__bucket){INT64_MIN, {0, 0, 0.0, 0.0}};
    size_t old_size = x->ring_size;
    x->ring = ring;
    x->ring_size = (uint32_t)size;
    for (size_t arm = 0; old && arm < x->n_arms; arm++)
        for (size_t j = 0; j < old_size; j++) {
            const mab__bucket *b = &old[arm * old_size + j];
            if (b->start != INT64_MIN)
                *ring_entry(e, x, arm, b->start) = *b;
        }
    free(old);
    return MAB_OK;
}

/* Drop x's ring (it comes back with the next event). */
static void ring_free(mab__experiment *x)
{
    free(x->ring);
    x->ring = NULL;
    x->ring_size = 0;
}

/* Caller holds buckets_mu. The ring is allocated at the experiment's first
   event, not at open, and grows as buckets accumulate (above). Out of
   memory: the event stays in the totals (and the store's buckets), not in
   this process's ring; one that cannot grow takes the place of the older
   bucket it meets (windows see the newest). */
static void ring_add(const mab_engine *e, mab__experiment *x, size_t arm, int64_t start,
                     const mab_totals *add)
{
    if (!x->ring_cap)
        return;
    if (!x->ring && ring_resize(e, x, 1) != MAB_OK)
        return;
    for (;;) {
        mab__bucket *b = ring_entry(e, x, arm, start);
        if (b->start == start) {
            totals_add(&b->t, add);
            return;
        }
        int shared = b->start == INT64_MIN ||
                     ((b->start - start) / e->bucket_seconds) % (int64_t)x->ring_cap == 0;
        if (!shared && x->ring_size < x->ring_cap &&
            ring_resize(e, x, ring_next(x->ring_size, x->ring_cap)) == MAB_OK)
            continue; /* the full ring keeps both: grown, look again */
        if (b->start < start) { /* empty (INT64_MIN) or older: the ring moves on */
            b->start = start;
            b->t = *add;
        } /* else older than the ring holds: only storage keeps it */
        return;
    }
}


/* ---- the queue --------------------------------------------------------- */

/* Every bit of arm and start reaches the low bits the mask keeps (the
   splitmix64 finaliser). The former hash, ((arm << 40) ^ start) * C >> 32,
   let only an arm's low 8 bits reach bits 8 to 15 of the position and none
   below: every arm of one bucket started in one of 256 places, so a queue of
   n arms probed O(n) entries per add (issue 18: 800 instructions per random
   choose at 10^4 experiments). */
static uint32_t queue_hash(uint32_t arm, int64_t start, size_t mask)
{
    uint64_t x = (uint64_t)arm ^ ((uint64_t)start * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (uint32_t)(x & mask);
}

static void queue_rehash(mab_engine *e)
{
    size_t mask = 2 * e->cap_bucket_queue - 1;
    memset(e->bucket_hash, 0, 2 * e->cap_bucket_queue * sizeof *e->bucket_hash);
    for (size_t k = 0; k < e->n_bucket_queue; k++) {
        uint32_t h = queue_hash(e->bucket_queue[k].arm, e->bucket_queue[k].start, mask);
        while (e->bucket_hash[h])
            h = (h + 1) & mask;
        e->bucket_hash[h] = (uint32_t)k + 1;
    }
}

/* Add to the queue's entry of (arm, start), made when missing. */
static int queue_add(mab_engine *e, uint32_t arm, int64_t start, const mab_totals *add)
{
    if (e->n_bucket_queue == e->cap_bucket_queue) {
        size_t cap = e->cap_bucket_queue ? 2 * e->cap_bucket_queue : 64;
        mab__bucket_entry *q = realloc(e->bucket_queue, cap * sizeof *q);
        if (!q)
            return MAB_ENOMEM;
        e->bucket_queue = q;
        uint32_t *hash = realloc(e->bucket_hash, 2 * cap * sizeof *hash);
        if (!hash)
            return MAB_ENOMEM;
        e->bucket_hash = hash;
        e->cap_bucket_queue = cap;
        queue_rehash(e);
    }
    size_t mask = 2 * e->cap_bucket_queue - 1;
    uint32_t h = queue_hash(arm, start, mask);
    for (; e->bucket_hash[h]; h = (h + 1) & mask) {
        mab__bucket_entry *q = &e->bucket_queue[e->bucket_hash[h] - 1];
        if (q->arm == arm && q->start == start) {
            totals_add(&q->add, add);
            return MAB_OK;
        }
    }
    e->bucket_queue[e->n_bucket_queue] = (mab__bucket_entry){arm, start, *add};
    e->bucket_hash[h] = (uint32_t)++e->n_bucket_queue;
    return MAB_OK;
}

static void count_drop(mab_engine *e, const char *what, size_t arm, int64_t start,
                       const mab_totals *t, const char *why)
{
    atomic_fetch_add(&e->dropped_deltas, 1);
    pthread_mutex_lock(&e->dropped_mu);
    mab_error_set(&e->last_drop, MAB_ESTORAGE,
                  "%s the time bucket %lld of experiment \"%s\", arm \"%s\" (%llu pulls, %llu "
                  "rewards, reward sum %g) and it was dropped: %s",
                  what, (long long)start, mab__arm_experiment(e, arm)->id,
                  mab__arm_id_at(e, arm),
                  (unsigned long long)t->pulls, (unsigned long long)t->rewards, t->reward_sum,
                  why);
    pthread_mutex_unlock(&e->dropped_mu);
}

void mab__buckets_prefetch(const mab_engine *e, const mab__experiment *x, size_t arm,
                           int64_t start)
{
    if (x->ring)
        __builtin_prefetch(ring_entry(e, x, arm - x->first_arm, start), 1);
    if (e->buckets_stored && e->cap_bucket_queue)
        __builtin_prefetch(
            &e->bucket_hash[queue_hash((uint32_t)arm, start, 2 * e->cap_bucket_queue - 1)], 0);
}

void mab__buckets_add(mab_engine *e, size_t arm, int64_t start, const mab_totals *add)
{
    mab__experiment *x = mab__arm_experiment(e, arm);
    ring_add(e, x, arm - x->first_arm, start, add);
    if (e->buckets_stored && queue_add(e, (uint32_t)arm, start, add) != MAB_OK)
        count_drop(e, "out of memory for", arm, start, add, "out of memory");
}

size_t mab__buckets_take(mab_engine *e)
{
    pthread_mutex_lock(&e->buckets_mu);
    size_t n = e->n_bucket_queue;
    if (n > e->cap_bucket_batch) {
        mab_bucket_delta *batch = realloc(e->bucket_batch, n * sizeof *batch);
        if (batch)
            e->bucket_batch = batch;
        uint32_t *arms = batch ? realloc(e->bucket_batch_arm, n * sizeof *arms) : NULL;
        if (arms)
            e->bucket_batch_arm = arms;
        if (!batch || !arms) {
            pthread_mutex_unlock(&e->buckets_mu);
            return 0; /* they stay queued, for the next batch */
        }
        e->cap_bucket_batch = n;
    }
    for (size_t k = 0; k < n; k++) {
        const mab__bucket_entry *q = &e->bucket_queue[k];
        e->bucket_batch[k] = (mab_bucket_delta){mab__arm_experiment(e, q->arm)->id,
                                                mab__arm_id_at(e, q->arm), q->start, q->add};
        e->bucket_batch_arm[k] = q->arm;
    }
    e->n_bucket_queue = 0;
    if (e->cap_bucket_queue)
        memset(e->bucket_hash, 0, 2 * e->cap_bucket_queue * sizeof *e->bucket_hash);
    pthread_mutex_unlock(&e->buckets_mu);
    return n;
}

void mab__buckets_requeue(mab_engine *e, size_t from, size_t n)
{
    pthread_mutex_lock(&e->buckets_mu);
    for (size_t k = from; k < from + n; k++)
        if (queue_add(e, e->bucket_batch_arm[k], e->bucket_batch[k].bucket,
                      &e->bucket_batch[k].add) != MAB_OK)
            count_drop(e, "out of memory for", e->bucket_batch_arm[k], e->bucket_batch[k].bucket,
                       &e->bucket_batch[k].add, "out of memory");
    pthread_mutex_unlock(&e->buckets_mu);
}

void mab__buckets_drop(mab_engine *e, size_t k, const mab_error *why)
{
    const mab_bucket_delta *d = &e->bucket_batch[k];
    size_t arm = e->bucket_batch_arm[k];
    const mab__experiment *x = mab__arm_experiment(e, arm);
    pthread_mutex_lock(&e->buckets_mu);
    if (x->ring) {
        /* Out of the ring too, so that a window shows what the store holds. */
        mab__bucket *b = ring_entry(e, x, arm - x->first_arm, d->bucket);
        if (b->start == d->bucket) {
            b->t.pulls -= d->add.pulls;
            b->t.rewards -= d->add.rewards;
            if (isfinite(d->add.reward_sum) && isfinite(d->add.reward_sum_sq)) {
                b->t.reward_sum -= d->add.reward_sum;
                b->t.reward_sum_sq -= d->add.reward_sum_sq;
            }
        }
    }
    pthread_mutex_unlock(&e->buckets_mu);
    count_drop(e, "storage refused", arm, d->bucket, &d->add, why->message);
}

void mab__buckets_reset(mab_engine *e, mab__experiment *x)
{
    pthread_mutex_lock(&e->buckets_mu);
    ring_free(x);
    size_t kept = 0;
    for (size_t k = 0; k < e->n_bucket_queue; k++) {
        uint32_t arm = e->bucket_queue[k].arm;
        if (arm < x->first_arm || arm >= x->first_arm + x->n_arms)
            e->bucket_queue[kept++] = e->bucket_queue[k];
    }
    e->n_bucket_queue = kept;
    if (e->cap_bucket_queue)
        queue_rehash(e);
    pthread_mutex_unlock(&e->buckets_mu);
}

/* ---- open, refresh, close ---------------------------------------------- */

int mab__buckets_allocate(mab_engine *e)
{
    e->buckets_stored = e->storage && e->storage_state && mab__storage_has_buckets(e->storage);
    int64_t retained = e->retention_seconds / e->bucket_seconds;
    size_t history = retained < MAB__HISTORY_RING ? (size_t)retained : MAB__HISTORY_RING;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        /* A store that keeps buckets answers mab_history(); the ring then
           serves windows only. */
        size_t cap = e->buckets_stored ? 0 : history;
        if (x->layout.window_buckets > cap)
            cap = x->layout.window_buckets;
        size_t attribution = mab__attribution_buckets(e, x->part->rules.attribution_window);
        if (attribution > cap)
            cap = attribution;
        if (!cap)
            continue;
        x->ring_cap = cap; /* the ring itself comes with the first event (ring_add) */
    }
    return MAB_OK;
}

void mab__buckets_free(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++)
        free(e->experiments[i].ring);
    free(e->bucket_queue);
    free(e->bucket_hash);
    free(e->bucket_batch);
    free(e->bucket_batch_arm);
    pthread_mutex_destroy(&e->buckets_mu);
}

/* Stored bucket records read by load_buckets, then combined. */
typedef struct bucket_list {
    mab__bucket_entry *items;
    size_t n, cap;
    size_t first_arm; /* of the experiment being read */
    int failed;       /* out of memory */
} bucket_list;

static int collect_bucket(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add)
{
    bucket_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        mab__bucket_entry *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            l->failed = 1;
            return 1;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = (mab__bucket_entry){(uint32_t)(l->first_arm + arm_index), bucket, *add};
    return 0;
}

/* Read experiment x's stored buckets since `since` into l (appending). */
static int load_stored(mab_engine *e, const mab__experiment *x, int64_t since, bucket_list *l,
                       mab_error *err)
{
    const char **ids = calloc(x->n_arms, sizeof *ids);
    if (!ids)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t j = 0; j < x->n_arms; j++)
        ids[j] = mab__arm_id(x, j);
    l->first_arm = x->first_arm;
    mab_error why = {0, ""};
    int rc = e->storage->load_buckets(e->storage_state, x->id, ids, x->n_arms, since,
                                      collect_bucket, l, &why);
    free(ids);
    if (l->failed)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (rc != MAB_OK)
        return mab_error_set(err, rc, "%s: storage: %s: cannot read the time buckets of "
                             "experiment \"%s\": %s",
                             e->config_path, e->storage_path, x->id,
                             why.message[0] ? why.message : mab_strerror(rc));
    return MAB_OK;
}

/* Re-read the rings of experiments at[0..n) (every experiment when at is
   NULL; seen[i] says whether experiment i is one of them): stored + queued.
   The rings of the others are left as they are: what they hold changed in
   no store since they were read, and this process's own events reached them
   as they were published (a refresh of only what changed costs those). */
static int buckets_load(mab_engine *e, const size_t *at, size_t n, const unsigned char *seen,
                        mab_error *err)
{
    if (!e->buckets_stored)
        return MAB_OK;
    int64_t now = mab__bucket_of(e, mab__engine_now(e, NULL));
    bucket_list l = {NULL, 0, 0, 0, 0};
    int rc = MAB_OK;
    size_t n_read = at ? n : e->n_experiments;
    for (size_t i = 0; rc == MAB_OK && i < n_read; i++) {
        const mab__experiment *x = &e->experiments[at ? at[i] : i];
        if (x->ring_cap)
            rc = load_stored(e, x, now - (int64_t)(x->ring_cap - 1) * e->bucket_seconds, &l, err);
    }
    if (rc == MAB_OK) {
        /* As totals: no publish half-way while stored and unapplied combine. */
        pthread_rwlock_wrlock(&e->publish_lock);
        pthread_mutex_lock(&e->buckets_mu);
        for (size_t i = 0; i < n_read; i++) /* regrown to what is loaded */
            ring_free(&e->experiments[at ? at[i] : i]);
        for (size_t k = 0; k < l.n; k++) {
            mab__experiment *x = mab__arm_experiment(e, l.items[k].arm);
            ring_add(e, x, l.items[k].arm - x->first_arm, l.items[k].start, &l.items[k].add);
        }
        for (size_t k = 0; k < e->n_bucket_queue; k++) {
            const mab__bucket_entry *q = &e->bucket_queue[k];
            mab__experiment *x = mab__arm_experiment(e, q->arm);
            if (seen && !seen[x - e->experiments])
                continue; /* its ring has it already */
            ring_add(e, x, q->arm - x->first_arm, q->start, &q->add);
        }
        pthread_mutex_unlock(&e->buckets_mu);
        pthread_rwlock_unlock(&e->publish_lock);
    }
    free(l.items);
    return rc;
}

int mab__buckets_load(mab_engine *e, mab_error *err)
{
    return buckets_load(e, NULL, 0, NULL, err);
}

int mab__buckets_load_some(mab_engine *e, const size_t *at, size_t n, const unsigned char *seen,
                           mab_error *err)
{
    return buckets_load(e, at, n, seen, err);
}

/* ---- windows ----------------------------------------------------------- */

/* An arm's counters normalised to [0, 1] by the reward range (as build_view). */
static mab_arm_view normalised(const mab__experiment *x, const mab_totals *t)
{
    double min = x->reward_min, width = x->reward_max - x->reward_min;
    mab_arm_view v = {t->pulls, t->rewards, t->reward_sum, t->reward_sum_sq};
    if (min != 0.0 || width != 1.0) {
        double c = (double)t->rewards;
        double sq = (t->reward_sum_sq - 2.0 * min * t->reward_sum + c * min * min) /
                    (width * width);
        double sum = (t->reward_sum - c * min) / width;
        v.reward_sum = sum < 0.0 ? 0.0 : sum > c ? c : sum;
        v.reward_sum_sq = sq < 0.0 ? 0.0 : sq;
    }
    return v;
}

/* Arm i's bucket `start` as the slot sees it: the ring's (stored +
   unapplied, or this process's) plus the slot's own events not yet
   published, which all belong to the slot's bucket. Caller holds
   buckets_mu. */
static mab_totals bucket_seen(const mab_engine *e, const mab__experiment *x, const mab__slot *s,
                              size_t i, int64_t start)
{
    const mab__bucket *r = x->ring ? ring_entry(e, x, i, start) : NULL;
    mab_totals t = r && r->start == start ? r->t : (mab_totals){0, 0, 0.0, 0.0};
    if (s->bucket_lo_ns != s->bucket_hi_ns && s->bucket_start == start)
        totals_add(&t, &slot_row(s, x)[i]);
    return t;
}

int mab__window_view(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now_ns,
                     mab_policy_input *in)
{
    size_t w = x->layout.window_buckets, n = x->n_arms * w;
    if (n > s->window_cap) {
        mab_arm_view *grown = realloc(s->window, n * sizeof *grown);
        if (!grown)
            return MAB_ENOMEM;
        s->window = grown;
        s->window_cap = n;
    }
    int64_t bs = e->bucket_seconds;
    int64_t first = mab__bucket_of(e, now_ns) - (int64_t)(w - 1) * bs;
    pthread_mutex_lock(&e->buckets_mu);
    for (size_t i = 0; i < x->n_arms; i++)
        for (size_t b = 0; b < w; b++) {
            mab_totals t = bucket_seen(e, x, s, i, first + (int64_t)b * bs);
            s->window[i * w + b] = normalised(x, &t);
        }
    pthread_mutex_unlock(&e->buckets_mu);
    in->window = s->window;
    in->n_window = w;
    in->bucket_seconds = bs;
    in->window_start = first;
    return MAB_OK;
}

/* ---- the attribution window ------------------------------------------ */

size_t mab__attribution_buckets(const mab_engine *e, int64_t window_seconds)
{
    if (window_seconds <= 0)
        return 0;
    /* Buckets [s, s + B) with s + B + W > now: at most ceil(W / B) + 1. */
    return (size_t)((window_seconds + e->bucket_seconds - 1) / e->bucket_seconds) + 1;
}

void mab__mature_view(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now_ns)
{
    int64_t w = x->part->rules.attribution_window, bs = e->bucket_seconds;
    if (w <= 0)
        return;
    if (now_ns > TIME_LIMIT_NS) /* so that now - B - W cannot overflow */
        now_ns = TIME_LIMIT_NS;
    if (now_ns < -TIME_LIMIT_NS)
        now_ns = -TIME_LIMIT_NS;
    /* Bucket [s, s + B) is matured once s + B + W <= now: every pull in it
       is older than W. The bucket holding now - B - W is the newest matured
       one (its end + W is at most now); the next ones, up to now's, are not. */
    int64_t last = mab__bucket_of(e, now_ns);
    int64_t first = mab__bucket_of(e, now_ns - (bs + w) * 1000000000LL) + bs;
    size_t cap = mab__attribution_buckets(e, w);
    size_t n = (size_t)((last - first) / bs) + 1; /* >= 1: now's bucket ends after now */
    if (n > cap) { /* not reached (the ring is sized by cap); never read past it */
        first = last - (int64_t)(cap - 1) * bs;
        n = cap;
    }
    if (n > x->ring_cap) /* not reached: open makes ring_cap >= cap */
        return;
    int own = s->bucket_lo_ns != s->bucket_hi_ns && s->bucket_start >= first &&
              s->bucket_start <= last; /* the slot's unpublished events are immature */
    const size_t n_arms = x->n_arms;
    const mab_totals *pending = slot_row(s, x); /* the zero row when none */
    mab_arm_view *view = s->view;
    pthread_mutex_lock(&e->buckets_mu);
    const mab__bucket *ring = x->ring; /* made and grown under the mutex (ring_add) */
    /* The n buckets are consecutive in each arm's row of the ring (wrapping
       round it, more than once while it is smaller than n: each entry then
       matches at most one of them): walk them from first's entry (one
       division per choice, not per bucket). */
    const size_t row_size = x->ring_size;
    int64_t size = (int64_t)row_size;
    size_t first_entry = size ? (size_t)(((first / bs) % size + size) % size) : 0;
    for (size_t i = 0; i < n_arms; i++) {
        uint64_t pulls = own ? pending[i].pulls : 0, rewards = own ? pending[i].rewards : 0;
        const mab__bucket *row = ring ? ring + i * row_size : NULL;
        int64_t start = first;
        for (size_t b = 0, k = first_entry; row && b < n; b++, start += bs) {
            if (row[k].start == start) {
                pulls += row[k].t.pulls;
                rewards += row[k].t.rewards;
            }
            if (++k == row_size)
                k = 0;
        }
        /* An immature pull counts once rewarded: min(pulls, rewards) of
           them, so the view drops the immature pulls beyond the rewards. */
        uint64_t unseen = pulls > rewards ? pulls - rewards : 0;
        view[i].pulls -= unseen < view[i].pulls ? unseen : view[i].pulls;
    }
    pthread_mutex_unlock(&e->buckets_mu);
}

/* ---- mab_history ------------------------------------------------------- */

static int entry_order(const void *a, const void *b)
{
    const mab__bucket_entry *p = a, *q = b;
    if (p->start != q->start)
        return p->start < q->start ? -1 : 1;
    return (p->arm > q->arm) - (p->arm < q->arm);
}

int64_t mab_bucket_seconds(const mab_engine *e)
{
    return e ? e->bucket_seconds : 0;
}

int mab_history(mab_engine *e, const char *experiment, int64_t since,
                int (*visit)(void *ctx, size_t arm_index, const char *arm_id,
                             const mab_bucket_stats *bucket),
                void *ctx, mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "mab_history: visit must not be NULL");
    /* x's bucket entries reach the queue read below */
    if ((rc = mab__gather_experiment(e, x, err)) != MAB_OK)
        return rc;
    bucket_list l = {NULL, 0, 0, 0, 0};
    if (e->buckets_stored) {
        /* Under flush_mu no batch is on its way: stored + queued is all. */
        pthread_mutex_lock(&e->flush_mu);
        rc = load_stored(e, x, since, &l, err);
        pthread_mutex_lock(&e->buckets_mu);
        for (size_t k = 0; rc == MAB_OK && k < e->n_bucket_queue; k++) {
            const mab__bucket_entry *q = &e->bucket_queue[k];
            if (mab__arm_experiment(e, q->arm) == x && q->start >= since &&
                collect_bucket(&l, 0, 0, &q->add) == 0)
                l.items[l.n - 1] = *q; /* collect_bucket made the room */
        }
        pthread_mutex_unlock(&e->buckets_mu);
        pthread_mutex_unlock(&e->flush_mu);
        if (rc == MAB_OK && l.failed)
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    } else {
        pthread_mutex_lock(&e->buckets_mu);
        for (size_t k = 0; x->ring && k < x->n_arms * x->ring_size && !l.failed; k++) {
            const mab__bucket *b = &x->ring[k];
            if (b->start != INT64_MIN && b->start >= since && !totals_empty(&b->t) &&
                collect_bucket(&l, 0, 0, &b->t) == 0)
                l.items[l.n - 1] = (mab__bucket_entry){(uint32_t)(x->first_arm + k / x->ring_size),
                                                       b->start, b->t};
        }
        pthread_mutex_unlock(&e->buckets_mu);
        if (l.failed)
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    if (rc == MAB_OK && l.n)
        qsort(l.items, l.n, sizeof *l.items, entry_order);
    for (size_t k = 0; rc == MAB_OK && k < l.n;) {
        mab__bucket_entry one = l.items[k++];
        while (k < l.n && l.items[k].arm == one.arm && l.items[k].start == one.start)
            totals_add(&one.add, &l.items[k++].add);
        if (totals_empty(&one.add))
            continue;
        size_t arm = one.arm - x->first_arm;
        mab_bucket_stats b = {one.start, one.add.pulls, one.add.rewards, one.add.reward_sum,
                              one.add.reward_sum_sq};
        rc = visit(ctx, arm, mab__arm_id(x, arm), &b);
    }
    free(l.items);
    return rc;
}
