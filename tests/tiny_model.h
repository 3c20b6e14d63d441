/* Test support: tiny in-memory models with random weights and arbitrary per-layer shapes, so CPU
 * tests of the forward pass and generation need no files. */
#ifndef LOP_TESTS_TINY_MODEL_H
#define LOP_TESTS_TINY_MODEL_H
#include "model/model.h"

typedef struct tiny_layer {
    int heads, kv, hd, ffn; /* heads 0 = no attention, ffn 0 = no FFN */
    int bias_o, bias_down, bias_qkv;
} tiny_layer;

/* vocab, dim, n layers with the given shapes; weights uniform with std 0.2 (seeded). */
lop_model *tiny_model(int vocab, int dim, int n_layers, const tiny_layer *layers, int tie, uint64_t seed);
#endif
