/*
 * gemm_avx512.h - saccade's own sgemm for the AVX-512 path (common/gemm_avx512.c), private to
 * matmul.c and the tests. Same contract as sac_gemm (matmul.h): C (M,N) = alpha * op(A) @ op(B)
 * + beta * C, row-major, op = transpose when ta/tb is nonzero; beta == 0 never reads C.
 */
#ifndef SACCADE_GEMM_AVX512_H
#define SACCADE_GEMM_AVX512_H

/* Products at least this large in M, N and K take the kernel (sac_gemm decides on the whole
 * product, so every chunk of a split takes the same path). */
#define SAC_GEMM_OWN_MIN 32

/* Serial. Returns 0, or -1 (C untouched) when this build has no AVX-512 kernel or the packing
 * buffer cannot be allocated: the caller then runs BLAS. The caller checks that the CPU runs
 * AVX-512 (sac_kernel() == SAC_KERNEL_AVX512). Each element of C is summed over k in a fixed order
 * that depends only on K (blocks of 256 in order, each a chain of FMAs from zero), not on M, N or
 * where the element lies: the same bits however sac_gemm splits the product. */
int sac_gemm_avx512(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc);

#endif
