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
    /* forward: att2 (B,A), gate pre-activations (B,E)
     * backward: dpre (P,A) one caption at a time, datt2 (B,A), dgate_pre (B,E), dalpha (B,P), de (B,P) */
    return (size_t)sz->P * sz->A + (size_t)B * (2 * sz->A + 2 * sz->E + 2 * sz->P);
}

void attention_step_forward(float *zg, AttentionCache *c, const float *h, const float *feats,
                            const float *att1, const int *img, const AttentionParams *p, int B,
                            const AttentionSizes *sz, float *scratch)
{
    const int P = sz->P, E = sz->E, A = sz->A, D = sz->D;
    float *att2 = scratch;                 /* (B, A) */
    float *gpre = att2 + (size_t)B * A;    /* (B, E) */
    linear_forward(att2, h, p->dec_w, p->dec_b, B, D, A);
    linear_forward(gpre, h, p->beta_w, p->beta_b, B, D, E);
    /* s = tanh(att1[img] + att2) */
    for (int b = 0; b < B; b++) {
        const float *a1 = att1 + (size_t)(img ? img[b] : b) * P * A;
        const float *a2 = att2 + (size_t)b * A;
        float *s = c->s + (size_t)b * P * A;
        for (int q = 0; q < P; q++)
            for (int k = 0; k < A; k++) s[(size_t)q * A + k] = sac_tanhf(a1[(size_t)q * A + k] + a2[k]);
    }
    /* e = s @ full_w + full_b, for all B * P rows at once */
    for (int i = 0; i < B * P; i++) c->alpha[i] = p->full_b[0];
    sac_gemv(0, B * P, A, 1.0f, c->s, A, p->full_w, 1.0f, c->alpha);
    for (int b = 0; b < B; b++) {
        const float *f = feats + (size_t)(img ? img[b] : b) * P * E;
        float *alpha = c->alpha + (size_t)b * P;
        /* alpha = softmax(e) */
        float emax = alpha[0];
        for (int q = 1; q < P; q++) emax = alpha[q] > emax ? alpha[q] : emax;
        float sum = 0.0f;
        for (int q = 0; q < P; q++) {
            alpha[q] = sac_expf(alpha[q] - emax);
            sum += alpha[q];
        }
        const float inv = 1.0f / sum;
        for (int q = 0; q < P; q++) alpha[q] *= inv;
        /* z = alpha @ feats; zg = sigmoid(gpre) * z */
        float *z = c->z + (size_t)b * E;
        sac_gemm(0, 0, 1, E, P, 1.0f, alpha, P, f, E, 0.0f, z, E);
        float *g = c->gate + (size_t)b * E;
        const float *gp = gpre + (size_t)b * E;
        float *out = zg + (size_t)b * E;
        for (int k = 0; k < E; k++) {
            g[k] = sac_sigmoidf(gp[k]);
            out[k] = g[k] * z[k];
        }
    }
}

void attention_step_backward(float *dh, float *dfeats, float *datt1, AttentionParams *grads,
                             const float *dzg, const float *dalpha_extra, const AttentionCache *c,
                             const float *h, const float *feats, const int *img,
                             const AttentionParams *p, int B, const AttentionSizes *sz, float *scratch)
{
    const int P = sz->P, E = sz->E, A = sz->A, D = sz->D;
    float *dpb = scratch;                        /* (P, A) d(att1 + att2) of one caption */
    float *datt2 = dpb + (size_t)P * A;          /* (B, A) */
    float *dgpre = datt2 + (size_t)B * A;        /* (B, E) */
    float *dalpha = dgpre + (size_t)B * E;       /* (B, P) */
    float *de = dalpha + (size_t)B * P;          /* (B, P) */
    float dfull_b = 0.0f;
    for (int b = 0; b < B; b++) {
        int i = img ? img[b] : b;
        const float *f = feats + (size_t)i * P * E;
        const float *z = c->z + (size_t)b * E;
        const float *g = c->gate + (size_t)b * E;
        const float *dzgb = dzg + (size_t)b * E;
        const float *alpha = c->alpha + (size_t)b * P;
        const float *s = c->s + (size_t)b * P * A;
        float *dz = dgpre + (size_t)b * E; /* dz first, then overwritten by dgpre below */
        float *da = dalpha + (size_t)b * P;
        /* zg = gate * z, gate = sigmoid(gpre) */
        for (int k = 0; k < E; k++) dz[k] = dzgb[k] * g[k];
        /* z = sum_q alpha_q f_q: dalpha_q = dz . f_q; dfeats_q += alpha_q * dz */
        sac_gemm(0, 1, 1, P, E, 1.0f, dz, E, f, E, 0.0f, da, P);
        if (dfeats) sac_gemm(1, 0, P, E, 1, 1.0f, alpha, P, dz, E, 1.0f, dfeats + (size_t)i * P * E, E);
        for (int k = 0; k < E; k++) {
            float dg = dzgb[k] * z[k];
            dz[k] = dg * g[k] * (1.0f - g[k]); /* now dgpre */
        }
        if (dalpha_extra)
            for (int q = 0; q < P; q++) da[q] += dalpha_extra[(size_t)b * P + q];
        /* alpha = softmax(e): de_q = alpha_q (dalpha_q - sum_r alpha_r dalpha_r) */
        float dot = 0.0f;
        for (int q = 0; q < P; q++) dot += alpha[q] * da[q];
        float *deb = de + (size_t)b * P;
        for (int q = 0; q < P; q++) deb[q] = alpha[q] * (da[q] - dot);
        /* e = s @ full_w + full_b; s = tanh(att1 + att2) */
        float *da2 = datt2 + (size_t)b * A;
        memset(da2, 0, sizeof(float) * A);
        for (int q = 0; q < P; q++) {
            const float *sq = s + (size_t)q * A;
            float *dq = dpb + (size_t)q * A;
            const float eq = deb[q];
            for (int k = 0; k < A; k++) {
                const float v = eq * p->full_w[k] * (1.0f - sq[k] * sq[k]);
                dq[k] = v;
                da2[k] += v;
            }
        }
        if (datt1) {
            float *dst = datt1 + (size_t)i * P * A;
            for (size_t k = 0; k < (size_t)P * A; k++) dst[k] += dpb[k];
        }
    }
    /* full_w and full_b: sum over every (caption, position) row of de * s */
    for (int i = 0; i < B * P; i++) dfull_b += de[i];
    grads->full_b[0] += dfull_b;
    sac_gemv(1, B * P, A, 1.0f, c->s, A, de, 1.0f, grads->full_w);
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
