/*
 * replay.h - the per-process memory of rewarded assignment ids, so that a
 * cookie sent again after its reward counts nothing (see adapter.h).
 *
 * With a storage that keeps claims (storage ABI >= 1.3) storage decides
 * (claim, engine_access.h) and this memory only caches refusals, sparing
 * storage a call; without claims it is the only guard, per process. The set
 * is bounded: when full it forgets the oldest ids first and counts each one
 * forgotten before its expiry.
 */
#ifndef MAB_REPLAY_H
#define MAB_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define MAB__ASSIGNMENT_ID_BYTES 16

typedef struct mab__replay_set mab__replay_set;

/* NULL when out of memory. Memory is touched only as ids arrive. */
mab__replay_set *mab__replay_create(size_t capacity);
void mab__replay_free(mab__replay_set *set);

/* Remember `id` until `expires` (unix seconds). Returns 1 when it was not
   remembered yet (the caller may count the reward), 0 when it was (a
   replay). *evicted is incremented for every id
   forgotten before its expiry to make room. Thread-safe. */
int mab__replay_insert(mab__replay_set *set, const uint8_t id[MAB__ASSIGNMENT_ID_BYTES],
                       int64_t expires, int64_t now, uint64_t *evicted);

/* Forget `id` (the reward it guarded could not be recorded after all). */
void mab__replay_remove(mab__replay_set *set, const uint8_t id[MAB__ASSIGNMENT_ID_BYTES]);

#endif
