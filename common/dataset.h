/*
 * dataset.h - captioning datasets read into one in-memory form: a list of images, each with
 * its full path, an optional integer id and its raw (untokenized) captions.
 *
 * Size letters (project legend): none of the tensor sizes appear here.
 *
 * Formats read:
 *   Flickr8k/30k  `Flickr8k.token.txt` (30k: `results_20130124.token`): lines
 *                 `<image>#<k><TAB><caption>`, captions grouped per image; with a split list
 *                 (`Flickr_8k.trainImages.txt`, one image name per line) the items follow the
 *                 list's order and images outside it are skipped, otherwise the items follow
 *                 the token file's order of first appearance.
 *   Karpathy      `dataset_flickr8k.json` / `dataset_coco.json`: {"images": [{"filename",
 *                 "filepath" (optional), "split", "sentences": [{"raw", "tokens"}], "cocoid" or
 *                 "imgid"}]}; image path = image_dir/filepath/filename; caption = "raw" (or the
 *                 "tokens" joined by spaces when "raw" is absent); image_id = cocoid, else imgid.
 *   COCO          `captions_*.json`: {"images": [{"id", "file_name"}], "annotations":
 *                 [{"image_id", "caption"}]}; items in "images" order.
 *   Plain folder  `DIR/captions.tsv`: lines `relative/image/path<TAB>caption`, several lines per
 *                 image allowed, images relative to DIR; blank lines and lines starting with '#'
 *                 are skipped.
 * Every reader trims whitespace around captions, skips empty captions and drops images left
 * without captions (each reported once, with a count), accepts "\r\n" line ends and a UTF-8
 * BOM, and names the file and line (JSON: line of a syntax error, else the element such as
 * "images[12].sentences[0]") in its error messages.
 * A caption that is not valid UTF-8 or holds control characters (sac_text_problem: anything
 * but tab, CR and LF below U+0020, U+007F..U+009F) is skipped, not fatal: the first five are
 * warned about with file:line (JSON: the element), then one summary gives the count, so one
 * bad line does not stop a 600k-caption run; a file left with no usable caption is an error.
 * Image ids (COCO "id"/"image_id", Karpathy "cocoid"/"imgid") must be integers in 0..2^53
 * (exact in a double); anything else (1e300, -5, 1.5, a string) is an error naming the file
 * and element. Files are opened as regular files only (fileio.h): a FIFO is refused at once.
 */
#ifndef SACCADE_DATASET_H
#define SACCADE_DATASET_H

#include <stdint.h>

#include "vocab.h"

typedef enum {
    SAC_DATASET_MEMORY = 0, /* built with dataset_create + dataset_add_* */
    SAC_DATASET_FLICKR,
    SAC_DATASET_KARPATHY,
    SAC_DATASET_COCO,
    SAC_DATASET_TSV
} DatasetFormat;

typedef struct DatasetItem {
    const char *name;       /* the image as the dataset names it, relative to the image dir
                               ("1000268201_693b08cb0e.jpg", "val2014/COCO_val2014_...jpg") */
    const char *image_path; /* image dir joined with name (name itself when absolute) */
    int64_t image_id;       /* COCO id, Karpathy cocoid/imgid; -1 when the format has none */
    int n_captions;
    const char **captions;  /* (n_captions) raw caption strings */
    int cap_captions;       /* private: allocated length of captions */
} DatasetItem;

typedef struct DatasetPriv DatasetPriv;

typedef struct Dataset {
    DatasetItem *items; /* (n_items) */
    int n_items;
    DatasetFormat format;
    const char *source;    /* the file the captions came from ("memory" when built in code) */
    const char *image_dir; /* "" when image paths are used as given */
    DatasetPriv *priv;     /* private: string storage, name index */
} Dataset;

/* Open any supported dataset, picking the reader by these rules:
 *   path is a directory D:
 *     D/captions.tsv exists                      -> plain folder (images relative to D)
 *     D/Flickr8k.token.txt or D/results_20130124.token exists -> Flickr (rules below)
 *   path is a file:
 *     name ends in ".json" with an "annotations" array -> COCO captions
 *     name ends in ".json" with an "images" array      -> Karpathy
 *     name ends in ".tsv"                               -> plain TSV, images relative to its dir
 *     anything else                                     -> Flickr token file
 * split: NULL or "all" takes everything.
 *   Flickr: "train", "dev" (or "val"), "test" read Flickr_8k.{train,dev,test}Images.txt beside
 *           the token file; any other value is the path of an image list file (as given, or
 *           relative to the token file's directory).
 *   Karpathy: "train", "val", "test", "restval" or a '+' combination ("train+restval").
 *   COCO: the file holds one split; a split name must appear in the file name
 *         ("train" for captions_train2014.json).
 *   Plain folder: no splits.
 * image_dir: NULL picks a default from the dataset's directory D: for Flickr the first of
 * D/images, D/Flicker8k_Dataset, D/Flickr8k_Dataset, D/flickr30k-images that exists, for JSON
 * D/images when it exists, else D itself (always D for the plain folder).
 * Returns NULL (logged, naming the file and line) on a missing file, malformed contents, an
 * unknown split or a split with no images. The caller frees with dataset_free. */
Dataset *dataset_open(const char *path, const char *split, const char *image_dir);

/* The specific readers; image_dir as above but required to be explicit (NULL = names are used
 * as paths). split_list: NULL for every image in the token file. */
Dataset *dataset_load_flickr(const char *token_path, const char *split_list,
                             const char *image_dir);
Dataset *dataset_load_karpathy(const char *json_path, const char *split, const char *image_dir);
Dataset *dataset_load_coco(const char *json_path, const char *image_dir);
Dataset *dataset_load_tsv(const char *tsv_path, const char *image_dir);

/* An empty dataset to fill in code (tests, tools). source: a label for messages (NULL:
 * "memory"); image_dir: joined to the names given to dataset_add_item (NULL: none). */
Dataset *dataset_create(const char *source, const char *image_dir);
/* Append an image; names must be unique. Returns its item index, or SAC_ERR_INVALID (duplicate
 * or empty name) / SAC_ERR_NOMEM. Item pointers may move when items are added. */
int dataset_add_item(Dataset *ds, const char *name, int64_t image_id);
/* Append a caption (copied) to item `item`. Returns 0 or SAC_ERR_INVALID (bad index, or text
 * that sac_text_problem refuses; logged) / SAC_ERR_NOMEM. */
int dataset_add_caption(Dataset *ds, int item, const char *caption);

/* NULL is a no-op. */
void dataset_free(Dataset *ds);

/* Index of the item named `name`, or -1. */
int dataset_find(const Dataset *ds, const char *name);
/* Total number of captions over all items. */
int dataset_n_captions(const Dataset *ds);
/* Tokenize every caption into wc (for vocab_build). Returns 0 or a negative SAC_ERR_*. */
int dataset_count_words(const Dataset *ds, WordCounts *wc);
/* "flickr", "karpathy", "coco", "tsv" or "memory". */
const char *dataset_format_name(DatasetFormat f);

/* Drop the items whose image file is missing, empty, not a regular file or not an image
 * stb_image recognises (stbi_info: header only, no decode), keeping the order of the rest.
 * Reports once (a warning with the count and the first few names and reasons).
 * Returns the number of items dropped (0 when all are fine). */
int dataset_check_images(Dataset *ds);

#endif
