/*
 * storage_log.c - storage write failures in mabd's log. The library only
 * counts them (mab_storage_errors()) and keeps the failed increments for
 * the next write; an operator must still hear of it, once and not once per
 * request: the first failure of a streak is logged with its cause, then a
 * summary every storage_log_interval_s while it lasts, then the recovery.
 *
 * A streak starts when a request gets MAB_ESTORAGE or when the error count
 * grows (a background write of sync {"interval_ms": N} failed). While it
 * lasts, the main loop calls mab_flush() once a second: its error message
 * names the cause, and its success is the recovery (everything pending has
 * then been written).
 *
 * Increments the store refused as invalid are not a streak: the engine has
 * dropped them (written nothing of them, kept the rest) and counts them in
 * mab_dropped_deltas(); each new drop is logged once, with the last reason.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mabd.h"

uint64_t mabd_storage_errors(mabd *d)
{
    return atomic_load(&d->storage_errors_before) + mab_storage_errors(d->engine);
}

/* Caller holds storage_log_mu. */
static void start_streak(mabd *d, time_t now, uint64_t count, const char *message)
{
    d->storage_failing = 1;
    d->streak_first_count = count ? count - 1 : 0;
    d->streak_summary_count = count;
    d->streak_since = now;
    d->streak_next_summary = now + d->settings.storage_log_interval_s;
    snprintf(d->storage_last_error, sizeof d->storage_last_error, "%s", message);
    mabd_log(MABD_LOG_ERROR, "storage: write failed: %s (pending increments are kept and retried; a summary "
             "follows every %u s while writes fail)",
             message, d->settings.storage_log_interval_s);
}

void mabd_storage_failed(mabd *d, const char *message)
{
    time_t now = time(NULL);
    pthread_mutex_lock(&d->storage_log_mu);
    if (!d->storage_failing)
        start_streak(d, now, mabd_storage_errors(d), message);
    else
        snprintf(d->storage_last_error, sizeof d->storage_last_error, "%s", message);
    pthread_mutex_unlock(&d->storage_log_mu);
}

/* Log increments dropped since the last call (main loop only). */
static void log_drops(mabd *d)
{
    mab_error last = {0, ""};
    uint64_t dropped = mab_dropped_deltas(d->engine, &last);
    if (d->dropped_engine != d->engine) { /* a reload: a new engine counts from 0 */
        d->dropped_engine = d->engine;
        d->dropped_logged = 0;
    }
    if (dropped <= d->dropped_logged)
        return;
    mabd_log(MABD_LOG_ERROR, "storage: dropped %" PRIu64 " increment(s) the store refused as "
             "invalid (%" PRIu64 " since start; the rest were written); last: %s",
             dropped - d->dropped_logged, dropped, last.message);
    d->dropped_logged = dropped;
    /* mab_storage_errors() counts the writes that dropped something too:
       they are reported now, not as "a write failed and the retry
       succeeded" (a failure of another kind still starts a streak). */
    pthread_mutex_lock(&d->storage_log_mu);
    if (!d->storage_failing)
        d->streak_summary_count = mabd_storage_errors(d);
    pthread_mutex_unlock(&d->storage_log_mu);
}

void mabd_storage_check(mabd *d, time_t now)
{
    log_drops(d);
    pthread_mutex_lock(&d->storage_log_mu);
    int failing = d->storage_failing;
    uint64_t seen = d->streak_summary_count;
    pthread_mutex_unlock(&d->storage_log_mu);
    uint64_t count = mabd_storage_errors(d);
    if (!failing && count <= seen)
        return;
    /* In a streak, or a background write failed: retry now. */
    mab_error err = {0, ""};
    int rc = mab_flush(d->engine, &err);
    count = mabd_storage_errors(d);
    pthread_mutex_lock(&d->storage_log_mu);
    if (rc != MAB_OK) {
        if (!d->storage_failing) {
            start_streak(d, now, count, err.message);
        } else {
            snprintf(d->storage_last_error, sizeof d->storage_last_error, "%s", err.message);
            if (now >= d->streak_next_summary) {
                mabd_log(MABD_LOG_ERROR, "storage: still failing: %" PRIu64 " failed writes in the last %u s, "
                         "%" PRIu64 " since %lld s ago; last error: %s",
                         count - d->streak_summary_count, d->settings.storage_log_interval_s,
                         count - d->streak_first_count, (long long)(now - d->streak_since),
                         d->storage_last_error);
                d->streak_summary_count = count;
                d->streak_next_summary = now + d->settings.storage_log_interval_s;
            }
        }
    } else if (d->storage_failing) {
        mabd_log(MABD_LOG_INFO, "storage: recovered: writes succeed again after %" PRIu64
                 " failed writes over %lld s; everything pending is written",
                 count - d->streak_first_count, (long long)(now - d->streak_since));
        d->storage_failing = 0;
        d->streak_summary_count = count;
    } else {
        /* A background write failed and the retry succeeded at once. */
        mabd_log(MABD_LOG_WARN, "storage: a write failed and the retry succeeded (%" PRIu64 " failed writes "
                 "so far)", count);
        d->streak_summary_count = count;
    }
    pthread_mutex_unlock(&d->storage_log_mu);
}
