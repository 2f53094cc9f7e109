/*
 * mobilenet.c - MobileNetV2 inference forward, channels last; see mobilenet.h.
 *
 * Activations are NHWC: one image is (H, W, C), so a 1x1 convolution is one product
 * (H*W, Cin) @ (Cin, Cout) with bias, residual and ReLU6 fused (pointwise.c, weights packed at
 * creation) and the depthwise 3x3 works on contiguous vectors of channels (depthwise.c).
 * Each inverted-residual block (expansion 1x1 + ReLU6, depthwise 3x3 + ReLU6, projection 1x1,
 * residual) runs fused, a few output rows at a time: the expanded rows it needs
 * are computed into a ring of rows (sized to stay in L2; consecutive steps share their overlap
 * rows instead of recomputing them), the depthwise output of those rows goes to a small buffer,
 * and the projection writes the block's output rows, its bias and the residual added first. So
 * the widest tensors (6x the block's channels) never go to memory. The first conv (3x3 stride 2
 * on the 3 input channels, NCHW images) is block 1's "expansion": im2col of its rows, then
 * the same 1x1 kernel with K = 27.
 *
 * Work is split into tasks (image, band of output rows), claimed dynamically by a fixed number
 * of slots (each with its own scratch) on the thread pool, each kernel call serial inside its
 * task. Every kernel computes each output from the same terms in the same order whatever rows
 * it is given with, so an image gives the same bits alone, in any batch and with any pool size.
 * Images split into bands only while there are too few images to feed the slots; a band
 * boundary costs the expansion of its 1-2 overlap rows twice.
 *
 * Size letters: B batch, S input side, C channels, H W input side of a layer, Ho Wo output
 * side, P grid positions, E grid channels, N classes.
 */
#include "mobilenet.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "depthwise.h"
#include "pointwise.h"
#include "sac.h"
#include "threadpool.h"

/* features.1 .. features.17 */
enum { MN_BLOCKS = 17, MN_STEM_C = 32, MN_LAST_C = 1280 };

/* The (t, c, n, s) table of the paper (features.2 .. 17; features.1 is (1, 16, 1, 1)). */
static const int mn_groups[6][4] = {{6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};

/* Floats of the expanded-row ring of one block (per slot): 512 KB. */
enum { MN_RING_FLOATS = 1 << 17 };
/* Tiles of the final 1x1 conv (the head) and of the classifier. */
enum { MN_HEAD_ROWS = 64, MN_HEAD_COLS = 256, MN_CLS_COLS = 128 };

typedef struct MnBlock {
    int cin, hid, cout, stride, residual;
    int H, W, Ho, Wo, pad_top, pad_left;
    int rows; /* output rows per step */
    int ring; /* rows of the expanded-row ring: (rows - 1) * stride + 3 */
    const float *w_exp;       /* packed (pointwise.h) cin -> hid; NULL in block 1, whose expansion is the stem */
    const float *w_dw, *b_dw; /* (9, hid), (hid) */
    const float *w_proj;      /* packed hid -> cout */
} MnBlock;

struct MobileNetInfer {
    MobileNetConfig cfg;
    int n_blocks; /* 13 (grid 14) or 17 */
    MnBlock blk[MN_BLOCKS];
    int S, stem_pad;              /* the stem: 3x3 stride 2 on S x S, pad_top = pad_left = stem_pad */
    const float *w_stem;          /* packed 27 -> 32, inputs c*9 + ky*3 + kx */
    int head_cin, E, G, P;        /* the head: 1x1 head_cin -> E + ReLU6 on the G x G grid */
    const float *w_head;          /* packed head_cin -> E */
    const float *w_cls;           /* packed 1280 -> N */
    int max_batch, slots, kernel;
    float *params;
    float *act[2];       /* ping-pong block outputs, (max_batch, largest H*W*C) each */
    float *feats_buf;    /* (max_batch, P, E): classify with feats NULL */
    float *pooled;       /* (max_batch, 1280) */
    float *scratch;      /* slots x slot_floats */
    size_t slot_floats;
    size_t ring_floats, dw_floats; /* offsets inside a slot: ring, dw rows, stem columns */
};

void mobilenet_config_default(MobileNetConfig *cfg)
{
    *cfg = (MobileNetConfig){.grid = MOBILENET_GRID7, .pad_same = 1, .image_size = 224, .n_classes = 1001};
}

int mobilenet_config_check(const MobileNetConfig *cfg)
{
    if (cfg->grid != MOBILENET_GRID14 && cfg->grid != MOBILENET_GRID7 && cfg->grid != MOBILENET_CLASSIFY) {
        sac_error("mobilenet: grid %d, expected 14, 7 or 0 (classify)", cfg->grid);
        return SAC_ERR_INVALID;
    }
    if (cfg->image_size < 32 || cfg->image_size > 1024 || cfg->image_size % 32) {
        sac_error("mobilenet: image_size %d, expected a multiple of 32 in 32..1024", cfg->image_size);
        return SAC_ERR_INVALID;
    }
    if (cfg->pad_same != 0 && cfg->pad_same != 1) {
        sac_error("mobilenet: pad_same %d, expected 0 or 1", cfg->pad_same);
        return SAC_ERR_INVALID;
    }
    if (cfg->grid == MOBILENET_CLASSIFY && (cfg->n_classes < 1 || cfg->n_classes > 100000)) {
        sac_error("mobilenet: n_classes %d, expected 1..100000", cfg->n_classes);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}

int mobilenet_grid_side(const MobileNetConfig *cfg)
{
    return cfg->grid == MOBILENET_GRID14 ? cfg->image_size / 16 : cfg->image_size / 32;
}

int mobilenet_grid_channels(const MobileNetConfig *cfg) { return cfg->grid == MOBILENET_GRID14 ? 576 : MN_LAST_C; }

/* Zero rows above (and columns left of) a 3x3 conv of this stride on a side of n. */
static int mn_pad_before(int n, int stride, int same)
{
    if (!same) return 1;
    const int out = (n + stride - 1) / stride, total = (out - 1) * stride + 3 - n;
    return total > 0 ? total / 2 : 0;
}

int mobilenet_block_shape(const MobileNetConfig *cfg, int n, MobileNetBlockShape *sh)
{
    if (mobilenet_config_check(cfg)) return SAC_ERR_INVALID;
    const int last = cfg->grid == MOBILENET_GRID14 ? 13 : 17;
    if (n < 1 || n > last) {
        sac_error("mobilenet: block %d, expected 1..%d with grid %d", n, last, cfg->grid);
        return SAC_ERR_INVALID;
    }
    int side = cfg->image_size / 2, cin = MN_STEM_C, spec = 2;
    for (int i = 1; i <= n; i++) {
        int t = 6, cout, s;
        if (i == 1) {
            t = 1, cout = 16, s = 1;
        } else {
            int g = 0, k = i - 2;
            while (k >= mn_groups[g][2]) k -= mn_groups[g++][2];
            cout = mn_groups[g][1];
            s = k == 0 ? mn_groups[g][3] : 1;
        }
        if (i == n) {
            *sh = (MobileNetBlockShape){.cin = cin, .hid = cin * t, .cout = cout, .stride = s,
                                        .residual = s == 1 && cin == cout, .side = side,
                                        .side_out = (side + s - 1) / s, .pad = mn_pad_before(side, s, cfg->pad_same),
                                        .first_spec = spec};
            return SAC_OK;
        }
        spec += i == 1 ? 4 : 6;
        side = (side + s - 1) / s, cin = cout;
    }
    return SAC_ERR_INVALID;
}

/* ---- the tensor list ---- */

typedef struct {
    MobileNetSpec *specs;
    int max, n;
} SpecList;

static void spec_conv(SpecList *l, const char *name, int cout, int cin, int k)
{
    for (int part = 0; part < 2; part++) {
        if (l->specs && l->n < l->max) {
            MobileNetSpec *s = &l->specs[l->n];
            memset(s, 0, sizeof(*s));
            const char *suffix = part ? ".bias" : ".weight";
            const size_t len = strlen(name);
            SAC_ASSERT(len + strlen(suffix) < sizeof(s->name));
            memcpy(s->name, name, len);
            memcpy(s->name + len, suffix, strlen(suffix) + 1);
            if (part) {
                s->ndim = 1, s->shape[0] = cout;
            } else if (k == 0) { /* linear */
                s->ndim = 2, s->shape[0] = cout, s->shape[1] = cin;
            } else {
                s->ndim = 4, s->shape[0] = cout, s->shape[1] = cin, s->shape[2] = k, s->shape[3] = k;
            }
        }
        l->n++;
    }
}

int mobilenet_specs(const MobileNetConfig *cfg, MobileNetSpec *specs, int max)
{
    if (mobilenet_config_check(cfg)) return SAC_ERR_INVALID;
    SpecList l = {specs, max, 0};
    char name[MOBILENET_NAME_MAX];
    spec_conv(&l, "features.0.0", MN_STEM_C, 3, 3);
    spec_conv(&l, "features.1.conv.0.0", MN_STEM_C, 1, 3);
    spec_conv(&l, "features.1.conv.1", 16, MN_STEM_C, 1);
    int cin = 16, n = 2;
    for (int g = 0; g < 6; g++) {
        for (int r = 0; r < mn_groups[g][2]; r++, n++) {
            const int hid = cin * mn_groups[g][0], cout = mn_groups[g][1];
            snprintf(name, sizeof(name), "features.%d.conv.0.0", n);
            spec_conv(&l, name, hid, cin, 1);
            if (cfg->grid == MOBILENET_GRID14 && n == 14) return l.n;
            snprintf(name, sizeof(name), "features.%d.conv.1.0", n);
            spec_conv(&l, name, hid, 1, 3);
            snprintf(name, sizeof(name), "features.%d.conv.2", n);
            spec_conv(&l, name, cout, hid, 1);
            cin = cout;
        }
    }
    spec_conv(&l, "features.18.0", MN_LAST_C, cin, 1);
    if (cfg->grid == MOBILENET_CLASSIFY) spec_conv(&l, "classifier.1", cfg->n_classes, MN_LAST_C, 0);
    return l.n;
}

/* ---- creation: geometry and repacked weights ---- */

/* The next tensor of the spec order, copied or transposed into the parameter buffer. */
typedef struct {
    const float *const *src;
    float *dst; /* next free float of the buffer, or NULL: only count */
    size_t used;
    int t;
} Packer;

/* (rows, cols) source -> (cols, rows) destination; a plain copy with transpose = 0. */
static const float *pack_next(Packer *pk, int rows, int cols, int transpose)
{
    const size_t n = (size_t)rows * cols;
    float *d = pk->dst ? pk->dst + pk->used : NULL;
    if (d) {
        const float *s = pk->src[pk->t];
        if (transpose)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) d[(size_t)c * rows + r] = s[(size_t)r * cols + c];
        else
            memcpy(d, s, sizeof(float) * n);
    }
    pk->t++;
    pk->used += (n + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    return d;
}

/* The next weight (N, K) and bias (N) packed for pointwise_forward. */
static const float *pack_pointwise(Packer *pk, int N, int K)
{
    float *d = pk->dst ? pk->dst + pk->used : NULL;
    if (d) pointwise_pack(d, pk->src[pk->t], pk->src[pk->t + 1], K, N);
    pk->t += 2;
    pk->used += (pointwise_packed_floats(K, N) + 15) & ~(size_t)15;
    return d;
}

/* Geometry and weight pointers of every layer; with pk->dst NULL only counts the floats. */
static void mn_layout(MobileNetInfer *net, Packer *pk)
{
    const MobileNetConfig *cfg = &net->cfg;
    net->S = cfg->image_size;
    net->stem_pad = mn_pad_before(net->S, 2, cfg->pad_same);
    net->w_stem = pack_pointwise(pk, MN_STEM_C, 27);
    int side = net->S / 2, cin = MN_STEM_C;
    net->n_blocks = cfg->grid == MOBILENET_GRID14 ? 13 : 17;
    for (int i = 0; i < net->n_blocks; i++) {
        MnBlock *L = &net->blk[i];
        MobileNetBlockShape sh;
        SAC_ASSERT(mobilenet_block_shape(cfg, i + 1, &sh) == SAC_OK);
        const int s = sh.stride;
        L->cin = sh.cin, L->hid = sh.hid, L->cout = sh.cout, L->stride = s, L->residual = sh.residual;
        L->H = L->W = sh.side;
        L->Ho = L->Wo = sh.side_out;
        L->pad_top = L->pad_left = sh.pad;
        if (i > 0) L->w_exp = pack_pointwise(pk, L->hid, L->cin);
        L->w_dw = pack_next(pk, L->hid, 9, 1);
        L->b_dw = pack_next(pk, 1, L->hid, 0);
        L->w_proj = pack_pointwise(pk, L->cout, L->hid);
        const int fit = MN_RING_FLOATS / (L->W * L->hid);
        L->rows = SAC_MIN(L->Ho, SAC_MAX(1, (fit - 3) / s + 1));
        L->ring = (L->rows - 1) * s + 3;
        side = L->Ho, cin = L->cout;
    }
    net->G = side, net->P = side * side;
    net->head_cin = cin;
    net->E = mobilenet_grid_channels(cfg);
    net->w_head = pack_pointwise(pk, net->E, cin);
    if (cfg->grid == MOBILENET_CLASSIFY) {
        net->w_cls = pack_pointwise(pk, cfg->n_classes, MN_LAST_C);
    }
}

static int online_cores(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > SAC_MAX_THREADS ? SAC_MAX_THREADS : (int)n;
}

MobileNetInfer *mobilenet_infer_create(const MobileNetConfig *cfg, const float *const *tensors, int max_batch)
{
    if (mobilenet_config_check(cfg)) return NULL;
    if (max_batch < 1 || max_batch > 65536) {
        sac_error("mobilenet: max_batch %d, expected 1..65536", max_batch);
        return NULL;
    }
    const int n_specs = mobilenet_specs(cfg, NULL, 0);
    for (int i = 0; i < n_specs; i++) {
        if (!tensors || !tensors[i]) {
            sac_error("mobilenet: tensor %d of %d is missing (NULL)", i, n_specs);
            return NULL;
        }
    }
    MobileNetInfer *net = sac_calloc(1, sizeof(*net));
    if (!net) return NULL;
    net->cfg = *cfg;
    net->max_batch = max_batch;
    net->kernel = sac_kernel_best();
    net->slots = SAC_MAX(sac_threads(), online_cores());

    Packer count = {tensors, NULL, 0, 0};
    mn_layout(net, &count);
    SAC_ASSERT(count.t == n_specs);
    net->params = sac_alloc_floats(count.used);
    if (!net->params) goto fail;
    Packer pk = {tensors, net->params, 0, 0};
    mn_layout(net, &pk);

    size_t act = 0, ring = 0, dw = 0, col = 0;
    for (int i = 0; i < net->n_blocks; i++) {
        const MnBlock *L = &net->blk[i];
        act = SAC_MAX(act, (size_t)L->Ho * L->Wo * L->cout);
        ring = SAC_MAX(ring, (size_t)L->ring * L->W * L->hid);
        dw = SAC_MAX(dw, (size_t)L->rows * L->Wo * L->hid);
        if (i == 0) col = (size_t)L->ring * L->W * 27;
    }
    net->ring_floats = (ring + 15) & ~(size_t)15;
    net->dw_floats = (dw + 15) & ~(size_t)15;
    net->slot_floats = net->ring_floats + net->dw_floats + ((col + 15) & ~(size_t)15);
    net->act[0] = sac_alloc_floats(act * max_batch);
    net->act[1] = sac_alloc_floats(act * max_batch);
    net->scratch = sac_alloc_floats(net->slot_floats * net->slots);
    net->pooled = sac_alloc_floats((size_t)max_batch * MN_LAST_C);
    if (!net->act[0] || !net->act[1] || !net->scratch || !net->pooled) goto fail;
    if (cfg->grid == MOBILENET_CLASSIFY) {
        net->feats_buf = sac_alloc_floats((size_t)max_batch * net->P * net->E);
        if (!net->feats_buf) goto fail;
    }
    return net;
fail:
    sac_error("mobilenet: out of memory for %d images of %d x %d", max_batch, cfg->image_size, cfg->image_size);
    mobilenet_infer_free(net);
    return NULL;
}

void mobilenet_infer_free(MobileNetInfer *net)
{
    if (!net) return;
    free(net->params);
    free(net->act[0]);
    free(net->act[1]);
    free(net->feats_buf);
    free(net->pooled);
    free(net->scratch);
    free(net);
}

const MobileNetConfig *mobilenet_infer_config(const MobileNetInfer *net) { return &net->cfg; }

int mobilenet_infer_set_kernel(MobileNetInfer *net, int kernel)
{
    if (!sac_kernel_supported(kernel)) return SAC_ERR_UNSUPPORTED;
    net->kernel = kernel == SAC_KERNEL_AUTO ? sac_kernel_best() : kernel;
    return SAC_OK;
}

/* ---- the fused block ---- */

/* Stem output rows [r0, r0 + n) of block 1's input into dst (n * W, 32): im2col of the image
 * (3, S, S) into col (n * W, 27), then the 1x1 kernel (bias, ReLU6). */
static void stem_rows(const MobileNetInfer *net, float *dst, float *col, const float *img, int r0, int n, int W)
{
    const int S = net->S, pad = net->stem_pad;
    float *o = col;
    for (int r = r0; r < r0 + n; r++) {
        for (int x = 0; x < W; x++, o += 27) {
            for (int c = 0; c < 3; c++) {
                for (int ky = 0; ky < 3; ky++) {
                    const int iy = r * 2 - pad + ky;
                    const float *row = img + ((size_t)c * S + iy) * S;
                    for (int kx = 0; kx < 3; kx++) {
                        const int ix = x * 2 - pad + kx;
                        o[c * 9 + ky * 3 + kx] = iy >= 0 && iy < S && ix >= 0 && ix < S ? row[ix] : 0.0f;
                    }
                }
            }
        }
    }
    pointwise_forward(net->kernel, dst, MN_STEM_C, col, 27, NULL, 0, net->w_stem, n * W, 27, MN_STEM_C, 1);
}

/* Expanded input rows [a, b) of one image into their ring slots (row r at r % ring). */
static void expand_rows(const MobileNetInfer *net, const MnBlock *L, const float *in, float *ring, float *col,
                        int a, int b)
{
    const size_t rowf = (size_t)L->W * L->hid;
    while (a < b) {
        const int slot = a % L->ring, n = SAC_MIN(b - a, L->ring - slot);
        float *dst = ring + slot * rowf;
        if (!L->w_exp) {
            stem_rows(net, dst, col, in, a, n, L->W);
        } else {
            pointwise_forward(net->kernel, dst, L->hid, in + (size_t)a * L->W * L->cin, L->cin, NULL, 0, L->w_exp,
                              n * L->W, L->cin, L->hid, 1);
        }
        a += n;
    }
}

/* Output rows [oy0, oy1) of block L for one image: in (H, W, cin) (block 1: the image
 * (3, S, S)), out (Ho, Wo, cout). */
static void block_band(const MobileNetInfer *net, const MnBlock *L, const float *in, float *out, int oy0, int oy1,
                       float *scratch)
{
    float *ring = scratch, *dwb = scratch + net->ring_floats, *col = dwb + net->dw_floats;
    const int s = L->stride, pt = L->pad_top;
    const size_t rowf = (size_t)L->W * L->hid, orow = (size_t)L->Wo * L->hid;
    int have = SAC_MAX(0, oy0 * s - pt); /* the next input row to expand */
    for (int oy = oy0; oy < oy1; oy += L->rows) {
        const int n = SAC_MIN(L->rows, oy1 - oy);
        const int r_hi = SAC_MIN(L->H, (oy + n - 1) * s - pt + 3);
        if (have < r_hi) expand_rows(net, L, in, ring, col, have, r_hi);
        have = SAC_MAX(have, r_hi);
        for (int j = 0; j < n; j++) {
            const float *rows[3];
            for (int ky = 0; ky < 3; ky++) {
                const int iy = (oy + j) * s - pt + ky;
                rows[ky] = iy >= 0 && iy < L->H ? ring + (size_t)(iy % L->ring) * rowf : NULL;
            }
            depthwise_row(net->kernel, dwb + j * orow, rows, L->w_dw, L->b_dw, L->W, L->Wo, L->hid, s, L->pad_left);
        }
        const int M = n * L->Wo, C = L->cout;
        float *o = out + (size_t)oy * L->Wo * C;
        const float *res = L->residual ? in + (size_t)oy * L->Wo * C : NULL;
        pointwise_forward(net->kernel, o, C, dwb, L->hid, res, C, L->w_proj, M, L->hid, C, 0);
    }
}

/* ---- running tasks on the pool ---- */

typedef struct MnRun MnRun;
typedef void (*MnTaskFn)(MnRun *r, int task, float *scratch);

struct MnRun {
    const MobileNetInfer *net;
    MnTaskFn fn;
    int tasks;
    atomic_int next;
    /* the block being run */
    const MnBlock *L;
    const float *in;
    float *out;
    size_t in_img, out_img; /* floats per image */
    int bands;
    /* the head / classifier */
    float *feats, *logits;
    int B;
};

static void run_slot(void *p, int slot, int end, int chunk)
{
    (void)end, (void)chunk;
    MnRun *r = p;
    float *scratch = r->net->scratch + (size_t)slot * r->net->slot_floats;
    for (int t; (t = atomic_fetch_add(&r->next, 1)) < r->tasks;) r->fn(r, t, scratch);
}

static void run_tasks(MnRun *r, MnTaskFn fn, int tasks)
{
    r->fn = fn;
    r->tasks = tasks;
    atomic_store(&r->next, 0);
    sac_parallel_blocks(SAC_MIN(r->net->slots, tasks), 1, run_slot, r);
}

static void block_task(MnRun *r, int task, float *scratch)
{
    const MnBlock *L = r->L;
    const int b = task / r->bands, band = task % r->bands;
    const int oy0 = band * L->Ho / r->bands, oy1 = (band + 1) * L->Ho / r->bands;
    block_band(r->net, L, r->in + b * r->in_img, r->out + b * r->out_img, oy0, oy1, scratch);
}

/* Bands per image: the fewest that give every slot work in equal shares (B * bands a multiple
 * of the slots), or at least 4 tasks per slot; at most one per output row. */
static int mn_bands(int B, int slots, int Ho)
{
    int nb = 1;
    while (nb < Ho && (B * nb) % slots != 0 && B * nb < 4 * slots) nb++;
    return nb;
}

static void head_task(MnRun *r, int task, float *scratch)
{
    (void)scratch;
    const MobileNetInfer *net = r->net;
    const int cb = (net->E + MN_HEAD_COLS - 1) / MN_HEAD_COLS, rb = (net->P + MN_HEAD_ROWS - 1) / MN_HEAD_ROWS;
    const int b = task / (cb * rb), rt = task / cb % rb, ct = task % cb;
    const int r0 = rt * MN_HEAD_ROWS, nr = SAC_MIN(MN_HEAD_ROWS, net->P - r0);
    const int c0 = ct * MN_HEAD_COLS, nc = SAC_MIN(MN_HEAD_COLS, net->E - c0);
    const float *x = r->in + b * r->in_img + (size_t)r0 * net->head_cin;
    float *y = r->feats + ((size_t)b * net->P + r0) * net->E + c0;
    const float *w = net->w_head + pointwise_packed_floats(net->head_cin, c0); /* the panels from c0 on */
    pointwise_forward(net->kernel, y, net->E, x, net->head_cin, NULL, 0, w, nr, net->head_cin, nc, 1);
}

static int check_batch(const MobileNetInfer *net, int B)
{
    if (B >= 1 && B <= net->max_batch) return SAC_OK;
    sac_error("mobilenet: batch of %d images, expected 1..%d", B, net->max_batch);
    return SAC_ERR_INVALID;
}

/* Blocks features.1 .. features.n on the images; the last one writes to out (B, Ho, Wo, C), or
 * to a ping-pong buffer when out is NULL. r->in / r->in_img describe the result. */
static void run_blocks(MnRun *r, const float *images, int B, int n, float *out)
{
    const MobileNetInfer *net = r->net;
    const float *in = images;
    size_t in_img = (size_t)3 * net->S * net->S;
    for (int i = 0; i < n; i++) {
        const MnBlock *L = &net->blk[i];
        r->L = L;
        r->in = in, r->in_img = in_img;
        r->out = i == n - 1 && out ? out : net->act[i % 2], r->out_img = (size_t)L->Ho * L->Wo * L->cout;
        r->bands = mn_bands(B, net->slots, L->Ho);
        run_tasks(r, block_task, B * r->bands);
        in = r->out, in_img = r->out_img;
    }
    r->in = in, r->in_img = in_img;
}

int mobilenet_infer_trunk(MobileNetInfer *net, float *out, const float *images, int B, int first)
{
    if (check_batch(net, B)) return SAC_ERR_INVALID;
    if (first < 2 || first > net->n_blocks) {
        sac_error("mobilenet: trunk up to block %d, expected 2..%d for grid %d", first, net->n_blocks, net->cfg.grid);
        return SAC_ERR_INVALID;
    }
    MnRun r;
    memset(&r, 0, sizeof(r));
    r.net = net;
    run_blocks(&r, images, B, first - 1, out);
    return SAC_OK;
}

int mobilenet_infer_forward(MobileNetInfer *net, float *feats, const float *images, int B)
{
    if (check_batch(net, B)) return SAC_ERR_INVALID;
    MnRun r;
    memset(&r, 0, sizeof(r));
    r.net = net;
    run_blocks(&r, images, B, net->n_blocks, NULL);
    r.feats = feats;
    const int cb = (net->E + MN_HEAD_COLS - 1) / MN_HEAD_COLS, rb = (net->P + MN_HEAD_ROWS - 1) / MN_HEAD_ROWS;
    run_tasks(&r, head_task, B * rb * cb);
    return SAC_OK;
}

/* ---- the classifier ---- */

static void pool_task(MnRun *r, int b, float *scratch)
{
    (void)scratch;
    const MobileNetInfer *net = r->net;
    float *o = net->pooled + (size_t)b * MN_LAST_C;
    const float *f = r->feats + (size_t)b * net->P * MN_LAST_C;
    memset(o, 0, sizeof(float) * MN_LAST_C);
    for (int p = 0; p < net->P; p++)
        for (int c = 0; c < MN_LAST_C; c++) o[c] += f[(size_t)p * MN_LAST_C + c];
    for (int c = 0; c < MN_LAST_C; c++) o[c] /= (float)net->P;
}

static void classifier_task(MnRun *r, int task, float *scratch)
{
    (void)scratch;
    const MobileNetInfer *net = r->net;
    const int N = net->cfg.n_classes, c0 = task * MN_CLS_COLS, nc = SAC_MIN(MN_CLS_COLS, N - c0);
    const float *w = net->w_cls + pointwise_packed_floats(MN_LAST_C, c0);
    pointwise_forward(net->kernel, r->logits + c0, N, net->pooled, MN_LAST_C, NULL, 0, w, r->B, MN_LAST_C, nc, 0);
}

int mobilenet_infer_classify(MobileNetInfer *net, float *logits, float *feats, const float *images, int B)
{
    if (net->cfg.grid != MOBILENET_CLASSIFY) {
        sac_error("mobilenet: classify needs a network created with grid 0 (classify), this one has grid %d",
                  net->cfg.grid);
        return SAC_ERR_INVALID;
    }
    if (!feats) feats = net->feats_buf;
    const int st = mobilenet_infer_forward(net, feats, images, B);
    if (st) return st;
    MnRun r;
    memset(&r, 0, sizeof(r));
    r.net = net, r.feats = feats, r.logits = logits, r.B = B;
    run_tasks(&r, pool_task, B);
    run_tasks(&r, classifier_task, (net->cfg.n_classes + MN_CLS_COLS - 1) / MN_CLS_COLS);
    return SAC_OK;
}
