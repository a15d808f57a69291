/*
 * storage.h - the storage plugin ABI.
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
 * a 1.1 plugin must set both. When the
 * config says `sync: "always"` the core calls apply() before a reward call
 * returns; with `sync: {"interval_ms": N}` it calls apply() from a background
 * thread every N ms and at close. Either way apply() must return only once
 * the batch is durable (or failed without applying anything).
 *
 * The keys "plugin", "sync" and "refresh_ms" of the storage object belong to
 * the core; every other key is the plugin's, read through mab_params.
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
#define MAB_STORAGE_ABI_MINOR 1
#define MAB_STORAGE_ENTRY_SYMBOL "mab_storage_entry"

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

    /** Remove every record of an experiment (all arms, in the config or not). */
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
     * All or nothing: remove every record of the listed experiments, then add
     * the deltas (import --replace).
     */
    int (*replace)(void *state, const char *const *experiments, size_t n_experiments,
                   const mab_delta *deltas, size_t n_deltas, mab_error *err);
    /* Fields above are ABI 1.1. Append new ones below, with a minor bump. */
} mab_storage;

#define MAB_STORAGE_HEADER MAB_STORAGE_ABI_MAJOR, MAB_STORAGE_ABI_MINOR, (uint32_t)sizeof(mab_storage)

#define MAB_STORAGE_DEFINE(descriptor)                                   \
    MAB_PLUGIN_EXPORT const mab_storage *mab_storage_entry(void);        \
    MAB_PLUGIN_EXPORT const mab_storage *mab_storage_entry(void) { return &(descriptor); }

#ifdef __cplusplus
}
#endif
#endif /* MAB_STORAGE_H */
