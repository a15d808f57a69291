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

uint64_t mab_rng_u64(mab_rng *rng)
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

double mab_rng_uniform(mab_rng *rng)
{
    return (double)(mab_rng_u64(rng) >> 11) * 0x1.0p-53;
}

uint64_t mab_rng_below(mab_rng *rng, uint64_t n)
{
    /* Lemire's multiply-shift with rejection of the biased low range. */
    unsigned __int128 m = (unsigned __int128)mab_rng_u64(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (unsigned __int128)mab_rng_u64(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double mab_rng_normal(mab_rng *rng)
{
    /* Marsaglia's polar method; the second variate is dropped to keep the
       stream stateless beyond its 256 bits. */
    double u, v, s;
    do {
        u = 2.0 * mab_rng_uniform(rng) - 1.0;
        v = 2.0 * mab_rng_uniform(rng) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    return u * sqrt(-2.0 * log(s) / s);
}

double mab_rng_gamma(mab_rng *rng, double shape)
{
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang, section 6). */
        double u;
        do {
            u = mab_rng_uniform(rng);
        } while (u == 0.0);
        return mab_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = mab_rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = mab_rng_uniform(rng);
        double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2)
            return d * v;
        if (u > 0.0 && log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double mab_rng_beta(mab_rng *rng, double a, double b)
{
    double x = mab_rng_gamma(rng, a);
    double y = mab_rng_gamma(rng, b);
    double sum = x + y;
    /* Both gammas can underflow to 0 for tiny shapes; then pick by the means. */
    if (sum == 0.0)
        return mab_rng_uniform(rng) < a / (a + b) ? 1.0 : 0.0;
    return x / sum;
}
