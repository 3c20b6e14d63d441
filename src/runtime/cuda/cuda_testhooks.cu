/* Test hooks: each runs one backend kernel on host fp32 arrays (see cuda_api.h).
 * Why: the kernel tests (tests/test_cuda.c) are C and compare every kernel with the CPU reference
 * ops on fresh random inputs; these wrappers do the device copies and the fp16/bf16 rounding, so
 * the tests state only inputs, reference and tolerance. Not used on any hot path. */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/half.h"
#include "core/status.h"
}
#include "runtime/cuda/common.cuh"
#include "runtime/cuda/cu_gemm.cuh"
#include "runtime/cuda/cuda_api.h"
#include "runtime/cuda/kernels.cuh"

/* device allocations of one hook, freed together */
typedef struct arena {
    void *p[32];
    int n;
    cudaError_t err;
} arena;

static void *dalloc(arena *a, size_t bytes) {
    if (a->err != cudaSuccess || a->n == 32) {
        if (a->err == cudaSuccess) a->err = cudaErrorMemoryAllocation;
        return NULL;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        a->err = e;
        return NULL;
    }
    cudaMemset(p, 0xff, bytes ? bytes : 16); /* poison: every output element must be written */
    a->p[a->n++] = p;
    return p;
}

static void *dcopy(arena *a, const void *h, size_t bytes) {
    void *d = dalloc(a, bytes);
    if (d && h) {
        cudaError_t e = cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) a->err = e;
    }
    return d;
}

/* host fp32 [rows][cols] -> device dt [rows][ld] (zero-padded) */
static void *d16(arena *a, const float *h, int64_t rows, int64_t cols, int64_t ld, lop_dtype dt) {
    float *f = (float *)dcopy(a, h, (size_t)(rows * cols) * 4);
    void *d = dalloc(a, (size_t)(rows * ld) * (dt == LOP_F32 ? 4 : 2));
    if (d && f) k_convert_rows(f, LOP_F32, d, dt, rows, cols, ld, 0);
    return d;
}

/* device dt [rows][ld] -> host fp32 [rows][cols] */
static void h32(arena *a, float *h, const void *d, int64_t rows, int64_t cols, int64_t ld, lop_dtype dt) {
    if (a->err != cudaSuccess) return;
    size_t es = dt == LOP_F32 ? 4 : 2;
    char *tmp = (char *)malloc((size_t)(rows * ld) * es);
    if (!tmp) {
        a->err = cudaErrorMemoryAllocation;
        return;
    }
    cudaError_t e = cudaMemcpy(tmp, d, (size_t)(rows * ld) * es, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) a->err = e;
    for (int64_t r = 0; e == cudaSuccess && r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t k = r * ld + c;
            if (dt == LOP_F32) h[r * cols + c] = ((float *)tmp)[k];
            else if (dt == LOP_F16) h[r * cols + c] = lop_f16_to_f32(((uint16_t *)tmp)[k]);
            else h[r * cols + c] = lop_bf16_to_f32(((uint16_t *)tmp)[k]);
        }
    free(tmp);
}

static lop_status finish(arena *a) {
    cudaError_t e = a->err;
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    for (int i = 0; i < a->n; i++) cudaFree(a->p[i]);
    cudaGetLastError();
    if (e != cudaSuccess) return lop_fail(e == cudaErrorMemoryAllocation ? LOP_ERR_OOM : LOP_ERR_DEVICE, "CUDA: %s", cudaGetErrorString(e));
    return LOP_OK;
}

extern "C" lop_status lop_cuda_test_rmsnorm(float *out, float *x, const float *bias, const float *w, const int32_t *rows,
                                            int n_x, int n_out, int dim, float eps, lop_dtype dt) {
    arena a = {};
    int ld = lop_pad8(dim);
    float *dx = (float *)dcopy(&a, x, (size_t)n_x * dim * 4);
    float *db = bias ? (float *)dcopy(&a, bias, (size_t)dim * 4) : NULL;
    float *dw = (float *)dcopy(&a, w, (size_t)dim * 4);
    int32_t *dr = rows ? (int32_t *)dcopy(&a, rows, (size_t)n_out * 4) : NULL;
    void *dout = dalloc(&a, (size_t)n_out * ld * 2);
    if (a.err == cudaSuccess) k_rmsnorm(dx, db, dw, dr, n_out, dim, eps, dout, ld, dt, 0);
    h32(&a, out, dout, n_out, dim, ld, dt);
    h32(&a, x, dx, n_x, dim, dim, LOP_F32);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_linear(float *Y, const float *X, const float *W, const float *bias, int n, int out,
                                           int in, lop_dtype dt, int path, int mode) {
    arena a = {};
    int ld = lop_pad8(in), f = out / 2, ldh = lop_pad8(f);
    void *dW = d16(&a, W, out, in, ld, dt);
    void *dX = d16(&a, X, n, in, ld, dt);
    float *db = bias ? (float *)dcopy(&a, bias, (size_t)out * 4) : NULL;
    int ycols = mode == GEMV_SWIGLU ? f : out;
    float *dY = (float *)dcopy(&a, mode == GEMV_ACC ? Y : NULL, (size_t)n * ycols * 4);
    void *dH = mode == GEMV_SWIGLU ? dalloc(&a, (size_t)n * ldh * 2) : NULL;
    if (a.err == cudaSuccess) {
        if (path == 1) {
            if (n > k_gemv_max_batch()) {
                finish(&a);
                return lop_fail(LOP_ERR_ARG, "GEMV path takes at most %d tokens", k_gemv_max_batch());
            }
            k_gemv(dW, ld, dt, out, dX, ld, n, mode, dY, out, db, dH, ldh, NULL, 0);
        } else {
            cu_gemm g;
            void *ws = dalloc(&a, 32u << 20);
            float *big = mode == GEMV_SWIGLU ? (float *)dalloc(&a, (size_t)n * lop_pad8(out) * 4) : NULL;
            if (a.err == cudaSuccess && cu_gemm_init(&g, ws, 32u << 20) == 0) {
                int rc;
                if (mode == GEMV_SWIGLU) {
                    rc = cu_gemm_run(&g, dt, dW, ld, out, dX, ld, n, ld, big, lop_pad8(out), 0.f, 0, NULL, 0);
                    k_swiglu(big, lop_pad8(out), db, n, f, dH, ldh, dt, 0);
                } else {
                    rc = cu_gemm_run(&g, dt, dW, ld, out, dX, ld, n, ld, dY, out, mode == GEMV_ACC ? 1.f : 0.f, 0, NULL, 0);
                }
                cudaDeviceSynchronize();
                cu_gemm_free(&g);
                if (rc) {
                    finish(&a);
                    return lop_fail(LOP_ERR_DEVICE, "cuBLASLt status %d", rc);
                }
            } else if (a.err == cudaSuccess) {
                a.err = cudaErrorUnknown;
            }
        }
    }
    if (mode == GEMV_SWIGLU) h32(&a, Y, dH, n, f, ldh, dt);
    else h32(&a, Y, dY, n, out, out, LOP_F32);
    if (path == 2 && mode == GEMV_ACC && bias && a.err == cudaSuccess) /* the backend leaves it to the next norm */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) Y[(int64_t)i * out + j] += bias[j];
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_swiglu_xnorm(float *h, const float *x, const float *nw, float eps, const float *W,
                                                 const float *bias, int n, int f, int in, lop_dtype dt) {
    if (!k_gemv_xnorm_ok(n, in, lop_pad8(in))) return lop_fail(LOP_ERR_ARG, "normalised-input GEMV does not take %d x %d", n, in);
    arena a = {};
    int ld = lop_pad8(in), ldh = lop_pad8(f);
    void *dW = d16(&a, W, 2 * f, in, ld, dt);
    float *dx = (float *)dcopy(&a, x, (size_t)n * in * 4);
    float *dw = (float *)dcopy(&a, nw, (size_t)in * 4);
    float *db = bias ? (float *)dcopy(&a, bias, (size_t)2 * f * 4) : NULL;
    void *dH = dalloc(&a, (size_t)n * ldh * 2);
    if (a.err == cudaSuccess) {
        k_xnorm_args xa = {dx, dw, eps, in};
        k_gemv_xnorm(dW, ld, dt, 2 * f, &xa, n, GEMV_SWIGLU, NULL, 0, dH, ldh, db, NULL, 0);
    }
    h32(&a, h, dH, n, f, ldh, dt);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_store_xnorm(float *y, const float *x, const float *nw, float eps, const float *W,
                                                 int n, int out, int in, lop_dtype dt) {
    if (n < 1 || n > 2 || !k_gemv_xnorm_ok(n, in, lop_pad8(in)))
        return lop_fail(LOP_ERR_ARG, "normalised-input store GEMV does not take %d x %d", n, in);
    arena a = {};
    int ld = lop_pad8(in);
    void *dW = d16(&a, W, out, in, ld, dt);
    float *dx = (float *)dcopy(&a, x, (size_t)n * in * 4);
    float *dw = (float *)dcopy(&a, nw, (size_t)in * 4);
    float *dY = (float *)dalloc(&a, (size_t)n * out * 4);
    if (a.err == cudaSuccess) {
        k_xnorm_args xa = {dx, dw, eps, in};
        k_gemv_xnorm(dW, ld, dt, out, &xa, n, GEMV_STORE, dY, out, NULL, 0, NULL, NULL, 0);
    }
    h32(&a, y, dY, n, out, out, LOP_F32);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_rope(float *q_out, float *k_out, float *v_out, const float *qkv, const float *bias,
                                         const int32_t *pos, int n, int nh, int nkv, int hd, const float *inv_freq) {
    arena a = {};
    int qd = nh * hd, kvd = nkv * hd, w = qd + 2 * kvd, ld = lop_pad8(w), max_seq = 1;
    for (int i = 0; i < n; i++)
        if (pos[i] + 1 > max_seq) max_seq = pos[i] + 1;
    float *h = (float *)calloc((size_t)n * ld, sizeof(float));
    if (!h) return lop_fail(LOP_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++) memcpy(h + (size_t)i * ld, qkv + (size_t)i * w, (size_t)w * 4);
    float *dqkv = (float *)dcopy(&a, h, (size_t)n * ld * 4);
    free(h);
    float *db = bias ? (float *)dcopy(&a, bias, (size_t)w * 4) : NULL;
    int32_t *dseq = (int32_t *)dalloc(&a, (size_t)n * 4);
    if (dseq) cudaMemset(dseq, 0, (size_t)n * 4);
    int32_t *dpos = (int32_t *)dcopy(&a, pos, (size_t)n * 4);
    float *dinv = (float *)dcopy(&a, inv_freq, (size_t)hd / 2 * 4);
    float *dq = (float *)dalloc(&a, (size_t)n * qd * 4);
    __half *kc = (__half *)dalloc(&a, (size_t)nkv * max_seq * hd * 2);
    __half *vc = (__half *)dalloc(&a, (size_t)nkv * max_seq * hd * 2);
    if (a.err == cudaSuccess) k_rope_cache(dqkv, ld, db, n, dseq, dpos, nh, nkv, hd, dinv, dq, kc, vc, max_seq, 0);
    h32(&a, q_out, dq, n, qd, qd, LOP_F32);
    float *kh = (float *)malloc((size_t)nkv * max_seq * hd * 4), *vh = (float *)malloc((size_t)nkv * max_seq * hd * 4);
    if (kh && vh) {
        h32(&a, kh, kc, (int64_t)nkv * max_seq, hd, hd, LOP_F16);
        h32(&a, vh, vc, (int64_t)nkv * max_seq, hd, hd, LOP_F16);
        for (int i = 0; i < n && a.err == cudaSuccess; i++)
            for (int g = 0; g < nkv; g++)
                for (int d = 0; d < hd; d++) {
                    size_t src = ((size_t)g * max_seq + pos[i]) * hd + d;
                    k_out[(size_t)i * kvd + g * hd + d] = kh[src];
                    v_out[(size_t)i * kvd + g * hd + d] = vh[src];
                }
    } else {
        a.err = cudaErrorMemoryAllocation;
    }
    free(kh);
    free(vh);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_swiglu(float *h, const float *gu, const float *bias, int n, int f, lop_dtype dt) {
    arena a = {};
    float *dgu = (float *)dcopy(&a, gu, (size_t)n * 2 * f * 4);
    float *db = bias ? (float *)dcopy(&a, bias, (size_t)2 * f * 4) : NULL;
    void *dh = dalloc(&a, (size_t)n * lop_pad8(f) * 2);
    if (a.err == cudaSuccess) k_swiglu(dgu, 2 * f, db, n, f, dh, lop_pad8(f), dt, 0);
    h32(&a, h, dh, n, f, lop_pad8(f), dt);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_embed(float *x, const float *emb, int vocab, int dim, const int32_t *tok, int n,
                                          lop_dtype dt) {
    arena a = {};
    void *de = d16(&a, emb, vocab, dim, lop_pad8(dim), dt);
    int32_t *dt_ = (int32_t *)dcopy(&a, tok, (size_t)n * 4);
    float *dx = (float *)dalloc(&a, (size_t)n * dim * 4);
    if (a.err == cudaSuccess) k_embed(de, lop_pad8(dim), dt, dt_, n, dim, dx, 0);
    h32(&a, x, dx, n, dim, dim, LOP_F32);
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_attention(float *out, const float *q, const float *K, const float *V,
                                              const int32_t *pos, int n, int ctx, int nh, int nkv, int hd, int kernel,
                                              int nsplit, lop_dtype dt) {
    arena a = {};
    int kvd = nkv * hd, ld = lop_pad8(nh * hd);
    /* cache layout [slot 0][kv head][ctx][hd] */
    float *kt = (float *)malloc((size_t)ctx * kvd * 4), *vt = (float *)malloc((size_t)ctx * kvd * 4);
    int32_t *tiles = (int32_t *)malloc(((size_t)n + 1) * 4);
    if (!kt || !vt || !tiles) {
        free(kt);
        free(vt);
        free(tiles);
        return lop_fail(LOP_ERR_OOM, "out of memory");
    }
    for (int t = 0; t < ctx; t++)
        for (int g = 0; g < nkv; g++)
            for (int d = 0; d < hd; d++) {
                kt[((size_t)g * ctx + t) * hd + d] = K[(size_t)t * kvd + g * hd + d];
                vt[((size_t)g * ctx + t) * hd + d] = V[(size_t)t * kvd + g * hd + d];
            }
    __half *kc = (__half *)d16(&a, kt, (int64_t)nkv * ctx, hd, hd, LOP_F16);
    __half *vc = (__half *)d16(&a, vt, (int64_t)nkv * ctx, hd, hd, LOP_F16);
    free(kt);
    free(vt);
    float *dq = (float *)dcopy(&a, q, (size_t)n * nh * hd * 4);
    int32_t *dseq = (int32_t *)dalloc(&a, (size_t)n * 4);
    if (dseq) cudaMemset(dseq, 0, (size_t)n * 4);
    int32_t *dpos = (int32_t *)dcopy(&a, pos, (size_t)n * 4);
    void *dout = dalloc(&a, (size_t)n * ld * 2);
    float *part = (float *)dalloc(&a, (size_t)n * nh * (nsplit > 0 ? nsplit : 1) * (hd + 2) * 4);
    int *counters = (int *)dalloc(&a, (size_t)n * nh * sizeof(int));
    if (counters) cudaMemset(counters, 0, (size_t)n * nh * sizeof(int));
    int nt = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || pos[i] <= pos[i - 1] || i - tiles[nt - 1] >= LOP_ATTN_TILE) tiles[nt++] = i;
    tiles[nt] = n;
    int32_t *dtiles = (int32_t *)dcopy(&a, tiles, ((size_t)nt + 1) * 4);
    free(tiles);
    if (a.err == cudaSuccess) {
        if (kernel == 0)
        {
            k_attn_decode(dq, kc, vc, dseq, dpos, n, nh, nkv, hd, ctx, 1, nsplit > 0 ? nsplit : 1, part, counters,
                          dout, ld, dt, 0);
            /* twice: the combine counters must have been left at zero */
            k_attn_decode(dq, kc, vc, dseq, dpos, n, nh, nkv, hd, ctx, 1, nsplit > 0 ? nsplit : 1, part, counters,
                          dout, ld, dt, 0);
        }
        else
            k_attn_prefill(dq, kc, vc, dseq, dpos, dtiles, nt, n, nh, nkv, hd, ctx, dout, ld, dt, kernel == 2, 0);
    }
    h32(&a, out, dout, n, nh * hd, ld, dt);
    /* padding columns must be zero */
    if (a.err == cudaSuccess && ld > nh * hd) {
        float *full = (float *)malloc((size_t)n * ld * 4);
        if (full) {
            h32(&a, full, dout, n, ld, ld, dt);
            for (int i = 0; i < n; i++)
                for (int c = nh * hd; c < ld; c++)
                    if (full[(size_t)i * ld + c] != 0.f) out[0] = NAN; /* makes the comparison fail */
            free(full);
        }
    }
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_sample(int32_t *tokens, const float *logits, int n, int V, float temperature,
                                           int top_k, float top_p, uint64_t *rng, int variant) {
    arena a = {};
    float *dl = (float *)dcopy(&a, logits, (size_t)n * V * 4);
    uint64_t *dr = (uint64_t *)dcopy(&a, rng, (size_t)n * 8);
    int32_t *dt = (int32_t *)dalloc(&a, (size_t)n * 4);
    k_sample_params p = {temperature, top_k, top_p};
    if (a.err == cudaSuccess) k_sample_variant(variant, dl, V, n, p, dr, dt, NULL, NULL, NULL, 0);
    if (a.err == cudaSuccess) {
        cudaError_t e = cudaMemcpy(tokens, dt, (size_t)n * 4, cudaMemcpyDeviceToHost);
        if (e == cudaSuccess) e = cudaMemcpy(rng, dr, (size_t)n * 8, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) a.err = e;
    }
    return finish(&a);
}

extern "C" lop_status lop_cuda_test_synth(float *out, int64_t rows, int64_t cols, uint64_t seed, uint32_t id, float std,
                                          lop_dtype dt) {
    arena a = {};
    int64_t ld = dt == LOP_F32 ? cols : lop_pad8((int)cols);
    void *d = dalloc(&a, (size_t)(rows * ld) * (dt == LOP_F32 ? 4 : 2));
    if (a.err == cudaSuccess) k_synth_fill(d, dt, rows, cols, ld, seed, id, std, 0, 0);
    h32(&a, out, d, rows, cols, ld, dt);
    return finish(&a);
}
