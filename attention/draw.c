/*
 * draw.c - attention maps over the photo: a bilinear, half-pixel-correct upsampler, a light
 * Gaussian blur, the inferno-like colour map, text (stb_truetype with a TrueType font found at
 * run time, stb_easy_font quads as the fallback) and the panel figure with its colour bar.
 *
 * Size letters: T caption steps (words), P grid positions = Hg * Wg (grid_h * grid_w).
 * Reference for the sampling: PyTorch F.interpolate(mode="bilinear", align_corners=False).
 */
#include "draw.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "sac.h"

/* stb_easy_font is header-only with static functions; some are unused here. stb_truetype's
 * implementation lives in this file only (its functions are static). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb_easy_font.h>
#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb_truetype.h>
#pragma GCC diagnostic pop

#define DRAW_MAX_WORD 64         /* characters drawn per label */
#define DRAW_MAX_T 100000        /* sanity bound on the number of panels */
#define DRAW_FONT_MAX (64 << 20) /* largest font file read */

/* ---- fonts ------------------------------------------------------------------------------ */

struct AttentionFont {
    uint8_t *data;
    stbtt_fontinfo info;
    int ascent, descent; /* unscaled */
};

AttentionFont *attention_font_load(const char *path)
{
    AttentionFont *f = sac_calloc(1, sizeof(*f));
    if (!f) return NULL;
    size_t len = 0;
    if (sac_read_file(path, DRAW_FONT_MAX, &f->data, &len)) goto fail; /* logged, naming the path */
    int off = len >= 12 ? stbtt_GetFontOffsetForIndex(f->data, 0) : -1;
    if (off < 0 || !stbtt_InitFont(&f->info, f->data, off) || !stbtt_FindGlyphIndex(&f->info, 'a')) {
        sac_error("%s: not a TrueType font with Latin letters (%zu bytes)", path, len);
        goto fail;
    }
    int gap;
    stbtt_GetFontVMetrics(&f->info, &f->ascent, &f->descent, &gap);
    if (f->ascent - f->descent <= 0) {
        sac_error("%s: font ascent %d, descent %d: expected ascent > descent", path, f->ascent, f->descent);
        goto fail;
    }
    return f;
fail:
    attention_font_free(f);
    return NULL;
}

void attention_font_free(AttentionFont *f)
{
    if (!f) return;
    free(f->data);
    free(f);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static AttentionFont *default_font;

static void default_font_find(void)
{
    static const char *const paths[] = {ATTENTION_FONT_PATHS};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && !default_font; i++) {
        FILE *probe = fopen(paths[i], "rb"); /* absent paths are not errors: look quietly */
        if (!probe) continue;
        fclose(probe);
        default_font = attention_font_load(paths[i]); /* a broken file is worth a message */
    }
}

const AttentionFont *attention_font_default(void)
{
    pthread_once(&default_once, default_font_find);
    return default_font;
}

const char *attention_font_default_note(void)
{
    return "no DejaVuSans.ttf in /usr/share/fonts (apt-get install fonts-dejavu-core): labels are drawn "
           "with the built-in bitmap font";
}

/* ---- text ------------------------------------------------------------------------------- */

/* The next code point of UTF-8 text at *s (advancing *s); an invalid byte gives '?'. */
static int next_codepoint(const char **s)
{
    const unsigned char *p = (const unsigned char *)*s;
    int c = p[0], n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    if (n < 0) {
        *s += 1;
        return '?';
    }
    int cp = n == 0 ? c : c & (0x3f >> n);
    for (int k = 1; k <= n; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            *s += 1;
            return '?';
        }
        cp = cp << 6 | (p[k] & 0x3f);
    }
    static const int min_cp[4] = {0, 0x80, 0x800, 0x10000};
    *s += n + 1;
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return '?';
    return cp;
}

/* The bitmap font's integer scale for text px high (its glyphs span 9 rows at scale 1, descenders
 * included). */
static int bitmap_scale(int px)
{
    int s = (px + 2) / 9;
    return s < 1 ? 1 : s;
}

/* ASCII copy of text for the bitmap font (others as '?'), at most DRAW_MAX_WORD characters. */
static void bitmap_text(const char *text, char out[DRAW_MAX_WORD + 1])
{
    size_t n = 0;
    while (*text && n < DRAW_MAX_WORD) {
        int cp = next_codepoint(&text);
        out[n++] = cp >= 32 && cp <= 126 ? (char)cp : '?';
    }
    out[n] = 0;
}

/* A code point the font can draw ('?' otherwise). */
static int font_glyph(const AttentionFont *f, int cp)
{
    return stbtt_FindGlyphIndex(&f->info, cp) ? cp : '?';
}

int attention_text_width(const AttentionFont *font, const char *text, int px)
{
    if (!text) return 0;
    if (!font) {
        char buf[DRAW_MAX_WORD + 1];
        bitmap_text(text, buf);
        return stb_easy_font_width(buf) * bitmap_scale(px);
    }
    float scale = (float)px / (float)(font->ascent - font->descent);
    float x = 0;
    int prev = 0;
    while (*text) {
        int cp = font_glyph(font, next_codepoint(&text)), adv, lsb;
        if (prev) x += scale * stbtt_GetCodepointKernAdvance(&font->info, prev, cp);
        stbtt_GetCodepointHMetrics(&font->info, cp, &adv, &lsb);
        x += scale * adv;
        prev = cp;
    }
    return (int)ceilf(x);
}

static void blend_pixel(SacImage *img, int x, int y, const uint8_t rgb[3], int a /* 0..255 */)
{
    uint8_t *d = img->rgb + ((size_t)y * img->w + x) * 3;
    for (int c = 0; c < 3; c++) d[c] = (uint8_t)((d[c] * (255 - a) + rgb[c] * a + 127) / 255);
}

static void bitmap_draw(SacImage *img, const char *text, int x0, int y, int px, int x_max, const uint8_t rgb[3])
{
    char buf[DRAW_MAX_WORD + 1];
    bitmap_text(text, buf);
    int scale = bitmap_scale(px);
    /* each quad: 4 vertices of {x, y, z, rgba}; ~270 bytes per character */
    static const int vbuf_floats = (DRAW_MAX_WORD + 1) * 300 / 4;
    float vbuf[(DRAW_MAX_WORD + 1) * 300 / 4];
    int quads = stb_easy_font_print(0, 0, buf, NULL, vbuf, (int)sizeof(vbuf));
    SAC_ASSERT(quads * 16 <= vbuf_floats);
    /* glyphs span rows 0..9 of 7-row capitals: centre them vertically in px */
    int yoff = y + (px - 9 * scale) / 2;
    for (int q = 0; q < quads; q++) {
        const float *v = vbuf + q * 16;
        float qx0 = v[0], qx1 = v[0], qy0 = v[1], qy1 = v[1];
        for (int k = 1; k < 4; k++) {
            qx0 = fminf(qx0, v[k * 4]), qx1 = fmaxf(qx1, v[k * 4]);
            qy0 = fminf(qy0, v[k * 4 + 1]), qy1 = fmaxf(qy1, v[k * 4 + 1]);
        }
        int px0 = x0 + (int)lroundf(qx0 * scale), px1 = x0 + (int)lroundf(qx1 * scale);
        int py0 = yoff + (int)lroundf(qy0 * scale), py1 = yoff + (int)lroundf(qy1 * scale);
        px0 = SAC_MAX(px0, 0), px1 = SAC_MIN(px1, SAC_MIN(x_max, img->w));
        py0 = SAC_MAX(py0, 0), py1 = SAC_MIN(py1, img->h);
        for (int yy = py0; yy < py1; yy++)
            for (int xx = px0; xx < px1; xx++) blend_pixel(img, xx, yy, rgb, 255);
    }
}

int attention_text_draw(SacImage *img, const AttentionFont *font, const char *text, int x, int y, int px,
                        int x_max, const uint8_t rgb[3])
{
    if (!text || px < 1) return SAC_OK;
    x_max = SAC_MIN(x_max, img->w);
    if (!font) {
        bitmap_draw(img, text, x, y, px, x_max, rgb);
        return SAC_OK;
    }
    float scale = (float)px / (float)(font->ascent - font->descent);
    int baseline = y + (int)lroundf(scale * font->ascent);
    float pen = (float)x;
    int prev = 0;
    while (*text) {
        int cp = font_glyph(font, next_codepoint(&text)), adv, lsb;
        if (prev) pen += scale * stbtt_GetCodepointKernAdvance(&font->info, prev, cp);
        stbtt_GetCodepointHMetrics(&font->info, cp, &adv, &lsb);
        int gw = 0, gh = 0, gx = 0, gy = 0;
        float shift = pen - floorf(pen);
        uint8_t *bm = stbtt_GetCodepointBitmapSubpixel(&font->info, scale, scale, shift, 0, cp, &gw, &gh, &gx, &gy);
        if (!bm && gw > 0 && gh > 0) return SAC_ERR_NOMEM;
        int ox = (int)floorf(pen) + gx, oy = baseline + gy;
        for (int yy = 0; yy < gh; yy++) {
            int ty = oy + yy;
            if (ty < 0 || ty >= img->h) continue;
            for (int xx = 0; xx < gw; xx++) {
                int tx = ox + xx, a = bm[yy * gw + xx];
                if (tx >= 0 && tx < x_max && a) blend_pixel(img, tx, ty, rgb, a);
            }
        }
        stbtt_FreeBitmap(bm, NULL);
        pen += scale * adv;
        prev = cp;
    }
    return SAC_OK;
}

/* Draw text centred in [x_lo, x_lo + box_w) at height px, shrunk down to 3/4 px to fit, then
 * cut (whole code points) to fit. */
static int draw_label(SacImage *dst, const AttentionFont *font, const char *word, int x_lo, int box_w, int y,
                      int px, const uint8_t rgb[3])
{
    char text[DRAW_MAX_WORD * 4 + 1];
    size_t n = 0;
    for (const char *s = word; s && *s && n < DRAW_MAX_WORD * 4;) { /* whole code points only */
        const char *start = s;
        next_codepoint(&s);
        if (n + (size_t)(s - start) > DRAW_MAX_WORD * 4) break;
        memcpy(text + n, start, (size_t)(s - start));
        n += (size_t)(s - start);
    }
    text[n] = 0;
    int size = px, min_size = SAC_MAX(1, (3 * px + 3) / 4);
    while (size > min_size && attention_text_width(font, text, size) > box_w) size--;
    while (n > 0 && attention_text_width(font, text, size) > box_w) {
        while (n > 0 && ((unsigned char)text[n - 1] & 0xc0) == 0x80) n--; /* continuation bytes */
        if (n > 0) n--;
        text[n] = 0;
    }
    if (n == 0) return SAC_OK;
    int x0 = x_lo + (box_w - attention_text_width(font, text, size)) / 2;
    return attention_text_draw(dst, font, text, x0, y + (px - size) / 2, size, x_lo + box_w, rgb);
}

/* ---- maps ------------------------------------------------------------------------------- */

/* src = (dst + 0.5) * n_src / n_dst - 0.5, clamped to [0, n_src - 1]: lower index and weight. */
static void upsample_coord(int dst, int n_dst, int n_src, int *i0, int *i1, float *f)
{
    double s = ((double)dst + 0.5) * n_src / n_dst - 0.5;
    if (s < 0) s = 0;
    if (s > n_src - 1) s = n_src - 1;
    int lo = (int)s;
    *i0 = lo;
    *i1 = lo + 1 < n_src ? lo + 1 : lo;
    *f = (float)(s - lo);
}

void attention_upsample(const float *map /* (Hg, Wg) */, int grid_h, int grid_w,
                        float *out /* (H, W) */, int H, int W)
{
    SAC_ASSERT(grid_h >= 1 && grid_w >= 1 && H >= 1 && W >= 1);
    for (int y = 0; y < H; y++) {
        int y0, y1;
        float fy;
        upsample_coord(y, H, grid_h, &y0, &y1, &fy);
        const float *r0 = map + (size_t)y0 * grid_w, *r1 = map + (size_t)y1 * grid_w;
        for (int x = 0; x < W; x++) {
            int x0, x1;
            float fx;
            upsample_coord(x, W, grid_w, &x0, &x1, &fx);
            float top = r0[x0] + fx * (r0[x1] - r0[x0]);
            float bot = r1[x0] + fx * (r1[x1] - r1[x0]);
            out[(size_t)y * W + x] = top + fy * (bot - top);
        }
    }
}

#define BLUR_MAX_RADIUS 40 /* 3 * ceil(ATTENTION_BLUR_MAX) + 4 */

/* One pass: dst[i] = sum_k w[k] src[clamp(i + k - r)] along n elements of stride s, for each of
 * m lines (line stride ls). */
static void blur_pass(float *dst, const float *src, int n, int s, int m, int ls, const float *w, int r)
{
    for (int l = 0; l < m; l++) {
        const float *in = src + (size_t)l * ls;
        float *out = dst + (size_t)l * ls;
        for (int i = 0; i < n; i++) {
            float acc = 0;
            for (int k = -r; k <= r; k++) {
                int j = i + k;
                j = j < 0 ? 0 : j >= n ? n - 1 : j;
                acc += w[k + r] * in[(size_t)j * s];
            }
            out[(size_t)i * s] = acc;
        }
    }
}

void attention_blur(float *x /* (H, W) */, int H, int W, float sigma, float *tmp /* (H, W) */)
{
    if (!(sigma > 0)) return;
    if (sigma > ATTENTION_BLUR_MAX) sigma = ATTENTION_BLUR_MAX;
    int r = (int)ceilf(3.0f * sigma);
    SAC_ASSERT(r <= BLUR_MAX_RADIUS);
    float w[2 * BLUR_MAX_RADIUS + 1], sum = 0;
    for (int k = -r; k <= r; k++) sum += w[k + r] = expf(-0.5f * (float)(k * k) / (sigma * sigma));
    for (int k = 0; k <= 2 * r; k++) w[k] /= sum;
    blur_pass(tmp, x, W, 1, H, W, w, r); /* rows */
    blur_pass(x, tmp, H, W, W, 1, w, r); /* columns */
}

/* Normalise one map by its maximum into [0, 1]; negative and non-finite values become 0. */
static void normalise_map(const float *a, int P, float *m)
{
    float mx = 0.0f;
    for (int p = 0; p < P; p++) {
        float v = isfinite(a[p]) && a[p] > 0.0f ? a[p] : 0.0f;
        m[p] = v;
        mx = v > mx ? v : mx;
    }
    float inv = mx > 0.0f ? 1.0f / mx : 0.0f;
    for (int p = 0; p < P; p++) m[p] *= inv;
}

int attention_smooth_map(const float *map /* (Hg, Wg) */, int grid_h, int grid_w, float *out /* (H, W) */,
                         int H, int W)
{
    if (grid_h < 1 || grid_w < 1 || grid_h > 4096 || grid_w > 4096 || H < 1 || W < 1 || !map) {
        sac_error("attention map: grid %d x %d onto %d x %d: expected sides >= 1 (grid <= 4096)", grid_h, grid_w,
                  H, W);
        return SAC_ERR_INVALID;
    }
    size_t P = (size_t)grid_h * grid_w;
    float *grid = sac_malloc(sizeof(float) * P), *tmp = sac_malloc(sizeof(float) * (size_t)H * W);
    if (!grid || !tmp) {
        free(grid), free(tmp);
        return SAC_ERR_NOMEM;
    }
    normalise_map(map, (int)P, grid);
    attention_upsample(grid, grid_h, grid_w, out, H, W);
    float cell = fminf((float)H / grid_h, (float)W / grid_w);
    attention_blur(out, H, W, 0.25f * cell, tmp);
    float mx = 0.0f;
    for (size_t k = 0; k < (size_t)H * W; k++) mx = fmaxf(mx, out[k]);
    float inv = mx > 0.0f ? 1.0f / mx : 0.0f;
    for (size_t k = 0; k < (size_t)H * W; k++) out[k] = fminf(1.0f, fmaxf(0.0f, out[k] * inv));
    free(grid), free(tmp);
    return SAC_OK;
}

void attention_colour(float m, uint8_t rgb[3])
{
    /* matplotlib's inferno at 0, 1/8, ..., 1 */
    static const uint8_t stops[9][3] = {{0, 0, 4},      {31, 12, 72},  {85, 15, 109},
                                        {136, 34, 106}, {186, 54, 85}, {227, 89, 51},
                                        {249, 140, 10}, {249, 201, 50}, {252, 255, 164}};
    m = isfinite(m) ? fminf(1.0f, fmaxf(0.0f, m)) : 0.0f;
    float s = m * 8.0f;
    int i = (int)s;
    if (i > 7) i = 7;
    float f = s - (float)i;
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)lroundf(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
}

void attention_overlay(SacImage *dst, int ox, int oy, const SacImage *photo, const float *m /* (H, W) */)
{
    for (int y = 0; y < photo->h; y++) {
        for (int x = 0; x < photo->w; x++) {
            float a = m[(size_t)y * photo->w + x];
            uint8_t heat[3];
            attention_colour(a, heat);
            const uint8_t *p = photo->rgb + ((size_t)y * photo->w + x) * 3;
            uint8_t *d = dst->rgb + ((size_t)(oy + y) * dst->w + ox + x) * 3;
            for (int c = 0; c < 3; c++) {
                float v = (1.0f - 0.5f * a) * p[c] * (0.3f + 0.7f * a) + 0.5f * a * heat[c];
                d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
            }
        }
    }
}

/* ---- the figure ------------------------------------------------------------------------- */

AttentionDrawOptions attention_draw_defaults(void)
{
    AttentionDrawOptions o = {256, 6, 1, NULL, attention_font_default()};
    return o;
}

void attention_panel_size(int photo_w, int photo_h, int panel_size, int *pw, int *ph)
{
    if (photo_w >= photo_h) {
        *pw = panel_size;
        *ph = (int)SAC_MAX(1, ((int64_t)panel_size * photo_h * 2 + photo_w) / (2 * (int64_t)photo_w));
    } else {
        *ph = panel_size;
        *pw = (int)SAC_MAX(1, ((int64_t)panel_size * photo_w * 2 + photo_h) / (2 * (int64_t)photo_h));
    }
}

int attention_draw_text_px(int panel_size)
{
    int s = panel_size / 16;
    return s < 12 ? 12 : s > 40 ? 40 : s;
}

static int label_height(int s, const AttentionDrawOptions *o)
{
    return 3 * s / 2 + (o->word_logprob ? 5 * s / 4 : 0);
}

int attention_draw_size(int photo_w, int photo_h, int T, const AttentionDrawOptions *o, int *w, int *h)
{
    if (T < 0 || T > DRAW_MAX_T || photo_w < 1 || photo_h < 1 || o->panel_size < 16 || o->panel_size > 4096 ||
        o->columns < 1) {
        sac_error("attention draw: T = %d, photo %d x %d, panel_size = %d, columns = %d: expected T in 0..%d, "
                  "a photo, panel_size in 16..4096, columns >= 1",
                  T, photo_w, photo_h, o->panel_size, o->columns, DRAW_MAX_T);
        return SAC_ERR_INVALID;
    }
    int pw, ph;
    attention_panel_size(photo_w, photo_h, o->panel_size, &pw, &ph);
    int n = T + 1, c = SAC_MIN(o->columns, n), r = (n + c - 1) / c, m = ATTENTION_DRAW_MARGIN;
    int s = attention_draw_text_px(o->panel_size), L = label_height(s, o), G = o->legend ? 2 * s + m : 0;
    int64_t ww = (int64_t)c * pw + (int64_t)(c + 1) * m;
    int64_t hh = (int64_t)r * (ph + L) + (int64_t)(r + 1) * m + G;
    if (ww > (1 << 24) || hh > (1 << 24)) {
        sac_error("attention draw: a %lld x %lld figure is too large, expected sides <= %d", (long long)ww,
                  (long long)hh, 1 << 24);
        return SAC_ERR_INVALID;
    }
    *w = (int)ww;
    *h = (int)hh;
    return SAC_OK;
}

static void draw_copy_panel(SacImage *dst, int ox, int oy, const SacImage *photo)
{
    for (int y = 0; y < photo->h; y++)
        memcpy(dst->rgb + ((size_t)(oy + y) * dst->w + ox) * 3, photo->rgb + (size_t)y * photo->w * 3,
               (size_t)photo->w * 3);
}

/* The colour bar at (x, y) in a w-wide box: "low", the bar, "high"; below it what it means. */
static int draw_legend(SacImage *img, const AttentionFont *font, int x, int y, int w, int s)
{
    static const uint8_t ink[3] = {40, 40, 40}, grey[3] = {90, 90, 90};
    int px = SAC_MAX(11, 3 * s / 4), x_max = x + w;
    int lo_w = attention_text_width(font, "low", px), hi_w = attention_text_width(font, "high", px);
    int bar_w = SAC_MIN(10 * s, w - lo_w - hi_w - s), bar_h = s / 2;
    int st = attention_text_draw(img, font, "low", x, y + (s - px) / 2, px, x_max, ink);
    if (bar_w >= 16) {
        int bx = x + lo_w + s / 2, by = y + (s - bar_h) / 2;
        for (int i = 0; i < bar_w && bx + i < img->w; i++) {
            uint8_t rgb[3];
            attention_colour((float)i / (float)(bar_w - 1), rgb);
            for (int j = 0; j < bar_h && by + j < img->h; j++)
                memcpy(img->rgb + ((size_t)(by + j) * img->w + bx + i) * 3, rgb, 3);
        }
        if (!st) st = attention_text_draw(img, font, "high", bx + bar_w + s / 2, y + (s - px) / 2, px, x_max, ink);
    }
    if (!st)
        st = attention_text_draw(img, font, "attention: each word's map scaled to its own peak", x, y + s + s / 8,
                                 px, x_max, grey);
    return st;
}

int attention_draw_figure(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h,
                          int grid_w, const char *const *words, const AttentionDrawOptions *o, SacImage *out)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    AttentionDrawOptions defaults = attention_draw_defaults();
    if (!o) o = &defaults;
    if (!photo || !photo->rgb || photo->w < 1 || photo->h < 1) {
        sac_error("attention draw: empty photo, expected an image with pixels");
        return SAC_ERR_INVALID;
    }
    if (grid_h < 1 || grid_w < 1 || grid_h > 4096 || grid_w > 4096 || (T > 0 && !alphas)) {
        sac_error("attention draw: grid %d x %d with %s alphas for T = %d: expected a grid of "
                  "1..4096 per side and (T, P) alphas", grid_h, grid_w, alphas ? "" : "no", T);
        return SAC_ERR_INVALID;
    }
    int W, H;
    int rc = attention_draw_size(photo->w, photo->h, T, o, &W, &H);
    if (rc) return rc;
    int pw, ph;
    attention_panel_size(photo->w, photo->h, o->panel_size, &pw, &ph);
    int P = grid_h * grid_w, n = T + 1, c = SAC_MIN(o->columns, n), m = ATTENTION_DRAW_MARGIN;
    int s = attention_draw_text_px(o->panel_size), cell_h = ph + label_height(s, o);
    static const uint8_t ink[3] = {0, 0, 0}, grey[3] = {90, 90, 90};

    SacImage panel = {0};
    float *up = NULL;
    rc = sac_image_resize(photo, pw, ph, &panel);
    if (rc) goto fail;
    rc = sac_image_alloc(out, W, H, 255);
    if (rc) goto fail;
    up = sac_malloc(sizeof(float) * (size_t)pw * ph);
    if (!up) {
        rc = SAC_ERR_NOMEM;
        goto fail;
    }
    for (int k = 0; k < n && !rc; k++) {
        int ox = m + (k % c) * (pw + m), oy = m + (k / c) * (cell_h + m);
        if (k == 0) {
            draw_copy_panel(out, ox, oy, &panel);
            continue;
        }
        rc = attention_smooth_map(alphas + (size_t)(k - 1) * P, grid_h, grid_w, up, ph, pw);
        if (rc) break;
        attention_overlay(out, ox, oy, &panel, up);
        if (words) rc = draw_label(out, o->font, words[k - 1], ox, pw, oy + ph + s / 4, s, ink);
        if (!rc && o->word_logprob) {
            double p = exp((double)o->word_logprob[k - 1]);
            char buf[32];
            if (!(p >= 0.005)) snprintf(buf, sizeof(buf), "p < 0.01");
            else snprintf(buf, sizeof(buf), "p = %.2f", p);
            rc = draw_label(out, o->font, buf, ox, pw, oy + ph + 3 * s / 2 + s / 8, 7 * s / 8, grey);
        }
    }
    if (!rc && o->legend) {
        int r = (n + c - 1) / c;
        rc = draw_legend(out, o->font, m, r * (cell_h + m) + m, W - 2 * m, s);
    }
    if (rc) goto fail;
    sac_image_free(&panel);
    free(up);
    return SAC_OK;
fail:
    sac_image_free(&panel);
    sac_image_free(out);
    free(up);
    return rc;
}

int attention_draw(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h, int grid_w,
                   const char *const *words, int panel_size, int columns, SacImage *out)
{
    AttentionDrawOptions o = attention_draw_defaults();
    o.panel_size = panel_size, o.columns = columns;
    return attention_draw_figure(photo, alphas, T, grid_h, grid_w, words, &o, out);
}
