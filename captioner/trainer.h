/*
 * trainer.h - training a captioning model: the data pipeline (decoded images cached once,
 * augmentation), the gradient step over encoder + decoder, Adam with global-norm clipping,
 * per-epoch decoding and scoring of the dev split, best-model selection, early stopping,
 * and atomic checkpoints that a killed run resumes from.
 *
 * Part of the captioner layer: it sees encoder, attention and decoder.
 *
 * Size letters: Bi images per batch, Bc captions per batch, S input side, T caption steps.
 */
#ifndef SACCADE_TRAINER_H
#define SACCADE_TRAINER_H

#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "search.h"

/* ---- the gradient step, on its own (tests, benchmarks) ---- */

typedef struct TrainStep TrainStep;

/* Gradient and optimizer state for m, for batches of up to max_images images and
 * max_caps captions. m is borrowed. */
TrainStep *train_step_create(Model *m, int max_images, int max_caps);
void train_step_free(TrainStep *ts);
/* Zero the gradients, then forward + backward one batch: images (Bi, 3, S, S), captions as in
 * DecoderBatch (img, tokens (Bc, T + 1), lens). Batchnorm runs in training mode (its running
 * statistics are updated). dropout_rng NULL: no dropout. */
int train_step_grad(TrainStep *ts, const float *images, const DecoderBatch *batch, SacRng *dropout_rng,
                    DecoderLoss *loss);
/* The same for a model with a frozen pretrained backbone: from its features bfeats (Bi, P, Eb)
 * (captioner_backbone_features), through encoder.proj and the decoder. */
int train_step_grad_features(TrainStep *ts, const float *bfeats, const DecoderBatch *batch, SacRng *dropout_rng,
                             DecoderLoss *loss);
/* The gradient step in two halves, for self-critical training (which decodes from the features
 * before it knows the captions to differentiate). train_step_encode: the decoder features
 * (Bi, P, E) of images (Bi, 3, S, S) (encoder in training mode) or, for a model with a frozen
 * backbone, of its features (Bi, P, Eb) (through encoder.proj); *feats is valid until the next
 * call, and input must stay valid until train_step_grad_encoded. train_step_grad_encoded: zero
 * the gradients, then decoder forward + backward of batch (its images those just encoded;
 * usually with DecoderBatch.weight) with penalty weight lambda, back through the encoder
 * (or encoder.proj). */
int train_step_encode(TrainStep *ts, const float *input, int Bi, const float **feats);
int train_step_grad_encoded(TrainStep *ts, const DecoderBatch *batch, float lambda, SacRng *dropout_rng,
                            DecoderLoss *loss);
/* One self-critical gradient (Rennie et al. 2017) over a batch, for the training run and the
 * benchmark: encode (train_step_encode), sample K captions per image (sample_decode, rng) and
 * decode the greedy one with the current weights (fp32), reward each sample with
 * r_k = CIDEr-D(sample_k) - CIDEr-D(greedy) against its image's references in cider, then
 * train_step_grad_encoded with weights r_k (no dropout, no penalty):
 * loss = -(1/(Bi K)) sum_k r_k log p(sample_k). Created for m (borrowed), a reward object
 * (borrowed) and batches of up to max_images images; free with scst_step_free. */
typedef struct ScstStep ScstStep;
ScstStep *scst_step_create(const Model *m, const SacCider *cider, int max_images, int K);
void scst_step_free(ScstStep *s);
/* input: images (Bi, 3, S, S) or backbone features (Bi, P, Eb) of Bi images whose
 * references are images[b] of cider. sums (may be NULL) += {sum of r_k, of the samples'
 * CIDEr-D, of the greedy CIDEr-D (once per sample)} over the Bi K samples. */
int scst_step_grad(ScstStep *s, TrainStep *ts, const float *input, int Bi, const int *images, SacRng *rng,
                   DecoderLoss *loss, double sums[3]);
/* The gradient buffer (n_trainable floats, the model's layout) and a ModelParams aimed at it. */
float *train_step_grads(TrainStep *ts);
const ModelParams *train_step_grad_params(TrainStep *ts);
/* Clip the gradient to global norm `clip` (0: no clipping), then one Adam step (beta 0.9/0.999,
 * eps 1e-8) with lr_enc for encoder tensors and lr_dec for decoder tensors, and decoupled
 * weight decay wd on matrices and conv kernels (AdamW). Returns the norm before clipping. */
double train_step_adam(TrainStep *ts, float lr_enc, float lr_dec, float clip, float wd);
/* The optimizer state, for checkpoints: Adam's first and second moments (n_trainable floats
 * each, the model's layout) and the number of Adam steps taken. Borrowed. */
void train_step_optim(TrainStep *ts, float **adam_m, float **adam_v, long **t);

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
    float clip, weight_decay;
    int patience;            /* epochs without dev improvement before stopping; 0: never */
    int augment;             /* flips and small scale/translation jitter */
    int eval_beam;           /* beam width for dev decoding */
    int eval_max_images;     /* 0: all dev images */
    const char *select_metric; /* "cider" or "bleu4" */
    int checkpoint_every;    /* steps between checkpoints (also at every epoch end) */
    long max_steps;          /* stop after this many steps in total (0: no limit) */
    uint64_t seed;
    int store_f16;           /* the best model in fp16 */
    /* Self-critical sequence training (Rennie et al., CVPR 2017): start from the trained model
     * `init` (its config and vocabulary; the model flags above are ignored) and, for each
     * photo of a batch, sample scst_samples captions (multinomial, temperature 1) and decode
     * the greedy one; the reward of sample k is r_k = CIDEr-D(sample_k) - CIDEr-D(greedy),
     * with document frequencies from the training references, and the step descends
     * -(1/(Bi K)) sum_k r_k log p(sample_k) (the weighted teacher-forced loss, no dropout, no
     * attention penalty). With a dev split the starting model is scored first (epoch 0) and
     * kept as `out` until an epoch beats it. Checkpoints keep the sampling RNG. */
    int scst;
    const char *init;
    int scst_samples;        /* K, default 5 */
    int (*progress)(const TrainProgress *p, void *user); /* nonzero cancels (after a checkpoint) */
    volatile int *cancel;    /* checked every step: nonzero stops after a checkpoint (a signal flag) */
    void *user;
    double report_every_s;   /* seconds between progress calls */
} TrainOptions;

void train_default_options(TrainOptions *o);

/* Train. Returns SAC_OK, SAC_ERR_CANCELLED (checkpoint written), or a negative status (logged). */
int train_run(const TrainOptions *opt);

/* ---- evaluation on a split (also `saccade eval`) ---- */

typedef struct EvalResult {
    SacScores scores;
    int n_images;
    int n_distinct;     /* distinct captions */
    int vocab_used;     /* distinct words used */
    double mean_len;
    double att_max;     /* attention sharpness: mean over words of the largest weight (1/P: uniform) */
    double att_entropy; /* mean over words of the entropy of the map / log(P) (1: uniform) */
    char **captions;    /* (n_images) when keep_captions: the decoded captions; free with eval_result_clear */
    int64_t *image_ids; /* (n_images) */
    const char **names; /* (n_images) borrowed from the dataset */
} EvalResult;

/* Decode every image of ds (at most max_images; 0: all) with the options and score against its
 * captions. Images that fail to load are reported and skipped. */
int eval_dataset(const Model *m, const Dataset *ds, const SearchOptions *opt, int max_images, int keep_captions,
                 EvalResult *out);
void eval_result_clear(EvalResult *r);

#endif
