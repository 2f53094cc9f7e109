/*
 * matmul.c - BLAS call site, naive reference, linear layer. See matmul.h.
 *
 * OpenBLAS runs single-threaded (threadpool.c sets it); a product big enough to pay for a
 * dispatch is split across saccade's pool by rows or columns of C, each chunk a serial BLAS
 * call. Every element of C is still one BLAS dot product over the whole K (the last bits may
 * differ from an unsplit call, as BLAS treats edge blocks its own way); how a product is split
 * depends only on its sizes and the pool size, so results are repeatable for a thread count.
 * On the AVX-512 path (common/cpu.h) products with M, N and K all >= SAC_GEMM_OWN_MIN run
 * saccade's own sgemm instead (gemm_avx512.c: OpenBLAS runs its AVX2 kernels on this machine),
 * whose sums do not depend on the split at all.
 *
 * The packed products (sac_packed_matmul) run on the kernel path of common/cpu.h: packed_tmpl.c
 * compiled for AVX2 (8 lanes) and AVX-512 (16 lanes; the same bits), or plain C.
 */
#include "matmul.h"

#include <cblas.h>
#include <string.h>

#include "cpu.h"
#include "gemm_avx512.h"
#include "sac.h"
#if SAC_KERNEL_X86
#include <immintrin.h>
#endif
#include "safetensors.h"
#include "threadpool.h"

/* Products with fewer multiply-adds than this run serially (a dispatch costs a few us). */
#define GEMM_SPLIT_MIN (1 << 18)
#define GEMV_SPLIT_MIN (1 << 16)
/* Chunks are multiples of this many rows / columns (the BLAS kernels' register blocking). */
#define SPLIT_UNIT 16

/* own: run saccade's AVX-512 sgemm (gemm_avx512.h), decided by sac_gemm on the whole product so
 * every chunk of a split takes the same path; BLAS if it cannot allocate its packing buffer. */
static void gemm_serial(int own, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (own && K > 0 && sac_gemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
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
    int own;     /* gemm_serial's own */
} GemmTask;

static void gemm_task(void *p, int u0, int u1, int chunk)
{
    (void)chunk;
    const GemmTask *g = p;
    if (g->by_rows) {
        const int r0 = u0 * SPLIT_UNIT, r1 = SAC_MIN(u1 * SPLIT_UNIT, g->M);
        const float *A = g->ta ? g->A + r0 : g->A + (size_t)r0 * g->lda;
        gemm_serial(g->own, g->ta, g->tb, r1 - r0, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta,
                    g->C + (size_t)r0 * g->ldc, g->ldc);
    } else {
        const int c0 = u0 * SPLIT_UNIT, c1 = SAC_MIN(u1 * SPLIT_UNIT, g->N);
        const float *B = g->tb ? g->B + (size_t)c0 * g->ldb : g->B + c0;
        gemm_serial(g->own, g->ta, g->tb, g->M, c1 - c0, g->K, g->alpha, g->A, g->lda, B, g->ldb, g->beta, g->C + c0,
                    g->ldc);
    }
}

const char *sac_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "?";
}

void sac_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    const int threads = sac_threads(); /* first call: sets OpenBLAS to one thread */
    const int own = sac_kernel() == SAC_KERNEL_AVX512 && M >= SAC_GEMM_OWN_MIN && N >= SAC_GEMM_OWN_MIN &&
                    K >= SAC_GEMM_OWN_MIN;
    const int by_rows = M >= N;
    const int units = ((by_rows ? M : N) + SPLIT_UNIT - 1) / SPLIT_UNIT;
    if (threads < 2 || units < 2 || (double)M * N * (K > 0 ? K : 1) < GEMM_SPLIT_MIN || sac_in_parallel()) {
        gemm_serial(own, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    GemmTask g = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, by_rows, own};
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

/* ---- packed weights: the products of step-by-step decoding ---- */

size_t sac_packed_bytes(int O, int K, int half)
{
    return (size_t)(O + SAC_PANEL - 1) / SAC_PANEL * SAC_PANEL * K * (half ? sizeof(uint16_t) : sizeof(float));
}

int sac_pack(SacPacked *pk, void *buf, const float *W, int ldw, int O, int K, int half)
{
    const int panels = (O + SAC_PANEL - 1) / SAC_PANEL;
    int fits = 1;
    for (int j = 0; j < panels; j++)
        for (int k = 0; k < K; k++)
            for (int i = 0; i < SAC_PANEL; i++) {
                const int o = j * SAC_PANEL + i;
                const float w = o < O ? W[(size_t)o * ldw + k] : 0.0f;
                const size_t at = ((size_t)j * K + k) * SAC_PANEL + i;
                if (half) {
                    const uint16_t h = sac_float_to_half(w);
                    fits &= (h & 0x7C00) != 0x7C00; /* not inf / nan */
                    ((uint16_t *)buf)[at] = h;
                } else {
                    ((float *)buf)[at] = w;
                }
            }
    *pk = (SacPacked){O, K, half, buf};
    return fits;
}

/* The product of sac_packed_matmul on the C path: each output summed over k in order from zero. */
static void packed_matmul_c(float *y, int ldy, const SacPacked *W, int p0, int p1, const float *x, int ldx, int R,
                            int accumulate)
{
    const int K = W->K, o0 = p0 * SAC_PANEL, o1 = SAC_MIN(p1 * SAC_PANEL, W->O);
    for (int i = 0; i < R; i++)
        for (int o = o0; o < o1; o++) {
            const size_t base = (size_t)(o / SAC_PANEL) * K * SAC_PANEL + o % SAC_PANEL;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                const size_t at = base + (size_t)k * SAC_PANEL;
                const float w = W->half ? sac_half_to_float(((const uint16_t *)W->data)[at]) : ((const float *)W->data)[at];
                acc += w * x[(size_t)i * ldx + k];
            }
            float *d = &y[(size_t)i * ldy + o];
            *d = accumulate ? *d + acc : acc;
        }
}

#if SAC_KERNEL_X86
#define PK(name) name##_avx2
#define PK_TARGET SAC_TARGET_AVX2
#define PK_VEC __m256
#define PK_LANES 8
#define PK_ZERO() _mm256_setzero_ps()
#define PK_LOAD(p) _mm256_loadu_ps(p)
#define PK_LOAD_HALF(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define PK_BCAST(p) _mm256_broadcast_ss(p)
#define PK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define PK_STORE(p, v) _mm256_storeu_ps(p, v)
#include "packed_tmpl.c"
#undef PK
#undef PK_TARGET
#undef PK_VEC
#undef PK_LANES
#undef PK_ZERO
#undef PK_LOAD
#undef PK_LOAD_HALF
#undef PK_BCAST
#undef PK_FMA
#undef PK_STORE

#define PK(name) name##_avx512
#define PK_TARGET SAC_TARGET_AVX512
#define PK_VEC __m512
#define PK_LANES 16
#define PK_ZERO() _mm512_setzero_ps()
#define PK_LOAD(p) _mm512_loadu_ps(p)
#define PK_LOAD_HALF(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define PK_BCAST(p) _mm512_set1_ps(*(p))
#define PK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PK_STORE(p, v) _mm512_storeu_ps(p, v)
#include "packed_tmpl.c"
#endif

typedef void (*PackedMatmulFn)(float *y, int ldy, const SacPacked *W, int p0, int p1, const float *x, int ldx,
                               int R, int accumulate);
static const PackedMatmulFn packed_matmul_fns[] = SAC_KERNEL_TABLE(packed_matmul);

void sac_packed_matmul(float *y, int ldy, const SacPacked *W, int p0, int p1, const float *x, int ldx, int R,
                       int accumulate)
{
    const int panels = (W->O + SAC_PANEL - 1) / SAC_PANEL;
    p1 = SAC_MIN(p1, panels);
    if (p0 < p1 && R > 0) packed_matmul_fns[sac_kernel()](y, ldy, W, p0, p1, x, ldx, R, accumulate);
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
