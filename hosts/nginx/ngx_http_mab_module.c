/*
 * ngx_http_mab_module.c - bandit experiments in nginx, over libmab's adapter
 * hooks (include/mab/adapter.h). The module only translates: cookies,
 * stickiness, rewards counted once and the redirect guard are the adapter's.
 *
 *     load_module /usr/lib/x86_64-linux-gnu/mab/nginx/ngx_http_mab_module.so;
 *     http {
 *         mab_config /etc/mab/shop.json;
 *         server {
 *             location = /button {
 *                 mab_choose color_btn $button_color;
 *                 return 200 "$button_color $mab_arm_color_btn\n";
 *             }
 *             location = /buy {
 *                 mab_reward_redirect color_btn /thanks;
 *             }
 *         }
 *     }
 *
 * Processes. The master parses the configuration: `mab_config` opens the
 * mab config without storage there, so `nginx -t` reports a bad config, and
 * reads the key file with the master's privileges (the workers inherit the
 * keys; they run as `user` and may not read it). Once the http block is
 * checked, a child process running as the workers' user opens everything a
 * worker will (ngx_http_mab_probe), and one-process storage is refused with
 * several workers. Each worker opens the engine with its storage in
 * init_process, after fork: an LMDB environment and libmab's background
 * writer thread must not cross a fork. Workers share counters through the
 * storage (LMDB for several workers). A worker never exits for mab: if its
 * engine cannot open it answers 503 in mab locations, and it logs storage
 * write failures as streaks (first, summaries, recovery).
 *
 * Requests. A rewrite phase handler makes the location's choices (one pull
 * per new assignment), counts its rewards and answers mab_reward_redirect;
 * it runs before the rewrite module's handler, so `return` sees the
 * variables. The variables read what the request holds and make a
 * location's choice lazily when read first. A header filter adds the
 * Set-Cookie (and X-MAB-Debug). Only main requests take part; the state
 * lives in a pool cleanup, so it survives internal redirects and ends with
 * the request, after the access log is written.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <mab/adapter.h>
#include <mab/mab.h>


/* A reward directive: mab_reward, or mab_reward_redirect with a target. */
typedef struct {
    ngx_str_t                   experiment;   /* NUL-terminated */
    ngx_http_complex_value_t   *value;        /* NULL: 1 */
    ngx_http_complex_value_t   *target;       /* mab_reward_redirect only */
} ngx_http_mab_reward_t;


/* An experiment named by a directive, checked against the mab config once
   the http block is parsed (mab_config may come after the directive). */
typedef struct {
    ngx_str_t                   directive;
    ngx_str_t                   experiment;
    ngx_str_t                   value;        /* constant reward value, or empty */
    ngx_str_t                   file;
    ngx_uint_t                  line;
} ngx_http_mab_use_t;


/* Storage write failures of this worker, for the error log: the first of
   a streak, a summary every `mab_storage_log_interval`, the recovery. */
typedef struct {
    ngx_event_t                 timer;
    uint64_t                    errors;       /* mab_storage_errors() seen */
    uint64_t                    streak;       /* failed writes in this streak */
    uint64_t                    summarised;   /* of those, already logged */
    time_t                      started;
    time_t                      last_log;
    ngx_uint_t                  failing;      /* unsigned failing:1 */
} ngx_http_mab_storage_log_t;


typedef struct {
    ngx_str_t                   config;       /* full path, NUL-terminated */
    ngx_str_t                   config_file;  /* where mab_config is, for errors */
    ngx_uint_t                  config_line;
    ngx_array_t                 uses;         /* ngx_http_mab_use_t */
    mab_engine                 *check_engine; /* master, while parsing */
    mab_adapter_keys           *keys;         /* read by the master, inherited */
    mab_engine                 *engine;       /* worker, from init_process */
    mab_adapter                *adapter;
    ngx_msec_t                  storage_log_interval;
    ngx_http_mab_storage_log_t  storage_log;  /* worker */
} ngx_http_mab_main_conf_t;


/* mab_feature NAME $var: a context feature for the choices of a level. */
typedef struct {
    ngx_str_t                   name;         /* NUL-terminated */
    ngx_http_complex_value_t    value;
} ngx_http_mab_feature_t;


typedef struct {
    ngx_array_t                *features;     /* ngx_http_mab_feature_t */
    ngx_array_t                *chooses;      /* ngx_str_t, NUL-terminated */
    ngx_array_t                *rewards;      /* ngx_http_mab_reward_t */
    ngx_http_mab_reward_t      *redirect;
} ngx_http_mab_loc_conf_t;


/* One experiment this request chose or rewarded. Strings live in the
   request pool or in the mab_request, both freed after the log phase. */
typedef struct {
    ngx_str_t                   experiment;
    ngx_str_t                   arm;
    ngx_str_t                   value;        /* JSON strings decoded */
    double                      p;            /* NAN: the policy cannot tell */
    ngx_str_t                   probability;  /* p as text, made when read */
    ngx_str_t                   reward;       /* "counted" or why not; empty */
    unsigned                    chosen:1;
} ngx_http_mab_entry_t;


typedef struct {
    mab_request                *rq;           /* NULL until first needed */
    ngx_array_t                 entries;      /* ngx_http_mab_entry_t */
    ngx_http_mab_loc_conf_t    *handled;      /* the last location handled */
} ngx_http_mab_ctx_t;


static ngx_http_mab_ctx_t *ngx_http_mab_get_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
static void ngx_http_mab_cleanup(void *data);
static mab_request *ngx_http_mab_request(ngx_http_request_t *r,
    ngx_http_mab_ctx_t *ctx);
static ngx_http_mab_entry_t *ngx_http_mab_entry(ngx_http_mab_ctx_t *ctx,
    ngx_str_t *experiment, ngx_uint_t create);
static ngx_int_t ngx_http_mab_choose(ngx_http_request_t *r,
    ngx_http_mab_ctx_t *ctx, ngx_str_t *experiment,
    ngx_http_mab_entry_t **out);
static ngx_int_t ngx_http_mab_reward(ngx_http_request_t *r,
    ngx_http_mab_ctx_t *ctx, ngx_http_mab_reward_t *reward);
static ngx_int_t ngx_http_mab_redirect(ngx_http_request_t *r,
    ngx_http_mab_ctx_t *ctx, ngx_http_mab_reward_t *reward);
static ngx_int_t ngx_http_mab_reward_status(ngx_http_request_t *r,
    const char *directive, int rc, mab_error *err);
static ngx_int_t ngx_http_mab_reward_value(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, double *value);
static ngx_int_t ngx_http_mab_parse_value(u_char *data, size_t len,
    double *value);
static ngx_int_t ngx_http_mab_json_value(ngx_pool_t *pool, const char *json,
    ngx_str_t *out);
static u_char *ngx_http_mab_utf8(u_char *p, uint32_t c);
static ngx_int_t ngx_http_mab_add_header(ngx_http_request_t *r,
    const char *key, size_t key_len, const char *value);

static ngx_int_t ngx_http_mab_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mab_header_filter(ngx_http_request_t *r);

static ngx_uint_t ngx_http_mab_same_id(ngx_str_t *id, ngx_str_t *name,
    ngx_uint_t dash);
static ngx_http_mab_entry_t *ngx_http_mab_lookup(ngx_http_request_t *r,
    ngx_str_t *experiment);
static ngx_int_t ngx_http_mab_value_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mab_entry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data, size_t prefix, size_t field);
static ngx_int_t ngx_http_mab_arm_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mab_prob_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mab_reward_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static char *ngx_http_mab_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_mab_close_check(void *data);
static void ngx_http_mab_free_keys(void *data);
static ngx_int_t ngx_http_mab_probe(ngx_conf_t *cf,
    ngx_http_mab_main_conf_t *mmcf);
static char *ngx_http_mab_feature_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mab_set_features(ngx_http_request_t *r,
    mab_request *rq);
static char *ngx_http_mab_choose_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mab_reward_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mab_use(ngx_conf_t *cf, ngx_str_t *experiment,
    ngx_str_t *value);
static char *ngx_http_mab_nul_string(ngx_conf_t *cf, ngx_str_t *in,
    ngx_str_t *out);
static ngx_int_t ngx_http_mab_check_uses(ngx_conf_t *cf,
    ngx_http_mab_main_conf_t *mmcf);

static ngx_int_t ngx_http_mab_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_mab_init(ngx_conf_t *cf);
static void *ngx_http_mab_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_mab_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mab_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_mab_init_process(ngx_cycle_t *cycle);
static void ngx_http_mab_storage_log_start(ngx_cycle_t *cycle,
    ngx_http_mab_main_conf_t *mmcf);
static void ngx_http_mab_storage_log_update(ngx_http_mab_main_conf_t *mmcf,
    const char *reason);
static void ngx_http_mab_storage_log_timer(ngx_event_t *ev);
static void ngx_http_mab_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_mab_commands[] = {

    { ngx_string("mab_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mab_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mab_storage_log_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mab_main_conf_t, storage_log_interval),
      NULL },

    { ngx_string("mab_choose"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_mab_choose_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mab_feature"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_mab_feature_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mab_reward"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_mab_reward_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mab_reward_redirect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE23,
      ngx_http_mab_reward_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mab_module_ctx = {
    ngx_http_mab_add_variables,            /* preconfiguration */
    ngx_http_mab_init,                     /* postconfiguration */

    ngx_http_mab_create_main_conf,         /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mab_create_loc_conf,          /* create location configuration */
    ngx_http_mab_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_mab_module = {
    NGX_MODULE_V1,
    &ngx_http_mab_module_ctx,              /* module context */
    ngx_http_mab_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_mab_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_mab_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* $mab_arm_EXP, $mab_prob_EXP and $mab_reward_EXP, for any experiment. */
static ngx_http_variable_t  ngx_http_mab_vars[] = {

    { ngx_string("mab_arm_"), NULL, ngx_http_mab_arm_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mab_prob_"), NULL, ngx_http_mab_prob_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mab_reward_"), NULL, ngx_http_mab_reward_variable, 0,
      NGX_HTTP_VAR_PREFIX|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/* ---- per-request state ------------------------------------------------ */

/*
 * The module ctx of the main request; after an internal redirect nginx
 * clears module contexts, so the state is found again through its pool
 * cleanup (as the realip module does) and the choices and rewards already
 * made stay made.
 */
static ngx_http_mab_ctx_t *
ngx_http_mab_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_mab_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mab_module);
    if (ctx) {
        return ctx;
    }

    if (r->internal || r->filter_finalize) {
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_mab_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_mab_module);
                return ctx;
            }
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_mab_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ctx->rq = NULL;
    ctx->handled = NULL;

    if (ngx_array_init(&ctx->entries, r->pool, 2, sizeof(ngx_http_mab_entry_t))
        != NGX_OK)
    {
        return NULL;
    }

    cln->handler = ngx_http_mab_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_mab_module);

    return ctx;
}


static void
ngx_http_mab_cleanup(void *data)
{
    ngx_http_mab_ctx_t  *ctx = data;

    mab_request_end(ctx->rq);
    ctx->rq = NULL;
}


/* The adapter's request, begun with the request's Cookie headers joined. */
static mab_request *
ngx_http_mab_request(ngx_http_request_t *r, ngx_http_mab_ctx_t *ctx)
{
    int                        rc;
    size_t                     len;
    u_char                    *cookie, *p;
    mab_error                  err;
    ngx_uint_t                 n;
    ngx_table_elt_t           *h;
    ngx_http_mab_main_conf_t  *mmcf;
#if (nginx_version < 1023000)
    ngx_uint_t                 i;
    ngx_table_elt_t          **hh;
#endif

    if (ctx->rq) {
        return ctx->rq;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mab_module);
    if (mmcf->adapter == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mab: the engine is not open in this process");
        return NULL;
    }

    len = 0;
    n = 0;

#if (nginx_version >= 1023000)
    for (h = r->headers_in.cookie; h; h = h->next) {
        len += h->value.len + 2;
        n++;
    }
#else
    hh = r->headers_in.cookies.elts;
    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        len += hh[i]->value.len + 2;
        n++;
    }
#endif

    cookie = NULL;

    if (n) {
        cookie = ngx_pnalloc(r->pool, len + 1);
        if (cookie == NULL) {
            return NULL;
        }

        p = cookie;

#if (nginx_version >= 1023000)
        for (h = r->headers_in.cookie; h; h = h->next) {
#else
        for (i = 0; i < r->headers_in.cookies.nelts; i++) {
            h = hh[i];
#endif
            if (p != cookie) {
                *p++ = ';'; *p++ = ' ';
            }
            p = ngx_cpymem(p, h->value.data, h->value.len);
        }

        *p = '\0';
    }

    rc = mab_request_begin(mmcf->adapter, (char *) cookie, NULL, &ctx->rq,
                           &err);
    if (rc != MAB_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mab: %s", err.message);
        ctx->rq = NULL;
        return NULL;
    }

    return ctx->rq;
}


static ngx_http_mab_entry_t *
ngx_http_mab_entry(ngx_http_mab_ctx_t *ctx, ngx_str_t *experiment,
    ngx_uint_t create)
{
    ngx_uint_t             i;
    ngx_http_mab_entry_t  *e;

    e = ctx->entries.elts;
    for (i = 0; i < ctx->entries.nelts; i++) {
        if (e[i].experiment.len == experiment->len
            && ngx_strncmp(e[i].experiment.data, experiment->data,
                           experiment->len) == 0)
        {
            return &e[i];
        }
    }

    if (!create) {
        return NULL;
    }

    e = ngx_array_push(&ctx->entries);
    if (e == NULL) {
        return NULL;
    }

    ngx_memzero(e, sizeof(ngx_http_mab_entry_t));
    e->experiment = *experiment;

    return e;
}


/* Give the visitor an arm of `experiment` (NUL-terminated), once per request. */
static ngx_int_t
ngx_http_mab_choose(ngx_http_request_t *r, ngx_http_mab_ctx_t *ctx,
    ngx_str_t *experiment, ngx_http_mab_entry_t **out)
{
    int                    rc;
    mab_error              err;
    mab_request           *rq;
    mab_assignment         a;
    ngx_http_mab_entry_t  *e;

    a.struct_size = sizeof(a);

    e = ngx_http_mab_entry(ctx, experiment, 1);
    if (e == NULL) {
        return NGX_ERROR;
    }

    if (e->chosen) {
        *out = e;
        return NGX_OK;
    }

    rq = ngx_http_mab_request(r, ctx);
    if (rq == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mab_set_features(r, rq) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = mab_request_choose(rq, (char *) experiment->data, &a, &err);
    if (rc != MAB_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mab_choose: %s", err.message);
        return NGX_ERROR;
    }

    /* a's strings are the mab_request's, valid until the pool cleanup */
    e->arm.data = (u_char *) a.arm_id;
    e->arm.len = ngx_strlen(a.arm_id);

    if (ngx_http_mab_json_value(r->pool, a.value_json, &e->value) != NGX_OK) {
        return NGX_ERROR;
    }

    e->p = a.probability;

    e->chosen = 1;
    *out = e;

    return NGX_OK;
}


/* A reward's value: the directive's VALUE evaluated, or 1. NGX_DECLINED
   when it is not a number. */
static ngx_int_t
ngx_http_mab_reward_value(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    double *value)
{
    ngx_str_t  s;

    if (cv == NULL) {
        *value = 1.0;
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, cv, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mab_parse_value(s.data, s.len, value) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mab: reward value \"%V\" is not a number", &s);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mab_parse_value(u_char *data, size_t len, double *value)
{
    char    buf[64], *end;
    double  d;

    if (len == 0 || len >= sizeof(buf)) {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, data, len);
    buf[len] = '\0';

    d = strtod(buf, &end);
    if (*end != '\0' || end == buf || !isfinite(d)) {
        return NGX_ERROR;
    }

    *value = d;
    return NGX_OK;
}


/* Map an adapter status of a reward to an answer: NGX_OK to go on. */
static ngx_int_t
ngx_http_mab_reward_status(ngx_http_request_t *r, const char *directive,
    int rc, mab_error *err)
{
    switch (rc) {

    case MAB_OK:
        return NGX_OK;

    case MAB_ESTORAGE:
        /*
         * sync "always": the reward is not durable, so it is not answered
         * as counted (it stays queued and libmab retries it). The failure
         * goes to the error log as a streak (ngx_http_mab_storage_log),
         * not once per request.
         */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "%s: %s", directive, err->message);
        ngx_http_mab_storage_log_update(
            ngx_http_get_module_main_conf(r, ngx_http_mab_module),
            err->message);
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    case MAB_EINVAL:
    case MAB_ERANGE:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "%s: %s", directive, err->message);
        return NGX_HTTP_BAD_REQUEST;

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "%s: %s", directive, err->message);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_int_t
ngx_http_mab_reward(ngx_http_request_t *r, ngx_http_mab_ctx_t *ctx,
    ngx_http_mab_reward_t *reward)
{
    int                    rc;
    double                 value;
    ngx_int_t              status;
    mab_error              err;
    mab_request           *rq;
    mab_reward_result      result;
    ngx_http_mab_entry_t  *e;

    result.struct_size = sizeof(result);

    status = ngx_http_mab_reward_value(r, reward->value, &value);
    if (status != NGX_OK) {
        return status == NGX_DECLINED ? NGX_HTTP_BAD_REQUEST
                                      : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rq = ngx_http_mab_request(r, ctx);
    e = ngx_http_mab_entry(ctx, &reward->experiment, 1);
    if (rq == NULL || e == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = mab_request_reward(rq, (char *) reward->experiment.data, value,
                            &result, &err);
    status = ngx_http_mab_reward_status(r, "mab_reward", rc, &err);
    if (status != NGX_OK) {
        return status;
    }

    ngx_str_set(&e->reward, "counted");
    if (!result.counted) {
        e->reward.data = (u_char *) mab_reward_reason_name(result.reason);
        e->reward.len = ngx_strlen(e->reward.data);
    }

    return NGX_OK;
}


/* mab_reward_redirect: 303 to the target (after the reward, counted or
   not), or 400 when the adapter's guard refuses the target. */
static ngx_int_t
ngx_http_mab_redirect(ngx_http_request_t *r, ngx_http_mab_ctx_t *ctx,
    ngx_http_mab_reward_t *reward)
{
    int                    rc;
    u_char                *target, *src, *dst;
    double                 value;
    ngx_str_t              s;
    ngx_int_t              status;
    mab_error              err;
    mab_request           *rq;
    mab_redirect           where;
    ngx_table_elt_t       *location;
    mab_reward_result      result;
    ngx_http_mab_entry_t  *e;

    result.struct_size = sizeof(result);
    where.struct_size = sizeof(where);

    status = ngx_http_mab_reward_value(r, reward->value, &value);
    if (status != NGX_OK) {
        return status == NGX_DECLINED ? NGX_HTTP_BAD_REQUEST
                                      : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_complex_value(r, reward->target, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    target = ngx_pnalloc(r->pool, s.len + 1);
    rq = ngx_http_mab_request(r, ctx);
    e = ngx_http_mab_entry(ctx, &reward->experiment, 1);
    if (target == NULL || rq == NULL || e == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A target made with variables ($arg_to) holds the request's text as
     * sent, percent-encoded: decode it once, as mabd decodes its query
     * parameters, and let the guard judge what the browser will be sent.
     * What is still encoded after that (%252F decodes to %2F) stays so and
     * is the guard's to refuse. A constant target is used as written.
     */
    if (reward->target->lengths) {
        src = s.data;
        dst = target;
        ngx_unescape_uri(&dst, &src, s.len, 0);
        s.data = target;
        s.len = dst - target;

    } else {
        ngx_memcpy(target, s.data, s.len);
    }

    /* a NUL inside the target (%00) would hide its tail from the guard */
    if (ngx_strlchr(target, target + s.len, '\0') != NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mab_reward_redirect: NUL byte in target");
        return NGX_HTTP_BAD_REQUEST;
    }

    target[s.len] = '\0';

    rc = mab_request_redirect(rq, (char *) reward->experiment.data, value,
                              (char *) target, &result, &where, &err);
    status = ngx_http_mab_reward_status(r, "mab_reward_redirect", rc, &err);
    if (status != NGX_OK) {
        return status;
    }

    ngx_str_set(&e->reward, "counted");
    if (!result.counted) {
        e->reward.data = (u_char *) mab_reward_reason_name(result.reason);
        e->reward.len = ngx_strlen(e->reward.data);
    }

    ngx_http_clear_location(r);

    location = ngx_list_push(&r->headers_out.headers);
    if (location == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    location->hash = 1;
#if (nginx_version >= 1023000)
    location->next = NULL;
#endif
    ngx_str_set(&location->key, "Location");
    location->value.data = (u_char *) where.location;
    location->value.len = ngx_strlen(where.location);

    r->headers_out.location = location;

    return where.status;
}


/*
 * An arm's value for a variable: a JSON string is decoded (the arm
 * "#00FF00" gives #00FF00), any other JSON value is its text.
 */
static ngx_int_t
ngx_http_mab_json_value(ngx_pool_t *pool, const char *json, ngx_str_t *out)
{
    size_t      len;
    u_char     *p;
    uint32_t    c, lo;
    ngx_uint_t  i, k;

    len = ngx_strlen(json);

    if (len < 2 || json[0] != '"') {
        out->data = (u_char *) json;
        out->len = len;
        return NGX_OK;
    }

    /* decoding never lengthens: \uXXXX is 6 bytes for at most 3 of UTF-8 */
    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    for (i = 1; i + 1 < len; i++) {

        if (json[i] != '\\') {
            *p++ = json[i];
            continue;
        }

        switch (json[++i]) {
        case 'b': *p++ = '\b'; break;
        case 'f': *p++ = '\f'; break;
        case 'n': *p++ = '\n'; break;
        case 'r': *p++ = '\r'; break;
        case 't': *p++ = '\t'; break;

        case 'u':
            c = 0;
            for (k = 0; k < 4 && i + 1 + k < len; k++) {
                c = c * 16 + (uint32_t) ngx_hextoi((u_char *) &json[i + 1 + k],
                                                   1);
            }
            i += 4;

            /* a surrogate pair; cJSON wrote a lone surrogate only if the
               config had one, and that becomes U+FFFD */
            if (c >= 0xd800 && c < 0xdc00 && i + 6 < len
                && json[i + 1] == '\\' && json[i + 2] == 'u')
            {
                lo = (uint32_t) ngx_hextoi((u_char *) &json[i + 3], 4);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }

            if (c >= 0xd800 && c < 0xe000) {
                c = 0xfffd;
            }

            p = ngx_http_mab_utf8(p, c);
            break;

        default:          /* '"', '\\', '/' */
            *p++ = json[i];
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}


static u_char *
ngx_http_mab_utf8(u_char *p, uint32_t c)
{
    if (c < 0x80) {
        *p++ = (u_char) c;

    } else if (c < 0x800) {
        *p++ = (u_char) (0xc0 | (c >> 6));
        *p++ = (u_char) (0x80 | (c & 0x3f));

    } else if (c < 0x10000) {
        *p++ = (u_char) (0xe0 | (c >> 12));
        *p++ = (u_char) (0x80 | ((c >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (c & 0x3f));

    } else {
        *p++ = (u_char) (0xf0 | (c >> 18));
        *p++ = (u_char) (0x80 | ((c >> 12) & 0x3f));
        *p++ = (u_char) (0x80 | ((c >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (c & 0x3f));
    }

    return p;
}


/* ---- the rewrite phase handler and the header filter ------------------ */

static ngx_int_t
ngx_http_mab_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                *experiment;
    ngx_uint_t                i;
    ngx_http_mab_ctx_t       *ctx;
    ngx_http_mab_entry_t     *e;
    ngx_http_mab_reward_t    *reward;
    ngx_http_mab_loc_conf_t  *mlcf;
    ngx_http_mab_main_conf_t *mmcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mab_module);
    if (mlcf->chooses == NULL && mlcf->rewards == NULL
        && mlcf->redirect == NULL)
    {
        return NGX_DECLINED;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mab_module);
    if (mmcf->adapter == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mab: the engine is not open in this process (see "
                      "the alert at its start)");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ctx = ngx_http_mab_get_ctx(r, 1);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* rewrite ... last and internal redirects run this phase again */
    if (ctx->handled == mlcf) {
        return NGX_DECLINED;
    }

    ctx->handled = mlcf;

    if (mlcf->chooses) {
        experiment = mlcf->chooses->elts;
        for (i = 0; i < mlcf->chooses->nelts; i++) {
            if (ngx_http_mab_choose(r, ctx, &experiment[i], &e) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    if (mlcf->rewards) {
        reward = mlcf->rewards->elts;
        for (i = 0; i < mlcf->rewards->nelts; i++) {
            rc = ngx_http_mab_reward(r, ctx, &reward[i]);
            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    if (mlcf->redirect) {
        return ngx_http_mab_redirect(r, ctx, mlcf->redirect);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_mab_add_header(ngx_http_request_t *r, const char *key,
    size_t key_len, const char *value)
{
    size_t            len;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /* the adapter's string changes with the next call on its request */
    len = ngx_strlen(value);
    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        h->hash = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;
    h->key.data = (u_char *) key;
    h->key.len = key_len;
    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_mab_header_filter(ngx_http_request_t *r)
{
    const char          *value;
    ngx_http_mab_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_mab_get_ctx(r, 0);
    if (ctx == NULL || ctx->rq == NULL) {
        return ngx_http_next_header_filter(r);
    }

    value = mab_request_set_cookie(ctx->rq);
    if (value
        && ngx_http_mab_add_header(r, "Set-Cookie", sizeof("Set-Cookie") - 1,
                                   value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    value = mab_request_debug_header(ctx->rq);
    if (value
        && ngx_http_mab_add_header(r, "X-MAB-Debug", sizeof("X-MAB-Debug") - 1,
                                   value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* ---- variables -------------------------------------------------------- */

/*
 * Is `name` the experiment id `id`? nginx variable names cannot hold '-',
 * so with `dash` a '_' of the name also stands for a '-' of the id
 * ($mab_arm_color_btn for "color-btn").
 */
static ngx_uint_t
ngx_http_mab_same_id(ngx_str_t *id, ngx_str_t *name, ngx_uint_t dash)
{
    ngx_uint_t  i;

    if (id->len != name->len) {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        if (id->data[i] != name->data[i]
            && !(dash && name->data[i] == '_' && id->data[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * What the request holds for `experiment`; when nothing yet and the
 * location has a mab_choose for it, the choice is made now (the response
 * header not being sent yet, so the cookie still goes out). Exact ids are
 * preferred to ids matched with '_' for '-'.
 */
static ngx_http_mab_entry_t *
ngx_http_mab_lookup(ngx_http_request_t *r, ngx_str_t *experiment)
{
    ngx_str_t                *chosen, *choose;
    ngx_uint_t                i, dash;
    ngx_http_mab_ctx_t       *ctx;
    ngx_http_mab_entry_t     *e;
    ngx_http_mab_loc_conf_t  *mlcf;

    ctx = ngx_http_mab_get_ctx(r, 0);
    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mab_module);

    /* choices are made in the main request before its header goes out */
    if (r != r->main || r->header_sent) {
        mlcf = NULL;
    }

    choose = NULL;

    for (dash = 0; dash < 2 && choose == NULL; dash++) {

        if (ctx) {
            e = ctx->entries.elts;
            for (i = 0; i < ctx->entries.nelts; i++) {
                if (ngx_http_mab_same_id(&e[i].experiment, experiment, dash)) {
                    return &e[i];
                }
            }
        }

        if (mlcf == NULL || mlcf->chooses == NULL) {
            continue;
        }

        chosen = mlcf->chooses->elts;
        for (i = 0; i < mlcf->chooses->nelts; i++) {
            if (ngx_http_mab_same_id(&chosen[i], experiment, dash)) {
                choose = &chosen[i];
                break;
            }
        }
    }

    if (choose == NULL) {
        return NULL;
    }

    if (ctx == NULL) {
        ctx = ngx_http_mab_get_ctx(r, 1);
        if (ctx == NULL) {
            return NULL;
        }
    }

    if (ngx_http_mab_choose(r, ctx, choose, &e) != NGX_OK) {
        return NULL;
    }

    return e;
}


/* The $variable of `mab_choose EXP $variable`: the arm's value. */
static ngx_int_t
ngx_http_mab_value_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *experiment = (ngx_str_t *) data;
    ngx_http_mab_entry_t  *e;

    e = ngx_http_mab_lookup(r, experiment);
    if (e == NULL || !e->chosen) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = e->value.data;
    v->len = e->value.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $mab_arm_EXP, $mab_prob_EXP, $mab_reward_EXP: prefix variables, so they
 * exist for every experiment. nginx hands a prefix variable's handler the
 * variable's full name as data.
 */
static ngx_int_t
ngx_http_mab_entry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data, size_t prefix, size_t field)
{
    ngx_str_t             *name, experiment, *s;
    ngx_http_mab_entry_t  *e;

    name = (ngx_str_t *) data;
    experiment.data = name->data + prefix;
    experiment.len = name->len - prefix;

    e = ngx_http_mab_lookup(r, &experiment);
    s = e ? (ngx_str_t *) ((u_char *) e + field) : NULL;

    if (s == NULL || s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mab_arm_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    return ngx_http_mab_entry_variable(r, v, data, sizeof("mab_arm_") - 1,
                                       offsetof(ngx_http_mab_entry_t, arm));
}


/* Formatted only when read: most requests never log their probability. */
static ngx_int_t
ngx_http_mab_prob_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                *p;
    ngx_str_t             *name, experiment;
    ngx_http_mab_entry_t  *e;

    name = (ngx_str_t *) data;
    experiment.data = name->data + sizeof("mab_prob_") - 1;
    experiment.len = name->len - (sizeof("mab_prob_") - 1);

    e = ngx_http_mab_lookup(r, &experiment);
    if (e && e->chosen && e->probability.data == NULL && !isnan(e->p)) {
        p = ngx_pnalloc(r->pool, 32);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* nginx never calls setlocale(): the C locale's '.' */
        e->probability.len = snprintf((char *) p, 32, "%.6g", e->p);
        e->probability.data = p;
    }

    return ngx_http_mab_entry_variable(r, v, data, sizeof("mab_prob_") - 1,
                                       offsetof(ngx_http_mab_entry_t,
                                                probability));
}


static ngx_int_t
ngx_http_mab_reward_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    return ngx_http_mab_entry_variable(r, v, data, sizeof("mab_reward_") - 1,
                                       offsetof(ngx_http_mab_entry_t, reward));
}


/* ---- configuration ---------------------------------------------------- */

static char *
ngx_http_mab_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mab_main_conf_t *mmcf = conf;

    int                  rc;
    mab_error            err;
    ngx_str_t           *value, path;
    mab_options          opts;
    ngx_pool_cleanup_t  *cln, *keys_cln;

    if (mmcf->config.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mab_nul_string(cf, &path, &mmcf->config) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    mmcf->config_file = cf->conf_file->file.name;
    mmcf->config_line = cf->conf_file->line;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_mab_close_check;
    cln->data = mmcf;

    keys_cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (keys_cln == NULL) {
        return NGX_CONF_ERROR;
    }

    keys_cln->handler = ngx_http_mab_free_keys;
    keys_cln->data = mmcf;

    /*
     * Check everything but storage now, in the master: the config, its
     * plugins and parameters. The key file is read here, with the master's
     * privileges, and the workers inherit the keys: they run as `user` and
     * may not be able to read it. Storage opens in the workers (and in the
     * check of ngx_http_mab_probe).
     */
    opts.struct_size = sizeof(mab_options);
    opts.flags = MAB_OPEN_NO_STORAGE;
    opts.seed = 0;

    rc = mab_open_ex((char *) mmcf->config.data, &opts, &mmcf->check_engine,
                     &err);
    if (rc == MAB_OK) {
        rc = mab_adapter_keys_read(mmcf->check_engine, &mmcf->keys, &err);
    }

    /* The storage too, read-only: the check of `mab check` and `mabd -t`. */
    if (rc == MAB_OK) {
        rc = mab_check((char *) mmcf->config.data, NULL, &err);
    }

    if (rc != MAB_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_config\" directive: %s: %s",
                           mab_strerror(rc), err.message);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_mab_close_check(void *data)
{
    ngx_http_mab_main_conf_t *mmcf = data;

    mab_close(mmcf->check_engine, NULL);
    mmcf->check_engine = NULL;
}


static void
ngx_http_mab_free_keys(void *data)
{
    ngx_http_mab_main_conf_t *mmcf = data;

    mab_adapter_keys_free(mmcf->keys);
    mmcf->keys = NULL;
}


/*
 * The context features of this location (mab_feature), for the choice
 * about to be made: each value is evaluated now; one that is not a finite
 * number (an empty variable, text, "inf") is a missing feature (NAN), so a
 * visitor without it still gets an arm. A reward uses the features of its
 * choice, from the cookie, and never evaluates these.
 */
static ngx_int_t
ngx_http_mab_set_features(ngx_http_request_t *r, mab_request *rq)
{
    int                       rc;
    double                   *values;
    mab_error                 err;
    ngx_str_t                 s;
    ngx_uint_t                i, n;
    const char              **names;
    ngx_http_mab_feature_t   *f;
    ngx_http_mab_loc_conf_t  *mlcf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mab_module);
    n = mlcf->features ? mlcf->features->nelts : 0;
    f = n ? mlcf->features->elts : NULL;

    names = NULL;
    values = NULL;

    /* no mab_feature here: nothing to allocate (the call still clears
       features an earlier location of the request set) */
    if (n) {
        names = ngx_palloc(r->pool, n * sizeof(char *));
        values = ngx_palloc(r->pool, n * sizeof(double));
        if (names == NULL || values == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_complex_value(r, &f[i].value, &s) != NGX_OK) {
            return NGX_ERROR;
        }

        names[i] = (const char *) f[i].name.data;

        if (ngx_http_mab_parse_value(s.data, s.len, &values[i]) != NGX_OK) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "mab_feature %s: \"%V\" is not a number: missing",
                           f[i].name.data, &s);
            values[i] = NAN;
        }
    }

    rc = mab_request_set_features(rq, names, values, n, &err);
    if (rc != MAB_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mab_feature: %s", err.message);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* mab_feature NAME VALUE (VALUE: text with variables, e.g. $arg_slot) */
static char *
ngx_http_mab_feature_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mab_loc_conf_t *mlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_mab_feature_t            *f, *all;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-' || value[1].data[i] == '.'))
        {
            break;
        }
    }

    if (value[1].len == 0 || value[1].len > 128 || i != value[1].len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_feature\" directive: invalid feature name "
                           "\"%V\" (1 to 128 of A-Z a-z 0-9 _ - .)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (mlcf->features == NGX_CONF_UNSET_PTR) {
        mlcf->features = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_http_mab_feature_t));
        if (mlcf->features == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    all = mlcf->features->elts;
    for (i = 0; i < mlcf->features->nelts; i++) {
        if (all[i].name.len == value[1].len
            && ngx_strncmp(all[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"mab_feature\" directive: feature \"%V\" "
                               "is already given at this level", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (mlcf->features->nelts == MAB_REQUEST_FEATURES_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_feature\" directive: more than %d features",
                           MAB_REQUEST_FEATURES_MAX);
        return NGX_CONF_ERROR;
    }

    f = ngx_array_push(mlcf->features);
    if (f == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mab_nul_string(cf, &value[1], &f->name) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &f->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* mab_choose EXP $variable */
static char *
ngx_http_mab_choose_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mab_loc_conf_t *mlcf = conf;

    ngx_str_t            *value, *experiment, *bound, name;
    ngx_http_variable_t  *v;

    value = cf->args->elts;

    if (value[2].len < 2 || value[2].data[0] != '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_choose\" directive: invalid variable name "
                           "\"%V\" (expected $name)", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (mlcf->chooses == NGX_CONF_UNSET_PTR) {
        mlcf->chooses = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (mlcf->chooses == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    experiment = ngx_array_push(mlcf->chooses);
    if (experiment == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mab_nul_string(cf, &value[1], experiment) != NGX_CONF_OK
        || ngx_http_mab_use(cf, experiment, NULL) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    name.data = value[2].data + 1;
    name.len = value[2].len - 1;

    v = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_CHANGEABLE
                                         |NGX_HTTP_VAR_NOCACHEABLE);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    if (v->get_handler == NULL) {
        v->get_handler = ngx_http_mab_value_variable;
        v->data = (uintptr_t) experiment;
        return NGX_CONF_OK;
    }

    if (v->get_handler != ngx_http_mab_value_variable) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_choose\" directive: the variable \"%V\" is "
                           "already defined (by set or another module)",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    /* one variable, one experiment, whatever the location */
    bound = (ngx_str_t *) v->data;
    if (bound->len != experiment->len
        || ngx_strncmp(bound->data, experiment->data, bound->len) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mab_choose\" directive: the variable \"%V\" "
                           "already holds experiment \"%V\"",
                           &value[2], bound);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* mab_reward EXP [VALUE]; mab_reward_redirect EXP TARGET [VALUE] (cmd->offset 1) */
static char *
ngx_http_mab_reward_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mab_loc_conf_t *mlcf = conf;

    ngx_str_t                         *value, *arg;
    ngx_uint_t                         redirect;
    ngx_http_mab_reward_t             *reward;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    redirect = cmd->offset;

    if (redirect) {
        if (mlcf->redirect != NGX_CONF_UNSET_PTR) {
            return "is duplicate";
        }

        reward = ngx_pcalloc(cf->pool, sizeof(ngx_http_mab_reward_t));
        if (reward == NULL) {
            return NGX_CONF_ERROR;
        }

        mlcf->redirect = reward;

    } else {
        if (mlcf->rewards == NGX_CONF_UNSET_PTR) {
            mlcf->rewards = ngx_array_create(cf->pool, 1,
                                             sizeof(ngx_http_mab_reward_t));
            if (mlcf->rewards == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        reward = ngx_array_push(mlcf->rewards);
        if (reward == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(reward, sizeof(ngx_http_mab_reward_t));
    }

    if (ngx_http_mab_nul_string(cf, &value[1], &reward->experiment)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (redirect) {
        reward->target = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (reward->target == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &value[2];
        ccv.complex_value = reward->target;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    arg = NULL;

    if (cf->args->nelts == 3 + redirect) {
        arg = &value[2 + redirect];

        reward->value = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (reward->value == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = arg;
        ccv.complex_value = reward->value;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (reward->value->lengths == NULL) {
            /* a constant: checked against the experiment's range later */
            arg = &reward->value->value;

        } else {
            arg = NULL;
        }
    }

    if (ngx_http_mab_use(cf, &reward->experiment, arg) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mab_use(ngx_conf_t *cf, ngx_str_t *experiment, ngx_str_t *value)
{
    ngx_str_t                 *args;
    ngx_http_mab_use_t        *use;
    ngx_http_mab_main_conf_t  *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mab_module);
    args = cf->args->elts;

    use = ngx_array_push(&mmcf->uses);
    if (use == NULL) {
        return NGX_ERROR;
    }

    use->directive = args[0];
    use->experiment = *experiment;
    use->file = cf->conf_file->file.name;
    use->line = cf->conf_file->line;

    if (value) {
        use->value = *value;

    } else {
        ngx_str_null(&use->value);
    }

    return NGX_OK;
}


static char *
ngx_http_mab_nul_string(ngx_conf_t *cf, ngx_str_t *in, ngx_str_t *out)
{
    u_char  *p;

    p = ngx_pnalloc(cf->pool, in->len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(p, in->data, in->len) = '\0';
    out->data = p;
    out->len = in->len;

    return NGX_CONF_OK;
}


/* Every experiment a directive names must be in the mab config, and a
   constant reward within its range. */
static ngx_int_t
ngx_http_mab_check_uses(ngx_conf_t *cf, ngx_http_mab_main_conf_t *mmcf)
{
    char                 range[128];
    double               reward;
    size_t               j, n;
    mab_error            err;
    ngx_uint_t           i;
    ngx_http_mab_use_t  *use;
    mab_experiment_info  info;

    info.struct_size = sizeof(info);

    use = mmcf->uses.elts;
    for (i = 0; i < mmcf->uses.nelts; i++) {

        if (mmcf->check_engine == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" directive needs \"mab_config\" at the http "
                          "level in %V:%ui",
                          &use[i].directive, &use[i].file, use[i].line);
            return NGX_ERROR;
        }

        n = mab_experiment_count(mmcf->check_engine);
        for (j = 0; j < n; j++) {
            if (mab_experiment_at(mmcf->check_engine, j, &info, &err) == MAB_OK
                && ngx_strcmp(info.id, use[i].experiment.data) == 0)
            {
                break;
            }
        }

        if (j == n) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" directive: unknown experiment \"%V\" "
                          "(not in %V) in %V:%ui",
                          &use[i].directive, &use[i].experiment,
                          &mmcf->config, &use[i].file, use[i].line);
            return NGX_ERROR;
        }

        if (use[i].value.len == 0) {
            continue;
        }

        if (ngx_http_mab_parse_value(use[i].value.data, use[i].value.len,
                                     &reward)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" directive: reward \"%V\" is not a finite "
                          "number in %V:%ui",
                          &use[i].directive, &use[i].value,
                          &use[i].file, use[i].line);
            return NGX_ERROR;
        }

        if (reward < info.reward_min || reward > info.reward_max) {
            snprintf(range, sizeof(range), "[%g, %g]",
                     info.reward_min, info.reward_max);
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" directive: reward %V is outside the reward "
                          "range %s of experiment \"%V\" in %V:%ui",
                          &use[i].directive, &use[i].value, range,
                          &use[i].experiment, &use[i].file, use[i].line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* ---- the workers' view, checked at configuration time ----------------- */

/* What the check's child process reports to the master, in one write. */
typedef struct {
    int                         rc;
    char                        storage[64];
    char                        message[MAB_ERROR_MAX];
} ngx_http_mab_probe_t;


/* In the child: become the workers' user (as ngx_worker_process_init
   does) and open what a worker opens. */
static void
ngx_http_mab_probe_child(ngx_core_conf_t *ccf, ngx_http_mab_main_conf_t *mmcf,
    ngx_http_mab_probe_t *out)
{
    int             rc;
    gid_t           gid;
    uid_t           uid;
    sigset_t        all;
    mab_error       err;
    const char     *name;
    mab_engine     *engine;
    mab_adapter    *adapter;
    struct group   *gr;
    struct passwd  *pw;

    ngx_memzero(out, sizeof(ngx_http_mab_probe_t));

    /* a master running as root starts its workers as `user` (or nginx's
       default user); a single process (master_process off) stays as is */
    if (geteuid() == 0 && ccf->master != 0) {

        if (ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
            uid = ccf->user;
            gid = ccf->group;
            name = ccf->username;

        } else {
            pw = getpwnam(NGX_USER);
            gr = getgrnam(NGX_GROUP);
            if (pw == NULL || gr == NULL) {
                out->rc = MAB_ECONFIG;
                snprintf(out->message, sizeof(out->message),
                         "nginx's default user \"%s\" or group \"%s\" does "
                         "not exist (set the \"user\" directive)",
                         NGX_USER, NGX_GROUP);
                return;
            }

            uid = pw->pw_uid;
            gid = gr->gr_gid;
            name = NGX_USER;
        }

        if (setgid(gid) == -1 || initgroups(name, gid) == -1
            || setuid(uid) == -1)
        {
            out->rc = MAB_EIO;
            snprintf(out->message, sizeof(out->message),
                     "cannot switch to the workers' user \"%s\": %s", name,
                     strerror(errno));
            return;
        }
    }

    /* nothing of the master's signal handling applies to this process */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);

    rc = mab_open((char *) mmcf->config.data, &engine, &err);
    if (rc == MAB_OK) {
        snprintf(out->storage, sizeof(out->storage), "%s",
                 mab_storage_name(engine));

        rc = mab_adapter_open_with_keys(engine, mmcf->keys, &adapter, &err);
        if (rc == MAB_OK) {
            mab_adapter_close(adapter);
        }

        if (rc == MAB_OK) {
            rc = mab_close(engine, &err);

        } else {
            mab_close(engine, NULL);
        }
    }

    out->rc = rc;
    if (rc != MAB_OK) {
        snprintf(out->message, sizeof(out->message), "%s", err.message);
    }
}


/*
 * Open the engine with its storage, and an adapter with the keys the
 * master read, as a worker will: in a child process running as the
 * workers' user. So `nginx -t`, a start and a reload refuse what a worker
 * could not open (the mab config, a plugin, the store) instead of starting
 * workers that exit at once and cannot be respawned. Then storage that
 * only one process may open is refused with several workers.
 *
 * The `user`, `worker_processes` and `master_process` directives are read
 * as they stand when the http block ends (nginx's defaults when they come
 * later in the file; `-g` directives come first).
 */
static ngx_int_t
ngx_http_mab_probe(ngx_conf_t *cf, ngx_http_mab_main_conf_t *mmcf)
{
    int                    fds[2], status;
    pid_t                  pid;
    size_t                 got;
    ssize_t                n;
    ngx_int_t              workers;
    ngx_core_conf_t       *ccf;
    ngx_http_mab_probe_t   result;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    if (pipe(fds) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, ngx_errno,
                      "mab_config %V: pipe() failed", &mmcf->config);
        return NGX_ERROR;
    }

    pid = fork();

    if (pid == -1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, ngx_errno,
                      "mab_config %V: fork() failed", &mmcf->config);
        close(fds[0]);
        close(fds[1]);
        return NGX_ERROR;
    }

    if (pid == 0) {
        close(fds[0]);
        ngx_http_mab_probe_child(ccf, mmcf, &result);
        _exit(write(fds[1], &result, sizeof(result)) == sizeof(result)
              ? 0 : 1);
    }

    close(fds[1]);

    got = 0;
    while (got < sizeof(result)) {
        n = read(fds[0], (u_char *) &result + got, sizeof(result) - got);
        if (n > 0) {
            got += n;

        } else if (n == -1 && ngx_errno == NGX_EINTR) {
            continue;

        } else {
            break;
        }
    }

    close(fds[0]);

    while (waitpid(pid, &status, 0) == -1 && ngx_errno == NGX_EINTR) {
        /* void */
    }

    if (got != sizeof(result)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"mab_config\" directive: the check of %V as the "
                      "workers' user ended without an answer in %V:%ui",
                      &mmcf->config, &mmcf->config_file, mmcf->config_line);
        return NGX_ERROR;
    }

    result.storage[sizeof(result.storage) - 1] = '\0';
    result.message[sizeof(result.message) - 1] = '\0';

    if (result.rc != MAB_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"mab_config\" directive: %s: %s (opened as a worker "
                      "will, with its user and storage) in %V:%ui",
                      mab_strerror(result.rc), result.message,
                      &mmcf->config_file, mmcf->config_line);
        return NGX_ERROR;
    }

    workers = ccf->worker_processes == NGX_CONF_UNSET
              ? 1 : ccf->worker_processes;

    if (ccf->master != 0 && workers > 1
        && ngx_strcmp(result.storage, "json_file") == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"mab_config\" directive: %V uses \"json_file\" "
                      "storage, which one process only may open, and nginx "
                      "runs %i worker processes: use \"lmdb\" storage, "
                      "which the workers share (docs/storage.md), or "
                      "\"worker_processes 1\" in %V:%ui",
                      &mmcf->config, workers, &mmcf->config_file,
                      mmcf->config_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mab_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_mab_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mab_init(ngx_conf_t *cf)
{
    ngx_int_t                   rc;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_mab_main_conf_t   *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mab_module);

    rc = ngx_http_mab_check_uses(cf, mmcf);

    /* the workers open their own engine; the master keeps none */
    ngx_http_mab_close_check(mmcf);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (mmcf->config.data == NULL) {
        return NGX_OK;
    }

    ngx_conf_init_msec_value(mmcf->storage_log_interval, 60000);

    /* `nginx -s SIGNAL` parses the configuration only to find the pid */
    if (ngx_process != NGX_PROCESS_SIGNALLER
        && ngx_http_mab_probe(cf, mmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* registered after the rewrite module's handler, so it runs before it */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_mab_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mab_header_filter;

    return NGX_OK;
}


static void *
ngx_http_mab_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_mab_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mab_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mmcf->config = { 0, NULL };
     *     mmcf->check_engine = NULL;
     *     mmcf->keys = NULL;
     *     mmcf->storage_log = { 0 };
     *     mmcf->engine = NULL;
     *     mmcf->adapter = NULL;
     */

    if (ngx_array_init(&mmcf->uses, cf->pool, 4, sizeof(ngx_http_mab_use_t))
        != NGX_OK)
    {
        return NULL;
    }

    mmcf->storage_log_interval = NGX_CONF_UNSET_MSEC;

    return mmcf;
}


static void *
ngx_http_mab_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mab_loc_conf_t  *mlcf;

    mlcf = ngx_palloc(cf->pool, sizeof(ngx_http_mab_loc_conf_t));
    if (mlcf == NULL) {
        return NULL;
    }

    mlcf->features = NGX_CONF_UNSET_PTR;
    mlcf->chooses = NGX_CONF_UNSET_PTR;
    mlcf->rewards = NGX_CONF_UNSET_PTR;
    mlcf->redirect = NGX_CONF_UNSET_PTR;

    return mlcf;
}


/* As add_header and proxy_set_header: a level that has none of a
   directive inherits the enclosing level's. */
static char *
ngx_http_mab_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mab_loc_conf_t *prev = parent;
    ngx_http_mab_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->features, prev->features, NULL);
    ngx_conf_merge_ptr_value(conf->chooses, prev->chooses, NULL);
    ngx_conf_merge_ptr_value(conf->rewards, prev->rewards, NULL);
    ngx_conf_merge_ptr_value(conf->redirect, prev->redirect, NULL);

    return NGX_CONF_OK;
}


/* ---- storage write failures in the error log ------------------------- */

/*
 * libmab counts failed writes (mab_storage_errors) and keeps what failed
 * queued for the next write; it never logs. Each worker checks the count
 * once a second and logs the first failure of a streak with its reason, a
 * summary every mab_storage_log_interval while it lasts, and the recovery:
 * a check without a new failure is followed by a flush of what is queued,
 * and the streak ends when that succeeds (so while writes fail, a worker
 * tries one write a second itself, besides libmab's writer).
 */
#define NGX_HTTP_MAB_STORAGE_CHECK  1000


static void
ngx_http_mab_storage_log_start(ngx_cycle_t *cycle,
    ngx_http_mab_main_conf_t *mmcf)
{
    ngx_http_mab_storage_log_t  *sl = &mmcf->storage_log;

    sl->errors = mab_storage_errors(mmcf->engine);
    sl->failing = 0;

    sl->timer.handler = ngx_http_mab_storage_log_timer;
    sl->timer.data = mmcf;
    sl->timer.log = cycle->log;
    sl->timer.cancelable = 1;

    ngx_add_timer(&sl->timer, NGX_HTTP_MAB_STORAGE_CHECK);
}


static void
ngx_http_mab_storage_log_timer(ngx_event_t *ev)
{
    ngx_http_mab_main_conf_t  *mmcf = ev->data;

    ngx_http_mab_storage_log_update(mmcf, NULL);

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_MAB_STORAGE_CHECK);
    }
}


/* reason: the error of a reward that just failed, or NULL from the timer */
static void
ngx_http_mab_storage_log_update(ngx_http_mab_main_conf_t *mmcf,
    const char *reason)
{
    int                          rc;
    time_t                       now;
    uint64_t                     errors;
    mab_error                    err;
    ngx_log_t                   *log;
    ngx_http_mab_storage_log_t  *sl = &mmcf->storage_log;

    if (mmcf->engine == NULL) {
        return;
    }

    log = ngx_cycle->log;
    now = ngx_time();
    errors = mab_storage_errors(mmcf->engine);

    if (errors > sl->errors) {
        sl->streak += errors - sl->errors;
        sl->errors = errors;

        if (!sl->failing) {
            if (reason == NULL) {
                /* the count says that a write failed, not why: ask */
                rc = mab_flush(mmcf->engine, &err);
                reason = rc == MAB_OK ? "(it succeeded when retried)"
                                      : err.message;
                sl->streak += mab_storage_errors(mmcf->engine) - sl->errors;
                sl->errors = mab_storage_errors(mmcf->engine);
            }

            sl->failing = 1;
            sl->started = now;
            sl->last_log = now;
            sl->summarised = sl->streak;

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mab_config %V: writing to storage (%s) failed: "
                          "%s; what failed stays queued and is retried "
                          "(further failures are summarised every %M ms)",
                          &mmcf->config, mab_storage_name(mmcf->engine),
                          reason, mmcf->storage_log_interval);
            return;
        }

        if ((ngx_msec_t) (now - sl->last_log) * 1000
            >= mmcf->storage_log_interval)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mab_config %V: writing to storage (%s) still "
                          "fails: %uL failed writes in the last %T s, %uL "
                          "since the first %T s ago%s%s",
                          &mmcf->config, mab_storage_name(mmcf->engine),
                          sl->streak - sl->summarised, now - sl->last_log,
                          sl->streak, now - sl->started,
                          reason ? "; last: " : "", reason ? reason : "");
            sl->last_log = now;
            sl->summarised = sl->streak;
        }

        return;
    }

    if (!sl->failing || reason != NULL) {
        return;
    }

    /* no new failure for a second: is what was queued written now? */
    rc = mab_flush(mmcf->engine, &err);
    sl->errors = mab_storage_errors(mmcf->engine);

    if (rc != MAB_OK) {
        sl->streak++;
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "mab_config %V: writing to storage (%s) succeeds again, "
                  "after %uL failed writes in %T s",
                  &mmcf->config, mab_storage_name(mmcf->engine), sl->streak,
                  now - sl->started);

    sl->failing = 0;
    sl->streak = 0;
    sl->summarised = 0;
}


/* ---- worker processes ------------------------------------------------- */

static ngx_int_t
ngx_http_mab_init_process(ngx_cycle_t *cycle)
{
    int                        rc;
    sigset_t                   all, saved;
    mab_error                  err;
    ngx_http_mab_main_conf_t  *mmcf;

    /* workers only: not the cache manager and loader */
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mab_module);
    if (mmcf == NULL || mmcf->config.data == NULL) {
        return NGX_OK;
    }

    /*
     * libmab's writer thread inherits the signal mask: block everything
     * while it starts, so that the signals nginx sends a worker reach the
     * thread that runs the event loop.
     */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);

    rc = mab_open((char *) mmcf->config.data, &mmcf->engine, &err);

    sigprocmask(SIG_SETMASK, &saved, NULL);

    if (rc == MAB_OK) {
        /* the keys the master read: the workers' user may not read the file */
        rc = mab_adapter_open_with_keys(mmcf->engine, mmcf->keys,
                                        &mmcf->adapter, &err);
        if (rc != MAB_OK) {
            mab_close(mmcf->engine, NULL);
            mmcf->engine = NULL;
        }
    }

    /* the adapter holds its own copy */
    ngx_http_mab_free_keys(mmcf);

    /*
     * The configuration check opened all this as a worker would, so this
     * fails only when something changed since (a file removed, a disk
     * full). The worker stays: a worker that exits in init_process is not
     * respawned, and nginx would be left with none. Its mab locations
     * answer 503 and every other location is served.
     */
    if (rc != MAB_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "mab_config %V: %s: %s; this worker answers 503 in "
                      "its mab locations",
                      &mmcf->config, mab_strerror(rc), err.message);
        return NGX_OK;
    }

    ngx_http_mab_storage_log_start(cycle, mmcf);

    return NGX_OK;
}


static void
ngx_http_mab_exit_process(ngx_cycle_t *cycle)
{
    mab_error                  err;
    ngx_http_mab_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mab_module);
    if (mmcf == NULL || mmcf->engine == NULL) {
        return;
    }

    if (mmcf->storage_log.timer.timer_set) {
        ngx_del_timer(&mmcf->storage_log.timer);
    }

    mab_adapter_close(mmcf->adapter);
    mmcf->adapter = NULL;

    /* writes what is pending */
    if (mab_close(mmcf->engine, &err) != MAB_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "mab_config %V: %s", &mmcf->config, err.message);
    }

    mmcf->engine = NULL;
}
