/* Test support: an independent float64 LLaMA loss over a lop_model's weights (copied to double),
 * written out plainly like tests/fixtures/ref_forward.py. Why: finite differences of an fp32
 * forward are noisy (~1e-3); of this one they are exact to ~1e-8, so they can check the fp32
 * backward to ~1e-5. The double copies can be perturbed in place (dref_tensor). */
#ifndef LOP_TESTS_REF_DOUBLE_H
#define LOP_TESTS_REF_DOUBLE_H
#include <stdint.h>

#include "train/train.h"

typedef struct dref dref;

dref *dref_new(const lop_model *m);
void dref_free(dref *d);
/* The double copy of a tensor (NULL when absent); tied head = the embedding. */
double *dref_tensor(dref *d, lop_param_id id);
/* sum over sequences and t in [first, seq_len) of -log p(tokens[t] | tokens[< t]); skip as the
 * trainer's mask (NULL = none). */
double dref_loss(const dref *d, const int32_t *tokens, int n_seq, int seq_len, int first, const uint8_t *skip);
/* Hidden state after running layers [0, l1) on one sequence (x[seq_len][dim], double). */
void dref_hidden(const dref *d, const int32_t *tokens, int seq_len, int l1, const uint8_t *skip, double *x);
#endif
