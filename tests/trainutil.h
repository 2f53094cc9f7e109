/*
 * trainutil.h - what the training-run suites (test_trainer, test_finetune) share: the options
 * of a run on the drawn-shapes set (make_shapes_dataset in the scratch directory, testutil.h),
 * a run whose dev evaluations are checked against `saccade eval` on the model it wrote, and
 * random backbone files.
 */
#ifndef SACCADE_TRAINUTIL_H
#define SACCADE_TRAINUTIL_H

#include <stdint.h>

#include "dataset.h"
#include "eval.h"
#include "mobilenet.h"
#include "model.h"
#include "search.h"
#include "trainer.h"

/* A run on scratch_path("captions.tsv") (all of it: no train or dev split) writing `out`: min
 * count 1, batches of 3 images (8 images: 3, 3, 2), 3 epochs, a checkpoint every 2 steps, no
 * timed progress reports, the tiny sizes E 8, A 8, D 12, M 6, T 7 and dropout 0.2; the encoder,
 * learning rates and the rest are the caller's (train_default_options otherwise). */
TrainOptions shapes_train_options(const char *out);

/* What keep_best_dev keeps of a run (zero it before the run). */
typedef struct {
    int n_evaluated; /* dev evaluations made */
    SacScores best;  /* the scores of the one with the highest CIDEr-D */
} DevKept;

/* A TrainOptions.progress callback: user is a DevKept. Returns 0 (the run goes on). */
int keep_best_dev(const TrainProgress *p, void *user);

/* A run with dev evaluations, and what `saccade eval` makes of the model it wrote. */
typedef struct {
    DevKept kept;      /* the run's dev evaluations (keep_best_dev) */
    Model *model;      /* the model file the run wrote (o->out), loaded */
    Dataset *data;     /* o->data, all of it */
    SearchOptions opt; /* eval's decoding options at the run's --eval-beam */
    EvalResult eval;   /* eval_dataset on model, data and opt, captions kept */
} DevRun;

/* train_run(o) (its progress callback and user set here), then d's model, data, options and
 * evaluation. SAC_OK, or the first failure's status (the run's, or SAC_ERR_IO for a file that
 * does not load); clear d with dev_run_clear either way. */
int dev_run(TrainOptions *o, DevRun *d);
void dev_run_clear(DevRun *d);

/* A backbone file as saccade import writes it (SAME padding, mean and std 0.5) for MobileNetV2
 * up to grid `grid` (MOBILENET_GRID7 or _GRID14): every tensor uniform in +-bound(spec), drawn
 * in spec order from one generator seeded `seed`. SAC_OK or an error status. */
int make_random_backbone(const char *file, int grid, uint64_t seed, float (*bound)(const MobileNetSpec *spec));

#endif
