/* cuBLASLt matrix products; see cu_gemm.cuh. Row-major Y[n][m] = X[n][k] · W[m][k]^T is, read
 * column-major, Yc (m×n) = Wc^T (m×k) · Xc (k×n): A = W with op T, B = X with op N. */
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cu_gemm.cuh"

int cu_gemm_init(cu_gemm *g, void *ws, size_t ws_size) {
    memset(g, 0, sizeof *g);
    g->ws = ws;
    g->ws_size = ws_size;
    cublasStatus_t st = cublasLtCreate(&g->lt);
    if (st != CUBLAS_STATUS_SUCCESS) return (int)st;
    st = cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st != CUBLAS_STATUS_SUCCESS) return (int)st;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    return 0;
}

void cu_gemm_free(cu_gemm *g) {
    for (int i = 0; i < g->n_cache; i++) {
        cublasLtMatrixLayoutDestroy(g->cache[i].a);
        cublasLtMatrixLayoutDestroy(g->cache[i].b);
        cublasLtMatrixLayoutDestroy(g->cache[i].c);
    }
    if (g->desc) cublasLtMatmulDescDestroy(g->desc);
    if (g->lt) cublasLtDestroy(g->lt);
    memset(g, 0, sizeof *g);
}

/* tune: time the heuristic's candidates (only for shapes that enter the cache: a shape seen once, as
 * the varying token counts of a zero-shot evaluation are, would pay 24 products and a sync a call) */
static int make_entry(cu_gemm *g, cu_gemm_entry *e, const void *W, const void *X, float *Y, float beta, cudaStream_t s,
                      float *scratch, size_t scratch_bytes, int tune) {
    cudaDataType_t t = e->dt == LOP_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasStatus_t st;
    if ((st = cublasLtMatrixLayoutCreate(&e->a, t, e->k, e->m, e->ldw)) != CUBLAS_STATUS_SUCCESS) return (int)st;
    if ((st = cublasLtMatrixLayoutCreate(&e->b, t, e->k, e->n, e->ldx)) != CUBLAS_STATUS_SUCCESS) return (int)st;
    if ((st = cublasLtMatrixLayoutCreate(&e->c, CUDA_R_32F, e->m, e->n, e->ldy)) != CUBLAS_STATUS_SUCCESS) return (int)st;
    cublasLtMatmulPreference_t pref;
    if ((st = cublasLtMatmulPreferenceCreate(&pref)) != CUBLAS_STATUS_SUCCESS) return (int)st;
    size_t ws = g->ws_size;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulHeuristicResult_t res[8];
    int found = 0;
    st = cublasLtMatmulAlgoGetHeuristic(g->lt, g->desc, e->a, e->b, e->c, e->c, pref, 8, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) return (int)st;
    if (found < 1) return (int)CUBLAS_STATUS_NOT_SUPPORTED;
    e->algo = res[0].algo;
    /* time the candidates (not while a graph is being captured) */
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(s, &cs);
    float *out = beta == 0.0f ? Y : ((size_t)e->ldy * e->n * sizeof(float) <= scratch_bytes ? scratch : NULL);
    if (!tune || found < 2 || cs != cudaStreamCaptureStatusNone || !out || getenv("LOP_CUDA_NO_GEMM_TUNE")) return 0;
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess) return 0;
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return 0;
    }
    float best = 1e30f, zero = 0.0f, one = 1.0f;
    for (int i = 0; i < found; i++) {
        float ms = 0;
        cublasStatus_t rs = CUBLAS_STATUS_SUCCESS;
        for (int r = 0; r < 3 && rs == CUBLAS_STATUS_SUCCESS; r++) {
            if (r == 1) cudaEventRecord(e0, s);
            rs = cublasLtMatmul(g->lt, g->desc, &one, W, e->a, X, e->b, &zero, out, e->c, out, e->c, &res[i].algo, g->ws,
                                g->ws_size, s);
        }
        cudaEventRecord(e1, s);
        if (rs != CUBLAS_STATUS_SUCCESS || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            continue;
        if (ms < best) best = ms, e->algo = res[i].algo;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGetLastError();
    return 0;
}

int cu_gemm_run(cu_gemm *g, lop_dtype dt, const void *W, int ldw, int m, const void *X, int ldx, int n, int k, float *Y,
                int ldy, float beta, cudaStream_t s, float *scratch, size_t scratch_bytes) {
    int beta1 = beta != 0.0f;
    cu_gemm_entry *e = NULL, tmp;
    for (int i = 0; i < g->n_cache; i++) {
        cu_gemm_entry *c = &g->cache[i];
        if (c->m == m && c->n == n && c->k == k && c->ldw == ldw && c->ldx == ldx && c->ldy == ldy && c->beta1 == beta1 &&
            c->dt == dt) {
            e = c;
            break;
        }
    }
    int cached = e != NULL;
    if (!e) {
        e = g->n_cache < CU_GEMM_CACHE ? &g->cache[g->n_cache] : &tmp;
        memset(e, 0, sizeof *e);
        e->m = m, e->n = n, e->k = k, e->ldw = ldw, e->ldx = ldx, e->ldy = ldy, e->beta1 = beta1, e->dt = dt;
        int rc = make_entry(g, e, W, X, Y, beta, s, scratch, scratch_bytes, e != &tmp);
        if (rc) {
            if (e->a) cublasLtMatrixLayoutDestroy(e->a);
            if (e->b) cublasLtMatrixLayoutDestroy(e->b);
            if (e->c) cublasLtMatrixLayoutDestroy(e->c);
            return rc;
        }
        if (e != &tmp) g->n_cache++;
    }
    float alpha = 1.0f;
    cublasStatus_t st = cublasLtMatmul(g->lt, g->desc, &alpha, W, e->a, X, e->b, &beta, Y, e->c, Y, e->c, &e->algo,
                                       g->ws, g->ws_size, s);
    if (!cached && e == &tmp) {
        cublasLtMatrixLayoutDestroy(e->a);
        cublasLtMatrixLayoutDestroy(e->b);
        cublasLtMatrixLayoutDestroy(e->c);
    }
    return (int)st;
}
