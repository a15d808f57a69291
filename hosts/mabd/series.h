/*
 * series.h - the dashboard's time series: every interval mabd records each
 * arm's cumulative pulls and reward sum; a bounded ring keeps the last
 * `keep` samples (24 hours of minutes by default) within `max_bytes` of
 * memory (64 MiB by default; oldest samples dropped first, series.c says
 * what is counted; 0 keeps no samples). The samples are in memory and
 * begin when this process did; the past before them is not held here:
 * dashboard.c reads it from the store's time buckets (mab_history) for the
 * experiments a dashboard page shows, so a restart keeps the past and
 * costs nothing at start-up.
 * Beside the samples, the admin actions seen (pause, resume, conclude,
 * clear), each with its time, drawn as marks on the charts.
 */
#ifndef MABD_SERIES_H
#define MABD_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct series_point {
    const char *experiment, *arm; /* copied by series_add */
    uint64_t pulls;
    double reward_sum;
} series_point;

typedef struct series series;

/* NULL when out of memory. */
series *series_create(size_t keep, size_t max_bytes);
void series_free(series *s);
/* Samples held. Thread-safe. */
size_t series_count(series *s);
/* Bytes held now (at most max_bytes) and samples refused as larger than
   max_bytes on their own. Thread-safe. */
size_t series_bytes(series *s);
uint64_t series_refused(series *s);
/* Change the cap; the oldest samples go until the series fits. */
void series_set_max_bytes(series *s, size_t max_bytes);
/* Record a sample taken at unix time t (points grouped by experiment).
   The oldest samples go while the ring is full or the new one does not fit
   in max_bytes. Returns 0; 1 when the sample alone exceeds max_bytes (it
   is dropped, the series unchanged); -1 when out of memory (the sample is
   dropped). Thread-safe. */
int series_add(series *s, int64_t t, const series_point *points, size_t n);
/* One sample's points of one experiment, for series_visit: ids holds 2k
   pointers (experiment, arm of each point), values k pairs. */
typedef struct series_value {
    uint64_t pulls;
    double reward_sum;
} series_value;
typedef void (*series_visit_fn)(void *ctx, size_t which, int64_t t, const char *const *ids,
                                const series_value *values, size_t k);
/* The samples' points of the n experiments `experiments` only (a dashboard
   page): oldest sample first, fn called once per sample and experiment
   that it holds (`which`: its index in `experiments`). The cost is the
   samples of the page plus one pass over the ids of each distinct layout
   (not over every sample's). *oldest: the oldest sample's time, INT64_MAX
   without samples. fn must not call series functions (the lock is held).
   Returns 0, -1 when out of memory (then fn may have been called for some). */
int series_visit(series *s, const char *const *experiments, size_t n, series_visit_fn fn,
                 void *ctx, int64_t *oldest);
/* An admin action seen by this mabd (its own, or another's picked up at a
   refresh): the dashboard draws it as a mark on the series and lists it. */
typedef struct series_event {
    int64_t t_ms;           /* the action's time, unix ms */
    const char *experiment; /* copied by series_event_add */
    const char *action;     /* "pause", "resume", "conclude", "clear" */
    const char *arm;        /* the arm it serves, or NULL */
    uint64_t sequence;      /* the action's number in its experiment */
} series_event;

/* Keep an event (the last SERIES_EVENTS_KEEP); one already held (same
   experiment, sequence and time) is not added twice. Returns 1 added, 0
   already held, -1 out of memory. Thread-safe. */
#define SERIES_EVENTS_KEEP 256
int series_event_add(series *s, const series_event *ev);
/* The events, oldest first: [{"t":SECONDS,"experiment":E,"action":A,
   "arm":ARM or null,"sequence":N},...] (caller frees; NULL: out of memory). */
cJSON *series_events_json(series *s);

#endif
