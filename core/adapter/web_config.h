/*
 * web_config.h - the config keys of the adapter layer (secret_file, cookie,
 * redirect_allow, debug_header), parsed with the rest of the config by
 * config.c and read by adapter.c. Keys and defaults: docs/config.md.
 */
#ifndef MAB_WEB_CONFIG_H
#define MAB_WEB_CONFIG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "mab/mab.h"

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

/* Parse the adapter's keys of `root` (the config's top-level object; other
   keys are not looked at). config_path names the file in errors; relative
   paths resolve against config_dir. *out is allocated, also on failure
   (free it with mab__web_config_free). */
int mab__web_config_parse(const cJSON *root, const char *config_path, const char *config_dir,
                          mab__web_config **out, mab_error *err);
void mab__web_config_free(mab__web_config *web);

#endif
