/*
 * fastmath.c - the loops over fastmath.h's functions that decoding and training spend their time
 * in, compiled once per kernel path (common/cpu.h) so that the x86-64 baseline build runs them
 * 8 or 16 lanes wide where the CPU can. Each path sums in the same order (8 partial sums, then
 * the tail); paths differ only where AVX2/AVX-512 fuse a multiply and an add.
 */
#include "fastmath.h"

#include "cpu.h"

static inline SAC_ALWAYS_INLINE void tanh_dot_body(float *out, const float *a, const float *b, const float *w,
                                                   int n)
{
    float acc[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += sac_tanhf(a[k + j] + b[k + j]) * w[k + j];
    float e = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; k < n; k++) e += sac_tanhf(a[k] + b[k]) * w[k];
    *out = e;
}
SAC_CLONES(tanh_dot, (float *out, const float *a, const float *b, const float *w, int n), (out, a, b, w, n))
typedef void (*TanhDotFn)(float *out, const float *a, const float *b, const float *w, int n);
static const TanhDotFn tanh_dot_fns[] = SAC_KERNEL_TABLE(tanh_dot);

float sac_tanh_dot(const float *a, const float *b, const float *w, int n)
{
    float e;
    tanh_dot_fns[sac_kernel()](&e, a, b, w, n);
    return e;
}

static inline SAC_ALWAYS_INLINE void tanh_add_body(float *y, const float *a, const float *b, int n)
{
    for (int k = 0; k < n; k++) y[k] = sac_tanhf(a[k] + b[k]);
}
SAC_CLONES(tanh_add, (float *y, const float *a, const float *b, int n), (y, a, b, n))
typedef void (*TanhAddFn)(float *y, const float *a, const float *b, int n);
static const TanhAddFn tanh_add_fns[] = SAC_KERNEL_TABLE(tanh_add);

void sac_tanh_add(float *y, const float *a, const float *b, int n) { tanh_add_fns[sac_kernel()](y, a, b, n); }

static inline SAC_ALWAYS_INLINE void context_body(float *z, const float *alpha, const float *feat, int P, int E)
{
    for (int k = 0; k < E; k++) z[k] = 0.0f;
    for (int q = 0; q < P; q++) {
        const float aq = alpha[q];
        const float *fq = feat + (size_t)q * E;
        for (int k = 0; k < E; k++) z[k] += aq * fq[k];
    }
}
SAC_CLONES(context, (float *z, const float *alpha, const float *feat, int P, int E), (z, alpha, feat, P, E))
typedef void (*ContextFn)(float *z, const float *alpha, const float *feat, int P, int E);
static const ContextFn context_fns[] = SAC_KERNEL_TABLE(context);

void sac_context(float *z, const float *alpha, const float *feat, int P, int E)
{
    context_fns[sac_kernel()](z, alpha, feat, P, E);
}

static inline SAC_ALWAYS_INLINE void mul_sigmoid_body(float *z, const float *g, int n)
{
    for (int k = 0; k < n; k++) z[k] *= sac_sigmoidf(g[k]);
}
SAC_CLONES(mul_sigmoid, (float *z, const float *g, int n), (z, g, n))
typedef void (*MulSigmoidFn)(float *z, const float *g, int n);
static const MulSigmoidFn mul_sigmoid_fns[] = SAC_KERNEL_TABLE(mul_sigmoid);

void sac_mul_sigmoid(float *z, const float *g, int n) { mul_sigmoid_fns[sac_kernel()](z, g, n); }
