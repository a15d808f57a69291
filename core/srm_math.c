/*
 * srm_math.c - the chi-square upper tail for the sample-ratio check
 * (srm.c): P(X >= x2) for X ~ chi-square(df) is Q(df / 2, x2 / 2), the
 * regularised upper incomplete gamma function. Depends on libm only, so the
 * unit test compiles it in and checks it against tabulated quantiles.
 */
#include <math.h>

#include "srm_math.h"

#define GAMMA_EPS 1e-15
#define GAMMA_ITERATIONS 10000
#define GAMMA_TINY 1e-300

/* P(a, x) by its power series, for x < a + 1 (where it converges fast):
   P = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n)). */
static double lower_series(double a, double x)
{
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < GAMMA_ITERATIONS; n++) {
        term *= x / (a + n);
        sum += term;
        if (fabs(term) < fabs(sum) * GAMMA_EPS)
            break;
    }
    return sum * exp(a * log(x) - x - lgamma(a));
}

/* Q(a, x) by its continued fraction (modified Lentz), for x >= a + 1:
   Q = x^a e^-x / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...)). */
static double upper_fraction(double a, double x)
{
    double b = x + 1.0 - a, c = 1.0 / GAMMA_TINY, d = 1.0 / b, h = d;
    for (int n = 1; n < GAMMA_ITERATIONS; n++) {
        double an = -n * (n - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < GAMMA_TINY)
            d = GAMMA_TINY;
        c = b + an / c;
        if (fabs(c) < GAMMA_TINY)
            c = GAMMA_TINY;
        d = 1.0 / d;
        double step = d * c;
        h *= step;
        if (fabs(step - 1.0) < GAMMA_EPS)
            break;
    }
    return exp(a * log(x) - x - lgamma(a)) * h;
}

/* Q(a, x) = Gamma(a, x) / Gamma(a), a > 0, x >= 0. */
static double gamma_q(double a, double x)
{
    if (isnan(a) || isnan(x) || !(a > 0))
        return NAN;
    if (x <= 0)
        return 1.0;
    if (isinf(x))
        return 0.0;
    if (x < a + 1.0) {
        double q = 1.0 - lower_series(a, x);
        return q < 0 ? 0.0 : q;
    }
    return upper_fraction(a, x);
}

double mab__chi2_upper(double x2, double df)
{
    return gamma_q(df / 2.0, x2 / 2.0);
}
