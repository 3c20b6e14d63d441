/* Where the batch-1 weight stream loses its last 16 % (bench/cuda/NOTES.md, 17): in lop's decode
 * (run12's per-product trace) every product streams its weights at ~84 % of the read ceiling that
 * cuda_bw measures (a 4 GiB linear sweep, 64 warps per SM), plus a fixed cost per launch. This asks,
 * without the rest of a decode step around it, which access pattern keeps the ceiling for LLaMA-7B's
 * matrix shapes:
 *  - warp:   a warp per row (lop's GEMV: 4 x 16-byte loads in flight per lane, rows grid-strided over
 *            a resident grid of 128-thread blocks), compiled for 12 blocks per SM as lop's o/down;
 *  - warp16: the same compiled for 16 blocks per SM (64 warps, the ceiling kernel's occupancy);
 *  - block:  the 4 warps of a block share a row (adjacent 512-byte segments), summed in shared memory;
 *  - linear: the matrix as one flat array, grid-strided like cuda_bw (no dot products: the ceiling
 *            of this size and of 32 launches in a graph);
 *  - bulkS_K: the copy engine: each block owns a contiguous range of rows and one thread of a
 *            producer warp streams it into a ring of S shared-memory stages of ~K KB (whole rows,
 *            cp.async.bulk completing on an mbarrier) while 8 consumer warps take the dot products
 *            from shared memory; the blocks that fit per SM (one DRAM front per block, few threads);
 *  - warpskew, warptile: `warp` with each row started at a rotated round, or with the matrix stored
 *            so that every warp's round t is one contiguous region;
 *  - warpnc: `warp`'s loads with an xor instead of the dot products (what the arithmetic costs);
 *  - warpmma*: `warp` with the dot products on the tensor cores (lop's LOP_CUDA_GEMV_MMA), with more
 *            accumulators, double-buffered (pipe: at 10 blocks per SM, pipe8: at 8);
 *  - mma4, mma8: a block of 8 warps per 8 rows on the tensor cores, its warps splitting K;
 * (bench/cuda/NOTES.md 19 has what they measured: the arithmetic, not the pattern, was the loss)
 * each as 16 launches captured in one CUDA graph over 16 distinct matrices (half a decode step's
 * layers; together far larger than L2), median of 5 replays after one. About 10 s on an H200 (the
 * 16 gate/up matrices are 2.9 GB a replay). Prints "key value" lines:
 * stream_<shape>_<pattern>_us (per launch) and _GBps; shapes o 4096x4096, down 4096x11008,
 * qkv 12288x4096, gateup 22016x4096 (fp16). The patterns with dot products are checked against a
 * host dot product of the last matrix (check_<pattern> max relative error; o, and down for some).
 * Build: nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 (scripts/gpu_check.sh build). */
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "graph_timing.cuh"

enum { LAYERS = 16, REPS = 5, THREADS = 128, WARPS = THREADS / 32, U = 4 };

__device__ __forceinline__ float dot8(uint4 w, uint4 x) {
    const __half2 *a = reinterpret_cast<const __half2 *>(&w), *b = reinterpret_cast<const __half2 *>(&x);
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 p = __half22float2(a[k]), q = __half22float2(b[k]);
        s = fmaf(p.x, q.x, fmaf(p.y, q.y, s));
    }
    return s;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* a warp per row, rows grid-strided; nc = row length in 16-byte chunks */
template <int MINB>
__global__ void __launch_bounds__(THREADS, MINB) warp_rows(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    const int lane = threadIdx.x & 31, stride = gridDim.x * WARPS;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < rows; r += stride) {
        const uint4 *w = W + (size_t)r * nc;
        float acc = 0.f;
        for (int c0 = lane; c0 < nc; c0 += 32 * U) {
            uint4 wa[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + 32 * u < nc) wa[u] = __ldcs(w + c0 + 32 * u);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + 32 * u < nc) acc += dot8(wa[u], __ldg(x + c0 + 32 * u));
        }
        acc = warp_sum(acc);
        if (lane == 0) y[r] = acc;
    }
}

/* a warp per row in rounds of 32 x U chunks, as warp_rows, with the rows laid out or visited
 * differently. LAYOUT 1 (skew): a warp starts its row at round r mod rounds and wraps, so that the
 * warps on rows one power of two apart are not all on the same column; LAYOUT 2 (tile): the matrix
 * stored as [rounds][rows][32 x U chunks] (the last tile narrower), so that round t of every warp
 * lies in one contiguous region, the grid's front as linear's */
template <int LAYOUT>
__global__ void __launch_bounds__(THREADS, 12) warp_rows_l(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    const int lane = threadIdx.x & 31, stride = gridDim.x * WARPS, TC = 32 * U, rounds = (nc + TC - 1) / TC;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < rows; r += stride) {
        float acc = 0.f;
        for (int k = 0; k < rounds; k++) {
            const int t = LAYOUT == 1 ? (k + r) % rounds : k, c0 = t * TC, wt = min(TC, nc - c0);
            const uint4 *w = LAYOUT == 2 ? W + (size_t)c0 * rows + (size_t)r * wt : W + (size_t)r * nc + c0;
            uint4 wa[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (u * 32 + lane < wt) wa[u] = __ldcs(w + u * 32 + lane);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (u * 32 + lane < wt) acc += dot8(wa[u], __ldg(x + c0 + u * 32 + lane));
        }
        acc = warp_sum(acc);
        if (lane == 0) y[r] = acc;
    }
}

/* the same loads without the dot products (an xor, as linear): what the arithmetic of a warp per row costs */
__global__ void __launch_bounds__(THREADS, 12) warp_rows_nc(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    const int lane = threadIdx.x & 31, stride = gridDim.x * WARPS;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < rows; r += stride) {
        const uint4 *w = W + (size_t)r * nc;
        unsigned acc = 0;
        for (int c0 = lane; c0 < nc; c0 += 32 * U) {
            uint4 wa[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + 32 * u < nc) wa[u] = __ldcs(w + c0 + 32 * u);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + 32 * u < nc) acc ^= wa[u].x ^ wa[u].y ^ wa[u].z ^ wa[u].w;
        }
        if (acc == 0x9e3779b9u) y[r] = (float)acc;
    }
}

/* tensor cores for the dot products: mma m16n8k16 with the tokens as A's rows (1 of 16 used at
 * batch 1) and 8 weight rows as B's columns. Lane (g, t) loads 16 bytes of weight row g at k = 8t..8t+7
 * of a 32-wide step and the same k of x for token g; the step is two mma, the k inside it permuted
 * alike in A and B (so each sums the right products). A block of 8 warps takes 8 rows, its warps
 * splitting the steps of K; their partial sums are added in warp order. Per 16 bytes of weights a
 * lane issues one load of x and one mma instead of 16 conversions and 8 FMA. */
__device__ __forceinline__ void mma16816(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
enum { MMA_WARPS = 8 };
template <int UM>
__global__ void __launch_bounds__(MMA_WARPS * 32) mma_rows(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    __shared__ float part[MMA_WARPS][8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int steps = (nc + 3) / 4, per = (steps + MMA_WARPS - 1) / MMA_WARPS;
    const int s_begin = warp * per, s_end = min(steps, s_begin + per);
    for (int tile = blockIdx.x; tile * 8 < rows; tile += gridDim.x) {
        const uint4 *w = W + (size_t)(tile * 8 + g) * nc;
        float d[4] = {0.f, 0.f, 0.f, 0.f};
        for (int s0 = s_begin; s0 < s_end; s0 += UM) {
            uint4 wa[UM];
#pragma unroll
            for (int u = 0; u < UM; u++) {
                const int c = (s0 + u) * 4 + t;
                wa[u] = s0 + u < s_end && c < nc ? __ldcs(w + c) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < UM; u++) {
                const int c = (s0 + u) * 4 + t;
                const uint4 xv = g == 0 && s0 + u < s_end && c < nc ? __ldg(x + c) : make_uint4(0, 0, 0, 0);
                const unsigned a1[4] = {xv.x, 0u, xv.y, 0u}, b1[2] = {wa[u].x, wa[u].y};
                const unsigned a2[4] = {xv.z, 0u, xv.w, 0u}, b2[2] = {wa[u].z, wa[u].w};
                mma16816(d, a1, b1);
                mma16816(d, a2, b2);
            }
        }
        if (g == 0) part[warp][2 * t] = d[0], part[warp][2 * t + 1] = d[1];
        __syncthreads();
        if (threadIdx.x < 8) {
            float sum = 0.f;
            for (int k = 0; k < MMA_WARPS; k++) sum += part[k][threadIdx.x];
            y[tile * 8 + threadIdx.x] = sum;
        }
        __syncthreads();
    }
}

/* a warp per row as warp_rows, the dot products on the tensor cores: lane group g (lanes 4g..4g+3)
 * is row g of mma's A (its own 16-byte chunks of the row) and column g of B (x at the same k), so
 * D(g, g) is group g's partial sum: two mma per 16-byte chunk instead of 16 conversions and 8 FMA;
 * the diagonal is summed over the warp at the end (PAIR: a second row in A's rows 8..15, D(g+8, g)) */
template <int NACC, int PIPE, int MINB>
__global__ void __launch_bounds__(THREADS, MINB) warp_rows_mma(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    const int lane = threadIdx.x & 31, stride = gridDim.x * WARPS, g = lane >> 2, t = lane & 3;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < rows; r += stride) {
        const uint4 *w = W + (size_t)r * nc;
        float d[NACC][4] = {};
        uint4 wa[U];
        auto load = [&](int c0) {
#pragma unroll
            for (int u = 0; u < U; u++) wa[u] = c0 + 32 * u < nc ? __ldcs(w + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
        };
        auto use = [&](const uint4 *wv, int c0) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const uint4 xv = c0 + 32 * u < nc ? __ldg(x + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
                const unsigned a1[4] = {wv[u].x, 0u, wv[u].y, 0u}, b1[2] = {xv.x, xv.y};
                const unsigned a2[4] = {wv[u].z, 0u, wv[u].w, 0u}, b2[2] = {xv.z, xv.w};
                mma16816(d[u % NACC], a1, b1);
                mma16816(d[u % NACC], a2, b2);
            }
        };
        if (PIPE) {
            load(lane);
            for (int c0 = lane; c0 < nc; c0 += 32 * U) {
                uint4 cur[U];
#pragma unroll
                for (int u = 0; u < U; u++) cur[u] = wa[u];
                if (c0 + 32 * U < nc) load(c0 + 32 * U);
                use(cur, c0);
            }
        } else {
            for (int c0 = lane; c0 < nc; c0 += 32 * U) {
                load(c0);
                use(wa, c0);
            }
        }
        float v = 0.f;
#pragma unroll
        for (int k = 0; k < NACC; k++) v += t == (g >> 1) ? (g & 1 ? d[k][1] : d[k][0]) : 0.f;
        v = warp_sum(v);
        if (lane == 0) y[r] = v;
    }
}

/* the 4 warps of a block share a row: warp k reads chunks k*32 + lane + 128 * u, ... */
__global__ void __launch_bounds__(THREADS) block_rows(const uint4 *W, const uint4 *x, int rows, int nc, float *y) {
    __shared__ float part[WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const uint4 *w = W + (size_t)r * nc;
        float acc = 0.f;
        for (int c0 = threadIdx.x; c0 < nc; c0 += THREADS * U) {
            uint4 wa[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + THREADS * u < nc) wa[u] = __ldcs(w + c0 + THREADS * u);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c0 + THREADS * u < nc) acc += dot8(wa[u], __ldg(x + c0 + THREADS * u));
        }
        acc = warp_sum(acc);
        if (lane == 0) part[warp] = acc;
        __syncthreads();
        if (threadIdx.x == 0) y[r] = part[0] + part[1] + part[2] + part[3];
        __syncthreads();
    }
}

/* ---- the copy-engine pattern: mbarrier ring fed by cp.async.bulk */
__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    asm volatile("{\n.reg .pred p;\nW: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra W;\n}" ::"r"(smem_u32(b)),
                 "r"(parity) : "memory");
}
__device__ __forceinline__ void bulk_load(void *dst, const void *src, unsigned bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(b)) : "memory");
}

enum { BULK_CW = 8, BULK_THREADS = (BULK_CW + 1) * 32 };

/* block b owns rows [rows*b/G, rows*(b+1)/G); a stage holds rps whole rows (rps | 8), so 8 / rps
 * consumer warps share a row; their partial sums wait in shared memory and are added in a fixed
 * order once the block's rows are done */
__global__ void __launch_bounds__(BULK_THREADS) bulk_rows(const uint4 *W, const uint4 *x, int rows, int nc, float *y,
                                                          int stages, int rps, int max_rows) {
    extern __shared__ __align__(128) unsigned char sm[];
    uint64_t *full = reinterpret_cast<uint64_t *>(sm), *empty = full + stages;
    float *part = reinterpret_cast<float *>(empty + stages);  /* max_rows x BULK_CW */
    uint4 *ring = reinterpret_cast<uint4 *>(sm + (((size_t)16 * stages + (size_t)4 * max_rows * BULK_CW + 127) & ~(size_t)127));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r_begin = (int)((long long)rows * blockIdx.x / gridDim.x), r_end = (int)((long long)rows * (blockIdx.x + 1) / gridDim.x);
    const int n_stage = (r_end - r_begin + rps - 1) / rps, stage_u4 = rps * nc;
    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], BULK_CW);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (warp == BULK_CW) { /* producer */
        if (lane == 0)
            for (int i = 0; i < n_stage; i++) {
                const int s = i % stages, r = r_begin + i * rps, n = min(rps, r_end - r);
                if (i >= stages) mbar_wait(&empty[s], ((i / stages) - 1) & 1);
                mbar_expect_tx(&full[s], (unsigned)n * nc * 16);
                bulk_load(ring + (size_t)s * stage_u4, W + (size_t)r * nc, (unsigned)n * nc * 16, &full[s]);
            }
    } else {
        const int wpr = BULK_CW / rps, my_row = warp / wpr, my_part = warp % wpr;
        for (int i = 0; i < n_stage; i++) {
            const int s = i % stages, r = r_begin + i * rps, n = min(rps, r_end - r);
            mbar_wait(&full[s], (i / stages) & 1);
            if (my_row < n) {
                const uint4 *w = ring + (size_t)s * stage_u4 + (size_t)my_row * nc;
                float acc = 0.f;
#pragma unroll 4
                for (int c = my_part * 32 + lane; c < nc; c += wpr * 32) acc += dot8(w[c], __ldg(x + c));
                acc = warp_sum(acc);
                if (lane == 0) part[(r + my_row - r_begin) * BULK_CW + my_part] = acc;
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[s]);
        }
        asm volatile("bar.sync 1, %0;" ::"r"(BULK_CW * 32));
        const int wpr_all = wpr;
        for (int r = threadIdx.x; r < r_end - r_begin; r += BULK_CW * 32) {
            float t = 0.f;
            for (int k = 0; k < wpr_all; k++) t += part[r * BULK_CW + k];
            y[r_begin + r] = t;
        }
    }
}

/* the matrix as a flat array, as cuda_bw's read kernel */
__global__ void __launch_bounds__(THREADS) linear(const uint4 *p, size_t n, float *y) {
    const unsigned acc = read_xor(p, blockIdx.x * (size_t)blockDim.x + threadIdx.x, n, (size_t)gridDim.x * blockDim.x);
    if (acc == 0x9e3779b9u) y[0] = (float)acc;
}

__global__ void fill(uint4 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h[4];
        for (int k = 0; k < 4; k++) {
            unsigned v = (unsigned)(i * 4 + k) * 2654435761u ^ seed;
            v ^= v >> 15, v *= 2246822519u, v ^= v >> 13;
            h[k] = (v & 0x83ff83ffu) | 0x38003800u; /* fp16 pairs in +-[0.5, 1) */
        }
        p[i] = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

template <typename K> static int resident(K kern) {
    int dev = 0, sms = 0, per = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kern, THREADS, 0));
    return per * sms;
}

/* microseconds per launch: LAYERS launches of one pattern captured in a graph, median of REPS */
template <typename F> static float us_per_launch(cudaStream_t s, F launch_layer) {
    return graph_us_per_launch(s, LAYERS, REPS, launch_layer);
}

static float half_bits(unsigned short h) { return __half2float(*reinterpret_cast<const __half *>(&h)); }

/* max relative error of y (first matrix) against the host's dot products */
static double check(const uint4 *dW, const uint4 *dx, const float *dy, int rows, int nc, int tiled = 0) {
    size_t n = (size_t)rows * nc * 8;
    std::vector<unsigned short> w(n), x((size_t)nc * 8);
    std::vector<float> y(rows);
    CK(cudaMemcpy(w.data(), dW, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(x.data(), dx, (size_t)nc * 16, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(y.data(), dy, (size_t)rows * 4, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double s = 0, mag = 0;
        for (size_t k = 0; k < (size_t)nc * 8; k++) {
            size_t c = k / 8, at = (size_t)r * nc + c; /* chunk's place: row-major, or warp_rows_l<2>'s tiles */
            if (tiled) {
                const size_t tc = 32 * U, c0 = c / tc * tc, wt = std::min(tc, (size_t)nc - c0);
                at = c0 * rows + r * wt + (c - c0);
            }
            double p = (double)half_bits(w[at * 8 + k % 8]) * half_bits(x[k]);
            s += p, mag += fabs(p);
        }
        worst = std::max(worst, fabs(s - y[r]) / (mag > 0 ? mag : 1));
    }
    return worst;
}

int main() {
    struct { const char *name; int rows, cols; } shapes[] = {
        {"o", 4096, 4096}, {"down", 4096, 11008}, {"qkv", 12288, 4096}, {"gateup", 22016, 4096}};
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s\n", prop.name);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const int g_warp = resident(warp_rows<12>), g_warp16 = resident(warp_rows<16>), g_block = resident(block_rows),
              g_lin = resident(linear);
    printf("resident_blocks warp %d warp16 %d block %d linear %d\n", g_warp, g_warp16, g_block, g_lin);
    for (auto &sh : shapes) {
        const int nc = sh.cols / 8;
        const size_t per_u4 = (size_t)sh.rows * nc; /* uint4 per matrix */
        uint4 *W, *x;
        float *y;
        CK(cudaMalloc(&W, per_u4 * LAYERS * 16));
        CK(cudaMalloc(&x, (size_t)nc * 16));
        CK(cudaMalloc(&y, (size_t)sh.rows * 4));
        fill<<<4096, 256, 0, s>>>(W, per_u4 * LAYERS, 1u);
        fill<<<64, 256, 0, s>>>(x, nc, 7u);
        CK(cudaStreamSynchronize(s));
        const double mb = per_u4 * 16 / 1e6;
        auto report = [&](const char *pat, float us) {
            printf("stream_%s_%s_us %.2f\nstream_%s_%s_GBps %.0f\n", sh.name, pat, us, sh.name, pat, mb * 1e3 / us);
        };
        const int rows = sh.rows;
        report("warp", us_per_launch(s, [&](int l) {
                   warp_rows<12><<<std::min(g_warp, (rows + WARPS - 1) / WARPS), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        if (sh.rows == 4096 && sh.cols == 4096) printf("check_warp %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        report("warpskew", us_per_launch(s, [&](int l) {
                   warp_rows_l<1><<<std::min(g_warp, (rows + WARPS - 1) / WARPS), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        if (sh.rows == 4096) printf("check_warpskew %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        report("warptile", us_per_launch(s, [&](int l) {
                   warp_rows_l<2><<<std::min(g_warp, (rows + WARPS - 1) / WARPS), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        if (sh.rows == 4096) printf("check_warptile %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc, 1));
        auto mma_pattern = [&](const char *name, auto kern) {
            int per_sm = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, THREADS, 0));
            const int grid = std::min(per_sm * prop.multiProcessorCount, (rows + WARPS - 1) / WARPS);
            report(name, us_per_launch(s, [&](int l) { kern<<<grid, THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y); }));
            if (sh.rows == 4096) printf("check_%s %.2e\n", name, check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        };
        mma_pattern("warpmma", warp_rows_mma<1, 0, 12>);
        mma_pattern("warpmma_acc2", warp_rows_mma<2, 0, 10>);
        mma_pattern("warpmma_acc4", warp_rows_mma<4, 0, 10>);
        mma_pattern("warpmma_pipe", warp_rows_mma<1, 1, 10>);
        mma_pattern("warpmma_pipe8", warp_rows_mma<1, 1, 8>);
        report("warpnc", us_per_launch(s, [&](int l) {
                   warp_rows_nc<<<std::min(g_warp, (rows + WARPS - 1) / WARPS), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        {
            int per_sm = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mma_rows<4>, MMA_WARPS * 32, 0));
            const int grid = std::min(per_sm * prop.multiProcessorCount, rows / 8);
            report("mma4", us_per_launch(s, [&](int l) {
                       mma_rows<4><<<grid, MMA_WARPS * 32, 0, s>>>(W + l * per_u4, x, rows, nc, y);
                   }));
            if (sh.rows == 4096) printf("check_mma4 %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mma_rows<8>, MMA_WARPS * 32, 0));
            const int grid8 = std::min(per_sm * prop.multiProcessorCount, rows / 8);
            report("mma8", us_per_launch(s, [&](int l) {
                       mma_rows<8><<<grid8, MMA_WARPS * 32, 0, s>>>(W + l * per_u4, x, rows, nc, y);
                   }));
            if (sh.rows == 4096) printf("check_mma8 %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        }
        report("warp16", us_per_launch(s, [&](int l) {
                   warp_rows<16><<<std::min(g_warp16, (rows + WARPS - 1) / WARPS), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        report("block", us_per_launch(s, [&](int l) {
                   block_rows<<<std::min(g_block, rows), THREADS, 0, s>>>(W + l * per_u4, x, rows, nc, y);
               }));
        if (sh.rows == 4096 && sh.cols == 4096) printf("check_block %.2e\n", check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        /* the copy engine: stages x ~kb KB of whole rows, as many blocks per SM as the shared memory holds */
        const struct { int stages, kb; } bulk_cfg[] = {{3, 32}, {6, 8}};
        for (auto &bc : bulk_cfg) {
            const int row_kb16 = nc; /* row bytes / 16 */
            int rps = 1;
            while (rps < 8 && (size_t)(rps * 2) * row_kb16 * 16 <= (size_t)bc.kb * 1024) rps *= 2;
            const int max_rows = (rows + prop.multiProcessorCount - 1) / prop.multiProcessorCount + 1;
            const size_t smem = (((size_t)16 * bc.stages + (size_t)4 * max_rows * BULK_CW + 127) & ~(size_t)127) +
                                (size_t)bc.stages * rps * nc * 16;
            if (smem > (size_t)prop.sharedMemPerBlockOptin) continue;
            CK(cudaFuncSetAttribute(bulk_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
            int per = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, bulk_rows, BULK_THREADS, smem));
            /* every block's row range must fit max_rows */
            const int grid = std::max(1, std::min(per * prop.multiProcessorCount, rows)), mr = (rows + grid - 1) / grid + 1;
            if (mr > max_rows) continue;
            char name[32];
            snprintf(name, sizeof name, "bulk%d_%d", bc.stages, bc.kb);
            printf("bulk_config %s rows_per_stage %d blocks_per_sm %d smem %zu\n", name, rps, per, smem);
            report(name, us_per_launch(s, [&](int l) {
                       bulk_rows<<<grid, BULK_THREADS, smem, s>>>(W + l * per_u4, x, rows, nc, y, bc.stages, rps, max_rows);
                   }));
            if (sh.rows == 4096 && sh.cols == 4096) printf("check_%s %.2e\n", name, check(W + (LAYERS - 1) * per_u4, x, y, rows, nc));
        }
        report("linear", us_per_launch(s, [&](int l) { linear<<<g_lin, THREADS, 0, s>>>(W + l * per_u4, per_u4, y); }));
        CK(cudaFree(W));
        CK(cudaFree(x));
        CK(cudaFree(y));
    }
    return 0;
}
