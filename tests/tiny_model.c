/* Builds tiny models for tests; see tiny_model.h. */
#include "tiny_model.h"

#include <stdlib.h>

#include "model/synth.h"

static void mk(lop_model *m, lop_tensor *t, int64_t d0, int64_t d1, uint64_t seed, uint32_t id, int ones) {
    int64_t n = d0 * (d1 ? d1 : 1);
    float *d = lop_model_malloc(m, (size_t)n * sizeof(float), "tiny");
    for (int64_t i = 0; i < n; i++) d[i] = ones ? 1.0f + lop_synth_value(seed, id, (uint64_t)i, 0.1f)
                                                : lop_synth_value(seed, id, (uint64_t)i, 0.2f);
    *t = (lop_tensor){LOP_F32, d1 ? 2 : 1, {d0, d1 ? d1 : 1}, d, 1};
}

lop_model *tiny_model(int vocab, int dim, int n_layers, const tiny_layer *ls, int tie, uint64_t seed) {
    lop_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->source = calloc(1, 8);
    m->format = calloc(1, 8);
    if (lop_model_alloc_layers(m, n_layers) != LOP_OK) return NULL;
    lop_config *c = &m->cfg;
    c->dim = dim;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.f;
    c->max_seq_len = 256;
    c->tie_embeddings = tie;
    c->bos_id = 1;
    c->eos_id = 2;
    uint32_t id = 0;
    mk(m, &m->w.tok_emb, vocab, dim, seed, id++, 0);
    mk(m, &m->w.out_norm, dim, 0, seed, id++, 1);
    if (!tie) mk(m, &m->w.lm_head, vocab, dim, seed, id++, 0);
    for (int i = 0; i < n_layers; i++) {
        const tiny_layer *s = &ls[i];
        lop_layer_weights *L = &m->w.layers[i];
        c->layers[i].head_dim = s->hd;
        if (s->heads) {
            int q = s->heads * s->hd, kv = s->kv * s->hd;
            mk(m, &L->attn_norm, dim, 0, seed, id++, 1);
            mk(m, &L->wq, q, dim, seed, id++, 0);
            mk(m, &L->wk, kv, dim, seed, id++, 0);
            mk(m, &L->wv, kv, dim, seed, id++, 0);
            mk(m, &L->wo, dim, q, seed, id++, 0);
            if (s->bias_qkv) {
                mk(m, &L->bq, q, 0, seed, id++, 0);
                mk(m, &L->bk, kv, 0, seed, id++, 0);
                mk(m, &L->bv, kv, 0, seed, id++, 0);
            }
            if (s->bias_o) mk(m, &L->bo, dim, 0, seed, id++, 0);
        }
        if (s->ffn) {
            mk(m, &L->ffn_norm, dim, 0, seed, id++, 1);
            mk(m, &L->w_gate, s->ffn, dim, seed, id++, 0);
            mk(m, &L->w_up, s->ffn, dim, seed, id++, 0);
            mk(m, &L->w_down, dim, s->ffn, seed, id++, 0);
            if (s->bias_down) mk(m, &L->b_down, dim, 0, seed, id++, 0);
        }
    }
    if (lop_model_derive_shapes(m, "tiny") != LOP_OK) {
        lop_model_free(m);
        return NULL;
    }
    m->weights_loaded = 1;
    return m;
}
