/*
 * id_index.c - find an experiment or arm by id in O(1).
 *
 * An open-addressing table of positions, hashed with FNV-1a. Both mab__arm
 * and mab__experiment start with their `char *id`, so one table type serves
 * both: it keeps positions into the caller's array and reads ids through
 * the array's element size.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static const char *id_at(const void *base, size_t stride, size_t i)
{
    const char *const *id = (const void *)((const char *)base + i * stride);
    return *id;
}

int mab__id_index_build(mab__id_index *ix, const void *base, size_t stride, size_t n)
{
    size_t cap = 8;
    while (cap < 2 * n)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return MAB_ENOMEM;
    ix->mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t h = fnv1a(id_at(base, stride, i)) & ix->mask;
        while (ix->slots[h])
            h = (h + 1) & ix->mask;
        ix->slots[h] = (uint32_t)i + 1; /* 0 marks an empty slot */
    }
    return MAB_OK;
}

long mab__id_index_find(const mab__id_index *ix, const void *base, size_t stride,
                        const char *id)
{
    for (uint32_t h = fnv1a(id) & ix->mask; ix->slots[h]; h = (h + 1) & ix->mask) {
        size_t i = ix->slots[h] - 1;
        if (strcmp(id_at(base, stride, i), id) == 0)
            return (long)i;
    }
    return -1;
}

void mab__id_index_free(mab__id_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
}
