/*
 * coco_results.h - a COCO results file ([{"image_id": ID, "caption": TEXT}, ...], what
 * coco-caption's loadRes reads and `saccade eval --results` writes) matched to the images of a
 * reference dataset, for `saccade score`.
 *
 * Size letters: none (no tensors here).
 *
 * "image_id" is the integer COCO id of a reference image (an integer in -2^53..2^53; ids are
 * compared exactly), or a string: the image's name as the references name it (what eval writes
 * for Flickr and captions.tsv data). As in coco-caption, a result whose image is not among the
 * references is an error (the first few ids are named), and so is a second result for one
 * image. Captions are normalized with sac_caption_normalize.
 */
#ifndef SACCADE_COCO_RESULTS_H
#define SACCADE_COCO_RESULTS_H

#include <stddef.h>

#include "dataset.h"

/* The matched results, in file order. Free with coco_results_free. */
typedef struct CocoResults {
    int n;
    int *item;      /* (n) reference item index of each result */
    char **caption; /* (n) the result's caption, normalized */
} CocoResults;

/* Parse len bytes of JSON at text (path names the file in messages) and match each result to
 * an item of ds. out is overwritten. Returns SAC_OK, or SAC_ERR_FORMAT (invalid JSON, naming
 * its line; not a non-empty array; a malformed element, named by index; unknown images; two
 * results for one image) / SAC_ERR_NOMEM, logged. On failure out holds nothing to free but is
 * safe to pass to coco_results_free. */
int coco_results_match(const char *path, const char *text, size_t len, const Dataset *ds,
                       CocoResults *out);
/* Release what coco_results_match allocated; the struct is zeroed. NULL is a no-op. */
void coco_results_free(CocoResults *r);

#endif
