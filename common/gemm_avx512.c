/*
 * gemm_avx512.c - saccade's own sgemm for the AVX-512 path (see gemm_avx512.h), the GotoBLAS /
 * BLIS structure: op(B) is packed in blocks of KC x NC as k-major panels of NR = 32 columns,
 * op(A) in blocks of MC x KC as k-major panels of MR = 14 rows, and a micro-kernel keeps a 14 x 32
 * tile of C in 28 zmm accumulators, one FMA per row and 16 columns per k. Edges are zero-padded in
 * the packing and written back with masked stores; the four transpose cases differ only in the
 * packing. The OpenBLAS build this machine uses runs its AVX2 kernels (OPENBLAS_CORETYPE=Haswell),
 * half the vector width this CPU has.
 *
 * Order of the sums: C[i][j] = alpha * (sum over each K block of KC, in order) with the first
 * block adding beta * C; each block's sum is a chain of FMAs over k from zero. It depends on K
 * alone, not on M, N or the tile: a product split by rows or columns gives the same bits.
 */
#include "gemm_avx512.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "sac.h"
#if SAC_KERNEL_X86
#include <immintrin.h>
#endif

#if SAC_KERNEL_X86

enum {
    MR = 14,   /* rows of a micro-tile */
    NR = 32,   /* columns of a micro-tile: two zmm */
    KC = 256,  /* depth of a packed block: a B panel (32 KB) stays in L1 */
    MC = 168,  /* rows of a packed A block (168 KB, in L2) */
    NC = 2048, /* columns of a packed B block (2 MB) */
};

/* One k-major panel of width w from n <= w strided rows src + r * ld (k contiguous in each):
 * panel[k * w + r] = src[r * ld + k] for k < kc, zero for r >= n (the transposing case of both
 * packings). */
static void pack_rows(float *panel, int w, int n, const float *src, size_t ld, int kc)
{
    for (int r = 0; r < w; r++)
        for (int k = 0; k < kc; k++) panel[(size_t)k * w + r] = r < n ? src[(size_t)r * ld + k] : 0.0f;
}

/* rows i0.. of op(A), k p0.., into ceil(mc / MR) panels, ap[(panel * kc + k) * MR + r]. */
SAC_TARGET_AVX512 static void pack_a(float *ap, int ta, const float *A, int lda, int i0, int mc, int p0, int kc)
{
    for (int ir = 0; ir < mc; ir += MR, ap += (size_t)kc * MR) {
        const int mr = SAC_MIN(MR, mc - ir);
        if (ta) { /* op(A)[i][k] = A[k][i]: MR contiguous floats per k */
            const __mmask16 m = (__mmask16)((1u << mr) - 1);
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(p0 + k) * lda + i0 + ir;
                _mm512_mask_storeu_ps(ap + (size_t)k * MR, (__mmask16)((1u << MR) - 1), _mm512_maskz_loadu_ps(m, src));
            }
        } else {
            pack_rows(ap, MR, mr, A + (size_t)(i0 + ir) * lda + p0, (size_t)lda, kc);
        }
    }
}

/* columns j0.. of op(B), k p0.., into ceil(nc / NR) panels, bp[(panel * kc + k) * NR + c]. */
SAC_TARGET_AVX512 static void pack_b(float *bp, int tb, const float *B, int ldb, int j0, int nc, int p0, int kc)
{
    for (int jr = 0; jr < nc; jr += NR, bp += (size_t)kc * NR) {
        const int nr = SAC_MIN(NR, nc - jr);
        if (!tb) { /* op(B)[k][j] = B[k][j]: NR contiguous floats per k */
            const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
            const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
            for (int k = 0; k < kc; k++) {
                const float *src = B + (size_t)(p0 + k) * ldb + j0 + jr;
                _mm512_storeu_ps(bp + (size_t)k * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_storeu_ps(bp + (size_t)k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else { /* op(B)[k][j] = B[j][k] */
            pack_rows(bp, NR, nr, B + (size_t)(j0 + jr) * ldb + p0, (size_t)ldb, kc);
        }
    }
}

/* The micro-kernel: the mr x nr (<= MR x NR) tile at c from one A panel and one B panel of depth
 * kc. first: this is the first K block (C = alpha * sum + beta * C, C unread when beta == 0);
 * later blocks add alpha * sum. */
SAC_TARGET_AVX512 static void kernel(int kc, const float *restrict ap, const float *restrict bp, float *c,
                                     int ldc, int mr, int nr, float alpha, float beta, int first)
{
    __m512 acc[MR][2];
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, ap += MR, bp += NR) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        _Pragma("GCC unroll 16")
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(ap[r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *d = c + (size_t)r * ldc;
        __m512 v0, v1;
        if (first && beta == 0.0f) {
            v0 = _mm512_mul_ps(va, acc[r][0]);
            v1 = _mm512_mul_ps(va, acc[r][1]);
        } else if (first) {
            v0 = _mm512_fmadd_ps(va, acc[r][0], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, d)));
            v1 = _mm512_fmadd_ps(va, acc[r][1], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, d + 16)));
        } else {
            v0 = _mm512_fmadd_ps(va, acc[r][0], _mm512_maskz_loadu_ps(m0, d));
            v1 = _mm512_fmadd_ps(va, acc[r][1], _mm512_maskz_loadu_ps(m1, d + 16));
        }
        _mm512_mask_storeu_ps(d, m0, v0);
        _mm512_mask_storeu_ps(d + 16, m1, v1);
    }
}

int sac_gemm_avx512(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return -1;
    const int kcmax = SAC_MIN(K, KC);
    const int mcmax = (SAC_MIN(M, MC) + MR - 1) / MR * MR, ncmax = (SAC_MIN(N, NC) + NR - 1) / NR * NR;
    /* both rounded to 16 floats: the B panels start 64-byte aligned, aligned_alloc gets a multiple of 64 */
    const size_t a_floats = ((size_t)mcmax * kcmax + 15) / 16 * 16, b_floats = ((size_t)ncmax * kcmax + 15) / 16 * 16;
    float *buf = aligned_alloc(64, (a_floats + b_floats) * sizeof(float));
    if (!buf) return -1;
    float *ap = buf, *bp = buf + a_floats;
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = SAC_MIN(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = SAC_MIN(KC, K - pc);
            pack_b(bp, tb, B, ldb, jc, nc, pc, kc);
            for (int ic = 0; ic < M; ic += MC) {
                const int mc = SAC_MIN(MC, M - ic);
                pack_a(ap, ta, A, lda, ic, mc, pc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bpanel = bp + (size_t)(jr / NR) * kc * NR;
                    for (int ir = 0; ir < mc; ir += MR)
                        kernel(kc, ap + (size_t)(ir / MR) * kc * MR, bpanel, C + (size_t)(ic + ir) * ldc + jc + jr,
                               ldc, SAC_MIN(MR, mc - ir), SAC_MIN(NR, nc - jr), alpha, beta, pc == 0);
                }
            }
        }
    }
    free(buf);
    return 0;
}

#else

int sac_gemm_avx512(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb;
    (void)beta, (void)C, (void)ldc;
    return -1;
}

#endif
