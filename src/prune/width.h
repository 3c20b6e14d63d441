/* Width pruning: remove attention heads (q/k/v rows + o_proj columns of a head) and FFN channels
 * (gate/up rows + down_proj column) by a criterion, to a parameter target, then build the narrower
 * model. Scores (higher = more important), for input channel j of o_proj / down_proj with weight W
 * [out][in] and X its calibration inputs (tokens x in):
 *   magnitude  sum |W| over the group's weights (q rows + o columns of a head; with --gqa kv also the
 *              k/v rows of the group; gate row + up row + down column of a channel)
 *   wanda-sp   mean_i |W_ij| * ||X_j||_2 ; a head = the sum over its head_dim channels. Layer by layer:
 *              the calibration inputs of layer l come from layers 0..l-1 already pruned. The same
 *              ratio in every layer (uniform widths).
 *   flap       fluctuation f_j = sample variance of X_j over the tokens * sum_i W_ij^2 ; a channel's
 *              score is f_j, a head's is sum over its channels of f_j^2 (the wording: "the
 *              square of that, summed over the head's channels"). Scores are standardised
 *              ((s - mean) / std) per layer and per module type, one global threshold over every
 *              layer and both types gives a different width in every layer, and the removed
 *              channels' mean input times their W columns is added to the o_proj / down_proj bias
 *              (exact when the input equals its calibration mean).
 *   llm-pruner sum over the group's weights of |W * dL/dW| (first-order Taylor, element-wise; L the
 *              mean calibration NLL, gradients from the CPU backward summed over all samples); the
 *              same ratio in every block of the range, default blocks 4 .. n-3 (first 4, last 2 kept).
 * GQA: LOP_GQA_QUERY (default) removes query heads inside each KV group, the same number in every
 * group (K/V and the KV cache stay whole; finer steps: SmolLM2 has 9 heads in 3 groups, whole groups
 * would remove a third of the attention at a time). LOP_GQA_KV removes whole groups (a KV head with
 * its query heads; a group's score is the sum of its heads').
 * Why a plan apart from the model: the plan (scores, masks, compensation) is what pruning.json
 * records and what tests check; lop_width_apply builds the model from any plan. */
#ifndef LOP_PRUNE_WIDTH_H
#define LOP_PRUNE_WIDTH_H
#include <stdint.h>

#include "prune/calib.h"
#include "prune/depth.h"

typedef enum lop_width_method { LOP_WM_MAGNITUDE = 0, LOP_WM_WANDA_SP, LOP_WM_FLAP, LOP_WM_LLM_PRUNER, LOP_WM_COUNT } lop_width_method;
typedef enum lop_gqa_mode { LOP_GQA_QUERY = 0, LOP_GQA_KV } lop_gqa_mode;

const char *lop_width_method_name(lop_width_method m);
lop_status lop_width_method_parse(const char *s, lop_width_method *out);
lop_status lop_gqa_mode_parse(const char *s, lop_gqa_mode *out);

typedef struct lop_width_opts {
    lop_width_method method;
    lop_gqa_mode gqa;
    lop_depth_target target; /* LOP_DEPTH_RATIO or LOP_DEPTH_PARAMS (a unit count is an error) */
    int round;               /* kept FFN widths are multiples of this (1 = no rounding); heads are whole */
    int layer0, layer1;      /* prune blocks [layer0, layer1); layer1 = 0: all (llm-pruner: 4 .. n-3) */
    int n_threads;           /* 0 = all cores */
    lop_device device;       /* where the trainer runs (every method but magnitude) */
} lop_width_opts;

typedef struct lop_width_plan {
    int n_layers;
    double **head_score; /* [layer][n_heads] (NULL for a layer without attention) */
    double **ch_score;   /* [layer][ffn_dim] */
    uint8_t **head_keep; /* [layer][n_heads] 1 = kept */
    uint8_t **ch_keep;   /* [layer][ffn_dim] */
    float **bo_add;      /* [layer][dim] FLAP compensation for o_proj, or NULL */
    float **bdown_add;   /* [layer][dim] for down_proj, or NULL */
    int64_t params_before, params_after, target_removed;
    double seconds;
} lop_width_plan;

/* Scores and selects; cal may be NULL for magnitude. Errors (LOP_ERR_ARG) name the option. */
lop_status lop_width_plan_make(lop_model *m, const lop_calib *cal, const lop_width_opts *o, lop_width_plan *p);
void lop_width_plan_free(lop_width_plan *p);

/* The pruned model: fp32 tensors it owns (the kept rows / columns), biases where the plan adds
 * compensation. padded = 1: every layer keeps the widest layer's head count per group and FFN width,
 * the removed units present as zero rows / columns (same function, stock HF shapes). No tokenizer. */
lop_status lop_width_apply(lop_model *src, const lop_width_plan *p, int padded, lop_model **out);

/* pruning.json for a width run. */
struct cJSON;
struct cJSON *lop_width_report(const lop_model *m, const lop_model *pruned, const lop_width_opts *o,
                               const char *target_text, const lop_width_plan *p, const lop_calib *cal,
                               const char *calib_path);
#endif
