/*
 * maxpool.c - 2x2 max pooling, stride 2; see maxpool.h. Reference: torch.nn.MaxPool2d(2)
 * (CPU kernel: scan the window row by row, keep the first max, a NaN wins).
 * Size letters: N planes, H W input side, Ho Wo output side.
 */
#include "maxpool.h"

#include <stddef.h>

#include "sac.h"

/* One output row from input rows r0, r1: the scan as selects, so the loop vectorises. */
static void maxpool_row(float *o, uint8_t *am, const float *r0, const float *r1, int Wo)
{
    for (int ox = 0; ox < Wo; ox++) {
        const float v0 = r0[2 * ox], v1 = r0[2 * ox + 1], v2 = r1[2 * ox], v3 = r1[2 * ox + 1];
        float m = v0;
        int k = 0;
        const int t1 = v1 > m || v1 != v1; /* v != v: NaN */
        m = t1 ? v1 : m, k = t1 ? 1 : k;
        const int t2 = v2 > m || v2 != v2;
        m = t2 ? v2 : m, k = t2 ? 2 : k;
        const int t3 = v3 > m || v3 != v3;
        m = t3 ? v3 : m, k = t3 ? 3 : k;
        o[ox] = m;
        am[ox] = (uint8_t)k;
    }
}

void maxpool_forward(float *out, uint8_t *argmax, const float *inp, int N, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    uint8_t am_row[128];
    for (int n = 0; n < N; n++) {
        const float *plane = inp + (size_t)n * H * W;
        for (int oy = 0; oy < Ho; oy++) {
            const float *r0 = plane + (size_t)(2 * oy) * W;
            const size_t o = ((size_t)n * Ho + oy) * Wo;
            if (argmax) {
                maxpool_row(out + o, argmax + o, r0, r0 + W, Wo);
                continue;
            }
            /* inference: the argmax goes to a row of stack, in pieces */
            for (int x0 = 0; x0 < Wo; x0 += 128)
                maxpool_row(out + o + x0, am_row, r0 + 2 * x0, r0 + W + 2 * x0, SAC_MIN(128, Wo - x0));
        }
    }
}

void maxpool_backward(float *dinp, const float *dout, const uint8_t *argmax, int N, int H, int W)
{
    int Ho = H / 2, Wo = W / 2;
    for (int n = 0; n < N; n++) {
        float *plane = dinp + (size_t)n * H * W;
        const float *d = dout + (size_t)n * Ho * Wo;
        const uint8_t *a = argmax + (size_t)n * Ho * Wo;
        for (int oy = 0; oy < Ho; oy++) {
            for (int ox = 0; ox < Wo; ox++) {
                /* out[oy][ox] = inp[2*oy + k/2][2*ox + k%2], k = argmax */
                int k = a[(size_t)oy * Wo + ox];
                plane[(size_t)(2 * oy + (k >> 1)) * W + 2 * ox + (k & 1)] += d[(size_t)oy * Wo + ox];
            }
        }
    }
}
