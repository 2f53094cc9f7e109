/*
 * attention.c - soft attention forward/backward, see attention.h for the equations.
 *
 * Size letters: B captions, Bi images, P positions, E encoder channels, A attention dim,
 * D hidden size.
 */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "fastmath.h"
#include "matmul.h"
#include "sac.h"
#include "threadpool.h"

void attention_project_forward(float *att1, const float *feats, const AttentionParams *p, int Bi,
                               const AttentionSizes *sz)
{
    linear_forward(att1, feats, p->enc_w, p->enc_b, Bi * sz->P, sz->E, sz->A);
}

void attention_project_backward(float *dfeats, AttentionParams *grads, const float *datt1,
                                const float *feats, const AttentionParams *p, int Bi,
                                const AttentionSizes *sz)
{
    /* forward: att1 = feats @ enc_w^T + enc_b */
    linear_backward(dfeats, grads->enc_w, grads->enc_b, datt1, feats, p->enc_w, Bi * sz->P, sz->E, sz->A);
}

size_t attention_scratch_floats(int B, const AttentionSizes *sz)
{
    /* forward: att2 (B, A), gate pre-activations (B, E)
     * backward: datt2 (B, A), dgate_pre (B, E), dalpha (B, P), de (B, P) */
    return (size_t)B * (2 * sz->A + 2 * sz->E + 2 * sz->P);
}

/* a . b over n floats in 8 independent lanes (so the compiler vectorises it without
 * reassociating a single sum), then the lanes pairwise */
static inline float dot_lanes(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
    float tail = 0.0f;
    for (; k < n; k++) tail += a[k] * b[k];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/* ---- forward: one caption per item, every caption writes only its own rows ---- */

typedef struct {
    float *zg;
    const AttentionCache *c;
    const float *feats, *att1, *att2, *gpre;
    const int *img;
    const AttentionParams *p;
    int P, E, A;
} StepForward;

static void step_forward_rows(void *ctx, int b0, int b1, int chunk)
{
    (void)chunk;
    const StepForward *w = ctx;
    const int P = w->P, E = w->E, A = w->A;
    const float *full_w = w->p->full_w, full_b = w->p->full_b[0];
    for (int b = b0; b < b1; b++) {
        const int i = w->img ? w->img[b] : b;
        const float *a1 = w->att1 + (size_t)i * P * A;
        const float *a2 = w->att2 + (size_t)b * A;
        const float *f = w->feats + (size_t)i * P * E;
        float *s = w->c->s + (size_t)b * P * A;
        float *alpha = w->c->alpha + (size_t)b * P;
        /* s = tanh(att1[img] + att2); e = s @ full_w + full_b */
        for (int q = 0; q < P; q++) {
            const float *a1q = a1 + (size_t)q * A;
            float *sq = s + (size_t)q * A;
            sac_tanh_add(sq, a1q, a2, A);
            alpha[q] = dot_lanes(sq, full_w, A) + full_b;
        }
        /* alpha = softmax(e) */
        sac_softmax_inplace(alpha, P);
        /* z = alpha @ feats; zg = sigmoid(gpre) * z */
        float *z = w->c->z + (size_t)b * E;
        sac_context(z, alpha, f, P, E);
        float *g = w->c->gate + (size_t)b * E;
        const float *gp = w->gpre + (size_t)b * E;
        float *out = w->zg + (size_t)b * E;
        for (int k = 0; k < E; k++) {
            g[k] = sac_sigmoidf(gp[k]);
            out[k] = g[k] * z[k];
        }
    }
}

void attention_step_forward(float *zg, AttentionCache *c, const float *h, const float *feats,
                            const float *att1, const int *img, const AttentionParams *p, int B,
                            const AttentionSizes *sz, float *scratch)
{
    const int E = sz->E, A = sz->A, D = sz->D;
    float *att2 = scratch;                 /* (B, A) */
    float *gpre = att2 + (size_t)B * A;    /* (B, E) */
    linear_forward(att2, h, p->dec_w, p->dec_b, B, D, A);
    linear_forward(gpre, h, p->beta_w, p->beta_b, B, D, E);
    StepForward w = {zg, c, feats, att1, att2, gpre, img, p, sz->P, E, A};
    sac_parallel_for(B, 1, step_forward_rows, &w);
}

/* ---- backward: chunks own a range of images (and so every caption of them), which makes
 * the accumulations into dfeats[img] and datt1[img] race-free and in caption order ---- */

typedef struct {
    float *datt2, *dgpre, *dalpha, *de, *dfeats, *datt1;
    const float *dzg, *dalpha_extra, *feats;
    const AttentionCache *c;
    const int *img;
    const AttentionParams *p;
    int B, P, E, A;
} StepBackward;

static void step_backward_images(void *ctx, int i0, int i1, int chunk)
{
    (void)chunk;
    const StepBackward *w = ctx;
    const int P = w->P, E = w->E, A = w->A;
    const AttentionCache *c = w->c;
    const float *full_w = w->p->full_w;
    for (int b = 0; b < w->B; b++) {
        const int i = w->img ? w->img[b] : b;
        if (i < i0 || i >= i1) continue;
        const float *f = w->feats + (size_t)i * P * E;
        const float *z = c->z + (size_t)b * E;
        const float *g = c->gate + (size_t)b * E;
        const float *dzgb = w->dzg + (size_t)b * E;
        const float *alpha = c->alpha + (size_t)b * P;
        const float *s = c->s + (size_t)b * P * A;
        float *dz = w->dgpre + (size_t)b * E; /* dz first, then overwritten by dgpre below */
        float *da = w->dalpha + (size_t)b * P;
        /* zg = gate * z, gate = sigmoid(gpre) */
        for (int k = 0; k < E; k++) dz[k] = dzgb[k] * g[k];
        /* z = sum_q alpha_q f_q: dalpha_q = dz . f_q; dfeats_q += alpha_q * dz */
        for (int q = 0; q < P; q++) {
            da[q] = dot_lanes(dz, f + (size_t)q * E, E);
        }
        if (w->dfeats) {
            float *df = w->dfeats + (size_t)i * P * E;
            for (int q = 0; q < P; q++) {
                const float aq = alpha[q];
                float *dfq = df + (size_t)q * E;
                for (int k = 0; k < E; k++) dfq[k] += aq * dz[k];
            }
        }
        for (int k = 0; k < E; k++) {
            float dg = dzgb[k] * z[k];
            dz[k] = dg * g[k] * (1.0f - g[k]); /* now dgpre */
        }
        if (w->dalpha_extra)
            for (int q = 0; q < P; q++) da[q] += w->dalpha_extra[(size_t)b * P + q];
        /* alpha = softmax(e): de_q = alpha_q (dalpha_q - sum_r alpha_r dalpha_r) */
        float dot = 0.0f;
        for (int q = 0; q < P; q++) dot += alpha[q] * da[q];
        float *deb = w->de + (size_t)b * P;
        for (int q = 0; q < P; q++) deb[q] = alpha[q] * (da[q] - dot);
        /* e = s @ full_w + full_b; s = tanh(att1 + att2) */
        float *da2 = w->datt2 + (size_t)b * A;
        for (int k = 0; k < A; k++) da2[k] = 0.0f;
        float *dst = w->datt1 ? w->datt1 + (size_t)i * P * A : NULL;
        for (int q = 0; q < P; q++) {
            const float *sq = s + (size_t)q * A;
            const float eq = deb[q];
            if (dst) {
                float *dq = dst + (size_t)q * A;
                for (int k = 0; k < A; k++) {
                    const float v = eq * full_w[k] * (1.0f - sq[k] * sq[k]);
                    dq[k] += v;
                    da2[k] += v;
                }
            } else {
                for (int k = 0; k < A; k++) da2[k] += eq * full_w[k] * (1.0f - sq[k] * sq[k]);
            }
        }
    }
}

void attention_step_backward_rows(float *datt2, float *dgpre, float *dfeats, float *datt1, AttentionParams *grads,
                                  const float *dzg, const float *dalpha_extra, const AttentionCache *c,
                                  const float *feats, const int *img, const AttentionParams *p, int B,
                                  const AttentionSizes *sz, float *scratch)
{
    const int P = sz->P, A = sz->A;
    float *dalpha = scratch;                     /* (B, P) */
    float *de = dalpha + (size_t)B * P;          /* (B, P) */
    int n_images = 0;
    for (int b = 0; b < B; b++) n_images = SAC_MAX(n_images, (img ? img[b] : b) + 1);
    StepBackward w = {datt2, dgpre, dalpha, de, dfeats, datt1, dzg, dalpha_extra, feats, c, img, p, B, P, sz->E, A};
    sac_parallel_for(n_images, 1, step_backward_images, &w);
    /* full_w and full_b: sum over every (caption, position) row of de * s */
    float dfull_b = 0.0f;
    for (int i = 0; i < B * P; i++) dfull_b += de[i];
    grads->full_b[0] += dfull_b;
    sac_gemv(1, B * P, A, 1.0f, c->s, A, de, 1.0f, grads->full_w);
}

void attention_step_backward(float *dh, float *dfeats, float *datt1, AttentionParams *grads,
                             const float *dzg, const float *dalpha_extra, const AttentionCache *c,
                             const float *h, const float *feats, const int *img,
                             const AttentionParams *p, int B, const AttentionSizes *sz, float *scratch)
{
    const int E = sz->E, A = sz->A, D = sz->D;
    float *datt2 = scratch;                      /* (B, A) */
    float *dgpre = datt2 + (size_t)B * A;        /* (B, E) */
    float *rest = dgpre + (size_t)B * E;         /* (2 B P) */
    attention_step_backward_rows(datt2, dgpre, dfeats, datt1, grads, dzg, dalpha_extra, c, feats, img, p, B, sz,
                                 rest);
    /* att2 = h @ dec_w^T + dec_b; gpre = h @ beta_w^T + beta_b */
    linear_backward(dh, grads->dec_w, grads->dec_b, datt2, h, p->dec_w, B, D, A);
    linear_backward(dh, grads->beta_w, grads->beta_b, dgpre, h, p->beta_w, B, D, E);
}

double attention_penalty(float *dalpha, const float *alpha_sum, int B, int P, float scale)
{
    /* pen = sum_bp (1 - alpha_sum_bp)^2, alpha_sum_bp = sum_t alpha_tbp */
    double pen = 0.0;
    for (size_t i = 0; i < (size_t)B * P; i++) {
        double r = 1.0 - alpha_sum[i];
        pen += r * r;
        if (dalpha) dalpha[i] = (float)(-2.0 * scale * r);
    }
    return pen;
}
