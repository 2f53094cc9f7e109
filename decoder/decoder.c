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

#include <math.h>
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

/* dlogits = w_row * (probs - onehot(target)) in place, row by row */
typedef struct {
    float *probs;
    const int *targets;
    const float *row_w;
    int V;
} WeightedCeTask;

static void weighted_ce_backward_rows(void *p, int i0, int i1, int chunk)
{
    (void)chunk;
    const WeightedCeTask *t = p;
    for (int i = i0; i < i1; i++) {
        float *d = t->probs + (size_t)i * t->V;
        const float w = t->row_w[i];
        for (int v = 0; v < t->V; v++) d[v] *= w;
        d[t->targets[i]] -= w;
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
    float *row_w;  /* (R) loss weight per row: w_k / Bc of its caption (weighted batches) */
    int weighted;  /* the last forward had per-caption weights */
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
    free(a->order), free(a->img), free(a->bt), free(a->off), free(a->tok_in), free(a->targets), free(a->row_w);
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
    a->row_w = sac_malloc(sizeof(float) * R);
    if (!a->order || !a->img || !a->bt || !a->off || !a->tok_in || !a->targets || !a->row_w) goto fail;
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

void decoder_mean_features(float *mean, const float *feats, const int *img, int R, int P, int E)
{
    for (int r = 0; r < R; r++) {
        const float *f = feats + (size_t)img[r] * P * E;
        float *m = mean + (size_t)r * E;
        memset(m, 0, sizeof(float) * E);
        for (int q = 0; q < P; q++)
            for (int e = 0; e < E; e++) m[e] += f[(size_t)q * E + e];
        for (int e = 0; e < E; e++) m[e] /= P;
    }
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
    if (batch->weight)
        for (int b = 0; b < Bc; b++)
            if (!isfinite(batch->weight[b])) {
                sac_error("decoder: caption %d has weight %g, expected a finite number", b, batch->weight[b]);
                return SAC_ERR_INVALID;
            }
    a->Bc = Bc, a->Bi = Bi, a->lambda = lambda, a->weighted = batch->weight != NULL;
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
            if (a->weighted) a->row_w[r + k] = batch->weight[a->order[k]] / Bc;
        }
        r += n;
    }
    a->off[a->steps] = a->R = r;
    for (int k = 0; k < Bc; k++) a->img[k] = batch->img[a->order[k]];

    /* h0 = init_h(mean_p feats), c0 = init_c(...) */
    decoder_mean_features(a->meanf, feats, a->img, Bc, P, E);
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
    double ce;
    if (a->weighted) {
        /* sum_k w_k CE_k / Bc = sum over rows of row_w * CE(row) */
        ce = 0.0;
        for (int i = 0; i < r; i++) {
            const float pt = a->probs[(size_t)i * V + a->targets[i]];
            ce += (double)a->row_w[i] * -logf(pt > 1e-30f ? pt : 1e-30f);
        }
    } else {
        ce = crossentropy_forward(NULL, a->probs, a->targets, r, V);
    }

    /* doubly stochastic penalty over each caption's own steps */
    memset(a->alpha_sum, 0, sizeof(float) * Bc * P);
    for (int t = 0; t < a->steps; t++)
        for (int k = 0; k < a->bt[t]; k++)
            for (int q = 0; q < P; q++)
                a->alpha_sum[(size_t)k * P + q] += a->alpha[((size_t)a->off[t] + k) * P + q];
    double pen = attention_penalty(a->dalpha, a->alpha_sum, Bc, P, lambda / Bc);

    loss->n_tokens = r;
    loss->ce = a->weighted ? ce : ce / r;
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

    if (a->weighted) {
        /* loss = sum over rows of row_w * CE: dlogits = row_w * (probs - onehot), in place */
        WeightedCeTask wt = {a->probs, a->targets, a->row_w, V};
        sac_parallel_for(R, 8, weighted_ce_backward_rows, &wt);
    } else {
        /* loss = sum CE / R: dlogits = (probs - onehot) / R, in place */
        crossentropy_softmax_backward(a->probs, a->probs, a->targets, 1.0f / R, R, V);
    }
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

/* rows of width n of a time-major tensor -> out (Bc, T, n) in batch order, zero past each caption */
static void batch_order(const DecoderActs *a, float *out, const float *rows, int n, int T)
{
    memset(out, 0, sizeof(float) * a->Bc * T * n);
    for (int t = 0; t < a->steps; t++)
        for (int k = 0; k < a->bt[t]; k++)
            memcpy(out + ((size_t)a->order[k] * T + t) * n, rows + ((size_t)a->off[t] + k) * n, sizeof(float) * n);
}

void decoder_get_alphas(const DecoderActs *a, float *out, const DecoderSizes *sz)
{
    batch_order(a, out, a->alpha, sz->P, sz->T);
}

void decoder_get_probs(const DecoderActs *a, float *out, const DecoderSizes *sz)
{
    batch_order(a, out, a->probs, sz->V, sz->T);
}
