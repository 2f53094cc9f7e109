/*
 * pointwise.c - 1x1 convolution with fused bias, residual and ReLU6; see pointwise.h.
 *
 * y[m][n] = act(bias[n] + res[m][n] + sum_k x[m][k] * W[n][k]). The rows are walked in blocks of
 * PW_ROW_BLOCK (their x stays in L1/L2 while every panel of the weights passes over them), then
 * panel by panel, then in register tiles: AVX-512 keeps 8 rows x 32 outputs (16 zmm sums) and
 * AVX2 3 rows x 32 outputs (12 ymm sums; 25% faster than 6 x 16 here), each step of k one
 * broadcast of x per row and the panel's row of weights. The sums start from the bias (and residual) and take k in order, so
 * the AVX2 and AVX-512 kernels compute the same bits, and no row depends on its neighbours.
 *
 * Size letters: M rows, K input channels, N output channels, R rows of a register tile.
 */
#include "pointwise.h"

#include <string.h>

#include "sac.h"

#if SAC_KERNEL_X86
#include <immintrin.h>
#endif

enum { PW_ROW_BLOCK = 64 };

static int pw_panels(int N) { return (N + PW_PANEL - 1) / PW_PANEL; }

size_t pointwise_packed_floats(int K, int N) { return (size_t)pw_panels(N) * (K + 1) * PW_PANEL; }

void pointwise_pack(float *dst, const float *weight, const float *bias, int K, int N)
{
    for (int p = 0; p < pw_panels(N); p++) {
        float *d = dst + (size_t)p * (K + 1) * PW_PANEL;
        for (int j = 0; j < PW_PANEL; j++) {
            const int n = p * PW_PANEL + j;
            d[j] = n < N && bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) d[(size_t)(k + 1) * PW_PANEL + j] = n < N ? weight[(size_t)n * K + k] : 0.0f;
        }
    }
}

static inline float relu6f(float v)
{
    v = v < 0.0f ? 0.0f : v;
    return v > 6.0f ? 6.0f : v;
}

/* Rows [0, M), outputs [n0, n0 + nc) (one panel), portable C. */
static void pw_panel_c(float *y, int ldy, const float *x, int ldx, const float *res, int ldr, const float *panel,
                       int M, int K, int nc, int relu6)
{
    for (int m = 0; m < M; m++) {
        float acc[PW_PANEL];
        memcpy(acc, panel, sizeof(acc));
        if (res)
            for (int j = 0; j < nc; j++) acc[j] += res[(size_t)m * ldr + j];
        const float *xr = x + (size_t)m * ldx;
        for (int k = 0; k < K; k++) {
            const float a = xr[k], *w = panel + (size_t)(k + 1) * PW_PANEL;
            for (int j = 0; j < PW_PANEL; j++) acc[j] += a * w[j];
        }
        float *yr = y + (size_t)m * ldy;
        for (int j = 0; j < nc; j++) yr[j] = relu6 ? relu6f(acc[j]) : acc[j];
    }
}

#if SAC_KERNEL_X86
/* R rows x 32 outputs (nc of them kept), AVX-512. */
SAC_TARGET_AVX512 SAC_ALWAYS_INLINE static inline void pw_tile_avx512(
    float *y, int ldy, const float *x, int ldx, const float *res, int ldr, const float *panel, int K, int R,
    __mmask16 m0, __mmask16 m1, int relu6)
{
    __m512 acc[8][2];
    const __m512 b0 = _mm512_loadu_ps(panel), b1 = _mm512_loadu_ps(panel + 16);
    for (int i = 0; i < R; i++) {
        acc[i][0] = b0, acc[i][1] = b1;
        if (res) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_maskz_loadu_ps(m0, res + (size_t)i * ldr));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_maskz_loadu_ps(m1, res + (size_t)i * ldr + 16));
        }
    }
    const float *w = panel + PW_PANEL;
    for (int k = 0; k < K; k++, w += PW_PANEL) {
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
        for (int i = 0; i < R; i++) {
            const __m512 a = _mm512_set1_ps(x[(size_t)i * ldx + k]);
            acc[i][0] = _mm512_fmadd_ps(w0, a, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, a, acc[i][1]);
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    for (int i = 0; i < R; i++) {
        if (relu6) {
            acc[i][0] = _mm512_min_ps(_mm512_max_ps(acc[i][0], zero), six);
            acc[i][1] = _mm512_min_ps(_mm512_max_ps(acc[i][1], zero), six);
        }
        _mm512_mask_storeu_ps(y + (size_t)i * ldy, m0, acc[i][0]);
        _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16, m1, acc[i][1]);
    }
}

SAC_TARGET_AVX512 static void pw_panel_avx512(float *y, int ldy, const float *x, int ldx, const float *res, int ldr,
                                              const float *panel, int M, int K, int nc, int relu6)
{
    const __mmask16 m0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    int m = 0;
    for (; m + 8 <= M; m += 8)
        pw_tile_avx512(y + (size_t)m * ldy, ldy, x + (size_t)m * ldx, ldx, res ? res + (size_t)m * ldr : NULL, ldr,
                       panel, K, 8, m0, m1, relu6);
    float *yt = y + (size_t)m * ldy;
    const float *xt = x + (size_t)m * ldx, *rt = res ? res + (size_t)m * ldr : NULL;
    switch (M - m) {
    case 7: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 7, m0, m1, relu6); break;
    case 6: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 6, m0, m1, relu6); break;
    case 5: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 5, m0, m1, relu6); break;
    case 4: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 4, m0, m1, relu6); break;
    case 3: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 3, m0, m1, relu6); break;
    case 2: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 2, m0, m1, relu6); break;
    case 1: pw_tile_avx512(yt, ldy, xt, ldx, rt, ldr, panel, K, 1, m0, m1, relu6); break;
    default: break;
    }
}

/* Lanes [0, n) of 8 set (n clamped to 0..8). */
SAC_TARGET_AVX2 static inline __m256i pw_lanes(int n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n < 0 ? 0 : n > 8 ? 8 : n), idx);
}

/* R rows (<= 3) x 32 outputs, AVX2: 12 sums, the 3 broadcasts of x and one panel vector at a
 * time in the other 4 of the 16 registers. lanes[c]: the lanes of output group c kept; full:
 * all 32 are. */
SAC_TARGET_AVX2 SAC_ALWAYS_INLINE static inline void pw_tile_avx2(
    float *y, int ldy, const float *x, int ldx, const float *res, int ldr, const float *panel, int K, int R,
    const __m256i lanes[4], int full, int relu6)
{
    __m256 acc[3][4];
    for (int i = 0; i < R; i++)
        for (int c = 0; c < 4; c++) {
            acc[i][c] = _mm256_loadu_ps(panel + 8 * c);
            if (res)
                acc[i][c] = _mm256_add_ps(acc[i][c], full ? _mm256_loadu_ps(res + (size_t)i * ldr + 8 * c)
                                                          : _mm256_maskload_ps(res + (size_t)i * ldr + 8 * c, lanes[c]));
        }
    const float *w = panel + PW_PANEL;
    for (int k = 0; k < K; k++, w += PW_PANEL) {
        __m256 a[3];
        for (int i = 0; i < R; i++) a[i] = _mm256_broadcast_ss(x + (size_t)i * ldx + k);
        for (int c = 0; c < 4; c++) {
            const __m256 wv = _mm256_loadu_ps(w + 8 * c);
            for (int i = 0; i < R; i++) acc[i][c] = _mm256_fmadd_ps(wv, a[i], acc[i][c]);
        }
    }
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    for (int i = 0; i < R; i++)
        for (int c = 0; c < 4; c++) {
            __m256 v = acc[i][c];
            if (relu6) v = _mm256_min_ps(_mm256_max_ps(v, zero), six);
            if (full)
                _mm256_storeu_ps(y + (size_t)i * ldy + 8 * c, v);
            else
                _mm256_maskstore_ps(y + (size_t)i * ldy + 8 * c, lanes[c], v);
        }
}

SAC_TARGET_AVX2 static void pw_panel_avx2(float *y, int ldy, const float *x, int ldx, const float *res, int ldr,
                                          const float *panel, int M, int K, int nc, int relu6)
{
    const __m256i lanes[4] = {pw_lanes(nc), pw_lanes(nc - 8), pw_lanes(nc - 16), pw_lanes(nc - 24)};
    const int full = nc == PW_PANEL;
    int m = 0;
    for (; m + 3 <= M; m += 3)
        pw_tile_avx2(y + (size_t)m * ldy, ldy, x + (size_t)m * ldx, ldx, res ? res + (size_t)m * ldr : NULL, ldr,
                     panel, K, 3, lanes, full, relu6);
    float *yt = y + (size_t)m * ldy;
    const float *xt = x + (size_t)m * ldx, *rt = res ? res + (size_t)m * ldr : NULL;
    if (M - m == 2) pw_tile_avx2(yt, ldy, xt, ldx, rt, ldr, panel, K, 2, lanes, full, relu6);
    if (M - m == 1) pw_tile_avx2(yt, ldy, xt, ldx, rt, ldr, panel, K, 1, lanes, full, relu6);
}
#endif

typedef void (*PwPanelFn)(float *y, int ldy, const float *x, int ldx, const float *res, int ldr, const float *panel,
                          int M, int K, int nc, int relu6);
static const PwPanelFn pw_panel_fns[] = SAC_KERNEL_TABLE(pw_panel);

void pointwise_forward(int kernel, float *y, int ldy, const float *x, int ldx, const float *res, int ldr,
                       const float *packed, int M, int K, int N, int relu6)
{
    const PwPanelFn panel_fn = pw_panel_fns[kernel == SAC_KERNEL_AUTO ? sac_kernel() : kernel];
    const size_t pstride = (size_t)(K + 1) * PW_PANEL;
    for (int m0 = 0; m0 < M; m0 += PW_ROW_BLOCK) {
        const int mb = SAC_MIN(PW_ROW_BLOCK, M - m0);
        const float *xb = x + (size_t)m0 * ldx, *rb = res ? res + (size_t)m0 * ldr : NULL;
        float *yb = y + (size_t)m0 * ldy;
        for (int p = 0; p < pw_panels(N); p++) {
            const int n0 = p * PW_PANEL, nc = SAC_MIN(PW_PANEL, N - n0);
            const float *panel = packed + p * pstride, *rp = rb ? rb + n0 : NULL;
            panel_fn(yb + n0, ldy, xb, ldx, rp, ldr, panel, mb, K, nc, relu6);
        }
    }
}
