/* series.c - see series.h. Each sample is one allocation: its points, then
   the bytes of their ids. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "series.h"

typedef struct sample {
    int64_t t;
    size_t n;
    series_point *points;
} sample;

struct series {
    pthread_mutex_t mu;
    sample *ring;
    size_t keep, head, count;
    series_event events[SERIES_EVENTS_KEEP]; /* strings owned (one allocation each) */
    size_t events_head, events_count;
};

series *series_create(size_t keep)
{
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ring = calloc(keep ? keep : 1, sizeof *s->ring);
    if (!s->ring) {
        free(s);
        return NULL;
    }
    s->keep = keep ? keep : 1;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

void series_free(series *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->keep; i++)
        free(s->ring[i].points);
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

int series_add(series *s, int64_t t, const series_point *points, size_t n)
{
    size_t bytes = n * sizeof *points;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(points[i].experiment) + strlen(points[i].arm) + 2;
    series_point *copy = malloc(bytes ? bytes : 1);
    if (!copy)
        return -1;
    char *text = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        copy[i] = points[i];
        size_t le = strlen(points[i].experiment) + 1, la = strlen(points[i].arm) + 1;
        memcpy(text, points[i].experiment, le);
        copy[i].experiment = text;
        text += le;
        memcpy(text, points[i].arm, la);
        copy[i].arm = text;
        text += la;
    }
    pthread_mutex_lock(&s->mu);
    size_t pos;
    if (s->count == s->keep) {
        pos = s->head;
        free(s->ring[pos].points);
        s->head = (s->head + 1) % s->keep;
    } else {
        pos = (s->head + s->count++) % s->keep;
    }
    s->ring[pos] = (sample){t, n, copy};
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int series_baseline(series *s, int64_t t_from, const char *experiment, const char *arm,
                    uint64_t *pulls, int64_t *t_sample)
{
    int found = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < s->count && !found; k++) {
        const sample *sm = &s->ring[(s->head + k) % s->keep];
        if (sm->t < t_from)
            continue;
        found = 1;
        *pulls = 0;
        *t_sample = sm->t;
        for (size_t i = 0; i < sm->n; i++)
            if (strcmp(sm->points[i].experiment, experiment) == 0 &&
                strcmp(sm->points[i].arm, arm) == 0)
                *pulls = sm->points[i].pulls;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

cJSON *series_json(series *s)
{
    cJSON *list = cJSON_CreateArray();
    int ok = list != NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; ok && k < s->count; k++) {
        const sample *sm = &s->ring[(s->head + k) % s->keep];
        cJSON *point = cJSON_CreateObject();
        ok = cJSON_AddItemToArray(list, point);
        if (!ok)
            cJSON_Delete(point);
        cJSON *by_exp = ok && cJSON_AddNumberToObject(point, "t", (double)sm->t)
                            ? cJSON_AddObjectToObject(point, "e")
                            : NULL;
        ok = by_exp != NULL;
        cJSON *exp = NULL;
        for (size_t i = 0; ok && i < sm->n; i++) {
            const series_point *p = &sm->points[i];
            /* Points of one experiment are adjacent (sampled in config order). */
            if (i == 0 || strcmp(sm->points[i - 1].experiment, p->experiment) != 0)
                exp = cJSON_AddObjectToObject(by_exp, p->experiment);
            cJSON *pair = exp ? cJSON_AddArrayToObject(exp, p->arm) : NULL;
            cJSON *pulls = cJSON_CreateNumber((double)p->pulls);
            cJSON *sum = cJSON_CreateNumber(p->reward_sum);
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
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        cJSON_Delete(list);
        return NULL;
    }
    return list;
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
