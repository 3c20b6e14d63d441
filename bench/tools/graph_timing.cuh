/* What the CUDA probes in bench/tools share: exit on a CUDA error naming the call (CK), the time
 * of one launch when n of them run inside one CUDA graph (graph_us_per_launch), which is how a
 * decode step runs its kernels, and the streaming read of the read ceiling (read_xor). Why a graph: launched one by one, each kernel would also pay the
 * host's launch cost, which the step does not. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#define CK(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e = (x);                                                                        \
        if (e != cudaSuccess) {                                                                     \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));                                 \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

/* the read ceiling's loop (cuda_bw, stream_shapes' linear, step_bound): uint4 i, i + stride, ... < n
 * of p with four 16-byte loads in flight per thread, xor-folded so that the loads are kept */
__device__ __forceinline__ unsigned read_xor(const uint4 *p, size_t i, size_t n, size_t stride) {
    unsigned acc = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride), d = __ldcs(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = __ldcs(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    return acc;
}

/* microseconds per launch: launch(0..n-1) captured in a graph on s, replayed 1 + reps times, the
 * median of the last reps */
template <typename F> static float graph_us_per_launch(cudaStream_t s, int n, int reps, F launch) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < n; l++) launch(l);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int r = 0; r <= reps; r++) {
        CK(cudaEventRecord(a, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r) t.push_back(ms * 1000.f / n);
    }
    std::sort(t.begin(), t.end());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return t[t.size() / 2];
}
