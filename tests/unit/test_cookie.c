/*
 * test_cookie.c - the cookie's primitives and format (core/adapter/crypto.c,
 * core/adapter/cookie.c), compiled in from the sources:
 * - SHA-256: the FIPS 180-2 vectors (one block, two blocks, a million 'a'),
 *   and every length 0..300 against libsodium; HMAC-SHA-256: RFC 4231's
 *   seven cases (keys shorter and longer than a block), and every message
 *   length 0..300 under several keys against libsodium. Each runs on the
 *   SHA extensions (when the CPU has them) and on the portable code.
 * - base64url: RFC 4648's vectors (section 10, without padding), the
 *   url-safe alphabet ("-" and "_"), every byte value and every length
 *   against libsodium, and refusals: every character outside the alphabet
 *   at every position, '=' padding, a length of 1 modulo 4, spare bits set
 *   in the last character (the non-canonical twins), an output too small;
 *   on SSSE3 (when the CPU has it) and on the portable 64-bit-word code.
 * - the cookie: one signed by main's code before crypto.c
 *   (tests/fixtures/cookie_main_v2.txt) verifies, decodes to its entries
 *   and re-encodes to the same text; a change of any character, a wrong
 *   key, a key rotation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "../core/adapter/cookie.h"
#include "../core/adapter/crypto.h"

static void hex(const char *text, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(text + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* Fill with a fixed pseudo-random sequence (xorshift), the same every run. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)(x >> 24);
    }
}

static void check_sha256(const char *msg, size_t len, const char *expected_hex)
{
    uint8_t expected[32], got[32];
    hex(expected_hex, expected, 32);
    mab__sha256((const uint8_t *)msg, len, got);
    assert_memory_equal(got, expected, 32);
}

static void sha256_vectors(void)
{
    check_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha256(two, strlen(two),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static char million[1000000];
    memset(million, 'a', sizeof million);
    check_sha256(million, sizeof million,
                 "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* Every padding case (tail below 56, 56..63, whole blocks) against libsodium. */
    uint8_t msg[300], got[32], want[32];
    fill(msg, sizeof msg, 1);
    for (size_t len = 0; len <= sizeof msg; len++) {
        mab__sha256(msg, len, got);
        crypto_hash_sha256(want, msg, len);
        assert_memory_equal(got, want, 32);
    }
}

typedef struct hmac_case {
    const char *key_hex; /* or NULL: key_byte repeated key_len times */
    uint8_t key_byte;
    size_t key_len;
    const char *data;      /* text, or NULL: data_byte repeated data_len times */
    uint8_t data_byte;
    size_t data_len;
    const char *mac_hex;   /* compared over its length (case 5 is truncated) */
} hmac_case;

static const hmac_case rfc4231[] = {
    {NULL, 0x0b, 20, "Hi There", 0, 0,
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"4a656665", 0, 4, "what do ya want for nothing?", 0, 0,
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {NULL, 0xaa, 20, NULL, 0xdd, 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {"0102030405060708090a0b0c0d0e0f10111213141516171819", 0, 25, NULL, 0xcd, 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {NULL, 0x0c, 20, "Test With Truncation", 0, 0, "a3b6167473100ee06e0c796c2955552b"},
    {NULL, 0xaa, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 0, 0,
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {NULL, 0xaa, 131,
     "This is a test using a larger than block-size key and a larger than block-size data. "
     "The key needs to be hashed before being used by the HMAC algorithm.",
     0, 0, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
};

static void hmac_vectors(void)
{
    for (size_t c = 0; c < sizeof rfc4231 / sizeof rfc4231[0]; c++) {
        const hmac_case *tc = &rfc4231[c];
        uint8_t key[131], data[200], mac[32], expected[32];
        if (tc->key_hex)
            hex(tc->key_hex, key, tc->key_len);
        else
            memset(key, tc->key_byte, tc->key_len);
        size_t data_len = tc->data ? strlen(tc->data) : tc->data_len;
        if (tc->data)
            memcpy(data, tc->data, data_len);
        else
            memset(data, tc->data_byte, data_len);
        size_t mac_len = strlen(tc->mac_hex) / 2;
        hex(tc->mac_hex, expected, mac_len);
        mab__hmac_key hk;
        mab__hmac_key_init(&hk, key, tc->key_len);
        mab__hmac_sha256(&hk, data, data_len, mac);
        if (memcmp(mac, expected, mac_len) != 0)
            fail_msg("RFC 4231 test case %zu: wrong HMAC", c + 1);
    }
    /* Every message length (one, two and more blocks) against libsodium. */
    uint8_t msg[300], key[32], got[32], want[32];
    for (uint32_t k = 0; k < 4; k++) {
        fill(key, sizeof key, 100 + k);
        fill(msg, sizeof msg, 200 + k);
        mab__hmac_key hk;
        mab__hmac_key_init(&hk, key, sizeof key);
        for (size_t len = 0; len <= sizeof msg; len++) {
            mab__hmac_sha256(&hk, msg, len, got);
            crypto_auth_hmacsha256(want, msg, len, key);
            assert_memory_equal(got, want, 32);
        }
    }
}

/* The vectors on the SHA extensions, then on the portable code. */
static void test_sha256_both(void **state)
{
    (void)state;
    mab__crypto_force_portable(0);
    int accelerated = mab__sha256_accelerated();
    print_message("SHA-256 on %s\n", accelerated ? "the SHA extensions" : "portable C (no SHA extensions)");
    sha256_vectors();
    hmac_vectors();
    mab__crypto_force_portable(1);
    assert_false(mab__sha256_accelerated());
    sha256_vectors();
    hmac_vectors();
    mab__crypto_force_portable(0);
    assert_int_equal(mab__sha256_accelerated(), accelerated);
}

static void check_b64(const char *bytes, const char *text)
{
    char out[64];
    size_t n = strlen(bytes);
    assert_int_equal(mab__base64url_encode(out, (const uint8_t *)bytes, n), strlen(text));
    assert_string_equal(out, text);
    assert_int_equal(MAB__BASE64URL_LEN(n), strlen(text));
    uint8_t back[64];
    size_t len = 999;
    assert_true(mab__base64url_decode(back, sizeof back, text, strlen(text), &len));
    assert_int_equal(len, n);
    assert_memory_equal(back, bytes, n);
}

static int decodes(const char *text, size_t len)
{
    uint8_t out[64];
    size_t n;
    return mab__base64url_decode(out, sizeof out, text, len, &n);
}

static void base64url_checks(void)
{
    /* RFC 4648 section 10, padding left off (section 3.2). */
    check_b64("", "");
    check_b64("f", "Zg");
    check_b64("fo", "Zm8");
    check_b64("foo", "Zm9v");
    check_b64("foob", "Zm9vYg");
    check_b64("fooba", "Zm9vYmE");
    check_b64("foobar", "Zm9vYmFy");
    /* Section 5's alphabet: 62 is '-', 63 is '_'. */
    check_b64("\xfb\xff", "-_8");
    check_b64("\xfb\xef\xbe", "----");
    check_b64("\xff\xff\xff", "____");

    /* Every 6-bit value: the text of 0x00 0x10 0x83 ... is the alphabet. */
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t all[48];
    for (int i = 0; i < 64; i += 4) {
        uint32_t g = (uint32_t)i << 18 | (uint32_t)(i + 1) << 12 | (uint32_t)(i + 2) << 6 | (uint32_t)(i + 3);
        all[i / 4 * 3] = (uint8_t)(g >> 16);
        all[i / 4 * 3 + 1] = (uint8_t)(g >> 8);
        all[i / 4 * 3 + 2] = (uint8_t)g;
    }
    char text[80];
    mab__base64url_encode(text, all, sizeof all);
    assert_string_equal(text, alphabet);

    /* Every length, all byte values, against libsodium; and back. */
    uint8_t bin[300], back[300];
    char ours[420], theirs[420];
    fill(bin, sizeof bin, 7);
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)i;
    for (size_t len = 0; len <= sizeof bin; len++) {
        size_t n = mab__base64url_encode(ours, bin + sizeof bin - len, len);
        sodium_bin2base64(theirs, sizeof theirs, bin + sizeof bin - len, len,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        assert_string_equal(ours, theirs);
        assert_int_equal(n, strlen(theirs));
        size_t m;
        assert_true(mab__base64url_decode(back, sizeof back, ours, n, &m));
        assert_int_equal(m, len);
        assert_memory_equal(back, bin + sizeof bin - len, len);
        /* One byte short of room is refused. */
        if (len)
            assert_false(mab__base64url_decode(back, len - 1, ours, n, &m));
    }

    /* Each character at each position of a 4-character group: only the
       alphabet decodes, to its index. */
    for (int c = 0; c < 256; c++) {
        const char *at = c ? strchr(alphabet, c) : NULL;
        for (int pos = 0; pos < 4; pos++) {
            char t[4] = {'A', 'A', 'A', 'A'};
            t[pos] = (char)c;
            uint8_t out[3];
            size_t n;
            int ok = mab__base64url_decode(out, sizeof out, t, 4, &n);
            if (!at) {
                if (ok)
                    fail_msg("character %d at %d decoded", c, pos);
                continue;
            }
            assert_true(ok);
            uint32_t g = (uint32_t)out[0] << 16 | (uint32_t)out[1] << 8 | out[2];
            assert_int_equal((g >> (18 - 6 * pos)) & 63, (uint32_t)(at - alphabet));
        }
    }
    /* The same in a 32-character text (the 16-wide path): every character
       at every lane of both halves. */
    for (int c = 0; c < 256; c++) {
        const char *at = c ? strchr(alphabet, c) : NULL;
        for (int pos = 0; pos < 32; pos++) {
            char t[32];
            memcpy(t, alphabet + 16, 32);
            t[pos] = (char)c;
            uint8_t out[24];
            size_t n;
            int ok = mab__base64url_decode(out, sizeof out, t, 32, &n);
            if (!at) {
                if (ok)
                    fail_msg("character %d at %d of 32 decoded", c, pos);
                continue;
            }
            assert_true(ok);
            size_t bit = 6 * (size_t)pos, byte = bit / 8;
            uint32_t window = (uint32_t)out[byte] << 8 | (byte + 1 < 24 ? out[byte + 1] : 0);
            assert_int_equal((window >> (10 - bit % 8)) & 63, (uint32_t)(at - alphabet));
        }
    }
    /* Padding, the other alphabet, a stray length. */
    assert_false(decodes("Zg==", 4));
    assert_false(decodes("Zm8=", 4));
    assert_false(decodes("Zm+v", 4));
    assert_false(decodes("Zm/v", 4));
    assert_false(decodes("Zm9vY", 5));
    assert_false(decodes("Z", 1));
    assert_true(decodes("", 0));
    /* Non-canonical twins: spare bits of the last character set ("Zg" is
       0x66 with them clear; h..v are 33..47, the same byte with some set). */
    assert_true(decodes("Zg", 2));
    for (const char *c = "hijklmnopqrstuv"; *c; c++) {
        char t[2] = {'Z', *c};
        assert_false(decodes(t, 2));
    }
    assert_true(decodes("Zm8", 3));
    assert_false(decodes("Zm9", 3));
    assert_false(decodes("Zm-", 3));
    assert_false(decodes("Zm_", 3));
}

/* The checks with SSSE3 (when the CPU has it), then with the portable code. */
static void test_base64url(void **state)
{
    (void)state;
    mab__crypto_force_portable(0);
    int accelerated = mab__base64url_accelerated();
    print_message("base64url on %s\n", accelerated ? "SSSE3" : "portable C (no SSSE3)");
    base64url_checks();
    mab__crypto_force_portable(1);
    assert_false(mab__base64url_accelerated());
    base64url_checks();
    mab__crypto_force_portable(0);
    assert_int_equal(mab__base64url_accelerated(), accelerated);
}

/* The fixture's text (its one line not a comment). */
static size_t fixture(char *text, size_t cap)
{
    FILE *f = fopen(MAB_SOURCE_DIR "/tests/fixtures/cookie_main_v2.txt", "r");
    assert_non_null(f);
    char line[MAB__COOKIE_TEXT_MAX + 2];
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#') {
            n = strcspn(line, "\n");
            assert_true(n < cap);
            memcpy(text, line, n);
            text[n] = '\0';
        }
    fclose(f);
    assert_true(n > 0);
    return n;
}

static void fixture_key(mab__mac_key *mk)
{
    uint8_t key[MAB__KEY_BYTES];
    for (int i = 0; i < MAB__KEY_BYTES; i++)
        key[i] = (uint8_t)(0xa0 + i);
    mab__mac_key_init(mk, key);
}

static mab__cookie_entry entries[MAB__COOKIE_ENTRIES_MAX];

static void test_cookie_of_main_verifies(void **state)
{
    (void)state;
    char text[MAB__COOKIE_TEXT_MAX + 1];
    size_t len = fixture(text, sizeof text);
    mab__mac_key keys[2];
    fixture_key(&keys[0]);
    size_t n = 0;
    assert_true(mab__cookie_decode(text, len, keys, 1, entries, &n));
    assert_int_equal(n, 3);
    assert_string_equal(entries[0].experiment, "color_btn");
    assert_string_equal(entries[0].arm, "green");
    for (int i = 0; i < 16; i++) {
        assert_int_equal(entries[0].assignment_id[i], (uint8_t)(i * 17));
        assert_int_equal(entries[1].assignment_id[i], (uint8_t)(255 - i));
        assert_int_equal(entries[2].assignment_id[i], (uint8_t)(3 * i + 1));
    }
    assert_int_equal(entries[0].issued, 1764600000u);
    assert_true(entries[0].probability == 0.9f);
    assert_false(entries[0].rewarded || entries[0].holdout || entries[0].not_learning);
    assert_int_equal(entries[0].n_features, 0);
    assert_string_equal(entries[1].experiment, "txt-btn");
    assert_string_equal(entries[1].arm, "casual_2");
    assert_true(entries[1].rewarded && entries[1].holdout && !entries[1].not_learning);
    assert_int_equal(entries[1].issued, 1764600123u);
    assert_true(isnan(entries[1].probability));
    assert_string_equal(entries[2].experiment, "ctx");
    assert_string_equal(entries[2].arm, "a");
    assert_true(entries[2].not_learning && !entries[2].rewarded && !entries[2].holdout);
    assert_true(entries[2].probability == 0.25f);
    const char *names[] = {"age", "mobile"};
    assert_int_equal(entries[2].n_features, 2);
    assert_int_equal(entries[2].features_hash, mab__cookie_features_hash(names, 2));
    assert_true(entries[2].features[0] == 41.5);
    assert_true(isnan(entries[2].features[1]));

    /* The same entries sign to the same text: the format is unchanged. */
    char again[MAB__COOKIE_TEXT_MAX + 1];
    assert_int_equal(mab__cookie_encode(entries, n, &keys[0], again, sizeof again), len);
    assert_string_equal(again, text);

    /* Under another key it does not verify; as the second key of a
       rotation it does. */
    uint8_t other[MAB__KEY_BYTES];
    memset(other, 0x42, sizeof other);
    keys[1] = keys[0];
    mab__mac_key_init(&keys[0], other);
    assert_false(mab__cookie_decode(text, len, keys, 1, entries, &n));
    assert_true(mab__cookie_decode(text, len, keys, 2, entries, &n));
    sodium_memzero(keys, sizeof keys);
}

/* Any one character changed, to any other of the alphabet (or out of it),
   is refused: the MAC covers every byte, base64 is canonical. */
static void test_cookie_any_change_refused(void **state)
{
    (void)state;
    char text[MAB__COOKIE_TEXT_MAX + 1];
    size_t len = fixture(text, sizeof text);
    mab__mac_key key;
    fixture_key(&key);
    size_t n;
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.";
    for (size_t i = 0; i < len; i++) {
        char saved = text[i];
        for (const char *c = alphabet; *c; c++) {
            if (*c == saved)
                continue;
            text[i] = *c;
            if (mab__cookie_decode(text, len, &key, 1, entries, &n))
                fail_msg("changed character %zu to '%c': still verified", i, *c);
        }
        text[i] = saved;
    }
    assert_true(mab__cookie_decode(text, len, &key, 1, entries, &n));
    /* Shortened or lengthened. */
    for (size_t cut = 1; cut < 8; cut++)
        assert_false(mab__cookie_decode(text, len - cut, &key, 1, entries, &n));
    text[len] = 'A';
    text[len + 1] = '\0';
    assert_false(mab__cookie_decode(text, len + 1, &key, 1, entries, &n));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_both),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_cookie_of_main_verifies),
        cmocka_unit_test(test_cookie_any_change_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
