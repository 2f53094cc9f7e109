/*
 * batchnorm.c - BatchNorm2d forward (training and inference) and backward, and the fused
 * batchnorm -> relu [-> maxpool] forms the encoder runs; see batchnorm.h.
 * Reference: torch.nn.BatchNorm2d (torch/nn/modules/batchnorm.py, aten batch_norm_cpu).
 * Size letters: B batch, C channels, N = H * W positions per plane.
 *
 * Channel c's values are the B planes inp[b][c][0..N). Reductions run over values shifted by
 * the channel's first value (so the one-pass variance does not cancel when the mean is large
 * against the spread), in 8 float lanes over chunks of BN_CHUNK values, in double across chunks.
 * The lanes are GCC/Clang vector extensions: GCC 12 does not vectorise these reductions from
 * plain C (measured 2.4x slower). The statistics and the backward passes split the channels
 * across the thread pool (threadpool.h; serial inside a pool task): every channel is summed
 * by one thread in one order, so the results do not depend on the split.
 *
 * Backward (training), per channel, with xhat = (x - mean) * rstd, out = xhat * gamma + beta:
 *   dbeta = sum(dout), dgamma = sum(dout * xhat),
 *   dx = gamma * rstd * (dout - mean(dout) - xhat * mean(dout * xhat)).
 */
#include "batchnorm.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "sac.h"
#include "threadpool.h"

enum { BN_CHUNK = 256 };

typedef float BnF8 __attribute__((vector_size(32)));
typedef int32_t BnI8 __attribute__((vector_size(32)));

/* Vectors move through memcpy and pointers, never by value across a call (which would
 * change the ABI in a build without AVX, and warn). */
#define BN_LOAD8(v, p) memcpy(&(v), (p), sizeof(BnF8))

static double bn_hsum8(const BnF8 *v)
{
    double s = 0.0;
    for (int k = 0; k < 8; k++) s += (*v)[k];
    return s;
}

/* s1 += sum(x - shift), s2 += sum((x - shift)^2) over n values. */
static void bn_sums(const float *x, size_t n, float shift, double *s1, double *s2)
{
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + SAC_MIN(BN_CHUNK, (n - i) / 8 * 8);
        BnF8 a = {0}, q = {0};
        for (; i < end; i += 8) {
            BnF8 v;
            BN_LOAD8(v, x + i);
            v -= shift;
            a += v;
            q += v * v;
        }
        *s1 += bn_hsum8(&a);
        *s2 += bn_hsum8(&q);
    }
    for (; i < n; i++) {
        double v = (double)x[i] - shift;
        *s1 += v;
        *s2 += v * v;
    }
}

/* s1 += sum(g), s2 += sum(g * (x - mean)) over n values, g = d, or d where out > 0 when out
 * is given (the ReLU after the batchnorm). */
static void bn_grad_sums(const float *d, const float *out, const float *x, size_t n, float mean,
                         double *s1, double *s2)
{
    const BnF8 zero = {0};
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + SAC_MIN(BN_CHUNK, (n - i) / 8 * 8);
        BnF8 a = {0}, q = {0};
        for (; i < end; i += 8) {
            BnF8 g, xv;
            BN_LOAD8(g, d + i);
            BN_LOAD8(xv, x + i);
            if (out) {
                BnF8 o;
                BN_LOAD8(o, out + i);
                g = (BnF8)((BnI8)g & (o > zero));
            }
            a += g;
            q += g * (xv - mean);
        }
        *s1 += bn_hsum8(&a);
        *s2 += bn_hsum8(&q);
    }
    for (; i < n; i++) {
        float g = !out || out[i] > 0.0f ? d[i] : 0.0f;
        *s1 += g;
        *s2 += (double)g * (x[i] - mean);
    }
}

/* From the channel's sums sd = sum(g), sdx = sum(g * (x - mean)): dgamma, dbeta += and the
 * coefficients of dx = a * (g - md - (x - mean) * k). */
static void bn_grad_coefs(double sd, double sdx, double count, float gamma, float rstd, float *dgamma,
                          float *dbeta, float *a, float *md, float *k)
{
    double sdxhat = sdx * rstd;
    *dbeta += (float)sd;
    *dgamma += (float)sdxhat;
    *a = gamma * rstd;
    *md = (float)(sd / count);
    *k = (float)(sdxhat / count) * rstd;
}

typedef struct {
    float *mean, *rstd, *running_mean, *running_var;
    const float *inp;
    int B, C, N;
} BnStatsTask;

static void bn_stats_channels(void *arg, int c0, int c1, int chunk)
{
    (void)chunk;
    const BnStatsTask *t = arg;
    const int B = t->B, C = t->C, N = t->N;
    const double count = (double)B * N;
    for (int c = c0; c < c1; c++) {
        float shift = t->inp[(size_t)c * N];
        double s1 = 0.0, s2 = 0.0;
        for (int b = 0; b < B; b++) bn_sums(t->inp + ((size_t)b * C + c) * N, (size_t)N, shift, &s1, &s2);
        double m1 = s1 / count;
        double var = s2 / count - m1 * m1; /* biased: what normalises */
        if (var < 0.0) var = 0.0;
        double mu = shift + m1;
        t->mean[c] = (float)mu;
        t->rstd[c] = (float)(1.0 / sqrt(var + (double)SAC_BN_EPS));
        if (t->running_mean) {
            /* torch: running = (1 - momentum) * running + momentum * batch statistic, with the
             * unbiased variance */
            double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
            t->running_mean[c] = (float)((1.0 - SAC_BN_MOMENTUM) * t->running_mean[c] + SAC_BN_MOMENTUM * mu);
            t->running_var[c] = (float)((1.0 - SAC_BN_MOMENTUM) * t->running_var[c] + SAC_BN_MOMENTUM * unbiased);
        }
    }
}

/* Channels per chunk of the parallel passes (each channel's sums are its own: the same bits
 * for any split). */
enum { BN_GRAIN = 4 };

void batchnorm_stats(float *mean, float *rstd, const float *inp, float *running_mean,
                     float *running_var, int B, int C, int N)
{
    BnStatsTask t = {mean, rstd, running_mean, running_var, inp, B, C, N};
    sac_parallel_for(C, BN_GRAIN, bn_stats_channels, &t);
}

void batchnorm_affine(float *scale, float *shift, const float *mean, const float *rstd,
                      const float *gamma, const float *beta, int C)
{
    /* (x - mean) * rstd * gamma + beta = x * scale + shift */
    for (int c = 0; c < C; c++) {
        scale[c] = rstd[c] * gamma[c];
        shift[c] = beta[c] - mean[c] * scale[c];
    }
}

void batchnorm_infer_affine(float *scale, float *shift, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int C)
{
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] / sqrtf(running_var[c] + SAC_BN_EPS);
        shift[c] = beta[c] - running_mean[c] * scale[c];
    }
}

/* out = inp * scale[c] + shift[c], then max(0, .) when relu. */
static void bn_apply(float *out, const float *inp, const float *scale, const float *shift, int B, int C,
                     int N, int relu)
{
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)b * C + c) * N;
            const float s = scale[c], t = shift[c];
            const float *x = inp + off;
            float *y = out + off;
            if (relu) {
                for (int i = 0; i < N; i++) {
                    float v = x[i] * s + t;
                    y[i] = v > 0.0f ? v : 0.0f;
                }
            } else {
                for (int i = 0; i < N; i++) y[i] = x[i] * s + t;
            }
        }
    }
}

void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                       const float *beta, float *running_mean, float *running_var, int B, int C,
                       int N)
{
    batchnorm_stats(mean, rstd, inp, running_mean, running_var, B, C, N);
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)b * C + c) * N;
            float s = rstd[c] * gamma[c];
            float t = beta[c] - mean[c] * s;
            for (int i = 0; i < N; i++) out[off + i] = inp[off + i] * s + t;
        }
    }
}

void batchnorm_infer_forward(float *out, const float *inp, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int B, int C,
                             int N)
{
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)b * C + c) * N;
            float s = gamma[c] / sqrtf(running_var[c] + SAC_BN_EPS);
            float t = beta[c] - running_mean[c] * s;
            for (int i = 0; i < N; i++) out[off + i] = inp[off + i] * s + t;
        }
    }
}

void batchnorm_relu_apply(float *out, const float *inp, const float *scale, const float *shift,
                          int B, int C, int N)
{
    bn_apply(out, inp, scale, shift, B, C, N, 1);
}

/* One output row of batchnorm_pool_relu_apply from input rows r0, r1: maxpool_forward's scan
 * (first max, a NaN wins) over the normalised values, as selects, so the loop vectorises. */
static void bn_pool_row(float *o, uint8_t *am, float *px, const float *r0, const float *r1, float s,
                        float t, int Wo)
{
    for (int ox = 0; ox < Wo; ox++) {
        const float x0 = r0[2 * ox], x1 = r0[2 * ox + 1], x2 = r1[2 * ox], x3 = r1[2 * ox + 1];
        const float v0 = x0 * s + t, v1 = x1 * s + t, v2 = x2 * s + t, v3 = x3 * s + t;
        float m = v0, xm = x0;
        int k = 0;
        const int t1 = v1 > m || v1 != v1;
        m = t1 ? v1 : m, xm = t1 ? x1 : xm, k = t1 ? 1 : k;
        const int t2 = v2 > m || v2 != v2;
        m = t2 ? v2 : m, xm = t2 ? x2 : xm, k = t2 ? 2 : k;
        const int t3 = v3 > m || v3 != v3;
        m = t3 ? v3 : m, xm = t3 ? x3 : xm, k = t3 ? 3 : k;
        o[ox] = m > 0.0f ? m : 0.0f;
        am[ox] = (uint8_t)k;
        px[ox] = xm;
    }
}

void batchnorm_pool_relu_apply(float *out, uint8_t *argmax, float *pooled_in, const float *inp,
                               const float *scale, const float *shift, int B, int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    uint8_t am_row[256];
    float px_row[256];
    for (int p = 0; p < B * C; p++) {
        const float s = scale[p % C], t = shift[p % C];
        const float *plane = inp + (size_t)p * H * W;
        for (int oy = 0; oy < Ho; oy++) {
            const float *r0 = plane + (size_t)(2 * oy) * W;
            size_t o = ((size_t)p * Ho + oy) * Wo;
            if (argmax && pooled_in) {
                bn_pool_row(out + o, argmax + o, pooled_in + o, r0, r0 + W, s, t, Wo);
                continue;
            }
            /* inference: the caches go to a row of stack, in pieces */
            for (int x0 = 0; x0 < Wo; x0 += 128) {
                int nx = SAC_MIN(128, Wo - x0);
                bn_pool_row(out + o + x0, am_row, px_row, r0 + 2 * x0, r0 + W + 2 * x0, s, t, nx);
            }
        }
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int N)
{
    batchnorm_relu_backward(dinp, dgamma, dbeta, dout, NULL, inp, mean, rstd, gamma, B, C, N);
}

typedef struct {
    float *dinp, *dgamma, *dbeta;
    const float *dout, *out, *inp, *mean, *rstd, *gamma, *pooled_in;
    const uint8_t *argmax;
    int B, C, H, W, N;
} BnBackTask;

static void bn_relu_backward_channels(void *arg, int c0, int c1, int chunk)
{
    (void)chunk;
    const BnBackTask *t = arg;
    const int B = t->B, C = t->C, N = t->N;
    const float *dout = t->dout, *out = t->out, *inp = t->inp;
    const double count = (double)B * N;
    for (int c = c0; c < c1; c++) {
        double sd = 0.0, sdx = 0.0;
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * N;
            bn_grad_sums(dout + off, out ? out + off : NULL, inp + off, (size_t)N, t->mean[c], &sd, &sdx);
        }
        float a, md, k;
        bn_grad_coefs(sd, sdx, count, t->gamma[c], t->rstd[c], &t->dgamma[c], &t->dbeta[c], &a, &md, &k);
        const float mu = t->mean[c];
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * N;
            const float *d = dout + off, *x = inp + off;
            float *dx = t->dinp + off;
            if (out) {
                /* relu: g = dout where out > 0 */
                const float *y = out + off;
                for (int i = 0; i < N; i++) {
                    float dv = d[i];
                    float g = y[i] > 0.0f ? dv : 0.0f;
                    dx[i] += a * (g - md - (x[i] - mu) * k);
                }
            } else {
                for (int i = 0; i < N; i++) dx[i] += a * (d[i] - md - (x[i] - mu) * k);
            }
        }
    }
}

void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *out, const float *inp, const float *mean,
                             const float *rstd, const float *gamma, int B, int C, int N)
{
    BnBackTask t = {dinp, dgamma, dbeta, dout, out, inp, mean, rstd, gamma, NULL, NULL, B, C, 0, 0, N};
    sac_parallel_for(C, BN_GRAIN, bn_relu_backward_channels, &t);
}

static void bn_pool_relu_backward_channels(void *arg, int c0, int c1, int chunk)
{
    (void)chunk;
    const BnBackTask *t = arg;
    /* The batchnorm output's gradient g is dout at each window's argmax where the pooled output
     * is positive (relu), and 0 elsewhere: its sums run over the pooled grid, with the input
     * values the forward kept there (pooled_in). */
    const int B = t->B, C = t->C, H = t->H, W = t->W;
    const int Ho = H / 2, Wo = W / 2, N = H * W, No = Ho * Wo;
    const double count = (double)B * N;
    for (int c = c0; c < c1; c++) {
        const float mu = t->mean[c];
        double sd = 0.0, sdx = 0.0;
        for (int b = 0; b < B; b++) {
            size_t q = ((size_t)b * C + c) * No;
            bn_grad_sums(t->dout + q, t->out + q, t->pooled_in + q, (size_t)No, mu, &sd, &sdx);
        }
        float a, md, k;
        bn_grad_coefs(sd, sdx, count, t->gamma[c], t->rstd[c], &t->dgamma[c], &t->dbeta[c], &a, &md, &k);
        for (int b = 0; b < B; b++) {
            size_t p = (size_t)b * C + c;
            const float *x = t->inp + p * N, *d = t->dout + p * No, *y = t->out + p * No;
            const uint8_t *am = t->argmax + p * No;
            float *dx = t->dinp + p * N;
            /* dx = a * (g - md - (x - mean) * k): the g = 0 part everywhere, then a * g at the
             * routed positions (branch-free: the mask is data, a branch would mispredict) */
            for (int i = 0; i < N; i++) dx[i] += a * (-md - (x[i] - mu) * k);
            for (int oy = 0; oy < Ho; oy++) {
                for (int ox = 0; ox < Wo; ox++) {
                    int w = oy * Wo + ox, kk = am[w];
                    float dv = d[w];
                    float g = y[w] > 0.0f ? dv : 0.0f;
                    dx[(2 * oy + (kk >> 1)) * W + 2 * ox + (kk & 1)] += a * g;
                }
            }
        }
    }
}

void batchnorm_pool_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *out, const uint8_t *argmax, const float *pooled_in,
                                  const float *inp, const float *mean, const float *rstd,
                                  const float *gamma, int B, int C, int H, int W)
{
    BnBackTask t = {dinp, dgamma, dbeta, dout, out, inp, mean, rstd, gamma, pooled_in, argmax, B, C, H, W, H * W};
    sac_parallel_for(C, BN_GRAIN, bn_pool_relu_backward_channels, &t);
}
