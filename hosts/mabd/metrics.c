/*
 * metrics.c - /metrics in the Prometheus text format (version 0.0.4):
 * per-arm counters, P(best) and expected loss (the core's report), the
 * choose latency histogram and the adapter's counters.
 */
#include <inttypes.h>
#include <stdlib.h>

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

/* One family over every arm; `field` picks the value. Ids are plain
   ([A-Za-z0-9_-]), so labels need no escaping. */
static void per_arm(mabd *d, strbuf *out, const char *name, const char *type, const char *help,
                    int field)
{
    sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        mab_arm_stats *arms = calloc(info.n_arms ? info.n_arms : 1, sizeof *arms);
        size_t n_arms = 0;
        if (arms)
            arms[0].struct_size = sizeof *arms;
        if (arms && mab_stats(d->engine, info.id, arms, info.n_arms, &n_arms, NULL) == MAB_OK) {
            for (size_t a = 0; a < n_arms && a < info.n_arms; a++) {
                sb_printf(out, "%s{experiment=\"%s\",arm=\"%s\"} ", name, info.id,
                          arms[a].arm_id);
                if (field == 0)
                    sb_printf(out, "%" PRIu64 "\n", arms[a].pulls);
                else if (field == 1)
                    sb_printf(out, "%" PRIu64 "\n", arms[a].rewards);
                else
                    sb_printf(out, "%.17g\n", arms[a].reward_sum);
            }
        }
        free(arms);
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

/* mab_arm_p_best, mab_arm_expected_loss and mab_experiment_srm_p_value
   from the core's report: one report per experiment (one snapshot), every
   family written from it. */
static void report_gauges(mabd *d, strbuf *out)
{
    size_t n = mab_experiment_count(d->engine);
    mab_report *reports = calloc(n ? n : 1, sizeof *reports);
    int *have = calloc(n ? n : 1, sizeof *have);
    for (size_t i = 0; reports && have && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        reports[i].struct_size = sizeof reports[i];
        have[i] = mab_experiment_at(d->engine, i, &info, NULL) == MAB_OK &&
                  mab_report_get(d->engine, info.id, &reports[i], NULL) == MAB_OK;
    }
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
        for (size_t i = 0; reports && have && i < n; i++) {
            for (size_t a = 0; have[i] && a < reports[i].n_arms; a++) {
                const mab_report_arm *arm = mab_report_arm_at(&reports[i], a);
                sb_printf(out, "%s{experiment=\"%s\",arm=\"%s\"} %.17g\n", families[f].name,
                          reports[i].experiment, arm->arm_id,
                          families[f].loss ? arm->expected_loss : arm->p_best);
            }
        }
    }
    /* The sample-ratio check: only experiments whose p-value is available
       (a missing sample, not a made-up one, where it is not). */
    sb_puts(out, "# HELP mab_experiment_srm_p_value Sample-ratio check: chi-square p-value of "
                 "the pulls against the probabilities served; below 0.001 the assignment does "
                 "not follow them (docs/operating.md).\n"
                 "# TYPE mab_experiment_srm_p_value gauge\n");
    for (size_t i = 0; reports && have && i < n; i++)
        if (have[i] && (reports[i].available & MAB_REPORT_HAS_SRM))
            sb_printf(out, "mab_experiment_srm_p_value{experiment=\"%s\"} %.17g\n",
                      reports[i].experiment, reports[i].srm_p_value);
    for (size_t i = 0; reports && have && i < n; i++)
        if (have[i])
            mab_report_free(&reports[i]);
    free(reports);
    free(have);
}

void mabd_metrics_write(mabd *d, strbuf *out)
{
    per_arm(d, out, "mab_pulls_total", "counter", "Visitors assigned to the arm (pulls).", 0);
    per_arm(d, out, "mab_rewards_total", "counter", "Rewards recorded for the arm.", 1);
    per_arm(d, out, "mab_reward_sum", "gauge", "Sum of the arm's reward values.", 2);
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
