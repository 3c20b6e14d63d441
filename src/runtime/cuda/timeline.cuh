/* Device timeline of one decode step (diagnostic build only: `make TIMELINE=1`).
 * Why: a decode step is ~190 kernels replayed from a CUDA graph, and Nsight Systems is not on the
 * GPU machine; Nsight Compute serialises kernels and flushes caches, so it shows each kernel's ramp,
 * not the step. Here every warp of the instrumented kernels stamps %globaltimer when it starts and
 * when it is done, into a log on the device, for the one step the host switches the log on for
 * (LOP_TIMELINE=file, LOP_TIMELINE_STEP=k; cuda_backend.cu writes the file, bench/cuda_timeline.sh
 * reads it). Records go to one region per SM with a counter per SM, so the stamps do not queue on
 * one atomic. Without LOP_TIMELINE every macro here is empty and the kernels are unchanged.
 * The build compiles each .cu file on its own (no -rdc), so each file that stamps has its own copy
 * of the log's address (LOP_TL_TU defines it and the setter the backend calls). */
#ifndef LOP_CUDA_TIMELINE_CUH
#define LOP_CUDA_TIMELINE_CUH
#include <stdint.h>

/* kernel ids in the log */
enum {
    TL_EMBED = 1,
    TL_NORM,
    TL_ATTN_DECODE,
    TL_SAMPLE, /* with the step's advance (there was an advance kernel, id 5) */
    TL_GEMV = 16, /* + 2 * mode + xn */
};

typedef struct lop_tl_rec {
    unsigned long long t0, t1; /* ns, %globaltimer */
    uint16_t kid, smid;
    uint16_t block, warp;
} lop_tl_rec;

/* the log: per_sm records for each SM, counts[sm] of them used; on: nonzero while logging */
typedef struct lop_tl {
    lop_tl_rec *rec;
    unsigned *counts;
    int *on;
    unsigned per_sm, n_sm;
} lop_tl;

#ifdef LOP_TIMELINE
static __device__ lop_tl g_tl;
#define LOP_TL_TU(name)                                                                             \
    cudaError_t lop_tl_set_##name(const lop_tl *t) { return cudaMemcpyToSymbol(g_tl, t, sizeof *t); }

__device__ __forceinline__ unsigned long long tl_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned tl_smid() {
    unsigned s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}
/* lane 0 of each warp appends (kid, t0, now) to its SM's region */
__device__ __forceinline__ void tl_end(int kid, unsigned long long t0) {
    if ((threadIdx.x & 31) || !g_tl.on || !*(volatile const int *)g_tl.on) return;
    const unsigned long long t1 = tl_now();
    const unsigned sm = tl_smid();
    if (sm >= g_tl.n_sm) return;
    const unsigned i = atomicAdd(g_tl.counts + 32 * sm, 1u); /* a 128-byte line per SM's counter */
    if (i >= g_tl.per_sm) return;
    lop_tl_rec r;
    r.t0 = t0, r.t1 = t1, r.kid = (uint16_t)kid, r.smid = (uint16_t)sm;
    r.block = (uint16_t)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    r.warp = (uint16_t)(threadIdx.x >> 5);
    g_tl.rec[(size_t)sm * g_tl.per_sm + i] = r;
}
/* the start stamp waits in shared memory (a slot per warp), not in two registers held across the
 * kernel: a register more can cost a block per SM (the GEMVs' occupancy sits on such edges) */
#define TL_BEGIN()                                                                                 \
    __shared__ unsigned long long tl_t0_[32];                                                      \
    if (!(threadIdx.x & 31)) tl_t0_[threadIdx.x >> 5] = tl_now()
#define TL_END(kid) tl_end((kid), tl_t0_[threadIdx.x >> 5])
#else
#define LOP_TL_TU(name)
#define TL_BEGIN() ((void)0)
#define TL_END(kid) ((void)0)
#endif

#endif
