/* srm_math.h - the statistics of the sample-ratio check (srm_math.c). */
#ifndef MAB_SRM_MATH_H
#define MAB_SRM_MATH_H

/* P(X >= x2) for X chi-square with df > 0 degrees of freedom: 1 for
   x2 <= 0, 0 for x2 = +inf, NAN for NAN arguments. Hidden (internal). */
__attribute__((visibility("hidden"))) double mab__chi2_upper(double x2, double df);

#endif
