/*
 * test_trainer.c - the training run end to end on a tiny dataset the test draws itself:
 * a run killed part-way and resumed from its checkpoint ends with exactly the model of an
 * uninterrupted run; the run is deterministic for a fixed seed; a dataset entry whose image is
 * missing is reported and skipped; the dev evaluation and best-model file work.
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
#include "trainer.h"
#include "trainutil.h"

#ifndef XE_EPOCHS
#define XE_EPOCHS 150
#endif
#ifndef SCST_EPOCHS
#define SCST_EPOCHS 10
#endif

/* Eight 20x20 PNGs: a coloured square or stripe on gray, and a captions.tsv with two captions
 * each, plus one line naming an image that does not exist. */
static void make_dataset(void)
{
    const char *dir = scratch_dir_make("saccade_trainer");
    ck_assert_ptr_nonnull(dir);
    ck_assert_int_eq(make_shapes_dataset(dir, 0), 0);
    FILE *tsv = fopen(scratch_path("captions.tsv"), "a");
    ck_assert_ptr_nonnull(tsv);
    fprintf(tsv, "missing.png\ta picture that is not there\n");
    ck_assert_int_eq(fclose(tsv), 0);
}

static TrainOptions tiny_options(const char *out)
{
    TrainOptions o = shapes_train_options(out);
    o.lr = o.lr_enc = 3e-3f;
    o.augment = 1;
    o.store_f16 = 0;
    o.cfg.enc.image_size = 16;
    o.cfg.enc.n_conv = 2;
    o.cfg.enc.conv[0] = (ConvSpec){6, 2, 0};
    o.cfg.enc.conv[1] = (ConvSpec){8, 1, 1};
    return o;
}

static int warnings;
static void count_warnings(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_WARN) {
        warnings++;
        printf("warning: %s\n", msg);
    }
}

START_TEST(test_resume_equals_uninterrupted)
{
    sac_threads_set(1);
    make_dataset();
    sac_log_set_sink(count_warnings, NULL);
    /* uninterrupted */
    TrainOptions a = tiny_options(scratch_path("a.safetensors"));
    ck_assert_int_eq(train_run(&a), SAC_OK);
    ck_assert_int_eq(warnings, 1); /* missing.png, reported once */
    /* the same seed again: the same bytes */
    TrainOptions a2 = tiny_options(scratch_path("a2.safetensors"));
    ck_assert_int_eq(train_run(&a2), SAC_OK);
    ck_assert(same_file(scratch_path("a.safetensors"), scratch_path("a2.safetensors")));
    /* killed after 4 steps (mid-epoch 2), then resumed twice more after further kills */
    TrainOptions b = tiny_options(scratch_path("b.safetensors"));
    b.max_steps = 4;
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    ck_assert_int_eq(access(scratch_path("b.safetensors.ckpt"), R_OK), 0);
    b.resume = 1;
    b.max_steps = 6; /* the end of epoch 2: stops right after its checkpoint */
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    b.max_steps = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert(same_file(scratch_path("a.safetensors"), scratch_path("b.safetensors")));
    ck_assert(same_file(scratch_path("a.safetensors.ckpt"), scratch_path("b.safetensors.ckpt")));
    /* a different seed gives a different model */
    TrainOptions c = tiny_options(scratch_path("c.safetensors"));
    c.seed = 2;
    ck_assert_int_eq(train_run(&c), SAC_OK);
    ck_assert(!same_file(scratch_path("a.safetensors"), scratch_path("c.safetensors")));
    /* the result is a valid model with the tiny vocabulary */
    Model *m = model_load(scratch_path("a.safetensors"));
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(vocab_size(m->vocab), 4 + 10); /* specials; a the on gray square stripe; 4 colours */
    model_free(m);
    sac_log_set_sink(NULL, NULL);
}
END_TEST

START_TEST(test_dev_evaluation_and_resume_refusal)
{
    sac_threads_set(1);
    make_dataset();
    TrainOptions o = tiny_options(scratch_path("d.safetensors"));
    o.dev_split = "all"; /* evaluate on the training images: exercises decoding + scoring */
    o.epochs = 2;
    o.log = scratch_path("log.jsonl");
    ck_assert_int_eq(train_run(&o), SAC_OK);
    size_t n;
    char *log = slurp(scratch_path("log.jsonl"), &n);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "\"cider_d\""));
    ck_assert_ptr_nonnull(strstr(log, "\"grad_norm\""));
    free(log);
    /* --resume refuses changed model or data flags, naming the flag */
    sac_log_set_sink(keep_errors, NULL);
    TrainOptions r = o;
    r.resume = 1, r.epochs = 3;
    r.cfg.D = 16;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--hidden 12"));
    r = o, r.resume = 1, r.epochs = 3;
    r.min_count = 2;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--min-count 1"));
    r = o, r.resume = 1, r.epochs = 3; /* a schedule flag may change */
    r.lr_decay = 0.5f;
    ck_assert_int_eq(train_run(&r), SAC_OK);
    sac_log_set_sink(NULL, NULL);
    /* resuming with a checkpoint that is not one fails cleanly */
    FILE *f = fopen(scratch_path("bad.ckpt"), "w");
    fputs("not a checkpoint", f);
    fclose(f);
    o.resume = 1;
    o.checkpoint = scratch_path("bad.ckpt");
    sac_log_set_level(-1);
    ck_assert_int_lt(train_run(&o), 0);
    sac_log_set_level(SAC_LOG_INFO);
}
END_TEST

/* The dev evaluation of a training run decodes as `saccade eval` does (search_default_options:
 * the bigram repetition guard on, at beam --eval-beam): the scores it reports for the epoch it
 * kept are eval_dataset's on the model it wrote. */
static void assert_same_scores(const SacScores *a, const SacScores *b)
{
    for (int i = 0; i < 4; i++) ck_assert_double_eq(a->bleu[i], b->bleu[i]);
    ck_assert_double_eq(a->rouge_l, b->rouge_l);
    ck_assert_double_eq(a->cider_d, b->cider_d);
}

START_TEST(test_dev_evaluation_decodes_as_eval)
{
    sac_threads_set(1);
    make_dataset();
    TrainOptions o = tiny_options(scratch_path("e.safetensors"));
    o.dev_split = "all";
    o.epochs = 3; /* a model that still repeats itself: "gray gray on on on on on" */
    o.eval_beam = 2;
    DevRun d;
    ck_assert_int_eq(dev_run(&o, &d), SAC_OK);
    ck_assert_int_eq(d.kept.n_evaluated, 3);
    const EvalResult *r = &d.eval;
    assert_same_scores(&r->scores, &d.kept.best);
    /* the guard matters for this model: without it some captions and the scores differ */
    SearchOptions opt = d.opt;
    opt.no_repeat_bigram = 0;
    EvalResult q;
    ck_assert_int_eq(eval_dataset(d.model, d.data, &opt, 0, 1, &q), SAC_OK);
    ck_assert_int_eq(q.n_images, r->n_images);
    int differ = 0;
    for (int i = 0; i < r->n_images; i++) differ += strcmp(r->captions[i], q.captions[i]) != 0;
    ck_assert_int_gt(differ, 0);
    ck_assert(q.scores.bleu[0] != d.kept.best.bleu[0] || q.scores.rouge_l != d.kept.best.rouge_l);
    eval_result_clear(&q);
    dev_run_clear(&d);
}
END_TEST

/* The bounds of make_backbone's weights: He-scaled convolutions (so the activations stay O(1)),
 * biases up to 0.1. */
static float he_bound(const MobileNetSpec *spec)
{
    const float fan_in = spec->ndim == 4 ? (float)(spec->shape[1] * spec->shape[2] * spec->shape[3]) : 1;
    return spec->ndim == 4 ? sqrtf(3.0f / fan_in) : 0.1f;
}

/* A backbone file as saccade import writes it, with seeded random weights, for the grid-14
 * network. */
static void make_backbone(const char *file)
{
    ck_assert_int_eq(make_random_backbone(file, MOBILENET_GRID14, 7, he_bound), SAC_OK);
}

static TrainOptions backbone_options(const char *out, int proj)
{
    TrainOptions o = tiny_options(out);
    o.backbone = scratch_path("backbone.safetensors");
    ck_assert_int_eq(model_backbone_config(o.backbone, &o.cfg.bb), SAC_OK);
    o.cfg.bb.grid = 14, o.cfg.bb.channels = 576, o.cfg.bb.proj = proj;
    o.cfg.E = proj ? 8 : 576;
    o.cfg.enc.image_size = 64; /* a 4x4 grid */
    o.store_f16 = 1;
    o.dev_split = "all"; /* the dev features are cached and decoded too */
    return o;
}

/* Training on a frozen backbone: features cached once (and for the mirror images), the run
 * resumes exactly, the saved fp16 model holds the backbone it trained on, and a captioner on
 * images gives the captions it gives on the cached features. */
START_TEST(test_backbone_training)
{
    sac_threads_set(1);
    make_dataset();
    make_backbone(scratch_path("backbone.safetensors"));
    const int proj = _i;
    TrainOptions a = backbone_options(scratch_path("a.safetensors"), proj);
    a.lr = a.lr_enc = 1e-2f;
    ck_assert_int_eq(train_run(&a), SAC_OK);
    TrainOptions b = backbone_options(scratch_path("b.safetensors"), proj);
    b.lr = b.lr_enc = 1e-2f;
    b.max_steps = 4;
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    b.resume = 1, b.max_steps = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert(same_file(scratch_path("a.safetensors"), scratch_path("b.safetensors")));
    ck_assert(same_file(scratch_path("a.safetensors.ckpt"), scratch_path("b.safetensors.ckpt")));

    Model *m = model_load(scratch_path("a.safetensors"));
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->cfg.bb.kind, SAC_BACKBONE_MOBILENET_V2);
    ck_assert_int_eq(m->P, 16);
    ck_assert_ptr_nonnull(m->backbone_info);
    ck_assert_ptr_nonnull(strstr(m->backbone_info, "test weights"));
    ck_assert_float_eq(m->cfg.mean[0], 0.5f);
    /* the fp16 file holds exactly the (fp16-rounded) backbone weights it was trained with */
    SafeTensors *bf = safetensors_read(scratch_path("backbone.safetensors"));
    ck_assert_ptr_nonnull(bf);
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        float *x = malloc(sizeof(float) * s->numel);
        ck_assert_int_eq(safetensors_load_f32(bf, s->name + 9, x, s->ndim, s->shape), SAC_OK);
        for (size_t k = 0; k < s->numel; k++)
            ck_assert_float_eq(m->data[s->offset + k], sac_half_to_float(sac_float_to_half(x[k])));
        free(x);
    }
    safetensors_free(bf);
    /* captions from images == captions from their backbone features */
    Captioner *cap = captioner_create(m, 4, 3);
    ck_assert_ptr_nonnull(cap);
    const int S = 64, P = m->P, Eb = 576;
    float *images = malloc(sizeof(float) * 2 * 3 * S * S), *bfeats = malloc(sizeof(float) * 2 * P * Eb);
    SacRng rng;
    sac_rng_seed(&rng, 3, 3);
    for (int k = 0; k < 2 * 3 * S * S; k++) images[k] = 2.0f * sac_rng_uniform(&rng) - 1.0f;
    ck_assert_int_eq(captioner_backbone_features(cap, images, 2, bfeats), SAC_OK);
    SearchOptions opt = {.beam = 3, .nbest = 1, .max_len = m->cfg.T, .len_norm = 0.7f};
    Caption c1[2], c2[2];
    ck_assert_int_eq(captioner_run_preprocessed(cap, images, 2, &opt, c1, NULL), SAC_OK);
    ck_assert_int_eq(captioner_run_features(cap, bfeats, 2, &opt, c2, NULL), SAC_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(c1[i].n, c2[i].n);
        for (int t = 0; t < c1[i].n; t++) ck_assert_int_eq(c1[i].tokens[t], c2[i].tokens[t]);
        caption_clear(&c1[i]), caption_clear(&c2[i]);
    }
    free(images), free(bfeats);
    captioner_free(cap);
    model_free(m);
    /* a backbone file for another padding is refused */
    TrainOptions c = backbone_options(scratch_path("c.safetensors"), proj);
    c.cfg.bb.pad_same = 0;
    sac_log_set_level(-1);
    ck_assert_int_lt(train_run(&c), 0);
    sac_log_set_level(SAC_LOG_INFO);
}
END_TEST

/* Greedy CIDEr-D of a model file on the tiny training images (the training CIDEr-D). */
static double train_cider(const char *model)
{
    Model *m = model_load(model);
    ck_assert_ptr_nonnull(m);
    Dataset *ds = dataset_open(scratch_path("captions.tsv"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    SearchOptions opt = {.beam = 1, .nbest = 1, .max_len = m->cfg.T, .len_norm = 0.7f};
    EvalResult r;
    ck_assert_int_eq(eval_dataset(m, ds, &opt, 0, 0, &r), SAC_OK);
    const double c = r.scores.cider_d;
    printf("%s: training CIDEr-D %.4f, BLEU-4 %.4f, distinct %d of %d, mean length %.2f\n", model, c,
           r.scores.bleu[3], r.n_distinct, r.n_images, r.mean_len);
    eval_result_clear(&r);
    dataset_free(ds);
    model_free(m);
    return c;
}

static TrainOptions scst_options(const char *out, const char *init)
{
    TrainOptions o = tiny_options(out);
    o.scst = 1;
    o.init = init;
    o.dev_split = "all"; /* the training images: selection on training CIDEr-D */
    o.lr = o.lr_enc = 1e-3f;
    o.epochs = 4;
    return o;
}

/* Cross-entropy until it plateaus, then self-critical training raises the training CIDEr-D;
 * the log carries the rewards (negative on average: the greedy caption beats most samples). */
START_TEST(test_scst_raises_cider)
{
    sac_threads_set(1);
    make_dataset();
    TrainOptions x = tiny_options(scratch_path("xe.safetensors"));
    x.epochs = XE_EPOCHS;
    x.augment = 0;
    x.cfg.dropout = 0.0f;
    x.log = scratch_path("xe.jsonl");
    x.dev_split = "all"; /* keeps the cross-entropy epoch with the best training CIDEr-D */
    x.patience = 0;
    ck_assert_int_eq(train_run(&x), SAC_OK);
    const double before = train_cider(scratch_path("xe.safetensors"));
    /* cross-entropy has plateaued: its last epochs do not beat the best */
    size_t nx;
    char *xlog = slurp(scratch_path("xe.jsonl"), &nx);
    ck_assert_ptr_nonnull(xlog);
    int last_best = 0;
    for (const char *q = xlog; (q = strstr(q, "\"best\":true")); q++) {
        const char *e = q;
        while (e > xlog && strncmp(e, "{\"epoch\":", 9)) e--;
        last_best = atoi(e + 9);
    }
    free(xlog);
    printf("cross-entropy: best training CIDEr-D at epoch %d of %d\n", last_best, XE_EPOCHS);
    ck_assert_int_le(last_best, XE_EPOCHS - 10);
    TrainOptions o = scst_options(scratch_path("scst.safetensors"), scratch_path("xe.safetensors"));
    o.augment = 0;
    o.epochs = SCST_EPOCHS;
    o.log = scratch_path("scst.jsonl");
    ck_assert_int_eq(train_run(&o), SAC_OK);
    const double after = train_cider(scratch_path("scst.safetensors"));
    size_t n;
    char *log = slurp(scratch_path("scst.jsonl"), &n);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "\"reward\""));
    ck_assert_ptr_nonnull(strstr(log, "\"greedy_cider\""));
    double sum = 0.0;
    for (const char *q = log; (q = strstr(q, "\"reward\":")); q += 9) sum += atof(q + 9);
    ck_assert_double_lt(sum, 0.0);
    fputs(log, stdout);
    free(log);
    ck_assert_double_gt(after, before);
}
END_TEST

/* A self-critical run killed part-way and resumed ends with exactly the model and checkpoint
 * of an uninterrupted one (the checkpoint keeps the sampling RNG), from a model trained on
 * images (_i = 0) and on cached backbone features (_i = 1); the checkpoint refuses to resume
 * as cross-entropy. */
START_TEST(test_scst_resume_equals_uninterrupted)
{
    sac_threads_set(1);
    make_dataset();
    const int bb = _i;
    if (bb) make_backbone(scratch_path("backbone.safetensors"));
    TrainOptions x = bb ? backbone_options(scratch_path("xe.safetensors"), 1) : tiny_options(scratch_path("xe.safetensors"));
    x.dev_split = NULL;
    ck_assert_int_eq(train_run(&x), SAC_OK);
    TrainOptions a = scst_options(scratch_path("a.safetensors"), scratch_path("xe.safetensors"));
    a.epochs = 3;
    a.log = scratch_path("a.jsonl");
    ck_assert_int_eq(train_run(&a), SAC_OK);
    TrainOptions b = scst_options(scratch_path("b.safetensors"), scratch_path("xe.safetensors"));
    b.epochs = 3;
    b.max_steps = 4; /* mid-epoch 2 */
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    b.resume = 1, b.max_steps = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert(same_file(scratch_path("a.safetensors"), scratch_path("b.safetensors")));
    ck_assert(same_file(scratch_path("a.safetensors.ckpt"), scratch_path("b.safetensors.ckpt")));
    /* the beam's K best captions in place of samples (mean baseline): resumes exactly too */
    static char xe_path[256], ba_path[256], bb_path[256], ba_log[256];
    snprintf(xe_path, sizeof(xe_path), "%s", scratch_path("xe.safetensors"));
    snprintf(ba_path, sizeof(ba_path), "%s", scratch_path("ba.safetensors"));
    snprintf(bb_path, sizeof(bb_path), "%s", scratch_path("bb.safetensors"));
    snprintf(ba_log, sizeof(ba_log), "%s", scratch_path("ba.jsonl"));
    TrainOptions ba = scst_options(ba_path, xe_path);
    ba.epochs = 3, ba.dev_split = NULL, ba.scst_sample = SCST_SAMPLE_BEAM, ba.scst_baseline = SCST_BASELINE_MEAN;
    ba.log = ba_log;
    ck_assert_int_eq(train_run(&ba), SAC_OK);
    TrainOptions bm = ba;
    bm.out = bb_path, bm.log = NULL, bm.max_steps = 4;
    ck_assert_int_eq(train_run(&bm), SAC_ERR_CANCELLED);
    bm.resume = 1, bm.max_steps = 0;
    ck_assert_int_eq(train_run(&bm), SAC_OK);
    ck_assert(same_file(ba_path, bb_path));
    ck_assert(!same_file(ba_path, scratch_path("a.safetensors")));
    ck_assert(!same_file(ba_path, xe_path));
    size_t nba;
    char *lba = slurp(ba_log, &nba);
    ck_assert_ptr_nonnull(lba);
    int bsteps = 0;
    for (const char *q = lba; (q = strstr(q, "\"reward\":")); q += 9, bsteps++) ck_assert_double_lt(fabs(atof(q + 9)), 1e-6);
    ck_assert_int_gt(bsteps, 0);
    free(lba);
    /* another seed samples other captions: another model */
    TrainOptions c = scst_options(scratch_path("c.safetensors"), scratch_path("xe.safetensors"));
    c.epochs = 3, c.seed = 2, c.dev_split = NULL;
    ck_assert_int_eq(train_run(&c), SAC_OK);
    ck_assert(!same_file(scratch_path("a.safetensors"), scratch_path("c.safetensors")));
    /* the mean-of-other-samples baseline: each photo's weights sum to zero (the logged mean
     * weight is 0 where the greedy baseline's is not) and the step still moves the model */
    TrainOptions mb = scst_options(scratch_path("m.safetensors"), scratch_path("xe.safetensors"));
    mb.epochs = 3, mb.dev_split = NULL, mb.scst_baseline = SCST_BASELINE_MEAN, mb.log = scratch_path("m.jsonl");
    ck_assert_int_eq(train_run(&mb), SAC_OK);
    ck_assert(!same_file(scratch_path("a.safetensors.ckpt"), scratch_path("m.safetensors.ckpt")));
    size_t nm, na;
    char *lm = slurp(scratch_path("m.jsonl"), &nm), *la = slurp(scratch_path("a.jsonl"), &na);
    ck_assert_ptr_nonnull(lm);
    ck_assert_ptr_nonnull(la);
    int steps = 0;
    double greedy_sum = 0.0;
    for (const char *q = lm; (q = strstr(q, "\"reward\":")); q += 9, steps++) ck_assert_double_lt(fabs(atof(q + 9)), 1e-6);
    for (const char *q = la; (q = strstr(q, "\"reward\":")); q += 9) greedy_sum += fabs(atof(q + 9));
    ck_assert_int_gt(steps, 0);
    ck_assert_double_gt(greedy_sum, 1e-3);
    free(lm), free(la);
    /* a self-critical checkpoint does not resume as cross-entropy, nor with another --init */
    sac_log_set_sink(keep_errors, NULL);
    TrainOptions r = bb ? backbone_options(scratch_path("a.safetensors"), 1) : tiny_options(scratch_path("a.safetensors"));
    r.resume = 1, r.epochs = 4;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "self-critical"));
    char other[256]; /* a copy: scratch_path's rotating buffers hold a's paths */
    snprintf(other, sizeof(other), "%s", scratch_path("c.safetensors"));
    r = scst_options(scratch_path("a.safetensors"), scratch_path("xe.safetensors"));
    r.resume = 1, r.epochs = 4, r.init = other;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--init"));
    r = scst_options(scratch_path("a.safetensors"), scratch_path("xe.safetensors"));
    r.resume = 1, r.epochs = 4, r.scst_baseline = SCST_BASELINE_MEAN;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--scst-baseline"));
    r = ba, r.resume = 1, r.epochs = 4, r.scst_sample = SCST_SAMPLE_MULTINOMIAL;
    ck_assert_int_eq(train_run(&r), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(last_error, "--scst-sample"));
    sac_log_set_sink(NULL, NULL);
}
END_TEST

/* A stop asked for while the data is being cached (Ctrl-C in the first minutes of a large run)
 * ends the run there, before its first step: SAC_ERR_CANCELLED and no file written. Once
 * before the images are decoded; once, on a frozen backbone, between the images and their
 * features (the flag set when the images' "cached" message is logged). */
static volatile int stop_flag;
static void stop_after_images(int level, const char *msg, void *user)
{
    (void)level, (void)user;
    if (strstr(msg, "captions cached")) stop_flag = 1;
}

START_TEST(test_cancel_while_caching)
{
    sac_threads_set(1);
    make_dataset();
    sac_log_set_level(SAC_LOG_ERROR);
    TrainOptions a = tiny_options(scratch_path("a.safetensors"));
    stop_flag = 1;
    a.cancel = &stop_flag;
    ck_assert_int_eq(train_run(&a), SAC_ERR_CANCELLED);
    ck_assert_int_ne(access(scratch_path("a.safetensors"), F_OK), 0);
    ck_assert_int_ne(access(scratch_path("a.safetensors.ckpt"), F_OK), 0);
    sac_log_set_level(SAC_LOG_INFO);

    make_backbone(scratch_path("backbone.safetensors"));
    char out[256]; /* scratch_path reuses its buffers */
    snprintf(out, sizeof(out), "%s", scratch_path("b.safetensors"));
    TrainOptions b = backbone_options(out, 0);
    stop_flag = 0;
    b.cancel = &stop_flag;
    sac_log_set_sink(stop_after_images, NULL);
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    sac_log_set_sink(NULL, NULL);
    ck_assert_int_eq(stop_flag, 1);
    ck_assert_int_ne(access(out, F_OK), 0);
    ck_assert_int_ne(access(scratch_path("b.safetensors.ckpt"), F_OK), 0);
    /* and the same options without the stop train as ever */
    stop_flag = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert_int_eq(access(out, R_OK), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trainer");
    const TTest *tests[] = {test_resume_equals_uninterrupted, test_dev_evaluation_and_resume_refusal,
        test_dev_evaluation_decodes_as_eval, test_scst_raises_cider, test_cancel_while_caching, NULL};
    TCase *tc = check_case(s, "trainer", 120, tests);
    tcase_add_loop_test(tc, test_backbone_training, 0, 2); /* without and with encoder.proj */
    tcase_add_loop_test(tc, test_scst_resume_equals_uninterrupted, 0, 2); /* images, backbone features */
    return check_run(s);
}
