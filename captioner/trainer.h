/*
 * trainer.h - the training run: the data pipeline (decoded images cached once, augmentation;
 * data_cache.h), the gradient step (train_step.h), per-epoch decoding and scoring of the dev
 * split (eval.h), best-model selection, early stopping, and atomic checkpoints (checkpoint.h)
 * that a killed run resumes from exactly.
 *
 * Part of captioner/: it sees encoder, attention and decoder.
 */
#ifndef SACCADE_TRAINER_H
#define SACCADE_TRAINER_H

#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "search.h"
#include "train_step.h"

/* ---- the training run ---- */

typedef struct TrainProgress {
    int epoch, epochs;
    long step;          /* optimizer steps so far */
    int batch, batches; /* within the epoch */
    double loss, ce;    /* running averages over the last report interval */
    double images_per_s;
    double eta_s;       /* this epoch */
    int evaluated;      /* 1 when dev scores below are fresh */
    SacScores dev;
    double dev_distinct; /* distinct captions / images */
    int scst;            /* self-critical training: the three below are set (report means) */
    double reward;       /* CIDEr-D(sample) - CIDEr-D(greedy) */
    double sample_cider, greedy_cider;
} TrainProgress;

typedef struct TrainOptions {
    const char *data;        /* dataset path (dataset_open) */
    const char *image_dir;   /* NULL: the dataset's default */
    const char *train_split; /* "train" */
    const char *dev_split;   /* "dev"; NULL: no evaluation */
    const char *out;         /* best model, written when dev improves (or each epoch without dev) */
    const char *checkpoint;  /* checkpoint file (NULL: out + ".ckpt") */
    const char *log;         /* JSON lines log (NULL: none) */
    int resume;              /* continue from the checkpoint */
    ModelConfig cfg;         /* V is set from the vocabulary */
    const char *backbone;    /* with cfg.bb.kind set: the backbone file (saccade import) for a new run */
    int min_count;           /* vocabulary threshold */
    int batch_images;        /* Bi */
    int caps_per_image;      /* captions per image per step; 0: all */
    int epochs;
    float lr, lr_enc, lr_decay; /* decoder / encoder learning rates; per-epoch factor */
    float lr_backbone;       /* the fine-tuned backbone blocks (cfg.bb.finetune_from); < 0: lr_enc / 10 */
    float clip, weight_decay;
    int patience;            /* epochs without dev improvement before stopping; 0: never */
    int augment;             /* flips and small scale/translation jitter */
    int eval_beam;           /* beam width for dev decoding (otherwise search_default_options, as saccade eval) */
    int eval_max_images;     /* 0: all dev images */
    const char *select_metric; /* "cider" or "bleu4" */
    int checkpoint_every;    /* steps between checkpoints (also at every epoch end) */
    long max_steps;          /* stop after this many steps in total (0: no limit) */
    uint64_t seed;
    int store_f16;           /* the best model in fp16 */
    /* Self-critical sequence training (Rennie et al., CVPR 2017): start from the trained model
     * `init` (its config and vocabulary; the model flags above are ignored) and, for each
     * photo of a batch, sample scst_samples captions (multinomial, temperature 1) and decode
     * the greedy one; the reward of sample k is r_k = CIDEr-D(sample_k) - CIDEr-D(greedy)
     * (or minus the mean CIDEr-D of the photo's other samples: scst_baseline),
     * with document frequencies from the training references, and the step descends
     * -(1/(Bi K)) sum_k r_k log p(sample_k) (the weighted teacher-forced loss, no dropout, no
     * attention penalty). With a dev split the starting model is scored first (epoch 0) and
     * kept as `out` until an epoch beats it. Checkpoints keep the sampling RNG. */
    int scst;
    const char *init;
    int scst_samples;        /* K, default 5 */
    int scst_baseline;       /* SCST_BASELINE_GREEDY (default) or _MEAN: see scst_step_create */
    int scst_sample;         /* SCST_SAMPLE_MULTINOMIAL (default) or _BEAM: see scst_step_create */
    int (*progress)(const TrainProgress *p, void *user); /* nonzero cancels (after a checkpoint) */
    volatile int *cancel;    /* checked every step: nonzero stops after a checkpoint (a signal flag) */
    void *user;
    double report_every_s;   /* seconds between progress calls */
} TrainOptions;

void train_default_options(TrainOptions *o);

/* Train. Returns SAC_OK, SAC_ERR_CANCELLED (checkpoint written), or a negative status (logged).
 * In a data-parallel run (sac_dist_init started MPI with N > 1 ranks) every rank calls it with
 * the same options: each caches 1/N of the training photos and computes its share of every
 * batch, all take the same step (train_dist.h); rank 0 alone evaluates, calls progress and
 * writes out, the checkpoint and the log; a failure or a cancel on any rank ends every rank's
 * call (SAC_ERR_CANCELLED on those that did not fail). Self-critical training too: each rank
 * decodes and rewards the captions of its share's photos. */
int train_run(const TrainOptions *opt);

#endif
