/*
 * sw_ucb.c - sliding-window UCB (Garivier & Moulines 2011), for traffic
 * whose best arm changes: UCB on the counts of the last W time buckets only.
 * The first user of the core's windows (policy ABI 2.1).
 *
 * Params: "window" (whole seconds, default 86400: a day), the span of the
 * past the policy looks at, rounded up to whole time buckets of the storage
 * object's "bucket_seconds" (the window includes the current, partial
 * bucket); it must fit in the storage object's "retention_seconds" (the
 * core refuses it at open otherwise). "xi" (number in (0, 10], default 0.6),
 * the exploration constant.
 *
 * Choice: over the window, n_i = arm i's pulls and s_i its sum of
 * (normalised) rewards, N = sum_j n_j (the plays in the window: min(t, W)
 * of the paper, counted in plays). An arm with n_i = 0 is played first
 * (uniformly among such arms); else the arm maximising
 *     s_i / n_i + sqrt(xi ln N / n_i),
 * ties (equal up to rounding) broken uniformly. The probability returned is
 * exact (1 / number of arms tied), and explain() gives those probabilities.
 *
 * No statistics of its own: the four counters per bucket are all it needs.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "mab/policy.h"
#include "probabilities.h"

typedef struct sw_ucb_state {
    double xi;
} sw_ucb_state;

#define SW_UCB_TIE_TOLERANCE 1e-12

static int sw_ucb_create(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                         mab_error *err)
{
    if (init->struct_size < offsetof(mab_policy_init, bucket_seconds) + sizeof(int64_t) ||
        layout->struct_size < offsetof(mab_policy_layout, window_buckets) + sizeof(size_t) ||
        init->bucket_seconds <= 0)
        return init->api->error_set(err, MAB_EPLUGIN,
                                    "sw_ucb needs a core with policy ABI 2.1 (time buckets)");
    int64_t window;
    double xi;
    int rc = init->api->params_int(init->params, "window", 86400, 1, INT64_C(315360000), &window);
    if (rc == MAB_OK)
        rc = init->api->params_double(init->params, "xi", 0.6, 0.0, 10.0, &xi);
    if (rc != MAB_OK)
        return rc;
    if (xi == 0.0)
        return init->api->params_fail(init->params, "xi", "must be above 0");
    int64_t buckets = (window + init->bucket_seconds - 1) / init->bucket_seconds;
    if (buckets > MAB_POLICY_WINDOW_MAX)
        return init->api->params_fail(init->params, "window",
                                      "%lld s is %lld buckets of %lld s; at most %d",
                                      (long long)window, (long long)buckets,
                                      (long long)init->bucket_seconds, MAB_POLICY_WINDOW_MAX);
    sw_ucb_state *s = malloc(sizeof *s);
    if (!s)
        return init->api->error_set(err, MAB_ENOMEM, "sw_ucb: out of memory");
    s->xi = xi;
    layout->window_buckets = (size_t)buckets;
    *state = s;
    return MAB_OK;
}

static void sw_ucb_destroy(void *state)
{
    free(state);
}

/* Arm i's pulls and reward sum over the window. */
static void window_sums(const mab_policy_input *in, size_t i, double *pulls, double *sum)
{
    const mab_arm_view *w = &in->window[i * in->n_window];
    uint64_t n = 0;
    double s = 0.0;
    for (size_t b = 0; b < in->n_window; b++) {
        n += w[b].pulls;
        s += w[b].reward_sum;
    }
    *pulls = (double)n;
    *sum = s;
}

/* What decides the candidates: the untried arms, or the best index. */
typedef struct sw_ucb_scan {
    size_t n_untried;
    double xi_log; /* xi ln N */
    double top;    /* the best index (when no arm is untried) */
} sw_ucb_scan;

static double sw_ucb_index(const mab_policy_input *in, size_t i, double xi_log)
{
    double n, s;
    window_sums(in, i, &n, &s);
    return s / n + sqrt(xi_log / n);
}

static sw_ucb_scan scan_window(const sw_ucb_state *st, const mab_policy_input *in)
{
    sw_ucb_scan sc = {0, 0.0, -INFINITY};
    double total = 0.0;
    for (size_t i = 0; i < in->n_arms; i++) {
        double n, s;
        window_sums(in, i, &n, &s);
        total += n;
        sc.n_untried += n == 0.0;
    }
    if (sc.n_untried)
        return sc;
    sc.xi_log = st->xi * log(total);
    for (size_t i = 0; i < in->n_arms; i++) {
        double index = sw_ucb_index(in, i, sc.xi_log);
        sc.top = index > sc.top ? index : sc.top;
    }
    return sc;
}

/* Whether the policy would play arm i: an untried arm when there are some,
   else an arm tied at the best index. */
static int candidate(const mab_policy_input *in, const sw_ucb_scan *sc, size_t i)
{
    if (sc->n_untried) {
        double n, s;
        window_sums(in, i, &n, &s);
        return n == 0.0;
    }
    return sw_ucb_index(in, i, sc->xi_log) >= sc->top - SW_UCB_TIE_TOLERANCE * fabs(sc->top);
}

static int window_given(const mab_policy_input *in)
{
    return in->struct_size >= offsetof(mab_policy_input, window_start) + sizeof(int64_t) &&
           in->window && in->n_window;
}

static int sw_ucb_choose(const void *state, const mab_policy_input *in, mab_policy_choice *out)
{
    if (!window_given(in))
        return MAB_EPLUGIN;
    sw_ucb_scan sc = scan_window(state, in);
    size_t n_best = 0;
    for (size_t i = 0; i < in->n_arms; i++)
        n_best += candidate(in, &sc, i);
    uint64_t k = n_best > 1 ? in->api->rng_below(in->rng, n_best) : 0;
    size_t chosen = 0;
    for (size_t i = 0; i < in->n_arms; i++)
        if (candidate(in, &sc, i) && k-- == 0) {
            chosen = i;
            break;
        }
    out->arm = chosen;
    out->probability = 1.0 / (double)n_best;
    out->estimated = 0;
    double *all = policy_probabilities_out(in);
    for (size_t i = 0; all && i < in->n_arms; i++)
        all[i] = candidate(in, &sc, i) ? 1.0 / (double)n_best : 0.0;
    return MAB_OK;
}

static int sw_ucb_explain(const void *state, const mab_policy_input *in, double *values,
                          int *kind)
{
    if (!window_given(in))
        return MAB_EPLUGIN;
    sw_ucb_scan sc = scan_window(state, in);
    size_t n_best = 0;
    for (size_t i = 0; i < in->n_arms; i++)
        n_best += (values[i] = candidate(in, &sc, i)) != 0.0;
    for (size_t i = 0; i < in->n_arms; i++)
        values[i] /= (double)n_best;
    *kind = MAB_EXPLAIN_PROBABILITIES;
    return MAB_OK;
}

static const mab_policy2 sw_ucb_policy = {
    MAB_POLICY2_HEADER, "sw_ucb",
    "sliding-window UCB: UCB on the counts of the last \"window\" seconds",
    MAB_CORE_API_VERSION, sw_ucb_create, sw_ucb_destroy, NULL, sw_ucb_choose, sw_ucb_explain,
};
MAB_POLICY2_DEFINE(sw_ucb_policy)
