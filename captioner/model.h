/*
 * model.h - the whole captioning model: configuration, the one parameter table, and the
 * model file (safetensors with config, vocabulary and preprocessing in __metadata__).
 *
 * Part of captioner/: one of the few files that sees encoder, attention and decoder together.
 *
 * Every parameter lives in one float buffer described by one table of (name, shape, offset,
 * field). The struct of pointers (ModelParams), the tensor names in files, the checks of a
 * loaded file, and the optimizer's flat loops all derive from that table. Gradients and Adam
 * moments use the same layout, so model_point() aims a ModelParams at any such buffer.
 * Trainable tensors come first (n_trainable floats); batchnorm running statistics, which are
 * saved but not trained, come after.
 *
 * Size letters: S input side, P grid positions, E encoder channels, A attention dim,
 * D LSTM hidden, M embedding dim, V vocabulary, T most caption steps.
 */
#ifndef SACCADE_MODEL_H
#define SACCADE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "decoder.h"
#include "encoder.h"
#include "rng.h"
#include "vocab.h"

/* The pretrained backbone, when there is one: ImageNet MobileNetV2 (encoder/mobilenet.h), its
 * tensors stored in the model file as "backbone.<torchvision name>" (batchnorm folded), then an
 * optional trainable 1x1 projection "encoder.proj" of its Eb channels to E. Frozen, or with its
 * top blocks fine-tuned (finetune_from): then those blocks' tensors are trainable parameters
 * like any other (first in the layout), and the file is read by the same inference code. */
enum { SAC_BACKBONE_NONE = 0, SAC_BACKBONE_MOBILENET_V2 = 1 };

typedef struct BackboneConfig {
    int kind;     /* SAC_BACKBONE_NONE: the conv stack of ModelConfig.enc, trained from scratch */
    int grid;     /* 14: 14x14x576 (expansion of block 14); 7: 7x7x1280 (the last conv) */
    int pad_same; /* 1: TensorFlow SAME padding (the TFLite weights); 0: torchvision's symmetric */
    int proj;     /* 1: encoder.proj maps the Eb channels to E; 0: E = Eb */
    int channels; /* Eb, derived from grid */
    int finetune_from; /* 0: frozen; N: blocks features.N .. the grid's last conv are trained
                        * (N in 2..17 with grid 7, 2..13 with grid 14; mobilenet.h) */
} BackboneConfig;

typedef struct ModelConfig {
    EncoderConfig enc;    /* the from-scratch conv stack; with a backbone only enc.image_size is used */
    BackboneConfig bb;
    int E, A, D, M, V, T; /* E = the last conv's cout; T counts words + <end> */
    float dropout;        /* before the output layer, training only */
    float lambda;         /* doubly stochastic attention penalty weight */
    float mean[3], std[3]; /* preprocessing: x = (rgb / 255 - mean) / std */
} ModelConfig;

/* Defaults: 128x128 input, conv 32/s2, 64/pool, 128/pool, 256/pool, 256 with batchnorm
 * -> 8x8 grid, E=256, A=256, D=512, M=256, T=20 (the PyTorch peer's sizes). V is set from
 * the vocabulary. */
void model_config_default(ModelConfig *cfg);
/* Checks every field and derives grid size; SAC_OK or SAC_ERR_INVALID (logged). */
int model_config_validate(const ModelConfig *cfg, int *grid_h, int *grid_w);
/* JSON text of the config (caller frees) and back. */
char *model_config_to_json(const ModelConfig *cfg);
int model_config_from_json(ModelConfig *cfg, const char *json, const char *source);

#define SAC_MAX_BACKBONE_TENSORS 128

typedef struct ModelParams {
    EncoderParams enc;
    float *backbone[SAC_MAX_BACKBONE_TENSORS]; /* in mobilenet_specs order; trained from index
                                                * model_backbone_first_trained() on */
    float *proj_w; /* (E, Eb) encoder.proj.weight */
    float *proj_b; /* (E) */
    DecoderParams dec;
} ModelParams;

typedef struct ParamSpec {
    char name[64];   /* as in the model file, torch-style: "decoder.lstm.weight_ih" */
    int ndim;
    int64_t shape[4];
    size_t offset;   /* in floats, from the start of the buffer */
    size_t numel;
    size_t field;    /* byte offset of the float * within ModelParams */
    int trainable;
} ParamSpec;

typedef struct Model {
    ModelConfig cfg;
    int grid_h, grid_w, P;
    int n_specs;
    ParamSpec *specs;
    size_t n_floats;    /* all tensors */
    size_t n_trainable; /* the first n_trainable floats are trained */
    float *data;        /* (n_floats) */
    ModelParams p;      /* pointers into data */
    Vocab *vocab;       /* owned; NULL until set */
    int n_backbone;     /* tensors in p.backbone (0 without a backbone) */
    char *backbone_info; /* owned JSON: where the backbone weights came from (source, sha256,
                          * licence), saved as metadata "backbone"; NULL without a backbone */
} Model;

/* A model with the given config, parameters zeroed. NULL (logged) on invalid config.
 * Free with model_free. */
Model *model_create(const ModelConfig *cfg);
void model_free(Model *m);

/* Aim every pointer of out at buf, a buffer of m->n_floats laid out like m->data. */
void model_point(const Model *m, float *buf, ModelParams *out);

/* Initialise like PyTorch's defaults (uniform +-1/sqrt(fan_in) for linear layers and the LSTM,
 * He-uniform for convs, U(-0.1, 0.1) for the embedding and output layer, batchnorm 1/0). */
void model_init(Model *m, SacRng *rng);

/* Fill the backbone tensors of m (a model with a backbone) from a backbone file
 * (saccade import: "backbone.*" names without the prefix, batchnorm folded), checking that its
 * architecture, padding and every shape match m's config; with round_f16 each weight is rounded
 * through fp16, so a model saved in fp16 computes the features it was trained on. Sets the
 * preprocessing mean/std from the file and m->backbone_info. SAC_OK or an error (logged). */
int model_load_backbone(Model *m, const char *path, int round_f16);

/* The backbone part of a config for a backbone file: kind and padding from its metadata
 * (grid, proj and channels are the caller's choice). SAC_OK or an error (logged). */
int model_backbone_config(const char *path, BackboneConfig *bb);

/* The index in ModelParams.backbone of the first fine-tuned backbone tensor (its later ones are
 * trained too: mobilenet_acts_create's params), or n_backbone when the backbone is frozen. */
int model_backbone_first_trained(const Model *m);

/* Mobilenet config of a model with a backbone. */
struct MobileNetConfig;
void model_mobilenet_config(const ModelConfig *cfg, struct MobileNetConfig *out);

/* Decoder sizes derived from the config. */
DecoderSizes model_decoder_sizes(const Model *m);

/* Save parameters (as F32 or F16), config, vocabulary and preprocessing. Atomic.
 * The model must have a vocabulary. */
int model_save(const Model *m, const char *path, int store_f16);
/* Load and validate a model file; NULL (logged, naming the path and what was wrong). */
Model *model_load(const char *path);
/* Read config, vocabulary and tensors from an opened file (used by checkpoints too). */
struct SafeTensors;
Model *model_from_safetensors(const struct SafeTensors *st);
/* Add the model's tensors and metadata to a writer. */
struct SafeTensorsWriter;
int model_write_to(const Model *m, struct SafeTensorsWriter *w, int store_f16);

#endif
