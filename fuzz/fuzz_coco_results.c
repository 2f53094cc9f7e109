/*
 * fuzz_coco_results.c - the COCO results reader of `saccade score` (coco_results_match)
 * against a fixed reference set of four images (ids 1, 2, 391895, 2^53; names a.jpg ...).
 * Properties: what is accepted matches each image at most once.
 * Size letters: none.
 */
#include <stdlib.h>

#include "coco_results.h"
#include "fuzz.h"
#include "sac.h"

static Dataset *refs(void)
{
    static Dataset *ds;
    if (ds) return ds;
    ds = dataset_create("refs", NULL);
    static const char *const names[4] = {"a.jpg", "b.jpg", "COCO_val2014_000000391895.jpg",
                                         "d e.png"};
    static const int64_t ids[4] = {1, 2, 391895, 9007199254740992ll};
    for (int i = 0; ds && i < 4; i++) {
        int k = dataset_add_item(ds, names[i], ids[i]);
        if (k < 0 || dataset_add_caption(ds, k, "a dog runs on the grass") < 0) fuzz_fail("refs");
    }
    if (!ds) fuzz_fail("refs");
    return ds;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const Dataset *ds = refs();
    CocoResults r;
    if (coco_results_match("fuzz.json", (const char *)data, size, ds, &r) == SAC_OK) {
        int seen[4] = {0};
        if (r.n < 1 || r.n > 4) fuzz_fail("result count");
        for (int i = 0; i < r.n; i++) {
            if (r.item[i] < 0 || r.item[i] >= 4 || seen[r.item[i]]++) fuzz_fail("item match");
            if (!r.caption[i]) fuzz_fail("caption");
        }
    }
    coco_results_free(&r);
    return 0;
}
