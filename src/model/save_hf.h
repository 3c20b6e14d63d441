/* Writes an in-memory model as a stock Hugging Face checkpoint directory: config.json (lop's
 * per-layer "lop_layers" only when layers differ), model.safetensors or shards like the input,
 * the tokenizer files, and any extra files (pruning.json).
 * Why one writer for every pruning method: depth and width pruning both end in "this lop_model,
 * as HF transformers would save it"; the rules (tensor names and order, zero biases where stock HF
 * expects them, shard size, atomic directory, never touching the input) are the same.
 *
 * Atomic: everything is written into OUT.tmp-PID beside OUT and renamed to OUT at the end, so OUT
 * either does not appear or is complete. OUT must not exist or be an empty directory. */
#ifndef LOP_MODEL_SAVE_HF_H
#define LOP_MODEL_SAVE_HF_H
#include <cJSON.h>
#include <stdint.h>

#include "model/model.h"

typedef struct lop_save_opts {
    const char *out_dir;
    /* The model's source as given to lop_model_load (HF dir, GGUF file, synth:...): never written
     * into (OUT may be neither the input directory, nor inside an HF input directory, nor the
     * folder of a GGUF file); an HF dir also gives the tokenizer / generation files (copied) and
     * the shard size; a GGUF with a byte-level BPE vocabulary gives a generated tokenizer.json. */
    const char *input;
    uint64_t max_shard_bytes; /* 0 = like the input (its largest shard; one file if it has one), 5 GB for others */
    /* Optional JSON file written last into OUT (e.g. "pruning.json"); the writer adds an "output"
     * object to it (files, shards, tokenizer, whether stock HF can load it). */
    const char *report_name;
    cJSON *report;
} lop_save_opts;

lop_status lop_model_save_hf(const lop_model *m, const lop_save_opts *o);

/* 1 when stock transformers can instantiate the model (every layer has both modules and the same
 * shape), i.e. config.json needs no lop_layers. */
int lop_model_is_stock_hf(const lop_model *m);

#endif
