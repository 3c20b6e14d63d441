/* Causal GQA attention over the fp16 KV cache, in two shapes.
 * Why two kernels: decode has one query per sequence, so the work is a stream over the cache that
 * must run at memory bandwidth and be spread over enough blocks — one block per (token, KV head,
 * KV chunk), all query heads of the group sharing each K/V row read, 4 warps × 4 keys of loads in
 * flight (16 warps where the context is split over blocks, 8 above head_dim 128; where a KV head
 * serves one query head, as in LLaMA-7B, the ONE kernel: 32 warps, keys interleaved), chunks combined
 * by the last block of each group to finish (split-K over the KV length for long contexts; the grid
 * is fixed by max_seq so a captured CUDA graph stays valid as the context grows, holds no more
 * chunks than max_seq keys fill, and each token's blocks use as many chunks as its context fills
 * with >= 256 keys; no second kernel launch).
 * Prefill has many queries per sequence, so K/V tiles are staged once in shared memory and reused
 * by a tile of 32 queries (flash-attention style online softmax, scores never leave the SM); this
 * is the general path: any ragged batch can be cut into such tiles. For head_dim 64 and 128 the tile's products
 * run on the tensor cores (mma.sync m16n8k16, fp16 inputs, fp32 accumulation, FlashAttention-2
 * register layout: the score fragments become the A operand of P·V without leaving registers);
 * other head sizes, or LOP_CUDA_ATTN_FMA=1, use the fp32 FMA version.
 * Scores use 1/sqrt(head_dim) and expf, accumulate in fp32; K/V are fp16 in the cache. */
#include <math.h>
#include <stdlib.h>

#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#define DEC_WARPS_MAX 16 /* the default where the context is split (head_dim <= 128; 8 above) */
#define DEC_U 4 /* keys per warp per iteration: K and V rows of all of them are loaded first */
#define DEC_GMAX 4 /* query heads of one KV group handled by one block */

LOP_TL_TU(attention)

/* ---- decode ------------------------------------------------------------------------------ */
/* DEC_WARPS: warps per block (4, 8, 16; 32 only with ONE). ONE (LOP_CUDA_ATTN_ONE, where a KV
 * head serves one query head): one head a block instead of up to DEC_GMAX (the unused heads' loops,
 * registers and shared memory gone), warp w takes keys w, w + DEC_WARPS, ... (every warp a share of
 * a short context, U keys each a round), and the combine weighs each warp once (warp 0 finds the
 * weights) instead of every thread redoing the max and the exponentials over the warps. */
template <typename T, int NP, int DEC_WARPS, int ONE = 0, int U = DEC_U>
__global__ void __launch_bounds__(DEC_WARPS * 32)
    attn_decode_kernel(const float *__restrict__ q, const __half *__restrict__ kc, const __half *__restrict__ vc,
                       const int32_t *seq, const int32_t *pos, int nh, int nkv, int hd, int max_seq, int nsplit,
                       int chunk, int min_keys, float *part, int *counters, T *out, int ld_out, int spec_slots) {
    constexpr int GM = ONE ? 1 : DEC_GMAX; /* query heads a block */
    __shared__ float s_m[DEC_WARPS][GM], s_l[DEC_WARPS][GM];
    __shared__ float s_acc[DEC_WARPS][GM][64 * NP];
    __shared__ float s_w[ONE ? DEC_WARPS : 1], s_ML[2];
    __shared__ int s_last;
    TL_BEGIN();
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int G = nh / nkv, n_gc = (G + GM - 1) / GM;
    const int g = blockIdx.y / n_gc, gc = blockIdx.y - g * n_gc;
    const int h0 = g * G + gc * GM, ng = min(GM, G - gc * GM);
    const int split = blockIdx.z;
    /* ONE, first chunk (LOP_CUDA_ATTN_SPEC): the first round of K/V rows loaded from slot i before
     * seq[i] and pos[i] arrive, so that they do not wait for that round trip; used where slot i is
     * the token's (the engine's decode steps), else loaded again. Keys past the context are loaded
     * (within max_seq) and never used. */
    constexpr int KS = ONE ? DEC_WARPS : 1; /* stride between a warp's keys in a round */
    float2 kr[U][NP], vr[U][NP];
    /* one round: keys k0, k0 + KS, ... of the rows at K / V (zeros from key `bound` on) */
    auto load_round = [&](const __half *K, const __half *V, int k0, int bound) {
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int j = 0; j < NP; j++) {
                const int k = k0 + KS * u, p = lane + 32 * j;
                if (k < bound && 2 * p < hd) {
                    kr[u][j] = __half22float2(*reinterpret_cast<const __half2 *>(K + (int64_t)k * hd + 2 * p));
                    vr[u][j] = __half22float2(*reinterpret_cast<const __half2 *>(V + (int64_t)k * hd + 2 * p));
                } else {
                    kr[u][j] = vr[u][j] = make_float2(0.f, 0.f);
                }
            }
    };
    int pre = 0;
    if (ONE && split == 0 && i < spec_slots) {
        const int64_t at = ((int64_t)i * nkv + g) * max_seq * hd;
        load_round(kc + at, vc + at, warp, max_seq);
        pre = 1;
    }
    /* q before seq and pos, so that its loads need not wait for theirs (a block past the context
     * loads it for nothing) */
    const float scale = 1.0f / sqrtf((float)hd);
    float2 qv[GM][NP];
#pragma unroll
    for (int h = 0; h < GM; h++)
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int p = lane + 32 * j;
            if (h < ng && 2 * p < hd) {
                const float2 qr = *reinterpret_cast<const float2 *>(q + ((int64_t)i * nh + h0 + h) * hd + 2 * p);
                qv[h][j] = make_float2(qr.x * scale, qr.y * scale);
            } else {
                qv[h][j] = make_float2(0.f, 0.f);
            }
        }
    const int ctx = pos[i] + 1;
    const int64_t slot = seq[i];
    /* min_keys > 0: this token's context is cut into ns <= nsplit chunks of at least min_keys keys, so
     * a short context takes one or two blocks and no combine instead of nsplit mostly empty blocks
     * and a combine pass (the grid is fixed by the longest context, for the CUDA graph) */
    const int ns = min_keys > 0 ? max(1, min(nsplit, (ctx + min_keys - 1) / min_keys)) : nsplit;
    if (split >= ns) {
        TL_END(TL_ATTN_DECODE);
        return;
    }
    const int ch = min_keys > 0 ? (ctx + ns - 1) / ns : chunk;
    const int kb = split * ch, ke = min(ctx, kb + ch);
    const __half *Kb = kc + (slot * nkv + g) * (int64_t)max_seq * hd;
    const __half *Vb = vc + (slot * nkv + g) * (int64_t)max_seq * hd;
    float m[GM], l[GM];
    float2 acc[GM][NP];
#pragma unroll
    for (int h = 0; h < GM; h++) {
        m[h] = -INFINITY;
        l[h] = 0.f;
#pragma unroll
        for (int j = 0; j < NP; j++) acc[h][j] = make_float2(0.f, 0.f);
    }

    pre = pre && slot == i && kb == 0;
    for (int k0 = kb + (ONE ? warp : warp * U); k0 < ke; k0 += DEC_WARPS * U) {
        if (!pre) load_round(Kb, Vb, k0, ke);
        pre = 0;
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (k0 + KS * u >= ke) break;
#pragma unroll
            for (int h = 0; h < GM; h++) {
                if (h >= ng) break;
                float s = 0.f;
#pragma unroll
                for (int j = 0; j < NP; j++) s += qv[h][j].x * kr[u][j].x + qv[h][j].y * kr[u][j].y;
                s = warp_sum(s);
                float mn = fmaxf(m[h], s), corr = expf(m[h] - mn), pe = expf(s - mn);
                l[h] = l[h] * corr + pe;
                m[h] = mn;
#pragma unroll
                for (int j = 0; j < NP; j++) {
                    acc[h][j].x = acc[h][j].x * corr + pe * vr[u][j].x;
                    acc[h][j].y = acc[h][j].y * corr + pe * vr[u][j].y;
                }
            }
        }
    }
    /* combine the warps */
#pragma unroll
    for (int h = 0; h < GM; h++) {
        if (lane == 0) s_m[warp][h] = m[h], s_l[warp][h] = l[h];
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int p = lane + 32 * j;
            s_acc[warp][h][2 * p] = acc[h][j].x;
            s_acc[warp][h][2 * p + 1] = acc[h][j].y;
        }
    }
    __syncthreads();
    if (ONE) { /* warp 0: each warp's weight exp(m_w - M), and M, L */
        if (warp == 0) {
            float mw = -INFINITY, lw = 0.f;
            if (lane < DEC_WARPS) mw = s_m[lane][0], lw = s_l[lane][0];
            const float M = warp_max(mw), e = mw == -INFINITY ? 0.f : expf(mw - M);
            const float L = warp_sum(e * lw);
            if (lane < DEC_WARPS) s_w[lane] = e;
            if (lane == 0) s_ML[0] = M, s_ML[1] = L;
        }
        __syncthreads();
    }
    for (int t = threadIdx.x; t < ng * hd; t += blockDim.x) {
        int h = t / hd, d = t - h * hd;
        if (ONE) {
            float A = 0.f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) A += s_w[w] * s_acc[w][0][d];
            if (ns == 1) {
                out[(int64_t)i * ld_out + h0 * hd + d] = elt<T>::from_f(A / s_ML[1]);
            } else {
                float *pp = part + (((int64_t)i * nh + h0) * nsplit + split) * (hd + 2);
                pp[d] = A;
                if (d == 0) pp[hd] = s_ML[0], pp[hd + 1] = s_ML[1];
            }
            continue;
        }
        float M = -INFINITY;
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, s_m[w][h]);
        float A = 0.f, L = 0.f;
        if (M != -INFINITY)
            for (int w = 0; w < DEC_WARPS; w++) {
                if (s_m[w][h] == -INFINITY) continue;
                float e = expf(s_m[w][h] - M);
                A += e * s_acc[w][h][d];
                L += e * s_l[w][h];
            }
        if (ns == 1) {
            out[(int64_t)i * ld_out + (h0 + h) * hd + d] = elt<T>::from_f(A / L);
        } else {
            float *pp = part + (((int64_t)i * nh + h0 + h) * nsplit + split) * (hd + 2);
            pp[d] = A;
            if (d == 0) pp[hd] = M, pp[hd + 1] = L;
        }
    }
    if (ns > 1) {
        /* the last block of this (token, head group) to finish combines the chunks */
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            int *cnt = counters + (int64_t)i * gridDim.y + blockIdx.y;
            int prev = atomicAdd(cnt, 1);
            s_last = prev == ns - 1;
            if (s_last) *cnt = 0; /* ready for the next launch */
        }
        __syncthreads();
        if (!s_last) {
            TL_END(TL_ATTN_DECODE);
            return;
        }
        __threadfence();
        for (int t = threadIdx.x; t < ng * hd; t += blockDim.x) {
            int h = t / hd, d = t - h * hd;
            const float *base = part + ((int64_t)i * nh + h0 + h) * nsplit * (hd + 2);
            float M = -INFINITY;
            for (int sp = 0; sp < ns; sp++) M = fmaxf(M, __ldcg(base + sp * (hd + 2) + hd));
            float A = 0.f, L = 0.f;
            for (int sp = 0; sp < ns; sp++) {
                const float *pp = base + sp * (hd + 2);
                float ms = __ldcg(pp + hd);
                if (ms == -INFINITY) continue;
                float e = expf(ms - M);
                A += e * __ldcg(pp + d);
                L += e * __ldcg(pp + hd + 1);
            }
            out[(int64_t)i * ld_out + (h0 + h) * hd + d] = elt<T>::from_f(A / L);
        }
    }
    if (blockIdx.y == 0)
        for (int c = nh * hd + threadIdx.x; c < ld_out; c += blockDim.x) out[(int64_t)i * ld_out + c] = elt<T>::from_f(0.f);
    TL_END(TL_ATTN_DECODE);
}

/* keys per chunk at least (LOP_CUDA_ATTN_MINKEYS; 0 = fixed chunks of max_seq / nsplit, as before):
 * default 256; 7B batch 1 on the H200, attention per layer inside the graph (bench/cuda_timeline.sh):
 * 7.12 us with 4 warps and fixed chunks, 7.91 with 8 warps at 64 keys, 6.95 at 256
 * (bench/cuda/NOTES.md 20) */
static int dec_min_keys(void) {
    static int k = -1;
    if (k < 0) k = getenv("LOP_CUDA_ATTN_MINKEYS") ? atoi(getenv("LOP_CUDA_ATTN_MINKEYS")) : 256;
    return k;
}

/* warps per decode block where the context is split: 16 (64 keys a pass, so a 7B batch-1 context
 * of up to 128 keys takes 2 dependent rounds of K/V loads, not 4: 7B batch 1 on the H200 257.2
 * tok/s against 254.9 with 8, bench/cuda/NOTES.md 23); LOP_CUDA_ATTN_WARPS=4 or 8 sets it. Above
 * head_dim 128 the 16-warp block's shared memory is too large: 8 there. */
static int dec_warps(void) {
    static int w = -1;
    if (w < 0) {
        const int e = getenv("LOP_CUDA_ATTN_WARPS") ? atoi(getenv("LOP_CUDA_ATTN_WARPS")) : 0;
        w = e == 4 || e == 8 ? e : DEC_WARPS_MAX;
    }
    return w;
}

/* LOP_CUDA_ATTN_SPEC: the ONE kernels' first K/V round loaded before seq and pos arrive (default 1;
 * 0 off). 7B batch 1 on the H200: attention 4.70 -> 4.45 us a layer inside the graph, 271.5 against
 * 271.4 tok/s (bench/cuda/NOTES.md 25) */
static int dec_spec(void) {
    static int on = -1;
    if (on < 0) on = lop_env_int("LOP_CUDA_ATTN_SPEC", 1) != 0;
    return on;
}

/* The ONE kernels where a KV head serves one query head and the context is split over blocks (few
 * tokens), head_dim <= 128: 32 warps of 4 keys a round (LOP_CUDA_ATTN_ONE=16: 16 of 8), so a context
 * of up to 128 keys takes one round of loads; 0 the DEC_GMAX kernels. 7B batch 1 on the H200
 * (bench/cuda/NOTES.md 24): attention 6.20 -> 4.19 us a layer inside the graph (16 warps; 32: 4.62),
 * 265.6 -> 268.3 tok/s (32; 16: 268.0) */
static int dec_one(void) {
    static int w = -1;
    if (w < 0) {
        const char *e = getenv("LOP_CUDA_ATTN_ONE");
        w = e && *e ? atoi(e) : 32;
        if (w != 16 && w != 32) w = 0;
    }
    return w;
}

/* LOP_CUDA_ATTN_GRIDCUT: the decode grid cut to the chunks a context of max_seq keys can fill
 * (default 1; 0: the grid of k_attn_decode_splits, as before). At 7B batch 1, L = 128 on the H200
 * that is 32 blocks instead of 96, time-neutral: attention 4.53 against 4.55 us a layer, 269.5
 * against 269.0 tok/s (bench/cuda/NOTES.md 26) */
static int dec_grid_cut(void) {
    static int on = -1;
    if (on < 0) on = lop_env_int("LOP_CUDA_ATTN_GRIDCUT", 1) != 0;
    return on;
}

int k_attn_decode_splits(int n, int nkv, int ctx_bound, int n_sm) {
    int blocks = n * nkv;
    if (blocks >= n_sm) return 1;
    int want = lop_cdiv(2 * n_sm, blocks), most = lop_cdiv(ctx_bound, dec_warps() * DEC_U); /* >= one pass of the warps */
    int s = want < most ? want : most;
    if (s > 32) s = 32;
    return s < 1 ? 1 : s;
}

/* the decode kernel of NP pairs a lane and nw warps a block (16 only for NP <= 2: shared memory) */
template <typename T, int NP, typename... A>
static void launch_decode_np(int nw, dim3 grid, cudaStream_t s, A... args) {
    if (nw == 4) launch_k(attn_decode_kernel<T, NP, 4>, grid, dim3(4 * 32), 0, s, args...);
    else if constexpr (NP <= 2) {
        if (nw == 16) launch_k(attn_decode_kernel<T, NP, 16>, grid, dim3(16 * 32), 0, s, args...);
        else launch_k(attn_decode_kernel<T, NP, 8>, grid, dim3(8 * 32), 0, s, args...);
    } else {
        launch_k(attn_decode_kernel<T, NP, 8>, grid, dim3(8 * 32), 0, s, args...);
    }
}

template <typename T>
static void launch_decode(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos,
                          int n, int nh, int nkv, int hd, int max_seq, int n_slots, int nsplit, float *part,
                          int *counters, T *out, int ld_out, cudaStream_t s) {
    int G = nh / nkv, n_gc = (G + DEC_GMAX - 1) / DEC_GMAX;
    const int min_keys = dec_min_keys();
    /* 16 (8) warps only where the context is split over blocks (few tokens): with one block per
     * (token, group) the 4-warp blocks measured faster (7B batch 256 on the H200: 20,824 tok/s with
     * 4, 18,314 with 8; bench/cuda/NOTES.md 20) */
    const int np = (hd + 63) / 64, few = nsplit > 1, nw = few ? dec_warps() : 4;
    /* no more chunks than a context of max_seq keys fills with min_keys each: the others' blocks
     * would only start, read pos and leave (LOP_CUDA_ATTN_GRIDCUT=0 keeps them) */
    if (min_keys > 0 && dec_grid_cut() && nsplit > lop_cdiv(max_seq, min_keys)) nsplit = lop_cdiv(max_seq, min_keys);
    int chunk = lop_cdiv(max_seq, nsplit);
    dim3 grid(n, nkv * n_gc, nsplit);
    if (G == 1 && np <= 2 && few && dec_one()) {
        auto k = dec_one() == 32 ? (np == 1 ? attn_decode_kernel<T, 1, 32, 1, 4> : attn_decode_kernel<T, 2, 32, 1, 4>)
                                 : (np == 1 ? attn_decode_kernel<T, 1, 16, 1, 8> : attn_decode_kernel<T, 2, 16, 1, 8>);
        launch_k(k, grid, dim3(dec_one() * 32), 0, s, q, kc, vc, seq, pos, nh, nkv, hd, max_seq, nsplit, chunk, min_keys,
                 part, counters, out, ld_out, dec_spec() ? n_slots : 0);
        return;
    }
#define DEC_ARGS                                                                                   \
    nw, grid, s, q, kc, vc, seq, pos, nh, nkv, hd, max_seq, nsplit, chunk, min_keys, part, counters, out, ld_out, 0
    switch (np) {
    case 1: launch_decode_np<T, 1>(DEC_ARGS); break;
    case 2: launch_decode_np<T, 2>(DEC_ARGS); break;
    case 3: launch_decode_np<T, 3>(DEC_ARGS); break;
    default: launch_decode_np<T, 4>(DEC_ARGS); break;
    }
#undef DEC_ARGS
}

void k_attn_decode(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos, int n,
                   int nh, int nkv, int hd, int max_seq, int n_slots, int nsplit, float *part, int *counters, void *out,
                   int ld_out, lop_dtype dt, cudaStream_t s) {
    if (n <= 0) return;
    LOP_DISPATCH_T(dt, launch_decode<T>(q, kc, vc, seq, pos, n, nh, nkv, hd, max_seq, n_slots, nsplit, part, counters,
                                        (T *)out, ld_out, s));
}

/* ---- prefill ----------------------------------------------------------------------------- */
#define PF_Q LOP_ATTN_TILE /* queries per block */
#define PF_K 32            /* keys per tile */
#define PF_THREADS 128

static size_t prefill_smem(int hd) {
    return sizeof(float) * ((size_t)PF_Q * hd + (size_t)PF_K * (hd + 1) + (size_t)PF_K * hd + PF_Q * PF_K + 4 * PF_Q);
}

int k_attn_prefill_smem_ok(int hd) { return prefill_smem(hd) <= 200 * 1024 && hd <= 256; }

template <typename T, int NS>
__global__ void __launch_bounds__(PF_THREADS)
    attn_prefill_kernel(const float *__restrict__ q, const __half *__restrict__ kc, const __half *__restrict__ vc,
                        const int32_t *seq, const int32_t *pos, const int32_t *tile_start, int nh, int nkv, int hd,
                        int max_seq, T *out, int ld_out) {
    extern __shared__ float4 sm4[];
    float *sQ = reinterpret_cast<float *>(sm4);    /* [PF_Q][hd], pre-scaled */
    float *sK = sQ + PF_Q * hd;                    /* [PF_K][hd + 1] */
    float *sV = sK + PF_K * (hd + 1);              /* [PF_K][hd] */
    float *sP = sV + PF_K * hd;                    /* [PF_Q][PF_K] */
    float *sM = sP + PF_Q * PF_K, *sL = sM + PF_Q, *sA = sL + PF_Q;
    int *sPos = reinterpret_cast<int *>(sA + PF_Q);
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = h / (nh / nkv);
    const int i0 = tile_start[t], nq = tile_start[t + 1] - i0;
    const int64_t slot = seq[i0];
    const int maxpos = pos[i0 + nq - 1];
    const float scale = 1.0f / sqrtf((float)hd);
    for (int e = tid; e < PF_Q * hd; e += PF_THREADS) {
        int r = e / hd, d = e - r * hd;
        sQ[e] = r < nq ? q[((int64_t)(i0 + r) * nh + h) * hd + d] * scale : 0.f;
    }
    if (tid < PF_Q) {
        sPos[tid] = tid < nq ? pos[i0 + tid] : -1;
        sM[tid] = -INFINITY;
        sL[tid] = 0.f;
    }
    const __half *Kb = kc + (slot * nkv + g) * (int64_t)max_seq * hd;
    const __half *Vb = vc + (slot * nkv + g) * (int64_t)max_seq * hd;
    float acc[NS][PF_Q];
#pragma unroll
    for (int s = 0; s < NS; s++)
#pragma unroll
        for (int r = 0; r < PF_Q; r++) acc[s][r] = 0.f;
    const int hh = hd / 2;
    __syncthreads();

    for (int kt = 0; kt <= maxpos; kt += PF_K) {
        for (int e = tid; e < PF_K * hh; e += PF_THREADS) {
            int j = e / hh, d = 2 * (e - j * hh), k = kt + j;
            float2 kv = make_float2(0.f, 0.f), vv = make_float2(0.f, 0.f);
            if (k <= maxpos) {
                kv = __half22float2(*reinterpret_cast<const __half2 *>(Kb + (int64_t)k * hd + d));
                vv = __half22float2(*reinterpret_cast<const __half2 *>(Vb + (int64_t)k * hd + d));
            }
            sK[j * (hd + 1) + d] = kv.x;
            sK[j * (hd + 1) + d + 1] = kv.y;
            sV[j * hd + d] = vv.x;
            sV[j * hd + d + 1] = vv.y;
        }
        __syncthreads();
        /* scores: warp w owns query rows 8w..8w+7, lane = key */
        float s[8];
#pragma unroll
        for (int rr = 0; rr < 8; rr++) s[rr] = 0.f;
        const float *kr = sK + lane * (hd + 1);
        if ((hd & 3) == 0) {
            for (int d = 0; d < hd; d += 4) {
                float k0 = kr[d], k1 = kr[d + 1], k2 = kr[d + 2], k3 = kr[d + 3];
#pragma unroll
                for (int rr = 0; rr < 8; rr++) {
                    float4 qq = *reinterpret_cast<const float4 *>(sQ + (warp * 8 + rr) * hd + d);
                    s[rr] += qq.x * k0 + qq.y * k1 + qq.z * k2 + qq.w * k3;
                }
            }
        } else {
            for (int d = 0; d < hd; d++) {
                float k0 = kr[d];
#pragma unroll
                for (int rr = 0; rr < 8; rr++) s[rr] += sQ[(warp * 8 + rr) * hd + d] * k0;
            }
        }
#pragma unroll
        for (int rr = 0; rr < 8; rr++) {
            int r = warp * 8 + rr;
            bool valid = kt + lane <= sPos[r];
            float sv = valid ? s[rr] : -INFINITY;
            float mx = warp_max(sv), mo = sM[r], mn = fmaxf(mo, mx);
            float p = valid ? expf(sv - mn) : 0.f;
            float sum = warp_sum(p);
            float alpha = mn == -INFINITY ? 1.f : expf(mo - mn);
            sP[r * PF_K + lane] = p;
            __syncwarp();
            if (lane == 0) {
                sM[r] = mn;
                sL[r] = sL[r] * alpha + sum;
                sA[r] = alpha;
            }
        }
        __syncthreads();
#pragma unroll
        for (int ns = 0; ns < NS; ns++) {
            int d = tid + PF_THREADS * ns;
            if (d < hd) {
#pragma unroll
                for (int r = 0; r < PF_Q; r++) acc[ns][r] *= sA[r];
                for (int j = 0; j < PF_K; j += 4) {
                    float v0 = sV[j * hd + d], v1 = sV[(j + 1) * hd + d], v2 = sV[(j + 2) * hd + d], v3 = sV[(j + 3) * hd + d];
#pragma unroll
                    for (int r = 0; r < PF_Q; r++) {
                        float4 p4 = *reinterpret_cast<const float4 *>(sP + r * PF_K + j);
                        acc[ns][r] += p4.x * v0 + p4.y * v1 + p4.z * v2 + p4.w * v3;
                    }
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int ns = 0; ns < NS; ns++) {
        int d = tid + PF_THREADS * ns;
        if (d < hd) {
#pragma unroll
            for (int r = 0; r < PF_Q; r++)
                if (r < nq) out[(int64_t)(i0 + r) * ld_out + h * hd + d] = elt<T>::from_f(acc[ns][r] / sL[r]);
        }
    }
    if (h == 0)
        for (int r = 0; r < nq; r++)
            for (int c = nh * hd + tid; c < ld_out; c += PF_THREADS) out[(int64_t)(i0 + r) * ld_out + c] = elt<T>::from_f(0.f);
}

/* ---- prefill on the tensor cores ------------------------------------------------------------ */
#define TC_Q LOP_ATTN_TILE /* queries per block: 2 warps x 16 rows */
#define TC_K 64            /* keys per tile */

__device__ __forceinline__ uint32_t pack_h2(float x, float y) {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&h);
}

static size_t prefill_tc_smem(int hd) {
    return sizeof(__half) * ((size_t)TC_Q * (hd + 8) + (size_t)TC_K * (hd + 8) + (size_t)hd * (TC_K + 8)) + TC_Q * sizeof(int);
}

template <typename T, int HD>
__global__ void __launch_bounds__(64)
    attn_prefill_tc_kernel(const float *__restrict__ q, const __half *__restrict__ kc, const __half *__restrict__ vc,
                           const int32_t *seq, const int32_t *pos, const int32_t *tile_start, int nh, int nkv, int max_seq,
                           T *out, int ld_out) {
    extern __shared__ float4 sm4[];
    constexpr int LQ = HD + 8, LV = TC_K + 8;
    __half *sQ = reinterpret_cast<__half *>(sm4); /* [TC_Q][HD + 8] */
    __half *sK = sQ + TC_Q * LQ;                  /* [TC_K][HD + 8] */
    __half *sVt = sK + TC_K * LQ;                 /* [HD][TC_K + 8]: V transposed, so B fragments are pairs */
    int *sPos = reinterpret_cast<int *>(sVt + HD * LV);
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int grp = lane >> 2, tig = lane & 3, c2 = tig * 2;
    const int g = h / (nh / nkv);
    const int i0 = tile_start[t], nq = tile_start[t + 1] - i0;
    const int64_t slot = seq[i0];
    const int maxpos = pos[i0 + nq - 1];
    const float scale = 1.0f / sqrtf((float)HD);
    for (int e = tid; e < TC_Q * HD; e += 64) {
        int r = e / HD, d = e - r * HD;
        sQ[r * LQ + d] = __float2half_rn(r < nq ? q[((int64_t)(i0 + r) * nh + h) * HD + d] : 0.f);
    }
    if (tid < TC_Q) sPos[tid] = tid < nq ? pos[i0 + tid] : -1;
    __syncthreads();
    const int r0 = warp * 16 + grp;
    uint32_t qa[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        qa[kk][0] = *reinterpret_cast<const uint32_t *>(sQ + r0 * LQ + kk * 16 + c2);
        qa[kk][1] = *reinterpret_cast<const uint32_t *>(sQ + (r0 + 8) * LQ + kk * 16 + c2);
        qa[kk][2] = *reinterpret_cast<const uint32_t *>(sQ + r0 * LQ + kk * 16 + 8 + c2);
        qa[kk][3] = *reinterpret_cast<const uint32_t *>(sQ + (r0 + 8) * LQ + kk * 16 + 8 + c2);
    }
    const int p0 = sPos[r0], p1 = sPos[r0 + 8];
    float o[HD / 8][4];
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const __half *Kb = kc + (slot * nkv + g) * (int64_t)max_seq * HD;
    const __half *Vb = vc + (slot * nkv + g) * (int64_t)max_seq * HD;

    for (int kt = 0; kt <= maxpos; kt += TC_K) {
        __syncthreads(); /* the previous tile is consumed */
        for (int e = tid; e < TC_K * HD / 2; e += 64) {
            int j = e / (HD / 2), d = 2 * (e - j * (HD / 2)), k = kt + j;
            __half2 kv = __float2half2_rn(0.f), vv = kv;
            if (k <= maxpos) {
                kv = *reinterpret_cast<const __half2 *>(Kb + (int64_t)k * HD + d);
                vv = *reinterpret_cast<const __half2 *>(Vb + (int64_t)k * HD + d);
            }
            *reinterpret_cast<__half2 *>(sK + j * LQ + d) = kv;
            sVt[d * LV + j] = __low2half(vv);
            sVt[(d + 1) * LV + j] = __high2half(vv);
        }
        __syncthreads();
        /* S = Q K^T for this warp's 16 rows x 64 keys */
        float sc[TC_K / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_K / 8; nt++) {
            sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                const __half *kr = sK + (nt * 8 + grp) * LQ + kk * 16 + c2;
                mma16816<__half>(sc[nt], qa[kk], *reinterpret_cast<const uint32_t *>(kr), *reinterpret_cast<const uint32_t *>(kr + 8));
            }
        }
        /* scale, causal mask, online softmax (rows r0 and r0 + 8; 4 lanes share a row) */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < TC_K / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = kt + nt * 8 + c2 + (e & 1);
                int pr = e < 2 ? p0 : p1;
                float v = key <= pr ? sc[nt][e] * scale : -INFINITY;
                sc[nt][e] = v;
                if (e < 2) mx0 = fmaxf(mx0, v);
                else mx1 = fmaxf(mx1, v);
            }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float al0 = mn0 == -INFINITY ? 1.f : expf(m0 - mn0), al1 = mn1 == -INFINITY ? 1.f : expf(m1 - mn1);
        float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
        for (int nt = 0; nt < TC_K / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float mn = e < 2 ? mn0 : mn1, v = sc[nt][e];
                float pe = v == -INFINITY ? 0.f : expf(v - mn);
                sc[nt][e] = pe;
                if (e < 2) sum0 += pe;
                else sum1 += pe;
            }
        l0 = l0 * al0 + sum0; /* per-lane partial sums: reduced across the 4 lanes at the end */
        l1 = l1 * al1 + sum1;
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++) {
            o[nd][0] *= al0, o[nd][1] *= al0;
            o[nd][2] *= al1, o[nd][3] *= al1;
        }
        /* O += P V: the score fragments of key tiles 2j, 2j+1 are the A operand of k-step j */
#pragma unroll
        for (int j = 0; j < TC_K / 16; j++) {
            uint32_t pa[4] = {pack_h2(sc[2 * j][0], sc[2 * j][1]), pack_h2(sc[2 * j][2], sc[2 * j][3]),
                              pack_h2(sc[2 * j + 1][0], sc[2 * j + 1][1]), pack_h2(sc[2 * j + 1][2], sc[2 * j + 1][3])};
#pragma unroll
            for (int nd = 0; nd < HD / 8; nd++) {
                const __half *vr = sVt + (nd * 8 + grp) * LV + j * 16 + c2;
                mma16816<__half>(o[nd], pa, *reinterpret_cast<const uint32_t *>(vr), *reinterpret_cast<const uint32_t *>(vr + 8));
            }
        }
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, off);
        l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++) {
        int d = h * HD + nd * 8 + c2;
        if (r0 < nq) {
            out[(int64_t)(i0 + r0) * ld_out + d] = elt<T>::from_f(o[nd][0] / l0);
            out[(int64_t)(i0 + r0) * ld_out + d + 1] = elt<T>::from_f(o[nd][1] / l0);
        }
        if (r0 + 8 < nq) {
            out[(int64_t)(i0 + r0 + 8) * ld_out + d] = elt<T>::from_f(o[nd][2] / l1);
            out[(int64_t)(i0 + r0 + 8) * ld_out + d + 1] = elt<T>::from_f(o[nd][3] / l1);
        }
    }
    if (h == 0)
        for (int r = 0; r < nq; r++)
            for (int c = nh * HD + tid; c < ld_out; c += 64) out[(int64_t)(i0 + r) * ld_out + c] = elt<T>::from_f(0.f);
}

template <typename T, int HD>
static void launch_prefill_tc(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos,
                              const int32_t *tile_start, int n_tiles, int nh, int nkv, int max_seq, T *out, int ld_out,
                              cudaStream_t s) {
    static int configured = 0;
    size_t smem = prefill_tc_smem(HD);
    if (!configured) {
        cudaFuncSetAttribute(attn_prefill_tc_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        configured = 1;
    }
    launch_k(attn_prefill_tc_kernel<T, HD>, dim3(n_tiles, nh), 64, smem, s, q, kc, vc, seq, pos, tile_start, nh, nkv,
             max_seq, out, ld_out);
}

template <typename T, int NS>
static void launch_prefill(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos,
                           const int32_t *tile_start, int n_tiles, int nh, int nkv, int hd, int max_seq, T *out,
                           int ld_out, cudaStream_t s) {
    static int configured = 0;
    size_t smem = prefill_smem(hd);
    if (!configured) {
        cudaFuncSetAttribute(attn_prefill_kernel<T, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
        configured = 1;
    }
    attn_prefill_kernel<T, NS><<<dim3(n_tiles, nh), PF_THREADS, smem, s>>>(q, kc, vc, seq, pos, tile_start, nh, nkv, hd,
                                                                          max_seq, out, ld_out);
}

void k_attn_prefill(const float *q, const __half *kc, const __half *vc, const int32_t *seq, const int32_t *pos,
                    const int32_t *tile_start, int n_tiles, int n, int nh, int nkv, int hd, int max_seq, void *out,
                    int ld_out, lop_dtype dt, int fma, cudaStream_t s) {
    (void)n;
    if (n_tiles <= 0) return;
    static int env_fma = -1;
    if (env_fma < 0) env_fma = getenv("LOP_CUDA_ATTN_FMA") != NULL;
    int tc = !fma && !env_fma && (hd == 64 || hd == 128);
    LOP_DISPATCH_T(dt, {
        if (tc && hd == 64)
            launch_prefill_tc<T, 64>(q, kc, vc, seq, pos, tile_start, n_tiles, nh, nkv, max_seq, (T *)out, ld_out, s);
        else if (tc)
            launch_prefill_tc<T, 128>(q, kc, vc, seq, pos, tile_start, n_tiles, nh, nkv, max_seq, (T *)out, ld_out, s);
        else if (hd <= PF_THREADS)
            launch_prefill<T, 1>(q, kc, vc, seq, pos, tile_start, n_tiles, nh, nkv, hd, max_seq, (T *)out, ld_out, s);
        else
            launch_prefill<T, 2>(q, kc, vc, seq, pos, tile_start, n_tiles, nh, nkv, hd, max_seq, (T *)out, ld_out, s);
    });
}
