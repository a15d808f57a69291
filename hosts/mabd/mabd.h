/*
 * mabd.h - state shared by the files of mabd, the standalone HTTP server
 * (docs/hosts.md). main.c owns the process (arguments, signals, reload),
 * settings/settings.c reads the config's "mabd" section (a library that
 * `mab check` links too), access_log.c writes the access log, server.c answers requests,
 * dashboard.c builds the admin page's data, metrics.c the Prometheus text.
 */
#ifndef MABD_H
#define MABD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

struct MHD_Connection;

#include "mab/adapter.h"
#include "mab/mab.h"
#include "mabd_settings.h"
#include "series.h"
#include "strbuf.h"
#include "threads.h"

#define MABD_BODY_MAX (64 * 1024)

typedef struct mabd {
    /* Requests are inside mabd_read_begin/end; a reload swaps engine,
       adapter and settings inside mabd_write_begin/end (threads.h: per-thread
       flags, no shared write per request). "Holds d->lock" below means
       inside either. Also the per-thread in_flight, latency and bad
       request counts. */
    mabd_threads threads;
    mab_engine *engine;
    mab_adapter *adapter;
    mabd_settings settings;
    const char *config_path;
    series *series;

    _Atomic uint64_t storage_errors_before; /* of engines closed by reloads */
    _Atomic uint64_t reloads_ok, reloads_failed;
    _Atomic uint64_t slow_clients_closed; /* connections past request_timeout_s */
    struct mabd_metrics_cache *metrics_cache; /* metrics.c: the kept reports */

    /* Set by mabd_server_start(). */
    unsigned port;     /* the bound port */
    char listen_ip[64]; /* the listen address, dotted */
    int loopback;      /* listening on 127.0.0.0/8 only */
    struct request_watch *watch;

    /* storage_log.c: the current streak of storage write failures. */
    pthread_mutex_t storage_log_mu;
    int storage_failing;
    uint64_t streak_first_count, streak_summary_count; /* error counts at streak start, last line */
    time_t streak_since, streak_next_summary;
    char storage_last_error[MAB_ERROR_MAX];
    /* Increments the store refused as invalid and the engine dropped
       (mab_dropped_deltas) that the log has reported, for this engine. */
    const mab_engine *dropped_engine;
    uint64_t dropped_logged;

    /* access_log.c: the access log's descriptor (-1: none), swapped by
       SIGHUP under access_lock held for writing. */
    pthread_rwlock_t access_lock;
    int access_fd;
    _Atomic int access_enabled; /* access_fd >= 0, read without the lock */
    _Atomic uint64_t access_write_errors;
} mabd;

/* main.c: one line on stderr, with a time stamp and the level, when
   `level` is within mabd.log_level. */
void mabd_log(mabd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* main.c: the level in force (mabd.log_level; a reload changes it). */
void mabd_log_set_level(mabd_log_level level);

/* access_log.c (docs/operating-mabd.md, "Access log"). */
/* (Re)open settings.access_log (none: close); -1 with why in msg, and the
   previous descriptor kept. */
int mabd_access_log_open(mabd *d, char *msg, size_t msg_cap);
void mabd_access_log_close(mabd *d);
/* Around dispatching one request on a pool thread. */
void mabd_access_begin(void);
void mabd_access_end(mabd *d, struct MHD_Connection *conn, const char *method, const char *url,
                     const char *version);
/* The response queued (respond() calls it). */
void mabd_access_response(unsigned status, size_t bytes);
/* One experiment of the request: reward is the counted value as text, or
   "-" with reason the mab_reward_reason_name() (NULL for choose). */
void mabd_access_mab(const char *experiment, const char *arm, double probability, int pull,
                     const char *reward, const char *reason);

/* Upper bounds of the choose latency histogram, in seconds. */
extern const double mabd_latency_bounds[MABD_LATENCY_BUCKETS];

/* server.c: start/stop the HTTP daemon. */
struct MHD_Daemon *mabd_server_start(mabd *d, unsigned *bound_port, char *msg, size_t msg_cap);
/* Close connections whose request has not arrived within request_timeout_s
   (the main loop calls it every second). */
void mabd_server_reap(mabd *d);
/* After MHD_stop_daemon(). */
void mabd_server_free(mabd *d);

/* storage_log.c: storage write failures in mabd's log: the first failure
   of a streak, a summary every storage_log_interval_s, the recovery. */
/* A request saw a write fail (MAB_ESTORAGE) with this message. */
void mabd_storage_failed(mabd *d, const char *message);
/* Every second from the main loop, holding d->lock for reading. */
void mabd_storage_check(mabd *d, time_t now);
/* Failed writes so far, over every engine since start. */
uint64_t mabd_storage_errors(mabd *d);

/* metrics.c */
void mabd_latency_record(mabd *d, uint64_t ns);
void mabd_metrics_write(mabd *d, strbuf *out); /* caller holds d->lock for reading */
void mabd_metrics_free(mabd *d);                /* at exit: the kept reports */

/* dashboard.c: the admin page's data as JSON for the experiments offset ..
   offset + limit - 1 in config order (a page; docs/hosts.md, "Dashboard"):
   caller holds d->lock; NULL when out of memory; free with cJSON_Delete. */
#define MABD_DASHBOARD_LIMIT 50      /* the default page */
#define MABD_DASHBOARD_LIMIT_MAX 1000 /* the largest page asked for */
cJSON *mabd_dashboard_json(mabd *d, size_t offset, size_t limit);
/* The stats JSON of `mab stats --json` (the same rules). */
cJSON *mabd_stats_json(mabd *d);
/* The core's report of one experiment (mab_report_json()), parsed: NULL
   with err filled (MAB_ENOTFOUND for an unknown experiment). Caller holds
   d->lock. */
cJSON *mabd_report_json(mabd *d, const char *experiment, mab_error *err);
/* Take one time-series sample now (caller holds d->lock). */
void mabd_series_sample(mabd *d);
/* admin.c: record each experiment's latest stored admin action (this
   mabd's or another's, read at a refresh) as a dashboard event, once
   (caller holds d->lock). */
void mabd_admin_poll(mabd *d);
/* admin.c: the same for the experiments first .. first + count - 1 (a
   dashboard page). */
void mabd_admin_poll_range(mabd *d, size_t first, size_t count);
/* admin.c: the same for `max` experiments, from where the previous call
   stopped (the main loop's tick, bounded whatever the config's size). */
void mabd_admin_poll_some(mabd *d, size_t max);
/* admin.c: an experiment's state after an admin action, as the route
   answers it: {"experiment","state","serve","source","action","sequence",
   "time"}; NULL with err filled (caller holds d->lock). */
cJSON *mabd_admin_state_json(mabd *d, const char *experiment, mab_error *err);

#endif
