/* Analytic cost of prefill and decode steps (bytes that must move, FLOPs that must run) from a
 * model's per-layer shapes, and the roofline time max(bytes / bandwidth, FLOPs / rate).
 * Why: every benchmark cell reports achieved bandwidth (MBU) and FLOP rate (MFU) and the time the
 * hardware would allow, so a measurement always comes with its floor. */
#ifndef LOP_BENCH_ROOFLINE_H
#define LOP_BENCH_ROOFLINE_H
#include "model/model.h"

typedef struct lop_cost {
    double bytes, flops;
} lop_cost;

typedef struct lop_cost_opts {
    int weight_bytes; /* per weight element: 2 for fp16/bf16, 4 for fp32 */
    int kv_bytes;     /* per cached K or V element */
} lop_cost_opts;

/* Parameters of the matrix products one token runs through (all linear layers + the head). */
int64_t lop_linear_params(const lop_config *c);

/* One decode step: `batch` sequences, each with ctx tokens already cached, one new token each.
 * Bytes: every weight once (embedding: only the gathered rows, unless tied to the head), the KV
 * cache read, the new K/V written. FLOPs: 2 per weight per token, plus QK^T and PV over ctx+1. */
lop_cost lop_decode_cost(const lop_config *c, int batch, int ctx, const lop_cost_opts *o);
/* Prefill of `batch` prompts of n tokens (causal attention over the prompt). */
lop_cost lop_prefill_cost(const lop_config *c, int batch, int n, const lop_cost_opts *o);
/* A whole generation: prefill of a prompt_len prompt, then new_tokens − 1 decode steps. */
lop_cost lop_generation_cost(const lop_config *c, int batch, int prompt_len, int new_tokens, const lop_cost_opts *o);

static inline double lop_roofline_s(lop_cost k, double bytes_per_s, double flops_per_s) {
    double tb = k.bytes / bytes_per_s, tf = k.flops / flops_per_s;
    return tb > tf ? tb : tf;
}
#endif
