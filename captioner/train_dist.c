/*
 * train_dist.c - the data-parallel part of a training step, see train_dist.h.
 *
 * Size letters: Bi images per batch, Bc captions per batch, T caption steps.
 */
#include "train_dist.h"

#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "sac.h"

struct TrainDist {
    int max_images, max_caps, T;
    size_t row_bytes;
    uint8_t *send, *recv, *stage; /* (max_images, row_bytes) each */
    size_t *counts;               /* (3 N): bytes to and from each rank, cursors into recv */
    int *pos;      /* (Bi) the share's images: positions in the global batch */
    int *local_of; /* (Bi) global position -> position in the share, or -1 */
    int *img;      /* (Bc) */
    int *tokens;   /* (Bc, T + 1) */
    int *lens;     /* (Bc) */
    float *weight; /* (Bc) */
    DecoderBatch share;
    double share_frac; /* Bc_r / Bc of the last share */
    TrainDistComm comm;
};

TrainDist *train_dist_create(int max_images, int max_caps, int T, size_t row_bytes)
{
    TrainDist *d = sac_calloc(1, sizeof(*d));
    if (!d) return NULL;
    d->max_images = max_images, d->max_caps = max_caps, d->T = T, d->row_bytes = row_bytes;
    d->send = sac_malloc((size_t)max_images * row_bytes);
    d->recv = sac_malloc((size_t)max_images * row_bytes);
    d->stage = sac_malloc((size_t)max_images * row_bytes);
    d->counts = sac_calloc(3 * (size_t)sac_dist_size(), sizeof(size_t));
    d->pos = sac_malloc(sizeof(int) * max_images);
    d->local_of = sac_malloc(sizeof(int) * max_images);
    d->img = sac_malloc(sizeof(int) * max_caps);
    d->tokens = sac_malloc(sizeof(int) * (size_t)max_caps * (T + 1));
    d->lens = sac_malloc(sizeof(int) * max_caps);
    d->weight = sac_malloc(sizeof(float) * max_caps);
    if (!d->pos || !d->local_of || !d->img || !d->tokens || !d->lens || !d->weight || !d->send || !d->recv ||
        !d->stage || !d->counts) {
        train_dist_free(d);
        return NULL;
    }
    return d;
}

void train_dist_free(TrainDist *d)
{
    if (!d) return;
    free(d->pos), free(d->local_of), free(d->img), free(d->tokens), free(d->lens), free(d->weight);
    free(d->send), free(d->recv), free(d->stage), free(d->counts);
    free(d);
}

int train_dist_computer(int b, int nb, int nproc) { return (int)((long)b * nproc / nb); }

int train_dist_gather_rows(TrainDist *d, int nb, const int *owner, const uint8_t *const *row, const uint8_t **stage)
{
    const int me = sac_dist_rank(), N = sac_dist_size();
    const size_t rb = d->row_bytes;
    size_t *to = d->counts, *from = d->counts + N, *cur = d->counts + 2 * N;
    memset(d->counts, 0, sizeof(size_t) * 3 * (size_t)N);
    /* what goes where: sorted by destination, then by position (both sides list them so) */
    size_t off = 0;
    for (int dst = 0; dst < N; dst++) {
        for (int b = 0; b < nb; b++) {
            if (owner[b] != me || dst == me || train_dist_computer(b, nb, N) != dst) continue;
            memcpy(d->send + off, row[b], rb);
            off += rb, to[dst] += rb;
        }
    }
    for (int b = 0; b < nb; b++)
        if (train_dist_computer(b, nb, N) == me && owner[b] != me) from[owner[b]] += rb;
    SacDistStats s0, s1;
    sac_dist_stats(&s0);
    int st = sac_dist_alltoallv(d->send, to, d->recv, from);
    sac_dist_stats(&s1);
    d->comm.exchange_s += s1.seconds - s0.seconds;
    d->comm.exchange_bytes += (double)off;
    if (st) return st;
    /* the share in batch order: rows held here, or the next received from their owner */
    size_t at = 0;
    for (int r = 0; r < N; r++) cur[r] = at, at += from[r];
    int j = 0;
    for (int b = 0; b < nb; b++) {
        if (train_dist_computer(b, nb, N) != me) continue;
        const uint8_t *src = owner[b] == me ? row[b] : d->recv + cur[owner[b]];
        if (owner[b] != me) cur[owner[b]] += rb;
        memcpy(d->stage + (size_t)j++ * rb, src, rb);
    }
    *stage = d->stage;
    return SAC_OK;
}

const DecoderBatch *train_dist_share(TrainDist *d, const DecoderBatch *g, const uint8_t *mine, float lambda,
                                     const int **pos, float *lambda_share)
{
    SAC_ASSERT(g->n_images <= d->max_images && g->n_caps <= d->max_caps);
    int ni = 0, nc = 0;
    long R = 0; /* the global batch's target tokens */
    for (int b = 0; b < g->n_images; b++) {
        d->local_of[b] = mine[b] ? ni : -1;
        if (mine[b]) d->pos[ni++] = b;
    }
    for (int k = 0; k < g->n_caps; k++) {
        R += g->lens[k];
        const int l = d->local_of[g->img[k]];
        if (l < 0) continue;
        d->img[nc] = l;
        d->lens[nc] = g->lens[k];
        memcpy(d->tokens + (size_t)nc * (d->T + 1), g->tokens + (size_t)k * (d->T + 1), sizeof(int) * (d->T + 1));
        nc++;
    }
    /* CE: sum_k w CE_k / Bc_r with w = Bc_r / R is the share's tokens' CE over the global R */
    for (int k = 0; k < nc; k++) d->weight[k] = (float)((double)nc / (double)R);
    d->share = (DecoderBatch){nc, ni, d->img, d->tokens, d->lens, d->weight};
    *pos = d->pos;
    d->share_frac = g->n_caps ? (double)nc / g->n_caps : 0.0;
    *lambda_share = (float)(lambda * d->share_frac);
    return &d->share;
}

int train_dist_reduce(TrainDist *d, TrainStep *ts, size_t n, float grad_scale, int st, DecoderLoss *loss,
                      int *stop)
{
    SacDistStats s0, s1, s2;
    sac_dist_stats(&s0);
    float *grad = train_step_grads(ts);
    const int ok = st == SAC_OK && loss->n_tokens > 0;
    /* the share's terms; a failed or empty share adds nothing */
    double sums[5] = {ok ? loss->loss : 0.0, ok ? loss->ce : 0.0, ok ? loss->penalty * d->share_frac : 0.0, st != SAC_OK, *stop};
    int rst = sac_dist_allreduce_f64(sums, 5, SAC_DIST_SUM); /* also where ranks wait for the slowest */
    sac_dist_stats(&s1);
    if (!rst && sums[3] > 0) {
        if (st == SAC_OK) sac_error("rank %d: another rank failed (see its messages): stopping", sac_dist_rank());
        return st ? st : SAC_ERR_CANCELLED;
    }
    if (!rst) {
        if (!ok) memset(grad, 0, sizeof(float) * n);
        else if (grad_scale != 1.0f)
            for (size_t i = 0; i < n; i++) grad[i] *= grad_scale;
        rst = sac_dist_allreduce_f32(grad, n, SAC_DIST_SUM);
    }
    /* a failed collective leaves the ranks out of step: nothing can be agreed after it */
    if (rst) return rst;
    loss->loss = sums[0], loss->ce = sums[1], loss->penalty = sums[2];
    *stop = sums[4] > 0;
    sac_dist_stats(&s2);
    d->comm.wait_s += s1.seconds - s0.seconds;
    d->comm.reduce_s += s2.seconds - s1.seconds;
    d->comm.reduce_bytes += (double)(s2.bytes - s0.bytes);
    d->comm.steps++;
    return SAC_OK;
}

void train_dist_comm(TrainDist *d, TrainDistComm *out, int reset)
{
    *out = d->comm;
    if (reset) memset(&d->comm, 0, sizeof(d->comm));
}

void train_dist_rank_rng(SacRng *run, SacRng *out)
{
    const uint64_t hi = sac_rng_u32(run), lo = sac_rng_u32(run);
    sac_rng_seed(out, hi << 32 | lo, 1000 + (uint64_t)sac_dist_rank());
}
