/*
 * epsilon_greedy.c - with probability epsilon explore uniformly, otherwise
 * exploit an arm of highest mean reward (White 2012).
 *
 * Params: "epsilon" (number in [0, 1], default 0.1).
 */
#include <stdlib.h>

#include "mab/policy.h"

typedef struct epsilon_greedy_state {
    double epsilon;
} epsilon_greedy_state;

static int epsilon_greedy_create(mab_params *params, size_t n_arms, void **state)
{
    double epsilon;
    int rc = mab_params_double(params, "epsilon", 0.1, 0.0, 1.0, &epsilon);
    if (rc != MAB_OK)
        return rc;
    epsilon_greedy_state *s = malloc(sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    s->epsilon = epsilon;
    *state = s;
    return MAB_OK;
}

static void epsilon_greedy_destroy(void *state)
{
    free(state);
}

/* The k-th (from 0) arm whose mean equals best_mean, in config order. */
static size_t nth_best_arm(const mab_arm_view *arms, size_t n_arms, double best_mean, size_t k)
{
    for (size_t i = 0; i < n_arms; i++) {
        if (mab_arm_mean(&arms[i]) == best_mean) {
            if (k == 0)
                return i;
            k--;
        }
    }
    return 0; /* unreachable: k < number of best arms */
}

static int epsilon_greedy_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                                 mab_rng *rng, size_t *arm, double *probability)
{
    const epsilon_greedy_state *s = state;

    /* Exact comparison: the reported probability must describe the very set
       the exploit branch draws from. */
    double best_mean = mab_arm_mean(&arms[0]);
    size_t n_best = 1;
    const mab_arm_view *first = arms, *end = arms + n_arms;
    for (const mab_arm_view *a = arms + 1; a < end; a++) {
        double mean = mab_arm_mean(a);
        if (mean > best_mean) {
            best_mean = mean;
            n_best = 1;
            first = a;
        } else if (mean == best_mean) {
            n_best++;
        }
    }
    size_t first_best = (size_t)(first - arms);

    size_t chosen;
    int best = 1;
    if (mab_rng_uniform(rng) < s->epsilon) {
        chosen = (size_t)mab_rng_below(rng, n_arms);
        best = mab_arm_mean(&arms[chosen]) == best_mean;
    } else if (n_best == 1) {
        /* Drawn even among one best arm, so that the stream (and every
           seeded run) stays as it was: mab_rng_below(rng, 1) is 0 after one
           64-bit draw (test_rng.c: test_below_one_is_one_draw), which is
           the draw made here at less cost. */
        (void)mab_rng_u64(rng);
        chosen = first_best;
    } else {
        /* The first best arm needs no second pass over the means. */
        size_t k = (size_t)mab_rng_below(rng, n_best);
        chosen = k == 0 ? first_best : nth_best_arm(arms, n_arms, best_mean, k);
    }

    /* The explore branch can land on a best arm too, hence the sum. */
    double p = s->epsilon / (double)n_arms;
    if (best)
        p += (1.0 - s->epsilon) / (double)n_best;
    *arm = chosen;
    *probability = p;
    return MAB_OK;
}

static const mab_policy epsilon_greedy_policy = {
    MAB_POLICY_HEADER,
    "epsilon_greedy",
    "explores uniformly with probability epsilon, otherwise plays the best mean",
    epsilon_greedy_create,
    epsilon_greedy_destroy,
    epsilon_greedy_choose,
};

MAB_POLICY_DEFINE(epsilon_greedy_policy)
