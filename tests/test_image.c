/*
 * test_image.c - decoding (PNG/BMP/TGA/JPEG/PNM/HDR, gray, gray+alpha, RGBA, paletted, 16-bit),
 * JPEG EXIF orientation (hand-spliced APP1 segments, both byte orders), the error cases (each
 * code and a message naming the path), resizing, preprocessing, flips, PNG writing; large
 * JPEGs decoded scaled by libjpeg-turbo (size, closeness to the full decode resized, EXIF
 * orientation, damaged files refused with their name).
 *
 * Every image is made here: stb_image_write for the 8-bit formats, a small hand-rolled PNG
 * writer (stored deflate blocks) for 16-bit and paletted PNGs, which stb cannot write.
 * Size letters: S model input side.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "checkrun.h"
#include "image.h"
#include "jpeg_turbo.h"
#include "rng.h"
#include "sac.h"

/* ---- fixtures: a temp dir, captured log messages ---------------------------------------- */

static char tmpdir[64];
static char last_msg[4096];

static void capture(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_ERROR) snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sac_test_image_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    last_msg[0] = 0;
    sac_log_set_sink(capture, NULL);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    sac_log_set_sink(NULL, NULL);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A growable byte buffer, also a stbi_write_func target. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} Bytes;

static void bytes_put(Bytes *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void bytes_write_fn(void *ctx, void *data, int size)
{
    bytes_put(ctx, data, (size_t)size);
}

static void bytes_u8(Bytes *b, unsigned v)
{
    uint8_t c = (uint8_t)v;
    bytes_put(b, &c, 1);
}

static void bytes_be16(Bytes *b, unsigned v)
{
    bytes_u8(b, v >> 8);
    bytes_u8(b, v & 255);
}

static void bytes_be32(Bytes *b, uint32_t v)
{
    bytes_be16(b, v >> 16);
    bytes_be16(b, v & 0xFFFF);
}

/* ---- a minimal PNG writer for what stb_image_write cannot write ------------------------- */

static uint32_t crc32_bytes(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void png_chunk(Bytes *b, const char *type, const uint8_t *data, size_t n)
{
    bytes_be32(b, (uint32_t)n);
    size_t start = b->n;
    bytes_put(b, type, 4);
    if (n) bytes_put(b, data, n);
    bytes_be32(b, crc32_bytes(0, b->p + start, n + 4));
}

/* rows: h scanlines of row_bytes each (no filter byte; filter 0 is added). */
static Bytes png_build(int w, int h, int depth, int color_type, const uint8_t *rows,
                       size_t row_bytes, const uint8_t *plte, int n_plte, const uint8_t *trns,
                       int n_trns)
{
    Bytes png = {0}, raw = {0}, z = {0};
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    bytes_put(&png, sig, 8);
    uint8_t ihdr[13] = {0};
    Bytes t = {0};
    bytes_be32(&t, (uint32_t)w);
    bytes_be32(&t, (uint32_t)h);
    memcpy(ihdr, t.p, 8);
    free(t.p);
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)color_type; /* deflate, filter 0, no interlace */
    png_chunk(&png, "IHDR", ihdr, 13);
    if (plte) png_chunk(&png, "PLTE", plte, (size_t)n_plte * 3);
    if (trns) png_chunk(&png, "tRNS", trns, (size_t)n_trns);
    for (int y = 0; y < h; y++) {
        bytes_u8(&raw, 0);
        bytes_put(&raw, rows + (size_t)y * row_bytes, row_bytes);
    }
    /* zlib stream of stored deflate blocks */
    bytes_u8(&z, 0x78), bytes_u8(&z, 0x01);
    size_t off = 0;
    do {
        size_t n = raw.n - off > 65535 ? 65535 : raw.n - off;
        bytes_u8(&z, off + n == raw.n ? 1 : 0);
        bytes_u8(&z, n & 255), bytes_u8(&z, n >> 8);
        bytes_u8(&z, ~n & 255), bytes_u8(&z, (~n >> 8) & 255);
        bytes_put(&z, raw.p + off, n);
        off += n;
    } while (off < raw.n);
    uint32_t a = 1, bsum = 0;
    for (size_t i = 0; i < raw.n; i++) a = (a + raw.p[i]) % 65521, bsum = (bsum + a) % 65521;
    bytes_be32(&z, bsum << 16 | a);
    png_chunk(&png, "IDAT", z.p, z.n);
    png_chunk(&png, "IEND", NULL, 0);
    free(raw.p), free(z.p);
    return png;
}

/* A w x h RGB test pattern with distinct, non-smooth values. */
static uint8_t *pattern_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(x * 37 + y * 71 + c * 101 + 5);
    return p;
}

static uint8_t over_white(unsigned v, unsigned a)
{
    return (uint8_t)((v * a + 255 * (255 - a) + 127) / 255);
}

/* ---- decoding ----------------------------------------------------------------------------- */

START_TEST(test_lossless_formats)
{
    const int w = 7, h = 5;
    uint8_t *ref = pattern_rgb(w, h);
    ck_assert(stbi_write_png(tmp_path("a.png"), w, h, 3, ref, w * 3));
    ck_assert(stbi_write_bmp(tmp_path("a.bmp"), w, h, 3, ref));
    ck_assert(stbi_write_tga(tmp_path("a.tga"), w, h, 3, ref));
    Bytes ppm = {0};
    char hdr[32];
    int hn = snprintf(hdr, sizeof(hdr), "P6\n%d %d\n255\n", w, h);
    bytes_put(&ppm, hdr, (size_t)hn);
    bytes_put(&ppm, ref, (size_t)w * h * 3);
    write_bytes(tmp_path("a.ppm"), ppm.p, ppm.n);
    const char *names[] = {"a.png", "a.bmp", "a.tga", "a.ppm"};
    for (int k = 0; k < 4; k++) {
        SacImage img;
        ck_assert_int_eq(sac_image_load(tmp_path(names[k]), &img, 0), SAC_OK);
        ck_assert_int_eq(img.w, w);
        ck_assert_int_eq(img.h, h);
        ck_assert_mem_eq(img.rgb, ref, (size_t)w * h * 3);
        sac_image_free(&img);
        sac_image_free(&img); /* zeroed: safe twice */
    }
    /* the same bytes from memory */
    SacImage img;
    ck_assert_int_eq(sac_image_load_memory(ppm.p, ppm.n, "mem.ppm", &img, 0), SAC_OK);
    ck_assert_mem_eq(img.rgb, ref, (size_t)w * h * 3);
    sac_image_free(&img);
    sac_image_free(NULL);
    free(ppm.p), free(ref);
}
END_TEST

START_TEST(test_jpeg_and_hdr)
{
    /* JPEG is lossy: a smooth image at quality 100 (no chroma subsampling) stays close. */
    const int w = 32, h = 24;
    uint8_t *ref = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = ref + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(40 + x * 5), p[1] = (uint8_t)(30 + y * 6), p[2] = 120;
        }
    ck_assert(stbi_write_jpg(tmp_path("a.jpg"), w, h, 3, ref, 100));
    SacImage img;
    ck_assert_int_eq(sac_image_load(tmp_path("a.jpg"), &img, 0), SAC_OK);
    ck_assert_int_eq(img.w, w);
    ck_assert_int_eq(img.h, h);
    double err = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) err += fabs((double)img.rgb[i] - ref[i]);
    ck_assert_double_lt(err / (w * h * 3), 2.0);
    sac_image_free(&img);
    free(ref);

    /* HDR goes through stb's default tone map: 8-bit = 255 * f^(1/2.2), clamped */
    float hdr[2 * 1 * 3] = {0.0f, 0.25f, 1.0f, 4.0f, 0.5f, 0.0f};
    ck_assert(stbi_write_hdr(tmp_path("a.hdr"), 2, 1, 3, hdr));
    ck_assert_int_eq(sac_image_load(tmp_path("a.hdr"), &img, 0), SAC_OK);
    ck_assert_int_eq(img.w, 2);
    ck_assert_int_eq(img.h, 1);
    for (int i = 0; i < 6; i++) {
        double want = 255.0 * pow(fmin(hdr[i], 1.0), 1 / 2.2);
        ck_assert_double_le(fabs(img.rgb[i] - want), 2.0);
    }
    sac_image_free(&img);
}
END_TEST

START_TEST(test_gray_and_alpha)
{
    const int w = 4, h = 2;
    uint8_t gray[8] = {0, 17, 128, 255, 1, 99, 200, 254};
    uint8_t ga[16], rgba[32];
    const uint8_t alphas[8] = {255, 0, 128, 1, 254, 64, 200, 255};
    for (int i = 0; i < 8; i++) {
        ga[2 * i] = gray[i], ga[2 * i + 1] = alphas[i];
        rgba[4 * i] = (uint8_t)(200 - i), rgba[4 * i + 1] = (uint8_t)(i * 30);
        rgba[4 * i + 2] = 50, rgba[4 * i + 3] = alphas[i];
    }
    ck_assert(stbi_write_png(tmp_path("g.png"), w, h, 1, gray, w));
    ck_assert(stbi_write_png(tmp_path("ga.png"), w, h, 2, ga, w * 2));
    ck_assert(stbi_write_png(tmp_path("rgba.png"), w, h, 4, rgba, w * 4));
    ck_assert(stbi_write_tga(tmp_path("rgba.tga"), w, h, 4, rgba));
    SacImage img;
    ck_assert_int_eq(sac_image_load(tmp_path("g.png"), &img, 0), SAC_OK);
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++) ck_assert_uint_eq(img.rgb[3 * i + c], gray[i]);
    sac_image_free(&img);
    ck_assert_int_eq(sac_image_load(tmp_path("ga.png"), &img, 0), SAC_OK);
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_uint_eq(img.rgb[3 * i + c], over_white(gray[i], alphas[i]));
    ck_assert_uint_eq(img.rgb[3 * 1], 255); /* alpha 0 -> white */
    sac_image_free(&img);
    const char *rgba_files[] = {"rgba.png", "rgba.tga"};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(sac_image_load(tmp_path(rgba_files[k]), &img, 0), SAC_OK);
        ck_assert_int_eq(img.w, w);
        for (int i = 0; i < 8; i++)
            for (int c = 0; c < 3; c++)
                ck_assert_uint_eq(img.rgb[3 * i + c], over_white(rgba[4 * i + c], alphas[i]));
        sac_image_free(&img);
    }
}
END_TEST

START_TEST(test_16bit)
{
    /* 16-bit RGB and gray PNG, 16-bit PGM: v8 = round(v16 * 255 / 65535) */
    const uint16_t v[6] = {0, 65535, 32768, 25700, 1000, 128};
    uint8_t rows[12];
    for (int i = 0; i < 6; i++) rows[2 * i] = (uint8_t)(v[i] >> 8), rows[2 * i + 1] = v[i] & 255;
    Bytes rgb16 = png_build(2, 1, 16, 2, rows, 12, NULL, 0, NULL, 0);
    Bytes gray16 = png_build(3, 2, 16, 0, rows, 6, NULL, 0, NULL, 0);
    write_bytes(tmp_path("rgb16.png"), rgb16.p, rgb16.n);
    Bytes pgm = {0};
    const char *hdr = "P5\n3 2\n65535\n";
    bytes_put(&pgm, hdr, strlen(hdr));
    bytes_put(&pgm, rows, 12);
    SacImage img;
    ck_assert_int_eq(sac_image_load(tmp_path("rgb16.png"), &img, 0), SAC_OK);
    ck_assert_int_eq(img.w, 2);
    ck_assert_int_eq(img.h, 1);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(img.rgb[i], (uint8_t)((v[i] * 255u + 32767u) / 65535u));
    ck_assert_uint_eq(img.rgb[2], 128); /* 32768 -> 127.5 rounds up, >> 8 would give 128 too */
    ck_assert_uint_eq(img.rgb[4], 4);   /* 1000 -> 3.89 -> 4, where >> 8 gives 3 */
    sac_image_free(&img);
    const Bytes *grays[2] = {&gray16, &pgm};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(sac_image_load_memory(grays[k]->p, grays[k]->n, "g16", &img, 0), SAC_OK);
        ck_assert_int_eq(img.w, 3);
        ck_assert_int_eq(img.h, 2);
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 3; c++)
                ck_assert_uint_eq(img.rgb[3 * i + c], (uint8_t)((v[i] * 255u + 32767u) / 65535u));
        sac_image_free(&img);
    }
    free(rgb16.p), free(gray16.p), free(pgm.p);
}
END_TEST

START_TEST(test_paletted)
{
    const uint8_t plte[3 * 3] = {255, 0, 0, 0, 200, 10, 30, 40, 250};
    const uint8_t idx[6] = {0, 1, 2, 2, 1, 0}; /* 3 x 2, 8-bit indices */
    Bytes p = png_build(3, 2, 8, 3, idx, 3, plte, 3, NULL, 0);
    SacImage img;
    ck_assert_int_eq(sac_image_load_memory(p.p, p.n, "pal.png", &img, 0), SAC_OK);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++) ck_assert_uint_eq(img.rgb[3 * i + c], plte[3 * idx[i] + c]);
    sac_image_free(&img);
    /* with tRNS: entry 0 fully transparent, entry 1 half */
    const uint8_t trns[2] = {0, 128};
    Bytes pt = png_build(3, 2, 8, 3, idx, 3, plte, 3, trns, 2);
    ck_assert_int_eq(sac_image_load_memory(pt.p, pt.n, "palt.png", &img, 0), SAC_OK);
    const unsigned alpha[3] = {0, 128, 255};
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_uint_eq(img.rgb[3 * i + c], over_white(plte[3 * idx[i] + c], alpha[idx[i]]));
    ck_assert_uint_eq(img.rgb[0], 255);
    ck_assert_uint_eq(img.rgb[1], 255);
    sac_image_free(&img);
    free(p.p), free(pt.p);
}
END_TEST

/* ---- EXIF orientation --------------------------------------------------------------------- */

static void put16(Bytes *b, unsigned v, int big_endian)
{
    if (big_endian) bytes_be16(b, v);
    else bytes_u8(b, v & 255), bytes_u8(b, v >> 8);
}

static void put32(Bytes *b, uint32_t v, int big_endian)
{
    if (big_endian) put16(b, v >> 16, 1), put16(b, v & 0xFFFF, 1);
    else put16(b, v & 0xFFFF, 0), put16(b, v >> 16, 0);
}

/* An APP1 Exif segment with IFD0 = {Make "ab", Orientation o}, in either byte order. */
static void exif_segment(Bytes *b, int orientation, int be)
{
    Bytes t = {0}; /* TIFF body: byte order, 42, IFD0 offset, IFD0 */
    bytes_put(&t, be ? "MM" : "II", 2);
    put16(&t, 42, be);
    put32(&t, 8, be);
    put16(&t, 2, be);                                        /* two entries */
    put16(&t, 0x010F, be), put16(&t, 2, be), put32(&t, 3, be); /* Make, ASCII, 3 chars inline */
    bytes_put(&t, "ab\0\0", 4);
    put16(&t, 0x0112, be), put16(&t, 3, be), put32(&t, 1, be); /* Orientation, SHORT, 1 */
    put16(&t, (unsigned)orientation, be), put16(&t, 0, be);
    put32(&t, 0, be); /* no next IFD */
    bytes_u8(b, 0xFF), bytes_u8(b, 0xE1);
    bytes_be16(b, (unsigned)(2 + 6 + t.n));
    bytes_put(b, "Exif\0\0", 6);
    bytes_put(b, t.p, t.n);
    free(t.p);
}

/* A 32 x 16 JPEG, gray, with a red 8 x 8 block in the stored top-left corner; an XMP APP1 and
 * then an Exif APP1 (orientation o, o = 0: none) spliced in after SOI. */
static Bytes jpeg_with_exif(int orientation, int big_endian)
{
    const int w = 32, h = 16;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            int red = x < 8 && y < 8;
            p[0] = red ? 255 : 128, p[1] = red ? 0 : 128, p[2] = red ? 0 : 128;
        }
    Bytes j = {0}, out = {0};
    ck_assert(stbi_write_jpg_to_func(bytes_write_fn, &j, w, h, 3, px, 100));
    free(px);
    ck_assert(j.n > 4 && j.p[0] == 0xFF && j.p[1] == 0xD8);
    bytes_put(&out, j.p, 2);
    const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
    bytes_u8(&out, 0xFF), bytes_u8(&out, 0xE1), bytes_be16(&out, 2 + sizeof(xmp));
    bytes_put(&out, xmp, sizeof(xmp));
    if (orientation) exif_segment(&out, orientation, big_endian);
    bytes_put(&out, j.p + 2, j.n - 2);
    free(j.p);
    return out;
}

static int is_red(const SacImage *img, int x, int y)
{
    const uint8_t *p = img->rgb + ((size_t)y * img->w + x) * 3;
    return p[0] > 200 && p[1] < 60 && p[2] < 60;
}

START_TEST(test_exif_orientation_jpeg)
{
    /* orientation -> displayed size and where the stored top-left red block appears */
    struct {
        int o, w, h, red_x, red_y;
    } cases[] = {
        {0, 32, 16, 3, 3},  /* no Exif */
        {1, 32, 16, 3, 3},  /* identity */
        {3, 32, 16, 28, 12}, /* 180: bottom-right */
        {6, 16, 32, 12, 3},  /* 90 clockwise: top-right */
        {8, 16, 32, 3, 28},  /* 90 counter-clockwise: bottom-left */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (int be = 0; be < 2; be++) {
            Bytes j = jpeg_with_exif(cases[k].o, be);
            ck_assert_int_eq(sac_image_jpeg_orientation(j.p, j.n), cases[k].o ? cases[k].o : 1);
            write_bytes(tmp_path("exif.jpg"), j.p, j.n);
            SacImage img;
            ck_assert_int_eq(sac_image_load(tmp_path("exif.jpg"), &img, 0), SAC_OK);
            ck_assert_int_eq(img.w, cases[k].w);
            ck_assert_int_eq(img.h, cases[k].h);
            ck_assert_msg(is_red(&img, cases[k].red_x, cases[k].red_y),
                          "orientation %d (%s): no red at (%d, %d)", cases[k].o, be ? "MM" : "II",
                          cases[k].red_x, cases[k].red_y);
            /* exactly one corner is red */
            int corners = is_red(&img, 3, 3) + is_red(&img, img.w - 4, 3) +
                          is_red(&img, 3, img.h - 4) + is_red(&img, img.w - 4, img.h - 4);
            ck_assert_int_eq(corners, 1);
            sac_image_free(&img);
            /* every truncation of the header region parses without reading past the end */
            for (size_t n = 0; n < 200 && n < j.n; n++) {
                int o = sac_image_jpeg_orientation(j.p, n);
                ck_assert(o >= 1 && o <= 8);
            }
            free(j.p);
        }
    }
    /* an invalid orientation value is ignored */
    Bytes bad = jpeg_with_exif(9, 0);
    ck_assert_int_eq(sac_image_jpeg_orientation(bad.p, bad.n), 1);
    free(bad.p);
    uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    ck_assert_int_eq(sac_image_jpeg_orientation(png_sig, 8), 1);
}
END_TEST

START_TEST(test_orient_all_eight)
{
    /* 3 x 2 image with distinct corners; where each stored corner must be displayed, from the
     * Exif definitions of the 0th row / 0th column (CIPA DC-008 table 4.6.4-A). */
    enum { TL, TR, BL, BR };
    const int where[9][3] = {
        {0, 0, 0},       /* unused */
        {TL, TR, BL},    /* 1 */
        {TR, TL, BR},    /* 2 mirror */
        {BR, BL, TR},    /* 3 rotate 180 */
        {BL, BR, TL},    /* 4 flip vertical */
        {TL, BL, TR},    /* 5 transpose */
        {TR, BR, TL},    /* 6 rotate 90 cw */
        {BR, TR, BL},    /* 7 transverse */
        {BL, TL, BR},    /* 8 rotate 90 ccw */
    };
    for (int o = 1; o <= 8; o++) {
        SacImage img;
        ck_assert_int_eq(sac_image_alloc(&img, 3, 2, 0), SAC_OK);
        for (int i = 0; i < 6; i++) img.rgb[3 * i] = (uint8_t)(10 + i); /* R = 10 + index */
        ck_assert_int_eq(sac_image_orient(&img, o), SAC_OK);
        ck_assert_int_eq(img.w, o >= 5 ? 2 : 3);
        ck_assert_int_eq(img.h, o >= 5 ? 3 : 2);
        int corner_idx[4] = {0, img.w - 1, (img.h - 1) * img.w, img.h * img.w - 1};
        const uint8_t stored[3] = {10, 12, 13}; /* TL, TR, BL of the 3 x 2 source */
        for (int k = 0; k < 3; k++)
            ck_assert_msg(img.rgb[3 * corner_idx[where[o][k]]] == stored[k],
                          "orientation %d corner %d", o, k);
        sac_image_free(&img);
    }
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------- */

static void expect_error(int rc, int want, const char *path, const char *word)
{
    ck_assert_msg(rc == want, "status %d, expected %d; message: %s", rc, want, last_msg);
    ck_assert_msg(strstr(last_msg, path) != NULL, "message '%s' lacks the path %s", last_msg,
                  path);
    if (word)
        ck_assert_msg(strstr(last_msg, word) != NULL, "message '%s' lacks '%s'", last_msg, word);
    last_msg[0] = 0;
}

START_TEST(test_errors)
{
    SacImage img = {0};
    const char *p = tmp_path("missing.png");
    expect_error(sac_image_load(p, &img, 0), SAC_ERR_NOTFOUND, p, "no such file");
    ck_assert_ptr_null(img.rgb);

    p = tmp_path("empty.png");
    write_bytes(p, "", 0);
    expect_error(sac_image_load(p, &img, 0), SAC_ERR_FORMAT, p, "empty");

    expect_error(sac_image_load(tmpdir, &img, 0), SAC_ERR_IO, tmpdir, "directory");

    /* a valid PNG cut in half: the header parses, the pixel data does not */
    const int w = 40, h = 30;
    uint8_t *px = pattern_rgb(w, h);
    Bytes png = {0};
    ck_assert(stbi_write_png_to_func(bytes_write_fn, &png, w, h, 3, px, w * 3));
    p = tmp_path("truncated.png");
    write_bytes(p, png.p, png.n / 2);
    expect_error(sac_image_load(p, &img, 0), SAC_ERR_FORMAT, p, "truncated");
    ck_assert_ptr_null(img.rgb);

    SacRng rng;
    sac_rng_seed(&rng, 7, 1);
    uint8_t junk[1000];
    for (int i = 0; i < 1000; i++) junk[i] = (uint8_t)sac_rng_u32(&rng);
    p = tmp_path("junk.jpg");
    write_bytes(p, junk, sizeof(junk));
    expect_error(sac_image_load(p, &img, 0), SAC_ERR_FORMAT, p, "not a readable image");

    /* pixel limit: 1200 pixels against a limit of 1199 and 1200 */
    p = tmp_path("big.png");
    write_bytes(p, png.p, png.n);
    expect_error(sac_image_load(p, &img, 1199), SAC_ERR_UNSUPPORTED, p, "1200 pixels");
    ck_assert_int_eq(sac_image_load(p, &img, 1200), SAC_OK);
    sac_image_free(&img);

    /* decompression bombs: tiny files whose headers claim 10000 x 10000 (over the default
     * 64 Mpixel limit) and 60000 x 60000 (over stb_image's own limit) are refused before
     * decoding, without allocating for them */
    uint8_t one_row[3] = {0};
    Bytes bomb = png_build(1, 1, 8, 2, one_row, 3, NULL, 0, NULL, 0);
    const uint8_t sides[2][4] = {{0, 0, 0x27, 0x10}, {0, 0, 0xEA, 0x60}}; /* big-endian */
    const char *claims[2] = {"10000 x 10000", "60000 x 60000"};
    for (int k = 0; k < 2; k++) {
        memcpy(bomb.p + 16, sides[k], 4), memcpy(bomb.p + 20, sides[k], 4); /* IHDR w, h */
        uint32_t crc = crc32_bytes(0, bomb.p + 12, 17);
        bomb.p[29] = (uint8_t)(crc >> 24), bomb.p[30] = (crc >> 16) & 255;
        bomb.p[31] = (crc >> 8) & 255, bomb.p[32] = crc & 255;
        expect_error(sac_image_load_memory(bomb.p, bomb.n, "bomb.png", &img, 0),
                     SAC_ERR_UNSUPPORTED, "bomb.png", claims[k]);
        ck_assert_ptr_null(img.rgb);
    }
    free(bomb.p), free(png.p), free(px);
}
END_TEST

/* ---- hostile inputs (issue 11): non-regular files, lying headers, stb_image's known bugs --- */

/* A FIFO, a device and a directory are refused at once, without blocking on the FIFO. */
START_TEST(test_not_regular_files)
{
    SacImage img = {0};
    const char *p = tmp_path("pipe.jpg");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    alarm(10); /* before the fix, open() blocked here until a writer appeared */
    expect_error(sac_image_load(p, &img, 0), SAC_ERR_IO, p, "FIFO");
    expect_error(sac_image_load("/dev/null", &img, 0), SAC_ERR_IO, "/dev/null",
                 "character device");
    alarm(0);
    expect_error(sac_image_load(tmpdir, &img, 0), SAC_ERR_IO, tmpdir, "directory");
    ck_assert_ptr_null(img.rgb);
}
END_TEST

/* A 16 x 16 JPEG from stb_image_write. */
static Bytes small_jpeg(int w, int h, int noisy)
{
    uint8_t *px = pattern_rgb(w, h);
    SacRng rng;
    sac_rng_seed(&rng, 3, 1);
    for (int i = 0; noisy && i < w * h * 3; i++) px[i] = (uint8_t)sac_rng_u32(&rng);
    Bytes b = {0};
    ck_assert(stbi_write_jpg_to_func(bytes_write_fn, &b, w, h, 3, px, 95));
    free(px);
    return b;
}

static size_t find_marker(const Bytes *b, uint8_t m)
{
    for (size_t i = 0; i + 1 < b->n; i++)
        if (b->p[i] == 0xFF && b->p[i + 1] == m) return i;
    ck_abort_msg("marker FF%02X not found", m);
    return 0;
}

/* Debian's stb_image 2.27 writes past its Huffman arrays when a DHT segment's counts sum past
 * 256 (stbi__build_huffman; the sanitized copy linked here reports it under UBSan). */
START_TEST(test_jpeg_bad_huffman_tables)
{
    SacImage img = {0};
    /* the 9-byte reproducer: SOI, DHT whose length runs past the end, counts 0x15 + 0xff */
    static const uint8_t nine[9] = {0xff, 0xd8, 0xff, 0xc4, 0xff, 0xc4, 0x00, 0x15, 0xff};
    expect_error(sac_image_load_memory(nine, sizeof(nine), "nine.jpg", &img, 0),
                 SAC_ERR_FORMAT, "nine.jpg", "FFC4 at byte 2 runs past the end");
    /* a complete DHT segment whose counts sum to 276 (valid code lengths, too many codes) */
    Bytes b = {0};
    bytes_be16(&b, 0xFFD8), bytes_be16(&b, 0xFFC4), bytes_be16(&b, 2 + 17 + 276);
    bytes_u8(&b, 0x00);
    for (int j = 0; j < 16; j++) bytes_u8(&b, j == 14 ? 21 : j == 15 ? 255 : 0);
    for (int k = 0; k < 276; k++) bytes_u8(&b, (unsigned)k & 255);
    bytes_be16(&b, 0xFFD9);
    expect_error(sac_image_load_memory(b.p, b.n, "many.jpg", &img, 0), SAC_ERR_FORMAT,
                 "many.jpg", "more than 256 codes");
    /* three codes of length 1 cannot exist */
    b.n = 4;
    bytes_be16(&b, 2 + 17 + 3), bytes_u8(&b, 0x10), bytes_u8(&b, 3);
    for (int j = 1; j < 16; j++) bytes_u8(&b, 0);
    bytes_u8(&b, 1), bytes_u8(&b, 2), bytes_u8(&b, 3), bytes_be16(&b, 0xFFD9);
    expect_error(sac_image_load_memory(b.p, b.n, "kraft.jpg", &img, 0), SAC_ERR_FORMAT,
                 "kraft.jpg", "over-subscribed");
    ck_assert_ptr_null(img.rgb);
    free(b.p);
}
END_TEST

/* Headers that claim more pixels than the data can hold are refused, not decoded to padding. */
START_TEST(test_size_claims_beyond_data)
{
    SacImage img = {0};
    /* JPEG: a 16 x 16 file whose SOF says 4000 x 3000 (187500 blocks, ~200 bytes of scan) */
    Bytes j = small_jpeg(16, 16, 0);
    size_t sof = find_marker(&j, 0xC0);
    j.p[sof + 5] = 3000 >> 8, j.p[sof + 6] = 3000 & 255; /* height */
    j.p[sof + 7] = 4000 >> 8, j.p[sof + 8] = 4000 & 255; /* width */
    expect_error(sac_image_load_memory(j.p, j.n, "claims.jpg", &img, 0), SAC_ERR_FORMAT,
                 "claims.jpg", "4000 x 3000 pixels");
    ck_assert_ptr_null(img.rgb);
    free(j.p);

    /* JPEG cut short (no end marker, the last rows missing) */
    j = small_jpeg(64, 48, 1);
    ck_assert_int_eq(sac_image_load_memory(j.p, j.n, "whole.jpg", &img, 0), SAC_OK);
    sac_image_free(&img);
    expect_error(sac_image_load_memory(j.p, j.n * 6 / 10, "cut.jpg", &img, 0), SAC_ERR_FORMAT,
                 "cut.jpg", "truncated");
    free(j.p);

    /* PNG: a 1 x 1 file whose IHDR says 4000 x 3000: stb_image finds the IDAT short */
    uint8_t one_row[3] = {0};
    Bytes png = png_build(1, 1, 8, 2, one_row, 3, NULL, 0, NULL, 0);
    const uint8_t wh[8] = {0, 0, 4000 >> 8, 4000 & 255, 0, 0, 3000 >> 8, 3000 & 255};
    memcpy(png.p + 16, wh, 8);
    uint32_t crc = crc32_bytes(0, png.p + 12, 17);
    png.p[29] = (uint8_t)(crc >> 24), png.p[30] = (crc >> 16) & 255;
    png.p[31] = (crc >> 8) & 255, png.p[32] = crc & 255;
    expect_error(sac_image_load_memory(png.p, png.n, "claims.png", &img, 0), SAC_ERR_FORMAT,
                 "claims.png", "4000 x 3000");

    /* sides of 2^32 - 1: the pixel count needs 64 unsigned bits (it overflowed int64_t) */
    memset(png.p + 16, 0xFF, 8);
    crc = crc32_bytes(0, png.p + 12, 17);
    png.p[29] = (uint8_t)(crc >> 24), png.p[30] = (crc >> 16) & 255;
    png.p[31] = (crc >> 8) & 255, png.p[32] = crc & 255;
    expect_error(sac_image_load_memory(png.p, png.n, "huge.png", &img, 0), SAC_ERR_UNSUPPORTED,
                 "huge.png", "4294967295 x 4294967295");
    free(png.p);
}
END_TEST

/* A 359-byte RLE PSD claiming 8000 x 8000 pixels took stb_image 3 s to decode into zeros. */
START_TEST(test_psd_claims_beyond_data)
{
    Bytes b = {0};
    bytes_put(&b, "8BPS", 4), bytes_be16(&b, 1), bytes_put(&b, "\0\0\0\0\0\0", 6);
    bytes_be16(&b, 3), bytes_be32(&b, 8000), bytes_be32(&b, 8000); /* channels, h, w */
    bytes_be16(&b, 8), bytes_be16(&b, 3);                          /* depth, RGB */
    bytes_be32(&b, 0), bytes_be32(&b, 0), bytes_be32(&b, 0);       /* mode, resources, layers */
    bytes_be16(&b, 1);                                             /* RLE */
    while (b.n < 359) bytes_u8(&b, 0x80); /* no-op RLE codes */
    ck_assert_uint_eq(b.n, 359);
    SacImage img = {0};
    double t0 = sac_time();
    expect_error(sac_image_load_memory(b.p, b.n, "slow.psd", &img, 0), SAC_ERR_FORMAT,
                 "slow.psd", "truncated");
    double dt = sac_time() - t0;
    ck_assert_msg(dt < 0.25, "refusing a 359-byte PSD took %.2f s", dt);
    ck_assert_ptr_null(img.rgb);
    free(b.p);
}
END_TEST

/* stb_image 2.27 reads PNM header numbers into an int without a bound (signed overflow, found
 * by fuzz_image): refused before stb sees them. */
START_TEST(test_pnm_header_overflow)
{
    static const char pgm[] = "P5\n72222222222222222222 1\n255\n\x00";
    SacImage img = {0};
    expect_error(sac_image_load_memory((const uint8_t *)pgm, sizeof(pgm) - 1, "big.pgm", &img, 0),
                 SAC_ERR_UNSUPPORTED, "big.pgm", "PNM header claims 4294967295 x 1 pixels");
    static const char ok[] = "P5\n# a comment\n2 1\n255\n\x10\x20";
    ck_assert_int_eq(sac_image_load_memory((const uint8_t *)ok, sizeof(ok) - 1, "ok.pgm", &img, 0),
                     SAC_OK);
    ck_assert_int_eq(img.w, 2);
    ck_assert_int_eq(img.rgb[3], 0x20);
    sac_image_free(&img);
}
END_TEST

/* A PSD with alpha: stb_image 2.27 un-mattes it with float -> uint8 conversions out of range
 * (undefined behaviour, found by fuzz_image), so 4+ channel PSDs are refused; 3 are read. */
START_TEST(test_psd_channels)
{
    for (int ch = 3; ch <= 4; ch++) {
        Bytes b = {0};
        bytes_put(&b, "8BPS", 4), bytes_be16(&b, 1), bytes_put(&b, "\0\0\0\0\0\0", 6);
        bytes_be16(&b, (unsigned)ch), bytes_be32(&b, 1), bytes_be32(&b, 2); /* h 1, w 2 */
        bytes_be16(&b, 8), bytes_be16(&b, 3);
        bytes_be32(&b, 0), bytes_be32(&b, 0), bytes_be32(&b, 0), bytes_be16(&b, 0); /* raw */
        static const uint8_t planes[4][2] = {{0, 200}, {10, 210}, {20, 220}, {1, 128}};
        for (int c = 0; c < ch; c++) bytes_put(&b, planes[c], 2); /* alpha 1 and 128 */
        SacImage img = {0};
        if (ch == 3) {
            ck_assert_int_eq(sac_image_load_memory(b.p, b.n, "rgb.psd", &img, 0), SAC_OK);
            ck_assert_int_eq(img.w, 2);
            ck_assert_int_eq(img.rgb[3], 200);
            sac_image_free(&img);
        } else {
            expect_error(sac_image_load_memory(b.p, b.n, "rgba.psd", &img, 0),
                         SAC_ERR_UNSUPPORTED, "rgba.psd", "a PSD with 4 channels, expected 3");
        }
        free(b.p);
    }
}
END_TEST

/* An empty first IDAT chunk made stb_image 2.27 add 0 to a NULL pointer (found by fuzz_image);
 * an empty IDAT after the data is harmless and read. */
START_TEST(test_png_empty_first_idat)
{
    uint8_t row[3 * 2] = {1, 2, 3, 4, 5, 6};
    Bytes png = png_build(2, 1, 8, 2, row, 6, NULL, 0, NULL, 0);
    for (int first = 1; first >= 0; first--) {
        size_t at = first ? 33 : png.n - 12; /* after IHDR, or before IEND */
        Bytes b = {0};
        bytes_put(&b, png.p, at);
        png_chunk(&b, "IDAT", NULL, 0);
        bytes_put(&b, png.p + at, png.n - at);
        SacImage img = {0};
        if (first) {
            expect_error(sac_image_load_memory(b.p, b.n, "empty_idat.png", &img, 0),
                         SAC_ERR_FORMAT, "empty_idat.png", "an empty first IDAT chunk");
        } else {
            ck_assert_int_eq(sac_image_load_memory(b.p, b.n, "late.png", &img, 0), SAC_OK);
            ck_assert_int_eq(img.rgb[5], 6);
            sac_image_free(&img);
        }
        free(b.p);
    }
    free(png.p);
}
END_TEST

/* A 99-byte PNG whose IDAT claims 822 MB made stb_image 2.27 allocate 1.6 GB before reading
 * (found by fuzz_image): a chunk running past the end is refused before decoding. */
START_TEST(test_png_chunk_past_end)
{
    uint8_t row[3] = {7, 8, 9};
    Bytes png = png_build(1, 1, 8, 2, row, 3, NULL, 0, NULL, 0);
    size_t idat = 33;
    ck_assert_mem_eq(png.p + idat + 4, "IDAT", 4);
    png.p[idat] = 0x31; /* length 0x31xxxxxx */
    SacImage img = {0};
    expect_error(sac_image_load_memory(png.p, png.n, "claims.png", &img, 0), SAC_ERR_FORMAT,
                 "claims.png", "PNG chunk at byte 33: a chunk that runs past the end");
    free(png.p);
}
END_TEST

/* b without its marker segments of type m (each FF m, then a 2-byte length). */
static Bytes jpeg_without(const Bytes *b, uint8_t m)
{
    Bytes out = {0};
    size_t sos = find_marker(b, 0xDA);
    for (size_t i = 0; i < b->n;) {
        if (i < sos && i + 3 < b->n && b->p[i] == 0xFF && b->p[i + 1] == m) {
            i += 2 + ((size_t)b->p[i + 2] << 8 | b->p[i + 3]);
            continue;
        }
        bytes_put(&out, b->p + i, 1);
        i++;
    }
    return out;
}

/* A scan naming a Huffman or quantization table no segment defined: stb_image 2.27 decoded
 * through its uninitialised tables (an index 16 million before an array under UBSan: found by
 * fuzz_image). */
START_TEST(test_jpeg_undefined_tables)
{
    Bytes j = small_jpeg(16, 16, 1);
    SacImage img = {0};
    ck_assert_int_eq(sac_image_load_memory(j.p, j.n, "whole.jpg", &img, 0), SAC_OK);
    sac_image_free(&img);
    Bytes no_dht = jpeg_without(&j, 0xC4), no_dqt = jpeg_without(&j, 0xDB);
    ck_assert_uint_lt(no_dht.n, j.n);
    ck_assert_uint_lt(no_dqt.n, j.n);
    expect_error(sac_image_load_memory(no_dht.p, no_dht.n, "nodht.jpg", &img, 0), SAC_ERR_FORMAT,
                 "nodht.jpg", "uses DC Huffman table 0, which no DHT segment defined");
    expect_error(sac_image_load_memory(no_dqt.p, no_dqt.n, "nodqt.jpg", &img, 0), SAC_ERR_FORMAT,
                 "nodqt.jpg", "uses quantization table 0, which no DQT segment defined");
    ck_assert_ptr_null(img.rgb);
    free(j.p), free(no_dht.p), free(no_dqt.p);
}
END_TEST

/* Softimage PIC is decoded by stb_image but is not a promised format. */
START_TEST(test_pic_refused)
{
    Bytes b = {0};
    bytes_put(&b, "\x53\x80\xF6\x34", 4);
    while (b.n < 88) bytes_u8(&b, 0);
    bytes_put(&b, "PICT", 4), bytes_be16(&b, 1), bytes_be16(&b, 1); /* w, h */
    for (int i = 0; i < 8; i++) bytes_u8(&b, 0);                    /* ratio, fields, pad */
    bytes_u8(&b, 0), bytes_u8(&b, 8), bytes_u8(&b, 0), bytes_u8(&b, 0xE0); /* raw RGB packet */
    bytes_u8(&b, 10), bytes_u8(&b, 20), bytes_u8(&b, 30);
    SacImage img = {0};
    expect_error(sac_image_load_memory(b.p, b.n, "soft.pic", &img, 0), SAC_ERR_UNSUPPORTED,
                 "soft.pic", "Softimage PIC");
    ck_assert_ptr_null(img.rgb);
    free(b.p);
}
END_TEST

/* ---- resize, preprocess, flips, writing --------------------------------------------------- */

START_TEST(test_preprocess_constant)
{
    SacImage img;
    ck_assert_int_eq(sac_image_alloc(&img, 37, 23, 0), SAC_OK);
    const uint8_t col[3] = {10, 128, 250};
    for (int i = 0; i < 37 * 23; i++) memcpy(img.rgb + 3 * i, col, 3);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    const int sizes[3] = {16, 64, 23};
    for (int k = 0; k < 3; k++) {
        int S = sizes[k];
        float *out = malloc(sizeof(float) * 3 * S * S);
        ck_assert_int_eq(sac_image_preprocess(&img, S, mean, stdv, out), SAC_OK);
        for (int c = 0; c < 3; c++) {
            float want = ((float)col[c] / 255.0f - mean[c]) / stdv[c];
            for (int i = 0; i < S * S; i++) ck_assert_float_eq(out[c * S * S + i], want);
        }
        free(out);
    }
    float bad_std[3] = {1, 0, 1}, dummy[3];
    ck_assert_int_eq(sac_image_preprocess(&img, 1, mean, bad_std, dummy), SAC_ERR_INVALID);
    ck_assert_int_eq(sac_image_preprocess(&img, 0, mean, stdv, dummy), SAC_ERR_INVALID);
    sac_image_free(&img);
}
END_TEST

START_TEST(test_preprocess_gradient)
{
    /* left-right ramp, wider than tall: squashed (not cropped) to S x S, still a ramp whose
     * ends are near the original ends, every row the same */
    const int w = 90, h = 20, S = 30;
    SacImage img;
    ck_assert_int_eq(sac_image_alloc(&img, w, h, 0), SAC_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                img.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(c == 2 ? 255 - x * 255 / (w - 1)
                                                                        : x * 255 / (w - 1));
    const float mean[3] = {0.5f, 0.5f, 0.5f}, stdv[3] = {0.5f, 0.5f, 0.5f};
    float *out = malloc(sizeof(float) * 3 * S * S);
    ck_assert_int_eq(sac_image_preprocess(&img, S, mean, stdv, out), SAC_OK);
    for (int c = 0; c < 3; c++) {
        const float *pl = out + c * S * S;
        for (int y = 0; y < S; y++) {
            for (int x = 1; x < S; x++) {
                float d = pl[y * S + x] - pl[y * S + x - 1];
                if (c == 2) d = -d;
                ck_assert_msg(d > 0.0f, "channel %d row %d: not increasing at x = %d", c, y, x);
            }
            ck_assert_float_eq(pl[y * S], pl[0]);
        }
        /* the ramp spans [-1, 1]; ends within ~2 source pixels of the extremes */
        float lo = c == 2 ? pl[S - 1] : pl[0], hi = c == 2 ? pl[0] : pl[S - 1];
        ck_assert_float_lt(lo, -0.85f);
        ck_assert_float_gt(hi, 0.85f);
    }
    /* the horizontal flip of the image = the flip of the tensor */
    float *flipped = malloc(sizeof(float) * 3 * S * S);
    sac_image_flip_horizontal(&img);
    ck_assert_int_eq(sac_image_preprocess(&img, S, mean, stdv, flipped), SAC_OK);
    sac_tensor_flip_horizontal(out, 3, S, S);
    for (int i = 0; i < 3 * S * S; i++) ck_assert_float_eq_tol(flipped[i], out[i], 1e-5f);
    free(out), free(flipped);
    sac_image_free(&img);
}
END_TEST

START_TEST(test_flip_resize_write)
{
    const int w = 5, h = 3;
    SacImage img;
    ck_assert_int_eq(sac_image_alloc(&img, w, h, 0), SAC_OK);
    uint8_t *ref = pattern_rgb(w, h);
    memcpy(img.rgb, ref, (size_t)w * h * 3);
    sac_image_flip_horizontal(&img);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            ck_assert_mem_eq(img.rgb + (y * w + x) * 3, ref + (y * w + (w - 1 - x)) * 3, 3);
    sac_image_flip_horizontal(&img);
    ck_assert_mem_eq(img.rgb, ref, (size_t)w * h * 3);

    /* PNG round trip is exact */
    const char *p = tmp_path("out.png");
    ck_assert_int_eq(sac_image_write_png(p, &img), SAC_OK);
    SacImage back;
    ck_assert_int_eq(sac_image_load(p, &back, 0), SAC_OK);
    ck_assert_int_eq(back.w, w);
    ck_assert_mem_eq(back.rgb, ref, (size_t)w * h * 3);
    sac_image_free(&back);
    ck_assert_int_eq(sac_image_write_png("/nonexistent-dir/x.png", &img), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(last_msg, "/nonexistent-dir/x.png"));
    /* a full disk is an error, not a truncated PNG reported as written */
    ck_assert_int_eq(sac_image_write_png("/dev/full", &img), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(last_msg, "/dev/full"));

    /* resize: sizes, an identity copy, a 2x2 constant block stays constant */
    SacImage r;
    ck_assert_int_eq(sac_image_resize(&img, 11, 4, &r), SAC_OK);
    ck_assert_int_eq(r.w, 11);
    ck_assert_int_eq(r.h, 4);
    sac_image_free(&r);
    ck_assert_int_eq(sac_image_resize(&img, w, h, &r), SAC_OK);
    ck_assert_mem_eq(r.rgb, ref, (size_t)w * h * 3);
    sac_image_free(&r);
    ck_assert_int_eq(sac_image_resize(&img, 0, 4, &r), SAC_ERR_INVALID);
    ck_assert_ptr_null(r.rgb);
    SacImage empty = {0};
    ck_assert_int_eq(sac_image_resize(&empty, 4, 4, &r), SAC_ERR_INVALID);
    sac_image_free(&img);
    free(ref);
}
END_TEST

/* ---- scaled JPEG decoding (libjpeg-turbo, sac_image_load_scaled) ------------------------- */

/* A w x h photo-like RGB image: smooth colour gradients, a few hard-edged discs, grain of
 * +-4 levels (seeded), so the comparison with the full decode sees edges and texture. */
static uint8_t *photo_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    SacRng rng;
    sac_rng_seed(&rng, 11, 1);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            float u = (float)x / w, v = (float)y / h;
            float rgb[3] = {40 + 180 * u, 60 + 150 * v, 200 - 120 * u * v};
            for (int d = 0; d < 4; d++) { /* discs at (0.2 + 0.2 d, 0.3 + 0.1 d), radius 0.08 */
                float dx = u - (0.2f + 0.2f * d), dy = v - (0.3f + 0.1f * d);
                if (dx * dx + dy * dy < 0.0064f) rgb[0] = 230 - 50 * d, rgb[1] = 30 + 60 * d, rgb[2] = 20;
            }
            for (int c = 0; c < 3; c++) {
                int q = (int)rgb[c] + (int)(sac_rng_u32(&rng) % 9) - 4;
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
            }
        }
    }
    return p;
}

/* photo_rgb as a quality-90 JPEG (stb_image_write: baseline, 4:2:0), with an Exif APP1 of
 * orientation o spliced in after SOI when o > 0. */
static Bytes photo_jpeg(int w, int h, int orientation)
{
    uint8_t *px = photo_rgb(w, h);
    Bytes j = {0}, out = {0};
    ck_assert(stbi_write_jpg_to_func(bytes_write_fn, &j, w, h, 3, px, 90));
    free(px);
    bytes_put(&out, j.p, 2);
    if (orientation) exif_segment(&out, orientation, 1);
    bytes_put(&out, j.p + 2, j.n - 2);
    free(j.p);
    return out;
}

/* Mean |a - b| over two images of the same size. */
static double mean_abs_diff(const SacImage *a, const SacImage *b)
{
    ck_assert_int_eq(a->w, b->w);
    ck_assert_int_eq(a->h, b->h);
    double sum = 0;
    for (size_t i = 0; i < (size_t)a->w * a->h * 3; i++) sum += abs((int)a->rgb[i] - (int)b->rgb[i]);
    return sum / ((double)a->w * a->h * 3);
}

START_TEST(test_scaled_jpeg)
{
    /* the scale: the largest of 8, 4, 2 keeping both sides >= min_side (ceil(side / d)) */
    ck_assert_int_eq(sac_jpeg_scale_denom(4000, 3000, 224), 8);  /* 500 x 375 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 128), 8);  /* 200 x 150 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 224), 4);  /* 400 x 300; 1/8: 150 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 300), 4);  /* exactly 300 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 301), 2);
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 601), 1);
    ck_assert_int_eq(sac_jpeg_scale_denom(224, 224, 128), 1);    /* the Flickr8k photos at S = 128 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1601, 1201, 201), 4);  /* ceil: 201 x 151 at 1/8 */
    ck_assert_int_eq(sac_jpeg_scale_denom(1600, 1200, 0), 1);

    const int W = 1600, H = 1200;
    Bytes j = photo_jpeg(W, H, 0);
    SacImage full = {0}, part = {0}, a = {0}, b = {0};
    ck_assert_int_eq(sac_image_load_memory(j.p, j.n, "big.jpg", &full, 0), SAC_OK);
    ck_assert_int_eq(full.w, W);
    ck_assert_int_eq(full.h, H);
    const int sides[2] = {128, 224}, want_w[2] = {200, 400}, want_h[2] = {150, 300};
    for (int k = 0; k < 2; k++) {
        const int S = sides[k];
        ck_assert_int_eq(sac_image_load_memory_scaled(j.p, j.n, "big.jpg", S, &part, 0), SAC_OK);
        ck_assert_int_eq(part.w, want_w[k]);
        ck_assert_int_eq(part.h, want_h[k]);
        /* The model's input both ways: the full decode resized, the scaled decode resized. They
         * differ by the decoders (libjpeg-turbo's scaled IDCT averages each block where
         * stb_image's full IDCT and Mitchell filter weigh the pixels) and the grain: measured
         * 0.26 (S = 128) and 0.19 (S = 224) levels of 255 on this image; the bound leaves room
         * for other libjpeg-turbo versions. A wrong scale, a shifted or mirrored image, or
         * swapped channels give tens. */
        ck_assert_int_eq(sac_image_resize(&full, S, S, &a), SAC_OK);
        ck_assert_int_eq(sac_image_resize(&part, S, S, &b), SAC_OK);
        double mad = mean_abs_diff(&a, &b);
        ck_assert_msg(mad < 1.0, "S = %d: mean |full - scaled| = %.3f levels, expected < 1", S, mad);
        sac_image_free(&a), sac_image_free(&b), sac_image_free(&part);
    }
    /* min_side 0, or a side no scale fits: stb_image's full decode, bit for bit */
    ck_assert_int_eq(sac_image_load_memory_scaled(j.p, j.n, "big.jpg", 0, &part, 0), SAC_OK);
    ck_assert_int_eq(mean_abs_diff(&full, &part) == 0.0, 1);
    sac_image_free(&part);
    ck_assert_int_eq(sac_image_load_memory_scaled(j.p, j.n, "big.jpg", 700, &part, 0), SAC_OK);
    ck_assert_int_eq(mean_abs_diff(&full, &part) == 0.0, 1);
    sac_image_free(&part);
    /* from a file, the same pixels as from memory */
    write_bytes(tmp_path("big.jpg"), j.p, j.n);
    SacImage mem = {0};
    ck_assert_int_eq(sac_image_load_scaled(tmp_path("big.jpg"), 224, &part, 0), SAC_OK);
    ck_assert_int_eq(sac_image_load_memory_scaled(j.p, j.n, "big.jpg", 224, &mem, 0), SAC_OK);
    ck_assert_int_eq(mean_abs_diff(&mem, &part) == 0.0, 1);
    sac_image_free(&mem), sac_image_free(&part);
    /* the pixel limit is the full size's: 1600 x 1200 is refused at 1 Mpixel, scaled or not */
    expect_error(sac_image_load_memory_scaled(j.p, j.n, "big.jpg", 128, &part, 1000000),
                 SAC_ERR_UNSUPPORTED, "big.jpg", "1600 x 1200");
    ck_assert_ptr_null(part.rgb);
    /* other formats are decoded in full whatever min_side says */
    uint8_t *px = photo_rgb(640, 480);
    ck_assert(stbi_write_png(tmp_path("big.png"), 640, 480, 3, px, 640 * 3));
    ck_assert_int_eq(sac_image_load_scaled(tmp_path("big.png"), 64, &part, 0), SAC_OK);
    ck_assert_int_eq(part.w, 640);
    ck_assert_int_eq(part.h, 480);
    sac_image_free(&part);
    free(px);
    sac_image_free(&full);
    free(j.p);
}
END_TEST

/* EXIF orientation is applied to the scaled decode as to the full one. */
START_TEST(test_scaled_jpeg_orientation)
{
    const int W = 1024, H = 512;
    for (int o = 1; o <= 8; o++) {
        /* a red 128 x 128 block in the stored top-left corner of a grey image */
        uint8_t *px = malloc((size_t)W * H * 3);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = px + ((size_t)y * W + x) * 3;
                int red = x < 128 && y < 128;
                p[0] = red ? 255 : 128, p[1] = red ? 0 : 128, p[2] = red ? 0 : 128;
            }
        Bytes j = {0}, out = {0};
        ck_assert(stbi_write_jpg_to_func(bytes_write_fn, &j, W, H, 3, px, 90));
        free(px);
        bytes_put(&out, j.p, 2);
        exif_segment(&out, o, o % 2);
        bytes_put(&out, j.p + 2, j.n - 2);
        free(j.p);
        SacImage full = {0}, part = {0}, small = {0};
        ck_assert_int_eq(sac_image_load_memory(out.p, out.n, "o.jpg", &full, 0), SAC_OK);
        ck_assert_int_eq(sac_image_load_memory_scaled(out.p, out.n, "o.jpg", 64, &part, 0), SAC_OK);
        /* 1/8: 128 x 64 stored, displayed as the full decode is, w and h swapped for 5..8 */
        ck_assert_int_eq(part.w * 8, full.w);
        ck_assert_int_eq(part.h * 8, full.h);
        ck_assert_int_eq(full.w, o >= 5 ? H : W);
        /* the red block lands in the same corner: the full decode shrunk to the scaled size
         * agrees with it (measured 0.13 levels for every orientation; a block in the wrong
         * corner costs > 10) */
        ck_assert_int_eq(sac_image_resize(&full, part.w, part.h, &small), SAC_OK);
        double mad = mean_abs_diff(&small, &part);
        ck_assert_msg(mad < 1.0, "orientation %d: mean |full - scaled| = %.3f, expected < 1", o, mad);
        int corners = is_red(&part, 4, 4) + is_red(&part, part.w - 5, 4) + is_red(&part, 4, part.h - 5) +
                      is_red(&part, part.w - 5, part.h - 5);
        ck_assert_msg(corners == 1, "orientation %d: %d red corners, expected 1", o, corners);
        ck_assert_int_eq(is_red(&part, 4, 4), is_red(&small, 4, 4));
        ck_assert_int_eq(is_red(&part, part.w - 5, part.h - 5), is_red(&small, small.w - 5, small.h - 5));
        sac_image_free(&full), sac_image_free(&part), sac_image_free(&small);
        free(out.p);
    }
}
END_TEST

/* Damaged large JPEGs are still refused, scaled or not, with the file named. */
START_TEST(test_scaled_jpeg_rejects)
{
    SacImage img = {0};
    Bytes j = photo_jpeg(1600, 1200, 0);
    write_bytes(tmp_path("cut.jpg"), j.p, j.n * 6 / 10);
    const char *cut = tmp_path("cut.jpg");
    expect_error(sac_image_load_scaled(cut, 128, &img, 0), SAC_ERR_FORMAT, cut, "truncated");
    ck_assert_ptr_null(img.rgb);
    /* every scan byte there but the end marker: libjpeg-turbo warns, stb_image refuses, the
     * message gives both */
    write_bytes(tmp_path("noeoi.jpg"), j.p, j.n - 2);
    const char *noeoi = tmp_path("noeoi.jpg");
    expect_error(sac_image_load_scaled(noeoi, 128, &img, 0), SAC_ERR_FORMAT, noeoi, "libjpeg-turbo");
    ck_assert_ptr_null(img.rgb);
    /* scan data overwritten with 0xFF 0xD9 halfway: libjpeg-turbo warns ("premature end"), so
     * stb_image decodes it in full and decides as it always has (it pads the missing half:
     * the file holds more than a bit per block, image_check.c's bound): the same status and
     * pixels as sac_image_load_memory */
    Bytes bad = {0};
    bytes_put(&bad, j.p, j.n);
    size_t sos = find_marker(&bad, 0xDA);
    size_t mid = sos + (bad.n - sos) / 2;
    bad.p[mid] = 0xFF, bad.p[mid + 1] = 0xD9;
    SacImage ref = {0};
    int st_full = sac_image_load_memory(bad.p, bad.n, "half.jpg", &ref, 0);
    ck_assert_int_eq(sac_image_load_memory_scaled(bad.p, bad.n, "half.jpg", 128, &img, 0), st_full);
    ck_assert_int_eq(img.w, ref.w);
    ck_assert_int_eq(img.h, ref.h);
    if (img.rgb) ck_assert_int_eq(mean_abs_diff(&img, &ref) == 0.0, 1);
    sac_image_free(&img), sac_image_free(&ref);
    /* a Huffman table with three codes of length 1 (image_check.c's DHT guard) */
    memcpy(bad.p, j.p, j.n);
    size_t dht = find_marker(&bad, 0xC4);
    bad.p[dht + 5] = 3; /* the first table's count of 1-bit codes */
    expect_error(sac_image_load_memory_scaled(bad.p, bad.n, "dht.jpg", 128, &img, 0), SAC_ERR_FORMAT,
                 "dht.jpg", "Huffman");
    ck_assert_ptr_null(img.rgb);
    free(bad.p);
    free(j.p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image");
    const TTest *tests[] = {test_lossless_formats, test_jpeg_and_hdr, test_gray_and_alpha, test_16bit,
        test_paletted, test_exif_orientation_jpeg, test_orient_all_eight, test_errors, test_not_regular_files,
        test_jpeg_bad_huffman_tables, test_size_claims_beyond_data, test_psd_claims_beyond_data, test_pic_refused,
        test_pnm_header_overflow, test_psd_channels, test_png_empty_first_idat, test_png_chunk_past_end,
        test_jpeg_undefined_tables, test_preprocess_constant, test_preprocess_gradient, test_flip_resize_write,
        test_scaled_jpeg, test_scaled_jpeg_orientation, test_scaled_jpeg_rejects, NULL};
    TCase *tc = check_case(s, "image", 0, tests);
    tcase_add_checked_fixture(tc, setup, teardown);
    return check_run(s);
}
