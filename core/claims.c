/*
 * claims.c - reward once: rewards that wait for storage's claim of their
 * assignment, grouped so that concurrent claims share one storage call
 * (engine_access.h; DESIGN.md decision 12).
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slots.h"
#include "engine_access.h"

/* ---- reward once: claims (engine_access.h) ---------------------------- */

int mab__engine_has_claims(const mab_engine *e)
{
    return e && e->storage && mab__storage_has(e->storage, claim) && e->storage->claim;
}

int mab_storage_has_claims(const mab_engine *e)
{
    return mab__engine_has_claims(e);
}

/* Beside it, as the other "what does this store keep" question. */
int mab_storage_has_buckets(const mab_engine *e)
{
    return e && e->storage && mab__storage_has_buckets(e->storage);
}

/*
 * Failure orders. With sync "always" the claim and the reward's increment
 * are one call of the plugin, with the claims of concurrent rewards (see
 * claim_wait): one LMDB transaction, one json_file write; MongoDB undoes
 * the claims when the increments fail. So a reward answered MAB_OK is
 * durable with its claim and one answered MAB_ESTORAGE left neither behind:
 * the visitor's retry can count. The increment bypasses the write-behind
 * queue (it is already stored), so it goes to the published totals only,
 * under flush_mu so that no refresh reads the store between the commit and
 * the add.
 *
 * With sync {"interval_ms": N} the claim is immediate and the increment is
 * queued like any other. The claim is decided and visible to every process
 * at once, but asked with MAB_CLAIM_DEFER_SYNC: it becomes durable with the
 * next batch (LMDB: the batch's fdatasync), so a machine crash loses claim
 * and increment together. A crash of the process alone before the next
 * batch loses the increment (as it loses every pending increment) while
 * its claim stays, so that reward is lost, never counted twice. The same
 * holds if mab_reward fails after the claim was granted (out of memory, or
 * rewards of other processes or threads made the arm's sums overflow since
 * the check below).
 *
 * A reward whose sums would not be finite is refused (MAB_ERANGE) before
 * anything is claimed, as mab_reward refuses it. When storage still refuses
 * a group as invalid (MAB_EINVAL or MAB_ERANGE: a record it holds would
 * overflow), each half is decided on its own, down to the claim at fault:
 * only that caller gets the error (nothing of its reward claimed or
 * counted); the others are decided. Any other error (the store failed)
 * fails the group as a whole: every caller of it gets the error, nothing of
 * the group is claimed, and each retry can count.
 */

/* Decide claims[0..n) (of waiters ws[0..n)) in one storage call; see the
   failure orders above. Caller holds flush_mu. */
static void claims_decide(mab_engine *e, mab_claim *claims, mab__claim_waiter **ws, size_t n,
                          unsigned flags)
{
    mab_error err = {0, ""};
    int rc = e->storage->claim(e->storage_state, claims, n, flags, &err);
    if (rc == MAB_OK) {
        if (e->sync_always) {
            pthread_rwlock_rdlock(&e->publish_lock);
            for (size_t k = 0; k < n; k++)
                if (claims[k].result == MAB_OK)
                    atomic_totals_add(&ws[k]->arm->published, &ws[k]->delta.add);
            mab__view_changed(e);
            /* The claim stored the totals; its bucket goes with the next
               batch (the claim call carries no buckets). */
            pthread_mutex_lock(&e->buckets_mu);
            for (size_t k = 0; k < n; k++)
                if (claims[k].result == MAB_OK)
                    mab__buckets_add(e, ws[k]->arm_index, ws[k]->bucket, &ws[k]->delta.add);
            pthread_mutex_unlock(&e->buckets_mu);
            pthread_rwlock_unlock(&e->publish_lock);
        }
        for (size_t k = 0; k < n; k++)
            ws[k]->rc = claims[k].result == MAB_OK ? MAB_OK : MAB_ECLAIMED;
        return;
    }
    if (refused_as_invalid(rc) && n > 1) {
        size_t half = n / 2; /* the first half first: an id given twice stays first-wins */
        claims_decide(e, claims, ws, half, flags);
        claims_decide(e, claims + half, ws + half, n - half, flags);
        return;
    }
    if (!err.message[0])
        mab_error_set(&err, rc, "%s", mab_strerror(rc));
    atomic_fetch_add(&e->flush_failures, 1); /* a failed write, for mab_storage_errors() */
    for (size_t k = 0; k < n; k++) {
        ws[k]->rc = rc;
        ws[k]->err = err;
    }
}

/* Decide a group of claims, in one storage call (one durable write) unless
   storage refuses one of them as invalid. */
static void claims_commit(mab_engine *e, mab__claim_waiter *group)
{
    size_t n = 0;
    for (mab__claim_waiter *w = group; w; w = w->next)
        n++;
    mab_claim *claims = malloc(n * sizeof *claims);
    mab__claim_waiter **ws = malloc(n * sizeof *ws);
    if (!claims || !ws) {
        for (mab__claim_waiter *w = group; w; w = w->next)
            w->rc = mab_error_set(&w->err, MAB_ENOMEM, "out of memory");
        free(claims);
        free(ws);
        return;
    }
    size_t k = 0;
    for (mab__claim_waiter *w = group; w; w = w->next, k++) {
        claims[k] = w->claim;
        ws[k] = w;
    }
    pthread_mutex_lock(&e->flush_mu);
    claims_decide(e, claims, ws, n, e->sync_always ? 0 : MAB_CLAIM_DEFER_SYNC);
    pthread_mutex_unlock(&e->flush_mu);
    free(claims);
    free(ws);
}

/*
 * Group commit of claims, as wait_durable does for increments: the first
 * caller to find no group being written leads one: it takes every claim
 * queued (its own and those of callers that arrived meanwhile) and decides
 * them in one storage call. Callers arriving during that write queue up
 * and wait; the next leader takes them all.
 */
static void claim_wait(mab_engine *e, mab__claim_waiter *w)
{
    pthread_mutex_lock(&e->claim_mu);
    w->next = e->claim_queue;
    e->claim_queue = w;
    while (!w->done) {
        if (e->claim_committing) {
            pthread_cond_wait(&e->claim_cv, &e->claim_mu);
            continue;
        }
        e->claim_committing = 1;
        pthread_mutex_unlock(&e->claim_mu);
        sched_yield(); /* let callers just released by the last group join this one */
        pthread_mutex_lock(&e->claim_mu);
        mab__claim_waiter *group = e->claim_queue;
        e->claim_queue = NULL;
        pthread_mutex_unlock(&e->claim_mu);
        claims_commit(e, group);
        pthread_mutex_lock(&e->claim_mu);
        for (mab__claim_waiter *g = group; g; g = g->next)
            g->done = 1;
        e->claim_committing = 0;
        pthread_cond_broadcast(&e->claim_cv);
    }
    pthread_mutex_unlock(&e->claim_mu);
}

/*
 * The statistics of a reward whose claim storage granted with its counters
 * (sync "always"): the policy's update for the reward event, its deltas
 * added to the write-behind path like mab_reward_ctx's (counters excluded:
 * the claim applied them), then written before returning. A crash between
 * the claim's commit and this one loses the reward's statistics, never
 * counts them twice. The counters are stored whatever happens here, so it
 * returns MAB_OK but when out of memory: a policy that refuses the event
 * leaves the reward without statistics (a dropped delta, mab_dropped_deltas);
 * a failed write leaves them queued for the next one (mab_storage_errors()).
 */
static int claimed_reward_stats(mab_engine *e, mab__experiment *x, size_t i, double value,
                                const mab_context *ctx, mab_error *err)
{
    if (!x->policy2 || !x->policy2->update || !(x->layout.arm_stats || x->layout.experiment_stats))
        return MAB_OK;
    double features[MAB_POLICY_FEATURES_MAX];
    mab__resolve_features(x, ctx, features);
    double r = (value - x->reward_min) * x->reward_scale;
    double p = ctx && ctx->probability > 0 ? ctx->probability : NAN;
    mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_REWARD, i, x->n_arms,
                           r < 0 ? 0 : r > 1 ? 1 : r, p, mab__engine_now(e, ctx), features,
                           x->n_features};
    mab__slot *s = slot_acquire(e);
    if (s && slot_take(s, x) != MAB_OK) {
        slot_unlock(s);
        s = NULL;
    }
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: the reward for arm \"%s\" was "
                             "counted; out of memory for its policy statistics", x->id,
                             mab__arm_id(x, i));
    int rc = mab__record_event(x, s, &ev);
    if (rc != MAB_OK) {
        slot_unlock(s);
        /* The reward is stored with its claim: it stays counted, and its
           statistics are reported dropped (mab_dropped_deltas). */
        atomic_fetch_add(&e->dropped_deltas, 1);
        pthread_mutex_lock(&e->dropped_mu);
        mab_error_set(&e->last_drop, MAB_EPLUGIN,
                      "experiments.%s: policy %s refused the reward for arm \"%s\" (%s) after "
                      "its claim was granted: the reward was counted without its policy "
                      "statistics",
                      x->id, x->policy_path, mab__arm_id(x, i), mab_strerror(rc));
        pthread_mutex_unlock(&e->dropped_mu);
        return MAB_OK;
    }
    /* The row taken above is published with its statistics; the pending
       counters stay as they were (the claim stored this reward's). */
    (void)slot_pending(s, x, i);
    uint64_t seq = mab__slot_publish(e, s);
    slot_unlock(s);
    mab_error ignored;
    (void)mab__wait_durable(e, seq, &ignored); /* on failure they stay queued (write_queued) */
    return MAB_OK;
}

int mab__engine_claim_reward(mab_engine *e, const char *experiment, const char *arm,
                             double value, const uint8_t assignment_id[MAB_ASSIGNMENT_ID_BYTES],
                             int64_t expires_at, const mab_context *ctx, mab_error *err)
{
    mab__experiment *x;
    size_t i;
    int rc = mab__find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    if (e->read_only)
        return mab__read_only_error(e, "reward", err);
    if ((rc = mab__context_check(ctx, err)) != MAB_OK)
        return rc;
    if (!mab__engine_has_claims(e))
        return mab_error_set(err, MAB_EINVAL, "%s: storage %s keeps no claims (storage ABI < 1.3)",
                             e->config_path, e->storage ? e->storage_path : "(none)");
    if ((rc = mab__reward_value_check(x, arm, value, err)) != MAB_OK)
        return rc;
    /* Late rewards are refused before they claim anything; a holdout
       reward is claimed and counted in the experiment's ledger. */
    /* Only a context carries what the rules check (a holdout tag, the
       assignment's time): without one, or without such rules or flags, no
       call (mab_reward's path stays as it was). */
    if (ctx &&
        (x->part->ledger || x->part->rules.attribution_window ||
         (ctx->struct_size >= offsetof(mab_context, flags) + sizeof ctx->flags && ctx->flags)) &&
        (rc = mab__rules_reward(e, &x, arm, ctx, err)) != MAB_OK)
        return rc;
    /* As mab_reward: a reward that would make a sum of the arm overflow is
       refused before it is claimed, so that it claims nothing. */
    double square = value * value;
    mab_totals held = atomic_totals_read(&x->arms[i].published);
    double count = (double)held.rewards + 1.0;
    if (!mab__sums_finite(x, count, held.reward_sum + value, held.reward_sum_sq + square))
        return mab_error_set(err, MAB_ERANGE,
                             "experiments.%s: reward %g for arm \"%s\" would make a sum of "
                             "the arm's rewards or of their squares overflow (the arm holds "
                             "%.0f rewards summing to %g, squares to %g); nothing was claimed "
                             "or recorded",
                             x->id, value, arm, count - 1.0, held.reward_sum,
                             held.reward_sum_sq);
    mab__claim_waiter w;
    memset(&w, 0, sizeof w);
    w.arm = &x->arms[i];
    w.arm_index = x->first_arm + i;
    w.bucket = mab__bucket_of(e, ctx && ctx->time_ns ? ctx->time_ns : bucket_clock(e));
    w.delta = (mab_delta){x->id, mab__arm_id(x, i), {0, 1, value, square}};
    w.claim.assignment_id = assignment_id;
    w.claim.expires_at = expires_at;
    if (e->sync_always) {
        w.claim.deltas = &w.delta;
        w.claim.n_deltas = 1;
    }
    claim_wait(e, &w);
    if (w.rc != MAB_OK && w.rc != MAB_ECLAIMED)
        return mab_error_set(err, w.rc, "%s", w.err.message);
    if (w.rc != MAB_OK)
        return w.rc;
    if (e->sync_always)
        return claimed_reward_stats(e, x, i, value, ctx, err);
    /* The window was checked above: the reward is claimed now, so it must
       not be refused as late a moment later. */
    mab_context checked;
    if (ctx) {
        memset(&checked, 0, sizeof checked);
        memcpy(&checked, ctx, ctx->struct_size < sizeof checked ? ctx->struct_size
                                                                 : sizeof checked);
        checked.struct_size = sizeof checked;
        checked.assigned_ns = 0;
        ctx = &checked;
    }
    return mab_reward_ctx(e, experiment, arm, value, ctx, err);
}

