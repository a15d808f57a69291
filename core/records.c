/*
 * records.c - the record-set JSON document (include/mab/records.h): the one
 * reader and the one writer behind `mab export`/`mab import` and the
 * json_file storage plugin's state file.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mab/records.h"

typedef struct kind_info {
    const char *tag;         /* the "format" field */
    const char *what;        /* in "unsupported WHAT version" */
    const char *description; /* in "format: expected TAG (DESCRIPTION)" */
} kind_info;

static const kind_info *kind_lookup(mab_records_kind kind)
{
    static const kind_info export_kind = {"mab-export", "export",
                                          "a file written by `mab export`"};
    static const kind_info store_kind = {"mab-json-storage", "json_file store",
                                         "a json_file storage file"};
    switch (kind) {
    case MAB_RECORDS_EXPORT: return &export_kind;
    case MAB_RECORDS_JSON_STORE: return &store_kind;
    }
    return NULL;
}

const char *mab_records_format_tag(mab_records_kind kind)
{
    const kind_info *k = kind_lookup(kind);
    return k ? k->tag : NULL;
}

/* ---- a set of (experiment, arm) pairs, to refuse duplicates ---------- */

/* arm NULL stands for the experiment itself (a duplicate experiment key). */
typedef struct pair_entry {
    const char *experiment;
    const char *arm;
    void *value; /* the writer's: an experiment's JSON object (document_tree) */
} pair_entry;

typedef struct pair_set {
    pair_entry *slots; /* experiment NULL: empty slot */
    size_t mask;       /* capacity - 1, capacity a power of two */
} pair_set;

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h * 1099511628211u; /* the terminator too, so "ab"+"c" differs from "a"+"bc" */
}

static bool pair_set_init(pair_set *set, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1 && cap < SIZE_MAX / 4)
        cap *= 2;
    set->slots = calloc(cap, sizeof *set->slots);
    set->mask = cap - 1;
    return set->slots != NULL;
}

/* The slot of a pair: the one holding it, or the empty one it would take. */
static pair_entry *pair_set_slot(pair_set *set, const char *experiment, const char *arm)
{
    uint64_t h = fnv1a(1469598103934665603u, experiment);
    h = arm ? fnv1a(h, arm) : h ^ 0x9e3779b97f4a7c15u;
    for (size_t i = (size_t)h & set->mask;; i = (i + 1) & set->mask) {
        pair_entry *e = &set->slots[i];
        if (!e->experiment || (strcmp(e->experiment, experiment) == 0 &&
                               (arm ? e->arm && strcmp(e->arm, arm) == 0 : !e->arm)))
            return e;
    }
}

/* Add a pair; false when it was already there. */
static bool pair_set_add(pair_set *set, const char *experiment, const char *arm)
{
    pair_entry *e = pair_set_slot(set, experiment, arm);
    if (e->experiment)
        return false;
    e->experiment = experiment;
    e->arm = arm;
    return true;
}

/* ---- writing ----------------------------------------------------------- */

/*
 * The fewest digits (15 to 17) that read back as exactly d, with a '.' as
 * the decimal point whatever the locale (a host may have called setlocale).
 */
static void number_text(double d, char *out, size_t size)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, size, "%.*g", digits, d);
        if (strtod(out, NULL) == d)
            break;
    }
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && point[1] == '\0') {
        char *p = strchr(out, point[0]);
        if (p)
            *p = '.';
    }
}

static cJSON *raw_double(double d)
{
    char text[48];
    number_text(d, text, sizeof text);
    return cJSON_CreateRaw(text);
}

static cJSON *raw_counter(uint64_t n)
{
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)n);
    return cJSON_CreateRaw(text);
}

/* Refuse what the reader would refuse, naming the record and field. */
static int check_record(const mab_record *r, size_t index, mab_error *err)
{
    if (!r->experiment || !r->arm)
        return mab_error_set(err, MAB_EINVAL, "record %zu: NULL experiment or arm", index);
    const char *field = NULL, *why = NULL;
    int code = MAB_EINVAL;
    if (r->pulls > MAB_RECORDS_COUNTER_MAX)
        field = "pulls", why = "above 2^53, which JSON cannot carry exactly", code = MAB_ERANGE;
    else if (r->rewards > MAB_RECORDS_COUNTER_MAX)
        field = "rewards", why = "above 2^53, which JSON cannot carry exactly", code = MAB_ERANGE;
    else if (!isfinite(r->reward_sum))
        field = "reward_sum", why = "not a finite number";
    else if (!isfinite(r->reward_sum_sq) || r->reward_sum_sq < 0)
        field = "reward_sum_sq", why = "not a finite, non-negative number";
    if (field)
        return mab_error_set(err, code, "experiments.%s.%s.%s: %s", r->experiment, r->arm,
                             field, why);
    return MAB_OK;
}

static cJSON *record_object(const mab_record *r)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj || !cJSON_AddItemToObject(obj, "pulls", raw_counter(r->pulls)) ||
        !cJSON_AddItemToObject(obj, "rewards", raw_counter(r->rewards)) ||
        !cJSON_AddItemToObject(obj, "reward_sum", raw_double(r->reward_sum)) ||
        !cJSON_AddItemToObject(obj, "reward_sum_sq", raw_double(r->reward_sum_sq))) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* The "claims" object: 32 lowercase hex digits of the id -> expires_at.
   NULL with err set. */
static cJSON *claims_object(const mab_record_claim *claims, size_t n, mab_error *err)
{
    cJSON *obj = cJSON_CreateObject();
    for (size_t i = 0; obj && i < n; i++) {
        char hex[2 * MAB_RECORD_CLAIM_ID_BYTES + 1];
        for (size_t b = 0; b < MAB_RECORD_CLAIM_ID_BYTES; b++)
            snprintf(hex + 2 * b, 3, "%02x", claims[i].assignment_id[b]);
        cJSON *value = cJSON_CreateNumber((double)claims[i].expires_at);
        if (!value || !cJSON_AddItemToObject(obj, hex, value)) {
            cJSON_Delete(value);
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    if (!obj)
        mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
    return obj;
}

/* The document as a cJSON tree; NULL with err set. */
static cJSON *document_tree(const kind_info *k, const mab_record *records, size_t n,
                            const mab_record_claim *claims, size_t n_claims, mab_error *err)
{
    pair_set seen; /* each (experiment, arm), and each experiment with arm NULL */
    if (!pair_set_init(&seen, 2 * n)) {
        mab_error_set(err, MAB_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *experiments = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "format", k->tag) &&
              cJSON_AddItemToObject(root, "version", raw_counter(MAB_RECORDS_VERSION)) &&
              (experiments = cJSON_AddObjectToObject(root, "experiments"));
    /* Records of one experiment are mostly adjacent: remember the last one. */
    const char *last_name = NULL;
    cJSON *last_obj = NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const mab_record *r = &records[i];
        if (check_record(r, i, err) != MAB_OK)
            goto fail;
        if (!pair_set_add(&seen, r->experiment, r->arm)) {
            mab_error_set(err, MAB_EINVAL, "experiments.%s.%s: the record is given twice",
                          r->experiment, r->arm);
            goto fail;
        }
        if (!last_name || strcmp(last_name, r->experiment) != 0) {
            /* By hash, not cJSON's linear lookup: a store of N experiments
               is written in O(N), not O(N^2). */
            pair_entry *x = pair_set_slot(&seen, r->experiment, NULL);
            if (!x->experiment) {
                x->experiment = r->experiment;
                x->value = cJSON_AddObjectToObject(experiments, r->experiment);
            }
            last_obj = x->value;
            last_name = r->experiment;
        }
        cJSON *arm = last_obj ? record_object(r) : NULL;
        ok = arm && cJSON_AddItemToObject(last_obj, r->arm, arm);
        if (arm && !ok)
            cJSON_Delete(arm);
    }
    if (!ok) {
        mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
        goto fail;
    }
    if (n_claims) {
        cJSON *c = claims_object(claims, n_claims, err);
        if (!c)
            goto fail;
        if (!cJSON_AddItemToObject(root, "claims", c)) {
            cJSON_Delete(c);
            mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
            goto fail;
        }
    }
    free(seen.slots);
    return root;
fail:
    free(seen.slots);
    cJSON_Delete(root);
    return NULL;
}

static int stats_same_key(const mab_stats_record *a, const mab_stats_record *b)
{
    return strcmp(a->experiment, b->experiment) == 0 && strcmp(a->layout, b->layout) == 0 &&
           ((!a->arm && !b->arm) || (a->arm && b->arm && strcmp(a->arm, b->arm) == 0));
}

static int check_stats_record(const mab_stats_record *st, size_t index, mab_error *err)
{
    if (!st->experiment || !st->experiment[0] || !st->layout || !st->layout[0] ||
        (st->arm && !st->arm[0]))
        return mab_error_set(err, MAB_EINVAL,
                             "policy_stats[%zu]: experiment and layout must be non-empty "
                             "strings, arm non-empty or NULL",
                             index);
    if (st->n_values > MAB_RECORDS_STATS_MAX || (st->n_values && !st->values))
        return mab_error_set(err, MAB_EINVAL, "policy_stats[%zu]: %zu values (at most %d)",
                             index, st->n_values, MAB_RECORDS_STATS_MAX);
    for (size_t j = 0; j < st->n_values; j++)
        if (!isfinite(st->values[j]))
            return mab_error_set(err, MAB_EINVAL, "policy_stats[%zu].values[%zu]: not finite",
                                 index, j);
    return MAB_OK;
}

/* Add "policy_stats" to a document tree; MAB_OK or an error with err set. */
static int add_stats_tree(cJSON *root, const mab_stats_record *stats, size_t n, mab_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = check_stats_record(&stats[i], i, err);
        if (rc != MAB_OK)
            return rc;
        /* Documents hold few statistics records per experiment: a plain
           scan keeps this free of another index. */
        for (size_t k = 0; k < i; k++)
            if (stats_same_key(&stats[i], &stats[k]))
                return mab_error_set(err, MAB_EINVAL,
                                     "policy_stats[%zu]: %s%s%s (layout %s) is given twice", i,
                                     stats[i].experiment, stats[i].arm ? "." : "",
                                     stats[i].arm ? stats[i].arm : "", stats[i].layout);
    }
    cJSON *list = cJSON_AddArrayToObject(root, "policy_stats");
    for (size_t i = 0; list && i < n; i++) {
        const mab_stats_record *st = &stats[i];
        cJSON *obj = cJSON_CreateObject(), *values = NULL;
        bool ok = obj && cJSON_AddItemToArray(list, obj) &&
                  cJSON_AddStringToObject(obj, "experiment", st->experiment) &&
                  (!st->arm || cJSON_AddStringToObject(obj, "arm", st->arm)) &&
                  cJSON_AddStringToObject(obj, "layout", st->layout) &&
                  (values = cJSON_AddArrayToObject(obj, "values"));
        for (size_t j = 0; ok && j < st->n_values; j++) {
            cJSON *v = raw_double(st->values[j]);
            ok = v && cJSON_AddItemToArray(values, v);
        }
        if (!ok)
            list = NULL;
    }
    if (!list)
        return mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
    return MAB_OK;
}

/* ---- time buckets (json_file store, storage ABI 1.5) ------------------- */

/* Refuse what the reader would refuse, naming the bucket (its ids are
   checked first, by the caller). */
static int check_bucket(const mab_bucket_record *b, size_t in_arm, mab_error *err)
{
    if (b->start > MAB_RECORDS_BUCKET_START_MAX || b->start < -MAB_RECORDS_BUCKET_START_MAX)
        return mab_error_set(err, MAB_EINVAL,
                             "buckets.%s.%s[%zu]: start %lld is beyond 2^53 seconds",
                             b->experiment, b->arm, in_arm, (long long)b->start);
    if (b->pulls > MAB_RECORDS_COUNTER_MAX || b->rewards > MAB_RECORDS_COUNTER_MAX)
        return mab_error_set(err, MAB_ERANGE, "buckets.%s.%s[%zu]: a count above 2^53",
                             b->experiment, b->arm, in_arm);
    if (!isfinite(b->reward_sum) || !isfinite(b->reward_sum_sq) || b->reward_sum_sq < 0)
        return mab_error_set(err, MAB_EINVAL,
                             "buckets.%s.%s[%zu]: reward_sum must be finite and reward_sum_sq "
                             "finite and non-negative",
                             b->experiment, b->arm, in_arm);
    return MAB_OK;
}

static cJSON *bucket_item(const mab_bucket_record *b)
{
    char start[24];
    snprintf(start, sizeof start, "%lld", (long long)b->start);
    cJSON *item = cJSON_CreateArray();
    cJSON *parts[5] = {cJSON_CreateRaw(start), raw_counter(b->pulls), raw_counter(b->rewards),
                       raw_double(b->reward_sum), raw_double(b->reward_sum_sq)};
    bool ok = item != NULL;
    for (int i = 0; i < 5; i++) {
        if (ok && parts[i] && cJSON_AddItemToArray(item, parts[i]))
            continue;
        ok = false;
        cJSON_Delete(parts[i]);
    }
    if (!ok) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

static int add_buckets_indexed(cJSON *top, pair_set *objects, const mab_bucket_record *buckets,
                               size_t n, mab_error *err);

/* Add "buckets" to a document tree; MAB_OK or an error with err set. */
static int add_buckets_tree(cJSON *root, const mab_bucket_record *buckets, size_t n,
                            mab_error *err)
{
    cJSON *top = cJSON_AddObjectToObject(root, "buckets");
    pair_set objects; /* experiment -> its object, (experiment, arm) -> its list */
    if (!top || !pair_set_init(&objects, 2 * n))
        return mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
    int rc = add_buckets_indexed(top, &objects, buckets, n, err);
    free(objects.slots);
    return rc;
}

/* add_buckets_tree's work, finding objects by hash rather than by cJSON's
   linear lookup (O(N), not O(N^2), in the experiments). */
static int add_buckets_indexed(cJSON *top, pair_set *objects, const mab_bucket_record *buckets,
                               size_t n, mab_error *err)
{
    const char *last_exp = NULL, *last_arm = NULL;
    cJSON *exp_obj = NULL, *arm_list = NULL;
    int64_t last_start = 0;
    size_t in_arm = 0;
    for (size_t i = 0; i < n; i++) {
        const mab_bucket_record *b = &buckets[i];
        if (!b->experiment || !b->arm || !b->experiment[0] || !b->arm[0])
            return mab_error_set(err, MAB_EINVAL,
                                 "buckets[%zu]: experiment and arm must be non-empty strings", i);
        if (!last_exp || strcmp(last_exp, b->experiment) != 0) {
            pair_entry *x = pair_set_slot(objects, b->experiment, NULL);
            if (!x->experiment) {
                x->experiment = b->experiment;
                x->value = cJSON_AddObjectToObject(top, b->experiment);
            }
            if (!(exp_obj = x->value))
                return mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
            last_exp = b->experiment;
            last_arm = NULL;
        }
        if (!last_arm || strcmp(last_arm, b->arm) != 0) {
            pair_entry *a = pair_set_slot(objects, b->experiment, b->arm);
            if (!a->experiment) {
                a->experiment = b->experiment;
                a->arm = b->arm;
                a->value = cJSON_AddArrayToObject(exp_obj, b->arm);
            }
            if (!(arm_list = a->value))
                return mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
            in_arm = (size_t)cJSON_GetArraySize(arm_list);
            const cJSON *last = in_arm ? cJSON_GetArrayItem(arm_list, (int)in_arm - 1) : NULL;
            last_start = last ? (int64_t)strtoll(last->child->valuestring, NULL, 10) : 0;
            last_arm = b->arm;
        }
        int rc = check_bucket(b, in_arm, err);
        if (rc != MAB_OK)
            return rc;
        if (in_arm > 0 && b->start <= last_start)
            return mab_error_set(err, MAB_EINVAL,
                                 "buckets.%s.%s[%zu]: start %lld is not above the previous "
                                 "bucket's (%lld): given twice or out of order",
                                 b->experiment, b->arm, in_arm, (long long)b->start,
                                 (long long)last_start);
        cJSON *item = bucket_item(b);
        if (!item || !cJSON_AddItemToArray(arm_list, item)) {
            cJSON_Delete(item);
            return mab_error_set(err, MAB_ENOMEM, "out of memory building the JSON document");
        }
        last_start = b->start;
        in_arm++;
    }
    return MAB_OK;
}

int mab_records_print(mab_records_kind kind, const mab_record *records, size_t n_records,
                      char **text, size_t *len, mab_error *err)
{
    return mab_records_print_store(kind, records, n_records, NULL, 0, NULL, 0, text, len, err);
}

int mab_records_print_stats(mab_records_kind kind, const mab_record *records,
                            size_t n_records, const mab_stats_record *stats, size_t n_stats,
                            char **text, size_t *len, mab_error *err)
{
    return mab_records_print_store(kind, records, n_records, NULL, 0, stats, n_stats, text, len,
                                   err);
}

int mab_records_print_claims(mab_records_kind kind, const mab_record *records,
                             size_t n_records, const mab_record_claim *claims, size_t n_claims,
                             char **text, size_t *len, mab_error *err)
{
    return mab_records_print_store(kind, records, n_records, claims, n_claims, NULL, 0, text,
                                   len, err);
}

int mab_records_print_store(mab_records_kind kind, const mab_record *records, size_t n_records,
                            const mab_record_claim *claims, size_t n_claims,
                            const mab_stats_record *stats, size_t n_stats, char **text,
                            size_t *len, mab_error *err)
{
    return mab_records_print_state(kind, records, n_records, claims, n_claims, stats, n_stats,
                                   NULL, 0, text, len, err);
}

int mab_records_print_state(mab_records_kind kind, const mab_record *records, size_t n_records,
                            const mab_record_claim *claims, size_t n_claims,
                            const mab_stats_record *stats, size_t n_stats,
                            const mab_bucket_record *buckets, size_t n_buckets, char **text,
                            size_t *len, mab_error *err)
{
    const kind_info *k = kind_lookup(kind);
    if (!k)
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: unknown kind %d", (int)kind);
    if (!text || (n_records && !records) || (n_claims && !claims) || (n_stats && !stats) ||
        (n_buckets && !buckets))
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: NULL argument");
    if ((n_claims || n_buckets) && kind != MAB_RECORDS_JSON_STORE)
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: only a json_file store "
                                              "document carries claims and buckets");
    cJSON *root = document_tree(k, records, n_records, claims, n_claims, err);
    if (!root)
        return err ? err->code : MAB_EINVAL;
    if (n_stats) {
        mab_error why = {0, ""};
        int rc = add_stats_tree(root, stats, n_stats, &why);
        if (rc != MAB_OK) {
            cJSON_Delete(root);
            return mab_error_set(err, rc, "%s", why.message);
        }
    }
    if (n_buckets) {
        mab_error why = {0, ""};
        int rc = add_buckets_tree(root, buckets, n_buckets, &why);
        if (rc != MAB_OK) {
            cJSON_Delete(root);
            return mab_error_set(err, rc, "%s", why.message);
        }
    }
    char *printed = cJSON_Print(root);
    cJSON_Delete(root);
    size_t n = printed ? strlen(printed) : 0;
    /* cJSON allocates with its own hooks (a host may set them): hand back
       malloc() memory, with the trailing newline files want. */
    char *copy = printed ? malloc(n + 2) : NULL;
    if (!copy) {
        cJSON_free(printed);
        return mab_error_set(err, MAB_ENOMEM, "out of memory printing the JSON document");
    }
    memcpy(copy, printed, n);
    copy[n] = '\n';
    copy[n + 1] = '\0';
    cJSON_free(printed);
    *text = copy;
    if (len)
        *len = n + 1;
    return MAB_OK;
}

int mab_records_write(FILE *out, const char *name, mab_records_kind kind,
                      const mab_record *records, size_t n_records, mab_error *err)
{
    if (!out || !name)
        return mab_error_set(err, MAB_EINVAL, "mab_records_write: NULL argument");
    char *text;
    size_t len;
    int rc = mab_records_print(kind, records, n_records, &text, &len, err);
    if (rc != MAB_OK)
        return rc;
    if (fwrite(text, 1, len, out) != len)
        rc = mab_error_set(err, MAB_EIO, "%s: cannot write: %s", name, strerror(errno));
    free(text);
    return rc;
}

/* ---- reading ------------------------------------------------------------ */

static void text_position(const char *text, size_t offset, unsigned long *line,
                          unsigned long *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

static bool counter_value(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)MAB_RECORDS_COUNTER_MAX)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* One arm's object into r (ids left to the caller); false with *field and *why set. */
static bool arm_fields(const cJSON *obj, mab_record *r, const char **field, const char **why)
{
    static const char *const names[] = {"pulls", "rewards", "reward_sum", "reward_sum_sq"};
    *field = NULL;
    if (!cJSON_IsObject(obj)) {
        *why = "expected an object";
        return false;
    }
    int seen[4] = {0};
    for (const cJSON *c = obj->child; c; c = c->next) {
        size_t i = 0;
        while (i < 4 && strcmp(c->string, names[i]) != 0)
            i++;
        *field = c->string;
        if (i == 4) {
            *why = "unknown field";
            return false;
        }
        if (seen[i]++) {
            *why = "duplicate field";
            return false;
        }
    }
    const char *counter_why = "expected a non-negative integer (at most 2^53)";
    const cJSON *v;
    *field = "pulls";
    *why = counter_why;
    if (!counter_value(cJSON_GetObjectItemCaseSensitive(obj, *field), &r->pulls))
        return false;
    *field = "rewards";
    if (!counter_value(cJSON_GetObjectItemCaseSensitive(obj, *field), &r->rewards))
        return false;
    *field = "reward_sum";
    *why = "expected a finite number";
    v = cJSON_GetObjectItemCaseSensitive(obj, *field);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return false;
    r->reward_sum = v->valuedouble;
    *field = "reward_sum_sq";
    *why = "expected a finite, non-negative number";
    v = cJSON_GetObjectItemCaseSensitive(obj, *field);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
        return false;
    r->reward_sum_sq = v->valuedouble;
    return true;
}

/* The envelope: format, version, no other field; the experiments object. */
static int check_envelope(const char *name, const kind_info *k, const cJSON *root,
                          const cJSON **experiments, const cJSON **claims, int with_stats,
                          int with_buckets, mab_error *err)
{
    if (!cJSON_IsObject(root))
        return mab_error_set(err, MAB_ECORRUPT, "%s: expected a JSON object at the top level",
                             name);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, k->tag) != 0)
        return mab_error_set(err, MAB_ECORRUPT, "%s: format: expected \"%s\" (%s)", name, k->tag,
                             k->description);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(version) || !isfinite(version->valuedouble))
        return mab_error_set(err, MAB_ECORRUPT, "%s: version: expected an integer", name);
    if (version->valuedouble != MAB_RECORDS_VERSION)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: unsupported %s version %g (this libmab reads version %d)",
                             name, k->what, version->valuedouble, MAB_RECORDS_VERSION);
    int seen[6] = {0};
    static const char *const fields[] = {"format", "version", "experiments", "claims",
                                         "policy_stats", "buckets"};
    const size_t n_fields = sizeof fields / sizeof fields[0];
    /* "claims", "policy_stats" and "buckets" only where the caller reads them */
    const int allowed[6] = {1, 1, 1, claims != NULL, with_stats, with_buckets};
    for (const cJSON *c = root->child; c; c = c->next) {
        size_t i = 0;
        while (i < n_fields && strcmp(c->string, fields[i]) != 0)
            i++;
        if (i == n_fields || !allowed[i])
            return mab_error_set(err, MAB_ECORRUPT, "%s: %s: unknown field", name, c->string);
        if (seen[i]++)
            return mab_error_set(err, MAB_ECORRUPT, "%s: %s: duplicate field", name, c->string);
    }
    *experiments = cJSON_GetObjectItemCaseSensitive(root, "experiments");
    if (!cJSON_IsObject(*experiments))
        return mab_error_set(err, MAB_ECORRUPT, "%s: experiments: expected an object", name);
    if (claims) {
        *claims = cJSON_GetObjectItemCaseSensitive(root, "claims");
        if (*claims && !cJSON_IsObject(*claims))
            return mab_error_set(err, MAB_ECORRUPT, "%s: claims: expected an object", name);
    }
    return MAB_OK;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int claim_order(const void *a, const void *b)
{
    return memcmp(((const mab_record_claim *)a)->assignment_id,
                  ((const mab_record_claim *)b)->assignment_id, MAB_RECORD_CLAIM_ID_BYTES);
}

/* Check and copy the "claims" object (NULL: none). *out is malloc()ed. */
static int read_claims(const char *name, const cJSON *obj, mab_record_claim **out, size_t *n,
                       mab_error *err)
{
    size_t count = 0;
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        count++;
    mab_record_claim *claims = malloc((count ? count : 1) * sizeof *claims);
    if (!claims)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    size_t i = 0;
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next, i++) {
        int ok = strlen(c->string) == 2 * MAB_RECORD_CLAIM_ID_BYTES;
        for (size_t b = 0; ok && b < MAB_RECORD_CLAIM_ID_BYTES; b++) {
            int hi = hex_digit(c->string[2 * b]), lo = hex_digit(c->string[2 * b + 1]);
            ok = hi >= 0 && lo >= 0;
            claims[i].assignment_id[b] = (uint8_t)(hi << 4 | lo);
        }
        if (!ok) {
            free(claims);
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: claims.%s: expected 32 lowercase hex digits", name,
                                 c->string);
        }
        double v = c->valuedouble;
        if (!cJSON_IsNumber(c) || !(v >= -9007199254740992.0 && v <= 9007199254740992.0) ||
            v != floor(v)) {
            free(claims);
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: claims.%s: expected an integer expiry (unix seconds)",
                                 name, c->string);
        }
        claims[i].expires_at = (int64_t)v;
    }
    /* cJSON keeps a duplicate key as a second member: find it sorted. */
    qsort(claims, count, sizeof *claims, claim_order);
    for (size_t j = 1; j < count; j++)
        if (claim_order(&claims[j - 1], &claims[j]) == 0) {
            char hex[2 * MAB_RECORD_CLAIM_ID_BYTES + 1];
            for (size_t b = 0; b < MAB_RECORD_CLAIM_ID_BYTES; b++)
                snprintf(hex + 2 * b, 3, "%02x", claims[j].assignment_id[b]);
            free(claims);
            return mab_error_set(err, MAB_ECORRUPT, "%s: claims.%s: duplicate claim", name, hex);
        }
    *out = claims;
    *n = count;
    return MAB_OK;
}

/*
 * Check every experiment and arm; count the records and the bytes their ids
 * take (each experiment's id once).
 */
static int check_records(const char *name, const cJSON *experiments, size_t *n_records,
                         size_t *id_bytes, mab_error *err)
{
    size_t n = 0, n_keys = 0;
    for (const cJSON *exp = experiments->child; exp; exp = exp->next)
        for (const cJSON *arm = exp->child; arm; arm = arm->next)
            n_keys++;
    for (const cJSON *exp = experiments->child; exp; exp = exp->next)
        n_keys++;
    pair_set seen;
    if (!pair_set_init(&seen, n_keys))
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    int rc = MAB_OK;
    size_t bytes = 0;
    for (const cJSON *exp = experiments->child; rc == MAB_OK && exp; exp = exp->next) {
        if (!cJSON_IsObject(exp)) {
            rc = mab_error_set(err, MAB_ECORRUPT, "%s: experiments.%s: expected an object", name,
                               exp->string);
            break;
        }
        if (!pair_set_add(&seen, exp->string, NULL)) {
            rc = mab_error_set(err, MAB_ECORRUPT, "%s: experiments.%s: duplicate experiment",
                               name, exp->string);
            break;
        }
        bytes += strlen(exp->string) + 1;
        for (const cJSON *arm = exp->child; arm; arm = arm->next) {
            mab_record r;
            const char *field, *why;
            if (!arm_fields(arm, &r, &field, &why)) {
                rc = mab_error_set(err, MAB_ECORRUPT, "%s: experiments.%s.%s%s%s: %s", name,
                                   exp->string, arm->string, field ? "." : "",
                                   field ? field : "", why);
                break;
            }
            if (!pair_set_add(&seen, exp->string, arm->string)) {
                rc = mab_error_set(err, MAB_ECORRUPT, "%s: experiments.%s.%s: duplicate record",
                                   name, exp->string, arm->string);
                break;
            }
            bytes += strlen(arm->string) + 1;
            n++;
        }
    }
    free(seen.slots);
    *n_records = n;
    *id_bytes = bytes;
    return rc;
}

/* Copy the checked records into one allocation: the array, then the ids. */
static mab_record *copy_records(const cJSON *experiments, size_t n, size_t id_bytes)
{
    mab_record *records = malloc(n * sizeof *records + id_bytes);
    if (!records)
        return NULL;
    char *ids = (char *)(records + n);
    size_t i = 0;
    for (const cJSON *exp = experiments->child; exp; exp = exp->next) {
        size_t len = strlen(exp->string) + 1;
        const char *experiment = memcpy(ids, exp->string, len);
        ids += len;
        for (const cJSON *arm = exp->child; arm; arm = arm->next) {
            const char *field, *why;
            mab_record *r = &records[i++];
            arm_fields(arm, r, &field, &why); /* checked already */
            len = strlen(arm->string) + 1;
            r->experiment = experiment;
            r->arm = memcpy(ids, arm->string, len);
            ids += len;
        }
    }
    return records;
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Check "policy_stats" (may be absent); count records, values and string bytes. */
static int check_stats_list(const char *name, const cJSON *list, size_t *n_out,
                            size_t *n_values_out, size_t *bytes_out, mab_error *err)
{
    size_t n = 0, n_values = 0, bytes = 0;
    if (list && !cJSON_IsArray(list))
        return mab_error_set(err, MAB_ECORRUPT, "%s: policy_stats: expected an array", name);
    for (const cJSON *item = list ? list->child : NULL; item; item = item->next, n++) {
        if (!cJSON_IsObject(item))
            return mab_error_set(err, MAB_ECORRUPT, "%s: policy_stats[%zu]: expected an object",
                                 name, n);
        int seen_values = 0;
        for (const cJSON *c = item->child; c; c = c->next) {
            int is_id = strcmp(c->string, "experiment") == 0 || strcmp(c->string, "arm") == 0 ||
                        strcmp(c->string, "layout") == 0;
            if (is_id) {
                if (!cJSON_IsString(c) || !c->valuestring[0])
                    return mab_error_set(err, MAB_ECORRUPT,
                                         "%s: policy_stats[%zu].%s: expected a non-empty string",
                                         name, n, c->string);
                bytes += strlen(c->valuestring) + 1;
            } else if (strcmp(c->string, "values") == 0) {
                int count = cJSON_IsArray(c) ? cJSON_GetArraySize(c) : -1;
                if (count < 0 || count > MAB_RECORDS_STATS_MAX)
                    return mab_error_set(err, MAB_ECORRUPT,
                                         "%s: policy_stats[%zu].values: expected an array of at "
                                         "most %d numbers",
                                         name, n, MAB_RECORDS_STATS_MAX);
                size_t j = 0;
                for (const cJSON *v = c->child; v; v = v->next, j++)
                    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
                        return mab_error_set(err, MAB_ECORRUPT,
                                             "%s: policy_stats[%zu].values[%zu]: expected a "
                                             "finite number",
                                             name, n, j);
                n_values += (size_t)count;
                seen_values++;
            } else {
                return mab_error_set(err, MAB_ECORRUPT, "%s: policy_stats[%zu].%s: unknown field",
                                     name, n, c->string);
            }
        }
        if (!cJSON_GetObjectItemCaseSensitive(item, "experiment") ||
            !cJSON_GetObjectItemCaseSensitive(item, "layout") || seen_values != 1)
            return mab_error_set(err, MAB_ECORRUPT,
                                 "%s: policy_stats[%zu]: needs experiment, layout and values "
                                 "(once each)",
                                 name, n);
    }
    *n_out = n;
    *n_values_out = n_values;
    *bytes_out = bytes;
    return MAB_OK;
}

static const char *stats_string(const cJSON *item, const char *key, char **ids)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    if (!v)
        return NULL;
    size_t len = strlen(v->valuestring) + 1;
    char *copy = memcpy(*ids, v->valuestring, len);
    *ids += len;
    return copy;
}

/* Copy the checked statistics into one allocation (records, values, ids);
   MAB_ECORRUPT for a duplicate triple. */
static int copy_stats(const char *name, const cJSON *list, size_t n, size_t n_values,
                      size_t bytes, mab_stats_record **out, mab_error *err)
{
    mab_stats_record *stats = malloc(n * sizeof *stats + n_values * sizeof(double) + bytes);
    if (!stats)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    double *values = (double *)(stats + n);
    char *ids = (char *)(values + n_values);
    size_t i = 0;
    for (const cJSON *item = list->child; item; item = item->next, i++) {
        mab_stats_record *st = &stats[i];
        st->experiment = stats_string(item, "experiment", &ids);
        st->arm = stats_string(item, "arm", &ids);
        st->layout = stats_string(item, "layout", &ids);
        const cJSON *vs = cJSON_GetObjectItemCaseSensitive(item, "values");
        st->values = values;
        st->n_values = 0;
        for (const cJSON *v = vs->child; v; v = v->next)
            values[st->n_values++] = v->valuedouble;
        values += st->n_values;
        for (size_t k = 0; k < i; k++)
            if (stats_same_key(st, &stats[k])) {
                int rc = mab_error_set(err, MAB_ECORRUPT,
                                       "%s: policy_stats[%zu]: duplicate record (%s%s%s, layout "
                                       "%s)",
                                       name, i, st->experiment, st->arm ? "." : "",
                                       st->arm ? st->arm : "", st->layout);
                free(stats);
                return rc;
            }
    }
    *out = stats;
    return MAB_OK;
}

/* One bucket [start, pulls, rewards, reward_sum, reward_sum_sq] into b (ids
   left to the caller); false with *field and *why set. */
static bool bucket_fields(const cJSON *item, mab_bucket_record *b, const char **field,
                          const char **why)
{
    *field = NULL;
    *why = "expected [start, pulls, rewards, reward_sum, reward_sum_sq]";
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 5)
        return false;
    const cJSON *v = item->child;
    for (const cJSON *c = v; c; c = c->next)
        if (!cJSON_IsNumber(c))
            return false;
    *field = "start";
    *why = "expected an integer (unix seconds, at most 2^53 in size)";
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > (double)MAB_RECORDS_BUCKET_START_MAX)
        return false;
    b->start = (int64_t)d;
    *why = "expected a non-negative integer (at most 2^53)";
    *field = "pulls";
    if (!counter_value(v = v->next, &b->pulls))
        return false;
    *field = "rewards";
    if (!counter_value(v = v->next, &b->rewards))
        return false;
    *field = "reward_sum";
    *why = "expected a finite number";
    v = v->next;
    if (!isfinite(v->valuedouble))
        return false;
    b->reward_sum = v->valuedouble;
    *field = "reward_sum_sq";
    *why = "expected a finite, non-negative number";
    v = v->next;
    if (!isfinite(v->valuedouble) || v->valuedouble < 0)
        return false;
    b->reward_sum_sq = v->valuedouble;
    return true;
}

/* Check "buckets" (may be absent); count the records and the bytes their ids
   take (each experiment and arm once). */
static int check_buckets(const char *name, const cJSON *top, size_t *n_out, size_t *bytes_out,
                         mab_error *err)
{
    *n_out = 0;
    *bytes_out = 0;
    if (!top)
        return MAB_OK;
    if (!cJSON_IsObject(top))
        return mab_error_set(err, MAB_ECORRUPT, "%s: buckets: expected an object", name);
    size_t n_keys = 0;
    for (const cJSON *exp = top->child; exp; exp = exp->next)
        for (const cJSON *arm = exp->child; arm; arm = arm->next, n_keys++)
            ;
    pair_set seen;
    if (!pair_set_init(&seen, n_keys + (size_t)cJSON_GetArraySize(top)))
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    int rc = MAB_OK;
    size_t n = 0, bytes = 0;
    for (const cJSON *exp = top->child; rc == MAB_OK && exp; exp = exp->next) {
        if (!cJSON_IsObject(exp) || !exp->string[0]) {
            rc = mab_error_set(err, MAB_ECORRUPT, "%s: buckets.%s: expected an object", name,
                               exp->string);
            break;
        }
        if (!pair_set_add(&seen, exp->string, NULL)) {
            rc = mab_error_set(err, MAB_ECORRUPT, "%s: buckets.%s: duplicate experiment", name,
                               exp->string);
            break;
        }
        bytes += strlen(exp->string) + 1;
        for (const cJSON *arm = exp->child; rc == MAB_OK && arm; arm = arm->next) {
            if (!cJSON_IsArray(arm) || !arm->string[0]) {
                rc = mab_error_set(err, MAB_ECORRUPT, "%s: buckets.%s.%s: expected an array",
                                   name, exp->string, arm->string);
                break;
            }
            if (!pair_set_add(&seen, exp->string, arm->string)) {
                rc = mab_error_set(err, MAB_ECORRUPT, "%s: buckets.%s.%s: duplicate record",
                                   name, exp->string, arm->string);
                break;
            }
            bytes += strlen(arm->string) + 1;
            size_t i = 0;
            int64_t previous = 0;
            for (const cJSON *item = arm->child; item; item = item->next, i++) {
                mab_bucket_record b;
                const char *field, *why;
                if (!bucket_fields(item, &b, &field, &why)) {
                    rc = mab_error_set(err, MAB_ECORRUPT, "%s: buckets.%s.%s[%zu]%s%s: %s", name,
                                       exp->string, arm->string, i, field ? "." : "",
                                       field ? field : "", why);
                    break;
                }
                if (i > 0 && b.start <= previous) {
                    rc = mab_error_set(err, MAB_ECORRUPT,
                                       "%s: buckets.%s.%s[%zu]: start %lld not above the "
                                       "previous bucket's (duplicate or out of order)",
                                       name, exp->string, arm->string, i, (long long)b.start);
                    break;
                }
                previous = b.start;
                n++;
            }
        }
    }
    free(seen.slots);
    *n_out = n;
    *bytes_out = bytes;
    return rc;
}

/* Copy the checked buckets into one allocation: the array, then the ids. */
static mab_bucket_record *copy_buckets(const cJSON *top, size_t n, size_t bytes)
{
    mab_bucket_record *buckets = malloc(n * sizeof *buckets + bytes);
    if (!buckets)
        return NULL;
    char *ids = (char *)(buckets + n);
    size_t i = 0;
    for (const cJSON *exp = top->child; exp; exp = exp->next) {
        size_t len = strlen(exp->string) + 1;
        const char *experiment = memcpy(ids, exp->string, len);
        ids += len;
        for (const cJSON *arm = exp->child; arm; arm = arm->next) {
            len = strlen(arm->string) + 1;
            const char *arm_id = memcpy(ids, arm->string, len);
            ids += len;
            for (const cJSON *item = arm->child; item; item = item->next) {
                const char *field, *why;
                mab_bucket_record *b = &buckets[i++];
                bucket_fields(item, b, &field, &why); /* checked already */
                b->experiment = experiment;
                b->arm = arm_id;
            }
        }
    }
    return buckets;
}

int mab_records_parse(const char *text, size_t len, const char *name, mab_records_kind kind,
                      mab_record **records, size_t *n_records, mab_error *err)
{
    return mab_records_parse_store(text, len, name, kind, records, n_records, NULL, NULL, NULL,
                                   NULL, err);
}

int mab_records_parse_stats(const char *text, size_t len, const char *name,
                            mab_records_kind kind, mab_record **records, size_t *n_records,
                            mab_stats_record **stats, size_t *n_stats, mab_error *err)
{
    if (!stats || !n_stats)
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: NULL argument");
    return mab_records_parse_store(text, len, name, kind, records, n_records, NULL, NULL, stats,
                                   n_stats, err);
}

void mab_records_stats_free(mab_stats_record *stats)
{
    free(stats);
}

int mab_records_parse_claims(const char *text, size_t len, const char *name,
                             mab_records_kind kind, mab_record **records, size_t *n_records,
                             mab_record_claim **claims, size_t *n_claims, mab_error *err)
{
    return mab_records_parse_store(text, len, name, kind, records, n_records, claims, n_claims,
                                   NULL, NULL, err);
}

int mab_records_parse_store(const char *text, size_t len, const char *name,
                            mab_records_kind kind, mab_record **records, size_t *n_records,
                            mab_record_claim **claims, size_t *n_claims,
                            mab_stats_record **stats, size_t *n_stats, mab_error *err)
{
    return mab_records_parse_state(text, len, name, kind, records, n_records, claims, n_claims,
                                   stats, n_stats, NULL, NULL, err);
}

void mab_records_buckets_free(mab_bucket_record *buckets)
{
    free(buckets);
}

int mab_records_parse_state(const char *text, size_t len, const char *name,
                            mab_records_kind kind, mab_record **records, size_t *n_records,
                            mab_record_claim **claims, size_t *n_claims,
                            mab_stats_record **stats, size_t *n_stats,
                            mab_bucket_record **buckets, size_t *n_buckets, mab_error *err)
{
    const kind_info *k = kind_lookup(kind);
    if (!k)
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: unknown kind %d", (int)kind);
    if (!name || !records || !n_records || (len && !text) || (!claims != !n_claims) ||
        (!stats != !n_stats) || (!buckets != !n_buckets))
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: NULL argument");
    if ((claims || buckets) && kind != MAB_RECORDS_JSON_STORE)
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: only a json_file store "
                                              "document carries claims and buckets");
    if (len == 0)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: the file is empty (line 1, column 1); expected %s", name,
                             k->description);

    const char *nul = memchr(text, '\0', len);
    const char *end = NULL;
    cJSON *root = nul ? NULL : cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root) {
        /* Only whitespace may follow the document. */
        while (end < text + len && is_json_space(*end))
            end++;
        if (end != text + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        size_t offset = nul ? (size_t)(nul - text) : end ? (size_t)(end - text) : 0;
        if (offset > len)
            offset = len;
        unsigned long line, column;
        text_position(text, offset, &line, &column);
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: invalid JSON at line %lu, column %lu (malformed or truncated)",
                             name, line, column);
    }

    const cJSON *experiments = NULL, *claims_obj = NULL;
    size_t n = 0, id_bytes = 0, n_claims_read = 0;
    mab_record_claim *claims_read = NULL;
    int rc = check_envelope(name, k, root, &experiments, claims ? &claims_obj : NULL,
                            stats != NULL, buckets != NULL, err);
    if (rc == MAB_OK)
        rc = check_records(name, experiments, &n, &id_bytes, err);
    if (rc == MAB_OK && claims)
        rc = read_claims(name, claims_obj, &claims_read, &n_claims_read, err);
    const cJSON *list = stats ? cJSON_GetObjectItemCaseSensitive(root, "policy_stats") : NULL;
    size_t n_st = 0, n_values = 0, st_bytes = 0;
    if (rc == MAB_OK && stats)
        rc = check_stats_list(name, list, &n_st, &n_values, &st_bytes, err);
    mab_stats_record *st_copy = NULL;
    if (rc == MAB_OK && n_st > 0)
        rc = copy_stats(name, list, n_st, n_values, st_bytes, &st_copy, err);
    const cJSON *bucket_obj = buckets ? cJSON_GetObjectItemCaseSensitive(root, "buckets") : NULL;
    size_t n_bk = 0, bk_bytes = 0;
    if (rc == MAB_OK && buckets)
        rc = check_buckets(name, bucket_obj, &n_bk, &bk_bytes, err);
    mab_bucket_record *bk_copy = NULL;
    if (rc == MAB_OK && n_bk > 0 && !(bk_copy = copy_buckets(bucket_obj, n_bk, bk_bytes)))
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    mab_record *copy = NULL;
    if (rc == MAB_OK && n > 0 && !(copy = copy_records(experiments, n, id_bytes)))
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    cJSON_Delete(root);
    if (rc != MAB_OK) {
        free(bk_copy);
        free(st_copy);
        free(claims_read);
        return rc;
    }
    if (buckets) {
        *buckets = bk_copy;
        *n_buckets = n_bk;
    }
    *records = copy;
    *n_records = n;
    if (claims) {
        *claims = claims_read;
        *n_claims = n_claims_read;
    }
    if (stats) {
        *stats = st_copy;
        *n_stats = n_st;
    }
    return MAB_OK;
}

void mab_records_free(mab_record *records)
{
    free(records);
}

/* ---- the json_file journal's framing (records.h 0.3) ------------------- */

#define JOURNAL_MAGIC "MABJRNL1"

static uint64_t fnv1a_bytes(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

uint64_t mab_records_checksum(const void *data, size_t n)
{
    return fnv1a_bytes(1469598103934665603u, data, n);
}

static void put_le64(unsigned char *out, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *in)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | in[i];
    return v;
}

void mab_records_journal_header(const void *snapshot, size_t snapshot_len,
                                unsigned char out[MAB_RECORDS_JOURNAL_HEADER])
{
    memcpy(out, JOURNAL_MAGIC, 8);
    put_le64(out + 8, (uint64_t)snapshot_len);
    put_le64(out + 16, mab_records_checksum(snapshot, snapshot_len));
    put_le64(out + 24, mab_records_checksum(out, 24));
}

void mab_records_journal_frame(const void *payload, size_t n,
                               unsigned char out[MAB_RECORDS_JOURNAL_FRAME])
{
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)((uint32_t)n >> (8 * i));
    uint64_t h = mab_records_checksum(out, 4);
    put_le64(out + 4, fnv1a_bytes(h, payload, n));
}

int mab_records_journal_follows(const char *name, const unsigned char *data, size_t len,
                                const void *snapshot, size_t snapshot_len, int *follows,
                                mab_error *err)
{
    if (len < MAB_RECORDS_JOURNAL_HEADER)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: byte 0: the journal header is cut short (%zu of %d bytes)",
                             name, len, MAB_RECORDS_JOURNAL_HEADER);
    if (memcmp(data, JOURNAL_MAGIC, 8) != 0)
        return mab_error_set(err, MAB_ECORRUPT,
                             "%s: byte 0: not a json_file journal (no \"" JOURNAL_MAGIC
                             "\" header)",
                             name);
    if (get_le64(data + 24) != mab_records_checksum(data, 24))
        return mab_error_set(err, MAB_ECORRUPT, "%s: byte 0: the journal header fails its checksum",
                             name);
    *follows = get_le64(data + 8) == (uint64_t)snapshot_len &&
               get_le64(data + 16) == mab_records_checksum(snapshot, snapshot_len);
    return MAB_OK;
}

int mab_records_journal_entries(const unsigned char *data, size_t len, uint64_t base,
                                int (*entry)(void *ctx, const unsigned char *payload, size_t n,
                                             uint64_t offset),
                                void *ctx, uint64_t *end, char *why, size_t why_cap)
{
    size_t at = 0;
    if (why && why_cap)
        why[0] = '\0';
    while (at < len) {
        uint64_t offset = base + at;
        size_t left = len - at;
        if (left < MAB_RECORDS_JOURNAL_FRAME) {
            if (why && why_cap)
                snprintf(why, why_cap,
                         "the entry at byte %llu is cut short in its frame (%zu of %d bytes)",
                         (unsigned long long)offset, left, MAB_RECORDS_JOURNAL_FRAME);
            break;
        }
        const unsigned char *f = data + at;
        uint32_t n = (uint32_t)f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 |
                     (uint32_t)f[3] << 24;
        if (n == 0 || n > MAB_RECORDS_JOURNAL_ENTRY_MAX) {
            if (why && why_cap)
                snprintf(why, why_cap, "the entry at byte %llu has an impossible length (%lu)",
                         (unsigned long long)offset, (unsigned long)n);
            break;
        }
        if (left - MAB_RECORDS_JOURNAL_FRAME < n) {
            if (why && why_cap)
                snprintf(why, why_cap, "the entry at byte %llu is cut short (%zu of %llu bytes)",
                         (unsigned long long)offset, left,
                         (unsigned long long)n + MAB_RECORDS_JOURNAL_FRAME);
            break;
        }
        unsigned char expect[MAB_RECORDS_JOURNAL_FRAME];
        mab_records_journal_frame(f + MAB_RECORDS_JOURNAL_FRAME, n, expect);
        if (memcmp(expect, f, MAB_RECORDS_JOURNAL_FRAME) != 0) {
            if (why && why_cap)
                snprintf(why, why_cap, "the entry at byte %llu fails its checksum",
                         (unsigned long long)offset);
            break;
        }
        int rc = entry ? entry(ctx, f + MAB_RECORDS_JOURNAL_FRAME, n, offset) : 0;
        if (rc != 0) {
            *end = offset;
            return rc;
        }
        at += MAB_RECORDS_JOURNAL_FRAME + n;
    }
    *end = base + at;
    return 0;
}
