/*
 * matmul.h - the one place saccade calls BLAS (OpenBLAS cblas), a naive reference
 * beside it for tests, and the linear layer built on it.
 *
 * All matrices are row-major and contiguous unless a leading dimension says otherwise.
 * Size letters: N rows (batch x positions x steps), C input features, OC output features.
 */
#ifndef SACCADE_MATMUL_H
#define SACCADE_MATMUL_H

#include <stdint.h>

/* C (M,N) = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb is nonzero.
 * op(A) is (M,K), op(B) is (K,N). Large products are split by rows or columns of C across
 * the thread pool (threadpool.h); inside a pool task they run serially. */
void sac_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* y (M) = alpha * A (M,N) @ x + beta * y, or with ta: y (N) = alpha * A^T @ x + beta * y. */
void sac_gemv(int ta, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y);

/* y (R, O) = x (R, K) @ W^T, or += with accumulate: W (O, K) with leading dimension ldw, x rows
 * ldx apart, y rows ldy apart. For a few rows (step-by-step decoding, where the product is
 * bound by reading W): W is read once for every two rows of x. Serial (callers split O across
 * the pool); each element is one dot product summed in a fixed order, whatever the split. */
void sac_matvecs(float *y, int ldy, const float *W, int ldw, const float *x, int ldx, int O, int K, int R,
                 int accumulate);

/* sac_matvecs with W in IEEE fp16 (sac_float_to_half_array): half the bytes to read. */
void sac_matvecs_f16(float *y, int ldy, const uint16_t *W, int ldw, const float *x, int ldx, int O, int K, int R,
                     int accumulate);

/* Triple-loop references with double accumulation, same contracts (tests only). */
void sac_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

/* Kept for the callers that size "the BLAS pool": these set / read the size of saccade's one
 * pool of compute threads (threadpool.h), which BLAS products are split across; OpenBLAS
 * itself always runs one thread. Code that runs its own worker threads sets this to 1 for
 * their lifetime (never two pools spinning on the same cores). */
void sac_blas_set_threads(int n);
int sac_blas_threads(void);

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
