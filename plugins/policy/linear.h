/*
 * linear.h - the ridge-regression model per arm shared by the contextual
 * policies of ABI 2 (lin_ucb.c, lin_igw.c). Header only: each plugin stays
 * one self-contained .so.
 *
 * Context: x = (1, f_1, ..., f_n), the features named in the policy's
 * "features" key preceded by a constant 1 (an intercept, so that arms with
 * different base rates are told apart even when every feature is 0):
 * d = n + 1 <= LINEAR_MAX_DIM.
 *
 * Statistics per arm, all additive: G = sum x x^T over the arm's pulls
 * (d * d doubles, row-major) and b = sum r x over its rewards (d doubles).
 * A pull is a reward of 0 until rewarded, as for the counters, so a pull
 * adds x x^T to G and a reward adds r x to b; the model is the ridge
 * estimate theta = A^-1 b with A = I_d + G (Li et al. 2010's A_i).
 *
 * A missing feature (NAN: the caller did not pass it) or an infinite one is
 * an error, MAB_EINVAL, in choose() and in update(): a model fitted to
 * guessed zeros would be silently wrong, and a reward must come with the
 * same features as its pull (mab_reward_ctx()).
 */
#ifndef MAB_POLICY_LINEAR_H
#define MAB_POLICY_LINEAR_H

#include <math.h>
#include <stddef.h>

#include "mab/policy.h"

#define LINEAR_MAX_FEATURES 32
#define LINEAR_MAX_DIM (LINEAR_MAX_FEATURES + 1)

static inline size_t linear_arm_stats(size_t d)
{
    return d * d + d;
}

/* x = (1, features...); MAB_EINVAL when a feature is not finite. */
static inline int linear_context(const double *features, size_t n_features, double *x)
{
    x[0] = 1.0;
    for (size_t i = 0; i < n_features; i++) {
        if (!isfinite(features[i]))
            return MAB_EINVAL;
        x[i + 1] = features[i];
    }
    return MAB_OK;
}

/* One event's deltas: x x^T into G at a pull, r x into b at a reward. */
static inline int linear_update(const mab_policy_event *ev, double *delta)
{
    size_t d = ev->n_features + 1;
    double x[LINEAR_MAX_DIM];
    if (d > LINEAR_MAX_DIM || linear_context(ev->features, ev->n_features, x) != MAB_OK)
        return MAB_EINVAL;
    if (ev->kind == MAB_EVENT_PULL) {
        for (size_t i = 0; i < d; i++)
            for (size_t j = 0; j < d; j++)
                delta[i * d + j] = x[i] * x[j];
    } else {
        for (size_t i = 0; i < d; i++)
            delta[d * d + i] = ev->reward * x[i];
    }
    return MAB_OK;
}

/*
 * The arm's estimate at x: mean = x^T A^-1 b and width = sqrt(x^T A^-1 x),
 * through the Cholesky factor A = L L^T (O(d^3 / 6)): with y = L^-1 x and
 * z = L^-1 b, x^T A^-1 b = y . z and x^T A^-1 x = y . y. MAB_ERANGE when A
 * is not positive definite (only damaged stored statistics do that: I + G
 * always is).
 */
static inline int linear_estimate(const double *stats, size_t d, const double *x, double *mean,
                                  double *width)
{
    const double *g = stats, *b = stats + d * d;
    double l[LINEAR_MAX_DIM * LINEAR_MAX_DIM], y[LINEAR_MAX_DIM], z[LINEAR_MAX_DIM];
    for (size_t i = 0; i < d; i++) {
        for (size_t j = 0; j <= i; j++) {
            double sum = g[i * d + j] + (i == j ? 1.0 : 0.0);
            for (size_t k = 0; k < j; k++)
                sum -= l[i * d + k] * l[j * d + k];
            if (i == j) {
                if (!(sum > 0.0) || !isfinite(sum))
                    return MAB_ERANGE;
                l[i * d + i] = sqrt(sum);
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    double dot_yz = 0.0, dot_yy = 0.0;
    for (size_t i = 0; i < d; i++) {
        double sy = x[i], sz = b[i];
        for (size_t k = 0; k < i; k++) {
            sy -= l[i * d + k] * y[k];
            sz -= l[i * d + k] * z[k];
        }
        y[i] = sy / l[i * d + i];
        z[i] = sz / l[i * d + i];
        dot_yz += y[i] * z[i];
        dot_yy += y[i] * y[i];
    }
    *mean = dot_yz;
    *width = sqrt(dot_yy);
    return isfinite(*mean) && isfinite(*width) ? MAB_OK : MAB_ERANGE;
}

/* Refuse more features than the model takes, naming the key. */
static inline int linear_check_features(const mab_policy_init *init, const char *policy)
{
    if (init->n_features > LINEAR_MAX_FEATURES)
        return init->api->params_fail(init->params, "features",
                                      "%s reads at most %d features, not %zu", policy,
                                      LINEAR_MAX_FEATURES, init->n_features);
    return MAB_OK;
}

#endif
