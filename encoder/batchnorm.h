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

#endif
