/*
 * report.c - who is winning, and how sure: per arm a posterior of the mean
 * reward, its 95% equal-tailed credible interval, P(best) and expected loss
 * by seeded Monte Carlo; per experiment the leader and the `winner` rule.
 * Formulas: ALGORITHMS.md "Reporting"; the model rule is in mab.h.
 *
 * Everything here is a pure function of the snapshot (the arms' totals,
 * the reward range, the winner rule): the draws come from a stream seeded
 * with the experiment's id, so the same snapshot always gives the same
 * report, in every process and on every machine.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "internal.h"

/* Arm k of the input: the array's stride is arms[0].struct_size (mab.h,
   "Structs that grow"); fields beyond what the caller's struct holds read as
   zeros. */
static mab_arm_stats input_arm(const mab_report_input *in, size_t k)
{
    mab_arm_stats s;
    memset(&s, 0, sizeof s);
    size_t stride = in->arms[0].struct_size;
    memcpy(&s, (const char *)in->arms + k * stride, stride < sizeof s ? stride : sizeof s);
    return s;
}


/* The first version's mab_report: callers must give at least this much.
   When mab_report grows, this stays the offset where 0.1's struct ended. */
#define REPORT_SIZE_0_1 MAB_REPORT_SIZE_0_1
#define INPUT_SIZE_0_1 sizeof(mab_report_input)

/* Whether a caller's report (its struct_size) holds `field`. */
#define REPORT_HOLDS(r, field) \
    ((r)->struct_size >= offsetof(mab_report, field) + sizeof((r)->field))

#define Z_975 1.959963984540054 /* the 97.5% quantile of the standard normal */
#define CF_MAX_ITERATIONS 200000
#define CF_EPSILON 1e-15
#define CF_TINY 1e-300

/* One arm's posterior of its mean reward. */
typedef struct posterior {
    double a, b;     /* MAB_REPORT_BETA: Beta(a, b) */
    double mu, sd;   /* MAB_REPORT_NORMAL: Normal(mu, sd^2), reward units */
} posterior;

/* ---- the regularised incomplete beta function and its inverse ---------- */

/* Continued fraction of I_x(a, b) (Abramowitz & Stegun 26.5.8), evaluated
   with the modified Lentz method; converges fast for x < (a+1)/(a+b+2). */
static double beta_fraction(double a, double b, double x)
{
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < CF_TINY)
        d = CF_TINY;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= CF_MAX_ITERATIONS; m++) {
        double m2 = 2.0 * m;
        /* The even step d_{2m}, then the odd step d_{2m+1}. */
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + num * d;
        c = 1.0 + num / c;
        d = fabs(d) < CF_TINY ? 1.0 / CF_TINY : 1.0 / d;
        c = fabs(c) < CF_TINY ? CF_TINY : c;
        h *= d * c;
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + num * d;
        c = 1.0 + num / c;
        d = fabs(d) < CF_TINY ? 1.0 / CF_TINY : 1.0 / d;
        c = fabs(c) < CF_TINY ? CF_TINY : c;
        double step = d * c;
        h *= step;
        if (fabs(step - 1.0) < CF_EPSILON)
            break;
    }
    return h;
}

/* I_x(a, b), the CDF of Beta(a, b) at x. */
static double beta_cdf(double a, double b, double x)
{
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    double log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    double front = exp(log_front);
    /* The fraction converges on the side of the mean where x is small. */
    if (x < (a + 1.0) / (a + b + 2.0))
        return front * beta_fraction(a, b, x) / a;
    return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

/* The q-quantile of Beta(a, b), by bisection on the CDF (monotone), from a
   bracket around the mean that widens to [0, 1] when it misses. */
static double beta_quantile(double a, double b, double q)
{
    double mean = a / (a + b);
    double sd = sqrt(a * b / ((a + b) * (a + b) * (a + b + 1.0)));
    double lo = fmax(0.0, mean - 12.0 * sd), hi = fmin(1.0, mean + 12.0 * sd);
    if (beta_cdf(a, b, lo) > q)
        lo = 0.0;
    if (beta_cdf(a, b, hi) < q)
        hi = 1.0;
    for (int i = 0; i < 200 && hi - lo > 1e-15 * fmax(1e-300, hi); i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi)
            break;
        if (beta_cdf(a, b, mid) < q)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* ---- posteriors -------------------------------------------------------- */

static int model_of(double reward_min, double reward_max)
{
    return reward_min == 0.0 && reward_max == 1.0 ? MAB_REPORT_BETA : MAB_REPORT_NORMAL;
}

static posterior posterior_of(int model, const mab_arm_stats *s, double reward_min,
                              double reward_max)
{
    posterior p = {0};
    double n = (double)s->pulls;
    if (model == MAB_REPORT_BETA) {
        p.a = 1.0 + s->reward_sum;
        p.b = 1.0 + fmax(0.0, n - s->reward_sum);
        return p;
    }
    double half_width = 0.5 * (reward_max - reward_min);
    /* Until the arm shows spread, the widest variance a reward in the range
       can have: an arm is never taken as certain on equal rewards. */
    double variance = half_width * half_width;
    if (s->pulls >= 2) {
        double squares = s->reward_sum_sq - s->reward_sum * s->reward_sum / n;
        if (squares > 1e-12 * s->reward_sum_sq)
            variance = squares / (n - 1.0);
    }
    p.mu = s->pulls ? s->reward_sum / n : reward_min + half_width;
    p.sd = sqrt(variance / fmax(1.0, n));
    return p;
}

/* A Normal interval is clipped to the values an arm's mean can take: the
   reward range, widened to 0 (a pull never rewarded counts as 0). */
static void credible_interval(int model, const posterior *p, double reward_min,
                              double reward_max, double *low, double *high)
{
    if (model == MAB_REPORT_BETA) {
        *low = beta_quantile(p->a, p->b, 0.025);
        *high = beta_quantile(p->a, p->b, 0.975);
    } else {
        *low = fmax(fmin(reward_min, 0.0), p->mu - Z_975 * p->sd);
        *high = fmin(fmax(reward_max, 0.0), p->mu + Z_975 * p->sd);
    }
}

/* FNV-1a of the experiment's id: the seed of its report's draws. */
static uint64_t report_seed(const char *experiment)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *c = (const unsigned char *)experiment; *c; c++) {
        h ^= *c;
        h *= 0x100000001b3ULL;
    }
    return h ^ 0x6d61622d7265706fULL; /* "mab-repo" */
}

/* P(best) and expected loss of every arm over MAB_REPORT_DRAWS joint draws.
   theta: scratch of n entries. Ties (equal draws) share the win. */
static void monte_carlo(int model, const posterior *post, size_t n, uint64_t seed,
                        double *theta, double *p_best, double *loss)
{
    mab_rng rng;
    mab__rng_seed(&rng, seed);
    for (size_t k = 0; k < n; k++)
        p_best[k] = loss[k] = 0.0;
    for (unsigned s = 0; s < MAB_REPORT_DRAWS; s++) {
        double best = -INFINITY;
        for (size_t k = 0; k < n; k++) {
            theta[k] = model == MAB_REPORT_BETA
                           ? mab_rng_beta(&rng, post[k].a, post[k].b)
                           : post[k].mu + post[k].sd * mab_rng_normal(&rng);
            if (theta[k] > best)
                best = theta[k];
        }
        size_t tied = 0;
        for (size_t k = 0; k < n; k++)
            tied += theta[k] == best;
        for (size_t k = 0; k < n; k++) {
            if (theta[k] == best)
                p_best[k] += 1.0 / (double)tied;
            loss[k] += best - theta[k];
        }
    }
    for (size_t k = 0; k < n; k++) {
        p_best[k] /= MAB_REPORT_DRAWS;
        loss[k] /= MAB_REPORT_DRAWS;
    }
}

/* ---- the report -------------------------------------------------------- */

/* P(best) for people: three decimals, but never "1.000" or "0.000": an
   estimate from 10^4 draws cannot tell certainty from 0.9999. */
static void format_probability(double p, char *out, size_t cap)
{
    if (p >= 0.9995)
        snprintf(out, cap, ">0.999");
    else if (p < 0.0005)
        snprintf(out, cap, "<0.001");
    else
        snprintf(out, cap, "%.3f", p);
}

static void recommend(mab_report *r, const mab_report_arm *arms)
{
    const mab_report_arm *leader = &arms[r->leader];
    char p[16];
    format_probability(leader->p_best, p, sizeof p);
    if (r->winner)
        snprintf(r->recommendation, sizeof r->recommendation,
                 "winner: %s, P(best) %s, expected loss %.2g", leader->arm_id, p,
                 leader->expected_loss);
    else
        snprintf(r->recommendation, sizeof r->recommendation,
                 "keep exploring: P(best) %s for %s, expected loss %.2g", p, leader->arm_id,
                 leader->expected_loss);
}

static int check_input(const mab_report_input *in, const mab_report *out, mab_error *err)
{
    if (!in || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_report_compute: NULL argument");
    if (in->struct_size < INPUT_SIZE_0_1 || out->struct_size < REPORT_SIZE_0_1)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_report_compute: struct_size of the input (%zu) or the report "
                             "(%zu) is smaller than this library's first version (%zu, %zu)",
                             in->struct_size, out->struct_size, (size_t)INPUT_SIZE_0_1,
                             (size_t)REPORT_SIZE_0_1);
    const char *exp = in->experiment ? in->experiment : "";
    if (in->n_arms < 1 || !in->arms)
        return mab_error_set(err, MAB_EINVAL, "report of %s: no arms", exp);
    if (in->arms[0].struct_size < MAB_ARM_STATS_SIZE_0_1)
        return mab_error_set(err, MAB_EINVAL,
                             "report of %s: arms[0].struct_size %zu is smaller than %zu",
                             exp, in->arms[0].struct_size, (size_t)MAB_ARM_STATS_SIZE_0_1);
    if (!(isfinite(in->reward_min) && isfinite(in->reward_max) &&
          in->reward_min < in->reward_max))
        return mab_error_set(err, MAB_EINVAL,
                             "report of %s: reward range [%g, %g]: min must be less than max",
                             exp, in->reward_min, in->reward_max);
    if (!(in->winner_p_best > 0.0 && in->winner_p_best <= 1.0))
        return mab_error_set(err, MAB_EINVAL, "report of %s: winner p_best %g is outside (0, 1]",
                             exp, in->winner_p_best);
    if (!(in->winner_expected_loss > 0.0 && isfinite(in->winner_expected_loss)))
        return mab_error_set(err, MAB_EINVAL,
                             "report of %s: winner expected_loss %g must be a number above 0",
                             exp, in->winner_expected_loss);
    for (size_t k = 0; k < in->n_arms; k++) {
        const mab_arm_stats arm_k = input_arm(in, k), *s = &arm_k;
        if (!s->arm_id)
            return mab_error_set(err, MAB_EINVAL, "report of %s: arm %zu has no id", exp, k);
        if (!(isfinite(s->reward_sum) && isfinite(s->reward_sum_sq) && s->reward_sum_sq >= 0.0))
            return mab_error_set(err, MAB_EINVAL,
                                 "report of %s: arm %s: reward_sum %g or reward_sum_sq %g is "
                                 "not a finite number (>= 0 for the squares)",
                                 exp, s->arm_id, s->reward_sum, s->reward_sum_sq);
        if (model_of(in->reward_min, in->reward_max) == MAB_REPORT_BETA && s->reward_sum < 0.0)
            return mab_error_set(err, MAB_EINVAL,
                                 "report of %s: arm %s: reward_sum %g is negative, outside the "
                                 "reward range [0, 1]",
                                 exp, s->arm_id, s->reward_sum);
    }
    return MAB_OK;
}

int mab_report_compute(const mab_report_input *in, mab_report *out, mab_error *err)
{
    int rc = check_input(in, out, err);
    if (rc)
        return rc;
    size_t n = in->n_arms;
    mab_report_arm *arms = calloc(n, sizeof *arms);
    posterior *post = calloc(n, sizeof *post);
    double *scratch = calloc(3 * n, sizeof *scratch);
    if (!arms || !post || !scratch) {
        free(arms);
        free(post);
        free(scratch);
        return mab_error_set(err, MAB_ENOMEM, "out of memory computing a report");
    }
    mab_report r;
    memset(&r, 0, sizeof r);
    r.experiment = in->experiment ? in->experiment : "";
    r.policy = "";
    r.policy_json = "";
    r.reward_min = in->reward_min;
    r.reward_max = in->reward_max;
    r.model = model_of(in->reward_min, in->reward_max);
    r.draws = MAB_REPORT_DRAWS;
    r.seed = report_seed(r.experiment);
    r.winner_p_best = in->winner_p_best;
    r.winner_expected_loss = in->winner_expected_loss;
    r.n_arms = n;
    r.arm_size = sizeof(mab_report_arm);
    r.arms = arms;
    r.available = 0;
    r.holdout_diff = r.holdout_diff_low = r.holdout_diff_high = NAN;
    r.srm_p_value = NAN;
    r.late_rewards = 0;
    snprintf(r.srm_status, sizeof r.srm_status, "not available: a snapshot given by the caller "
             "(mab_report_compute) holds no probabilities served");
    r.history_size = sizeof(mab_bucket_stats);

    for (size_t k = 0; k < n; k++)
    {
        const mab_arm_stats arm_k = input_arm(in, k);
        post[k] = posterior_of(r.model, &arm_k, in->reward_min, in->reward_max);
    }
    double *theta = scratch, *p_best = scratch + n, *loss = scratch + 2 * n;
    monte_carlo(r.model, post, n, r.seed, theta, p_best, loss);

    for (size_t k = 0; k < n; k++) {
        const mab_arm_stats arm_k = input_arm(in, k), *s = &arm_k;
        mab_report_arm *a = &arms[k];
        a->arm_id = s->arm_id;
        a->pulls = s->pulls;
        a->rewards = s->rewards;
        a->reward_sum = s->reward_sum;
        a->mean = s->pulls ? s->reward_sum / (double)s->pulls : 0.0;
        credible_interval(r.model, &post[k], in->reward_min, in->reward_max, &a->ci_low,
                          &a->ci_high);
        a->p_best = p_best[k];
        a->expected_loss = loss[k];
        a->share_last_bucket = NAN;
        a->late_rewards = 0;
        r.pulls += s->pulls;
        const mab_report_arm *leader = &arms[r.leader];
        if (a->p_best > leader->p_best ||
            (a->p_best == leader->p_best && a->expected_loss < leader->expected_loss))
            r.leader = k;
    }
    const mab_report_arm *leader = &arms[r.leader];
    r.winner = leader->p_best >= r.winner_p_best && leader->expected_loss < r.winner_expected_loss;
    recommend(&r, arms);
    free(post);
    free(scratch);

    size_t caller_size = out->struct_size;
    memcpy(out, &r, caller_size < sizeof r ? caller_size : sizeof r);
    out->struct_size = caller_size;
    return MAB_OK;
}

/* The sample-ratio check (srm.c; mab_stats gathered the ledger's totals
   before), and its warning first in the recommendation on a mismatch. */
static void srm_report(const mab__experiment *x, mab_report *r)
{
    if (!mab__srm_check(x, &r->srm_p_value, r->srm_status, sizeof r->srm_status))
        return;
    r->available |= MAB_REPORT_HAS_SRM;
    if (strncmp(r->srm_status, "mismatch", 8) != 0)
        return;
    char said[MAB_REPORT_TEXT_MAX];
    memcpy(said, r->recommendation, sizeof said);
    snprintf(r->recommendation, sizeof r->recommendation,
             "sample-ratio mismatch: do not trust this report; %s", said);
}

/* ---- history and share from the stored time buckets --------------------- */

/* The walk of mab_history(): the latest `cap` buckets in a ring of rows, a
   row being one bucket's entry per arm. */
typedef struct history_walk {
    size_t n_arms, cap;
    mab_bucket_stats *ring; /* cap rows of n_arms */
    size_t count;           /* distinct buckets visited */
    int64_t current;        /* start of the bucket of the row being filled */
} history_walk;

static int history_visit(void *ctx, size_t arm_index, const char *arm_id,
                         const mab_bucket_stats *bucket)
{
    (void)arm_id;
    history_walk *w = ctx;
    if (arm_index >= w->n_arms)
        return 0;
    if (w->count == 0 || bucket->start != w->current) {
        mab_bucket_stats *row = &w->ring[(w->count % w->cap) * w->n_arms];
        for (size_t k = 0; k < w->n_arms; k++)
            row[k] = (mab_bucket_stats){bucket->start, 0, 0, 0.0, 0.0};
        w->current = bucket->start;
        w->count++;
    }
    w->ring[((w->count - 1) % w->cap) * w->n_arms + arm_index] = *bucket;
    return 0;
}

/* r->history (oldest first) and, from the latest bucket with pulls, each
   arm's share_last_bucket. Only for a store that keeps buckets: otherwise
   this process's own buckets since open would pass for the history. */
static int report_history(mab_engine *e, const mab__experiment *x, size_t cap, mab_report *r,
                          mab_error *err)
{
    r->bucket_seconds = mab_bucket_seconds(e);
    if (!mab_storage_has_buckets(e))
        return MAB_OK;
    history_walk w = {x->n_arms, cap, calloc(cap * x->n_arms, sizeof(mab_bucket_stats)), 0, 0};
    if (!w.ring)
        return mab_error_set(err, MAB_ENOMEM, "out of memory reading the history of %s", x->id);
    int rc = mab_history(e, x->id, INT64_MIN, history_visit, &w, err);
    if (rc != MAB_OK) {
        free(w.ring);
        return rc;
    }
    size_t n = w.count < cap ? w.count : cap;
    mab_bucket_stats *ordered = calloc(n ? n * x->n_arms : 1, sizeof *ordered);
    if (!ordered) {
        free(w.ring);
        return mab_error_set(err, MAB_ENOMEM, "out of memory reading the history of %s", x->id);
    }
    size_t oldest = w.count - n; /* its row in the ring: oldest % cap */
    for (size_t b = 0; b < n; b++)
        memcpy(&ordered[b * x->n_arms], &w.ring[((oldest + b) % cap) * x->n_arms],
               x->n_arms * sizeof *ordered);
    free(w.ring);
    r->available |= MAB_REPORT_HAS_HISTORY;
    r->n_history = n;
    r->history = ordered;
    for (size_t b = n; b-- > 0;) {
        uint64_t pulls = 0;
        for (size_t k = 0; k < x->n_arms; k++)
            pulls += ordered[b * x->n_arms + k].pulls;
        if (pulls == 0)
            continue; /* a bucket of late rewards only: no traffic to share */
        r->available |= MAB_REPORT_HAS_SHARE;
        r->last_bucket_start = ordered[b * x->n_arms].start;
        for (size_t k = 0; k < r->n_arms; k++) {
            mab_report_arm *a = (mab_report_arm *)mab_report_arm_at(r, k);
            a->share_last_bucket = (double)ordered[b * x->n_arms + k].pulls / (double)pulls;
        }
        break;
    }
    return MAB_OK;
}

/* A copy of the rules in force the report owns (freed by mab_report_free). */
static int report_rules(mab_engine *e, const mab__experiment *x, mab_report *r, mab_error *err)
{
    mab_rules_info *rules = calloc(1, sizeof *rules);
    if (!rules)
        return mab_error_set(err, MAB_ENOMEM, "out of memory reading the rules of %s", x->id);
    rules->struct_size = sizeof *rules;
    int rc = mab_rules(e, x->id, rules, err);
    if (rc != MAB_OK) {
        free(rules);
        return rc;
    }
    r->rules = rules;
    return MAB_OK;
}

int mab_report_get(mab_engine *e, const char *experiment, mab_report *out, mab_error *err)
{
    return mab_report_get_buckets(e, experiment, 0, out, err);
}

int mab_report_get_buckets(mab_engine *e, const char *experiment, size_t max_buckets,
                           mab_report *out, mab_error *err)
{
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "mab_report_get: NULL report");
    if (out->struct_size < REPORT_SIZE_0_1)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_report_get: struct_size %zu is smaller than this library's "
                             "first mab_report (%zu)",
                             out->struct_size, (size_t)REPORT_SIZE_0_1);
    /* The history and the rules need room for them in the caller's report:
       a caller built against the first mab_report gets neither (but the
       share of the last bucket, a field of its arms). */
    int with_history = REPORT_HOLDS(out, rules);
    size_t history_max = max_buckets ? max_buckets : MAB_REPORT_HISTORY_DEFAULT;
    if (history_max > MAB_REPORT_HISTORY_MAX)
        return mab_error_set(err, MAB_EINVAL,
                             "report of %s: %zu buckets of history is above the most, %d",
                             experiment ? experiment : "(null)", history_max,
                             MAB_REPORT_HISTORY_MAX);
    /* mab_stats checks the engine, the process and the experiment. */
    size_t n_arms = 0;
    int rc = mab_stats(e, experiment, NULL, 0, &n_arms, err);
    if (rc)
        return rc;
    long x_at = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments,
                                   experiment);
    const mab__experiment *x = &e->experiments[x_at];
    mab_arm_stats *snapshot = calloc(x->n_arms, sizeof *snapshot);
    if (!snapshot)
        return mab_error_set(err, MAB_ENOMEM, "out of memory reporting on %s", x->id);
    snapshot[0].struct_size = sizeof *snapshot;
    /* One call: every arm's totals from the same moment. */
    rc = mab_stats(e, experiment, snapshot, x->n_arms, &n_arms, err);
    if (rc == MAB_OK) {
        mab_report_input in = {
            .struct_size = sizeof in,
            .experiment = x->id,
            .arms = snapshot,
            .n_arms = x->n_arms,
            .reward_min = x->reward_min,
            .reward_max = x->reward_max,
            .winner_p_best = x->winner_p_best,
            .winner_expected_loss = x->winner_expected_loss,
        };
        mab_report r;
        memset(&r, 0, sizeof r);
        r.struct_size = sizeof r;
        rc = mab_report_compute(&in, &r, err);
        if (rc == MAB_OK) {
            /* What the operating rules know (rules.c): late rewards always
               (0 without a window), the holdout comparison when there is one. */
            r.available |= MAB_REPORT_HAS_LATE;
            r.late_rewards = mab__rules_late(x, -1);
            for (size_t i = 0; i < r.n_arms; i++) {
                mab_report_arm *a = (mab_report_arm *)mab_report_arm_at(&r, i);
                a->late_rewards = mab__rules_late(x, (long)i);
            }
            mab_holdout_comparison h = {sizeof h, 0, 0, 0, 0, 0, 0, 0};
            if (x->part->ledger && mab_holdout_compare(e, x->id, &h, NULL) == MAB_OK) {
                r.available |= MAB_REPORT_HAS_HOLDOUT;
                r.holdout_diff = h.difference;
                r.holdout_diff_low = h.ci_low;
                r.holdout_diff_high = h.ci_high;
            }
            srm_report(x, &r);
            r.policy = mab__policy_name(x) ? mab__policy_name(x) : "";
            r.policy_json = x->part->policy_json ? x->part->policy_json : "";
            rc = report_history(e, x, history_max, &r, err);
            if (rc == MAB_OK && with_history)
                rc = report_rules(e, x, &r, err);
            if (rc == MAB_OK && !with_history) {
                /* The share is in the arms, which it has: the rest is not. */
                free((void *)r.history);
                r.history = NULL;
                r.n_history = 0;
            }
        }
        if (rc != MAB_OK) {
            mab_report_free(&r);
        } else {
            size_t caller_size = out->struct_size;
            memcpy(out, &r, caller_size < sizeof r ? caller_size : sizeof r);
            out->struct_size = caller_size;
        }
    }
    free(snapshot);
    return rc;
}

/* ---- JSON ------------------------------------------------------------------ */

/* The shortest text that reads back as exactly v (0.95, not
   0.94999999999999996), or null for what JSON cannot hold. */
static cJSON *json_double(double v)
{
    if (!isfinite(v))
        return cJSON_CreateNull();
    char text[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    return cJSON_CreateRaw(text);
}

static cJSON *json_counter(uint64_t n)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, n);
    return cJSON_CreateRaw(text);
}

/* Add item under key (or to the array when key is NULL); *ok turns 0 on
   any failure, and item is freed then. */
static cJSON *put(int *ok, cJSON *parent, const char *key, cJSON *item)
{
    if (*ok && item && parent &&
        (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item)))
        return item;
    *ok = 0;
    cJSON_Delete(item);
    return NULL;
}

/* The bucket of a history as JSON: its start, its pulls, and per arm the
   counters, rate (reward_sum / pulls of the bucket: rewards counted in the
   bucket, which may answer pulls of earlier ones) and share of its pulls. */
static cJSON *bucket_json(int *ok, const mab_report *r, size_t b)
{
    cJSON *bucket = cJSON_CreateObject();
    uint64_t pulls = 0;
    for (size_t k = 0; k < r->n_arms; k++)
        pulls += mab_report_bucket_at(r, b, k)->pulls;
    put(ok, bucket, "start", json_double((double)mab_report_bucket_at(r, b, 0)->start));
    put(ok, bucket, "pulls", json_counter(pulls));
    cJSON *arms = put(ok, bucket, "arms", cJSON_CreateObject());
    for (size_t k = 0; *ok && k < r->n_arms; k++) {
        const mab_bucket_stats *s = mab_report_bucket_at(r, b, k);
        cJSON *arm = put(ok, arms, mab_report_arm_at(r, k)->arm_id, cJSON_CreateObject());
        put(ok, arm, "pulls", json_counter(s->pulls));
        put(ok, arm, "rewards", json_counter(s->rewards));
        put(ok, arm, "reward_sum", json_double(s->reward_sum));
        put(ok, arm, "rate", s->pulls ? json_double(s->reward_sum / (double)s->pulls)
                                      : cJSON_CreateNull());
        put(ok, arm, "share", pulls ? json_double((double)s->pulls / (double)pulls)
                                    : cJSON_CreateNull());
    }
    return bucket;
}

static cJSON *rules_json(int *ok, const mab_rules_info *rules)
{
    if (!rules)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    put(ok, o, "state", cJSON_CreateString(rules->state));
    put(ok, o, "serve", rules->serve ? cJSON_CreateString(rules->serve) : cJSON_CreateNull());
    put(ok, o, "floor", json_double(rules->floor));
    put(ok, o, "burn_in", json_counter(rules->burn_in));
    cJSON *holdout = NULL;
    if (rules->holdout_share > 0.0) {
        holdout = cJSON_CreateObject();
        put(ok, holdout, "share", json_double(rules->holdout_share));
        put(ok, holdout, "arm", rules->holdout_arm ? cJSON_CreateString(rules->holdout_arm)
                                                   : cJSON_CreateNull());
    }
    put(ok, o, "holdout", holdout ? holdout : cJSON_CreateNull());
    put(ok, o, "attribution_window", json_double((double)rules->attribution_window));
    return o;
}

/* Why a field is null, in words every surface can show. */
static const char *why_not_available(const mab_report *r, unsigned bit)
{
    int from_engine = REPORT_HOLDS(r, rules) && r->rules;
    int has_buckets = r->available & MAB_REPORT_HAS_HISTORY;
    switch (bit) {
    case MAB_REPORT_HAS_SHARE:
    case MAB_REPORT_HAS_HISTORY:
        if (!from_engine)
            return "a report of a snapshot (mab_report_compute) has no time buckets";
        if (!has_buckets)
            return "the storage keeps no time buckets (none configured, or a storage plugin "
                   "older than ABI 1.5)";
        return "no stored time bucket holds pulls yet";
    case MAB_REPORT_HAS_HOLDOUT:
        return from_engine ? "the experiment has no holdout" : "not in a snapshot report";
    case MAB_REPORT_HAS_SRM:
        /* srm_status says why, in the caller's struct when it holds it. */
        return REPORT_HOLDS(r, srm_status) && r->srm_status[0] ? r->srm_status
                                                               : "not available";
    case MAB_REPORT_HAS_LATE:
        return "not in a snapshot report (mab_report_compute)";
    default:
        return "not available";
    }
}

/* What reports gained after the first mab_report: the time-bucket history,
   the rules in force and why each null field is null. Only from a report
   whose struct_size holds those fields. */
static void put_history_and_rules(int *ok, cJSON *doc, cJSON *missing, const mab_report *r)
{
    if (!REPORT_HOLDS(r, rules))
        return;
    put(ok, doc, "bucket_seconds", json_double((double)r->bucket_seconds));
    put(ok, doc, "last_bucket_start", r->available & MAB_REPORT_HAS_SHARE
                                          ? json_double((double)r->last_bucket_start)
                                          : cJSON_CreateNull());
    cJSON *history = NULL;
    if (r->available & MAB_REPORT_HAS_HISTORY) {
        history = cJSON_CreateArray();
        for (size_t b = 0; *ok && b < r->n_history; b++)
            put(ok, history, NULL, bucket_json(ok, r, b));
    } else {
        put(ok, missing, NULL, cJSON_CreateString("history"));
    }
    put(ok, doc, "history", history ? history : cJSON_CreateNull());
    put(ok, doc, "rules", rules_json(ok, r->rules));
    static const struct {
        unsigned bit;
        const char *name;
    } fields[] = {{MAB_REPORT_HAS_SHARE, "share_last_bucket"},
                  {MAB_REPORT_HAS_HISTORY, "history"},
                  {MAB_REPORT_HAS_HOLDOUT, "holdout"},
                  {MAB_REPORT_HAS_SRM, "srm_p_value"},
                  {MAB_REPORT_HAS_LATE, "late_rewards"}};
    cJSON *why = put(ok, doc, "not_available_reasons", cJSON_CreateObject());
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!(r->available & fields[i].bit))
            put(ok, why, fields[i].name,
                cJSON_CreateString(why_not_available(r, fields[i].bit)));
}

int mab_report_json(const mab_report *r, char **out, mab_error *err)
{
    if (!r || !out || !r->arms || r->n_arms == 0)
        return mab_error_set(err, MAB_EINVAL, "mab_report_json: NULL argument or no arms");
    int ok = 1;
    cJSON *doc = cJSON_CreateObject();
    put(&ok, doc, "experiment", cJSON_CreateString(r->experiment ? r->experiment : ""));
    put(&ok, doc, "policy", cJSON_CreateString(r->policy ? r->policy : ""));
    cJSON *params = r->policy_json && r->policy_json[0] ? cJSON_Parse(r->policy_json) : NULL;
    put(&ok, doc, "policy_params", params ? params : cJSON_CreateNull());
    put(&ok, doc, "reward_min", json_double(r->reward_min));
    put(&ok, doc, "reward_max", json_double(r->reward_max));
    put(&ok, doc, "model", cJSON_CreateString(r->model == MAB_REPORT_BETA ? "beta" : "normal"));
    put(&ok, doc, "draws", json_counter(r->draws));
    cJSON *rule = put(&ok, doc, "winner_rule", cJSON_CreateObject());
    put(&ok, rule, "p_best", json_double(r->winner_p_best));
    put(&ok, rule, "expected_loss", json_double(r->winner_expected_loss));
    put(&ok, doc, "pulls", json_counter(r->pulls));
    const mab_report_arm *leader = mab_report_arm_at(r, r->leader);
    put(&ok, doc, "leader", leader ? cJSON_CreateString(leader->arm_id) : cJSON_CreateNull());
    put(&ok, doc, "winner", cJSON_CreateBool(r->winner));
    put(&ok, doc, "recommendation", cJSON_CreateString(r->recommendation));
    cJSON *arms = put(&ok, doc, "arms", cJSON_CreateObject());
    for (size_t i = 0; ok && i < r->n_arms; i++) {
        const mab_report_arm *a = mab_report_arm_at(r, i);
        cJSON *arm = put(&ok, arms, a->arm_id, cJSON_CreateObject());
        put(&ok, arm, "pulls", json_counter(a->pulls));
        put(&ok, arm, "rewards", json_counter(a->rewards));
        put(&ok, arm, "reward_sum", json_double(a->reward_sum));
        put(&ok, arm, "mean", json_double(a->mean));
        put(&ok, arm, "ci_low", json_double(a->ci_low));
        put(&ok, arm, "ci_high", json_double(a->ci_high));
        put(&ok, arm, "p_best", json_double(a->p_best));
        put(&ok, arm, "expected_loss", json_double(a->expected_loss));
        put(&ok, arm, "share_last_bucket", r->available & MAB_REPORT_HAS_SHARE
                                               ? json_double(a->share_last_bucket)
                                               : cJSON_CreateNull());
        put(&ok, arm, "late_rewards", r->available & MAB_REPORT_HAS_LATE
                                          ? json_counter(a->late_rewards)
                                          : cJSON_CreateNull());
    }
    cJSON *holdout = NULL;
    if (r->available & MAB_REPORT_HAS_HOLDOUT) {
        holdout = cJSON_CreateObject();
        put(&ok, holdout, "diff", json_double(r->holdout_diff));
        put(&ok, holdout, "diff_low", json_double(r->holdout_diff_low));
        put(&ok, holdout, "diff_high", json_double(r->holdout_diff_high));
    }
    put(&ok, doc, "holdout", holdout ? holdout : cJSON_CreateNull());
    put(&ok, doc, "srm_p_value", r->available & MAB_REPORT_HAS_SRM ? json_double(r->srm_p_value)
                                                                   : cJSON_CreateNull());
    /* A report from a caller built before srm_status has none. */
    put(&ok, doc, "srm_status",
        cJSON_CreateString(r->struct_size >= offsetof(mab_report, srm_status) +
                                                   sizeof r->srm_status
                               ? r->srm_status
                               : "not available"));
    put(&ok, doc, "late_rewards", r->available & MAB_REPORT_HAS_LATE ? json_counter(r->late_rewards)
                                                                     : cJSON_CreateNull());
    cJSON *missing = put(&ok, doc, "not_available", cJSON_CreateArray());
    static const struct {
        unsigned bit;
        const char *name;
    } fields[] = {{MAB_REPORT_HAS_SHARE, "share_last_bucket"},
                  {MAB_REPORT_HAS_HOLDOUT, "holdout"},
                  {MAB_REPORT_HAS_SRM, "srm_p_value"},
                  {MAB_REPORT_HAS_LATE, "late_rewards"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!(r->available & fields[i].bit))
            put(&ok, missing, NULL, cJSON_CreateString(fields[i].name));
    put_history_and_rules(&ok, doc, missing, r);
    char *text = ok ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return mab_error_set(err, MAB_ENOMEM, "out of memory writing a report as JSON");
    *out = text;
    return MAB_OK;
}

void mab_report_json_free(char *json)
{
    cJSON_free(json);
}

const mab_report_arm *mab_report_arm_at(const mab_report *report, size_t i)
{
    if (!report || !report->arms || i >= report->n_arms)
        return NULL;
    return (const mab_report_arm *)((const char *)report->arms + i * report->arm_size);
}

const mab_bucket_stats *mab_report_bucket_at(const mab_report *report, size_t b, size_t i)
{
    if (!report || !REPORT_HOLDS(report, history) || !report->history ||
        b >= report->n_history || i >= report->n_arms)
        return NULL;
    return (const mab_bucket_stats *)((const char *)report->history +
                                      (b * report->n_arms + i) * report->history_size);
}

void mab_report_free(mab_report *report)
{
    if (!report)
        return;
    free((void *)report->arms);
    report->arms = NULL;
    report->n_arms = 0;
    if (REPORT_HOLDS(report, rules)) {
        free((void *)report->history);
        free((void *)report->rules);
        report->history = NULL;
        report->n_history = 0;
        report->rules = NULL;
    }
}
