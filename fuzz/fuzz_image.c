/*
 * fuzz_image.c - image decoding from memory: sac_image_load_memory (the format checks before
 * stb_image, stb_image itself, alpha/16-bit conversion, EXIF orientation), then the model's
 * preprocessing of whatever decoded. The pixel limit is 4 Mpixels so a claimed size cannot
 * exhaust the fuzzer's memory; the header checks it passes are the same at any limit.
 * Size letters: S model input side.
 */
#include <stdlib.h>

#include "fuzz.h"
#include "image.h"
#include "sac.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    SacImage img = {0};
    int rc = sac_image_load_memory(data, size, "fuzz", &img, (size_t)4 << 20);
    if (rc == SAC_OK) {
        if (!img.rgb || img.w < 1 || img.h < 1) fuzz_fail("decoded image without pixels");
        enum { S = 8 };
        static float out[3 * S * S];
        const float mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
        if (sac_image_preprocess(&img, S, mean, sd, out) != SAC_OK) fuzz_fail("preprocess");
    } else if (img.rgb) {
        fuzz_fail("failed decode left pixels behind");
    }
    sac_image_free(&img);
    return 0;
}
