/*
 * encoder.h - the convolutional encoder: image -> feature grid.
 *
 * A stack of conv3x3 (stride s, padding 1) -> [batchnorm] -> ReLU -> [maxpool 2x2] layers,
 * as torch.nn.Sequential(Conv2d, BatchNorm2d, ReLU, MaxPool2d). Activations are NCHW
 * inside the encoder; its output is the feature grid in (B, P, E) order, position-major,
 * p = y * Wg + x, which is what attention consumes.
 *
 * Size letters: B batch (images), S input side, C channels, H W spatial,
 * P = Hg*Wg grid positions, E encoder output channels (= last layer's cout).
 */
#ifndef SACCADE_ENCODER_H
#define SACCADE_ENCODER_H

#define SAC_MAX_CONV 8

typedef struct ConvSpec {
    int cout;   /* output channels */
    int stride; /* 1 or 2 */
    int pool;   /* 1: 2x2 max-pool (stride 2) after the ReLU */
} ConvSpec;

typedef struct EncoderConfig {
    int image_size; /* S: the input is an S x S RGB image */
    int n_conv;
    ConvSpec conv[SAC_MAX_CONV];
    int batchnorm; /* 1: BatchNorm2d after every conv; the conv then has no bias */
} EncoderConfig;

/* Shapes of one layer, derived from the config. */
typedef struct ConvShape {
    int cin, cout, stride, pool;
    int h_in, w_in;   /* input */
    int h_out, w_out; /* after the conv (and BN, ReLU) */
    int h_pool, w_pool; /* layer output: after the optional pool (= h_out, w_out without) */
} ConvShape;

/* Fill shapes[0..n_conv) and report the grid; returns SAC_OK or SAC_ERR_INVALID (logged)
 * when a layer would shrink to nothing or a field is out of range. */
int encoder_shapes(const EncoderConfig *cfg, ConvShape *shapes, int *grid_h, int *grid_w);

/* One layer's tensors. Pointers point into the model's single parameter buffer
 * (see captioner/model.h), never owned here. */
typedef struct ConvLayerParams {
    float *weight;   /* (Cout, Cin, 3, 3), torch Conv2d layout */
    float *bias;     /* (Cout); NULL with batchnorm */
    float *bn_gamma; /* (Cout); NULL without batchnorm */
    float *bn_beta;  /* (Cout) */
    float *bn_mean;  /* (Cout) running mean: a buffer, updated by training forwards, not trained */
    float *bn_var;   /* (Cout) running (unbiased) variance, likewise */
} ConvLayerParams;

typedef struct EncoderParams {
    ConvLayerParams conv[SAC_MAX_CONV];
} EncoderParams;

/* ---- training-graph forward / backward ------------------------------------------------ */

/* Every activation the encoder keeps for its backward, allocated once for up to max_batch
 * images (no allocation in forward/backward): about 6 MB per 128x128 image with the default
 * config (185 MB for a batch of 32). Opaque. */
typedef struct EncoderActs EncoderActs;

/* Returns NULL (logged) on an invalid config or out of memory. Free with encoder_acts_free. */
EncoderActs *encoder_acts_create(const EncoderConfig *cfg, int max_batch);
/* NULL is a no-op. */
void encoder_acts_free(EncoderActs *acts);

/* feats (B, P, E) = encoder(images (B, 3, S, S)), P = Hg * Wg, p = y * Wg + x.
 * training = 1: batchnorm uses batch statistics and updates p's running mean/var (the only
 * writes to p), and acts keep what encoder_backward needs (the images are copied in).
 * training = 0: batchnorm uses the running statistics; no backward afterwards.
 * cfg must be the config acts was created with; 1 <= B <= max_batch.
 * Returns SAC_OK or SAC_ERR_INVALID (logged). */
int encoder_forward(float *feats, EncoderActs *acts, const float *images, EncoderParams *p,
                    const EncoderConfig *cfg, int B, int training);

/* Backward of the last encoder_forward (which must have been a training forward of the same B):
 * accumulates (+=) dL/dparam into grads (weight, bias, bn_gamma, bn_beta of every layer;
 * bn_mean / bn_var are buffers and get no gradient). dfeats (B, P, E). No image gradient.
 * Returns SAC_OK or SAC_ERR_INVALID (logged). */
int encoder_backward(EncoderParams *grads, EncoderActs *acts, const float *dfeats,
                     const EncoderParams *p, const EncoderConfig *cfg, int B);

/* ---- inference: batchnorm folded into the convolutions ---------------------------------- */

/* Inference encoder: per layer w' = w * gamma / sqrt(var + eps), b' = beta + (bias - mean) *
 * gamma / sqrt(var + eps) (bias = 0 without one; w' = w, b' = bias without batchnorm), then
 * conv + bias + ReLU fused, then the pool. Holds its own copy of the folded weights and its
 * buffers for up to max_batch images, so one call at a time per EncoderInfer (threads that
 * encode concurrently need one each). Opaque. */
typedef struct EncoderInfer EncoderInfer;

/* Returns NULL (logged) on an invalid config, missing tensors, or out of memory.
 * The caller keeps ownership of p; free the result with encoder_infer_free. */
EncoderInfer *encoder_infer_create(const EncoderConfig *cfg, const EncoderParams *p, int max_batch);
/* Refold from p (same config) after the parameters changed, e.g. between training and eval. */
void encoder_infer_update(EncoderInfer *enc, const EncoderParams *p);
/* NULL is a no-op. */
void encoder_infer_free(EncoderInfer *enc);

/* feats (B, P, E) from images (B, 3, S, S); equals encoder_forward(training = 0) up to float
 * rounding. Returns SAC_OK or SAC_ERR_INVALID (logged) when B is outside 1..max_batch. */
int encoder_infer_forward(EncoderInfer *enc, float *feats, const float *images, int B);

#endif
