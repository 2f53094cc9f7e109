/*
 * test_encoder.c - the convolutional encoder: each layer against a direct computation and by
 * finite differences, batchnorm's running statistics by hand, the whole encoder by finite
 * differences, the folded inference encoder against the training graph, and the committed
 * PyTorch reference (tests/pyref/make_encoder_ref.py -> tests/data/encoder_ref.safetensors).
 *
 * Size letters: B batch, C channels, OC output channels, H W spatial, N positions per plane,
 * P grid positions, E encoder channels.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "checkrun.h"
#include "conv2d.h"
#include "encoder.h"
#include "maxpool.h"
#include "relu.h"
#include "rng.h"
#include "sac.h"
#include "saccade_config.h"
#include "testutil.h"

static float *falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static float *fcopy(const float *x, size_t n)
{
    float *y = falloc(n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

/* ---- conv2d ------------------------------------------------------------------------------- */

typedef struct {
    float *out, *scratch, *inp, *w, *b, *dout;
    int B, C, H, W, OC, stride;
    size_t n_in, n_w, n_out;
} ConvCtx;

static void conv_ctx_init(ConvCtx *c, int B, int C, int H, int W, int OC, int stride, int bias, SacRng *rng)
{
    memset(c, 0, sizeof(*c));
    c->B = B, c->C = C, c->H = H, c->W = W, c->OC = OC, c->stride = stride;
    int Ho = conv2d_out_size(H, stride), Wo = conv2d_out_size(W, stride);
    c->n_in = (size_t)B * C * H * W;
    c->n_w = (size_t)OC * C * 9;
    c->n_out = (size_t)B * OC * Ho * Wo;
    c->out = falloc(c->n_out);
    c->dout = falloc(c->n_out);
    c->inp = falloc(c->n_in);
    c->w = falloc(c->n_w);
    c->b = bias ? falloc(OC) : NULL;
    c->scratch = falloc(conv2d_scratch_floats(B, C, H, W, OC, stride));
    float ws = 1.0f / sqrtf((float)C * 9); /* outputs of order 1 */
    fill_uniform(c->inp, c->n_in, -1, 1, rng);
    fill_uniform(c->w, c->n_w, -ws, ws, rng);
    if (bias) fill_uniform(c->b, OC, -1, 1, rng);
    fill_uniform(c->dout, c->n_out, -1, 1, rng);
}

static void conv_ctx_free(ConvCtx *c)
{
    free(c->out), free(c->dout), free(c->inp), free(c->w), free(c->b), free(c->scratch);
}

static double conv_loss(void *p)
{
    ConvCtx *c = p;
    conv2d_forward(c->out, c->scratch, c->inp, c->w, c->b, c->B, c->C, c->H, c->W, c->OC, c->stride);
    return dot_double(c->out, c->dout, c->n_out);
}

/* Shapes that reach every tiling path: small images grouped several to a tile (with a partial
 * last group), images split into bands of rows (stride 1: the row-split column matrix, one band
 * or several, with a partial last band; stride 2: the full one), odd sides, 1 or 2 rows. */
static const int conv_shapes[][7] = {
    /* B, C, H, W, OC, stride, bias */
    {2, 3, 7, 6, 4, 1, 1},    {2, 3, 7, 6, 4, 2, 1},   {1, 3, 16, 16, 5, 2, 0},
    {5, 128, 8, 8, 8, 1, 1},  {1, 128, 21, 20, 4, 1, 0}, {3, 130, 9, 9, 3, 2, 1},
    {2, 32, 33, 31, 6, 2, 1}, {1, 3, 1, 1, 2, 1, 1},  {1, 3, 7, 6, 4, 1, 1},
    {2, 64, 30, 30, 3, 1, 1}, {1, 4, 2, 9, 3, 1, 1},
    {2, 5, 17, 16, 64, 1, 1}, {1, 64, 16, 17, 70, 1, 0}, /* Winograd input gradients, and both */
    {2, 32, 12, 11, 5, 1, 1}, {1, 48, 10, 9, 13, 1, 0},  /* Winograd forwards from 32 channels; a
                                                           * partial block of output channels and
                                                           * a partial last panel of tiles */
    {3, 32, 9, 13, 40, 1, 1}, {2, 40, 4, 3, 16, 1, 0},   /* Winograd weight gradients: odd sides,
                                                           * partial blocks of both channels */
    {1, 32, 3, 261, 16, 1, 1}, /* rows of several segments of 64 tiles, one inside the image */
};

START_TEST(test_conv2d_matches_direct)
{
    SacRng rng;
    sac_rng_seed(&rng, 10, 1);
    for (size_t s = 0; s < sizeof(conv_shapes) / sizeof(conv_shapes[0]); s++) {
        const int *d = conv_shapes[s];
        ConvCtx c;
        conv_ctx_init(&c, d[0], d[1], d[2], d[3], d[4], d[5], d[6], &rng);
        float *ref = falloc(c.n_out);
        conv2d_forward_ref(ref, c.inp, c.w, c.b, c.B, c.C, c.H, c.W, c.OC, c.stride);
        conv2d_forward(c.out, c.scratch, c.inp, c.w, c.b, c.B, c.C, c.H, c.W, c.OC, c.stride);
        char name[64];
        snprintf(name, sizeof(name), "conv2d %dx%dx%dx%d->%d s%d", c.B, c.C, c.H, c.W, c.OC, c.stride);
        /* float sums of up to 1170 products of order 1/sqrt(K): ~1e-6 */
        ck_assert_int_eq(check_tensor(name, c.out, ref, c.n_out, 1e-5, 1e-4), 0);
        /* the fused ReLU variant is max(0, conv) */
        for (size_t i = 0; i < c.n_out; i++) ref[i] = ref[i] > 0.0f ? ref[i] : 0.0f;
        conv2d_relu_forward(c.out, c.scratch, c.inp, c.w, NULL, c.b, c.B, c.C, c.H, c.W, c.OC, c.stride);
        ck_assert_int_eq(check_tensor("conv2d_relu", c.out, ref, c.n_out, 1e-5, 1e-4), 0);
        /* with the weight prepared beforehand, output channels scaled (batchnorm folding): the
         * forward then reads only the prepared weights */
        const size_t np = conv2d_prepared_floats(c.C, c.OC, c.stride);
        float *ws = falloc(np + 1), *scale = falloc(c.OC), *wsc = falloc(c.n_w);
        for (int o = 0; o < c.OC; o++) scale[o] = 0.5f + 0.25f * (o % 3);
        for (size_t i = 0; i < c.n_w; i++) wsc[i] = c.w[i] * scale[i / (c.n_w / c.OC)];
        conv2d_prepare(ws, c.w, scale, c.C, c.OC, c.stride);
        conv2d_forward_ref(ref, c.inp, wsc, c.b, c.B, c.C, c.H, c.W, c.OC, c.stride);
        for (size_t i = 0; i < c.n_out; i++) ref[i] = ref[i] > 0.0f ? ref[i] : 0.0f;
        memset(c.out, 0, sizeof(float) * c.n_out);
        conv2d_relu_forward(c.out, c.scratch, c.inp, np ? NULL : wsc, np ? ws : NULL, c.b, c.B, c.C, c.H, c.W, c.OC,
                            c.stride);
        ck_assert_int_eq(check_tensor("conv2d_relu, prepared scaled weight", c.out, ref, c.n_out, 1e-5, 1e-4), 0);
        free(ws), free(scale), free(wsc);
        free(ref);
        conv_ctx_free(&c);
    }
}
END_TEST

START_TEST(test_conv2d_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 11, 1);
    for (size_t s = 0; s < sizeof(conv_shapes) / sizeof(conv_shapes[0]); s++) {
        const int *d = conv_shapes[s];
        ConvCtx c;
        conv_ctx_init(&c, d[0], d[1], d[2], d[3], d[4], d[5], d[6], &rng);
        float *dinp = falloc(c.n_in), *dw = falloc(c.n_w), *db = falloc(c.OC);
        conv2d_forward(c.out, c.scratch, c.inp, c.w, c.b, c.B, c.C, c.H, c.W, c.OC, c.stride);
        conv2d_backward(dinp, dw, c.b ? db : NULL, c.scratch, c.dout, c.inp, c.w, c.B, c.C, c.H, c.W, c.OC,
                        c.stride);
        char name[64];
        int bad = 0;
        /* the loss is linear in each tensor: central differences are exact up to the float
         * rounding of L (a sum of up to 1600 terms), divided by 2 eps */
        snprintf(name, sizeof(name), "conv2d[%zu].inp", s);
        bad += gradcheck(name, c.inp, dinp, c.n_in, conv_loss, &c, 150, 1e-2, 1e-3, 1e-4, &rng);
        snprintf(name, sizeof(name), "conv2d[%zu].weight", s);
        bad += gradcheck(name, c.w, dw, c.n_w, conv_loss, &c, 150, 1e-2, 1e-3, 1e-4, &rng);
        if (c.b) {
            snprintf(name, sizeof(name), "conv2d[%zu].bias", s);
            bad += gradcheck(name, c.b, db, c.OC, conv_loss, &c, 150, 1e-2, 1e-3, 1e-4, &rng);
        }
        ck_assert_int_eq(bad, 0);
        /* dinp = NULL skips the input gradient and leaves the others alone; backward accumulates */
        float *dw2 = fcopy(dw, c.n_w), *db2 = fcopy(db, c.OC);
        conv2d_backward(NULL, dw2, c.b ? db2 : NULL, c.scratch, c.dout, c.inp, c.w, c.B, c.C, c.H, c.W, c.OC,
                        c.stride);
        for (size_t i = 0; i < c.n_w; i++) ck_assert_float_eq_tol(dw2[i], 2 * dw[i], 1e-5 + 1e-5 * fabsf(dw[i]));
        for (int i = 0; c.b && i < c.OC; i++) ck_assert_float_eq_tol(db2[i], 2 * db[i], 1e-5 + 1e-5 * fabsf(db[i]));
        free(dinp), free(dw), free(db), free(dw2), free(db2);
        conv_ctx_free(&c);
    }
}
END_TEST

/* ---- batchnorm ---------------------------------------------------------------------------- */

typedef struct {
    float *out, *mean, *rstd, *inp, *gamma, *beta, *dout;
    int B, C, N;
} BnCtx;

static double bn_loss(void *p)
{
    BnCtx *c = p;
    batchnorm_forward(c->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, NULL, NULL, c->B, c->C, c->N);
    return dot_double(c->out, c->dout, (size_t)c->B * c->C * c->N);
}

START_TEST(test_batchnorm_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 12, 1);
    BnCtx c = {.B = 3, .C = 4, .N = 15};
    size_t n = (size_t)c.B * c.C * c.N;
    c.out = falloc(n), c.inp = falloc(n), c.dout = falloc(n);
    c.mean = falloc(c.C), c.rstd = falloc(c.C), c.gamma = falloc(c.C), c.beta = falloc(c.C);
    fill_uniform(c.inp, n, -2, 3, &rng); /* a nonzero mean */
    fill_uniform(c.gamma, c.C, 0.5f, 1.5f, &rng);
    fill_uniform(c.beta, c.C, -0.5f, 0.5f, &rng);
    fill_uniform(c.dout, n, -1, 1, &rng);
    float *dinp = falloc(n), *dg = falloc(c.C), *dbeta = falloc(c.C);
    bn_loss(&c);
    batchnorm_backward(dinp, dg, dbeta, c.dout, c.inp, c.mean, c.rstd, c.gamma, c.B, c.C, c.N);
    int bad = 0;
    /* nonlinear in inp: eps 1e-2 leaves a second-order error ~1e-4 of the spread, far below 5e-3 */
    bad += gradcheck("batchnorm.inp", c.inp, dinp, n, bn_loss, &c, 200, 1e-2, 5e-3, 1e-4, &rng);
    bad += gradcheck("batchnorm.gamma", c.gamma, dg, c.C, bn_loss, &c, 200, 1e-2, 1e-3, 1e-4, &rng);
    bad += gradcheck("batchnorm.beta", c.beta, dbeta, c.C, bn_loss, &c, 200, 1e-2, 1e-3, 1e-4, &rng);
    ck_assert_int_eq(bad, 0);
    /* sum of dx over a channel is 0 (the mean is subtracted) */
    for (int ch = 0; ch < c.C; ch++) {
        double s = 0.0;
        for (int b = 0; b < c.B; b++)
            for (int i = 0; i < c.N; i++) s += dinp[((size_t)b * c.C + ch) * c.N + i];
        ck_assert_double_eq_tol(s, 0.0, 1e-4);
    }
    free(c.out), free(c.inp), free(c.dout), free(c.mean), free(c.rstd), free(c.gamma), free(c.beta);
    free(dinp), free(dg), free(dbeta);
}
END_TEST

START_TEST(test_batchnorm_running_stats_by_hand)
{
    /* B = 2, C = 2, N = 3: channel 0 holds 1..6, channel 1 holds 10,10,10,10,10,12 */
    const float inp[12] = {1, 2, 3, 10, 10, 10, 4, 5, 6, 10, 10, 12};
    const float gamma[2] = {2.0f, 0.5f}, beta[2] = {0.25f, -1.0f};
    float rm[2] = {0.5f, 0.0f}, rv[2] = {2.0f, 1.0f};
    float out[12], mean[2], rstd[2];
    batchnorm_forward(out, mean, rstd, inp, gamma, beta, rm, rv, 2, 2, 3);
    /* channel 0: mean 3.5, biased var 17.5/6, unbiased 3.5;
     * channel 1: mean 31/3, biased var 5/9, unbiased 2/3 */
    const double mu[2] = {3.5, 31.0 / 3.0}, var[2] = {17.5 / 6.0, 5.0 / 9.0};
    ck_assert_double_eq_tol(rm[0], 0.9 * 0.5 + 0.1 * 3.5, 1e-6);
    ck_assert_double_eq_tol(rv[0], 0.9 * 2.0 + 0.1 * 3.5, 1e-6);
    ck_assert_double_eq_tol(rm[1], 0.9 * 0.0 + 0.1 * (31.0 / 3.0), 1e-6);
    ck_assert_double_eq_tol(rv[1], 0.9 * 1.0 + 0.1 * (2.0 / 3.0), 1e-6);
    for (int b = 0; b < 2; b++) {
        for (int ch = 0; ch < 2; ch++) {
            ck_assert_double_eq_tol(mean[ch], mu[ch], 1e-6);
            ck_assert_double_eq_tol(rstd[ch], 1.0 / sqrt(var[ch] + 1e-5), 1e-5);
            for (int i = 0; i < 3; i++) {
                int k = (b * 2 + ch) * 3 + i;
                double want = (inp[k] - mu[ch]) / sqrt(var[ch] + 1e-5) * gamma[ch] + beta[ch];
                ck_assert_double_eq_tol(out[k], want, 1e-5);
            }
        }
    }
    /* inference: the running statistics normalise */
    batchnorm_infer_forward(out, inp, gamma, beta, rm, rv, 2, 2, 3);
    for (int k = 0; k < 12; k++) {
        int ch = (k / 3) % 2;
        double want = (inp[k] - rm[ch]) / sqrt((double)rv[ch] + 1e-5) * gamma[ch] + beta[ch];
        ck_assert_double_eq_tol(out[k], want, 1e-5);
    }
    /* a large mean against a small spread: the shifted one-pass variance does not cancel */
    float big[8] = {1000.0f, 1000.5f, 999.5f, 1000.0f, 1000.25f, 999.75f, 1000.0f, 1000.0f};
    float o8[8], m1, r1;
    batchnorm_forward(o8, &m1, &r1, big, gamma, beta, NULL, NULL, 1, 1, 8);
    double bm = 0.0, bv = 0.0;
    for (int i = 0; i < 8; i++) bm += big[i] / 8.0;
    for (int i = 0; i < 8; i++) bv += (big[i] - bm) * (big[i] - bm) / 8.0;
    ck_assert_double_eq_tol(m1, bm, 1e-4);
    ck_assert_double_eq_tol(r1, 1.0 / sqrt(bv + 1e-5), 1e-4 / sqrt(bv));
}
END_TEST

/* The fused batchnorm -> relu [-> maxpool] forms equal the composition of the layer functions,
 * forward (values, and argmax wherever the output is positive: elsewhere the composition's
 * window is all ReLU zeros, whose "first max" carries no gradient) and backward. */
START_TEST(test_batchnorm_fused_matches_composition)
{
    SacRng rng;
    sac_rng_seed(&rng, 15, 1);
    const int B = 3, C = 5, H = 7, W = 9, Ho = H / 2, Wo = W / 2, N = H * W;
    const size_t n = (size_t)B * C * N, np = (size_t)B * C * Ho * Wo;
    float *x = falloc(n), *y = falloc(n), *r = falloc(n), *dy = falloc(n), *dbn = falloc(n);
    float *dx1 = falloc(n), *dx2 = falloc(n), *pool1 = falloc(np), *pool2 = falloc(np), *dp = falloc(np);
    float mean[5], rstd[5], gamma[5], beta[5], scale[5], shift[5], m2[5], s2[5];
    float dg1[5] = {0}, db1[5] = {0}, dg2[5] = {0}, db2[5] = {0};
    uint8_t *a1 = malloc(np), *a2 = malloc(np);
    fill_uniform(x, n, -2, 3, &rng);
    fill_uniform(gamma, C, -1.5f, 1.5f, &rng); /* negative scales too: the max of bn is not bn of the max */
    fill_uniform(beta, C, -0.5f, 0.5f, &rng);
    fill_uniform(dy, n, -1, 1, &rng);
    fill_uniform(dp, np, -1, 1, &rng);

    /* unpooled: relu(bn(x)) */
    batchnorm_forward(y, mean, rstd, x, gamma, beta, NULL, NULL, B, C, N);
    relu_forward(r, y, n);
    batchnorm_stats(m2, s2, x, NULL, NULL, B, C, N);
    ck_assert_mem_eq(m2, mean, sizeof(mean));
    ck_assert_mem_eq(s2, rstd, sizeof(rstd));
    batchnorm_affine(scale, shift, mean, rstd, gamma, beta, C);
    batchnorm_relu_apply(y, x, scale, shift, B, C, N);
    ck_assert_mem_eq(y, r, sizeof(float) * n);
    relu_backward(dbn, dy, r, n);
    batchnorm_backward(dx1, dg1, db1, dbn, x, mean, rstd, gamma, B, C, N);
    batchnorm_relu_backward(dx2, dg2, db2, dy, r, x, mean, rstd, gamma, B, C, N);
    int bad = 0;
    bad += check_tensor("bn_relu dx", dx2, dx1, n, 1e-6, 1e-5);
    bad += check_tensor("bn_relu dgamma", dg2, dg1, C, 1e-6, 1e-5);
    bad += check_tensor("bn_relu dbeta", db2, db1, C, 1e-6, 1e-5);

    /* pooled: maxpool(relu(bn(x))) in torch's order */
    batchnorm_forward(y, mean, rstd, x, gamma, beta, NULL, NULL, B, C, N);
    relu_forward(r, y, n);
    maxpool_forward(pool1, a1, r, B * C, H, W);
    float *pin = falloc(np);
    batchnorm_pool_relu_apply(pool2, a2, pin, x, scale, shift, B, C, H, W);
    ck_assert_mem_eq(pool2, pool1, sizeof(float) * np);
    for (size_t i = 0; i < np; i++) {
        /* pooled_in is the input at the argmax */
        size_t plane = i / (Ho * Wo), oy = i % (Ho * Wo) / Wo, ox = i % Wo;
        ck_assert_float_eq(pin[i], x[plane * N + (2 * oy + (a2[i] >> 1)) * W + 2 * ox + (a2[i] & 1)]);
    }
    /* without the caches (inference): the same values */
    memset(pool2, 0, sizeof(float) * np);
    batchnorm_pool_relu_apply(pool2, NULL, NULL, x, scale, shift, B, C, H, W);
    ck_assert_mem_eq(pool2, pool1, sizeof(float) * np);
    int positive = 0;
    for (size_t i = 0; i < np; i++) {
        if (pool1[i] > 0.0f) {
            ck_assert_int_eq(a2[i], a1[i]);
            positive++;
        }
    }
    ck_assert_int_gt(positive, (int)np / 4);
    ck_assert_int_lt(positive, (int)np);
    memset(dbn, 0, sizeof(float) * n);
    memset(dx1, 0, sizeof(float) * n), memset(dx2, 0, sizeof(float) * n);
    memset(dg1, 0, sizeof(dg1)), memset(db1, 0, sizeof(db1)), memset(dg2, 0, sizeof(dg2)), memset(db2, 0, sizeof(db2));
    float *dr = falloc(n);
    maxpool_backward(dr, dp, a1, B * C, H, W);
    relu_backward(dbn, dr, r, n);
    batchnorm_backward(dx1, dg1, db1, dbn, x, mean, rstd, gamma, B, C, N);
    batchnorm_pool_relu_backward(dx2, dg2, db2, dp, pool2, a2, pin, x, mean, rstd, gamma, B, C, H, W);
    bad += check_tensor("bn_pool_relu dx", dx2, dx1, n, 1e-6, 1e-5);
    bad += check_tensor("bn_pool_relu dgamma", dg2, dg1, C, 1e-6, 1e-5);
    bad += check_tensor("bn_pool_relu dbeta", db2, db1, C, 1e-6, 1e-5);
    ck_assert_int_eq(bad, 0);
    free(x), free(y), free(r), free(dy), free(dbn), free(dx1), free(dx2), free(pool1), free(pool2), free(dp);
    free(dr), free(a1), free(a2), free(pin);
}
END_TEST

/* ---- relu, maxpool ------------------------------------------------------------------------ */

typedef struct {
    float *out, *inp, *dout;
    uint8_t *arg;
    int N, H, W;
    size_t n_in, n_out;
} PointCtx;

static double relu_loss(void *p)
{
    PointCtx *c = p;
    relu_forward(c->out, c->inp, c->n_in);
    return dot_double(c->out, c->dout, c->n_in);
}

START_TEST(test_relu)
{
    SacRng rng;
    sac_rng_seed(&rng, 13, 1);
    PointCtx c = {.n_in = 300};
    c.out = falloc(c.n_in), c.inp = falloc(c.n_in), c.dout = falloc(c.n_in);
    fill_away_from_zero(c.inp, c.n_in, 0.1f, 2.0f, &rng); /* |x| >= 0.1 > eps: off the kink */
    fill_uniform(c.dout, c.n_in, -1, 1, &rng);
    relu_forward(c.out, c.inp, c.n_in);
    int neg = 0;
    for (size_t i = 0; i < c.n_in; i++) {
        ck_assert_float_eq(c.out[i], c.inp[i] > 0 ? c.inp[i] : 0.0f);
        neg += c.inp[i] < 0;
    }
    ck_assert_int_gt(neg, 50);
    float *dinp = falloc(c.n_in);
    relu_backward(dinp, c.dout, c.out, c.n_in);
    ck_assert_int_eq(gradcheck("relu.inp", c.inp, dinp, c.n_in, relu_loss, &c, 300, 1e-2, 1e-4, 1e-6, &rng), 0);
    /* in place forward; the gradient at exactly 0 is 0, as torch */
    float z[3] = {-1.0f, 0.0f, 2.0f}, dz[3] = {0}, one[3] = {1, 1, 1};
    relu_forward(z, z, 3);
    relu_backward(dz, one, z, 3);
    ck_assert(z[0] == 0.0f && z[1] == 0.0f && z[2] == 2.0f);
    ck_assert(dz[0] == 0.0f && dz[1] == 0.0f && dz[2] == 1.0f);
    free(c.out), free(c.inp), free(c.dout), free(dinp);
}
END_TEST

static double pool_loss(void *p)
{
    PointCtx *c = p;
    maxpool_forward(c->out, NULL, c->inp, c->N, c->H, c->W);
    return dot_double(c->out, c->dout, c->n_out);
}

START_TEST(test_maxpool)
{
    /* by hand: one 5x5 plane (odd: the last row and column are dropped) */
    const float x[25] = {
        1, 2, 7, 7, 9, /**/ 3, 4, 7, 7, 9, /**/ 5, 5, 0, 1, 9, /**/ 5, 5, 3, 2, 9, /**/ 9, 9, 9, 9, 9,
    };
    float y[4];
    uint8_t a[4];
    maxpool_forward(y, a, x, 1, 5, 5);
    ck_assert(y[0] == 4 && y[1] == 7 && y[2] == 5 && y[3] == 3);
    /* ties go to the first max in row-major window order, as torch */
    ck_assert_int_eq(a[0], 3);
    ck_assert_int_eq(a[1], 0);
    ck_assert_int_eq(a[2], 0);
    ck_assert_int_eq(a[3], 2);
    /* a NaN wins its window, as torch (which propagates it) */
    const float xn[4] = {1.0f, NAN, 3.0f, 2.0f};
    float yn;
    uint8_t an;
    maxpool_forward(&yn, &an, xn, 1, 2, 2);
    ck_assert(isnan(yn));
    ck_assert_int_eq(an, 1);
    float dx[25] = {0};
    const float dy[4] = {1, 2, 3, 4};
    maxpool_backward(dx, dy, a, 1, 5, 5);
    ck_assert(dx[6] == 1 && dx[2] == 2 && dx[10] == 3 && dx[17] == 4);
    double sum = 0.0;
    for (int i = 0; i < 25; i++) sum += dx[i];
    ck_assert_double_eq(sum, 10.0);

    /* gradcheck on distinct values 0.05 apart: a 1e-2 perturbation cannot reorder a window */
    SacRng rng;
    sac_rng_seed(&rng, 14, 1);
    PointCtx c = {.N = 6, .H = 7, .W = 8};
    c.n_in = (size_t)c.N * c.H * c.W;
    c.n_out = (size_t)c.N * (c.H / 2) * (c.W / 2);
    c.inp = falloc(c.n_in), c.out = falloc(c.n_out), c.dout = falloc(c.n_out);
    c.arg = malloc(c.n_out);
    int *perm = malloc(sizeof(int) * c.n_in);
    for (size_t i = 0; i < c.n_in; i++) perm[i] = (int)i;
    sac_rng_shuffle(&rng, perm, (int)c.n_in);
    for (size_t i = 0; i < c.n_in; i++) c.inp[i] = 0.05f * (float)perm[i] - 8.0f;
    fill_uniform(c.dout, c.n_out, -1, 1, &rng);
    float *dinp = falloc(c.n_in);
    maxpool_forward(c.out, c.arg, c.inp, c.N, c.H, c.W);
    maxpool_backward(dinp, c.dout, c.arg, c.N, c.H, c.W);
    ck_assert_int_eq(gradcheck("maxpool.inp", c.inp, dinp, c.n_in, pool_loss, &c, 400, 1e-2, 1e-4, 1e-6, &rng), 0);
    free(c.inp), free(c.out), free(c.dout), free(c.arg), free(perm), free(dinp);
}
END_TEST

/* ---- the whole encoder -------------------------------------------------------------------- */

/* Tiny config: 16x16 -> conv 4 s2 (8x8) -> conv 6 + pool (4x4) -> conv 8 (4x4): P = 16, E = 8. */
static EncoderConfig tiny_config(int batchnorm)
{
    EncoderConfig cfg = {.image_size = 16, .n_conv = 3, .batchnorm = batchnorm};
    cfg.conv[0] = (ConvSpec){4, 2, 0};
    cfg.conv[1] = (ConvSpec){6, 1, 1};
    cfg.conv[2] = (ConvSpec){8, 1, 0};
    return cfg;
}

static EncoderConfig default_config(void)
{
    EncoderConfig cfg = {.image_size = 128, .n_conv = 5, .batchnorm = 1};
    cfg.conv[0] = (ConvSpec){32, 2, 0};
    cfg.conv[1] = (ConvSpec){64, 1, 1};
    cfg.conv[2] = (ConvSpec){128, 1, 1};
    cfg.conv[3] = (ConvSpec){256, 1, 1};
    cfg.conv[4] = (ConvSpec){256, 1, 0};
    return cfg;
}

/* Parameters in one buffer, pointed to llm.c style; the tensor list is written once here. */
typedef struct {
    float *data;
    size_t n;
    EncoderParams p;
    int n_tensors;
    float *tensor[6 * SAC_MAX_CONV];
    size_t numel[6 * SAC_MAX_CONV];
    char name[6 * SAC_MAX_CONV][32];
    int trained[6 * SAC_MAX_CONV];
} ParamBuf;

/* which: 0 weight, 1 bias, 2 bn_gamma, 3 bn_beta, 4 bn_mean, 5 bn_var */
static const char *const tensor_suffix[6] = {"weight", "bias", "gamma", "beta", "running_mean", "running_var"};

static void params_create(ParamBuf *pb, const EncoderConfig *cfg)
{
    ConvShape sh[SAC_MAX_CONV];
    ck_assert_int_eq(encoder_shapes(cfg, sh, NULL, NULL), SAC_OK);
    memset(pb, 0, sizeof(*pb));
    size_t sizes[SAC_MAX_CONV][6];
    for (int l = 0; l < cfg->n_conv; l++) {
        sizes[l][0] = (size_t)sh[l].cout * sh[l].cin * 9;
        for (int k = 1; k < 6; k++) {
            int present = k == 1 ? !cfg->batchnorm : cfg->batchnorm;
            sizes[l][k] = present ? (size_t)sh[l].cout : 0;
        }
        for (int k = 0; k < 6; k++) pb->n += sizes[l][k];
    }
    pb->data = falloc(pb->n);
    float *q = pb->data;
    for (int l = 0; l < cfg->n_conv; l++) {
        float **slot[6] = {&pb->p.conv[l].weight, &pb->p.conv[l].bias, &pb->p.conv[l].bn_gamma,
                           &pb->p.conv[l].bn_beta, &pb->p.conv[l].bn_mean, &pb->p.conv[l].bn_var};
        for (int k = 0; k < 6; k++) {
            if (!sizes[l][k]) continue;
            *slot[k] = q;
            int t = pb->n_tensors++;
            pb->tensor[t] = q;
            pb->numel[t] = sizes[l][k];
            pb->trained[t] = k < 4;
            snprintf(pb->name[t], sizeof(pb->name[t]), "%s%d.%s", k < 2 ? "conv" : "bn", l + 1, tensor_suffix[k]);
            q += sizes[l][k];
        }
    }
}

static void params_fill(ParamBuf *pb, SacRng *rng)
{
    for (int t = 0; t < pb->n_tensors; t++) {
        const char *s = strchr(pb->name[t], '.') + 1;
        if (!strcmp(s, "weight") && pb->name[t][0] == 'c') {
            fill_uniform(pb->tensor[t], pb->numel[t], -0.8f, 0.8f, rng);
        } else if (!strcmp(s, "gamma") || !strcmp(s, "running_var")) {
            fill_uniform(pb->tensor[t], pb->numel[t], 0.5f, 1.5f, rng);
        } else {
            fill_uniform(pb->tensor[t], pb->numel[t], -0.4f, 0.4f, rng);
        }
    }
}

/* Same layout pointing into another buffer (for gradients). */
static void params_like(ParamBuf *g, const ParamBuf *pb, const EncoderConfig *cfg)
{
    params_create(g, cfg);
    ck_assert_uint_eq(g->n, pb->n);
}

/* The encoder in double, straight from the definitions, in torch's order
 * conv -> [batchnorm (training: batch statistics)] -> relu -> [maxpool]: the function whose
 * derivatives the whole-encoder gradcheck takes. In double, a perturbation of 1e-6 gives central
 * differences good to ~1e-8 and almost never moves a ReLU input across 0 or reorders a pool
 * window (in float, the rounding of L forces eps ~1e-3, and with ~1500 ReLU inputs downstream of
 * a first-layer weight, a kink falls inside the step for a good share of the samples). */
static void ref_encoder_forward(double *feats, const float *images, const EncoderParams *p,
                                const EncoderConfig *cfg, int B)
{
    ConvShape sh[SAC_MAX_CONV];
    ck_assert_int_eq(encoder_shapes(cfg, sh, NULL, NULL), SAC_OK);
    size_t n0 = (size_t)B * 3 * cfg->image_size * cfg->image_size;
    double *x = malloc(sizeof(double) * n0);
    for (size_t i = 0; i < n0; i++) x[i] = images[i];
    for (int l = 0; l < cfg->n_conv; l++) {
        const ConvShape *s = &sh[l];
        const ConvLayerParams *L = &p->conv[l];
        int C = s->cin, OC = s->cout, H = s->h_in, W = s->w_in, Ho = s->h_out, Wo = s->w_out;
        int HWo = Ho * Wo;
        double *y = malloc(sizeof(double) * (size_t)B * OC * HWo);
        for (int b = 0; b < B; b++)
            for (int o = 0; o < OC; o++)
                for (int oy = 0; oy < Ho; oy++)
                    for (int ox = 0; ox < Wo; ox++) {
                        double acc = L->bias && !cfg->batchnorm ? L->bias[o] : 0.0;
                        for (int c = 0; c < C; c++)
                            for (int ky = 0; ky < 3; ky++)
                                for (int kx = 0; kx < 3; kx++) {
                                    int iy = oy * s->stride + ky - 1, ix = ox * s->stride + kx - 1;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                    acc += (double)L->weight[((o * C + c) * 3 + ky) * 3 + kx] *
                                           x[(((size_t)b * C + c) * H + iy) * W + ix];
                                }
                        y[((size_t)b * OC + o) * HWo + oy * Wo + ox] = acc;
                    }
        if (cfg->batchnorm) {
            for (int o = 0; o < OC; o++) {
                double m = 0.0, v = 0.0;
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < HWo; i++) m += y[((size_t)b * OC + o) * HWo + i];
                m /= (double)B * HWo;
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < HWo; i++) {
                        double d = y[((size_t)b * OC + o) * HWo + i] - m;
                        v += d * d;
                    }
                v /= (double)B * HWo;
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < HWo; i++) {
                        double *e = &y[((size_t)b * OC + o) * HWo + i];
                        *e = (*e - m) / sqrt(v + 1e-5) * L->bn_gamma[o] + L->bn_beta[o];
                    }
            }
        }
        for (size_t i = 0; i < (size_t)B * OC * HWo; i++) y[i] = y[i] > 0.0 ? y[i] : 0.0;
        if (s->pool) {
            int Hp = s->h_pool, Wp = s->w_pool;
            double *z = malloc(sizeof(double) * (size_t)B * OC * Hp * Wp);
            for (int n = 0; n < B * OC; n++)
                for (int py = 0; py < Hp; py++)
                    for (int px = 0; px < Wp; px++) {
                        const double *r = y + (size_t)n * HWo + (2 * py) * Wo + 2 * px;
                        z[((size_t)n * Hp + py) * Wp + px] = fmax(fmax(r[0], r[1]), fmax(r[Wo], r[Wo + 1]));
                    }
            free(y);
            y = z;
        }
        free(x);
        x = y;
    }
    const ConvShape *last = &sh[cfg->n_conv - 1];
    int P = last->h_pool * last->w_pool, E = last->cout;
    for (int b = 0; b < B; b++)
        for (int e = 0; e < E; e++)
            for (int q = 0; q < P; q++) feats[((size_t)b * P + q) * E + e] = x[((size_t)b * E + e) * P + q];
    free(x);
}

typedef struct {
    const EncoderConfig *cfg;
    ParamBuf *pb;
    float *images, *dfeats;
    double *feats;
    int B;
    size_t n_feats;
} EncCtx;

static double enc_ref_loss(void *p)
{
    EncCtx *c = p;
    ref_encoder_forward(c->feats, c->images, &c->pb->p, c->cfg, c->B);
    double L = 0.0;
    for (size_t i = 0; i < c->n_feats; i++) L += c->feats[i] * c->dfeats[i];
    return L;
}

static void run_encoder_gradcheck(int batchnorm, uint64_t seed)
{
    SacRng rng;
    sac_rng_seed(&rng, seed, 1);
    EncoderConfig cfg = tiny_config(batchnorm);
    ParamBuf pb, gb;
    params_create(&pb, &cfg);
    params_fill(&pb, &rng);
    params_like(&gb, &pb, &cfg);
    EncCtx c = {.cfg = &cfg, .pb = &pb, .B = 2};
    EncoderActs *acts = encoder_acts_create(&cfg, 3);
    ck_assert_ptr_nonnull(acts);
    size_t n_img = (size_t)c.B * 3 * 16 * 16;
    c.n_feats = (size_t)c.B * 16 * 8;
    c.images = falloc(n_img), c.dfeats = falloc(c.n_feats);
    c.feats = malloc(sizeof(double) * c.n_feats);
    float *feats = falloc(c.n_feats), *want = falloc(c.n_feats);
    fill_uniform(c.images, n_img, -1, 1, &rng);
    fill_uniform(c.dfeats, c.n_feats, -1, 1, &rng);
    /* the float encoder computes the double one's function */
    ck_assert_int_eq(encoder_forward(feats, acts, c.images, &pb.p, &cfg, c.B, 1), SAC_OK);
    ref_encoder_forward(c.feats, c.images, &pb.p, &cfg, c.B);
    for (size_t i = 0; i < c.n_feats; i++) want[i] = (float)c.feats[i];
    ck_assert_int_eq(check_tensor(batchnorm ? "encoder+bn vs double" : "encoder vs double", feats, want,
                                  c.n_feats, 1e-5, 1e-4),
                     0);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, c.dfeats, &pb.p, &cfg, c.B), SAC_OK);
    int bad = 0, checked = 0;
    for (int t = 0; t < pb.n_tensors; t++) {
        if (!pb.trained[t]) continue;
        char name[64];
        snprintf(name, sizeof(name), "encoder%s.%s", batchnorm ? "+bn" : "", pb.name[t]);
        /* the analytic side is float: ~1e-5 relative; 1e-3 leaves room for sums of hundreds */
        bad += gradcheck(name, pb.tensor[t], gb.tensor[t], pb.numel[t], enc_ref_loss, &c, 150, 1e-6, 1e-3, 1e-5, &rng);
        checked++;
    }
    ck_assert_int_eq(checked, batchnorm ? 9 : 6);
    ck_assert_int_eq(bad, 0);
    encoder_acts_free(acts);
    free(c.images), free(c.feats), free(c.dfeats), free(feats), free(want), free(pb.data), free(gb.data);
}

START_TEST(test_encoder_gradcheck_bn) { run_encoder_gradcheck(1, 20); }
END_TEST

START_TEST(test_encoder_gradcheck_plain) { run_encoder_gradcheck(0, 21); }
END_TEST

typedef struct {
    int n;
    char last[512];
} LogCapture;

static void capture_log(int level, const char *msg, void *user)
{
    (void)level;
    LogCapture *c = user;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%s", msg);
}

START_TEST(test_encoder_shapes)
{
    EncoderConfig cfg = default_config();
    ConvShape sh[SAC_MAX_CONV];
    int gh = 0, gw = 0;
    ck_assert_int_eq(encoder_shapes(&cfg, sh, &gh, &gw), SAC_OK);
    ck_assert_int_eq(gh, 8);
    ck_assert_int_eq(gw, 8);
    const int want[5][6] = {/* cin, cout, h_in, h_out, h_pool, stride */
                            {3, 32, 128, 64, 64, 2},
                            {32, 64, 64, 64, 32, 1},
                            {64, 128, 32, 32, 16, 1},
                            {128, 256, 16, 16, 8, 1},
                            {256, 256, 8, 8, 8, 1}};
    for (int l = 0; l < 5; l++) {
        ck_assert_int_eq(sh[l].cin, want[l][0]);
        ck_assert_int_eq(sh[l].cout, want[l][1]);
        ck_assert_int_eq(sh[l].h_in, want[l][2]);
        ck_assert_int_eq(sh[l].w_in, want[l][2]);
        ck_assert_int_eq(sh[l].h_out, want[l][3]);
        ck_assert_int_eq(sh[l].h_pool, want[l][4]);
        ck_assert_int_eq(sh[l].w_pool, want[l][4]);
        ck_assert_int_eq(sh[l].stride, want[l][5]);
    }
    /* odd sides: 15 -s2-> 8 -pool-> 4 ; 9 -s2-> 5 -pool-> 2 (floor, as torch) */
    EncoderConfig odd = {.image_size = 15, .n_conv = 2};
    odd.conv[0] = (ConvSpec){4, 2, 1};
    odd.conv[1] = (ConvSpec){4, 1, 0};
    ck_assert_int_eq(encoder_shapes(&odd, NULL, &gh, &gw), SAC_OK);
    ck_assert_int_eq(gh, 4);
    odd.image_size = 9;
    ck_assert_int_eq(encoder_shapes(&odd, NULL, &gh, NULL), SAC_OK);
    ck_assert_int_eq(gh, 2);

    LogCapture cap = {0};
    sac_log_set_sink(capture_log, &cap);
    EncoderConfig bad = cfg;
    bad.conv[2].stride = 3;
    ck_assert_int_eq(encoder_shapes(&bad, sh, &gh, &gw), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(cap.last, "conv3 has stride 3"));
    bad = cfg;
    bad.image_size = 8; /* 8 -s2-> 4 -pool-> 2 -pool-> 1 -> conv4 cannot pool 1x1 */
    ck_assert_int_eq(encoder_shapes(&bad, sh, &gh, &gw), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(cap.last, "conv4"));
    bad = cfg;
    bad.n_conv = SAC_MAX_CONV + 1;
    ck_assert_int_eq(encoder_shapes(&bad, sh, &gh, &gw), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(cap.last, "n_conv"));
    bad = cfg;
    bad.conv[0].cout = 0;
    ck_assert_int_eq(encoder_shapes(&bad, sh, &gh, &gw), SAC_ERR_INVALID);
    ck_assert_ptr_null(encoder_acts_create(&bad, 2));
    ck_assert_int_eq(cap.n, 5);

    /* the API boundary: batch range, config mismatch, backward without a training forward */
    EncoderConfig tiny = tiny_config(1);
    ParamBuf pb, gb;
    params_create(&pb, &tiny);
    params_like(&gb, &pb, &tiny);
    SacRng rng;
    sac_rng_seed(&rng, 22, 1);
    params_fill(&pb, &rng);
    EncoderActs *acts = encoder_acts_create(&tiny, 2);
    ck_assert_ptr_nonnull(acts);
    float *img = falloc(3 * 3 * 16 * 16), *feats = falloc(3 * 16 * 8);
    fill_uniform(img, 3 * 3 * 16 * 16, -1, 1, &rng);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, feats, &pb.p, &tiny, 2), SAC_ERR_INVALID);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &tiny, 3, 1), SAC_ERR_INVALID);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &cfg, 2, 1), SAC_ERR_INVALID);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &tiny, 2, 0), SAC_OK);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, feats, &pb.p, &tiny, 2), SAC_ERR_INVALID);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &tiny, 2, 1), SAC_OK);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, feats, &pb.p, &tiny, 1), SAC_ERR_INVALID);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, feats, &pb.p, &tiny, 2), SAC_OK);
    ck_assert_int_eq(cap.n, 10);
    sac_log_set_sink(NULL, NULL);
    encoder_acts_free(acts);
    encoder_acts_free(NULL);
    encoder_infer_free(NULL);
    free(img), free(feats), free(pb.data), free(gb.data);
}
END_TEST

/* Folded inference equals the training graph's inference forward, on the tiny config (with and
 * without batchnorm) and on the default 128x128 one (every tiling path at real sizes). */
static void check_folded(const EncoderConfig *cfg, int B, uint64_t seed)
{
    SacRng rng;
    sac_rng_seed(&rng, seed, 1);
    ParamBuf pb;
    params_create(&pb, cfg);
    params_fill(&pb, &rng);
    if (cfg->image_size > 16) {
        /* He-like scale so activations stay of order 1 through the deep config */
        ConvShape sh[SAC_MAX_CONV];
        encoder_shapes(cfg, sh, NULL, NULL);
        for (int l = 0; l < cfg->n_conv; l++) {
            float s = sqrtf(6.0f / (sh[l].cin * 9));
            fill_uniform(pb.p.conv[l].weight, (size_t)sh[l].cout * sh[l].cin * 9, -s, s, &rng);
        }
    }
    int gh, gw;
    encoder_shapes(cfg, NULL, &gh, &gw);
    int E = cfg->conv[cfg->n_conv - 1].cout;
    size_t n_img = (size_t)B * 3 * cfg->image_size * cfg->image_size, n_feats = (size_t)B * gh * gw * E;
    float *img = falloc(n_img), *f1 = falloc(n_feats), *f2 = falloc(n_feats);
    fill_uniform(img, n_img, -1, 1, &rng);
    EncoderActs *acts = encoder_acts_create(cfg, B);
    EncoderInfer *inf = encoder_infer_create(cfg, &pb.p, B);
    ck_assert_ptr_nonnull(acts);
    ck_assert_ptr_nonnull(inf);
    float *before = fcopy(pb.data, pb.n);
    ck_assert_int_eq(encoder_forward(f1, acts, img, &pb.p, cfg, B, 0), SAC_OK);
    ck_assert_mem_eq(before, pb.data, sizeof(float) * pb.n); /* inference leaves the stats alone */
    ck_assert_int_eq(encoder_infer_forward(inf, f2, img, B), SAC_OK);
    char name[64];
    snprintf(name, sizeof(name), "folded S%d bn%d B%d", cfg->image_size, cfg->batchnorm, B);
    /* float rounding of the folded weights vs normalising after the conv: ~1e-6 relative */
    ck_assert_int_eq(check_tensor(name, f2, f1, n_feats, 1e-5, 1e-4), 0);
    double energy = dot_double(f1, f1, n_feats);
    ck_assert(energy > 1e-3 * n_feats); /* a live network, not all zeros */
    /* one image alone gives the same features as in the batch */
    ck_assert_int_eq(encoder_infer_forward(inf, f2, img + n_img / B * (B - 1), 1), SAC_OK);
    ck_assert_int_eq(check_tensor("folded, last image alone", f2, f1 + n_feats / B * (B - 1), n_feats / B, 1e-5, 1e-4), 0);
    /* refolding after a change in the parameters follows it */
    for (size_t i = 0; i < pb.n; i++) pb.data[i] *= 1.01f;
    encoder_infer_update(inf, &pb.p);
    ck_assert_int_eq(encoder_forward(f1, acts, img, &pb.p, cfg, B, 0), SAC_OK);
    ck_assert_int_eq(encoder_infer_forward(inf, f2, img, B), SAC_OK);
    ck_assert_int_eq(check_tensor("refolded", f2, f1, n_feats, 1e-5, 1e-4), 0);
    ck_assert_int_eq(encoder_infer_forward(inf, f2, img, B + 1), SAC_ERR_INVALID);
    encoder_acts_free(acts);
    encoder_infer_free(inf);
    free(img), free(f1), free(f2), free(before), free(pb.data);
}

START_TEST(test_encoder_folded_inference)
{
    EncoderConfig t1 = tiny_config(1), t0 = tiny_config(0), d = default_config();
    sac_log_set_sink(capture_log, &(LogCapture){0}); /* the B + 1 call logs */
    check_folded(&t1, 3, 30);
    check_folded(&t0, 3, 31);
    check_folded(&d, 2, 32);
    sac_log_set_sink(NULL, NULL);
}
END_TEST

/* ---- the PyTorch reference ---------------------------------------------------------------- */

/* A minimal safetensors reader (F32 only) for the committed reference file. */
typedef struct {
    unsigned char *buf;
    size_t size, data_off;
    cJSON *hdr;
} RefFile;

static int ref_open(RefFile *f, const char *path)
{
    memset(f, 0, sizeof(*f));
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc((size_t)n);
    f->size = fread(f->buf, 1, (size_t)n, fp);
    fclose(fp);
    if (f->size < 8) return -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->buf[i];
    if (hlen > f->size - 8) return -1;
    f->hdr = cJSON_ParseWithLength((const char *)f->buf + 8, (size_t)hlen);
    f->data_off = 8 + (size_t)hlen;
    return f->hdr ? 0 : -1;
}

static void ref_close(RefFile *f)
{
    cJSON_Delete(f->hdr);
    free(f->buf);
}

/* Copy tensor `name` (which must hold n F32 values) into dst. */
static void ref_read(RefFile *f, const char *name, float *dst, size_t n)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->hdr, name);
    ck_assert_msg(t != NULL, "reference file lacks tensor '%s'", name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    ck_assert(cJSON_IsString(dtype) && !strcmp(dtype->valuestring, "F32"));
    size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    ck_assert_msg(b - a == n * sizeof(float), "tensor '%s' has %zu floats, expected %zu", name, (b - a) / 4, n);
    ck_assert(f->data_off + b <= f->size);
    memcpy(dst, f->buf + f->data_off + a, b - a);
}

static void run_reference(RefFile *f, const char *v, int batchnorm)
{
    EncoderConfig cfg = tiny_config(batchnorm);
    const int B = 3, P = 16, E = 8;
    const size_t n_img = (size_t)B * 3 * 16 * 16, n_feats = (size_t)B * P * E;
    ParamBuf pb, gb;
    params_create(&pb, &cfg);
    params_like(&gb, &pb, &cfg);
    char key[96];
    for (int t = 0; t < pb.n_tensors; t++) {
        /* saccade's gamma/beta are torch's bn.weight / bn.bias */
        char tn[48];
        snprintf(tn, sizeof(tn), "%s", pb.name[t]);
        char *dot = strchr(tn, '.');
        if (!strcmp(dot, ".gamma")) strcpy(dot, ".weight");
        if (!strcmp(dot, ".beta")) strcpy(dot, ".bias");
        snprintf(key, sizeof(key), "%s.%s", v, tn);
        ref_read(f, key, pb.tensor[t], pb.numel[t]);
    }
    float *img = falloc(n_img), *want = falloc(n_feats), *dfeats = falloc(n_feats), *feats = falloc(n_feats);
    snprintf(key, sizeof(key), "%s.images", v);
    ref_read(f, key, img, n_img);
    snprintf(key, sizeof(key), "%s.dfeats", v);
    ref_read(f, key, dfeats, n_feats);

    EncoderActs *acts = encoder_acts_create(&cfg, B);
    ck_assert_ptr_nonnull(acts);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &cfg, B, 1), SAC_OK);
    snprintf(key, sizeof(key), "%s.feats", v);
    ref_read(f, key, want, n_feats);
    int bad = 0;
    /* float32 against float64: conv sums of <= 54 terms, batchnorm divides by a std of order 1 */
    bad += check_tensor(key, feats, want, n_feats, 1e-5, 1e-4);
    ck_assert_int_eq(encoder_backward(&gb.p, acts, dfeats, &pb.p, &cfg, B), SAC_OK);
    for (int t = 0; t < pb.n_tensors; t++) {
        char tn[48];
        snprintf(tn, sizeof(tn), "%s", pb.name[t]);
        char *dot = strchr(tn, '.');
        if (!strcmp(dot, ".gamma")) strcpy(dot, ".weight");
        if (!strcmp(dot, ".beta")) strcpy(dot, ".bias");
        float *r = falloc(pb.numel[t]);
        if (pb.trained[t]) {
            snprintf(key, sizeof(key), "%s.grad.%s", v, tn);
            ref_read(f, key, r, pb.numel[t]);
            /* gradients sum over the batch and every position (up to 3*64 terms of order 1), and
             * batchnorm's backward subtracts two means of them: 1e-4 absolute */
            bad += check_tensor(key, gb.tensor[t], r, pb.numel[t], 1e-4, 1e-4);
        } else {
            snprintf(key, sizeof(key), "%s.%s_after", v, tn);
            ref_read(f, key, r, pb.numel[t]);
            bad += check_tensor(key, pb.tensor[t], r, pb.numel[t], 1e-6, 1e-5);
        }
        free(r);
    }
    /* eval mode with the updated running statistics: training graph and folded encoder */
    snprintf(key, sizeof(key), "%s.feats_eval", v);
    ref_read(f, key, want, n_feats);
    ck_assert_int_eq(encoder_forward(feats, acts, img, &pb.p, &cfg, B, 0), SAC_OK);
    bad += check_tensor(key, feats, want, n_feats, 1e-5, 1e-4);
    EncoderInfer *inf = encoder_infer_create(&cfg, &pb.p, B);
    ck_assert_ptr_nonnull(inf);
    ck_assert_int_eq(encoder_infer_forward(inf, feats, img, B), SAC_OK);
    bad += check_tensor("folded vs torch eval", feats, want, n_feats, 1e-5, 1e-4);
    ck_assert_int_eq(bad, 0);
    encoder_infer_free(inf);
    encoder_acts_free(acts);
    free(img), free(want), free(dfeats), free(feats), free(pb.data), free(gb.data);
}

START_TEST(test_encoder_torch_reference)
{
    const char *dir = getenv("SACCADE_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof(path), "%s/encoder_ref.safetensors",
             dir ? dir : SACCADE_SOURCE_MODELDIR "/../tests/data");
    RefFile f;
    ck_assert_msg(ref_open(&f, path) == 0, "cannot read %s", path);
    run_reference(&f, "bn", 1);
    run_reference(&f, "plain", 0);
    ref_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("encoder");
    const TTest *layers[] = {test_conv2d_matches_direct, test_conv2d_gradcheck, test_batchnorm_gradcheck,
        test_batchnorm_running_stats_by_hand, test_batchnorm_fused_matches_composition, test_relu, test_maxpool,
        NULL};
    check_case(s, "layers", 0, layers);
    const TTest *encoder[] = {test_encoder_shapes, test_encoder_gradcheck_bn, test_encoder_gradcheck_plain,
        test_encoder_folded_inference, test_encoder_torch_reference, NULL};
    check_case(s, "encoder", 0, encoder);
    return check_run(s);
}
