/* Scoring rows on the GPU: lp[r] = logits[r][target[r]] - logsumexp(logits[r]) and whether target[r]
 * is the row's argmax (first index on ties, as lop_logits_lse). Why: evaluation scores hundreds of
 * thousands of positions; returning each row's logits means 4·vocab bytes a position over PCIe
 * (196 KB for SmolLM2) and a reduction on the host, where 12 bytes would do. One block per row; the exponentials in float,
 * their sum in double, like the CPU. */
#include <limits.h>

#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#define LP_THREADS 256

__global__ void __launch_bounds__(LP_THREADS)
    logprob_kernel(const float *__restrict__ logits, int V, const int32_t *__restrict__ target, double *lp, int *is_argmax) {
    __shared__ float s_max[LP_THREADS / 32];
    __shared__ int s_arg[LP_THREADS / 32];
    __shared__ double s_sum[LP_THREADS / 32];
    pdl_trigger();
    pdl_wait();
    const int r = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = LP_THREADS / 32;
    const float *row = logits + (int64_t)r * V;
    /* max and its first index */
    float mx = -INFINITY;
    int arg = INT_MAX;
    for (int i = threadIdx.x; i < V; i += LP_THREADS) {
        float v = row[i];
        if (v > mx) mx = v, arg = i; /* i increases: the first maximum of this thread's share */
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float om = __shfl_xor_sync(0xffffffffu, mx, o);
        int oa = __shfl_xor_sync(0xffffffffu, arg, o);
        if (om > mx || (om == mx && oa < arg)) mx = om, arg = oa;
    }
    if (lane == 0) s_max[warp] = mx, s_arg[warp] = arg;
    __syncthreads();
    mx = s_max[0], arg = s_arg[0];
    for (int k = 1; k < nw; k++)
        if (s_max[k] > mx || (s_max[k] == mx && s_arg[k] < arg)) mx = s_max[k], arg = s_arg[k];
    /* sum of exp(v - max): float terms, double sums */
    double z = 0;
    for (int i = threadIdx.x; i < V; i += LP_THREADS) z += (double)expf(row[i] - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) z += __shfl_xor_sync(0xffffffffu, z, o);
    if (lane == 0) s_sum[warp] = z;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0;
        for (int k = 0; k < nw; k++) tot += s_sum[k];
        const int t = target[r];
        lp[r] = (double)row[t] - ((double)mx + log(tot));
        is_argmax[r] = arg == t;
    }
}

void k_logprob(const float *logits, int V, int n, const int32_t *target, double *lp, int *is_argmax, cudaStream_t s) {
    if (n <= 0) return;
    launch_k(logprob_kernel, dim3(n), dim3(LP_THREADS), 0, s, logits, V, target, lp, is_argmax);
}
