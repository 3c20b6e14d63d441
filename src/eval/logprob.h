/* Next-token log-likelihoods of whole sequences through any engine.
 * Why one function: perplexity (eval), zero-shot choice scoring (eval) and the PPL / Taylor pruning
 * criteria (prune) all need sum(log p(token_t+1 | tokens_0..t)) over chosen positions, batched. */
#ifndef LOP_EVAL_LOGPROB_H
#define LOP_EVAL_LOGPROB_H
#include <stdint.h>

#include "runtime/engine.h"

typedef struct lop_score_req {
    const int32_t *tokens; /* the sequence fed to the model */
    int n_tokens;
    int first;             /* first token index that is scored (its log-prob given all before it); ≥ 1 */
} lop_score_req;

typedef struct lop_score {
    double logprob; /* sum of log p over scored tokens (natural log) */
    int n_scored;
    int greedy;     /* 1 when every scored token was the argmax (lm-eval's is_greedy) */
} lop_score;

/* Scores n requests; sequences are packed into batches of up to the engine's max_batch slots and
 * max_seq_len positions (each request must fit in max_seq_len). token_logprobs, when not NULL,
 * receives per request the log-probs of its scored tokens, back to back in request order. */
lop_status lop_score_sequences(lop_engine *e, const lop_score_req *reqs, int n, lop_score *out,
                               double *token_logprobs);

/* log(sum(exp(row))) over V logits (max-shifted; exp in float, sum in double); argmax (first of
 * ties, like numpy/torch) into *argmax when not NULL. log p(t) = row[t] - lop_logits_lse(row). */
double lop_logits_lse(const float *row, int V, int *argmax);
#endif
