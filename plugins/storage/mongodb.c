/*
 * mongodb.c - storage shared by many machines through one MongoDB collection.
 *
 * One document per experiment and arm:
 *
 *   {_id: "EXPERIMENT/ARM", experiment: "...", arm: "...", v: 1,
 *    pulls: <int64>, rewards: <int64>, reward_sum: <double>,
 *    reward_sum_sq: <double>, w: {WRITER: <int64 batch number>, ...}}
 *
 * Ids are letters, digits, '_' and '-' (the core checks), so '/' cannot make
 * two pairs share an _id. A batch of increments is one unordered bulk of
 * `$inc` upserts, one per arm: increments commute, so any number of
 * machines write at once without losing one another's updates.
 *
 * Exactly once across network failures. After a network error or a write
 * concern error, an unordered bulk may have been applied to some documents
 * and not to others, and the client cannot tell which. Retrying it with
 * plain `$inc` would count the applied part twice. So every process picks a
 * random writer id at open and numbers its batches; an update only matches a
 * document whose `w.WRITER` is below the batch number, and sets it to that
 * number. Sending the same batch again therefore changes only the documents
 * it has not reached yet: the document it already reached no longer matches,
 * the upsert then tries to insert a second document with the same _id, and
 * the server answers "duplicate key" for that one update, changing nothing.
 *
 * The core's contract is that a failed apply leaves nothing applied and that
 * the batch is offered again later (merged with newer increments). A failed
 * bulk keeps its increments and batch number here as "in doubt". The next
 * apply first sends the in-doubt batch again, with the same number, until it
 * has reached every document; it is then fully applied, so it becomes
 * "credit", and only the offered increments minus the credit are sent, as a
 * new batch. After a successful apply the store holds exactly what it held
 * before the first failure plus what the successful call was offered: as if
 * every failed call had applied nothing, whether the failed batch was the
 * core's write-behind queue (offered again) or an import (not offered again:
 * then the difference is negative and takes it back out). load() subtracts
 * the credit, and the in-doubt part of the documents that the in-doubt batch
 * reached, so that the core's "stored + not yet applied" stays exact during
 * an outage too.
 *
 * Cost: one `w.WRITER` number per process in each document it writes (about
 * 30 bytes), removed at a clean close; a crashed process leaves its numbers
 * behind. During recovery, one more round trip per apply.
 *
 * Claims (storage ABI 1.3) live in a second collection, COLLECTION_claims:
 *
 *   {_id: "<32 hex digits of the assignment id>", expires_at: <date>}
 *
 * A claim is an insert: the server's unique _id index makes the first insert
 * win across every machine, and a "duplicate key" answer means already
 * claimed. A TTL index on expires_at (expireAfterSeconds 0, created at open)
 * has the server delete expired claims in the background. The reward's
 * increments follow the insert as an apply (above); MongoDB (without a
 * replica-set transaction) cannot make the two one step, so when the apply
 * fails the claim is deleted again, and when even that delete fails the
 * claim remains without its reward (the error says so): that assignment's
 * reward is then lost, never counted twice. Likewise an insert whose answer
 * is lost to a network failure may have claimed: the retry is refused.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "mab/storage.h"

#define SCHEMA_VERSION 1
#define WRITER_FIELD_MAX 32 /* "w." + 16 hex digits */
#define WHERE_MAX 512
#define LEDGER_BUCKETS 256u
#define DUP_KEY 11000

/* Defaults for URI options the user did not set (ms). libmongoc's own
   defaults (10 s to connect, 5 min per socket read) would stall the
   background writer for minutes when a server hangs. */
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_SOCKET_TIMEOUT_MS 10000
#define DEFAULT_SELECTION_TIMEOUT_MS 5000
#define WRITE_CONCERN_TIMEOUT_MS 10000

/* Totals that may be negative: differences between offered and credited. */
typedef struct signed_totals {
    int64_t pulls;
    int64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} signed_totals;

/* What a document holds (a counters document has no "kind" field). */
enum doc_kind { KIND_ARM, KIND_STATS, KIND_BUCKET };

/* What this process knows about one document beyond the store: an arm's
   counters, a statistics record or an arm's bucket. */
typedef struct ledger_entry {
    struct ledger_entry *next; /* hash chain */
    char *doc_id;              /* "EXPERIMENT/ARM[/s:LAYOUT|/b:START]" */
    char *experiment;
    char *arm;
    int kind;                  /* enum doc_kind */
    char *layout;              /* KIND_STATS */
    int64_t bucket;            /* KIND_BUCKET */
    signed_totals credit; /* applied to the store, yet still held by the core */
    signed_totals doubt;  /* sent in the in-doubt batch; maybe applied */
    signed_totals op;     /* KIND_STATS, KIND_BUCKET: scratch for apply */
    size_t n_values;      /* KIND_STATS: values per slot of v */
    double *v;            /* KIND_STATS: credit, doubt and op, n_values each */
    int in_doubt;
    int offered; /* scratch for apply: the batch had increments for this record */
} ledger_entry;

typedef struct mongo_store {
    mongoc_client_t *client;
    mongoc_collection_t *collection;
    mongoc_collection_t *claims;  /* COLLECTION_claims */
    mongoc_write_concern_t *write_concern;
    char *database;
    char *collection_name;
    char where[WHERE_MAX];   /* "MongoDB at HOSTS, database D, collection C" */
    char *password;          /* as decoded by libmongoc, scrubbed from messages */
    char *password_raw;      /* as written in the URI (percent-encoded) */
    char writer_field[WRITER_FIELD_MAX];
    int64_t batch_seq;       /* number of the last batch sent */
    int64_t doubt_seq;       /* number of the in-doubt batch, 0 when none */
    uint64_t max_pending;    /* 0: no bound */
    /* Buckets (ABI 1.5): the apply in progress sets expire_offset (a bucket
       document's expire_at is its start + this; 0: none); kept_from is
       the latest keep_from applied (reads never return older buckets). */
    int64_t expire_offset;
    int64_t kept_from;
    ledger_entry *ledger[LEDGER_BUCKETS];
    size_t ledger_count;
} mongo_store;

/* ---- messages --------------------------------------------------------- */

/* Replace every occurrence of secret in text by "***", in place. */
static void scrub_secret(char *text, size_t cap, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n == 0)
        return;
    char *at;
    while ((at = strstr(text, secret)) != NULL) {
        size_t tail = strlen(at + n);
        if ((size_t)(at - text) + 3 + tail >= cap)
            tail = cap - (size_t)(at - text) - 4;
        memmove(at + 3, at + n, tail);
        at[3 + tail] = '\0';
        memcpy(at, "***", 3);
    }
}

/* Fill err with "WHERE: what: libmongoc's message", never showing the password. */
static int store_fail(const mongo_store *st, mab_error *err, int code, const bson_error_t *cause,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int store_fail(const mongo_store *st, mab_error *err, int code, const bson_error_t *cause,
                      const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char text[MAB_ERROR_MAX];
    if (cause && cause->message[0])
        snprintf(text, sizeof text, "%s: %s: %s", st->where, what, cause->message);
    else
        snprintf(text, sizeof text, "%s: %s", st->where, what);
    scrub_secret(text, sizeof text, st->password);
    scrub_secret(text, sizeof text, st->password_raw);
    return mab_error_set(err, code, "%s", text);
}

/*
 * The URI without user name and password, and with the values of options
 * that hold secrets replaced by "***": safe to show in messages. Works on the
 * text, so it also serves for URIs libmongoc refuses to parse.
 */
static void uri_redact(const char *uri, char *out, size_t cap)
{
    static const char *const secret_options[] = {
        "tlsCertificateKeyFilePassword=", "sslClientCertificateKeyPassword=",
        "authMechanismProperties=", "password=",
    };
    const char *scheme_end = strstr(uri, "://");
    const char *rest = scheme_end ? scheme_end + 3 : uri;
    const char *query = strchr(rest, '?');
    const char *auth_end = NULL;
    for (const char *p = rest; *p && (!query || p < query); p++)
        if (*p == '@')
            auth_end = p;
    size_t n = 0;
    for (const char *p = uri; p < rest && n + 1 < cap; p++)
        out[n++] = *p;
    for (const char *p = auth_end ? auth_end + 1 : rest; *p && n + 1 < cap;) {
        size_t secret = 0;
        if (query && p > query && (p[-1] == '?' || p[-1] == '&'))
            for (size_t k = 0; k < sizeof secret_options / sizeof *secret_options; k++)
                if (strncasecmp(p, secret_options[k], strlen(secret_options[k])) == 0)
                    secret = strlen(secret_options[k]);
        if (!secret) {
            out[n++] = *p++;
            continue;
        }
        for (size_t k = 0; k < secret && n + 1 < cap; k++)
            out[n++] = *p++;
        for (const char *stars = "***"; *stars && n + 1 < cap; stars++)
            out[n++] = *stars;
        p += strcspn(p, "&");
    }
    out[n] = '\0';
}

/* The host list as written in the URI ("h1:27017,h2"), for messages. */
static void uri_hosts(const char *redacted, char *out, size_t cap)
{
    const char *scheme_end = strstr(redacted, "://");
    const char *hosts = scheme_end ? scheme_end + 3 : redacted;
    size_t len = strcspn(hosts, "/?");
    snprintf(out, cap, "%.*s", (int)(len ? len : 1), len ? hosts : "?");
}

/* The password as written between ':' and '@' in the URI (may be NULL). */
static char *uri_raw_password(const char *uri)
{
    const char *scheme_end = strstr(uri, "://");
    const char *rest = scheme_end ? scheme_end + 3 : uri;
    const char *query = strchr(rest, '?');
    const char *auth_end = NULL;
    for (const char *p = rest; *p && (!query || p < query); p++)
        if (*p == '@')
            auth_end = p;
    if (!auth_end)
        return NULL;
    const char *colon = memchr(rest, ':', (size_t)(auth_end - rest));
    if (!colon || colon + 1 == auth_end)
        return NULL;
    return strndup(colon + 1, (size_t)(auth_end - colon - 1));
}

/* ---- the ledger ------------------------------------------------------- */

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static size_t doc_id_len(const char *experiment, const char *arm)
{
    return strlen(experiment) + 1 + strlen(arm);
}

static void doc_id_write(char *out, size_t cap, const char *experiment, const char *arm)
{
    snprintf(out, cap, "%s/%s", experiment, arm);
}

static ledger_entry *ledger_find(const mongo_store *st, const char *doc_id)
{
    for (ledger_entry *e = st->ledger[hash_text(doc_id) % LEDGER_BUCKETS]; e; e = e->next)
        if (strcmp(e->doc_id, doc_id) == 0)
            return e;
    return NULL;
}

static ledger_entry *ledger_get(mongo_store *st, const char *experiment, const char *arm)
{
    size_t len = doc_id_len(experiment, arm);
    char *doc_id = malloc(len + 2); /* "E/A\0" plus room to split into "E\0A\0" */
    if (!doc_id)
        return NULL;
    doc_id_write(doc_id, len + 1, experiment, arm);
    ledger_entry *e = ledger_find(st, doc_id);
    if (e) {
        free(doc_id);
        return e;
    }
    e = calloc(1, sizeof *e);
    char *names = malloc(len + 1);
    if (!e || !names) {
        free(e);
        free(names);
        free(doc_id);
        return NULL;
    }
    memcpy(names, doc_id, len + 1);
    names[strlen(experiment)] = '\0';
    e->doc_id = doc_id;
    e->experiment = names;
    e->arm = names + strlen(experiment) + 1;
    uint32_t b = hash_text(doc_id) % LEDGER_BUCKETS;
    e->next = st->ledger[b];
    st->ledger[b] = e;
    st->ledger_count++;
    return e;
}

static void ledger_entry_free(ledger_entry *e)
{
    free(e->doc_id);
    free(e->experiment);
    free(e->layout);
    free(e->v);
    free(e);
}

/* The _id of a statistics record ("E/A/s:LAYOUT", A empty for the
   experiment's own) or of an arm's bucket ("E/A/b:START"): never a
   counters _id, which has one '/'. */
static void record_id_write(char *out, size_t cap, int kind, const char *experiment,
                            const char *arm, const char *layout, int64_t bucket)
{
    if (kind == KIND_STATS)
        snprintf(out, cap, "%s/%s/s:%s", experiment, arm, layout);
    else
        snprintf(out, cap, "%s/%s/b:%" PRId64, experiment, arm, bucket);
}

/* The entry of a statistics record or bucket; NULL when out of memory.
   *clash: the entry exists with another number of values. */
static ledger_entry *ledger_get_record(mongo_store *st, int kind, const char *experiment,
                                       const char *arm, const char *layout, int64_t bucket,
                                       size_t n_values, int *clash)
{
    char id[3 * 128 + 48];
    record_id_write(id, sizeof id, kind, experiment, arm, layout, bucket);
    *clash = 0;
    ledger_entry *e = ledger_find(st, id);
    if (e) {
        *clash = e->n_values != n_values;
        return e;
    }
    e = calloc(1, sizeof *e);
    size_t le = strlen(experiment), la = strlen(arm);
    char *names = malloc(le + la + 2);
    char *doc_id = strdup(id);
    char *tag = kind == KIND_STATS ? strdup(layout) : NULL;
    double *v = kind == KIND_STATS ? calloc(3 * (n_values ? n_values : 1), sizeof *v) : NULL;
    if (!e || !names || !doc_id || (kind == KIND_STATS && (!tag || !v))) {
        free(e);
        free(names);
        free(doc_id);
        free(tag);
        free(v);
        return NULL;
    }
    memcpy(names, experiment, le + 1);
    memcpy(names + le + 1, arm, la + 1);
    e->doc_id = doc_id;
    e->experiment = names;
    e->arm = names + le + 1;
    e->kind = kind;
    e->layout = tag;
    e->bucket = bucket;
    e->n_values = kind == KIND_STATS ? n_values : 0;
    e->v = v;
    uint32_t b = hash_text(doc_id) % LEDGER_BUCKETS;
    e->next = st->ledger[b];
    st->ledger[b] = e;
    st->ledger_count++;
    return e;
}

enum slot { CREDIT, DOUBT, OP };

static double *slot_values(ledger_entry *e, enum slot s)
{
    return e->v + (size_t)s * e->n_values;
}

/* Forget entries: all of them (experiment NULL) or those of one experiment. */
static void ledger_drop(mongo_store *st, const char *experiment)
{
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++) {
        ledger_entry **link = &st->ledger[b];
        while (*link) {
            ledger_entry *e = *link;
            if (!experiment || strcmp(e->experiment, experiment) == 0) {
                *link = e->next;
                ledger_entry_free(e);
                st->ledger_count--;
            } else {
                link = &e->next;
            }
        }
    }
    int any_doubt = 0;
    for (uint32_t b = 0; b < LEDGER_BUCKETS && !any_doubt; b++)
        for (const ledger_entry *e = st->ledger[b]; e && !any_doubt; e = e->next)
            any_doubt = e->in_doubt;
    if (!any_doubt)
        st->doubt_seq = 0;
}

/* ---- documents -------------------------------------------------------- */

static int signed_totals_zero(const signed_totals *t)
{
    return t->pulls == 0 && t->rewards == 0 && t->reward_sum == 0 && t->reward_sum_sq == 0;
}

static void signed_totals_sub(signed_totals *t, const signed_totals *minus)
{
    t->pulls -= minus->pulls;
    t->rewards -= minus->rewards;
    t->reward_sum -= minus->reward_sum;
    t->reward_sum_sq -= minus->reward_sum_sq;
}

static void signed_totals_add(signed_totals *t, const signed_totals *plus)
{
    t->pulls += plus->pulls;
    t->rewards += plus->rewards;
    t->reward_sum += plus->reward_sum;
    t->reward_sum_sq += plus->reward_sum_sq;
}

/* One update of a batch: add `add` (or for statistics `values`) to a
   document unless batch `seq` already did. Batch number 0: a plain upsert,
   without that guard. */
typedef struct batch_op {
    const char *experiment;
    const char *arm;
    signed_totals add;
    int kind;              /* enum doc_kind */
    const char *layout;    /* KIND_STATS */
    int64_t bucket;        /* KIND_BUCKET */
    const double *values;  /* KIND_STATS: n_values increments */
    size_t n_values;
} batch_op;

static int values_zero(const double *v, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (v[j] != 0)
            return 0;
    return 1;
}

/* An increment this large may take a finite sum past DBL_MAX; smaller ones
   cannot (DBL_MAX's ulp is about 2e292: the sum rounds back to DBL_MAX). */
#define OVERFLOW_RISK 1e292

/* Make the update match only while field + x stays finite. */
static void append_range_guard(bson_t *selector, const char *field, double x)
{
    if (!(fabs(x) >= OVERFLOW_RISK))
        return;
    bson_t not_doc, cmp;
    BSON_APPEND_DOCUMENT_BEGIN(selector, field, &not_doc);
    BSON_APPEND_DOCUMENT_BEGIN(&not_doc, "$not", &cmp);
    if (x > 0)
        BSON_APPEND_DOUBLE(&cmp, "$gt", DBL_MAX - x);
    else
        BSON_APPEND_DOUBLE(&cmp, "$lt", -DBL_MAX - x);
    bson_append_document_end(&not_doc, &cmp);
    bson_append_document_end(selector, &not_doc);
}

/* Whether an update carries a range guard (above). */
static int op_guarded(const batch_op *op)
{
    if (op->kind == KIND_STATS) {
        for (size_t j = 0; j < op->n_values; j++)
            if (fabs(op->values[j]) >= OVERFLOW_RISK)
                return 1;
        return 0;
    }
    return fabs(op->add.reward_sum) >= OVERFLOW_RISK ||
           fabs(op->add.reward_sum_sq) >= OVERFLOW_RISK;
}

/*
 * The filter of an update matches only a document that the batch has not
 * reached yet (w.WRITER below seq) and whose sums stay finite with this
 * increment (a range guard, only for increments large enough to matter).
 * An update that matches nothing tries to insert, and "duplicate key" says
 * the document exists: counted already, or out of range (send_batch tells
 * them apart).
 */
static bool append_op(const mongo_store *st, mongoc_bulk_operation_t *bulk, const batch_op *op,
                      int64_t seq, bson_error_t *error)
{
    char doc_id[3 * 128 + 48];
    if (op->kind == KIND_ARM)
        doc_id_write(doc_id, sizeof doc_id, op->experiment, op->arm);
    else
        record_id_write(doc_id, sizeof doc_id, op->kind, op->experiment, op->arm, op->layout,
                        op->bucket);
    bson_t selector = BSON_INITIALIZER, not_done, gte;
    BSON_APPEND_UTF8(&selector, "_id", doc_id);
    if (seq) {
        BSON_APPEND_DOCUMENT_BEGIN(&selector, st->writer_field, &not_done);
        BSON_APPEND_DOCUMENT_BEGIN(&not_done, "$not", &gte);
        BSON_APPEND_INT64(&gte, "$gte", seq);
        bson_append_document_end(&not_done, &gte);
        bson_append_document_end(&selector, &not_done);
    }
    if (op->kind == KIND_STATS) {
        for (size_t j = 0; j < op->n_values; j++) {
            char key[32];
            snprintf(key, sizeof key, "s.%zu", j);
            append_range_guard(&selector, key, op->values[j]);
        }
    } else {
        append_range_guard(&selector, "reward_sum", op->add.reward_sum);
        append_range_guard(&selector, "reward_sum_sq", op->add.reward_sum_sq);
    }

    bson_t update = BSON_INITIALIZER, inc, set, on_insert;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    if (op->kind == KIND_STATS) {
        /* s.0, s.1, ...: an embedded document of the values */
        for (size_t j = 0; j < op->n_values; j++) {
            char key[32];
            snprintf(key, sizeof key, "s.%zu", j);
            BSON_APPEND_DOUBLE(&inc, key, op->values[j]);
        }
    } else {
        BSON_APPEND_INT64(&inc, "pulls", op->add.pulls);
        BSON_APPEND_INT64(&inc, "rewards", op->add.rewards);
        BSON_APPEND_DOUBLE(&inc, "reward_sum", op->add.reward_sum);
        BSON_APPEND_DOUBLE(&inc, "reward_sum_sq", op->add.reward_sum_sq);
    }
    bson_append_document_end(&update, &inc);
    int expires = op->kind == KIND_BUCKET && st->expire_offset;
    if (seq || expires) {
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
        if (seq)
            BSON_APPEND_INT64(&set, st->writer_field, seq);
        if (expires) { /* the TTL index removes the bucket when its retention has passed */
            /* in years 1 to 9999, as a BSON date can be shown */
            int64_t at = op->bucket > INT64_MAX / 2 ? INT64_MAX / 2 : op->bucket;
            at = at < -62135596800 ? -62135596800 : at;
            at += st->expire_offset;
            at = at > 253402300799 ? 253402300799 : at < -62135596800 ? -62135596800 : at;
            BSON_APPEND_DATE_TIME(&set, "expire_at", at * 1000);
        }
        bson_append_document_end(&update, &set);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$setOnInsert", &on_insert);
    BSON_APPEND_UTF8(&on_insert, "experiment", op->experiment);
    BSON_APPEND_UTF8(&on_insert, "arm", op->arm);
    BSON_APPEND_INT32(&on_insert, "v", SCHEMA_VERSION);
    if (op->kind == KIND_STATS) {
        BSON_APPEND_UTF8(&on_insert, "kind", "stats");
        BSON_APPEND_UTF8(&on_insert, "layout", op->layout);
        BSON_APPEND_INT64(&on_insert, "n", (int64_t)op->n_values);
    } else if (op->kind == KIND_BUCKET) {
        BSON_APPEND_UTF8(&on_insert, "kind", "bucket");
        BSON_APPEND_INT64(&on_insert, "bucket", op->bucket);
    }
    bson_append_document_end(&update, &on_insert);

    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&opts, "upsert", true);
    bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &selector, &update, &opts, error);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&selector);
    return ok;
}

/* Indices of the updates the server refused with "duplicate key". Returns 0
   when the bulk failed for any other reason (network, write concern, ...). */
static int only_duplicate_keys(const bson_t *reply, size_t n_ops, unsigned char *dup)
{
    bson_iter_t it, errors;
    if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_array(&it, &len, &data);
        if (len > 5) /* an empty BSON array is 5 bytes */
            return 0;
    }
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &errors))
        return 0;
    int any = 0;
    while (bson_iter_next(&errors)) {
        bson_iter_t field;
        bson_t one;
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(&errors))
            return 0;
        bson_iter_document(&errors, &len, &data);
        if (!bson_init_static(&one, data, len))
            return 0;
        int64_t index = -1, code = 0;
        if (bson_iter_init_find(&field, &one, "index"))
            index = bson_iter_as_int64(&field);
        if (bson_iter_init_find(&field, &one, "code"))
            code = bson_iter_as_int64(&field);
        if (code != DUP_KEY || index < 0 || (uint64_t)index >= n_ops)
            return 0;
        dup[index] = 1;
        any = 1;
    }
    return any;
}

/*
 * Send ops[0..n) as batch `seq`, one unordered bulk. An update refused with
 * "duplicate key" either found its document already counted by this batch
 * (a resend) or raced another writer inserting the same new document; it is
 * sent once more, when the document exists, and a second "duplicate key"
 * means the batch had already counted it.
 */
/* Whether batch `seq` reached the document of op (its w.WRITER). */
static int op_counted(mongo_store *st, const batch_op *op, int64_t seq, bson_error_t *error,
                      int *failed)
{
    char doc_id[3 * 128 + 48];
    if (op->kind == KIND_ARM)
        doc_id_write(doc_id, sizeof doc_id, op->experiment, op->arm);
    else
        record_id_write(doc_id, sizeof doc_id, op->kind, op->experiment, op->arm, op->layout,
                        op->bucket);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(doc_id));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(st->collection, filter, NULL,
                                                               NULL);
    const bson_t *doc;
    int64_t reached = 0;
    if (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t it;
        if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, st->writer_field, &it) &&
            BSON_ITER_HOLDS_NUMBER(&it))
            reached = bson_iter_as_int64(&it);
    }
    *failed = mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    return reached >= seq;
}

/*
 * refused (n bytes, or NULL): set for the updates a range guard refused
 * (their sums would not be finite): the call then returns MAB_ERANGE naming
 * the first, every other update counted.
 */
static int send_batch(mongo_store *st, const batch_op *ops, size_t n, int64_t seq,
                      unsigned char *refused, mab_error *err)
{
    unsigned char *dup = calloc(n ? n : 1, 1);
    size_t *pick = malloc((n ? n : 1) * sizeof *pick);
    if (!dup || !pick) {
        free(dup);
        free(pick);
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    }
    size_t n_pick = n;
    for (size_t i = 0; i < n; i++)
        pick[i] = i;
    int rc = MAB_OK;
    for (int round = 0; round < 2 && n_pick > 0 && rc == MAB_OK; round++) {
        bson_t opts = BSON_INITIALIZER;
        BSON_APPEND_BOOL(&opts, "ordered", false);
        mongoc_write_concern_append(st->write_concern, &opts);
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(st->collection, &opts);
        bson_destroy(&opts);
        bson_error_t error;
        int built = 1;
        for (size_t k = 0; k < n_pick && built; k++)
            built = append_op(st, bulk, &ops[pick[k]], seq, &error);
        if (!built) {
            rc = store_fail(st, err, MAB_ESTORAGE, &error, "cannot build an update");
            mongoc_bulk_operation_destroy(bulk);
            break;
        }
        bson_t reply; /* always initialised by execute */
        if (mongoc_bulk_operation_execute(bulk, &reply, &error)) {
            n_pick = 0;
        } else {
            memset(dup, 0, n_pick);
            if (!only_duplicate_keys(&reply, n_pick, dup)) {
                rc = store_fail(st, err, MAB_ESTORAGE, &error,
                                "cannot apply a batch of %zu increments (kept in memory and "
                                "sent again later)",
                                n);
            } else if (round == 0) {
                size_t kept = 0;
                for (size_t k = 0; k < n_pick; k++)
                    if (dup[k])
                        pick[kept++] = pick[k];
                n_pick = kept;
            } else {
                /* The batch had already counted these, or (with a range
                   guard) they would not stay finite: ask the documents. */
                for (size_t k = 0; k < n_pick && rc == MAB_OK; k++) {
                    const batch_op *op = &ops[pick[k]];
                    if (!dup[k] || !op_guarded(op))
                        continue;
                    int failed = 0;
                    bson_error_t ferror;
                    int counted = op_counted(st, op, seq, &ferror, &failed);
                    if (failed)
                        rc = store_fail(st, err, MAB_ESTORAGE, &ferror,
                                        "cannot apply a batch of %zu increments (kept in "
                                        "memory and sent again later)",
                                        n);
                    else if (!counted && refused) {
                        if (!memchr(refused, 1, n))
                            mab_error_set(err, MAB_ERANGE,
                                          "%s: apply: %s/%s%s%s: a sum would not be finite; "
                                          "nothing of it written",
                                          st->where, op->experiment, op->arm,
                                          op->kind == KIND_STATS ? " statistics " : "",
                                          op->kind == KIND_STATS ? op->layout : "");
                        refused[pick[k]] = 1;
                    }
                }
                n_pick = 0;
            }
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
    }
    free(dup);
    free(pick);
    if (rc == MAB_OK && refused && memchr(refused, 1, n ? n : 1))
        return MAB_ERANGE;
    return rc;
}

/* Send the in-doubt batch again with its own number; on success it is fully
   applied and becomes credit. */
static int settle_doubt(mongo_store *st, mab_error *err)
{
    if (!st->doubt_seq)
        return MAB_OK;
    batch_op *ops = malloc((st->ledger_count ? st->ledger_count : 1) * sizeof *ops);
    if (!ops)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    size_t n = 0;
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++)
        for (ledger_entry *e = st->ledger[b]; e; e = e->next)
            if (e->in_doubt)
                ops[n++] = (batch_op){e->experiment, e->arm, e->doubt, e->kind, e->layout,
                                      e->bucket, e->v ? slot_values(e, DOUBT) : NULL,
                                      e->n_values};
    unsigned char *refused = calloc(n ? n : 1, 1);
    int rc = refused ? send_batch(st, ops, n, st->doubt_seq, refused, err) : MAB_ENOMEM;
    free(ops);
    if (rc == MAB_ENOMEM && !refused)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    if (rc != MAB_OK && rc != MAB_ERANGE) {
        free(refused);
        return rc;
    }
    /* Refused by a range guard: not counted, so no credit; the core still
       holds it and offers it again, to be refused on its own. */
    n = 0;
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++)
        for (ledger_entry *e = st->ledger[b]; e; e = e->next)
            if (e->in_doubt && refused[n++]) {
                memset(&e->doubt, 0, sizeof e->doubt);
                if (e->v)
                    memset(slot_values(e, DOUBT), 0, e->n_values * sizeof(double));
            }
    free(refused);
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++) {
        for (ledger_entry *e = st->ledger[b]; e; e = e->next) {
            if (e->in_doubt) {
                signed_totals_add(&e->credit, &e->doubt);
                for (size_t j = 0; j < e->n_values; j++)
                    slot_values(e, CREDIT)[j] += slot_values(e, DOUBT)[j];
            }
            memset(&e->doubt, 0, sizeof e->doubt);
            if (e->v)
                memset(slot_values(e, DOUBT), 0, e->n_values * sizeof(double));
            e->in_doubt = 0;
        }
    }
    st->doubt_seq = 0;
    return MAB_OK;
}

static signed_totals to_signed(const mab_totals *t)
{
    return (signed_totals){(int64_t)t->pulls, (int64_t)t->rewards, t->reward_sum,
                           t->reward_sum_sq};
}

static int check_deltas(const mongo_store *st, const mab_delta *deltas, size_t n,
                        mab_error *err)
{
    if (n && !deltas)
        return mab_error_set(err, MAB_EINVAL, "%s: apply: NULL batch", st->where);
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        if (!d->experiment || !d->arm || !d->experiment[0] || !d->arm[0])
            return mab_error_set(err, MAB_EINVAL, "%s: apply: delta %zu has no experiment or arm",
                                 st->where, i);
        if (strchr(d->experiment, '/') || strlen(d->experiment) > 128 || strlen(d->arm) > 128)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply: experiment id \"%s\" is not a valid id", st->where,
                                 d->experiment);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq))
            return mab_error_set(err, MAB_EINVAL, "%s: apply: %s/%s: reward is not finite",
                                 st->where, d->experiment, d->arm);
        if (d->add.pulls > INT64_MAX || d->add.rewards > INT64_MAX)
            return mab_error_set(err, MAB_ERANGE, "%s: apply: %s/%s: count out of range",
                                 st->where, d->experiment, d->arm);
    }
    return MAB_OK;
}

/* How many pulls and rewards a failed apply leaves waiting for the server. */
static uint64_t waiting_increments(const mab_delta *deltas, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += deltas[i].add.pulls + deltas[i].add.rewards;
    return total;
}

static int check_stats(const mongo_store *st, const mab_stats_delta *stats, size_t n,
                       mab_error *err)
{
    if (n && !stats)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_stats: NULL batch", st->where);
    for (size_t i = 0; i < n; i++) {
        const mab_stats_delta *d = &stats[i];
        if (!d->experiment || !d->experiment[0] || !d->layout || !d->layout[0] ||
            (d->n_values && !d->values) || d->n_values > 100000)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: statistics %zu lack an experiment, a layout "
                                 "or values, or hold more than 100000",
                                 st->where, i);
        if (strchr(d->experiment, '/') || strlen(d->experiment) > 128 ||
            (d->arm && (!d->arm[0] || strchr(d->arm, '/') || strlen(d->arm) > 128)) ||
            strlen(d->layout) > 128)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: %s.%s (layout %s): not a valid id or layout "
                                 "tag (at most 128 characters)",
                                 st->where, d->experiment, d->arm ? d->arm : "(experiment)",
                                 d->layout);
        for (size_t j = 0; j < d->n_values; j++)
            if (!isfinite(d->values[j]))
                return mab_error_set(err, MAB_EINVAL,
                                     "%s: apply_stats: %s.%s (layout %s): value %zu is not "
                                     "finite",
                                     st->where, d->experiment, d->arm ? d->arm : "(experiment)",
                                     d->layout, j);
    }
    return MAB_OK;
}

static int check_buckets(const mongo_store *st, const mab_bucket_delta *buckets, size_t n,
                         mab_error *err)
{
    if (n && !buckets)
        return mab_error_set(err, MAB_EINVAL, "%s: apply_buckets: NULL batch", st->where);
    for (size_t i = 0; i < n; i++) {
        mab_delta as = {buckets[i].experiment, buckets[i].arm, buckets[i].add};
        int rc = check_deltas(st, &as, 1, err);
        if (rc != MAB_OK)
            return rc;
        if (strchr(as.arm, '/'))
            return mab_error_set(err, MAB_EINVAL, "%s: apply_buckets: \"%s\" is not a valid arm "
                                 "id", st->where, as.arm);
    }
    return MAB_OK;
}

#define SWEEP_MAX 64

/*
 * Bounded removal of buckets before keep_from, after every apply_buckets
 * that succeeded: one indexed find of the _ids of at most SWEEP_MAX of them
 * (it finds none in the steady state), then one delete of those. The TTL
 * index on expire_at does the same in the background; this keeps keep_from
 * exact when the clocks disagree or another writer keeps a longer
 * retention. Maintenance: a failure is left for the next call (the batch it
 * follows is applied and must not be reported as failed).
 */
static void sweep_buckets(mongo_store *st, int64_t keep_from)
{
    bson_t filter = BSON_INITIALIZER, lt, opts = BSON_INITIALIZER, projection;
    BSON_APPEND_UTF8(&filter, "kind", "bucket");
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "bucket", &lt);
    BSON_APPEND_INT64(&lt, "$lt", keep_from);
    bson_append_document_end(&filter, &lt);
    BSON_APPEND_INT64(&opts, "limit", SWEEP_MAX);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &projection);
    BSON_APPEND_INT32(&projection, "_id", 1);
    bson_append_document_end(&opts, &projection);
    mongoc_cursor_t *cursor =
        mongoc_collection_find_with_opts(st->collection, &filter, &opts, NULL);
    bson_t ids = BSON_INITIALIZER, del = BSON_INITIALIZER, in;
    const bson_t *doc;
    uint32_t n = 0;
    BSON_APPEND_DOCUMENT_BEGIN(&del, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &ids);
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "_id")) {
            char key[16];
            const char *k;
            bson_uint32_to_string(n++, &k, key, sizeof key);
            bson_append_iter(&ids, k, -1, &it);
        }
    }
    bson_append_array_end(&in, &ids);
    bson_append_document_end(&del, &in);
    bson_error_t error;
    int failed = mongoc_cursor_error(cursor, &error);
    mongoc_cursor_destroy(cursor);
    if (!failed && n > 0) {
        bson_t dopts = BSON_INITIALIZER;
        mongoc_write_concern_append(st->write_concern, &dopts);
        failed = !mongoc_collection_delete_many(st->collection, &del, &dopts, NULL, &error);
        bson_destroy(&dopts);
    }
    bson_destroy(&del);
    bson_destroy(&ids);
    bson_destroy(&opts);
    bson_destroy(&filter);
}

/*
 * A batch: counters, statistics, buckets (either list may be empty). The
 * counters' deltas become one update each (as before ABI 1.4); statistics
 * and buckets go through the ledger, so that several increments of one
 * record in a batch are one update. All are one unordered bulk under one
 * batch number: the exactly-once scheme above covers every document alike.
 */
static int apply_all(mongo_store *st, const mab_delta *deltas, size_t n_deltas,
                     const mab_stats_delta *stats, size_t n_stats,
                     const mab_bucket_delta *buckets, size_t n_buckets, int64_t keep_from,
                     mab_error *err)
{
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc == MAB_OK)
        rc = check_stats(st, stats, n_stats, err);
    if (rc == MAB_OK)
        rc = check_buckets(st, buckets, n_buckets, err);
    if (rc != MAB_OK)
        return rc;
    st->expire_offset = 0;
    if (keep_from != INT64_MIN) {
        /* retention = now - keep_from: a bucket document expires when the
           retention has passed since its start. */
        int64_t now = (int64_t)time(NULL);
        st->expire_offset = keep_from < now - INT64_MAX / 4000 ? INT64_MAX / 4000
                                                                : now - keep_from;
        if (st->expire_offset < 1)
            st->expire_offset = 1;
    }
    if ((rc = settle_doubt(st, err)) != MAB_OK)
        goto failed;

    /* The statistics and buckets of the batch, summed per record. */
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++)
        for (ledger_entry *e = st->ledger[b]; e; e = e->next) {
            e->offered = 0;
            memset(&e->op, 0, sizeof e->op);
            if (e->v)
                memset(slot_values(e, OP), 0, e->n_values * sizeof(double));
        }
    for (size_t i = 0; i < n_stats; i++) {
        const mab_stats_delta *d = &stats[i];
        int clash;
        ledger_entry *e = ledger_get_record(st, KIND_STATS, d->experiment, d->arm ? d->arm : "",
                                            d->layout, 0, d->n_values, &clash);
        if (!e)
            return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
        if (clash)
            return mab_error_set(err, MAB_EINVAL,
                                 "%s: apply_stats: %s.%s (layout %s): %zu values, earlier %zu",
                                 st->where, d->experiment, d->arm ? d->arm : "(experiment)",
                                 d->layout, d->n_values, e->n_values);
        for (size_t j = 0; j < d->n_values; j++)
            slot_values(e, OP)[j] += d->values[j];
        e->offered = 1;
    }
    for (size_t i = 0; i < n_buckets; i++) {
        const mab_bucket_delta *d = &buckets[i];
        if (keep_from != INT64_MIN && d->bucket < keep_from)
            continue; /* removed by this very call: nothing to add to */
        int clash;
        ledger_entry *e = ledger_get_record(st, KIND_BUCKET, d->experiment, d->arm, NULL,
                                            d->bucket, 0, &clash);
        if (!e)
            return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
        signed_totals add = to_signed(&d->add);
        signed_totals_add(&e->op, &add);
        e->offered = 1;
    }

    /* What to send: the offered increments minus the credit, over both. */
    batch_op *ops = malloc((n_deltas + st->ledger_count + 1) * sizeof *ops);
    if (!ops)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    size_t n_ops = 0;
    for (size_t i = 0; i < n_deltas; i++) {
        batch_op op = {deltas[i].experiment, deltas[i].arm, to_signed(&deltas[i].add),
                       KIND_ARM, NULL, 0, NULL, 0};
        if (st->ledger_count) {
            char doc_id[2 * 128 + 2];
            doc_id_write(doc_id, sizeof doc_id, op.experiment, op.arm);
            ledger_entry *e = ledger_find(st, doc_id);
            if (e && !e->offered) {
                signed_totals_sub(&op.add, &e->credit);
                e->offered = 1;
            }
        }
        if (!signed_totals_zero(&op.add))
            ops[n_ops++] = op;
    }
    for (uint32_t b = 0; b < LEDGER_BUCKETS; b++) {
        for (ledger_entry *e = st->ledger[b]; e; e = e->next) {
            if (e->kind == KIND_BUCKET && keep_from != INT64_MIN && e->bucket < keep_from) {
                /* removed by this call: its credit no longer means anything */
                memset(&e->credit, 0, sizeof e->credit);
                continue;
            }
            if (e->kind != KIND_ARM) {
                /* offered minus credit; not offered: the credit taken back out */
                signed_totals_sub(&e->op, &e->credit);
                for (size_t j = 0; j < e->n_values; j++)
                    slot_values(e, OP)[j] -= slot_values(e, CREDIT)[j];
                if (signed_totals_zero(&e->op) &&
                    (!e->v || values_zero(slot_values(e, OP), e->n_values)))
                    continue;
                ops[n_ops++] = (batch_op){e->experiment, e->arm, e->op, e->kind, e->layout,
                                          e->bucket, e->v ? slot_values(e, OP) : NULL,
                                          e->n_values};
                continue;
            }
            if (e->offered || signed_totals_zero(&e->credit))
                continue;
            /* Credit of a failed call whose increments were not offered
               again (an import): take it back out. */
            batch_op op = {e->experiment, e->arm, {0, 0, 0, 0}, KIND_ARM, NULL, 0, NULL, 0};
            signed_totals_sub(&op.add, &e->credit);
            ops[n_ops++] = op;
        }
    }

    int64_t seq = ++st->batch_seq;
    unsigned char *refused = calloc(n_ops + 1, 1);
    if (!refused) {
        free(ops);
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    }
    rc = n_ops ? send_batch(st, ops, n_ops, seq, refused, err) : MAB_OK;
    if (rc == MAB_OK) {
        ledger_drop(st, NULL);
    } else if (rc == MAB_ERANGE) {
        /* Every update but the refused ones counted: credit, so that the
           core's "stored + not yet applied" stays exact and the batch it
           offers again (in halves, until the refused delta stands alone)
           counts each once. */
        for (size_t i = 0; i < n_ops; i++) {
            if (refused[i])
                continue;
            int clash;
            ledger_entry *e =
                ops[i].kind == KIND_ARM
                    ? ledger_get(st, ops[i].experiment, ops[i].arm)
                    : ledger_get_record(st, ops[i].kind, ops[i].experiment, ops[i].arm,
                                        ops[i].layout, ops[i].bucket, ops[i].n_values, &clash);
            if (!e) {
                /* cannot remember it: report a storage failure in doubt instead */
                rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
                break;
            }
            signed_totals_add(&e->credit, &ops[i].add);
            for (size_t j = 0; j < e->n_values && ops[i].values; j++)
                slot_values(e, CREDIT)[j] += ops[i].values[j];
        }
    } else {
        /* Everything sent is in doubt; the credit stays as it is. */
        for (size_t i = 0; i < n_ops && rc != MAB_ENOMEM; i++) {
            if (ops[i].kind != KIND_ARM) {
                int clash;
                ledger_entry *e = ledger_get_record(st, ops[i].kind, ops[i].experiment,
                                                    ops[i].arm, ops[i].layout, ops[i].bucket,
                                                    ops[i].n_values, &clash);
                e->doubt = e->op;
                for (size_t j = 0; j < e->n_values; j++)
                    slot_values(e, DOUBT)[j] = slot_values(e, OP)[j];
                e->in_doubt = 1;
                continue;
            }
            ledger_entry *e = ledger_get(st, ops[i].experiment, ops[i].arm);
            if (!e) {
                rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
                break;
            }
            e->doubt = ops[i].add;
            e->in_doubt = 1;
        }
        st->doubt_seq = seq;
    }
    free(ops);
    free(refused);
    if (rc == MAB_OK) {
        if (keep_from != INT64_MIN) {
            if (keep_from > st->kept_from)
                st->kept_from = keep_from;
            sweep_buckets(st, keep_from);
        }
        return MAB_OK;
    }
failed:;
    uint64_t waiting = waiting_increments(deltas, n_deltas);
    if (st->max_pending && waiting > st->max_pending && err) {
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used,
                 "; %" PRIu64 " increments wait for the server, more than max_pending (%" PRIu64
                 "); none is dropped",
                 waiting, st->max_pending);
    }
    return rc;
}

static int mongo_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return apply_all(state, deltas, n_deltas, NULL, 0, NULL, 0, INT64_MIN, err);
}

static int mongo_apply_stats(void *state, const mab_delta *deltas, size_t n_deltas,
                             const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    return apply_all(state, deltas, n_deltas, stats, n_stats, NULL, 0, INT64_MIN, err);
}

static int mongo_apply_buckets(void *state, const mab_delta *deltas, size_t n_deltas,
                               const mab_stats_delta *stats, size_t n_stats,
                               const mab_bucket_delta *buckets, size_t n_buckets,
                               int64_t keep_from, mab_error *err)
{
    return apply_all(state, deltas, n_deltas, stats, n_stats, buckets, n_buckets, keep_from,
                     err);
}

/* ---- reading ---------------------------------------------------------- */

static int read_count(const bson_t *doc, const char *key, int64_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key)) {
        *out = 0;
        return 1;
    }
    if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
        *out = bson_iter_as_int64(&it);
        return 1;
    }
    if (BSON_ITER_HOLDS_DOUBLE(&it)) {
        double d = bson_iter_double(&it);
        if (d != floor(d) || !(fabs(d) < 9007199254740992.0))
            return 0;
        *out = (int64_t)d;
        return 1;
    }
    return 0;
}

static int read_sum(const bson_t *doc, const char *key, double *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key)) {
        *out = 0;
        return 1;
    }
    if (!BSON_ITER_HOLDS_NUMBER(&it))
        return 0;
    *out = bson_iter_as_double(&it);
    return isfinite(*out);
}

static const char *read_text(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return bson_iter_utf8(&it, NULL);
}

/*
 * A document's totals as the core must see them: minus the credit, and
 * minus the in-doubt increments when the in-doubt batch reached it (its
 * `w.WRITER` is at least that batch's number).
 */
static int doc_totals(const mongo_store *st, const bson_t *doc, const char **experiment,
                      const char **arm, mab_totals *out, mab_error *err)
{
    const char *id = read_text(doc, "_id");
    *experiment = read_text(doc, "experiment");
    *arm = read_text(doc, "arm");
    bson_iter_t it;
    int64_t version = 0;
    if (bson_iter_init_find(&it, doc, "v") && BSON_ITER_HOLDS_NUMBER(&it))
        version = bson_iter_as_int64(&it);
    if (!id || !*experiment || !*arm)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: a document%s%s%s lacks a string _id, experiment or arm; it "
                             "was not written by mab",
                             st->where, id ? " (_id \"" : "", id ? id : "", id ? "\")" : "");
    if (version != SCHEMA_VERSION)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: document \"%s\" has schema version %" PRId64
                             "; this plugin reads version %d",
                             st->where, id, version, SCHEMA_VERSION);
    signed_totals t;
    if (!read_count(doc, "pulls", &t.pulls) || !read_count(doc, "rewards", &t.rewards) ||
        !read_sum(doc, "reward_sum", &t.reward_sum) ||
        !read_sum(doc, "reward_sum_sq", &t.reward_sum_sq))
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: document \"%s\": pulls, rewards, reward_sum and reward_sum_sq "
                             "must be numbers (counts whole, sums finite)",
                             st->where, id);
    const ledger_entry *e = st->ledger_count ? ledger_find(st, id) : NULL;
    if (e) {
        signed_totals_sub(&t, &e->credit);
        int64_t reached = 0;
        if (e->in_doubt && bson_iter_init(&it, doc) &&
            bson_iter_find_descendant(&it, st->writer_field, &it) &&
            BSON_ITER_HOLDS_NUMBER(&it))
            reached = bson_iter_as_int64(&it);
        if (e->in_doubt && reached >= st->doubt_seq)
            signed_totals_sub(&t, &e->doubt);
        if (!isfinite(t.reward_sum) || !isfinite(t.reward_sum_sq))
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: document \"%s\": its sums less this writer's credit are "
                                 "not finite",
                                 st->where, id);
    }
    out->pulls = t.pulls > 0 ? (uint64_t)t.pulls : 0;
    out->rewards = t.rewards > 0 ? (uint64_t)t.rewards : 0;
    out->reward_sum = t.reward_sum;
    out->reward_sum_sq = t.reward_sum_sq > 0 ? t.reward_sum_sq : 0;
    return MAB_OK;
}

/* Visit the documents matching filter, sorted by _id. */
static int find_sorted(mongo_store *st, const bson_t *filter, const char *sort_key,
                       const char *what,
                       int (*visit)(mongo_store *st, const bson_t *doc, void *ctx,
                                    mab_error *err),
                       void *ctx, mab_error *err)
{
    bson_t opts = BSON_INITIALIZER, projection, sort;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &projection);
    BSON_APPEND_INT32(&projection, "w", 0);
    bson_append_document_end(&opts, &projection);
    if (st->ledger_count) {
        /* Keep only this writer's number (an inclusion would drop the rest). */
        bson_reinit(&opts);
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &projection);
        static const char *const fields[] = {"experiment", "arm",        "v",
                                             "pulls",      "rewards",    "reward_sum",
                                             "reward_sum_sq", "kind",     "layout",
                                             "n",          "s",          "bucket"};
        for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
            BSON_APPEND_INT32(&projection, fields[i], 1);
        BSON_APPEND_INT32(&projection, st->writer_field, 1);
        bson_append_document_end(&opts, &projection);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, sort_key, 1);
    if (strcmp(sort_key, "_id") != 0)
        BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&opts, &sort);
    mongoc_cursor_t *cursor =
        mongoc_collection_find_with_opts(st->collection, filter, &opts, NULL);
    bson_destroy(&opts);
    const bson_t *doc;
    int rc = MAB_OK;
    while (rc == MAB_OK && mongoc_cursor_next(cursor, &doc))
        rc = visit(st, doc, ctx, err);
    bson_error_t error;
    if (rc == MAB_OK && mongoc_cursor_error(cursor, &error))
        rc = store_fail(st, err, MAB_ESTORAGE, &error, "cannot read %s", what);
    mongoc_cursor_destroy(cursor);
    return rc;
}

static int find_each(mongo_store *st, const bson_t *filter, const char *what,
                     int (*visit)(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err),
                     void *ctx, mab_error *err)
{
    return find_sorted(st, filter, "_id", what, visit, ctx, err);
}

/* Counters documents only: statistics and buckets have a "kind". */
static void append_counters_only(bson_t *filter)
{
    bson_t exists;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "kind", &exists);
    BSON_APPEND_BOOL(&exists, "$exists", false);
    bson_append_document_end(filter, &exists);
}

struct load_ctx {
    const char *const *arm_ids;
    size_t n_arms;
    mab_totals *out;
};

static int load_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct load_ctx *x = ctx;
    const char *experiment, *arm;
    mab_totals t;
    int rc = doc_totals(st, doc, &experiment, &arm, &t, err);
    if (rc != MAB_OK)
        return rc;
    for (size_t i = 0; i < x->n_arms; i++)
        if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0)
            x->out[i] = t;
    return MAB_OK;
}

static int mongo_load(void *state, const char *experiment, const char *const *arm_ids,
                      size_t n_arms, mab_totals *out, mab_error *err)
{
    mongo_store *st = state;
    if (!experiment || (n_arms && (!arm_ids || !out)))
        return mab_error_set(err, MAB_EINVAL, "%s: load: NULL argument", st->where);
    mab_totals *totals = calloc(n_arms ? n_arms : 1, sizeof *totals);
    if (!totals)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "experiment", experiment);
    append_counters_only(&filter);
    struct load_ctx x = {arm_ids, n_arms, totals};
    char what[160];
    snprintf(what, sizeof what, "the totals of experiment %s", experiment);
    int rc = find_each(st, &filter, what, load_one, &x, err);
    bson_destroy(&filter);
    /* All or nothing: out keeps its contents when the read fails half-way. */
    if (rc == MAB_OK)
        memcpy(out, totals, n_arms * sizeof *out);
    free(totals);
    return rc;
}

struct scan_ctx {
    int (*visit)(void *ctx, const char *experiment, const char *arm, const mab_totals *totals);
    void *ctx;
};

static int scan_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct scan_ctx *x = ctx;
    const char *experiment, *arm;
    mab_totals t;
    int rc = doc_totals(st, doc, &experiment, &arm, &t, err);
    return rc != MAB_OK ? rc : x->visit(x->ctx, experiment, arm, &t);
}

static int mongo_scan(void *state,
                      int (*visit)(void *ctx, const char *experiment, const char *arm,
                                   const mab_totals *totals),
                      void *ctx, mab_error *err)
{
    mongo_store *st = state;
    bson_t filter = BSON_INITIALIZER;
    append_counters_only(&filter);
    struct scan_ctx x = {visit, ctx};
    int rc = find_each(st, &filter, "the collection", scan_one, &x, err);
    bson_destroy(&filter);
    return rc;
}

/* ---- policy statistics (ABI 1.4) --------------------------------------- */

/*
 * A statistics document's values as the core must see them (minus the
 * credit, minus the in-doubt part when the in-doubt batch reached it) into
 * out[0..n): its "n" must be n (the layout tag fixes it; n 0: any, then *n_out
 * says). *values_out points to out, or to a buffer the caller frees when
 * out is NULL.
 */
static int doc_stats(const mongo_store *st, const bson_t *doc, const char **experiment,
                     const char **arm, const char **layout, size_t want, double **values_out,
                     size_t *n_out, mab_error *err)
{
    const char *id = read_text(doc, "_id");
    *experiment = read_text(doc, "experiment");
    *arm = read_text(doc, "arm");
    *layout = read_text(doc, "layout");
    *values_out = NULL;
    bson_iter_t it, values;
    int64_t version = 0, n = -1;
    if (bson_iter_init_find(&it, doc, "v") && BSON_ITER_HOLDS_NUMBER(&it))
        version = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "n") && BSON_ITER_HOLDS_NUMBER(&it))
        n = bson_iter_as_int64(&it);
    if (!id || !*experiment || !*arm || !*layout || version != SCHEMA_VERSION || n < 0 ||
        n > 100000 || (want && (size_t)n != want))
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: statistics document \"%s\" is unreadable (it needs string "
                             "experiment, arm and layout, v %d and n %zu)",
                             st->where, id ? id : "?", SCHEMA_VERSION, want);
    double *out = calloc((size_t)n + 1, sizeof *out);
    if (!out)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    int ok = 1;
    if (bson_iter_init_find(&it, doc, "s")) {
        ok = (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) &&
             bson_iter_recurse(&it, &values);
        while (ok && bson_iter_next(&values)) {
            char *end;
            const char *key = bson_iter_key(&values);
            unsigned long j = strtoul(key, &end, 10);
            ok = end != key && !*end && j < (unsigned long)n && BSON_ITER_HOLDS_NUMBER(&values);
            if (ok) {
                out[j] = bson_iter_as_double(&values);
                ok = isfinite(out[j]);
            }
        }
    }
    if (!ok) {
        free(out);
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: statistics document \"%s\": \"s\" must hold finite numbers "
                             "at 0..%" PRId64,
                             st->where, id, n - 1);
    }
    ledger_entry *e = st->ledger_count ? ledger_find(st, id) : NULL;
    if (e && e->v && e->n_values == (size_t)n) {
        int64_t reached = 0;
        if (e->in_doubt && bson_iter_init(&it, doc) &&
            bson_iter_find_descendant(&it, st->writer_field, &it) && BSON_ITER_HOLDS_NUMBER(&it))
            reached = bson_iter_as_int64(&it);
        for (size_t j = 0; j < (size_t)n; j++) {
            out[j] -= slot_values(e, CREDIT)[j];
            if (e->in_doubt && reached >= st->doubt_seq)
                out[j] -= slot_values(e, DOUBT)[j];
        }
    }
    *values_out = out;
    *n_out = (size_t)n;
    return MAB_OK;
}

struct load_stats_ctx {
    const char *const *arm_ids;
    size_t n_arms, n_arm_stats, n_exp_stats;
    double *arm_out, *exp_out;
};

static int load_stats_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct load_stats_ctx *x = ctx;
    const char *experiment, *arm, *layout;
    const char *raw_arm = read_text(doc, "arm");
    size_t want = raw_arm && !raw_arm[0] ? x->n_exp_stats : x->n_arm_stats;
    if (want == 0)
        return MAB_OK; /* nothing asked of this record */
    double *values;
    size_t n;
    int rc = doc_stats(st, doc, &experiment, &arm, &layout, want, &values, &n, err);
    if (rc != MAB_OK)
        return rc;
    if (!arm[0])
        memcpy(x->exp_out, values, n * sizeof *values);
    else
        for (size_t i = 0; i < x->n_arms; i++)
            if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0)
                memcpy(x->arm_out + i * x->n_arm_stats, values, n * sizeof *values);
    free(values);
    return MAB_OK;
}

static int mongo_load_stats(void *state, const char *experiment, const char *layout,
                            const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                            double *arm_out, size_t n_experiment_stats, double *experiment_out,
                            mab_error *err)
{
    mongo_store *st = state;
    if (!experiment || !layout || (n_arms && n_arm_stats && (!arm_ids || !arm_out)) ||
        (n_experiment_stats && !experiment_out))
        return mab_error_set(err, MAB_EINVAL, "%s: load_stats: NULL argument", st->where);
    size_t n_arm_values = n_arms * n_arm_stats;
    double *buf = calloc(n_arm_values + n_experiment_stats + 1, sizeof *buf);
    if (!buf)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "experiment", experiment);
    BSON_APPEND_UTF8(&filter, "kind", "stats");
    BSON_APPEND_UTF8(&filter, "layout", layout);
    struct load_stats_ctx x = {arm_ids, n_arms, n_arm_stats, n_experiment_stats, buf,
                               buf + n_arm_values};
    char what[300];
    snprintf(what, sizeof what, "the statistics of experiment %s (layout %s)", experiment,
             layout);
    int rc = find_each(st, &filter, what, load_stats_one, &x, err);
    bson_destroy(&filter);
    /* All or nothing: the outputs keep their contents when the read fails. */
    if (rc == MAB_OK) {
        if (n_arm_values)
            memcpy(arm_out, buf, n_arm_values * sizeof *buf);
        if (n_experiment_stats)
            memcpy(experiment_out, buf + n_arm_values, n_experiment_stats * sizeof *buf);
    }
    free(buf);
    return rc;
}

struct scan_stats_ctx {
    int (*visit)(void *ctx, const char *experiment, const char *arm, const char *layout,
                 const double *values, size_t n_values);
    void *ctx;
};

static int scan_stats_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct scan_stats_ctx *x = ctx;
    const char *experiment, *arm, *layout;
    double *values;
    size_t n;
    int rc = doc_stats(st, doc, &experiment, &arm, &layout, 0, &values, &n, err);
    if (rc != MAB_OK)
        return rc;
    rc = x->visit(x->ctx, experiment, arm[0] ? arm : NULL, layout, values, n);
    free(values);
    return rc;
}

static int mongo_scan_stats(void *state,
                            int (*visit)(void *ctx, const char *experiment, const char *arm,
                                         const char *layout, const double *values,
                                         size_t n_values),
                            void *ctx, mab_error *err)
{
    mongo_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_stats: NULL visitor", st->where);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "kind", "stats");
    struct scan_stats_ctx x = {visit, ctx};
    int rc = find_each(st, &filter, "the statistics", scan_stats_one, &x, err);
    bson_destroy(&filter);
    return rc;
}

/* ---- time buckets (ABI 1.5) ---------------------------------------------- */

/* A bucket that exists only through what the core still holds (credited or
   in doubt, reading as zeros) is not there for the core: not visited. */
static int held_only(const mongo_store *st, const bson_t *doc, const mab_totals *t)
{
    if (t->pulls || t->rewards || t->reward_sum != 0 || t->reward_sum_sq != 0)
        return 0;
    const char *id = read_text(doc, "_id");
    const ledger_entry *e = st->ledger_count && id ? ledger_find(st, id) : NULL;
    return e && (!signed_totals_zero(&e->credit) || e->in_doubt);
}

static int doc_bucket(const mongo_store *st, const bson_t *doc, int64_t *bucket)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "bucket") ||
        !(BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
        return 0;
    *bucket = bson_iter_as_int64(&it);
    (void)st;
    return 1;
}

struct load_buckets_ctx {
    const char *const *arm_ids;
    size_t n_arms;
    int (*visit)(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add);
    void *ctx;
};

static int load_bucket_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct load_buckets_ctx *x = ctx;
    const char *experiment, *arm;
    mab_totals t;
    int64_t bucket;
    int rc = doc_totals(st, doc, &experiment, &arm, &t, err);
    if (rc != MAB_OK)
        return rc;
    if (!doc_bucket(st, doc, &bucket))
        return mab_error_set(err, MAB_ECORRUPT, "%s: bucket document \"%s\" has no whole "
                             "\"bucket\"", st->where, read_text(doc, "_id"));
    if (held_only(st, doc, &t))
        return MAB_OK;
    for (size_t i = 0; i < x->n_arms; i++)
        if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0)
            return x->visit(x->ctx, i, bucket, &t);
    return MAB_OK;
}

static void append_bucket_filter(bson_t *filter, int64_t since)
{
    bson_t gte;
    BSON_APPEND_UTF8(filter, "kind", "bucket");
    if (since != INT64_MIN) {
        BSON_APPEND_DOCUMENT_BEGIN(filter, "bucket", &gte);
        BSON_APPEND_INT64(&gte, "$gte", since);
        bson_append_document_end(filter, &gte);
    }
}

static int mongo_load_buckets(void *state, const char *experiment, const char *const *arm_ids,
                              size_t n_arms, int64_t since,
                              int (*visit)(void *ctx, size_t arm_index, int64_t bucket,
                                           const mab_totals *add),
                              void *ctx, mab_error *err)
{
    mongo_store *st = state;
    if (!experiment || !visit || (n_arms && !arm_ids))
        return mab_error_set(err, MAB_EINVAL, "%s: load_buckets: NULL argument", st->where);
    /* Never a bucket the retention has removed, even while removal lags. */
    if (st->kept_from > since)
        since = st->kept_from;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "experiment", experiment);
    append_bucket_filter(&filter, since);
    struct load_buckets_ctx x = {arm_ids, n_arms, visit, ctx};
    char what[200];
    snprintf(what, sizeof what, "the buckets of experiment %s", experiment);
    int rc = find_sorted(st, &filter, "bucket", what, load_bucket_one, &x, err);
    bson_destroy(&filter);
    return rc;
}

struct scan_buckets_ctx {
    int (*visit)(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                 const mab_totals *add);
    void *ctx;
};

static int scan_bucket_one(mongo_store *st, const bson_t *doc, void *ctx, mab_error *err)
{
    struct scan_buckets_ctx *x = ctx;
    const char *experiment, *arm;
    mab_totals t;
    int64_t bucket;
    int rc = doc_totals(st, doc, &experiment, &arm, &t, err);
    if (rc != MAB_OK)
        return rc;
    if (!doc_bucket(st, doc, &bucket))
        return mab_error_set(err, MAB_ECORRUPT, "%s: bucket document \"%s\" has no whole "
                             "\"bucket\"", st->where, read_text(doc, "_id"));
    if (held_only(st, doc, &t))
        return MAB_OK;
    return x->visit(x->ctx, experiment, arm, bucket, &t);
}

static int mongo_scan_buckets(void *state,
                              int (*visit)(void *ctx, const char *experiment, const char *arm,
                                           int64_t bucket, const mab_totals *add),
                              void *ctx, mab_error *err)
{
    mongo_store *st = state;
    if (!visit)
        return mab_error_set(err, MAB_EINVAL, "%s: scan_buckets: NULL visitor", st->where);
    bson_t filter = BSON_INITIALIZER;
    append_bucket_filter(&filter, st->kept_from);
    struct scan_buckets_ctx x = {visit, ctx};
    int rc = find_each(st, &filter, "the buckets", scan_bucket_one, &x, err);
    bson_destroy(&filter);
    return rc;
}

/* ---- reset and replace ------------------------------------------------- */

/* Append {experiment: {$in: [...]}} to a bulk as one delete of many. */
static bool append_clear(mongoc_bulk_operation_t *bulk, const char *const *experiments,
                         size_t n, bson_error_t *error)
{
    bson_t selector = BSON_INITIALIZER, field, list;
    BSON_APPEND_DOCUMENT_BEGIN(&selector, "experiment", &field);
    BSON_APPEND_ARRAY_BEGIN(&field, "$in", &list);
    for (size_t i = 0; i < n; i++) {
        char key[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        bson_append_utf8(&list, k, -1, experiments[i], -1);
    }
    bson_append_array_end(&field, &list);
    bson_append_document_end(&selector, &field);
    bool ok = mongoc_bulk_operation_remove_many_with_opts(bulk, &selector, NULL, error);
    bson_destroy(&selector);
    return ok;
}

/*
 * Ordered: delete the experiments' documents, then add the deltas. MongoDB
 * without a replica set has no multi-document transactions, so this is not
 * atomic: when it fails, part of it may be done. It is idempotent for
 * deltas of the cleared experiments, so running the same import again
 * finishes it.
 */
static int clear_and_add(mongo_store *st, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, const char *what,
                         mab_error *err)
{
    int rc = check_deltas(st, deltas, n_deltas, err);
    for (size_t i = 0; rc == MAB_OK && i < n_experiments; i++)
        if (!experiments[i])
            rc = mab_error_set(err, MAB_EINVAL, "%s: %s: NULL experiment", st->where, what);
    if (rc != MAB_OK)
        return rc;
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&opts, "ordered", true);
    mongoc_write_concern_append(st->write_concern, &opts);
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(st->collection, &opts);
    bson_destroy(&opts);
    bson_error_t error;
    bool ok = n_experiments == 0 || append_clear(bulk, experiments, n_experiments, &error);
    for (size_t i = 0; ok && i < n_deltas; i++) {
        batch_op op = {deltas[i].experiment, deltas[i].arm, to_signed(&deltas[i].add),
                       KIND_ARM, NULL, 0, NULL, 0};
        ok = append_op(st, bulk, &op, 0, &error);
    }
    if (ok && (n_experiments || n_deltas)) {
        bson_t reply;
        ok = mongoc_bulk_operation_execute(bulk, &reply, &error);
        bson_destroy(&reply);
    }
    mongoc_bulk_operation_destroy(bulk);
    /* Whatever happened, these experiments' documents were (maybe) deleted:
       what was credited or in doubt for them no longer means anything. */
    for (size_t i = 0; i < n_experiments; i++)
        ledger_drop(st, experiments[i]);
    if (!ok)
        return store_fail(st, err, MAB_ESTORAGE, &error, "cannot %s", what);
    return MAB_OK;
}

static int mongo_reset(void *state, const char *experiment, mab_error *err)
{
    mongo_store *st = state;
    if (!experiment)
        return mab_error_set(err, MAB_EINVAL, "%s: reset: NULL experiment", st->where);
    char what[160];
    snprintf(what, sizeof what, "reset experiment %s", experiment);
    return clear_and_add(st, &experiment, 1, NULL, 0, what, err);
}

static int mongo_replace(void *state, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return clear_and_add(state, experiments, n_experiments, deltas, n_deltas,
                         "replace the records of the imported experiments", err);
}

/* ---- open and close ---------------------------------------------------- */

static void store_free(mongo_store *st)
{
    ledger_drop(st, NULL);
    if (st->collection)
        mongoc_collection_destroy(st->collection);
    if (st->claims)
        mongoc_collection_destroy(st->claims);
    if (st->client)
        mongoc_client_destroy(st->client);
    if (st->write_concern)
        mongoc_write_concern_destroy(st->write_concern);
    free(st->database);
    free(st->collection_name);
    free(st->password);
    free(st->password_raw);
    free(st);
}

/* Remove this process's batch numbers from the documents it wrote. Only a
   courtesy to the store's size: failures are ignored. */
static void forget_writer(mongo_store *st)
{
    if (st->batch_seq == 0 || st->doubt_seq)
        return;
    bson_t selector = BSON_INITIALIZER, exists, update = BSON_INITIALIZER, unset;
    BSON_APPEND_DOCUMENT_BEGIN(&selector, st->writer_field, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", true);
    bson_append_document_end(&selector, &exists);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
    BSON_APPEND_UTF8(&unset, st->writer_field, "");
    bson_append_document_end(&update, &unset);
    (void)mongoc_collection_update_many(st->collection, &selector, &update, NULL, NULL, NULL);
    bson_destroy(&update);
    bson_destroy(&selector);
}

/* ---- claims ------------------------------------------------------------ */

static void claim_doc_id(const uint8_t *id, char out[2 * MAB_ASSIGNMENT_ID_BYTES + 1])
{
    for (size_t b = 0; b < MAB_ASSIGNMENT_ID_BYTES; b++)
        snprintf(out + 2 * b, 3, "%02x", id[b]);
}

/* Delete the claims of claims[0..n) granted in this call; 0 on failure. */
static int release_claims(mongo_store *st, const mab_claim *claims, size_t n,
                          const bson_t *opts, bson_error_t *error)
{
    int ok = 1;
    for (size_t k = 0; k < n; k++) {
        if (claims[k].result != MAB_OK)
            continue;
        char id[2 * MAB_ASSIGNMENT_ID_BYTES + 1];
        claim_doc_id(claims[k].assignment_id, id);
        bson_t selector = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&selector, "_id", id);
        if (!mongoc_collection_delete_one(st->claims, &selector, opts, NULL, error))
            ok = 0;
        bson_destroy(&selector);
    }
    return ok;
}

/* One insert per claim (the unique _id decides), then the granted claims'
   increments as one apply; if anything fails, the claims made are deleted. */
static int mongo_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                       mab_error *err)
{
    (void)flags; /* the configured write concern decides durability */
    mongo_store *st = state;
    if (n_claims && !claims)
        return mab_error_set(err, MAB_EINVAL, "%s: claim: NULL claims", st->where);
    size_t n_deltas = 0;
    for (size_t k = 0; k < n_claims; k++) {
        if (!claims[k].assignment_id)
            return mab_error_set(err, MAB_EINVAL, "%s: claim %zu: NULL assignment id",
                                 st->where, k);
        int rc = check_deltas(st, claims[k].deltas, claims[k].n_deltas, err);
        if (rc != MAB_OK)
            return rc;
        n_deltas += claims[k].n_deltas;
        claims[k].result = MAB_ECLAIMED;
    }
    mab_delta *deltas = malloc((n_deltas ? n_deltas : 1) * sizeof *deltas);
    if (!deltas)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", st->where);
    bson_t opts = BSON_INITIALIZER;
    mongoc_write_concern_append(st->write_concern, &opts);
    int rc = MAB_OK;
    size_t n_taken = 0, k = 0;
    for (; k < n_claims && rc == MAB_OK; k++) {
        char id[2 * MAB_ASSIGNMENT_ID_BYTES + 1];
        claim_doc_id(claims[k].assignment_id, id);
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "_id", id);
        BSON_APPEND_DATE_TIME(&doc, "expires_at", claims[k].expires_at * 1000);
        bson_error_t error;
        bson_t reply;
        bool ok = mongoc_collection_insert_one(st->claims, &doc, &opts, &reply, &error);
        bson_destroy(&reply);
        bson_destroy(&doc);
        if (ok) {
            claims[k].result = MAB_OK;
            /* One increment per record: apply's exactly-once numbering takes
               a second update of one record in a batch for a resend. */
            for (size_t i = 0; i < claims[k].n_deltas; i++) {
                const mab_delta *d = &claims[k].deltas[i];
                size_t j = 0;
                while (j < n_taken && (strcmp(deltas[j].experiment, d->experiment) != 0 ||
                                       strcmp(deltas[j].arm, d->arm) != 0))
                    j++;
                if (j == n_taken) {
                    deltas[n_taken++] = *d;
                } else {
                    deltas[j].add.pulls += d->add.pulls;
                    deltas[j].add.rewards += d->add.rewards;
                    deltas[j].add.reward_sum += d->add.reward_sum;
                    deltas[j].add.reward_sum_sq += d->add.reward_sum_sq;
                }
            }
        } else if (error.code != DUP_KEY) {
            rc = store_fail(st, err, MAB_ESTORAGE, &error, "cannot claim assignment %s", id);
        }
    }
    if (rc == MAB_OK && n_taken)
        rc = mongo_apply(st, deltas, n_taken, err);
    if (rc != MAB_OK) {
        /* The apply counts as not made (see the top); take the claims back
           so that a retry can count the rewards. */
        bson_error_t undo_error;
        if (!release_claims(st, claims, k, &opts, &undo_error)) {
            char first[MAB_ERROR_MAX];
            snprintf(first, sizeof first, "%s", err ? err->message : "");
            mab_error_set(err, rc,
                          "%.200s; claims made by this call remain without their reward "
                          "(cannot delete them: %.150s)",
                          first, undo_error.message);
        }
    }
    bson_destroy(&opts);
    free(deltas);
    return rc;
}

static void mongo_close(void *state)
{
    mongo_store *st = state;
    if (!st)
        return;
    forget_writer(st);
    store_free(st);
}

static void set_default_timeout(mongoc_uri_t *uri, const char *option, int32_t value)
{
    if (!mongoc_uri_has_option(uri, option))
        mongoc_uri_set_option_as_int32(uri, option, value);
}

/* write_concern: "majority", a number of nodes ("1", "2", ...) or a tag set name. */
static int parse_write_concern(mongo_store *st, mab_params *params, const mongoc_uri_t *uri)
{
    st->write_concern = mongoc_write_concern_new();
    if (!st->write_concern)
        return MAB_ENOMEM;
    const mongoc_write_concern_t *from_uri = mongoc_uri_get_write_concern(uri);
    if (!mab_params_has(params, "write_concern") && from_uri &&
        mongoc_write_concern_get_w(from_uri) != MONGOC_WRITE_CONCERN_W_DEFAULT) {
        mongoc_write_concern_destroy(st->write_concern);
        st->write_concern = mongoc_write_concern_copy(from_uri);
        return st->write_concern ? MAB_OK : MAB_ENOMEM;
    }
    const char *text;
    int rc = mab_params_string(params, "write_concern", "majority", &text);
    if (rc != MAB_OK)
        return rc;
    char *end;
    errno = 0;
    long w = strtol(text, &end, 10);
    if (strcmp(text, "majority") == 0) {
        mongoc_write_concern_set_wmajority(st->write_concern, WRITE_CONCERN_TIMEOUT_MS);
    } else if (end != text && *end == '\0') {
        if (errno || w < 1 || w > 50)
            return mab_params_fail(params, "write_concern",
                                   "\"%s\": expected \"majority\", a number of nodes from 1 to 50 "
                                   "(0 would not report failed writes) or a tag set name",
                                   text);
        mongoc_write_concern_set_w(st->write_concern, (int32_t)w);
        mongoc_write_concern_set_wtimeout_int64(st->write_concern, WRITE_CONCERN_TIMEOUT_MS);
    } else if (text[0]) {
        mongoc_write_concern_set_wtag(st->write_concern, text);
        mongoc_write_concern_set_wtimeout_int64(st->write_concern, WRITE_CONCERN_TIMEOUT_MS);
    } else {
        return mab_params_fail(params, "write_concern", "must not be empty");
    }
    return MAB_OK;
}

/* Read the plugin's keys and parse the URI. Errors are config errors. */
static int read_params(mongo_store *st, mab_params *params, mongoc_uri_t **uri_out,
                       mab_error *err)
{
    const char *uri_text;
    int rc = mab_params_string(params, "uri", NULL, &uri_text);
    if (rc == MAB_OK && !uri_text)
        rc = mab_params_fail(params, "uri", "is required (a MongoDB connection string, "
                                            "e.g. \"mongodb://db1.example.com:27017\")");
    if (rc != MAB_OK)
        return rc;
    char redacted[256], hosts[160];
    uri_redact(uri_text, redacted, sizeof redacted);
    uri_hosts(redacted, hosts, sizeof hosts);
    st->password_raw = uri_raw_password(uri_text);
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &error);
    if (!uri) {
        scrub_secret(error.message, sizeof error.message, st->password_raw);
        return mab_params_fail(params, "uri", "%s is not a valid MongoDB connection string: %s",
                               redacted, error.message);
    }
    const char *password = mongoc_uri_get_password(uri);
    if (password && password[0] && !(st->password = strdup(password))) {
        mongoc_uri_destroy(uri);
        return MAB_ENOMEM;
    }
    const char *uri_db = mongoc_uri_get_database(uri);
    const char *database, *collection;
    int64_t max_pending;
    if ((rc = mab_params_string(params, "database", uri_db, &database)) != MAB_OK ||
        (rc = mab_params_string(params, "collection", "mab_arms", &collection)) != MAB_OK ||
        (rc = mab_params_int(params, "max_pending", 0, 0, INT64_MAX, &max_pending)) != MAB_OK ||
        (rc = parse_write_concern(st, params, uri)) != MAB_OK) {
        mongoc_uri_destroy(uri);
        return rc;
    }
    if (!database || !database[0]) {
        mongoc_uri_destroy(uri);
        return mab_params_fail(params, "database",
                               "is required (or name the database in the uri: %s/DATABASE)",
                               redacted);
    }
    if (!collection[0] || collection[0] == '$' || strchr(database, '.') ||
        strpbrk(database, "/\\ \"$")) {
        mongoc_uri_destroy(uri);
        return mab_params_fail(params, !collection[0] || collection[0] == '$' ? "collection"
                                                                                : "database",
                               "\"%s\" is not a valid MongoDB name",
                               !collection[0] || collection[0] == '$' ? collection : database);
    }
    st->max_pending = (uint64_t)max_pending;
    st->database = strdup(database);
    st->collection_name = strdup(collection);
    if (!st->database || !st->collection_name) {
        mongoc_uri_destroy(uri);
        return MAB_ENOMEM;
    }
    snprintf(st->where, sizeof st->where, "MongoDB at %s, database %s, collection %s", hosts,
             database, collection);
    mongoc_uri_set_appname(uri, "mab");
    set_default_timeout(uri, MONGOC_URI_CONNECTTIMEOUTMS, DEFAULT_CONNECT_TIMEOUT_MS);
    set_default_timeout(uri, MONGOC_URI_SOCKETTIMEOUTMS, DEFAULT_SOCKET_TIMEOUT_MS);
    set_default_timeout(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, DEFAULT_SELECTION_TIMEOUT_MS);
    (void)err;
    *uri_out = uri;
    return MAB_OK;
}

/* Connect (ping: fails on unreachable hosts and bad credentials) and create
   the index the refresh query uses. */
/* The claims collection and its TTL index (the server removes expired claims). */
static int create_claims_index(mongo_store *st, mab_error *err)
{
    char name[512];
    snprintf(name, sizeof name, "%s_claims", st->collection_name);
    st->claims = mongoc_client_get_collection(st->client, st->database, name);
    bson_t command = BSON_INITIALIZER, indexes, index, keys, opts = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&command, "createIndexes", name);
    BSON_APPEND_ARRAY_BEGIN(&command, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    BSON_APPEND_INT32(&keys, "expires_at", 1);
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", "expires_at_ttl");
    BSON_APPEND_INT32(&index, "expireAfterSeconds", 0);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&command, &indexes);
    mongoc_write_concern_append(st->write_concern, &opts);
    bson_error_t error;
    bool ok =
        mongoc_collection_write_command_with_opts(st->claims, &command, &opts, NULL, &error);
    bson_destroy(&opts);
    bson_destroy(&command);
    if (!ok)
        return store_fail(st, err, MAB_ESTORAGE, &error,
                          "cannot create the TTL index on %s.expires_at", name);
    return MAB_OK;
}

static int connect_store(mongo_store *st, const mongoc_uri_t *uri, mab_error *err)
{
    bson_error_t error;
    st->client = mongoc_client_new_from_uri_with_error(uri, &error);
    if (!st->client)
        return store_fail(st, err, MAB_ESTORAGE, &error, "cannot create a client");
    mongoc_client_set_error_api(st->client, MONGOC_ERROR_API_VERSION_2);
    st->collection = mongoc_client_get_collection(st->client, st->database, st->collection_name);
    bson_t ping = BSON_INITIALIZER;
    BSON_APPEND_INT32(&ping, "ping", 1);
    bool ok = mongoc_client_command_simple(st->client, "admin", &ping, NULL, NULL, &error);
    bson_destroy(&ping);
    if (!ok) {
        const char *why = error.domain == MONGOC_ERROR_CLIENT &&
                                  error.code == MONGOC_ERROR_CLIENT_AUTHENTICATE
                              ? "authentication failed"
                              : "cannot connect";
        return store_fail(st, err, MAB_ESTORAGE, &error, "%s", why);
    }
    bson_t command = BSON_INITIALIZER, indexes, index, keys, opts = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&command, "createIndexes", st->collection_name);
    BSON_APPEND_ARRAY_BEGIN(&command, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    BSON_APPEND_INT32(&keys, "experiment", 1);
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", "experiment_1");
    bson_append_document_end(&indexes, &index);
    /* Buckets: read by experiment from a start on; removed by the server's
       TTL monitor once expire_at has passed (counters and statistics have
       no expire_at, so the index never touches them). */
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "1", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    BSON_APPEND_INT32(&keys, "experiment", 1);
    BSON_APPEND_INT32(&keys, "kind", 1);
    BSON_APPEND_INT32(&keys, "bucket", 1);
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", "experiment_kind_bucket");
    bson_append_document_end(&indexes, &index);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "2", &index); /* the sweep's */
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    BSON_APPEND_INT32(&keys, "kind", 1);
    BSON_APPEND_INT32(&keys, "bucket", 1);
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", "kind_bucket");
    bson_append_document_end(&indexes, &index);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "3", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    BSON_APPEND_INT32(&keys, "expire_at", 1);
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", "expire_at_ttl");
    BSON_APPEND_INT32(&index, "expireAfterSeconds", 0);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&command, &indexes);
    mongoc_write_concern_append(st->write_concern, &opts);
    ok = mongoc_collection_write_command_with_opts(st->collection, &command, &opts, NULL, &error);
    bson_destroy(&opts);
    bson_destroy(&command);
    if (!ok)
        return store_fail(st, err, MAB_ESTORAGE, &error,
                          "cannot create the indexes on \"experiment\" and \"expire_at\"");
    return create_claims_index(st, err);
}

static int new_writer_id(mongo_store *st, mab_error *err)
{
    uint64_t id;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
        return mab_error_set(err, MAB_ESTORAGE, "%s: cannot draw a writer id: %s", st->where,
                             strerror(errno));
    snprintf(st->writer_field, sizeof st->writer_field, "w.%016" PRIx64, id);
    return MAB_OK;
}

/* What open() and check() both start with: libmongoc set up, a store
   whose parameters are read (*uri to destroy by the caller). On an error the
   store (possibly NULL) is still returned in *out for store_free(). */
static int store_from_params(mab_params *params, mongo_store **out, mongoc_uri_t **uri,
                             mab_error *err)
{
    mongoc_init(); /* once per process; later calls do nothing */
    /* libmongoc logs to stderr by default (e.g. every failed authentication),
       and mab never prints: every failure reaches the caller as an error.
       The handler is process-wide; a host that uses libmongoc itself and
       wants its log sets its handler again after mab_open. */
    mongoc_log_set_handler(NULL, NULL);
    *uri = NULL;
    mongo_store *st = *out = calloc(1, sizeof *st);
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "mongodb: out of memory");
    snprintf(st->where, sizeof st->where, "MongoDB");
    st->kept_from = INT64_MIN;
    int rc = read_params(st, params, uri, err);
    if (rc == MAB_ENOMEM)
        mab_error_set(err, rc, "mongodb: out of memory");
    else if (rc != MAB_OK)
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
    return rc;
}

static int mongo_open(mab_params *params, void **state, mab_error *err)
{
    mongo_store *st;
    mongoc_uri_t *uri;
    int rc = store_from_params(params, &st, &uri, err);
    if (!st)
        return rc;
    if (rc == MAB_OK)
        rc = new_writer_id(st, err);
    if (rc == MAB_OK)
        rc = connect_store(st, uri, err);
    mongoc_uri_destroy(uri);
    if (rc != MAB_OK) {
        store_free(st);
        return rc;
    }
    *state = st;
    return MAB_OK;
}

/* ABI 1.2 check: the parameters as open() reads them, then a ping and a
   find of one document (reads only: no index is created, nothing written),
   so a config test catches an unreachable server, bad credentials and a
   collection the user may not read. */
static int mongo_check(mab_params *params, mab_error *err)
{
    mongo_store *st;
    mongoc_uri_t *uri;
    int rc = store_from_params(params, &st, &uri, err);
    if (!st)
        return rc;
    bson_error_t error;
    if (rc == MAB_OK && !(st->client = mongoc_client_new_from_uri_with_error(uri, &error)))
        rc = store_fail(st, err, MAB_ESTORAGE, &error, "cannot create a client");
    if (rc == MAB_OK) {
        mongoc_client_set_error_api(st->client, MONGOC_ERROR_API_VERSION_2);
        st->collection = mongoc_client_get_collection(st->client, st->database,
                                                      st->collection_name);
        bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
        BSON_APPEND_INT64(&opts, "limit", 1);
        mongoc_cursor_t *cursor =
            mongoc_collection_find_with_opts(st->collection, &filter, &opts, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cursor, &doc))
            ;
        if (mongoc_cursor_error(cursor, &error))
            rc = store_fail(st, err, MAB_ESTORAGE, &error, "cannot read the collection");
        mongoc_cursor_destroy(cursor);
        bson_destroy(&opts);
        bson_destroy(&filter);
    }
    mongoc_uri_destroy(uri);
    store_free(st);
    return rc;
}

static const mab_storage mongodb_storage = {
    MAB_STORAGE_HEADER,
    "mongodb",
    "one MongoDB collection shared by many machines ($inc upserts, exactly once across "
    "retries)",
    mongo_open,
    mongo_load,
    mongo_apply,
    mongo_reset,
    mongo_close,
    1000, /* refresh_ms: other machines write the same documents */
    mongo_scan,
    mongo_replace,
    mongo_check,
    NULL, /* open_read_only: open() takes no lock; readers share the collection */
    mongo_claim,
    mongo_apply_stats,
    mongo_load_stats,
    mongo_scan_stats,
    mongo_apply_buckets,
    mongo_load_buckets,
    mongo_scan_buckets,
    NULL, /* changed (ABI 1.6): each refresh re-reads every experiment */
};

MAB_STORAGE_DEFINE(mongodb_storage)
