/* Width-pruning plan (scores, kept heads / channels, FLAP compensation) and the pruned model; see
 * width.h. Why the Wanda-sp re-propagation is a correction and not a rebuilt trainer: removing a head
 * or channel is exactly subtracting its o_proj / down_proj column times its input from the module's
 * output, so the trainer runs the unpruned weights and we subtract; nothing is copied or rebuilt. */
#include "prune/width.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "core/timer.h"
#include "model/synth.h"
#include "train/train.h"

static const char *const method_names[LOP_WM_COUNT] = {"magnitude", "wanda-sp", "flap", "llm-pruner"};

const char *lop_width_method_name(lop_width_method m) { return m < LOP_WM_COUNT ? method_names[m] : "?"; }

lop_status lop_width_method_parse(const char *s, lop_width_method *out) {
    for (int i = 0; i < LOP_WM_COUNT; i++)
        if (!strcmp(s, method_names[i])) return *out = (lop_width_method)i, LOP_OK;
    return lop_fail(LOP_ERR_ARG, "unknown --method '%s' (expected magnitude, wanda-sp, flap or llm-pruner)", s);
}

lop_status lop_gqa_mode_parse(const char *s, lop_gqa_mode *out) {
    if (!strcmp(s, "query")) return *out = LOP_GQA_QUERY, LOP_OK;
    if (!strcmp(s, "kv")) return *out = LOP_GQA_KV, LOP_OK;
    return lop_fail(LOP_ERR_ARG, "unknown --gqa '%s' (expected query: heads inside each KV group, or kv: whole groups)", s);
}

/* ---- small helpers ------------------------------------------------------------------------ */
static int64_t attn_cost(int nh, int nkv, int hd, int dim) { return 2 * (int64_t)nh * hd * dim + 2 * (int64_t)nkv * hd * dim; }

static int round_ffn(double f, int r, int full) {
    int k = (int)llround(f / r) * r;
    if (k < r) k = r;
    return k > full ? full : k;
}

/* kept[n] = 1 for the k highest scores (ties: the lower index) */
static void keep_top(const double *s, int n, int k, uint8_t *kept) {
    memset(kept, 0, (size_t)n);
    for (int c = 0; c < k; c++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!kept[i] && (best < 0 || s[i] > s[best])) best = i;
        kept[best] = 1;
    }
}

/* head selection: QUERY mode keeps qk heads in every group; KV mode keeps qk whole groups */
static void select_heads(const lop_layer_shape *s, lop_gqa_mode g, int qk, const double *hs, uint8_t *keep) {
    int qpg = s->n_heads / s->n_kv_heads;
    if (g == LOP_GQA_QUERY) {
        for (int grp = 0; grp < s->n_kv_heads; grp++) keep_top(hs + grp * qpg, qpg, qk, keep + grp * qpg);
    } else {
        double gs[256];
        uint8_t gk[256];
        for (int grp = 0; grp < s->n_kv_heads; grp++) {
            gs[grp] = 0;
            for (int h = 0; h < qpg; h++) gs[grp] += hs[grp * qpg + h];
        }
        keep_top(gs, s->n_kv_heads, qk, gk);
        for (int h = 0; h < s->n_heads; h++) keep[h] = gk[h / qpg];
    }
}

/* params removed in layer l with qk kept (per group, or groups) and f kept FFN channels */
static int64_t removed_params(const lop_model *m, int l, lop_gqa_mode g, int qk, int f) {
    const lop_layer_shape *s = &m->cfg.layers[l];
    int64_t r = 0, D = m->cfg.dim;
    if (s->n_heads) {
        int qpg = s->n_heads / s->n_kv_heads;
        int64_t full = attn_cost(s->n_heads, s->n_kv_heads, s->head_dim, (int)D);
        r += full - (g == LOP_GQA_QUERY ? attn_cost(qk * s->n_kv_heads, s->n_kv_heads, s->head_dim, (int)D)
                                        : attn_cost(qk * qpg, qk, s->head_dim, (int)D));
    }
    if (s->ffn_dim) r += 3 * D * (s->ffn_dim - f);
    return r;
}

static int units_per_layer(const lop_layer_shape *s, lop_gqa_mode g) {
    return g == LOP_GQA_QUERY ? s->n_heads / s->n_kv_heads : s->n_kv_heads;
}

void lop_width_plan_free(lop_width_plan *p) {
    if (!p) return;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->head_score) free(p->head_score[l]);
        if (p->ch_score) free(p->ch_score[l]);
        if (p->head_keep) free(p->head_keep[l]);
        if (p->ch_keep) free(p->ch_keep[l]);
        if (p->bo_add) free(p->bo_add[l]);
        if (p->bdown_add) free(p->bdown_add[l]);
    }
    free(p->head_score);
    free(p->ch_score);
    free(p->head_keep);
    free(p->ch_keep);
    free(p->bo_add);
    free(p->bdown_add);
    memset(p, 0, sizeof *p);
}

/* ---- scores --------------------------------------------------------------------------------- */
/* Scratch of the host-side scoring, four buffers of the largest layer tensor, reused across layers:
 * allocating tensor-sized buffers afresh for every layer made a 7B model's scoring page-fault bound. */
typedef struct wbuf {
    float *b[4];
} wbuf;

static int wbuf_init(wbuf *w, int64_t cap) { /* 0 on success; no lop_fail: may run on a worker */
    for (int i = 0; i < 4; i++) w->b[i] = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(float));
    return w->b[0] && w->b[1] && w->b[2] && w->b[3] ? 0 : -1;
}
static void wbuf_free(wbuf *w) {
    for (int i = 0; i < 4; i++) free(w->b[i]), w->b[i] = NULL;
}
/* the largest projection of the layers [l0, l1) */
static int64_t wbuf_cap(const lop_model *m, int l0, int l1) {
    int64_t cap = 1;
    for (int l = l0; l < l1; l++)
        for (int f = 0; f < LOP_LF_COUNT; f++) {
            int64_t n = lop_tensor_numel(lop_layer_tensor_c(&m->w.layers[l], f));
            if (n > cap) cap = n;
        }
    return cap;
}

/* fp32 values of a tensor: its own data when stored as fp32, else converted into buf */
static const float *f32_of(const lop_tensor *t, float *buf) {
    if (t->dtype == LOP_F32) return t->data;
    lop_convert_to_f32(buf, t->data, t->dtype, lop_tensor_numel(t));
    return buf;
}

/* W (gs NULL) or W * dL/dW (gs: the gradient store) of a layer tensor, in buf or in place */
static const float *group_w(const lop_model *m, int l, int field, const lop_grad_store *gs, float *buf) {
    const lop_tensor *t = lop_layer_tensor_c(&m->w.layers[l], field);
    const float *w = f32_of(t, buf);
    if (!gs) return w;
    const float *g = lop_grad_store_get(gs, (lop_param_id){l, field});
    int64_t n = lop_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) buf[i] = w[i] * (g ? g[i] : 0.0f);
    return buf;
}

/* W [rows][cols] -> t [cols][rows], in blocks: walking a column of a wide matrix misses the cache
 * on every element, which on a 7B model's projections costs seconds per layer */
static const float *transpose_into(float *t, const float *W, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32)
            for (int r = r0; r < rows && r < r0 + 32; r++)
                for (int c = c0; c < cols && c < c0 + 32; c++) t[(size_t)c * rows + r] = W[(size_t)r * cols + c];
    return t;
}

/* sum over each group of |W| (gs NULL) or |W * dL/dW| (gs) */
static void magnitude(const lop_model *m, int l, lop_gqa_mode g, double *hs, double *cs, const lop_grad_store *gs,
                      wbuf *wb) {
    const lop_layer_shape *s = &m->cfg.layers[l];
    int D = m->cfg.dim;
    if (s->n_heads) {
        int hd = s->head_dim, qd = s->n_heads * hd, qpg = s->n_heads / s->n_kv_heads;
        const float *q = group_w(m, l, LOP_LF_wq, gs, wb->b[0]), *o = group_w(m, l, LOP_LF_wo, gs, wb->b[1]);
        const float *k = g == LOP_GQA_KV ? group_w(m, l, LOP_LF_wk, gs, wb->b[2]) : NULL,
                    *v = g == LOP_GQA_KV ? group_w(m, l, LOP_LF_wv, gs, wb->b[3]) : NULL;
        for (int h = 0; h < s->n_heads; h++) {
            double a = 0;
            for (int64_t i = (int64_t)h * hd * D; i < (int64_t)(h + 1) * hd * D; i++) a += fabs(q[i]);
            for (int r = 0; r < D; r++)
                for (int j = h * hd; j < (h + 1) * hd; j++) a += fabs(o[(size_t)r * qd + j]);
            if (g == LOP_GQA_KV) { /* the group's k/v rows, shared out over its heads */
                int kv = h / qpg;
                double b = 0;
                for (int64_t i = (int64_t)kv * hd * D; i < (int64_t)(kv + 1) * hd * D; i++) b += fabs(k[i]) + fabs(v[i]);
                a += b / qpg;
            }
            hs[h] = a;
        }
    }
    if (s->ffn_dim) {
        int f = s->ffn_dim;
        const float *gt = group_w(m, l, LOP_LF_w_gate, gs, wb->b[0]), *up = group_w(m, l, LOP_LF_w_up, gs, wb->b[1]);
        const float *dn = group_w(m, l, LOP_LF_w_down, gs, wb->b[2]);
        const float *dnT = transpose_into(wb->b[3], dn, D, f); /* [f][D]: channel c's down_proj column as a row */
        for (int c = 0; c < f; c++) {
            double a = 0;
            for (int i = 0; i < D; i++) a += fabs(gt[(size_t)c * D + i]) + fabs(up[(size_t)c * D + i]) + fabs(dnT[(size_t)c * D + i]);
            cs[c] = a;
        }
    }
}

/* LLM-Pruner's gradients: only the projections of the layers in range are formed and stored (not
 * the embedding, head, norms, biases or layers outside the range) */
typedef struct proj_sink {
    lop_grad_sink store;
    int l0, l1;
} proj_sink;
static int proj_wants(void *user, lop_param_id id) {
    const proj_sink *p = user;
    int f = id.field;
    return id.layer >= p->l0 && id.layer < p->l1 &&
           (f == LOP_LF_wq || f == LOP_LF_wk || f == LOP_LF_wv || f == LOP_LF_wo || f == LOP_LF_w_gate ||
            f == LOP_LF_w_up || f == LOP_LF_w_down);
}
static void proj_grad(void *user, lop_param_id id, const float *w, const float *g, int64_t n) {
    const proj_sink *p = user;
    p->store.grad(p->store.user, id, w, g, n);
}

/* magnitude() of the layers [l0, l0 + n), on the thread pool with a scratch per worker */
typedef struct mag_job {
    const lop_model *m;
    lop_gqa_mode gqa;
    lop_width_plan *p;
    const lop_grad_store *gs;
    int l0;
    int64_t cap;
    int failed;
} mag_job;

static void mag_layers(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    mag_job *j = ctx;
    wbuf wb;
    if (wbuf_init(&wb, j->cap)) j->failed = 1;
    else
        for (int64_t i = i0; i < i1; i++) {
            int l = j->l0 + (int)i;
            magnitude(j->m, l, j->gqa, j->p->head_score[l], j->p->ch_score[l], j->gs, &wb);
        }
    wbuf_free(&wb);
}

static lop_status magnitude_all(const lop_model *m, lop_gqa_mode g, lop_width_plan *p, const lop_grad_store *gs, int l0,
                                int l1, int n_threads) {
    mag_job job = {m, g, p, gs, l0, wbuf_cap(m, l0, l1), 0};
    /* at most ~8 GB of scratch: four buffers per worker */
    int64_t per = 4 * job.cap * (int64_t)sizeof(float), most = ((int64_t)8 << 30) / (per > 0 ? per : 1);
    int t = n_threads > 0 ? n_threads : lop_n_cpus();
    if (t > most) t = most > 0 ? (int)most : 1;
    int prev = lop_threads();
    lop_threads_set(t);
    lop_parallel_for(l1 - l0, 1, mag_layers, &job);
    lop_threads_set(prev);
    return job.failed ? lop_fail(LOP_ERR_OOM, "out of memory: scoring scratch of %d threads", t) : LOP_OK;
}

/* per input channel of W [D][in] with calibration inputs X [n][in]: wanda-sp or flap channel scores;
 * mean[in] receives the channel means (flap). Workers take ranges of channels and walk the rows of X
 * and W over their range (contiguous), so every channel's sums keep their order (same values as one
 * thread) without transposing W. */
typedef struct chan_job {
    lop_width_method meth;
    const float *W, *X;
    int D, in, n;
    double *out, *mean;
    int failed;
} chan_job;

static void chan_range(void *ctx, int64_t j0, int64_t j1, int thread) {
    (void)thread;
    chan_job *c = ctx;
    int w = (int)(j1 - j0);
    double *acc = calloc((size_t)4 * w, sizeof(double)), *s1 = acc, *s2 = acc + w, *wa = acc + 2 * w, *w2 = acc + 3 * w;
    if (!acc) { /* no lop_fail on a worker: the caller reports it */
        c->failed = 1;
        return;
    }
    for (int t = 0; t < c->n; t++) {
        const float *xr = c->X + (size_t)t * c->in + j0;
        for (int k = 0; k < w; k++) {
            double x = xr[k];
            s1[k] += x;
            s2[k] += x * x;
        }
    }
    for (int i = 0; i < c->D; i++) {
        const float *wr = c->W + (size_t)i * c->in + j0;
        for (int k = 0; k < w; k++) {
            double v = wr[k];
            wa[k] += fabs(v);
            w2[k] += v * v;
        }
    }
    for (int k = 0; k < w; k++) {
        int64_t j = j0 + k;
        if (c->meth == LOP_WM_WANDA_SP) c->out[j] = wa[k] / c->D * sqrt(s2[k]);
        else {
            double mu = s1[k] / c->n, var = c->n > 1 ? (s2[k] - c->n * mu * mu) / (c->n - 1) : 0;
            c->out[j] = (var > 0 ? var : 0) * w2[k];
            c->mean[j] = mu;
        }
    }
    free(acc);
}

static lop_status channel_scores(lop_width_method meth, const float *W, int D, int in, const float *X, int n,
                                 double *out, double *mean) {
    chan_job job = {meth, W, X, D, in, n, out, mean, 0};
    lop_parallel_for(in, 64, chan_range, &job);
    return job.failed ? lop_fail(LOP_ERR_OOM, "out of memory (channel statistics)") : LOP_OK;
}

/* FLAP compensation b[i] += W[i][j] * mean[j] over the removed channels j, ascending; workers take
 * rows (each b[i] sums in the same order as one thread) */
typedef struct comp_job {
    const float *W;
    const double *mu;
    const int *rm;
    int n_rm, in;
    float *b;
} comp_job;

static void comp_rows(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    const comp_job *c = ctx;
    for (int64_t i = i0; i < i1; i++) {
        const float *wr = c->W + (size_t)i * c->in;
        for (int k = 0; k < c->n_rm; k++) c->b[i] += (float)(wr[c->rm[k]] * c->mu[c->rm[k]]);
    }
}

/* dst[r] = the columns j of src[r] with drop[j] set, for rows r of a range */
typedef struct gather_job {
    const float *src;
    float *dst;
    const uint8_t *drop;
    int in, nd;
} gather_job;

static void gather_cols_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    const gather_job *g = ctx;
    for (int64_t r = r0; r < r1; r++)
        for (int j = 0, k = 0; j < g->in; j++)
            if (g->drop[j]) g->dst[(size_t)r * g->nd + k++] = g->src[(size_t)r * g->in + j];
}

/* x -= W[:, j] * X[:, j] for every removed channel j (drop[j] = 1): the pruned module's output.
 * One product of the gathered columns (x -= Xd Wd^T), not a loop per channel: a 7B FFN drops
 * thousands of channels over thousands of calibration tokens. */
static lop_status subtract_removed(float *x, const float *W, int D, int in, const float *X, int n, const uint8_t *drop) {
    int nd = 0;
    for (int j = 0; j < in; j++) nd += drop[j] != 0;
    if (!nd) return LOP_OK;
    float *Xd = malloc((size_t)n * nd * sizeof(float)), *Wd = malloc((size_t)D * nd * sizeof(float));
    if (!Xd || !Wd) {
        free(Xd), free(Wd);
        return lop_fail(LOP_ERR_OOM, "out of memory");
    }
    gather_job gx = {X, Xd, drop, in, nd}, gw = {W, Wd, drop, in, nd};
    lop_parallel_for(n, 16, gather_cols_rows, &gx);
    lop_parallel_for(D, 16, gather_cols_rows, &gw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, nd, -1.0f, Xd, nd, Wd, nd, 1.0f, x, D);
    free(Xd), free(Wd);
    return LOP_OK;
}

static void standardise(double *v, int n) {
    if (n < 2) return;
    double mu = 0, s = 0;
    for (int i = 0; i < n; i++) mu += v[i];
    mu /= n;
    for (int i = 0; i < n; i++) s += (v[i] - mu) * (v[i] - mu);
    s = sqrt(s / (n - 1));
    for (int i = 0; i < n; i++) v[i] = s > 0 ? (v[i] - mu) / s : 0;
}

typedef struct unit {
    double z;
    int64_t cost;
    int layer, kind; /* kind 0: head unit, 1: channel */
} unit;

static int cmp_unit(const void *a, const void *b) {
    const unit *x = a, *y = b;
    return x->z < y->z ? -1 : x->z > y->z ? 1 : (x->layer != y->layer ? y->layer - x->layer : x->kind - y->kind);
}

/* ---- the plan ------------------------------------------------------------------------------- */
lop_status lop_width_plan_make(lop_model *m, const lop_calib *cal, const lop_width_opts *o, lop_width_plan *p) {
    memset(p, 0, sizeof *p);
    if (m->synthetic) LOP_TRY(lop_synth_materialize(m));
    if (!m->weights_loaded) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded", m->source);
    int L = m->cfg.n_layers, D = m->cfg.dim, l0 = o->layer0, l1 = o->layer1 ? o->layer1 : L;
    if (o->method == LOP_WM_LLM_PRUNER && !o->layer1 && !o->layer0 && L > 6) l0 = 4, l1 = L - 2;
    if (l0 < 0 || l1 > L || l0 >= l1)
        return lop_fail(LOP_ERR_ARG, "--layers %d:%d: expected A:B with 0 <= A < B <= %d", l0, l1, L);
    int R = o->round;
    if (R != 1 && R != 8 && R != 64 && R != 128) return lop_fail(LOP_ERR_ARG, "--round %d: expected 1, 8, 64 or 128", R);
    if (o->method != LOP_WM_MAGNITUDE && !cal)
        return lop_fail(LOP_ERR_ARG, "--method %s needs calibration data", lop_width_method_name(o->method));
    for (int l = 0; l < L; l++)
        if (m->cfg.layers[l].n_heads > 256) return lop_fail(LOP_ERR_UNSUPPORTED, "layer %d: more than 256 heads", l);
    p->n_layers = L;
    p->params_before = lop_model_n_params(m);
    if (o->target.kind == LOP_DEPTH_RATIO) p->target_removed = llround(o->target.ratio * p->params_before);
    else if (o->target.kind == LOP_DEPTH_PARAMS) {
        if (o->target.params >= p->params_before)
            return lop_fail(LOP_ERR_ARG, "--width params=%lld: the model has only %lld parameters",
                            (long long)o->target.params, (long long)p->params_before);
        p->target_removed = p->params_before - o->target.params;
    } else return lop_fail(LOP_ERR_ARG, "--width takes a percentage (20%%) or params=COUNT, not a unit count");
    p->head_score = calloc((size_t)L, sizeof(double *));
    p->ch_score = calloc((size_t)L, sizeof(double *));
    p->head_keep = calloc((size_t)L, sizeof(uint8_t *));
    p->ch_keep = calloc((size_t)L, sizeof(uint8_t *));
    p->bo_add = calloc((size_t)L, sizeof(float *));
    p->bdown_add = calloc((size_t)L, sizeof(float *));
    lop_status st = p->head_score && p->ch_score && p->head_keep && p->ch_keep && p->bo_add && p->bdown_add
                        ? LOP_OK : lop_fail(LOP_ERR_OOM, "out of memory");
    for (int l = 0; st == LOP_OK && l < L; l++) {
        const lop_layer_shape *s = &m->cfg.layers[l];
        p->head_score[l] = calloc((size_t)s->n_heads + 1, sizeof(double));
        p->ch_score[l] = calloc((size_t)s->ffn_dim + 1, sizeof(double));
        p->head_keep[l] = malloc((size_t)s->n_heads + 1);
        p->ch_keep[l] = malloc((size_t)s->ffn_dim + 1);
        if (!p->head_score[l] || !p->ch_score[l] || !p->head_keep[l] || !p->ch_keep[l])
            st = lop_fail(LOP_ERR_OOM, "out of memory");
        else memset(p->head_keep[l], 1, (size_t)s->n_heads + 1), memset(p->ch_keep[l], 1, (size_t)s->ffn_dim + 1);
    }
    if (st != LOP_OK) return lop_width_plan_free(p), st;
    double t0 = lop_now();
    lop_threads_set(o->n_threads); /* the host-side statistics run on the pool (the CPU trainer sets it too) */

    /* uniform methods: one ratio for every layer in range, found from the shapes alone */
    double best_r = -1;
    if (o->method != LOP_WM_FLAP) {
        int64_t best_d = INT64_MAX;
        for (int i = 1; i < 2000; i++) {
            double r = i / 2000.0;
            int64_t rem = 0;
            for (int l = l0; l < l1; l++) {
                const lop_layer_shape *s = &m->cfg.layers[l];
                int nu = units_per_layer(s, o->gqa), qk = (int)llround(nu * (1 - r));
                if (qk < 1) qk = 1;
                rem += removed_params(m, l, o->gqa, s->n_heads ? qk : 0, s->ffn_dim ? round_ffn(s->ffn_dim * (1 - r), R, s->ffn_dim) : 0);
            }
            int64_t d = llabs(rem - p->target_removed);
            if (d < best_d) best_d = d, best_r = r;
        }
    }

    /* scores (and, for wanda-sp, the selection layer by layer) */
    lop_trainer *tr = NULL;
    float *x = NULL, *x0 = NULL;
    float *wconv = NULL; /* o_proj / down_proj widened to fp32 when stored as 16-bit */
    double **mean_o = NULL, **mean_d = NULL;
    int ns = cal ? cal->n_samples : 0, T = cal ? cal->seq_len : 0, n = ns * T;
    lop_grad_store *gs = NULL;
    if (o->method == LOP_WM_LLM_PRUNER) {
        /* gradients of the mean calibration NLL: one sample per call on the CPU (memory), all in one
         * call on the GPU (every gradient crosses to the host once) */
        int per = o->device == LOP_DEVICE_CUDA ? ns : 1;
        lop_trainer_opts to = {.max_tokens = per * T, .n_threads = o->n_threads, .device = o->device};
        st = lop_trainer_create(m, &to, &tr);
        if (st == LOP_OK) st = lop_grad_store_new(m, &gs);
        proj_sink ps = {gs ? lop_grad_store_sink(gs) : (lop_grad_sink){0}, l0, l1};
        lop_grad_sink sink = {.wants = proj_wants, .grad = proj_grad, .user = &ps};
        for (int k = 0; st == LOP_OK && k < ns; k += per)
            st = lop_trainer_backward(tr, cal->tokens + (size_t)k * T, ns - k < per ? ns - k : per, T, 1,
                                      1.0 / ((double)ns * (T - 1)), &sink, NULL, NULL);
        lop_trainer_free(tr);
        tr = NULL;
    }
    if (st == LOP_OK && (o->method == LOP_WM_MAGNITUDE || o->method == LOP_WM_LLM_PRUNER))
        st = magnitude_all(m, o->gqa, p, gs, l0, l1, o->n_threads);
    else if (st == LOP_OK) {
        lop_trainer_opts to = {.max_tokens = n, .max_bwd_tokens = T, .n_threads = o->n_threads, .device = o->device};
        st = lop_trainer_create(m, &to, &tr);
        x = st == LOP_OK ? malloc((size_t)n * D * sizeof(float)) : NULL;
        x0 = st == LOP_OK ? malloc((size_t)n * D * sizeof(float)) : NULL;
        mean_o = calloc((size_t)L, sizeof(double *));
        mean_d = calloc((size_t)L, sizeof(double *));
        wconv = st == LOP_OK ? malloc((size_t)wbuf_cap(m, l0, l1) * sizeof(float)) : NULL;
        if (st == LOP_OK && (!x || !x0 || !mean_o || !mean_d || !wconv)) st = lop_fail(LOP_ERR_OOM, "out of memory");
        if (st == LOP_OK) st = lop_trainer_embed(tr, cal->tokens, n, x);
    }
    for (int l = 0; st == LOP_OK && l < L; l++) {
        const lop_layer_shape *s = &m->cfg.layers[l];
        int in_range = l >= l0 && l < l1;
        int nu = units_per_layer(s, o->gqa), qk = s->n_heads ? (int)llround(nu * (1 - best_r)) : 0;
        if (qk < 1) qk = 1;
        int fk = s->ffn_dim ? round_ffn(s->ffn_dim * (1 - best_r), R, s->ffn_dim) : 0;
        if (o->method == LOP_WM_MAGNITUDE || o->method == LOP_WM_LLM_PRUNER) {
            if (!in_range) continue;
            if (s->n_heads) select_heads(s, o->gqa, qk, p->head_score[l], p->head_keep[l]);
            if (s->ffn_dim) keep_top(p->ch_score[l], s->ffn_dim, fk, p->ch_keep[l]);
            continue;
        }
        /* scores from the layer as it stands (both modules see the unpruned layer, as Wanda-sp's
         * hooks do); wanda-sp then selects and re-runs the layer pruned, so the next layer's
         * calibration inputs come from the pruned model */
        if (in_range && o->method == LOP_WM_WANDA_SP) memcpy(x0, x, (size_t)n * D * sizeof(float));
        for (int pass = 0; st == LOP_OK && pass < (in_range && o->method == LOP_WM_WANDA_SP ? 2 : 1); pass++) {
            if (pass == 1) memcpy(x, x0, (size_t)n * D * sizeof(float));
            for (int mod = LOP_SKIP_ATTN; st == LOP_OK && mod <= LOP_SKIP_FFN; mod <<= 1) {
                int in = mod == LOP_SKIP_ATTN ? s->n_heads * s->head_dim : s->ffn_dim;
                if (!in) continue;
                st = lop_trainer_module(tr, l, mod, x, ns, T);
                if (st != LOP_OK || !in_range) continue;
                const float *X = lop_trainer_proj_input(tr, mod);
                if (!X) {
                    st = lop_fail(LOP_ERR_DEVICE, "width pruning: the projection input of layer %d is unavailable", l);
                    continue;
                }
                const float *W = f32_of(mod == LOP_SKIP_ATTN ? &m->w.layers[l].wo : &m->w.layers[l].w_down, wconv);
                double *cs = malloc((size_t)in * sizeof(double)), *mu = malloc((size_t)in * sizeof(double));
                uint8_t *drop = malloc((size_t)in);
                if (!cs || !mu || !drop) st = lop_fail(LOP_ERR_OOM, "out of memory");
                if (st == LOP_OK && pass == 0) {
                    st = channel_scores(o->method, W, D, in, X, n, cs, mu);
                    if (mod == LOP_SKIP_ATTN) {
                        for (int h = 0; h < s->n_heads; h++) {
                            double a = 0;
                            for (int j = h * s->head_dim; j < (h + 1) * s->head_dim; j++)
                                a += o->method == LOP_WM_FLAP ? cs[j] * cs[j] : cs[j];
                            p->head_score[l][h] = a;
                        }
                    } else memcpy(p->ch_score[l], cs, (size_t)in * sizeof(double));
                    if (o->method == LOP_WM_WANDA_SP) {
                        if (mod == LOP_SKIP_ATTN) select_heads(s, o->gqa, qk, p->head_score[l], p->head_keep[l]);
                        else keep_top(p->ch_score[l], in, fk, p->ch_keep[l]);
                    } else {
                        (mod == LOP_SKIP_ATTN ? mean_o : mean_d)[l] = mu;
                        mu = NULL;
                    }
                } else if (st == LOP_OK) { /* pass 1: the pruned module's output */
                    for (int j = 0; j < in; j++)
                        drop[j] = mod == LOP_SKIP_ATTN ? !p->head_keep[l][j / s->head_dim] : !p->ch_keep[l][j];
                    st = subtract_removed(x, W, D, in, X, n, drop);
                }
                free(cs), free(mu), free(drop);
            }
        }
    }
    lop_trainer_free(tr);
    lop_grad_store_free(gs);
    free(x);
    free(x0);

    /* FLAP: standardise per layer and module type, one global threshold, compensation */
    if (st == LOP_OK && o->method == LOP_WM_FLAP) {
        int cap = 0;
        for (int l = l0; l < l1; l++) cap += units_per_layer(&m->cfg.layers[l], o->gqa) * m->cfg.layers[l].n_kv_heads + m->cfg.layers[l].ffn_dim;
        unit *u = malloc((size_t)(cap + 1) * sizeof *u);
        double *z = malloc((size_t)(cap + 1) * sizeof *z);
        if (!u || !z) st = lop_fail(LOP_ERR_OOM, "out of memory");
        int nu = 0;
        for (int l = l0; st == LOP_OK && l < l1; l++) {
            const lop_layer_shape *s = &m->cfg.layers[l];
            if (s->n_heads) { /* units: heads (query mode) or groups (kv mode) */
                int qpg = s->n_heads / s->n_kv_heads, k = o->gqa == LOP_GQA_QUERY ? s->n_heads : s->n_kv_heads;
                for (int i = 0; i < k; i++) {
                    if (o->gqa == LOP_GQA_QUERY) z[i] = p->head_score[l][i];
                    else {
                        z[i] = 0;
                        for (int h = 0; h < qpg; h++) z[i] += p->head_score[l][i * qpg + h];
                    }
                }
                standardise(z, k);
                int64_t c = o->gqa == LOP_GQA_QUERY ? 2 * (int64_t)s->head_dim * D : (2 * (int64_t)qpg + 2) * s->head_dim * D;
                for (int i = 0; i < k; i++) u[nu++] = (unit){z[i], c, l, 0};
            }
            if (s->ffn_dim) {
                memcpy(z, p->ch_score[l], (size_t)s->ffn_dim * sizeof(double));
                standardise(z, s->ffn_dim);
                for (int i = 0; i < s->ffn_dim; i++) u[nu++] = (unit){z[i], 3 * (int64_t)D, l, 1};
            }
        }
        int *rm_h = calloc((size_t)L, sizeof(int)), *rm_c = calloc((size_t)L, sizeof(int));
        if (st == LOP_OK && (!rm_h || !rm_c)) st = lop_fail(LOP_ERR_OOM, "out of memory");
        if (st == LOP_OK) {
            qsort(u, (size_t)nu, sizeof *u, cmp_unit);
            int64_t done = 0;
            for (int i = 0; i < nu; i++) { /* lowest first: every unit that brings the count closer */
                int64_t left = p->target_removed - done;
                if (left <= 0) break;
                if (u[i].cost >= 2 * left) continue;
                done += u[i].cost;
                (u[i].kind ? rm_c : rm_h)[u[i].layer]++;
            }
        }
        for (int l = l0; st == LOP_OK && l < l1; l++) {
            const lop_layer_shape *s = &m->cfg.layers[l];
            if (s->n_heads) {
                int qpg = s->n_heads / s->n_kv_heads;
                int qk = o->gqa == LOP_GQA_QUERY ? (int)llround((double)(s->n_heads - rm_h[l]) / s->n_kv_heads)
                                                 : s->n_kv_heads - rm_h[l];
                if (qk < 1) qk = 1;
                if (qk > (o->gqa == LOP_GQA_QUERY ? qpg : s->n_kv_heads)) qk = o->gqa == LOP_GQA_QUERY ? qpg : s->n_kv_heads;
                select_heads(s, o->gqa, qk, p->head_score[l], p->head_keep[l]);
            }
            if (s->ffn_dim) keep_top(p->ch_score[l], s->ffn_dim, round_ffn(s->ffn_dim - rm_c[l], R, s->ffn_dim), p->ch_keep[l]);
            /* compensation: b += W[:, removed] . mean[removed] */
            for (int mod = LOP_SKIP_ATTN; st == LOP_OK && mod <= LOP_SKIP_FFN; mod <<= 1) {
                int in = mod == LOP_SKIP_ATTN ? s->n_heads * s->head_dim : s->ffn_dim;
                double *mu = (mod == LOP_SKIP_ATTN ? mean_o : mean_d)[l];
                if (!in || !mu) continue;
                float *b = calloc((size_t)D, sizeof(float));
                int *rm = malloc((size_t)in * sizeof(int));
                if (!b || !rm) {
                    free(b), free(rm);
                    st = lop_fail(LOP_ERR_OOM, "out of memory");
                    break;
                }
                comp_job cj = {f32_of(mod == LOP_SKIP_ATTN ? &m->w.layers[l].wo : &m->w.layers[l].w_down, wconv),
                               mu, rm, 0, in, b};
                for (int j = 0; j < in; j++)
                    if (!(mod == LOP_SKIP_ATTN ? p->head_keep[l][j / s->head_dim] : p->ch_keep[l][j])) rm[cj.n_rm++] = j;
                lop_parallel_for(D, 64, comp_rows, &cj);
                free(rm);
                (mod == LOP_SKIP_ATTN ? p->bo_add : p->bdown_add)[l] = b;
            }
        }
        free(u), free(z), free(rm_h), free(rm_c);
    }
    for (int l = 0; mean_o && l < L; l++) free(mean_o[l]), free(mean_d[l]);
    free(mean_o);
    free(mean_d);
    free(wconv);
    p->seconds = lop_now() - t0;
    if (st != LOP_OK) return lop_width_plan_free(p), st;
    p->params_after = p->params_before;
    for (int l = 0; l < L; l++) {
        const lop_layer_shape *s = &m->cfg.layers[l];
        int kh = 0, kkv = 0, kf = 0;
        for (int h = 0; h < s->n_heads; h++) kh += p->head_keep[l][h];
        for (int g = 0; s->n_heads && g < s->n_kv_heads; g++) {
            int any = 0, qpg = s->n_heads / s->n_kv_heads;
            for (int h = 0; h < qpg; h++) any |= p->head_keep[l][g * qpg + h];
            kkv += any;
        }
        for (int c = 0; c < s->ffn_dim; c++) kf += p->ch_keep[l][c];
        if (s->n_heads) p->params_after -= attn_cost(s->n_heads, s->n_kv_heads, s->head_dim, D) - attn_cost(kh, kkv, s->head_dim, D);
        p->params_after -= 3 * (int64_t)D * (s->ffn_dim - kf);
        p->params_after += (p->bo_add[l] && !m->w.layers[l].bo.present ? D : 0) + (p->bdown_add[l] && !m->w.layers[l].b_down.present ? D : 0);
    }
    return LOP_OK;
}
