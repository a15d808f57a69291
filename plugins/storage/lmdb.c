/*
 * lmdb.c - storage in an LMDB environment, shared by every process on a machine.
 *
 * Config: {"plugin": "lmdb", "path": "var/mab.lmdb", "map_size": 67108864,
 *          "max_readers": 126}
 * "path" is a directory (created if missing, relative to the config file's
 * directory) holding LMDB's data.mdb and lock.mdb.
 *
 * Layout (format version 1), three named databases:
 *   "meta":    "format" -> "mab-lmdb-storage", "version" -> uint32 1
 *   "records": "EXP\0ARM" (no trailing NUL) -> stored_record (40 bytes,
 *              native byte order, like LMDB's own pages)
 *   "stats":   "EXP\0ARM\0LAYOUT" (ARM empty for the experiment's own
 *              statistics) -> stored_stats header (8 bytes: version 1, the
 *              number of doubles) then that many doubles. Policy statistics
 *              (storage ABI 1.4); created on first open by this version, so
 *              a store of an older one gains it and reads as before.
 *   "buckets": time buckets (storage ABI 1.5): "EXP\0" START "ARM" ->
 *              stored_record (the 40 bytes of a record), START the bucket's
 *              start as 8 big-endian bytes with the sign bit flipped, so that
 *              an experiment's buckets sort by start and load_buckets(since)
 *              is one range scan from "EXP\0" START(since), ascending.
 *   "bucket_starts": START "EXP\0ARM" -> empty: the same buckets ordered by
 *              start first, for retention: apply_buckets deletes the first
 *              keys while they start before keep_from, at most BUCKET_SWEEP
 *              (256) buckets per call, in the call's transaction, so old
 *              buckets go over successive calls at a bounded cost each.
 *              Both are created on the first open by this version; older
 *              plugins never open them (their reset leaves buckets behind).
 *   "claims":  16-byte assignment id -> int64 expiry (unix seconds, native
 *              byte order); created by the first claim, so stores written
 *              before claims existed open unchanged and older plugins, which
 *              never open it, read them as before.
 *   "changes": the change log (storage ABI 1.6, changed()): "EXP" -> the
 *              uint64 change sequence of the last write transaction that
 *              changed the experiment (added to its counters, statistics or
 *              buckets, or removed them); "changes_by_seq": SEQ (8 bytes
 *              big-endian) "EXP" -> empty, the same entries ordered by
 *              sequence, so that changed() is one range scan from the
 *              sequence it saw last. Each experiment has one entry in each
 *              (a newer change replaces it): the log is as large as the set
 *              of experiments, never longer. meta "change_seq" holds the
 *              last sequence and meta "tracked_txns" the number of write
 *              transactions of writers that keep the log: every write
 *              transaction of this plugin adds 1 (so its commit always
 *              advances LMDB's transaction id by exactly 1). When the
 *              transaction ids advanced by more than tracked_txns since the
 *              last changed() call, a writer that keeps no log (an older
 *              plugin) wrote meanwhile, and changed() asks for everything.
 *              Both are created on the first open by this version.
 *
 * A claim is one write transaction: mdb_put with MDB_NOOVERWRITE on the id
 * (MDB_KEYEXIST: already claimed; LMDB's single writer makes the first
 * commit win across threads and processes), the reward's deltas added in the
 * same transaction, and a sweep of the next CLAIM_SWEEP claims after where
 * the last sweep stopped, deleting expired ones. Ids are random, so the
 * sweep walks the whole table in about n / CLAIM_SWEEP claims and the table
 * holds roughly the claims of the last cookie max_age.
 * Ids never contain NUL (the engine allows A-Z a-z 0-9 _ -), so the first NUL
 * of a key splits it, and "EXP\0" is a prefix that sorts all of an
 * experiment's records together (reset and replace walk it with a cursor).
 *
 * Every apply is one write transaction doing read-modify-write on each
 * record, so any number of processes can add to the same records without
 * losing an increment: LMDB serialises writers with a process-shared robust
 * mutex, which a killed writer releases. The environment is opened without
 * MDB_NOSYNC / MDB_NOMETASYNC, so a committed transaction is on disk when
 * mdb_txn_commit returns; the core only calls apply when it wants that.
 *
 * The map grows by itself: on MDB_MAP_FULL the transaction is aborted, the
 * map doubled with mdb_env_set_mapsize (allowed because the core never enters
 * a plugin from two threads at once and this plugin holds no transaction
 * between calls) and the transaction retried. When another process grew the
 * map past ours, mdb_txn_begin says MDB_MAP_RESIZED and we adopt its size.
 *
 * LMDB forbids opening one environment twice in one process (closing the
 * second would drop the first one's file locks), so a second open of the same
 * directory in the same process is refused with MAB_EBUSY; other processes
 * are welcome. A child forked while the store is open must open its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "mab/storage.h"

#define LMDB_STORE_FORMAT "mab-lmdb-storage"
#define LMDB_STORE_VERSION 1u
#define LMDB_RECORD_VERSION 1u
#define LMDB_DEFAULT_MAP_SIZE (64 * 1024 * 1024)
#define LMDB_MIN_MAP_SIZE (32 * 1024)
#define LMDB_MAX_MAP_SIZE (INT64_C(1) << 40) /* 1 TiB: far past any sane counter table */
#define LMDB_DEFAULT_READERS 126
#define LMDB_REFRESH_MS 100
#define ID_MAX 255 /* longest id this plugin stores; keys are at most 511 bytes */
#define CLAIM_SWEEP 8 /* claims examined for expiry per claim */
#define BUCKET_SWEEP 256 /* old buckets deleted at most per apply_buckets */

/* One record's value. Fixed size; `version` lets a later format coexist. */
typedef struct stored_record {
    uint32_t version; /* LMDB_RECORD_VERSION */
    uint32_t reserved; /* 0 */
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} stored_record;

/* The header of a statistics value, followed by n_values doubles. */
typedef struct stored_stats {
    uint32_t version;  /* LMDB_RECORD_VERSION */
    uint32_t n_values;
} stored_stats;

#define LMDB_STATS_MAX 4096 /* MAB_POLICY_STATS_MAX of policy.h */

typedef struct lmdb_store {
    char path[PATH_MAX];
    MDB_env *env;
    MDB_dbi meta_dbi;
    MDB_dbi records_dbi;
    MDB_dbi stats_dbi;
    MDB_dbi claims_dbi;
    MDB_dbi buckets_dbi;       /* time buckets (storage ABI 1.5) */
    MDB_dbi bucket_starts_dbi; /* the same, keyed by start first: retention's order */
    MDB_dbi changes_dbi;       /* the change log (storage ABI 1.6), by experiment */
    MDB_dbi changes_seq_dbi;   /* the same, by sequence */
    uint64_t txn_seq;          /* the open write transaction's change sequence, 0: none yet */
    char txn_last[ID_MAX + 1]; /* the experiment it marked last (a batch is grouped) */
    int have_position;         /* changed() was called: the fields below are set */
    uint64_t seen_seq, seen_tracked, seen_txnid; /* what changed() saw last */
    uint64_t loads;            /* load() calls (tests/storage count them) */
    uint8_t sweep_from[MAB_ASSIGNMENT_ID_BYTES]; /* where the next sweep starts */
    int unsynced; /* a claim was committed without fdatasync (MAB_CLAIM_DEFER_SYNC) */
    dev_t dev; /* of the directory: identifies the store in this process */
    ino_t ino;
    struct lmdb_store *next_open; /* in open_stores */
} lmdb_store;

/* Stores open in this process, so a second open of one directory is refused. */
static pthread_mutex_t open_stores_mu = PTHREAD_MUTEX_INITIALIZER;
static lmdb_store *open_stores;
static pid_t open_stores_pid;

/* ---- errors ----------------------------------------------------------- */

/* A hint for the LMDB or system errors a user can act on, or "". */
static const char *error_hint(int rc)
{
    switch (rc) {
    case EACCES:
    case EROFS:
    case EPERM:
        return " (the directory and its data.mdb and lock.mdb must be writable)";
    case ENOSPC:
        return " (the disk is full)";
    case ENOTDIR:
        return " (path must name a directory)";
    case MDB_READERS_FULL:
        return " (raise max_readers: more processes and threads read than it allows)";
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
        return " (not an LMDB environment of this LMDB version)";
    case MDB_MAP_FULL:
        return " (map_size could not grow further)";
    default:
        return "";
    }
}

static int lmdb_fail(const lmdb_store *st, mab_error *err, int code, const char *what, int rc)
{
    return mab_error_set(err, code, "%s: %s: %s%s", st->path, what, mdb_strerror(rc),
                         error_hint(rc));
}

/* Whether the running write transaction wrote anything (mdb_put, mdb_del):
   only then does its commit advance LMDB's transaction id, and only then does
   it count itself in meta "tracked_txns" (see the change log above). Set by
   every write of this file through the wrappers below; a write missed here
   would only make changed() ask for everything. Per thread: a transaction
   runs inside one call. */
static _Thread_local int txn_wrote;

static int put(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags)
{
    txn_wrote = 1;
    return mdb_put(txn, dbi, k, v, flags);
}

static int del(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    txn_wrote = 1;
    return mdb_del(txn, dbi, k, v);
}

static int cursor_del(MDB_cursor *cur, unsigned flags)
{
    txn_wrote = 1;
    return mdb_cursor_del(cur, flags);
}

/* ---- keys and values -------------------------------------------------- */

typedef struct record_key {
    char bytes[2 * ID_MAX + 2];
    size_t len;
} record_key;

/* "EXP\0ARM"; arm NULL gives the prefix "EXP\0". -1 when an id is too long. */
static int key_make(record_key *k, const char *experiment, const char *arm)
{
    size_t exp_len = strlen(experiment), arm_len = arm ? strlen(arm) : 0;
    if (exp_len == 0 || exp_len > ID_MAX || arm_len > ID_MAX || (arm && arm_len == 0))
        return -1;
    memcpy(k->bytes, experiment, exp_len);
    k->bytes[exp_len] = '\0';
    if (arm)
        memcpy(k->bytes + exp_len + 1, arm, arm_len);
    k->len = exp_len + 1 + arm_len;
    return 0;
}

static int key_has_prefix(const MDB_val *key, const record_key *prefix)
{
    return key->mv_size >= prefix->len && memcmp(key->mv_data, prefix->bytes, prefix->len) == 0;
}

/* Read a value into *out; -1 when it is not a record of a version we know,
   -2 when its sums are not finite (no apply ever writes that: it was damaged). */
static int record_decode(const MDB_val *value, stored_record *out)
{
    if (value->mv_size != sizeof *out)
        return -1;
    memcpy(out, value->mv_data, sizeof *out); /* LMDB values need not be aligned */
    if (out->version != LMDB_RECORD_VERSION)
        return -1;
    return isfinite(out->reward_sum) && isfinite(out->reward_sum_sq) ? 0 : -2;
}

/* Describe a record that does not decode, naming its key. */
static int record_corrupt(const lmdb_store *st, const MDB_val *key, const MDB_val *value,
                          mab_error *err)
{
    const char *k = key->mv_data;
    size_t exp_len = strnlen(k, key->mv_size);
    const char *arm = exp_len < key->mv_size ? k + exp_len + 1 : "";
    int arm_len = exp_len < key->mv_size ? (int)(key->mv_size - exp_len - 1) : 0;
    stored_record r;
    if (record_decode(value, &r) == -2)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: record %.*s.%.*s holds a reward sum that is not finite "
                             "(sum %g, sum of squares %g); refusing to read a damaged store",
                             st->path, (int)exp_len, k, arm_len, arm, r.reward_sum,
                             r.reward_sum_sq);
    uint32_t version = 0;
    if (value->mv_size >= sizeof version)
        memcpy(&version, value->mv_data, sizeof version);
    return mab_error_set(err, MAB_ECORRUPT,
                         "%s: record %.*s.%.*s is unreadable (%zu bytes, record version %" PRIu32
                         "; this lmdb plugin reads %zu-byte records of version %u)",
                         st->path, (int)exp_len, k, arm_len, arm, value->mv_size, version,
                         sizeof(stored_record), LMDB_RECORD_VERSION);
}

/* ---- transactions ----------------------------------------------------- */

/* Begin a transaction, adopting a map size another process grew. */
static int txn_begin(lmdb_store *st, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(st->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(st->env, 0);
        if (rc == MDB_SUCCESS)
            rc = mdb_txn_begin(st->env, NULL, flags, txn);
    }
    return rc;
}

/* Double the map. No transaction of this process may be open. */
static int map_grow(lmdb_store *st)
{
    MDB_envinfo info;
    int rc = mdb_env_info(st->env, &info);
    if (rc != MDB_SUCCESS)
        return rc;
    if ((int64_t)info.me_mapsize >= LMDB_MAX_MAP_SIZE)
        return MDB_MAP_FULL;
    return mdb_env_set_mapsize(st->env, info.me_mapsize * 2);
}

/*
 * The body of one write transaction: returns an LMDB or errno code (then the
 * transaction is aborted), or, for errors of its own, MDB_SUCCESS with
 * *status set to a MAB_E* code and err filled.
 */
typedef int (*write_body)(lmdb_store *st, MDB_txn *txn, const void *arg, int *status,
                          mab_error *err);

/* LMDB reports a short write of its pages (the disk filled up during the
   commit) as EIO; say what happened when the file system is full. */
static int disk_full(const lmdb_store *st)
{
    struct statvfs sv;
    return statvfs(st->path, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < 65536;
}

/* ---- the change log (storage ABI 1.6) ----------------------------------- */

static int meta_u64(lmdb_store *st, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, st->meta_dbi, &k, &v);
    *out = 0;
    if (rc == MDB_SUCCESS && v.mv_size == sizeof *out)
        memcpy(out, v.mv_data, sizeof *out);
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

static int meta_put_u64(lmdb_store *st, MDB_txn *txn, const char *name, uint64_t value)
{
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof value, &value};
    return put(txn, st->meta_dbi, &k, &v, 0);
}

static void seq_key(uint64_t seq, const char *experiment, size_t len, unsigned char *out)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(seq >> (56 - 8 * i));
    memcpy(out + 8, experiment, len);
}

/* Record in the open write transaction that `experiment` changed. */
static int mark_changed(lmdb_store *st, MDB_txn *txn, const char *experiment)
{
    size_t len = strlen(experiment);
    if (!st->changes_seq_dbi || len == 0 || len > ID_MAX)
        return MDB_SUCCESS; /* read-only check state, or an id no record can have */
    if (strcmp(st->txn_last, experiment) == 0)
        return MDB_SUCCESS;
    int rc = MDB_SUCCESS;
    if (st->txn_seq == 0) {
        uint64_t last;
        if ((rc = meta_u64(st, txn, "change_seq", &last)) != MDB_SUCCESS)
            return rc;
        st->txn_seq = last + 1;
    }
    MDB_val k = {len, (void *)experiment}, v;
    uint64_t old = 0;
    rc = mdb_get(txn, st->changes_dbi, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == sizeof old)
        memcpy(&old, v.mv_data, sizeof old);
    else if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    if (old != st->txn_seq) {
        unsigned char key[8 + ID_MAX];
        MDB_val sk = {8 + len, key}, empty = {0, NULL};
        if (rc == MDB_SUCCESS) {
            seq_key(old, experiment, len, key);
            rc = del(txn, st->changes_seq_dbi, &sk, NULL);
            if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                return rc;
        }
        seq_key(st->txn_seq, experiment, len, key);
        v = (MDB_val){sizeof st->txn_seq, &st->txn_seq};
        if ((rc = put(txn, st->changes_seq_dbi, &sk, &empty, 0)) != MDB_SUCCESS ||
            (rc = put(txn, st->changes_dbi, &k, &v, 0)) != MDB_SUCCESS)
            return rc;
    }
    memcpy(st->txn_last, experiment, len + 1);
    return MDB_SUCCESS;
}

/* Before each commit of this plugin: count the transaction as one that keeps
   the log, and store its sequence when it changed anything. */
static int changes_commit(lmdb_store *st, MDB_txn *txn)
{
    if (!txn_wrote)
        return MDB_SUCCESS; /* commits nothing: the transaction id stays */
    uint64_t tracked;
    int rc = meta_u64(st, txn, "tracked_txns", &tracked);
    if (rc == MDB_SUCCESS)
        rc = meta_put_u64(st, txn, "tracked_txns", tracked + 1);
    if (rc == MDB_SUCCESS && st->txn_seq)
        rc = meta_put_u64(st, txn, "change_seq", st->txn_seq);
    return rc;
}

/* Run body in a write transaction and commit it, growing the map as needed. */
static int write_txn(lmdb_store *st, const char *what, write_body body, const void *arg,
                     mab_error *err)
{
    for (;;) {
        MDB_txn *txn;
        int rc = txn_begin(st, 0, &txn);
        if (rc != MDB_SUCCESS)
            return lmdb_fail(st, err, MAB_ESTORAGE, what, rc);
        int status = MAB_OK;
        st->txn_seq = 0;
        st->txn_last[0] = '\0';
        txn_wrote = 0;
        rc = body(st, txn, arg, &status, err);
        if (rc == MDB_SUCCESS && status == MAB_OK && st->changes_seq_dbi)
            rc = changes_commit(st, txn);
        if (rc != MDB_SUCCESS || status != MAB_OK) {
            mdb_txn_abort(txn);
        } else {
            rc = mdb_txn_commit(txn); /* frees txn, committed or not */
        }
        if (rc == MDB_MAP_FULL && map_grow(st) == MDB_SUCCESS)
            continue;
        if (rc == EIO && disk_full(st))
            rc = ENOSPC;
        if (rc != MDB_SUCCESS)
            return lmdb_fail(st, err, MAB_ESTORAGE, what, rc);
        return status;
    }
}

/* ---- opening ---------------------------------------------------------- */

/* mkdir -p; -1 with errno on failure. */
static int make_directories(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        buf[i] = saved;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* The two bucket databases, created on the first open by a plugin of ABI
   1.5 (a store of an older one gains them and reads as before). */
static int open_bucket_dbis(lmdb_store *st, MDB_txn *txn)
{
    int rc = mdb_dbi_open(txn, "buckets", MDB_CREATE, &st->buckets_dbi);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "bucket_starts", MDB_CREATE, &st->bucket_starts_dbi);
    /* The change log (storage ABI 1.6) comes with this version too. */
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "changes", MDB_CREATE, &st->changes_dbi);
    return rc == MDB_SUCCESS ? mdb_dbi_open(txn, "changes_by_seq", MDB_CREATE,
                                            &st->changes_seq_dbi)
                             : rc;
}

/* Check the format and version, or write them into a new store. */
static int open_body(lmdb_store *st, MDB_txn *txn, const void *arg, int *status,
                     mab_error *err)
{
    (void)arg;
    MDB_dbi main_dbi;
    int rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc != MDB_SUCCESS)
        return rc;
    rc = mdb_dbi_open(txn, "meta", 0, &st->meta_dbi);
    if (rc == MDB_NOTFOUND) {
        /* A new store: the environment must be empty, not someone else's. */
        MDB_stat stat;
        if ((rc = mdb_stat(txn, main_dbi, &stat)) != MDB_SUCCESS)
            return rc;
        if (stat.ms_entries != 0) {
            *status = mab_error_set(err, MAB_ECORRUPT,
                                    "%s: an LMDB environment that is not a mab store (it has "
                                    "no \"meta\" database); refusing to change it",
                                    st->path);
            return MDB_SUCCESS;
        }
        uint32_t version = LMDB_STORE_VERSION;
        MDB_val k = {6, "format"}, v = {sizeof LMDB_STORE_FORMAT - 1, LMDB_STORE_FORMAT};
        MDB_val vk = {7, "version"}, vv = {sizeof version, &version};
        if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta_dbi)) != MDB_SUCCESS ||
            (rc = put(txn, st->meta_dbi, &k, &v, 0)) != MDB_SUCCESS ||
            (rc = put(txn, st->meta_dbi, &vk, &vv, 0)) != MDB_SUCCESS)
            return rc;
        if ((rc = mdb_dbi_open(txn, "records", MDB_CREATE, &st->records_dbi)) != MDB_SUCCESS)
            return rc;
        if ((rc = mdb_dbi_open(txn, "stats", MDB_CREATE, &st->stats_dbi)) != MDB_SUCCESS)
            return rc;
        return open_bucket_dbis(st, txn);
    }
    if (rc == MDB_INCOMPATIBLE) {
        *status = mab_error_set(err, MAB_ECORRUPT,
                                "%s: \"meta\" is not a database; not a mab lmdb store", st->path);
        return MDB_SUCCESS;
    }
    if (rc != MDB_SUCCESS)
        return rc;

    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, st->meta_dbi, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    if (rc == MDB_NOTFOUND || v.mv_size != sizeof LMDB_STORE_FORMAT - 1 ||
        memcmp(v.mv_data, LMDB_STORE_FORMAT, v.mv_size) != 0) {
        *status = mab_error_set(err, MAB_ECORRUPT,
                                "%s: meta format is not \"" LMDB_STORE_FORMAT
                                "\"; not a mab lmdb store",
                                st->path);
        return MDB_SUCCESS;
    }
    MDB_val vk = {7, "version"};
    uint32_t version = 0;
    rc = mdb_get(txn, st->meta_dbi, &vk, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return rc;
    if (rc == MDB_NOTFOUND || v.mv_size != sizeof version) {
        *status = mab_error_set(err, MAB_ECORRUPT, "%s: meta version is missing or unreadable",
                                st->path);
        return MDB_SUCCESS;
    }
    memcpy(&version, v.mv_data, sizeof version);
    if (version != LMDB_STORE_VERSION) {
        *status = mab_error_set(err, MAB_ECORRUPT,
                                "%s: unsupported store version %" PRIu32
                                " (this lmdb plugin reads version %u)",
                                st->path, version, LMDB_STORE_VERSION);
        return MDB_SUCCESS;
    }
    if ((rc = mdb_dbi_open(txn, "records", MDB_CREATE, &st->records_dbi)) != MDB_SUCCESS)
        return rc;
    if ((rc = mdb_dbi_open(txn, "stats", MDB_CREATE, &st->stats_dbi)) != MDB_SUCCESS)
        return rc;
    return open_bucket_dbis(st, txn);
}

/*
 * LMDB maps data.mdb and trusts it: a page its meta page names but the file
 * no longer holds (a truncated copy, a full disk during a copy) is read
 * through the map and kills the process with SIGBUS. So the file is checked
 * against its meta pages before LMDB opens it. This is LMDB's on-disk meta
 * page (lmdb 0.9, data version 1, 64-bit pgno and txnid): a page header, then
 * MDB_meta, whose free-database record holds the page size in its pad.
 */
typedef struct disk_db {
    uint32_t pad; /* of the free database: the page size */
    uint16_t flags, depth;
    uint64_t branch_pages, leaf_pages, overflow_pages, entries, root;
} disk_db;

typedef struct disk_meta {
    uint64_t pgno;
    uint16_t pad, flags, lower, upper; /* page header */
    uint32_t magic, version;
    uint64_t address, mapsize;
    disk_db dbs[2]; /* free, main */
    uint64_t last_pg; /* the highest page in use */
    uint64_t txnid;
} disk_meta;

#define LMDB_META_MAGIC 0xBEEFC0DEu

_Static_assert(sizeof(disk_meta) == 152, "LMDB's meta page is 16 + 136 bytes");
_Static_assert(sizeof(size_t) == 8, "disk_meta mirrors LMDB's 64-bit layout");

/* Read the meta page at offset (0, then the page size); -1 when it is short or lacks the magic. */
static int read_meta(int fd, off_t offset, disk_meta *out)
{
    ssize_t got = pread(fd, out, sizeof *out, offset);
    return got == (ssize_t)sizeof *out && out->magic == LMDB_META_MAGIC ? 0 : -1;
}

/*
 * Check data.mdb of an existing store before LMDB maps it: MAB_ECORRUPT,
 * naming the file, when it is empty (a store that lost its data is not a
 * new store), not an LMDB file, or shorter than its newest meta page says.
 * *is_new is set when there is no data.mdb yet, *unfinished when the file
 * lacks its meta pages (as while another process creates it).
 */
static int check_data_file(const lmdb_store *st, int *is_new, int *unfinished, mab_error *err)
{
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/data.mdb", st->path);
    *is_new = 0;
    *unfinished = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        *is_new = 1;
        return MAB_OK;
    }
    if (fd < 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot open: %s%s", file, strerror(errno),
                             error_hint(errno));
    disk_meta meta[2];
    struct stat sb;
    int rc = MAB_OK;
    if (fstat(fd, &sb) != 0) {
        rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot stat: %s", file, strerror(errno));
    } else if (sb.st_size == 0) {
        *unfinished = 1;
        rc = mab_error_set(err, MAB_ECORRUPT,
                           "%s is empty (0 bytes): the store lost its data; refusing to "
                           "start a new one over it (move the directory away to start afresh)",
                           file);
    } else if (read_meta(fd, 0, &meta[0]) != 0) {
        *unfinished = 1;
        rc = mab_error_set(err, MAB_ECORRUPT,
                           "%s (%lld bytes) is not an LMDB file: its first meta page is "
                           "missing or unreadable",
                           file, (long long)sb.st_size);
    } else {
        uint32_t psize = meta[0].dbs[0].pad;
        if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0)
            rc = mab_error_set(err, MAB_ECORRUPT,
                               "%s is not an LMDB file: its meta page gives a page size of %u",
                               file, psize);
        else if (read_meta(fd, (off_t)psize, &meta[1]) != 0) {
            *unfinished = 1;
            rc = mab_error_set(err, MAB_ECORRUPT,
                               "%s is truncated or damaged: %lld bytes, and its second meta "
                               "page (at byte %u) is missing or unreadable",
                               file, (long long)sb.st_size, psize);
        } else {
            /* The newest meta page is the one LMDB will use. Writers write
               pages before the meta page naming them, so reading the metas
               before the size cannot see a page not yet written. */
            const disk_meta *m = meta[1].txnid > meta[0].txnid ? &meta[1] : &meta[0];
            if (fstat(fd, &sb) != 0)
                rc = mab_error_set(err, MAB_ESTORAGE, "%s: cannot stat: %s", file,
                                   strerror(errno));
            else if (m->last_pg >= (uint64_t)INT64_MAX / psize ||
                     (uint64_t)sb.st_size < (m->last_pg + 1) * psize)
                rc = mab_error_set(err, MAB_ECORRUPT,
                                   "%s is truncated: %lld bytes, but its meta page (transaction "
                                   "%llu) says the data runs to page %llu, %llu bytes; "
                                   "refusing to map it",
                                   file, (long long)sb.st_size, (unsigned long long)m->txnid,
                                   (unsigned long long)m->last_pg,
                                   (unsigned long long)((m->last_pg + 1) * psize));
        }
    }
    close(fd);
    return rc;
}

/*
 * LMDB sizes lock.mdb with ftruncate, which leaves a hole, and then writes
 * through a shared map of it: on a full disk the first write kills the
 * process with SIGBUS. Reserve the blocks first, so a full disk is an error.
 * The size covers LMDB's header and max_readers reader slots (64 bytes each
 * on this platform); LMDB keeps a lock file that is larger than it needs.
 */
static int reserve_lock_file(const lmdb_store *st, int64_t max_readers, mab_error *err)
{
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/lock.mdb", st->path);
    int64_t page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    int64_t size = (max_readers * 64 + 4096 + page - 1) / page * page;
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot open: %s%s", file, strerror(errno),
                             error_hint(errno));
#ifdef __linux__
    /* fallocate itself, not posix_fallocate: where the file system cannot
       reserve, glibc's emulation writes a zero into each block, which could
       race with another process writing that block through its map. */
    int rc = fallocate(fd, 0, 0, (off_t)size) == 0 ? 0 : errno;
#else
    int rc = posix_fallocate(fd, 0, (off_t)size);
#endif
    close(fd);
    if (rc == 0 || rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL)
        return MAB_OK; /* reserved, or a file system that cannot reserve */
    return mab_error_set(err, MAB_ESTORAGE, "%s: cannot reserve %lld bytes: %s%s", file,
                         (long long)size, strerror(rc), error_hint(rc));
}

/*
 * Whether another process holds a lock on byte 0 of lock.mdb: exclusively
 * (F_WRLCK) while LMDB creates the environment, and shared while it has the
 * store open. Asked with F_GETLK, which takes no lock: holding one here, even
 * for a moment, would make a concurrent first opener believe that someone
 * else had set up the lock file. This process holds no lock on that file at
 * the two points where it asks (the environment is not open), so closing
 * the descriptor drops nothing.
 */
static int lock_held_elsewhere(const lmdb_store *st, int exclusive_only)
{
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/lock.mdb", st->path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc = fcntl(fd, F_GETLK, &probe);
    close(fd);
    if (rc != 0)
        return 0;
    return exclusive_only ? probe.l_type == F_WRLCK : probe.l_type != F_UNLCK;
}

/*
 * The creation marker: PATH/data.mdb.creating exists from before a new
 * store's data.mdb is created until an open of the store has succeeded. A
 * data.mdb without its meta pages beside the marker, with no process
 * holding the lock, is a creation that was killed part-way (a SIGKILL
 * between LMDB creating the file and writing its meta pages), which holds
 * no data and is started afresh; without the marker it is a store that
 * lost its data (MAB_ECORRUPT). Every successful open removes the marker,
 * so an old marker cannot excuse a later loss.
 */
static void marker_path(const lmdb_store *st, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/data.mdb.creating", st->path);
}

static int marker_create(const lmdb_store *st, mab_error *err)
{
    char file[PATH_MAX + 32];
    marker_path(st, file, sizeof file);
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot create: %s%s", file,
                             strerror(errno), error_hint(errno));
    close(fd);
    /* The marker must be on disk before data.mdb can be. */
    int dir = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return MAB_OK;
}

static int marker_exists(const lmdb_store *st)
{
    char file[PATH_MAX + 32];
    marker_path(st, file, sizeof file);
    return access(file, F_OK) == 0;
}

static void marker_remove(const lmdb_store *st)
{
    char file[PATH_MAX + 32];
    marker_path(st, file, sizeof file);
    unlink(file);
}

/* check_data_file, waiting (up to about 5 s) while another process is
   creating the store: its data.mdb has no meta pages until LMDB writes them.
   A creation killed part-way (see the creation marker) is started afresh. */
static int check_data_file_settled(const lmdb_store *st, int *is_new, mab_error *err)
{
    for (int tries = 0;; tries++) {
        int unfinished;
        int rc = check_data_file(st, is_new, &unfinished, err);
        if (rc != MAB_OK && unfinished && !lock_held_elsewhere(st, 0) && marker_exists(st)) {
            char file[PATH_MAX + 16];
            snprintf(file, sizeof file, "%s/data.mdb", st->path);
            if (unlink(file) != 0 && errno != ENOENT)
                return rc;
            *is_new = 1;
            return MAB_OK;
        }
        if (rc == MAB_OK || !unfinished || tries == 500 || !lock_held_elsewhere(st, 1))
            return rc;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

/* A new store whose creation failed part-way leaves a data.mdb without its
   meta pages; remove it so that the next open starts the store afresh
   instead of calling it corrupt. */
static void remove_unfinished_data_file(const lmdb_store *st)
{
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/data.mdb", st->path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    disk_meta meta;
    int finished = read_meta(fd, 0, &meta) == 0 && meta.dbs[0].pad >= 512 &&
                   meta.dbs[0].pad <= 65536 && read_meta(fd, (off_t)meta.dbs[0].pad, &meta) == 0;
    close(fd);
    if (!finished && !lock_held_elsewhere(st, 0))
        unlink(file);
}

/* Register st as open in this process; MAB_EBUSY when its directory already is. */
static int registry_add(lmdb_store *st, mab_error *err)
{
    pthread_mutex_lock(&open_stores_mu);
    if (open_stores_pid != getpid()) {
        /* Stores listed by the parent of a fork are not open in this child. */
        open_stores = NULL;
        open_stores_pid = getpid();
    }
    int rc = MAB_OK;
    for (const lmdb_store *o = open_stores; o; o = o->next_open)
        if (o->dev == st->dev && o->ino == st->ino)
            rc = mab_error_set(err, MAB_EBUSY,
                               "%s is already open in this process (as %s); LMDB allows one "
                               "open per process, so share one engine",
                               st->path, o->path);
    if (rc == MAB_OK) {
        st->next_open = open_stores;
        open_stores = st;
    }
    pthread_mutex_unlock(&open_stores_mu);
    return rc;
}

static void registry_remove(lmdb_store *st)
{
    pthread_mutex_lock(&open_stores_mu);
    if (open_stores_pid == getpid())
        for (lmdb_store **p = &open_stores; *p; p = &(*p)->next_open)
            if (*p == st) {
                *p = st->next_open;
                break;
            }
    pthread_mutex_unlock(&open_stores_mu);
}

static void store_free(lmdb_store *st, int registered)
{
    if (registered)
        registry_remove(st);
    if (st->env)
        mdb_env_close(st->env);
    free(st);
}

static int read_params(mab_params *params, lmdb_store *st, int64_t *map_size,
                       int64_t *max_readers, mab_error *err)
{
    int rc = mab_params_path(params, "path", NULL, st->path, sizeof st->path);
    if (rc == MAB_OK)
        rc = mab_params_int(params, "map_size", LMDB_DEFAULT_MAP_SIZE, LMDB_MIN_MAP_SIZE,
                            LMDB_MAX_MAP_SIZE, map_size);
    if (rc == MAB_OK)
        rc = mab_params_int(params, "max_readers", LMDB_DEFAULT_READERS, 1, 1 << 20,
                            max_readers);
    if (rc != MAB_OK)
        return mab_error_set(err, rc, "%s", mab_params_last_error(params));
    /* LMDB wants a multiple of the page size. */
    int64_t page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    *map_size = (*map_size + page - 1) / page * page;
    return MAB_OK;
}

static int lmdb_open(mab_params *params, void **state, mab_error *err)
{
    lmdb_store *st = calloc(1, sizeof *st);
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "lmdb: out of memory");
    int64_t map_size, max_readers;
    int rc = read_params(params, st, &map_size, &max_readers, err);
    if (rc != MAB_OK) {
        store_free(st, 0);
        return rc;
    }
    struct stat sb;
    if (make_directories(st->path) != 0 || stat(st->path, &sb) != 0) {
        int saved = errno;
        rc = lmdb_fail(st, err, MAB_ESTORAGE, "cannot create the store's directory", saved);
        store_free(st, 0);
        return rc;
    }
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    if ((rc = registry_add(st, err)) != MAB_OK) {
        store_free(st, 0);
        return rc;
    }

    int is_new = 0;
    if ((rc = check_data_file_settled(st, &is_new, err)) != MAB_OK ||
        (is_new && (rc = marker_create(st, err)) != MAB_OK) ||
        (rc = reserve_lock_file(st, max_readers, err)) != MAB_OK) {
        store_free(st, 1);
        return rc;
    }

    int mrc = mdb_env_create(&st->env);
    const char *step = "cannot create the LMDB environment";
    if (mrc == MDB_SUCCESS) {
        step = "cannot set map_size";
        mrc = mdb_env_set_mapsize(st->env, (size_t)map_size);
    }
    if (mrc == MDB_SUCCESS) {
        step = "cannot set max_readers";
        mrc = mdb_env_set_maxreaders(st->env, (unsigned)max_readers);
    }
    if (mrc == MDB_SUCCESS)
        mrc = mdb_env_set_maxdbs(st->env, 8); /* meta, records, stats, claims, buckets,
                                                 bucket_starts, changes, changes_by_seq */
    if (mrc == MDB_SUCCESS) {
        /* MDB_NOTLS: the core calls from its writer thread and from callers'
           threads; read transactions must not be tied to one thread. */
        step = "cannot open the LMDB environment";
        mrc = mdb_env_open(st->env, st->path, MDB_NOTLS, 0644);
    }
    if (mrc == MDB_SUCCESS) {
        /* Free reader slots of processes that died inside a read transaction. */
        int dead = 0;
        step = "cannot check for stale readers";
        mrc = mdb_reader_check(st->env, &dead);
    }
    if (mrc != MDB_SUCCESS) {
        /* A data.mdb that is not an LMDB file (or not of this LMDB version)
           is a store we cannot read: corrupt, not a storage failure. */
        int code = mrc == ENOMEM                                        ? MAB_ENOMEM
                   : mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH ? MAB_ECORRUPT
                                                                        : MAB_ESTORAGE;
        rc = lmdb_fail(st, err, code, step, mrc);
        mdb_env_close(st->env);
        st->env = NULL;
        if (is_new)
            remove_unfinished_data_file(st);
        store_free(st, 1);
        return rc;
    }
    rc = write_txn(st, "cannot open the store", open_body, NULL, err);
    if (rc != MAB_OK) {
        store_free(st, 1);
        return rc;
    }
    /* The store is whole: no creation of it is unfinished any more. */
    if (marker_exists(st))
        marker_remove(st);
    *state = st;
    return MAB_OK;
}

/* The nearest existing ancestor of path must be a directory we may write
   in (open() creates the missing ones). */
static int creatable(const lmdb_store *st, mab_error *err)
{
    char dir[sizeof st->path];
    snprintf(dir, sizeof dir, "%s", st->path);
    struct stat sb;
    while (stat(dir, &sb) != 0) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        if (strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0)
            break;
    }
    if (access(dir, W_OK | X_OK) != 0)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot create the store: %s is not "
                             "writable: %s", st->path, dir, strerror(errno));
    return MAB_OK;
}

/* ABI 1.2 check: the parameters as open() reads them, then an existing
   environment opened MDB_RDONLY | MDB_NOLOCK, which reads and validates
   its meta pages without creating or locking lock.mdb, so it works while
   servers have the store open. A missing store only needs a directory
   open() could create it in. */
static int lmdb_check(mab_params *params, mab_error *err)
{
    lmdb_store *st = calloc(1, sizeof *st);
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "lmdb: out of memory");
    int64_t map_size, max_readers;
    int rc = read_params(params, st, &map_size, &max_readers, err);
    char data[sizeof st->path + 16];
    struct stat sb;
    if (rc == MAB_OK && stat(st->path, &sb) != 0)
        rc = errno == ENOENT ? creatable(st, err)
                             : lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", errno);
    else if (rc == MAB_OK && !S_ISDIR(sb.st_mode))
        rc = mab_error_set(err, MAB_ESTORAGE, "%s: not a directory (an LMDB store is a "
                           "directory holding data.mdb)", st->path);
    else if (rc == MAB_OK && (snprintf(data, sizeof data, "%s/data.mdb", st->path),
                              access(data, F_OK) == 0)) {
        int mrc = mdb_env_create(&st->env);
        if (mrc == MDB_SUCCESS)
            mrc = mdb_env_set_maxdbs(st->env, 2);
        if (mrc == MDB_SUCCESS)
            mrc = mdb_env_open(st->env, st->path, MDB_RDONLY | MDB_NOLOCK, 0644);
        if (mrc != MDB_SUCCESS)
            rc = lmdb_fail(st, err,
                           mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH ? MAB_ECORRUPT
                                                                             : MAB_ESTORAGE,
                           "cannot read the LMDB environment", mrc);
    }
    store_free(st, 0);
    return rc;
}

/* ---- reading ---------------------------------------------------------- */

static int lmdb_load(void *state, const char *experiment, const char *const *arm_ids,
                     size_t n_arms, mab_totals *out, mab_error *err)
{
    lmdb_store *st = state;
    if (!experiment || (n_arms && (!arm_ids || !out)))
        return mab_error_set(err, MAB_EINVAL, "%s: load: NULL argument", st->path);
    st->loads++;
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    int status = MAB_OK;
    for (size_t i = 0; i < n_arms && status == MAB_OK; i++) {
        memset(&out[i], 0, sizeof out[i]);
        record_key key;
        if (!arm_ids[i] || key_make(&key, experiment, arm_ids[i]) != 0)
            continue; /* cannot have been stored */
        MDB_val k = {key.len, key.bytes}, v;
        stored_record r;
        rc = mdb_get(txn, st->records_dbi, &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != MDB_SUCCESS)
            status = lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
        else if (record_decode(&v, &r) != 0)
            status = record_corrupt(st, &k, &v, err);
        else
            out[i] = (mab_totals){r.pulls, r.rewards, r.reward_sum, r.reward_sum_sq};
    }
    mdb_txn_abort(txn);
    return status;
}

/* ---- writing ---------------------------------------------------------- */

static int check_deltas(const lmdb_store *st, const mab_delta *deltas, size_t n,
                        mab_error *err)
{
    if (n && !deltas)
        return mab_error_set(err, MAB_EINVAL, "%s: apply: NULL batch", st->path);
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        record_key key;
        if (!d->experiment || !d->arm)
            return mab_error_set(err, MAB_EINVAL, "%s: apply: delta %zu has no experiment or arm",
                                 st->path, i);
        if (key_make(&key, d->experiment, d->arm) != 0)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply: %s.%s: ids must be 1 to %d bytes", st->path,
                                 d->experiment, d->arm, ID_MAX);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq))
            return mab_error_set(err, MAB_EINVAL, "%s: apply: %s.%s: reward is not finite",
                                 st->path, d->experiment, d->arm);
    }
    return MAB_OK;
}

/* Add every delta to its record, inside txn. */
static int add_deltas(lmdb_store *st, MDB_txn *txn, const mab_delta *deltas, size_t n,
                      int *status, mab_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        record_key key;
        key.len = 0; /* key_make sets it: checked by check_deltas */
        key_make(&key, d->experiment, d->arm); /* checked by check_deltas */
        MDB_val k = {key.len, key.bytes}, v;
        stored_record r = {LMDB_RECORD_VERSION, 0, 0, 0, 0.0, 0.0};
        int rc = mdb_get(txn, st->records_dbi, &k, &v);
        if (rc == MDB_SUCCESS && record_decode(&v, &r) != 0) {
            *status = record_corrupt(st, &k, &v, err);
            return MDB_SUCCESS;
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return rc;
        int too_big = d->add.pulls > UINT64_MAX - r.pulls ||
                      d->add.rewards > UINT64_MAX - r.rewards;
        r.pulls += d->add.pulls;
        r.rewards += d->add.rewards;
        r.reward_sum += d->add.reward_sum;
        r.reward_sum_sq += d->add.reward_sum_sq;
        if (too_big || !isfinite(r.reward_sum) || !isfinite(r.reward_sum_sq)) {
            *status = mab_error_set(err, MAB_ERANGE, "%s: %s.%s: counters would overflow",
                                    st->path, d->experiment, d->arm);
            return MDB_SUCCESS;
        }
        v.mv_size = sizeof r;
        v.mv_data = &r;
        if ((rc = put(txn, st->records_dbi, &k, &v, 0)) != MDB_SUCCESS ||
            (rc = mark_changed(st, txn, d->experiment)) != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/* Delete every record whose key starts with "EXP\0", inside txn: its
   counters and its policy statistics. */
static int delete_prefix(lmdb_store *st, MDB_txn *txn, MDB_dbi dbi, const char *experiment);

static int delete_experiment_buckets(lmdb_store *st, MDB_txn *txn, const char *experiment);

static int delete_experiment(lmdb_store *st, MDB_txn *txn, const char *experiment)
{
    int rc = mark_changed(st, txn, experiment);
    if (rc == MDB_SUCCESS)
        rc = delete_prefix(st, txn, st->records_dbi, experiment);
    if (rc == MDB_SUCCESS)
        rc = delete_prefix(st, txn, st->stats_dbi, experiment);
    return rc == MDB_SUCCESS ? delete_experiment_buckets(st, txn, experiment) : rc;
}

static int delete_prefix(lmdb_store *st, MDB_txn *txn, MDB_dbi dbi, const char *experiment)
{
    (void)st;
    record_key prefix;
    if (key_make(&prefix, experiment, NULL) != 0)
        return MDB_SUCCESS; /* too long to have been stored */
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != MDB_SUCCESS)
        return rc;
    for (;;) {
        /* Seek the prefix again after each delete rather than rely on where
           a delete leaves the cursor. */
        MDB_val k = {prefix.len, prefix.bytes}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != MDB_SUCCESS || !key_has_prefix(&k, &prefix))
            break;
        if ((rc = cursor_del(cur, 0)) != MDB_SUCCESS)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

/* ---- policy statistics (storage ABI 1.4) ----------------------------- */

typedef struct stats_key {
    char bytes[2 * ID_MAX + 3 + ID_MAX];
    size_t len;
} stats_key;

/* "EXP\0ARM\0LAYOUT" (ARM "" for the experiment's own); -1 when too long. */
static int stats_key_make(stats_key *k, const char *experiment, const char *arm,
                          const char *layout)
{
    size_t e = strlen(experiment), a = arm ? strlen(arm) : 0, l = strlen(layout);
    if (e == 0 || e > ID_MAX || a > ID_MAX || l == 0 || l > ID_MAX || (arm && a == 0))
        return -1;
    memcpy(k->bytes, experiment, e + 1);
    memcpy(k->bytes + e + 1, arm ? arm : "", a + 1);
    memcpy(k->bytes + e + a + 2, layout, l);
    k->len = e + a + 2 + l;
    return 0;
}

/* Split a stats key into its three strings (copied into buf); -1 when it
   is not EXP\0ARM\0LAYOUT. */
static int stats_key_split(const MDB_val *k, char *buf, size_t buf_len, const char **exp,
                           const char **arm, const char **layout)
{
    if (k->mv_size == 0 || k->mv_size >= buf_len)
        return -1;
    memcpy(buf, k->mv_data, k->mv_size);
    buf[k->mv_size] = '\0';
    size_t e = strlen(buf);
    if (e == 0 || e + 1 >= k->mv_size)
        return -1;
    size_t a = strlen(buf + e + 1);
    if (e + a + 2 >= k->mv_size)
        return -1;
    *exp = buf;
    *arm = a ? buf + e + 1 : NULL;
    *layout = buf + e + a + 2;
    return 0;
}

/* The doubles of a stats value; -1 when it is not a stats value of a
   version we know or holds a value that is not finite. */
static int stats_decode(const MDB_val *v, stored_stats *head, const unsigned char **values)
{
    if (v->mv_size < sizeof *head)
        return -1;
    memcpy(head, v->mv_data, sizeof *head);
    if (head->version != LMDB_RECORD_VERSION || head->n_values > LMDB_STATS_MAX ||
        v->mv_size != sizeof *head + head->n_values * sizeof(double))
        return -1;
    *values = (const unsigned char *)v->mv_data + sizeof *head;
    for (uint32_t i = 0; i < head->n_values; i++) {
        double d;
        memcpy(&d, *values + i * sizeof d, sizeof d);
        if (!isfinite(d))
            return -1;
    }
    return 0;
}

static int stats_corrupt(const lmdb_store *st, const char *experiment, const char *arm,
                         const char *layout, size_t size, mab_error *err)
{
    return mab_error_set(err, MAB_ECORRUPT,
                         "%s: policy statistics %s.%s (layout %s) are unreadable (%zu bytes, or "
                         "a value that is not finite); refusing to read a damaged store",
                         st->path, experiment, arm ? arm : "(experiment)", layout, size);
}

static int check_stats(const lmdb_store *st, const mab_stats_delta *stats, size_t n,
                       mab_error *err)
{
    if (n && !stats)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_stats: NULL batch", st->path);
    for (size_t i = 0; i < n; i++) {
        const mab_stats_delta *d = &stats[i];
        stats_key key;
        if (!d->experiment || !d->layout || (d->n_values && !d->values) ||
            d->n_values > LMDB_STATS_MAX)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: statistics %zu lack an experiment, a layout "
                                 "or values, or hold more than %d",
                                 st->path, i, LMDB_STATS_MAX);
        if (stats_key_make(&key, d->experiment, d->arm, d->layout) != 0)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: %s.%s (%s): ids and layout must be 1 to %d "
                                 "bytes",
                                 st->path, d->experiment, d->arm ? d->arm : "", d->layout, ID_MAX);
        for (size_t j = 0; j < d->n_values; j++)
            if (!isfinite(d->values[j]))
                return mab_error_set(err, MAB_EINVAL,
                                     "%s: apply_stats: %s.%s (%s): value %zu is not finite",
                                     st->path, d->experiment, d->arm ? d->arm : "(experiment)",
                                     d->layout, j);
    }
    return MAB_OK;
}

/* Add every statistics delta to its record, inside txn. */
static int add_stats(lmdb_store *st, MDB_txn *txn, const mab_stats_delta *stats, size_t n,
                     int *status, mab_error *err)
{
    double *sum = NULL;
    int rc = MDB_SUCCESS;
    for (size_t i = 0; i < n && rc == MDB_SUCCESS && *status == MAB_OK; i++) {
        const mab_stats_delta *d = &stats[i];
        stats_key key;
        stats_key_make(&key, d->experiment, d->arm, d->layout); /* checked by check_stats */
        MDB_val k = {key.len, key.bytes}, v;
        double *grown = realloc(sum, (d->n_values ? d->n_values : 1) * sizeof *sum);
        if (!grown) {
            *status = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        sum = grown;
        memcpy(sum, d->values, d->n_values * sizeof *sum);
        rc = mdb_get(txn, st->stats_dbi, &k, &v);
        if (rc == MDB_SUCCESS) {
            stored_stats head;
            const unsigned char *old;
            if (stats_decode(&v, &head, &old) != 0 || head.n_values != d->n_values) {
                *status = stats_corrupt(st, d->experiment, d->arm, d->layout, v.mv_size, err);
                break;
            }
            for (size_t j = 0; j < d->n_values; j++) {
                double o;
                memcpy(&o, old + j * sizeof o, sizeof o);
                sum[j] += o;
                if (!isfinite(sum[j])) {
                    *status = mab_error_set(err, MAB_ERANGE,
                                            "%s: %s.%s (%s): statistic %zu would overflow",
                                            st->path, d->experiment,
                                            d->arm ? d->arm : "(experiment)", d->layout, j);
                    break;
                }
            }
            if (*status != MAB_OK)
                break;
        } else if (rc != MDB_NOTFOUND) {
            break;
        }
        /* MDB_RESERVE: LMDB gives the space, we fill it (no staging copy). */
        v.mv_size = sizeof(stored_stats) + d->n_values * sizeof(double);
        v.mv_data = NULL;
        if ((rc = put(txn, st->stats_dbi, &k, &v, MDB_RESERVE)) != MDB_SUCCESS)
            break;
        stored_stats head = {LMDB_RECORD_VERSION, (uint32_t)d->n_values};
        memcpy(v.mv_data, &head, sizeof head);
        memcpy((unsigned char *)v.mv_data + sizeof head, sum, d->n_values * sizeof *sum);
        rc = mark_changed(st, txn, d->experiment);
    }
    free(sum);
    return rc;
}

/* One record's n doubles into out (zeros when missing or of another size). */
static int load_one_stats(lmdb_store *st, MDB_txn *txn, const char *experiment, const char *arm,
                          const char *layout, size_t n, double *out, mab_error *err)
{
    for (size_t j = 0; j < n; j++)
        out[j] = 0.0;
    stats_key key;
    if (n == 0 || stats_key_make(&key, experiment, arm, layout) != 0)
        return MAB_OK;
    MDB_val k = {key.len, key.bytes}, v;
    int rc = mdb_get(txn, st->stats_dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return MAB_OK;
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    stored_stats head;
    const unsigned char *values;
    /* The layout tag fixes the count: any other size is damage. */
    if (stats_decode(&v, &head, &values) != 0 || head.n_values != n)
        return stats_corrupt(st, experiment, arm, layout, v.mv_size, err);
    memcpy(out, values, n * sizeof *out);
    return MAB_OK;
}

static int lmdb_load_stats(void *state, const char *experiment, const char *layout,
                           const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                           double *arm_out, size_t n_experiment_stats, double *experiment_out,
                           mab_error *err)
{
    lmdb_store *st = state;
    if (!experiment || !layout || (n_arms && n_arm_stats && (!arm_ids || !arm_out)) ||
        (n_experiment_stats && !experiment_out))
        return mab_error_set(err, MAB_EINVAL, "%s: load_stats: NULL argument", st->path);
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    int status = MAB_OK;
    for (size_t i = 0; i < n_arms && n_arm_stats && status == MAB_OK; i++)
        status = load_one_stats(st, txn, experiment, arm_ids[i], layout, n_arm_stats,
                                arm_out + i * n_arm_stats, err);
    if (status == MAB_OK)
        status = load_one_stats(st, txn, experiment, NULL, layout, n_experiment_stats,
                                experiment_out, err);
    mdb_txn_abort(txn);
    return status;
}

static int lmdb_scan_stats(void *state,
                           int (*visit)(void *ctx, const char *experiment, const char *arm,
                                        const char *layout, const double *values,
                                        size_t n_values),
                           void *ctx, mab_error *err)
{
    lmdb_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_stats: NULL visitor", st->path);
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->stats_dbi, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    }
    int status = MAB_OK;
    double *values = NULL;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS && status == MAB_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char buf[sizeof(stats_key) + 1];
        const char *exp, *arm, *layout;
        stored_stats head;
        const unsigned char *raw;
        if (stats_key_split(&k, buf, sizeof buf, &exp, &arm, &layout) != 0) {
            status = mab_error_set(err, MAB_ECORRUPT,
                                   "%s: a statistics key of %zu bytes is not "
                                   "EXPERIMENT\\0ARM\\0LAYOUT",
                                   st->path, k.mv_size);
            break;
        }
        if (stats_decode(&v, &head, &raw) != 0) {
            status = stats_corrupt(st, exp, arm, layout, v.mv_size, err);
            break;
        }
        double *grown = realloc(values, (head.n_values ? head.n_values : 1) * sizeof *values);
        if (!grown) {
            status = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        values = grown;
        memcpy(values, raw, head.n_values * sizeof *values);
        status = visit(ctx, exp, arm, layout, values, head.n_values);
    }
    if (status == MAB_OK && rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        status = lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    free(values);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return status;
}

typedef struct batch_arg {
    const char *const *experiments; /* removed first (replace) */
    size_t n_experiments;
    const mab_delta *deltas;
    size_t n_deltas;
    const mab_stats_delta *stats;
    size_t n_stats;
} batch_arg;

static int batch_body(lmdb_store *st, MDB_txn *txn, const void *arg, int *status,
                      mab_error *err)
{
    const batch_arg *b = arg;
    for (size_t i = 0; i < b->n_experiments; i++) {
        int rc = delete_experiment(st, txn, b->experiments[i]);
        if (rc != MDB_SUCCESS)
            return rc;
    }
    int rc = add_deltas(st, txn, b->deltas, b->n_deltas, status, err);
    if (rc != MDB_SUCCESS || *status != MAB_OK)
        return rc;
    return add_stats(st, txn, b->stats, b->n_stats, status, err);
}

static int lmdb_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    lmdb_store *st = state;
    if (n_deltas == 0)
        return MAB_OK;
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc != MAB_OK)
        return rc;
    batch_arg b = {NULL, 0, deltas, n_deltas, NULL, 0};
    rc = write_txn(st, "cannot write", batch_body, &b, err);
    if (rc == MAB_OK)
        st->unsynced = 0; /* the synced commit flushed the deferred claims too */
    return rc;
}

static int lmdb_apply_stats(void *state, const mab_delta *deltas, size_t n_deltas,
                            const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    lmdb_store *st = state;
    if (n_deltas == 0 && n_stats == 0)
        return MAB_OK;
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc == MAB_OK)
        rc = check_stats(st, stats, n_stats, err);
    if (rc != MAB_OK)
        return rc;
    batch_arg b = {NULL, 0, deltas, n_deltas, stats, n_stats};
    rc = write_txn(st, "cannot write", batch_body, &b, err);
    if (rc == MAB_OK)
        st->unsynced = 0; /* the synced commit flushed the deferred claims too */
    return rc;
}

static int lmdb_reset(void *state, const char *experiment, mab_error *err)
{
    lmdb_store *st = state;
    if (!experiment)
        return mab_error_set(err, MAB_EINVAL, "%s: reset: NULL experiment", st->path);
    batch_arg b = {&experiment, 1, NULL, 0, NULL, 0};
    return write_txn(st, "cannot reset", batch_body, &b, err);
}

/* ---- export and import ------------------------------------------------ */

#if MAB_STORAGE_ABI_MINOR >= 1
static int lmdb_scan(void *state,
                     int (*visit)(void *ctx, const char *experiment, const char *arm,
                                  const mab_totals *totals),
                     void *ctx, mab_error *err)
{
    lmdb_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan: NULL visitor", st->path);
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->records_dbi, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    }
    int status = MAB_OK;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS && status == MAB_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char key[sizeof(record_key)];
        stored_record r;
        size_t exp_len = strnlen(k.mv_data, k.mv_size);
        if (k.mv_size >= sizeof key || exp_len == 0 || exp_len + 1 >= k.mv_size) {
            status = mab_error_set(err, MAB_ECORRUPT,
                                   "%s: a record key of %zu bytes is not EXPERIMENT\\0ARM",
                                   st->path, k.mv_size);
            break;
        }
        if (record_decode(&v, &r) != 0) {
            status = record_corrupt(st, &k, &v, err);
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        mab_totals t = {r.pulls, r.rewards, r.reward_sum, r.reward_sum_sq};
        status = visit(ctx, key, key + exp_len + 1, &t);
    }
    if (status == MAB_OK && rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        status = lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return status;
}

static int lmdb_replace(void *state, const char *const *experiments, size_t n_experiments,
                        const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    lmdb_store *st = state;
    if (n_experiments && !experiments)
        return mab_error_set(err, MAB_EINVAL, "%s: replace: NULL experiment list", st->path);
    for (size_t i = 0; i < n_experiments; i++)
        if (!experiments[i])
            return mab_error_set(err, MAB_EINVAL, "%s: replace: experiment %zu is NULL",
                                 st->path, i);
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc != MAB_OK)
        return rc;
    batch_arg b = {experiments, n_experiments, deltas, n_deltas, NULL, 0};
    return write_txn(st, "cannot replace", batch_body, &b, err);
}
#endif

/* ---- time buckets (storage ABI 1.5) ------------------------------------- */

/* A bucket start as 8 big-endian bytes with the sign bit flipped, so that
   LMDB's byte order is the numeric order. */
static void start_encode(int64_t start, unsigned char out[8])
{
    uint64_t u = (uint64_t)start ^ (UINT64_C(1) << 63);
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(u >> (56 - 8 * i));
}

static int64_t start_decode(const unsigned char in[8])
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | in[i];
    return (int64_t)(u ^ (UINT64_C(1) << 63));
}

typedef struct bucket_key {
    unsigned char bytes[2 * ID_MAX + 1 + 8];
    size_t len;
} bucket_key;

/* "buckets" key "EXP\0" START8 "ARM"; arm NULL: the prefix "EXP\0" START8
   (the first key of the experiment at or after start). -1 when too long. */
static int bucket_key_make(bucket_key *k, const char *experiment, int64_t start, const char *arm)
{
    size_t e = strlen(experiment), a = arm ? strlen(arm) : 0;
    if (e == 0 || e > ID_MAX || a > ID_MAX || (arm && a == 0))
        return -1;
    memcpy(k->bytes, experiment, e + 1);
    start_encode(start, k->bytes + e + 1);
    memcpy(k->bytes + e + 9, arm ? arm : "", a);
    k->len = e + 9 + a;
    return 0;
}

/* The parts of a "buckets" key; -1 when it is not EXP\0 START8 ARM. */
static int bucket_key_split(const MDB_val *k, size_t *exp_len, int64_t *start, const char **arm,
                            size_t *arm_len)
{
    const char *bytes = k->mv_data;
    size_t e = strnlen(bytes, k->mv_size);
    if (e == 0 || e > ID_MAX || e + 9 >= k->mv_size || k->mv_size - e - 9 > ID_MAX)
        return -1;
    *exp_len = e;
    *start = start_decode((const unsigned char *)bytes + e + 1);
    *arm = bytes + e + 9;
    *arm_len = k->mv_size - e - 9;
    return 0;
}

/* The "bucket_starts" key of a "buckets" key: START8 "EXP\0ARM". */
static size_t start_key_of(const MDB_val *k, size_t exp_len, unsigned char *out)
{
    const unsigned char *bytes = k->mv_data;
    memcpy(out, bytes + exp_len + 1, 8);
    memcpy(out + 8, bytes, exp_len + 1);
    memcpy(out + 9 + exp_len, bytes + exp_len + 9, k->mv_size - exp_len - 9);
    return k->mv_size;
}

static int bucket_corrupt(const lmdb_store *st, const MDB_val *key, const MDB_val *value,
                          mab_error *err)
{
    size_t e, a;
    int64_t start;
    const char *arm;
    if (bucket_key_split(key, &e, &start, &arm, &a) != 0)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: a bucket key of %zu bytes in experiment %.*s is not "
                             "EXPERIMENT\\0START(8 bytes)ARM; refusing to read a damaged store",
                             st->path, key->mv_size, (int)strnlen(key->mv_data, key->mv_size),
                             (const char *)key->mv_data);
    stored_record r;
    int why = record_decode(value, &r);
    return mab_error_set(err, MAB_ECORRUPT,
                         "%s: bucket %.*s.%.*s at %" PRId64 " is unreadable (%s); refusing to "
                         "read a damaged store",
                         st->path, (int)e, (const char *)key->mv_data, (int)a, arm, start,
                         why == -2 ? "a reward sum that is not finite"
                                   : "not a 40-byte record of version 1");
}

static int check_bucket_deltas(const lmdb_store *st, const mab_bucket_delta *b, size_t n,
                               mab_error *err)
{
    if (n && !b)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_buckets: NULL batch", st->path);
    for (size_t i = 0; i < n; i++) {
        const mab_bucket_delta *d = &b[i];
        bucket_key key;
        if (!d->experiment || !d->arm)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: bucket %zu has no experiment or arm",
                                 st->path, i);
        if (bucket_key_make(&key, d->experiment, d->bucket, d->arm) != 0)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: %s.%s: ids must be 1 to %d bytes", st->path,
                                 d->experiment, d->arm, ID_MAX);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq) ||
            d->add.reward_sum_sq < 0)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_buckets: %s.%s (bucket %" PRId64 "): reward is not "
                                 "finite (or its square negative)",
                                 st->path, d->experiment, d->arm, d->bucket);
    }
    return MAB_OK;
}

/* Add every bucket increment inside txn; a new bucket also gets its
   "bucket_starts" entry, which retention walks. */
static int add_buckets(lmdb_store *st, MDB_txn *txn, const mab_bucket_delta *b, size_t n,
                       int64_t keep_from, int *status, mab_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const mab_bucket_delta *d = &b[i];
        if (d->bucket < keep_from)
            continue; /* added, then dropped by this same call's retention */
        bucket_key key;
        bucket_key_make(&key, d->experiment, d->bucket, d->arm); /* checked */
        MDB_val k = {key.len, key.bytes}, v;
        stored_record r = {LMDB_RECORD_VERSION, 0, 0, 0, 0.0, 0.0};
        int rc = mdb_get(txn, st->buckets_dbi, &k, &v);
        if (rc == MDB_SUCCESS && record_decode(&v, &r) != 0) {
            *status = bucket_corrupt(st, &k, &v, err);
            return MDB_SUCCESS;
        }
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            return rc;
        if (rc == MDB_NOTFOUND) {
            unsigned char sk[sizeof key.bytes];
            MDB_val skv = {start_key_of(&k, strlen(d->experiment), sk), sk}, empty = {0, NULL};
            if ((rc = put(txn, st->bucket_starts_dbi, &skv, &empty, 0)) != MDB_SUCCESS)
                return rc;
        }
        int too_big = d->add.pulls > UINT64_MAX - r.pulls ||
                      d->add.rewards > UINT64_MAX - r.rewards;
        r.pulls += d->add.pulls;
        r.rewards += d->add.rewards;
        r.reward_sum += d->add.reward_sum;
        r.reward_sum_sq += d->add.reward_sum_sq;
        if (too_big || !isfinite(r.reward_sum) || !isfinite(r.reward_sum_sq)) {
            *status = mab_error_set(err, MAB_ERANGE,
                                    "%s: %s.%s: bucket %" PRId64 " would overflow", st->path,
                                    d->experiment, d->arm, d->bucket);
            return MDB_SUCCESS;
        }
        v.mv_size = sizeof r;
        v.mv_data = &r;
        if ((rc = put(txn, st->buckets_dbi, &k, &v, 0)) != MDB_SUCCESS ||
            (rc = mark_changed(st, txn, d->experiment)) != MDB_SUCCESS)
            return rc;
    }
    return MDB_SUCCESS;
}

/*
 * Retention inside txn: delete the oldest buckets that start before
 * keep_from, at most BUCKET_SWEEP of them. "bucket_starts" is ordered by
 * start, so the oldest are its first keys: each call deletes
 * min(BUCKET_SWEEP, old ones) and examines one more, whatever the size of
 * the store.
 */
static int retire_buckets(lmdb_store *st, MDB_txn *txn, int64_t keep_from, int *status,
                          mab_error *err)
{
    if (keep_from == INT64_MIN)
        return MDB_SUCCESS;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->bucket_starts_dbi, &cur);
    if (rc != MDB_SUCCESS)
        return rc;
    for (int n = 0; n < BUCKET_SWEEP; n++) {
        MDB_val k, v;
        if ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) != MDB_SUCCESS)
            break;
        const unsigned char *bytes = k.mv_data;
        size_t e = k.mv_size > 8 ? strnlen((const char *)bytes + 8, k.mv_size - 8) : 0;
        if (k.mv_size < 8 + 3 || e == 0 || e + 9 >= k.mv_size) {
            *status = mab_error_set(err, MAB_ECORRUPT,
                                    "%s: a bucket_starts key of %zu bytes is not "
                                    "START(8 bytes)EXPERIMENT\\0ARM; refusing to change a "
                                    "damaged store",
                                    st->path, k.mv_size);
            break;
        }
        if (start_decode(bytes) >= keep_from)
            break;
        /* The bucket's own key: EXP\0 START8 ARM. */
        unsigned char main_key[sizeof(bucket_key)];
        memcpy(main_key, bytes + 8, e + 1);
        memcpy(main_key + e + 1, bytes, 8);
        memcpy(main_key + e + 9, bytes + 9 + e, k.mv_size - 9 - e);
        MDB_val mk = {k.mv_size, main_key};
        rc = del(txn, st->buckets_dbi, &mk, NULL);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
            break;
        if ((rc = cursor_del(cur, 0)) != MDB_SUCCESS)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

/* Delete every bucket of an experiment with its "bucket_starts" entry. */
static int delete_experiment_buckets(lmdb_store *st, MDB_txn *txn, const char *experiment)
{
    record_key prefix;
    if (key_make(&prefix, experiment, NULL) != 0)
        return MDB_SUCCESS; /* too long to have been stored */
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->buckets_dbi, &cur);
    if (rc != MDB_SUCCESS)
        return rc;
    for (;;) {
        MDB_val k = {prefix.len, prefix.bytes}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != MDB_SUCCESS || !key_has_prefix(&k, &prefix))
            break;
        size_t e, a;
        int64_t start;
        const char *arm;
        if (bucket_key_split(&k, &e, &start, &arm, &a) == 0) {
            unsigned char sk[sizeof(bucket_key)];
            MDB_val skv = {start_key_of(&k, e, sk), sk};
            rc = del(txn, st->bucket_starts_dbi, &skv, NULL);
            if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
                break;
        }
        if ((rc = cursor_del(cur, 0)) != MDB_SUCCESS)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

typedef struct buckets_arg {
    const mab_delta *deltas;
    size_t n_deltas;
    const mab_stats_delta *stats;
    size_t n_stats;
    const mab_bucket_delta *buckets;
    size_t n_buckets;
    int64_t keep_from;
} buckets_arg;

static int buckets_body(lmdb_store *st, MDB_txn *txn, const void *arg, int *status,
                        mab_error *err)
{
    const buckets_arg *b = arg;
    int rc = add_deltas(st, txn, b->deltas, b->n_deltas, status, err);
    if (rc == MDB_SUCCESS && *status == MAB_OK)
        rc = add_stats(st, txn, b->stats, b->n_stats, status, err);
    if (rc == MDB_SUCCESS && *status == MAB_OK)
        rc = add_buckets(st, txn, b->buckets, b->n_buckets, b->keep_from, status, err);
    if (rc == MDB_SUCCESS && *status == MAB_OK)
        rc = retire_buckets(st, txn, b->keep_from, status, err);
    return rc;
}

static int lmdb_apply_buckets(void *state, const mab_delta *deltas, size_t n_deltas,
                              const mab_stats_delta *stats, size_t n_stats,
                              const mab_bucket_delta *buckets, size_t n_buckets,
                              int64_t keep_from, mab_error *err)
{
    lmdb_store *st = state;
    if (n_deltas == 0 && n_stats == 0 && n_buckets == 0 && keep_from == INT64_MIN)
        return MAB_OK;
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc == MAB_OK)
        rc = check_stats(st, stats, n_stats, err);
    if (rc == MAB_OK)
        rc = check_bucket_deltas(st, buckets, n_buckets, err);
    if (rc != MAB_OK)
        return rc;
    buckets_arg b = {deltas, n_deltas, stats, n_stats, buckets, n_buckets, keep_from};
    rc = write_txn(st, "cannot write", buckets_body, &b, err);
    if (rc == MAB_OK)
        st->unsynced = 0; /* the synced commit flushed the deferred claims too */
    return rc;
}

static int lmdb_load_buckets(void *state, const char *experiment, const char *const *arm_ids,
                             size_t n_arms, int64_t since,
                             int (*visit)(void *ctx, size_t arm_index, int64_t bucket,
                                          const mab_totals *add),
                             void *ctx, mab_error *err)
{
    lmdb_store *st = state;
    if (!experiment || !visit || (n_arms && !arm_ids))
        return mab_error_set(err, MAB_EINVAL, "%s: load_buckets: NULL argument", st->path);
    record_key prefix;
    bucket_key from;
    if (key_make(&prefix, experiment, NULL) != 0 ||
        bucket_key_make(&from, experiment, since, NULL) != 0)
        return MAB_OK; /* too long to have been stored */
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->buckets_dbi, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    }
    /* One range scan: the experiment's keys from `since` on, in start order. */
    int status = MAB_OK;
    MDB_val k = {from.len, from.bytes}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == MDB_SUCCESS && status == MAB_OK && key_has_prefix(&k, &prefix);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t e, a;
        int64_t start;
        const char *arm;
        stored_record r;
        if (bucket_key_split(&k, &e, &start, &arm, &a) != 0 || record_decode(&v, &r) != 0) {
            status = bucket_corrupt(st, &k, &v, err);
            break;
        }
        for (size_t i = 0; i < n_arms; i++) {
            if (arm_ids[i] && strlen(arm_ids[i]) == a && memcmp(arm_ids[i], arm, a) == 0) {
                mab_totals t = {r.pulls, r.rewards, r.reward_sum, r.reward_sum_sq};
                status = visit(ctx, i, start, &t);
                break;
            }
        }
    }
    if (status == MAB_OK && rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        status = lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return status;
}

static int lmdb_scan_buckets(void *state,
                             int (*visit)(void *ctx, const char *experiment, const char *arm,
                                          int64_t bucket, const mab_totals *add),
                             void *ctx, mab_error *err)
{
    lmdb_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_buckets: NULL visitor", st->path);
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->buckets_dbi, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    }
    int status = MAB_OK;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS && status == MAB_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t e, a;
        int64_t start;
        const char *arm;
        stored_record r;
        if (bucket_key_split(&k, &e, &start, &arm, &a) != 0 || record_decode(&v, &r) != 0) {
            status = bucket_corrupt(st, &k, &v, err);
            break;
        }
        char exp_id[ID_MAX + 1], arm_id[ID_MAX + 1];
        memcpy(exp_id, k.mv_data, e + 1);
        memcpy(arm_id, arm, a);
        arm_id[a] = '\0';
        mab_totals t = {r.pulls, r.rewards, r.reward_sum, r.reward_sum_sq};
        status = visit(ctx, exp_id, arm_id, start, &t);
    }
    if (status == MAB_OK && rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        status = lmdb_fail(st, err, MAB_ESTORAGE, "cannot read", rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return status;
}

/* ---- claims ----------------------------------------------------------- */

typedef struct claim_arg {
    mab_claim *claims;
    size_t n_claims;
    int64_t now;
} claim_arg;

/* Delete expired claims among the CLAIM_SWEEP after st->sweep_from, inside
   txn. Bounded work: the table is walked a few entries per claim. */
static int sweep_claims(lmdb_store *st, MDB_txn *txn, int64_t now)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->claims_dbi, &cur);
    if (rc != MDB_SUCCESS)
        return rc;
    MDB_val k = {sizeof st->sweep_from, st->sweep_from}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (int n = 0; n < CLAIM_SWEEP; n++) {
        if (rc == MDB_NOTFOUND) /* past the last claim: wrap around */
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc != MDB_SUCCESS)
            break;
        int64_t expires = 0;
        if (v.mv_size == sizeof expires)
            memcpy(&expires, v.mv_data, sizeof expires);
        if (k.mv_size == sizeof st->sweep_from)
            memcpy(st->sweep_from, k.mv_data, sizeof st->sweep_from);
        if (v.mv_size != sizeof expires || expires <= now) {
            /* After a delete MDB_NEXT reads the entry that took its place. */
            if ((rc = cursor_del(cur, 0)) != MDB_SUCCESS)
                break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

/* Whether claims[k]'s id is also an earlier entry's (batches are small). */
static int claimed_earlier(const mab_claim *claims, size_t k)
{
    for (size_t j = 0; j < k; j++)
        if (memcmp(claims[j].assignment_id, claims[k].assignment_id, MAB_ASSIGNMENT_ID_BYTES) ==
            0)
            return 1;
    return 0;
}

/* Claim one id inside txn: *granted 1 when this put made the claim. */
static int claim_one(lmdb_store *st, MDB_txn *txn, const mab_claim *c, int64_t now,
                     int *granted)
{
    uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
    memcpy(id, c->assignment_id, sizeof id);
    MDB_val k = {sizeof id, id}, v = {sizeof c->expires_at, (void *)&c->expires_at};
    int rc = put(txn, st->claims_dbi, &k, &v, MDB_NOOVERWRITE);
    *granted = rc == MDB_SUCCESS;
    if (rc != MDB_KEYEXIST)
        return rc;
    int64_t held = 0;
    if (v.mv_size == sizeof held)
        memcpy(&held, v.mv_data, sizeof held);
    if (v.mv_size == sizeof held && held > now)
        return MDB_SUCCESS; /* already claimed */
    /* An expired claim the sweep has not reached yet: take it over. */
    v = (MDB_val){sizeof c->expires_at, (void *)&c->expires_at};
    rc = put(txn, st->claims_dbi, &k, &v, 0);
    *granted = rc == MDB_SUCCESS;
    return rc;
}

static int claim_body(lmdb_store *st, MDB_txn *txn, const void *arg, int *status,
                      mab_error *err)
{
    const claim_arg *c = arg;
    int rc = mdb_dbi_open(txn, "claims", MDB_CREATE, &st->claims_dbi);
    for (size_t k = 0; rc == MDB_SUCCESS && k < c->n_claims; k++) {
        int granted = 0;
        if (!claimed_earlier(c->claims, k))
            rc = claim_one(st, txn, &c->claims[k], c->now, &granted);
        c->claims[k].result = granted ? MAB_OK : MAB_ECLAIMED;
        if (rc == MDB_SUCCESS && granted)
            rc = add_deltas(st, txn, c->claims[k].deltas, c->claims[k].n_deltas, status, err);
        if (*status != MAB_OK)
            return MDB_SUCCESS;
    }
    return rc == MDB_SUCCESS ? sweep_claims(st, txn, c->now) : rc;
}

static int lmdb_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                      mab_error *err)
{
    lmdb_store *st = state;
    if (n_claims && !claims)
        return mab_error_set(err, MAB_EINVAL, "%s: claim: NULL claims", st->path);
    for (size_t k = 0; k < n_claims; k++) {
        if (!claims[k].assignment_id)
            return mab_error_set(err, MAB_EINVAL, "%s: claim %zu: NULL assignment id", st->path,
                                 k);
        int rc = check_deltas(st, claims[k].deltas, claims[k].n_deltas, err);
        if (rc != MAB_OK)
            return rc;
    }
    if (n_claims == 0)
        return MAB_OK;
    claim_arg c = {claims, n_claims, (int64_t)time(NULL)};
    /* The dbi handle is valid once a committed transaction opened it; after
       an abort it is not, so it is opened in every claim (a cheap lookup).
       MAB_CLAIM_DEFER_SYNC: commit without fdatasync. The commit is in the
       shared map at once (every process sees the claims), and the next
       synced commit (apply) or close flushes the data file, these claims
       included. Changing MDB_NOSYNC is safe: the core never enters the
       plugin from two threads at once. */
    int defer = (flags & MAB_CLAIM_DEFER_SYNC) != 0;
    if (defer && mdb_env_set_flags(st->env, MDB_NOSYNC, 1) != MDB_SUCCESS)
        defer = 0;
    int rc = write_txn(st, "cannot claim", claim_body, &c, err);
    if (defer) {
        mdb_env_set_flags(st->env, MDB_NOSYNC, 0);
        if (rc == MAB_OK)
            st->unsynced = 1;
    }
    return rc;
}

/* ---- what changed (storage ABI 1.6) ----------------------------------- */

/* Name every experiment changed since the last call, from one snapshot. */
static int changed_since(lmdb_store *st, MDB_txn *txn, int *everything,
                         int (*visit)(void *ctx, const char *experiment), void *ctx,
                         int *status)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->changes_seq_dbi, &cur);
    if (rc != MDB_SUCCESS)
        return rc;
    unsigned char from[8];
    seq_key(st->seen_seq + 1, "", 0, from);
    MDB_val k = {sizeof from, from}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS && !*status;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char id[ID_MAX + 1];
        size_t len = k.mv_size - 8;
        if (k.mv_size <= 8 || len > ID_MAX) {
            *everything = 1; /* not a key this plugin writes: trust nothing */
            break;
        }
        memcpy(id, (const char *)k.mv_data + 8, len);
        id[len] = '\0';
        *status = visit(ctx, id);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || *status ? MDB_SUCCESS : rc;
}

static int lmdb_changed(void *state, int *everything,
                        int (*visit)(void *ctx, const char *experiment), void *ctx,
                        mab_error *err)
{
    lmdb_store *st = state;
    if (!everything || !visit)
        return mab_error_set(err, MAB_EINVAL, "%s: changed: NULL argument", st->path);
    *everything = 0;
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read the change log", rc);
    uint64_t seq = 0, tracked = 0, txnid = mdb_txn_id(txn);
    rc = meta_u64(st, txn, "change_seq", &seq);
    if (rc == MDB_SUCCESS)
        rc = meta_u64(st, txn, "tracked_txns", &tracked);
    /* Every write transaction of a writer keeping the log adds 1 to both
       the transaction id and tracked_txns: any other gap is a writer that
       keeps none, whose changes this log cannot name. */
    if (rc == MDB_SUCCESS &&
        (!st->have_position || seq < st->seen_seq || tracked < st->seen_tracked ||
         txnid - st->seen_txnid != tracked - st->seen_tracked))
        *everything = 1;
    int status = MAB_OK;
    if (rc == MDB_SUCCESS && !*everything) {
        rc = changed_since(st, txn, everything, visit, ctx, &status);
    }
    mdb_txn_abort(txn);
    if (rc != MDB_SUCCESS)
        return lmdb_fail(st, err, MAB_ESTORAGE, "cannot read the change log", rc);
    if (status == MAB_OK) {
        st->have_position = 1;
        st->seen_seq = seq;
        st->seen_tracked = tracked;
        st->seen_txnid = txnid;
    }
    return status;
}

static void lmdb_close(void *state)
{
    lmdb_store *st = state;
    if (!st)
        return;
    if (st->unsynced)
        (void)mdb_env_sync(st->env, 1); /* deferred claims; nothing to report to */
    store_free(st, 1);
}

static const mab_storage lmdb_storage = {
    MAB_STORAGE_HEADER,
    "lmdb",
    "LMDB environment shared by every process on the machine; one transaction per batch",
    lmdb_open,
    lmdb_load,
    lmdb_apply,
    lmdb_reset,
    lmdb_close,
#if MAB_STORAGE_ABI_MINOR >= 1
    LMDB_REFRESH_MS,
    lmdb_scan,
    lmdb_replace,
#endif
#if MAB_STORAGE_ABI_MINOR >= 2
    lmdb_check,
    NULL, /* open_read_only: open() shares the store with every process */
#endif
#if MAB_STORAGE_ABI_MINOR >= 3
    lmdb_claim,
#endif
#if MAB_STORAGE_ABI_MINOR >= 4
    lmdb_apply_stats,
    lmdb_load_stats,
    lmdb_scan_stats,
#endif
#if MAB_STORAGE_ABI_MINOR >= 5
    lmdb_apply_buckets,
    lmdb_load_buckets,
    lmdb_scan_buckets,
#endif
#if MAB_STORAGE_ABI_MINOR >= 6
    lmdb_changed,
#endif
};

MAB_STORAGE_DEFINE(lmdb_storage)
