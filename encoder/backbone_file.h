/*
 * backbone_file.h - the "backbone file": ImageNet-pretrained MobileNetV2 weights for saccade's
 * encoder, as float32 safetensors with batchnorm folded into every convolution. Written by
 * `saccade import` (backbone_import.h) from Google's TFLite model or a torchvision state dict;
 * read by the encoder. Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
 * Bottlenecks", CVPR 2018; torchvision.models.mobilenet_v2 (its names and block table).
 *
 * Sizes: N classes (n_classes), C channels; shapes are torch's (conv weights OIHW).
 *
 * Format "saccade-backbone-1" (a contract with the encoder; change the version to change it):
 *   Tensors, all F32, names as torchvision's mobilenet_v2 state dict, every conv with a bias:
 *     features.0.0.{weight (32,3,3,3), bias (32)}        first conv, stride 2, ReLU6
 *     features.1.conv.0.0.{weight (32,1,3,3), bias}      block 1 depthwise (no expansion), ReLU6
 *     features.1.conv.1.{weight (16,32,1,1), bias}       block 1 projection, linear
 *     features.N.conv.0.0.{weight (hidden,cin,1,1), bias}   N = 2..17: expansion 1x1, ReLU6
 *     features.N.conv.1.0.{weight (hidden,1,3,3), bias}     depthwise 3x3, ReLU6
 *     features.N.conv.2.{weight (cout,hidden,1,1), bias}    projection 1x1, linear
 *     features.18.0.{weight (1280,320,1,1), bias}        last 1x1 conv, ReLU6
 *     classifier.1.{weight (N,1280), bias (N)}           after global average pooling
 *   Blocks (torchvision's inverted_residual_setting, expansion t, channels c, repeats n, first
 *   stride s): (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
 *   hidden = t x cin; a block adds its input to its projection when stride 1 and cin == cout.
 *   "__metadata__" (all strings):
 *     format "saccade-backbone-1", arch "mobilenet_v2", width "1.0", input_size "224",
 *     padding "same" (TensorFlow SAME: a stride-2 conv on an even input pads 0 top/left and 1
 *       bottom/right) or "symmetric" (torchvision: pad k/2 on every side),
 *     mean, std: JSON arrays of 3 numbers; the network expects x = (rgb/255 - mean) / std per
 *       channel, RGB order ([0.5,0.5,0.5]/[0.5,0.5,0.5] = [-1,1] for the TFLite model; ImageNet
 *       [0.485,0.456,0.406]/[0.229,0.224,0.225] for torchvision),
 *     n_classes (decimal; 1001 for the TFLite model, class 0 = background; 1000 torchvision),
 *     labels: JSON array of the N class names, or [] when the import had no labels file,
 *     source (input file name), source_sha256 (64 hex digits), license, converted_by
 *       ("saccade <version>").
 */
#ifndef SACCADE_BACKBONE_FILE_H
#define SACCADE_BACKBONE_FILE_H

#include <stdint.h>

#include "safetensors.h"

#define BACKBONE_FORMAT "saccade-backbone-1"
#define BACKBONE_ARCH "mobilenet_v2"
#define BACKBONE_INPUT_SIZE 224
#define BACKBONE_FEATURES 1280 /* channels of features.18, the classifier's input */
/* 52 convolutions + the classifier. */
#define BACKBONE_N_LAYERS 53

typedef enum {
    BACKBONE_FIRST,      /* features.0: 3x3 stride 2, 3 -> 32, ReLU6 */
    BACKBONE_EXPAND,     /* 1x1, cin -> hidden, ReLU6 */
    BACKBONE_DEPTHWISE,  /* 3x3, groups = channels, ReLU6 */
    BACKBONE_PROJECT,    /* 1x1, hidden -> cout, linear; + block input when residual */
    BACKBONE_LAST,       /* features.18: 1x1, 320 -> 1280, ReLU6 */
    BACKBONE_CLASSIFIER  /* linear 1280 -> n_classes after global average pooling */
} BackboneRole;

/* One layer, in forward order. */
typedef struct {
    char name[32];      /* tensor name prefix: name + ".weight" / ".bias" */
    char bn[32];        /* torchvision's batchnorm prefix for this conv ("" for the classifier) */
    int role;           /* BackboneRole */
    int feature;        /* index in torchvision's features (0..18), 19 for the classifier */
    int cin, cout;
    int k;              /* kernel size (1 or 3; 1 for the classifier) */
    int stride;         /* 1 or 2 */
    int depthwise;      /* groups == cin == cout */
    int relu6;          /* ReLU6 after the conv */
    int residual;       /* BACKBONE_PROJECT only: add the block's input after the projection */
    int wndim;          /* 4 for convs, 2 for the classifier */
    int64_t wshape[4];  /* (cout, cin or 1, k, k), or (n_classes, 1280) */
} BackboneLayer;

/* Fill the BACKBONE_N_LAYERS layers for a classifier of n_classes outputs. */
void backbone_layers(BackboneLayer layers[BACKBONE_N_LAYERS], int n_classes);

/* What the metadata says, for the encoder. */
typedef struct {
    int n_classes;
    int padding_same;   /* 1 "same" (TensorFlow), 0 "symmetric" (torchvision) */
    float mean[3], std[3];
    int input_size;
    int n_labels;       /* 0 or n_classes */
} BackboneInfo;

/* Validate an opened backbone file: format and arch, every metadata key (values parsed and
 * range-checked), every expected tensor present as F32 with its shape and finite values, and no
 * other tensor. Returns 0 and fills *info (may be NULL), or logs the first problem naming the
 * file, tensor or key and what was expected vs found, and returns SAC_ERR_FORMAT. */
int backbone_file_check(const SafeTensors *st, BackboneInfo *info);

/* Read and check in one step. NULL (logged) on failure; free with safetensors_free. */
SafeTensors *backbone_file_open(const char *path, BackboneInfo *info);

/* The i-th label (0 <= i < info.n_labels) copied into buf (truncated to cap); 0 or
 * SAC_ERR_NOTFOUND when the file has no such label. */
int backbone_file_label(const SafeTensors *st, int i, char *buf, int cap);

#endif
