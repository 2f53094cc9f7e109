/*
 * test_draw.c - the attention upsampler's alignment (one-hot cells land on their cell's centre,
 * mass centroids, uniform and linear maps) and the drawn figure (size, first panel, labels,
 * heat brightest over the attended cell, argument errors).
 *
 * Set SACCADE_DRAW_EXAMPLE=/path/file.png to also keep an example figure for inspection.
 * Size letters: T caption steps (words), P grid positions = Hg * Wg.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return p[0] < 64 && p[1] < 64 && p[2] < 64;
}

static int count_dark(const SacImage *img, int x0, int y0, int w, int h)
{
    int n = 0;
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) n += is_dark(img, x, y);
    return n;
}

START_TEST(test_draw_layout)
{
    SacImage photo = make_photo(50, 30);
    const char *words[] = {"a", "dog", "runs", "on", "grass"};
    const float *no_alpha = NULL;
    float alphas[5 * 12];
    for (int k = 0; k < 60; k++) alphas[k] = (float)(k % 7 + 1);
    struct {
        int T, panel, cols, want_w, want_h;
    } cases[] = {
        /* n = T + 1 panels, c = min(cols, n), r = ceil(n / c), L = 14 * max(1, panel / 64) */
        {5, 96, 3, 3 * 96 + 4 * 8, 2 * (96 + 14) + 3 * 8},
        {5, 128, 4, 4 * 128 + 5 * 8, 2 * (128 + 28) + 3 * 8},
        {2, 64, 4, 3 * 64 + 4 * 8, 1 * (64 + 14) + 2 * 8},
        {0, 40, 5, 40 + 2 * 8, 40 + 14 + 2 * 8},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int T = cases[c].T, P = cases[c].panel, C = cases[c].cols;
        SacImage out;
        ck_assert_int_eq(attention_draw(&photo, T ? alphas : no_alpha, T, 3, 4, words, P, C, &out),
                         SAC_OK);
        ck_assert_int_eq(out.w, cases[c].want_w);
        ck_assert_int_eq(out.h, cases[c].want_h);
        int w, h;
        ck_assert_int_eq(attention_draw_size(T, P, C, &w, &h), SAC_OK);
        ck_assert_int_eq(w, out.w);
        ck_assert_int_eq(h, out.h);
        /* panel 0 is exactly the squashed photo; the corner margin is white */
        SacImage sq;
        ck_assert_int_eq(sac_image_resize(&photo, P, P, &sq), SAC_OK);
        for (int y = 0; y < P; y++)
            ck_assert_mem_eq(out.rgb + ((size_t)(8 + y) * out.w + 8) * 3, sq.rgb + y * P * 3,
                             (size_t)P * 3);
        sac_image_free(&sq);
        ck_assert_uint_eq(out.rgb[0], 255);
        /* labels: none under the photo, dark text under every word panel */
        int L = 14 * attention_draw_text_scale(P), cols = T + 1 < C ? T + 1 : C;
        for (int k = 0; k <= T; k++) {
            int ox = 8 + (k % cols) * (P + 8), oy = 8 + (k / cols) * (P + L + 8);
            int dark = count_dark(&out, ox, oy + P, P, L);
            if (k == 0) ck_assert_int_eq(dark, 0);
            else ck_assert_msg(dark >= 8, "panel %d ('%s'): %d dark pixels", k, words[k - 1], dark);
            /* margins left of and below each cell stay white */
            ck_assert_int_eq(count_dark(&out, ox - 8, oy, 8, P + L), 0);
            ck_assert_int_eq(count_dark(&out, ox, oy + P + L, P, 8), 0);
        }
        sac_image_free(&out);
    }
    /* words == NULL: no text at all */
    SacImage out;
    ck_assert_int_eq(attention_draw(&photo, alphas, 2, 3, 4, NULL, 64, 3, &out), SAC_OK);
    ck_assert_int_eq(count_dark(&out, 0, 8 + 64, out.w, 14), 0);
    sac_image_free(&out);
    /* a word too long for its panel is drawn smaller and cut, never into the next panel */
    const char *longw[] = {"supercalifragilisticexpialidocious-and-more", "x"};
    ck_assert_int_eq(attention_draw(&photo, alphas, 2, 3, 4, longw, 64, 3, &out), SAC_OK);
    ck_assert_int_gt(count_dark(&out, 8 + 72, 8 + 64, 64, 14), 8);
    ck_assert_int_eq(count_dark(&out, 8 + 72 + 64, 8 + 64, 8, 14), 0);
    sac_image_free(&out);
    sac_image_free(&photo);
}
END_TEST

static double luma(const SacImage *img, int x, int y)
{
    const uint8_t *p = img->rgb + ((size_t)y * img->w + x) * 3;
    return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

START_TEST(test_draw_heat_on_attended_cell)
{
    const int grids[2][2] = {{4, 4}, {3, 5}};
    SacImage photo;
    ck_assert_int_eq(sac_image_alloc(&photo, 70, 45, 128), SAC_OK); /* flat gray */
    for (int g = 0; g < 2; g++) {
        int Hg = grids[g][0], Wg = grids[g][1], P = Hg * Wg, T = P, S = 96;
        /* word t attends cell t: softmax-like, 0.7 there, the rest shared */
        float *alphas = malloc(sizeof(float) * T * P);
        const char **words = malloc(sizeof(char *) * T);
        for (int t = 0; t < T; t++) {
            words[t] = "w";
            for (int p = 0; p < P; p++) alphas[t * P + p] = p == t ? 0.7f : 0.3f / (P - 1);
        }
        SacImage out;
        ck_assert_int_eq(attention_draw(&photo, alphas, T, Hg, Wg, words, S, 6, &out), SAC_OK);
        int L = 14 * attention_draw_text_scale(S);
        for (int t = 0; t < T; t++) {
            int k = t + 1, ox = 8 + (k % 6) * (S + 8), oy = 8 + (k / 6) * (S + L + 8);
            int ci = t / Wg, cj = t % Wg;
            double in = 0, outside = 0, best = -1;
            int n_in = 0, n_out = 0, bx = -1, by = -1;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    double v = luma(&out, ox + x, oy + y);
                    int inside = y * Hg / S == ci && x * Wg / S == cj;
                    if (inside) in += v, n_in++;
                    else outside += v, n_out++;
                    if (v > best) best = v, bx = x, by = y;
                }
            in /= n_in, outside /= n_out;
            ck_assert_msg(in > outside + 40, "grid %dx%d word %d: cell luma %.1f vs rest %.1f", Hg,
                          Wg, t, in, outside);
            ck_assert_msg(by * Hg / S == ci && bx * Wg / S == cj,
                          "grid %dx%d word %d: brightest pixel (%d,%d) outside cell (%d,%d)", Hg,
                          Wg, t, by, bx, ci, cj);
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
    sac_image_free(&photo);
    sac_log_set_sink(NULL, NULL);
}
END_TEST

/* An example figure: sky, sun, grass; words looking at the right places. Written to
 * $SACCADE_DRAW_EXAMPLE when set (for a human to look at); otherwise only drawn. */
START_TEST(test_draw_example)
{
    const int w = 120, h = 80, Hg = 4, Wg = 4, T = 6;
    SacImage photo;
    ck_assert_int_eq(sac_image_alloc(&photo, w, h, 0), SAC_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = photo.rgb + ((size_t)y * w + x) * 3;
            int sun = (x - 95) * (x - 95) + (y - 15) * (y - 15) < 100;
            if (sun) p[0] = 250, p[1] = 220, p[2] = 40;
            else if (y < 50) p[0] = 90, p[1] = (uint8_t)(140 + y), p[2] = 230;
            else p[0] = 40, p[1] = (uint8_t)(150 + (x * 7 + y * 3) % 40), p[2] = 40;
        }
    const char *words[] = {"a", "sun", "over", "green", "grass", "."};
    float alphas[6 * 16];
    const int focus[6] = {5, 3, 6, 13, 14, -1}; /* cells; -1 = spread out */
    for (int t = 0; t < T; t++)
        for (int p = 0; p < 16; p++)
            alphas[t * 16 + p] = focus[t] < 0 ? 1.0f / 16 : p == focus[t] ? 0.6f : 0.4f / 15;
    SacImage out;
    ck_assert_int_eq(attention_draw(&photo, alphas, T, Hg, Wg, words, 128, 4, &out), SAC_OK);
    const char *path = getenv("SACCADE_DRAW_EXAMPLE");
    if (path) ck_assert_int_eq(sac_image_write_png(path, &out), SAC_OK);
    sac_image_free(&out);
    sac_image_free(&photo);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("draw");
    TCase *tc = tcase_create("draw");
    tcase_add_test(tc, test_upsample_one_hot);
    tcase_add_test(tc, test_upsample_uniform_and_linear);
    tcase_add_test(tc, test_draw_layout);
    tcase_add_test(tc, test_draw_heat_on_attended_cell);
    tcase_add_test(tc, test_draw_errors);
    tcase_add_test(tc, test_draw_example);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
