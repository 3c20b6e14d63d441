/* The CUDA backend: the lop_backend vtable on one GPU.
 * Why this shape: weights live on the device as fp16 (or bf16) rows padded to 8 elements, with
 * q|k|v and gate|up concatenated so each is one matrix product; the residual stream stays fp32;
 * the KV cache is fp16. A forward pass is the same kernel sequence for prefill and decode; only
 * the matrix products (hand GEMV up to 8 tokens, cuBLASLt above) and the attention kernel
 * (decode: one query per sequence; prefill: tiles of queries) change with the batch's shape.
 * Generation (decode op) keeps logits, sampling, tokens and positions on the device and replays
 * one CUDA graph per step, so batch-1 decode has no host round trip per token. Every device
 * allocation goes through one list: the memory plan walks the same list without allocating
 * (prediction and reality cannot drift apart), and any failure frees all of it. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/log.h"
#include "core/status.h"
#include "core/timer.h"
#include "model/synth.h"
#include "runtime/backend.h"
#include "runtime/cpu/ops.h"
}
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/cu_gemm.cuh"
#include "runtime/cuda/cuda_api.h"
#include "runtime/cuda/kernels.cuh"
#include "runtime/cuda/timeline_host.h"

#define DEC_WINDOW 8                      /* decode steps the host may queue ahead of the device */
#define LT_WORKSPACE (32u << 20)          /* cuBLASLt workspace */
#define STAGING_BYTES ((size_t)64 << 20) /* host -> device weight upload buffer */

/* ---- errors -------------------------------------------------------------------------------- */
static lop_status cuda_fail(cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear a non-sticky error so the process can go on */
    if (e == cudaErrorMemoryAllocation) return lop_fail(LOP_ERR_OOM, "CUDA out of memory (%s)", what);
    return lop_fail(LOP_ERR_DEVICE, "CUDA error: %s (%s)", cudaGetErrorString(e), what);
}
#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t _e = (call);                                                                   \
        if (_e != cudaSuccess) return cuda_fail(_e, #call);                                        \
    } while (0)

extern "C" int lop_cuda_device_count(const char **reason) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (reason) *reason = cudaGetErrorString(e);
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && reason) *reason = "no CUDA device";
    return n;
}

extern "C" lop_status lop_cuda_pci_bus_id(char *buf, int n) {
    CK(cudaDeviceGetPCIBusId(buf, n, 0));
    return LOP_OK;
}

extern "C" lop_status lop_cuda_mem_info(int64_t *free_b, int64_t *total_b) {
    size_t f = 0, t = 0;
    CK(cudaMemGetInfo(&f, &t));
    *free_b = (int64_t)f;
    *total_b = (int64_t)t;
    return LOP_OK;
}

/* ---- the backend ----------------------------------------------------------------------------- */
typedef struct cu_layer {
    int nh, nkv, hd, f, qd, kvd, qkv_rows;
    void *wqkv, *wo, *wgu, *wd;
    float *bqkv, *bo, *bgu, *bd, *attn_norm, *ffn_norm, *inv_freq;
    __half *kc, *vc;
} cu_layer;

enum { CAT_W, CAT_KV, CAT_ACT, CAT_WS, N_CAT };

/* LOP_CUDA_TRACE=1: device time per phase of non-graph forward passes (events between phases),
 * printed when the engine is freed. A diagnostic: events between kernels cost a little time. */
enum { PH_NONE, PH_EMBED, PH_NORM, PH_QKV, PH_ROPE, PH_ATTN, PH_O, PH_GATEUP, PH_DOWN, PH_HEAD, PH_SAMPLE, N_PH };
static const char *const PH_NAMES[N_PH] = {"-", "embed", "rmsnorm", "qkv", "rope", "attention", "o_proj",
                                            "gate_up+swiglu", "down", "head", "sample"};
#define TRACE_EV 4096

/* LOP_CUDA_HIST_MAPPED: the sampler writes each step's tokens straight into the host's pinned
 * buffer (mapped memory) instead of a device buffer copied back after every graph replay, which
 * put a copy-engine operation between one decode step and the next (default 1; 0: the copy).
 * 7B batch 1 on the H200: 269.5 tok/s against 269.1 with the copy, within the rounds' spread
 * (bench/cuda/NOTES.md 26) */
static int hist_mapped_on(void) {
    static int on = -1;
    if (on < 0) on = lop_env_int("LOP_CUDA_HIST_MAPPED", 1) != 0;
    return on;
}

struct lop_backend {
    lop_model *m;
    lop_dtype dt;
    int n_slots, max_seq, tok_cap, logits_cap, dim, ld_dim, V, n_sm, no_graphs;
    int ld_big, qd_max, ld_att, ld_h, nh_max, hd_max;
    int64_t part_floats;
    float eps;
    char dev_name[96];
    cu_layer *L;
    void *emb, *head;
    float *out_norm;
    float *x, *big, *q, *part, *logits;
    void *xb, *att, *h, *staging;
    int32_t *d_tok, *d_seq, *d_pos, *d_rows, *d_tiles, *d_step, *d_hist;
    int *d_counters; /* split-attention combine counters, kept zero between launches */
    uint64_t *d_rng;
    int32_t *h_hist, *h_tiles, *h_rows; /* h_hist pinned [max_seq][n_slots] */
    int hist_mapped;                    /* d_hist is h_hist mapped: no copy a step (hist_mapped_on) */
    /* scoring (forward_logprob): targets and results of one group of logits_cap rows */
    int32_t *d_tgt, *h_tgt;
    double *d_lp, *h_lp;
    int *d_am, *h_am;
    void *lt_ws;
    cu_gemm gemm;
    int gemm_ok;
    cudaStream_t stream;
    cudaEvent_t ev[DEC_WINDOW];
    int n_ev;
    cudaGraphExec_t gexec;
    int g_n;
    k_sample_params g_p;
    /* trace */
    int trace, n_tr, capturing, tr_skip;
    cudaEvent_t tr_ev[TRACE_EV];
    int tr_ph[TRACE_EV];
    double tr_ms[N_PH];
    /* allocation list (device) */
    void **allocs;
    int n_allocs, cap_allocs;
    /* layout pass */
    int plan_only;
    int64_t cat[N_CAT];
    lop_status ast;
};

static int64_t round_alloc(int64_t b) {
    return b >= (1 << 20) ? (b + (2 << 20) - 1) / (2 << 20) * (2 << 20) : (b + 511) / 512 * 512;
}

/* One device allocation of the layout (or, in plan mode, its size only). */
static void *A(lop_backend *be, size_t bytes, int cat, const char *what) {
    if (be->ast != LOP_OK) return NULL;
    if (bytes == 0) bytes = 16;
    be->cat[cat] += round_alloc((int64_t)bytes);
    if (be->plan_only) return (void *)16; /* never dereferenced */
    if (be->n_allocs == be->cap_allocs) {
        int c = be->cap_allocs ? 2 * be->cap_allocs : 256;
        void **a = (void **)realloc(be->allocs, (size_t)c * sizeof *a);
        if (!a) {
            be->ast = lop_fail(LOP_ERR_OOM, "out of memory (host)");
            return NULL;
        }
        be->allocs = a;
        be->cap_allocs = c;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        be->ast = e == cudaErrorMemoryAllocation
                      ? lop_fail(LOP_ERR_OOM, "CUDA out of memory: %.2f GiB for %s", bytes / 1073741824.0, what)
                      : lop_fail(LOP_ERR_DEVICE, "cudaMalloc (%s): %s", what, cudaGetErrorString(e));
        return NULL;
    }
    be->allocs[be->n_allocs++] = p;
    return p;
}

static void trace_mark(lop_backend *be, int next) {
    if (!be->trace || be->capturing || be->n_tr >= TRACE_EV) return;
    cudaEventRecord(be->tr_ev[be->n_tr], be->stream);
    be->tr_ph[be->n_tr++] = next;
}
#define TRACE(be, from, to) trace_mark(be, to)

/* after a stream sync: add the time between consecutive marks to the phase they opened */
static void trace_collect(lop_backend *be) {
    if (!be->trace) return;
    if (be->tr_skip-- > 0) { /* the first pass pays one-time costs (module loading, GEMM tuning) */
        be->n_tr = 0;
        return;
    }
    for (int i = 0; i + 1 < be->n_tr; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, be->tr_ev[i], be->tr_ev[i + 1]) == cudaSuccess) be->tr_ms[be->tr_ph[i]] += ms;
    }
    cudaGetLastError();
    be->n_tr = 0;
}

static void cu_destroy(lop_backend *be) {
    if (!be) return;
    if (be->stream) cudaStreamSynchronize(be->stream);
    if (be->trace) {
        trace_collect(be);
        double tot = 0;
        for (int i = 1; i < N_PH; i++) tot += be->tr_ms[i];
        fprintf(stderr, "cuda trace (device ms, non-graph passes after the first):");
        for (int i = 1; i < N_PH; i++)
            if (be->tr_ms[i] > 0) fprintf(stderr, " %s %.2f (%.0f%%)", PH_NAMES[i], be->tr_ms[i], 100 * be->tr_ms[i] / tot);
        fprintf(stderr, "\n");
        for (int i = 0; i < TRACE_EV; i++) cudaEventDestroy(be->tr_ev[i]);
    }
    if (be->gexec) cudaGraphExecDestroy(be->gexec);
    if (be->gemm_ok) cu_gemm_free(&be->gemm);
    for (int i = 0; i < be->n_ev; i++) cudaEventDestroy(be->ev[i]);
    for (int i = 0; i < be->n_allocs; i++) cudaFree(be->allocs[i]);
    if (be->h_hist) cudaFreeHost(be->h_hist);
    if (be->stream) cudaStreamDestroy(be->stream);
    cudaGetLastError();
    free(be->allocs);
    free(be->L);
    free(be->h_tiles);
    free(be->h_rows);
    free(be->h_tgt);
    free(be->h_am);
    free(be->h_lp);
    free(be);
}

/* Shapes and buffer widths from the model and options (no device work). */
static lop_status init_dims(lop_backend *be, lop_model *m, const lop_engine_opts *o) {
    const lop_config *c = &m->cfg;
    be->m = m;
    be->dt = o->weight_dtype == LOP_WEIGHTS_BF16 ? LOP_BF16 : LOP_F16;
    be->n_slots = o->max_batch > 0 ? o->max_batch : 1;
    be->max_seq = o->max_seq_len > 0 ? o->max_seq_len : (c->max_seq_len < 4096 ? c->max_seq_len : 4096);
    be->no_graphs = o->no_graphs;
    be->dim = c->dim;
    be->ld_dim = lop_pad8(c->dim);
    be->V = c->vocab_size;
    be->eps = c->norm_eps;
    int chunk = o->prefill_chunk > 0 ? o->prefill_chunk : 2048;
    int64_t most = (int64_t)be->n_slots * be->max_seq;
    be->tok_cap = (int)(chunk < most ? chunk : most);
    if (be->tok_cap < be->n_slots) be->tok_cap = be->n_slots;
    be->logits_cap = be->tok_cap < 64 ? be->tok_cap : 64;
    if (be->logits_cap < be->n_slots) be->logits_cap = be->n_slots;
    int ld_qkv = 8, ld_gu = 8;
    be->qd_max = be->ld_att = be->ld_h = 8;
    be->nh_max = be->hd_max = 1;
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i];
        if (s->n_heads) {
            if (s->head_dim % 2 || s->head_dim > 256 || s->head_dim < 2)
                return lop_fail(LOP_ERR_UNSUPPORTED, "%s: layer %d: head_dim %d (the CUDA backend needs an even head_dim <= 256)",
                                m->source, i, s->head_dim);
            if (s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads)
                return lop_fail(LOP_ERR_FORMAT, "%s: layer %d: %d heads not a multiple of %d kv heads", m->source, i,
                                s->n_heads, s->n_kv_heads);
            int qd = s->n_heads * s->head_dim, kvd = s->n_kv_heads * s->head_dim;
            if (lop_pad8(qd + 2 * kvd) > ld_qkv) ld_qkv = lop_pad8(qd + 2 * kvd);
            if (qd > be->qd_max) be->qd_max = qd;
            if (lop_pad8(qd) > be->ld_att) be->ld_att = lop_pad8(qd);
            if (s->n_heads > be->nh_max) be->nh_max = s->n_heads;
            if (s->head_dim > be->hd_max) be->hd_max = s->head_dim;
        }
        if (s->ffn_dim) {
            if (lop_pad8(2 * s->ffn_dim) > ld_gu) ld_gu = lop_pad8(2 * s->ffn_dim);
            if (lop_pad8(s->ffn_dim) > be->ld_h) be->ld_h = lop_pad8(s->ffn_dim);
        }
    }
    be->ld_big = ld_qkv > ld_gu ? ld_qkv : ld_gu;
    int n_sm = 132;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
        n_sm = prop.multiProcessorCount;
        snprintf(be->dev_name, sizeof be->dev_name, "%.95s", prop.name);
    }
    cudaGetLastError();
    be->n_sm = n_sm;
    be->part_floats = 3LL * n_sm * be->nh_max * (be->hd_max + 2);
    return LOP_OK;
}

static int has_bias(const lop_tensor *a, const lop_tensor *b, const lop_tensor *c) {
    return a->present || (b && b->present) || (c && c->present);
}

/* Every device buffer, in one pass (allocating, or only counting in plan mode). */
static void layout(lop_backend *be) {
    const lop_model *m = be->m;
    const lop_config *c = &m->cfg;
    size_t es = 2, T = (size_t)be->tok_cap;
    be->emb = A(be, (size_t)be->V * be->ld_dim * es, CAT_W, "embeddings");
    be->head = c->tie_embeddings ? be->emb : A(be, (size_t)be->V * be->ld_dim * es, CAT_W, "lm_head");
    be->out_norm = (float *)A(be, (size_t)be->dim * 4, CAT_W, "norm");
    for (int i = 0; i < c->n_layers && be->ast == LOP_OK; i++) {
        const lop_layer_shape *s = &c->layers[i];
        const lop_layer_weights *w = &m->w.layers[i];
        cu_layer *L = &be->L[i];
        L->nh = s->n_heads, L->nkv = s->n_kv_heads, L->hd = s->head_dim, L->f = s->ffn_dim;
        L->qd = L->nh * L->hd, L->kvd = L->nkv * L->hd, L->qkv_rows = L->qd + 2 * L->kvd;
        if (L->nh) {
            L->attn_norm = (float *)A(be, (size_t)be->dim * 4, CAT_W, "attention norm");
            L->wqkv = A(be, (size_t)L->qkv_rows * be->ld_dim * es, CAT_W, "q/k/v weights");
            L->wo = A(be, (size_t)be->dim * lop_pad8(L->qd) * es, CAT_W, "o weights");
            if (has_bias(&w->bq, &w->bk, &w->bv)) L->bqkv = (float *)A(be, (size_t)L->qkv_rows * 4, CAT_W, "q/k/v bias");
            if (w->bo.present) L->bo = (float *)A(be, (size_t)be->dim * 4, CAT_W, "o bias");
            L->inv_freq = (float *)A(be, (size_t)L->hd / 2 * 4, CAT_W, "rope");
            size_t kv = (size_t)be->n_slots * L->nkv * be->max_seq * L->hd * 2;
            L->kc = (__half *)A(be, kv, CAT_KV, "K cache");
            L->vc = (__half *)A(be, kv, CAT_KV, "V cache");
        }
        if (L->f) {
            L->ffn_norm = (float *)A(be, (size_t)be->dim * 4, CAT_W, "ffn norm");
            L->wgu = A(be, (size_t)2 * L->f * be->ld_dim * es, CAT_W, "gate/up weights");
            L->wd = A(be, (size_t)be->dim * lop_pad8(L->f) * es, CAT_W, "down weights");
            if (has_bias(&w->b_gate, &w->b_up, NULL)) L->bgu = (float *)A(be, (size_t)2 * L->f * 4, CAT_W, "gate/up bias");
            if (w->b_down.present) L->bd = (float *)A(be, (size_t)be->dim * 4, CAT_W, "down bias");
        }
    }
    be->x = (float *)A(be, T * be->dim * 4, CAT_ACT, "activations");
    be->xb = A(be, T * be->ld_dim * es, CAT_ACT, "activations");
    be->big = (float *)A(be, T * be->ld_big * 4, CAT_ACT, "activations");
    be->q = (float *)A(be, T * be->qd_max * 4, CAT_ACT, "activations");
    be->att = A(be, T * be->ld_att * es, CAT_ACT, "activations");
    be->h = A(be, T * be->ld_h * es, CAT_ACT, "activations");
    be->part = (float *)A(be, (size_t)be->part_floats * 4, CAT_ACT, "attention splits");
    be->d_counters = (int *)A(be, T * be->nh_max * sizeof(int), CAT_ACT, "attention splits");
    be->logits = (float *)A(be, (size_t)be->logits_cap * be->V * 4, CAT_ACT, "logits");
    be->d_tok = (int32_t *)A(be, T * 4, CAT_ACT, "batch");
    be->d_seq = (int32_t *)A(be, T * 4, CAT_ACT, "batch");
    be->d_pos = (int32_t *)A(be, T * 4, CAT_ACT, "batch");
    be->d_rows = (int32_t *)A(be, T * 4, CAT_ACT, "batch");
    be->d_tgt = (int32_t *)A(be, (size_t)be->logits_cap * 4, CAT_ACT, "batch");
    be->d_am = (int *)A(be, (size_t)be->logits_cap * 4, CAT_ACT, "batch");
    be->d_lp = (double *)A(be, (size_t)be->logits_cap * 8, CAT_ACT, "batch");
    be->d_tiles = (int32_t *)A(be, (T + 1) * 4, CAT_ACT, "batch");
    be->d_step = (int32_t *)A(be, 16, CAT_ACT, "decode state");
    be->d_rng = (uint64_t *)A(be, (size_t)be->n_slots * 8, CAT_ACT, "decode state");
    be->d_hist = (int32_t *)A(be, (size_t)be->n_slots * be->max_seq * 4, CAT_ACT, "decode state");
    be->lt_ws = A(be, LT_WORKSPACE, CAT_WS, "cuBLASLt workspace");
    if (!m->synthetic) be->staging = A(be, STAGING_BYTES, CAT_WS, "upload staging");
}

/* ---- weights ------------------------------------------------------------------------------- */
/* Writes tensor t (rows x cols; 1-D tensors as one row) into dst with row stride ld, as ddt. */
static lop_status put(lop_backend *be, const lop_tensor *t, uint32_t sid, int is_norm, void *dst, lop_dtype ddt,
                      int64_t ld) {
    if (!t->present) return LOP_OK;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (be->m->synthetic) {
        k_synth_fill(dst, ddt, rows, cols, ld, be->m->synth_seed, sid, 0.02f, is_norm, be->stream);
        CK(cudaGetLastError());
        return LOP_OK;
    }
    if (!t->data) return lop_fail(LOP_ERR_ARG, "%s: weights not loaded", be->m->source);
    size_t es = lop_dtype_size(t->dtype), des = ddt == LOP_F32 ? 4 : 2;
    int64_t per = (int64_t)(STAGING_BYTES / ((size_t)cols * es));
    if (per < 1) return lop_fail(LOP_ERR_UNSUPPORTED, "%s: tensor row of %lld elements too long to upload", be->m->source, (long long)cols);
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        CK(cudaMemcpyAsync(be->staging, (const char *)t->data + (size_t)r0 * cols * es, (size_t)nr * cols * es,
                           cudaMemcpyHostToDevice, be->stream));
        k_convert_rows(be->staging, t->dtype, (char *)dst + (size_t)r0 * ld * des, ddt, nr, cols, ld, be->stream);
        CK(cudaGetLastError());
    }
    return LOP_OK;
}

static lop_status upload(lop_backend *be) {
    lop_model *m = be->m;
    const lop_config *c = &m->cfg;
    lop_dtype dt = be->dt;
    size_t es = 2;
    LOP_TRY(put(be, &m->w.tok_emb, 0, 0, be->emb, dt, be->ld_dim));
    LOP_TRY(put(be, &m->w.out_norm, 1, 1, be->out_norm, LOP_F32, be->dim));
    if (!c->tie_embeddings) LOP_TRY(put(be, &m->w.lm_head, 2, 0, be->head, dt, be->ld_dim));
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_weights *w = &m->w.layers[i];
        cu_layer *L = &be->L[i];
        int64_t ld = be->ld_dim;
#define ID(f) LOP_SYNTH_TENSOR_ID(i, f)
        if (L->nh) {
            LOP_TRY(put(be, &w->attn_norm, ID(0), 1, L->attn_norm, LOP_F32, be->dim));
            LOP_TRY(put(be, &w->wq, ID(1), 0, L->wqkv, dt, ld));
            LOP_TRY(put(be, &w->wk, ID(2), 0, (char *)L->wqkv + (size_t)L->qd * ld * es, dt, ld));
            LOP_TRY(put(be, &w->wv, ID(3), 0, (char *)L->wqkv + (size_t)(L->qd + L->kvd) * ld * es, dt, ld));
            LOP_TRY(put(be, &w->wo, ID(4), 0, L->wo, dt, lop_pad8(L->qd)));
            if (L->bqkv) {
                CK(cudaMemsetAsync(L->bqkv, 0, (size_t)L->qkv_rows * 4, be->stream));
                LOP_TRY(put(be, &w->bq, ID(5), 0, L->bqkv, LOP_F32, L->qd));
                LOP_TRY(put(be, &w->bk, ID(6), 0, L->bqkv + L->qd, LOP_F32, L->kvd));
                LOP_TRY(put(be, &w->bv, ID(7), 0, L->bqkv + L->qd + L->kvd, LOP_F32, L->kvd));
            }
            if (L->bo) LOP_TRY(put(be, &w->bo, ID(8), 0, L->bo, LOP_F32, be->dim));
            float *inv = (float *)malloc((size_t)L->hd / 2 * sizeof(float));
            if (!inv) return lop_fail(LOP_ERR_OOM, "out of memory");
            lop_cpu_rope_inv_freq(inv, L->hd, c->rope_theta, &c->rope_scaling);
            cudaError_t e = cudaMemcpy(L->inv_freq, inv, (size_t)L->hd / 2 * sizeof(float), cudaMemcpyHostToDevice);
            free(inv);
            CK(e);
        }
        if (L->f) {
            LOP_TRY(put(be, &w->ffn_norm, ID(9), 1, L->ffn_norm, LOP_F32, be->dim));
            LOP_TRY(put(be, &w->w_gate, ID(10), 0, L->wgu, dt, ld));
            LOP_TRY(put(be, &w->w_up, ID(11), 0, (char *)L->wgu + (size_t)L->f * ld * es, dt, ld));
            LOP_TRY(put(be, &w->w_down, ID(12), 0, L->wd, dt, lop_pad8(L->f)));
            if (L->bgu) {
                CK(cudaMemsetAsync(L->bgu, 0, (size_t)2 * L->f * 4, be->stream));
                LOP_TRY(put(be, &w->b_gate, ID(13), 0, L->bgu, LOP_F32, L->f));
                LOP_TRY(put(be, &w->b_up, ID(14), 0, L->bgu + L->f, LOP_F32, L->f));
            }
            if (L->bd) LOP_TRY(put(be, &w->b_down, ID(15), 0, L->bd, LOP_F32, be->dim));
        }
#undef ID
    }
    CK(cudaStreamSynchronize(be->stream));
    return LOP_OK;
}

/* ---- plan and create ------------------------------------------------------------------------ */
static lop_status plan_for(lop_backend *be, lop_mem_plan *p) {
    memset(p, 0, sizeof *p);
    p->weight_bytes = be->cat[CAT_W];
    p->kv_bytes = be->cat[CAT_KV];
    p->act_bytes = be->cat[CAT_ACT];
    p->workspace_bytes = be->cat[CAT_WS];
    p->total_bytes = p->weight_bytes + p->kv_bytes + p->act_bytes + p->workspace_bytes;
    p->tok_cap = be->tok_cap;
    snprintf(p->device, sizeof p->device, "%s", be->dev_name[0] ? be->dev_name : "cuda");
    int64_t f = 0, t = 0;
    LOP_TRY(lop_cuda_mem_info(&f, &t));
    p->device_free = f;
    p->device_total = t;
    p->fits = p->total_bytes <= f;
    return LOP_OK;
}

static lop_status cu_plan(lop_model *m, const lop_engine_opts *o, lop_mem_plan *p) {
    const char *why = NULL;
    if (lop_cuda_device_count(&why) < 1) return lop_fail(LOP_ERR_DEVICE, "no CUDA device: %s", why ? why : "none found");
    lop_backend *be = (lop_backend *)calloc(1, sizeof *be);
    if (!be) return lop_fail(LOP_ERR_OOM, "out of memory");
    be->L = (cu_layer *)calloc((size_t)m->cfg.n_layers + 1, sizeof *be->L);
    lop_status st = be->L ? init_dims(be, m, o) : lop_fail(LOP_ERR_OOM, "out of memory");
    if (st == LOP_OK) {
        be->plan_only = 1;
        layout(be);
        st = be->ast != LOP_OK ? be->ast : plan_for(be, p);
    }
    free(be->L);
    free(be);
    return st;
}

static lop_status cu_create(lop_model *m, const lop_engine_opts *o, lop_backend **out) {
    *out = NULL;
    const char *why = NULL;
    if (lop_cuda_device_count(&why) < 1) return lop_fail(LOP_ERR_DEVICE, "no CUDA device: %s", why ? why : "none found");
    if (!m->synthetic && !m->weights_loaded)
        return lop_fail(LOP_ERR_ARG, "%s: weights not loaded (opened for shapes only)", m->source);
    lop_backend *be = (lop_backend *)calloc(1, sizeof *be);
    if (!be) return lop_fail(LOP_ERR_OOM, "out of memory");
    lop_status st = LOP_OK;
    be->L = (cu_layer *)calloc((size_t)m->cfg.n_layers + 1, sizeof *be->L);
    if (!be->L) st = lop_fail(LOP_ERR_OOM, "out of memory");
    if (st == LOP_OK) st = init_dims(be, m, o);
    if (st == LOP_OK && !getenv("LOP_CUDA_SKIP_PLAN")) {
        /* predicted peak first: refuse cleanly instead of failing half-way */
        lop_mem_plan p;
        be->plan_only = 1;
        layout(be);
        be->plan_only = 0;
        st = be->ast != LOP_OK ? be->ast : plan_for(be, &p);
        if (st == LOP_OK && !p.fits)
            st = lop_fail(LOP_ERR_OOM,
                          "CUDA out of memory (predicted): %.2f GiB needed (weights %.2f, KV cache %.2f, activations %.2f, "
                          "workspace %.2f), %.2f GiB free on %s",
                          p.total_bytes / 1073741824.0, p.weight_bytes / 1073741824.0, p.kv_bytes / 1073741824.0,
                          p.act_bytes / 1073741824.0, p.workspace_bytes / 1073741824.0, p.device_free / 1073741824.0,
                          p.device);
        memset(be->cat, 0, sizeof be->cat);
        memset(be->L, 0, (size_t)m->cfg.n_layers * sizeof *be->L);
    }
    if (st == LOP_OK) {
        cudaError_t e = cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) st = cuda_fail(e, "stream");
    }
    if (st == LOP_OK) {
        layout(be);
        st = be->ast;
    }
    if (st == LOP_OK) {
        cudaError_t e = cudaMemset(be->d_counters, 0, (size_t)be->tok_cap * be->nh_max * sizeof(int));
        if (e != cudaSuccess) st = cuda_fail(e, "counters");
    }
    if (st == LOP_OK) {
        be->h_tiles = (int32_t *)malloc(((size_t)be->tok_cap + 1) * sizeof(int32_t));
        be->h_rows = (int32_t *)malloc(((size_t)be->tok_cap + 1) * sizeof(int32_t));
        be->h_tgt = (int32_t *)malloc((size_t)be->logits_cap * sizeof(int32_t));
        be->h_am = (int *)malloc((size_t)be->logits_cap * sizeof(int));
        be->h_lp = (double *)malloc((size_t)be->logits_cap * sizeof(double));
        if (!be->h_tiles || !be->h_rows || !be->h_tgt || !be->h_am || !be->h_lp) st = lop_fail(LOP_ERR_OOM, "out of memory");
    }
    if (st == LOP_OK) {
        const size_t bytes = (size_t)be->n_slots * be->max_seq * sizeof(int32_t);
        cudaError_t e = cudaHostAlloc((void **)&be->h_hist, bytes, hist_mapped_on() ? cudaHostAllocMapped : 0);
        if (e != cudaSuccess) {
            be->h_hist = NULL;
            st = cuda_fail(e, "pinned token buffer");
        } else if (hist_mapped_on()) {
            int32_t *dp = NULL;
            if (cudaHostGetDevicePointer((void **)&dp, be->h_hist, 0) == cudaSuccess && dp) {
                be->d_hist = dp; /* the device buffer the planner counted stays unused */
                be->hist_mapped = 1;
            }
            cudaGetLastError();
        }
    }
    for (int i = 0; st == LOP_OK && i < DEC_WINDOW; i++) {
        cudaError_t e = cudaEventCreateWithFlags(&be->ev[i], cudaEventDisableTiming);
        if (e != cudaSuccess) st = cuda_fail(e, "event");
        else be->n_ev++;
    }
    if (st == LOP_OK) {
        int rc = cu_gemm_init(&be->gemm, be->lt_ws, LT_WORKSPACE);
        if (rc) {
            cu_gemm_free(&be->gemm);
            st = lop_fail(rc == CUBLAS_STATUS_ALLOC_FAILED ? LOP_ERR_OOM : LOP_ERR_DEVICE, "cuBLASLt init failed (status %d)", rc);
        } else {
            be->gemm_ok = 1;
        }
    }
    if (st == LOP_OK && getenv("LOP_CUDA_TRACE")) {
        for (int i = 0; i < TRACE_EV; i++) cudaEventCreate(&be->tr_ev[i]);
        be->trace = 1;
        be->tr_skip = 1;
    }
    if (st == LOP_OK) lop_tl_init(); /* the device timeline (TIMELINE=1 builds only) */
    if (st == LOP_OK) st = upload(be);
    if (st == LOP_OK && be->staging) {
        /* the upload buffer is not needed any more */
        for (int i = 0; i < be->n_allocs; i++)
            if (be->allocs[i] == be->staging) {
                cudaFree(be->staging);
                be->allocs[i] = be->allocs[--be->n_allocs];
                break;
            }
        be->staging = NULL;
    }
    if (st != LOP_OK) {
        cu_destroy(be);
        return st;
    }
    LOP_DEBUG("cuda: %s, %s weights, %d slots x %d positions, %d tokens per chunk", be->dev_name,
              be->dt == LOP_BF16 ? "bf16" : "fp16", be->n_slots, be->max_seq, be->tok_cap);
    *out = be;
    return LOP_OK;
}

/* ---- forward ------------------------------------------------------------------------------- */
/* Y = X · W^T at n tokens: hand GEMV for small n, cuBLASLt otherwise. For GEMV_ACC through
 * cuBLASLt the bias is left pending (applied by the next RMSNorm). */
static lop_status mm(lop_backend *be, const void *W, int ldw, int rows, const void *X, int ldx, int n, int mode,
                     float *Y, int ldy, const float *bias, void *H, int ldh, const float **pending) {
    cudaStream_t s = be->stream;
    if (n <= k_gemv_route_batch()) {
        k_gemv(W, ldw, be->dt, rows, X, ldx, n, mode, Y, ldy, bias, H, ldh, NULL, s);
        CK(cudaGetLastError());
        return LOP_OK;
    }
    int rc;
    if (mode == GEMV_SWIGLU) {
        int ld_gu = lop_pad8(rows);
        rc = cu_gemm_run(&be->gemm, be->dt, W, ldw, rows, X, ldx, n, ldw, be->big, ld_gu, 0.0f, s, NULL, 0);
        if (!rc) k_swiglu(be->big, ld_gu, bias, n, rows / 2, H, ldh, be->dt, s);
    } else {
        /* trial runs of an accumulating product go to the free fp32 scratch (big), never into x */
        rc = cu_gemm_run(&be->gemm, be->dt, W, ldw, rows, X, ldx, n, ldw, Y, ldy, mode == GEMV_ACC ? 1.0f : 0.0f, s,
                         Y == be->big ? NULL : be->big, (size_t)be->tok_cap * be->ld_big * sizeof(float));
        if (!rc && mode == GEMV_ACC) *pending = bias;
    }
    if (rc) return lop_fail(LOP_ERR_DEVICE, "cuBLASLt matmul %dx%dx%d failed (status %d)", rows, n, ldw, rc);
    CK(cudaGetLastError());
    return LOP_OK;
}

static int decode_splits(const lop_backend *be, int n, const cu_layer *L) {
    int ns = k_attn_decode_splits(n, L->nkv, be->max_seq, be->n_sm);
    while (ns > 1 && (int64_t)n * L->nh * ns * (L->hd + 2) > be->part_floats) ns--;
    return ns;
}

/* the module's RMSNorm goes into its GEMV's prologue (k_gemv_xnorm) rather than a launch of its own */
static int xnorm_here(const lop_backend *be, int n, const float *pending) {
    return n <= k_gemv_route_batch() && !pending && k_gemv_xnorm_enabled() && k_gemv_xnorm_ok(n, be->dim, be->ld_dim);
}

/* All layers over n tokens whose ids / slots / positions are in d_tok / d_seq / d_pos.
 * decode_mode: one query per token (decode attention); else n_tiles tiles in d_tiles. Returns the
 * bias still pending on the residual stream. */
static lop_status run_layers(lop_backend *be, int n, int decode_mode, int n_tiles, const float **pending) {
    const lop_config *c = &be->m->cfg;
    cudaStream_t s = be->stream;
    *pending = NULL;
    TRACE(be, PH_NONE, PH_EMBED);
    k_embed(be->emb, be->ld_dim, be->dt, be->d_tok, n, be->dim, be->x, s);
    TRACE(be, PH_EMBED, PH_NORM);
    for (int l = 0; l < c->n_layers; l++) {
        const cu_layer *L = &be->L[l];
        if (L->nh) {
            int ld_att = lop_pad8(L->qd);
            const int xn = xnorm_here(be, n, *pending);
            if (!xn) k_rmsnorm(be->x, *pending, L->attn_norm, NULL, n, be->dim, be->eps, be->xb, be->ld_dim, be->dt, s);
            *pending = NULL;
            TRACE(be, PH_NORM, PH_QKV);
            if (n <= k_gemv_route_batch()) {
                /* (RMSNorm,) q/k/v product, bias and RoPE in one pass over the weights */
                k_rope_args ra = {L->bqkv, be->d_seq, be->d_pos, L->inv_freq, L->nh, L->nkv, L->hd, be->max_seq,
                                  be->q, L->kc, L->vc};
                k_xnorm_args xa = {be->x, L->attn_norm, be->eps, be->dim};
                if (xn)
                    k_gemv_xnorm(L->wqkv, be->ld_dim, be->dt, L->qkv_rows, &xa, n, GEMV_ROPE, NULL, 0, NULL, 0, NULL,
                                 &ra, s);
                else
                    k_gemv(L->wqkv, be->ld_dim, be->dt, L->qkv_rows, be->xb, be->ld_dim, n, GEMV_ROPE, NULL, 0, NULL,
                           NULL, 0, &ra, s);
            } else {
                LOP_TRY(mm(be, L->wqkv, be->ld_dim, L->qkv_rows, be->xb, be->ld_dim, n, GEMV_STORE, be->big,
                           lop_pad8(L->qkv_rows), NULL, NULL, 0, pending));
                TRACE(be, PH_QKV, PH_ROPE);
                k_rope_cache(be->big, lop_pad8(L->qkv_rows), L->bqkv, n, be->d_seq, be->d_pos, L->nh, L->nkv, L->hd,
                             L->inv_freq, be->q, L->kc, L->vc, be->max_seq, s);
            }
            TRACE(be, PH_ROPE, PH_ATTN);
            if (decode_mode)
                k_attn_decode(be->q, L->kc, L->vc, be->d_seq, be->d_pos, n, L->nh, L->nkv, L->hd, be->max_seq,
                              be->n_slots, decode_splits(be, n, L), be->part, be->d_counters, be->att, ld_att, be->dt,
                              s);
            else
                k_attn_prefill(be->q, L->kc, L->vc, be->d_seq, be->d_pos, be->d_tiles, n_tiles, n, L->nh, L->nkv, L->hd,
                               be->max_seq, be->att, ld_att, be->dt, 0, s);
            CK(cudaGetLastError());
            TRACE(be, PH_ATTN, PH_O);
            LOP_TRY(mm(be, L->wo, ld_att, be->dim, be->att, ld_att, n, GEMV_ACC, be->x, be->dim, L->bo, NULL, 0, pending));
            TRACE(be, PH_O, PH_NORM);
        }
        if (L->f) {
            const int xn = xnorm_here(be, n, *pending);
            if (!xn) k_rmsnorm(be->x, *pending, L->ffn_norm, NULL, n, be->dim, be->eps, be->xb, be->ld_dim, be->dt, s);
            *pending = NULL;
            TRACE(be, PH_NORM, PH_GATEUP);
            if (xn) {
                k_xnorm_args xa = {be->x, L->ffn_norm, be->eps, be->dim};
                k_gemv_xnorm(L->wgu, be->ld_dim, be->dt, 2 * L->f, &xa, n, GEMV_SWIGLU, NULL, 0, be->h, lop_pad8(L->f),
                             L->bgu, NULL, s);
            } else {
                LOP_TRY(mm(be, L->wgu, be->ld_dim, 2 * L->f, be->xb, be->ld_dim, n, GEMV_SWIGLU, NULL, 0, L->bgu, be->h,
                           lop_pad8(L->f), pending));
            }
            TRACE(be, PH_GATEUP, PH_DOWN);
            LOP_TRY(mm(be, L->wd, lop_pad8(L->f), be->dim, be->h, lop_pad8(L->f), n, GEMV_ACC, be->x, be->dim, L->bd, NULL, 0,
                       pending));
            TRACE(be, PH_DOWN, PH_NORM);
        }
    }
    CK(cudaGetLastError());
    return LOP_OK;
}

/* logits rows [nr][V] at dst for residual rows d_rows (NULL: rows 0..nr-1) */
static lop_status run_head(lop_backend *be, const int32_t *d_rows, int nr, const float *pending, float *dst) {
    TRACE(be, PH_NONE, PH_HEAD);
    if (!d_rows && xnorm_here(be, nr, pending) && k_gemv_xnorm_store_ok(nr)) { /* the RMSNorm in the head's prologue */
        k_xnorm_args xa = {be->x, be->out_norm, be->eps, be->dim};
        k_gemv_xnorm(be->head, be->ld_dim, be->dt, be->V, &xa, nr, GEMV_STORE, dst, be->V, NULL, 0, NULL, NULL,
                     be->stream);
        CK(cudaGetLastError());
        TRACE(be, PH_HEAD, PH_NONE);
        return LOP_OK;
    }
    k_rmsnorm(be->x, pending, be->out_norm, d_rows, nr, be->dim, be->eps, be->xb, be->ld_dim, be->dt, be->stream);
    const float *none = NULL;
    lop_status st = mm(be, be->head, be->ld_dim, be->V, be->xb, be->ld_dim, nr, GEMV_STORE, dst, be->V, NULL, NULL, 0, &none);
    TRACE(be, PH_HEAD, PH_NONE);
    return st;
}

static lop_status check_batch(const lop_backend *be, const lop_batch *b) {
    const lop_config *c = &be->m->cfg;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size)
            return lop_fail(LOP_ERR_ARG, "token id %d out of range (vocab %d)", b->tokens[i], c->vocab_size);
        if (b->seq[i] < 0 || b->seq[i] >= be->n_slots)
            return lop_fail(LOP_ERR_ARG, "sequence slot %d out of range (%d slots)", b->seq[i], be->n_slots);
        if (b->pos[i] < 0 || b->pos[i] >= be->max_seq)
            return lop_fail(LOP_ERR_ARG, "position %d beyond the KV cache length %d", b->pos[i], be->max_seq);
    }
    for (int j = 0; j < b->n_out; j++)
        if (b->out_idx[j] < 0 || b->out_idx[j] >= b->n_tokens)
            return lop_fail(LOP_ERR_ARG, "logit index %d out of range", b->out_idx[j]);
    return LOP_OK;
}

/* what forward_impl returns for each output row instead of its logits (forward_logprob) */
typedef struct score_out {
    const int32_t *target;
    double *lp;
    int *is_argmax;
} score_out;

/* Runs a batch in chunks of tok_cap tokens. Logits go to host (host != NULL, rows in out order), or
 * are reduced on the device to each row's log-probability of its target (sc != NULL), or stay on
 * the device in be->logits rows j (device mode: out_idx must be increasing). */
static lop_status forward_impl(lop_backend *be, const lop_batch *b, float *host, const score_out *sc) {
    LOP_TRY(check_batch(be, b));
    cudaStream_t s = be->stream;
    const int V = be->V;
    for (int c0 = 0; c0 < b->n_tokens; c0 += be->tok_cap) {
        int nc = b->n_tokens - c0 < be->tok_cap ? b->n_tokens - c0 : be->tok_cap;
        CK(cudaMemcpyAsync(be->d_tok, b->tokens + c0, (size_t)nc * 4, cudaMemcpyHostToDevice, s));
        CK(cudaMemcpyAsync(be->d_seq, b->seq + c0, (size_t)nc * 4, cudaMemcpyHostToDevice, s));
        CK(cudaMemcpyAsync(be->d_pos, b->pos + c0, (size_t)nc * 4, cudaMemcpyHostToDevice, s));
        /* tiles: runs of one sequence with increasing positions, at most LOP_ATTN_TILE long */
        int nt = 0;
        for (int i = 0; i < nc; i++) {
            int k = c0 + i;
            if (i == 0 || b->seq[k] != b->seq[k - 1] || b->pos[k] <= b->pos[k - 1] ||
                i - be->h_tiles[nt - 1] >= LOP_ATTN_TILE)
                be->h_tiles[nt++] = i;
        }
        be->h_tiles[nt] = nc;
        int decode_mode = nt == nc;
        if (!decode_mode) CK(cudaMemcpyAsync(be->d_tiles, be->h_tiles, (size_t)(nt + 1) * 4, cudaMemcpyHostToDevice, s));
        const float *pending = NULL;
        LOP_TRY(run_layers(be, nc, decode_mode, nt, &pending));
        /* logits of the outputs that fall in this chunk, in groups of logits_cap rows */
        int j = 0;
        while (j < b->n_out) {
            int nr = 0, j0 = -1;
            for (; j < b->n_out && nr < be->logits_cap; j++) {
                int k = b->out_idx[j];
                if (k < c0 || k >= c0 + nc) continue;
                if (j0 < 0) j0 = j;
                be->h_rows[nr++] = k - c0;
                if (!host && !sc && j != j0 + nr - 1)
                    return lop_fail(LOP_ERR_ARG, "device logits need increasing output indices");
                be->h_tiles[nr - 1] = j; /* destination row (h_tiles is free again) */
            }
            if (nr == 0) break;
            CK(cudaMemcpyAsync(be->d_rows, be->h_rows, (size_t)nr * 4, cudaMemcpyHostToDevice, s));
            float *dst = host || sc ? be->logits : be->logits + (size_t)j0 * V;
            LOP_TRY(run_head(be, be->d_rows, nr, pending, dst));
            if (sc) {
                for (int r = 0; r < nr; r++) be->h_tgt[r] = sc->target[be->h_tiles[r]];
                CK(cudaMemcpyAsync(be->d_tgt, be->h_tgt, (size_t)nr * 4, cudaMemcpyHostToDevice, s));
                k_logprob(be->logits, V, nr, be->d_tgt, be->d_lp, be->d_am, s);
                CK(cudaGetLastError());
                CK(cudaMemcpyAsync(be->h_lp, be->d_lp, (size_t)nr * 8, cudaMemcpyDeviceToHost, s));
                CK(cudaMemcpyAsync(be->h_am, be->d_am, (size_t)nr * 4, cudaMemcpyDeviceToHost, s));
                CK(cudaStreamSynchronize(s));
                for (int r = 0; r < nr; r++) {
                    sc->lp[be->h_tiles[r]] = be->h_lp[r];
                    sc->is_argmax[be->h_tiles[r]] = be->h_am[r];
                }
                trace_collect(be);
            } else if (host) {
                for (int r = 0; r < nr; r++)
                    CK(cudaMemcpyAsync(host + (size_t)be->h_tiles[r] * V, be->logits + (size_t)r * V, (size_t)V * 4,
                                       cudaMemcpyDeviceToHost, s));
                CK(cudaStreamSynchronize(s));
                trace_collect(be);
            }
        }
    }
    CK(cudaStreamSynchronize(s));
    trace_collect(be);
    return LOP_OK;
}

static lop_status cu_forward(lop_backend *be, const lop_batch *b, float *logits) {
    return forward_impl(be, b, logits, NULL);
}

static lop_status cu_forward_logprob(lop_backend *be, const lop_batch *b, const int32_t *target, double *lp,
                                     int *is_argmax) {
    for (int j = 0; j < b->n_out; j++)
        if (target[j] < 0 || target[j] >= be->V)
            return lop_fail(LOP_ERR_ARG, "target token %d out of range (vocab %d)", target[j], be->V);
    score_out sc = {target, lp, is_argmax};
    return forward_impl(be, b, NULL, &sc);
}

/* ---- device-resident generation ------------------------------------------------------------ */
/* One decode step: forward over n_seq tokens (one per slot 0..n-1), sample, advance positions. */
static lop_status enqueue_step(lop_backend *be, int n, k_sample_params sp) {
    const float *pending = NULL;
    LOP_TRY(run_layers(be, n, 1, 0, &pending));
    LOP_TRY(run_head(be, NULL, n, pending, be->logits));
    TRACE(be, PH_NONE, PH_SAMPLE);
    k_sample(be->logits, be->V, n, sp, be->d_rng, be->d_tok, be->d_hist, be->d_pos, be->d_step, be->stream);
    TRACE(be, PH_SAMPLE, PH_NONE);
    CK(cudaGetLastError());
    return LOP_OK;
}

/* an on-by-default switch set to 0 in the environment */
static int env_off(const char *name) {
    const char *v = getenv(name);
    return v && *v && atoi(v) == 0;
}

static lop_status capture(lop_backend *be, int n, k_sample_params sp) {
    if (be->gexec) {
        if (be->g_n == n && !memcmp(&be->g_p, &sp, sizeof sp)) return LOP_OK;
        cudaGraphExecDestroy(be->gexec);
        be->gexec = NULL;
    }
    /* cuBLASLt's algorithm for a shape is chosen by timing candidates the first time lop meets the
     * shape (cu_gemm.cu), which cannot happen inside a capture (it waits for the GPU): products first
     * met there would keep the heuristic's first guess for good, and a decode step's shapes (n rows)
     * are met nowhere else. So the step's forward runs once before the capture: same tokens and
     * positions as the captured step, so its K/V rows are the ones that step writes again, and the
     * logits it overwrites were sampled already. LOP_CUDA_DECODE_TUNE=0 leaves it out. */
    if (n > k_gemv_route_batch() && !env_off("LOP_CUDA_DECODE_TUNE")) {
        const float *pending = NULL;
        be->capturing = 1; /* no trace events for this pass */
        lop_status st = run_layers(be, n, 1, 0, &pending);
        if (st == LOP_OK) st = run_head(be, NULL, n, pending, be->logits);
        be->capturing = 0;
        LOP_TRY(st);
    }
    CK(cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeThreadLocal));
    be->capturing = 1;
    lop_status st = enqueue_step(be, n, sp);
    be->capturing = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(be->stream, &g);
    if (st != LOP_OK) {
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        return st;
    }
    if (e != cudaSuccess) return cuda_fail(e, "graph capture");
    e = cudaGraphInstantiate(&be->gexec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        be->gexec = NULL;
        return cuda_fail(e, "graph instantiate");
    }
    be->g_n = n;
    be->g_p = sp;
    return LOP_OK;
}

static lop_status cu_decode(lop_backend *be, const lop_decode_req *r) {
    const lop_gen_params *p = r->p;
    lop_gen_result *res = r->res;
    const int n = r->n_seq, N = p->max_new_tokens;
    cudaStream_t s = be->stream;
    if (n > be->n_slots) return lop_fail(LOP_ERR_ARG, "batch of %d prompts, engine holds %d sequences", n, be->n_slots);
    for (int q = 0; q < n; q++)
        if (r->prompt_lens[q] + N - 1 > be->max_seq)
            return lop_fail(LOP_ERR_ARG, "position %d beyond the KV cache length %d", r->prompt_lens[q] + N - 2,
                            be->max_seq);
    k_sample_params sp = {p->sampling.temperature, p->sampling.top_k, p->sampling.top_p};
    int *done = (int *)calloc((size_t)n, sizeof(int));
    int32_t *step_tok = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int32_t *pos0 = (int32_t *)malloc((size_t)n * sizeof(int32_t) * 2);
    if (!done || !step_tok || !pos0) {
        free(done);
        free(step_tok);
        free(pos0);
        return lop_fail(LOP_ERR_OOM, "out of memory");
    }
    lop_status st = LOP_OK;
    double t0 = lop_now();
    /* prefill; logits rows 0..n-1 stay on the device */
    st = forward_impl(be, r->prefill, NULL, NULL);
    if (st == LOP_OK) {
        for (int q = 0; q < n; q++) pos0[q] = r->prompt_lens[q], pos0[n + q] = q;
        cudaError_t e = cudaMemcpyAsync(be->d_rng, r->rng_state, (size_t)n * 8, cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) e = cudaMemcpyAsync(be->d_pos, pos0, (size_t)n * 4, cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) e = cudaMemcpyAsync(be->d_seq, pos0 + n, (size_t)n * 4, cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) e = cudaMemsetAsync(be->d_step, 0, 8, s); /* the step and k_sample's counter */
        if (e == cudaSuccess) {
            k_sample(be->logits, be->V, n, sp, be->d_rng, be->d_tok, be->d_hist, NULL, be->d_step, s);
            e = cudaGetLastError();
        }
        if (e == cudaSuccess && !be->hist_mapped)
            e = cudaMemcpyAsync(be->h_hist, be->d_hist, (size_t)n * 4, cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess) e = cudaEventRecord(be->ev[0], s);
        if (e == cudaSuccess) e = cudaEventSynchronize(be->ev[0]);
        if (e != cudaSuccess) st = cuda_fail(e, "prefill sampling");
    }
    res->prefill_s = lop_now() - t0;
    t0 = lop_now();
    int use_graph = !be->no_graphs && N > 1;
    if (st == LOP_OK && use_graph) {
        lop_status gs = capture(be, n, sp);
        if (gs != LOP_OK) {
            LOP_DEBUG("cuda: decode graph not captured (%s); launching kernels directly", lop_last_error());
            use_graph = 0;
        }
    }
    int enq = 1, proc = 0, all_done = 0;
    while (st == LOP_OK && proc < N) {
        while (st == LOP_OK && !all_done && enq < N && enq - proc < DEC_WINDOW) {
            cudaError_t e = cudaSuccess;
            lop_tl_arm(s, enq, N, 1);
            if (use_graph) e = cudaGraphLaunch(be->gexec, s);
            else st = enqueue_step(be, n, sp);
            lop_tl_arm(s, enq, N, 0);
            if (st != LOP_OK) break;
            if (e == cudaSuccess && !be->hist_mapped)
                e = cudaMemcpyAsync(be->h_hist + (size_t)enq * n, be->d_hist + (size_t)enq * n, (size_t)n * 4,
                                    cudaMemcpyDeviceToHost, s);
            if (e == cudaSuccess) e = cudaEventRecord(be->ev[enq % DEC_WINDOW], s);
            if (e != cudaSuccess) st = cuda_fail(e, "decode step");
            enq++;
        }
        if (st != LOP_OK) break;
        cudaError_t e = cudaEventSynchronize(be->ev[proc % DEC_WINDOW]);
        if (e != cudaSuccess) {
            st = cuda_fail(e, "decode step");
            break;
        }
        if (be->trace && !use_graph) {
            cudaStreamSynchronize(s);
            trace_collect(be);
        }
        int running = 0;
        for (int q = 0; q < n; q++) {
            step_tok[q] = -1;
            if (done[q]) continue;
            int t = be->h_hist[(size_t)proc * n + q];
            res->tokens[q][res->n_tokens[q]++] = t;
            step_tok[q] = t;
            if ((!p->ignore_eos && t == r->eos_id) || res->n_tokens[q] >= N) done[q] = 1;
            running += !done[q];
        }
        if (p->on_step) p->on_step(p->user, proc, step_tok, n);
        proc++;
        if (!running) all_done = 1;
        if (all_done) break;
    }
    cudaError_t e = cudaStreamSynchronize(s);
    if (st == LOP_OK && e != cudaSuccess) st = cuda_fail(e, "decode");
    res->decode_s = lop_now() - t0;
    lop_tl_write(s);
    res->n_decode_steps = enq - 1;
    free(done);
    free(step_tok);
    free(pos0);
    return st;
}

extern "C" const lop_backend_ops lop_cuda_backend = {
    "cuda", cu_create, cu_forward, cu_destroy, cu_plan, cu_decode, 2, 2, cu_forward_logprob,
};
