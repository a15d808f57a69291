/* threads.c - see threads.h. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threads.h"

struct mabd_thread {
    /* Written by the owning thread only (except `shared`, the fallback
       slot, written atomically by any); read by the summing thread. */
    alignas(64) _Atomic int64_t reading;
    _Atomic int64_t in_flight;
    _Atomic uint64_t bad_requests;
    _Atomic uint64_t latency_buckets[MABD_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_count, latency_sum_ns;
    /* Read-mostly, apart from the values above. */
    alignas(64) int shared;
    const void *owner;
    mabd_thread *next;
};

static _Atomic uint64_t next_id = 1;
static _Thread_local mabd_thread *self_slot;
static _Thread_local uint64_t self_id;

static mabd_thread *slot_create(void)
{
    mabd_thread *s = aligned_alloc(alignof(mabd_thread), sizeof(mabd_thread));
    if (s)
        memset(s, 0, sizeof *s);
    return s;
}

int mabd_threads_init(mabd_threads *t)
{
    memset(t, 0, sizeof *t);
    if (!(t->shared = slot_create()))
        return -1;
    t->shared->shared = 1;
    t->id = atomic_fetch_add(&next_id, 1);
    pthread_mutex_init(&t->guard_mu, NULL);
    pthread_cond_init(&t->guard_cv, NULL);
    pthread_mutex_init(&t->list_mu, NULL);
    return 0;
}

void mabd_threads_free(mabd_threads *t)
{
    for (mabd_thread *s = t->list, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(t->shared);
    pthread_mutex_destroy(&t->guard_mu);
    pthread_cond_destroy(&t->guard_cv);
    pthread_mutex_destroy(&t->list_mu);
    memset(t, 0, sizeof *t);
}

/* The calling thread's slot: a thread-local pointer, set on the thread's
   first call. A thread that ended leaves its slot (its counts stay in the
   sums); a new thread whose thread-local block has the same address takes
   it over. */
static mabd_thread *self(mabd_threads *t)
{
    if (self_id == t->id)
        return self_slot;
    const void *me = &self_slot;
    pthread_mutex_lock(&t->list_mu);
    mabd_thread *s = t->list;
    while (s && s->owner != me)
        s = s->next;
    if (!s && (s = slot_create())) {
        s->owner = me;
        s->next = t->list;
        t->list = s;
    }
    pthread_mutex_unlock(&t->list_mu);
    if (!s)
        return t->shared; /* not remembered: a later call tries again */
    self_slot = s;
    self_id = t->id;
    return s;
}

/* Add to a value of slot s: one writer, so a load and a store (no locked
   instruction), except in the shared fallback slot. */
static void add_u(mabd_thread *s, _Atomic uint64_t *v, uint64_t n)
{
    if (s->shared)
        atomic_fetch_add_explicit(v, n, memory_order_relaxed);
    else
        atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                              memory_order_release);
}

static void add_i(mabd_thread *s, _Atomic int64_t *v, int64_t n, memory_order order)
{
    if (s->shared)
        atomic_fetch_add_explicit(v, n, memory_order_seq_cst);
    else
        atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n, order);
}

void mabd_read_begin(mabd_threads *t)
{
    mabd_thread *s = self(t);
    for (;;) {
        /* Store, then load, both seq_cst: the fence between them is what
           makes "the writer sees us or we see the writer" hold. */
        add_i(s, &s->reading, 1, memory_order_seq_cst);
        if (!atomic_load_explicit(&t->writer, memory_order_seq_cst))
            return;
        if (atomic_load_explicit(&s->reading, memory_order_relaxed) > 1)
            return; /* nested: the outer section already holds the writer off */
        add_i(s, &s->reading, -1, memory_order_release);
        pthread_mutex_lock(&t->guard_mu);
        while (atomic_load(&t->writer))
            pthread_cond_wait(&t->guard_cv, &t->guard_mu);
        pthread_mutex_unlock(&t->guard_mu);
    }
}

void mabd_read_end(mabd_threads *t)
{
    mabd_thread *s = self(t);
    add_i(s, &s->reading, -1, memory_order_release);
}

static int any_reader(mabd_threads *t)
{
    int busy = atomic_load_explicit(&t->shared->reading, memory_order_seq_cst) != 0;
    pthread_mutex_lock(&t->list_mu);
    for (mabd_thread *s = t->list; s && !busy; s = s->next)
        busy = atomic_load_explicit(&s->reading, memory_order_seq_cst) != 0;
    pthread_mutex_unlock(&t->list_mu);
    return busy;
}

void mabd_write_begin(mabd_threads *t)
{
    pthread_mutex_lock(&t->guard_mu);
    atomic_store_explicit(&t->writer, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&t->guard_mu);
    while (any_reader(t)) {
        struct timespec pause = {0, 100000}; /* 0.1 ms: a reload is rare */
        nanosleep(&pause, NULL);
    }
}

void mabd_write_end(mabd_threads *t)
{
    pthread_mutex_lock(&t->guard_mu);
    atomic_store_explicit(&t->writer, 0, memory_order_seq_cst);
    pthread_cond_broadcast(&t->guard_cv);
    pthread_mutex_unlock(&t->guard_mu);
}

void mabd_threads_in_flight(mabd_threads *t, int delta)
{
    mabd_thread *s = self(t);
    add_i(s, &s->in_flight, delta, memory_order_release);
}

void mabd_threads_bad_request(mabd_threads *t)
{
    mabd_thread *s = self(t);
    add_u(s, &s->bad_requests, 1);
}

void mabd_threads_latency(mabd_threads *t, size_t bucket, uint64_t ns)
{
    mabd_thread *s = self(t);
    add_u(s, &s->latency_buckets[bucket <= MABD_LATENCY_BUCKETS ? bucket : MABD_LATENCY_BUCKETS],
          1);
    add_u(s, &s->latency_count, 1);
    add_u(s, &s->latency_sum_ns, ns);
}

static void add_slot(const mabd_thread *s, mabd_thread_totals *out)
{
    out->in_flight += atomic_load_explicit(&s->in_flight, memory_order_acquire);
    out->bad_requests += atomic_load_explicit(&s->bad_requests, memory_order_acquire);
    for (size_t b = 0; b <= MABD_LATENCY_BUCKETS; b++)
        out->latency_buckets[b] += atomic_load_explicit(&s->latency_buckets[b],
                                                        memory_order_acquire);
    out->latency_count += atomic_load_explicit(&s->latency_count, memory_order_acquire);
    out->latency_sum_ns += atomic_load_explicit(&s->latency_sum_ns, memory_order_acquire);
}

void mabd_threads_sum(mabd_threads *t, mabd_thread_totals *out)
{
    memset(out, 0, sizeof *out);
    add_slot(t->shared, out);
    pthread_mutex_lock(&t->list_mu);
    for (const mabd_thread *s = t->list; s; s = s->next)
        add_slot(s, out);
    pthread_mutex_unlock(&t->list_mu);
}

size_t mabd_threads_slots(mabd_threads *t)
{
    size_t n = 0;
    pthread_mutex_lock(&t->list_mu);
    for (const mabd_thread *s = t->list; s; s = s->next)
        n++;
    pthread_mutex_unlock(&t->list_mu);
    return n;
}
