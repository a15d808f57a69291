/*
 * adapter.c - the request hooks of adapter.h: sticky choice through the
 * signed cookie (cookie.c), rewards counted once per assignment (a claim in
 * storage, engine_access.h; replay.c caches refusals, and is the only guard
 * when the storage has no claims),
 * the redirect guard (redirect.c), Set-Cookie and X-MAB-Debug lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cookie.h"
#include "counters.h"
#include "engine_access.h"
#include "mab/adapter.h"
#include "redirect.h"
#include "replay.h"
#include "web_config.h"

_Static_assert(MAB__COOKIE_ID_MAX == MAB__ID_MAX, "cookie ids are config ids");
_Static_assert(MAB__KEY_BYTES == crypto_auth_hmacsha256_KEYBYTES, "HMAC-SHA-256 key size");
_Static_assert(MAB__ASSIGNMENT_ID_BYTES == MAB_ASSIGNMENT_ID_BYTES, "claims take cookie ids");

#define KEY_FILE_MAX 65536
/* Rewarded ids remembered in memory before the oldest are forgotten. */
#define REPLAY_CAPACITY (1u << 20)

/*
 * Assignment ids come from a per-thread pool of random bytes refilled by one
 * randombytes_buf call (a getrandom system call, slow on some VMs) every
 * ID_POOL_IDS ids. A child of fork() refills before its first id, so a
 * parent and its children never hand out the same id.
 */
#define ID_POOL_IDS 32
static _Thread_local struct {
    uint8_t bytes[ID_POOL_IDS * MAB__ASSIGNMENT_ID_BYTES];
    size_t used;
    unsigned generation;
    int filled;
} id_pool;

static void new_assignment_id(uint8_t out[MAB__ASSIGNMENT_ID_BYTES])
{
    unsigned generation = mab__fork_generation();
    if (!id_pool.filled || id_pool.generation != generation ||
        id_pool.used + MAB__ASSIGNMENT_ID_BYTES > sizeof id_pool.bytes) {
        randombytes_buf(id_pool.bytes, sizeof id_pool.bytes);
        id_pool.used = 0;
        id_pool.generation = generation;
        id_pool.filled = 1;
    }
    memcpy(out, id_pool.bytes + id_pool.used, MAB__ASSIGNMENT_ID_BYTES);
    sodium_memzero(id_pool.bytes + id_pool.used, MAB__ASSIGNMENT_ID_BYTES);
    id_pool.used += MAB__ASSIGNMENT_ID_BYTES;
}

struct mab_adapter {
    mab_engine *engine;
    const mab__web_config *web; /* owned by the engine */
    mab__mac_key keys[MAB__KEYS_MAX]; /* keyed HMAC states: the first signs */
    size_t n_keys;
    mab__replay_set *replay;
    size_t cookie_binary_max; /* from the attributes: the line stays within 4096 bytes */
    mab__counters counters; /* per thread (counters.h) */
};

/* One cookie entry and what this request did with it. */
typedef struct request_entry {
    mab__cookie_entry cookie;
    int expired;     /* older than max_age: not sent back, reported as such */
    unsigned chosen; /* order of mab_request_choose() calls (1, 2, ...), 0 if none */
} request_entry;

typedef enum cookie_state { COOKIE_NONE, COOKIE_VALID, COOKIE_INVALID } cookie_state;

struct mab_request {
    mab_adapter *adapter;
    int64_t now;        /* unix seconds, of now_ns */
    int64_t now_ns;     /* the engine's clock when the request began */
    const char **feature_names; /* mab_request_set_features(): copies, one block */
    double *feature_values;
    size_t n_features;
    cookie_state state;
    request_entry entries[MAB__COOKIE_ENTRIES_MAX];
    size_t n_entries;
    unsigned n_chosen;
    int any_new;     /* a new assignment was made */
    int changed;     /* the cookie must be sent again */
    int text_fresh;  /* text holds the encoding of the current entries */
    char text[MAB__COOKIE_TEXT_MAX + 1];
    char line[MAB__COOKIE_LINE_MAX + 1]; /* the Set-Cookie value (cookie_limit bounds it) */
    char *set_cookie; /* only if a line ever outgrew `line` */
    char *debug;
    char *location;  /* copy of the last redirect target (mab_redirect.location) */
};

/* ---- keys ----------------------------------------------------------- */

int mab_adapter_keygen(const char *path, mab_error *err)
{
    if (!path)
        return mab_error_set(err, MAB_EINVAL, "keygen: no file name");
    if (sodium_init() < 0)
        return mab_error_set(err, MAB_ENOMEM, "libsodium failed to initialise");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return mab_error_set(err, MAB_EIO, "%s: cannot create key file: %s%s", path,
                             strerror(errno),
                             errno == EEXIST ? " (refusing to overwrite a key)" : "");
    uint8_t key[MAB__KEY_BYTES];
    randombytes_buf(key, sizeof key);
    char text[sodium_base64_ENCODED_LEN(MAB__KEY_BYTES, sodium_base64_VARIANT_ORIGINAL) + 1];
    sodium_bin2base64(text, sizeof text, key, sizeof key, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(key, sizeof key);
    size_t len = strlen(text);
    text[len++] = '\n';
    /* fchmod: the umask may have narrowed 0600, never widened it, but be exact. */
    int ok = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    sodium_memzero(text, sizeof text);
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(path);
        return mab_error_set(err, MAB_EIO, "%s: cannot write key file: %s", path,
                             strerror(saved));
    }
    return MAB_OK;
}

/* Read every key of the key file (format: adapter.h, mab_adapter_keygen). */
static int read_keys(const char *path, uint8_t (*keys)[MAB__KEY_BYTES], size_t *n_keys,
                     mab_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mab_error_set(err, MAB_EIO, "%s: cannot open secret_file: %s", path,
                             strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mab_error_set(err, MAB_ECONFIG, "%s: secret_file is not a regular file", path);
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        close(fd);
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: secret_file is readable or writable by others (chmod 600 it)",
                             path);
    }
    char *text = malloc(KEY_FILE_MAX + 1);
    if (!text) {
        close(fd);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    size_t len = 0;
    ssize_t got;
    while (len < KEY_FILE_MAX && (got = read(fd, text + len, KEY_FILE_MAX - len)) > 0)
        len += (size_t)got;
    close(fd);
    text[len] = '\0';
    int rc = MAB_OK;
    size_t n = 0, line_no = 0;
    for (char *line = text, *next; rc == MAB_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line_no++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
            line[--l] = '\0';
        while (*line == ' ' || *line == '\t')
            line++, l--;
        if (l == 0 || line[0] == '#')
            continue;
        size_t key_len = 0;
        if (n == MAB__KEYS_MAX)
            rc = mab_error_set(err, MAB_ECONFIG, "%s: line %zu: more than %d keys", path,
                               line_no, MAB__KEYS_MAX);
        else if (sodium_base642bin(keys[n], MAB__KEY_BYTES, line, l, NULL, &key_len, NULL,
                                   sodium_base64_VARIANT_ORIGINAL) != 0 ||
                 key_len != MAB__KEY_BYTES)
            rc = mab_error_set(err, MAB_ECONFIG,
                               "%s: line %zu: expected a base64 key of %d bytes (create one "
                               "with `mab keygen FILE`)",
                               path, line_no, MAB__KEY_BYTES);
        else
            n++;
    }
    sodium_memzero(text, len);
    free(text);
    if (rc == MAB_OK && n == 0)
        rc = mab_error_set(err, MAB_ECONFIG, "%s: secret_file holds no key", path);
    *n_keys = rc == MAB_OK ? n : 0;
    return rc;
}

/* ---- the cookie's size ------------------------------------------------ */

/* The Set-Cookie value for cookie text `text` (format: mab_request_set_cookie). */
static char *format_set_cookie(const mab__web_config *web, const char *text)
{
    /* The domain is not bounded by the config: never truncate it. */
    return mab__asprintf("%s=%s; Path=%s%s%s; Max-Age=%lld%s%s; SameSite=%s", web->cookie_name,
                         text, web->cookie_path, web->cookie_domain ? "; Domain=" : "",
                         web->cookie_domain ? web->cookie_domain : "", (long long)web->max_age,
                         web->secure ? "; Secure" : "", web->http_only ? "; HttpOnly" : "",
                         web->same_site);
}

/* snprintf(dst, cap, "%s", id) without printf's ~600 instructions. */
static void copy_id(char *dst, size_t cap, const char *id)
{
    size_t n = strnlen(id, cap - 1);
    memcpy(dst, id, n);
    dst[n] = '\0';
}

/* Append s[0..n) at *p when it fits before end. */
static int put_text(char **p, const char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n)
        return 0;
    memcpy(*p, s, n);
    *p += n;
    return 1;
}

#define PUT_LITERAL(p, end, lit) put_text(p, end, lit, sizeof lit - 1)
#define PUT_STRING(p, end, s) put_text(p, end, s, strlen(s))

/* format_set_cookie() into out[0..cap) without printf or an allocation
   (it ran on every new visitor: ~4,000 instructions). Returns the length,
   or 0 when it does not fit. */
static size_t put_set_cookie(char *out, size_t cap, const mab__web_config *web, const char *text)
{
    char age[24], *a = age + sizeof age;
    uint64_t v = web->max_age < 0 ? 0 - (uint64_t)web->max_age : (uint64_t)web->max_age;
    do
        *--a = (char)('0' + v % 10);
    while (v /= 10);
    if (web->max_age < 0)
        *--a = '-';
    char *p = out, *end = out + cap - 1;
    int ok = PUT_STRING(&p, end, web->cookie_name) && PUT_LITERAL(&p, end, "=") &&
             PUT_STRING(&p, end, text) && PUT_LITERAL(&p, end, "; Path=") &&
             PUT_STRING(&p, end, web->cookie_path) &&
             (!web->cookie_domain || (PUT_LITERAL(&p, end, "; Domain=") &&
                                      PUT_STRING(&p, end, web->cookie_domain))) &&
             PUT_LITERAL(&p, end, "; Max-Age=") &&
             put_text(&p, end, a, (size_t)(age + sizeof age - a)) &&
             (!web->secure || PUT_LITERAL(&p, end, "; Secure")) &&
             (!web->http_only || PUT_LITERAL(&p, end, "; HttpOnly")) &&
             PUT_LITERAL(&p, end, "; SameSite=") && PUT_STRING(&p, end, web->same_site);
    if (!ok)
        return 0;
    *p = '\0';
    return (size_t)(p - out);
}

static size_t base64_chars(size_t binary)
{
    return sodium_base64_encoded_len(binary, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1;
}

typedef struct cookie_share {
    const char *id;
    size_t bytes;
} cookie_share;

static int by_bytes_desc(const void *a, const void *b)
{
    size_t x = ((const cookie_share *)a)->bytes, y = ((const cookie_share *)b)->bytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * The largest binary cookie whose Set-Cookie line (name, value, attributes)
 * stays within the browsers' 4096 bytes, and the refusal of a config whose
 * worst-case cookie would not: one entry for each of the (at most
 * MAB__COOKIE_ENTRIES_MAX) experiments taking the most bytes, each with its
 * longest arm id and all its features.
 */
static int cookie_limit(mab_engine *engine, size_t *binary_max, mab_error *err)
{
    const mab__web_config *web = mab__engine_web_config(engine);
    char *empty = format_set_cookie(web, "");
    if (!empty)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t attributes = strlen(empty);
    free(empty);
    size_t max = 0;
    while (max < MAB__COOKIE_BINARY_MAX &&
           attributes + base64_chars(max + 1) <= MAB__COOKIE_LINE_MAX)
        max++;
    *binary_max = max;
    size_t n = mab_experiment_count(engine);
    cookie_share *shares = calloc(n ? n : 1, sizeof *shares);
    if (!shares)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t longest_arm = 0, n_features = 0;
        mab__engine_cookie_shape(engine, i, &shares[i].id, &longest_arm, &n_features);
        shares[i].bytes = mab__cookie_entry_bytes(strlen(shares[i].id), longest_arm, n_features);
    }
    qsort(shares, n, sizeof *shares, by_bytes_desc);
    size_t worst = mab__cookie_overhead(), in_cookie = n < MAB__COOKIE_ENTRIES_MAX ? n
                                                       : MAB__COOKIE_ENTRIES_MAX;
    for (size_t i = 0; i < in_cookie; i++)
        worst += shares[i].bytes;
    int rc = MAB_OK;
    if (worst > max) {
        /* Name the experiments, largest first, as many as the message holds. */
        const char *path = mab__engine_config_path(engine);
        char names[MAB_ERROR_MAX] = "";
        size_t len = 0, named = 0;
        size_t budget = MAB_ERROR_MAX - 260 - (strlen(path) < 200 ? strlen(path) : 200);
        for (; named < in_cookie; named++) {
            char one[MAB__COOKIE_ID_MAX + 40];
            int w = snprintf(one, sizeof one, "%s%s (%zu bytes)", named ? ", " : "",
                             shares[named].id, shares[named].bytes);
            if (len + (size_t)w >= budget)
                break;
            memcpy(names + len, one, (size_t)w + 1);
            len += (size_t)w;
        }
        char more[40] = "";
        if (named < in_cookie)
            snprintf(more, sizeof more, " and %zu more", in_cookie - named);
        rc = mab_error_set(err, MAB_ECONFIG,
                           "%s: the visitor cookie could reach %zu bytes (name, value and "
                           "attributes; browsers keep %d) with entries for %zu experiments: "
                           "%s%s; shorten their ids or arm ids, or name fewer policy "
                           "\"features\"",
                           path, attributes + base64_chars(worst), MAB__COOKIE_LINE_MAX,
                           in_cookie, names, more);
    }
    free(shares);
    return rc;
}

/* ---- adapter ---------------------------------------------------------- */

static int load_settings(mab_engine *engine, uint8_t (*keys)[MAB__KEY_BYTES], size_t *n_keys,
                         size_t *binary_max, mab_error *err)
{
    if (!engine)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter: engine is NULL");
    const mab__web_config *web = mab__engine_web_config(engine);
    if (!web->secret_file)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: secret_file: required by the adapter (cookies are signed); "
                             "create one with `mab keygen FILE`",
                             mab__engine_config_path(engine));
    int rc = cookie_limit(engine, binary_max, err);
    if (rc != MAB_OK)
        return rc;
    return read_keys(web->secret_file, keys, n_keys, err);
}

/* The keys of a key file, read once (by a privileged process) and handed
   to adapters opened later (by unprivileged ones): mab_adapter_keys_read. */
struct mab_adapter_keys {
    uint8_t keys[MAB__KEYS_MAX][MAB__KEY_BYTES];
    size_t n_keys;
};

int mab_adapter_keys_read(mab_engine *engine, mab_adapter_keys **out, mab_error *err)
{
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter_keys_read: out is NULL");
    if (sodium_init() < 0)
        return mab_error_set(err, MAB_ENOMEM, "libsodium failed to initialise");
    mab_adapter_keys *k = calloc(1, sizeof *k);
    if (!k)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t binary_max;
    int rc = load_settings(engine, k->keys, &k->n_keys, &binary_max, err);
    if (rc != MAB_OK) {
        mab_adapter_keys_free(k);
        return rc;
    }
    *out = k;
    return MAB_OK;
}

void mab_adapter_keys_free(mab_adapter_keys *keys)
{
    if (!keys)
        return;
    sodium_memzero(keys, sizeof *keys);
    free(keys);
}

static int open_adapter(mab_engine *engine, const mab_adapter_keys *given, mab_adapter **out,
                        mab_error *err)
{
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter_open: out is NULL");
    if (!engine)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter: engine is NULL");
    if (sodium_init() < 0)
        return mab_error_set(err, MAB_ENOMEM, "libsodium failed to initialise");
    mab_adapter *ad = calloc(1, sizeof *ad);
    if (!ad)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    mab__counters_init(&ad->counters);
    uint8_t keys[MAB__KEYS_MAX][MAB__KEY_BYTES];
    int rc = MAB_OK;
    if (given) {
        memcpy(keys, given->keys, sizeof keys);
        ad->n_keys = given->n_keys;
        rc = cookie_limit(engine, &ad->cookie_binary_max, err);
    } else {
        rc = load_settings(engine, keys, &ad->n_keys, &ad->cookie_binary_max, err);
    }
    for (size_t k = 0; rc == MAB_OK && k < ad->n_keys; k++)
        mab__mac_key_init(&ad->keys[k], keys[k]);
    sodium_memzero(keys, sizeof keys);
    if (rc == MAB_OK && !(ad->replay = mab__replay_create(REPLAY_CAPACITY)))
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (rc != MAB_OK) {
        mab_adapter_close(ad);
        return rc;
    }
    ad->engine = engine;
    ad->web = mab__engine_web_config(engine);
    *out = ad;
    return MAB_OK;
}

int mab_adapter_open(mab_engine *engine, mab_adapter **out, mab_error *err)
{
    return open_adapter(engine, NULL, out, err);
}

int mab_adapter_open_with_keys(mab_engine *engine, const mab_adapter_keys *keys,
                               mab_adapter **out, mab_error *err)
{
    if (!keys || keys->n_keys == 0)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter_open_with_keys: no keys");
    return open_adapter(engine, keys, out, err);
}

int mab_adapter_reload(mab_adapter *ad, mab_engine *engine, mab_error *err)
{
    if (!ad)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter_reload: adapter is NULL");
    uint8_t keys[MAB__KEYS_MAX][MAB__KEY_BYTES];
    size_t n_keys, binary_max;
    int rc = load_settings(engine, keys, &n_keys, &binary_max, err);
    if (rc == MAB_OK) {
        ad->cookie_binary_max = binary_max;
        for (size_t k = 0; k < n_keys; k++)
            mab__mac_key_init(&ad->keys[k], keys[k]);
        sodium_memzero(&ad->keys[n_keys], (MAB__KEYS_MAX - n_keys) * sizeof ad->keys[0]);
        ad->n_keys = n_keys;
        ad->engine = engine;
        ad->web = mab__engine_web_config(engine);
    }
    sodium_memzero(keys, sizeof keys);
    return rc;
}

void mab_adapter_close(mab_adapter *ad)
{
    if (!ad)
        return;
    mab__replay_free(ad->replay);
    sodium_memzero(ad->keys, sizeof ad->keys);
    mab__counters_destroy(&ad->counters);
    free(ad);
}

mab_engine *mab_adapter_engine(const mab_adapter *ad)
{
    return ad ? ad->engine : NULL;
}

/* Copy what the caller's struct_size holds (a caller built with an older
   header has a shorter struct; mab.h, "Structs that grow"). */
static void fill_sized(void *out, const void *full, size_t full_size)
{
    size_t want = *(const size_t *)out;
    memcpy(out, full, want < full_size ? want : full_size);
}

static int size_error(mab_error *err, const char *type, const void *out, size_t need)
{
    if (!out)
        return mab_error_set(err, MAB_EINVAL, "%s is NULL", type);
    return mab_error_set(err, MAB_EINVAL, "%s.struct_size is %zu, need at least %zu", type,
                         *(const size_t *)out, need);
}

int mab_adapter_get_counters(const mab_adapter *ad, mab_adapter_counters *out)
{
    if (!ad || !out || out->struct_size < MAB_ADAPTER_COUNTERS_SIZE_0_1)
        return size_error(NULL, "mab_adapter_counters", out, MAB_ADAPTER_COUNTERS_SIZE_0_1);
    uint64_t v[MAB__CTR_COUNT];
    /* The sum takes the counters' mutex: not a change of the adapter. */
    mab__counters_sum((mab__counters *)&ad->counters, v);
    mab_adapter_counters c = {
        out->struct_size,
        v[MAB__CTR_COOKIES_FORGED],
        v[MAB__CTR_COOKIES_EXPIRED],
        v[MAB__CTR_ASSIGNMENTS],
        v[MAB__CTR_REWARDS_COUNTED],
        v[MAB__CTR_REWARDS_REFUSED],
        v[MAB__CTR_REPLAYS_REFUSED],
        v[MAB__CTR_REPLAY_EVICTIONS],
        v[MAB__CTR_REDIRECTS_REFUSED],
    };
    fill_sized(out, &c, sizeof c);
    return MAB_OK;
}

const char *mab_reward_reason_name(mab_reward_reason reason)
{
    switch (reason) {
    case MAB_REWARD_COUNTED: return "counted";
    case MAB_REWARD_NO_COOKIE: return "no_cookie";
    case MAB_REWARD_INVALID_COOKIE: return "invalid_cookie";
    case MAB_REWARD_NO_ASSIGNMENT: return "no_assignment";
    case MAB_REWARD_ALREADY_REWARDED: return "already_rewarded";
    case MAB_REWARD_PAUSED: return "paused";
    case MAB_REWARD_LATE: return "late";
    case MAB_REWARD_HOLDOUT_REMOVED: return "holdout_removed";
    case MAB_REWARD_REPLAYED: return "replayed";
    case MAB_REWARD_ARM_REMOVED: return "arm_removed";
    case MAB_REWARD_EXPIRED: return "expired";
    }
    return "unknown";
}

int mab_adapter_check_redirect(const mab_adapter *ad, const char *target, mab_error *err)
{
    if (!ad)
        return mab_error_set(err, MAB_EINVAL, "mab_adapter_check_redirect: adapter is NULL");
    const char *why = "";
    if (mab__redirect_check(target, ad->web->redirect_allow, ad->web->n_redirect_allow, &why))
        return MAB_OK;
    return mab_error_set(err, MAB_EINVAL, "redirect refused: %s", why);
}

/* ---- reading the cookie ----------------------------------------------- */

/* Try one cookie value; on success the request holds its entries. */
static int take_cookie(mab_request *rq, const char *value, size_t len)
{
    mab__cookie_entry entries[MAB__COOKIE_ENTRIES_MAX];
    size_t n;
    const mab_adapter *ad = rq->adapter;
    if (!mab__cookie_decode(value, len, ad->keys, ad->n_keys,
                            entries, &n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        request_entry *re = &rq->entries[i];
        re->cookie = entries[i];
        re->chosen = 0;
        re->expired = (int64_t)entries[i].issued + ad->web->max_age <= rq->now;
        if (re->expired)
            mab__counters_add(&rq->adapter->counters, MAB__CTR_COOKIES_EXPIRED, 1);
    }
    rq->n_entries = n;
    return 1;
}

/* Find the configured cookie in a Cookie header: "a=1; mab=...; b=2". */
static void read_cookie_header(mab_request *rq, const char *header)
{
    const char *name = rq->adapter->web->cookie_name;
    size_t name_len = strlen(name);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = p + strcspn(p, ";");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq && (size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *value = eq + 1;
            size_t len = (size_t)(end - value);
            while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
                len--;
            if (len >= 2 && value[0] == '"' && value[len - 1] == '"')
                value++, len -= 2;
            if (take_cookie(rq, value, len)) {
                rq->state = COOKIE_VALID;
                return;
            }
            rq->state = COOKIE_INVALID;
        }
        p = end;
    }
}

/* ---- a request per thread, reused ------------------------------------

   A request is ~28 KB (the entries and both cookie buffers at their limits);
   a host begins and ends one per HTTP request. mab_request_end() keeps the
   ended request of each thread (one: a thread with several requests open
   at once allocates the others) and mab_request_begin() takes it back, so
   the common case allocates nothing. Everything a request reads is set by
   mab_request_begin() before it is read (its scalars; entries[] up to
   n_entries; text only once text_fresh; line only once written), so a
   reused request carries nothing of the previous one. A thread's kept
   request is freed when the thread exits, and every thread's slot is let go
   when the library is unloaded (the requests still kept then are not
   freed: at most one per thread, and only at unload). */

static pthread_key_t request_key;
static int request_key_ok; /* 0: no per-thread reuse (the key could not be had) */
static pthread_once_t request_once = PTHREAD_ONCE_INIT;

static void request_key_init(void)
{
    request_key_ok = pthread_key_create(&request_key, free) == 0;
}

__attribute__((destructor)) static void request_key_unload(void)
{
    if (request_key_ok) {
        free(pthread_getspecific(request_key));
        pthread_key_delete(request_key);
        request_key_ok = 0;
    }
}

/* This thread's kept request, taken out of its slot, or a new one; NULL when
   out of memory. */
static mab_request *request_take(void)
{
    pthread_once(&request_once, request_key_init);
    if (request_key_ok) {
        mab_request *rq = pthread_getspecific(request_key);
        if (rq) {
            pthread_setspecific(request_key, NULL);
            return rq;
        }
    }
    return malloc(sizeof(mab_request));
}

/* Keep rq (its own allocations already freed) in this thread's slot, or
   free it if the slot holds one. */
static void request_keep(mab_request *rq)
{
    if (request_key_ok && !pthread_getspecific(request_key) &&
        pthread_setspecific(request_key, rq) == 0)
        return;
    free(rq);
}

int mab_request_begin(mab_adapter *ad, const char *cookie_header, const char *token,
                      mab_request **out, mab_error *err)
{
    if (!ad || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_request_begin: adapter and out must be set");
    mab_request *rq = request_take();
    if (!rq)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    rq->adapter = ad;
    rq->now_ns = mab__engine_time_ns(ad->engine);
    rq->now = rq->now_ns >= 0 ? rq->now_ns / 1000000000 : -((-rq->now_ns + 999999999) / 1000000000);
    rq->feature_names = NULL;
    rq->feature_values = NULL;
    rq->n_features = 0;
    rq->state = COOKIE_NONE;
    rq->n_entries = 0;
    rq->n_chosen = 0;
    rq->any_new = 0;
    rq->changed = 0;
    rq->text_fresh = 0;
    rq->set_cookie = NULL;
    rq->debug = NULL;
    rq->location = NULL;
    if (token && *token) {
        rq->state = take_cookie(rq, token, strlen(token)) ? COOKIE_VALID : COOKIE_INVALID;
    } else if (cookie_header) {
        read_cookie_header(rq, cookie_header);
    }
    if (rq->state == COOKIE_INVALID)
        mab__counters_add(&ad->counters, MAB__CTR_COOKIES_FORGED, 1);
    *out = rq;
    return MAB_OK;
}

void mab_request_end(mab_request *rq)
{
    if (!rq)
        return;
    free(rq->set_cookie);
    free(rq->debug);
    free(rq->location);
    free(rq->feature_names);
    request_keep(rq);
}

int mab_request_set_features(mab_request *rq, const char *const *names, const double *values,
                             size_t n, mab_error *err)
{
    if (!rq || (n && (!names || !values)))
        return mab_error_set(err, MAB_EINVAL, "mab_request_set_features: NULL argument");
    if (n > MAB_REQUEST_FEATURES_MAX)
        return mab_error_set(err, MAB_EINVAL, "mab_request_set_features: %zu features, at most %d",
                             n, MAB_REQUEST_FEATURES_MAX);
    size_t bytes = n * (sizeof(char *) + sizeof(double));
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            return mab_error_set(err, MAB_EINVAL, "mab_request_set_features: name %zu is NULL", i);
        bytes += strlen(names[i]) + 1;
    }
    /* One block: the name pointers, the values, then the names' text. */
    char *block = n ? malloc(bytes) : NULL;
    if (n && !block)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    const char **copied_names = (const char **)(void *)block;
    double *copied_values = n ? (double *)(void *)(block + n * sizeof(char *)) : NULL;
    char *text = block + n * (sizeof(char *) + sizeof(double));
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(text, names[i], len);
        copied_names[i] = text;
        text += len;
        /* Not a finite number: the feature is missing (NAN), as documented. */
        copied_values[i] = isfinite(values[i]) ? values[i] : NAN;
    }
    free(rq->feature_names);
    rq->feature_names = copied_names;
    rq->feature_values = copied_values;
    rq->n_features = n;
    return MAB_OK;
}

/* ---- entries ---------------------------------------------------------- */

static request_entry *find_entry(mab_request *rq, const char *experiment)
{
    for (size_t i = 0; i < rq->n_entries; i++)
        if (strcmp(rq->entries[i].cookie.experiment, experiment) == 0)
            return &rq->entries[i];
    return NULL;
}

static void mark_changed(mab_request *rq)
{
    rq->changed = 1;
    rq->text_fresh = 0;
}

static size_t live_size(const mab_request *rq, size_t *n_live)
{
    size_t size = 2 + crypto_auth_hmacsha256_BYTES, n = 0;
    for (size_t i = 0; i < rq->n_entries; i++)
        if (!rq->entries[i].expired) {
            size += mab__cookie_entry_size(&rq->entries[i].cookie);
            n++;
        }
    *n_live = n;
    return size;
}

/* Drop one entry to make room: an expired one, else the oldest not chosen
   in this request, else the oldest. */
static void drop_one(mab_request *rq)
{
    size_t victim = 0;
    int best_rank = 3;
    for (size_t i = 0; i < rq->n_entries; i++) {
        const request_entry *e = &rq->entries[i];
        int rank = e->expired ? 0 : e->chosen ? 2 : 1;
        if (rank < best_rank ||
            (rank == best_rank && e->cookie.issued < rq->entries[victim].cookie.issued)) {
            victim = i;
            best_rank = rank;
        }
    }
    rq->entries[victim] = rq->entries[--rq->n_entries];
}

/* A slot for a new entry of `experiment`, replacing its old entry (stale,
   expired or of a removed arm) and making room when the cookie is full. */
static request_entry *slot_for(mab_request *rq, const char *experiment,
                               const mab__cookie_entry *incoming)
{
    request_entry *old = find_entry(rq, experiment);
    if (old)
        *old = rq->entries[--rq->n_entries];
    size_t n_live;
    while (rq->n_entries == MAB__COOKIE_ENTRIES_MAX ||
           live_size(rq, &n_live) + mab__cookie_entry_size(incoming) >
               rq->adapter->cookie_binary_max)
        drop_one(rq);
    return &rq->entries[rq->n_entries++];
}

/* ---- choose ----------------------------------------------------------- */

/* Whether the experiment has a holdout now: a cookie entry made in a holdout
   that a reload removed belongs to no group any more. */
static int has_holdout(mab_engine *engine, const char *experiment)
{
    mab_rules_info rules = MAB_STRUCT_INIT(mab_rules_info);
    return mab_rules(engine, experiment, &rules, NULL) == MAB_OK && rules.holdout_share > 0;
}

static void record_chosen(mab_request *rq, request_entry *e)
{
    if (!e->chosen)
        e->chosen = ++rq->n_chosen;
}

int mab_request_choose(mab_request *rq, const char *experiment, mab_assignment *out,
                       mab_error *err)
{
    if (!rq || !experiment || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_request_choose: NULL argument");
    if (out->struct_size < MAB_ASSIGNMENT_SIZE_0_1)
        return size_error(err, "mab_assignment", out, MAB_ASSIGNMENT_SIZE_0_1);
    mab_engine *engine = rq->adapter->engine;
    mab_choice choice = MAB_STRUCT_INIT(mab_choice);
    request_entry *e = find_entry(rq, experiment);
    int keep = e && !e->expired &&
               mab_arm_lookup(engine, experiment, e->cookie.arm, &choice, NULL) == MAB_OK &&
               !(e->cookie.holdout && !has_holdout(engine, experiment));
    /* An arm served while the experiment was paused is kept while it stays
       paused (nothing is counted either way); once it runs again the
       visitor gets an assignment the experiment learns from. */
    const char *const *policy_features = NULL;
    size_t n_policy_features = 0;
    mab__engine_features(engine, experiment, &policy_features, &n_policy_features);
    mab_context ctx = {sizeof ctx, rq->feature_names, rq->feature_values, rq->n_features,
                       rq->now_ns, 0.0, 0, 0};
    mab_choice fresh_choice = MAB_STRUCT_INIT(mab_choice);
    int rc = MAB_OK;
    if (keep && e->cookie.not_learning) {
        rc = mab_choose_ctx(engine, experiment, &ctx, &fresh_choice, NULL, err);
        if (rc != MAB_OK)
            return rc;
        keep = (fresh_choice.flags & MAB_CHOICE_NOT_LEARNING) != 0;
    } else if (!keep) {
        rc = mab_choose_ctx(engine, experiment, &ctx, &fresh_choice, NULL, err);
        if (rc != MAB_OK)
            return rc;
    }
    if (keep) {
        record_chosen(rq, e);
        mab_assignment kept = {out->struct_size, e->cookie.experiment,    choice.arm_id,
                               choice.value_json, (double)e->cookie.probability, 0,
                               choice.arm_index,
                               (e->cookie.holdout ? MAB_CHOICE_HOLDOUT : 0u) |
                                   (e->cookie.not_learning ? MAB_CHOICE_NOT_LEARNING : 0u)};
        fill_sized(out, &kept, sizeof kept);
        return MAB_OK;
    }
    choice = fresh_choice;
    mab__counters_add(&rq->adapter->counters, MAB__CTR_ASSIGNMENTS, 1);
    mab__cookie_entry fresh;
    /* The features the policy will need again at reward time, in its
       order, as the choice saw them (mab_choose_ctx resolves them alike). */
    fresh.n_features = n_policy_features;
    fresh.features_hash = mab__cookie_features_hash(policy_features, n_policy_features);
    for (size_t k = 0; k < n_policy_features; k++) {
        fresh.features[k] = NAN;
        for (size_t j = 0; j < rq->n_features; j++)
            if (strcmp(rq->feature_names[j], policy_features[k]) == 0) {
                fresh.features[k] = rq->feature_values[j];
                break;
            }
    }
    copy_id(fresh.experiment, sizeof fresh.experiment, experiment);
    copy_id(fresh.arm, sizeof fresh.arm, choice.arm_id);
    new_assignment_id(fresh.assignment_id);
    fresh.rewarded = 0;
    fresh.holdout = (choice.flags & MAB_CHOICE_HOLDOUT) != 0;
    fresh.not_learning = (choice.flags & MAB_CHOICE_NOT_LEARNING) != 0;
    fresh.issued = (uint32_t)rq->now;
    fresh.probability = (float)choice.probability;
    e = slot_for(rq, experiment, &fresh);
    e->cookie = fresh;
    e->expired = 0;
    e->chosen = 0;
    record_chosen(rq, e);
    rq->any_new = 1;
    mark_changed(rq);
    mab_assignment made = {out->struct_size, e->cookie.experiment, choice.arm_id,
                           choice.value_json, choice.probability, 1, choice.arm_index,
                           choice.flags};
    fill_sized(out, &made, sizeof made);
    return MAB_OK;
}

/* ---- reward ----------------------------------------------------------- */

static int count(mab_request *rq, request_entry *e, const char *arm_id,
                 mab_reward_result *out, int rc);

/* mab_reward_result.probability (0.2) when the caller's struct holds it. */
static void set_result_probability(mab_reward_result *out, double probability)
{
    if (out->struct_size >= offsetof(mab_reward_result, probability) + sizeof(double))
        out->probability = probability;
}

static int refuse(mab_request *rq, mab_reward_reason reason, mab_reward_result *out)
{
    mab__counters_add(&rq->adapter->counters, MAB__CTR_REWARDS_REFUSED, 1);
    if (reason == MAB_REWARD_REPLAYED)
        mab__counters_add(&rq->adapter->counters, MAB__CTR_REPLAYS_REFUSED, 1);
    out->counted = 0;
    out->reason = reason;
    return MAB_OK;
}

int mab_request_reward(mab_request *rq, const char *experiment, double value,
                       mab_reward_result *out, mab_error *err)
{
    if (!rq || !experiment || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_request_reward: NULL argument");
    if (out->struct_size < MAB_REWARD_RESULT_SIZE_0_1)
        return size_error(err, "mab_reward_result", out, MAB_REWARD_RESULT_SIZE_0_1);
    out->counted = 0;
    out->reason = MAB_REWARD_NO_ASSIGNMENT;
    out->arm_id = NULL;
    set_result_probability(out, NAN);
    mab_engine *engine = rq->adapter->engine;
    /* One lookup of the experiment for the whole call (mab.h, handles). */
    mab_handle handle;
    mab_experiment_info info = MAB_STRUCT_INIT(mab_experiment_info);
    if (mab_experiment_handle(engine, experiment, &handle, NULL) != MAB_OK ||
        mab_experiment_at(engine, handle.index, &info, NULL) != MAB_OK)
        return mab_error_set(err, MAB_ENOTFOUND, "unknown experiment \"%s\"", experiment);
    double reward_min = info.reward_min, reward_max = info.reward_max;
    if (!isfinite(value))
        return mab_error_set(err, MAB_EINVAL, "experiment %s: reward is not a finite number",
                             experiment);
    if (value < reward_min || value > reward_max)
        return mab_error_set(err, MAB_ERANGE, "experiment %s: reward %g is outside [%g, %g]",
                             experiment, value, reward_min, reward_max);

    request_entry *e = find_entry(rq, experiment);
    if (!e) {
        mab_reward_reason why = rq->state == COOKIE_NONE      ? MAB_REWARD_NO_COOKIE
                                : rq->state == COOKIE_INVALID ? MAB_REWARD_INVALID_COOKIE
                                                              : MAB_REWARD_NO_ASSIGNMENT;
        return refuse(rq, why, out);
    }
    if (e->expired)
        return refuse(rq, MAB_REWARD_EXPIRED, out);
    if (e->cookie.rewarded)
        return refuse(rq, MAB_REWARD_ALREADY_REWARDED, out);
    if (e->cookie.not_learning)
        return refuse(rq, MAB_REWARD_PAUSED, out);
    if (e->cookie.holdout && !has_holdout(engine, experiment))
        return refuse(rq, MAB_REWARD_HOLDOUT_REMOVED, out);
    size_t arm_index;
    if (mab_arm_index(engine, handle, e->cookie.arm, &arm_index, NULL) != MAB_OK)
        return refuse(rq, MAB_REWARD_ARM_REMOVED, out);
    const char *arm_id = mab__engine_arm_id(engine, handle, arm_index);
    uint64_t evicted = 0;
    int64_t expires_at = (int64_t)e->cookie.issued + rq->adapter->web->max_age;
    int fresh = mab__replay_insert(rq->adapter->replay, e->cookie.assignment_id, expires_at,
                                   rq->now, &evicted);
    if (evicted)
        mab__counters_add(&rq->adapter->counters, MAB__CTR_REPLAY_EVICTIONS, evicted);
    if (!fresh)
        return refuse(rq, MAB_REWARD_REPLAYED, out);
    /* The context of the choice, from the cookie: the probability the arm
       was chosen with (EXP3 weights rewards by it), its features (the
       request's own are ignored, so update() sees what choose() saw), its
       time, so a pull and its reward fall in one time bucket, and the
       operating rules' tags (holdout; the assignment's time, which the
       attribution window measures against the engine's clock). Features
       recorded under another "features" list (the config changed) are not
       passed: the policy sees them missing. */
    const char *const *policy_features = NULL;
    size_t n_policy_features = 0;
    mab__engine_features(engine, experiment, &policy_features, &n_policy_features);
    int same_features = e->cookie.n_features == n_policy_features && n_policy_features &&
                        e->cookie.features_hash ==
                            mab__cookie_features_hash(policy_features, n_policy_features);
    mab_context ctx = {sizeof ctx, same_features ? policy_features : NULL,
                       same_features ? e->cookie.features : NULL,
                       same_features ? n_policy_features : 0,
                       (int64_t)e->cookie.issued * 1000000000, (double)e->cookie.probability,
                       e->cookie.holdout ? MAB_CONTEXT_HOLDOUT : 0u,
                       (int64_t)e->cookie.issued * 1000000000LL};
    int rc;
    if (mab__engine_has_claims(engine)) {
        /* Storage decides (DESIGN.md 12); the memory above only caches
           refusals (and ids being claimed right now by another thread). */
        rc = mab__engine_claim_reward(engine, experiment, e->cookie.arm, value,
                                      e->cookie.assignment_id, expires_at, &ctx, err);
        if (rc == MAB_ECLAIMED)
            return refuse(rq, MAB_REWARD_REPLAYED, out);
        if (rc == MAB_ELATE) {
            /* Nothing was claimed or counted: forget the id as for errors. */
            mab__replay_remove(rq->adapter->replay, e->cookie.assignment_id);
            return refuse(rq, MAB_REWARD_LATE, out);
        }
        if (rc != MAB_OK) {
            /* Nothing was claimed or counted (engine_access.h): a retry may count. */
            mab__replay_remove(rq->adapter->replay, e->cookie.assignment_id);
            return rc;
        }
        return count(rq, e, arm_id, out, MAB_OK);
    }
    rc = mab_reward_h(engine, handle, arm_index, value, &ctx, err);
    if (rc == MAB_ELATE) {
        mab__replay_remove(rq->adapter->replay, e->cookie.assignment_id);
        return refuse(rq, MAB_REWARD_LATE, out);
    }
    if (rc != MAB_OK && rc != MAB_ESTORAGE) {
        mab__replay_remove(rq->adapter->replay, e->cookie.assignment_id);
        return rc;
    }
    /* No claims (storage ABI < 1.3 or no storage): this process's memory is
       the only guard. MAB_ESTORAGE (sync "always", the write failed): the
       reward stays queued in this process and will be written later, and
       its id stays in the replay memory, so a retry here cannot count it
       twice; but it is not durable, so the cookie is not marked rewarded:
       if the queue is lost with the process, a retry after restart still
       counts. */
    return count(rq, e, arm_id, out, rc);
}

/* The reward of entry e counted: say so, and mark the entry rewarded once
   the reward is durable (rc MAB_OK; see the MAB_ESTORAGE case above). */
static int count(mab_request *rq, request_entry *e, const char *arm_id,
                 mab_reward_result *out, int rc)
{
    mab__counters_add(&rq->adapter->counters, MAB__CTR_REWARDS_COUNTED, 1);
    if (rc == MAB_OK) {
        e->cookie.rewarded = 1;
        mark_changed(rq);
    }
    out->counted = 1;
    out->reason = MAB_REWARD_COUNTED;
    out->arm_id = arm_id;
    set_result_probability(out, (double)e->cookie.probability);
    return rc;
}

int mab_request_redirect(mab_request *rq, const char *experiment, double value,
                         const char *target, mab_reward_result *result, mab_redirect *out,
                         mab_error *err)
{
    if (!rq || !experiment || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_request_redirect: NULL argument");
    if (out->struct_size < MAB_REDIRECT_SIZE_0_1)
        return size_error(err, "mab_redirect", out, MAB_REDIRECT_SIZE_0_1);
    if (result && result->struct_size < MAB_REWARD_RESULT_SIZE_0_1)
        return size_error(err, "mab_reward_result", result, MAB_REWARD_RESULT_SIZE_0_1);
    int rc = mab_adapter_check_redirect(rq->adapter, target, err);
    if (rc != MAB_OK) {
        mab__counters_add(&rq->adapter->counters, MAB__CTR_REDIRECTS_REFUSED, 1);
        return rc;
    }
    /* The header promises a Location valid until mab_request_end(), not
       only as long as the caller's `target` (bindings pass temporaries).
       Copied before the reward, so that running out of memory counts nothing. */
    char *location = strdup(target);
    if (!location)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    free(rq->location);
    rq->location = location;
    mab_reward_result scratch = MAB_STRUCT_INIT(mab_reward_result);
    rc = mab_request_reward(rq, experiment, value, result ? result : &scratch, err);
    if (rc != MAB_OK && rc != MAB_ESTORAGE)
        return rc;
    out->status = 303;
    out->location = location;
    return rc;
}

/* ---- what the host sends ---------------------------------------------- */

/* Encode the live entries into rq->text; 0 when there are none. */
static int encode(mab_request *rq)
{
    if (rq->text_fresh)
        return rq->text[0] != '\0';
    mab__cookie_entry live[MAB__COOKIE_ENTRIES_MAX];
    size_t n = 0;
    for (size_t i = 0; i < rq->n_entries; i++)
        if (!rq->entries[i].expired)
            live[n++] = rq->entries[i].cookie;
    rq->text[0] = '\0';
    if (n)
        mab__cookie_encode(live, n, &rq->adapter->keys[0], rq->text, sizeof rq->text);
    rq->text_fresh = 1;
    return rq->text[0] != '\0';
}

double mab_request_probability(const mab_request *rq, const char *experiment)
{
    if (!rq || !experiment)
        return NAN;
    for (size_t i = 0; i < rq->n_entries; i++)
        if (strcmp(rq->entries[i].cookie.experiment, experiment) == 0)
            return (double)rq->entries[i].cookie.probability;
    return NAN;
}

const char *mab_request_token(mab_request *rq)
{
    if (!rq || !encode(rq))
        return NULL;
    return rq->text;
}

const char *mab_request_set_cookie(mab_request *rq)
{
    if (!rq || !rq->changed || !encode(rq))
        return NULL;
    if (put_set_cookie(rq->line, sizeof rq->line, rq->adapter->web, rq->text))
        return rq->line;
    free(rq->set_cookie);
    rq->set_cookie = format_set_cookie(rq->adapter->web, rq->text);
    return rq->set_cookie;
}

const char *mab_request_debug_header(mab_request *rq)
{
    if (!rq || !rq->adapter->web->debug_header || rq->n_chosen == 0)
        return NULL;
    size_t cap = 8;
    for (size_t i = 0; i < rq->n_entries; i++)
        cap += strlen(rq->entries[i].cookie.experiment) + strlen(rq->entries[i].cookie.arm) + 2;
    free(rq->debug);
    rq->debug = malloc(cap);
    if (!rq->debug)
        return NULL;
    size_t len = (size_t)snprintf(rq->debug, cap, "%s;", rq->any_new ? "STORE" : "SAVED");
    /* In the order the experiments were chosen. */
    for (unsigned rank = 1; rank <= rq->n_chosen; rank++)
        for (size_t i = 0; i < rq->n_entries; i++)
            if (rq->entries[i].chosen == rank)
                len += (size_t)snprintf(rq->debug + len, cap - len, "%s%s:%s",
                                        rank == 1 ? " " : ";", rq->entries[i].cookie.experiment,
                                        rq->entries[i].cookie.arm);
    return rq->debug;
}
