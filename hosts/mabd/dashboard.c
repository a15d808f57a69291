/*
 * dashboard.c - the numbers behind the admin page, computed here so that
 * the page's script only draws: per arm, pulls, reward rate with a 95%
 * Wilson interval, the share of recent traffic, the arm's value (for its
 * colour); per experiment the core's report (leader, P(best), expected
 * loss, the recommendation, the policy's parameters) and the per-bucket
 * table from the store's time buckets (mab_history); plus the time series,
 * whose past (before this process started) comes from those buckets too.
 * Also the `mab stats --json` document, /v1/report and the sampler.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_exact.h"
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
    /* Numbers exactly as the library wrote them (json_exact.h). */
    cJSON *doc = json_exact_parse(text);
    mab_report_json_free(text);
    if (!doc)
        mab_error_set(err, MAB_ENOMEM, "out of memory");
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
        cJSON *rules = report ? cJSON_DetachItemFromObjectCaseSensitive(report, "rules") : NULL;
        cJSON_Delete(report);
        cJSON *exp = cJSON_AddObjectToObject(experiments, info.id);
        ok = arms && rules && exp && cJSON_AddStringToObject(exp, "policy", info.policy) &&
             cJSON_AddItemToObject(exp, "arms", arms);
        if (!ok)
            cJSON_Delete(arms);
        if (!ok || !cJSON_AddItemToObject(exp, "rules", rules)) {
            cJSON_Delete(rules);
            ok = 0;
        }
    }
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* ---- time buckets (mab_history): what survives a restart --------------- */

/* Buckets of the dashboard's per-bucket table (and charts' past): at most
   a day of hourly buckets. */
#define BUCKETS_SHOWN 48

/* One arm's bucket, as mab_history gives it. */
typedef struct bucket_row {
    size_t arm;
    mab_bucket_stats b;
} bucket_row;

typedef struct bucket_rows {
    bucket_row *rows;
    size_t n, cap;
    int failed;
} bucket_rows;

static int collect_row(void *ctx, size_t arm_index, const char *arm_id,
                       const mab_bucket_stats *bucket)
{
    (void)arm_id;
    bucket_rows *r = ctx;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        bucket_row *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) {
            r->failed = 1;
            return 1;
        }
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->n++] = (bucket_row){arm_index, *bucket};
    return 0;
}

/* An experiment's buckets since `since`, oldest first; 0 when they cannot
   be read (the dashboard then shows none). */
static int read_buckets(mabd *d, const char *experiment, int64_t since, bucket_rows *out)
{
    memset(out, 0, sizeof *out);
    int rc = mab_history(d->engine, experiment, since, collect_row, out, NULL);
    if (rc != MAB_OK || out->failed) {
        free(out->rows);
        memset(out, 0, sizeof *out);
        return 0;
    }
    return 1;
}

/*
 * "buckets": [{"start": S, "pulls": [..], "rewards": [..], "rate": [..]}]
 * per bucket with events (arms in config order; rate = reward_sum / pulls,
 * null without pulls), the last BUCKETS_SHOWN of them.
 */
static int buckets_json(mabd *d, const mab_experiment_info *info, int64_t now, cJSON *exp)
{
    int64_t width = mab_bucket_seconds(d->engine);
    bucket_rows r;
    read_buckets(d, info->id, now - (BUCKETS_SHOWN - 1) * width - now % width, &r);
    cJSON *list = cJSON_AddArrayToObject(exp, "buckets");
    int ok = list != NULL;
    for (size_t k = 0; ok && k < r.n;) {
        int64_t start = r.rows[k].b.start;
        cJSON *bucket = cJSON_CreateObject();
        ok = cJSON_AddItemToArray(list, bucket);
        if (!ok)
            cJSON_Delete(bucket);
        cJSON *pulls = ok && add_number(bucket, "start", (double)start)
                           ? cJSON_AddArrayToObject(bucket, "pulls")
                           : NULL;
        cJSON *rewards = pulls ? cJSON_AddArrayToObject(bucket, "rewards") : NULL;
        cJSON *rate = rewards ? cJSON_AddArrayToObject(bucket, "rate") : NULL;
        ok = rate != NULL;
        for (size_t a = 0; ok && a < info->n_arms; a++) {
            mab_bucket_stats b = {start, 0, 0, 0.0, 0.0};
            if (k < r.n && r.rows[k].b.start == start && r.rows[k].arm == a)
                b = r.rows[k++].b;
            cJSON *p = cJSON_CreateNumber((double)b.pulls);
            cJSON *w = cJSON_CreateNumber((double)b.rewards);
            cJSON *m = b.pulls ? cJSON_CreateNumber(b.reward_sum / (double)b.pulls)
                               : cJSON_CreateNull();
            ok = p && w && m;
            if (ok) {
                cJSON_AddItemToArray(pulls, p);
                cJSON_AddItemToArray(rewards, w);
                cJSON_AddItemToArray(rate, m);
            } else {
                cJSON_Delete(p);
                cJSON_Delete(w);
                cJSON_Delete(m);
            }
        }
        while (ok && k < r.n && r.rows[k].b.start == start)
            k++; /* arms past n_arms: cannot happen, never loop on them */
    }
    free(r.rows);
    return ok;
}

/* ---- one experiment's time series: its stored past and this process's
   samples ----------------------------------------------------------------

   The series (series.c) holds what this process sampled. The past, before
   its oldest sample, comes from the store's time buckets, read when the
   experiment is shown (a dashboard page), never at start-up: one point at
   the end of each bucket, each arm's cumulative counters then = its totals
   now minus the buckets after (past points are a bucket apart, live ones
   follow every interval_s). Nothing of it is kept: the cost is that of the
   page, whatever the number of experiments. */

#define ABSENT UINT64_MAX /* a point's arm that its sample does not hold */

typedef struct track {
    mab_experiment_info info;
    mab_arm_stats *arms; /* totals now, config order (NULL: no stats) */
    size_t n, cap;       /* points */
    int64_t *t;
    series_value *v; /* n * info.n_arms; pulls ABSENT: not in that sample */
    int failed;
} track;

static series_value *track_push(track *tr, int64_t t)
{
    size_t k = tr->info.n_arms ? tr->info.n_arms : 1;
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? 2 * tr->cap : 16;
        int64_t *ts = realloc(tr->t, cap * sizeof *ts);
        if (ts)
            tr->t = ts;
        series_value *vs = ts ? realloc(tr->v, cap * k * sizeof *vs) : NULL;
        if (!vs) {
            tr->failed = 1;
            return NULL;
        }
        tr->v = vs;
        tr->cap = cap;
    }
    tr->t[tr->n] = t;
    series_value *row = &tr->v[tr->n++ * k];
    for (size_t a = 0; a < k; a++)
        row[a] = (series_value){ABSENT, 0.0};
    return row;
}

/* series_visit: a sample's points of one experiment of the page. */
static void visit_sample(void *ctx, size_t which, int64_t t, const char *const *ids,
                         const series_value *values, size_t k)
{
    track *tr = &((track *)ctx)[which];
    if (!tr->arms)
        return;
    series_value *row = track_push(tr, t);
    for (size_t j = 0; row && j < k; j++)
        for (size_t a = 0; a < tr->info.n_arms; a++)
            if (strcmp(tr->arms[a].arm_id, ids[2 * j + 1]) == 0) {
                row[a] = values[j];
                break;
            }
}

static int newest_first(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* Put the stored past (bucket ends since `since`, before `before`: the
   oldest sample) in front of the track's points. */
static void track_past(mabd *d, track *tr, int64_t since, int64_t before, int64_t now)
{
    size_t k = tr->info.n_arms;
    bucket_rows rows;
    if (!tr->arms || !k || !read_buckets(d, tr->info.id, since, &rows) || !rows.n)
        return;
    int64_t width = mab_bucket_seconds(d->engine);
    int64_t *starts = malloc(rows.n * sizeof *starts);
    series_value *cumulative = calloc(k, sizeof *cumulative);
    track past = {.info = tr->info, .arms = tr->arms};
    size_t distinct = 0;
    if (starts && cumulative) {
        for (size_t r = 0; r < rows.n; r++)
            starts[r] = rows.rows[r].b.start;
        qsort(starts, rows.n, sizeof *starts, newest_first);
        for (size_t r = 0; r < rows.n; r++)
            if (distinct == 0 || starts[distinct - 1] != starts[r])
                starts[distinct++] = starts[r];
        for (size_t a = 0; a < k; a++)
            cumulative[a] = (series_value){tr->arms[a].pulls, tr->arms[a].reward_sum};
    }
    /* Newest first: the point at the end of bucket starts[s] is what the
       buckets after it leave; then take that bucket off. Rows are oldest
       first, so walk them backwards alongside. */
    size_t r = rows.n;
    for (size_t s = 0; starts && cumulative && s < distinct; s++) {
        int64_t t = starts[s] + width < now ? starts[s] + width : now;
        if (t < before) {
            series_value *row = track_push(&past, t);
            if (!row)
                break;
            memcpy(row, cumulative, k * sizeof *row);
        }
        while (r > 0 && rows.rows[r - 1].b.start == starts[s]) {
            const bucket_row *b = &rows.rows[--r];
            if (b->arm >= k)
                continue;
            series_value *c = &cumulative[b->arm];
            c->pulls -= b->b.pulls <= c->pulls ? b->b.pulls : c->pulls;
            c->reward_sum -= b->b.reward_sum;
        }
    }
    /* past holds newest first: reverse it in front of the live points. */
    if (!past.failed && past.n) {
        track all = {.info = tr->info, .arms = tr->arms};
        for (size_t p = past.n; p-- > 0 && !all.failed;) {
            series_value *row = track_push(&all, past.t[p]);
            if (row)
                memcpy(row, &past.v[p * k], k * sizeof *row);
        }
        for (size_t p = 0; p < tr->n && !all.failed; p++) {
            series_value *row = track_push(&all, tr->t[p]);
            if (row)
                memcpy(row, &tr->v[p * k], k * sizeof *row);
        }
        if (!all.failed) {
            free(tr->t);
            free(tr->v);
            tr->t = all.t;
            tr->v = all.v;
            tr->n = all.n;
            tr->cap = all.cap;
        } else {
            free(all.t);
            free(all.v);
        }
    }
    free(past.t);
    free(past.v);
    free(starts);
    free(cumulative);
    free(rows.rows);
}

/* Pulls of arm a in the track's oldest point at or after t_from: 1 and
   *pulls (0 when that sample lacks the arm), *t_sample; 0 without one. */
static int track_baseline(const track *tr, int64_t t_from, size_t a, uint64_t *pulls,
                          int64_t *t_sample)
{
    for (size_t p = 0; p < tr->n; p++)
        if (tr->t[p] >= t_from) {
            uint64_t v = tr->v[p * tr->info.n_arms + a].pulls;
            *pulls = v == ABSENT ? 0 : v;
            *t_sample = tr->t[p];
            return 1;
        }
    return 0;
}

/* A point of the page's series: track `which`, its point p. */
typedef struct page_point {
    int64_t t;
    size_t which, p;
} page_point;

static int by_time(const void *a, const void *b)
{
    const page_point *x = a, *y = b;
    if (x->t != y->t)
        return (x->t > y->t) - (x->t < y->t);
    return (x->which > y->which) - (x->which < y->which);
}

/* The page's series, oldest first, in the form the page reads:
   [{"t":T,"e":{EXP:{ARM:[PULLS,REWARD_SUM],...},...}},...]; an experiment
   is in a sample's "e" only when the sample holds it. NULL: out of memory. */
static cJSON *page_series_json(const track *tracks, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += tracks[i].n;
    page_point *pts = calloc(total ? total : 1, sizeof *pts);
    cJSON *list = pts ? cJSON_CreateArray() : NULL;
    int ok = list != NULL;
    size_t m = 0;
    for (size_t i = 0; ok && i < n; i++)
        for (size_t p = 0; p < tracks[i].n; p++)
            pts[m++] = (page_point){tracks[i].t[p], i, p};
    if (ok && m)
        qsort(pts, m, sizeof *pts, by_time);
    cJSON *by_exp = NULL;
    for (size_t q = 0; ok && q < m; q++) {
        const track *tr = &tracks[pts[q].which];
        if (q == 0 || pts[q].t != pts[q - 1].t) {
            cJSON *point = cJSON_CreateObject();
            ok = cJSON_AddItemToArray(list, point);
            if (!ok)
                cJSON_Delete(point);
            by_exp = ok && add_number(point, "t", (double)pts[q].t)
                         ? cJSON_AddObjectToObject(point, "e")
                         : NULL;
            ok = by_exp != NULL;
        }
        cJSON *exp = ok ? cJSON_AddObjectToObject(by_exp, tr->info.id) : NULL;
        ok = exp != NULL;
        const series_value *row = &tr->v[pts[q].p * tr->info.n_arms];
        for (size_t a = 0; ok && a < tr->info.n_arms; a++) {
            if (row[a].pulls == ABSENT)
                continue;
            cJSON *pair = cJSON_AddArrayToObject(exp, tr->arms[a].arm_id);
            cJSON *pulls = cJSON_CreateNumber((double)row[a].pulls);
            cJSON *sum = cJSON_CreateNumber(row[a].reward_sum);
            ok = pair && pulls && sum;
            if (ok) {
                cJSON_AddItemToArray(pair, pulls);
                cJSON_AddItemToArray(pair, sum);
            } else {
                cJSON_Delete(pulls);
                cJSON_Delete(sum);
            }
        }
    }
    free(pts);
    if (!ok) {
        cJSON_Delete(list);
        return NULL;
    }
    return list;
}

static int experiment_json(mabd *d, const track *tr, int64_t now, cJSON *list)
{
    const mab_experiment_info *info = &tr->info;
    const mab_arm_stats *arms = tr->arms;
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
        if (have_window && track_baseline(tr, now - SHARE_WINDOW_S, a, &base, &t_sample)) {
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
    ok = ok && buckets_json(d, info, now, exp);
    free(window);
    return ok;
}

/* The series' memory beside its cap (docs/hosts.md, "series"). */
static int series_usage_json(mabd *d, cJSON *doc)
{
    return add_number(doc, "series_bytes", (double)series_bytes(d->series)) &&
           add_number(doc, "series_max_bytes", (double)d->settings.series_max_bytes) &&
           add_number(doc, "series_refused", (double)series_refused(d->series));
}

cJSON *mabd_dashboard_json(mabd *d, size_t offset, size_t limit)
{
    int64_t now = (int64_t)time(NULL);
    size_t n = mab_experiment_count(d->engine);
    size_t first = offset < n ? offset : n;
    size_t count = n - first < limit ? n - first : limit;
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = NULL;
    int ok = doc && add_number(doc, "now", (double)now) &&
             add_number(doc, "interval_s", d->settings.series_interval_s) &&
             add_number(doc, "share_window_s", SHARE_WINDOW_S) &&
             add_number(doc, "bucket_seconds", (double)mab_bucket_seconds(d->engine)) &&
             cJSON_AddStringToObject(doc, "storage", mab_storage_name(d->engine)) &&
             add_number(doc, "total", (double)n) && add_number(doc, "offset", (double)offset) &&
             add_number(doc, "limit", (double)limit) &&
             (list = cJSON_AddArrayToObject(doc, "experiments")) != NULL;
    /* The page's experiments, their totals and their series. */
    track *tracks = calloc(count ? count : 1, sizeof *tracks);
    const char **ids = calloc(count ? count : 1, sizeof *ids);
    ok = ok && tracks && ids;
    for (size_t k = 0; ok && k < count; k++) {
        tracks[k].info = (mab_experiment_info)MAB_STRUCT_INIT(mab_experiment_info);
        if (mab_experiment_at(d->engine, first + k, &tracks[k].info, NULL) != MAB_OK) {
            ids[k] = "";
            continue;
        }
        ids[k] = tracks[k].info.id;
        tracks[k].arms = experiment_stats(d, &tracks[k].info);
    }
    int64_t oldest = INT64_MAX;
    if (ok && d->settings.series_max_bytes > 0) {
        ok = series_visit(d->series, ids, count, visit_sample, tracks, &oldest) == 0;
        int64_t since = now - (int64_t)d->settings.series_keep * d->settings.series_interval_s;
        for (size_t k = 0; ok && k < count; k++)
            track_past(d, &tracks[k], since, oldest, now);
    }
    for (size_t k = 0; ok && k < count; k++)
        ok = !tracks[k].failed && experiment_json(d, &tracks[k], now, list);
    cJSON *points = ok ? page_series_json(tracks, count) : NULL;
    for (size_t k = 0; tracks && k < count; k++) {
        free(tracks[k].arms);
        free(tracks[k].t);
        free(tracks[k].v);
    }
    free(tracks);
    free(ids);
    if (!points || !cJSON_AddItemToObject(doc, "series", points) || !series_usage_json(d, doc)) {
        cJSON_Delete(points);
        cJSON_Delete(doc);
        return NULL;
    }
    mabd_admin_poll_range(d, first, count); /* admin actions (admin.c), also those read at a refresh */
    cJSON *events = series_events_json(d->series);
    if (!events || !cJSON_AddItemToObject(doc, "events", events)) {
        cJSON_Delete(events);
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

void mabd_series_sample(mabd *d)
{
    if (d->settings.series_max_bytes == 0)
        return; /* series.max_bytes 0: no series */
    mabd_admin_poll(d);
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
