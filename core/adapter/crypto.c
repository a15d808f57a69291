/*
 * crypto.c - SHA-256, HMAC-SHA-256 over precomputed key states, and
 * constant-time base64url for the cookie (crypto.h). libsodium's versions
 * cost the cookie ~25,000 instructions a request (two portable SHA-256
 * compressions of ~3,500 each, ~95 instructions per base64 character, the
 * text encoded twice on decoding to check it is canonical); these cost a
 * few hundred (docs/benchmarks.md, "nginx module").
 */
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_CODE 1
#include <cpuid.h>
#include <immintrin.h>
#endif

enum { FEAT_KNOWN = 1, FEAT_SHA = 2, FEAT_SSSE3 = 4 };

/* FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of
   the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* Section 5.3.3: the initial hash value. */
static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t rotr(uint32_t x, unsigned n)
{
    return x >> n | x << (32 - n);
}

#define BSIG0(x) (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22))
#define BSIG1(x) (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25))
#define SSIG0(x) (rotr(x, 7) ^ rotr(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (rotr(x, 17) ^ rotr(x, 19) ^ ((x) >> 10))
/* Round j + i: the eight working variables are renamed instead of moved
   (round i + 1 passes h, a, ..., g as a, b, ..., h), so a round is the two
   sums alone. */
#define ROUND(a, b, c, d, e, f, g, h, i)                                              \
    do {                                                                            \
        if (j)                                                                      \
            w[i] += SSIG1(w[((i) + 14) & 15]) + w[((i) + 9) & 15] +                 \
                    SSIG0(w[((i) + 1) & 15]);                                       \
        uint32_t t1 = h + BSIG1(e) + (g ^ (e & (f ^ g))) + K[j + (i)] + w[i];        \
        d += t1;                                                                    \
        h = t1 + BSIG0(a) + ((a & b) | (c & (a | b)));                              \
    } while (0)

/* Section 6.2.2, `n` blocks of 64 bytes into `st`: 4 x 16 rounds, the
   message schedule kept in 16 words updated in place. */
static void compress_portable(uint32_t st[8], const uint8_t *p, size_t n)
{
    for (; n; n--, p += MAB__SHA256_BLOCK) {
        uint32_t w[16];
        for (int t = 0; t < 16; t++)
            w[t] = load_be32(p + 4 * t);
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
        uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
        for (int j = 0; j < 64; j += 16) {
            ROUND(a, b, c, d, e, f, g, h, 0);
            ROUND(h, a, b, c, d, e, f, g, 1);
            ROUND(g, h, a, b, c, d, e, f, 2);
            ROUND(f, g, h, a, b, c, d, e, 3);
            ROUND(e, f, g, h, a, b, c, d, 4);
            ROUND(d, e, f, g, h, a, b, c, 5);
            ROUND(c, d, e, f, g, h, a, b, 6);
            ROUND(b, c, d, e, f, g, h, a, 7);
            ROUND(a, b, c, d, e, f, g, h, 8);
            ROUND(h, a, b, c, d, e, f, g, 9);
            ROUND(g, h, a, b, c, d, e, f, 10);
            ROUND(f, g, h, a, b, c, d, e, 11);
            ROUND(e, f, g, h, a, b, c, d, 12);
            ROUND(d, e, f, g, h, a, b, c, 13);
            ROUND(c, d, e, f, g, h, a, b, 14);
            ROUND(b, c, d, e, f, g, h, a, 15);
        }
        st[0] += a;
        st[1] += b;
        st[2] += c;
        st[3] += d;
        st[4] += e;
        st[5] += f;
        st[6] += g;
        st[7] += h;
        sodium_memzero(w, sizeof w);
    }
}
#undef ROUND

#ifdef HAVE_X86_CODE
/*
 * The same with the SHA extensions: the state as two vectors, ABEF and
 * CDGH (A in the top lane), sha256rnds2 doing two rounds, sha256msg1/2 the
 * message schedule four words at a time.
 */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_sha_ni(uint32_t st[8],
                                                                        const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)(const void *)st);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)(const void *)(st + 4));
    __m128i badc = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(badc, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, badc, 0xF0);
    for (; n; n--, p += MAB__SHA256_BLOCK) {
        __m128i abef0 = abef, cdgh0 = cdgh, m[4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m128i w;
            if (i < 4) {
                w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i)),
                                     bswap);
            } else {
                /* W[t-16] + s0(W[t-15]), + W[t-7], then + s1(W[t-2]) */
                w = _mm_sha256msg1_epu32(m[i & 3], m[(i + 1) & 3]);
                w = _mm_add_epi32(w, _mm_alignr_epi8(m[(i + 3) & 3], m[(i + 2) & 3], 4));
                w = _mm_sha256msg2_epu32(w, m[(i + 3) & 3]);
            }
            m[i & 3] = w;
            __m128i wk = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)(const void *)&K[4 * i]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)(void *)st, _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(void *)(st + 4), _mm_alignr_epi8(dchg, feba, 8));
}

/* CPUID leaf 1 ECX bit 9 (SSSE3) and 19 (SSE4.1), leaf 7 EBX bit 29 (SHA). */
static int cpu_features(void)
{
    unsigned a, b, c, d;
    int f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (ssse3)
        f |= FEAT_SSSE3;
    if (ssse3 && sse41 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1))
        f |= FEAT_SHA;
    return f;
}
#endif

/* Decided once; a race only computes the same answer twice. */
static _Atomic int features = 0;
static _Atomic int forced_portable = 0;

static int cpu(void)
{
    int f = atomic_load_explicit(&features, memory_order_relaxed);
    if (f & FEAT_KNOWN)
        return f;
    f = FEAT_KNOWN;
#ifdef HAVE_X86_CODE
    if (!atomic_load_explicit(&forced_portable, memory_order_relaxed))
        f |= cpu_features();
#endif
    atomic_store_explicit(&features, f, memory_order_relaxed);
    return f;
}

static void compress(uint32_t st[8], const uint8_t *p, size_t n)
{
#ifdef HAVE_X86_CODE
    if (cpu() & FEAT_SHA) {
        compress_sha_ni(st, p, n);
        return;
    }
#endif
    compress_portable(st, p, n);
}

int mab__sha256_accelerated(void)
{
    return (cpu() & FEAT_SHA) != 0;
}

int mab__base64url_accelerated(void)
{
    return (cpu() & FEAT_SSSE3) != 0;
}

void mab__crypto_force_portable(int on)
{
    atomic_store_explicit(&forced_portable, on ? 1 : 0, memory_order_relaxed);
    atomic_store_explicit(&features, 0, memory_order_relaxed);
}

/* The last tail_len (< 64) bytes of a message of `total` bytes, padded
   (section 5.1.1): one block, or two when the length does not fit. The
   copy is zeroed when the message is `secret` (a long key being hashed);
   an HMAC's message is the cookie, sent in the clear. */
static void finish(uint32_t st[8], const uint8_t *tail, size_t tail_len, uint64_t total,
                   int secret)
{
    uint8_t block[2 * MAB__SHA256_BLOCK];
    size_t blocks = tail_len < 56 ? 1 : 2, end = blocks * MAB__SHA256_BLOCK;
    memcpy(block, tail, tail_len);
    block[tail_len] = 0x80;
    memset(block + tail_len + 1, 0, end - 8 - tail_len - 1);
    store_be32(block + end - 8, (uint32_t)(total >> 29));
    store_be32(block + end - 4, (uint32_t)(total << 3));
    compress(st, block, blocks);
    if (secret)
        sodium_memzero(block, end);
}

static void digest(const uint32_t st[8], uint8_t out[MAB__SHA256_BYTES])
{
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, st[i]);
}

void mab__sha256(const uint8_t *msg, size_t len, uint8_t out[MAB__SHA256_BYTES])
{
    uint32_t st[8];
    memcpy(st, IV, sizeof st);
    size_t full = len / MAB__SHA256_BLOCK;
    compress(st, msg, full);
    finish(st, msg + full * MAB__SHA256_BLOCK, len % MAB__SHA256_BLOCK, len, 1);
    digest(st, out);
    sodium_memzero(st, sizeof st);
}

void mab__hmac_key_init(mab__hmac_key *hk, const uint8_t *key, size_t len)
{
    uint8_t k[MAB__SHA256_BLOCK] = {0}, pad[MAB__SHA256_BLOCK];
    if (len > MAB__SHA256_BLOCK)
        mab__sha256(key, len, k);
    else
        memcpy(k, key, len);
    for (int i = 0; i < MAB__SHA256_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    memcpy(hk->inner, IV, sizeof IV);
    compress(hk->inner, pad, 1);
    for (int i = 0; i < MAB__SHA256_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    memcpy(hk->outer, IV, sizeof IV);
    compress(hk->outer, pad, 1);
    sodium_memzero(k, sizeof k);
    sodium_memzero(pad, sizeof pad);
}

void mab__hmac_sha256(const mab__hmac_key *hk, const uint8_t *msg, size_t len,
                      uint8_t out[MAB__SHA256_BYTES])
{
    uint32_t st[8];
    memcpy(st, hk->inner, sizeof st);
    size_t full = len / MAB__SHA256_BLOCK;
    compress(st, msg, full);
    finish(st, msg + full * MAB__SHA256_BLOCK, len % MAB__SHA256_BLOCK,
           MAB__SHA256_BLOCK + (uint64_t)len, 0);
    /* The outer hash: the 32-byte inner digest after the opad block, one
       padded block of a 96-byte message. */
    uint8_t block[MAB__SHA256_BLOCK] = {0};
    digest(st, block);
    block[MAB__SHA256_BYTES] = 0x80;
    block[62] = (96 * 8) >> 8;
    block[63] = (96 * 8) & 0xff;
    memcpy(st, hk->outer, sizeof st);
    compress(st, block, 1);
    digest(st, out);
    /* The chaining values came from the key's states: not left behind.
       The inner digest in `block` is no secret (the MAC is its hash). */
    sodium_memzero(st, sizeof st);
}

/* ---- base64url ------------------------------------------------------- */

/* All ones (0xffffff) when lo <= c <= hi, else 0, for c, lo, hi in 0..255:
   each difference wraps below zero exactly when its side holds. */
static uint32_t in_range(uint32_t c, uint32_t lo, uint32_t hi)
{
    return ((lo - 1 - c) & (c - hi - 1)) >> 8;
}

/* The character of a 6-bit value: A-Z a-z 0-9 - _, by adding the distance
   from each range to the next where the value lies past it. */
static char encode6(uint32_t x)
{
    uint32_t c = x + 'A';
    c += ((25 - x) >> 8) & ('a' - 'Z' - 1);       /* 26..51: a-z */
    c -= ((51 - x) >> 8) & ('z' + 1 - '0');       /* 52..61: 0-9 */
    c -= ((61 - x) >> 8) & ('9' + 1 - '-');       /* 62: - */
    c += ((62 - x) >> 8) & ('_' - '-' - 1);       /* 63: _ */
    return (char)c;
}

/* The 6-bit value of a character; *bad gets a bit set when c is outside
   the alphabet. */
static uint32_t decode6(uint8_t ch, uint32_t *bad)
{
    uint32_t c = ch, m, v = 0, valid = 0;
    m = in_range(c, 'A', 'Z');
    v |= m & (c - 'A');
    valid |= m;
    m = in_range(c, 'a', 'z');
    v |= m & (c - 'a' + 26);
    valid |= m;
    m = in_range(c, '0', '9');
    v |= m & (c - '0' + 52);
    valid |= m;
    m = in_range(c, '-', '-');
    v |= m & 62;
    valid |= m;
    m = in_range(c, '_', '_');
    v |= m & 63;
    valid |= m;
    *bad |= ~valid & 1;
    return v & 63;
}

/*
 * Eight characters at a time in a 64-bit word, one per byte (SWAR): the
 * same arithmetic as encode6/decode6 lane by lane, each step kept within
 * its byte (no carry or borrow crosses into the next), so it is branch-free
 * and table-free too, at ~7 instructions a character instead of ~60.
 */
#define ONES 0x0101010101010101ull
#define HIGH 0x8080808080808080ull

/* 0x80 in each byte whose value (at most 127) is at least k (1..128). */
static uint64_t swar_ge(uint64_t x, unsigned k)
{
    return (x + (128 - k) * ONES) & HIGH;
}

/* Eight 6-bit values to their characters. */
static uint64_t swar_encode6(uint64_t x)
{
    uint64_t c = x + 'A' * ONES;
    c += (swar_ge(x, 26) >> 7) * ('a' - 'Z' - 1);
    c -= (swar_ge(x, 52) >> 7) * ('z' + 1 - '0');
    c -= (swar_ge(x, 62) >> 7) * ('9' + 1 - '-');
    c += (swar_ge(x, 63) >> 7) * ('_' - '-' - 1);
    return c;
}

/* Eight characters to their 6-bit values; HIGH bits of *bad set for each
   character outside the alphabet. */
static uint64_t swar_decode6(uint64_t c, uint64_t *bad)
{
    uint64_t hi = c & HIGH, c7 = c & ~HIGH;
    uint64_t upper = swar_ge(c7, 'A') & ~swar_ge(c7, 'Z' + 1);
    uint64_t lower = swar_ge(c7, 'a') & ~swar_ge(c7, 'z' + 1);
    uint64_t digit = swar_ge(c7, '0') & ~swar_ge(c7, '9' + 1);
    uint64_t dash = swar_ge(c7, '-') & ~swar_ge(c7, '-' + 1);
    uint64_t under = swar_ge(c7, '_') & ~swar_ge(c7, '_' + 1);
    *bad |= hi | (~(upper | lower | digit | dash | under) & HIGH);
    /* The amount to add, mod 256 in each byte, by range. */
    uint64_t add = ((upper >> 7) * 0xff & (uint64_t)(256 - 'A') * ONES) |
                   ((lower >> 7) * 0xff & (uint64_t)(256 - 'a' + 26) * ONES) |
                   ((digit >> 7) * 0xff & (uint64_t)(52 - '0') * ONES) |
                   ((dash >> 7) * 0xff & (uint64_t)(62 - '-') * ONES) |
                   ((under >> 7) * 0xff & (uint64_t)(256 + 63 - '_') * ONES);
    /* Bytewise c7 + add without carries between bytes. */
    uint64_t sum = ((c7 & ~HIGH) + (add & ~HIGH)) ^ ((c7 ^ add) & HIGH);
    return sum & 0x3f3f3f3f3f3f3f3full;
}

/* Little-endian 8-byte load and store (one instruction each on x86). */
static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

/* The four 6-bit values of a 24-bit group, the first in the low byte. */
static uint64_t split24(uint32_t g)
{
    return (uint64_t)((g >> 18) | ((g >> 4) & 0x3f00) | ((g << 10) & 0x3f0000) |
                      ((g << 24) & 0x3f000000));
}

#ifdef HAVE_X86_CODE
/*
 * Sixteen characters at a time with SSSE3. Encoding: pshufb puts each
 * group's bytes b0 b1 b2 as b1 b0 b2 b1 in a 32-bit lane, so that its four
 * 6-bit values sit at fixed bits of the two 16-bit halves; a high multiply
 * and a low multiply move each to the bottom of its own byte; the values
 * become characters as in swar_encode6, with byte compares for masks.
 * Returns the bytes consumed (a multiple of 12, reading at most len).
 */
__attribute__((target("ssse3"))) static size_t encode_ssse3(uint8_t *o, const uint8_t *in,
                                                            size_t len)
{
    const __m128i spread = _mm_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    size_t i = 0;
    for (; i + 16 <= len; i += 12, o += 16) {
        __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(in + i)),
                                     spread);
        /* first and third value: bits 15..10 and 11..6 of the halves */
        __m128i ac = _mm_mulhi_epu16(_mm_and_si128(b, _mm_set1_epi32(0x0fc0fc00)),
                                     _mm_set1_epi32(0x04000040));
        /* second and fourth: bits 9..4 and 5..0, moved to the high bytes */
        __m128i bd = _mm_mullo_epi16(_mm_and_si128(b, _mm_set1_epi32(0x003f03f0)),
                                     _mm_set1_epi32(0x01000010));
        __m128i x = _mm_or_si128(ac, bd);
        __m128i c = _mm_add_epi8(x, _mm_set1_epi8('A'));
        c = _mm_add_epi8(c, _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(25)),
                                          _mm_set1_epi8('a' - 'Z' - 1)));
        c = _mm_sub_epi8(c, _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(51)),
                                          _mm_set1_epi8('z' + 1 - '0')));
        c = _mm_sub_epi8(c, _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(61)),
                                          _mm_set1_epi8('9' + 1 - '-')));
        c = _mm_add_epi8(c, _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(62)),
                                          _mm_set1_epi8('_' - '-' - 1)));
        _mm_storeu_si128((__m128i *)(void *)o, c);
    }
    return i;
}

/* All ones in each byte of c within lo..hi (signed compares: a byte of
   128 or more is negative, outside every range). */
__attribute__((target("ssse3"))) static __m128i range_ssse3(__m128i c, char lo, char hi)
{
    return _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8((char)(lo - 1))),
                         _mm_cmpgt_epi8(_mm_set1_epi8((char)(hi + 1)), c));
}

/*
 * Decoding sixteen characters: each range gives a mask and the amount to
 * add; pmaddubsw joins pairs of values into 12 bits, pmaddwd pairs of
 * those into 24, pshufb puts the bytes in order. *bad gets bits for
 * characters outside the alphabet. Returns the characters consumed (a
 * multiple of 16; 12 bytes written for each 16).
 */
__attribute__((target("ssse3"))) static size_t decode_ssse3(uint8_t *o, const uint8_t *s,
                                                            size_t len, uint32_t *bad)
{
    const __m128i order = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    __m128i invalid = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= len; i += 16, o += 12) {
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i upper = range_ssse3(c, 'A', 'Z'), lower = range_ssse3(c, 'a', 'z');
        __m128i digit = range_ssse3(c, '0', '9');
        __m128i dash = _mm_cmpeq_epi8(c, _mm_set1_epi8('-'));
        __m128i under = _mm_cmpeq_epi8(c, _mm_set1_epi8('_'));
        __m128i valid = _mm_or_si128(_mm_or_si128(upper, lower),
                                     _mm_or_si128(digit, _mm_or_si128(dash, under)));
        invalid = _mm_or_si128(invalid, _mm_andnot_si128(valid, _mm_set1_epi8(-1)));
        __m128i add = _mm_and_si128(upper, _mm_set1_epi8((char)-'A'));
        add = _mm_or_si128(add, _mm_and_si128(lower, _mm_set1_epi8((char)(26 - 'a'))));
        add = _mm_or_si128(add, _mm_and_si128(digit, _mm_set1_epi8(52 - '0')));
        add = _mm_or_si128(add, _mm_and_si128(dash, _mm_set1_epi8(62 - '-')));
        add = _mm_or_si128(add, _mm_and_si128(under, _mm_set1_epi8((char)(63 - '_'))));
        __m128i x = _mm_add_epi8(c, add);
        __m128i pairs = _mm_maddubs_epi16(x, _mm_set1_epi32(0x01400140));
        __m128i groups = _mm_madd_epi16(pairs, _mm_set1_epi32(0x00011000));
        __m128i bytes = _mm_shuffle_epi8(groups, order);
        _mm_storel_epi64((__m128i *)(void *)o, bytes);
        uint32_t last = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(bytes, 8));
        memcpy(o + 8, &last, 4);
    }
    *bad |= (uint32_t)_mm_movemask_epi8(invalid);
    return i;
}
#endif

size_t mab__base64url_encode(char *out, const uint8_t *in, size_t len)
{
    uint8_t *o = (uint8_t *)out;
    size_t i = 0;
#ifdef HAVE_X86_CODE
    if (cpu() & FEAT_SSSE3) {
        i = encode_ssse3(o, in, len);
        o += i / 3 * 4;
        /* The last (under 16) bytes through the same code, zero-padded:
           the padding's zero bits are the canonical spare bits. */
        size_t rest = len - i, chars = MAB__BASE64URL_LEN(rest);
        if (rest) {
            uint8_t pad[32] = {0}, text[32];
            memcpy(pad, in + i, rest);
            encode_ssse3(text, pad, sizeof pad);
            memcpy(o, text, chars);
            o += chars;
        }
        *o = '\0';
        return (size_t)(o - (uint8_t *)out);
    }
#endif
    for (; i + 6 <= len; i += 6, o += 8) {
        uint32_t g0 = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        uint32_t g1 = (uint32_t)in[i + 3] << 16 | (uint32_t)in[i + 4] << 8 | in[i + 5];
        store_le64(o, swar_encode6(split24(g0) | split24(g1) << 32));
    }
    for (; i + 3 <= len; i += 3, o += 4) {
        uint32_t g = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        o[0] = (uint8_t)encode6(g >> 18);
        o[1] = (uint8_t)encode6((g >> 12) & 63);
        o[2] = (uint8_t)encode6((g >> 6) & 63);
        o[3] = (uint8_t)encode6(g & 63);
    }
    if (len - i == 1) {
        uint32_t g = (uint32_t)in[i] << 16;
        *o++ = (uint8_t)encode6(g >> 18);
        *o++ = (uint8_t)encode6((g >> 12) & 63);
    } else if (len - i == 2) {
        uint32_t g = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = (uint8_t)encode6(g >> 18);
        *o++ = (uint8_t)encode6((g >> 12) & 63);
        *o++ = (uint8_t)encode6((g >> 6) & 63);
    }
    *o = '\0';
    return (size_t)(o - (uint8_t *)out);
}

int mab__base64url_decode(uint8_t *out, size_t cap, const char *in, size_t len, size_t *out_len)
{
    const uint8_t *s = (const uint8_t *)in;
    size_t rest = len % 4, size = len / 4 * 3 + (rest ? rest - 1 : 0);
    if (rest == 1 || size > cap)
        return 0;
    uint32_t bad = 0;
    uint64_t bad8 = 0;
    size_t i = 0;
    uint8_t *o = out;
#ifdef HAVE_X86_CODE
    if (cpu() & FEAT_SSSE3) {
        i = decode_ssse3(o, s, len, &bad);
        o += i / 4 * 3;
        /* The last (under 16) characters through the same code, padded
           with 'A' (zero bits); then the spare bits of the last one. */
        if (i < len) {
            uint8_t pad[16], bytes[12];
            memset(pad, 'A', sizeof pad);
            memcpy(pad, s + i, len - i);
            decode_ssse3(bytes, pad, sizeof pad, &bad);
            memcpy(o, bytes, size - (size_t)(o - out));
            uint32_t last = decode6(s[len - 1], &bad);
            bad |= last & (rest == 2 ? 15 : rest == 3 ? 3 : 0);
        }
        if (bad)
            return 0;
        *out_len = size;
        return 1;
    }
#endif
    for (; i + 8 <= len; i += 8, o += 6) {
        uint64_t x = swar_decode6(load_le64(s + i), &bad8);
        /* Pairs of values into 12 bits, then pairs of those into 24. */
        uint64_t p = (x & 0x003f003f003f003full) << 6 | ((x >> 8) & 0x003f003f003f003full);
        uint64_t q = (p & 0x00000fff00000fffull) << 12 | ((p >> 16) & 0x00000fff00000fffull);
        o[0] = (uint8_t)(q >> 16);
        o[1] = (uint8_t)(q >> 8);
        o[2] = (uint8_t)q;
        o[3] = (uint8_t)(q >> 48);
        o[4] = (uint8_t)(q >> 40);
        o[5] = (uint8_t)(q >> 32);
    }
    bad |= bad8 != 0;
    for (; i + 4 <= len; i += 4, o += 3) {
        uint32_t g = decode6(s[i], &bad) << 18 | decode6(s[i + 1], &bad) << 12 |
                     decode6(s[i + 2], &bad) << 6 | decode6(s[i + 3], &bad);
        o[0] = (uint8_t)(g >> 16);
        o[1] = (uint8_t)(g >> 8);
        o[2] = (uint8_t)g;
    }
    if (rest == 2) {
        uint32_t g = decode6(s[i], &bad) << 18 | decode6(s[i + 1], &bad) << 12;
        bad |= (g >> 12) & 15; /* 4 bits past the byte */
        o[0] = (uint8_t)(g >> 16);
    } else if (rest == 3) {
        uint32_t g = decode6(s[i], &bad) << 18 | decode6(s[i + 1], &bad) << 12 |
                     decode6(s[i + 2], &bad) << 6;
        bad |= (g >> 6) & 3; /* 2 bits past the two bytes */
        o[0] = (uint8_t)(g >> 16);
        o[1] = (uint8_t)(g >> 8);
    }
    if (bad)
        return 0;
    *out_len = size;
    return 1;
}
