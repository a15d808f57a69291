/*
 * engine.h - the engine's internal structures, shared by engine.c (choose,
 * reward, write-behind), config.c (parsing) and loader.c (plugins).
 *
 * Where counts live. Each arm has published totals (`mab__arm`, atomics read
 * without locks by choose). A thread does not write them directly: it adds
 * its pulls and rewards to the pending totals of its own slot and publishes
 * them every MAB__PUBLISH_EVERY operations (and before any read that must be
 * exact: stats, flush, close). Publishing adds the pending totals to the
 * published ones and to the write-behind queue (`unapplied`), from which the
 * writer hands batches of increments to the storage plugin. So the choose
 * path takes no global lock and writes no shared cache line; a thread's view
 * is the published totals plus its own pending ones, exact for one thread.
 */
#ifndef MAB_ENGINE_H
#define MAB_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "mab/policy.h"
#include "mab/storage.h"
#include "web_config.h"

#define MAB__PUBLISH_EVERY 64u /* operations a slot batches before publishing */
#define MAB__SLOTS 64u         /* threads beyond this share slots (safely) */
#define MAB__ID_MAX 128        /* longest experiment or arm id */

/* Positions of ids in an array whose elements start with `char *id`. */
typedef struct mab__id_index {
    uint32_t *slots; /* position + 1, 0 when empty */
    uint32_t mask;
} mab__id_index;

int mab__id_index_build(mab__id_index *ix, const void *base, size_t stride, size_t n);
/* Position of id, or -1. */
long mab__id_index_find(const mab__id_index *ix, const void *base, size_t stride,
                        const char *id);
void mab__id_index_free(mab__id_index *ix);

typedef struct mab__arm {
    char *id; /* first member: see mab__id_index */
    char *value_json;
    _Atomic uint64_t pulls; /* published totals; written under queue_mu */
    _Atomic uint64_t rewards;
    _Atomic double reward_sum;
    _Atomic double reward_sum_sq;
} mab__arm;

typedef struct mab__experiment {
    char *id; /* first member: see mab__id_index */
    mab__arm *arms;
    size_t n_arms;
    mab__id_index arm_index;
    size_t first_arm;        /* index of arms[0] among all the engine's arms */
    double reward_min, reward_max;
    const cJSON *policy_obj; /* valid during mab_open only */
    char *policy_path;
    void *policy_handle;     /* dlopen handle */
    const mab_policy *policy;
    void *policy_state;
} mab__experiment;

typedef struct mab__slot {
    _Alignas(64) atomic_flag lock;
    int ready;               /* pending/view allocated, rng seeded */
    uint32_t pending_ops;
    mab_rng rng;
    mab_totals *pending;     /* one per arm of the engine */
    mab_arm_view *view;      /* scratch for choose, max_arms entries */
} mab__slot;

struct mab_engine {
    uint64_t serial; /* unique per engine in this process, for thread caches */
    char *config_path;
    char *config_dir;
    cJSON *root;     /* the parsed config; freed at the end of mab_open */

    char **plugin_dirs;
    size_t n_plugin_dirs;
    int has_seed;
    uint64_t seed;
    int sync_always;
    int64_t interval_ms;

    mab__experiment *experiments;
    size_t n_experiments;
    mab__id_index experiment_index;
    size_t total_arms, max_arms;

    mab__web_config *web;     /* the adapter's keys (secret_file, cookie, ...) */

    const cJSON *storage_obj; /* valid during mab_open only */
    char *storage_path;
    void *storage_handle;
    const mab_storage *storage;
    void *storage_state;

    mab__arm **all_arms;            /* every arm, indexed by first_arm + i */
    mab__experiment **arm_experiment; /* the experiment of each of them */

    mab__slot *slots;
    atomic_uint next_slot;

    pthread_mutex_t queue_mu; /* guards published totals' writes, unapplied, publish_seq */
    mab_totals *unapplied;    /* published, not yet applied to storage; per arm */
    uint64_t publish_seq;

    pthread_mutex_t flush_mu; /* one storage call at a time; guards durable_seq, batch */
    uint64_t durable_seq;     /* every publish up to this one is durable */
    mab_delta *batch;         /* scratch for one storage apply, total_arms entries */
    size_t *batch_arm;        /* the arm index of each batch entry */

    pthread_mutex_t writer_mu;
    pthread_cond_t writer_cv;
    pthread_t writer;
    int writer_running;
    int writer_stop;
    atomic_uint_fast64_t flush_failures;
};

/* config.c: parse engine->config_path into the engine's fields. */
int mab__config_load(mab_engine *engine, mab_error *err);
/* config.c: free what mab__config_load allocated. */
void mab__config_free(mab_engine *engine);

/* loader.c: resolve a plugin name from the config to a file path. */
int mab__plugin_resolve(const mab_engine *engine, const char *name, const char *json_path,
                        char **path_out, mab_error *err);
/* loader.c: dlopen a policy/storage plugin and check its descriptor. */
int mab__load_policy(const char *path, void **handle, const mab_policy **out, mab_error *err);
int mab__load_storage(const char *path, void **handle, const mab_storage **out,
                      mab_error *err);

#endif
