/*
 * redis.c - storage shared by many machines through one Redis server.
 *
 * Keys, for prefix P (default "mab:") and experiment E:
 *
 *   P{E}:totals   hash: "v" -> "1" (schema), and per arm A the fields
 *                 "A:pulls", "A:rewards" (integers), "A:reward_sum",
 *                 "A:reward_sum_sq" (doubles written with 17 digits)
 *   P{E}:writers  hash: writer id -> number of its last batch counted here
 *
 * The braces are a Redis Cluster hash tag: both keys of an experiment live
 * in one slot, and every command or script of this plugin touches the keys
 * of one experiment only (except replace, which is one MULTI over the
 * imported experiments). Ids are letters, digits, '_' and '-' (the core
 * checks), so ':' cannot make two fields or keys collide.
 *
 * A batch is one Lua script call per experiment (APPLY_SCRIPT), all sent in
 * one pipeline: the script reads every field it will touch (HMGET) and
 * checks it before writing anything, so a refused call changes nothing,
 * and a script runs atomically. The new values are added in the script's
 * doubles and written back with HSET: counts exactly (below 2^53), sums with
 * 17 significant digits. Not HINCRBYFLOAT, which rounds to 17 decimal
 * places (a sum of 1e-18 reads back as 0) and adds in long double; and not
 * one HINCRBY per field, which costs a call per arm and field.
 *
 * Exactly once across lost replies. When the connection breaks after a
 * script was sent, it may or may not have run, and the plugin cannot tell.
 * So every open picks a random writer id and numbers its batches; the
 * script counts a batch for an experiment only when the writer's number
 * there is below the batch's, and records the number in the same call.
 * A failed apply keeps the calls whose reply was lost as "in doubt", with
 * their number; the next apply first sends them again with the same number:
 * the server counts each at most once, and any reply settles it. What is
 * known to be counted while the core still holds it (the core offers a
 * failed batch again, merged with newer increments) is "credit", subtracted
 * from what the core offers next. load() subtracts the credit, and the
 * in-doubt increments when the experiment's writer number shows they were
 * counted, so the core's "stored + not yet applied" stays exact during an
 * outage too. (plugins/storage/mongodb.c does the same over MongoDB.)
 *
 * Cost: one field per process in each experiment's writers hash (about 40
 * bytes), removed at a clean close; a crashed process leaves its field.
 *
 * hiredis writes with write(2), so a write to a closed connection raises
 * SIGPIPE: every exchange blocks SIGPIPE in the calling thread and takes a
 * SIGPIPE it caused back, so that a host never dies of a Redis outage.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "mab/storage.h"

#define WHERE_MAX 300
#define PREFIX_MAX 64
#define ID_MAX 128
#define KEY_MAX (PREFIX_MAX + ID_MAX + 16)
#define FIELD_MAX (ID_MAX + 20)
#define DEFAULT_PORT 6379
#define DEFAULT_TIMEOUT_MS 2000

/*
 * KEYS[1] totals, KEYS[2] writers; ARGV[1] writer id, ARGV[2] batch number
 * (0: count unconditionally), then per arm five values: arm id, pulls,
 * rewards, reward_sum, reward_sum_sq (increments; may be negative).
 * Returns 1 when counted, 0 when this writer's batch was already counted.
 * Refuses (an error reply, nothing written) a key of another type, another
 * schema version, a field that is not a number, or a result that would not
 * be finite or would leave [0, 2^53) for a count (where a double holds every
 * integer exactly). Fields are read and written in chunks of CHUNK values
 * (Lua's unpack has a small stack), so a batch costs a few calls, not a few
 * per arm.
 */
static const char APPLY_SCRIPT[] =
    "local totals, writers = KEYS[1], KEYS[2]\n"
    "for _, k in ipairs(KEYS) do\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  if t ~= 'hash' and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. k .. ' holds a ' .. t .. ', not a hash')\n"
    "  end\n"
    "end\n"
    "local seq = tonumber(ARGV[2])\n"
    "if seq > 0 then\n"
    "  local done = tonumber(redis.call('HGET', writers, ARGV[1]) or '0')\n"
    "  if done and done >= seq then return 0 end\n"
    "end\n"
    "local v = redis.call('HGET', totals, 'v')\n"
    "if v and v ~= '1' then\n"
    "  return redis.error_reply('MABSCHEMA key ' .. totals .. ' has schema version ' .. v ..\n"
    "                           '; this plugin reads version 1')\n"
    "end\n"
    "local CHUNK = 4000\n"
    "local names, incs = {}, {}\n"
    "local suffix = {':pulls', ':rewards', ':reward_sum', ':reward_sum_sq'}\n"
    "for i = 3, #ARGV, 5 do\n"
    "  for j = 1, 4 do\n"
    "    names[#names + 1] = ARGV[i] .. suffix[j]\n"
    "    incs[#incs + 1] = tonumber(ARGV[i + j])\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for from = 1, #names, CHUNK do\n"
    "  local to = math.min(from + CHUNK - 1, #names)\n"
    "  local cur = redis.call('HMGET', totals, unpack(names, from, to))\n"
    "  for k = from, to do\n"
    "    local text = cur[k - from + 1]\n"
    "    local count = (k - 1) % 4 < 2\n"
    "    local x = 0\n"
    "    if text then\n"
    "      if count and not string.match(text, '^%d+$') then\n"
    "        return redis.error_reply('MABFIELD key ' .. totals .. ' field ' .. names[k] ..\n"
    "                                 ' is not a whole count')\n"
    "      end\n"
    "      x = tonumber(text)\n"
    "      if x == nil or x ~= x or x == math.huge or x == -math.huge then\n"
    "        return redis.error_reply('MABFIELD key ' .. totals .. ' field ' .. names[k] ..\n"
    "                                 ' is not a finite number')\n"
    "      end\n"
    "    end\n"
    "    x = x + incs[k]\n"
    "    if count and (x < 0 or x >= 9007199254740992) then\n"
    "      return redis.error_reply('MABRANGE key ' .. totals .. ' field ' .. names[k] ..\n"
    "                               ' would be out of range')\n"
    "    end\n"
    "    if x ~= x or x == math.huge or x == -math.huge then\n"
    "      return redis.error_reply('MABRANGE key ' .. totals .. ' field ' .. names[k] ..\n"
    "                               ' would not be finite')\n"
    "    end\n"
    "    out[#out + 1] = names[k]\n"
    "    out[#out + 1] = count and string.format('%.0f', x) or string.format('%.17g', x)\n"
    "  end\n"
    "end\n"
    "for from = 1, #out, CHUNK do\n"
    "  redis.call('HSET', totals, unpack(out, from, math.min(from + CHUNK - 1, #out)))\n"
    "end\n"
    "redis.call('HSET', totals, 'v', '1')\n"
    "if seq > 0 then redis.call('HSET', writers, ARGV[1], ARGV[2]) end\n"
    "return 1\n";

/*
 * Claims (ABI 1.3). KEYS[1..n] the claim keys P"claim:"HEX, then the totals
 * keys of the m experiments the granted rewards add to. ARGV[1] n, ARGV[2] m,
 * then per claim: token, ttl in ms, number of deltas, then per delta:
 * experiment position (1..m), arm, pulls, rewards, reward_sum,
 * reward_sum_sq. A claim key holds the token of the call that won it.
 * Returns per claim 1 (granted now, its deltas added), 2 (granted before
 * with this very token: the reply to that call was lost; nothing added
 * again) or 0 (claimed by someone else). Refuses, writing nothing, a key of
 * another type or a field it cannot add to (as APPLY_SCRIPT).
 */
static const char CLAIM_SCRIPT[] =
    "local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "for i = 1, n + m do\n"
    "  local t = redis.call('TYPE', KEYS[i]).ok\n"
    "  local want = i <= n and 'string' or 'hash'\n"
    "  if t ~= want and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want)\n"
    "  end\n"
    "end\n"
    "for i = n + 1, n + m do\n"
    "  local v = redis.call('HGET', KEYS[i], 'v')\n"
    "  if v and v ~= '1' then\n"
    "    return redis.error_reply('MABSCHEMA key ' .. KEYS[i] .. ' has schema version ' .. v ..\n"
    "                             '; this plugin reads version 1')\n"
    "  end\n"
    "end\n"
    "local result, seen, sets = {}, {}, {}\n"
    "local incs = {}\n"
    "local at = 3\n"
    "for i = 1, n do\n"
    "  local token, ttl, nd = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])\n"
    "  at = at + 3\n"
    "  local cur = redis.call('GET', KEYS[i])\n"
    "  local r = 0\n"
    "  if seen[KEYS[i]] then r = 0\n"
    "  elseif not cur then r = 1\n"
    "  elseif cur == token then r = 2 end\n"
    "  seen[KEYS[i]] = true\n"
    "  result[i] = r\n"
    "  if r == 1 then sets[#sets + 1] = {KEYS[i], token, ttl} end\n"
    "  for d = 1, nd do\n"
    "    if r == 1 then\n"
    "      local key = KEYS[n + tonumber(ARGV[at])]\n"
    "      local suffix = {':pulls', ':rewards', ':reward_sum', ':reward_sum_sq'}\n"
    "      incs[key] = incs[key] or {}\n"
    "      for j = 1, 4 do\n"
    "        local f = ARGV[at + 1] .. suffix[j]\n"
    "        incs[key][f] = (incs[key][f] or 0) + tonumber(ARGV[at + 1 + j])\n"
    "      end\n"
    "    end\n"
    "    at = at + 6\n"
    "  end\n"
    "end\n"
    "local writes = {}\n"
    "for key, fields in pairs(incs) do\n"
    "  local out = {}\n"
    "  for f, inc in pairs(fields) do\n"
    "    local count = string.sub(f, -6) == ':pulls' or string.sub(f, -8) == ':rewards'\n"
    "    local text = redis.call('HGET', key, f)\n"
    "    local x = 0\n"
    "    if text then\n"
    "      if count and not string.match(text, '^%d+$') then\n"
    "        return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. f .. ' is not a whole count')\n"
    "      end\n"
    "      x = tonumber(text)\n"
    "      if x == nil or x ~= x or x == math.huge or x == -math.huge then\n"
    "        return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. f .. ' is not a finite number')\n"
    "      end\n"
    "    end\n"
    "    x = x + inc\n"
    "    if (count and (x < 0 or x >= 9007199254740992)) or x ~= x or x == math.huge or x == -math.huge then\n"
    "      return redis.error_reply('MABRANGE key ' .. key .. ' field ' .. f .. ' would be out of range')\n"
    "    end\n"
    "    out[#out + 1] = f\n"
    "    out[#out + 1] = count and string.format('%.0f', x) or string.format('%.17g', x)\n"
    "  end\n"
    "  writes[#writes + 1] = {key, out}\n"
    "end\n"
    "for _, w in ipairs(writes) do\n"
    "  redis.call('HSET', w[1], 'v', '1', unpack(w[2]))\n"
    "end\n"
    "for _, c in ipairs(sets) do\n"
    "  redis.call('SET', c[1], c[2], 'PX', c[3])\n"
    "end\n"
    "return result\n";

/* Totals that may be negative: differences between offered and credited. */
typedef struct signed_totals {
    int64_t pulls;
    int64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} signed_totals;

/* What this process knows about one arm beyond the store. */
typedef struct arm_ledger {
    char *arm;
    signed_totals credit; /* counted in the store, yet still held by the core */
    signed_totals doubt;  /* sent in the in-doubt call; maybe counted */
    signed_totals op;     /* scratch for apply: what this batch sends */
    int offered;          /* scratch for apply */
} arm_ledger;

/* One experiment this process wrote to. */
typedef struct exp_ledger {
    char *experiment;
    arm_ledger *arms;
    size_t n_arms, cap_arms;
    uint32_t *index;   /* open addressing over arms: position + 1, 0 when empty */
    size_t index_cap;  /* a power of two, at least twice n_arms */
    int64_t doubt_seq; /* number of the in-doubt call, 0 when none */
    int in_batch;      /* scratch for apply */
} exp_ledger;

typedef struct redis_store {
    redisContext *ctx; /* NULL while disconnected */
    /* where to connect */
    char host[256];
    int port;
    char unix_path[200];
    int db;
    char username[128];
    char *password; /* from password_file; never shown */
    struct timeval timeout;
    char prefix[PREFIX_MAX + 1];
    char where[WHERE_MAX]; /* "Redis at HOST:PORT (db N)" */
    char script_sha[41];
    char claim_sha[41];
    uint64_t claim_seq; /* numbers this process's claim calls (tokens) */
    /* Claims whose call lost its reply: id -> the token it was sent with, so
       that a retry recognises its own win (bounded: the oldest are
       forgotten, and a forgotten one is refused on retry, never counted
       twice). */
    struct doubt_claim {
        uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
        char token[40];
    } doubt_claims[256];
    size_t n_doubt_claims, next_doubt_claim;
    char writer[17];
    int64_t batch_seq;
    exp_ledger *exps;
    size_t n_exps, cap_exps;
    size_t last_exp; /* where the last lookup found its experiment: batches come grouped */
} redis_store;

/* ---- messages ------------------------------------------------------------ */

static int store_fail(const redis_store *st, mab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int store_fail(const redis_store *st, mab_error *err, int code, const char *fmt, ...)
{
    char what[MAB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* The password never reaches a message, even if a server echoed it. */
    if (st->password && st->password[0]) {
        char *at;
        while ((at = strstr(what, st->password)) != NULL)
            memset(at, '*', strlen(st->password));
    }
    return mab_error_set(err, code, "%s: %s", st->where, what);
}

/* ---- the connection ------------------------------------------------------ */

/* SIGPIPE blocked for the calling thread during one exchange; a SIGPIPE that
   the exchange raised is taken back before the mask is restored. */
typedef struct pipe_guard {
    sigset_t old;
    int was_pending;
} pipe_guard;

static void guard_begin(pipe_guard *g)
{
    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &g->old);
}

static void guard_end(pipe_guard *g)
{
    sigset_t pending;
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static void disconnect(redis_store *st)
{
    if (st->ctx)
        redisFree(st->ctx);
    st->ctx = NULL;
}

/* Why the connection failed, in words ("timed out" rather than EAGAIN). */
static const char *io_reason(const redis_store *st, char *buf, size_t cap)
{
    if (!st->ctx || !st->ctx->errstr[0])
        return "connection lost";
    if (strstr(st->ctx->errstr, "temporarily unavailable")) {
        snprintf(buf, cap, "no answer within timeout_ms (%ld ms)",
                 (long)st->timeout.tv_sec * 1000 + (long)st->timeout.tv_usec / 1000);
        return buf;
    }
    return st->ctx->errstr;
}

/* A command of its own; the reply or NULL (then the connection is gone and
   err says why). */
static redisReply *command(redis_store *st, int argc, const char **argv, const size_t *lens,
                           const char *what, mab_error *err)
{
    redisReply *r = redisCommandArgv(st->ctx, argc, argv, lens);
    if (!r) {
        char why[64];
        store_fail(st, err, MAB_ESTORAGE, "%s: %s", what,
                   io_reason(st, why, sizeof why));
        disconnect(st);
    }
    return r;
}

static int connect_store(redis_store *st, mab_error *err)
{
    if (st->ctx)
        return MAB_OK;
    redisContext *c = st->unix_path[0]
                          ? redisConnectUnixWithTimeout(st->unix_path, st->timeout)
                          : redisConnectWithTimeout(st->host, st->port, st->timeout);
    if (!c)
        return store_fail(st, err, MAB_ENOMEM, "cannot connect: out of memory");
    if (c->err) {
        int rc = store_fail(st, err, MAB_ESTORAGE, "cannot connect: %s", c->errstr);
        redisFree(c);
        return rc;
    }
    if (redisSetTimeout(c, st->timeout) != REDIS_OK) {
        int rc = store_fail(st, err, MAB_ESTORAGE, "cannot set the timeout: %s", c->errstr);
        redisFree(c);
        return rc;
    }
    st->ctx = c;
    int rc = MAB_OK;
    redisReply *r;
    if (st->password) {
        /* AUTH [USER] PASSWORD */
        const char *argv[3] = {"AUTH", st->username, st->password};
        size_t lens[3] = {4, strlen(st->username), strlen(st->password)};
        int argc = 3;
        if (!st->username[0]) {
            argv[1] = st->password;
            lens[1] = lens[2];
            argc = 2;
        }
        r = command(st, argc, argv, lens, "cannot authenticate", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "authentication failed%s%s: %s",
                            st->username[0] ? " for user " : "", st->username, r->str);
        freeReplyObject(r);
    }
    if (rc == MAB_OK && st->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", st->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        r = command(st, 2, argv, lens, "cannot select the database", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot select database %d: %s", st->db,
                            r->str);
        freeReplyObject(r);
    }
    if (rc == MAB_OK) {
        /* Load the script, also after a server restart (which forgets it). */
        const char *argv[3] = {"SCRIPT", "LOAD", APPLY_SCRIPT};
        size_t lens[3] = {6, 4, sizeof APPLY_SCRIPT - 1};
        r = command(st, 3, argv, lens, "cannot load the update script", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_STRING && r->len == 40) {
            memcpy(st->script_sha, r->str, 41);
            freeReplyObject(r);
            const char *cargv[3] = {"SCRIPT", "LOAD", CLAIM_SCRIPT};
            size_t clens[3] = {6, 4, sizeof CLAIM_SCRIPT - 1};
            r = command(st, 3, cargv, clens, "cannot load the claim script", err);
            if (!r)
                return MAB_ESTORAGE;
            if (r->type == REDIS_REPLY_STRING && r->len == 40)
                memcpy(st->claim_sha, r->str, 41);
            else
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot load the claim script: %s",
                                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }
        else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0)
            rc = store_fail(st, err, MAB_ESTORAGE,
                            "the server needs a password (set password_file): %s", r->str);
        else
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot load the update script: %s",
                            r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
    }
    if (rc != MAB_OK)
        disconnect(st);
    return rc;
}

/* ---- keys ------------------------------------------------------------------ */

static void totals_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    snprintf(out, cap, "%s{%s}:totals", st->prefix, experiment);
}

static void writers_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    snprintf(out, cap, "%s{%s}:writers", st->prefix, experiment);
}

/* ---- the ledger ------------------------------------------------------------ */

static int signed_totals_zero(const signed_totals *t)
{
    return t->pulls == 0 && t->rewards == 0 && t->reward_sum == 0 && t->reward_sum_sq == 0;
}

static void signed_totals_add(signed_totals *t, const signed_totals *plus)
{
    t->pulls += plus->pulls;
    t->rewards += plus->rewards;
    t->reward_sum += plus->reward_sum;
    t->reward_sum_sq += plus->reward_sum_sq;
}

static void signed_totals_sub(signed_totals *t, const signed_totals *minus)
{
    t->pulls -= minus->pulls;
    t->rewards -= minus->rewards;
    t->reward_sum -= minus->reward_sum;
    t->reward_sum_sq -= minus->reward_sum_sq;
}

static exp_ledger *exp_find(redis_store *st, const char *experiment)
{
    if (st->last_exp < st->n_exps && strcmp(st->exps[st->last_exp].experiment, experiment) == 0)
        return &st->exps[st->last_exp];
    for (size_t i = 0; i < st->n_exps; i++)
        if (strcmp(st->exps[i].experiment, experiment) == 0) {
            st->last_exp = i;
            return &st->exps[i];
        }
    return NULL;
}

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static exp_ledger *exp_get(redis_store *st, const char *experiment)
{
    exp_ledger *x = exp_find(st, experiment);
    if (x)
        return x;
    if (st->n_exps == st->cap_exps) {
        size_t cap = st->cap_exps ? 2 * st->cap_exps : 8;
        exp_ledger *grown = realloc(st->exps, cap * sizeof *grown);
        if (!grown)
            return NULL;
        st->exps = grown;
        st->cap_exps = cap;
    }
    char *name = strdup(experiment);
    if (!name)
        return NULL;
    x = &st->exps[st->n_exps++];
    memset(x, 0, sizeof *x);
    x->experiment = name;
    return x;
}

static arm_ledger *arm_find(exp_ledger *x, const char *arm)
{
    if (!x->index_cap)
        return NULL;
    for (size_t b = hash_text(arm) & (x->index_cap - 1);; b = (b + 1) & (x->index_cap - 1)) {
        uint32_t at = x->index[b];
        if (!at)
            return NULL;
        if (strcmp(x->arms[at - 1].arm, arm) == 0)
            return &x->arms[at - 1];
    }
}

/* Make room in the index for one more arm. */
static int index_grow(exp_ledger *x)
{
    if (2 * (x->n_arms + 1) <= x->index_cap)
        return 1;
    size_t cap = x->index_cap ? 2 * x->index_cap : 16;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        size_t b = hash_text(x->arms[i].arm) & (cap - 1);
        while (index[b])
            b = (b + 1) & (cap - 1);
        index[b] = (uint32_t)i + 1;
    }
    free(x->index);
    x->index = index;
    x->index_cap = cap;
    return 1;
}

static arm_ledger *arm_get(exp_ledger *x, const char *arm)
{
    arm_ledger *a = arm_find(x, arm);
    if (a)
        return a;
    if (x->n_arms == x->cap_arms) {
        size_t cap = x->cap_arms ? 2 * x->cap_arms : 8;
        arm_ledger *grown = realloc(x->arms, cap * sizeof *grown);
        if (!grown)
            return NULL;
        x->arms = grown;
        x->cap_arms = cap;
    }
    char *name = strdup(arm);
    if (!name || !index_grow(x)) {
        free(name);
        return NULL;
    }
    size_t b = hash_text(arm) & (x->index_cap - 1);
    while (x->index[b])
        b = (b + 1) & (x->index_cap - 1);
    x->index[b] = (uint32_t)x->n_arms + 1;
    a = &x->arms[x->n_arms++];
    memset(a, 0, sizeof *a);
    a->arm = name;
    return a;
}

/* Forget the credit and doubt of one experiment (its keys were deleted);
   the experiment stays listed, for the courtesy at close. */
static void exp_forget(exp_ledger *x)
{
    for (size_t i = 0; i < x->n_arms; i++)
        free(x->arms[i].arm);
    free(x->arms);
    free(x->index);
    x->arms = NULL;
    x->index = NULL;
    x->n_arms = x->cap_arms = x->index_cap = 0;
    x->doubt_seq = 0;
}

/* ---- one script call per experiment ------------------------------------------ */

/* Increments as the script's arguments: "%.17g" gives back the same double. */
static void format_count(char *out, size_t cap, int64_t n)
{
    snprintf(out, cap, "%" PRId64, n);
}

static void format_sum(char *out, size_t cap, double x)
{
    snprintf(out, cap, "%.17g", x);
}

enum which { SEND_OP, SEND_DOUBT };

/* Append one EVALSHA for experiment x with its arms' op (or doubt) totals. */
static int append_call(redis_store *st, const exp_ledger *x, enum which which, int64_t seq,
                       mab_error *err)
{
    size_t n_arms = 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        const signed_totals *t = which == SEND_OP ? &x->arms[i].op : &x->arms[i].doubt;
        n_arms += !signed_totals_zero(t);
    }
    size_t argc = 7 + 5 * n_arms;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    char *text = malloc(3 * KEY_MAX + 32 + n_arms * 4 * 32);
    if (!argv || !lens || !text) {
        free(argv);
        free(lens);
        free(text);
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    }
    char *p = text;
    size_t k = 0;
#define ARG(s)                                                                       \
    do {                                                                             \
        argv[k] = (s);                                                               \
        lens[k] = strlen(argv[k]);                                                   \
        k++;                                                                         \
    } while (0)
    ARG("EVALSHA");
    ARG(st->script_sha);
    ARG("2");
    totals_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    writers_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    ARG(st->writer);
    format_count(p, 32, seq);
    ARG(p);
    p += strlen(p) + 1;
    for (size_t i = 0; i < x->n_arms; i++) {
        const signed_totals *t = which == SEND_OP ? &x->arms[i].op : &x->arms[i].doubt;
        if (signed_totals_zero(t))
            continue;
        ARG(x->arms[i].arm);
        format_count(p, 32, t->pulls);
        ARG(p);
        p += strlen(p) + 1;
        format_count(p, 32, t->rewards);
        ARG(p);
        p += strlen(p) + 1;
        format_sum(p, 32, t->reward_sum);
        ARG(p);
        p += strlen(p) + 1;
        format_sum(p, 32, t->reward_sum_sq);
        ARG(p);
        p += strlen(p) + 1;
    }
#undef ARG
    int ok = redisAppendCommandArgv(st->ctx, (int)k, argv, lens) == REDIS_OK;
    free(argv);
    free(lens);
    free(text);
    if (!ok)
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    return MAB_OK;
}

/* What one reply says about its call. */
enum outcome { COUNTED, REFUSED, LOST };

/* Read the reply of one call. A REFUSED call changed nothing; err says why. */
static enum outcome read_outcome(redis_store *st, const exp_ledger *x, mab_error *err,
                                 int *noscript)
{
    redisReply *r = NULL;
    if (!st->ctx || redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
        char why[64];
        store_fail(st, err, MAB_ESTORAGE,
                   "experiment %s: no reply to the update (%s); kept in memory and sent "
                   "again later, counted once",
                   x->experiment,
                   io_reason(st, why, sizeof why));
        disconnect(st);
        return LOST;
    }
    enum outcome out = COUNTED;
    if (r->type == REDIS_REPLY_ERROR) {
        out = REFUSED;
        if (strncmp(r->str, "NOSCRIPT", 8) == 0)
            *noscript = 1;
        int code = strncmp(r->str, "MABTYPE", 7) == 0 || strncmp(r->str, "MABSCHEMA", 9) == 0 ||
                           strncmp(r->str, "MABFIELD", 8) == 0
                       ? MAB_ECORRUPT
                   : strncmp(r->str, "MABRANGE", 8) == 0 ? MAB_ERANGE
                                                         : MAB_ESTORAGE;
        const char *text = r->str;
        if (code != MAB_ESTORAGE && strchr(text, ' '))
            text = strchr(text, ' ') + 1;
        /* Lua error replies carry a "script: ..." suffix: keep them short. */
        store_fail(st, err, code, "experiment %s: update refused, nothing written: %s",
                   x->experiment, text);
    } else if (r->type != REDIS_REPLY_INTEGER) {
        out = REFUSED;
        store_fail(st, err, MAB_ESTORAGE, "experiment %s: unexpected reply to the update",
                   x->experiment);
    }
    freeReplyObject(r);
    return out;
}

/* ---- apply ------------------------------------------------------------------- */

static int check_deltas(const redis_store *st, const mab_delta *deltas, size_t n,
                        mab_error *err)
{
    if (n && !deltas)
        return store_fail(st, err, MAB_EINVAL, "apply: NULL batch");
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        if (!d->experiment || !d->arm || !d->experiment[0] || !d->arm[0])
            return store_fail(st, err, MAB_EINVAL, "apply: delta %zu has no experiment or arm",
                              i);
        if (strlen(d->experiment) > ID_MAX || strlen(d->arm) > ID_MAX ||
            strpbrk(d->experiment, "{}:") || strchr(d->arm, ':'))
            return store_fail(st, err, MAB_EINVAL, "apply: \"%s\"/\"%s\" is not a valid id",
                              d->experiment, d->arm);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq))
            return store_fail(st, err, MAB_EINVAL, "apply: %s/%s: reward is not finite",
                              d->experiment, d->arm);
        if (d->add.pulls > INT64_MAX || d->add.rewards > INT64_MAX)
            return store_fail(st, err, MAB_ERANGE, "apply: %s/%s: count out of range",
                              d->experiment, d->arm);
    }
    return MAB_OK;
}

/* Send every in-doubt call again with its own number. Any reply settles
   one: counted (now or before) becomes credit; refused means neither this
   nor the lost call counted (the number was not there). NOSCRIPT (the
   server forgot the script) settles nothing: the reconnect loads it again. */
static int settle_doubt(redis_store *st, mab_error *err)
{
    size_t sent = 0;
    int rc = MAB_OK;
    for (size_t i = 0; i < st->n_exps && rc == MAB_OK; i++)
        if (st->exps[i].doubt_seq) {
            rc = append_call(st, &st->exps[i], SEND_DOUBT, st->exps[i].doubt_seq, err);
            sent++;
        }
    if (rc != MAB_OK)
        disconnect(st); /* drop what was appended */
    if (rc != MAB_OK || sent == 0)
        return rc;
    int first_rc = MAB_OK, noscript = 0;
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_ledger *x = &st->exps[i];
        if (!x->doubt_seq)
            continue;
        int forgot = 0;
        mab_error one;
        enum outcome out = read_outcome(st, x, &one, &forgot);
        noscript |= forgot;
        if (out != COUNTED && first_rc == MAB_OK) {
            if (err)
                *err = one;
            first_rc = one.code;
        }
        if (out == LOST || forgot)
            continue; /* stays in doubt */
        for (size_t a = 0; a < x->n_arms; a++) {
            if (out == COUNTED)
                signed_totals_add(&x->arms[a].credit, &x->arms[a].doubt);
            memset(&x->arms[a].doubt, 0, sizeof x->arms[a].doubt);
        }
        x->doubt_seq = 0;
    }
    if (noscript)
        disconnect(st);
    return first_rc;
}

static signed_totals to_signed(const mab_totals *t)
{
    return (signed_totals){(int64_t)t->pulls, (int64_t)t->rewards, t->reward_sum,
                           t->reward_sum_sq};
}

static int apply_once(redis_store *st, const mab_delta *deltas, size_t n_deltas,
                      mab_error *err)
{
    int rc;
    /* Note every arm of the batch in the ledger first (out of memory here
       leaves nothing sent). */
    for (size_t i = 0; i < st->n_exps; i++) {
        st->exps[i].in_batch = 0;
        for (size_t a = 0; a < st->exps[i].n_arms; a++) {
            memset(&st->exps[i].arms[a].op, 0, sizeof st->exps[i].arms[a].op);
            st->exps[i].arms[a].offered = 0;
        }
    }
    for (size_t i = 0; i < n_deltas; i++) {
        exp_ledger *x = exp_get(st, deltas[i].experiment);
        arm_ledger *a = x ? arm_get(x, deltas[i].arm) : NULL;
        if (!a)
            return store_fail(st, err, MAB_ENOMEM, "out of memory");
        signed_totals add = to_signed(&deltas[i].add);
        signed_totals_add(&a->op, &add);
        a->offered = 1;
    }
    pipe_guard guard;
    guard_begin(&guard);
    rc = connect_store(st, err);
    if (rc == MAB_OK)
        rc = settle_doubt(st, err);
    if (rc != MAB_OK) {
        guard_end(&guard);
        return rc;
    }
    /* What to send: the offered increments minus the credit; the credit of
       arms not offered again (a failed import) is taken back out. */
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_ledger *x = &st->exps[i];
        for (size_t a = 0; a < x->n_arms; a++) {
            signed_totals_sub(&x->arms[a].op, &x->arms[a].credit);
            if (!signed_totals_zero(&x->arms[a].op))
                x->in_batch = 1;
        }
    }
    int64_t seq = ++st->batch_seq;
    size_t sent = 0;
    for (size_t i = 0; i < st->n_exps && rc == MAB_OK; i++)
        if (st->exps[i].in_batch) {
            rc = append_call(st, &st->exps[i], SEND_OP, seq, err);
            sent++;
        }
    if (rc != MAB_OK) {
        disconnect(st);
        guard_end(&guard);
        return rc;
    }
    int first_rc = MAB_OK, noscript = 0;
    for (size_t i = 0; i < st->n_exps && sent; i++) {
        exp_ledger *x = &st->exps[i];
        if (!x->in_batch)
            continue;
        mab_error one;
        enum outcome out = read_outcome(st, x, &one, &noscript);
        if (out != COUNTED && first_rc == MAB_OK) {
            if (err)
                *err = one;
            first_rc = one.code;
        }
        for (size_t a = 0; a < x->n_arms; a++) {
            if (out == COUNTED)
                signed_totals_add(&x->arms[a].credit, &x->arms[a].op);
            else if (out == LOST)
                x->arms[a].doubt = x->arms[a].op;
        }
        if (out == LOST)
            x->doubt_seq = seq;
    }
    if (noscript)
        disconnect(st); /* the reconnect loads the script again */
    guard_end(&guard);
    if (first_rc != MAB_OK)
        return first_rc;
    /* Everything the core offered is counted: it drops the batch. */
    for (size_t i = 0; i < st->n_exps; i++)
        for (size_t a = 0; a < st->exps[i].n_arms; a++)
            memset(&st->exps[i].arms[a].credit, 0, sizeof st->exps[i].arms[a].credit);
    return MAB_OK;
}

/* A connection that was open before this call may have died unnoticed (the
   server restarted since): when it breaks, try once more on a new one, so
   that the first reward after a restart is not refused. Sending again is
   what the exactly-once scheme is for. */
static int redis_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    redis_store *st = state;
    int rc = check_deltas(st, deltas, n_deltas, err);
    if (rc != MAB_OK)
        return rc;
    int was_connected = st->ctx != NULL;
    rc = apply_once(st, deltas, n_deltas, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx)
        rc = apply_once(st, deltas, n_deltas, err);
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

static int parse_count(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return 0;
    *out = v;
    return 1;
}

static int parse_sum(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* One arm's totals as read from the hash. */
typedef struct read_arm {
    const char *arm; /* points into a reply */
    size_t arm_len;
    signed_totals t;
} read_arm;

/* Parse an HGETALL reply of P{E}:totals into arms[]; *n_out arms. */
static int parse_totals(const redis_store *st, const char *key, const redisReply *r,
                        read_arm **arms_out, size_t *n_out, mab_error *err)
{
    *arms_out = NULL;
    *n_out = 0;
    if (r->type == REDIS_REPLY_ERROR)
        return store_fail(st, err, strncmp(r->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT
                                                                          : MAB_ESTORAGE,
                          "key %s: cannot read: %s", key, r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return store_fail(st, err, MAB_ESTORAGE, "key %s: unexpected reply", key);
    read_arm *arms = calloc(r->elements / 2 + 1, sizeof *arms);
    /* Arms by name: open addressing, position + 1 (0: empty). */
    size_t cap = 16;
    while (cap < r->elements + 2)
        cap *= 2;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!arms || !index) {
        free(arms);
        free(index);
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "v") == 0) {
            if (strcmp(v->str, "1") != 0) {
                free(arms);
                free(index);
                return store_fail(st, err, MAB_ECORRUPT,
                                  "key %s has schema version %s; this plugin reads version 1",
                                  key, v->str);
            }
            continue;
        }
        const char *colon = strrchr(f->str, ':');
        if (!colon || colon == f->str) {
            free(arms);
            free(index);
            return store_fail(st, err, MAB_ECORRUPT,
                              "key %s: field \"%s\" was not written by mab", key, f->str);
        }
        size_t arm_len = (size_t)(colon - f->str);
        uint32_t h = 2166136261u;
        for (size_t k = 0; k < arm_len; k++)
            h = (h ^ (uint8_t)f->str[k]) * 16777619u;
        read_arm *a = NULL;
        size_t b = h & (cap - 1);
        for (; index[b] && !a; b = (b + 1) & (cap - 1)) {
            read_arm *c = &arms[index[b] - 1];
            if (c->arm_len == arm_len && memcmp(c->arm, f->str, arm_len) == 0)
                a = c;
        }
        if (!a) {
            index[b] = (uint32_t)n + 1;
            a = &arms[n++];
            a->arm = f->str;
            a->arm_len = arm_len;
        }
        const char *name = colon + 1;
        int ok;
        if (strcmp(name, "pulls") == 0)
            ok = parse_count(v->str, &a->t.pulls) && a->t.pulls >= 0;
        else if (strcmp(name, "rewards") == 0)
            ok = parse_count(v->str, &a->t.rewards) && a->t.rewards >= 0;
        else if (strcmp(name, "reward_sum") == 0)
            ok = parse_sum(v->str, &a->t.reward_sum);
        else if (strcmp(name, "reward_sum_sq") == 0)
            ok = parse_sum(v->str, &a->t.reward_sum_sq);
        else
            ok = 0;
        if (!ok) {
            free(arms);
            free(index);
            return store_fail(st, err, MAB_ECORRUPT,
                              "key %s: field \"%s\" holds \"%.40s\", not a %s", key, f->str,
                              v->str,
                              strcmp(name, "pulls") == 0 || strcmp(name, "rewards") == 0
                                  ? "whole count"
                                  : "finite number (or is not a mab field)");
        }
    }
    free(index);
    *arms_out = arms;
    *n_out = n;
    return MAB_OK;
}

/* The stored totals of an arm as the core must see them: minus the credit,
   minus the in-doubt increments when the in-doubt call was counted. */
static mab_totals as_seen(const exp_ledger *x, const char *arm, signed_totals t,
                          int64_t writer_seq)
{
    const arm_ledger *a = x ? arm_find((exp_ledger *)x, arm) : NULL;
    if (a) {
        signed_totals_sub(&t, &a->credit);
        if (x->doubt_seq && writer_seq >= x->doubt_seq)
            signed_totals_sub(&t, &a->doubt);
    }
    return (mab_totals){t.pulls > 0 ? (uint64_t)t.pulls : 0, t.rewards > 0 ? (uint64_t)t.rewards : 0,
                        t.reward_sum, t.reward_sum_sq > 0 ? t.reward_sum_sq : 0};
}

/*
 * Read one experiment: MULTI, HGETALL totals, HGET writers WRITER, EXEC,
 * pipelined (one round trip, one consistent snapshot). Calls
 * visit(ctx, arm, totals) for each arm found.
 */
static int read_experiment(redis_store *st, const char *experiment,
                           int (*visit)(void *ctx, const char *experiment, const char *arm,
                                        const mab_totals *t),
                           void *ctx, mab_error *err)
{
    char tkey[KEY_MAX], wkey[KEY_MAX];
    totals_key(st, experiment, tkey, sizeof tkey);
    writers_key(st, experiment, wkey, sizeof wkey);
    int rc = connect_store(st, err);
    if (rc != MAB_OK)
        return rc;
    redisAppendCommand(st->ctx, "MULTI");
    redisAppendCommand(st->ctx, "HGETALL %s", tkey);
    redisAppendCommand(st->ctx, "HGET %s %s", wkey, st->writer);
    redisAppendCommand(st->ctx, "EXEC");
    redisReply *replies[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) {
        if (redisGetReply(st->ctx, (void **)&replies[i]) != REDIS_OK || !replies[i]) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey,
                            io_reason(st, why, sizeof why));
            for (int k = 0; k < i; k++)
                freeReplyObject(replies[k]);
            disconnect(st);
            return rc;
        }
    }
    redisReply *exec = replies[3];
    if (replies[0]->type == REDIS_REPLY_ERROR)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey, replies[0]->str);
    else if (exec->type == REDIS_REPLY_ERROR)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey, exec->str);
    else if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: unexpected reply", tkey);
    read_arm *arms = NULL;
    size_t n = 0;
    int64_t writer_seq = 0;
    if (rc == MAB_OK) {
        const redisReply *w = exec->element[1];
        if (w->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err,
                            strncmp(w->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT : MAB_ESTORAGE,
                            "key %s: cannot read: %s", wkey, w->str);
        else if (w->type == REDIS_REPLY_STRING && !parse_count(w->str, &writer_seq))
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: field %s is not a batch number",
                            wkey, st->writer);
    }
    if (rc == MAB_OK)
        rc = parse_totals(st, tkey, exec->element[0], &arms, &n, err);
    const exp_ledger *x = rc == MAB_OK ? exp_find(st, experiment) : NULL;
    char arm[ID_MAX + 1];
    for (size_t i = 0; rc == MAB_OK && i < n; i++) {
        if (arms[i].arm_len > ID_MAX) {
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: an arm id is too long", tkey);
            break;
        }
        memcpy(arm, arms[i].arm, arms[i].arm_len);
        arm[arms[i].arm_len] = '\0';
        mab_totals t = as_seen(x, arm, arms[i].t, writer_seq);
        rc = visit(ctx, experiment, arm, &t);
    }
    free(arms);
    for (int i = 0; i < 4; i++)
        freeReplyObject(replies[i]);
    return rc;
}

struct load_ctx {
    const char *const *arm_ids;
    size_t n_arms;
    mab_totals *out;
};

static int load_one(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    (void)experiment;
    struct load_ctx *x = ctx;
    for (size_t i = 0; i < x->n_arms; i++)
        if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0)
            x->out[i] = *t;
    return 0;
}

static int redis_load(void *state, const char *experiment, const char *const *arm_ids,
                      size_t n_arms, mab_totals *out, mab_error *err)
{
    redis_store *st = state;
    if (!experiment || (n_arms && (!arm_ids || !out)))
        return store_fail(st, err, MAB_EINVAL, "load: NULL argument");
    mab_totals *totals = calloc(n_arms ? n_arms : 1, sizeof *totals);
    if (!totals)
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    struct load_ctx x = {arm_ids, n_arms, totals};
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = read_experiment(st, experiment, load_one, &x, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) /* see redis_apply */
        rc = read_experiment(st, experiment, load_one, &x, err);
    guard_end(&guard);
    /* All or nothing: out keeps its contents when the read fails. */
    if (rc == MAB_OK)
        memcpy(out, totals, n_arms * sizeof *out);
    free(totals);
    return rc;
}

/* ---- scan ---------------------------------------------------------------------- */

/* The prefix with glob characters escaped, for SCAN MATCH. */
static void glob_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 3 < cap; in++) {
        if (strchr("*?[]\\", *in))
            out[n++] = '\\';
        out[n++] = *in;
    }
    out[n] = '\0';
}

struct scan_visit {
    int (*visit)(void *ctx, const char *experiment, const char *arm, const mab_totals *t);
    void *ctx;
};

static int scan_one(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    struct scan_visit *v = ctx;
    return v->visit(v->ctx, experiment, arm, t);
}

/* Experiment names found by SCAN, sorted for a stable order. */
static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int redis_scan(void *state,
                      int (*visit)(void *ctx, const char *experiment, const char *arm,
                                   const mab_totals *totals),
                      void *ctx, mab_error *err)
{
    redis_store *st = state;
    char pattern[2 * PREFIX_MAX + 16];
    glob_escape(st->prefix, pattern, sizeof pattern - 12);
    strcat(pattern, "{*}:totals");
    pipe_guard guard;
    guard_begin(&guard);
    int rc = connect_store(st, err);
    char **names = NULL;
    size_t n = 0, cap = 0;
    char cursor[32] = "0";
    size_t plen = strlen(st->prefix);
    do {
        if (rc != MAB_OK)
            break;
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, 4};
        redisReply *r = command(st, 6, argv, lens, "cannot list the experiments", err);
        if (!r) {
            rc = MAB_ESTORAGE;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot list the experiments: %s",
                            r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements && rc == MAB_OK; i++) {
            const char *key = keys->element[i]->str;
            size_t len = keys->element[i]->len;
            /* PREFIX{E}:totals, E without braces */
            if (len < plen + 10 || key[plen] != '{')
                continue;
            size_t elen = len - plen - 1 - strlen("}:totals");
            char *name = strndup(key + plen + 1, elen);
            if (!name || (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 16) *
                                                                   sizeof *names)))) {
                free(name);
                rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
                break;
            }
            if (strpbrk(name, "{}")) {
                free(name);
                continue;
            }
            names[n++] = name;
        }
        freeReplyObject(r);
    } while (rc == MAB_OK && strcmp(cursor, "0") != 0);
    if (rc == MAB_OK && n) {
        qsort(names, n, sizeof *names, compare_names);
        struct scan_visit v = {visit, ctx};
        for (size_t i = 0; i < n && rc == MAB_OK; i++)
            if (i == 0 || strcmp(names[i], names[i - 1]) != 0) /* SCAN may repeat a key */
                rc = read_experiment(st, names[i], scan_one, &v, err);
    }
    guard_end(&guard);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- reset and replace ---------------------------------------------------------- */

/*
 * One MULTI: DEL the keys of every listed experiment, then one EVAL per
 * experiment adding its deltas (unguarded). On one server this is atomic.
 * When the reply to EXEC is lost it may have run; running it again gives
 * the same result, so an import can simply be repeated.
 */
static int clear_and_add(redis_store *st, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, const char *what,
                         mab_error *err)
{
    int rc = check_deltas(st, deltas, n_deltas, err);
    for (size_t i = 0; rc == MAB_OK && i < n_experiments; i++)
        if (!experiments[i] || !experiments[i][0] || strlen(experiments[i]) > ID_MAX ||
            strpbrk(experiments[i], "{}:"))
            rc = store_fail(st, err, MAB_EINVAL, "%s: not a valid experiment id", what);
    if (rc != MAB_OK)
        return rc;
    /* The deltas, grouped per experiment in a scratch ledger. */
    redis_store scratch = *st;
    scratch.exps = NULL;
    scratch.n_exps = scratch.cap_exps = 0;
    for (size_t i = 0; i < n_deltas && rc == MAB_OK; i++) {
        exp_ledger *x = exp_get(&scratch, deltas[i].experiment);
        arm_ledger *a = x ? arm_get(x, deltas[i].arm) : NULL;
        if (!a) {
            rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
            break;
        }
        signed_totals add = to_signed(&deltas[i].add);
        signed_totals_add(&a->op, &add);
    }
    pipe_guard guard;
    guard_begin(&guard);
    if (rc == MAB_OK)
        rc = connect_store(st, err);
    if (rc == MAB_OK) {
        scratch.ctx = st->ctx;
        memcpy(scratch.script_sha, st->script_sha, sizeof scratch.script_sha);
        redisAppendCommand(st->ctx, "MULTI");
        size_t queued = 1;
        for (size_t i = 0; i < n_experiments; i++) {
            char tkey[KEY_MAX], wkey[KEY_MAX];
            totals_key(st, experiments[i], tkey, sizeof tkey);
            writers_key(st, experiments[i], wkey, sizeof wkey);
            redisAppendCommand(st->ctx, "DEL %s %s", tkey, wkey);
            queued++;
        }
        for (size_t i = 0; i < scratch.n_exps && rc == MAB_OK; i++) {
            rc = append_call(&scratch, &scratch.exps[i], SEND_OP, 0, err);
            queued++;
        }
        redisAppendCommand(st->ctx, "EXEC");
        queued++;
        if (rc != MAB_OK)
            disconnect(st); /* out of memory: nothing was sent */
        /* Read every reply (an error at queueing aborts the EXEC, and the
           connection must stay in step). */
        redisReply *last = NULL;
        for (size_t i = 0; i < queued && st->ctx; i++) {
            redisReply *r = NULL;
            if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
                rc = store_fail(st, err, MAB_ESTORAGE,
                                "cannot %s (no reply; it may have been done: run it again)",
                                what);
                disconnect(st);
                break;
            }
            if (r->type == REDIS_REPLY_ERROR && rc == MAB_OK)
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot %s: %s", what, r->str);
            if (i + 1 == queued)
                last = r;
            else
                freeReplyObject(r);
        }
        if (rc == MAB_OK && last) {
            for (size_t i = 0; last->type == REDIS_REPLY_ARRAY && i < last->elements; i++) {
                const redisReply *one = last->element[i];
                if (one->type == REDIS_REPLY_ERROR && rc == MAB_OK)
                    rc = store_fail(st, err,
                                    strncmp(one->str, "MAB", 3) == 0 ||
                                            strncmp(one->str, "WRONGTYPE", 9) == 0
                                        ? MAB_ECORRUPT
                                        : MAB_ESTORAGE,
                                    "cannot %s: %s", what, one->str);
            }
            if (rc == MAB_OK && last->type != REDIS_REPLY_ARRAY)
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot %s: the transaction was aborted",
                                what);
        }
        if (last)
            freeReplyObject(last);
    }
    guard_end(&guard);
    for (size_t i = 0; i < scratch.n_exps; i++) {
        exp_forget(&scratch.exps[i]);
        free(scratch.exps[i].experiment);
    }
    free(scratch.exps);
    /* Whatever happened, the experiments' keys were (maybe) deleted: what
       was credited or in doubt for them no longer means anything. */
    for (size_t i = 0; i < n_experiments; i++) {
        exp_ledger *x = exp_find(st, experiments[i]);
        if (x)
            exp_forget(x);
    }
    return rc;
}

static int redis_reset(void *state, const char *experiment, mab_error *err)
{
    redis_store *st = state;
    if (!experiment)
        return store_fail(st, err, MAB_EINVAL, "reset: NULL experiment");
    char what[ID_MAX + 40];
    snprintf(what, sizeof what, "reset experiment %s", experiment);
    return clear_and_add(st, &experiment, 1, NULL, 0, what, err);
}

static int redis_replace(void *state, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return clear_and_add(state, experiments, n_experiments, deltas, n_deltas,
                         "replace the records of the imported experiments", err);
}

/* ---- claims (ABI 1.3) -------------------------------------------------------------- */

static void claim_key(const redis_store *st, const uint8_t *id, char *out, size_t cap)
{
    char hex[2 * MAB_ASSIGNMENT_ID_BYTES + 1];
    for (size_t i = 0; i < MAB_ASSIGNMENT_ID_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    snprintf(out, cap, "%sclaim:%s", st->prefix, hex);
}

static struct doubt_claim *doubt_claim_find(redis_store *st, const uint8_t *id)
{
    for (size_t i = 0; i < st->n_doubt_claims; i++)
        if (memcmp(st->doubt_claims[i].id, id, MAB_ASSIGNMENT_ID_BYTES) == 0)
            return &st->doubt_claims[i];
    return NULL;
}

static void doubt_claim_forget(redis_store *st, const uint8_t *id)
{
    struct doubt_claim *d = doubt_claim_find(st, id);
    if (d)
        memset(d->id, 0, sizeof d->id), d->token[0] = '\0';
}

static void doubt_claim_keep(redis_store *st, const uint8_t *id, const char *token)
{
    struct doubt_claim *d = doubt_claim_find(st, id);
    if (!d) {
        size_t cap = sizeof st->doubt_claims / sizeof st->doubt_claims[0];
        d = &st->doubt_claims[st->next_doubt_claim];
        st->next_doubt_claim = (st->next_doubt_claim + 1) % cap;
        if (st->n_doubt_claims < cap)
            st->n_doubt_claims++;
    }
    memcpy(d->id, id, sizeof d->id);
    snprintf(d->token, sizeof d->token, "%s", token);
}

/* One CLAIM_SCRIPT call over every claim: one atomic step, one round trip. */
static int claim_once(redis_store *st, mab_claim *claims, size_t n, mab_error *err)
{
    /* The experiments the deltas add to, in order of appearance. */
    size_t n_deltas = 0;
    for (size_t i = 0; i < n; i++)
        n_deltas += claims[i].n_deltas;
    const char **exps = calloc(n_deltas + 1, sizeof *exps);
    size_t argc = 2 + 2 * n + n_deltas + 2 + 3 * n + 6 * n_deltas + 4;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    char *text = malloc((n + n_deltas + 1) * (KEY_MAX + 8) + (n + 1) * 120 +
                        n_deltas * 4 * 32);
    int rc = MAB_OK;
    if (!exps || !argv || !lens || !text)
        rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
    size_t m = 0;
    for (size_t i = 0; rc == MAB_OK && i < n; i++)
        for (size_t d = 0; d < claims[i].n_deltas; d++) {
            size_t k = 0;
            while (k < m && strcmp(exps[k], claims[i].deltas[d].experiment) != 0)
                k++;
            if (k == m)
                exps[m++] = claims[i].deltas[d].experiment;
        }
    char *p = text;
    size_t k = 0;
#define ARGS(s)                                                                      \
    do {                                                                             \
        argv[k] = (s);                                                               \
        lens[k] = strlen(argv[k]);                                                   \
        k++;                                                                         \
    } while (0)
#define ARGP(...)                                                                    \
    do {                                                                             \
        snprintf(p, 64, __VA_ARGS__);                                                \
        ARGS(p);                                                                     \
        p += strlen(p) + 1;                                                          \
    } while (0)
    char tokens_base[40];
    snprintf(tokens_base, sizeof tokens_base, "%s:%" PRIu64, st->writer, ++st->claim_seq);
    int64_t now = (int64_t)time(NULL);
    if (rc == MAB_OK) {
        ARGS("EVALSHA");
        ARGS(st->claim_sha);
        ARGP("%zu", n + m);
        for (size_t i = 0; i < n; i++) {
            claim_key(st, claims[i].assignment_id, p, KEY_MAX);
            ARGS(p);
            p += strlen(p) + 1;
        }
        for (size_t e = 0; e < m; e++) {
            totals_key(st, exps[e], p, KEY_MAX);
            ARGS(p);
            p += strlen(p) + 1;
        }
        ARGP("%zu", n);
        ARGP("%zu", m);
        for (size_t i = 0; i < n; i++) {
            const struct doubt_claim *dc = doubt_claim_find(st, claims[i].assignment_id);
            ARGS(dc ? dc->token : tokens_base);
            int64_t left = claims[i].expires_at - now;
            ARGP("%" PRId64, left > 0 ? (left > INT64_MAX / 1000 ? INT64_MAX / 1000 : left) * 1000
                                      : 1);
            ARGP("%zu", claims[i].n_deltas);
            for (size_t d = 0; d < claims[i].n_deltas; d++) {
                const mab_delta *x = &claims[i].deltas[d];
                size_t e = 0;
                while (strcmp(exps[e], x->experiment) != 0)
                    e++;
                ARGP("%zu", e + 1);
                ARGS(x->arm);
                ARGP("%" PRIu64, x->add.pulls);
                ARGP("%" PRIu64, x->add.rewards);
                ARGP("%.17g", x->add.reward_sum);
                ARGP("%.17g", x->add.reward_sum_sq);
            }
        }
    }
#undef ARGS
#undef ARGP
    redisReply *r = NULL;
    if (rc == MAB_OK) {
        r = redisCommandArgv(st->ctx, (int)k, argv, lens);
        if (!r) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE,
                            "no reply to a claim of %zu assignment%s (%s); a retry recognises "
                            "its own claims",
                            n, n == 1 ? "" : "s", io_reason(st, why, sizeof why));
            disconnect(st);
            for (size_t i = 0; i < n; i++)
                if (!doubt_claim_find(st, claims[i].assignment_id))
                    doubt_claim_keep(st, claims[i].assignment_id, tokens_base);
        } else if (r->type == REDIS_REPLY_ERROR) {
            const char *msg = r->str;
            int code = strncmp(msg, "MABRANGE", 8) == 0 ? MAB_ERANGE
                       : strncmp(msg, "MAB", 3) == 0    ? MAB_ECORRUPT
                                                        : MAB_ESTORAGE;
            if (code != MAB_ESTORAGE && strchr(msg, ' '))
                msg = strchr(msg, ' ') + 1;
            rc = store_fail(st, err, code, "claim refused, nothing claimed or written: %s", msg);
            if (strncmp(r->str, "NOSCRIPT", 8) == 0)
                disconnect(st); /* the reconnect loads it again */
        } else if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
            rc = store_fail(st, err, MAB_ESTORAGE, "unexpected reply to a claim");
        } else {
            for (size_t i = 0; i < n; i++) {
                long long v = r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer
                                                                          : 0;
                claims[i].result = v == 1 || v == 2 ? MAB_OK : MAB_ECLAIMED;
            }
            for (size_t i = 0; i < n; i++)
                doubt_claim_forget(st, claims[i].assignment_id);
        }
    }
    if (r)
        freeReplyObject(r);
    free(exps);
    free(argv);
    free(lens);
    free(text);
    return rc;
}

static int redis_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                       mab_error *err)
{
    (void)flags; /* every write waits for the server's reply: nothing to defer */
    redis_store *st = state;
    if (n_claims && !claims)
        return store_fail(st, err, MAB_EINVAL, "claim: NULL claims");
    for (size_t i = 0; i < n_claims; i++) {
        if (!claims[i].assignment_id || (claims[i].n_deltas && !claims[i].deltas))
            return store_fail(st, err, MAB_EINVAL, "claim %zu: NULL id or deltas", i);
        int rc = check_deltas(st, claims[i].deltas, claims[i].n_deltas, err);
        if (rc != MAB_OK)
            return rc;
    }
    if (n_claims == 0)
        return MAB_OK;
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = connect_store(st, err);
    if (rc == MAB_OK)
        rc = claim_once(st, claims, n_claims, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) { /* see redis_apply */
        rc = connect_store(st, err);
        if (rc == MAB_OK)
            rc = claim_once(st, claims, n_claims, err);
    }
    guard_end(&guard);
    return rc;
}

/* ---- open and close --------------------------------------------------------------- */

static void store_free(redis_store *st)
{
    disconnect(st);
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_forget(&st->exps[i]);
        free(st->exps[i].experiment);
    }
    free(st->exps);
    if (st->password) {
        explicit_bzero(st->password, strlen(st->password));
        free(st->password);
    }
    free(st);
}

/* Remove this process's batch numbers (a courtesy to the store's size:
   failures are ignored). Not where a call is in doubt: a lost call may
   still run late on the server, and its number is what stops it. */
static void forget_writer(redis_store *st)
{
    if (!st->ctx || st->batch_seq == 0)
        return;
    size_t sent = 0;
    for (size_t i = 0; i < st->n_exps; i++) {
        if (st->exps[i].doubt_seq)
            continue;
        char wkey[KEY_MAX];
        writers_key(st, st->exps[i].experiment, wkey, sizeof wkey);
        redisAppendCommand(st->ctx, "HDEL %s %s", wkey, st->writer);
        sent++;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r)
            break;
        freeReplyObject(r);
    }
}

static void redis_close(void *state)
{
    redis_store *st = state;
    if (!st)
        return;
    pipe_guard guard;
    guard_begin(&guard);
    forget_writer(st);
    disconnect(st);
    guard_end(&guard);
    store_free(st);
}

/* The password: the file's first line, without its line ending. */
static int read_password(redis_store *st, mab_params *params, mab_error *err)
{
    if (!mab_params_has(params, "password_file"))
        return MAB_OK;
    char path[4096];
    int rc = mab_params_path(params, "password_file", NULL, path, sizeof path);
    if (rc != MAB_OK)
        return rc;
    FILE *f = fopen(path, "r");
    if (!f)
        return mab_params_fail(params, "password_file", "cannot read %s: %s", path,
                               strerror(errno));
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    int bad = ferror(f);
    fclose(f);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (bad || !line[0]) {
        explicit_bzero(line, sizeof line);
        return mab_params_fail(params, "password_file", "%s %s", path,
                               bad ? "cannot be read" : "is empty");
    }
    st->password = strdup(line);
    explicit_bzero(line, sizeof line);
    (void)err;
    return st->password ? MAB_OK : MAB_ENOMEM;
}

/*
 * url: "redis://[USER@]HOST[:PORT][/DB]" (HOST may be [IPv6]) or
 * "unix:/PATH[?db=DB]". A password in the url is refused: it belongs in
 * password_file, so that it is in no config file and in no message.
 */
static int parse_url(redis_store *st, mab_params *params, const char *url)
{
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2;
        const char *query = strchr(path, '?');
        size_t len = query ? (size_t)(query - path) : strlen(path);
        if (path[0] != '/' || len >= sizeof st->unix_path)
            return mab_params_fail(params, "url",
                                   "\"unix:PATH\" needs an absolute socket path "
                                   "(e.g. \"unix:/run/redis/redis.sock\")");
        memcpy(st->unix_path, path, len);
        st->unix_path[len] = '\0';
        if (query) {
            char *end;
            if (strncmp(query, "?db=", 4) != 0 ||
                (st->db = (int)strtol(query + 4, &end, 10), *end) || st->db < 0)
                return mab_params_fail(params, "url", "after the socket path only \"?db=N\" "
                                                      "is understood");
        }
        snprintf(st->where, sizeof st->where, "Redis at unix:%s (db %d)", st->unix_path, st->db);
        return MAB_OK;
    }
    if (strncmp(url, "rediss://", 9) == 0)
        return mab_params_fail(params, "url",
                               "TLS (rediss://) is not supported: Debian's hiredis 0.14 has no "
                               "TLS; reach the server through a local TLS tunnel (e.g. stunnel) "
                               "and use redis:// to it");
    if (strncmp(url, "redis://", 8) != 0)
        return mab_params_fail(params, "url",
                               "expected \"redis://HOST[:PORT][/DB]\" or \"unix:/PATH\"");
    const char *rest = url + 8;
    const char *at = strchr(rest, '@');
    const char *slash = strchr(rest, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon)
            return mab_params_fail(params, "url",
                                   "must not hold a password (it would be in the config and "
                                   "in messages): put it in a file named by password_file");
        if ((size_t)(at - rest) >= sizeof st->username)
            return mab_params_fail(params, "url", "the user name is too long");
        memcpy(st->username, rest, (size_t)(at - rest));
        st->username[at - rest] = '\0';
        rest = at + 1;
    }
    const char *host = rest, *host_end;
    if (*host == '[') {
        host_end = strchr(host, ']');
        if (!host_end)
            return mab_params_fail(params, "url", "an IPv6 address needs its closing ']'");
        host++;
        rest = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":/");
        rest = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof st->host)
        return mab_params_fail(params, "url", "names no host (e.g. \"redis://127.0.0.1:6379\")");
    memcpy(st->host, host, hlen);
    st->host[hlen] = '\0';
    st->port = DEFAULT_PORT;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return mab_params_fail(params, "url", "the port must be a number from 1 to 65535");
        st->port = (int)port;
        rest = end;
    }
    if (*rest == '/' && rest[1]) {
        char *end;
        long db = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || *end || db < 0 || db > INT_MAX)
            return mab_params_fail(params, "url", "the database must be a number (\"/0\")");
        st->db = (int)db;
    } else if (*rest && strcmp(rest, "/") != 0) {
        return mab_params_fail(params, "url", "unexpected \"%s\" after the host", rest);
    }
    int v6 = strchr(st->host, ':') != NULL;
    snprintf(st->where, sizeof st->where, "Redis at %s%s%s:%d (db %d)", v6 ? "[" : "", st->host,
             v6 ? "]" : "", st->port, st->db);
    return MAB_OK;
}

static int read_params(redis_store *st, mab_params *params, mab_error *err)
{
    const char *url, *prefix;
    int64_t timeout_ms;
    int rc;
    if ((rc = mab_params_string(params, "url", "redis://127.0.0.1:6379/0", &url)) != MAB_OK ||
        (rc = parse_url(st, params, url)) != MAB_OK ||
        (rc = mab_params_string(params, "prefix", "mab:", &prefix)) != MAB_OK ||
        (rc = mab_params_int(params, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 600000,
                             &timeout_ms)) != MAB_OK ||
        (rc = read_password(st, params, err)) != MAB_OK)
        return rc;
    if (strlen(prefix) > PREFIX_MAX || strpbrk(prefix, "{}"))
        return mab_params_fail(params, "prefix",
                               "\"%s\": at most %d characters, without '{' or '}' (the braces "
                               "mark the experiment)",
                               prefix, PREFIX_MAX);
    snprintf(st->prefix, sizeof st->prefix, "%s", prefix);
    st->timeout.tv_sec = (time_t)(timeout_ms / 1000);
    st->timeout.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
    return MAB_OK;
}

static int redis_open(mab_params *params, void **state, mab_error *err)
{
    redis_store *st = calloc(1, sizeof *st);
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "redis: out of memory");
    snprintf(st->where, sizeof st->where, "Redis");
    int rc = read_params(st, params, err);
    if (rc == MAB_ENOMEM)
        mab_error_set(err, rc, "redis: out of memory");
    else if (rc != MAB_OK)
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
    uint64_t id;
    if (rc == MAB_OK && getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot draw a writer id: %s", strerror(errno));
    if (rc == MAB_OK) {
        snprintf(st->writer, sizeof st->writer, "%016" PRIx64, id);
        pipe_guard guard;
        guard_begin(&guard);
        rc = connect_store(st, err);
        guard_end(&guard);
    }
    if (rc != MAB_OK) {
        store_free(st);
        return rc;
    }
    *state = st;
    return MAB_OK;
}

static const mab_storage redis_storage = {
    MAB_STORAGE_HEADER,
    "redis",
    "one Redis server shared by many machines (a Lua script per experiment and batch, "
    "exactly once across lost replies)",
    redis_open,
    redis_load,
    redis_apply,
    redis_reset,
    redis_close,
    1000, /* refresh_ms: other machines add to the same hashes */
    redis_scan,
    redis_replace,
    NULL, /* check: open() already connects, authenticates and loads the scripts */
    NULL, /* open_read_only: a Redis server has no lock to avoid */
    redis_claim,
    NULL, NULL, NULL, /* policy statistics (ABI 1.4): not yet; an ABI 2 policy that keeps
                         statistics is refused at open over this store */
    NULL, NULL, NULL, /* ABI 1.5 time buckets: not stored yet */
};

MAB_STORAGE_DEFINE(redis_storage)
