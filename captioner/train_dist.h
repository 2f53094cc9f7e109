/*
 * train_dist.h - the data-parallel part of a training step (common/dist.h under it): which share
 * of a global batch this rank computes, that share's gradient normalised as the whole batch's,
 * and the all-reduces after which every rank holds the global batch's gradient, loss and
 * stop flags, so that all take the same clip + Adam step.
 *
 * Normalisation: the cross-entropy is a mean over the global batch's R target tokens and the
 * attention penalty a mean over its Bc captions. A rank's share (Bc_r captions) runs as a
 * weighted batch (DecoderBatch.weight) with w = Bc_r / R, so that its cross-entropy term is
 * sum over its tokens / R, and with lambda_r = lambda Bc_r / Bc, so that its penalty term is
 * lambda sum over its captions / Bc; the sum over ranks of their gradients is then the global
 * batch's gradient (up to the order of float summation). One process (N = 1) runs the plain
 * unweighted step instead, bit for bit the program without MPI.
 *
 * Part of captioner/ (used by trainer.c).
 *
 * Size letters: Bi images per batch, Bc captions per batch, T caption steps.
 */
#ifndef SACCADE_TRAIN_DIST_H
#define SACCADE_TRAIN_DIST_H

#include <stdint.h>

#include "decoder.h"
#include "train_step.h"

typedef struct TrainDist TrainDist;

/* For global batches of up to max_images images and max_caps captions of T steps. NULL (logged)
 * when out of memory. */
TrainDist *train_dist_create(int max_images, int max_caps, int T);
void train_dist_free(TrainDist *d);

/* This rank's share of the global batch g: the images b with mine[b] != 0 and their captions.
 * Returns the share as a weighted batch (valid until the next call; n_images may be 0), with
 * *pos (n_images) the position in g of each of its images and *lambda_share the penalty weight
 * to pass for it (see above). */
const DecoderBatch *train_dist_share(TrainDist *d, const DecoderBatch *g, const uint8_t *mine, float lambda,
                                     const int **pos, float *lambda_share);

/* After this rank's forward + backward (status st; with an empty share or a failure its
 * gradient counts as zero): sum over the ranks the loss terms (loss: this rank's, weighted as
 * above; replaced by the global batch's), the failures and the stop requests (*stop: this
 * rank's on entry, any rank's on return), then, when no rank failed, the gradient buffer of ts
 * (n floats) times grad_scale. Every rank calls it once per step. Returns SAC_OK, st when this
 * rank failed, or SAC_ERR_CANCELLED when another rank failed (logged: stop without a step). */
int train_dist_reduce(TrainDist *d, TrainStep *ts, size_t n, float grad_scale, int st, DecoderLoss *loss,
                      int *stop);

/* Communication of the steps so far (reset with `reset`): *wait_s, seconds in the first, small
 * all-reduce of each step, which is mostly waiting for the slowest rank to finish its share;
 * *seconds, in the gradient all-reduce itself; *bytes, payload bytes handed to MPI per rank;
 * *steps. */
void train_dist_comm(TrainDist *d, double *wait_s, double *seconds, double *bytes, long *steps, int reset);

/* Per-step dropout for a share: derived from the run's dropout stream (one draw per step on
 * every rank, so all ranks keep the same stream state for checkpoints) and the rank. */
void train_dist_dropout_rng(SacRng *run, SacRng *out);

#endif
