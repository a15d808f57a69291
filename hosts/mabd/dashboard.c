/*
 * dashboard.c - the numbers behind the admin page, computed here so that
 * the page's script only draws: per arm, pulls, reward rate with a 95%
 * Wilson interval, the share of recent traffic; plus the time series.
 * Also the `mab stats --json` document and the time-series sampler.
 */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "mabd.h"

#define SHARE_WINDOW_S 3600 /* "current" share of traffic: the last hour */
#define WILSON_Z 1.959963984540054

/* Wilson score interval of a proportion p over n trials. */
static void wilson(double p, double n, double *lo, double *hi)
{
    if (n <= 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    double z2 = WILSON_Z * WILSON_Z;
    double denom = 1 + z2 / n;
    double center = (p + z2 / (2 * n)) / denom;
    double half = WILSON_Z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom;
    *lo = fmax(0, center - half);
    *hi = fmin(1, center + half);
}

static mab_arm_stats *experiment_stats(mabd *d, const mab_experiment_info *info)
{
    mab_arm_stats *arms = calloc(info->n_arms ? info->n_arms : 1, sizeof *arms);
    size_t n = 0;
    if (arms && mab_stats(d->engine, info->id, arms, info->n_arms, &n, NULL) != MAB_OK) {
        free(arms);
        return NULL;
    }
    return arms;
}

void mabd_stats_json(mabd *d, strbuf *out)
{
    sb_puts(out, "{\"experiments\":{");
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        mab_arm_stats *arms = experiment_stats(d, &info);
        if (i)
            sb_puts(out, ",");
        sb_json_string(out, info.id);
        sb_puts(out, ":{\"policy\":");
        sb_json_string(out, info.policy);
        sb_puts(out, ",\"arms\":{");
        for (size_t a = 0; arms && a < info.n_arms; a++) {
            if (a)
                sb_puts(out, ",");
            sb_json_string(out, arms[a].arm_id);
            sb_printf(out, ":{\"pulls\":%llu,\"rewards\":%llu,\"reward_sum\":",
                      (unsigned long long)arms[a].pulls, (unsigned long long)arms[a].rewards);
            sb_json_number(out, arms[a].reward_sum);
            sb_puts(out, ",\"mean\":");
            sb_json_number(out, arms[a].mean);
            sb_puts(out, "}");
        }
        sb_puts(out, "}}");
        free(arms);
    }
    sb_puts(out, "}}\n");
}

static void experiment_json(mabd *d, const mab_experiment_info *info, int64_t now, strbuf *out)
{
    mab_arm_stats *arms = experiment_stats(d, info);
    if (!arms)
        return;
    double span = info->reward_max - info->reward_min;
    uint64_t total = 0, window_total = 0;
    uint64_t *window = calloc(info->n_arms ? info->n_arms : 1, sizeof *window);
    int64_t since = now;
    int have_window = window != NULL;
    for (size_t a = 0; a < info->n_arms; a++) {
        total += arms[a].pulls;
        uint64_t base = 0;
        int64_t t_sample = now;
        if (have_window && series_baseline(d->series, now - SHARE_WINDOW_S, info->id,
                                           arms[a].arm_id, &base, &t_sample)) {
            window[a] = arms[a].pulls >= base ? arms[a].pulls - base : arms[a].pulls;
            window_total += window[a];
            if (t_sample < since)
                since = t_sample;
        } else if (window) {
            window[a] = arms[a].pulls;
            window_total += window[a];
        }
    }
    /* No traffic in the window: fall back to every pull ever. */
    int use_window = window && window_total > 0;
    sb_puts(out, "{\"id\":");
    sb_json_string(out, info->id);
    sb_puts(out, ",\"policy\":");
    sb_json_string(out, info->policy);
    sb_puts(out, ",\"reward_min\":");
    sb_json_number(out, info->reward_min);
    sb_puts(out, ",\"reward_max\":");
    sb_json_number(out, info->reward_max);
    sb_printf(out, ",\"pulls\":%llu,\"share_since\":%lld,\"arms\":[", (unsigned long long)total,
              use_window ? (long long)since : 0LL);
    for (size_t a = 0; a < info->n_arms; a++) {
        const mab_arm_stats *s = &arms[a];
        double lo = info->reward_min, hi = info->reward_max, rate = NAN;
        if (s->pulls) {
            double p = (s->mean - info->reward_min) / span;
            p = fmin(1, fmax(0, p));
            double plo, phi;
            wilson(p, (double)s->pulls, &plo, &phi);
            rate = s->mean;
            lo = info->reward_min + plo * span;
            hi = info->reward_min + phi * span;
        }
        double share = use_window ? (double)window[a] / (double)window_total
                       : total    ? (double)s->pulls / (double)total
                                  : NAN;
        sb_puts(out, a ? ",{\"id\":" : "{\"id\":");
        sb_json_string(out, s->arm_id);
        sb_printf(out, ",\"pulls\":%llu,\"rewards\":%llu,\"reward_sum\":",
                  (unsigned long long)s->pulls, (unsigned long long)s->rewards);
        sb_json_number(out, s->reward_sum);
        sb_puts(out, ",\"rate\":");
        sb_json_number(out, rate);
        sb_puts(out, ",\"lo\":");
        sb_json_number(out, lo);
        sb_puts(out, ",\"hi\":");
        sb_json_number(out, hi);
        sb_puts(out, ",\"share\":");
        sb_json_number(out, share);
        sb_puts(out, "}");
    }
    sb_puts(out, "]}");
    free(window);
    free(arms);
}

void mabd_dashboard_json(mabd *d, strbuf *out)
{
    int64_t now = (int64_t)time(NULL);
    sb_printf(out, "{\"now\":%lld,\"interval_s\":%u,\"share_window_s\":%d,\"storage\":",
              (long long)now, d->settings.series_interval_s, SHARE_WINDOW_S);
    sb_json_string(out, mab_storage_name(d->engine));
    sb_puts(out, ",\"experiments\":[");
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        if (i)
            sb_puts(out, ",");
        experiment_json(d, &info, now, out);
    }
    sb_puts(out, "],\"series\":");
    series_write_json(d->series, out);
    sb_puts(out, "}");
}

void mabd_series_sample(mabd *d)
{
    size_t n = mab_experiment_count(d->engine), total = 0;
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info;
        if (mab_experiment_at(d->engine, i, &info, NULL) == MAB_OK)
            total += info.n_arms;
    }
    series_point *points = calloc(total ? total : 1, sizeof *points);
    mab_arm_stats *arms = calloc(total ? total : 1, sizeof *arms);
    size_t k = 0;
    for (size_t i = 0; points && arms && i < n; i++) {
        mab_experiment_info info;
        size_t got = 0;
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK ||
            mab_stats(d->engine, info.id, arms + k, total - k, &got, NULL) != MAB_OK)
            continue;
        for (size_t a = 0; a < got && k < total; a++, k++)
            points[k] = (series_point){info.id, arms[k].arm_id, arms[k].pulls,
                                       arms[k].reward_sum};
    }
    if (points && arms)
        series_add(d->series, (int64_t)time(NULL), points, k);
    free(points);
    free(arms);
}
