/*
 * trainer.c - the training run (cross-entropy, or self-critical from a trained model), see
 * trainer.h (the gradient steps are train_step.c, the data in memory data_cache.c, the dev
 * evaluation eval.c).
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
#include "data_cache.h"
#include "eval.h"
#include "output.h"
#include "sac.h"
#include "safetensors.h"

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

/* Everything a checkpoint restores besides the model and Adam moments. */
typedef struct {
    long step;
    int epoch, pos, since_best, best_epoch, n_items;
    double best;
    SacRng data_rng, drop_rng;
    int scst;          /* a self-critical run: also sample_rng */
    SacRng sample_rng;
} RunState;

/* The options that decide what a run trains on, as JSON: saved in the checkpoint, so that
 * --resume refuses to continue a run on other data (the model flags are in the model's config). */
static char *data_flags_json(const TrainOptions *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "--data", o->data ? o->data : "");
    cJSON_AddStringToObject(j, "--images", o->image_dir ? o->image_dir : "");
    cJSON_AddStringToObject(j, "--train-split", o->train_split ? o->train_split : "");
    cJSON_AddStringToObject(j, "--dev-split", o->dev_split ? o->dev_split : "none");
    cJSON_AddNumberToObject(j, "--min-count", o->min_count);
    cJSON_AddNumberToObject(j, "--batch", o->batch_images);
    cJSON_AddNumberToObject(j, "--caps-per-image", o->caps_per_image);
    cJSON_AddBoolToObject(j, "--no-augment", !o->augment);
    cJSON_AddNumberToObject(j, "--seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "--eval-max", o->eval_max_images);
    if (o->scst) { /* only then: cross-entropy checkpoints keep their bytes */
        cJSON_AddBoolToObject(j, "--scst", 1);
        cJSON_AddStringToObject(j, "--init", o->init ? o->init : "");
        cJSON_AddNumberToObject(j, "--scst-samples", o->scst_samples);
    }
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return t;
}

/* Two path options name the same thing: the same text, or the same file. */
static int same_path(const char *a, const char *b)
{
    if (!strcmp(a, b)) return 1;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    const int same = ra && rb && !strcmp(ra, rb);
    free(ra), free(rb);
    return same;
}

/* --resume: every model and data flag must be what the checkpoint was made with. */
static int resume_check(const char *ckpt, const TrainOptions *o, const Model *m, const char *saved_flags)
{
    const ModelConfig *a = &o->cfg, *b = &m->cfg;
    const char *flag = NULL;
    char was[64] = "", now[64] = "";
    /* (a self-critical run's model is --init's: nothing to compare) */
#define DIFF(cond, name, fmt, x, y) \
    if (!flag && !o->scst && (cond)) flag = name, snprintf(was, sizeof(was), fmt, y), snprintf(now, sizeof(now), fmt, x)
    DIFF(a->bb.kind != b->bb.kind, "--backbone", "%s", a->bb.kind ? "MobileNetV2" : "none",
         b->bb.kind ? "MobileNetV2" : "none");
    DIFF(a->bb.kind && a->bb.grid != b->bb.grid, "--grid", "%d", a->bb.grid, b->bb.grid);
    DIFF(a->bb.kind && a->bb.proj != b->bb.proj, "--proj", "%s", a->bb.proj ? "on" : "0", b->bb.proj ? "on" : "0");
    DIFF(a->E != b->E, a->bb.kind ? "--proj" : "--conv", "E = %d", a->E, b->E);
    DIFF(a->enc.image_size != b->enc.image_size, "--image-size", "%d", a->enc.image_size, b->enc.image_size);
    if (!a->bb.kind && !b->bb.kind) {
        DIFF(a->enc.batchnorm != b->enc.batchnorm, "--no-batchnorm", "%s", a->enc.batchnorm ? "off" : "on",
             b->enc.batchnorm ? "off" : "on");
        DIFF(a->enc.n_conv != b->enc.n_conv, "--conv", "%d layers", a->enc.n_conv, b->enc.n_conv);
        for (int i = 0; i < a->enc.n_conv && !flag; i++) {
            const ConvSpec *x = &a->enc.conv[i], *y = &b->enc.conv[i];
            DIFF(x->cout != y->cout || x->stride != y->stride || x->pool != y->pool, "--conv", "layer %d differs",
                 i + 1, i + 1);
        }
    }
    DIFF(a->A != b->A, "--att", "%d", a->A, b->A);
    DIFF(a->D != b->D, "--hidden", "%d", a->D, b->D);
    DIFF(a->M != b->M, "--embed", "%d", a->M, b->M);
    DIFF(a->T != b->T, "--max-len", "%d", a->T, b->T);
    DIFF(a->dropout != b->dropout, "--dropout", "%g", a->dropout, b->dropout);
    DIFF(a->lambda != b->lambda, "--lambda", "%g", a->lambda, b->lambda);
#undef DIFF
    if (flag) {
        sac_error("%s: the checkpoint was made with %s %s, this command says %s: resume with the same model flags "
                  "(or start a new run)", ckpt, flag, was, now);
        return SAC_ERR_INVALID;
    }
    if (!saved_flags) {
        sac_warn("%s: an older checkpoint without its data flags; not checking them", ckpt);
        return SAC_OK;
    }
    char *mine = data_flags_json(o);
    cJSON *x = cJSON_Parse(mine), *y = cJSON_Parse(saved_flags);
    int st = mine && x ? SAC_OK : SAC_ERR_NOMEM;
    if (!st && !cJSON_IsObject(y)) {
        sac_error("%s: metadata 'train_flags' is not a JSON object", ckpt);
        st = SAC_ERR_FORMAT;
    }
    for (cJSON *e = x ? x->child : NULL; e && !st; e = e->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(y, e->string);
        char *ev = cJSON_PrintUnformatted(e), *fv = f ? cJSON_PrintUnformatted(f) : NULL;
        int same = ev && fv && !strcmp(ev, fv);
        if (!same && fv && cJSON_IsString(e) && cJSON_IsString(f) && *e->valuestring && *f->valuestring)
            same = same_path(e->valuestring, f->valuestring);
        if (!same) {
            sac_error("%s: the checkpoint was made with %s %s, this command says %s: resume with the same data "
                      "flags (or start a new run)", ckpt, e->string, fv ? fv : "(not recorded)", ev ? ev : "?");
            st = SAC_ERR_INVALID;
        }
        free(ev), free(fv);
    }
    cJSON_Delete(x), cJSON_Delete(y);
    free(mine);
    return st;
}

static int checkpoint_write(const char *path, const Model *m, TrainStep *ts, const RunState *rs, const int *order,
                            const char *flags)
{
    float *adam_m, *adam_v;
    long *t;
    train_step_optim(ts, &adam_m, &adam_v, &t);
    SafeTensorsWriter *w = safetensors_writer_create();
    if (!w) return SAC_ERR_NOMEM;
    int st = model_write_to(m, w, 0);
    const int64_t nt = (int64_t)m->n_trainable, ni = rs->n_items, four = 4, six = 6, one = 1;
    int64_t counters[6] = {rs->step, rs->epoch, rs->pos, rs->since_best, rs->best_epoch, rs->n_items};
    uint64_t rng[4] = {rs->data_rng.state, rs->data_rng.inc, rs->drop_rng.state, rs->drop_rng.inc};
    int64_t adam_t = *t;
    st = st ? st : safetensors_writer_add_f32(w, "optim.adam_m", 1, &nt, adam_m, SAC_DTYPE_F32);
    st = st ? st : safetensors_writer_add_f32(w, "optim.adam_v", 1, &nt, adam_v, SAC_DTYPE_F32);
    st = st ? st : safetensors_writer_add_raw(w, "optim.t", SAC_DTYPE_I64, 1, &one, &adam_t);
    st = st ? st : safetensors_writer_add_raw(w, "train.counters", SAC_DTYPE_I64, 1, &six, counters);
    st = st ? st : safetensors_writer_add_raw(w, "train.rng", SAC_DTYPE_U64, 1, &four, rng);
    st = st ? st : safetensors_writer_add_raw(w, "train.best", SAC_DTYPE_F64, 1, &one, &rs->best);
    st = st ? st : safetensors_writer_add_raw(w, "train.order", SAC_DTYPE_I32, 1, &ni, order);
    const int64_t two = 2;
    const uint64_t srng[2] = {rs->sample_rng.state, rs->sample_rng.inc};
    if (rs->scst) st = st ? st : safetensors_writer_add_raw(w, "train.sample_rng", SAC_DTYPE_U64, 1, &two, srng);
    if (rs->scst) st = st ? st : safetensors_writer_meta(w, "mode", "scst");
    st = st ? st : safetensors_writer_meta(w, "checkpoint", "saccade-checkpoint-1");
    st = st ? st : safetensors_writer_meta(w, "train_flags", flags);
    st = st ? st : safetensors_writer_write(w, path);
    safetensors_writer_free(w);
    return st;
}

/* Restores into an existing model (same config) and step state. */
static int checkpoint_read(const char *path, Model **mp, TrainStep **tsp, RunState *rs, int **order,
                           int max_images, int max_caps, const TrainOptions *o)
{
    SafeTensors *f = safetensors_read(path);
    if (!f) return SAC_ERR_IO;
    int st = SAC_OK;
    Model *m = NULL;
    TrainStep *ts = NULL;
    if (!safetensors_meta(f, "checkpoint")) {
        sac_error("%s: not a saccade training checkpoint (no 'checkpoint' metadata)", path);
        st = SAC_ERR_FORMAT;
        goto done;
    }
    m = model_from_safetensors(f);
    if (!m) {
        st = SAC_ERR_FORMAT;
        goto done;
    }
    const int scst = safetensors_meta(f, "mode") && !strcmp(safetensors_meta(f, "mode"), "scst");
    if (scst != !!o->scst) {
        sac_error("%s: a %s checkpoint, this command %s: resume with the same mode", path,
                  scst ? "self-critical (--scst)" : "cross-entropy", o->scst ? "says --scst" : "has no --scst");
        st = SAC_ERR_INVALID;
        goto done;
    }
    st = resume_check(path, o, m, safetensors_meta(f, "train_flags"));
    if (st) goto done;
    ts = train_step_create(m, max_images, max_caps);
    if (!ts) {
        st = SAC_ERR_NOMEM;
        goto done;
    }
    const int64_t nt = (int64_t)m->n_trainable, four = 4, six = 6, one = 1;
    int64_t counters[6], adam_t;
    uint64_t rng[4];
    float *adam_m, *adam_v;
    long *t;
    train_step_optim(ts, &adam_m, &adam_v, &t);
    st = st ? st : safetensors_load_f32(f, "optim.adam_m", adam_m, 1, &nt);
    st = st ? st : safetensors_load_f32(f, "optim.adam_v", adam_v, 1, &nt);
    st = st ? st : safetensors_load_raw(f, "optim.t", SAC_DTYPE_I64, &adam_t, 1, &one);
    st = st ? st : safetensors_load_raw(f, "train.counters", SAC_DTYPE_I64, counters, 1, &six);
    st = st ? st : safetensors_load_raw(f, "train.rng", SAC_DTYPE_U64, rng, 1, &four);
    st = st ? st : safetensors_load_raw(f, "train.best", SAC_DTYPE_F64, &rs->best, 1, &one);
    if (st) goto done;
    *t = adam_t;
    rs->step = counters[0], rs->epoch = (int)counters[1], rs->pos = (int)counters[2];
    rs->since_best = (int)counters[3], rs->best_epoch = (int)counters[4], rs->n_items = (int)counters[5];
    rs->data_rng = (SacRng){rng[0], rng[1]};
    rs->drop_rng = (SacRng){rng[2], rng[3]};
    rs->scst = scst;
    if (scst) {
        const int64_t two = 2;
        uint64_t srng[2];
        st = safetensors_load_raw(f, "train.sample_rng", SAC_DTYPE_U64, srng, 1, &two);
        if (st) goto done;
        rs->sample_rng = (SacRng){srng[0], srng[1]};
    }
    const int64_t ni = rs->n_items;
    *order = sac_malloc(sizeof(int) * (ni ? ni : 1));
    if (!*order) {
        st = SAC_ERR_NOMEM;
        goto done;
    }
    st = safetensors_load_raw(f, "train.order", SAC_DTYPE_I32, *order, 1, &ni);
done:
    safetensors_free(f);
    if (st) {
        train_step_free(ts);
        model_free(m);
        return st;
    }
    *mp = m, *tsp = ts;
    return SAC_OK;
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

int train_run(const TrainOptions *o)
{
    int st = SAC_OK;
    Dataset *train = NULL, *dev = NULL;
    Vocab *vocab = NULL;
    Model *m = NULL;
    TrainStep *ts = NULL;
    Captioner *cap = NULL;
    DataCache tc = {0}, dc = {0};
    FeatCache tfc = {0}, dfc = {0};
    float *bfeats = NULL;
    int *views = NULL;
    int *order = NULL, *img = NULL, *tokens = NULL, *lens = NULL, *pick = NULL, *items = NULL;
    Augment *augs = NULL;
    float *images = NULL;
    uint8_t *tmp = NULL;
    SacOutput *log = NULL;
    char ckpt[4096];
    RunState rs = {0};
    SacCider *cider = NULL;
    ScstStep *sc = NULL;
    char *flags = data_flags_json(o);
    if (!flags) return SAC_ERR_NOMEM;
    snprintf(ckpt, sizeof(ckpt), "%s%s", o->checkpoint ? o->checkpoint : o->out,
             o->checkpoint ? "" : ".ckpt");
    const int Bi = o->batch_images;
    const int T = o->cfg.T;

    train = dataset_open(o->data, o->train_split, o->image_dir);
    if (!train) {
        st = SAC_ERR_INVALID;
        goto done;
    }
    dataset_check_images(train);
    if (o->dev_split) {
        dev = dataset_open(o->data, o->dev_split, o->image_dir);
        if (!dev) {
            st = SAC_ERR_INVALID;
            goto done;
        }
        dataset_check_images(dev);
    }
    { /* never write over what the run reads */
        const char *inputs[] = {o->data, train->source, dev ? dev->source : NULL, o->backbone};
        const char *outputs[][2] = {{o->out, "--out"}, {ckpt, "--checkpoint"}, {o->log, "--log"}};
        for (int i = 0; i < 3 && !st; i++)
            if (outputs[i][0]) st = sac_output_check_inputs(outputs[i][0], outputs[i][1], inputs, 4);
        if (st) goto done;
    }
    /* the model: fresh, or from the checkpoint */
    int max_caps_per_image = 1;
    for (int i = 0; i < train->n_items; i++)
        if (train->items[i].n_captions > max_caps_per_image) max_caps_per_image = train->items[i].n_captions;
    const int k = o->caps_per_image > 0 && o->caps_per_image < max_caps_per_image ? o->caps_per_image : max_caps_per_image;
    if (o->scst && (!o->init || o->scst_samples < 1)) {
        sac_error("train: self-critical training needs the model to start from (--init) and at least 1 sample, "
                  "found %s and %d", o->init ? o->init : "none", o->scst_samples);
        st = SAC_ERR_INVALID;
        goto done;
    }
    const int max_caps = o->scst ? Bi * o->scst_samples : Bi * k;
    if (o->resume) {
        st = checkpoint_read(ckpt, &m, &ts, &rs, &order, Bi, max_caps, o);
        if (st) goto done;
        vocab = NULL;
        sac_info("resuming from %s at epoch %d, step %ld", ckpt, rs.epoch + 1, rs.step);
    } else if (o->scst) {
        m = model_load(o->init);
        if (!m) {
            st = SAC_ERR_INVALID;
            goto done;
        }
        ts = train_step_create(m, Bi, max_caps);
        if (!ts) {
            st = SAC_ERR_NOMEM;
            goto done;
        }
        sac_rng_seed(&rs.data_rng, o->seed, 2);
        sac_rng_seed(&rs.drop_rng, o->seed, 3);
        sac_rng_seed(&rs.sample_rng, o->seed, 4);
        rs.scst = 1;
        rs.best = -1.0;
        rs.pos = -1;
        sac_info("self-critical training from %s: %d samples per photo, reward CIDEr-D against the greedy caption",
                 o->init, o->scst_samples);
    } else {
        WordCounts *wc = word_counts_create();
        if (!wc || dataset_count_words(train, wc) != SAC_OK) {
            word_counts_free(wc);
            st = SAC_ERR_NOMEM;
            goto done;
        }
        vocab = vocab_build(wc, o->min_count);
        word_counts_free(wc);
        if (!vocab) {
            st = SAC_ERR_NOMEM;
            goto done;
        }
        ModelConfig cfg = o->cfg;
        cfg.V = vocab_size(vocab);
        m = model_create(&cfg);
        if (!m) {
            st = SAC_ERR_INVALID;
            goto done;
        }
        m->vocab = vocab;
        vocab = NULL;
        SacRng init;
        sac_rng_seed(&init, o->seed, 1);
        model_init(m, &init);
        if (cfg.bb.kind != SAC_BACKBONE_NONE) {
            if (!o->backbone) {
                sac_error("train: a MobileNetV2 model needs its pretrained weights (--backbone FILE)");
                st = SAC_ERR_INVALID;
                goto done;
            }
            st = model_load_backbone(m, o->backbone, o->store_f16);
            if (st) goto done;
        }
        ts = train_step_create(m, Bi, max_caps);
        if (!ts) {
            st = SAC_ERR_NOMEM;
            goto done;
        }
        sac_rng_seed(&rs.data_rng, o->seed, 2);
        sac_rng_seed(&rs.drop_rng, o->seed, 3);
        rs.best = -1.0;
        rs.pos = -1; /* a new epoch starts by shuffling */
    }
    const int S = m->cfg.enc.image_size;
    const int backbone = m->cfg.bb.kind != SAC_BACKBONE_NONE;
    if (backbone)
        sac_info("model: %zu trained parameters on a frozen MobileNetV2 (%zu), %dx%d grid of %d channels, "
                 "vocabulary %d words", m->n_trainable, m->n_floats - m->n_trainable, m->grid_h, m->grid_w,
                 m->cfg.bb.channels, m->cfg.V);
    else
        sac_info("model: %zu parameters, %dx%d grid, vocabulary %d words", m->n_trainable, m->grid_h, m->grid_w,
                 m->cfg.V);
    if (dev || backbone) {
        cap = captioner_create(m, 64, o->eval_beam);
        if (!cap) {
            st = SAC_ERR_NOMEM;
            goto done;
        }
    }
    st = data_cache_build(&tc, train, 0, m->vocab, S, m->cfg.T, "train");
    if (!st && backbone) st = feat_cache_build(&tfc, &tc, m, cap, o->augment ? 2 : 1, "train");
    if (st) goto done;
    if (dev) {
        st = data_cache_build(&dc, dev, o->eval_max_images, NULL, S, m->cfg.T, "dev");
        if (!st && backbone) st = feat_cache_build(&dfc, &dc, m, cap, 1, "dev");
        if (st) goto done;
    }
    if (o->scst) {
        cider = scst_cider(&tc, train);
        sc = cider ? scst_step_create(m, cider, Bi, o->scst_samples) : NULL;
        if (!sc) {
            st = cider ? SAC_ERR_NOMEM : SAC_ERR_INVALID;
            goto done;
        }
    }
    if (o->resume && rs.n_items != tc.n) {
        sac_error("%s: the checkpoint was trained on %d images, the data now has %d: not the same data", ckpt,
                  rs.n_items, tc.n);
        st = SAC_ERR_INVALID;
        goto done;
    }
    if (!o->resume) {
        rs.n_items = tc.n;
        order = sac_malloc(sizeof(int) * tc.n);
        if (!order) {
            st = SAC_ERR_NOMEM;
            goto done;
        }
        for (int i = 0; i < tc.n; i++) order[i] = i;
    }
    if (o->log) {
        log = sac_output_open(o->log, SAC_OUTPUT_INPLACE | (o->resume ? SAC_OUTPUT_APPEND : 0));
        if (!log) {
            sac_error("%s: cannot open the training log for writing", o->log);
            st = SAC_ERR_IO;
            goto done;
        }
    }
    img = sac_malloc(sizeof(int) * max_caps);
    lens = sac_malloc(sizeof(int) * max_caps);
    tokens = sac_malloc(sizeof(int) * max_caps * (T + 1));
    pick = sac_malloc(sizeof(int) * max_caps_per_image);
    if (backbone) {
        bfeats = sac_alloc_floats((size_t)Bi * tfc.per);
        views = sac_malloc(sizeof(int) * Bi);
    } else {
        images = sac_alloc_floats((size_t)Bi * 3 * S * S);
        tmp = sac_malloc((size_t)Bi * S * S * 3);
    }
    items = sac_malloc(sizeof(int) * Bi);
    augs = sac_malloc(sizeof(Augment) * Bi);
    if (!img || !lens || !tokens || !pick || (backbone ? !bfeats || !views : !images || !tmp) || !items || !augs) {
        st = SAC_ERR_NOMEM;
        goto done;
    }
    const int batches = (tc.n + Bi - 1) / Bi;
    const SearchOptions eval_opt = {.beam = o->eval_beam, .nbest = 1, .max_len = m->cfg.T, .len_norm = 0.7f};
    double t_report = sac_time(), sum_loss = 0, sum_ce = 0;
    double scst_sums[3] = {0}; /* rewards, sample and greedy CIDEr-D since the last report */
    long scst_n = 0;
    int n_report = 0, imgs_report = 0;
    int cancelled = 0;
    double last_norm = 0;
    if (o->scst && !o->resume && dev) {
        /* the model self-critical training starts from, scored as every epoch will be: the
         * one to beat (and `out` until then) */
        EvalResult r;
        st = captioner_refresh(cap);
        if (!st) st = eval_cached(m, cap, &dc, backbone ? &dfc : NULL, dev, &eval_opt, 0, &r);
        if (st) goto done;
        rs.best = !strcmp(o->select_metric, "bleu4") ? r.scores.bleu[3] : r.scores.cider_d;
        sac_info("start: dev (%d images, beam %d) BLEU-4 %.3f  CIDEr-D %.3f  distinct %.1f%%  words %d", r.n_images,
                 o->eval_beam, r.scores.bleu[3], r.scores.cider_d, 100.0 * r.n_distinct / r.n_images, r.vocab_used);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "epoch", 0);
        cJSON_AddNumberToObject(j, "step", 0);
        cJSON_AddItemToObject(j, "dev", scores_json(&r));
        cJSON_AddBoolToObject(j, "best", 1);
        st = log_json(log, j);
        eval_result_clear(&r);
        if (st) goto done;
        st = model_save(m, o->out, o->store_f16);
        if (st) goto done;
    }
    while (rs.epoch < o->epochs && !cancelled) {
        if (rs.pos < 0) {
            sac_rng_shuffle(&rs.data_rng, order, tc.n);
            rs.pos = 0;
        }
        const float decay = powf(o->lr_decay, (float)rs.epoch);
        const float lr = o->lr * decay, lr_enc = o->lr_enc * decay;
        double t_epoch = sac_time();
        int b0 = rs.pos / Bi;
        while (rs.pos < tc.n && !cancelled) {
            const int nb = tc.n - rs.pos < Bi ? tc.n - rs.pos : Bi;
            int nc = 0;
            for (int b = 0; b < nb && o->scst; b++) { /* the images only: the captions are sampled */
                items[b] = order[rs.pos + b];
                if (backbone)
                    views[b] = o->augment && sac_rng_uniform(&rs.data_rng) < 0.5f;
                else
                    augs[b] = augment_draw(&rs.data_rng, o->augment, S);
            }
            for (int b = 0; b < nb && !o->scst; b++) {
                const int item = order[rs.pos + b];
                items[b] = item;
                if (backbone) /* cached features: the mirror image is the only augmentation */
                    views[b] = o->augment && sac_rng_uniform(&rs.data_rng) < 0.5f;
                else
                    augs[b] = augment_draw(&rs.data_rng, o->augment, S);
                const int c0 = tc.cap_off[item], cn = tc.cap_off[item + 1] - c0;
                for (int j = 0; j < cn; j++) pick[j] = c0 + j;
                if (cn > k) sac_rng_shuffle(&rs.data_rng, pick, cn);
                for (int j = 0; j < cn && j < k; j++) {
                    img[nc] = b;
                    lens[nc] = tc.len[pick[j]];
                    memcpy(tokens + (size_t)nc * (T + 1), tc.tok + (size_t)pick[j] * (T + 1), sizeof(int) * (T + 1));
                    nc++;
                }
            }
            DecoderBatch batch = {nc, nb, img, tokens, lens, NULL};
            DecoderLoss loss;
            if (o->scst) {
                const float *input = backbone ? bfeats : images;
                if (backbone)
                    feat_cache_gather(&tfc, items, views, nb, bfeats);
                else
                    data_cache_images(&tc, items, augs, nb, &m->cfg, tmp, images);
                st = scst_step_grad(sc, ts, input, nb, items, &rs.sample_rng, &loss, scst_sums);
                scst_n += nb * o->scst_samples;
            } else if (backbone) {
                feat_cache_gather(&tfc, items, views, nb, bfeats);
                st = train_step_grad_features(ts, bfeats, &batch, &rs.drop_rng, &loss);
            } else {
                data_cache_images(&tc, items, augs, nb, &m->cfg, tmp, images);
                st = train_step_grad(ts, images, &batch, &rs.drop_rng, &loss);
            }
            if (st) goto done;
            if (!isfinite(loss.loss)) {
                sac_error("train: the loss became %g at step %ld; stopping (the last checkpoint is intact)", loss.loss,
                          rs.step);
                st = SAC_ERR_INVALID;
                goto done;
            }
            last_norm = train_step_adam(ts, lr_enc, lr, o->clip, o->weight_decay);
            rs.step++;
            rs.pos += nb;
            sum_loss += loss.loss, sum_ce += loss.ce, n_report++, imgs_report += nb;
            const double now = sac_time();
            const int batch_no = rs.pos / Bi + (rs.pos % Bi != 0);
            if (now - t_report >= o->report_every_s || rs.pos >= tc.n) {
                TrainProgress p = {.epoch = rs.epoch + 1, .epochs = o->epochs, .step = rs.step, .batch = batch_no,
                                   .batches = batches, .loss = sum_loss / n_report, .ce = sum_ce / n_report,
                                   .images_per_s = imgs_report / (now - t_report)};
                p.eta_s = (batches - batch_no) * (now - t_epoch) / (batch_no - b0 > 0 ? batch_no - b0 : 1);
                cJSON *j = cJSON_CreateObject();
                cJSON_AddNumberToObject(j, "step", rs.step);
                cJSON_AddNumberToObject(j, "epoch", rs.epoch + 1);
                cJSON_AddNumberToObject(j, "loss", p.loss);
                cJSON_AddNumberToObject(j, "ce", p.ce);
                cJSON_AddNumberToObject(j, "lr", lr);
                cJSON_AddNumberToObject(j, "lr_enc", lr_enc);
                cJSON_AddNumberToObject(j, "grad_norm", last_norm);
                cJSON_AddNumberToObject(j, "images_per_s", p.images_per_s);
                if (o->scst && scst_n) {
                    p.scst = 1;
                    p.reward = scst_sums[0] / scst_n, p.sample_cider = scst_sums[1] / scst_n;
                    p.greedy_cider = scst_sums[2] / scst_n;
                    cJSON_AddNumberToObject(j, "reward", p.reward);
                    cJSON_AddNumberToObject(j, "sample_cider", p.sample_cider);
                    cJSON_AddNumberToObject(j, "greedy_cider", p.greedy_cider);
                }
                cJSON_AddNumberToObject(j, "time", now);
                if ((st = log_json(log, j))) goto done;
                if (o->progress && o->progress(&p, o->user)) cancelled = 1;
                t_report = now, sum_loss = sum_ce = 0, n_report = imgs_report = 0;
                scst_sums[0] = scst_sums[1] = scst_sums[2] = 0, scst_n = 0;
            }
            if (o->max_steps > 0 && rs.step >= o->max_steps) cancelled = 2;
            if (o->cancel && *o->cancel) cancelled = 1;
            if ((o->checkpoint_every > 0 && rs.step % o->checkpoint_every == 0) || cancelled) {
                if (rs.pos >= tc.n) break; /* the epoch-end checkpoint follows the evaluation */
                st = checkpoint_write(ckpt, m, ts, &rs, order, flags);
                if (st) goto done;
            }
        }
        if (rs.pos < tc.n) break; /* cancelled mid-epoch: checkpoint already written */
        /* end of epoch: evaluate, keep the best, checkpoint */
        double score = 0;
        int improved = 1;
        if (dev) {
            EvalResult r;
            double te = sac_time();
            st = captioner_refresh(cap);
            if (!st) st = eval_cached(m, cap, &dc, backbone ? &dfc : NULL, dev, &eval_opt, 0, &r);
            if (st) goto done;
            score = !strcmp(o->select_metric, "bleu4") ? r.scores.bleu[3] : r.scores.cider_d;
            improved = score > rs.best;
            sac_info("epoch %d: dev (%d images, beam %d, %.0f s) BLEU-1..4 %.3f %.3f %.3f %.3f  ROUGE-L %.3f  "
                     "CIDEr-D %.3f  distinct %.1f%%  words %d  attention max %.3f (%.1fx uniform) entropy %.2f  %s",
                     rs.epoch + 1, r.n_images, o->eval_beam, sac_time() - te, r.scores.bleu[0], r.scores.bleu[1],
                     r.scores.bleu[2], r.scores.bleu[3], r.scores.rouge_l, r.scores.cider_d,
                     100.0 * r.n_distinct / r.n_images, r.vocab_used, r.att_max, r.att_max * m->P, r.att_entropy,
                     improved ? "(best so far)" : "");
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "epoch", rs.epoch + 1);
            cJSON_AddNumberToObject(j, "step", rs.step);
            cJSON_AddItemToObject(j, "dev", scores_json(&r));
            cJSON_AddBoolToObject(j, "best", improved);
            cJSON_AddNumberToObject(j, "epoch_seconds", sac_time() - t_epoch);
            if ((st = log_json(log, j))) goto done;
            if (o->progress) {
                TrainProgress p = {.epoch = rs.epoch + 1, .epochs = o->epochs, .step = rs.step, .batch = batches,
                                   .batches = batches, .evaluated = 1, .dev = r.scores,
                                   .dev_distinct = (double)r.n_distinct / r.n_images};
                if (o->progress(&p, o->user)) cancelled = 1;
            }
            eval_result_clear(&r);
        }
        if (improved) {
            rs.best = score, rs.best_epoch = rs.epoch + 1, rs.since_best = 0;
            st = model_save(m, o->out, o->store_f16);
            if (st) goto done;
            Model *back = model_load(o->out); /* what was written must load: never report a model we can't use */
            if (!back) {
                sac_error("%s: the model just written does not load back (see above)", o->out);
                st = SAC_ERR_IO;
                goto done;
            }
            model_free(back);
            sac_info("saved %s (epoch %d)", o->out, rs.epoch + 1);
        } else {
            rs.since_best++;
        }
        rs.epoch++;
        rs.pos = -1;
        st = checkpoint_write(ckpt, m, ts, &rs, order, flags);
        if (st) goto done;
        if (o->patience > 0 && rs.since_best >= o->patience) {
            sac_info("no dev improvement for %d epochs: stopping (best epoch %d)", rs.since_best, rs.best_epoch);
            break;
        }
    }
    if (cancelled) st = SAC_ERR_CANCELLED;
done:
    if (sac_output_close(log) && !st) st = SAC_ERR_IO; /* the log's last lines could not be written */
    free(order), free(img), free(tokens), free(lens), free(pick), free(images), free(tmp), free(items), free(augs);
    free(bfeats), free(views);
    data_cache_free(&tc), data_cache_free(&dc);
    feat_cache_free(&tfc), feat_cache_free(&dfc);
    scst_step_free(sc);
    metrics_cider_free(cider);
    free(flags);
    captioner_free(cap);
    train_step_free(ts);
    model_free(m);
    vocab_free(vocab);
    dataset_free(train), dataset_free(dev);
    return st;
}
