/* Test support: the tiny model families of the trainer tests (train_families.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/half.h"
#include "model/synth.h"
#include "train_families.h"

const train_family TRAIN_FAMILIES[] = {
    {"mha_all_biases", 37, 16, 2, 0, {{4, 4, 4, 24, 1, 1, 1}, {4, 4, 4, 24, 1, 1, 1}}, 0, 1},
    {"gqa_tied", 41, 16, 2, 1, {{4, 2, 8, 20, 0, 0, 0}, {4, 1, 4, 12, 0, 1, 0}}, 0, 0},
    {"hetero", 33, 12, 4, 0, {{3, 1, 4, 16, 1, 0, 0}, {0, 0, 4, 20, 0, 1, 0}, {2, 2, 6, 0, 0, 0, 0},
                              {2, 1, 4, 8, 0, 0, 0}}, 0, 0},
    {"llama3_rope", 29, 16, 2, 1, {{2, 1, 8, 16, 0, 0, 0}, {2, 2, 8, 16, 0, 0, 0}}, 1, 0},
};
const int N_TRAIN_FAMILIES = (int)(sizeof TRAIN_FAMILIES / sizeof TRAIN_FAMILIES[0]);

lop_model *train_family_make(const train_family *f, uint64_t seed) {
    lop_model *m = tiny_model(f->vocab, f->dim, f->n_layers, f->layers, f->tie, seed);
    assert_non_null(m);
    for (int l = 0; f->gate_up_bias && l < m->cfg.n_layers; l++) { /* tiny_model has no gate/up biases */
        lop_tensor *b[2] = {&m->w.layers[l].b_gate, &m->w.layers[l].b_up};
        int F = m->cfg.layers[l].ffn_dim;
        for (int k = 0; k < 2; k++) {
            float *d = lop_model_malloc(m, (size_t)F * sizeof(float), "bias");
            for (int i = 0; i < F; i++) d[i] = lop_synth_value(seed, 500 + l * 2 + k, i, 0.2f);
            *b[k] = (lop_tensor){LOP_F32, 1, {F, 1}, d, 1};
        }
    }
    if (f->llama3) m->cfg.rope_scaling = (lop_rope_scaling){LOP_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
    m->cfg.rope_theta = f->llama3 ? 500000.0f : 10000.0f;
    return m;
}

void train_tokens(int32_t *tok, int n, int vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(lop_splitmix64(seed + (uint64_t)i) % (uint64_t)vocab);
}

int train_all_params(const lop_model *m, lop_param_id *ids) {
    int n = 0;
    for (int g = 0; g < LOP_GF_COUNT; g++) {
        if (g == LOP_GF_LM_HEAD && m->cfg.tie_embeddings) continue;
        ids[n++] = (lop_param_id){-1, g};
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int f = 0; f < LOP_LF_COUNT; f++)
            if (lop_layer_tensor_c(&m->w.layers[l], f)->present) ids[n++] = (lop_param_id){l, f};
    return n;
}

void train_bf16_weights(lop_model *m, int store16) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int f = 0; f < LOP_LF_COUNT; f++) {
            lop_tensor *t = lop_layer_tensor(&m->w.layers[l], f);
            if (!t->present || t->dtype != LOP_F32) continue;
            int64_t n = lop_tensor_numel(t);
            float *d = t->data;
            uint16_t *h = store16 ? lop_model_malloc(m, (size_t)n * 2, "bf16 weights") : NULL;
            assert_true(!store16 || h);
            for (int64_t i = 0; i < n; i++) {
                uint16_t b = lop_f32_to_bf16(d[i]);
                if (h) h[i] = b;
                else d[i] = lop_bf16_to_f32(b);
            }
            if (h) t->data = h, t->dtype = LOP_BF16;
        }
}
