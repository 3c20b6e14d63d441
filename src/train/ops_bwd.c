/* Backward of the small fp32 operators (RMSNorm, linear, bias, SwiGLU). Why by hand and obvious:
 * they are the reference the CUDA backward will be checked against, like ops.c for the forward.
 * Derivations:
 *   RMSNorm y_j = w_j x_j r, r = (sum(x^2)/D + eps)^(-1/2):
 *     dx_j = r w_j dy_j - (r^3 / D) x_j sum_i w_i dy_i x_i,   dw_j = sum_rows dy_j x_j r
 *   Linear Y = X W^T + b:  dX = dY W,  dW = dY^T X,  db = sum_rows dY
 *   SwiGLU h = silu(g) u, silu(g) = g s, s = sigmoid(g):
 *     du = dh silu(g),  dg = dh u s (1 + g (1 - s)) */
#include <cblas.h>
#include <math.h>

#include "train/train_internal.h"

void tr_rmsnorm_bwd(float *dx, double *dw, const float *x, const float *w, const float *dy, int n, int dim, float eps,
                    int accumulate) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim, *dyr = dy + (int64_t)r * dim;
        float *dxr = dx + (int64_t)r * dim;
        double ss = 0, dot = 0;
        for (int i = 0; i < dim; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)w[i] * dyr[i] * xr[i];
        }
        double inv = 1.0 / sqrt(ss / dim + (double)eps);
        double c = inv * inv * inv / dim * dot;
        for (int i = 0; i < dim; i++) {
            float v = (float)(inv * w[i] * dyr[i] - c * xr[i]);
            dxr[i] = accumulate ? dxr[i] + v : v;
        }
        if (dw)
            for (int i = 0; i < dim; i++) dw[i] += (double)dyr[i] * xr[i] * inv;
    }
}

void tr_linear_bwd_x(float *dX, float beta, const float *dY, const float *W, int n, int out, int in) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dY, out, W, in, beta, dX, in);
}

void tr_linear_bwd_w(float *dW, const float *dY, const float *X, int n, int out, int in) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dY, out, X, in, 0.0f, dW, in);
}

void tr_bias_bwd(float *db, const float *dY, int n, int out) {
    for (int j = 0; j < out; j++) {
        double s = 0;
        for (int r = 0; r < n; r++) s += dY[(int64_t)r * out + j];
        db[j] = (float)s;
    }
}

void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        float d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
