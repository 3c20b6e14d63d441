/* fp32 reference operators of the LLaMA forward pass (CPU). Each is small and obvious on purpose:
 * they are the oracle the CUDA kernels are checked against, and the math HF transformers runs. */
#ifndef LOP_RUNTIME_CPU_OPS_H
#define LOP_RUNTIME_CPU_OPS_H
#include <stdint.h>

#include "model/model.h"

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n rows of width dim (out may alias x). */
void lop_cpu_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);

/* Y[n][out] = X[n][in] · W[out][in]^T (+ bias[out]); the skinny AVX2 kernel for n ≤ 8, else OpenBLAS. */
void lop_cpu_linear(float *Y, const float *X, const float *W, const float *bias, int n, int out, int in);

/* Inverse frequencies of rotate-half RoPE for head_dim hd (hd/2 values), llama3 scaling applied. */
void lop_cpu_rope_inv_freq(float *inv_freq, int hd, float theta, const lop_rope_scaling *s);

/* Rotates n_heads vectors of length hd at position pos in place: pairs (i, i + hd/2). */
void lop_cpu_rope(float *x, int n_heads, int hd, int pos, const float *inv_freq);

/* h[i] = silu(g[i]) * u[i] */
void lop_cpu_swiglu(float *h, const float *g, const float *u, int64_t n);

/* Causal GQA attention for one query token: q [n_heads*hd]; K/V cache rows [n_ctx][n_kv*hd]
 * (row stride kv_stride floats); out [n_heads*hd]; scratch needs n_ctx floats. Head h reads
 * key/value head h / (n_heads / n_kv). Only the heads [h0, h1) are computed. */
void lop_cpu_attention(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                       int n_heads, int n_kv, int hd, int h0, int h1, float *scratch);

#endif
