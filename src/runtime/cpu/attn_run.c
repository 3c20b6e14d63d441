/* BLAS attention for runs of positions; see attn_run.h. Softmax rows go to the thread pool (AVX2
 * exp when available); the GEMMs use OpenBLAS's own threads. */
#include "runtime/cpu/attn_run.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/threads.h"
#include "runtime/cpu/simd.h"

typedef struct rows_job {
    float *S;
    int T, p0;
} rows_job;

static void softmax_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    rows_job *j = ctx;
    int simd = lop_cpu_simd_available();
    for (int64_t r = r0; r < r1; r++) {
        float *s = j->S + r * j->T;
        int valid = j->p0 + (int)r + 1; /* causal: keys 0..p0+r */
        if (simd) {
            lop_cpu_softmax_avx2(s, valid);
        } else {
            float mx = -INFINITY;
            for (int t = 0; t < valid; t++) mx = s[t] > mx ? s[t] : mx;
            double sum = 0;
            for (int t = 0; t < valid; t++) sum += s[t] = expf(s[t] - mx);
            float inv = (float)(1.0 / sum);
            for (int t = 0; t < valid; t++) s[t] *= inv;
        }
        memset(s + valid, 0, (size_t)(j->T - valid) * sizeof *s);
    }
}

/* Query rows per block: block b attends to keys 0..(its last position), so the masked waste is
 * about half a block per row instead of half the run. */
#define ROWS 256

void lop_cpu_attention_run(float *out, int out_stride, const float *q, int q_stride, const float *K, const float *V,
                           int kv_stride, int p0, int n, int n_heads, int n_kv, int hd, float *S) {
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int r0 = 0; r0 < n; r0 += ROWS) {
        int m = n - r0 < ROWS ? n - r0 : ROWS, T = p0 + r0 + m;
        for (int h = 0; h < n_heads; h++) {
            int kh = h / group;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, T, hd, scale, q + (size_t)r0 * q_stride + (size_t)h * hd,
                        q_stride, K + (size_t)kh * hd, kv_stride, 0.0f, S, T);
            rows_job j = {S, T, p0 + r0};
            lop_parallel_for(m, 8, softmax_rows, &j);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, T, 1.0f, S, T, V + (size_t)kh * hd, kv_stride,
                        0.0f, out + (size_t)r0 * out_stride + (size_t)h * hd, out_stride);
        }
    }
}
