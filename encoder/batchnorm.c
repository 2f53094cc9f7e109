/*
 * batchnorm.c - BatchNorm2d forward (training and inference) and backward; see batchnorm.h.
 * Reference: torch.nn.BatchNorm2d (torch/nn/modules/batchnorm.py, aten batch_norm_cpu).
 * Size letters: B batch, C channels, N = H * W positions per plane.
 *
 * Channel c's values are the B planes inp[b][c][0..N). Reductions run in double, in 4 lanes
 * the compiler can vectorise, over values shifted by the channel's first value (so the
 * one-pass variance does not cancel when the mean is large against the spread).
 */
#include "batchnorm.h"

#include <math.h>
#include <stddef.h>

enum { BN_LANES = 4 };

/* s1 += sum(x - shift), s2 += sum((x - shift)^2) over n values. */
static void bn_sums(const float *x, size_t n, double shift, double *s1, double *s2)
{
    double a[BN_LANES] = {0}, q[BN_LANES] = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        for (int k = 0; k < BN_LANES; k++) {
            double v = (double)x[i + k] - shift;
            a[k] += v;
            q[k] += v * v;
        }
    }
    for (; i < n; i++) {
        double v = (double)x[i] - shift;
        a[0] += v;
        q[0] += v * v;
    }
    for (int k = 0; k < BN_LANES; k++) {
        *s1 += a[k];
        *s2 += q[k];
    }
}

/* s1 += sum(d), s2 += sum(d * (x - shift)) over n values. */
static void bn_grad_sums(const float *d, const float *x, size_t n, double shift, double *s1,
                         double *s2)
{
    double a[BN_LANES] = {0}, q[BN_LANES] = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        for (int k = 0; k < BN_LANES; k++) {
            a[k] += (double)d[i + k];
            q[k] += (double)d[i + k] * ((double)x[i + k] - shift);
        }
    }
    for (; i < n; i++) {
        a[0] += (double)d[i];
        q[0] += (double)d[i] * ((double)x[i] - shift);
    }
    for (int k = 0; k < BN_LANES; k++) {
        *s1 += a[k];
        *s2 += q[k];
    }
}

void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                       const float *beta, float *running_mean, float *running_var, int B, int C,
                       int N)
{
    double count = (double)B * N;
    for (int c = 0; c < C; c++) {
        double shift = inp[(size_t)c * N];
        double s1 = 0.0, s2 = 0.0;
        for (int b = 0; b < B; b++) bn_sums(inp + ((size_t)b * C + c) * N, (size_t)N, shift, &s1, &s2);
        double m1 = s1 / count;
        double var = s2 / count - m1 * m1; /* biased: what normalises */
        if (var < 0.0) var = 0.0;
        double mu = shift + m1;
        mean[c] = (float)mu;
        rstd[c] = (float)(1.0 / sqrt(var + (double)SAC_BN_EPS));
        if (running_mean) {
            /* torch: running = (1 - momentum) * running + momentum * batch statistic */
            double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
            running_mean[c] = (float)((1.0 - SAC_BN_MOMENTUM) * running_mean[c] + SAC_BN_MOMENTUM * mu);
            running_var[c] = (float)((1.0 - SAC_BN_MOMENTUM) * running_var[c] + SAC_BN_MOMENTUM * unbiased);
        }
    }
    /* out = (x - mean) * rstd * gamma + beta = x * s + t */
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

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int N)
{
    double count = (double)B * N;
    for (int c = 0; c < C; c++) {
        double sd = 0.0, sdx = 0.0;
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * N;
            bn_grad_sums(dout + off, inp + off, (size_t)N, mean[c], &sd, &sdx);
        }
        /* xhat = (x - mean) * rstd;  out = xhat * gamma + beta */
        double sdxhat = sdx * rstd[c];
        dbeta[c] += (float)sd;
        dgamma[c] += (float)sdxhat;
        /* dx = gamma * rstd * (dout - mean(dout) - xhat * mean(dout * xhat)) */
        float a = gamma[c] * rstd[c];
        float md = (float)(sd / count);
        float k = (float)(sdxhat / count) * rstd[c];
        float mu = mean[c];
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + c) * N;
            const float *d = dout + off, *x = inp + off;
            float *dx = dinp + off;
            for (int i = 0; i < N; i++) dx[i] += a * (d[i] - md - (x[i] - mu) * k);
        }
    }
}
