/* lop_engine_create / free: picks the backend for the requested device; the memory plan. */
#include "runtime/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static lop_status pick(const lop_engine_opts *o, const lop_backend_ops **ops) {
    switch (o->device) {
    case LOP_DEVICE_CPU: *ops = &lop_cpu_backend; return LOP_OK;
    case LOP_DEVICE_CUDA:
#ifdef LOP_HAVE_CUDA
        *ops = &lop_cuda_backend;
        return LOP_OK;
#else
        return lop_fail(LOP_ERR_UNSUPPORTED, "this build of lop has no CUDA backend (nvcc was not found at build time); use --device cpu");
#endif
    default: return lop_fail(LOP_ERR_ARG, "unknown device %d", (int)o->device);
    }
}

lop_status lop_engine_create(lop_model *m, const lop_engine_opts *o, lop_engine **out) {
    *out = NULL;
    lop_engine_opts def = {0};
    if (!o) o = &def;
    const lop_backend_ops *ops = NULL;
    LOP_TRY(pick(o, &ops));
    lop_engine *e = calloc(1, sizeof *e);
    if (!e) return lop_fail(LOP_ERR_OOM, "out of memory");
    e->m = m;
    e->ops = ops;
    e->opts = *o;
    lop_status st = ops->create(m, o, &e->be);
    if (st != LOP_OK) {
        free(e);
        return st;
    }
    *out = e;
    return LOP_OK;
}

void lop_engine_free(lop_engine *e) {
    if (!e) return;
    e->ops->destroy(e->be);
    free(e);
}

/* CPU: fp32 copies of the weights, fp32 KV cache, the activation buffers of cpu_backend.c */
static lop_status cpu_plan(lop_model *m, const lop_engine_opts *o, lop_mem_plan *p) {
    const lop_config *c = &m->cfg;
    int slots = o->max_batch > 0 ? o->max_batch : 1;
    int seq = o->max_seq_len > 0 ? o->max_seq_len : (c->max_seq_len < 4096 ? c->max_seq_len : 4096);
    int64_t kv = 0, qd = 0, kvd = 0, f = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const lop_layer_shape *s = &c->layers[i];
        kv += 2LL * s->n_kv_heads * s->head_dim;
        if ((int64_t)s->n_heads * s->head_dim > qd) qd = (int64_t)s->n_heads * s->head_dim;
        if ((int64_t)s->n_kv_heads * s->head_dim > kvd) kvd = (int64_t)s->n_kv_heads * s->head_dim;
        if (s->ffn_dim > f) f = s->ffn_dim;
    }
    p->weight_bytes = lop_model_n_params(m) * 4;
    p->kv_bytes = kv * 4 * slots * seq;
    int64_t cap = (int64_t)slots * seq;
    p->tok_cap = (int)cap;
    p->act_bytes = cap * 4 * (2LL * c->dim + 2 * qd + 2 * kvd + 2 * f) + (int64_t)slots * c->vocab_size * 4;
    p->workspace_bytes = 0;
    p->total_bytes = p->weight_bytes + p->kv_bytes + p->act_bytes;
    p->device_free = p->device_total = -1;
    p->fits = -1;
    snprintf(p->device, sizeof p->device, "cpu");
    return LOP_OK;
}

lop_status lop_engine_plan(lop_model *m, const lop_engine_opts *o, lop_mem_plan *plan) {
    memset(plan, 0, sizeof *plan);
    lop_engine_opts def = {0};
    if (!o) o = &def;
    const lop_backend_ops *ops = NULL;
    LOP_TRY(pick(o, &ops));
    if (ops->plan) return ops->plan(m, o, plan);
    return cpu_plan(m, o, plan);
}

int64_t lop_engine_decode_bytes(const lop_engine *e, int n_seq, int ctx) {
    const lop_model *m = e->m;
    const lop_config *c = &m->cfg;
    int64_t wbytes = e->ops->weight_bytes, kvbytes = e->ops->kv_bytes;
    int64_t params = lop_model_n_params(m), emb = (int64_t)c->vocab_size * c->dim;
    int64_t b = (params - (c->tie_embeddings ? 0 : emb)) * wbytes + (int64_t)n_seq * c->dim * wbytes;
    for (int i = 0; i < c->n_layers; i++)
        b += 2LL * c->layers[i].n_kv_heads * c->layers[i].head_dim * kvbytes * ctx * n_seq;
    return b;
}
