/* The hand GEMV's device loop (k_gemv.cu's kernels and the chained products of k_chain.cu share it):
 * one product's argument (k_gemv_phase), the RMSNorm prologue of the normalised-input products, the
 * work items (a row, or the row pair of SwiGLU and RoPE) and the warp's loop over them with its
 * epilogues. Why a header: the chain kernel runs the same loops, phase after phase, inside one launch,
 * and must not differ from the single products by a line (k_gemv.cu's top comment says how the loop
 * works and what each variant measured). */
#ifndef LOP_CUDA_GEMV_LOOP_CUH
#define LOP_CUDA_GEMV_LOOP_CUH
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"
/* k_gemv.cu's switches, for the chain kernel (k_chain.cu): whether the defaults' loops are in effect
 * (the chain runs only those), LOP_CUDA_GEMV_BALANCE, LOP_CUDA_VPAIR, and a product's work items */
int k_gemv_chain_loops(void);
int k_gemv_balanced(void);
int k_gemv_vpair_on(void);
int k_gemv_items(const k_gemv_phase *a);

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
/* COH: x written earlier in the same launch (the chain kernel, k_chain.cu), so read by plain loads,
 * which the grid barrier's acquire orders, not through the read-only path */
template <typename T, int NB, int W = GEMV_WARPS, int COH = 0, int ILP = XN_ILP>
__device__ __forceinline__ void xnorm_prologue(const k_xnorm_args &xn, T *xs, int ldx) {
    __shared__ float s_ss[W][NB];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n4 = xn.dim >> 2, nt = blockDim.x;
    const float4 *wr = reinterpret_cast<const float4 *>(xn.w);
#pragma unroll
    for (int b = 0; b < NB; b++) {
        const float4 *xr = reinterpret_cast<const float4 *>(xn.x + (int64_t)b * xn.dim);
        float a = 0.f;
        for (int d0 = threadIdx.x; d0 < n4; d0 += ILP * nt) {
            float4 v[ILP];
#pragma unroll
            for (int k = 0; k < ILP; k++)
                if (d0 + k * nt < n4) v[k] = COH ? xr[d0 + k * nt] : __ldg(xr + d0 + k * nt);
#pragma unroll
            for (int k = 0; k < ILP; k++)
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
        for (int d0 = threadIdx.x; d0 < n4; d0 += ILP * nt) {
            float4 x[ILP], g[ILP];
#pragma unroll
            for (int k = 0; k < ILP; k++)
                if (d0 + k * nt < n4)
                    x[k] = COH ? xr[d0 + k * nt] : __ldg(xr + d0 + k * nt), g[k] = __ldg(wr + d0 + k * nt);
#pragma unroll
            for (int k = 0; k < ILP; k++)
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

/* chunk c of rows p0 (and p1 when pr) into wa[u] (wg[u]); past the row's end (nchunk chunks) the
 * single-row MM loop takes zeros (the mma of those lanes still runs) */
template <int U, int MM, int PAIRS>
__device__ __forceinline__ void gemv_load_chunk(const uint4 *p0, const uint4 *p1, int pr, int u, int c, int nchunk,
                                                uint4 (&wa)[U], uint4 (&wg)[U]) {
    if (c < nchunk) {
        wa[u] = __ldcs(p0 + c);
        if (pr) wg[u] = __ldcs(p1 + c);
    } else if (MM && !PAIRS) {
        wa[u] = make_uint4(0, 0, 0, 0);
    }
}
/* The first round of loads of item `item` of product a into wa (wg), as gemv_items issues it; returns
 * 1 when it did (0: no such item, or an FFN pad column, which loads nothing). Weights never depend
 * on earlier work, so this may run before the product's input exists: the chain kernel (k_chain.cu)
 * issues the next phase's first item with it before its barrier (XI's issue_next in gemv_items is
 * the same load for the warp's next item, written out there: through this function the pair
 * products took 4-6 registers more). */
template <typename T, int MODE, int U, int MM>
__device__ __forceinline__ int gemv_preload(const k_gemv_phase &a, int item, uint4 (&wa)[U], uint4 (&wg)[U]) {
    constexpr int PAIRS = MODE == GEMV_SWIGLU || MODE == GEMV_ROPE;
    if (item >= gemv_n_items<MODE>(a.rows, a.ra)) return 0;
    const gemv_item in = gemv_item_at<MODE>(item, a.rows, a.ra);
    if (in.zero_pad) return 0;
    const T *W = (const T *)a.W;
    const uint4 *n0 = reinterpret_cast<const uint4 *>(W + (int64_t)in.r0 * a.ldw);
    const uint4 *n1 = reinterpret_cast<const uint4 *>(W + (int64_t)in.r1 * a.ldw);
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int u = 0; u < U; u++) gemv_load_chunk<U, MM, PAIRS>(n0, n1, in.pair, u, lane + 32 * u, a.ldw >> 3, wa, wg);
    return 1;
}

/* The work items item, item + stride, ... of one product. XS: 1 = X is the block's copy in shared
 * memory (row stride a.ldw); 0 = a.X in global memory (row stride a.ldx), read through the read-only
 * path; 2 = the same by plain loads (the chain kernel: X written earlier in the same launch).
 * wa, wg: the caller's round registers; pre: they already hold the first item's first round
 * (gemv_preload). MM (1-2 tokens, LOP_CUDA_GEMV_MMA):
 * the dot products on the tensor cores instead of the FMA units, the loads unchanged: lane group
 * g (lanes 4g..4g+3) is row g of an m16n8k16 A with its own chunks of row r0 (rows 8..15: r1's, for
 * the pair modes) and column g of B with x at the same k, so D(g, g) and D(g + 8, g) are group g's
 * partial sums; per 16-byte chunk and token two mma replace 16 conversions and 8 FMA, and the loop
 * takes fewer issue slots between one round of loads and the next (bench/cuda/NOTES.md, 19). The
 * k order inside a chunk is the same in A and B, so each mma sums the right products. */
template <typename T, int NB, int MODE, int U, int PIPE, int XS, int MM>
__device__ __forceinline__ void gemv_items(const k_gemv_phase &a, const T *__restrict__ X, int item, int stride,
                                           uint4 (&wa)[U], uint4 (&wg)[U], int pre) {
    const T *__restrict__ W = (const T *)a.W;
    const int ldw = a.ldw, rows = a.rows, ldx = XS == 1 ? a.ldw : a.ldx;
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
    /* pre: wa (wg) already hold this item's first round (XI, or the caller's gemv_preload) */
    auto load_rows = [&](const uint4 *p0, const uint4 *p1, int pr, int u, int c) {
        gemv_load_chunk<U, MM, PAIRS>(p0, p1, pr, u, c, nchunk, wa, wg);
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
            return XS == 1   ? reinterpret_cast<const uint4 *>(X + b * ldx)[c]
                   : XS == 2 ? reinterpret_cast<const uint4 *>(X + (int64_t)b * ldx)[c]
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

#endif
