/*
 * id_index.c - find an experiment or arm by id in O(1).
 *
 * An open-addressing table of positions with linear probing, keyed as
 * id_index.h describes. Both mab__arm and mab__experiment start with their
 * `char *id`, so one table type serves both: it keeps positions into the
 * caller's array and reads ids through the array's element size.
 */
#include <stdlib.h>

#include "id_index.h"

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53u;
    x ^= x >> 33;
    return x;
}

uint64_t mab__id_long_key(const char *id, size_t len)
{
    /* A multiply per 8 bytes, then one full mix (a collision costs only a
       strcmp: the key confirms nothing for a long id). */
    uint64_t h = len * 0x9e3779b97f4a7c15u, chunk;
    size_t at = 0;
    for (; at + 8 < len; at += 8) {
        memcpy(&chunk, id + at, 8);
        h = (h ^ chunk) * 0xff51afd7ed558ccdu;
    }
    memcpy(&chunk, id + len - 8, 8); /* the last 8 bytes (len > 8) */
    h = mix64(h ^ chunk);
    /* Low byte 0: never a short id's key (id_index.h); never 0 either. */
    h <<= 8;
    return h ? h : 1u << 8;
}

static const char *id_at(const void *base, size_t stride, size_t i)
{
    const char *const *id = (const void *)((const char *)base + i * stride);
    return *id;
}

/* Slots for n ids: a power of two at least 1.5 n (load at most 2/3, where
   linear probing still finds most ids at the first slot), so an experiment
   of 10 arms takes 16 slots of 12 bytes, not 32. */
static size_t capacity(size_t n)
{
    size_t cap = 8;
    while (cap < n + n / 2 + 1)
        cap *= 2;
    return cap;
}

/* An empty table of capacity(n) slots; MAB_ENOMEM. */
static int table_init(mab__id_index *ix, size_t n)
{
    size_t cap = capacity(n);
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return MAB_ENOMEM;
    ix->mask = (uint32_t)(cap - 1);
    ix->shift = 64;
    for (size_t c = cap; c > 1; c >>= 1)
        ix->shift--; /* 64 - log2(cap): the product's top log2(cap) bits */
    return MAB_OK;
}

static void insert(mab__id_index *ix, const char *id, size_t position)
{
    uint64_t key = mab__id_key(id, strlen(id));
    uint32_t h = mab__id_spot(key, ix->shift);
    while (ix->slots[h].position)
        h = (h + 1) & ix->mask;
    ix->slots[h].position = (uint32_t)position + 1;
    memcpy(ix->slots[h].key, &key, sizeof key);
}

int mab__id_index_build(mab__id_index *ix, const void *base, size_t stride, size_t n)
{
    if (table_init(ix, n) != MAB_OK)
        return MAB_ENOMEM;
    for (size_t i = 0; i < n; i++)
        insert(ix, id_at(base, stride, i), i);
    return MAB_OK;
}

long mab__id_index_first_duplicate(const void *base, size_t stride, size_t n)
{
    mab__id_index ix;
    if (table_init(&ix, n) != MAB_OK)
        return -2;
    long duplicate = -1;
    for (size_t i = 0; i < n && duplicate < 0; i++) {
        const char *id = id_at(base, stride, i);
        if (mab__id_index_lookup(&ix, base, stride, id) >= 0)
            duplicate = (long)i;
        else
            insert(&ix, id, i);
    }
    free(ix.slots);
    return duplicate;
}

long mab__id_index_find_long(const mab__id_index *ix, const void *base, size_t stride,
                             const char *id, size_t len)
{
    uint64_t key = mab__id_long_key(id, len);
    for (uint32_t h = mab__id_spot(key, ix->shift); ix->slots[h].position;
         h = (h + 1) & ix->mask) {
        const mab__id_slot *slot = &ix->slots[h];
        if (mab__id_slot_key(slot) == key &&
            strcmp(id_at(base, stride, slot->position - 1), id) == 0)
            return (long)slot->position - 1;
    }
    return -1;
}

long mab__id_index_find(const mab__id_index *ix, const void *base, size_t stride,
                        const char *id)
{
    return mab__id_index_lookup(ix, base, stride, id);
}

void mab__id_index_free(mab__id_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
}
