/* Token sampling on the GPU: greedy (argmax, first index on ties, like torch.argmax and the CPU
 * sampler) and temperature → top-k → top-p (HF's order), one block per sequence.
 * Why on the GPU: decode then needs no logits copy and no host decision per token, so a whole
 * decode step (forward + sampling + position update) is one CUDA graph replay.
 * How: no full sort. Keys k_i = logit_i / T map to order-preserving uint32; the top-k threshold is
 * the k-th largest key found by a 4-pass radix select (8 bits a pass, histograms in shared memory).
 * With top-k <= 1024 (the benchmark's 50) the survivors are compacted into shared memory and
 * bitonic-sorted (logit descending, index ascending: the CPU sampler's order), and top-p and the
 * draw walk that sorted list like the CPU does. Otherwise (no top-k, or huge k) the top-p threshold
 * is found by the same radix walk over probability mass and the draw walks the kept tokens in index
 * order; tokens tied with a threshold are then all kept (in every path, and in the CPU sampler:
 * a tie at the top-p threshold is kept whole). Probabilities exp(k_i - max) are held as
 * 40-bit fixed point so every sum is exact integer arithmetic (bit-reproducible runs, no float
 * atomics). The distribution equals the CPU sampler's; single draws can differ (float vs double).
 * CAND (variant 2, the default; with top-k and V <= 32768): the row is read and divided by T once,
 * into registers (FAST does it five times: four radix passes and the compaction), and the select
 * runs over two small sets instead of the row: the threads' maxima (their k-th largest is a lower
 * bound of the row's top-k threshold) and the few keys at or above that bound. The same tokens as
 * the other variants; where more than 1024 keys reach the bound (a near-flat row) FAST's path. */
#include <limits.h>
#include <stdlib.h>

#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#define SMP_THREADS 1024
#define SMP_ONE 1099511627776.0f /* 2^40 */

__device__ __forceinline__ uint32_t okey(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint64_t d_splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

template <typename V> __device__ V block_reduce_sum(V v, V *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    V t = 0;
    for (int k = 0; k < (int)(blockDim.x >> 5); k++) t += sh[k];
    return t;
}

__device__ float block_reduce_max(float v, float *sh) {
    v = warp_max(v);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    float t = -INFINITY;
    for (int k = 0; k < (int)(blockDim.x >> 5); k++) t = fmaxf(t, sh[k]);
    return t;
}

/* One step of the radix walk: the highest bin b with base + cnt[255] + ... + cnt[b] >= target (bin 0
 * when even all of them fall short) into *sel, and base + cnt[255] + ... + cnt[b + 1] into *above --
 * what thread 0's loop over the bins from 255 down finds, found by warp 0 at once (FAST): lane l
 * holds bins 255 - 8l .. 248 - 8l, a scan over the lanes finds the lane where the sum crosses the
 * target, that lane walks its 8 bins. The caller's barrier follows. */
template <typename C>
__device__ void radix_bin_warp(const C *cnt, unsigned long long base, unsigned long long target, uint32_t *sel,
                               unsigned long long *above) {
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    unsigned long long c[8], own = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) c[j] = cnt[255 - 8 * lane - j], own += c[j];
    unsigned long long incl = own;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    const unsigned cross = __ballot_sync(0xffffffffu, base + incl >= target);
    if (!cross) { /* no bin reaches: bin 0, with every bin above it counted */
        if (lane == 31) *sel = 0, *above = base + incl - c[7];
        return;
    }
    if (lane == __ffs(cross) - 1) {
        unsigned long long cum = base + incl - own;
        int b = 255 - 8 * lane;
        for (int j = 0; j < 7 && cum + c[j] < target; j++, b--) cum += c[j];
        *sel = (uint32_t)b, *above = cum;
    }
}

/* The k-th largest of the keys each(f) hands to f (every thread its own), by 4 radix passes of 8
 * bits over 256 shared counters (at least k keys in all). FAST: the bins found by warp 0. */
template <int FAST, typename Each>
__device__ uint32_t radix_kth(Each each, unsigned int k, unsigned int *s_cnt, uint32_t *s_sel,
                              unsigned long long *s_sel64) {
    const int tid = threadIdx.x;
    uint32_t prefix = 0, mask = 0;
    unsigned int remaining = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += SMP_THREADS) s_cnt[b] = 0;
        __syncthreads();
        each([&](uint32_t u) {
            if ((u & mask) == prefix) atomicAdd(&s_cnt[(u >> shift) & 255], 1u);
        });
        __syncthreads();
        if (FAST) {
            radix_bin_warp<unsigned int>(s_cnt, 0, remaining, s_sel, s_sel64);
        } else if (tid == 0) {
            unsigned int cum = 0;
            int b = 255;
            for (; b > 0; b--) {
                if (cum + s_cnt[b] >= remaining) break;
                cum += s_cnt[b];
            }
            remaining -= cum;
            *s_sel = (uint32_t)b;
        }
        __syncthreads();
        if (FAST) remaining -= (unsigned int)*s_sel64; /* every thread: its next walk starts from it */
        prefix |= *s_sel << shift;
        mask |= 255u << shift;
        if (!FAST) __syncthreads(); /* FAST: the next pass writes s_sel only after two barriers */
    }
    return prefix;
}

/* The k-th largest of the keys u of the threads with has (at most one a thread, at least k in all),
 * bit by bit from the top: the largest t with k keys >= t, each bit one __syncthreads_count. It
 * replaced radix_kth in CAND (no shared atomics, whose first passes hit one counter: keys this
 * close share their top bits) and gained nothing: 20.65 against 21.3 us alone (sample_iso,
 * bench/cuda/NOTES.md 24), as the sampler's time goes in its ~100 block-wide barriers (~0.12 us
 * each with 1024 threads), not in what runs between them. Doing CAND's bound and everything after
 * the candidate list in warp 0 with __syncwarp instead (a warp-0 tail) lost: 32.6 against 20.6 us
 * alone (NOTES 25). */
__device__ uint32_t block_kth(bool has, uint32_t u, unsigned int k) {
    uint32_t t = 0;
    for (int b = 31; b >= 0; b--) {
        const uint32_t c = t | (1u << b);
        if ((unsigned)__syncthreads_count(has && u >= c) >= k) t = c;
    }
    return t;
}

#define SMP_KPT 32 /* keys a thread holds in CAND: rows of up to SMP_THREADS * SMP_KPT = 32768 */

/* where CAND's list applies when sampling: a top-k the list holds, a row the registers hold
 * (elsewhere FAST's path, the same tokens) */
__host__ __device__ static inline bool cand_fits(int V, int top_k) {
    return top_k > 0 && top_k < V && top_k <= SMP_THREADS && V <= SMP_THREADS * SMP_KPT;
}

/* CAND: the top-k survivors of the row (keys >= the k-th largest, ties included) compacted into
 * s_ck / s_ci, their count in *s_n, the threshold in *thr; 0 (block-uniform) when more than
 * SMP_THREADS keys reach the first bound (a near-flat row), and the caller takes the row's path. */
__device__ int top_candidates(const float *row, int V, float T, unsigned int k, float *s_ck, int *s_ci, int *s_n,
                              uint32_t *thr) {
    const int tid = threadIdx.x;
    float key[SMP_KPT];
#pragma unroll
    for (int j = 0; j < SMP_KPT; j++) {
        const int i = tid + j * SMP_THREADS;
        key[j] = i < V ? row[i] / T : 0.f;
    }
    uint32_t tmax = 0; /* 0 <= every key: a thread without keys does not raise the bound */
    bool has = false;
#pragma unroll
    for (int j = 0; j < SMP_KPT; j++)
        if (tid + j * SMP_THREADS < V) tmax = max(tmax, okey(key[j])), has = true;
    /* the maxima are keys of the row, so their k-th largest is at most the row's */
    const uint32_t lo = block_kth(has, tmax, k); /* at least k threads have keys: V > k */
    if (tid == 0) *s_n = 0;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < SMP_KPT; j++) {
        const int i = tid + j * SMP_THREADS;
        if (i < V && okey(key[j]) >= lo) {
            const int at = atomicAdd(s_n, 1);
            if (at < SMP_THREADS) s_ck[at] = key[j], s_ci[at] = i;
        }
    }
    __syncthreads();
    const int m = *s_n;
    if (m > SMP_THREADS) return 0;
    /* every key >= the row's threshold is a candidate: its k-th largest is the candidates' */
    const float ck = tid < m ? s_ck[tid] : 0.f;
    const int ci = tid < m ? s_ci[tid] : 0;
    const uint32_t t = block_kth(tid < m, okey(ck), k);
    if (tid == 0) *s_n = 0; /* every thread read m and its candidate before block_kth's barriers */
    __syncthreads();
    if (tid < m && okey(ck) >= t) {
        const int at = atomicAdd(s_n, 1);
        s_ck[at] = ck, s_ci[at] = ci;
    }
    __syncthreads();
    *thr = t;
    return 1;
}

/* FAST (the default since bench/cuda/NOTES.md 23; LOP_CUDA_SAMPLE_FAST=0 runs the first variant):
 * the radix walks' bins found by warp 0 (radix_bin_warp) instead of one thread's loop over 256
 * shared counters, one barrier fewer per radix pass, the bitonic sort over the next power of two
 * of the survivors instead of all 1024 slots, and the maximum key only where it is used (top-p
 * without a sorted list, the draw over the row). The same tokens as without. */
template <int FAST>
__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(const float *logits, int V, int n, k_sample_params p, uint64_t *rng, int32_t *tok, int32_t *hist,
                  int32_t *pos, int32_t *step) {
    __shared__ unsigned long long s_hist[256];
    __shared__ unsigned int s_cnt[256];
    __shared__ unsigned long long s_u64[32];
    __shared__ float s_f[32];
    __shared__ int s_i[32];
    __shared__ uint32_t s_sel;
    __shared__ unsigned long long s_sel64;
    __shared__ float s_ck[SMP_THREADS];
    __shared__ int s_ci[SMP_THREADS];
    __shared__ unsigned long long s_cum[SMP_THREADS];
    __shared__ int s_n;
    TL_BEGIN();
    pdl_trigger();
    pdl_wait();
    const int sq = blockIdx.x, tid = threadIdx.x;
    const float *row = logits + (int64_t)sq * V;
    int result = -1;
    /* thread 0's reads of the rng state and the step counter leave now rather than on the path's end */
    const uint64_t rng0 = tid == 0 && p.temperature > 0.f ? rng[sq] : 0;
    const int32_t step0 = tid == 0 && hist && step ? *step : 0;

    if (p.temperature <= 0.f) {
        /* argmax, first index on ties */
        float bv = -INFINITY;
        int bi = -1;
        for (int i = tid; i < V; i += SMP_THREADS) {
            float v = row[i];
            if (bi < 0 || v > bv) bv = v, bi = i;
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
        }
        if ((tid & 31) == 0) s_f[tid >> 5] = bv, s_i[tid >> 5] = bi;
        __syncthreads();
        if (tid == 0) {
            float b = s_f[0];
            int ix = s_i[0];
            for (int w = 1; w < SMP_THREADS / 32; w++)
                if (s_i[w] >= 0 && (ix < 0 || s_f[w] > b || (s_f[w] == b && s_i[w] < ix))) b = s_f[w], ix = s_i[w];
            result = ix < 0 ? 0 : ix;
        }
    } else {
        const float T = p.temperature;
        auto key_max = [&]() {
            float v = -INFINITY;
            for (int i = tid; i < V; i += SMP_THREADS) v = fmaxf(v, row[i] / T);
            return block_reduce_max(v, s_f);
        };
        float kmax = FAST ? -INFINITY : key_max();

        /* top-k threshold: the k-th largest key (CAND: with the survivors listed already) */
        uint32_t thr = 0;
        int listed = 0;
        if (FAST == 2 && cand_fits(V, p.top_k))
            listed = top_candidates(row, V, T, (unsigned)p.top_k, s_ck, s_ci, &s_n, &thr);
        if (p.top_k > 0 && p.top_k < V && !listed)
            thr = radix_kth<FAST ? 1 : 0>(
                [&](auto f) { for (int i = tid; i < V; i += SMP_THREADS) f(okey(row[i] / T)); }, (unsigned)p.top_k, s_cnt,
                &s_sel, &s_sel64);
        int sorted_done = 0;
        if (p.top_k > 0 && p.top_k < V && p.top_k <= SMP_THREADS) {
            /* compact the survivors, sort them like the CPU sampler, walk the list */
            if (!listed) {
                if (tid == 0) s_n = 0;
                __syncthreads();
                for (int i = tid; i < V; i += SMP_THREADS) {
                    float k = row[i] / T;
                    if (okey(k) >= thr) {
                        int at = atomicAdd(&s_n, 1);
                        if (at < SMP_THREADS) s_ck[at] = k, s_ci[at] = i;
                    }
                }
                __syncthreads();
            }
            const int m = s_n;
            if (m <= SMP_THREADS) {
                if (tid >= m) s_ck[tid] = -INFINITY, s_ci[tid] = INT_MAX;
                __syncthreads();
                int np = SMP_THREADS; /* FAST: the next power of two >= m; the slots past it hold sentinels */
                if (FAST)
                    for (np = 2; np < m; np <<= 1) {}
                for (int k2 = 2; k2 <= np; k2 <<= 1)
                    for (int jj = k2 >> 1; jj > 0; jj >>= 1) {
                        int o = tid ^ jj;
                        if (o > tid && (!FAST || o < np)) {
                            float a = s_ck[tid], b = s_ck[o];
                            int ia = s_ci[tid], ib = s_ci[o];
                            bool a_first = a > b || (a == b && ia < ib);
                            bool up = (tid & k2) == 0;
                            if (up ? !a_first : a_first) {
                                s_ck[tid] = b, s_ck[o] = a;
                                s_ci[tid] = ib, s_ci[o] = ia;
                            }
                        }
                        __syncthreads();
                    }
                unsigned long long q = tid < m ? (unsigned long long)(expf(s_ck[tid] - s_ck[0]) * SMP_ONE) : 0ull;
                unsigned long long incl = q;
                const int lane = tid & 31, w = tid >> 5;
                for (int o = 1; o < 32; o <<= 1) {
                    unsigned long long v = __shfl_up_sync(0xffffffffu, incl, o);
                    if (lane >= o) incl += v;
                }
                if (lane == 31) s_u64[w] = incl;
                __syncthreads();
                for (int k = 0; k < w; k++) incl += s_u64[k];
                s_cum[tid] = incl;
                if (tid == 0) s_n = m;
                __syncthreads();
                int keep = m;
                if (p.top_p > 0.f && p.top_p < 1.f) {
                    double target = (double)p.top_p * (double)s_cum[m - 1];
                    if (tid < m && (double)s_cum[tid] >= target && (tid == 0 || (double)s_cum[tid - 1] < target)) s_n = tid + 1;
                    __syncthreads();
                    keep = s_n;
                    /* the tokens tied with the last kept one (contiguous: the list is sorted) */
                    if (tid >= keep && tid < m && s_ck[tid] == s_ck[keep - 1] && (tid + 1 == m || s_ck[tid + 1] != s_ck[tid]))
                        s_n = tid + 1;
                    __syncthreads();
                    keep = s_n;
                }
                if (tid == 0) {
                    unsigned long long total = s_cum[keep - 1];
                    uint64_t st = d_splitmix(rng0);
                    rng[sq] = st;
                    double u = (double)(st >> 11) * (1.0 / 9007199254740992.0);
                    unsigned long long r = (unsigned long long)(u * (double)total);
                    if (total == 0) r = 0;
                    else if (r >= total) r = total - 1;
                    s_sel64 = r;
                    s_sel = (uint32_t)s_ci[0];
                }
                __syncthreads();
                unsigned long long r = s_sel64;
                if (tid < keep && s_cum[tid] > r && (tid == 0 || s_cum[tid - 1] <= r)) s_sel = (uint32_t)s_ci[tid];
                __syncthreads();
                if (tid == 0) result = (int)s_sel;
                sorted_done = 1;
            }
        }
        /* top-p threshold over the fixed-point mass of the top-k set */
        if (FAST && !sorted_done) kmax = key_max(); /* uniform: sorted_done is the block's */
        if (!sorted_done && p.top_p > 0.f && p.top_p < 1.f) {
            unsigned long long z = 0;
            for (int i = tid; i < V; i += SMP_THREADS) {
                float k = row[i] / T;
                if (okey(k) >= thr) z += (unsigned long long)(expf(k - kmax) * SMP_ONE);
            }
            z = block_reduce_sum<unsigned long long>(z, s_u64);
            unsigned long long target = (unsigned long long)ceil((double)p.top_p * (double)z);
            if (target < 1) target = 1;
            uint32_t prefix = 0, mask = 0;
            unsigned long long above = 0;
            for (int shift = 24; shift >= 0; shift -= 8) {
                for (int b = tid; b < 256; b += SMP_THREADS) s_hist[b] = 0;
                __syncthreads();
                for (int i = tid; i < V; i += SMP_THREADS) {
                    float k = row[i] / T;
                    uint32_t u = okey(k);
                    if (u >= thr && (u & mask) == prefix)
                        atomicAdd(&s_hist[(u >> shift) & 255], (unsigned long long)(expf(k - kmax) * SMP_ONE));
                }
                __syncthreads();
                if (FAST) {
                    radix_bin_warp<unsigned long long>(s_hist, above, target, &s_sel, &s_sel64);
                } else if (tid == 0) {
                    unsigned long long cum = above;
                    int b = 255;
                    for (; b > 0; b--) {
                        if (cum + s_hist[b] >= target) break;
                        cum += s_hist[b];
                    }
                    s_sel = (uint32_t)b;
                    s_sel64 = cum;
                }
                __syncthreads();
                prefix |= s_sel << shift;
                mask |= 255u << shift;
                above = s_sel64;
                if (!FAST) __syncthreads();
            }
            if (prefix > thr) thr = prefix;
        }
        /* draw: walk the kept tokens in index order */
        if (!sorted_done) {
        const int per = (V + SMP_THREADS - 1) / SMP_THREADS;
        const int i0 = tid * per, i1 = min(V, i0 + per);
        unsigned long long local = 0;
        for (int i = i0; i < i1; i++) {
            float k = row[i] / T;
            if (okey(k) >= thr) local += (unsigned long long)(expf(k - kmax) * SMP_ONE);
        }
        /* exclusive scan of local over the block */
        unsigned long long incl = local;
        const int lane = tid & 31, w = tid >> 5;
        for (int o = 1; o < 32; o <<= 1) {
            unsigned long long v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        __syncthreads();
        if (lane == 31) s_u64[w] = incl;
        __syncthreads();
        unsigned long long base = 0, total = 0;
        for (int k = 0; k < SMP_THREADS / 32; k++) {
            if (k < w) base += s_u64[k];
            total += s_u64[k];
        }
        unsigned long long excl = base + incl - local;
        if (tid == 0) {
            uint64_t st = d_splitmix(rng0);
            rng[sq] = st;
            double u = (double)(st >> 11) * (1.0 / 9007199254740992.0);
            unsigned long long r = (unsigned long long)(u * (double)total);
            if (total == 0) r = 0;
            else if (r >= total) r = total - 1;
            s_sel64 = r;
            s_sel = 0xffffffffu;
        }
        __syncthreads();
        unsigned long long r = s_sel64;
        if (local > 0 && r >= excl && r < excl + local) {
            unsigned long long acc = excl;
            for (int i = i0; i < i1; i++) {
                float k = row[i] / T;
                if (okey(k) < thr) continue;
                acc += (unsigned long long)(expf(k - kmax) * SMP_ONE);
                if (r < acc) {
                    s_sel = (uint32_t)i;
                    break;
                }
            }
        }
        __syncthreads();
        if (tid == 0) result = s_sel == 0xffffffffu ? 0 : (int)s_sel;
        }
    }
    if (tid == 0) {
        tok[sq] = result;
        if (hist) hist[(int64_t)step0 * n + sq] = result;
        if (pos) pos[sq] += 1;
        /* the step counter moves once every row has read it: by the last block to get here, counted in
         * step[1] (which it leaves at zero for the next launch) */
        if (step && atomicAdd(reinterpret_cast<unsigned int *>(step + 1), 1u) == (unsigned int)n - 1) {
            step[1] = 0;
            step[0] += 1;
        }
    }
    TL_END(TL_SAMPLE);
}

/* sample_kernel's CAND variant is the default (7B batch 1 on the H200, top-k 50 / top-p 0.95: the
 * sampler 30.8 -> 23.9 us inside the graph with radix selects, 22.7 with block_kth; 265.6 -> 266.1
 * tok/s, and 268.4 against FAST's 268.2 with the ONE attention, bench/cuda/NOTES.md 24; FAST against
 * the first: 251.0 against 249.7, 23); LOP_CUDA_SAMPLE_FAST=0 runs the first one, 1 FAST */
static int sample_fast(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("LOP_CUDA_SAMPLE_FAST");
        v = e && *e && atoi(e) >= 0 && atoi(e) <= 2 ? atoi(e) : 2;
    }
    return v;
}

void k_sample_variant(int fast, const float *logits, int V, int n, k_sample_params p, uint64_t *rng, int32_t *tok,
                      int32_t *hist, int32_t *pos, int32_t *step, cudaStream_t s) {
    if (n <= 0) return;
    int v = fast < 0 ? sample_fast() : fast;
    /* CAND's kernel only where its list applies (else FAST: the same tokens) */
    if (v == 2 && !(p.temperature > 0.f && cand_fits(V, p.top_k))) v = 1;
    auto kern = v == 2 ? sample_kernel<2> : v == 1 ? sample_kernel<1> : sample_kernel<0>;
    launch_k(kern, n, SMP_THREADS, 0, s, logits, V, n, p, rng, tok, hist, pos, step);
}

void k_sample(const float *logits, int V, int n, k_sample_params p, uint64_t *rng, int32_t *tok, int32_t *hist,
              int32_t *pos, int32_t *step, cudaStream_t s) {
    k_sample_variant(-1, logits, V, n, p, rng, tok, hist, pos, step, s);
}

LOP_TL_TU(sample)
