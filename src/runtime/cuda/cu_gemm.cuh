/* cuBLASLt wrapper for the backend's matrix products at prefill / large batch:
 * Y[n][m] (fp32, ldy) = beta * Y + X[n][k] (16-bit, ldx) · W[m][k]^T (16-bit, ldw).
 * Why a wrapper: one place owns the handle, the workspace (set explicitly so products can be
 * captured in CUDA graphs) and a small cache of layouts + heuristic choices per shape, so repeated
 * shapes (every layer, every step) pay the heuristic query once. Why tuning: the first heuristic
 * choice for fp32 output ran at a fraction of the rate of others on some prefill shapes. */
#ifndef LOP_CUDA_CU_GEMM_CUH
#define LOP_CUDA_CU_GEMM_CUH
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "model/model.h"

#define CU_GEMM_CACHE 256

typedef struct cu_gemm_entry {
    int m, n, k, ldw, ldx, ldy, beta1;
    lop_dtype dt;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} cu_gemm_entry;

typedef struct cu_gemm {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t desc;
    void *ws;
    size_t ws_size;
    cu_gemm_entry cache[CU_GEMM_CACHE];
    int n_cache;
} cu_gemm;

/* ws must be a device buffer of ws_size bytes owned by the caller. Returns 0 on success. */
int cu_gemm_init(cu_gemm *g, void *ws, size_t ws_size);
void cu_gemm_free(cu_gemm *g);
/* Returns 0 on success, else a cublasStatus_t value. The first product of a shape that enters the
 * cache (outside graph capture) times up to 8 of cuBLASLt's heuristic candidates and keeps the
 * fastest; trial runs write into Y when beta == 0, else into scratch (scratch_bytes; no tuning when
 * too small or NULL). Once the cache is full, a new shape takes the heuristic's first choice. */
int cu_gemm_run(cu_gemm *g, lop_dtype dt, const void *W, int ldw, int m, const void *X, int ldx, int n, int k, float *Y,
                int ldy, float beta, cudaStream_t s, float *scratch, size_t scratch_bytes);
#endif
