/*
 * draw.h - attention maps drawn over the photo: one panel per generated word.
 *
 * Knows nothing about the model: it takes the photo, the (T, P) attention weights with
 * P = grid_h * grid_w (row-major: p = i * grid_w + j is grid row i, column j) and T words.
 *
 * Aspect ratio: the model saw the photo squashed to a square, and its grid covers that whole
 * square. The panels show the photo at its own aspect ratio (as the user knows it); the grid is
 * stretched back over it, so grid cell (i, j) covers panel pixels
 * [i*H/Hg, (i+1)*H/Hg) x [j*W/Wg, (j+1)*W/Wg) of an H x W panel, whatever its aspect.
 *
 * Smoothing: a map is upsampled bilinearly with the half-pixel mapping
 * src = (dst + 0.5) * Hg / H - 0.5, clamped to [0, Hg - 1] (the same for x), i.e. what
 * PyTorch's F.interpolate(mode="bilinear", align_corners=False) does, then blurred by a
 * separable Gaussian of sigma = a quarter of the smaller cell side, at most ATTENTION_BLUR_MAX
 * pixels (a light version of the Show-Attend-Tell tutorial's skimage pyramid_expand), then
 * divided by its own maximum.
 *
 * Labels: a TrueType font (stb_truetype) when one is given: DejaVu Sans is found at run time
 * (attention_font_default); without it, the built-in bitmap font (stb_easy_font) at an integer
 * scale of the same height.
 *
 * Size letters: T caption steps (words), P grid positions = grid_h * grid_w.
 */
#ifndef SACCADE_DRAW_H
#define SACCADE_DRAW_H

#include "image.h"

/* Gap in pixels around and between panels. */
#define ATTENTION_DRAW_MARGIN 8
/* Largest Gaussian sigma in pixels (bounds the blur's cost on large panels). */
#define ATTENTION_BLUR_MAX 12.0f
/* Where attention_font_default looks, in order (fonts-dejavu-core installs the first). */
#define ATTENTION_FONT_PATHS \
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", \
        "/usr/share/fonts/dejavu/DejaVuSans.ttf"

/* ---- fonts ---- */

typedef struct AttentionFont AttentionFont;

/* Load a TrueType font file. NULL (logged: the path and what was wrong) when the file is
 * missing, unreadable or not a font. Free with attention_font_free (NULL is a no-op).
 * A loaded font is read-only: one may be shared by threads. */
AttentionFont *attention_font_load(const char *path);
void attention_font_free(AttentionFont *f);
/* DejaVu Sans from ATTENTION_FONT_PATHS, loaded on the first call (thread-safe) and kept for
 * the process; NULL when none of the paths holds a usable font (labels then use the bitmap
 * font). Not logged: callers say so once (see attention_font_default_note). */
const AttentionFont *attention_font_default(void);
/* A one-line note for the user when attention_font_default() is NULL (static text). */
const char *attention_font_default_note(void);

/* Width in pixels of UTF-8 text at pixel height px (font NULL: the bitmap font at the scale
 * attention_draw uses for px). Bytes that are not valid UTF-8 count as '?'. */
int attention_text_width(const AttentionFont *font, const char *text, int px);
/* Draw UTF-8 text in colour rgb with its top-left corner at (x, y) and pixel height px
 * (TrueType: antialiased, ascender to descender = px; bitmap: glyphs about px tall), clipped to
 * the image and to x < x_max. Never allocates more than one glyph bitmap at a time;
 * SAC_OK or SAC_ERR_NOMEM. */
int attention_text_draw(SacImage *img, const AttentionFont *font, const char *text, int x, int y, int px,
                        int x_max, const uint8_t rgb[3]);

/* ---- maps ---- */

/* Bilinear, half-pixel-correct upsampling of one map (see above). map: (grid_h, grid_w);
 * out: (H, W), caller-allocated. A constant map gives a constant; values stay within the map's
 * min and max. Sizes must be >= 1 (checked with SAC_ASSERT). Never allocates. */
void attention_upsample(const float *map /* (Hg, Wg) */, int grid_h, int grid_w,
                        float *out /* (H, W) */, int H, int W);

/* Separable Gaussian blur of x (H, W) in place, edges clamped; tmp: (H, W) scratch. sigma <= 0
 * leaves x unchanged. A constant map stays constant; the sum is kept up to the edge clamp. */
void attention_blur(float *x /* (H, W) */, int H, int W, float sigma, float *tmp /* (H, W) */);

/* The smoothed map of one word at H x W: normalised by its maximum (negative and non-finite
 * weights count as 0), upsampled, blurred (sigma as above), renormalised to [0, 1] (an all-zero
 * map stays 0). map: (grid_h, grid_w); out: (H, W). SAC_OK, SAC_ERR_INVALID, SAC_ERR_NOMEM. */
int attention_smooth_map(const float *map /* (Hg, Wg) */, int grid_h, int grid_w, float *out /* (H, W) */,
                         int H, int W);

/* The colour map of the figures (an approximation of matplotlib's "inferno": black, purple,
 * red, orange, pale yellow) at m in [0, 1] (clamped), as 0..255 RGB. */
void attention_colour(float m, uint8_t rgb[3]);

/* photo (H x W, the photo already resized to the panel) with map m (H x W, in [0, 1]) laid
 * over it, into dst at (ox, oy): out = (1 - m/2) * v * (0.3 + 0.7 m) + (m/2) * colour(m) for
 * each photo value v: dark where the word did not look, the colour map's hue where it did. */
void attention_overlay(SacImage *dst, int ox, int oy, const SacImage *photo, const float *m /* (H, W) */);

/* ---- the figure ---- */

typedef struct AttentionDrawOptions {
    int panel_size;             /* long side of a panel in pixels, 16..4096 (default 256) */
    int columns;                /* panels per row, >= 1 (default 6) */
    int legend;                 /* 1: a colour bar stating the map's meaning under the panels (default 1) */
    const float *word_logprob;  /* (T) log-probability of each word, or NULL: "p 0.83" under the word */
    const AttentionFont *font;  /* labels' font; NULL: the built-in bitmap font */
} AttentionDrawOptions;

/* panel_size 256, columns 6, legend on, no probabilities, font attention_font_default(). */
AttentionDrawOptions attention_draw_defaults(void);

/* A panel's size for a photo_w x photo_h photo: the long side is panel_size, the short side
 * round(panel_size * short / long), at least 1. */
void attention_panel_size(int photo_w, int photo_h, int panel_size, int *pw, int *ph);

/* The label text height: panel_size / 16 clamped to 12..40 pixels. */
int attention_draw_text_px(int panel_size);

/* Size of attention_draw_figure's output for T words on a photo_w x photo_h photo:
 * panels pw x ph (attention_panel_size), n = T + 1 panels, c = min(columns, n) columns,
 * r = ceil(n / c) rows, text height s = attention_draw_text_px(panel_size), label height
 * L = 3s/2 (+ 5s/4 with word_logprob), legend height G = 2s + m (0 without legend),
 * m = ATTENTION_DRAW_MARGIN (integer division throughout):
 *   w = c * pw + (c + 1) * m,  h = r * (ph + L) + (r + 1) * m + G.
 * Returns SAC_OK or SAC_ERR_INVALID (T < 0, photo sides < 1, panel_size outside 16..4096,
 * columns < 1, a figure side over 2^24; logged). */
int attention_draw_size(int photo_w, int photo_h, int T, const AttentionDrawOptions *o, int *w, int *h);

/* Draw the attention figure into out (overwritten, not freed first; the caller owns it and
 * frees it with sac_image_free). Panels are laid out left to right in rows of o->columns on a
 * white background:
 *   panel 0: the photo resized to the panel (aspect kept), no label;
 *   panel t + 1: alphas[t]'s smoothed map (attention_smooth_map) over the photo
 *     (attention_overlay), and words[t] written under it (with "p 0.83" below when
 *     o->word_logprob is given).
 * Under the panels (o->legend) the colour bar from 0 to 1 with "low" and "high", stating
 * that each word's map is scaled to its own peak.
 * alphas: (T, P) with P = grid_h * grid_w, may be NULL only when T == 0.
 * words: T UTF-8 strings (NULL entries are blank; invalid bytes are drawn as '?'; a word
 * wider than its panel is drawn smaller, down to 3/4 of the size, then cut); words == NULL
 * draws no labels. o == NULL: attention_draw_defaults().
 * Returns SAC_OK, SAC_ERR_INVALID (empty photo, bad sizes; logged), SAC_ERR_NOMEM. */
int attention_draw_figure(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h,
                          int grid_w, const char *const *words /* T words */, const AttentionDrawOptions *o,
                          SacImage *out);

/* attention_draw_figure with attention_draw_defaults() except panel_size and columns. */
int attention_draw(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h,
                   int grid_w, const char *const *words /* T words */, int panel_size,
                   int columns, SacImage *out);

#endif
