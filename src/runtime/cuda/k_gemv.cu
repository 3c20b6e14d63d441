/* Skinny GEMM for small batch (1..8 tokens): Y = X · W^T with W [rows][ldw] in fp16/bf16.
 * Why hand-written: at batch 1-8 a decode step is a pass over every weight once, so the only thing
 * that matters is streaming W at full bandwidth. A work item is one output row (two for the fused
 * epilogues that need a pair: SwiGLU's gate row j and up row f+j, RoPE's rows j and j+hd/2 of a
 * head); its warp reads it with 16-byte loads, four loads in flight per lane, and keeps the 1..8
 * token dot products in registers; X (a few KB) comes through L1. The grid is what the device holds
 * at once and each warp loops over items (LOP_CUDA_GEMV_GRID=0: one item per warp, in waves),
 * prefetching the head of its next row into L2 while it works on the current one. Rows are zero-padded to a multiple of 8
 * elements at upload, so any width (e.g. 7155) has no scalar tail, and every row starts 16-byte
 * aligned. Epilogues fuse what follows the product at small batch: residual add (+bias) into the
 * fp32 stream; SwiGLU (+biases) writing the FFN's hidden row; bias + RoPE writing q and the K/V
 * cache. With programmatic dependent launch (opt-in, LOP_CUDA_PDL=1: it measured slower, see
 * bench/cuda/NOTES.md) the first prefetch is issued before waiting for the previous kernel.
 * Loop variants for 1-2 tokens (LOP_CUDA_GEMV=v): 0 = 4 loads in flight per lane; 1 = 8; 2 = 4 with
 * the next 4 loaded before the current ones are consumed (register double buffering); 3 = 8, double
 * buffered. More bytes in flight per warp shortens the latency chain of a row, which is what bounds
 * the small (4096 x 4096) matrices of a decode step.
 * Normalised input (XN, 1..4 tokens; LOP_CUDA_XNORM=0 turns it off): the q/k/v and gate/up products
 * read the fp32 residual stream itself and every block applies the RMSNorm in its prologue (sum of
 * squares, then x * rstd * w rounded to T into shared memory, as k_rmsnorm writes it), so the two
 * RMSNorm launches of a layer disappear; the block's first weight lines are already on their way
 * to L2 while it does so. */
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#define GEMV_WARPS 4
#define GEMV_MAX_NB 8
#define XNORM_MAX_NB 4

/* XN prologue: xs[b][0..ldx) = T(w * (x[b] * rstd(x[b]))), pad zeroed (dim % 8 == 0); every thread */
template <typename T, int NB>
__device__ __forceinline__ void xnorm_prologue(const k_xnorm_args &xn, T *xs, int ldx) {
    __shared__ float s_ss[GEMV_WARPS][NB];
    __shared__ float s_inv[NB];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n4 = xn.dim >> 2;
    float ss[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) {
        const float4 *xr = reinterpret_cast<const float4 *>(xn.x + (int64_t)b * xn.dim);
        float a = 0.f;
        for (int d = threadIdx.x; d < n4; d += blockDim.x) {
            float4 v = __ldg(xr + d);
            a += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        ss[b] = warp_sum(a);
    }
    if (lane == 0)
#pragma unroll
        for (int b = 0; b < NB; b++) s_ss[warp][b] = ss[b];
    __syncthreads();
    if (threadIdx.x < NB) {
        double t = 0;
        for (int k = 0; k < GEMV_WARPS; k++) t += s_ss[k][threadIdx.x];
        s_inv[threadIdx.x] = 1.0f / sqrtf((float)(t / xn.dim) + xn.eps);
    }
    __syncthreads();
    const int n8 = ldx >> 3;
    for (int i = threadIdx.x; i < NB * n8; i += blockDim.x) {
        const int b = i / n8, c = i - b * n8;
        uint4 o = make_uint4(0, 0, 0, 0);
        if (c * 8 < xn.dim) {
            const float4 *xr = reinterpret_cast<const float4 *>(xn.x + (int64_t)b * xn.dim + c * 8);
            const float4 *wr = reinterpret_cast<const float4 *>(xn.w + c * 8);
            float4 x0 = __ldg(xr), x1 = __ldg(xr + 1), g0 = __ldg(wr), g1 = __ldg(wr + 1);
            const float inv = s_inv[b];
            float v[8] = {g0.x * (x0.x * inv), g0.y * (x0.y * inv), g0.z * (x0.z * inv), g0.w * (x0.w * inv),
                          g1.x * (x1.x * inv), g1.y * (x1.y * inv), g1.z * (x1.z * inv), g1.w * (x1.w * inv)};
            T t[8];
#pragma unroll
            for (int e = 0; e < 8; e++) t[e] = elt<T>::from_f(v[e]);
            o = *reinterpret_cast<uint4 *>(t);
        }
        reinterpret_cast<uint4 *>(xs)[i] = o;
    }
    __syncthreads();
}

/* The rows of one work item: a single row (r0 == r1) or a pair (SwiGLU gate/up, RoPE rotation). */
struct gemv_item {
    int r0, r1, pair, zero_pad, hh, j;
};
template <int MODE>
__device__ __forceinline__ int gemv_n_items(int rows, const k_rope_args &ra) {
    return MODE == GEMV_SWIGLU ? lop_pad8(rows / 2)
         : MODE == GEMV_ROPE   ? (ra.nh + ra.nkv) * (ra.hd / 2) + ra.nkv * ra.hd
                               : rows;
}
template <int MODE>
__device__ __forceinline__ gemv_item gemv_item_at(int item, int rows, const k_rope_args &ra) {
    gemv_item it = {item, item, MODE == GEMV_SWIGLU, 0, 0, 0};
    if (MODE == GEMV_SWIGLU) {
        const int f = rows / 2;
        if (item >= f) it.zero_pad = 1, it.pair = 0; /* an FFN pad column: written as zero */
        else it.r1 = item + f;
    } else if (MODE == GEMV_ROPE) {
        /* items: (nh + nkv) heads x hd/2 rotation pairs, then the v rows */
        const int half = ra.hd / 2, n_pairs = (ra.nh + ra.nkv) * half, kvd = ra.nkv * ra.hd;
        if (item < n_pairs) {
            it.hh = item / half;
            it.j = item - it.hh * half;
            it.r0 = it.hh * ra.hd + it.j;
            it.r1 = it.r0 + half;
            it.pair = 1;
        } else {
            it.r0 = it.r1 = ra.nh * ra.hd + kvd + (item - n_pairs);
        }
    }
    return it;
}
/* the first 2 KB of the item's row(s) on their way to L2 (weights never depend on earlier kernels) */
__device__ __forceinline__ void prefetch_rows(const void *W, int ldw, int esz, const gemv_item &it, int lane) {
    const int nchunk = ldw >> 3;
    if (it.zero_pad || lane >= 16 || lane * 8 >= nchunk) return;
    const char *w = (const char *)W;
    prefetch_l2(w + ((int64_t)it.r0 * ldw + lane * 64) * esz);
    if (it.pair) prefetch_l2(w + ((int64_t)it.r1 * ldw + lane * 64) * esz);
}

/* Grid-stride: a warp takes items item0, item0 + stride, ... (the launcher sizes the grid to what is
 * resident at once, so there are no waves, and the XN prologue runs once per block). */
template <typename T, int NB, int MODE, int U, int PIPE, int XN>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const T *__restrict__ W, int ldw, int rows, const T *__restrict__ X, int ldx, float *Y, int ldy,
                const float *__restrict__ bias, T *H, int ldh, k_rope_args ra, k_xnorm_args xn) {
    extern __shared__ uint4 s_dyn[];
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n_items = gemv_n_items<MODE>(rows, ra), stride = gridDim.x * GEMV_WARPS;
    int item = blockIdx.x * GEMV_WARPS + warp;
    if (item < n_items) prefetch_rows(W, ldw, sizeof(T), gemv_item_at<MODE>(item, rows, ra), lane);
    pdl_wait();
    T *xs = reinterpret_cast<T *>(s_dyn);
    if (XN) {
        xnorm_prologue<T, NB>(xn, xs, ldx);
        X = xs;
    }
    const int nchunk = ldw >> 3;
    for (; item < n_items; item += stride) {
        const gemv_item it = gemv_item_at<MODE>(item, rows, ra);
        if (item + stride < n_items) prefetch_rows(W, ldw, sizeof(T), gemv_item_at<MODE>(item + stride, rows, ra), lane);
        if (it.zero_pad) {
            if (lane < NB) H[(int64_t)lane * ldh + item] = elt<T>::from_f(0.0f);
            continue;
        }
        const int pair = it.pair, r0 = it.r0, r1 = it.r1;
        const uint4 *w0 = reinterpret_cast<const uint4 *>(W + (int64_t)r0 * ldw);
        const uint4 *w1 = reinterpret_cast<const uint4 *>(W + (int64_t)r1 * ldw);
        float acc0[NB], acc1[NB];
#pragma unroll
        for (int b = 0; b < NB; b++) acc0[b] = acc1[b] = 0.0f;

        uint4 a[U], g[U];
        auto load = [&](int c0) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                int c = c0 + 32 * u;
                if (c < nchunk) {
                    a[u] = __ldcs(w0 + c);
                    if (pair) g[u] = __ldcs(w1 + c);
                }
            }
        };
        auto consume = [&](const uint4 *aa, const uint4 *gg, int c0) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                int c = c0 + 32 * u;
                if (c < nchunk) {
                    float wf[8], wg[8];
                    load8<T>(aa[u], wf);
                    if (pair) load8<T>(gg[u], wg);
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        /* X: global (read-only path) or the block's normalised copy in shared memory */
                        uint4 xv = XN ? reinterpret_cast<const uint4 *>(X + b * ldx)[c]
                                      : __ldg(reinterpret_cast<const uint4 *>(X + (int64_t)b * ldx) + c);
                        float xf[8];
                        load8<T>(xv, xf);
#pragma unroll
                        for (int e = 0; e < 8; e++) {
                            acc0[b] = fmaf(wf[e], xf[e], acc0[b]);
                            if (pair) acc1[b] = fmaf(wg[e], xf[e], acc1[b]);
                        }
                    }
                }
            }
        };
        if (PIPE) {
            load(lane);
            for (int c0 = lane; c0 < nchunk; c0 += 32 * U) {
                uint4 ca[U], cg[U];
#pragma unroll
                for (int u = 0; u < U; u++) ca[u] = a[u], cg[u] = g[u];
                if (c0 + 32 * U < nchunk) load(c0 + 32 * U); /* next batch in flight while this one is used */
                consume(ca, cg, c0);
            }
        } else {
            for (int c0 = lane; c0 < nchunk; c0 += 32 * U) {
                load(c0);
                consume(a, g, c0);
            }
        }
#pragma unroll
        for (int b = 0; b < NB; b++) {
            acc0[b] = warp_sum(acc0[b]);
            if (MODE == GEMV_SWIGLU || MODE == GEMV_ROPE) acc1[b] = warp_sum(acc1[b]);
        }
#pragma unroll
        for (int b = 0; b < NB; b++) {
            if (lane != b) continue;
            if (MODE == GEMV_STORE) {
                Y[(int64_t)b * ldy + r0] = acc0[b];
            } else if (MODE == GEMV_ACC) {
                Y[(int64_t)b * ldy + r0] += acc0[b] + (bias ? bias[r0] : 0.0f);
            } else if (MODE == GEMV_SWIGLU) {
                float gv = acc0[b], uv = acc1[b];
                if (bias) gv += bias[r0], uv += bias[r1];
                H[(int64_t)b * ldh + r0] = elt<T>::from_f(gv / (1.0f + expf(-gv)) * uv);
            } else {
                /* as rope_cache_kernel: bias, rotate-half RoPE at pos, q (fp32) or the K/V cache (fp16) */
                const int p = ra.pos[b], qd = ra.nh * ra.hd, half = ra.hd / 2;
                const int64_t slot = ra.seq[b];
                float x0 = acc0[b], x1 = acc1[b];
                if (ra.b) x0 += ra.b[r0], x1 += ra.b[r1];
                if (pair) {
                    float an = (float)p * ra.inv_freq[it.j], sn, cs;
                    sincosf(an, &sn, &cs);
                    float y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
                    if (it.hh < ra.nh) {
                        ra.q[(int64_t)b * qd + r0] = y0;
                        ra.q[(int64_t)b * qd + r1] = y1;
                    } else {
                        __half *kr = ra.kc + ((slot * ra.nkv + (it.hh - ra.nh)) * ra.max_seq + p) * ra.hd;
                        kr[it.j] = __float2half_rn(y0);
                        kr[it.j + half] = __float2half_rn(y1);
                    }
                } else {
                    int c = r0 - qd - ra.nkv * ra.hd, g2 = c / ra.hd, d = c - g2 * ra.hd;
                    ra.vc[((slot * ra.nkv + g2) * ra.max_seq + p) * ra.hd + d] = __float2half_rn(x0);
                }
            }
        }
    }
}

int k_gemv_max_batch(void) { return GEMV_MAX_NB; }

/* blocks of this kernel resident on the whole device at once (0 when the query fails) */
template <typename K> static int resident_blocks(K kern, size_t smem) {
    static struct { const void *k; size_t smem; int blocks; } cache[64];
    static int n_cache, n_sm;
    for (int i = 0; i < n_cache; i++)
        if (cache[i].k == (const void *)kern && cache[i].smem == smem) return cache[i].blocks;
    int dev = 0, per_sm = 0;
    if (!n_sm && (cudaGetDevice(&dev) != cudaSuccess ||
                  cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess))
        n_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, GEMV_WARPS * 32, smem) != cudaSuccess) per_sm = 0;
    int blocks = per_sm * n_sm;
    if (n_cache < 64) cache[n_cache].k = (const void *)kern, cache[n_cache].smem = smem, cache[n_cache++].blocks = blocks;
    return blocks;
}

/* LOP_CUDA_GEMV_GRID=0: one work item per warp (a grid of every item, in waves) instead of a
 * resident grid looping over them */
static int gemv_resident_grid(void) {
    static int on = -1;
    if (on < 0) on = !getenv("LOP_CUDA_GEMV_GRID") || atoi(getenv("LOP_CUDA_GEMV_GRID")) != 0;
    return on;
}

template <typename T, int NB, int MODE, int U, int P, int XN>
static void go(int items, size_t smem, cudaStream_t s, const T *W, int ldw, int rows, const T *X, int ldx, float *Y,
               int ldy, const float *bias, T *H, int ldh, const k_rope_args &ra, const k_xnorm_args &xn) {
    auto kern = gemv_kernel<T, NB, MODE, U, P, XN>;
    int blocks = lop_cdiv(items, GEMV_WARPS);
    if (gemv_resident_grid()) {
        int res = resident_blocks(kern, smem);
        if (res > 0 && res < blocks) blocks = res;
    }
    launch_k(kern, dim3(blocks), dim3(GEMV_WARPS * 32), smem, s, W, ldw, rows, X, ldx, Y, ldy, bias, H, ldh, ra, xn);
}

template <typename T, int MODE, int XN>
static void launch_mode(const T *W, int ldw, int rows, const T *X, int ldx, int nb, float *Y, int ldy,
                        const float *bias, T *H, int ldh, const k_rope_args &ra, const k_xnorm_args &xn, cudaStream_t s) {
    const int v = nb <= 2 ? lop_cuda_gemv_variant() : 0;
    const size_t smem = XN ? (size_t)nb * ldx * sizeof(T) : 0;
    const int items = MODE == GEMV_SWIGLU ? lop_pad8(rows / 2)
                    : MODE == GEMV_ROPE   ? (ra.nh + ra.nkv) * (ra.hd / 2) + ra.nkv * ra.hd
                                          : rows;
#define GO(N, U, P) go<T, N, MODE, U, P, XN>(items, smem, s, W, ldw, rows, X, ldx, Y, ldy, bias, H, ldh, ra, xn)
#define CASE_V(N)                                                                                   \
    case N:                                                                                        \
        if (v == 1) GO(N, 8, 0);                                                                   \
        else if (v == 2) GO(N, 4, 1);                                                              \
        else if (v == 3) GO(N, 8, 1);                                                              \
        else GO(N, 4, 0);                                                                          \
        break;
#define CASE(N) case N: GO(N, 4, 0); break;
    switch (nb) {
        CASE_V(1) CASE_V(2) CASE(3) CASE(4)
    default:
        /* the normalised-input kernels exist for 1..XNORM_MAX_NB tokens only */
        if constexpr (!XN) {
            switch (nb) { CASE(5) CASE(6) CASE(7) CASE(8) default: break; }
        }
        break;
    }
#undef CASE
#undef CASE_V
#undef GO
}

void k_gemv(const void *W, int ldw, lop_dtype dt, int rows, const void *X, int ldx, int nb, int mode, float *Y, int ldy,
            const float *bias, void *H, int ldh, const k_rope_args *rope, cudaStream_t s) {
    if (nb <= 0 || rows <= 0) return;
    k_rope_args ra = {};
    k_xnorm_args xn = {};
    if (rope) ra = *rope;
    LOP_DISPATCH_T(dt, {
        const T *w = (const T *)W, *x = (const T *)X;
        if (mode == GEMV_STORE) launch_mode<T, GEMV_STORE, 0>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, ra, xn, s);
        else if (mode == GEMV_ACC) launch_mode<T, GEMV_ACC, 0>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, ra, xn, s);
        else if (mode == GEMV_SWIGLU) launch_mode<T, GEMV_SWIGLU, 0>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, ra, xn, s);
        else launch_mode<T, GEMV_ROPE, 0>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, ra, xn, s);
    });
}

int k_gemv_xnorm_ok(int nb, int dim, int ldw) {
    return nb >= 1 && nb <= XNORM_MAX_NB && dim % 8 == 0 && ldw >= dim && (size_t)nb * ldw * 2 <= 48 * 1024;
}

int k_gemv_xnorm_enabled(void) {
    static int on = -1;
    if (on < 0) on = !getenv("LOP_CUDA_XNORM") || atoi(getenv("LOP_CUDA_XNORM")) != 0;
    return on;
}

void k_gemv_xnorm(const void *W, int ldw, lop_dtype dt, int rows, const k_xnorm_args *xn, int nb, int mode, void *H,
                  int ldh, const float *bias, const k_rope_args *rope, cudaStream_t s) {
    if (nb <= 0 || rows <= 0) return;
    k_rope_args ra = {};
    if (rope) ra = *rope;
    LOP_DISPATCH_T(dt, {
        const T *w = (const T *)W;
        if (mode == GEMV_SWIGLU)
            launch_mode<T, GEMV_SWIGLU, 1>(w, ldw, rows, NULL, ldw, nb, NULL, 0, bias, (T *)H, ldh, ra, *xn, s);
        else
            launch_mode<T, GEMV_ROPE, 1>(w, ldw, rows, NULL, ldw, nb, NULL, 0, bias, (T *)H, ldh, ra, *xn, s);
    });
}
