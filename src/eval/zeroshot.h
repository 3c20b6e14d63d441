/* Zero-shot multiple-choice evaluation as lm-evaluation-harness computes it: tokenise each
 * (context, continuation) pair lm-eval's way, score every choice by the log-likelihood of its
 * continuation, report acc and acc_norm per task and the paper's average.
 *
 * Tokenisation (lm-eval TemplateLM._encode_pair, causal LMs): trailing whitespace of the context
 * moves to the front of the continuation; then ctx = encode(context) and
 * cont = encode(context + continuation)[len(ctx):] — the continuation tokens are the difference,
 * so a merge across the boundary is seen as lm-eval sees it. No BOS (lm-eval encodes with
 * add_special_tokens=False); an empty context becomes [BOS] (else EOS), lm-eval's prefix token.
 * The model sees ctx + cont minus the last token, left-truncated to max_len tokens as lm-eval does.
 *
 * Batching: an item's choices share its context (all tasks but WinoGrande), so the context runs
 * once and the continuations run on top of its KV cache (eval/prefix_score.h); WinoGrande's two
 * contexts each run once with the shared continuation. */
#ifndef LOP_EVAL_ZEROSHOT_H
#define LOP_EVAL_ZEROSHOT_H
#include <stdint.h>

#include "core/progress.h"
#include "eval/task.h"
#include "runtime/engine.h"

typedef struct lop_zs_opts {
    int max_len;            /* lm-eval max_length: model input longer than this is cut on the left;
                               0 = the engine's max_seq_len (must not exceed it) */
    int batch_tokens;       /* tokens per forward (0 = 2048) */
    int no_share;           /* 1: score every choice as a whole sequence (no shared context) */
    lop_progress *progress; /* counts items */
} lop_zs_opts;

typedef struct lop_zs_item {
    int gold, pred, pred_norm, n_choices;
    int truncated;                          /* 1 when an input was cut to max_len */
    double ll[LOP_MC_MAX_CHOICES];          /* log-likelihood of each continuation */
    int greedy[LOP_MC_MAX_CHOICES];         /* lm-eval's is_greedy */
    int n_ctx[LOP_MC_MAX_CHOICES];          /* context tokens (before truncation) */
    int n_cont[LOP_MC_MAX_CHOICES];         /* continuation tokens */
} lop_zs_item;

typedef struct lop_zs_result {
    int n_items, n_truncated;
    double acc, acc_norm;   /* fractions of items */
    double seconds;         /* tokenising + scoring */
    int64_t n_tokens;       /* tokens run through the model */
    lop_zs_item *items;     /* [n_items] */
} lop_zs_result;

lop_status lop_zeroshot_eval(lop_engine *e, const lop_task *t, const lop_zs_opts *o, lop_zs_result *r);
void lop_zs_result_free(lop_zs_result *r);

/* The longest model input (tokens) any item of t needs, so an engine can be sized to it. */
lop_status lop_zeroshot_longest(const lop_model *m, const lop_task *t, int *longest);

/* lm-eval's encoding of one pair (above); malloc'd arrays. */
lop_status lop_zs_encode_pair(const lop_model *m, const char *ctx, const char *cont, int32_t **ctx_ids,
                              int *n_ctx, int32_t **cont_ids, int *n_cont);

/* The paper's score of a task: acc or acc_norm as its metric says. */
static inline double lop_zs_score(const lop_zs_result *r, lop_metric m) {
    return m == LOP_METRIC_ACC_NORM ? r->acc_norm : r->acc;
}
#endif
