/*
 * jpeg_turbo.h - decode a large JPEG straight at 1/2, 1/4 or 1/8 of its size with libjpeg-turbo's
 * TurboJPEG API (DCT-domain scaling: the scaled inverse DCT reads only the low frequencies of
 * each 8 x 8 block, so a 4000 x 3000 photo costs its entropy decoding plus a 500 x 375 image,
 * not 12 million pixels of IDCT, colour conversion and resizing).
 *
 * Private to image.c, which calls it only after its own checks of the bytes (image_check.c:
 * segments, DHT tables, scan bytes per block; stbi_info; the pixel limit) and applies the EXIF
 * orientation afterwards, so a scaled decode is refused and oriented exactly as a full one.
 * Anything this module declines or fails on is decoded by stb_image at full size as before.
 *
 * Size letters: none (pixel sizes are named w, h).
 */
#ifndef SACCADE_JPEG_TURBO_H
#define SACCADE_JPEG_TURBO_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

/* The DCT scale for a w x h JPEG: the largest denominator d in {8, 4, 2} such that both
 * ceil(w / d) and ceil(h / d) are >= min_side (TurboJPEG's TJSCALED), among the factors
 * tjGetScalingFactors offers; 1 (no scaling) when none fits or min_side < 1. */
int sac_jpeg_scale_denom(int w, int h, int min_side);

/* Decode the JPEG buf[0..len), whose header says w x h (as stbi_info read it), at the scale
 * sac_jpeg_scale_denom(w, h, min_side) into 8-bit RGB out (overwritten, not freed first; the
 * caller owns it; zeroed on failure). EXIF orientation is NOT applied here. Logs nothing.
 * Returns:
 *   SAC_OK               out is the ceil(w / d) x ceil(h / d) image
 *   SAC_ERR_UNSUPPORTED  not for this module: no scale below 1 fits min_side, or the colour
 *                        space is CMYK/YCCK (stb_image converts those), or TurboJPEG's header
 *                        disagrees with w x h; why says which
 *   SAC_ERR_FORMAT       libjpeg-turbo stopped on an error or a warning (a truncated file, bytes
 *                        missing before a marker, ...); why holds its message
 *   SAC_ERR_NOMEM        allocation failed
 * why (why_len bytes, may be NULL) gets a short reason for anything but SAC_OK. Thread-safe
 * (a TurboJPEG handle per call). */
int sac_jpeg_turbo_decode(const uint8_t *buf, size_t len, int w, int h, int min_side, SacImage *out,
                          char *why, size_t why_len);

#endif
