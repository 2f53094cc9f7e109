/*
 * image.c - decode any image stb_image reads into 8-bit RGB (alpha over white, 16-bit rounded,
 * JPEG EXIF orientation applied, pixel limit and image_check.c's checks before decoding, a
 * read past the end refused; a large JPEG bound for the model decoded at 1/2, 1/4 or 1/8 size
 * by libjpeg-turbo, jpeg_turbo.c), squash-resize with stb_image_resize, normalise into the
 * model's (3, S, S) input, write PNG.
 *
 * Size letters: S model input side, C = 3 colour channels. See image.h for the conventions.
 * The stb implementations live in Debian's libstb.so (no STB_*_IMPLEMENTATION here).
 * EXIF reference: CIPA DC-008 (Exif 2.3) section 4.6.4, TIFF 6.0 section 2 (IFD layout).
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "fileio.h"
#include "image_check.h"
#include "jpeg_turbo.h"
#include "output.h"
#include "sac.h"

#define IMAGE_MAX_SIDE SAC_IMAGE_MAX_SIDE

void sac_image_free(SacImage *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

int sac_image_alloc(SacImage *out, int w, int h, uint8_t fill)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE) {
        sac_error("image: cannot allocate a %d x %d image: expected sides in 1..%d", w, h,
                  IMAGE_MAX_SIDE);
        return SAC_ERR_INVALID;
    }
    size_t n = (size_t)w * (size_t)h * 3;
    uint8_t *p = sac_malloc(n);
    if (!p) return SAC_ERR_NOMEM;
    memset(p, fill, n);
    out->w = w;
    out->h = h;
    out->rgb = p;
    return SAC_OK;
}

/* ---- EXIF orientation ------------------------------------------------------------------- */

static unsigned exif_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t exif_u32(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The orientation in an APP1 payload d[0..n) ("Exif\0\0" + TIFF), or 0 when absent/invalid. */
static int exif_orientation(const uint8_t *d, size_t n)
{
    if (n < 6 + 8 || memcmp(d, "Exif\0\0", 6) != 0) return 0;
    const uint8_t *t = d + 6; // TIFF header: byte order, 42, offset of IFD0 (from t)
    size_t tn = n - 6;
    int be;
    if (t[0] == 'I' && t[1] == 'I') be = 0;
    else if (t[0] == 'M' && t[1] == 'M') be = 1;
    else return 0;
    if (exif_u16(t + 2, be) != 42) return 0;
    uint32_t ifd = exif_u32(t + 4, be);
    if (ifd > tn || tn - ifd < 2) return 0;
    unsigned count = exif_u16(t + ifd, be);
    for (unsigned k = 0; k < count; k++) {
        size_t e = (size_t)ifd + 2 + (size_t)k * 12; // entry: tag, type, count, value
        if (e + 12 > tn) return 0;
        if (exif_u16(t + e, be) != 0x0112) continue;
        unsigned type = exif_u16(t + e + 2, be);
        uint32_t v;
        if (type == 3) v = exif_u16(t + e + 8, be);      /* SHORT, as the standard says */
        else if (type == 4) v = exif_u32(t + e + 8, be); /* LONG, seen from some writers */
        else return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

typedef int (*JpegVisitFn)(unsigned marker, const uint8_t *payload, size_t n, void *user);

/* Walk a JPEG's marker segments up to the first scan, calling visit on each until it returns
 * nonzero; returns that value, or 0 (also for anything that is not a well-formed JPEG). */
static int jpeg_walk(const uint8_t *buf, size_t len, JpegVisitFn visit, void *user)
{
    if (!buf || len < 4 || buf[0] != 0xFF || buf[1] != 0xD8) return 0;
    size_t p = 2;
    while (p + 4 <= len) {
        if (buf[p] != 0xFF) return 0; /* lost marker sync: give up quietly */
        unsigned m = buf[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { /* markers without a length */
            p += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return 0; /* start of scan / end: no more metadata */
        size_t seg = (size_t)buf[p + 2] << 8 | buf[p + 3]; /* includes its own 2 bytes */
        if (seg < 2 || seg > len - p - 2) return 0;
        int r = visit(m, buf + p + 4, seg - 2, user);
        if (r) return r;
        p += 2 + seg;
    }
    return 0;
}

static int jpeg_visit_exif(unsigned m, const uint8_t *d, size_t n, void *user)
{
    (void)user;
    return m == 0xE1 ? exif_orientation(d, n) : 0;
}

int sac_image_jpeg_orientation(const uint8_t *buf, size_t len)
{
    int o = jpeg_walk(buf, len, jpeg_visit_exif, NULL);
    return o ? o : 1;
}

static int jpeg_visit_sof(unsigned m, const uint8_t *d, size_t n, void *user)
{
    /* SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC): precision, height, width */
    if (m < 0xC0 || m > 0xCF || m == 0xC4 || m == 0xC8 || m == 0xCC || n < 5) return 0;
    int *wh = user;
    wh[1] = d[1] << 8 | d[2];
    wh[0] = d[3] << 8 | d[4];
    return 1;
}

/* The size a PNG (IHDR) or JPEG (SOFn) header claims, for a useful message when stb_image
 * refuses the header outright (it reports only "unknown image type" then). 0 if unknown. */
static int image_header_size(const uint8_t *buf, size_t len, int64_t *w, int64_t *h)
{
    static const uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    if (len >= 24 && memcmp(buf, png_sig, 8) == 0 && memcmp(buf + 12, "IHDR", 4) == 0) {
        *w = exif_u32(buf + 16, 1);
        *h = exif_u32(buf + 20, 1);
        return 1;
    }
    int wh[2];
    if (jpeg_walk(buf, len, jpeg_visit_sof, wh)) {
        *w = wh[0], *h = wh[1];
        return 1;
    }
    return 0;
}

int sac_image_orient(SacImage *img, int o)
{
    if (o < 2 || o > 8 || !img->rgb) return SAC_OK;
    int w = img->w, h = img->h;
    int swap = o >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    SacImage out;
    int rc = sac_image_alloc(&out, ow, oh, 0);
    if (rc) return rc;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy; /* the stored pixel shown at display position (x, y) */
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break; /* 8 */
            }
            const uint8_t *s = img->rgb + ((size_t)sy * w + sx) * 3;
            uint8_t *d = out.rgb + ((size_t)y * ow + x) * 3;
            d[0] = s[0], d[1] = s[1], d[2] = s[2];
        }
    }
    sac_image_free(img);
    *img = out;
    return SAC_OK;
}

/* stb_image reading through callbacks that notice when the decoder asks for bytes past the end
 * (stb_image then feeds it zeros and reports success: a truncated file "decodes" to padding). */
typedef struct {
    const uint8_t *p;
    size_t n, pos;
    int overread;
} MemReader;

static int mem_read(void *user, char *data, int size)
{
    MemReader *r = user;
    size_t left = r->n - r->pos;
    if (left == 0) {
        r->overread = 1;
        return 0;
    }
    size_t k = size > 0 && (size_t)size < left ? (size_t)size : left;
    memcpy(data, r->p + r->pos, k);
    r->pos += k;
    return (int)k;
}

static void mem_skip(void *user, int k)
{
    MemReader *r = user; /* stb_image handles k < 0 itself; a skip past the end is not a read */
    if (k > 0) r->pos = (size_t)k < r->n - r->pos ? r->pos + (size_t)k : r->n;
}

static int mem_eof(void *user)
{
    const MemReader *r = user;
    return r->pos >= r->n;
}

/* ---- decoding --------------------------------------------------------------------------- */

/* Convert n_ch-channel samples (8- or 16-bit, maximum vmax) to 8-bit RGB over white. */
static void image_to_rgb(uint8_t *dst, const void *src, int is16, int n_ch, size_t n_px)
{
    const uint8_t *s8 = src;
    const uint16_t *s16 = src;
    const uint64_t vmax = is16 ? 65535 : 255;
    for (size_t i = 0; i < n_px; i++) {
        uint64_t v[4] = {0, 0, 0, 0};
        for (int c = 0; c < n_ch; c++) v[c] = is16 ? s16[i * n_ch + c] : s8[i * n_ch + c];
        uint64_t rgb[3], a = vmax;
        if (n_ch <= 2) rgb[0] = rgb[1] = rgb[2] = v[0];
        else rgb[0] = v[0], rgb[1] = v[1], rgb[2] = v[2];
        if (n_ch == 2) a = v[1];
        if (n_ch == 4) a = v[3];
        for (int c = 0; c < 3; c++) {
            uint64_t x = rgb[c];
            if (a != vmax) x = (x * a + vmax * (vmax - a) + vmax / 2) / vmax; /* over white */
            if (is16) x = (x * 255 + 32767) / 65535;
            dst[i * 3 + c] = (uint8_t)x;
        }
    }
}

/* stb_image 2.27 returns 16-bit PNM samples in file (big-endian) byte order instead of native
 * order (nothings/stb PR #1710, unmerged). Probe the linked library once with a 1-pixel PGM
 * holding 0x0102, so the fix is applied only while the bug is present. */
static int pnm16_swap;
static pthread_once_t pnm16_once = PTHREAD_ONCE_INIT;

static void pnm16_probe(void)
{
    static const uint8_t pgm[] = "P5\n1 1\n65535\n\x01\x02";
    int w, h, c;
    stbi_us *v = stbi_load_16_from_memory(pgm, (int)sizeof(pgm) - 1, &w, &h, &c, 1);
    pnm16_swap = v && v[0] == 0x0201;
    stbi_image_free(v);
}

static int image_is_pnm(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == 'P' && (buf[1] == '5' || buf[1] == '6');
}

/* stb_image's full decode of a w x h image whose header passed every check, into out. tj_why:
 * why libjpeg-turbo refused the same JPEG ("" when it was not asked), added to stb_image's
 * reason when it refuses the file too. */
static int image_decode_stb(const uint8_t *buf, size_t len, const char *name, int w, int h, int is16,
                            size_t max_pixels, const char *tj_why, SacImage *out)
{
    const char *tj_sep = tj_why[0] ? "; libjpeg-turbo: " : "";
    MemReader rd = {buf, len, 0, 0};
    const stbi_io_callbacks io = {mem_read, mem_skip, mem_eof};
    int dw, dh, dch;
    void *px = is16 ? (void *)stbi_load_16_from_callbacks(&io, &rd, &dw, &dh, &dch, 0)
                    : (void *)stbi_load_from_callbacks(&io, &rd, &dw, &dh, &dch, 0);
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && strcmp(why, "outofmem") == 0) {
            sac_error("%s: out of memory decoding a %d x %d image", name, w, h);
            return SAC_ERR_NOMEM;
        }
        sac_error("%s: truncated or corrupt %d x %d image (stb_image: %s%s%s)", name, w, h,
                  why ? why : "unknown", tj_sep, tj_why);
        return SAC_ERR_FORMAT;
    }
    if (rd.overread) {
        sac_error("%s: truncated %d x %d image: the decoder needed more than the %zu bytes of "
                  "the file (a file cut short, or a JPEG without its end marker)%s%s", name, w, h,
                  len, tj_sep, tj_why);
        stbi_image_free(px);
        return SAC_ERR_FORMAT;
    }
    /* The decoder may disagree with the header scan (e.g. GIF frames); trust what it produced,
     * but never more pixels than allowed. */
    if (dw < 1 || dh < 1 || dch < 1 || dch > 4 ||
        (uint64_t)dw * (uint64_t)dh > (uint64_t)max_pixels) {
        sac_error("%s: decoder returned %d x %d x %d, expected %d x %d within %zu pixels", name,
                  dw, dh, dch, w, h, max_pixels);
        stbi_image_free(px);
        return SAC_ERR_FORMAT;
    }
    if (is16 && image_is_pnm(buf, len)) {
        pthread_once(&pnm16_once, pnm16_probe);
        if (pnm16_swap) {
            stbi_us *s = px;
            for (size_t i = 0; i < (size_t)dw * dh * dch; i++)
                s[i] = (stbi_us)(s[i] >> 8 | s[i] << 8);
        }
    }
    int rc = sac_image_alloc(out, dw, dh, 0);
    if (rc) {
        stbi_image_free(px);
        return rc;
    }
    image_to_rgb(out->rgb, px, is16, dch, (size_t)dw * dh);
    stbi_image_free(px);
    return SAC_OK;
}

int sac_image_load_memory_scaled(const uint8_t *buf, size_t len, const char *name, int min_side,
                                 SacImage *out, size_t max_pixels)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!name) name = "<memory>";
    if (max_pixels == 0) max_pixels = SAC_IMAGE_DEFAULT_MAX_PIXELS;
    if (!buf || len == 0) {
        sac_error("%s: empty file (0 bytes), expected an image", name);
        return SAC_ERR_FORMAT;
    }
    if (len > INT_MAX) {
        sac_error("%s: %zu bytes, expected at most %d (stb_image's limit)", name, len, INT_MAX);
        return SAC_ERR_UNSUPPORTED;
    }
    /* before stbi_info, which already builds the Huffman tables of a JPEG header */
    ImageFormat fmt = sac_image_format(buf, len);
    int rc = sac_image_precheck(fmt, buf, len, name, 0);
    if (rc) return rc;
    int w, h, n_ch;
    if (!stbi_info_from_memory(buf, (int)len, &w, &h, &n_ch)) {
        const char *why = stbi_failure_reason();
        int64_t hw, hh;
        /* sides up to 2^32 - 1 each: the product needs 64 unsigned bits */
        if (image_header_size(buf, len, &hw, &hh) && hw > 0 && hh > 0 &&
            (uint64_t)hw * (uint64_t)hh > (uint64_t)max_pixels) {
            sac_error("%s: image is %lld x %lld = %llu pixels, expected at most %zu", name,
                      (long long)hw, (long long)hh,
                      (unsigned long long)((uint64_t)hw * (uint64_t)hh), max_pixels);
            return SAC_ERR_UNSUPPORTED;
        }
        sac_error("%s: not a readable image, expected JPEG/PNG/BMP/GIF/TGA/PSD/HDR/PNM "
                  "(stb_image: %s)", name, why ? why : "unknown");
        return SAC_ERR_FORMAT;
    }
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE ||
        (uint64_t)w * (uint64_t)h > (uint64_t)max_pixels) {
        sac_error("%s: image is %d x %d = %llu pixels, expected at most %zu", name, w, h,
                  (unsigned long long)((uint64_t)w * (uint64_t)h), max_pixels);
        return SAC_ERR_UNSUPPORTED;
    }
    int is16 = stbi_is_16_bit_from_memory(buf, (int)len);
    uint64_t need = sac_image_min_bytes(fmt, buf, len, (uint64_t)w, (uint64_t)h, n_ch, is16);
    if (need > len) {
        sac_error("%s: header claims %d x %d pixels, which need at least %llu bytes, but the "
                  "file has %zu: truncated", name, w, h, (unsigned long long)need, len);
        return SAC_ERR_FORMAT;
    }
    /* A JPEG bound for a smaller size: libjpeg-turbo decodes it scaled. What it declines
     * (UNSUPPORTED) or stops on (FORMAT: an error or a warning) stb_image decodes in full, as
     * sac_image_load would: a file is accepted or refused exactly as before. */
    char tj_why[256] = "";
    rc = SAC_ERR_UNSUPPORTED;
    if (fmt == FMT_JPEG && min_side > 0) {
        rc = sac_jpeg_turbo_decode(buf, len, w, h, min_side, out, tj_why, sizeof(tj_why));
        if (rc == SAC_ERR_NOMEM) {
            sac_error("%s: out of memory decoding a %d x %d JPEG scaled (libjpeg-turbo: %s)", name, w,
                      h, tj_why[0] ? tj_why : "allocation failed");
            return rc;
        }
        if (rc == SAC_ERR_UNSUPPORTED) tj_why[0] = 0; /* not a fault of the file */
    }
    if (rc != SAC_OK) {
        rc = image_decode_stb(buf, len, name, w, h, is16, max_pixels, tj_why, out);
        if (rc) return rc;
    }
    rc = sac_image_orient(out, sac_image_jpeg_orientation(buf, len));
    if (rc) sac_image_free(out);
    return rc;
}

int sac_image_load_memory(const uint8_t *buf, size_t len, const char *name, SacImage *out,
                          size_t max_pixels)
{
    return sac_image_load_memory_scaled(buf, len, name, 0, out, max_pixels);
}

int sac_image_load(const char *path, SacImage *out, size_t max_pixels)
{
    return sac_image_load_scaled(path, 0, out, max_pixels);
}

int sac_image_load_scaled(const char *path, int min_side, SacImage *out, size_t max_pixels)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!path || !*path) {
        sac_error("image: empty path, expected an image file name");
        return SAC_ERR_INVALID;
    }
    uint8_t *data;
    size_t len;
    int rc = sac_read_file(path, (size_t)INT_MAX, &data, &len);
    if (rc) return rc;
    rc = sac_image_load_memory_scaled(data, len, path, min_side, out, max_pixels);
    free(data);
    return rc;
}

/* The header checks of sac_image_probe on the first n bytes of a file (complete: all of it).
 * Returns NULL (w, h set), a reason, or "" when a JPEG header runs past a partial window. */
static const char *probe_memory(const uint8_t *buf, size_t n, int complete, int *w, int *h)
{
    int c;
    ImageFormat fmt = sac_image_format(buf, n);
    int rc = sac_image_precheck(fmt, buf, n, NULL, 1);
    if (rc && fmt == FMT_JPEG) return complete ? "corrupt JPEG header" : "";
    if (rc) return "unsupported header";
    if (n > INT_MAX || !stbi_info_from_memory(buf, (int)n, w, h, &c)) return "not a readable image";
    return NULL;
}

const char *sac_image_probe(const char *path, int *w, int *h)
{
    enum { HEAD = 1 << 20 }; /* enough for any header but a JPEG's with huge APP segments */
    struct stat st;
    *w = *h = 0;
    if (!path || stat(path, &st) != 0) return errno == ENOENT ? "missing" : "cannot stat";
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (st.st_size == 0) return "empty file";
    int fd = sac_open_regular(path);
    if (fd < 0) return "cannot open";
    uint8_t *buf = malloc(HEAD);
    size_t n = 0;
    while (buf && n < HEAD) {
        ssize_t r = read(fd, buf + n, HEAD - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return "out of memory";
    const char *why = probe_memory(buf, n, n < HEAD, w, h);
    free(buf);
    if (why && !*why) { /* a JPEG header longer than the window: read it all */
        if (sac_read_file(path, (size_t)INT_MAX, &buf, &n)) return "cannot read";
        why = probe_memory(buf, n, 1, w, h);
        free(buf);
    }
    return why;
}

/* ---- resizing, preprocessing, writing --------------------------------------------------- */

int sac_image_resize(const SacImage *in, int w, int h, SacImage *out)
{
    if (!in || !in->rgb || in->w < 1 || in->h < 1) {
        sac_error("image resize: empty input image, expected w, h >= 1 and pixel data");
        return SAC_ERR_INVALID;
    }
    int rc = sac_image_alloc(out, w, h, 0);
    if (rc) return rc;
    if (w == in->w && h == in->h) {
        memcpy(out->rgb, in->rgb, (size_t)w * h * 3);
        return SAC_OK;
    }
    if (!stbir_resize_uint8(in->rgb, in->w, in->h, 0, out->rgb, w, h, 0, 3)) {
        sac_error("image resize: stb_image_resize failed from %d x %d to %d x %d (out of memory)",
                  in->w, in->h, w, h);
        sac_image_free(out);
        return SAC_ERR_NOMEM;
    }
    return SAC_OK;
}

int sac_image_preprocess(const SacImage *img, int S, const float mean[3], const float std[3],
                         float *out /* (3, S, S) */)
{
    if (S < 1 || S > 32768) {
        sac_error("image preprocess: input side S = %d, expected 1..32768", S);
        return SAC_ERR_INVALID;
    }
    for (int c = 0; c < 3; c++) {
        if (!(std[c] > 0.0f)) {
            sac_error("image preprocess: std[%d] = %g, expected > 0", c, (double)std[c]);
            return SAC_ERR_INVALID;
        }
    }
    SacImage r = {0};
    const SacImage *src = img;
    if (!img || img->w != S || img->h != S) {
        int rc = sac_image_resize(img, S, S, &r);
        if (rc) return rc;
        src = &r;
    }
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    size_t plane = (size_t)S * S;
    for (size_t i = 0; i < plane; i++) {
        const uint8_t *p = src->rgb + i * 3;
        out[i] = lut[0][p[0]];
        out[plane + i] = lut[1][p[1]];
        out[2 * plane + i] = lut[2][p[2]];
    }
    sac_image_free(&r);
    return SAC_OK;
}

void sac_image_flip_horizontal(SacImage *img)
{
    if (!img || !img->rgb) return;
    for (int y = 0; y < img->h; y++) {
        uint8_t *row = img->rgb + (size_t)y * img->w * 3;
        for (int a = 0, b = img->w - 1; a < b; a++, b--) {
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
        }
    }
}

void sac_tensor_flip_horizontal(float *x /* (C, H, W) */, int C, int H, int W)
{
    for (int r = 0; r < C * H; r++) {
        float *row = x + (size_t)r * W;
        for (int a = 0, b = W - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

static void png_to_stream(void *ctx, void *data, int n)
{
    fwrite(data, 1, (size_t)n, ctx); /* errors are the stream's, checked at sac_output_close */
}

int sac_image_write_png(const char *path, const SacImage *img)
{
    if (!img || !img->rgb || img->w < 1 || img->h < 1) {
        sac_error("%s: cannot write an empty image, expected w, h >= 1", path ? path : "?");
        return SAC_ERR_INVALID;
    }
    SacOutput *o = sac_output_open(path, 0); /* atomic: a failed write leaves the old file */
    if (!o) return SAC_ERR_IO;
    if (!stbi_write_png_to_func(png_to_stream, sac_output_stream(o), img->w, img->h, 3, img->rgb, img->w * 3)) {
        sac_error("%s: cannot encode a PNG of %d x %d", path, img->w, img->h);
        sac_output_discard(o);
        return SAC_ERR_NOMEM;
    }
    return sac_output_close(o);
}
