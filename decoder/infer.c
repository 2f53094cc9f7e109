/*
 * infer.c - step-by-step decoding (greedy and beam search), see infer.h.
 *
 * A step is bound by reading the step weights, whatever the number of rows (one image, its
 * beams, a batch of images): 7 MB of fp16 for the default model. decoder_infer_prepare packs
 * them once into panels (matmul.h, sac_packed_matmul), which the steps stream without the
 * per-call packing sgemm does. Every product is split by output panels across the pool, in
 * three parallel phases:
 *   attention: the scores tanh(att1 + att2) . full_w over (row, position) pairs, then per row
 *              the softmax, the context and its gate, and the LSTM input x = [embed; zg];
 *   gates:     act = w_ih @ x for the four gates of 16 hidden units, then their LSTM cell;
 *   h side:    logits = fc(h), and for the next step hside = [att2 | gpre | hh] = h @ [dec_w;
 *              beta_w; w_hh]^T + [dec_b; beta_b; b_hh + b_ih]: one pass over every weight that
 *              reads h.
 * The start (attention projection of the features, h0 and c0) goes through packed weights
 * too. Each output is one dot product summed in a fixed order, so given its image's features,
 * a row's logits do not depend on how many rows decode with it, where it sits, or the thread
 * count.
 *
 * Size letters: R rows, P positions, E encoder channels, A attention dim, D hidden,
 * M embedding dim, V vocabulary, G = 4D gates, W = A + E + G the h-side width.
 */
#include <stdlib.h>
#include <string.h>

#include "infer.h"
#include "fastmath.h"
#include "matmul.h"
#include "sac.h"
#include "threadpool.h"

enum { SEG_DEC, SEG_BETA, SEG_HH, N_HSEG = SEG_HH + 4 }; /* h-side segments: att2, gpre, 4 gates */

struct DecoderInfer {
    DecoderSizes sz;
    int max_rows, max_images;
    const float *feats;
    int *img, *img2;        /* (rows) image of each row */
    float *att1;            /* (images, P, A) */
    float *meanf;           /* (rows, E) */
    float *h, *c, *h2, *c2; /* (rows, D) */
    float *x;               /* (rows, M + E) LSTM input [embed; zg] */
    float *act;             /* (rows, G) w_ih @ x */
    float *logits;          /* (rows, V) */
    float *alpha;           /* (rows, P) */
    float *hside, *hside2;  /* (rows, W) [att2 | gpre | hh + b_ih] of the current h */
    int hside_ok;           /* hside holds the current h's products */
    int rows_now;
    /* the step weights of `prepared`, packed */
    const DecoderParams *prepared;
    SacPacked fc, hseg[N_HSEG], ih[4], init_h, init_c, enc;
    float *hbias; /* (W) [dec_b; beta_b; b_hh + b_ih] */
    void *packed;
    float *arena;
};

void decoder_infer_free(DecoderInfer *inf)
{
    if (!inf) return;
    free(inf->img), free(inf->img2), free(inf->arena), free(inf->packed);
    free(inf);
}

static int hside_width(const DecoderSizes *sz) { return sz->A + sz->E + 4 * sz->D; }

DecoderInfer *decoder_infer_create(const DecoderSizes *sz, int max_rows, int max_images)
{
    DecoderInfer *f = sac_calloc(1, sizeof(*f));
    if (!f) return NULL;
    const size_t R = max_rows, I = max_images, P = sz->P, E = sz->E, A = sz->A, D = sz->D, M = sz->M, V = sz->V,
                 W = hside_width(sz);
    f->sz = *sz, f->max_rows = max_rows, f->max_images = max_images;
    f->img = sac_malloc(sizeof(int) * R);
    f->img2 = sac_malloc(sizeof(int) * R);
    struct {
        float **ptr;
        size_t n;
    } t[] = {{&f->att1, I * P * A}, {&f->meanf, R * E},  {&f->h, R * D},      {&f->c, R * D},
             {&f->h2, R * D},       {&f->c2, R * D},     {&f->x, R * (M + E)}, {&f->act, R * 4 * D},
             {&f->logits, R * V},   {&f->alpha, R * P},  {&f->hside, R * W},  {&f->hside2, R * W},
             {&f->hbias, W}};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) total += (t[i].n + 15) / 16 * 16;
    f->arena = sac_alloc_floats(total);
    if (!f->img || !f->img2 || !f->arena) {
        decoder_infer_free(f);
        return NULL;
    }
    float *cur = f->arena;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        *t[i].ptr = cur;
        cur += (t[i].n + 15) / 16 * 16;
    }
    return f;
}

const DecoderSizes *decoder_infer_sizes(const DecoderInfer *inf) { return &inf->sz; }

/* The matrices decoder_infer_prepare packs, in buffer order. */
typedef struct {
    SacPacked *pk;
    const float *w;
    int ldw, O, K;
} PackJob;

static int pack_jobs(DecoderInfer *f, const DecoderParams *p, PackJob *job)
{
    const DecoderSizes *sz = &f->sz;
    const int D = sz->D, I = sz->M + sz->E;
    int n = 0;
    job[n++] = (PackJob){&f->fc, p->fc_w, D, sz->V, D};
    job[n++] = (PackJob){&f->hseg[SEG_DEC], p->att.dec_w, D, sz->A, D};
    job[n++] = (PackJob){&f->hseg[SEG_BETA], p->att.beta_w, D, sz->E, D};
    for (int g = 0; g < 4; g++) job[n++] = (PackJob){&f->hseg[SEG_HH + g], p->w_hh + (size_t)g * D * D, D, D, D};
    for (int g = 0; g < 4; g++) job[n++] = (PackJob){&f->ih[g], p->w_ih + (size_t)g * D * I, I, D, I};
    job[n++] = (PackJob){&f->init_h, p->init_h_w, sz->E, D, sz->E};
    job[n++] = (PackJob){&f->init_c, p->init_c_w, sz->E, D, sz->E};
    job[n++] = (PackJob){&f->enc, p->att.enc_w, sz->E, sz->A, sz->E};
    return n;
}

int decoder_infer_prepare(DecoderInfer *f, const DecoderParams *p, int half)
{
    const DecoderSizes *sz = &f->sz;
    const int A = sz->A, E = sz->E, D = sz->D;
    PackJob job[16];
    const int n = pack_jobs(f, p, job);
    f->prepared = NULL;
    for (int pass = 0; pass < 2; pass++) { /* pass 1: fp32, when a weight is beyond fp16's range */
        const int h = half && pass == 0;
        size_t bytes = 0;
        for (int i = 0; i < n; i++) bytes += (sac_packed_bytes(job[i].O, job[i].K, h) + 63) / 64 * 64;
        free(f->packed);
        f->packed = aligned_alloc(64, bytes);
        if (!f->packed) return SAC_ERR_NOMEM;
        char *cur = f->packed;
        int fits = 1;
        for (int i = 0; i < n; i++) {
            fits &= sac_pack(job[i].pk, cur, job[i].w, job[i].ldw, job[i].O, job[i].K, h);
            cur += (sac_packed_bytes(job[i].O, job[i].K, h) + 63) / 64 * 64;
        }
        if (fits) break;
        sac_warn("decoder: a weight is beyond fp16's range; decoding with fp32 weights");
    }
    memcpy(f->hbias, p->att.dec_b, sizeof(float) * A);
    memcpy(f->hbias + A, p->att.beta_b, sizeof(float) * E);
    for (int k = 0; k < 4 * D; k++) f->hbias[A + E + k] = p->b_hh[k] + p->b_ih[k];
    f->prepared = p;
    f->hside_ok = 0;
    return SAC_OK;
}

/* ---- y (R, O) = bias + x @ W^T, split by output panels ---- */

static int panels(const SacPacked *w) { return (w->O + SAC_PANEL - 1) / SAC_PANEL; }

/* y = bias + x @ W^T for the outputs of panels [p0, p1) (y rows ldy apart, x rows ldx apart) */
static void biased_panels(float *y, int ldy, const SacPacked *w, const float *bias, int p0, int p1, const float *x,
                          int ldx, int R)
{
    const int o0 = p0 * SAC_PANEL, o1 = SAC_MIN(p1 * SAC_PANEL, w->O);
    for (int r = 0; r < R; r++) memcpy(y + (size_t)r * ldy + o0, bias + o0, sizeof(float) * (o1 - o0));
    sac_packed_matmul(y, ldy, w, p0, p1, x, ldx, R, 1);
}

typedef struct {
    float *y;
    const SacPacked *w;
    const float *bias, *x;
    int R, ldx;
} LinearTask;

static void linear_panels(void *arg, int p0, int p1, int chunk)
{
    (void)chunk;
    const LinearTask *t = arg;
    biased_panels(t->y, t->w->O, t->w, t->bias, p0, p1, t->x, t->ldx, t->R);
}

static void packed_linear(float *y, const SacPacked *w, const float *bias, const float *x, int R)
{
    LinearTask t = {y, w, bias, x, R, w->K};
    sac_parallel_for(panels(w), 1, linear_panels, &t);
}

/* ---- the h side: logits and next step's hside, split by output panels ---- */

typedef struct {
    DecoderInfer *f;
    const DecoderParams *p;
    const int *tokens;
    float *logits; /* NULL: hside only */
} StepTask;

/* output column of h-side segment k */
static int hseg_col(const DecoderSizes *sz, int k)
{
    return k == SEG_DEC ? 0 : k == SEG_BETA ? sz->A : sz->A + sz->E + (k - SEG_HH) * sz->D;
}

static void hside_units(void *arg, int u0, int u1, int chunk)
{
    (void)chunk;
    const StepTask *t = arg;
    DecoderInfer *f = t->f;
    const DecoderSizes *sz = &f->sz;
    const int R = f->rows_now, D = sz->D, V = sz->V, W = hside_width(sz);
    int first = 0; /* first unit of the current segment */
    for (int k = -1; k < N_HSEG; k++) {
        if (k < 0 && !t->logits) continue;
        const SacPacked *w = k < 0 ? &f->fc : &f->hseg[k];
        const int n = panels(w);
        const int a = SAC_MAX(u0, first) - first, b = SAC_MIN(u1, first + n) - first;
        first += n;
        if (a >= b) continue;
        if (k < 0)
            biased_panels(t->logits, V, w, t->p->fc_b, a, b, f->h, D, R);
        else
            biased_panels(f->hside + hseg_col(sz, k), W, w, f->hbias + hseg_col(sz, k), a, b, f->h, D, R);
    }
}

static void infer_hside(DecoderInfer *f, float *logits, const DecoderParams *p)
{
    StepTask t = {f, p, NULL, logits};
    int units = logits ? panels(&f->fc) : 0;
    for (int k = 0; k < N_HSEG; k++) units += panels(&f->hseg[k]);
    sac_parallel_for(units, 1, hside_units, &t);
    f->hside_ok = 1;
}

/* ---- attention ---- */

/* alpha[i] = full_w . tanh(att1[img, q] + att2) + full_b for (row, position) pairs i = r * P + q */
static void attention_scores(void *arg, int i0, int i1, int chunk)
{
    (void)chunk;
    const StepTask *t = arg;
    const DecoderInfer *f = t->f;
    const int P = f->sz.P, A = f->sz.A, W = hside_width(&f->sz);
    const float *full_w = t->p->att.full_w;
    for (int i = i0; i < i1; i++) {
        const int r = i / P, q = i % P;
        const float *a1 = f->att1 + ((size_t)f->img[r] * P + q) * A, *a2 = f->hside + (size_t)r * W;
        f->alpha[i] = sac_tanh_dot(a1, a2, full_w, A) + t->p->att.full_b[0];
    }
}

/* per row: softmax of the scores, context z, gate, and the LSTM input x = [embed(token); gate * z] */
static void attention_rows(void *arg, int r0, int r1, int chunk)
{
    (void)chunk;
    const StepTask *t = arg;
    DecoderInfer *f = t->f;
    const DecoderSizes *sz = &f->sz;
    const int P = sz->P, E = sz->E, A = sz->A, M = sz->M, W = hside_width(sz);
    for (int r = r0; r < r1; r++) {
        float *alpha = f->alpha + (size_t)r * P;
        sac_softmax_inplace(alpha, P);
        float *x = f->x + (size_t)r * (M + E), *z = x + M;
        memcpy(x, t->p->embed + (size_t)t->tokens[r] * M, sizeof(float) * M);
        sac_context(z, alpha, f->feats + (size_t)f->img[r] * P * E, P, E);
        sac_mul_sigmoid(z, f->hside + (size_t)r * W + A, E);
    }
}

/* ---- gates and cell, by panels of SAC_PANEL hidden units ---- */

static void gates_cell(void *arg, int u0, int u1, int chunk)
{
    (void)chunk;
    const StepTask *t = arg;
    DecoderInfer *f = t->f;
    const DecoderSizes *sz = &f->sz;
    const int D = sz->D, G = 4 * D, I = sz->M + sz->E, R = f->rows_now, W = hside_width(sz);
    for (int g = 0; g < 4; g++) sac_packed_matmul(f->act + (size_t)g * D, G, &f->ih[g], u0, u1, f->x, I, R, 0);
    /* (h, c) = cell(hh + b + w_ih x, c_prev), as lstm_cell_forward */
    const int d0 = u0 * SAC_PANEL, d1 = SAC_MIN(u1 * SAC_PANEL, D);
    for (int r = 0; r < R; r++) {
        const float *a = f->act + (size_t)r * G, *hh = f->hside + (size_t)r * W + sz->A + sz->E;
        const float *cp = f->c + (size_t)r * D;
        float *h = f->h2 + (size_t)r * D, *c = f->c2 + (size_t)r * D;
        for (int d = d0; d < d1; d++) {
            const float i = sac_sigmoidf(a[d] + hh[d]), fg = sac_sigmoidf(a[D + d] + hh[D + d]),
                        gg = sac_tanhf(a[2 * D + d] + hh[2 * D + d]), o = sac_sigmoidf(a[3 * D + d] + hh[3 * D + d]);
            const float cn = fg * cp[d] + i * gg;
            c[d] = cn;
            h[d] = o * sac_tanhf(cn);
        }
    }
}

int decoder_infer_start(DecoderInfer *f, const float *feats, int n_images, const int *img, int R,
                        const DecoderParams *p)
{
    const DecoderSizes *sz = &f->sz;
    const int P = sz->P, E = sz->E;
    if (p != f->prepared) {
        sac_error("decoder: these parameters' step weights are not prepared (decoder_infer_prepare)");
        return SAC_ERR_INVALID;
    }
    if (R < 1 || R > f->max_rows || n_images < 1 || n_images > f->max_images) {
        sac_error("decoder: %d rows / %d images, expected 1..%d / 1..%d", R, n_images, f->max_rows, f->max_images);
        return SAC_ERR_INVALID;
    }
    f->feats = feats;
    for (int r = 0; r < R; r++) {
        f->img[r] = img ? img[r] : r;
        if (f->img[r] < 0 || f->img[r] >= n_images) {
            sac_error("decoder: row %d names image %d, expected 0..%d", r, f->img[r], n_images - 1);
            return SAC_ERR_INVALID;
        }
    }
    packed_linear(f->att1, &f->enc, p->att.enc_b, feats, n_images * P);
    decoder_mean_features(f->meanf, feats, f->img, R, P, E);
    packed_linear(f->h, &f->init_h, p->init_h_b, f->meanf, R);
    packed_linear(f->c, &f->init_c, p->init_c_b, f->meanf, R);
    f->rows_now = R;
    infer_hside(f, NULL, p);
    return SAC_OK;
}

const float *decoder_infer_step(DecoderInfer *f, const int *tokens, int R, const DecoderParams *p,
                                const float **alphas)
{
    SAC_ASSERT(p == f->prepared && R >= 1 && R <= f->max_rows);
    if (alphas) *alphas = f->alpha;
    f->rows_now = R;
    StepTask t = {f, p, tokens, f->logits};
    if (!f->hside_ok) infer_hside(f, NULL, p);
    const int P = f->sz.P, D = f->sz.D;
    sac_parallel_for(R * P, 16, attention_scores, &t);
    sac_parallel_for(R, 1, attention_rows, &t);
    sac_parallel_for((D + SAC_PANEL - 1) / SAC_PANEL, 1, gates_cell, &t);
    float *tmp;
    tmp = f->h, f->h = f->h2, f->h2 = tmp;
    tmp = f->c, f->c = f->c2, f->c2 = tmp;
    infer_hside(f, f->logits, p);
    return f->logits;
}

void decoder_infer_reorder(DecoderInfer *f, const int *parent, int R)
{
    const int D = f->sz.D;
    const size_t W = hside_width(&f->sz);
    for (int r = 0; r < R; r++) {
        memcpy(f->h2 + (size_t)r * D, f->h + (size_t)parent[r] * D, sizeof(float) * D);
        memcpy(f->c2 + (size_t)r * D, f->c + (size_t)parent[r] * D, sizeof(float) * D);
        memcpy(f->hside2 + r * W, f->hside + (size_t)parent[r] * W, sizeof(float) * W);
        f->img2[r] = f->img[parent[r]];
    }
    float *t;
    t = f->h, f->h = f->h2, f->h2 = t;
    t = f->c, f->c = f->c2, f->c2 = t;
    t = f->hside, f->hside = f->hside2, f->hside2 = t;
    int *ti = f->img;
    f->img = f->img2, f->img2 = ti;
}
