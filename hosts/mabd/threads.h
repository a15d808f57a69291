/*
 * threads.h - what mabd's request threads write, one slot per thread, and
 * the reload guard built on them (docs/hosts.md, "Threads").
 *
 * A request writes only its own thread's slot: the reload guard's flag,
 * in_flight, the choose latency histogram, bad_requests. Readers (/metrics,
 * shutdown) sum the slots. The slot is found through a thread-local
 * pointer, registered under a mutex on a thread's first request only.
 *
 * The reload guard replaces a rwlock, whose read lock writes the lock's
 * shared word on every request. A reader sets its slot's `reading`, then
 * checks `writer` (both sequentially consistent: either the reader sees
 * the writer or the writer sees the reader). A reload sets `writer`, waits
 * until every slot's `reading` is 0, swaps the engine, clears `writer` and
 * wakes the readers that backed off meanwhile. Readers never write a
 * shared line; the writer, once per reload, polls every slot.
 */
#ifndef MABD_THREADS_H
#define MABD_THREADS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MABD_LATENCY_BUCKETS 14

typedef struct mabd_thread mabd_thread;

typedef struct mabd_threads {
    _Atomic int writer; /* a reload is waiting for readers or running */
    pthread_mutex_t guard_mu;
    pthread_cond_t guard_cv; /* writer cleared */
    pthread_mutex_t list_mu;
    mabd_thread *list;
    mabd_thread *shared; /* for a thread whose slot could not be allocated */
    uint64_t id;
} mabd_threads;

/* The slots' values, summed. */
typedef struct mabd_thread_totals {
    int64_t in_flight;
    uint64_t bad_requests;
    uint64_t latency_buckets[MABD_LATENCY_BUCKETS + 1]; /* last: +Inf */
    uint64_t latency_count, latency_sum_ns;
} mabd_thread_totals;

/* 0, or -1 when out of memory. */
int mabd_threads_init(mabd_threads *t);
void mabd_threads_free(mabd_threads *t);

/* Around a request, or anything that reads the engine (mabd.h: what the
   rwlock's read side guarded). Nests. */
void mabd_read_begin(mabd_threads *t);
void mabd_read_end(mabd_threads *t);
/* Around a reload: waits until no reader is inside; readers wait meanwhile.
   The caller must not be inside mabd_read_begin() itself. */
void mabd_write_begin(mabd_threads *t);
void mabd_write_end(mabd_threads *t);

void mabd_threads_in_flight(mabd_threads *t, int delta);
void mabd_threads_bad_request(mabd_threads *t);
void mabd_threads_latency(mabd_threads *t, size_t bucket, uint64_t ns);
void mabd_threads_sum(mabd_threads *t, mabd_thread_totals *out);
/* Slots registered (tests: at most the pool's threads plus the main one). */
size_t mabd_threads_slots(mabd_threads *t);

#endif
