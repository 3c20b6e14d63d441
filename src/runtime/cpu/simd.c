/* AVX2+FMA attention and SwiGLU; see simd.h. Compiled for AVX2 through target attributes (the
 * library stays baseline x86-64) and used only when the CPU has AVX2 and FMA.
 * exp: the classic Cephes single-precision scheme (range reduction by ln 2 in two parts, degree-5
 * polynomial, exponent by integer shift): ~1 ulp over the softmax / sigmoid range. */
#include "runtime/cpu/simd.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

int lop_cpu_simd_available(void) {
    static int avail = -1;
    if (avail < 0) avail = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return avail;
}

AVX2 static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* the sums of four 8-lane vectors, as one 4-lane vector */
AVX2 static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d), abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* max of x[0..n) */
AVX2 static inline float max8(const float *x, int n) {
    int t = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; t + 8 <= n; t += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + t));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    float mx = _mm_cvtss_f32(m4);
    for (; t < n; t++) mx = x[t] > mx ? x[t] : mx;
    return mx;
}

/* x[t] = exp(x[t] - mx) in place; returns their sum (float terms, double sum) */
AVX2 static inline double exp_shifted(float *x, int n, float mx) {
    int t = 0;
    __m256 vmx = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
    for (; t + 8 <= n; t += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + t), vmx));
        _mm256_storeu_ps(x + t, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    double sum = hsum(vsum);
    for (; t < n; t++) sum += x[t] = expf(x[t] - mx);
    return sum;
}

/* q . k for four key rows at once, and for one (hd % 8 == 0) */
AVX2 static inline __m128 dot4(const float *qh, const float *k0, const float *k1, const float *k2, const float *k3, int hd) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < hd; i += 8) {
        __m256 qv = _mm256_loadu_ps(qh + i);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
    }
    return hsum4(a0, a1, a2, a3);
}
AVX2 static inline float dot1(const float *qh, const float *k0, int hd) {
    __m256 a0 = _mm256_setzero_ps();
    for (int i = 0; i < hd; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(k0 + i), a0);
    return hsum(a0);
}

#define ATT_PF 16 /* keys ahead */
/* the n floats at p on their way to L1, one prefetch per 64-byte line */
static inline void prefetch_row(const float *p, int n) {
    for (int i = 0; i < n; i += 16) _mm_prefetch((const char *)(p + i), _MM_HINT_T0);
}

AVX2 void lop_cpu_attention_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                                 int n_heads, int n_kv, int hd, int h0, int h1, float *scratch) {
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (int64_t)h * hd;
        const float *Kh = K + (int64_t)(h / group) * hd, *Vh = V + (int64_t)(h / group) * hd;
        /* scores, four keys at a time */
        int t = 0;
        for (; t + 4 <= n_ctx; t += 4) {
            const float *k0 = Kh + (int64_t)t * kv_stride, *k1 = k0 + kv_stride, *k2 = k1 + kv_stride, *k3 = k2 + kv_stride;
            /* the cache rows are strided (kv_stride): fetch those 16 keys ahead (a decode step reads
             * every layer's cache from DRAM once, latency-bound without this) */
            if (t + ATT_PF < n_ctx)
                for (int r = 0; r < 4; r++) prefetch_row(Kh + (int64_t)(t + ATT_PF + r) * kv_stride, hd);
            _mm_storeu_ps(scratch + t, _mm_mul_ps(dot4(qh, k0, k1, k2, k3, hd), _mm_set1_ps(scale)));
        }
        for (; t < n_ctx; t++) {
            scratch[t] = dot1(qh, Kh + (int64_t)t * kv_stride, hd) * scale;
        }
        /* softmax (normalised below, with the values) */
        float inv = (float)(1.0 / exp_shifted(scratch, n_ctx, max8(scratch, n_ctx)));
        /* out = sum_t p_t V[t]: 64 output floats (8 registers) per pass over the values */
        float *o = out + (int64_t)h * hd;
        int i0 = 0;
        for (; i0 + 64 <= hd; i0 += 64) {
            __m256 c[8]; /* fully unrolled so the accumulators live in registers */
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) c[r] = _mm256_setzero_ps();
            for (t = 0; t < n_ctx; t++) {
                __m256 p = _mm256_set1_ps(scratch[t]);
                const float *v = Vh + (int64_t)t * kv_stride + i0;
                if (t + ATT_PF < n_ctx) prefetch_row(v + (int64_t)ATT_PF * kv_stride, 64);
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++) c[r] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8 * r), c[r]);
            }
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) _mm256_storeu_ps(o + i0 + 8 * r, _mm256_mul_ps(c[r], _mm256_set1_ps(inv)));
        }
        for (; i0 < hd; i0 += 8) {
            __m256 c = _mm256_setzero_ps();
            for (t = 0; t < n_ctx; t++)
                c = _mm256_fmadd_ps(_mm256_set1_ps(scratch[t]), _mm256_loadu_ps(Vh + (int64_t)t * kv_stride + i0), c);
            _mm256_storeu_ps(o + i0, _mm256_mul_ps(c, _mm256_set1_ps(inv)));
        }
    }
}

/* out[h][c] = inv[h] * sum_t p[h][t] V[t][c] for three heads h at once (p rows n_ctx apart): each V
 * row chunk is loaded once for the three (12 accumulators: 32 outputs of each head per pass) */
AVX2 static void pv_heads3(float *out, const float *p, const float *inv, const float *Vh, int n_ctx, int kv_stride,
                           int hd) {
    const float *p0 = p, *p1 = p + n_ctx, *p2 = p + 2 * (int64_t)n_ctx;
    for (int c0 = 0; c0 < hd; c0 += 32) {
        __m256 c[3][4];
#pragma GCC unroll 3
        for (int g = 0; g < 3; g++)
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) c[g][r] = _mm256_setzero_ps();
        for (int t = 0; t < n_ctx; t++) {
            const float *v = Vh + (int64_t)t * kv_stride + c0;
            if (t + ATT_PF < n_ctx) prefetch_row(v + (int64_t)ATT_PF * kv_stride, 32);
            __m256 vr[4] = {_mm256_loadu_ps(v), _mm256_loadu_ps(v + 8), _mm256_loadu_ps(v + 16), _mm256_loadu_ps(v + 24)};
            __m256 b[3] = {_mm256_set1_ps(p0[t]), _mm256_set1_ps(p1[t]), _mm256_set1_ps(p2[t])};
#pragma GCC unroll 3
            for (int g = 0; g < 3; g++)
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) c[g][r] = _mm256_fmadd_ps(b[g], vr[r], c[g][r]);
        }
#pragma GCC unroll 3
        for (int g = 0; g < 3; g++) {
            __m256 sc = _mm256_set1_ps(inv[g]);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) _mm256_storeu_ps(out + (int64_t)g * hd + c0 + 8 * r, _mm256_mul_ps(c[g][r], sc));
        }
    }
}

/* the same for one head, 32 outputs per pass */
AVX2 static void pv_head(float *out, const float *p, float inv, const float *Vh, int n_ctx, int kv_stride, int hd) {
    for (int c0 = 0; c0 < hd; c0 += 32) {
        __m256 c[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int t = 0; t < n_ctx; t++) {
            const float *v = Vh + (int64_t)t * kv_stride + c0;
            if (t + ATT_PF < n_ctx) prefetch_row(v + (int64_t)ATT_PF * kv_stride, 32);
            __m256 b = _mm256_set1_ps(p[t]);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) c[r] = _mm256_fmadd_ps(b, _mm256_loadu_ps(v + 8 * r), c[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) _mm256_storeu_ps(out + c0 + 8 * r, _mm256_mul_ps(c[r], _mm256_set1_ps(inv)));
    }
}

/* All query heads of KV head kvh at once (decode): each key and value row is read once for the whole
 * group instead of once per query head. Scores: four keys at a time, every head of the group against
 * them while they sit in L1. Values: three heads per pass (pv_heads3), the rest one by one. */
AVX2 void lop_cpu_attention_group_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx,
                                       int kv_stride, int n_heads, int n_kv, int hd, int kvh, float *scratch) {
    int G = n_heads / n_kv, h0 = kvh * G;
    float scale = 1.0f / sqrtf((float)hd);
    const float *Kh = K + (int64_t)kvh * hd, *Vh = V + (int64_t)kvh * hd;
    int t = 0;
    for (; t + 4 <= n_ctx; t += 4) {
        const float *k0 = Kh + (int64_t)t * kv_stride, *k1 = k0 + kv_stride, *k2 = k1 + kv_stride, *k3 = k2 + kv_stride;
        if (t + ATT_PF < n_ctx)
            for (int r = 0; r < 4; r++) prefetch_row(Kh + (int64_t)(t + ATT_PF + r) * kv_stride, hd);
        for (int g = 0; g < G; g++) {
            const float *qh = q + (int64_t)(h0 + g) * hd;
            _mm_storeu_ps(scratch + (int64_t)g * n_ctx + t, _mm_mul_ps(dot4(qh, k0, k1, k2, k3, hd), _mm_set1_ps(scale)));
        }
    }
    for (; t < n_ctx; t++) {
        const float *k0 = Kh + (int64_t)t * kv_stride;
        for (int g = 0; g < G; g++) {
            scratch[(int64_t)g * n_ctx + t] = dot1(q + (int64_t)(h0 + g) * hd, k0, hd) * scale;
        }
    }
    float inv[LOP_ATT_MAX_GROUP];
    for (int g = 0; g < G; g++) {
        float *sg = scratch + (int64_t)g * n_ctx;
        inv[g] = (float)(1.0 / exp_shifted(sg, n_ctx, max8(sg, n_ctx)));
    }
    for (int g0 = 0; g0 < G; g0 += 3) {
        int m = G - g0 < 3 ? G - g0 : 3;
        if (m == 3) pv_heads3(out + (int64_t)(h0 + g0) * hd, scratch + (int64_t)g0 * n_ctx, inv + g0, Vh, n_ctx, kv_stride, hd);
        else
            for (int g = g0; g < G; g++)
                pv_head(out + (int64_t)(h0 + g) * hd, scratch + (int64_t)g * n_ctx, inv[g], Vh, n_ctx, kv_stride, hd);
    }
}

AVX2 double lop_cpu_lse_avx2(const float *row, int V, int *argmax) {
    int i;
    float mx = max8(row, V);
    int arg = 0;
    while (row[arg] != mx) arg++; /* the first maximum, as numpy / torch */
    /* exp in float, the 8 lanes summed in double every 256 values */
    __m256 vmx = _mm256_set1_ps(mx);
    double z = 0;
    for (i = 0; i + 8 <= V;) {
        __m256 acc = _mm256_setzero_ps();
        for (int k = 0; k < 32 && i + 8 <= V; k++, i += 8) acc = _mm256_add_ps(acc, exp8(_mm256_sub_ps(_mm256_loadu_ps(row + i), vmx)));
        z += hsum(acc);
    }
    for (; i < V; i++) z += expf(row[i] - mx);
    if (argmax) *argmax = arg;
    return (double)mx + log(z);
}

AVX2 void lop_cpu_softmax_avx2(float *x, int n) {
    int t;
    double sum = exp_shifted(x, n, max8(x, n));
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (t = 0; t + 8 <= n; t += 8) _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_loadu_ps(x + t), inv));
    for (; t < n; t++) x[t] *= (float)(1.0 / sum);
}

AVX2 void lop_cpu_swiglu_avx2(float *h, const float *g, const float *u, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, gv))));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_mul_ps(gv, sig), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

#else
int lop_cpu_simd_available(void) { return 0; }
void lop_cpu_attention_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                            int n_heads, int n_kv, int hd, int h0, int h1, float *scratch) {
    (void)out, (void)q, (void)K, (void)V, (void)n_ctx, (void)kv_stride, (void)n_heads, (void)n_kv, (void)hd, (void)h0,
        (void)h1, (void)scratch;
}
void lop_cpu_attention_group_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                                  int n_heads, int n_kv, int hd, int kvh, float *scratch) {
    (void)out, (void)q, (void)K, (void)V, (void)n_ctx, (void)kv_stride, (void)n_heads, (void)n_kv, (void)hd, (void)kvh,
        (void)scratch;
}
void lop_cpu_swiglu_avx2(float *h, const float *g, const float *u, int64_t n) { (void)h, (void)g, (void)u, (void)n; }
double lop_cpu_lse_avx2(const float *row, int V, int *argmax) { (void)row, (void)V, (void)argmax; return 0; }
void lop_cpu_softmax_avx2(float *x, int n) { (void)x, (void)n; }
#endif
