/*
 * settings.c - read the config's "mabd" object. The core accepts the key
 * and leaves its contents to mabd, which checks them as strictly as the
 * core checks its own: an unknown key is an error naming it.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mabd.h"

#define CONFIG_MAX (16u << 20)

static char *read_text(const char *path, char *msg, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, cap, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    strbuf sb;
    sb_init(&sb);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && sb.len < CONFIG_MAX)
        sb_append(&sb, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad || sb.failed) {
        snprintf(msg, cap, "%s: cannot read", path);
        sb_free(&sb);
        return NULL;
    }
    return sb_take(&sb, NULL);
}

static char *resolve(const char *config_path, const char *name)
{
    if (name[0] == '/')
        return strdup(name);
    char *copy = strdup(config_path);
    if (!copy)
        return NULL;
    strbuf sb;
    sb_init(&sb);
    sb_printf(&sb, "%s/%s", dirname(copy), name);
    free(copy);
    return sb_take(&sb, NULL);
}

static int unsigned_key(const cJSON *obj, const char *key, double lo, double hi, unsigned *dst,
                        const char *path, const char *where, char *msg, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < lo || d > hi || d != floor(d)) {
        snprintf(msg, cap, "%s: %s%s: expected an integer in [%g, %g]", path, where, key, lo, hi);
        return -1;
    }
    *dst = (unsigned)d;
    return 0;
}

static int check_keys(const cJSON *obj, const char *const *keys, const char *path,
                      const char *where, char *msg, size_t cap)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        int known = 0;
        for (const char *const *k = keys; *k; k++)
            known |= strcmp(*k, c->string) == 0;
        if (!known) {
            snprintf(msg, cap, "%s: %s: unknown key \"%s\"", path, where, c->string);
            return -1;
        }
    }
    return 0;
}

static int read_token(const char *file, char **out, const char *path, char *msg, size_t cap)
{
    char inner[512];
    char *text = read_text(file, inner, sizeof inner);
    if (!text) {
        snprintf(msg, cap, "%s: mabd.admin_token_file: %s", path, inner);
        return -1;
    }
    text[strcspn(text, "\r\n")] = '\0';
    if (strlen(text) < 16) {
        snprintf(msg, cap, "%s: mabd.admin_token_file: %s: the first line must hold a token of "
                           "at least 16 characters", path, file);
        free(text);
        return -1;
    }
    *out = text;
    return 0;
}

/* ---- limits: slow clients, Host names, storage log (docs/hosts.md) ---- */

#define SERVER_NAMES_MAX 64

static int server_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

static int parse_limits(const cJSON *m, const char *path, mabd_settings *s, char *msg,
                        size_t cap)
{
    if (unsigned_key(m, "request_timeout_s", 1, 3600, &s->request_timeout_s, path, "mabd.", msg,
                     cap) ||
        unsigned_key(m, "max_connections_per_ip", 0, 100000, &s->max_connections_per_ip, path,
                     "mabd.", msg, cap) ||
        unsigned_key(m, "storage_log_interval_s", 1, 86400, &s->storage_log_interval_s, path,
                     "mabd.", msg, cap))
        return -1;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(m, "server_names");
    if (!names)
        return 0;
    int n = cJSON_IsArray(names) ? cJSON_GetArraySize(names) : -1;
    if (n < 0 || n > SERVER_NAMES_MAX) {
        snprintf(msg, cap, "%s: mabd.server_names: expected an array of up to %d host names",
                 path, SERVER_NAMES_MAX);
        return -1;
    }
    s->server_names = calloc((size_t)n + 1, sizeof *s->server_names);
    if (!s->server_names) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(names, i);
        if (!cJSON_IsString(v) || !server_name_ok(v->valuestring)) {
            snprintf(msg, cap, "%s: mabd.server_names[%d]: expected a host name, optionally "
                               "with :PORT (letters, digits, '.', '-')", path, i);
            return -1;
        }
        char *name = strdup(v->valuestring);
        if (!name) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        s->server_names[s->n_server_names++] = name;
    }
    return 0;
}

static int parse(const cJSON *m, const char *path, mabd_settings *s, char *msg, size_t cap)
{
    if (!cJSON_IsObject(m)) {
        snprintf(msg, cap, "%s: mabd: expected an object", path);
        return -1;
    }
    static const char *const keys[] = {"listen", "admin_token_file", "static", "max_connections",
                                       "timeout_s", "threads", "series",
                                       /* parse_limits() */
                                       "request_timeout_s", "max_connections_per_ip",
                                       "server_names", "storage_log_interval_s", NULL};
    if (check_keys(m, keys, path, "mabd", msg, cap))
        return -1;
    const cJSON *listen = cJSON_GetObjectItemCaseSensitive(m, "listen");
    if (listen) {
        if (!cJSON_IsString(listen) || strlen(listen->valuestring) >= sizeof s->listen ||
            !strchr(listen->valuestring, ':')) {
            snprintf(msg, cap, "%s: mabd.listen: expected \"HOST:PORT\"", path);
            return -1;
        }
        snprintf(s->listen, sizeof s->listen, "%s", listen->valuestring);
    }
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(m, "admin_token_file");
    if (tf) {
        if (!cJSON_IsString(tf) || !tf->valuestring[0]) {
            snprintf(msg, cap, "%s: mabd.admin_token_file: expected a file name", path);
            return -1;
        }
        char *file = resolve(path, tf->valuestring);
        int rc = file ? read_token(file, &s->admin_token, path, msg, cap) : -1;
        free(file);
        if (rc)
            return -1;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(m, "static");
    if (st) {
        static const char *const skeys[] = {"url", "dir", NULL};
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(st, "url");
        const cJSON *dir = cJSON_GetObjectItemCaseSensitive(st, "dir");
        if (!cJSON_IsObject(st) || check_keys(st, skeys, path, "mabd.static", msg, cap) ||
            !cJSON_IsString(url) || !cJSON_IsString(dir) || url->valuestring[0] != '/' ||
            url->valuestring[strlen(url->valuestring) - 1] != '/' ||
            strcmp(url->valuestring, "/") == 0 || strncmp(url->valuestring, "/v1/", 4) == 0 ||
            !dir->valuestring[0]) {
            if (!msg[0])
                snprintf(msg, cap, "%s: mabd.static: expected {\"url\": \"/PREFIX/\", \"dir\": "
                                   "DIRECTORY} (PREFIX not \"/\" nor under /v1/)", path);
            return -1;
        }
        s->static_url = strdup(url->valuestring);
        s->static_dir = resolve(path, dir->valuestring);
        if (!s->static_url || !s->static_dir) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
    }
    if (unsigned_key(m, "max_connections", 1, 100000, &s->max_connections, path, "mabd.", msg,
                     cap) ||
        unsigned_key(m, "timeout_s", 1, 3600, &s->timeout_s, path, "mabd.", msg, cap) ||
        unsigned_key(m, "threads", 1, 256, &s->threads, path, "mabd.", msg, cap) ||
        parse_limits(m, path, s, msg, cap))
        return -1;
    const cJSON *ser = cJSON_GetObjectItemCaseSensitive(m, "series");
    if (ser) {
        static const char *const skeys[] = {"interval_s", "keep", NULL};
        if (!cJSON_IsObject(ser)) {
            snprintf(msg, cap, "%s: mabd.series: expected an object", path);
            return -1;
        }
        if (check_keys(ser, skeys, path, "mabd.series", msg, cap) ||
            unsigned_key(ser, "interval_s", 1, 86400, &s->series_interval_s, path,
                         "mabd.series.", msg, cap) ||
            unsigned_key(ser, "keep", 1, 1000000, &s->series_keep, path, "mabd.series.", msg,
                         cap))
            return -1;
    }
    return 0;
}

int mabd_settings_load(const char *config_path, mabd_settings *s, char *msg, size_t cap)
{
    memset(s, 0, sizeof *s);
    snprintf(s->listen, sizeof s->listen, "127.0.0.1:8080");
    s->max_connections = 1024;
    s->timeout_s = 30;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->threads = cpus > 0 ? (unsigned)cpus : 2;
    s->series_interval_s = 60;
    s->series_keep = 1440;
    s->request_timeout_s = 10;
    s->max_connections_per_ip = 64;
    s->storage_log_interval_s = 60;
    msg[0] = '\0';
    char *text = read_text(config_path, msg, cap);
    if (!text)
        return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) {
        /* mab_open() reports the JSON error with its position. */
        snprintf(msg, cap, "%s: invalid JSON", config_path);
        return -1;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "mabd");
    int rc = m ? parse(m, config_path, s, msg, cap) : 0;
    cJSON_Delete(root);
    if (rc)
        mabd_settings_free(s);
    return rc;
}

void mabd_settings_free(mabd_settings *s)
{
    free(s->admin_token);
    free(s->static_url);
    free(s->static_dir);
    s->admin_token = s->static_url = s->static_dir = NULL;
    for (size_t i = 0; i < s->n_server_names; i++)
        free(s->server_names[i]);
    free(s->server_names);
    s->server_names = NULL;
    s->n_server_names = 0;
}
