/* AVX2+FMA skinny GEMM; see skinny.h. Each task owns a range of output rows; for every row the
 * kernel keeps NB accumulators (one per input row) and reads the W row exactly once. Compiled for
 * AVX2 through a target attribute and chosen at run time, so the library stays baseline x86-64. */
#include "runtime/cpu/skinny.h"

#include "core/threads.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
/* Software prefetch distance into the W stream. With NB = 8 an iteration is ~18 micro-ops, so the
 * out-of-order window covers only ~9 cache lines of W: too few misses in flight to stream from
 * DRAM (measured 6 GB/s single-threaded). Prefetching 4 KiB ahead (best of 1, 2, 4, 8 KiB measured) keeps ~64 lines in flight. */
#define PREFETCH_BYTES 4096

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* NB input rows against output rows [j0, j1) */
#define SKINNY_KERNEL(NB)                                                                          \
    AVX2 static void rows_##NB(float *Y, const float *X, const float *W, int out, int in, int64_t j0, \
                               int64_t j1) {                                                       \
        int k8 = in & ~7;                                                                          \
        for (int64_t j = j0; j < j1; j++) {                                                        \
            const float *w = W + j * in;                                                           \
            __m256 acc[NB];                                                                        \
            _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++) acc[b] = _mm256_setzero_ps();     \
            for (int k = 0; k < k8; k += 8) {                                                      \
                _mm_prefetch((const char *)(w + k) + PREFETCH_BYTES, _MM_HINT_T0);                 \
                __m256 wv = _mm256_loadu_ps(w + k);                                                \
                _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++)                               \
                    acc[b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(X + (int64_t)b * in + k), acc[b]); \
            }                                                                                      \
            for (int b = 0; b < NB; b++) {                                                         \
                float s = hsum(acc[b]);                                                            \
                for (int k = k8; k < in; k++) s += w[k] * X[(int64_t)b * in + k];                  \
                Y[(int64_t)b * out + j] = s;                                                       \
            }                                                                                      \
        }                                                                                          \
    }
SKINNY_KERNEL(1)
SKINNY_KERNEL(2)
SKINNY_KERNEL(4)
SKINNY_KERNEL(8)

typedef struct job {
    float *Y;
    const float *X, *W;
    int n, out, in;
} job;

static void run(void *ctx, int64_t j0, int64_t j1, int thread) {
    (void)thread;
    const job *J = ctx;
    int b = 0;
    /* n = 8a + 4b + 2c + d: each group re-reads only the (cached) rows of W of this range */
    while (b < J->n) {
        int left = J->n - b;
        float *Y = J->Y + (int64_t)b * J->out;
        const float *X = J->X + (int64_t)b * J->in;
        if (left >= 8) rows_8(Y, X, J->W, J->out, J->in, j0, j1), b += 8;
        else if (left >= 4) rows_4(Y, X, J->W, J->out, J->in, j0, j1), b += 4;
        else if (left >= 2) rows_2(Y, X, J->W, J->out, J->in, j0, j1), b += 2;
        else rows_1(Y, X, J->W, J->out, J->in, j0, j1), b += 1;
    }
}

int lop_cpu_skinny_available(void) {
    static int avail = -1;
    if (avail < 0) avail = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return avail;
}

void lop_cpu_skinny_gemm(float *Y, const float *X, const float *W, int n, int out, int in) {
    job J = {Y, X, W, n, out, in};
    lop_parallel_for(out, 16, run, &J);
}

#else
int lop_cpu_skinny_available(void) { return 0; }
void lop_cpu_skinny_gemm(float *Y, const float *X, const float *W, int n, int out, int in) {
    (void)Y, (void)X, (void)W, (void)n, (void)out, (void)in;
}
#endif
