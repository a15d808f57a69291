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
} mabd;

/* Upper bounds of the choose latency histogram, in seconds. */
extern const double mabd_latency_bounds[MABD_LATENCY_BUCKETS];

/* server.c: start/stop the HTTP daemon. */
struct MHD_Daemon *mabd_server_start(mabd *d, unsigned *bound_port, char *msg, size_t msg_cap);

/* metrics.c */
void mabd_latency_record(mabd *d, uint64_t ns);
void mabd_metrics_write(mabd *d, strbuf *out); /* caller holds d->lock for reading */

/* dashboard.c: the admin page's data as JSON (caller holds d->lock). */
void mabd_dashboard_json(mabd *d, strbuf *out);
/* The stats JSON of `mab stats --json` (caller holds d->lock). */
void mabd_stats_json(mabd *d, strbuf *out);
/* Take one time-series sample now (caller holds d->lock). */
void mabd_series_sample(mabd *d);

#endif
