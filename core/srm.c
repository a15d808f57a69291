/*
 * srm.c - the sample-ratio check (ALGORITHMS.md, "Sample-ratio check under
 * changing weights"; docs/operating.md). Did each arm get the share of
 * visitors the probabilities served promised? With weights that change from
 * visit to visit, arm i's expected pulls are E_i = sum over visits t of
 * P_t(i) (the sum over buckets of N_bucket * p_bucket(i), one visit at a
 * time), and X^2 = sum_i (O_i - E_i)^2 / E_i is chi-square with K - 1
 * degrees of freedom when the assignment is honest.
 *
 * Where the sums live: a ledger experiment "ID@srm" per experiment, with the
 * arms of the experiment and reward range [0, 1], counted like any
 * experiment (slots, write-behind, every store, buckets). A counted choice
 * whose whole vector of probabilities is known adds one pull to the chosen
 * arm and one reward of value P_t(i) to every arm i. So pulls_i = O_i,
 * reward_sum_i = E_i and rewards_i = N for every arm (reward_sum <= rewards
 * holds, as for any experiment in [0, 1]).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"
#include "srm_math.h"

#define MAB__SRM_SUFFIX "@srm"
/* The ledger's id adds "@srm" and must stay within what every store keys. */
#define MAB__SRM_ID_MAX (MAB__ID_MAX - 4)
#define MAB__SRM_ALARM 0.001
/* How far a policy's vector may be from summing to 1, or its entry of the
   chosen arm from the probability it returned (rounding of its sums). */
#define MAB__SRM_TOLERANCE 1e-6

int mab__srm_parse(const mab_engine *e, mab__experiment *x, const cJSON *obj, mab_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "srm");
    x->srm_off = MAB__SRM_ON;
    if (v && !cJSON_IsBool(v))
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.srm: expected true or false",
                             e->config_path, x->id);
    if (v && cJSON_IsFalse(v)) {
        x->srm_off = MAB__SRM_CONFIG_OFF;
        return MAB_OK;
    }
    if (strlen(x->id) > MAB__SRM_ID_MAX) {
        /* Asked for explicitly: refuse. By default: no ledger, and the
           report says why (a config that opened before keeps opening). */
        if (v)
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: experiments.%s.srm: an experiment with the sample-ratio "
                                 "check may have an id of at most %d characters (its ledger "
                                 "is \"%s" MAB__SRM_SUFFIX "\")",
                                 e->config_path, x->id, MAB__SRM_ID_MAX, x->id);
        x->srm_off = MAB__SRM_ID_TOO_LONG;
    }
    return MAB_OK;
}

/* The ledger of x: its arms (ids and values shared), range [0, 1]. */
static int make_srm_ledger(mab_engine *e, mab__experiment *ledger, const mab__experiment *x)
{
    int rc = mab__make_ledger(e, ledger, x, MAB__LEDGER_SRM, MAB__SRM_SUFFIX);
    if (rc != MAB_OK)
        return rc;
    /* Probabilities are in [0, 1] whatever the experiment's reward range. */
    ledger->reward_min = 0.0;
    ledger->reward_max = 1.0;
    ledger->winner_p_best = x->winner_p_best;
    ledger->winner_expected_loss = x->winner_expected_loss;
    ledger->srm_off = MAB__SRM_CONFIG_OFF;
    return MAB_OK;
}

int mab__srm_add_ledgers(mab_engine *e, mab_error *err)
{
    size_t configured = e->n_configured, n = 0;
    for (size_t i = 0; i < configured; i++)
        n += e->experiments[i].srm_off == MAB__SRM_ON;
    if (!n)
        return MAB_OK;
    /* The holdout and late ledgers move with the array: keep their
       positions (2 per configured experiment). */
    size_t *at = calloc(2 * configured, sizeof *at);
    if (!at)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < configured; i++) {
        const mab__experiment *x = &e->experiments[i];
        at[2 * i] = x->part->ledger ? (size_t)(x->part->ledger - e->experiments) : SIZE_MAX;
        at[2 * i + 1] = x->part->late_ledger ? (size_t)(x->part->late_ledger - e->experiments) : SIZE_MAX;
    }
    mab__experiment *grown = realloc(e->experiments, (e->n_experiments + n) * sizeof *grown);
    if (!grown) {
        free(at);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    e->experiments = grown;
    for (size_t i = 0; i < configured; i++) {
        mab__experiment *x = &e->experiments[i];
        x->part->ledger = at[2 * i] == SIZE_MAX ? NULL : &e->experiments[at[2 * i]];
        x->part->late_ledger = at[2 * i + 1] == SIZE_MAX ? NULL : &e->experiments[at[2 * i + 1]];
    }
    free(at);
    size_t first = e->n_experiments;
    for (size_t i = 0; i < configured; i++) {
        mab__experiment *x = &e->experiments[i];
        if (x->srm_off != MAB__SRM_ON)
            continue;
        mab__experiment *ledger = &e->experiments[e->n_experiments];
        int rc = make_srm_ledger(e, ledger, x);
        e->n_experiments++; /* freed with the others even when half made */
        if (rc != MAB_OK)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    for (size_t i = 0, k = first; i < configured; i++)
        if (e->experiments[i].srm_off == MAB__SRM_ON)
            e->experiments[i].srm = &e->experiments[k++];
    return MAB_OK;
}

double *mab__srm_vector(const mab__experiment *x, mab__slot *s)
{
    return slot_srm_vector(x, s); /* slots.h: inline for the choose path */
}

int mab__srm_filled(const double *v, size_t n, size_t arm, double p)
{
    if (!v || isnan(v[0]))
        return 0;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] >= 0.0 && v[i] <= 1.0 + MAB__SRM_TOLERANCE))
            return 0;
        sum += v[i];
    }
    /* A vector that contradicts the policy's own choice is not the one it
       chose with: better no check than a false one. */
    return fabs(sum - 1.0) <= MAB__SRM_TOLERANCE &&
           (isnan(p) || fabs(v[arm] - p) <= MAB__SRM_TOLERANCE);
}

/* A locked slot's pending totals of the ledger's arms (its row, taken by
   the caller: slot_take). Unlike slot_pending it does not count an
   operation: the choice counted one already, and the publish cadence
   (MAB__PUBLISH_OPS) must not depend on the arms. */
static inline mab_totals *ledger_pending(mab__slot *s, const mab__experiment *ledger)
{
    return (mab_totals *)slot_row(s, ledger);
}

void mab__srm_count(mab__slot *s, const mab__experiment *ledger, size_t arm, const double *v)
{
    mab_totals *row = ledger_pending(s, ledger);
    row[arm].pulls++;
    for (size_t i = 0; i < ledger->n_arms; i++) {
        double p = v[i] > 1.0 ? 1.0 : v[i];
        mab_totals *t = &row[i];
        t->rewards++;
        t->reward_sum += p;
        t->reward_sum_sq += p * p;
    }
}

/* Why there is no p-value when nothing was counted. */
static const char *why_nothing(const mab__experiment *x)
{
    if (!x->policy2)
        return "not available: the policy reports no probabilities for its arms (policy ABI "
               "1), and no choice was served by the rules (burn_in, floor, concluded)";
    if (x->policy2->abi_minor < 2)
        return "not available: the policy reports no probabilities for its arms (policy ABI "
               "< 2.2)";
    return "not available: no counted choice with the probabilities of every arm yet";
}

int mab__srm_check(const mab__experiment *x, double *p_value, char *status, size_t size)
{
    *p_value = NAN;
    if (x->is_ledger) {
        snprintf(status, size, "not available: \"%s\" is a ledger, not an experiment", x->id);
        return 0;
    }
    if (!x->srm) {
        snprintf(status, size, "%s",
                 x->srm_off == MAB__SRM_ID_TOO_LONG
                     ? "not available: the experiment id is longer than 124 characters, too "
                       "long for its ledger \"ID@srm\""
                     : "not available: \"srm\": false in the config");
        return 0;
    }
    const mab__experiment *l = x->srm;
    double n = 0.0, x2 = 0.0;
    size_t served = 0;
    int impossible = 0;
    for (size_t i = 0; i < l->n_arms; i++) {
        mab_totals t = atomic_totals_read(&l->arms[i].published);
        double observed = (double)t.pulls, expected = t.reward_sum;
        n += observed;
        if (expected > 0) {
            served++;
            x2 += (observed - expected) * (observed - expected) / expected;
        } else if (observed > 0) {
            impossible = 1; /* pulled, yet served with probability 0 */
        }
    }
    if (n == 0) {
        snprintf(status, size, "%s", why_nothing(x));
        return 0;
    }
    if (served < 2) {
        snprintf(status, size, "not available: fewer than two arms were served with a "
                               "probability above 0");
        return 0;
    }
    double p = impossible ? 0.0 : mab__chi2_upper(x2, (double)(served - 1));
    if (isnan(p)) {
        snprintf(status, size, "not available: the ledger \"%s\" holds sums that are not "
                               "numbers", l->id);
        return 0;
    }
    *p_value = p;
    if (p < MAB__SRM_ALARM)
        snprintf(status, size, "mismatch: p = %.2g < %g", p, MAB__SRM_ALARM);
    else
        snprintf(status, size, "ok: p = %.3g, %.0f visitors", p, n);
    return 1;
}
