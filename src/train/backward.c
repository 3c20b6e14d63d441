/* The trainer's backward: a forward that keeps each module's activations, then the chain rule in
 * reverse (head and final norm, each layer's FFN then attention, the embedding gather), handing
 * every weight gradient to the sink as soon as it is formed. Operator derivations in ops_bwd.c;
 * attention below. Memory: activations of every layer for the positions of one call, one scratch
 * gradient the size of the largest layer tensor, and a [vocab][dim] buffer only when the sink
 * wants the embedding or head gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "runtime/cpu/ops.h"
#include "train/train_cuda.h"
#include "train/train_internal.h"

/* ---- sink helpers ----------------------------------------------------------------------- */
static int wants(const lop_grad_sink *s, int layer, int field) {
    lop_param_id id = {layer, field};
    return s && s->grad && (!s->wants || s->wants(s->user, id));
}

static void give(const lop_grad_sink *s, int layer, int field, const float *w, const float *g, int64_t n) {
    lop_param_id id = {layer, field};
    s->grad(s->user, id, w, g, n);
}

/* ---- buffers ---------------------------------------------------------------------------- */
static lop_status ensure_bwd(lop_trainer *t) {
    if (t->have_bwd) return LOP_OK;
    const lop_config *c = &t->m->cfg;
    size_t N = (size_t)t->max_bwd, D = (size_t)c->dim, f4 = sizeof(float);
    size_t qd = (size_t)(t->max_qd ? t->max_qd : 1), kvd = (size_t)(t->max_kvd ? t->max_kvd : 1),
           F = (size_t)(t->max_ffn ? t->max_ffn : 1);
    lop_status st = LOP_OK;
    t->saved = tr_alloc(t, (size_t)c->n_layers * sizeof *t->saved, "saved activations", &st);
    for (int l = 0; st == LOP_OK && l < c->n_layers; l++) {
        const lop_layer_shape *s = &c->layers[l];
        tr_saved *sv = &t->saved[l];
        if (s->n_heads) {
            size_t lq = (size_t)s->n_heads * s->head_dim, lkv = (size_t)s->n_kv_heads * s->head_dim;
            sv->x_attn = tr_alloc(t, N * D * f4, "saved activations", &st);
            sv->q = tr_alloc(t, N * lq * f4, "saved activations", &st);
            sv->k = tr_alloc(t, N * lkv * f4, "saved activations", &st);
            sv->v = tr_alloc(t, N * lkv * f4, "saved activations", &st);
            sv->att = tr_alloc(t, N * lq * f4, "saved activations", &st);
        }
        if (s->ffn_dim) {
            sv->x_ffn = tr_alloc(t, N * D * f4, "saved activations", &st);
            sv->g = tr_alloc(t, N * (size_t)s->ffn_dim * f4, "saved activations", &st);
            sv->u = tr_alloc(t, N * (size_t)s->ffn_dim * f4, "saved activations", &st);
        }
    }
    int64_t big = c->dim;
    for (int l = 0; l < c->n_layers; l++)
        for (int f = 0; f < LOP_LF_COUNT; f++) {
            int64_t n = lop_tensor_numel(lop_layer_tensor_c(&t->m->w.layers[l], f));
            if (n > big) big = n;
        }
    t->x_final = tr_alloc(t, N * D * f4, "activations", &st);
    t->dx = tr_alloc(t, N * D * f4, "gradients", &st);
    t->dxb = tr_alloc(t, N * D * f4, "gradients", &st);
    t->dq = tr_alloc(t, N * qd * f4, "gradients", &st);
    t->dk = tr_alloc(t, N * kvd * f4, "gradients", &st);
    t->dv = tr_alloc(t, N * kvd * f4, "gradients", &st);
    t->datt = tr_alloc(t, N * qd * f4, "gradients", &st);
    t->dkh = tr_alloc(t, N * qd * f4, "gradients", &st);
    t->dvh = tr_alloc(t, N * qd * f4, "gradients", &st);
    t->dg = tr_alloc(t, N * F * f4, "gradients", &st);
    t->du = tr_alloc(t, N * F * f4, "gradients", &st);
    t->dw = tr_alloc(t, (size_t)big * f4, "weight gradient", &st);
    t->dnorm = tr_alloc(t, D * sizeof(double), "norm gradient", &st);
    t->bscratch = tr_alloc(t, (size_t)t->n_threads * 2 * N * f4, "attention scratch", &st);
    if (st == LOP_OK) t->have_bwd = 1;
    return st;
}

/* norm weight gradient from the double accumulator */
static void give_norm(lop_trainer *t, const lop_grad_sink *s, int layer, int field, const float *w) {
    int D = t->m->cfg.dim;
    for (int i = 0; i < D; i++) t->dw[i] = (float)t->dnorm[i];
    give(s, layer, field, w, t->dw, D);
}

/* weight and bias gradient of one linear: Y = X W^T + b with dY [n][out] */
static void linear_grads(lop_trainer *t, const lop_grad_sink *s, int l, int fw, int fb, const float *dY, const float *X,
                         int n, int out, int in) {
    const tr_layer *L = &t->L[l];
    if (wants(s, l, fw)) {
        tr_linear_bwd_w(t->dw, dY, X, n, out, in);
        give(s, l, fw, L->w[fw], t->dw, (int64_t)out * in);
    }
    if (L->w[fb] && wants(s, l, fb)) {
        tr_bias_bwd(t->dw, dY, n, out);
        give(s, l, fb, L->w[fb], t->dw, out);
    }
}

/* ---- FFN -------------------------------------------------------------------------------- */
static void ffn_bwd(lop_trainer *t, int l, int n, const lop_grad_sink *s) {
    const lop_config *c = &t->m->cfg;
    const tr_layer *L = &t->L[l];
    const tr_saved *sv = &t->saved[l];
    int D = c->dim, F = c->layers[l].ffn_dim;
    float *h = t->g, *dy = t->dx;
    lop_cpu_swiglu(h, sv->g, sv->u, (int64_t)n * F);
    linear_grads(t, s, l, LOP_LF_w_down, LOP_LF_b_down, dy, h, n, D, F);
    tr_linear_bwd_x(t->dg, 0.0f, dy, L->w[LOP_LF_w_down], n, D, F);
    tr_swiglu_bwd(t->dg, t->du, t->dg, sv->g, sv->u, (int64_t)n * F);
    lop_cpu_rmsnorm(t->xb, sv->x_ffn, L->w[LOP_LF_ffn_norm], n, D, c->norm_eps);
    linear_grads(t, s, l, LOP_LF_w_gate, LOP_LF_b_gate, t->dg, t->xb, n, F, D);
    linear_grads(t, s, l, LOP_LF_w_up, LOP_LF_b_up, t->du, t->xb, n, F, D);
    tr_linear_bwd_x(t->dxb, 0.0f, t->dg, L->w[LOP_LF_w_gate], n, F, D);
    tr_linear_bwd_x(t->dxb, 1.0f, t->du, L->w[LOP_LF_w_up], n, F, D);
    int want_norm = wants(s, l, LOP_LF_ffn_norm);
    if (want_norm) memset(t->dnorm, 0, (size_t)D * sizeof(double));
    tr_rmsnorm_bwd(t->dx, want_norm ? t->dnorm : NULL, sv->x_ffn, L->w[LOP_LF_ffn_norm], t->dxb, n, D, c->norm_eps, 1);
    if (want_norm) give_norm(t, s, l, LOP_LF_ffn_norm, L->w[LOP_LF_ffn_norm]);
}

/* ---- attention -------------------------------------------------------------------------- */
/* Per query head h of sequence q (item = seq * nh + h), with P = softmax(scale q k^T) causal and
 * o = P v:  dP = do v^T,  dS = P (dP - rowsum(P dP)),  dq = scale dS k,  dk += scale dS^T q,
 * dv += P^T do. P is recomputed row by row (never stored). Each item writes its own columns of
 * dkh / dvh ([n][q_dim], the K/V gradient as seen by query head h); they are summed over the heads
 * of each group afterwards, so items never write the same memory. */
typedef struct attn_bwd_job {
    lop_trainer *t;
    const tr_saved *sv;
    int seq_len, nh, nkv, hd;
} attn_bwd_job;

static void attn_bwd_items(void *ctx, int64_t i0, int64_t i1, int thread) {
    attn_bwd_job *j = ctx;
    lop_trainer *t = j->t;
    int hd = j->hd, qd = j->nh * hd, kvd = j->nkv * hd, T = j->seq_len, group = j->nh / j->nkv;
    float scale = 1.0f / sqrtf((float)hd);
    float *p = t->bscratch + (size_t)thread * 2 * t->max_bwd, *dp = p + t->max_bwd;
    for (int64_t it = i0; it < i1; it++) {
        int64_t seq = it / j->nh;
        int h = (int)(it % j->nh), kh = h / group;
        int64_t r0 = seq * T; /* first row of the sequence */
        const float *Q = j->sv->q + r0 * qd + h * hd, *K = j->sv->k + r0 * kvd + kh * hd,
                    *V = j->sv->v + r0 * kvd + kh * hd, *dO = t->datt + r0 * qd + h * hd;
        float *dQ = t->dq + r0 * qd + h * hd, *dK = t->dkh + r0 * qd + h * hd, *dV = t->dvh + r0 * qd + h * hd;
        for (int q = 0; q < T; q++) {
            const float *qv = Q + (int64_t)q * qd, *dov = dO + (int64_t)q * qd;
            float mx = -INFINITY;
            for (int u = 0; u <= q; u++) {
                const float *kv = K + (int64_t)u * kvd;
                float d = 0;
                for (int i = 0; i < hd; i++) d += qv[i] * kv[i];
                p[u] = d * scale;
                if (p[u] > mx) mx = p[u];
            }
            double sum = 0;
            for (int u = 0; u <= q; u++) sum += p[u] = expf(p[u] - mx);
            float inv = (float)(1.0 / sum);
            double pdp = 0;
            for (int u = 0; u <= q; u++) {
                p[u] *= inv;
                const float *vv = V + (int64_t)u * kvd;
                float d = 0;
                for (int i = 0; i < hd; i++) d += dov[i] * vv[i];
                dp[u] = d;
                pdp += (double)p[u] * d;
            }
            float *dqv = dQ + (int64_t)q * qd;
            for (int i = 0; i < hd; i++) dqv[i] = 0;
            for (int u = 0; u <= q; u++) {
                float ds = p[u] * (dp[u] - (float)pdp) * scale;
                const float *kv = K + (int64_t)u * kvd;
                float *dkv = dK + (int64_t)u * qd, *dvv = dV + (int64_t)u * qd;
                for (int i = 0; i < hd; i++) {
                    dqv[i] += ds * kv[i];
                    dkv[i] += ds * qv[i];
                    dvv[i] += p[u] * dov[i];
                }
            }
        }
    }
}

typedef struct rope_bwd_job {
    float *dq, *dk;
    const float *inv_freq;
    int seq_len, nh, nkv, hd;
} rope_bwd_job;

/* RoPE is a rotation by pos * freq: its transpose rotates by -pos * freq */
static void rope_bwd_rows(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    rope_bwd_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        int pos = (int)(i % j->seq_len);
        lop_cpu_rope(j->dq + i * j->nh * j->hd, j->nh, j->hd, -pos, j->inv_freq);
        lop_cpu_rope(j->dk + i * j->nkv * j->hd, j->nkv, j->hd, -pos, j->inv_freq);
    }
}

static void attn_bwd(lop_trainer *t, int l, int n_seq, int seq_len, const lop_grad_sink *s) {
    const lop_config *c = &t->m->cfg;
    const lop_layer_shape *sh = &c->layers[l];
    const tr_layer *L = &t->L[l];
    const tr_saved *sv = &t->saved[l];
    int n = n_seq * seq_len, D = c->dim, hd = sh->head_dim, nh = sh->n_heads, nkv = sh->n_kv_heads;
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    float *dy = t->dx;
    linear_grads(t, s, l, LOP_LF_wo, LOP_LF_bo, dy, sv->att, n, D, qd);
    tr_linear_bwd_x(t->datt, 0.0f, dy, L->w[LOP_LF_wo], n, D, qd);
    memset(t->dkh, 0, (size_t)n * qd * sizeof(float));
    memset(t->dvh, 0, (size_t)n * qd * sizeof(float));
    attn_bwd_job job = {t, sv, seq_len, nh, nkv, hd};
    lop_parallel_for((int64_t)n_seq * nh, 1, attn_bwd_items, &job);
    for (int64_t i = 0; i < n; i++) /* sum the K/V gradients of each group's query heads */
        for (int kh = 0; kh < nkv; kh++)
            for (int d = 0; d < hd; d++) {
                float a = 0, b = 0;
                for (int g = 0; g < group; g++) {
                    a += t->dkh[i * qd + (int64_t)(kh * group + g) * hd + d];
                    b += t->dvh[i * qd + (int64_t)(kh * group + g) * hd + d];
                }
                t->dk[i * kvd + kh * hd + d] = a;
                t->dv[i * kvd + kh * hd + d] = b;
            }
    rope_bwd_job rj = {t->dq, t->dk, L->inv_freq, seq_len, nh, nkv, hd};
    lop_parallel_for(n, 1, rope_bwd_rows, &rj);
    lop_cpu_rmsnorm(t->xb, sv->x_attn, L->w[LOP_LF_attn_norm], n, D, c->norm_eps);
    linear_grads(t, s, l, LOP_LF_wq, LOP_LF_bq, t->dq, t->xb, n, qd, D);
    linear_grads(t, s, l, LOP_LF_wk, LOP_LF_bk, t->dk, t->xb, n, kvd, D);
    linear_grads(t, s, l, LOP_LF_wv, LOP_LF_bv, t->dv, t->xb, n, kvd, D);
    tr_linear_bwd_x(t->dxb, 0.0f, t->dq, L->w[LOP_LF_wq], n, qd, D);
    tr_linear_bwd_x(t->dxb, 1.0f, t->dk, L->w[LOP_LF_wk], n, kvd, D);
    tr_linear_bwd_x(t->dxb, 1.0f, t->dv, L->w[LOP_LF_wv], n, kvd, D);
    int want_norm = wants(s, l, LOP_LF_attn_norm);
    if (want_norm) memset(t->dnorm, 0, (size_t)D * sizeof(double));
    tr_rmsnorm_bwd(t->dx, want_norm ? t->dnorm : NULL, sv->x_attn, L->w[LOP_LF_attn_norm], t->dxb, n, D, c->norm_eps, 1);
    if (want_norm) give_norm(t, s, l, LOP_LF_attn_norm, L->w[LOP_LF_attn_norm]);
}

/* ---- the whole backward ----------------------------------------------------------------- */
lop_status lop_trainer_backward(lop_trainer *t, const int32_t *tokens, int n_seq, int seq_len, int first,
                                double weight, const lop_grad_sink *sink, double *nll, int64_t *n_scored) {
    if (n_seq < 1 || seq_len < 1 || (int64_t)n_seq * seq_len > t->max_bwd)
        return lop_fail(LOP_ERR_ARG, "trainer: %d sequences x %d tokens do not fit its %d backward positions", n_seq,
                        seq_len, t->max_bwd);
#ifdef LOP_HAVE_CUDA
    if (t->cu) {
        LOP_TRY(tr_check_first(first, seq_len));
        LOP_TRY(tr_check_tokens(t, tokens, (int64_t)n_seq * seq_len));
        return lop_cu_trainer_backward(t->cu, t->skip, tokens, n_seq, seq_len, first, weight, sink, nll, n_scored);
    }
#endif
    const lop_config *c = &t->m->cfg;
    int n = n_seq * seq_len, D = c->dim, V = c->vocab_size;
    LOP_TRY(ensure_bwd(t));
    tr_threads(t);
    int tied = c->tie_embeddings;
    int want_emb = wants(sink, -1, LOP_GF_TOK_EMB), want_head = !tied && wants(sink, -1, LOP_GF_LM_HEAD);
    if ((want_emb || want_head) && !t->dvocab) {
        lop_status st = LOP_OK;
        t->dvocab = tr_alloc(t, (size_t)V * D * sizeof(float), "embedding gradient", &st);
        LOP_TRY(st);
    }
    if (want_emb || want_head) memset(t->dvocab, 0, (size_t)V * D * sizeof(float));

    /* forward, keeping activations */
    float *x = t->x_final;
    LOP_TRY(lop_trainer_embed(t, tokens, n, x));
    for (int l = 0; l < c->n_layers; l++) {
        if (!(t->skip[l] & LOP_SKIP_ATTN)) tr_module_fwd(t, l, LOP_SKIP_ATTN, x, n_seq, seq_len, &t->saved[l]);
        if (!(t->skip[l] & LOP_SKIP_FFN)) tr_module_fwd(t, l, LOP_SKIP_FFN, x, n_seq, seq_len, &t->saved[l]);
    }

    /* head and final norm */
    float *dvocab_head = (tied ? want_emb : want_head) ? t->dvocab : NULL;
    LOP_TRY(tr_head(t, x, tokens, n_seq, seq_len, first, weight, t->dxb, dvocab_head, nll, n_scored));
    if (want_head) give(sink, -1, LOP_GF_LM_HEAD, t->head, t->dvocab, (int64_t)V * D);
    int want_norm = wants(sink, -1, LOP_GF_OUT_NORM);
    if (want_norm) memset(t->dnorm, 0, (size_t)D * sizeof(double));
    tr_rmsnorm_bwd(t->dx, want_norm ? t->dnorm : NULL, x, t->norm, t->dxb, n, D, c->norm_eps, 0);
    if (want_norm) give_norm(t, sink, -1, LOP_GF_OUT_NORM, t->norm);

    /* layers in reverse */
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (c->layers[l].ffn_dim && !(t->skip[l] & LOP_SKIP_FFN)) ffn_bwd(t, l, n, sink);
        if (c->layers[l].n_heads && !(t->skip[l] & LOP_SKIP_ATTN)) attn_bwd(t, l, n_seq, seq_len, sink);
    }

    /* embedding gather: rows of dE receive the residual gradient of their tokens */
    if (want_emb) {
        if (!tied) memset(t->dvocab, 0, (size_t)V * D * sizeof(float));
        for (int i = 0; i < n; i++) {
            float *row = t->dvocab + (int64_t)tokens[i] * D;
            const float *g = t->dx + (int64_t)i * D;
            for (int d = 0; d < D; d++) row[d] += g[d];
        }
        give(sink, -1, LOP_GF_TOK_EMB, t->emb, t->dvocab, (int64_t)V * D);
    }
    return LOP_OK;
}
