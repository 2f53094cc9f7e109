/*
 * decoder.c - teacher-forced decoder forward/backward over a batch, see decoder.h.
 *
 * Layout: rows are time-major over the captions alive at each step (sorted by length, so
 * the alive captions are a prefix): step t owns rows off[t] .. off[t] + bt[t] of every
 * (R, .) tensor. The products that do not depend on the recurrence (the embedding side of
 * the LSTM input, the output layer, and all weight gradients of the LSTM) run as one
 * matmul over all R rows; only the h- and context-side products run per step.
 *
 * Size letters: Bc captions, Bi images, T steps, P positions, E encoder channels,
 * A attention dim, D hidden, M embedding dim, V vocabulary, R rows (sum of lengths).
 */
#include "decoder.h"

#include <stdlib.h>
#include <string.h>

#include "embedding.h"
#include "fastmath.h"
#include "loss.h"
#include "lstm.h"
#include "matmul.h"
#include "sac.h"
#include "safetensors.h"
#include "threadpool.h"

/* act rows = b_ih + b_hh (the embedding-side product is added on top) */
typedef struct {
    float *act;
    const float *b_ih, *b_hh;
    int G;
} BiasTask;

static void bias_rows(void *p, int i0, int i1, int chunk)
{
    (void)chunk;
    const BiasTask *t = p;
    for (int i = i0; i < i1; i++)
        for (int k = 0; k < t->G; k++) t->act[(size_t)i * t->G + k] = t->b_ih[k] + t->b_hh[k];
}

/* dfeats[img] += dmean / P at every position: chunks own images, captions added in order */
typedef struct {
    float *dfeats;
    const float *dmean;
    const int *img;
    int Bc, P, E;
} MeanGradTask;

static void mean_grad_images(void *p, int i0, int i1, int chunk)
{
    (void)chunk;
    const MeanGradTask *t = p;
    for (int k = 0; k < t->Bc; k++) {
        if (t->img[k] < i0 || t->img[k] >= i1) continue;
        float *df = t->dfeats + (size_t)t->img[k] * t->P * t->E;
        const float *dm = t->dmean + (size_t)k * t->E;
        for (int q = 0; q < t->P; q++)
            for (int e = 0; e < t->E; e++) df[(size_t)q * t->E + e] += dm[e] / t->P;
    }
}

struct DecoderActs {
    int max_caps, max_images, max_rows;
    DecoderSizes sz;
    /* the batch of the last forward */
    int Bc, Bi, R, steps;
    float lambda;
    int *order;    /* (Bc) sorted position -> batch index */
    int *img;      /* (Bc) image of each sorted caption */
    int *bt;       /* (T) captions alive at step t */
    int *off;      /* (T + 1) first row of step t */
    int *tok_in;   /* (R) input token per row */
    int *targets;  /* (R) target token per row */
    float *meanf;  /* (Bc, E) mean feature of each sorted caption's image */
    float *h0, *c0; /* (Bc, D) */
    float *att1;   /* (Bi, P, A) */
    float *emb;    /* (R, M) */
    float *act;    /* (R, 4D) gate pre-activations, then activations */
    float *hprev;  /* (R, D) h_{t-1} of each row */
    float *c;      /* (R, D) */
    float *h;      /* (R, D) */
    float *mask;   /* (R, D) dropout mask: 0 or 1/(1-p); NULL-equivalent when keep_all */
    float *hd;     /* (R, D) dropout(h) */
    float *s;      /* (R, P, A) */
    float *alpha;  /* (R, P) */
    float *z, *gate, *zg; /* (R, E) */
    float *probs;  /* (R, V) logits, then probabilities, then dlogits */
    float *alpha_sum; /* (Bc, P) */
    float *dalpha;    /* (Bc, P) penalty gradient */
    int dropout_on;
    /* backward scratch */
    float *dpre;   /* (R, 4D) */
    float *dhd;    /* (R, D) */
    float *dh, *dc, *dc_prev, *dh_prev; /* (Bc, D) */
    float *dzg;    /* (Bc, E) */
    float *datt2;  /* (R, A) dL/d(decoder_att output) of every row, for the batched weight gradients */
    float *dgpre;  /* (R, E) dL/d(f_beta pre-activation) of every row */
    float *datt1;  /* (Bi, P, A) */
    float *dmean;  /* (Bc, E) */
    float *demb;   /* (R, M) */
    float *att_scratch;
    float *arena;
};

void decoder_acts_free(DecoderActs *a)
{
    if (!a) return;
    free(a->order), free(a->img), free(a->bt), free(a->off), free(a->tok_in), free(a->targets);
    free(a->arena);
    free(a);
}

DecoderActs *decoder_acts_create(const DecoderSizes *sz, int max_caps, int max_images)
{
    DecoderActs *a = sac_calloc(1, sizeof(*a));
    if (!a) return NULL;
    const size_t P = sz->P, E = sz->E, A = sz->A, D = sz->D, M = sz->M, V = sz->V;
    const size_t Bc = max_caps, Bi = max_images, R = (size_t)max_caps * sz->T;
    a->max_caps = max_caps, a->max_images = max_images, a->max_rows = (int)R, a->sz = *sz;
    a->order = sac_malloc(sizeof(int) * Bc);
    a->img = sac_malloc(sizeof(int) * Bc);
    a->bt = sac_malloc(sizeof(int) * sz->T);
    a->off = sac_malloc(sizeof(int) * (sz->T + 1));
    a->tok_in = sac_malloc(sizeof(int) * R);
    a->targets = sac_malloc(sizeof(int) * R);
    if (!a->order || !a->img || !a->bt || !a->off || !a->tok_in || !a->targets) goto fail;
    struct {
        float **ptr;
        size_t n;
    } t[] = {
        {&a->meanf, Bc * E}, {&a->h0, Bc * D}, {&a->c0, Bc * D}, {&a->att1, Bi * P * A},
        {&a->emb, R * M}, {&a->act, R * 4 * D}, {&a->hprev, R * D}, {&a->c, R * D}, {&a->h, R * D},
        {&a->mask, R * D}, {&a->hd, R * D}, {&a->s, R * P * A}, {&a->alpha, R * P}, {&a->z, R * E},
        {&a->gate, R * E}, {&a->zg, R * E}, {&a->probs, R * V}, {&a->alpha_sum, Bc * P},
        {&a->dalpha, Bc * P}, {&a->dpre, R * 4 * D}, {&a->dhd, R * D}, {&a->dh, Bc * D}, {&a->dc, Bc * D},
        {&a->dc_prev, Bc * D}, {&a->dh_prev, Bc * D}, {&a->dzg, Bc * E}, {&a->datt1, Bi * P * A},
        {&a->dmean, Bc * E}, {&a->demb, R * M}, {&a->datt2, R * A}, {&a->dgpre, R * E},
        {&a->att_scratch, attention_scratch_floats(max_caps, &(AttentionSizes){sz->P, sz->E, sz->A, sz->D})},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) total += (t[i].n + 15) / 16 * 16;
    a->arena = sac_alloc_floats(total);
    if (!a->arena) goto fail;
    float *cur = a->arena;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        *t[i].ptr = cur;
        cur += (t[i].n + 15) / 16 * 16;
    }
    return a;
fail:
    decoder_acts_free(a);
    return NULL;
}

static const int *sort_lens;
static int cmp_len_desc(const void *x, const void *y)
{
    int i = *(const int *)x, j = *(const int *)y;
    if (sort_lens[i] != sort_lens[j]) return sort_lens[j] - sort_lens[i];
    return i - j; /* stable: deterministic order for equal lengths */
}

static AttentionSizes att_sizes(const DecoderSizes *sz) { return (AttentionSizes){sz->P, sz->E, sz->A, sz->D}; }

static AttentionCache step_cache(const DecoderActs *a, int t)
{
    const DecoderSizes *sz = &a->sz;
    size_t r = a->off[t];
    return (AttentionCache){a->s + r * sz->P * sz->A, a->alpha + r * sz->P, a->z + r * sz->E,
                            a->gate + r * sz->E};
}

int decoder_forward(DecoderLoss *loss, DecoderActs *a, const float *feats, const DecoderBatch *batch,
                    const DecoderParams *p, const DecoderSizes *sz, float dropout, float lambda,
                    SacRng *dropout_rng)
{
    const int Bc = batch->n_caps, Bi = batch->n_images, T = sz->T;
    const int P = sz->P, E = sz->E, D = sz->D, M = sz->M, V = sz->V, G = 4 * D;
    const AttentionSizes asz = att_sizes(sz);
    if (Bc < 1 || Bc > a->max_caps || Bi < 1 || Bi > a->max_images) {
        sac_error("decoder: batch of %d captions / %d images, expected 1..%d / 1..%d", Bc, Bi, a->max_caps,
                  a->max_images);
        return SAC_ERR_INVALID;
    }
    for (int b = 0; b < Bc; b++) {
        if (batch->lens[b] < 1 || batch->lens[b] > T || batch->img[b] < 0 || batch->img[b] >= Bi) {
            sac_error("decoder: caption %d has length %d / image %d, expected 1..%d / 0..%d", b, batch->lens[b],
                      batch->img[b], T, Bi - 1);
            return SAC_ERR_INVALID;
        }
        for (int t = 0; t <= batch->lens[b]; t++) {
            int w = batch->tokens[(size_t)b * (T + 1) + t];
            if (w < 0 || w >= V) {
                sac_error("decoder: caption %d token %d is %d, expected 0..%d", b, t, w, V - 1);
                return SAC_ERR_INVALID;
            }
        }
    }
    a->Bc = Bc, a->Bi = Bi, a->lambda = lambda;
    /* sort captions by length, longest first */
    for (int b = 0; b < Bc; b++) a->order[b] = b;
    sort_lens = batch->lens;
    qsort(a->order, Bc, sizeof(int), cmp_len_desc);
    a->steps = batch->lens[a->order[0]];
    int r = 0;
    for (int t = 0; t < a->steps; t++) {
        int n = 0;
        while (n < Bc && batch->lens[a->order[n]] > t) n++;
        a->bt[t] = n;
        a->off[t] = r;
        for (int k = 0; k < n; k++) {
            const int *tok = batch->tokens + (size_t)a->order[k] * (T + 1);
            a->tok_in[r + k] = tok[t];
            a->targets[r + k] = tok[t + 1];
        }
        r += n;
    }
    a->off[a->steps] = a->R = r;
    for (int k = 0; k < Bc; k++) a->img[k] = batch->img[a->order[k]];

    /* h0 = init_h(mean_p feats), c0 = init_c(...) */
    for (int k = 0; k < Bc; k++) {
        const float *f = feats + (size_t)a->img[k] * P * E;
        float *m = a->meanf + (size_t)k * E;
        memset(m, 0, sizeof(float) * E);
        for (int q = 0; q < P; q++)
            for (int e = 0; e < E; e++) m[e] += f[(size_t)q * E + e];
        for (int e = 0; e < E; e++) m[e] /= P;
    }
    linear_forward(a->h0, a->meanf, p->init_h_w, p->init_h_b, Bc, E, D);
    linear_forward(a->c0, a->meanf, p->init_c_w, p->init_c_b, Bc, E, D);
    attention_project_forward(a->att1, feats, &p->att, Bi, &asz);

    /* embedding side of the LSTM input for all rows: act = emb @ w_ih[:, :M]^T + b_ih + b_hh */
    embedding_forward(a->emb, a->tok_in, p->embed, r, M);
    BiasTask bt = {a->act, p->b_ih, p->b_hh, G};
    sac_parallel_for(r, 64, bias_rows, &bt);
    sac_gemm(0, 1, r, G, M, 1.0f, a->emb, M, p->w_ih, M + E, 1.0f, a->act, G);

    for (int t = 0; t < a->steps; t++) {
        const int n = a->bt[t];
        const size_t o = a->off[t];
        float *hp = a->hprev + o * D;
        const float *h_last = t == 0 ? a->h0 : a->h + (size_t)a->off[t - 1] * D;
        const float *c_last = t == 0 ? a->c0 : a->c + (size_t)a->off[t - 1] * D;
        memcpy(hp, h_last, sizeof(float) * n * D);
        AttentionCache cache = step_cache(a, t);
        float *zg = a->zg + o * E;
        attention_step_forward(zg, &cache, hp, feats, a->att1, a->img, &p->att, n, &asz, a->att_scratch);
        float *act = a->act + o * G;
        sac_gemm(0, 1, n, G, E, 1.0f, zg, E, p->w_ih + M, M + E, 1.0f, act, G);
        sac_gemm(0, 1, n, G, D, 1.0f, hp, D, p->w_hh, D, 1.0f, act, G);
        lstm_cell_forward(a->h + o * D, a->c + o * D, act, c_last, n, D);
    }

    /* logits = fc(dropout(h)) for all rows */
    a->dropout_on = dropout_rng && dropout > 0.0f;
    if (a->dropout_on) {
        const float keep = 1.0f / (1.0f - dropout);
        for (size_t i = 0; i < (size_t)r * D; i++) {
            a->mask[i] = sac_rng_uniform(dropout_rng) < dropout ? 0.0f : keep;
            a->hd[i] = a->h[i] * a->mask[i];
        }
    } else {
        memcpy(a->hd, a->h, sizeof(float) * r * D);
    }
    linear_forward(a->probs, a->hd, p->fc_w, p->fc_b, r, D, V);
    softmax_forward(a->probs, a->probs, r, V);
    double ce = crossentropy_forward(NULL, a->probs, a->targets, r, V);

    /* doubly stochastic penalty over each caption's own steps */
    memset(a->alpha_sum, 0, sizeof(float) * Bc * P);
    for (int t = 0; t < a->steps; t++)
        for (int k = 0; k < a->bt[t]; k++)
            for (int q = 0; q < P; q++)
                a->alpha_sum[(size_t)k * P + q] += a->alpha[((size_t)a->off[t] + k) * P + q];
    double pen = attention_penalty(a->dalpha, a->alpha_sum, Bc, P, lambda / Bc);

    loss->n_tokens = r;
    loss->ce = ce / r;
    loss->penalty = pen / Bc;
    loss->loss = loss->ce + lambda * loss->penalty;
    return SAC_OK;
}

void decoder_backward(DecoderParams *g, float *dfeats, DecoderActs *a, const float *feats,
                      const DecoderParams *p, const DecoderSizes *sz)
{
    const int Bc = a->Bc, Bi = a->Bi, R = a->R;
    const int P = sz->P, E = sz->E, A = sz->A, D = sz->D, M = sz->M, V = sz->V, G = 4 * D;
    const AttentionSizes asz = att_sizes(sz);

    /* loss = sum CE / R: dlogits = (probs - onehot) / R, in place */
    crossentropy_softmax_backward(a->probs, a->probs, a->targets, 1.0f / R, R, V);
    /* logits = hd @ fc_w^T + fc_b */
    memset(a->dhd, 0, sizeof(float) * R * D);
    linear_backward(a->dhd, g->fc_w, g->fc_b, a->probs, a->hd, p->fc_w, R, D, V);
    /* hd = h * mask */
    if (a->dropout_on)
        for (size_t i = 0; i < (size_t)R * D; i++) a->dhd[i] *= a->mask[i];

    memset(a->dh, 0, sizeof(float) * Bc * D);
    memset(a->dc, 0, sizeof(float) * Bc * D);
    memset(a->datt1, 0, sizeof(float) * Bi * P * A);
    for (int t = a->steps - 1; t >= 0; t--) {
        const int n = a->bt[t];
        const size_t o = a->off[t];
        const float *c_last = t == 0 ? a->c0 : a->c + (size_t)a->off[t - 1] * D;
        for (size_t i = 0; i < (size_t)n * D; i++) a->dh[i] += a->dhd[o * D + i];
        /* (h, c) = cell(act, c_last) */
        memset(a->dc_prev, 0, sizeof(float) * n * D);
        float *dpre = a->dpre + o * G;
        lstm_cell_backward(dpre, a->dc_prev, a->dh, a->dc, a->act + o * G, c_last, a->c + o * D, n, D);
        memcpy(a->dc, a->dc_prev, sizeof(float) * n * D);
        /* act += zg @ w_ih[:, M:]^T + hprev @ w_hh^T  (weight gradients batched below) */
        sac_gemm(0, 0, n, E, G, 1.0f, dpre, G, p->w_ih + M, M + E, 0.0f, a->dzg, E);
        sac_gemm(0, 0, n, D, G, 1.0f, dpre, G, p->w_hh, D, 0.0f, a->dh_prev, D);
        /* zg = attention(feats, hprev) */
        AttentionCache cache = step_cache(a, t);
        float *datt2 = a->datt2 + o * A, *dgpre = a->dgpre + o * E;
        attention_step_backward_rows(datt2, dgpre, dfeats, a->datt1, &g->att, a->dzg, a->dalpha, &cache, feats,
                                     a->img, &p->att, n, &asz, a->att_scratch);
        /* att2 = hprev @ dec_w^T + dec_b, gpre = hprev @ beta_w^T + beta_b (weight gradients below) */
        sac_gemm(0, 0, n, D, A, 1.0f, datt2, A, p->att.dec_w, D, 1.0f, a->dh_prev, D);
        sac_gemm(0, 0, n, D, E, 1.0f, dgpre, E, p->att.beta_w, D, 1.0f, a->dh_prev, D);
        memcpy(a->dh, a->dh_prev, sizeof(float) * n * D);
    }
    /* the attention's h-side weight gradients over all rows */
    sac_gemm(1, 0, A, D, R, 1.0f, a->datt2, A, a->hprev, D, 1.0f, g->att.dec_w, D);
    sac_colsum(g->att.dec_b, a->datt2, R, A);
    sac_gemm(1, 0, E, D, R, 1.0f, a->dgpre, E, a->hprev, D, 1.0f, g->att.beta_w, D);
    sac_colsum(g->att.beta_b, a->dgpre, R, E);
    /* weight gradients of the LSTM over all rows:
     * act = emb @ w_ih[:, :M]^T + zg @ w_ih[:, M:]^T + hprev @ w_hh^T + b_ih + b_hh */
    sac_gemm(1, 0, G, M, R, 1.0f, a->dpre, G, a->emb, M, 1.0f, g->w_ih, M + E);
    sac_gemm(1, 0, G, E, R, 1.0f, a->dpre, G, a->zg, E, 1.0f, g->w_ih + M, M + E);
    sac_gemm(1, 0, G, D, R, 1.0f, a->dpre, G, a->hprev, D, 1.0f, g->w_hh, D);
    sac_colsum(g->b_ih, a->dpre, R, G);
    sac_colsum(g->b_hh, a->dpre, R, G);
    /* emb = embed[tok_in] */
    sac_gemm(0, 0, R, M, G, 1.0f, a->dpre, G, p->w_ih, M + E, 0.0f, a->demb, M);
    embedding_backward(g->embed, a->demb, a->tok_in, R, M);
    /* h0 = init_h(meanf), c0 = init_c(meanf); meanf = mean_p feats[img] */
    memset(a->dmean, 0, sizeof(float) * Bc * E);
    linear_backward(a->dmean, g->init_h_w, g->init_h_b, a->dh, a->meanf, p->init_h_w, Bc, E, D);
    linear_backward(a->dmean, g->init_c_w, g->init_c_b, a->dc, a->meanf, p->init_c_w, Bc, E, D);
    if (dfeats) {
        MeanGradTask mt = {dfeats, a->dmean, a->img, Bc, P, E};
        sac_parallel_for(Bi, 1, mean_grad_images, &mt);
    }
    /* att1 = feats @ enc_w^T + enc_b */
    attention_project_backward(dfeats, &g->att, a->datt1, feats, &p->att, Bi, &asz);
}

void decoder_get_alphas(const DecoderActs *a, float *out, const DecoderSizes *sz)
{
    const int P = sz->P, T = sz->T;
    memset(out, 0, sizeof(float) * a->Bc * T * P);
    for (int t = 0; t < a->steps; t++)
        for (int k = 0; k < a->bt[t]; k++)
            memcpy(out + ((size_t)a->order[k] * T + t) * P, a->alpha + ((size_t)a->off[t] + k) * P,
                   sizeof(float) * P);
}

/* ---- inference ----
 *
 * Up to INFER_FEW_ROWS rows (one image greedily, or the beams of one image) take a path built
 * for memory-bound steps: every weight matrix is read once per step, split by output rows
 * across the pool (sac_matvecs), in three parallel phases:
 *   attention: s = tanh(att1 + att2) and the scores, over (row, position) pairs;
 *   gates:     act = hh + b_ih + w_ih @ [embed; zg], then the LSTM cell, over hidden units;
 *   h side:    logits = fc(h), and for the next step [att2 | gpre | hh] = h @ [dec_w; beta_w;
 *              w_hh]^T + biases (hside), over output rows: one pass over every weight that
 *              reads h.
 * More rows (batch greedy decoding) go through the matmul path (attention_step_forward,
 * lstm_forward, linear_forward).
 */

#define INFER_FEW_ROWS 8

struct DecoderInfer {
    DecoderSizes sz;
    int max_rows, max_images;
    const float *feats;
    int *img, *img2;  /* (rows) */
    float *att1;      /* (images, P, A) */
    float *meanf;     /* (rows, E) */
    float *h, *c, *h2, *c2; /* (rows, D) */
    float *x;         /* (rows, M + E) LSTM input [embed; zg] */
    float *zg;        /* (rows, E) */
    float *act;       /* (rows, 4D) */
    float *logits;    /* (rows, V) */
    float *s, *alpha, *z, *gate; /* attention cache */
    float *att_scratch;
    float *hside, *hside2; /* (rows, A + E + 4D) [att2 | gpre | h @ w_hh^T + b_hh] of h, few-rows path */
    int hside_ok;     /* hside holds the current h's products */
    int rows_now;     /* rows of the step running */
    /* fp16 copies of the step weights (decoder_infer_set_half), used while half_of is the
     * parameters passed in */
    uint16_t *half;
    const DecoderParams *half_of;
    const uint16_t *h_fc, *h_dec, *h_beta, *h_hh, *h_ih;
    float *arena;
};

void decoder_infer_free(DecoderInfer *inf)
{
    if (!inf) return;
    free(inf->img), free(inf->img2), free(inf->arena), free(inf->half);
    free(inf);
}

DecoderInfer *decoder_infer_create(const DecoderSizes *sz, int max_rows, int max_images)
{
    DecoderInfer *f = sac_calloc(1, sizeof(*f));
    if (!f) return NULL;
    const size_t R = max_rows, I = max_images, P = sz->P, E = sz->E, A = sz->A, D = sz->D, M = sz->M, V = sz->V;
    f->sz = *sz, f->max_rows = max_rows, f->max_images = max_images;
    f->img = sac_malloc(sizeof(int) * R);
    f->img2 = sac_malloc(sizeof(int) * R);
    struct {
        float **ptr;
        size_t n;
    } t[] = {{&f->att1, I * P * A}, {&f->meanf, R * E}, {&f->h, R * D}, {&f->c, R * D}, {&f->h2, R * D},
             {&f->c2, R * D}, {&f->x, R * (M + E)}, {&f->zg, R * E}, {&f->act, R * 4 * D}, {&f->logits, R * V},
             {&f->s, R * P * A}, {&f->alpha, R * P}, {&f->z, R * E}, {&f->gate, R * E},
             {&f->hside, R * (A + E + 4 * D)}, {&f->hside2, R * (A + E + 4 * D)},
             {&f->att_scratch, attention_scratch_floats(max_rows, &(AttentionSizes){sz->P, sz->E, sz->A, sz->D})}};
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

/* One segment of the h-side phase: y rows (ldy apart) = bias + W (O, D) @ h. */
typedef struct {
    const float *W, *bias;
    const uint16_t *Wh; /* the same in fp16, or NULL */
    float *y;
    int O, ldy;
} HSeg;

typedef struct {
    HSeg seg[4];
    int n_seg, R, D;
    const float *h;
} HSideTask;

#define INFER_UNIT 16 /* output rows per work unit */

static void hside_units(void *arg, int u0, int u1, int chunk)
{
    (void)chunk;
    const HSideTask *t = arg;
    int first = 0; /* first unit of the current segment */
    for (int k = 0; k < t->n_seg; k++) {
        const HSeg *g = &t->seg[k];
        const int units = (g->O + INFER_UNIT - 1) / INFER_UNIT;
        const int a = SAC_MAX(u0, first) - first, b = SAC_MIN(u1, first + units) - first;
        first += units;
        if (a >= b) continue;
        const int o0 = a * INFER_UNIT, o1 = SAC_MIN(b * INFER_UNIT, g->O);
        for (int r = 0; r < t->R; r++) memcpy(g->y + (size_t)r * g->ldy + o0, g->bias + o0, sizeof(float) * (o1 - o0));
        if (g->Wh)
            sac_matvecs_f16(g->y + o0, g->ldy, g->Wh + (size_t)o0 * t->D, t->D, t->h, t->D, o1 - o0, t->D, t->R, 1);
        else
            sac_matvecs(g->y + o0, g->ldy, g->W + (size_t)o0 * t->D, t->D, t->h, t->D, o1 - o0, t->D, t->R, 1);
    }
}

/* logits (if not NULL) = fc(h), and hside = [att2 | gpre | hh] of the current h: one pass over
 * every weight that reads h, split by output rows. */
static void infer_hside(DecoderInfer *f, float *logits, int R, const DecoderParams *p)
{
    const DecoderSizes *sz = &f->sz;
    const int A = sz->A, E = sz->E, G = 4 * sz->D, W = A + E + G;
    HSideTask t = {.n_seg = 0, .R = R, .D = sz->D, .h = f->h};
    const int h = f->half_of == p;
    if (logits) t.seg[t.n_seg++] = (HSeg){p->fc_w, p->fc_b, h ? f->h_fc : NULL, logits, sz->V, sz->V};
    t.seg[t.n_seg++] = (HSeg){p->att.dec_w, p->att.dec_b, h ? f->h_dec : NULL, f->hside, A, W};
    t.seg[t.n_seg++] = (HSeg){p->att.beta_w, p->att.beta_b, h ? f->h_beta : NULL, f->hside + A, E, W};
    t.seg[t.n_seg++] = (HSeg){p->w_hh, p->b_hh, h ? f->h_hh : NULL, f->hside + A + E, G, W};
    int units = 0;
    for (int k = 0; k < t.n_seg; k++) units += (t.seg[k].O + INFER_UNIT - 1) / INFER_UNIT;
    sac_parallel_for(units, 1, hside_units, &t);
    f->hside_ok = 1;
}

/* s = tanh(att1[img] + att2) and the raw scores e for (row, position) pairs i = r * P + q. */
typedef struct {
    DecoderInfer *f;
    const DecoderParams *p;
} InferTask;

static void attention_scores(void *arg, int i0, int i1, int chunk)
{
    (void)chunk;
    const InferTask *t = arg;
    const DecoderInfer *f = t->f;
    const int P = f->sz.P, A = f->sz.A, W = A + f->sz.E + 4 * f->sz.D;
    const float *full_w = t->p->att.full_w;
    for (int i = i0; i < i1; i++) {
        const int r = i / P, q = i % P;
        const float *a1 = f->att1 + ((size_t)f->img[r] * P + q) * A, *a2 = f->hside + (size_t)r * W;
        float *sq = f->s + (size_t)i * A;
        for (int k = 0; k < A; k++) sq[k] = sac_tanhf(a1[k] + a2[k]);
        float acc[8] = {0};
        for (int k = 0; k + 8 <= A; k += 8)
            for (int j = 0; j < 8; j++) acc[j] += sq[k + j] * full_w[k + j];
        float e = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (int k = A / 8 * 8; k < A; k++) e += sq[k] * full_w[k];
        f->alpha[i] = e + t->p->att.full_b[0];
    }
}

/* act = hh + b_ih + w_ih @ x for the four gates of hidden units [d0, d1), then the cell. */
static void gates_cell(void *arg, int u0, int u1, int chunk)
{
    (void)chunk;
    const InferTask *t = arg;
    DecoderInfer *f = t->f;
    const DecoderParams *p = t->p;
    const int D = f->sz.D, G = 4 * D, I = f->sz.M + f->sz.E, W = f->sz.A + f->sz.E + G, R = f->rows_now;
    const int d0 = u0 * 8, d1 = SAC_MIN(u1 * 8, D);
    for (int g = 0; g < 4; g++) {
        const int o0 = g * D + d0, n = d1 - d0;
        for (int r = 0; r < R; r++) {
            float *a = f->act + (size_t)r * G + o0;
            const float *hh = f->hside + (size_t)r * W + f->sz.A + f->sz.E + o0;
            for (int k = 0; k < n; k++) a[k] = hh[k] + p->b_ih[o0 + k];
        }
        if (f->half_of == p)
            sac_matvecs_f16(f->act + o0, G, f->h_ih + (size_t)o0 * I, I, f->x, I, n, I, R, 1);
        else
            sac_matvecs(f->act + o0, G, p->w_ih + (size_t)o0 * I, I, f->x, I, n, I, R, 1);
    }
    /* (h, c) = cell(act, c_prev), as lstm_cell_forward */
    for (int r = 0; r < R; r++) {
        const float *a = f->act + (size_t)r * G, *cp = f->c + (size_t)r * D;
        float *h = f->h2 + (size_t)r * D, *c = f->c2 + (size_t)r * D;
        for (int d = d0; d < d1; d++) {
            const float i = sac_sigmoidf(a[d]), fg = sac_sigmoidf(a[D + d]), g = sac_tanhf(a[2 * D + d]),
                        o = sac_sigmoidf(a[3 * D + d]);
            const float cn = fg * cp[d] + i * g;
            c[d] = cn;
            h[d] = o * sac_tanhf(cn);
        }
    }
}

static const float *infer_step_few(DecoderInfer *f, const int *tokens, int R, const DecoderParams *p)
{
    const DecoderSizes *sz = &f->sz;
    const int P = sz->P, E = sz->E, A = sz->A, D = sz->D, M = sz->M, W = A + E + 4 * D;
    if (!f->hside_ok) infer_hside(f, NULL, R, p);
    InferTask t = {f, p};
    f->rows_now = R;
    /* attention: scores over (row, position) pairs, then per row softmax, context and gate */
    sac_parallel_for(R * P, 16, attention_scores, &t);
    for (int r = 0; r < R; r++) {
        float *alpha = f->alpha + (size_t)r * P;
        float emax = alpha[0];
        for (int q = 1; q < P; q++) emax = alpha[q] > emax ? alpha[q] : emax;
        float sum = 0.0f;
        for (int q = 0; q < P; q++) {
            alpha[q] = sac_expf(alpha[q] - emax);
            sum += alpha[q];
        }
        const float inv = 1.0f / sum;
        for (int q = 0; q < P; q++) alpha[q] *= inv;
        const float *feat = f->feats + (size_t)f->img[r] * P * E;
        float *z = f->z + (size_t)r * E;
        memset(z, 0, sizeof(float) * E);
        for (int q = 0; q < P; q++) {
            const float aq = alpha[q];
            const float *fq = feat + (size_t)q * E;
            for (int k = 0; k < E; k++) z[k] += aq * fq[k];
        }
        const float *gpre = f->hside + (size_t)r * W + A;
        float *x = f->x + (size_t)r * (M + E);
        memcpy(x, p->embed + (size_t)tokens[r] * M, sizeof(float) * M);
        for (int k = 0; k < E; k++) {
            f->gate[(size_t)r * E + k] = sac_sigmoidf(gpre[k]);
            x[M + k] = f->gate[(size_t)r * E + k] * z[k];
        }
    }
    /* gates and cell over hidden units */
    sac_parallel_for((D + 7) / 8, 1, gates_cell, &t);
    float *tmp;
    tmp = f->h, f->h = f->h2, f->h2 = tmp;
    tmp = f->c, f->c = f->c2, f->c2 = tmp;
    /* logits of this step and the h side of the next */
    infer_hside(f, f->logits, R, p);
    return f->logits;
}

int decoder_infer_start(DecoderInfer *f, const float *feats, int n_images, const int *img, int R,
                        const DecoderParams *p)
{
    const DecoderSizes *sz = &f->sz;
    const int P = sz->P, E = sz->E, D = sz->D;
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
    const AttentionSizes asz = att_sizes(sz);
    attention_project_forward(f->att1, feats, &p->att, n_images, &asz);
    for (int r = 0; r < R; r++) {
        const float *fi = feats + (size_t)f->img[r] * P * E;
        float *m = f->meanf + (size_t)r * E;
        memset(m, 0, sizeof(float) * E);
        for (int q = 0; q < P; q++)
            for (int e = 0; e < E; e++) m[e] += fi[(size_t)q * E + e];
        for (int e = 0; e < E; e++) m[e] /= P;
    }
    linear_forward(f->h, f->meanf, p->init_h_w, p->init_h_b, R, E, D);
    linear_forward(f->c, f->meanf, p->init_c_w, p->init_c_b, R, E, D);
    f->hside_ok = 0;
    if (R <= INFER_FEW_ROWS) infer_hside(f, NULL, R, p);
    return SAC_OK;
}

const float *decoder_infer_step(DecoderInfer *f, const int *tokens, int R, const DecoderParams *p,
                                const float **alphas)
{
    if (alphas) *alphas = f->alpha;
    if (R <= INFER_FEW_ROWS) return infer_step_few(f, tokens, R, p);
    const DecoderSizes *sz = &f->sz;
    const int E = sz->E, D = sz->D, M = sz->M, V = sz->V;
    const AttentionSizes asz = att_sizes(sz);
    AttentionCache cache = {f->s, f->alpha, f->z, f->gate};
    attention_step_forward(f->zg, &cache, f->h, f->feats, f->att1, f->img, &p->att, R, &asz, f->att_scratch);
    for (int r = 0; r < R; r++) {
        float *x = f->x + (size_t)r * (M + E);
        memcpy(x, p->embed + (size_t)tokens[r] * M, sizeof(float) * M);
        memcpy(x + M, f->zg + (size_t)r * E, sizeof(float) * E);
    }
    lstm_forward(f->h2, f->c2, f->act, f->x, f->h, f->c, p->w_ih, p->w_hh, p->b_ih, p->b_hh, R, M + E, D);
    float *t;
    t = f->h, f->h = f->h2, f->h2 = t;
    t = f->c, f->c = f->c2, f->c2 = t;
    linear_forward(f->logits, f->h, p->fc_w, p->fc_b, R, D, V);
    f->hside_ok = 0;
    return f->logits;
}

void decoder_infer_reorder(DecoderInfer *f, const int *parent, int R)
{
    const int D = f->sz.D;
    for (int r = 0; r < R; r++) {
        memcpy(f->h2 + (size_t)r * D, f->h + (size_t)parent[r] * D, sizeof(float) * D);
        memcpy(f->c2 + (size_t)r * D, f->c + (size_t)parent[r] * D, sizeof(float) * D);
        f->img2[r] = f->img[parent[r]];
    }
    if (f->hside_ok) {
        const size_t W = (size_t)f->sz.A + f->sz.E + 4 * D;
        for (int r = 0; r < R; r++) memcpy(f->hside2 + r * W, f->hside + (size_t)parent[r] * W, sizeof(float) * W);
        float *t = f->hside;
        f->hside = f->hside2, f->hside2 = t;
    }
    float *t;
    t = f->h, f->h = f->h2, f->h2 = t;
    t = f->c, f->c = f->c2, f->c2 = t;
    int *ti = f->img;
    f->img = f->img2, f->img2 = ti;
}

const DecoderSizes *decoder_infer_sizes(const DecoderInfer *inf) { return &inf->sz; }

int decoder_infer_set_half(DecoderInfer *f, const DecoderParams *p)
{
    const DecoderSizes *sz = &f->sz;
    const size_t D = sz->D, G = 4 * D;
    const size_t n_fc = (size_t)sz->V * D, n_dec = (size_t)sz->A * D, n_beta = (size_t)sz->E * D, n_hh = G * D,
                 n_ih = G * (sz->M + sz->E);
    f->half_of = NULL;
    if (!p) return SAC_OK;
    if (!f->half) {
        f->half = sac_malloc(sizeof(uint16_t) * (n_fc + n_dec + n_beta + n_hh + n_ih));
        if (!f->half) return SAC_ERR_NOMEM;
    }
    uint16_t *q = f->half;
    f->h_fc = q, sac_float_to_half_array(q, p->fc_w, n_fc), q += n_fc;
    f->h_dec = q, sac_float_to_half_array(q, p->att.dec_w, n_dec), q += n_dec;
    f->h_beta = q, sac_float_to_half_array(q, p->att.beta_w, n_beta), q += n_beta;
    f->h_hh = q, sac_float_to_half_array(q, p->w_hh, n_hh), q += n_hh;
    f->h_ih = q, sac_float_to_half_array(q, p->w_ih, n_ih);
    /* a weight beyond fp16's range (|w| > 65504) would become inf: keep fp32 then */
    const size_t n = n_fc + n_dec + n_beta + n_hh + n_ih;
    for (size_t i = 0; i < n; i++)
        if ((f->half[i] & 0x7C00) == 0x7C00) {
            sac_warn("decoder: a weight is beyond fp16's range; decoding with fp32 weights");
            return SAC_OK;
        }
    f->half_of = p;
    f->hside_ok = 0;
    return SAC_OK;
}
