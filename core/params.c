/*
 * params.c - typed, validated access to a plugin's config object.
 *
 * Every getter marks its key as used; after a plugin's create/open the core
 * calls mab__params_check_unused() so a misspelt key is an error naming it.
 * Hosts get the same over their config section (mab_config_section) and
 * call mab_params_check_unread() themselves. Nested objects are views of
 * their own, linked to the view they were read from, which frees them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char *mab__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

char *mab__asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0)
        out = NULL;
    va_end(ap);
    return out;
}

int mab__params_init(mab_params *p, const cJSON *object, const char *where,
                     const char *config_dir)
{
    memset(p, 0, sizeof *p);
    p->object = object;
    p->n_children = (size_t)cJSON_GetArraySize(object);
    p->where = mab__strdup(where);
    p->config_dir = mab__strdup(config_dir);
    p->used = calloc(p->n_children ? p->n_children : 1, 1);
    if (!p->where || !p->config_dir || !p->used) {
        mab__params_fini(p);
        return MAB_ENOMEM;
    }
    return MAB_OK;
}

void mab__params_fini(mab_params *p)
{
    for (mab_params *n = p->nested, *next; n; n = next) {
        next = n->next;
        mab__params_fini(n);
        free(n);
    }
    free(p->key);
    free(p->where);
    free(p->config_dir);
    free(p->used);
    cJSON_Delete(p->owned);
    memset(p, 0, sizeof *p);
}

/* The child named key (exact, case-sensitive), marking it used. */
static const cJSON *lookup(mab_params *p, const char *key)
{
    size_t i = 0;
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next, i++) {
        if (c->string && strcmp(c->string, key) == 0) {
            p->used[i] = 1;
            return c;
        }
    }
    return NULL;
}

void mab__params_mark_used(mab_params *p, const char *key)
{
    (void)lookup(p, key);
}

void mab__params_mark_all_used(mab_params *p)
{
    size_t i = 0;
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next, i++)
        p->used[i] = 1;
}

const cJSON *mab__params_item(mab_params *p, const char *key)
{
    return lookup(p, key);
}

char *mab__params_key_path(const mab_params *p, const char *key)
{
    return mab__asprintf(p->top_level ? "%s: %s" : "%s.%s", p->where, key);
}

int mab_params_has(const mab_params *p, const char *key)
{
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0)
            return 1;
    return 0;
}

/* Record `message` in p and in every view p was read from. */
static void record(mab_params *p, const char *message)
{
    for (; p; p = p->parent)
        if (p->error != message)
            snprintf(p->error, sizeof p->error, "%s", message);
}

__attribute__((format(printf, 3, 0)))
static int fail_va(mab_params *p, const char *key, const char *fmt, va_list ap)
{
    char detail[MAB_ERROR_MAX];
    vsnprintf(detail, sizeof detail, fmt, ap);
    if (key)
        snprintf(p->error, sizeof p->error, p->top_level ? "%s: %s: %s" : "%s.%s: %s", p->where,
                 key, detail);
    else
        snprintf(p->error, sizeof p->error, "%s: %s", p->where, detail);
    record(p, p->error);
    return MAB_ECONFIG;
}

int mab_params_fail(mab_params *p, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_va(p, key, fmt, ap);
    va_end(ap);
    return rc;
}

const char *mab_params_last_error(const mab_params *p)
{
    return p->error;
}

int mab_params_double(mab_params *p, const char *key, double def, double min, double max,
                      double *out)
{
    const cJSON *v = lookup(p, key);
    if (!v) {
        *out = def;
        return MAB_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return mab_params_fail(p, key, "expected a number");
    if (v->valuedouble < min || v->valuedouble > max)
        return mab_params_fail(p, key, "%g is outside [%g, %g]", v->valuedouble, min, max);
    *out = v->valuedouble;
    return MAB_OK;
}

int mab_params_int(mab_params *p, const char *key, int64_t def, int64_t min, int64_t max,
                   int64_t *out)
{
    const cJSON *v = lookup(p, key);
    if (!v) {
        *out = def;
        return MAB_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    /* Only integers whose double is exact: |d| < 2^53. */
    if (!isfinite(d) || d != floor(d) || fabs(d) >= 9007199254740992.0)
        return mab_params_fail(p, key, "expected an integer");
    if (d < (double)min || d > (double)max)
        return mab_params_fail(p, key, "%.0f is outside [%lld, %lld]", d, (long long)min,
                               (long long)max);
    *out = (int64_t)d;
    return MAB_OK;
}

int mab_params_bool(mab_params *p, const char *key, int def, int *out)
{
    const cJSON *v = lookup(p, key);
    if (!v) {
        *out = def;
        return MAB_OK;
    }
    if (!cJSON_IsBool(v))
        return mab_params_fail(p, key, "expected true or false");
    *out = cJSON_IsTrue(v);
    return MAB_OK;
}

int mab_params_string(mab_params *p, const char *key, const char *def, const char **out)
{
    const cJSON *v = lookup(p, key);
    if (!v) {
        *out = def;
        return MAB_OK;
    }
    if (!cJSON_IsString(v))
        return mab_params_fail(p, key, "expected a string");
    *out = v->valuestring;
    return MAB_OK;
}

int mab_params_strings(mab_params *p, const char *key, size_t max, const char **out,
                       size_t *n)
{
    *n = 0;
    const cJSON *v = lookup(p, key);
    if (!v)
        return MAB_OK;
    if (!cJSON_IsArray(v) || (size_t)cJSON_GetArraySize(v) > max)
        return mab_params_fail(p, key, "expected an array of at most %zu strings", max);
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c))
            return mab_params_fail(p, key, "element %zu: expected a string", i);
        out[i] = c->valuestring;
    }
    *n = i;
    return MAB_OK;
}

int mab_params_path(mab_params *p, const char *key, const char *def, char *buf, size_t buf_len)
{
    const char *s;
    int rc = mab_params_string(p, key, def, &s);
    if (rc)
        return rc;
    if (!s)
        return mab_params_fail(p, key, "is required");
    if (*s == '\0')
        return mab_params_fail(p, key, "must not be empty");
    int n;
    if (s[0] == '/' || !p->config_dir[0])
        n = snprintf(buf, buf_len, "%s", s);
    else
        n = snprintf(buf, buf_len, "%s/%s", p->config_dir, s);
    if (n < 0 || (size_t)n >= buf_len)
        return mab_params_fail(p, key, "path is too long");
    return MAB_OK;
}

int mab_params_object(mab_params *p, const char *key, mab_params **out)
{
    for (mab_params *n = p->nested; n; n = n->next) {
        if (strcmp(n->key, key) == 0) {
            *out = n;
            return MAB_OK;
        }
    }
    const cJSON *v = lookup(p, key);
    if (v && !cJSON_IsObject(v))
        return mab_params_fail(p, key, "expected an object");
    /* A missing object reads as an empty one: every getter gives its default. */
    cJSON *empty = v ? NULL : cJSON_CreateObject();
    char *where = mab__params_key_path(p, key);
    mab_params *child = calloc(1, sizeof *child);
    int rc = where && child && (v || empty)
                 ? mab__params_init(child, v ? v : empty, where, p->config_dir)
                 : MAB_ENOMEM;
    free(where);
    if (rc == MAB_OK && !(child->key = mab__strdup(key))) {
        mab__params_fini(child);
        rc = MAB_ENOMEM;
    }
    if (rc != MAB_OK) {
        free(child);
        cJSON_Delete(empty);
        snprintf(p->error, sizeof p->error, "%s: out of memory", p->where);
        record(p, p->error);
        return MAB_ENOMEM;
    }
    child->owned = empty;
    child->parent = p;
    child->next = p->nested;
    p->nested = child;
    *out = child;
    return MAB_OK;
}

/* The first key of p's object read by no getter, or present twice; then
   the same in the nested views, in the order they were read. */
int mab__params_check_unused(mab_params *p, mab_error *err)
{
    size_t i = 0;
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next, i++) {
        const char *name = c->string ? c->string : "";
        int twice = 0;
        for (const cJSON *d = p->object->child; d != c; d = d->next)
            twice |= d->string && strcmp(d->string, name) == 0;
        if (twice || !p->used[i]) {
            snprintf(p->error, sizeof p->error,
                     twice ? "%s: key \"%s\" appears twice" : "%s: unknown key \"%s\"", p->where,
                     name);
            record(p, p->error);
            return mab_error_set(err, MAB_ECONFIG, "%s", p->error);
        }
    }
    /* nested is newest first: walk it backwards for the reading order. */
    size_t n = 0;
    for (mab_params *v = p->nested; v; v = v->next)
        n++;
    for (size_t k = n; k > 0; k--) {
        mab_params *v = p->nested;
        for (size_t j = 1; j < k; j++)
            v = v->next;
        int rc = mab__params_check_unused(v, err);
        if (rc)
            return rc;
    }
    return MAB_OK;
}

int mab_params_check_unread(mab_params *p, mab_error *err)
{
    if (!p)
        return mab_error_set(err, MAB_EINVAL, "mab_params_check_unread: params is NULL");
    return mab__params_check_unused(p, err);
}

int mab_params_parse(const char *json_object, const char *where, mab_params **out,
                     mab_error *err)
{
    cJSON *root = cJSON_Parse(json_object);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mab_error_set(err, MAB_ECONFIG, "%s: expected a JSON object", where);
    }
    mab_params *p = malloc(sizeof *p);
    if (!p || mab__params_init(p, root, where, ".") != MAB_OK) {
        free(p);
        cJSON_Delete(root);
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory", where);
    }
    p->owned = root;
    *out = p;
    return MAB_OK;
}

void mab_params_free(mab_params *p)
{
    if (p) {
        mab__params_fini(p);
        free(p);
    }
}
