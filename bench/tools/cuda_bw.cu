/* The two ceilings of the CUDA benchmark, measured in the same call as lop (METHOD.md):
 *  - streaming-read bandwidth: a kernel that reads a 4 GiB buffer once with 16-byte loads (the access
 *    pattern of a decode step), and a device-to-device copy (bytes read + written) for reference;
 *  - cuBLAS fp16 GEMM rate (fp32 accumulate) on the matrix shapes of LLaMA-7B prefill at 4096 tokens
 *    (q/k/v/o 4096x4096, gate/up 11008x4096, down 4096x11008), total FLOPs / total time.
 * Median of 20 timed repetitions after warm-up, CUDA events. Prints "key value" lines. */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "graph_timing.cuh"

__global__ void read_kernel(const uint4 *p, size_t n, unsigned *out) {
    const unsigned acc = read_xor(p, blockIdx.x * (size_t)blockDim.x + threadIdx.x, n, (size_t)gridDim.x * blockDim.x);
    if (acc == 0x9e3779b9u) *out = acc;
}

__global__ void fill_kernel(uint4 *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    {
        /* valid fp16 values in +-[0.5, 1): random mantissa and sign, exponent fixed */
        unsigned h[4];
        for (int k = 0; k < 4; k++) {
            unsigned x = (unsigned)(i * 4 + k) * 2654435761u;
            x ^= x >> 15;
            x *= 2246822519u;
            x ^= x >> 13;
            h[k] = ((x & 0x83ff83ffu) | 0x38003800u);
        }
        p[i] = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

static float median(std::vector<float> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s\n", prop.name);
    size_t bytes = (size_t)4 << 30, n = bytes / 16;
    uint4 *a, *b;
    unsigned *o;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes / 2));
    CK(cudaMalloc(&o, 4));
    fill_kernel<<<4096, 256>>>(a, n);
    CK(cudaDeviceSynchronize());
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    int blocks = prop.multiProcessorCount * 8;
    std::vector<float> t;
    for (int r = 0; r < 25; r++) {
        cudaEventRecord(e0);
        read_kernel<<<blocks, 256>>>(a, n, o);
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 5) t.push_back(ms);
    }
    printf("read_GBps %.1f\n", bytes / (median(t) * 1e6));
    t.clear();
    for (int r = 0; r < 25; r++) {
        cudaEventRecord(e0);
        CK(cudaMemcpyAsync(b, a, bytes / 2, cudaMemcpyDeviceToDevice));
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 5) t.push_back(ms);
    }
    printf("copy_GBps %.1f\n", bytes / (median(t) * 1e6)); /* (bytes/2 read + bytes/2 written) */
    CK(cudaFree(b));
    /* cuBLAS fp16 GEMM, fp32 accumulate: Y[tok][out] = X[tok][in] W[out][in]^T, fp16 output */
    cublasHandle_t h;
    cublasCreate(&h);
    const int tok = 4096;
    int shapes[4][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {12288, 4096}};
    __half *W = (__half *)a, *X = W + (size_t)12288 * 11008, *Y = X + (size_t)tok * 11008;
    float alpha = 1, beta = 0;
    double flops = 0, ms_tot = 0;
    for (int s = 0; s < 4; s++) {
        int out = shapes[s][0], in = shapes[s][1];
        t.clear();
        for (int r = 0; r < 25; r++) {
            cudaEventRecord(e0);
            cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, tok, in, &alpha, W, CUDA_R_16F, in, X,
                                             CUDA_R_16F, in, &beta, Y, CUDA_R_16F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(e1);
            CK(cudaEventSynchronize(e1));
            if (st != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublas %d\n", (int)st); return 1; }
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            if (r >= 5) t.push_back(ms);
        }
        double f = 2.0 * tok * out * in, m = median(t);
        printf("gemm_%dx%dx%d_TFLOPs %.1f\n", tok, out, in, f / (m * 1e9));
        /* weight of each shape in one 7B layer: q,k,v,o = 4 x (4096x4096); gate, up = 2 x (11008x4096); down */
        int wgt = s == 0 ? 4 : s == 1 ? 2 : s == 2 ? 1 : 0;
        flops += wgt * f;
        ms_tot += wgt * m;
    }
    printf("gemm_7b_layer_mix_TFLOPs %.1f\n", flops / (ms_tot * 1e9));
    cublasDestroy(h);
    CK(cudaFree(a));
    return 0;
}
