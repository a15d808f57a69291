/*
 * mab.h - the mab engine: open a config, choose arms, record rewards.
 *
 * Changelog (as SQLite's iVersion notes: what each version added):
 *  - 0.1: the engine API below mab_import().
 *  - 0.2: mab_set_clock(), mab_context with mab_choose_ctx() and
 *    mab_reward_ctx() (named features, time, probability),
 *    mab_policy_stats(), mab_explain(), mab_stored_layouts() (policy ABI 2),
 *    mab_bucket_seconds() and mab_history() (time buckets).
 *    Structs the library fills start with `struct_size` (see "Structs that
 *    grow" below): mab_choice, mab_arm_stats, mab_experiment_info; each keeps
 *    its 0.1 fields first. Added in 0.2: mab_choice.estimated,
 *    mab_arm_stats.value_json, mab_experiment_info.policy_abi and
 *    .n_features. The handle fast path: mab_experiment_handle(),
 *    mab_arm_index(), mab_choose_h(), mab_reward_h(). This broke the binary
 *    interface of 0.1: the SONAME went from libmab.so.0 to libmab.so.1
 *    (docs/install.md).
 *    Reports: mab_report_get(), mab_report_get_buckets(), mab_report_compute(),
 *    mab_report_arm_at(), mab_report_bucket_at(),
 *    mab_report_free() and the config's "winner" rule. Operating rules:
 *    mab_rules(), mab_holdout_compare(), mab_choice.flags, mab_context.flags
 *    and .assigned_ns, MAB_ELATE.
 *    Admin state: mab_set_state() (pause, resume, conclude, clear, kept in
 *    storage for every engine over it) and mab_rules_info.state_source,
 *    .admin_action, .admin_sequence, .admin_time_ns (MAB_RULES_INFO_SIZE_0_2:
 *    the struct without them).
 *
 * Conventions (every function below follows them):
 *  - Functions that can fail return an int status: MAB_OK (0) or a negative
 *    MAB_E* code. Codes are never renumbered.
 *  - Every such function takes a `mab_error *err` last. It may be NULL. When
 *    it is not NULL and the call fails, err->code holds the status and
 *    err->message a sentence naming the file, JSON path, experiment or arm at
 *    fault. On success *err is left untouched.
 *  - The library never prints and never calls exit().
 *  - Strings returned by the engine (arm ids, arm values, experiment ids)
 *    belong to the engine and stay valid until mab_close().
 *  - A mab_engine may be used from any number of threads at once, but only
 *    in the process that opened it: after fork() a child gets MAB_EINVAL
 *    from every call (open the engine after forking, e.g. in each worker).
 *
 * Structs that grow (0.2). A struct the library fills for the caller starts
 * with `size_t struct_size`, which the caller sets to sizeof the struct as
 * its header declares it (MAB_STRUCT_INIT(type) does). The library writes
 * only the fields that fit in struct_size, so a program built against an
 * older header keeps working when later versions append fields; a
 * struct_size smaller than the struct's first version (the MAB_*_SIZE_0_1
 * constants: struct_size and the fields 0.1 had) is MAB_EINVAL, before
 * anything is counted. Arrays (mab_stats()) take their stride from the first
 * entry's struct_size: entry i is at (char *)out + i * out[0].struct_size.
 * Fields are only ever appended, never moved or retyped. Structs the
 * library hands to a callback (mab_bucket_stats, mab_record in mab_export())
 * are the library's memory and grow by appending only; mab_options,
 * mab_context and mab_policy_stats_info carried struct_size already.
 */
#ifndef MAB_MAB_H
#define MAB_MAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MAB_EXPORT __attribute__((visibility("default")))
#else
#define MAB_EXPORT
#endif

#define MAB_VERSION_MAJOR 0
#define MAB_VERSION_MINOR 2
#define MAB_VERSION_PATCH 0
#define MAB_VERSION_STRING "0.2.0"

/* Initialiser of a struct that starts with struct_size (C99 or C++20):
   `mab_choice c = MAB_STRUCT_INIT(mab_choice);`. For an array, the first
   entry's: `mab_arm_stats st[8] = {MAB_STRUCT_INIT(mab_arm_stats)};`. */
#define MAB_STRUCT_INIT(type) { .struct_size = sizeof(type) }

/* Status codes. Never renumbered; retired codes stay as placeholders. */
#define MAB_OK 0
#define MAB_ENOMEM (-1)    /* out of memory */
#define MAB_EINVAL (-2)    /* invalid argument: NULL, NaN or infinite reward */
#define MAB_ECONFIG (-3)   /* the config file is malformed or inconsistent */
#define MAB_EPLUGIN (-4)   /* a plugin could not be loaded or refused to start */
#define MAB_ENOTFOUND (-5) /* unknown experiment or arm */
#define MAB_ERANGE (-6)    /* a value is outside its allowed range */
#define MAB_ESTORAGE (-7)  /* the storage backend failed to read or write */
#define MAB_EBUSY (-8)     /* the store is in use by another process */
#define MAB_ECORRUPT (-9)  /* stored data is unreadable; it was not modified */
#define MAB_EIO (-10)      /* a file could not be read or written */
#define MAB_ECLAIMED (-11) /* storage: the assignment was already claimed (rewarded) */
#define MAB_ELATE (-12)    /* a reward came after the experiment's attribution window */

#define MAB_ERROR_MAX 512

/* Error detail for one call. Caller-owned; usually on the stack. */
typedef struct mab_error {
    int code;                     /* the status the call returned */
    char message[MAB_ERROR_MAX];  /* NUL-terminated sentence */
} mab_error;

/**
 * @brief Fill an error record (for the core and for plugins).
 * @param err may be NULL, then nothing happens.
 * @return code, so that `return mab_error_set(err, MAB_EINVAL, ...)` works.
 */
MAB_EXPORT int mab_error_set(mab_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** @brief A static English description of a status code ("unknown code" for others). */
MAB_EXPORT const char *mab_strerror(int code);

/** @brief The library's version string, e.g. "0.2.0" (MAB_VERSION_STRING of
 *         the library that is loaded, which may be newer than the header). */
MAB_EXPORT const char *mab_version(void);

typedef struct mab_engine mab_engine;

/* Flags for mab_options.flags. */
#define MAB_OPEN_NO_STORAGE 0x1u /* do not open the storage plugin: counters start
                                    at zero and nothing is persisted (simulation) */
#define MAB_OPEN_SEED 0x2u       /* use mab_options.seed instead of the config's */
#define MAB_OPEN_CHECK 0x4u      /* config test (`mab check`, `mabd -t`): load every
                                    plugin, let the storage plugin validate its
                                    parameters and the existing store (storage.h,
                                    check), but open no store: nothing is created,
                                    locked or written; choose, reward, reset, import
                                    and export fail with MAB_EINVAL */
#define MAB_OPEN_READ_ONLY 0x8u  /* read the store without taking a writer's lock
                                    (storage.h, open_read_only): stats and export work
                                    while another process serves the store; choose,
                                    reward, reset and import fail with MAB_EINVAL */

typedef struct mab_options {
    size_t struct_size; /* sizeof(mab_options), for forward compatibility */
    unsigned flags;     /* MAB_OPEN_* */
    uint64_t seed;      /* with MAB_OPEN_SEED: seed of the random streams */
} mab_options;

/**
 * @brief Open an engine from a JSON config file: parse and validate it, load
 *        the policy and storage plugins it names and read stored counters.
 * @param config_path path of the config file. Relative paths inside the
 *        config (plugin_path, storage paths) are relative to its directory.
 * @param out receives the engine on success; untouched on failure.
 * @return MAB_OK, MAB_EIO (unreadable file), MAB_ECONFIG, MAB_EPLUGIN,
 *         MAB_ESTORAGE, MAB_EBUSY, MAB_ECORRUPT or MAB_ENOMEM.
 */
MAB_EXPORT int mab_open(const char *config_path, mab_engine **out, mab_error *err);

/**
 * @brief mab_open() with options; opts may be NULL.
 * @return as mab_open(); MAB_EINVAL when opts->struct_size is too small or
 *         MAB_OPEN_CHECK is combined with MAB_OPEN_NO_STORAGE or
 *         MAB_OPEN_READ_ONLY.
 */
MAB_EXPORT int mab_open_ex(const char *config_path, const mab_options *opts,
                           mab_engine **out, mab_error *err);

/*
 * Who reads which top-level key of the config (docs/config.md):
 *  - the engine: plugin_path, seed, storage, experiments;
 *  - the adapter part of libmab: secret_file, cookie, redirect_allow and
 *    debug_header (checked at open even when no adapter is opened);
 *  - the caller: the sections it names when opening, one JSON object each,
 *    read with mab_config_section() (a host's own settings, such as an HTTP
 *    server's listen address).
 * Any other top-level key is MAB_ECONFIG naming it, so a misspelt key (or a
 * section of a program that did not open the file) never passes silently.
 * mab_open() and mab_open_ex() name no sections: they accept the engine's
 * and the adapter's keys only.
 */

/**
 * @brief mab_open_ex() for a caller that keeps its own settings in the
 *        config: the top-level keys in `sections` are accepted, must each be
 *        a JSON object when present, and are left to the caller, who reads
 *        and checks them with mab_config_section().
 * @param opts may be NULL.
 * @param sections NULL (as mab_open_ex()) or names ending with a NULL entry,
 *        e.g. {"web", NULL}; copied, so it need not outlive the call.
 * @return as mab_open(); MAB_EINVAL when a name is empty, listed twice, or a
 *         key of the engine or the adapter.
 */
MAB_EXPORT int mab_open_sections(const char *config_path, const mab_options *opts,
                                 const char *const *sections, mab_engine **out,
                                 mab_error *err);

/**
 * @brief Give the engine its clock: the time handed to policies (policy.h,
 *        "Time") when a call passes none. Without it the engine reads
 *        CLOCK_REALTIME. Call it before the engine is used from other
 *        threads (right after opening); tests and simulations drive time with
 *        it. (A setter rather than a mab_options field, so that callers that
 *        fill mab_options positionally keep compiling warning-free.)
 *        The clock also places events in time buckets; setting it re-reads
 *        the stored recent buckets around the new time (policy windows).
 * @param clock returns nanoseconds since the Unix epoch; called from any
 *        thread, so it must be thread-safe. NULL restores the real clock.
 * @return MAB_OK, MAB_EINVAL (engine NULL) or a storage error reading the
 *         buckets (the clock is set all the same).
 */
MAB_EXPORT int mab_set_clock(mab_engine *engine, int64_t (*clock)(void *clock_ctx),
                             void *clock_ctx, mab_error *err);

/* Typed, validated access to one object of the config: plugin.h. */
typedef struct mab_params mab_params;

/**
 * @brief A view of the caller's own section of the config, for reading it
 *        with the mab_params getters of plugin.h (mab_params_int(), ...,
 *        mab_params_object() for nested objects). Errors name the full JSON
 *        path ("shop.json: web.port: expected an integer"); relative paths
 *        read with mab_params_path() resolve against the config's
 *        directory. Once every key it knows is read, the caller calls
 *        mab_params_check_unread(), which refuses a key nobody read
 *        ("shop.json: web: unknown key \"prot\""), so typos in a section
 *        are errors like everywhere else in the config.
 * @param name one of the names given to mab_open_sections().
 * @param out receives a fresh view holding its own copy of the section (an
 *        empty object when the file has no such key), independent of the
 *        engine: free it with mab_params_free(); its strings stay valid
 *        until then. Any number of views may exist at once; each belongs to
 *        one thread at a time.
 * @return MAB_OK, MAB_EINVAL (engine, name or out NULL; name was not listed
 *         to mab_open_sections()) or MAB_ENOMEM.
 */
MAB_EXPORT int mab_config_section(const mab_engine *engine, const char *name, mab_params **out,
                                  mab_error *err);

/**
 * @brief Write what is pending, stop the background writer, unload plugins
 *        and free the engine. The engine is freed even when the final write
 *        fails; then the status says what could not be written. No other
 *        call on this engine may be running or start afterwards.
 * @param engine may be NULL (then MAB_OK).
 * @return MAB_OK or the status of the final write (MAB_ESTORAGE, ...).
 */
MAB_EXPORT int mab_close(mab_engine *engine, mab_error *err);

/* What mab_choose() and mab_arm_lookup() return. The caller sets
   struct_size (MAB_STRUCT_INIT(mab_choice)); fields are filled as far as it
   reaches. */
typedef struct mab_choice {
    size_t struct_size;     /* sizeof(mab_choice), set by the caller */
    size_t arm_index;       /* position of the arm in the config */
    const char *arm_id;     /* valid until mab_close() */
    const char *value_json; /* the arm's JSON value as text; valid until mab_close() */
    double probability;     /* probability this arm was chosen with, after the
                               experiment's operating rules (floor, burn-in, state;
                               for a holdout choice, within the holdout), or NAN
                               when the policy cannot tell (Thompson with
                               probability_draws 0) */
    /* Added in 0.2. */
    int estimated;          /* 1 when probability is the policy's estimate
                               rather than exact (policy ABI 2); else 0 */
    unsigned flags;         /* MAB_CHOICE_*: how the operating rules chose */
} mab_choice;

/* struct_size of mab_choice as first versioned: the fields through probability. */
#define MAB_CHOICE_SIZE_0_1 (offsetof(mab_choice, probability) + sizeof(double))

/* mab_choice.flags. */
#define MAB_CHOICE_HOLDOUT 0x1u      /* the visitor is in the holdout: its pull was counted
                                        in the ledger "EXP@holdout", not by the policy;
                                        reward it with MAB_CONTEXT_HOLDOUT */
#define MAB_CHOICE_NOT_LEARNING 0x2u /* the experiment is paused: nothing was counted,
                                        and a reward for this choice must not be sent */
#define MAB_CHOICE_BURN_IN 0x4u      /* uniform: some arm has fewer than burn_in pulls */
#define MAB_CHOICE_FLOOR 0x8u        /* the floor's uniform draw chose the arm */
#define MAB_CHOICE_CONCLUDED 0x10u   /* the experiment is concluded: its winner (or the
                                        floor) was served, not the policy's choice */

/**
 * @brief Let the experiment's policy choose an arm and count one pull of it.
 *        (mab_experiment_handle() then mab_choose_h(), in one call.)
 * @param out struct_size set by the caller.
 * @return MAB_OK, MAB_ENOTFOUND (unknown experiment), MAB_EPLUGIN (the policy
 *         returned an error or an arm index out of range), MAB_EINVAL (out
 *         NULL, or out->struct_size below MAB_CHOICE_SIZE_0_1: nothing is
 *         counted).
 */
MAB_EXPORT int mab_choose(mab_engine *engine, const char *experiment, mab_choice *out,
                          mab_error *err);

/**
 * @brief Describe one arm without counting a pull (for hosts whose visitor
 *        already holds an arm). out->probability is NAN.
 * @return MAB_OK, MAB_ENOTFOUND (experiment or arm) or MAB_EINVAL (out NULL
 *         or its struct_size too small).
 */
MAB_EXPORT int mab_arm_lookup(mab_engine *engine, const char *experiment, const char *arm,
                              mab_choice *out, mab_error *err);

/**
 * @brief Record a reward for an arm.
 * @param value in the experiment's reward range (default [0, 1]).
 * @return MAB_OK; MAB_EINVAL for NaN or infinite values; MAB_ERANGE outside
 *         the range, or when the arm's sum of rewards or of their squares
 *         (in the experiment's units or normalised) would no longer be a
 *         finite double; MAB_ENOTFOUND for an unknown experiment or arm (in
 *         all these cases nothing is recorded, and the message names the
 *         experiment and the arm). With `sync: "always"` the call
 *         returns after the reward is durable; if the write fails it returns
 *         MAB_ESTORAGE and the reward stays queued for the next write,
 *         unless storage refused the arm's increment as invalid: then it was
 *         dropped (mab_dropped_deltas()) and the call returns MAB_ESTORAGE
 *         saying so ("... was not written: storage refused ..."). Out of
 *         memory for the write-behind queue it returns MAB_ENOMEM: the
 *         reward is counted but not yet written (it stays pending in this
 *         thread, and a later flush writes it).
 */
MAB_EXPORT int mab_reward(mab_engine *engine, const char *experiment, const char *arm,
                          double value, mab_error *err);

/*
 * The request's context, for policies of ABI 2 (policy.h): named numeric
 * features, the time, and for a reward the probability the arm had been
 * chosen with. Every field may be left zero: no features, the engine's
 * clock, probability unknown.
 */
typedef struct mab_context {
    size_t struct_size;                /* sizeof(mab_context) */
    const char *const *feature_names;  /* n_features names */
    const double *feature_values;      /* n_features values */
    size_t n_features;
    int64_t time_ns;      /* ns since the Unix epoch; 0: the engine's clock */
    double probability;   /* mab_reward_ctx(): probability the arm was chosen
                             with (from the visitor's cookie); 0 or NAN: unknown */
    /* Added in 0.2 (read when struct_size covers them): */
    unsigned flags;       /* MAB_CONTEXT_* */
    int64_t assigned_ns;  /* mab_reward_ctx(): when the assignment was made (ns since
                             the epoch, from the cookie); 0: unknown. Checked against
                             the experiment's attribution_window. */
} mab_context;

/* mab_context.flags. */
#define MAB_CONTEXT_HOLDOUT 0x1u /* the reward is for a holdout choice (MAB_CHOICE_HOLDOUT) */

/**
 * @brief mab_choose() with a context. The experiment's policy gets the
 *        features its config names ("features": [...]) in that order, NAN
 *        for a feature ctx does not have; features it does not name are
 *        ignored. ABI 1 policies ignore the context.
 * @param ctx may be NULL (as mab_choose()).
 * @param estimated may be NULL; receives 1 when out->probability is the
 *        policy's estimate rather than exact.
 * @return as mab_choose(); MAB_EINVAL for a NULL feature name or a
 *         ctx->struct_size smaller than 0.1's mab_context.
 */
MAB_EXPORT int mab_choose_ctx(mab_engine *engine, const char *experiment,
                              const mab_context *ctx, mab_choice *out, int *estimated,
                              mab_error *err);

/**
 * @brief mab_reward() with a context: the policy's update() sees the
 *        features, the time and ctx->probability.
 * @return as mab_reward(); MAB_EPLUGIN when the policy's update refused the
 *         event (e.g. EXP3 needs the probability): nothing is recorded.
 */
MAB_EXPORT int mab_reward_ctx(mab_engine *engine, const char *experiment, const char *arm,
                              double value, const mab_context *ctx, mab_error *err);

/*
 * The handle fast path (0.2). A host that serves the same experiments over
 * and over looks each one up once, then chooses and rewards by handle and
 * arm index: no string is compared per call. mab_choose() and mab_reward()
 * are a lookup followed by these calls.
 *
 * A handle is a small value, copied freely, valid with the engine that
 * issued it until mab_close(). It names its engine, so it is refused
 * (MAB_EINVAL, "handle of another engine") when given to any other engine,
 * such as the one a host opened on reload: a host that reloads looks its
 * handles up again in the new engine. (Using any handle after mab_close() of
 * its engine is, like every call on a closed engine, undefined.)
 */
typedef struct mab_handle {
    uint64_t engine;      /* opaque: the engine that issued it (never 0) */
    size_t index;         /* the experiment's position in the config, as
                             mab_experiment_at() counts */
} mab_handle;

/**
 * @brief Look an experiment up once, for mab_choose_h() and mab_reward_h().
 * @param out receives the handle; untouched on failure.
 * @return MAB_OK, MAB_ENOTFOUND (no such experiment, the message names it)
 *         or MAB_EINVAL (engine, id or out NULL; an engine used after fork()).
 */
MAB_EXPORT int mab_experiment_handle(mab_engine *engine, const char *experiment,
                                     mab_handle *out, mab_error *err);

/**
 * @brief The config index of an arm of the handle's experiment, for
 *        mab_reward_h() (a choice carries it as mab_choice.arm_index).
 * @return MAB_OK, MAB_ENOTFOUND (no such arm) or MAB_EINVAL (NULL argument,
 *         or a handle of another engine).
 */
MAB_EXPORT int mab_arm_index(mab_engine *engine, mab_handle experiment, const char *arm,
                             size_t *index, mab_error *err);

/**
 * @brief mab_choose_ctx() by handle.
 * @param ctx may be NULL: no features, the engine's clock.
 * @param out struct_size set by the caller; out->estimated (0.2) says
 *        whether the probability is an estimate.
 * @return MAB_OK; MAB_EINVAL (a handle of another engine, out NULL or its
 *         struct_size too small, a bad ctx; nothing is counted);
 *         MAB_EPLUGIN (the policy failed or chose an arm out of range).
 */
MAB_EXPORT int mab_choose_h(mab_engine *engine, mab_handle experiment, const mab_context *ctx,
                            mab_choice *out, mab_error *err);

/**
 * @brief mab_reward_ctx() by handle and arm index (mab_choice.arm_index or
 *        mab_arm_index()).
 * @param ctx may be NULL.
 * @return as mab_reward_ctx(); MAB_ENOTFOUND for an arm index out of range;
 *         MAB_EINVAL for a handle of another engine (nothing is recorded).
 */
MAB_EXPORT int mab_reward_h(mab_engine *engine, mab_handle experiment, size_t arm_index,
                            double value, const mab_context *ctx, mab_error *err);

/* The policy statistics of one experiment (policy ABI 2). */
typedef struct mab_policy_stats_info {
    size_t struct_size;       /* sizeof(mab_policy_stats_info), set by the caller */
    const char *layout;       /* tag, e.g. "exp3/1:1,0"; "" for an ABI 1 policy;
                                 valid until mab_close() */
    size_t per_arm;           /* doubles per arm */
    size_t per_experiment;    /* doubles of the experiment */
} mab_policy_stats_info;

/**
 * @brief Current policy statistics of an experiment, including this
 *        process's not yet written to storage (as mab_stats()).
 * @param info receives the layout (struct_size set by the caller).
 * @param arm_stats receives up to arm_cap doubles: arm i's per_arm values at
 *        i * per_arm (config order). May be NULL when arm_cap is 0.
 * @param experiment_stats receives up to experiment_cap doubles.
 * @return MAB_OK, MAB_ENOTFOUND, MAB_EINVAL (NULL info, small struct_size) or
 *         MAB_ENOMEM (a thread's pending counts could not be gathered).
 */
MAB_EXPORT int mab_policy_stats(mab_engine *engine, const char *experiment,
                                mab_policy_stats_info *info, double *arm_stats, size_t arm_cap,
                                double *experiment_stats, size_t experiment_cap,
                                mab_error *err);

/**
 * @brief Per-arm scores or probabilities from the policy's explain() (policy
 *        ABI 2), on the current statistics, for reports. Counts nothing.
 * @param ctx may be NULL.
 * @param values receives min(cap, n_arms) doubles, config order.
 * @param kind receives MAB_EXPLAIN_SCORES (1) or MAB_EXPLAIN_PROBABILITIES (2).
 * @return MAB_OK, MAB_ENOTFOUND, MAB_EINVAL (the policy has no explain()) or
 *         MAB_EPLUGIN (explain failed).
 */
MAB_EXPORT int mab_explain(mab_engine *engine, const char *experiment, const mab_context *ctx,
                           double *values, size_t cap, int *kind, mab_error *err);

/**
 * @brief Visit each distinct layout tag under which storage holds policy
 *        statistics of an experiment (for `mab check`: a tag other than the
 *        experiment's current one means a policy change started afresh).
 *        On an engine opened with MAB_OPEN_CHECK it visits what the check
 *        read through the storage plugin's open_read_only (which creates and
 *        locks nothing); a plugin without one cannot be read by a check.
 * @return MAB_OK (also for a storage without statistics: nothing visited),
 *         what visit returned, MAB_ENOTFOUND, MAB_EINVAL (no storage; on a
 *         MAB_OPEN_CHECK engine, a store the check could not read, with the
 *         reason) or a storage error.
 */
MAB_EXPORT int mab_stored_layouts(mab_engine *engine, const char *experiment,
                                  int (*visit)(void *ctx, const char *layout), void *ctx,
                                  mab_error *err);

/*
 * Time buckets (DESIGN.md decision 11). Every pull and reward is counted in
 * the totals and in the bucket of its time: buckets are "bucket_seconds"
 * wide (storage object, default 3600) and kept for "retention_seconds"
 * (default 2592000, 30 days); older ones are dropped from storage, the totals
 * keep them. With a storage plugin older than ABI 1.5 only this process's
 * buckets since open are known.
 */
typedef struct mab_bucket_stats {
    int64_t start;        /* unix seconds, a multiple of mab_bucket_seconds() */
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;    /* experiment's own reward units */
    double reward_sum_sq;
} mab_bucket_stats;

/** @brief Width of the engine's time buckets, in seconds. */
MAB_EXPORT int64_t mab_bucket_seconds(const mab_engine *engine);

/**
 * @brief Visit an experiment's buckets that start at or after `since` (unix
 *        seconds), oldest first, each arm's in config order within a bucket:
 *        what storage holds plus what this process has not written yet
 *        (as mab_stats()). Buckets without events are not visited.
 * @param visit called with the arm's config index and id (valid until
 *        mab_close()) and the bucket (valid during the call); a nonzero
 *        return stops the walk and is returned.
 * @return MAB_OK, what visit returned, MAB_ENOTFOUND, MAB_ENOMEM or a
 *         storage error (MAB_ESTORAGE, naming the store).
 */
MAB_EXPORT int mab_history(mab_engine *engine, const char *experiment, int64_t since,
                           int (*visit)(void *ctx, size_t arm_index, const char *arm_id,
                                        const mab_bucket_stats *bucket),
                           void *ctx, mab_error *err);

/*
 * Operating rules (DESIGN.md decision 14): per experiment in the config,
 * applied by the core around any policy's choice (docs/operating.md):
 *   "state"   "running" (default) | "paused" (serve "serve" or the leader, the
 *             arm of highest mean; nothing is counted) | "concluded" (serve
 *             "serve" or the leader, with the floor if any; counted as usual)
 *   "floor"   minimum probability per arm, K * floor <= 1:
 *             p_i = floor + (1 - K floor) p_policy(i)
 *   "burn_in" uniform choices until every arm has this many pulls
 *   "holdout" {"share": h, "arm": "ARM"}: a share h of choices is served
 *             uniformly (or the named control arm) and counted apart, in the
 *             experiment "EXP@holdout" (same arms; mab_stats() reads it)
 *   "attribution_window"  seconds: a reward whose assignment is older is
 *             refused (MAB_ELATE) and counted as late (in "EXP@late": one
 *             pull of the arm per late reward); a policy sees a pull once
 *             its time bucket has matured (ended more than the window ago)
 *             or it was rewarded
 */
typedef struct mab_rules_info {
    size_t struct_size;      /* sizeof(mab_rules_info), set by the caller */
    const char *state;       /* "running", "paused" or "concluded" */
    const char *serve;       /* the arm paused/concluded serve; NULL: the leader */
    double floor;            /* 0: none */
    uint64_t burn_in;        /* 0: none */
    double holdout_share;    /* 0: no holdout */
    const char *holdout_arm; /* the control arm, or NULL: uniform */
    int64_t attribution_window; /* seconds; 0: none. With a window, every policy's
                                   denominator counts a pull once its time bucket
                                   ended more than this long ago or once it was
                                   rewarded (docs/operating.md); mab_stats() and
                                   reports still count every pull */
    uint64_t late_rewards;   /* rewards refused as late, as storage counts them in the
                                ledger "ID@late" (every process's after a refresh,
                                kept across restarts, cleared by mab_reset()) */
    /* Added with mab_set_state() (written when struct_size covers them): */
    const char *state_source; /* "config", or "admin": state and serve are the
                                 stored admin state's (mab_set_state) */
    const char *admin_action; /* the latest stored admin action: "pause",
                                 "resume", "conclude" or "clear"; NULL: none */
    uint64_t admin_sequence;  /* its number (1, 2, ... per experiment); 0: none */
    int64_t admin_time_ns;    /* its time, unix ns (millisecond precision); 0: none */
} mab_rules_info;

/* mab_rules_info before the admin fields: the smallest struct_size taken. */
#define MAB_RULES_INFO_SIZE_0_2 (offsetof(mab_rules_info, late_rewards) + sizeof(uint64_t))

/**
 * @brief The operating rules in force for an experiment. Strings are valid
 *        until mab_close().
 * @return MAB_OK, MAB_ENOTFOUND, MAB_EINVAL (NULL out, small struct_size) or
 *         MAB_ENOMEM (a thread's pending counts could not be gathered).
 */
MAB_EXPORT int mab_rules(mab_engine *engine, const char *experiment, mab_rules_info *out,
                         mab_error *err);

/**
 * @brief Set an experiment's state at run time, over the config's "state"
 *        and "serve" (docs/operating.md, "Admin actions").
 *
 * The state is written to storage first, as the record of the pseudo
 * experiment "EXP@admin" (replaced whole, last writer wins); only when the
 * store has taken it does this engine serve it. Every other engine over the
 * same store (workers, machines) adopts it at its next refresh (refresh_ms),
 * and any engine opened later reads it at open: it holds until the next
 * action, across restarts and config reloads. Without storage
 * (MAB_OPEN_NO_STORAGE) it holds in this engine only.
 *
 * @param state "paused" (serve `arm`, or the leader when arm is NULL; count
 *        nothing), "concluded" (serve `arm`, required, with the config's
 *        floor; counted as usual), "running" (learn again, whatever the
 *        config's state; arm NULL) or "config" (drop the admin state: follow
 *        the config's state again; arm NULL).
 * @return MAB_OK; MAB_ENOTFOUND (no such experiment); MAB_EINVAL (an unknown
 *         state, an arm the experiment does not have, concluded without an
 *         arm, an arm with running or config, a holdout ledger, a read-only
 *         engine); MAB_EPLUGIN (a store without replace(), storage ABI 1.0);
 *         the store's error (MAB_ESTORAGE, ...) when it failed: then nothing
 *         changed, in storage or in this engine.
 */
MAB_EXPORT int mab_set_state(mab_engine *engine, const char *experiment, const char *state,
                             const char *arm, mab_error *err);

/* The holdout comparison of an experiment: reward per visitor of the
   bandit's choices versus the holdout's, in the experiment's units. */
typedef struct mab_holdout_comparison {
    size_t struct_size;        /* sizeof(mab_holdout_comparison), set by the caller */
    uint64_t bandit_visitors;  /* pulls of the experiment's arms */
    uint64_t holdout_visitors; /* pulls in "EXP@holdout" */
    double bandit_mean;        /* reward sum / visitors (NAN without visitors) */
    double holdout_mean;
    double difference;         /* bandit_mean - holdout_mean */
    double ci_low, ci_high;    /* 95% normal interval of the difference; NAN when a
                                  group has fewer than 2 visitors */
} mab_holdout_comparison;

/**
 * @brief Compare the bandit's visitors with the holdout's (Welch's normal
 *        interval from each group's reward sum and sum of squares; a visitor
 *        never rewarded counts as a reward of 0).
 * @return MAB_OK, MAB_ENOTFOUND, MAB_EINVAL (no holdout in the config, NULL
 *         out or small struct_size).
 */
MAB_EXPORT int mab_holdout_compare(mab_engine *engine, const char *experiment,
                                   mab_holdout_comparison *out, mab_error *err);

/* Totals of one arm, in the experiment's own reward units. mab_stats()
   fills an array of them: the first entry's struct_size is the stride. */
typedef struct mab_arm_stats {
    size_t struct_size;   /* sizeof(mab_arm_stats), set by the caller in out[0] */
    const char *arm_id;   /* valid until mab_close() */
    uint64_t pulls;       /* times the arm was chosen */
    uint64_t rewards;     /* number of rewards recorded */
    double reward_sum;    /* sum of reward values */
    double reward_sum_sq; /* sum of squared reward values */
    double mean;          /* reward_sum / pulls (0 when pulls == 0) */
    /* Added in 0.2. */
    const char *value_json; /* the arm's JSON value as text; valid until mab_close() */
} mab_arm_stats;

/* struct_size of mab_arm_stats as first versioned: the fields through mean. */
#define MAB_ARM_STATS_SIZE_0_1 (offsetof(mab_arm_stats, mean) + sizeof(double))

typedef struct mab_experiment_info {
    size_t struct_size;      /* sizeof(mab_experiment_info), set by the caller */
    const char *id;          /* valid until mab_close() */
    const char *policy;      /* the policy plugin's name */
    const char *policy_path; /* the file it was loaded from (valid until mab_close()) */
    size_t n_arms;
    double reward_min, reward_max;
    /* Added in 0.2. */
    unsigned policy_abi;     /* the policy plugin's ABI major (1 or 2) */
    size_t n_features;       /* context features the policy's config names */
} mab_experiment_info;

/* struct_size of mab_experiment_info as first versioned: through reward_max. */
#define MAB_EXPERIMENT_INFO_SIZE_0_1 (offsetof(mab_experiment_info, reward_max) + sizeof(double))

/**
 * @brief The config test that every host runs before it serves: open the
 *        config with MAB_OPEN_CHECK (engine keys, every plugin, the storage
 *        parameters and the existing store, read-only), then check what the
 *        adapter would load: `secret_file` present, a regular file, readable,
 *        not readable or writable by others, holding at least one valid key
 *        (mab_adapter_open()'s checks); `redirect_allow` and the cookie keys
 *        are validated by the open itself. Creates, locks and writes nothing,
 *        so it may run while a server holds the store.
 * @param sections as mab_open_sections(): the host's own top-level keys,
 *        accepted but not checked here (each host checks its own section,
 *        e.g. through mab_config_section() on an engine opened with
 *        MAB_OPEN_CHECK).
 * @return MAB_OK or the first fault, as mab_open() and mab_adapter_open()
 *         report it (the message names the file and JSON path).
 */
MAB_EXPORT int mab_check(const char *config_path, const char *const *sections, mab_error *err);

/**
 * @brief Whether the storage plugin validated its parameters and store
 *        during a MAB_OPEN_CHECK open (0 for a plugin built before storage
 *        ABI 1.2, which has no check callback, or an engine not opened so).
 */
MAB_EXPORT int mab_storage_checked(const mab_engine *engine);

/** @brief Number of experiments in the config. */
MAB_EXPORT size_t mab_experiment_count(const mab_engine *engine);

/**
 * @brief Describe experiment number `index` (0 <= index < mab_experiment_count()),
 *        in the order of the config file.
 * @param out struct_size set by the caller.
 * @return MAB_OK, MAB_ENOTFOUND (index out of range) or MAB_EINVAL (out NULL
 *         or out->struct_size below MAB_EXPERIMENT_INFO_SIZE_0_1).
 */
MAB_EXPORT int mab_experiment_at(const mab_engine *engine, size_t index,
                                 mab_experiment_info *out, mab_error *err);

/** @brief The name of the storage plugin in use ("none" with MAB_OPEN_NO_STORAGE). */
MAB_EXPORT const char *mab_storage_name(const mab_engine *engine);

/**
 * @brief Whether the storage keeps reward claims (a storage plugin of ABI
 *        >= 1.3): then the adapter counts a reward once per assignment
 *        across every thread, process, restart and machine sharing the
 *        store. Otherwise (an older plugin, or no storage) only once per
 *        process, through the adapter's bounded memory.
 * @return 1 or 0.
 */
MAB_EXPORT int mab_storage_has_claims(const mab_engine *engine);

/**
 * @brief Whether the storage keeps time buckets (a storage plugin of ABI
 *        >= 1.5): then windows and mab_history() include what other
 *        processes wrote and survive restarts. Otherwise (an older plugin, or
 *        no storage) only this process's buckets since open are known.
 * @return 1 or 0.
 */
MAB_EXPORT int mab_storage_has_buckets(const mab_engine *engine);

/**
 * @brief The file the storage plugin was loaded from, as the loader found it
 *        (docs/config.md, "Where plugins are found"). The file of each
 *        experiment's policy is mab_experiment_info.policy_path.
 * @return a path valid until mab_close(), or NULL with MAB_OPEN_NO_STORAGE
 *         (or a NULL engine).
 */
MAB_EXPORT const char *mab_storage_path(const mab_engine *engine);

/**
 * @brief Current totals of every arm of an experiment, including this
 *        process's rewards not yet written to storage.
 * @param out array of at least `cap` entries, filled in config order. The
 *        caller sets out[0].struct_size (MAB_STRUCT_INIT); it is the array's
 *        stride, and the library sets every filled entry's struct_size to
 *        it. May be NULL when cap is 0.
 * @param n_arms receives the experiment's number of arms (even when > cap).
 * @return MAB_OK, MAB_ENOTFOUND, MAB_EINVAL (out NULL with cap > 0, or
 *         out[0].struct_size below MAB_ARM_STATS_SIZE_0_1) or MAB_ENOMEM (a
 *         thread's pending counts could not be gathered).
 */
MAB_EXPORT int mab_stats(mab_engine *engine, const char *experiment, mab_arm_stats *out,
                         size_t cap, size_t *n_arms, mab_error *err);

/**
 * @brief Write every pending increment to storage now and wait until it is
 *        durable.
 * @return MAB_OK or the storage plugin's error (pending increments are kept
 *         and retried by the next flush). Increments storage refuses as
 *         invalid are dropped and the rest written: that is MAB_OK, with the
 *         drops counted by mab_dropped_deltas(). MAB_ENOMEM when the
 *         write-behind queue could not grow to take a thread's pending
 *         counts (they stay pending, and a later flush writes them).
 */
MAB_EXPORT int mab_flush(mab_engine *engine, mab_error *err);

/**
 * @brief How many times writing to storage has failed since mab_open(), for
 *        metrics: each write of the queue that storage did not take whole,
 *        whether the batch was kept to be retried (the store was unavailable)
 *        or an increment in it was dropped (see mab_dropped_deltas()), and
 *        each claim call (reward once, storage ABI 1.3) that storage failed
 *        or refused: those rewards were answered with the error, not queued.
 * @return the count; 0 for a NULL engine.
 */
MAB_EXPORT uint64_t mab_storage_errors(const mab_engine *engine);

/**
 * @brief How many increments storage refused as invalid, and the engine
 *        therefore dropped, since mab_open().
 *
 * The write-behind queue holds one increment per arm. When the storage
 * plugin refuses a batch as invalid (MAB_EINVAL or MAB_ERANGE from apply,
 * see storage.h), the engine applies halves of it on their own until only
 * the refused increments are left, drops those (they are removed from the
 * totals mab_stats() reports, too) and writes the rest: one bad increment
 * never blocks the others. A batch refused for any other reason (disk full,
 * server down) is kept whole and retried; nothing of it is dropped.
 * mab_flush() and mab_close() return MAB_OK when everything that was not
 * dropped was written. The library does not log: a host that wants the
 * drops in its log polls this count.
 * @param last may be NULL. When not NULL and the count is not 0, receives
 *        the latest drop: code (the plugin's status) and a sentence naming
 *        the experiment, the arm, the increment and the plugin's reason.
 *        Untouched when the count is 0.
 * @return the count; 0 for a NULL engine.
 */
MAB_EXPORT uint64_t mab_dropped_deltas(const mab_engine *engine, mab_error *last);

/**
 * @brief Zero an experiment's counters, in memory and in storage (counters of
 *        arms no longer in the config are removed too). Not meant to race with
 *        choose and reward on the same experiment.
 * @return MAB_OK, MAB_ENOTFOUND, MAB_ENOMEM (a thread's pending counts could
 *         not be gathered) or a storage error (then nothing changed).
 */
MAB_EXPORT int mab_reset(mab_engine *engine, const char *experiment, mab_error *err);

/* One stored record, as mab_export() visits it and mab_import() takes it
   (mab/records.h reads and writes lists of them as JSON). */
typedef struct mab_record {
    const char *experiment;
    const char *arm;
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} mab_record;

/**
 * @brief Write what is pending, then visit every record in storage, including
 *        arms and experiments no longer in the config.
 * @param visit called once per record; the record's strings are valid during
 *        the call only. Returning nonzero stops the export with that value.
 * @return MAB_OK, the value visit returned, MAB_EINVAL (engine opened with
 *         MAB_OPEN_NO_STORAGE), MAB_EPLUGIN (the storage plugin is ABI 1.0 and
 *         cannot list its records) or a storage error.
 */
MAB_EXPORT int mab_export(mab_engine *engine, int (*visit)(void *ctx, const mab_record *record),
                          void *ctx, mab_error *err);

/**
 * @brief Add records to storage in one all-or-nothing step (replace = 0), or
 *        make the named experiments hold exactly these records (replace = 1:
 *        every experiment that appears in `records` is cleared first).
 *        Every experiment and arm must be in the config; counters in memory
 *        are reloaded afterwards.
 * @return MAB_OK; MAB_ENOTFOUND naming the first unknown experiment or arm,
 *         MAB_EINVAL for a negative or non-finite sum, MAB_ERANGE when an
 *         arm's sums (its current totals plus the records, or the records
 *         alone for experiments that replace clears) would not be finite, in
 *         the experiment's units or normalised, MAB_EPLUGIN for an ABI
 *         1.0 storage plugin, or a storage error: then nothing was imported.
 */
MAB_EXPORT int mab_import(mab_engine *engine, const mab_record *records, size_t n_records,
                          int replace, mab_error *err);

/*
 * Reports: who is winning, and how sure (core/report.c, docs/operating.md).
 *
 * From one snapshot of an experiment (mab_stats() and its reward range) the
 * core computes, per arm, the posterior of its mean reward, a 95%
 * equal-tailed credible interval, P(best) and the expected loss of choosing
 * it, and, per experiment, the leader and whether the `winner` rule of the
 * config holds. The posterior model follows the reward range:
 *  - reward range [0, 1] (the default): Beta(1 + s, 1 + max(0, n - s)) with
 *    n the pulls and s the reward sum (clicks, or fractional rewards in
 *    [0, 1] taken as Bernoulli-like), as Thompson sampling's posterior;
 *  - any other range: Normal(mean, v / n) in reward units, v the arm's
 *    sample variance (reward_sum_sq, reward_sum and pulls; a pull never
 *    rewarded counts as a reward of 0). Until an arm shows any spread
 *    (fewer than 2 pulls, or every reward equal so far) v is the largest
 *    variance a reward in the range can have, ((max - min) / 2)^2, and an
 *    arm with no pulls is centred on the middle of the range. Its credible
 *    interval is clipped to the values a mean can take: [min(reward_min,
 *    0), max(reward_max, 0)] (a pull never rewarded counts as 0).
 * P(best) and expected loss are Monte Carlo estimates over
 * MAB_REPORT_DRAWS joint draws from those posteriors, from a stream seeded
 * with the experiment's id, so one snapshot always gives one answer.
 *
 * Fields marked "when available" hold a value only when their
 * MAB_REPORT_HAS_* bit is set in `available`; otherwise they are NAN
 * (doubles) or 0, and every surface shows them as "not available"; none
 * invents a value. mab_report_get() sets MAB_REPORT_HAS_LATE always (the
 * rewards the attribution window refused in this process since open, 0
 * without a window) and MAB_REPORT_HAS_HOLDOUT for an experiment with a
 * holdout (mab_holdout_compare()), and MAB_REPORT_HAS_SRM when the
 * sample-ratio check has a p-value (at least one counted choice whose
 * probabilities of every arm are known, and two arms served with a
 * probability above 0; srm_status says why not otherwise). With a storage
 * that keeps time buckets (mab_storage_has_buckets()) it sets
 * MAB_REPORT_HAS_HISTORY (the last history_max buckets, from mab_history(),
 * so they survive restarts) and, once a bucket holds pulls,
 * MAB_REPORT_HAS_SHARE (each arm's share of the latest such bucket).
 */

#define MAB_REPORT_DRAWS 10000 /* Monte Carlo draws per report */
#define MAB_REPORT_TEXT_MAX 192 /* mab_report.recommendation, NUL included */

/* mab_report.model */
#define MAB_REPORT_BETA 1   /* Beta posterior on rewards in [0, 1] */
#define MAB_REPORT_NORMAL 2 /* Normal posterior with the sample variance */

/* Bits of mab_report.available: which "when available" fields hold values. */
#define MAB_REPORT_HAS_SHARE 0x1u   /* mab_report_arm.share_last_bucket */
#define MAB_REPORT_HAS_HOLDOUT 0x2u /* mab_report.holdout_* */
#define MAB_REPORT_HAS_SRM 0x4u     /* mab_report.srm_p_value */
#define MAB_REPORT_HAS_LATE 0x8u    /* late_rewards (experiment and arms) */
#define MAB_REPORT_HAS_HISTORY 0x10u /* mab_report.history (a store keeping buckets) */

/* Buckets of history in a report from mab_report_get(), and the most
   mab_report_get_buckets() gives (a year of hourly buckets). */
#define MAB_REPORT_HISTORY_DEFAULT 24
#define MAB_REPORT_HISTORY_MAX 8760

/* The defaults of the config's "winner": {"p_best", "expected_loss"}. */
#define MAB_WINNER_P_BEST 0.95
#define MAB_WINNER_EXPECTED_LOSS 0.001

/* One arm of a report. Read the arms with mab_report_arm_at(): the array's
   stride is the library's sizeof(mab_report_arm), which may grow. */
typedef struct mab_report_arm {
    const char *arm_id;     /* as in the snapshot (see mab_report()) */
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;      /* in reward units */
    double mean;            /* reward_sum / pulls, 0 when pulls == 0 */
    double ci_low, ci_high; /* 95% equal-tailed credible interval of the mean,
                               reward units */
    double p_best;          /* P(this arm has the highest mean), in [0, 1] */
    double expected_loss;   /* E[max_j theta_j - theta_this], reward units, >= 0 */
    /* When available (MAB_REPORT_HAS_SHARE): this arm's share of the pulls
       of the latest stored time bucket with pulls (mab_report.
       last_bucket_start), else NAN. */
    double share_last_bucket;
    /* When available (MAB_REPORT_HAS_LATE): rewards refused as late. */
    uint64_t late_rewards;
} mab_report_arm;

/* A report of one experiment. The caller sets struct_size to
   sizeof(mab_report); the library fills the fields that fit in it, so a
   program built against an older, shorter mab_report keeps working. */
typedef struct mab_report {
    size_t struct_size;      /* set by the caller */
    const char *experiment;  /* the experiment's id */
    const char *policy;      /* the policy plugin's name ("" from mab_report_compute) */
    const char *policy_json; /* the experiment's "policy" object of the config, as
                                compact JSON ("" from mab_report_compute) */
    double reward_min, reward_max;
    int model;               /* MAB_REPORT_BETA or MAB_REPORT_NORMAL */
    unsigned draws;          /* Monte Carlo draws (MAB_REPORT_DRAWS) */
    uint64_t seed;           /* of the draws */
    double winner_p_best;        /* the rule in force: P(best) at least this ... */
    double winner_expected_loss; /* ... and expected loss below this (reward units) */
    uint64_t pulls;          /* of every arm */
    size_t leader;           /* index of the arm with the highest P(best) (ties:
                                the lower expected loss, then config order) */
    int winner;              /* 1 when the leader's p_best >= winner_p_best and
                                its expected_loss < winner_expected_loss */
    size_t n_arms;
    size_t arm_size;         /* the library's sizeof(mab_report_arm) */
    const void *arms;        /* n_arms entries: mab_report_arm_at() */
    /* The recommendation in words, the same on every surface:
       "winner: blue, P(best) 0.973, expected loss 0.0004" or
       "keep exploring: P(best) 0.710 for blue, expected loss 0.012". */
    char recommendation[MAB_REPORT_TEXT_MAX];
    unsigned available;      /* MAB_REPORT_HAS_* bits */
    /* When available (MAB_REPORT_HAS_HOLDOUT): reward per visitor of the
       bandit's arms minus the holdout's, with a 95% interval (NAN while a
       group has fewer than 2 visitors). */
    double holdout_diff, holdout_diff_low, holdout_diff_high;
    /* When available (MAB_REPORT_HAS_SRM): the sample-ratio check, the
       chi-square p-value (K - 1 degrees of freedom, K the arms served with a
       probability above 0) of each arm's pulls O_i against its expected
       pulls E_i, the sum over the counted choices of the probability with
       which the arm was served (docs/operating.md). Below 0.001 the
       assignment does not follow the probabilities served. */
    double srm_p_value;
    /* When available (MAB_REPORT_HAS_LATE): rewards refused as late. */
    uint64_t late_rewards;
    /* Appended after the first version (MAB_REPORT_SIZE_0_1 ends above). */
    /* The check in words, always set: "ok: p = 0.43, 100000 visitors",
       "mismatch: p = 1.2e-06 < 0.001", or "not available: " and why (e.g.
       the policy reports no probabilities for its arms, policy ABI < 2.2;
       "srm": false in the config). */
    char srm_status[MAB_REPORT_TEXT_MAX];
    int64_t bucket_seconds;    /* width of the time buckets (mab_bucket_seconds());
                                  0 from mab_report_compute */
    int64_t last_bucket_start; /* MAB_REPORT_HAS_SHARE: start (unix seconds) of
                                  the bucket share_last_bucket is of; else 0 */
    /* When available (MAB_REPORT_HAS_HISTORY: the storage keeps time
       buckets, mab_storage_has_buckets()): the last n_history buckets with
       events (at most MAB_REPORT_HISTORY_DEFAULT, or what
       mab_report_get_buckets() was given), oldest first, each with an entry per arm (config order) whose
       start is the bucket's: read them with mab_report_bucket_at(). */
    size_t n_history;
    size_t history_size;       /* the library's sizeof(mab_bucket_stats) */
    const void *history;       /* n_history * n_arms entries */
    /* The operating rules in force (mab_rules()), for every surface to show
       them; NULL from mab_report_compute. */
    const mab_rules_info *rules;
} mab_report;

/* The first version's mab_report: struct_size and the fields up to
   late_rewards. A caller giving only this much gets no history nor rules. */
#define MAB_REPORT_SIZE_0_1 (offsetof(mab_report, late_rewards) + sizeof(uint64_t))

/* The snapshot mab_report_compute() works on. */
typedef struct mab_report_input {
    size_t struct_size;          /* sizeof(mab_report_input), set by the caller */
    const char *experiment;      /* id; also seeds the draws */
    const mab_arm_stats *arms;   /* n_arms totals, as mab_stats() fills them */
    size_t n_arms;
    double reward_min, reward_max; /* min < max */
    double winner_p_best;        /* in (0, 1] */
    double winner_expected_loss; /* > 0, reward units */
} mab_report_input;

/**
 * @brief Report on one experiment: take one snapshot of its arms
 *        (mab_stats()), read its reward range and `winner` rule, and compute
 *        as mab_report_compute() does. Counts and changes nothing.
 * @param out caller-owned, out->struct_size set; on success filled (up to
 *        struct_size) with arms the library allocated: release them with
 *        mab_report_free(). Strings are the engine's, valid until
 *        mab_close(). Untouched on failure.
 *        The history holds the last MAB_REPORT_HISTORY_DEFAULT buckets.
 * @return MAB_OK, MAB_ENOTFOUND (unknown experiment), MAB_EINVAL (NULL
 *         argument, out->struct_size smaller than MAB_REPORT_SIZE_0_1),
 *         MAB_ENOMEM or a storage error reading the buckets (MAB_ESTORAGE,
 *         naming the store).
 */
MAB_EXPORT int mab_report_get(mab_engine *engine, const char *experiment, mab_report *out,
                              mab_error *err);

/**
 * @brief mab_report_get() with at most max_buckets buckets of history (the
 *        latest ones): about 100 bytes of report JSON per arm and bucket.
 * @param max_buckets 0 for MAB_REPORT_HISTORY_DEFAULT; at most
 *        MAB_REPORT_HISTORY_MAX.
 * @return as mab_report_get(); MAB_EINVAL for max_buckets above
 *         MAB_REPORT_HISTORY_MAX, too.
 */
MAB_EXPORT int mab_report_get_buckets(mab_engine *engine, const char *experiment,
                                      size_t max_buckets, mab_report *out, mab_error *err);

/**
 * @brief The report of a snapshot given by the caller (for tests, and for
 *        programs that keep counters elsewhere). The engine is not needed.
 * @param in the snapshot; its strings must outlive the report (the report's
 *        arm ids and experiment id point to them).
 * @param out as mab_report_get(); release with mab_report_free().
 * @return MAB_OK, MAB_EINVAL (NULL argument, small struct_size, n_arms < 1,
 *         a NULL arm id, pulls or sums that are negative or not finite,
 *         reward_min >= reward_max, winner_p_best outside (0, 1],
 *         winner_expected_loss not > 0; the message names the field and the
 *         arm) or MAB_ENOMEM. Untouched on failure.
 */
MAB_EXPORT int mab_report_compute(const mab_report_input *in, mab_report *out, mab_error *err);

/**
 * @brief The report as one JSON object, the document every surface shows
 *        (`mab report --json`, mabd's /v1/report/EXP, the dashboards):
 *        {"experiment", "policy", "policy_params" (the config's policy
 *        object), "reward_min", "reward_max", "model" ("beta" | "normal"),
 *        "draws", "winner_rule": {"p_best", "expected_loss"}, "pulls",
 *        "leader" (an arm id), "winner" (true | false), "recommendation",
 *        "arms": {ARM: {"pulls", "rewards", "reward_sum", "mean", "ci_low",
 *        "ci_high", "p_best", "expected_loss", "share_last_bucket",
 *        "late_rewards"}}, "holdout", "srm_p_value", "srm_status" (a
 *        string, always), "late_rewards",
 *        "not_available": [names of the fields that are null because
 *        storage cannot tell them yet], and, when the report's struct_size
 *        holds them: "bucket_seconds", "last_bucket_start", "history":
 *        [{"start", "pulls", "arms": {ARM: {"pulls", "rewards",
 *        "reward_sum", "rate", "share"}}}] (rate: reward_sum / pulls of the
 *        bucket, share: of the bucket's pulls; null without pulls), "rules":
 *        {"state", "serve", "floor", "burn_in", "holdout": {"share", "arm"}
 *        | null, "attribution_window"}, "not_available_reasons": {NAME:
 *        why}. Numbers round-trip as doubles; counters are exact integers.
 * @param out receives a NUL-terminated string; release it with
 *        mab_report_json_free().
 * @return MAB_OK, MAB_EINVAL (NULL argument, or a report without arms) or
 *         MAB_ENOMEM.
 */
MAB_EXPORT int mab_report_json(const mab_report *report, char **out, mab_error *err);

/** @brief Release a string from mab_report_json(). NULL is fine. */
MAB_EXPORT void mab_report_json_free(char *json);

/**
 * @brief Arm number i (0 <= i < report->n_arms) of a report, whatever the
 *        size of mab_report_arm the caller was built with.
 * @return a pointer into the report, valid until mab_report_free(); NULL for
 *         a NULL report or i out of range.
 */
MAB_EXPORT const mab_report_arm *mab_report_arm_at(const mab_report *report, size_t i);

/**
 * @brief Bucket b (0 <= b < report->n_history, oldest first) of arm i of a
 *        report's history, whatever the size of mab_bucket_stats.
 * @return a pointer into the report, valid until mab_report_free(); NULL for
 *         a NULL report, a struct_size without the history, or b or i out of
 *         range.
 */
MAB_EXPORT const mab_bucket_stats *mab_report_bucket_at(const mab_report *report, size_t b,
                                                        size_t i);

/**
 * @brief Release what mab_report_get() or mab_report_compute() allocated,
 *        and clear report->arms and report->n_arms. NULL is fine; so is a
 *        report released already.
 */
MAB_EXPORT void mab_report_free(mab_report *report);

#ifdef __cplusplus
}
#endif
#endif /* MAB_MAB_H */
