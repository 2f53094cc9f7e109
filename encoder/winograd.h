/*
 * winograd.h - 3x3 convolution, stride 1, padding 1, by Winograd's minimal filtering
 * F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).
 *
 * Each 2x2 tile of output pixels is Y = A^T [ (G g G^T) . (B^T d B) ] A for its 4x4 input patch
 * d and each 3x3 filter g: 16 multiplies per (input channel, output channel) pair instead of 36.
 * Over a batch this is 16 GEMMs, one per element xi of the 4x4 transformed tile:
 *   M[xi] (OC, tiles) = U[xi] (OC, C) @ V[xi] (C, tiles),
 * U = the transformed filters (winograd_weights, once per weight), V = the transformed input
 * patches. Tiles are taken a chunk of tile rows at a time so that V and M stay in cache.
 * In fp32 the result differs from direct convolution by a few ulps of the output's scale.
 *
 * Size letters: B images, C input channels, OC output channels, H W the input (= output) side.
 * Called from outside the thread pool (one image), each phase is split across it; from a pool
 * task (a chunk of a batch) everything runs in the calling thread. No allocation: `scratch`
 * is winograd_scratch_floats() floats.
 */
#ifndef SACCADE_WINOGRAD_H
#define SACCADE_WINOGRAD_H

#include <stddef.h>

/* Floats of the transformed weights: 16 * OC * C. */
size_t winograd_weight_floats(int C, int OC);
/* U (16, OC, C) = G g G^T for every filter g of weight (OC, C, 3, 3). */
void winograd_weights(float *U, const float *weight, int C, int OC);
/* The same for the convolution that is the forward's input gradient: its filters are weight's
 * transposed (C, OC) and rotated by 180 degrees; U (16, C, OC). */
void winograd_weights_transposed(float *U, const float *weight, int C, int OC);

size_t winograd_scratch_floats(int C, int OC, int H, int W);

enum { WINO_STORE, WINO_RELU, WINO_ACCUMULATE };
/* out (B, OC, H, W) = conv3x3(inp (B, C, H, W)) + bias (OC, or NULL); WINO_RELU: then max(0, .);
 * WINO_ACCUMULATE: out += instead of =. U from winograd_weights. */
void winograd_forward(float *out, float *scratch, const float *inp, const float *U, const float *bias, int B,
                      int C, int H, int W, int OC, int mode);

/* The weight gradient of winograd_forward (and of any 3x3 stride-1 padding-1 convolution):
 * dweight (OC, C, 3, 3) += sum over the batch of the correlation of inp (B, C, H, W) with
 * dout (B, OC, H, W), computed as the adjoint of the F(2x2, 3x3) forward: 16 products of K =
 * tiles, dU[xi] += dM[xi] V[xi]^T with dM = A dY A^T, then dweight += G^T dU G. `scratch` is
 * winograd_wgrad_scratch_floats() floats. */
size_t winograd_wgrad_scratch_floats(int C, int OC, int H, int W);
void winograd_weight_grad(float *dweight, float *scratch, const float *inp, const float *dout, int B, int C, int H,
                          int W, int OC);

#endif
