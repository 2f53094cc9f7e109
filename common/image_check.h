/*
 * image_check.h - private to image.c: checks of an image's bytes before stb_image parses them
 * (image_check.c). See image.h, "Hostile input", for what is refused and why.
 *
 * Size letters: none.
 */
#ifndef SACCADE_IMAGE_CHECK_H
#define SACCADE_IMAGE_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* stb_image refuses sides above 1 << 24; so do we (keeps w * 3 within int). */
#define SAC_IMAGE_MAX_SIDE (1 << 24)

/* The formats the documentation promises, told apart by their magic numbers as stb_image does;
 * TGA has none (stb_image tries it last). Softimage PIC, which stb_image also decodes, is not
 * promised and is refused. */
typedef enum {
    FMT_OTHER = 0, FMT_JPEG, FMT_PNG, FMT_BMP, FMT_GIF, FMT_PSD, FMT_PIC, FMT_PNM, FMT_HDR
} ImageFormat;

/* The format the first n bytes announce (FMT_OTHER: none, TGA perhaps). */
ImageFormat sac_image_format(const uint8_t *b, size_t n);

/* What must be refused before stb_image parses even the header: SAC_OK, SAC_ERR_UNSUPPORTED
 * (Softimage PIC; a PSD with more than 3 channels, whose alpha stb_image 2.27 un-mattes with
 * undefined float conversions; a PNM header number beyond the side limit or maxval 65535,
 * which stb_image 2.27 would overflow an int reading) or SAC_ERR_FORMAT (a JPEG segment running
 * past the end, a corrupt DHT segment, less than one bit of scan data per 8 x 8 block; a PNG
 * chunk running past the end of the file, for whose claimed length stb_image 2.27 allocates
 * before reading, or an empty first IDAT chunk, where it offsets a NULL pointer). header_only:
 * stop a JPEG's walk at its first scan (what stbi_info reads), without the scan-data bound.
 * Logs with name unless name is NULL. */
int sac_image_precheck(ImageFormat fmt, const uint8_t *buf, size_t len, const char *name,
                       int header_only);

/* A lower bound on the bytes a valid w x h image of format f needs (0: unknown, let stb_image
 * decide): PSD, TGA, BMP, PNM, HDR. w, h <= SAC_IMAGE_MAX_SIDE and w * h within the caller's
 * pixel limit (no overflow then). channels and is16 as stb_image reports them. */
uint64_t sac_image_min_bytes(ImageFormat f, const uint8_t *b, size_t n, uint64_t w, uint64_t h,
                             int channels, int is16);

#endif
