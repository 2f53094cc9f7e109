/*
 * checkpoint.c - a training run's checkpoint and the checks of --resume, see checkpoint.h.
 */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"
#include "safetensors.h"

char *checkpoint_flags_json(const TrainOptions *o)
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
        cJSON_AddStringToObject(j, "--scst-baseline", o->scst_baseline == SCST_BASELINE_MEAN ? "mean" : "greedy");
        if (o->scst_sample == SCST_SAMPLE_BEAM) /* (multinomial checkpoints keep their bytes) */
            cJSON_AddStringToObject(j, "--scst-sample", "beam");
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
    DIFF(a->bb.kind && a->bb.finetune_from != b->bb.finetune_from, "--finetune-from", "%d", a->bb.finetune_from,
         b->bb.finetune_from);
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
    char *mine = checkpoint_flags_json(o);
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
    /* a flag the checkpoint recorded that this command's defaults leave out (--scst-sample beam) */
    for (cJSON *f = y && !st ? y->child : NULL; f && !st; f = f->next) {
        if (cJSON_GetObjectItemCaseSensitive(x, f->string)) continue;
        char *fv = cJSON_PrintUnformatted(f);
        sac_error("%s: the checkpoint was made with %s %s, this command leaves it out: resume with the same data "
                  "flags (or start a new run)", ckpt, f->string, fv ? fv : "?");
        free(fv);
        st = SAC_ERR_INVALID;
    }
    cJSON_Delete(x), cJSON_Delete(y);
    free(mine);
    return st;
}

int checkpoint_write(const char *path, const Model *m, TrainStep *ts, const CheckpointState *rs, const int *order,
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

int checkpoint_read(const char *path, Model **mp, TrainStep **tsp, CheckpointState *rs, int **order,
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
