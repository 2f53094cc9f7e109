/*
 * matmul.h - the one place saccade calls BLAS (OpenBLAS cblas), a naive reference
 * beside it for tests, and the linear layer built on it.
 *
 * All matrices are row-major and contiguous unless a leading dimension says otherwise.
 * Size letters: N rows (batch x positions x steps), C input features, OC output features.
 */
#ifndef SACCADE_MATMUL_H
#define SACCADE_MATMUL_H

/* C (M,N) = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb is nonzero.
 * op(A) is (M,K), op(B) is (K,N). */
void sac_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* y (M) = alpha * A (M,N) @ x + beta * y, or with ta: y (N) = alpha * A^T @ x + beta * y. */
void sac_gemv(int ta, int M, int N, float alpha, const float *A, int lda, const float *x,
              float beta, float *y);

/* Triple-loop references with double accumulation, same contracts (tests only). */
void sac_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

/* Size of BLAS's thread pool: saccade's only pool of compute threads. Code that runs
 * its own worker threads sets this to 1 for their lifetime (never two pools spinning
 * on the same cores). */
void sac_blas_set_threads(int n);
int sac_blas_threads(void);

/* Linear layer (torch.nn.Linear, llm.c matmul_forward):
 * out (N, OC) = inp (N, C) @ weight^T + bias;  weight (OC, C), bias (OC) or NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC);
/* Backward of the line above; accumulates (+=) into every non-NULL gradient:
 * dinp (N, C) += dout @ weight;  dweight (OC, C) += dout^T @ inp;  dbias (OC) += sum_N dout. */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC);

#endif
