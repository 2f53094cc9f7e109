/*
 * loss.c - softmax cross-entropy, see loss.h.
 */
#include "loss.h"

#include "fastmath.h"

#include <math.h>
#include <stddef.h>

void softmax_forward(float *probs, const float *logits, int N, int V)
{
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float m = -INFINITY;
        for (int v = 0; v < V; v++) m = l[v] > m ? l[v] : m;
        float sum = 0.0f;
        for (int v = 0; v < V; v++) {
            p[v] = sac_expf(l[v] - m);
            sum += p[v];
        }
        float inv = 1.0f / sum;
        for (int v = 0; v < V; v++) p[v] *= inv;
    }
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

void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets, float dloss,
                                   int N, int V)
{
    /* forward: loss = -log softmax(logits)[target] */
    const int in_place = dlogits == probs;
    for (int n = 0; n < N; n++) {
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
