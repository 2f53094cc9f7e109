/*
 * conv2d.c - 3x3 convolution (padding 1, stride 1|2) by im2col + GEMM; see conv2d.h.
 *
 * Reference: torch.nn.Conv2d(C, OC, kernel_size=3, stride=s, padding=1).
 * Size letters: B batch, C input channels, OC output channels, H W input side, Ho Wo output
 * side, P = Ho * Wo output positions per image, K = C * 9 rows of the column matrix.
 *
 * For one image, out (OC, P) = weight (OC, K) @ col (K, P), col[(c*3 + ky)*3 + kx][oy*Wo + ox]
 * = inp[c][oy*s + ky - 1][ox*s + kx - 1] (0 outside). Columns are processed in tiles so the
 * column matrix stays near the cache: a tile is a band of output rows of one image, or, when
 * an image has fewer positions than a tile, several whole images side by side (their output
 * then goes through a (OC, tile) buffer and is scattered back to NCHW).
 *
 * Stride-1 bands use a column matrix split by kernel row, a third of the size: colr (3C, ld)
 * holds, for the band's rows and one above and below, colr[c*3 + kx][r*W + x] = inp[c][oy0 - 1
 * + r][x + kx - 1]. Shifted down by ky rows (colr + ky*W, same leading dimension) it is the
 * ky-th third of col, so out = sum_ky wsplit[ky] (OC, 3C) @ (colr + ky*W): three GEMMs as fast
 * as the one (measured), for a third of the copying in im2col and col2im (which run on one
 * thread while BLAS uses them all).
 */
#include "conv2d.h"

#include <string.h>

#include "matmul.h"
#include "sac.h"
#include "winograd.h"

/* Column-matrix budget of one tile, in floats, and the bounds on its width. */
enum { CONV_TILE_FLOATS = 1 << 18, CONV_TILE_MIN_COLS = 256, CONV_TILE_MAX_COLS = 4096 };

typedef struct ConvPlan {
    int Ho, Wo, P, K;
    int split; /* stride-1 bands through the row-split column matrix, see the top of the file */
    int group; /* images per tile: > 1 only when one image is narrower than a tile */
    int rows;  /* output rows per band when group == 1 */
    int ncol;  /* widest tile, in output columns */
    size_t col_floats; /* column matrix of the widest tile */
} ConvPlan;

static ConvPlan conv_plan(int B, int C, int H, int W, int stride)
{
    ConvPlan pl;
    pl.Ho = conv2d_out_size(H, stride);
    pl.Wo = conv2d_out_size(W, stride);
    pl.P = pl.Ho * pl.Wo;
    pl.K = C * 9;
    int target = CONV_TILE_FLOATS / pl.K;
    target = SAC_MAX(target, CONV_TILE_MIN_COLS);
    target = SAC_MIN(target, CONV_TILE_MAX_COLS);
    if (pl.P >= target || B <= 1) {
        pl.group = 1;
        /* bands of equal height (no thin last band) */
        int rows = SAC_MAX(1, SAC_MIN(pl.Ho, target / pl.Wo));
        int bands = (pl.Ho + rows - 1) / rows;
        pl.rows = (pl.Ho + bands - 1) / bands;
        pl.ncol = pl.rows * pl.Wo;
        pl.split = stride == 1;
    } else {
        pl.group = SAC_MAX(1, SAC_MIN(B, target / pl.P));
        pl.rows = pl.Ho;
        pl.ncol = pl.group * pl.P;
        pl.split = 0;
    }
    pl.col_floats = pl.split ? (size_t)C * 3 * (pl.rows + 2) * W : (size_t)pl.K * pl.ncol;
    return pl;
}

int conv2d_out_size(int n, int stride) { return (n - 1) / stride + 1; }

/* The forward goes through Winograd F(2x2, 3x3) for stride 1 with at least WINO_MIN_C input
 * channels: with fewer its 16 GEMMs are too thin (K = C) to beat im2col's one (K = 9C).
 * With winograd.c's own register-blocked products (AVX-512), conv 32->64 of the default
 * encoder at 64 x 64 ran 2.5x faster than by im2col (11.5 against 28.9 ms for 16 images, one
 * thread, CPU time), 64->128 and up 1.3-3x. */
enum { WINO_MIN_C = 32 };

static int use_winograd(int C, int stride) { return stride == 1 && C >= WINO_MIN_C; }

/* The input gradient goes through Winograd too (a convolution of the OC output channels into
 * C) on sides of 8 x 8 and up: with the im2col weight gradient it once beat im2col's shared
 * pass only from 16 x 16; with winograd.c's own products and the weight gradient by Winograd as
 * well, the separate pass won at 8 x 8 too (backward of 256->256 at 8 x 8, 16 images, one
 * thread: 19.4 -> 13.0 ms). */
enum { WINO_MIN_GRAD_PIXELS = 64 };

static int use_winograd_grad(int OC, int H, int W, int stride)
{
    return use_winograd(OC, stride) && H * W >= WINO_MIN_GRAD_PIXELS;
}

/* The weight gradient goes through Winograd (winograd_weight_grad) for stride 1 with at least
 * WINO_MIN_C input and WINO_MIN_GRAD_OC output channels. */
enum { WINO_MIN_GRAD_OC = 16 };

static int use_winograd_wgrad(int C, int OC, int stride) { return use_winograd(C, stride) && OC >= WINO_MIN_GRAD_OC; }

size_t conv2d_scratch_floats(int B, int C, int H, int W, int OC, int stride)
{
    ConvPlan pl = conv_plan(B, C, H, W, stride);
    /* col, dcol, the (OC, tile) buffer of grouped tiles, the split weight and its gradient */
    size_t n = 2 * pl.col_floats;
    if (pl.group > 1) n += (size_t)OC * pl.ncol;
    if (pl.split) n += 2 * (size_t)OC * pl.K;
    /* the stride-1 forward: transformed weights + winograd's own */
    if (use_winograd(C, stride))
        n = SAC_MAX(n, winograd_weight_floats(C, OC) + winograd_scratch_floats(C, OC, H, W));
    if (use_winograd_grad(OC, H, W, stride)) /* the input gradient: a convolution of OC channels into C */
        n = SAC_MAX(n, winograd_weight_floats(OC, C) + winograd_scratch_floats(OC, C, H, W));
    if (use_winograd_wgrad(C, OC, stride)) n = SAC_MAX(n, winograd_wgrad_scratch_floats(C, OC, H, W));
    return n;
}

size_t conv2d_prepared_floats(int C, int OC, int stride)
{
    return use_winograd(C, stride) ? winograd_weight_floats(C, OC) : 0;
}

void conv2d_prepare(float *prepared, const float *weight, const float *scale, int C, int OC, int stride)
{
    if (!use_winograd(C, stride)) return;
    winograd_weights(prepared, weight, C, OC);
    if (scale) /* the transform is linear: U(s g) = s U(g); U is (16, OC, C) */
        for (int xi = 0; xi < 16; xi++)
            for (int o = 0; o < OC; o++)
                for (int c = 0; c < C; c++) prepared[((size_t)xi * OC + o) * C + c] *= scale[o];
}

void conv2d_weight_split(float *wsplit, const float *weight, int C, int OC)
{
    for (int ky = 0; ky < 3; ky++)
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++)
                for (int kx = 0; kx < 3; kx++)
                    wsplit[((size_t)ky * OC + o) * 3 * C + c * 3 + kx] = weight[(((size_t)o * C + c) * 3 + ky) * 3 + kx];
}

/* dweight (OC, C, 3, 3) += dwsplit (3, OC, 3C): the adjoint of conv2d_weight_split. */
static void conv_weight_unsplit_add(float *dweight, const float *dwsplit, int C, int OC)
{
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    dweight[(((size_t)o * C + c) * 3 + ky) * 3 + kx] += dwsplit[((size_t)ky * OC + o) * 3 * C + c * 3 + kx];
}

/* The output columns [ox_lo, ox_hi) whose input column ox*stride + kx - 1 lies inside [0, W). */
static void conv_valid_cols(int W, int Wo, int stride, int kx, int *ox_lo, int *ox_hi)
{
    int lo = 0;
    while (lo < Wo && lo * stride + kx - 1 < 0) lo++;
    int hi = Wo;
    while (hi > lo && (hi - 1) * stride + kx - 1 >= W) hi--;
    *ox_lo = lo;
    *ox_hi = hi;
}

/* Output rows [lo, hi) within [oy0, oy1) whose input row oy*stride + ky - 1 lies inside [0, H). */
static void conv_valid_rows(int H, int stride, int ky, int oy0, int oy1, int *lo, int *hi)
{
    int a = oy0, b = oy1;
    while (a < b && a * stride + ky - 1 < 0) a++;
    while (b > a && (b - 1) * stride + ky - 1 >= H) b--;
    *lo = a;
    *hi = b;
}

/* Stride 1, whole rows of W: dst[r*W + x] = src[r*W + x + kx - 1] over n = rows*W values, 0
 * where x + kx - 1 leaves [0, W). The rows are contiguous in both, so this is one shifted copy
 * plus the zeroed edge column. */
static void im2col_s1_block(float *dst, const float *src, int n, int W, int kx)
{
    if (kx == 1) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (kx == 0) {
        dst[0] = 0.0f;
        memcpy(dst + 1, src, sizeof(float) * (size_t)(n - 1));
        for (int i = 0; i < n; i += W) dst[i] = 0.0f;
    } else {
        memcpy(dst, src + 1, sizeof(float) * (size_t)(n - 1));
        for (int i = W - 1; i < n; i += W) dst[i] = 0.0f;
    }
}

/* Adjoint of im2col_s1_block: dst[r*W + x + kx - 1] += src[r*W + x] where inside the row.
 * Zeroes the entries of src that fell outside (it is scratch, zeroed after use anyway). */
static void col2im_s1_block(float *dst, float *src, int n, int W, int kx)
{
    if (kx == 1) {
        for (int i = 0; i < n; i++) dst[i] += src[i];
    } else if (kx == 0) {
        for (int i = 0; i < n; i += W) src[i] = 0.0f;
        for (int i = 1; i < n; i++) dst[i - 1] += src[i];
    } else {
        for (int i = W - 1; i < n; i += W) src[i] = 0.0f;
        for (int i = 0; i < n - 1; i++) dst[i + 1] += src[i];
    }
}

/* col (K, ldc): columns [0, (oy1 - oy0) * Wo) from output rows [oy0, oy1) of img (C, H, W). */
static void im2col_rows(float *col, int ldc, const float *img, int C, int H, int W, int stride,
                        int Wo, int oy0, int oy1)
{
    for (int c = 0; c < C; c++) {
        for (int ky = 0; ky < 3; ky++) {
            int lo, hi;
            conv_valid_rows(H, stride, ky, oy0, oy1, &lo, &hi);
            for (int kx = 0; kx < 3; kx++) {
                float *row = col + (size_t)((c * 3 + ky) * 3 + kx) * ldc;
                /* rows above and below the image are padding */
                memset(row, 0, sizeof(float) * (size_t)(lo - oy0) * Wo);
                memset(row + (size_t)(hi - oy0) * Wo, 0, sizeof(float) * (size_t)(oy1 - hi) * Wo);
                if (hi <= lo) continue;
                float *dst = row + (size_t)(lo - oy0) * Wo;
                if (stride == 1) {
                    const float *src = img + ((size_t)c * H + lo + ky - 1) * W;
                    im2col_s1_block(dst, src, (hi - lo) * W, W, kx);
                    continue;
                }
                int xl, xh;
                conv_valid_cols(W, Wo, stride, kx, &xl, &xh);
                for (int oy = lo; oy < hi; oy++, dst += Wo) {
                    const float *src = img + ((size_t)c * H + oy * stride + ky - 1) * W;
                    for (int ox = 0; ox < xl; ox++) dst[ox] = 0.0f;
                    for (int ox = xl; ox < xh; ox++) dst[ox] = src[ox * stride + kx - 1];
                    for (int ox = xh; ox < Wo; ox++) dst[ox] = 0.0f;
                }
            }
        }
    }
}

/* Adjoint of im2col_rows: dimg (C, H, W) += the column gradients in col (K, ldc), columns
 * [0, (oy1 - oy0) * Wo). Leaves those columns of col zero (so the next GEMM can accumulate into
 * it with beta = 1, which spares BLAS's separate pass that zeroes C for beta = 0). */
static void col2im_rows(float *dimg, float *col, int ldc, int C, int H, int W, int stride, int Wo,
                        int oy0, int oy1)
{
    const size_t ncol = (size_t)(oy1 - oy0) * Wo;
    for (int c = 0; c < C; c++) {
        for (int ky = 0; ky < 3; ky++) {
            int lo, hi;
            conv_valid_rows(H, stride, ky, oy0, oy1, &lo, &hi);
            for (int kx = 0; kx < 3; kx++) {
                float *row = col + (size_t)((c * 3 + ky) * 3 + kx) * ldc;
                if (hi > lo) {
                    float *src = row + (size_t)(lo - oy0) * Wo;
                    if (stride == 1) {
                        float *dst = dimg + ((size_t)c * H + lo + ky - 1) * W;
                        col2im_s1_block(dst, src, (hi - lo) * W, W, kx);
                    } else {
                        int xl, xh;
                        conv_valid_cols(W, Wo, stride, kx, &xl, &xh);
                        for (int oy = lo; oy < hi; oy++, src += Wo) {
                            float *dst = dimg + ((size_t)c * H + oy * stride + ky - 1) * W;
                            for (int ox = xl; ox < xh; ox++) dst[ox * stride + kx - 1] += src[ox];
                        }
                    }
                }
                memset(row, 0, sizeof(float) * ncol);
            }
        }
    }
}

/* The row-split column matrix of output rows [oy0, oy1) (stride 1): col (3C, ld), ld =
 * (oy1 - oy0 + 2) * W, col[c*3 + kx][r*W + x] = img[c][oy0 - 1 + r][x + kx - 1] (0 outside),
 * r over the band's rows and the one above and below. */
static void im2col_split(float *col, int ld, const float *img, int C, int H, int W, int oy0, int oy1)
{
    const int R = oy1 - oy0 + 2, iy0 = oy0 - 1;
    const int r_lo = iy0 < 0 ? -iy0 : 0, r_hi = SAC_MIN(R, H - iy0);
    for (int c = 0; c < C; c++) {
        for (int kx = 0; kx < 3; kx++) {
            float *row = col + (size_t)(c * 3 + kx) * ld;
            memset(row, 0, sizeof(float) * (size_t)r_lo * W);
            memset(row + (size_t)r_hi * W, 0, sizeof(float) * (size_t)(R - r_hi) * W);
            if (r_hi > r_lo)
                im2col_s1_block(row + (size_t)r_lo * W, img + ((size_t)c * H + iy0 + r_lo) * W, (r_hi - r_lo) * W,
                                W, kx);
        }
    }
}

/* Adjoint of im2col_split: dimg (C, H, W) += col (3C, ld); leaves col zero. */
static void col2im_split(float *dimg, float *col, int ld, int C, int H, int W, int oy0, int oy1)
{
    const int R = oy1 - oy0 + 2, iy0 = oy0 - 1;
    const int r_lo = iy0 < 0 ? -iy0 : 0, r_hi = SAC_MIN(R, H - iy0);
    for (int c = 0; c < C; c++) {
        for (int kx = 0; kx < 3; kx++) {
            float *row = col + (size_t)(c * 3 + kx) * ld;
            if (r_hi > r_lo)
                col2im_s1_block(dimg + ((size_t)c * H + iy0 + r_lo) * W, row + (size_t)r_lo * W, (r_hi - r_lo) * W,
                                W, kx);
            memset(row, 0, sizeof(float) * (size_t)R * W);
        }
    }
}

/* y (OC rows of n, leading dim ldy) += bias, then max(0, .) when relu. */
static void conv_epilogue(float *y, int ldy, const float *bias, int OC, int n, int relu)
{
    for (int o = 0; o < OC; o++) {
        float *r = y + (size_t)o * ldy;
        float b = bias ? bias[o] : 0.0f;
        if (relu) {
            for (int i = 0; i < n; i++) {
                float v = r[i] + b;
                r[i] = v > 0.0f ? v : 0.0f;
            }
        } else if (bias) {
            for (int i = 0; i < n; i++) r[i] += b;
        }
    }
}

/* Where the pieces of the scratch buffer live. */
typedef struct ConvScratch {
    float *col, *dcol, *tmp, *wsplit, *dwsplit;
} ConvScratch;

static ConvScratch conv_scratch(float *scratch, const ConvPlan *pl, int OC)
{
    ConvScratch s;
    s.col = scratch;
    s.dcol = s.col + pl->col_floats;
    s.tmp = s.dcol + pl->col_floats;
    s.wsplit = s.tmp + (pl->group > 1 ? (size_t)OC * pl->ncol : 0);
    s.dwsplit = s.wsplit + (pl->split ? (size_t)OC * pl->K : 0);
    return s;
}

static void conv_forward_impl(float *out, float *scratch, const float *inp, const float *weight,
                              const float *prepared, const float *bias, int B, int C, int H, int W,
                              int OC, int stride, int relu)
{
    if (use_winograd(C, stride)) {
        if (!prepared) {
            winograd_weights(scratch, weight, C, OC);
            prepared = scratch;
            scratch += winograd_weight_floats(C, OC);
        }
        winograd_forward(out, scratch, inp, prepared, bias, B, C, H, W, OC, relu ? WINO_RELU : WINO_STORE);
        return;
    }
    const float *wsplit = NULL;
    const ConvPlan pl = conv_plan(B, C, H, W, stride);
    const ConvScratch sc = conv_scratch(scratch, &pl, OC);
    const size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * pl.P, ws_row = (size_t)OC * 3 * C;
    if (pl.split && !wsplit) {
        conv2d_weight_split(sc.wsplit, weight, C, OC);
        wsplit = sc.wsplit;
    }
    for (int b0 = 0; b0 < B; b0 += pl.group) {
        int nb = SAC_MIN(pl.group, B - b0);
        if (pl.group == 1) {
            for (int oy0 = 0; oy0 < pl.Ho; oy0 += pl.rows) {
                int oy1 = SAC_MIN(pl.Ho, oy0 + pl.rows);
                int n = (oy1 - oy0) * pl.Wo;
                float *y = out + b0 * out_img + (size_t)oy0 * pl.Wo;
                if (pl.split) {
                    /* out (OC, n) = sum_ky wsplit[ky] (OC, 3C) @ col rows shifted down by ky */
                    int ld = (oy1 - oy0 + 2) * W;
                    im2col_split(sc.col, ld, inp + b0 * in_img, C, H, W, oy0, oy1);
                    for (int ky = 0; ky < 3; ky++)
                        sac_gemm(0, 0, OC, n, 3 * C, 1.0f, wsplit + ky * ws_row, 3 * C, sc.col + (size_t)ky * W, ld,
                                 ky ? 1.0f : 0.0f, y, pl.P);
                } else {
                    /* out (OC, n) = weight (OC, K) @ col (K, n) */
                    im2col_rows(sc.col, n, inp + b0 * in_img, C, H, W, stride, pl.Wo, oy0, oy1);
                    sac_gemm(0, 0, OC, n, pl.K, 1.0f, weight, pl.K, sc.col, n, 0.0f, y, pl.P);
                }
                conv_epilogue(y, pl.P, bias, OC, n, relu);
            }
        } else {
            int n = nb * pl.P;
            for (int j = 0; j < nb; j++)
                im2col_rows(sc.col + (size_t)j * pl.P, n, inp + (b0 + j) * in_img, C, H, W, stride, pl.Wo, 0,
                            pl.Ho);
            sac_gemm(0, 0, OC, n, pl.K, 1.0f, weight, pl.K, sc.col, n, 0.0f, sc.tmp, n);
            for (int j = 0; j < nb; j++) {
                float *y = out + (b0 + j) * out_img;
                for (int o = 0; o < OC; o++)
                    memcpy(y + (size_t)o * pl.P, sc.tmp + (size_t)o * n + (size_t)j * pl.P,
                           sizeof(float) * (size_t)pl.P);
                conv_epilogue(y, pl.P, bias, OC, pl.P, relu);
            }
        }
    }
}

void conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                    const float *bias, int B, int C, int H, int W, int OC, int stride)
{
    conv_forward_impl(out, scratch, inp, weight, NULL, bias, B, C, H, W, OC, stride, 0);
}

void conv2d_relu_forward(float *out, float *scratch, const float *inp, const float *weight,
                         const float *prepared, const float *bias, int B, int C, int H, int W, int OC,
                         int stride)
{
    conv_forward_impl(out, scratch, inp, weight, prepared, bias, B, C, H, W, OC, stride, 1);
}

/* dbias (OC) += the row sums of d (OC, n), leading dim ldd. */
static void conv_bias_backward(float *dbias, const float *d, int ldd, int OC, int n)
{
    /* out = ... + bias */
    for (int o = 0; o < OC; o++) {
        const float *r = d + (size_t)o * ldd;
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += r[i];
        dbias[o] += s;
    }
}

void conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch, const float *dout,
                     const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                     int stride)
{
    if (dweight && use_winograd_wgrad(C, OC, stride)) {
        /* the weight gradient by Winograd, the bias and input gradients below */
        if (dbias) {
            for (int b = 0; b < B; b++) conv_bias_backward(dbias, dout + (size_t)b * OC * H * W, H * W, OC, H * W);
        }
        winograd_weight_grad(dweight, scratch, inp, dout, B, C, H, W, OC);
        if (dinp) conv2d_backward(dinp, NULL, NULL, scratch, dout, inp, weight, B, C, H, W, OC, stride);
        return;
    }
    if (dinp && use_winograd_grad(OC, H, W, stride)) {
        /* the weight gradient by im2col, then dinp += conv3x3(dout) with the filters transposed
         * and rotated: a stride-1 forward convolution of OC channels into C */
        if (dweight || dbias) conv2d_backward(NULL, dweight, dbias, scratch, dout, inp, weight, B, C, H, W, OC, stride);
        winograd_weights_transposed(scratch, weight, C, OC);
        winograd_forward(dinp, scratch + winograd_weight_floats(OC, C), dout, scratch, NULL, B, OC, H, W, C,
                         WINO_ACCUMULATE);
        return;
    }
    const ConvPlan pl = conv_plan(B, C, H, W, stride);
    const ConvScratch sc = conv_scratch(scratch, &pl, OC);
    const size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * pl.P, ws_row = (size_t)OC * 3 * C;
    if (dinp) memset(sc.dcol, 0, sizeof(float) * pl.col_floats); /* kept zero by the col2im */
    if (pl.split) {
        conv2d_weight_split(sc.wsplit, weight, C, OC);
        memset(sc.dwsplit, 0, sizeof(float) * (size_t)OC * pl.K);
    }
    for (int b0 = 0; b0 < B; b0 += pl.group) {
        int nb = SAC_MIN(pl.group, B - b0);
        if (pl.group == 1) {
            for (int oy0 = 0; oy0 < pl.Ho; oy0 += pl.rows) {
                int oy1 = SAC_MIN(pl.Ho, oy0 + pl.rows);
                int n = (oy1 - oy0) * pl.Wo;
                const float *d = dout + b0 * out_img + (size_t)oy0 * pl.Wo; /* (OC, n), leading dim P */
                float *dimg = dinp ? dinp + b0 * in_img : NULL;
                if (dbias) conv_bias_backward(dbias, d, pl.P, OC, n);
                if (pl.split) {
                    /* out = sum_ky wsplit[ky] @ col_ky, col_ky = col shifted down by ky rows:
                     * dwsplit[ky] += d @ col_ky^T;  dcol_ky += wsplit[ky]^T @ d */
                    int ld = (oy1 - oy0 + 2) * W;
                    if (dweight) im2col_split(sc.col, ld, inp + b0 * in_img, C, H, W, oy0, oy1);
                    for (int ky = 0; ky < 3 && dweight; ky++)
                        sac_gemm(0, 1, OC, 3 * C, n, 1.0f, d, pl.P, sc.col + (size_t)ky * W, ld, 1.0f,
                                 sc.dwsplit + ky * ws_row, 3 * C);
                    if (dimg) {
                        for (int ky = 0; ky < 3; ky++)
                            sac_gemm(1, 0, 3 * C, n, OC, 1.0f, sc.wsplit + ky * ws_row, 3 * C, d, pl.P, 1.0f,
                                     sc.dcol + (size_t)ky * W, ld);
                        col2im_split(dimg, sc.dcol, ld, C, H, W, oy0, oy1);
                    }
                } else {
                    /* out = weight @ col: dweight += d @ col^T;  dcol = weight^T @ d */
                    if (dweight) {
                        im2col_rows(sc.col, n, inp + b0 * in_img, C, H, W, stride, pl.Wo, oy0, oy1);
                        sac_gemm(0, 1, OC, pl.K, n, 1.0f, d, pl.P, sc.col, n, 1.0f, dweight, pl.K);
                    }
                    if (dimg) {
                        sac_gemm(1, 0, pl.K, n, OC, 1.0f, weight, pl.K, d, pl.P, 1.0f, sc.dcol, n);
                        col2im_rows(dimg, sc.dcol, n, C, H, W, stride, pl.Wo, oy0, oy1);
                    }
                }
            }
        } else {
            /* several whole images side by side: gather their dout into tmp (OC, n) */
            int n = nb * pl.P;
            for (int j = 0; j < nb; j++) {
                if (dweight)
                    im2col_rows(sc.col + (size_t)j * pl.P, n, inp + (b0 + j) * in_img, C, H, W, stride, pl.Wo, 0,
                                pl.Ho);
                const float *d = dout + (b0 + j) * out_img;
                for (int o = 0; o < OC; o++)
                    memcpy(sc.tmp + (size_t)o * n + (size_t)j * pl.P, d + (size_t)o * pl.P,
                           sizeof(float) * (size_t)pl.P);
            }
            if (dbias) conv_bias_backward(dbias, sc.tmp, n, OC, n);
            if (dweight) sac_gemm(0, 1, OC, pl.K, n, 1.0f, sc.tmp, n, sc.col, n, 1.0f, dweight, pl.K);
            if (dinp) {
                sac_gemm(1, 0, pl.K, n, OC, 1.0f, weight, pl.K, sc.tmp, n, 1.0f, sc.dcol, n);
                for (int j = 0; j < nb; j++)
                    col2im_rows(dinp + (b0 + j) * in_img, sc.dcol + (size_t)j * pl.P, n, C, H, W, stride, pl.Wo,
                                0, pl.Ho);
            }
        }
    }
    if (pl.split && dweight) conv_weight_unsplit_add(dweight, sc.dwsplit, C, OC);
}

void conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias, int B,
                        int C, int H, int W, int OC, int stride)
{
    int Ho = conv2d_out_size(H, stride), Wo = conv2d_out_size(W, stride);
    for (int b = 0; b < B; b++) {
        for (int o = 0; o < OC; o++) {
            for (int oy = 0; oy < Ho; oy++) {
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < C; c++) {
                        for (int ky = 0; ky < 3; ky++) {
                            int iy = oy * stride + ky - 1;
                            if (iy < 0 || iy >= H) continue;
                            for (int kx = 0; kx < 3; kx++) {
                                int ix = ox * stride + kx - 1;
                                if (ix < 0 || ix >= W) continue;
                                acc += (double)weight[((size_t)(o * C + c) * 3 + ky) * 3 + kx] *
                                       inp[(((size_t)b * C + c) * H + iy) * W + ix];
                            }
                        }
                    }
                    out[(((size_t)b * OC + o) * Ho + oy) * Wo + ox] = (float)acc;
                }
            }
        }
    }
}
