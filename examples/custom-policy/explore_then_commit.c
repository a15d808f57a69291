/*
 * explore_then_commit.c - an explore-then-commit policy, written the way a
 * user writes their own: one C file against the installed <mab/policy.h>,
 * built out of tree (see Makefile) and named in the config by path.
 *
 * Exploration: while some arm has fewer than `explore_pulls` pulls, choose
 * uniformly among those arms. Commitment: once every arm has explore_pulls
 * pulls, always choose the arm with the best mean reward, ties at random.
 *
 * Parameter: "explore_pulls", an integer in [1, 10^9] (default 100).
 */
#include <stdlib.h>

#include <mab/policy.h>

/* Means closer than this count as equal: sums of doubles round differently. */
#define ETC_TIE_TOLERANCE 1e-12

/* Arms up to this count need no allocation in choose(). */
#define ETC_STACK_ARMS 64

typedef struct etc_state {
    uint64_t explore_pulls;
} etc_state;

static int etc_create(mab_params *params, size_t n_arms, void **state)
{
    (void)n_arms; /* any number of arms works */
    int64_t explore_pulls;
    int rc = mab_params_int(params, "explore_pulls", 100, 1, 1000000000, &explore_pulls);
    if (rc != MAB_OK)
        return rc; /* the getter recorded which key and why */

    etc_state *s = malloc(sizeof *s);
    if (!s)
        return MAB_ENOMEM;
    s->explore_pulls = (uint64_t)explore_pulls;
    *state = s;
    return MAB_OK;
}

static void etc_destroy(void *state)
{
    free(state);
}

/* Uniform choice among the arms still short of explore_pulls pulls. */
static void etc_explore(const etc_state *s, const mab_arm_view *arms, size_t n_arms,
                        size_t n_short, mab_rng *rng, size_t *arm, double *probability)
{
    uint64_t pick = mab_rng_below(rng, n_short);
    for (size_t i = 0; i < n_arms; i++) {
        if (arms[i].pulls < s->explore_pulls && pick-- == 0) {
            *arm = i;
            break;
        }
    }
    *probability = 1.0 / (double)n_short;
}

/* The best mean; mab_argmax() breaks ties uniformly and says how many tied. */
static int etc_commit(const mab_arm_view *arms, size_t n_arms, mab_rng *rng, size_t *arm,
                      double *probability)
{
    double stack_means[ETC_STACK_ARMS] = {0};
    double *means = stack_means;
    if (n_arms > ETC_STACK_ARMS) {
        means = malloc(n_arms * sizeof *means);
        if (!means)
            return MAB_ENOMEM;
    }
    for (size_t i = 0; i < n_arms; i++)
        means[i] = mab_arm_mean(&arms[i]);

    size_t n_ties;
    *arm = mab_argmax(means, n_arms, ETC_TIE_TOLERANCE, rng, &n_ties);
    *probability = 1.0 / (double)n_ties;

    if (means != stack_means)
        free(means);
    return MAB_OK;
}

/*
 * Called from many threads at once with the same state: it only reads the
 * state, and any scratch memory is its own.
 */
static int etc_choose(const void *state, const mab_arm_view *arms, size_t n_arms,
                      mab_rng *rng, size_t *arm, double *probability)
{
    const etc_state *s = state;
    size_t n_short = 0;
    for (size_t i = 0; i < n_arms; i++)
        if (arms[i].pulls < s->explore_pulls)
            n_short++;

    if (n_short > 0) {
        etc_explore(s, arms, n_arms, n_short, rng, arm, probability);
        return MAB_OK;
    }
    return etc_commit(arms, n_arms, rng, arm, probability);
}

static const mab_policy explore_then_commit = {
    MAB_POLICY_HEADER,
    "explore_then_commit",
    "uniform over arms below explore_pulls pulls, then the best mean",
    etc_create,
    etc_destroy,
    etc_choose,
};

MAB_POLICY_DEFINE(explore_then_commit)
