/* counters.c - see counters.h. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"

#define MAB__COUNTER_CACHE 4

struct mab__counter_slot {
    /* The values first, on a line of their own: only the owner writes it. */
    alignas(64) _Atomic uint64_t v[MAB__CTR_COUNT];
    alignas(64) const void *thread;
    mab__counter_slot *next;
};

static _Atomic uint64_t next_id = 1;

/* This thread's recently used slots, by counters id. Its address also
   names the thread. */
static _Thread_local struct {
    uint64_t id;
    mab__counter_slot *slot;
} cache[MAB__COUNTER_CACHE];
static _Thread_local unsigned cache_next;

void mab__counters_init(mab__counters *c)
{
    memset(c, 0, sizeof *c);
    c->id = atomic_fetch_add(&next_id, 1);
    pthread_mutex_init(&c->mu, NULL);
}

void mab__counters_destroy(mab__counters *c)
{
    for (mab__counter_slot *s = c->slots, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    c->slots = NULL;
    pthread_mutex_destroy(&c->mu);
}

/* The calling thread's slot, registered on first use; NULL when out of
   memory. */
static mab__counter_slot *slot_of_thread(mab__counters *c)
{
    for (unsigned i = 0; i < MAB__COUNTER_CACHE; i++)
        if (cache[i].id == c->id)
            return cache[i].slot;
    const void *self = &cache;
    pthread_mutex_lock(&c->mu);
    mab__counter_slot *s = c->slots;
    while (s && s->thread != self)
        s = s->next;
    if (!s && (s = aligned_alloc(alignof(mab__counter_slot), sizeof *s))) {
        memset(s, 0, sizeof *s);
        s->thread = self;
        s->next = c->slots;
        c->slots = s;
    }
    pthread_mutex_unlock(&c->mu);
    if (s) {
        unsigned k = cache_next++ % MAB__COUNTER_CACHE;
        cache[k].id = c->id;
        cache[k].slot = s;
    }
    return s;
}

void mab__counters_add(mab__counters *c, mab__counter which, uint64_t n)
{
    mab__counter_slot *s = slot_of_thread(c);
    if (!s) {
        atomic_fetch_add_explicit(&c->overflow[which], n, memory_order_relaxed);
        return;
    }
    /* One writer per slot: a plain load and store (no locked instruction);
       atomic so that the summing thread reads whole values. */
    uint64_t v = atomic_load_explicit(&s->v[which], memory_order_relaxed);
    atomic_store_explicit(&s->v[which], v + n, memory_order_release);
}

void mab__counters_sum(mab__counters *c, uint64_t out[MAB__CTR_COUNT])
{
    for (int k = 0; k < MAB__CTR_COUNT; k++)
        out[k] = atomic_load_explicit(&c->overflow[k], memory_order_relaxed);
    pthread_mutex_lock(&c->mu);
    for (const mab__counter_slot *s = c->slots; s; s = s->next)
        for (int k = 0; k < MAB__CTR_COUNT; k++)
            out[k] += atomic_load_explicit(&s->v[k], memory_order_acquire);
    pthread_mutex_unlock(&c->mu);
}

size_t mab__counters_slots(mab__counters *c)
{
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (const mab__counter_slot *s = c->slots; s; s = s->next)
        n++;
    pthread_mutex_unlock(&c->mu);
    return n;
}
