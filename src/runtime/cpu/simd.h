/* AVX2+FMA versions of the CPU backend's non-GEMM loops (attention, SwiGLU), chosen at run time.
 * Why: in prefill / perplexity scoring the scalar attention loops took ~20 % of the time and the
 * scalar expf of SwiGLU and softmax another few percent (perf, SmolLM2, 128-token windows); the
 * reference versions in ops.c stay the oracle and the fallback. */
#ifndef LOP_RUNTIME_CPU_SIMD_H
#define LOP_RUNTIME_CPU_SIMD_H
#include <stdint.h>

/* 1 when this CPU runs the AVX2+FMA code. */
int lop_cpu_simd_available(void);
/* lop_cpu_attention (ops.h) for hd % 8 == 0. */
void lop_cpu_attention_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                            int n_heads, int n_kv, int hd, int h0, int h1, float *scratch);
/* Every query head of KV head kvh (heads kvh*G .. kvh*G+G-1, G = n_heads / n_kv <= LOP_ATT_MAX_GROUP)
 * over keys 0..n_ctx-1, for hd % 32 == 0; scratch holds G * n_ctx floats. Same math as above, each
 * key / value row read once for the group. */
#define LOP_ATT_MAX_GROUP 16
void lop_cpu_attention_group_avx2(float *out, const float *q, const float *K, const float *V, int n_ctx, int kv_stride,
                                  int n_heads, int n_kv, int hd, int kvh, float *scratch);
/* log(sum(exp(row))) and the first argmax of V logits (eval/logprob.h lop_logits_lse). */
double lop_cpu_lse_avx2(const float *row, int V, int *argmax);
/* In-place softmax of n floats (max-shifted; sum in double). */
void lop_cpu_softmax_avx2(float *x, int n);
/* lop_cpu_swiglu (ops.h). */
void lop_cpu_swiglu_avx2(float *h, const float *g, const float *u, int64_t n);
#endif
