/*
 * rng.h - the random streams the core hands to policies.
 *
 * Each thread using an engine gets its own stream (xoshiro256**), seeded
 * from libsodium's randombytes or, when the config sets "seed", from that
 * seed, so simulations and tests are reproducible. A mab_rng is not
 * thread-safe: a policy only uses the one it is given, during the call.
 *
 * Changelog (as SQLite's iVersion notes: what each version added):
 *  - 0.1: everything below.
 *  - 0.2: nothing added; mab_rng_gamma() and mab_rng_beta() return NaN for
 *    parameters that are not > 0 (they were undefined there).
 */
#ifndef MAB_RNG_H
#define MAB_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "mab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mab_rng mab_rng;

/** @brief A new stream from a 64-bit seed; NULL when out of memory. */
MAB_EXPORT mab_rng *mab_rng_create(uint64_t seed);

/** @brief A new stream seeded from the operating system (libsodium). */
MAB_EXPORT mab_rng *mab_rng_create_random(void);

/** @brief Free a stream. NULL is fine. */
MAB_EXPORT void mab_rng_destroy(mab_rng *rng);

/** @brief 64 uniformly random bits. */
MAB_EXPORT uint64_t mab_rng_u64(mab_rng *rng);

/** @brief Uniform double in [0, 1), 53 bits of precision. */
MAB_EXPORT double mab_rng_uniform(mab_rng *rng);

/** @brief Uniform integer in [0, n), without modulo bias. n must be > 0. */
MAB_EXPORT uint64_t mab_rng_below(mab_rng *rng, uint64_t n);

/** @brief Standard normal variate. */
MAB_EXPORT double mab_rng_normal(mab_rng *rng);

/** @brief Gamma(shape, 1) variate, shape > 0 (Marsaglia & Tsang 2000); NaN when
 *         shape is not > 0. */
MAB_EXPORT double mab_rng_gamma(mab_rng *rng, double shape);

/** @brief Beta(a, b) variate, a > 0 and b > 0, as X/(X+Y) of two gammas; NaN
 *         when a or b is not > 0. */
MAB_EXPORT double mab_rng_beta(mab_rng *rng, double a, double b);

#ifdef __cplusplus
}
#endif
#endif /* MAB_RNG_H */
