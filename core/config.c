/*
 * config.c - read and validate the JSON config file (keys: docs/config.md).
 *
 * Every error is one sentence "FILE: JSON.PATH: what is wrong". Unknown keys
 * are errors, so a typo never passes silently. This file parses the
 * engine's own keys only. Plugin parameters are read by the plugins through
 * mab_params, and the engine reports any key a plugin did not read; the
 * adapter's keys are claimed and parsed by core/adapter/web_config.c; the
 * caller's sections (mab_open_sections) are kept, unread, for
 * mab_config_section(). A top-level key none of them claims is an error.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "engine_access.h"
#include "json.h"

/* Large enough for a million experiments of a few arms (about 100 MB of
   JSON); a file announcing more is refused before it is read. */
#define CONFIG_MAX_BYTES (1u << 30)

static int read_file(const char *path, char **out, size_t *out_len, mab_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mab_error_set(err, MAB_EIO, "%s: cannot open config: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size >= CONFIG_MAX_BYTES - 1) {
        fclose(f);
        return mab_error_set(err, MAB_ECONFIG, "%s: config is larger than %u bytes (%lld)", path,
                             CONFIG_MAX_BYTES, (long long)st.st_size);
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1 || cap >= CONFIG_MAX_BYTES)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf)
        return mab_error_set(err, MAB_ENOMEM, "%s: out of memory reading config", path);
    if (failed) {
        free(buf);
        return mab_error_set(err, MAB_EIO, "%s: read error", path);
    }
    if (len >= CONFIG_MAX_BYTES - 1) {
        free(buf);
        return mab_error_set(err, MAB_ECONFIG, "%s: config is larger than %u bytes", path,
                             CONFIG_MAX_BYTES);
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return MAB_OK;
}

static void line_column(const char *text, const char *at, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (const char *c = text; c < at && *c; c++) {
        if (*c == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

/* cJSON_GetObjectItemCaseSensitive, without its call through the PLT and
   with a first-byte test before strcmp: open looks up several keys in each
   of a million experiments. The first of duplicate keys, as cJSON. */
static cJSON *config_item(const cJSON *object, const char *key)
{
    if (!object || !key)
        return NULL;
    for (cJSON *c = object->child; c; c = c->next)
        if (c->string && c->string[0] == key[0] && strcmp(c->string, key) == 0)
            return c;
    return NULL;
}

/* Ids appear in cookies, URLs, metrics labels and JSON paths: keep them plain. */
static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAB__ID_MAX)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* MAB_ECONFIG if `object` has a key not in `allowed` (NULL-terminated) or a
   key twice. */
static int check_keys(const mab_engine *e, const cJSON *object, const char *json_path,
                      const char *const *allowed, mab_error *err)
{
    for (const cJSON *c = object->child; c; c = c->next) {
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++)
            known = (*a)[0] == c->string[0] && strcmp(*a, c->string) == 0;
        const char *sep = json_path[0] ? ": " : "";
        if (!known)
            return mab_error_set(err, MAB_ECONFIG, "%s: %s%sunknown key \"%s\"", e->config_path,
                                 json_path, sep, c->string);
        for (const cJSON *d = c->next; d; d = d->next)
            if (d->string[0] == c->string[0] && strcmp(d->string, c->string) == 0)
                return mab_error_set(err, MAB_ECONFIG, "%s: %s%skey \"%s\" appears twice",
                                     e->config_path, json_path, sep, c->string);
    }
    return MAB_OK;
}

static int parse_plugin_path(mab_engine *e, const cJSON *pp, mab_error *err)
{
    if (!pp)
        return MAB_OK;
    if (!cJSON_IsArray(pp))
        return mab_error_set(err, MAB_ECONFIG, "%s: plugin_path: expected an array of directories",
                             e->config_path);
    size_t n = (size_t)cJSON_GetArraySize(pp);
    e->plugin_dirs = calloc(n ? n : 1, sizeof *e->plugin_dirs);
    if (!e->plugin_dirs)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t i = 0;
    for (const cJSON *d = pp->child; d; d = d->next, i++) {
        if (!cJSON_IsString(d) || !d->valuestring[0])
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: plugin_path[%zu]: expected a directory name", e->config_path, i);
        e->plugin_dirs[i] = d->valuestring[0] == '/'
                                ? mab__strdup(d->valuestring)
                                : mab__asprintf("%s/%s", e->config_dir, d->valuestring);
        if (!e->plugin_dirs[i])
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        e->n_plugin_dirs = i + 1;
    }
    return MAB_OK;
}

static int parse_seed(mab_engine *e, const cJSON *seed, mab_error *err)
{
    if (!seed)
        return MAB_OK;
    double d = cJSON_IsNumber(seed) ? seed->valuedouble : -1;
    if (d < 0 || d != floor(d) || d >= 9007199254740992.0)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: seed: expected an integer in [0, 2^53)", e->config_path);
    e->has_seed = 1;
    e->seed = (uint64_t)d;
    return MAB_OK;
}

/* An optional whole number of seconds in [min, max] at storage.KEY. */
static int parse_seconds(const mab_engine *e, const cJSON *st, const char *key, int64_t def,
                         int64_t min, int64_t max, int64_t *out, mab_error *err)
{
    const cJSON *item = config_item(st, key);
    *out = def;
    if (!item)
        return MAB_OK;
    double d = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(d == floor(d) && d >= (double)min && d <= (double)max))
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: storage.%s: expected a whole number of seconds in "
                             "[%lld, %lld]",
                             e->config_path, key, (long long)min, (long long)max);
    *out = (int64_t)d;
    return MAB_OK;
}

/* storage.bucket_seconds and storage.retention_seconds (the core's keys:
   open_storage() hides them from the plugin). */
static int parse_buckets(mab_engine *e, const cJSON *st, mab_error *err)
{
    int rc = parse_seconds(e, st, "bucket_seconds", MAB__BUCKET_SECONDS_DEFAULT, 1,
                           MAB__BUCKET_SECONDS_MAX, &e->bucket_seconds, err);
    if (rc == MAB_OK)
        rc = parse_seconds(e, st, "retention_seconds", MAB__RETENTION_SECONDS_DEFAULT, 1,
                           MAB__RETENTION_SECONDS_MAX, &e->retention_seconds, err);
    if (rc == MAB_OK && e->retention_seconds < e->bucket_seconds)
        rc = mab_error_set(err, MAB_ECONFIG,
                           "%s: storage.retention_seconds: %lld is shorter than one bucket "
                           "(storage.bucket_seconds %lld)",
                           e->config_path, (long long)e->retention_seconds,
                           (long long)e->bucket_seconds);
    e->bucket_ns = e->bucket_seconds * 1000000000LL;
    return rc;
}

static int parse_storage(mab_engine *e, const cJSON *st, mab_error *err)
{
    if (!st)
        return mab_error_set(err, MAB_ECONFIG, "%s: storage: required key is missing",
                             e->config_path);
    if (!cJSON_IsObject(st))
        return mab_error_set(err, MAB_ECONFIG, "%s: storage: expected an object", e->config_path);
    const cJSON *plugin = config_item(st, "plugin");
    if (!cJSON_IsString(plugin) || !plugin->valuestring[0])
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: storage.plugin: expected the name or path of a storage plugin",
                             e->config_path);
    int rc = parse_buckets(e, st, err);
    if (rc != MAB_OK)
        return rc;
    e->sync_always = 0;
    e->interval_ms = 1000;
    const cJSON *sync = config_item(st, "sync");
    if (!sync)
        return MAB_OK;
    if (cJSON_IsString(sync) && strcmp(sync->valuestring, "always") == 0) {
        e->sync_always = 1;
        return MAB_OK;
    }
    const cJSON *ms = cJSON_IsObject(sync) && cJSON_GetArraySize(sync) == 1
                          ? config_item(sync, "interval_ms")
                          : NULL;
    if (!cJSON_IsNumber(ms))
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: storage.sync: expected \"always\" or {\"interval_ms\": N}",
                             e->config_path);
    double d = ms->valuedouble;
    if (d != floor(d) || d < 1 || d > 86400000)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: storage.sync.interval_ms: %g is outside [1, 86400000]",
                             e->config_path, d);
    e->interval_ms = (int64_t)d;
    return MAB_OK;
}

/* Largest |reward.min| and |reward.max|. The square of any reward in range,
   and the square of the range's width, stay below 4e300, short of DBL_MAX
   (1.8e308), so one reward can never overflow; sums that grow past a double
   are refused reward by reward (mab_reward, MAB_ERANGE). */
#define MAB__REWARD_BOUND 1e150
/* Smallest reward.max - reward.min: its square (1e-300) is still a normal
   double, so normalising a reward never divides by zero. */
#define MAB__REWARD_MIN_WIDTH 1e-150

static int parse_reward_range(const mab_engine *e, mab__experiment *x, const cJSON *r,
                              mab_error *err)
{
    x->reward_min = 0.0;
    x->reward_max = 1.0;
    if (!r)
        return MAB_OK;
    char where[MAB__ID_MAX + 32];
    snprintf(where, sizeof where, "experiments.%s.reward", x->id);
    if (!cJSON_IsObject(r))
        return mab_error_set(err, MAB_ECONFIG, "%s: %s: expected {\"min\": A, \"max\": B}",
                             e->config_path, where);
    static const char *const keys[] = {"min", "max", NULL};
    int rc = check_keys(e, r, where, keys, err);
    if (rc)
        return rc;
    const char *names[2] = {"min", "max"};
    double *dst[2] = {&x->reward_min, &x->reward_max};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = config_item(r, names[i]);
        if (!v)
            continue;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return mab_error_set(err, MAB_ECONFIG, "%s: %s.%s: expected a number",
                                 e->config_path, where, names[i]);
        if (fabs(v->valuedouble) > MAB__REWARD_BOUND)
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: %s.%s: %.15g is outside [-1e150, 1e150] (the square of a "
                                 "reward must be a finite number)",
                                 e->config_path, where, names[i], v->valuedouble);
        *dst[i] = v->valuedouble;
    }
    if (!(x->reward_min < x->reward_max))
        return mab_error_set(err, MAB_ECONFIG, "%s: %s: min (%g) must be less than max (%g)",
                             e->config_path, where, x->reward_min, x->reward_max);
    if (x->reward_max - x->reward_min < MAB__REWARD_MIN_WIDTH)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: %s: max - min is %.15g; it must be at least 1e-150 (rewards "
                             "are divided by it, and by its square)",
                             e->config_path, where, x->reward_max - x->reward_min);
    return MAB_OK;
}

/* The length of an arm's value as JSON text, as cJSON_PrintUnformatted()
   writes it, and the text into out (NULL: length only). A whole number below
   1e15 (the common arm value) is written here: cJSON formats every number
   with "%1.15g" and checks it with sscanf, a few thousand instructions an
   arm, which a config of millions of arms feels. "%1.15g" writes such a
   number as its plain digits, as this does. Any other value is printed by
   cJSON into *printed (the caller frees it with cJSON_free). Returns
   (size_t)-1 when out of memory. */
static size_t value_text(const cJSON *v, char *out, char **printed)
{
    /* The commonest value, a whole number in int's range: cJSON's valueint
       is it exactly; no call, no floor. */
    if ((v->type & 0xFF) == cJSON_Number && v->valueint > INT_MIN && v->valueint < INT_MAX &&
        v->valuedouble == (double)v->valueint && !(v->valueint == 0 && signbit(v->valuedouble))) {
        unsigned u = v->valueint < 0 ? 0u - (unsigned)v->valueint : (unsigned)v->valueint;
        size_t k = v->valueint < 0, n = 1;
        for (unsigned t = u; t >= 10; t /= 10)
            n++;
        if (out) {
            if (k)
                out[0] = '-';
            for (size_t i = k + n; i-- > k; u /= 10)
                out[i] = (char)('0' + u % 10);
        }
        return k + n;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(isfinite(d) && d == floor(d) && fabs(d) < 1e15 && !(d == 0 && signbit(d)))) {
        if (!*printed && !(*printed = cJSON_PrintUnformatted(v)))
            return (size_t)-1;
        size_t len = strlen(*printed);
        if (out)
            memcpy(out, *printed, len);
        return len;
    }
    char digits[24];
    size_t n = 0, k = 0;
    unsigned long long u = (unsigned long long)fabs(d);
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (d < 0 && out)
        out[k] = '-';
    k += d < 0;
    while (n) {
        n--;
        if (out)
            out[k] = digits[n];
        k++;
    }
    return k;
}

/* Whether two policy objects print as the same JSON text (same keys in the
   same order, same values): then experiments share one copy of the text. */
static int same_json(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xff) != (b->type & 0xff))
        return 0;
    if ((a->string == NULL) != (b->string == NULL) ||
        (a->string && strcmp(a->string, b->string) != 0))
        return 0;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsNumber(a))
        return memcmp(&a->valuedouble, &b->valuedouble, sizeof a->valuedouble) == 0;
    if (cJSON_IsRaw(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if (!same_json(x, y))
            return 0;
    return x == NULL && y == NULL;
}

/* "winner": {"p_best": P, "expected_loss": L}: when a report declares the
   leader the winner (report.c, docs/operating.md). */
static int parse_winner(const mab_engine *e, mab__experiment *x, const cJSON *w,
                        mab_error *err)
{
    x->winner_p_best = MAB_WINNER_P_BEST;
    x->winner_expected_loss = MAB_WINNER_EXPECTED_LOSS;
    if (!w)
        return MAB_OK;
    char where[MAB__ID_MAX + 32];
    snprintf(where, sizeof where, "experiments.%s.winner", x->id);
    if (!cJSON_IsObject(w))
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: %s: expected {\"p_best\": P, \"expected_loss\": L}",
                             e->config_path, where);
    static const char *const keys[] = {"p_best", "expected_loss", NULL};
    int rc = check_keys(e, w, where, keys, err);
    if (rc)
        return rc;
    const cJSON *p = config_item(w, "p_best");
    if (p) {
        if (!cJSON_IsNumber(p) || !(p->valuedouble >= 0.5 && p->valuedouble <= 1.0))
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: %s.p_best: expected a probability in [0.5, 1]",
                                 e->config_path, where);
        x->winner_p_best = p->valuedouble;
    }
    const cJSON *l = config_item(w, "expected_loss");
    if (l) {
        double width = x->reward_max - x->reward_min;
        if (!cJSON_IsNumber(l) || !(l->valuedouble > 0.0 && l->valuedouble <= width))
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: %s.expected_loss: expected a number above 0 and at most "
                                 "the reward range's width (%g), in reward units",
                                 e->config_path, where, width);
        x->winner_expected_loss = l->valuedouble;
    }
    return MAB_OK;
}

/* The first arm whose id an earlier arm has, -1 when all differ, -2 when
   out of memory. A few arms are compared pairwise (no allocation, fewer
   instructions than a hash for a typical experiment); more through a hash. */
static long first_duplicate_arm(const mab__experiment *x)
{
    if (x->n_arms > 16)
        return mab__id_index_first_duplicate(x->arm_ids, sizeof *x->arm_ids, x->n_arms);
    /* Pairs are compared by a hash of each id first: a strcmp only when
       two hashes are equal (a duplicate, or rarely a collision). */
    uint64_t h[16];
    for (size_t i = 0; i < x->n_arms; i++) {
        uint64_t v = 1469598103934665603ull; /* FNV-1a */
        for (const unsigned char *c = (const unsigned char *)x->arm_ids[i]; *c; c++)
            v = (v ^ *c) * 1099511628211ull;
        h[i] = v;
    }
    for (size_t i = 1; i < x->n_arms; i++)
        for (size_t j = 0; j < i; j++)
            if (h[i] == h[j] && strcmp(x->arm_ids[i], x->arm_ids[j]) == 0)
                return (long)i;
    return -1;
}

/* An arm's id length is one byte before the id (mab__arm_value). */
_Static_assert(MAB__ID_MAX <= 255, "an arm id's length must fit its byte in arm_ids");

static int parse_arms(mab_engine *e, mab__experiment *x, const cJSON *arms, mab_error *err)
{
    if (!arms)
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.arms: required key is missing",
                             e->config_path, x->id);
    if (!cJSON_IsObject(arms))
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.arms: expected an object of arm id to value",
                             e->config_path, x->id);
    size_t n = (size_t)cJSON_GetArraySize(arms);
    if (n < 2)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments.%s.arms: at least 2 arms are required, found %zu",
                             e->config_path, x->id, n);
    if (!mab__arms_take(e, x, n)) /* from the engine's pool: sets x->arms, x->first_arm */
        return mab_error_set(err, MAB_ENOMEM, "%s: experiments.%s.arms: out of memory for %zu arms",
                             e->config_path, x->id, n);
    /* Every id and value in one allocation (x->arm_ids: n pointers to the
       ids, then each arm's id length, id and value, engine.h): two mallocs
       an arm cost 64 bytes and two frees for what is often 5 bytes of text.
       A first pass sizes it (and checks the ids), the second writes it. */
    char *few[16] = {NULL}; /* most experiments: no allocation for the list */
    char **printed = n <= 16 ? few : calloc(n, sizeof *printed); /* values cJSON printed */
    if (!printed)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    size_t bytes = 0, i = 0;
    int rc = MAB_OK;
    for (const cJSON *a = arms->child; a && rc == MAB_OK; a = a->next, i++) {
        int id_ok = valid_id(a->string);
        size_t value_len = id_ok ? value_text(a, NULL, &printed[i]) : 0;
        if (!id_ok)
            rc = mab_error_set(err, MAB_ECONFIG,
                               "%s: experiments.%s.arms: arm id \"%s\" must be 1 to %d letters, "
                               "digits, '_' or '-'",
                               e->config_path, x->id, a->string, MAB__ID_MAX);
        else if (value_len == (size_t)-1)
            rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
        else
            bytes += 1 + strlen(a->string) + 1 + value_len + 1;
    }
    if (rc == MAB_OK && !(x->arm_ids = malloc(n * sizeof *x->arm_ids + bytes)))
        rc = mab_error_set(err, MAB_ENOMEM, "out of memory");
    char *at = rc == MAB_OK ? (char *)(x->arm_ids + n) : NULL;
    i = 0;
    for (const cJSON *a = arms->child; a && rc == MAB_OK; a = a->next, i++) {
        size_t id_len = strlen(a->string); /* at most MAB__ID_MAX (valid_id): a byte */
        *at++ = (char)(unsigned char)id_len;
        x->arm_ids[x->n_arms++] = memcpy(at, a->string, id_len + 1);
        at += id_len + 1;
        at += value_text(a, at, &printed[i]); /* the value: mab__arm_value */
        *at++ = '\0';
    }
    for (size_t j = 0; j < n; j++)
        cJSON_free(printed[j]);
    if (printed != few)
        free(printed);
    if (rc != MAB_OK)
        return rc;
    long dup = first_duplicate_arm(x);
    if (dup == -2)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (dup >= 0)
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s.arms.%s: duplicate arm id",
                             e->config_path, x->id, x->arm_ids[dup]);
    return MAB_OK;
}

static int parse_experiment(mab_engine *e, mab__experiment *x, const cJSON *obj,
                            mab_error *err)
{
    char where[MAB__ID_MAX + 16];
    snprintf(where, sizeof where, "experiments.%s", x->id);
    if (!cJSON_IsObject(obj))
        return mab_error_set(err, MAB_ECONFIG, "%s: %s: expected an object", e->config_path,
                             where);
    static const char *const keys[] = {"policy", "arms", "reward", "winner",
                                       /* operating rules: rules.c */
                                       "state", "serve", "floor", "burn_in", "holdout",
                                       "attribution_window",
                                       /* the sample-ratio check: srm.c */
                                       "srm", NULL};
    int rc = check_keys(e, obj, where, keys, err);
    if (rc)
        return rc;
    const cJSON *policy = config_item(obj, "policy");
    if (!policy)
        return mab_error_set(err, MAB_ECONFIG, "%s: %s.policy: required key is missing",
                             e->config_path, where);
    const cJSON *plugin = config_item(policy, "plugin");
    if (!cJSON_IsObject(policy) || !cJSON_IsString(plugin) || !plugin->valuestring[0])
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: %s.policy: expected an object with \"plugin\" naming a policy",
                             e->config_path, where);
    x->part->policy_obj = policy;
    /* Experiments of one policy usually follow each other: share the text
       (a million copies of {"plugin":"thompson"} are 48 MB). */
    const mab__experiment *prev = x > e->experiments ? x - 1 : NULL;
    if (prev && prev->part->policy_obj && prev->part->policy_json && same_json(prev->part->policy_obj, policy)) {
        x->part->policy_json = prev->part->policy_json;
        x->policy_json_shared = 1;
    } else if (!(x->part->policy_json = cJSON_PrintUnformatted(policy))) {
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    rc = parse_reward_range(e, x, config_item(obj, "reward"), err);
    if (rc)
        return rc;
    rc = parse_winner(e, x, config_item(obj, "winner"), err);
    if (rc)
        return rc;
    rc = parse_arms(e, x, config_item(obj, "arms"), err);
    if (!rc)
        rc = mab__rules_parse(e, x, obj, err);
    return rc ? rc : mab__srm_parse(e, x, obj, err);
}

static int parse_experiments(mab_engine *e, const cJSON *exps, mab_error *err)
{
    if (!exps)
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments: required key is missing",
                             e->config_path);
    if (!cJSON_IsObject(exps))
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments: expected an object of experiment id to experiment",
                             e->config_path);
    size_t n = (size_t)cJSON_GetArraySize(exps);
    if (n == 0)
        return mab_error_set(err, MAB_ECONFIG,
                             "%s: experiments: at least one experiment is required",
                             e->config_path);
    e->experiments = calloc(n, sizeof *e->experiments);
    e->parts = calloc(n, sizeof *e->parts); /* what their ledgers do not carry */
    if (!e->experiments || !e->parts)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (const cJSON *c = exps->child; c; c = c->next) {
        if (!valid_id(c->string))
            return mab_error_set(err, MAB_ECONFIG,
                                 "%s: experiments: experiment id \"%s\" must be 1 to %d letters, "
                                 "digits, '_' or '-'",
                                 e->config_path, c->string, MAB__ID_MAX);
        mab__experiment *x = &e->experiments[e->n_experiments];
        x->part = &e->parts[e->n_experiments];
        x->id = mab__strdup(c->string);
        if (!x->id)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        e->n_experiments++;
        int rc = parse_experiment(e, x, c, err);
        if (rc)
            return rc;
        if (x->n_arms > e->max_arms)
            e->max_arms = x->n_arms;
    }
    /* One pass over a hash of the ids: a config of 10^6 experiments must not
       compare each id with every earlier one. */
    long dup = mab__id_index_first_duplicate(e->experiments, sizeof *e->experiments,
                                             e->n_experiments);
    if (dup == -2)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    if (dup >= 0)
        return mab_error_set(err, MAB_ECONFIG, "%s: experiments.%s: duplicate experiment id",
                             e->config_path, e->experiments[dup].id);
    return MAB_OK;
}

/* The engine's own top-level keys. */
static const char *const engine_keys[] = {"plugin_path", "seed", "storage", "experiments", NULL};

static int listed(const char *const *names, const char *name)
{
    for (; names && *names; names++)
        if (strcmp(*names, name) == 0)
            return 1;
    return 0;
}

/* Copy the caller's section names, refusing one that cannot be a section. */
static int declare_sections(mab_engine *e, const char *const *sections, mab_error *err)
{
    size_t n = 0;
    while (sections && sections[n])
        n++;
    e->sections = calloc(n ? n : 1, sizeof *e->sections);
    if (!e->sections)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *name = sections[i];
        if (!name[0])
            return mab_error_set(err, MAB_EINVAL, "mab_open: a section name is empty");
        if (listed(engine_keys, name) || listed(mab__web_config_keys, name))
            return mab_error_set(err, MAB_EINVAL, "mab_open: section \"%s\" is a key of the %s",
                                 name, listed(engine_keys, name) ? "engine" : "adapter");
        for (size_t j = 0; j < i; j++)
            if (strcmp(sections[j], name) == 0)
                return mab_error_set(err, MAB_EINVAL, "mab_open: section \"%s\" is listed twice",
                                     name);
        if (!(e->sections[i].name = mab__strdup(name)))
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        e->n_sections = i + 1;
    }
    return MAB_OK;
}

/* MAB_ECONFIG naming the first top-level key that nobody claims (or that
   appears twice). */
static int check_top_level(const mab_engine *e, mab_error *err)
{
    for (const cJSON *c = e->root->child; c; c = c->next) {
        int claimed = listed(engine_keys, c->string) || listed(mab__web_config_keys, c->string);
        for (size_t i = 0; !claimed && i < e->n_sections; i++)
            claimed = strcmp(e->sections[i].name, c->string) == 0;
        if (!claimed)
            return mab_error_set(err, MAB_ECONFIG, "%s: unknown key \"%s\"", e->config_path,
                                 c->string);
        for (const cJSON *d = c->next; d; d = d->next)
            if (strcmp(d->string, c->string) == 0)
                return mab_error_set(err, MAB_ECONFIG, "%s: key \"%s\" appears twice",
                                     e->config_path, c->string);
    }
    return MAB_OK;
}

/* Keep a copy of each of the caller's sections: the parsed config is freed
   at the end of mab_open, the sections are read afterwards. */
static int keep_sections(mab_engine *e, mab_error *err)
{
    for (size_t i = 0; i < e->n_sections; i++) {
        const cJSON *s = config_item(e->root, e->sections[i].name);
        if (!s)
            continue;
        if (!cJSON_IsObject(s))
            return mab_error_set(err, MAB_ECONFIG, "%s: %s: expected an object", e->config_path,
                                 e->sections[i].name);
        if (!(e->sections[i].object = cJSON_Duplicate(s, 1)))
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    return MAB_OK;
}

/* The adapter's keys, read by web_config.c through a view of the top level. */
static int parse_adapter_keys(mab_engine *e, mab_error *err)
{
    mab_params top;
    if (mab__params_init(&top, e->root, e->config_path, e->config_dir) != MAB_OK)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    top.top_level = 1;
    int rc = mab__web_config_parse(&top, &e->web, err);
    mab__params_fini(&top);
    return rc;
}

int mab__config_load(mab_engine *e, const char *const *sections, mab_error *err)
{
    int rc = declare_sections(e, sections, err);
    if (rc)
        return rc;
    char *dir_copy = mab__strdup(e->config_path);
    if (!dir_copy)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    e->config_dir = mab__strdup(dirname(dir_copy));
    free(dir_copy);
    if (!e->config_dir)
        return mab_error_set(err, MAB_ENOMEM, "out of memory");

    char *text = NULL;
    size_t text_len = 0;
    rc = read_file(e->config_path, &text, &text_len, err);
    if (rc)
        return rc;
    /* core/json.c: cJSON nodes in a few blocks, freed with mab__json_free. */
    mab__json_error bad;
    e->root = mab__json_parse(text, text_len, &bad);
    if (!e->root) {
        int line, column;
        line_column(text, text + bad.offset, &line, &column);
        free(text);
        if (bad.reason == MAB__JSON_ENOMEM)
            return mab_error_set(err, MAB_ENOMEM, "%s: out of memory parsing config",
                                 e->config_path);
        return mab_error_set(err, MAB_ECONFIG, "%s: invalid JSON at line %d, column %d",
                             e->config_path, line, column);
    }
    free(text);
    if (!cJSON_IsObject(e->root))
        return mab_error_set(err, MAB_ECONFIG, "%s: the top level must be a JSON object",
                             e->config_path);
    if ((rc = check_top_level(e, err)) ||
        (rc = parse_plugin_path(e, config_item(e->root, "plugin_path"), err)) ||
        (rc = parse_seed(e, config_item(e->root, "seed"), err)) ||
        (rc = parse_storage(e, config_item(e->root, "storage"), err)) ||
        (rc = parse_experiments(e, config_item(e->root, "experiments"), err)) ||
        (rc = mab__rules_add_ledgers(e, err)) || (rc = mab__srm_add_ledgers(e, err)) ||
        (rc = parse_adapter_keys(e, err)) || (rc = keep_sections(e, err)))
        return rc;
    e->storage_obj = config_item(e->root, "storage");
    return MAB_OK;
}

void mab__config_free(mab_engine *e)
{
    for (size_t i = 0; i < e->n_experiments; i++) {
        mab__experiment *x = &e->experiments[i];
        if (!x->is_ledger) /* a ledger's are its experiment's */
            free(x->arm_ids); /* the ids and values of its arms */
        free(x->id);
        if (!x->policy_json_shared)
            cJSON_free(x->part->policy_json);
    }
    free(e->experiments);
    free(e->parts);
    free(e->arm_pool); /* every experiment's arms */
    mab__web_config_free(e->web);
    e->web = NULL;
    for (size_t i = 0; i < e->n_sections; i++) {
        free(e->sections[i].name);
        cJSON_Delete(e->sections[i].object);
    }
    free(e->sections);
    e->sections = NULL;
    e->n_sections = 0;
    for (size_t i = 0; i < e->n_plugin_dirs; i++)
        free(e->plugin_dirs[i]);
    free(e->plugin_dirs);
    free(e->config_dir);
    mab__json_free(e->root);
    e->root = NULL;
}

/* ---- the caller's sections ------------------------------------------- */

int mab_config_section(const mab_engine *e, const char *name, mab_params **out, mab_error *err)
{
    if (!e || !name || !out)
        return mab_error_set(err, MAB_EINVAL, "mab_config_section: NULL argument");
    const mab__section *section = NULL;
    for (size_t i = 0; !section && i < e->n_sections; i++)
        if (strcmp(e->sections[i].name, name) == 0)
            section = &e->sections[i];
    if (!section)
        return mab_error_set(err, MAB_EINVAL,
                             "mab_config_section: \"%s\" was not named when the engine was "
                             "opened (mab_open_sections)",
                             name);
    /* A copy per view: views are independent of each other and of the engine. */
    cJSON *copy = section->object ? cJSON_Duplicate(section->object, 1) : cJSON_CreateObject();
    char *where = mab__asprintf("%s: %s", e->config_path, name);
    mab_params *p = malloc(sizeof *p);
    if (!copy || !where || !p || mab__params_init(p, copy, where, e->config_dir) != MAB_OK) {
        cJSON_Delete(copy);
        free(where);
        free(p);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    free(where);
    p->owned = copy;
    *out = p;
    return MAB_OK;
}

/* ---- engine_access.h: what the adapter reads of the engine ----------- */

const char *mab__engine_config_path(const mab_engine *e)
{
    return e->config_path;
}

const mab__web_config *mab__engine_web_config(const mab_engine *e)
{
    return e->web;
}

int64_t mab__engine_time_ns(const mab_engine *e)
{
    return mab__engine_now(e, NULL);
}

int mab__engine_features(const mab_engine *e, const char *experiment, const char *const **names,
                         size_t *n)
{
    long x = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments,
                                experiment);
    if (x < 0)
        return MAB_ENOTFOUND;
    *names = (const char *const *)e->experiments[x].part->feature_names;
    *n = e->experiments[x].n_features;
    return MAB_OK;
}

int mab__engine_cookie_shape(const mab_engine *e, size_t index, const char **id,
                             size_t *longest_arm_id, size_t *n_features)
{
    if (index >= e->n_experiments)
        return MAB_ENOTFOUND;
    const mab__experiment *x = &e->experiments[index];
    size_t longest = 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        size_t len = strlen(mab__arm_id(x, i));
        longest = len > longest ? len : longest;
    }
    *id = x->id;
    *longest_arm_id = longest;
    *n_features = x->n_features;
    return MAB_OK;
}

int mab__engine_reward_range(const mab_engine *e, const char *experiment, double *min,
                             double *max)
{
    long x = mab__id_index_find(&e->experiment_index, e->experiments, sizeof *e->experiments,
                                experiment);
    if (x < 0)
        return MAB_ENOTFOUND;
    *min = e->experiments[x].reward_min;
    *max = e->experiments[x].reward_max;
    return MAB_OK;
}
