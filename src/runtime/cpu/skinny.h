/* Skinny matrix products for decode: Y[n][out] = X[n][in] · W[out][in]^T for a few rows of X.
 * Why: at decode batch 2..8 OpenBLAS sgemm spends its time packing W (measured 41 GFLOP/s at n = 8
 * on this 2-core machine, a third of the memory-bound rate); this kernel streams each W row once
 * and keeps the n dot products in AVX2 registers (AVX-512 where the CPU has it: two W rows at a
 * time, so each X load feeds two FMAs). */
#ifndef LOP_RUNTIME_CPU_SKINNY_H
#define LOP_RUNTIME_CPU_SKINNY_H
#include <stdint.h>

/* Up to this many rows the kernel beats OpenBLAS sgemm (more than 8 go in groups of at most 8, each
 * group re-reading a task's W rows from cache): a 30-layer SmolLM2-shaped step + head on the 2-core
 * VM, skinny vs sgemm: 30 vs 59 ms at 8 rows, 45 vs 60 at 16, 66 vs 84 at 24, 88 vs 81 at 32. */
#define LOP_SKINNY_MAX_N 24
/* 1 when this CPU runs the AVX2+FMA kernel (else callers use BLAS). */
int lop_cpu_skinny_available(void);
/* n >= 1 (any; fastest up to LOP_SKINNY_MAX_N); rows split across the thread pool. */
void lop_cpu_skinny_gemm(float *Y, const float *X, const float *W, int n, int out, int in);
/* The same with the instruction set chosen (tests): isa 0 = as lop_cpu_skinny_gemm, 1 = AVX2,
 * 2 = AVX-512 (only when lop_cpu_skinny_avx512_available()). */
int lop_cpu_skinny_avx512_available(void);
void lop_cpu_skinny_gemm_isa(float *Y, const float *X, const float *W, int n, int out, int in, int isa);
#endif
