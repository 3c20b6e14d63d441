/* lop — public C API.
 * Why: one small, stable surface (opaque handles, status codes, sized ints) for the CLI and for
 * anyone embedding lop; everything else lives in src/ and may change. */
#ifndef LOP_H
#define LOP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------- */
typedef enum lop_status {
    LOP_OK = 0,
    LOP_ERR_ARG = 1,         /* bad argument / option value */
    LOP_ERR_IO = 2,          /* cannot open / read / write a file */
    LOP_ERR_FORMAT = 3,      /* malformed or inconsistent input file */
    LOP_ERR_OOM = 4,         /* allocation failed (host or device) */
    LOP_ERR_UNSUPPORTED = 5, /* valid input lop does not handle (yet) */
    LOP_ERR_DEVICE = 6       /* backend / device failure */
} lop_status;

const char *lop_status_name(lop_status s);
/* Message of the last error set on this thread (never NULL; "" when none). */
const char *lop_last_error(void);

/* ---- models ------------------------------------------------------------------------------- */
typedef struct lop_model lop_model;

/* MODEL is one of:
 *   DIR                 HF directory: config.json + model.safetensors (or sharded) [+ tokenizer.json]
 *   FILE.gguf           GGUF v3, llama architecture
 *   synth:PRESET[:opt]  synthetic model with random weights; see docs/models.md for presets and the
 *                       pruned-shape options (layers=, drop=, heads=, kv=, ffn=, noattn=, noffn=, seed=) */
typedef struct lop_load_opts {
    int shapes_only; /* 1: read shapes and metadata only, no weight data (lop info) */
} lop_load_opts;

lop_status lop_model_load(const char *spec, const lop_load_opts *opts, lop_model **out);
void lop_model_free(lop_model *m);

typedef struct lop_model_info {
    int n_layers, dim, vocab_size, max_seq_len, tie_embeddings;
    int64_t n_params;
    int64_t kv_bytes_per_token_f16; /* K+V over all layers, 2 bytes per element */
} lop_model_info;
void lop_model_get_info(const lop_model *m, lop_model_info *info);

/* ---- tokenizer ---------------------------------------------------------------------------- */
/* Encodes TEXT (len bytes) into a malloc'd array *ids (caller frees). add_bos: -1 = model default. */
lop_status lop_model_encode(const lop_model *m, const char *text, size_t len, int add_bos,
                            int32_t **ids, int *n_ids);
/* Decodes ids into a malloc'd NUL-terminated string (caller frees). */
lop_status lop_model_decode(const lop_model *m, const int32_t *ids, int n_ids, char **text);

/* ---- engines and generation --------------------------------------------------------------- */
typedef struct lop_engine lop_engine;

typedef enum lop_device { LOP_DEVICE_CPU = 0, LOP_DEVICE_CUDA = 1 } lop_device;

/* Storage type of the weights on a GPU (the CPU computes in fp32 whatever is asked). */
typedef enum lop_weight_dtype {
    LOP_WEIGHTS_DEFAULT = 0, /* fp16 */
    LOP_WEIGHTS_F16 = 1,
    LOP_WEIGHTS_BF16 = 2
} lop_weight_dtype;

typedef struct lop_engine_opts {
    lop_device device;
    int max_batch;   /* sequences held at once (KV slots) */
    int max_seq_len; /* positions per sequence (KV length); 0 = min(model max, 4096) */
    int n_threads;   /* CPU threads; 0 = all cores */
    lop_weight_dtype weight_dtype; /* CUDA: fp16 (default) or bf16 weights and matrix inputs */
    int no_graphs;     /* CUDA: 1 = launch each decode step's kernels one by one (no CUDA graph) */
    int prefill_chunk; /* CUDA: tokens per pass through the activation buffers; 0 = auto (2048) */
} lop_engine_opts;

lop_status lop_engine_create(lop_model *m, const lop_engine_opts *opts, lop_engine **out);
void lop_engine_free(lop_engine *e);

/* Memory an engine would take, predicted before creating it: weights in the backend's format,
 * KV cache (max_batch x max_seq_len), activations for one forward chunk, workspaces. On a GPU,
 * device_free / device_total come from the driver and fits says whether total_bytes fits in what
 * is free now (the OOM prediction of the benchmark grid). Nothing is allocated. */
typedef struct lop_mem_plan {
    int64_t weight_bytes, kv_bytes, act_bytes, workspace_bytes, total_bytes;
    int64_t device_free, device_total; /* -1 when unknown (CPU) */
    int fits;                          /* 1 fits, 0 does not, -1 unknown */
    int tok_cap;                       /* tokens per forward chunk */
    char device[96];                   /* e.g. "NVIDIA H100 80GB HBM3" or "cpu" */
} lop_mem_plan;
lop_status lop_engine_plan(lop_model *m, const lop_engine_opts *opts, lop_mem_plan *plan);

/* Bytes one decode step must read from memory: every weight once in the backend's compute format
 * (embedding table: only the n_seq rows gathered, unless it is also the tied head) plus the K/V of
 * n_seq sequences at context length ctx. Divided by the step time it gives achieved bandwidth. */
int64_t lop_engine_decode_bytes(const lop_engine *e, int n_seq, int ctx);

typedef struct lop_sampling {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} lop_sampling;

typedef struct lop_gen_params {
    int max_new_tokens;
    int ignore_eos; /* 1: generate exactly max_new_tokens (benchmark mode) */
    lop_sampling sampling;
    /* called after each step with the new token of every sequence (-1 for finished ones) */
    void (*on_step)(void *user, int step, const int32_t *tokens, int n_seq);
    void *user;
} lop_gen_params;

typedef struct lop_gen_result {
    int32_t **tokens; /* [n_seq] malloc'd arrays of generated ids (without the prompt) */
    int *n_tokens;    /* [n_seq] */
    int n_seq;
    double prefill_s, decode_s; /* wall time of the prefill and of all decode steps */
    int n_decode_steps;
} lop_gen_result;

lop_status lop_generate(lop_engine *e, const int32_t *const *prompts, const int *prompt_lens, int n_seq,
                        const lop_gen_params *p, lop_gen_result *res);
void lop_gen_result_free(lop_gen_result *res);

#ifdef __cplusplus
}
#endif
#endif
