/*
 * backbone_import.h - convert pretrained MobileNetV2 weights into a backbone file
 * (backbone_file.h): Google's uint8-quantized TFLite model (mobilenet_v2_1.0_224_quant.tflite)
 * or a torchvision mobilenet_v2 state dict saved as safetensors.
 *
 * Sizes: N classes, C channels; TFLite tensors NHWC (conv weights OHWI, depthwise [1,kh,kw,C]),
 * written as torch OIHW ((C,1,kh,kw) for depthwise).
 *
 * TFLite: the graph is walked operator by operator and matched to the layer table
 * (backbone_layers) by data flow, op kind, shapes, strides, SAME padding and fused activation
 * (ReLU6 where the table says so, none on projections, residual ADDs and the classifier), not by
 * tensor names; only CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, RESHAPE and SOFTMAX are
 * accepted. uint8 weights: real = scale x (q - zero_point); int32 biases: real = q x input_scale x
 * weight_scale (the TFLite quantization spec), with a warning when the bias tensor's own scale
 * differs from that product by more than 1e-6 relative. Metadata: padding "same", mean/std 0.5.
 *
 * torchvision: every conv is followed by BatchNorm2d (eps 1e-5), folded as
 *   w' = w x gamma / sqrt(var + eps),  b' = beta - mean x gamma / sqrt(var + eps).
 * Metadata: padding "symmetric", ImageNet mean/std. num_batches_tracked is ignored; any other
 * tensor outside torchvision's mobilenet_v2 state dict is an error.
 */
#ifndef SACCADE_BACKBONE_IMPORT_H
#define SACCADE_BACKBONE_IMPORT_H

#include <stdint.h>

#include "safetensors.h"
#include "tflite.h"

/* Most bytes an import source may have. */
#define BACKBONE_IMPORT_MAX_BYTES ((size_t)1 << 30)

typedef struct {
    const char *labels_path; /* one class name a line (N lines), or NULL for "labels": [] */
    const char *license;     /* NULL: "Apache-2.0" for TFLite, "unknown, see source" otherwise */
} BackboneImportOptions;

typedef struct {
    const char *kind;        /* "tflite" or "torchvision state dict" */
    char sha256[65];         /* of the source file */
    int n_tensors;           /* written */
    int64_t n_params;        /* floats written */
    int n_classes;
    int n_operators;         /* TFLite: operators walked */
    int n_convs;             /* TFLite: CONV_2D + DEPTHWISE_CONV_2D converted */
    int n_bias_checked;      /* TFLite: biases whose scale was compared with input x weight scale */
    int n_bias_mismatch;     /* ... and differed by more than 1e-6 relative (warned) */
} BackboneImportReport;

/* Add the backbone tensors of a parsed TFLite MobileNetV2 to w (metadata: "padding", "mean",
 * "std", "n_classes" and "license" unless opt->license is set by the caller later). Returns 0 or
 * logs "<model path>: operator 12 (CONV_2D, features.3.conv.0.0): ..." and returns
 * SAC_ERR_FORMAT / SAC_ERR_UNSUPPORTED / SAC_ERR_NOMEM. rep may be NULL. */
int backbone_from_tflite(const TfliteModel *m, SafeTensorsWriter *w, BackboneImportReport *rep);
/* The same for a torchvision state dict. */
int backbone_from_state_dict(const SafeTensors *st, SafeTensorsWriter *w, BackboneImportReport *rep);

/* The whole import: detect the kind of src (TFLite identifier "TFL3" at byte 4, else
 * safetensors), convert, set every metadata key of the format, write it to "<out>.importing",
 * read that back and check it with backbone_file_check, then write the checked bytes to `out`
 * through the output layer (output.h: atomic replace of a regular file, links followed) and
 * remove the temporary file. Refuses an `out` that is the same file as src. Returns 0, or a
 * negative status (logged); on failure `out` is untouched. */
int backbone_import(const char *src, const char *out, const BackboneImportOptions *opt, BackboneImportReport *rep);

#endif
