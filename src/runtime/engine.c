/* lop_engine_create / free: picks the backend for the requested device. */
#include "runtime/engine.h"

#include <stdlib.h>

#include "core/status.h"

lop_status lop_engine_create(lop_model *m, const lop_engine_opts *o, lop_engine **out) {
    *out = NULL;
    lop_engine_opts def = {0};
    if (!o) o = &def;
    const lop_backend_ops *ops = NULL;
    switch (o->device) {
    case LOP_DEVICE_CPU: ops = &lop_cpu_backend; break;
    case LOP_DEVICE_CUDA:
        return lop_fail(LOP_ERR_UNSUPPORTED, "the CUDA backend is not part of this build yet; use --device cpu");
    default: return lop_fail(LOP_ERR_ARG, "unknown device %d", (int)o->device);
    }
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

int64_t lop_engine_decode_bytes(const lop_engine *e, int n_seq, int ctx) {
    const lop_model *m = e->m;
    const lop_config *c = &m->cfg;
    int64_t wbytes = 4; /* the CPU backend computes from fp32 weights */
    int64_t params = lop_model_n_params(m), emb = (int64_t)c->vocab_size * c->dim;
    int64_t b = (params - (c->tie_embeddings ? 0 : emb)) * wbytes + (int64_t)n_seq * c->dim * wbytes;
    for (int i = 0; i < c->n_layers; i++)
        b += 2LL * c->layers[i].n_kv_heads * c->layers[i].head_dim * 4 /* fp32 cache */ * ctx * n_seq;
    return b;
}
