/*
 * web_config.c - parse and validate the adapter's config keys: secret_file,
 * cookie {name, path, domain, max_age, secure, http_only, same_site},
 * redirect_allow and debug_header (docs/config.md). They are read through a
 * mab_params view of the top level, like a host's section, so errors are
 * sentences "FILE: JSON.PATH: what is wrong" as everywhere in the config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "redirect.h"
#include "web_config.h"

#define MAX_AGE_LIMIT 315360000 /* ten years, in seconds */

const char *const mab__web_config_keys[] = {"secret_file", "cookie", "redirect_allow",
                                            "debug_header", NULL};

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

/* A copy of `value` in *dst, or MAB_ENOMEM. */
static int replace(char **dst, const char *value)
{
    char *copy = mab__strdup(value);
    if (!copy)
        return MAB_ENOMEM;
    free(*dst);
    *dst = copy;
    return MAB_OK;
}

static int string_key(mab_params *cookie, const char *key, char **dst,
                      int (*valid)(const char *), const char *what)
{
    const char *v = NULL;
    int rc = mab_params_string(cookie, key, NULL, &v);
    if (rc || !v)
        return rc;
    if (!valid(v))
        return mab_params_fail(cookie, key, "expected %s", what);
    return replace(dst, v);
}

static int valid_path(const char *s)
{
    return s[0] == '/' && valid_attribute(s);
}

static int valid_domain(const char *s)
{
    return s[0] && valid_attribute(s);
}

static int valid_same_site(const char *s)
{
    return strcmp(s, "Lax") == 0 || strcmp(s, "Strict") == 0 || strcmp(s, "None") == 0;
}

static int parse_cookie(mab__web_config *web, mab_params *top)
{
    mab_params *c;
    int rc = mab_params_object(top, "cookie", &c);
    if (rc)
        return rc;
    if ((rc = string_key(c, "name", &web->cookie_name, valid_cookie_name,
                         "a cookie name (1 to 64 characters, no separators)")) ||
        (rc = string_key(c, "path", &web->cookie_path, valid_path,
                         "a path starting with '/' (no spaces, ';' or ',')")) ||
        (rc = string_key(c, "domain", &web->cookie_domain, valid_domain,
                         "a domain name (no spaces, ';' or ',')")) ||
        (rc = string_key(c, "same_site", &web->same_site, valid_same_site,
                         "\"Lax\", \"Strict\" or \"None\"")) ||
        (rc = mab_params_bool(c, "secure", web->secure, &web->secure)) ||
        (rc = mab_params_bool(c, "http_only", web->http_only, &web->http_only)))
        return rc;
    const cJSON *age = mab__params_item(c, "max_age");
    if (age) {
        double d = cJSON_IsNumber(age) ? age->valuedouble : -1;
        if (d < 1 || d > MAX_AGE_LIMIT || d != (double)(int64_t)d)
            return mab_params_fail(c, "max_age", "expected whole seconds in [1, %d]",
                                   MAX_AGE_LIMIT);
        web->max_age = (int64_t)d;
    }
    /* Browsers drop a SameSite=None cookie that is not Secure. */
    if (strcmp(web->same_site, "None") == 0 && !web->secure)
        return mab_params_fail(c, "same_site", "\"None\" needs \"secure\": true (browsers "
                                               "refuse the cookie otherwise)");
    return MAB_OK;
}

static int parse_redirect_allow(mab__web_config *web, mab_params *top)
{
    const cJSON *ra = mab__params_item(top, "redirect_allow");
    if (!ra)
        return MAB_OK;
    if (!cJSON_IsArray(ra))
        return mab_params_fail(top, "redirect_allow", "expected an array of strings");
    size_t n = (size_t)cJSON_GetArraySize(ra);
    web->redirect_allow = calloc(n ? n : 1, sizeof *web->redirect_allow);
    if (!web->redirect_allow)
        return MAB_ENOMEM;
    size_t i = 0;
    for (const cJSON *v = ra->child; v; v = v->next, i++) {
        const char *why = "expected a string";
        if (!cJSON_IsString(v) || !mab__redirect_allow_entry_ok(v->valuestring, &why)) {
            char key[48];
            snprintf(key, sizeof key, "redirect_allow[%zu]", i);
            return mab_params_fail(top, key, "%s", why);
        }
        web->redirect_allow[i] = mab__strdup(v->valuestring);
        if (!web->redirect_allow[i])
            return MAB_ENOMEM;
        web->n_redirect_allow = i + 1;
    }
    return MAB_OK;
}

static int parse_secret_file(mab__web_config *web, mab_params *top)
{
    const cJSON *sf = mab__params_item(top, "secret_file");
    if (!sf)
        return MAB_OK;
    if (!cJSON_IsString(sf) || !sf->valuestring[0])
        return mab_params_fail(top, "secret_file", "expected a file name");
    web->secret_file = sf->valuestring[0] == '/'
                           ? mab__strdup(sf->valuestring)
                           : mab__asprintf("%s/%s", top->config_dir, sf->valuestring);
    return web->secret_file ? MAB_OK : MAB_ENOMEM;
}

int mab__web_config_parse(mab_params *top, mab__web_config **out, mab_error *err)
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

    mab_params *cookie;
    int rc;
    if ((rc = parse_secret_file(web, top)) || (rc = parse_cookie(web, top)) ||
        (rc = parse_redirect_allow(web, top)) ||
        (rc = mab_params_bool(top, "debug_header", 0, &web->debug_header)) ||
        (rc = mab_params_object(top, "cookie", &cookie)) ||
        (rc = mab__params_check_unused(cookie, NULL)))
        return rc == MAB_ENOMEM ? mab_error_set(err, rc, "out of memory")
                                : mab_error_set(err, rc, "%s", mab_params_last_error(top));
    return MAB_OK;
}
