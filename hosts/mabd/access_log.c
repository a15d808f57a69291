/*
 * access_log.c - mabd's access log (docs/operating-mabd.md, "Access log").
 *
 * One line per answered request, in the combined log format that log
 * tools read, followed by one field per experiment the request chose or
 * rewarded:
 *
 *   127.0.0.1 - - [01/Dec/2026:09:30:00 +0000] "GET /v1/choose/btn HTTP/1.1" 200 87 "-" "curl/8.5.0" mab="exp=btn arm=green p=0.333333 pull=1 reward=-"
 *
 * exp and arm name the assignment, p is the probability the arm was chosen
 * with when it was assigned (from the signed cookie; "-" when the policy
 * cannot tell), pull=1 when this request counted a pull (a new assignment),
 * reward the value counted ("-" with reason=NAME when none counted). With
 * p, the pulls and the rewards a log is enough for off-policy evaluation
 * (inverse propensity scoring) of another policy.
 *
 * Requests are answered synchronously on MHD's pool threads, so the fields
 * of the request a thread is answering accumulate in thread-local storage
 * and the line is written after the answer was queued, with one write() on
 * an O_APPEND descriptor (lines from several threads never interleave).
 * SIGHUP reopens the file (logrotate's "postrotate kill -HUP"); the
 * descriptor is swapped under a write lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "mabd.h"

#define LINE_MAX_BYTES 8192

typedef struct access_entry {
    int active;
    unsigned status;
    size_t bytes;
    char mab[LINE_MAX_BYTES / 2];
    size_t mab_len;
} access_entry;

static _Thread_local access_entry current;

/* Copy s into out, escaping what would break a quoted field (as nginx does). */
static size_t escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == ' ')
            n += (size_t)snprintf(out + n, cap - n, "\\x%02X", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

static int open_target(const char *target, char *msg, size_t cap)
{
    if (strcmp(target, "stderr") == 0)
        return dup(STDERR_FILENO);
    int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        snprintf(msg, cap, "access_log %s: %s", target, strerror(errno));
    return fd;
}

int mabd_access_log_open(mabd *d, char *msg, size_t cap)
{
    pthread_rwlock_wrlock(&d->access_lock);
    int rc = 0;
    int fd = -1;
    if (d->settings.access_log) {
        fd = open_target(d->settings.access_log, msg, cap);
        rc = fd < 0 ? -1 : 0;
    }
    if (rc == 0) {
        if (d->access_fd >= 0)
            close(d->access_fd);
        d->access_fd = fd;
        atomic_store(&d->access_enabled, fd >= 0);
    }
    pthread_rwlock_unlock(&d->access_lock);
    return rc;
}

void mabd_access_log_close(mabd *d)
{
    pthread_rwlock_wrlock(&d->access_lock);
    if (d->access_fd >= 0)
        close(d->access_fd);
    d->access_fd = -1;
    atomic_store(&d->access_enabled, 0);
    pthread_rwlock_unlock(&d->access_lock);
}

void mabd_access_begin(void)
{
    current.active = 1;
    current.status = 0;
    current.bytes = 0;
    current.mab_len = 0;
    current.mab[0] = '\0';
}

void mabd_access_response(unsigned status, size_t bytes)
{
    current.status = status;
    current.bytes = bytes;
}

void mabd_access_mab(const char *experiment, const char *arm, double probability, int pull,
                     const char *reward, const char *reason)
{
    if (!current.active)
        return;
    char exp_text[512], arm_text[512], p_text[32];
    escape(exp_text, sizeof exp_text, experiment);
    escape(arm_text, sizeof arm_text, arm ? arm : "-");
    if (isnan(probability))
        snprintf(p_text, sizeof p_text, "-");
    else
        snprintf(p_text, sizeof p_text, "%.6g", probability);
    size_t room = sizeof current.mab - current.mab_len;
    int n = snprintf(current.mab + current.mab_len, room,
                     " mab=\"exp=%s arm=%s p=%s pull=%d reward=%s%s%s\"", exp_text, arm_text,
                     p_text, pull, reward, reason ? " reason=" : "", reason ? reason : "");
    if (n > 0 && (size_t)n < room)
        current.mab_len += (size_t)n;
    else
        current.mab[current.mab_len] = '\0';
}

static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, cap, "-");
    if (info && info->client_addr && info->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)info->client_addr)->sin_addr,
                  out, (socklen_t)cap);
}

/* The time stamp of the current second, formatted once per second and
   thread: localtime_r() takes glibc's time zone lock on every call. */
static void format_time(char *out, size_t cap)
{
    static _Thread_local time_t cached_second = -1;
    static _Thread_local char cached[64];
    time_t now = time(NULL);
    if (now != cached_second) {
        struct tm tm;
        strftime(cached, sizeof cached, "%d/%b/%Y:%H:%M:%S %z", localtime_r(&now, &tm));
        cached_second = now;
    }
    snprintf(out, cap, "%s", cached);
}

struct query_text {
    char *out;
    size_t len, cap;
};

/* The query string again (MHD hands the URL without it), values
   escaped; a token is not logged: it is the visitor's signed state. */
static enum MHD_Result add_argument(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct query_text *q = cls;
    char k[256], v[512];
    escape(k, sizeof k, key);
    escape(v, sizeof v, strcmp(key, "token") == 0 ? "-" : value ? value : "");
    int n = snprintf(q->out + q->len, q->cap - q->len, "%c%s%s%s", q->len ? '&' : '?', k,
                     value ? "=" : "", value ? v : "");
    if (n > 0 && (size_t)n < q->cap - q->len)
        q->len += (size_t)n;
    return MHD_YES;
}

void mabd_access_end(mabd *d, struct MHD_Connection *conn, const char *method, const char *url,
                     const char *version)
{
    if (!current.active)
        return;
    current.active = 0;
    /* No log: no line to format and no lock to take (a load, no shared
       write per request). */
    if (!atomic_load_explicit(&d->access_enabled, memory_order_relaxed))
        return;
    char addr[64], stamp[64], path[1024], query[1024] = "", referer[512], agent[512];
    client_address(conn, addr, sizeof addr);
    format_time(stamp, sizeof stamp);
    escape(path, sizeof path, url);
    struct query_text q = {query, 0, sizeof query};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_argument, &q);
    escape(referer, sizeof referer,
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Referer"));
    escape(agent, sizeof agent,
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent"));
    char line[LINE_MAX_BYTES];
    int n = snprintf(line, sizeof line, "%s - - [%s] \"%s %s%s %s\" %u %zu \"%s\" \"%s\"%s\n",
                     addr, stamp, method, path, query, version, current.status, current.bytes,
                     referer[0] ? referer : "-", agent[0] ? agent : "-", current.mab);
    if (n <= 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    line[len - 1] = '\n';
    /* Writers share the lock (O_APPEND keeps lines whole); a reopen takes
       it alone to swap the descriptor. */
    pthread_rwlock_rdlock(&d->access_lock);
    if (d->access_fd >= 0 && write(d->access_fd, line, len) != (ssize_t)len)
        atomic_fetch_add(&d->access_write_errors, 1);
    pthread_rwlock_unlock(&d->access_lock);
}
