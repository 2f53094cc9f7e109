/*
 * make_photos.c - phone-sized JPEGs for the large-photo benchmark rows (bench.sh): each input
 * photo upscaled (stb_image_resize, squash) to W x H, in four variants (as is, mirrored, upside
 * down, both: different files with the same statistics), with a little deterministic grain
 * (uniform noise of +-GRAIN levels per channel, xorshift seeded per file) so that the files
 * compress like real photos rather than like smooth upscales, written by stb_image_write at
 * JPEG quality Q (4:2:0 chroma, as phones write).
 *
 *   make_photos OUT_DIR W H Q GRAIN PHOTO...    writes OUT_DIR/<photo>_<variant>.jpg
 *
 * Size letters: none.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x;
}

static int parse(const char *s, long lo, long hi, long *v)
{
    char *end;
    *v = strtol(s, &end, 10);
    return *s && !*end && *v >= lo && *v <= hi;
}

int main(int argc, char **argv)
{
    long W, H, Q, grain;
    if (argc < 7 || !parse(argv[2], 16, 20000, &W) || !parse(argv[3], 16, 20000, &H) ||
        !parse(argv[4], 1, 100, &Q) || !parse(argv[5], 0, 64, &grain)) {
        fprintf(stderr, "usage: make_photos OUT_DIR W H Q GRAIN PHOTO...\n");
        return 2;
    }
    uint8_t *big = malloc((size_t)W * H * 3), *var = malloc((size_t)W * H * 3);
    if (!big || !var) {
        fprintf(stderr, "make_photos: out of memory for %ld x %ld\n", W, H);
        return 1;
    }
    for (int a = 6; a < argc; a++) {
        int w, h, c;
        uint8_t *px = stbi_load(argv[a], &w, &h, &c, 3);
        if (!px) {
            fprintf(stderr, "make_photos: %s: cannot read (%s)\n", argv[a], stbi_failure_reason());
            return 1;
        }
        if (!stbir_resize_uint8(px, w, h, 0, big, (int)W, (int)H, 0, 3)) {
            fprintf(stderr, "make_photos: %s: resize failed\n", argv[a]);
            return 1;
        }
        stbi_image_free(px);
        const char *base = strrchr(argv[a], '/') ? strrchr(argv[a], '/') + 1 : argv[a];
        char stem[256];
        snprintf(stem, sizeof(stem), "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot) *dot = 0;
        for (int v = 0; v < 4; v++) {
            uint32_t seed = 0x9E3779B9u ^ (uint32_t)(a * 4 + v) * 2654435761u;
            for (long y = 0; y < H; y++) {
                long sy = v & 2 ? H - 1 - y : y;
                for (long x = 0; x < W; x++) {
                    long sx = v & 1 ? W - 1 - x : x;
                    for (int k = 0; k < 3; k++) {
                        int n = grain ? (int)(xorshift32(&seed) % (uint32_t)(2 * grain + 1)) - (int)grain : 0;
                        int p = big[((size_t)sy * W + sx) * 3 + k] + n;
                        var[((size_t)y * W + x) * 3 + k] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p);
                    }
                }
            }
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s_%d.jpg", argv[1], stem, v);
            if (!stbi_write_jpg(path, (int)W, (int)H, 3, var, (int)Q)) {
                fprintf(stderr, "make_photos: %s: cannot write\n", path);
                return 1;
            }
        }
    }
    free(big), free(var);
    return 0;
}
