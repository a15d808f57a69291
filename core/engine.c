/*
 * engine.c - open/close, lookups, choose and reward. The write-behind
 * queue is in write_behind.c, claims in claims.c, reading and import/export
 * in engine_stats.c; engine.h says where counts live and why.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "engine_access.h"
#include "id_index.h"
#include "json.h"
#include "slots.h"

static atomic_uint_fast64_t next_engine_serial = 1;

/* Bumped in the child of every fork(). An engine belongs to the process that
   opened it: its writer thread does not exist in a child, and storage
   handles (an LMDB environment, a MongoDB client) must not be used there. */
static atomic_uint fork_generation;

static void count_fork(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

__attribute__((constructor)) static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

unsigned mab__fork_generation(void)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

int mab__fork_error(const mab_engine *e, mab_error *err)
{
    return mab_error_set(err, MAB_EINVAL,
                         "%s: this engine was opened before fork(); open one in each process "
                         "that uses it (after the fork)",
                         e->config_path);
}


/* ---- open / close ----------------------------------------------------- */

static int sums_cannot_overflow(const mab__experiment *x);
static void note_loaded(mab__experiment *x, const mab_totals *t);

static void engine_free(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        if (!x->is_ledger) /* a ledger's is its experiment's */
            mab__id_index_free(&x->arm_index);
        if (x->policy && x->policy_state)
            x->policy->destroy(x->policy_state);
        if (x->policy2 && x->policy_state)
            x->policy2->destroy(x->policy_state);
        if (!x->layout_tag_shared)
            free(x->part->layout_tag);
        for (size_t k = 0; k < x->n_features; k++)
            free(x->part->feature_names[k]);
        free(x->part->feature_names);
    }
    /* After every policy state is destroyed: the code lives in these. */
    for (size_t i = 0; i < e->n_loaded_policies; i++) {
        dlclose(e->loaded_policies[i].handle);
        free(e->loaded_policies[i].name);
        free(e->loaded_policies[i].path);
    }
    free(e->loaded_policies);
    if (e->storage_state)
        e->storage->close(e->storage_state);
    if (e->storage_handle)
        dlclose(e->storage_handle);
    if (e->slots) {
        for (unsigned i = 0; i < MAB__SLOTS; i++) {
            free(e->slots[i].row_at);
            free(e->slots[i].rows);
            free(e->slots[i].dirty);
            free(e->slots[i].view);
            free(e->slots[i].view_stats);
            free(e->slots[i].delta_stats);
            free(e->slots[i].window);
            free(e->slots[i].probabilities);
        }
        free(e->slots);
    }
    mab__buckets_free(e);
    mab__id_index_free(&e->experiment_index);
    mab__config_free(e);
    free(e->arm_experiment);
    free((void *)e->arm_drops);
    free(e->batch);
    free(e->batch_arm);
    free(e->stats_published);
    free(e->stats_unapplied);
    free(e->stats_batch);
    free(e->stats_batch_values);
    free(e->stats_batch_at);
    for (size_t i = 0; i < 2 * e->n_check_layouts; i++)
        free(e->check_layouts[i]);
    free(e->check_layouts);
    free(e->storage_path);
    free(e->config_path);
    pthread_rwlock_destroy(&e->publish_lock);
    pthread_mutex_destroy(&e->flush_mu);
    pthread_mutex_destroy(&e->durable_mu);
    pthread_cond_destroy(&e->durable_cv);
    pthread_mutex_destroy(&e->writer_mu);
    pthread_mutex_destroy(&e->claim_mu);
    pthread_cond_destroy(&e->claim_cv);
    pthread_mutex_destroy(&e->dropped_mu);
    pthread_mutex_destroy(&e->queue_mu);
    free(e->queue);
    free(e->queue_index);
    free(e);
}

/* Prefix a loader error with the config position that named the plugin. */
static int plugin_error(const mab_engine *e, const char *json_path, const mab_error *inner,
                        mab_error *err)
{
    return mab_error_set(err, inner->code, "%s: %s: %s", e->config_path, json_path,
                         inner->message);
}

/* a, b and c end to end into out (cap bytes, truncated); no printf, which
   costs a thousand instructions where an open of a million experiments
   builds a few such paths per experiment. */
static void join3(char *out, size_t cap, const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]);
        if (len > cap - 1 - n)
            len = cap - 1 - n;
        memcpy(out + n, parts[i], len);
        n += len;
    }
    out[n] = '\0';
}

/* Params over a plugin's config object at json_path, "plugin" marked read. */
static int plugin_params(const mab_engine *e, const cJSON *object, const char *json_path,
                         mab_params *params, mab_error *err)
{
    size_t size = strlen(e->config_path) + 2 + strlen(json_path) + 1;
    char *where = malloc(size);
    if (where)
        join3(where, size, e->config_path, ": ", json_path);
    int rc = where ? mab__params_init(params, object, where, e->config_dir) : MAB_ENOMEM;
    free(where);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab__params_mark_used(params, "plugin");
    return MAB_OK;
}

/* The policy object's "features": names of distinct, non-empty strings. */
static int read_features(mab__experiment *x, mab_params *params, mab_error *err)
{
    const cJSON *list = mab__params_item(params, "features");
    if (!list)
        return MAB_OK;
    char *where = mab__params_key_path(params, "features");
    if (!where)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    int rc = MAB_OK;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 0 || n > MAB_POLICY_FEATURES_MAX)
        rc = mab_error_set(err, MAB_ECONFIG,
                           "%s: expected an array of at most %d feature names", where,
                           MAB_POLICY_FEATURES_MAX);
    if (rc == MAB_OK && n > 0 && !(x->part->feature_names = calloc((size_t)n, sizeof(char *))))
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (int i = 0; rc == MAB_OK && i < n; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsString(item) || !item->valuestring[0]) {
            rc = mab_error_set(err, MAB_ECONFIG, "%s[%d]: expected a non-empty string", where,
                               i);
            break;
        }
        for (size_t k = 0; k < x->n_features; k++)
            if (strcmp(x->part->feature_names[k], item->valuestring) == 0)
                rc = mab_error_set(err, MAB_ECONFIG, "%s[%d]: \"%s\" is listed twice", where,
                                   i, item->valuestring);
        if (rc == MAB_OK && !(x->part->feature_names[x->n_features++] = mab__strdup(item->valuestring)))
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    free(where);
    return rc;
}

static int create_policy2(mab_engine *e, mab__experiment *x, mab_params *params,
                          const char *json_path, mab_error *err)
{
    int rc = read_features(x, params, err);
    if (rc != MAB_OK)
        return rc;
    mab_policy_init init = {sizeof init, &mab__core_api, params, x->n_arms, x->n_features,
                            (const char *const *)x->part->feature_names, e->bucket_seconds};
    mab_policy_layout layout = {sizeof layout, 0, 0, 0, 0};
    mab_error create_err = {0, ""};
    void *state = NULL;
    rc = x->policy2->create(&init, &layout, &state, &create_err);
    if (rc != MAB_OK) {
        if (params->error[0])
            return mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params->error,
                                 x->policy_path);
        return mab_error_set(err, rc == MAB_ENOMEM ? MAB_ENOMEM : MAB_EPLUGIN,
                             "%s: %s: %s: create failed: %s", e->config_path, json_path,
                             x->policy_path,
                             create_err.message[0] ? create_err.message : mab_strerror(rc));
    }
    x->policy_state = state;
    if (layout.arm_stats > MAB_POLICY_STATS_MAX || layout.experiment_stats > MAB_POLICY_STATS_MAX)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s declares %zu statistics per arm and %zu per "
                             "experiment; at most %d each",
                             e->config_path, json_path, x->policy_path, layout.arm_stats,
                             layout.experiment_stats, MAB_POLICY_STATS_MAX);
    if ((layout.arm_stats || layout.experiment_stats) && !x->policy2->update)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s declares %zu statistics per arm and %zu per "
                             "experiment but leaves update NULL",
                             e->config_path, json_path, x->policy_path, layout.arm_stats,
                             layout.experiment_stats);
    if (layout.window_buckets > MAB_POLICY_WINDOW_MAX)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: %s asks for a window of %zu time buckets; at most %d",
                             e->config_path, json_path, x->policy_path, layout.window_buckets,
                             MAB_POLICY_WINDOW_MAX);
    if ((int64_t)layout.window_buckets * e->bucket_seconds > e->retention_seconds)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: %s: %s asks for a window of %zu time buckets (%lld s with "
                             "storage.bucket_seconds %lld), longer than "
                             "storage.retention_seconds %lld",
                             e->config_path, json_path, x->policy_path, layout.window_buckets,
                             (long long)layout.window_buckets * (long long)e->bucket_seconds,
                             (long long)e->bucket_seconds, (long long)e->retention_seconds);
    x->layout = layout;
    /* Experiments of one policy usually follow each other: one copy of the
       tag for all of them (a config of a million experiments). */
    const mab__experiment *prev = x > e->experiments ? x - 1 : NULL;
    if (prev && prev->part->layout_tag && prev->policy2 == x->policy2 &&
        prev->layout.stats_version == layout.stats_version &&
        prev->layout.arm_stats == layout.arm_stats &&
        prev->layout.experiment_stats == layout.experiment_stats) {
        x->part->layout_tag = prev->part->layout_tag;
        x->layout_tag_shared = 1;
    } else if (!(x->part->layout_tag = mab__asprintf("%s/%u:%zu,%zu", x->policy2->name,
                                               layout.stats_version, layout.arm_stats,
                                               layout.experiment_stats))) {
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    return mab__params_check_unused(params, err);
}

/* Resolve and load the policy plugin `name` for x, once per name and open
   (a config may have a million experiments on three plugins). */
static int load_policy_once(mab_engine *e, const char *name, const char *plugin_key,
                            mab__experiment *x, mab_error *err)
{
    struct mab__loaded_policy *lp = NULL;
    for (size_t i = 0; i < e->n_loaded_policies && !lp; i++)
        if (strcmp(e->loaded_policies[i].name, name) == 0)
            lp = &e->loaded_policies[i];
    if (!lp) {
        struct mab__loaded_policy *grown =
            realloc(e->loaded_policies, (e->n_loaded_policies + 1) * sizeof *grown);
        if (!grown)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        e->loaded_policies = grown;
        struct mab__loaded_policy fresh = {mab__strdup(name), NULL, NULL, NULL, NULL};
        if (!fresh.name)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        int rc = mab__plugin_resolve(e, name, plugin_key, &fresh.path, err);
        mab_error inner;
        if (rc == MAB_OK &&
            (rc = mab__load_policy(fresh.path, &fresh.handle, &fresh.policy, &fresh.policy2,
                                   &inner)) != MAB_OK)
            rc = plugin_error(e, plugin_key, &inner, err);
        if (rc != MAB_OK) {
            free(fresh.name);
            free(fresh.path);
            return rc;
        }
        lp = &e->loaded_policies[e->n_loaded_policies++];
        *lp = fresh;
    }
    x->policy_path = lp->path; /* the engine's, freed after every experiment */
    x->policy = lp->policy;
    x->policy2 = lp->policy2;
    return MAB_OK;
}

static int create_policy(mab_engine *e, mab__experiment *x, mab_error *err)
{
    if (x->is_ledger) {
        /* Its name is its kind's (mab__policy_name): the part is shared. */
        const char *path = "(holdout ledger)";
        if (x->is_ledger == MAB__LEDGER_SRM)
            path = "(sample-ratio ledger)";
        else if (x->is_ledger == MAB__LEDGER_LATE)
            path = "(late rewards ledger)";
        x->policy_path = path;
        return MAB_OK;
    }
    char json_path[MAB__ID_MAX + 32], plugin_key[MAB__ID_MAX + 40];
    join3(json_path, sizeof json_path, "experiments.", x->id, ".policy");
    join3(plugin_key, sizeof plugin_key, json_path, ".plugin", "");
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(x->part->policy_obj, "plugin");
    int rc = load_policy_once(e, plugin->valuestring, plugin_key, x, err);
    if (rc)
        return rc;
    x->part->policy_name = x->policy ? x->policy->name : x->policy2->name;
    mab_params params;
    if ((rc = plugin_params(e, x->part->policy_obj, json_path, &params, err)) != MAB_OK)
        return rc;
    if (x->policy2) {
        rc = create_policy2(e, x, &params, json_path, err);
        mab__params_fini(&params);
        return rc;
    }
    void *state = NULL;
    rc = x->policy->create(&params, x->n_arms, &state);
    if (rc != MAB_OK) {
        if (params.error[0])
            rc = mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params.error,
                               x->policy_path);
        else
            rc = mab_error_set(err, MAB_EPLUGIN, "%s: experiments.%s.policy: %s: create failed: %s",
                               e->config_path, x->id, x->policy_path, mab_strerror(rc));
    } else {
        x->policy_state = state;
        rc = mab__params_check_unused(&params, err);
    }
    mab__params_fini(&params);
    return rc;
}

/* How open_storage() reaches the store (mab_options.flags). */
enum storage_mode { STORAGE_OPEN, STORAGE_READ_ONLY, STORAGE_CHECK };

static int collect_layout(void *ctx, const char *experiment, const char *arm,
                          const char *layout, const double *values, size_t n_values)
{
    (void)arm;
    (void)values;
    (void)n_values;
    mab_engine *e = ctx;
    for (size_t i = 0; i < e->n_check_layouts; i++)
        if (strcmp(e->check_layouts[2 * i], experiment) == 0 &&
            strcmp(e->check_layouts[2 * i + 1], layout) == 0)
            return 0;
    char **grown = realloc(e->check_layouts, 2 * (e->n_check_layouts + 1) * sizeof *grown);
    if (!grown)
        return MAB_ENOMEM;
    e->check_layouts = grown;
    grown[2 * e->n_check_layouts] = mab__strdup(experiment);
    grown[2 * e->n_check_layouts + 1] = mab__strdup(layout);
    e->n_check_layouts++;
    return grown[2 * e->n_check_layouts - 2] && grown[2 * e->n_check_layouts - 1] ? 0
                                                                                 : MAB_ENOMEM;
}

/* MAB_OPEN_CHECK: which layouts of policy statistics the store holds, for
   `mab check`; only through open_read_only, which creates and locks
   nothing. A failure is kept as the reason, never fails the check. */
static void read_check_layouts(mab_engine *e, mab_params *params)
{
    const mab_storage *st = e->storage;
    if (!mab__storage_has_stats(st)) {
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why,
                 "storage plugin %s stores no policy statistics", e->storage_path);
        return;
    }
    if (!mab__storage_has(st, open_read_only) || !st->open_read_only) {
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why,
                 "storage plugin %s has no read-only open, and a check opens nothing else",
                 e->storage_path);
        return;
    }
    void *state = NULL;
    mab_error why = {0, ""};
    int rc = st->open_read_only(params, &state, &why);
    if (rc == MAB_OK) {
        rc = st->scan_stats(state, collect_layout, e, &why);
        st->close(state);
    }
    if (rc == MAB_OK)
        e->check_layouts_read = 1;
    else
        snprintf(e->check_layouts_why, sizeof e->check_layouts_why, "%s",
                 why.message[0] ? why.message : mab_strerror(rc));
}

static int open_storage(mab_engine *e, enum storage_mode mode, mab_error *err)
{
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(e->storage_obj, "plugin");
    int rc = mab__plugin_resolve(e, plugin->valuestring, "storage.plugin", &e->storage_path, err);
    if (rc)
        return rc;
    mab_error inner;
    rc = mab__load_storage(e->storage_path, &e->storage_handle, &e->storage, &inner);
    if (rc) {
        e->storage = NULL;
        return plugin_error(e, "storage.plugin", &inner, err);
    }
    mab_params params;
    if ((rc = plugin_params(e, e->storage_obj, "storage", &params, err)) != MAB_OK)
        return rc;
    mab__params_mark_used(&params, "sync");
    mab__params_mark_used(&params, "bucket_seconds");    /* config.c read them */
    mab__params_mark_used(&params, "retention_seconds");
    int64_t refresh_ms = mab__storage_has(e->storage, replace) ? e->storage->refresh_ms : 0;
    if (mab_params_int(&params, "refresh_ms", refresh_ms, 0, 86400000, &refresh_ms) != MAB_OK) {
        rc = mab_error_set(err, MAB_ECONFIG, "%s", params.error);
        mab__params_fini(&params);
        return rc;
    }
    e->refresh_ms = (uint32_t)refresh_ms;
    void *state = NULL;
    mab_error open_err = {0, ""};
    if (mode == STORAGE_CHECK) {
        /* Validate without opening: nothing created, nothing locked. */
        e->storage_checked = mab__storage_has(e->storage, check) && e->storage->check;
        if (e->storage_checked)
            rc = e->storage->check(&params, &open_err);
        else
            mab__params_mark_all_used(&params); /* the plugin cannot tell: not checked */
        if (rc == MAB_OK)
            read_check_layouts(e, &params);
    } else if (mode == STORAGE_READ_ONLY && mab__storage_has(e->storage, open_read_only) &&
               e->storage->open_read_only) {
        rc = e->storage->open_read_only(&params, &state, &open_err);
    } else {
        rc = e->storage->open(&params, &state, &open_err);
    }
    if (rc != MAB_OK) {
        if (params.error[0])
            rc = mab_error_set(err, MAB_ECONFIG, "%s (refused by %s)", params.error,
                               e->storage_path);
        else if (open_err.message[0])
            rc = mab_error_set(err, rc, "%s: storage: %s", e->config_path, open_err.message);
        else
            rc = mab_error_set(err, rc, "%s: storage: %s: open failed: %s", e->config_path,
                               e->storage_path, mab_strerror(rc));
    } else {
        e->storage_state = state;
        rc = mab__params_check_unused(&params, err);
    }
    mab__params_fini(&params);
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        const mab__experiment *x = &e->experiments[i];
        if ((x->layout.arm_stats || x->layout.experiment_stats) &&
            !mab__storage_has_stats(e->storage))
            rc = mab_error_set(err, MAB_EPLUGIN,
                               "%s: experiments.%s: policy %s (%s) keeps statistics, but "
                               "storage plugin %s is ABI %u.%u, which cannot store them; "
                               "rebuild it against storage ABI %u.%u or later",
                               e->config_path, x->id, mab__policy_name(x), x->policy_path,
                               e->storage_path, e->storage->abi_major, e->storage->abi_minor,
                               MAB_STORAGE_ABI_MAJOR, 4u);
    }
    return rc;
}

/* Give each ABI 2 arm and experiment its place in the stats arrays. */
static int allocate_stats(mab_engine *e)
{
    size_t at = 0, entries = 1;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        size_t own = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
        if (own > UINT32_MAX - at) /* stats_batch_at and the stores' 32-bit places */
            return MAB_ENOMEM;
        /* Batch entries only for what keeps statistics (stats_take): most
           experiments keep none, and a million of them must not pay for it. */
        entries += (x->layout.arm_stats ? x->n_arms : 0) + (x->layout.experiment_stats ? 1 : 0);
        /* Arm j's from at + j * arm_stats (mab__arm_stats_at), then x's. */
        x->stats_at = at + x->n_arms * x->layout.arm_stats;
        at += own;
        if (own > e->max_stats)
            e->max_stats = own;
    }
    e->total_stats = at;
    size_t n = at ? at : 1;
    e->stats_published = calloc(n, sizeof *e->stats_published);
    e->stats_unapplied = calloc(n, sizeof *e->stats_unapplied);
    e->stats_batch = calloc(entries, sizeof *e->stats_batch);
    e->stats_batch_values = calloc(n, sizeof *e->stats_batch_values);
    e->stats_batch_at = calloc(entries, sizeof *e->stats_batch_at);
    if (!e->stats_published || !e->stats_unapplied || !e->stats_batch ||
        !e->stats_batch_values || !e->stats_batch_at)
        return MAB_ENOMEM;
    return MAB_OK;
}

/*
 * Read every stored total, then publish stored + what this process has not
 * yet applied. The caller holds flush_mu (or is mab_open), so no batch is
 * applied between the read and the combination. The read (possibly network
 * I/O) happens without publish_lock; only the combination holds it
 * exclusively, so that no publish lands half-way through it.
 */
/* The experiments storage's changed() named, as indices, each once. */
typedef struct changed_list {
    mab_engine *e;
    size_t *at;
    size_t n;
    unsigned char *seen; /* per experiment */
    size_t *admin_at;    /* experiments whose "ID@admin" record changed (admin.c) */
    size_t n_admin;
    unsigned char *admin_seen;
} changed_list;

#define ADMIN_RECORD_SUFFIX "@admin"

static int collect_changed(void *ctx, const char *experiment)
{
    changed_list *l = ctx;
    long i = mab__id_index_find(&l->e->experiment_index, l->e->experiments,
                                sizeof *l->e->experiments, experiment);
    if (i >= 0 && !l->seen[i]) {
        l->seen[i] = 1;
        l->at[l->n++] = (size_t)i;
    }
    /* An admin action another process stored (mab_set_state writes the
       record "ID@admin", which is no experiment of the config). */
    size_t len = strlen(experiment), suffix = sizeof ADMIN_RECORD_SUFFIX - 1;
    if (i < 0 && len > suffix && len - suffix <= MAB__ID_MAX &&
        strcmp(experiment + len - suffix, ADMIN_RECORD_SUFFIX) == 0) {
        char id[MAB__ID_MAX + 1];
        memcpy(id, experiment, len - suffix);
        id[len - suffix] = '\0';
        long x = mab__id_index_find(&l->e->experiment_index, l->e->experiments,
                                    sizeof *l->e->experiments, id);
        if (x >= 0 && (size_t)x < l->e->n_configured && !l->admin_seen[x]) {
            l->admin_seen[x] = 1;
            l->admin_at[l->n_admin++] = (size_t)x;
        }
    }
    return 0; /* an experiment no longer in the config is not ours to read */
}

/* Re-read experiment x's totals and statistics, then publish them (stored +
   unapplied), as mab__load_totals does for all. */
static int load_one_experiment(mab_engine *e, mab__experiment *x, mab_totals *stored,
                               double *stored_stats, mab_error *err)
{
    const char *const *ids = (const char *const *)x->arm_ids; /* mab__arm_id */
    int rc = e->storage->load(e->storage_state, x->id, ids, x->n_arms, stored, err);
    size_t n_stats = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
    if (rc == MAB_OK && n_stats)
        rc = e->storage->load_stats(e->storage_state, x->id, x->part->layout_tag, ids, x->n_arms,
                                    x->layout.arm_stats, stored_stats,
                                    x->layout.experiment_stats,
                                    stored_stats + x->n_arms * x->layout.arm_stats, err);
    if (rc != MAB_OK)
        return rc;
    pthread_rwlock_wrlock(&e->publish_lock);
    mab__queue_add_to(e, stored, x->first_arm, x->n_arms);
    for (size_t j = 0; j < x->n_arms; j++) {
        note_loaded(x, &stored[j]);
        atomic_totals_store(&x->arms[j].published, &stored[j]);
    }
    /* An experiment's statistics are contiguous: its arms' from
       mab__arm_stats_at(x, 0), then its own at stats_at (allocate_stats). */
    size_t from = mab__arm_stats_at(x, 0);
    for (size_t k = 0; k < n_stats; k++)
        atomic_store_explicit(&e->stats_published[from + k],
                              stored_stats[k] + atomic_load_explicit(&e->stats_unapplied[from + k],
                                                                     memory_order_relaxed),
                              memory_order_relaxed);
    mab__view_changed(e);
    pthread_rwlock_unlock(&e->publish_lock);
    return MAB_OK;
}

/*
 * A refresh of only what changed (storage ABI 1.6, changed()): returns 1
 * with *rc set when it did the refresh, 0 when the caller must re-read
 * everything (no changed(), the plugin cannot tell, or the last partial
 * refresh failed). Each experiment is published as soon as it is read:
 * totals of different experiments were never read in one snapshot anyway.
 */
static int load_changed_totals(mab_engine *e, int *rc, mab_error *err)
{
    if (!mab__storage_has(e->storage, changed) || !e->storage->changed)
        return 0;
    int everything = 0;
    size_t n_x = e->n_experiments ? e->n_experiments : 1;
    changed_list l = {e, calloc(n_x, sizeof *l.at), 0, calloc(n_x, 1),
                      calloc(n_x, sizeof *l.admin_at), 0, calloc(n_x, 1)};
    mab_totals *stored = calloc(e->max_arms ? e->max_arms : 1, sizeof *stored);
    double *stored_stats = calloc(e->max_stats ? e->max_stats : 1, sizeof *stored_stats);
    if (!l.at || !l.seen || !l.admin_at || !l.admin_seen || !stored || !stored_stats)
        *rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    else
        *rc = e->storage->changed(e->storage_state, &everything, collect_changed, &l, err);
    int done = *rc != MAB_OK || (!everything && !e->refresh_everything);
    for (size_t i = 0; done && *rc == MAB_OK && i < l.n; i++)
        *rc = load_one_experiment(e, &e->experiments[l.at[i]], stored, stored_stats, err);
    for (size_t i = 0; done && *rc == MAB_OK && i < l.n_admin; i++)
        *rc = mab__admin_load_one(e, &e->experiments[l.admin_at[i]], err);
    /* What changed() named and was not read would be missed by the next
       call: re-read everything then (the caller does it now when !done). */
    e->refresh_everything = !done || *rc != MAB_OK;
    if (done && *rc == MAB_OK)
        *rc = mab__buckets_load_some(e, l.at, l.n, l.seen, err);
    free(l.at);
    free(l.seen);
    free(l.admin_at);
    free(l.admin_seen);
    free(stored);
    free(stored_stats);
    return done;
}

/* A full read in one pass: scan() visits every stored record once, and each
   is put where it belongs (stored[first_arm + arm] of an experiment or
   ledger of the config; an "ID@admin" record into the admin list), where a
   load() per experiment and per admin record would ask the store 3N times
   for N experiments (their ledgers "ID@srm", their "ID@admin" records, which
   most do not have). Records of experiments and arms not in the config are
   passed over. A scan reads the whole store, which a small config sharing a
   large store must not pay for: below MAB__SCAN_FROM configured experiments
   the read stays a load() per experiment (which also checks each one's keys,
   docs/storage.md). */
typedef struct scan_read {
    mab_engine *e;
    mab_totals *stored;
    mab__admin_scan admin;
} scan_read;

static int scan_record(void *ctx, const char *experiment, const char *arm,
                       const mab_totals *totals)
{
    scan_read *r = ctx;
    mab_engine *e = r->e;
    long i = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments,
                                experiment);
    if (i < 0) {
        int taken = mab__admin_scan_visit(e, &r->admin, experiment, arm, totals);
        return taken == MAB_ENOMEM ? MAB_ENOMEM : 0;
    }
    const mab__experiment *x = &e->experiments[i];
    long a = mab__id_index_find(&x->arm_index, x->arm_ids, sizeof *x->arm_ids, arm);
    if (a >= 0)
        r->stored[x->first_arm + (size_t)a] = *totals;
    return 0;
}

/* Re-read everything (when no change log can tell what changed): one
   scan() when the store has one, else a load() per experiment and per
   "ID@admin" record. */
static int load_all_totals(mab_engine *e, mab_error *err)
{
    mab_totals *stored = calloc(e->total_arms, sizeof *stored);
    double *stored_stats = calloc(e->total_stats ? e->total_stats : 1, sizeof *stored_stats);
    int rc = stored && stored_stats ? MAB_OK
                                           : mab_error_set(err, MAB_ENOMEM, "out of memory");
    scan_read by_scan = {e, stored, {NULL, 0, 0}};
    int scanned = rc == MAB_OK && e->n_configured >= MAB__SCAN_FROM &&
                  mab__storage_has(e->storage, scan) && e->storage->scan;
    if (scanned) {
        rc = e->storage->scan(e->storage_state, scan_record, &by_scan, err);
        if (rc == MAB_ENOMEM)
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory reading the store");
    }
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        const char *const *ids = (const char *const *)x->arm_ids; /* mab__arm_id */
        if (!scanned)
            rc = e->storage->load(e->storage_state, x->id, ids, x->n_arms,
                                  &stored[x->first_arm], err);
        if (rc == MAB_OK && (x->layout.arm_stats || x->layout.experiment_stats))
            rc = e->storage->load_stats(e->storage_state, x->id, x->part->layout_tag, ids, x->n_arms,
                                        x->layout.arm_stats, &stored_stats[mab__arm_stats_at(x, 0)],
                                        x->layout.experiment_stats,
                                        &stored_stats[x->stats_at], err);
    }
    if (rc == MAB_OK) {
        pthread_rwlock_wrlock(&e->publish_lock);
        mab__queue_add_to(e, stored, 0, e->total_arms);
        for (size_t i = 0; i < e->total_arms; i++) {
            note_loaded(mab__arm_experiment(e, i), &stored[i]);
            atomic_totals_store(&mab__arm_at(e, i)->published, &stored[i]);
        }
        for (size_t i = 0; i < e->total_stats; i++)
            atomic_store_explicit(&e->stats_published[i],
                                  stored_stats[i] + atomic_load_explicit(&e->stats_unapplied[i],
                                                                         memory_order_relaxed),
                                  memory_order_relaxed);
        mab__view_changed(e);
        pthread_rwlock_unlock(&e->publish_lock);
    }
    free(stored);
    free(stored_stats);
    /* admin.c: pause/conclude set at run time, from the scan or read now */
    if (scanned && rc == MAB_OK)
        rc = mab__admin_adopt_scanned(e, &by_scan.admin, err); /* frees the list */
    else if (scanned)
        free(by_scan.admin.items); /* a failed read changes no state */
    else if (rc == MAB_OK)
        rc = mab__admin_load(e, err);
    if (rc == MAB_OK)
        e->refresh_everything = 0;
    return rc == MAB_OK ? mab__buckets_load(e, err) : rc;
}

int mab__load_totals(mab_engine *e, mab_error *err)
{
    int changed_rc;
    if (load_changed_totals(e, &changed_rc, err))
        return changed_rc;
    return load_all_totals(e, err);
}

/* Point every experiment that has arms at its place in the pool. */
static void arms_repoint(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++)
        if (e->experiments[i].arms)
            e->experiments[i].arms = &e->arm_pool[e->experiments[i].first_arm];
}

mab__arm *mab__arms_take(mab_engine *e, mab__experiment *x, size_t n)
{
    if (n > e->cap_arms - e->total_arms) {
        /* Doubling: the re-pointing passes cost at most twice the final
           number of experiments in all. */
        size_t cap = e->cap_arms ? e->cap_arms : 64;
        while (cap - e->total_arms < n) {
            if (cap > SIZE_MAX / 2 / sizeof *e->arm_pool)
                return NULL;
            cap *= 2;
        }
        mab__arm *grown = realloc(e->arm_pool, cap * sizeof *grown);
        if (!grown)
            return NULL;
        e->arm_pool = grown;
        e->cap_arms = cap;
        arms_repoint(e);
    }
    x->first_arm = e->total_arms;
    x->arms = &e->arm_pool[x->first_arm];
    memset(x->arms, 0, n * sizeof *x->arms);
    e->total_arms += n;
    return x->arms;
}

static int allocate_tables(mab_engine *e)
{
    size_t n = e->total_arms;
    /* The pool grew by doubling: give back what no arm uses. */
    if (n && n < e->cap_arms) {
        mab__arm *fitted = realloc(e->arm_pool, n * sizeof *fitted);
        if (fitted) {
            e->arm_pool = fitted;
            e->cap_arms = n;
            arms_repoint(e);
        }
    }
    if (e->n_experiments > UINT32_MAX)
        return MAB_ENOMEM; /* no config gets here: 2^32 experiments do not parse */
    e->arm_experiment = malloc((n ? n : 1) * sizeof *e->arm_experiment);
    e->slots = aligned_alloc(64, MAB__SLOTS * sizeof *e->slots);
    /* Only a reward under sync "always" reads the drops (reward_impl). */
    if (e->sync_always)
        e->arm_drops = calloc(n ? n : 1, sizeof *e->arm_drops);
    if (!e->arm_experiment || !e->slots || (e->sync_always && !e->arm_drops))
        return MAB_ENOMEM;
    memset(e->slots, 0, MAB__SLOTS * sizeof *e->slots);
    if (mab__id_index_build(&e->experiment_index, e->experiments, sizeof *e->experiments,
                            e->n_experiments) != MAB_OK)
        return MAB_ENOMEM;
    /* The configured experiments' arm indexes; a ledger has its
       experiment's arms in the same order, so it shares the index. */
    for (size_t i = 0; i < e->n_configured; i++) {
        mab__experiment *x = &e->experiments[i];
        if (mab__id_index_build(&x->arm_index, x->arm_ids, sizeof *x->arm_ids, x->n_arms) != MAB_OK)
            return MAB_ENOMEM;
        mab__experiment *ledgers[3] = {x->part->ledger, x->part->late_ledger, x->srm};
        for (int k = 0; k < 3; k++)
            if (ledgers[k])
                ledgers[k]->arm_index = x->arm_index;
    }
    for (unsigned i = 0; i < MAB__SLOTS; i++)
        atomic_flag_clear(&e->slots[i].lock);
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; j < x->n_arms; j++)
            e->arm_experiment[x->first_arm + j] = (uint32_t)i;
    }
    return MAB_OK;
}

/* The most statistics (arm's + experiment's) of an experiment whose event
   rewards take reward_event's short path: its deltas are zeroed on the
   stack, not in the slot's scratch. */
#define REWARD_EVENT_STATS 8

/* x's event_short (MAB__EVENT_SHORT*), once e is open (its policies
   created, its storage opened): the conditions of reward_event's short path
   that do not change while the engine is open. The engine is not read-only
   and does not wait for each reward's write (sync "always" over a store);
   x keeps policy statistics, at most REWARD_EVENT_STATS of them (none: an
   ABI 1 policy, a ledger, or an ABI 2 policy without statistics; with
   some, create_policy2 saw to an update) and asks for no features; and for
   a reward with a context, x has no attribution window (the rule that
   reward_body would check for a context without flags; the holdout
   ledger is only for a context with MAB_CONTEXT_HOLDOUT). */
static unsigned char event_short_of(const mab_engine *e, const mab__experiment *x)
{
    size_t n = x->layout.arm_stats + x->layout.experiment_stats;
    if (e->read_only || (e->sync_always && e->storage) || n == 0 || n > REWARD_EVENT_STATS ||
        x->n_features)
        return 0;
    if (x->part->rules.attribution_window)
        return MAB__EVENT_SHORT;
    return MAB__EVENT_SHORT | MAB__EVENT_SHORT_CTX;
}

int mab_open(const char *config_path, mab_engine **out, mab_error *err)
{
    return mab_open_ex(config_path, NULL, out, err);
}

int mab_open_ex(const char *config_path, const mab_options *opts, mab_engine **out,
                mab_error *err)
{
    return mab_open_sections(config_path, opts, NULL, out, err);
}

int mab_open_sections(const char *config_path, const mab_options *opts,
                      const char *const *sections, mab_engine **out, mab_error *err)
{
    if (!config_path || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_open: config_path and out must not be NULL");
    if (opts && opts->struct_size < sizeof(mab_options))
        return mab_error_set(err, MAB_EINVAL, "mab_open: mab_options.struct_size is %zu, need %zu",
                             opts->struct_size, sizeof(mab_options));
    if (sodium_init() < 0)
        return mab_error_set(err, MAB_ENOMEM, "libsodium failed to initialise");
    mab_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->config_path = mab__strdup(config_path))) {
        free(e);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    e->serial = atomic_fetch_add(&next_engine_serial, 1);
    e->fork_generation = atomic_load(&fork_generation);
    pthread_rwlock_init(&e->publish_lock, NULL);
    pthread_mutex_init(&e->flush_mu, NULL);
    pthread_mutex_init(&e->durable_mu, NULL);
    pthread_cond_init(&e->durable_cv, NULL);
    pthread_mutex_init(&e->writer_mu, NULL);
    pthread_mutex_init(&e->claim_mu, NULL);
    pthread_cond_init(&e->claim_cv, NULL);
    pthread_mutex_init(&e->dropped_mu, NULL);
    pthread_mutex_init(&e->buckets_mu, NULL);
    pthread_mutex_init(&e->queue_mu, NULL);

    int rc = mab__config_load(e, sections, err);
    if (rc == MAB_OK && opts && (opts->flags & MAB_OPEN_SEED)) {
        e->has_seed = 1;
        e->seed = opts->seed;
    }
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        x->reward_scale = 1.0 / (x->reward_max - x->reward_min);
        x->slot_index = i;
        atomic_store_explicit(&x->sums_unchecked, sums_cannot_overflow(x), memory_order_relaxed);
    }
    if (rc == MAB_OK && allocate_tables(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++)
        rc = create_policy(e, &e->experiments[i], err);
    if (rc == MAB_OK && allocate_stats(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    unsigned flags = opts ? opts->flags : 0;
    if ((flags & MAB_OPEN_CHECK) && (flags & (MAB_OPEN_NO_STORAGE | MAB_OPEN_READ_ONLY)))
        rc = rc == MAB_OK ? mab_error_set(err, MAB_EINVAL, "mab_open: MAB_OPEN_CHECK excludes "
                                          "MAB_OPEN_NO_STORAGE and MAB_OPEN_READ_ONLY") : rc;
    e->read_only = (flags & (MAB_OPEN_READ_ONLY | MAB_OPEN_CHECK)) != 0;
    enum storage_mode mode = (flags & MAB_OPEN_CHECK)       ? STORAGE_CHECK
                             : (flags & MAB_OPEN_READ_ONLY) ? STORAGE_READ_ONLY
                                                            : STORAGE_OPEN;
    int with_storage = !(flags & MAB_OPEN_NO_STORAGE);
    if (rc == MAB_OK && with_storage)
        rc = open_storage(e, mode, err);
    if (rc == MAB_OK && mab__buckets_allocate(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (rc == MAB_OK && with_storage && mode != STORAGE_CHECK)
        rc = mab__load_totals(e, err);
    if (rc == MAB_OK && with_storage && mode == STORAGE_OPEN)
        rc = mab__writer_start(e, err);
    if (rc != MAB_OK) {
        engine_free(e);
        return rc;
    }
    /* The parsed config is not needed once plugins have read their keys. */
    for (size_t i = 0; i < e->n_experiments; i++) {
        e->experiments[i].event_short = event_short_of(e, &e->experiments[i]);
        e->experiments[i].part->policy_obj = NULL;
    }
    e->storage_obj = NULL;
    mab__json_free(e->root); /* core/json.c's blocks, not cJSON_Delete */
    e->root = NULL;
    *out = e;
    return MAB_OK;
}

int mab_close(mab_engine *e, mab_error *err)
{
    if (!e)
        return MAB_OK;
    if (forked_since_open(e)) {
        /* A copy in a child: free the memory only. The writer thread is not
           here to stop, and the storage handles are the parent's. */
        e->writer_running = 0;
        e->storage_state = NULL;
        int rc = mab__fork_error(e, err);
        engine_free(e);
        return rc;
    }
    mab__writer_stop(e);
    mab_error flush_err;
    int rc = mab_flush(e, &flush_err);
    if (rc != MAB_OK) {
        uint64_t lost_pulls, lost_rewards;
        mab__queue_unapplied(e, &lost_pulls, &lost_rewards);
        mab_error_set(err, rc, "%s; %llu pulls and %llu rewards were not written",
                      flush_err.message, (unsigned long long)lost_pulls,
                      (unsigned long long)lost_rewards);
    }
    engine_free(e);
    return rc;
}

/* ---- lookups ---------------------------------------------------------- */

int mab__find_experiment(mab_engine *e, const char *id, mab__experiment **out,
                           mab_error *err)
{
    if (!e || !id)
        return mab_error_set(err, MAB_EINVAL, "engine and experiment id must not be NULL");
    if (forked_since_open(e))
        return mab__fork_error(e, err);
    long i = mab__id_index_lookup(&e->experiment_index, e->experiments, sizeof *e->experiments,
                                  id);
    if (i >= 0) {
        *out = &e->experiments[i];
        return MAB_OK;
    }
    return mab_error_set(err, MAB_ENOTFOUND, "%s: no experiment \"%s\"", e->config_path, id);
}

long mab__find_arm(const mab_engine *e, const mab__experiment *x, const char *id,
                     mab_error *err)
{
    long i = id ? mab__id_index_lookup(&x->arm_index, x->arm_ids, sizeof *x->arm_ids, id) : -1;
    if (i >= 0)
        return i;
    mab_error_set(err, MAB_ENOTFOUND, "%s: experiments.%s has no arm \"%s\"", e->config_path,
                  x->id, id ? id : "(null)");
    return -1;
}

/* The string-keyed calls' common case, inline in each and calling nothing:
   the experiment found (find_fast), and its arm (find_fast_arm). Each
   returns 0 for anything else, and the caller makes the lookups again
   through the functions below, which word the error. */
static inline __attribute__((always_inline)) int
find_fast(mab_engine *e, const char *experiment, mab__experiment **x)
{
    if (__builtin_expect(!e || !experiment || forked_since_open(e), 0))
        return 0;
    long at = mab__id_index_lookup(&e->experiment_index, e->experiments,
                                   sizeof *e->experiments, experiment);
    if (__builtin_expect(at < 0, 0))
        return 0;
    *x = &e->experiments[at];
    return 1;
}

static inline __attribute__((always_inline)) int
find_fast_arm(mab_engine *e, const char *experiment, const char *arm, mab__experiment **x,
              size_t *index)
{
    if (!arm || !find_fast(e, experiment, x))
        return 0;
    long i = mab__id_index_lookup(&(*x)->arm_index, (*x)->arm_ids, sizeof *(*x)->arm_ids, arm);
    if (__builtin_expect(i < 0, 0))
        return 0;
    *index = (size_t)i;
    return 1;
}

/* Both lookups of a call that names an experiment and one of its arms. */
int mab__find_experiment_arm(mab_engine *e, const char *experiment, const char *arm,
                               mab__experiment **x, size_t *index, mab_error *err)
{
    int rc = mab__find_experiment(e, experiment, x, err);
    if (rc != MAB_OK)
        return rc;
    long i = mab__find_arm(e, *x, arm, err);
    if (i < 0)
        return MAB_ENOTFOUND;
    *index = (size_t)i;
    return MAB_OK;
}

/* A caller's mab_choice must hold at least the fields of its first version;
   checked before anything is counted. */
static inline int choice_check(const mab_choice *out, mab_error *err)
{
    if (__builtin_expect(out && out->struct_size >= MAB_CHOICE_SIZE_0_1, 1))
        return MAB_OK;
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "mab_choice is NULL");
    return mab_error_set(err, MAB_EINVAL, "mab_choice.struct_size is %zu, need at least %zu",
                         out->struct_size, (size_t)MAB_CHOICE_SIZE_0_1);
}

/* Fill what the caller's struct_size holds (a caller built with an older
   header has a shorter struct). */
static inline void fill_choice(const mab__experiment *x, size_t arm, double probability,
                               int estimated, unsigned flags, mab_choice *out)
{
    if (__builtin_expect(out->struct_size >= sizeof *out, 1)) {
        out->arm_index = arm;
        out->arm_id = mab__arm_id(x, arm);
        out->value_json = mab__arm_value(x, arm);
        out->probability = probability;
        out->estimated = estimated;
        out->flags = flags;
        return;
    }
    mab_choice c = {out->struct_size, arm, mab__arm_id(x, arm), mab__arm_value(x, arm),
                    probability, estimated, flags};
    memcpy(out, &c, out->struct_size);
}

void mab__fill_choice(const mab__experiment *x, size_t arm, double probability, int estimated,
                      unsigned flags, mab_choice *out)
{
    fill_choice(x, arm, probability, estimated, flags, out);
}

int mab_arm_lookup(mab_engine *e, const char *experiment, const char *arm, mab_choice *out,
                   mab_error *err)
{
    mab__experiment *x = NULL;
    size_t i = 0;
    int rc = mab__find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    if ((rc = choice_check(out, err)) != MAB_OK)
        return rc;
    fill_choice(x, i, NAN, 0, 0, out);
    return MAB_OK;
}

/* ---- handles ---------------------------------------------------------- */

int mab_experiment_handle(mab_engine *e, const char *experiment, mab_handle *out,
                          mab_error *err)
{
    mab__experiment *x = NULL;
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "mab_experiment_handle: out is NULL");
    int rc = mab__find_experiment(e, experiment, &x, err);
    if (rc != MAB_OK)
        return rc;
    out->engine = e->serial;
    out->index = (size_t)(x - e->experiments);
    return MAB_OK;
}

/* The experiment a handle names, if this engine issued it. Engines are
   numbered for the life of the process, so a handle of a closed or another
   engine (a host's engine before its reload) never names one of this one. */
static inline int handle_experiment(mab_engine *e, mab_handle h, mab__experiment **x,
                                    mab_error *err)
{
    if (__builtin_expect(e && h.engine == e->serial && h.index < e->n_experiments &&
                             !forked_since_open(e), 1)) {
        *x = &e->experiments[h.index];
        return MAB_OK;
    }
    if (!e)
        return mab_error_set(err, MAB_EINVAL, "engine must not be NULL");
    if (forked_since_open(e))
        return mab__fork_error(e, err);
    return mab_error_set(err, MAB_EINVAL,
                         "%s: handle of another engine (engine %llu, experiment %zu); look "
                         "experiments up again after opening or reloading an engine",
                         e->config_path, (unsigned long long)h.engine, h.index);
}

const char *mab__engine_arm_id(const mab_engine *e, mab_handle h, size_t arm_index)
{
    if (!e || h.engine != e->serial || h.index >= e->n_experiments ||
        arm_index >= e->experiments[h.index].n_arms)
        return NULL;
    return mab__arm_id(&e->experiments[h.index], arm_index);
}

int mab_arm_index(mab_engine *e, mab_handle h, const char *arm, size_t *index, mab_error *err)
{
    mab__experiment *x = NULL;
    int rc = handle_experiment(e, h, &x, err);
    if (rc != MAB_OK)
        return rc;
    if (!index)
        return mab_error_set(err, MAB_EINVAL, "mab_arm_index: index is NULL");
    long i = mab__find_arm(e, x, arm, err);
    if (i < 0)
        return MAB_ENOTFOUND;
    *index = (size_t)i;
    return MAB_OK;
}

/* ---- choose and reward ------------------------------------------------ */

/* The policy's view of an experiment: published + this slot's pending
   totals, rewards normalised to [0, 1] by the reward range. */
void mab__build_view(const mab__experiment *x, mab__slot *s)
{
    s->view_x = NULL; /* callers may change the view after (mab__mature_view) */
    double min = x->reward_min, width = x->reward_max - x->reward_min;
    /* Read once into locals: the stores to the view could alias x's and s's
       fields as far as the compiler knows, which made it reload each of
       them for every arm (issue 18: 28 instructions an arm, now 16). */
    size_t n = x->n_arms;
    const mab__arm *arms = x->arms;
    const mab_totals *pending = slot_row(s, x); /* the zero row when none */
    mab_arm_view *view = s->view;
    if (min == 0.0 && width == 1.0) {
        /* Rewards in [0, 1] already (the default range): a plain sum. */
        for (size_t i = 0; i < n; i++) {
            mab_totals t = atomic_totals_read(&arms[i].published);
            view[i].pulls = t.pulls + pending[i].pulls;
            view[i].rewards = t.rewards + pending[i].rewards;
            view[i].reward_sum = t.reward_sum + pending[i].reward_sum;
            view[i].reward_sum_sq = t.reward_sum_sq + pending[i].reward_sum_sq;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const mab__arm *a = &arms[i];
        const mab_totals *p = &pending[i];
        mab_arm_view *v = &view[i];
        mab_totals t = atomic_totals_read(&a->published);
        v->pulls = t.pulls + p->pulls;
        v->rewards = t.rewards + p->rewards;
        double sum = t.reward_sum + p->reward_sum;
        double sq = t.reward_sum_sq + p->reward_sum_sq;
        /* sum of (r - min)/w and of its square, from the raw sums. */
        double c = (double)v->rewards;
        sq = (sq - 2.0 * min * sum + c * min * min) / (width * width);
        sum = (sum - c * min) / width;
        sum = sum < 0.0 ? 0.0 : sum > c ? c : sum;
        sq = sq < 0.0 ? 0.0 : sq;
        v->reward_sum = sum;
        v->reward_sum_sq = sq;
    }
}

/* Make s->view what mab__build_view(x, s) would, rebuilding it only when
   the engine's published totals moved (view_version) or the slot's pending
   ones did (pending_ops), or it was made for another experiment. The version is read before the totals: a write that the
   rebuild misses bumps it after, so the next call rebuilds. */
static inline void current_view(const mab_engine *e, const mab__experiment *x, mab__slot *s)
{
    uint64_t v = atomic_load_explicit(&e->view_version, memory_order_acquire);
    if (s->view_x == x && s->view_version == v && s->view_ops == s->pending_ops)
        return;
    mab__build_view(x, s);
    s->view_x = x;
    s->view_version = v;
    s->view_ops = s->pending_ops;
}

/* The locked slot's pull of x's arm, into its pending totals and into the
   kept view, which then stays what a rebuild would make: both sums of
   pulls are integers, and a rebuild adds the same one. */
static inline void count_pull(mab_engine *e, const mab__experiment *x, mab__slot *s, size_t arm)
{
    slot_pending(s, x, arm)->pulls++;
    if (s->view_x == x) {
        s->view[arm].pulls++;
        s->view_ops = s->pending_ops;
    }
    if (slot_due(s))
        mab__slot_publish(e, s);
}

/* ---- ABI 2: time, features, statistics ------------------------------- */

/* mab__engine_now, inline for choose2. */
static inline int64_t engine_now(const mab_engine *e, const mab_context *ctx)
{
    if (ctx && ctx->time_ns)
        return ctx->time_ns;
    if (e->clock)
        return e->clock(e->clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t mab__engine_now(const mab_engine *e, const mab_context *ctx)
{
    return engine_now(e, ctx);
}

int mab_set_clock(mab_engine *e, int64_t (*clock)(void *clock_ctx), void *clock_ctx,
                  mab_error *err)
{
    if (!e)
        return mab_error_set(err, MAB_EINVAL, "mab_set_clock: engine is NULL");
    e->clock = clock;
    e->clock_ctx = clock_ctx;
    /* Windows are read around the new time. */
    pthread_mutex_lock(&e->flush_mu);
    int rc = e->storage_state && e->buckets_stored ? mab__buckets_load(e, err) : MAB_OK;
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

int mab__context_check(const mab_context *ctx, mab_error *err)
{
    if (!ctx)
        return MAB_OK;
    /* 0.1's mab_context ended with probability; later fields are read only
       when struct_size covers them. */
    size_t v01 = offsetof(mab_context, probability) + sizeof ctx->probability;
    if (ctx->struct_size < v01)
        return mab_error_set(err, MAB_EINVAL, "mab_context.struct_size is %zu, need %zu",
                             ctx->struct_size, v01);
    if (ctx->n_features && (!ctx->feature_names || !ctx->feature_values))
        return mab_error_set(err, MAB_EINVAL,
                             "mab_context: %zu features but no names or values", ctx->n_features);
    for (size_t i = 0; i < ctx->n_features; i++)
        if (!ctx->feature_names[i])
            return mab_error_set(err, MAB_EINVAL, "mab_context: feature name %zu is NULL", i);
    return MAB_OK;
}

/* The features the experiment's policy names, in its order, NAN when the
   caller has none of that name. */
void mab__resolve_features(const mab__experiment *x, const mab_context *ctx, double *out)
{
    for (size_t i = 0; i < x->n_features; i++) {
        out[i] = NAN;
        for (size_t k = 0; ctx && k < ctx->n_features; k++)
            if (strcmp(ctx->feature_names[k], x->part->feature_names[i]) == 0) {
                out[i] = ctx->feature_values[k];
                break;
            }
    }
}

/* The policy's statistics as this slot sees them: published + pending, into
   the slot's view_stats (arms first, then the experiment's own). */
void mab__build_stats_view(const mab_engine *e, const mab__experiment *x,
                             const mab__slot *s)
{
    size_t n = x->n_arms * x->layout.arm_stats + x->layout.experiment_stats;
    size_t at = mab__arm_stats_at(x, 0);
    const double *pending = slot_stats(s, x); /* the zero row's when none */
    for (size_t i = 0; i < n; i++)
        s->view_stats[i] = atomic_load_explicit(&e->stats_published[at + i],
                                                memory_order_relaxed) +
                           pending[i];
}

/* What an ABI 2 policy reads (choose, explain), from the slot's views
   (build_view and build_stats_view done), with its window when its layout
   asks for one. Returns MAB_OK or the window's MAB_ENOMEM. */
static inline int policy_input(mab_engine *e, const mab__experiment *x, mab__slot *s,
                               int64_t now, const double *features, mab_policy_input *in)
{
    *in = (mab_policy_input){sizeof *in, &mab__core_api, s->view, x->n_arms, s->view_stats,
                             s->view_stats + x->n_arms * x->layout.arm_stats, now, features,
                             x->n_features, &s->rng, NULL, 0, 0, 0, NULL};
    return x->layout.window_buckets ? mab__window_view(e, x, s, now, in) : MAB_OK;
}

int mab__policy_input(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now,
                      const double *features, mab_policy_input *in)
{
    return policy_input(e, x, s, now, features, in);
}

/* Whether x's policy keeps statistics, so that an event must go through
   its update (mab__record_event does nothing otherwise). */
static inline int keeps_stats(const mab__experiment *x)
{
    return (x->layout.arm_stats || x->layout.experiment_stats) && x->policy2->update;
}

/* Ask the policy for an event's deltas and add them to x's row in the
   locked slot (taken: slot_take). Nothing is added when update fails. */
int mab__record_event(mab__experiment *x, mab__slot *s, const mab_policy_event *ev)
{
    size_t na = x->layout.arm_stats, nx = x->layout.experiment_stats;
    if (x->policy2->update && (na || nx)) {
        double *arm_delta = s->delta_stats, *experiment_delta = s->delta_stats + na;
        memset(s->delta_stats, 0, (na + nx) * sizeof *s->delta_stats);
        int rc = x->policy2->update(x->policy_state, ev, arm_delta, experiment_delta);
        if (rc != MAB_OK)
            return rc;
        for (size_t i = 0; i < na + nx; i++)
            if (!isfinite(s->delta_stats[i]))
                return MAB_ERANGE;
        double *pending = slot_stats(s, x), *pending_arm = pending + ev->arm * na;
        for (size_t i = 0; i < na; i++)
            pending_arm[i] += arm_delta[i];
        for (size_t i = 0; i < nx; i++)
            pending[x->n_arms * na + i] += experiment_delta[i];
    }
    return MAB_OK;
}

static int choose2(mab_engine *e, mab__experiment *x, const mab_context *ctx, mab_choice *out,
                   int *estimated, mab_error *err)
{
    /* What the policy does not use is not made: features it names none
       of, statistics it keeps none of, an event for an update it has not. */
    double features[MAB_POLICY_FEATURES_MAX];
    if (x->n_features)
        mab__resolve_features(x, ctx, features);
    int64_t now = engine_now(e, ctx);
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    slot_bucket(e, s, now);
    if (slot_take(s, x) != MAB_OK) {
        slot_unlock(s);
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: out of memory for the "
                             "thread's pending counts; nothing was recorded", x->id);
    }
    current_view(e, x, s);
    int stats = keeps_stats(x);
    if (x->layout.arm_stats || x->layout.experiment_stats)
        mab__build_stats_view(e, x, s);
    mab_policy_input in;
    mab_policy_choice c = {x->n_arms, NAN, 0};
    const char *failed = "choose";
    int rc = policy_input(e, x, s, now, features, &in);
    in.probabilities = slot_srm_vector(x, s); /* every arm's, for the check (srm.c) */
    if (rc == MAB_OK)
        rc = x->policy2->choose(x->policy_state, &in, &c);
    if (rc == MAB_OK && c.arm < x->n_arms) {
        /* The ledger's row too before anything is recorded, when it counts. */
        int srm = in.probabilities && !isnan(in.probabilities[0]) &&
                  mab__srm_filled(in.probabilities, x->n_arms, c.arm, c.probability);
        if (srm && slot_take(s, x->srm) != MAB_OK) {
            slot_unlock(s);
            return mab_error_set(err, MAB_ENOMEM, "experiments.%s: out of memory for the "
                                 "thread's pending counts; nothing was recorded", x->id);
        }
        if (stats) {
            mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_PULL, c.arm, x->n_arms,
                                   0.0, c.probability, now, features, x->n_features};
            rc = mab__record_event(x, s, &ev);
            failed = "update";
        }
        if (rc == MAB_OK) {
            if (srm)
                mab__srm_count(s, x->srm, c.arm, in.probabilities);
            count_pull(e, x, s, c.arm);
        }
    }
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s: %s failed: %s",
                             x->id, x->policy_path, failed, mab_strerror(rc));
    if (c.arm >= x->n_arms)
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s chose arm %zu of only %zu", x->id,
                             x->policy_path, c.arm, x->n_arms);
    fill_choice(x, c.arm, c.probability, c.estimated != 0, 0, out);
    if (estimated)
        *estimated = c.estimated != 0;
    return MAB_OK;
}


static int ledger_error(const mab_engine *e, const mab__experiment *x, mab_error *err)
{
    return mab_error_set(err, MAB_EINVAL, "%s: \"%s\" counts %s; it has no policy to "
                         "choose with", e->config_path, x->id,
                         x->is_ledger == MAB__LEDGER_SRM ? "the sample-ratio check" : "a holdout");
}

static inline __attribute__((always_inline)) int
choose_impl(mab_engine *e, mab__experiment *x, const mab_context *ctx, mab_choice *out,
            int *estimated, mab_error *err);

int mab_choose_ctx(mab_engine *e, const char *experiment, const mab_context *ctx,
                   mab_choice *out, int *estimated, mab_error *err)
{
    mab__experiment *x = NULL;
    if (!find_fast(e, experiment, &x)) {
        int found = mab__find_experiment(e, experiment, &x, err);
        if (found != MAB_OK)
            return found;
    }
    return choose_impl(e, x, ctx, out, estimated, err);
}

int mab_choose_h(mab_engine *e, mab_handle h, const mab_context *ctx, mab_choice *out,
                 mab_error *err)
{
    mab__experiment *x = NULL;
    int rc = handle_experiment(e, h, &x, err);
    if (rc != MAB_OK)
        return rc;
    /* An experiment chosen rarely has its arms and its policy's state out
       of the cache: start their fetches now, before the slot's lock (a
       locked instruction, which the loads after it cannot pass). The first
       three arms' published totals (addresses as integers: an experiment
       may have fewer; a prefetch never faults). Measured in
       docs/benchmarks.md ("Choose on a random experiment"). */
    uintptr_t published = (uintptr_t)&x->arms[0].published;
    __builtin_prefetch((const void *)published);
    __builtin_prefetch((const void *)(published + sizeof(mab__arm)));
    __builtin_prefetch((const void *)(published + 2 * sizeof(mab__arm)));
    __builtin_prefetch(x->policy_state);
    return choose_impl(e, x, ctx, out, NULL, err);
}

/* Whether an arm holding `count` rewards that sum to sum (squares: sq) has
   finite totals, both in the experiment's units and normalised the way
   build_view normalises them. A total that is not finite could never be
   written (storage refuses it) nor read by a policy. */
static inline int sums_finite(const mab__experiment *x, double count, double sum, double sq)
{
    double min = x->reward_min, scale = x->reward_scale; /* finite: see config.c */
    double normalised_sq = (sq - 2.0 * min * sum + count * min * min) * (scale * scale);
    double normalised_sum = (sum - count * min) * scale;
    return isfinite(sum) && isfinite(sq) && isfinite(normalised_sq) && isfinite(normalised_sum);
}

int mab__sums_finite(const mab__experiment *x, double count, double sum, double sq)
{
    return sums_finite(x, count, sum, sq);
}

/* Largest reward.max for which sums_cannot_overflow() holds: 2^450. */
#define MAB__UNCHECKED_REWARD_MAX 0x1p450

/*
 * Whether, for experiment x's reward range, no reward can ever fail
 * sums_finite() on held totals that are finite, decided once at open so
 * that reward can skip the check (issue 18: about 55 of its instructions,
 * and the read of the arm's published totals, a line other threads write).
 *
 * It holds for min = 0 and 1 <= max <= 2^450 (the default range [0, 1]
 * among them), because:
 *  - Rounding to nearest, |fl(a + b)| <= |a| + 2|b| for doubles a and b, so
 *    a float sum of terms is at most twice the sum of their magnitudes,
 *    and each further level of summing such sums (a slot's pending totals
 *    into the published ones, batches into the unapplied ones) doubles that
 *    at most. One process records fewer than 2^62 rewards (146 years at a
 *    billion a second), each with |r| <= max and r^2 <= max^2 <= 2^900: any
 *    increment the process adds to an arm's sums (a reward, its square, a
 *    slot's pending sums, a batch) is below 2^62 * 8 * 2^900 = 2^965.
 *  - Half an ulp of DBL_MAX is 2^970: a finite double plus anything smaller
 *    in magnitude rounds to at most DBL_MAX, never to an infinity. So the
 *    held sums plus the reward (sum + r, sq + r^2) stay finite, given held
 *    totals that are finite: the published ones are (a load that would
 *    publish one that is not clears sums_unchecked: note_loaded; an import
 *    refuses sums that are not: engine_stats.c), and the pending ones are
 *    sums of such increments.
 *  - With min = 0 every term of sums_finite's normalised forms that has min
 *    in it is exactly 0: they are sum * scale and sq * scale^2, with
 *    0 < scale = 1 / max <= 1, no larger than the raw sums, finite too.
 * Any other range keeps the check (a range [0, 0.5] doubles a sum that a
 * store may hold near DBL_MAX; a min other than 0 multiplies the sum).
 */
static int sums_cannot_overflow(const mab__experiment *x)
{
    return x->reward_min == 0.0 && x->reward_max >= 1.0 &&
           x->reward_max <= MAB__UNCHECKED_REWARD_MAX;
}

/* A load is publishing totals t for arm j of x: one that is not finite
   voids the argument of sums_cannot_overflow() for x (a store may hold
   anything), and x's rewards are checked from then on. */
static void note_loaded(mab__experiment *x, const mab_totals *t)
{
    if (__builtin_expect(!isfinite(t->reward_sum) || !isfinite(t->reward_sum_sq), 0))
        atomic_store_explicit(&x->sums_unchecked, 0, memory_order_relaxed);
}

int mab__read_only_error(const mab_engine *e, const char *what, mab_error *err)
{
    return mab_error_set(err, MAB_EINVAL, "%s: %s was opened read-only (MAB_OPEN_READ_ONLY or "
                         "MAB_OPEN_CHECK): nothing can be written", what, e->config_path);
}

int mab_choose(mab_engine *e, const char *experiment, mab_choice *out, mab_error *err)
{
    mab__experiment *x = NULL;
    if (!find_fast(e, experiment, &x)) {
        int found = mab__find_experiment(e, experiment, &x, err);
        if (found != MAB_OK)
            return found;
    }
    return choose_impl(e, x, NULL, out, NULL, err);
}

/* Every choose entry point after its lookup: inlined into each, so that the
   ABI 1 path pays no extra call. */
static inline __attribute__((always_inline)) int
choose_impl(mab_engine *e, mab__experiment *x, const mab_context *ctx, mab_choice *out,
            int *estimated, mab_error *err)
{
    int rc;
    if (e->read_only)
        return mab__read_only_error(e, "choose", err);
    if ((rc = choice_check(out, err)) != MAB_OK)
        return rc;
    if (ctx && (rc = mab__context_check(ctx, err)) != MAB_OK)
        return rc;
    if (x->is_ledger)
        return ledger_error(e, x, err);
    if (x->part->rules.active || atomic_load_explicit(&x->part->admin.word, memory_order_relaxed))
        return mab__choose_ruled(e, x, ctx, out, estimated, err);
    if (x->policy2)
        return choose2(e, x, ctx, out, estimated, err);
    if (estimated)
        *estimated = 0;
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    slot_bucket(e, s, bucket_clock(e));
    if (slot_take(s, x) != MAB_OK) {
        slot_unlock(s);
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: out of memory for the "
                             "thread's pending counts; nothing was recorded", x->id);
    }
    current_view(e, x, s);
    const size_t n_arms = x->n_arms; /* read once: the call could change *x, for all gcc knows */
    size_t arm = n_arms;
    double probability = NAN;
    rc = x->policy->choose(x->policy_state, s->view, n_arms, &s->rng, &arm, &probability);
    if (rc == MAB_OK && arm < n_arms)
        count_pull(e, x, s, arm);
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s failed: %s", x->id,
                             x->policy_path, mab_strerror(rc));
    if (arm >= n_arms)
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s chose arm %zu of only %zu", x->id,
                             x->policy_path, arm, x->n_arms);
    fill_choice(x, arm, probability, 0, 0, out);
    return MAB_OK;
}

/* A reward value must be a finite number inside the experiment's range. */
int mab__reward_value_check(const mab__experiment *x, const char *arm, double value,
                              mab_error *err)
{
    if (!isfinite(value))
        return mab_error_set(err, MAB_EINVAL,
                             "experiments.%s: reward for arm \"%s\" is %s; rewards must be "
                             "finite numbers",
                             x->id, arm, isnan(value) ? "NaN" : "infinite");
    if (value < x->reward_min || value > x->reward_max)
        return mab_error_set(err, MAB_ERANGE,
                             "experiments.%s: reward %g for arm \"%s\" is outside the reward "
                             "range [%g, %g]",
                             x->id, value, arm, x->reward_min, x->reward_max);
    return MAB_OK;
}

/* mab__rules_reward through a copy of *x, so that the caller's x is not
   taken by address (kept in memory, reloaded at every use on the path that
   has no rules). */
static int reward_rules(mab_engine *e, mab__experiment **x, const char *arm,
                        const mab_context *ctx, mab_error *err)
{
    mab__experiment *ruled = *x;
    int rc = mab__rules_reward(e, &ruled, arm, ctx, err);
    *x = ruled;
    return rc;
}

/* The error of a reward whose event the policy's update refused (rc), or
   whose deltas were not finite (MAB_ERANGE): nothing was recorded. Out of
   line: the reward paths keep no registers for its wording. */
static __attribute__((noinline, cold)) int reward_refused(const mab__experiment *x,
                                                          const mab__experiment *named, size_t i,
                                                          int rc, mab_error *err)
{
    return mab_error_set(err, MAB_EPLUGIN,
                         "experiments.%s: policy %s refused the reward for arm \"%s\": %s; "
                         "nothing was recorded",
                         x->id, x->policy_path, mab__arm_id(named, i), mab_strerror(rc));
}

/* Every reward after its lookup, for any context, range, ledger, policy and
   sync mode: out of line as reward_general, for a reward that is not of
   the common kinds reward_impl and reward_event record themselves. */
static inline __attribute__((always_inline)) int
reward_body(mab_engine *e, mab__experiment *x, size_t i, double value, const mab_context *ctx,
            mab_error *err)
{
    int rc;
    /* The arm's id is read only for an error or a rule, not on every call. */
    const mab__experiment *named = x;
    if (e->read_only)
        return mab__read_only_error(e, "reward", err);
    /* Inside [min, max] (both finite: config.c) is finite and in range: the
       call only when there is something to say. Likewise the context. */
    if (__builtin_expect(!(value >= x->reward_min && value <= x->reward_max), 0) &&
        (rc = mab__reward_value_check(x, mab__arm_id(named, i), value, err)) != MAB_OK)
        return rc;
    if (ctx && (rc = mab__context_check(ctx, err)) != MAB_OK)
        return rc;
    if (__builtin_expect(x->is_ledger == MAB__LEDGER_SRM, 0))
        return mab_error_set(err, MAB_EINVAL,
                             "%s: \"%s\" counts the sample-ratio check of \"%.*s\"; it takes "
                             "no rewards", e->config_path, x->id,
                             (int)(strlen(x->id) - 4), x->id);
    /* Only a context carries what the rules check (a holdout tag, the
       assignment's time): without one, or without such rules or flags, no
       call (mab_reward's path stays as it was). */
    if (ctx &&
        (x->part->ledger || x->part->rules.attribution_window ||
         (ctx->struct_size >= offsetof(mab_context, flags) + sizeof ctx->flags && ctx->flags)) &&
        (rc = reward_rules(e, &x, mab__arm_id(named, i), ctx, err)) != MAB_OK)
        return rc;
    double features[MAB_POLICY_FEATURES_MAX];
    mab_policy_event ev;
    /* An event only for a policy that keeps statistics (mab__record_event
       adds nothing for another): its time, features and call otherwise
       cost a reward of thompson's 75 instructions for nothing. */
    int event = x->policy2 && x->policy2->update &&
                (x->layout.arm_stats || x->layout.experiment_stats);
    if (event) {
        mab__resolve_features(x, ctx, features);
        double r = (value - x->reward_min) * x->reward_scale;
        double p = ctx && ctx->probability > 0 ? ctx->probability : NAN;
        ev = (mab_policy_event){sizeof ev, &mab__core_api, MAB_EVENT_REWARD, i, x->n_arms,
                                r < 0 ? 0 : r > 1 ? 1 : r, p, mab__engine_now(e, ctx), features,
                                x->n_features};
    }
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    slot_bucket(e, s, event ? ev.time_ns : ctx && ctx->time_ns ? ctx->time_ns : bucket_clock(e));
    if (__builtin_expect(slot_take(s, x) != MAB_OK, 0)) {
        slot_unlock(s);
        return mab_error_set(err, MAB_ENOMEM, "experiments.%s: out of memory for the "
                             "thread's pending counts; the reward for arm \"%s\" was not "
                             "recorded", x->id, mab__arm_id(named, i));
    }
    /* The reward must keep every sum finite, or no store would take it and
       it would reach storage only to be refused there. (The value itself,
       its square and its normalised form are finite: reward_value_check and
       the config's bounds on reward.min/max see to that.) */
    double square = value * value;
    if (!atomic_load_explicit(&x->sums_unchecked, memory_order_relaxed)) {
        /* A range where a sum could overflow (sums_cannot_overflow). */
        mab_totals held = atomic_totals_read(&x->arms[i].published);
        totals_add(&held, &slot_row(s, x)[i]);
        double count = (double)held.rewards + 1.0;
        double sum = held.reward_sum + value, sq = held.reward_sum_sq + square;
        if (!sums_finite(x, count, sum, sq)) {
            slot_unlock(s);
            return mab_error_set(err, MAB_ERANGE,
                                 "experiments.%s: reward %g for arm \"%s\" would make a sum of "
                                 "the arm's rewards or of their squares overflow (the arm holds "
                                 "%.0f rewards summing to %g, squares to %g); nothing was "
                                 "recorded",
                                 x->id, value, mab__arm_id(named, i), count - 1.0, held.reward_sum,
                                 held.reward_sum_sq);
        }
    }
    if (event && (rc = mab__record_event(x, s, &ev)) != MAB_OK) {
        slot_unlock(s);
        return reward_refused(x, named, i, rc, err);
    }
    mab_totals *p = slot_pending(s, x, i);
    p->rewards++;
    p->reward_sum += value;
    p->reward_sum_sq += square;
    uint64_t seq = 0;
    int sync = e->sync_always && e->storage;
    /* The drops are read only for a reward that waits for its write. */
    _Atomic uint32_t *drops = sync ? &e->arm_drops[x->first_arm + i] : NULL;
    uint32_t drops_before = sync ? atomic_load(drops) : 0;
    if (sync || slot_due(s))
        seq = mab__slot_publish(e, s);
    slot_unlock(s);
    if (!sync)
        return MAB_OK;
    rc = mab__wait_durable(e, seq, err);
    /* A commit that dropped this arm's increment may have dropped this
       reward with it: then it is not durable and must not be acknowledged.
       (A drop of the arm just before this reward was published is taken for
       one too: better a reward reported unwritten than one lost.) */
    if (rc == MAB_OK && atomic_load(drops) != drops_before) {
        mab_error why;
        mab_dropped_deltas(e, &why);
        rc = mab_error_set(err, MAB_ESTORAGE,
                           "experiments.%s: the reward for arm \"%s\" was not written: %s",
                           x->id, mab__arm_id(named, i), why.message);
    }
    return rc;
}

/* reward_body out of line: the path of any reward that reward_impl and
   reward_event do not record themselves, so that their own paths keep few
   registers and a small frame. With a context (ctx) or without (NULL). */
static __attribute__((noinline)) int reward_general(mab_engine *e, mab__experiment *x, size_t i,
                                                    double value, const mab_context *ctx,
                                                    mab_error *err)
{
    return reward_body(e, x, i, value, ctx, err);
}

/* Whether ctx carries nothing but (at most) a probability and a time:
   mab__context_check would pass it (struct_size covers 0.1's fields, no
   features to check) and reward_body's rules would not be asked for it
   (no flags). A context of 0.1's size (no flags field) is not one: it
   takes the general path, which reads no flags from it. */
static inline int plain_context(const mab_context *ctx)
{
    return ctx->struct_size >= offsetof(mab_context, flags) + sizeof ctx->flags &&
           ctx->n_features == 0 && ctx->flags == 0;
}

/* A reward with a policy event, after its lookup: inlined into the calls
   with a context (mab_reward_ctx, reward_h_ctx), and out of line for
   reward_impl's rewards of a policy that keeps statistics. The common
   event reward is recorded here as reward_body would record it, with the
   least work: x's event_short allows it (event_short_of: not read-only, no
   wait for the write, at most REWARD_EVENT_STATS statistics, no features
   asked for, and with a context no attribution window), the value is
   inside the range, the sums cannot overflow, and a context, if any, is
   plain_context's. Each condition stands for a step of reward_body that
   would do nothing for it (the read-only refusal, the wait and the drop
   check, the features, the rules, the value check, the finite-sums check,
   the context check; the statistics' bound for the deltas on the stack,
   zeroed there rather than in the slot's scratch). The event is
   reward_body's: the same clamped reward, the probability or NAN,
   mab__engine_now's time, no features (NULL, 0). A refused update or a
   non-finite delta records nothing and returns reward_body's error. Any
   other reward goes to reward_general, and so does a common one whose slot
   or row cannot be had (out of memory), nothing recorded by then. */
static inline __attribute__((always_inline)) int
reward_event(mab_engine *e, mab__experiment *x, size_t i, double value, const mab_context *ctx,
             mab_error *err)
{
    unsigned needs = ctx ? MAB__EVENT_SHORT | MAB__EVENT_SHORT_CTX : MAB__EVENT_SHORT;
    if (__builtin_expect((x->event_short & needs) != needs ||
                             !(value >= x->reward_min && value <= x->reward_max) ||
                             !atomic_load_explicit(&x->sums_unchecked, memory_order_relaxed) ||
                             (ctx && !plain_context(ctx)),
                         0))
        return reward_general(e, x, i, value, ctx, err);
    /* reward_body's clamp to [0, 1]: value - reward_min is not below 0 (+0
       at reward_min) inside the range, so only the top can round over. */
    double r = (value - x->reward_min) * x->reward_scale;
    mab_policy_event ev = {sizeof ev, &mab__core_api, MAB_EVENT_REWARD, i, x->n_arms,
                           r > 1 ? 1 : r, ctx && ctx->probability > 0 ? ctx->probability : NAN,
                           engine_now(e, ctx), NULL, 0};
    mab__slot *s = slot_acquire(e);
    if (__builtin_expect(!s, 0))
        return reward_general(e, x, i, value, ctx, err);
    slot_bucket(e, s, ev.time_ns);
    if (__builtin_expect(slot_take(s, x) != MAB_OK, 0)) {
        slot_unlock(s);
        return reward_general(e, x, i, value, ctx, err);
    }
    double delta[REWARD_EVENT_STATS] = {0};
    int rc = x->policy2->update(x->policy_state, &ev, delta, delta + x->layout.arm_stats);
    /* The layout is read again after the call rather than kept across it
       (a load each instead of a spill and a reload). */
    size_t na = x->layout.arm_stats, n = na + x->layout.experiment_stats;
    if (n == 1) {
        if (rc == MAB_OK && !isfinite(delta[0]))
            rc = MAB_ERANGE;
    } else {
        for (size_t k = 0; rc == MAB_OK && k < n; k++)
            if (!isfinite(delta[k]))
                rc = MAB_ERANGE;
    }
    if (__builtin_expect(rc != MAB_OK, 0)) {
        slot_unlock(s);
        return reward_refused(x, x, i, rc, err);
    }
    /* x's row: its arms' totals, then the arms' statistics, then its own
       (slot_row, slot_stats), the experiment's deltas after the arm's. */
    mab_totals *row = s->rows + s->row_at[x->slot_index];
    double *stats = (double *)(row + x->n_arms), *arm_stats = stats + i * na;
    double *own_stats = stats + x->n_arms * na - na; /* own_stats[k] for delta[k], k >= na */
    if (n == 1) { /* one statistic (exp3's), no loop: the arm's, or with na 0 the
                     experiment's, at the same place (own_stats is then stats) */
        arm_stats[0] += delta[0];
    } else {
        for (size_t k = 0; k < na; k++)
            arm_stats[k] += delta[k];
        for (size_t k = na; k < n; k++)
            own_stats[k] += delta[k];
    }
    s->pending_ops++; /* slot_pending's count */
    row[i].rewards++;
    row[i].reward_sum += value;
    row[i].reward_sum_sq += value * value;
    if (slot_due(s))
        mab__slot_publish(e, s);
    slot_unlock(s);
    return MAB_OK;
}

/* reward_event without a context, out of line: reward_impl's path for a
   policy that keeps statistics. */
static __attribute__((noinline)) int reward_event_plain(mab_engine *e, mab__experiment *x,
                                                        size_t i, double value, mab_error *err)
{
    return reward_event(e, x, i, value, NULL, err);
}

/* A reward without a context, after its lookup: inlined into mab_reward
   and mab_reward_h's path without one. The common reward (a value inside
   the range, not a ledger, no policy event, sums
   that cannot overflow, no wait for the write) is recorded here with the
   least work: each of those conditions stands for a step of reward_general
   that would do nothing for it (the value check, the context and rules
   checks, the ledger's refusal, the event, the finite-sums check, the wait
   and the drop check). A reward with a policy event goes to
   reward_event_plain; any other reward to reward_general, which does
   all of it, and so does a common one whose slot or row cannot be had (out
   of memory), nothing recorded. The time is read before the slot is
   taken, as reward_body does for an event's. */
static inline __attribute__((always_inline)) int
reward_impl(mab_engine *e, mab__experiment *x, size_t i, double value, mab_error *err)
{
    if (__builtin_expect(e->read_only || !(value >= x->reward_min && value <= x->reward_max) ||
                             x->is_ledger == MAB__LEDGER_SRM ||
                             !atomic_load_explicit(&x->sums_unchecked, memory_order_relaxed) ||
                             (e->sync_always && e->storage),
                         0))
        return reward_general(e, x, i, value, NULL, err);
    if (__builtin_expect((x->layout.arm_stats || x->layout.experiment_stats) && x->policy2 &&
                             x->policy2->update,
                         0))
        return reward_event_plain(e, x, i, value, err);
    int64_t t = bucket_clock(e);
    mab__slot *s = slot_acquire(e);
    if (__builtin_expect(!s, 0))
        return reward_general(e, x, i, value, NULL, err);
    slot_bucket(e, s, t);
    if (__builtin_expect(slot_take(s, x) != MAB_OK, 0)) {
        slot_unlock(s);
        return reward_general(e, x, i, value, NULL, err);
    }
    mab_totals *p = slot_pending(s, x, i);
    p->rewards++;
    p->reward_sum += value;
    p->reward_sum_sq += value * value;
    if (slot_due(s))
        mab__slot_publish(e, s);
    slot_unlock(s);
    return MAB_OK;
}

/* mab_reward after its inline lookup found nothing: the lookups that name
   what is wrong, then the same reward (out of line, so that mab_reward's
   x and i need no address). */
static __attribute__((noinline)) int reward_lookup(mab_engine *e, const char *experiment,
                                                   const char *arm, double value, mab_error *err)
{
    mab__experiment *x = NULL;
    size_t i = 0;
    int rc = mab__find_experiment_arm(e, experiment, arm, &x, &i, err);
    if (rc != MAB_OK)
        return rc;
    return reward_impl(e, x, i, value, err);
}

int mab_reward(mab_engine *e, const char *experiment, const char *arm, double value,
               mab_error *err)
{
    mab__experiment *x = NULL;
    size_t i = 0;
    if (!find_fast_arm(e, experiment, arm, &x, &i))
        return reward_lookup(e, experiment, arm, value, err);
    return reward_impl(e, x, i, value, err);
}

int mab_reward_ctx(mab_engine *e, const char *experiment, const char *arm, double value,
                   const mab_context *ctx, mab_error *err)
{
    if (!ctx)
        return mab_reward(e, experiment, arm, value, err);
    mab__experiment *x = NULL;
    size_t i = 0;
    if (!find_fast_arm(e, experiment, arm, &x, &i)) {
        int rc = mab__find_experiment_arm(e, experiment, arm, &x, &i, err);
        if (rc != MAB_OK)
            return rc;
    }
    return reward_event(e, x, i, value, ctx, err);
}

/* mab_reward_h's error for a handle or arm number it cannot take (out of
   line: the call's common path keeps no registers for it). */
static __attribute__((noinline, cold)) int reward_handle_error(mab_engine *e, mab_handle h,
                                                               size_t arm_index, mab_error *err)
{
    mab__experiment *x = NULL;
    int rc = handle_experiment(e, h, &x, err);
    if (rc != MAB_OK)
        return rc;
    return mab_error_set(err, MAB_ENOTFOUND, "%s: experiments.%s has no arm number %zu "
                         "(it has %zu)", e->config_path, x->id, arm_index, x->n_arms);
}

/* Whether h and arm_index name an arm of e (else reward_handle_error). */
static inline int reward_handle_ok(const mab_engine *e, mab_handle h, size_t arm_index)
{
    return __builtin_expect(e && h.engine == e->serial && h.index < e->n_experiments &&
                                !forked_since_open(e) &&
                                arm_index < e->experiments[h.index].n_arms,
                            1);
}

/* mab_reward_h's two paths, each out of line so that neither pays for the
   other's registers: without a context (reward_impl's common path) and
   with one (reward_event's). */
static __attribute__((noinline)) int reward_h_plain(mab_engine *e, mab_handle h, size_t arm_index,
                                                    double value, mab_error *err)
{
    if (!reward_handle_ok(e, h, arm_index))
        return reward_handle_error(e, h, arm_index, err);
    return reward_impl(e, &e->experiments[h.index], arm_index, value, err);
}

static __attribute__((noinline)) int reward_h_ctx(mab_engine *e, mab_handle h, size_t arm_index,
                                                  double value, const mab_context *ctx,
                                                  mab_error *err)
{
    if (!reward_handle_ok(e, h, arm_index))
        return reward_handle_error(e, h, arm_index, err);
    if (!ctx) /* mab_reward_h's dispatch: no test for it here */
        __builtin_unreachable();
    return reward_event(e, &e->experiments[h.index], arm_index, value, ctx, err);
}

int mab_reward_h(mab_engine *e, mab_handle h, size_t arm_index, double value,
                 const mab_context *ctx, mab_error *err)
{
    if (ctx)
        return reward_h_ctx(e, h, arm_index, value, ctx, err);
    return reward_h_plain(e, h, arm_index, value, err);
}
