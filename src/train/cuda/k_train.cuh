/* Kernels of the CUDA trainer (fp32 forward and backward over whole sequences), each with a
 * host-side launcher on the default stream. Why separate from the inference kernels: training
 * works on fp32 activations of every position at once (no KV cache, no 16-bit weights), keeps what
 * the backward needs, and must match the CPU trainer (src/train) operator by operator, so each
 * kernel here is the device twin of one CPU routine named beside it. */
#ifndef LOP_TRAIN_CUDA_K_TRAIN_CUH
#define LOP_TRAIN_CUDA_K_TRAIN_CUH
#include <cuda_runtime.h>
#include <stdint.h>

#include "model/model.h"

/* d[n] = fp32 of s[n] stored as dt (F32, F16 or BF16) */
void kt_widen(float *d, const void *s, lop_dtype dt, int64_t n);
/* dE[tok[r]] += dx[r] (atomic: tokens repeat) */
void kt_embed_bwd(float *dE, const float *dx, const int32_t *tok, int n, int dim);
/* y = w * x * r, r = 1/sqrt(mean(x^2) + eps), per row (lop_cpu_rmsnorm) */
void kt_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps);
/* dx (=, or += when accumulate) from dy; rinv[n] receives r of each row (tr_rmsnorm_bwd) */
void kt_rmsnorm_bwd(float *dx, float *rinv, const float *x, const float *w, const float *dy, int n, int dim, float eps,
                    int accumulate);
/* dw[j] = sum over rows of dy * x * rinv (after kt_rmsnorm_bwd) */
void kt_rmsnorm_dw(float *dw, const float *x, const float *dy, const float *rinv, int n, int dim);
/* Y[r] += b;  db[j] = sum over rows of dY[r][j] */
void kt_add_bias(float *Y, const float *b, int n, int out);
void kt_bias_bwd(float *db, const float *dY, int n, int out);
/* x += y */
void kt_add(float *x, const float *y, int64_t n);
/* rotate-half RoPE of n rows of n_heads heads at positions (r % seq_len) * sign (lop_cpu_rope;
 * sign -1 is the backward: the transpose of a rotation) */
void kt_rope(float *x, int n_heads, int hd, int n, int seq_len, const float *inv_freq, int sign);
/* Causal GQA attention of n_seq sequences of T rows: att [n][nh*hd] from q [n][nh*hd] (after
 * RoPE), k, v [n][nkv*hd]. P (may be NULL) receives the probabilities [n_seq][nh][T][T] (row q,
 * columns 0..q). Returns 0, or -1 when T is too long for the kernel's shared memory. */
int kt_attn_fwd(float *att, float *P, const float *q, const float *k, const float *v, int n_seq, int T, int nh, int nkv,
                int hd);
/* Backward of kt_attn_fwd given its P and dO = datt: dq [n][nh*hd] (before the RoPE backward),
 * DS [n_seq][nh][T][T] scratch, then dk, dv [n][nkv*hd] summed over each group's heads. */
int kt_attn_bwd(float *dq, float *dk, float *dv, float *DS, const float *P, const float *datt, const float *q,
                const float *k, const float *v, int n_seq, int T, int nh, int nkv, int hd);
/* h = silu(g) * u;  backward: du = dh silu(g), dg = dh u s (1 + g (1 - s)) (dg may alias dh) */
void kt_swiglu(float *h, const float *g, const float *u, int64_t n);
void kt_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);
/* xc[i] = x[rows[i]] (also the embedding gather);  x[rows[i]] = xc[i] (rows of dim) */
void kt_gather(float *xc, const float *x, const int32_t *rows, int nc, int dim);
void kt_scatter(float *x, const float *xc, const int32_t *rows, int nc, int dim);
/* Per row r of logits [nc][V]: nll[r] = logsumexp - logits[target[r]]; with grad, the row becomes
 * weight * (softmax - onehot(target)) */
void kt_xent(float *logits, const int32_t *target, int nc, int V, double weight, double *nll, int grad);
/* *acc += sum_i w_i g_i (in double) */
void kt_dot_acc(double *acc, const float *w, const float *g, int64_t n);
#endif
