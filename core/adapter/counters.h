/*
 * counters.h - the adapter's counters (mab_adapter_counters), kept per
 * thread so that a request writes no cache line another thread writes.
 *
 * Each thread that counts gets its own slot, a cache line only it writes;
 * mab__counters_sum() adds the slots up (under a mutex, for /metrics and
 * the like). A thread finds its slot through a small thread-local cache
 * keyed by the counters' id: no shared write on the way. Only the first
 * count of a thread on a set of counters (or a cache miss: a thread using
 * more than MAB__COUNTER_CACHE adapters in turn) takes the mutex. A thread
 * that ends leaves its slot, and its counts, in the sum; a new thread may
 * take the slot of an ended one over (it is found by the thread's
 * identity, the address of a thread-local variable).
 */
#ifndef MAB_ADAPTER_COUNTERS_H
#define MAB_ADAPTER_COUNTERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef enum mab__counter {
    MAB__CTR_COOKIES_FORGED,
    MAB__CTR_COOKIES_EXPIRED,
    MAB__CTR_ASSIGNMENTS,
    MAB__CTR_REWARDS_COUNTED,
    MAB__CTR_REWARDS_REFUSED,
    MAB__CTR_REPLAYS_REFUSED,
    MAB__CTR_REPLAY_EVICTIONS,
    MAB__CTR_REDIRECTS_REFUSED,
    MAB__CTR_COUNT
} mab__counter;

typedef struct mab__counter_slot mab__counter_slot;

typedef struct mab__counters {
    uint64_t id; /* unique per mab__counters_init() in the process */
    pthread_mutex_t mu;
    mab__counter_slot *slots; /* one per thread that counted, a list */
    /* When a slot cannot be allocated: counts go here, atomically (shared,
       but exact). */
    _Atomic uint64_t overflow[MAB__CTR_COUNT];
} mab__counters;

void mab__counters_init(mab__counters *c);
void mab__counters_destroy(mab__counters *c);
/* Add n to one counter, in the calling thread's slot. */
void mab__counters_add(mab__counters *c, mab__counter which, uint64_t n);
/* Every counter, summed over the threads' slots. */
void mab__counters_sum(mab__counters *c, uint64_t out[MAB__CTR_COUNT]);
/* Slots allocated so far (tests: one per counting thread). */
size_t mab__counters_slots(mab__counters *c);

#endif
