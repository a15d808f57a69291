/*
 * cookie_bench.c - the cookie's primitives, 1000 calls each, for
 * callgrind (tests/bench/cookie_callgrind.sh): HMAC-SHA-256 of a 44-byte
 * body, base64url of 76 bytes and back (102 characters), and a whole
 * one-entry cookie encoded and decoded. Each loop is a function of its own
 * so callgrind_annotate gives its inclusive count. Compiled from the
 * sources (their symbols are hidden in libmab).
 */
#include <stdio.h>
#include <string.h>

#include "cookie.h"
#include "crypto.h"

#define CALLS 1000

__attribute__((noinline)) static void bench_hmac(const mab__hmac_key *k, const uint8_t *m,
                                                 uint8_t *o)
{
    for (int i = 0; i < CALLS; i++) {
        mab__hmac_sha256(k, m, 44, o);
        __asm__ volatile("" ::: "memory");
    }
}

__attribute__((noinline)) static void bench_encode(char *t, const uint8_t *m)
{
    for (int i = 0; i < CALLS; i++) {
        mab__base64url_encode(t, m, 76);
        __asm__ volatile("" ::: "memory");
    }
}

__attribute__((noinline)) static int bench_decode(uint8_t *o, const char *t)
{
    int ok = 0;
    size_t n;
    for (int i = 0; i < CALLS; i++) {
        ok += mab__base64url_decode(o, 100, t, 102, &n);
        __asm__ volatile("" ::: "memory");
    }
    return ok;
}

__attribute__((noinline)) static size_t bench_cookie_encode(const mab__cookie_entry *e,
                                                            const mab__mac_key *k, char *t)
{
    size_t len = 0;
    for (int i = 0; i < CALLS; i++) {
        len = mab__cookie_encode(e, 1, k, t, MAB__COOKIE_TEXT_MAX + 1);
        __asm__ volatile("" ::: "memory");
    }
    return len;
}

__attribute__((noinline)) static int bench_cookie_decode(mab__cookie_entry *e,
                                                         const mab__mac_key *k, const char *t,
                                                         size_t len)
{
    int ok = 0;
    size_t n;
    for (int i = 0; i < CALLS; i++) {
        ok += mab__cookie_decode(t, len, k, 1, e, &n);
        __asm__ volatile("" ::: "memory");
    }
    return ok;
}

int main(void)
{
    uint8_t key[MAB__KEY_BYTES] = {1}, msg[100], out[100];
    for (int i = 0; i < 100; i++)
        msg[i] = (uint8_t)(i * 37);
    mab__hmac_key hk;
    mab__hmac_key_init(&hk, key, sizeof key);
    char text[200];
    bench_hmac(&hk, msg, out);
    bench_encode(text, msg);
    int decoded = bench_decode(out, text);
    static mab__cookie_entry e[MAB__COOKIE_ENTRIES_MAX];
    strcpy(e[0].experiment, "color_btn");
    strcpy(e[0].arm, "green");
    e[0].issued = 1764600000u;
    mab__mac_key mk;
    mab__mac_key_init(&mk, key);
    char cookie[MAB__COOKIE_TEXT_MAX + 1];
    size_t len = bench_cookie_encode(e, &mk, cookie);
    int verified = bench_cookie_decode(e, &mk, cookie, len);
    printf("SHA extensions: %s, SSSE3: %s; %d of %d decoded, %d of %d verified (%zu characters)\n",
           mab__sha256_accelerated() ? "yes" : "no", mab__base64url_accelerated() ? "yes" : "no",
           decoded, CALLS, verified, CALLS, len);
    return decoded == CALLS && verified == CALLS ? 0 : 1;
}
