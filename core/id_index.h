/*
 * id_index.h - the lookup of an id in an id index (id_index.c), inline so
 * that the string-keyed calls (mab_choose, mab_reward: two lookups each)
 * pay no call for it. Internal to core/.
 *
 * Each id has a 64-bit key. An id of at most 8 bytes is its own key: its
 * bytes, little-endian order, zero-padded (ids hold no NUL, so the key
 * gives the id back, and a match needs no load of the id string: the
 * slot's key is the whole comparison). A longer id's key is a hash of its
 * bytes and length with its low byte 0 (a short id's low byte is its first
 * byte, never 0, so the two kinds never meet), and a match is confirmed
 * against the id string. The slot is chosen from a mix of the key.
 *
 * The index holds only a config's ids; a caller's id (a host's request may
 * carry any) only probes it, so a hostile id costs at most the longest run
 * of occupied slots, which the config's ids decide. The hash is not keyed,
 * as FNV-1a before it was not.
 */
#ifndef MAB_ID_INDEX_H
#define MAB_ID_INDEX_H

#include <string.h>

#include "engine.h"

/* The key of an id longer than 8 bytes (id_index.c). */
uint64_t mab__id_long_key(const char *id, size_t len);

/* The key of an id of len <= 8 bytes: its bytes, zero-padded. */
static inline uint64_t mab__id_short_key(const char *id, size_t len)
{
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++)
        w |= (uint64_t)(unsigned char)id[i] << (8 * i);
    return w;
}

static inline uint64_t mab__id_key(const char *id, size_t len)
{
    return len <= 8 ? mab__id_short_key(id, len) : mab__id_long_key(id, len);
}

/* The first slot to probe for key: multiplicative (Fibonacci) hashing,
   the product's top bits, on which every bit of the key has a say. */
static inline uint32_t mab__id_spot(uint64_t key, unsigned shift)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15u) >> shift);
}

static inline uint64_t mab__id_slot_key(const mab__id_slot *slot)
{
    uint64_t k;
    memcpy(&k, slot->key, sizeof k);
    return k;
}

/* Position of id among base[0..n) (elements of `stride` bytes that start
   with their `char *id`), or -1: mab__id_index_find (engine.h), whose
   common case, an id of at most 8 bytes, is inline here and calls nothing:
   the key is the whole comparison. */
static inline long mab__id_index_lookup(const mab__id_index *ix, const void *base,
                                        size_t stride, const char *id)
{
    /* The length and a short id's key in one pass over at most 9 bytes. */
    const unsigned char *u = (const unsigned char *)id;
    uint64_t key = 0;
    size_t len = 0;
    for (; len < 8 && u[len]; len++)
        key |= (uint64_t)u[len] << (8 * len);
    if (__builtin_expect(len == 8 && u[8], 0))
        return mab__id_index_find(ix, base, stride, id);
    for (uint32_t h = mab__id_spot(key, ix->shift); ix->slots[h].position;
         h = (h + 1) & ix->mask)
        if (mab__id_slot_key(&ix->slots[h]) == key)
            return (long)ix->slots[h].position - 1;
    return -1;
}

#endif
