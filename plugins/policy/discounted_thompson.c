/*
 * discounted_thompson.c - discounted Thompson sampling (Raj & Kalyani 2017)
 * in wall-clock form, policy ABI 2, for traffic whose conversion rates
 * drift: every observation's weight halves every `half_life` seconds, and
 * arm i is drawn from Beta(alpha0 + S_i, beta0 + F_i) with S_i, F_i the
 * decayed success and failure masses at the time of the choice.
 *
 * Params: "half_life" (integer seconds in [1, 1e9], default 86400);
 * "alpha0", "beta0" (in [1e-9, 1e6], default 1): the Beta prior;
 * "probability_draws" (integer in [0, 100000], default 256): Monte Carlo
 * draws behind the reported probability (0: NAN, no cost).
 *
 * Decay, additively (DESIGN.md decision 10, ALGORITHMS.md): with
 * tau = half_life / ln 2, an event at time t of mass m counts
 * m exp(-(now - t) / tau) at time now. update() cannot scale what is
 * stored, so it adds m exp((t - t0) / tau) in a fixed frame t0 and choose()
 * multiplies by exp(-(now - t0) / tau). A store-wide re-base of t0 (the
 * maintenance step ALGORITHMS.md describes) cannot be done from a plugin:
 * update() only writes deltas and never sees the totals. So the frames are
 * fixed in advance, one per epoch:
 *  - time is cut into epochs of E = 1300 tau from the origin T0 =
 *    2026-01-01T00:00:00Z (a constant); epoch k has its frame t0 at its
 *    middle, so within it weights stay in [e^-650, e^650] (about 1e-282 to
 *    1e282: normal doubles, and room for 1e26 events before a sum could
 *    overflow);
 *  - each epoch has its own (S, F) pair per arm: the statistics are
 *    2 * EPOCHS doubles per arm, EPOCHS = min(64, ceil(100 years / E))
 *    (the cap bounds what every choose copies: 128 doubles per arm);
 *  - choose() reads only the current and the previous epoch: anything older
 *    is more than 1300 tau old and weighs less than e^-1300 (0 in doubles),
 *    so old epochs need no clearing. They cannot be reused either (a reused
 *    pair would mix frames), which is why the retention is finite:
 *    [T0, T0 + EPOCHS * E): 100 years for half_life above 26290 s (7.3 hours),
 *    else 64 * 1300 tau = 120,000 half-lives (13.7 years at 1 hour, 2.3
 *    years at 10 minutes, 83 days at 1 minute). Outside it
 *    update() refuses the event (MAB_EINVAL: nothing is recorded) and
 *    choose() fails (MAB_ERANGE).
 * The stored sums mean something only for one half_life, so half_life is
 * the layout's stats_version: changing it starts the statistics afresh.
 *
 * Pulls and rewards: as the counters count a pull as a reward of 0 until it
 * is rewarded, a pull at time t adds its weight w(t) to F, and a reward r at
 * time t' moves r w(t') from F to S (S += r w(t'), F -= r w(t')). The
 * reward event carries its own time, not its pull's (the cookie's
 * assignment time does not reach update), so with a delay d between pull
 * and reward the failure mass left is w(t)(1 - r e^(d/tau)) instead of
 * w(t)(1 - r): slightly negative for r = 1, a bias of order d / tau that
 * vanishes when conversions arrive well within a half-life. S and F are
 * read clamped at 0. Events stamped after the choice's time (skewed
 * clocks) weigh more than 1; the exponent is capped so nothing overflows.
 *
 * Probability (estimated, flagged): the share of probability_draws fresh
 * Thompson draws (this thread's stream) that the chosen arm leads, at least
 * 1 / (2 draws). With ABI 2.2's in->probabilities, every arm's share of
 * the same draws (summing to 1; the floor as floor_chosen() in
 * beta_draws.h says), of which the choice's is probabilities[arm].
 * explain(): each arm's decayed posterior mean.
 */
#include <math.h>
#include <stdlib.h>

#include "beta_draws.h"
#include "mab/policy.h"

#define DT_ORIGIN_S 1767225600.0 /* 2026-01-01T00:00:00Z */
#define DT_EPOCH_TAUS 1300.0
#define DT_HORIZON_S (100.0 * 365.25 * 86400.0)
#define DT_MAX_EPOCHS 64

typedef struct dt_state {
    double tau;       /* seconds */
    double epoch_s;   /* E, seconds */
    size_t epochs;    /* EPOCHS */
    double alpha0;
    double beta0;
    size_t probability_draws;
} dt_state;

static int dt_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                     mab_error *err)
{
    const mab_core_api *api = init->api;
    int64_t half_life, draws;
    double alpha0, beta0;
    int rc = api->params_int(init->params, "half_life", 86400, 1, 1000000000, &half_life);
    if (rc != MAB_OK ||
        (rc = api->params_double(init->params, "alpha0", 1.0, 1e-9, 1e6, &alpha0)) != MAB_OK ||
        (rc = api->params_double(init->params, "beta0", 1.0, 1e-9, 1e6, &beta0)) != MAB_OK ||
        (rc = api->params_int(init->params, "probability_draws", 256, 0, 100000, &draws)) !=
            MAB_OK)
        return rc;
    dt_state *s = malloc(sizeof *s);
    if (!s)
        return api->error_set(err, MAB_ENOMEM, "discounted_thompson: out of memory");
    s->tau = (double)half_life / log(2.0);
    s->epoch_s = DT_EPOCH_TAUS * s->tau;
    double epochs = ceil(DT_HORIZON_S / s->epoch_s);
    s->epochs = epochs > DT_MAX_EPOCHS ? DT_MAX_EPOCHS : epochs < 1.0 ? 1 : (size_t)epochs;
    s->alpha0 = alpha0;
    s->beta0 = beta0;
    s->probability_draws = (size_t)draws;
    layout->arm_stats = 2 * s->epochs;
    layout->experiment_stats = 0;
    layout->stats_version = (uint32_t)half_life;
    *state = s;
    return MAB_OK;
}

static void dt_destroy(void *state)
{
    free(state);
}

/* Seconds since T0 of a time in nanoseconds since the Unix epoch, and its
   epoch; -1 outside the retention. */
static long dt_epoch(const dt_state *s, int64_t time_ns, double *since_origin)
{
    *since_origin = (double)time_ns * 1e-9 - DT_ORIGIN_S;
    double k = floor(*since_origin / s->epoch_s);
    return k >= 0.0 && k < (double)s->epochs ? (long)k : -1;
}

static int dt_update(const void *state, const mab_policy_event *ev, double *arm_delta,
                     double *experiment_delta)
{
    const dt_state *s = state;
    (void)experiment_delta;
    double since;
    long k = dt_epoch(s, ev->time_ns, &since);
    if (k < 0)
        return MAB_EINVAL;
    double middle = ((double)k + 0.5) * s->epoch_s;
    double w = exp((since - middle) / s->tau); /* in [e^-650, e^650] */
    if (ev->kind == MAB_EVENT_PULL) {
        arm_delta[2 * k + 1] = w;
    } else {
        arm_delta[2 * k] = ev->reward * w;
        arm_delta[2 * k + 1] = -ev->reward * w;
    }
    return MAB_OK;
}

/* value * exp(shift), computed as a logarithm so that neither factor
   overflows on its own; capped far below the largest double. */
static double dt_scale(double value, double shift)
{
    if (value == 0.0)
        return 0.0;
    double e = log(fabs(value)) + shift;
    if (e > 700.0)
        e = 700.0;
    return copysign(exp(e), value);
}

/* Decayed (S, F) of every arm at in->time_ns into the Beta shapes a, b;
   MAB_ERANGE outside the retention. */
static int dt_posteriors(const dt_state *s, const mab_policy_input *in, double *a, double *b)
{
    double since;
    long k = dt_epoch(s, in->time_ns, &since);
    if (k < 0)
        return MAB_ERANGE;
    size_t per_arm = 2 * s->epochs;
    for (size_t i = 0; i < in->n_arms; i++) {
        const double *st = in->arm_stats + i * per_arm;
        double successes = 0.0, failures = 0.0;
        for (long j = k > 0 ? k - 1 : 0; j <= k; j++) {
            double shift = (((double)j + 0.5) * s->epoch_s - since) / s->tau;
            successes += dt_scale(st[2 * j], shift);
            failures += dt_scale(st[2 * j + 1], shift);
        }
        a[i] = s->alpha0 + fmax(0.0, successes);
        b[i] = s->beta0 + fmax(0.0, failures);
    }
    return MAB_OK;
}

#define DT_STACK_ARMS 64

static int dt_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    const dt_state *s = state;
    size_t n = in->n_arms;
    double stack[2 * DT_STACK_ARMS];
    size_t count_stack[DT_STACK_ARMS];
    int small = n <= DT_STACK_ARMS;
    double *a = small ? stack : malloc(2 * n * sizeof *a);
    size_t *counts = small ? count_stack : malloc(n * sizeof *counts);
    if (!a || !counts) {
        if (!small) {
            free(a);
            free(counts);
        }
        return MAB_ENOMEM;
    }
    double *b = a + n;
    int rc = dt_posteriors(s, in, a, b);
    if (rc == MAB_OK) {
        out->arm = beta_draw_leader(in->api, in->rng, a, b, n, n);
        out->estimated = 1;
        out->probability = NAN;
        if (s->probability_draws > 0) {
            beta_leader_counts(in->api, in->rng, a, b, n, s->probability_draws, counts);
            out->probability = leader_shares(counts, n, s->probability_draws, out->arm,
                                             input_probabilities(in));
        }
    }
    if (!small) {
        free(a);
        free(counts);
    }
    return rc;
}

/* Scores: each arm's posterior mean under the decayed masses. */
static int dt_explain(const void *state, const mab_policy_input *in, double *values, int *kind)
{
    size_t n = in->n_arms;
    double *b = malloc(n * sizeof *b);
    if (!b)
        return MAB_ENOMEM;
    int rc = dt_posteriors(state, in, values, b);
    for (size_t i = 0; rc == MAB_OK && i < n; i++)
        values[i] = values[i] / (values[i] + b[i]);
    free(b);
    *kind = MAB_EXPLAIN_SCORES;
    return rc;
}

static const mab_policy2 dt_policy = {
    MAB_POLICY2_HEADER, "discounted_thompson",
    "discounted Thompson sampling: Beta posteriors of success and failure masses halving "
    "every half_life seconds (policy ABI 2)",
    1, dt_create, dt_destroy, dt_update, dt_choose, dt_explain,
};
MAB_POLICY2_DEFINE(dt_policy)
