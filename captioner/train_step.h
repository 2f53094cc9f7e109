/*
 * train_step.h - one training step over the whole model (encoder + attention + decoder):
 * forward and backward of a batch into one flat gradient buffer, then global-norm clipping
 * and Adam; and the self-critical step (sample, reward with CIDEr-D, weighted backward).
 * The training run (trainer.h) calls them; tests and benchmarks use them on their own.
 *
 * Gradients, Adam's moments and the parameters share the model's flat layout (model.h), so a
 * data-parallel run can sum the gradient buffer (train_step_grads) across processes between
 * train_step_grad* and train_step_adam.
 *
 * Part of captioner/: it sees encoder, attention and decoder.
 *
 * Size letters: Bi images per batch, Bc captions per batch, S input side, T caption steps,
 * P grid positions, E encoder channels, Eb backbone channels, K samples per image.
 */
#ifndef SACCADE_TRAIN_STEP_H
#define SACCADE_TRAIN_STEP_H

#include "metrics.h"
#include "model.h"

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
 * (captioner_backbone_features), through encoder.proj and the decoder. With its top blocks
 * fine-tuned (cfg.bb.finetune_from = N), bfeats is instead the frozen trunk's output
 * (Bi, side, side, cin) at block N (mobilenet_infer_trunk): the blocks run forward on it
 * (mobilenet_forward), and the backward goes on through them into their tensors' gradients. */
int train_step_grad_features(TrainStep *ts, const float *bfeats, const DecoderBatch *batch, SacRng *dropout_rng,
                             DecoderLoss *loss);
/* The gradient step in two halves, for self-critical training (which decodes from the features
 * before it knows the captions to differentiate). train_step_encode: the decoder features
 * (Bi, P, E) of images (Bi, 3, S, S) (encoder in training mode) or, for a model with a frozen
 * backbone, of its features (Bi, P, Eb) (through encoder.proj), or with fine-tuned top blocks
 * of the trunk's output, as train_step_grad_features; *feats is valid until the next
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
 * r_k = CIDEr-D(sample_k) - b_k against its image's references in cider, then
 * train_step_grad_encoded with weights r_k (no dropout, no penalty):
 * loss = -(1/(Bi_all K)) sum_k r_k log p(sample_k). The baseline b_k is the greedy caption's
 * CIDEr-D (SCST_BASELINE_GREEDY, Rennie et al.) or the mean CIDEr-D of the image's other
 * K - 1 samples (SCST_BASELINE_MEAN, Luo 2020; needs K >= 2): then each image's weights sum
 * to zero, so a step moves probability between samples instead of pushing every sample of
 * a model that is better than its samples down. Created for m (borrowed), a reward object
 * (borrowed) and batches of up to max_images images; free with scst_step_free. */
typedef struct ScstStep ScstStep;
enum { SCST_BASELINE_GREEDY = 0, SCST_BASELINE_MEAN = 1 };
/* Where the K captions come from: multinomial samples (SCST_SAMPLE_MULTINOMIAL, the unbiased
 * policy gradient of Rennie et al.), or the K best distinct captions of a beam search of
 * width K with the default length normalisation (SCST_SAMPLE_BEAM, as Cornia et al., CVPR
 * 2020: biased, but it moves probability among the captions beam search chooses between;
 * deterministic, rng unused). A photo whose beam finds fewer than K distinct captions gives
 * the missing rows weight 0 (and the mean baseline averages over those it found). */
enum { SCST_SAMPLE_MULTINOMIAL = 0, SCST_SAMPLE_BEAM = 1 };
ScstStep *scst_step_create(const Model *m, const SacCider *cider, int max_images, int K, int baseline, int sample);
void scst_step_free(ScstStep *s);
/* input: images (Bi, 3, S, S) or backbone features (Bi, P, Eb) of Bi images whose
 * references are images[b] of cider. The loss is averaged over Bi_all >= Bi images: Bi, or in
 * a data-parallel run the global batch's images, of which these Bi are this rank's share (the
 * weights are then r_k (Bi / Bi_all), so that the ranks' gradients sum to the whole batch's).
 * sums (may be NULL) += {sum of the weights r_k, of the samples' CIDEr-D, of the greedy CIDEr-D
 * (once per sample), the number of samples} over the (up to) Bi K samples. */
int scst_step_grad(ScstStep *s, TrainStep *ts, const float *input, int Bi, int Bi_all, const int *images, SacRng *rng,
                   DecoderLoss *loss, double sums[4]);
/* The gradient buffer (n_trainable floats, the model's layout) and a ModelParams aimed at it. */
float *train_step_grads(TrainStep *ts);
const ModelParams *train_step_grad_params(TrainStep *ts);
/* Clip the gradient to global norm `clip` (0: no clipping), then one Adam step (beta 0.9/0.999,
 * eps 1e-8) with lr_enc for encoder tensors and lr_dec for decoder tensors, and decoupled
 * weight decay wd on matrices and conv kernels (AdamW). Returns the norm before clipping. */
double train_step_adam(TrainStep *ts, float lr_enc, float lr_dec, float clip, float wd);
/* The learning rate of the fine-tuned backbone tensors in the next train_step_adam calls
 * (a negative value, the default: lr_enc, as the other encoder tensors). */
void train_step_set_lr_backbone(TrainStep *ts, float lr);
/* With fine-tuned top blocks: bfeats (B, P, Eb), the backbone's features of trunk outputs
 * (B, side, side, cin) with the current weights (for evaluation; B up to max_images). It
 * reuses the step's activations: call it between steps, not between train_step_encode and
 * train_step_grad_encoded. SAC_OK or SAC_ERR_INVALID (logged) for a frozen backbone or bad B. */
int train_step_backbone_features(TrainStep *ts, const float *trunk, int B, float *bfeats);
/* The optimizer state, for checkpoints: Adam's first and second moments (n_trainable floats
 * each, the model's layout) and the number of Adam steps taken. Borrowed. */
void train_step_optim(TrainStep *ts, float **adam_m, float **adam_v, long **t);

#endif
