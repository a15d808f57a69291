/*
 * dashboard.c - the numbers behind the admin page, computed here so that
 * the page's script only draws: per arm, pulls, reward rate with a 95%
 * Wilson interval, the share of recent traffic, the arm's value (for its
 * colour); per experiment the core's report (leader, P(best), expected
 * loss, the recommendation, the policy's parameters); plus the time series.
 * Also the `mab stats --json` document, /v1/report and the sampler.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    if (arms)
        arms[0].struct_size = sizeof *arms;
    size_t n = 0;
    if (arms && mab_stats(d->engine, info->id, arms, info->n_arms, &n, NULL) != MAB_OK) {
        free(arms);
        return NULL;
    }
    return arms;
}

/* Add NAME: V to obj; 0 when out of memory. */
static int add_number(cJSON *obj, const char *name, double v)
{
    return cJSON_AddNumberToObject(obj, name, v) != NULL;
}

/* cJSON prints a parsed number with 15 digits when that reads back within
   an epsilon, not always exactly: give each number back the shortest text
   that reads back as exactly the double the library computed. */
static int exact_numbers(cJSON *node)
{
    for (cJSON *c = node ? node->child : NULL; c; c = c->next) {
        if (cJSON_IsNumber(c)) {
            char text[40];
            for (int digits = 15; digits <= 17; digits++) {
                snprintf(text, sizeof text, "%.*g", digits, c->valuedouble);
                if (strtod(text, NULL) == c->valuedouble)
                    break;
            }
            char *copy = cJSON_malloc(strlen(text) + 1);
            if (!copy)
                return 0;
            memcpy(copy, text, strlen(text) + 1);
            c->type = cJSON_Raw; /* a Raw item prints its valuestring as it is */
            c->valuestring = copy;
        } else if (!exact_numbers(c)) {
            return 0;
        }
    }
    return 1;
}

cJSON *mabd_report_json(mabd *d, const char *experiment, mab_error *err)
{
    mab_report report;
    memset(&report, 0, sizeof report);
    report.struct_size = sizeof report;
    if (mab_report_get(d->engine, experiment, &report, err) != MAB_OK)
        return NULL;
    char *text = NULL;
    int rc = mab_report_json(&report, &text, err);
    mab_report_free(&report);
    if (rc != MAB_OK)
        return NULL;
    cJSON *doc = cJSON_Parse(text);
    mab_report_json_free(text);
    if (!doc || !exact_numbers(doc)) {
        cJSON_Delete(doc);
        mab_error_set(err, MAB_ENOMEM, "out of memory");
        return NULL;
    }
    return doc;
}

/* Per arm the counters and the report's fields (the arms of the core's
   report, taken in one snapshot), as `mab stats --json` prints them. */
cJSON *mabd_stats_json(mabd *d)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *experiments = cJSON_AddObjectToObject(doc, "experiments");
    int ok = experiments != NULL;
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; ok && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        cJSON *report = mabd_report_json(d, info.id, NULL);
        cJSON *arms = report ? cJSON_DetachItemFromObjectCaseSensitive(report, "arms") : NULL;
        cJSON_Delete(report);
        cJSON *exp = cJSON_AddObjectToObject(experiments, info.id);
        ok = arms && exp && cJSON_AddStringToObject(exp, "policy", info.policy) &&
             cJSON_AddItemToObject(exp, "arms", arms);
        if (!ok)
            cJSON_Delete(arms);
    }
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

static int experiment_json(mabd *d, const mab_experiment_info *info, int64_t now, cJSON *list)
{
    mab_arm_stats *arms = experiment_stats(d, info);
    if (!arms)
        return 1;
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
    cJSON *exp = cJSON_CreateObject();
    int ok = cJSON_AddItemToArray(list, exp);
    if (!ok)
        cJSON_Delete(exp);
    cJSON *arm_list = NULL;
    ok = ok && cJSON_AddStringToObject(exp, "id", info->id) &&
         cJSON_AddStringToObject(exp, "policy", info->policy) &&
         add_number(exp, "reward_min", info->reward_min) &&
         add_number(exp, "reward_max", info->reward_max) &&
         add_number(exp, "pulls", (double)total) &&
         add_number(exp, "share_since", use_window ? (double)since : 0) &&
         (arm_list = cJSON_AddArrayToObject(exp, "arms")) != NULL;
    for (size_t a = 0; ok && a < info->n_arms; a++) {
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
        /* The arm's value, for the page to draw an arm valued "green" in
           green (dashboard.js decides what is a colour). */
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        cJSON *value = mab_arm_lookup(d->engine, info->id, s->arm_id, &choice, NULL) == MAB_OK
                           ? cJSON_Parse(choice.value_json)
                           : NULL;
        cJSON *arm = cJSON_CreateObject();
        ok = cJSON_AddItemToArray(arm_list, arm);
        if (!ok)
            cJSON_Delete(arm);
        if (!ok || !cJSON_AddItemToObject(arm, "value", value ? value : cJSON_CreateNull())) {
            cJSON_Delete(value);
            ok = 0;
        }
        ok = ok && cJSON_AddStringToObject(arm, "id", s->arm_id) &&
             add_number(arm, "pulls", (double)s->pulls) &&
             add_number(arm, "rewards", (double)s->rewards) &&
             add_number(arm, "reward_sum", s->reward_sum) && add_number(arm, "rate", rate) &&
             add_number(arm, "lo", lo) && add_number(arm, "hi", hi) &&
             add_number(arm, "share", share);
    }
    /* Leader, P(best), expected loss, the recommendation and the policy's
       parameters: the core's report, as /v1/report/EXP answers it. */
    cJSON *report = ok ? mabd_report_json(d, info->id, NULL) : NULL;
    if (!report || !cJSON_AddItemToObject(exp, "report", report)) {
        cJSON_Delete(report);
        ok = 0;
    }
    free(window);
    free(arms);
    return ok;
}

cJSON *mabd_dashboard_json(mabd *d)
{
    int64_t now = (int64_t)time(NULL);
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = NULL;
    int ok = doc && add_number(doc, "now", (double)now) &&
             add_number(doc, "interval_s", d->settings.series_interval_s) &&
             add_number(doc, "share_window_s", SHARE_WINDOW_S) &&
             cJSON_AddStringToObject(doc, "storage", mab_storage_name(d->engine)) &&
             (list = cJSON_AddArrayToObject(doc, "experiments")) != NULL;
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; ok && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) != MAB_OK)
            continue;
        ok = experiment_json(d, &info, now, list);
    }
    cJSON *points = ok ? series_json(d->series) : NULL;
    if (!points || !cJSON_AddItemToObject(doc, "series", points)) {
        cJSON_Delete(points);
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

void mabd_series_sample(mabd *d)
{
    size_t n = mab_experiment_count(d->engine), total = 0;
    for (size_t i = 0; i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, i, &info, NULL) == MAB_OK)
            total += info.n_arms;
    }
    series_point *points = calloc(total ? total : 1, sizeof *points);
    mab_arm_stats *arms = calloc(total ? total : 1, sizeof *arms);
    size_t k = 0;
    for (size_t i = 0; points && arms && i < n; i++) {
        mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
        size_t got = 0;
        if (k < total)
            arms[k].struct_size = sizeof *arms; /* the stride of this call's array */
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
