/*
 * server.c - mabd's HTTP side (libmicrohttpd): routing, request bodies,
 * admin authentication, and one function per route. Routes and their
 * answers: docs/hosts.md.
 *
 * Every answer goes through respond(); every error is JSON
 * {"error": SENTENCE} with a 4xx/5xx status; JSON is written with cJSON. A request is inside
 * mabd_read_begin/end while it uses the engine, so a reload (SIGHUP) never
 * swaps the engine under it (threads.h: no shared write per request).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "mabd.h"
#include "request_params.h"

#define MAX_EXPERIMENTS_PER_REQUEST MABD_MAX_EXPERIMENTS_PER_REQUEST
#define ID_MAX MABD_ID_MAX
#define STATIC_FILE_MAX (4u << 20)

/* The dashboard's files, embedded at build time (embed.cmake). */
extern const unsigned char mabd_asset_dashboard_html[];
extern const size_t mabd_asset_dashboard_html_len;
extern const unsigned char mabd_asset_dashboard_js[];
extern const size_t mabd_asset_dashboard_js_len;
extern const unsigned char mabd_asset_dashboard_css[];
extern const size_t mabd_asset_dashboard_css_len;

typedef struct header {
    const char *name, *value;
} header;

/* A POST request's body, collected across calls. */
typedef struct post_state {
    strbuf body;
    int too_large;
} post_state;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Queue a response; `body` (may be NULL) is taken over. */
static enum MHD_Result respond(mabd *d, struct MHD_Connection *conn, unsigned status,
                               const char *content_type, char *body, size_t len,
                               const header *headers, size_t n_headers)
{
    if (status >= 400 && status < 500)
        mabd_threads_bad_request(&d->threads);
    mabd_access_response(status, body ? len : 0);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body ? len : 0, body ? body : (void *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (content_type)
        MHD_add_response_header(resp, "Content-Type", content_type);
    for (size_t i = 0; i < n_headers; i++)
        if (headers[i].value)
            MHD_add_response_header(resp, headers[i].name, headers[i].value);
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Queue `doc` (taken over) as one line of JSON, uncached. */
static enum MHD_Result respond_json(mabd *d, struct MHD_Connection *conn, unsigned status,
                                    cJSON *doc, const header *headers, size_t n_headers)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text)
        return MHD_NO;
    size_t len = strlen(text);
    char *body = malloc(len + 2);
    if (body) {
        memcpy(body, text, len);
        body[len++] = '\n';
        body[len] = '\0';
    }
    cJSON_free(text);
    if (!body)
        return MHD_NO;
    header all[8];
    size_t n = 0;
    all[n++] = (header){"Cache-Control", "no-store"};
    for (size_t i = 0; i < n_headers && n < 8; i++)
        all[n++] = headers[i];
    return respond(d, conn, status, "application/json", body, len, all, n);
}

static enum MHD_Result error_reply(mabd *d, struct MHD_Connection *conn, unsigned status,
                                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result error_reply(mabd *d, struct MHD_Connection *conn, unsigned status,
                                   const char *fmt, ...)
{
    char message[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    cJSON *doc = cJSON_CreateObject();
    if (doc && !cJSON_AddStringToObject(doc, "error", message)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    return respond_json(d, conn, status, doc, NULL, 0);
}

/* An engine or adapter status as an HTTP status. */
static unsigned http_status(int code)
{
    switch (code) {
    case MAB_ENOTFOUND: return 404;
    case MAB_EINVAL:
    case MAB_ERANGE: return 400;
    case MAB_ESTORAGE: return 503;
    default: return 500;
    }
}

/* ---- parsing -------------------------------------------------------- */

static int constant_time_equal(const char *given, const char *want)
{
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = lg != lw;
    for (size_t i = 0; i < lw; i++)
        diff |= (unsigned char)(want[i] ^ (i < lg ? given[i] : 0));
    return diff == 0;
}

static int admin_ok(mabd *d, struct MHD_Connection *conn)
{
    const char *token = d->settings.admin_token;
    if (!token)
        return 1;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *given = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        given = auth + 7;
    else
        given = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "access_token");
    return given && constant_time_equal(given, token);
}

/* ---- cross-site and DNS-rebinding guards (docs/hosts.md, "Admin routes") ---- */

static int is_ipv4_literal(const char *name)
{
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1;
}

/*
 * Is the Host header one this mabd answers admin routes for? A page that
 * rebinds its own name to mabd's address still sends its own name as Host,
 * so names are refused unless configured (mabd.server_names); an address
 * literal cannot be rebound. No Host at all is not a browser (browsers
 * always send it; HTTP/1.1 requires it and libmicrohttpd enforces that).
 */
static int host_allowed(const mabd *d, const char *host)
{
    if (!host)
        return 1;
    char name[300];
    if (strlen(host) >= sizeof name)
        return 0;
    size_t n = 0;
    for (const char *c = host; *c; c++)
        name[n++] = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    name[n] = '\0';
    for (size_t i = 0; i < d->settings.n_server_names; i++) {
        const char *want = d->settings.server_names[i];
        /* "name" matches on any port (a proxy may map ports), "name:port" exactly. */
        size_t wl = strlen(want);
        if (strcmp(name, want) == 0 ||
            (!strchr(want, ':') && strncmp(name, want, wl) == 0 && name[wl] == ':'))
            return 1;
    }
    /* The listen address: HOST[:PORT] with the bound port (80 when absent). */
    char *colon = name[0] == '[' ? strchr(name, ']') : name;
    colon = colon ? strchr(colon, ':') : NULL;
    unsigned port = 80;
    if (colon) {
        char *end;
        unsigned long p = strtoul(colon + 1, &end, 10);
        if (*end || colon[1] == '\0' || p > 65535)
            return 0;
        port = (unsigned)p;
        *colon = '\0';
    }
    if (port != d->port)
        return 0;
    if (strcmp(name, d->listen_ip) == 0)
        return 1;
    if (d->loopback && (strcmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0 ||
                        (strncmp(name, "127.", 4) == 0 && is_ipv4_literal(name))))
        return 1;
    /* Listening on every address: any IPv4 literal is one of ours. */
    return strcmp(d->listen_ip, "0.0.0.0") == 0 && is_ipv4_literal(name);
}

/* The media type of the request's Content-Type, lower case, or "". */
static void media_type(struct MHD_Connection *conn, char *out, size_t cap)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = 0;
    while (ct && *ct == ' ')
        ct++;
    for (; ct && ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < cap; n++)
        out[n] = (ct[n] >= 'A' && ct[n] <= 'Z') ? (char)(ct[n] - 'A' + 'a') : ct[n];
    out[n] = '\0';
}

/*
 * A state-changing admin request must carry something an HTML form on
 * another site cannot send without a CORS preflight (which mabd never
 * grants): Content-Type application/json, or an X-MAB-Request header.
 */
static int not_a_form(struct MHD_Connection *conn)
{
    char type[64];
    media_type(conn, type, sizeof type);
    return strcmp(type, "application/json") == 0 ||
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-MAB-Request") != NULL;
}

/* The browser says this request comes from a page of another site. */
static int cross_site(struct MHD_Connection *conn)
{
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    return site && strcasecmp(site, "cross-site") == 0;
}

static enum MHD_Result unauthorized(mabd *d, struct MHD_Connection *conn)
{
    cJSON *doc = cJSON_CreateObject();
    if (doc && !cJSON_AddStringToObject(doc, "error",
                                        "admin route: send the token of admin_token_file as "
                                        "'Authorization: Bearer TOKEN' (or ?access_token=TOKEN)")) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    header h = {"WWW-Authenticate", "Bearer realm=\"mabd\""};
    return respond_json(d, conn, 401, doc, &h, 1);
}

/* ---- choose, reward, redirect ---------------------------------------- */

static const char *request_token(struct MHD_Connection *conn)
{
    const char *token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
    return token ? token : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-MAB-Token");
}

/* Query arguments "f.NAME=NUMBER" into features (MHD_KeyValueIterator). */
typedef struct query_features {
    mabd_features *features;
    int failed;
} query_features;

static enum MHD_Result query_feature(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    query_features *q = cls;
    if (strncmp(key, "f.", 2) != 0)
        return MHD_YES;
    /* "?f.x" without "=": no value, which is not a number either. */
    if (!mabd_features_add(q->features, key + 2, strlen(key + 2), value ? value : "")) {
        q->failed = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

/* The body's "features": {"NAME": number or null, ...}. */
static int body_features(const cJSON *object, mabd_features *features)
{
    if (!cJSON_IsObject(object)) {
        snprintf(features->error, sizeof features->error,
                 "\"features\" must be an object of numbers");
        return 0;
    }
    for (const cJSON *c = object->child; c; c = c->next) {
        int ok = cJSON_IsNull(c) ? mabd_features_add(features, c->string, strlen(c->string), NULL)
                 : cJSON_IsNumber(c)
                     ? mabd_features_add_value(features, c->string, strlen(c->string),
                                               c->valuedouble)
                     : (snprintf(features->error, sizeof features->error,
                                 "feature %.128s: expected a number or null", c->string),
                        0);
        if (!ok)
            return 0;
    }
    return 1;
}

static enum MHD_Result route_choose(mabd *d, struct MHD_Connection *conn, const char *list,
                                    const strbuf *body)
{
    uint64_t start = now_ns();
    char ids[MAX_EXPERIMENTS_PER_REQUEST][ID_MAX + 1];
    size_t n;
    if (!mabd_split_ids(list, ids, &n))
        return error_reply(d, conn, 400,
                           "expected /v1/choose/EXP[,EXP...] with up to %d experiment ids",
                           MAX_EXPERIMENTS_PER_REQUEST);
    mabd_features features;
    mabd_features_init(&features);
    query_features q = {&features, 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_feature, &q);
    if (q.failed)
        return error_reply(d, conn, 400, "query: %s", features.error);
    if (body && body->len) {
        cJSON *json = cJSON_ParseWithLength(body->data, body->len);
        const cJSON *c = cJSON_IsObject(json) ? json->child : NULL;
        int ok = cJSON_IsObject(json);
        for (; ok && c; c = c->next)
            ok = strcmp(c->string, "features") == 0 && body_features(c, &features);
        if (!ok) {
            enum MHD_Result r = error_reply(
                d, conn, 400, "body: %s",
                !cJSON_IsObject(json) ? "must be a JSON object {\"features\": {...}}"
                : features.error[0]   ? features.error
                                      : "unexpected key (expected \"features\")");
            cJSON_Delete(json);
            return r;
        }
        cJSON_Delete(json);
    }
    const char *token = request_token(conn);
    const char *cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie");
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(d->adapter, cookie, token, &rq, &err) != MAB_OK)
        return error_reply(d, conn, 500, "%s", err.message);
    if (mab_request_set_features(rq, features.name_ptrs, features.values, features.n, &err) !=
        MAB_OK) {
        mab_request_end(rq);
        return error_reply(d, conn, 500, "%s", err.message);
    }
    cJSON *doc = cJSON_CreateObject();
    int ok = doc != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(ids[i], ids[j]) == 0;
        if (seen)
            continue;
        mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
        int rc = mab_request_choose(rq, ids[i], &a, &err);
        if (rc != MAB_OK) {
            cJSON_Delete(doc);
            mab_request_end(rq);
            return error_reply(d, conn, http_status(rc), "%s", err.message);
        }
        mabd_access_mab(ids[i], a.arm_id, a.probability, a.is_new, "-", NULL);
        /* The arm's value is JSON text from the config, handed back verbatim. */
        cJSON *one = cJSON_AddObjectToObject(doc, ids[i]);
        ok = one && cJSON_AddStringToObject(one, "arm", a.arm_id) &&
             cJSON_AddRawToObject(one, "value", a.value_json) &&
             cJSON_AddNumberToObject(one, "probability", a.probability);
        /* Which operating rule served it (docs/operating.md), only when one
           did, so the common answer stays as it was. */
        if (ok && (a.flags & MAB_CHOICE_HOLDOUT))
            ok = cJSON_AddTrueToObject(one, "holdout") != NULL;
        if (ok && (a.flags & MAB_CHOICE_NOT_LEARNING))
            ok = cJSON_AddTrueToObject(one, "paused") != NULL;
    }
    /* The token goes in the body only when the caller asked for it (sent
       ?token= or X-MAB-Token, even empty), so that page scripts do not see
       the state an HttpOnly cookie protects. "$" never occurs in an id. */
    if (ok && token) {
        const char *t = mab_request_token(rq);
        ok = cJSON_AddStringToObject(doc, "$token", t ? t : "") != NULL;
    }
    if (!ok) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    header h[2] = {{"Set-Cookie", mab_request_set_cookie(rq)},
                   {"X-MAB-Debug", mab_request_debug_header(rq)}};
    enum MHD_Result result = respond_json(d, conn, 200, doc, h, 2);
    mab_request_end(rq);
    mabd_latency_record(d, now_ns() - start);
    return result;
}

/* The body of a 503 for a reward that could not be made durable. */
static cJSON *not_durable(const char *experiment, const char *why)
{
    char message[MAB_ERROR_MAX + 200];
    snprintf(message, sizeof message,
             "experiment %s: the reward is not durable (storage write failed: %s); it was not "
             "counted as acknowledged, retry later",
             experiment, why);
    cJSON *doc = cJSON_CreateObject();
    if (doc && !(cJSON_AddStringToObject(doc, "error", message) &&
                 cJSON_AddBoolToObject(doc, "counted", 0) &&
                 cJSON_AddStringToObject(doc, "reason", "storage_error"))) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    return doc;
}

/* The access log's field for one reward (counted, refused, not durable). */
static void access_reward(const mab_request *rq, const char *experiment, double value, int rc,
                          const mab_reward_result *r)
{
    if (rc != MAB_OK && rc != MAB_ESTORAGE)
        return;
    char counted[32];
    snprintf(counted, sizeof counted, "%.17g", value);
    int ok = rc == MAB_OK && r->counted;
    if (!ok && rc == MAB_OK)
        mabd_log(MABD_LOG_DEBUG, "reward for %s not counted: %s", experiment,
                 mab_reward_reason_name(r->reason));
    mabd_access_mab(experiment, r->arm_id, mab_request_probability(rq, experiment), 0,
                    ok ? counted : "-",
                    ok ? NULL : rc == MAB_ESTORAGE ? "storage_error"
                                                   : mab_reward_reason_name(r->reason));
}

static enum MHD_Result route_reward(mabd *d, struct MHD_Connection *conn, const char *experiment,
                                    const strbuf *body)
{
    if (!mabd_valid_id(experiment, strlen(experiment)))
        return error_reply(d, conn, 400, "expected /v1/reward/EXP with one experiment id");
    double value = 1;
    const char *token = NULL;
    cJSON *json = NULL;
    mabd_features features;
    mabd_features_init(&features);
    if (body->len) {
        json = cJSON_ParseWithLength(body->data, body->len);
        if (!cJSON_IsObject(json)) {
            cJSON_Delete(json);
            return error_reply(d, conn, 400,
                               "the body must be a JSON object {\"value\": X, \"token\": T}");
        }
        for (const cJSON *c = json->child; c; c = c->next) {
            if (strcmp(c->string, "value") == 0 && cJSON_IsNumber(c)) {
                value = c->valuedouble;
            } else if (strcmp(c->string, "token") == 0 && cJSON_IsString(c)) {
                token = c->valuestring;
            } else if (strcmp(c->string, "features") == 0) {
                if (!body_features(c, &features)) {
                    enum MHD_Result r = error_reply(d, conn, 400, "body: %s", features.error);
                    cJSON_Delete(json);
                    return r;
                }
            } else {
                enum MHD_Result r = error_reply(
                    d, conn, 400, "body: unexpected key \"%s\" (expected \"value\": number, "
                                  "\"token\": string, \"features\": object)",
                    c->string);
                cJSON_Delete(json);
                return r;
            }
        }
    }
    int token_in_body = token != NULL;
    if (!token)
        token = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-MAB-Token");
    /* A reward that rides on the cookie must come from the site's own pages
       or from a server: a form or script on another site could otherwise
       spend the visitor's assignment (a token is a secret such a page lacks). */
    if (!token && cross_site(conn)) {
        cJSON_Delete(json);
        return error_reply(d, conn, 403, "a cross-site request (Sec-Fetch-Site: cross-site) "
                                         "cannot reward through the cookie; send the token");
    }
    const char *cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie");
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(d->adapter, cookie, token, &rq, &err) != MAB_OK) {
        cJSON_Delete(json);
        return error_reply(d, conn, 500, "%s", err.message);
    }
    /* Accepted so a client may send one body everywhere; the reward's
       update sees the features of the choice, from the cookie (adapter.h). */
    mab_request_set_features(rq, features.name_ptrs, features.values, features.n, NULL);
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    int rc = mab_request_reward(rq, experiment, value, &r, &err);
    access_reward(rq, experiment, value, rc, &r);
    enum MHD_Result result;
    header h = {"Set-Cookie", NULL};
    if (rc == MAB_ESTORAGE) {
        /* sync "always" and the write failed: not durable, so not counted.
           The adapter left the entry unrewarded, so the cookie sent back
           (if any) still allows a retry (docs/hosts.md, "counted"). */
        mabd_storage_failed(d, err.message);
        h.value = mab_request_set_cookie(rq);
        result = respond_json(d, conn, 503, not_durable(experiment, err.message), &h, 1);
    } else if (rc != MAB_OK) {
        result = error_reply(d, conn, http_status(rc), "%s", err.message);
    } else {
        cJSON *doc = cJSON_CreateObject();
        int ok = doc && cJSON_AddBoolToObject(doc, "counted", r.counted) &&
                 (r.counted ? cJSON_AddNullToObject(doc, "reason")
                            : cJSON_AddStringToObject(doc, "reason",
                                                      mab_reward_reason_name(r.reason))) &&
                 (r.arm_id ? cJSON_AddStringToObject(doc, "arm", r.arm_id)
                           : cJSON_AddNullToObject(doc, "arm"));
        if (ok && token_in_body) {
            const char *t = mab_request_token(rq);
            ok = cJSON_AddStringToObject(doc, "token", t ? t : "") != NULL;
        }
        if (!ok) {
            cJSON_Delete(doc);
            doc = NULL;
        }
        h.value = mab_request_set_cookie(rq);
        result = respond_json(d, conn, 200, doc, &h, 1);
    }
    mab_request_end(rq);
    cJSON_Delete(json);
    return result;
}

static enum MHD_Result route_redirect(mabd *d, struct MHD_Connection *conn, const char *list)
{
    char ids[MAX_EXPERIMENTS_PER_REQUEST][ID_MAX + 1];
    size_t n;
    if (!mabd_split_ids(list, ids, &n))
        return error_reply(d, conn, 400, "expected /r/EXP[,EXP...]?to=TARGET[&value=X]");
    const char *to = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "to");
    if (!to)
        return error_reply(d, conn, 400, "missing ?to=TARGET");
    const char *value_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "value");
    double value = 1;
    if (value_text && !mabd_parse_number(value_text, &value))
        return error_reply(d, conn, 400, "value: expected a number");
    const char *cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie");
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(d->adapter, cookie, request_token(conn), &rq, &err) != MAB_OK)
        return error_reply(d, conn, 500, "%s", err.message);
    mab_redirect where = MAB_STRUCT_INIT(mab_redirect);
    for (size_t i = 0; i < n; i++) {
        mab_reward_result r = {sizeof r, 0, MAB_REWARD_NO_COOKIE, NULL, NAN};
        int rc = mab_request_redirect(rq, ids[i], value, to, &r, &where, &err);
        access_reward(rq, ids[i], value, rc, &r);
        if (rc == MAB_ESTORAGE) {
            /* Not durable: no redirect (the visitor may retry the link).
               Rewards of the experiments before this one are durable and
               marked in the cookie sent back, so a retry counts them once. */
            mabd_storage_failed(d, err.message);
            header h = {"Set-Cookie", mab_request_set_cookie(rq)};
            enum MHD_Result result =
                respond_json(d, conn, 503, not_durable(ids[i], err.message), &h, 1);
            mab_request_end(rq);
            return result;
        }
        if (rc != MAB_OK) {
            mab_request_end(rq);
            return error_reply(d, conn, http_status(rc), "%s", err.message);
        }
    }
    header h[3] = {{"Location", where.location},
                   {"Set-Cookie", mab_request_set_cookie(rq)},
                   {"Cache-Control", "no-store"}};
    enum MHD_Result result = respond(d, conn, (unsigned)where.status, NULL, NULL, 0, h, 3);
    mab_request_end(rq);
    return result;
}

/* ---- admin routes ------------------------------------------------------ */

static enum MHD_Result route_stats(mabd *d, struct MHD_Connection *conn)
{
    return respond_json(d, conn, 200, mabd_stats_json(d), NULL, 0);
}

static enum MHD_Result route_report(mabd *d, struct MHD_Connection *conn, const char *experiment)
{
    if (!mabd_valid_id(experiment, strlen(experiment)))
        return error_reply(d, conn, 400, "expected /v1/report/EXP with one experiment id");
    mab_error err = {0, ""};
    cJSON *doc = mabd_report_json(d, experiment, &err);
    if (!doc)
        return err.code ? error_reply(d, conn, http_status(err.code), "%s", err.message) : MHD_NO;
    return respond_json(d, conn, 200, doc, NULL, 0);
}

static enum MHD_Result route_metrics(mabd *d, struct MHD_Connection *conn)
{
    strbuf sb;
    sb_init(&sb);
    mabd_metrics_write(d, &sb);
    size_t len;
    char *body = sb_take(&sb, &len);
    if (!body)
        return MHD_NO;
    return respond(d, conn, 200, "text/plain; version=0.0.4", body, len, NULL, 0);
}

static enum MHD_Result route_reset(mabd *d, struct MHD_Connection *conn, const char *experiment)
{
    if (!mabd_valid_id(experiment, strlen(experiment)))
        return error_reply(d, conn, 400, "expected /v1/reset/EXP with one experiment id");
    if (!not_a_form(conn))
        return error_reply(d, conn, 403, "POST /v1/reset needs 'Content-Type: application/json' "
                                         "or an 'X-MAB-Request' header (a form cannot send "
                                         "either)");
    mab_error err = {0, ""};
    int rc = mab_reset(d->engine, experiment, &err);
    if (rc == MAB_ESTORAGE)
        mabd_storage_failed(d, err.message);
    if (rc != MAB_OK)
        return error_reply(d, conn, http_status(rc), "%s", err.message);
    cJSON *doc = cJSON_CreateObject();
    if (doc && !cJSON_AddStringToObject(doc, "reset", experiment)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    return respond_json(d, conn, 200, doc, NULL, 0);
}

/* POST /v1/admin/experiments/EXP/ACTION, ACTION pause | resume | conclude |
   clear; the arm from the query (?arm=) or the JSON body {"arm": ...}. */
static enum MHD_Result route_admin_action(mabd *d, struct MHD_Connection *conn,
                                          const char *rest, const strbuf *body)
{
    static const struct {
        const char *action, *state;
    } actions[] = {{"pause", "paused"}, {"resume", "running"}, {"conclude", "concluded"},
                   {"clear", "config"}};
    const char *slash = strchr(rest, '/');
    char experiment[ID_MAX + 1];
    size_t len = slash ? (size_t)(slash - rest) : 0;
    const char *state = NULL;
    for (size_t i = 0; slash && i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(slash + 1, actions[i].action) == 0)
            state = actions[i].state;
    if (!state || len == 0 || len > ID_MAX || !mabd_valid_id(rest, len))
        return error_reply(d, conn, 404, "expected /v1/admin/experiments/EXP/ACTION with ACTION "
                                         "pause, resume, conclude or clear");
    memcpy(experiment, rest, len);
    experiment[len] = '\0';
    if (!not_a_form(conn))
        return error_reply(d, conn, 403, "POST /v1/admin needs 'Content-Type: application/json' "
                                         "or an 'X-MAB-Request' header (a form cannot send "
                                         "either)");
    const char *arm = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "arm");
    cJSON *json = NULL;
    if (body && body->len) {
        json = cJSON_ParseWithLength(body->data, body->len);
        const cJSON *a = json ? cJSON_GetObjectItemCaseSensitive(json, "arm") : NULL;
        if (!cJSON_IsObject(json) || (a && !cJSON_IsString(a) && !cJSON_IsNull(a))) {
            cJSON_Delete(json);
            return error_reply(d, conn, 400, "the body must be a JSON object, with \"arm\" a "
                                             "string when given");
        }
        if (cJSON_IsString(a)) {
            if (arm && strcmp(arm, a->valuestring) != 0) {
                cJSON_Delete(json);
                return error_reply(d, conn, 400, "two different arms: ?arm=%s and the body's "
                                                 "\"arm\"", arm);
            }
            arm = a->valuestring;
        }
    }
    mab_error err = {0, ""};
    int rc = mab_set_state(d->engine, experiment, state, arm && arm[0] ? arm : NULL, &err);
    cJSON_Delete(json); /* arm is not used past here */
    if (rc == MAB_ESTORAGE)
        mabd_storage_failed(d, err.message);
    if (rc != MAB_OK)
        return error_reply(d, conn, rc == MAB_EPLUGIN ? 501 : http_status(rc), "%s",
                           err.message);
    cJSON *doc = mabd_admin_state_json(d, experiment, &err);
    if (!doc)
        return error_reply(d, conn, http_status(err.code), "%s", err.message);
    return respond_json(d, conn, 200, doc, NULL, 0);
}

static const header page_headers[] = {
    {"Cache-Control", "no-store"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
};

/* The page is web/dashboard/dashboard.html as it is in the tree: it fetches
   its data from v1/dashboard relative to its own URL, as under mab.flask. */
static enum MHD_Result route_dashboard(mabd *d, struct MHD_Connection *conn)
{
    char *body = malloc(mabd_asset_dashboard_html_len);
    if (!body)
        return MHD_NO;
    memcpy(body, mabd_asset_dashboard_html, mabd_asset_dashboard_html_len);
    return respond(d, conn, 200, "text/html; charset=utf-8", body,
                   mabd_asset_dashboard_html_len, page_headers,
                   sizeof page_headers / sizeof page_headers[0]);
}

/* A page's ?offset= or ?limit=: digits only, within [lo, hi]; 1 and *out
   set (def when absent), or 0. */
static int page_param(struct MHD_Connection *conn, const char *name, size_t def, size_t lo,
                      size_t hi, size_t *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v) {
        *out = def;
        return 1;
    }
    size_t x = 0;
    if (!*v || strlen(v) > 12)
        return 0;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9')
            return 0;
        x = 10 * x + (size_t)(*c - '0');
    }
    if (x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

/* GET /v1/dashboard?offset=N&limit=M: a page of experiments in config
   order (docs/hosts.md, "Dashboard"). */
static enum MHD_Result route_dashboard_json(mabd *d, struct MHD_Connection *conn)
{
    size_t offset, limit;
    if (!page_param(conn, "offset", 0, 0, 999999999999u, &offset))
        return error_reply(d, conn, 400, "offset: expected a whole number of experiments to "
                           "skip (0 or more, digits only)");
    if (!page_param(conn, "limit", MABD_DASHBOARD_LIMIT, 1, MABD_DASHBOARD_LIMIT_MAX, &limit))
        return error_reply(d, conn, 400, "limit: expected a whole number of experiments per "
                           "page from 1 to %d (default %d)", MABD_DASHBOARD_LIMIT_MAX,
                           MABD_DASHBOARD_LIMIT);
    return respond_json(d, conn, 200, mabd_dashboard_json(d, offset, limit), NULL, 0);
}

static enum MHD_Result asset(mabd *d, struct MHD_Connection *conn, const unsigned char *bytes,
                             size_t len, const char *type)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return MHD_NO;
    memcpy(copy, bytes, len);
    header h[2] = {{"Cache-Control", "max-age=300"}, {"X-Content-Type-Options", "nosniff"}};
    return respond(d, conn, 200, type, copy, len, h, 2);
}

/* ---- static files -------------------------------------------------------- */

static const char *content_type_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".txt", "text/plain; charset=utf-8"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Only plain relative names: no "..", no hidden files, no backslashes. */
static int safe_relative(const char *rel)
{
    if (strlen(rel) > 512 || strchr(rel, '\\'))
        return 0;
    const char *p = rel;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || p[0] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

static enum MHD_Result route_static(mabd *d, struct MHD_Connection *conn, const char *rel)
{
    char rel_index[600];
    if (rel[0] == '\0' || rel[strlen(rel) - 1] == '/') {
        snprintf(rel_index, sizeof rel_index, "%sindex.html", rel);
        rel = rel_index;
    }
    if (!safe_relative(rel))
        return error_reply(d, conn, 404, "not found");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", d->settings.static_dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > STATIC_FILE_MAX) {
        if (fd >= 0)
            close(fd);
        return error_reply(d, conn, 404, "not found");
    }
    char *bytes = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    ssize_t r;
    while (bytes && got < (size_t)st.st_size &&
           (r = read(fd, bytes + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)r;
    close(fd);
    if (!bytes)
        return MHD_NO;
    return respond(d, conn, 200, content_type_of(path), bytes, got, page_headers, 3);
}

/* ---- routing ------------------------------------------------------------ */

static const char *after(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(url, prefix, n) == 0 ? url + n : NULL;
}

static enum MHD_Result method_not_allowed(mabd *d, struct MHD_Connection *conn, const char *allow)
{
    char message[80];
    snprintf(message, sizeof message, "method not allowed; use %s", allow);
    cJSON *doc = cJSON_CreateObject();
    if (doc && !cJSON_AddStringToObject(doc, "error", message)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    header h = {"Allow", allow};
    return respond_json(d, conn, 405, doc, &h, 1);
}

static enum MHD_Result route(mabd *d, struct MHD_Connection *conn, const char *url, int is_get,
                             const post_state *post)
{
    const char *rest;
    if (strcmp(url, "/healthz") == 0) {
        cJSON *doc = cJSON_CreateObject();
        if (doc && !(cJSON_AddStringToObject(doc, "status", "ok") &&
                     cJSON_AddStringToObject(doc, "storage", mab_storage_name(d->engine)))) {
            cJSON_Delete(doc);
            doc = NULL;
        }
        return respond_json(d, conn, 200, doc, NULL, 0);
    }
    if ((rest = after(url, "/v1/choose/")))
    {
        if (!is_get && post->too_large)
            return error_reply(d, conn, 413, "request body larger than %d bytes", MABD_BODY_MAX);
        return route_choose(d, conn, rest, is_get ? NULL : &post->body);
    }
    if ((rest = after(url, "/r/")))
        return is_get ? route_redirect(d, conn, rest) : method_not_allowed(d, conn, "GET");
    if ((rest = after(url, "/v1/reward/"))) {
        if (is_get)
            return method_not_allowed(d, conn, "POST");
        if (post->too_large)
            return error_reply(d, conn, 413, "request body larger than %d bytes", MABD_BODY_MAX);
        return route_reward(d, conn, rest, &post->body);
    }
    if (strcmp(url, "/assets/dashboard.js") == 0)
        return asset(d, conn, mabd_asset_dashboard_js, mabd_asset_dashboard_js_len,
                     "text/javascript; charset=utf-8");
    if (strcmp(url, "/assets/dashboard.css") == 0)
        return asset(d, conn, mabd_asset_dashboard_css, mabd_asset_dashboard_css_len,
                     "text/css; charset=utf-8");
    if (d->settings.static_url && (rest = after(url, d->settings.static_url)))
        return is_get ? route_static(d, conn, rest) : method_not_allowed(d, conn, "GET");

    int admin = strcmp(url, "/") == 0 || strcmp(url, "/v1/stats") == 0 ||
                strcmp(url, "/metrics") == 0 || strcmp(url, "/v1/dashboard") == 0 ||
                after(url, "/v1/reset/") || after(url, "/v1/report/") ||
                after(url, "/v1/admin/experiments/");
    if (!admin)
        return error_reply(d, conn, 404, "no route %s", url);
    if (!d->settings.admin_token && !d->loopback)
        return error_reply(d, conn, 403, "admin routes are closed: mabd listens on %s, not on "
                                         "loopback, and mabd.admin_token_file is not set",
                           d->listen_ip);
    if (!host_allowed(d, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host")))
        return error_reply(d, conn, 421, "admin routes answer only to the listen address or "
                                         "a name in mabd.server_names, not to this Host");
    if (!admin_ok(d, conn))
        return unauthorized(d, conn);
    if ((rest = after(url, "/v1/reset/")))
        return is_get ? method_not_allowed(d, conn, "POST") : route_reset(d, conn, rest);
    if ((rest = after(url, "/v1/admin/experiments/"))) {
        if (is_get)
            return method_not_allowed(d, conn, "POST");
        if (post->too_large)
            return error_reply(d, conn, 413, "request body larger than %d bytes", MABD_BODY_MAX);
        return route_admin_action(d, conn, rest, &post->body);
    }
    if (!is_get)
        return method_not_allowed(d, conn, "GET");
    if ((rest = after(url, "/v1/report/")))
        return route_report(d, conn, rest);
    if (strcmp(url, "/") == 0)
        return route_dashboard(d, conn);
    if (strcmp(url, "/v1/dashboard") == 0)
        return route_dashboard_json(d, conn);
    if (strcmp(url, "/v1/stats") == 0)
        return route_stats(d, conn);
    return route_metrics(d, conn);
}

static enum MHD_Result dispatch(mabd *d, struct MHD_Connection *conn, const char *url,
                                int is_get, const post_state *post)
{
    mabd_read_begin(&d->threads);
    enum MHD_Result rc = route(d, conn, url, is_get, post);
    mabd_read_end(&d->threads);
    return rc;
}

/* ---- the request deadline (docs/hosts.md, "Limits") ----------------------
 *
 * libmicrohttpd's timeout_s is an idle timeout: every byte resets it, so a
 * client trickling a header line every few seconds holds its connection
 * forever. Each connection here has a deadline instead: its request (head
 * and body) must arrive within request_timeout_s of the connection opening
 * or of the previous response on it. The main loop closes the connections
 * past their deadline with shutdown(2), which makes libmicrohttpd read EOF
 * and drop them in its own thread. The list's mutex is also taken when a
 * connection closes (MHD_CONNECTION_NOTIFY_CLOSED comes before
 * libmicrohttpd closes the socket), so a socket is never shut down after
 * its number could have been reused.
 */
typedef struct watched {
    struct watched *prev, *next;
    MHD_socket fd;
    /* 0: a request is being answered, no deadline. Atomic, not under mu:
       the connection's own thread sets it at every request, writing only
       this connection's memory (no shared write per request). */
    _Atomic time_t deadline;
} watched;

struct request_watch {
    pthread_mutex_t mu;
    watched head; /* sentinel of a circular list */
    unsigned timeout_s;
};

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void watch_arm(struct request_watch *w, watched *c, int armed)
{
    atomic_store(&c->deadline, armed ? mono_s() + (time_t)w->timeout_s : 0);
}

static watched *watched_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    mabd *d = cls;
    struct request_watch *w = d->watch;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        watched *c = info ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c)
            return; /* out of memory: this connection has only the idle timeout */
        c->fd = info->connect_fd;
        pthread_mutex_lock(&w->mu);
        c->deadline = mono_s() + (time_t)w->timeout_s;
        c->next = w->head.next;
        c->prev = &w->head;
        w->head.next->prev = c;
        w->head.next = c;
        pthread_mutex_unlock(&w->mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        watched *c = *socket_context;
        pthread_mutex_lock(&w->mu);
        c->prev->next = c->next;
        c->next->prev = c->prev;
        pthread_mutex_unlock(&w->mu);
        free(c);
        *socket_context = NULL;
    }
}

void mabd_server_reap(mabd *d)
{
    struct request_watch *w = d->watch;
    if (!w)
        return;
    time_t now = mono_s();
    uint64_t closed = 0;
    pthread_mutex_lock(&w->mu);
    for (watched *c = w->head.next; c != &w->head; c = c->next) {
        time_t deadline = atomic_load(&c->deadline);
        /* Only if no request began meanwhile (it would have cleared it). */
        if (deadline && deadline <= now &&
            atomic_compare_exchange_strong(&c->deadline, &deadline, 0)) {
            shutdown(c->fd, SHUT_RDWR);
            closed++;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (closed)
        atomic_fetch_add(&d->slow_clients_closed, closed);
}

void mabd_server_free(mabd *d)
{
    if (!d->watch)
        return;
    pthread_mutex_destroy(&d->watch->mu);
    free(d->watch);
    d->watch = NULL;
}

/* Marks a GET request between its first call (headers) and its second. */
static int get_marker;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **state)
{
    mabd *d = cls;
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!is_get && strcmp(method, "POST") != 0)
        return method_not_allowed(d, conn, "GET, POST");
    /* Answer on the second call, once MHD has read the whole request:
       answering on the first makes it close the connection (no keep-alive). */
    if (!*state) {
        if (is_get) {
            *state = &get_marker;
        } else {
            post_state *post = calloc(1, sizeof *post);
            if (!post)
                return MHD_NO;
            sb_init(&post->body);
            *state = post;
        }
        mabd_threads_in_flight(&d->threads, 1);
        return MHD_YES;
    }
    if (is_get) {
        watched *c = watched_of(conn);
        if (c)
            watch_arm(d->watch, c, 0);
        mabd_access_begin();
        enum MHD_Result answered = dispatch(d, conn, url, 1, NULL);
        mabd_access_end(d, conn, method, url, version);
        return answered;
    }
    post_state *post = *state;
    if (*upload_data_size) {
        if (post->body.len + *upload_data_size > MABD_BODY_MAX)
            post->too_large = 1;
        else
            sb_append(&post->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (post->body.failed)
        return MHD_NO;
    watched *c = watched_of(conn);
    if (c)
        watch_arm(d->watch, c, 0);
    mabd_access_begin();
    enum MHD_Result answered = dispatch(d, conn, url, 0, post);
    mabd_access_end(d, conn, method, url, version);
    return answered;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    mabd *d = cls;
    (void)toe;
    /* Keep-alive: the next request on this connection gets a new deadline. */
    watched *c = watched_of(conn);
    if (c)
        watch_arm(d->watch, c, 1);
    if (!*state)
        return;
    if (*state != &get_marker) {
        post_state *post = *state;
        sb_free(&post->body);
        free(post);
    }
    *state = NULL;
    mabd_threads_in_flight(&d->threads, -1);
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    fputs("mabd: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *mabd_server_start(mabd *d, unsigned *bound_port, char *msg, size_t cap)
{
    const mabd_settings *s = &d->settings;
    char host[128];
    snprintf(host, sizeof host, "%s", s->listen);
    char *colon = strrchr(host, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || !end || *end || port < 0 || port > 65535) {
        snprintf(msg, cap, "listen: expected HOST:PORT with an IPv4 address, got \"%s\"",
                 s->listen);
        return NULL;
    }
    *colon = '\0';
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(msg, cap, "listen: \"%s\" is not an IPv4 address", host);
        return NULL;
    }
    snprintf(d->listen_ip, sizeof d->listen_ip, "%s", host);
    d->loopback = (ntohl(addr.sin_addr.s_addr) >> 24) == 127;
    d->watch = calloc(1, sizeof *d->watch);
    if (!d->watch) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&d->watch->mu, NULL);
    d->watch->head.next = d->watch->head.prev = &d->watch->head;
    d->watch->timeout_s = s->request_timeout_s;
    /* 0 means "no per-address limit" in the config and in libmicrohttpd. */
    unsigned per_ip = s->max_connections_per_ip;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, d, MHD_OPTION_EXTERNAL_LOGGER, log_mhd,
        d, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, d, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, d, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_END);
    if (!daemon) {
        snprintf(msg, cap, "cannot listen on %s: %s", s->listen, strerror(errno));
        mabd_server_free(d);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : (unsigned)port;
    d->port = *bound_port;
    return daemon;
}
