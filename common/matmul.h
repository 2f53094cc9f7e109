/*
 * matmul.h - the one place saccade calls BLAS (OpenBLAS cblas), a naive reference
 * beside it for tests, and the linear layer built on it.
 *
 * All matrices are row-major and contiguous unless a leading dimension says otherwise.
 * Size letters: N rows (batch x positions x steps), C input features, OC output features.
 */
#ifndef SACCADE_MATMUL_H
#define SACCADE_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/* C (M,N) = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb is nonzero.
 * op(A) is (M,K), op(B) is (K,N). Large products are split by rows or columns of C across
 * the thread pool (threadpool.h); inside a pool task they run serially. On the AVX-512 path,
 * products with M, N, K >= 32 run saccade's own sgemm (gemm_avx512.h), the rest OpenBLAS. */
void sac_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* y (M) = alpha * A (M,N) @ x + beta * y, or with ta: y (N) = alpha * A^T @ x + beta * y. */
void sac_gemv(int ta, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y);

/* The OpenBLAS kernel set in use ("Haswell", "SkylakeX", ...; OPENBLAS_CORETYPE chooses it when
 * set), for --version and bug reports. */
const char *sac_blas_core(void);

/* ---- packed weights: the products of step-by-step decoding ----
 * A decoding step multiplies a few rows (one image, its beams, a batch of images) by weight
 * matrices W (O, K) read from memory every step. sac_pack copies W once into panels of
 * SAC_PANEL outputs stored k-major, element (j * K + k) * SAC_PANEL + i = W[j * SAC_PANEL + i][k]
 * (rows past O zero), in fp32 or fp16 (half the bytes to read). The kernel streams a panel once
 * for every block of rows, with no per-call packing (what sgemm spends most of its time on
 * at these sizes). */
#define SAC_PANEL 16

typedef struct SacPacked {
    int O, K;
    int half;         /* data is uint16_t IEEE fp16, else float */
    const void *data; /* ceil(O / SAC_PANEL) panels */
} SacPacked;

/* Bytes of a packed (O, K) matrix. */
size_t sac_packed_bytes(int O, int K, int half);
/* Pack W (O, K), rows ldw apart, into buf (sac_packed_bytes; 32-byte aligned is best) and
 * describe it in *pk. Returns 1, or 0 when half and some weight is beyond fp16's range (it
 * became inf: pack fp32 instead). */
int sac_pack(SacPacked *pk, void *buf, const float *W, int ldw, int O, int K, int half);
/* y[r][o] = x[r] . W[o] (or += with accumulate) for the outputs o of panels p0..p1-1 (y points at
 * output 0) and rows r < R; x rows ldx apart, y rows ldy apart. Each output is summed over k in
 * order from zero, whatever R, the row or the panel range: the same bits for every batch size
 * and every split across threads. Serial (callers split panels across the pool). */
void sac_packed_matmul(float *y, int ldy, const SacPacked *W, int p0, int p1, const float *x, int ldx, int R,
                       int accumulate);

/* Triple-loop references with double accumulation, same contracts (tests only). */
void sac_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

/* out (C) += sum over the N rows of x (N, C): bias gradients. Split across the pool by
 * columns, each summed in row order (the same bits for any thread count). */
void sac_colsum(float *out, const float *x, int N, int C);

/* Linear layer (torch.nn.Linear, llm.c matmul_forward):
 * out (N, OC) = inp (N, C) @ weight^T + bias;  weight (OC, C), bias (OC) or NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC);
/* Backward of the line above; accumulates (+=) into every non-NULL gradient:
 * dinp (N, C) += dout @ weight;  dweight (OC, C) += dout^T @ inp;  dbias (OC) += sum_N dout. */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC);

#endif
