/*
 * test_mobilenet.c - MobileNetV2 (encoder/mobilenet.c, mobilenet_train.c, depthwise.c,
 * pointwise.c): every depthwise and 1x1 kernel this CPU runs against a direct loop in double;
 * the tensor list; the whole network against torchvision (tests/pyref/make_mnv2_ref.py ->
 * tests/data/mnv2_ref*.safetensors) for both paddings, grid 14, grid 7 and the classifier, by
 * every kernel; a batch against one image at a time and one thread against two (the same bits);
 * the fine-tuning forward against the inference one and a double forward, and its gradients by
 * central differences (STYLE.md section 5).
 *
 * The weights are not in the fixtures: both sides fill tensor t, element i from the formula
 * documented in make_mnv2_ref.py (an integer hash -> uniform in [-a_t, a_t]).
 *
 * Tolerance against torch (float64): |c - r| <= 1e-4 * max|r| + 1e-4 * |r|. The C forward sums
 * in float32 through 52 layers of up to 960 terms each; its error measured here is ~1e-6
 * relative, so 1e-4 leaves room for other BLAS builds and still catches any wrong tap, pad or bias.
 *
 * Size letters: B batch, S input side, C channels, H W spatial, P grid positions, E grid
 * channels, N classes.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "depthwise.h"
#include "mobilenet.h"
#include "pointwise.h"
#include "rng.h"
#include "sac.h"
#include "safetensors.h"
#include "saccade_config.h"
#include "testutil.h"
#include "threadpool.h"

static float *falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ---- the weight formula (make_mnv2_ref.py) ---- */

static void fill_formula(float *x, size_t n, int t, double a)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)i * 0x9E3779B1u + (uint32_t)(t + 1) * 0x85EBCA77u;
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        const double u = (double)(h >> 8) / (double)(1u << 24);
        x[i] = (float)(a * (2.0 * u - 1.0));
    }
}

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static double formula_scale(const MobileNetSpec *s)
{
    if (ends_with(s->name, ".bias")) return 0.2;
    double fan_in = 1.0;
    for (int d = 1; d < s->ndim; d++) fan_in *= (double)s->shape[d];
    const int linear = !strncmp(s->name, "classifier", 10) || ends_with(s->name, "conv.2.weight") ||
                       !strcmp(s->name, "features.1.conv.1.weight");
    return sqrt((linear ? 3.0 : 6.0) / fan_in);
}

typedef struct {
    int n;
    float *t[MOBILENET_MAX_SPECS];
} Weights;

static void weights_make(Weights *w, const MobileNetConfig *cfg)
{
    MobileNetSpec specs[MOBILENET_MAX_SPECS];
    w->n = mobilenet_specs(cfg, specs, MOBILENET_MAX_SPECS);
    ck_assert_int_gt(w->n, 0);
    for (int i = 0; i < w->n; i++) {
        size_t n = 1;
        for (int d = 0; d < specs[i].ndim; d++) n *= (size_t)specs[i].shape[d];
        w->t[i] = falloc(n);
        fill_formula(w->t[i], n, i, formula_scale(&specs[i]));
    }
}

static void weights_free(Weights *w)
{
    for (int i = 0; i < w->n; i++) free(w->t[i]);
}

/* ---- depthwise kernels ---- */

/* out (Ho, Wo, C) = relu6(bias + sum of the taps inside), in double. */
static void depthwise_naive(float *out, const float *inp, const float *wt, const float *bias, int H, int W, int C,
                            int stride, int pt, int pl)
{
    const int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
    for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
            for (int c = 0; c < C; c++) {
                double acc = bias[c];
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        const int y = oy * stride - pt + ky, x = ox * stride - pl + kx;
                        if (y >= 0 && y < H && x >= 0 && x < W)
                            acc += (double)wt[(ky * 3 + kx) * C + c] * inp[((size_t)y * W + x) * C + c];
                    }
                out[((size_t)oy * Wo + ox) * C + c] = (float)(acc < 0.0 ? 0.0 : acc > 6.0 ? 6.0 : acc);
            }
}

START_TEST(test_depthwise_kernels)
{
    /* H, W, C: odd sides and channel counts that leave vector tails, 1-pixel images, sides
     * narrower than the 4-pixel interior blocks, and a wide one */
    static const int shapes[][3] = {{7, 5, 3}, {9, 8, 17}, {1, 1, 5}, {2, 3, 33}, {12, 13, 40}, {5, 16, 96}, {3, 2, 8}};
    SacRng rng;
    sac_rng_seed(&rng, 7, 1);
    int checked = 0;
    for (int k = SAC_KERNEL_C; k <= SAC_KERNEL_AVX512; k++) {
        if (!sac_kernel_supported(k)) {
            printf("depthwise kernel %s: not supported by this CPU, skipped\n", sac_kernel_name(k));
            continue;
        }
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            const int H = shapes[s][0], W = shapes[s][1], C = shapes[s][2];
            float *inp = falloc((size_t)H * W * C), *wt = falloc(9 * (size_t)C), *bias = falloc(C);
            fill_uniform(inp, (size_t)H * W * C, -2.0f, 3.0f, &rng); /* some outputs above 6, some below 0 */
            fill_uniform(wt, 9 * (size_t)C, -1.0f, 1.0f, &rng);
            fill_uniform(bias, C, -0.5f, 0.5f, &rng);
            for (int stride = 1; stride <= 2; stride++) {
                for (int same = 0; same <= 1; same++) {
                    /* SAME: total = max((out - 1) * s + 3 - in, 0), before = total / 2; symmetric: 1 */
                    const int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
                    const int tt = SAC_MAX((Ho - 1) * stride + 3 - H, 0), tl = SAC_MAX((Wo - 1) * stride + 3 - W, 0);
                    const int pt = same ? tt / 2 : 1, pl = same ? tl / 2 : 1;
                    const size_t n_out = (size_t)Ho * Wo * C;
                    float *got = falloc(n_out), *ref = falloc(n_out);
                    depthwise_naive(ref, inp, wt, bias, H, W, C, stride, pt, pl);
                    ck_assert_int_eq(depthwise_forward(got, inp, wt, bias, H, W, C, stride, pt, pl, k), SAC_OK);
                    char name[96];
                    snprintf(name, sizeof(name), "dw %s %dx%dx%d s%d pad %d,%d", sac_kernel_name(k), H, W, C,
                             stride, pt, pl);
                    /* 10 float terms of order 1 */
                    ck_assert_int_eq(check_tensor(name, got, ref, n_out, 1e-5, 1e-5), 0);
                    free(got), free(ref);
                    checked++;
                }
            }
            free(inp), free(wt), free(bias);
        }
    }
    ck_assert_int_ge(checked, 28); /* the C kernel at least */
    /* a kernel the CPU lacks is refused, not run */
    if (!sac_kernel_supported(SAC_KERNEL_AVX512)) {
        float x[9] = {0}, y[9];
        ck_assert_int_eq(depthwise_forward(y, x, x, x, 1, 1, 1, 1, 1, 1, SAC_KERNEL_AVX512), SAC_ERR_UNSUPPORTED);
    }
}
END_TEST

/* ---- pointwise kernels ---- */

START_TEST(test_pointwise_kernels)
{
    /* M, K, N: tails of the 8- and 6-row tiles, partial panels (N % 32: 16, 24, 1, 17), K = 1 */
    static const int shapes[][3] = {{13, 27, 32}, {7, 16, 96}, {65, 24, 144}, {3, 1, 1}, {70, 40, 17}, {9, 33, 24}};
    SacRng rng;
    sac_rng_seed(&rng, 8, 1);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const int ldx = K + 3, ldy = N + 5; /* rows apart, not packed */
        float *x = falloc((size_t)M * ldx), *w = falloc((size_t)N * K), *b = falloc(N), *res = falloc((size_t)M * ldy);
        float *packed = falloc(pointwise_packed_floats(K, N));
        fill_uniform(x, (size_t)M * ldx, -1.0f, 1.0f, &rng);
        fill_uniform(w, (size_t)N * K, -2.0f, 2.0f, &rng); /* outputs past 6 and below 0 */
        fill_uniform(b, N, -1.0f, 1.0f, &rng);
        fill_uniform(res, (size_t)M * ldy, -1.0f, 1.0f, &rng);
        pointwise_pack(packed, w, b, K, N);
        for (int variant = 0; variant < 3; variant++) { /* ReLU6; linear + residual; residual in place */
            const int relu6 = variant == 0, use_res = variant > 0;
            float *ref = falloc((size_t)M * ldy), *vec = NULL;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double acc = b[n] + (use_res ? res[(size_t)m * ldy + n] : 0.0);
                    for (int k = 0; k < K; k++) acc += (double)x[(size_t)m * ldx + k] * w[(size_t)n * K + k];
                    if (relu6) acc = acc < 0.0 ? 0.0 : acc > 6.0 ? 6.0 : acc;
                    ref[(size_t)m * ldy + n] = (float)acc;
                }
            for (int k = SAC_KERNEL_C; k <= SAC_KERNEL_AVX512; k++) {
                if (!sac_kernel_supported(k)) continue;
                float *y = falloc((size_t)M * ldy);
                const float *rp = NULL;
                if (variant == 2) { /* y is res */
                    memcpy(y, res, sizeof(float) * M * ldy);
                    rp = y;
                } else if (variant == 1) {
                    rp = res;
                }
                pointwise_forward(k, y, ldy, x, ldx, rp, ldy, packed, M, K, N, relu6);
                char name[96];
                snprintf(name, sizeof(name), "pw %s %dx%dx%d v%d", sac_kernel_name(k), M, K, N, variant);
                int bad = 0; /* only the N columns of each row */
                for (int m = 0; m < M; m++)
                    bad += check_tensor(name, y + (size_t)m * ldy, ref + (size_t)m * ldy, N, 1e-5, 1e-5) != 0;
                ck_assert_int_eq(bad, 0);
                /* the columns past N are not written */
                for (int m = 0; m < M; m++)
                    for (int j = N; j < ldy; j++)
                        ck_assert_float_eq(y[(size_t)m * ldy + j], variant == 2 ? res[(size_t)m * ldy + j] : 0.0f);
                /* the two vector kernels fuse multiply-add in the same order: the same bits */
                if (k >= SAC_KERNEL_AVX2 && vec) {
                    for (int m = 0; m < M; m++)
                        ck_assert_msg(!memcmp(vec + (size_t)m * ldy, y + (size_t)m * ldy, sizeof(float) * N),
                                      "%s: AVX2 and AVX-512 differ in row %d", name, m);
                    free(y);
                } else if (k >= SAC_KERNEL_AVX2) {
                    vec = y;
                } else {
                    free(y);
                }
            }
            free(ref), free(vec);
        }
        free(x), free(w), free(b), free(res), free(packed);
    }
}
END_TEST

/* ---- the tensor list ---- */

START_TEST(test_specs)
{
    MobileNetConfig cfg;
    mobilenet_config_default(&cfg);
    MobileNetSpec a[MOBILENET_MAX_SPECS], b[MOBILENET_MAX_SPECS];
    cfg.grid = MOBILENET_GRID14;
    ck_assert_int_eq(mobilenet_specs(&cfg, a, MOBILENET_MAX_SPECS), 80);
    ck_assert_str_eq(a[78].name, "features.14.conv.0.0.weight");
    ck_assert_int_eq(a[78].shape[0], 576);
    ck_assert_int_eq(a[78].shape[1], 96);
    cfg.grid = MOBILENET_GRID7;
    ck_assert_int_eq(mobilenet_specs(&cfg, b, MOBILENET_MAX_SPECS), 104);
    for (int i = 0; i < 80; i++) { /* a prefix */
        ck_assert_str_eq(a[i].name, b[i].name);
        ck_assert_int_eq(a[i].ndim, b[i].ndim);
        for (int d = 0; d < 4; d++) ck_assert_int_eq(a[i].shape[d], b[i].shape[d]);
    }
    ck_assert_str_eq(b[0].name, "features.0.0.weight");
    ck_assert_int_eq(b[0].ndim, 4);
    ck_assert_int_eq(b[0].shape[0], 32);
    ck_assert_int_eq(b[0].shape[1], 3);
    ck_assert_str_eq(b[1].name, "features.0.0.bias");
    ck_assert_int_eq(b[1].ndim, 1);
    ck_assert_int_eq(b[1].shape[1], 0);
    ck_assert_str_eq(b[2].name, "features.1.conv.0.0.weight");
    ck_assert_int_eq(b[2].shape[1], 1);
    ck_assert_str_eq(b[4].name, "features.1.conv.1.weight");
    ck_assert_str_eq(b[100].name, "features.17.conv.2.weight");
    ck_assert_int_eq(b[100].shape[0], 320);
    ck_assert_int_eq(b[100].shape[1], 960);
    ck_assert_str_eq(b[102].name, "features.18.0.weight");
    cfg.grid = MOBILENET_CLASSIFY;
    cfg.n_classes = 10;
    ck_assert_int_eq(mobilenet_specs(&cfg, a, MOBILENET_MAX_SPECS), 106);
    ck_assert_str_eq(a[104].name, "classifier.1.weight");
    ck_assert_int_eq(a[104].ndim, 2);
    ck_assert_int_eq(a[104].shape[0], 10);
    ck_assert_int_eq(a[104].shape[1], 1280);
    /* a short array gets a prefix and the full count */
    ck_assert_int_eq(mobilenet_specs(&cfg, b, 3), 106);
    ck_assert_str_eq(b[2].name, "features.1.conv.0.0.weight");
    cfg.image_size = 100;
    ck_assert_int_eq(mobilenet_specs(&cfg, NULL, 0), SAC_ERR_INVALID);
    ck_assert_ptr_null(mobilenet_infer_create(&cfg, NULL, 1));
}
END_TEST

/* ---- against torchvision ---- */

typedef struct {
    SafeTensors *st;
    char path[1024];
} Ref;

static void ref_open(Ref *r, const char *file)
{
    const char *dir = getenv("SACCADE_TEST_DATA");
    snprintf(r->path, sizeof(r->path), "%s/%s", dir ? dir : SACCADE_SOURCE_MODELDIR "/../tests/data", file);
    r->st = safetensors_read(r->path);
    ck_assert_msg(r->st != NULL, "cannot read %s", r->path);
}

/* The named reference tensor, which must have n floats. */
static float *ref_load(const Ref *r, const char *name, size_t n)
{
    const SafeTensor *t = safetensors_find(r->st, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", r->path, name);
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t total = 1;
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d], total *= (size_t)t->shape[d];
    ck_assert_msg(total == n, "%s: %s has %zu elements, expected %zu", r->path, name, total, n);
    float *x = falloc(n);
    ck_assert_int_eq(safetensors_load_f32(r->st, name, x, t->ndim, shape), SAC_OK);
    return x;
}

/* |c - r| <= 1e-4 * max|r| + 1e-4 * |r| */
static int check_vs_torch(const char *name, const float *got, const float *ref, size_t n)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    return check_tensor(name, got, ref, n, 1e-4 * mx, 1e-4);
}

/* Grid 14, grid 7 and logits of B images of side S against "<pad>.grid14" etc. (those present),
 * by kernel `kernel`; with B > 1 also one image at a time and with another pool size (the same
 * bits). */
static int run_reference(const Ref *r, const float *images, int B, int S, int same, int kernel)
{
    const char *pad = same ? "same" : "symmetric";
    int bad = 0;
    const int grids[3] = {MOBILENET_GRID14, MOBILENET_GRID7, MOBILENET_CLASSIFY};
    for (int g = 0; g < 3; g++) {
        MobileNetConfig cfg;
        mobilenet_config_default(&cfg);
        cfg.grid = grids[g], cfg.pad_same = same, cfg.image_size = S, cfg.n_classes = 1001;
        char key[64], label[96];
        snprintf(key, sizeof(key), "%s.%s", pad, g == 0 ? "grid14" : g == 1 ? "grid7" : "logits");
        if (!safetensors_find(r->st, key)) continue;
        Weights w;
        weights_make(&w, &cfg);
        MobileNetInfer *net = mobilenet_infer_create(&cfg, (const float *const *)w.t, B);
        ck_assert_ptr_nonnull(net);
        ck_assert_int_eq(mobilenet_infer_set_kernel(net, kernel), SAC_OK);
        const int side = mobilenet_grid_side(&cfg);
        const size_t per = g == 2 ? (size_t)cfg.n_classes : (size_t)side * side * mobilenet_grid_channels(&cfg);
        float *ref = ref_load(r, key, (size_t)B * per), *got = falloc((size_t)B * per);
        float *one = falloc((size_t)B * per);
        const size_t img = (size_t)3 * S * S;
        if (g == 2) {
            ck_assert_int_eq(mobilenet_infer_classify(net, got, NULL, images, B), SAC_OK);
            for (int b = 0; b < B; b++)
                ck_assert_int_eq(mobilenet_infer_classify(net, one + b * per, NULL, images + b * img, 1), SAC_OK);
        } else {
            ck_assert_int_eq(mobilenet_infer_forward(net, got, images, B), SAC_OK);
            for (int b = 0; b < B; b++)
                ck_assert_int_eq(mobilenet_infer_forward(net, one + b * per, images + b * img, 1), SAC_OK);
        }
        snprintf(label, sizeof(label), "S%d %s %s", S, key, sac_kernel_name(kernel));
        bad += check_vs_torch(label, got, ref, (size_t)B * per);
        if (B > 1) {
            /* one image alone is split into bands of rows, two are not: the kernels sum each
             * output in one order whatever rows come with it, so the bits are the same */
            const int same_batch = !memcmp(one, got, sizeof(float) * B * per);
            printf("check S%d %-26s %s\n", S, key, same_batch ? "batch and one by one: same bits" : "batch and one by one DIFFER");
            bad += !same_batch;
            const int threads = sac_threads();
            sac_threads_set(threads > 1 ? 1 : 2);
            if (g == 2)
                ck_assert_int_eq(mobilenet_infer_classify(net, one, NULL, images, B), SAC_OK);
            else
                ck_assert_int_eq(mobilenet_infer_forward(net, one, images, B), SAC_OK);
            sac_threads_set(threads);
            const int same_bits = !memcmp(one, got, sizeof(float) * B * per);
            printf("check S%d %-26s %s\n", S, key, same_bits ? "1 and 2 threads: same bits" : "1 and 2 threads DIFFER");
            bad += !same_bits;
        }
        free(ref), free(got), free(one);
        mobilenet_infer_free(net);
        weights_free(&w);
    }
    return bad;
}

START_TEST(test_reference_64)
{
    Ref r;
    ref_open(&r, "mnv2_ref.safetensors");
    float *images = ref_load(&r, "images", (size_t)2 * 3 * 64 * 64);
    int bad = 0;
    for (int k = SAC_KERNEL_C; k <= SAC_KERNEL_AVX512; k++) {
        if (!sac_kernel_supported(k)) {
            printf("kernel %s: not supported by this CPU, skipped\n", sac_kernel_name(k));
            continue;
        }
        bad += run_reference(&r, images, 2, 64, 1, k);
        bad += run_reference(&r, images, 2, 64, 0, k);
    }
    ck_assert_int_eq(bad, 0);
    free(images);
    safetensors_free(r.st);
}
END_TEST

START_TEST(test_reference_224)
{
    Ref r;
    ref_open(&r, "mnv2_ref224.safetensors");
    float *image = falloc((size_t)3 * 224 * 224);
    fill_formula(image, (size_t)3 * 224 * 224, 1000, 1.0);
    ck_assert_int_eq(run_reference(&r, image, 1, 224, 1, SAC_KERNEL_AUTO), 0);
    free(image);
    safetensors_free(r.st);
}
END_TEST

START_TEST(test_invalid_batch)
{
    MobileNetConfig cfg;
    mobilenet_config_default(&cfg);
    cfg.image_size = 32;
    Weights w;
    weights_make(&w, &cfg);
    MobileNetInfer *net = mobilenet_infer_create(&cfg, (const float *const *)w.t, 2);
    ck_assert_ptr_nonnull(net);
    float img[3 * 32 * 32] = {0}, feats[3 * 1280];
    ck_assert_int_eq(mobilenet_infer_forward(net, feats, img, 3), SAC_ERR_INVALID);
    ck_assert_int_eq(mobilenet_infer_forward(net, feats, img, 0), SAC_ERR_INVALID);
    ck_assert_int_eq(mobilenet_infer_classify(net, feats, NULL, img, 1), SAC_ERR_INVALID); /* not a classify net */
    ck_assert_int_eq(mobilenet_infer_forward(net, feats, img, 1), SAC_OK);
    mobilenet_infer_free(net);
    mobilenet_infer_free(NULL);
    const float *missing[MOBILENET_MAX_SPECS] = {0};
    ck_assert_ptr_null(mobilenet_infer_create(&cfg, missing, 1));
    weights_free(&w);
}
END_TEST

/* ---- training the top blocks: forward against double, backward by finite differences ---- */

static double relu6d(double v) { return v < 0.0 ? 0.0 : v > 6.0 ? 6.0 : v; }

/* y (M, N) = x (M, K) @ W^T + b in double, W (N, K) float. */
static void ref_conv1x1(double *y, const double *x, const float *W, const float *b, int M, int K, int N, int relu6)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = b[n];
            for (int k = 0; k < K; k++) acc += x[(size_t)m * K + k] * W[(size_t)n * K + k];
            y[(size_t)m * N + n] = relu6 ? relu6d(acc) : acc;
        }
}

/* feats (B, P, E) of blocks features.first.. and the head, from inp (B, side, side, cin), in
 * double, straight from torch's definition (InvertedResidual, torch layout weights). */
static void ref_top_forward(double *feats, const float *inp, float *const *params, const MobileNetConfig *cfg,
                            int first, int B)
{
    const int last = cfg->grid == MOBILENET_GRID14 ? 13 : 17;
    MobileNetBlockShape sh;
    mobilenet_block_shape(cfg, first, &sh);
    size_t n = (size_t)B * sh.side * sh.side * sh.cin;
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = inp[i];
    for (int j = 0; first + j <= last; j++) {
        mobilenet_block_shape(cfg, first + j, &sh);
        float *const *w = params + 6 * j;
        const int H = sh.side, Ho = sh.side_out, C = sh.hid, M_in = B * H * H, M_out = B * Ho * Ho;
        double *e = malloc(sizeof(double) * M_in * C), *d = malloc(sizeof(double) * M_out * C);
        double *y = malloc(sizeof(double) * M_out * sh.cout);
        ref_conv1x1(e, x, w[0], w[1], M_in, sh.cin, C, 1);
        for (int b = 0; b < B; b++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Ho; ox++)
                    for (int c = 0; c < C; c++) {
                        double acc = w[3][c];
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int iy = oy * sh.stride - sh.pad + ky, ix = ox * sh.stride - sh.pad + kx;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < H)
                                    acc += w[2][c * 9 + ky * 3 + kx] * e[(((size_t)b * H + iy) * H + ix) * C + c];
                            }
                        d[(((size_t)b * Ho + oy) * Ho + ox) * C + c] = relu6d(acc);
                    }
        ref_conv1x1(y, d, w[4], w[5], M_out, C, sh.cout, 0);
        if (sh.residual)
            for (size_t i = 0; i < (size_t)M_out * sh.cout; i++) y[i] += x[i];
        free(x), free(e), free(d);
        x = y;
    }
    const int nb = last - first + 1;
    ref_conv1x1(feats, x, params[6 * nb], params[6 * nb + 1], B * sh.side_out * sh.side_out, sh.cout,
                mobilenet_grid_channels(cfg), 1);
    free(x);
}

typedef struct {
    const MobileNetConfig *cfg;
    int first, B;
    float *const *params;
    float *inp, *dfeats;
    double *feats;
    size_t n_feats;
} TopCtx;

static double top_loss(void *p)
{
    TopCtx *c = p;
    ref_top_forward(c->feats, c->inp, c->params, c->cfg, c->first, c->B);
    double L = 0.0;
    for (size_t i = 0; i < c->n_feats; i++) L += c->feats[i] * c->dfeats[i];
    return L;
}

/* Fine-tuning from block `first` at side S: the trunk + training forward equal the inference
 * forward, the float forward the double one, and every gradient central differences of the
 * double loss L = sum(feats * dfeats) at `samples` random indices per tensor. */
static void run_top_gradcheck(int grid, int same, int first, int samples, uint64_t seed)
{
    SacRng rng;
    sac_rng_seed(&rng, seed, 1);
    MobileNetConfig cfg;
    mobilenet_config_default(&cfg);
    cfg.grid = grid, cfg.pad_same = same, cfg.image_size = 64;
    const int B = 2, S = 64;
    Weights w;
    weights_make(&w, &cfg);
    MobileNetSpec specs[MOBILENET_MAX_SPECS];
    mobilenet_specs(&cfg, specs, MOBILENET_MAX_SPECS);
    MobileNetBlockShape sh;
    ck_assert_int_eq(mobilenet_block_shape(&cfg, first, &sh), SAC_OK);
    MobileNetActs *acts = mobilenet_acts_create(&cfg, first, B);
    ck_assert_ptr_nonnull(acts);
    const int np = mobilenet_acts_n_params(acts);
    ck_assert_int_eq(sh.first_spec + np, w.n);
    float *const *params = w.t + sh.first_spec;
    float *grads[MOBILENET_MAX_SPECS];
    size_t numel[MOBILENET_MAX_SPECS];
    for (int i = 0; i < np; i++) {
        const MobileNetSpec *s = &specs[sh.first_spec + i];
        numel[i] = 1;
        for (int d = 0; d < s->ndim; d++) numel[i] *= (size_t)s->shape[d];
        grads[i] = falloc(numel[i]);
    }
    /* the input: the trunk's output on random images */
    MobileNetInfer *net = mobilenet_infer_create(&cfg, (const float *const *)w.t, B);
    ck_assert_ptr_nonnull(net);
    float *images = falloc((size_t)B * 3 * S * S);
    fill_uniform(images, (size_t)B * 3 * S * S, -1.0f, 1.0f, &rng);
    const size_t n_in = (size_t)B * sh.side * sh.side * sh.cin;
    float *inp = falloc(n_in), *dinp = falloc(n_in);
    ck_assert_int_eq(mobilenet_infer_trunk(net, inp, images, B, first), SAC_OK);
    const int side = mobilenet_grid_side(&cfg);
    const size_t n_feats = (size_t)B * side * side * mobilenet_grid_channels(&cfg);
    float *feats = falloc(n_feats), *want = falloc(n_feats), *dfeats = falloc(n_feats);
    ck_assert_int_eq(mobilenet_infer_forward(net, want, images, B), SAC_OK);
    ck_assert_int_eq(mobilenet_forward(feats, acts, inp, (const float *const *)params, B), SAC_OK);
    char name[96];
    snprintf(name, sizeof(name), "top g%d from %d vs inference", grid, first);
    ck_assert_int_eq(check_vs_torch(name, feats, want, n_feats), 0);
    TopCtx c = {&cfg, first, B, params, inp, dfeats, malloc(sizeof(double) * n_feats), n_feats};
    ref_top_forward(c.feats, inp, params, &cfg, first, B);
    for (size_t i = 0; i < n_feats; i++) want[i] = (float)c.feats[i];
    snprintf(name, sizeof(name), "top g%d from %d vs double", grid, first);
    ck_assert_int_eq(check_tensor(name, feats, want, n_feats, 1e-5, 1e-4), 0);

    fill_uniform(dfeats, n_feats, -1.0f, 1.0f, &rng);
    ck_assert_int_eq(mobilenet_backward(grads, dinp, acts, dfeats, (const float *const *)params, B), SAC_OK);
    int bad = 0;
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof(name), "g%d %s", grid, specs[sh.first_spec + i].name);
        /* float gradients summed over up to ~1000 terms: ~1e-5 relative. A tensor reaches
         * thousands of ReLU6 units downstream, so a step of 1e-4 crossed a kink in 1 sample of
         * 3 (errors of 1-4%); the double loss allows eps 1e-6 (as test_encoder.c) */
        bad += gradcheck(name, params[i], grads[i], numel[i], top_loss, &c, samples, 1e-6, 1e-3, 1e-4, &rng);
    }
    snprintf(name, sizeof(name), "g%d input of features.%d", grid, first);
    bad += gradcheck(name, inp, dinp, n_in, top_loss, &c, samples, 1e-6, 1e-3, 1e-4, &rng);
    ck_assert_int_eq(bad, 0);
    /* a second backward accumulates: the gradients double */
    float *g0 = falloc(numel[0]);
    memcpy(g0, grads[0], sizeof(float) * numel[0]);
    ck_assert_int_eq(mobilenet_backward(grads, NULL, acts, dfeats, (const float *const *)params, B), SAC_OK);
    for (size_t i = 0; i < numel[0]; i++) ck_assert_float_eq_tol(grads[0][i], 2.0f * g0[i], 1e-6f + 1e-6f * fabsf(g0[i]));
    free(g0);
    for (int i = 0; i < np; i++) free(grads[i]);
    free(images), free(inp), free(dinp), free(feats), free(want), free(dfeats), free(c.feats);
    mobilenet_infer_free(net);
    mobilenet_acts_free(acts);
    weights_free(&w);
}

/* grid 7 from features.14: a stride-2 block with SAME padding, two residual blocks, one without,
 * the head (1x1 to 1280) */
START_TEST(test_top_gradcheck_grid7) { run_top_gradcheck(MOBILENET_GRID7, 1, 14, 12, 31); }
END_TEST

/* grid 14 from features.12 (symmetric padding): two residual blocks at 4 x 4 and features.14's
 * expansion as the head */
START_TEST(test_top_gradcheck_grid14) { run_top_gradcheck(MOBILENET_GRID14, 0, 12, 25, 32); }
END_TEST

int main(void)
{
    Suite *s = suite_create("mobilenet");
    const TTest *tests[] = {test_depthwise_kernels, test_pointwise_kernels, test_specs, test_invalid_batch,
        test_reference_64, test_reference_224, test_top_gradcheck_grid14, test_top_gradcheck_grid7, NULL};
    check_case(s, "mobilenet", 300, tests);
    return check_run(s);
}
