/* Shared device helpers of the CUDA backend: element types, conversions of 8-wide chunks (one
 * 16-byte load), warp reductions, and the launch-error check.
 * Why one header: every kernel file reads weights as fp16 or bf16 through the same 16-byte path,
 * so the conversion code exists once and the template parameter T picks the type. */
#ifndef LOP_CUDA_COMMON_CUH
#define LOP_CUDA_COMMON_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/model.h" /* lop_dtype */
#include "runtime/cuda/timeline.cuh"

/* Storage type <-> float. T is __half or __nv_bfloat16. */
template <typename T> struct elt;
template <> struct elt<__half> {
    static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
    static __device__ __forceinline__ float2 to_f2(uint32_t u) {
        __half2 h = *reinterpret_cast<__half2 *>(&u);
        return __half22float2(h);
    }
};
template <> struct elt<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
    static __device__ __forceinline__ float2 to_f2(uint32_t u) {
        __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162 *>(&u);
        return __bfloat1622float2(h);
    }
};

/* 8 elements of one 16-byte load -> 8 floats */
template <typename T> __device__ __forceinline__ void load8(const uint4 &v, float *f) {
    float2 a = elt<T>::to_f2(v.x), b = elt<T>::to_f2(v.y), c = elt<T>::to_f2(v.z), d = elt<T>::to_f2(v.w);
    f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y; f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

/* D += A B on the tensor cores: mma.sync m16n8k16, A 16 x 16 (four registers of pairs), B 16 x 8 (two),
 * D 16 x 8 in fp32; T (__half or __nv_bfloat16) is the inputs' type. Fragment layout (lane = 4 g + t):
 * A regs (row g, k 2t..2t+1), (row g+8, same k), (row g, k 2t+8..2t+9), (row g+8, same k); B regs
 * (k 2t..2t+1, col g), (k 2t+8..2t+9, col g); D (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1). */
template <typename T> __device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__half>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* an engine switch (LOP_CUDA_*) from the environment: def when unset or empty, else its value */
static inline int lop_env_int(const char *name, int def) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : def;
}

static inline int lop_cdiv(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }
__host__ __device__ static inline int lop_pad8(int x) { return (x + 7) & ~7; }

/* Programmatic dependent launch (Hopper): a kernel launched with launch_k may start while the
 * previous kernel of the stream finishes; it must call pdl_wait() before touching anything that
 * kernel wrote (weights may be prefetched before). pdl_trigger() lets the next kernel launch early.
 * Both are no-ops when the launch carried no such dependency. On with LOP_CUDA_PDL=1. */
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
int lop_cuda_pdl(void);
int lop_cuda_gemv_variant(void);
#ifndef LOP_GEMV_DEFAULT_VARIANT
#define LOP_GEMV_DEFAULT_VARIANT 5
#endif

template <typename... KArgs, typename... Args>
static inline cudaError_t launch_k(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                   Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = s != 0 && lop_cuda_pdl() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kern, static_cast<KArgs>(args)...);
}

/* Dispatch on a runtime lop_dtype to a template over T. */
#define LOP_DISPATCH_T(dt, ...)                                                                     \
    do {                                                                                           \
        if ((dt) == LOP_BF16) {                                                                    \
            typedef __nv_bfloat16 T;                                                               \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            typedef __half T;                                                                      \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

#endif
