/*
 * test_rng.c - the random streams: reproducible from a seed, and the
 * distributions policies draw from follow their laws (Kolmogorov-Smirnov
 * against exact CDFs over 100,000 draws, at p < 1e-6).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mab/rng.h"

#define DRAWS 100000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest distance between the empirical CDF of xs and cdf. */
static double ks_distance(double *xs, size_t n, double (*cdf)(double, double), double param)
{
    qsort(xs, n, sizeof *xs, cmp_double);
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf(xs[i], param);
        double lo = fabs(f - (double)i / (double)n), hi = fabs((double)(i + 1) / (double)n - f);
        d = fmax(d, fmax(lo, hi));
    }
    return d;
}

/* P(D > c) ~ 2 exp(-2 n c^2): c for p = 1e-6. */
static double ks_critical(size_t n)
{
    return sqrt(-log(1e-6 / 2.0) / (2.0 * (double)n));
}

static double normal_cdf(double x, double unused)
{
    (void)unused;
    return 0.5 * erfc(-x / sqrt(2.0));
}

/* Gamma(k) CDF for integer k: 1 - sum_{j<k} e^-x x^j / j!. */
static double gamma_int_cdf(double x, double k)
{
    if (x <= 0)
        return 0.0;
    double term = exp(-x), sum = 0.0;
    for (int j = 0; j < (int)k; j++) {
        sum += term;
        term *= x / (j + 1);
    }
    return 1.0 - sum;
}

/* Gamma(1/2) is Z^2 / 2: CDF erf(sqrt(x)). */
static double gamma_half_cdf(double x, double unused)
{
    (void)unused;
    return x <= 0 ? 0.0 : erf(sqrt(x));
}

/* Beta(a, 1) CDF is x^a. */
static double beta_a1_cdf(double x, double a)
{
    return x <= 0 ? 0.0 : x >= 1 ? 1.0 : pow(x, a);
}

static double *draws;

static void test_seeded_streams_repeat(void **state)
{
    (void)state;
    mab_rng *a = mab_rng_create(42), *b = mab_rng_create(42), *c = mab_rng_create(43);
    int differs = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = mab_rng_u64(a);
        assert_true(x == mab_rng_u64(b));
        differs |= x != mab_rng_u64(c);
    }
    assert_true(differs);
    mab_rng_destroy(a);
    mab_rng_destroy(b);
    mab_rng_destroy(c);
}

static void test_uniform_and_below(void **state)
{
    (void)state;
    mab_rng *r = mab_rng_create(1);
    uint64_t counts[7] = {0};
    for (int i = 0; i < DRAWS; i++) {
        double u = mab_rng_uniform(r);
        assert_true(u >= 0.0 && u < 1.0);
        draws[i] = u;
        uint64_t k = mab_rng_below(r, 7);
        assert_true(k < 7);
        counts[k]++;
    }
    /* Chi-square, df = 6, p = 1e-6: 37.85. */
    double chi = 0.0, expect = DRAWS / 7.0;
    for (int k = 0; k < 7; k++)
        chi += (counts[k] - expect) * (counts[k] - expect) / expect;
    assert_true(chi < 37.85);
    assert_true(ks_distance(draws, DRAWS, beta_a1_cdf, 1.0) < ks_critical(DRAWS));
    mab_rng_destroy(r);
}

/* mab_rng_below(rng, 1) is 0 and advances the stream by exactly one 64-bit
   draw: epsilon_greedy makes that draw with mab_rng_u64 when one arm is
   best, and its seeded choices rely on the two being the same. */
static void test_below_one_is_one_draw(void **state)
{
    (void)state;
    for (uint64_t seed = 0; seed < 64; seed++) {
        mab_rng *a = mab_rng_create(seed), *b = mab_rng_create(seed);
        for (int i = 0; i < 100; i++) {
            assert_int_equal(mab_rng_below(a, 1), 0);
            (void)mab_rng_u64(b);
        }
        assert_int_equal(mab_rng_u64(a), mab_rng_u64(b));
        mab_rng_destroy(a);
        mab_rng_destroy(b);
    }
}

static void test_normal(void **state)
{
    (void)state;
    mab_rng *r = mab_rng_create(2);
    size_t beyond_r = 0;
    for (int i = 0; i < DRAWS; i++) {
        draws[i] = mab_rng_normal(r);
        beyond_r += fabs(draws[i]) > 3.442619855899;
    }
    assert_true(ks_distance(draws, DRAWS, normal_cdf, 0) < ks_critical(DRAWS));
    /* The tail beyond the ziggurat's base layer is drawn too (p = 5.8e-4). */
    assert_true(beyond_r > 20);
    mab_rng_destroy(r);
}

static void test_gamma(void **state)
{
    (void)state;
    mab_rng *r = mab_rng_create(3);
    const double shapes[] = {1.0, 3.0, 12.0};
    for (size_t s = 0; s < 3; s++) {
        for (int i = 0; i < DRAWS; i++)
            draws[i] = mab_rng_gamma(r, shapes[s]);
        double d = ks_distance(draws, DRAWS, gamma_int_cdf, shapes[s]);
        if (d >= ks_critical(DRAWS))
            fail_msg("Gamma(%g): KS distance %g", shapes[s], d);
    }
    /* Shape below 1 takes the U^(1/a) boost. */
    for (int i = 0; i < DRAWS; i++)
        draws[i] = mab_rng_gamma(r, 0.5);
    assert_true(ks_distance(draws, DRAWS, gamma_half_cdf, 0) < ks_critical(DRAWS));
    /* Outside the domain: NaN, not an endless boost (-1e300 + 1 == -1e300). */
    assert_true(isnan(mab_rng_gamma(r, -1e300)));
    assert_true(isnan(mab_rng_gamma(r, 0.0)));
    assert_true(isnan(mab_rng_gamma(r, NAN)));
    assert_true(isnan(mab_rng_beta(r, -1e300, 1.0)));
    mab_rng_destroy(r);
}

static void test_beta(void **state)
{
    (void)state;
    mab_rng *r = mab_rng_create(4);
    const double as[] = {0.5, 1.0, 4.0};
    for (size_t s = 0; s < 3; s++) {
        for (int i = 0; i < DRAWS; i++) {
            draws[i] = mab_rng_beta(r, as[s], 1.0);
            assert_true(draws[i] >= 0.0 && draws[i] <= 1.0);
        }
        double d = ks_distance(draws, DRAWS, beta_a1_cdf, as[s]);
        if (d >= ks_critical(DRAWS))
            fail_msg("Beta(%g, 1): KS distance %g", as[s], d);
    }
    /* Beta(3, 8): mean 3/11, variance 24/1452; the mean of 1e5 draws is
       within 6 standard errors. */
    double sum = 0.0;
    for (int i = 0; i < DRAWS; i++)
        sum += mab_rng_beta(r, 3.0, 8.0);
    double se = sqrt(24.0 / 1452.0 / DRAWS);
    assert_true(fabs(sum / DRAWS - 3.0 / 11.0) < 6.0 * se);
    mab_rng_destroy(r);
}

int main(void)
{
    draws = malloc(DRAWS * sizeof *draws);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeded_streams_repeat), cmocka_unit_test(test_uniform_and_below),
        cmocka_unit_test(test_below_one_is_one_draw),
        cmocka_unit_test(test_normal), cmocka_unit_test(test_gamma), cmocka_unit_test(test_beta),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(draws);
    return rc;
}
