/*
 * loss.c - softmax cross-entropy, see loss.h.
 */
#include "loss.h"

#include "fastmath.h"
#include "threadpool.h"

#include <math.h>
#include <stddef.h>

/* Rows are independent: the pool splits them. */
typedef struct {
    float *out;
    const float *in;
    const int *targets;
    float dloss;
    int V;
} RowTask;

/* Rows per chunk at least, so that small calls stay serial. */
#define ROW_GRAIN 8

/* sum over n floats in 8 independent lanes (as fastmath.h sac_max_lanes), so that the loop
 * vectorises without reassociating one running value */
static float sum_lanes(const float *x, int n)
{
    float acc[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[k + j];
    float tail = 0.0f;
    for (; k < n; k++) tail += x[k];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

static void softmax_rows(void *arg, int n0, int n1, int chunk)
{
    (void)chunk;
    const RowTask *t = arg;
    const int V = t->V;
    for (int n = n0; n < n1; n++) {
        const float *l = t->in + (size_t)n * V;
        float *p = t->out + (size_t)n * V;
        const float m = sac_max_lanes(l, V);
        for (int v = 0; v < V; v++) p[v] = sac_expf(l[v] - m);
        float inv = 1.0f / sum_lanes(p, V);
        for (int v = 0; v < V; v++) p[v] *= inv;
    }
}

void softmax_forward(float *probs, const float *logits, int N, int V)
{
    RowTask t = {probs, logits, NULL, 0.0f, V};
    sac_parallel_for(N, ROW_GRAIN, softmax_rows, &t);
}

double crossentropy_forward(float *losses, const float *probs, const int *targets, int N, int V)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        float loss = 0.0f;
        if (targets[n] >= 0) {
            float p = probs[(size_t)n * V + targets[n]];
            loss = -logf(p > 1e-30f ? p : 1e-30f);
        }
        if (losses) losses[n] = loss;
        total += loss;
    }
    return total;
}

static void ce_backward_rows(void *arg, int n0, int n1, int chunk)
{
    (void)chunk;
    const RowTask *t = arg;
    float *dlogits = t->out;
    const float *probs = t->in;
    const int *targets = t->targets;
    const float dloss = t->dloss;
    const int V = t->V;
    /* forward: loss = -log softmax(logits)[target] */
    const int in_place = dlogits == probs;
    for (int n = n0; n < n1; n++) {
        float *d = dlogits + (size_t)n * V;
        const float *p = probs + (size_t)n * V;
        if (targets[n] < 0) {
            if (in_place)
                for (int v = 0; v < V; v++) d[v] = 0.0f;
            continue;
        }
        if (in_place) {
            for (int v = 0; v < V; v++) d[v] = dloss * p[v];
        } else {
            for (int v = 0; v < V; v++) d[v] += dloss * p[v];
        }
        d[targets[n]] -= dloss;
    }
}

void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets, float dloss,
                                   int N, int V)
{
    RowTask t = {dlogits, probs, targets, dloss, V};
    sac_parallel_for(N, ROW_GRAIN, ce_backward_rows, &t);
}
