/* The in-memory model: config with PER-LAYER shapes, and one weights struct per layer with its own
 * pointers and dims.
 * Why: pruned models (fewer heads / narrower FFN / missing modules in some layers) must need no
 * special case anywhere; every loader (HF dir, GGUF, synthetic) fills exactly this. */
#ifndef LOP_MODEL_MODEL_H
#define LOP_MODEL_MODEL_H
#include <stdint.h>

#include "lop.h"

/* ---- tensors ------------------------------------------------------------------------------ */
typedef enum lop_dtype { LOP_F32 = 0, LOP_F16 = 1, LOP_BF16 = 2 } lop_dtype;

size_t lop_dtype_size(lop_dtype t);
const char *lop_dtype_name(lop_dtype t);

/* Row-major, HF layout: a Linear weight is [out, in] (shape[0] = out rows, shape[1] = in cols).
 * 1-D tensors (norm weights, biases) have ndim 1 and shape[1] = 1. data == NULL means the tensor is
 * absent (optional bias, missing module, tied head) or not loaded (shapes_only / synthetic).
 * data may point into a read-only file mapping: copy a tensor before modifying it. */
typedef struct lop_tensor {
    lop_dtype dtype;
    int ndim;
    int64_t shape[2];
    void *data;
    int present; /* 1 when the model has this tensor (even if data is not loaded) */
} lop_tensor;

static inline int64_t lop_tensor_numel(const lop_tensor *t) {
    return t->present ? t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1) : 0;
}

/* ---- config ------------------------------------------------------------------------------- */
typedef struct lop_layer_shape {
    int n_heads;    /* query heads; 0 = this layer has no attention module */
    int n_kv_heads; /* key/value heads (n_heads % n_kv_heads == 0) */
    int head_dim;
    int ffn_dim;    /* 0 = this layer has no FFN module */
} lop_layer_shape;

typedef enum lop_rope_type { LOP_ROPE_DEFAULT = 0, LOP_ROPE_LLAMA3 = 1 } lop_rope_type;

typedef struct lop_rope_scaling {
    lop_rope_type type;
    float factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} lop_rope_scaling;

typedef struct lop_config {
    int vocab_size, dim, n_layers, max_seq_len;
    float norm_eps, rope_theta;
    lop_rope_scaling rope_scaling;
    int tie_embeddings;
    int bos_id, eos_id; /* -1 when unknown */
    /* model-wide defaults (config.json); the truth for each layer is layers[i] */
    int n_heads, n_kv_heads, head_dim, ffn_dim;
    lop_dtype dtype;            /* storage dtype of the weights */
    lop_layer_shape *layers;    /* [n_layers] */
} lop_config;

/* ---- weights ------------------------------------------------------------------------------ */
typedef struct lop_layer_weights {
    lop_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, bo;
    lop_tensor ffn_norm, w_gate, w_up, w_down, b_gate, b_up, b_down;
} lop_layer_weights;

typedef struct lop_weights {
    lop_tensor tok_emb;  /* [vocab, dim] */
    lop_tensor out_norm; /* [dim] */
    lop_tensor lm_head;  /* [vocab, dim]; not present when tied to tok_emb */
    lop_layer_weights *layers;
} lop_weights;

/* Calls fn on every tensor of a layer with its HF-style suffix (e.g. "self_attn.q_proj.weight"). */
#define LOP_LAYER_TENSORS(X)                                                                       \
    X(attn_norm, "input_layernorm.weight")                                                         \
    X(wq, "self_attn.q_proj.weight") X(wk, "self_attn.k_proj.weight")                              \
    X(wv, "self_attn.v_proj.weight") X(wo, "self_attn.o_proj.weight")                              \
    X(bq, "self_attn.q_proj.bias") X(bk, "self_attn.k_proj.bias") X(bv, "self_attn.v_proj.bias")   \
    X(bo, "self_attn.o_proj.bias")                                                                 \
    X(ffn_norm, "post_attention_layernorm.weight")                                                 \
    X(w_gate, "mlp.gate_proj.weight") X(w_up, "mlp.up_proj.weight")                                \
    X(w_down, "mlp.down_proj.weight")                                                              \
    X(b_gate, "mlp.gate_proj.bias") X(b_up, "mlp.up_proj.bias") X(b_down, "mlp.down_proj.bias")

/* The layer tensors by index, in LOP_LAYER_TENSORS order: the first LOP_LF_N_ATTN belong to the
 * attention module (its norm, projections, biases), the rest to the FFN module. */
typedef enum lop_layer_field {
#define X(f, name) LOP_LF_##f,
    LOP_LAYER_TENSORS(X)
#undef X
    LOP_LF_COUNT
} lop_layer_field;
#define LOP_LF_N_ATTN ((int)LOP_LF_ffn_norm)

/* Tensor `field` of layer L, and its HF suffix ("self_attn.q_proj.weight"). */
lop_tensor *lop_layer_tensor(lop_layer_weights *L, int field);
const lop_tensor *lop_layer_tensor_c(const lop_layer_weights *L, int field);
const char *lop_layer_field_name(int field);

struct lop_tokenizer;

/* Memory the model owns (mappings, malloc'd buffers), released by lop_model_free. */
typedef struct lop_owned {
    void *ptr;
    size_t size;
    int is_map;
} lop_owned;

struct lop_model {
    char *source;           /* the spec it was loaded from */
    char *format;           /* "hf", "gguf", "synthetic" */
    lop_config cfg;
    lop_weights w;
    struct lop_tokenizer *tok; /* NULL when the model has none (synthetic) */
    int synthetic;          /* weights are generated from synth_seed, not read */
    uint64_t synth_seed;
    int weights_loaded;     /* tensor data pointers are valid */
    lop_owned *owned;
    int n_owned, cap_owned;
    /* GGUF: the tensor types stored in the file with their counts, most common first, e.g.
     * "Q4_1:210 F32:61 Q8_0:1" (quantised types are dequantised to F32 at load); "" otherwise. */
    char file_dtypes[96];
};

/* A new model of n_layers (zeroed) that shares src's config, embeddings, final norm and head and
 * owns nothing of src: src must outlive it (pruning builds its result this way). */
lop_status lop_model_new_view(const lop_model *src, int n_layers, lop_model **out);

/* Allocation helpers: the model takes ownership. */
lop_status lop_model_alloc_layers(lop_model *m, int n_layers);
lop_status lop_model_own(lop_model *m, void *ptr, size_t size, int is_map);
/* malloc that the model owns; returns NULL (and sets an OOM error) on failure. */
void *lop_model_malloc(lop_model *m, size_t size, const char *what);

/* Sets cfg.layers[i] from the tensor shapes, validates every shape against dim/vocab, and fills
 * missing defaults. `file` names the source in error messages. */
lop_status lop_model_derive_shapes(lop_model *m, const char *file);

/* dst[0..n) = the n elements of src (of dtype t) widened exactly to fp32. */
void lop_convert_to_f32(float *dst, const void *src, lop_dtype t, int64_t n);

int64_t lop_model_n_params(const lop_model *m);
int64_t lop_layer_n_params(const lop_model *m, int layer);

/* Loaders (fill an empty, zeroed model). */
lop_status lop_load_hf(lop_model *m, const char *dir, const lop_load_opts *o);
lop_status lop_load_gguf(lop_model *m, const char *path, const lop_load_opts *o);
lop_status lop_load_synth(lop_model *m, const char *spec, const lop_load_opts *o);

#endif
