/* The width-pruned model from a plan (compact or zero-padded to the widest layer) and its
 * pruning.json. Why apart from width.c: building tensors and writing the record are the same for
 * every criterion; width.c only decides what is kept. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "model/synth.h"
#include "prune/report.h"
#include "prune/width.h"
#include "train/train.h"

/* per layer: index lists of kept query heads (padded slots -1), kept kv heads, kept channels */
typedef struct layout {
    int nh, nkv, nf;
    int *q, *kv, *ch;
} layout;

/* zero unless `filled`: the gathers below write every element themselves */
static lop_tensor mk(lop_model *m, int64_t rows, int64_t cols, int ndim, int filled, lop_status *st) {
    lop_tensor t = {.dtype = LOP_F32, .ndim = ndim, .shape = {rows, ndim == 2 ? cols : 1}, .present = 1};
    size_t n = (size_t)(rows * (ndim == 2 ? cols : 1));
    t.data = lop_model_malloc(m, (n + 1) * sizeof(float), "pruned tensor");
    if (!t.data) *st = LOP_ERR_OOM;
    else if (!filled) memset(t.data, 0, (n + 1) * sizeof(float));
    else ((float *)t.data)[n] = 0;
    return t;
}

/* The gathers run on the thread pool: a 7B model's pruned copy is ~20 GB of fp32 */
typedef struct gather_job {
    const lop_tensor *src;
    float *d;
    const int *idx;
    int n, blk;
    int64_t cols; /* of src */
    int failed;
} gather_job;

static void rows_range(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    const gather_job *g = ctx;
    int64_t rb = (int64_t)g->blk * g->cols;
    const char *s = g->src->data;
    for (int64_t i = i0; i < i1; i++) {
        if (g->idx[i] >= 0)
            lop_convert_to_f32(g->d + i * rb, s + (size_t)g->idx[i] * rb * lop_dtype_size(g->src->dtype), g->src->dtype, rb);
        else memset(g->d + i * rb, 0, (size_t)rb * sizeof(float));
    }
}

/* rows (blocks of `blk` rows) of src picked by idx[n] (-1 = zero block) */
static lop_tensor gather_rows(lop_model *m, const lop_tensor *src, const int *idx, int n, int blk, lop_status *st) {
    int64_t cols = src->ndim == 2 ? src->shape[1] : 1;
    lop_tensor t = mk(m, (int64_t)n * blk, cols, src->ndim, 1, st);
    if (*st) return t;
    gather_job g = {src, t.data, idx, n, blk, cols, 0};
    lop_parallel_for(n, 1, rows_range, &g);
    return t;
}

static void cols_range(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    gather_job *g = ctx;
    int64_t in = g->cols, w = (int64_t)g->n * g->blk;
    float *row = g->src->dtype == LOP_F32 ? NULL : malloc((size_t)in * sizeof(float));
    if (g->src->dtype != LOP_F32 && !row) {
        g->failed = 1;
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const char *sr = (const char *)g->src->data + (size_t)r * in * lop_dtype_size(g->src->dtype);
        const float *x = (const float *)sr;
        if (row) lop_convert_to_f32(row, sr, g->src->dtype, in), x = row;
        float *dr = g->d + r * w;
        for (int i = 0; i < g->n; i++) {
            if (g->idx[i] < 0) memset(dr + (int64_t)i * g->blk, 0, (size_t)g->blk * sizeof(float));
            else if (g->blk == 1) dr[i] = x[g->idx[i]];
            else memcpy(dr + (int64_t)i * g->blk, x + (int64_t)g->idx[i] * g->blk, (size_t)g->blk * sizeof(float));
        }
    }
    free(row);
}

/* columns (blocks of blk) of src [rows][in] picked by idx */
static lop_tensor gather_cols(lop_model *m, const lop_tensor *src, const int *idx, int n, int blk, lop_status *st) {
    lop_tensor t = mk(m, src->shape[0], (int64_t)n * blk, 2, 1, st);
    if (*st) return t;
    gather_job g = {src, t.data, idx, n, blk, src->shape[1], 0};
    lop_parallel_for(src->shape[0], 16, cols_range, &g);
    if (g.failed) *st = lop_fail(LOP_ERR_OOM, "out of memory");
    return t;
}

static lop_tensor bias_plus(lop_model *m, const lop_tensor *b, const float *add, int64_t D, lop_status *st) {
    if (!b->present && !add) return (lop_tensor){0};
    lop_tensor t = mk(m, D, 1, 1, 0, st);
    if (*st) return t;
    float *d = t.data;
    if (b->present) lop_convert_to_f32(d, b->data, b->dtype, D);
    for (int64_t i = 0; add && i < D; i++) d[i] += add[i];
    return t;
}

lop_status lop_width_apply(lop_model *src, const lop_width_plan *p, int padded, lop_model **out) {
    *out = NULL;
    if (src->synthetic) LOP_TRY(lop_synth_materialize(src));
    int L = src->cfg.n_layers, D = src->cfg.dim;
    if (p->n_layers != L) return lop_fail(LOP_ERR_ARG, "width plan for %d layers, model has %d", p->n_layers, L);
    /* widest kept layer (padded): query heads per kept group, groups, channels */
    int max_qpg = 0, max_g = 0, max_f = 0;
    for (int l = 0; l < L; l++) {
        const lop_layer_shape *s = &src->cfg.layers[l];
        int g = 0, f = 0;
        for (int k = 0; s->n_heads && k < s->n_kv_heads; k++) {
            int qpg = s->n_heads / s->n_kv_heads, c = 0;
            for (int h = 0; h < qpg; h++) c += p->head_keep[l][k * qpg + h];
            if (c) g++;
            if (c > max_qpg) max_qpg = c;
        }
        for (int c = 0; c < s->ffn_dim; c++) f += p->ch_keep[l][c];
        if (g > max_g) max_g = g;
        if (f > max_f) max_f = f;
    }
    lop_model *m;
    lop_status st = lop_model_new_view(src, L, &m);
    if (st != LOP_OK) return st;
    int *q = malloc(1024 * sizeof(int)), *kv = malloc(1024 * sizeof(int));
    int maxf = 1;
    for (int l = 0; l < L; l++)
        if (src->cfg.layers[l].ffn_dim > maxf) maxf = src->cfg.layers[l].ffn_dim;
    int *ch = malloc((size_t)maxf * sizeof(int));
    if (st == LOP_OK && (!q || !kv || !ch)) st = lop_fail(LOP_ERR_OOM, "out of memory");
    for (int l = 0; st == LOP_OK && l < L; l++) {
        const lop_layer_shape *s = &src->cfg.layers[l];
        const lop_layer_weights *W = &src->w.layers[l];
        lop_layer_weights *N = &m->w.layers[l];
        *N = *W;
        m->cfg.layers[l] = *s;
        if (s->n_heads) {
            int qpg = s->n_heads / s->n_kv_heads, nq = 0, ng = 0, per = -1;
            for (int k = 0; k < s->n_kv_heads; k++) {
                int c = 0;
                for (int h = 0; h < qpg; h++) c += p->head_keep[l][k * qpg + h];
                if (!c) continue;
                if (per >= 0 && c != per && !padded) {
                    st = lop_fail(LOP_ERR_ARG, "layer %d: KV groups keep different numbers of query heads", l);
                    break;
                }
                per = c;
                kv[ng++] = k;
                for (int h = 0; h < qpg; h++)
                    if (p->head_keep[l][k * qpg + h]) q[nq++] = k * qpg + h;
                for (int h = c; padded && h < max_qpg; h++) q[nq++] = -1;
            }
            if (st) break;
            for (; padded && ng < max_g; ng++) {
                kv[ng] = -1;
                for (int h = 0; h < max_qpg; h++) q[nq++] = -1;
            }
            int hd = s->head_dim;
            N->wq = gather_rows(m, &W->wq, q, nq, hd, &st);
            if (W->bq.present) N->bq = gather_rows(m, &W->bq, q, nq, hd, &st);
            N->wk = gather_rows(m, &W->wk, kv, ng, hd, &st);
            N->wv = gather_rows(m, &W->wv, kv, ng, hd, &st);
            if (W->bk.present) N->bk = gather_rows(m, &W->bk, kv, ng, hd, &st);
            if (W->bv.present) N->bv = gather_rows(m, &W->bv, kv, ng, hd, &st);
            N->wo = gather_cols(m, &W->wo, q, nq, hd, &st);
            N->bo = bias_plus(m, &W->bo, p->bo_add[l], D, &st);
            m->cfg.layers[l].n_heads = nq;
            m->cfg.layers[l].n_kv_heads = ng;
        }
        if (s->ffn_dim) {
            int nf = 0;
            for (int c = 0; c < s->ffn_dim; c++)
                if (p->ch_keep[l][c]) ch[nf++] = c;
            for (; padded && nf < max_f; nf++) ch[nf] = -1;
            N->w_gate = gather_rows(m, &W->w_gate, ch, nf, 1, &st);
            N->w_up = gather_rows(m, &W->w_up, ch, nf, 1, &st);
            if (W->b_gate.present) N->b_gate = gather_rows(m, &W->b_gate, ch, nf, 1, &st);
            if (W->b_up.present) N->b_up = gather_rows(m, &W->b_up, ch, nf, 1, &st);
            N->w_down = gather_cols(m, &W->w_down, ch, nf, 1, &st);
            N->b_down = bias_plus(m, &W->b_down, p->bdown_add[l], D, &st);
            m->cfg.layers[l].ffn_dim = nf;
        }
    }
    free(q), free(kv), free(ch);
    if (st == LOP_OK) st = lop_model_derive_shapes(m, m->source);
    if (st != LOP_OK) {
        lop_model_free(m);
        return st;
    }
    *out = m;
    return LOP_OK;
}

/* ---- pruning.json --------------------------------------------------------------------------- */
static cJSON *scores_json(const double *s, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, isfinite(s[i]) ? cJSON_CreateNumber(s[i]) : cJSON_CreateNull());
    return a;
}

static cJSON *kept_json(const uint8_t *k, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (k[i]) cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
    return a;
}

cJSON *lop_width_report(const lop_model *m, const lop_model *pruned, const lop_width_opts *o, const char *target_text,
                        const lop_width_plan *p, const lop_calib *cal, const char *calib_path) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "schema", "lop-pruning/1");
    cJSON_AddStringToObject(j, "method", "width: remove attention heads and FFN channels");
    cJSON_AddStringToObject(j, "input", m->source);
    cJSON_AddStringToObject(j, "criterion", lop_width_method_name(o->method));
    cJSON_AddStringToObject(j, "gqa", o->gqa == LOP_GQA_QUERY ? "query heads within each KV group (groups equal)"
                                                               : "whole KV groups");
    cJSON_AddNumberToObject(j, "round", o->round);
    cJSON *lr = cJSON_AddArrayToObject(j, "layers_range");
    cJSON_AddItemToArray(lr, cJSON_CreateNumber(o->layer0));
    cJSON_AddItemToArray(lr, cJSON_CreateNumber(o->layer1 ? o->layer1 : m->cfg.n_layers));
    cJSON_AddStringToObject(j, "score_meaning", "higher = more important; the lowest-scoring heads / channels are removed");
    cJSON *tg = cJSON_AddObjectToObject(j, "target");
    cJSON_AddStringToObject(tg, "spec", target_text ? target_text : "");
    cJSON_AddNumberToObject(tg, "params_to_remove", (double)p->target_removed);
    cJSON *ls = cJSON_AddArrayToObject(j, "layers");
    for (int l = 0; l < p->n_layers; l++) {
        const lop_layer_shape *s = &m->cfg.layers[l];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "head_scores", scores_json(p->head_score[l], s->n_heads));
        cJSON_AddItemToObject(e, "kept_heads", kept_json(p->head_keep[l], s->n_heads));
        cJSON_AddItemToObject(e, "channel_scores", scores_json(p->ch_score[l], s->ffn_dim));
        cJSON_AddItemToObject(e, "kept_channels", kept_json(p->ch_keep[l], s->ffn_dim));
        cJSON_AddBoolToObject(e, "bias_compensation", p->bo_add[l] || p->bdown_add[l]);
        if (pruned && l < pruned->cfg.n_layers) {
            cJSON_AddNumberToObject(e, "n_heads", pruned->cfg.layers[l].n_heads);
            cJSON_AddNumberToObject(e, "n_kv_heads", pruned->cfg.layers[l].n_kv_heads);
            cJSON_AddNumberToObject(e, "ffn_dim", pruned->cfg.layers[l].ffn_dim);
        }
        cJSON_AddItemToArray(ls, e);
    }
    cJSON *pp = cJSON_AddObjectToObject(j, "params");
    int64_t after = pruned ? lop_model_n_params(pruned) : p->params_after;
    cJSON_AddNumberToObject(pp, "before", (double)p->params_before);
    cJSON_AddNumberToObject(pp, "after", (double)after);
    cJSON_AddNumberToObject(pp, "removed_fraction", (double)(p->params_before - after) / p->params_before);
    cJSON_AddItemToObject(j, "calibration", lop_calib_report(cal, calib_path));
    cJSON *t = cJSON_AddObjectToObject(j, "timing");
    cJSON_AddNumberToObject(t, "scoring_seconds", p->seconds);
    cJSON_AddStringToObject(t, "device", o->device == LOP_DEVICE_CUDA ? "cuda" : "cpu");
    return j;
}
