/*
 * batchnorm.h - 2-D batch normalisation over NCHW tensors (torch.nn.BatchNorm2d, eps 1e-5,
 * momentum 0.1, affine).
 *
 * Size letters: B batch, C channels, N = H * W positions per plane.
 * Training: per channel c, statistics over (B, N): mean, biased variance var;
 *   out = (x - mean) / sqrt(var + eps) * gamma + beta, and the running statistics move by
 *   running = (1 - momentum) * running + momentum * stat, with the UNBIASED variance
 *   var * B*N / (B*N - 1) for running_var, exactly as torch.
 * Inference: the running statistics replace the batch statistics.
 */
#ifndef SACCADE_BATCHNORM_H
#define SACCADE_BATCHNORM_H

#include <stdint.h>

#define SAC_BN_EPS 1e-5f
#define SAC_BN_MOMENTUM 0.1f

/* Training forward. out (B, C, N) may alias inp. Saves mean (C) and rstd (C) = 1/sqrt(var + eps)
 * for the backward. running_mean / running_var (C) are updated in place when non-NULL. */
void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                       const float *beta, float *running_mean, float *running_var, int B, int C,
                       int N);

/* Inference forward with the running statistics. out (B, C, N) may alias inp. */
void batchnorm_infer_forward(float *out, const float *inp, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int B, int C,
                             int N);

/* Backward of the training forward; accumulates (+=) into dinp (B, C, N), dgamma (C), dbeta (C).
 * inp is the forward's input, mean/rstd what the forward saved. */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int N);

/* ---- pieces and fused forms, for the encoder's conv -> batchnorm -> relu [-> maxpool] ---- */

/* The training forward's statistics alone: mean (C), rstd (C), running stats updated when
 * non-NULL (exactly as batchnorm_forward). */
void batchnorm_stats(float *mean, float *rstd, const float *inp, float *running_mean,
                     float *running_var, int B, int C, int N);

/* The normalisation as a per-channel affine map out = x * scale[c] + shift[c]:
 * scale = gamma * rstd, shift = beta - mean * scale (what batchnorm_forward applies). */
void batchnorm_affine(float *scale, float *shift, const float *mean, const float *rstd,
                      const float *gamma, const float *beta, int C);
/* The same from the running statistics (what batchnorm_infer_forward applies). */
void batchnorm_infer_affine(float *scale, float *shift, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int C);

/* out (B, C, N) = max(0, inp * scale[c] + shift[c]): batchnorm then ReLU in one pass. */
void batchnorm_relu_apply(float *out, const float *inp, const float *scale, const float *shift,
                          int B, int C, int N);

/* out (B, C, H/2, W/2) = relu(maxpool2x2(inp * scale[c] + shift[c])), inp (B, C, H, W), in one
 * pass. Caches for the backward (both NULL for inference): argmax (B, C, H/2, W/2) as
 * maxpool_forward's, pooled_in (B, C, H/2, W/2) the input value at each argmax. Equals
 * maxpool(relu(batchnorm)), torch's order: ReLU is monotone, so the values are the same, and
 * where the window's max is positive so is its first max. */
void batchnorm_pool_relu_apply(float *out, uint8_t *argmax, float *pooled_in, const float *inp,
                               const float *scale, const float *shift, int B, int C, int H, int W);

/* Backward of out = relu(batchnorm(inp)) in training mode, out (B, C, N) the forward's output;
 * accumulates (+=) into dinp (B, C, N), dgamma (C), dbeta (C). */
void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *out, const float *inp, const float *mean,
                             const float *rstd, const float *gamma, int B, int C, int N);

/* Backward of out = relu(maxpool2x2(batchnorm(inp))) in training mode: dout, out, argmax,
 * pooled_in (B, C, H/2, W/2) from batchnorm_pool_relu_apply, inp (B, C, H, W); accumulates (+=)
 * into dinp (B, C, H, W), dgamma (C), dbeta (C). */
void batchnorm_pool_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *out, const uint8_t *argmax, const float *pooled_in,
                                  const float *inp, const float *mean, const float *rstd,
                                  const float *gamma, int B, int C, int H, int W);

#endif
