/*
 * fastmath.h - exp, sigmoid and tanh written so that loops over them vectorise (no libm calls,
 * no branches), for the elementwise work of attention, the LSTM gates and the softmaxes.
 *
 * sac_expf: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial
 * for e^r, then scaling by 2^n through the exponent bits. Relative error < 3e-7 over the
 * clamped range [-87.3, 88.0] (inputs beyond it saturate to ~1e-38 / ~3e38).
 * sac_tanhf: odd polynomial (Taylor to x^11) for |x| < 0.4, 1 - 2 / (e^{2|x|} + 1) beyond,
 * sign restored; absolute error < 3e-7. sac_sigmoidf: 1 / (1 + e^-x).
 * test_common checks all three against libm over a dense grid. The loops over them that matter
 * are compiled for each kernel path in fastmath.c.
 */
#ifndef SACCADE_FASTMATH_H
#define SACCADE_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float sac_expf(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    /* n = rint(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22): the addition rounds to an
     * integer in the current rounding mode, as rintf does, and vectorises with SSE2 alone
     * (rintf needs SSE4.1's roundps, which the x86-64 baseline lacks) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

static inline float sac_sigmoidf(float x) { return 1.0f / (1.0f + sac_expf(-x)); }

static inline float sac_tanhf(float x)
{
    const float a = x < 0.0f ? -x : x;
    const float x2 = x * x;
    /* tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925 */
    float p = -1382.0f / 155925.0f;
    p = p * x2 + 62.0f / 2835.0f;
    p = p * x2 - 17.0f / 315.0f;
    p = p * x2 + 2.0f / 15.0f;
    p = p * x2 - 1.0f / 3.0f;
    const float small = x + x * x2 * p;
    const float big = 1.0f - 2.0f / (sac_expf(2.0f * a) + 1.0f);
    const float sbig = x < 0.0f ? -big : big;
    return a < 0.4f ? small : sbig;
}

/* x = softmax(x) in place over n >= 1 entries (the maximum subtracted first). */
static inline void sac_softmax_inplace(float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = sac_expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* The largest of x[0..n), n >= 1, in 8 independent lanes so that the loop vectorises. */
static inline float sac_max_lanes(const float *x, int n)
{
    float acc[8];
    for (int j = 0; j < 8; j++) acc[j] = -INFINITY;
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] = x[k + j] > acc[j] ? x[k + j] : acc[j];
    float m = -INFINITY;
    for (int j = 0; j < 8; j++) m = acc[j] > m ? acc[j] : m;
    for (; k < n; k++) m = x[k] > m ? x[k] : m;
    return m;
}

/* The loops decoding and training spend their time in, run on the best kernel path (fastmath.c):
 * sum_k tanh(a[k] + b[k]) * w[k] (8 partial sums, then the tail, in that order), and
 * y[k] = tanh(a[k] + b[k]) (y may be a or b), k < n. */
float sac_tanh_dot(const float *a, const float *b, const float *w, int n);
void sac_tanh_add(float *y, const float *a, const float *b, int n);
/* The attention's context z (E) = sum_q alpha[q] * feat[q] over P rows of E (q in order, from
 * zero), and the gate z[k] *= sigmoid(g[k]), k < n. */
void sac_context(float *z, const float *alpha, const float *feat, int P, int E);
void sac_mul_sigmoid(float *z, const float *g, int n);

#endif
