/*
 * test_finetune.c - fine-tuning MobileNetV2's top blocks in `saccade train` (--finetune-from),
 * on a tiny random grid-7 backbone and a tiny dataset the test draws itself:
 *   - the full step's gradient (decoder loss through encoder.proj through the top blocks) wrt
 *     the fine-tuned backbone tensors against central differences;
 *   - a training run changes every fine-tuned tensor and leaves the frozen ones bit-identical;
 *     the written fp16 model gives, through the standard captioning path (captioner on images),
 *     the features of the training forward (trunk cache + top blocks) within fp16 rounding;
 *   - the dev evaluation during training uses the fine-tuned weights: its scores for the kept
 *     epoch are eval_dataset's on the written (fp32) model;
 *   - --resume refuses another --finetune-from; a run killed and resumed ends with the bytes of
 *     an uninterrupted one;
 *   - self-critical training from a fine-tuned model trains the same blocks.
 *
 * Size letters: B images, S input side, P grid positions, Eb backbone channels.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include "captioner.h"
#include "checkrun.h"
#include "eval.h"
#include "mobilenet.h"
#include "model.h"
#include "sac.h"
#include "safetensors.h"
#include "testutil.h"
#include "threadpool.h"
#include "train_step.h"
#include "trainer.h"
#include "trainutil.h"

enum { FIRST = 16, S_IN = 64 }; /* blocks 16, 17 and the 1x1 conv to 1280; a 2x2 grid at 64 x 64 */

/* Eight 20x20 PNGs (a coloured square or stripe on a dim version of its colour, so that every
 * position of the 2x2 grid sees the colour) and a captions.tsv, two captions each. */
static void make_dataset(void)
{
    const char *dir = scratch_dir_make("saccade_finetune");
    ck_assert_ptr_nonnull(dir);
    ck_assert_int_eq(make_shapes_dataset(dir, 1), 0);
}

/* The bounds of make_backbone's weights: variance-keeping (as tests/backbone_helper.c) for the
 * convolutions, small random biases. */
static float finetune_bound(const MobileNetSpec *spec)
{
    const int64_t *s = spec->shape;
    const int linear = strstr(spec->name, "conv.2.weight") || !strcmp(spec->name, "features.1.conv.1.weight");
    return spec->ndim == 4 ? sqrtf((linear ? 3.0f : 6.0f) / (float)(s[1] * s[2] * s[3])) : 0.05f;
}

/* A grid-7 backbone file as saccade import writes it, seeded random weights. */
static void make_backbone(const char *file)
{
    ck_assert_int_eq(make_random_backbone(file, MOBILENET_GRID7, 17, finetune_bound), SAC_OK);
}

static TrainOptions finetune_options(const char *out)
{
    TrainOptions o = shapes_train_options(out);
    o.lr = o.lr_enc = 1e-2f;
    o.lr_backbone = 1e-3f;
    o.backbone = scratch_path("backbone.safetensors");
    ck_assert_int_eq(model_backbone_config(o.backbone, &o.cfg.bb), SAC_OK);
    o.cfg.bb.grid = 7, o.cfg.bb.channels = 1280, o.cfg.bb.proj = 1, o.cfg.bb.finetune_from = FIRST;
    o.cfg.enc.image_size = S_IN;
    return o;
}

/* ---------------------------------------------------------------- the step's gradient */

typedef struct {
    TrainStep *ts;
    const float *trunk;
    DecoderBatch batch;
} GradCtx;

static double step_loss(void *p)
{
    GradCtx *c = p;
    SacRng drop;
    sac_rng_seed(&drop, 5, 5); /* the same dropout mask every evaluation */
    DecoderLoss l;
    ck_assert_int_eq(train_step_grad_features(c->ts, c->trunk, &c->batch, &drop, &l), SAC_OK);
    return l.loss;
}

/* The derivative of the loss along a direction u = (g masked) / |g masked| in the tensor (mask
 * NULL: all of g; else the indices where mask is 1): (L(x + h u) - L(x - h u)) against g . (x+ -
 * x-) (the steps actually applied, after rounding to float), with h |g masked| = 5e-3: the loss
 * moves by 1e-2, far above its float rounding (~1e-6), while each value moves by a tiny part
 * of h, too little to cross many ReLU6 kinks. An error e of the gradient shows as
 * (g . e) / |g| on the whole tensor and as the same sum over the mask's half: both vanish only
 * for an error orthogonal to g on both. Returns 1 on a miss (1% relative; measured <= 0.15%). */
static int directional_check(const char *name, float *x, const float *g, size_t n, const uint8_t *mask, GradCtx *c)
{
    double g2 = 0;
    for (size_t k = 0; k < n; k++)
        if (!mask || mask[k]) g2 += (double)g[k] * g[k];
    const double norm = sqrt(g2), h = 5e-3 / norm;
    ck_assert_double_gt(norm, 0);
    float *x0 = malloc(sizeof(float) * n), *xp = malloc(sizeof(float) * n);
    memcpy(x0, x, sizeof(float) * n);
    for (size_t k = 0; k < n; k++) x[k] = xp[k] = !mask || mask[k] ? (float)(x0[k] + h * g[k] / norm) : x0[k];
    const double lp = step_loss(c);
    double analytic = 0;
    for (size_t k = 0; k < n; k++) {
        x[k] = !mask || mask[k] ? (float)(x0[k] - h * g[k] / norm) : x0[k];
        analytic += (double)g[k] * ((double)xp[k] - x[k]);
    }
    const double lm = step_loss(c), numeric = lp - lm;
    memcpy(x, x0, sizeof(float) * n);
    free(x0), free(xp);
    const double rel = fabs(numeric - analytic) / fmax(fabs(numeric), fabs(analytic));
    printf("directional %-40s %-5s %s: L(+) - L(-) %.6g, gradient . step %.6g, rel err %.2g (tol 1e-02)\n", name,
           mask ? "half" : "whole", rel <= 1e-2 ? "ok" : "FAIL", numeric, analytic, rel);
    return rel > 1e-2;
}

/* dL/d(fine-tuned backbone tensor) of the whole step (cross-entropy + attention penalty, with
 * dropout) against central differences of the float loss; the frozen tensors get no gradient. */
START_TEST(test_finetune_step_gradcheck)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    const int Bi = 2, Bc = 4, V = 9;
    TrainOptions o = finetune_options(scratch_path("unused"));
    ModelConfig cfg = o.cfg;
    cfg.V = V, cfg.A = 6, cfg.D = 10, cfg.M = 5, cfg.T = 6, cfg.dropout = 0.25f, cfg.lambda = 0.5f;
    Model *m = model_create(&cfg);
    ck_assert_ptr_nonnull(m);
    SacRng rng;
    sac_rng_seed(&rng, 23, 1);
    model_init(m, &rng);
    ck_assert_int_eq(model_load_backbone(m, scratch_path("backbone.safetensors"), 0), SAC_OK);
    /* decoder weights 4x their init scale: the loss then depends strongly on the features, and
     * the gradients reaching the backbone stand above the float32 noise of the differences */
    for (int i = 0; i < m->n_specs; i++)
        if (!strncmp(m->specs[i].name, "decoder.", 8))
            for (size_t k = 0; k < m->specs[i].numel; k++) m->data[m->specs[i].offset + k] *= 4.0f;
    const int first = model_backbone_first_trained(m);
    ck_assert_int_lt(first, m->n_backbone);
    /* the trunk's output below features.16 for random images */
    MobileNetConfig mc;
    model_mobilenet_config(&m->cfg, &mc);
    MobileNetBlockShape sh;
    ck_assert_int_eq(mobilenet_block_shape(&mc, FIRST, &sh), SAC_OK);
    ck_assert_int_eq(sh.first_spec, first);
    MobileNetInfer *net = mobilenet_infer_create(&mc, (const float *const *)m->p.backbone, Bi);
    ck_assert_ptr_nonnull(net);
    float *images = malloc(sizeof(float) * Bi * 3 * S_IN * S_IN);
    float *trunk = malloc(sizeof(float) * Bi * sh.side * sh.side * sh.cin);
    fill_uniform(images, (size_t)Bi * 3 * S_IN * S_IN, -1, 1, &rng);
    ck_assert_int_eq(mobilenet_infer_trunk(net, trunk, images, Bi, FIRST), SAC_OK);
    GradCtx c = {.ts = train_step_create(m, Bi, Bc), .trunk = trunk};
    ck_assert_ptr_nonnull(c.ts);
    static int img[4] = {0, 1, 1, 0}, lens[4] = {4, 2, 6, 3}, tokens[4 * 7];
    for (int b = 0; b < Bc; b++) {
        tokens[b * 7] = SAC_VOCAB_START;
        for (int t = 1; t <= 6; t++) tokens[b * 7 + t] = t < lens[b] ? 4 + (int)sac_rng_below(&rng, V - 4) : SAC_VOCAB_END;
    }
    c.batch = (DecoderBatch){Bc, Bi, img, tokens, lens, NULL};
    step_loss(&c);
    float *g = malloc(sizeof(float) * m->n_floats);
    memcpy(g, train_step_grads(c.ts), sizeof(float) * m->n_floats);
    int bad = 0, checked = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        if (!s->trainable) { /* frozen: no gradient written */
            for (size_t k = 0; k < s->numel; k++) ck_assert_float_eq(g[s->offset + k], 0.0f);
            continue;
        }
        checked++;
        uint8_t *half = malloc(s->numel);
        for (size_t k = 0; k < s->numel; k++) half[k] = sac_rng_uniform(&rng) < 0.5f;
        bad += directional_check(s->name, m->data + s->offset, g + s->offset, s->numel, NULL, &c);
        bad += directional_check(s->name, m->data + s->offset, g + s->offset, s->numel, half, &c);
        free(half);
        /* index by index where a float32 difference can resolve it: the head's bias (each value
         * moves 8 ReLU6 units directly; 24 samples, 5%: one measured at 2.2%). Deeper tensors
         * reach thousands of ReLU6 units: a step large enough for the float loss (1e-2)
         * crosses kinks and scatters the estimates by 5-100%, a small one drowns in the loss's
         * rounding (measured at eps 1e-2, 1e-3, 3e-4); test_mobilenet checks them index by
         * index in double. */
        if (!strcmp(s->name, "backbone.features.18.0.bias"))
            bad += gradcheck(s->name, m->data + s->offset, g + s->offset, s->numel, step_loss, &c, 24, 1e-2, 5e-2,
                             2e-5, &rng);
    }
    ck_assert_int_eq(checked, 6 * (17 - FIRST + 1) + 2);
    ck_assert_int_eq(bad, 0);
    free(g), free(images), free(trunk);
    mobilenet_infer_free(net);
    train_step_free(c.ts);
    model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- training */

/* The backbone file's tensor `name` (without "backbone."), rounded through fp16 as training
 * loads it (store_f16). */
static float *file_tensor(const char *name, size_t numel, int ndim, const int64_t *shape)
{
    SafeTensors *bf = safetensors_read(scratch_path("backbone.safetensors"));
    ck_assert_ptr_nonnull(bf);
    float *x = malloc(sizeof(float) * numel);
    ck_assert_int_eq(safetensors_load_f32(bf, name, x, ndim, shape), SAC_OK);
    for (size_t k = 0; k < numel; k++) x[k] = sac_half_to_float(sac_float_to_half(x[k]));
    safetensors_free(bf);
    return x;
}

START_TEST(test_finetune_training)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    TrainOptions a = finetune_options(scratch_path("a.safetensors"));
    ck_assert_int_eq(train_run(&a), SAC_OK);
    Model *m = model_load(scratch_path("a.safetensors")); /* the fp16 file saccade caption reads */
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->cfg.bb.finetune_from, FIRST);
    const int first = model_backbone_first_trained(m);
    /* frozen tensors: bit-identical to the (fp16-rounded) backbone file; fine-tuned ones changed */
    int frozen = 0, tuned = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        float *x = file_tensor(s->name + 9, s->numel, s->ndim, s->shape);
        size_t changed = 0;
        for (size_t k = 0; k < s->numel; k++) changed += m->data[s->offset + k] != x[k];
        if (s->trainable) {
            ck_assert_msg(changed > s->numel / 2, "%s: %zu of %zu values changed", s->name, changed, s->numel);
            tuned++;
        } else {
            ck_assert_msg(changed == 0, "%s: %zu of %zu frozen values changed", s->name, changed, s->numel);
            frozen++;
        }
        free(x);
    }
    ck_assert_int_eq(tuned, 6 * (17 - FIRST + 1) + 2);
    ck_assert_int_eq(tuned + frozen, m->n_backbone);
    ck_assert_int_eq(m->specs[0].trainable, 1); /* the fine-tuned tensors lead the layout */
    ck_assert_ptr_eq(m->p.backbone[first], m->data + m->specs[0].offset);

    /* the model the run ended with, in fp32 (the checkpoint), and the training forward on it:
     * trunk (mobilenet_infer_trunk) then the fine-tuned blocks (train_step_backbone_features) */
    SafeTensors *ck = safetensors_read(scratch_path("a.safetensors.ckpt"));
    ck_assert_ptr_nonnull(ck);
    Model *m32 = model_from_safetensors(ck);
    safetensors_free(ck);
    ck_assert_ptr_nonnull(m32);
    for (size_t k = 0; k < m->n_floats; k++) /* the file is that model rounded to fp16 */
        ck_assert_float_eq(m->data[k], sac_half_to_float(sac_float_to_half(m32->data[k])));
    const int B = 3, P = m->P, Eb = 1280;
    MobileNetConfig mc;
    model_mobilenet_config(&m32->cfg, &mc);
    MobileNetBlockShape sh;
    ck_assert_int_eq(mobilenet_block_shape(&mc, FIRST, &sh), SAC_OK);
    MobileNetInfer *net = mobilenet_infer_create(&mc, (const float *const *)m32->p.backbone, B);
    TrainStep *ts = train_step_create(m32, B, 8);
    ck_assert_ptr_nonnull(net);
    ck_assert_ptr_nonnull(ts);
    float *images = malloc(sizeof(float) * B * 3 * S_IN * S_IN), *trunk = malloc(sizeof(float) * B * sh.side * sh.side * sh.cin);
    float *train_f = malloc(sizeof(float) * B * P * Eb), *cap_f = malloc(sizeof(float) * B * P * Eb);
    SacRng rng;
    sac_rng_seed(&rng, 3, 3);
    fill_uniform(images, (size_t)B * 3 * S_IN * S_IN, -1, 1, &rng);
    ck_assert_int_eq(mobilenet_infer_trunk(net, trunk, images, B, FIRST), SAC_OK);
    ck_assert_int_eq(train_step_backbone_features(ts, trunk, B, train_f), SAC_OK);
    /* the standard path: a captioner on the fp16 file, from the images */
    Captioner *cap = captioner_create(m, 4, 3);
    ck_assert_ptr_nonnull(cap);
    ck_assert_int_eq(captioner_backbone_features(cap, images, B, cap_f), SAC_OK);
    double fmax_abs = 0;
    for (int k = 0; k < B * P * Eb; k++) fmax_abs = fmax(fmax_abs, fabs(train_f[k]));
    ck_assert_double_gt(fmax_abs, 0.1);
    /* fp16 weights (relative rounding 2^-11 ~ 4.9e-4 per weight) through three 1x1 convs and a
     * depthwise: measured 1.3e-3 of the largest feature at worst; 1% of it is the bound */
    ck_assert_int_eq(check_tensor("features: caption path (fp16 file) vs training forward", cap_f, train_f,
                                  (size_t)B * P * Eb, 1e-2 * fmax_abs, 1e-2), 0);
    free(images), free(trunk), free(train_f), free(cap_f);
    captioner_free(cap);
    train_step_free(ts);
    mobilenet_infer_free(net);
    model_free(m32);
    model_free(m);
}
END_TEST

/* The dev evaluation of a run decodes with the fine-tuned weights: the scores it reports for the
 * epoch it kept are eval_dataset's on the model it wrote (fp32, so the same weights; the run's
 * dev features come from the fp16 trunk cache, eval_dataset's from the images); and the same
 * model with the backbone it started from scores otherwise, so a dev evaluation on stale
 * backbone weights would not have passed. */
START_TEST(test_finetune_dev_evaluation)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    TrainOptions o = finetune_options(scratch_path("e.safetensors"));
    o.dev_split = "all";
    o.store_f16 = 0;
    o.epochs = 12, o.patience = 0, o.augment = 0, o.cfg.dropout = 0.0f; /* captions that name colours */
    o.lr_backbone = 3e-3f;
    DevRun d;
    ck_assert_int_eq(dev_run(&o, &d), SAC_OK);
    ck_assert_int_eq(d.kept.n_evaluated, 12);
    Model *m = d.model;
    const EvalResult *r = &d.eval;
    const SacScores *kept = &d.kept.best;
    /* the starting backbone under the same decoder */
    for (int i = model_backbone_first_trained(m); i < m->n_backbone; i++) {
        const ParamSpec *s = NULL;
        for (int j = 0; j < m->n_specs && !s; j++)
            if (m->data + m->specs[j].offset == m->p.backbone[i]) s = &m->specs[j];
        ck_assert_ptr_nonnull(s);
        float *x = file_tensor(s->name + 9, s->numel, s->ndim, s->shape);
        memcpy(m->p.backbone[i], x, sizeof(float) * s->numel);
        free(x);
    }
    EvalResult q;
    ck_assert_int_eq(eval_dataset(m, d.data, &d.opt, 0, 1, &q), SAC_OK);
    printf("dev CIDEr-D: reported by the run %.6f, eval_dataset on its model %.6f, with the starting backbone %.6f\n",
           kept->cider_d, r->scores.cider_d, q.scores.cider_d);
    for (int i = 0; i < r->n_images; i++) printf("  %s | %s\n", r->captions[i], q.captions[i]);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(r->scores.bleu[i], kept->bleu[i], 1e-12);
    ck_assert_double_eq_tol(r->scores.cider_d, kept->cider_d, 1e-12);
    ck_assert_double_ne_tol(q.scores.cider_d, kept->cider_d, 1e-6);
    eval_result_clear(&q);
    dev_run_clear(&d);
}
END_TEST

/* ---------------------------------------------------------------- resume */

START_TEST(test_finetune_resume)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    TrainOptions a = finetune_options(scratch_path("a.safetensors"));
    ck_assert_int_eq(train_run(&a), SAC_OK);
    TrainOptions b = finetune_options(scratch_path("b.safetensors"));
    b.max_steps = 4; /* mid-epoch 2 */
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    b.resume = 1;
    b.max_steps = 6; /* the end of epoch 2 */
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    /* another --finetune-from (or none) is refused, naming the flag */
    sac_log_set_sink(keep_errors, NULL);
    TrainOptions r = b;
    r.max_steps = 0;
    r.cfg.bb.finetune_from = 17;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--finetune-from 16"));
    r.cfg.bb.finetune_from = 0;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--finetune-from 16"));
    sac_log_set_sink(NULL, NULL);
    b.max_steps = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert(same_file(scratch_path("a.safetensors"), scratch_path("b.safetensors")));
    ck_assert(same_file(scratch_path("a.safetensors.ckpt"), scratch_path("b.safetensors.ckpt")));
    /* and the fine-tuning did something: a frozen run ends elsewhere */
    TrainOptions c = finetune_options(scratch_path("c.safetensors"));
    c.cfg.bb.finetune_from = 0;
    ck_assert_int_eq(train_run(&c), SAC_OK);
    ck_assert(!same_file(scratch_path("a.safetensors"), scratch_path("c.safetensors")));
}
END_TEST

/* Self-critical training from a fine-tuned model goes on fine-tuning the same blocks (the
 * model's config says which; the trunk cache and the top blocks' backward serve it as well),
 * and leaves the frozen ones alone. */
START_TEST(test_finetune_scst)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    TrainOptions x = finetune_options(scratch_path("xe.safetensors"));
    ck_assert_int_eq(train_run(&x), SAC_OK);
    TrainOptions o;
    train_default_options(&o);
    o.data = scratch_path("captions.tsv");
    o.train_split = NULL, o.dev_split = NULL;
    o.out = scratch_path("scst.safetensors");
    o.scst = 1, o.init = scratch_path("xe.safetensors");
    o.batch_images = 3, o.epochs = 1, o.report_every_s = 1e9;
    o.lr = o.lr_enc = 1e-3f, o.lr_backbone = 1e-3f;
    ck_assert_int_eq(train_run(&o), SAC_OK);
    Model *a = model_load(scratch_path("xe.safetensors")), *b = model_load(scratch_path("scst.safetensors"));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->cfg.bb.finetune_from, FIRST);
    for (int i = 0; i < a->n_specs; i++) {
        const ParamSpec *s = &a->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        size_t changed = 0;
        for (size_t k = 0; k < s->numel; k++) changed += a->data[s->offset + k] != b->data[s->offset + k];
        if (s->trainable)
            ck_assert_msg(changed > 0, "%s: unchanged by self-critical training", s->name);
        else
            ck_assert_msg(changed == 0, "%s: %zu frozen values changed", s->name, changed);
    }
    model_free(a), model_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("finetune");
    /* one case per test, so CK_RUN_CASE=name runs one */
    const struct {
        const char *name;
        const TTest *tests[2];
    } cases[] = {{"gradcheck", {test_finetune_step_gradcheck}},
                 {"training", {test_finetune_training}},
                 {"dev", {test_finetune_dev_evaluation}},
                 {"resume", {test_finetune_resume}},
                 {"scst", {test_finetune_scst}}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_case(s, cases[i].name, 300, cases[i].tests);
    return check_run(s);
}
