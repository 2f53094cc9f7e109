/*
 * maxpool.c - 2x2 max pooling, stride 2; see maxpool.h. Reference: torch.nn.MaxPool2d(2)
 * (CPU kernel: scan the window row by row, keep the first max, a NaN wins).
 * Size letters: N planes, H W input side, Ho Wo output side.
 */
#include "maxpool.h"

#include <math.h>
#include <stddef.h>

void maxpool_forward(float *out, uint8_t *argmax, const float *inp, int N, int H, int W)
{
    int Ho = H / 2, Wo = W / 2;
    for (int n = 0; n < N; n++) {
        const float *plane = inp + (size_t)n * H * W;
        float *o = out + (size_t)n * Ho * Wo;
        uint8_t *a = argmax ? argmax + (size_t)n * Ho * Wo : NULL;
        for (int oy = 0; oy < Ho; oy++) {
            const float *r0 = plane + (size_t)(2 * oy) * W;
            const float *r1 = r0 + W;
            for (int ox = 0; ox < Wo; ox++) {
                const float v[4] = {r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]};
                float m = v[0];
                int k = 0;
                for (int j = 1; j < 4; j++) {
                    int take = v[j] > m || isnan(v[j]); /* selects, not branches */
                    m = take ? v[j] : m;
                    k = take ? j : k;
                }
                o[(size_t)oy * Wo + ox] = m;
                if (a) a[(size_t)oy * Wo + ox] = (uint8_t)k;
            }
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
