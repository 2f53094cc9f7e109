/*
 * relu.h - rectified linear unit, elementwise (torch.nn.ReLU).
 *
 * Size letters: n elements (any shape, contiguous).
 */
#ifndef SACCADE_RELU_H
#define SACCADE_RELU_H

#include <stddef.h>

/* out (n) = max(0, inp); out may alias inp (in place). */
void relu_forward(float *out, const float *inp, size_t n);

/* Backward from the forward's output: dinp (n) += dout * (out > 0). The gradient at 0 is 0,
 * as torch's threshold_backward. dinp must not alias dout. */
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);

#endif
