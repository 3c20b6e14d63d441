/* Scoring several continuations of one shared prefix, running the prefix once.
 * Why: a multiple-choice item asks for log p(choice | context) for 2-5 choices of one context
 * (BoolQ: a ~150-token passage and one-token answers). Running the context once and each
 * continuation on top of its KV cache does the context's work once instead of once per choice.
 *
 * How, with the engine as it is (one KV cache per slot, no copying between slots): each prefix
 * gets a slot and is run once (logits at its last position: the first token of every
 * continuation); then, round by round, continuation j of every prefix is run at the positions
 * after the prefix, overwriting the previous round's entries there. This relies on the backend
 * contract that a forward at position p writes the slot's cache at p and attends to 0..p only
 * (runtime/backend.h). Results equal scoring prefix+continuation as whole sequences up to float
 * rounding (tests/test_zeroshot.c checks it). */
#ifndef LOP_EVAL_PREFIX_SCORE_H
#define LOP_EVAL_PREFIX_SCORE_H
#include <stdint.h>

#include "eval/logprob.h"

typedef struct lop_prefix_req {
    const int32_t *prefix; /* ≥ 1 token */
    int n_prefix;
    int n_cont;
    const int32_t *const *cont; /* [n_cont] continuations, each ≥ 1 token */
    const int *cont_len;
} lop_prefix_req;

/* out receives, request by request, one lop_score per continuation (sum of log p of its tokens
 * given the prefix, n_scored = its length, greedy = lm-eval's is_greedy). Every request must fit
 * the engine: n_prefix + longest continuation - 1 ≤ max_seq_len. batch_tokens bounds the tokens
 * of one forward (0 = 2048; a single longer prefix still runs alone). */
lop_status lop_score_prefixed(lop_engine *e, const lop_prefix_req *reqs, int n, int batch_tokens, lop_score *out);
#endif
