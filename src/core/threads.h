/* A small thread pool for the CPU backend's non-BLAS loops (attention, RoPE, fills).
 * Why not OpenMP: OpenMP workers spin after each region and starve OpenBLAS's own pthreads on a
 * small machine (measured: 4-7x slower decode); these workers sleep on a condition variable. */
#ifndef LOP_CORE_THREADS_H
#define LOP_CORE_THREADS_H
#include <stdint.h>

/* fn is called with disjoint [begin, end) ranges covering [0, n); `thread` is in [0, lop_threads()). */
typedef void (*lop_par_fn)(void *ctx, int64_t begin, int64_t end, int thread);

void lop_parallel_for(int64_t n, int64_t grain, lop_par_fn fn, void *ctx);
/* Sets the number of threads (0 = number of online CPUs); takes effect at the next parallel_for. */
void lop_threads_set(int n);
int lop_threads(void);
int lop_n_cpus(void);

#endif
