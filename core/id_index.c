/*
 * id_index.c - find an experiment or arm by id in O(1).
 *
 * An open-addressing table of positions, hashed with FNV-1a. Both mab__arm
 * and mab__experiment start with their `char *id`, so one table type serves
 * both: it keeps positions into the caller's array and reads ids through
 * the array's element size.
 */
#include <stdlib.h>

#include "engine.h"

/* FNV-1a of s; *len receives its length. */
static uint32_t fnv1a(const char *s, size_t *len)
{
    uint32_t h = 2166136261u;
    const char *c = s;
    for (; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    *len = (size_t)(c - s);
    return h;
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

int mab__id_index_build(mab__id_index *ix, const void *base, size_t stride, size_t n)
{
    size_t cap = capacity(n);
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return MAB_ENOMEM;
    ix->mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint32_t hash = fnv1a(id_at(base, stride, i), &len);
        uint32_t h = hash & ix->mask;
        while (ix->slots[h].position)
            h = (h + 1) & ix->mask;
        ix->slots[h] = (mab__id_slot){(uint32_t)i + 1, hash, (uint32_t)len};
    }
    return MAB_OK;
}

long mab__id_index_first_duplicate(const void *base, size_t stride, size_t n)
{
    mab__id_index ix;
    size_t cap = capacity(n);
    ix.slots = calloc(cap, sizeof *ix.slots);
    if (!ix.slots)
        return -2;
    ix.mask = (uint32_t)(cap - 1);
    long duplicate = -1;
    for (size_t i = 0; i < n && duplicate < 0; i++) {
        const char *id = id_at(base, stride, i);
        if (mab__id_index_find(&ix, base, stride, id) >= 0) {
            duplicate = (long)i;
            break;
        }
        size_t len;
        uint32_t hash = fnv1a(id, &len);
        uint32_t h = hash & ix.mask;
        while (ix.slots[h].position)
            h = (h + 1) & ix.mask;
        ix.slots[h] = (mab__id_slot){(uint32_t)i + 1, hash, (uint32_t)len};
    }
    free(ix.slots);
    return duplicate;
}

/* The whole hash and the length decide almost every probe; the bytes are
   compared only on a match, inline (ids are short), without a strcmp call. */
long mab__id_index_find(const mab__id_index *ix, const void *base, size_t stride,
                        const char *id)
{
    size_t len;
    uint32_t hash = fnv1a(id, &len);
    for (uint32_t h = hash & ix->mask; ix->slots[h].position; h = (h + 1) & ix->mask) {
        const mab__id_slot *slot = &ix->slots[h];
        if (slot->hash != hash || slot->length != len)
            continue;
        const char *candidate = id_at(base, stride, slot->position - 1);
        size_t k = 0;
        while (k < len && candidate[k] == id[k])
            k++;
        if (k == len)
            return (long)slot->position - 1;
    }
    return -1;
}

void mab__id_index_free(mab__id_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
}
