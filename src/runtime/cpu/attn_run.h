/* Causal attention for a run of consecutive positions of one sequence (prefill, perplexity
 * windows), through BLAS: per head S = Q K^T, masked row softmax, O = S V.
 * Why: the per-token kernel streams a head's K/V rows once per query token; at 2048-token windows
 * that made attention half of the forward (perf, SmolLM2), bound by cache traffic. As two GEMMs
 * the run reads K/V once per head and computes at the BLAS rate. Query rows go in blocks of 256,
 * each against the keys up to its last position, so little of the masked triangle is computed. */
#ifndef LOP_RUNTIME_CPU_ATTN_RUN_H
#define LOP_RUNTIME_CPU_ATTN_RUN_H

/* Queries q[r] (row stride q_stride) at positions p0 + r, r < n, attend to cache rows 0..p0+r of
 * K/V (row stride kv_stride, n_kv heads of hd). out[r] (row stride out_stride) gets all n_heads
 * heads. S: scratch of min(n, 256) * (p0 + n) floats. */
void lop_cpu_attention_run(float *out, int out_stride, const float *q, int q_stride, const float *K, const float *V,
                           int kv_stride, int p0, int n, int n_heads, int n_kv, int hd, float *S);
#endif
