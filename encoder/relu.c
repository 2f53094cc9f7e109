/*
 * relu.c - ReLU forward and backward; see relu.h. Reference: torch.nn.ReLU.
 * Size letters: n elements.
 */
#include "relu.h"

void relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    /* out = max(0, inp): dinp += dout where out > 0 */
    for (size_t i = 0; i < n; i++) {
        float d = dout[i]; /* loaded unconditionally: the select vectorises */
        dinp[i] += out[i] > 0.0f ? d : 0.0f;
    }
}
