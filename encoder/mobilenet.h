/*
 * mobilenet.h - MobileNetV2 (Sandler et al., CVPR 2018, width 1.0) forward for inference: the
 * frozen ImageNet backbone whose feature grid the captioner attends over, and its classifier.
 *
 * Reference: torchvision.models.mobilenet_v2() in eval mode with every BatchNorm folded into the
 * convolution before it (so every conv has a weight and a bias), optionally with TensorFlow's
 * 'SAME' padding (the TFLite model's). The network:
 *   features.0        conv 3x3 stride 2, 3 -> 32, ReLU6
 *   features.1        depthwise 3x3 (32), ReLU6; projection 1x1 32 -> 16 (linear)
 *   features.2..17    inverted residual blocks: expansion 1x1 cin -> t*cin, ReLU6; depthwise 3x3
 *                     stride s, ReLU6; projection 1x1 -> cout (linear); + input when s = 1 and
 *                     cin = cout. Blocks (t, c, n, s): (6,24,2,2) (6,32,3,2) (6,64,4,2)
 *                     (6,96,3,1) (6,160,3,2) (6,320,1,1) (the first of each group has stride s)
 *   features.18       conv 1x1 320 -> 1280, ReLU6
 *   classifier.1      global average pool, then linear 1280 -> n_classes
 * ReLU6(x) = min(max(x, 0), 6).
 *
 * Outputs: the grid of features.14's expansion conv (after its ReLU6): S/16 x S/16 x 576, the
 * "14x14" grid at 224 input; or of features.18 (after its ReLU6): S/32 x S/32 x 1280, the "7x7"
 * grid; or the classifier's logits.
 *
 * Size letters: B batch (images), S input side, C channels, H W spatial, P = Hg * Wg grid
 * positions, E channels of the grid, N classes.
 */
#ifndef SACCADE_MOBILENET_H
#define SACCADE_MOBILENET_H

#include <stdint.h>

/* What the network computes up to (MobileNetConfig.grid). */
enum {
    MOBILENET_CLASSIFY = 0, /* the whole network: the 7-grid features, and logits */
    MOBILENET_GRID7 = 7,    /* features.0..18: E = 1280, grid side S / 32 */
    MOBILENET_GRID14 = 14   /* features.0..13 and features.14's expansion: E = 576, side S / 16 */
};

typedef struct MobileNetConfig {
    int grid;       /* MOBILENET_GRID14, MOBILENET_GRID7 or MOBILENET_CLASSIFY */
    /* Padding of the 3x3 convolutions. Both give out = ceil(in / stride) and differ only for
     * stride 2 on an even side: 1 = SAME (TensorFlow / TFLite) pads 0 rows above and 1 below
     * (total max((out - 1) * s + 3 - in, 0), top = total / 2); 0 = symmetric (torch,
     * padding=1) pads 1 above and 0 below (the extra row is not read). Likewise columns. */
    int pad_same;
    int image_size; /* S: a multiple of 32, 32..1024 (224 for the ImageNet weights) */
    int n_classes;  /* N, with MOBILENET_CLASSIFY only (1001 for the TFLite model); else ignored */
} MobileNetConfig;

/* The defaults: grid 7, SAME padding, S 224, 1001 classes. */
void mobilenet_config_default(MobileNetConfig *cfg);

/* Checks the config: SAC_OK, or SAC_ERR_INVALID with a message naming the field. */
int mobilenet_config_check(const MobileNetConfig *cfg);

/* Grid side (S/16 or S/32), P = side^2, and E (576 or 1280) of a valid config. */
int mobilenet_grid_side(const MobileNetConfig *cfg);
int mobilenet_grid_channels(const MobileNetConfig *cfg);

/* Shape of block features.n (1..17; 1..13 with grid 14) at a config's input side. */
typedef struct MobileNetBlockShape {
    int cin, hid, cout; /* input, expanded (cin in block 1, which has no expansion), output channels */
    int stride, residual;
    int side, side_out; /* input and output side */
    int pad;            /* zero rows above / columns left of its depthwise conv */
    int first_spec;     /* index of its first tensor in mobilenet_specs order */
} MobileNetBlockShape;

/* Fills *sh; SAC_OK or SAC_ERR_INVALID (logged) for an invalid config or n. */
int mobilenet_block_shape(const MobileNetConfig *cfg, int n, MobileNetBlockShape *sh);

/* ---- the tensors a config needs -------------------------------------------------------- */

#define MOBILENET_NAME_MAX 40

typedef struct MobileNetSpec {
    char name[MOBILENET_NAME_MAX]; /* torchvision state-dict name, e.g. "features.2.conv.1.0.weight" */
    int ndim;
    int64_t shape[4]; /* unused dims 0; torch layout: conv (Cout, Cin / groups, kh, kw), linear (N, 1280) */
} MobileNetSpec;

/* The most tensors any config needs. */
#define MOBILENET_MAX_SPECS 106

/* Lists the tensors cfg needs, in a fixed order (features.0.0.weight, features.0.0.bias,
 * features.1.conv.0.0.weight, ...; each conv's weight then its bias): grid 14 needs features.0
 * to features.13 and features.14.conv.0.0; grid 7 features.0 to features.18; classify also
 * classifier.1. Each list is a prefix of the next, so tensor i is the same tensor in every
 * config that has it. Writes up to max entries to specs (may be NULL) and returns how many the
 * config needs (at most MOBILENET_MAX_SPECS), or SAC_ERR_INVALID (logged) for an invalid config. */
int mobilenet_specs(const MobileNetConfig *cfg, MobileNetSpec *specs, int max);

/* ---- inference ------------------------------------------------------------------------- */

/* The network with its own copy of the weights (repacked for the kernels) and the buffers for
 * up to max_batch images. One call at a time per MobileNetInfer (threads that run concurrently
 * need one each); the work of a call is split over the thread pool (threadpool.h). Opaque. */
typedef struct MobileNetInfer MobileNetInfer;

/* tensors[i] points at spec i's data (mobilenet_specs order, torch layout, float32); they are
 * copied, the caller keeps them. Buffers: 1.6 MB per image at S = 224 (0.25 MB more with
 * MOBILENET_CLASSIFY) plus about 1.5 MB of scratch per slot, max(sac_threads(), online cores)
 * slots (a larger pool later does not use more than that many threads). Returns NULL (logged) for an invalid config or max_batch,
 * or out of memory. Free with mobilenet_infer_free. */
MobileNetInfer *mobilenet_infer_create(const MobileNetConfig *cfg, const float *const *tensors, int max_batch);
/* NULL is a no-op. */
void mobilenet_infer_free(MobileNetInfer *net);
/* The config it was created with. */
const MobileNetConfig *mobilenet_infer_config(const MobileNetInfer *net);
/* Run the kernels of kernel_select.h's SAC_KERNEL_* (AUTO = the best, the default) from now on:
 * for tests and benchmarks. Returns SAC_OK or SAC_ERR_UNSUPPORTED (this CPU lacks it). */
int mobilenet_infer_set_kernel(MobileNetInfer *net, int kernel);

/* feats (B, P, E), p = y * side + x, from images (B, 3, S, S) (NCHW, RGB, already normalised:
 * [-1, 1] for the TFLite weights). With MOBILENET_CLASSIFY the grid is the 7-grid. An image's
 * features are the same bits whatever the batch it comes in and the pool size (for one kernel
 * choice). Returns SAC_OK or SAC_ERR_INVALID (logged) when B is outside 1..max_batch. No
 * allocation. */
int mobilenet_infer_forward(MobileNetInfer *net, float *feats, const float *images, int B);

/* The frozen trunk below block features.first (2..17, 2..13 with grid 14): out (B, side, side,
 * cin) channels last (mobilenet_block_shape(first)), the input mobilenet_forward trains on.
 * Same returns. */
int mobilenet_infer_trunk(MobileNetInfer *net, float *out, const float *images, int B, int first);

/* logits (B, N) from images (B, 3, S, S); needs a MOBILENET_CLASSIFY config. feats (B, P, 1280)
 * receives the 7-grid on the way, or may be NULL (an internal buffer is used). Same returns. */
int mobilenet_infer_classify(MobileNetInfer *net, float *logits, float *feats, const float *images, int B);

/* ---- training the top blocks (mobilenet_train.c) ---------------------------------------- */

/* Fine-tuning: the blocks features.first .. the grid (features.17 and features.18 for grid 7;
 * features.13 and features.14's expansion for grid 14) are trained on the output of the frozen
 * trunk below them (mobilenet_infer_trunk, computed once per image), channels last. The trained
 * tensors are mobilenet_specs entries first_spec(first) .. (the grid's last conv), in that
 * order, torch layout; their gradients share the layout. Plain float code (sgemm, loops), for
 * correctness first; dX accumulates (+=) as everywhere in saccade. Opaque arena holding every
 * activation the backward needs, for up to max_batch images: one forward/backward at a time per
 * MobileNetActs. */
typedef struct MobileNetActs MobileNetActs;

/* grid 14 or 7 (not classify), first in 2..17 (2..13 with grid 14). NULL (logged) on an
 * invalid argument or out of memory. Free with mobilenet_acts_free (NULL is a no-op). */
MobileNetActs *mobilenet_acts_create(const MobileNetConfig *cfg, int first, int max_batch);
void mobilenet_acts_free(MobileNetActs *acts);
/* How many tensors are trained (params / grads entries). */
int mobilenet_acts_n_params(const MobileNetActs *acts);

/* feats (B, P, E) from inp (B, side, side, cin) of block `first`; params[i] = spec
 * first_spec + i. Keeps (copies) what the backward needs. SAC_OK or SAC_ERR_INVALID (B). */
int mobilenet_forward(float *feats, MobileNetActs *acts, const float *inp, const float *const *params, int B);
/* Backward of the last mobilenet_forward (same B): grads[i] += dL/dparams[i]; dinp (B, side,
 * side, cin) += dL/dinp unless NULL; dfeats (B, P, E). SAC_OK or SAC_ERR_INVALID. */
int mobilenet_backward(float *const *grads, float *dinp, MobileNetActs *acts, const float *dfeats,
                       const float *const *params, int B);

#endif
