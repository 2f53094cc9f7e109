/*
 * trainutil.c - see trainutil.h.
 */
#include "trainutil.h"

#include <stdlib.h>

#include "sac.h"
#include "safetensors.h"
#include "testutil.h"

TrainOptions shapes_train_options(const char *out)
{
    TrainOptions o;
    train_default_options(&o);
    o.data = scratch_path("captions.tsv");
    o.train_split = NULL;
    o.dev_split = NULL;
    o.out = out;
    o.min_count = 1;
    o.batch_images = 3; /* 8 images: batches of 3, 3, 2 */
    o.epochs = 3;
    o.checkpoint_every = 2;
    o.report_every_s = 1e9;
    o.cfg.E = 8, o.cfg.A = 8, o.cfg.D = 12, o.cfg.M = 6, o.cfg.T = 7;
    o.cfg.dropout = 0.2f;
    return o;
}

int keep_best_dev(const TrainProgress *p, void *user)
{
    DevKept *k = user;
    if (p->evaluated && (k->n_evaluated++ == 0 || p->dev.cider_d > k->best.cider_d)) k->best = p->dev;
    return 0;
}

int dev_run(TrainOptions *o, DevRun *d)
{
    *d = (DevRun){0};
    o->progress = keep_best_dev, o->user = &d->kept;
    int st = train_run(o);
    if (!st && !(d->model = model_load(o->out))) st = SAC_ERR_IO;
    if (!st && !(d->data = dataset_open(o->data, NULL, NULL))) st = SAC_ERR_IO;
    if (st) return st;
    const DecoderSizes sz = model_decoder_sizes(d->model);
    d->opt = search_default_options(&sz);
    d->opt.beam = o->eval_beam;
    return eval_dataset(d->model, d->data, &d->opt, 0, 1, &d->eval);
}

void dev_run_clear(DevRun *d)
{
    eval_result_clear(&d->eval);
    dataset_free(d->data);
    model_free(d->model);
    *d = (DevRun){0};
}

int make_random_backbone(const char *file, int grid, uint64_t seed, float (*bound)(const MobileNetSpec *spec))
{
    MobileNetConfig mc;
    mobilenet_config_default(&mc);
    mc.grid = grid;
    MobileNetSpec specs[MOBILENET_MAX_SPECS];
    const int n = mobilenet_specs(&mc, specs, MOBILENET_MAX_SPECS);
    SafeTensorsWriter *w = n > 0 ? safetensors_writer_create() : NULL;
    int st = n < 1 ? SAC_ERR_INVALID : w ? SAC_OK : SAC_ERR_NOMEM;
    SacRng rng;
    sac_rng_seed(&rng, seed, 7);
    for (int i = 0; i < n && !st; i++) {
        size_t numel = 1;
        for (int d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        const float b = bound(&specs[i]);
        float *x = malloc(sizeof(float) * numel);
        if (!x) st = SAC_ERR_NOMEM;
        for (size_t k = 0; k < numel && x; k++) x[k] = b * (2.0f * sac_rng_uniform(&rng) - 1.0f);
        if (x) st = safetensors_writer_add_f32(w, specs[i].name, specs[i].ndim, specs[i].shape, x, SAC_DTYPE_F32);
        free(x);
    }
    const char *meta[][2] = {{"format", "saccade-backbone-1"}, {"arch", "mobilenet_v2"}, {"padding", "same"},
                             {"mean", "[0.5,0.5,0.5]"}, {"std", "[0.5,0.5,0.5]"}, {"source", "test weights"},
                             {"license", "none"}};
    for (size_t k = 0; k < sizeof(meta) / sizeof(meta[0]) && !st; k++)
        safetensors_writer_meta(w, meta[k][0], meta[k][1]);
    if (!st) st = safetensors_writer_write(w, file);
    safetensors_writer_free(w);
    return st;
}
