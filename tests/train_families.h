/* Test support: the tiny model families the trainer tests share (test_backward checks the CPU
 * backward on them, test_train_cuda the CUDA trainer against the CPU one): MHA with every bias,
 * tied GQA, per-layer pruned shapes with missing modules, llama3 RoPE scaling. */
#ifndef LOP_TESTS_TRAIN_FAMILIES_H
#define LOP_TESTS_TRAIN_FAMILIES_H
#include <stdint.h>

#include "tiny_model.h"
#include "train/train.h"

typedef struct train_family {
    const char *name;
    int vocab, dim, n_layers, tie;
    tiny_layer layers[4];
    int llama3, gate_up_bias;
} train_family;

extern const train_family TRAIN_FAMILIES[];
extern const int N_TRAIN_FAMILIES;

/* the family's model with weights from seed (asserts on failure) */
lop_model *train_family_make(const train_family *f, uint64_t seed);
/* n token ids in [0, vocab) from seed */
void train_tokens(int32_t *tok, int n, int vocab, uint64_t seed);
/* every present tensor of the model, global ones first; returns the count */
int train_all_params(const lop_model *m, lop_param_id *ids);
/* Rounds every fp32 layer tensor to bf16 values; store16: also stores them as bf16 (so a model with
 * store16 = 0 and one with 1 hold exactly the same numbers in the two storage types). */
void train_bf16_weights(lop_model *m, int store16);
#endif
