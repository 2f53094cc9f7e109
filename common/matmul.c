/*
 * matmul.c - BLAS call site, naive reference, linear layer. See matmul.h.
 *
 * OpenBLAS runs single-threaded (threadpool.c sets it); a product big enough to pay for a
 * dispatch is split across saccade's pool by rows or columns of C, each chunk a serial BLAS
 * call. Every element of C is still one BLAS dot product over the whole K (the last bits may
 * differ from an unsplit call, as BLAS treats edge blocks its own way); how a product is split
 * depends only on its sizes and the pool size, so results are repeatable for a thread count.
 */
#include "matmul.h"

#include <cblas.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "sac.h"
#include "safetensors.h"
#include "threadpool.h"

/* Products with fewer multiply-adds than this run serially (a dispatch costs a few us). */
#define GEMM_SPLIT_MIN (1 << 18)
#define GEMV_SPLIT_MIN (1 << 16)
/* Chunks are multiples of this many rows / columns (the BLAS kernels' register blocking). */
#define SPLIT_UNIT 16

static void gemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (M == 1 && !ta) {
        /* one row: y^T = x^T op(B), a matrix-vector product (2-3x faster than sgemm at M=1) */
        cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? N : K, tb ? K : N, alpha, B, ldb,
                    A, 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef struct {
    int ta, tb, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int by_rows; /* split M (rows of C) or N (columns) */
} GemmTask;

static void gemm_task(void *p, int u0, int u1, int chunk)
{
    (void)chunk;
    const GemmTask *g = p;
    if (g->by_rows) {
        const int r0 = u0 * SPLIT_UNIT, r1 = SAC_MIN(u1 * SPLIT_UNIT, g->M);
        const float *A = g->ta ? g->A + r0 : g->A + (size_t)r0 * g->lda;
        gemm_serial(g->ta, g->tb, r1 - r0, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta,
                    g->C + (size_t)r0 * g->ldc, g->ldc);
    } else {
        const int c0 = u0 * SPLIT_UNIT, c1 = SAC_MIN(u1 * SPLIT_UNIT, g->N);
        const float *B = g->tb ? g->B + (size_t)c0 * g->ldb : g->B + c0;
        gemm_serial(g->ta, g->tb, g->M, c1 - c0, g->K, g->alpha, g->A, g->lda, B, g->ldb, g->beta, g->C + c0,
                    g->ldc);
    }
}

void sac_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    const int threads = sac_threads(); /* first call: sets OpenBLAS to one thread */
    const int by_rows = M >= N;
    const int units = ((by_rows ? M : N) + SPLIT_UNIT - 1) / SPLIT_UNIT;
    if (threads < 2 || units < 2 || (double)M * N * (K > 0 ? K : 1) < GEMM_SPLIT_MIN || sac_in_parallel()) {
        gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    GemmTask g = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, by_rows};
    sac_parallel_for(units, 1, gemm_task, &g);
}

typedef struct {
    int ta, M, N;
    float alpha, beta;
    const float *A, *x;
    float *y;
    int lda;
} GemvTask;

static void gemv_task(void *p, int u0, int u1, int chunk)
{
    (void)chunk;
    const GemvTask *g = p;
    const int n_out = g->ta ? g->N : g->M;
    const int o0 = u0 * SPLIT_UNIT, o1 = SAC_MIN(u1 * SPLIT_UNIT, n_out);
    if (g->ta)
        cblas_sgemv(CblasRowMajor, CblasTrans, g->M, o1 - o0, g->alpha, g->A + o0, g->lda, g->x, 1, g->beta,
                    g->y + o0, 1);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, g->N, g->alpha, g->A + (size_t)o0 * g->lda, g->lda,
                    g->x, 1, g->beta, g->y + o0, 1);
}

void sac_gemv(int ta, int M, int N, float alpha, const float *A, int lda, const float *x, float beta,
              float *y)
{
    const int threads = sac_threads();
    const int units = ((ta ? N : M) + SPLIT_UNIT - 1) / SPLIT_UNIT;
    if (threads < 2 || units < 2 || (double)M * N < GEMV_SPLIT_MIN || sac_in_parallel()) {
        cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y, 1);
        return;
    }
    GemvTask g = {ta, M, N, alpha, beta, A, x, y, lda};
    sac_parallel_for(units, 1, gemv_task, &g);
}

/* ---- a few rows times a matrix: the memory-bound products of step-by-step decoding ---- */

#if defined(__AVX2__) && defined(__FMA__)
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* y[r][o] (+)= W[o] . x[r] for rows o0..o0+nw-1 (nw <= 4) and x rows r0..r0+nr-1 (nr <= 2). */
static void matvec_block(float *y, int ldy, const float *W, int ldw, const float *x, int ldx, int K, int nw, int nr,
                         int accumulate)
{
    float out[4][2];
    int k = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc[4][2];
    for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    /* streaming W from memory: prefetch the next block's rows (harmless past the end) */
    if (nw == 4 && nr == 2) {
        for (; k + 8 <= K; k += 8) {
            const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + ldx + k);
            for (int j = 0; j < 4; j++) {
                _mm_prefetch((const char *)(W + (size_t)(4 + j) * ldw + k), _MM_HINT_T0);
                const __m256 w = _mm256_loadu_ps(W + (size_t)j * ldw + k);
                acc[j][0] = _mm256_fmadd_ps(w, x0, acc[j][0]);
                acc[j][1] = _mm256_fmadd_ps(w, x1, acc[j][1]);
            }
        }
    } else if (nw == 4) {
        for (; k + 16 <= K; k += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            for (int j = 0; j < 4; j++) {
                _mm_prefetch((const char *)(W + (size_t)(4 + j) * ldw + k), _MM_HINT_T0);
                acc[j][0] = _mm256_fmadd_ps(_mm256_loadu_ps(W + (size_t)j * ldw + k), x0, acc[j][0]);
                acc[j][0] = _mm256_fmadd_ps(_mm256_loadu_ps(W + (size_t)j * ldw + k + 8), x1, acc[j][0]);
            }
        }
        for (; k + 8 <= K; k += 8) {
            const __m256 x0 = _mm256_loadu_ps(x + k);
            for (int j = 0; j < 4; j++)
                acc[j][0] = _mm256_fmadd_ps(_mm256_loadu_ps(W + (size_t)j * ldw + k), x0, acc[j][0]);
        }
    } else {
        for (; k + 8 <= K; k += 8)
            for (int i = 0; i < nr; i++) {
                const __m256 xi = _mm256_loadu_ps(x + (size_t)i * ldx + k);
                for (int j = 0; j < nw; j++)
                    acc[j][i] = _mm256_fmadd_ps(_mm256_loadu_ps(W + (size_t)j * ldw + k), xi, acc[j][i]);
            }
    }
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) out[j][i] = hsum8(acc[j][i]);
#else
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) out[j][i] = 0.0f;
#endif
    for (; k < K; k++)
        for (int j = 0; j < nw; j++)
            for (int i = 0; i < nr; i++) out[j][i] += W[(size_t)j * ldw + k] * x[(size_t)i * ldx + k];
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) {
            float *d = &y[(size_t)i * ldy + j];
            *d = accumulate ? *d + out[j][i] : out[j][i];
        }
}

void sac_matvecs(float *y, int ldy, const float *W, int ldw, const float *x, int ldx, int O, int K, int R,
                 int accumulate)
{
    for (int o = 0; o < O; o += 4) {
        const int nw = SAC_MIN(4, O - o);
        for (int r = 0; r < R; r += 2)
            matvec_block(y + (size_t)r * ldy + o, ldy, W + (size_t)o * ldw, ldw, x + (size_t)r * ldx, ldx, K, nw,
                         SAC_MIN(2, R - r), accumulate);
    }
}

/* ---- the same with fp16 weights (half the bytes to stream) ---- */

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
static inline __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
#endif

/* matvec_block with W in fp16: the same sums in the same order. */
static void matvec_block_f16(float *y, int ldy, const uint16_t *W, int ldw, const float *x, int ldx, int K, int nw,
                             int nr, int accumulate)
{
    float out[4][2];
    int k = 0;
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    __m256 acc[4][2];
    for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    if (nw == 4 && nr == 1) {
        for (; k + 16 <= K; k += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            for (int j = 0; j < 4; j++) {
                _mm_prefetch((const char *)(W + (size_t)(4 + j) * ldw + k), _MM_HINT_T0);
                acc[j][0] = _mm256_fmadd_ps(load_half8(W + (size_t)j * ldw + k), x0, acc[j][0]);
                acc[j][0] = _mm256_fmadd_ps(load_half8(W + (size_t)j * ldw + k + 8), x1, acc[j][0]);
            }
        }
    }
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < nw; j++) {
            _mm_prefetch((const char *)(W + (size_t)(4 + j) * ldw + k), _MM_HINT_T0);
            const __m256 w = load_half8(W + (size_t)j * ldw + k);
            for (int i = 0; i < nr; i++)
                acc[j][i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + (size_t)i * ldx + k), acc[j][i]);
        }
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) out[j][i] = hsum8(acc[j][i]);
#else
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) out[j][i] = 0.0f;
#endif
    for (; k < K; k++)
        for (int j = 0; j < nw; j++)
            for (int i = 0; i < nr; i++) out[j][i] += sac_half_to_float(W[(size_t)j * ldw + k]) * x[(size_t)i * ldx + k];
    for (int j = 0; j < nw; j++)
        for (int i = 0; i < nr; i++) {
            float *d = &y[(size_t)i * ldy + j];
            *d = accumulate ? *d + out[j][i] : out[j][i];
        }
}

void sac_matvecs_f16(float *y, int ldy, const uint16_t *W, int ldw, const float *x, int ldx, int O, int K, int R,
                     int accumulate)
{
    for (int o = 0; o < O; o += 4) {
        const int nw = SAC_MIN(4, O - o);
        for (int r = 0; r < R; r += 2)
            matvec_block_f16(y + (size_t)r * ldy + o, ldy, W + (size_t)o * ldw, ldw, x + (size_t)r * ldx, ldx, K, nw,
                             SAC_MIN(2, R - r), accumulate);
    }
}

void sac_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
    }
}

void sac_blas_set_threads(int n) { sac_threads_set(n < 1 ? 1 : n); }

int sac_blas_threads(void) { return sac_threads(); }

typedef struct {
    float *out;
    const float *x, *bias;
    int N, C;
} RowsTask;

static void colsum_task(void *p, int u0, int u1, int chunk)
{
    (void)chunk;
    const RowsTask *t = p;
    const int k0 = u0 * SPLIT_UNIT, k1 = SAC_MIN(u1 * SPLIT_UNIT, t->C);
    for (int n = 0; n < t->N; n++) {
        const float *x = t->x + (size_t)n * t->C;
        for (int k = k0; k < k1; k++) t->out[k] += x[k];
    }
}

void sac_colsum(float *out, const float *x, int N, int C)
{
    RowsTask t = {out, x, NULL, N, C};
    const int units = (C + SPLIT_UNIT - 1) / SPLIT_UNIT;
    /* chunks own columns and add the rows in order: the same sums for any thread count */
    sac_parallel_for(units, (double)N * C < GEMV_SPLIT_MIN ? units : 1, colsum_task, &t);
}

static void bias_fill_task(void *p, int n0, int n1, int chunk)
{
    (void)chunk;
    const RowsTask *t = p;
    for (int n = n0; n < n1; n++) memcpy(t->out + (size_t)n * t->C, t->bias, sizeof(float) * t->C);
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                    int OC)
{
    if (bias) {
        RowsTask t = {out, NULL, bias, N, OC};
        sac_parallel_for(N, (double)N * OC < GEMV_SPLIT_MIN ? N : 16, bias_fill_task, &t);
    }
    sac_gemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int C, int OC)
{
    /* forward: out = inp @ weight^T + bias */
    if (dinp) sac_gemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) sac_gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) sac_colsum(dbias, dout, N, OC);
}
