/*
 * train_step.c - one gradient step and one Adam step over the whole model, and the
 * self-critical step (sample, reward with CIDEr-D, weighted teacher-forced backward; Rennie et
 * al., CVPR 2017), see train_step.h.
 *
 * Gradients, Adam's moments and the parameters share the model's flat layout, so clipping and
 * the optimizer are flat loops over one buffer.
 *
 * Size letters: Bi images per batch, Bc captions per batch, P grid positions, E encoder channels,
 * K samples per image, T caption steps.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "captioner.h"
#include "matmul.h"
#include "mobilenet.h"
#include "sac.h"
#include "threadpool.h"
#include "train_step.h"
#include "vocab.h"

/* The optimizer's flat loops run in fixed blocks (threadpool.h sac_parallel_blocks), so the
 * gradient norm is the same sum for every thread count. */
#define FLAT_BLOCK 32768

struct TrainStep {
    Model *m;
    int max_images, max_caps;
    float *grad;     /* (n_floats) model layout; only the trainable part is used */
    float *adam_m, *adam_v; /* (n_trainable) */
    long t;          /* Adam steps taken */
    ModelParams g;
    EncoderActs *ea;
    DecoderActs *da;
    float *feats, *dfeats; /* (Bi, P, E) */
    size_t enc_end;  /* floats [0, enc_end) belong to the encoder */
    /* fine-tuning the backbone's top blocks (cfg.bb.finetune_from): their forward/backward from
     * the frozen trunk's output (mobilenet.h), tensors p.backbone[bb_first..] */
    MobileNetActs *mn;
    int bb_first;
    size_t bb_end;   /* floats [0, bb_end) are the fine-tuned backbone tensors (first in the layout) */
    float lr_bb;     /* their learning rate; < 0: lr_enc */
    float *bfeats, *dbfeats; /* (Bi, P, Eb) the top blocks' output and its gradient */
    double *norm_part; /* (n_trainable / FLAT_BLOCK rounded up) per-block sums of squares */
    /* the input of the last train_step_encode */
    const float *enc_in; /* images (Bi, 3, S, S) or backbone features (Bi, P, Eb) */
    int enc_bi;          /* its Bi; 0: nothing encoded */
};

void train_step_free(TrainStep *ts)
{
    if (!ts) return;
    free(ts->grad), free(ts->adam_m), free(ts->adam_v), free(ts->feats), free(ts->dfeats), free(ts->norm_part);
    free(ts->bfeats), free(ts->dbfeats);
    mobilenet_acts_free(ts->mn);
    encoder_acts_free(ts->ea);
    decoder_acts_free(ts->da);
    free(ts);
}

TrainStep *train_step_create(Model *m, int max_images, int max_caps)
{
    TrainStep *ts = sac_calloc(1, sizeof(*ts));
    if (!ts) return NULL;
    ts->m = m, ts->max_images = max_images, ts->max_caps = max_caps;
    DecoderSizes sz = model_decoder_sizes(m);
    const size_t PE = (size_t)m->P * m->cfg.E;
    ts->grad = sac_alloc_floats(m->n_floats);
    ts->adam_m = sac_alloc_floats(m->n_trainable);
    ts->adam_v = sac_alloc_floats(m->n_trainable);
    ts->feats = sac_alloc_floats(max_images * PE);
    ts->dfeats = sac_alloc_floats(max_images * PE);
    const int backbone = m->cfg.bb.kind != SAC_BACKBONE_NONE;
    ts->ea = backbone ? NULL : encoder_acts_create(&m->cfg.enc, max_images);
    ts->da = decoder_acts_create(&sz, max_caps, max_images);
    ts->norm_part = sac_malloc(sizeof(double) * (m->n_trainable / FLAT_BLOCK + 1));
    ts->lr_bb = -1.0f;
    ts->bb_first = backbone ? model_backbone_first_trained(m) : 0;
    const int finetune = backbone && m->cfg.bb.finetune_from;
    if (finetune) {
        MobileNetConfig mc;
        model_mobilenet_config(&m->cfg, &mc);
        ts->mn = mobilenet_acts_create(&mc, m->cfg.bb.finetune_from, max_images);
        ts->bfeats = sac_alloc_floats((size_t)max_images * m->P * m->cfg.bb.channels);
        ts->dbfeats = sac_alloc_floats((size_t)max_images * m->P * m->cfg.bb.channels);
    }
    if (!ts->grad || !ts->adam_m || !ts->adam_v || !ts->feats || !ts->dfeats || (!ts->ea && !backbone) || !ts->da ||
        !ts->norm_part || (finetune && (!ts->mn || !ts->bfeats || !ts->dbfeats))) {
        train_step_free(ts);
        return NULL;
    }
    memset(ts->grad, 0, sizeof(float) * m->n_floats);
    memset(ts->adam_m, 0, sizeof(float) * m->n_trainable);
    memset(ts->adam_v, 0, sizeof(float) * m->n_trainable);
    model_point(m, ts->grad, &ts->g);
    ts->enc_end = ts->bb_end = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (s->trainable && (!strncmp(s->name, "encoder.", 8) || !strncmp(s->name, "backbone.", 9)))
            ts->enc_end = s->offset + s->numel;
        if (s->trainable && !strncmp(s->name, "backbone.", 9)) ts->bb_end = s->offset + s->numel;
    }
    return ts;
}

float *train_step_grads(TrainStep *ts) { return ts->grad; }
const ModelParams *train_step_grad_params(TrainStep *ts) { return &ts->g; }

static void zero_block(void *p, int i0, int i1, int block)
{
    (void)block;
    memset((float *)p + i0, 0, sizeof(float) * (i1 - i0));
}

int train_step_grad(TrainStep *ts, const float *images, const DecoderBatch *batch, SacRng *dropout_rng,
                    DecoderLoss *loss)
{
    Model *m = ts->m;
    const int Bi = batch->n_images;
    const size_t PE = (size_t)m->P * m->cfg.E;
    DecoderSizes sz = model_decoder_sizes(m);
    if (Bi < 1 || Bi > ts->max_images || batch->n_caps < 1 || batch->n_caps > ts->max_caps) {
        sac_error("train: batch of %d images / %d captions, expected 1..%d / 1..%d", Bi, batch->n_caps,
                  ts->max_images, ts->max_caps);
        return SAC_ERR_INVALID;
    }
    if (!ts->ea) {
        sac_error("train: a model with a frozen backbone trains on its features (train_step_grad_features)");
        return SAC_ERR_INVALID;
    }
    sac_parallel_blocks((int)m->n_trainable, FLAT_BLOCK, zero_block, ts->grad);
    int st = encoder_forward(ts->feats, ts->ea, images, &m->p.enc, &m->cfg.enc, Bi, 1);
    if (st) return st;
    st = decoder_forward(loss, ts->da, ts->feats, batch, &m->p.dec, &sz, m->cfg.dropout, m->cfg.lambda, dropout_rng);
    if (st) return st;
    memset(ts->dfeats, 0, sizeof(float) * Bi * PE);
    decoder_backward(&ts->g.dec, ts->dfeats, ts->da, ts->feats, &m->p.dec, &sz);
    return encoder_backward(&ts->g.enc, ts->ea, ts->dfeats, &m->p.enc, &m->cfg.enc, Bi);
}

int train_step_grad_features(TrainStep *ts, const float *bfeats, const DecoderBatch *batch, SacRng *dropout_rng,
                             DecoderLoss *loss)
{
    Model *m = ts->m;
    const int Bi = batch->n_images, N = Bi * m->P, Eb = m->cfg.bb.channels, E = m->cfg.E;
    DecoderSizes sz = model_decoder_sizes(m);
    if (m->cfg.bb.kind == SAC_BACKBONE_NONE) {
        sac_error("train: the model has no backbone; train_step_grad takes its images");
        return SAC_ERR_INVALID;
    }
    if (Bi < 1 || Bi > ts->max_images || batch->n_caps < 1 || batch->n_caps > ts->max_caps) {
        sac_error("train: batch of %d images / %d captions, expected 1..%d / 1..%d", Bi, batch->n_caps,
                  ts->max_images, ts->max_caps);
        return SAC_ERR_INVALID;
    }
    if (ts->mn) { /* bfeats are the trunk's output: the top blocks run in the step */
        const float *feats;
        int st = train_step_encode(ts, bfeats, Bi, &feats);
        return st ? st : train_step_grad_encoded(ts, batch, m->cfg.lambda, dropout_rng, loss);
    }
    sac_parallel_blocks((int)m->n_trainable, FLAT_BLOCK, zero_block, ts->grad);
    const int proj = m->cfg.bb.proj;
    /* feats (Bi, P, E) = encoder.proj(bfeats (Bi, P, Eb)); the backbone itself is frozen */
    const float *feats = bfeats;
    if (proj) {
        linear_forward(ts->feats, bfeats, m->p.proj_w, m->p.proj_b, N, Eb, E);
        feats = ts->feats;
    }
    int st = decoder_forward(loss, ts->da, feats, batch, &m->p.dec, &sz, m->cfg.dropout, m->cfg.lambda, dropout_rng);
    if (st) return st;
    if (proj) memset(ts->dfeats, 0, sizeof(float) * (size_t)N * E);
    decoder_backward(&ts->g.dec, proj ? ts->dfeats : NULL, ts->da, feats, &m->p.dec, &sz);
    if (proj) linear_backward(NULL, ts->g.proj_w, ts->g.proj_b, ts->dfeats, bfeats, m->p.proj_w, N, Eb, E);
    return SAC_OK;
}

int train_step_encode(TrainStep *ts, const float *input, int Bi, const float **feats)
{
    Model *m = ts->m;
    ts->enc_bi = 0;
    if (Bi < 1 || Bi > ts->max_images) {
        sac_error("train: batch of %d images, expected 1..%d", Bi, ts->max_images);
        return SAC_ERR_INVALID;
    }
    if (m->cfg.bb.kind == SAC_BACKBONE_NONE) {
        /* training mode: batchnorm on the batch's statistics, as train_step_grad */
        int st = encoder_forward(ts->feats, ts->ea, input, &m->p.enc, &m->cfg.enc, Bi, 1);
        if (st) return st;
        *feats = ts->feats;
    } else {
        const float *bf = input; /* the backbone's features (Bi, P, Eb) */
        if (ts->mn) {           /* from the trunk's output, through the fine-tuned blocks */
            int st = mobilenet_forward(ts->bfeats, ts->mn, input, (const float *const *)m->p.backbone + ts->bb_first, Bi);
            if (st) return st;
            bf = ts->bfeats;
        }
        if (m->cfg.bb.proj) {
            linear_forward(ts->feats, bf, m->p.proj_w, m->p.proj_b, Bi * m->P, m->cfg.bb.channels, m->cfg.E);
            *feats = ts->feats;
        } else {
            *feats = bf;
        }
        input = bf;
    }
    ts->enc_in = input, ts->enc_bi = Bi;
    return SAC_OK;
}

int train_step_grad_encoded(TrainStep *ts, const DecoderBatch *batch, float lambda, SacRng *dropout_rng,
                            DecoderLoss *loss)
{
    Model *m = ts->m;
    const int Bi = batch->n_images;
    DecoderSizes sz = model_decoder_sizes(m);
    if (!ts->enc_bi || Bi != ts->enc_bi || batch->n_caps < 1 || batch->n_caps > ts->max_caps) {
        sac_error("train: batch of %d images / %d captions, expected the %d images of the last train_step_encode / "
                  "1..%d captions", Bi, batch->n_caps, ts->enc_bi, ts->max_caps);
        return SAC_ERR_INVALID;
    }
    sac_parallel_blocks((int)m->n_trainable, FLAT_BLOCK, zero_block, ts->grad);
    const int backbone = m->cfg.bb.kind != SAC_BACKBONE_NONE, proj = backbone && m->cfg.bb.proj;
    const size_t N = (size_t)Bi * m->P, E = m->cfg.E;
    const float *feats = backbone && !proj ? ts->enc_in : ts->feats;
    int st = decoder_forward(loss, ts->da, feats, batch, &m->p.dec, &sz, m->cfg.dropout, lambda, dropout_rng);
    if (st) return st;
    /* the gradient wrt the decoder's features: dfeats, or straight into dbfeats when the
     * fine-tuned blocks feed the decoder unprojected */
    float *dfeats = !backbone || proj ? ts->dfeats : ts->mn ? ts->dbfeats : NULL;
    const size_t Eb = backbone ? (size_t)m->cfg.bb.channels : 0;
    if (dfeats) memset(dfeats, 0, sizeof(float) * N * E);
    if (ts->mn && proj) memset(ts->dbfeats, 0, sizeof(float) * N * Eb);
    decoder_backward(&ts->g.dec, dfeats, ts->da, feats, &m->p.dec, &sz);
    if (!backbone) return encoder_backward(&ts->g.enc, ts->ea, ts->dfeats, &m->p.enc, &m->cfg.enc, Bi);
    if (proj) /* feats = bf @ proj_w^T + proj_b */
        linear_backward(ts->mn ? ts->dbfeats : NULL, ts->g.proj_w, ts->g.proj_b, ts->dfeats, ts->enc_in, m->p.proj_w,
                        (int)N, (int)Eb, (int)E);
    if (ts->mn) /* bf = top blocks (trunk output) */
        return mobilenet_backward(ts->g.backbone + ts->bb_first, NULL, ts->mn, ts->dbfeats,
                                  (const float *const *)m->p.backbone + ts->bb_first, Bi);
    return SAC_OK;
}

/* ---- self-critical step ---- */

struct ScstStep {
    const Model *m;
    const SacCider *cider;
    int K, T, max_images, baseline, sample;
    DecoderInfer *inf;   /* (max_images K rows, max_images images), fp32 step weights */
    Caption *samples;    /* (Bi K) */
    Caption *greedy;     /* (Bi) */
    double *r_greedy;    /* (Bi) */
    double *r_sample;    /* (Bi K) */
    int *row_img, *img, *lens, *tokens; /* (Bi K), tokens (Bi K, T + 1) */
    int *count;          /* (Bi) captions found per image (K, or fewer from a beam) */
    float *weight;       /* (Bi K) r_k - baseline_k */
    SearchOptions opt;
};

void scst_step_free(ScstStep *s)
{
    if (!s) return;
    decoder_infer_free(s->inf);
    free(s->samples), free(s->greedy), free(s->r_greedy), free(s->r_sample), free(s->row_img), free(s->img);
    free(s->lens), free(s->count);
    free(s->tokens), free(s->weight);
    free(s);
}

ScstStep *scst_step_create(const Model *m, const SacCider *cider, int max_images, int K, int baseline, int sample)
{
    if (!m || !cider || max_images < 1 || K < 1 || (baseline != SCST_BASELINE_GREEDY && baseline != SCST_BASELINE_MEAN) ||
        (baseline == SCST_BASELINE_MEAN && K < 2) || (sample != SCST_SAMPLE_MULTINOMIAL && sample != SCST_SAMPLE_BEAM)) {
        sac_error("scst: expected a model, a reward, at least 1 image and 1 sample (2 with the mean baseline), found "
                  "%d images, %d samples, baseline %d, sampling %d", max_images, K, baseline, sample);
        return NULL;
    }
    ScstStep *s = sac_calloc(1, sizeof(*s));
    if (!s) return NULL;
    const int T = m->cfg.T, R = max_images * K;
    DecoderSizes sz = model_decoder_sizes(m);
    s->m = m, s->cider = cider, s->K = K, s->T = T, s->max_images = max_images, s->baseline = baseline;
    s->sample = sample;
    s->inf = decoder_infer_create(&sz, R, max_images);
    s->samples = sac_calloc(R, sizeof(Caption));
    s->greedy = sac_calloc(max_images, sizeof(Caption));
    s->r_greedy = sac_malloc(sizeof(double) * max_images);
    s->r_sample = sac_malloc(sizeof(double) * R);
    s->row_img = sac_malloc(sizeof(int) * R);
    s->img = sac_malloc(sizeof(int) * R);
    s->lens = sac_malloc(sizeof(int) * R);
    s->count = sac_malloc(sizeof(int) * max_images);
    s->tokens = sac_malloc(sizeof(int) * (size_t)R * (T + 1));
    s->weight = sac_malloc(sizeof(float) * R);
    if (!s->inf || !s->samples || !s->greedy || !s->r_greedy || !s->r_sample || !s->row_img || !s->img || !s->lens || !s->count || !s->tokens ||
        !s->weight) {
        scst_step_free(s);
        return NULL;
    }
    s->opt = (SearchOptions){.beam = 1, .nbest = 1, .max_len = T, .len_norm = 0.0f};
    return s;
}

static int scst_reward(const ScstStep *s, int image, const Caption *c, double *r)
{
    char *text = captioner_text(s->m, c);
    if (!text) return SAC_ERR_NOMEM;
    int st = metrics_cider_score(s->cider, image, text, r);
    free(text);
    return st;
}

int scst_step_grad(ScstStep *s, TrainStep *ts, const float *input, int Bi, int Bi_all, const int *images, SacRng *rng,
                   DecoderLoss *loss, double sums[4])
{
    const Model *m = s->m;
    const int K = s->K, T = s->T, R = Bi * K;
    if (Bi < 1 || Bi > s->max_images || Bi_all < Bi || ts->m != m) {
        sac_error("scst: batch of %d images of %d, expected 1..%d of at least as many, and the TrainStep of the same "
                  "model", Bi, Bi_all, s->max_images);
        return SAC_ERR_INVALID;
    }
    const double share = (double)Bi / Bi_all; /* 1 for one process: the weights bit for bit r_k */
    const float *feats;
    int st = train_step_encode(ts, input, Bi, &feats);
    if (!st) st = decoder_infer_prepare(s->inf, &m->p.dec, 0); /* the weights changed since the last step */
    for (int r = 0; r < R; r++) s->row_img[r] = r / K;
    if (!st && s->sample == SCST_SAMPLE_BEAM) {
        SearchOptions bo = s->opt;
        bo.beam = bo.nbest = K, bo.len_norm = search_default_options(decoder_infer_sizes(s->inf)).len_norm;
        st = beam_search_batch(s->samples, s->count, s->inf, feats, Bi, &m->p.dec, &bo);
    } else if (!st) {
        st = sample_decode(s->samples, s->inf, feats, Bi, s->row_img, R, &m->p.dec, &s->opt, rng);
        for (int b = 0; b < Bi; b++) s->count[b] = K;
    }
    if (st) return st;
    st = greedy_decode(s->greedy, s->inf, feats, Bi, &m->p.dec, &s->opt);
    for (int b = 0; b < Bi && !st; b++) st = scst_reward(s, images[b], &s->greedy[b], &s->r_greedy[b]);
    for (int r = 0; r < R && !st; r++)
        if (r % K < s->count[r / K]) st = scst_reward(s, images[r / K], &s->samples[r], &s->r_sample[r]);
    for (int r = 0; r < R && !st; r++) {
        const Caption *c = &s->samples[r];
        const int b = r / K, n = s->count[b], here = r % K < n;
        int *tok = s->tokens + (size_t)r * (T + 1);
        s->img[r] = b;
        if (!here) { /* a beam that found fewer than K distinct captions: an empty row, weight 0 */
            tok[0] = SAC_VOCAB_START, tok[1] = SAC_VOCAB_END, s->lens[r] = 1, s->weight[r] = 0.0f;
            for (int t = 2; t <= T; t++) tok[t] = SAC_VOCAB_PAD;
            continue;
        }
        const double rk = s->r_sample[r];
        double base = s->r_greedy[b];
        if (s->baseline == SCST_BASELINE_MEAN) {
            double others = 0.0;
            for (int j = b * K; j < b * K + n; j++) others += j == r ? 0.0 : s->r_sample[j];
            base = n > 1 ? others / (n - 1) : rk;
        }
        s->weight[r] = (float)((rk - base) * share);
        if (sums) sums[0] += rk - base, sums[1] += rk, sums[2] += s->r_greedy[b], sums[3] += 1.0;
        /* the caption teacher-forced: <start> s_1 .. s_L, L = n (+ 1 for <end>) */
        tok[0] = SAC_VOCAB_START;
        memcpy(tok + 1, c->tokens, sizeof(int) * c->n);
        if (c->ended) tok[c->n + 1] = SAC_VOCAB_END;
        s->lens[r] = c->n + c->ended;
        for (int t = s->lens[r] + 1; t <= T; t++) tok[t] = SAC_VOCAB_PAD;
    }
    for (int b = 0; b < Bi; b++) caption_clear(&s->greedy[b]);
    for (int r = 0; r < R; r++) caption_clear(&s->samples[r]);
    if (st) return st;
    DecoderBatch batch = {R, Bi, s->img, s->tokens, s->lens, s->weight};
    return train_step_grad_encoded(ts, &batch, 0.0f, NULL, loss);
}

typedef struct {
    TrainStep *ts;
    float scale, c1, c2, lr_bb, lr_enc, lr_dec, wd;
} AdamTask;

static void norm_block(void *p, int i0, int i1, int block)
{
    const AdamTask *t = p;
    const float *g = t->ts->grad;
    double acc = 0.0;
    for (int i = i0; i < i1; i++) acc += (double)g[i] * g[i];
    t->ts->norm_part[block] = acc;
}

static void adam_block(void *p, int i0, int i1, int block)
{
    (void)block;
    const AdamTask *t = p;
    TrainStep *ts = t->ts;
    const Model *m = ts->m;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, scale = t->scale, c1 = t->c1, c2 = t->c2;
    for (int s = 0; s < m->n_specs; s++) {
        const ParamSpec *sp = &m->specs[s];
        const size_t lo = SAC_MAX(sp->offset, (size_t)i0), hi = SAC_MIN(sp->offset + sp->numel, (size_t)i1);
        if (!sp->trainable || lo >= hi) continue;
        const float lr = sp->offset < ts->bb_end ? t->lr_bb : sp->offset < ts->enc_end ? t->lr_enc : t->lr_dec;
        const float decay = (t->wd > 0.0f && sp->ndim >= 2) ? lr * t->wd : 0.0f;
        float *w = m->data, *g = ts->grad, *mm = ts->adam_m, *vv = ts->adam_v;
        for (size_t i = lo; i < hi; i++) {
            float gi = g[i] * scale;
            mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
            vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
            float mh = mm[i] / c1, vh = vv[i] / c2;
            w[i] -= lr * mh / (sqrtf(vh) + eps) + decay * w[i];
        }
    }
}

double train_step_adam(TrainStep *ts, float lr_enc, float lr_dec, float clip, float wd)
{
    const int n = (int)ts->m->n_trainable;
    AdamTask t = {ts, 1.0f, 0.0f, 0.0f, ts->lr_bb < 0.0f ? lr_enc : ts->lr_bb, lr_enc, lr_dec, wd};
    sac_parallel_blocks(n, FLAT_BLOCK, norm_block, &t);
    double norm2 = 0.0;
    for (int b = 0; b < (n + FLAT_BLOCK - 1) / FLAT_BLOCK; b++) norm2 += ts->norm_part[b];
    const double norm = sqrt(norm2);
    t.scale = (clip > 0.0f && norm > clip) ? (float)(clip / norm) : 1.0f;
    ts->t++;
    t.c1 = 1.0f - powf(0.9f, (float)ts->t), t.c2 = 1.0f - powf(0.999f, (float)ts->t);
    sac_parallel_blocks(n, FLAT_BLOCK, adam_block, &t);
    return norm;
}

void train_step_set_lr_backbone(TrainStep *ts, float lr) { ts->lr_bb = lr; }

int train_step_backbone_features(TrainStep *ts, const float *trunk, int B, float *bfeats)
{
    const Model *m = ts->m;
    if (!ts->mn || B < 1 || B > ts->max_images) {
        sac_error("train: backbone features of %d images, expected a fine-tuned backbone and 1..%d images", B,
                  ts->max_images);
        return SAC_ERR_INVALID;
    }
    ts->enc_bi = 0; /* the activations of the last train_step_encode are gone */
    return mobilenet_forward(bfeats, ts->mn, trunk, (const float *const *)m->p.backbone + ts->bb_first, B);
}

void train_step_optim(TrainStep *ts, float **adam_m, float **adam_v, long **t)
{
    *adam_m = ts->adam_m, *adam_v = ts->adam_v, *t = &ts->t;
}
