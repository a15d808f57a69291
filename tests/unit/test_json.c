/*
 * test_json.c - core/json.c, compiled in (its malloc can be made to fail):
 * the config's JSON parser against cJSON (json_diff.h) on the repository's
 * JSON (examples, fixtures, the fuzz seeds, the docs' JSON blocks), every
 * cut of those texts, fixed-seed mutations of them, hand-written hostile
 * inputs with the refusal expected (reason and offset), and numbers of
 * every shape against strtod through cJSON (issue 18).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* The parser's allocations go through these, so that they can fail. */
static long fail_after = -1; /* allocations left before one fails; -1: never */
static void *json_test_malloc(size_t n)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return malloc(n);
}
static void *json_test_calloc(size_t a, size_t b)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return calloc(a, b);
}
#define malloc(n) json_test_malloc(n)
#define calloc(a, b) json_test_calloc(a, b)
#include "../../core/json.c"
#undef malloc
#undef calloc

#include "json_diff.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void check(const char *text, size_t len)
{
    const char *why = json_diff(text, len);
    if (why) {
        fprintf(stderr, "json_diff: %s on %zu bytes:\n", why, len);
        fwrite(text, 1, len < 400 ? len : 400, stderr);
        fputc('\n', stderr);
    }
    assert_null(why);
}

/* ---- the corpus ------------------------------------------------------ */

typedef struct corpus {
    char **text;
    size_t *len;
    size_t n;
} corpus;

static void add_text(corpus *c, const char *bytes, size_t len)
{
    c->text = realloc(c->text, (c->n + 1) * sizeof *c->text);
    c->len = realloc(c->len, (c->n + 1) * sizeof *c->len);
    assert_non_null(c->text);
    assert_non_null(c->len);
    char *t = malloc(len + 1);
    assert_non_null(t);
    memcpy(t, bytes, len);
    t[len] = '\0';
    c->text[c->n] = t;
    c->len[c->n++] = len;
}

static void add_file(corpus *c, const char *path, int json_blocks)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    if (!buf)
        return;
    buf[len] = '\0';
    if (!json_blocks) {
        add_text(c, buf, len);
    } else { /* the ```json blocks of a Markdown page */
        for (char *s = buf; (s = strstr(s, "```json\n"));) {
            s += 8;
            char *e = strstr(s, "```");
            if (!e)
                break;
            add_text(c, s, (size_t)(e - s));
            s = e + 3;
        }
    }
    free(buf);
}

static void add_dir(corpus *c, const char *dir, const char *suffix, int json_blocks)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        size_t n = strlen(de->d_name), s = strlen(suffix);
        if (de->d_name[0] == '.' || n < s || strcmp(de->d_name + n - s, suffix) != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        add_file(c, path, json_blocks);
    }
    closedir(d);
}

static corpus load_corpus(void)
{
    corpus c = {0};
    static const char *const json_dirs[] = {"examples", "examples/custom-policy",
                                            "examples/custom-storage", "examples/embed",
                                            "tests/fixtures"};
    static const char *const seed_dirs[] = {"tests/fuzz/corpus/fuzz_config",
                                            "tests/fuzz/corpus/fuzz_json_state",
                                            "tests/fuzz/corpus/fuzz_lmdb"};
    char path[4096];
    for (size_t i = 0; i < sizeof json_dirs / sizeof *json_dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", MAB_SOURCE_DIR, json_dirs[i]);
        add_dir(&c, path, ".json", 0);
    }
    for (size_t i = 0; i < sizeof seed_dirs / sizeof *seed_dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", MAB_SOURCE_DIR, seed_dirs[i]);
        add_dir(&c, path, "", 0);
    }
    snprintf(path, sizeof path, "%s/docs", MAB_SOURCE_DIR);
    add_dir(&c, path, ".md", 1);
    return c;
}

static void free_corpus(corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text);
    free(c->len);
}

/* Every text of the corpus and every cut of it agree with cJSON; most of
   the texts are JSON (the corpus is not empty or all broken). */
static void test_corpus_and_every_cut(void **state)
{
    (void)state;
    corpus c = load_corpus();
    size_t accepted = 0;
    for (size_t i = 0; i < c.n; i++) {
        check(c.text[i], c.len[i]);
        cJSON *root = mab__json_parse(c.text[i], c.len[i], NULL);
        accepted += root != NULL;
        mab__json_free(root);
        /* Every cut (every byte for small texts, 500 cuts for large ones). */
        size_t step = c.len[i] / 500 + 1;
        for (size_t cut = 0; cut < c.len[i]; cut += step) {
            char keep = c.text[i][cut];
            c.text[i][cut] = '\0';
            check(c.text[i], cut);
            c.text[i][cut] = keep;
        }
    }
    fprintf(stderr, "corpus: %zu texts, %zu of them JSON\n", c.n, accepted);
    assert_true(c.n >= 20);
    assert_true(accepted >= 15);
    free_corpus(&c);
}

/* Fixed-seed mutations of the corpus: bytes replaced, inserted, removed,
   tokens spliced in. */
static void test_mutations(void **state)
{
    (void)state;
    static const char *const tokens[] = {
        "\\u0000", "\\uD800", "\\uDC00", "\\uD83D\\uDE00", "\\uD800\\u0041", "\\", "\"", "01",
        "1.", "-", ".5", "1e", "1e+", "-0", "1e400", "\xC3", "\xE2\x82", "\xF4\x90\x80\x80",
        "\xED\xA0\x80", "\xC0\xAF", "\x01", "\x7F", "\xEF\xBB\xBF", "{", "}", "[", "]", ",", ":",
        "true", "nul", "1234567890123456789012", "0.1e-400", "\t", "\f", "\v"};
    size_t n_tokens = sizeof tokens / sizeof *tokens;
    corpus c = load_corpus();
    assert_true(c.n > 0);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    for (int round = 0; round < 30000; round++) {
        size_t k = next_rand() % c.n, len = c.len[k];
        if (len > 60000)
            continue;
        memcpy(buf, c.text[k], len);
        int edits = 1 + (int)(next_rand() % 3);
        for (int m = 0; m < edits; m++) {
            size_t at = len ? next_rand() % (len + 1) : 0;
            switch (next_rand() % 4) {
            case 0:
                if (at < len)
                    buf[at] = (char)(next_rand() & 0xFF);
                break;
            case 1:
                if (at < len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            default: {
                const char *t = tokens[next_rand() % n_tokens];
                size_t tl = strlen(t);
                memmove(buf + at + tl, buf + at, len - at);
                memcpy(buf + at, t, tl);
                len += tl;
            }
            }
        }
        buf[len] = '\0';
        check(buf, len);
    }
    free(buf);
    free_corpus(&c);
}

/* ---- hostile inputs with the refusal expected ------------------------- */

typedef struct expect {
    const char *text;
    size_t len; /* 0: strlen */
    int reason; /* MAB__JSON_OK: accepted */
    size_t offset;
    int cjson_accepts;
} expect;

static const expect cases[] = {
    {"{}", 0, MAB__JSON_OK, 0, 1},
    {" \t\r\n[ ]\n", 0, MAB__JSON_OK, 0, 1},
    {"\xEF\xBB\xBF{}", 0, MAB__JSON_OK, 0, 1}, /* a byte order mark */
    {"", 0, MAB__JSON_ESYNTAX, 0, 0},
    {"   \n", 0, MAB__JSON_ESYNTAX, 4, 0},
    {"{\"a\": [1, 2,,]}", 0, MAB__JSON_ESYNTAX, 12, 0},
    {"{\"a\" 1}", 0, MAB__JSON_ESYNTAX, 5, 0},
    {"{\"a\": 1,}", 0, MAB__JSON_ESYNTAX, 8, 0},
    {"{1: 2}", 0, MAB__JSON_ESYNTAX, 1, 0},
    {"[1] [2]", 0, MAB__JSON_ESYNTAX, 4, 0}, /* trailing garbage */
    {"{} x", 0, MAB__JSON_ESYNTAX, 3, 0},
    {"[tru]", 0, MAB__JSON_ESYNTAX, 4, 0},
    {"[nulL]", 0, MAB__JSON_ESYNTAX, 4, 0},
    {"[True]", 0, MAB__JSON_ESYNTAX, 1, 0},
    {"{\"a\": 1", 0, MAB__JSON_ESYNTAX, 7, 0}, /* truncated */
    {"\"abc", 0, MAB__JSON_ESTRING, 4, 0},
    /* numbers */
    {"[-0, 0, 1e5, 1E+5, 1e-5, 0.5, -12.5e-3]", 0, MAB__JSON_OK, 0, 1},
    {"[01]", 0, MAB__JSON_ENUMBER, 2, 1},
    {"[-01]", 0, MAB__JSON_ENUMBER, 3, 1},
    {"[1.]", 0, MAB__JSON_ENUMBER, 3, 1},
    {"[1.e5]", 0, MAB__JSON_ENUMBER, 3, 1},
    {"[-.5]", 0, MAB__JSON_ENUMBER, 2, 1},
    {"[.5]", 0, MAB__JSON_ESYNTAX, 1, 0},
    {"[+1]", 0, MAB__JSON_ESYNTAX, 1, 0},
    {"[-]", 0, MAB__JSON_ENUMBER, 2, 0},
    {"[1e]", 0, MAB__JSON_ENUMBER, 3, 0},
    {"[1e+]", 0, MAB__JSON_ENUMBER, 4, 0},
    {"[0x10]", 0, MAB__JSON_ESYNTAX, 2, 0},
    {"[1e400, -1e400, 1e-400]", 0, MAB__JSON_OK, 0, 1}, /* strtod's infinity and zero */
    {"[123456789012345678901234567890]", 0, MAB__JSON_OK, 0, 1},
    {"[0.000000000000000000000000000000000000000000000000000000000000000001]", 0, MAB__JSON_OK,
     0, 1},
    /* strings */
    {"[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]", 0, MAB__JSON_OK, 0, 1},
    {"[\"\\u00e9\\u20AC\\uD83D\\uDE00\"]", 0, MAB__JSON_OK, 0, 1},
    {"[\"\\x\"]", 0, MAB__JSON_ESTRING, 3, 0},
    {"[\"\\u12G4\"]", 0, MAB__JSON_EHEX, 6, 1}, /* cJSON reads U+0000 */
    {"[\"\\u12\"]", 0, MAB__JSON_EHEX, 6, 0},
    {"[\"\\uDC00\"]", 0, MAB__JSON_ESTRING, 2, 0},        /* a lone low surrogate */
    {"[\"\\uD800\"]", 0, MAB__JSON_ESTRING, 8, 0},        /* a lone high surrogate */
    {"[\"\\uD800x\"]", 0, MAB__JSON_ESTRING, 8, 0},
    {"[\"\\uD800\\u0041\"]", 0, MAB__JSON_ESTRING, 8, 0}, /* high, then no low */
    {"[\"\\uD800\\uD800\"]", 0, MAB__JSON_ESTRING, 8, 0},
    {"[\"a\\u0000b\"]", 0, MAB__JSON_ENUL, 3, 1}, /* cJSON would cut the string at it */
    {"[\"a\tb\"]", 0, MAB__JSON_ECONTROL, 3, 1},
    {"[\"a\nb\"]", 0, MAB__JSON_ECONTROL, 3, 1},
    {"[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"]", 0, MAB__JSON_OK, 0, 1},
    {"[\"\xC3\"]", 0, MAB__JSON_EUTF8, 3, 1},         /* truncated sequence */
    {"[\"\xC3x\"]", 0, MAB__JSON_EUTF8, 3, 1},        /* bad continuation */
    {"[\"\x80\"]", 0, MAB__JSON_EUTF8, 2, 1},         /* a lone continuation byte */
    {"[\"\xC0\xAF\"]", 0, MAB__JSON_EUTF8, 2, 1},     /* overlong */
    {"[\"\xE0\x80\xAF\"]", 0, MAB__JSON_EUTF8, 3, 1}, /* overlong */
    {"[\"\xED\xA0\x80\"]", 0, MAB__JSON_EUTF8, 3, 1}, /* a surrogate in UTF-8 */
    {"[\"\xF4\x90\x80\x80\"]", 0, MAB__JSON_EUTF8, 3, 1}, /* above U+10FFFF */
    {"[\"\xFF\"]", 0, MAB__JSON_EUTF8, 2, 1},
    /* NUL bytes and control characters between tokens */
    {"{}\0", 3, MAB__JSON_ENUL, 2, 1},
    {"{\"a\":\0 1}", 9, MAB__JSON_ENUL, 5, 0},
    {"[\"a\0b\"]", 7, MAB__JSON_ENUL, 3, 0},
    {"[1,\x01 2]", 0, MAB__JSON_ESPACE, 3, 1},
    {"\f{}", 0, MAB__JSON_ESPACE, 0, 1},
    /* duplicate keys: both kept in order, the first found */
    {"{\"a\": 1, \"a\": 2}", 0, MAB__JSON_OK, 0, 1},
};

static void test_hostile_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const expect *x = &cases[i];
        size_t len = x->len ? x->len : strlen(x->text);
        mab__json_error err;
        cJSON *root = mab__json_parse(x->text, len, &err);
        if ((root != NULL) != (x->reason == MAB__JSON_OK) ||
            (!root && (err.reason != x->reason || err.offset != x->offset)))
            fprintf(stderr, "case %zu (%s): got %s, reason %d, offset %zu\n", i, x->text,
                    root ? "accepted" : "refused", root ? 0 : err.reason, root ? 0 : err.offset);
        assert_int_equal(root != NULL, x->reason == MAB__JSON_OK);
        if (!root) {
            assert_int_equal(err.reason, x->reason);
            assert_int_equal(err.offset, x->offset);
        }
        mab__json_free(root);
        /* What cJSON does with it, as the table says (it documents the
           differences), and the two agree by json_diff's rules. */
        char *copy = malloc(len + 1);
        assert_non_null(copy);
        memcpy(copy, x->text, len);
        copy[len] = '\0';
        cJSON *theirs = cJSON_ParseWithOpts(copy, NULL, 1);
        if ((theirs != NULL) != x->cjson_accepts)
            fprintf(stderr, "case %zu (%s): cJSON %s\n", i, x->text,
                    theirs ? "accepts" : "refuses");
        assert_int_equal(theirs != NULL, x->cjson_accepts);
        cJSON_Delete(theirs);
        check(copy, len);
        free(copy);
    }
}

/* The first of duplicate keys is the one cJSON_GetObjectItem finds. */
static void test_duplicate_keys_first_wins(void **state)
{
    (void)state;
    const char *t = "{\"a\": 1, \"b\": {}, \"a\": 2}";
    cJSON *root = mab__json_parse(t, strlen(t), NULL);
    assert_non_null(root);
    assert_int_equal(cJSON_GetArraySize(root), 3);
    assert_true(cJSON_GetObjectItemCaseSensitive(root, "a")->valuedouble == 1);
    mab__json_free(root);
}

/* Nesting: 1000 levels are JSON, 1001 are refused at the 1001st bracket,
   as cJSON does; objects count as arrays do. */
static void test_depth_limit(void **state)
{
    (void)state;
    for (int object = 0; object <= 1; object++) {
        for (int depth = 999; depth <= 1001; depth++) {
            char *t = malloc((size_t)depth * 6 + 8), *o = t;
            assert_non_null(t);
            for (int i = 0; i < depth; i++)
                o += sprintf(o, "%s", object ? (i + 1 < depth ? "{\"k\":" : "{") : "[");
            for (int i = 0; i < depth; i++)
                *o++ = object ? '}' : ']';
            *o = '\0';
            size_t len = (size_t)(o - t);
            mab__json_error err;
            cJSON *root = mab__json_parse(t, len, &err);
            assert_int_equal(root != NULL, depth <= MAB__JSON_MAX_DEPTH);
            if (!root) {
                assert_int_equal(err.reason, MAB__JSON_EDEPTH);
                assert_int_equal(err.offset, object ? 5 * 1000 : 1000);
            }
            mab__json_free(root);
            check(t, len);
            free(t);
        }
    }
}

/* Numbers of every shape, as strtod (through cJSON) reads them, bit for
   bit: integers of 1 to 25 digits, fractions, exponents up to +-350, the
   exact fast path's edges (2^53, 10^22), halfway cases. */
static void test_numbers_as_strtod(void **state)
{
    (void)state;
    static const char *const edges[] = {
        "9007199254740992", "9007199254740993", "9007199254740993.0", "9007199254740992e22",
        "9007199254740993e-22", "1e22", "1e23", "4.9406564584124654e-324", "2.2250738585072014e-308",
        "1.7976931348623157e308", "1.7976931348623159e308", "18446744073709551615",
        "18446744073709551616", "9999999999999999999", "0.1", "0.30000000000000004",
        "2147483647", "2147483648", "-2147483648", "-2147483649", "2147483646.5", "-0.0",
        "123456789012345678e-5", "0.0000000000000000000000000000001e31"};
    char buf[128];
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        int n = snprintf(buf, sizeof buf, "[%s]", edges[i]);
        check(buf, (size_t)n);
    }
    for (int round = 0; round < 200000; round++) {
        char *o = buf;
        *o++ = '[';
        if (next_rand() & 1)
            *o++ = '-';
        int int_digits = 1 + (int)(next_rand() % 25);
        for (int d = 0; d < int_digits; d++)
            *o++ = (char)('0' + (d == 0 ? (int_digits > 1 ? 1 + next_rand() % 9 : next_rand() % 10)
                                        : next_rand() % 10));
        if (next_rand() % 2) {
            *o++ = '.';
            int frac = 1 + (int)(next_rand() % 20);
            for (int d = 0; d < frac; d++)
                *o++ = (char)('0' + next_rand() % 10);
        }
        if (next_rand() % 2)
            o += sprintf(o, "%s%d", next_rand() % 2 ? "e" : "E-", (int)(next_rand() % 351));
        *o++ = ']';
        *o = '\0';
        check(buf, (size_t)(o - buf));
    }
}

/* Out of memory at each allocation of a parse: refused with ENOMEM,
   nothing leaked (ASan), and the next parse works. */
static void test_out_of_memory(void **state)
{
    (void)state;
    /* Large enough to need several blocks and the slow number path. */
    size_t cap = 200000;
    char *t = malloc(cap);
    assert_non_null(t);
    size_t len = (size_t)sprintf(t, "{\"n\": 1.00000000000000000000000000000000000000000000000000000000000000000001, \"a\": [");
    while (len < cap - 100)
        len += (size_t)sprintf(t + len, "\"x%zu\", ", len);
    len += (size_t)sprintf(t + len, "1]}");
    int failures = 0;
    for (long k = 0;; k++) {
        fail_after = k;
        mab__json_error err;
        cJSON *root = mab__json_parse(t, len, &err);
        fail_after = -1;
        if (root) {
            mab__json_free(root);
            break;
        }
        assert_int_equal(err.reason, MAB__JSON_ENOMEM);
        failures++;
    }
    assert_true(failures >= 3); /* the head, blocks, the number's buffer */
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_duplicate_keys_first_wins),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_numbers_as_strtod),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_corpus_and_every_cut),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
