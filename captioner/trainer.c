/*
 * trainer.c - the training run (cross-entropy, or self-critical from a trained model), see
 * trainer.h: setup, resume, the epochs and their steps, the end of each epoch, teardown, around
 * one run state (TrainRun). The gradient steps are train_step.c, the data in memory
 * data_cache.c, the dev evaluation eval.c, the checkpoint file checkpoint.c, a data-parallel
 * rank's share of each batch and the all-reduce train_dist.c.
 *
 * Size letters: Bi images per batch, Bc captions per batch, S input side, T caption steps,
 * P grid positions, E encoder channels.
 */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "captioner.h"
#include "dist.h"
#include "checkpoint.h"
#include "data_cache.h"
#include "eval.h"
#include "output.h"
#include "sac.h"
#include "train_dist.h"

/* ---------------------------------------------------------------- the training run */

void train_default_options(TrainOptions *o)
{
    memset(o, 0, sizeof(*o));
    model_config_default(&o->cfg);
    o->train_split = "train";
    o->dev_split = "dev";
    o->min_count = 5;
    o->batch_images = 32;
    o->caps_per_image = 0;
    o->epochs = 30;
    o->lr = 4e-4f;
    o->lr_enc = 4e-4f;
    o->lr_backbone = -1.0f; /* lr_enc / 10 */
    o->lr_decay = 1.0f;
    o->clip = 5.0f;
    o->weight_decay = 0.0f;
    o->patience = 6;
    o->augment = 1;
    o->eval_beam = 1;
    o->select_metric = "cider";
    o->checkpoint_every = 200;
    o->seed = 1;
    o->store_f16 = 1;
    o->report_every_s = 10.0;
    o->scst_samples = 5;
}

/* One JSON line to the training log (NULL: none), flushed so a killed run keeps it.
 * SAC_OK, or SAC_ERR_IO (logged, naming the file) when the write failed. */
static int log_json(SacOutput *log, cJSON *o)
{
    char *s = log ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!log) return SAC_OK;
    if (!s) return SAC_ERR_NOMEM;
    fprintf(sac_output_stream(log), "%s\n", s);
    free(s);
    return sac_output_flush(log);
}

static cJSON *scores_json(const EvalResult *r)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "bleu1", r->scores.bleu[0]);
    cJSON_AddNumberToObject(d, "bleu2", r->scores.bleu[1]);
    cJSON_AddNumberToObject(d, "bleu3", r->scores.bleu[2]);
    cJSON_AddNumberToObject(d, "bleu4", r->scores.bleu[3]);
    cJSON_AddNumberToObject(d, "rouge_l", r->scores.rouge_l);
    cJSON_AddNumberToObject(d, "cider_d", r->scores.cider_d);
    cJSON_AddNumberToObject(d, "distinct", (double)r->n_distinct / r->n_images);
    cJSON_AddNumberToObject(d, "vocab_used", r->vocab_used);
    cJSON_AddNumberToObject(d, "mean_len", r->mean_len);
    cJSON_AddNumberToObject(d, "att_max", r->att_max);
    cJSON_AddNumberToObject(d, "att_entropy", r->att_entropy);
    return d;
}

/* ---------------------------------------------------------------- self-critical training */

/* The reward's references: every cached training image's captions, normalised as the dev
 * evaluation normalises them; NULL (logged) on failure. */
static SacCider *scst_cider(const DataCache *c, const Dataset *ds)
{
    char ***refs = NULL;
    int *n_refs = NULL;
    const int st = data_cache_refs(c, ds, &refs, &n_refs);
    SacCider *cider = st ? NULL : metrics_cider_create((const char *const *const *)refs, n_refs, c->n);
    if (st) sac_error("train: out of memory gathering the references of %d images", c->n);
    data_cache_refs_free(refs, n_refs, c->n);
    return cider;
}

/* ---------------------------------------------------------------- the run */

/* Everything one training run holds, from run_setup to run_teardown. The phases: run_setup
 * (data, model, caches, buffers; run_resume for --resume), run_epoch (run_step per batch:
 * run_batch, run_gradient, then Adam), run_end_epoch (evaluate, keep the best, checkpoint),
 * run_teardown. Files are written in three places only: run_log, run_checkpoint and
 * run_save_best. */
typedef struct TrainRun {
    const TrainOptions *o;
    char ckpt[4096];          /* the checkpoint's path */
    char *flags;              /* checkpoint_flags_json(o) */
    Dataset *train, *dev;     /* dev NULL: no evaluation */
    Vocab *vocab;             /* built for a new model until the model owns it */
    Model *m;
    TrainStep *ts;
    Captioner *cap;           /* for dev decoding and the backbone features (NULL when neither) */
    DataCache tc, dc;         /* the train and dev splits in memory */
    FeatCache tfc, dfc;       /* their backbone features (a model on a frozen backbone), or the
                               * trunk's output below the fine-tuned blocks (cfg.bb.finetune_from) */
    SacCider *cider;          /* self-critical: the reward's references */
    ScstStep *sc;
    SacOutput *log;           /* JSON lines (NULL: none) */
    CheckpointState ck;       /* what a checkpoint restores besides model and optimizer */
    int *order;               /* (tc.n) this epoch's image order */
    int Bi, T, S, backbone;
    int k;                    /* captions per image per step */
    int max_caps_per_image, max_caps;
    int batches;              /* per epoch */
    SearchOptions eval_opt;
    /* the batch: images items[b] of the cache, augmented by views (backbone) or augs; its
     * captions (img, tokens, lens) in batch */
    int *items, *views, *img, *tokens, *lens, *pick;
    Augment *augs;
    float *images;            /* (Bi, 3, S, S) without a backbone */
    uint8_t *tmp;             /* (Bi, S, S, 3) augmentation scratch */
    float *bfeats;            /* (Bi, P, Eb) with a backbone */
    DecoderBatch batch;
    /* this epoch */
    float lr, lr_enc, lr_bb;
    double t_epoch;
    int b0;                   /* the batch the epoch (re)started at */
    /* since the last report */
    double t_report, sum_loss, sum_ce;
    double scst_sums[4];      /* rewards, sample and greedy CIDEr-D, captions rewarded */
    int n_report, imgs_report;
    double last_norm;         /* gradient norm of the last step */
    int cancelled;            /* 1: cancelled (callback or signal), 2: max_steps reached */
    /* data-parallel (dist.h, train_dist.h): rank 0 of nproc evaluates and writes the
     * files; every rank computes its share of each batch, and every failure is agreed on at the
     * next collective, so no rank is left waiting in one */
    int rank, nproc;
    TrainDist *td;
    uint8_t *mine;            /* (Bi) 1: this rank computes image b of the batch */
    int *owner;               /* (Bi) the rank holding image b's row */
    const uint8_t **rows;     /* (Bi) image b's row here (pixels or a view's features) when held here */
    int *litems;              /* (Bi) 0, 1, ...: the share's rows in the staged rows */
    Augment *laugs;           /* (Bi) */
    int *simages;             /* (Bi) self-critical: the share's images (their references in cider) */
    int agree_pending;        /* a setup phase may have failed on one rank: agree in teardown */
    int pending_st, pending_stop; /* rank 0's log failure or progress stop, for the next collective */
} TrainRun;

/* One JSON line to the log. */
static int run_log(TrainRun *r, cJSON *j) { return log_json(r->log, j); }

static int run_checkpoint(TrainRun *r) { return checkpoint_write(r->ckpt, r->m, r->ts, &r->ck, r->order, r->flags); }

/* The checkpoint (unless st already failed), written by rank 0; in a data-parallel run every rank
 * then learns whether that (or anything rank 0 had pending) failed, and checks that the ranks'
 * parameters are still the same bytes. */
static int run_checkpoint_all(TrainRun *r, int st)
{
    if (!st && r->rank == 0) st = run_checkpoint(r);
    if (r->nproc == 1) return st;
    st = sac_dist_agree(st ? st : r->pending_st);
    r->pending_st = SAC_OK;
    if (!st) st = sac_dist_check_same(r->m->data, sizeof(float) * r->m->n_trainable, "the parameters");
    return st;
}

/* Data-parallel, at an epoch's end: rank 0's evaluation (its status, *improved, *score) and stop
 * request, for every rank. */
static int run_dev_verdict(TrainRun *r, int st, double *score, int *improved)
{
    double v[4] = {st ? st : r->pending_st, *improved, *score, r->cancelled};
    r->pending_st = SAC_OK;
    int bst = sac_dist_bcast(v, sizeof(v), 0);
    if (bst) return bst;
    if (v[0] != 0 && !st) {
        if (r->rank > 0)
            sac_error("rank %d: stopping: rank 0 failed at the end of epoch %d (see its messages)", r->rank,
                      r->ck.epoch + 1);
        st = r->rank == 0 ? (int)v[0] : SAC_ERR_CANCELLED;
    }
    *improved = v[1] != 0, *score = v[2];
    if (!r->cancelled) r->cancelled = (int)v[3];
    return st;
}

/* The dev split decoded with the current weights and scored. With fine-tuned backbone blocks,
 * the dev features are recomputed from the cached trunk outputs with their current weights. */
static int run_evaluate(TrainRun *r, EvalResult *res)
{
    int st = captioner_refresh(r->cap);
    const FeatCache *fc = r->backbone ? &r->dfc : NULL;
    FeatCache grid = {0};
    float *scratch = NULL;
    if (!st && r->dfc.trunk) {
        scratch = sac_alloc_floats((size_t)r->Bi * (r->dfc.per + (size_t)r->m->P * r->m->cfg.bb.channels));
        st = scratch ? feat_cache_top(&grid, &r->dfc, r->ts, r->m, r->Bi, scratch) : SAC_ERR_NOMEM;
        fc = &grid;
    }
    if (!st) st = eval_cached(r->m, r->cap, &r->dc, fc, r->dev, &r->eval_opt, 0, res);
    free(scratch);
    feat_cache_free(&grid);
    return st;
}

static double run_score(const TrainRun *r, const EvalResult *res)
{
    return !strcmp(r->o->select_metric, "bleu4") ? res->scores.bleu[3] : res->scores.cider_d;
}

/* Write the model to --out and read it back: never report a model we can't use. */
static int run_save_best(TrainRun *r)
{
    const TrainOptions *o = r->o;
    int st = model_save(r->m, o->out, o->store_f16);
    if (st) return st;
    Model *back = model_load(o->out);
    if (!back) {
        sac_error("%s: the model just written does not load back (see above)", o->out);
        return SAC_ERR_IO;
    }
    model_free(back);
    sac_info("saved %s (epoch %d)", o->out, r->ck.epoch + 1);
    return SAC_OK;
}

/* ---- setup */

/* The training and dev splits, and no output that is one of the inputs. */
static int run_open_data(TrainRun *r)
{
    const TrainOptions *o = r->o;
    r->train = dataset_open(o->data, o->train_split, o->image_dir);
    if (!r->train) return SAC_ERR_INVALID;
    dataset_check_images(r->train);
    if (o->dev_split && r->rank == 0) { /* rank 0 evaluates */
        r->dev = dataset_open(o->data, o->dev_split, o->image_dir);
        if (!r->dev) return SAC_ERR_INVALID;
        dataset_check_images(r->dev);
    }
    const char *inputs[] = {o->data, r->train->source, r->dev ? r->dev->source : NULL, o->backbone};
    const char *outputs[][2] = {{o->out, "--out"}, {r->ckpt, "--checkpoint"}, {o->log, "--log"}};
    int st = SAC_OK;
    for (int i = 0; i < 3 && !st; i++)
        if (outputs[i][0]) st = sac_output_check_inputs(outputs[i][0], outputs[i][1], inputs, 4);
    return st;
}

/* --resume: the model, optimizer and run state from the checkpoint. */
static int run_resume(TrainRun *r)
{
    int st = checkpoint_read(r->ckpt, &r->m, &r->ts, &r->ck, &r->order, r->Bi, r->max_caps, r->o);
    if (st) return st;
    sac_info("resuming from %s at epoch %d, step %ld", r->ckpt, r->ck.epoch + 1, r->ck.step);
    return SAC_OK;
}

/* Self-critical training: the model from --init. */
static int run_start_scst(TrainRun *r)
{
    const TrainOptions *o = r->o;
    r->m = model_load(o->init);
    if (!r->m) return SAC_ERR_INVALID;
    r->ts = train_step_create(r->m, r->Bi, r->max_caps);
    if (!r->ts) return SAC_ERR_NOMEM;
    sac_rng_seed(&r->ck.data_rng, o->seed, 2);
    sac_rng_seed(&r->ck.drop_rng, o->seed, 3);
    sac_rng_seed(&r->ck.sample_rng, o->seed, 4);
    r->ck.scst = 1;
    r->ck.best = -1.0;
    r->ck.pos = -1;
    sac_info("self-critical training from %s: %d %s per photo, reward CIDEr-D against %s", o->init, o->scst_samples,
             o->scst_sample == SCST_SAMPLE_BEAM ? "beam captions" : "samples", o->scst_baseline == SCST_BASELINE_MEAN ? "the mean of the photo's other samples"
                                                                      : "the greedy caption");
    return SAC_OK;
}

/* A new model: the vocabulary of the training captions, initial weights from the seed, the
 * pretrained backbone's weights. */
static int run_start_new(TrainRun *r)
{
    const TrainOptions *o = r->o;
    WordCounts *wc = word_counts_create();
    if (!wc || dataset_count_words(r->train, wc) != SAC_OK) {
        word_counts_free(wc);
        return SAC_ERR_NOMEM;
    }
    r->vocab = vocab_build(wc, o->min_count);
    word_counts_free(wc);
    if (!r->vocab) return SAC_ERR_NOMEM;
    ModelConfig cfg = o->cfg;
    cfg.V = vocab_size(r->vocab);
    r->m = model_create(&cfg);
    if (!r->m) return SAC_ERR_INVALID;
    r->m->vocab = r->vocab;
    r->vocab = NULL;
    SacRng init;
    sac_rng_seed(&init, o->seed, 1);
    model_init(r->m, &init);
    if (cfg.bb.kind != SAC_BACKBONE_NONE) {
        if (!o->backbone) {
            sac_error("train: a MobileNetV2 model needs its pretrained weights (--backbone FILE)");
            return SAC_ERR_INVALID;
        }
        int st = model_load_backbone(r->m, o->backbone, o->store_f16);
        if (st) return st;
    }
    r->ts = train_step_create(r->m, r->Bi, r->max_caps);
    if (!r->ts) return SAC_ERR_NOMEM;
    sac_rng_seed(&r->ck.data_rng, o->seed, 2);
    sac_rng_seed(&r->ck.drop_rng, o->seed, 3);
    r->ck.best = -1.0;
    r->ck.pos = -1; /* a new epoch starts by shuffling */
    return SAC_OK;
}

/* The splits in memory (and their backbone features), the reward of self-critical training,
 * the image order. */
static int run_cache(TrainRun *r)
{
    const TrainOptions *o = r->o;
    const Model *m = r->m;
    if (r->dev || r->backbone) {
        r->cap = captioner_create(m, 64, o->eval_beam);
        if (!r->cap) return SAC_ERR_NOMEM;
    }
    /* Ctrl-C while caching (minutes for a large set) stops at once: no step has been taken, so
     * there is nothing to save. A data-parallel run notices it at its first step's collective. */
    const volatile int *cancel = r->nproc == 1 ? o->cancel : NULL;
    int st = data_cache_build_shard(&r->tc, r->train, 0, m->vocab, r->S, m->cfg.T, r->rank, r->nproc, cancel,
                                    "train");
    if (st) return st; /* agreed by the ranks inside */
    r->agree_pending = r->nproc > 1;
    if (r->backbone) st = feat_cache_build(&r->tfc, &r->tc, m, r->cap, o->augment ? 2 : 1, cancel, "train");
    if (st) return st;
    if (r->dev) {
        st = data_cache_build(&r->dc, r->dev, o->eval_max_images, NULL, r->S, m->cfg.T, "dev");
        if (!st && r->backbone) st = feat_cache_build(&r->dfc, &r->dc, m, r->cap, 1, cancel, "dev");
        if (st) return st;
    }
    if (o->scst) {
        r->cider = scst_cider(&r->tc, r->train);
        r->sc = r->cider ? scst_step_create(m, r->cider, r->Bi, o->scst_samples, o->scst_baseline, o->scst_sample) : NULL;
        if (!r->sc) return r->cider ? SAC_ERR_NOMEM : SAC_ERR_INVALID;
    }
    if (o->resume && r->ck.n_items != r->tc.n) {
        sac_error("%s: the checkpoint was trained on %d images, the data now has %d: not the same data", r->ckpt,
                  r->ck.n_items, r->tc.n);
        return SAC_ERR_INVALID;
    }
    if (!o->resume) {
        r->ck.n_items = r->tc.n;
        r->order = sac_malloc(sizeof(int) * r->tc.n);
        if (!r->order) return SAC_ERR_NOMEM;
        for (int i = 0; i < r->tc.n; i++) r->order[i] = i;
    }
    return SAC_OK;
}

/* The model a self-critical run starts from, scored as every epoch will be: the one to beat
 * (and --out until then). */
static int run_score_init(TrainRun *r)
{
    EvalResult res;
    int st = run_evaluate(r, &res);
    if (st) return st;
    r->ck.best = run_score(r, &res);
    sac_info("start: dev (%d images, beam %d) BLEU-4 %.3f  CIDEr-D %.3f  distinct %.1f%%  words %d", res.n_images,
             r->o->eval_beam, res.scores.bleu[3], res.scores.cider_d, 100.0 * res.n_distinct / res.n_images,
             res.vocab_used);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epoch", 0);
    cJSON_AddNumberToObject(j, "step", 0);
    cJSON_AddItemToObject(j, "dev", scores_json(&res));
    cJSON_AddBoolToObject(j, "best", 1);
    st = run_log(r, j);
    eval_result_clear(&res);
    if (st) return st;
    return model_save(r->m, r->o->out, r->o->store_f16);
}

/* Everything before the first step. r is zeroed first, so run_teardown may follow any failure. */
static int run_setup(TrainRun *r, const TrainOptions *o)
{
    memset(r, 0, sizeof(*r));
    r->o = o;
    r->rank = sac_dist_rank(), r->nproc = sac_dist_size();
    r->agree_pending = r->nproc > 1;
    r->flags = checkpoint_flags_json(o);
    if (!r->flags) return SAC_ERR_NOMEM;
    snprintf(r->ckpt, sizeof(r->ckpt), "%s%s", o->checkpoint ? o->checkpoint : o->out,
             o->checkpoint ? "" : ".ckpt");
    r->Bi = o->batch_images;
    r->T = o->cfg.T;
    int st = run_open_data(r);
    if (st) return st;
    r->max_caps_per_image = 1;
    for (int i = 0; i < r->train->n_items; i++)
        r->max_caps_per_image = SAC_MAX(r->max_caps_per_image, r->train->items[i].n_captions);
    r->k = o->caps_per_image > 0 && o->caps_per_image < r->max_caps_per_image ? o->caps_per_image
                                                                               : r->max_caps_per_image;
    if (o->scst && (!o->init || o->scst_samples < 1)) {
        sac_error("train: self-critical training needs the model to start from (--init) and at least 1 sample, "
                  "found %s and %d", o->init ? o->init : "none", o->scst_samples);
        return SAC_ERR_INVALID;
    }
    r->max_caps = o->scst ? r->Bi * o->scst_samples : r->Bi * r->k;
    st = o->resume ? run_resume(r) : o->scst ? run_start_scst(r) : run_start_new(r);
    if (st) return st;
    const Model *m = r->m;
    r->S = m->cfg.enc.image_size;
    r->backbone = m->cfg.bb.kind != SAC_BACKBONE_NONE;
    size_t tuned = 0; /* fine-tuned backbone floats */
    for (int i = 0; i < m->n_specs; i++)
        if (m->specs[i].trainable && !strncmp(m->specs[i].name, "backbone.", 9)) tuned += m->specs[i].numel;
    if (tuned)
        sac_info("model: %zu trained parameters, %zu of them in MobileNetV2's features.%d..%d (fine-tuned; %zu "
                 "frozen below), %dx%d grid of %d channels, vocabulary %d words", m->n_trainable, tuned,
                 m->cfg.bb.finetune_from, m->cfg.bb.grid == 14 ? 14 : 18, m->n_floats - m->n_trainable, m->grid_h,
                 m->grid_w, m->cfg.bb.channels, m->cfg.V);
    else if (r->backbone)
        sac_info("model: %zu trained parameters on a frozen MobileNetV2 (%zu), %dx%d grid of %d channels, "
                 "vocabulary %d words", m->n_trainable, m->n_floats - m->n_trainable, m->grid_h, m->grid_w,
                 m->cfg.bb.channels, m->cfg.V);
    else
        sac_info("model: %zu parameters, %dx%d grid, vocabulary %d words", m->n_trainable, m->grid_h, m->grid_w,
                 m->cfg.V);
    if (r->nproc > 1) { /* every rank has its model: the collective cache follows */
        if (!r->backbone && m->cfg.enc.batchnorm)
            sac_warn("train: batchnorm statistics are each rank's share's: results depend on the number of ranks "
                     "(--no-batchnorm, or a --backbone, for results that do not)");
        r->agree_pending = 0;
        if ((st = sac_dist_agree(SAC_OK))) return st;
    }
    st = run_cache(r);
    if (st) return st;
    if (o->log && r->rank == 0) {
        r->log = sac_output_open(o->log, SAC_OUTPUT_INPLACE | (o->resume ? SAC_OUTPUT_APPEND : 0));
        if (!r->log) {
            sac_error("%s: cannot open the training log for writing", o->log);
            return SAC_ERR_IO;
        }
    }
    const int Bi = r->Bi, S = r->S;
    r->img = sac_malloc(sizeof(int) * r->max_caps);
    r->lens = sac_malloc(sizeof(int) * r->max_caps);
    r->tokens = sac_malloc(sizeof(int) * r->max_caps * (r->T + 1));
    r->pick = sac_malloc(sizeof(int) * r->max_caps_per_image);
    if (r->backbone) {
        r->bfeats = sac_alloc_floats((size_t)Bi * r->tfc.per);
        r->views = sac_malloc(sizeof(int) * Bi);
    } else {
        r->images = sac_alloc_floats((size_t)Bi * 3 * S * S);
        r->tmp = sac_malloc((size_t)Bi * S * S * 3);
    }
    r->items = sac_malloc(sizeof(int) * Bi);
    r->augs = sac_malloc(sizeof(Augment) * Bi);
    if (!r->img || !r->lens || !r->tokens || !r->pick || (r->backbone ? !r->bfeats || !r->views : !r->images || !r->tmp) ||
        !r->items || !r->augs)
        return SAC_ERR_NOMEM;
    if (r->nproc > 1) {
        const size_t row_bytes = r->backbone ? r->tfc.per * sizeof(uint16_t) : (size_t)S * S * 3;
        r->td = train_dist_create(Bi, r->max_caps, r->T, row_bytes);
        r->mine = sac_malloc(Bi);
        r->owner = sac_malloc(sizeof(int) * Bi);
        r->rows = sac_malloc(sizeof(*r->rows) * Bi);
        r->litems = sac_malloc(sizeof(int) * Bi);
        r->laugs = sac_malloc(sizeof(Augment) * Bi);
        r->simages = sac_malloc(sizeof(int) * Bi);
        st = r->td && r->mine && r->owner && r->rows && r->litems && r->laugs && r->simages ? SAC_OK : SAC_ERR_NOMEM;
        r->agree_pending = 0;
        if ((st = sac_dist_agree(st))) return st;
        sac_info("data-parallel over %d ranks: global batch %d images, %zu gradient floats (%.1f MB) all-reduced "
                 "per step", r->nproc, Bi, m->n_trainable, 4e-6 * (double)m->n_trainable);
    }
    r->batches = (r->tc.n + Bi - 1) / Bi;
    const DecoderSizes sz = model_decoder_sizes(m);
    r->eval_opt = search_default_options(&sz); /* as `saccade eval` decodes, at beam --eval-beam */
    r->eval_opt.beam = o->eval_beam;
    r->t_report = sac_time();
    if (o->scst && !o->resume && r->dev) st = run_score_init(r);
    if (o->scst && !o->resume && r->nproc > 1) st = sac_dist_agree(st); /* rank 0's evaluation of --init */
    return st;
}

/* ---- one step */

/* The next nb images of the order, their augmentation (drawn in image order from the data
 * stream) and, for cross-entropy, k of each image's captions into r->batch. */
static void run_batch(TrainRun *r, int nb)
{
    const TrainOptions *o = r->o;
    const DataCache *tc = &r->tc;
    const int T = r->T;
    int nc = 0;
    for (int b = 0; b < nb; b++) {
        const int item = r->order[r->ck.pos + b];
        r->items[b] = item;
        if (r->backbone) /* cached features: the mirror image is the only augmentation */
            r->views[b] = o->augment && sac_rng_uniform(&r->ck.data_rng) < 0.5f;
        else
            r->augs[b] = augment_draw(&r->ck.data_rng, o->augment, r->S);
        if (o->scst) continue; /* the images only: the captions are sampled */
        const int c0 = tc->cap_off[item], cn = tc->cap_off[item + 1] - c0;
        for (int j = 0; j < cn; j++) r->pick[j] = c0 + j;
        if (cn > r->k) sac_rng_shuffle(&r->ck.data_rng, r->pick, cn);
        for (int j = 0; j < cn && j < r->k; j++) {
            r->img[nc] = b;
            r->lens[nc] = tc->len[r->pick[j]];
            memcpy(r->tokens + (size_t)nc * (T + 1), tc->tok + (size_t)r->pick[j] * (T + 1), sizeof(int) * (T + 1));
            nc++;
        }
    }
    r->batch = (DecoderBatch){nc, nb, r->img, r->tokens, r->lens, NULL};
}

/* The batch's inputs (backbone features or augmented images), then its gradient into
 * train_step_grads(r->ts) and its loss. */
static int run_gradient(TrainRun *r, int nb, DecoderLoss *loss)
{
    const TrainOptions *o = r->o;
    const float *input = r->backbone ? r->bfeats : r->images;
    if (r->backbone)
        feat_cache_gather(&r->tfc, r->items, r->views, nb, r->bfeats);
    else
        data_cache_images(&r->tc, r->items, r->augs, nb, &r->m->cfg, r->tmp, r->images);
    if (o->scst) {
        return scst_step_grad(r->sc, r->ts, input, nb, nb, r->items, &r->ck.sample_rng, loss, r->scst_sums);
    }
    if (r->backbone) return train_step_grad_features(r->ts, r->bfeats, &r->batch, &r->ck.drop_rng, loss);
    return train_step_grad(r->ts, r->images, &r->batch, &r->ck.drop_rng, loss);
}

/* Data-parallel self-critical step: the share's nl images (at positions pos of the batch of nb,
 * their inputs staged) with the loss averaged over the whole batch, and the step's reward sums
 * added over the ranks (an all-reduce: every rank calls it once per step, also after a failure).
 * Multinomial samples come from a stream of the rank's (train_dist_rank_rng), so they depend on
 * N, as dropout masks do; beam captions do not. */
static int run_scst_share(TrainRun *r, const float *input, int nl, const int *pos, int nb, DecoderLoss *loss)
{
    SacRng own, *rng = &r->ck.sample_rng;
    if (r->o->scst_sample == SCST_SAMPLE_MULTINOMIAL) train_dist_rank_rng(&r->ck.sample_rng, rng = &own);
    for (int j = 0; j < nl; j++) r->simages[j] = r->items[pos[j]];
    double sums[4] = {0.0, 0.0, 0.0, 0.0};
    const int st = nl > 0 ? scst_step_grad(r->sc, r->ts, input, nl, nb, r->simages, rng, loss, sums) : SAC_OK;
    const int rst = sac_dist_allreduce_f64(sums, 4, SAC_DIST_SUM);
    for (int i = 0; i < 4; i++) r->scst_sums[i] += sums[i];
    return st ? st : rst;
}

/* Data-parallel: the gradient of this rank's share of the batch (an even block of it, its rows
 * sent by the ranks holding them), normalised as the whole batch's (train_dist.h); an empty
 * share leaves *loss zero. */
static int run_gradient_share(TrainRun *r, DecoderLoss *loss)
{
    const TrainOptions *o = r->o;
    const DataCache *tc = &r->tc;
    const FeatCache *fc = &r->tfc;
    const int nb = r->batch.n_images;
    for (int b = 0; b < nb; b++) {
        const int k = r->items[b], row = tc->slot[k];
        r->owner[b] = tc->item[k] % r->nproc; /* who decoded it (data_cache_build_shard) */
        r->mine[b] = train_dist_computer(b, nb, r->nproc) == r->rank;
        r->rows[b] = row < 0 ? NULL /* the layouts of data_cache.h: pix (n, S, S, 3), f (n, views, P, Eb) */
                     : r->backbone ? (const uint8_t *)(fc->f + ((size_t)row * fc->views + r->views[b]) * fc->per)
                                   : tc->pix + (size_t)row * r->S * r->S * 3;
    }
    const uint8_t *stage;
    memset(loss, 0, sizeof(*loss));
    int st = train_dist_gather_rows(r->td, nb, r->owner, r->rows, &stage);
    if (st) return st;
    const int *pos;
    float lambda;
    const DecoderBatch *share = train_dist_share(r->td, &r->batch, r->mine, r->m->cfg.lambda, &pos, &lambda);
    const int nl = share->n_images;
    for (int j = 0; j < nl; j++) r->litems[j] = j, r->laugs[j] = r->augs[pos[j]];
    SacRng drop, *dr = NULL;
    if (!o->scst && r->m->cfg.dropout > 0.0f) train_dist_rank_rng(&r->ck.drop_rng, dr = &drop);
    /* self-critical steps sample their own captions: the share's images are all they need */
    const int work = nl > 0 && (o->scst || share->n_caps > 0);
    if (work && r->backbone) { /* the staged rows: one view each */
        FeatCache staged = *fc;
        staged.f = (uint16_t *)stage, staged.n = nl, staged.views = 1;
        feat_cache_gather(&staged, r->litems, NULL, nl, r->bfeats);
    } else if (work) {
        DataCache staged = *tc;
        staged.pix = (uint8_t *)stage, staged.n = staged.n_local = nl;
        data_cache_images(&staged, r->litems, r->laugs, nl, &r->m->cfg, r->tmp, r->images);
    }
    const float *input = r->backbone ? r->bfeats : r->images;
    if (o->scst) return run_scst_share(r, input, nl, pos, nb, loss); /* an empty share too: its collective */
    if (!work) return SAC_OK;
    const float *feats;
    st = train_step_encode(r->ts, input, nl, &feats);
    if (!st) st = train_step_grad_encoded(r->ts, share, lambda, dr, loss);
    return st;
}

/* One optimizer step on the next nb images. */
static int run_step(TrainRun *r, int nb, DecoderLoss *loss)
{
    const TrainOptions *o = r->o;
    run_batch(r, nb);
    int st = r->nproc > 1 ? run_gradient_share(r, loss) : run_gradient(r, nb, loss);
    if (r->nproc > 1) { /* every rank: the whole batch's gradient and loss, and any rank's failure or stop */
        int stop = (o->cancel && *o->cancel) || r->pending_stop;
        st = train_dist_reduce(r->td, r->ts, r->m->n_trainable, 1.0f, st ? st : r->pending_st, loss, &stop);
        r->pending_st = SAC_OK, r->pending_stop = 0;
        if (stop) r->cancelled = 1;
    }
    if (st) return st;
    /* Here the batch's gradient is in train_step_grads(r->ts) (m->n_trainable floats, the
     * model's layout) and its loss in *loss: what a data-parallel run sums over its processes
     * before the clipped Adam step. */
    if (!isfinite(loss->loss)) {
        sac_error("train: the loss became %g at step %ld; stopping (the last checkpoint is intact)", loss->loss,
                  r->ck.step);
        return SAC_ERR_INVALID;
    }
    r->last_norm = train_step_adam(r->ts, r->lr_enc, r->lr, o->clip, o->weight_decay);
    r->ck.step++;
    r->ck.pos += nb;
    return SAC_OK;
}

/* After a step: the running means, and every report_every_s seconds (and at the epoch's end) a
 * log line and the progress callback (which may cancel). */
static int run_report(TrainRun *r, int nb, const DecoderLoss *loss)
{
    const TrainOptions *o = r->o;
    if (r->rank > 0) return SAC_OK; /* rank 0 reports for the run */
    r->sum_loss += loss->loss, r->sum_ce += loss->ce, r->n_report++, r->imgs_report += nb;
    const double now = sac_time();
    const int batch_no = r->ck.pos / r->Bi + (r->ck.pos % r->Bi != 0);
    if (now - r->t_report < o->report_every_s && r->ck.pos < r->tc.n) return SAC_OK;
    TrainProgress p = {.epoch = r->ck.epoch + 1, .epochs = o->epochs, .step = r->ck.step, .batch = batch_no,
                       .batches = r->batches, .loss = r->sum_loss / r->n_report, .ce = r->sum_ce / r->n_report,
                       .images_per_s = r->imgs_report / (now - r->t_report)};
    p.eta_s = (r->batches - batch_no) * (now - r->t_epoch) / (batch_no - r->b0 > 0 ? batch_no - r->b0 : 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", r->ck.step);
    cJSON_AddNumberToObject(j, "epoch", r->ck.epoch + 1);
    cJSON_AddNumberToObject(j, "loss", p.loss);
    cJSON_AddNumberToObject(j, "ce", p.ce);
    cJSON_AddNumberToObject(j, "lr", r->lr);
    cJSON_AddNumberToObject(j, "lr_enc", r->lr_enc);
    if (r->m->cfg.bb.finetune_from) cJSON_AddNumberToObject(j, "lr_backbone", r->lr_bb);
    cJSON_AddNumberToObject(j, "grad_norm", r->last_norm);
    cJSON_AddNumberToObject(j, "images_per_s", p.images_per_s);
    const double scst_n = r->scst_sums[3];
    if (o->scst && scst_n > 0) {
        p.scst = 1;
        p.reward = r->scst_sums[0] / scst_n, p.sample_cider = r->scst_sums[1] / scst_n;
        p.greedy_cider = r->scst_sums[2] / scst_n;
        cJSON_AddNumberToObject(j, "reward", p.reward);
        cJSON_AddNumberToObject(j, "sample_cider", p.sample_cider);
        cJSON_AddNumberToObject(j, "greedy_cider", p.greedy_cider);
    }
    if (r->nproc > 1) { /* communication per step since the last report (rank 0's) */
        TrainDistComm c;
        train_dist_comm(r->td, &c, 1);
        const double n = c.steps ? (double)c.steps : 1.0;
        cJSON_AddNumberToObject(j, "ranks", r->nproc);
        cJSON_AddNumberToObject(j, "exchange_s", c.exchange_s / n);
        cJSON_AddNumberToObject(j, "exchange_bytes", c.exchange_bytes / n);
        cJSON_AddNumberToObject(j, "comm_wait_s", c.wait_s / n);
        cJSON_AddNumberToObject(j, "comm_s", c.reduce_s / n);
        cJSON_AddNumberToObject(j, "comm_bytes", c.reduce_bytes / n);
    }
    cJSON_AddNumberToObject(j, "time", now);
    int st = run_log(r, j);
    if (st && r->nproc > 1) r->pending_st = st, st = SAC_OK; /* the other ranks hear of it at the next collective */
    if (st) return st;
    if (o->progress && o->progress(&p, o->user)) {
        if (r->nproc > 1) r->pending_stop = 1;
        else r->cancelled = 1;
    }
    r->t_report = now, r->sum_loss = r->sum_ce = 0, r->n_report = r->imgs_report = 0;
    memset(r->scst_sums, 0, sizeof(r->scst_sums));
    return SAC_OK;
}

/* ---- the epoch */

/* The steps of one epoch (or its rest, after a resume), with a checkpoint every
 * checkpoint_every steps and when cancelled mid-epoch. Returns with ck.pos < tc.n when
 * cancelled before the epoch's end. */
static int run_epoch(TrainRun *r)
{
    const TrainOptions *o = r->o;
    CheckpointState *ck = &r->ck;
    const int n = r->tc.n;
    if (ck->pos < 0) {
        sac_rng_shuffle(&ck->data_rng, r->order, n);
        ck->pos = 0;
    }
    const float decay = powf(o->lr_decay, (float)ck->epoch);
    r->lr = o->lr * decay, r->lr_enc = o->lr_enc * decay;
    r->lr_bb = (o->lr_backbone < 0.0f ? 0.1f * o->lr_enc : o->lr_backbone) * decay;
    train_step_set_lr_backbone(r->ts, r->lr_bb);
    r->t_epoch = sac_time();
    r->b0 = ck->pos / r->Bi;
    while (ck->pos < n && !r->cancelled) {
        const int nb = SAC_MIN(n - ck->pos, r->Bi);
        DecoderLoss loss;
        int st = run_step(r, nb, &loss);
        if (!st) st = run_report(r, nb, &loss);
        if (st) return st;
        if (o->max_steps > 0 && ck->step >= o->max_steps) r->cancelled = 2;
        if (r->nproc == 1 && o->cancel && *o->cancel) r->cancelled = 1; /* data-parallel: agreed in run_step */
        if ((o->checkpoint_every > 0 && ck->step % o->checkpoint_every == 0) || r->cancelled) {
            if (ck->pos >= n) break; /* the epoch-end checkpoint follows the evaluation */
            st = run_checkpoint_all(r, SAC_OK);
            if (st) return st;
        }
    }
    return SAC_OK;
}

/* The end of an epoch: evaluate on dev, keep the best model, checkpoint; *stop when dev has not
 * improved for `patience` epochs. */
static int run_end_epoch(TrainRun *r, int *stop)
{
    const TrainOptions *o = r->o;
    CheckpointState *ck = &r->ck;
    double score = 0;
    int improved = 1, st = SAC_OK;
    if (r->dev) { /* rank 0's only */
        EvalResult res;
        const double te = sac_time();
        st = run_evaluate(r, &res);
        if (st) goto verdict;
        score = run_score(r, &res);
        improved = score > ck->best;
        sac_info("epoch %d: dev (%d images, beam %d, %.0f s) BLEU-1..4 %.3f %.3f %.3f %.3f  ROUGE-L %.3f  "
                 "CIDEr-D %.3f  distinct %.1f%%  words %d  attention max %.3f (%.1fx uniform) entropy %.2f  %s",
                 ck->epoch + 1, res.n_images, o->eval_beam, sac_time() - te, res.scores.bleu[0], res.scores.bleu[1],
                 res.scores.bleu[2], res.scores.bleu[3], res.scores.rouge_l, res.scores.cider_d,
                 100.0 * res.n_distinct / res.n_images, res.vocab_used, res.att_max, res.att_max * r->m->P,
                 res.att_entropy, improved ? "(best so far)" : "");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "epoch", ck->epoch + 1);
        cJSON_AddNumberToObject(j, "step", ck->step);
        cJSON_AddItemToObject(j, "dev", scores_json(&res));
        cJSON_AddBoolToObject(j, "best", improved);
        cJSON_AddNumberToObject(j, "epoch_seconds", sac_time() - r->t_epoch);
        st = run_log(r, j);
        if (!st && o->progress) {
            TrainProgress p = {.epoch = ck->epoch + 1, .epochs = o->epochs, .step = ck->step, .batch = r->batches,
                               .batches = r->batches, .evaluated = 1, .dev = res.scores,
                               .dev_distinct = (double)res.n_distinct / res.n_images};
            if (o->progress(&p, o->user)) r->cancelled = 1;
        }
        eval_result_clear(&res);
    }
verdict:
    if (r->nproc > 1) st = run_dev_verdict(r, st, &score, &improved);
    if (st) return st;
    if (improved) {
        ck->best = score, ck->best_epoch = ck->epoch + 1, ck->since_best = 0;
        st = r->rank == 0 ? run_save_best(r) : SAC_OK;
    } else {
        ck->since_best++;
    }
    ck->epoch++;
    ck->pos = -1;
    st = run_checkpoint_all(r, st);
    if (st) return st;
    if (o->patience > 0 && ck->since_best >= o->patience) {
        sac_info("no dev improvement for %d epochs: stopping (best epoch %d)", ck->since_best, ck->best_epoch);
        *stop = 1;
    }
    return SAC_OK;
}

/* ---- teardown */

/* Closes the log (a failure to write its last lines turns SAC_OK into SAC_ERR_IO), frees
 * everything; returns the run's status. */
static int run_teardown(TrainRun *r, int st)
{
    if (r->agree_pending) sac_dist_agree(st); /* a rank that failed in setup still meets the others once */
    if (r->nproc > 1 && r->rank == 0 && r->td) {
        SacDistStats ds;
        sac_dist_stats(&ds);
        sac_info("communication: %.1f s in MPI calls, %.1f MB per rank", ds.seconds, 1e-6 * (double)ds.bytes);
    }
    train_dist_free(r->td);
    free(r->mine), free(r->owner), free(r->rows), free(r->litems), free(r->laugs), free(r->simages);
    if (sac_output_close(r->log) && !st) st = SAC_ERR_IO;
    free(r->order), free(r->img), free(r->tokens), free(r->lens), free(r->pick), free(r->images), free(r->tmp);
    free(r->items), free(r->augs), free(r->bfeats), free(r->views);
    data_cache_free(&r->tc), data_cache_free(&r->dc);
    feat_cache_free(&r->tfc), feat_cache_free(&r->dfc);
    scst_step_free(r->sc);
    metrics_cider_free(r->cider);
    free(r->flags);
    captioner_free(r->cap);
    train_step_free(r->ts);
    model_free(r->m);
    vocab_free(r->vocab);
    dataset_free(r->train), dataset_free(r->dev);
    return st;
}

int train_run(const TrainOptions *o)
{
    TrainRun r;
    int st = run_setup(&r, o), stop = 0;
    while (!st && !stop && !r.cancelled && r.ck.epoch < o->epochs) {
        st = run_epoch(&r);
        if (st || r.ck.pos < r.tc.n) break; /* failed, or cancelled mid-epoch (checkpoint written) */
        st = run_end_epoch(&r, &stop);
    }
    if (!st && r.cancelled) st = SAC_ERR_CANCELLED;
    return run_teardown(&r, st);
}
