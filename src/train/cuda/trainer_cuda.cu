/* The CUDA trainer (train/train_cuda.h): the CPU trainer's forward (trainer.c) and backward
 * (backward.c) step for step on the device, fp32 weights and activations, cuBLAS sgemm for every
 * product (fp32 math: no TF32, so it agrees with the CPU trainer to fp32 rounding).
 * Why it mirrors the CPU code line by line: that code is checked against finite differences and
 * HF autograd; the GPU twin is checked against it (tests/test_train_cuda.c), so the same structure
 * keeps the two easy to compare. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "core/status.h"
#include "model/synth.h"
#include "runtime/cpu/ops.h"
#include "train/train_cuda.h"
}
#include "train/cuda/k_train.cuh"

#define HEAD_CHUNK 256 /* rows of logits formed at once */

typedef struct cu_saved {
    float *x_attn, *q, *k, *v, *att, *x_ffn, *g, *u;
} cu_saved;

struct lop_cu_trainer {
    lop_model *m;
    int max_tokens, max_bwd, max_qd, max_kvd, max_ffn;
    int64_t big; /* largest tensor, elements */
    cublasHandle_t blas;
    int blas_err;
    std::vector<void *> dev; /* owned device allocations */
    std::vector<float *> w;  /* [n_layers * LOP_LF_COUNT] fp32 weights, NULL when absent */
    std::vector<float *> inv_freq;
    float *emb, *norm, *head;
    /* forward scratch [max_tokens] rows */
    int32_t *tok, *rows, *targets;
    float *x, *xb, *q, *k, *v, *att, *g, *u;
    float *logits, *xc, *dxc;
    double *nll;
    int proj_n[3], proj_w[3]; /* last lop_cu_trainer_module call, by module */
    std::vector<float> h_proj;
    /* backward */
    int have_bwd;
    std::vector<cu_saved> saved;
    float *x_final, *dx, *dxb, *dq, *dk, *dv, *datt, *dg, *du, *dw, *rinv, *dvocab;
    float *P, *DS;
    size_t att_cap; /* floats in P and DS */
    double *dacc;
    float *h_grad, *h_w; /* pinned, `big` floats each, for sinks that want gradients on the host */
};

/* ---- errors and memory ------------------------------------------------------------------ */
static lop_status cu_fail(cudaError_t e, const char *what) {
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation) return lop_fail(LOP_ERR_OOM, "CUDA trainer: out of device memory (%s)", what);
    return lop_fail(LOP_ERR_DEVICE, "CUDA trainer: %s (%s)", cudaGetErrorString(e), what);
}

/* waits for the device and reports the first error of the work queued since the last check */
static lop_status sync_check(lop_cu_trainer *t, const char *what) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return cu_fail(e, what);
    if (t->blas_err) {
        int s = t->blas_err;
        t->blas_err = 0;
        return lop_fail(LOP_ERR_DEVICE, "CUDA trainer: cuBLAS status %d (%s)", s, what);
    }
    return LOP_OK;
}

template <typename P> static P *dalloc(lop_cu_trainer *t, size_t count, const char *what, lop_status *st) {
    if (*st != LOP_OK) return NULL;
    void *p = NULL;
    size_t bytes = count * sizeof(P);
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : sizeof(P));
    if (e == cudaSuccess) e = cudaMemset(p, 0, bytes ? bytes : sizeof(P));
    if (e != cudaSuccess) {
        if (p) cudaFree(p);
        *st = cu_fail(e, what);
        return NULL;
    }
    t->dev.push_back(p);
    return (P *)p;
}

static void dfree(lop_cu_trainer *t, void *p) {
    for (size_t i = 0; i < t->dev.size(); i++)
        if (t->dev[i] == p) {
            cudaFree(p);
            t->dev[i] = t->dev.back();
            t->dev.pop_back();
            return;
        }
}

extern "C" void lop_cu_trainer_free(lop_cu_trainer *t) {
    if (!t) return;
    for (void *p : t->dev) cudaFree(p);
    if (t->h_grad) cudaFreeHost(t->h_grad);
    if (t->h_w) cudaFreeHost(t->h_w);
    if (t->blas) cublasDestroy(t->blas);
    delete t;
}

/* fp32 device copy of a weight tensor; 16-bit tensors go through the staging buffer */
static float *upload(lop_cu_trainer *t, const lop_tensor *x, void *stage, lop_status *st) {
    if (*st != LOP_OK || !x->present) return NULL;
    if (!x->data) {
        *st = lop_fail(LOP_ERR_ARG, "%s: weights not loaded", t->m->source);
        return NULL;
    }
    if (x->dtype != LOP_F32 && x->dtype != LOP_F16 && x->dtype != LOP_BF16) {
        *st = lop_fail(LOP_ERR_ARG, "%s: CUDA trainer: unsupported weight dtype %d", t->m->source, (int)x->dtype);
        return NULL;
    }
    int64_t n = lop_tensor_numel(x);
    float *d = dalloc<float>(t, (size_t)n, "fp32 weights", st);
    if (!d) return NULL;
    cudaError_t e;
    if (x->dtype == LOP_F32) e = cudaMemcpy(d, x->data, (size_t)n * sizeof(float), cudaMemcpyHostToDevice);
    else {
        e = cudaMemcpy(stage, x->data, (size_t)n * lop_dtype_size(x->dtype), cudaMemcpyHostToDevice);
        if (e == cudaSuccess) kt_widen(d, stage, x->dtype, n);
    }
    if (e != cudaSuccess) *st = cu_fail(e, "weight upload");
    return d;
}

static float *W(lop_cu_trainer *t, int l, int f) { return t->w[(size_t)l * LOP_LF_COUNT + f]; }

extern "C" lop_status lop_cu_trainer_create(lop_model *m, int max_tokens, int max_bwd, lop_cu_trainer **out) {
    *out = NULL;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        cudaGetLastError();
        return lop_fail(LOP_ERR_DEVICE, "CUDA trainer: no CUDA device");
    }
    lop_cu_trainer *t = new lop_cu_trainer();
    t->m = m;
    t->max_tokens = max_tokens;
    t->max_bwd = max_bwd;
    const lop_config *c = &m->cfg;
    lop_status st = LOP_OK;
    if (cublasCreate(&t->blas) != CUBLAS_STATUS_SUCCESS) {
        t->blas = NULL;
        st = lop_fail(LOP_ERR_DEVICE, "CUDA trainer: cannot create a cuBLAS handle");
    }
    /* the largest 16-bit tensor sizes the staging buffer */
    size_t stage_bytes = 16;
    const lop_tensor *glob[3] = {&m->w.tok_emb, &m->w.out_norm, &m->w.lm_head};
    t->big = c->dim;
    for (int l = -1; l < c->n_layers; l++)
        for (int f = 0; f < (l < 0 ? 3 : LOP_LF_COUNT); f++) {
            const lop_tensor *x = l < 0 ? glob[f] : lop_layer_tensor_c(&m->w.layers[l], f);
            if (!x->present) continue;
            int64_t n = lop_tensor_numel(x);
            if (n > t->big) t->big = n;
            if (x->dtype != LOP_F32 && (size_t)n * lop_dtype_size(x->dtype) > stage_bytes)
                stage_bytes = (size_t)n * lop_dtype_size(x->dtype);
        }
    void *stage = dalloc<char>(t, stage_bytes, "weight staging", &st);
    t->emb = upload(t, &m->w.tok_emb, stage, &st);
    t->norm = upload(t, &m->w.out_norm, stage, &st);
    t->head = c->tie_embeddings ? t->emb : upload(t, &m->w.lm_head, stage, &st);
    t->w.assign((size_t)c->n_layers * LOP_LF_COUNT, NULL);
    t->inv_freq.assign((size_t)c->n_layers, NULL);
    std::vector<float> inv;
    for (int l = 0; st == LOP_OK && l < c->n_layers; l++) {
        const lop_layer_shape *s = &c->layers[l];
        for (int f = 0; f < LOP_LF_COUNT; f++)
            t->w[(size_t)l * LOP_LF_COUNT + f] = upload(t, lop_layer_tensor_c(&m->w.layers[l], f), stage, &st);
        if (s->n_heads) {
            inv.resize((size_t)s->head_dim / 2);
            lop_cpu_rope_inv_freq(inv.data(), s->head_dim, c->rope_theta, &c->rope_scaling);
            t->inv_freq[l] = dalloc<float>(t, inv.size(), "rope", &st);
            if (st == LOP_OK) cudaMemcpy(t->inv_freq[l], inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice);
        }
        int qd = s->n_heads * s->head_dim, kvd = s->n_kv_heads * s->head_dim;
        if (qd > t->max_qd) t->max_qd = qd;
        if (kvd > t->max_kvd) t->max_kvd = kvd;
        if (s->ffn_dim > t->max_ffn) t->max_ffn = s->ffn_dim;
    }
    if (st == LOP_OK) st = sync_check(t, "weight upload");
    if (stage) dfree(t, stage);
    size_t N = (size_t)max_tokens, D = (size_t)c->dim, V = (size_t)c->vocab_size;
    size_t qd = (size_t)(t->max_qd ? t->max_qd : 1), kvd = (size_t)(t->max_kvd ? t->max_kvd : 1),
           F = (size_t)(t->max_ffn ? t->max_ffn : 1);
    t->tok = dalloc<int32_t>(t, N, "tokens", &st);
    t->rows = dalloc<int32_t>(t, N, "tokens", &st);
    t->targets = dalloc<int32_t>(t, N, "tokens", &st);
    t->nll = dalloc<double>(t, N, "losses", &st);
    t->x = dalloc<float>(t, N * D, "activations", &st);
    t->xb = dalloc<float>(t, N * D, "activations", &st);
    t->q = dalloc<float>(t, N * qd, "activations", &st);
    t->att = dalloc<float>(t, N * qd, "activations", &st);
    t->k = dalloc<float>(t, N * kvd, "activations", &st);
    t->v = dalloc<float>(t, N * kvd, "activations", &st);
    t->g = dalloc<float>(t, N * F, "activations", &st);
    t->u = dalloc<float>(t, N * F, "activations", &st);
    t->logits = dalloc<float>(t, (size_t)HEAD_CHUNK * V, "logits", &st);
    t->xc = dalloc<float>(t, (size_t)HEAD_CHUNK * D, "logits", &st);
    t->dxc = dalloc<float>(t, (size_t)HEAD_CHUNK * D, "logits", &st);
    if (st != LOP_OK) {
        lop_cu_trainer_free(t);
        return st;
    }
    *out = t;
    return LOP_OK;
}

/* ---- products: row-major Y[n][out] = X[n][in] W[out][in]^T and its two backward products ---- */
static void gemm_fwd(lop_cu_trainer *t, float *Y, const float *X, const float *Wt, int n, int out, int in, float beta) {
    float one = 1.0f;
    cublasStatus_t s = cublasSgemm(t->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, Wt, in, X, in, &beta, Y, out);
    if (s != CUBLAS_STATUS_SUCCESS && !t->blas_err) t->blas_err = (int)s;
}
/* dX[n][in] = beta dX + dY[n][out] W[out][in] */
static void gemm_dx(lop_cu_trainer *t, float *dX, const float *dY, const float *Wt, int n, int out, int in, float beta) {
    float one = 1.0f;
    cublasStatus_t s = cublasSgemm(t->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, Wt, in, dY, out, &beta, dX, in);
    if (s != CUBLAS_STATUS_SUCCESS && !t->blas_err) t->blas_err = (int)s;
}
/* dW[out][in] = beta dW + dY^T X */
static void gemm_dw(lop_cu_trainer *t, float *dW, const float *dY, const float *X, int n, int out, int in, float beta) {
    float one = 1.0f;
    cublasStatus_t s = cublasSgemm(t->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, X, in, dY, out, &beta, dW, in);
    if (s != CUBLAS_STATUS_SUCCESS && !t->blas_err) t->blas_err = (int)s;
}

static void linear(lop_cu_trainer *t, float *Y, const float *X, const float *Wt, const float *b, int n, int out, int in) {
    gemm_fwd(t, Y, X, Wt, n, out, in, 0.0f);
    if (b) kt_add_bias(Y, b, n, out);
}

/* ---- forward ------------------------------------------------------------------------------ */
/* tr_module_fwd on the device: x += module(x); sv keeps the activations for the backward */
static lop_status module_fwd(lop_cu_trainer *t, int l, int module, float *x, int n_seq, int T, const cu_saved *sv) {
    const lop_config *c = &t->m->cfg;
    const lop_layer_shape *s = &c->layers[l];
    int n = n_seq * T, dim = c->dim;
    if (module == LOP_SKIP_ATTN && s->n_heads) {
        int hd = s->head_dim, nh = s->n_heads, nkv = s->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
        float *q = sv ? sv->q : t->q, *k = sv ? sv->k : t->k, *v = sv ? sv->v : t->v, *att = sv ? sv->att : t->att;
        if (sv) cudaMemcpyAsync(sv->x_attn, x, (size_t)n * dim * sizeof(float), cudaMemcpyDeviceToDevice, 0);
        kt_rmsnorm(t->xb, x, W(t, l, LOP_LF_attn_norm), n, dim, c->norm_eps);
        linear(t, q, t->xb, W(t, l, LOP_LF_wq), W(t, l, LOP_LF_bq), n, qd, dim);
        linear(t, k, t->xb, W(t, l, LOP_LF_wk), W(t, l, LOP_LF_bk), n, kvd, dim);
        linear(t, v, t->xb, W(t, l, LOP_LF_wv), W(t, l, LOP_LF_bv), n, kvd, dim);
        kt_rope(q, nh, hd, n, T, t->inv_freq[l], 1);
        kt_rope(k, nkv, hd, n, T, t->inv_freq[l], 1);
        if (kt_attn_fwd(att, NULL, q, k, v, n_seq, T, nh, nkv, hd))
            return lop_fail(LOP_ERR_ARG, "CUDA trainer: sequences of %d tokens are too long for its attention kernel", T);
        linear(t, t->xb, att, W(t, l, LOP_LF_wo), W(t, l, LOP_LF_bo), n, dim, qd);
        kt_add(x, t->xb, (int64_t)n * dim);
        t->proj_n[LOP_SKIP_ATTN] = n, t->proj_w[LOP_SKIP_ATTN] = qd;
    } else if (module == LOP_SKIP_FFN && s->ffn_dim) {
        int f = s->ffn_dim;
        float *g = sv ? sv->g : t->g, *u = sv ? sv->u : t->u, *h = t->g;
        if (sv) cudaMemcpyAsync(sv->x_ffn, x, (size_t)n * dim * sizeof(float), cudaMemcpyDeviceToDevice, 0);
        kt_rmsnorm(t->xb, x, W(t, l, LOP_LF_ffn_norm), n, dim, c->norm_eps);
        linear(t, g, t->xb, W(t, l, LOP_LF_w_gate), W(t, l, LOP_LF_b_gate), n, f, dim);
        linear(t, u, t->xb, W(t, l, LOP_LF_w_up), W(t, l, LOP_LF_b_up), n, f, dim);
        kt_swiglu(h, g, u, (int64_t)n * f);
        linear(t, t->xb, h, W(t, l, LOP_LF_w_down), W(t, l, LOP_LF_b_down), n, dim, f);
        kt_add(x, t->xb, (int64_t)n * dim);
        t->proj_n[LOP_SKIP_FFN] = n, t->proj_w[LOP_SKIP_FFN] = f;
    }
    return LOP_OK;
}

static lop_status layers_fwd(lop_cu_trainer *t, const uint8_t *skip, int l0, int l1, float *x, int n_seq, int T) {
    for (int l = l0; l < l1; l++) {
        if (!(skip[l] & LOP_SKIP_ATTN)) LOP_TRY(module_fwd(t, l, LOP_SKIP_ATTN, x, n_seq, T, NULL));
        if (!(skip[l] & LOP_SKIP_FFN)) LOP_TRY(module_fwd(t, l, LOP_SKIP_FFN, x, n_seq, T, NULL));
    }
    return LOP_OK;
}

static lop_status put(void *d, const void *h, size_t bytes) {
    cudaError_t e = cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? LOP_OK : cu_fail(e, "upload");
}
static lop_status get(void *h, const void *d, size_t bytes) {
    cudaError_t e = cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? LOP_OK : cu_fail(e, "download");
}

/* tr_head on the device: final norm, head on the rows that predict a scored token, NLL; with dxf,
 * d(weight * NLL)/d(normed x) (zero on unscored rows) and dvocab += the head weight gradient */
static lop_status head(lop_cu_trainer *t, const float *x, const int32_t *tokens, int n_seq, int T, int first,
                       double weight, float *dxf, float *dvocab, double *nll_out, int64_t *n_out) {
    const lop_config *c = &t->m->cfg;
    int D = c->dim, V = c->vocab_size, n = n_seq * T;
    std::vector<int32_t> rows, targets;
    for (int i = 0; i < n; i++) {
        int pos = i % T;
        if (pos + 1 >= first && pos + 1 < T) rows.push_back(i), targets.push_back(tokens[i + 1]);
    }
    int nr = (int)rows.size();
    kt_rmsnorm(t->xb, x, t->norm, n, D, c->norm_eps);
    if (dxf) cudaMemsetAsync(dxf, 0, (size_t)n * D * sizeof(float), 0);
    if (nr) {
        LOP_TRY(put(t->rows, rows.data(), (size_t)nr * sizeof(int32_t)));
        LOP_TRY(put(t->targets, targets.data(), (size_t)nr * sizeof(int32_t)));
    }
    for (int c0 = 0; c0 < nr; c0 += HEAD_CHUNK) {
        int nc = nr - c0 < HEAD_CHUNK ? nr - c0 : HEAD_CHUNK;
        kt_gather(t->xc, t->xb, t->rows + c0, nc, D);
        gemm_fwd(t, t->logits, t->xc, t->head, nc, V, D, 0.0f);
        kt_xent(t->logits, t->targets + c0, nc, V, weight, t->nll + c0, dxf != NULL);
        if (dxf) {
            gemm_dx(t, t->dxc, t->logits, t->head, nc, V, D, 0.0f);
            kt_scatter(dxf, t->dxc, t->rows + c0, nc, D);
            if (dvocab) gemm_dw(t, dvocab, t->logits, t->xc, nc, V, D, 1.0f);
        }
    }
    std::vector<double> nll((size_t)nr);
    if (nr) LOP_TRY(get(nll.data(), t->nll, (size_t)nr * sizeof(double)));
    LOP_TRY(sync_check(t, "head"));
    double s = 0;
    for (int i = 0; i < nr; i++) s += nll[(size_t)i];
    if (nll_out) *nll_out = s;
    if (n_out) *n_out = nr;
    return LOP_OK;
}

/* ---- the host-array entry points ------------------------------------------------------------- */
extern "C" lop_status lop_cu_trainer_embed(lop_cu_trainer *t, const int32_t *tokens, int n, float *x) {
    int D = t->m->cfg.dim;
    LOP_TRY(put(t->tok, tokens, (size_t)n * sizeof(int32_t)));
    kt_gather(t->x, t->emb, t->tok, n, D);
    LOP_TRY(get(x, t->x, (size_t)n * D * sizeof(float)));
    return sync_check(t, "embed");
}

extern "C" lop_status lop_cu_trainer_module(lop_cu_trainer *t, int layer, int module, float *x, int n_seq, int seq_len) {
    size_t bytes = (size_t)n_seq * seq_len * t->m->cfg.dim * sizeof(float);
    LOP_TRY(put(t->x, x, bytes));
    t->proj_n[module] = 0;
    LOP_TRY(module_fwd(t, layer, module, t->x, n_seq, seq_len, NULL));
    LOP_TRY(get(x, t->x, bytes));
    return sync_check(t, "module");
}

extern "C" const float *lop_cu_trainer_proj_input(lop_cu_trainer *t, int module) {
    int n = t->proj_n[module], w = t->proj_w[module];
    if (!n) return NULL;
    t->h_proj.resize((size_t)n * w);
    if (get(t->h_proj.data(), module == LOP_SKIP_ATTN ? t->att : t->g, (size_t)n * w * sizeof(float)) != LOP_OK)
        return NULL;
    return t->h_proj.data();
}

extern "C" lop_status lop_cu_trainer_layers(lop_cu_trainer *t, const uint8_t *skip, int l0, int l1, float *x,
                                            int n_seq, int seq_len) {
    size_t bytes = (size_t)n_seq * seq_len * t->m->cfg.dim * sizeof(float);
    LOP_TRY(put(t->x, x, bytes));
    LOP_TRY(layers_fwd(t, skip, l0, l1, t->x, n_seq, seq_len));
    LOP_TRY(get(x, t->x, bytes));
    return sync_check(t, "layers");
}

extern "C" lop_status lop_cu_trainer_head_nll(lop_cu_trainer *t, const float *x, const int32_t *tokens, int n_seq,
                                              int seq_len, int first, double *nll, int64_t *n_scored) {
    LOP_TRY(put(t->x, x, (size_t)n_seq * seq_len * t->m->cfg.dim * sizeof(float)));
    return head(t, t->x, tokens, n_seq, seq_len, first, 0, NULL, NULL, nll, n_scored);
}

extern "C" lop_status lop_cu_trainer_loss(lop_cu_trainer *t, const uint8_t *skip, const int32_t *tokens, int n_seq,
                                          int seq_len, int first, double *nll, int64_t *n_scored) {
    const lop_config *c = &t->m->cfg;
    int n = n_seq * seq_len;
    LOP_TRY(put(t->tok, tokens, (size_t)n * sizeof(int32_t)));
    kt_gather(t->x, t->emb, t->tok, n, c->dim);
    LOP_TRY(layers_fwd(t, skip, 0, c->n_layers, t->x, n_seq, seq_len));
    return head(t, t->x, tokens, n_seq, seq_len, first, 0, NULL, NULL, nll, n_scored);
}

/* ---- backward -------------------------------------------------------------------------------- */
static lop_status ensure_bwd(lop_cu_trainer *t) {
    if (t->have_bwd) return LOP_OK;
    const lop_config *c = &t->m->cfg;
    size_t N = (size_t)t->max_bwd, D = (size_t)c->dim;
    size_t qd = (size_t)(t->max_qd ? t->max_qd : 1), kvd = (size_t)(t->max_kvd ? t->max_kvd : 1),
           F = (size_t)(t->max_ffn ? t->max_ffn : 1);
    lop_status st = LOP_OK;
    t->saved.assign((size_t)c->n_layers, cu_saved{});
    for (int l = 0; st == LOP_OK && l < c->n_layers; l++) {
        const lop_layer_shape *s = &c->layers[l];
        cu_saved *sv = &t->saved[(size_t)l];
        if (s->n_heads) {
            size_t lq = (size_t)s->n_heads * s->head_dim, lkv = (size_t)s->n_kv_heads * s->head_dim;
            sv->x_attn = dalloc<float>(t, N * D, "saved activations", &st);
            sv->q = dalloc<float>(t, N * lq, "saved activations", &st);
            sv->k = dalloc<float>(t, N * lkv, "saved activations", &st);
            sv->v = dalloc<float>(t, N * lkv, "saved activations", &st);
            sv->att = dalloc<float>(t, N * lq, "saved activations", &st);
        }
        if (s->ffn_dim) {
            sv->x_ffn = dalloc<float>(t, N * D, "saved activations", &st);
            sv->g = dalloc<float>(t, N * (size_t)s->ffn_dim, "saved activations", &st);
            sv->u = dalloc<float>(t, N * (size_t)s->ffn_dim, "saved activations", &st);
        }
    }
    t->x_final = dalloc<float>(t, N * D, "activations", &st);
    t->dx = dalloc<float>(t, N * D, "gradients", &st);
    t->dxb = dalloc<float>(t, N * D, "gradients", &st);
    t->dq = dalloc<float>(t, N * qd, "gradients", &st);
    t->datt = dalloc<float>(t, N * qd, "gradients", &st);
    t->dk = dalloc<float>(t, N * kvd, "gradients", &st);
    t->dv = dalloc<float>(t, N * kvd, "gradients", &st);
    t->dg = dalloc<float>(t, N * F, "gradients", &st);
    t->du = dalloc<float>(t, N * F, "gradients", &st);
    t->dw = dalloc<float>(t, (size_t)t->big, "weight gradient", &st);
    t->rinv = dalloc<float>(t, N, "gradients", &st);
    t->dacc = dalloc<double>(t, (size_t)lop_wgrad_acc_len(t->m), "W*grad sums", &st);
    if (st == LOP_OK) t->have_bwd = 1;
    return st;
}

typedef struct bwd_ctx {
    lop_cu_trainer *t;
    const lop_grad_sink *s;
    lop_status st; /* first failure of a host-side sink transfer */
} bwd_ctx;

static int wants(const bwd_ctx *b, int layer, int field) {
    lop_param_id id = {layer, field};
    return b->s && b->s->grad && (!b->s->wants || b->s->wants(b->s->user, id));
}

/* a gradient to the sink: reduced on the device for the W * dL/dW sink, else copied to the host */
static void give(bwd_ctx *b, int layer, int field, const float *w, const float *g, int64_t n) {
    lop_cu_trainer *t = b->t;
    lop_param_id id = {layer, field};
    if (b->s->wgrad) {
        kt_dot_acc(t->dacc + lop_wgrad_index(t->m->cfg.n_layers, id), w, g, n);
        return;
    }
    if (b->st != LOP_OK) return;
    if (!t->h_grad) {
        cudaError_t e = cudaMallocHost((void **)&t->h_grad, (size_t)t->big * sizeof(float));
        if (e == cudaSuccess) e = cudaMallocHost((void **)&t->h_w, (size_t)t->big * sizeof(float));
        if (e != cudaSuccess) {
            b->st = cu_fail(e, "pinned host buffers for gradients");
            return;
        }
    }
    if ((b->st = get(t->h_grad, g, (size_t)n * sizeof(float))) != LOP_OK) return;
    if ((b->st = get(t->h_w, w, (size_t)n * sizeof(float))) != LOP_OK) return;
    b->s->grad(b->s->user, id, t->h_w, t->h_grad, n);
}

static void give_norm(bwd_ctx *b, int layer, int field, const float *x, const float *dy, const float *w, int n) {
    int D = b->t->m->cfg.dim;
    kt_rmsnorm_dw(b->t->dw, x, dy, b->t->rinv, n, D);
    give(b, layer, field, w, b->t->dw, D);
}

static void linear_grads(bwd_ctx *b, int l, int fw, int fb, const float *dY, const float *X, int n, int out, int in) {
    lop_cu_trainer *t = b->t;
    if (wants(b, l, fw)) {
        gemm_dw(t, t->dw, dY, X, n, out, in, 0.0f);
        give(b, l, fw, W(t, l, fw), t->dw, (int64_t)out * in);
    }
    if (W(t, l, fb) && wants(b, l, fb)) {
        kt_bias_bwd(t->dw, dY, n, out);
        give(b, l, fb, W(t, l, fb), t->dw, out);
    }
}

static void ffn_bwd(bwd_ctx *b, int l, int n) {
    lop_cu_trainer *t = b->t;
    const lop_config *c = &t->m->cfg;
    const cu_saved *sv = &t->saved[(size_t)l];
    int D = c->dim, F = c->layers[l].ffn_dim;
    float *h = t->g, *dy = t->dx;
    kt_swiglu(h, sv->g, sv->u, (int64_t)n * F);
    linear_grads(b, l, LOP_LF_w_down, LOP_LF_b_down, dy, h, n, D, F);
    gemm_dx(t, t->dg, dy, W(t, l, LOP_LF_w_down), n, D, F, 0.0f);
    kt_swiglu_bwd(t->dg, t->du, t->dg, sv->g, sv->u, (int64_t)n * F);
    kt_rmsnorm(t->xb, sv->x_ffn, W(t, l, LOP_LF_ffn_norm), n, D, c->norm_eps);
    linear_grads(b, l, LOP_LF_w_gate, LOP_LF_b_gate, t->dg, t->xb, n, F, D);
    linear_grads(b, l, LOP_LF_w_up, LOP_LF_b_up, t->du, t->xb, n, F, D);
    gemm_dx(t, t->dxb, t->dg, W(t, l, LOP_LF_w_gate), n, F, D, 0.0f);
    gemm_dx(t, t->dxb, t->du, W(t, l, LOP_LF_w_up), n, F, D, 1.0f);
    kt_rmsnorm_bwd(t->dx, t->rinv, sv->x_ffn, W(t, l, LOP_LF_ffn_norm), t->dxb, n, D, c->norm_eps, 1);
    if (wants(b, l, LOP_LF_ffn_norm)) give_norm(b, l, LOP_LF_ffn_norm, sv->x_ffn, t->dxb, W(t, l, LOP_LF_ffn_norm), n);
}

static lop_status attn_bwd(bwd_ctx *b, int l, int n_seq, int T) {
    lop_cu_trainer *t = b->t;
    const lop_config *c = &t->m->cfg;
    const lop_layer_shape *sh = &c->layers[l];
    const cu_saved *sv = &t->saved[(size_t)l];
    int n = n_seq * T, D = c->dim, hd = sh->head_dim, nh = sh->n_heads, nkv = sh->n_kv_heads;
    int qd = nh * hd, kvd = nkv * hd;
    float *dy = t->dx;
    linear_grads(b, l, LOP_LF_wo, LOP_LF_bo, dy, sv->att, n, D, qd);
    gemm_dx(t, t->datt, dy, W(t, l, LOP_LF_wo), n, D, qd, 0.0f);
    size_t need = (size_t)n_seq * nh * T * T;
    if (need > t->att_cap) { /* probabilities and their gradient, [n_seq][nh][T][T] each */
        lop_status st = sync_check(t, "attention backward");
        if (t->P) dfree(t, t->P), dfree(t, t->DS);
        t->P = t->DS = NULL;
        t->att_cap = 0;
        t->P = dalloc<float>(t, need, "attention probabilities", &st);
        t->DS = dalloc<float>(t, need, "attention probabilities", &st);
        LOP_TRY(st);
        t->att_cap = need;
    }
    /* P again (the forward kept q, k, v, not P); its output lands in scratch */
    if (kt_attn_fwd(t->att, t->P, sv->q, sv->k, sv->v, n_seq, T, nh, nkv, hd) ||
        kt_attn_bwd(t->dq, t->dk, t->dv, t->DS, t->P, t->datt, sv->q, sv->k, sv->v, n_seq, T, nh, nkv, hd))
        return lop_fail(LOP_ERR_ARG, "CUDA trainer: sequences of %d tokens are too long for its attention kernel", T);
    kt_rope(t->dq, nh, hd, n, T, t->inv_freq[l], -1);
    kt_rope(t->dk, nkv, hd, n, T, t->inv_freq[l], -1);
    kt_rmsnorm(t->xb, sv->x_attn, W(t, l, LOP_LF_attn_norm), n, D, c->norm_eps);
    linear_grads(b, l, LOP_LF_wq, LOP_LF_bq, t->dq, t->xb, n, qd, D);
    linear_grads(b, l, LOP_LF_wk, LOP_LF_bk, t->dk, t->xb, n, kvd, D);
    linear_grads(b, l, LOP_LF_wv, LOP_LF_bv, t->dv, t->xb, n, kvd, D);
    gemm_dx(t, t->dxb, t->dq, W(t, l, LOP_LF_wq), n, qd, D, 0.0f);
    gemm_dx(t, t->dxb, t->dk, W(t, l, LOP_LF_wk), n, kvd, D, 1.0f);
    gemm_dx(t, t->dxb, t->dv, W(t, l, LOP_LF_wv), n, kvd, D, 1.0f);
    kt_rmsnorm_bwd(t->dx, t->rinv, sv->x_attn, W(t, l, LOP_LF_attn_norm), t->dxb, n, D, c->norm_eps, 1);
    if (wants(b, l, LOP_LF_attn_norm)) give_norm(b, l, LOP_LF_attn_norm, sv->x_attn, t->dxb, W(t, l, LOP_LF_attn_norm), n);
    return b->st;
}

extern "C" lop_status lop_cu_trainer_backward(lop_cu_trainer *t, const uint8_t *skip, const int32_t *tokens, int n_seq,
                                              int seq_len, int first, double weight, const lop_grad_sink *sink,
                                              double *nll, int64_t *n_scored) {
    const lop_config *c = &t->m->cfg;
    int n = n_seq * seq_len, D = c->dim, V = c->vocab_size, tied = c->tie_embeddings;
    LOP_TRY(ensure_bwd(t));
    bwd_ctx b = {t, sink, LOP_OK};
    int want_emb = wants(&b, -1, LOP_GF_TOK_EMB), want_head = !tied && wants(&b, -1, LOP_GF_LM_HEAD);
    lop_status st = LOP_OK;
    if ((want_emb || want_head) && !t->dvocab) t->dvocab = dalloc<float>(t, (size_t)V * D, "embedding gradient", &st);
    LOP_TRY(st);
    if (want_emb || want_head) cudaMemsetAsync(t->dvocab, 0, (size_t)V * D * sizeof(float), 0);
    int64_t acc_len = lop_wgrad_acc_len(t->m);
    if (sink && sink->wgrad) cudaMemsetAsync(t->dacc, 0, (size_t)acc_len * sizeof(double), 0);

    /* forward, keeping activations */
    float *x = t->x_final;
    LOP_TRY(put(t->tok, tokens, (size_t)n * sizeof(int32_t)));
    kt_gather(x, t->emb, t->tok, n, D);
    for (int l = 0; l < c->n_layers; l++) {
        const cu_saved *sv = &t->saved[(size_t)l];
        if (!(skip[l] & LOP_SKIP_ATTN)) LOP_TRY(module_fwd(t, l, LOP_SKIP_ATTN, x, n_seq, seq_len, sv));
        if (!(skip[l] & LOP_SKIP_FFN)) LOP_TRY(module_fwd(t, l, LOP_SKIP_FFN, x, n_seq, seq_len, sv));
    }

    /* head and final norm */
    float *dvocab_head = (tied ? want_emb : want_head) ? t->dvocab : NULL;
    LOP_TRY(head(t, x, tokens, n_seq, seq_len, first, weight, t->dxb, dvocab_head, nll, n_scored));
    if (want_head) give(&b, -1, LOP_GF_LM_HEAD, t->head, t->dvocab, (int64_t)V * D);
    kt_rmsnorm_bwd(t->dx, t->rinv, x, t->norm, t->dxb, n, D, c->norm_eps, 0);
    if (wants(&b, -1, LOP_GF_OUT_NORM)) give_norm(&b, -1, LOP_GF_OUT_NORM, x, t->dxb, t->norm, n);

    /* layers in reverse */
    for (int l = c->n_layers - 1; l >= 0 && b.st == LOP_OK; l--) {
        if (c->layers[l].ffn_dim && !(skip[l] & LOP_SKIP_FFN)) ffn_bwd(&b, l, n);
        if (c->layers[l].n_heads && !(skip[l] & LOP_SKIP_ATTN)) LOP_TRY(attn_bwd(&b, l, n_seq, seq_len));
    }
    LOP_TRY(b.st);

    /* embedding gather: rows of dE receive the residual gradient of their tokens */
    if (want_emb) {
        if (!tied) cudaMemsetAsync(t->dvocab, 0, (size_t)V * D * sizeof(float), 0);
        kt_embed_bwd(t->dvocab, t->dx, t->tok, n, D);
        give(&b, -1, LOP_GF_TOK_EMB, t->emb, t->dvocab, (int64_t)V * D);
        LOP_TRY(b.st);
    }
    if (sink && sink->wgrad) {
        std::vector<double> acc((size_t)acc_len);
        LOP_TRY(get(acc.data(), t->dacc, (size_t)acc_len * sizeof(double)));
        for (int64_t i = 0; i < acc_len; i++) sink->wgrad->acc[i] += acc[(size_t)i];
    }
    return sync_check(t, "backward");
}
