/* series.c - see series.h.
 *
 * Bytes. A sample holds its time and a pointer to a layout, plus one
 * (pulls, reward_sum) pair per arm: 16 bytes an arm. The ids live in the
 * layout, shared by consecutive samples while the config (its experiments
 * and arms, in order) stays the same, so they are paid once rather than
 * once a sample. Counted: the ring's slots (grown by doubling up to
 * `keep`), each layout's one allocation and each sample's values (the
 * series' own small struct is not: max_bytes 0 holds 0 bytes). These are the sizes asked of malloc; malloc's own headers are
 * not counted (about 16 bytes an allocation, two allocations a sample).
 *
 * The cap. The series is one global ring: a sample covers every
 * experiment, so dropping the oldest sample drops the oldest data of every
 * experiment at once, oldest first across all of them. Adding a sample
 * drops from the head until the new one fits; each sample is freed once,
 * so the work per sample beyond copying its own values is O(1) amortized.
 * A sample larger than the whole cap is refused (counted in
 * series_refused) rather than emptying the series for nothing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "series.h"

typedef struct layout {
    size_t refs, n, bytes;
    const char **ids; /* 2n: experiment, arm of each point; the text follows */
} layout;

typedef series_value value;

typedef struct sample {
    int64_t t;
    layout *ids;
    value *values;
} sample;

struct series {
    pthread_mutex_t mu;
    sample *ring;
    size_t keep, cap, head, count;
    size_t max_bytes, bytes;
    uint64_t refused;
    series_event events[SERIES_EVENTS_KEEP]; /* strings owned (one allocation each) */
    size_t events_head, events_count;
};

series *series_create(size_t keep, size_t max_bytes)
{
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->keep = keep ? keep : 1;
    s->max_bytes = max_bytes;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void layout_release(series *s, layout *l)
{
    if (l && --l->refs == 0) {
        s->bytes -= l->bytes;
        free(l);
    }
}

/* Drop the oldest sample (mu held, count > 0). */
static void drop_oldest(series *s)
{
    sample *sm = &s->ring[s->head];
    s->bytes -= sm->ids->n * sizeof *sm->values;
    free(sm->values);
    layout_release(s, sm->ids);
    *sm = (sample){0, NULL, NULL};
    s->head = (s->head + 1) % s->cap;
    s->count--;
}

void series_free(series *s)
{
    if (!s)
        return;
    while (s->count)
        drop_oldest(s);
    free(s->ring);
    for (size_t i = 0; i < s->events_count; i++)
        free((char *)s->events[(s->events_head + i) % SERIES_EVENTS_KEEP].experiment);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

size_t series_count(series *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t series_bytes(series *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->bytes;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t series_refused(series *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->refused;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* The newest sample's layout when the points have the same ids, in order
   (mu held); NULL otherwise. */
static layout *same_layout(series *s, const series_point *points, size_t n)
{
    if (!s->count)
        return NULL;
    layout *l = s->ring[(s->head + s->count - 1) % s->cap].ids;
    if (l->n != n)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(l->ids[2 * i], points[i].experiment) != 0 ||
            strcmp(l->ids[2 * i + 1], points[i].arm) != 0)
            return NULL;
    return l;
}

static layout *layout_create(const series_point *points, size_t n)
{
    size_t bytes = sizeof(layout) + 2 * n * sizeof(const char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(points[i].experiment) + strlen(points[i].arm) + 2;
    layout *l = malloc(bytes);
    if (!l)
        return NULL;
    *l = (layout){1, n, bytes, (const char **)(l + 1)};
    char *text = (char *)(l->ids + 2 * n);
    for (size_t i = 0; i < n; i++) {
        size_t le = strlen(points[i].experiment) + 1, la = strlen(points[i].arm) + 1;
        memcpy(text, points[i].experiment, le);
        l->ids[2 * i] = text;
        text += le;
        memcpy(text, points[i].arm, la);
        l->ids[2 * i + 1] = text;
        text += la;
    }
    return l;
}

/* The bytes that growing the ring for one more sample adds (mu held): 0
   when it has a free slot or is at `keep` slots. */
static size_t growth_bytes(const series *s)
{
    if (s->count < s->cap || s->cap == s->keep)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 16;
    return ((cap < s->keep ? cap : s->keep) - s->cap) * sizeof(sample);
}

static int grow(series *s)
{
    size_t cap = s->cap ? 2 * s->cap : 16;
    cap = cap < s->keep ? cap : s->keep;
    sample *ring = calloc(cap, sizeof *ring);
    if (!ring)
        return -1;
    for (size_t k = 0; k < s->count; k++)
        ring[k] = s->ring[(s->head + k) % s->cap];
    free(s->ring);
    s->bytes += (cap - s->cap) * sizeof *ring;
    s->ring = ring;
    s->cap = cap;
    s->head = 0;
    return 0;
}

/* Whether a sample of layout l and `need` value bytes fits in the series
   emptied of every other sample (mu held). */
static int fits_alone(const series *s, const layout *l, size_t need)
{
    size_t slots = s->cap ? s->cap : 16;
    return slots * sizeof(sample) + l->bytes + need <= s->max_bytes;
}

/* Drop oldest samples until `need` more bytes fit (mu held; fits_alone()
   holds, so the loop ends). */
static void make_room(series *s, size_t need)
{
    while (s->count &&
           (s->count == s->keep || s->bytes + need + growth_bytes(s) > s->max_bytes))
        drop_oldest(s);
}

int series_add(series *s, int64_t t, const series_point *points, size_t n)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    layout *l = same_layout(s, points, n);
    if (l) {
        l->refs++; /* held here, so that dropping old samples keeps it */
    } else if ((l = layout_create(points, n))) {
        s->bytes += l->bytes;
    } else {
        rc = -1;
    }
    value *values = NULL;
    size_t need = n * sizeof *values;
    if (rc == 0 && !fits_alone(s, l, need)) {
        s->refused++;
        rc = 1;
    }
    if (rc == 0)
        make_room(s, need);
    if (rc == 0 && growth_bytes(s) && grow(s) != 0)
        rc = -1;
    if (rc == 0 && !(values = malloc(need ? need : 1)))
        rc = -1;
    if (rc != 0) {
        if (l)
            layout_release(s, l);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        values[i] = (value){points[i].pulls, points[i].reward_sum};
    s->ring[(s->head + s->count++) % s->cap] = (sample){t, l, values};
    s->bytes += need;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void series_set_max_bytes(series *s, size_t max_bytes)
{
    pthread_mutex_lock(&s->mu);
    s->max_bytes = max_bytes;
    while (s->count && s->bytes > max_bytes)
        drop_oldest(s);
    if (!s->count && s->bytes > max_bytes) { /* the ring's slots alone */
        s->bytes -= s->cap * sizeof *s->ring;
        free(s->ring);
        s->ring = NULL;
        s->cap = s->head = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* The experiments of a page, sorted by id for bsearch. */
typedef struct wanted {
    const char *id;
    size_t which;
} wanted;

static int wanted_cmp(const void *a, const void *b)
{
    return strcmp(((const wanted *)a)->id, ((const wanted *)b)->id);
}

int series_visit(series *s, const char *const *experiments, size_t n, series_visit_fn fn,
                 void *ctx, int64_t *oldest)
{
    wanted *want = calloc(n ? n : 1, sizeof *want);
    size_t *first = calloc(n ? n : 1, sizeof *first), *count = calloc(n ? n : 1, sizeof *count);
    int rc = want && first && count ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        want[i] = (wanted){experiments[i], i};
    if (rc == 0 && n)
        qsort(want, n, sizeof *want, wanted_cmp);
    pthread_mutex_lock(&s->mu);
    *oldest = s->count ? s->ring[s->head].t : INT64_MAX;
    const layout *mapped = NULL;
    for (size_t k = 0; rc == 0 && n && k < s->count; k++) {
        const sample *sm = &s->ring[(s->head + k) % s->cap];
        if (sm->ids != mapped) {
            /* Where each wanted experiment's points are in this layout
               (adjacent: sampled in config order). */
            memset(count, 0, n * sizeof *count);
            const layout *l = sm->ids;
            for (size_t i = 0; i < l->n;) {
                size_t j = i + 1;
                while (j < l->n && strcmp(l->ids[2 * j], l->ids[2 * i]) == 0)
                    j++;
                wanted key = {l->ids[2 * i], 0};
                const wanted *w = bsearch(&key, want, n, sizeof *want, wanted_cmp);
                if (w) {
                    first[w->which] = i;
                    count[w->which] = j - i;
                }
                i = j;
            }
            mapped = l;
        }
        for (size_t w = 0; w < n; w++)
            if (count[w])
                fn(ctx, w, sm->t, sm->ids->ids + 2 * first[w], sm->values + first[w], count[w]);
    }
    pthread_mutex_unlock(&s->mu);
    free(want);
    free(first);
    free(count);
    return rc;
}

int series_event_add(series *s, const series_event *ev)
{
    size_t le = strlen(ev->experiment) + 1, la = strlen(ev->action) + 1;
    size_t lr = ev->arm ? strlen(ev->arm) + 1 : 0;
    int added = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->events_count; i++) {
        const series_event *held = &s->events[(s->events_head + i) % SERIES_EVENTS_KEEP];
        if (held->sequence == ev->sequence && held->t_ms == ev->t_ms &&
            strcmp(held->experiment, ev->experiment) == 0)
            goto out;
    }
    /* One allocation: experiment, action, arm; freed through .experiment. */
    char *text = malloc(le + la + lr);
    if (!text) {
        added = -1;
        goto out;
    }
    series_event copy = *ev;
    memcpy(text, ev->experiment, le);
    copy.experiment = text;
    memcpy(text + le, ev->action, la);
    copy.action = text + le;
    if (ev->arm) {
        memcpy(text + le + la, ev->arm, lr);
        copy.arm = text + le + la;
    }
    size_t pos;
    if (s->events_count == SERIES_EVENTS_KEEP) {
        pos = s->events_head;
        free((char *)s->events[pos].experiment);
        s->events_head = (s->events_head + 1) % SERIES_EVENTS_KEEP;
    } else {
        pos = (s->events_head + s->events_count++) % SERIES_EVENTS_KEEP;
    }
    s->events[pos] = copy;
    added = 1;
out:
    pthread_mutex_unlock(&s->mu);
    return added;
}

cJSON *series_events_json(series *s)
{
    cJSON *list = cJSON_CreateArray();
    int ok = list != NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; ok && i < s->events_count; i++) {
        const series_event *ev = &s->events[(s->events_head + i) % SERIES_EVENTS_KEEP];
        cJSON *item = cJSON_CreateObject();
        if (!item || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            ok = 0;
            break;
        }
        ok = cJSON_AddNumberToObject(item, "t", (double)ev->t_ms / 1000.0) &&
             cJSON_AddStringToObject(item, "experiment", ev->experiment) &&
             cJSON_AddStringToObject(item, "action", ev->action) &&
             (ev->arm ? cJSON_AddStringToObject(item, "arm", ev->arm)
                      : cJSON_AddNullToObject(item, "arm")) &&
             cJSON_AddNumberToObject(item, "sequence", (double)ev->sequence);
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        cJSON_Delete(list);
        return NULL;
    }
    return list;
}
