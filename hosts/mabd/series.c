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
