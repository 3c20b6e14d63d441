/* AVX2+FMA / AVX-512 skinny GEMM; see skinny.h. Each task owns a range of output rows; for every row
 * the kernel keeps NB accumulators (one per input row; AVX-512: two rows, 2 x NB) and reads the W row
 * exactly once. Compiled through target attributes and chosen at run time, so the library stays
 * baseline x86-64. */
#include "runtime/cpu/skinny.h"

#include <stdlib.h>

#include "core/threads.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
/* Software prefetch into the W stream. With NB = 8 an iteration is ~18 micro-ops, so the
 * out-of-order window covers only ~9 cache lines of W: too few misses in flight to stream from
 * DRAM (measured 6 GB/s single-threaded). One token: 4 KiB ahead into L1 (best of 1, 2, 4, 8 KiB
 * measured). Several tokens: 8 KiB ahead into L2 (prefetcht1/t2 do not hold L1 miss buffers, so
 * more lines are in flight): a 30-layer SmolLM2-shaped stream at 8 tokens went from 16 to 24 GB/s
 * (4 KiB/L1 vs 8 KiB/L2, 2 cores; 16 KiB and L1 hints measured lower or noisier). */
#define PREFETCH_1 4096
#ifndef PREFETCH_N
#define PREFETCH_N 8192
#endif
#ifndef PREFETCH_N_HINT
#define PREFETCH_N_HINT _MM_HINT_T2
#endif
#define PREFETCH_W(p, NB)                                                                          \
    ((NB) == 1 ? _mm_prefetch((const char *)(p) + PREFETCH_1, _MM_HINT_T0)                         \
               : _mm_prefetch((const char *)(p) + PREFETCH_N, PREFETCH_N_HINT))

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
                PREFETCH_W(w + k, NB);                                                             \
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

/* AVX-512 (32 vector registers): two W rows at a time, 2 x NB accumulators, so every X load feeds two
 * FMAs -- the AVX2 kernel above issues one X load per FMA, which bounds it by loads, not by FMAs.
 * The k tail is a masked load, so any width works. */
#define AVX512 __attribute__((target("avx512f")))

/* The sums of 16 vectors at once: a transposing tree of 15 shuffle pairs and adds, lane l holding the
 * sum of v[RED16[l]], instead of 16 full reductions of ~8 dependent steps each. At SmolLM2's width
 * (576 inputs, 36 FMA steps per row) the separate reductions were a fifth of the kernel's work. */
static const int RED16[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
AVX512 static inline __m512 reduce16(const __m512 *v) {
    __m512 l1[8], l2[4], l3[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        l1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        l2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(l1[2 * i], l1[2 * i + 1], 0x88),
                              _mm512_shuffle_f32x4(l1[2 * i], l1[2 * i + 1], 0xDD));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        l3[i] = _mm512_add_ps(_mm512_shuffle_ps(l2[2 * i], l2[2 * i + 1], 0x44), _mm512_shuffle_ps(l2[2 * i], l2[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(l3[0], l3[1], 0x88), _mm512_shuffle_ps(l3[0], l3[1], 0xDD));
}
#define SKINNY_KERNEL_512(NB)                                                                      \
    AVX512 static void rows2_##NB(float *Y, const float *X, const float *W, int out, int in, int64_t j0, \
                                  int64_t j1) {                                                    \
        const int k16 = in & ~15;                                                                  \
        const __mmask16 tail = (__mmask16)((1u << (in - k16)) - 1u);                               \
        int64_t j = j0;                                                                            \
        for (; j + 1 < j1; j += 2) {                                                               \
            const float *w0 = W + j * in, *w1 = w0 + in;                                           \
            __m512 a0[NB], a1[NB];                                                                 \
            _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++) a0[b] = a1[b] = _mm512_setzero_ps(); \
            for (int k = 0; k < k16; k += 16) {                                                    \
                PREFETCH_W(w0 + k, NB);                                                            \
                PREFETCH_W(w1 + k, NB);                                                            \
                __m512 v0 = _mm512_loadu_ps(w0 + k), v1 = _mm512_loadu_ps(w1 + k);                 \
                _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++) {                             \
                    __m512 x = _mm512_loadu_ps(X + (int64_t)b * in + k);                           \
                    a0[b] = _mm512_fmadd_ps(v0, x, a0[b]);                                         \
                    a1[b] = _mm512_fmadd_ps(v1, x, a1[b]);                                         \
                }                                                                                  \
            }                                                                                      \
            if (tail) {                                                                            \
                __m512 v0 = _mm512_maskz_loadu_ps(tail, w0 + k16), v1 = _mm512_maskz_loadu_ps(tail, w1 + k16); \
                _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++) {                             \
                    __m512 x = _mm512_maskz_loadu_ps(tail, X + (int64_t)b * in + k16);             \
                    a0[b] = _mm512_fmadd_ps(v0, x, a0[b]);                                         \
                    a1[b] = _mm512_fmadd_ps(v1, x, a1[b]);                                         \
                }                                                                                  \
            }                                                                                      \
            if (NB == 8) { /* v[b] = row j, v[8 + b] = row j + 1 of input b */                       \
                __m512 v[16];                                                                      \
                _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++) v[b] = a0[b], v[8 + b] = a1[b]; \
                float r[16];                                                                       \
                _mm512_storeu_ps(r, reduce16(v));                                                  \
                for (int l = 0; l < 16; l++)                                                       \
                    Y[(int64_t)(RED16[l] & 7) * out + j + (RED16[l] >> 3)] = r[l];                 \
            } else                                                                                 \
                for (int b = 0; b < NB; b++) {                                                     \
                    Y[(int64_t)b * out + j] = _mm512_reduce_add_ps(a0[b]);                         \
                    Y[(int64_t)b * out + j + 1] = _mm512_reduce_add_ps(a1[b]);                     \
                }                                                                                  \
        }                                                                                          \
        if (j < j1) rows_##NB(Y, X, W, out, in, j, j1); /* an odd last row */                      \
    }
SKINNY_KERNEL_512(2)
SKINNY_KERNEL_512(4)
SKINNY_KERNEL_512(8)

/* the AVX-512 kernels unless this CPU lacks AVX-512F or LOP_CPU_AVX512=0 */
static int use_512(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("LOP_CPU_AVX512");
        on = __builtin_cpu_supports("avx512f") && !(e && atoi(e) == 0);
    }
    return on;
}

typedef struct job {
    float *Y;
    const float *X, *W;
    int n, out, in, wide;
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
        const int wide = J->wide;
        if (left >= 8) (wide ? rows2_8 : rows_8)(Y, X, J->W, J->out, J->in, j0, j1), b += 8;
        else if (left >= 4) (wide ? rows2_4 : rows_4)(Y, X, J->W, J->out, J->in, j0, j1), b += 4;
        else if (left >= 2) (wide ? rows2_2 : rows_2)(Y, X, J->W, J->out, J->in, j0, j1), b += 2;
        else rows_1(Y, X, J->W, J->out, J->in, j0, j1), b += 1;
    }
}

int lop_cpu_skinny_available(void) {
    static int avail = -1;
    if (avail < 0) avail = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return avail;
}

int lop_cpu_skinny_avx512_available(void) { return __builtin_cpu_supports("avx512f"); }

void lop_cpu_skinny_gemm_isa(float *Y, const float *X, const float *W, int n, int out, int in, int isa) {
    job J = {Y, X, W, n, out, in, isa == 2 || (isa == 0 && use_512())};
    lop_parallel_for(out, 16, run, &J);
}

void lop_cpu_skinny_gemm(float *Y, const float *X, const float *W, int n, int out, int in) {
    lop_cpu_skinny_gemm_isa(Y, X, W, n, out, in, 0);
}

#else
int lop_cpu_skinny_available(void) { return 0; }
int lop_cpu_skinny_avx512_available(void) { return 0; }
void lop_cpu_skinny_gemm_isa(float *Y, const float *X, const float *W, int n, int out, int in, int isa) {
    (void)Y, (void)X, (void)W, (void)n, (void)out, (void)in, (void)isa;
}
void lop_cpu_skinny_gemm(float *Y, const float *X, const float *W, int n, int out, int in) {
    (void)Y, (void)X, (void)W, (void)n, (void)out, (void)in;
}
#endif
