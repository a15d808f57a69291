/*
 * main.c - mabd, the standalone HTTP server of mab: arguments, the signal
 * loop (SIGHUP reloads, SIGTERM/SIGINT stop), the time-series clock.
 *
 * Signals are blocked in every thread and taken by the main thread with
 * sigtimedwait(), so a handler never runs in the middle of a request and
 * reload and shutdown are ordinary code.
 *
 * Reload keeps every counter: the engine is closed (writing what is
 * pending) and opened again from the new config, which reads the counters
 * back from storage and reconciles arms by id. json_file allows one open
 * engine per file per process, so the old engine cannot stay open while
 * the new one opens; instead the new config is first checked with
 * MAB_OPEN_CHECK, the store validated read-only and not opened (which
 * catches every config, plugin, storage parameter and key error, and a
 * store that cannot be read, without touching the
 * old engine), and if opening it with storage still fails, the previous
 * config text is opened again and keeps serving.
 */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "mabd.h"

static const char usage[] =
    "usage: mabd --config FILE [--listen HOST:PORT]\n"
    "       mabd -t --config FILE    (or --test-config: check the config and exit)\n"
    "       mabd --help | --version\n"
    "\n"
    "Serve the experiments of a mab config over HTTP (docs/hosts.md):\n"
    "  GET  /v1/choose/EXP[,EXP...]     an arm per experiment, sticky through a signed cookie\n"
    "                                   (?token=T for callers without cookies)\n"
    "                                   (?f.NAME=X, or POST {\"features\": {...}}: context features)\n"
    "  POST /v1/reward/EXP              {\"value\": X, \"token\": T} -> {\"counted\", \"reason\"}\n"
    "                                   (503 when sync \"always\" could not write it)\n"
    "  GET  /r/EXP[,EXP...]?to=URL      reward (&value=X), then 303 to a guarded URL\n"
    "  GET  /healthz\n"
    "  admin (bearer token of mabd.admin_token_file when set; without one, open\n"
    "  only when listening on loopback; Host must be mabd's or in mabd.server_names):\n"
    "  GET  /[?offset=N&limit=M]        dashboard: M experiments (50, at most 1000) from\n"
    "                                   the N-th; its data: /v1/dashboard (same query)\n"
    "  GET  /v1/stats, /metrics         JSON as `mab stats --json`; Prometheus text\n"
    "  GET  /v1/report/EXP              who is winning: EXP's object of `mab report --json`\n"
    "  POST /v1/reset/EXP               zero an experiment's counters (needs Content-Type:\n"
    "                                   application/json or an X-MAB-Request header)\n"
    "\n"
    "  --config FILE        the mab config (its \"mabd\" object holds mabd's settings)\n"
    "  --listen HOST:PORT   IPv4 address and port (default: mabd.listen, else\n"
    "                       127.0.0.1:8080); port 0 picks a free one\n"
    "\n"
    "  -t, --test-config    check everything mabd would load (as `mab check`: engine,\n"
    "                       plugins, storage read-only, key file, the mabd section)\n"
    "                       without serving, creating or locking anything; exit 0\n"
    "                       when it would start, 1 (saying why) when not\n"
    "\n"
    "Signals: SIGHUP reloads the config keeping every counter (a bad config is\n"
    "refused and the old one keeps serving) and reopens the access log (logrotate);\n"
    "SIGTERM or SIGINT stop accepting, finish the requests in progress, write\n"
    "counters to storage and exit 0. Logs: docs/operating-mabd.md.\n";

static _Atomic int log_level = MABD_LOG_INFO;

void mabd_log_set_level(mabd_log_level level)
{
    atomic_store(&log_level, (int)level);
}

void mabd_log(mabd_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
    /* Request threads log too (storage failures): one line at a time. */
    flockfile(stderr);
    fprintf(stderr, "%s mabd[%s]: ", stamp, mabd_log_level_name(level));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    funlockfile(stderr);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    strbuf sb;
    sb_init(&sb);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sb_append(&sb, chunk, n);
    fclose(f);
    return sb_take(&sb, NULL);
}

/* Open the config text that served before, through a temporary file in
   the config's directory (relative paths inside resolve against it). */
static int reopen_previous(const char *config_path, const char *text, mab_engine **out,
                           mab_error *err)
{
    char *copy = strdup(config_path);
    if (!copy)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/.mabd-previous-XXXXXX", dirname(copy));
    free(copy);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return mab_error_set(err, MAB_EIO, "%s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    int rc = ok ? mab_open_sections(tmp, NULL, mabd_config_sections, out, err)
                : mab_error_set(err, MAB_EIO, "%s: write failed", tmp);
    unlink(tmp);
    return rc;
}

static void apply_settings(mabd *d, mabd_settings *fresh)
{
    mabd_settings *cur = &d->settings;
    if (strcmp(cur->listen, fresh->listen) != 0 || cur->threads != fresh->threads ||
        cur->max_connections != fresh->max_connections || cur->timeout_s != fresh->timeout_s ||
        cur->series_keep != fresh->series_keep ||
        cur->request_timeout_s != fresh->request_timeout_s ||
        cur->max_connections_per_ip != fresh->max_connections_per_ip)
        mabd_log(MABD_LOG_WARN, "note: mabd.listen, threads, max_connections, max_connections_per_ip, "
                 "timeout_s, request_timeout_s and series.keep take effect at the next start");
    if (!cur->admin_token != !fresh->admin_token && !d->loopback)
        mabd_log(MABD_LOG_WARN, "note: admin routes are now %s on %s",
                 fresh->admin_token ? "open with the admin token" : "closed (no admin token)",
                 d->listen_ip);
    mabd_settings_free(cur);
    cur->admin_token = fresh->admin_token;
    cur->static_url = fresh->static_url;
    cur->static_dir = fresh->static_dir;
    cur->series_interval_s = fresh->series_interval_s;
    cur->series_max_bytes = fresh->series_max_bytes;
    cur->metrics_report_interval_s = fresh->metrics_report_interval_s;
    cur->metrics_reports_per_scrape = fresh->metrics_reports_per_scrape;
    series_set_max_bytes(d->series, cur->series_max_bytes);
    cur->server_names = fresh->server_names;
    cur->n_server_names = fresh->n_server_names;
    cur->storage_log_interval_s = fresh->storage_log_interval_s;
    cur->access_log = fresh->access_log;
    cur->log_level = fresh->log_level;
    mabd_log_set_level(cur->log_level);
    fresh->access_log = NULL;
    fresh->admin_token = fresh->static_url = fresh->static_dir = NULL;
    fresh->server_names = NULL;
    fresh->n_server_names = 0;
}

/* SIGHUP. Returns -1 only when no engine could be opened at all. */
static int reload(mabd *d, char **previous_text)
{
    char msg[1024];
    mab_error err = {0, ""};
    mabd_settings fresh = {0};
    /* Everything but storage, without touching the serving engine. */
    mab_engine *dry = NULL;
    mab_adapter *probe = NULL;
    mab_options opts = {sizeof opts, MAB_OPEN_CHECK, 0};
    int rc = mab_open_sections(d->config_path, &opts, mabd_config_sections, &dry, &err);
    if (rc == MAB_OK && mabd_settings_load(dry, &fresh, msg, sizeof msg) != 0) {
        mabd_log(MABD_LOG_ERROR, "reload refused: %s; the previous config keeps serving", msg);
        atomic_fetch_add(&d->reloads_failed, 1);
        mab_close(dry, NULL);
        return 0;
    }
    if (rc == MAB_OK)
        rc = mab_adapter_open(dry, &probe, &err);
    mab_adapter_close(probe);
    mab_close(dry, NULL);
    char *text = rc == MAB_OK ? read_all(d->config_path) : NULL;
    if (rc != MAB_OK || !text) {
        mabd_log(MABD_LOG_ERROR, "reload refused: %s; the previous config keeps serving",
                 rc != MAB_OK ? err.message : "cannot read the config");
        atomic_fetch_add(&d->reloads_failed, 1);
        mabd_settings_free(&fresh);
        free(text);
        return 0;
    }

    mabd_write_begin(&d->threads);
    atomic_fetch_add(&d->storage_errors_before, mab_storage_errors(d->engine));
    if (mab_close(d->engine, &err) != MAB_OK)
        mabd_log(MABD_LOG_ERROR, "reload: writing the counters of the previous engine: %s", err.message);
    d->engine = NULL;
    mab_engine *engine = NULL;
    rc = mab_open_sections(d->config_path, NULL, mabd_config_sections, &engine, &err);
    if (rc == MAB_OK && mab_adapter_reload(d->adapter, engine, &err) != MAB_OK) {
        mab_close(engine, NULL);
        rc = MAB_ECONFIG;
    }
    int result = 0;
    if (rc == MAB_OK) {
        d->engine = engine;
        apply_settings(d, &fresh);
        free(*previous_text);
        *previous_text = text;
        text = NULL;
        atomic_fetch_add(&d->reloads_ok, 1);
        mabd_log(MABD_LOG_INFO, "reloaded %s: %zu experiments, storage %s", d->config_path,
                 mab_experiment_count(engine), mab_storage_name(engine));
    } else {
        mabd_log(MABD_LOG_ERROR, "reload refused: %s; reopening the previous config", err.message);
        atomic_fetch_add(&d->reloads_failed, 1);
        if (reopen_previous(d->config_path, *previous_text, &engine, &err) == MAB_OK &&
            mab_adapter_reload(d->adapter, engine, &err) == MAB_OK) {
            d->engine = engine;
        } else {
            mabd_log(MABD_LOG_ERROR, "cannot reopen the previous config either: %s", err.message);
            result = -1;
        }
    }
    mabd_write_end(&d->threads);
    mabd_settings_free(&fresh);
    free(text);
    return result;
}

static int64_t in_flight(mabd *d)
{
    mabd_thread_totals totals;
    mabd_threads_sum(&d->threads, &totals);
    return totals.in_flight;
}

static void sample(mabd *d)
{
    mabd_read_begin(&d->threads);
    if (d->engine)
        mabd_series_sample(d);
    mabd_read_end(&d->threads);
}

/* Admin actions another mabd stored, read at this engine's refresh, join
   the dashboard's events within a tick (admin.c; 4096 experiments a tick:
   larger configs within n / 4096 ticks, or at the next dashboard fetch). */
static void poll_admin(mabd *d)
{
    mabd_read_begin(&d->threads);
    if (d->engine)
        mabd_admin_poll_some(d, 4096);
    mabd_read_end(&d->threads);
}

static void check_storage(mabd *d, time_t now)
{
    mabd_read_begin(&d->threads);
    if (d->engine)
        mabd_storage_check(d, now);
    mabd_read_end(&d->threads);
}

/* mabd -t: the checks of `mab check` (mab_check() for the engine, the
   plugins, the store read-only and the key file; mabd_settings_load() for
   the mabd section), nothing served, created or locked. */
static int test_config(const char *config)
{
    mab_error err = {0, ""};
    char msg[1024];
    if (mab_check(config, mabd_config_sections, &err) != MAB_OK) {
        fprintf(stderr, "mabd: %s\nmabd: configuration test failed\n", err.message);
        return 1;
    }
    mab_options opts = {sizeof opts, MAB_OPEN_CHECK, 0};
    mab_engine *engine = NULL;
    mabd_settings settings;
    int rc = mab_open_sections(config, &opts, mabd_config_sections, &engine, &err);
    if (rc != MAB_OK)
        snprintf(msg, sizeof msg, "%s", err.message);
    else if (mabd_settings_load(engine, &settings, msg, sizeof msg) != 0)
        rc = MAB_ECONFIG;
    else
        mabd_settings_free(&settings);
    mab_close(engine, NULL);
    if (rc != MAB_OK) {
        fprintf(stderr, "mabd: %s\nmabd: configuration test failed\n", msg);
        return 1;
    }
    fprintf(stderr, "mabd: the configuration file %s syntax is ok\n"
                    "mabd: configuration file %s test is successful\n", config, config);
    return 0;
}

static int parse_args(int argc, char **argv, const char **config, const char **listen,
                      int *test)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-t") == 0 || strcmp(a, "--test-config") == 0) {
            *test = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("mabd %s (libmab %s)\n", MAB_VERSION_STRING, mab_version());
            exit(0);
        }
        const char **dst = strncmp(a, "--config", 8) == 0   ? config
                           : strncmp(a, "--listen", 8) == 0 ? listen
                                                            : NULL;
        if (!dst || (a[8] != '\0' && a[8] != '=')) {
            fprintf(stderr, "mabd: unknown argument '%s'\n%s", a, usage);
            return -1;
        }
        if (a[8] == '=')
            *dst = a + 9;
        else if (i + 1 < argc)
            *dst = argv[++i];
        else {
            fprintf(stderr, "mabd: %s needs a value\n%s", a, usage);
            return -1;
        }
    }
    if (!*config) {
        fprintf(stderr, "mabd: --config FILE is required\n%s", usage);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *listen = NULL;
    int test = 0;
    if (parse_args(argc, argv, &config, &listen, &test) != 0)
        return 2;
    if (test)
        return test_config(config);

    static mabd d;
    /* Requests back off while a reload waits: it never waits behind an
       endless stream of them (threads.h). */
    if (mabd_threads_init(&d.threads) != 0) {
        fprintf(stderr, "mabd: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&d.storage_log_mu, NULL);
    pthread_rwlock_init(&d.access_lock, NULL);
    d.access_fd = -1;
    d.config_path = config;

    char msg[1024];
    mab_error err = {0, ""};
    if (mab_open_sections(config, NULL, mabd_config_sections, &d.engine, &err) != MAB_OK) {
        fprintf(stderr, "mabd: %s\n", err.message);
        return 1;
    }
    if (mabd_settings_load(d.engine, &d.settings, msg, sizeof msg) != 0) {
        fprintf(stderr, "mabd: %s\n", msg);
        mab_close(d.engine, NULL);
        return 1;
    }
    if (listen)
        snprintf(d.settings.listen, sizeof d.settings.listen, "%s", listen);
    mabd_log_set_level(d.settings.log_level);
    if (mabd_access_log_open(&d, msg, sizeof msg) != 0) {
        fprintf(stderr, "mabd: %s\n", msg);
        mab_close(d.engine, NULL);
        mabd_settings_free(&d.settings);
        return 1;
    }
    if (mab_adapter_open(d.engine, &d.adapter, &err) != MAB_OK) {
        fprintf(stderr, "mabd: %s\n", err.message);
        mab_close(d.engine, NULL);
        mabd_settings_free(&d.settings);
        return 1;
    }
    char *previous_text = read_all(config);
    d.series = series_create(d.settings.series_keep, d.settings.series_max_bytes);
    if (!previous_text || !d.series) {
        fprintf(stderr, "mabd: out of memory\n");
        return 1;
    }
    mabd_series_sample(&d);

    /* Block the signals we wait for in every thread, before any starts. */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &waited, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned port = 0;
    struct MHD_Daemon *daemon = mabd_server_start(&d, &port, msg, sizeof msg);
    if (!daemon) {
        fprintf(stderr, "mabd: %s\n", msg);
        return 1;
    }
    mabd_log(MABD_LOG_INFO, "listening on http://%s:%u/ (pid %ld, config %s, %zu experiments, storage %s%s)",
             d.listen_ip, port, (long)getpid(), config, mab_experiment_count(d.engine),
             mab_storage_name(d.engine), d.settings.admin_token ? ", admin token required" : "");
    if (!d.loopback && d.settings.admin_token)
        mabd_log(MABD_LOG_WARN, "warning: the dashboard and admin routes are open on the non-loopback address "
                 "%s, guarded by the admin token only; serve them through TLS or listen on "
                 "127.0.0.1", d.listen_ip);
    else if (!d.loopback)
        mabd_log(MABD_LOG_WARN, "warning: listening on the non-loopback address %s without "
                 "mabd.admin_token_file: the dashboard and admin routes are closed (403)",
                 d.listen_ip);

    int status = 0;
    time_t next_sample = time(NULL) + d.settings.series_interval_s;
    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&waited, NULL, &tick);
        if (sig == SIGHUP) {
            if (reload(&d, &previous_text) != 0) {
                status = 1;
                break;
            }
            /* After the reload: a new access_log path takes effect now. */
            mabd_read_begin(&d.threads);
            if (mabd_access_log_open(&d, msg, sizeof msg) != 0)
                mabd_log(MABD_LOG_ERROR, "cannot reopen the access log: %s; logging to the "
                         "previous file", msg);
            else if (d.settings.access_log)
                mabd_log(MABD_LOG_INFO, "access log reopened: %s", d.settings.access_log);
            mabd_read_end(&d.threads);
        } else if (sig == SIGTERM || sig == SIGINT) {
            mabd_log(MABD_LOG_INFO, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        time_t now = time(NULL);
        mabd_server_reap(&d);
        check_storage(&d, now);
        poll_admin(&d);
        if (now >= next_sample) {
            sample(&d);
            next_sample = now + d.settings.series_interval_s;
        }
    }

    /* Stop accepting, let requests in progress finish (up to 10 s), stop. */
    MHD_socket listener = MHD_quiesce_daemon(daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    for (int i = 0; i < 1000 && in_flight(&d) > 0; i++) {
        struct timespec pause = {0, 10000000};
        nanosleep(&pause, NULL);
    }
    MHD_stop_daemon(daemon);
    mabd_server_free(&d);
    if (d.engine && mab_close(d.engine, &err) != MAB_OK) {
        fprintf(stderr, "mabd: %s\n", err.message);
        status = 1;
    } else if (d.engine) {
        mabd_log(MABD_LOG_INFO, "counters written to storage; bye");
    }
    mab_adapter_close(d.adapter);
    mabd_access_log_close(&d);
    series_free(d.series);
    mabd_metrics_free(&d);
    mabd_settings_free(&d.settings);
    free(previous_text);
    mabd_threads_free(&d.threads);
    return status;
}
