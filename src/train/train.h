/* Differentiable fp32 CPU forward and backward of the LLaMA forward pass (any per-layer shape,
 * GQA, biases, missing modules, tied or untied head), over whole sequences.
 * Why a separate "trainer" and not the inference backend: training needs every position of a
 * sequence at once, activations kept for the backward, modules that can be skipped (pruning
 * criteria score a model with a block removed without building it), and hidden states you can
 * start from (PPL caches each block's input). Inference needs a KV cache and none of that.
 *
 * Gradients go to a sink, one tensor at a time: the backward forms dL/dW of one tensor in a scratch
 * buffer, hands it to the sink, and reuses the buffer. So a consumer that needs only a reduction
 * (Taylor importance: sum of W * dL/dW per tensor) never holds more than one gradient, and a
 * consumer that needs the gradients themselves (finite-difference tests, LoRA later) keeps them. */
#ifndef LOP_TRAIN_TRAIN_H
#define LOP_TRAIN_TRAIN_H
#include <stdint.h>

#include "model/model.h"

/* ---- parameters ------------------------------------------------------------------------- */
/* A weight tensor: layer >= 0 with field a lop_layer_field, or layer -1 with field LOP_GF_*. */
enum { LOP_GF_TOK_EMB = 0, LOP_GF_OUT_NORM = 1, LOP_GF_LM_HEAD = 2, LOP_GF_COUNT = 3 };

typedef struct lop_param_id {
    int layer;
    int field;
} lop_param_id;

/* The model tensor an id names (NULL for an unknown id). */
const lop_tensor *lop_param_tensor(const lop_model *m, lop_param_id id);
/* HF name of the tensor ("model.layers.3.mlp.up_proj.weight"), into buf. */
const char *lop_param_name(lop_param_id id, char *buf, int cap);

/* ---- gradient sinks --------------------------------------------------------------------- */
struct lop_wgrad;
typedef struct lop_grad_sink {
    /* 1 when the sink wants dL/dW of this tensor; NULL = every present tensor. Gradients nobody
     * wants are never formed (a tied or untied head's gradient is a vocab x dim product). */
    int (*wants)(void *user, lop_param_id id);
    /* dL/dW of one tensor: g[n] in the tensor's layout (HF [out, in] row-major), w[n] its fp32
     * weights. Both valid only during the call. Called at most once per tensor per backward call. */
    void (*grad)(void *user, lop_param_id id, const float *w, const float *g, int64_t n);
    void *user;
    /* Set by lop_wgrad_sink: the consumer needs only sum(W * g) per tensor, added into this
     * accumulator, so the CUDA trainer reduces on the device instead of copying every gradient. */
    struct lop_wgrad *wgrad;
} lop_grad_sink;

/* Sink that adds sum_i w_i * g_i (in double) per tensor into acc: the Taylor accumulator.
 * acc has lop_wgrad_acc_len(m) doubles, zeroed by the caller, and survives any number of backward
 * calls (signed sums; take the absolute value at the end). Layer tensors only unless with_global. */
typedef struct lop_wgrad {
    double *acc;
    int n_layers;
    int with_global;
} lop_wgrad;
int64_t lop_wgrad_acc_len(const lop_model *m);
/* slot of a tensor in acc */
int64_t lop_wgrad_index(int n_layers, lop_param_id id);
lop_grad_sink lop_wgrad_sink(lop_wgrad *w);
double lop_wgrad_get(const lop_wgrad *w, lop_param_id id);

/* Sink that sums the full gradients (fp32) over backward calls into buffers it allocates:
 * lop_grad_store_get returns NULL for a tensor that never received a gradient. */
typedef struct lop_grad_store lop_grad_store;
lop_status lop_grad_store_new(const lop_model *m, lop_grad_store **out);
void lop_grad_store_free(lop_grad_store *s);
lop_grad_sink lop_grad_store_sink(lop_grad_store *s);
const float *lop_grad_store_get(const lop_grad_store *s, lop_param_id id);

/* ---- the trainer ------------------------------------------------------------------------ */
typedef struct lop_trainer lop_trainer;

typedef struct lop_trainer_opts {
    int max_tokens;     /* most positions (n_seq x seq_len) one forward call handles; 0 = 2048 */
    int max_bwd_tokens; /* most positions one backward call handles (activations of every layer are
                           kept for these); 0 = max_tokens */
    int n_threads;      /* 0 = all cores */
    lop_device device;  /* LOP_DEVICE_CUDA: the CUDA trainer (train_cuda.h), same results to fp32
                           rounding; builds without CUDA refuse it */
} lop_trainer_opts;

/* Module skip bits per layer: a skipped module is treated as removed (the residual passes). */
enum { LOP_SKIP_ATTN = 1, LOP_SKIP_FFN = 2 };

/* Binds a model (weights loaded; synthetic ones are materialised). F16/BF16 weights are widened
 * to fp32 copies the trainer owns; F32 weights are used in place. The model must outlive it. */
lop_status lop_trainer_create(lop_model *m, const lop_trainer_opts *o, lop_trainer **out);
void lop_trainer_free(lop_trainer *t);
/* skip[n_layers] of LOP_SKIP_* bits, copied; NULL = nothing skipped. */
lop_status lop_trainer_set_skip(lop_trainer *t, const uint8_t *skip);
const lop_model *lop_trainer_model(const lop_trainer *t);

/* Loss of n_seq sequences of seq_len tokens each (tokens[n_seq * seq_len], back to back):
 *   L = weight * sum over sequences, t in [first, seq_len) of -log p(tokens[t] | tokens[< t]).
 * *nll (may be NULL) receives the unweighted sum and *n_scored (may be NULL) its term count.
 * lop_trainer_backward also sends dL/dW of every present, non-skipped tensor the sink wants. */
lop_status lop_trainer_loss(lop_trainer *t, const int32_t *tokens, int n_seq, int seq_len, int first, double *nll,
                            int64_t *n_scored);
lop_status lop_trainer_backward(lop_trainer *t, const int32_t *tokens, int n_seq, int seq_len, int first,
                                double weight, const lop_grad_sink *sink, double *nll, int64_t *n_scored);

/* Pieces of the forward on hidden states x[n_seq * seq_len][dim] (positions 0..seq_len-1 in every
 * sequence), for criteria that start from a cached block input. The skip mask is ignored here:
 * the caller decides which modules to run. */
lop_status lop_trainer_embed(lop_trainer *t, const int32_t *tokens, int n_tokens, float *x);
/* x += module(x) for module LOP_SKIP_ATTN or LOP_SKIP_FFN of layer l (a no-op when the layer has
 * no such module). */
lop_status lop_trainer_module(lop_trainer *t, int layer, int module, float *x, int n_seq, int seq_len);
/* The input of the module's last projection in the latest lop_trainer_module call: the attention
 * output before o_proj ([n][n_heads * head_dim]) for LOP_SKIP_ATTN, silu(gate) * up before down_proj
 * ([n][ffn_dim]) for LOP_SKIP_FFN. Valid until the next trainer call (width pruning reads it). */
const float *lop_trainer_proj_input(const lop_trainer *t, int module);
/* Layers [l0, l1) in order, honouring the skip mask. */
lop_status lop_trainer_layers(lop_trainer *t, int l0, int l1, float *x, int n_seq, int seq_len);
/* Final norm + head on x and the same loss as lop_trainer_loss (x is not modified). */
lop_status lop_trainer_head_nll(lop_trainer *t, const float *x, const int32_t *tokens, int n_seq, int seq_len,
                                int first, double *nll, int64_t *n_scored);

#endif
