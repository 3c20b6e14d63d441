/* Backend vtable: one forward pass over a ragged batch of tokens, with a KV cache per sequence slot.
 * Why this shape: prefill (many tokens of few sequences) and decode (one token of many sequences)
 * are the same call, so generation, perplexity and pruning criteria all drive any backend alike. */
#ifndef LOP_RUNTIME_BACKEND_H
#define LOP_RUNTIME_BACKEND_H
#include <stdint.h>

#include "model/model.h"

/* n_tokens tokens; token i belongs to sequence slot seq[i] at position pos[i]. Tokens of one
 * sequence appear in increasing position order; positions below pos[i] must already be cached
 * (or be earlier tokens of this batch). Logits are produced for the n_out token indices out_idx[].
 * A token at position p writes its slot's cache entry p and attends to entries 0..p only, so a
 * later batch may run other tokens at positions ≥ p of the same slot and they replace what was
 * there (eval/prefix_score.c runs several continuations after one cached prefix this way). */
typedef struct lop_batch {
    int n_tokens;
    const int32_t *tokens, *seq, *pos;
    int n_out;
    const int32_t *out_idx;
} lop_batch;

typedef struct lop_backend lop_backend;

/* A whole generation handed to a backend that decodes on its device (see lop_backend_ops.decode).
 * Semantics are lop_generate's: the first token of each sequence is sampled from the prefill
 * logits, then one decode step per token; a sequence stops at eos_id unless p->ignore_eos or after
 * p->max_new_tokens; on_step is called once per step in order, -1 for finished sequences. */
typedef struct lop_decode_req {
    const lop_batch *prefill; /* every prompt token; out_idx[s] = last token of sequence s, increasing */
    int n_seq;
    const int *prompt_lens;
    const lop_gen_params *p;
    const uint64_t *rng_state; /* [n_seq] lop_rng states, seeded as the CPU sampler seeds them */
    int eos_id;
    lop_gen_result *res; /* tokens[s] has room for max_new_tokens; n_tokens, times, steps are filled */
} lop_decode_req;

typedef struct lop_backend_ops {
    const char *name;
    lop_status (*create)(lop_model *m, const lop_engine_opts *o, lop_backend **out);
    /* logits: host buffer [n_out][vocab] */
    lop_status (*forward)(lop_backend *be, const lop_batch *b, float *logits);
    void (*destroy)(lop_backend *be);
    /* optional (NULL: not provided) */
    lop_status (*plan)(lop_model *m, const lop_engine_opts *o, lop_mem_plan *out);
    /* device-resident generation: sampling on the device, no host round trip per token */
    lop_status (*decode)(lop_backend *be, const lop_decode_req *r);
    int weight_bytes, kv_bytes; /* bytes per weight / per cached K or V element, for roofline figures */
    /* optional: scoring without logits on the host -- for output row j, lp[j] = log softmax(logits)[target[j]]
     * and is_argmax[j] = (target[j] is the row's first maximum), as lop_logits_lse computes them */
    lop_status (*forward_logprob)(lop_backend *be, const lop_batch *b, const int32_t *target, double *lp,
                                  int *is_argmax);
} lop_backend_ops;

extern const lop_backend_ops lop_cpu_backend;
#ifdef LOP_HAVE_CUDA
extern const lop_backend_ops lop_cuda_backend;
#endif

#endif
