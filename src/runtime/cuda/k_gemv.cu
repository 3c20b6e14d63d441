/* Skinny GEMM for small batch (1..8 tokens): Y = X · W^T with W [rows][ldw] in fp16/bf16.
 * Why hand-written: at batch 1-8 a decode step is a pass over every weight once, so the only thing
 * that matters is streaming W at full bandwidth. Each warp owns one output row (two for the fused
 * SwiGLU: the gate row j and the up row f+j), reads it with 16-byte loads, four loads in flight per
 * lane, and keeps the 1..8 token dot products in registers; X (a few KB) comes through L1. Rows are
 * zero-padded to a multiple of 8 elements at upload, so any width (e.g. 7155) has no scalar tail,
 * and every row starts 16-byte aligned. Epilogues fuse what follows the product at small batch:
 * residual add (+bias) into the fp32 stream, or SwiGLU (+biases) writing the FFN's hidden row. */
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/kernels.cuh"

#define GEMV_WARPS 4
#define GEMV_UNROLL 4
#define GEMV_MAX_NB 8

template <typename T, int NB, int MODE>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const T *__restrict__ W, int ldw, int rows, const T *__restrict__ X, int ldx, float *Y, int ldy,
                const float *__restrict__ bias, T *H, int ldh) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.x * GEMV_WARPS + warp;
    const int f = rows / 2;
    if (MODE == GEMV_SWIGLU) {
        if (r >= lop_pad8(f)) return;
        if (r >= f) {
            if (lane < NB) H[(int64_t)lane * ldh + r] = elt<T>::from_f(0.0f);
            return;
        }
    } else if (r >= rows) {
        return;
    }
    const int nchunk = ldw >> 3;
    const uint4 *w0 = reinterpret_cast<const uint4 *>(W + (int64_t)r * ldw);
    const uint4 *w1 = reinterpret_cast<const uint4 *>(W + (int64_t)(MODE == GEMV_SWIGLU ? r + f : r) * ldw);
    float acc0[NB], acc1[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) acc0[b] = acc1[b] = 0.0f;

    for (int c0 = lane; c0 < nchunk; c0 += 32 * GEMV_UNROLL) {
        uint4 a[GEMV_UNROLL], g[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = c0 + 32 * u;
            if (c < nchunk) {
                a[u] = __ldcs(w0 + c);
                if (MODE == GEMV_SWIGLU) g[u] = __ldcs(w1 + c);
            }
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = c0 + 32 * u;
            if (c < nchunk) {
                float wf[8], wg[8];
                load8<T>(a[u], wf);
                if (MODE == GEMV_SWIGLU) load8<T>(g[u], wg);
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    uint4 xv = __ldg(reinterpret_cast<const uint4 *>(X + (int64_t)b * ldx) + c);
                    float xf[8];
                    load8<T>(xv, xf);
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        acc0[b] = fmaf(wf[e], xf[e], acc0[b]);
                        if (MODE == GEMV_SWIGLU) acc1[b] = fmaf(wg[e], xf[e], acc1[b]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int b = 0; b < NB; b++) {
        acc0[b] = warp_sum(acc0[b]);
        if (MODE == GEMV_SWIGLU) acc1[b] = warp_sum(acc1[b]);
    }
#pragma unroll
    for (int b = 0; b < NB; b++) {
        if (lane != b) continue;
        if (MODE == GEMV_STORE) {
            Y[(int64_t)b * ldy + r] = acc0[b];
        } else if (MODE == GEMV_ACC) {
            Y[(int64_t)b * ldy + r] += acc0[b] + (bias ? bias[r] : 0.0f);
        } else {
            float gv = acc0[b], uv = acc1[b];
            if (bias) gv += bias[r], uv += bias[f + r];
            H[(int64_t)b * ldh + r] = elt<T>::from_f(gv / (1.0f + expf(-gv)) * uv);
        }
    }
}

int k_gemv_max_batch(void) { return GEMV_MAX_NB; }

template <typename T, int MODE>
static void launch_mode(const T *W, int ldw, int rows, const T *X, int ldx, int nb, float *Y, int ldy,
                        const float *bias, T *H, int ldh, cudaStream_t s) {
    int out_rows = MODE == GEMV_SWIGLU ? lop_pad8(rows / 2) : rows;
    dim3 grid(lop_cdiv(out_rows, GEMV_WARPS)), block(GEMV_WARPS * 32);
    switch (nb) {
#define CASE(N) \
    case N: gemv_kernel<T, N, MODE><<<grid, block, 0, s>>>(W, ldw, rows, X, ldx, Y, ldy, bias, H, ldh); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    default: break;
    }
}

void k_gemv(const void *W, int ldw, lop_dtype dt, int rows, const void *X, int ldx, int nb, int mode, float *Y, int ldy,
            const float *bias, void *H, int ldh, cudaStream_t s) {
    if (nb <= 0 || rows <= 0) return;
    LOP_DISPATCH_T(dt, {
        const T *w = (const T *)W, *x = (const T *)X;
        if (mode == GEMV_STORE) launch_mode<T, GEMV_STORE>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, s);
        else if (mode == GEMV_ACC) launch_mode<T, GEMV_ACC>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, s);
        else launch_mode<T, GEMV_SWIGLU>(w, ldw, rows, x, ldx, nb, Y, ldy, bias, (T *)H, ldh, s);
    });
}
