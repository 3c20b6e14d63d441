/* Test support: the normalised error the GPU tests state their tolerances in: the largest absolute
 * difference divided by the largest absolute reference value (1 when the reference is all zeros).
 * A NaN anywhere in got makes the result NaN, so `!(err <= tol)` fails. */
#ifndef LOP_TESTS_NERR_H
#define LOP_TESTS_NERR_H
#include <stdint.h>

double nerr(const float *got, const float *ref, int64_t n);
/* The same over doubles; a position NaN in both (a score a method leaves undefined) is skipped. */
double nerr_d(const double *got, const double *ref, int64_t n);
#endif
