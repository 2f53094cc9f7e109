/*
 * data_cache.h - a split's training data in memory, for the training run and evaluation:
 * images decoded and squashed to the model's input once, captions encoded once, the features
 * of a frozen backbone computed once, and the random augmentation of training inputs.
 *
 * Part of captioner/ (used by trainer.c and eval.c; not a public header of the program).
 *
 * Size letters: B images, S input side, T caption steps, P grid positions, Eb backbone channels.
 */
#ifndef SACCADE_DATA_CACHE_H
#define SACCADE_DATA_CACHE_H

#include <stdint.h>

#include "captioner.h"
#include "dataset.h"
#include "rng.h"
#include "train_step.h"

/* Images decoded and squashed to S x S once; captions encoded once. */
typedef struct DataCache {
    int n, S, T;
    uint8_t *pix;   /* (n, S, S, 3); NULL once a FeatCache replaced it */
    int *item;      /* (n) index into the dataset */
    int *cap_off;   /* (n + 1) image i's captions are cap_off[i] .. cap_off[i + 1] - 1 */
    int *tok;       /* (captions, T + 1): <start> words <end> <pad>... */
    int *len;       /* (captions) words + 1 */
    int n_truncated;
    int n_local;    /* images whose pixels (and features) this process holds: pix is (n_local, S, S, 3) */
    int *slot;      /* (n) image i's row in pix, -1 when another rank holds it; NULL: row i (n_local = n) */
} DataCache;

/* Decode the first max_items (0: all) images of ds to S x S and, with vocab (NULL: images
 * only, for evaluation), encode their captions to at most T - 1 words. Unreadable images are
 * skipped with a warning; `what` names the split in messages. SAC_OK, SAC_ERR_NOMEM, or
 * SAC_ERR_INVALID when no image could be read (logged). Free with data_cache_free. The _shard
 * form also takes `cancel` (NULL: none): when *cancel becomes nonzero it stops between two
 * images and returns SAC_ERR_CANCELLED with nothing held (one process only: nproc 1). */
int data_cache_build(DataCache *c, const Dataset *ds, int max_items, const Vocab *vocab, int S, int T,
                     const char *what);
/* The same for rank `rank` of a data-parallel run of nproc processes (dist.h; every rank
 * calls it, it holds collectives): this rank decodes only the images i with i % nproc == rank,
 * the ranks agree on which images could be read, and every rank numbers the same images 0..n-1
 * and encodes every caption; c->slot tells which images' pixels are here (rows 0..n_local-1).
 * A failure on one rank is every rank's (logged where it happened). With nproc 1, as
 * data_cache_build. */
int data_cache_build_shard(DataCache *c, const Dataset *ds, int max_items, const Vocab *vocab, int S, int T,
                           int rank, int nproc, const volatile int *cancel, const char *what);
void data_cache_free(DataCache *c);

/* The references of the cached images for the metrics: refs (n) arrays of n_refs[i] captions of
 * image i, normalised as sac_caption_normalize. SAC_OK or SAC_ERR_NOMEM; free with
 * data_cache_refs_free (also after a failure). */
int data_cache_refs(const DataCache *c, const Dataset *ds, char ****refs, int **n_refs);
void data_cache_refs_free(char ***refs, int *n_refs, int n);

/* A training input's augmentation: optional flip and a small random zoom (1..1.15) and shift
 * (+-6%), sampled bilinearly from the cached pixels. */
typedef struct Augment {
    int on, flip;
    float zoom, dx, dy;
} Augment;

/* The draws of one image's augmentation (none when augment is 0: no draw either). Serial, in
 * image order: the data stream does not depend on the thread count. */
Augment augment_draw(SacRng *rng, int augment, int S);

/* out (B, 3, S, S): the cached pixels of row item[b] (the image's index, or c->slot[index] in a
 * data-parallel cache) augmented by aug[b] (aug NULL: none), normalised with
 * cfg's mean and std, on the pool. tmp: (B, S, S, 3) scratch, NULL when aug is. */
void data_cache_images(const DataCache *c, const int *item, const Augment *aug, int B, const ModelConfig *cfg,
                       uint8_t *tmp, float *out);

/* Features of a frozen backbone, computed once per cached image (and its mirror image when
 * training with flips) and kept in fp16: an epoch then costs the decoder only. With the
 * backbone's top blocks fine-tuned (cfg.bb.finetune_from = N), what is cached is the frozen
 * trunk's output at block N (mobilenet_infer_trunk), and each step runs the top blocks on it. */
typedef struct FeatCache {
    int n, views;   /* views: 1, or 2 with the horizontally flipped image as view 1 */
    int trunk;      /* 0: the grid features; N: the trunk's output, the input of block features.N */
    size_t per;     /* P * Eb, or side * side * cin of block N */
    uint16_t *f;    /* (n, views, per) */
} FeatCache;

/* The backbone features (captioner_backbone_features of cap, for m) of every image whose pixels
 * c holds (rows 0..n_local-1, so fc->n = c->n_local), view 1
 * the mirror image; then c's pixels are freed (c->pix NULL). With m->cfg.bb.finetune_from, the
 * trunk's outputs instead (from m's backbone weights below that block; cap is not used and may
 * be NULL). SAC_OK or a negative status (logged); SAC_ERR_CANCELLED, with nothing held and c
 * untouched, when *cancel (NULL: never) becomes nonzero between two chunks. Free with
 * feat_cache_free. */
int feat_cache_build(FeatCache *fc, DataCache *c, const Model *m, Captioner *cap, int views,
                     const volatile int *cancel, const char *what);
void feat_cache_free(FeatCache *fc);
/* out (B, per) in fp32: image item[b], view view[b] (view NULL: view 0), on the pool. */
void feat_cache_gather(const FeatCache *fc, const int *item, const int *view, int B, float *out);
/* The grid features (n, views, P, Eb) of a trunk cache through ts's fine-tuned top blocks with
 * their current weights (train_step_backbone_features), into grid (allocated on the first call,
 * then rewritten: call it again after the weights changed; free with feat_cache_free). scratch:
 * max_images (at most ts's) x (trunk->per + P Eb) floats. SAC_OK or a negative status (logged). */
int feat_cache_top(FeatCache *grid, const FeatCache *trunk, TrainStep *ts, const Model *m, int max_images,
                   float *scratch);

#endif
