/*
 * simulate.c - simulated visitors, runs in parallel, policy comparisons.
 * See simulate.h for the units and how seeds are derived.
 */
#include "simulate.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mab/rng.h"

/* ---- the arms ---------------------------------------------------------- */

/* Mean of N(m, s) clamped to [lo, hi]. */
static double clamped_normal_mean(double m, double s, double lo, double hi)
{
    double a = (lo - m) / s, b = (hi - m) / s;
    double cdf_a = 0.5 * erfc(-a / M_SQRT2), cdf_b = 0.5 * erfc(-b / M_SQRT2);
    double pdf_a = exp(-0.5 * a * a) / sqrt(2.0 * M_PI);
    double pdf_b = exp(-0.5 * b * b) / sqrt(2.0 * M_PI);
    return lo * cdf_a + hi * (1.0 - cdf_b) + m * (cdf_b - cdf_a) + s * (pdf_a - pdf_b);
}

int sim_bandit_init(sim_bandit *b, sim_kind kind, size_t n_arms, const double *param,
                    const double *sd, double reward_min, double reward_max, char *why,
                    size_t why_size)
{
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->n_arms = n_arms;
    b->reward_min = reward_min;
    b->reward_max = reward_max;
    double width = reward_max - reward_min;
    if (n_arms == 0 || !(width > 0) || !isfinite(width)) {
        snprintf(why, why_size, "no arms or an empty reward range");
        return -1;
    }
    b->param = calloc(n_arms, sizeof *b->param);
    b->mean = calloc(n_arms, sizeof *b->mean);
    b->sd = kind == SIM_GAUSSIAN ? calloc(n_arms, sizeof *b->sd) : NULL;
    if (!b->param || !b->mean || (kind == SIM_GAUSSIAN && !b->sd)) {
        sim_bandit_free(b);
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n_arms; i++) {
        double p = param[i];
        b->param[i] = p;
        if (kind == SIM_BERNOULLI) {
            if (!(p >= 0 && p <= 1)) {
                snprintf(why, why_size, "arm %zu: click probability %g is outside [0, 1]",
                         i + 1, p);
                sim_bandit_free(b);
                return -1;
            }
            /* A click counts reward_max; a visitor who does not click sends
               nothing, which the engine counts as the range's minimum. */
            b->mean[i] = p;
        } else {
            double s = sd[i];
            if (!(p >= reward_min && p <= reward_max)) {
                snprintf(why, why_size, "arm %zu: mean %g is outside the reward range [%g, %g]",
                         i + 1, p, reward_min, reward_max);
                sim_bandit_free(b);
                return -1;
            }
            if (!(s > 0) || !isfinite(s)) {
                snprintf(why, why_size, "arm %zu: standard deviation %g is not positive", i + 1,
                         s);
                sim_bandit_free(b);
                return -1;
            }
            b->sd[i] = s;
            b->mean[i] =
                (clamped_normal_mean(p, s, reward_min, reward_max) - reward_min) / width;
        }
        if (i == 0 || b->mean[i] > b->mean[b->best])
            b->best = i;
    }
    b->best_mean = b->mean[b->best];
    return 0;
}

void sim_bandit_free(sim_bandit *b)
{
    free(b->param);
    free(b->sd);
    free(b->mean);
    b->param = b->sd = b->mean = NULL;
}

bool sim_is_best(const sim_bandit *b, size_t arm)
{
    return b->mean[arm] >= b->best_mean;
}

/* KL divergence between Bernoulli(p) and Bernoulli(q). */
static double bernoulli_kl(double p, double q)
{
    if ((q <= 0 && p > 0) || (q >= 1 && p < 1))
        return INFINITY;
    double kl = 0;
    if (p > 0)
        kl += p * log(p / q);
    if (p < 1)
        kl += (1 - p) * log((1 - p) / (1 - q));
    return kl;
}

double sim_lai_robbins_rate(const sim_bandit *b)
{
    double rate = 0, width = b->reward_max - b->reward_min;
    for (size_t i = 0; i < b->n_arms; i++) {
        double delta = b->best_mean - b->mean[i];
        if (delta <= 0)
            continue;
        double kl;
        if (b->kind == SIM_BERNOULLI) {
            kl = bernoulli_kl(b->mean[i], b->best_mean);
        } else {
            double s = b->sd[i] / width;
            kl = delta * delta / (2 * s * s);
        }
        if (isfinite(kl) && kl > 0)
            rate += delta / kl;
    }
    return rate;
}

double sim_auer_bound(const sim_bandit *b, uint64_t t)
{
    double sum_inverse = 0, sum_delta = 0;
    for (size_t i = 0; i < b->n_arms; i++) {
        double delta = b->best_mean - b->mean[i];
        if (delta <= 0)
            continue;
        sum_inverse += 1 / delta;
        sum_delta += delta;
    }
    return 8 * log((double)t) * sum_inverse + (1 + M_PI * M_PI / 3) * sum_delta;
}

/* ---- seeds ------------------------------------------------------------- */

/* SplitMix64's finaliser: nearby inputs give unrelated outputs. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

uint64_t sim_engine_seed(uint64_t seed, uint64_t run)
{
    return mix64(seed + GOLDEN * (2 * run + 1));
}

/* Arm `arm`'s reward stream in run `run`: apart from the engine's, so that
   the rewards do not depend on how many numbers the policy draws. */
static uint64_t arm_seed(uint64_t seed, uint64_t run, size_t arm)
{
    return mix64(mix64(seed ^ 0x5349d2c1b0a7e6f3ULL) + GOLDEN * (2 * run + 2)) +
           GOLDEN * (uint64_t)(arm + 1);
}

/* ---- scenarios --------------------------------------------------------- */

int sim_scenario_check(const sim_scenario *sc, const sim_bandit *b, char *why, size_t why_size)
{
    bool moving = sc->change_at || sc->drift != 0 || sc->context_dim;
    if (moving && b->kind != SIM_BERNOULLI) {
        snprintf(why, why_size, "--change-at, --drift and --context need Bernoulli arms "
                                "(--probs)");
        return -1;
    }
    if (!(sc->rate > 0) || !isfinite(sc->rate)) {
        snprintf(why, why_size, "the visitor rate %g is not a positive number", sc->rate);
        return -1;
    }
    if (sc->change_at) {
        if (!sc->param_after) {
            snprintf(why, why_size, "--change-at needs --probs-after");
            return -1;
        }
        for (size_t i = 0; i < b->n_arms; i++)
            if (!(sc->param_after[i] >= 0 && sc->param_after[i] <= 1)) {
                snprintf(why, why_size, "--probs-after value %zu (%g) is not a probability in "
                                        "[0, 1]",
                         i + 1, sc->param_after[i]);
                return -1;
            }
    } else if (sc->param_after) {
        snprintf(why, why_size, "--probs-after needs --change-at");
        return -1;
    }
    if (!(sc->drift >= 0 && sc->drift <= 1)) {
        snprintf(why, why_size, "the drift amplitude %g is not in [0, 1]", sc->drift);
        return -1;
    }
    if (sc->drift != 0 && (!(sc->drift_period > 0) || !isfinite(sc->drift_period))) {
        snprintf(why, why_size, "the drift period %g s is not a positive number",
                 sc->drift_period);
        return -1;
    }
    if (!(sc->delay >= 0) || !isfinite(sc->delay)) {
        snprintf(why, why_size, "the mean delay %g is not a non-negative number", sc->delay);
        return -1;
    }
    if (sc->workers > SIM_WORKERS_MAX) {
        snprintf(why, why_size, "--workers %u is more than %u", sc->workers, SIM_WORKERS_MAX);
        return -1;
    }
    if (sc->workers > 1 && sc->refresh_ms == 0) {
        snprintf(why, why_size, "--workers needs --refresh MS (a positive number)");
        return -1;
    }
    if (sc->workers <= 1 && sc->refresh_ms) {
        snprintf(why, why_size, "--refresh needs --workers N with N >= 2");
        return -1;
    }
    if (sc->context_dim > SIM_CONTEXT_MAX) {
        snprintf(why, why_size, "--context linear:%u has more than %d features",
                 sc->context_dim, SIM_CONTEXT_MAX);
        return -1;
    }
    return 0;
}

double sim_sigmoid(double z)
{
    return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

void sim_context_theta(uint64_t seed, size_t n_arms, unsigned dim, double *theta)
{
    mab_rng *rng = mab_rng_create(mix64(seed ^ 0x74686574615f7631ULL));
    for (size_t i = 0; i < n_arms * dim; i++)
        theta[i] = rng ? mab_rng_normal(rng) : 0.0;
    mab_rng_destroy(rng);
}

/* The features' names "x0", "x1", ... */
static const char *const feature_names[SIM_CONTEXT_MAX] = {
    "x0",  "x1",  "x2",  "x3",  "x4",  "x5",  "x6",  "x7",  "x8",  "x9",  "x10",
    "x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21",
    "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "x31"};

const char *sim_feature_name(unsigned i)
{
    return i < SIM_CONTEXT_MAX ? feature_names[i] : NULL;
}

/* The time of visitor `step` (from 1): SIM_EPOCH_NS + (step - 1) / rate s. */
static int64_t visitor_time_ns(const sim_scenario *sc, double step)
{
    return SIM_EPOCH_NS + (int64_t)llround((step - 1) / sc->rate * 1e9);
}

/* Expected rewards (scaled) of every arm for visitor `step`, with features x. */
static void current_means(const sim_bandit *b, const sim_scenario *sc, const double *theta,
                          uint64_t step, const double *x, double *mu)
{
    size_t k = b->n_arms;
    if (sc->context_dim) {
        for (size_t a = 0; a < k; a++) {
            double z = -2;
            for (unsigned d = 0; d < sc->context_dim; d++)
                z += theta[a * sc->context_dim + d] * x[d];
            mu[a] = sim_sigmoid(z);
        }
        return;
    }
    const double *base = sc->change_at && step > sc->change_at ? sc->param_after : NULL;
    double seconds = (double)(step - 1) / sc->rate;
    for (size_t a = 0; a < k; a++) {
        double m = base ? base[a] : b->mean[a];
        if (sc->drift != 0) {
            m += sc->drift *
                 sin(2 * M_PI * (seconds / sc->drift_period + (double)a / (double)k));
            m = m < 0 ? 0 : m > 1 ? 1 : m;
        }
        mu[a] = m;
    }
}

bool sim_scenario_static(const sim_scenario *sc)
{
    return !sc || (!sc->change_at && sc->drift == 0 && !sc->context_dim);
}

/* ---- delayed rewards: a binary heap by arrival, ties by order ---------- */

typedef struct pending {
    double due;    /* in visitors: delivered before the first visitor >= due */
    uint64_t seq;  /* order of the clicks, for ties */
    unsigned worker;
    size_t arm;
    double value, probability;
    double *features; /* context_dim values, or NULL */
} pending;

typedef struct pending_heap {
    pending *items;
    size_t n, cap;
} pending_heap;

static bool pending_before(const pending *a, const pending *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int heap_push(pending_heap *h, const pending *p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        pending *grown = realloc(h->items, cap * sizeof *grown);
        if (!grown)
            return -1;
        h->items = grown;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->items[i] = *p;
    while (i > 0 && pending_before(&h->items[i], &h->items[(i - 1) / 2])) {
        pending t = h->items[i];
        h->items[i] = h->items[(i - 1) / 2];
        h->items[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static pending heap_pop(pending_heap *h)
{
    pending top = h->items[0];
    h->items[0] = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && pending_before(&h->items[l], &h->items[m]))
            m = l;
        if (r < h->n && pending_before(&h->items[r], &h->items[m]))
            m = r;
        if (m == i)
            break;
        pending t = h->items[i];
        h->items[i] = h->items[m];
        h->items[m] = t;
        i = m;
    }
    return top;
}

static void heap_free(pending_heap *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->items[i].features);
    free(h->items);
}

/* ---- one run ----------------------------------------------------------- */

int64_t sim_clock_read(void *clock_ctx)
{
    return atomic_load((_Atomic int64_t *)clock_ctx);
}

/* Streams of a run: besides the arms' reward streams, each arm's delays
   (the n-th click of an arm waits as long whatever the policy) and the
   visitors' features (visitor n has the same features for every policy). */
static uint64_t delay_seed(uint64_t seed, uint64_t run, size_t arm)
{
    return mix64(arm_seed(seed, run, arm) ^ 0x64656c6179733031ULL);
}

static uint64_t context_seed(uint64_t seed, uint64_t run)
{
    return mix64(mix64(seed ^ 0x636f6e7465787431ULL) + GOLDEN * (2 * run + 2));
}

/* Send a reward through engine w, at the simulated time `due`. */
static int send_reward(mab_engine *engine, const sim_run_spec *spec, const sim_scenario *sc,
                       const char *arm_id, const pending *p, mab_error *err)
{
    if (spec->clock)
        atomic_store(spec->clock, visitor_time_ns(sc, p->due));
    /* With the probability of the choice, as a host passes its cookie's
       (policies such as EXP3 weight rewards by it), and the visitor's
       features (a contextual policy learns from them). */
    mab_context ctx = {sizeof ctx, p->features ? feature_names : NULL, p->features,
                       p->features ? sc->context_dim : 0, 0, p->probability, 0, 0};
    return mab_reward_ctx(engine, spec->experiment, arm_id, p->value, &ctx, err);
}

static void count_sent(sim_run_result *out, const pending *p)
{
    out->total_reward += p->value;
    if (out->rewards)
        out->rewards[p->arm]++;
    if (out->reward_sum)
        out->reward_sum[p->arm] += p->value;
}

int sim_run_workers(mab_engine *const *engines, size_t n_engines, const sim_run_spec *spec,
                    sim_run_result *out, mab_error *err)
{
    static const sim_scenario stationary = {.rate = SIM_DEFAULT_RATE};
    const sim_bandit *b = spec->bandit;
    const sim_scenario *sc = spec->scenario ? spec->scenario : &stationary;
    size_t k = b->n_arms;
    unsigned dim = sc->context_dim;
    if (n_engines == 0)
        return mab_error_set(err, MAB_EINVAL, "simulation: no engine");
    mab_arm_stats *stats = calloc(k, sizeof *stats);
    mab_rng **streams = calloc(k, sizeof *streams);
    mab_rng **delays = calloc(k, sizeof *delays);
    double *mu = calloc(k, sizeof *mu);
    double *theta = calloc(dim ? k * dim : 1, sizeof *theta);
    double *x = calloc(dim ? dim : 1, sizeof *x);
    double *next_reload = calloc(n_engines, sizeof *next_reload);
    uint64_t *interval_pulls = calloc(k, sizeof *interval_pulls);
    mab_rng *features = dim ? mab_rng_create(context_seed(spec->seed, spec->run)) : NULL;
    pending_heap heap = {0};
    int rc = stats && streams && delays && mu && theta && x && next_reload && interval_pulls &&
                     (!dim || features)
                 ? MAB_OK
                 : mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (stats)
        stats[0].struct_size = sizeof *stats;
    size_t n_arms = 0;
    if (rc == MAB_OK)
        rc = mab_stats(engines[0], spec->experiment, stats, k, &n_arms, err);
    if (rc == MAB_OK && n_arms != k)
        rc = mab_error_set(err, MAB_EINVAL, "experiment \"%s\" has %zu arms, the simulation %zu",
                           spec->experiment, n_arms, k);
    for (size_t a = 0; rc == MAB_OK && a < k; a++) {
        streams[a] = mab_rng_create(arm_seed(spec->seed, spec->run, a));
        delays[a] = mab_rng_create(delay_seed(spec->seed, spec->run, a));
        if (!streams[a] || !delays[a])
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    if (rc == MAB_OK && dim)
        sim_context_theta(spec->seed, k, dim, theta);
    if (rc == MAB_OK) {
        if (out->pulls)
            memset(out->pulls, 0, k * sizeof *out->pulls);
        if (out->rewards)
            memset(out->rewards, 0, k * sizeof *out->rewards);
        if (out->reward_sum)
            memset(out->reward_sum, 0, k * sizeof *out->reward_sum);
        out->total_reward = 0;
        out->regret = 0;
        out->best_pulls = 0;
        out->late = 0;
    }
    /* Worker w reloads every refresh_ms of simulated time, the workers'
       phases spread over the period (as independent processes are). */
    double refresh_visitors = (double)sc->refresh_ms / 1000.0 * sc->rate;
    for (size_t w = 0; w < n_engines; w++)
        next_reload[w] = refresh_visitors * (double)(w + 1) / (double)n_engines;

    size_t next_checkpoint = 0;
    uint64_t last_checkpoint = 0, seq = 0;
    double regret = 0;
    for (uint64_t step = 1; rc == MAB_OK && step <= spec->steps; step++) {
        /* Conversions due by now arrive first, in order of arrival. */
        while (rc == MAB_OK && heap.n && heap.items[0].due <= (double)step) {
            pending p = heap_pop(&heap);
            rc = send_reward(engines[p.worker], spec, sc, stats[p.arm].arm_id, &p, err);
            if (rc == MAB_OK)
                count_sent(out, &p);
            if (rc == MAB_OK && n_engines > 1)
                rc = mab_flush(engines[p.worker], err);
            free(p.features);
        }
        if (rc != MAB_OK)
            break;
        /* Reloads due by now: the reloading engine reads the store, which
           holds everything every engine did so far (mab_import of nothing:
           write, then reload the counters and statistics). */
        double elapsed = (double)(step - 1);
        for (size_t w = 0; rc == MAB_OK && n_engines > 1 && w < n_engines; w++) {
            if (elapsed < next_reload[w])
                continue;
            rc = mab_import(engines[w], NULL, 0, 0, err);
            while (next_reload[w] <= elapsed)
                next_reload[w] += refresh_visitors;
        }
        if (rc != MAB_OK)
            break;
        if (spec->clock)
            atomic_store(spec->clock, visitor_time_ns(sc, (double)step));
        for (unsigned d = 0; d < dim; d++)
            x[d] = mab_rng_normal(features);
        unsigned w = (unsigned)((step - 1) % n_engines);
        mab_context ctx = {sizeof ctx, dim ? feature_names : NULL, dim ? x : NULL, dim, 0, 0, 0, 0};
        mab_choice choice = MAB_STRUCT_INIT(mab_choice);
        rc = mab_choose_ctx(engines[w], spec->experiment, &ctx, &choice, NULL, err);
        /* Workers write after every call. One thread calls them all, and an
           engine called from a thread in turn with more engines than the
           core's per-thread slot cache takes another slot each time: what
           the old slot holds stays out of sight until the slot publishes,
           which the core decides by the machine's clock. Writing publishes
           every slot, so each engine sees all it did, as a worker process
           of its own does, and the run stays reproducible. */
        if (rc == MAB_OK && n_engines > 1)
            rc = mab_flush(engines[w], err);
        if (rc != MAB_OK)
            break;
        size_t a = choice.arm_index;
        if (a >= k) {
            rc = mab_error_set(err, MAB_EPLUGIN, "experiment \"%s\" chose arm %zu of %zu",
                               spec->experiment, a, k);
            break;
        }
        current_means(b, sc, theta, step, x, mu);
        double best = mu[0];
        for (size_t i = 1; i < k; i++)
            best = mu[i] > best ? mu[i] : best;
        regret += best - mu[a];
        if (mu[a] >= best)
            out->best_pulls++;

        double value = 0;
        bool send;
        if (b->kind == SIM_BERNOULLI) {
            send = mab_rng_uniform(streams[a]) < mu[a];
            value = b->reward_max;
        } else {
            send = true;
            value = b->param[a] + b->sd[a] * mab_rng_normal(streams[a]);
            value = value < b->reward_min ? b->reward_min
                    : value > b->reward_max ? b->reward_max
                                            : value;
        }
        if (send) {
            pending p = {(double)step, seq++, w, a, value, choice.probability, NULL};
            if (sc->delay > 0)
                p.due += -sc->delay * log1p(-mab_rng_uniform(delays[a]));
            if (dim && sc->delay > 0) {
                p.features = malloc(dim * sizeof *p.features);
                if (!p.features) {
                    rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
                    break;
                }
                memcpy(p.features, x, dim * sizeof *x);
            } else if (dim) {
                p.features = x;
            }
            if (sc->delay > 0) {
                if (heap_push(&heap, &p) != 0) {
                    free(p.features);
                    rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
                    break;
                }
            } else {
                rc = send_reward(engines[w], spec, sc, stats[a].arm_id, &p, err);
                if (rc == MAB_OK && n_engines > 1)
                    rc = mab_flush(engines[w], err);
                if (rc != MAB_OK)
                    break;
                count_sent(out, &p);
            }
        }
        if (out->pulls)
            out->pulls[a]++;
        interval_pulls[a]++;
        while (next_checkpoint < spec->n_checkpoints &&
               spec->checkpoints[next_checkpoint] == step) {
            if (spec->regret_at)
                spec->regret_at[next_checkpoint] = regret;
            double width = (double)(step - last_checkpoint);
            for (size_t i = 0; spec->share_at && i < k; i++)
                spec->share_at[next_checkpoint * k + i] =
                    width > 0 ? (double)interval_pulls[i] / width : 0;
            memset(interval_pulls, 0, k * sizeof *interval_pulls);
            last_checkpoint = step;
            next_checkpoint++;
        }
        if (spec->on_step)
            spec->on_step(spec->ctx, step, a);
    }
    /* Conversions still on their way when the run ends never arrive. */
    out->late = heap.n;
    out->regret = regret;
    for (size_t a = 0; streams && a < k; a++)
        mab_rng_destroy(streams[a]);
    for (size_t a = 0; delays && a < k; a++)
        mab_rng_destroy(delays[a]);
    mab_rng_destroy(features);
    heap_free(&heap);
    free(streams);
    free(delays);
    free(mu);
    free(theta);
    free(x);
    free(next_reload);
    free(interval_pulls);
    free(stats);
    return rc;
}

int sim_run(mab_engine *engine, const sim_run_spec *spec, sim_run_result *out, mab_error *err)
{
    return sim_run_workers(&engine, 1, spec, out, err);
}

/* ---- parsing --policies ------------------------------------------------ */

void sim_policies_free(sim_policy_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free(list->labels[i]);
        free(list->policy_json[i]);
    }
    free(list->labels);
    free(list->policy_json);
    memset(list, 0, sizeof *list);
}

/* A parameter's JSON value: a number, true, false, or a string. */
static cJSON *param_value(const char *text)
{
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    if (text[0] && !strchr(" \t\n", text[0]) && *end == '\0' && isfinite(d))
        return cJSON_CreateNumber(d);
    if (strcmp(text, "true") == 0)
        return cJSON_CreateTrue();
    if (strcmp(text, "false") == 0)
        return cJSON_CreateFalse();
    return cJSON_CreateString(text);
}

/* Add "KEY=VALUE" to a policy object. */
static int add_param(cJSON *policy, const char *label, const char *item, char *why,
                     size_t why_size)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq == item) {
        snprintf(why, why_size, "'%s': parameter '%s' is not KEY=VALUE", label, item);
        return -1;
    }
    char key[128];
    size_t len = (size_t)(eq - item);
    if (len >= sizeof key) {
        snprintf(why, why_size, "'%s': parameter name too long", label);
        return -1;
    }
    memcpy(key, item, len);
    key[len] = '\0';
    if (strcmp(key, "plugin") == 0 || cJSON_GetObjectItemCaseSensitive(policy, key)) {
        snprintf(why, why_size, "'%s': parameter '%s' given twice", label, key);
        return -1;
    }
    /* "features" names the context features a policy reads: a list, given
       as NAME;NAME;... (',' and ':' separate items and parameters). */
    cJSON *value = strcmp(key, "features") == 0 ? cJSON_CreateArray() : param_value(eq + 1);
    for (const char *name = eq + 1; value && cJSON_IsArray(value) && *name;) {
        const char *end = strchr(name, ';');
        size_t n = end ? (size_t)(end - name) : strlen(name);
        char *one = strndup(name, n);
        if (!one || !cJSON_AddItemToArray(value, cJSON_CreateString(one))) {
            free(one);
            cJSON_Delete(value);
            value = NULL;
            break;
        }
        free(one);
        name += n + (end ? 1 : 0);
    }
    if (!value || !cJSON_AddItemToObject(policy, key, value)) {
        cJSON_Delete(value);
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    return 0;
}

/* One item "NAME[:KEY=VALUE...]" plus continuation parameters. */
static int parse_policy_item(char **tokens, size_t n_tokens, char **label_out, char **json_out,
                             char *why, size_t why_size)
{
    /* The label is the item as written, continuations included. */
    size_t label_len = 1;
    for (size_t t = 0; t < n_tokens; t++)
        label_len += strlen(tokens[t]) + 1;
    char *label = malloc(label_len);
    if (!label) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    label[0] = '\0';
    for (size_t t = 0; t < n_tokens; t++) {
        if (t)
            strcat(label, ",");
        strcat(label, tokens[t]);
    }

    cJSON *policy = cJSON_CreateObject();
    int rc = policy ? 0 : -1;
    if (!policy)
        snprintf(why, why_size, "out of memory");
    char *name_end = strchr(tokens[0], ':');
    if (name_end)
        *name_end = '\0';
    if (rc == 0 && tokens[0][0] == '\0') {
        snprintf(why, why_size, "'%s': missing the policy plugin name", label);
        rc = -1;
    }
    if (rc == 0 && !cJSON_AddStringToObject(policy, "plugin", tokens[0])) {
        snprintf(why, why_size, "out of memory");
        rc = -1;
    }
    char *rest = name_end ? name_end + 1 : NULL;
    while (rc == 0 && rest) {
        char *next = strchr(rest, ':');
        if (next)
            *next++ = '\0';
        rc = add_param(policy, label, rest, why, why_size);
        rest = next;
    }
    for (size_t t = 1; rc == 0 && t < n_tokens; t++)
        rc = add_param(policy, label, tokens[t], why, why_size);
    char *json = rc == 0 ? cJSON_PrintUnformatted(policy) : NULL;
    if (rc == 0 && !json) {
        snprintf(why, why_size, "out of memory");
        rc = -1;
    }
    cJSON_Delete(policy);
    if (rc != 0) {
        free(label);
        return -1;
    }
    /* cJSON allocates with malloc unless hooks say otherwise: copy to be sure. */
    *json_out = strdup(json);
    cJSON_free(json);
    if (!*json_out) {
        free(label);
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    *label_out = label;
    return 0;
}

/* A token continues the item before it when it is KEY=VALUE with no ':'
   before the '=' (a plugin name never contains '='). */
static bool is_continuation(const char *token)
{
    const char *eq = strchr(token, '=');
    const char *colon = strchr(token, ':');
    return eq && (!colon || colon > eq);
}

int sim_policies_parse(const char *text, sim_policy_list *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof *out);
    char *copy = strdup(text);
    size_t n_tokens = 1;
    for (const char *p = text; *p; p++)
        n_tokens += *p == ',';
    char **tokens = calloc(n_tokens, sizeof *tokens);
    out->labels = calloc(n_tokens, sizeof *out->labels);
    out->policy_json = calloc(n_tokens, sizeof *out->policy_json);
    if (!copy || !tokens || !out->labels || !out->policy_json) {
        free(copy);
        free(tokens);
        sim_policies_free(out);
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    char *p = copy;
    for (size_t t = 0; t < n_tokens; t++) {
        tokens[t] = p;
        char *comma = strchr(p, ',');
        if (comma) {
            *comma = '\0';
            p = comma + 1;
        }
    }
    int rc = 0;
    for (size_t t = 0; rc == 0 && t < n_tokens;) {
        if (tokens[t][0] == '\0') {
            snprintf(why, why_size, "item %zu is empty", out->n + 1);
            rc = -1;
            break;
        }
        if (is_continuation(tokens[t])) {
            snprintf(why, why_size, "'%s' comes before any policy name", tokens[t]);
            rc = -1;
            break;
        }
        size_t end = t + 1;
        while (end < n_tokens && tokens[end][0] && is_continuation(tokens[end]))
            end++;
        rc = parse_policy_item(tokens + t, end - t, &out->labels[out->n],
                               &out->policy_json[out->n], why, why_size);
        if (rc == 0)
            out->n++;
        t = end;
    }
    free(tokens);
    free(copy);
    if (rc != 0)
        sim_policies_free(out);
    return rc;
}

/* ---- the temporary config ---------------------------------------------- */

char *sim_read_file(const char *path, mab_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mab_error_set(err, MAB_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                fclose(f);
                mab_error_set(err, MAB_ENOMEM, "out of memory");
                return NULL;
            }
            text = grown;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        mab_error_set(err, MAB_EIO, "%s: cannot read", path);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* The absolute directory of a file, for resolving paths relative to it. */
static char *absolute_dir(const char *path)
{
    char *resolved = realpath(path, NULL);
    if (!resolved)
        return NULL;
    char *slash = strrchr(resolved, '/');
    if (slash == resolved)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    return resolved;
}

/* The new config's root: plugin_path made absolute, storage as it was (an
   engine opened without storage never opens it), and the experiments. */
static cJSON *policy_config(const cJSON *root, const char *dir, const cJSON *source,
                            const sim_policy_list *policies, unsigned flags)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *plugin_path = cJSON_AddArrayToObject(out, "plugin_path");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "plugin_path");
    bool ok = out && plugin_path;
    const cJSON *d;
    cJSON_ArrayForEach(d, pp)
    {
        if (!ok)
            break;
        if (!cJSON_IsString(d)) {
            ok = cJSON_AddItemToArray(plugin_path, cJSON_Duplicate(d, 1));
            continue;
        }
        char buf[8192];
        if (d->valuestring[0] == '/')
            snprintf(buf, sizeof buf, "%s", d->valuestring);
        else
            snprintf(buf, sizeof buf, "%s/%s", dir, d->valuestring);
        ok = cJSON_AddItemToArray(plugin_path, cJSON_CreateString(buf));
    }
    const cJSON *storage = cJSON_GetObjectItemCaseSensitive(root, "storage");
    if (ok && (flags & SIM_CONFIG_SHARED_STORE)) {
        /* The workers' store: written only when the simulator says so. */
        cJSON *shared = cJSON_AddObjectToObject(out, "storage");
        cJSON *sync = shared ? cJSON_AddObjectToObject(shared, "sync") : NULL;
        ok = sync && cJSON_AddStringToObject(shared, "plugin", "sim_shared") &&
             cJSON_AddNumberToObject(sync, "interval_ms", 86400000);
    } else if (ok && storage) {
        ok = cJSON_AddItemToObject(out, "storage", cJSON_Duplicate(storage, 1));
    }
    cJSON *experiments = ok ? cJSON_AddObjectToObject(out, "experiments") : NULL;
    ok = ok && experiments;
    const cJSON *arms = cJSON_GetObjectItemCaseSensitive(source, "arms");
    const cJSON *reward = cJSON_GetObjectItemCaseSensitive(source, "reward");
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(source, "policy");
    /* The attribution window changes what each policy sees (it matures its
       denominator), so every compared policy runs under it. */
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(source, "attribution_window");
    size_t n = policies ? policies->n : 1;
    for (size_t i = 0; ok && i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "p%zu", i);
        cJSON *x = cJSON_AddObjectToObject(experiments, id);
        cJSON *policy = policies ? cJSON_Parse(policies->policy_json[i])
                                 : cJSON_Duplicate(own, 1);
        ok = x && policy && cJSON_AddItemToObject(x, "policy", policy);
        if (!ok) {
            if (!x || !cJSON_GetObjectItemCaseSensitive(x, "policy"))
                cJSON_Delete(policy);
            break;
        }
        if (arms)
            ok = cJSON_AddItemToObject(x, "arms", cJSON_Duplicate(arms, 1));
        if (ok && reward)
            ok = cJSON_AddItemToObject(x, "reward", cJSON_Duplicate(reward, 1));
        if (ok && window)
            ok = cJSON_AddItemToObject(x, "attribution_window", cJSON_Duplicate(window, 1));
    }
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

int sim_write_policy_config(const char *config_path, const char *experiment,
                            const sim_policy_list *policies, char *path_out, size_t path_size,
                            mab_error *err)
{
    return sim_write_policy_config_ex(config_path, experiment, policies, 0, path_out, path_size,
                                      err);
}

int sim_write_policy_config_ex(const char *config_path, const char *experiment,
                               const sim_policy_list *policies, unsigned flags, char *path_out,
                               size_t path_size, mab_error *err)
{
    char *text = sim_read_file(config_path, err);
    if (!text)
        return err ? err->code : MAB_EIO;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *exps = cJSON_GetObjectItemCaseSensitive(root, "experiments");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(exps, experiment);
    if (!cJSON_IsObject(source)) {
        cJSON_Delete(root);
        return mab_error_set(err, MAB_ECONFIG, "%s: no experiment \"%s\"", config_path,
                             experiment);
    }
    char *dir = absolute_dir(config_path);
    if (!dir) {
        cJSON_Delete(root);
        return mab_error_set(err, MAB_EIO, "%s: %s", config_path, strerror(errno));
    }
    cJSON *config = policy_config(root, dir, source, policies, flags);
    free(dir);
    cJSON_Delete(root);
    char *json = config ? cJSON_Print(config) : NULL;
    cJSON_Delete(config);
    if (!json)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");

    const char *tmpdir = getenv("TMPDIR");
    snprintf(path_out, path_size, "%s/mab-simulate-XXXXXX.json",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemps(path_out, 5);
    if (fd < 0) {
        int rc = mab_error_set(err, MAB_EIO, "cannot create %s: %s", path_out, strerror(errno));
        cJSON_free(json);
        return rc;
    }
    size_t len = strlen(json), done = 0;
    while (done < len) {
        ssize_t n = write(fd, json + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    cJSON_free(json);
    if (close(fd) != 0 || done < len) {
        unlink(path_out);
        return mab_error_set(err, MAB_EIO, "cannot write %s", path_out);
    }
    return MAB_OK;
}

/* ---- statistics -------------------------------------------------------- */

double sim_t95(uint64_t df)
{
    static const double table[] = {
        NAN,   12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179,  2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080,
        2.074, 2.069,  2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
    if (df < sizeof table / sizeof table[0])
        return table[df];
    /* Cornish-Fisher expansion around the normal quantile: within 1e-4 for df > 30. */
    double z = 1.959963984540054, n = (double)df;
    return z + (z * z * z + z) / (4 * n) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n);
}

/* Mean and 95% half-width of values[0..n), summed in order (reproducible). */
static void mean_ci(const double *values, size_t n, size_t stride, double *mean, double *ci)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += values[i * stride];
    double m = sum / (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = values[i * stride] - m;
        ss += d * d;
    }
    *mean = m;
    *ci = n > 1 ? sim_t95(n - 1) * sqrt(ss / (double)(n - 1)) / sqrt((double)n) : NAN;
}

/* ---- many runs on a pool of threads ------------------------------------ */

typedef struct compare_job_out {
    double regret;
    double total_reward;
    uint64_t best_pulls, late;
    int status;
    mab_error err;
} compare_job_out;

typedef struct compare_pool {
    const sim_plan *plan;
    const uint64_t *checkpoints;
    double *curves;      /* [job][checkpoint] */
    double *shares;      /* [job][checkpoint][arm] */
    uint64_t *pulls;     /* [job][arm] */
    compare_job_out *jobs;
    size_t n_jobs;
    atomic_size_t next_job;
    atomic_bool failed;
} compare_pool;

static void run_job(compare_pool *pool, size_t job)
{
    const sim_plan *plan = pool->plan;
    size_t policy = job % plan->n_policies;
    uint64_t run = job / plan->n_policies;
    compare_job_out *out = &pool->jobs[job];
    size_t k = plan->bandit->n_arms;
    const sim_scenario *sc = plan->scenario;
    size_t n_engines = sc && sc->workers > 1 ? sc->workers : 1;

    /* Workers share the config's store (sim_shared); a lone engine needs none. */
    mab_engine *engines[SIM_WORKERS_MAX] = {0};
    _Atomic int64_t clock = SIM_EPOCH_NS;
    out->status = MAB_OK;
    for (size_t w = 0; out->status == MAB_OK && w < n_engines; w++) {
        mab_options opts = {.struct_size = sizeof opts,
                            .flags = MAB_OPEN_SEED | (n_engines > 1 ? 0 : MAB_OPEN_NO_STORAGE),
                            .seed = w ? mix64(sim_engine_seed(plan->seed, run) + GOLDEN * w)
                                      : sim_engine_seed(plan->seed, run)};
        out->status = mab_open_sections(plan->config_path, &opts, plan->sections, &engines[w],
                                        &out->err);
        if (out->status == MAB_OK)
            out->status = mab_set_clock(engines[w], sim_clock_read, &clock, &out->err);
    }
    if (out->status == MAB_OK) {
        sim_run_spec spec = {.experiment = plan->experiments[policy],
                             .bandit = plan->bandit,
                             .steps = plan->steps,
                             .seed = plan->seed,
                             .run = run,
                             .checkpoints = pool->checkpoints,
                             .n_checkpoints = plan->n_checkpoints,
                             .regret_at = pool->curves + job * plan->n_checkpoints,
                             .share_at = pool->shares + job * plan->n_checkpoints * k,
                             .scenario = sc,
                             .clock = &clock};
        sim_run_result result = {.pulls = pool->pulls + job * k};
        out->status = sim_run_workers(engines, n_engines, &spec, &result, &out->err);
        out->regret = result.regret;
        out->total_reward = result.total_reward;
        out->best_pulls = result.best_pulls;
        out->late = result.late;
    }
    for (size_t w = 0; w < n_engines; w++) {
        mab_error close_err;
        int rc = mab_close(engines[w], &close_err);
        if (out->status == MAB_OK && rc != MAB_OK) {
            out->status = rc;
            out->err = close_err;
        }
    }
}

static void *pool_worker(void *arg)
{
    compare_pool *pool = arg;
    for (;;) {
        if (atomic_load(&pool->failed))
            break;
        size_t job = atomic_fetch_add(&pool->next_job, 1);
        if (job >= pool->n_jobs)
            break;
        run_job(pool, job);
        if (pool->jobs[job].status != MAB_OK)
            atomic_store(&pool->failed, true);
    }
    return NULL;
}

void sim_results_free(sim_results *r)
{
    for (size_t p = 0; r->policies && p < r->n_policies; p++) {
        sim_policy_result *pr = &r->policies[p];
        free(pr->curve_mean);
        free(pr->curve_lo);
        free(pr->curve_hi);
        free(pr->regret_by_run);
        free(pr->pulls);
        free(pr->share_mean);
    }
    free(r->policies);
    free(r->checkpoints);
    memset(r, 0, sizeof *r);
}

/* Per policy: means, intervals and curves, over runs in run order. */
static int summarise(const sim_plan *plan, const compare_pool *pool, sim_results *out)
{
    size_t n_pol = plan->n_policies, k = plan->bandit->n_arms, g = plan->n_checkpoints;
    uint64_t runs = plan->runs;
    double *column = malloc(runs * sizeof *column);
    if (!column)
        return MAB_ENOMEM;
    for (size_t p = 0; p < n_pol; p++) {
        sim_policy_result *pr = &out->policies[p];
        pr->curve_mean = calloc(g, sizeof *pr->curve_mean);
        pr->curve_lo = calloc(g, sizeof *pr->curve_lo);
        pr->curve_hi = calloc(g, sizeof *pr->curve_hi);
        pr->regret_by_run = calloc(runs, sizeof *pr->regret_by_run);
        pr->pulls = calloc(k, sizeof *pr->pulls);
        pr->share_mean = calloc(g * k, sizeof *pr->share_mean);
        if (!pr->curve_mean || !pr->curve_lo || !pr->curve_hi || !pr->regret_by_run ||
            !pr->pulls || !pr->share_mean) {
            free(column);
            return MAB_ENOMEM;
        }
        double reward = 0, late = 0;
        uint64_t best_pulls = 0;
        for (uint64_t r = 0; r < runs; r++) {
            size_t job = r * n_pol + p;
            pr->regret_by_run[r] = pool->jobs[job].regret;
            reward += pool->jobs[job].total_reward;
            best_pulls += pool->jobs[job].best_pulls;
            late += (double)pool->jobs[job].late;
            for (size_t a = 0; a < k; a++)
                pr->pulls[a] += pool->pulls[job * k + a];
            for (size_t i = 0; i < g * k; i++)
                pr->share_mean[i] += pool->shares[job * g * k + i] / (double)runs;
        }
        pr->late_per_run = late / (double)runs;
        mean_ci(pr->regret_by_run, runs, 1, &pr->regret_mean, &pr->regret_ci);
        double visitors = (double)runs * (double)plan->steps;
        pr->best_share = (double)best_pulls / visitors;
        pr->reward_per_visitor = reward / visitors;
        for (size_t c = 0; c < g; c++) {
            for (uint64_t r = 0; r < runs; r++)
                column[r] = pool->curves[(r * n_pol + p) * g + c];
            double mean, ci;
            mean_ci(column, runs, 1, &mean, &ci);
            pr->curve_mean[c] = mean;
            pr->curve_lo[c] = isnan(ci) ? mean : mean - ci;
            pr->curve_hi[c] = isnan(ci) ? mean : mean + ci;
        }
    }
    free(column);
    return MAB_OK;
}

int sim_compare(const sim_plan *plan, sim_results *out, mab_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n_pol = plan->n_policies, k = plan->bandit->n_arms;
    size_t g = plan->n_checkpoints;
    if (n_pol == 0 || plan->runs == 0 || plan->steps == 0 || g == 0 || g > plan->steps)
        return mab_error_set(err, MAB_EINVAL, "simulation: nothing to run");
    if (plan->runs > SIZE_MAX / n_pol / (g * k) / sizeof(double))
        return mab_error_set(err, MAB_ENOMEM, "simulation: too many runs");
    size_t n_jobs = (size_t)plan->runs * n_pol;

    out->n_policies = n_pol;
    out->n_checkpoints = g;
    out->checkpoints = calloc(g, sizeof *out->checkpoints);
    out->policies = calloc(n_pol, sizeof *out->policies);
    compare_pool pool = {.plan = plan, .n_jobs = n_jobs};
    pool.curves = calloc(n_jobs * g, sizeof *pool.curves);
    pool.pulls = calloc(n_jobs * k, sizeof *pool.pulls);
    pool.shares = calloc(n_jobs * g * k, sizeof *pool.shares);
    pool.jobs = calloc(n_jobs, sizeof *pool.jobs);
    atomic_init(&pool.next_job, 0);
    atomic_init(&pool.failed, false);
    int rc = MAB_OK;
    char why[256];
    if (plan->scenario && sim_scenario_check(plan->scenario, plan->bandit, why, sizeof why))
        rc = mab_error_set(err, MAB_EINVAL, "simulation: %s", why);
    else if (!out->checkpoints || !out->policies || !pool.curves || !pool.pulls ||
             !pool.shares || !pool.jobs)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    /* Evenly spaced, the last at T. */
    for (size_t c = 0; rc == MAB_OK && c < g; c++)
        out->checkpoints[c] = (uint64_t)(((double)(c + 1) * (double)plan->steps) / (double)g);
    if (rc == MAB_OK)
        out->checkpoints[g - 1] = plan->steps;
    pool.checkpoints = out->checkpoints;

    unsigned n_threads = plan->threads ? plan->threads : 1;
    if (n_threads > n_jobs)
        n_threads = (unsigned)n_jobs;
    pthread_t *threads = calloc(n_threads, sizeof *threads);
    if (rc == MAB_OK && !threads)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    unsigned started = 0;
    for (; rc == MAB_OK && started < n_threads; started++)
        if (pthread_create(&threads[started], NULL, pool_worker, &pool) != 0)
            break;
    if (rc == MAB_OK && started == 0)
        pool_worker(&pool); /* no thread could start: do the work here */
    for (unsigned t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    free(threads);

    /* The first failure in job order, not in completion order. */
    for (size_t j = 0; rc == MAB_OK && j < n_jobs; j++) {
        if (pool.jobs[j].status != MAB_OK) {
            rc = pool.jobs[j].status;
            if (err)
                *err = pool.jobs[j].err;
        }
    }
    if (rc == MAB_OK && summarise(plan, &pool, out) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    free(pool.curves);
    free(pool.pulls);
    free(pool.shares);
    free(pool.jobs);
    if (rc != MAB_OK)
        sim_results_free(out);
    return rc;
}
