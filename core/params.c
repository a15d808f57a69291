/*
 * params.c - typed, validated access to a plugin's config object.
 *
 * Every getter marks its key as used; after a plugin's create/open the core
 * calls mab__params_check_unused() so a misspelt key is an error naming it.
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

int mab_params_has(const mab_params *p, const char *key)
{
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0)
            return 1;
    return 0;
}

static int fail_va(mab_params *p, const char *key, const char *fmt, va_list ap)
{
    char detail[MAB_ERROR_MAX];
    vsnprintf(detail, sizeof detail, fmt, ap);
    if (key)
        snprintf(p->error, sizeof p->error, "%s.%s: %s", p->where, key, detail);
    else
        snprintf(p->error, sizeof p->error, "%s: %s", p->where, detail);
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

int mab__params_check_unused(mab_params *p, mab_error *err)
{
    size_t i = 0;
    for (const cJSON *c = p->object ? p->object->child : NULL; c; c = c->next, i++)
        if (!p->used[i])
            return mab_error_set(err, MAB_ECONFIG, "%s: unknown key \"%s\"", p->where,
                                 c->string ? c->string : "");
    return MAB_OK;
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
