/*
 * admin.c - mabd's side of the admin actions (pause, resume, conclude,
 * clear; core: mab_set_state): the JSON answer of an action, and the
 * dashboard's record of the actions seen, whether taken here or by another
 * mabd over the same store and picked up at this engine's refresh.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mabd.h"

/* Record the experiment's latest stored action as an event (once). */
static void note(mabd *d, const char *experiment, const mab_rules_info *r)
{
    if (!r->admin_action || !r->admin_sequence)
        return;
    int serves = strcmp(r->admin_action, "pause") == 0 || strcmp(r->admin_action, "conclude") == 0;
    series_event ev = {r->admin_time_ns / 1000000, experiment, r->admin_action,
                       serves ? r->serve : NULL, r->admin_sequence};
    (void)series_event_add(d->series, &ev);
}

static void poll_at(mabd *d, size_t i)
{
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    mab_rules_info r = MAB_STRUCT_INIT(mab_rules_info);
    if (mab_experiment_at(d->engine, i, &info, NULL) == MAB_OK &&
        mab_rules(d->engine, info.id, &r, NULL) == MAB_OK)
        note(d, info.id, &r);
}

void mabd_admin_poll(mabd *d)
{
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = 0; i < n; i++)
        poll_at(d, i);
}

void mabd_admin_poll_range(mabd *d, size_t first, size_t count)
{
    size_t n = mab_experiment_count(d->engine);
    for (size_t i = first; i < n && i - first < count; i++)
        poll_at(d, i);
}

void mabd_admin_poll_some(mabd *d, size_t max)
{
    /* Where the previous call stopped: a config of a million experiments
       costs each tick `max` lookups, not a million. */
    static _Atomic size_t next;
    size_t n = mab_experiment_count(d->engine);
    for (size_t k = 0; k < max && k < n; k++)
        poll_at(d, atomic_fetch_add(&next, 1) % n);
}

cJSON *mabd_admin_state_json(mabd *d, const char *experiment, mab_error *err)
{
    mab_rules_info r = MAB_STRUCT_INIT(mab_rules_info);
    if (mab_rules(d->engine, experiment, &r, err) != MAB_OK)
        return NULL;
    note(d, experiment, &r);
    cJSON *doc = cJSON_CreateObject();
    int ok = doc && cJSON_AddStringToObject(doc, "experiment", experiment) &&
             cJSON_AddStringToObject(doc, "state", r.state) &&
             (r.serve ? cJSON_AddStringToObject(doc, "serve", r.serve)
                      : cJSON_AddNullToObject(doc, "serve")) &&
             cJSON_AddStringToObject(doc, "source", r.state_source) &&
             (r.admin_action ? cJSON_AddStringToObject(doc, "action", r.admin_action)
                             : cJSON_AddNullToObject(doc, "action")) &&
             cJSON_AddNumberToObject(doc, "sequence", (double)r.admin_sequence) &&
             cJSON_AddNumberToObject(doc, "time", (double)(r.admin_time_ns / 1000000) / 1000.0);
    if (!ok) {
        cJSON_Delete(doc);
        mab_error_set(err, MAB_ENOMEM, "out of memory");
        return NULL;
    }
    return doc;
}
