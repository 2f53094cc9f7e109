/*
 * mobilenet_train.c - forward and backward of MobileNetV2's top blocks for fine-tuning; see
 * mobilenet.h (mobilenet_acts_create, mobilenet_forward, mobilenet_backward).
 *
 * Channels last: a block's input x is (M_in, cin) with M_in = B * side^2 rows. Forward, as
 * torchvision's InvertedResidual with batchnorm folded (the inference path, mobilenet.c, fuses
 * the same layers):
 *   e = relu6(x @ We^T + be)                 expansion 1x1        (M_in, hid)
 *   d = relu6(depthwise3x3_s(e; Wd) + bd)    depthwise            (M_out, hid)
 *   y = d @ Wp^T + bp (+ x when residual)    projection 1x1       (M_out, cout)
 * and the head: feats = relu6(y_last @ Wh^T + bh). ReLU6's derivative is 1 where its output is
 * strictly inside (0, 6) and 0 elsewhere (torch's hardtanh_backward on the input says the
 * same: the output is 0 or 6 exactly when the input is <= 0 or >= 6).
 *
 * 1x1 layers and their gradients are sgemm calls (split over the pool by matmul.c), bias
 * gradients column sums; the depthwise forward is depthwise.c's kernel, its backward a loop
 * split over channels (each chunk owns its channels' weight gradients: the same sums for any
 * thread count).
 *
 * Size letters: B batch, M rows (positions of all images), C channels, P grid positions, E grid
 * channels.
 */
#include <stdlib.h>
#include <string.h>

#include "depthwise.h"
#include "matmul.h"
#include "mobilenet.h"
#include "sac.h"
#include "threadpool.h"

enum { TR_MAX_BLOCKS = 16, TR_CHAN_BLOCK = 16 };

typedef struct TrBlock {
    MobileNetBlockShape sh;
    float *x;   /* (B, side^2, cin) the block's input */
    float *e;   /* (B, side^2, hid) expansion after ReLU6 */
    float *d;   /* (B, side_out^2, hid) depthwise after ReLU6 */
    float *wdw; /* (9, hid) the depthwise weight transposed for depthwise.c */
} TrBlock;

struct MobileNetActs {
    MobileNetConfig cfg;
    int first, nb, n_params, max_batch;
    TrBlock blk[TR_MAX_BLOCKS];
    int head_cin, E, P;
    float *y_last; /* (B, P, head_cin) output of the last block */
    float *h;      /* (B, P, E) the features (after ReLU6) */
    float *g[2];   /* gradient ping-pong, the largest (M, C) of the graph */
    float *gd;     /* (M_out, hid) */
    float *ge;     /* (M_in, hid) */
    float *gw;     /* (9, hid) */
    float *mem;
    int B; /* of the last forward */
};

MobileNetActs *mobilenet_acts_create(const MobileNetConfig *cfg, int first, int max_batch)
{
    if (mobilenet_config_check(cfg)) return NULL;
    if (cfg->grid == MOBILENET_CLASSIFY) {
        sac_error("mobilenet: training needs grid 14 or 7, not the classifier");
        return NULL;
    }
    const int last = cfg->grid == MOBILENET_GRID14 ? 13 : 17;
    if (first < 2 || first > last || max_batch < 1 || max_batch > 65536) {
        sac_error("mobilenet: training from block %d for %d images, expected 2..%d and 1..65536", first, max_batch,
                  last);
        return NULL;
    }
    MobileNetActs *a = sac_calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->cfg = *cfg, a->first = first, a->nb = last - first + 1, a->max_batch = max_batch;
    a->n_params = 6 * a->nb + 2;
    size_t total = 0, gmax = 0, dmax = 0, emax = 0, hmax = 0;
    for (int j = 0; j < a->nb; j++) {
        MobileNetBlockShape *sh = &a->blk[j].sh;
        mobilenet_block_shape(cfg, first + j, sh);
        const size_t in = (size_t)sh->side * sh->side, out = (size_t)sh->side_out * sh->side_out;
        total += in * (sh->cin + sh->hid) + out * sh->hid + 9 * (size_t)sh->hid;
        gmax = SAC_MAX(gmax, SAC_MAX(in * sh->cin, out * sh->cout));
        dmax = SAC_MAX(dmax, out * sh->hid);
        emax = SAC_MAX(emax, in * sh->hid);
        hmax = SAC_MAX(hmax, (size_t)sh->hid);
    }
    const MobileNetBlockShape *lb = &a->blk[a->nb - 1].sh;
    a->head_cin = lb->cout, a->E = mobilenet_grid_channels(cfg), a->P = lb->side_out * lb->side_out;
    gmax = SAC_MAX(gmax, (size_t)a->P * SAC_MAX(a->E, a->head_cin));
    const size_t mb = (size_t)max_batch;
    /* per image: the blocks' x, e, d; y_last; h; the gradient buffers */
    const size_t floats = mb * (total + (size_t)a->P * (a->head_cin + a->E) + 2 * gmax + dmax + emax) + 9 * hmax;
    a->mem = sac_alloc_floats(floats);
    if (!a->mem) {
        sac_error("mobilenet: out of memory for the training activations of %d images", max_batch);
        free(a);
        return NULL;
    }
    float *p = a->mem;
    for (int j = 0; j < a->nb; j++) {
        TrBlock *t = &a->blk[j];
        const size_t in = (size_t)t->sh.side * t->sh.side, out = (size_t)t->sh.side_out * t->sh.side_out;
        t->x = p, p += mb * in * t->sh.cin;
        t->e = p, p += mb * in * t->sh.hid;
        t->d = p, p += mb * out * t->sh.hid;
        t->wdw = p, p += 9 * (size_t)t->sh.hid;
    }
    a->y_last = p, p += mb * a->P * a->head_cin;
    a->h = p, p += mb * a->P * a->E;
    a->g[0] = p, p += mb * gmax;
    a->g[1] = p, p += mb * gmax;
    a->gd = p, p += mb * dmax;
    a->ge = p, p += mb * emax;
    a->gw = p;
    return a;
}

void mobilenet_acts_free(MobileNetActs *acts)
{
    if (!acts) return;
    free(acts->mem);
    free(acts);
}

int mobilenet_acts_n_params(const MobileNetActs *acts) { return acts->n_params; }

static void relu6_inplace(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float v = x[i] < 0.0f ? 0.0f : x[i];
        x[i] = v > 6.0f ? 6.0f : v;
    }
}

/* dx *= [0 < y < 6] */
static void relu6_mask(float *dx, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0.0f && y[i] < 6.0f)) dx[i] = 0.0f;
}

/* y (M, N) = x (M, K) @ W^T + b, W (N, K) torch layout; rows of y filled with b first. */
static void conv1x1(float *y, const float *x, const float *W, const float *b, int M, int K, int N)
{
    for (int m = 0; m < M; m++) memcpy(y + (size_t)m * N, b, sizeof(float) * N);
    sac_gemm(0, 1, M, N, K, 1.0f, x, K, W, K, 1.0f, y, N);
}

typedef struct {
    float *out;
    const float *inp, *wt, *bias;
    const MobileNetBlockShape *sh;
} DwTask;

static void dw_forward_task(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const DwTask *t = p;
    const MobileNetBlockShape *sh = t->sh;
    const size_t in = (size_t)sh->side * sh->side * sh->hid, out = (size_t)sh->side_out * sh->side_out * sh->hid;
    for (int b = b0; b < b1; b++)
        depthwise_forward(t->out + b * out, t->inp + b * in, t->wt, t->bias, sh->side, sh->side, sh->hid, sh->stride,
                          sh->pad, sh->pad, SAC_KERNEL_AUTO);
}

int mobilenet_forward(float *feats, MobileNetActs *a, const float *inp, const float *const *params, int B)
{
    if (B < 1 || B > a->max_batch) {
        sac_error("mobilenet: training batch of %d images, expected 1..%d", B, a->max_batch);
        return SAC_ERR_INVALID;
    }
    a->B = B;
    memcpy(a->blk[0].x, inp, sizeof(float) * B * a->blk[0].sh.side * a->blk[0].sh.side * a->blk[0].sh.cin);
    for (int j = 0; j < a->nb; j++) {
        TrBlock *t = &a->blk[j];
        const MobileNetBlockShape *sh = &t->sh;
        const float *const *w = params + 6 * j; /* exp.w, exp.b, dw.w, dw.b, proj.w, proj.b */
        const int M_in = B * sh->side * sh->side, M_out = B * sh->side_out * sh->side_out;
        conv1x1(t->e, t->x, w[0], w[1], M_in, sh->cin, sh->hid);
        relu6_inplace(t->e, (size_t)M_in * sh->hid);
        for (int c = 0; c < sh->hid; c++)
            for (int k = 0; k < 9; k++) t->wdw[k * sh->hid + c] = w[2][c * 9 + k];
        DwTask dt = {t->d, t->e, t->wdw, w[3], sh};
        sac_parallel_for(B, 1, dw_forward_task, &dt);
        float *y = j + 1 < a->nb ? a->blk[j + 1].x : a->y_last;
        conv1x1(y, t->d, w[4], w[5], M_out, sh->hid, sh->cout);
        if (sh->residual)
            for (size_t i = 0; i < (size_t)M_out * sh->cout; i++) y[i] += t->x[i];
    }
    const float *const *wh = params + 6 * a->nb;
    const size_t n = (size_t)B * a->P * a->E;
    conv1x1(a->h, a->y_last, wh[0], wh[1], B * a->P, a->head_cin, a->E);
    relu6_inplace(a->h, n);
    memcpy(feats, a->h, sizeof(float) * n);
    return SAC_OK;
}

/* ---- depthwise backward ---- */

typedef struct {
    float *de, *gw, *gb;       /* (M_in, C) set; (9, C), (C) accumulated */
    const float *dd, *e, *wdw; /* (M_out, C), (M_in, C), (9, C) */
    const MobileNetBlockShape *sh;
    int B;
} DwBack;

/* Forward: d[b][oy][ox][c] = sum_taps wdw[ky*3 + kx][c] * e[b][oy*s - pad + ky][ox*s - pad + kx][c]
 * (+ bias, then ReLU6, whose mask is already in dd). Chunks own channel blocks. */
static void dw_backward_task(void *p, int u0, int u1, int chunk)
{
    (void)chunk;
    const DwBack *t = p;
    const MobileNetBlockShape *sh = t->sh;
    const int C = sh->hid, H = sh->side, Ho = sh->side_out, s = sh->stride, pad = sh->pad;
    const int c0 = u0 * TR_CHAN_BLOCK, c1 = SAC_MIN(u1 * TR_CHAN_BLOCK, C);
    for (int b = 0; b < t->B; b++) {
        const float *e = t->e + (size_t)b * H * H * C;
        float *de = t->de + (size_t)b * H * H * C;
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                const float *g = t->dd + (((size_t)b * Ho + oy) * Ho + ox) * C;
                for (int c = c0; c < c1; c++) t->gb[c] += g[c];
                for (int ky = 0; ky < 3; ky++) {
                    const int iy = oy * s - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        const int ix = ox * s - pad + kx;
                        if (ix < 0 || ix >= H) continue;
                        const size_t at = ((size_t)iy * H + ix) * C;
                        const float *w = t->wdw + (ky * 3 + kx) * C;
                        float *gw = t->gw + (ky * 3 + kx) * C;
                        for (int c = c0; c < c1; c++) {
                            de[at + c] += w[c] * g[c];
                            gw[c] += e[at + c] * g[c];
                        }
                    }
                }
            }
    }
}

int mobilenet_backward(float *const *grads, float *dinp, MobileNetActs *a, const float *dfeats,
                       const float *const *params, int B)
{
    if (B != a->B) {
        sac_error("mobilenet: backward of %d images after a forward of %d", B, a->B);
        return SAC_ERR_INVALID;
    }
    /* head: feats = relu6(y_last @ Wh^T + bh) */
    const int Mh = B * a->P;
    float *dy = a->g[0], *dx = a->g[1];
    float *dh = dx; /* free until the first block's input gradient */
    memcpy(dh, dfeats, sizeof(float) * Mh * a->E);
    relu6_mask(dh, a->h, (size_t)Mh * a->E);
    const float *const *wh = params + 6 * a->nb;
    float *const *gh = grads + 6 * a->nb;
    sac_gemm(1, 0, a->E, a->head_cin, Mh, 1.0f, dh, a->E, a->y_last, a->head_cin, 1.0f, gh[0], a->head_cin);
    sac_colsum(gh[1], dh, Mh, a->E);
    sac_gemm(0, 0, Mh, a->head_cin, a->E, 1.0f, dh, a->E, wh[0], a->head_cin, 0.0f, dy, a->head_cin);
    for (int j = a->nb - 1; j >= 0; j--) {
        TrBlock *t = &a->blk[j];
        const MobileNetBlockShape *sh = &t->sh;
        const float *const *w = params + 6 * j;
        float *const *g = grads + 6 * j;
        const int M_in = B * sh->side * sh->side, M_out = B * sh->side_out * sh->side_out, C = sh->hid;
        /* projection: y = d @ Wp^T + bp (+ x) */
        sac_gemm(1, 0, sh->cout, C, M_out, 1.0f, dy, sh->cout, t->d, C, 1.0f, g[4], C);
        sac_colsum(g[5], dy, M_out, sh->cout);
        sac_gemm(0, 0, M_out, C, sh->cout, 1.0f, dy, sh->cout, w[4], C, 0.0f, a->gd, C);
        relu6_mask(a->gd, t->d, (size_t)M_out * C);
        /* depthwise: d = relu6(dw(e) + bd) */
        memset(a->ge, 0, sizeof(float) * M_in * C);
        memset(a->gw, 0, sizeof(float) * 9 * C);
        DwBack db = {a->ge, a->gw, g[3], a->gd, t->e, t->wdw, sh, B};
        sac_parallel_for((C + TR_CHAN_BLOCK - 1) / TR_CHAN_BLOCK, 1, dw_backward_task, &db);
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) g[2][c * 9 + k] += a->gw[k * C + c];
        relu6_mask(a->ge, t->e, (size_t)M_in * C);
        /* expansion: e = relu6(x @ We^T + be) */
        sac_gemm(1, 0, C, sh->cin, M_in, 1.0f, a->ge, C, t->x, sh->cin, 1.0f, g[0], sh->cin);
        sac_colsum(g[1], a->ge, M_in, C);
        if (sh->residual) memcpy(dx, dy, sizeof(float) * M_in * sh->cin);
        sac_gemm(0, 0, M_in, sh->cin, C, 1.0f, a->ge, C, w[0], sh->cin, sh->residual ? 1.0f : 0.0f, dx, sh->cin);
        float *tmp = dy;
        dy = dx, dx = tmp;
    }
    if (dinp) {
        const size_t n = (size_t)B * a->blk[0].sh.side * a->blk[0].sh.side * a->blk[0].sh.cin;
        for (size_t i = 0; i < n; i++) dinp[i] += dy[i];
    }
    return SAC_OK;
}
