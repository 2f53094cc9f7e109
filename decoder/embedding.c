/*
 * embedding.c - word embedding lookup, see embedding.h.
 */
#include "embedding.h"

#include <stddef.h>
#include <string.h>

void embedding_forward(float *out, const int *ids, const float *table, int N, int M)
{
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * M, table + (size_t)ids[n] * M, sizeof(float) * M);
}

void embedding_backward(float *dtable, const float *dout, const int *ids, int N, int M)
{
    /* forward: out[n] = table[ids[n]] */
    for (int n = 0; n < N; n++) {
        float *dst = dtable + (size_t)ids[n] * M;
        const float *src = dout + (size_t)n * M;
        for (int m = 0; m < M; m++) dst[m] += src[m];
    }
}
