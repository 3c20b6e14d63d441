/* What one synchronisation between two dependent steps costs on this GPU -- the question behind the
 * batch-1 decode experiments (GEMV chains and PDL, bench/cuda/NOTES.md 12-13), asked without the
 * products around it. Per step, in microseconds, median of 7 repetitions of 1000 steps:
 *  - graph:  1000 empty kernels captured in one CUDA graph (the gap lop's decode graph pays per product);
 *  - pdl:    the same launched with programmatic dependent launch (each kernel lets the next one launch
 *            at once and waits for its predecessor before it ends);
 *  - flat / hier: one kernel that crosses 1000 grid barriers (the GEMV chains' barrier, below: one
 *            counter, or 32 group counters then a top counter);
 * for resident grids of 1, 6, 9 and 12 blocks of 128 threads per SM (the GEMV kernels hold 6-12).
 * Prints "key value" lines. Build: nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "graph_timing.cuh"

enum { STEPS = 1000, REPS = 7, THREADS = 128 };

/* The grid barrier lop's GEMV chains used (runs 8 and 11, removed since: a barrier cost twice a
 * graph's launch gap, bench/cuda/NOTES.md 14 and 18), kept here as the thing measured. */
#define K_BAR_GROUPS 32
/* unsigned words a barrier needs, zeroed before first use (left with every count 0) */
#define K_BAR_WORDS (32 * (K_BAR_GROUPS + 2))

/* Every block of the grid waits here until all have arrived (the grid must be resident).
 * bar[1] is the generation; the last to arrive resets the count(s) and moves the generation on.
 * Flat: every block arrives on bar[0]. Two-level (hier): block b arrives on the counter of group
 * b % K_BAR_GROUPS (each on its own 128-byte line), the last of a group on the top counter, so no
 * counter takes more than ~gridDim.x / K_BAR_GROUPS serialised atomics. Writes before the barrier
 * are visible after it (fences around the atomics). */
__device__ __forceinline__ void grid_barrier(unsigned *bar, int hier) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned *gen = bar + 1;
        const unsigned g = *gen;
        __threadfence();
        int last;
        if (!hier) {
            last = atomicAdd(bar, 1u) == gridDim.x - 1;
            if (last) atomicExch(bar, 0u);
        } else {
            const unsigned ng = gridDim.x < K_BAR_GROUPS ? gridDim.x : K_BAR_GROUPS, grp = blockIdx.x % ng;
            const unsigned in_grp = (gridDim.x - grp + ng - 1) / ng; /* blocks b < gridDim.x with b % ng == grp */
            unsigned *gc = bar + 32 * (1 + grp), *top = bar + 32 * (1 + K_BAR_GROUPS);
            last = 0;
            if (atomicAdd(gc, 1u) == in_grp - 1) {
                atomicExch(gc, 0u);
                __threadfence();
                last = atomicAdd(top, 1u) == ng - 1;
                if (last) atomicExch(top, 0u);
            }
        }
        if (last) {
            __threadfence();
            atomicAdd(bar + 1, 1u);
        } else {
            /* a block that never arrives (grid not resident) would hang the device: fail the launch */
            for (long long spins = 0; *gen == g; spins++) {
                __nanosleep(32);
                if (spins > (1ll << 26)) __trap();
            }
        }
        __threadfence();
    }
    __syncthreads();
}

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
    CK(cudaMalloc(&bar, K_BAR_WORDS * sizeof(unsigned)));
    CK(cudaMemset(bar, 0, K_BAR_WORDS * sizeof(unsigned)));
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
