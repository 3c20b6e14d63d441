/* What one synchronisation between two dependent steps costs on this GPU -- the question behind the
 * batch-1 decode experiments (GEMV chains and PDL, bench/cuda/NOTES.md 12-13), asked without the
 * products around it. Per step, in microseconds, median of 7 repetitions of 1000 steps:
 *  - graph:  1000 empty kernels captured in one CUDA graph (the gap lop's decode graph pays per product);
 *  - pdl:    the same launched with programmatic dependent launch (each kernel lets the next one launch
 *            at once and waits for its predecessor before it ends);
 *  - flat / hier: one kernel that crosses 1000 grid barriers (runtime/cuda/grid_barrier.cuh, the
 *            chains' code: one counter, or 32 group counters then a top counter);
 * for resident grids of 1, 6, 9 and 12 blocks of 128 threads per SM (the GEMV kernels hold 6-12).
 * Prints "key value" lines. Build: nvcc -O3 -gencode arch=compute_90,code=sm_90 -Isrc -Iinclude. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "runtime/cuda/grid_barrier.cuh"

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)

enum { STEPS = 1000, REPS = 7, THREADS = 128 };

__global__ void empty_kernel(unsigned *sink) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (sink && threadIdx.x == 0 && blockIdx.x == 0) atomicAdd(sink, 1u);
}

__global__ void barrier_kernel(unsigned *bar, int steps, int hier) {
    for (int i = 0; i < steps; i++) grid_barrier(bar, hier);
}

/* median over REPS of the microseconds per step of launch(), which runs STEPS steps on s */
template <typename F> static float us_per_step(cudaStream_t s, F launch) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int r = 0; r < REPS; r++) {
        CK(cudaEventRecord(a, s));
        launch();
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1000.0f / STEPS);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* a graph of STEPS empty kernels, with or without PDL */
static float graph_step_us(int blocks, int pdl, cudaStream_t s, unsigned *sink) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(THREADS);
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < STEPS; i++) CK(cudaLaunchKernelEx(&cfg, empty_kernel, i == STEPS - 1 ? sink : (unsigned *)NULL));
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, s)); /* warm-up */
    float us = us_per_step(s, [&] { CK(cudaGraphLaunch(ge, s)); });
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    return us;
}

/* one kernel crossing STEPS barriers */
static float barrier_step_us(int blocks, int hier, cudaStream_t s, unsigned *bar) {
    barrier_kernel<<<blocks, THREADS, 0, s>>>(bar, 10, hier); /* warm-up */
    CK(cudaGetLastError());
    return us_per_step(s, [&] { barrier_kernel<<<blocks, THREADS, 0, s>>>(bar, STEPS, hier); });
}

int main(void) {
    int dev = 0, n_sm = 0, per_sm = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, barrier_kernel, THREADS, 0));
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    printf("device %s\nsms %d\nbarrier_kernel_blocks_per_sm %d\n", p.name, n_sm, per_sm);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    unsigned *bar, *sink;
    CK(cudaMalloc(&bar, K_CHAIN_BAR_WORDS * sizeof(unsigned)));
    CK(cudaMemset(bar, 0, K_CHAIN_BAR_WORDS * sizeof(unsigned)));
    CK(cudaMalloc(&sink, sizeof(unsigned)));
    const int per[] = {1, 6, 9, 12};
    for (int b : per) {
        const int blocks = b * n_sm;
        printf("graph_us_per_step_%dperSM %.2f\n", b, graph_step_us(blocks, 0, s, sink));
        printf("pdl_us_per_step_%dperSM %.2f\n", b, graph_step_us(blocks, 1, s, sink));
        if (b > per_sm) { /* a barrier over blocks that cannot all be resident would never open */
            printf("flat_us_per_barrier_%dperSM not_resident\n", b);
            continue;
        }
        printf("flat_us_per_barrier_%dperSM %.2f\n", b, barrier_step_us(blocks, 0, s, bar));
        printf("hier_us_per_barrier_%dperSM %.2f\n", b, barrier_step_us(blocks, 1, s, bar));
    }
    CK(cudaFree(bar));
    CK(cudaFree(sink));
    CK(cudaStreamDestroy(s));
    return 0;
}
