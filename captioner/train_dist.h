/*
 * train_dist.h - the data-parallel part of a training step (dist.h under it): which share
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
 * unweighted step instead, bit for bit the program without MPI. A self-critical step has no
 * reference captions to share out: the trainer passes the share's images to scst_step_grad,
 * whose Bi_all averages its loss over the whole batch (train_step.h).
 *
 * Shares: position b of a global batch of nb images is computed by rank b N / nb (even contiguous
 * blocks), whichever rank holds the image (each holds a fixed 1/N of the photos, data_cache.h):
 * before the step the owners send the rows (pixels or backbone features) to the ranks that
 * compute them, one MPI_Alltoallv of about (N - 1) / N of the batch's rows, so every rank has
 * the same work whatever photos the shuffle put in the batch.
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

/* For global batches of up to max_images images and max_caps captions of T steps, whose images
 * are rows of row_bytes bytes in the caches. NULL (logged) when out of memory. */
TrainDist *train_dist_create(int max_images, int max_caps, int T, size_t row_bytes);
void train_dist_free(TrainDist *d);

/* The rank that computes position b of a global batch of nb images. */
int train_dist_computer(int b, int nb, int nproc);

/* Every rank's share of a batch of nb images in one place: owner[b] is the rank holding image
 * b's row, row[b] that row when it is this rank (else unused). Owners send rows to the ranks
 * computing them (train_dist_computer); *stage then holds this rank's share's rows in batch
 * order (the order of train_dist_share's pos), valid until the next call. Every rank calls it
 * once per step. SAC_OK, or an error of the exchange (then every rank's). */
int train_dist_gather_rows(TrainDist *d, int nb, const int *owner, const uint8_t *const *row, const uint8_t **stage);

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

/* Communication of the steps so far, per rank. */
typedef struct TrainDistComm {
    double exchange_s, exchange_bytes; /* the rows sent to other ranks (train_dist_gather_rows) */
    double wait_s;  /* the first, small all-reduce of each step: mostly waiting for the slowest rank */
    double reduce_s, reduce_bytes;     /* the gradient all-reduce (payload bytes handed to MPI) */
    long steps;
} TrainDistComm;
/* The sums since the last reset (reset: start again from zero). */
void train_dist_comm(TrainDist *d, TrainDistComm *out, int reset);

/* A share's random stream for one step (its dropout masks, its self-critical samples): derived
 * from the run's stream (one draw per step on every rank, so all ranks keep the same stream
 * state for checkpoints) and the rank. */
void train_dist_rank_rng(SacRng *run, SacRng *out);

#endif
