/*
 * mabd.h - state shared by the files of mabd, the standalone HTTP server
 * (docs/hosts.md). main.c owns the process (arguments, signals, reload),
 * settings.c reads the config's "mabd" section, server.c answers requests,
 * dashboard.c builds the admin page's data, metrics.c the Prometheus text.
 */
#ifndef MABD_H
#define MABD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mab/adapter.h"
#include "mab/mab.h"
#include "series.h"
#include "strbuf.h"

#define MABD_BODY_MAX (64 * 1024)
#define MABD_LATENCY_BUCKETS 14

/* The config's "mabd" object, resolved (docs/hosts.md, "mabd settings"). */
typedef struct mabd_settings {
    char listen[128];        /* "HOST:PORT", IPv4; default 127.0.0.1:8080 */
    char *admin_token;       /* the token in admin_token_file, or NULL: admin routes open */
    char *static_url;        /* e.g. "/shop/", or NULL */
    char *static_dir;        /* directory served at static_url */
    unsigned max_connections;
    unsigned timeout_s;
    unsigned threads;
    unsigned series_interval_s;
    unsigned series_keep;
    /* Against slow clients, cross-site requests and silent storage
       failures (docs/hosts.md, "Limits" and "Admin routes"). */
    unsigned request_timeout_s;      /* a request's head and body must arrive within */
    unsigned max_connections_per_ip; /* 0: no per-address limit */
    char **server_names;             /* Host names the admin routes accept, lower case */
    size_t n_server_names;
    unsigned storage_log_interval_s; /* summary line of a storage failure streak */
} mabd_settings;

/* The config sections mabd reads ({"mabd", NULL}): every engine mabd opens
   is opened with mab_open_sections(path, opts, mabd_config_sections, ...). */
extern const char *const mabd_config_sections[];

/* Read the "mabd" section of an engine opened with mabd_config_sections;
   0, or -1 with a sentence naming the JSON path in msg. */
int mabd_settings_load(const mab_engine *engine, mabd_settings *out, char *msg, size_t msg_cap);
void mabd_settings_free(mabd_settings *s);

typedef struct mabd {
    /* Requests hold it for reading; a reload swaps engine, adapter and
       settings holding it for writing. */
    pthread_rwlock_t lock;
    mab_engine *engine;
    mab_adapter *adapter;
    mabd_settings settings;
    const char *config_path;
    series *series;

    _Atomic int in_flight; /* requests being answered */
    _Atomic uint64_t latency_buckets[MABD_LATENCY_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t latency_count, latency_sum_ns;
    _Atomic uint64_t storage_errors_before; /* of engines closed by reloads */
    _Atomic uint64_t reloads_ok, reloads_failed;
    _Atomic uint64_t bad_requests;
    _Atomic uint64_t slow_clients_closed; /* connections past request_timeout_s */

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
} mabd;

/* main.c: one line on stderr, with a time stamp. */
void mabd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

/* dashboard.c: the admin page's data as JSON (caller holds d->lock; NULL
   when out of memory; free with cJSON_Delete). */
cJSON *mabd_dashboard_json(mabd *d);
/* The stats JSON of `mab stats --json` (the same rules). */
cJSON *mabd_stats_json(mabd *d);
/* Take one time-series sample now (caller holds d->lock). */
void mabd_series_sample(mabd *d);

#endif
