/*
 * draw.c - attention maps over the photo: a bilinear, half-pixel-correct upsampler and the
 * panel figure (photo, then one heat-overlay panel per word, the word written under it with
 * stb_easy_font quads rasterised at an integer scale).
 *
 * Size letters: T caption steps (words), P grid positions = Hg * Wg (grid_h * grid_w).
 * Reference for the sampling: PyTorch F.interpolate(mode="bilinear", align_corners=False).
 */
#include "draw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"

/* stb_easy_font is header-only with static functions; some are unused here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

#define DRAW_MAX_WORD 64   /* characters drawn per label */
#define DRAW_MAX_T 100000  /* sanity bound on the number of panels */
#define DRAW_LABEL_H 14    /* label height per unit of text scale (glyphs span rows 0..9) */

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

int attention_draw_text_scale(int panel_size)
{
    int s = panel_size / 64;
    return s < 1 ? 1 : s > 4 ? 4 : s;
}

int attention_draw_size(int T, int panel_size, int columns, int *w, int *h)
{
    if (T < 0 || T > DRAW_MAX_T || panel_size < 16 || panel_size > 4096 || columns < 1) {
        sac_error("attention draw: T = %d, panel_size = %d, columns = %d: expected T in 0..%d, "
                  "panel_size in 16..4096, columns >= 1", T, panel_size, columns, DRAW_MAX_T);
        return SAC_ERR_INVALID;
    }
    int n = T + 1, c = SAC_MIN(columns, n), r = (n + c - 1) / c;
    int L = DRAW_LABEL_H * attention_draw_text_scale(panel_size), m = ATTENTION_DRAW_MARGIN;
    int64_t ww = (int64_t)c * panel_size + (int64_t)(c + 1) * m;
    int64_t hh = (int64_t)r * (panel_size + L) + (int64_t)(r + 1) * m;
    if (ww > (1 << 24) || hh > (1 << 24)) {
        sac_error("attention draw: a %lld x %lld figure is too large, expected sides <= %d",
                  (long long)ww, (long long)hh, 1 << 24);
        return SAC_ERR_INVALID;
    }
    *w = (int)ww;
    *h = (int)hh;
    return SAC_OK;
}

/* "hot" colour map: black -> red -> yellow -> white, luminance increasing with m in [0, 1]. */
static void heat_colour(float m, float rgb[3])
{
    for (int c = 0; c < 3; c++) {
        float v = 3.0f * m - (float)c;
        rgb[c] = 255.0f * (v < 0 ? 0 : v > 1 ? 1 : v);
    }
}

/* Blend the heat overlay of map m (H x H, in [0, 1]) over photo (H x H) into dst at (ox, oy). */
static void draw_heat_panel(SacImage *dst, int ox, int oy, const SacImage *photo, const float *m)
{
    int S = photo->w;
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            float a = m[(size_t)y * S + x], heat[3];
            heat_colour(a, heat);
            const uint8_t *p = photo->rgb + ((size_t)y * S + x) * 3;
            uint8_t *d = dst->rgb + ((size_t)(oy + y) * dst->w + ox + x) * 3;
            for (int c = 0; c < 3; c++) {
                float v = (1.0f - 0.5f * a) * p[c] * (0.3f + 0.7f * a) + 0.5f * a * heat[c];
                d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
            }
        }
    }
}

static void draw_copy_panel(SacImage *dst, int ox, int oy, const SacImage *photo)
{
    for (int y = 0; y < photo->h; y++)
        memcpy(dst->rgb + ((size_t)(oy + y) * dst->w + ox) * 3,
               photo->rgb + (size_t)y * photo->w * 3, (size_t)photo->w * 3);
}

/* Write text in black, centred in [x_lo, x_lo + box_w), top at y, at the largest scale
 * <= max_scale that fits (then cut to fit); clipped to the image. */
static void draw_label(SacImage *dst, const char *word, int x_lo, int box_w, int y, int max_scale)
{
    char text[DRAW_MAX_WORD + 1];
    size_t n = 0;
    for (; word && word[n] && n < DRAW_MAX_WORD; n++) {
        unsigned char ch = (unsigned char)word[n];
        text[n] = ch >= 32 && ch <= 126 ? (char)ch : '?';
    }
    text[n] = 0;
    int scale = max_scale;
    while (scale > 1 && stb_easy_font_width(text) * scale > box_w) scale--;
    while (n > 0 && stb_easy_font_width(text) * scale > box_w) text[--n] = 0;
    if (n == 0) return;
    int x0 = x_lo + (box_w - stb_easy_font_width(text) * scale) / 2;
    /* each quad: 4 vertices of {x, y, z, rgba}; ~270 bytes per character */
    static const int vbuf_floats = (DRAW_MAX_WORD + 1) * 300 / 4;
    float vbuf[(DRAW_MAX_WORD + 1) * 300 / 4];
    int quads = stb_easy_font_print(0, 0, text, NULL, vbuf, (int)sizeof(vbuf));
    SAC_ASSERT(quads * 16 <= vbuf_floats);
    for (int q = 0; q < quads; q++) {
        const float *v = vbuf + q * 16;
        float qx0 = v[0], qx1 = v[0], qy0 = v[1], qy1 = v[1];
        for (int k = 1; k < 4; k++) {
            qx0 = fminf(qx0, v[k * 4]), qx1 = fmaxf(qx1, v[k * 4]);
            qy0 = fminf(qy0, v[k * 4 + 1]), qy1 = fmaxf(qy1, v[k * 4 + 1]);
        }
        int px0 = x0 + (int)lroundf(qx0 * scale), px1 = x0 + (int)lroundf(qx1 * scale);
        int py0 = y + (int)lroundf(qy0 * scale), py1 = y + (int)lroundf(qy1 * scale);
        px0 = SAC_MAX(px0, SAC_MAX(x_lo, 0)), px1 = SAC_MIN(px1, SAC_MIN(x_lo + box_w, dst->w));
        py0 = SAC_MAX(py0, 0), py1 = SAC_MIN(py1, dst->h);
        for (int yy = py0; yy < py1; yy++)
            for (int xx = px0; xx < px1; xx++)
                memset(dst->rgb + ((size_t)yy * dst->w + xx) * 3, 0, 3);
    }
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

int attention_draw(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h,
                   int grid_w, const char *const *words, int panel_size, int columns,
                   SacImage *out)
{
    out->w = out->h = 0;
    out->rgb = NULL;
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
    int rc = attention_draw_size(T, panel_size, columns, &W, &H);
    if (rc) return rc;
    int P = grid_h * grid_w, n = T + 1, c = SAC_MIN(columns, n);
    int scale = attention_draw_text_scale(panel_size), m = ATTENTION_DRAW_MARGIN;
    int cell_h = panel_size + DRAW_LABEL_H * scale;

    SacImage panel = {0};
    float *grid = NULL, *up = NULL;
    rc = sac_image_resize(photo, panel_size, panel_size, &panel);
    if (rc) goto fail;
    rc = sac_image_alloc(out, W, H, 255);
    if (rc) goto fail;
    grid = sac_malloc(sizeof(float) * P);
    up = sac_malloc(sizeof(float) * panel_size * panel_size);
    if (!grid || !up) {
        rc = SAC_ERR_NOMEM;
        goto fail;
    }
    for (int k = 0; k < n; k++) {
        int ox = m + (k % c) * (panel_size + m), oy = m + (k / c) * (cell_h + m);
        if (k == 0) {
            draw_copy_panel(out, ox, oy, &panel);
            continue;
        }
        normalise_map(alphas + (size_t)(k - 1) * P, P, grid);
        attention_upsample(grid, grid_h, grid_w, up, panel_size, panel_size);
        draw_heat_panel(out, ox, oy, &panel, up);
        if (words) draw_label(out, words[k - 1], ox, panel_size, oy + panel_size + scale, scale);
    }
    sac_image_free(&panel);
    free(grid);
    free(up);
    return SAC_OK;
fail:
    sac_image_free(&panel);
    sac_image_free(out);
    free(grid);
    free(up);
    return rc;
}
