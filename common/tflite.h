/*
 * tflite.h - a validating reader for TensorFlow Lite model files (FlatBuffers, schema
 * tensorflow/lite/schema/schema.fbs, file identifier "TFL3", schema version 3).
 *
 * Sizes: no size letters; tensors are NHWC as TFLite stores them (conv weights OHWI,
 * depthwise weights [1, kh, kw, C]).
 *
 * What is read (field ids from schema.fbs; a union takes two ids, its type then its value):
 *   Model           0 version:uint  1 operator_codes:[OperatorCode]  2 subgraphs:[SubGraph]
 *                   3 description:string  4 buffers:[Buffer]
 *   OperatorCode    0 deprecated_builtin_code:byte  1 custom_code:string  2 version:int = 1
 *                   3 builtin_code:int  (the code is max(builtin_code, deprecated_builtin_code),
 *                   as TFLite's GetBuiltinCode resolves it)
 *   SubGraph        0 tensors:[Tensor]  1 inputs:[int]  2 outputs:[int]  3 operators:[Operator]
 *                   4 name:string  (only subgraph 0 is read)
 *   Buffer          0 data:[ubyte]  1 offset:ulong  2 size:ulong  (offset > 1: data outside the
 *                   flatbuffer, at that file offset)
 *   Tensor          0 shape:[int]  1 type:byte  2 buffer:uint  3 name:string
 *                   4 quantization:QuantizationParameters  5 is_variable:bool  6 sparsity (refused)
 *   QuantizationParameters  0 min:[float]  1 max:[float]  2 scale:[float]  3 zero_point:[long]
 *                   4/5 details (union, refused when set)  6 quantized_dimension:int
 *   Operator        0 opcode_index:uint  1 inputs:[int]  2 outputs:[int]
 *                   3/4 builtin_options (union: 1 Conv2DOptions, 2 DepthwiseConv2DOptions,
 *                   5 Pool2DOptions, 9 SoftmaxOptions, 11 AddOptions, 17 ReshapeOptions are
 *                   decoded; others are kept as a type number only)
 *   Conv2DOptions   0 padding 1 stride_w 2 stride_h 3 fused_activation_function
 *                   4 dilation_w_factor = 1  5 dilation_h_factor = 1
 *   DepthwiseConv2DOptions  0 padding 1 stride_w 2 stride_h 3 depth_multiplier
 *                   4 fused_activation_function  5 dilation_w_factor = 1  6 dilation_h_factor = 1
 *   Pool2DOptions   0 padding 1 stride_w 2 stride_h 3 filter_width 4 filter_height
 *                   5 fused_activation_function
 *   AddOptions      0 fused_activation_function;  SoftmaxOptions 0 beta:float;
 *   ReshapeOptions  0 new_shape:[int]
 *
 * Validation before trust: every uoffset, soffset, vtable (its size, and every field it names
 * inside the table's declared size), vector length, string (NUL-terminated, inside the file), buffer
 * index, tensor index, shape (rank <= TFLITE_MAX_DIMS, no negative dim), type and the size of
 * each tensor's data (product(shape) x element size, overflow-checked) is checked against the
 * file before use. Any failure rejects the whole file with a message naming the file and what
 * was wrong, e.g. "model.tflite: tensor 17 'conv/weights' names buffer 300, file has 176
 * buffers". All reads are bounds-checked byte loads; nothing needs aligned input.
 */
#ifndef SACCADE_TFLITE_H
#define SACCADE_TFLITE_H

#include <stddef.h>
#include <stdint.h>

/* TensorType (schema.fbs). */
enum {
    TFLITE_FLOAT32 = 0, TFLITE_FLOAT16 = 1, TFLITE_INT32 = 2, TFLITE_UINT8 = 3, TFLITE_INT64 = 4,
    TFLITE_STRING = 5, TFLITE_BOOL = 6, TFLITE_INT16 = 7, TFLITE_COMPLEX64 = 8, TFLITE_INT8 = 9,
    TFLITE_FLOAT64 = 10, TFLITE_COMPLEX128 = 11, TFLITE_UINT64 = 12, TFLITE_RESOURCE = 13,
    TFLITE_VARIANT = 14, TFLITE_UINT32 = 15, TFLITE_UINT16 = 16, TFLITE_INT4 = 17,
    TFLITE_BFLOAT16 = 18,
    TFLITE_TYPE_COUNT
};

/* The BuiltinOperator codes this project names (any code 0..TFLITE_MAX_BUILTIN is read). */
enum {
    TFLITE_OP_ADD = 0, TFLITE_OP_AVERAGE_POOL_2D = 1, TFLITE_OP_CONCATENATION = 2,
    TFLITE_OP_CONV_2D = 3, TFLITE_OP_DEPTHWISE_CONV_2D = 4, TFLITE_OP_DEQUANTIZE = 6,
    TFLITE_OP_FULLY_CONNECTED = 9, TFLITE_OP_MAX_POOL_2D = 17, TFLITE_OP_MUL = 18,
    TFLITE_OP_RELU = 19, TFLITE_OP_RELU6 = 21, TFLITE_OP_RESHAPE = 22, TFLITE_OP_SOFTMAX = 25,
    TFLITE_OP_CUSTOM = 32, TFLITE_OP_PAD = 34, TFLITE_OP_MEAN = 40, TFLITE_OP_QUANTIZE = 114,
    TFLITE_OP_PLACEHOLDER_FOR_GREATER_OP_CODES = 127
};
#define TFLITE_MAX_BUILTIN 1000 /* codes above are rejected as corrupt */

/* BuiltinOptions union types decoded here. */
enum {
    TFLITE_OPT_NONE = 0, TFLITE_OPT_CONV_2D = 1, TFLITE_OPT_DEPTHWISE_CONV_2D = 2,
    TFLITE_OPT_POOL_2D = 5, TFLITE_OPT_SOFTMAX = 9, TFLITE_OPT_ADD = 11, TFLITE_OPT_RESHAPE = 17
};

enum { TFLITE_PADDING_SAME = 0, TFLITE_PADDING_VALID = 1 };
enum {
    TFLITE_ACT_NONE = 0, TFLITE_ACT_RELU = 1, TFLITE_ACT_RELU_N1_TO_1 = 2, TFLITE_ACT_RELU6 = 3,
    TFLITE_ACT_TANH = 4, TFLITE_ACT_SIGN_BIT = 5
};

#define TFLITE_MAX_DIMS 8
/* Default limit for tflite_read (bytes). */
#define TFLITE_DEFAULT_MAX_BYTES ((size_t)1 << 30)

typedef struct {
    char *name;                    /* never NULL ("" when absent) */
    int type;                      /* TFLITE_FLOAT32 ... */
    int ndim;
    int32_t shape[TFLITE_MAX_DIMS]; /* each >= 0 */
    uint32_t buffer;               /* index into the model's buffers, < n_buffers */
    const uint8_t *data;           /* the buffer's bytes inside the file, NULL when empty */
    size_t nbytes;                 /* 0 when empty; else product(shape) x element size */
    int is_variable;
    /* Quantization (all 0 / NULL when absent): real = scale[i] * (q - zero_point[i]). */
    int n_scale;                   /* 0, 1 (per tensor) or shape[quantized_dimension] */
    float *scale;                  /* (n_scale) finite */
    int64_t *zero_point;           /* (n_scale); zeros when the file has none */
    int quantized_dimension;       /* < ndim when n_scale > 1 */
} TfliteTensor;

typedef struct {
    int padding;          /* TFLITE_PADDING_* */
    int stride_w, stride_h;
    int dilation_w, dilation_h;  /* default 1 */
    int depth_multiplier;        /* depthwise only */
    int filter_w, filter_h;      /* pools only */
    int activation;       /* TFLITE_ACT_*: conv, depthwise, pools, add */
    float beta;           /* softmax */
    int n_new_shape;      /* reshape: -1 when the options give no new_shape */
    int32_t new_shape[TFLITE_MAX_DIMS];
} TfliteOptions;

typedef struct {
    uint32_t opcode_index;  /* < n_operator_codes */
    int builtin;            /* resolved BuiltinOperator code */
    int op_version;         /* OperatorCode.version */
    const char *custom_code;/* NULL unless a custom op (owned by the model) */
    int n_inputs, n_outputs;
    int32_t *inputs;        /* (n_inputs) tensor indices, -1 = optional input absent */
    int32_t *outputs;       /* (n_outputs) tensor indices, each valid */
    int options_type;       /* BuiltinOptions union type, TFLITE_OPT_NONE when absent */
    int has_options;        /* options decoded from the file (else defaults) */
    TfliteOptions opt;
} TfliteOperator;

typedef struct {
    int builtin;            /* resolved code */
    int deprecated_code;    /* field 0 as stored */
    int32_t builtin_code;   /* field 3 as stored */
    int version;
    char *custom_code;      /* NULL when absent */
} TfliteOperatorCode;

/* A parsed model: everything in subgraph 0. Read-only for users (tests may edit copies of
 * operator fields to exercise consumers); every pointer is owned by the model. */
typedef struct {
    char *path;             /* the name used in messages */
    uint8_t *file;          /* the whole file */
    size_t size;
    uint32_t version;       /* schema version (3) */
    char *description;      /* "" when absent */
    int n_subgraphs;
    int n_buffers;
    int n_operator_codes;
    TfliteOperatorCode *operator_codes;
    int n_tensors;
    TfliteTensor *tensors;
    int n_operators;
    TfliteOperator *operators;
    int n_inputs, n_outputs;
    int32_t *inputs, *outputs;  /* subgraph 0's inputs / outputs, valid tensor indices */
} TfliteModel;

/* Read (through sac_read_file: a regular file of at most max_bytes; 0 = TFLITE_DEFAULT_MAX_BYTES)
 * and validate `path`. Returns NULL and logs "<path>: <problem>" on any failure. Free with
 * tflite_free. */
TfliteModel *tflite_read(const char *path, size_t max_bytes);
/* The same from memory: `data` is copied; `name` is used in messages. */
TfliteModel *tflite_parse(const char *name, const void *data, size_t size);
/* No-op on NULL. */
void tflite_free(TfliteModel *m);

/* "UINT8" etc., or "?" out of range. */
const char *tflite_type_name(int type);
/* Bytes per element; 0 for types without a fixed size (STRING, RESOURCE, VARIANT, INT4). */
size_t tflite_type_size(int type);
/* "CONV_2D" etc. for the codes schema.fbs names (0..161), else "unknown builtin". */
const char *tflite_builtin_name(int code);
/* "NONE", "RELU6", ... or "?" */
const char *tflite_activation_name(int act);

/* 1 when the bytes start like a TFLite file: identifier "TFL3" at offset 4. */
int tflite_is_tflite(const void *data, size_t size);

#endif
