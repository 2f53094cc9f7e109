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
 */
#include "conv2d.h"

#include <string.h>

#include "matmul.h"
#include "sac.h"

/* Column-matrix budget of one tile, in floats, and the bounds on its width. */
enum { CONV_TILE_FLOATS = 1 << 18, CONV_TILE_MIN_COLS = 256, CONV_TILE_MAX_COLS = 4096 };

typedef struct ConvPlan {
    int Ho, Wo, P, K;
    int group; /* images per tile: > 1 only when one image is narrower than a tile */
    int rows;  /* output rows per tile when group == 1 */
    int ncol;  /* widest tile, in columns */
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
    } else {
        pl.group = SAC_MAX(1, SAC_MIN(B, target / pl.P));
        pl.rows = pl.Ho;
        pl.ncol = pl.group * pl.P;
    }
    return pl;
}

int conv2d_out_size(int n, int stride) { return (n - 1) / stride + 1; }

size_t conv2d_scratch_floats(int B, int C, int H, int W, int OC, int stride)
{
    ConvPlan pl = conv_plan(B, C, H, W, stride);
    /* col, then the (OC, tile) buffer of grouped tiles, then the backward's dcol */
    size_t n = 2 * (size_t)pl.K * pl.ncol;
    if (pl.group > 1) n += (size_t)OC * pl.ncol;
    return n;
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

/* One row of col for stride 1 (Wo = W): dst[r*W + ox] = src[r*W + ox + kx - 1] over n = rows*W
 * values, 0 where ox + kx - 1 leaves [0, W). The rows are contiguous in both, so this is one
 * shifted copy plus the zeroed edge column. */
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
                        /* the shifted copy's adjoint: zero the edge column that fell outside,
                         * then one shifted add over the contiguous rows */
                        float *dst = dimg + ((size_t)c * H + lo + ky - 1) * W;
                        int n = (hi - lo) * W;
                        if (kx == 1) {
                            for (int i = 0; i < n; i++) dst[i] += src[i];
                        } else if (kx == 0) {
                            for (int i = 0; i < n; i += W) src[i] = 0.0f;
                            for (int i = 1; i < n; i++) dst[i - 1] += src[i];
                        } else {
                            for (int i = W - 1; i < n; i += W) src[i] = 0.0f;
                            for (int i = 0; i < n - 1; i++) dst[i + 1] += src[i];
                        }
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

static void conv_forward_impl(float *out, float *scratch, const float *inp, const float *weight,
                              const float *bias, int B, int C, int H, int W, int OC, int stride,
                              int relu)
{
    ConvPlan pl = conv_plan(B, C, H, W, stride);
    size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * pl.P;
    float *col = scratch;
    float *tmp = scratch + (size_t)pl.K * pl.ncol;
    for (int b0 = 0; b0 < B; b0 += pl.group) {
        int nb = SAC_MIN(pl.group, B - b0);
        if (pl.group == 1) {
            for (int oy0 = 0; oy0 < pl.Ho; oy0 += pl.rows) {
                int oy1 = SAC_MIN(pl.Ho, oy0 + pl.rows);
                int n = (oy1 - oy0) * pl.Wo;
                im2col_rows(col, n, inp + b0 * in_img, C, H, W, stride, pl.Wo, oy0, oy1);
                float *y = out + b0 * out_img + (size_t)oy0 * pl.Wo;
                /* out (OC, n) = weight (OC, K) @ col (K, n) */
                sac_gemm(0, 0, OC, n, pl.K, 1.0f, weight, pl.K, col, n, 0.0f, y, pl.P);
                conv_epilogue(y, pl.P, bias, OC, n, relu);
            }
        } else {
            int n = nb * pl.P;
            for (int j = 0; j < nb; j++)
                im2col_rows(col + (size_t)j * pl.P, n, inp + (b0 + j) * in_img, C, H, W, stride, pl.Wo,
                            0, pl.Ho);
            sac_gemm(0, 0, OC, n, pl.K, 1.0f, weight, pl.K, col, n, 0.0f, tmp, n);
            for (int j = 0; j < nb; j++) {
                float *y = out + (b0 + j) * out_img;
                for (int o = 0; o < OC; o++)
                    memcpy(y + (size_t)o * pl.P, tmp + (size_t)o * n + (size_t)j * pl.P,
                           sizeof(float) * (size_t)pl.P);
                conv_epilogue(y, pl.P, bias, OC, pl.P, relu);
            }
        }
    }
}

void conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                    const float *bias, int B, int C, int H, int W, int OC, int stride)
{
    conv_forward_impl(out, scratch, inp, weight, bias, B, C, H, W, OC, stride, 0);
}

void conv2d_relu_forward(float *out, float *scratch, const float *inp, const float *weight,
                         const float *bias, int B, int C, int H, int W, int OC, int stride)
{
    conv_forward_impl(out, scratch, inp, weight, bias, B, C, H, W, OC, stride, 1);
}

/* One tile's backward: d (OC, n) with leading dim ldd is dL/dout of the tile, col (K, n) its
 * im2col; dcol (K, n), zero on entry, receives dL/dcol when dinp is wanted. */
static void conv_backward_tile(float *dweight, float *dbias, float *dcol, const float *col,
                               const float *d, int ldd, const float *weight, int OC, int K, int n)
{
    if (dbias) {
        /* out = ... + bias */
        for (int o = 0; o < OC; o++) {
            const float *r = d + (size_t)o * ldd;
            float s = 0.0f;
            for (int i = 0; i < n; i++) s += r[i];
            dbias[o] += s;
        }
    }
    /* out = weight @ col: dweight (OC, K) += d (OC, n) @ col^T; dcol (K, n) = weight^T @ d */
    sac_gemm(0, 1, OC, K, n, 1.0f, d, ldd, col, n, 1.0f, dweight, K);
    if (dcol) sac_gemm(1, 0, K, n, OC, 1.0f, weight, K, d, ldd, 1.0f, dcol, n);
}

void conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch, const float *dout,
                     const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                     int stride)
{
    ConvPlan pl = conv_plan(B, C, H, W, stride);
    size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * pl.P;
    float *col = scratch;
    float *tmp = col + (size_t)pl.K * pl.ncol;
    float *dcol = NULL;
    if (dinp) {
        /* kept zero between tiles by col2im_rows */
        dcol = tmp + (pl.group > 1 ? (size_t)OC * pl.ncol : 0);
        memset(dcol, 0, sizeof(float) * (size_t)pl.K * pl.ncol);
    }
    for (int b0 = 0; b0 < B; b0 += pl.group) {
        int nb = SAC_MIN(pl.group, B - b0);
        if (pl.group == 1) {
            for (int oy0 = 0; oy0 < pl.Ho; oy0 += pl.rows) {
                int oy1 = SAC_MIN(pl.Ho, oy0 + pl.rows);
                int n = (oy1 - oy0) * pl.Wo;
                im2col_rows(col, n, inp + b0 * in_img, C, H, W, stride, pl.Wo, oy0, oy1);
                const float *d = dout + b0 * out_img + (size_t)oy0 * pl.Wo;
                conv_backward_tile(dweight, dbias, dcol, col, d, pl.P, weight, OC, pl.K, n);
                if (dinp) col2im_rows(dinp + b0 * in_img, dcol, n, C, H, W, stride, pl.Wo, oy0, oy1);
            }
        } else {
            int n = nb * pl.P;
            for (int j = 0; j < nb; j++) {
                im2col_rows(col + (size_t)j * pl.P, n, inp + (b0 + j) * in_img, C, H, W, stride, pl.Wo,
                            0, pl.Ho);
                const float *d = dout + (b0 + j) * out_img;
                for (int o = 0; o < OC; o++)
                    memcpy(tmp + (size_t)o * n + (size_t)j * pl.P, d + (size_t)o * pl.P,
                           sizeof(float) * (size_t)pl.P);
            }
            conv_backward_tile(dweight, dbias, dcol, col, tmp, n, weight, OC, pl.K, n);
            if (dinp) {
                for (int j = 0; j < nb; j++)
                    col2im_rows(dinp + (b0 + j) * in_img, dcol + (size_t)j * pl.P, n, C, H, W, stride,
                                pl.Wo, 0, pl.Ho);
            }
        }
    }
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
