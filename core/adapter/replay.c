/*
 * replay.c - a bounded set of assignment ids with expiry: a ring of entries
 * in insertion order (the oldest is forgotten first) indexed by an
 * open-addressing hash table (linear probing, backward-shift deletion).
 * Ids are random, so their first bytes are a good hash.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

typedef struct replay_entry {
    uint8_t id[MAB__ASSIGNMENT_ID_BYTES];
    int64_t expires;
    int live; /* 0 once removed; its ring slot is reclaimed in order */
} replay_entry;

struct mab__replay_set {
    pthread_mutex_t mu;
    replay_entry *ring;
    size_t capacity, head, count;
    uint32_t *table; /* ring position + 1, 0 when empty */
    size_t mask;
};

mab__replay_set *mab__replay_create(size_t capacity)
{
    mab__replay_set *set = calloc(1, sizeof *set);
    if (!set)
        return NULL;
    size_t slots = 16;
    while (slots < capacity * 2)
        slots *= 2;
    set->capacity = capacity;
    set->mask = slots - 1;
    /* Large calloc()s are mapped lazily: pages cost memory once touched. */
    set->ring = calloc(capacity, sizeof *set->ring);
    set->table = calloc(slots, sizeof *set->table);
    if (!set->ring || !set->table) {
        mab__replay_free(set);
        return NULL;
    }
    pthread_mutex_init(&set->mu, NULL);
    return set;
}

void mab__replay_free(mab__replay_set *set)
{
    if (!set)
        return;
    if (set->ring && set->table)
        pthread_mutex_destroy(&set->mu);
    free(set->ring);
    free(set->table);
    free(set);
}

static size_t home_slot(const mab__replay_set *set, const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)(h * 0x9e3779b97f4a7c15ULL >> 17) & set->mask;
}

/* Table slot holding `id`, or the empty slot where the search stopped. */
static size_t find_slot(const mab__replay_set *set, const uint8_t *id, int *found)
{
    size_t i = home_slot(set, id);
    while (set->table[i]) {
        if (memcmp(set->ring[set->table[i] - 1].id, id, MAB__ASSIGNMENT_ID_BYTES) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & set->mask;
    }
    *found = 0;
    return i;
}

/* Empty table slot `hole` and move later entries of its probe run back. */
static void table_delete(mab__replay_set *set, size_t hole)
{
    set->table[hole] = 0;
    size_t i = (hole + 1) & set->mask;
    while (set->table[i]) {
        size_t home = home_slot(set, set->ring[set->table[i] - 1].id);
        /* Move entry i into the hole if its home is not in (hole, i]. */
        int between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!between) {
            set->table[hole] = set->table[i];
            set->table[i] = 0;
            hole = i;
        }
        i = (i + 1) & set->mask;
    }
}

static void forget(mab__replay_set *set, replay_entry *entry)
{
    if (!entry->live)
        return;
    int found;
    size_t slot = find_slot(set, entry->id, &found);
    if (found)
        table_delete(set, slot);
    entry->live = 0;
}

static void pop_oldest(mab__replay_set *set, int64_t now, uint64_t *evicted)
{
    replay_entry *oldest = &set->ring[set->head];
    if (oldest->live && oldest->expires > now && evicted)
        (*evicted)++;
    forget(set, oldest);
    set->head = (set->head + 1) % set->capacity;
    set->count--;
}

int mab__replay_insert(mab__replay_set *set, const uint8_t id[MAB__ASSIGNMENT_ID_BYTES],
                       int64_t expires, int64_t now, uint64_t *evicted)
{
    pthread_mutex_lock(&set->mu);
    /* Entries are in insertion order, not expiry order: this only reclaims
       the ones at the front; a lookup below ignores any expired entry. */
    while (set->count && (!set->ring[set->head].live || set->ring[set->head].expires <= now))
        pop_oldest(set, now, evicted);
    int found;
    size_t slot = find_slot(set, id, &found);
    if (found) {
        replay_entry *entry = &set->ring[set->table[slot] - 1];
        if (entry->expires > now) {
            pthread_mutex_unlock(&set->mu);
            return 0;
        }
        forget(set, entry);
    }
    if (set->count == set->capacity)
        pop_oldest(set, now, evicted);
    size_t pos = (set->head + set->count) % set->capacity;
    replay_entry *entry = &set->ring[pos];
    memcpy(entry->id, id, MAB__ASSIGNMENT_ID_BYTES);
    entry->expires = expires;
    entry->live = 1;
    set->count++;
    slot = find_slot(set, id, &found);
    set->table[slot] = (uint32_t)pos + 1;
    pthread_mutex_unlock(&set->mu);
    return 1;
}

void mab__replay_remove(mab__replay_set *set, const uint8_t id[MAB__ASSIGNMENT_ID_BYTES])
{
    pthread_mutex_lock(&set->mu);
    int found;
    size_t slot = find_slot(set, id, &found);
    if (found)
        forget(set, &set->ring[set->table[slot] - 1]);
    pthread_mutex_unlock(&set->mu);
}
