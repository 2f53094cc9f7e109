/*
 * data_cache.c - a split's data in memory: decoded images, encoded captions, backbone
 * features, augmentation; see data_cache.h.
 *
 * Size letters: B images, S input side, T caption steps, P grid positions, Eb backbone channels.
 */
#include "data_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "image.h"
#include "mobilenet.h"
#include "sac.h"
#include "safetensors.h"
#include "threadpool.h"
#include "vocab.h"

void data_cache_free(DataCache *c)
{
    free(c->pix), free(c->item), free(c->cap_off), free(c->tok), free(c->len), free(c->slot);
    memset(c, 0, sizeof(*c));
}

int data_cache_build(DataCache *c, const Dataset *ds, int max_items, const Vocab *vocab, int S, int T,
                     const char *what)
{
    return data_cache_build_shard(c, ds, max_items, vocab, S, T, 0, 1, NULL, what);
}

int data_cache_build_shard(DataCache *c, const Dataset *ds, int max_items, const Vocab *vocab, int S, int T,
                           int rank, int nproc, const volatile int *cancel, const char *what)
{
    memset(c, 0, sizeof(*c));
    int n = ds->n_items;
    if (max_items > 0 && max_items < n) n = max_items;
    int n_mine = 0;
    for (int i = 0; i < n; i++) n_mine += i % nproc == rank;
    const int total_caps = dataset_n_captions(ds);
    c->S = S, c->T = T;
    c->pix = malloc((size_t)(n_mine ? n_mine : 1) * S * S * 3);
    c->item = malloc(sizeof(int) * (n ? n : 1));
    c->cap_off = malloc(sizeof(int) * (n + 1));
    c->tok = malloc(sizeof(int) * (size_t)(total_caps ? total_caps : 1) * (T + 1));
    c->len = malloc(sizeof(int) * (total_caps ? total_caps : 1));
    int *row = malloc(sizeof(int) * (n ? n : 1));                  /* image i's row in pix, -1: not here */
    int64_t *bad = calloc((size_t)(n ? n : 1), sizeof(int64_t)); /* 1: image i could not be read */
    int st = c->pix && c->item && c->cap_off && c->tok && c->len && row && bad ? SAC_OK : SAC_ERR_NOMEM;
    if (!st && nproc > 1 && !(c->slot = malloc(sizeof(int) * (n ? n : 1)))) st = SAC_ERR_NOMEM;
    if (st) sac_error("%s: out of memory caching %d images", what, n_mine);
    if (nproc > 1) st = sac_dist_agree(st); /* collectives only for a data-parallel cache */
    int failed = 0, k = 0, ncap = 0;
    double t0 = sac_time();
    for (int i = 0; i < n && !st; i++) {
        row[i] = -1;
        if (i % nproc != rank) continue;
        if (nproc == 1 && cancel && *cancel) { /* a data-parallel run stops at its next collective */
            st = SAC_ERR_CANCELLED;
            break;
        }
        SacImage img = {0}, small = {0};
        int ist = sac_image_load_scaled(ds->items[i].image_path, S, &img, 0); /* a large JPEG decoded at 1/2-1/8 size */
        if (!ist) ist = sac_image_resize(&img, S, S, &small);
        sac_image_free(&img);
        if (ist) {
            bad[i] = 1;
            continue;
        }
        memcpy(c->pix + (size_t)k * S * S * 3, small.rgb, (size_t)S * S * 3);
        sac_image_free(&small);
        row[i] = k++;
    }
    c->n_local = k;
    if (!st && nproc > 1) st = sac_dist_allreduce_i64(bad, (size_t)n, SAC_DIST_SUM); /* every rank's failures */
    k = 0;
    for (int i = 0; i < n && !st; i++) {
        const DatasetItem *it = &ds->items[i];
        if (bad[i]) {
            failed++;
            continue;
        }
        c->item[k] = i;
        if (c->slot) c->slot[k] = row[i];
        c->cap_off[k] = ncap;
        for (int j = 0; vocab && j < it->n_captions; j++) {
            int *t = c->tok + (size_t)ncap * (T + 1);
            int trunc = 0;
            int nw = vocab_encode(vocab, it->captions[j], T - 1, t + 1, &trunc);
            if (nw < 0) continue;
            c->n_truncated += trunc;
            t[0] = SAC_VOCAB_START;
            t[nw + 1] = SAC_VOCAB_END;
            for (int q = nw + 2; q <= T; q++) t[q] = SAC_VOCAB_PAD;
            c->len[ncap++] = nw + 1;
        }
        k++;
    }
    free(row), free(bad);
    if (st) {
        data_cache_free(c);
        return st;
    }
    c->n = k;
    c->cap_off[k] = ncap;
    char share[64] = "";
    if (nproc > 1) snprintf(share, sizeof(share), " (this rank holds %d)", c->n_local);
    if (failed) sac_warn("%s: %d of %d images could not be read and are skipped (see messages above)", what, failed, n);
    if (vocab)
        sac_info("%s: %d images%s, %d captions cached in %.1f s", what, k, share, ncap, sac_time() - t0);
    else
        sac_info("%s: %d images%s cached in %.1f s", what, k, share, sac_time() - t0);
    if (c->n_truncated)
        sac_info("%s: %d captions longer than %d words were truncated", what, c->n_truncated, T - 1);
    if (k == 0) {
        sac_error("%s: no readable images", what);
        data_cache_free(c);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}

void feat_cache_free(FeatCache *fc)
{
    free(fc->f);
    memset(fc, 0, sizeof(*fc));
}

/* The random draws (augment_draw, serial, in image order) are separate from the pixel work
 * (augment_apply, on the pool), so the data stream does not depend on the thread count. */
Augment augment_draw(SacRng *rng, int augment, int S)
{
    Augment a = {0, 0, 1.0f, 0.0f, 0.0f};
    if (augment) {
        a.on = 1;
        a.flip = sac_rng_uniform(rng) < 0.5f;
        a.zoom = 1.0f + 0.15f * sac_rng_uniform(rng);
        a.dx = (2.0f * sac_rng_uniform(rng) - 1.0f) * 0.06f * S;
        a.dy = (2.0f * sac_rng_uniform(rng) - 1.0f) * 0.06f * S;
    }
    return a;
}

/* Image pix (S, S, 3) augmented by aug into tmp, then the same normalisation as inference. */
static void augment_apply(float *out, const uint8_t *pix, int S, const ModelConfig *cfg, const Augment *aug,
                          uint8_t *tmp)
{
    SacImage view = {S, S, (uint8_t *)pix};
    if (aug->on) {
        const int flip = aug->flip;
        const float zoom = aug->zoom, dx = aug->dx, dy = aug->dy;
        const float c = 0.5f * S;
        for (int y = 0; y < S; y++) {
            for (int x = 0; x < S; x++) {
                float sx = (x + 0.5f - c) / zoom + c - 0.5f + dx;
                float sy = (y + 0.5f - c) / zoom + c - 0.5f + dy;
                if (flip) sx = S - 1 - sx;
                sx = sx < 0 ? 0 : sx > S - 1 ? S - 1 : sx;
                sy = sy < 0 ? 0 : sy > S - 1 ? S - 1 : sy;
                int x0 = (int)sx, y0 = (int)sy;
                int x1 = x0 + 1 < S ? x0 + 1 : x0, y1 = y0 + 1 < S ? y0 + 1 : y0;
                float fx = sx - x0, fy = sy - y0;
                for (int ch = 0; ch < 3; ch++) {
                    float a = pix[((size_t)y0 * S + x0) * 3 + ch], b = pix[((size_t)y0 * S + x1) * 3 + ch];
                    float d = pix[((size_t)y1 * S + x0) * 3 + ch], e = pix[((size_t)y1 * S + x1) * 3 + ch];
                    float v = (a * (1 - fx) + b * fx) * (1 - fy) + (d * (1 - fx) + e * fx) * fy;
                    tmp[((size_t)y * S + x) * 3 + ch] = (uint8_t)(v + 0.5f);
                }
            }
        }
        view.rgb = tmp;
    }
    sac_image_preprocess(&view, S, cfg->mean, cfg->std, out);
}

/* Preparing a batch of images on the pool: image b from cached pixels item[b], augmented by
 * aug[b] (NULL: none) into out + b * 3 S S, tmp + b * S S 3 as its scratch. */
typedef struct {
    float *out;
    const uint8_t *pix;
    const int *item;
    const Augment *aug;
    uint8_t *tmp;
    const ModelConfig *cfg;
    int S;
} PrepTask;

static void prep_images(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const PrepTask *t = p;
    const size_t S = t->S;
    const Augment none = {0, 0, 1.0f, 0.0f, 0.0f};
    for (int b = b0; b < b1; b++)
        augment_apply(t->out + b * 3 * S * S, t->pix + (size_t)t->item[b] * S * S * 3, t->S, t->cfg,
                      t->aug ? &t->aug[b] : &none, t->tmp ? t->tmp + b * S * S * 3 : NULL);
}

void data_cache_images(const DataCache *c, const int *item, const Augment *aug, int B, const ModelConfig *cfg,
                       uint8_t *tmp, float *out)
{
    PrepTask pt = {out, c->pix, item, aug, tmp, cfg, c->S};
    sac_parallel_for(B, 1, prep_images, &pt);
}

/* Chunk by chunk; the pixels are not needed again. */
int feat_cache_build(FeatCache *fc, DataCache *c, const Model *m, Captioner *cap, int views,
                     const volatile int *cancel, const char *what)
{
    enum { chunk = 32 };
    const int S = c->S, first = m->cfg.bb.finetune_from;
    memset(fc, 0, sizeof(*fc));
    const int n = c->n_local; /* the images whose pixels are here */
    fc->n = n, fc->views = views, fc->per = (size_t)m->P * m->cfg.bb.channels;
    MobileNetInfer *net = NULL; /* fine-tuning: the frozen trunk below block `first` */
    MobileNetBlockShape sh = {0};
    if (first) {
        MobileNetConfig mc;
        model_mobilenet_config(&m->cfg, &mc);
        const int bst = mobilenet_block_shape(&mc, first, &sh);
        net = bst ? NULL : mobilenet_infer_create(&mc, (const float *const *)m->p.backbone, chunk);
        if (!net) return bst ? bst : SAC_ERR_NOMEM;
        fc->trunk = first, fc->per = (size_t)sh.side * sh.side * sh.cin;
    }
    fc->f = malloc(sizeof(uint16_t) * fc->per * views * (size_t)(n ? n : 1));
    float *images = sac_alloc_floats((size_t)chunk * 3 * S * S);
    float *bfeats = sac_alloc_floats((size_t)chunk * fc->per);
    uint8_t *tmp = malloc((size_t)chunk * S * S * 3);
    Augment *augs = malloc(sizeof(Augment) * chunk);
    int st = (fc->f && images && bfeats && tmp && augs) ? SAC_OK : SAC_ERR_NOMEM;
    if (st) sac_error("%s: out of memory caching the backbone %s of %d images (%.1f GB)", what,
                      first ? "trunk outputs" : "features", n, 2e-9 * fc->per * views * n);
    const double t0 = sac_time();
    for (int v = 0; v < views && !st; v++) {
        for (int i0 = 0; i0 < n && !st; i0 += chunk) {
            if (cancel && *cancel) {
                st = SAC_ERR_CANCELLED;
                break;
            }
            const int B = SAC_MIN(chunk, n - i0);
            int item[chunk];
            for (int b = 0; b < B; b++) {
                item[b] = i0 + b;
                augs[b] = (Augment){v == 1, v == 1, 1.0f, 0.0f, 0.0f}; /* zoom 1, no shift: an exact mirror */
            }
            data_cache_images(c, item, augs, B, &m->cfg, tmp, images);
            st = net ? mobilenet_infer_trunk(net, bfeats, images, B, first)
                     : captioner_backbone_features(cap, images, B, bfeats);
            for (int b = 0; b < B && !st; b++)
                sac_float_to_half_array(fc->f + ((size_t)(i0 + b) * views + v) * fc->per, bfeats + b * fc->per,
                                        fc->per);
        }
    }
    free(images), free(bfeats), free(tmp), free(augs);
    mobilenet_infer_free(net);
    if (st) {
        feat_cache_free(fc);
        return st;
    }
    if (first)
        sac_info("%s: the frozen trunk's output (the input of block %d: %dx%dx%d, fp16) of %d images%s cached in "
                 "%.1f s (%.2f GB; the %dx%dx%d grid would take %.2f GB)", what, first, sh.side, sh.side, sh.cin, n,
                 views == 2 ? " and their mirror images" : "", sac_time() - t0, 2e-9 * fc->per * views * n,
                 m->grid_h, m->grid_w, m->cfg.bb.channels, 2e-9 * m->P * m->cfg.bb.channels * views * n);
    else
        sac_info("%s: backbone features of %d images%s cached in %.1f s (%.2f GB)", what, n,
                 views == 2 ? " and their mirror images" : "", sac_time() - t0, 2e-9 * fc->per * views * n);
    free(c->pix); /* the features replace the pixels */
    c->pix = NULL;
    return SAC_OK;
}

typedef struct {
    float *out;
    const FeatCache *fc;
    const int *item, *view;
} FeatTask;

static void feat_gather(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const FeatTask *t = p;
    const FeatCache *fc = t->fc;
    for (int b = b0; b < b1; b++) {
        const int v = t->view ? t->view[b] : 0;
        sac_half_to_float_array(t->out + b * fc->per, fc->f + ((size_t)t->item[b] * fc->views + v) * fc->per,
                                fc->per);
    }
}

void feat_cache_gather(const FeatCache *fc, const int *item, const int *view, int B, float *out)
{
    FeatTask ft = {out, fc, item, view};
    sac_parallel_for(B, 1, feat_gather, &ft);
}

int feat_cache_top(FeatCache *grid, const FeatCache *trunk, TrainStep *ts, const Model *m, int max_images,
                   float *scratch)
{
    enum { chunk_max = 64 };
    const size_t per = (size_t)m->P * m->cfg.bb.channels, total = per * trunk->views * (size_t)trunk->n;
    if (!grid->f) {
        grid->f = malloc(sizeof(uint16_t) * (total ? total : 1));
        if (!grid->f) {
            sac_error("out of memory for the backbone features of %d images (%.2f GB)", trunk->n, 2e-9 * total);
            return SAC_ERR_NOMEM;
        }
    }
    grid->n = trunk->n, grid->views = trunk->views, grid->per = per, grid->trunk = 0;
    float *in = scratch, *out = scratch + (size_t)max_images * trunk->per;
    int item[chunk_max], view[chunk_max];
    const int chunk = SAC_MIN(max_images, chunk_max);
    int st = SAC_OK;
    for (int v = 0; v < trunk->views && !st; v++)
        for (int i0 = 0; i0 < trunk->n && !st; i0 += chunk) {
            const int B = SAC_MIN(chunk, trunk->n - i0);
            for (int b = 0; b < B; b++) item[b] = i0 + b, view[b] = v;
            feat_cache_gather(trunk, item, view, B, in);
            st = train_step_backbone_features(ts, in, B, out);
            for (int b = 0; b < B && !st; b++)
                sac_float_to_half_array(grid->f + ((size_t)(i0 + b) * grid->views + v) * per, out + b * per, per);
        }
    return st;
}

void data_cache_refs_free(char ***refs, int *n_refs, int n)
{
    for (int i = 0; refs && i < n; i++) {
        for (int j = 0; refs[i] && j < n_refs[i]; j++) free(refs[i][j]);
        free(refs[i]);
    }
    free(refs), free(n_refs);
}

int data_cache_refs(const DataCache *c, const Dataset *ds, char ****refs, int **n_refs)
{
    const int n = c->n;
    char ***r = sac_calloc(n ? n : 1, sizeof(char **));
    int *nr = sac_calloc(n ? n : 1, sizeof(int));
    int st = r && nr ? SAC_OK : SAC_ERR_NOMEM;
    for (int i = 0; i < n && !st; i++) {
        const DatasetItem *it = &ds->items[c->item[i]];
        r[i] = sac_calloc(it->n_captions ? it->n_captions : 1, sizeof(char *));
        if (!r[i]) {
            st = SAC_ERR_NOMEM;
            break;
        }
        nr[i] = it->n_captions;
        for (int j = 0; j < it->n_captions && !st; j++)
            if (!(r[i][j] = sac_caption_normalize(it->captions[j]))) st = SAC_ERR_NOMEM;
    }
    *refs = r, *n_refs = nr;
    return st;
}
