/*
 * conv2d.h - 3x3 convolution, padding 1, stride 1 or 2 (torch.nn.Conv2d(C, OC, 3, stride, 1)),
 * by im2col + sac_gemm over tiles of output columns sized for the cache.
 *
 * Stride-1 convolutions of 32+ channels go through winograd.h instead: the forward when the
 * input is that wide, the input gradient when the output is (on sides of 8 x 8 and up), the
 * weight gradient when the input is and the output has 16+ channels.
 *
 * Size letters: B batch, C input channels, OC output channels, H W input height and width,
 * Ho Wo output height and width: Ho = (H - 1) / stride + 1 (as torch with padding 1).
 * Tensors are NCHW, contiguous; the weight is torch's (OC, C, 3, 3).
 *
 * Layer functions never allocate: the caller passes `scratch` of conv2d_scratch_floats()
 * floats, one buffer good for forward and backward of the same sizes.
 */
#ifndef SACCADE_CONV2D_H
#define SACCADE_CONV2D_H

#include <stddef.h>

/* Output side for an input side n: (n - 1) / stride + 1. */
int conv2d_out_size(int n, int stride);

/* Floats of scratch conv2d_forward / conv2d_relu_forward / conv2d_backward need for a batch of
 * B; enough for any smaller batch too. */
size_t conv2d_scratch_floats(int B, int C, int H, int W, int OC, int stride);

/* The weight rearranged by kernel row, as the stride-1 path multiplies by it:
 * wsplit (3, OC, 3C), wsplit[ky][o][c*3 + kx] = weight[o][c][ky][kx]. */
void conv2d_weight_split(float *wsplit, const float *weight, int C, int OC);

/* Weights prepared for the forward once, for callers that reuse them (inference):
 * conv2d_prepared_floats floats (0 when this conv does not take any: then pass NULL), filled
 * by conv2d_prepare from weight with output channel o scaled by scale[o] (scale may be NULL). */
size_t conv2d_prepared_floats(int C, int OC, int stride);
void conv2d_prepare(float *prepared, const float *weight, const float *scale, int C, int OC, int stride);

/* out (B, OC, Ho, Wo) = conv3x3(inp (B, C, H, W), weight (OC, C, 3, 3)) + bias (OC) or no bias
 * when bias is NULL. Stride 1 with 64 or more input channels runs Winograd F(2x2, 3x3)
 * (winograd.h): within a few ulps of direct convolution, 16 multiplies per 2x2 output tile and
 * channel pair where im2col takes 36. */
void conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                    const float *bias, int B, int C, int H, int W, int OC, int stride);

/* The same with the ReLU fused: out = max(0, conv + bias). Inference only (no backward).
 * prepared: conv2d_prepare(weight), once by the caller (weight may then be NULL), or NULL
 * (then it is prepared in scratch on every call). */
void conv2d_relu_forward(float *out, float *scratch, const float *inp, const float *weight,
                         const float *prepared, const float *bias, int B, int C, int H, int W, int OC,
                         int stride);

/* Backward of conv2d_forward; accumulates (+=) into every non-NULL gradient:
 * dinp (B, C, H, W) (NULL: not computed, e.g. for the first layer), dweight (OC, C, 3, 3),
 * dbias (OC) (NULL when the conv has no bias). dout (B, OC, Ho, Wo). */
void conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch, const float *dout,
                     const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                     int stride);

/* Direct (7-loop) convolution in double, same contract as conv2d_forward: a reference for tests. */
void conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias, int B,
                        int C, int H, int W, int OC, int stride);

#endif
