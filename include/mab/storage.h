/*
 * storage.h - the storage plugin ABI.
 *
 * Changelog (fields are only appended; the core reads a field only when the
 * plugin's struct_size covers it):
 *   1.0  open, load, apply, reset, close: counters per (experiment, arm),
 *        received as increments.
 *   1.1  refresh_ms (other writers share the store), scan (export) and
 *        replace (import --replace).
 *   1.2  check and open_read_only, both optional (`mab check`, `mabd -t`,
 *        read-only commands).
 *   1.3  claim: storage's atomic first-wins record that an assignment was
 *        rewarded, shared by every thread, process, restart and machine
 *        using the store (reward once, DESIGN.md decision 12). A plugin
 *        older than 1.3 has no claims: the adapter then guards rewards with
 *        a per-process memory only, and `mab check` says so.
 *   1.4  policy statistics (policy ABI 2): apply_stats() adds counters and
 *        statistics in one all-or-nothing batch, load_stats() and
 *        scan_stats() read them. A plugin without them keeps serving every
 *        policy that keeps no statistics; the core refuses to open it for
 *        one that does.
 *   1.5  time buckets (DESIGN.md decision 11): apply_buckets() adds
 *        counters, statistics and per-bucket increments in one batch and
 *        drops buckets past the retention; load_buckets() and scan_buckets()
 *        read them. A plugin without them keeps serving every experiment:
 *        the engine then has no stored history (windows and history start
 *        empty at each open, and `mab check` says so).
 *   1.6  changed(), optional: the experiments changed since the last call,
 *        so that a refresh re-reads only those.
 *
 * A storage plugin is a shared object exporting exactly one symbol,
 * `mab_storage_entry`, returning a pointer to a static mab_storage
 * descriptor (use MAB_STORAGE_DEFINE). It persists, for each (experiment id,
 * arm id), four counters, and it only ever receives increments: deltas
 * commute, so several processes or machines can add to one store without
 * losing updates. Records of arms that are no longer in the config are kept
 * untouched.
 *
 * The core serialises calls: a plugin is never entered from two threads at
 * once, so it needs no locking of its own for the core's sake. The core
 * only calls scan and replace when struct_size covers them (ABI >= 1.1);
 * a 1.1 plugin must set both. check and open_read_only (ABI >= 1.2) are
 * optional: the core calls them only when struct_size covers them and they
 * are not NULL. The core calls claim when struct_size covers it (ABI >= 1.3);
 * a 1.3 plugin must set it (the loader refuses one that does not).
 * apply_stats, load_stats and scan_stats (ABI >= 1.4) go together (all set,
 * or all NULL). When the
 * config says `sync: "always"` the core calls apply() before a reward call
 * returns; with `sync: {"interval_ms": N}` it calls apply() from a background
 * thread every N ms and at close. Either way apply() must return only once
 * the batch is durable (or failed without applying anything).
 *
 * The keys "plugin", "sync", "refresh_ms", "bucket_seconds" and
 * "retention_seconds" of the storage object belong to the core; every other
 * key is the plugin's, read through mab_params.
 *
 * Versioning follows policy.h: abi_major, abi_minor, struct_size first;
 * fields only appended, with a minor bump.
 */
#ifndef MAB_STORAGE_H
#define MAB_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mab.h"
#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MAB_STORAGE_ABI_MAJOR 1
#define MAB_STORAGE_ABI_MINOR 6
#define MAB_STORAGE_ENTRY_SYMBOL "mab_storage_entry"

/* Bytes of an assignment id (random, carried in the signed cookie). */
#define MAB_ASSIGNMENT_ID_BYTES 16

/* claim() flag: the claim may become durable with the next apply (below). */
#define MAB_CLAIM_DEFER_SYNC 1u

/* The four counters kept per arm, in the experiment's own reward units. */
typedef struct mab_totals {
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} mab_totals;

/* One increment: add `add` to the record of (experiment, arm). */
typedef struct mab_delta {
    const char *experiment;
    const char *arm;
    mab_totals add;
} mab_delta;

/* One claim of a claim() call (see there). */
typedef struct mab_claim {
    const uint8_t *assignment_id; /* MAB_ASSIGNMENT_ID_BYTES bytes */
    int64_t expires_at;           /* unix seconds */
    const mab_delta *deltas;      /* applied when granted; may be NULL */
    size_t n_deltas;
    int result;                   /* out: MAB_OK (granted) or MAB_ECLAIMED */
} mab_claim;
/* One increment of policy statistics (ABI 1.4): add values[0..n_values) to
   the record of (experiment, arm, layout); arm NULL: the experiment's own. */
typedef struct mab_stats_delta {
    const char *experiment;
    const char *arm;        /* NULL for per-experiment statistics */
    const char *layout;     /* the layout tag, e.g. "exp3/1:1,0" */
    const double *values;
    size_t n_values;
} mab_stats_delta;

/*
 * One increment of a time bucket (ABI 1.5): add `add` to the bucket of
 * (experiment, arm) that starts at `bucket`. A bucket's start is unix
 * seconds, a multiple of the storage object's "bucket_seconds" (3600 by
 * default); the core computes it from the event's time, so a plugin treats
 * it as an opaque key that orders like time. Bucket increments are in the
 * experiment's own reward units, like mab_delta.
 */
typedef struct mab_bucket_delta {
    const char *experiment;
    const char *arm;
    int64_t bucket;
    mab_totals add;
} mab_bucket_delta;

typedef struct mab_storage {
    uint32_t abi_major;   /* MAB_STORAGE_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;   /* MAB_STORAGE_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(mab_storage) the plugin was built with */
    const char *name;        /* short name, e.g. "json_file" */
    const char *description; /* one line for `mab check` */

    /**
     * Open the store described by params (relative paths through
     * mab_params_path()). Refuse a store in use by another process that the
     * backend cannot share (MAB_EBUSY), and a corrupt one (MAB_ECORRUPT),
     * without modifying it.
     * @return MAB_OK or an error; on error fill err and leave *state unset.
     */
    int (*open)(mab_params *params, void **state, mab_error *err);

    /**
     * Read the totals of n_arms arms of one experiment into out[0..n_arms);
     * an arm with no record reads as zeros.
     */
    int (*load)(void *state, const char *experiment, const char *const *arm_ids,
                size_t n_arms, mab_totals *out, mab_error *err);

    /**
     * Add a batch of increments, all or nothing, and make it durable before
     * returning. On failure nothing of the batch may remain applied.
     *
     * What the core does next depends on the status, so choose it by cause:
     *  - MAB_EINVAL or MAB_ERANGE: the batch holds a delta this store can
     *    never take as it is, whatever the time (an id it cannot key, a sum
     *    that is not finite, counters that would overflow the record). The
     *    core applies halves of the batch on their own until the refused
     *    deltas stand alone, drops those (counted by mab_dropped_deltas(),
     *    the last err kept for the host to log) and writes the rest. Name
     *    the experiment and arm in err.
     *  - any other code (MAB_ESTORAGE for I/O errors such as a full disk or
     *    an unreachable server, MAB_ENOMEM, MAB_EBUSY, MAB_ECORRUPT): the
     *    store cannot take the batch now. The core keeps the whole batch and
     *    offers it again later; nothing is dropped. Never answer MAB_EINVAL
     *    or MAB_ERANGE for such a condition: that would lose the batch.
     */
    int (*apply)(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err);

    /** Remove every record of an experiment (all arms, in the config or not;
        its policy statistics and time buckets too, ABI >= 1.4 / 1.5). */
    int (*reset)(void *state, const char *experiment, mab_error *err);

    /** Release the store (locks, files, connections). Called once. */
    void (*close)(void *state);
    /* Fields above are ABI 1.0. */

    /**
     * Default period, in ms, at which the core re-reads totals with load()
     * because other processes or machines add to the same store; 0 when the
     * store has no other writers. The storage object's "refresh_ms" key
     * overrides it.
     */
    uint32_t refresh_ms;

    /**
     * Visit every record, including records of arms and experiments that are
     * no longer in the config (export). When visit returns nonzero the scan
     * stops and returns that value.
     */
    int (*scan)(void *state,
                int (*visit)(void *ctx, const char *experiment, const char *arm,
                             const mab_totals *totals),
                void *ctx, mab_error *err);

    /**
     * All or nothing: remove every record of the listed experiments (with
     * their statistics and buckets, ABI >= 1.4 / 1.5), then add the deltas
     * (import --replace).
     */
    int (*replace)(void *state, const char *const *experiments, size_t n_experiments,
                   const mab_delta *deltas, size_t n_deltas, mab_error *err);
    /* Fields above are ABI 1.1. */

    /* ---- check and read-only open (ABI 1.2; `mab check`, `mabd -t`) ---- */

    /**
     * Optional (NULL: the core reports the store's parameters as not
     * checked). Validate params exactly as open() would and verify that the
     * existing store can be read, or is absent and could be created, without
     * creating, modifying or locking anything: it must succeed while another
     * process holds the store open, and leave the file system as it was. A
     * store that open() would refuse (a corrupt file, a directory that does
     * not exist, an unreachable server) is an error naming it.
     * @return MAB_OK, MAB_ECONFIG (params), MAB_ECORRUPT or MAB_ESTORAGE.
     */
    int (*check)(mab_params *params, mab_error *err);

    /**
     * Optional (NULL: the core uses open()). Open the store for load() and
     * scan() only, taking no lock a writer needs and creating nothing: a
     * read-only command may read a store while its owner serves (what the
     * owner has not written yet is not seen). The core never calls apply,
     * reset or replace on such a state; close() releases it.
     */
    int (*open_read_only)(mab_params *params, void **state, mab_error *err);
    /* Fields above are ABI 1.2. */

    /* ---- reward once (ABI 1.3) ---- */

    /**
     * Claim assignments: for each of claims[0..n_claims), record atomically
     * and first-wins that the assignment `assignment_id` was rewarded, and
     * when that claim wins, add its `deltas`. The whole call is one
     * all-or-nothing step (the core groups the claims of concurrent rewards
     * into one call, so that they share one durable write).
     *
     * First-wins holds across the threads, processes, restarts and (for
     * stores shared over the network) machines using one store: of any
     * number of concurrent claims of one id, exactly one is granted. Within
     * one call, an id given twice is granted to its first entry only.
     *
     * Each mab_claim holds:
     *   assignment_id  the 16 bytes of the id; read during the call only.
     *   expires_at     unix time (seconds) after which the claim is of no
     *                  use: the cookie that carried the assignment has
     *                  expired, so the core never asks about it again. The
     *                  plugin removes expired claims in the background, doing
     *                  a bounded amount of work per call (never a full scan
     *                  inside a request). A claim still stored after
     *                  expires_at may be granted again.
     *   deltas, n_deltas  increments to apply when this claim is granted
     *                  (the reward it guards), or NULL and 0; read during the
     *                  call only.
     *   result         set by the plugin when the call returns MAB_OK:
     *                  MAB_OK (granted, its deltas applied) or MAB_ECLAIMED
     *                  (already claimed and not expired; nothing applied).
     *
     * @param flags 0, or MAB_CLAIM_DEFER_SYNC.
     * @return MAB_OK: every claim was decided (see each result).
     *         MAB_EINVAL: a bad argument or delta (as apply). MAB_ERANGE: a
     *         counter would overflow. MAB_ESTORAGE (or MAB_ENOMEM): the store
     *         failed. On any error nothing is claimed and no delta applied,
     *         so the same claims may be retried. A backend that cannot make
     *         claims and increments one step (no multi-record transactions)
     *         undoes the claims it made when the increments fail; when even
     *         that fails it returns MAB_ESTORAGE and says so in err ("...
     *         remain without their reward"): those assignments then stay
     *         claimed without their reward, so they are refused later and
     *         never counted twice.
     *
     * Durability: with flags 0, like apply, claim returns only once the
     * claims and their deltas are durable; the core does so under `sync:
     * "always"` (claims and rewards in one durable step). Under `sync:
     * {"interval_ms": N}` the core passes MAB_CLAIM_DEFER_SYNC and no deltas
     * (the rewards' increments follow with the next batch): the claims must
     * still be decided and visible to every other user of the store when
     * claim returns (first-wins is never deferred), but they may become
     * durable only with the next apply, so a machine crash loses a claim
     * together with the increment it guards. A backend may ignore the flag.
     */
    int (*claim)(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                 mab_error *err);
    /*
     * Policy statistics (ABI 1.4). A policy of ABI 2 keeps extra doubles per
     * arm and per experiment (policy.h, mab_policy_layout); the core adds to
     * them exactly as to the counters. A record of statistics is keyed by
     * (experiment id, arm id or none for the experiment's own, layout tag):
     * the tag names the policy and its layout, e.g. "exp3/1:1,0" (name
     * "/" stats_version ":" per-arm count "," per-experiment count), so
     * records of another policy or layout are neither read nor overwritten:
     * a config that switches policy starts from zero and the old records stay
     * (reset() and replace() remove them with the experiment's counters).
     * The core calls these only when struct_size covers them and they are
     * set; a plugin sets all three, or leaves all three NULL when it stores
     * no statistics (a 1.1 source rebuilt against this header): the core
     * then refuses, at open, any experiment whose policy keeps statistics.
     */

    /**
     * Like apply(), in the same transaction: add the counter deltas and the
     * statistics deltas, all or nothing, durable before returning. Either
     * list may be empty. The core calls it instead of apply() whenever a
     * batch holds statistics.
     * @param stats n_stats increments; stats[k].values has n_values doubles,
     *        valid during the call.
     * @return MAB_OK or an error (MAB_ESTORAGE, MAB_ENOMEM, ...) with nothing
     *         applied.
     */
    int (*apply_stats)(void *state, const mab_delta *deltas, size_t n_deltas,
                       const struct mab_stats_delta *stats, size_t n_stats, mab_error *err);

    /**
     * Read one experiment's statistics under `layout`: arm i's n_arm_stats
     * doubles into arm_out[i * n_arm_stats ...], the experiment's
     * n_experiment_stats into experiment_out. Missing records read as zeros;
     * records under another layout are ignored.
     */
    int (*load_stats)(void *state, const char *experiment, const char *layout,
                      const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                      double *arm_out, size_t n_experiment_stats, double *experiment_out,
                      mab_error *err);

    /**
     * Visit every statistics record, of every layout (export, `mab check`).
     * arm is NULL for an experiment's own record. When visit returns nonzero
     * the scan stops and returns that value. Strings and values are valid
     * during the visit only.
     */
    int (*scan_stats)(void *state,
                      int (*visit)(void *ctx, const char *experiment, const char *arm,
                                   const char *layout, const double *values, size_t n_values),
                      void *ctx, mab_error *err);
    /* Fields above are ABI 1.4. */

    /*
     * Time buckets (ABI 1.5). Beside the totals, which hold everything ever
     * added, a store keeps per-bucket increments of the four counters for
     * the recent past: each record is keyed by (experiment id, arm id,
     * bucket start). Totals are never derived from buckets and buckets never
     * from totals: the core adds each event once to the totals and once to
     * its bucket, so dropping a bucket past the retention ("compaction")
     * leaves the totals exact. The core calls these only when struct_size
     * covers them and all three are set (a plugin sets all three or none).
     */

    /**
     * Like apply_stats(), in the same all-or-nothing durable step: add the
     * counter deltas, the statistics deltas and the bucket increments
     * (each list may be empty), then remove bucket records that start
     * before `keep_from` (unix seconds; INT64_MIN: remove none). Removal is
     * maintenance: do a bounded amount of it per call (never a full scan of
     * a large store inside one call), as long as every call makes progress,
     * so that old buckets disappear over successive calls. The core calls
     * it instead of apply() and apply_stats() whenever a batch holds
     * bucket increments. The error contract is apply()'s.
     */
    int (*apply_buckets)(void *state, const mab_delta *deltas, size_t n_deltas,
                         const mab_stats_delta *stats, size_t n_stats,
                         const mab_bucket_delta *buckets, size_t n_buckets, int64_t keep_from,
                         mab_error *err);

    /**
     * Visit the bucket records of one experiment, for the arms arm_ids[0..
     * n_arms), that start at or after `since` (unix seconds), in ascending
     * bucket order (arms in any order within a bucket). arm_index is the
     * position in arm_ids; add is valid during the visit only. Records of
     * arms not listed are skipped. When visit returns nonzero the call
     * stops and returns that value.
     * @return MAB_OK, what visit returned, or a storage error.
     */
    int (*load_buckets)(void *state, const char *experiment, const char *const *arm_ids,
                        size_t n_arms, int64_t since,
                        int (*visit)(void *ctx, size_t arm_index, int64_t bucket,
                                     const mab_totals *add),
                        void *ctx, mab_error *err);

    /**
     * Visit every bucket record, of every experiment and arm, in any order
     * (export, `mab check`). Strings and totals are valid during the visit
     * only. When visit returns nonzero the scan stops and returns it.
     */
    int (*scan_buckets)(void *state,
                        int (*visit)(void *ctx, const char *experiment, const char *arm,
                                     int64_t bucket, const mab_totals *add),
                        void *ctx, mab_error *err);
    /* Fields above are ABI 1.5. */

    /* ---- what changed (ABI 1.6) ---- */

    /**
     * Optional (NULL: each refresh re-reads every experiment with load()).
     * Name the experiments whose records (counters, statistics, buckets)
     * any writer changed in the store since the previous call on this
     * state: call visit once for each (an id may come more than once, or
     * for an experiment that did not change, but never be missing), or set
     * *everything to 1 when the plugin cannot tell (the first call on a
     * state, a writer that keeps no change log wrote meanwhile): the core
     * then re-reads every experiment. The core calls it at the start of
     * each refresh, then load()s only what it names, so that a refresh of a
     * million experiments costs what changed. The state's position moves
     * on only when the call returns MAB_OK; when a later load() fails the
     * core asks for everything next time. The id is valid during the visit
     * only; visit returning nonzero stops the call, which returns that.
     * @return MAB_OK, what visit returned, or a storage error.
     */
    int (*changed)(void *state, int *everything,
                   int (*visit)(void *ctx, const char *experiment), void *ctx, mab_error *err);
    /* Fields above are ABI 1.6. Append new ones below, with a minor bump. */
} mab_storage;

#define MAB_STORAGE_HEADER MAB_STORAGE_ABI_MAJOR, MAB_STORAGE_ABI_MINOR, (uint32_t)sizeof(mab_storage)

#define MAB_STORAGE_DEFINE(descriptor)                                   \
    MAB_PLUGIN_EXPORT const mab_storage *mab_storage_entry(void);        \
    MAB_PLUGIN_EXPORT const mab_storage *mab_storage_entry(void) { return &(descriptor); }

#ifdef __cplusplus
}
#endif
#endif /* MAB_STORAGE_H */
