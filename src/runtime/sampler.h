/* Token sampling: greedy, temperature, top-k, top-p, seeded per sequence.
 * Why its own file: generation, evaluation and benchmarks must pick tokens identically on every
 * backend, and the order (temperature → top-k → top-p, as HF) must be written down once. */
#ifndef LOP_RUNTIME_SAMPLER_H
#define LOP_RUNTIME_SAMPLER_H
#include <stdint.h>

#include "lop.h"

typedef struct lop_rng {
    uint64_t s;
} lop_rng;

void lop_rng_seed(lop_rng *r, uint64_t seed, uint64_t stream);
double lop_rng_uniform(lop_rng *r); /* [0, 1) */

/* Index of the largest logit (first one on ties, like torch.argmax). */
int lop_argmax(const float *logits, int n);

/* Picks a token from logits[n] (modified in place). work: n (float,int) pairs of scratch. */
int lop_sample(float *logits, int n, const lop_sampling *s, lop_rng *rng, void *work);
size_t lop_sample_work_size(int n);

#endif
