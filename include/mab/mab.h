/*
 * mab.h - the mab engine: open a config, choose arms, record rewards.
 *
 * Changelog:
 *  - 0.1: the engine API below mab_import().
 *  - policy ABI 2: mab_set_clock(), mab_context with mab_choose_ctx() and
 *    mab_reward_ctx() (named features, time, probability),
 *    mab_policy_stats(), mab_explain(), mab_stored_layouts().
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
#define MAB_VERSION_MINOR 1
#define MAB_VERSION_PATCH 0
#define MAB_VERSION_STRING "0.1.0"

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

/** @brief The library's version string, e.g. "0.1.0". */
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

/* What mab_choose() and mab_arm_lookup() return. */
typedef struct mab_choice {
    size_t arm_index;       /* position of the arm in the config */
    const char *arm_id;     /* valid until mab_close() */
    const char *value_json; /* the arm's JSON value as text; valid until mab_close() */
    double probability;     /* probability the policy chose this arm with, or NAN
                               when the policy cannot tell (Thompson) */
} mab_choice;

/**
 * @brief Let the experiment's policy choose an arm and count one pull of it.
 * @return MAB_OK, MAB_ENOTFOUND (unknown experiment), MAB_EPLUGIN (the policy
 *         returned an error or an arm index out of range).
 */
MAB_EXPORT int mab_choose(mab_engine *engine, const char *experiment, mab_choice *out,
                          mab_error *err);

/**
 * @brief Describe one arm without counting a pull (for hosts whose visitor
 *        already holds an arm). out->probability is NAN.
 * @return MAB_OK or MAB_ENOTFOUND (experiment or arm).
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
 *         saying so ("... was not written: storage refused ...").
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
} mab_context;

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
 * @return MAB_OK, MAB_ENOTFOUND or MAB_EINVAL (NULL info, small struct_size).
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

/* Totals of one arm, in the experiment's own reward units. */
typedef struct mab_arm_stats {
    const char *arm_id;   /* valid until mab_close() */
    uint64_t pulls;       /* times the arm was chosen */
    uint64_t rewards;     /* number of rewards recorded */
    double reward_sum;    /* sum of reward values */
    double reward_sum_sq; /* sum of squared reward values */
    double mean;          /* reward_sum / pulls (0 when pulls == 0) */
} mab_arm_stats;

typedef struct mab_experiment_info {
    const char *id;          /* valid until mab_close() */
    const char *policy;      /* the policy plugin's name */
    const char *policy_path; /* the file it was loaded from (valid until mab_close()) */
    size_t n_arms;
    double reward_min, reward_max;
} mab_experiment_info;

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
 * @return MAB_OK or MAB_ENOTFOUND (index out of range).
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
 * @param out array of at least `cap` entries, filled in config order.
 * @param n_arms receives the experiment's number of arms (even when > cap).
 * @return MAB_OK or MAB_ENOTFOUND.
 */
MAB_EXPORT int mab_stats(mab_engine *engine, const char *experiment, mab_arm_stats *out,
                         size_t cap, size_t *n_arms, mab_error *err);

/**
 * @brief Write every pending increment to storage now and wait until it is
 *        durable.
 * @return MAB_OK or the storage plugin's error (pending increments are kept
 *         and retried by the next flush). Increments storage refuses as
 *         invalid are dropped and the rest written: that is MAB_OK, with the
 *         drops counted by mab_dropped_deltas().
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
 * @return MAB_OK, MAB_ENOTFOUND or a storage error (then nothing changed).
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

#ifdef __cplusplus
}
#endif
#endif /* MAB_MAB_H */
