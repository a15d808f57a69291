/*
 * fuzz_cookie.c - cookie and token decoding and verification, through the
 * public adapter API.
 *
 * The first input byte picks a mode, the rest is the payload:
 *   0: the payload is the cookie's binary body (cookie.h format); the harness
 *      signs it with the test key (HMAC-SHA-256, as the adapter does) and
 *      hands the base64url text to mab_request_begin as a token, so the
 *      parser behind the MAC sees the fuzzed bytes;
 *   1: the same signed text, inside a Cookie header between other cookies;
 *   2: the payload, unsigned, is the Cookie header;
 *   3: the payload, unsigned, is the token.
 * Then the request is used as a host would use it: choose two experiments,
 * reward one, redirect, read the Set-Cookie, token and debug lines.
 *
 * Oracles:
 * - signed modes: the harness parses the body itself (format of
 *   core/adapter/cookie.h, written again here) and the adapter must agree:
 *   a well-formed body is accepted (not counted as forged) and keeps a
 *   valid, unexpired color_btn entry (no new assignment, same arm); a
 *   malformed one is counted as forged and every choice is new;
 * - a token the adapter just issued verifies when sent back: a reward with
 *   it is never refused as "no_cookie", "invalid_cookie" or "no_assignment"
 *   for an experiment chosen in the issuing request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "fuzz_common.h"
#include "mab/adapter.h"
#include "mab/mab.h"

#define TEXT_MAX 8192
#define MAX_AGE 3600
/* From core/adapter/cookie.h: the largest signed binary and text decoded. */
#define COOKIE_BINARY_MAX 3072
#define COOKIE_TEXT_MAX 4096
#define COOKIE_ENTRIES_MAX 24
#define COOKIE_FEATURES_MAX 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed test key (32 bytes); the key file holds its base64. */
static const uint8_t test_key[crypto_auth_hmacsha256_KEYBYTES] = {
    0x6d, 0x61, 0x62, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x6b, 0x65,
    0x79, 0x2d, 0x6e, 0x6f, 0x74, 0x2d, 0x61, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21, 0x00};

static mab_engine *engine;
static mab_adapter *adapter;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (sodium_init() < 0)
        abort();
    fuzz_pin_plugins();
    char key_text[sodium_base64_ENCODED_LEN(sizeof test_key, sodium_base64_VARIANT_ORIGINAL) + 1];
    sodium_bin2base64(key_text, sizeof key_text - 1, test_key, sizeof test_key,
                      sodium_base64_VARIANT_ORIGINAL);
    strcat(key_text, "\n");
    fuzz_write_file(fuzz_path("key"), key_text, strlen(key_text), 0600);
    fuzz_write_config("config.json",
                      "\"storage\": {\"plugin\": \"json_file\", \"path\": \"x.json\"},"
                      "\"secret_file\": \"key\", \"debug_header\": true,"
                      "\"cookie\": {\"name\": \"mab\", \"max_age\": 3600},"
                      "\"redirect_allow\": [\"/shop/\", \"https://shop.example.com/\"],"
                      "\"experiments\": {"
                      " \"color_btn\": {\"policy\": {\"plugin\": \"thompson\"},"
                      "  \"arms\": {\"green\": 1, \"red\": 2, \"blue\": 3}},"
                      " \"txt_btn\": {"
                      "  \"policy\": {\"plugin\": \"epsilon_greedy\", \"epsilon\": 0.1},"
                      "  \"reward\": {\"min\": 0, \"max\": 10},"
                      "  \"arms\": {\"casual\": \"a\", \"neutral\": \"b\"}}}");
    mab_error err = {0, ""};
    mab_options opts = {sizeof opts, MAB_OPEN_NO_STORAGE | MAB_OPEN_SEED, 7};
    if (mab_open_ex(fuzz_path("config.json"), &opts, &engine, &err) != MAB_OK ||
        mab_adapter_open(engine, &adapter, &err) != MAB_OK) {
        fprintf(stderr, "fuzz_cookie: %s\n", err.message);
        abort();
    }
    return 0;
}

/* Sign `body` with the test key; base64url text into out. 0 when too long. */
static size_t sign(const uint8_t *body, size_t len, char *out, size_t cap)
{
    uint8_t binary[TEXT_MAX];
    if (len + crypto_auth_hmacsha256_BYTES > sizeof binary ||
        sodium_base64_encoded_len(len + crypto_auth_hmacsha256_BYTES,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING) > cap)
        return 0;
    memcpy(binary, body, len);
    crypto_auth_hmacsha256(binary + len, body, len, test_key);
    sodium_bin2base64(out, cap, binary, len + crypto_auth_hmacsha256_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out);
}

/* What the harness reads in a signed body: well-formed or not, and the
   color_btn entry if any. */
typedef struct body_view {
    int well_formed;
    int has_color;
    char color_arm[129];
    uint32_t color_issued;
    uint8_t color_flags;
} body_view;

static int id_ok(const uint8_t *s, size_t n)
{
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", s[i]) ||
            s[i] == 0)
            return 0;
    return 1;
}

static body_view read_body(const uint8_t *b, size_t len)
{
    body_view v = {0, 0, "", 0, 0};
    char seen[COOKIE_ENTRIES_MAX][129];
    if (len < 2 || (b[0] != 1 && b[0] != 2) || b[1] > COOKIE_ENTRIES_MAX ||
        len + crypto_auth_hmacsha256_BYTES > COOKIE_BINARY_MAX)
        return v;
    size_t n = b[1], p = 2;
    for (size_t i = 0; i < n; i++) {
        char id[2][129];
        for (int k = 0; k < 2; k++) {
            if (p >= len || len - p - 1 < b[p] || !id_ok(b + p + 1, b[p]))
                return v;
            memcpy(id[k], b + p + 1, b[p]);
            id[k][b[p]] = '\0';
            p += 1u + b[p];
        }
        if (len - p < 16 + 1 + 4 + 4 || b[p + 16] > 7) /* flags: bits 0-2 (cookie.h) */
            return v;
        uint8_t flags = b[p + 16];
        uint32_t issued = (uint32_t)b[p + 17] << 24 | (uint32_t)b[p + 18] << 16 |
                          (uint32_t)b[p + 19] << 8 | b[p + 20];
        p += 16 + 1 + 4 + 4;
        if (b[0] == 2) { /* format 2: the features */
            if (p >= len || b[p] > COOKIE_FEATURES_MAX)
                return v;
            size_t nf = b[p++];
            if (nf && len - p < 4 + 8 * nf)
                return v;
            p += nf ? 4 + 8 * nf : 0;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(seen[j], id[0]) == 0)
                return v;
        strcpy(seen[i], id[0]);
        if (strcmp(id[0], "color_btn") == 0) {
            v.has_color = 1;
            strcpy(v.color_arm, id[1]);
            v.color_issued = issued;
            v.color_flags = flags;
        }
    }
    if (p != len)
        return v;
    v.well_formed = 1;
    return v;
}

/* The oracle: a token just issued for `experiment` is accepted back. */
static void check_token_round_trip(const char *token, const char *experiment)
{
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(adapter, NULL, token, &rq, &err) != MAB_OK)
        abort();
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    if (mab_request_reward(rq, experiment, 1, &r, &err) != MAB_OK)
        abort();
    if (r.reason == MAB_REWARD_NO_COOKIE || r.reason == MAB_REWARD_INVALID_COOKIE ||
        r.reason == MAB_REWARD_NO_ASSIGNMENT) {
        fprintf(stderr, "fuzz_cookie: the adapter refused its own token (%s): %s\n",
                mab_reward_reason_name(r.reason), token);
        abort();
    }
    mab_request_end(rq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > TEXT_MAX / 2)
        return -1;
    unsigned mode = data[0] & 3;
    const uint8_t *payload = data + 1;
    size_t len = size - 1;
    static char text[TEXT_MAX], header[TEXT_MAX + 64];
    const char *cookie_header = NULL, *token = NULL;
    if (mode <= 1) {
        if (!sign(payload, len, text, sizeof text))
            return -1;
        if (mode == 0) {
            token = text;
        } else {
            snprintf(header, sizeof header, "theme=dark; mab=%s; other=1", text);
            cookie_header = header;
        }
    } else {
        memcpy(text, payload, len);
        text[len] = '\0';
        if (mode == 2)
            cookie_header = text;
        else
            token = text;
    }

    mab_adapter_counters before = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_counters after = MAB_STRUCT_INIT(mab_adapter_counters);
    mab_adapter_get_counters(adapter, &before);
    int64_t now = (int64_t)time(NULL);
    mab_request *rq;
    mab_error err = {0, ""};
    if (mab_request_begin(adapter, cookie_header, token, &rq, &err) != MAB_OK)
        abort();
    mab_adapter_get_counters(adapter, &after);
    mab_assignment a = MAB_STRUCT_INIT(mab_assignment);
    if (mab_request_choose(rq, "color_btn", &a, &err) != MAB_OK || !a.arm_id || !a.value_json)
        abort();
    if (mode <= 1) {
        body_view v = read_body(payload, len);
        int forged = after.cookies_forged != before.cookies_forged;
        if (v.well_formed == forged || (!v.well_formed && !a.is_new)) {
            fprintf(stderr, "fuzz_cookie: the harness reads the signed body as %s, the adapter "
                            "%s it (color_btn %s)\n",
                    v.well_formed ? "well-formed" : "malformed",
                    forged ? "refused" : "accepted", a.is_new ? "new" : "kept");
            abort();
        }
        int known_arm = !strcmp(v.color_arm, "green") || !strcmp(v.color_arm, "red") ||
                        !strcmp(v.color_arm, "blue");
        /* Clear of the expiry boundary by a minute: the clock moves. */
        int fresh = (int64_t)v.color_issued + MAX_AGE > now + 60;
        int stale = (int64_t)v.color_issued + MAX_AGE <= now - 60;
        /* An entry served while paused (flags bit 2) is replaced once the
           experiment runs, and one of a holdout (bit 1) once the config has
           none: color_btn runs here, without a holdout (adapter.c). */
        int learning = !(v.color_flags & 6);
        if (v.well_formed && v.has_color && known_arm && fresh && learning &&
            (a.is_new || strcmp(a.arm_id, v.color_arm) != 0)) {
            fprintf(stderr, "fuzz_cookie: a valid, unexpired color_btn entry (%s) was not kept\n",
                    v.color_arm);
            abort();
        }
        if (v.well_formed && v.has_color && known_arm && fresh && !learning && !a.is_new) {
            fprintf(stderr, "fuzz_cookie: an entry served while paused, or in a holdout the "
                            "config no longer has, was kept\n");
            abort();
        }
        if (v.well_formed && v.has_color && stale && !a.is_new) {
            fprintf(stderr, "fuzz_cookie: an expired color_btn entry was kept\n");
            abort();
        }
    }
    if (mab_request_choose(rq, "txt_btn", &a, &err) != MAB_OK)
        abort();
    char *issued = NULL;
    const char *t = mab_request_token(rq);
    if (t && !(issued = strdup(t)))
        abort();
    mab_reward_result r = MAB_STRUCT_INIT(mab_reward_result);
    mab_request_reward(rq, "color_btn", 1, &r, &err);
    mab_redirect where = MAB_STRUCT_INIT(mab_redirect);
    mab_request_redirect(rq, "txt_btn", 2, "/shop/thanks", &r, &where, &err);
    (void)mab_request_set_cookie(rq);
    (void)mab_request_token(rq);
    (void)mab_request_debug_header(rq);
    mab_request_end(rq);
    if (issued) {
        check_token_round_trip(issued, "txt_btn");
        free(issued);
    }
    return 0;
}
