/*
 * test_decoder.c - finite-difference checks of the decoder's layers (embedding, LSTM cell,
 * softmax cross-entropy) and of the whole teacher-forced decoder loss (cross-entropy +
 * doubly stochastic penalty, with dropout) w.r.t. every decoder tensor and the features;
 * and of the per-caption weighted loss self-critical training uses.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "decoder.h"
#include "embedding.h"
#include "loss.h"
#include "lstm.h"
#include "sac.h"
#include "testutil.h"

/* ---- LSTM cell ---- */
enum { LB = 3, LI = 5, LD = 4 };
typedef struct {
    float x[LB * LI], h[LB * LD], c[LB * LD], w_ih[4 * LD * LI], w_hh[4 * LD * LD], b_ih[4 * LD], b_hh[4 * LD];
    float h_out[LB * LD], c_out[LB * LD], act[LB * 4 * LD], rh[LB * LD], rc[LB * LD];
} LstmCtx;

static double lstm_loss(void *p)
{
    LstmCtx *c = p;
    lstm_forward(c->h_out, c->c_out, c->act, c->x, c->h, c->c, c->w_ih, c->w_hh, c->b_ih, c->b_hh, LB, LI, LD);
    return dot_double(c->h_out, c->rh, LB * LD) + dot_double(c->c_out, c->rc, LB * LD);
}

START_TEST(test_lstm_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 11, 1);
    static LstmCtx c;
    float *all[] = {c.x, c.h, c.c, c.w_ih, c.w_hh, c.b_ih, c.b_hh, c.rh, c.rc};
    size_t n[] = {LB * LI, LB * LD, LB * LD, 4 * LD * LI, 4 * LD * LD, 4 * LD, 4 * LD, LB * LD, LB * LD};
    for (int i = 0; i < 9; i++) fill_uniform(all[i], n[i], -1, 1, &rng);
    lstm_loss(&c);
    static float dx[LB * LI], dh[LB * LD], dc[LB * LD], dw_ih[4 * LD * LI], dw_hh[4 * LD * LD], db_ih[4 * LD],
        db_hh[4 * LD], dpre[LB * 4 * LD];
    lstm_backward(dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dpre, c.rh, c.rc, c.act, c.x, c.h, c.c, c.c_out, c.w_ih,
                  c.w_hh, LB, LI, LD);
    int bad = 0;
    const double eps = 1e-2, tol = 1e-2, fl = 1e-5;
    bad += gradcheck("lstm.x", c.x, dx, LB * LI, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.h_prev", c.h, dh, LB * LD, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.c_prev", c.c, dc, LB * LD, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.weight_ih", c.w_ih, dw_ih, 4 * LD * LI, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.weight_hh", c.w_hh, dw_hh, 4 * LD * LD, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.bias_ih", c.b_ih, db_ih, 4 * LD, lstm_loss, &c, 300, eps, tol, fl, &rng);
    bad += gradcheck("lstm.bias_hh", c.b_hh, db_hh, 4 * LD, lstm_loss, &c, 300, eps, tol, fl, &rng);
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---- embedding and cross-entropy ---- */
enum { EN = 5, EV = 6, EM = 3 };
typedef struct {
    float table[EV * EM], out[EN * EM], r[EN * EM];
    int ids[EN];
} EmbCtx;

static double emb_loss(void *p)
{
    EmbCtx *c = p;
    embedding_forward(c->out, c->ids, c->table, EN, EM);
    return dot_double(c->out, c->r, EN * EM);
}

START_TEST(test_embedding_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 12, 1);
    EmbCtx c = {.ids = {2, 0, 2, 5, 1}}; /* id 2 twice: gradients add; id 3, 4 unused: zero */
    fill_uniform(c.table, EV * EM, -1, 1, &rng);
    fill_uniform(c.r, EN * EM, -1, 1, &rng);
    float d[EV * EM] = {0};
    embedding_backward(d, c.r, c.ids, EN, EM);
    ck_assert_int_eq(gradcheck("embed.weight", c.table, d, EV * EM, emb_loss, &c, 100, 1e-2, 1e-4, 1e-6, &rng), 0);
    ck_assert_float_eq(d[3 * EM], 0.0f);
}
END_TEST

typedef struct {
    float logits[EN * EV], probs[EN * EV];
    int targets[EN];
} XentCtx;

static double xent_loss(void *p)
{
    XentCtx *c = p;
    softmax_forward(c->probs, c->logits, EN, EV);
    return crossentropy_forward(NULL, c->probs, c->targets, EN, EV) * 0.25;
}

START_TEST(test_crossentropy_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 13, 1);
    XentCtx c = {.targets = {1, -1, 5, 0, 3}}; /* row 1 is padding: masked */
    fill_uniform(c.logits, EN * EV, -3, 3, &rng);
    xent_loss(&c);
    /* the loss of a row is -log p[target] */
    float losses[EN];
    crossentropy_forward(losses, c.probs, c.targets, EN, EV);
    ck_assert_float_eq_tol(losses[0], -logf(c.probs[1]), 1e-6f);
    ck_assert_float_eq(losses[1], 0.0f);
    float d[EN * EV] = {0};
    crossentropy_softmax_backward(d, c.probs, c.targets, 0.25f, EN, EV);
    ck_assert_int_eq(gradcheck("crossentropy.logits", c.logits, d, EN * EV, xent_loss, &c, 100, 1e-2, 1e-3, 1e-6, &rng), 0);
    for (int v = 0; v < EV; v++) ck_assert_float_eq(d[EV + v], 0.0f);
}
END_TEST

/* ---- the whole teacher-forced decoder ---- */
enum { BC = 4, BI = 2, P = 4, E = 3, A = 5, D = 6, M = 4, V = 7, T = 5 };
static const DecoderSizes dsz = {P, E, A, D, M, V, T};

typedef struct {
    float *buf, *grad;
    size_t n;
    DecoderParams p, g;
    float feats[BI * P * E], dfeats[BI * P * E];
    int img[BC], tokens[BC * (T + 1)], lens[BC];
    DecoderBatch batch;
    DecoderActs *acts;
    float dropout, lambda;
} DecCtx;

static void point(float *buf, DecoderParams *p)
{
    float *c = buf;
#define TAKE(field, n) (p->field = c, c += (n))
    TAKE(embed, V * M), TAKE(init_h_w, D * E), TAKE(init_h_b, D), TAKE(init_c_w, D * E), TAKE(init_c_b, D);
    TAKE(att.enc_w, A * E), TAKE(att.enc_b, A), TAKE(att.dec_w, A * D), TAKE(att.dec_b, A), TAKE(att.full_w, A);
    TAKE(att.full_b, 1), TAKE(att.beta_w, E * D), TAKE(att.beta_b, E), TAKE(w_ih, 4 * D * (M + E));
    TAKE(w_hh, 4 * D * D), TAKE(b_ih, 4 * D), TAKE(b_hh, 4 * D), TAKE(fc_w, V * D), TAKE(fc_b, V);
#undef TAKE
}
static const size_t n_params = V * M + 2 * (D * E + D) + A * E + A + A * D + A + A + 1 + E * D + E +
                               4 * D * (M + E) + 4 * D * D + 8 * D + V * D + V;

static double dec_loss(void *p)
{
    DecCtx *c = p;
    SacRng drop;
    sac_rng_seed(&drop, 99, 3); /* the same dropout mask every time */
    DecoderLoss l;
    ck_assert_int_eq(decoder_forward(&l, c->acts, c->feats, &c->batch, &c->p, &dsz, c->dropout, c->lambda, &drop),
                     SAC_OK);
    return l.loss;
}

/* Parameters and gradients of c, the parameters and features drawn from rng. */
static void dec_ctx_init(DecCtx *c, SacRng *rng)
{
    c->buf = calloc(n_params, sizeof(float));
    c->grad = calloc(n_params, sizeof(float));
    point(c->buf, &c->p);
    point(c->grad, &c->g);
    fill_uniform(c->buf, n_params, -0.6f, 0.6f, rng);
    fill_uniform(c->feats, BI * P * E, -1, 1, rng);
}

START_TEST(test_decoder_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 14, 1);
    static DecCtx c;
    dec_ctx_init(&c, &rng);
    const int lens[BC] = {3, 5, 1, 4}, img[BC] = {1, 0, 1, 0};
    for (int b = 0; b < BC; b++) {
        c.lens[b] = lens[b], c.img[b] = img[b];
        c.tokens[b * (T + 1)] = 1; /* <start> */
        for (int t = 1; t <= T; t++) c.tokens[b * (T + 1) + t] = t < lens[b] ? 4 + (int)sac_rng_below(&rng, V - 4) : 2;
        if (lens[b] < T) c.tokens[b * (T + 1) + T] = 0; /* padding after <end> is ignored */
    }
    c.batch = (DecoderBatch){BC, BI, c.img, c.tokens, c.lens, NULL};
    c.acts = decoder_acts_create(&dsz, BC, BI);
    c.dropout = 0.3f, c.lambda = 0.7f;
    double loss = dec_loss(&c);
    ck_assert(isfinite(loss) && loss > 0);
    decoder_backward(&c.g, c.dfeats, c.acts, c.feats, &c.p, &dsz);
    struct {
        const char *name;
        float *x, *g;
        size_t n;
    } t[] = {
        {"decoder.embed", c.p.embed, c.g.embed, V * M},
        {"decoder.init_h.weight", c.p.init_h_w, c.g.init_h_w, D * E},
        {"decoder.init_h.bias", c.p.init_h_b, c.g.init_h_b, D},
        {"decoder.init_c.weight", c.p.init_c_w, c.g.init_c_w, D * E},
        {"decoder.init_c.bias", c.p.init_c_b, c.g.init_c_b, D},
        {"decoder.encoder_att.weight", c.p.att.enc_w, c.g.att.enc_w, A * E},
        {"decoder.encoder_att.bias", c.p.att.enc_b, c.g.att.enc_b, A},
        {"decoder.decoder_att.weight", c.p.att.dec_w, c.g.att.dec_w, A * D},
        {"decoder.decoder_att.bias", c.p.att.dec_b, c.g.att.dec_b, A},
        {"decoder.full_att.weight", c.p.att.full_w, c.g.att.full_w, A},
        {"decoder.f_beta.weight", c.p.att.beta_w, c.g.att.beta_w, E * D},
        {"decoder.f_beta.bias", c.p.att.beta_b, c.g.att.beta_b, E},
        {"decoder.lstm.weight_ih", c.p.w_ih, c.g.w_ih, 4 * D * (M + E)},
        {"decoder.lstm.weight_hh", c.p.w_hh, c.g.w_hh, 4 * D * D},
        {"decoder.lstm.bias_ih", c.p.b_ih, c.g.b_ih, 4 * D},
        {"decoder.lstm.bias_hh", c.p.b_hh, c.g.b_hh, 4 * D},
        {"decoder.fc.weight", c.p.fc_w, c.g.fc_w, V * D},
        {"decoder.fc.bias", c.p.fc_b, c.g.fc_b, V},
        {"features", c.feats, c.dfeats, BI * P * E},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        bad += gradcheck(t[i].name, t[i].x, t[i].g, t[i].n, dec_loss, &c, 200, 1e-2, 1e-2, 1e-5, &rng);
    ck_assert_int_eq(bad, 0);
    /* <pad> (id 0) is never an input: its embedding gets no gradient */
    for (int m = 0; m < M; m++) ck_assert_float_eq(c.g.embed[m], 0.0f);
    decoder_acts_free(c.acts);
    free(c.buf), free(c.grad);
}
END_TEST

/* The objective self-critical training differentiates, computed apart from the decoder's own
 * loss: J = -(1/Bc) sum_k w_k log p(caption_k), log p summed over each caption's steps from
 * the softmax of the forward (CE = -log p, so this is the weighted loss sum_k w_k CE_k / Bc). */
static double weighted_logp_loss(void *p)
{
    DecCtx *c = p;
    DecoderLoss l;
    ck_assert_int_eq(decoder_forward(&l, c->acts, c->feats, &c->batch, &c->p, &dsz, 0.0f, 0.0f, NULL), SAC_OK);
    static float probs[BC * T * V];
    decoder_get_probs(c->acts, probs, &dsz);
    double j = 0.0;
    for (int k = 0; k < BC; k++) {
        double logp = 0.0;
        for (int t = 0; t < c->lens[k]; t++) logp += log((double)probs[((size_t)k * T + t) * V + c->tokens[k * (T + 1) + t + 1]]);
        j += c->batch.weight[k] * logp;
    }
    return -j / BC;
}

/* Per-caption weights (of both signs): the weighted backward is the gradient of
 * -(1/Bc) sum_k w_k log p(caption_k), w.r.t. every decoder tensor and the features. */
START_TEST(test_decoder_weighted_gradcheck)
{
    SacRng rng;
    sac_rng_seed(&rng, 15, 1);
    static DecCtx c;
    dec_ctx_init(&c, &rng);
    memset(c.dfeats, 0, sizeof(c.dfeats));
    const int lens[BC] = {3, 5, 1, 4}, img[BC] = {1, 0, 1, 0};
    static const float w[BC] = {0.8f, -1.3f, 0.5f, -0.2f};
    for (int b = 0; b < BC; b++) {
        c.lens[b] = lens[b], c.img[b] = img[b];
        c.tokens[b * (T + 1)] = 1;
        /* a caption that ran out of steps ends on a word, not <end> (caption 1, length T) */
        for (int t = 1; t <= T; t++) c.tokens[b * (T + 1) + t] = t < lens[b] || b == 1 ? 4 + (int)sac_rng_below(&rng, V - 4) : 2;
    }
    c.batch = (DecoderBatch){BC, BI, c.img, c.tokens, c.lens, w};
    c.acts = decoder_acts_create(&dsz, BC, BI);
    const double j = weighted_logp_loss(&c);
    DecoderLoss l;
    ck_assert_int_eq(decoder_forward(&l, c.acts, c.feats, &c.batch, &c.p, &dsz, 0.0f, 0.0f, NULL), SAC_OK);
    ck_assert_double_eq_tol(l.loss, j, 1e-5 * fabs(j) + 1e-6);
    ck_assert_double_eq_tol(l.ce, j, 1e-5 * fabs(j) + 1e-6);
    decoder_backward(&c.g, c.dfeats, c.acts, c.feats, &c.p, &dsz);
    struct {
        const char *name;
        float *x, *g;
        size_t n;
    } t[] = {
        {"decoder.embed", c.p.embed, c.g.embed, V * M},
        {"decoder.init_h.weight", c.p.init_h_w, c.g.init_h_w, D * E},
        {"decoder.init_c.bias", c.p.init_c_b, c.g.init_c_b, D},
        {"decoder.encoder_att.weight", c.p.att.enc_w, c.g.att.enc_w, A * E},
        {"decoder.decoder_att.weight", c.p.att.dec_w, c.g.att.dec_w, A * D},
        {"decoder.full_att.weight", c.p.att.full_w, c.g.att.full_w, A},
        {"decoder.f_beta.weight", c.p.att.beta_w, c.g.att.beta_w, E * D},
        {"decoder.lstm.weight_ih", c.p.w_ih, c.g.w_ih, 4 * D * (M + E)},
        {"decoder.lstm.weight_hh", c.p.w_hh, c.g.w_hh, 4 * D * D},
        {"decoder.lstm.bias_hh", c.p.b_hh, c.g.b_hh, 4 * D},
        {"decoder.fc.weight", c.p.fc_w, c.g.fc_w, V * D},
        {"decoder.fc.bias", c.p.fc_b, c.g.fc_b, V},
        {"features", c.feats, c.dfeats, BI * P * E},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        /* tol 2e-2, not 1e-2: the objective is summed from float log-probabilities, so a smaller
         * eps drowns in rounding, and at eps 1e-2 the curvature term reaches 1.1% on one index */
        bad += gradcheck(t[i].name, t[i].x, t[i].g, t[i].n, weighted_logp_loss, &c, 200, 1e-2, 2e-2, 1e-5, &rng);
    ck_assert_int_eq(bad, 0);
    /* all weights 1: the same direction as the unweighted loss, scaled by R / Bc */
    static const float ones[BC] = {1, 1, 1, 1};
    DecoderBatch b1 = c.batch, b0 = c.batch;
    b1.weight = ones, b0.weight = NULL;
    DecoderLoss l1, l0;
    ck_assert_int_eq(decoder_forward(&l1, c.acts, c.feats, &b1, &c.p, &dsz, 0.0f, 0.0f, NULL), SAC_OK);
    ck_assert_int_eq(decoder_forward(&l0, c.acts, c.feats, &b0, &c.p, &dsz, 0.0f, 0.0f, NULL), SAC_OK);
    ck_assert_double_eq_tol(l1.ce, l0.ce * l0.n_tokens / BC, 1e-5 * l1.ce);
    /* a weight that is not a number is refused */
    static const float nanw[BC] = {1, NAN, 1, 1};
    b1.weight = nanw;
    sac_log_set_level(-1);
    ck_assert_int_eq(decoder_forward(&l1, c.acts, c.feats, &b1, &c.p, &dsz, 0.0f, 0.0f, NULL), SAC_ERR_INVALID);
    sac_log_set_level(SAC_LOG_INFO);
    decoder_acts_free(c.acts);
    free(c.buf), free(c.grad);
}
END_TEST

START_TEST(test_decoder_rejects_bad_batch)
{
    static DecCtx c;
    c.buf = calloc(n_params, sizeof(float));
    point(c.buf, &c.p);
    c.acts = decoder_acts_create(&dsz, BC, BI);
    int lens[1] = {T + 1}, img[1] = {0}, tokens[T + 1] = {1, 4, 4, 4, 4, 2};
    DecoderBatch b = {1, 1, img, tokens, lens, NULL};
    DecoderLoss l;
    sac_log_set_level(-1);
    ck_assert_int_eq(decoder_forward(&l, c.acts, c.feats, &b, &c.p, &dsz, 0, 1, NULL), SAC_ERR_INVALID);
    lens[0] = 3, tokens[2] = V; /* token out of range */
    ck_assert_int_eq(decoder_forward(&l, c.acts, c.feats, &b, &c.p, &dsz, 0, 1, NULL), SAC_ERR_INVALID);
    tokens[2] = 4, img[0] = 2; /* image out of range */
    ck_assert_int_eq(decoder_forward(&l, c.acts, c.feats, &b, &c.p, &dsz, 0, 1, NULL), SAC_ERR_INVALID);
    img[0] = 0;
    ck_assert_int_eq(decoder_forward(&l, c.acts, c.feats, &b, &c.p, &dsz, 0, 1, NULL), SAC_OK);
    ck_assert_int_eq(l.n_tokens, 3);
    sac_log_set_level(SAC_LOG_INFO);
    decoder_acts_free(c.acts);
    free(c.buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decoder");
    const TTest *tests[] = {test_lstm_gradcheck, test_embedding_gradcheck, test_crossentropy_gradcheck,
        test_decoder_gradcheck, test_decoder_weighted_gradcheck, test_decoder_rejects_bad_batch, NULL};
    check_case(s, "gradients", 0, tests);
    return check_run(s);
}
