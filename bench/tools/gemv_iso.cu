/* lop's own GEMV launches in isolation, to split the batch-1 products' loss (bench/cuda/NOTES.md, 22).
 * Why: inside the decode graph q/k/v + RoPE takes 32.1 us and gate/up + SwiGLU 50.1 us (entry 20's
 * timeline), while stream_shapes' best warp-per-row probe streams the same bytes in 25.5 and 44.5 us.
 * The difference is either the step around the products (what the attention, the K/V stores and the
 * other launches leave in L2 and the memory queues) or the products' own features (the RMSNorm
 * prologue, the row pairs, the RoPE / SwiGLU epilogues, the loop variant). This times lop's k_gemv /
 * k_gemv_xnorm as stream_shapes times its probes (16 launches over 16 distinct matrices captured in
 * one CUDA graph, median of 5 replays after one), for LLaMA-7B's shapes at batch 1 in each mode:
 *   o, down:        GEMV_ACC as the decode runs them;
 *   qkv_rope_xn:    GEMV_ROPE with the RMSNorm prologue (the decode's q/k/v), qkv_rope: the same
 *                   reading a normalised X, qkv_store / qkv_acc: the same rows as single-row items;
 *   gu_swiglu_xn:   GEMV_SWIGLU with the prologue (the decode's gate/up), gu_swiglu, gu_store, gu_acc;
 *   head:           GEMV_STORE over 32000 rows, head_xn: the same with the prologue (the decode's).
 * The engine switches are read from the environment once per process (LOP_CUDA_GEMV=..., as in the
 * b1 sweep), so scripts/gpu_check.sh runs this once per setting. Prints "iso_<case>_us" and
 * "iso_<case>_GBps" (weight bytes / time). Weights are random fp16 in [-1/64, 1/64); no result is
 * checked here (test_cuda checks these kernels against the CPU).
 * Build: make build/gemv_iso (nvcc, then linked with liblop.a like the CLI), by scripts/gpu_check.sh build. */
#include <cuda_fp16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "graph_timing.cuh"
#include "runtime/cuda/kernels.cuh"

enum { LAYERS = 16, REPS = 5, DIM = 4096, FFN = 11008, NH = 32, HD = 128, MAX_SEQ = 256, VOCAB = 32000 };

__global__ void fill_kernel(__half *w, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        w[i] = __float2half((float)(h & 0xffff) / 65536.0f / 32.0f - 1.0f / 64.0f);
    }
}
static void *fill(size_t n, uint32_t seed) {
    __half *p;
    CK(cudaMalloc(&p, n * sizeof(__half)));
    fill_kernel<<<1024, 256>>>(p, n, seed);
    CK(cudaGetLastError());
    return p;
}
static float *zeros(size_t n) {
    float *p;
    CK(cudaMalloc(&p, n * sizeof(float)));
    CK(cudaMemset(p, 0, n * sizeof(float)));
    return p;
}

struct ctx {
    void *X, *H;            /* a normalised input row (fp16, ldx = FFN), the SwiGLU output */
    float *x, *nw, *Y, *q;  /* residual row, norm weights, fp32 outputs (32000), q */
    __half *kc, *vc;
    int32_t *seq, *pos;
    float *inv_freq;
    k_rope_args ra;
    k_xnorm_args xn;
};

/* one launch of case `c` over weights W (rows x ldw) */
static void launch(const ctx &C, const char *c, const void *W, int rows, int ldw, cudaStream_t s) {
    if (!strcmp(c, "o") || !strcmp(c, "down") || !strcmp(c, "qkv_acc") || !strcmp(c, "gu_acc"))
        k_gemv(W, ldw, LOP_F16, rows, C.X, FFN, 1, GEMV_ACC, C.Y, VOCAB, NULL, NULL, 0, NULL, s);
    else if (!strcmp(c, "qkv_store") || !strcmp(c, "gu_store") || !strcmp(c, "head"))
        k_gemv(W, ldw, LOP_F16, rows, C.X, FFN, 1, GEMV_STORE, C.Y, VOCAB, NULL, NULL, 0, NULL, s);
    else if (!strcmp(c, "qkv_rope"))
        k_gemv(W, ldw, LOP_F16, rows, C.X, FFN, 1, GEMV_ROPE, NULL, 0, NULL, NULL, 0, &C.ra, s);
    else if (!strcmp(c, "qkv_rope_xn"))
        k_gemv_xnorm(W, ldw, LOP_F16, rows, &C.xn, 1, GEMV_ROPE, NULL, 0, NULL, 0, NULL, &C.ra, s);
    else if (!strcmp(c, "gu_swiglu"))
        k_gemv(W, ldw, LOP_F16, rows, C.X, FFN, 1, GEMV_SWIGLU, NULL, 0, NULL, C.H, FFN, NULL, s);
    else if (!strcmp(c, "gu_swiglu_xn"))
        k_gemv_xnorm(W, ldw, LOP_F16, rows, &C.xn, 1, GEMV_SWIGLU, NULL, 0, C.H, FFN, NULL, NULL, s);
    else if (!strcmp(c, "head_xn"))
        k_gemv_xnorm(W, ldw, LOP_F16, rows, &C.xn, 1, GEMV_STORE, C.Y, VOCAB, NULL, 0, NULL, NULL, s);
}

/* whether `name` is one of the comma-separated names in `list` (whole names: "qkv_rope" does not
 * select qkv_rope_xn) */
static int listed(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *m = strstr(list, name); m; m = strstr(m + n, name))
        if ((m == list || m[-1] == ',') && (m[n] == 0 || m[n] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL; /* a comma-separated list of cases, default all */
    ctx C = {};
    C.X = fill(FFN, 7);
    C.H = fill(FFN, 8);
    C.x = zeros(DIM), C.nw = zeros(DIM), C.Y = zeros(VOCAB), C.q = zeros(NH * HD);
    {
        std::vector<float> h(DIM);
        for (int i = 0; i < DIM; i++) h[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        CK(cudaMemcpy(C.x, h.data(), DIM * sizeof(float), cudaMemcpyHostToDevice));
        for (int i = 0; i < DIM; i++) h[i] = 1.0f;
        CK(cudaMemcpy(C.nw, h.data(), DIM * sizeof(float), cudaMemcpyHostToDevice));
    }
    CK(cudaMalloc(&C.kc, (size_t)NH * MAX_SEQ * HD * sizeof(__half)));
    CK(cudaMalloc(&C.vc, (size_t)NH * MAX_SEQ * HD * sizeof(__half)));
    CK(cudaMalloc(&C.seq, sizeof(int32_t)));
    CK(cudaMalloc(&C.pos, sizeof(int32_t)));
    int32_t zero = 0, p76 = 76;
    CK(cudaMemcpy(C.seq, &zero, sizeof zero, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(C.pos, &p76, sizeof p76, cudaMemcpyHostToDevice));
    C.inv_freq = zeros(HD / 2);
    {
        std::vector<float> f(HD / 2);
        for (int j = 0; j < HD / 2; j++) f[j] = powf(10000.0f, -2.0f * j / HD);
        CK(cudaMemcpy(C.inv_freq, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice));
    }
    C.ra.seq = C.seq, C.ra.pos = C.pos, C.ra.inv_freq = C.inv_freq, C.ra.nh = NH, C.ra.nkv = NH, C.ra.hd = HD;
    C.ra.max_seq = MAX_SEQ, C.ra.q = C.q, C.ra.kc = C.kc, C.ra.vc = C.vc;
    C.xn.x = C.x, C.xn.w = C.nw, C.xn.eps = 1e-5f, C.xn.dim = DIM;

    struct shape { const char *name; int rows, ldw; } shapes[] = {
        {"o", DIM, DIM}, {"down", DIM, FFN}, {"qkv_rope_xn", 3 * DIM, DIM}, {"qkv_rope", 3 * DIM, DIM},
        {"qkv_store", 3 * DIM, DIM}, {"qkv_acc", 3 * DIM, DIM}, {"gu_swiglu_xn", 2 * FFN, DIM},
        {"gu_swiglu", 2 * FFN, DIM}, {"gu_store", 2 * FFN, DIM}, {"gu_acc", 2 * FFN, DIM}, {"head", VOCAB, DIM},
        {"head_xn", VOCAB, DIM}};
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (const shape &sh : shapes) {
        if (only && !listed(only, sh.name)) continue;
        const size_t n = (size_t)sh.rows * sh.ldw;
        std::vector<void *> W(LAYERS);
        for (int l = 0; l < LAYERS; l++) W[l] = fill(n, 100 + l);
        CK(cudaDeviceSynchronize());
        const double us = graph_us_per_launch(s, LAYERS, REPS, [&](int l) { launch(C, sh.name, W[l], sh.rows, sh.ldw, s); });
        printf("iso_%s_us %.2f\niso_%s_GBps %.0f\n", sh.name, us, sh.name, n * 2.0 / us / 1e3);
        fflush(stdout);
        for (void *w : W) CK(cudaFree(w));
    }
    return 0;
}
