/* The CUDA trainer: the same forward and backward as the CPU trainer (train.h), on the GPU, so the
 * pruning criteria that need gradients or many forward passes (Taylor, PPL, BI, LLM-Pruner,
 * Wanda-sp, FLAP) run on a 7B model in seconds. Reached through lop_trainer_* with
 * lop_trainer_opts.device = LOP_DEVICE_CUDA; these entry points are the dispatch targets and take
 * already validated arguments (train/trainer.c checks shapes and token ids first).
 * Memory: fp32 copies of every weight (a 7B model: 27 GB), activations of every layer for the
 * positions of one backward call, one gradient the size of the largest tensor. Gradients reach a
 * sink on the host, except the W * dL/dW sums (Taylor), which are reduced on the device. */
#ifndef LOP_TRAIN_TRAIN_CUDA_H
#define LOP_TRAIN_TRAIN_CUDA_H
#include <stdint.h>

#include "train/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lop_cu_trainer lop_cu_trainer;

lop_status lop_cu_trainer_create(lop_model *m, int max_tokens, int max_bwd_tokens, lop_cu_trainer **out);
void lop_cu_trainer_free(lop_cu_trainer *t);
/* as lop_trainer_embed / _module / _proj_input / _layers / _head_nll / _loss / _backward, with the
 * trainer's skip mask passed in; x are host arrays */
lop_status lop_cu_trainer_embed(lop_cu_trainer *t, const int32_t *tokens, int n, float *x);
lop_status lop_cu_trainer_module(lop_cu_trainer *t, int layer, int module, float *x, int n_seq, int seq_len);
const float *lop_cu_trainer_proj_input(lop_cu_trainer *t, int module);
lop_status lop_cu_trainer_layers(lop_cu_trainer *t, const uint8_t *skip, int l0, int l1, float *x, int n_seq,
                                 int seq_len);
lop_status lop_cu_trainer_head_nll(lop_cu_trainer *t, const float *x, const int32_t *tokens, int n_seq, int seq_len,
                                   int first, double *nll, int64_t *n_scored);
lop_status lop_cu_trainer_loss(lop_cu_trainer *t, const uint8_t *skip, const int32_t *tokens, int n_seq, int seq_len,
                               int first, double *nll, int64_t *n_scored);
lop_status lop_cu_trainer_backward(lop_cu_trainer *t, const uint8_t *skip, const int32_t *tokens, int n_seq,
                                   int seq_len, int first, double weight, const lop_grad_sink *sink, double *nll,
                                   int64_t *n_scored);

#ifdef __cplusplus
}
#endif
#endif
