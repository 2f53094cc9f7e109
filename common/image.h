/*
 * image.h - image decoding and the model's input preprocessing.
 *
 * Decoding is stb_image (JPEG/PNG/BMP/GIF/TGA/PSD (3 channels)/HDR/PNM). Every input becomes
 * 8-bit RGB:
 *   - gray -> R = G = B; palette images come out as their RGB(A) colours;
 *   - alpha is composited over WHITE: out = (v * a + 255 * (255 - a) + 127) / 255. A transparent
 *     logo thus reads as the logo on a white page, not on the black that dropping alpha from
 *     premultiplied data or zeroed transparent pixels would often give;
 *   - 16-bit PNG/PNM/PSD are decoded at 16 bits and rounded to 8: v8 = (v16 * 255 + 32767) / 65535;
 *   - HDR uses stb_image's default tone map (gamma 2.2, scale 1); GIF gives its first frame;
 *   - JPEG EXIF orientation (APP1 "Exif", tag 0x0112, values 1..8, either byte order) is applied,
 *     so a phone photo stored sideways comes out upright. Other formats are not rotated.
 * A pixel limit is checked from the header (stbi_info) before anything is decoded, so a small
 * file that claims 100000 x 100000 pixels is refused without allocating for it.
 * Large JPEGs bound for the model are decoded smaller with libjpeg-turbo (sac_image_load_scaled);
 * stb_image decodes everything else, and all of a JPEG when that is asked for.
 *
 * Hostile input (issue 11): files are opened as regular files only (fileio.h: a FIFO or device
 * is refused, never waited on). Before stb_image sees the bytes: Softimage PIC, which stb_image
 * also reads, is refused (not a promised format), and so is a PSD with more than 3 channels
 * (alpha or extra channels: stb_image 2.27's alpha un-matting is undefined behaviour on
 * arbitrary data; flattened RGB PSDs are read); a JPEG's marker segments are walked (every
 * scan) and a DHT segment whose counts sum past 256 or do not form a prefix code is refused
 * (stb_image 2.27 writes past its Huffman arrays on those: ffd8ffc4ffc40015ff), as is a JPEG
 * with less than one bit of scan data per 8 x 8 block; PSD, TGA, BMP, PNM and HDR files must
 * hold at least the bytes their header's size needs (raw: every sample; run-length: one packet
 * per 128 samples). Decoding reads through callbacks that notice a read past the end: stb_image
 * would return the missing part as zeros, so such a file is refused as truncated (this also
 * refuses a JPEG without its end marker).
 *
 * Preprocessing (the exact function used by training and by inference): squash-resize to S x S
 * (no crop, aspect ratio not kept) with stbir_resize_uint8 (stb_image_resize's default filters:
 * Mitchell when shrinking, Catmull-Rom when enlarging, clamped edges, linear 8-bit values), then
 * out[c][y][x] = (v / 255 - mean[c]) / std[c] in float. The 8-bit resize is chosen so that an
 * image resized once and cached as 8-bit gives bit-identical input, and a constant image stays
 * exactly constant.
 *
 * Size letters: S model input side (pixels), C = 3 colour channels.
 */
#ifndef SACCADE_IMAGE_H
#define SACCADE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* An 8-bit RGB image, interleaved, row-major, no padding: rgb has w * h * 3 bytes.
 * The struct owns rgb; release with sac_image_free. */
typedef struct SacImage {
    int w, h;
    uint8_t *rgb; // (h, w, 3)
} SacImage;

/* Used when max_pixels == 0: 64 megapixels (about 192 MB decoded). */
#define SAC_IMAGE_DEFAULT_MAX_PIXELS ((size_t)64 * 1024 * 1024)

/* Free img->rgb and zero the struct. Safe on a zeroed struct and on NULL. */
void sac_image_free(SacImage *img);

/* Allocate a w x h image, every byte set to `fill` (e.g. 255 for white). out is overwritten
 * (not freed first). Returns SAC_OK, SAC_ERR_INVALID (w or h < 1 or too large), SAC_ERR_NOMEM. */
int sac_image_alloc(SacImage *out, int w, int h, uint8_t fill);

/* Decode the image file at path into out (overwritten, not freed first; zeroed on failure).
 * max_pixels: refuse images with w * h above this (0 = SAC_IMAGE_DEFAULT_MAX_PIXELS).
 * Returns SAC_OK or, with a message naming the path:
 *   SAC_ERR_NOTFOUND     the file does not exist
 *   SAC_ERR_IO           it cannot be opened or read (permissions, a directory, ...)
 *   SAC_ERR_FORMAT       empty, not a recognised image, truncated or corrupt (stb's reason given)
 *   SAC_ERR_UNSUPPORTED  a valid header whose w * h exceeds max_pixels
 *   SAC_ERR_NOMEM        allocation failed */
int sac_image_load(const char *path, SacImage *out, size_t max_pixels);

/* As sac_image_load, from len bytes at buf; name_for_errors (may be NULL: "<memory>") is used in
 * messages. The buffer is not kept. */
int sac_image_load_memory(const uint8_t *buf, size_t len, const char *name_for_errors,
                          SacImage *out, size_t max_pixels);

/* As sac_image_load, for a caller that will shrink the image to at least min_side x min_side
 * (the model's input side S): a JPEG (YCbCr or grayscale) large enough is decoded by
 * libjpeg-turbo straight at 1/2, 1/4 or 1/8 of its size (DCT-domain scaling, jpeg_turbo.h):
 * the smallest of those whose sides are both still >= min_side. A 4000 x 3000 photo and
 * S = 224 give 500 x 375 pixels. Every other image (other formats, a JPEG too small for any
 * scale, CMYK, a file libjpeg-turbo warns about) is decoded by stb_image in full, exactly as
 * sac_image_load does; min_side < 1 is sac_image_load. Everything else is as sac_image_load:
 * the same checks before decoding (the pixel limit applies to the full size the header
 * declares), EXIF orientation applied after the scaled decode, the same return codes. When
 * both libjpeg-turbo and stb_image refuse a JPEG, the message names the file and gives both
 * reasons. Resized to the model's input, a scaled decode differs from the full decode by a
 * fraction of an 8-bit level on average (test_image: 0.2-0.3 on a photo-like JPEG). */
int sac_image_load_scaled(const char *path, int min_side, SacImage *out, size_t max_pixels);

/* sac_image_load_scaled from len bytes at buf (see sac_image_load_memory). */
int sac_image_load_memory_scaled(const uint8_t *buf, size_t len, const char *name_for_errors,
                                 int min_side, SacImage *out, size_t max_pixels);

/* Check an image file from its header without decoding it (the first MiB is read): the size is
 * stored in *w, *h. Returns NULL when the header is readable, else a short reason for a report
 * ("missing", "not a regular file", "empty file", "corrupt JPEG header", "not a readable
 * image", ...); logs nothing but what opening logs. A FIFO or device is never opened. */
const char *sac_image_probe(const char *path, int *w, int *h);

/* The EXIF orientation (1..8) of a JPEG held in buf, or 1 when it is not a JPEG, has no Exif
 * APP1 segment, no orientation tag, or an invalid one. Never reads outside buf. */
int sac_image_jpeg_orientation(const uint8_t *buf, size_t len);

/* Apply EXIF orientation o (1..8; anything else = 1) in place: 2 mirror, 3 rotate 180,
 * 4 flip vertically, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
 * counter-clockwise. 5..8 swap w and h. Returns SAC_OK or SAC_ERR_NOMEM (img unchanged). */
int sac_image_orient(SacImage *img, int orientation);

/* Squash-resize in to w x h with stbir_resize_uint8 (a plain copy when the size is unchanged).
 * out is overwritten (not freed first); the caller owns it. in and out must differ.
 * Returns SAC_OK, SAC_ERR_INVALID (empty input, w or h < 1), SAC_ERR_NOMEM. */
int sac_image_resize(const SacImage *in, int w, int h, SacImage *out);

/* The model input: resize to S x S (as sac_image_resize), then
 * out[c*S*S + y*S + x] = ((float)v / 255.0f - mean[c]) / std[c].
 * out: (3, S, S) floats, caller-allocated. Returns SAC_OK, SAC_ERR_INVALID (S < 1, empty image,
 * a std that is not > 0), SAC_ERR_NOMEM. */
int sac_image_preprocess(const SacImage *img, int S, const float mean[3], const float std[3],
                         float *out);

/* Mirror left-right in place (training augmentation). */
void sac_image_flip_horizontal(SacImage *img);
/* Mirror a (C, H, W) float tensor left-right in place (the same flip after preprocessing). */
void sac_tensor_flip_horizontal(float *x /* (C, H, W) */, int C, int H, int W);

/* Write img as an 8-bit RGB PNG, atomically (common/output.h: a failed write leaves the old file
 * as it was). Returns SAC_OK, SAC_ERR_INVALID (empty image), SAC_ERR_IO (logged with the path). */
int sac_image_write_png(const char *path, const SacImage *img);

#endif
