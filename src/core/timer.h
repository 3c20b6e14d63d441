/* Monotonic wall clock for tok/s and ms/token reports. */
#ifndef LOP_CORE_TIMER_H
#define LOP_CORE_TIMER_H
#include <time.h>
static inline double lop_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif
