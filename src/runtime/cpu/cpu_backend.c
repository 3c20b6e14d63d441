/* The CPU backend: fp32 reference forward pass for any per-layer shape, OpenBLAS for the matrix
 * products, attention by BLAS for long runs of positions (attn_run.h) and across tokens × heads on
 * the thread pool otherwise (AVX2 kernels from simd.h when the CPU has them, the ops.h reference
 * otherwise), fp32 KV cache per sequence slot.
 * Weights stored as F16/BF16 are converted once to fp32 copies the backend owns. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "model/synth.h"
#include "runtime/backend.h"
#include "runtime/cpu/attn_run.h"
#include "runtime/cpu/ops.h"
#include "runtime/cpu/simd.h"

typedef struct cpu_layer {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
    const float *ffn_norm, *wg, *wu, *wd, *bg, *bu, *bd;
    float *kc, *vc;   /* [n_slots][max_seq][kv_dim] */
    float *inv_freq;  /* [head_dim / 2] */
} cpu_layer;

struct lop_backend {
    lop_model *m;
    int n_slots, max_seq, n_threads;
    int max_group; /* query heads per KV head, widest layer (attention scratch rows per thread) */
    cpu_layer *L;
    const float *emb, *norm, *head;
    void **owned;
    int n_owned, cap_owned;
    /* scratch, sized for cap tokens */
    int cap;
    float *x, *xb, *q, *k, *v, *att, *g, *u, *scores;
    int32_t *idx; /* [cap] tokens for the per-token attention kernel */
    float *S;     /* attention-run scores, S_cap floats */
    size_t S_cap;
};

static void *be_alloc(lop_backend *be, size_t bytes, const char *what, lop_status *st) {
    if (*st != LOP_OK) return NULL;
    if (be->n_owned == be->cap_owned) {
        int c = be->cap_owned ? be->cap_owned * 2 : 64;
        void **o = realloc(be->owned, (size_t)c * sizeof *o);
        if (!o) {
            *st = lop_fail(LOP_ERR_OOM, "out of memory (cpu backend)");
            return NULL;
        }
        be->owned = o;
        be->cap_owned = c;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        *st = lop_fail(LOP_ERR_OOM, "out of memory: %zu bytes for %s", bytes, what);
        return NULL;
    }
    be->owned[be->n_owned++] = p;
    return p;
}

/* fp32 view of a tensor: the tensor's own data when already F32, else a converted copy. */
static const float *as_f32(lop_backend *be, const lop_tensor *t, lop_status *st) {
    if (*st != LOP_OK || !t->present) return NULL;
    if (!t->data) {
        *st = lop_fail(LOP_ERR_ARG, "%s: weights not loaded", be->m->source);
        return NULL;
    }
    if (t->dtype == LOP_F32) return t->data;
    int64_t n = lop_tensor_numel(t);
    float *d = be_alloc(be, (size_t)n * sizeof(float), "fp32 weights", st);
    if (!d) return NULL;
    lop_convert_to_f32(d, t->data, t->dtype, n);
    return d;
}

static void cpu_destroy(lop_backend *be) {
    if (!be) return;
    for (int i = 0; i < be->n_owned; i++) free(be->owned[i]);
    free(be->owned);
    free(be->L);
    free(be->x);
    free(be->xb);
    free(be->q);
    free(be->k);
    free(be->v);
    free(be->att);
    free(be->g);
    free(be->u);
    free(be->scores);
    free(be->idx);
    free(be->S);
    free(be);
}

static int max_q_dim(const lop_config *c, int kv) {
    int mx = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i];
        int d = (kv ? s->n_kv_heads : s->n_heads) * s->head_dim;
        if (d > mx) mx = d;
    }
    return mx;
}

static int max_ffn(const lop_config *c) {
    int mx = 0;
    for (int i = 0; i < c->n_layers; i++)
        if (c->layers[i].ffn_dim > mx) mx = c->layers[i].ffn_dim;
    return mx;
}

static lop_status ensure_scratch(lop_backend *be, int n) {
    if (n <= be->cap) return LOP_OK;
    const lop_config *c = &be->m->cfg;
    int cap = n < 16 ? 16 : n;
    int64_t dim = c->dim, qd = max_q_dim(c, 0), kvd = max_q_dim(c, 1), f = max_ffn(c);
    float **bufs[] = {&be->x, &be->xb, &be->q, &be->k, &be->v, &be->att, &be->g, &be->u};
    int64_t widths[] = {dim, dim, qd, kvd, kvd, qd, f, f};
    for (int i = 0; i < 8; i++) {
        free(*bufs[i]);
        *bufs[i] = malloc((size_t)cap * (size_t)(widths[i] ? widths[i] : 1) * sizeof(float));
        if (!*bufs[i]) {
            be->cap = 0;
            return lop_fail(LOP_ERR_OOM, "out of memory: activations for %d tokens", cap);
        }
    }
    free(be->idx);
    if (!(be->idx = malloc((size_t)cap * sizeof *be->idx))) {
        be->cap = 0;
        return lop_fail(LOP_ERR_OOM, "out of memory: activations for %d tokens", cap);
    }
    be->cap = cap;
    return LOP_OK;
}

static lop_status cpu_create(lop_model *m, const lop_engine_opts *o, lop_backend **out) {
    *out = NULL;
    if (m->synthetic) LOP_TRY(lop_synth_materialize(m));
    if (!m->weights_loaded) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded (opened for shapes only)", m->source);
    lop_backend *be = calloc(1, sizeof *be);
    if (!be) return lop_fail(LOP_ERR_OOM, "out of memory");
    be->m = m;
    be->n_slots = o->max_batch > 0 ? o->max_batch : 1;
    be->max_seq = o->max_seq_len > 0 ? o->max_seq_len : (m->cfg.max_seq_len < 4096 ? m->cfg.max_seq_len : 4096);
    be->n_threads = o->n_threads > 0 ? o->n_threads : lop_n_cpus();
    openblas_set_num_threads(be->n_threads);
    lop_threads_set(be->n_threads);
    lop_status st = LOP_OK;
    const lop_config *c = &m->cfg;
    be->L = calloc((size_t)c->n_layers, sizeof *be->L);
    if (!be->L) st = lop_fail(LOP_ERR_OOM, "out of memory");
    be->emb = as_f32(be, &m->w.tok_emb, &st);
    be->norm = as_f32(be, &m->w.out_norm, &st);
    be->head = c->tie_embeddings ? be->emb : as_f32(be, &m->w.lm_head, &st);
    for (int i = 0; st == LOP_OK && i < c->n_layers; i++) {
        const lop_layer_weights *w = &m->w.layers[i];
        const lop_layer_shape *s = &c->layers[i];
        cpu_layer *L = &be->L[i];
        L->attn_norm = as_f32(be, &w->attn_norm, &st);
        L->wq = as_f32(be, &w->wq, &st);
        L->wk = as_f32(be, &w->wk, &st);
        L->wv = as_f32(be, &w->wv, &st);
        L->wo = as_f32(be, &w->wo, &st);
        L->bq = as_f32(be, &w->bq, &st);
        L->bk = as_f32(be, &w->bk, &st);
        L->bv = as_f32(be, &w->bv, &st);
        L->bo = as_f32(be, &w->bo, &st);
        L->ffn_norm = as_f32(be, &w->ffn_norm, &st);
        L->wg = as_f32(be, &w->w_gate, &st);
        L->wu = as_f32(be, &w->w_up, &st);
        L->wd = as_f32(be, &w->w_down, &st);
        L->bg = as_f32(be, &w->b_gate, &st);
        L->bu = as_f32(be, &w->b_up, &st);
        L->bd = as_f32(be, &w->b_down, &st);
        if (s->n_heads) {
            if (s->n_heads / s->n_kv_heads > be->max_group) be->max_group = s->n_heads / s->n_kv_heads;
            size_t kv = (size_t)be->n_slots * be->max_seq * s->n_kv_heads * s->head_dim;
            L->kc = be_alloc(be, kv * sizeof(float), "KV cache", &st);
            L->vc = be_alloc(be, kv * sizeof(float), "KV cache", &st);
            L->inv_freq = be_alloc(be, (size_t)s->head_dim / 2 * sizeof(float), "rope", &st);
            if (st == LOP_OK) lop_cpu_rope_inv_freq(L->inv_freq, s->head_dim, c->rope_theta, &c->rope_scaling);
        }
    }
    if (st == LOP_OK) {
        if (be->max_group < 1) be->max_group = 1;
        be->scores = malloc((size_t)be->n_threads * be->max_group * be->max_seq * sizeof(float));
        if (!be->scores) st = lop_fail(LOP_ERR_OOM, "out of memory (attention scratch)");
    }
    if (st != LOP_OK) {
        cpu_destroy(be);
        return st;
    }
    *out = be;
    return LOP_OK;
}

/* per-layer job shared by the parallel loops below */
typedef struct attn_job {
    lop_backend *be;
    const lop_batch *b;
    const cpu_layer *L;
    int nh, nkv, hd;
    int simd;           /* AVX2 attention (simd.h) */
    int group;          /* ... by KV group (lop_cpu_attention_group_avx2) */
    const int32_t *idx; /* the tokens left to the per-token kernel */
    int n_idx;
} attn_job;

static void rope_and_cache(void *ctx, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    attn_job *j = ctx;
    lop_backend *be = j->be;
    int qd = j->nh * j->hd, kvd = j->nkv * j->hd;
    for (int64_t i = i0; i < i1; i++) {
        float *qi = be->q + i * qd, *ki = be->k + i * kvd;
        lop_cpu_rope(qi, j->nh, j->hd, j->b->pos[i], j->L->inv_freq);
        lop_cpu_rope(ki, j->nkv, j->hd, j->b->pos[i], j->L->inv_freq);
        size_t row = ((size_t)j->b->seq[i] * be->max_seq + (size_t)j->b->pos[i]) * kvd;
        memcpy(j->L->kc + row, ki, kvd * sizeof(float));
        memcpy(j->L->vc + row, be->v + i * kvd, kvd * sizeof(float));
    }
}

static void attend(void *ctx, int64_t it0, int64_t it1, int thread) {
    attn_job *j = ctx;
    lop_backend *be = j->be;
    int qd = j->nh * j->hd, kvd = j->nkv * j->hd;
    float *scratch = be->scores + (size_t)thread * be->max_group * be->max_seq;
    if (j->group) { /* items: (KV head, token), every query head of the group at once */
        for (int64_t it = it0; it < it1; it++) {
            int i = j->idx[it % j->n_idx], g = (int)(it / j->n_idx);
            size_t base = (size_t)j->b->seq[i] * be->max_seq * kvd;
            lop_cpu_attention_group_avx2(be->att + (int64_t)i * qd, be->q + (int64_t)i * qd, j->L->kc + base,
                                         j->L->vc + base, j->b->pos[i] + 1, kvd, j->nh, j->nkv, j->hd, g, scratch);
        }
        return;
    }
    for (int64_t it = it0; it < it1; it++) {
        int i = j->idx[it % j->n_idx], h = (int)(it / j->n_idx); /* head-major: one head's K/V stays in cache */
        size_t base = (size_t)j->b->seq[i] * be->max_seq * kvd;
        if (j->simd)
            lop_cpu_attention_avx2(be->att + (int64_t)i * qd, be->q + (int64_t)i * qd, j->L->kc + base, j->L->vc + base,
                                   j->b->pos[i] + 1, kvd, j->nh, j->nkv, j->hd, h, h + 1, scratch);
        else
            lop_cpu_attention(be->att + (int64_t)i * qd, be->q + (int64_t)i * qd, j->L->kc + base, j->L->vc + base,
                              j->b->pos[i] + 1, kvd, j->nh, j->nkv, j->hd, h, h + 1, scratch);
    }
}

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* Runs shorter than this go to the per-token kernel (decode, short continuations, 128-token
 * windows: there the kernel's K/V fit in L1/L2 and it costs ~4 % of the forward). */
#define ATTN_RUN_MIN 256
#define ATTN_RUN_ROWS 256

/* grows the attention-run score buffer to the largest run of this batch (n x last position) */
static lop_status ensure_runs(lop_backend *be, const lop_batch *b) {
    size_t need = 0;
    for (int i = 0; i < b->n_tokens;) {
        int k = i + 1;
        while (k < b->n_tokens && b->seq[k] == b->seq[i] && b->pos[k] == b->pos[k - 1] + 1) k++;
        size_t rows = k - i < ATTN_RUN_ROWS ? (size_t)(k - i) : ATTN_RUN_ROWS;
        if (k - i >= ATTN_RUN_MIN && rows * (size_t)(b->pos[k - 1] + 1) > need) need = rows * (size_t)(b->pos[k - 1] + 1);
        i = k;
    }
    if (need <= be->S_cap) return LOP_OK;
    free(be->S);
    be->S_cap = 0;
    if (!(be->S = malloc(need * sizeof *be->S))) return lop_fail(LOP_ERR_OOM, "out of memory: attention scores (%zu floats)", need);
    be->S_cap = need;
    return LOP_OK;
}

static lop_status cpu_forward(lop_backend *be, const lop_batch *b, float *logits) {
    const lop_config *c = &be->m->cfg;
    int n = b->n_tokens, dim = c->dim;
    for (int i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size)
            return lop_fail(LOP_ERR_ARG, "token id %d out of range (vocab %d)", b->tokens[i], c->vocab_size);
        if (b->seq[i] < 0 || b->seq[i] >= be->n_slots)
            return lop_fail(LOP_ERR_ARG, "sequence slot %d out of range (%d slots)", b->seq[i], be->n_slots);
        if (b->pos[i] < 0 || b->pos[i] >= be->max_seq)
            return lop_fail(LOP_ERR_ARG, "position %d beyond the KV cache length %d", b->pos[i], be->max_seq);
    }
    for (int j = 0; j < b->n_out; j++)
        if (b->out_idx[j] < 0 || b->out_idx[j] >= n) return lop_fail(LOP_ERR_ARG, "logit index %d out of range", b->out_idx[j]);
    LOP_TRY(ensure_scratch(be, n > b->n_out ? n : b->n_out));
    LOP_TRY(ensure_runs(be, b));
    float *x = be->x, *xb = be->xb;
    for (int i = 0; i < n; i++) memcpy(x + (int64_t)i * dim, be->emb + (int64_t)b->tokens[i] * dim, dim * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        const lop_layer_shape *s = &c->layers[l];
        const cpu_layer *L = &be->L[l];
        if (s->n_heads) {
            int hd = s->head_dim, nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
            lop_cpu_rmsnorm(xb, x, L->attn_norm, n, dim, c->norm_eps);
            lop_cpu_linear(be->q, xb, L->wq, L->bq, n, qd, dim);
            lop_cpu_linear(be->k, xb, L->wk, L->bk, n, kvd, dim);
            lop_cpu_linear(be->v, xb, L->wv, L->bv, n, kvd, dim);
            int simd = hd % 8 == 0 && lop_cpu_simd_available(), G = nh / nkv;
            attn_job job = {be, b, L, nh, nkv, hd, simd, simd && hd % 32 == 0 && G >= 2 && G <= LOP_ATT_MAX_GROUP,
                            be->idx, 0};
            lop_parallel_for(n, 1, rope_and_cache, &job);
            /* runs of >= ATTN_RUN_MIN consecutive positions of one sequence: two GEMMs per head
             * (attn_run.h); every other token: the per-token kernel */
            for (int i = 0; i < n;) {
                int k = i + 1;
                while (k < n && b->seq[k] == b->seq[i] && b->pos[k] == b->pos[k - 1] + 1) k++;
                if (k - i >= ATTN_RUN_MIN) { /* ensure_runs sized S */
                    size_t base = (size_t)b->seq[i] * be->max_seq * kvd;
                    lop_cpu_attention_run(be->att + (int64_t)i * qd, qd, be->q + (int64_t)i * qd, qd, L->kc + base,
                                          L->vc + base, kvd, b->pos[i], k - i, nh, nkv, hd, be->S);
                } else {
                    for (int t = i; t < k; t++) be->idx[job.n_idx++] = t;
                }
                i = k;
            }
            lop_parallel_for((int64_t)job.n_idx * (job.group ? nkv : nh), 1, attend, &job);
            lop_cpu_linear(xb, be->att, L->wo, L->bo, n, dim, qd);
            add_rows(x, xb, (int64_t)n * dim);
        }
        if (s->ffn_dim) {
            int f = s->ffn_dim;
            lop_cpu_rmsnorm(xb, x, L->ffn_norm, n, dim, c->norm_eps);
            lop_cpu_linear(be->g, xb, L->wg, L->bg, n, f, dim);
            lop_cpu_linear(be->u, xb, L->wu, L->bu, n, f, dim);
            if (lop_cpu_simd_available()) lop_cpu_swiglu_avx2(be->g, be->g, be->u, (int64_t)n * f);
            else lop_cpu_swiglu(be->g, be->g, be->u, (int64_t)n * f);
            lop_cpu_linear(xb, be->g, L->wd, L->bd, n, dim, f);
            add_rows(x, xb, (int64_t)n * dim);
        }
    }
    if (b->n_out == 0) return LOP_OK;
    for (int j = 0; j < b->n_out; j++)
        lop_cpu_rmsnorm(xb + (int64_t)j * dim, x + (int64_t)b->out_idx[j] * dim, be->norm, 1, dim, c->norm_eps);
    lop_cpu_linear(logits, xb, be->head, NULL, b->n_out, c->vocab_size, dim);
    return LOP_OK;
}

const lop_backend_ops lop_cpu_backend = {
    .name = "cpu", .create = cpu_create, .forward = cpu_forward, .destroy = cpu_destroy, .weight_bytes = 4, .kv_bytes = 4};
