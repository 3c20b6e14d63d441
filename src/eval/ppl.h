/* Perplexity with the Shortened-LLaMA / LLM-Pruner protocol (and the common 2048-token variant).
 *
 * Protocol (what their PyTorch code computes, ppl_dataset.py / PPLMetric): tokenise the whole text ONCE, put BOS only at the
 * very start, cut the token stream into non-overlapping windows of ctx tokens, drop the tail that
 * does not fill a window, run each window as an independent sequence (no carried context), and
 * score every shifted position: window tokens w[0..ctx-1] give ctx-1 predictions
 * log p(w[t] | w[0..t-1]) for t = 1..ctx-1 (HF: labels = input_ids, logits[:, :-1] vs labels[:, 1:]).
 * The first token of each window is never predicted (in window 1 that token is BOS).
 * PPL = exp(sum of NLL / number of predictions), natural log.
 *
 * Variants (lop_ppl_bos):
 *   FIRST (default)  [BOS] + text, cut into windows of ctx; window 1 = BOS + ctx-1 text tokens.
 *   EACH             every window = BOS + the next ctx text tokens (ctx + 1 fed, all ctx text tokens
 *                    predicted, the first from BOS alone): Shortened-LLM's add_bos_to_every.
 *   NONE             the text tokens alone, windows of ctx (HF tokenizers that add no BOS).
 * A model without a BOS token evaluates FIRST and EACH as NONE (reported in the result). */
#ifndef LOP_EVAL_PPL_H
#define LOP_EVAL_PPL_H
#include <stddef.h>
#include <stdint.h>

#include "core/progress.h"
#include "runtime/engine.h"

typedef enum lop_ppl_bos { LOP_PPL_BOS_FIRST = 0, LOP_PPL_BOS_EACH = 1, LOP_PPL_BOS_NONE = 2 } lop_ppl_bos;

typedef struct lop_ppl_opts {
    int ctx;                /* window length in tokens (≥ 2; ≤ the engine's max_seq_len, which needs one
                               more for EACH) */
    lop_ppl_bos bos;
    int64_t max_windows;    /* 0 = all; else only the first N windows (quick runs, tests) */
    int windows_per_batch;  /* windows per scoring call (the engine packs max_batch per forward);
                               0 = 8 forwards' worth */
    lop_progress *progress; /* NULL = silent; counts windows */
} lop_ppl_opts;

typedef struct lop_ppl_result {
    double ppl, mean_nll;   /* exp(mean NLL); mean NLL in nats */
    int64_t n_text_tokens;  /* tokens of the text (no BOS) */
    int64_t n_windows;      /* windows evaluated */
    int64_t n_scored;       /* predictions scored = n_windows * (ctx - 1), EACH: n_windows * ctx */
    int64_t n_fed;          /* tokens run through the model = n_windows * ctx, EACH: n_windows * (ctx + 1) */
    int64_t n_dropped;      /* text tokens in no window (the tail, or the windows left out by max_windows) */
    int ctx;
    lop_ppl_bos bos;        /* the variant actually used (NONE when the model has no BOS) */
    double seconds;         /* scoring wall time (tokenisation excluded) */
    double *window_nll;     /* [n_windows] sum of NLL per window (malloc'd; lop_ppl_result_free) */
} lop_ppl_result;

/* Window layout for n_text text tokens: number of windows and text tokens left over. */
void lop_ppl_layout(int64_t n_text, int ctx, lop_ppl_bos bos, int64_t *n_windows, int64_t *n_dropped);

/* Perplexity of the text whose tokens (without BOS) are text_ids; bos_id < 0 = no BOS token. */
lop_status lop_ppl_eval_tokens(lop_engine *e, const int32_t *text_ids, int64_t n_text, int bos_id,
                               const lop_ppl_opts *o, lop_ppl_result *r);
/* Encodes text with the model's tokenizer (no BOS: the layout adds it) and evaluates it. */
lop_status lop_ppl_eval_text(lop_engine *e, const char *text, size_t len, const lop_ppl_opts *o,
                             lop_ppl_result *r);
/* Reads a text file (UTF-8; CRLF and lone CR line ends become LF, as Python's text mode reads
 * them) and evaluates it. */
lop_status lop_ppl_eval_file(lop_engine *e, const char *path, const lop_ppl_opts *o, lop_ppl_result *r);
void lop_ppl_result_free(lop_ppl_result *r);

/* Reads a text file into a malloc'd NUL-terminated buffer with CRLF and CR turned into LF. */
lop_status lop_read_text_lf(const char *path, char **text, size_t *len);
#endif
