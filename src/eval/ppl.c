/* Perplexity over non-overlapping windows; see ppl.h for the protocol and the positions scored.
 * Windows are independent sequences, so they are simply packed into the engine's slots and scored
 * with lop_score_sequences (first scored token = 1 in every window). */
#include "eval/ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/timer.h"
#include "eval/logprob.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"

void lop_ppl_layout(int64_t n_text, int ctx, lop_ppl_bos bos, int64_t *n_windows, int64_t *n_dropped) {
    int64_t nw = 0, used = 0;
    if (ctx >= 2 && n_text > 0) {
        switch (bos) {
        case LOP_PPL_BOS_FIRST: /* [BOS] + text: n_text + 1 tokens */
            nw = (n_text + 1) / ctx;
            used = nw > 0 ? nw * ctx - 1 : 0;
            break;
        case LOP_PPL_BOS_EACH: /* BOS + ctx text tokens per window */
            nw = n_text / ctx;
            used = nw * ctx;
            break;
        case LOP_PPL_BOS_NONE:
            nw = n_text / ctx;
            used = nw * ctx;
            break;
        }
    }
    *n_windows = nw;
    *n_dropped = n_text - used;
}

/* text tokens consumed by the first k windows */
static int64_t text_used(int64_t k, int ctx, lop_ppl_bos bos) {
    switch (bos) {
    case LOP_PPL_BOS_FIRST: return k > 0 ? k * ctx - 1 : 0;
    default: return k * ctx;
    }
}

lop_status lop_ppl_eval_tokens(lop_engine *e, const int32_t *text_ids, int64_t n_text, int bos_id,
                               const lop_ppl_opts *o, lop_ppl_result *r) {
    memset(r, 0, sizeof *r);
    int ctx = o->ctx;
    if (ctx < 2) return lop_fail(LOP_ERR_ARG, "perplexity: window length %d; need at least 2 tokens", ctx);
    lop_ppl_bos bos = bos_id < 0 ? LOP_PPL_BOS_NONE : o->bos;
    int len = ctx + (bos == LOP_PPL_BOS_EACH); /* tokens fed per window */
    if (len > e->opts.max_seq_len)
        return lop_fail(LOP_ERR_ARG, "perplexity: window of %d tokens exceeds the engine's %d positions", len,
                        e->opts.max_seq_len);
    int64_t nw, dropped;
    lop_ppl_layout(n_text, ctx, bos, &nw, &dropped);
    if (nw == 0)
        return lop_fail(LOP_ERR_ARG, "perplexity: the text has %lld tokens, fewer than one window of %d",
                        (long long)n_text, ctx);
    if (o->max_windows > 0 && nw > o->max_windows) nw = o->max_windows;
    r->ctx = ctx;
    r->bos = bos;
    r->n_text_tokens = n_text;
    r->n_windows = nw;
    r->n_dropped = n_text - text_used(nw, ctx, bos);
    /* windows per scoring call: several forwards' worth, so the logits buffer is reused */
    int wpb = o->windows_per_batch > 0 ? o->windows_per_batch : 8 * (e->opts.max_batch > 0 ? e->opts.max_batch : 1);
    if (wpb > nw) wpb = (int)nw;

    lop_score_req *reqs = malloc((size_t)wpb * sizeof *reqs);
    lop_score *sc = malloc((size_t)wpb * sizeof *sc);
    int32_t *buf = malloc((size_t)wpb * len * sizeof *buf); /* one batch of windows, BOS placed */
    r->window_nll = malloc((size_t)nw * sizeof *r->window_nll);
    lop_status st = LOP_OK;
    if (!reqs || !sc || !buf || !r->window_nll) st = lop_fail(LOP_ERR_OOM, "out of memory (perplexity windows)");
    double t0 = lop_now(), nll = 0;
    for (int64_t w0 = 0; st == LOP_OK && w0 < nw; w0 += wpb) {
        int nb = (int)(nw - w0 < wpb ? nw - w0 : wpb);
        for (int i = 0; i < nb; i++) {
            int64_t k = w0 + i;
            int32_t *dst = buf + (size_t)i * len;
            switch (bos) {
            case LOP_PPL_BOS_FIRST:
                if (k == 0) {
                    dst[0] = bos_id;
                    memcpy(dst + 1, text_ids, (size_t)(ctx - 1) * sizeof *dst);
                } else {
                    memcpy(dst, text_ids + k * ctx - 1, (size_t)ctx * sizeof *dst);
                }
                break;
            case LOP_PPL_BOS_EACH:
                dst[0] = bos_id;
                memcpy(dst + 1, text_ids + k * ctx, (size_t)ctx * sizeof *dst);
                break;
            case LOP_PPL_BOS_NONE: memcpy(dst, text_ids + k * ctx, (size_t)ctx * sizeof *dst); break;
            }
            reqs[i] = (lop_score_req){dst, len, 1};
        }
        st = lop_score_sequences(e, reqs, nb, sc, NULL);
        for (int i = 0; st == LOP_OK && i < nb; i++) {
            r->window_nll[w0 + i] = -sc[i].logprob;
            nll += -sc[i].logprob;
        }
        lop_progress_set(o->progress, w0 + nb);
    }
    r->seconds = lop_now() - t0;
    free(reqs);
    free(sc);
    free(buf);
    if (st != LOP_OK) {
        lop_ppl_result_free(r);
        return st;
    }
    r->n_scored = nw * (int64_t)(len - 1);
    r->n_fed = nw * (int64_t)len;
    r->mean_nll = nll / (double)r->n_scored;
    r->ppl = exp(r->mean_nll);
    return LOP_OK;
}

lop_status lop_ppl_eval_text(lop_engine *e, const char *text, size_t len, const lop_ppl_opts *o,
                             lop_ppl_result *r) {
    memset(r, 0, sizeof *r);
    const lop_model *m = e->m;
    if (!m->tok) return lop_fail(LOP_ERR_ARG, "%s: the model has no tokenizer; perplexity needs one", m->source);
    int32_t *ids = NULL;
    int n = 0;
    LOP_TRY(lop_model_encode(m, text, len, 0, &ids, &n));
    lop_status st = lop_ppl_eval_tokens(e, ids, n, lop_tokenizer_bos(m->tok), o, r);
    free(ids);
    return st;
}

lop_status lop_read_text_lf(const char *path, char **text, size_t *len) {
    char *t;
    size_t n;
    LOP_TRY(lop_read_file(path, &t, &n));
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '\r' && i + 1 < n && t[i + 1] == '\n') continue;
        t[j++] = t[i] == '\r' ? '\n' : t[i];
    }
    t[j] = 0;
    *text = t;
    *len = j;
    return LOP_OK;
}

lop_status lop_ppl_eval_file(lop_engine *e, const char *path, const lop_ppl_opts *o, lop_ppl_result *r) {
    memset(r, 0, sizeof *r);
    char *text;
    size_t len;
    LOP_TRY(lop_read_text_lf(path, &text, &len));
    lop_status st = lop_ppl_eval_text(e, text, len, o, r);
    if (st != LOP_OK) lop_error_prefix("%s", path);
    free(text);
    return st;
}

void lop_ppl_result_free(lop_ppl_result *r) {
    free(r->window_nll);
    r->window_nll = NULL;
}
