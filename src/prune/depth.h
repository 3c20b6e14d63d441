/* Depth pruning (Shortened LLaMA): choose which blocks (or attention / FFN modules) to remove by a
 * criterion, one-shot or iteratively, under the "+" rule, to a target given as a number of units,
 * a fraction of the parameters, or a parameter count; then build the smaller model.
 * Why plan and model apart: the plan (scores, removal order, parameter counts) is what pruning.json
 * records and what tests check; lop_model_remove_modules turns any removal mask into a model that
 * the engines, the trainer and the HF writer take like any other. */
#ifndef LOP_PRUNE_DEPTH_H
#define LOP_PRUNE_DEPTH_H
#include <stdint.h>

#include "core/progress.h"
#include "prune/criteria.h"

typedef enum lop_depth_target_kind {
    LOP_DEPTH_COUNT = 0, /* remove this many units */
    LOP_DEPTH_RATIO,     /* remove this fraction of the model's parameters */
    LOP_DEPTH_PARAMS     /* keep this many parameters */
} lop_depth_target_kind;

typedef struct lop_depth_target {
    lop_depth_target_kind kind;
    int count;
    double ratio;   /* (0, 1) */
    int64_t params; /* > 0 */
} lop_depth_target;

/* "9" (units), "27%" (of the parameters), "params=4.9B" (parameters left; suffix K, M, B or none).
 * Errors name the text and say what is expected. */
lop_status lop_depth_target_parse(const char *s, lop_depth_target *t);

typedef struct lop_depth_opts {
    lop_criterion criterion;
    lop_unit unit;
    lop_depth_target target;
    int no_plus;       /* 0: the "+" rule: blocks 0..3 and the last 2 are never removed (the paper's default) */
    int iterative;     /* 1: remove one unit, re-score, repeat (else: score once, remove the lowest) */
    lop_scorer_opts scorer;
    lop_progress *progress; /* may be NULL */
} lop_depth_opts;

typedef struct lop_depth_result {
    int n_layers, n_rounds;
    double *scores;     /* [n_rounds][n_layers]; NAN where the unit does not exist; one round if one-shot */
    double *calib_loss; /* [n_rounds] mean calibration NLL of the model scored in that round (NAN: magnitude) */
    uint8_t *protect;   /* [n_layers] 1 = never removed ("+" rule) */
    int *removed;       /* [n_removed] layer indices, in removal order */
    int n_removed;
    uint8_t *skip;      /* [n_layers] LOP_SKIP_* bits of the removed modules */
    int64_t params_before, params_after, target_removed;
    double seconds;     /* scoring time */
} lop_depth_result;

/* Plans the removal; cal may be NULL for magnitude (which needs no data). Ties in score go to the
 * later layer (removed first); a NAN score (PPL overflow) counts as most important. A ratio or
 * parameter target removes, lowest score first, every unit that brings the parameter count
 * closer to the target (so the result is the nearest reachable count, as the paper's 20 % / 35 %).
 * Asking for more units than may be removed, or a target no removal reaches, is LOP_ERR_ARG with
 * the numbers in the message. */
lop_status lop_depth_plan(lop_model *m, const lop_calib *cal, const lop_depth_opts *o, lop_depth_result *r);
void lop_depth_result_free(lop_depth_result *r);

/* The model without the modules in skip[n_layers] (LOP_SKIP_* bits): layers left with no module
 * are dropped and the rest renumbered in order; a removed module's tensors become absent. The new
 * model borrows src's tensors (src must outlive it; synthetic weights are materialised first) and
 * has no tokenizer. Removing every layer is LOP_ERR_ARG. */
lop_status lop_model_remove_modules(lop_model *src, const uint8_t *skip, lop_model **out);

#endif
