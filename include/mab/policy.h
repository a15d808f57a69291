/*
 * policy.h - the policy plugin ABI. This header is all a policy author needs.
 *
 * A policy is a shared object that exports exactly one symbol,
 * `mab_policy_entry`, returning a pointer to a static mab_policy descriptor
 * (use MAB_POLICY_DEFINE). The core keeps the statistics; a policy is a pure
 * function of them: for each experiment the core calls create() once with the
 * experiment's parameters, then choose() with a consistent snapshot of the
 * arms' totals and a random stream, from any number of threads at once.
 *
 * Versioning (as SQLite's sqlite3_vfs): the descriptor starts with the ABI
 * major, minor and the struct's size. Fields are only ever appended; an
 * appended field comes with a minor bump and the core reads it only when
 * struct_size covers it. A new major means an incompatible change: the
 * loader refuses a plugin whose major differs from its own.
 *
 * Minimal policy (see examples/custom-policy/ and docs/writing-a-policy.md):
 *
 *     static int my_choose(const void *state, const mab_arm_view *arms, size_t n,
 *                          mab_rng *rng, size_t *arm, double *probability) {
 *         *arm = (size_t)mab_rng_below(rng, n);
 *         *probability = 1.0 / (double)n;
 *         return MAB_OK;
 *     }
 *     static const mab_policy my_policy = {
 *         MAB_POLICY_HEADER, "uniform", "chooses uniformly at random",
 *         my_create, my_destroy, my_choose,
 *     };
 *     MAB_POLICY_DEFINE(my_policy)
 */
#ifndef MAB_POLICY_H
#define MAB_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "mab.h"
#include "plugin.h"
#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MAB_POLICY_ABI_MAJOR 1
#define MAB_POLICY_ABI_MINOR 0
#define MAB_POLICY_ENTRY_SYMBOL "mab_policy_entry"

/*
 * One arm's totals as a policy sees them. Rewards are normalised to [0, 1]
 * by the experiment's reward range. A pull that was never rewarded counts as
 * a reward of 0, so an arm's mean is reward_sum / pulls (0 when pulls == 0).
 */
typedef struct mab_arm_view {
    uint64_t pulls;       /* times chosen */
    uint64_t rewards;     /* rewards recorded */
    double reward_sum;    /* sum of normalised rewards, 0 <= reward_sum <= rewards */
    double reward_sum_sq; /* sum of squared normalised rewards */
} mab_arm_view;

typedef struct mab_policy {
    uint32_t abi_major;   /* MAB_POLICY_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;   /* MAB_POLICY_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(mab_policy) the plugin was built with */
    const char *name;        /* short name, e.g. "ucb1" */
    const char *description; /* one line for `mab check` */

    /**
     * Parse this experiment's parameters (through the mab_params getters) and
     * allocate the policy's read-only state. Called once per experiment.
     * @param n_arms number of arms of the experiment (>= 2).
     * @param state receives the state passed to choose() and destroy().
     * @return MAB_OK, or an error (MAB_ECONFIG after a failed getter or
     *         mab_params_fail(); MAB_ENOMEM).
     */
    int (*create)(mab_params *params, size_t n_arms, void **state);

    /** Free what create() allocated. Called once, after the last choose(). */
    void (*destroy)(void *state);

    /**
     * Choose an arm. Called concurrently from many threads with the same
     * state: treat the state as read-only. Break ties between equally good
     * arms at random (mab_argmax() does).
     * @param arms the experiment's arms in config order, n_arms >= 2.
     * @param rng this thread's random stream.
     * @param arm receives the chosen index, < n_arms.
     * @param probability receives the probability with which this arm was
     *        chosen given the snapshot, or NAN when the policy cannot tell.
     * @return MAB_OK or an error code (the pull is then not counted).
     */
    int (*choose)(const void *state, const mab_arm_view *arms, size_t n_arms, mab_rng *rng,
                  size_t *arm, double *probability);
    /* Fields above are ABI 1.0. Append new ones below, with a minor bump. */
} mab_policy;

/* The first three fields of a descriptor built against this header. */
#define MAB_POLICY_HEADER MAB_POLICY_ABI_MAJOR, MAB_POLICY_ABI_MINOR, (uint32_t)sizeof(mab_policy)

/* Define the plugin's one exported symbol, returning &descriptor. */
#define MAB_POLICY_DEFINE(descriptor)                                   \
    MAB_PLUGIN_EXPORT const mab_policy *mab_policy_entry(void);         \
    MAB_PLUGIN_EXPORT const mab_policy *mab_policy_entry(void) { return &(descriptor); }

/**
 * @brief Index of the largest of values[0..n), ties broken uniformly at
 *        random; values within `tolerance` of the maximum count as ties.
 * @param n_ties receives how many values tied for the maximum (may be NULL).
 */
MAB_EXPORT size_t mab_argmax(const double *values, size_t n, double tolerance, mab_rng *rng,
                             size_t *n_ties);

/** @brief reward_sum / pulls, or 0 when the arm was never pulled. */
static inline double mab_arm_mean(const mab_arm_view *arm)
{
    /* pulls < 2^63: the signed conversion is a single instruction. */
    return arm->pulls ? arm->reward_sum / (double)(int64_t)arm->pulls : 0.0;
}

#ifdef __cplusplus
}
#endif
#endif /* MAB_POLICY_H */
