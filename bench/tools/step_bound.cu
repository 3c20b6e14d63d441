/* The most a batch-1 decode step built as lop builds it -- one kernel per matrix product, the
 * step's kernels in one CUDA graph -- could reach on this card (bench/cuda/NOTES.md 29).
 * Why: lop's LLaMA-7B batch-1 step reaches 87 % of the streaming-read ceiling on an H100 but 78 % on
 * an H200, and the issue's floor is 85 % on both. This replaces every product of the step by a pure
 * streaming read of its weight bytes (stream_shapes' `linear`: cuda_bw's 16-byte loads over a
 * resident grid, no arithmetic, no dependency) and times the step's graph of them, so that what is
 * left between the bound and lop's step is lop's own (the loop's arithmetic and its epilogues), and
 * what is left between the bound and the ceiling belongs to the step's shape (a ramp and a tail per
 * kernel, the launch gaps). Graphs, each timed as the median of 7 replays after one:
 *  - reads:       per layer q/k/v, o, gate/up, down, then the LM head (4 L + 1 kernels);
 *  - layer_reads: per layer one read over the same four matrices (contiguous), then the head: what
 *                 the product boundaries cost;
 *  - gaps:        `reads` with an empty one-block kernel where lop launches the embedding, each
 *                 layer's attention and the sampler (L + 2 more launches);
 *  - nonproduct:  those kernels busy for ATTN_US, SAMPLER_US and EMBED_US (globaltimer spins; the
 *                 times measured are printed): the step if lop's products were pure reads and its
 *                 other kernels cost what they cost;
 *  - chain, chain_pre: the other shape a step can take, one persistent kernel (2 blocks of 1024
 *                 threads per SM) reading the 4 L + 1 products in turn with a grid barrier between
 *                 them (release-add on a counter, acquire poll), where a real product would wait
 *                 for its input; chain_pre issues each thread's first round of the next product
 *                 before the barrier (weights never wait on anything): what a megakernel's barriers
 *                 cost against the launches they replace, before any register cost.
 * Usage: step_bound [7b|13b] [ATTN_US SAMPLER_US EMBED_US] (default 7b 4.44 23.9 2.0: lop's H200
 * in-graph times, run23's timeline). Prints "key value" lines; step_GB counts the weight bytes only
 * (lop's decode line adds the norms and the KV cache read, ~0.3 % at 7B, L = 128).
 * Build: nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 (gpu_check.sh build; run by its bound stage). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "graph_timing.cuh"

enum { THREADS = 128, REPS = 7 };

/* stream_shapes' `linear`: n uint4 from p over the grid (read_xor) */
__global__ void __launch_bounds__(THREADS) linear(const uint4 *p, size_t n, unsigned *y) {
    const unsigned acc = read_xor(p, blockIdx.x * (size_t)blockDim.x + threadIdx.x, n, (size_t)gridDim.x * blockDim.x);
    if (acc == 0x9e3779b9u) y[0] = acc; /* keeps the loads */
}

/* the chain: phase k reads ns[k] uint4 from ps[k]; a grid barrier between phases (ctr zeroed before);
 * PRE: the next phase's first round of four loads issued before the barrier, used after it */
template <int PRE>
__global__ void __launch_bounds__(1024) chain(const uint4 *const *ps, const size_t *ns, int nph,
                                             unsigned long long *ctr, unsigned *y) {
    unsigned acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    uint4 pre[4];
    int have = 0;
    for (int k = 0; k < nph; k++) {
        const uint4 *p = ps[k];
        const size_t n = ns[k];
        size_t i = i0;
        if (have) { /* the round loaded before the barrier: i0 + u * stride, u < 4, where < n */
            for (int u = 0; u < 4; u++)
                if (i0 + u * stride < n) acc ^= pre[u].x ^ pre[u].y ^ pre[u].z ^ pre[u].w;
            i += 4 * stride;
            have = 0;
        }
        acc ^= read_xor(p, i, n, stride);
        if (k + 1 == nph) break;
        if (PRE) {
            const uint4 *q = ps[k + 1];
            const size_t m = ns[k + 1];
            for (int u = 0; u < 4; u++)
                if (i0 + u * stride < m) pre[u] = __ldcs(q + i0 + u * stride);
            have = 1;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned long long want = (unsigned long long)(k + 1) * gridDim.x;
            unsigned long long v;
            asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(ctr) : "memory");
            do asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(ctr) : "memory");
            while (v < want);
        }
        __syncthreads();
    }
    if (acc == 0x9e3779b9u) y[0] = acc;
}

/* one block, busy for ns nanoseconds of the global timer (0: returns at once) */
__global__ void spin(unsigned ns) {
    if (!ns) return;
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}

/* microseconds of one replay of launch(), captured once */
template <typename F> static float graph_us(cudaStream_t s, F launch) {
    return graph_us_per_launch(s, 1, REPS, [&](int) { launch(); });
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "7b";
    const float attn_us = argc > 2 ? (float)atof(argv[2]) : 4.44f, smp_us = argc > 3 ? (float)atof(argv[3]) : 23.9f,
                emb_us = argc > 4 ? (float)atof(argv[4]) : 2.0f;
    int dim, ffn, layers, vocab = 32000;
    if (!strcmp(model, "7b")) dim = 4096, ffn = 11008, layers = 32;
    else if (!strcmp(model, "13b")) dim = 5120, ffn = 13824, layers = 40;
    else {
        fprintf(stderr, "step_bound: model '%s': expected 7b or 13b\n", model);
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s\nmodel %s\n", prop.name, model);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, linear, THREADS, 0));
    const int grid = per_sm * prop.multiProcessorCount;
    unsigned *y;
    CK(cudaMalloc(&y, 4));

    /* the read ceiling as cuda_bw measures it: 4 GiB once, 2048 threads per SM, median of 20 */
    {
        const size_t n = ((size_t)4 << 30) / 16;
        uint4 *a;
        CK(cudaMalloc(&a, n * 16));
        CK(cudaMemsetAsync(a, 0x3c, n * 16, s));
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        std::vector<float> t;
        for (int r = 0; r < 25; r++) {
            CK(cudaEventRecord(e0, s));
            linear<<<prop.multiProcessorCount * 16, THREADS, 0, s>>>(a, n, y);
            CK(cudaGetLastError());
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 5) t.push_back(ms);
        }
        std::sort(t.begin(), t.end());
        printf("read_GBps %.1f\n", n * 16 / (t[t.size() / 2] * 1e6));
        CK(cudaFree(a));
    }

    /* the weights: per layer q/k/v (3 dim rows), o, gate/up (2 ffn rows), down, contiguous; the head */
    const size_t n_qkv = (size_t)3 * dim * dim / 8, n_o = (size_t)dim * dim / 8, n_gu = (size_t)2 * ffn * dim / 8,
                 n_down = (size_t)dim * ffn / 8, n_layer = n_qkv + n_o + n_gu + n_down, n_head = (size_t)vocab * dim / 8;
    std::vector<uint4 *> Wl(layers);
    for (int l = 0; l < layers; l++) {
        CK(cudaMalloc(&Wl[l], n_layer * 16));
        CK(cudaMemsetAsync(Wl[l], 0x3c, n_layer * 16, s));
    }
    uint4 *Wh;
    CK(cudaMalloc(&Wh, n_head * 16));
    CK(cudaMemsetAsync(Wh, 0x3c, n_head * 16, s));
    CK(cudaStreamSynchronize(s));
    const double gb = (double)(n_layer * layers + n_head) * 16 / 1e9;
    printf("step_GB %.3f\nkernels_per_step %d\n", gb, 4 * layers + 1);

    auto read = [&](const uint4 *p, size_t n) { linear<<<grid, THREADS, 0, s>>>(p, n, y); };
    auto products = [&](int l) {
        const uint4 *w = Wl[l];
        read(w, n_qkv), read(w + n_qkv, n_o), read(w + n_qkv + n_o, n_gu), read(w + n_qkv + n_o + n_gu, n_down);
    };
    /* the step with lop's other kernels as spins of a, m, e nanoseconds (0: empty launches) */
    auto step = [&](unsigned a, unsigned m, unsigned e) {
        spin<<<1, 32, 0, s>>>(e);
        for (int l = 0; l < layers; l++) {
            const uint4 *w = Wl[l];
            read(w, n_qkv);
            spin<<<1, 32, 0, s>>>(a);
            read(w + n_qkv, n_o), read(w + n_qkv + n_o, n_gu), read(w + n_qkv + n_o + n_gu, n_down);
        }
        read(Wh, n_head);
        spin<<<1, 32, 0, s>>>(m);
    };
    auto report = [&](const char *name, float us) {
        printf("%s_us %.1f\n%s_tok_s %.1f\n%s_GBps %.1f\n", name, us, name, 1e6 / us, name, gb * 1e6 / us);
    };
    report("reads", graph_us(s, [&] {
               for (int l = 0; l < layers; l++) products(l);
               read(Wh, n_head);
           }));
    report("layer_reads", graph_us(s, [&] {
               for (int l = 0; l < layers; l++) read(Wl[l], n_layer);
               read(Wh, n_head);
           }));
    {   /* the chain over the same products: phase table in device memory, the counter zeroed in the graph */
        std::vector<const uint4 *> ps;
        std::vector<size_t> ns;
        for (int l = 0; l < layers; l++) {
            const uint4 *w = Wl[l];
            const uint4 *q[4] = {w, w + n_qkv, w + n_qkv + n_o, w + n_qkv + n_o + n_gu};
            const size_t m[4] = {n_qkv, n_o, n_gu, n_down};
            for (int k = 0; k < 4; k++) ps.push_back(q[k]), ns.push_back(m[k]);
        }
        ps.push_back(Wh), ns.push_back(n_head);
        const uint4 **dps;
        size_t *dns;
        unsigned long long *ctr;
        CK(cudaMalloc(&dps, ps.size() * sizeof(*dps)));
        CK(cudaMalloc(&dns, ns.size() * sizeof(*dns)));
        CK(cudaMalloc(&ctr, sizeof(*ctr)));
        CK(cudaMemcpy(dps, ps.data(), ps.size() * sizeof(*dps), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dns, ns.data(), ns.size() * sizeof(*dns), cudaMemcpyHostToDevice));
        auto run_chain = [&](const char *name, auto kern) {
            int per = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kern, 1024, 0));
            const int g = per * prop.multiProcessorCount; /* every block resident: the barrier needs it */
            report(name, graph_us(s, [&] {
                       CK(cudaMemsetAsync(ctr, 0, sizeof(*ctr), s));
                       kern<<<g, 1024, 0, s>>>(dps, dns, (int)ps.size(), ctr, y);
                   }));
            CK(cudaGetLastError());
        };
        run_chain("chain", chain<0>);
        run_chain("chain_pre", chain<1>);
        CK(cudaFree(dps));
        CK(cudaFree(dns));
        CK(cudaFree(ctr));
    }
    report("gaps", graph_us(s, [&] { step(0, 0, 0); }));
    const unsigned an = (unsigned)(attn_us * 1e3f), mn = (unsigned)(smp_us * 1e3f), en = (unsigned)(emb_us * 1e3f);
    report("nonproduct", graph_us(s, [&] { step(an, mn, en); }));
    /* what the spins took in a graph of their own, per launch (the globaltimer's resolution included) */
    printf("spin_attn_us %.2f\n", graph_us_per_launch(s, layers, REPS, [&](int) { spin<<<1, 32, 0, s>>>(an); }));
    printf("spin_sampler_us %.2f\n", graph_us_per_launch(s, 8, REPS, [&](int) { spin<<<1, 32, 0, s>>>(mn); }));
    printf("spin_embed_us %.2f\n", graph_us_per_launch(s, 8, REPS, [&](int) { spin<<<1, 32, 0, s>>>(en); }));
    printf("spin_empty_us %.2f\n", graph_us_per_launch(s, layers, REPS, [&](int) { spin<<<1, 32, 0, s>>>(0); }));
    for (auto w : Wl) CK(cudaFree(w));
    CK(cudaFree(Wh));
    CK(cudaFree(y));
    return 0;
}
