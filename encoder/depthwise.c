/*
 * depthwise.c - depthwise 3x3 convolution + bias + ReLU6, channels last; see depthwise.h.
 *
 * out[ox][c] = relu6(bias[c] + sum_{ky, kx} wt[ky*3 + kx][c] * row_ky[ox*stride - pad_left + kx][c])
 * over the taps inside the image. Channels are contiguous, so each kernel works on a vector of
 * channels at a time: the 9 weight vectors and the bias stay in registers while it walks along
 * the row, four output pixels at a time in the interior (four independent chains of 9
 * multiply-adds), one at a time at the two edges, where some taps fall in the padding.
 *
 * The AVX2 and AVX-512 kernels are chosen at run time (common/cpu.h's dispatch table). Size
 * letters: C channels, W input width, Wo output width.
 */
#include "depthwise.h"

#include <stddef.h>

#include "sac.h"

#if SAC_KERNEL_X86
#include <immintrin.h>
#endif

static inline float relu6(float v)
{
    v = v < 0.0f ? 0.0f : v;
    return v > 6.0f ? 6.0f : v;
}

/* Channels [c0, c1) of the row, portable C. */
static void dw_row_channels(float *out, const float *const rows[3], const float *wt, const float *bias, int W,
                            int Wo, int C, int stride, int pad_left, int c0, int c1)
{
    for (int ox = 0; ox < Wo; ox++) {
        float *o = out + (size_t)ox * C;
        const int ix = ox * stride - pad_left;
        for (int c = c0; c < c1; c++) o[c] = bias[c];
        for (int ky = 0; ky < 3; ky++) {
            if (!rows[ky]) continue;
            for (int kx = 0; kx < 3; kx++) {
                const int x = ix + kx;
                if (x < 0 || x >= W) continue;
                const float *p = rows[ky] + (size_t)x * C, *w = wt + (size_t)(ky * 3 + kx) * C;
                for (int c = c0; c < c1; c++) o[c] += w[c] * p[c];
            }
        }
        for (int c = c0; c < c1; c++) o[c] = relu6(o[c]);
    }
}

static void dw_row_c(float *out, const float *const rows[3], const float *wt, const float *bias, int W, int Wo, int C,
                     int stride, int pad_left)
{
    dw_row_channels(out, rows, wt, bias, W, Wo, C, stride, pad_left, 0, C);
}

#if SAC_KERNEL_X86
/* Output columns [lo, hi) whose three taps all lie inside [0, W). */
static void dw_interior(int W, int Wo, int stride, int pad_left, int *lo, int *hi)
{
    int l = (pad_left + stride - 1) / stride;
    int h = W - 3 + pad_left < 0 ? 0 : (W - 3 + pad_left) / stride + 1;
    l = SAC_MIN(l, Wo);
    h = SAC_MIN(h, Wo);
    *lo = l;
    *hi = SAC_MAX(h, l);
}

/* Channels [0, C & ~7) by 8-float vectors; the rest (C % 8) by the C kernel. */
SAC_TARGET_AVX2 static void dw_row_avx2(float *out, const float *const rows[3], const float *wt, const float *bias,
                                        int W, int Wo, int C, int stride, int pad_left)
{
    int lo, hi;
    dw_interior(W, Wo, stride, pad_left, &lo, &hi);
    const int C8 = C & ~7;
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const size_t sC = (size_t)stride * C;
    for (int c = 0; c < C8; c += 8) {
        __m256 w[9];
        for (int t = 0; t < 9; t++) w[t] = _mm256_loadu_ps(wt + (size_t)t * C + c);
        const __m256 b = _mm256_loadu_ps(bias + c);
        for (int ox = 0; ox < Wo; ox++) {
            if (ox == lo && hi > lo) ox = hi; /* the interior is below */
            if (ox >= Wo) break;
            const int ix = ox * stride - pad_left;
            __m256 a = b;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (int kx = 0; kx < 3; kx++) {
                    const int x = ix + kx;
                    if (x < 0 || x >= W) continue;
                    a = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(rows[ky] + (size_t)x * C + c), a);
                }
            }
            _mm256_storeu_ps(out + (size_t)ox * C + c, _mm256_min_ps(_mm256_max_ps(a, zero), six));
        }
        int ox = lo;
        for (; ox + 4 <= hi; ox += 4) {
            __m256 a0 = b, a1 = b, a2 = b, a3 = b;
            const size_t at = (size_t)(ox * stride - pad_left) * C + c;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                const float *p = rows[ky] + at;
                for (int kx = 0; kx < 3; kx++, p += C) {
                    a0 = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(p), a0);
                    a1 = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(p + sC), a1);
                    a2 = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(p + 2 * sC), a2);
                    a3 = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(p + 3 * sC), a3);
                }
            }
            float *o = out + (size_t)ox * C + c;
            _mm256_storeu_ps(o, _mm256_min_ps(_mm256_max_ps(a0, zero), six));
            _mm256_storeu_ps(o + C, _mm256_min_ps(_mm256_max_ps(a1, zero), six));
            _mm256_storeu_ps(o + 2 * (size_t)C, _mm256_min_ps(_mm256_max_ps(a2, zero), six));
            _mm256_storeu_ps(o + 3 * (size_t)C, _mm256_min_ps(_mm256_max_ps(a3, zero), six));
        }
        for (; ox < hi; ox++) {
            __m256 a = b;
            const size_t at = (size_t)(ox * stride - pad_left) * C + c;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                const float *p = rows[ky] + at;
                for (int kx = 0; kx < 3; kx++, p += C) a = _mm256_fmadd_ps(w[ky * 3 + kx], _mm256_loadu_ps(p), a);
            }
            _mm256_storeu_ps(out + (size_t)ox * C + c, _mm256_min_ps(_mm256_max_ps(a, zero), six));
        }
    }
    if (C8 < C) dw_row_channels(out, rows, wt, bias, W, Wo, C, stride, pad_left, C8, C);
}

/* All channels by 16-float vectors, the last one masked. */
SAC_TARGET_AVX512 static void dw_row_avx512(float *out, const float *const rows[3], const float *wt, const float *bias,
                                            int W, int Wo, int C, int stride, int pad_left)
{
    int lo, hi;
    dw_interior(W, Wo, stride, pad_left, &lo, &hi);
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const size_t sC = (size_t)stride * C;
    for (int c = 0; c < C; c += 16) {
        const __mmask16 m = C - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c)) - 1);
        __m512 w[9];
        for (int t = 0; t < 9; t++) w[t] = _mm512_maskz_loadu_ps(m, wt + (size_t)t * C + c);
        const __m512 b = _mm512_maskz_loadu_ps(m, bias + c);
        for (int ox = 0; ox < Wo; ox++) {
            if (ox == lo && hi > lo) ox = hi;
            if (ox >= Wo) break;
            const int ix = ox * stride - pad_left;
            __m512 a = b;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (int kx = 0; kx < 3; kx++) {
                    const int x = ix + kx;
                    if (x < 0 || x >= W) continue;
                    a = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, rows[ky] + (size_t)x * C + c), a);
                }
            }
            _mm512_mask_storeu_ps(out + (size_t)ox * C + c, m, _mm512_min_ps(_mm512_max_ps(a, zero), six));
        }
        int ox = lo;
        for (; ox + 4 <= hi; ox += 4) {
            __m512 a0 = b, a1 = b, a2 = b, a3 = b;
            const size_t at = (size_t)(ox * stride - pad_left) * C + c;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                const float *p = rows[ky] + at;
                for (int kx = 0; kx < 3; kx++, p += C) {
                    a0 = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, p), a0);
                    a1 = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, p + sC), a1);
                    a2 = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, p + 2 * sC), a2);
                    a3 = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, p + 3 * sC), a3);
                }
            }
            float *o = out + (size_t)ox * C + c;
            _mm512_mask_storeu_ps(o, m, _mm512_min_ps(_mm512_max_ps(a0, zero), six));
            _mm512_mask_storeu_ps(o + C, m, _mm512_min_ps(_mm512_max_ps(a1, zero), six));
            _mm512_mask_storeu_ps(o + 2 * (size_t)C, m, _mm512_min_ps(_mm512_max_ps(a2, zero), six));
            _mm512_mask_storeu_ps(o + 3 * (size_t)C, m, _mm512_min_ps(_mm512_max_ps(a3, zero), six));
        }
        for (; ox < hi; ox++) {
            __m512 a = b;
            const size_t at = (size_t)(ox * stride - pad_left) * C + c;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                const float *p = rows[ky] + at;
                for (int kx = 0; kx < 3; kx++, p += C)
                    a = _mm512_fmadd_ps(w[ky * 3 + kx], _mm512_maskz_loadu_ps(m, p), a);
            }
            _mm512_mask_storeu_ps(out + (size_t)ox * C + c, m, _mm512_min_ps(_mm512_max_ps(a, zero), six));
        }
    }
}
#endif

typedef void (*DwRowFn)(float *out, const float *const rows[3], const float *wt, const float *bias, int W, int Wo,
                        int C, int stride, int pad_left);
static const DwRowFn dw_row_fns[] = SAC_KERNEL_TABLE(dw_row);

void depthwise_row(int kernel, float *out, const float *const rows[3], const float *wt, const float *bias, int W,
                   int Wo, int C, int stride, int pad_left)
{
    dw_row_fns[kernel == SAC_KERNEL_AUTO ? sac_kernel() : kernel](out, rows, wt, bias, W, Wo, C, stride, pad_left);
}

int depthwise_forward(float *out, const float *inp, const float *wt, const float *bias, int H, int W, int C,
                      int stride, int pad_top, int pad_left, int kernel)
{
    if (!sac_kernel_supported(kernel)) return SAC_ERR_UNSUPPORTED;
    if (kernel == SAC_KERNEL_AUTO) kernel = sac_kernel_best();
    const int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
    for (int oy = 0; oy < Ho; oy++) {
        const float *rows[3];
        for (int ky = 0; ky < 3; ky++) {
            const int y = oy * stride - pad_top + ky;
            rows[ky] = y >= 0 && y < H ? inp + (size_t)y * W * C : NULL;
        }
        depthwise_row(kernel, out + (size_t)oy * Wo * C, rows, wt, bias, W, Wo, C, stride, pad_left);
    }
    return SAC_OK;
}
