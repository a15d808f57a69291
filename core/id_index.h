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
/* The lookup of an id of len > 8 bytes (id_index.c). */
long mab__id_index_find_long(const mab__id_index *ix, const void *base, size_t stride,
                             const char *id, size_t len);

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

/* The key of an id of 4 to 8 bytes, as mab__id_short_key makes it, with
   two loads that overlap in the middle (the shared bytes land on the same
   places, so the OR is the id's bytes). */
static inline uint64_t mab__id_key_4_to_8(const char *id, size_t len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t lo, hi;
    memcpy(&lo, id, 4);
    memcpy(&hi, id + len - 4, 4);
    return lo | (uint64_t)hi << (8 * (len - 4));
#else
    return mab__id_short_key(id, len);
#endif
}

/* Position of id among base[0..n) (elements of `stride` bytes that start
   with their `char *id`), or -1, as mab__id_index_find (engine.h). Inline
   for the string-keyed calls: an id of at most 3 bytes is read byte by
   byte, one of 4 to 8 after a strlen, and either is found without a load
   of the id string (the key is the whole comparison); a longer one is
   looked up out of line (its hash, then a strcmp). */
static inline long mab__id_index_lookup(const mab__id_index *ix, const void *base,
                                        size_t stride, const char *id)
{
    const unsigned char *u = (const unsigned char *)id;
    uint64_t key;
    if (!u[0])
        key = 0;
    else if (!u[1])
        key = u[0];
    else if (!u[2])
        key = u[0] | (uint64_t)u[1] << 8;
    else if (!u[3])
        key = u[0] | (uint64_t)u[1] << 8 | (uint64_t)u[2] << 16;
    else {
        size_t len = 4 + strlen(id + 4);
        if (__builtin_expect(len > 8, 0))
            return mab__id_index_find_long(ix, base, stride, id, len);
        key = mab__id_key_4_to_8(id, len);
    }
    for (uint32_t h = mab__id_spot(key, ix->shift); ix->slots[h].position;
         h = (h + 1) & ix->mask)
        if (mab__id_slot_key(&ix->slots[h]) == key)
            return (long)ix->slots[h].position - 1;
    return -1;
}

#endif
