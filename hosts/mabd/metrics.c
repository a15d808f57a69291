/*
 * metrics.c - /metrics in the Prometheus text format (version 0.0.4):
 * per-arm counters (mab_stats, every experiment, every scrape), P(best),
 * expected loss and the sample-ratio p-value (the core's report, kept per
 * experiment and recomputed only when it changed: below), the choose
 * latency histogram and the adapter's counters.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mabd.h"

const double mabd_latency_bounds[MABD_LATENCY_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025,  0.005,    0.01,    0.025,  0.05,    0.1,    1.0};

void mabd_latency_record(mabd *d, uint64_t ns)
{
    double seconds = (double)ns / 1e9;
    size_t b = 0;
    while (b < MABD_LATENCY_BUCKETS && seconds > mabd_latency_bounds[b])
        b++;
    mabd_threads_latency(&d->threads, b, ns);
}

static void counter(strbuf *out, const char *name, const char *help, uint64_t value)
{
    sb_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name,
              value);
}

/* Room for n arms in *arms (*cap of them now), grown with realloc: 1, or 0
   when out of memory (*arms and *cap kept: the caller frees *arms). */
static int arms_room(mab_arm_stats **arms, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 1;
    mab_arm_stats *grown = realloc(*arms, n * sizeof *grown);
    if (!grown)
        return 0;
    *arms = grown;
    *cap = n;
    return 1;
}

/* The per-arm counters: one mab_stats() an experiment (no report), each
   family gathered in its own buffer so that its lines stay together. Ids are
   plain ([A-Za-z0-9_-]), so labels need no escaping. */
static void per_arm(mabd *d, strbuf *out)
{
    static const char *const names[3] = {"mab_pulls_total", "mab_rewards_total",
                                         "mab_reward_sum"};
    strbuf fam[3];
    for (size_t f = 0; f < 3; f++)
        sb_init(&fam[f]);
    sb_printf(&fam[0], "# HELP %s Visitors assigned to the arm (pulls).\n# TYPE %s counter\n",
              names[0], names[0]);
    sb_printf(&fam[1], "# HELP %s Rewards recorded for the arm.\n# TYPE %s counter\n", names[1],
              names[1]);
    sb_printf(&fam[2], "# HELP %s Sum of the arm's reward values.\n# TYPE %s gauge\n", names[2],
              names[2]);
    size_t n = mab_experiment_count(d->engine), cap = 0;
    mab_arm_stats *arms = NULL;
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        if (!arms_room(&arms, &cap, info.n_arms)) {
            /* Out of memory: the scrape fails as a whole (as when the text
               cannot grow), rather than leaving this experiment's counters
               out of an answer that looks complete. */
            out->failed = 1;
            break;
        }
        size_t n_arms = 0;
        arms[0].struct_size = sizeof *arms;
        if (mab_stats(d->engine, info.id, arms, info.n_arms, &n_arms, NULL) != MAB_OK)
            continue;
        for (size_t a = 0; a < n_arms && a < info.n_arms; a++) {
            sb_printf(&fam[0], "%s{experiment=\"%s\",arm=\"%s\"} %" PRIu64 "\n", names[0],
                      info.id, arms[a].arm_id, arms[a].pulls);
            sb_printf(&fam[1], "%s{experiment=\"%s\",arm=\"%s\"} %" PRIu64 "\n", names[1],
                      info.id, arms[a].arm_id, arms[a].rewards);
            sb_printf(&fam[2], "%s{experiment=\"%s\",arm=\"%s\"} %.17g\n", names[2], info.id,
                      arms[a].arm_id, arms[a].reward_sum);
        }
    }
    free(arms);
    for (size_t f = 0; f < 3; f++) {
        if (fam[f].failed)
            out->failed = 1;
        else
            sb_append(out, fam[f].data, fam[f].len);
        sb_free(&fam[f]);
    }
}

/* Rewards refused by each experiment's attribution window, as storage
   counts them ("EXP@late"): every worker's after a refresh, kept across
   reloads and restarts (reset with the experiment). */
static void late_rewards(mabd *d, strbuf *out)
{
    sb_puts(out, "# HELP mab_rewards_late_total Rewards refused as later than the "
                 "experiment's attribution_window.\n# TYPE mab_rewards_late_total counter\n");
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        mab_rules_info rules = MAB_STRUCT_INIT(mab_rules_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) == MAB_OK &&
            mab_rules(d->engine, info.id, &rules, NULL) == MAB_OK)
            sb_printf(out, "mab_rewards_late_total{experiment=\"%s\"} %" PRIu64 "\n", info.id,
                      rules.late_rewards);
    }
}

/* ---- the report gauges, from a cache (docs/operating-mabd.md, "Metrics at
   scale") ---------------------------------------------------------------

   A report samples 10^4 joint draws (milliseconds an experiment), so a
   scrape does not compute one per experiment: each experiment's last report
   is kept with the counters it was computed from (its snapshot's pulls,
   rewards and reward sum per arm; a report is a pure function of its
   snapshot, core/report.c). A scrape recomputes an experiment's report only
   when its counters differ from those and the kept report is at least
   mabd.metrics.report_interval_s old, at most mabd.metrics.reports_per_scrape
   of them, taken round-robin from where the previous scrape stopped. The
   gauges mabd_metrics_reports_stale (counters changed, report not yet
   recomputed) and mabd_metrics_reports_missing (no report yet: left out of
   the report families) say what a scrape did not bring up to date. A
   reload (any attempt: the engine may be reopened) empties the cache. */

typedef struct cached_arm {
    const char *arm_id; /* the engine's, valid until mab_close() */
    uint64_t pulls, rewards;
    double reward_sum, p_best, expected_loss;
} cached_arm;

typedef struct cached_report {
    const char *experiment; /* the engine's */
    time_t at;              /* when computed; 0: never */
    size_t n_arms;
    cached_arm *arms;
    int has_srm;
    double srm_p_value;
} cached_report;

struct mabd_metrics_cache {
    uint64_t generation; /* reloads (ok + failed) when filled */
    size_t n, cursor;    /* experiments; where the next scrape's recomputing starts */
    cached_report *reports;
    unsigned char *dirty; /* scratch: counters differ from the report's */
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t reports_computed; /* under cache_mu, across caches */

static void cache_free(struct mabd_metrics_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->reports[i].arms);
    free(c->reports);
    free(c->dirty);
    free(c);
}

void mabd_metrics_free(mabd *d)
{
    pthread_mutex_lock(&cache_mu);
    cache_free(d->metrics_cache);
    d->metrics_cache = NULL;
    pthread_mutex_unlock(&cache_mu);
}

/* The cache for this engine (cache_mu held); NULL when out of memory. */
static struct mabd_metrics_cache *cache_for(mabd *d, size_t n)
{
    uint64_t generation = atomic_load(&d->reloads_ok) + atomic_load(&d->reloads_failed);
    struct mabd_metrics_cache *c = d->metrics_cache;
    if (c && c->generation == generation && c->n == n)
        return c;
    cache_free(c);
    d->metrics_cache = c = calloc(1, sizeof *c);
    if (c) {
        c->generation = generation;
        c->n = n;
        c->reports = calloc(n ? n : 1, sizeof *c->reports);
        c->dirty = calloc(n ? n : 1, 1);
        if (!c->reports || !c->dirty) {
            free(c->reports);
            free(c->dirty);
            free(c);
            d->metrics_cache = c = NULL;
        }
    }
    return c;
}

/* Do experiment i's counters differ from those of its kept report? */
static int counters_changed(mabd *d, const cached_report *r, const mab_experiment_info *info,
                            mab_arm_stats *arms)
{
    size_t got = 0;
    arms[0].struct_size = sizeof *arms;
    if (mab_stats(d->engine, info->id, arms, info->n_arms, &got, NULL) != MAB_OK)
        return 1;
    if (!r->at || r->n_arms != got)
        return 1;
    for (size_t a = 0; a < got; a++)
        if (arms[a].pulls != r->arms[a].pulls || arms[a].rewards != r->arms[a].rewards ||
            arms[a].reward_sum != r->arms[a].reward_sum)
            return 1;
    return 0;
}

/* Recompute experiment i's report into r; 0 when it cannot be had (r kept). */
static int recompute(mabd *d, cached_report *r, const char *experiment, time_t now)
{
    mab_report report;
    memset(&report, 0, sizeof report);
    report.struct_size = sizeof report;
    if (mab_report_get(d->engine, experiment, &report, NULL) != MAB_OK)
        return 0;
    cached_arm *arms = r->n_arms == report.n_arms ? r->arms
                                                  : calloc(report.n_arms ? report.n_arms : 1,
                                                           sizeof *arms);
    if (!arms) {
        mab_report_free(&report);
        return 0;
    }
    if (arms != r->arms)
        free(r->arms);
    for (size_t a = 0; a < report.n_arms; a++) {
        const mab_report_arm *arm = mab_report_arm_at(&report, a);
        arms[a] = (cached_arm){arm->arm_id, arm->pulls, arm->rewards, arm->reward_sum,
                               arm->p_best, arm->expected_loss};
    }
    r->experiment = experiment;
    r->arms = arms;
    r->n_arms = report.n_arms;
    r->at = now;
    r->has_srm = (report.available & MAB_REPORT_HAS_SRM) != 0;
    r->srm_p_value = report.srm_p_value;
    mab_report_free(&report);
    reports_computed++;
    return 1;
}

/* mab_arm_p_best, mab_arm_expected_loss and mab_experiment_srm_p_value
   from the kept reports (above), brought up to date within the limits. */
static void report_gauges(mabd *d, strbuf *out)
{
    size_t n = mab_experiment_count(d->engine);
    time_t now = time(NULL);
    pthread_mutex_lock(&cache_mu);
    struct mabd_metrics_cache *c = cache_for(d, n);
    size_t stale = 0, missing = 0, computed = 0, cap = 0;
    mab_arm_stats *arms = NULL;
    /* Which experiments changed since their report (every one: cheap). */
    for (size_t i = 0; c && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        c->dirty[i] = 0;
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        c->reports[i].experiment = info.id;
        /* Out of memory to compare: taken as changed, so its kept report
           counts as stale (or missing) and is recomputed when it can be. */
        c->dirty[i] = !arms_room(&arms, &cap, info.n_arms) ||
                      counters_changed(d, &c->reports[i], &info, arms);
    }
    free(arms);
    /* Recompute within the interval and the budget, round-robin. */
    unsigned interval = d->settings.metrics_report_interval_s;
    size_t budget = d->settings.metrics_reports_per_scrape, last = SIZE_MAX;
    for (size_t k = 0; c && k < n; k++) {
        size_t i = (c->cursor + k) % n;
        cached_report *r = &c->reports[i];
        int due = c->dirty[i] && (!r->at || now - r->at >= (time_t)interval);
        if (due && computed < budget && recompute(d, r, r->experiment, now)) {
            computed++;
            c->dirty[i] = 0;
            last = i;
        }
        if (!r->at)
            missing++;
        else if (c->dirty[i])
            stale++;
    }
    if (c && last != SIZE_MAX)
        c->cursor = (last + 1) % n;
    static const struct {
        const char *name, *help;
        int loss;
    } families[] = {
        {"mab_arm_p_best", "Posterior probability that the arm has the highest mean reward "
                           "(Monte Carlo, seeded; docs/operating.md).", 0},
        {"mab_arm_expected_loss", "Expected loss of choosing the arm: E[best mean - arm mean], "
                                  "in reward units.", 1},
    };
    for (size_t f = 0; f < 2; f++) {
        sb_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f].name, families[f].help,
                  families[f].name);
        for (size_t i = 0; c && i < n; i++) {
            const cached_report *r = &c->reports[i];
            for (size_t a = 0; r->at && a < r->n_arms; a++)
                sb_printf(out, "%s{experiment=\"%s\",arm=\"%s\"} %.17g\n", families[f].name,
                          r->experiment, r->arms[a].arm_id,
                          families[f].loss ? r->arms[a].expected_loss : r->arms[a].p_best);
        }
    }
    /* The sample-ratio check: only experiments whose p-value is available
       (a missing sample, not a made-up one, where it is not). */
    sb_puts(out, "# HELP mab_experiment_srm_p_value Sample-ratio check: chi-square p-value of "
                 "the pulls against the probabilities served; below 0.001 the assignment does "
                 "not follow them (docs/operating.md).\n"
                 "# TYPE mab_experiment_srm_p_value gauge\n");
    for (size_t i = 0; c && i < n; i++)
        if (c->reports[i].at && c->reports[i].has_srm)
            sb_printf(out, "mab_experiment_srm_p_value{experiment=\"%s\"} %.17g\n",
                      c->reports[i].experiment, c->reports[i].srm_p_value);
    if (!c)
        missing = n;
    sb_printf(out, "# HELP mabd_metrics_reports_stale Experiments whose report gauges are "
                   "older than their counters (mabd.metrics.report_interval_s, "
                   "reports_per_scrape).\n# TYPE mabd_metrics_reports_stale gauge\n"
                   "mabd_metrics_reports_stale %zu\n"
                   "# HELP mabd_metrics_reports_missing Experiments left out of the report "
                   "gauges: no report computed yet.\n# TYPE mabd_metrics_reports_missing gauge\n"
                   "mabd_metrics_reports_missing %zu\n"
                   "# HELP mabd_metrics_reports_computed_total Reports computed for /metrics.\n"
                   "# TYPE mabd_metrics_reports_computed_total counter\n"
                   "mabd_metrics_reports_computed_total %" PRIu64 "\n",
              stale, missing, reports_computed);
    pthread_mutex_unlock(&cache_mu);
}

void mabd_metrics_write(mabd *d, strbuf *out)
{
    per_arm(d, out);
    late_rewards(d, out);
    report_gauges(d, out);

    sb_puts(out, "# HELP mab_choose_duration_seconds Time to answer /v1/choose.\n"
                 "# TYPE mab_choose_duration_seconds histogram\n");
    mabd_thread_totals totals;
    mabd_threads_sum(&d->threads, &totals);
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= MABD_LATENCY_BUCKETS; b++) {
        cumulative += totals.latency_buckets[b];
        if (b < MABD_LATENCY_BUCKETS)
            sb_printf(out, "mab_choose_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                      mabd_latency_bounds[b], cumulative);
        else
            sb_printf(out, "mab_choose_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                      cumulative);
    }
    sb_printf(out, "mab_choose_duration_seconds_sum %.9f\n",
              (double)totals.latency_sum_ns / 1e9);
    sb_printf(out, "mab_choose_duration_seconds_count %" PRIu64 "\n",
              totals.latency_count);

    mab_adapter_counters c = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(d->adapter, &c);
    counter(out, "mab_cookies_forged_total",
            "Cookies or tokens ignored: bad signature, truncated or unparseable.",
            c.cookies_forged);
    counter(out, "mab_cookies_expired_total", "Cookie entries ignored as older than max_age.",
            c.cookies_expired);
    counter(out, "mab_assignments_total", "New assignments made through the adapter.",
            c.assignments);
    counter(out, "mab_rewards_counted_total", "Rewards counted through the adapter.",
            c.rewards_counted);
    counter(out, "mab_rewards_refused_total",
            "Rewards that counted nothing (no or invalid cookie, already rewarded, replay...).",
            c.rewards_refused);
    counter(out, "mab_replays_refused_total", "Rewards refused as replays of a rewarded cookie.",
            c.replays_refused);
    counter(out, "mab_replay_evictions_total",
            "Rewarded assignment ids forgotten early because the replay memory was full.",
            c.replay_evictions);
    counter(out, "mab_redirects_refused_total", "Redirect targets refused by the guard.",
            c.redirects_refused);
    counter(out, "mab_storage_flush_errors_total", "Failed writes to storage (retried).",
            mabd_storage_errors(d));
    counter(out, "mab_slow_clients_closed_total",
            "Connections closed because their request did not arrive within request_timeout_s.",
            atomic_load(&d->slow_clients_closed));
    counter(out, "mab_bad_requests_total", "Requests answered 4xx.", totals.bad_requests);
    sb_printf(out, "# HELP mabd_series_bytes Memory held by the dashboard's time series "
                   "(at most mabd.series.max_bytes).\n# TYPE mabd_series_bytes gauge\n"
                   "mabd_series_bytes %zu\n", series_bytes(d->series));
    sb_printf(out, "# HELP mab_reloads_total Config reloads (SIGHUP) by result.\n"
                   "# TYPE mab_reloads_total counter\n"
                   "mab_reloads_total{result=\"ok\"} %" PRIu64 "\n"
                   "mab_reloads_total{result=\"failed\"} %" PRIu64 "\n",
              atomic_load(&d->reloads_ok), atomic_load(&d->reloads_failed));
}
