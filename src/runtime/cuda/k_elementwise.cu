/* Elementwise kernels of the CUDA backend: weight upload (dtype conversion into zero-padded rows),
 * synthetic weights generated in place, embedding gather, RMSNorm fused with the pending residual
 * bias, RoPE fused with the K/V cache write, SwiGLU.
 * Why these fusions: at small batch every launch moves a few KB, so what matters is the number of
 * passes and launches; each kernel here reads its input once and writes its output once. Synthetic
 * weights are made on the device from the same counter-based function as the CPU
 * (lop_synth_value), so a 13.5 GB model never exists in host memory. */
#include "model/synth.h"
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#include <stdlib.h>

/* PDL measured slower than plain graph launches on an H200 (bench/cuda/NOTES.md): opt-in,
 * LOP_CUDA_PDL=1 (0 or unset: off) */
int lop_cuda_pdl(void) {
    static int on = -1;
    if (on < 0) on = lop_env_int("LOP_CUDA_PDL", 0) > 0 && !getenv("LOP_CUDA_TRACE");
    return on;
}

/* GEMV loop variant for 1-2 tokens (LOP_CUDA_GEMV, see k_gemv.cu); default chosen by measurement */
int lop_cuda_gemv_variant(void) {
    static int v = -1;
    if (v < 0) v = getenv("LOP_CUDA_GEMV") ? atoi(getenv("LOP_CUDA_GEMV")) : LOP_GEMV_DEFAULT_VARIANT;
    return v;
}

/* ---- weights ------------------------------------------------------------------------------- */
__device__ __forceinline__ float load_any(const void *p, lop_dtype dt, int64_t i) {
    if (dt == LOP_F32) return ((const float *)p)[i];
    if (dt == LOP_F16) return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
__device__ __forceinline__ void store_any(void *p, lop_dtype dt, int64_t i, float v) {
    if (dt == LOP_F32) ((float *)p)[i] = v;
    else if (dt == LOP_F16) ((__half *)p)[i] = __float2half_rn(v);
    else ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
}

__global__ void convert_rows_kernel(const void *src, lop_dtype sdt, void *dst, lop_dtype ddt, int64_t rows,
                                    int64_t cols, int64_t ld) {
    int64_t total = rows * ld;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / ld, c = k - r * ld;
        store_any(dst, ddt, k, c < cols ? load_any(src, sdt, r * cols + c) : 0.0f);
    }
}

void k_convert_rows(const void *src, lop_dtype sdt, void *dst, lop_dtype ddt, int64_t rows, int64_t cols,
                    int64_t ld_dst, cudaStream_t s) {
    int64_t total = rows * ld_dst;
    int blocks = (int)(total / 256 + 1 < 65536 ? total / 256 + 1 : 65536);
    convert_rows_kernel<<<blocks, 256, 0, s>>>(src, sdt, dst, ddt, rows, cols, ld_dst);
}

__device__ __forceinline__ uint64_t d_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* must equal lop_synth_value() bit for bit (same double arithmetic) */
__device__ __forceinline__ float d_synth_value(uint64_t seed, uint32_t id, uint64_t idx, float std) {
    uint64_t h = d_splitmix64(seed ^ ((uint64_t)id << 40) ^ idx);
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
    return (float)((2.0 * u - 1.0) * 1.7320508075688772 * (double)std);
}

__global__ void synth_fill_kernel(void *dst, lop_dtype ddt, int64_t rows, int64_t cols, int64_t ld, uint64_t seed,
                                  uint32_t id, float std, int ones) {
    int64_t total = rows * ld;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / ld, c = k - r * ld;
        float v = 0.0f;
        if (c < cols) v = ones ? 1.0f : d_synth_value(seed, id, (uint64_t)(r * cols + c), std);
        store_any(dst, ddt, k, v);
    }
}

void k_synth_fill(void *dst, lop_dtype ddt, int64_t rows, int64_t cols, int64_t ld_dst, uint64_t seed, uint32_t id,
                  float std, int ones, cudaStream_t s) {
    int64_t total = rows * ld_dst;
    int blocks = (int)(total / 256 + 1 < 65536 ? total / 256 + 1 : 65536);
    synth_fill_kernel<<<blocks, 256, 0, s>>>(dst, ddt, rows, cols, ld_dst, seed, id, std, ones);
}

/* ---- embedding ----------------------------------------------------------------------------- */
LOP_TL_TU(elementwise)

/* 16-byte loads when dim % 8 == 0 (rows start 16-byte aligned, ld is a multiple of 8): the row's
 * loads are in flight together instead of one 2-byte load per thread and round (LLaMA-7B, one
 * token, H200: 6.9 us before, 1.7 after; bench/cuda/NOTES.md 20) */
template <typename T>
__global__ void embed_kernel(const T *__restrict__ emb, int ld, const int32_t *__restrict__ tok, int dim,
                             float *__restrict__ x) {
    TL_BEGIN();
    pdl_trigger();
    pdl_wait();
    int i = blockIdx.x;
    const T *row = emb + (int64_t)tok[i] * ld;
    float *xr = x + (int64_t)i * dim;
    if (dim % 8 == 0) {
        for (int c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            float f[8];
            load8<T>(__ldg(reinterpret_cast<const uint4 *>(row) + c), f);
            reinterpret_cast<float4 *>(xr)[2 * c] = make_float4(f[0], f[1], f[2], f[3]);
            reinterpret_cast<float4 *>(xr)[2 * c + 1] = make_float4(f[4], f[5], f[6], f[7]);
        }
    } else {
        for (int d = threadIdx.x; d < dim; d += blockDim.x) xr[d] = elt<T>::to_f(row[d]);
    }
    TL_END(TL_EMBED);
}

void k_embed(const void *emb, int ld_emb, lop_dtype dt, const int32_t *tok, int n, int dim, float *x, cudaStream_t s) {
    if (n <= 0) return;
    LOP_DISPATCH_T(dt, launch_k(embed_kernel<T>, n, 256, 0, s, (const T *)emb, ld_emb, tok, dim, x));
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */
__device__ double block_sum_d(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int k = 0; k < nw; k++) t += sh[k];
    return t;
}

template <typename T>
__global__ void rmsnorm_kernel(float *x, const float *bias, const float *w, const int32_t *rows, int dim, float eps,
                               T *out, int ld_out) {
    __shared__ double sh[32];
    TL_BEGIN();
    pdl_trigger();
    pdl_wait();
    int r = blockIdx.x;
    int src = rows ? rows[r] : r;
    float *xr = x + (int64_t)src * dim;
    int wb = bias && !rows;
    float ss = 0;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float v = xr[d];
        if (bias) {
            v += bias[d];
            if (wb) xr[d] = v;
        }
        ss += v * v;
    }
    double tot = block_sum_d((double)ss, sh);
    float inv = 1.0f / sqrtf((float)(tot / dim) + eps);
    T *o = out + (int64_t)r * ld_out;
    for (int d = threadIdx.x; d < ld_out; d += blockDim.x) {
        float v = 0.0f;
        if (d < dim) {
            float xv = xr[d];
            if (bias && !wb) xv += bias[d];
            v = w[d] * (xv * inv);
        }
        o[d] = elt<T>::from_f(v);
    }
    TL_END(TL_NORM);
}

void k_rmsnorm(float *x, const float *bias, const float *w, const int32_t *rows, int n, int dim, float eps, void *out,
               int ld_out, lop_dtype dt, cudaStream_t s) {
    if (n <= 0) return;
    int th = dim >= 2048 ? 512 : 256;
    LOP_DISPATCH_T(dt, launch_k(rmsnorm_kernel<T>, n, th, 0, s, x, bias, w, rows, dim, eps, (T *)out, ld_out));
}

/* ---- RoPE + KV cache ----------------------------------------------------------------------- */
__global__ void rope_cache_kernel(const float *qkv, int ld_qkv, const float *b, const int32_t *seq, const int32_t *pos,
                                  int nh, int nkv, int hd, const float *inv_freq, float *q_out, __half *kc, __half *vc,
                                  int max_seq) {
    pdl_trigger();
    pdl_wait();
    int i = blockIdx.x, half = hd / 2, qd = nh * hd, kvd = nkv * hd;
    const float *row = qkv + (int64_t)i * ld_qkv;
    int p = pos[i];
    int64_t slot = seq[i];
    int n_rot = (nh + nkv) * half;
    for (int it = blockIdx.y * blockDim.x + threadIdx.x; it < n_rot + kvd; it += gridDim.y * blockDim.x) {
        if (it < n_rot) {
            int hh = it / half, j = it - hh * half;
            int c0 = hh * hd + j; /* q heads first, then k heads (columns qd + g*hd) */
            float x0 = row[c0], x1 = row[c0 + half];
            if (b) x0 += b[c0], x1 += b[c0 + half];
            float a = (float)p * inv_freq[j], sn, cs;
            sincosf(a, &sn, &cs);
            float y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
            if (hh < nh) {
                q_out[(int64_t)i * qd + c0] = y0;
                q_out[(int64_t)i * qd + c0 + half] = y1;
            } else {
                int g = hh - nh;
                __half *kr = kc + ((slot * nkv + g) * max_seq + p) * hd;
                kr[j] = __float2half_rn(y0);
                kr[j + half] = __float2half_rn(y1);
            }
        } else {
            int c = it - n_rot, g = c / hd, d = c - g * hd;
            float v = row[qd + kvd + c];
            if (b) v += b[qd + kvd + c];
            vc[((slot * nkv + g) * max_seq + p) * hd + d] = __float2half_rn(v);
        }
    }
}

void k_rope_cache(const float *qkv, int ld_qkv, const float *bqkv, int n, const int32_t *seq, const int32_t *pos,
                  int nh, int nkv, int hd, const float *inv_freq, float *q_out, __half *kc, __half *vc, int max_seq,
                  cudaStream_t s) {
    if (n <= 0) return;
    int items = (nh + nkv) * (hd / 2) + nkv * hd;
    dim3 grid(n, lop_cdiv(items, 128));
    launch_k(rope_cache_kernel, grid, 128, 0, s, qkv, ld_qkv, bqkv, seq, pos, nh, nkv, hd, inv_freq, q_out, kc, vc, max_seq);
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */
template <typename T>
__global__ void swiglu_kernel(const float *gu, int ld_gu, const float *b, int n, int f, T *h, int ld_h) {
    pdl_trigger();
    pdl_wait();
    int64_t total = (int64_t)n * ld_h;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / ld_h;
        int j = (int)(k - i * ld_h);
        float v = 0.0f;
        if (j < f) {
            float g = gu[i * ld_gu + j], u = gu[i * ld_gu + f + j];
            if (b) g += b[j], u += b[f + j];
            v = g / (1.0f + expf(-g)) * u;
        }
        h[k] = elt<T>::from_f(v);
    }
}

void k_swiglu(const float *gu, int ld_gu, const float *bgu, int n, int f, void *h, int ld_h, lop_dtype dt,
              cudaStream_t s) {
    if (n <= 0) return;
    int64_t total = (int64_t)n * ld_h;
    int blocks = (int)(total / 256 + 1 < 65536 ? total / 256 + 1 : 65536);
    LOP_DISPATCH_T(dt, swiglu_kernel<T><<<blocks, 256, 0, s>>>(gu, ld_gu, bgu, n, f, (T *)h, ld_h));
}
