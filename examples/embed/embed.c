/*
 * embed.c - libmab embedded in a C program of your own: a tiny HTTP loop
 * (plain sockets, loopback, one request per connection) serving the two
 * adapter hooks.
 *
 *     GET /choose/EXP[?f.NAME=X...] {"arm": ID, "value": VALUE} + Set-Cookie
 *                                   (f.NAME=X: context features for the policy)
 *     GET /reward/EXP[?value=X]     {"counted": true|false, "reason": ...}
 *     GET /reward/EXP?to=/path      the same reward, then 303 to /path
 *                                   (400 when the adapter's guard refuses it)
 *
 * Build against an installed mab with the Makefile (pkg-config), run with
 * `./embed CONFIG [PORT]`; SIGTERM or SIGINT stops it and writes the counters.
 * The HTTP parsing here is the least a demo needs: use mabd, nginx or a real
 * HTTP library in production.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mab/adapter.h>
#include <mab/mab.h>

#define REQUEST_MAX 8192

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* Send one whole response and close: status line, headers, JSON body. */
static void reply(int fd, int status, const char *headers, const char *body)
{
    const char *reason = status == 200   ? "OK"
                         : status == 303 ? "See Other"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     status, reason, strlen(body), headers);
    if (n > 0 && (size_t)n < sizeof head && write(fd, head, (size_t)n) == n)
        (void)!write(fd, body, strlen(body));
}

/* The value of header `name` in the raw request, copied into out (or ""). */
static void header_value(const char *request, const char *name, char *out, size_t cap)
{
    size_t len = strlen(name);
    out[0] = '\0';
    for (const char *line = strstr(request, "\r\n"); line && line[2] != '\r';
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, len) == 0 && h[len] == ':') {
            h += len + 1;
            while (*h == ' ')
                h++;
            size_t n = strcspn(h, "\r\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, h, n);
            out[n] = '\0';
            return;
        }
    }
}

/* The query parameter `key` of `query` ("a=1&b=2"), copied into out; 0 if absent.
   No percent-decoding: enough for the paths and numbers of this demo. */
static int query_param(const char *query, const char *key, char *out, size_t cap)
{
    size_t len = strlen(key);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, len) == 0 && p[len] == '=') {
            size_t n = strcspn(p + len + 1, "&");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, p + len + 1, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

/* The query's context features "f.NAME=X" (at most FEATURES_MAX), for
   mab_request_set_features(). A value that is not a number is missing (NAN).
   Names point into `query`, whose '&' and '=' are overwritten. */
#define FEATURES_MAX 16
static size_t query_features(char *query, const char **names, double *values)
{
    size_t n = 0;
    for (char *p = query, *next; p && *p && n < FEATURES_MAX; p = next) {
        next = strchr(p, '&');
        if (next)
            *next++ = '\0';
        char *eq = strchr(p, '=');
        if (strncmp(p, "f.", 2) != 0 || !eq || eq == p + 2)
            continue;
        *eq = '\0';
        char *end;
        double v = strtod(eq + 1, &end);
        names[n] = p + 2;
        values[n++] = (*end || end == eq + 1 || !isfinite(v)) ? NAN : v;
    }
    return n;
}

static void error_reply(int fd, int status, const char *message)
{
    char body[MAB_ERROR_MAX + 64];
    /* Error sentences name ids and files; drop characters JSON would need escaped. */
    char clean[MAB_ERROR_MAX];
    size_t j = 0;
    for (size_t i = 0; message[i] && j + 1 < sizeof clean; i++)
        if (message[i] != '"' && message[i] != '\\' && (unsigned char)message[i] >= 0x20)
            clean[j++] = message[i];
    clean[j] = '\0';
    snprintf(body, sizeof body, "{\"error\": \"%s\"}\n", clean);
    reply(fd, status, "", body);
}

/* MAB_ESTORAGE comes from a reward with `sync: "always"` whose write
   failed: it is not durable, so it is not reported as counted (503, retry
   later; the adapter left the cookie able to retry). */
static int status_of(int rc)
{
    return rc == MAB_ENOTFOUND                  ? 404
           : rc == MAB_EINVAL || rc == MAB_ERANGE ? 400
           : rc == MAB_ESTORAGE                   ? 503
                                                  : 500;
}

/* One request: the choose or the reward hook, answered on fd. */
static void serve(mab_adapter *adapter, int fd, char *request)
{
    char method[8], target[2048];
    if (sscanf(request, "%7s %2047s", method, target) != 2 || strcmp(method, "GET") != 0) {
        error_reply(fd, 400, "expected GET /choose/EXP or GET /reward/EXP");
        return;
    }
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    int is_choose = strncmp(target, "/choose/", 8) == 0;
    int is_reward = strncmp(target, "/reward/", 8) == 0;
    if (!is_choose && !is_reward) {
        error_reply(fd, 404, "no such route");
        return;
    }
    const char *experiment = target + 8;

    char cookie[4096];
    header_value(request, "Cookie", cookie, sizeof cookie);
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(adapter, cookie[0] ? cookie : NULL, NULL, &rq, &err) != MAB_OK) {
        error_reply(fd, 500, err.message);
        return;
    }

    char body[8192], headers[4096] = "";
    int status = 200, rc;
    if (is_choose) {
        const char *names[FEATURES_MAX];
        double values[FEATURES_MAX];
        size_t n = query_features(query, names, values);
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        rc = mab_request_set_features(rq, names, values, n, &err);
        if (rc == MAB_OK)
            rc = mab_request_choose(rq, experiment, &a, &err);
        if (rc == MAB_OK)
            snprintf(body, sizeof body, "{\"arm\": \"%s\", \"value\": %s}\n", a.arm_id,
                     a.value_json);
    } else {
        char value_text[64] = "1", to[1024];
        double value = strtod(query_param(query, "value", value_text, sizeof value_text)
                                  ? value_text : "1", NULL);
        mab_reward_result result = MAB_STRUCT_INIT(mab_reward_result);
        if (query_param(query, "to", to, sizeof to)) {
            mab_redirect where = MAB_STRUCT_INIT(mab_redirect);
            rc = mab_request_redirect(rq, experiment, value, to, &result, &where, &err);
            if (rc == MAB_OK) {
                status = where.status;
                snprintf(headers, sizeof headers, "Location: %s\r\n", where.location);
            }
        } else {
            rc = mab_request_reward(rq, experiment, value, &result, &err);
        }
        if (rc == MAB_OK)
            snprintf(body, sizeof body, "{\"counted\": %s, \"reason\": %s%s%s}\n",
                     result.counted ? "true" : "false", result.counted ? "" : "\"",
                     result.counted ? "null" : mab_reward_reason_name(result.reason),
                     result.counted ? "" : "\"");
    }
    if (rc != MAB_OK) {
        error_reply(fd, status_of(rc), err.message);
    } else {
        const char *set_cookie = mab_request_set_cookie(rq);
        if (set_cookie) {
            size_t used = strlen(headers);
            snprintf(headers + used, sizeof headers - used, "Set-Cookie: %s\r\n", set_cookie);
        }
        reply(fd, status, headers, body);
    }
    mab_request_end(rq);
}

/* Read one request head (up to the blank line) into buf; 0 on failure. */
static int read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t got = read(fd, buf + len, cap - 1 - len);
        if (got <= 0)
            return 0;
        len += (size_t)got;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s CONFIG [PORT]\n", argv[0]);
        return 2;
    }
    mab_engine *engine;
    mab_adapter *adapter;
    mab_error err = {0, ""};
    if (mab_open(argv[1], &engine, &err) != MAB_OK) {
        fprintf(stderr, "embed: %s\n", err.message);
        return 1;
    }
    if (mab_adapter_open(engine, &adapter, &err) != MAB_OK) {
        fprintf(stderr, "embed: %s\n", err.message);
        mab_close(engine, NULL);
        return 1;
    }

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)(argc == 3 ? atoi(argv[2]) : 0)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 64) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        fprintf(stderr, "embed: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        return 1;
    }
    /* No SA_RESTART: a signal interrupts accept() so the loop can stop. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("embed: listening on http://127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    static char request[REQUEST_MAX];
    while (!stopping) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue; /* EINTR from a signal, or a connection that went away */
        struct timeval timeout = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        if (read_request(fd, request, sizeof request))
            serve(adapter, fd, request);
        else
            error_reply(fd, 400, "malformed or oversized request");
        close(fd);
    }
    close(listener);
    mab_adapter_close(adapter);
    if (mab_close(engine, &err) != MAB_OK) {
        fprintf(stderr, "embed: %s\n", err.message);
        return 1;
    }
    fprintf(stderr, "embed: stopped, counters written\n");
    return 0;
}
