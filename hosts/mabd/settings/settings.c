/*
 * settings.c - read the config's "mabd" section (mabd_settings.h: linked by
 * mabd and by `mab check`, which runs the same reads). mabd opens its engines
 * with mab_open_sections(mabd_config_sections), so the engine accepts the
 * key and leaves its contents to mabd, which reads them through
 * mab_config_section() and mab_params as strictly as the engine checks its
 * own: a bad value or an unknown key is an error naming its JSON path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mab/plugin.h"
#include "mabd_settings.h"

#define CONFIG_MAX (16u << 20)

static char *read_text(const char *path, char *msg, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, cap, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t len = 0, size = 8192;
    char *text = malloc(size);
    size_t n;
    while (text && (n = fread(text + len, 1, size - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == size && size < CONFIG_MAX) {
            char *grown = realloc(text, size * 2);
            if (!grown) {
                free(text);
                text = NULL;
            }
            text = grown;
            size *= 2;
        } else if (len + 1 == size) {
            break;
        }
    }
    int bad = ferror(f) || !text;
    fclose(f);
    if (bad) {
        snprintf(msg, cap, "%s: cannot read", path);
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* The first line of `file`, at least 16 characters; -1 with why in msg. */
static int read_token(const char *file, char **out, char *msg, size_t cap)
{
    char *text = read_text(file, msg, cap);
    if (!text)
        return -1;
    text[strcspn(text, "\r\n")] = '\0';
    if (strlen(text) < 16) {
        snprintf(msg, cap, "%s: the first line must hold a token of at least 16 characters",
                 file);
        free(text);
        return -1;
    }
    *out = text;
    return 0;
}

/* The setting in error, as a sentence in msg. */
static int failed(mab_params *m, char *msg, size_t cap)
{
    snprintf(msg, cap, "%s", mab_params_last_error(m)[0] ? mab_params_last_error(m)
                                                         : "out of memory");
    return -1;
}

static int unsigned_key(mab_params *p, const char *key, int64_t lo, int64_t hi, unsigned *dst)
{
    int64_t v;
    int rc = mab_params_int(p, key, *dst, lo, hi, &v);
    if (rc == MAB_OK)
        *dst = (unsigned)v;
    return rc;
}

static int size_key(mab_params *p, const char *key, int64_t hi, size_t *dst)
{
    int64_t v;
    int rc = mab_params_int(p, key, (int64_t)*dst, 0, hi, &v);
    if (rc == MAB_OK)
        *dst = (size_t)v;
    return rc;
}

static int read_static(mab_params *m, mabd_settings *s)
{
    if (!mab_params_has(m, "static"))
        return MAB_OK;
    mab_params *st;
    const char *url = NULL, *dir = NULL;
    int rc = mab_params_object(m, "static", &st);
    if (rc == MAB_OK)
        rc = mab_params_string(st, "url", NULL, &url);
    if (rc == MAB_OK)
        rc = mab_params_string(st, "dir", NULL, &dir);
    if (rc)
        return rc;
    if (!url || !dir || url[0] != '/' || url[strlen(url) - 1] != '/' || strcmp(url, "/") == 0 ||
        strncmp(url, "/v1/", 4) == 0 || !dir[0])
        return mab_params_fail(st, NULL, "expected {\"url\": \"/PREFIX/\", \"dir\": DIRECTORY} "
                                         "(PREFIX not \"/\" nor under /v1/)");
    char path[4096];
    if ((rc = mab_params_path(st, "dir", NULL, path, sizeof path)))
        return rc;
    s->static_url = strdup(url);
    s->static_dir = strdup(path);
    return s->static_url && s->static_dir ? MAB_OK : MAB_ENOMEM;
}

static int read_admin_token(mab_params *m, mabd_settings *s)
{
    const char *name = NULL;
    int rc = mab_params_string(m, "admin_token_file", NULL, &name);
    if (rc || !name)
        return rc;
    char file[4096];
    if (!name[0])
        return mab_params_fail(m, "admin_token_file", "expected a file name");
    if ((rc = mab_params_path(m, "admin_token_file", NULL, file, sizeof file)))
        return rc;
    char why[1024];
    if (read_token(file, &s->admin_token, why, sizeof why))
        return mab_params_fail(m, "admin_token_file", "%s", why);
    return MAB_OK;
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

static int read_limits(mab_params *m, mabd_settings *s)
{
    int rc;
    if ((rc = unsigned_key(m, "request_timeout_s", 1, 3600, &s->request_timeout_s)) ||
        (rc = unsigned_key(m, "max_connections_per_ip", 0, 100000,
                           &s->max_connections_per_ip)) ||
        (rc = unsigned_key(m, "storage_log_interval_s", 1, 86400, &s->storage_log_interval_s)))
        return rc;
    const char *names[SERVER_NAMES_MAX];
    size_t n;
    if ((rc = mab_params_strings(m, "server_names", SERVER_NAMES_MAX, names, &n)) || !n)
        return rc;
    s->server_names = calloc(n + 1, sizeof *s->server_names);
    if (!s->server_names)
        return MAB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!server_name_ok(names[i]))
            return mab_params_fail(m, "server_names",
                                   "element %zu: expected a host name, optionally with :PORT "
                                   "(letters, digits, '.', '-')", i);
        char *name = strdup(names[i]);
        if (!name)
            return MAB_ENOMEM;
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        s->server_names[s->n_server_names++] = name;
    }
    return MAB_OK;
}

/* ---- logs (docs/operating-mabd.md) ---- */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *mabd_log_level_name(mabd_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "info";
}

/* The access log is opened (and created) by mabd only: here its place is
   checked, so that `mab check` finds a typo without creating the file. */
static int access_log_usable(mab_params *m, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return mab_params_fail(m, "access_log", "%s is not a regular file", path);
        if (access(path, W_OK) != 0)
            return mab_params_fail(m, "access_log", "%s is not writable: %s", path,
                                   strerror(errno));
        return MAB_OK;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mab_params_fail(m, "access_log", "directory %s does not exist", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return mab_params_fail(m, "access_log", "cannot create %s: directory %s is not "
                               "writable", path, dir);
    return MAB_OK;
}

static int read_logs(mab_params *m, mabd_settings *s)
{
    const char *level = NULL, *log = NULL;
    int rc = mab_params_string(m, "log_level", NULL, &level);
    if (rc == MAB_OK && level) {
        size_t i = 0;
        while (i < 4 && strcmp(level, level_names[i]) != 0)
            i++;
        if (i == 4)
            return mab_params_fail(m, "log_level", "expected \"error\", \"warn\", \"info\" "
                                   "or \"debug\"");
        s->log_level = (mabd_log_level)i;
    }
    if (rc == MAB_OK)
        rc = mab_params_string(m, "access_log", NULL, &log);
    if (rc || !log)
        return rc;
    if (strcmp(log, "stderr") == 0) {
        s->access_log = strdup("stderr");
        return s->access_log ? MAB_OK : MAB_ENOMEM;
    }
    if (!log[0])
        return mab_params_fail(m, "access_log", "expected a file name or \"stderr\"");
    char path[4096];
    if ((rc = mab_params_path(m, "access_log", NULL, path, sizeof path)) ||
        (rc = access_log_usable(m, path)))
        return rc;
    s->access_log = strdup(path);
    return s->access_log ? MAB_OK : MAB_ENOMEM;
}

static int parse(mab_params *m, mabd_settings *s, char *msg, size_t cap)
{
    const char *listen = NULL;
    mab_params *ser, *met;
    int rc = mab_params_string(m, "listen", NULL, &listen);
    if (rc == MAB_OK && listen && (strlen(listen) >= sizeof s->listen || !strchr(listen, ':')))
        rc = mab_params_fail(m, "listen", "expected \"HOST:PORT\"");
    if (rc == MAB_OK && listen)
        snprintf(s->listen, sizeof s->listen, "%s", listen);
    if (rc == MAB_OK)
        rc = read_admin_token(m, s);
    if (rc == MAB_OK)
        rc = read_static(m, s);
    if (rc == MAB_OK && !(rc = unsigned_key(m, "max_connections", 1, 100000,
                                            &s->max_connections)) &&
        !(rc = unsigned_key(m, "timeout_s", 1, 3600, &s->timeout_s)) &&
        !(rc = unsigned_key(m, "threads", 1, 256, &s->threads)) &&
        !(rc = mab_params_object(m, "series", &ser)) &&
        !(rc = unsigned_key(ser, "interval_s", 1, 86400, &s->series_interval_s)) &&
        !(rc = unsigned_key(ser, "keep", 1, 1000000, &s->series_keep)))
        rc = size_key(ser, "max_bytes", (int64_t)1 << 40, &s->series_max_bytes);
    if (rc == MAB_OK && !(rc = mab_params_object(m, "metrics", &met)) &&
        !(rc = unsigned_key(met, "report_interval_s", 0, 86400,
                            &s->metrics_report_interval_s)))
        rc = unsigned_key(met, "reports_per_scrape", 1, 10000000,
                          &s->metrics_reports_per_scrape);
    if (rc == MAB_OK)
        rc = read_limits(m, s);
    if (rc == MAB_OK)
        rc = read_logs(m, s);
    /* Last: a key none of the reads above asked for is a typo. */
    if (rc == MAB_OK)
        rc = mab_params_check_unread(m, NULL);
    return rc == MAB_OK ? 0 : failed(m, msg, cap);
}

const char *const mabd_config_sections[] = {"mabd", NULL};

int mabd_settings_load(const mab_engine *engine, mabd_settings *s, char *msg, size_t cap)
{
    memset(s, 0, sizeof *s);
    snprintf(s->listen, sizeof s->listen, "127.0.0.1:8080");
    s->max_connections = 1024;
    s->timeout_s = 30;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->threads = cpus > 0 ? (unsigned)cpus : 2;
    s->series_interval_s = 60;
    s->series_keep = 1440;
    s->series_max_bytes = (size_t)64 << 20;
    s->metrics_report_interval_s = 0;
    s->metrics_reports_per_scrape = 1000;
    s->request_timeout_s = 10;
    s->max_connections_per_ip = 64;
    s->storage_log_interval_s = 60;
    s->log_level = MABD_LOG_INFO;
    msg[0] = '\0';
    mab_params *m = NULL;
    mab_error err = {0, ""};
    if (mab_config_section(engine, "mabd", &m, &err) != MAB_OK) {
        snprintf(msg, cap, "%s", err.message);
        return -1;
    }
    int rc = parse(m, s, msg, cap);
    mab_params_free(m);
    if (rc)
        mabd_settings_free(s);
    return rc;
}
void mabd_settings_free(mabd_settings *s)
{
    free(s->admin_token);
    free(s->static_url);
    free(s->static_dir);
    free(s->access_log);
    s->admin_token = s->static_url = s->static_dir = s->access_log = NULL;
    for (size_t i = 0; i < s->n_server_names; i++)
        free(s->server_names[i]);
    free(s->server_names);
    s->server_names = NULL;
    s->n_server_names = 0;
}
