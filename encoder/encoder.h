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
 * (see decoder/model.h), never owned here. */
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

#endif
