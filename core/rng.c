/*
 * rng.c - per-thread random streams and the distributions policies need.
 *
 * The generator is xoshiro256** (Blackman & Vigna 2018): fast, 256 bits of
 * state, good statistical quality. It is not cryptographic and need not be:
 * it only decides which arm to show. Seeds come from libsodium when the
 * config gives none; a given seed is expanded with splitmix64 as the
 * authors recommend.
 */
#include <math.h>
#include <stdlib.h>

#include <sodium.h>

#include "internal.h"
#include "mab/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void mab__rng_seed(mab_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

void mab__rng_seed_random(mab_rng *rng)
{
    do {
        randombytes_buf(rng->s, sizeof rng->s);
    } while ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0);
}

mab_rng *mab_rng_create(uint64_t seed)
{
    mab_rng *rng = malloc(sizeof *rng);
    if (rng)
        mab__rng_seed(rng, seed);
    return rng;
}

mab_rng *mab_rng_create_random(void)
{
    if (sodium_init() < 0)
        return NULL;
    mab_rng *rng = malloc(sizeof *rng);
    if (rng)
        mab__rng_seed_random(rng);
    return rng;
}

void mab_rng_destroy(mab_rng *rng)
{
    free(rng);
}

/* The generator itself, inlined into the distributions below. */
static inline uint64_t next_u64(mab_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline double next_uniform(mab_rng *rng)
{
    return (double)(next_u64(rng) >> 11) * 0x1.0p-53;
}

uint64_t mab_rng_u64(mab_rng *rng)
{
    return next_u64(rng);
}

double mab_rng_uniform(mab_rng *rng)
{
    return next_uniform(rng);
}

uint64_t mab_rng_below(mab_rng *rng, uint64_t n)
{
    /* Lemire's multiply-shift with rejection of the biased low range. */
    unsigned __int128 m = (unsigned __int128)next_u64(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (unsigned __int128)next_u64(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/*
 * Standard normal by the ziggurat method (Marsaglia & Tsang 2000) with 128
 * layers of equal area V under f(x) = exp(-x^2/2). Layer 0 is the base
 * rectangle [0, r] x [0, f(r)] plus the tail beyond r, drawn as a rectangle
 * of width V / f(r); layer i >= 1 spans heights f(edge[i]) .. f(edge[i+1]).
 * Most draws land left of edge[i+1], inside the curve: one 64-bit draw, a
 * multiply and a comparison.
 */
#define ZIG_LAYERS 128
#define ZIG_R 3.442619855899
#define ZIG_V 9.91256303526217e-3

static double zig_edge[ZIG_LAYERS + 1]; /* right edges, edge[LAYERS] = 0 */
static double zig_f[ZIG_LAYERS + 1];    /* f(edge[i]) */

__attribute__((constructor)) static void zig_tables(void)
{
    zig_edge[0] = ZIG_V / exp(-0.5 * ZIG_R * ZIG_R);
    zig_edge[1] = ZIG_R;
    for (int i = 1; i < ZIG_LAYERS - 1; i++) {
        double y = exp(-0.5 * zig_edge[i] * zig_edge[i]) + ZIG_V / zig_edge[i];
        zig_edge[i + 1] = y < 1.0 ? sqrt(-2.0 * log(y)) : 0.0;
    }
    zig_edge[ZIG_LAYERS] = 0.0;
    for (int i = 0; i <= ZIG_LAYERS; i++)
        zig_f[i] = exp(-0.5 * zig_edge[i] * zig_edge[i]);
}

static double normal_tail(mab_rng *rng)
{
    /* Marsaglia (1964): x = r + a with a ~ Exp(r), accepted with the ratio. */
    for (;;) {
        double a = -log(1.0 - next_uniform(rng)) / ZIG_R;
        double b = -log(1.0 - next_uniform(rng));
        if (b + b > a * a)
            return ZIG_R + a;
    }
}

static inline double next_normal(mab_rng *rng)
{
    for (;;) {
        uint64_t bits = next_u64(rng);
        unsigned layer = (unsigned)(bits & (ZIG_LAYERS - 1));
        int negative = (int)((bits >> 7) & 1);
        double x = (double)(bits >> 11) * 0x1.0p-53 * zig_edge[layer];
        if (x < zig_edge[layer + 1])
            return negative ? -x : x;
        if (layer == 0) {
            x = normal_tail(rng);
            return negative ? -x : x;
        }
        double y = zig_f[layer] + next_uniform(rng) * (zig_f[layer + 1] - zig_f[layer]);
        if (y < exp(-0.5 * x * x))
            return negative ? -x : x;
    }
}

double mab_rng_normal(mab_rng *rng)
{
    return next_normal(rng);
}

static double next_gamma(mab_rng *rng, double shape)
{
    /* Outside the domain (also NaN): the boost below would recurse forever
       on a shape so negative that adding 1 does not change it. */
    if (!(shape > 0.0))
        return NAN;
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang, section 6). */
        double u;
        do {
            u = next_uniform(rng);
        } while (u == 0.0);
        return next_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = next_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = next_uniform(rng);
        double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2)
            return d * v;
        if (u > 0.0 && log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double mab_rng_gamma(mab_rng *rng, double shape)
{
    return next_gamma(rng, shape);
}

double mab_rng_beta(mab_rng *rng, double a, double b)
{
    double x = next_gamma(rng, a);
    double y = next_gamma(rng, b);
    double sum = x + y;
    /* Both gammas can underflow to 0 for tiny shapes; then pick by the means. */
    if (sum == 0.0)
        return next_uniform(rng) < a / (a + b) ? 1.0 : 0.0;
    return x / sum;
}
