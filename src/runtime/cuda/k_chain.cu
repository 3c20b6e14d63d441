/* Chained small-batch products (LOP_CUDA_CHAIN): one persistent kernel runs the products between two
 * attention launches (o, gate/up, down, the next layer's q/k/v or the LM head) with a grid barrier
 * between them.
 * Why: at 7B batch 1 every product loses ~3-4 us beyond its bytes to the launch gap, the ramp of its
 * first loads and its tail (bench/cuda/NOTES.md 25-26), and PDL could not overlap them because a
 * resident grid leaves the next kernel no room (12, 14). Here the next product's weights are on their
 * way before the barrier: a warp done with its items issues its first round of the next product's
 * rows into registers (gemv_preload), then waits; those bytes stream through the barrier, the other
 * warps' tails and the RMSNorm prologue. The chains of run8/run11 (removed, 18) prefetched only to L2
 * and paid a barrier of ~2.7 us with atomics, a generation word and nanosleep; this barrier is one
 * release-add on a 64-bit counter that only grows and an acquire poll (no reset, no generation).
 * The loops are gemv_loop.cuh's, the defaults of k_gemv.cu (tensor cores, XI in the pair products, the
 * ACC epilogue's early reads), so a chain computes what the single products compute, to the bit. */
#include "runtime/cuda/gemv_loop.cuh"

/* 8 warps a block, as the normalised-input products' blocks (LOP_CUDA_XN_WARPS default) */
#define CHAIN_WARPS 8

typedef struct chain_args {
    k_gemv_phase ph[K_CHAIN_MAX];
    int n;
    int pre;      /* preload the next product's first round before the barrier (LOP_CUDA_CHAIN_PRE, default 1) */
    int sleep_ns; /* the barrier's poll backs off this long (LOP_CUDA_CHAIN_SLEEP, default 0: spins) */
    unsigned long long *ctr;
} chain_args;

/* Every block waits here until all gridDim.x blocks have arrived at barrier k of this launch; the
 * counter then reads base + k gridDim.x. Writes before the barrier are visible after it: the
 * block's threads meet at __syncthreads, thread 0 publishes with a release add and reads with an
 * acquire load, and __syncthreads hands that on to the block (plain loads after it see the data;
 * the read-only path is not used for anything written in the launch). A grid that is not resident
 * is refused by the cooperative launch; the spin bound is a last guard against a hang. */
__device__ __forceinline__ void chain_barrier(unsigned long long *ctr, unsigned long long target, int sleep_ns) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        asm volatile("red.release.gpu.global.add.u64 [%0], %1;" ::"l"(ctr), "l"(1ull) : "memory");
        unsigned long long v;
        for (long long spins = 0;; spins++) {
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(ctr) : "memory");
            if (v >= target) break;
            if (sleep_ns) __nanosleep(sleep_ns);
            if (spins > (1ll << 32)) __trap();
        }
    }
    __syncthreads();
}

/* the warps that take part in product a (the first a.warps of the grid's `all`, or all of them) */
__device__ __forceinline__ int chain_stride(const k_gemv_phase &a, int all) { return a.warps ? a.warps : all; }

template <typename T, int NB, int U>
__device__ __forceinline__ int chain_preload(const k_gemv_phase &a, int item, int all, uint4 (&wa)[U], uint4 (&wg)[U]) {
    if (item >= chain_stride(a, all)) return 0;
    switch (a.mode) {
    case GEMV_ACC: return gemv_preload<T, GEMV_ACC, U, 1>(a, item, wa, wg);
    case GEMV_SWIGLU: return gemv_preload<T, GEMV_SWIGLU, U, 1>(a, item, wa, wg);
    case GEMV_ROPE: return gemv_preload<T, GEMV_ROPE, U, 1>(a, item, wa, wg);
    default: return gemv_preload<T, GEMV_STORE, U, 1>(a, item, wa, wg);
    }
}

/* BPS: blocks per SM (3: 80 registers, the q/k/v product's occupancy; 2: 128), ILP: the RMSNorm
 * prologue's loads in flight per thread (the round registers wa, wg stay live through it, holding
 * the preloaded first round, so fewer than k_gemv's 4 spill less: ptxas at 3 blocks, ILP 4 / 2 / 1,
 * 1 token: 304 / 192 / 76 bytes of spill stores) */
template <typename T, int NB, int BPS, int ILP, int U = 4>
__global__ void __launch_bounds__(CHAIN_WARPS * 32, BPS) chain_kernel(const __grid_constant__ chain_args c) {
    extern __shared__ uint4 s_dyn[];
    TL_BEGIN();
    T *xs = reinterpret_cast<T *>(s_dyn);
    const int item = blockIdx.x * CHAIN_WARPS + (threadIdx.x >> 5), all = gridDim.x * CHAIN_WARPS;
    /* the counter before this launch's first arrival: a multiple of the grid (each launch adds k
     * grids, and no block passes barrier 1 before this one arrives there) */
    unsigned long long base = 0;
    if (threadIdx.x == 0) {
        unsigned long long v;
        asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(c.ctr) : "memory");
        base = v - v % gridDim.x;
    }
    uint4 wa[U], wg[U];
    int pre = 0;
    for (int p = 0; p < c.n; p++) {
        const k_gemv_phase &a = c.ph[p];
        if (p) chain_barrier(c.ctr, base + (unsigned long long)p * gridDim.x, c.sleep_ns);
        TL_RESTAMP(); /* the timeline: each product is a launch of its own, the barrier its gap */
        const int stride = chain_stride(a, all);
        if (a.mode == GEMV_ACC) {
            if (item < stride) gemv_items<T, NB, GEMV_ACC, U, 5, 2, 1>(a, (const T *)a.X, item, stride, wa, wg, pre);
        } else {
            xnorm_prologue<T, NB, CHAIN_WARPS, 1, ILP>(a.xn, xs, a.ldw);
            if (item < stride) {
                if (a.mode == GEMV_SWIGLU) gemv_items<T, NB, GEMV_SWIGLU, U, 2, 1, 1>(a, xs, item, stride, wa, wg, pre);
                else if (a.mode == GEMV_ROPE) gemv_items<T, NB, GEMV_ROPE, U, 2, 1, 1>(a, xs, item, stride, wa, wg, pre);
                else gemv_items<T, NB, GEMV_STORE, U, 1, 1, 1>(a, xs, item, stride, wa, wg, pre);
            }
        }
        TL_END(TL_GEMV + 2 * a.mode + (a.mode != GEMV_ACC));
        pre = p + 1 < c.n && c.pre ? chain_preload<T, NB, U>(c.ph[p + 1], item, all, wa, wg) : 0;
    }
}

LOP_TL_TU(chain)

/* LOP_CUDA_CHAIN=v: decode's small-batch products run chained, in configuration v (default 0: one
 * launch per product): 1 = 3 blocks per SM with the prologue's ILP 2, 2 = 3 with ILP 1, 3 = 2 blocks
 * per SM with ILP 4, 4 = 3 with ILP 4 */
static int chain_config(void) {
    static int v = -1;
    if (v < 0) {
        v = lop_env_int("LOP_CUDA_CHAIN", 0);
        if (v < 0 || v > 4) v = 0;
    }
    return v;
}
int k_chain_ok(int nb) { return chain_config() && nb >= 1 && nb <= K_CHAIN_NB && k_gemv_chain_loops(); }

typedef void (*chain_fn)(chain_args);
template <typename T, int NB> static chain_fn chain_kernel_for(int v) {
    return v == 2 ? chain_kernel<T, NB, 3, 1> : v == 3 ? chain_kernel<T, NB, 2, 4> : v == 4 ? chain_kernel<T, NB, 2, 4, 8>
                                                                                  : chain_kernel<T, NB, 3, 2>;
}

/* the grid: every block the device holds at once (a cooperative launch needs them resident). It
 * must not change between the launches that share a counter (chain_kernel's base), so the shared
 * memory is always the normalised input's, whatever the chain holds. */
static int chain_grid(chain_fn k, size_t smem) {
    static struct { chain_fn k; size_t smem; int blocks; } cache[8];
    static int n_cache;
    for (int i = 0; i < n_cache; i++)
        if (cache[i].k == k && cache[i].smem == smem) return cache[i].blocks;
    int dev = 0, n_sm = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, CHAIN_WARPS * 32, smem))
        return 0;
    if (n_cache < 8) cache[n_cache].k = k, cache[n_cache].smem = smem, cache[n_cache++].blocks = per_sm * n_sm;
    return per_sm * n_sm;
}

template <typename T, int NB> static cudaError_t chain_launch(const k_chain *c, cudaStream_t s) {
    const chain_fn k = chain_kernel_for<T, NB>(chain_config());
    const size_t smem = (size_t)NB * c->ld_xs * sizeof(T);
    const int grid = chain_grid(k, smem);
    if (grid <= 0) return cudaErrorLaunchOutOfResources;
    chain_args a;
    a.n = c->n, a.ctr = c->ctr + (NB - 1);
    static int pre = -1, sleep_ns = -1;
    if (pre < 0) pre = lop_env_int("LOP_CUDA_CHAIN_PRE", 1) != 0, sleep_ns = lop_env_int("LOP_CUDA_CHAIN_SLEEP", 0);
    a.pre = pre, a.sleep_ns = sleep_ns < 0 ? 0 : sleep_ns;
    for (int i = 0; i < c->n; i++) {
        a.ph[i] = c->ph[i];
        /* balanced: I items over the grid's G warps take r = ceil(I / G) rounds, and ceil(I / r)
         * warps take them all (as k_gemv's grid, LOP_CUDA_GEMV_BALANCE) */
        const int G = grid * CHAIN_WARPS, I = k_gemv_items(&a.ph[i]);
        const int r = lop_cdiv(I, G);
        a.ph[i].warps = k_gemv_balanced() && r > 0 ? lop_cdiv(I, r) : 0;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(CHAIN_WARPS * 32);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, k, a);
}

cudaError_t k_chain_flush(k_chain *c, cudaStream_t s) {
    if (c->n == 0) return cudaSuccess;
    cudaError_t e = cudaSuccess;
    LOP_DISPATCH_T(c->dt, { e = c->nb == 1 ? chain_launch<T, 1>(c, s) : chain_launch<T, 2>(c, s); });
    c->n = 0;
    return e;
}

cudaError_t k_chain_add(k_chain *c, int mode, const void *W, int ldw, int rows, const void *X, int ldx,
                        const k_xnorm_args *xn, float *Y, int ldy, const float *bias, void *H, int ldh,
                        const k_rope_args *rope, cudaStream_t s) {
    if (c->n == K_CHAIN_MAX) {
        cudaError_t e = k_chain_flush(c, s);
        if (e != cudaSuccess) return e;
    }
    k_gemv_phase &a = c->ph[c->n++];
    a = k_gemv_phase{};
    a.mode = mode, a.W = W, a.ldw = ldw, a.rows = rows, a.X = X, a.ldx = ldx, a.Y = Y, a.ldy = ldy, a.bias = bias;
    a.H = H, a.ldh = ldh;
    if (xn) a.xn = *xn, a.ldx = ldw; /* (ldw == c->ld_xs: the normalised input's row in shared memory) */
    if (rope) a.ra = *rope, a.ra.vpair = k_gemv_vpair_on();
    return cudaSuccess;
}
