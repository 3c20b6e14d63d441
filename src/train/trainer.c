/* The trainer's forward: fp32 weight views, whole-sequence modules (attention over each sequence's
 * own positions, no KV cache), the head with its loss, and the pieces criteria compose (embed,
 * one module, a range of layers). Math and operators are the inference backend's (ops.c), so a
 * trainer loss equals what lop_score_sequences computes from the engine's logits. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "model/synth.h"
#include "runtime/cpu/ops.h"
#include "train/train_cuda.h"
#include "train/train_internal.h"

#define HEAD_CHUNK 64 /* rows of logits formed at once */

void *tr_alloc(lop_trainer *t, size_t bytes, const char *what, lop_status *st) {
    if (*st != LOP_OK) return NULL;
    if (t->n_owned == t->cap_owned) {
        int c = t->cap_owned ? t->cap_owned * 2 : 64;
        void **o = realloc(t->owned, (size_t)c * sizeof *o);
        if (!o) {
            *st = lop_fail(LOP_ERR_OOM, "out of memory (trainer)");
            return NULL;
        }
        t->owned = o;
        t->cap_owned = c;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        *st = lop_fail(LOP_ERR_OOM, "out of memory: %zu bytes for %s", bytes, what);
        return NULL;
    }
    t->owned[t->n_owned++] = p;
    return p;
}

void tr_threads(lop_trainer *t) {
    lop_threads_set(t->n_threads);
    openblas_set_num_threads(t->n_threads);
}

static const float *as_f32(lop_trainer *t, const lop_tensor *x, lop_status *st) {
    if (*st != LOP_OK || !x->present) return NULL;
    if (!x->data) {
        *st = lop_fail(LOP_ERR_ARG, "%s: weights not loaded", t->m->source);
        return NULL;
    }
    if (x->dtype == LOP_F32) return x->data;
    int64_t n = lop_tensor_numel(x);
    float *d = tr_alloc(t, (size_t)n * sizeof(float), "fp32 weights", st);
    if (d) lop_convert_to_f32(d, x->data, x->dtype, n);
    return d;
}

void lop_trainer_free(lop_trainer *t) {
    if (!t) return;
#ifdef LOP_HAVE_CUDA
    lop_cu_trainer_free(t->cu);
#endif
    for (int i = 0; i < t->n_owned; i++) free(t->owned[i]);
    free(t->owned);
    free(t);
}

const lop_model *lop_trainer_model(const lop_trainer *t) { return t->m; }

lop_status lop_trainer_create(lop_model *m, const lop_trainer_opts *o, lop_trainer **out) {
    *out = NULL;
    lop_trainer_opts def = {0};
    if (!o) o = &def;
    if (m->synthetic) LOP_TRY(lop_synth_materialize(m));
    if (!m->weights_loaded) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded (opened for shapes only)", m->source);
    if (o->max_tokens < 0 || o->max_bwd_tokens < 0)
        return lop_fail(LOP_ERR_ARG, "trainer: negative token capacity (%d, %d)", o->max_tokens, o->max_bwd_tokens);
#ifndef LOP_HAVE_CUDA
    if (o->device == LOP_DEVICE_CUDA)
        return lop_fail(LOP_ERR_ARG, "the CUDA trainer is not in this build (lop was built without nvcc)");
#endif
    lop_trainer *t = calloc(1, sizeof *t);
    if (!t) return lop_fail(LOP_ERR_OOM, "out of memory");
    t->m = m;
    t->n_threads = o->n_threads > 0 ? o->n_threads : lop_n_cpus();
    t->max_tokens = o->max_tokens > 0 ? o->max_tokens : 2048;
    t->max_bwd = o->max_bwd_tokens > 0 && o->max_bwd_tokens < t->max_tokens ? o->max_bwd_tokens : t->max_tokens;
    const lop_config *c = &m->cfg;
    lop_status st = LOP_OK;
    t->skip = tr_alloc(t, (size_t)c->n_layers, "skip mask", &st);
#ifdef LOP_HAVE_CUDA
    if (st == LOP_OK && o->device == LOP_DEVICE_CUDA) { /* weights and buffers live on the device */
        st = lop_cu_trainer_create(m, t->max_tokens, t->max_bwd, &t->cu);
        if (st != LOP_OK) {
            lop_trainer_free(t);
            return st;
        }
        *out = t;
        return LOP_OK;
    }
#endif
    t->L = tr_alloc(t, (size_t)c->n_layers * sizeof *t->L, "layers", &st);
    t->emb = as_f32(t, &m->w.tok_emb, &st);
    t->norm = as_f32(t, &m->w.out_norm, &st);
    t->head = c->tie_embeddings ? t->emb : as_f32(t, &m->w.lm_head, &st);
    for (int l = 0; st == LOP_OK && l < c->n_layers; l++) {
        const lop_layer_shape *s = &c->layers[l];
        for (int f = 0; f < LOP_LF_COUNT; f++) t->L[l].w[f] = as_f32(t, lop_layer_tensor_c(&m->w.layers[l], f), &st);
        if (s->n_heads) {
            t->L[l].inv_freq = tr_alloc(t, (size_t)s->head_dim / 2 * sizeof(float), "rope", &st);
            if (st == LOP_OK) lop_cpu_rope_inv_freq(t->L[l].inv_freq, s->head_dim, c->rope_theta, &c->rope_scaling);
        }
        int qd = s->n_heads * s->head_dim, kvd = s->n_kv_heads * s->head_dim;
        if (qd > t->max_qd) t->max_qd = qd;
        if (kvd > t->max_kvd) t->max_kvd = kvd;
        if (s->ffn_dim > t->max_ffn) t->max_ffn = s->ffn_dim;
    }
    size_t N = (size_t)t->max_tokens, D = (size_t)c->dim;
    size_t qd = (size_t)(t->max_qd ? t->max_qd : 1), kvd = (size_t)(t->max_kvd ? t->max_kvd : 1),
           F = (size_t)(t->max_ffn ? t->max_ffn : 1), V = (size_t)c->vocab_size;
    t->xb = tr_alloc(t, N * D * sizeof(float), "activations", &st);
    t->hbuf = tr_alloc(t, (size_t)HEAD_CHUNK * (V + 2 * D) * sizeof(float), "logits", &st);
    t->q = tr_alloc(t, N * qd * sizeof(float), "activations", &st);
    t->k = tr_alloc(t, N * kvd * sizeof(float), "activations", &st);
    t->v = tr_alloc(t, N * kvd * sizeof(float), "activations", &st);
    t->att = tr_alloc(t, N * qd * sizeof(float), "activations", &st);
    t->g = tr_alloc(t, N * F * sizeof(float), "activations", &st);
    t->u = tr_alloc(t, N * F * sizeof(float), "activations", &st);
    t->scores = tr_alloc(t, (size_t)t->n_threads * N * sizeof(float), "attention scratch", &st);
    if (st != LOP_OK) {
        lop_trainer_free(t);
        return st;
    }
    *out = t;
    return LOP_OK;
}

lop_status lop_trainer_set_skip(lop_trainer *t, const uint8_t *skip) {
    int n = t->m->cfg.n_layers;
    if (!skip) {
        memset(t->skip, 0, (size_t)n);
        return LOP_OK;
    }
    for (int l = 0; l < n; l++)
        if (skip[l] & ~(LOP_SKIP_ATTN | LOP_SKIP_FFN))
            return lop_fail(LOP_ERR_ARG, "trainer: skip mask of layer %d has unknown bits 0x%x", l, skip[l]);
    memcpy(t->skip, skip, (size_t)n);
    return LOP_OK;
}

/* ---- forward pieces --------------------------------------------------------------------- */
lop_status tr_check_tokens(const lop_trainer *t, const int32_t *tokens, int64_t n) {
    int V = t->m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return lop_fail(LOP_ERR_ARG, "token id %d out of range (vocab %d)", tokens[i], V);
    return LOP_OK;
}

lop_status tr_check_first(int first, int seq_len) {
    if (first < 1 || first > seq_len)
        return lop_fail(LOP_ERR_ARG, "trainer: first scored token %d outside 1..%d", first, seq_len);
    return LOP_OK;
}

lop_status lop_trainer_embed(lop_trainer *t, const int32_t *tokens, int n, float *x) {
    const lop_config *c = &t->m->cfg;
    LOP_TRY(tr_check_tokens(t, tokens, n));
#ifdef LOP_HAVE_CUDA
    if (t->cu) return lop_cu_trainer_embed(t->cu, tokens, n, x);
#endif
    for (int i = 0; i < n; i++)
        memcpy(x + (int64_t)i * c->dim, t->emb + (int64_t)tokens[i] * c->dim, (size_t)c->dim * sizeof(float));
    return LOP_OK;
}

typedef struct attn_job {
    lop_trainer *t;
    const tr_layer *L;
    float *q, *k, *v, *att;
    int seq_len, nh, nkv, hd;
} attn_job;

static void rope_rows(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    attn_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        int pos = (int)(i % j->seq_len);
        lop_cpu_rope(j->q + i * j->nh * j->hd, j->nh, j->hd, pos, j->L->inv_freq);
        lop_cpu_rope(j->k + i * j->nkv * j->hd, j->nkv, j->hd, pos, j->L->inv_freq);
    }
}

static void attend_rows(void *ctx, int64_t it0, int64_t it1, int thread) {
    attn_job *j = ctx;
    int qd = j->nh * j->hd, kvd = j->nkv * j->hd;
    float *scratch = j->t->scores + (size_t)thread * j->t->max_tokens;
    for (int64_t it = it0; it < it1; it++) {
        int64_t i = it / j->nh;
        int h = (int)(it % j->nh), pos = (int)(i % j->seq_len);
        int64_t base = (i - pos) * kvd; /* first row of this sequence */
        lop_cpu_attention(j->att + i * qd, j->q + i * qd, j->k + base, j->v + base, pos + 1, kvd, j->nh, j->nkv, j->hd,
                          h, h + 1, scratch);
    }
}

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

void tr_module_fwd(lop_trainer *t, int l, int module, float *x, int n_seq, int seq_len, tr_saved *sv) {
    const lop_config *c = &t->m->cfg;
    const lop_layer_shape *s = &c->layers[l];
    const tr_layer *L = &t->L[l];
    int n = n_seq * seq_len, dim = c->dim;
    if (module == LOP_SKIP_ATTN && s->n_heads) {
        int hd = s->head_dim, nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
        float *q = sv ? sv->q : t->q, *k = sv ? sv->k : t->k, *v = sv ? sv->v : t->v, *att = sv ? sv->att : t->att;
        if (sv) memcpy(sv->x_attn, x, (size_t)n * dim * sizeof(float));
        lop_cpu_rmsnorm(t->xb, x, L->w[LOP_LF_attn_norm], n, dim, c->norm_eps);
        lop_cpu_linear(q, t->xb, L->w[LOP_LF_wq], L->w[LOP_LF_bq], n, qd, dim);
        lop_cpu_linear(k, t->xb, L->w[LOP_LF_wk], L->w[LOP_LF_bk], n, kvd, dim);
        lop_cpu_linear(v, t->xb, L->w[LOP_LF_wv], L->w[LOP_LF_bv], n, kvd, dim);
        attn_job job = {t, L, q, k, v, att, seq_len, nh, nkv, hd};
        lop_parallel_for(n, 1, rope_rows, &job);
        lop_parallel_for((int64_t)n * nh, 1, attend_rows, &job);
        lop_cpu_linear(t->xb, att, L->w[LOP_LF_wo], L->w[LOP_LF_bo], n, dim, qd);
        add_rows(x, t->xb, (int64_t)n * dim);
    } else if (module == LOP_SKIP_FFN && s->ffn_dim) {
        int f = s->ffn_dim;
        float *g = sv ? sv->g : t->g, *u = sv ? sv->u : t->u, *h = t->g;
        if (sv) memcpy(sv->x_ffn, x, (size_t)n * dim * sizeof(float));
        lop_cpu_rmsnorm(t->xb, x, L->w[LOP_LF_ffn_norm], n, dim, c->norm_eps);
        lop_cpu_linear(g, t->xb, L->w[LOP_LF_w_gate], L->w[LOP_LF_b_gate], n, f, dim);
        lop_cpu_linear(u, t->xb, L->w[LOP_LF_w_up], L->w[LOP_LF_b_up], n, f, dim);
        lop_cpu_swiglu(h, g, u, (int64_t)n * f);
        lop_cpu_linear(t->xb, h, L->w[LOP_LF_w_down], L->w[LOP_LF_b_down], n, dim, f);
        add_rows(x, t->xb, (int64_t)n * dim);
    }
}

static lop_status check_shape(lop_trainer *t, int n_seq, int seq_len) {
    if (n_seq < 1 || seq_len < 1)
        return lop_fail(LOP_ERR_ARG, "trainer: need at least one sequence of one token (got %d x %d)", n_seq, seq_len);
    if ((int64_t)n_seq * seq_len > t->max_tokens)
        return lop_fail(LOP_ERR_ARG, "trainer: %d sequences x %d tokens exceed its %d positions", n_seq, seq_len,
                        t->max_tokens);
    return LOP_OK;
}

lop_status lop_trainer_module(lop_trainer *t, int layer, int module, float *x, int n_seq, int seq_len) {
    LOP_TRY(check_shape(t, n_seq, seq_len));
    if (layer < 0 || layer >= t->m->cfg.n_layers) return lop_fail(LOP_ERR_ARG, "trainer: no layer %d", layer);
    if (module != LOP_SKIP_ATTN && module != LOP_SKIP_FFN) return lop_fail(LOP_ERR_ARG, "trainer: bad module %d", module);
#ifdef LOP_HAVE_CUDA
    if (t->cu) return lop_cu_trainer_module(t->cu, layer, module, x, n_seq, seq_len);
#endif
    tr_threads(t);
    tr_module_fwd(t, layer, module, x, n_seq, seq_len, NULL);
    return LOP_OK;
}

const float *lop_trainer_proj_input(const lop_trainer *t, int module) {
#ifdef LOP_HAVE_CUDA
    if (t->cu) return lop_cu_trainer_proj_input(t->cu, module); /* a host copy, made now */
#endif
    return module == LOP_SKIP_ATTN ? t->att : t->g; /* tr_module_fwd leaves h = silu(g) * u in t->g */
}

lop_status lop_trainer_layers(lop_trainer *t, int l0, int l1, float *x, int n_seq, int seq_len) {
    LOP_TRY(check_shape(t, n_seq, seq_len));
    if (l0 < 0 || l1 > t->m->cfg.n_layers || l0 > l1)
        return lop_fail(LOP_ERR_ARG, "trainer: layer range [%d, %d) outside the model's %d", l0, l1, t->m->cfg.n_layers);
#ifdef LOP_HAVE_CUDA
    if (t->cu) return lop_cu_trainer_layers(t->cu, t->skip, l0, l1, x, n_seq, seq_len);
#endif
    tr_threads(t);
    for (int l = l0; l < l1; l++) {
        if (!(t->skip[l] & LOP_SKIP_ATTN)) tr_module_fwd(t, l, LOP_SKIP_ATTN, x, n_seq, seq_len, NULL);
        if (!(t->skip[l] & LOP_SKIP_FFN)) tr_module_fwd(t, l, LOP_SKIP_FFN, x, n_seq, seq_len, NULL);
    }
    return LOP_OK;
}

/* ---- head and loss ---------------------------------------------------------------------- */
lop_status tr_head(lop_trainer *t, const float *x, const int32_t *tokens, int n_seq, int seq_len, int first,
                   double weight, float *dxf, float *dvocab, double *nll_out, int64_t *n_out) {
    const lop_config *c = &t->m->cfg;
    int D = c->dim, V = c->vocab_size, n = n_seq * seq_len;
    LOP_TRY(tr_check_first(first, seq_len));
    LOP_TRY(tr_check_tokens(t, tokens, n));
    /* normed rows in xb; per chunk: logits [C][V], gathered rows [C][D], their gradient [C][D] */
    float *xf = t->xb, *logits = t->hbuf, *xc = logits + (size_t)HEAD_CHUNK * V, *dxc = xc + (size_t)HEAD_CHUNK * D;
    lop_cpu_rmsnorm(xf, x, t->norm, n, D, c->norm_eps);
    if (dxf) memset(dxf, 0, (size_t)n * D * sizeof(float));
    double nll = 0;
    int64_t count = 0;
    int rows[HEAD_CHUNK];
    for (int i = 0; i < n;) {
        int nc = 0;
        for (; i < n && nc < HEAD_CHUNK; i++) {
            int pos = i % seq_len;
            if (pos + 1 >= first && pos + 1 < seq_len) rows[nc++] = i;
        }
        if (!nc) continue;
        for (int r = 0; r < nc; r++) memcpy(xc + (size_t)r * D, xf + (size_t)rows[r] * D, (size_t)D * sizeof(float));
        lop_cpu_linear(logits, xc, t->head, NULL, nc, V, D);
        for (int r = 0; r < nc; r++) {
            float *row = logits + (size_t)r * V;
            int target = tokens[rows[r] + 1];
            float mx = row[0];
            for (int k = 1; k < V; k++)
                if (row[k] > mx) mx = row[k];
            double z = 0;
            for (int k = 0; k < V; k++) z += exp((double)row[k] - mx);
            double lse = mx + log(z);
            nll += lse - row[target];
            if (dxf) { /* d(weight * nll)/dlogits = weight * (softmax - onehot) */
                for (int k = 0; k < V; k++) row[k] = (float)(weight * exp((double)row[k] - lse));
                row[target] -= (float)weight;
            }
        }
        count += nc;
        if (dxf) {
            tr_linear_bwd_x(dxc, 0.0f, logits, t->head, nc, V, D);
            for (int r = 0; r < nc; r++) memcpy(dxf + (size_t)rows[r] * D, dxc + (size_t)r * D, (size_t)D * sizeof(float));
            if (dvocab) /* head weight gradient: dH += dlogits^T . xc */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, D, nc, 1.0f, logits, V, xc, D, 1.0f, dvocab, D);
        }
    }
    if (nll_out) *nll_out = nll;
    if (n_out) *n_out = count;
    return LOP_OK;
}

lop_status lop_trainer_head_nll(lop_trainer *t, const float *x, const int32_t *tokens, int n_seq, int seq_len,
                                int first, double *nll, int64_t *n_scored) {
    LOP_TRY(check_shape(t, n_seq, seq_len));
#ifdef LOP_HAVE_CUDA
    if (t->cu) {
        LOP_TRY(tr_check_first(first, seq_len));
        LOP_TRY(tr_check_tokens(t, tokens, (int64_t)n_seq * seq_len));
        return lop_cu_trainer_head_nll(t->cu, x, tokens, n_seq, seq_len, first, nll, n_scored);
    }
#endif
    tr_threads(t);
    return tr_head(t, x, tokens, n_seq, seq_len, first, 0, NULL, NULL, nll, n_scored);
}

lop_status lop_trainer_loss(lop_trainer *t, const int32_t *tokens, int n_seq, int seq_len, int first, double *nll,
                            int64_t *n_scored) {
    LOP_TRY(check_shape(t, n_seq, seq_len));
#ifdef LOP_HAVE_CUDA
    if (t->cu) {
        LOP_TRY(tr_check_first(first, seq_len));
        LOP_TRY(tr_check_tokens(t, tokens, (int64_t)n_seq * seq_len));
        return lop_cu_trainer_loss(t->cu, t->skip, tokens, n_seq, seq_len, first, nll, n_scored);
    }
#endif
    int n = n_seq * seq_len, D = t->m->cfg.dim;
    float *x = malloc((size_t)n * D * sizeof(float));
    if (!x) return lop_fail(LOP_ERR_OOM, "out of memory: hidden states for %d tokens", n);
    lop_status st = lop_trainer_embed(t, tokens, n, x);
    if (st == LOP_OK) st = lop_trainer_layers(t, 0, t->m->cfg.n_layers, x, n_seq, seq_len);
    if (st == LOP_OK) st = lop_trainer_head_nll(t, x, tokens, n_seq, seq_len, first, nll, n_scored);
    free(x);
    return st;
}
