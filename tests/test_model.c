/*
 * test_model.c - the whole model: against PyTorch (committed reference from
 * tests/pyref/make_model_ref.py), a finite-difference check of the full loss w.r.t. every
 * parameter tensor, the model file round trip, and an overfit test that trains a tiny model
 * on drawn images until greedy decoding reproduces every caption exactly.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "captioner.h"
#include "checkrun.h"
#include "model.h"
#include "safetensors.h"
#include "sac.h"
#include "search.h"
#include "testutil.h"
#include "train_step.h"

static const char *data_path(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("SACCADE_TEST_DATA");
    snprintf(buf, sizeof(buf), "%s/%s", dir ? dir : "tests/data", name);
    return buf;
}

static Vocab *tiny_vocab(int V)
{
    char text[1024] = "";
    const char *specials = "<pad>\n<start>\n<end>\n<unk>";
    strcat(text, specials);
    for (int i = 4; i < V; i++) {
        char w[32];
        snprintf(w, sizeof(w), "\nw%d", i);
        strcat(text, w);
    }
    return vocab_from_string(text, "test");
}

/* ---------------------------------------------------------------- against PyTorch */

START_TEST(test_model_matches_pytorch)
{
    SafeTensors *ref = safetensors_read(data_path("model_ref.safetensors"));
    ck_assert_ptr_nonnull(ref);
    ModelConfig cfg;
    ck_assert_int_eq(model_config_from_json(&cfg, safetensors_meta(ref, "config"), "ref"), SAC_OK);
    Model *m = model_create(&cfg);
    ck_assert_ptr_nonnull(m);
    char name[128];
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        snprintf(name, sizeof(name), "param.%s", s->name);
        ck_assert_int_eq(safetensors_load_f32(ref, name, m->data + s->offset, s->ndim, s->shape), SAC_OK);
    }
    const int Bi = 2, Bc = 3, S = cfg.enc.image_size, T = cfg.T, P = m->P;
    float *images = malloc(sizeof(float) * Bi * 3 * S * S);
    int tokens[3 * 6], lens[3], img[3];
    const int64_t ishape[4] = {Bi, 3, S, S}, tshape[2] = {Bc, T + 1}, bshape[1] = {Bc};
    ck_assert_int_eq(safetensors_load_f32(ref, "input.images", images, 4, ishape), SAC_OK);
    ck_assert_int_eq(safetensors_load_raw(ref, "input.tokens", SAC_DTYPE_I32, tokens, 2, tshape), SAC_OK);
    ck_assert_int_eq(safetensors_load_raw(ref, "input.lens", SAC_DTYPE_I32, lens, 1, bshape), SAC_OK);
    ck_assert_int_eq(safetensors_load_raw(ref, "input.img", SAC_DTYPE_I32, img, 1, bshape), SAC_OK);

    /* forward + backward, as the trainer runs it, without dropout */
    EncoderActs *ea = encoder_acts_create(&cfg.enc, Bi);
    DecoderSizes sz = model_decoder_sizes(m);
    DecoderActs *da = decoder_acts_create(&sz, Bc, Bi);
    float *feats = calloc((size_t)Bi * P * cfg.E, sizeof(float)), *dfeats = calloc((size_t)Bi * P * cfg.E, sizeof(float));
    float *grad = calloc(m->n_floats, sizeof(float));
    ModelParams g;
    model_point(m, grad, &g);
    ck_assert_int_eq(encoder_forward(feats, ea, images, &m->p.enc, &cfg.enc, Bi, 1), SAC_OK);
    DecoderBatch batch = {Bc, Bi, img, tokens, lens, NULL};
    DecoderLoss loss;
    ck_assert_int_eq(decoder_forward(&loss, da, feats, &batch, &m->p.dec, &sz, 0.0f, cfg.lambda, NULL), SAC_OK);
    decoder_backward(&g.dec, dfeats, da, feats, &m->p.dec, &sz);
    ck_assert_int_eq(encoder_backward(&g.enc, ea, dfeats, &m->p.enc, &cfg.enc, Bi), SAC_OK);

    /* Tolerances: float32 here vs float64 in the reference, through ~5 steps of recurrence
     * and 3 conv layers with batchnorm: relative 1e-4 on values, atol scaled to each tensor. */
    int bad = 0;
    float out1[1];
    const int64_t one[1] = {1};
    float got;
    got = (float)loss.loss;
    ck_assert_int_eq(safetensors_load_f32(ref, "output.loss", out1, 1, one), SAC_OK);
    bad += check_tensor("loss", &got, out1, 1, 1e-6, 1e-5);
    got = (float)loss.ce;
    safetensors_load_f32(ref, "output.ce", out1, 1, one);
    bad += check_tensor("loss.ce", &got, out1, 1, 1e-6, 1e-5);
    got = (float)loss.penalty;
    safetensors_load_f32(ref, "output.penalty", out1, 1, one);
    bad += check_tensor("loss.penalty", &got, out1, 1, 1e-6, 1e-5);

    float *rf = malloc(sizeof(float) * Bi * P * cfg.E);
    const int64_t fshape[3] = {Bi, P, cfg.E};
    ck_assert_int_eq(safetensors_load_f32(ref, "output.feats", rf, 3, fshape), SAC_OK);
    bad += check_tensor("encoder features", feats, rf, (size_t)Bi * P * cfg.E, 1e-5, 1e-4);
    float *alphas = malloc(sizeof(float) * Bc * T * P), *ra = malloc(sizeof(float) * Bc * T * P);
    const int64_t ashape[3] = {Bc, T, P};
    decoder_get_alphas(da, alphas, &sz);
    ck_assert_int_eq(safetensors_load_f32(ref, "output.alphas", ra, 3, ashape), SAC_OK);
    bad += check_tensor("attention weights", alphas, ra, (size_t)Bc * T * P, 1e-6, 1e-4);

    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        float *r = malloc(sizeof(float) * s->numel);
        if (s->trainable) {
            snprintf(name, sizeof(name), "grad.%s", s->name);
            ck_assert_int_eq(safetensors_load_f32(ref, name, r, s->ndim, s->shape), SAC_OK);
            double mx = 0;
            for (size_t k = 0; k < s->numel; k++) mx = fmax(mx, fabs(r[k]));
            /* atol floor 1e-6: full_att.bias's gradient is exactly 0 in the reference (softmax is shift
             * invariant) and float rounding of the cancelling sum leaves ~1e-7 */
            bad += check_tensor(name, grad + s->offset, r, s->numel, fmax(1e-4 * mx, 1e-6), 1e-3);
        } else {
            snprintf(name, sizeof(name), "after.%s", s->name);
            ck_assert_int_eq(safetensors_load_f32(ref, name, r, s->ndim, s->shape), SAC_OK);
            bad += check_tensor(name, m->data + s->offset, r, s->numel, 1e-6, 1e-5);
        }
        free(r);
    }
    ck_assert_int_eq(bad, 0);
    free(images), free(feats), free(dfeats), free(grad), free(rf), free(alphas), free(ra);
    encoder_acts_free(ea);
    decoder_acts_free(da);
    model_free(m);
    safetensors_free(ref);
}
END_TEST

/* ---------------------------------------------------------------- whole-model gradient check */

static ModelConfig tiny_config(int S, int V)
{
    ModelConfig c;
    model_config_default(&c);
    c.enc.image_size = S;
    c.enc.n_conv = 3;
    c.enc.conv[0] = (ConvSpec){4, 2, 0};
    c.enc.conv[1] = (ConvSpec){6, 1, 1};
    c.enc.conv[2] = (ConvSpec){8, 1, 0};
    c.E = 8, c.A = 6, c.D = 10, c.M = 5, c.V = V, c.T = 6;
    return c;
}

typedef struct {
    Model *m;
    TrainStep *ts;
    float *images;
    DecoderBatch batch;
} GradCtx;

static double model_loss(void *p)
{
    GradCtx *c = p;
    SacRng drop;
    sac_rng_seed(&drop, 5, 5); /* the same dropout mask every evaluation */
    DecoderLoss l;
    ck_assert_int_eq(train_step_grad(c->ts, c->images, &c->batch, &drop, &l), SAC_OK);
    return l.loss;
}

START_TEST(test_model_gradcheck)
{
    const int S = 16, V = 9, Bi = 2, Bc = 4;
    ModelConfig cfg = tiny_config(S, V);
    cfg.dropout = 0.25f, cfg.lambda = 0.5f;
    cfg.enc.batchnorm = _i; /* both encoder variants: with batchnorm, and convs with biases */
    Model *m = model_create(&cfg);
    ck_assert_ptr_nonnull(m);
    SacRng rng;
    sac_rng_seed(&rng, 21, 1);
    model_init(m, &rng);
    /* Non-trivial batchnorm affine parameters, and decoder weights 4x their init scale so that
     * the loss depends strongly on the features: otherwise the encoder's gradients (~1e-4) sit
     * at the float32 noise floor of the finite differences (|L| * 1e-7 / eps). */
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        /* batchnorm shift 1.5..2.5: most ReLU inputs sit well away from the kink at 0 */
        if (strstr(s->name, "encoder.bn") && strstr(s->name, ".weight")) fill_uniform(m->data + s->offset, s->numel, 0.5f, 1.5f, &rng);
        if (strstr(s->name, "encoder.bn") && strstr(s->name, ".bias")) fill_uniform(m->data + s->offset, s->numel, 1.5f, 2.5f, &rng);
        if (!strncmp(s->name, "decoder.", 8))
            for (size_t k = 0; k < s->numel; k++) m->data[s->offset + k] *= 4.0f;
    }
    GradCtx c = {.m = m, .ts = train_step_create(m, Bi, Bc)};
    c.images = malloc(sizeof(float) * Bi * 3 * S * S);
    fill_uniform(c.images, (size_t)Bi * 3 * S * S, -1, 1, &rng);
    static int img[4] = {0, 1, 1, 0}, lens[4] = {4, 2, 6, 3}, tokens[4 * 7];
    for (int b = 0; b < Bc; b++) {
        tokens[b * 7] = SAC_VOCAB_START;
        for (int t = 1; t <= 6; t++) tokens[b * 7 + t] = t < lens[b] ? 4 + (int)sac_rng_below(&rng, V - 4) : SAC_VOCAB_END;
    }
    c.batch = (DecoderBatch){Bc, Bi, img, tokens, lens, NULL};
    model_loss(&c);
    float *g = malloc(sizeof(float) * m->n_trainable);
    memcpy(g, train_step_grads(c.ts), sizeof(float) * m->n_trainable);
    int bad = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (!s->trainable) continue;
        if (strncmp(s->name, "encoder.", 8)) {
            bad += gradcheck(s->name, m->data + s->offset, g + s->offset, s->numel, model_loss, &c, 60, 1e-2, 1e-2,
                             2e-5, &rng);
            continue;
        }
        /* Encoder tensors, seen through the whole model: in float32, with batchnorm over two images
         * and ReLU / max-pool kinks that a perturbation crosses, the finite difference itself is only
         * good to ~10% for the first layers (measured: the estimates for encoder.conv1.weight scatter
         * by 5-20% over eps = 1e-1 .. 1e-4), and an index whose perturbation crosses a kink can be
         * off entirely (seen with and without batchnorm). So: 10% tolerance, and at most 1 in 4 sampled
         * indices may miss it. A wrong
         * backward misses on most indices. Exact agreement (rtol 1e-3) is shown by the float64
         * PyTorch reference in test_model_matches_pytorch. */
        const int n = s->numel < 48 ? (int)s->numel : 48;
        const int miss = gradcheck(s->name, m->data + s->offset, g + s->offset, s->numel, model_loss, &c, 48, 1e-2, 1e-1,
                                   5e-5, &rng);
        if (miss * 4 > n) bad += miss;
    }
    ck_assert_int_eq(bad, 0);
    free(g), free(c.images);
    train_step_free(c.ts);
    model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- model file */

START_TEST(test_model_file_round_trip)
{
    ModelConfig cfg = tiny_config(16, 9);
    Model *m = model_create(&cfg);
    SacRng rng;
    sac_rng_seed(&rng, 3, 1);
    model_init(m, &rng);
    m->vocab = tiny_vocab(9);
    char dir[] = "/tmp/saccade_model_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char p32[256], p16[256];
    snprintf(p32, sizeof(p32), "%s/m32.safetensors", dir);
    snprintf(p16, sizeof(p16), "%s/m16.safetensors", dir);
    ck_assert_int_eq(model_save(m, p32, 0), SAC_OK);
    ck_assert_int_eq(model_save(m, p16, 1), SAC_OK);
    Model *a = model_load(p32), *b = model_load(p16);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(a->cfg.V, 9);
    ck_assert_int_eq(a->cfg.enc.conv[1].pool, 1);
    ck_assert_str_eq(vocab_word(a->vocab, 5), "w5");
    ck_assert_int_eq(memcmp(a->data, m->data, sizeof(float) * m->n_floats), 0);
    /* fp16: within half-precision rounding (relative 2^-11) */
    int bad = 0;
    for (size_t i = 0; i < m->n_floats; i++)
        bad += fabsf(b->data[i] - m->data[i]) > fabsf(m->data[i]) * 4.9e-4f + 6e-8f;
    ck_assert_int_eq(bad, 0);
    model_free(a), model_free(b), model_free(m);
    unlink(p32), unlink(p16), rmdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- overfit */

/* Six 24x24 images: a shape (square / disc / bar) in a colour (red / blue) on gray. */
static void draw_image(float *out, int S, int shape, int colour, const ModelConfig *cfg)
{
    SacImage im;
    sac_image_alloc(&im, S, S, 128);
    const uint8_t rgb[2][3] = {{220, 30, 30}, {30, 60, 220}};
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            float dx = x - S / 2 + 0.5f, dy = y - S / 2 + 0.5f;
            int in = shape == 0 ? (fabsf(dx) < S / 4 && fabsf(dy) < S / 4)
                   : shape == 1 ? (dx * dx + dy * dy < (S / 3) * (S / 3))
                                : (fabsf(dy) < S / 10);
            if (in) memcpy(im.rgb + ((size_t)y * S + x) * 3, rgb[colour], 3);
        }
    }
    sac_image_preprocess(&im, S, cfg->mean, cfg->std, out);
    sac_image_free(&im);
}

START_TEST(test_overfit_tiny_model)
{
    const char *vocab_text = "<pad>\n<start>\n<end>\n<unk>\na\nred\nblue\nsquare\ndisc\nbar\non\ngray\nbig\nthin";
    Vocab *vocab = vocab_from_string(vocab_text, "overfit");
    ck_assert_ptr_nonnull(vocab);
    const char *captions[6] = {"a red square on gray", "a big red disc", "a thin red bar",
                               "a blue square", "a big blue disc on gray", "a thin blue bar on gray"};
    const int S = 24, N = 6;
    ModelConfig cfg = tiny_config(S, vocab_size(vocab));
    cfg.enc.conv[0].cout = 8, cfg.enc.conv[1].cout = 16, cfg.enc.conv[2].cout = 16;
    cfg.E = 16, cfg.A = 16, cfg.D = 32, cfg.M = 16, cfg.T = 8, cfg.dropout = 0.0f, cfg.lambda = 0.1f;
    Model *m = model_create(&cfg);
    ck_assert_ptr_nonnull(m);
    m->vocab = vocab;
    SacRng rng;
    sac_rng_seed(&rng, 42, 1);
    model_init(m, &rng);
    float *images = malloc(sizeof(float) * N * 3 * S * S);
    int img[6], lens[6], tokens[6 * 9];
    for (int i = 0; i < N; i++) {
        draw_image(images + (size_t)i * 3 * S * S, S, i % 3, i / 3, &cfg);
        int trunc, *t = tokens + i * 9;
        int n = vocab_encode(vocab, captions[i], cfg.T - 1, t + 1, &trunc);
        t[0] = SAC_VOCAB_START, t[n + 1] = SAC_VOCAB_END;
        for (int q = n + 2; q <= cfg.T; q++) t[q] = SAC_VOCAB_PAD;
        img[i] = i, lens[i] = n + 1;
    }
    TrainStep *ts = train_step_create(m, N, N);
    DecoderBatch batch = {N, N, img, tokens, lens, NULL};
    DecoderLoss loss = {0};
    double first = 0;
    for (int step = 0; step < 300; step++) {
        ck_assert_int_eq(train_step_grad(ts, images, &batch, NULL, &loss), SAC_OK);
        if (step == 0) first = loss.ce;
        train_step_adam(ts, 3e-3f, 3e-3f, 5.0f, 0.0f);
    }
    printf("overfit: cross-entropy %.4f -> %.4f after 300 steps\n", first, loss.ce);
    ck_assert(loss.ce < 0.05);
    /* greedy decoding with batchnorm folded from the running statistics */
    Captioner *cap = captioner_create(m, N, 3);
    SearchOptions opt = search_default_options(&(DecoderSizes){.T = cfg.T});
    opt.beam = 1;
    Caption out[6];
    ck_assert_int_eq(captioner_run_preprocessed(cap, images, N, &opt, out, NULL), SAC_OK);
    for (int i = 0; i < N; i++) {
        char *text = captioner_text(m, &out[i]);
        printf("overfit: image %d -> \"%s\" (want \"%s\")\n", i, text, captions[i]);
        ck_assert_str_eq(text, captions[i]);
        ck_assert_int_eq(out[i].ended, 1);
        free(text);
        caption_clear(&out[i]);
    }
    /* a caption does not depend on the images decoded with it (rows leave the batch as their
     * captions end): the same tokens and the same log-probability bits one image at a time */
    {
        const size_t PE = (size_t)m->P * cfg.E;
        float *feats = malloc(sizeof(float) * N * PE);
        ck_assert_int_eq(captioner_encode(cap, images, N, feats), SAC_OK);
        DecoderInfer *dec = captioner_decoder(cap);
        Caption all[6], one;
        ck_assert_int_eq(greedy_decode(all, dec, feats, N, &m->p.dec, &opt), SAC_OK);
        int lengths_differ = 0;
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(greedy_decode(&one, dec, feats + i * PE, 1, &m->p.dec, &opt), SAC_OK);
            ck_assert_int_eq(one.n, all[i].n);
            ck_assert_mem_eq(one.tokens, all[i].tokens, sizeof(int) * one.n);
            ck_assert(one.logprob == all[i].logprob);
            lengths_differ |= all[i].n != all[0].n;
            caption_clear(&one);
        }
        ck_assert(lengths_differ);
        for (int i = 0; i < N; i++) caption_clear(&all[i]);
        /* the same for beam search (beam 3, the best 2 of each image) */
        SearchOptions bo = opt;
        bo.beam = 3, bo.nbest = 2;
        Caption ball[6 * 2], bone[2];
        int counts[6];
        ck_assert_int_eq(beam_search_batch(ball, counts, dec, feats, N, &m->p.dec, &bo), SAC_OK);
        for (int i = 0; i < N; i++) {
            const int n = beam_search_run(bone, dec, feats + i * PE, &m->p.dec, &bo);
            ck_assert_int_eq(n, counts[i]);
            ck_assert_int_eq(n, 2);
            for (int k = 0; k < n; k++) {
                const Caption *a = &ball[i * 2 + k], *b = &bone[k];
                ck_assert_int_eq(a->n, b->n);
                ck_assert_int_eq(a->ended, b->ended);
                ck_assert_mem_eq(a->tokens, b->tokens, sizeof(int) * a->n);
                ck_assert(a->logprob == b->logprob && a->score == b->score);
                caption_clear(&bone[k]);
            }
        }
        for (int i = 0; i < N * 2; i++) caption_clear(&ball[i]);
        free(feats);
    }
    /* beam 1 is greedy; beam 3 finds the same (confident) captions */
    for (int i = 0; i < N; i++) {
        opt.beam = 3;
        Caption b[1];
        ck_assert_int_eq(captioner_run_preprocessed(cap, images + (size_t)i * 3 * S * S, 1, &opt, b, NULL), SAC_OK);
        char *text = captioner_text(m, &b[0]);
        ck_assert_str_eq(text, captions[i]);
        free(text);
        caption_clear(&b[0]);
    }
    captioner_free(cap);
    train_step_free(ts);
    free(images);
    model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    const TTest *tests[] = {test_model_matches_pytorch, test_model_file_round_trip, test_overfit_tiny_model, NULL};
    TCase *tc = check_case(s, "model", 120, tests);
    tcase_add_loop_test(tc, test_model_gradcheck, 0, 2);
    return check_run(s);
}
