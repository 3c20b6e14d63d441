/* C entry points of the CUDA backend beyond the vtable: device queries, and test hooks that run
 * one kernel on host arrays so tests written in C can check every kernel against the CPU reference
 * ops (tests/test_cuda.c). Only declared when the build has CUDA (LOP_HAVE_CUDA). */
#ifndef LOP_RUNTIME_CUDA_API_H
#define LOP_RUNTIME_CUDA_API_H
#include <stdint.h>

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no device or no driver (why: in *reason). */
int lop_cuda_device_count(const char **reason);
/* PCI bus id ("0000:19:00.0") of device 0, the one lop runs on, for NVML. */
lop_status lop_cuda_pci_bus_id(char *buf, int n);
/* Free / total bytes of device 0 (creates the context). */
lop_status lop_cuda_mem_info(int64_t *free_b, int64_t *total_b);

/* ---- test hooks: inputs and outputs are host fp32 arrays; 16-bit operands are rounded to dt ---- */
/* out[r] = rmsnorm(x[rows ? rows[r] : r] + bias) * w, r < n_out; x updated as k_rmsnorm does. */
lop_status lop_cuda_test_rmsnorm(float *out, float *x, const float *bias, const float *w, const int32_t *rows, int n_x,
                                 int n_out, int dim, float eps, lop_dtype dt);
/* Y[n][out] = X[n][in] · W[out][in]^T (+ bias). path: 1 = hand GEMV (n <= 8), 2 = cuBLASLt.
 * mode 0 store, 1 accumulate into Y (+bias), 2 SwiGLU (out = 2f rows; Y gets [n][f] = silu(g)*u). */
lop_status lop_cuda_test_linear(float *Y, const float *X, const float *W, const float *bias, int n, int out, int in,
                                lop_dtype dt, int path, int mode);
/* h[n][f] = silu(g) * u of W [2f][in] (+ bias) applied to T(rmsnorm(x) * nw): the normalised-input
 * GEMV (n <= 4, in % 8 == 0) that replaces the RMSNorm launch at small batch. */
lop_status lop_cuda_test_swiglu_xnorm(float *h, const float *x, const float *nw, float eps, const float *W,
                                      const float *bias, int n, int f, int in, lop_dtype dt);
/* y[n][out] = W [out][in] applied to T(rmsnorm(x) * nw): the LM head's normalised-input GEMV (n <= 2) */
lop_status lop_cuda_test_store_xnorm(float *y, const float *x, const float *nw, float eps, const float *W, int n,
                                     int out, int in, lop_dtype dt);
/* q [n][nh*hd] and k,v [n][nkv*hd] rows of a packed qkv (+bias) -> rotated q (fp32) and the K/V
 * cache rows (fp16, read back as fp32) of token i at position pos[i] (one sequence slot). */
lop_status lop_cuda_test_rope(float *q_out, float *k_out, float *v_out, const float *qkv, const float *bias,
                              const int32_t *pos, int n, int nh, int nkv, int hd, const float *inv_freq);
lop_status lop_cuda_test_swiglu(float *h, const float *gu, const float *bias, int n, int f, lop_dtype dt);
lop_status lop_cuda_test_embed(float *x, const float *emb, int vocab, int dim, const int32_t *tok, int n, lop_dtype dt);
/* Attention of n query tokens of one sequence at positions pos[i] over K/V [ctx][nkv*hd]
 * (ctx > every pos); kernel 0 = decode (nsplit splits), 1 = prefill tiles (tensor cores for head_dim
 * 64 / 128), 2 = prefill tiles on the fp32 FMA kernel. */
lop_status lop_cuda_test_attention(float *out, const float *q, const float *K, const float *V, const int32_t *pos, int n,
                                   int ctx, int nh, int nkv, int hd, int kernel, int nsplit, lop_dtype dt);
/* tokens[s] sampled from logits[s][V] with rng states (advanced in place); variant: the sampler
 * kernel's (0 the first, 1 FAST, 2 CAND; -1 the engine's default, LOP_CUDA_SAMPLE_FAST). */
lop_status lop_cuda_test_sample(int32_t *tokens, const float *logits, int n, int V, float temperature, int top_k,
                                float top_p, uint64_t *rng, int variant);
/* out[r][c] = value of the device synthetic fill (rows x cols) in dt, as fp32. */
lop_status lop_cuda_test_synth(float *out, int64_t rows, int64_t cols, uint64_t seed, uint32_t id, float std,
                               lop_dtype dt);

#ifdef __cplusplus
}
#endif
#endif
