/*
 * captioner.h - encoder + attention + decoder joined: images in, captions out.
 *
 * Part of captioner/ (with model.c, eval.c and trainer.c), the only library code that sees
 * every module. Preprocessing is sac_image_preprocess with the model's own size, mean and std:
 * the same function training uses, so training and inference inputs cannot drift apart.
 *
 * Size letters: B images, S input side, P grid positions, E encoder channels.
 */
#ifndef SACCADE_CAPTIONER_H
#define SACCADE_CAPTIONER_H

#include "image.h"
#include "model.h"
#include "search.h"

typedef struct Captioner Captioner;

/* A captioner for up to max_batch images at a time and beams up to max_beam. The model is
 * borrowed (it must outlive the captioner). NULL (logged) on failure.
 * Decoding reads fp16 copies of the decoder's step weights (decoder_infer_prepare): half the
 * memory traffic; on the Flickr8k dev split it gave the same captions as fp32, greedy and
 * beam 3 (SearchOptions.f32 asks for fp32). */
Captioner *captioner_create(const Model *m, int max_batch, int max_beam);
void captioner_free(Captioner *c);
/* Re-read the model's parameters (after training changed them): refolds the encoder and
 * repacks the fp16 decoder step weights. SAC_OK or SAC_ERR_NOMEM. */
int captioner_refresh(Captioner *c);

/* The captioner's step-by-step decoder, for callers that run the search themselves on
 * captioner_encode's features: room for max_batch * max_beam rows and max_batch images, with
 * the captioner's fp16 step weights. Borrowed: valid until captioner_free. */
DecoderInfer *captioner_decoder(Captioner *c);

/* Feature grids for B preprocessed images (B, 3, S, S) -> (B, P, E), batchnorm folded; with
 * a backbone, its features through encoder.proj. */
int captioner_encode(Captioner *c, const float *images, int B, float *feats);
/* With a pretrained backbone: its features (B, P, Eb) of B preprocessed images, before the
 * projection (what training caches). SAC_ERR_INVALID (logged) for a model without one. */
int captioner_backbone_features(Captioner *c, const float *images, int B, float *bfeats);
/* As captioner_run_preprocessed, from backbone features (B, P, Eb) (captioner_backbone_features). */
int captioner_run_features(Captioner *c, const float *bfeats, int B, const SearchOptions *opt, Caption *out,
                           int *counts);

/* Caption B decoded images (any size: each is preprocessed for the model). With opt->beam == 1
 * the batch is decoded greedily together; otherwise its images are beam-searched together
 * (beam_search_batch: the captions one image at a time would get). out holds
 * B * opt->nbest captions (image b's at out[b * nbest ...]); counts[b] (may be NULL) says how
 * many each got. Free each with caption_clear. */
int captioner_run(Captioner *c, const SacImage *imgs, int B, const SearchOptions *opt, Caption *out,
                  int *counts);
/* As captioner_run, for images already preprocessed to (B, 3, S, S). */
int captioner_run_preprocessed(Captioner *c, const float *images, int B, const SearchOptions *opt,
                               Caption *out, int *counts);

/* The caption's words joined by spaces (caller frees). */
char *captioner_text(const Model *m, const Caption *cap);

#endif
