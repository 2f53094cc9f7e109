/*
 * bench_saccade.c - saccade's side of the speed comparison with the PyTorch peer
 * (../shared/peer/sat_ref.py), on the peer's sizes, with random weights (speed only).
 *
 * Two models:
 *   default  the peer's default sizes: 128x128 input, 8x8 grid (P=64), E=256 encoder channels,
 *            A=256, D=512 hidden, M=256 embedding, V=3000, T=20, batch 32 (the peer's names:
 *            D=256 enc channels, H=512 hidden, E=256 embed); batchnorm, so the peer runs --bn.
 *   --mnv2   the peer's --encoder mnv2 --grid 14: a MobileNetV2 backbone (encoder/mobilenet.h),
 *            224x224 input, its 14x14x576 grid (P=196) fed to the decoder as is (no projection:
 *            E=576, the peer's D), TensorFlow SAME padding as the TFLite weights have; the same
 *            A/D/M/V/T. The backbone gets random He-scaled weights (finite, activations of order
 *            1 as in the real network: see backbone_random).
 *
 *   --train K      training images/s: batch of 32 random images with K captions each of 20
 *                  steps (the peer's --caps-per-image K), gradient step + Adam, dropout on.
 *                  With --mnv2 the frozen-backbone step (the peer's --frozen-encoder): the
 *                  backbone features of the 32 images are computed once before the timing and
 *                  each step is train_step_grad_features (decoder forward + backward) + Adam
 *   --scst K       self-critical training images/s (no PyTorch peer): per step, the batch of 32
 *                  encoded, K captions sampled per image and the greedy one decoded (20 steps
 *                  each: <end> never wins, see below), CIDEr-D rewards against 5 random
 *                  references per image, the weighted teacher-forced backward + Adam
 *                  (scst_step_grad). With --mnv2 on cached backbone features, as --train
 *   --scst-beam    with --scst K: the K best captions of a beam of width K in place of the
 *                  K samples (train --scst-sample beam), mean baseline
 *   --infer        encoder time for 1 and 64 images, one image captioned end to end (encoder +
 *                  greedy), greedy / beam 3 / beam 5 for one image, greedy decoding of 64 feature
 *                  grids, captioning 64 images (encoder + greedy)
 *   --quick        fewer iterations (a smoke test of the bench, not a measurement)
 *   --json FILE    write the numbers (and this process's peak RSS) as JSON
 *   --write-model PATH, --write-image PATH   a model file (fp16, as training saves by default)
 *                  and a PNG of the model's input size, for measuring the `saccade caption` and
 *                  `saccade batch` programs
 *   --report DIR   read the JSON files bench.sh leaves in DIR and DIR/rss.txt (lines "name
 *                  kilobytes") and print the comparison table
 *
 * Decoding runs a fixed 20 steps like the peer (which never stops early): <end> gets a bias of
 * -1e4 (also in the model files written), so neither greedy nor beam search ends before
 * max_len (and greedy decoding, which drops finished captions from its batch, keeps all 64).
 * Timings are wall clock after a warm-up; the table shows medians (min..max in the JSON).
 *
 * Size letters: B images, Bc captions, S input side, P grid positions, E encoder channels,
 * Eb backbone channels, T steps, V vocabulary, K beam width.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "captioner.h"
#include "image.h"
#include "matmul.h"
#include "model.h"
#include "rng.h"
#include "sac.h"
#include "search.h"
#include "threadpool.h"
#include "trainer.h"
#include "vocab.h"

enum { BENCH_V = 3000, BENCH_BATCH = 32, BENCH_NB = 64, BENCH_MAX_ITERS = 64 };

typedef struct {
    double t[BENCH_MAX_ITERS];
    int n;
} Samples;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static cJSON *stats_json(Samples *s)
{
    qsort(s->t, s->n, sizeof(double), cmp_double);
    double med = s->n % 2 ? s->t[s->n / 2] : 0.5 * (s->t[s->n / 2 - 1] + s->t[s->n / 2]);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min", s->t[0]);
    cJSON_AddNumberToObject(o, "median", med);
    cJSON_AddNumberToObject(o, "max", s->t[s->n - 1]);
    cJSON_AddNumberToObject(o, "n", s->n);
    return o;
}

static double median_of(const cJSON *stats)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(stats, "median");
    return cJSON_IsNumber(m) ? m->valuedouble : NAN;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The backbone's random weights: normal with std gain / sqrt(fan_in), gain sqrt(2) for the convs
 * a ReLU6 follows and 1 for the linear 1x1 projections of the blocks (features.N.conv.2 and
 * features.1.conv.1), so activations keep a scale of order 1 through the network, as in the
 * trained one; biases U(-0.1, 0.1). */
static void backbone_random(Model *m, SacRng *rng)
{
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        float *x = m->data + s->offset;
        if (s->ndim == 1) {
            for (size_t k = 0; k < s->numel; k++) x[k] = 0.2f * sac_rng_uniform(rng) - 0.1f;
            continue;
        }
        double fan_in = 1.0;
        for (int d = 1; d < s->ndim; d++) fan_in *= (double)s->shape[d];
        const int linear = strstr(s->name, ".conv.2.weight") || !strcmp(s->name, "backbone.features.1.conv.1.weight");
        const float sd = (float)((linear ? 1.0 : sqrt(2.0)) / sqrt(fan_in));
        for (size_t k = 0; k < s->numel; k++) x[k] = sd * sac_rng_normal(rng);
    }
}

/* A random model of the peer's sizes (see the top of the file) with a vocabulary of V words;
 * mnv2: with the MobileNetV2 backbone. */
static Model *bench_model(uint64_t seed, int mnv2)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.V = BENCH_V;
    if (mnv2) {
        cfg.enc.image_size = 224;
        cfg.bb = (BackboneConfig){.kind = SAC_BACKBONE_MOBILENET_V2, .grid = 14, .pad_same = 1, .proj = 0,
                                  .channels = 576};
        cfg.E = 576;
        for (int c = 0; c < 3; c++) cfg.mean[c] = cfg.std[c] = 0.5f; /* [-1, 1], as the TFLite weights */
    }
    Model *m = model_create(&cfg);
    if (!m) return NULL;
    size_t len = 64;
    for (int v = 4; v < BENCH_V; v++) len += 8;
    char *words = sac_malloc(len), *p = words;
    if (!words) {
        model_free(m);
        return NULL;
    }
    p += sprintf(p, "<pad>\n<start>\n<end>\n<unk>\n");
    for (int v = 4; v < BENCH_V; v++) p += sprintf(p, "w%d\n", v);
    m->vocab = vocab_from_string(words, "bench");
    free(words);
    SacRng rng;
    sac_rng_seed(&rng, seed, 1);
    model_init(m, &rng);
    if (mnv2) backbone_random(m, &rng);
    if (!m->vocab) {
        model_free(m);
        return NULL;
    }
    m->p.dec.fc_b[SAC_VOCAB_END] = -1e4f; /* fixed-length decoding, like the peer */
    return m;
}

/* Prints the scale of backbone features (B, P, Eb) and fails on a value that is not finite. */
static int check_features(const char *what, const float *f, size_t n, cJSON *out)
{
    double sum = 0.0, mx = 0.0;
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(f[i])) {
            fprintf(stderr, "bench_saccade: %s: feature %zu is %g, expected a finite value\n", what, i, f[i]);
            return SAC_ERR_INVALID;
        }
        sum += fabs(f[i]);
        mx = fabs(f[i]) > mx ? fabs(f[i]) : mx;
        zeros += f[i] == 0.0f;
    }
    fprintf(stderr, "%s: backbone features mean |x| %.3g, max %.3g, %.1f%% zero\n", what, sum / n, mx,
            100.0 * zeros / n);
    cJSON *o = cJSON_AddObjectToObject(out, "feature_scale");
    cJSON_AddNumberToObject(o, "mean_abs", sum / n);
    cJSON_AddNumberToObject(o, "max_abs", mx);
    cJSON_AddNumberToObject(o, "zero_fraction", (double)zeros / n);
    return SAC_OK;
}

static float *random_images(int B, int S, SacRng *rng)
{
    float *x = sac_alloc_floats((size_t)B * 3 * S * S);
    if (x)
        for (size_t i = 0; i < (size_t)B * 3 * S * S; i++) x[i] = sac_rng_normal(rng);
    return x;
}

/* The frozen backbone's features (Bi, P, Eb) of the batch, computed once before the timing (the
 * peer's --frozen-encoder: cached = enc(x)); their scale goes into tr (check_features). */
static int frozen_features(Model *m, const float *images, int Bi, const char *what, cJSON *tr, float **bfeats)
{
    const size_t n = (size_t)Bi * m->P * m->cfg.bb.channels;
    Captioner *cap = captioner_create(m, Bi, 1);
    *bfeats = sac_alloc_floats(n);
    int st = cap && *bfeats ? captioner_backbone_features(cap, images, Bi, *bfeats) : SAC_ERR_NOMEM;
    captioner_free(cap);
    return st ? st : check_features(what, *bfeats, n, tr);
}

/* A training step's gradient (the loss into *loss); timed apart from the Adam update after it. */
typedef int (*GradFn)(void *ctx, DecoderLoss *loss);

typedef struct {
    Samples tot, grad, adam; /* seconds: the whole step, its gradient, its Adam update */
    DecoderLoss loss;        /* the last step's */
} StepTimes;

/* warmup + iters steps of grad then Adam at learning rate lr, the last iters timed into t; a
 * last loss that is not finite fails (`what` loss names it). */
static int time_steps(GradFn grad, void *ctx, TrainStep *ts, float lr, int warmup, int iters, const char *what,
                      StepTimes *t)
{
    int st = SAC_OK;
    for (int i = 0; i < warmup + iters && !st; i++) {
        double t0 = sac_time();
        st = grad(ctx, &t->loss);
        double t1 = sac_time();
        train_step_adam(ts, lr, lr, 5.0f, 0.0f);
        double t2 = sac_time();
        if (i >= warmup) {
            t->tot.t[t->tot.n++] = t2 - t0;
            t->grad.t[t->grad.n++] = t1 - t0;
            t->adam.t[t->adam.n++] = t2 - t1;
        }
    }
    if (!st && !isfinite(t->loss.loss)) {
        fprintf(stderr, "bench_saccade: %s loss %g, expected a finite value\n", what, t->loss.loss);
        st = SAC_ERR_INVALID;
    }
    return st;
}

/* The timed steps in tr: the model, per_image (its key names what the count is), the gradient's
 * (and with_adam, Adam's) times, the whole step's and images/s. Returns the median step time. */
static double add_step_times(cJSON *tr, int mnv2, const char *per_image, int count, StepTimes *t, int with_adam,
                             int Bi)
{
    cJSON_AddStringToObject(tr, "model", mnv2 ? "mnv2 grid 14, frozen backbone" : "from scratch");
    cJSON_AddNumberToObject(tr, per_image, count);
    cJSON_AddItemToObject(tr, "grad", stats_json(&t->grad));
    if (with_adam) cJSON_AddItemToObject(tr, "adam", stats_json(&t->adam));
    cJSON *total = stats_json(&t->tot);
    double med = median_of(total);
    cJSON_AddItemToObject(tr, "total", total);
    cJSON_AddNumberToObject(tr, "images_per_s", Bi / med);
    return med;
}

typedef struct {
    TrainStep *ts;
    const float *input; /* images (Bi, 3, S, S), or with features the backbone's (Bi, P, Eb) */
    int features;
    const DecoderBatch *batch;
    SacRng *drop;
} XeGrad;

static int xe_grad(void *p, DecoderLoss *loss)
{
    XeGrad *x = p;
    return x->features ? train_step_grad_features(x->ts, x->input, x->batch, x->drop, loss)
                       : train_step_grad(x->ts, x->input, x->batch, x->drop, loss);
}

static int bench_train(cJSON *out, int caps, int mnv2, int warmup, int iters)
{
    Model *m = bench_model(1, mnv2);
    if (!m) return SAC_ERR_NOMEM;
    const int Bi = BENCH_BATCH, Bc = Bi * caps, T = m->cfg.T, S = m->cfg.enc.image_size;
    SacRng rng;
    sac_rng_seed(&rng, 7, 1);
    TrainStep *ts = train_step_create(m, Bi, Bc);
    float *images = random_images(Bi, S, &rng);
    int *img = sac_malloc(sizeof(int) * Bc), *lens = sac_malloc(sizeof(int) * Bc);
    int *tokens = sac_malloc(sizeof(int) * Bc * (T + 1));
    int st = ts && images && img && lens && tokens ? SAC_OK : SAC_ERR_NOMEM;
    cJSON *tr = cJSON_AddObjectToObject(out, "train");
    float *bfeats = NULL;
    if (!st && mnv2) st = frozen_features(m, images, Bi, "train", tr, &bfeats);
    for (int c = 0; c < Bc && !st; c++) {
        img[c] = c / caps;
        lens[c] = T; /* 20 steps, like the peer */
        tokens[(size_t)c * (T + 1)] = SAC_VOCAB_START;
        for (int t = 1; t <= T; t++) tokens[(size_t)c * (T + 1) + t] = 4 + (int)sac_rng_below(&rng, BENCH_V - 4);
    }
    DecoderBatch batch = {Bc, Bi, img, tokens, lens, NULL};
    SacRng drop;
    sac_rng_seed(&drop, 3, 1);
    XeGrad step = {ts, mnv2 ? bfeats : images, mnv2, &batch, &drop};
    StepTimes t = {0};
    if (!st) st = time_steps(xe_grad, &step, ts, 4e-4f, warmup, iters, "training", &t);
    if (!st) {
        double med = add_step_times(tr, mnv2, "caps_per_image", caps, &t, 1, Bi);
        cJSON_AddNumberToObject(tr, "last_loss", t.loss.loss);
        cJSON_AddNumberToObject(tr, "peak_rss_kb", (double)peak_rss_kb());
        fprintf(stderr, "train%s B=%d caps/img=%d: %.1f ms/step (grad %.1f, adam %.1f), %.1f images/s, loss %.3f\n",
                mnv2 ? " (mnv2, frozen)" : "", Bi, caps, 1e3 * med, 1e3 * median_of(cJSON_GetObjectItem(tr, "grad")),
                1e3 * median_of(cJSON_GetObjectItem(tr, "adam")), Bi / med, t.loss.loss);
    }
    free(images), free(img), free(lens), free(tokens), free(bfeats);
    train_step_free(ts);
    model_free(m);
    return st;
}

typedef struct {
    ScstStep *sc;
    TrainStep *ts;
    const float *input; /* as XeGrad's */
    int Bi;
    const int *items;
    SacRng *rng;
    double *sums;
} ScstGrad;

static int scst_grad(void *p, DecoderLoss *loss)
{
    ScstGrad *s = p;
    return scst_step_grad(s->sc, s->ts, s->input, s->Bi, s->Bi, s->items, s->rng, loss, s->sums);
}

/* The self-critical step (scst_step_grad + Adam) on the batch of bench_train, K samples per
 * image; the reward's references are 5 random 12-word captions per image. */
static int bench_scst(cJSON *out, int K, int mnv2, int beam, int warmup, int iters)
{
    Model *m = bench_model(1, mnv2);
    if (!m) return SAC_ERR_NOMEM;
    enum { NREF = 5, NW = 12 };
    const int Bi = BENCH_BATCH, S = m->cfg.enc.image_size;
    SacRng rng;
    sac_rng_seed(&rng, 7, 2);
    char *text = sac_malloc((size_t)Bi * NREF * NW * 8);
    const char **flat = sac_malloc(sizeof(char *) * Bi * NREF);
    const char **refs[BENCH_BATCH];
    int n_refs[BENCH_BATCH], items[BENCH_BATCH];
    int st = text && flat ? SAC_OK : SAC_ERR_NOMEM;
    for (int r = 0; r < Bi * NREF && !st; r++) {
        char *p = text + (size_t)r * NW * 8;
        flat[r] = p;
        for (int w = 0; w < NW; w++) p += sprintf(p, "%sw%u", w ? " " : "", 4 + sac_rng_below(&rng, BENCH_V - 4));
    }
    for (int b = 0; b < Bi; b++) refs[b] = flat + b * NREF, n_refs[b] = NREF, items[b] = b;
    SacCider *cider = st ? NULL : metrics_cider_create((const char *const *const *)refs, n_refs, Bi);
    TrainStep *ts = train_step_create(m, Bi, Bi * K);
    ScstStep *sc = cider ? scst_step_create(m, cider, Bi, K, beam ? SCST_BASELINE_MEAN : SCST_BASELINE_GREEDY,
                                                 beam ? SCST_SAMPLE_BEAM : SCST_SAMPLE_MULTINOMIAL) : NULL;
    float *images = random_images(Bi, S, &rng), *bfeats = NULL;
    if (!st && (!cider || !ts || !sc || !images)) st = SAC_ERR_NOMEM;
    cJSON *tr = cJSON_AddObjectToObject(out, "scst");
    if (!st && mnv2) st = frozen_features(m, images, Bi, "scst", tr, &bfeats);
    double sums[4] = {0};
    SacRng srng;
    sac_rng_seed(&srng, 3, 4);
    ScstGrad step = {sc, ts, mnv2 ? bfeats : images, Bi, items, &srng, sums};
    StepTimes t = {0};
    if (!st) st = time_steps(scst_grad, &step, ts, 5e-5f, warmup, iters, "self-critical", &t);
    if (!st) {
        double med = add_step_times(tr, mnv2, "samples_per_image", K, &t, 0, Bi);
        cJSON_AddNumberToObject(tr, "peak_rss_kb", (double)peak_rss_kb());
        cJSON_AddBoolToObject(tr, "beam", beam);
        fprintf(stderr, "scst%s B=%d %s/img=%d: %.1f ms/step (sample + greedy + reward + backward %.1f), "
                "%.1f images/s\n", mnv2 ? " (mnv2, frozen)" : "", Bi, beam ? "beam captions" : "samples", K, 1e3 * med,
                1e3 * median_of(cJSON_GetObjectItem(tr, "grad")), Bi / med);
    }
    free(text), free(flat), free(images), free(bfeats);
    scst_step_free(sc);
    metrics_cider_free(cider);
    train_step_free(ts);
    model_free(m);
    return st;
}

typedef int (*BenchFn)(void *ctx);

static cJSON *time_fn(BenchFn fn, void *ctx, int warmup, int iters, int *st)
{
    Samples s = {.n = 0};
    for (int i = 0; i < warmup + iters && !*st; i++) {
        double t0 = sac_time();
        *st = fn(ctx);
        if (i >= warmup) s.t[s.n++] = sac_time() - t0;
    }
    return *st ? NULL : stats_json(&s);
}

typedef struct {
    Model *m;
    Captioner *cap;
    DecoderInfer *inf;
    float *x1, *xb, *f1, *fb; /* images (1|NB, 3, S, S), feats (1|NB, P, E) */
    Caption caps[BENCH_NB * 5];
    int beam, steps;
} InferCtx;

static int run_encode1(void *p)
{
    InferCtx *c = p;
    return captioner_encode(c->cap, c->x1, 1, c->f1);
}

static int run_encode_nb(void *p)
{
    InferCtx *c = p;
    return captioner_encode(c->cap, c->xb, BENCH_NB, c->fb);
}

/* The model's default decoding options at beam width `beam` (1: greedy). */
static SearchOptions beam_options(const Model *m, int beam)
{
    DecoderSizes sz = model_decoder_sizes(m);
    SearchOptions o = search_default_options(&sz);
    o.beam = beam;
    return o;
}

static int run_search1(void *p)
{
    InferCtx *c = p;
    SearchOptions o = beam_options(c->m, c->beam);
    int n = c->beam == 1 ? (greedy_decode(c->caps, c->inf, c->f1, 1, &c->m->p.dec, &o) ? -1 : 1)
                         : beam_search_run(c->caps, c->inf, c->f1, &c->m->p.dec, &o);
    if (n < 0) return n;
    c->steps = c->caps[0].n + c->caps[0].ended;
    for (int i = 0; i < n; i++) caption_clear(&c->caps[i]);
    return SAC_OK;
}

static int run_caption1(void *p)
{
    InferCtx *c = p;
    SearchOptions o = beam_options(c->m, 1);
    int st = captioner_run_preprocessed(c->cap, c->x1, 1, &o, c->caps, NULL);
    if (!st) caption_clear(&c->caps[0]);
    return st;
}

static int run_greedy_nb(void *p)
{
    InferCtx *c = p;
    SearchOptions o = beam_options(c->m, 1);
    int st = greedy_decode(c->caps, c->inf, c->fb, BENCH_NB, &c->m->p.dec, &o);
    for (int i = 0; i < BENCH_NB && !st; i++) caption_clear(&c->caps[i]);
    return st;
}

static int run_caption_nb(void *p)
{
    InferCtx *c = p;
    SearchOptions o = beam_options(c->m, 1);
    int st = captioner_run_preprocessed(c->cap, c->xb, BENCH_NB, &o, c->caps, NULL);
    for (int i = 0; i < BENCH_NB && !st; i++) caption_clear(&c->caps[i]);
    return st;
}

static int bench_infer(cJSON *out, int mnv2, int quick, int iters)
{
    InferCtx c;
    memset(&c, 0, sizeof(c));
    c.m = bench_model(1, mnv2);
    if (!c.m) return SAC_ERR_NOMEM;
    Model *m = c.m;
    const int S = m->cfg.enc.image_size;
    const size_t PE = (size_t)m->P * m->cfg.E;
    const int w1 = quick ? 1 : 5, w3 = quick ? 1 : 3, wb = quick ? 1 : 2, nb = quick ? 3 : 7;
    DecoderSizes sz = model_decoder_sizes(m);
    SacRng rng;
    sac_rng_seed(&rng, 11, 1);
    c.cap = captioner_create(m, BENCH_NB, 5);
    c.inf = c.cap ? captioner_decoder(c.cap) : NULL; /* as users get it: fp16 step weights */
    c.x1 = random_images(1, S, &rng);
    c.xb = random_images(BENCH_NB, S, &rng);
    c.f1 = sac_alloc_floats(PE);
    c.fb = sac_alloc_floats(BENCH_NB * PE);
    int st = c.cap && c.inf && c.x1 && c.xb && c.f1 && c.fb ? SAC_OK : SAC_ERR_NOMEM;
    cJSON *inf = cJSON_AddObjectToObject(out, "infer");
    cJSON_AddStringToObject(inf, "model", mnv2 ? "mnv2 grid 14" : "from scratch");
    cJSON *o;
    if ((o = time_fn(run_encode1, &c, w1, iters, &st))) cJSON_AddItemToObject(inf, "encoder_1img", o);
    if ((o = time_fn(run_caption1, &c, w3, iters, &st))) cJSON_AddItemToObject(inf, "caption_1img", o);
    static const int beams[3] = {1, 3, 5};
    static const char *names[3] = {"greedy_1img", "beam3_1img", "beam5_1img"};
    for (int i = 0; i < 3; i++) {
        c.beam = beams[i];
        if ((o = time_fn(run_search1, &c, w3, iters, &st))) {
            cJSON_AddItemToObject(inf, names[i], o);
            if (c.steps != sz.T) sac_warn("bench: %s ran %d steps, expected %d", names[i], c.steps, sz.T);
        }
    }
    if ((o = time_fn(run_encode_nb, &c, wb, nb, &st))) cJSON_AddItemToObject(inf, "encoder_64img", o);
    if (!st && mnv2) st = check_features("infer", c.fb, BENCH_NB * PE, inf);
    if ((o = time_fn(run_greedy_nb, &c, wb, nb, &st))) cJSON_AddItemToObject(inf, "greedy_64img", o);
    if ((o = time_fn(run_caption_nb, &c, 1, nb, &st))) {
        double med = median_of(o);
        cJSON_AddItemToObject(inf, "caption_64img_total", o);
        cJSON *ips = cJSON_AddObjectToObject(inf, "caption_64img_images_per_s");
        cJSON_AddNumberToObject(ips, "median", BENCH_NB / med);
    }
    cJSON_AddNumberToObject(inf, "peak_rss_kb", (double)peak_rss_kb());
    if (!st) {
        const char *keys[] = {"encoder_1img", "caption_1img", "greedy_1img", "beam3_1img", "beam5_1img",
                              "encoder_64img", "greedy_64img", "caption_64img_total"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            fprintf(stderr, "%-22s %8.2f ms\n", keys[i], 1e3 * median_of(cJSON_GetObjectItem(inf, keys[i])));
    }
    free(c.x1), free(c.xb), free(c.f1), free(c.fb);
    captioner_free(c.cap);
    model_free(m);
    return st;
}

static int write_model_and_image(const char *model_path, const char *image_path, int mnv2)
{
    int st = SAC_OK;
    if (model_path) {
        Model *m = bench_model(1, mnv2);
        st = m ? model_save(m, model_path, 1) : SAC_ERR_NOMEM; /* fp16, as training stores it */
        model_free(m);
    }
    if (!st && image_path) {
        const int S = mnv2 ? 224 : 128;
        SacImage img = {0};
        st = sac_image_alloc(&img, S, S, 0);
        SacRng rng;
        sac_rng_seed(&rng, 5, 1);
        for (size_t i = 0; !st && i < (size_t)S * S * 3; i++) img.rgb[i] = (uint8_t)sac_rng_below(&rng, 256);
        if (!st) st = sac_image_write_png(image_path, &img);
        sac_image_free(&img);
    }
    return st;
}

/* ---- the comparison table ---- */

static cJSON *read_json(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
    cJSON *j = NULL;
    if (s && fread(s, 1, (size_t)n, f) == (size_t)n) {
        s[n] = 0;
        j = cJSON_Parse(s);
    }
    free(s);
    fclose(f);
    return j;
}

static double get_path(const cJSON *j, const char *a, const char *b, const char *c)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, a);
    if (o && b) o = cJSON_GetObjectItemCaseSensitive(o, b);
    if (o && c) o = cJSON_GetObjectItemCaseSensitive(o, c);
    return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

static double read_rss(const char *dir, const char *name)
{
    char path[4096], key[256];
    snprintf(path, sizeof(path), "%s/rss.txt", dir);
    FILE *f = fopen(path, "r");
    double v = NAN, kb;
    while (f && fscanf(f, "%255s %lf", key, &kb) == 2)
        if (!strcmp(key, name)) v = kb;
    if (f) fclose(f);
    return v;
}

static double median_d(double *x, int n)
{
    if (n < 1) return NAN;
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The end-to-end runs DIR/PREFIX_1.json, _2 ...: the median of their files.images_per_s, how
 * many runs there were, and the images each captioned (-1 when the runs disagree). */
static double files_median(const char *dir, const char *prefix, int *runs, int *images)
{
    double v[BENCH_MAX_ITERS];
    int n = 0;
    *images = 0;
    for (int i = 1; i <= BENCH_MAX_ITERS; i++) {
        char name[256];
        snprintf(name, sizeof(name), "%s_%d.json", prefix, i);
        cJSON *j = read_json(dir, name);
        if (!j) break;
        double ips = get_path(j, "files", "images_per_s", NULL), im = get_path(j, "files", "images", NULL);
        if (!isnan(ips)) {
            v[n++] = ips;
            if (*images == 0) *images = (int)im;
            else if (*images != (int)im) *images = -1;
        }
        cJSON_Delete(j);
    }
    *runs = n;
    return median_d(v, n);
}

/* ratio = saccade / peer: "x faster" for rates, the fraction of the peer's time for times */
static void row(const char *what, const char *unit, double sac, double peer, const char *target)
{
    char r[32] = "-", p[32] = "-", s[32] = "-";
    if (!isnan(sac)) snprintf(s, sizeof(s), "%.2f", sac);
    if (!isnan(peer)) snprintf(p, sizeof(p), "%.2f", peer);
    if (!isnan(sac) && !isnan(peer) && peer > 0) snprintf(r, sizeof(r), "%.2fx", sac / peer);
    printf("| %-54s | %-6s | %10s | %10s | %7s | %-14s |\n", what, unit, s, p, r, target);
}

static void e2e_row(const char *dir, const char *label, const char *sac_prefix, const char *peer_prefix)
{
    int sr, pr, si, pi;
    double s = files_median(dir, sac_prefix, &sr, &si), p = files_median(dir, peer_prefix, &pr, &pi);
    if (!sr && !pr) return;
    char what[128];
    snprintf(what, sizeof(what), "%s, %d JPEGs (%d/%d runs)", label, si > 0 ? si : pi, sr, pr);
    row(what, "img/s", s, p, "reported");
    if (sr && pr && si != pi)
        printf("(warning: %s: saccade captioned %d images, the peer %d: not the same work)\n", label, si, pi);
}

static int report(const char *dir)
{
    cJSON *p1 = read_json(dir, "peer1.json"), *p5 = read_json(dir, "peer5.json"), *pi = read_json(dir, "peer_infer.json");
    cJSON *s1 = read_json(dir, "sac_train1.json"), *s5 = read_json(dir, "sac_train5.json");
    cJSON *si = read_json(dir, "sac_infer.json");
    cJSON *mp1 = read_json(dir, "peer_mnv2_train1.json"), *mp5 = read_json(dir, "peer_mnv2_train5.json");
    cJSON *mpi = read_json(dir, "peer_mnv2_infer.json"), *ms1 = read_json(dir, "sac_mnv2_train1.json");
    cJSON *ms5 = read_json(dir, "sac_mnv2_train5.json"), *msi = read_json(dir, "sac_mnv2_infer.json");
    printf("| %-54s | %-6s | %10s | %10s | %7s | %-14s |\n", "measure (median, 2 threads)", "unit", "saccade",
           "pytorch", "ratio", "target");
    printf("|--------------------------------------------------------|--------|------------|------------|---------|"
           "----------------|\n");
    row("training, batch 32, 1 caption/image", "img/s", get_path(s1, "train", "images_per_s", NULL),
        get_path(p1, "train", "images_per_s", "median"), ">= 2x");
    row("training, batch 32, 5 captions/image", "img/s", get_path(s5, "train", "images_per_s", NULL),
        get_path(p5, "train", "images_per_s", "median"), ">= 2x");
    row("training step, 1 caption/image", "ms", 1e3 * get_path(s1, "train", "total", "median"),
        1e3 * get_path(p1, "train", "total", "median"), "");
    row("training step, 5 captions/image", "ms", 1e3 * get_path(s5, "train", "total", "median"),
        1e3 * get_path(p5, "train", "total", "median"), "");
    static const char *keys[] = {"encoder_1img", "greedy_1img", "beam3_1img", "beam5_1img", "encoder_64img",
                                 "greedy_64img", "caption_64img_total"};
    static const char *what[] = {"encoder, one image", "greedy 20 steps, one image", "beam 3, 20 steps, one image",
                                 "beam 5, 20 steps, one image", "encoder, 64 images", "greedy 20 steps, 64 images",
                                 "captioning 64 images (encoder + greedy)"};
    static const char *targets[] = {"<= 0.5x", "<= 0.5x (0.25)", "<= 0.5x", "", "<= 0.5x", "", ""};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        row(what[i], "ms", 1e3 * get_path(si, "infer", keys[i], "median"), 1e3 * get_path(pi, "infer", keys[i], "median"),
            targets[i]);
    row("batch captioning, 64 images", "img/s", get_path(si, "infer", "caption_64img_images_per_s", "median"),
        get_path(pi, "infer", "caption_64img_images_per_s", "median"), ">= 2x");
    e2e_row(dir, "end to end `batch` / --images", "sac_e2e", "peer_e2e");
    e2e_row(dir, "end to end, 12 MP (4000x3000)", "sac_e2e_12mp", "peer_e2e_12mp");
    row("peak RSS, training 1 caption/image", "MB", read_rss(dir, "sac_train1") / 1024, read_rss(dir, "peer1") / 1024, "reported");
    row("peak RSS, training 5 captions/image", "MB", read_rss(dir, "sac_train5") / 1024, read_rss(dir, "peer5") / 1024, "reported");
    row("peak RSS, inference benchmark", "MB", read_rss(dir, "sac_infer") / 1024, read_rss(dir, "peer_infer") / 1024, "");
    row("peak RSS, `saccade caption` one image", "MB", read_rss(dir, "sac_caption") / 1024, NAN, "<= 64 MB");
    if (msi || mpi || ms1 || mp1) {
        /* the peer times its encoder and its greedy decoding of one image apart: its end to end
         * is their sum (saccade's is one captioner call, measured as such) */
        double pe = get_path(mpi, "infer", "encoder_1img", "median"), pg = get_path(mpi, "infer", "greedy_1img", "median");
        row("MobileNetV2 14x14: encoder, one image", "ms", 1e3 * get_path(msi, "infer", "encoder_1img", "median"),
            1e3 * pe, "<= 0.5x");
        row("MobileNetV2 14x14: encoder, 64 images", "ms", 1e3 * get_path(msi, "infer", "encoder_64img", "median"),
            1e3 * get_path(mpi, "infer", "encoder_64img", "median"), "<= 0.5x");
        row("MobileNetV2 14x14: caption one image (enc + greedy)", "ms",
            1e3 * get_path(msi, "infer", "caption_1img", "median"), 1e3 * (pe + pg), "");
        row("MobileNetV2 14x14: greedy 20 steps, one image", "ms", 1e3 * get_path(msi, "infer", "greedy_1img", "median"),
            1e3 * pg, "");
        row("MobileNetV2 14x14: batch captioning, 64 images", "img/s",
            get_path(msi, "infer", "caption_64img_images_per_s", "median"),
            get_path(mpi, "infer", "caption_64img_images_per_s", "median"), ">= 2x");
        row("MobileNetV2 14x14: frozen training, 1 caption/image", "img/s", get_path(ms1, "train", "images_per_s", NULL),
            get_path(mp1, "train", "images_per_s", "median"), ">= 2x");
        row("MobileNetV2 14x14: frozen training, 5 captions/image", "img/s", get_path(ms5, "train", "images_per_s", NULL),
            get_path(mp5, "train", "images_per_s", "median"), ">= 2x");
    }
    e2e_row(dir, "MobileNetV2 14x14: end to end", "sac_e2e_mnv2", "peer_e2e_mnv2");
    e2e_row(dir, "MobileNetV2 14x14: 12 MP photos", "sac_e2e_mnv2_12mp", "peer_e2e_mnv2_12mp");
    if (msi || mpi || ms1 || mp1) {
        row("MobileNetV2 14x14: peak RSS, inference benchmark", "MB", read_rss(dir, "sac_mnv2_infer") / 1024,
            read_rss(dir, "peer_mnv2_infer") / 1024, "");
        row("MobileNetV2 14x14: peak RSS, `saccade caption`", "MB", read_rss(dir, "sac_caption_mnv2") / 1024, NAN,
            "< 64 MB");
    }
    /* self-critical training has no PyTorch peer: its rate and its ratio to saccade's own
     * cross-entropy steps */
    static const char *scst_files[3] = {"sac_scst5.json", "sac_mnv2_scst5.json", "sac_mnv2_scst5b.json"};
    static const char *xe_files[2][2] = {{"sac_train1.json", "sac_train5.json"}, {"sac_mnv2_train1.json", "sac_mnv2_train5.json"}};
    for (int k = 0; k < 3; k++) {
        cJSON *sc = read_json(dir, scst_files[k]), *x1 = read_json(dir, xe_files[k > 0][0]),
              *x5 = read_json(dir, xe_files[k > 0][1]);
        const double r = get_path(sc, "scst", "images_per_s", NULL), r1 = get_path(x1, "train", "images_per_s", NULL),
                     r5 = get_path(x5, "train", "images_per_s", NULL);
        if (sc)
            printf("%sself-critical step, batch 32, %s + greedy + weighted backward: %.1f img/s (%.2fx saccade's "
                   "cross-entropy step at 1 caption/image, %.2fx at 5; no PyTorch peer)\n",
                   k ? "MobileNetV2 14x14: " : "", k == 2 ? "the 5 best of a beam of 5" : "5 samples", r, r / r1, r / r5);
        cJSON_Delete(sc), cJSON_Delete(x1), cJSON_Delete(x5);
    }
    if (!p1 && !pi && !mpi) printf("(no PyTorch numbers: the peer was skipped)\n");
    if (msi && mpi)
        printf("(MobileNetV2 caption one image: the peer's number is its encoder + greedy medians, timed apart)\n");
    cJSON_Delete(p1), cJSON_Delete(p5), cJSON_Delete(pi), cJSON_Delete(s1), cJSON_Delete(s5), cJSON_Delete(si);
    cJSON_Delete(mp1), cJSON_Delete(mp5), cJSON_Delete(mpi), cJSON_Delete(ms1), cJSON_Delete(ms5), cJSON_Delete(msi);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_saccade [--mnv2] [--threads N] [--train K] [--scst K [--scst-beam]] [--infer] [--iters N] [--quick] [--json FILE]\n"
               "       bench_saccade [--mnv2] --write-model PATH [--write-image PATH]\n"
               "       bench_saccade --report DIR\n");
}

int main(int argc, char **argv)
{
    enum { O_THREADS = 256, O_TRAIN, O_INFER, O_JSON, O_ITERS, O_WMODEL, O_WIMAGE, O_REPORT, O_MNV2, O_QUICK, O_SCST, O_SCST_BEAM };
    static const struct option longopts[] = {
        {"threads", 1, 0, O_THREADS}, {"train", 1, 0, O_TRAIN}, {"infer", 0, 0, O_INFER}, {"json", 1, 0, O_JSON},
        {"iters", 1, 0, O_ITERS}, {"write-model", 1, 0, O_WMODEL}, {"write-image", 1, 0, O_WIMAGE},
        {"report", 1, 0, O_REPORT}, {"mnv2", 0, 0, O_MNV2}, {"quick", 0, 0, O_QUICK}, {"scst", 1, 0, O_SCST},
        {"scst-beam", 0, 0, O_SCST_BEAM}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int threads = 2, train_caps = 0, infer = 0, iters = 0, mnv2 = 0, quick = 0, scst = 0, scst_beam = 0, c;
    const char *json = NULL, *wmodel = NULL, *wimage = NULL, *rdir = NULL;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_THREADS: threads = atoi(optarg); break;
        case O_TRAIN: train_caps = atoi(optarg); break;
        case O_INFER: infer = 1; break;
        case O_JSON: json = optarg; break;
        case O_ITERS: iters = atoi(optarg); break;
        case O_WMODEL: wmodel = optarg; break;
        case O_WIMAGE: wimage = optarg; break;
        case O_REPORT: rdir = optarg; break;
        case O_MNV2: mnv2 = 1; break;
        case O_QUICK: quick = 1; break;
        case O_SCST: scst = atoi(optarg); break;
        case O_SCST_BEAM: scst_beam = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (rdir) return report(rdir);
    if (wmodel || wimage) {
        int st = write_model_and_image(wmodel, wimage, mnv2);
        if (st) fprintf(stderr, "bench_saccade: writing %s: %s\n", wmodel ? wmodel : wimage, sac_strerror(st));
        return st ? 1 : 0;
    }
    if (!train_caps && !infer && !scst) train_caps = 1, infer = 1;
    if (iters < 1 || iters > BENCH_MAX_ITERS) iters = 0;
    sac_threads_set(threads);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "threads", sac_threads());
    cJSON_AddBoolToObject(out, "quick", quick);
    int st = SAC_OK;
    if (train_caps > 0) st = bench_train(out, train_caps, mnv2, quick ? 1 : 3, iters ? iters : quick ? 3 : 10);
    if (!st && scst > 0) st = bench_scst(out, scst, mnv2, scst_beam, quick ? 1 : 2, iters ? iters : quick ? 2 : 6);
    if (!st && infer) st = bench_infer(out, mnv2, quick, iters ? iters : quick ? 5 : 30);
    cJSON_AddNumberToObject(out, "peak_rss_kb", (double)peak_rss_kb());
    if (json) {
        char *s = cJSON_Print(out);
        FILE *f = fopen(json, "w");
        if (!f || !s || fputs(s, f) < 0) st = SAC_ERR_IO;
        if (f && fclose(f)) st = SAC_ERR_IO;
        if (st == SAC_ERR_IO) fprintf(stderr, "bench_saccade: cannot write %s\n", json);
        free(s);
    }
    cJSON_Delete(out);
    if (st) fprintf(stderr, "bench_saccade: %s\n", sac_strerror(st));
    return st ? 1 : 0;
}
