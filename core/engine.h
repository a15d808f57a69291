/*
 * engine.h - the engine's internal structures, shared by engine.c (choose,
 * reward, write-behind), config.c (parsing) and loader.c (plugins).
 *
 * Where counts live. Each arm has published totals (`mab__arm`, atomics read
 * without locks by choose). A thread does not write them directly: it adds
 * its pulls and rewards to the pending totals of its own slot and publishes
 * them once it has MAB__PUBLISH_OPS operations pending and MAB__PUBLISH_NS
 * have passed since its last publish (and before any read that must be
 * exact: stats, flush, close). Other threads thus see a thread's counts at
 * most about a millisecond late, while a busy thread writes the shared
 * counters only a thousand times a second, whatever its rate. Publishing adds the pending totals, with
 * atomic adds, to the published totals, and under queue_mu to the arm's
 * unapplied totals in the write-behind queue (write_behind.c, "the arms
 * queue"; only arms with something unapplied have an entry), from which
 * the writer hands batches of increments to the storage plugin. So the choose path takes no global lock and writes
 * no shared cache line; a thread's view is the published totals plus its own
 * pending ones, exact for one thread.
 *
 * Stores shared with other processes (refresh_ms > 0) are re-read
 * periodically: published = stored totals + unapplied. The read happens
 * under flush_mu only (no batch is applied meanwhile); publishing holds
 * `publish_lock` shared and the combination holds it exclusively, so no
 * publish is half-way while the two are combined, and no storage I/O ever
 * happens under publish_lock.
 *
 * Policy statistics (policy ABI 2) live beside the counters and move the
 * same way: the engine keeps one array of doubles, `stats_published` and
 * `stats_unapplied` (atomics), in which each arm of an ABI 2 experiment owns
 * layout.arm_stats entries from its `stats_at`, and the experiment owns
 * layout.experiment_stats from its `stats_at`. A slot's pending statistics
 * are in the experiment's row (mab__slot), arms first. An event (a pull or
 * a reward) adds the counters and the
 * policy's deltas to the slot under one slot lock, so publishing, writing
 * behind (one storage call for counters and statistics) and refreshing
 * carry both together. Every event also has a time (`now`, from the
 * engine's clock or the caller), passed to the policy.
 *
 * Time buckets (buckets.c). Every pull and reward also counts in the bucket
 * of its time (start = the time floored to a multiple of bucket_seconds).
 * A slot's pending totals all belong to one bucket, the slot's
 * [bucket_lo_ns, bucket_hi_ns): an event of another bucket first publishes
 * the slot, then moves it (slot_bucket, one comparison when it stays). So
 * publishing knows the bucket of everything it moves: under buckets_mu it
 * adds the increments to the experiment's ring of recent buckets (what
 * windows and, over a store without buckets, mab_history read) and, when
 * the store keeps buckets (ABI 1.5), to the unapplied bucket queue, which
 * the writer takes with the totals (same publish_lock section, so a batch's
 * totals and its bucket increments hold the same events) and hands to
 * apply_buckets(). Open and refresh reload the ring: stored + unapplied.
 */
#ifndef MAB_ENGINE_H
#define MAB_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "mab/policy.h"
#include "mab/storage.h"
#include "web_config.h"

#define MAB__PUBLISH_OPS 64u        /* operations pending before a slot considers publishing */
#define MAB__PUBLISH_NS 1000000LL   /* and time since its last publish */
#define MAB__SLOTS 64u         /* threads beyond this share slots (safely) */
/* Configured experiments from which a full read of the store is one scan()
   rather than a load() per experiment and per admin record (engine.c). */
#define MAB__SCAN_FROM 256u
#define MAB__BUCKET_SECONDS_DEFAULT 3600
#define MAB__BUCKET_SECONDS_MAX 604800           /* a week */
#define MAB__RETENTION_SECONDS_DEFAULT 2592000   /* 30 days */
#define MAB__RETENTION_SECONDS_MAX 315360000     /* 10 years */
/* Buckets of an experiment kept in memory for mab_history() when the store
   keeps none (a week of hourly buckets), fewer when the retention is shorter. */
#define MAB__HISTORY_RING 168

/* One bucket of one arm in an experiment's ring (guarded by buckets_mu). */
typedef struct mab__bucket {
    int64_t start;  /* unix seconds; INT64_MIN: empty */
    mab_totals t;   /* stored + unapplied (the store keeps buckets), else this
                       process's counts since open */
} mab__bucket;

/* A bucket increment not yet applied to storage. */
typedef struct mab__bucket_entry {
    uint32_t arm;   /* the engine-wide arm index */
    int64_t start;
    mab_totals add;
} mab__bucket_entry;

/* Positions of ids in an array whose elements start with `char *id`
   (id_index.h says how a key is made). */
typedef struct mab__id_slot {
    uint32_t position;     /* position + 1, 0 when empty */
    unsigned char key[8];  /* the id's key (a uint64_t, 4-byte aligned) */
} mab__id_slot;

typedef struct mab__id_index {
    mab__id_slot *slots;
    uint32_t mask;  /* slots - 1 (a power of two) */
    unsigned shift; /* 64 - log2(slots): see mab__id_spot */
} mab__id_index;

int mab__id_index_build(mab__id_index *ix, const void *base, size_t stride, size_t n);
/* Position of id, or -1. */
long mab__id_index_find(const mab__id_index *ix, const void *base, size_t stride,
                        const char *id);
void mab__id_index_free(mab__id_index *ix);
/* Position of the first id of base[0..n) equal to an earlier one, -1 when
   all differ, -2 when out of memory (linear: a config's duplicate check). */
long mab__id_index_first_duplicate(const void *base, size_t stride, size_t n);

/* Four counters updated with atomic adds. */
typedef struct mab__atomic_totals {
    _Atomic uint64_t pulls;
    _Atomic uint64_t rewards;
    _Atomic double reward_sum;
    _Atomic double reward_sum_sq;
} mab__atomic_totals;

/* An arm's counters, 32 bytes: a config of 10^6 experiments of 10 arms has
   2 * 10^7 of them (its own and its sample-ratio ledger's), so every field
   counts. What is the same for an experiment's arms and its ledgers' is in
   the experiment: the ids and values (arm_ids: mab__arm_id, mab__arm_value),
   the statistics' places (mab__arm_stats_at); the drops of sync "always"
   are the engine's (arm_drops). */
typedef struct mab__arm {
    mab__atomic_totals published; /* what choose and stats read */
    /* What is published but not yet applied to storage is not here: the
       write-behind queue holds it, for the arms listed there only
       (mab_engine.queue, write_behind.c "the arms queue"). */
} mab__arm;

/* An arm listed in the write-behind queue and its unapplied totals. */
typedef struct mab__queued {
    uint32_t arm;  /* the engine-wide arm index */
    mab_totals t;  /* published but not yet applied to storage */
} mab__queued;

/* Kinds of ledger experiment (rules.c): counters kept beside an experiment's. */
enum { MAB__LEDGER_HOLDOUT = 1, MAB__LEDGER_LATE = 2, MAB__LEDGER_SRM = 3 };

/* mab__experiment.event_short: its rewards with a policy event may take
   reward_event's short path (engine.c, event_short_of): those without a
   context when MAB__EVENT_SHORT is set, those with one when
   MAB__EVENT_SHORT_CTX is too (no attribution window for the rules to
   check). */
enum { MAB__EVENT_SHORT = 1, MAB__EVENT_SHORT_CTX = 2 };

/* An experiment's operating rules (rules.c; DESIGN.md decision 14). */
enum { MAB__RUNNING = 0, MAB__PAUSED, MAB__CONCLUDED };
typedef struct mab__rules {
    int active;              /* any rule that changes choose (state, floor, burn-in, holdout) */
    int state;               /* MAB__RUNNING, MAB__PAUSED, MAB__CONCLUDED */
    long serve;              /* arm served when paused/concluded; -1: the leader */
    double floor;            /* 0: none; K * floor <= 1 */
    uint64_t burn_in;        /* 0: none */
    double holdout_share;    /* 0: none */
    long holdout_arm;        /* control arm; -1: uniform */
    int64_t attribution_window; /* seconds; 0: none */
} mab__rules;

/* An experiment's admin state (admin.c): the stored "ID@admin" record as
   this engine last read or wrote it, under flush_mu; read without locks. */
typedef struct mab__admin {
    _Atomic uint64_t word;     /* 0: the config's state; else state + 1 | (serve + 1) << 8 */
    _Atomic uint64_t sequence; /* the stored action's number; 0: none */
    _Atomic int64_t time_ns;   /* its time, unix ns (ms precision); 0: none */
    _Atomic int action;        /* the stored action + 1 (admin.c); 0: none */
} mab__admin;

/* What only a configured experiment (one with a policy) has: its ledgers
   (holdout, late rewards, sample ratio: one or more a configured
   experiment) do not carry it. The configured experiments' are one array
   (engine->parts, config.c), every ledger's the engine's one ledger_part
   (zeros, no rules: rules.c, mab__make_ledger), never written but with
   those same values. */
typedef struct mab__experiment_part {
    mab__rules rules;           /* operating rules (rules.c); first: choose reads active */
    mab__admin admin;           /* the admin state over them (admin.c) */
    struct mab__experiment *ledger; /* the holdout's counters "ID@holdout", or NULL */
    struct mab__experiment *late_ledger; /* late rewards as pulls, "ID@late" (rules.c), or NULL */
    char **feature_names;       /* the policy object's "features" (n_features) */
    const cJSON *policy_obj;    /* valid during mab_open only */
    const char *policy_name;    /* the descriptor's name */
    char *layout_tag;           /* ABI 2: "NAME/VERSION:ARM,EXPERIMENT" */
    char *policy_json;          /* the "policy" object, compact, for reports */
} mab__experiment_part;

/* An experiment's record, configured or a ledger: a config of 10^6
   experiments has 2 * 10^6 of them (each its sample-ratio ledger's), so
   what only configured ones use is in `part`, and the fields choose reads
   are in the first three cache lines (0-191: id to policy). */
typedef struct mab__experiment {
    char *id; /* first member: see mab__id_index */
    mab__arm *arms;
    size_t n_arms;
    size_t slot_index;       /* its position in e->experiments: its slots' row_at (a size_t:
                                the 32-bit field in a padding hole cost reward 2 instructions) */
    /* The arms' ids, n_arms pointers at the start of one allocation that
       holds after them every arm's text: a byte with the id's length, the
       id, its NUL, the value (compact JSON), its NUL (config.c). So the
       value of arm i is at arm_ids[i] + length + 1 (mab__arm_value). A
       ledger's is its experiment's (shared, freed with the experiment). It
       is the base of arm_index (elements of one `char *`). */
    char **arm_ids;
    mab__id_index arm_index; /* a ledger's is its experiment's (engine.c, allocate_tables) */
    size_t first_arm;        /* index of arms[0] among all the engine's arms */
    double reward_min, reward_max;
    double reward_scale;     /* 1 / (reward_max - reward_min), set by mab_open */
    /* 1 when no reward can make the arms' sums non-finite, so reward skips
       the finite-sums check (engine.c, sums_cannot_overflow); cleared when a
       load publishes a total that is not finite. 0: check every reward. */
    _Atomic unsigned char sums_unchecked;
    /* Small fields together here, in the padding after sums_unchecked. */
    unsigned char is_ledger;          /* a ledger (MAB__LEDGER_*): no policy, not listed,
                                         not chosen */
    unsigned char srm_off;            /* why there is no srm ledger: MAB__SRM_* (srm.c) */
    unsigned char policy_json_shared; /* policy_json is the previous experiment's (config.c) */
    unsigned char layout_tag_shared;  /* layout_tag is the previous experiment's (engine.c) */
    unsigned char event_short;        /* MAB__EVENT_SHORT*: which rewards of its may take
                                         reward_event's short path (engine.c, set by mab_open) */
    const mab_policy2 *policy2; /* ABI 2, or NULL */
    void *policy_state;
    mab__experiment_part *part; /* never NULL (a ledger's: the engine's ledger_part) */
    struct mab__experiment *srm; /* the sample-ratio ledger "ID@srm" (srm.c), or NULL */
    mab_policy_layout layout;   /* ABI 2: declared by create (zeros for ABI 1) */
    size_t n_features;          /* of part->feature_names */
    size_t stats_at;            /* first of its layout.experiment_stats */
    const mab_policy *policy;   /* ABI 1, or NULL */
    const char *policy_path;    /* the loaded plugin's path (engine-owned) or a ledger's label */
    uint32_t ring_size;         /* buckets per arm of ring allocated: a divisor of ring_cap,
                                   grown as buckets accumulate (buckets.c) */
    size_t ring_cap;            /* buckets per arm the ring keeps (0: none kept) */
    mab__bucket *ring;          /* n_arms * ring_size: arm i's bucket number k
                                   (start / bucket_seconds) at i * ring_size + k % ring_size */
    /* The "winner" rule (config.c; report.c): a sample-ratio ledger has its
       experiment's, so that a report on it judges as before (srm.c). */
    double winner_p_best;
    double winner_expected_loss;
    /* To 256 B: &experiments[i] is then a shift (a handle's lookup, on
       every call by handle: 240 B cost reward by handle 4 instructions). */
    unsigned char spare[16];
} mab__experiment;

/* A top-level object of the caller's, kept for mab_config_section(). */
typedef struct mab__section {
    char *name;
    cJSON *object; /* a copy; NULL when the file has no such key */
} mab__section;

typedef struct mab__slot {
    _Alignas(64) atomic_flag lock;
    int ready;               /* rows/view allocated, rng seeded */
    uint32_t pending_ops;
    uint32_t n_dirty;        /* experiments with a row, listed in dirty */
    uint32_t *dirty;         /* their slot_index, dirty_cap entries */
    uint32_t dirty_cap;
    int64_t last_publish_ns; /* CLOCK_MONOTONIC */
    mab_rng rng;
    /* Pending totals and statistics, in rows (write_behind.c, "rows"): an
       experiment's row is its n_arms totals then its policy statistics,
       taken from the arena `rows` at its first event since the slot's last
       publish; row_at[slot_index] is where (in mab_totals units), 0 for
       none: the zero row, rows[0 .. zero_units), which is never written. */
    uint32_t *row_at;        /* one per experiment of the engine (ledgers too) */
    mab_totals *rows;        /* the arena: rows_cap units, rows_used in use */
    size_t rows_used, rows_cap, zero_units;
    mab_arm_view *view;      /* scratch for choose, max_arms entries */
    double *view_stats;      /* scratch: one experiment's stats, max_stats entries */
    double *delta_stats;     /* scratch for update: max_stats entries */
    int64_t bucket_lo_ns;    /* the bucket of every pending total: [lo, hi) */
    int64_t bucket_hi_ns;    /* (lo == hi: none yet) */
    int64_t bucket_start;    /* lo in seconds */
    mab_arm_view *window;    /* scratch for a window, window_cap entries */
    size_t window_cap;
    double *probabilities;   /* scratch: every arm's probability from choose()
                                (policy ABI 2.2), max_arms entries (srm.c) */
    /* view holds mab__build_view(view_x, this slot) as of the engine's
       view_version view_version and this slot's pending_ops view_ops
       (engine.c, current_view): every change of the pending totals counts
       in pending_ops (slot_pending), and a publish, which zeroes it, bumps
       the version. NULL: it holds nothing reusable; build_view clears it
       (its callers may change the view after it). Choose adds its own pull
       to the view in place. */
    const struct mab__experiment *view_x;
    uint64_t view_version;
    uint32_t view_ops;
} mab__slot;

/* A reward waiting for its claim (engine.c, mab__engine_claim_reward). */
typedef struct mab__claim_waiter {
    mab_claim claim;
    mab_delta delta; /* the reward, applied with the claim under sync "always" */
    int64_t bucket;  /* its bucket's start, unix seconds */
    size_t arm_index; /* engine-wide */
    mab__arm *arm;
    int rc;          /* MAB_OK (granted), MAB_ECLAIMED, or the call's error */
    int done;
    mab_error err;
    struct mab__claim_waiter *next;
} mab__claim_waiter;

struct mab_engine {
    uint64_t serial; /* unique per engine in this process, for thread caches */
    unsigned fork_generation; /* the process's fork count when opened (engine.c) */
    char *config_path;
    char *config_dir;
    cJSON *root;     /* the parsed config; freed at the end of mab_open */

    char **plugin_dirs;
    size_t n_plugin_dirs;
    int has_seed;
    uint64_t seed;
    int sync_always;
    int64_t interval_ms;
    int64_t bucket_seconds;    /* storage.bucket_seconds */
    int64_t bucket_ns;         /* the same in nanoseconds */
    int64_t retention_seconds; /* storage.retention_seconds */
    int buckets_stored;        /* the store keeps buckets (ABI 1.5) */
    pthread_mutex_t buckets_mu; /* guards the rings and the bucket queue */
    mab__bucket_entry *bucket_queue; /* unapplied bucket increments */
    size_t n_bucket_queue, cap_bucket_queue;
    uint32_t *bucket_hash;     /* (arm, start) -> queue position + 1; 2 * cap entries */
    mab_bucket_delta *bucket_batch; /* scratch: the queue taken by the writer */
    uint32_t *bucket_batch_arm;
    size_t cap_bucket_batch;

    mab__experiment *experiments;
    size_t n_experiments;     /* the config's, then their holdout ledgers */
    mab__experiment_part *parts; /* the configured experiments' (n_configured) */
    mab__experiment_part ledger_part; /* every ledger's (mab__make_ledger) */
    size_t n_configured;      /* the config's (listed by mab_experiment_at) */
    /* Policy plugins already loaded by this open, by the name the config
       gives (engine.c, create_policy): each is resolved and dlopened once,
       however many experiments use it; the engine owns the handles. */
    struct mab__loaded_policy {
        char *name;
        char *path;
        void *handle;
        const mab_policy *policy;
        const mab_policy2 *policy2;
    } *loaded_policies;
    size_t n_loaded_policies;
    mab__id_index experiment_index;
    size_t total_arms, max_arms;

    mab__web_config *web;     /* the adapter's keys (secret_file, cookie, ...) */
    mab__section *sections;   /* the caller's (mab_open_sections) */
    size_t n_sections;

    const cJSON *storage_obj; /* valid during mab_open only */
    char *storage_path;
    void *storage_handle;
    const mab_storage *storage;
    void *storage_state;

    int64_t (*clock)(void *ctx);    /* mab_set_clock(), or NULL: CLOCK_REALTIME */
    void *clock_ctx;
    size_t total_stats;             /* policy statistics of every experiment */
    size_t max_stats;               /* of the experiment with the most */
    _Atomic double *stats_published; /* what choose and mab_policy_stats read */
    _Atomic double *stats_unapplied; /* published but not yet applied to storage */
    mab_stats_delta *stats_batch;   /* scratch: total_arms + n_experiments entries */
    double *stats_batch_values;     /* scratch: total_stats */
    size_t *stats_batch_at;         /* stats_at of each stats_batch entry */
    /* MAB_OPEN_CHECK: the (experiment, layout) pairs of the stored policy
       statistics, read through open_read_only when the plugin has one (a
       check creates and locks nothing); else why they were not read. */
    char **check_layouts;           /* 2 * n_check_layouts strings */
    size_t n_check_layouts;
    int check_layouts_read;
    char check_layouts_why[MAB_ERROR_MAX];

    /* Every arm of the engine in one array: an experiment's arms are
       arm_pool[first_arm, first_arm + n_arms) (x->arms points there), so
       arm i of the engine is &arm_pool[i] (mab__arm_at) with no table of
       pointers. Grown while parsing (mab__arms_take), fitted by mab_open. */
    mab__arm *arm_pool;
    size_t cap_arms;                /* arms arm_pool holds */
    uint32_t *arm_experiment;       /* index in experiments of each arm's
                                       experiment (mab__arm_experiment) */
    /* Under sync "always" with a store (else NULL): per arm of the engine,
       the increments of it storage refused and the queue dropped
       (write_behind.c, drop_delta), which a reward waiting for its write
       compares before and after (engine.c); compared, never summed, so
       wrapping is harmless. */
    _Atomic uint32_t *arm_drops;

    mab__slot *slots;
    atomic_uint next_slot;

    pthread_rwlock_t publish_lock; /* shared: publishing; exclusive: refresh, reset */
    atomic_uint_fast64_t publish_seq; /* bumped after each publish */
    /* Bumped (mab__view_changed, slots.h) after every write of any arm's
       published totals: a slot publishing, a refresh or load, reset, a
       dropped delta, a claim. (Statistics need none: a slot rebuilds its
       statistics view at every choose.) A slot's kept view (view_x) is
       current while this has not moved since the slot built it. One for
       the engine, not one per experiment: its writers need no map from an
       arm to its experiment, and it moves at most once per publish (a slot
       publishes at most once a millisecond), so a slot rebuilds for another
       slot's publish at most that often. */
    _Atomic uint64_t view_version;
    uint32_t refresh_ms;      /* 0: the store has no other writers */
    int refresh_everything;   /* the next refresh re-reads every experiment (engine.c) */

    pthread_mutex_t flush_mu; /* one storage call at a time; guards durable_seq, batch */
    pthread_mutex_t durable_mu; /* group commit: guards committing, with durable_cv */
    pthread_cond_t durable_cv;  /* broadcast when a group commit ends */
    int committing;             /* a reward caller is writing for the waiting group */
    _Atomic uint64_t durable_seq; /* every publish up to this one is durable */
    /* The write-behind queue (write_behind.c, "the arms queue"): every arm
       whose unapplied totals or statistics a publish or a requeue made
       non-empty since the last take is listed once in `queue`, with its
       unapplied totals, so that a write passes over those arms only, not
       over total_arms, and an idle arm costs nothing. queue_index finds an
       arm's entry (open addressing on the arm index: position + 1, 0 empty;
       2 * cap_queue slots). queue_held: entries of the batch on its way to
       storage, which a failed write gives back; cap_queue stays at least
       n_queue + queue_held, so a requeue never allocates. Guarded by
       queue_mu. */
    pthread_mutex_t queue_mu;
    mab__queued *queue;
    uint32_t *queue_index;
    size_t n_queue, cap_queue; /* cap_queue: 0 or a power of two */
    size_t queue_held;
    mab_delta *batch;         /* scratch for one storage apply: grown to the arms that
                                 changed (write_behind.c, batch_reserve), not total_arms */
    size_t *batch_arm;        /* the arm index of each batch entry */
    size_t cap_batch;         /* entries batch and batch_arm hold */

    pthread_mutex_t claim_mu;   /* guards claim_queue, claim_committing */
    pthread_cond_t claim_cv;    /* broadcast when a group of claims is decided */
    mab__claim_waiter *claim_queue; /* claims waiting for the next group */
    int claim_committing;       /* a caller is writing a group of claims */

    pthread_mutex_t writer_mu;
    pthread_cond_t writer_cv;
    pthread_t writer;
    int writer_running;
    int writer_stop;
    atomic_uint_fast64_t flush_failures;

    /* Increments storage refused as invalid (apply said MAB_EINVAL or
       MAB_ERANGE for that delta alone) and the write-behind queue dropped,
       so that one bad delta cannot block every later write. */
    atomic_uint_fast64_t dropped_deltas;
    pthread_mutex_t dropped_mu; /* guards last_drop */
    mab_error last_drop;        /* why the latest delta was dropped */
    /* MAB_OPEN_READ_ONLY or MAB_OPEN_CHECK: nothing is ever written. */
    int read_only;
    /* MAB_OPEN_CHECK: whether the storage plugin had a check callback. */
    int storage_checked;
};

/* Arm i of the engine (first_arm + j of its experiment) and its experiment. */
static inline mab__arm *mab__arm_at(const mab_engine *e, size_t i)
{
    return &e->arm_pool[i];
}
static inline mab__experiment *mab__arm_experiment(const mab_engine *e, size_t i)
{
    return &e->experiments[e->arm_experiment[i]];
}
/* Arm i of x: its id and its value (compact JSON), from x->arm_ids. */
static inline const char *mab__arm_id(const mab__experiment *x, size_t i)
{
    return x->arm_ids[i];
}
static inline const char *mab__arm_value(const mab__experiment *x, size_t i)
{
    const char *id = x->arm_ids[i];
    return id + (unsigned char)id[-1] + 1;
}
/* The name of x's policy: a ledger's is its kind's (its part is shared). */
static inline const char *mab__policy_name(const mab__experiment *x)
{
    static const char *const kinds[] = {NULL, "holdout", "late", "srm"};
    return x->is_ledger ? kinds[x->is_ledger] : x->part->policy_name;
}
/* The first of the layout.arm_stats statistics of arm i of x in the
   engine's stats arrays (allocate_stats: an experiment's arms' statistics
   are contiguous, arm by arm, and its own follow at x->stats_at). */
static inline size_t mab__arm_stats_at(const mab__experiment *x, size_t i)
{
    return x->stats_at - (x->n_arms - i) * x->layout.arm_stats;
}
/* The id of arm i of the engine. */
static inline const char *mab__arm_id_at(const mab_engine *e, size_t i)
{
    const mab__experiment *x = mab__arm_experiment(e, i);
    return x->arm_ids[i - x->first_arm];
}
/* engine.c: n zeroed arms at the end of the arm pool for x (whose arms must
   be NULL): sets x->arms and x->first_arm and adds n to total_arms; NULL
   when out of memory. The pool may move: every experiment of
   experiments[0, n_experiments) with arms is pointed at its new place, so
   a caller holds no arm pointer across it (mab_open, single-threaded). */
mab__arm *mab__arms_take(mab_engine *e, mab__experiment *x, size_t n);

/* Whether a storage plugin stores time buckets (ABI 1.5, callbacks set). */
#define mab__storage_has_buckets(desc)                                                  \
    (mab__storage_has(desc, scan_buckets) && (desc)->apply_buckets != NULL &&           \
     (desc)->load_buckets != NULL && (desc)->scan_buckets != NULL)

/* Whether a storage descriptor is large enough to hold `field` (ABI gates). */
#define mab__storage_has(desc, field) \
    ((desc)->struct_size >= offsetof(mab_storage, field) + sizeof((desc)->field))

/* Whether a storage plugin stores policy statistics (ABI 1.4, callbacks set). */
#define mab__storage_has_stats(desc) \
    (mab__storage_has(desc, scan_stats) && (desc)->apply_stats != NULL)

/* config.c: parse engine->config_path into the engine's fields; `sections`
   (NULL-terminated, may be NULL) are the caller's top-level keys. */
int mab__config_load(mab_engine *engine, const char *const *sections, mab_error *err);
/* config.c: free what mab__config_load allocated. */
void mab__config_free(mab_engine *engine);

/* rules.c: parse an experiment's operating rules from its config object
   (keys state, serve, floor, burn_in, holdout, attribution_window); arms
   must be parsed already. */
int mab__rules_parse(mab_engine *engine, mab__experiment *x, const cJSON *obj, mab_error *err);
/* admin.c: the rules in force: x->rules, or a copy in *scratch with the
   admin state's "state" and "serve" over them. */
const mab__rules *mab__rules_effective(const mab__experiment *x, mab__rules *scratch);
/* admin.c: read every experiment's stored admin state (open, refresh;
   caller holds flush_mu or is mab_open). */
int mab__admin_load(mab_engine *engine, mab_error *err);
/* admin.c: the "ID@admin" records a full read met in scan() (engine.c),
   collected by mab__admin_scan_visit (1: an admin record, taken or not ours;
   0: not one; MAB_ENOMEM) and made the state of every configured
   experiment by mab__admin_adopt_scanned (which frees the list): the same
   as mab__admin_load without a load() per experiment. */
typedef struct mab__admin_scan {
    struct mab__admin_scanned {
        size_t experiment; /* index of a configured experiment */
        size_t arm;        /* its arm, n_arms for "@none" */
        mab_totals totals;
    } *items;
    size_t n, cap;
} mab__admin_scan;
int mab__admin_scan_visit(mab_engine *engine, mab__admin_scan *s, const char *experiment,
                          const char *arm, const mab_totals *totals);
int mab__admin_adopt_scanned(mab_engine *engine, mab__admin_scan *s, mab_error *err);
/* The same for one experiment, when a refresh of only what changed (storage
   ABI 1.6) names its "ID@admin" record. */
int mab__admin_load_one(mab_engine *engine, mab__experiment *x, mab_error *err);
/* admin.c: the state fields of mab_rules() (state, serve, and the admin
   fields as far as out->struct_size reaches). */
void mab__admin_info(const mab__experiment *x, mab_rules_info *out);
/* rules.c: append a holdout ledger experiment for each experiment with a
   holdout (after every experiment is parsed). */
int mab__rules_add_ledgers(mab_engine *engine, mab_error *err);
/* engine.c: what an ABI 2 policy reads from the slot's views, window
   included (MAB_OK or MAB_ENOMEM). */
int mab__policy_input(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now,
                      const double *features, mab_policy_input *in);
/* engine.c: fill a caller's mab_choice, as far as its struct_size reaches. */
void mab__fill_choice(const mab__experiment *x, size_t arm, double probability, int estimated,
                      unsigned flags, mab_choice *out);
/* rules.c: choose under the experiment's rules (x->rules.active); out's
   struct_size is checked already. */
int mab__choose_ruled(mab_engine *engine, mab__experiment *x, const mab_context *ctx,
                      mab_choice *out, int *estimated, mab_error *err);
/* rules.c: the reward side of the rules: refuse a late reward (MAB_ELATE,
   counted) and send a holdout reward to the ledger (*x replaced). */
int mab__rules_reward(mab_engine *engine, mab__experiment **x, const char *arm,
                      const mab_context *ctx, mab_error *err);

/* rules.c: the late rewards of arm `arm` of x (-1: of every arm), from its
   "ID@late" ledger's published totals (gather first for this process's). */
uint64_t mab__rules_late(const mab__experiment *x, long arm);

/* loader.c: resolve a plugin name from the config to a file path. */
int mab__plugin_resolve(const mab_engine *engine, const char *name, const char *json_path,
                        char **path_out, mab_error *err);
/* loader.c: dlopen a policy/storage plugin and check its descriptor. A
   policy is ABI 2 when it exports mab_policy_entry2 (*out2 set, *out NULL),
   else ABI 1 (*out set, *out2 NULL). */
int mab__load_policy(const char *path, void **handle, const mab_policy **out,
                     const mab_policy2 **out2, mab_error *err);
/* loader.c: the function table handed to ABI 2 policies. */
extern const mab_core_api mab__core_api;
int mab__load_storage(const char *path, void **handle, const mab_storage **out,
                      mab_error *err);

/* Shared by engine.c, write_behind.c, claims.c and engine_stats.c (the
   engine in files by concept; each is defined where its concept lives). */
/* Publish every thread's pending totals; MAB_ENOMEM (err set) when the
   write-behind queue could not grow to list a slot's (it keeps them). */
int mab__gather_all(mab_engine *e, mab_error *err);
/* Publish every thread's pending totals of experiments xs[0..n) only (NULL
   entries skipped): what a read of one experiment needs. MAB_ENOMEM as
   mab__gather_all. */
int mab__gather_experiments(mab_engine *e, const mab__experiment *const *xs, size_t n,
                            mab_error *err);
/* The same for x and its ledgers (holdout, late rewards, sample ratio), which
   mab_report() reads after mab_stats(). */
int mab__gather_experiment(mab_engine *e, const mab__experiment *x, mab_error *err);
/* The publish sequence number covering what it moved, or 0 when the
   write-behind queue could not grow to list it (the slot keeps its rows;
   mab__wait_durable(e, 0, ...) reports MAB_ENOMEM). */
uint64_t mab__slot_publish(mab_engine *e, mab__slot *s);
int mab__wait_durable(mab_engine *e, uint64_t seq, mab_error *err);
int mab__write_queued(mab_engine *e, mab_error *err);
/* The unapplied pulls and rewards of every arm, queued or still in a thread's
   slot (mab_close's lost count). */
void mab__queue_unapplied(mab_engine *e, uint64_t *pulls, uint64_t *rewards);
/* Add the unapplied totals of arms [first_arm, first_arm + n) to to[0..n)
   (refresh and load: published = stored + unapplied). */
void mab__queue_add_to(mab_engine *e, mab_totals *to, size_t first_arm, size_t n);
/* Forget the unapplied totals of arms [first_arm, first_arm + n) (reset).
   Caller holds flush_mu and publish_lock exclusively. */
void mab__queue_forget(mab_engine *e, size_t first_arm, size_t n);
int mab__writer_start(mab_engine *e, mab_error *err);
void mab__writer_stop(mab_engine *e);
int mab__load_totals(mab_engine *e, mab_error *err);
void mab__build_stats_view(const mab_engine *e, const mab__experiment *x, const mab__slot *s);
void mab__build_view(const mab__experiment *x, mab__slot *s);
int mab__context_check(const mab_context *ctx, mab_error *err);
int64_t mab__engine_now(const mab_engine *e, const mab_context *ctx);
long mab__find_arm(const mab_engine *e, const mab__experiment *x, const char *id, mab_error *err);
int mab__find_experiment(mab_engine *e, const char *id, mab__experiment **out, mab_error *err);
int mab__find_experiment_arm(mab_engine *e, const char *experiment, const char *arm, mab__experiment **x, size_t *index, mab_error *err);
int mab__fork_error(const mab_engine *e, mab_error *err);
int mab__read_only_error(const mab_engine *e, const char *what, mab_error *err);
int mab__record_event(mab__experiment *x, mab__slot *s, const mab_policy_event *ev);
void mab__resolve_features(const mab__experiment *x, const mab_context *ctx, double *out);
int mab__reward_value_check(const mab__experiment *x, const char *arm, double value, mab_error *err);
int mab__sums_finite(const mab__experiment *x, double count, double sum, double sq);

/* buckets.c: time buckets (see the top of this file). */
int mab__buckets_allocate(mab_engine *e);
void mab__buckets_free(mab_engine *e);
void mab__slot_move_bucket(mab_engine *e, mab__slot *s, int64_t t_ns);
int64_t mab__bucket_of(const mab_engine *e, int64_t t_ns); /* start, unix seconds */
/* Caller holds buckets_mu: add to the ring and (stored) the queue. */
void mab__buckets_add(mab_engine *e, size_t arm, int64_t start, const mab_totals *add);
/* Caller holds buckets_mu: prefetch the ring entry and the queue's hash
   slot mab__buckets_add(e, arm, start, ...) will touch (x is arm's). */
void mab__buckets_prefetch(const mab_engine *e, const mab__experiment *x, size_t arm,
                           int64_t start);
/* Caller holds publish_lock exclusively: take the queue into bucket_batch. */
size_t mab__buckets_take(mab_engine *e);
void mab__buckets_requeue(mab_engine *e, size_t from, size_t n);
void mab__buckets_drop(mab_engine *e, size_t k, const mab_error *why);
/* Read the stored buckets of every ring (caller holds flush_mu), combine
   with the queue. */
int mab__buckets_load(mab_engine *e, mab_error *err);
/* The same for experiments at[0..n) only (seen: one flag per experiment,
   set for those), the others' rings left as they are (a refresh of only
   what changed, engine.c). */
int mab__buckets_load_some(mab_engine *e, const size_t *at, size_t n, const unsigned char *seen,
                           mab_error *err);
void mab__buckets_reset(mab_engine *e, mab__experiment *x);
int mab__window_view(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now_ns,
                     mab_policy_input *in);
/* buckets.c: the attribution window (rules.c). How many buckets can hold
   pulls younger than window_seconds (0 for none), and the policy's view
   (build_view done) with the immature pulls that were not rewarded taken
   out of each arm's pulls: see docs/operating.md. */
size_t mab__attribution_buckets(const mab_engine *e, int64_t window_seconds);
void mab__mature_view(mab_engine *e, const mab__experiment *x, mab__slot *s, int64_t now_ns);

/* srm.c: the sample-ratio check (ALGORITHMS.md; docs/operating.md). Each
   experiment has a ledger "ID@srm" with reward range [0, 1]: a counted
   choice whose probabilities of every arm are known adds one pull to the
   chosen arm and to every arm i one reward of value P(i), so pulls_i is
   O_i and reward_sum_i is E_i. */
enum { MAB__SRM_ON = 0, MAB__SRM_CONFIG_OFF, MAB__SRM_ID_TOO_LONG };
/* Parse the experiment's "srm" key (true by default). */
int mab__srm_parse(const mab_engine *e, mab__experiment *x, const cJSON *obj, mab_error *err);
/* Append the ledgers (after mab__rules_add_ledgers). */
int mab__srm_add_ledgers(mab_engine *e, mab_error *err);
/* rules.c: fill `ledger` as a ledger of x (x's arms, no policy) of kind
   MAB__LEDGER_*, id x's + suffix; its arms' ids and values are x's, its arms
   taken from e's pool (mab__arms_take: first_arm set). MAB_ENOMEM leaves what it made for the
   caller to free with the other experiments. */
int mab__make_ledger(mab_engine *e, mab__experiment *ledger, const mab__experiment *x,
                     int kind, const char *suffix);
/* The slot's probabilities scratch, [0] set to NAN, for
   mab_policy_input.probabilities; NULL when x has no ledger. */
double *mab__srm_vector(const mab__experiment *x, mab__slot *s);
/* Whether choose() filled v (n arms) with probabilities, consistent with
   its choice of `arm` with probability p (NAN: not said). */
int mab__srm_filled(const double *v, size_t n, size_t arm, double p);
/* Count one choice of `arm` served with the probabilities v in the ledger
   (locked slot, the ledger's row taken: slot_take; pending deltas only, no
   storage call). */
void mab__srm_count(mab__slot *s, const mab__experiment *ledger, size_t arm, const double *v);
/* The check of x from its ledger's published totals (the caller gathered
   them): *p_value and a status text; returns 1 when p_value is available. */
int mab__srm_check(const mab__experiment *x, double *p_value, char *status, size_t size);

#endif
