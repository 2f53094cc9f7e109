/*
 * depthwise.h - depthwise 3x3 convolution + bias + ReLU6, channels last (MobileNetV2's middle
 * layer of every block).
 *
 * Reference: torch.nn.Conv2d(C, C, 3, stride=s, groups=C) followed by ReLU6 = min(max(x, 0), 6),
 * with the zero padding given explicitly (pad_top rows above, pad_left columns left, and as much
 * below / right as out = ceil(in / stride) reads).
 * Size letters: C channels, H W input side, Ho Wo output side.
 *
 * Kernels, chosen at run time (common/cpu.h): portable C, AVX2+FMA, AVX-512F. They sum
 * the same terms in the same order (bias, then taps by row and column); the vector ones fuse
 * multiply and add, so their results differ from the C one in the last bits.
 */
#ifndef SACCADE_DEPTHWISE_H
#define SACCADE_DEPTHWISE_H

#include "cpu.h"

/* Output row oy: out (Wo, C) from the three input rows oy * stride - pad_top + {0, 1, 2}, each
 * (W, C) or NULL where it lies in the padding. wt (9, C) = the torch weight (C, 1, 3, 3)
 * transposed, tap ky * 3 + kx; bias (C). kernel: a supported SAC_KERNEL_* other than AUTO. */
void depthwise_row(int kernel, float *out, const float *const rows[3], const float *wt, const float *bias, int W,
                   int Wo, int C, int stride, int pad_left);

/* A whole image: out (Ho, Wo, C) from inp (H, W, C), Ho = ceil(H / stride), Wo likewise
 * (pad_top, pad_left in 0..2). kernel SAC_KERNEL_AUTO = the best. Returns 0, or
 * SAC_ERR_UNSUPPORTED for a kernel this CPU lacks. */
int depthwise_forward(float *out, const float *inp, const float *wt, const float *bias, int H, int W, int C,
                      int stride, int pad_top, int pad_left, int kernel);

#endif
