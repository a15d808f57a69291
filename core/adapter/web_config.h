/*
 * web_config.h - the adapter's config keys (secret_file, cookie,
 * redirect_allow, debug_header): the adapter part of libmab claims them and
 * parses them (web_config.c) while the engine opens, so mab_open() refuses a
 * bad one even when no adapter is opened; adapter.c reads the result through
 * engine_access.h. Keys and defaults: docs/config.md.
 */
#ifndef MAB_WEB_CONFIG_H
#define MAB_WEB_CONFIG_H

#include <stdint.h>

#include "mab/plugin.h"

typedef struct mab__web_config {
    char *secret_file;     /* resolved against the config's directory; NULL when absent */
    char *cookie_name;     /* default "mab" */
    char *cookie_path;     /* default "/" */
    char *cookie_domain;   /* NULL when absent */
    int64_t max_age;       /* seconds, default 2592000 (30 days) */
    int secure;            /* default 0 */
    int http_only;         /* default 1 */
    char *same_site;       /* "Lax" (default), "Strict" or "None" */
    char **redirect_allow; /* prefixes, verbatim */
    size_t n_redirect_allow;
    int debug_header;      /* default 0 */
} mab__web_config;

/* The top-level keys the adapter reads, ending with NULL: the engine's
   config parser accepts them without naming them. */
extern const char *const mab__web_config_keys[];

/* Parse the adapter's keys from `top`, a view of the config's top-level
   object whose errors read "FILE: cookie.name: ..." (the engine's own keys
   are in it too: this reads only mab__web_config_keys and checks the
   objects it opens). *out is allocated, also on failure (free it with
   mab__web_config_free). */
int mab__web_config_parse(mab_params *top, mab__web_config **out, mab_error *err);
void mab__web_config_free(mab__web_config *web);

#endif
