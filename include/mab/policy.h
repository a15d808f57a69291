/*
 * policy.h - the policy plugin ABI. This header is all a policy author needs.
 *
 * Changelog (descriptors only ever grow; see "Versioning" below):
 *  - ABI 1.0: struct mab_policy, entry symbol `mab_policy_entry`: create(),
 *    destroy() and choose() over the four counters of each arm
 *    (mab_arm_view). Still loaded and served exactly as before.
 *  - ABI 2.0: struct mab_policy2, entry symbol `mab_policy_entry2`, which
 *    receives the core's function table (mab_core_api, version 1). A policy
 *    declares from create() how many extra doubles it keeps per arm and per
 *    experiment (mab_policy_layout) and an update() that turns one event (a
 *    pull or a reward, with its probability, time and context features) into
 *    additive deltas of them; the core adds, publishes, writes behind and
 *    stores them like the counters. choose() receives the time, the context
 *    features and those statistics (read-only) and returns the probability of
 *    its arm with an "estimated" flag. create() reports errors through a
 *    mab_error. An optional explain() gives per-arm scores or probabilities.
 *  - ABI 2.1: a policy may ask for a window of recent time buckets
 *    (mab_policy_layout.window_buckets); choose() and explain() then get
 *    each arm's counters per bucket (mab_policy_input.window ...), from the
 *    store's buckets plus what this process has not written yet. Written
 *    only by policies that check layout->struct_size; a 2.0 policy is
 *    served exactly as before. mab_policy_init.bucket_seconds gives create()
 *    the bucket width (a window is asked for in buckets).
 *  - ABI 2.2: choose() may report the probability of every arm, not only of
 *    the one it chose, in mab_policy_input.probabilities (an array the core
 *    provides; NULL from an older core or when the core does not need it).
 *    The core uses it for the sample-ratio check of reports (the pulls of
 *    each arm against the probabilities served). A 2.0 or 2.1 policy never
 *    writes it, and the check says it is not available for that policy.
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


/* ===================================================================== */
/* ABI 2                                                                 */
/* ===================================================================== */

#define MAB_POLICY2_ABI_MAJOR 2
#define MAB_POLICY2_ABI_MINOR 2
#define MAB_POLICY2_ENTRY_SYMBOL "mab_policy_entry2"

/*
 * The core's function table, handed to `mab_policy_entry2()` and to every
 * callback (through the init, event and input structs). A policy calls the
 * core through it rather than through libmab's symbols, so a plugin is bound
 * to exactly the functions of the table version it asked for (as SQLite's
 * sqlite3_api_routines and Redis's RedisModule_Init). Functions are only
 * appended; each addition bumps MAB_CORE_API_VERSION. A policy states the
 * version it needs in mab_policy2.core_api_version; a core whose table is
 * older refuses the plugin at load, naming both versions.
 */
#define MAB_CORE_API_VERSION 1

typedef struct mab_core_api {
    uint32_t version;     /* MAB_CORE_API_VERSION of the core */
    uint32_t struct_size; /* sizeof(mab_core_api) of the core */
    /* Version 1: */
    size_t (*argmax)(const double *values, size_t n, double tolerance, mab_rng *rng,
                     size_t *n_ties);        /* mab_argmax() */
    uint64_t (*rng_u64)(mab_rng *rng);       /* mab_rng_u64() */
    double (*rng_uniform)(mab_rng *rng);     /* mab_rng_uniform(): [0, 1) */
    uint64_t (*rng_below)(mab_rng *rng, uint64_t n); /* mab_rng_below() */
    double (*rng_normal)(mab_rng *rng);      /* mab_rng_normal() */
    double (*rng_gamma)(mab_rng *rng, double shape); /* mab_rng_gamma() */
    double (*rng_beta)(mab_rng *rng, double a, double b); /* mab_rng_beta() */
    int (*params_double)(mab_params *p, const char *key, double def, double min, double max,
                         double *out);       /* mab_params_double() */
    int (*params_int)(mab_params *p, const char *key, int64_t def, int64_t min, int64_t max,
                      int64_t *out);         /* mab_params_int() */
    int (*params_bool)(mab_params *p, const char *key, int def, int *out);
    int (*params_string)(mab_params *p, const char *key, const char *def, const char **out);
    int (*params_fail)(mab_params *p, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;                                    /* mab_params_fail() */
    int (*error_set)(mab_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;                                    /* mab_error_set() */
    /* Functions above are table version 1. Append new ones below. */
} mab_core_api;

/*
 * Time: every event and choose carry `time_ns`, nanoseconds since the Unix
 * epoch (UTC) as an int64_t, from the engine's clock (mab_set_clock(),
 * CLOCK_REALTIME by default) or from the caller (mab_context.time_ns).
 *
 * Context features: an experiment's policy object may name the features its
 * policy reads, "features": ["mobile", "hour"] (at most
 * MAB_POLICY_FEATURES_MAX names). The core resolves the caller's named
 * features (mab_context) to that order and hands the policy a double array
 * of n_features entries; a feature the caller did not pass is NAN. With no
 * "features" key n_features is 0 and features may be NULL.
 */
#define MAB_POLICY_FEATURES_MAX 64

/* What create() is given. */
typedef struct mab_policy_init {
    size_t struct_size;               /* sizeof(mab_policy_init) of the core */
    const mab_core_api *api;          /* the core's table; valid until destroy() */
    mab_params *params;               /* the experiment's "policy" object */
    size_t n_arms;                    /* >= 2 */
    size_t n_features;                /* length of "features" */
    const char *const *feature_names; /* valid during create() only */
    /* ABI 2.1: read only when struct_size covers it. */
    int64_t bucket_seconds;           /* width of a time bucket (storage object's
                                         "bucket_seconds"), to turn a window in
                                         seconds into layout.window_buckets */
} mab_policy_init;

/*
 * What create() declares, in a struct the core zeroes and sizes. The counts
 * may depend on the parameters (LinUCB with d features keeps d*d + d per
 * arm). The core keeps arm_stats doubles per arm and experiment_stats per
 * experiment, all starting at 0.0; storage keeps them under the tag
 * "NAME/STATS_VERSION" plus these counts, so changing either starts afresh.
 */
typedef struct mab_policy_layout {
    size_t struct_size;       /* set by the core: sizeof(mab_policy_layout) it knows */
    size_t arm_stats;         /* doubles per arm (<= MAB_POLICY_STATS_MAX) */
    size_t experiment_stats;  /* doubles per experiment (<= MAB_POLICY_STATS_MAX) */
    uint32_t stats_version;   /* bump when the meaning of the doubles changes */
    /* ABI 2.1: write it only when struct_size covers it (an older core
       does not have it). */
    size_t window_buckets;    /* recent time buckets choose() needs per arm,
                                 including the current one; 0: none. At most
                                 MAB_POLICY_WINDOW_MAX, and within the storage
                                 object's retention (else create fails at open). */
} mab_policy_layout;

#define MAB_POLICY_WINDOW_MAX 8760 /* a year of hourly buckets */

#define MAB_POLICY_STATS_MAX 4096

/* Kinds of event given to update(). */
#define MAB_EVENT_PULL 1   /* the policy chose `arm` (counted with the pull) */
#define MAB_EVENT_REWARD 2 /* a reward for `arm` was recorded */

typedef struct mab_policy_event {
    size_t struct_size;        /* sizeof(mab_policy_event) of the core */
    const mab_core_api *api;
    int kind;                  /* MAB_EVENT_PULL or MAB_EVENT_REWARD */
    size_t arm;                /* < n_arms */
    size_t n_arms;
    double reward;             /* normalised to [0, 1]; 0 for a pull */
    double probability;        /* probability `arm` was chosen with; for a reward,
                                  what the caller passed (mab_context.probability),
                                  NAN when unknown */
    int64_t time_ns;           /* see "Time" above */
    const double *features;    /* n_features values, NAN when missing */
    size_t n_features;
} mab_policy_event;

/* What choose() and explain() read. Everything is read-only. */
typedef struct mab_policy_input {
    size_t struct_size;              /* sizeof(mab_policy_input) of the core */
    const mab_core_api *api;
    const mab_arm_view *arms;        /* the counters, config order */
    size_t n_arms;
    const double *arm_stats;         /* n_arms * layout.arm_stats: arm i's at
                                        arm_stats + i * layout.arm_stats */
    const double *experiment_stats;  /* layout.experiment_stats values */
    int64_t time_ns;
    const double *features;          /* n_features values, NAN when missing */
    size_t n_features;
    mab_rng *rng;                    /* this thread's random stream */
    /* ABI 2.1: read only when struct_size covers them. Set when the layout
       asked for window_buckets > 0; else window is NULL and n_window 0. */
    const mab_arm_view *window;      /* n_arms * n_window counters, normalised
                                        like arms: arm i's bucket b at
                                        window[i * n_window + b], b = 0 the
                                        oldest, n_window - 1 the current one
                                        (buckets with no events are zeros) */
    size_t n_window;                 /* = layout.window_buckets */
    int64_t bucket_seconds;          /* width of a bucket */
    int64_t window_start;            /* unix seconds: start of bucket 0 */
    /* ABI 2.2: read only when struct_size covers it. choose() only: an
       array of n_arms doubles, or NULL (an older core, explain(), or the
       core does not need it). The core sets probabilities[0] to NAN before
       the call. A policy that knows the probability with which it would have
       chosen each arm on this input fills all n_arms of them (each in
       [0, 1], summing to 1; exact, or estimates when the choice's
       probability is flagged as estimated, each an unbiased estimate) and
       then the choice's probability must equal probabilities[arm]. A policy
       that does not know them leaves the array alone. */
    double *probabilities;
} mab_policy_input;

/* What choose() returns. */
typedef struct mab_policy_choice {
    size_t arm;           /* < n_arms */
    double probability;   /* probability of `arm` given the input, or NAN */
    int estimated;        /* 1 when probability is an estimate (e.g. Monte Carlo) */
} mab_policy_choice;

/* What explain() fills. */
#define MAB_EXPLAIN_SCORES 1        /* per-arm scores (higher is better) */
#define MAB_EXPLAIN_PROBABILITIES 2 /* per-arm choice probabilities, summing to 1 */

typedef struct mab_policy2 {
    uint32_t abi_major;   /* MAB_POLICY2_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;   /* MAB_POLICY2_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(mab_policy2) the plugin was built with */
    const char *name;        /* short name, e.g. "exp3"; part of the stats tag */
    const char *description; /* one line for `mab check` */
    uint32_t core_api_version; /* the mab_core_api version the plugin needs (>= 1) */

    /**
     * Parse parameters (init->params, through init->api's getters), allocate
     * the read-only state and declare the statistics layout.
     * @param layout zeroed by the core, struct_size set; fill arm_stats,
     *        experiment_stats and stats_version.
     * @param state receives the state given to the other callbacks.
     * @param err fill it (init->api->error_set) to say why create failed;
     *        a failed getter already recorded its error in params.
     * @return MAB_OK, MAB_ECONFIG or MAB_ENOMEM. Nothing to free on error.
     */
    int (*create)(const mab_policy_init *init, mab_policy_layout *layout, void **state,
                  mab_error *err);

    /** Free what create() allocated. Called once, after the last call. */
    void (*destroy)(void *state);

    /**
     * Turn one event into deltas of the statistics. Pure: read the state,
     * write only the deltas. May be called concurrently.
     * @param arm_delta layout.arm_stats zeroed doubles: added to the stats of
     *        event->arm.
     * @param experiment_delta layout.experiment_stats zeroed doubles: added
     *        to the experiment's stats.
     * @return MAB_OK, or an error (MAB_EINVAL: the event cannot be learnt
     *         from, e.g. a reward without a probability): then neither the
     *         event's counters nor its deltas are recorded.
     * Required when the layout declares any statistics; may be NULL otherwise.
     */
    int (*update)(const void *state, const mab_policy_event *event, double *arm_delta,
                  double *experiment_delta);

    /**
     * Choose an arm. Pure, concurrent, as ABI 1's choose. Break ties at
     * random (api->argmax).
     * @return MAB_OK or an error code (the pull is then not counted).
     */
    int (*choose)(const void *state, const mab_policy_input *input, mab_policy_choice *out);

    /**
     * Optional (NULL): per-arm scores or probabilities for reports.
     * @param values n_arms doubles to fill.
     * @param kind receives MAB_EXPLAIN_SCORES or MAB_EXPLAIN_PROBABILITIES.
     */
    int (*explain)(const void *state, const mab_policy_input *input, double *values,
                   int *kind);
    /* Fields above are ABI 2.0. Append new ones below, with a minor bump. */
} mab_policy2;

#define MAB_POLICY2_HEADER MAB_POLICY2_ABI_MAJOR, MAB_POLICY2_ABI_MINOR, (uint32_t)sizeof(mab_policy2)

/* Define the plugin's one exported symbol for ABI 2. The table is also given
   to every callback, so the plugin need not keep it. */
#define MAB_POLICY2_DEFINE(descriptor)                                              \
    MAB_PLUGIN_EXPORT const mab_policy2 *mab_policy_entry2(const mab_core_api *api); \
    MAB_PLUGIN_EXPORT const mab_policy2 *mab_policy_entry2(const mab_core_api *api)  \
    {                                                                               \
        (void)api;                                                                  \
        return &(descriptor);                                                       \
    }

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
