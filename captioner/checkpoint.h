/*
 * checkpoint.h - a training run's checkpoint: the model, Adam's moments and step count, the
 * run's counters, random streams and data order, and the flags the run was started with, in
 * one safetensors file written atomically; and the checks that make --resume refuse a command
 * whose model or data flags differ from the checkpoint's, naming the flag.
 *
 * Part of captioner/ (used by trainer.c).
 */
#ifndef SACCADE_CHECKPOINT_H
#define SACCADE_CHECKPOINT_H

#include "model.h"
#include "rng.h"
#include "train_step.h"
#include "trainer.h"

/* Everything a checkpoint restores besides the model and Adam moments. */
typedef struct CheckpointState {
    long step;         /* optimizer steps so far */
    int epoch;         /* epochs completed */
    int pos;           /* images of this epoch's order done; -1: the epoch starts by shuffling */
    int since_best, best_epoch;
    int n_items;       /* training images (the length of the order) */
    double best;       /* the best dev score so far (-1: none yet) */
    SacRng data_rng, drop_rng;
    int scst;          /* a self-critical run: also sample_rng */
    SacRng sample_rng;
} CheckpointState;

/* The options that decide what a run trains on, as JSON (the model flags are in the model's
 * config): saved in the checkpoint, so that --resume refuses to continue a run on other data.
 * The caller frees it; NULL when out of memory. */
char *checkpoint_flags_json(const TrainOptions *o);

/* Write m, ts's optimizer state, rs and order (rs->n_items) with flags
 * (checkpoint_flags_json) to path, atomically. SAC_OK or a negative status (logged). */
int checkpoint_write(const char *path, const Model *m, TrainStep *ts, const CheckpointState *rs, const int *order,
                     const char *flags);
/* Read the checkpoint at path for a run with options o: *mp a new model, *tsp a step for
 * batches of up to max_images images and max_caps captions with the optimizer state restored,
 * *rs, and *order (rs->n_items, the caller frees it). Refuses (SAC_ERR_INVALID, logged, naming
 * the flag) a checkpoint of the other mode (--scst) or whose model or data flags differ from o. */
int checkpoint_read(const char *path, Model **mp, TrainStep **tsp, CheckpointState *rs, int **order,
                    int max_images, int max_caps, const TrainOptions *o);

#endif
