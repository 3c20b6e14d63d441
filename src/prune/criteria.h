/* Depth-pruning importance criteria (Shortened LLaMA and ShortGPT), per block or per module.
 * For unit n (a whole block, or only its attention or FFN module), k over its weight tensors
 * (norms and biases included), L the mean next-token NLL on the calibration samples:
 *   magnitude  sum_k sum |W|
 *   taylor     | sum_k sum_ij W_ij dL/dW_ij |  (signed products summed over all samples, abs last)
 *   ppl        exp(L) of the model with unit n removed (and nothing else)
 *   bi         1 - cos(x_in, x_out) of the unit's residual stream, averaged over all tokens
 * Higher = more important everywhere: the units with the lowest scores are removed.
 * Why a scorer object: iterative pruning re-scores the same model with more and more modules
 * removed; the scorer keeps the trainer (fp32 weights, activation buffers) between rounds and
 * treats removed modules as skipped, so nothing is rebuilt. */
#ifndef LOP_PRUNE_CRITERIA_H
#define LOP_PRUNE_CRITERIA_H
#include <stdint.h>

#include "core/progress.h"
#include "model/model.h"
#include "prune/calib.h"

typedef enum lop_criterion { LOP_CRIT_MAGNITUDE = 0, LOP_CRIT_TAYLOR, LOP_CRIT_PPL, LOP_CRIT_BI, LOP_CRIT_COUNT } lop_criterion;
typedef enum lop_unit { LOP_UNIT_BLOCK = 0, LOP_UNIT_ATTN, LOP_UNIT_FFN } lop_unit;

const char *lop_criterion_name(lop_criterion c);
lop_status lop_criterion_parse(const char *s, lop_criterion *out);
const char *lop_unit_name(lop_unit u);
lop_status lop_unit_parse(const char *s, lop_unit *out);
/* which modules a unit covers (LOP_SKIP_* bits from train/train.h) */
uint8_t lop_unit_bits(lop_unit u);

/* removed[n_layers]: LOP_SKIP_* bits of modules already taken out (NULL = none).
 * A unit exists when the layer has one of its modules and it is not removed. */
int lop_unit_exists(const lop_model *m, lop_unit u, int layer, const uint8_t *removed);
/* parameters the unit still holds (0 when it does not exist) */
int64_t lop_unit_n_params(const lop_model *m, lop_unit u, int layer, const uint8_t *removed);

/* Magnitude needs no data: scores[n_layers] as lop_scorer_run would give them. */
void lop_magnitude_scores(const lop_model *m, lop_unit u, const uint8_t *removed, double *scores);

typedef struct lop_scorer lop_scorer;

typedef struct lop_scorer_opts {
    int n_threads;   /* 0 = all cores */
    int bwd_samples; /* calibration samples per backward call (Taylor); 0 = as many as fit 512 tokens */
    int fwd_samples; /* samples per forward call (PPL, BI); 0 = as many as fit 4096 tokens. Memory
                        scales with these, not with the calibration size */
    lop_device device; /* where the trainer runs; on CUDA one backward call takes every sample by default */
} lop_scorer_opts;

/* Binds model and calibration (both must outlive the scorer). */
lop_status lop_scorer_new(lop_model *m, const lop_calib *cal, const lop_scorer_opts *o, lop_scorer **out);
void lop_scorer_free(lop_scorer *s);

/* scores[n_layers]: the criterion for unit u of every layer, given the removed modules; NAN for
 * units that do not exist. *calib_loss (may be NULL) receives L of the model as it stands (with
 * only `removed` taken out) when the criterion computes it (taylor, ppl, bi), else NAN.
 * progress may be NULL; its total is set here. */
lop_status lop_scorer_run(lop_scorer *s, lop_criterion c, lop_unit u, const uint8_t *removed, double *scores,
                          double *calib_loss, lop_progress *progress);

#endif
