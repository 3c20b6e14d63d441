/* Synthetic models: known shapes (LLaMA-7B, 13B, …) with deterministic random weights and no file,
 * so benchmarks of Original / Width- / Depth-pruned shapes need no downloads.
 * Why counter-based values: element i of tensor t is a pure function of (seed, t, i), so the CPU
 * and any device backend can generate identical weights in place, in parallel, in any order. */
#ifndef LOP_MODEL_SYNTH_H
#define LOP_MODEL_SYNTH_H
#include <stdint.h>

#include "model/model.h"

/* Tensor ids used for the value stream (tok_emb 0, out_norm 1, lm_head 2, layer fields after). */
#define LOP_SYNTH_TENSOR_ID(layer, field) (16u + (uint32_t)(layer) * 32u + (uint32_t)(field))

static inline uint64_t lop_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform value with standard deviation `std` (uniform on [-√3·std, √3·std]). */
static inline float lop_synth_value(uint64_t seed, uint32_t tensor_id, uint64_t idx, float std) {
    uint64_t h = lop_splitmix64(seed ^ ((uint64_t)tensor_id << 40) ^ idx);
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0); /* [0,1) */
    return (float)((2.0 * u - 1.0) * 1.7320508075688772 * std);
}

/* Writes F32 data into every present tensor of a synthetic model (model-owned buffers). */
lop_status lop_synth_materialize(lop_model *m);

/* Names of the presets, NULL-terminated (for --help and docs). */
extern const char *const lop_synth_preset_names[];

#endif
