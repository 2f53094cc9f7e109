/*
 * eval.h - evaluation on a split (`saccade eval`, and the training run's dev evaluation): decode
 * every image, score the captions against the split's references (BLEU-1..4, ROUGE-L,
 * CIDEr-D), count distinct captions and words, and measure how sharp the attention was.
 *
 * Part of captioner/: it sees encoder, attention and decoder.
 *
 * Size letters: B images, P grid positions.
 */
#ifndef SACCADE_EVAL_H
#define SACCADE_EVAL_H

#include <stdint.h>

#include "captioner.h"
#include "dataset.h"
#include "metrics.h"

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

/* The same on a split already in memory (data_cache.h), with captioner cap of m (up to 64
 * images, opt->beam; refreshed by the caller after m changed): images of c, or their backbone
 * features fc (NULL: from the pixels). ds is the dataset c was built from. */
struct DataCache;
struct FeatCache;
int eval_cached(const Model *m, Captioner *cap, const struct DataCache *c, const struct FeatCache *fc,
                const Dataset *ds, const SearchOptions *opt, int keep_captions, EvalResult *out);

#endif
