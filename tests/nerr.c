/* Test support: normalised error (nerr.h). */
#include "nerr.h"

#include <math.h>

double nerr(const float *got, const float *ref, int64_t n) {
    double mx = 0, sc = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates */
        if (fabs(ref[i]) > sc) sc = fabs(ref[i]);
    }
    return mx / (sc > 0 ? sc : 1);
}

double nerr_d(const double *got, const double *ref, int64_t n) {
    double mx = 0, sc = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) && isnan(got[i])) continue;
        double d = fabs(got[i] - ref[i]);
        if (!(d <= mx)) mx = d;
        if (fabs(ref[i]) > sc) sc = fabs(ref[i]);
    }
    return mx / (sc > 0 ? sc : 1);
}
