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

/* Add a pair; false when it was already there. */
static bool pair_set_add(pair_set *set, const char *experiment, const char *arm)
{
    uint64_t h = fnv1a(1469598103934665603u, experiment);
    h = arm ? fnv1a(h, arm) : h ^ 0x9e3779b97f4a7c15u;
    for (size_t i = (size_t)h & set->mask;; i = (i + 1) & set->mask) {
        pair_entry *e = &set->slots[i];
        if (!e->experiment) {
            e->experiment = experiment;
            e->arm = arm;
            return true;
        }
        if (strcmp(e->experiment, experiment) == 0 &&
            (arm ? e->arm && strcmp(e->arm, arm) == 0 : !e->arm))
            return false;
    }
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
    pair_set seen;
    if (!pair_set_init(&seen, n)) {
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
            last_obj = cJSON_GetObjectItemCaseSensitive(experiments, r->experiment);
            if (!last_obj)
                last_obj = cJSON_AddObjectToObject(experiments, r->experiment);
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

int mab_records_print(mab_records_kind kind, const mab_record *records, size_t n_records,
                      char **text, size_t *len, mab_error *err)
{
    return mab_records_print_claims(kind, records, n_records, NULL, 0, text, len, err);
}

int mab_records_print_claims(mab_records_kind kind, const mab_record *records,
                             size_t n_records, const mab_record_claim *claims, size_t n_claims,
                             char **text, size_t *len, mab_error *err)
{
    const kind_info *k = kind_lookup(kind);
    if (!k)
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: unknown kind %d", (int)kind);
    if (!text || (n_records && !records) || (n_claims && !claims))
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: NULL argument");
    if (n_claims && kind != MAB_RECORDS_JSON_STORE)
        return mab_error_set(err, MAB_EINVAL, "mab_records_print: only a json_file store "
                                              "document carries claims");
    cJSON *root = document_tree(k, records, n_records, claims, n_claims, err);
    if (!root)
        return err ? err->code : MAB_EINVAL;
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
                          const cJSON **experiments, const cJSON **claims, mab_error *err)
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
    int seen[4] = {0};
    static const char *const fields[] = {"format", "version", "experiments", "claims"};
    size_t n_fields = claims ? 4 : 3; /* "claims" only where the caller reads them */
    for (const cJSON *c = root->child; c; c = c->next) {
        size_t i = 0;
        while (i < n_fields && strcmp(c->string, fields[i]) != 0)
            i++;
        if (i == n_fields)
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

int mab_records_parse(const char *text, size_t len, const char *name, mab_records_kind kind,
                      mab_record **records, size_t *n_records, mab_error *err)
{
    return mab_records_parse_claims(text, len, name, kind, records, n_records, NULL, NULL, err);
}

int mab_records_parse_claims(const char *text, size_t len, const char *name,
                             mab_records_kind kind, mab_record **records, size_t *n_records,
                             mab_record_claim **claims, size_t *n_claims, mab_error *err)
{
    const kind_info *k = kind_lookup(kind);
    if (!k)
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: unknown kind %d", (int)kind);
    if (!name || !records || !n_records || (len && !text) || (!claims != !n_claims))
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: NULL argument");
    if (claims && kind != MAB_RECORDS_JSON_STORE)
        return mab_error_set(err, MAB_EINVAL, "mab_records_parse: only a json_file store "
                                              "document carries claims");
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
    int rc = check_envelope(name, k, root, &experiments, claims ? &claims_obj : NULL, err);
    if (rc == MAB_OK)
        rc = check_records(name, experiments, &n, &id_bytes, err);
    if (rc == MAB_OK && claims)
        rc = read_claims(name, claims_obj, &claims_read, &n_claims_read, err);
    mab_record *copy = NULL;
    if (rc == MAB_OK && n > 0 && !(copy = copy_records(experiments, n, id_bytes)))
        rc = mab_error_set(err, MAB_ENOMEM, "%s: out of memory", name);
    cJSON_Delete(root);
    if (rc != MAB_OK) {
        free(claims_read);
        return rc;
    }
    *records = copy;
    *n_records = n;
    if (claims) {
        *claims = claims_read;
        *n_claims = n_claims_read;
    }
    return MAB_OK;
}

void mab_records_free(mab_record *records)
{
    free(records);
}
