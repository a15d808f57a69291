/*
 * slots.h - the small helpers of the choose and reward paths, inline so that
 * splitting the engine into files costs no call: a thread's slot, totals
 * arithmetic, atomics. Internal to core/ (engine.c, write_behind.c,
 * claims.c, engine_stats.c).
 */
#ifndef MAB_SLOTS_H
#define MAB_SLOTS_H

#include <math.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "engine.h"

/* Per thread: which slot this thread uses in the last few engines it used
   (defined in write_behind.c). */
#define MAB__THREAD_CACHE 4
typedef struct mab__thread_slot {
    uint64_t serial;
    mab__slot *slot;
} mab__thread_slot;
extern _Thread_local __attribute__((visibility("hidden"))) mab__thread_slot
    mab__thread_slots[MAB__THREAD_CACHE];
extern _Thread_local __attribute__((visibility("hidden"))) unsigned mab__thread_slots_next;

/* write_behind.c: allocate a slot's arrays and seed its stream (first use). */
int mab__slot_init(mab_engine *e, mab__slot *s);

/* slot_lock's wait, out of line: the callers keep no registers for it. */
static __attribute__((noinline, cold, unused)) void slot_lock_wait(mab__slot *s)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
        /* Only shared slots (more threads than MAB__SLOTS) or a gatherer
           ever contend; yield rather than burn the other core. */
        if (++spins > 64)
            sched_yield();
    }
}

static inline void slot_lock(mab__slot *s)
{
    if (__builtin_expect(atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire), 0))
        slot_lock_wait(s);
}

static inline void slot_unlock(mab__slot *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

/* A slot for this thread's first use of e, remembered in its cache (out of
   line: once per thread and engine). */
static __attribute__((noinline, cold, unused)) mab__slot *slot_assign(mab_engine *e)
{
    unsigned index = atomic_fetch_add_explicit(&e->next_slot, 1, memory_order_relaxed);
    mab__slot *s = &e->slots[index % MAB__SLOTS];
    unsigned k = mab__thread_slots_next++ % MAB__THREAD_CACHE;
    mab__thread_slots[k].serial = e->serial;
    mab__thread_slots[k].slot = s;
    return s;
}

/* This thread's slot, locked and ready; NULL when out of memory. */
static inline mab__slot *slot_acquire(mab_engine *e)
{
    mab__slot *s = NULL;
    /* One TLS address for the whole lookup, and the first match ends it (an
       engine's serial is in a thread's cache at most once). */
    mab__thread_slot *cache = mab__thread_slots;
    uint64_t serial = e->serial;
    for (unsigned i = 0; i < MAB__THREAD_CACHE; i++)
        if (cache[i].serial == serial) {
            s = cache[i].slot;
            break;
        }
    if (__builtin_expect(!s, 0))
        s = slot_assign(e);
    slot_lock(s);
    if (!s->ready && mab__slot_init(e, s) != MAB_OK) {
        slot_unlock(s);
        return NULL;
    }
    return s;
}

static inline void totals_add(mab_totals *to, const mab_totals *add)
{
    to->pulls += add->pulls;
    to->rewards += add->rewards;
    to->reward_sum += add->reward_sum;
    to->reward_sum_sq += add->reward_sum_sq;
}

static inline int totals_empty(const mab_totals *t)
{
    return t->pulls == 0 && t->rewards == 0;
}

static inline void atomic_add_double(_Atomic double *to, double add)
{
    double old = atomic_load_explicit(to, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(to, &old, old + add, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static inline void atomic_totals_add(mab__atomic_totals *to, const mab_totals *add)
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
static inline mab_totals atomic_totals_take(mab__atomic_totals *from)
{
    mab_totals t;
    t.pulls = atomic_exchange_explicit(&from->pulls, 0, memory_order_relaxed);
    t.rewards = atomic_exchange_explicit(&from->rewards, 0, memory_order_relaxed);
    t.reward_sum = atomic_exchange_explicit(&from->reward_sum, 0.0, memory_order_relaxed);
    t.reward_sum_sq = atomic_exchange_explicit(&from->reward_sum_sq, 0.0, memory_order_relaxed);
    return t;
}

static inline mab_totals atomic_totals_read(const mab__atomic_totals *from)
{
    mab_totals t;
    t.pulls = atomic_load_explicit(&from->pulls, memory_order_relaxed);
    t.rewards = atomic_load_explicit(&from->rewards, memory_order_relaxed);
    t.reward_sum = atomic_load_explicit(&from->reward_sum, memory_order_relaxed);
    t.reward_sum_sq = atomic_load_explicit(&from->reward_sum_sq, memory_order_relaxed);
    return t;
}

static inline void atomic_totals_store(mab__atomic_totals *to, const mab_totals *t)
{
    atomic_store_explicit(&to->pulls, t->pulls, memory_order_relaxed);
    atomic_store_explicit(&to->rewards, t->rewards, memory_order_relaxed);
    atomic_store_explicit(&to->reward_sum, t->reward_sum, memory_order_relaxed);
    atomic_store_explicit(&to->reward_sum_sq, t->reward_sum_sq, memory_order_relaxed);
}

/* After a write of published totals (any arm's): every
   slot's kept view is stale (engine.h, view_version). Release: a slot that
   reads the new number finds the writes before it. */
static inline void mab__view_changed(mab_engine *e)
{
    atomic_fetch_add_explicit(&e->view_version, 1, memory_order_release);
}

/* write_behind.c: give x a row in the locked slot (slot_take's slow path). */
int mab__slot_take_row(mab__slot *s, const mab__experiment *x);

/* Experiment x's pending totals in a locked slot, one per arm, then its
   pending statistics (slot_stats): its row, or the zero row when it has had
   no event since the slot's last publish. For reading only. */
static inline const mab_totals *slot_row(const mab__slot *s, const mab__experiment *x)
{
    return s->rows + s->row_at[x->slot_index];
}

/* Give x a row in the locked slot, before an operation changes anything in
   it: MAB_OK, or MAB_ENOMEM with nothing changed. Taking a row may move the
   arena: pointers from slot_row, slot_pending and slot_stats are valid until
   the next take or publish. */
static inline int slot_take(mab__slot *s, const mab__experiment *x)
{
    if (__builtin_expect(s->row_at[x->slot_index] != 0, 1))
        return MAB_OK;
    return mab__slot_take_row(s, x);
}

/* Add to a locked slot's pending totals of x's arm i (x's row taken:
   slot_take), counting an operation. */
static inline mab_totals *slot_pending(mab__slot *s, const mab__experiment *x, size_t i)
{
    s->pending_ops++;
    return s->rows + s->row_at[x->slot_index] + i;
}

/* x's pending statistics in its row (arms' first, then its own); written
   only once the row is taken (slot_take). */
static inline double *slot_stats(const mab__slot *s, const mab__experiment *x)
{
    return (double *)(s->rows + s->row_at[x->slot_index] + x->n_arms);
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The time of an event that has none of its own, for its bucket: the
   injected clock, else the coarse real-time clock (a few ns; events within
   a few ms of a bucket's edge may count in its neighbour). */
static inline int64_t bucket_clock(const mab_engine *e)
{
    if (e->clock)
        return e->clock(e->clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Make the locked slot's pending totals those of t_ns's bucket (publishing
   what another bucket's events left pending). */
static inline void slot_bucket(mab_engine *e, mab__slot *s, int64_t t_ns)
{
    if (__builtin_expect(t_ns < s->bucket_lo_ns || t_ns >= s->bucket_hi_ns, 0))
        mab__slot_move_bucket(e, s, t_ns);
}

/* Whether a locked slot should publish now (see MAB__PUBLISH_OPS). The
   clock is read once per MAB__PUBLISH_OPS operations. */
static inline int slot_due(const mab__slot *s)
{
    return s->pending_ops % MAB__PUBLISH_OPS == 0 &&
           now_ns() - s->last_publish_ns >= MAB__PUBLISH_NS;
}

/* The vector an ABI 2.2 policy may fill with every arm's probability, for
   the sample-ratio check (srm.c, mab__srm_vector): NULL when x has no
   ledger; its first entry NAN until the policy fills it. */
static inline double *slot_srm_vector(const mab__experiment *x, mab__slot *s)
{
    if (!x->srm)
        return NULL;
    s->probabilities[0] = NAN;
    return s->probabilities;
}

/* Whether storage refused a batch for what it holds (a delta it can never
   apply as it is) rather than for the state of the store: see the contract
   of apply() in storage.h. */
static inline int refused_as_invalid(int rc)
{
    return rc == MAB_EINVAL || rc == MAB_ERANGE;
}

/* Whether this engine was opened by another process (before a fork). */
static inline int forked_since_open(const mab_engine *e)
{
    return e->fork_generation != mab__fork_generation();
}

#endif
