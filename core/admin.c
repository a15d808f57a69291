/*
 * admin.c - an experiment's admin state: pause, resume, conclude or clear,
 * set at run time (mab_set_state, mabd's admin routes, `mab pause`) and kept
 * in storage, so that every engine over the store (other workers, other
 * machines) follows at its next refresh and a restart keeps it. While set it
 * overrides the config's "state" and "serve" (docs/operating.md).
 *
 * The stored form is a register: one record of the pseudo experiment
 * "EXP@admin" (ids in the config are plain, so it clashes with none),
 * written whole with storage's replace(), which removes every record of
 * "EXP@admin" and adds the new one in one step, touching no other
 * experiment. Last writer wins. Nothing else writes there (no choice or
 * reward counts in it). The record:
 *   arm            the served arm's id, or "@none" (running, cleared, or
 *                  paused on the leader)
 *   pulls          the action's sequence number (1, 2, ...)
 *   rewards        the action: 0 running, 1 paused, 2 concluded, 3 cleared
 *                  (follow the config again)
 *   reward_sum     the action's time, unix milliseconds (exact in a double)
 *   reward_sum_sq  the sequence number squared: a store whose replace is
 *                  not one atomic step (MongoDB without transactions) could
 *                  add two concurrent actions into one record; their sums
 *                  then fail this check and the record is ignored.
 * Several valid records (the same race, on two arms) resolve to the highest
 * sequence, then the latest time, then the first arm in config order, so
 * every engine reading the store agrees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define ADMIN_SUFFIX "@admin"
#define ADMIN_NONE_ARM "@none"
#define ADMIN_ID_MAX (MAB__ID_MAX - (int)(sizeof ADMIN_SUFFIX - 1))
/* Sequence numbers whose square a double holds exactly. */
#define ADMIN_SEQUENCE_MAX (UINT64_C(1) << 26)

enum { ACTION_RUNNING = 0, ACTION_PAUSED, ACTION_CONCLUDED, ACTION_CLEARED };

static const char *const action_states[] = {"running", "paused", "concluded", "config"};
static const char *const action_names[] = {"resume", "pause", "conclude", "clear"};

static uint64_t pack(int action, long serve)
{
    if (action == ACTION_CLEARED)
        return 0;
    return (uint64_t)(action + 1) | (uint64_t)(serve + 1) << 8;
}

const mab__rules *mab__rules_effective(const mab__experiment *x, mab__rules *scratch)
{
    uint64_t word = atomic_load_explicit(&x->part->admin.word, memory_order_acquire);
    if (!word)
        return &x->part->rules;
    *scratch = x->part->rules;
    scratch->state = (int)(word & 0xff) - 1;
    scratch->serve = (long)(word >> 8) - 1;
    scratch->active = 1;
    return scratch;
}

/* The stored admin record of one experiment, decoded. */
typedef struct admin_record {
    int found;
    int action;
    long serve;         /* arm index, -1: none */
    uint64_t sequence;
    int64_t time_ns;
} admin_record;

static int admin_id(const mab__experiment *x, char *out, size_t cap)
{
    return strlen(x->id) <= ADMIN_ID_MAX &&
           (size_t)snprintf(out, cap, "%s" ADMIN_SUFFIX, x->id) < cap;
}

/* Decode the totals of "EXP@admin"'s arms (x's arms, then "@none"). */
static void decode_record(const mab__experiment *x, const mab_totals *totals,
                          admin_record *out)
{
    memset(out, 0, sizeof *out);
    out->serve = -1;
    for (size_t i = 0; i <= x->n_arms; i++) {
        const mab_totals *t = &totals[i];
        int none = i == x->n_arms;
        double sq = (double)t->pulls * (double)t->pulls;
        if (t->pulls == 0 || t->pulls > ADMIN_SEQUENCE_MAX || t->reward_sum_sq != sq ||
            t->rewards > ACTION_CLEARED || !(t->reward_sum >= 0 && t->reward_sum < 9.2e12))
            continue; /* empty, or not a record mab_set_state wrote */
        int action = (int)t->rewards;
        /* Concluded names an arm; running and cleared name none. */
        if ((action == ACTION_CONCLUDED && none) ||
            ((action == ACTION_RUNNING || action == ACTION_CLEARED) && !none))
            continue;
        int64_t time_ns = (int64_t)t->reward_sum * 1000000;
        if (out->found && (t->pulls < out->sequence ||
                           (t->pulls == out->sequence && time_ns <= out->time_ns)))
            continue;
        out->found = 1;
        out->action = action;
        out->serve = none ? -1 : (long)i;
        out->sequence = t->pulls;
        out->time_ns = time_ns;
    }
}

/* Read and decode "EXP@admin": ids[0..n_arms) are the arms, then "@none". */
static int read_record(mab_engine *e, const mab__experiment *x, const char **ids,
                       mab_totals *totals, admin_record *out, mab_error *err)
{
    memset(out, 0, sizeof *out);
    out->serve = -1;
    char id[MAB__ID_MAX + 1];
    if (!admin_id(x, id, sizeof id))
        return MAB_OK; /* too long to have been stored */
    for (size_t i = 0; i < x->n_arms; i++)
        ids[i] = mab__arm_id(x, i);
    ids[x->n_arms] = ADMIN_NONE_ARM;
    int rc = e->storage->load(e->storage_state, id, ids, x->n_arms + 1, totals, err);
    if (rc == MAB_OK)
        decode_record(x, totals, out);
    return rc;
}

/* Make a decoded record this engine's state (caller holds flush_mu). */
static void adopt(mab__experiment *x, const admin_record *r)
{
    atomic_store_explicit(&x->part->admin.sequence, r->found ? r->sequence : 0, memory_order_relaxed);
    atomic_store_explicit(&x->part->admin.time_ns, r->found ? r->time_ns : 0, memory_order_relaxed);
    atomic_store_explicit(&x->part->admin.action, r->found ? r->action + 1 : 0, memory_order_relaxed);
    atomic_store_explicit(&x->part->admin.word, r->found ? pack(r->action, r->serve) : 0,
                          memory_order_release);
}

static int can_store(const mab_engine *e)
{
    return e->storage && mab__storage_has(e->storage, replace) && e->storage->replace;
}

int mab__admin_load(mab_engine *e, mab_error *err)
{
    if (!can_store(e))
        return MAB_OK;
    const char **ids = calloc(e->max_arms + 1, sizeof *ids);
    mab_totals *totals = calloc(e->max_arms + 1, sizeof *totals);
    int rc = ids && totals ? MAB_OK : mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_configured; i++) {
        mab__experiment *x = &e->experiments[i];
        admin_record r;
        rc = read_record(e, x, ids, totals, &r, err);
        if (rc == MAB_OK)
            adopt(x, &r);
    }
    free(ids);
    free(totals);
    return rc;
}

/* ---- the admin records of a full read through scan() (engine.c) ------ */

int mab__admin_scan_visit(mab_engine *e, mab__admin_scan *s, const char *experiment,
                          const char *arm, const mab_totals *totals)
{
    size_t len = strlen(experiment), suffix = sizeof ADMIN_SUFFIX - 1;
    if (len <= suffix || len - suffix > ADMIN_ID_MAX ||
        strcmp(experiment + len - suffix, ADMIN_SUFFIX) != 0)
        return 0;
    char id[MAB__ID_MAX + 1];
    memcpy(id, experiment, len - suffix);
    id[len - suffix] = '\0';
    long x = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments, id);
    if (x < 0 || (size_t)x >= e->n_configured)
        return 1; /* an experiment no longer in the config: not ours */
    const mab__experiment *xp = &e->experiments[x];
    long a = strcmp(arm, ADMIN_NONE_ARM) == 0
                 ? (long)xp->n_arms
                 : mab__id_index_find(&xp->arm_index, xp->arm_ids, sizeof *xp->arm_ids, arm);
    if (a < 0)
        return 1; /* an arm no longer in the config cannot be served */
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        void *grown = realloc(s->items, cap * sizeof *s->items);
        if (!grown)
            return MAB_ENOMEM;
        s->items = grown;
        s->cap = cap;
    }
    s->items[s->n++] = (struct mab__admin_scanned){(size_t)x, (size_t)a, *totals};
    return 1;
}

/* Order of scanned records: by experiment (a scan visits each record once). */
static int by_experiment(const void *a, const void *b)
{
    const struct mab__admin_scanned *p = a, *q = b;
    return p->experiment < q->experiment ? -1 : p->experiment > q->experiment;
}

int mab__admin_adopt_scanned(mab_engine *e, mab__admin_scan *s, mab_error *err)
{
    int rc = MAB_OK;
    if (can_store(e)) {
        mab_totals *totals = calloc(e->max_arms + 1, sizeof *totals);
        if (!totals)
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
        if (s->n > 1)
            qsort(s->items, s->n, sizeof *s->items, by_experiment);
        size_t k = 0;
        for (size_t i = 0; rc == MAB_OK && i < e->n_configured; i++) {
            mab__experiment *x = &e->experiments[i];
            admin_record r = {0, 0, -1, 0, 0};
            if (k < s->n && s->items[k].experiment == i) {
                memset(totals, 0, (x->n_arms + 1) * sizeof *totals);
                for (; k < s->n && s->items[k].experiment == i; k++)
                    totals[s->items[k].arm] = s->items[k].totals;
                decode_record(x, totals, &r);
            }
            adopt(x, &r); /* none stored: the config's state, as a load of none */
        }
        free(totals);
    }
    free(s->items);
    s->items = NULL;
    s->n = s->cap = 0;
    return rc;
}

int mab__admin_load_one(mab_engine *e, mab__experiment *x, mab_error *err)
{
    if (!can_store(e))
        return MAB_OK;
    const char **ids = calloc(x->n_arms + 1, sizeof *ids);
    mab_totals *totals = calloc(x->n_arms + 1, sizeof *totals);
    admin_record r;
    int rc = ids && totals ? read_record(e, x, ids, totals, &r, err)
                           : mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (rc == MAB_OK)
        adopt(x, &r);
    free(ids);
    free(totals);
    return rc;
}

static int parse_action(const char *state, int *action)
{
    for (int i = 0; i <= ACTION_CLEARED; i++)
        if (state && strcmp(state, action_states[i]) == 0) {
            *action = i;
            return 1;
        }
    return 0;
}

static int validate(mab_engine *e, const mab__experiment *x, int action, const char *arm,
                    long *serve, mab_error *err)
{
    *serve = -1;
    if (x->is_ledger)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_set_state: \"%s\" is a holdout ledger, not an experiment of "
                             "the config",
                             x->id);
    if (strlen(x->id) > ADMIN_ID_MAX)
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: an admin state needs an experiment id of at most "
                             "%d characters (it is stored as \"%s" ADMIN_SUFFIX "\")",
                             x->id, ADMIN_ID_MAX, x->id);
    if (action == ACTION_CONCLUDED && !arm)
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: concluding needs the winning arm", x->id);
    if ((action == ACTION_RUNNING || action == ACTION_CLEARED) && arm)
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: state \"%s\" serves no fixed arm (got \"%s\")",
                             x->id, action_states[action], arm);
    if (arm && (*serve = mab__find_arm(e, x, arm, NULL)) < 0)
        return mab_error_set(err, MAB_EINVAL, "%s: experiments.%s has no arm \"%s\"",
                             e->config_path, x->id, arm);
    return MAB_OK;
}

/* Write the action to storage (caller holds flush_mu); *r is what was
   stored, with the next sequence number after the stored one. */
static int store(mab_engine *e, mab__experiment *x, int action, long serve, admin_record *r,
                 mab_error *err)
{
    const char **ids = calloc(x->n_arms + 1, sizeof *ids);
    mab_totals *totals = calloc(x->n_arms + 1, sizeof *totals);
    if (!ids || !totals) {
        free(ids);
        free(totals);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    admin_record now;
    int rc = read_record(e, x, ids, totals, &now, err);
    free(ids);
    free(totals);
    if (rc != MAB_OK)
        return rc;
    uint64_t seen = atomic_load_explicit(&x->part->admin.sequence, memory_order_relaxed);
    uint64_t seq = (now.sequence > seen ? now.sequence : seen) + 1;
    if (seq > ADMIN_SEQUENCE_MAX)
        seq = 1; /* after 67 million actions: restart the count (still last-writer-wins) */
    int64_t at_ms = mab__engine_now(e, NULL) / 1000000;
    char id[MAB__ID_MAX + 1];
    admin_id(x, id, sizeof id);
    const char *experiments[1] = {id};
    mab_delta d = {id, serve >= 0 ? mab__arm_id(x, (size_t)serve) : ADMIN_NONE_ARM,
                   {seq, (uint64_t)action, (double)at_ms, (double)seq * (double)seq}};
    rc = e->storage->replace(e->storage_state, experiments, 1, &d, 1, err);
    if (rc != MAB_OK)
        return rc;
    *r = (admin_record){1, action, serve, seq, at_ms * 1000000};
    return MAB_OK;
}

int mab_set_state(mab_engine *e, const char *experiment, const char *state, const char *arm,
                  mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (e->read_only)
        return mab__read_only_error(e, "mab_set_state", err);
    int action;
    if (!parse_action(state, &action))
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: state \"%s\": expected \"running\", \"paused\", "
                             "\"concluded\" or \"config\"",
                             x->id, state ? state : "(null)");
    long serve;
    if ((rc = validate(e, x, action, arm, &serve, err)) != MAB_OK)
        return rc;
    if (e->storage && !can_store(e))
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: storage %s has no replace() (storage ABI 1.1): it cannot "
                             "keep the admin state of experiments.%s",
                             e->storage_path, e->storage->name, x->id);
    admin_record r = {1, action, serve,
                      atomic_load_explicit(&x->part->admin.sequence, memory_order_relaxed) + 1,
                      mab__engine_now(e, NULL) / 1000000 * 1000000};
    pthread_mutex_lock(&e->flush_mu);
    if (e->storage) {
        mab_error why = {0, ""};
        rc = store(e, x, action, serve, &r, &why);
        if (rc != MAB_OK)
            mab_error_set(err, rc, "experiments.%s: the admin state was not changed: %s", x->id,
                          why.message);
    }
    if (rc == MAB_OK)
        adopt(x, &r);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

void mab__admin_info(const mab__experiment *x, mab_rules_info *out)
{
    static const char *const states[] = {"running", "paused", "concluded"};
    mab__rules scratch;
    const mab__rules *r = mab__rules_effective(x, &scratch);
    int from_admin = r != &x->part->rules;
    out->state = states[r->state];
    out->serve = r->serve >= 0 ? mab__arm_id(x, (size_t)r->serve) : NULL;
    if (out->struct_size < offsetof(mab_rules_info, admin_time_ns) + sizeof out->admin_time_ns)
        return;
    int action = atomic_load_explicit(&x->part->admin.action, memory_order_relaxed) - 1;
    out->state_source = from_admin ? "admin" : "config";
    out->admin_action = action >= 0 ? action_names[action] : NULL;
    out->admin_sequence = atomic_load_explicit(&x->part->admin.sequence, memory_order_relaxed);
    out->admin_time_ns = atomic_load_explicit(&x->part->admin.time_ns, memory_order_relaxed);
}
