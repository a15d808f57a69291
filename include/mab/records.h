/*
 * records.h - the record-set JSON document: one reader and one writer for
 * the files that hold stored counters as JSON.
 *
 * Two kinds of file use this one document, and differ only in the tag of
 * their "format" field:
 *
 *   {"format": TAG, "version": 1,
 *    "experiments": {"EXP": {"ARM": {"pulls": N, "rewards": N,
 *                                    "reward_sum": X, "reward_sum_sq": X}}}}
 *
 *   MAB_RECORDS_EXPORT      TAG "mab-export": written by `mab export`, read
 *                           by `mab import`, to move counters between stores
 *   MAB_RECORDS_JSON_STORE  TAG "mab-json-storage": the state file of the
 *                           json_file storage plugin
 *
 * pulls and rewards are integers in [0, 2^53] (JSON numbers are read as
 * doubles: exact up to 2^53); reward_sum is a finite number, reward_sum_sq a
 * finite number >= 0, both written with the fewest digits that read back bit
 * for bit. An (experiment, arm) pair appears at most once. The text is
 * cJSON's indented form (one field per line) ending with a newline, so errors
 * can name a line.
 *
 * Policy statistics (policy ABI 2) may ride along in an optional top-level
 * field, read and written only by the *_stats and *_store functions below
 * (the plain ones refuse it as an unknown field, as before):
 *
 *   "policy_stats": [{"experiment": "EXP", "arm": "ARM", "layout": "exp3/1:1,0",
 *                     "values": [X, ...]}, ...]
 *
 * "arm" is absent for an experiment's own statistics; values are finite
 * numbers written to read back bit for bit; an (experiment, arm, layout)
 * triple appears at most once. The json_file storage writes them; `mab
 * export` does not (yet).
 *
 * Conventions of mab.h apply: an int status, a `mab_error *err` last (may be
 * NULL), and the library never prints.
 *
 * Changelog (as SQLite's iVersion notes: what each version added):
 *  - 0.1: mab_records_format_tag(), mab_records_print(), mab_records_write(),
 *    mab_records_parse(), mab_records_free() over the counters.
 *  - 0.2: the optional "policy_stats" field and the functions that read and
 *    write it: mab_records_print_stats(), mab_records_parse_stats(),
 *    mab_records_stats_free(), the *_claims functions (reward claims,
 *    storage ABI 1.3) and the *_store helpers below. mab_record is
 *    unchanged: it is an input of mab_import() and mab_records_print() as
 *    arrays the caller fills, so it cannot grow without new functions.
 *  - 0.3: the json_file journal's framing: mab_records_checksum(),
 *    mab_records_journal_header(), _frame(), _follows(), _entries().
 */
#ifndef MAB_RECORDS_H
#define MAB_RECORDS_H

#include <stdint.h>
#include <stdio.h>

#include "mab/mab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a record-set document is for; it decides the "format" tag. */
typedef enum mab_records_kind {
    MAB_RECORDS_EXPORT = 1,     /* "mab-export" */
    MAB_RECORDS_JSON_STORE = 2, /* "mab-json-storage" */
} mab_records_kind;

/* The document version this library writes and reads. */
#define MAB_RECORDS_VERSION 1

/* The largest counter a document can carry exactly: 2^53. */
#define MAB_RECORDS_COUNTER_MAX (UINT64_C(1) << 53)

/**
 * @brief The "format" tag of a kind ("mab-export", "mab-json-storage").
 * @return a static string, or NULL for an unknown kind.
 */
MAB_EXPORT const char *mab_records_format_tag(mab_records_kind kind);

/**
 * @brief Write records as the text of a record-set document.
 *
 * Records are grouped by experiment in the order each experiment first
 * appears, arms in the order given (sort them first for a stable text).
 * Nothing is written that mab_records_parse() would refuse.
 *
 * @param kind MAB_RECORDS_EXPORT or MAB_RECORDS_JSON_STORE.
 * @param records array of n_records records (may be NULL when n_records is 0);
 *        not modified, not retained.
 * @param text receives a NUL-terminated text ending in "\n", allocated with
 *        malloc(): the caller frees it with free(). Untouched on failure.
 * @param len receives strlen(*text); may be NULL.
 * @return MAB_OK;
 *         MAB_EINVAL: NULL text, an unknown kind, a record with a NULL
 *         experiment or arm, a non-finite reward_sum or reward_sum_sq, a
 *         negative reward_sum_sq, or an (experiment, arm) pair given twice
 *         (the message names "experiments.EXP.ARM[.FIELD]");
 *         MAB_ERANGE: pulls or rewards above 2^53 (named the same way);
 *         MAB_ENOMEM.
 */
MAB_EXPORT int mab_records_print(mab_records_kind kind, const mab_record *records,
                                 size_t n_records, char **text, size_t *len, mab_error *err);

/**
 * @brief mab_records_print() to a stdio stream.
 * @param out the stream; the caller flushes and closes it (a write error
 *        the stream only reports at fflush() or fclose() is the caller's).
 * @param name what the stream is, for error messages (a path, "stdout").
 * @return the codes of mab_records_print(), or MAB_EIO when fwrite() fails
 *         ("NAME: cannot write: REASON"); then part of the text may have
 *         been written.
 */
MAB_EXPORT int mab_records_write(FILE *out, const char *name, mab_records_kind kind,
                                 const mab_record *records, size_t n_records, mab_error *err);

/**
 * @brief Parse the text of a record-set document of the given kind.
 *
 * Every field is checked; any fault refuses the whole document and names
 * it: "NAME: invalid JSON at line L, column C (malformed or truncated)",
 * "NAME: the file is empty ...", "NAME: format: expected \"mab-export\" ...",
 * "NAME: unsupported export version 2 (this libmab reads version 1)",
 * "NAME: experiments.EXP.ARM.pulls: expected a non-negative integer (at
 * most 2^53)", "NAME: experiments.EXP.ARM: duplicate record", and so on.
 *
 * @param text the document; need not be NUL-terminated. A NUL byte inside
 *        the first len bytes is invalid JSON at its position.
 * @param len its length in bytes.
 * @param name what the text is (usually its file's path), first in every
 *        error message; must not be NULL.
 * @param kind the kind expected: a document of the other kind is refused
 *        by its "format".
 * @param records receives an array of *n_records records in document order
 *        (NULL when there are none). The array and every string it points
 *        to are one allocation: free it with mab_records_free(). Untouched
 *        on failure.
 * @param n_records receives the number of records.
 * @return MAB_OK; MAB_ECORRUPT for any fault in the text (nothing is
 *         returned); MAB_EINVAL for a NULL argument or an unknown kind;
 *         MAB_ENOMEM (cJSON does not tell an allocation failure during
 *         parsing from bad JSON: that case reads as invalid JSON).
 */
MAB_EXPORT int mab_records_parse(const char *text, size_t len, const char *name,
                                 mab_records_kind kind, mab_record **records,
                                 size_t *n_records, mab_error *err);

/* One record of policy statistics. */
typedef struct mab_stats_record {
    const char *experiment;
    const char *arm;    /* NULL for the experiment's own statistics */
    const char *layout; /* the layout tag, e.g. "exp3/1:1,0" */
    const double *values;
    size_t n_values;    /* at most MAB_RECORDS_STATS_MAX */
} mab_stats_record;

#define MAB_RECORDS_STATS_MAX 4096

/**
 * @brief mab_records_print() with policy statistics: the "policy_stats"
 *        field holds the n_stats records (omitted when n_stats is 0, so the
 *        text is then exactly mab_records_print()'s).
 * @return as mab_records_print(); MAB_EINVAL also for a statistics record
 *         with a NULL or empty id or layout, a value that is not finite,
 *         more than MAB_RECORDS_STATS_MAX values, or given twice.
 */
MAB_EXPORT int mab_records_print_stats(mab_records_kind kind, const mab_record *records,
                                       size_t n_records, const mab_stats_record *stats,
                                       size_t n_stats, char **text, size_t *len,
                                       mab_error *err);

/**
 * @brief mab_records_parse() that also accepts and returns "policy_stats".
 * @param stats receives the statistics records (NULL when there are none),
 *        one allocation with their strings and values: free it with
 *        mab_records_stats_free(). Untouched on failure.
 * @return as mab_records_parse(); faults in "policy_stats" are MAB_ECORRUPT
 *         naming "policy_stats[I].FIELD".
 */
MAB_EXPORT int mab_records_parse_stats(const char *text, size_t len, const char *name,
                                       mab_records_kind kind, mab_record **records,
                                       size_t *n_records, mab_stats_record **stats,
                                       size_t *n_stats, mab_error *err);

/** @brief Free what mab_records_parse_stats() returned in stats; NULL is fine. */
MAB_EXPORT void mab_records_stats_free(mab_stats_record *stats);

/** @brief Free what mab_records_parse() returned; NULL is fine. */
MAB_EXPORT void mab_records_free(mab_record *records);

/*
 * Claims (a json_file store only). The store document may carry, after
 * "experiments", the store's set of reward claims (storage.h, claim):
 *   "claims": {"<32 lowercase hex digits of the assignment id>": EXPIRES_AT}
 * with EXPIRES_AT an integer (unix seconds). It is written only when there
 * are claims, so a store without claims reads as before; an export never
 * carries claims, and mab_records_parse() refuses a "claims" field as
 * unknown.
 */
#define MAB_RECORD_CLAIM_ID_BYTES 16

typedef struct mab_record_claim {
    uint8_t assignment_id[MAB_RECORD_CLAIM_ID_BYTES];
    int64_t expires_at;
} mab_record_claim;

/**
 * @brief mab_records_print() with claims (MAB_RECORDS_JSON_STORE only).
 * @param claims n_claims claims (may be NULL when n_claims is 0); not retained.
 *        Ids must be distinct (the reader refuses a duplicate).
 * @return as mab_records_print(); MAB_EINVAL also for claims in another
 *         kind of document.
 */
MAB_EXPORT int mab_records_print_claims(mab_records_kind kind, const mab_record *records,
                                        size_t n_records, const mab_record_claim *claims,
                                        size_t n_claims, char **text, size_t *len,
                                        mab_error *err);

/**
 * @brief mab_records_parse() that also reads the store's "claims".
 * @param claims receives an array of *n_claims claims allocated with
 *        malloc() (the caller frees it with free(), also when there are
 *        none); untouched on failure. claims and n_claims are both set or
 *        both NULL (then this is mab_records_parse()).
 * @return as mab_records_parse(); MAB_ECORRUPT also for a malformed claim
 *         ("NAME: claims.KEY: expected 32 lowercase hex digits", "... an
 *         integer expiry", "... duplicate claim").
 */
MAB_EXPORT int mab_records_parse_claims(const char *text, size_t len, const char *name,
                                        mab_records_kind kind, mab_record **records,
                                        size_t *n_records, mab_record_claim **claims,
                                        size_t *n_claims, mab_error *err);

/*
 * A json_file store's whole document: counters, "claims" and
 * "policy_stats", both optional (one writer and one reader for both), and
 * "buckets" (below, mab_records_print_state()).
 */

/**
 * @brief mab_records_print() with claims (as mab_records_print_claims()) and
 *        policy statistics (as mab_records_print_stats()); either list may
 *        be empty, and its field is then left out.
 */
MAB_EXPORT int mab_records_print_store(mab_records_kind kind, const mab_record *records,
                                       size_t n_records, const mab_record_claim *claims,
                                       size_t n_claims, const mab_stats_record *stats,
                                       size_t n_stats, char **text, size_t *len,
                                       mab_error *err);

/**
 * @brief mab_records_parse() that also reads "claims" (when claims and
 *        n_claims are set, as mab_records_parse_claims()) and "policy_stats"
 *        (when stats and n_stats are set, as mab_records_parse_stats()); a
 *        field whose outputs are NULL is refused as unknown.
 */
MAB_EXPORT int mab_records_parse_store(const char *text, size_t len, const char *name,
                                       mab_records_kind kind, mab_record **records,
                                       size_t *n_records, mab_record_claim **claims,
                                       size_t *n_claims, mab_stats_record **stats,
                                       size_t *n_stats, mab_error *err);

/*
 * Time buckets (a json_file store only, storage ABI 1.5). The store document
 * may carry, after "experiments", the per-bucket increments of the four
 * counters:
 *   "buckets": {"EXP": {"ARM": [[START, PULLS, REWARDS, SUM, SUM_SQ], ...]}}
 * START is the bucket's start (an integer, unix seconds, |START| <= 2^53),
 * strictly ascending within an arm; PULLS and REWARDS integers in [0, 2^53];
 * SUM a finite number, SUM_SQ a finite number >= 0, written to read back bit
 * for bit. It is written only when there are buckets, so a store without
 * them reads as before (and an older libmab, which refuses "buckets" as an
 * unknown field, refuses a store with them rather than drop them); an
 * export never carries buckets.
 */
typedef struct mab_bucket_record {
    const char *experiment;
    const char *arm;
    int64_t start; /* unix seconds */
    uint64_t pulls;
    uint64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} mab_bucket_record;

/* The largest |START| a document can carry exactly: 2^53. */
#define MAB_RECORDS_BUCKET_START_MAX (INT64_C(1) << 53)

/**
 * @brief mab_records_print_store() with time buckets (MAB_RECORDS_JSON_STORE
 *        only): the "buckets" field holds the n_buckets records, grouped by
 *        experiment in the order each first appears, then by arm; within an
 *        arm they must come in strictly ascending start order (sort by
 *        experiment, arm, start first). Omitted when n_buckets is 0.
 * @return as mab_records_print_store(); MAB_EINVAL also for a bucket with a
 *         NULL or empty id, a start beyond 2^53, a sum that is not finite, a
 *         negative sum of squares, a start not above the arm's previous one,
 *         or buckets in another kind of document (the message names
 *         "buckets.EXP.ARM[I]"); MAB_ERANGE for a count above 2^53.
 */
MAB_EXPORT int mab_records_print_state(mab_records_kind kind, const mab_record *records,
                                       size_t n_records, const mab_record_claim *claims,
                                       size_t n_claims, const mab_stats_record *stats,
                                       size_t n_stats, const mab_bucket_record *buckets,
                                       size_t n_buckets, char **text, size_t *len,
                                       mab_error *err);

/**
 * @brief mab_records_parse_store() that also reads "buckets" (when buckets
 *        and n_buckets are set; when they are NULL a "buckets" field is
 *        refused as unknown).
 * @param buckets receives the bucket records in document order (NULL when
 *        there are none), one allocation with their strings: free it with
 *        mab_records_buckets_free(). Untouched on failure.
 * @return as mab_records_parse_store(); MAB_ECORRUPT also for a malformed
 *         bucket, naming it: "NAME: buckets.EXP.ARM[I]: expected [start,
 *         pulls, rewards, reward_sum, reward_sum_sq]", "...: start: expected
 *         an integer ...", "...: reward_sum: expected a finite number",
 *         "...: start not above the previous bucket's (duplicate or out of
 *         order)", "NAME: buckets.EXP.ARM: duplicate record".
 */
MAB_EXPORT int mab_records_parse_state(const char *text, size_t len, const char *name,
                                       mab_records_kind kind, mab_record **records,
                                       size_t *n_records, mab_record_claim **claims,
                                       size_t *n_claims, mab_stats_record **stats,
                                       size_t *n_stats, mab_bucket_record **buckets,
                                       size_t *n_buckets, mab_error *err);

/** @brief Free what mab_records_parse_state() returned in buckets; NULL is fine. */
MAB_EXPORT void mab_records_buckets_free(mab_bucket_record *buckets);

/*
 * The json_file journal's framing (0.3). A journal is a header, then
 * entries, each framed so that a reader can tell a whole entry from one cut
 * short or damaged (docs/storage.md, "json_file's journal"):
 *
 *   header (32 bytes): "MABJRNL1", then as little-endian u64: the length of
 *                      the snapshot the journal follows, the checksum of
 *                      that snapshot's bytes, the checksum of the 24 bytes
 *                      before it.
 *   entry:             a little-endian u32 payload length (1 to
 *                      MAB_RECORDS_JOURNAL_ENTRY_MAX), a little-endian u64
 *                      checksum of those 4 bytes and the payload, the
 *                      payload.
 *
 * The checksum is 64-bit FNV-1a (any one changed byte changes it). What a
 * payload holds is the plugin's (plugins/storage/json_file.c).
 */
#define MAB_RECORDS_JOURNAL_HEADER 32
#define MAB_RECORDS_JOURNAL_FRAME 12
#define MAB_RECORDS_JOURNAL_ENTRY_MAX (UINT32_C(1) << 30)

/** @brief 64-bit FNV-1a of n bytes. */
MAB_EXPORT uint64_t mab_records_checksum(const void *data, size_t n);

/** @brief The journal header of a snapshot of snapshot_len bytes. */
MAB_EXPORT void mab_records_journal_header(const void *snapshot, size_t snapshot_len,
                                           unsigned char out[MAB_RECORDS_JOURNAL_HEADER]);

/** @brief The frame of an entry of n payload bytes (n in 1 ..
    MAB_RECORDS_JOURNAL_ENTRY_MAX). */
MAB_EXPORT void mab_records_journal_frame(const void *payload, size_t n,
                                          unsigned char out[MAB_RECORDS_JOURNAL_FRAME]);

/**
 * @brief Whether a journal's first bytes are the header of this snapshot.
 * @param name the journal's path, for the message.
 * @param follows set to 1 when the header names this snapshot (its length
 *        and checksum), 0 when it names another one (a journal left by a
 *        crash between a snapshot and its new journal, or from elsewhere).
 * @return MAB_OK; MAB_ECORRUPT ("NAME: byte 0: ...") when the bytes are no
 *         journal header (too short, another magic, a header checksum that
 *         fails).
 */
MAB_EXPORT int mab_records_journal_follows(const char *name, const unsigned char *data,
                                           size_t len, const void *snapshot,
                                           size_t snapshot_len, int *follows, mab_error *err);

/**
 * @brief Visit the whole entries of data[0..len), which starts at byte
 *        `base` of the journal, in order; stop at the first frame that is
 *        cut short or fails its checksum.
 * @param entry called with each payload and its frame's offset; a nonzero
 *        return stops the walk and is returned.
 * @param end set to the offset after the last whole entry visited.
 * @param why when the bytes from *end on are not a whole entry, set to a
 *        sentence saying so ("the entry at byte 4096 is cut short: 80 of
 *        112 bytes"; "... fails its checksum"), else to ""; may be NULL.
 * @return 0 or what entry returned.
 */
MAB_EXPORT int mab_records_journal_entries(const unsigned char *data, size_t len, uint64_t base,
                                           int (*entry)(void *ctx, const unsigned char *payload,
                                                        size_t n, uint64_t offset),
                                           void *ctx, uint64_t *end, char *why, size_t why_cap);

#ifdef __cplusplus
}
#endif
#endif /* MAB_RECORDS_H */
