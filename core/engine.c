/*
 * engine.c - open/close, choose, reward, stats and the write-behind queue.
 * See engine.h for where counts live and why.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "engine_access.h"
#include "engine.h"

static atomic_uint_fast64_t next_engine_serial = 1;

/* Bumped in the child of every fork(). An engine belongs to the process that
   opened it: its writer thread does not exist in a child, and storage
   handles (an LMDB environment, a MongoDB client) must not be used there. */
static atomic_uint fork_generation;

static void count_fork(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

__attribute__((constructor)) static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

unsigned mab__fork_generation(void)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

static int forked_since_open(const mab_engine *e)
{
    return e->fork_generation != mab__fork_generation();
}

static int fork_error(const mab_engine *e, mab_error *err)
{
    return mab_error_set(err, MAB_EINVAL,
                         "%s: this engine was opened before fork(); open one in each process "
                         "that uses it (after the fork)",
                         e->config_path);
}

/* Per thread: which slot this thread uses in the last few engines it used. */
#define THREAD_CACHE 4
static _Thread_local struct {
    uint64_t serial;
    mab__slot *slot;
} thread_slots[THREAD_CACHE];
static _Thread_local unsigned thread_slots_next;

/* ---- slots ------------------------------------------------------------ */

static void slot_lock(mab__slot *s)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
        /* Only shared slots (more threads than MAB__SLOTS) or a gatherer
           ever contend; yield rather than burn the other core. */
        if (++spins > 64)
            sched_yield();
    }
}

static void slot_unlock(mab__slot *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

static int slot_init(mab_engine *e, mab__slot *s)
{
    s->pending = calloc(e->total_arms, sizeof *s->pending);
    s->dirty = calloc(e->total_arms, sizeof *s->dirty);
    s->view = calloc(e->max_arms, sizeof *s->view);
    s->pending_stats = calloc(e->total_stats ? e->total_stats : 1, sizeof *s->pending_stats);
    s->view_stats = calloc(e->max_stats ? e->max_stats : 1, sizeof *s->view_stats);
    s->delta_stats = calloc(e->max_stats ? e->max_stats : 1, sizeof *s->delta_stats);
    if (!s->pending || !s->dirty || !s->view || !s->pending_stats || !s->view_stats ||
        !s->delta_stats) {
        free(s->pending);
        free(s->dirty);
        free(s->view);
        free(s->pending_stats);
        free(s->view_stats);
        free(s->delta_stats);
        s->pending = NULL;
        s->dirty = NULL;
        s->view = NULL;
        s->pending_stats = s->view_stats = s->delta_stats = NULL;
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

/* This thread's slot, locked and ready; NULL when out of memory. */
static mab__slot *slot_acquire(mab_engine *e)
{
    mab__slot *s = NULL;
    for (unsigned i = 0; i < THREAD_CACHE; i++)
        if (thread_slots[i].serial == e->serial)
            s = thread_slots[i].slot;
    if (!s) {
        unsigned index = atomic_fetch_add_explicit(&e->next_slot, 1, memory_order_relaxed);
        s = &e->slots[index % MAB__SLOTS];
        unsigned k = thread_slots_next++ % THREAD_CACHE;
        thread_slots[k].serial = e->serial;
        thread_slots[k].slot = s;
    }
    slot_lock(s);
    if (!s->ready && slot_init(e, s) != MAB_OK) {
        slot_unlock(s);
        return NULL;
    }
    return s;
}

static void totals_add(mab_totals *to, const mab_totals *add)
{
    to->pulls += add->pulls;
    to->rewards += add->rewards;
    to->reward_sum += add->reward_sum;
    to->reward_sum_sq += add->reward_sum_sq;
}

static int totals_empty(const mab_totals *t)
{
    return t->pulls == 0 && t->rewards == 0;
}


static void atomic_add_double(_Atomic double *to, double add)
{
    double old = atomic_load_explicit(to, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(to, &old, old + add, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static void atomic_totals_add(mab__atomic_totals *to, const mab_totals *add)
{
    if (add->pulls)
        atomic_fetch_add_explicit(&to->pulls, add->pulls, memory_order_relaxed);
    if (add->rewards) {
        atomic_fetch_add_explicit(&to->rewards, add->rewards, memory_order_relaxed);
        atomic_add_double(&to->reward_sum, add->reward_sum);
        atomic_add_double(&to->reward_sum_sq, add->reward_sum_sq);
    }
}

/* Take the totals, leaving zeros. */
static mab_totals atomic_totals_take(mab__atomic_totals *from)
{
    mab_totals t;
    t.pulls = atomic_exchange_explicit(&from->pulls, 0, memory_order_relaxed);
    t.rewards = atomic_exchange_explicit(&from->rewards, 0, memory_order_relaxed);
    t.reward_sum = atomic_exchange_explicit(&from->reward_sum, 0.0, memory_order_relaxed);
    t.reward_sum_sq = atomic_exchange_explicit(&from->reward_sum_sq, 0.0, memory_order_relaxed);
    return t;
}

static mab_totals atomic_totals_read(const mab__atomic_totals *from)
{
    mab_totals t;
    t.pulls = atomic_load_explicit(&from->pulls, memory_order_relaxed);
    t.rewards = atomic_load_explicit(&from->rewards, memory_order_relaxed);
    t.reward_sum = atomic_load_explicit(&from->reward_sum, memory_order_relaxed);
    t.reward_sum_sq = atomic_load_explicit(&from->reward_sum_sq, memory_order_relaxed);
    return t;
}

static void atomic_totals_store(mab__atomic_totals *to, const mab_totals *t)
{
    atomic_store_explicit(&to->pulls, t->pulls, memory_order_relaxed);
    atomic_store_explicit(&to->rewards, t->rewards, memory_order_relaxed);
    atomic_store_explicit(&to->reward_sum, t->reward_sum, memory_order_relaxed);
    atomic_store_explicit(&to->reward_sum_sq, t->reward_sum_sq, memory_order_relaxed);
}

/* Add to a locked slot's pending totals of one arm. */
static mab_totals *slot_pending(mab__slot *s, size_t arm)
{
    mab_totals *p = &s->pending[arm];
    if (totals_empty(p))
        s->dirty[s->n_dirty++] = (uint32_t)arm;
    s->pending_ops++;
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Move n pending statistics from `at` into the published ones and the
   write-behind queue, leaving zeros (already-zero entries cost a test). */
static void stats_publish(mab_engine *e, mab__slot *s, size_t at, size_t n)
{
    for (size_t i = at; i < at + n; i++) {
        double d = s->pending_stats[i];
        if (d == 0.0)
            continue;
        atomic_add_double(&e->stats_unapplied[i], d);
        atomic_add_double(&e->stats_published[i], d);
        s->pending_stats[i] = 0.0;
    }
}

/* Move a locked slot's pending totals into the published totals and the
   write-behind queue. Returns the publish sequence number covering them. */
static uint64_t slot_publish(mab_engine *e, mab__slot *s)
{
    pthread_rwlock_rdlock(&e->publish_lock);
    for (uint32_t k = 0; k < s->n_dirty; k++) {
        mab_totals *p = &s->pending[s->dirty[k]];
        mab__arm *a = e->all_arms[s->dirty[k]];
        atomic_totals_add(&a->unapplied, p);
        atomic_totals_add(&a->published, p);
        memset(p, 0, sizeof *p);
        const mab__experiment *x = e->arm_experiment[s->dirty[k]];
        if (x->layout.arm_stats)
            stats_publish(e, s, a->stats_at, x->layout.arm_stats);
        if (x->layout.experiment_stats)
            stats_publish(e, s, x->stats_at, x->layout.experiment_stats);
    }
    s->n_dirty = 0;
    s->pending_ops = 0;
    s->last_publish_ns = now_ns();
    /* Release: a writer that reads this number finds the adds above. */
    uint64_t seq = atomic_fetch_add_explicit(&e->publish_seq, 1, memory_order_release) + 1;
    pthread_rwlock_unlock(&e->publish_lock);
    return seq;
}

/* Whether a locked slot should publish now (see MAB__PUBLISH_OPS). The
   clock is read once per MAB__PUBLISH_OPS operations. */
static int slot_due(const mab__slot *s)
{
    return s->pending_ops % MAB__PUBLISH_OPS == 0 &&
           now_ns() - s->last_publish_ns >= MAB__PUBLISH_NS;
}

/* Publish every thread's pending totals, so reads after this are exact. */
static void gather_all(mab_engine *e)
{
    for (unsigned i = 0; i < MAB__SLOTS; i++) {
        mab__slot *s = &e->slots[i];
        slot_lock(s);
        if (s->ready && s->pending_ops)
            slot_publish(e, s);
        slot_unlock(s);
    }
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

/* Fill the stats batch from the unapplied statistics; returns its length. */
static size_t stats_take(mab_engine *e)
{
    size_t k = 0, used = 0;
    if (!e->total_stats)
        return 0;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; x->layout.arm_stats && j < x->n_arms; j++)
            stats_take_one(e, &k, &used, x->id, x->arms[j].id, x->layout_tag,
                           x->arms[j].stats_at, x->layout.arm_stats);
        if (x->layout.experiment_stats)
            stats_take_one(e, &k, &used, x->id, NULL, x->layout_tag, x->stats_at,
                           x->layout.experiment_stats);
    }
    return k;
}

/* Whether storage refused a batch for what it holds (a delta it can never
   apply as it is) rather than for the state of the store: see the contract
   of apply() in storage.h. */
static int refused_as_invalid(int rc)
{
    return rc == MAB_EINVAL || rc == MAB_ERANGE;
}

/* Give batch entries [from, from + n) back to the queue, to be offered again. */
static void requeue(mab_engine *e, size_t from, size_t n)
{
    for (size_t k = from; k < from + n; k++)
        atomic_totals_add(&e->all_arms[e->batch_arm[k]]->unapplied, &e->batch[k].add);
}

/* Forget batch entry k, which storage refused on its own: count it, keep
   the reason, and take it out of the published totals too, so that this
   process's counts stay those of the store. */
static void drop_delta(mab_engine *e, size_t k, const mab_error *why)
{
    const mab_delta *d = &e->batch[k];
    mab__arm *a = e->all_arms[e->batch_arm[k]];
    atomic_fetch_sub_explicit(&a->published.pulls, d->add.pulls, memory_order_relaxed);
    atomic_fetch_sub_explicit(&a->published.rewards, d->add.rewards, memory_order_relaxed);
    if (isfinite(d->add.reward_sum) && isfinite(d->add.reward_sum_sq)) {
        atomic_add_double(&a->published.reward_sum, -d->add.reward_sum);
        atomic_add_double(&a->published.reward_sum_sq, -d->add.reward_sum_sq);
    }
    atomic_fetch_add(&a->drops, 1);
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
    for (size_t k = from; k < from + n; k++)
        for (size_t j = 0; j < e->stats_batch[k].n_values; j++)
            atomic_add_double(&e->stats_unapplied[e->stats_batch_at[k] + j],
                              e->stats_batch[k].values[j]);
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

/* Hand everything queued to storage as one batch. Caller holds flush_mu.
   On failure the batch goes back into the queue, to be offered again,
   except the deltas storage refused as invalid (see apply_split). */
static int write_queued(mab_engine *e, mab_error *err)
{
    /* Acquire: every publish numbered up to seq has added its increments. */
    /* Exclusive: a publish adds an arm's four totals one by one, so taking
       them while one is half-way would split its reward count from its
       reward sum across two batches (and a crash between the two would
       store a record whose count and sum disagree). The loop does no I/O. */
    pthread_rwlock_wrlock(&e->publish_lock);
    uint64_t seq = atomic_load_explicit(&e->publish_seq, memory_order_acquire);
    size_t n = 0;
    for (size_t i = 0; i < e->total_arms; i++) {
        mab_totals t = atomic_totals_take(&e->all_arms[i]->unapplied);
        if (totals_empty(&t))
            continue;
        e->batch[n].experiment = e->arm_experiment[i]->id;
        e->batch[n].arm = e->all_arms[i]->id;
        e->batch[n].add = t;
        e->batch_arm[n++] = i;
    }
    /* Under the same lock: a publish adds an arm's statistics one by one too. */
    size_t n_stats = stats_take(e);
    pthread_rwlock_unlock(&e->publish_lock);
    if ((!n && !n_stats) || !e->storage) {
        atomic_store(&e->durable_seq, seq);
        return MAB_OK;
    }
    uint64_t dropped_before = atomic_load(&e->dropped_deltas);
    int rc = n_stats ? apply_with_stats(e, n, n_stats, err) : apply_split(e, 0, n, err);
    if (rc != MAB_OK || atomic_load(&e->dropped_deltas) != dropped_before)
        atomic_fetch_add(&e->flush_failures, 1);
    if (rc == MAB_OK)
        atomic_store(&e->durable_seq, seq);
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
static int wait_durable(mab_engine *e, uint64_t seq, mab_error *err)
{
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
        rc = atomic_load(&e->durable_seq) >= seq ? MAB_OK : write_queued(e, err);
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
        return fork_error(e, err);
    gather_all(e);
    pthread_mutex_lock(&e->flush_mu);
    int rc = write_queued(e, err);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

static int load_totals(mab_engine *e, mab_error *err);

/* Re-read what other processes added: published = stored + unapplied. */
static int refresh_totals(mab_engine *e, mab_error *err)
{
    pthread_mutex_lock(&e->flush_mu);
    int rc = load_totals(e, err);
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

static int writer_start(mab_engine *e, mab_error *err)
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

static void writer_stop(mab_engine *e)
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

/* ---- open / close ----------------------------------------------------- */

static void engine_free(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        mab__id_index_free(&x->arm_index);
        if (x->policy && x->policy_state)
            x->policy->destroy(x->policy_state);
        if (x->policy2 && x->policy_state)
            x->policy2->destroy(x->policy_state);
        free(x->layout_tag);
        for (size_t k = 0; k < x->n_features; k++)
            free(x->feature_names[k]);
        free(x->feature_names);
        if (x->policy_handle)
            dlclose(x->policy_handle);
    }
    if (e->storage_state)
        e->storage->close(e->storage_state);
    if (e->storage_handle)
        dlclose(e->storage_handle);
    if (e->slots) {
        for (unsigned i = 0; i < MAB__SLOTS; i++) {
            free(e->slots[i].pending);
            free(e->slots[i].dirty);
            free(e->slots[i].view);
            free(e->slots[i].pending_stats);
            free(e->slots[i].view_stats);
            free(e->slots[i].delta_stats);
        }
        free(e->slots);
    }
    mab__id_index_free(&e->experiment_index);
    mab__config_free(e);
    free(e->all_arms);
    free(e->arm_experiment);
    free(e->batch);
    free(e->batch_arm);
    free(e->stats_published);
    free(e->stats_unapplied);
    free(e->stats_batch);
    free(e->stats_batch_values);
    free(e->stats_batch_at);
    for (size_t i = 0; i < 2 * e->n_check_layouts; i++)
        free(e->check_layouts[i]);
    free(e->check_layouts);
    free(e->storage_path);
    free(e->config_path);
    pthread_rwlock_destroy(&e->publish_lock);
    pthread_mutex_destroy(&e->flush_mu);
    pthread_mutex_destroy(&e->durable_mu);
    pthread_cond_destroy(&e->durable_cv);
    pthread_mutex_destroy(&e->writer_mu);
    pthread_mutex_destroy(&e->claim_mu);
    pthread_cond_destroy(&e->claim_cv);
    pthread_mutex_destroy(&e->dropped_mu);
    free(e);
}

/* Prefix a loader error with the config position that named the plugin. */
static int plugin_error(const mab_engine *e, const char *json_path, const mab_error *inner,
                        mab_error *err)
{
    return mab_error_set(err, inner->code, "%s: %s: %s", e->config_path, json_path,
                         inner->message);
}

/* Params over a plugin's config object at json_path, "plugin" marked read. */
static int plugin_params(const mab_engine *e, const cJSON *object, const char *json_path,
                         mab_params *params, mab_error *err)
{
    char *where = mab__asprintf("%s: %s", e->config_path, json_path);
    int rc = where ? mab__params_init(params, object, where, e->config_dir) : MAB_ENOMEM;
    free(where);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab__params_mark_used(params, "plugin");
    return MAB_OK;
}

/* The policy object's "features": names of distinct, non-empty strings. */
static int read_features(mab__experiment *x, mab_params *params, mab_error *err)
{
    const cJSON *list = mab__params_item(params, "features");
    if (!list)
        return MAB_OK;
    char *where = mab__params_key_path(params, "features");
    if (!where)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    int rc = MAB_OK;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 0 || n > MAB_POLICY_FEATURES_MAX)
        rc = mab_error_set(err, MAB_ECONFIG,
                           "%s: expected an array of at most %d feature names", where,
                           MAB_POLICY_FEATURES_MAX);
    if (rc == MAB_OK && n > 0 && !(x->feature_names = calloc((size_t)n, sizeof(char *))))
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (int i = 0; rc == MAB_OK && i < n; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsString(item) || !item->valuestring[0]) {
            rc = mab_error_set(err, MAB_ECONFIG, "%s[%d]: expected a non-empty string", where,
                               i);
            break;
        }
        for (size_t k = 0; k < x->n_features; k++)
            if (strcmp(x->feature_names[k], item->valuestring) == 0)
                rc = mab_error_set(err, MAB_ECONFIG, "%s[%d]: \"%s\" is listed twice", where,
                                   i, item->valuestring);
        if (rc == MAB_OK && !(x->feature_names[x->n_features++] = mab__strdup(item->valuestring)))
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    free(where);
    return rc;
}

static int create_policy2(mab_engine *e, mab__experiment *x, mab_params *params,
                          const char *json_path, mab_error *err)
{
    int rc = read_features(x, params, err);
    if (rc != MAB_OK)
        return rc;
    mab_policy_init init = {sizeof init, &mab__core_api, params, x->n_arms, x->n_features,
                            (const char *const *)x->feature_names};
    mab_policy_layout layout = {sizeof layout, 0, 0, 0, 0};
    mab_error create_err = {0, ""};
    void *state = NULL;
    rc = x->policy2->create(&init, &layout, &state, &create_err);
    if (rc != MAB_OK) {
        if (params->error[0])
            return mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params->error,
                                 x->policy_path);
        return mab_error_set(err, rc == MAB_ENOMEM ? MAB_ENOMEM : MAB_EPLUGIN,
                             "%s: %s: %s: create failed: %s", e->config_path, json_path,
                             x->policy_path,
                             create_err.message[0] ? create_err.message : mab_strerror(rc));
    }
    x->policy_state = state;
    if (layout.arm_stats > MAB_POLICY_STATS_MAX || layout.experiment_stats > MAB_POLICY_STATS_MAX)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s declares %zu statistics per arm and %zu per "
                             "experiment; at most %d each",
                             e->config_path, json_path, x->policy_path, layout.arm_stats,
                             layout.experiment_stats, MAB_POLICY_STATS_MAX);
    if ((layout.arm_stats || layout.experiment_stats) && !x->policy2->update)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s declares %zu statistics per arm and %zu per "
                             "experiment but leaves update NULL",
                             e->config_path, json_path, x->policy_path, layout.arm_stats,
                             layout.experiment_stats);
    if (layout.window_buckets)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s asks for a window of %zu time buckets; this core "
                             "does not serve windows yet",
                             e->config_path, json_path, x->policy_path, layout.window_buckets);
    x->layout = layout;
    x->layout_tag = mab__asprintf("%s/%u:%zu,%zu", x->policy2->name, layout.stats_version,
                                  layout.arm_stats, layout.experiment_stats);
    if (!x->layout_tag)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    return mab__params_check_unused(params, err);
}

static int create_policy(mab_engine *e, mab__experiment *x, mab_error *err)
{
    char json_path[MAB__ID_MAX + 32], plugin_key[MAB__ID_MAX + 40];
    snprintf(json_path, sizeof json_path, "experiments.%s.policy", x->id);
    snprintf(plugin_key, sizeof plugin_key, "%s.plugin", json_path);
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(x->policy_obj, "plugin");
    int rc = mab__plugin_resolve(e, plugin->valuestring, plugin_key, &x->policy_path, err);
    if (rc)
        return rc;
    mab_error inner;
    rc = mab__load_policy(x->policy_path, &x->policy_handle, &x->policy, &x->policy2, &inner);
    if (rc) {
        x->policy = NULL;
        x->policy2 = NULL;
        return plugin_error(e, plugin_key, &inner, err);
    }
    x->policy_name = x->policy ? x->policy->name : x->policy2->name;
    mab_params params;
    if ((rc = plugin_params(e, x->policy_obj, json_path, &params, err)) != MAB_OK)
        return rc;
    if (x->policy2) {
        rc = create_policy2(e, x, &params, json_path, err);
        mab__params_fini(&params);
        return rc;
    }
    void *state = NULL;
    rc = x->policy->create(&params, x->n_arms, &state);
    if (rc != MAB_OK) {
        if (params.error[0])
            rc = mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params.error,
                               x->policy_path);
        else
            rc = mab_error_set(err, MAB_EPLUGIN, "%s: experiments.%s.policy: %s: create failed: %s",
                               e->config_path, x->id, x->policy_path, mab_strerror(rc));
    } else {
        x->policy_state = state;
        rc = mab__params_check_unused(&params, err);
    }
    mab__params_fini(&params);
    return rc;
}

/* How open_storage() reaches the store (mab_options.flags). */
enum storage_mode { STORAGE_OPEN, STORAGE_READ_ONLY, STORAGE_CHECK };

static int collect_layout(void *ctx, const char *experiment, const char *arm,
                          const char *layout, const double *values, size_t n_values)
{
    (void)arm;
    (void)values;
    (void)n_values;
    mab_engine *e = ctx;
    for (size_t i = 0; i < e->n_check_layouts; i++)
        if (strcmp(e->check_layouts[2 * i], experiment) == 0 &&
            strcmp(e->check_layouts[2 * i + 1], layout) == 0)
            return 0;
    char **grown = realloc(e->check_layouts, 2 * (e->n_check_layouts + 1) * sizeof *grown);
    if (!grown)
        return MAB_ENOMEM;
    e->check_layouts = grown;
    grown[2 * e->n_check_layouts] = mab__strdup(experiment);
    grown[2 * e->n_check_layouts + 1] = mab__strdup(layout);
    e->n_check_layouts++;
    return grown[2 * e->n_check_layouts - 2] && grown[2 * e->n_check_layouts - 1] ? 0
                                                                                 : MAB_ENOMEM;
}

/* MAB_OPEN_CHECK: which layouts of policy statistics the store holds, for
   `mab check`; only through open_read_only, which creates and locks
   nothing. A failure is kept as the reason, never fails the check. */
static void read_check_layouts(mab_engine *e, mab_params *params)
{
    const mab_storage *st = e->storage;
    if (!mab__storage_has_stats(st)) {
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why,
                 "storage plugin %s stores no policy statistics", e->storage_path);
        return;
    }
    if (!mab__storage_has(st, open_read_only) || !st->open_read_only) {
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why,
                 "storage plugin %s has no read-only open, and a check opens nothing else",
                 e->storage_path);
        return;
    }
    void *state = NULL;
    mab_error why = {0, ""};
    int rc = st->open_read_only(params, &state, &why);
    if (rc == MAB_OK) {
        rc = st->scan_stats(state, collect_layout, e, &why);
        st->close(state);
    }
    if (rc == MAB_OK)
        e->check_layouts_read = 1;
    else
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why, "%s",
                 why.message[0] ? why.message : mab_strerror(rc));
}

static int open_storage(mab_engine *e, enum storage_mode mode, mab_error *err)
{
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(e->storage_obj, "plugin");
    int rc = mab__plugin_resolve(e, plugin->valuestring, "storage.plugin", &e->storage_path, err);
    if (rc)
        return rc;
    mab_error inner;
    rc = mab__load_storage(e->storage_path, &e->storage_handle, &e->storage, &inner);
    if (rc) {
        e->storage = NULL;
        return plugin_error(e, "storage.plugin", &inner, err);
    }
    mab_params params;
    if ((rc = plugin_params(e, e->storage_obj, "storage", &params, err)) != MAB_OK)
        return rc;
    mab__params_mark_used(&params, "sync");
    int64_t refresh_ms = mab__storage_has(e->storage, replace) ? e->storage->refresh_ms : 0;
    if (mab_params_int(&params, "refresh_ms", refresh_ms, 0, 86400000, &refresh_ms) != MAB_OK) {
        rc = mab_error_set(err, MAB_ECONFIG, "%s", params.error);
        mab__params_fini(&params);
        return rc;
    }
    e->refresh_ms = (uint32_t)refresh_ms;
    void *state = NULL;
    mab_error open_err = {0, ""};
    if (mode == STORAGE_CHECK) {
        /* Validate without opening: nothing created, nothing locked. */
        e->storage_checked = mab__storage_has(e->storage, check) && e->storage->check;
        if (e->storage_checked)
            rc = e->storage->check(&params, &open_err);
        else
            mab__params_mark_all_used(&params); /* the plugin cannot tell: not checked */
        if (rc == MAB_OK)
            read_check_layouts(e, &params);
    } else if (mode == STORAGE_READ_ONLY && mab__storage_has(e->storage, open_read_only) &&
               e->storage->open_read_only) {
        rc = e->storage->open_read_only(&params, &state, &open_err);
    } else {
        rc = e->storage->open(&params, &state, &open_err);
    }
    if (rc != MAB_OK) {
        if (params.error[0])
            rc = mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params.error,
                               e->storage_path);
        else if (open_err.message[0])
            rc = mab_error_set(err, rc, "%s: storage: %s", e->config_path, open_err.message);
        else
            rc = mab_error_set(err, rc, "%s: storage: %s: open failed: %s", e->config_path,
                               e->storage_path, mab_strerror(rc));
    } else {
        e->storage_state = state;
        rc = mab__params_check_unused(&params, err);
    }
    mab__params_fini(&params);
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        const mab__experiment *x = &e->experiments[i];
        if ((x->layout.arm_stats || x->layout.experiment_stats) &&
            !mab__storage_has_stats(e->storage))
            rc = mab_error_set(err, MAB_EPLUGIN,
                               "%s: experiments.%s: policy %s (%s) keeps statistics, but "
                               "storage plugin %s is ABI %u.%u, which cannot store them; "
                               "rebuild it against storage ABI %u.%u or later",
                               e->config_path, x->id, x->policy_name, x->policy_path,
                               e->storage_path, e->storage->abi_major, e->storage->abi_minor,
                               MAB_STORAGE_ABI_MAJOR, 4u);
    }
    return rc;
}

/* Give each ABI 2 arm and experiment its place in the stats arrays. */
static int allocate_stats(mab_engine *e)
{
    size_t at = 0;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        size_t own = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
        for (size_t j = 0; j < x->n_arms; j++)
            x->arms[j].stats_at = at + j * x->layout.arm_stats;
        x->stats_at = at + x->n_arms * x->layout.arm_stats;
        at += own;
        if (own > e->max_stats)
            e->max_stats = own;
    }
    e->total_stats = at;
    size_t n = at ? at : 1, entries = e->total_arms + e->n_experiments;
    e->stats_published = calloc(n, sizeof *e->stats_published);
    e->stats_unapplied = calloc(n, sizeof *e->stats_unapplied);
    e->stats_batch = calloc(entries, sizeof *e->stats_batch);
    e->stats_batch_values = calloc(n, sizeof *e->stats_batch_values);
    e->stats_batch_at = calloc(entries, sizeof *e->stats_batch_at);
    if (!e->stats_published || !e->stats_unapplied || !e->stats_batch ||
        !e->stats_batch_values || !e->stats_batch_at)
        return MAB_ENOMEM;
    return MAB_OK;
}

/*
 * Read every stored total, then publish stored + what this process has not
 * yet applied. The caller holds flush_mu (or is mab_open), so no batch is
 * applied between the read and the combination. The read (possibly network
 * I/O) happens without publish_lock; only the combination holds it
 * exclusively, so that no publish lands half-way through it.
 */
static int load_totals(mab_engine *e, mab_error *err)
{
    const char **ids = calloc(e->max_arms, sizeof *ids);
    mab_totals *stored = calloc(e->total_arms, sizeof *stored);
    double *stored_stats = calloc(e->total_stats ? e->total_stats : 1, sizeof *stored_stats);
    int rc = ids && stored && stored_stats ? MAB_OK
                                           : mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; j < x->n_arms; j++)
            ids[j] = x->arms[j].id;
        rc = e->storage->load(e->storage_state, x->id, ids, x->n_arms, &stored[x->first_arm],
                              err);
        if (rc == MAB_OK && (x->layout.arm_stats || x->layout.experiment_stats))
            rc = e->storage->load_stats(e->storage_state, x->id, x->layout_tag, ids, x->n_arms,
                                        x->layout.arm_stats, &stored_stats[x->arms[0].stats_at],
                                        x->layout.experiment_stats,
                                        &stored_stats[x->stats_at], err);
    }
    if (rc == MAB_OK) {
        pthread_rwlock_wrlock(&e->publish_lock);
        for (size_t i = 0; i < e->total_arms; i++) {
            mab_totals unapplied = atomic_totals_read(&e->all_arms[i]->unapplied);
            totals_add(&stored[i], &unapplied);
            atomic_totals_store(&e->all_arms[i]->published, &stored[i]);
        }
        for (size_t i = 0; i < e->total_stats; i++)
            atomic_store_explicit(&e->stats_published[i],
                                  stored_stats[i] + atomic_load_explicit(&e->stats_unapplied[i],
                                                                         memory_order_relaxed),
                                  memory_order_relaxed);
        pthread_rwlock_unlock(&e->publish_lock);
    }
    free(ids);
    free(stored);
    free(stored_stats);
    return rc;
}

static int allocate_tables(mab_engine *e)
{
    size_t n = e->total_arms;
    e->all_arms = calloc(n, sizeof *e->all_arms);
    e->arm_experiment = calloc(n, sizeof *e->arm_experiment);
    e->batch = calloc(n, sizeof *e->batch);
    e->batch_arm = calloc(n, sizeof *e->batch_arm);
    e->slots = aligned_alloc(64, MAB__SLOTS * sizeof *e->slots);
    if (!e->all_arms || !e->arm_experiment || !e->batch || !e->batch_arm || !e->slots)
        return MAB_ENOMEM;
    memset(e->slots, 0, MAB__SLOTS * sizeof *e->slots);
    if (mab__id_index_build(&e->experiment_index, e->experiments, sizeof *e->experiments,
                            e->n_experiments) != MAB_OK)
        return MAB_ENOMEM;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        if (mab__id_index_build(&x->arm_index, x->arms, sizeof *x->arms, x->n_arms) != MAB_OK)
            return MAB_ENOMEM;
    }
    for (unsigned i = 0; i < MAB__SLOTS; i++)
        atomic_flag_clear(&e->slots[i].lock);
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; j < x->n_arms; j++) {
            e->all_arms[x->first_arm + j] = &x->arms[j];
            e->arm_experiment[x->first_arm + j] = x;
        }
    }
    return MAB_OK;
}

int mab_open(const char *config_path, mab_engine **out, mab_error *err)
{
    return mab_open_ex(config_path, NULL, out, err);
}

int mab_open_ex(const char *config_path, const mab_options *opts, mab_engine **out,
                mab_error *err)
{
    return mab_open_sections(config_path, opts, NULL, out, err);
}

int mab_open_sections(const char *config_path, const mab_options *opts,
                      const char *const *sections, mab_engine **out, mab_error *err)
{
    if (!config_path || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_open: config_path and out must not be NULL");
    if (opts && opts->struct_size < sizeof(mab_options))
        return mab_error_set(err, MAB_EINVAL, "mab_open: mab_options.struct_size is %zu, need %zu",
                             opts->struct_size, sizeof(mab_options));
    if (sodium_init() < 0)
        return mab_error_set(err, MAB_ENOMEM, "libsodium failed to initialise");
    mab_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->config_path = mab__strdup(config_path))) {
        free(e);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    e->serial = atomic_fetch_add(&next_engine_serial, 1);
    e->fork_generation = atomic_load(&fork_generation);
    pthread_rwlock_init(&e->publish_lock, NULL);
    pthread_mutex_init(&e->flush_mu, NULL);
    pthread_mutex_init(&e->durable_mu, NULL);
    pthread_cond_init(&e->durable_cv, NULL);
    pthread_mutex_init(&e->writer_mu, NULL);
    pthread_mutex_init(&e->claim_mu, NULL);
    pthread_cond_init(&e->claim_cv, NULL);
    pthread_mutex_init(&e->dropped_mu, NULL);

    int rc = mab__config_load(e, sections, err);
    if (rc == MAB_OK && opts && (opts->flags & MAB_OPEN_SEED)) {
        e->has_seed = 1;
        e->seed = opts->seed;
    }
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        x->reward_scale = 1.0 / (x->reward_max - x->reward_min);
    }
    if (rc == MAB_OK && allocate_tables(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++)
        rc = create_policy(e, &e->experiments[i], err);
    if (rc == MAB_OK && allocate_stats(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    unsigned flags = opts ? opts->flags : 0;
    if ((flags & MAB_OPEN_CHECK) && (flags & (MAB_OPEN_NO_STORAGE | MAB_OPEN_READ_ONLY)))
        rc = rc == MAB_OK ? mab_error_set(err, MAB_EINVAL, "mab_open: MAB_OPEN_CHECK excludes "
                                          "MAB_OPEN_NO_STORAGE and MAB_OPEN_READ_ONLY") : rc;
    e->read_only = (flags & (MAB_OPEN_READ_ONLY | MAB_OPEN_CHECK)) != 0;
    enum storage_mode mode = (flags & MAB_OPEN_CHECK)       ? STORAGE_CHECK
                             : (flags & MAB_OPEN_READ_ONLY) ? STORAGE_READ_ONLY
                                                            : STORAGE_OPEN;
    int with_storage = !(flags & MAB_OPEN_NO_STORAGE);
    if (rc == MAB_OK && with_storage)
        rc = open_storage(e, mode, err);
    if (rc == MAB_OK && with_storage && mode != STORAGE_CHECK)
        rc = load_totals(e, err);
    if (rc == MAB_OK && with_storage && mode == STORAGE_OPEN)
        rc = writer_start(e, err);
    if (rc != MAB_OK) {
        engine_free(e);
        return rc;
    }
    /* The parsed config is not needed once plugins have read their keys. */
    for (size_t i = 0; i < e->n_experiments; i++)
        e->experiments[i].policy_obj = NULL;
    e->storage_obj = NULL;
    cJSON_Delete(e->root);
    e->root = NULL;
    *out = e;
    return MAB_OK;
}

int mab_close(mab_engine *e, mab_error *err)
{
    if (!e)
        return MAB_OK;
    if (forked_since_open(e)) {
        /* A copy in a child: free the memory only. The writer thread is not
           here to stop, and the storage handles are the parent's. */
        e->writer_running = 0;
        e->storage_state = NULL;
        int rc = fork_error(e, err);
        engine_free(e);
        return rc;
    }
    writer_stop(e);
    mab_error flush_err;
    int rc = mab_flush(e, &flush_err);
    if (rc != MAB_OK) {
        uint64_t lost_pulls = 0, lost_rewards = 0;
        for (size_t i = 0; i < e->total_arms; i++) {
            lost_pulls += atomic_load(&e->all_arms[i]->unapplied.pulls);
            lost_rewards += atomic_load(&e->all_arms[i]->unapplied.rewards);
        }
        mab_error_set(err, rc, "%s; %llu pulls and %llu rewards were not written",
                      flush_err.message, (unsigned long long)lost_pulls,
                      (unsigned long long)lost_rewards);
    }
    engine_free(e);
    return rc;
}

/* ---- lookups ---------------------------------------------------------- */

static int find_experiment(mab_engine *e, const char *id, mab__experiment **out,
                           mab_error *err)
{
    if (!e || !id)
        return mab_error_set(err, MAB_EINVAL, "engine and experiment id must not be NULL");
    if (forked_since_open(e))
        return fork_error(e, err);
    long i = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments, id);
    if (i >= 0) {
        *out = &e->experiments[i];
        return MAB_OK;
    }
    return mab_error_set(err, MAB_ENOTFOUND, "%s: no experiment \"%s\"", e->config_path, id);
}

static long find_arm(const mab_engine *e, const mab__experiment *x, const char *id,
                     mab_error *err)
{
    long i = id ? mab__id_index_find(&x->arm_index, x->arms, sizeof *x->arms, id) : -1;
    if (i >= 0)
        return i;
    mab_error_set(err, MAB_ENOTFOUND, "%s: experiments.%s has no arm \"%s\"", e->config_path,
                  x->id, id ? id : "(null)");
    return -1;
}

/* Both lookups of a call that names an experiment and one of its arms. */
static int find_experiment_arm(mab_engine *e, const char *experiment, const char *arm,
                               mab__experiment **x, size_t *index, mab_error *err)
{
    int rc = find_experiment(e, experiment, x, err);
    if (rc != MAB_OK)
        return rc;
    long i = find_arm(e, *x, arm, err);
    if (i < 0)
        return MAB_ENOTFOUND;
    *index = (size_t)i;
    return MAB_OK;
}

static void fill_choice(const mab__experiment *x, size_t arm, double probability,
                        mab_choice *out)
{
    out->arm_index = arm;
    out->arm_id = x->arms[arm].id;
    out->value_json = x->arms[arm].value_json;
    out->probability = probability;
}

int mab_arm_lookup(mab_engine *e, const char *experiment, const char *arm, mab_choice *out,
                   mab_error *err)
{
    mab__experiment *x;
    size_t i;
    int rc = find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    fill_choice(x, i, NAN, out);
    return MAB_OK;
}

/* ---- choose and reward ------------------------------------------------ */

/* The policy's view of an experiment: published + this slot's pending
   totals, rewards normalised to [0, 1] by the reward range. */
static void build_view(const mab__experiment *x, const mab__slot *s)
{
    double min = x->reward_min, width = x->reward_max - x->reward_min;
    int identity = min == 0.0 && width == 1.0;
    for (size_t i = 0; i < x->n_arms; i++) {
        const mab__arm *a = &x->arms[i];
        const mab_totals *p = &s->pending[x->first_arm + i];
        mab_arm_view *v = &s->view[i];
        mab_totals t = atomic_totals_read(&a->published);
        v->pulls = t.pulls + p->pulls;
        v->rewards = t.rewards + p->rewards;
        double sum = t.reward_sum + p->reward_sum;
        double sq = t.reward_sum_sq + p->reward_sum_sq;
        if (!identity) {
            /* sum of (r - min)/w and of its square, from the raw sums. */
            double c = (double)v->rewards;
            sq = (sq - 2.0 * min * sum + c * min * min) / (width * width);
            sum = (sum - c * min) / width;
            sum = sum < 0.0 ? 0.0 : sum > c ? c : sum;
            sq = sq < 0.0 ? 0.0 : sq;
        }
        v->reward_sum = sum;
        v->reward_sum_sq = sq;
    }
}

/* ---- ABI 2: time, features, statistics ------------------------------- */

static int64_t engine_now(const mab_engine *e, const mab_context *ctx)
{
    if (ctx && ctx->time_ns)
        return ctx->time_ns;
    if (e->clock)
        return e->clock(e->clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int mab_set_clock(mab_engine *e, int64_t (*clock)(void *clock_ctx), void *clock_ctx,
                  mab_error *err)
{
    if (!e)
        return mab_error_set(err, MAB_EINVAL, "mab_set_clock: engine is NULL");
    e->clock = clock;
    e->clock_ctx = clock_ctx;
    return MAB_OK;
}

static int context_check(const mab_context *ctx, mab_error *err)
{
    if (!ctx)
        return MAB_OK;
    if (ctx->struct_size < sizeof(mab_context))
        return mab_error_set(err, MAB_EINVAL, "mab_context.struct_size is %zu, need %zu",
                             ctx->struct_size, sizeof(mab_context));
    if (ctx->n_features && (!ctx->feature_names || !ctx->feature_values))
        return mab_error_set(err, MAB_EINVAL,
                             "mab_context: %zu features but no names or values", ctx->n_features);
    for (size_t i = 0; i < ctx->n_features; i++)
        if (!ctx->feature_names[i])
            return mab_error_set(err, MAB_EINVAL, "mab_context: feature name %zu is NULL", i);
    return MAB_OK;
}

/* The features the experiment's policy names, in its order, NAN when the
   caller has none of that name. */
static void resolve_features(const mab__experiment *x, const mab_context *ctx, double *out)
{
    for (size_t i = 0; i < x->n_features; i++) {
        out[i] = NAN;
        for (size_t k = 0; ctx && k < ctx->n_features; k++)
            if (strcmp(ctx->feature_names[k], x->feature_names[i]) == 0) {
                out[i] = ctx->feature_values[k];
                break;
            }
    }
}

/* The policy's statistics as this slot sees them: published + pending, into
   the slot's view_stats (arms first, then the experiment's own). */
static void build_stats_view(const mab_engine *e, const mab__experiment *x,
                             const mab__slot *s)
{
    size_t n = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
    size_t at = x->n_arms ? x->arms[0].stats_at : x->stats_at;
    for (size_t i = 0; i < n; i++)
        s->view_stats[i] = atomic_load_explicit(&e->stats_published[at + i],
                                                memory_order_relaxed) +
                           s->pending_stats[at + i];
}

/* Ask the policy for an event's deltas and add them, with the event's
   counter, to the locked slot. Nothing is added when update fails. */
static int record_event(mab__experiment *x, mab__slot *s, const mab_policy_event *ev)
{
    size_t na = x->layout.arm_stats, nx = x->layout.experiment_stats;
    if (x->policy2->update && (na || nx)) {
        double *arm_delta = s->delta_stats, *experiment_delta = s->delta_stats + na;
        memset(s->delta_stats, 0, (na + nx) * sizeof *s->delta_stats);
        int rc = x->policy2->update(x->policy_state, ev, arm_delta, experiment_delta);
        if (rc != MAB_OK)
            return rc;
        for (size_t i = 0; i < na + nx; i++)
            if (!isfinite(s->delta_stats[i]))
                return MAB_ERANGE;
        double *pending_arm = &s->pending_stats[x->arms[ev->arm].stats_at];
        for (size_t i = 0; i < na; i++)
            pending_arm[i] += arm_delta[i];
        for (size_t i = 0; i < nx; i++)
            s->pending_stats[x->stats_at + i] += experiment_delta[i];
    }
    return MAB_OK;
}

static int choose2(mab_engine *e, mab__experiment *x, const mab_context *ctx, mab_choice *out,
                   int *estimated, mab_error *err)
{
    double features[MAB_POLICY_FEATURES_MAX];
    resolve_features(x, ctx, features);
    int64_t now = engine_now(e, ctx);
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    build_view(x, s);
    build_stats_view(e, x, s);
    mab_policy_input in = {sizeof in, &mab__core_api, s->view, x->n_arms, s->view_stats,
                           s->view_stats + x->n_arms * x->layout.arm_stats, now, features,
                           x->n_features, &s->rng, NULL, 0, 0, 0};
    mab_policy_choice c = {x->n_arms, NAN, 0};
    int rc = x->policy2->choose(x->policy_state, &in, &c);
    const char *failed = "choose";
    if (rc == MAB_OK && c.arm < x->n_arms) {
        mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_PULL, c.arm, x->n_arms,
                               0.0, c.probability, now, features, x->n_features};
        rc = record_event(x, s, &ev);
        failed = "update";
        if (rc == MAB_OK) {
            slot_pending(s, x->first_arm + c.arm)->pulls++;
            if (slot_due(s))
                slot_publish(e, s);
        }
    }
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s: %s failed: %s",
                             x->id, x->policy_path, failed, mab_strerror(rc));
    if (c.arm >= x->n_arms)
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s chose arm %zu of only %zu", x->id,
                             x->policy_path, c.arm, x->n_arms);
    fill_choice(x, c.arm, c.probability, out);
    if (estimated)
        *estimated = c.estimated != 0;
    return MAB_OK;
}

static int read_only_error(const mab_engine *e, const char *what, mab_error *err);

int mab_choose_ctx(mab_engine *e, const char *experiment, const mab_context *ctx,
                   mab_choice *out, int *estimated, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (e->read_only)
        return read_only_error(e, "choose", err);
    if ((found = context_check(ctx, err)) != MAB_OK)
        return found;
    if (x->policy2)
        return choose2(e, x, ctx, out, estimated, err);
    if (estimated)
        *estimated = 0;
    return mab_choose(e, experiment, out, err);
}

/* Whether an arm holding `count` rewards that sum to sum (squares: sq) has
   finite totals, both in the experiment's units and normalised the way
   build_view normalises them. A total that is not finite could never be
   written (storage refuses it) nor read by a policy. */
static int sums_finite(const mab__experiment *x, double count, double sum, double sq)
{
    double min = x->reward_min, scale = x->reward_scale; /* finite: see config.c */
    double normalised_sq = (sq - 2.0 * min * sum + count * min * min) * (scale * scale);
    double normalised_sum = (sum - count * min) * scale;
    return isfinite(sum) && isfinite(sq) && isfinite(normalised_sq) && isfinite(normalised_sum);
}

static int read_only_error(const mab_engine *e, const char *what, mab_error *err)
{
    return mab_error_set(err, MAB_EINVAL, "%s: %s was opened read-only (MAB_OPEN_READ_ONLY or "
                         "MAB_OPEN_CHECK): nothing can be written", what, e->config_path);
}

int mab_choose(mab_engine *e, const char *experiment, mab_choice *out, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (e->read_only)
        return read_only_error(e, "choose", err);
    if (x->policy2)
        return choose2(e, x, NULL, out, NULL, err);
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    build_view(x, s);
    size_t arm = x->n_arms;
    double probability = NAN;
    int rc = x->policy->choose(x->policy_state, s->view, x->n_arms, &s->rng, &arm, &probability);
    if (rc == MAB_OK && arm < x->n_arms) {
        slot_pending(s, x->first_arm + arm)->pulls++;
        if (slot_due(s))
            slot_publish(e, s);
    }
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s failed: %s", x->id,
                             x->policy_path, mab_strerror(rc));
    if (arm >= x->n_arms)
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s chose arm %zu of only %zu", x->id,
                             x->policy_path, arm, x->n_arms);
    fill_choice(x, arm, probability, out);
    return MAB_OK;
}

/* A reward value must be a finite number inside the experiment's range. */
static int reward_value_check(const mab__experiment *x, const char *arm, double value,
                              mab_error *err)
{
    if (!isfinite(value))
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: reward for arm \"%s\" is %s; rewards must be "
                             "finite numbers",
                             x->id, arm, isnan(value) ? "NaN" : "infinite");
    if (value < x->reward_min || value > x->reward_max)
        return mab_error_set(err, MAB_ERANGE,
                             "experiments.%s: reward %g for arm \"%s\" is outside the reward "
                             "range [%g, %g]",
                             x->id, value, arm, x->reward_min, x->reward_max);
    return MAB_OK;
}

/* Both public reward calls, inlined into each so that mab_reward() (ABI 1
   hosts' hot path) pays no extra call for the context it does not have. */
static inline __attribute__((always_inline)) int
reward_impl(mab_engine *e, const char *experiment, const char *arm, double value,
            const mab_context *ctx, mab_error *err)
{
    mab__experiment *x;
    size_t i;
    int rc = find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    if (e->read_only)
        return read_only_error(e, "reward", err);
    if ((rc = reward_value_check(x, arm, value, err)) != MAB_OK)
        return rc;
    if ((rc = context_check(ctx, err)) != MAB_OK)
        return rc;
    double features[MAB_POLICY_FEATURES_MAX];
    mab_policy_event ev;
    if (x->policy2) {
        resolve_features(x, ctx, features);
        double r = (value - x->reward_min) * x->reward_scale;
        double p = ctx && ctx->probability > 0 ? ctx->probability : NAN;
        ev = (mab_policy_event){sizeof ev, &mab__core_api, MAB_EVENT_REWARD, i, x->n_arms,
                                r < 0 ? 0 : r > 1 ? 1 : r, p, engine_now(e, ctx), features,
                                x->n_features};
    }
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    /* The reward must keep every sum finite, or no store would take it and
       it would reach storage only to be refused there. (The value itself,
       its square and its normalised form are finite: reward_value_check and
       the config's bounds on reward.min/max see to that.) */
    double square = value * value;
    mab_totals held = atomic_totals_read(&x->arms[i].published);
    totals_add(&held, &s->pending[x->first_arm + i]);
    double count = (double)held.rewards + 1.0;
    double sum = held.reward_sum + value, sq = held.reward_sum_sq + square;
    if (!sums_finite(x, count, sum, sq)) {
        slot_unlock(s);
        return mab_error_set(err, MAB_ERANGE,
                             "experiments.%s: reward %g for arm \"%s\" would make a sum of "
                             "the arm's rewards or of their squares overflow (the arm holds "
                             "%.0f rewards summing to %g, squares to %g); nothing was recorded",
                             x->id, value, arm, count - 1.0, held.reward_sum,
                             held.reward_sum_sq);
    }
    if (x->policy2 && (rc = record_event(x, s, &ev)) != MAB_OK) {
        slot_unlock(s);
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s refused the reward for arm \"%s\": %s; "
                             "nothing was recorded",
                             x->id, x->policy_path, arm, mab_strerror(rc));
    }
    mab_totals *p = slot_pending(s, x->first_arm + i);
    p->rewards++;
    p->reward_sum += value;
    p->reward_sum_sq += square;
    uint64_t seq = 0;
    uint64_t drops_before = atomic_load(&x->arms[i].drops);
    if ((e->sync_always && e->storage) || slot_due(s))
        seq = slot_publish(e, s);
    slot_unlock(s);
    if (!(e->sync_always && e->storage))
        return MAB_OK;
    rc = wait_durable(e, seq, err);
    /* A commit that dropped this arm's increment may have dropped this
       reward with it: then it is not durable and must not be acknowledged.
       (A drop of the arm just before this reward was published is taken for
       one too: better a reward reported unwritten than one lost.) */
    if (rc == MAB_OK && atomic_load(&x->arms[i].drops) != drops_before) {
        mab_error why;
        mab_dropped_deltas(e, &why);
        rc = mab_error_set(err, MAB_ESTORAGE,
                           "experiments.%s: the reward for arm \"%s\" was not written: %s",
                           x->id, arm, why.message);
    }
    return rc;
}

int mab_reward(mab_engine *e, const char *experiment, const char *arm, double value,
               mab_error *err)
{
    return reward_impl(e, experiment, arm, value, NULL, err);
}

int mab_reward_ctx(mab_engine *e, const char *experiment, const char *arm, double value,
                   const mab_context *ctx, mab_error *err)
{
    return reward_impl(e, experiment, arm, value, ctx, err);
}

/* ---- reward once: claims (engine_access.h) ---------------------------- */

int mab__engine_has_claims(const mab_engine *e)
{
    return e && e->storage && mab__storage_has(e->storage, claim) && e->storage->claim;
}

int mab_storage_has_claims(const mab_engine *e)
{
    return mab__engine_has_claims(e);
}

/*
 * Failure orders. With sync "always" the claim and the reward's increment
 * are one call of the plugin, with the claims of concurrent rewards (see
 * claim_wait): one LMDB transaction, one json_file write; MongoDB undoes
 * the claims when the increments fail. So a reward answered MAB_OK is
 * durable with its claim and one answered MAB_ESTORAGE left neither behind:
 * the visitor's retry can count. The increment bypasses the write-behind
 * queue (it is already stored), so it goes to the published totals only,
 * under flush_mu so that no refresh reads the store between the commit and
 * the add.
 *
 * With sync {"interval_ms": N} the claim is immediate and the increment is
 * queued like any other. The claim is decided and visible to every process
 * at once, but asked with MAB_CLAIM_DEFER_SYNC: it becomes durable with the
 * next batch (LMDB: the batch's fdatasync), so a machine crash loses claim
 * and increment together. A crash of the process alone before the next
 * batch loses the increment (as it loses every pending increment) while
 * its claim stays, so that reward is lost, never counted twice. The same
 * holds if mab_reward fails after the claim was granted (out of memory, or
 * rewards of other processes or threads made the arm's sums overflow since
 * the check below).
 *
 * A reward whose sums would not be finite is refused (MAB_ERANGE) before
 * anything is claimed, as mab_reward refuses it. When storage still refuses
 * a group as invalid (MAB_EINVAL or MAB_ERANGE: a record it holds would
 * overflow), each half is decided on its own, down to the claim at fault:
 * only that caller gets the error (nothing of its reward claimed or
 * counted); the others are decided. Any other error (the store failed)
 * fails the group as a whole: every caller of it gets the error, nothing of
 * the group is claimed, and each retry can count.
 */

/* Decide claims[0..n) (of waiters ws[0..n)) in one storage call; see the
   failure orders above. Caller holds flush_mu. */
static void claims_decide(mab_engine *e, mab_claim *claims, mab__claim_waiter **ws, size_t n,
                          unsigned flags)
{
    mab_error err = {0, ""};
    int rc = e->storage->claim(e->storage_state, claims, n, flags, &err);
    if (rc == MAB_OK) {
        if (e->sync_always) {
            pthread_rwlock_rdlock(&e->publish_lock);
            for (size_t k = 0; k < n; k++)
                if (claims[k].result == MAB_OK)
                    atomic_totals_add(&ws[k]->arm->published, &ws[k]->delta.add);
            pthread_rwlock_unlock(&e->publish_lock);
        }
        for (size_t k = 0; k < n; k++)
            ws[k]->rc = claims[k].result == MAB_OK ? MAB_OK : MAB_ECLAIMED;
        return;
    }
    if (refused_as_invalid(rc) && n > 1) {
        size_t half = n / 2; /* the first half first: an id given twice stays first-wins */
        claims_decide(e, claims, ws, half, flags);
        claims_decide(e, claims + half, ws + half, n - half, flags);
        return;
    }
    if (!err.message[0])
        mab_error_set(&err, rc, "%s", mab_strerror(rc));
    atomic_fetch_add(&e->flush_failures, 1); /* a failed write, for mab_storage_errors() */
    for (size_t k = 0; k < n; k++) {
        ws[k]->rc = rc;
        ws[k]->err = err;
    }
}

/* Decide a group of claims, in one storage call (one durable write) unless
   storage refuses one of them as invalid. */
static void claims_commit(mab_engine *e, mab__claim_waiter *group)
{
    size_t n = 0;
    for (mab__claim_waiter *w = group; w; w = w->next)
        n++;
    mab_claim *claims = malloc(n * sizeof *claims);
    mab__claim_waiter **ws = malloc(n * sizeof *ws);
    if (!claims || !ws) {
        for (mab__claim_waiter *w = group; w; w = w->next)
            w->rc = mab_error_set(&w->err, MAB_ENOMEM, "out of memory");
        free(claims);
        free(ws);
        return;
    }
    size_t k = 0;
    for (mab__claim_waiter *w = group; w; w = w->next, k++) {
        claims[k] = w->claim;
        ws[k] = w;
    }
    pthread_mutex_lock(&e->flush_mu);
    claims_decide(e, claims, ws, n, e->sync_always ? 0 : MAB_CLAIM_DEFER_SYNC);
    pthread_mutex_unlock(&e->flush_mu);
    free(claims);
    free(ws);
}

/*
 * Group commit of claims, as wait_durable does for increments: the first
 * caller to find no group being written leads one: it takes every claim
 * queued (its own and those of callers that arrived meanwhile) and decides
 * them in one storage call. Callers arriving during that write queue up
 * and wait; the next leader takes them all.
 */
static void claim_wait(mab_engine *e, mab__claim_waiter *w)
{
    pthread_mutex_lock(&e->claim_mu);
    w->next = e->claim_queue;
    e->claim_queue = w;
    while (!w->done) {
        if (e->claim_committing) {
            pthread_cond_wait(&e->claim_cv, &e->claim_mu);
            continue;
        }
        e->claim_committing = 1;
        pthread_mutex_unlock(&e->claim_mu);
        sched_yield(); /* let callers just released by the last group join this one */
        pthread_mutex_lock(&e->claim_mu);
        mab__claim_waiter *group = e->claim_queue;
        e->claim_queue = NULL;
        pthread_mutex_unlock(&e->claim_mu);
        claims_commit(e, group);
        pthread_mutex_lock(&e->claim_mu);
        for (mab__claim_waiter *g = group; g; g = g->next)
            g->done = 1;
        e->claim_committing = 0;
        pthread_cond_broadcast(&e->claim_cv);
    }
    pthread_mutex_unlock(&e->claim_mu);
}

/*
 * The statistics of a reward whose claim storage granted with its counters
 * (sync "always"): the policy's update for the reward event, its deltas
 * added to the write-behind path like mab_reward_ctx's (counters excluded:
 * the claim applied them), then written before returning. A crash between
 * the claim's commit and this one loses the reward's statistics, never
 * counts them twice. The counters are stored whatever happens here, so it
 * returns MAB_OK but when out of memory: a policy that refuses the event
 * leaves the reward without statistics (a dropped delta, mab_dropped_deltas);
 * a failed write leaves them queued for the next one (mab_storage_errors()).
 */
static int claimed_reward_stats(mab_engine *e, mab__experiment *x, size_t i, double value,
                                const mab_context *ctx, mab_error *err)
{
    if (!x->policy2 || !x->policy2->update || !(x->layout.arm_stats || x->layout.experiment_stats))
        return MAB_OK;
    double features[MAB_POLICY_FEATURES_MAX];
    resolve_features(x, ctx, features);
    double r = (value - x->reward_min) * x->reward_scale;
    double p = ctx && ctx->probability > 0 ? ctx->probability : NAN;
    mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_REWARD, i, x->n_arms,
                           r < 0 ? 0 : r > 1 ? 1 : r, p, engine_now(e, ctx), features,
                           x->n_features};
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: the reward for arm \"%s\" was "
                             "counted; out of memory for its policy statistics", x->id,
                             x->arms[i].id);
    int rc = record_event(x, s, &ev);
    if (rc != MAB_OK) {
        slot_unlock(s);
        /* The reward is stored with its claim: it stays counted, and its
           statistics are reported dropped (mab_dropped_deltas). */
        atomic_fetch_add(&e->dropped_deltas, 1);
        pthread_mutex_lock(&e->dropped_mu);
        mab_error_set(&e->last_drop, MAB_EPLUGIN,
                      "experiments.%s: policy %s refused the reward for arm \"%s\" (%s) after "
                      "its claim was granted: the reward was counted without its policy "
                      "statistics",
                      x->id, x->policy_path, x->arms[i].id, mab_strerror(rc));
        pthread_mutex_unlock(&e->dropped_mu);
        return MAB_OK;
    }
    /* Mark the arm dirty so that slot_publish takes its statistics; its
       pending counters stay as they were (the claim stored this reward's). */
    (void)slot_pending(s, x->first_arm + i);
    uint64_t seq = slot_publish(e, s);
    slot_unlock(s);
    mab_error ignored;
    (void)wait_durable(e, seq, &ignored); /* on failure they stay queued (write_queued) */
    return MAB_OK;
}

int mab__engine_claim_reward(mab_engine *e, const char *experiment, const char *arm,
                             double value, const uint8_t assignment_id[MAB_ASSIGNMENT_ID_BYTES],
                             int64_t expires_at, const mab_context *ctx, mab_error *err)
{
    mab__experiment *x;
    size_t i;
    int rc = find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    if (e->read_only)
        return read_only_error(e, "reward", err);
    if ((rc = context_check(ctx, err)) != MAB_OK)
        return rc;
    if (!mab__engine_has_claims(e))
        return mab_error_set(err, MAB_EINVAL, "%s: storage %s keeps no claims (storage ABI < 1.3)",
                             e->config_path, e->storage ? e->storage_path : "(none)");
    if ((rc = reward_value_check(x, arm, value, err)) != MAB_OK)
        return rc;
    /* As mab_reward: a reward that would make a sum of the arm overflow is
       refused before it is claimed, so that it claims nothing. */
    double square = value * value;
    mab_totals held = atomic_totals_read(&x->arms[i].published);
    double count = (double)held.rewards + 1.0;
    if (!sums_finite(x, count, held.reward_sum + value, held.reward_sum_sq + square))
        return mab_error_set(err, MAB_ERANGE,
                             "experiments.%s: reward %g for arm \"%s\" would make a sum of "
                             "the arm's rewards or of their squares overflow (the arm holds "
                             "%.0f rewards summing to %g, squares to %g); nothing was claimed "
                             "or recorded",
                             x->id, value, arm, count - 1.0, held.reward_sum,
                             held.reward_sum_sq);
    mab__claim_waiter w;
    memset(&w, 0, sizeof w);
    w.arm = &x->arms[i];
    w.delta = (mab_delta){x->id, x->arms[i].id, {0, 1, value, square}};
    w.claim.assignment_id = assignment_id;
    w.claim.expires_at = expires_at;
    if (e->sync_always) {
        w.claim.deltas = &w.delta;
        w.claim.n_deltas = 1;
    }
    claim_wait(e, &w);
    if (w.rc != MAB_OK && w.rc != MAB_ECLAIMED)
        return mab_error_set(err, w.rc, "%s", w.err.message);
    if (w.rc != MAB_OK)
        return w.rc;
    if (e->sync_always)
        return claimed_reward_stats(e, x, i, value, ctx, err);
    return mab_reward_ctx(e, experiment, arm, value, ctx, err);
}

/* ---- statistics and reset -------------------------------------------- */

size_t mab_experiment_count(const mab_engine *e)
{
    return e ? e->n_experiments : 0;
}

int mab_experiment_at(const mab_engine *e, size_t index, mab_experiment_info *out,
                      mab_error *err)
{
    if (!e || index >= e->n_experiments)
        return mab_error_set(err, MAB_ENOTFOUND, "no experiment number %zu", index);
    const mab__experiment *x = &e->experiments[index];
    out->id = x->id;
    out->policy = x->policy_name;
    out->policy_path = x->policy_path;
    out->n_arms = x->n_arms;
    out->reward_min = x->reward_min;
    out->reward_max = x->reward_max;
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
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    gather_all(e);
    for (size_t i = 0; i < x->n_arms && i < cap; i++) {
        const mab__arm *a = &x->arms[i];
        mab_arm_stats *st = &out[i];
        st->arm_id = a->id;
        mab_totals t = atomic_totals_read(&a->published);
        st->pulls = t.pulls;
        st->rewards = t.rewards;
        st->reward_sum = t.reward_sum;
        st->reward_sum_sq = t.reward_sum_sq;
        st->mean = st->pulls ? st->reward_sum / (double)st->pulls : 0.0;
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
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (!info || info->struct_size < sizeof *info)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_policy_stats: info is NULL or its struct_size is too small");
    if ((arm_cap && !arm_stats) || (experiment_cap && !experiment_stats))
        return mab_error_set(err, MAB_EINVAL, "mab_policy_stats: NULL array with a capacity");
    gather_all(e);
    info->layout = x->layout_tag ? x->layout_tag : "";
    info->per_arm = x->layout.arm_stats;
    info->per_experiment = x->layout.experiment_stats;
    size_t n_arm = x->n_arms * x->layout.arm_stats;
    size_t at = x->n_arms ? x->arms[0].stats_at : x->stats_at;
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
    int rc = find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if ((rc = context_check(ctx, err)) != MAB_OK)
        return rc;
    if (!x->policy2 || !x->policy2->explain)
        return mab_error_set(err, MAB_EINVAL, "experiments.%s: policy %s has no explain()",
                             x->id, x->policy_path);
    if (!kind || (cap && !values))
        return mab_error_set(err, MAB_EINVAL, "mab_explain: values and kind must not be NULL");
    double features[MAB_POLICY_FEATURES_MAX];
    resolve_features(x, ctx, features);
    int64_t now = engine_now(e, ctx);
    double *scores = calloc(x->n_arms, sizeof *scores);
    if (!scores)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab__slot *s = slot_acquire(e);
    if (!s) {
        free(scores);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    build_view(x, s);
    build_stats_view(e, x, s);
    mab_policy_input in = {sizeof in, &mab__core_api, s->view, x->n_arms, s->view_stats,
                           s->view_stats + x->n_arms * x->layout.arm_stats, now, features,
                           x->n_features, &s->rng, NULL, 0, 0, 0};
    *kind = 0;
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
    int rc = find_experiment(e, experiment, &x, err);
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

int mab_reset(mab_engine *e, const char *experiment, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    if (e->read_only)
        return read_only_error(e, "reset", err);
    gather_all(e);
    pthread_mutex_lock(&e->flush_mu);
    int rc = e->storage ? e->storage->reset(e->storage_state, x->id, err) : MAB_OK;
    if (rc == MAB_OK) {
        static const mab_totals zero;
        pthread_rwlock_wrlock(&e->publish_lock);
        for (size_t i = 0; i < x->n_arms; i++) {
            atomic_totals_store(&x->arms[i].published, &zero);
            atomic_totals_store(&x->arms[i].unapplied, &zero);
        }
        size_t n = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
        size_t at = x->n_arms ? x->arms[0].stats_at : x->stats_at;
        for (size_t i = at; i < at + n; i++) {
            atomic_store_explicit(&e->stats_published[i], 0.0, memory_order_relaxed);
            atomic_store_explicit(&e->stats_unapplied[i], 0.0, memory_order_relaxed);
        }
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
    if (!r->experiment || find_experiment(e, r->experiment, experiment, &inner) != MAB_OK)
        return mab_error_set(err, MAB_ENOTFOUND,
                             "import: record %zu: experiment \"%s\" is not in %s; nothing "
                             "was imported",
                             index, r->experiment ? r->experiment : "(null)", e->config_path);
    if (find_arm(e, *experiment, r->arm, &inner) < 0)
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

/* Check that every arm's totals stay finite once the records are added (to
   nothing for the experiments `cleared` lists, else to the current totals):
   storage would refuse them otherwise. */
static int import_check_totals(mab_engine *e, const mab_record *records,
                               const mab_delta *deltas, size_t n, const char *const *cleared,
                               size_t n_cleared, mab_error *err)
{
    mab_totals *sums = calloc(e->total_arms ? e->total_arms : 1, sizeof *sums);
    if (!sums)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < e->total_arms; i++) {
        const char *experiment = e->arm_experiment[i]->id;
        size_t k = 0;
        while (k < n_cleared && cleared[k] != experiment)
            k++;
        if (k == n_cleared)
            sums[i] = atomic_totals_read(&e->all_arms[i]->published);
    }
    int rc = MAB_OK;
    for (size_t i = 0; rc == MAB_OK && i < n; i++) {
        mab__experiment *x;
        mab_error inner;
        find_experiment(e, deltas[i].experiment, &x, &inner); /* checked by import_check */
        size_t arm = x->first_arm + (size_t)find_arm(e, x, deltas[i].arm, &inner);
        totals_add(&sums[arm], &deltas[i].add);
        if (!sums_finite(x, (double)sums[arm].rewards, sums[arm].reward_sum,
                         sums[arm].reward_sum_sq))
            rc = mab_error_set(err, MAB_ERANGE,
                               "import: record %zu (%s/%s): the arm's reward sums would "
                               "overflow (sum %g, sum of squares %g once added); nothing was "
                               "imported",
                               i, records[i].experiment, records[i].arm, sums[arm].reward_sum,
                               sums[arm].reward_sum_sq);
    }
    free(sums);
    return rc;
}

int mab_import(mab_engine *e, const mab_record *records, size_t n, int replace, mab_error *err)
{
    if (!e || (!records && n))
        return mab_error_set(err, MAB_EINVAL, "mab_import: engine and records must not be NULL");
    int rc = e->read_only ? read_only_error(e, "import", err) : storage_v11(e, "import", err);
    mab_delta *deltas = rc == MAB_OK ? calloc(n ? n : 1, sizeof *deltas) : NULL;
    const char **cleared = rc == MAB_OK ? calloc(e->n_experiments, sizeof *cleared) : NULL;
    if (rc == MAB_OK && (!deltas || !cleared))
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
        size_t k = 0;
        while (k < n_cleared && cleared[k] != x->id)
            k++;
        if (k == n_cleared)
            cleared[n_cleared++] = x->id;
    }
    if (rc == MAB_OK)
        rc = mab_flush(e, err);
    if (rc == MAB_OK)
        rc = import_check_totals(e, records, deltas, n, cleared, replace ? n_cleared : 0, err);
    if (rc == MAB_OK) {
        pthread_mutex_lock(&e->flush_mu);
        rc = replace ? e->storage->replace(e->storage_state, cleared, n_cleared, deltas, n, err)
                     : e->storage->apply(e->storage_state, deltas, n, err);
        if (rc == MAB_OK)
            rc = load_totals(e, err);
        pthread_mutex_unlock(&e->flush_mu);
    }
    free(deltas);
    free(cleared);
    return rc;
}
