/* Launchers of the CUDA backend's kernels (host functions, C++ linkage, used by cuda_backend.cu and
 * the test hooks). Conventions shared by all of them:
 *  - weights and GEMM inputs are fp16 or bf16 (dt), rows padded to ld = multiple of 8 elements with
 *    zeros, so every row starts 16-byte aligned and 16-byte loads need no tail code;
 *  - the residual stream x and GEMM outputs are fp32; the KV cache is fp16, laid out per layer as
 *    [slot][kv_head][max_seq][head_dim];
 *  - token i of a batch has sequence slot seq[i] and position pos[i] (device arrays). */
#ifndef LOP_CUDA_KERNELS_CUH
#define LOP_CUDA_KERNELS_CUH
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "model/model.h"

/* ---- weights ---- */
/* dst[r][c] (ld_dst, dtype ddt) = src[r][c] (dense rows of cols elements, dtype sdt); pad cols zeroed. */
void k_convert_rows(const void *src, lop_dtype sdt, void *dst, lop_dtype ddt, int64_t rows, int64_t cols,
                    int64_t ld_dst, cudaStream_t s);
/* dst[r][c] = lop_synth_value(seed, id, r*cols + c, std) (or 1 when ones), pad cols zeroed.
 * ddt may be LOP_F32 (norm weights, biases) or a 16-bit type. */
void k_synth_fill(void *dst, lop_dtype ddt, int64_t rows, int64_t cols, int64_t ld_dst, uint64_t seed, uint32_t id,
                  float std, int ones, cudaStream_t s);

/* ---- elementwise ---- */
/* x[i][:] = emb[tok[i]][:] (fp32 out) */
void k_embed(const void *emb, int ld_emb, lop_dtype dt, const int32_t *tok, int n, int dim, float *x, cudaStream_t s);
/* Row r of the output reads residual row src = rows ? rows[r] : r: v = x[src] (+ bias); when bias is
 * given and rows == NULL, v is written back to x (the pending bias is applied once). out[r] = w * v /
 * rms(v) in dt, pad columns zeroed. */
void k_rmsnorm(float *x, const float *bias, const float *w, const int32_t *rows, int n, int dim, float eps, void *out,
               int ld_out, lop_dtype dt, cudaStream_t s);
/* qkv [n][ld_qkv] fp32 (q | k | v columns) + bias -> rotate-half RoPE -> q_out [n][nh*hd] fp32,
 * K and V rows into the cache at (seq[i], pos[i]). */
void k_rope_cache(const float *qkv, int ld_qkv, const float *bqkv, int n, const int32_t *seq, const int32_t *pos,
                  int nh, int nkv, int hd, const float *inv_freq, float *q_out, __half *kc, __half *vc, int max_seq,
                  cudaStream_t s);
/* h[i][j] = silu(g + bg) * (u + bu) with g = gu[i][j], u = gu[i][f + j]; pad columns zeroed. */
void k_swiglu(const float *gu, int ld_gu, const float *bgu, int n, int f, void *h, int ld_h, lop_dtype dt, cudaStream_t s);

/* ---- matrix-vector (small batch) ---- */
enum { GEMV_STORE = 0, GEMV_ACC = 1, GEMV_SWIGLU = 2, GEMV_ROPE = 3 };
/* what GEMV_ROPE needs to finish the q/k/v product as k_rope_cache does */
typedef struct k_rope_args {
    const float *b; /* q|k|v bias or NULL */
    const int32_t *seq, *pos;
    const float *inv_freq;
    int nh, nkv, hd, max_seq;
    float *q;
    __half *kc, *vc;
    int vpair; /* set by the GEMV launchers (default; LOP_CUDA_VPAIR=0 clears it): v rows two to a work item */
} k_rope_args;
/* W [rows][ldw] (dt), X [nb][ldx] (dt, ldx >= ldw, same zero padding), nb in 1..8.
 *   GEMV_STORE:  Y[b][r] = W[r]·X[b]                                        (r < rows)
 *   GEMV_ACC:    Y[b][r] += W[r]·X[b] + bias[r]   (bias may be NULL)          (r < rows)
 *   GEMV_SWIGLU: rows = 2f (gate rows then up rows); H[b][j] = silu(g + bg[j]) * (u + bu[j]) in dt
 *                with g = W[j]·X[b], u = W[f+j]·X[b], bias = [bg | bu] or NULL; j in [f, pad8(f)) -> 0
 *   GEMV_ROPE:   W = [wq | wk | wv] rows; the products go through bias and RoPE into rope->q and the
 *                K/V cache exactly as k_rope_cache does (Y unused). */
/* Normalised input (GEMV_ROPE / GEMV_SWIGLU; GEMV_STORE where k_gemv_xnorm_store_ok, the LM head):
 * X = T(w * rmsnorm(x)) of the fp32 residual rows x [nb][dim], computed by every block in its
 * prologue instead of a k_rmsnorm launch. */
typedef struct k_xnorm_args {
    const float *x, *w;
    float eps;
    int dim;
} k_xnorm_args;
int k_gemv_max_batch(void);   /* rows the hand GEMV kernels take at most (GEMV_MAX_NB) */
int k_gemv_route_batch(void); /* rows up to which decode products use them rather than cuBLASLt */
void k_gemv(const void *W, int ldw, lop_dtype dt, int rows, const void *X, int ldx, int nb, int mode, float *Y, int ldy,
            const float *bias, void *H, int ldh, const k_rope_args *rope, cudaStream_t s);
/* whether k_gemv_xnorm takes nb tokens of this shape; whether the backend uses it (LOP_CUDA_XNORM != 0) */
int k_gemv_xnorm_ok(int nb, int dim, int ldw);
int k_gemv_xnorm_enabled(void);
int k_gemv_xnorm_store_ok(int nb); /* GEMV_STORE's normalised-input kernels take nb tokens and are on */
void k_gemv_xnorm(const void *W, int ldw, lop_dtype dt, int rows, const k_xnorm_args *xn, int nb, int mode, float *Y,
                  int ldy, void *H, int ldh, const float *bias, const k_rope_args *rope, cudaStream_t s);

/* ---- attention ---- */
/* Decode-style: one query per token (any batch), split over the KV length into at most nsplit chunks
 * (the grid): each token's context in as many chunks of >= 256 keys as it fills (LOP_CUDA_ATTN_MINKEYS;
 * 0: nsplit chunks of ceil(max_seq / nsplit) keys); part needs n*nh*nsplit*(hd+2) floats and counters n*nh
 * zero-initialised ints when nsplit > 1 (the last block of each group combines and re-zeroes).
 * out [n][ld_out] in dt (head h at columns h*hd..), pad columns zeroed. */
int k_attn_decode_splits(int n, int nkv, int ctx_bound, int n_sm);
void k_attn_decode(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos, int n,
                   int nh, int nkv, int hd, int max_seq, int n_slots, int nsplit, float *part, int *counters, void *out,
                   int ld_out, lop_dtype dt, cudaStream_t s);
/* Prefill-style (flash-attention tiles): tiles of consecutive tokens of one sequence with increasing
 * positions; tile t is tokens [tile_start[t], tile_start[t+1]) (at most LOP_ATTN_TILE of them). */
#define LOP_ATTN_TILE 32
/* fma = 1 forces the fp32 FMA kernel (else tensor cores for head_dim 64 / 128) */
void k_attn_prefill(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos,
                    const int32_t *tile_start, int n_tiles, int n, int nh, int nkv, int hd, int max_seq, void *out,
                    int ld_out, lop_dtype dt, int fma, cudaStream_t s);
int k_attn_prefill_smem_ok(int hd);

/* ---- sampling ---- */
typedef struct k_sample_params {
    float temperature; /* <= 0: greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* >= 1 = off */
} k_sample_params;
/* For each sequence s < n: picks a token from logits[s][V]; writes tok[s] and hist[step[0] * n + s]
 * (hist may be NULL); rng[s] is the lop_rng state, advanced by one draw when sampling. Then the
 * decode step's own advance, so that it needs no launch of its own: pos[s] += 1 (pos may be NULL)
 * and, once every row is drawn, step[0] += 1 (step may be NULL; step[1] is its zeroed counter). */
void k_sample(const float *logits, int V, int n, k_sample_params p, uint64_t *rng, int32_t *tok, int32_t *hist,
              int32_t *pos, int32_t *step, cudaStream_t s);
/* the same with the kernel variant chosen (0, 1 = FAST, 2 = CAND; -1: k_sample's) */
void k_sample_variant(int fast, const float *logits, int V, int n, k_sample_params p, uint64_t *rng, int32_t *tok,
                      int32_t *hist, int32_t *pos, int32_t *step, cudaStream_t s);
/* ---- scoring ---- */
/* lp[r] = log softmax(logits[r])[target[r]], is_argmax[r] = target[r] is the first maximum, r < n */
void k_logprob(const float *logits, int V, int n, const int32_t *target, double *lp, int *is_argmax, cudaStream_t s);

#endif
