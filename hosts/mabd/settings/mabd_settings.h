/*
 * mabd_settings.h - the config's "mabd" section, read and validated.
 *
 * A small static library (mabd_settings, built from settings.c) that mabd
 * and `mab check` both link, so the config test validates the section with
 * the very code mabd starts with, through libmab's public API only
 * (mab_config_section() and the mab_params getters). Reading the section
 * opens no socket and creates no file: the token file is read, the access
 * log's directory is only checked.
 */
#ifndef MABD_SETTINGS_H
#define MABD_SETTINGS_H

#include <stddef.h>

#include "mab/mab.h"

/* mabd.log_level: what goes to mabd's log (stderr). */
typedef enum mabd_log_level {
    MABD_LOG_ERROR = 0, /* failures: storage writes, reloads that could not reopen */
    MABD_LOG_WARN = 1,  /* refused reloads, exposed admin routes, config notes */
    MABD_LOG_INFO = 2,  /* start, stop, reloads, log reopening (default) */
    MABD_LOG_DEBUG = 3  /* every reward that counted nothing, with its reason */
} mabd_log_level;

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
    size_t series_max_bytes; /* series.max_bytes: the series' memory; 0: no series */
    /* /metrics' report gauges (docs/operating-mabd.md, "Metrics at scale"):
       an experiment's report is recomputed when its counters changed, at
       most every report_interval_s, and at most reports_per_scrape a scrape. */
    unsigned metrics_report_interval_s;
    unsigned metrics_reports_per_scrape;
    /* Against slow clients, cross-site requests and silent storage
       failures (docs/hosts.md, "Limits" and "Admin routes"). */
    unsigned request_timeout_s;      /* a request's head and body must arrive within */
    unsigned max_connections_per_ip; /* 0: no per-address limit */
    char **server_names;             /* Host names the admin routes accept, lower case */
    size_t n_server_names;
    unsigned storage_log_interval_s; /* summary line of a storage failure streak */
    /* Logs (docs/operating-mabd.md). */
    char *access_log;          /* absolute file path, "stderr", or NULL: no access log */
    mabd_log_level log_level;  /* default MABD_LOG_INFO */
} mabd_settings;

/* The config sections mabd reads ({"mabd", NULL}): every engine mabd opens
   (and `mab check`) is opened with mab_open_sections(..., mabd_config_sections, ...). */
extern const char *const mabd_config_sections[];

/* Read the "mabd" section of an engine opened with mabd_config_sections
   (with or without storage, MAB_OPEN_CHECK included); 0, or -1 with a
   sentence naming the JSON path in msg. On success free with
   mabd_settings_free(). */
int mabd_settings_load(const mab_engine *engine, mabd_settings *out, char *msg, size_t msg_cap);
void mabd_settings_free(mabd_settings *s);

/* "error", "warn", "info", "debug". */
const char *mabd_log_level_name(mabd_log_level level);

#endif
