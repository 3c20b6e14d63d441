/* Zero-shot multiple choice; see zeroshot.h for lm-eval's encoding and how choices are batched.
 * Items go in chunks: encode the chunk's pairs, turn each item into prefix requests (one request
 * holding every choice when the context is shared and nothing is truncated, else one per choice),
 * score them with lop_score_prefixed, then pick predictions. */
#include "eval/zeroshot.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/timer.h"
#include "eval/prefix_score.h"
#include "tokenizer/tokenizer.h"

#define CHUNK_ITEMS 128

static lop_status encode(const lop_model *m, const char *s, size_t n, int32_t **ids, int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (n == 0) return LOP_OK;
    return lop_model_encode(m, s, n, 0, ids, n_ids);
}

lop_status lop_zs_encode_pair(const lop_model *m, const char *ctx, const char *cont, int32_t **ctx_ids,
                              int *n_ctx, int32_t **cont_ids, int *n_cont) {
    *ctx_ids = *cont_ids = NULL;
    *n_ctx = *n_cont = 0;
    if (!m->tok) return lop_fail(LOP_ERR_ARG, "%s: the model has no tokenizer; zero-shot tasks need one", m->source);
    size_t cn = strlen(ctx), r = lop_py_rstrip_len(ctx, cn), kn = strlen(cont);
    /* context + continuation as one string: the trailing spaces of the context stay in the middle */
    char *whole = malloc(cn + kn + 1);
    if (!whole) return lop_fail(LOP_ERR_OOM, "out of memory");
    memcpy(whole, ctx, cn);
    memcpy(whole + cn, cont, kn + 1);
    int32_t *w = NULL, *c = NULL;
    int nw = 0, nc = 0;
    lop_status st;
    if (r == 0) { /* empty context: lm-eval's prefix token, the continuation encoded whole */
        int bos = lop_tokenizer_bos(m->tok), eos = lop_tokenizer_eos(m->tok);
        c = malloc(sizeof *c);
        if (!c) st = lop_fail(LOP_ERR_OOM, "out of memory");
        else if ((st = encode(m, whole, cn + kn, &w, &nw)) == LOP_OK) {
            c[0] = bos >= 0 ? bos : eos;
            nc = 1;
            if (c[0] < 0) st = lop_fail(LOP_ERR_ARG, "%s: empty context and no BOS/EOS token", m->source);
        }
    } else if ((st = encode(m, ctx, r, &c, &nc)) == LOP_OK) {
        st = encode(m, whole, cn + kn, &w, &nw);
        if (st == LOP_OK) { /* the continuation = what the whole has beyond the context's tokens */
            memmove(w, w + (nc < nw ? nc : nw), (size_t)(nw > nc ? nw - nc : 0) * sizeof *w);
            nw = nw > nc ? nw - nc : 0;
        }
    }
    free(whole);
    if (st == LOP_OK && nw == 0) st = lop_fail(LOP_ERR_ARG, "the continuation '%s' adds no tokens to its context", cont);
    if (st != LOP_OK) {
        free(c);
        free(w);
        return st;
    }
    *ctx_ids = c;
    *n_ctx = nc;
    *cont_ids = w;
    *n_cont = nw;
    return LOP_OK;
}

/* ---- one item's tokens ------------------------------------------------------------------------ */
typedef struct enc_item {
    int32_t *ctx[LOP_MC_MAX_CHOICES], *cont[LOP_MC_MAX_CHOICES];
    int n_ctx[LOP_MC_MAX_CHOICES], n_cont[LOP_MC_MAX_CHOICES];
    int32_t *full[LOP_MC_MAX_CHOICES]; /* ctx + cont, for truncated / unshared choices */
} enc_item;

static void enc_free(enc_item *x) {
    for (int j = 0; j < LOP_MC_MAX_CHOICES; j++) {
        free(x->ctx[j]);
        free(x->cont[j]);
        free(x->full[j]);
    }
    memset(x, 0, sizeof *x);
}

/* ctx[j] is set for every choice (shared contexts are encoded once and copied) */
static lop_status enc_item_make(const lop_model *m, const lop_task *t, const lop_mc_item *it, enc_item *x) {
    memset(x, 0, sizeof *x);
    for (int j = 0; j < it->n_choices; j++) {
        const char *ctx = it->shared_ctx ? it->ctx[0] : it->ctx[j];
        lop_status st = lop_zs_encode_pair(m, ctx, it->cont[j], &x->ctx[j], &x->n_ctx[j], &x->cont[j], &x->n_cont[j]);
        if (st != LOP_OK) {
            lop_error_prefix("%s:%d: choice %d", t->path, it->line, j + 1);
            enc_free(x);
            return st;
        }
    }
    return LOP_OK;
}

lop_status lop_zeroshot_longest(const lop_model *m, const lop_task *t, int *longest) {
    *longest = 0;
    for (int i = 0; i < t->n_items; i++) {
        enc_item x;
        LOP_TRY(enc_item_make(m, t, &t->items[i], &x));
        for (int j = 0; j < t->items[i].n_choices; j++)
            if (x.n_ctx[j] + x.n_cont[j] - 1 > *longest) *longest = x.n_ctx[j] + x.n_cont[j] - 1;
        enc_free(&x);
    }
    return LOP_OK;
}

/* ---- evaluation ------------------------------------------------------------------------------- */
typedef struct req_map {
    int item, choice; /* choice -1: the request holds all choices of the item */
} req_map;

static int argmax(const double *v, int n) {
    int a = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[a]) a = i; /* numpy: the first of equal maxima */
    return a;
}

lop_status lop_zeroshot_eval(lop_engine *e, const lop_task *t, const lop_zs_opts *o, lop_zs_result *r) {
    memset(r, 0, sizeof *r);
    int max_len = o->max_len > 0 ? o->max_len : e->opts.max_seq_len;
    if (max_len > e->opts.max_seq_len)
        return lop_fail(LOP_ERR_ARG, "max_len %d exceeds the engine's %d positions", max_len, e->opts.max_seq_len);
    double t0 = lop_now();
    r->items = calloc((size_t)(t->n_items ? t->n_items : 1), sizeof *r->items);
    enc_item *enc = calloc(CHUNK_ITEMS, sizeof *enc);
    lop_prefix_req *reqs = malloc((size_t)CHUNK_ITEMS * LOP_MC_MAX_CHOICES * sizeof *reqs);
    req_map *map = malloc((size_t)CHUNK_ITEMS * LOP_MC_MAX_CHOICES * sizeof *map);
    lop_score *sc = malloc((size_t)CHUNK_ITEMS * LOP_MC_MAX_CHOICES * sizeof *sc);
    lop_status st = LOP_OK;
    if (!r->items || !enc || !reqs || !map || !sc) st = lop_fail(LOP_ERR_OOM, "out of memory (zero-shot)");
    int n_acc = 0, n_norm = 0;
    for (int i0 = 0; st == LOP_OK && i0 < t->n_items; i0 += CHUNK_ITEMS) {
        int ni = t->n_items - i0 < CHUNK_ITEMS ? t->n_items - i0 : CHUNK_ITEMS, nr = 0;
        for (int k = 0; k < ni && st == LOP_OK; k++) {
            const lop_mc_item *it = &t->items[i0 + k];
            enc_item *x = &enc[k];
            lop_zs_item *res = &r->items[i0 + k];
            if ((st = enc_item_make(e->m, t, it, x)) != LOP_OK) break;
            res->gold = it->gold;
            res->n_choices = it->n_choices;
            int longest = 0;
            for (int j = 0; j < it->n_choices; j++) {
                res->n_ctx[j] = x->n_ctx[j];
                res->n_cont[j] = x->n_cont[j];
                if (x->n_ctx[j] + x->n_cont[j] - 1 > longest) longest = x->n_ctx[j] + x->n_cont[j] - 1;
            }
            if (it->shared_ctx && !o->no_share && longest <= max_len) {
                reqs[nr] = (lop_prefix_req){x->ctx[0], x->n_ctx[0], it->n_choices, (const int32_t *const *)x->cont,
                                            x->n_cont};
                map[nr++] = (req_map){i0 + k, -1};
                continue;
            }
            for (int j = 0; j < it->n_choices && st == LOP_OK; j++) {
                int n = x->n_ctx[j] + x->n_cont[j], start = 0;
                if (x->n_cont[j] > max_len) {
                    st = lop_fail(LOP_ERR_ARG, "%s:%d: choice %d has %d continuation tokens, more than max_len %d",
                                  t->path, it->line, j + 1, x->n_cont[j], max_len);
                    break;
                }
                if (!(x->full[j] = malloc((size_t)n * sizeof(int32_t)))) {
                    st = lop_fail(LOP_ERR_OOM, "out of memory");
                    break;
                }
                memcpy(x->full[j], x->ctx[j], (size_t)x->n_ctx[j] * sizeof(int32_t));
                memcpy(x->full[j] + x->n_ctx[j], x->cont[j], (size_t)x->n_cont[j] * sizeof(int32_t));
                if (n - 1 > max_len) { /* lm-eval: (ctx + cont)[-(max_len + 1):][:-1] */
                    start = n - (max_len + 1);
                    res->truncated = 1;
                }
                reqs[nr] = (lop_prefix_req){x->full[j] + start, n - start - x->n_cont[j], 1,
                                            (const int32_t *const *)&x->cont[j], &x->n_cont[j]};
                map[nr++] = (req_map){i0 + k, j};
            }
        }
        if (st == LOP_OK) st = lop_score_prefixed(e, reqs, nr, o->batch_tokens, sc);
        /* scatter the scores back to items */
        for (int q = 0, s = 0; st == LOP_OK && q < nr; q++) {
            lop_zs_item *res = &r->items[map[q].item];
            const lop_prefix_req *rq = &reqs[q];
            r->n_tokens += rq->n_prefix;
            for (int c = 0; c < rq->n_cont; c++, s++) {
                int j = map[q].choice < 0 ? c : map[q].choice;
                res->ll[j] = sc[s].logprob;
                res->greedy[j] = sc[s].greedy;
                r->n_tokens += rq->cont_len[c] - 1;
            }
        }
        for (int k = 0; k < ni; k++) {
            if (st == LOP_OK) {
                const lop_mc_item *it = &t->items[i0 + k];
                lop_zs_item *res = &r->items[i0 + k];
                double normed[LOP_MC_MAX_CHOICES];
                for (int j = 0; j < it->n_choices; j++) normed[j] = res->ll[j] / (double)it->norm_len[j];
                res->pred = argmax(res->ll, it->n_choices);
                res->pred_norm = argmax(normed, it->n_choices);
                n_acc += res->pred == res->gold;
                n_norm += res->pred_norm == res->gold;
                r->n_truncated += res->truncated;
            }
            enc_free(&enc[k]);
        }
        lop_progress_set(o->progress, i0 + ni);
    }
    free(enc);
    free(reqs);
    free(map);
    free(sc);
    if (st != LOP_OK) {
        lop_zs_result_free(r);
        return st;
    }
    r->n_items = t->n_items;
    r->acc = t->n_items ? (double)n_acc / t->n_items : 0;
    r->acc_norm = t->n_items ? (double)n_norm / t->n_items : 0;
    r->seconds = lop_now() - t0;
    return LOP_OK;
}

void lop_zs_result_free(lop_zs_result *r) {
    free(r->items);
    r->items = NULL;
}
