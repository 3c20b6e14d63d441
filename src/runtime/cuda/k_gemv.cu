/* Skinny GEMM for small batch (1..8 tokens): Y = X · W^T with W [rows][ldw] in fp16/bf16.
 * Why hand-written: at batch 1-8 a decode step is a pass over every weight once, so the only thing
 * that matters is streaming W at full bandwidth. A work item is one output row (two for the fused
 * epilogues that need a pair: SwiGLU's gate row j and up row f+j, RoPE's rows j and j+hd/2 of a
 * head); its warp reads it with 16-byte loads, four loads in flight per lane, and keeps the 1..8
 * token dot products in registers; X (a few KB) comes through L1. The grid is what the device holds
 * at once and each warp loops over items (LOP_CUDA_GEMV_GRID=0: one item per warp, in waves). Nothing
 * is prefetched into L2 by default: prefetching each warp's next item, or its first item's head,
 * cost 0.5-2 us a product at 7B batch 1 (bench/cuda/NOTES.md, 22; LOP_CUDA_PREFETCH_KB sets the
 * second, issued before the wait of a PDL launch). Rows are zero-padded to a multiple of 8 elements
 * at upload, so any width (e.g. 7155) has no scalar tail, and every row starts 16-byte aligned.
 * Epilogues fuse what follows the product at small batch: residual add (+bias) into the fp32
 * stream; SwiGLU (+biases) writing the FFN's hidden row; bias + RoPE writing q and the K/V cache.
 * Programmatic dependent launch is opt-in (LOP_CUDA_PDL=1: it measured slower, see
 * bench/cuda/NOTES.md).
 * Loop variants for 1-2 tokens (LOP_CUDA_GEMV=v, default 5; LOP_CUDA_GEMV_ACC=v for the single-row
 * products o, down and the LM head alone, default 7, which the head runs as 2):
 * 0 = 4 loads in flight per lane; 1 = 8; 2 = 4 with the next 4 loaded before the current ones are
 * consumed (register double buffering); 3 = 8, double buffered; 4 = 2, double buffered (a pair
 * item's two rows then keep 2 KB in flight per warp, as a single row at 0; with mma 239.9 tok/s
 * against the defaults' 242.5 at 7B batch 1 on the H200: opt-in); 5 and 6 = 0 and 2 with the warp's
 * next item's first round issued before the current item's reduction and epilogue (XI; 5 is the
 * default of the pair products: 7B batch 1 on the H200 253.5 tok/s against 249.7 with 0; in the
 * single-row products 5 and 6 lost, 243.2 and 239.1: bench/cuda/NOTES.md, 23); 7 (LOP_CUDA_GEMV_ACC
 * only; the default of o and down with the tensor cores: 256.1 tok/s against 254.9 with 2, 23) = 2
 * with the residual the epilogue adds read when the item starts, not after the reduction (the
 * LM head, which adds nothing, runs 2). (Weights loaded without an L1 line lost: 23.) At 1-2
 * tokens the dot products
 * run on the tensor cores (LOP_CUDA_GEMV_MMA, default on): the FMA work between one round of loads
 * and the next was what held the stream below the flat sweep's rate (bench/cuda/NOTES.md, 19).
 * Normalised input (XN, 1..4 tokens; LOP_CUDA_XNORM=0 turns it off): the q/k/v and gate/up products
 * (and at 1-2 tokens the LM head) read the fp32 residual stream itself and every block applies the
 * RMSNorm in its prologue (sum of squares, then x * rstd * w rounded to T into shared memory, as
 * k_rmsnorm writes it), so the two RMSNorm launches of a layer (and the head's) disappear. (A
 * prologue that waited on L2 once instead of four times, x by cp.async into 16 KB more shared memory
 * a block, lost: bench/cuda/NOTES.md, 23.) */
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

/* One product, the GEMV kernel's argument (k_gemv and k_gemv_xnorm fill it): W, its rows, the input
 * X or (xn) the residual stream to normalise, and the outputs of the mode's epilogue. */
typedef struct k_gemv_phase {
    int mode;
    const void *W;
    int ldw, rows;
    const void *X;
    int ldx;
    float *Y;
    int ldy;
    const float *bias;
    void *H;
    int ldh;
    k_rope_args ra;
    k_xnorm_args xn;
    int pf_lines; /* 128-byte lines of a warp's first row(s) prefetched before the PDL wait (0: none) */
} k_gemv_phase;

#define GEMV_WARPS 4
#define GEMV_MAX_NB 8
#define XNORM_MAX_NB 4

/* XN prologue: xs[b][0..ldx) = T(w * (x[b] * rstd(x[b]))), pad zeroed (dim % 8 == 0); every thread.
 * x, the residual stream the previous kernel wrote, is read-only here. Each pass issues XN_ILP float4
 * loads per thread before it uses them, so the prologue waits on L2 about dim / (512 XN_ILP) times a
 * pass rather than once per load (bench/cuda/NOTES.md, 22: with one load in flight per thread the
 * prologue cost each of q/k/v and gate/up ~3.3 us at 7B batch 1); XN_ILP keeps the prologue's
 * registers under the main loop's. Each output is k_rmsnorm's expression, T(w * (x * rstd)); the
 * sum of squares is grouped by this block's threads and warps (W), so rstd equals k_rmsnorm's to
 * rounding. */
#define XN_ILP 4
template <typename T, int NB, int W = GEMV_WARPS>
__device__ __forceinline__ void xnorm_prologue(const k_xnorm_args &xn, T *xs, int ldx) {
    __shared__ float s_ss[W][NB];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n4 = xn.dim >> 2, nt = blockDim.x;
    const float4 *wr = reinterpret_cast<const float4 *>(xn.w);
#pragma unroll
    for (int b = 0; b < NB; b++) {
        const float4 *xr = reinterpret_cast<const float4 *>(xn.x + (int64_t)b * xn.dim);
        float a = 0.f;
        for (int d0 = threadIdx.x; d0 < n4; d0 += XN_ILP * nt) {
            float4 v[XN_ILP];
#pragma unroll
            for (int k = 0; k < XN_ILP; k++)
                if (d0 + k * nt < n4) v[k] = __ldg(xr + d0 + k * nt);
#pragma unroll
            for (int k = 0; k < XN_ILP; k++)
                if (d0 + k * nt < n4) a += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
        }
        a = warp_sum(a);
        if (lane == 0) s_ss[warp][b] = a;
    }
    __syncthreads();
#pragma unroll
    for (int b = 0; b < NB; b++) {
        double t = 0;
        for (int k = 0; k < W; k++) t += s_ss[k][b];
        const float inv = 1.0f / sqrtf((float)(t / xn.dim) + xn.eps);
        const float4 *xr = reinterpret_cast<const float4 *>(xn.x + (int64_t)b * xn.dim);
        uint2 *o = reinterpret_cast<uint2 *>(xs + (int64_t)b * ldx);
        for (int d0 = threadIdx.x; d0 < n4; d0 += XN_ILP * nt) {
            float4 x[XN_ILP], g[XN_ILP];
#pragma unroll
            for (int k = 0; k < XN_ILP; k++)
                if (d0 + k * nt < n4) x[k] = __ldg(xr + d0 + k * nt), g[k] = __ldg(wr + d0 + k * nt);
#pragma unroll
            for (int k = 0; k < XN_ILP; k++)
                if (d0 + k * nt < n4) {
                    T t4[4] = {elt<T>::from_f(g[k].x * (x[k].x * inv)), elt<T>::from_f(g[k].y * (x[k].y * inv)),
                               elt<T>::from_f(g[k].z * (x[k].z * inv)), elt<T>::from_f(g[k].w * (x[k].w * inv))};
                    o[d0 + k * nt] = *reinterpret_cast<uint2 *>(t4);
                }
        }
        for (int i = (xn.dim >> 2) + threadIdx.x; i < (ldx >> 2); i += nt) o[i] = make_uint2(0, 0); /* the row pad */
    }
    __syncthreads();
}

/* The rows of one work item: a single row (r0 == r1) or a pair (SwiGLU gate/up, RoPE rotation). */
struct gemv_item {
    int r0, r1, pair, zero_pad, hh, j, vrows; /* vrows: a v item (1 or 2 rows), no rotation */
};
/* GEMV_ROPE's items: (nh + nkv) x hd/2 rotation pairs, then the nkv x hd v rows, one per item or
 * (ra.vpair) two, so that every warp reads two rows and none finishes at half time */
__host__ __device__ __forceinline__ int rope_items(const k_rope_args &ra) {
    const int kvd = ra.nkv * ra.hd;
    return (ra.nh + ra.nkv) * (ra.hd / 2) + (ra.vpair ? (kvd + 1) / 2 : kvd);
}
template <int MODE>
__device__ __forceinline__ int gemv_n_items(int rows, const k_rope_args &ra) {
    return MODE == GEMV_SWIGLU ? lop_pad8(rows / 2) : MODE == GEMV_ROPE ? rope_items(ra) : rows;
}
template <int MODE>
__device__ __forceinline__ gemv_item gemv_item_at(int item, int rows, const k_rope_args &ra) {
    gemv_item it = {item, item, MODE == GEMV_SWIGLU, 0, 0, 0, 0};
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
        } else if (ra.vpair) {
            const int v = 2 * (item - n_pairs);
            it.r0 = it.r1 = ra.nh * ra.hd + kvd + v;
            it.vrows = 1;
            if (v + 1 < kvd) it.r1 = it.r0 + 1, it.pair = 1, it.vrows = 2;
        } else {
            it.r0 = it.r1 = ra.nh * ra.hd + kvd + (item - n_pairs);
            it.vrows = 1;
        }
    }
    return it;
}
/* the first `lines` 128-byte lines of the item's row(s) on their way to L2 (weights never depend on
 * earlier kernels) */
__device__ __forceinline__ void prefetch_rows(const void *W, int ldw, int esz, const gemv_item &it, int lane,
                                              int lines) {
    if (it.zero_pad) return;
    const int row_lines = (ldw * esz + 127) >> 7, n = lines < row_lines ? lines : row_lines;
    const char *w0 = (const char *)W + (int64_t)it.r0 * ldw * esz, *w1 = (const char *)W + (int64_t)it.r1 * ldw * esz;
    for (int l = lane; l < n; l += 32) {
        prefetch_l2(w0 + l * 128);
        if (it.pair) prefetch_l2(w1 + l * 128);
    }
}
/* the first item's rows, a.pf_lines of them, issued before the wait for the previous kernel */
template <int MODE>
__device__ __forceinline__ void prefetch_first(const k_gemv_phase &a, int esz, int item, int lane) {
    if (a.pf_lines > 0 && item < gemv_n_items<MODE>(a.rows, a.ra))
        prefetch_rows(a.W, a.ldw, esz, gemv_item_at<MODE>(item, a.rows, a.ra), lane, a.pf_lines);
}

/* The work items item, item + stride, ... of one product. XS: X is the block's copy in shared memory
 * (row stride a.ldw), else a.X in global memory (row stride a.ldx). MM (1-2 tokens, LOP_CUDA_GEMV_MMA):
 * the dot products on the tensor cores instead of the FMA units, the loads unchanged: lane group
 * g (lanes 4g..4g+3) is row g of an m16n8k16 A with its own chunks of row r0 (rows 8..15: r1's, for
 * the pair modes) and column g of B with x at the same k, so D(g, g) and D(g + 8, g) are group g's
 * partial sums; per 16-byte chunk and token two mma replace 16 conversions and 8 FMA, and the loop
 * takes fewer issue slots between one round of loads and the next (bench/cuda/NOTES.md, 19). The
 * k order inside a chunk is the same in A and B, so each mma sums the right products. */
template <typename T, int NB, int MODE, int U, int PIPE, int XS, int MM>
__device__ __forceinline__ void gemv_items(const k_gemv_phase &a, const T *__restrict__ X, int item, int stride) {
    const T *__restrict__ W = (const T *)a.W;
    const int ldw = a.ldw, rows = a.rows, ldx = XS ? a.ldw : a.ldx;
    const k_rope_args &ra = a.ra;
    const int lane = threadIdx.x & 31, n_items = gemv_n_items<MODE>(rows, ra);
    const int nchunk = ldw >> 3;
    /* the MM loop runs every lane the same number of rounds (mma is warp-wide): it is bounded by the
     * round's first chunk, and lanes past the row's end feed zeros */
    const int lane_off = MM ? lane : 0;
    constexpr int PAIRS = MODE == GEMV_SWIGLU || MODE == GEMV_ROPE; /* items may be row pairs */
    /* PIPE bit 0: the next round's loads issued before the current round is consumed (register
     * double buffering); bit 1 (XI): the next item's first round issued as soon as the current
     * item's last round is consumed, so that its loads are in flight through the current item's
     * reduction and epilogue (bench/cuda/NOTES.md, 23: the default of the pair products); bit 2 (EY,
     * GEMV_ACC): the residual (and bias) the epilogue adds read when the item starts, not after its
     * reduction (loop variant 7, o's and down's default: bench/cuda/NOTES.md, 23) */
    constexpr int DB = PIPE & 1, XI = (PIPE >> 1) & 1, EY = (PIPE >> 2) & 1 && MODE == GEMV_ACC;
    T *H = (T *)a.H;
    uint4 wa[U], wg[U];
    int pre = 0; /* XI: wa (wg) already hold this item's first round */
    /* chunk c of rows p0 (and p1 when pr) into wa[u] (wg[u]) */
    auto load_rows = [&](const uint4 *p0, const uint4 *p1, int pr, int u, int c) {
        if (c < nchunk) {
            wa[u] = __ldcs(p0 + c);
            if (pr) wg[u] = __ldcs(p1 + c);
        } else if (MM && !PAIRS) { /* zeros past the row's end (the mma of those lanes still runs) */
            wa[u] = make_uint4(0, 0, 0, 0);
        }
    };
    for (; item < n_items; item += stride) {
        const gemv_item it = gemv_item_at<MODE>(item, rows, ra);
        if (it.zero_pad) {
            if (lane < NB) H[(int64_t)lane * a.ldh + item] = elt<T>::from_f(0.0f);
            continue;
        }
        const int pair = it.pair, r0 = it.r0, r1 = it.r1;
        const uint4 *w0 = reinterpret_cast<const uint4 *>(W + (int64_t)r0 * ldw);
        const uint4 *w1 = reinterpret_cast<const uint4 *>(W + (int64_t)r1 * ldw);
        float acc0[NB], acc1[NB], d[NB][4]; /* d: MM's accumulators */
        float ey = 0.f, eb = 0.f; /* EY: lane b's residual and bias, read now (this warp alone writes the row) */
        if (EY && lane < NB) {
            ey = __ldcg(a.Y + (int64_t)lane * a.ldy + r0);
            if (a.bias) eb = a.bias[r0];
        }
#pragma unroll
        for (int b = 0; b < NB; b++) acc0[b] = acc1[b] = d[b][0] = d[b][1] = d[b][2] = d[b][3] = 0.0f;

        auto load = [&](int c0) { /* chunks c0, c0 + 32, ... of this item's row(s) */
#pragma unroll
            for (int u = 0; u < U; u++) load_rows(w0, w1, pair, u, c0 + 32 * u);
        };
        auto issue_next = [&]() { /* XI: the first round of the warp's next item */
            if (!XI || item + stride >= n_items) return;
            const gemv_item in = gemv_item_at<MODE>(item + stride, rows, ra);
            if (in.zero_pad) return;
            const uint4 *n0 = reinterpret_cast<const uint4 *>(W + (int64_t)in.r0 * ldw);
            const uint4 *n1 = reinterpret_cast<const uint4 *>(W + (int64_t)in.r1 * ldw);
#pragma unroll
            for (int u = 0; u < U; u++) load_rows(n0, n1, in.pair, u, lane + 32 * u);
            pre = 1;
        };
        auto x_at = [&](int b, int c) {
            return XS ? reinterpret_cast<const uint4 *>(X + b * ldx)[c]
                      : __ldg(reinterpret_cast<const uint4 *>(X + (int64_t)b * ldx) + c);
        };
        auto consume_one = [&](const uint4 *aa, const uint4 *gg, int u, int c0) { /* chunk c0 + 32u, in aa[u] (gg[u]) */
            const int c = c0 + 32 * u;
            if (MM) {
                /* past the row's end: zeros (the single-row modes load them, at 40 registers instead of 48) */
                const uint4 z = make_uint4(0, 0, 0, 0), p = PAIRS && c >= nchunk ? z : aa[u];
                const uint4 q = PAIRS && pair && c < nchunk ? gg[u] : z;
                const uint32_t a_lo[4] = {p.x, q.x, p.y, q.y}, a_hi[4] = {p.z, q.z, p.w, q.w};
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    const uint4 xv = c < nchunk ? x_at(b, c) : z;
                    mma16816<T>(d[b], a_lo, xv.x, xv.y);
                    mma16816<T>(d[b], a_hi, xv.z, xv.w);
                }
            } else if (c < nchunk) {
                float wf[8], wh[8];
                load8<T>(aa[u], wf);
                if (pair) load8<T>(gg[u], wh);
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    float xf[8];
                    load8<T>(x_at(b, c), xf);
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        acc0[b] = fmaf(wf[e], xf[e], acc0[b]);
                        if (pair) acc1[b] = fmaf(wh[e], xf[e], acc1[b]);
                    }
                }
            }
        };
        auto consume = [&](const uint4 *aa, const uint4 *gg, int c0) {
#pragma unroll
            for (int u = 0; u < U; u++) consume_one(aa, gg, u, c0);
        };
        if (DB) {
            if (!pre) load(lane);
            pre = 0;
            for (int c0 = lane; c0 - lane_off < nchunk; c0 += 32 * U) {
                uint4 ca[U], cg[U];
#pragma unroll
                for (int u = 0; u < U; u++) ca[u] = wa[u], cg[u] = wg[u];
                if (c0 - lane_off + 32 * U < nchunk) load(c0 + 32 * U); /* next batch in flight while this one is used */
                else issue_next();
                consume(ca, cg, c0);
            }
        } else {
            for (int c0 = lane; c0 - lane_off < nchunk; c0 += 32 * U) {
                if (!pre) load(c0);
                pre = 0;
                consume(wa, wg, c0);
            }
            issue_next();
        }
        if (MM) { /* group g's sums sit on D's diagonal, in lane 4g + g/2 */
            const int g = lane >> 2, on = (lane & 3) == (g >> 1);
#pragma unroll
            for (int b = 0; b < NB; b++) {
                acc0[b] = on ? (g & 1 ? d[b][1] : d[b][0]) : 0.0f;
                acc1[b] = on ? (g & 1 ? d[b][3] : d[b][2]) : 0.0f;
            }
        }
#pragma unroll
        for (int b = 0; b < NB; b++) {
            acc0[b] = warp_sum(acc0[b]);
            if (PAIRS) acc1[b] = warp_sum(acc1[b]);
        }
#pragma unroll
        for (int b = 0; b < NB; b++) {
            if (lane != b) continue;
            if (MODE == GEMV_STORE) {
                a.Y[(int64_t)b * a.ldy + r0] = acc0[b];
            } else if (MODE == GEMV_ACC) {
                float *y = a.Y + (int64_t)b * a.ldy + r0;
                *y = EY ? ey + acc0[b] + eb : __ldcg(y) + acc0[b] + (a.bias ? a.bias[r0] : 0.0f);
            } else if (MODE == GEMV_SWIGLU) {
                float gv = acc0[b], uv = acc1[b];
                if (a.bias) gv += a.bias[r0], uv += a.bias[r1];
                H[(int64_t)b * a.ldh + r0] = elt<T>::from_f(gv / (1.0f + expf(-gv)) * uv);
            } else {
                /* as rope_cache_kernel: bias, rotate-half RoPE at pos, q (fp32) or the K/V cache (fp16) */
                const int p = ra.pos[b], qd = ra.nh * ra.hd, half = ra.hd / 2;
                const int64_t slot = ra.seq[b];
                float x0 = acc0[b], x1 = acc1[b];
                if (ra.b) x0 += ra.b[r0], x1 += ra.b[r1];
                if (!it.vrows) {
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
                    for (int k = 0; k < it.vrows; k++) {
                        int c = (k ? r1 : r0) - qd - ra.nkv * ra.hd, g2 = c / ra.hd, d = c - g2 * ra.hd;
                        ra.vc[((slot * ra.nkv + g2) * ra.max_seq + p) * ra.hd + d] = __float2half_rn(k ? x1 : x0);
                    }
                }
            }
        }
    }
}

/* One product. Grid-stride: a warp takes items item0, item0 + stride, ... (the launcher sizes the
 * grid to what is resident at once, so there are no waves, and the XN prologue runs once per block). */
template <typename T, int NB, int MODE, int U, int PIPE, int XN, int MM, int W = GEMV_WARPS>
__global__ void __launch_bounds__(W * 32) gemv_kernel(k_gemv_phase a) {
    extern __shared__ uint4 s_dyn[];
    TL_BEGIN();
    pdl_trigger();
    const int item = blockIdx.x * W + (threadIdx.x >> 5), stride = gridDim.x * W;
    prefetch_first<MODE>(a, sizeof(T), item, threadIdx.x & 31);
    pdl_wait();
    T *xs = reinterpret_cast<T *>(s_dyn);
    if (XN) xnorm_prologue<T, NB, W>(a.xn, xs, a.ldw);
    gemv_items<T, NB, MODE, U, PIPE, XN, MM>(a, XN ? xs : (const T *)a.X, item, stride);
    TL_END(TL_GEMV + 2 * MODE + XN);
}

LOP_TL_TU(gemv)

int k_gemv_max_batch(void) { return GEMV_MAX_NB; }

/* an integer engine switch from the environment: def when unset or empty, else clamped to lo..hi */
static int env_switch(const char *name, int def, int lo, int hi) {
    const char *e = getenv(name);
    int v = e && *e ? atoi(e) : def;
    return v < lo ? lo : v > hi ? hi : v;
}

/* Rows up to which decode products take the hand GEMV rather than cuBLASLt. On an H100
 * (bench/cuda/gemv-crossover-h100.csv: LLaMA-7B and 13B, batch 1..8) the GEMV wins at 1 row
 * (5.43 vs 5.97 ms per 7B step), ties at 2 and loses from 4 (7B batch 8: 9.31 vs 6.05 ms): its
 * per-row FMA and register cost grows with the rows while cuBLASLt's tensor-core tiles are as cheap
 * at 8 rows as at 1. Default 2; LOP_CUDA_GEMV_MAX_NB=0..8 sets it (the crossover script uses it). */
int k_gemv_route_batch(void) {
    static int nb = -1;
    if (nb < 0) nb = env_switch("LOP_CUDA_GEMV_MAX_NB", 2, 0, GEMV_MAX_NB);
    return nb;
}

/* blocks of this kernel resident on the whole device at once (0 when the query fails) */
template <typename K> static int resident_blocks(K kern, size_t smem, int threads) {
    static struct { const void *k; size_t smem; int blocks; } cache[64];
    static int n_cache, n_sm;
    for (int i = 0; i < n_cache; i++)
        if (cache[i].k == (const void *)kern && cache[i].smem == smem) return cache[i].blocks;
    int dev = 0, per_sm = 0;
    if (!n_sm && (cudaGetDevice(&dev) != cudaSuccess ||
                  cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess))
        n_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, threads, smem) != cudaSuccess) per_sm = 0;
    int blocks = per_sm * n_sm;
    if (n_cache < 64) cache[n_cache].k = (const void *)kern, cache[n_cache].smem = smem, cache[n_cache++].blocks = blocks;
    return blocks;
}

/* LOP_CUDA_GEMV_GRID=0: one work item per warp (a grid of every item, in waves) instead of a
 * resident grid looping over them */
static int gemv_resident_grid(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_GEMV_GRID", 1, 0, 1);
    return on;
}

/* LOP_CUDA_GEMV_OCC=1..100: the resident grid takes this percentage of the blocks the device holds
 * (default 100). Below 100 the next kernel of a PDL launch finds room to become resident, prefetch
 * its first rows and wait while this one drains; at batch 1 half the warps still keep about twice
 * the bytes in flight that Little's law asks of HBM3 (bench/cuda/NOTES.md, 12). */
static int gemv_occupancy_pct(void) {
    static int pct = -1;
    if (pct < 0) pct = env_switch("LOP_CUDA_GEMV_OCC", 100, 1, 100);
    return pct;
}

/* LOP_CUDA_PREFETCH_KB: how much of each warp's first row(s) a GEMV puts on its way to L2 before it
 * waits for the previous kernel. Default 0: at 7B batch 1 on the H200 every amount cost (2 KB 246.7
 * tok/s, 1 KB 249.7, none 249.8, 4 KB 240.5, 8 KB 232.6: bench/cuda/NOTES.md, 22); it may pay with
 * PDL, when that wait is long */
static int gemv_prefetch_lines(void) {
    static int lines = -1;
    if (lines < 0) lines = 8 * env_switch("LOP_CUDA_PREFETCH_KB", 0, 0, 64);
    return lines;
}

/* A resident grid of W warps over I items takes r = ceil(I / W) rounds; this shrinks it to
 * ceil(I / r) warps, so every warp takes r items (or r - 1 for the last few) instead of some r and
 * many r - 1: at 7B batch 1 the q/k/v product's v-paired items then fall exactly two to a warp
 * (bench/cuda/NOTES.md, 11 and 14: with v pairing +1.8 % at 7B batch 1 on the H200; default since,
 * LOP_CUDA_GEMV_BALANCE=0 turns it off) */
static int gemv_balance(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_GEMV_BALANCE", 1, 0, 1);
    return on;
}

template <typename T, int NB, int MODE, int U, int P, int XN, int MM, int W = GEMV_WARPS>
static void go(int items, size_t smem, cudaStream_t s, const k_gemv_phase &a) {
    auto kern = gemv_kernel<T, NB, MODE, U, P, XN, MM, W>;
    const int per_block = W; /* items a block takes at once */
    int blocks = lop_cdiv(items, per_block);
    if (gemv_resident_grid()) {
        int res = (int)((int64_t)resident_blocks(kern, smem, W * 32) * gemv_occupancy_pct() / 100);
        if (res > 0 && res < blocks) {
            blocks = res;
            if (gemv_balance()) {
                const int rounds = lop_cdiv(items, res * per_block);
                blocks = lop_cdiv(lop_cdiv(items, rounds), per_block);
            }
        }
    }
    launch_k(kern, dim3(blocks), dim3(W * 32), smem, s, a);
}

static int phase_items(const k_gemv_phase &a, int mode) {
    return mode == GEMV_SWIGLU ? lop_pad8(a.rows / 2) : mode == GEMV_ROPE ? rope_items(a.ra) : a.rows;
}

/* q/k/v's v rows two to a work item, as its RoPE pairs are (NOTES 11, 14; LOP_CUDA_VPAIR=0 turns it off) */
static int gemv_vpair(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_VPAIR", 1, 0, 1);
    return on;
}

/* LOP_CUDA_GEMV_MMA: at 1-2 tokens the dot products run on the tensor cores (gemv_items' MM); default
 * 1; 2: only in the single-row products (o, down, the LM head); 0: the FMA loop everywhere.
 * bench/tools/stream_shapes.cu measured why (bench/cuda/NOTES.md, 19): a warp per row with the same
 * loads and no arithmetic streams 7B's shapes 9-18 % faster than with its FMA work, near the flat
 * sweep's rate. H200, 7B batch 1, tok/s: FMA 235.5, mma 232.2, mma with o/down double-buffered 241.8
 * (the default), mma in o/down only, double-buffered 239.4 */
static int gemv_mma(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_GEMV_MMA", 1, 0, 2);
    return on;
}

/* LOP_CUDA_GEMV_ACC=v: the loop variant of the single-row products (o, down, the LM head) alone,
 * default 7 (4 loads double-buffered, the residual read early; the LM head 2) with the tensor
 * cores, LOP_CUDA_GEMV's without (XI taken out: 5 -> 0, 6 -> 2). o and down
 * hold 40 registers in the plain loop (12 blocks per SM, 6336 warps for 4096 rows at 7B); the LM
 * head joined them in bench/cuda/NOTES.md, 22 (67.9 -> 64.0 us alone at 7B). With the FMA loop more loads in
 * flight did not pay (bench/cuda/NOTES.md, 16: 7B batch 1 235.6 tok/s plain, 228.4 with 8 loads,
 * 234.6 double-buffered); with mma the double-buffered loop is what gains (19: 241.8 against 232.2
 * plain, the defaults of before 235.5) */
static int gemv_acc_variant(void) {
    static int v = -1;
    if (v < 0) {
        const int pv = lop_cuda_gemv_variant(); /* without XI, which lost in the single-row products (23) */
        v = env_switch("LOP_CUDA_GEMV_ACC", gemv_mma() ? 7 : pv == 5 ? 0 : pv == 6 ? 2 : pv, 0, 7);
    }
    return v;
}

/* LOP_CUDA_XN_WARPS: warps per block of the normalised-input products, 8 (default), 16 or 4
 * (GEMV_WARPS, as every other product). Set apart for q/k/v and gate/up (12 or 16 warps) they lost
 * against 8 for both (bench/cuda/NOTES.md 24; run22-h200/xn-warps-per-product.patch) */
static int gemv_xn_warps(void) {
    static int w = -1;
    if (w < 0) {
        w = env_switch("LOP_CUDA_XN_WARPS", 8, 4, 16);
        if (w != 8 && w != 16) w = GEMV_WARPS;
    }
    return w;
}

/* the normalised-input product's default loop (XI, tensor cores) in blocks of w (8 or 16) warps */
template <typename T, int NB, int MODE>
static void go_xn_blocks(int w, int items, size_t smem, cudaStream_t s, const k_gemv_phase &a) {
    if (w == 8) go<T, NB, MODE, 4, 2, 1, 1, 8>(items, smem, s, a);
    else go<T, NB, MODE, 4, 2, 1, 1, 16>(items, smem, s, a);
}

template <typename T, int MODE, int XN>
static void launch_mode(const k_gemv_phase &a, int nb, cudaStream_t s) {
    int v = nb > 2 ? 0 : MODE == GEMV_ACC || MODE == GEMV_STORE ? gemv_acc_variant() : lop_cuda_gemv_variant();
    if (v == 7 && MODE != GEMV_ACC) v = 2; /* 7 is 2 with the ACC epilogue's reads early */
    const int mm = nb <= 2 && (gemv_mma() == 1 || (gemv_mma() == 2 && MODE != GEMV_SWIGLU && MODE != GEMV_ROPE));
    const size_t smem = XN ? (size_t)nb * a.ldw * sizeof(T) : 0;
    const int items = phase_items(a, MODE);
    /* The normalised-input products (the default loop, 1-2 tokens) in blocks of 8 warps
     * (LOP_CUDA_XN_WARPS), so that an SM runs half the prologues and holds half as much of x in
     * shared memory, which leaves more L1 to the weight stream (the GEMV carveout at 100 % shared
     * memory lost 10 tok/s): 7B batch 1 on the H200 265.5 tok/s against 258.5 with 4, 264.1 with 16
     * (bench/cuda/NOTES.md 23). The block's sum of squares then adds its partial sums in another
     * grouping than k_rmsnorm's: equal to rounding, not bit-identical. */
    if constexpr (XN != 0) {
        const int w = gemv_xn_warps();
        if (w != GEMV_WARPS && v == 5 && mm && nb <= 2) {
            if (nb == 1) go_xn_blocks<T, 1, MODE>(w, items, smem, s, a);
            else go_xn_blocks<T, 2, MODE>(w, items, smem, s, a);
            return;
        }
    }
#define GO(N, U, P) (mm ? go<T, N, MODE, U, P, XN, 1>(items, smem, s, a) : go<T, N, MODE, U, P, XN, 0>(items, smem, s, a))
#define CASE_V(N)                                                                                   \
    case N:                                                                                        \
        if (v == 1) GO(N, 8, 0);                                                                   \
        else if (v == 2) GO(N, 4, 1);                                                              \
        else if (v == 3) GO(N, 8, 1);                                                              \
        else if (v == 4) GO(N, 2, 1);                                                              \
        else if (v == 5) GO(N, 4, 2);                                                              \
        else if (v == 6) GO(N, 4, 3);                                                              \
        else if (v == 7) { if constexpr (MODE == GEMV_ACC) GO(N, 4, 5); }                          \
        else GO(N, 4, 0);                                                                          \
        break;
#define CASE(N) case N: go<T, N, MODE, 4, 0, XN, 0>(items, smem, s, a); break;
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
    k_gemv_phase a = {};
    a.mode = mode, a.W = W, a.ldw = ldw, a.rows = rows, a.X = X, a.ldx = ldx, a.Y = Y, a.ldy = ldy, a.bias = bias;
    a.H = H, a.ldh = ldh, a.pf_lines = gemv_prefetch_lines();
    if (rope) a.ra = *rope, a.ra.vpair = gemv_vpair();
    LOP_DISPATCH_T(dt, {
        if (mode == GEMV_STORE) launch_mode<T, GEMV_STORE, 0>(a, nb, s);
        else if (mode == GEMV_ACC) launch_mode<T, GEMV_ACC, 0>(a, nb, s);
        else if (mode == GEMV_SWIGLU) launch_mode<T, GEMV_SWIGLU, 0>(a, nb, s);
        else launch_mode<T, GEMV_ROPE, 0>(a, nb, s);
    });
}

int k_gemv_xnorm_ok(int nb, int dim, int ldw) {
    return nb >= 1 && nb <= XNORM_MAX_NB && dim % 8 == 0 && ldw >= dim && (size_t)nb * ldw * 2 <= 48 * 1024;
}

int k_gemv_xnorm_enabled(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_XNORM", 1, 0, 1);
    return on;
}

/* The LM head with its RMSNorm in the prologue (GEMV_STORE): the head's own loop (variant 2 on the
 * tensor cores, as k_gemv runs it) in blocks of 8 warps, 1-2 tokens. It saves the k_rmsnorm launch
 * before the head: 7B batch 1 on the H200 271.4 tok/s against 270.9 (bench/cuda/NOTES.md 25);
 * LOP_CUDA_HEAD_XN=0 turns it off */
static int gemv_head_xn(void) {
    static int on = -1;
    if (on < 0) on = env_switch("LOP_CUDA_HEAD_XN", 1, 0, 1);
    return on;
}
int k_gemv_xnorm_store_ok(int nb) {
    return gemv_head_xn() && nb >= 1 && nb <= 2 && gemv_mma() >= 1 && gemv_acc_variant() == 7;
}

void k_gemv_xnorm(const void *W, int ldw, lop_dtype dt, int rows, const k_xnorm_args *xn, int nb, int mode, float *Y,
                  int ldy, void *H, int ldh, const float *bias, const k_rope_args *rope, cudaStream_t s) {
    if (nb <= 0 || rows <= 0) return;
    k_gemv_phase a = {};
    a.mode = mode, a.W = W, a.ldw = ldw, a.rows = rows, a.ldx = ldw, a.Y = Y, a.ldy = ldy, a.bias = bias, a.H = H,
    a.ldh = ldh, a.xn = *xn;
    a.pf_lines = gemv_prefetch_lines();
    if (rope) a.ra = *rope, a.ra.vpair = gemv_vpair();
    LOP_DISPATCH_T(dt, {
        if (mode == GEMV_SWIGLU) launch_mode<T, GEMV_SWIGLU, 1>(a, nb, s);
        else if (mode == GEMV_ROPE) launch_mode<T, GEMV_ROPE, 1>(a, nb, s);
        else if (nb == 1) go<T, 1, GEMV_STORE, 4, 1, 1, 1, 8>(rows, (size_t)ldw * sizeof(T), s, a);
        else if (nb == 2) go<T, 2, GEMV_STORE, 4, 1, 1, 1, 8>(rows, (size_t)2 * ldw * sizeof(T), s, a);
    });
}
