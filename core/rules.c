/*
 * rules.c - an experiment's operating rules, applied by the core around any
 * policy (DESIGN.md decision 14; formulas in ALGORITHMS.md, "Operating
 * rules"): state (running, paused, concluded), floor, burn-in, holdout and
 * the attribution window. The probability reported with a choice is the one
 * after these rules, so hosts, logs and reports stay exact.
 *
 * Order of a ruled choice: paused serves its arm and counts nothing; a
 * running experiment's holdout share is served uniformly (or the control
 * arm) and counted in its ledger; concluded serves its arm (with the floor);
 * burn-in is uniform; else the policy chooses and the floor mixes in a
 * uniform draw: p_i = floor + (1 - K floor) p_policy(i).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

/* Draws of the policy to estimate the probability of an arm the floor's
   uniform draw chose when the policy can say only that of its own choice. */
#define MAB__FLOOR_ESTIMATE_DRAWS 64
/* Arms whose explain() values fit on the stack; beyond, the estimate. */
#define MAB__MAX_EXPLAIN_ARMS 256

/* Longest experiment id that may have a holdout: its ledger's id adds
   "@holdout" and must stay within what every store keys (128). */
#define MAB__LEDGER_SUFFIX "@holdout"
#define MAB__HOLDOUT_ID_MAX (MAB__ID_MAX - 8)
/* The same for the late rewards' ledger "ID@late": each late reward is a
   pull of its arm there, so storage counts them for every worker. */
#define MAB__LATE_SUFFIX "@late"
#define MAB__LATE_ID_MAX (MAB__ID_MAX - 5)

static long arm_by_id(const mab__experiment *x, const char *id)
{
    for (size_t i = 0; i < x->n_arms; i++)
        if (strcmp(mab__arm_id(x, i), id) == 0)
            return (long)i;
    return -1;
}

static int parse_arm_ref(const mab_engine *e, const mab__experiment *x, const cJSON *v,
                         const char *key, long *out, mab_error *err)
{
    if (!cJSON_IsString(v))
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.%s: expected an arm id",
                             e->config_path, x->id, key);
    *out = arm_by_id(x, v->valuestring);
    if (*out < 0)
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.%s: no arm \"%s\"",
                             e->config_path, x->id, key, v->valuestring);
    return MAB_OK;
}

static int parse_number(const mab_engine *e, const mab__experiment *x, const cJSON *v,
                        const char *key, double min, double max, int whole, double *out,
                        mab_error *err)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max || (whole && v->valuedouble != floor(v->valuedouble)))
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.%s: expected %s in [%g, %g]",
                             e->config_path, x->id, key, whole ? "a whole number" : "a number",
                             min, max);
    *out = v->valuedouble;
    return MAB_OK;
}

static int parse_holdout(const mab_engine *e, mab__experiment *x, const cJSON *v,
                         mab_error *err)
{
    const cJSON *share = v;
    if (cJSON_IsObject(v)) {
        share = NULL;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (strcmp(c->string, "share") == 0)
                share = c;
            else if (strcmp(c->string, "arm") == 0) {
                int rc = parse_arm_ref(e, x, c, "holdout.arm", &x->part->rules.holdout_arm, err);
                if (rc != MAB_OK)
                    return rc;
            } else
                return mab_error_set(err, MAB_ECONFIG,
                                     "%s: experiments.%s.holdout: unknown key \"%s\"",
                                     e->config_path, x->id, c->string);
        }
        if (!share)
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: experiments.%s.holdout.share: required key is missing",
                                 e->config_path, x->id);
    }
    int rc = parse_number(e, x, share, cJSON_IsObject(v) ? "holdout.share" : "holdout", 0.0,
                          0.5, 0, &x->part->rules.holdout_share, err);
    if (rc != MAB_OK)
        return rc;
    if (x->part->rules.holdout_share > 0 && strlen(x->id) > MAB__HOLDOUT_ID_MAX)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.holdout: an experiment with a holdout may "
                             "have an id of at most %d characters (its holdout is counted as "
                             "\"%s" MAB__LEDGER_SUFFIX "\")",
                             e->config_path, x->id, MAB__HOLDOUT_ID_MAX, x->id);
    return MAB_OK;
}

/* The buckets that hold the immature pulls (W + B seconds of them) must be
   kept by the store (retention) and fit a ring of at most a window's size. */
static int check_attribution(const mab_engine *e, const mab__experiment *x, mab_error *err)
{
    int64_t w = x->part->rules.attribution_window, bs = e->bucket_seconds;
    size_t n = mab__attribution_buckets(e, w);
    if (n > MAB_POLICY_WINDOW_MAX)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.attribution_window: %lld s spans %zu time "
                             "buckets of %lld s (storage.bucket_seconds), more than %d; use "
                             "longer buckets",
                             e->config_path, x->id, (long long)w, n, (long long)bs,
                             MAB_POLICY_WINDOW_MAX);
    if (strlen(x->id) > MAB__LATE_ID_MAX)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.attribution_window: an experiment with an "
                             "attribution window may have an id of at most %d characters "
                             "(its late rewards are counted as \"%s" MAB__LATE_SUFFIX "\")",
                             e->config_path, x->id, MAB__LATE_ID_MAX, x->id);
    if (w + bs > e->retention_seconds)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.attribution_window: %lld s plus one bucket "
                             "(storage.bucket_seconds %lld) is longer than "
                             "storage.retention_seconds %lld: the buckets of its pulls would "
                             "be compacted before they mature",
                             e->config_path, x->id, (long long)w, (long long)bs,
                             (long long)e->retention_seconds);
    return MAB_OK;
}

int mab__rules_parse(mab_engine *e, mab__experiment *x, const cJSON *obj, mab_error *err)
{
    mab__rules *r = &x->part->rules;
    memset(r, 0, sizeof *r);
    r->serve = -1;
    r->holdout_arm = -1;
    const cJSON *v;
    int rc = MAB_OK;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "state"))) {
        const char *s = cJSON_IsString(v) ? v->valuestring : "";
        if (strcmp(s, "running") == 0)
            r->state = MAB__RUNNING;
        else if (strcmp(s, "paused") == 0)
            r->state = MAB__PAUSED;
        else if (strcmp(s, "concluded") == 0)
            r->state = MAB__CONCLUDED;
        else
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: experiments.%s.state: expected \"running\", \"paused\" "
                                 "or \"concluded\"",
                                 e->config_path, x->id);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "serve"))) {
        if (r->state == MAB__RUNNING)
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: experiments.%s.serve: only a paused or concluded "
                                 "experiment serves a fixed arm (set \"state\")",
                                 e->config_path, x->id);
        if ((rc = parse_arm_ref(e, x, v, "serve", &r->serve, err)) != MAB_OK)
            return rc;
    }
    double d = 0.0;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "floor"))) {
        double max = 1.0 / (double)x->n_arms;
        if ((rc = parse_number(e, x, v, "floor", 0.0, max, 0, &r->floor, err)) != MAB_OK)
            return rc;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "burn_in"))) {
        if ((rc = parse_number(e, x, v, "burn_in", 0.0, 1e9, 1, &d, err)) != MAB_OK)
            return rc;
        r->burn_in = (uint64_t)d;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "holdout")) &&
        (rc = parse_holdout(e, x, v, err)) != MAB_OK)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "attribution_window"))) {
        if ((rc = parse_number(e, x, v, "attribution_window", 0.0, 315360000.0, 1, &d, err)) !=
            MAB_OK)
            return rc;
        r->attribution_window = (int64_t)d;
        if ((rc = check_attribution(e, x, err)) != MAB_OK)
            return rc;
    }
    /* An attribution window changes what the policy sees (mab__mature_view),
       so its choices take the ruled path too. */
    r->active = r->state != MAB__RUNNING || r->floor > 0 || r->burn_in > 0 ||
                r->holdout_share > 0 || r->attribution_window > 0;
    return MAB_OK;
}

/* A ledger: the experiment's arms (ids and values shared), no policy;
   kind MAB__LEDGER_HOLDOUT, MAB__LEDGER_LATE or MAB__LEDGER_SRM (srm.c),
   its id x's with `suffix`. */
int mab__make_ledger(mab_engine *e, mab__experiment *ledger, const mab__experiment *x,
                     int kind, const char *suffix)
{
    memset(ledger, 0, sizeof *ledger);
    ledger->is_ledger = kind; /* first: mab__config_free frees no arm_ids of a ledger */
    /* No rules, policy, features or ledgers of its own: the engine's one
       ledger part for all (engine.h), zeros but for the "none" arms. */
    e->ledger_part.rules.serve = e->ledger_part.rules.holdout_arm = -1;
    ledger->part = &e->ledger_part;
    size_t id_len = strlen(x->id), suffix_len = strlen(suffix);
    if ((ledger->id = malloc(id_len + suffix_len + 1))) { /* no printf: 10^6 ledgers */
        memcpy(ledger->id, x->id, id_len);
        memcpy(ledger->id + id_len, suffix, suffix_len + 1);
    }
    if (!ledger->id || !mab__arms_take(e, ledger, x->n_arms)) /* x->arms may move */
        return MAB_ENOMEM;
    /* The ids and values are x's (freed with x's arm_ids, never with the
       ledger's), as is the arm index (engine.c, allocate_tables). */
    ledger->arm_ids = x->arm_ids;
    ledger->n_arms = x->n_arms;
    ledger->reward_min = x->reward_min;
    ledger->reward_max = x->reward_max;
    return MAB_OK;
}

int mab__rules_add_ledgers(mab_engine *e, mab_error *err)
{
    e->n_configured = e->n_experiments;
    size_t n = 0;
    for (size_t i = 0; i < e->n_experiments; i++)
        n += (e->experiments[i].part->rules.holdout_share > 0) +
             (e->experiments[i].part->rules.attribution_window > 0);
    if (!n)
        return MAB_OK;
    mab__experiment *grown = realloc(e->experiments, (e->n_experiments + n) * sizeof *grown);
    if (!grown)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    e->experiments = grown;
    size_t configured = e->n_experiments;
    for (size_t i = 0; i < configured; i++) {
        for (int kind = MAB__LEDGER_HOLDOUT; kind <= MAB__LEDGER_LATE; kind++) {
            mab__experiment *x = &e->experiments[i];
            if (!(kind == MAB__LEDGER_HOLDOUT ? x->part->rules.holdout_share > 0
                                              : x->part->rules.attribution_window > 0))
                continue;
            mab__experiment *ledger = &e->experiments[e->n_experiments];
            int rc = mab__make_ledger(e, ledger, x, kind,
                                      kind == MAB__LEDGER_LATE ? MAB__LATE_SUFFIX
                                                               : MAB__LEDGER_SUFFIX);
            e->n_experiments++; /* freed with the others even when half made */
            if (rc != MAB_OK)
                return mab_error_set(err, MAB_ENOMEM, "out of memory");
        }
    }
    /* Pointers last: the array may have moved. */
    for (size_t i = 0, k = configured; i < configured; i++) {
        mab__experiment *x = &e->experiments[i];
        if (x->part->rules.holdout_share > 0)
            x->part->ledger = &e->experiments[k++];
        if (x->part->rules.attribution_window > 0)
            x->part->late_ledger = &e->experiments[k++];
    }
    return MAB_OK;
}

/* ---- choose ----------------------------------------------------------- */

/* The arm of highest mean in the view (the first of equals: a paused
   experiment serves one arm, not a random one among ties). */
static size_t leader(const mab__experiment *x, const mab__slot *s)
{
    size_t best = 0;
    for (size_t i = 1; i < x->n_arms; i++)
        if (mab_arm_mean(&s->view[i]) > mab_arm_mean(&s->view[best]))
            best = i;
    return best;
}

/* Ask the policy (either ABI) for its choice on the slot's view. */
static int policy_choose(mab_engine *e, mab__experiment *x, mab__slot *s, int64_t now,
                         const double *features, mab_policy_choice *c)
{
    c->arm = x->n_arms;
    c->probability = NAN;
    c->estimated = 0;
    if (!x->policy2)
        return x->policy->choose(x->policy_state, s->view, x->n_arms, &s->rng, &c->arm,
                                 &c->probability);
    mab_policy_input in;
    int rc = mab__policy_input(e, x, s, now, features, &in);
    in.probabilities = mab__srm_vector(x, s); /* every arm's, for the check (srm.c) */
    return rc == MAB_OK ? x->policy2->choose(x->policy_state, &in, c) : rc;
}

/* The probabilities of every arm after the rules, for the sample-ratio
   check (srm.c), in the slot's scratch: uniform in burn-in, the winner's
   share and the floor when concluded, else the policy's vector there mixed
   with the floor. NULL when the experiment has no check. */
static double *srm_served(const mab__experiment *x, mab__slot *s, unsigned flags, size_t winner)
{
    if (!x->srm)
        return NULL;
    const mab__rules *r = &x->part->rules;
    size_t k = x->n_arms;
    double kf = (double)k * r->floor, *v = s->probabilities;
    for (size_t i = 0; i < k; i++) {
        if (flags & MAB_CHOICE_CONCLUDED)
            v[i] = i == winner ? 1.0 - (double)(k - 1) * r->floor : r->floor;
        else if (flags & MAB_CHOICE_BURN_IN)
            v[i] = 1.0 / (double)k;
        else
            v[i] = r->floor + (1.0 - kf) * v[i];
    }
    return v;
}

/* The policy's probability of `arm`, knowing it chose c->arm with
   c->probability: exact from explain() (probabilities) or from a
   deterministic choice, else a Monte Carlo estimate (*estimated set). */
static int policy_probability(mab_engine *e, mab__experiment *x, mab__slot *s, int64_t now,
                              const double *features, const mab_policy_choice *c, size_t arm,
                              double *p, int *estimated)
{
    if (c->arm == arm) {
        *p = c->probability;
        *estimated |= c->estimated;
        return MAB_OK;
    }
    if (c->probability == 1.0 && !c->estimated) {
        *p = 0.0;
        return MAB_OK;
    }
    if (x->policy2 && x->policy2->explain && x->n_arms <= MAB__MAX_EXPLAIN_ARMS) {
        double values[MAB__MAX_EXPLAIN_ARMS];
        int kind = 0;
        mab_policy_input in;
        if (mab__policy_input(e, x, s, now, features, &in) == MAB_OK &&
            x->policy2->explain(x->policy_state, &in, values, &kind) == MAB_OK &&
            kind == MAB_EXPLAIN_PROBABILITIES) {
            *p = values[arm];
            return MAB_OK;
        }
    }
    unsigned hits = 0;
    for (unsigned d = 0; d < MAB__FLOOR_ESTIMATE_DRAWS; d++) {
        mab_policy_choice again;
        int rc = policy_choose(e, x, s, now, features, &again);
        if (rc != MAB_OK)
            return rc;
        hits += again.arm == arm;
    }
    *p = (double)hits / MAB__FLOOR_ESTIMATE_DRAWS;
    *estimated = 1;
    return MAB_OK;
}


/* Count the pull of `arm` chosen with probability p (locked slot, rows taken),
   and with `served` (every arm's probability) in the sample-ratio ledger. */
static int count_pull(mab_engine *e, mab__experiment *x, mab__slot *s, size_t arm, double p,
                      int64_t now, const double *features, const double *served)
{
    if (x->policy2) {
        mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_PULL, arm, x->n_arms,
                               0.0, p, now, features, x->n_features};
        int rc = mab__record_event(x, s, &ev);
        if (rc != MAB_OK)
            return rc;
    }
    /* Before a publish, which empties the slot's rows. */
    if (served)
        mab__srm_count(s, x->srm, arm, served);
    slot_pending(s, x, arm)->pulls++;
    if (slot_due(s))
        mab__slot_publish(e, s);
    return MAB_OK;
}

int mab__choose_ruled(mab_engine *e, mab__experiment *x, const mab_context *ctx,
                      mab_choice *out, int *estimated, mab_error *err)
{
    mab__rules admin_rules; /* the admin state over the config's (admin.c) */
    const mab__rules *r = mab__rules_effective(x, &admin_rules);
    double features[MAB_POLICY_FEATURES_MAX];
    mab__resolve_features(x, ctx, features);
    int64_t now = mab__engine_now(e, ctx);
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    slot_bucket(e, s, now); /* the pull is counted in the bucket of `now` */
    /* The rows of everything this choice may count in, first (slot_take). */
    if (slot_take(s, x) != MAB_OK || (x->part->ledger && slot_take(s, x->part->ledger) != MAB_OK) ||
        (x->srm && slot_take(s, x->srm) != MAB_OK)) {
        slot_unlock(s);
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: out of memory for the "
                             "thread's pending counts; nothing was recorded", x->id);
    }
    mab__build_view(x, s);
    mab__mature_view(e, x, s, now); /* what every rule below and the policy see */
    size_t k = x->n_arms, arm;
    double kf = (double)k * r->floor, p;
    unsigned flags = 0;
    double *served = NULL; /* every arm's probability after the rules (srm.c) */
    int est = 0, rc = MAB_OK;
    const char *failed = "choose";
    if (r->state == MAB__PAUSED) {
        arm = r->serve >= 0 ? (size_t)r->serve : leader(x, s);
        slot_unlock(s);
        mab__fill_choice(x, arm, 1.0, 0, MAB_CHOICE_NOT_LEARNING, out);
        if (estimated)
            *estimated = 0;
        return MAB_OK;
    }
    if (r->state == MAB__RUNNING && r->holdout_share > 0 &&
        mab_rng_uniform(&s->rng) < r->holdout_share) {
        arm = r->holdout_arm >= 0 ? (size_t)r->holdout_arm : (size_t)mab_rng_below(&s->rng, k);
        p = r->holdout_arm >= 0 ? 1.0 : 1.0 / (double)k;
        /* Counted apart, and never shown to the policy: the holdout is the
           comparison the bandit is measured against. */
        slot_pending(s, x->part->ledger, arm)->pulls++;
        if (slot_due(s))
            mab__slot_publish(e, s);
        slot_unlock(s);
        mab__fill_choice(x, arm, p, 0, MAB_CHOICE_HOLDOUT, out);
        if (estimated)
            *estimated = 0;
        return MAB_OK;
    }
    if (x->policy2)
        mab__build_stats_view(e, x, s);
    if (r->state == MAB__CONCLUDED) {
        size_t winner = r->serve >= 0 ? (size_t)r->serve : leader(x, s);
        flags = MAB_CHOICE_CONCLUDED;
        arm = winner;
        if (kf > 0 && mab_rng_uniform(&s->rng) < kf) {
            arm = (size_t)mab_rng_below(&s->rng, k);
            flags |= MAB_CHOICE_FLOOR;
        }
        p = arm == winner ? 1.0 - (double)(k - 1) * r->floor : r->floor;
        served = srm_served(x, s, flags, winner);
    } else {
        int burning = 0;
        for (size_t i = 0; r->burn_in && i < k && !burning; i++)
            burning = s->view[i].pulls < r->burn_in;
        if (burning) {
            arm = (size_t)mab_rng_below(&s->rng, k);
            p = 1.0 / (double)k;
            flags = MAB_CHOICE_BURN_IN;
            served = srm_served(x, s, flags, 0);
        } else {
            mab_policy_choice c;
            rc = policy_choose(e, x, s, now, features, &c);
            if (rc == MAB_OK && c.arm >= k) {
                slot_unlock(s);
                return mab_error_set(err, MAB_EPLUGIN,
                                     "experiments.%s: policy %s chose arm %zu of only %zu",
                                     x->id, x->policy_path, c.arm, k);
            }
            arm = c.arm;
            p = c.probability;
            est = c.estimated;
            /* Known now or never: a Monte Carlo estimate below reuses the
               scratch. */
            int known = rc == MAB_OK && x->policy2 && x->srm &&
                        mab__srm_filled(s->probabilities, k, c.arm, c.probability);
            if (rc == MAB_OK && kf > 0) {
                if (mab_rng_uniform(&s->rng) < kf) {
                    arm = (size_t)mab_rng_below(&s->rng, k);
                    flags = MAB_CHOICE_FLOOR;
                    est = 0;
                    if (known) {
                        p = s->probabilities[arm]; /* the policy's own, exact */
                        est = c.estimated;
                    } else {
                        rc = policy_probability(e, x, s, now, features, &c, arm, &p, &est);
                    }
                }
                p = r->floor + (1.0 - kf) * p;
            }
            if (known)
                served = srm_served(x, s, flags, 0);
        }
    }
    if (rc == MAB_OK) {
        failed = "update";
        rc = count_pull(e, x, s, arm, p, now, features, served);
    }
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s: %s failed: %s",
                             x->id, x->policy_path, failed, mab_strerror(rc));
    mab__fill_choice(x, arm, p, est, flags, out);
    if (estimated)
        *estimated = est;
    return MAB_OK;
}

/* ---- reward ----------------------------------------------------------- */

/* A late reward is a pull of its arm in the experiment's "ID@late" ledger,
   counted in the bucket of its arrival: storage adds it like any increment,
   so every worker's count agrees after a refresh (and survives restarts).
   Out of memory for the slot: not counted (the refusal itself stands). */
static void count_late(mab_engine *e, mab__experiment *x, long arm)
{
    if (arm < 0 || !x->part->late_ledger)
        return;
    mab__slot *s = slot_acquire(e);
    if (!s)
        return;
    slot_bucket(e, s, mab__engine_now(e, NULL));
    if (slot_take(s, x->part->late_ledger) != MAB_OK) {
        slot_unlock(s);
        return;
    }
    slot_pending(s, x->part->late_ledger, (size_t)arm)->pulls++;
    if (slot_due(s))
        mab__slot_publish(e, s);
    slot_unlock(s);
}

uint64_t mab__rules_late(const mab__experiment *x, long arm)
{
    uint64_t n = 0;
    for (size_t i = 0; x->part->late_ledger && i < x->n_arms; i++)
        if (arm < 0 || (size_t)arm == i)
            n += atomic_load_explicit(&x->part->late_ledger->arms[i].published.pulls,
                                      memory_order_relaxed);
    return n;
}

int mab__rules_reward(mab_engine *e, mab__experiment **xp, const char *arm,
                      const mab_context *ctx, mab_error *err)
{
    mab__experiment *x = *xp;
    if (!ctx || ctx->struct_size < offsetof(mab_context, assigned_ns) + sizeof ctx->assigned_ns)
        return MAB_OK;
    if (x->part->rules.attribution_window && ctx->assigned_ns > 0) {
        /* The reward arrives now, by the engine's clock: ctx->time_ns is the
           event's time for the policy (the adapter gives the pull's). */
        int64_t age = mab__engine_now(e, NULL) - ctx->assigned_ns;
        if (age > x->part->rules.attribution_window * 1000000000LL) {
            count_late(e, x, mab__find_arm(e, x, arm, NULL));
            return mab_error_set(err, MAB_ELATE,
                                 "experiments.%s: the reward for arm \"%s\" came %.0f s after "
                                 "its assignment, beyond the attribution window of %lld s; "
                                 "it was not counted",
                                 x->id, arm, (double)age / 1e9,
                                 (long long)x->part->rules.attribution_window);
        }
    }
    if (ctx->flags & MAB_CONTEXT_HOLDOUT) {
        if (!x->part->ledger)
            return mab_error_set(err, MAB_EINVAL,
                                 "experiments.%s: a holdout reward (MAB_CONTEXT_HOLDOUT), but "
                                 "the experiment has no holdout",
                                 x->id);
        *xp = x->part->ledger;
    }
    return MAB_OK;
}

/* ---- reading ---------------------------------------------------------- */

int mab_rules(mab_engine *e, const char *experiment, mab_rules_info *out, mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (!out || out->struct_size < MAB_RULES_INFO_SIZE_0_2)
        return mab_error_set(err, MAB_EINVAL, "mab_rules: out is NULL or its struct_size is "
                             "smaller than %zu", (size_t)MAB_RULES_INFO_SIZE_0_2);
    const mab__rules *r = &x->part->rules;
    mab__admin_info(x, out); /* state and serve: the admin state's when set */
    out->floor = r->floor;
    out->burn_in = r->burn_in;
    out->holdout_share = r->holdout_share;
    out->holdout_arm = r->holdout_arm >= 0 ? mab__arm_id(x, (size_t)r->holdout_arm) : NULL;
    out->attribution_window = r->attribution_window;
    /* late rewards still pending in a slot */
    if ((rc = mab__gather_experiment(e, x, err)) != MAB_OK)
        return rc;
    out->late_rewards = mab__rules_late(x, -1);
    return MAB_OK;
}

/* Visitors, reward sum and sum of squares of a group of arms (published
   totals: the caller first publishes what every slot holds of the experiment
   and its ledgers, mab__gather_experiment). */
static void group_sums(const mab__experiment *x, double *n, double *sum, double *sq)
{
    *n = *sum = *sq = 0.0;
    for (size_t i = 0; i < x->n_arms; i++) {
        mab_totals t = atomic_totals_read(&x->arms[i].published);
        *n += (double)t.pulls;
        *sum += t.reward_sum;
        *sq += t.reward_sum_sq;
    }
}

int mab_holdout_compare(mab_engine *e, const char *experiment, mab_holdout_comparison *out,
                        mab_error *err)
{
    mab__experiment *x;
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (!out || out->struct_size < sizeof *out)
        return mab_error_set(err, MAB_EINVAL, "mab_holdout_compare: out is NULL or its "
                             "struct_size is smaller than %zu", sizeof *out);
    if (!x->part->ledger)
        return mab_error_set(err, MAB_EINVAL, "%s: experiments.%s has no holdout",
                             e->config_path, x->id);
    if ((rc = mab__gather_experiment(e, x, err)) != MAB_OK)
        return rc;
    double nb, sb, qb, nh, sh, qh;
    group_sums(x, &nb, &sb, &qb);
    group_sums(x->part->ledger, &nh, &sh, &qh);
    out->bandit_visitors = (uint64_t)nb;
    out->holdout_visitors = (uint64_t)nh;
    out->bandit_mean = nb > 0 ? sb / nb : NAN;
    out->holdout_mean = nh > 0 ? sh / nh : NAN;
    out->difference = out->bandit_mean - out->holdout_mean;
    out->ci_low = out->ci_high = NAN;
    if (nb >= 2 && nh >= 2) {
        /* Sample variances of the reward per visitor (unrewarded visitors
           are zeros: they add nothing to the sums). */
        double vb = (qb - sb * sb / nb) / (nb - 1), vh = (qh - sh * sh / nh) / (nh - 1);
        double se = sqrt((vb < 0 ? 0 : vb) / nb + (vh < 0 ? 0 : vh) / nh);
        out->ci_low = out->difference - 1.959963984540054 * se;
        out->ci_high = out->difference + 1.959963984540054 * se;
    }
    return MAB_OK;
}
