/*
 * test_draw.c - the attention upsampler's alignment (one-hot cells land on their cell's centre,
 * mass centroids, uniform and linear maps), the blur and smoothed maps, the colour map, text
 * (TrueType when DejaVu Sans is installed, the bitmap fallback always) and the drawn figure
 * (size at the photo's aspect ratio, first panel, labels, probabilities, colour bar, heat
 * brightest over the attended cell, argument errors).
 *
 * Set SACCADE_DRAW_EXAMPLE=/path/file.png to also keep an example figure for inspection.
 * Size letters: T caption steps (words), P grid positions = Hg * Wg.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkrun.h"
#include "draw.h"
#include "image.h"
#include "sac.h"

static void quiet_sink(int level, const char *msg, void *user)
{
    (void)level, (void)msg, (void)user;
}

/* ---- upsampler -------------------------------------------------------------------------- */

/* Check one axis of a one-hot upsample: profile[y] = sum over the other axis. */
static void check_axis(const char *what, const double *profile, int n, int cell, int grid,
                       double tol_centroid)
{
    double L = (double)n / grid;                   /* cell size in pixels */
    double centre = (cell + 0.5) * L - 0.5;        /* cell centre, in pixel-index coordinates */
    double mass = 0, moment = 0;
    for (int y = 0; y < n; y++) mass += profile[y], moment += profile[y] * y;
    double centroid = moment / mass;
    /* interior cells: a symmetric tent around the centre; edge cells: the clamp adds a plateau
     * from the image edge to the centre, moving the centroid to 13/24 L from the edge */
    double want = centre;
    if (grid > 1 && cell == 0) want = 13.0 / 24.0 * L - 0.5;
    if (grid > 1 && cell == grid - 1) want = n - 13.0 / 24.0 * L - 0.5;
    ck_assert_msg(fabs(centroid - want) <= tol_centroid,
                  "%s: n = %d, grid = %d, cell %d: centroid %.3f, expected %.3f", what, n, grid,
                  cell, centroid, want);
}

START_TEST(test_upsample_one_hot)
{
    const int grids[2][2] = {{4, 4}, {3, 5}};
    const int sizes[][2] = {{64, 64}, {37, 37}, {100, 100}, {224, 224}, {48, 80}, {5, 7}};
    for (int g = 0; g < 2; g++) {
        int Hg = grids[g][0], Wg = grids[g][1];
        float *map = calloc((size_t)Hg * Wg, sizeof(float));
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            int H = sizes[s][0], W = sizes[s][1];
            float *up = malloc(sizeof(float) * H * W);
            double *rows = malloc(sizeof(double) * H), *cols = malloc(sizeof(double) * W);
            for (int i = 0; i < Hg; i++) {
                for (int j = 0; j < Wg; j++) {
                    memset(map, 0, sizeof(float) * Hg * Wg);
                    map[i * Wg + j] = 1.0f;
                    attention_upsample(map, Hg, Wg, up, H, W);
                    /* (per-pixel conditions are counted, then asserted once: a passing
                     * ck_assert costs a write to Check's pipe) */
                    float mx = 0;
                    int out_of_range = 0;
                    for (int k = 0; k < H * W; k++) {
                        out_of_range += !(up[k] >= 0.0f && up[k] <= 1.0f);
                        mx = fmaxf(mx, up[k]);
                    }
                    ck_assert_int_eq(out_of_range, 0);
                    /* a pixel within half a pixel of the cell centre holds the maximum ... */
                    double cy = (i + 0.5) * H / Hg - 0.5, cx = (j + 0.5) * W / Wg - 0.5;
                    float at_centre = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            int y = dy ? (int)ceil(cy) : (int)floor(cy);
                            int x = dx ? (int)ceil(cx) : (int)floor(cx);
                            at_centre = fmaxf(at_centre, up[y * W + x]);
                        }
                    ck_assert_msg(at_centre >= mx - 1e-6f,
                                  "grid %dx%d size %dx%d cell (%d,%d): %g near the centre "
                                  "(%.1f,%.1f), max %g", Hg, Wg, H, W, i, j, (double)at_centre,
                                  cy, cx, (double)mx);
                    /* ... and every maximal pixel lies inside the cell's pixel region */
                    int max_outside = 0;
                    for (int y = 0; y < H; y++)
                        for (int x = 0; x < W; x++)
                            if (up[y * W + x] >= mx - 1e-6f)
                                max_outside += !(y + 0.5 > (double)i * H / Hg &&
                                                 y + 0.5 < (double)(i + 1) * H / Hg &&
                                                 x + 0.5 > (double)j * W / Wg &&
                                                 x + 0.5 < (double)(j + 1) * W / Wg);
                    ck_assert_int_eq(max_outside, 0);
                    /* mass centroid per axis */
                    memset(rows, 0, sizeof(double) * H), memset(cols, 0, sizeof(double) * W);
                    for (int y = 0; y < H; y++)
                        for (int x = 0; x < W; x++)
                            rows[y] += up[y * W + x], cols[x] += up[y * W + x];
                    if (H >= 4 * Hg) check_axis("rows", rows, H, i, Hg, 0.5);
                    if (W >= 4 * Wg) check_axis("cols", cols, W, j, Wg, 0.5);
                }
            }
            free(up), free(rows), free(cols);
        }
        free(map);
    }
}
END_TEST

START_TEST(test_upsample_uniform_and_linear)
{
    const int Hg = 3, Wg = 5, H = 41, W = 67;
    float map[15], *up = malloc(sizeof(float) * H * W);
    for (int k = 0; k < 15; k++) map[k] = 0.37f;
    attention_upsample(map, Hg, Wg, up, H, W);
    double worst = 0;
    for (int k = 0; k < H * W; k++) worst = fmax(worst, fabs(up[k] - 0.37));
    ck_assert_double_le(worst, 1e-6);
    /* a map equal to its column index: inside the clamped border the output is exactly the
     * source coordinate (x + 0.5) * Wg / W - 0.5, which pins down the half-pixel alignment */
    for (int i = 0; i < Hg; i++)
        for (int j = 0; j < Wg; j++) map[i * Wg + j] = (float)j;
    attention_upsample(map, Hg, Wg, up, H, W);
    worst = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = (x + 0.5) * Wg / W - 0.5;
            s = s < 0 ? 0 : s > Wg - 1 ? Wg - 1 : s;
            worst = fmax(worst, fabs(up[y * W + x] - s));
        }
    ck_assert_double_le(worst, 1e-5);
    /* a 1 x 1 grid is constant; the identity size copies */
    attention_upsample(map, 1, 1, up, 9, 4);
    for (int k = 0; k < 36; k++) ck_assert_float_eq(up[k], map[0]);
    attention_upsample(map, Hg, Wg, up, Hg, Wg);
    for (int k = 0; k < 15; k++) ck_assert_float_eq(up[k], map[k]);
    free(up);
}
END_TEST

/* ---- blur, smoothed maps, colours --------------------------------------------------------- */

START_TEST(test_blur_and_smooth)
{
    const int H = 40, W = 56;
    float *x = malloc(sizeof(float) * H * W), *tmp = malloc(sizeof(float) * H * W);
    for (int k = 0; k < H * W; k++) x[k] = 0.25f;
    attention_blur(x, H, W, 3.0f, tmp);
    double worst = 0;
    for (int k = 0; k < H * W; k++) worst = fmax(worst, fabs(x[k] - 0.25));
    ck_assert_double_le(worst, 1e-6); /* a constant stays constant */
    /* an interior impulse keeps its mass, spreads symmetrically, peaks where it was */
    memset(x, 0, sizeof(float) * H * W);
    x[20 * W + 28] = 1.0f;
    attention_blur(x, H, W, 2.0f, tmp);
    double sum = 0;
    for (int k = 0; k < H * W; k++) sum += x[k];
    ck_assert_double_le(fabs(sum - 1.0), 1e-5);
    ck_assert_float_eq_tol(x[20 * W + 25], x[20 * W + 31], 1e-7f);
    ck_assert_float_eq_tol(x[17 * W + 28], x[23 * W + 28], 1e-7f);
    ck_assert_float_gt(x[20 * W + 28], x[20 * W + 29]);
    /* with sigma 2, a pixel 2 away holds exp(-1/2) of the centre along one axis */
    ck_assert_float_eq_tol(x[20 * W + 30] / x[20 * W + 28], expf(-0.5f), 2e-3f);
    /* sigma is capped at ATTENTION_BLUR_MAX: a huge sigma blurs as the cap does */
    float *capped = malloc(sizeof(float) * H * W);
    memset(x, 0, sizeof(float) * H * W), memset(capped, 0, sizeof(float) * H * W);
    x[20 * W + 28] = capped[20 * W + 28] = 1.0f;
    attention_blur(x, H, W, 1000.0f, tmp);
    attention_blur(capped, H, W, ATTENTION_BLUR_MAX, tmp);
    ck_assert_mem_eq(x, capped, sizeof(float) * H * W);
    free(capped);
    memset(x, 0, sizeof(float) * H * W);
    x[20 * W + 28] = 1.0f;
    attention_blur(x, H, W, 2.0f, tmp);
    /* sigma 0: unchanged */
    float before = x[20 * W + 28];
    attention_blur(x, H, W, 0.0f, tmp);
    ck_assert_float_eq(x[20 * W + 28], before);

    /* smoothed map: in [0, 1], peak 1 inside the attended cell, smooth (no cell edges) */
    const int Hg = 4, Wg = 5;
    float map[20];
    for (int p = 0; p < 20; p++) map[p] = p == 7 ? 0.8f : 0.2f / 19; /* cell (1, 2) */
    ck_assert_int_eq(attention_smooth_map(map, Hg, Wg, x, H, W), SAC_OK);
    float mx = 0;
    int bx = 0, by = 0, out_of_range = 0;
    double jump = 0;
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            float v = x[y * W + xx];
            out_of_range += !(v >= 0 && v <= 1);
            if (v > mx) mx = v, bx = xx, by = y;
            if (xx) jump = fmax(jump, fabs(v - x[y * W + xx - 1]));
        }
    ck_assert_int_eq(out_of_range, 0);
    ck_assert_float_eq_tol(mx, 1.0f, 1e-6f);
    ck_assert_int_eq(by * Hg / H, 1);
    ck_assert_int_eq(bx * Wg / W, 2);
    ck_assert_double_lt(jump, 0.2); /* neighbouring pixels never jump like a blocky map's edges */
    /* an all-zero or non-finite map stays 0 */
    float zero[20] = {0};
    zero[3] = NAN, zero[4] = -INFINITY;
    ck_assert_int_eq(attention_smooth_map(zero, Hg, Wg, x, H, W), SAC_OK);
    for (int k = 0; k < H * W; k++) ck_assert_float_eq(x[k], 0.0f);
    sac_log_set_sink(quiet_sink, NULL);
    ck_assert_int_eq(attention_smooth_map(map, 0, Wg, x, H, W), SAC_ERR_INVALID);
    sac_log_set_sink(NULL, NULL);
    free(x), free(tmp);
}
END_TEST

START_TEST(test_colour_map)
{
    /* luminance rises monotonically from black to pale yellow: the bar reads low -> high */
    uint8_t prev[3], c[3];
    attention_colour(0.0f, prev);
    ck_assert_int_le(prev[0] + prev[1] + prev[2], 10);
    double lprev = 0.299 * prev[0] + 0.587 * prev[1] + 0.114 * prev[2];
    for (int i = 1; i <= 100; i++) {
        attention_colour(i / 100.0f, c);
        double l = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        ck_assert_msg(l >= lprev - 0.5, "luminance falls at %d%%: %.1f after %.1f", i, l, lprev);
        lprev = l;
    }
    attention_colour(1.0f, c);
    ck_assert_int_ge(c[0], 250);
    ck_assert_int_ge(c[1], 250);
    attention_colour(2.0f, prev); /* clamped */
    ck_assert_mem_eq(prev, c, 3);
    attention_colour(NAN, c);
    ck_assert_int_le(c[0] + c[1] + c[2], 10);
}
END_TEST

/* ---- text ------------------------------------------------------------------------------- */

static int count_ink(const SacImage *img)
{
    int n = 0;
    for (size_t k = 0; k < (size_t)img->w * img->h; k++) n += img->rgb[k * 3] < 128;
    return n;
}

START_TEST(test_text)
{
    static const uint8_t black[3] = {0, 0, 0};
    /* the bitmap font is always there; widths scale with the pixel height */
    ck_assert_int_gt(attention_text_width(NULL, "dog", 12), 0);
    ck_assert_int_ge(attention_text_width(NULL, "dog", 28), 2 * attention_text_width(NULL, "dog", 12));
    SacImage img;
    ck_assert_int_eq(sac_image_alloc(&img, 120, 40, 255), SAC_OK);
    ck_assert_int_eq(attention_text_draw(&img, NULL, "dog", 4, 4, 16, 120, black), SAC_OK);
    int bitmap_ink = count_ink(&img);
    ck_assert_int_gt(bitmap_ink, 30);
    /* clipped at x_max: nothing right of it */
    memset(img.rgb, 255, (size_t)img.w * img.h * 3);
    ck_assert_int_eq(attention_text_draw(&img, NULL, "wwwwwwwwwwwwww", 0, 4, 16, 30, black), SAC_OK);
    for (int y = 0; y < img.h; y++)
        for (int x = 30; x < img.w; x++) ck_assert_int_eq(img.rgb[(y * img.w + x) * 3], 255);
    /* invalid UTF-8 and text off the image are drawn safely */
    ck_assert_int_eq(attention_text_draw(&img, NULL, "\xff\xc3(", -50, -30, 16, 120, black), SAC_OK);

    /* a missing font file is NULL with a message, not a crash */
    sac_log_set_sink(quiet_sink, NULL);
    ck_assert_ptr_null(attention_font_load("/nonexistent/DejaVuSans.ttf"));
    char path[] = "/tmp/saccade-test-font.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "not a font at all, just some text", 34), 34);
    close(fd);
    ck_assert_ptr_null(attention_font_load(path));
    unlink(path);
    sac_log_set_sink(NULL, NULL);

    const AttentionFont *f = attention_font_default();
    if (!f) {
        printf("note: %s; TrueType checks skipped\n", attention_font_default_note());
    } else {
        /* TrueType: antialiased ink, proportional widths, UTF-8 letters drawn */
        ck_assert_int_gt(attention_text_width(f, "www", 16), attention_text_width(f, "iii", 16));
        ck_assert_int_eq(attention_text_width(f, "", 16), 0);
        memset(img.rgb, 255, (size_t)img.w * img.h * 3);
        ck_assert_int_eq(attention_text_draw(&img, f, "dog", 4, 4, 16, 120, black), SAC_OK);
        int ink = count_ink(&img), grey = 0, below = 0;
        for (size_t k = 0; k < (size_t)img.w * img.h; k++) grey += img.rgb[k * 3] > 20 && img.rgb[k * 3] < 235;
        for (int y = 4 + 16 + 1; y < img.h; y++)
            for (int x = 0; x < img.w; x++) below += img.rgb[(y * img.w + x) * 3] < 250;
        ck_assert_int_gt(ink, 30);
        ck_assert_int_gt(grey, 10); /* antialiased edges */
        ck_assert_int_eq(below, 0); /* px is the whole height, descenders included */
        memset(img.rgb, 255, (size_t)img.w * img.h * 3);
        ck_assert_int_eq(attention_text_draw(&img, f, "caf\xc3\xa9", 4, 4, 16, 120, black), SAC_OK);
        ck_assert_int_gt(count_ink(&img), 30);
    }
    sac_image_free(&img);
}
END_TEST

/* ---- the figure ------------------------------------------------------------------------- */

static SacImage make_photo(int w, int h)
{
    SacImage img;
    ck_assert_int_eq(sac_image_alloc(&img, w, h, 0), SAC_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(100 + x % 50), p[1] = (uint8_t)(110 + y % 40), p[2] = 128;
        }
    return img;
}

static int is_dark(const SacImage *img, int x, int y)
{
    const uint8_t *p = img->rgb + ((size_t)y * img->w + x) * 3;
    return p[0] < 100 && p[1] < 100 && p[2] < 100;
}

static int count_dark(const SacImage *img, int x0, int y0, int w, int h)
{
    int n = 0;
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) n += is_dark(img, x, y);
    return n;
}

/* Pixels that are not white (grey antialiased text on the white label area). */
static int count_marked(const SacImage *img, int x0, int y0, int w, int h)
{
    int n = 0;
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) n += img->rgb[((size_t)y * img->w + x) * 3] < 200;
    return n;
}

/* The layout for both fonts: font NULL = bitmap, else the default TrueType font. */
static void check_layout(const AttentionFont *font)
{
    SacImage wide = make_photo(50, 30), tall = make_photo(30, 60);
    const char *words[] = {"a", "dog", "runs", "on", "grass"};
    const float *no_alpha = NULL;
    float alphas[5 * 12], lp[5] = {-0.1f, -0.5f, -1.0f, -2.0f, -8.0f};
    for (int k = 0; k < 60; k++) alphas[k] = (float)(k % 7 + 1);
    struct {
        const SacImage *photo;
        int T, panel, cols, legend, probs, pw, ph, want_w, want_h;
    } cases[] = {
        /* panels pw x ph (aspect kept), s = clamp(panel / 16, 12, 40), L = 3s/2 (+ 5s/4),
         * G = 2s + 8 with the legend: w = c pw + (c+1) 8, h = r (ph + L) + (r+1) 8 + G */
        {&wide, 5, 96, 3, 0, 0, 96, 58, 3 * 96 + 4 * 8, 2 * (58 + 18) + 3 * 8},
        {&wide, 5, 256, 4, 1, 0, 256, 154, 4 * 256 + 5 * 8, 2 * (154 + 24) + 3 * 8 + 40},
        {&tall, 2, 64, 4, 1, 1, 32, 64, 3 * 32 + 4 * 8, 1 * (64 + 18 + 15) + 2 * 8 + 32},
        {&wide, 0, 40, 5, 0, 0, 40, 24, 40 + 2 * 8, 24 + 18 + 2 * 8},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const SacImage *photo = cases[c].photo;
        int T = cases[c].T, P = cases[c].panel, C = cases[c].cols, pw = cases[c].pw, ph = cases[c].ph;
        AttentionDrawOptions o = {P, C, cases[c].legend, cases[c].probs ? lp : NULL, font};
        int gw, gh;
        attention_panel_size(photo->w, photo->h, P, &gw, &gh);
        ck_assert_int_eq(gw, pw);
        ck_assert_int_eq(gh, ph);
        SacImage out;
        ck_assert_int_eq(attention_draw_figure(photo, T ? alphas : no_alpha, T, 3, 4, words, &o, &out), SAC_OK);
        ck_assert_int_eq(out.w, cases[c].want_w);
        ck_assert_int_eq(out.h, cases[c].want_h);
        int w, h;
        ck_assert_int_eq(attention_draw_size(photo->w, photo->h, T, &o, &w, &h), SAC_OK);
        ck_assert_int_eq(w, out.w);
        ck_assert_int_eq(h, out.h);
        /* panel 0 is exactly the photo resized at its own aspect ratio; the corner is white */
        SacImage sq;
        ck_assert_int_eq(sac_image_resize(photo, pw, ph, &sq), SAC_OK);
        for (int y = 0; y < ph; y++)
            ck_assert_mem_eq(out.rgb + ((size_t)(8 + y) * out.w + 8) * 3, sq.rgb + y * pw * 3, (size_t)pw * 3);
        sac_image_free(&sq);
        ck_assert_uint_eq(out.rgb[0], 255);
        /* labels: none under the photo, dark text under every word panel */
        int s = attention_draw_text_px(P), L = 3 * s / 2 + (cases[c].probs ? 5 * s / 4 : 0);
        int cols = T + 1 < C ? T + 1 : C;
        for (int k = 0; k <= T; k++) {
            int ox = 8 + (k % cols) * (pw + 8), oy = 8 + (k / cols) * (ph + L + 8);
            int dark = count_dark(&out, ox, oy + ph, pw, 3 * s / 2);
            if (k == 0) ck_assert_int_eq(dark, 0);
            else ck_assert_msg(dark >= 8, "panel %d ('%s'): %d dark pixels", k, words[k - 1], dark);
            if (cases[c].probs && k > 0) /* "p = 0.90" under the word */
                ck_assert_int_gt(count_marked(&out, ox, oy + ph + 3 * s / 2, pw, 5 * s / 4), 8);
            /* margins left of and below each cell stay white */
            ck_assert_int_eq(count_marked(&out, ox - 8, oy, 8, ph + L), 0);
            ck_assert_int_eq(count_marked(&out, ox, oy + ph + L, pw, 8), 0);
        }
        /* the colour bar: a row of the legend holds the colour map's dark and bright ends */
        if (cases[c].legend) {
            int r = (T + 1 + cols - 1) / cols, ly = r * (ph + L + 8) + 8 + s / 2;
            int darkest = 255 * 3, brightest = 0;
            for (int x = 0; x < out.w; x++) {
                const uint8_t *p = out.rgb + ((size_t)ly * out.w + x) * 3;
                uint8_t lo[3], hi[3];
                attention_colour(0.0f, lo), attention_colour(1.0f, hi);
                if (abs(p[0] - lo[0]) + abs(p[1] - lo[1]) + abs(p[2] - lo[2]) < 30) darkest = 0;
                if (abs(p[0] - hi[0]) + abs(p[1] - hi[1]) + abs(p[2] - hi[2]) < 30 && p[2] < 200) brightest = 1;
            }
            ck_assert_msg(darkest == 0 && brightest == 1, "case %zu: no colour bar in legend row %d", c, ly);
            /* and text under it */
            ck_assert_int_gt(count_marked(&out, 0, ly + s / 2 + 2, out.w, s), 10);
        }
        sac_image_free(&out);
    }
    /* words == NULL: no text at all */
    AttentionDrawOptions o = {64, 3, 0, NULL, font};
    SacImage out;
    ck_assert_int_eq(attention_draw_figure(&wide, alphas, 2, 3, 4, NULL, &o, &out), SAC_OK);
    ck_assert_int_eq(count_dark(&out, 0, 8 + 38, out.w, 18), 0);
    sac_image_free(&out);
    /* a word too long for its panel is drawn smaller and cut, never into the next panel */
    const char *longw[] = {"supercalifragilisticexpialidocious-and-more", "x"};
    ck_assert_int_eq(attention_draw_figure(&wide, alphas, 2, 3, 4, longw, &o, &out), SAC_OK);
    ck_assert_int_gt(count_dark(&out, 8 + 72, 8 + 38, 64, 18), 8);
    ck_assert_int_eq(count_dark(&out, 8 + 72 + 64, 8 + 38, 8, 18), 0);
    sac_image_free(&out);
    sac_image_free(&wide);
    sac_image_free(&tall);
}

START_TEST(test_draw_layout_bitmap)
{
    check_layout(NULL);
}
END_TEST

START_TEST(test_draw_layout_truetype)
{
    const AttentionFont *f = attention_font_default();
    if (!f) {
        printf("note: %s; TrueType layout skipped\n", attention_font_default_note());
        return;
    }
    check_layout(f);
}
END_TEST

static double luma(const SacImage *img, int x, int y)
{
    const uint8_t *p = img->rgb + ((size_t)y * img->w + x) * 3;
    return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

START_TEST(test_draw_heat_on_attended_cell)
{
    /* the from-scratch grids and MobileNetV2's 7 x 7 and 14 x 14 (panel sides 96, 96, 128, 224) */
    const int grids[4][3] = {{4, 4, 96}, {3, 5, 96}, {7, 7, 128}, {14, 14, 224}};
    SacImage photo;
    ck_assert_int_eq(sac_image_alloc(&photo, 70, 45, 128), SAC_OK); /* flat grey, wide */
    for (int g = 0; g < 4; g++) {
        int Hg = grids[g][0], Wg = grids[g][1], P = Hg * Wg, T = P, S = grids[g][2];
        int pw, ph;
        attention_panel_size(photo.w, photo.h, S, &pw, &ph); /* 96 x 62: the grid is stretched */
        /* word t attends cell t: softmax-like, 0.7 there, the rest shared */
        float *alphas = malloc(sizeof(float) * T * P);
        const char **words = malloc(sizeof(char *) * T);
        for (int t = 0; t < T; t++) {
            words[t] = "w";
            for (int p = 0; p < P; p++) alphas[t * P + p] = p == t ? 0.7f : 0.3f / (P - 1);
        }
        SacImage out;
        AttentionDrawOptions o = {S, 6, 1, NULL, NULL};
        ck_assert_int_eq(attention_draw_figure(&photo, alphas, T, Hg, Wg, words, &o, &out), SAC_OK);
        int L = 3 * attention_draw_text_px(S) / 2;
        for (int t = 0; t < T; t++) {
            int k = t + 1, ox = 8 + (k % 6) * (pw + 8), oy = 8 + (k / 6) * (ph + L + 8);
            int ci = t / Wg, cj = t % Wg;
            double in = 0, outside = 0, best = -1;
            int n_in = 0, n_out = 0, bx = -1, by = -1;
            for (int y = 0; y < ph; y++)
                for (int x = 0; x < pw; x++) {
                    double v = luma(&out, ox + x, oy + y);
                    int inside = y * Hg / ph == ci && x * Wg / pw == cj;
                    if (inside) in += v, n_in++;
                    else outside += v, n_out++;
                    if (v > best) best = v, bx = x, by = y;
                }
            in /= n_in, outside /= n_out;
            ck_assert_msg(in > outside + 40, "grid %dx%d word %d: cell luma %.1f vs rest %.1f", Hg, Wg, t, in,
                          outside);
            ck_assert_msg(by * Hg / ph == ci && bx * Wg / pw == cj,
                          "grid %dx%d word %d: brightest pixel (%d,%d) outside cell (%d,%d)", Hg, Wg, t, by, bx,
                          ci, cj);
        }
        sac_image_free(&out);
        free(alphas), free(words);
    }
    sac_image_free(&photo);
}
END_TEST

START_TEST(test_draw_errors)
{
    sac_log_set_sink(quiet_sink, NULL);
    SacImage photo = make_photo(10, 10), empty = {0}, out;
    float a[4] = {1, 0, 0, 0};
    const char *w[1] = {"x"};
    ck_assert_int_eq(attention_draw(&empty, a, 1, 2, 2, w, 64, 3, &out), SAC_ERR_INVALID);
    ck_assert_ptr_null(out.rgb);
    ck_assert_int_eq(attention_draw(&photo, a, 1, 0, 2, w, 64, 3, &out), SAC_ERR_INVALID);
    ck_assert_int_eq(attention_draw(&photo, NULL, 1, 2, 2, w, 64, 3, &out), SAC_ERR_INVALID);
    ck_assert_int_eq(attention_draw(&photo, a, 1, 2, 2, w, 8, 3, &out), SAC_ERR_INVALID);
    ck_assert_int_eq(attention_draw(&photo, a, 1, 2, 2, w, 64, 0, &out), SAC_ERR_INVALID);
    ck_assert_int_eq(attention_draw(&photo, a, -1, 2, 2, w, 64, 3, &out), SAC_ERR_INVALID);
    /* non-finite and all-zero maps draw (uniformly dark) instead of failing */
    float bad[4] = {NAN, INFINITY, -1, 0};
    ck_assert_int_eq(attention_draw(&photo, bad, 1, 2, 2, w, 64, 3, &out), SAC_OK);
    sac_image_free(&out);
    /* a 1 x 1000 photo still has a 1-pixel-wide panel */
    SacImage thin = make_photo(1, 1000);
    ck_assert_int_eq(attention_draw(&thin, a, 1, 2, 2, w, 64, 3, &out), SAC_OK);
    sac_image_free(&out);
    sac_image_free(&thin);
    sac_image_free(&photo);
    sac_log_set_sink(NULL, NULL);
}
END_TEST

/* An example figure: sky, sun, grass; words looking at the right places. Written to
 * $SACCADE_DRAW_EXAMPLE when set (for a human to look at); otherwise only drawn. */
START_TEST(test_draw_example)
{
    const int w = 180, h = 120, Hg = 7, Wg = 7, T = 6, P = 49;
    SacImage photo;
    ck_assert_int_eq(sac_image_alloc(&photo, w, h, 0), SAC_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = photo.rgb + ((size_t)y * w + x) * 3;
            int sun = (x - 140) * (x - 140) + (y - 22) * (y - 22) < 220;
            if (sun) p[0] = 250, p[1] = 220, p[2] = 40;
            else if (y < 75) p[0] = 90, p[1] = (uint8_t)(140 + y), p[2] = 230;
            else p[0] = 40, p[1] = (uint8_t)(150 + (x * 7 + y * 3) % 40), p[2] = 40;
        }
    const char *words[] = {"a", "sun", "over", "green", "grass", "."};
    float alphas[6 * 49], lp[6] = {-0.05f, -0.4f, -1.2f, -0.7f, -0.2f, -3.0f};
    const int focus[6] = {24, 12, 17, 37, 45, -1}; /* cells; -1 = spread out */
    for (int t = 0; t < T; t++)
        for (int p = 0; p < P; p++)
            alphas[t * P + p] = focus[t] < 0 ? 1.0f / P : p == focus[t] ? 0.5f : 0.5f / (P - 1);
    SacImage out;
    AttentionDrawOptions o = attention_draw_defaults();
    o.columns = 4, o.word_logprob = lp;
    ck_assert_int_eq(attention_draw_figure(&photo, alphas, T, Hg, Wg, words, &o, &out), SAC_OK);
    const char *path = getenv("SACCADE_DRAW_EXAMPLE");
    if (path) ck_assert_int_eq(sac_image_write_png(path, &out), SAC_OK);
    sac_image_free(&out);
    sac_image_free(&photo);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("draw");
    const TTest *tests[] = {test_upsample_one_hot, test_upsample_uniform_and_linear, test_blur_and_smooth,
        test_colour_map, test_text, test_draw_layout_bitmap, test_draw_layout_truetype,
        test_draw_heat_on_attended_cell, test_draw_errors, test_draw_example, NULL};
    check_case(s, "draw", 0, tests);
    return check_run(s);
}
