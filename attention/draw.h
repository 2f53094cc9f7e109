/*
 * draw.h - attention maps drawn over the photo: one panel per generated word.
 *
 * Knows nothing about the model: it takes the photo, the (T, P) attention weights with
 * P = grid_h * grid_w (row-major: p = i * grid_w + j is grid row i, column j) and T words.
 *
 * Alignment (the part other captioners get wrong): the grid covers the whole squashed photo.
 * Cell (i, j) covers panel pixels [i*H/Hg, (i+1)*H/Hg) x [j*W/Wg, (j+1)*W/Wg) and its value sits
 * at that cell's centre; the map is upsampled bilinearly with the half-pixel mapping
 * src = (dst + 0.5) * Hg / H - 0.5, clamped to [0, Hg - 1] (the same for x), i.e. what
 * PyTorch's F.interpolate(mode="bilinear", align_corners=False) does.
 *
 * Size letters: T caption steps (words), P grid positions = grid_h * grid_w.
 */
#ifndef SACCADE_DRAW_H
#define SACCADE_DRAW_H

#include "image.h"

/* Gap in pixels around and between panels. */
#define ATTENTION_DRAW_MARGIN 8

/* Bilinear, half-pixel-correct upsampling of one map (see above). map: (grid_h, grid_w);
 * out: (H, W), caller-allocated. A constant map gives a constant; values stay within the map's
 * min and max. Sizes must be >= 1 (checked with SAC_ASSERT). Never allocates. */
void attention_upsample(const float *map /* (Hg, Wg) */, int grid_h, int grid_w,
                        float *out /* (H, W) */, int H, int W);

/* The text scale used under panels of this size: panel_size / 64 clamped to 1..4
 * (stb_easy_font glyphs are about 7 px tall at scale 1). A word wider than its panel is drawn
 * smaller, down to scale 1, then cut. */
int attention_draw_text_scale(int panel_size);

/* Size of attention_draw's output for T words: n = T + 1 panels, c = min(columns, n) columns,
 * r = ceil(n / c) rows, label height L = 14 * text_scale, margin m = ATTENTION_DRAW_MARGIN:
 *   w = c * panel_size + (c + 1) * m,  h = r * (panel_size + L) + (r + 1) * m.
 * Returns SAC_OK or SAC_ERR_INVALID (T < 0, panel_size outside 16..4096, columns < 1). */
int attention_draw_size(int T, int panel_size, int columns, int *w, int *h);

/* Draw the attention figure into out (overwritten, not freed first; the caller owns it and
 * frees it with sac_image_free). Panels are laid out left to right in rows of `columns` on a
 * white background:
 *   panel 0: the photo squash-resized to panel_size x panel_size (what the model saw), no label;
 *   panel t + 1: the same photo darkened where the model did not look, with a black-red-yellow-
 *     white heat colour blended in where it did, and words[t] written in black under it.
 * Each map alphas[t] is divided by its own maximum (negative and non-finite values count as 0;
 * an all-zero map leaves the panel uniformly dark), so every panel shows where that word looked
 * most, whatever the softmax's sharpness. With m in [0, 1] the normalised upsampled map and v a
 * photo pixel value: out = (1 - m/2) * v * (0.3 + 0.7 m) + (m/2) * hot(m).
 * alphas: (T, P) with P = grid_h * grid_w, may be NULL only when T == 0.
 * words: T strings (NULL entries are blank; characters outside printable ASCII are drawn as '?');
 * words == NULL draws no labels.
 * Returns SAC_OK, SAC_ERR_INVALID (empty photo, bad sizes; logged), SAC_ERR_NOMEM. */
int attention_draw(const SacImage *photo, const float *alphas /* (T, P) */, int T, int grid_h,
                   int grid_w, const char *const *words /* T words */, int panel_size,
                   int columns, SacImage *out);

#endif
