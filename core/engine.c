/*
 * engine.c - open/close, choose, reward, stats and the write-behind queue.
 * See engine.h for where counts live and why.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "engine.h"

static atomic_uint_fast64_t next_engine_serial = 1;

/* Per thread: which slot this thread uses in the last few engines it used. */
#define THREAD_CACHE 4
static _Thread_local struct {
    uint64_t serial;
    mab__slot *slot;
} thread_slots[THREAD_CACHE];
static _Thread_local unsigned thread_slots_next;

/* ---- slots ------------------------------------------------------------ */

static void slot_lock(mab__slot *s)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire)) {
        /* Only shared slots (more threads than MAB__SLOTS) or a gatherer
           ever contend; yield rather than burn the other core. */
        if (++spins > 64)
            sched_yield();
    }
}

static void slot_unlock(mab__slot *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

static int slot_init(mab_engine *e, mab__slot *s)
{
    s->pending = calloc(e->total_arms, sizeof *s->pending);
    s->view = calloc(e->max_arms, sizeof *s->view);
    if (!s->pending || !s->view) {
        free(s->pending);
        free(s->view);
        s->pending = NULL;
        s->view = NULL;
        return MAB_ENOMEM;
    }
    size_t index = (size_t)(s - e->slots);
    if (e->has_seed)
        mab__rng_seed(&s->rng, e->seed + 0x9e3779b97f4a7c15ULL * index);
    else
        mab__rng_seed_random(&s->rng);
    s->ready = 1;
    return MAB_OK;
}

/* This thread's slot, locked and ready; NULL when out of memory. */
static mab__slot *slot_acquire(mab_engine *e)
{
    mab__slot *s = NULL;
    for (unsigned i = 0; i < THREAD_CACHE; i++)
        if (thread_slots[i].serial == e->serial)
            s = thread_slots[i].slot;
    if (!s) {
        unsigned index = atomic_fetch_add_explicit(&e->next_slot, 1, memory_order_relaxed);
        s = &e->slots[index % MAB__SLOTS];
        unsigned k = thread_slots_next++ % THREAD_CACHE;
        thread_slots[k].serial = e->serial;
        thread_slots[k].slot = s;
    }
    slot_lock(s);
    if (!s->ready && slot_init(e, s) != MAB_OK) {
        slot_unlock(s);
        return NULL;
    }
    return s;
}

static void totals_add(mab_totals *to, const mab_totals *add)
{
    to->pulls += add->pulls;
    to->rewards += add->rewards;
    to->reward_sum += add->reward_sum;
    to->reward_sum_sq += add->reward_sum_sq;
}

static int totals_empty(const mab_totals *t)
{
    return t->pulls == 0 && t->rewards == 0;
}

/* Move a locked slot's pending totals into the published totals and the
   write-behind queue. Returns the publish sequence number covering them. */
static uint64_t slot_publish(mab_engine *e, mab__slot *s)
{
    pthread_mutex_lock(&e->queue_mu);
    for (size_t i = 0; s->pending_ops && i < e->total_arms; i++) {
        mab_totals *p = &s->pending[i];
        if (totals_empty(p))
            continue;
        mab__arm *a = e->all_arms[i];
        /* Writers of published totals all hold queue_mu: load + store suffices. */
        atomic_store_explicit(&a->pulls, atomic_load_explicit(&a->pulls, memory_order_relaxed) + p->pulls,
                              memory_order_relaxed);
        atomic_store_explicit(&a->rewards,
                              atomic_load_explicit(&a->rewards, memory_order_relaxed) + p->rewards,
                              memory_order_relaxed);
        atomic_store_explicit(&a->reward_sum,
                              atomic_load_explicit(&a->reward_sum, memory_order_relaxed) + p->reward_sum,
                              memory_order_relaxed);
        atomic_store_explicit(&a->reward_sum_sq,
                              atomic_load_explicit(&a->reward_sum_sq, memory_order_relaxed) +
                                  p->reward_sum_sq,
                              memory_order_relaxed);
        totals_add(&e->unapplied[i], p);
        memset(p, 0, sizeof *p);
    }
    s->pending_ops = 0;
    uint64_t seq = ++e->publish_seq;
    pthread_mutex_unlock(&e->queue_mu);
    return seq;
}

/* Publish every thread's pending totals, so reads after this are exact. */
static void gather_all(mab_engine *e)
{
    for (unsigned i = 0; i < MAB__SLOTS; i++) {
        mab__slot *s = &e->slots[i];
        slot_lock(s);
        if (s->ready && s->pending_ops)
            slot_publish(e, s);
        slot_unlock(s);
    }
}

/* ---- write-behind ----------------------------------------------------- */

/* Hand everything queued to storage as one batch. Caller holds flush_mu.
   On failure the batch goes back into the queue, to be offered again. */
static int write_queued(mab_engine *e, mab_error *err)
{
    size_t n = 0;
    pthread_mutex_lock(&e->queue_mu);
    for (size_t i = 0; i < e->total_arms; i++) {
        if (totals_empty(&e->unapplied[i]))
            continue;
        e->batch[n].experiment = e->arm_experiment[i]->id;
        e->batch[n].arm = e->all_arms[i]->id;
        e->batch[n].add = e->unapplied[i];
        e->batch_arm[n++] = i;
        memset(&e->unapplied[i], 0, sizeof e->unapplied[i]);
    }
    uint64_t seq = e->publish_seq;
    pthread_mutex_unlock(&e->queue_mu);

    int rc = MAB_OK;
    if (n && e->storage)
        rc = e->storage->apply(e->storage_state, e->batch, n, err);
    if (rc == MAB_OK) {
        e->durable_seq = seq;
        return MAB_OK;
    }
    pthread_mutex_lock(&e->queue_mu);
    for (size_t k = 0; k < n; k++)
        totals_add(&e->unapplied[e->batch_arm[k]], &e->batch[k].add);
    pthread_mutex_unlock(&e->queue_mu);
    atomic_fetch_add(&e->flush_failures, 1);
    return rc;
}

/* Group commit: return once publish `seq` is durable. Callers that arrive
   while another writes wait on flush_mu and usually find their increments
   already written by it, so many rewards share one storage write. */
static int wait_durable(mab_engine *e, uint64_t seq, mab_error *err)
{
    pthread_mutex_lock(&e->flush_mu);
    int rc = e->durable_seq >= seq ? MAB_OK : write_queued(e, err);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

int mab_flush(mab_engine *e, mab_error *err)
{
    if (!e)
        return mab_error_set(err, MAB_EINVAL, "mab_flush: engine is NULL");
    gather_all(e);
    pthread_mutex_lock(&e->flush_mu);
    int rc = write_queued(e, err);
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

static void *writer_main(void *arg)
{
    mab_engine *e = arg;
    pthread_mutex_lock(&e->writer_mu);
    while (!e->writer_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += e->interval_ms / 1000;
        until.tv_nsec += (e->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int wait_rc = 0;
        while (!e->writer_stop && wait_rc != ETIMEDOUT)
            wait_rc = pthread_cond_timedwait(&e->writer_cv, &e->writer_mu, &until);
        if (e->writer_stop)
            break;
        pthread_mutex_unlock(&e->writer_mu);
        /* A failure is counted (flush_failures) and retried next interval;
           mab_flush() and mab_close() report it to the caller. */
        mab_error ignored;
        (void)mab_flush(e, &ignored);
        pthread_mutex_lock(&e->writer_mu);
    }
    pthread_mutex_unlock(&e->writer_mu);
    return NULL;
}

static int writer_start(mab_engine *e, mab_error *err)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&e->writer_cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0)
        rc = pthread_create(&e->writer, NULL, writer_main, e);
    if (rc)
        return mab_error_set(err, MAB_ENOMEM, "cannot start the storage writer thread: %s",
                             strerror(rc));
    e->writer_running = 1;
    return MAB_OK;
}

static void writer_stop(mab_engine *e)
{
    if (!e->writer_running)
        return;
    pthread_mutex_lock(&e->writer_mu);
    e->writer_stop = 1;
    pthread_cond_signal(&e->writer_cv);
    pthread_mutex_unlock(&e->writer_mu);
    pthread_join(e->writer, NULL);
    pthread_cond_destroy(&e->writer_cv);
    e->writer_running = 0;
}

/* ---- open / close ----------------------------------------------------- */

static void engine_free(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        mab__id_index_free(&x->arm_index);
        if (x->policy && x->policy_state)
            x->policy->destroy(x->policy_state);
        if (x->policy_handle)
            dlclose(x->policy_handle);
    }
    if (e->storage_state)
        e->storage->close(e->storage_state);
    if (e->storage_handle)
        dlclose(e->storage_handle);
    if (e->slots) {
        for (unsigned i = 0; i < MAB__SLOTS; i++) {
            free(e->slots[i].pending);
            free(e->slots[i].view);
        }
        free(e->slots);
    }
    mab__id_index_free(&e->experiment_index);
    mab__config_free(e);
    free(e->all_arms);
    free(e->arm_experiment);
    free(e->unapplied);
    free(e->batch);
    free(e->batch_arm);
    free(e->storage_path);
    free(e->config_path);
    pthread_mutex_destroy(&e->queue_mu);
    pthread_mutex_destroy(&e->flush_mu);
    pthread_mutex_destroy(&e->writer_mu);
    free(e);
}

/* Prefix a loader error with the config position that named the plugin. */
static int plugin_error(const mab_engine *e, const char *json_path, const mab_error *inner,
                        mab_error *err)
{
    return mab_error_set(err, inner->code, "%s: %s: %s", e->config_path, json_path,
                         inner->message);
}

static int create_policy(mab_engine *e, mab__experiment *x, mab_error *err)
{
    char json_path[MAB__ID_MAX + 32];
    snprintf(json_path, sizeof json_path, "experiments.%s.policy.plugin", x->id);
    const cJSON *plugin = cJSON_GetObjectItemCaseSensitive(x->policy_obj, "plugin");
    int rc = mab__plugin_resolve(e, plugin->valuestring, json_path, &x->policy_path, err);
    if (rc)
        return rc;
    mab_error inner;
    rc = mab__load_policy(x->policy_path, &x->policy_handle, &x->policy, &inner);
    if (rc) {
        x->policy = NULL;
        return plugin_error(e, json_path, &inner, err);
    }
    char *where = mab__asprintf("%s: experiments.%s.policy", e->config_path, x->id);
    mab_params params;
    if (!where || mab__params_init(&params, x->policy_obj, where, e->config_dir) != MAB_OK) {
        free(where);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    free(where);
    mab__params_mark_used(&params, "plugin");
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

static int open_storage(mab_engine *e, mab_error *err)
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
    char *where = mab__asprintf("%s: storage", e->config_path);
    mab_params params;
    if (!where || mab__params_init(&params, e->storage_obj, where, e->config_dir) != MAB_OK) {
        free(where);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    free(where);
    mab__params_mark_used(&params, "plugin");
    mab__params_mark_used(&params, "sync");
    void *state = NULL;
    mab_error open_err = {0, ""};
    rc = e->storage->open(&params, &state, &open_err);
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
    return rc;
}

/* Read each experiment's stored totals into the published ones. */
static int load_totals(mab_engine *e, mab_error *err)
{
    const char **ids = calloc(e->max_arms, sizeof *ids);
    mab_totals *totals = calloc(e->max_arms, sizeof *totals);
    int rc = ids && totals ? MAB_OK : mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; j < x->n_arms; j++)
            ids[j] = x->arms[j].id;
        rc = e->storage->load(e->storage_state, x->id, ids, x->n_arms, totals, err);
        for (size_t j = 0; rc == MAB_OK && j < x->n_arms; j++) {
            atomic_store(&x->arms[j].pulls, totals[j].pulls);
            atomic_store(&x->arms[j].rewards, totals[j].rewards);
            atomic_store(&x->arms[j].reward_sum, totals[j].reward_sum);
            atomic_store(&x->arms[j].reward_sum_sq, totals[j].reward_sum_sq);
        }
    }
    free(ids);
    free(totals);
    return rc;
}

static int allocate_tables(mab_engine *e)
{
    size_t n = e->total_arms;
    e->all_arms = calloc(n, sizeof *e->all_arms);
    e->arm_experiment = calloc(n, sizeof *e->arm_experiment);
    e->unapplied = calloc(n, sizeof *e->unapplied);
    e->batch = calloc(n, sizeof *e->batch);
    e->batch_arm = calloc(n, sizeof *e->batch_arm);
    e->slots = aligned_alloc(64, MAB__SLOTS * sizeof *e->slots);
    if (!e->all_arms || !e->arm_experiment || !e->unapplied || !e->batch || !e->batch_arm ||
        !e->slots)
        return MAB_ENOMEM;
    memset(e->slots, 0, MAB__SLOTS * sizeof *e->slots);
    if (mab__id_index_build(&e->experiment_index, e->experiments, sizeof *e->experiments,
                            e->n_experiments) != MAB_OK)
        return MAB_ENOMEM;
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        if (mab__id_index_build(&x->arm_index, x->arms, sizeof *x->arms, x->n_arms) != MAB_OK)
            return MAB_ENOMEM;
    }
    for (unsigned i = 0; i < MAB__SLOTS; i++)
        atomic_flag_clear(&e->slots[i].lock);
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        for (size_t j = 0; j < x->n_arms; j++) {
            e->all_arms[x->first_arm + j] = &x->arms[j];
            e->arm_experiment[x->first_arm + j] = x;
        }
    }
    return MAB_OK;
}

int mab_open(const char *config_path, mab_engine **out, mab_error *err)
{
    return mab_open_ex(config_path, NULL, out, err);
}

int mab_open_ex(const char *config_path, const mab_options *opts, mab_engine **out,
                mab_error *err)
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
    pthread_mutex_init(&e->queue_mu, NULL);
    pthread_mutex_init(&e->flush_mu, NULL);
    pthread_mutex_init(&e->writer_mu, NULL);

    int rc = mab__config_load(e, err);
    if (rc == MAB_OK && opts && (opts->flags & MAB_OPEN_SEED)) {
        e->has_seed = 1;
        e->seed = opts->seed;
    }
    if (rc == MAB_OK && allocate_tables(e) != MAB_OK)
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < e->n_experiments; i++)
        rc = create_policy(e, &e->experiments[i], err);
    int with_storage = !(opts && (opts->flags & MAB_OPEN_NO_STORAGE));
    if (rc == MAB_OK && with_storage)
        rc = open_storage(e, err);
    if (rc == MAB_OK && with_storage)
        rc = load_totals(e, err);
    if (rc == MAB_OK && with_storage)
        rc = writer_start(e, err);
    if (rc != MAB_OK) {
        engine_free(e);
        return rc;
    }
    /* The parsed config is not needed once plugins have read their keys. */
    for (size_t i = 0; i < e->n_experiments; i++)
        e->experiments[i].policy_obj = NULL;
    e->storage_obj = NULL;
    cJSON_Delete(e->root);
    e->root = NULL;
    *out = e;
    return MAB_OK;
}

int mab_close(mab_engine *e, mab_error *err)
{
    if (!e)
        return MAB_OK;
    writer_stop(e);
    mab_error flush_err;
    int rc = mab_flush(e, &flush_err);
    if (rc != MAB_OK) {
        uint64_t lost_pulls = 0, lost_rewards = 0;
        for (size_t i = 0; i < e->total_arms; i++) {
            lost_pulls += e->unapplied[i].pulls;
            lost_rewards += e->unapplied[i].rewards;
        }
        mab_error_set(err, rc, "%s; %llu pulls and %llu rewards were not written",
                      flush_err.message, (unsigned long long)lost_pulls,
                      (unsigned long long)lost_rewards);
    }
    engine_free(e);
    return rc;
}

/* ---- lookups ---------------------------------------------------------- */

static int find_experiment(mab_engine *e, const char *id, mab__experiment **out,
                           mab_error *err)
{
    if (!e || !id)
        return mab_error_set(err, MAB_EINVAL, "engine and experiment id must not be NULL");
    long i = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments, id);
    if (i >= 0) {
        *out = &e->experiments[i];
        return MAB_OK;
    }
    return mab_error_set(err, MAB_ENOTFOUND, "%s: no experiment \"%s\"", e->config_path, id);
}

static long find_arm(const mab_engine *e, const mab__experiment *x, const char *id,
                     mab_error *err)
{
    long i = id ? mab__id_index_find(&x->arm_index, x->arms, sizeof *x->arms, id) : -1;
    if (i >= 0)
        return i;
    mab_error_set(err, MAB_ENOTFOUND, "%s: experiments.%s has no arm \"%s\"", e->config_path,
                  x->id, id ? id : "(null)");
    return -1;
}

static void fill_choice(const mab__experiment *x, size_t arm, double probability,
                        mab_choice *out)
{
    out->arm_index = arm;
    out->arm_id = x->arms[arm].id;
    out->value_json = x->arms[arm].value_json;
    out->probability = probability;
}

int mab_arm_lookup(mab_engine *e, const char *experiment, const char *arm, mab_choice *out,
                   mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    long i = find_arm(e, x, arm, err);
    if (i < 0)
        return MAB_ENOTFOUND;
    fill_choice(x, (size_t)i, NAN, out);
    return MAB_OK;
}

/* ---- choose and reward ------------------------------------------------ */

/* The policy's view of an experiment: published + this slot's pending
   totals, rewards normalised to [0, 1] by the reward range. */
static void build_view(const mab__experiment *x, const mab__slot *s)
{
    double min = x->reward_min, width = x->reward_max - x->reward_min;
    int identity = min == 0.0 && width == 1.0;
    for (size_t i = 0; i < x->n_arms; i++) {
        const mab__arm *a = &x->arms[i];
        const mab_totals *p = &s->pending[x->first_arm + i];
        mab_arm_view *v = &s->view[i];
        v->pulls = atomic_load_explicit(&a->pulls, memory_order_relaxed) + p->pulls;
        v->rewards = atomic_load_explicit(&a->rewards, memory_order_relaxed) + p->rewards;
        double sum = atomic_load_explicit(&a->reward_sum, memory_order_relaxed) + p->reward_sum;
        double sq = atomic_load_explicit(&a->reward_sum_sq, memory_order_relaxed) + p->reward_sum_sq;
        if (!identity) {
            /* sum of (r - min)/w and of its square, from the raw sums. */
            double c = (double)v->rewards;
            sq = (sq - 2.0 * min * sum + c * min * min) / (width * width);
            sum = (sum - c * min) / width;
            sum = sum < 0.0 ? 0.0 : sum > c ? c : sum;
            sq = sq < 0.0 ? 0.0 : sq;
        }
        v->reward_sum = sum;
        v->reward_sum_sq = sq;
    }
}

int mab_choose(mab_engine *e, const char *experiment, mab_choice *out, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    build_view(x, s);
    size_t arm = x->n_arms;
    double probability = NAN;
    int rc = x->policy->choose(x->policy_state, s->view, x->n_arms, &s->rng, &arm, &probability);
    if (rc == MAB_OK && arm < x->n_arms) {
        s->pending[x->first_arm + arm].pulls++;
        if (++s->pending_ops >= MAB__PUBLISH_EVERY)
            slot_publish(e, s);
    }
    slot_unlock(s);
    if (rc != MAB_OK)
        return mab_error_set(err, MAB_EPLUGIN, "experiments.%s: policy %s failed: %s", x->id,
                             x->policy_path, mab_strerror(rc));
    if (arm >= x->n_arms)
        return mab_error_set(err, MAB_EPLUGIN,
                             "experiments.%s: policy %s chose arm %zu of only %zu", x->id,
                             x->policy_path, arm, x->n_arms);
    fill_choice(x, arm, probability, out);
    return MAB_OK;
}

int mab_reward(mab_engine *e, const char *experiment, const char *arm, double value,
               mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    long i = find_arm(e, x, arm, err);
    if (i < 0)
        return MAB_ENOTFOUND;
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
    mab__slot *s = slot_acquire(e);
    if (!s)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab_totals *p = &s->pending[x->first_arm + (size_t)i];
    p->rewards++;
    p->reward_sum += value;
    p->reward_sum_sq += value * value;
    uint64_t seq = 0;
    if (++s->pending_ops >= MAB__PUBLISH_EVERY || (e->sync_always && e->storage))
        seq = slot_publish(e, s);
    slot_unlock(s);
    if (e->sync_always && e->storage)
        return wait_durable(e, seq, err);
    return MAB_OK;
}

/* ---- statistics and reset -------------------------------------------- */

size_t mab_experiment_count(const mab_engine *e)
{
    return e ? e->n_experiments : 0;
}

int mab_experiment_at(const mab_engine *e, size_t index, mab_experiment_info *out,
                      mab_error *err)
{
    if (!e || index >= e->n_experiments)
        return mab_error_set(err, MAB_ENOTFOUND, "no experiment number %zu", index);
    const mab__experiment *x = &e->experiments[index];
    out->id = x->id;
    out->policy = x->policy->name;
    out->policy_path = x->policy_path;
    out->n_arms = x->n_arms;
    out->reward_min = x->reward_min;
    out->reward_max = x->reward_max;
    return MAB_OK;
}

const char *mab_storage_name(const mab_engine *e)
{
    return e && e->storage ? e->storage->name : "none";
}

int mab_stats(mab_engine *e, const char *experiment, mab_arm_stats *out, size_t cap,
              size_t *n_arms, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    gather_all(e);
    for (size_t i = 0; i < x->n_arms && i < cap; i++) {
        const mab__arm *a = &x->arms[i];
        mab_arm_stats *st = &out[i];
        st->arm_id = a->id;
        st->pulls = atomic_load(&a->pulls);
        st->rewards = atomic_load(&a->rewards);
        st->reward_sum = atomic_load(&a->reward_sum);
        st->reward_sum_sq = atomic_load(&a->reward_sum_sq);
        st->mean = st->pulls ? st->reward_sum / (double)st->pulls : 0.0;
    }
    if (n_arms)
        *n_arms = x->n_arms;
    return MAB_OK;
}

uint64_t mab_storage_errors(const mab_engine *e)
{
    return e ? (uint64_t)atomic_load(&((mab_engine *)e)->flush_failures) : 0;
}

int mab_reset(mab_engine *e, const char *experiment, mab_error *err)
{
    mab__experiment *x;
    int found = find_experiment(e, experiment, &x, err);
    if (found != MAB_OK)
        return found;
    gather_all(e);
    pthread_mutex_lock(&e->flush_mu);
    int rc = e->storage ? e->storage->reset(e->storage_state, x->id, err) : MAB_OK;
    if (rc == MAB_OK) {
        pthread_mutex_lock(&e->queue_mu);
        for (size_t i = 0; i < x->n_arms; i++) {
            mab__arm *a = &x->arms[i];
            atomic_store(&a->pulls, 0);
            atomic_store(&a->rewards, 0);
            atomic_store(&a->reward_sum, 0.0);
            atomic_store(&a->reward_sum_sq, 0.0);
            memset(&e->unapplied[x->first_arm + i], 0, sizeof(mab_totals));
        }
        pthread_mutex_unlock(&e->queue_mu);
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}
