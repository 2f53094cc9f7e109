/*
 * pointwise.h - 1x1 convolution on channels-last rows with fused bias, residual and ReLU6
 * (MobileNetV2's expansion, projection and last conv; also any (M, K) @ (K, N) + bias).
 *
 * Reference: torch.nn.Conv2d(K, N, 1) on NHWC rows: y[m][n] = act(bias[n] (+ res[m][n]) +
 * sum_k x[m][k] * W[n][k]), act = ReLU6 (min(max(v, 0), 6)) or identity.
 * Size letters: M rows (positions), K input channels, N output channels.
 *
 * The weights are packed once into panels of PW_PANEL output channels: panel p holds its bias
 * (PW_PANEL floats, zero past N) then W^T rows k = 0..K-1 (PW_PANEL floats each, zero past N).
 * Every kernel sums each output in the same order (bias, then the residual, then k = 0, 1, ...)
 * whatever M, the row offset or the blocking, so a row gives the same bits alone or in any batch;
 * the AVX2 and AVX-512 kernels (fused multiply-add) give the same bits as each other, the C
 * kernel (separate multiply and add) differs in the last bits. Kernels as in common/cpu.h.
 */
#ifndef SACCADE_POINTWISE_H
#define SACCADE_POINTWISE_H

#include <stddef.h>

#include "cpu.h"

#define PW_PANEL 32

/* Floats of packed (K, N) weights. */
size_t pointwise_packed_floats(int K, int N);
/* Pack weight (N, K) (torch Conv2d (N, K, 1, 1) or Linear (N, K)) and bias (N, may be NULL =
 * zero) into dst (pointwise_packed_floats; 64-byte aligned is best). */
void pointwise_pack(float *dst, const float *weight, const float *bias, int K, int N);

/* y (M, N), rows ldy apart = act(bias + res + x (M, K) @ W^T); x rows ldx apart; res (M, N)
 * rows ldr apart or NULL; relu6 1 = ReLU6, 0 = linear. kernel: a supported SAC_KERNEL_* other
 * than AUTO. y must not overlap x; it may be res (in place). Serial: callers split rows. */
void pointwise_forward(int kernel, float *y, int ldy, const float *x, int ldx, const float *res, int ldr,
                       const float *packed, int M, int K, int N, int relu6);

#endif
