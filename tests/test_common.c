/*
 * test_common.c - rng, the BLAS wrapper and the AVX-512 sgemm (gemm_avx512.h) against their naive
 * reference, the linear layer's gradient by finite differences.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "cpu.h"
#include "fastmath.h"
#include "gemm_avx512.h"
#include "matmul.h"
#include "rng.h"
#include "sac.h"
#include "testutil.h"

START_TEST(test_rng_reproducible)
{
    SacRng a, b;
    sac_rng_seed(&a, 42, 1);
    sac_rng_seed(&b, 42, 1);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(sac_rng_u32(&a), sac_rng_u32(&b));
    sac_rng_seed(&b, 43, 1);
    int same = 0;
    for (int i = 0; i < 100; i++) same += sac_rng_u32(&a) == sac_rng_u32(&b);
    ck_assert_int_lt(same, 3);
    double mean = 0.0;
    for (int i = 0; i < 100000; i++) {
        float u = sac_rng_uniform(&a);
        ck_assert(u >= 0.0f && u < 1.0f);
        mean += u;
    }
    ck_assert_double_eq_tol(mean / 100000, 0.5, 0.01);
}
END_TEST

START_TEST(test_gemm_matches_reference)
{
    SacRng rng;
    sac_rng_seed(&rng, 1, 1);
    /* every transpose combination, including the M == 1 gemv path */
    const int shapes[][3] = {{7, 5, 3}, {1, 9, 4}, {1, 3, 11}, {16, 1, 8}, {33, 17, 65}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
                float *C = malloc(sizeof(float) * M * N), *R = malloc(sizeof(float) * M * N);
                fill_uniform(A, (size_t)M * K, -1, 1, &rng);
                fill_uniform(B, (size_t)K * N, -1, 1, &rng);
                fill_uniform(C, (size_t)M * N, -1, 1, &rng);
                for (int i = 0; i < M * N; i++) R[i] = C[i];
                int lda = ta ? M : K, ldb = tb ? K : N;
                sac_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C, N);
                sac_gemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, R, N);
                /* float accumulation over K <= 65 terms of size <= 1 */
                ck_assert_int_eq(check_tensor("gemm", C, R, (size_t)M * N, 1e-5, 1e-5), 0);
                free(A), free(B), free(C), free(R);
            }
        }
    }
}
END_TEST

/* One product of the AVX-512 sgemm (own) or sac_gemm against the reference: random A, B, C with
 * leading dimensions past the widths, NaN in C (and in the gaps) when beta == 0, which must be
 * overwritten. Returns check_tensor's result, or 1 when sac_gemm_avx512 declined. */
static int gemm_case(int own, int ta, int tb, int M, int N, int K, float alpha, float beta, int pad, SacRng *rng)
{
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
    float *C = malloc(sizeof(float) * nc), *R = malloc(sizeof(float) * nc);
    ck_assert(A && B && C && R);
    fill_uniform(A, na, -1, 1, rng);
    fill_uniform(B, nb, -1, 1, rng);
    fill_uniform(C, nc, -1, 1, rng);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C[i] = NAN;
    for (size_t i = 0; i < nc; i++) R[i] = C[i];
    int bad = 0;
    if (own) bad = sac_gemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != 0;
    else sac_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    sac_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    /* float sums of K terms of size <= 1 against double: error grows like sqrt(K) * 6e-8 * K-ish
     * bound; 1e-5 relative + 2e-6 * sqrt(K) absolute is ~10x the worst seen */
    char name[96];
    snprintf(name, sizeof(name), "gemm own %d ta %d tb %d %dx%dx%d pad %d", own, ta, tb, M, N, K, pad);
    for (int i = 0; i < M; i++) {
        /* the gaps between rows (columns N..ldc-1) are never written */
        for (int j = N; j < ldc; j++) {
            const float c = C[(size_t)i * ldc + j], r = R[(size_t)i * ldc + j];
            if (!(c == r || (isnan(c) && isnan(r)))) bad = 1;
        }
        memmove(C + (size_t)i * N, C + (size_t)i * ldc, sizeof(float) * N); /* pack rows for one check */
        memmove(R + (size_t)i * N, R + (size_t)i * ldc, sizeof(float) * N);
    }
    if (!bad) bad = check_tensor(name, C, R, (size_t)M * N, 2e-6 * sqrt((double)K), 1e-5);
    free(A), free(B), free(C), free(R);
    return bad;
}

/* The AVX-512 sgemm gives the same bits for a product whole and split by rows or by columns (the
 * splits sac_gemm makes across threads), so training resumes bit-exactly for any thread count. */
static void gemm_split_same_bits(int ta, int tb, int M, int N, int K, SacRng *rng)
{
    const int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C[3] = {malloc(sizeof(float) * M * N), malloc(sizeof(float) * M * N), malloc(sizeof(float) * M * N)};
    ck_assert(A && B && C[0] && C[1] && C[2]);
    fill_uniform(A, (size_t)M * K, -1, 1, rng);
    fill_uniform(B, (size_t)K * N, -1, 1, rng);
    fill_uniform(C[0], (size_t)M * N, -1, 1, rng);
    memcpy(C[1], C[0], sizeof(float) * M * N);
    memcpy(C[2], C[0], sizeof(float) * M * N);
    ck_assert_int_eq(sac_gemm_avx512(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.75f, C[0], N), 0);
    for (int r = 0; r < M; r += 16) /* rows r..r+15 */
        ck_assert_int_eq(sac_gemm_avx512(ta, tb, SAC_MIN(16, M - r), N, K, 0.5f, ta ? A + r : A + (size_t)r * lda, lda,
                                         B, ldb, 0.75f, C[1] + (size_t)r * N, N), 0);
    for (int c = 0; c < N; c += 48) /* columns c..c+47 */
        ck_assert_int_eq(sac_gemm_avx512(ta, tb, M, SAC_MIN(48, N - c), K, 0.5f, A, lda,
                                         tb ? B + (size_t)c * ldb : B + c, ldb, 0.75f, C[2] + c, N), 0);
    ck_assert_msg(memcmp(C[0], C[1], sizeof(float) * M * N) == 0, "gemm ta %d tb %d: split by rows changed bits", ta, tb);
    ck_assert_msg(memcmp(C[0], C[2], sizeof(float) * M * N) == 0, "gemm ta %d tb %d: split by columns changed bits", ta, tb);
    free(A), free(B), free(C[0]), free(C[1]), free(C[2]);
}

START_TEST(test_gemm_avx512_matches_reference)
{
    SacRng rng;
    sac_rng_seed(&rng, 7, 1);
    const int own = sac_kernel() == SAC_KERNEL_AVX512;
    if (!own) fprintf(stderr, "test_gemm_avx512: this CPU or SACCADE_KERNELS has no AVX-512, sac_gemm only\n");
    /* edges around the 14 x 32 tile, the K block of 256, the A block of 168 rows */
    const int dims[] = {1, 13, 31, 33, 100, 257};
    const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 0.25f}, {-1.5f, 1.0f}};
    int n = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int mi = 0; mi < 6; mi++)
                for (int ni = 0; ni < 6; ni++)
                    for (int ki = 0; ki < 6; ki++, n++) {
                        const int M = dims[mi], N = dims[ni], K = dims[ki];
                        if ((double)M * N * K > 3e6 && n % 3) continue; /* the big ones: a third of them */
                        const float *a = ab[n % 3];
                        const int pad = n % 2 ? 3 : 0;
                        if (own) ck_assert_int_eq(gemm_case(1, ta, tb, M, N, K, a[0], a[1], pad, &rng), 0);
                        ck_assert_int_eq(gemm_case(0, ta, tb, M, N, K, a[0], a[1], pad, &rng), 0);
                    }
    if (own)
        for (int t = 0; t < 4; t++) gemm_split_same_bits(t >> 1, t & 1, 200, 150, 600, &rng);
    /* larger: several K, M and N blocks (K 1000 = 3 full blocks + 232, N past the 2048 block) */
    const int big[][3] = {{1000, 40, 1000}, {300, 2100, 70}, {150, 100, 513}};
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 4; t++) {
            if (own) ck_assert_int_eq(gemm_case(1, t >> 1, t & 1, big[s][0], big[s][1], big[s][2], 1.0f, t % 2 ? 0.0f : 1.0f, 5, &rng), 0);
            ck_assert_int_eq(gemm_case(0, t >> 1, t & 1, big[s][0], big[s][1], big[s][2], 0.75f, 0.5f, 1, &rng), 0);
        }
}
END_TEST

typedef struct {
    float *out, *inp, *w, *b, *dout;
    int N, C, OC;
} LinearCtx;

static double linear_loss(void *p)
{
    LinearCtx *c = p;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dot_double(c->out, c->dout, (size_t)c->N * c->OC);
}

START_TEST(test_linear_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 2, 1);
    LinearCtx c = {.N = 6, .C = 5, .OC = 4};
    size_t ni = (size_t)c.N * c.C, nw = (size_t)c.OC * c.C, no = (size_t)c.N * c.OC;
    c.out = calloc(no, 4), c.inp = calloc(ni, 4), c.w = calloc(nw, 4), c.b = calloc(c.OC, 4);
    c.dout = calloc(no, 4);
    float *dinp = calloc(ni, 4), *dw = calloc(nw, 4), *db = calloc(c.OC, 4);
    fill_uniform(c.inp, ni, -1, 1, &rng);
    fill_uniform(c.w, nw, -1, 1, &rng);
    fill_uniform(c.b, c.OC, -1, 1, &rng);
    fill_uniform(c.dout, no, -1, 1, &rng);
    linear_forward(c.out, c.inp, c.w, c.b, c.N, c.C, c.OC);
    linear_backward(dinp, dw, db, c.dout, c.inp, c.w, c.N, c.C, c.OC);
    ck_assert_int_eq(gradcheck("linear.inp", c.inp, dinp, ni, linear_loss, &c, 200, 1e-2, 1e-3, 1e-5, &rng), 0);
    ck_assert_int_eq(gradcheck("linear.weight", c.w, dw, nw, linear_loss, &c, 200, 1e-2, 1e-3, 1e-5, &rng), 0);
    ck_assert_int_eq(gradcheck("linear.bias", c.b, db, c.OC, linear_loss, &c, 200, 1e-2, 1e-3, 1e-5, &rng), 0);
    /* backward accumulates: a second call doubles every gradient */
    float w0 = dw[3];
    linear_backward(dinp, dw, db, c.dout, c.inp, c.w, c.N, c.C, c.OC);
    ck_assert_float_eq_tol(dw[3], 2 * w0, 1e-5);
    free(c.out), free(c.inp), free(c.w), free(c.b), free(c.dout), free(dinp), free(dw), free(db);
}
END_TEST

/* sac_grow: doubles (at least 16, at least what is needed), keeps the contents, leaves a full
 * enough array alone, and refuses a size that overflows without touching the array. */
START_TEST(test_grow)
{
    int *a = NULL;
    size_t cap = 0, n = 0;
    for (int i = 0; i < 1000; i++) {
        int *b = sac_grow(a, &cap, n + 1, sizeof(*a));
        ck_assert_ptr_nonnull(b);
        ck_assert_uint_ge(cap, n + 1);
        a = b, a[n++] = i;
    }
    ck_assert_uint_eq(cap, 1024); /* 16, 32, ..., 1024 */
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(a[i], i);
    ck_assert_ptr_eq(sac_grow(a, &cap, 1024, sizeof(*a)), a);
    ck_assert_uint_eq(cap, 1024);
    ck_assert_ptr_nonnull(a = sac_grow(a, &cap, 5000, sizeof(*a))); /* more than twice: what is needed */
    ck_assert_uint_eq(cap, 5000);
    ck_assert_int_eq(a[999], 999);
    ck_assert_ptr_null(sac_grow(a, &cap, SIZE_MAX / 2, sizeof(*a)));
    ck_assert_uint_eq(cap, 5000);
    ck_assert_int_eq(a[999], 999);
    free(a);
}
END_TEST

START_TEST(test_fastmath_accuracy)
{
    /* the bounds documented in fastmath.h, over a dense grid */
    double worst_exp = 0, worst_tanh = 0, worst_sig = 0;
    for (int i = -800000; i <= 800000; i++) {
        float x = i * 1e-4f;
        double e = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(sac_expf(x) - e) / e);
    }
    for (int i = -200000; i <= 200000; i++) {
        float x = i * 1e-4f;
        worst_tanh = fmax(worst_tanh, fabs(sac_tanhf(x) - tanh((double)x)));
        worst_sig = fmax(worst_sig, fabs(sac_sigmoidf(x) - 1.0 / (1.0 + exp(-(double)x))));
    }
    printf("fastmath: exp max rel err %.3g, tanh max abs err %.3g, sigmoid max abs err %.3g\n", worst_exp, worst_tanh,
           worst_sig);
    ck_assert_double_lt(worst_exp, 3e-7);
    ck_assert_double_lt(worst_tanh, 3e-7);
    ck_assert_double_lt(worst_sig, 3e-7);
    /* saturation, no NaN or inf */
    ck_assert_float_eq(sac_tanhf(50.0f), 1.0f);
    ck_assert_float_eq(sac_tanhf(-50.0f), -1.0f);
    ck_assert(sac_sigmoidf(-200.0f) >= 0.0f && sac_sigmoidf(-200.0f) < 1e-30f);
    ck_assert(isfinite(sac_expf(1000.0f)));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("common");
    const TTest *tests[] = {test_rng_reproducible, test_gemm_matches_reference, test_gemm_avx512_matches_reference,
        test_linear_gradcheck, test_fastmath_accuracy, test_grow, NULL};
    check_case(s, "core", 0, tests);
    return check_run(s);
}
