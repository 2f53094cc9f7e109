/*
 * encoder.c - the convolutional encoder: image -> feature grid, forward and backward, and the
 * inference encoder with batchnorm folded into the convolutions. See encoder.h.
 *
 * Reference: torch.nn.Sequential(Conv2d(3x3, padding 1), [BatchNorm2d], ReLU, [MaxPool2d(2)])
 * per layer, then features.flatten(2).transpose(1, 2) (the PyTorch peer's Encoder).
 * Size letters: B batch, S input side, C channels, H W spatial, P = Hg * Wg grid positions,
 * E encoder output channels.
 *
 * With batchnorm, a layer runs as conv, then batchnorm's statistics, then one fused pass
 * relu(bn(x)) or relu(maxpool(bn(x))) (batchnorm.h), and backward likewise, so the full-size
 * batchnorm output is never stored. A pooled layer without batchnorm computes relu(maxpool(x))
 * (the same values and gradients as maxpool(relu(x)), see batchnorm_pool_relu_apply).
 *
 * Threads: the batch is cut into up to `lanes` contiguous chunks of images that run on the pool
 * (threadpool.h), each with its own conv scratch: the convolutions and the per-image batchnorm
 * passes of a chunk are independent of the others. In backward each chunk accumulates its
 * weight gradient into its own buffer, added to the gradient in chunk order afterwards (the
 * same sums for a given thread count). Batchnorm's statistics (sums over the whole batch) run
 * between the parallel passes. A batch that makes one chunk (one image, one thread) runs its
 * products split across the pool instead (matmul.h).
 */
#include "encoder.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "conv2d.h"
#include "maxpool.h"
#include "relu.h"
#include "sac.h"
#include "threadpool.h"

enum { ENC_MAX_IMAGE = 8192, ENC_MAX_CHANNELS = 65536, ENC_IN_CHANNELS = 3, ENC_MAX_LANES = 8 };
/* Images the inference encoder takes at a time per lane (beyond a few, batching adds nothing:
 * every layer's products are already wide). */
enum { ENC_INFER_SUB = 4 };

/* Image chunks that may run at once: bounded by the pool size when the buffers are made. */
static int enc_lanes(int max_batch) { return SAC_MAX(1, SAC_MIN(max_batch, SAC_MIN(sac_threads(), ENC_MAX_LANES))); }

/* Images per chunk for a batch of B over `lanes` lanes: at most `lanes` chunks. */
static int enc_grain(int B, int lanes) { return (B + lanes - 1) / lanes; }

int encoder_shapes(const EncoderConfig *cfg, ConvShape *shapes, int *grid_h, int *grid_w)
{
    if (cfg->image_size < 1 || cfg->image_size > ENC_MAX_IMAGE) {
        sac_error("encoder config: image_size is %d, expected 1..%d", cfg->image_size, ENC_MAX_IMAGE);
        return SAC_ERR_INVALID;
    }
    if (cfg->n_conv < 1 || cfg->n_conv > SAC_MAX_CONV) {
        sac_error("encoder config: n_conv is %d, expected 1..%d", cfg->n_conv, SAC_MAX_CONV);
        return SAC_ERR_INVALID;
    }
    if (cfg->batchnorm != 0 && cfg->batchnorm != 1) {
        sac_error("encoder config: batchnorm is %d, expected 0 or 1", cfg->batchnorm);
        return SAC_ERR_INVALID;
    }
    int cin = ENC_IN_CHANNELS, h = cfg->image_size, w = cfg->image_size;
    for (int l = 0; l < cfg->n_conv; l++) {
        const ConvSpec *c = &cfg->conv[l];
        if (c->cout < 1 || c->cout > ENC_MAX_CHANNELS) {
            sac_error("encoder config: conv%d has %d output channels, expected 1..%d", l + 1, c->cout,
                      ENC_MAX_CHANNELS);
            return SAC_ERR_INVALID;
        }
        if (c->stride != 1 && c->stride != 2) {
            sac_error("encoder config: conv%d has stride %d, expected 1 or 2", l + 1, c->stride);
            return SAC_ERR_INVALID;
        }
        if (c->pool != 0 && c->pool != 1) {
            sac_error("encoder config: conv%d has pool %d, expected 0 or 1", l + 1, c->pool);
            return SAC_ERR_INVALID;
        }
        ConvShape s;
        s.cin = cin;
        s.cout = c->cout;
        s.stride = c->stride;
        s.pool = c->pool;
        s.h_in = h;
        s.w_in = w;
        s.h_out = conv2d_out_size(h, c->stride);
        s.w_out = conv2d_out_size(w, c->stride);
        s.h_pool = c->pool ? s.h_out / 2 : s.h_out;
        s.w_pool = c->pool ? s.w_out / 2 : s.w_out;
        if (s.h_pool < 1 || s.w_pool < 1) {
            sac_error("encoder config: conv%d's %dx%d output cannot be max-pooled 2x2 (image_size %d "
                      "shrinks to nothing), expected at least 2x2",
                      l + 1, s.h_out, s.w_out, cfg->image_size);
            return SAC_ERR_INVALID;
        }
        if (shapes) shapes[l] = s;
        cin = s.cout;
        h = s.h_pool;
        w = s.w_pool;
    }
    if (grid_h) *grid_h = h;
    if (grid_w) *grid_w = w;
    return SAC_OK;
}

/* Whether a and b describe the same network. */
static int enc_config_equal(const EncoderConfig *a, const EncoderConfig *b)
{
    if (a->image_size != b->image_size || a->n_conv != b->n_conv || a->batchnorm != b->batchnorm)
        return 0;
    for (int l = 0; l < a->n_conv; l++) {
        const ConvSpec *x = &a->conv[l], *y = &b->conv[l];
        if (x->cout != y->cout || x->stride != y->stride || x->pool != y->pool) return 0;
    }
    return 1;
}

/* Whether p has every tensor the config needs (what = "parameters" or "gradients"). */
static int enc_params_ok(const EncoderParams *p, const EncoderConfig *cfg, const char *what, int need_stats)
{
    for (int l = 0; l < cfg->n_conv; l++) {
        const ConvLayerParams *L = &p->conv[l];
        int ok = L->weight != NULL;
        if (cfg->batchnorm) {
            ok = ok && L->bn_gamma && L->bn_beta;
            if (need_stats) ok = ok && L->bn_mean && L->bn_var;
        }
        if (!ok) {
            sac_error("encoder: %s of conv%d lack a tensor, expected weight%s", what, l + 1,
                      cfg->batchnorm ? (need_stats ? ", bn_gamma, bn_beta, bn_mean, bn_var" : ", bn_gamma, bn_beta")
                                     : "");
            return 0;
        }
    }
    return 1;
}

/* Scratch for a chunk of any 1..B images (a smaller batch may tile differently). */
static size_t conv_scratch_any(const ConvShape *s, int B)
{
    size_t n = 0;
    for (int b = 1; b <= B; b++) n = SAC_MAX(n, conv2d_scratch_floats(b, s->cin, s->h_in, s->w_in, s->cout, s->stride));
    return n;
}

static size_t conv_out_floats(const ConvShape *s, int B) { return (size_t)B * s->cout * s->h_out * s->w_out; }
static size_t layer_out_floats(const ConvShape *s, int B) { return (size_t)B * s->cout * s->h_pool * s->w_pool; }
static size_t layer_in_floats(const ConvShape *s, int B) { return (size_t)B * s->cin * s->h_in * s->w_in; }

/* (B, E, P) -> (B, P, E) */
static void enc_to_grid(float *feats, const float *x, int B, int E, int P)
{
    for (int b = 0; b < B; b++) {
        const float *src = x + (size_t)b * E * P;
        float *dst = feats + (size_t)b * P * E;
        for (int e = 0; e < E; e++)
            for (int p = 0; p < P; p++) dst[(size_t)p * E + e] = src[(size_t)e * P + p];
    }
}

/* (B, P, E) -> (B, E, P) */
static void enc_from_grid(float *x, const float *feats, int B, int E, int P)
{
    for (int b = 0; b < B; b++) {
        const float *src = feats + (size_t)b * P * E;
        float *dst = x + (size_t)b * E * P;
        for (int p = 0; p < P; p++)
            for (int e = 0; e < E; e++) dst[(size_t)e * P + p] = src[(size_t)p * E + e];
    }
}

static void enc_zero(float *x, size_t n) { memset(x, 0, sizeof(float) * n); }

enum { ENC_ZERO_BLOCK = 1 << 16 };

static void enc_zero_block(void *arg, int i0, int i1, int chunk)
{
    (void)chunk;
    float *x = arg;
    enc_zero(x + (size_t)i0 * ENC_ZERO_BLOCK, (size_t)(i1 - i0) * ENC_ZERO_BLOCK);
}

/* enc_zero across the pool, for the batch-sized gradient buffers */
static void enc_zero_par(float *x, size_t n)
{
    const size_t blocks = n / ENC_ZERO_BLOCK;
    sac_parallel_for((int)blocks, 4, enc_zero_block, x);
    enc_zero(x + blocks * ENC_ZERO_BLOCK, n - blocks * ENC_ZERO_BLOCK);
}

/* ---- training graph ----------------------------------------------------------------------- */

struct EncoderActs {
    EncoderConfig cfg;
    ConvShape shapes[SAC_MAX_CONV];
    int max_batch, grid_h, grid_w;
    int last_B, last_training; /* what the last forward left behind (last_B 0: none yet) */
    float *images;             /* (B, 3, S, S) copy of the training forward's input */
    float *conv_out[SAC_MAX_CONV]; /* (B, C, Ho, Wo) conv output: batchnorm's input */
    float *act[SAC_MAX_CONV];      /* (B, C, Ho, Wo) relu(bn(conv)) of an unpooled layer (its output);
                                      = conv_out without batchnorm (ReLU in place) */
    float *pooled[SAC_MAX_CONV];   /* (B, C, Hp, Wp) relu(maxpool(bn(conv))) of a pooled layer */
    uint8_t *argmax[SAC_MAX_CONV]; /* (B, C, Hp, Wp) */
    float *pooled_in[SAC_MAX_CONV]; /* (B, C, Hp, Wp) conv output at each argmax (with batchnorm) */
    float *mean[SAC_MAX_CONV], *rstd[SAC_MAX_CONV];   /* (C) batch statistics */
    float *scale[SAC_MAX_CONV], *shift[SAC_MAX_CONV]; /* (C) batchnorm as x * scale + shift */
    int lanes;
    float *scratch[ENC_MAX_LANES]; /* conv im2col / tile buffer of each image chunk */
    float *dw[ENC_MAX_LANES];      /* conv weight (+ bias) gradient of each chunk, when lanes > 1 */
    float *dlayer[2]; /* layer-output gradients, ping-pong */
    float *dconv;     /* (B, C, Ho, Wo) conv output gradient */
    float *dpooled;   /* (B, C, Hp, Wp) pooled gradient before the ReLU (layers without batchnorm) */
    void *blocks[7 * SAC_MAX_CONV + 8];
    size_t block_bytes[7 * SAC_MAX_CONV + 8];
    int n_blocks;
};

static void *acts_alloc(EncoderActs *a, size_t bytes)
{
    SAC_ASSERT(a->n_blocks < (int)(sizeof(a->blocks) / sizeof(a->blocks[0])));
    void *p = sac_alloc_floats((bytes + sizeof(float) - 1) / sizeof(float));
    if (p) {
        a->block_bytes[a->n_blocks] = bytes;
        a->blocks[a->n_blocks++] = p;
    }
    return p;
}

EncoderActs *encoder_acts_create(const EncoderConfig *cfg, int max_batch)
{
    if (max_batch < 1) {
        sac_error("encoder_acts_create: max_batch is %d, expected >= 1", max_batch);
        return NULL;
    }
    EncoderActs *a = sac_calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->cfg = *cfg;
    a->max_batch = max_batch;
    if (encoder_shapes(cfg, a->shapes, &a->grid_h, &a->grid_w) != SAC_OK) goto fail;
    const int B = max_batch, n = cfg->n_conv, bn = cfg->batchnorm;
    size_t max_full = 0, max_layer = 0, max_scratch = 0, max_dw = 0;
    a->lanes = enc_lanes(max_batch);
    for (int l = 0; l < n; l++) {
        const ConvShape *s = &a->shapes[l];
        max_dw = SAC_MAX(max_dw, (size_t)s->cout * s->cin * 9 + s->cout);
        size_t full = conv_out_floats(s, B);
        max_full = SAC_MAX(max_full, full);
        max_layer = SAC_MAX(max_layer, layer_out_floats(s, B));
        max_scratch = SAC_MAX(max_scratch, conv_scratch_any(s, B));
        if (!(a->conv_out[l] = acts_alloc(a, sizeof(float) * full))) goto fail;
        if (s->pool) {
            size_t np = layer_out_floats(s, B);
            if (!(a->pooled[l] = acts_alloc(a, sizeof(float) * np))) goto fail;
            if (!(a->argmax[l] = acts_alloc(a, np))) goto fail;
            if (bn && !(a->pooled_in[l] = acts_alloc(a, sizeof(float) * np))) goto fail;
        } else if (bn) {
            if (!(a->act[l] = acts_alloc(a, sizeof(float) * full))) goto fail;
        } else {
            a->act[l] = a->conv_out[l];
        }
        if (bn) {
            if (!(a->mean[l] = acts_alloc(a, sizeof(float) * 4 * s->cout))) goto fail;
            a->rstd[l] = a->mean[l] + s->cout;
            a->scale[l] = a->rstd[l] + s->cout;
            a->shift[l] = a->scale[l] + s->cout;
        }
    }
    if (!(a->images = acts_alloc(a, sizeof(float) * layer_in_floats(&a->shapes[0], B)))) goto fail;
    for (int k = 0; k < a->lanes; k++) {
        if (!(a->scratch[k] = acts_alloc(a, sizeof(float) * max_scratch))) goto fail;
        if (a->lanes > 1 && !(a->dw[k] = acts_alloc(a, sizeof(float) * max_dw))) goto fail;
    }
    for (int i = 0; i < 2; i++) {
        if (!(a->dlayer[i] = acts_alloc(a, sizeof(float) * max_layer))) goto fail;
    }
    if (!(a->dconv = acts_alloc(a, sizeof(float) * max_full))) goto fail;
    if (!bn && !(a->dpooled = acts_alloc(a, sizeof(float) * max_layer))) goto fail;
    /* touch every page now, so the first forward does not pay the page faults */
    for (int i = 0; i < a->n_blocks; i++) memset(a->blocks[i], 0, a->block_bytes[i]);
    return a;
fail:
    encoder_acts_free(a);
    return NULL;
}

void encoder_acts_free(EncoderActs *acts)
{
    if (!acts) return;
    for (int i = 0; i < acts->n_blocks; i++) free(acts->blocks[i]);
    free(acts);
}

static int enc_check_call(const EncoderConfig *have, const EncoderConfig *cfg, int B, int max_batch,
                          const char *fn)
{
    if (!enc_config_equal(have, cfg)) {
        sac_error("%s: the config differs from the one the buffers were created for", fn);
        return SAC_ERR_INVALID;
    }
    if (B < 1 || B > max_batch) {
        sac_error("%s: batch of %d images, expected 1..%d", fn, B, max_batch);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}

/* One layer's work over a chunk of images [b0, b1) on lane `lane`. */
typedef struct {
    EncoderActs *a;
    const ConvShape *s;
    const ConvLayerParams *L;
    ConvLayerParams *G;
    const float *x;
    float *dx;
    int l, bn;
} LayerTask;

static void layer_forward_chunk(void *arg, int b0, int b1, int lane)
{
    const LayerTask *t = arg;
    EncoderActs *a = t->a;
    const ConvShape *s = t->s;
    const int nb = b1 - b0, C = s->cout, l = t->l;
    const size_t in_img = layer_in_floats(s, 1), out_img = conv_out_floats(s, 1), pool_img = layer_out_floats(s, 1);
    float *y = a->conv_out[l] + b0 * out_img;
    conv2d_forward(y, a->scratch[lane], t->x + b0 * in_img, t->L->weight, t->bn ? NULL : t->L->bias, nb, s->cin,
                   s->h_in, s->w_in, C, s->stride);
    if (t->bn) return;
    if (s->pool) {
        maxpool_forward(a->pooled[l] + b0 * pool_img, a->argmax[l] + b0 * pool_img, y, nb * C, s->h_out, s->w_out);
        relu_forward(a->pooled[l] + b0 * pool_img, a->pooled[l] + b0 * pool_img, nb * pool_img);
    } else {
        relu_forward(y, y, nb * out_img); /* in place: act is conv_out */
    }
}

static void bn_apply_chunk(void *arg, int b0, int b1, int lane)
{
    (void)lane;
    const LayerTask *t = arg;
    EncoderActs *a = t->a;
    const ConvShape *s = t->s;
    const int nb = b1 - b0, C = s->cout, l = t->l;
    const size_t out_img = conv_out_floats(s, 1), pool_img = layer_out_floats(s, 1);
    const float *y = a->conv_out[l] + b0 * out_img;
    if (s->pool)
        batchnorm_pool_relu_apply(a->pooled[l] + b0 * pool_img, a->argmax[l] + b0 * pool_img,
                                  a->pooled_in[l] + b0 * pool_img, y, a->scale[l], a->shift[l], nb, C, s->h_out,
                                  s->w_out);
    else
        batchnorm_relu_apply(a->act[l] + b0 * out_img, y, a->scale[l], a->shift[l], nb, C, s->h_out * s->w_out);
}

static void conv_backward_chunk(void *arg, int b0, int b1, int lane)
{
    const LayerTask *t = arg;
    EncoderActs *a = t->a;
    const ConvShape *s = t->s;
    const int nb = b1 - b0, C = s->cout;
    const size_t in_img = layer_in_floats(s, 1), out_img = conv_out_floats(s, 1), n_w = (size_t)C * s->cin * 9;
    float *dw = a->dw[lane], *dx = t->dx ? t->dx + b0 * in_img : NULL;
    enc_zero(dw, n_w + C);
    if (dx) enc_zero(dx, nb * in_img);
    conv2d_backward(dx, dw, t->bn ? NULL : dw + n_w, a->scratch[lane], a->dconv + b0 * out_img, t->x + b0 * in_img,
                    t->L->weight, nb, s->cin, s->h_in, s->w_in, C, s->stride);
}

typedef struct {
    float *const *dw;
    int chunks;
    float *weight, *bias; /* gradients to add to; bias may be NULL */
    int n_w, C;
} ReduceTask;

static void reduce_dw_block(void *arg, int i0, int i1, int block)
{
    (void)block;
    const ReduceTask *t = arg;
    for (int i = i0; i < i1; i++) {
        float *dst = i < t->n_w ? &t->weight[i] : t->bias ? &t->bias[i - t->n_w] : NULL;
        if (!dst) continue;
        float v = 0.0f;
        for (int k = 0; k < t->chunks; k++) v += t->dw[k][i];
        *dst += v;
    }
}

int encoder_forward(float *feats, EncoderActs *acts, const float *images, EncoderParams *p,
                    const EncoderConfig *cfg, int B, int training)
{
    int st = enc_check_call(&acts->cfg, cfg, B, acts->max_batch, "encoder_forward");
    if (st != SAC_OK) return st;
    if (!enc_params_ok(p, cfg, "parameters", 1)) return SAC_ERR_INVALID;
    const int bn = cfg->batchnorm, n = cfg->n_conv;
    if (training && bn) {
        for (int l = 0; l < n; l++) {
            if (B * acts->shapes[l].h_out * acts->shapes[l].w_out < 2) {
                sac_error("encoder_forward: training batchnorm needs more than 1 value per channel, "
                          "conv%d has %d (batch %d of %dx%d)",
                          l + 1, B * acts->shapes[l].h_out * acts->shapes[l].w_out, B,
                          acts->shapes[l].h_out, acts->shapes[l].w_out);
                return SAC_ERR_INVALID;
            }
        }
    }
    acts->last_B = 0;
    const float *x = images;
    if (training) {
        memcpy(acts->images, images, sizeof(float) * layer_in_floats(&acts->shapes[0], B));
        x = acts->images;
    }
    for (int l = 0; l < n; l++) {
        const ConvShape *s = &acts->shapes[l];
        ConvLayerParams *L = &p->conv[l];
        const int C = s->cout, HW = s->h_out * s->w_out, grain = enc_grain(B, acts->lanes);
        LayerTask t = {acts, s, L, NULL, x, NULL, l, bn};
        /* the conv of each chunk of images (without batchnorm: with its ReLU and pool) */
        sac_parallel_for(B, grain, layer_forward_chunk, &t);
        if (bn) {
            const float *y = acts->conv_out[l];
            if (training) {
                batchnorm_stats(acts->mean[l], acts->rstd[l], y, L->bn_mean, L->bn_var, B, C, HW);
                batchnorm_affine(acts->scale[l], acts->shift[l], acts->mean[l], acts->rstd[l], L->bn_gamma,
                                 L->bn_beta, C);
            } else {
                batchnorm_infer_affine(acts->scale[l], acts->shift[l], L->bn_gamma, L->bn_beta, L->bn_mean,
                                       L->bn_var, C);
            }
            sac_parallel_for(B, grain, bn_apply_chunk, &t);
        }
        x = s->pool ? acts->pooled[l] : acts->act[l];
    }
    const ConvShape *last = &acts->shapes[n - 1];
    enc_to_grid(feats, x, B, last->cout, last->h_pool * last->w_pool);
    acts->last_B = B;
    acts->last_training = training;
    return SAC_OK;
}

int encoder_backward(EncoderParams *grads, EncoderActs *acts, const float *dfeats,
                     const EncoderParams *p, const EncoderConfig *cfg, int B)
{
    int st = enc_check_call(&acts->cfg, cfg, B, acts->max_batch, "encoder_backward");
    if (st != SAC_OK) return st;
    if (acts->last_B != B || !acts->last_training) {
        sac_error("encoder_backward: needs a training forward of the same batch before it, found %s "
                  "(batch %d)",
                  acts->last_B == 0 ? "none" : acts->last_training ? "a training forward" : "an inference forward",
                  acts->last_B);
        return SAC_ERR_INVALID;
    }
    if (!enc_params_ok(p, cfg, "parameters", 0) || !enc_params_ok(grads, cfg, "gradients", 0))
        return SAC_ERR_INVALID;
    const int bn = cfg->batchnorm, n = cfg->n_conv;
    const ConvShape *last = &acts->shapes[n - 1];
    int cur = 0;
    float *dy = acts->dlayer[cur];
    enc_from_grid(dy, dfeats, B, last->cout, last->h_pool * last->w_pool);
    for (int l = n - 1; l >= 0; l--) {
        const ConvShape *s = &acts->shapes[l];
        const ConvLayerParams *L = &p->conv[l];
        ConvLayerParams *G = &grads->conv[l];
        const int C = s->cout, HW = s->h_out * s->w_out;
        const size_t full = conv_out_floats(s, B);
        float *dconv = acts->dconv;
        enc_zero_par(dconv, full);
        if (bn && s->pool) {
            /* out = relu(maxpool(batchnorm(conv_out))) */
            batchnorm_pool_relu_backward(dconv, G->bn_gamma, G->bn_beta, dy, acts->pooled[l], acts->argmax[l],
                                         acts->pooled_in[l], acts->conv_out[l], acts->mean[l], acts->rstd[l],
                                         L->bn_gamma, B, C, s->h_out, s->w_out);
        } else if (bn) {
            /* out = relu(batchnorm(conv_out)) */
            batchnorm_relu_backward(dconv, G->bn_gamma, G->bn_beta, dy, acts->act[l], acts->conv_out[l],
                                    acts->mean[l], acts->rstd[l], L->bn_gamma, B, C, HW);
        } else if (s->pool) {
            /* out = relu(pooled), pooled = maxpool(conv_out) */
            const size_t np = layer_out_floats(s, B);
            float *dpooled = acts->dpooled;
            enc_zero(dpooled, np);
            relu_backward(dpooled, dy, acts->pooled[l], np);
            maxpool_backward(dconv, dpooled, acts->argmax[l], B * C, s->h_out, s->w_out);
        } else {
            /* out = relu(conv_out) */
            relu_backward(dconv, dy, acts->act[l], full);
        }
        /* conv_out = conv(x) */
        const float *x = acts->images;
        float *dx = NULL;
        if (l > 0) {
            const ConvShape *prev = &acts->shapes[l - 1];
            x = prev->pool ? acts->pooled[l - 1] : acts->act[l - 1];
            dx = acts->dlayer[cur ^ 1];
        }
        LayerTask t = {acts, s, L, G, x, dx, l, bn};
        const int grain = enc_grain(B, acts->lanes), chunks = sac_parallel_chunks(B, grain);
        if (chunks == 1) {
            if (dx) enc_zero_par(dx, layer_in_floats(s, B));
            conv2d_backward(dx, G->weight, bn ? NULL : G->bias, acts->scratch[0], dconv, x, L->weight, B, s->cin,
                            s->h_in, s->w_in, C, s->stride);
        } else {
            sac_parallel_for(B, grain, conv_backward_chunk, &t);
            /* the chunks' weight gradients, in chunk order */
            ReduceTask rt = {acts->dw, chunks, G->weight, bn ? NULL : G->bias, (int)((size_t)C * s->cin * 9), C};
            sac_parallel_blocks(rt.n_w + C, 16384, reduce_dw_block, &rt);
        }
        cur ^= 1;
        dy = dx;
    }
    return SAC_OK;
}

/* ---- inference encoder -------------------------------------------------------------------- */

struct EncoderInfer {
    EncoderConfig cfg;
    ConvShape shapes[SAC_MAX_CONV];
    int max_batch, grid_h, grid_w;
    float *params;                /* every folded weight and bias, one allocation */
    float *w[SAC_MAX_CONV];       /* (Cout, Cin, 3, 3) folded */
    float *prep[SAC_MAX_CONV];    /* the same, conv2d_prepare, when the conv takes prepared weights
                                   * (then w is NULL: the forward reads only these) */
    float *scale[SAC_MAX_CONV];   /* (Cout) the batchnorm scale folded into w or prep */
    float *b[SAC_MAX_CONV];       /* (Cout) folded */
    /* Each lane (a chunk of images running on the pool) has its own buffers and takes its
     * images `sub` at a time, so memory does not grow with max_batch. */
    int lanes, sub;
    float *full[ENC_MAX_LANES];     /* (sub, C, Ho, Wo) conv output of a pooled layer */
    float *layer[ENC_MAX_LANES][2]; /* (sub, C, H, W) layer outputs, ping-pong */
    float *scratch[ENC_MAX_LANES];  /* conv scratch */
};

void encoder_infer_update(EncoderInfer *enc, const EncoderParams *p)
{
    for (int l = 0; l < enc->cfg.n_conv; l++) {
        const ConvShape *s = &enc->shapes[l];
        const ConvLayerParams *L = &p->conv[l];
        const size_t k = (size_t)s->cin * 9;
        float *scale = enc->scale[l];
        for (int o = 0; o < s->cout; o++) {
            double sc = 1.0, shift = L->bias ? L->bias[o] : 0.0;
            if (enc->cfg.batchnorm) {
                /* bn(conv + bias) = (conv + bias - mean) * g / sqrt(var + eps) + beta */
                sc = L->bn_gamma[o] / sqrt((double)L->bn_var[o] + (double)SAC_BN_EPS);
                shift = L->bn_beta[o] + (shift - L->bn_mean[o]) * sc;
            }
            if (enc->w[l])
                for (size_t i = 0; i < k; i++) enc->w[l][o * k + i] = (float)(L->weight[o * k + i] * sc);
            scale[o] = (float)sc;
            enc->b[l][o] = (float)shift;
        }
        if (enc->prep[l]) conv2d_prepare(enc->prep[l], L->weight, scale, s->cin, s->cout, s->stride);
    }
}

EncoderInfer *encoder_infer_create(const EncoderConfig *cfg, const EncoderParams *p, int max_batch)
{
    if (max_batch < 1) {
        sac_error("encoder_infer_create: max_batch is %d, expected >= 1", max_batch);
        return NULL;
    }
    EncoderInfer *e = sac_calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->cfg = *cfg;
    e->max_batch = max_batch;
    if (encoder_shapes(cfg, e->shapes, &e->grid_h, &e->grid_w) != SAC_OK) goto fail;
    if (!enc_params_ok(p, cfg, "parameters", 1)) goto fail;
    e->lanes = enc_lanes(max_batch);
    e->sub = SAC_MIN(max_batch, ENC_INFER_SUB);
    const int B = e->sub;
    size_t n_params = 0, max_full = 0, max_layer = 0, max_scratch = 0;
    for (int l = 0; l < cfg->n_conv; l++) {
        const ConvShape *s = &e->shapes[l];
        const size_t np = conv2d_prepared_floats(s->cin, s->cout, s->stride);
        n_params += (np ? np : (size_t)s->cout * s->cin * 9) + 2 * (size_t)s->cout;
        if (s->pool) max_full = SAC_MAX(max_full, conv_out_floats(s, B));
        max_layer = SAC_MAX(max_layer, layer_out_floats(s, B));
        max_scratch = SAC_MAX(max_scratch, conv_scratch_any(s, B));
    }
    if (!(e->params = sac_alloc_floats(n_params))) goto fail;
    float *q = e->params;
    for (int l = 0; l < cfg->n_conv; l++) {
        const ConvShape *s = &e->shapes[l];
        const size_t np = conv2d_prepared_floats(s->cin, s->cout, s->stride);
        e->prep[l] = np ? q : NULL;
        e->w[l] = np ? NULL : q + np;
        q += np ? np : (size_t)s->cout * s->cin * 9;
        e->scale[l] = q;
        q += s->cout;
        e->b[l] = q;
        q += s->cout;
    }
    for (int k = 0; k < e->lanes; k++) {
        if (max_full && !(e->full[k] = sac_alloc_floats(max_full))) goto fail;
        if (!(e->layer[k][0] = sac_alloc_floats(max_layer))) goto fail;
        if (!(e->layer[k][1] = sac_alloc_floats(max_layer))) goto fail;
        if (!(e->scratch[k] = sac_alloc_floats(max_scratch))) goto fail;
    }
    /* touch the first lane's pages now, so the first forward does not pay the page faults (the
     * other lanes' only when a batch uses them: a one-image caller never pays their memory) */
    if (max_full) memset(e->full[0], 0, sizeof(float) * max_full);
    memset(e->layer[0][0], 0, sizeof(float) * max_layer);
    memset(e->layer[0][1], 0, sizeof(float) * max_layer);
    memset(e->scratch[0], 0, sizeof(float) * max_scratch);
    encoder_infer_update(e, p);
    return e;
fail:
    encoder_infer_free(e);
    return NULL;
}

void encoder_infer_free(EncoderInfer *enc)
{
    if (!enc) return;
    free(enc->params);
    for (int k = 0; k < ENC_MAX_LANES; k++)
        free(enc->full[k]), free(enc->layer[k][0]), free(enc->layer[k][1]), free(enc->scratch[k]);
    free(enc);
}

typedef struct {
    EncoderInfer *e;
    float *feats;
    const float *images;
} InferTask;

/* The whole network for images [b0, b1) on lane `lane`, `sub` images at a time through the
 * lane's own buffers. */
static void infer_chunk(void *arg, int b0, int b1, int lane)
{
    const InferTask *t = arg;
    EncoderInfer *enc = t->e;
    const ConvShape *last = &enc->shapes[enc->cfg.n_conv - 1];
    const int P = last->h_pool * last->w_pool;
    for (int i0 = b0; i0 < b1; i0 += enc->sub) {
        const int nb = SAC_MIN(enc->sub, b1 - i0);
        const float *x = t->images + i0 * layer_in_floats(&enc->shapes[0], 1);
        int cur = 0;
        for (int l = 0; l < enc->cfg.n_conv; l++) {
            const ConvShape *s = &enc->shapes[l];
            float *y = enc->layer[lane][cur];
            float *c = s->pool ? enc->full[lane] : y;
            conv2d_relu_forward(c, enc->scratch[lane], x, enc->w[l], enc->prep[l], enc->b[l], nb, s->cin, s->h_in,
                                s->w_in, s->cout, s->stride);
            if (s->pool) maxpool_forward(y, NULL, c, nb * s->cout, s->h_out, s->w_out);
            x = y;
            cur ^= 1;
        }
        enc_to_grid(t->feats + (size_t)i0 * P * last->cout, x, nb, last->cout, P);
    }
}

int encoder_infer_forward(EncoderInfer *enc, float *feats, const float *images, int B)
{
    if (B < 1 || B > enc->max_batch) {
        sac_error("encoder_infer_forward: batch of %d images, expected 1..%d", B, enc->max_batch);
        return SAC_ERR_INVALID;
    }
    InferTask t = {enc, feats, images};
    sac_parallel_for(B, enc_grain(B, enc->lanes), infer_chunk, &t);
    return SAC_OK;
}
