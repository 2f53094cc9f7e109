/*
 * fuzz_dataset.c - the four dataset readers on the same input, chosen by the target's name
 * (FUZZ_READER: 0 Flickr token file, 1 Karpathy JSON, 2 COCO JSON, 3 captions.tsv; one
 * program per reader so each has its own corpus). The input is the file; for Flickr and
 * Karpathy the first byte also picks a split. On a dataset that loads, the properties the
 * trainer relies on are checked: every caption is valid text (sac_text_problem), ids are -1
 * or in 0..2^53, names are unique, and the vocabulary built from the captions survives its
 * round trip through the model file's string form (so a model header stays valid JSON).
 * Size letters: none.
 */
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "fuzz.h"
#include "sac.h"
#include "vocab.h"

#ifndef FUZZ_READER
#error "FUZZ_READER must be 0..3"
#endif

static void check(const Dataset *ds)
{
    for (int i = 0; i < ds->n_items; i++) {
        const DatasetItem *it = &ds->items[i];
        if (it->n_captions < 1) fuzz_fail("an image without captions was kept");
        if (dataset_find(ds, it->name) != i) fuzz_fail("name index");
        if (it->image_id < -1 || it->image_id > 9007199254740992ll) fuzz_fail("image id range");
        for (int c = 0; c < it->n_captions; c++) {
            const char *s = it->captions[c];
            if (!*s || sac_text_problem(s, strlen(s), NULL)) fuzz_fail("caption text");
        }
    }
    WordCounts *wc = word_counts_create();
    if (!wc) return;
    if (dataset_count_words(ds, wc) != SAC_OK) fuzz_fail("counting the words of valid captions");
    Vocab *v = vocab_build(wc, 1);
    char *s = v ? vocab_to_string(v) : NULL;
    Vocab *back = s ? vocab_from_string(s, "fuzz") : NULL;
    if (s && (!back || vocab_size(back) != vocab_size(v))) fuzz_fail("vocabulary round trip");
    vocab_free(back), free(s), vocab_free(v);
    word_counts_free(wc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const char *path = fuzz_file(0, data, size);
    Dataset *ds = NULL;
    static const char *const splits[4] = {NULL, "train", "val+test", "restval"};
    switch (FUZZ_READER) {
    case 0: {
        /* first byte odd: the lines after the first "\n--\n" are a split list */
        const uint8_t *sep = size > 1 && (data[0] & 1) ? memmem(data, size, "\n--\n", 4) : NULL;
        if (sep) {
            const char *list = fuzz_file(1, sep + 4, size - (size_t)(sep + 4 - data));
            path = fuzz_file(0, data, (size_t)(sep - data));
            ds = dataset_load_flickr(path, list, NULL);
        } else {
            ds = dataset_load_flickr(path, NULL, "images");
        }
        break;
    }
    case 1: ds = dataset_load_karpathy(path, size ? splits[data[0] & 3] : NULL, "img"); break;
    case 2: ds = dataset_load_coco(path, NULL); break;
    default: ds = dataset_load_tsv(path, "/data"); break;
    }
    if (ds) {
        if (ds->n_items < 1) fuzz_fail("an empty dataset was returned");
        check(ds);
    }
    dataset_free(ds);
    return 0;
}
