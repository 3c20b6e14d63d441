/* fp32 reference operators; see ops.h. */
#include "runtime/cpu/ops.h"

#include <cblas.h>
#include <math.h>

#include "runtime/cpu/skinny.h"

void lop_cpu_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *o = out + (int64_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

void lop_cpu_linear(float *Y, const float *X, const float *W, const float *bias, int n, int out, int in) {
    if (n <= LOP_SKINNY_MAX_N && lop_cpu_skinny_available())
        lop_cpu_skinny_gemm(Y, X, W, n, out, in);
    else if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, X, 1, 0.0f, Y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
    if (bias)
        for (int r = 0; r < n; r++)
            for (int j = 0; j < out; j++) Y[(int64_t)r * out + j] += bias[j];
}

void lop_cpu_rope_inv_freq(float *inv_freq, int hd, float theta, const lop_rope_scaling *s) {
    for (int i = 0; i < hd / 2; i++) {
        /* as HF: 1 / theta^(2i/hd) computed in float32 */
        float f = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        if (s && s->type == LOP_ROPE_LLAMA3) {
            double old = s->original_max_pos, lo = s->low_freq_factor, hi = s->high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            double low_wl = old / lo, high_wl = old / hi;
            if (wavelen > low_wl) {
                f = f / s->factor;
            } else if (wavelen >= high_wl) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                f = (float)((1.0 - smooth) * f / s->factor + smooth * f);
            }
        }
        inv_freq[i] = f;
    }
}

void lop_cpu_rope(float *x, int n_heads, int hd, int pos, const float *inv_freq) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = (float)pos * inv_freq[i];
        float c = cosf(a), s = sinf(a);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (int64_t)h * hd;
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x1 * c + x0 * s;
        }
    }
}

void lop_cpu_swiglu(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void lop_cpu_attention(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                       int n_heads, int n_kv, int hd, int h0, int h1, float *scratch) {
    int group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (int64_t)h * hd;
        int kh = h / group;
        float mx = -INFINITY;
        for (int t = 0; t < n_ctx; t++) {
            const float *k = K + (int64_t)t * kv_stride + (int64_t)kh * hd;
            float d = 0;
            for (int i = 0; i < hd; i++) d += qh[i] * k[i];
            d *= scale;
            scratch[t] = d;
            if (d > mx) mx = d;
        }
        double sum = 0;
        for (int t = 0; t < n_ctx; t++) {
            scratch[t] = expf(scratch[t] - mx);
            sum += scratch[t];
        }
        float inv = (float)(1.0 / sum);
        float *o = out + (int64_t)h * hd;
        for (int i = 0; i < hd; i++) o[i] = 0;
        for (int t = 0; t < n_ctx; t++) {
            const float *v = V + (int64_t)t * kv_stride + (int64_t)kh * hd;
            float p = scratch[t] * inv;
            for (int i = 0; i < hd; i++) o[i] += p * v[i];
        }
    }
}
