/* lop's sampler kernel timed alone, to split its time per step (bench/cuda/NOTES.md, 24).
 * Why: inside the 7B decode graph the sampler took 30.8 us (FAST) and 23.9 us (CAND, which reads the
 * row once instead of five times), far more than its reads (128 KB) or its arithmetic suggest, so
 * the rest is in its serial phases. Contrasting settings splits it: greedy (one pass, no select),
 * top-k alone (p = 1: no top-p walk), the benchmark's top-k 50 / top-p 0.95, and the same over a
 * 2048-token row (the row's loads and divisions mostly gone). Each: 20 launches on one 32000-logit
 * row (random, as a random 7B model's) captured in a CUDA graph, median of 7 replays after one,
 * per variant (0 the first, 1 FAST, 2 CAND). Prints "sample_<variant>_<case>_us". No result is
 * checked here (test_cuda compares the variants and the distribution).
 * Build: make build/sample_iso (scripts/gpu_check.sh build); run by scripts/gpu_check.sh iso. */
#include <stdio.h>
#include <vector>

#include "graph_timing.cuh"
#include "runtime/cuda/kernels.cuh"

enum { VOCAB = 32000, LAUNCHES = 20, REPS = 7 };

int main(void) {
    std::vector<float> h(VOCAB);
    uint64_t s = 12345;
    for (int i = 0; i < VOCAB; i++) { /* roughly normal, sd 2 (sum of 4 uniforms) */
        float a = 0;
        for (int j = 0; j < 4; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            a += (float)(s >> 40) / (float)(1 << 24) - 0.5f;
        }
        h[i] = a * 3.5f;
    }
    float *logits;
    uint64_t *rng;
    int32_t *tok;
    CK(cudaMalloc(&logits, VOCAB * 4));
    CK(cudaMalloc(&rng, 8));
    CK(cudaMalloc(&tok, 4));
    CK(cudaMemcpy(logits, h.data(), VOCAB * 4, cudaMemcpyHostToDevice));
    CK(cudaMemset(rng, 7, 8));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    struct { const char *name; int V; k_sample_params p; } cases[] = {
        {"greedy", VOCAB, {0.f, 0, 1.f}},      {"k50", VOCAB, {1.f, 50, 1.f}},     {"k50_p95", VOCAB, {1.f, 50, 0.95f}},
        {"k50_p95_v2048", 2048, {1.f, 50, 0.95f}}, {"p95", VOCAB, {1.f, 0, 0.95f}},
    };
    for (int v = 0; v < 3; v++)
        for (auto &c : cases)
            printf("sample_%d_%s_us %.2f\n", v, c.name, graph_us_per_launch(st, LAUNCHES, REPS, [&](int) {
                       k_sample_variant(v, logits, c.V, 1, c.p, rng, tok, NULL, NULL, NULL, st);
                   }));
    return 0;
}
