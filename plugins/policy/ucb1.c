/*
 * ucb1.c - UCB1 (Auer, Cesa-Bianchi & Fischer 2002): play every untried arm
 * once, then the arm maximising mean + sqrt(2 ln t / n_i).
 *
 * No params.
 */
#include <math.h>
#include <stdlib.h>

#include "mab/policy.h"

/* UCB1 has no parameters; a non-NULL state keeps create's contract simple. */
typedef struct ucb1_state {
    int unused;
} ucb1_state;

static int ucb1_create(mab_params *params, size_t n_arms, void **state)
{
    ucb1_state *s = calloc(1, sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    *state = s;
    return MAB_OK;
}

static void ucb1_destroy(void *state)
{
    free(state);
}

/* Pick uniformly among the arms never pulled; there are n_untried > 0. */
static size_t pick_untried(const mab_arm_view *arms, size_t n_arms, size_t n_untried,
                           mab_rng *rng)
{
    size_t k = (size_t)mab_rng_below(rng, n_untried);
    for (size_t i = 0; i < n_arms; i++) {
        if (arms[i].pulls == 0) {
            if (k == 0)
                return i;
            k--;
        }
    }
    return 0; /* unreachable */
}

static inline double ucb1_index(const mab_arm_view *arm, double two_log_t)
{
    /* Pulls stay far below 2^63: the signed conversion is one instruction,
       the unsigned one a branchy sequence. One division instead of two. */
    double inv_n = 1.0 / (double)(int64_t)arm->pulls;
    return arm->reward_sum * inv_n + sqrt(two_log_t * inv_n);
}

/* Indices within this relative distance of the best count as ties: equal up
   to rounding. */
#define UCB1_TIE_TOLERANCE 1e-12

static int ucb1_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                       mab_rng *rng, size_t *arm, double *probability)
{
    uint64_t total_pulls = 0;
    size_t n_untried = 0;
    for (size_t i = 0; i < n_arms; i++) {
        total_pulls += arms[i].pulls;
        n_untried += arms[i].pulls == 0;
    }
    if (n_untried > 0) {
        *arm = pick_untried(arms, n_arms, n_untried, rng);
        *probability = 1.0 / (double)n_untried;
        return MAB_OK;
    }

    /* One pass: the best index so far, and a uniform choice among the arms
       tied with it (reservoir sampling; the generator is only drawn on ties). */
    double two_log_t = 2.0 * log((double)total_pulls);
    double best = ucb1_index(&arms[0], two_log_t);
    size_t chosen = 0, n_ties = 1;
    for (size_t i = 1; i < n_arms; i++) {
        double index = ucb1_index(&arms[i], two_log_t);
        double tolerance = UCB1_TIE_TOLERANCE * fabs(best);
        if (index > best + tolerance) {
            best = index;
            chosen = i;
            n_ties = 1;
        } else if (index >= best - tolerance) {
            if (mab_rng_below(rng, ++n_ties) == 0)
                chosen = i;
            if (index > best)
                best = index;
        }
    }
    *arm = chosen;
    *probability = 1.0 / (double)n_ties;
    return MAB_OK;
}

static const mab_policy ucb1_policy = {
    MAB_POLICY_HEADER,
    "ucb1",
    "tries every arm once, then plays the highest upper confidence bound",
    ucb1_create,
    ucb1_destroy,
    ucb1_choose,
};

MAB_POLICY_DEFINE(ucb1_policy)
