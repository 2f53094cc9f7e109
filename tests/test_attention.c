/*
 * test_attention.c - finite-difference checks of soft attention (one step, the feature
 * projection) and of the doubly stochastic penalty.
 *
 * Sizes: B=3 captions over Bi=2 images (captions 0 and 2 share image 1), P=5, E=4, A=6, D=7.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "checkrun.h"
#include "sac.h"
#include "testutil.h"

enum { B = 3, BI = 2, P = 5, E = 4, A = 6, D = 7 };
static const int img[B] = {1, 0, 1};

typedef struct {
    float feats[BI * P * E], att1[BI * P * A], h[B * D];
    float enc_w[A * E], enc_b[A], dec_w[A * D], dec_b[A], full_w[A], full_b[1], beta_w[E * D], beta_b[E];
    AttentionParams p;
    float zg[B * E], s[B * P * A], alpha[B * P], z[B * E], gate[B * E];
    float rz[B * E], ralpha[B * P]; /* random dL/dzg, dL/dalpha */
    float scratch[4096];
} Ctx;

static const AttentionSizes sz = {P, E, A, D};

static void ctx_init(Ctx *c, SacRng *rng)
{
    memset(c, 0, sizeof(*c));
    fill_uniform(c->feats, BI * P * E, -1, 1, rng);
    fill_uniform(c->att1, BI * P * A, -1, 1, rng);
    fill_uniform(c->h, B * D, -1, 1, rng);
    fill_uniform(c->dec_w, A * D, -0.5, 0.5, rng);
    fill_uniform(c->dec_b, A, -0.5, 0.5, rng);
    fill_uniform(c->full_w, A, -1, 1, rng);
    fill_uniform(c->full_b, 1, -1, 1, rng);
    fill_uniform(c->beta_w, E * D, -0.5, 0.5, rng);
    fill_uniform(c->beta_b, E, -0.5, 0.5, rng);
    fill_uniform(c->enc_w, A * E, -0.5, 0.5, rng);
    fill_uniform(c->enc_b, A, -0.5, 0.5, rng);
    fill_uniform(c->rz, B * E, -1, 1, rng);
    fill_uniform(c->ralpha, B * P, -1, 1, rng);
    c->p = (AttentionParams){c->enc_w, c->enc_b, c->dec_w, c->dec_b, c->full_w, c->full_b, c->beta_w, c->beta_b};
}

static double step_loss(void *p)
{
    Ctx *c = p;
    AttentionCache cache = {c->s, c->alpha, c->z, c->gate};
    attention_step_forward(c->zg, &cache, c->h, c->feats, c->att1, img, &c->p, B, &sz, c->scratch);
    return dot_double(c->zg, c->rz, B * E) + dot_double(c->alpha, c->ralpha, B * P);
}

START_TEST(test_attention_step_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 7, 1);
    static Ctx c;
    ctx_init(&c, &rng);
    ck_assert_uint_ge(sizeof(c.scratch) / sizeof(float), attention_scratch_floats(B, &sz));
    step_loss(&c);
    /* alpha is a distribution over P for every caption */
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int q = 0; q < P; q++) s += c.alpha[b * P + q];
        ck_assert_double_eq_tol(s, 1.0, 1e-6);
    }
    static float dh[B * D], dfeats[BI * P * E], datt1[BI * P * A];
    static float g_enc_w[A * E], g_enc_b[A], g_dec_w[A * D], g_dec_b[A], g_full_w[A], g_full_b[1],
        g_beta_w[E * D], g_beta_b[E];
    AttentionParams g = {g_enc_w, g_enc_b, g_dec_w, g_dec_b, g_full_w, g_full_b, g_beta_w, g_beta_b};
    AttentionCache cache = {c.s, c.alpha, c.z, c.gate};
    attention_step_backward(dh, dfeats, datt1, &g, c.rz, c.ralpha, &cache, c.h, c.feats, img, &c.p, B, &sz,
                            c.scratch);
    int bad = 0;
    const double eps = 1e-2, tol = 1e-2, floor = 1e-5;
    bad += gradcheck("attention.h", c.h, dh, B * D, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.feats", c.feats, dfeats, BI * P * E, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.att1", c.att1, datt1, BI * P * A, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.decoder_att.weight", c.dec_w, g_dec_w, A * D, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.decoder_att.bias", c.dec_b, g_dec_b, A, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.full_att.weight", c.full_w, g_full_w, A, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.full_att.bias", c.full_b, g_full_b, 1, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.f_beta.weight", c.beta_w, g_beta_w, E * D, step_loss, &c, 300, eps, tol, floor, &rng);
    bad += gradcheck("attention.f_beta.bias", c.beta_b, g_beta_b, E, step_loss, &c, 300, eps, tol, floor, &rng);
    ck_assert_int_eq(bad, 0);
    /* softmax is shift invariant: full_att.bias gets no gradient */
    ck_assert_float_eq_tol(g_full_b[0], 0.0f, 1e-5f);
}
END_TEST

static double project_loss(void *p)
{
    Ctx *c = p;
    attention_project_forward(c->att1, c->feats, &c->p, BI, &sz);
    double l = 0;
    for (int i = 0; i < BI * P * A; i++) l += (double)c->att1[i] * (0.1 * (i % 7) - 0.3);
    return l;
}

START_TEST(test_attention_project_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 8, 1);
    static Ctx c;
    ctx_init(&c, &rng);
    static float datt1[BI * P * A], dfeats[BI * P * E], g_enc_w[A * E], g_enc_b[A];
    for (int i = 0; i < BI * P * A; i++) datt1[i] = (float)(0.1 * (i % 7) - 0.3);
    AttentionParams g = {.enc_w = g_enc_w, .enc_b = g_enc_b};
    attention_project_backward(dfeats, &g, datt1, c.feats, &c.p, BI, &sz);
    int bad = 0;
    bad += gradcheck("attention.feats (projection)", c.feats, dfeats, BI * P * E, project_loss, &c, 300, 1e-2, 1e-3, 1e-5, &rng);
    bad += gradcheck("attention.encoder_att.weight", c.enc_w, g_enc_w, A * E, project_loss, &c, 300, 1e-2, 1e-3, 1e-5, &rng);
    bad += gradcheck("attention.encoder_att.bias", c.enc_b, g_enc_b, A, project_loss, &c, 300, 1e-2, 1e-3, 1e-5, &rng);
    ck_assert_int_eq(bad, 0);
}
END_TEST

typedef struct {
    float alpha_sum[B * P];
} PenCtx;

static double pen_loss(void *p)
{
    PenCtx *c = p;
    return attention_penalty(NULL, c->alpha_sum, B, P, 1.0f) * 0.37;
}

START_TEST(test_attention_penalty)
{
    SacRng rng;
    sac_rng_seed(&rng, 9, 1);
    PenCtx c;
    fill_uniform(c.alpha_sum, B * P, 0, 3, &rng);
    float d[B * P];
    double pen = attention_penalty(d, c.alpha_sum, B, P, 0.37f);
    double want = 0;
    for (int i = 0; i < B * P; i++) want += (1.0 - c.alpha_sum[i]) * (1.0 - c.alpha_sum[i]);
    ck_assert_double_eq_tol(pen, want, 1e-9);
    ck_assert_int_eq(gradcheck("attention.penalty", c.alpha_sum, d, B * P, pen_loss, &c, 100, 1e-3, 1e-4, 1e-6, &rng), 0);
    /* exactly one unit of attention per position: no penalty, no gradient */
    for (int i = 0; i < B * P; i++) c.alpha_sum[i] = 1.0f;
    ck_assert_double_eq(attention_penalty(d, c.alpha_sum, B, P, 1.0f), 0.0);
    ck_assert_float_eq(d[4], 0.0f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("attention");
    const TTest *tests[] = {test_attention_step_gradcheck, test_attention_project_gradcheck, test_attention_penalty,
        NULL};
    check_case(s, "gradients", 0, tests);
    return check_run(s);
}
