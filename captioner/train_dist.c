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
    int *pos;      /* (Bi) the share's images: positions in the global batch */
    int *local_of; /* (Bi) global position -> position in the share, or -1 */
    int *img;      /* (Bc) */
    int *tokens;   /* (Bc, T + 1) */
    int *lens;     /* (Bc) */
    float *weight; /* (Bc) */
    DecoderBatch share;
    double share_frac; /* Bc_r / Bc of the last share */
    double wait_s, comm_s, comm_bytes;
    long steps;
};

TrainDist *train_dist_create(int max_images, int max_caps, int T)
{
    TrainDist *d = sac_calloc(1, sizeof(*d));
    if (!d) return NULL;
    d->max_images = max_images, d->max_caps = max_caps, d->T = T;
    d->pos = sac_malloc(sizeof(int) * max_images);
    d->local_of = sac_malloc(sizeof(int) * max_images);
    d->img = sac_malloc(sizeof(int) * max_caps);
    d->tokens = sac_malloc(sizeof(int) * (size_t)max_caps * (T + 1));
    d->lens = sac_malloc(sizeof(int) * max_caps);
    d->weight = sac_malloc(sizeof(float) * max_caps);
    if (!d->pos || !d->local_of || !d->img || !d->tokens || !d->lens || !d->weight) {
        train_dist_free(d);
        return NULL;
    }
    return d;
}

void train_dist_free(TrainDist *d)
{
    if (!d) return;
    free(d->pos), free(d->local_of), free(d->img), free(d->tokens), free(d->lens), free(d->weight);
    free(d);
}

const DecoderBatch *train_dist_share(TrainDist *d, const DecoderBatch *g, const uint8_t *mine, float lambda,
                                     const int **pos, float *lambda_share)
{
    SAC_ASSERT(g->n_images <= d->max_images && g->n_caps <= d->max_caps && g->n_caps > 0);
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
    d->share_frac = (double)nc / g->n_caps;
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
    d->wait_s += s1.seconds - s0.seconds;
    d->comm_s += s2.seconds - s1.seconds;
    d->comm_bytes += (double)(s2.bytes - s0.bytes);
    d->steps++;
    return SAC_OK;
}

void train_dist_comm(TrainDist *d, double *wait_s, double *seconds, double *bytes, long *steps, int reset)
{
    *wait_s = d->wait_s, *seconds = d->comm_s, *bytes = d->comm_bytes, *steps = d->steps;
    if (reset) d->wait_s = d->comm_s = d->comm_bytes = 0, d->steps = 0;
}

void train_dist_dropout_rng(SacRng *run, SacRng *out)
{
    const uint64_t hi = sac_rng_u32(run), lo = sac_rng_u32(run);
    sac_rng_seed(out, hi << 32 | lo, 1000 + (uint64_t)sac_dist_rank());
}
