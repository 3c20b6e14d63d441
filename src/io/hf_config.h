/* HF config.json for LLaMA models: strict reading into lop_config (every field type- and range-
 * checked, errors name config.json and the field) and writing a stock-HF config.json from a
 * lop_config, including lop's per-layer extension "lop_layers" (docs/per-layer-config.md).
 * Why separate from the tensor loader: the pruning writers need the writer without loading anything. */
#ifndef LOP_IO_HF_CONFIG_H
#define LOP_IO_HF_CONFIG_H
#include <cJSON.h>

#include "lop.h"
#include "model/model.h"

/* What config.json says beyond lop_config. */
typedef struct lop_hf_extra {
    int attention_bias, mlp_bias; /* HF flags: q/k/v/o and gate/up/down carry biases */
    /* reader: malloc'd [n_layers] when config.json has "lop_layers" (head_dim filled in, kv defaulted),
     * else NULL; free with lop_hf_extra_free. The writer ignores it (it writes cfg.layers). */
    lop_layer_shape *lop_layers;
} lop_hf_extra;

void lop_hf_extra_free(lop_hf_extra *x);

/* Reads and parses a JSON file. Malformed JSON: LOP_ERR_FORMAT naming the file, line, column and
 * byte offset. */
lop_status lop_json_read_file(const char *path, cJSON **out);

/* Parses config.json (PATH names it in messages) into *c: every field lop_config has except layers
 * (left untouched; c->n_layers = num_hidden_layers). Missing optional fields get HF's defaults.
 * model_type other than "llama" or a RoPE type other than default/llama3: LOP_ERR_UNSUPPORTED; a field
 * of the wrong JSON type, a non-positive size, or a lop_layers entry that makes no sense:
 * LOP_ERR_FORMAT. x may be NULL. */
lop_status lop_hf_config_from_json(const cJSON *root, const char *path, lop_config *c, lop_hf_extra *x);
lop_status lop_hf_read_config(const char *path, lop_config *c, lop_hf_extra *x);

/* Sets attention_bias / mlp_bias from the model's tensors (any layer having any such bias). Stock HF
 * then expects ALL biases of that kind in every layer: a writer must emit zeros for missing ones. */
void lop_hf_extra_from_model(const lop_model *m, lop_hf_extra *x);

/* A complete stock-HF config.json object (model_type llama, architectures LlamaForCausalLM, sizes,
 * RoPE both as rope_theta/rope_scaling (transformers 4) and rope_parameters (transformers 5), dtype).
 * Model-wide head/FFN fields come from cfg.layers when those are uniform (so a uniformly pruned model
 * is a plain HF model), else from the cfg defaults; "lop_layers" is added when layers differ or a
 * module is missing. x may be NULL (no biases). Returns NULL on OOM (error set); free with cJSON_Delete. */
cJSON *lop_hf_config_to_json(const lop_config *c, const lop_hf_extra *x);
/* Writes lop_hf_config_to_json to PATH atomically (2-space indented, trailing newline). */
lop_status lop_hf_write_config(const char *path, const lop_config *c, const lop_hf_extra *x);

#endif
