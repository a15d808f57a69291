/*
 * web_config.c - parse and validate the adapter's config keys: secret_file,
 * cookie {name, path, domain, max_age, secure, http_only, same_site},
 * redirect_allow and debug_header (docs/config.md). Errors are sentences
 * "FILE: JSON.PATH: what is wrong", like the rest of config.c.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "redirect.h"
#include "web_config.h"

#define MAX_AGE_LIMIT 315360000 /* ten years, in seconds */

void mab__web_config_free(mab__web_config *web)
{
    if (!web)
        return;
    free(web->secret_file);
    free(web->cookie_name);
    free(web->cookie_path);
    free(web->cookie_domain);
    free(web->same_site);
    for (size_t i = 0; i < web->n_redirect_allow; i++)
        free(web->redirect_allow[i]);
    free(web->redirect_allow);
    free(web);
}

/* RFC 6265 cookie-name: a token, no separators. */
static int valid_cookie_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
            return 0;
    }
    return 1;
}

/* An attribute value (Path, Domain) must not end the attribute early. */
static int valid_attribute(const char *s)
{
    if (strlen(s) > 256)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == ';' || c == ',')
            return 0;
    }
    return 1;
}

static int bool_key(const cJSON *obj, const char *key, int *dst, const char *config_path,
                    const char *where, mab_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return MAB_OK;
    if (!cJSON_IsBool(v))
        return mab_error_set(err, MAB_ECONFIG, "%s: %s%s: expected true or false", config_path,
                             where, key);
    *dst = cJSON_IsTrue(v);
    return MAB_OK;
}

static int string_key(const cJSON *obj, const char *key, char **dst, int (*valid)(const char *),
                      const char *what, const char *config_path, mab_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return MAB_OK;
    if (!cJSON_IsString(v) || !valid(v->valuestring))
        return mab_error_set(err, MAB_ECONFIG, "%s: cookie.%s: expected %s", config_path, key,
                             what);
    char *copy = mab__strdup(v->valuestring);
    if (!copy)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    free(*dst);
    *dst = copy;
    return MAB_OK;
}

static int valid_path(const char *s)
{
    return s[0] == '/' && valid_attribute(s);
}

static int valid_domain(const char *s)
{
    return s[0] && valid_attribute(s);
}

static int parse_cookie(mab__web_config *web, const cJSON *c, const char *config_path,
                        mab_error *err)
{
    if (!c)
        return MAB_OK;
    if (!cJSON_IsObject(c))
        return mab_error_set(err, MAB_ECONFIG, "%s: cookie: expected an object", config_path);
    static const char *const keys[] = {"name",   "path",      "domain",    "max_age",
                                       "secure", "http_only", "same_site", NULL};
    for (const cJSON *k = c->child; k; k = k->next) {
        int known = 0;
        for (const char *const *a = keys; *a; a++)
            known |= strcmp(*a, k->string) == 0;
        if (!known)
            return mab_error_set(err, MAB_ECONFIG, "%s: cookie: unknown key \"%s\"", config_path,
                                 k->string);
        for (const cJSON *d = k->next; d; d = d->next)
            if (strcmp(d->string, k->string) == 0)
                return mab_error_set(err, MAB_ECONFIG, "%s: cookie: key \"%s\" appears twice",
                                     config_path, k->string);
    }
    int rc;
    if ((rc = string_key(c, "name", &web->cookie_name, valid_cookie_name,
                         "a cookie name (1 to 64 characters, no separators)", config_path, err)) ||
        (rc = string_key(c, "path", &web->cookie_path, valid_path,
                         "a path starting with '/' (no spaces, ';' or ',')", config_path, err)) ||
        (rc = string_key(c, "domain", &web->cookie_domain, valid_domain,
                         "a domain name (no spaces, ';' or ',')", config_path, err)) ||
        (rc = bool_key(c, "secure", &web->secure, config_path, "cookie.", err)) ||
        (rc = bool_key(c, "http_only", &web->http_only, config_path, "cookie.", err)))
        return rc;
    const cJSON *age = cJSON_GetObjectItemCaseSensitive(c, "max_age");
    if (age) {
        double d = cJSON_IsNumber(age) ? age->valuedouble : -1;
        if (d < 1 || d > MAX_AGE_LIMIT || d != (double)(int64_t)d)
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: cookie.max_age: expected whole seconds in [1, %d]",
                                 config_path, MAX_AGE_LIMIT);
        web->max_age = (int64_t)d;
    }
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(c, "same_site");
    if (ss) {
        if (!cJSON_IsString(ss) || (strcmp(ss->valuestring, "Lax") != 0 &&
                                    strcmp(ss->valuestring, "Strict") != 0 &&
                                    strcmp(ss->valuestring, "None") != 0))
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: cookie.same_site: expected \"Lax\", \"Strict\" or \"None\"",
                                 config_path);
        char *copy = mab__strdup(ss->valuestring);
        if (!copy)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        free(web->same_site);
        web->same_site = copy;
    }
    /* Browsers drop a SameSite=None cookie that is not Secure. */
    if (strcmp(web->same_site, "None") == 0 && !web->secure)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: cookie.same_site: \"None\" needs \"secure\": true (browsers "
                             "refuse the cookie otherwise)",
                             config_path);
    return MAB_OK;
}

static int parse_redirect_allow(mab__web_config *web, const cJSON *ra, const char *config_path,
                                mab_error *err)
{
    if (!ra)
        return MAB_OK;
    if (!cJSON_IsArray(ra))
        return mab_error_set(err, MAB_ECONFIG, "%s: redirect_allow: expected an array of strings",
                             config_path);
    size_t n = (size_t)cJSON_GetArraySize(ra);
    web->redirect_allow = calloc(n ? n : 1, sizeof *web->redirect_allow);
    if (!web->redirect_allow)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t i = 0;
    for (const cJSON *v = ra->child; v; v = v->next, i++) {
        const char *why = "expected a string";
        if (!cJSON_IsString(v) || !mab__redirect_allow_entry_ok(v->valuestring, &why))
            return mab_error_set(err, MAB_ECONFIG, "%s: redirect_allow[%zu]: %s", config_path, i,
                                 why);
        web->redirect_allow[i] = mab__strdup(v->valuestring);
        if (!web->redirect_allow[i])
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        web->n_redirect_allow = i + 1;
    }
    return MAB_OK;
}

int mab__web_config_parse(const cJSON *root, const char *config_path, const char *config_dir,
                          mab__web_config **out, mab_error *err)
{
    mab__web_config *web = calloc(1, sizeof *web);
    *out = web;
    if (!web)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    web->cookie_name = mab__strdup("mab");
    web->cookie_path = mab__strdup("/");
    web->same_site = mab__strdup("Lax");
    web->max_age = 2592000;
    web->http_only = 1;
    if (!web->cookie_name || !web->cookie_path || !web->same_site)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");

    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(root, "secret_file");
    if (sf) {
        if (!cJSON_IsString(sf) || !sf->valuestring[0])
            return mab_error_set(err, MAB_ECONFIG, "%s: secret_file: expected a file name",
                                 config_path);
        web->secret_file = sf->valuestring[0] == '/'
                               ? mab__strdup(sf->valuestring)
                               : mab__asprintf("%s/%s", config_dir, sf->valuestring);
        if (!web->secret_file)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    int rc;
    if ((rc = parse_cookie(web, cJSON_GetObjectItemCaseSensitive(root, "cookie"), config_path,
                           err)) ||
        (rc = parse_redirect_allow(web, cJSON_GetObjectItemCaseSensitive(root, "redirect_allow"),
                                   config_path, err)) ||
        (rc = bool_key(root, "debug_header", &web->debug_header, config_path, "", err)))
        return rc;
    const cJSON *mabd = cJSON_GetObjectItemCaseSensitive(root, "mabd");
    if (mabd && !cJSON_IsObject(mabd))
        return mab_error_set(err, MAB_ECONFIG, "%s: mabd: expected an object", config_path);
    return MAB_OK;
}
