/*
 * tflite.c - the validating TFLite flatbuffer reader, see tflite.h.
 *
 * FlatBuffers layout (flatbuffers.dev, "Internals"): a file starts with a uoffset (u32) to the
 * root table, then the 4-byte file identifier. A table starts with an soffset (i32): its vtable
 * is at table - soffset. A vtable is u16 vtable size, u16 table size, then one u16 per field id
 * (offset of the field inside the table, 0 = absent, use the default). A reference field holds a
 * uoffset relative to the field's own position. A vector is a u32 length then the elements; a
 * string is a byte vector followed by a NUL. Everything is little-endian.
 *
 * Every position below is a uint64_t checked against the file size before a byte is read.
 */
#include "tflite.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "output.h"
#include "sac.h"

/* Most tensors, operators, buffers or operator codes a file may have (real models have at most
 * tens of thousands); bounds the allocations a small corrupt file can ask for. */
#define TFLITE_MAX_ITEMS (1 << 20)
#define TFLITE_SCHEMA_VERSION 3

typedef struct {
    const char *path;
    const uint8_t *p;
    uint64_t n;
    uint64_t *spent; /* bytes allocated for what the file describes (see spend) */
} Fb;

typedef struct {
    uint64_t pos;     /* the table */
    uint64_t vt;      /* its vtable */
    uint32_t vt_size; /* bytes in the vtable */
    uint32_t size;    /* bytes in the table (inline part) */
} Table;

typedef struct {
    const uint8_t *data;
    uint64_t len;
} BufView;

/* "<file>: <what was wrong>", SAC_ERR_FORMAT (sac_log keeps a name's control characters off
 * the terminal) */
#define bad(fb, ...) sac_error_at(SAC_ERR_FORMAT, (fb)->path, __VA_ARGS__)

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

/* 1 when [pos, pos + len) lies inside the file (no overflow: pos, len < 2^63 are checked). */
static int in_file(const Fb *fb, uint64_t pos, uint64_t len) { return pos <= fb->n && len <= fb->n - pos; }

/* ---- tables, fields, vectors, strings ---- */

static int count_ok(const Fb *fb, uint32_t n, const char *what)
{
    if (n > TFLITE_MAX_ITEMS)
        return bad(fb, "%u %s, more than the %d this reader accepts", n, what, TFLITE_MAX_ITEMS);
    return 0;
}

/* Account for `bytes` about to be allocated. FlatBuffers may point many elements at one shared
 * table, string or vector, so a small corrupt file could describe far more than it holds; an
 * honest file never needs more than a few times its size (each copied name, index and scale is
 * stored in it), so the total is capped at 8 x the file size + 1 MiB. */
static int spend(const Fb *fb, uint64_t bytes, const char *what)
{
    const uint64_t limit = 8 * fb->n + ((uint64_t)1 << 20);
    if (bytes > limit || *fb->spent > limit - bytes)
        return bad(fb, "%s: the file describes more than %llu bytes of tables (8 x its size + 1 MiB); shared "
                   "tables repeated past any real model's size", what, (unsigned long long)limit);
    *fb->spent += bytes;
    return 0;
}


static int table_at(const Fb *fb, uint64_t pos, const char *what, Table *t)
{
    if (!in_file(fb, pos, 4))
        return bad(fb, "%s: table at offset %llu is past the end of the %llu-byte file", what,
                   (unsigned long long)pos, (unsigned long long)fb->n);
    int64_t vt = (int64_t)pos - (int64_t)(int32_t)ld32(fb->p + pos);
    if (vt < 0 || !in_file(fb, (uint64_t)vt, 4))
        return bad(fb, "%s: vtable at offset %lld (table at %llu) is outside the %llu-byte file", what,
                   (long long)vt, (unsigned long long)pos, (unsigned long long)fb->n);
    t->pos = pos;
    t->vt = (uint64_t)vt;
    t->vt_size = ld16(fb->p + vt);
    t->size = ld16(fb->p + vt + 2);
    if (t->vt_size < 4 || t->vt_size % 2)
        return bad(fb, "%s: vtable at offset %llu has size %u, expected an even size >= 4", what,
                   (unsigned long long)t->vt, t->vt_size);
    if (!in_file(fb, t->vt, t->vt_size))
        return bad(fb, "%s: vtable at offset %llu (%u bytes) runs past the end of the %llu-byte file", what,
                   (unsigned long long)t->vt, t->vt_size, (unsigned long long)fb->n);
    if (t->size < 4 || !in_file(fb, pos, t->size))
        return bad(fb, "%s: table at offset %llu declares %u bytes, %s", what, (unsigned long long)pos, t->size,
                   t->size < 4 ? "expected >= 4" : "past the end of the file");
    return 0;
}

/* Absolute position of field `id` (width bytes) in *at, 0 when absent (use the default). */
static int field_at(const Fb *fb, const Table *t, int id, uint32_t width, const char *what, const char *field,
                    uint64_t *at)
{
    uint32_t slot = 4 + 2 * (uint32_t)id;
    *at = 0;
    if (slot + 2 > t->vt_size) return 0;
    uint32_t fo = ld16(fb->p + t->vt + slot);
    if (!fo) return 0;
    if (fo < 4 || fo + width > t->size)
        return bad(fb, "%s: field '%s' at offset %u of a %u-byte table (vtable at %llu) lies outside the table",
                   what, field, fo, t->size, (unsigned long long)t->vt);
    *at = t->pos + fo;
    return 0;
}

static int field_u8(const Fb *fb, const Table *t, int id, const char *what, const char *field, int def, int *out)
{
    uint64_t at;
    int rc = field_at(fb, t, id, 1, what, field, &at);
    *out = at ? fb->p[at] : def;
    return rc;
}

static int field_i8(const Fb *fb, const Table *t, int id, const char *what, const char *field, int def, int *out)
{
    uint64_t at;
    int rc = field_at(fb, t, id, 1, what, field, &at);
    *out = at ? (int8_t)fb->p[at] : def;
    return rc;
}

static int field_u32(const Fb *fb, const Table *t, int id, const char *what, const char *field, uint32_t def,
                     uint32_t *out)
{
    uint64_t at;
    int rc = field_at(fb, t, id, 4, what, field, &at);
    *out = at ? ld32(fb->p + at) : def;
    return rc;
}

static int field_i32(const Fb *fb, const Table *t, int id, const char *what, const char *field, int32_t def,
                     int32_t *out)
{
    uint32_t u;
    int rc = field_u32(fb, t, id, what, field, (uint32_t)def, &u);
    *out = (int32_t)u;
    return rc;
}

static int field_u64(const Fb *fb, const Table *t, int id, const char *what, const char *field, uint64_t *out)
{
    uint64_t at;
    int rc = field_at(fb, t, id, 8, what, field, &at);
    *out = at ? ld64(fb->p + at) : 0;
    return rc;
}

static int field_f32(const Fb *fb, const Table *t, int id, const char *what, const char *field, float def,
                     float *out)
{
    uint64_t at;
    int rc = field_at(fb, t, id, 4, what, field, &at);
    *out = def;
    if (at) {
        uint32_t u = ld32(fb->p + at);
        memcpy(out, &u, 4);
    }
    return rc;
}

/* Follow uoffset `at` (a position holding a u32); the target must have 4 bytes in the file. */
static int follow(const Fb *fb, uint64_t at, const char *what, const char *field, uint64_t *target)
{
    uint64_t t = at + ld32(fb->p + at);
    if (!in_file(fb, t, 4))
        return bad(fb, "%s: '%s' points to offset %llu, past the end of the %llu-byte file", what, field,
                   (unsigned long long)t, (unsigned long long)fb->n);
    *target = t;
    return 0;
}

/* Position of the object a reference field points to, 0 when absent. */
static int field_ref(const Fb *fb, const Table *t, int id, const char *what, const char *field, uint64_t *target)
{
    uint64_t at;
    *target = 0;
    int rc = field_at(fb, t, id, 4, what, field, &at);
    if (rc || !at) return rc;
    return follow(fb, at, what, field, target);
}

/* A vector at pos of elements of `es` bytes: its length and the position of element 0. */
static int vector_at(const Fb *fb, uint64_t pos, uint32_t es, const char *what, const char *field, uint32_t *len,
                     uint64_t *elems)
{
    *len = ld32(fb->p + pos);
    *elems = pos + 4;
    if ((uint64_t)*len * es > fb->n - *elems)
        return bad(fb, "%s: '%s' has %u elements of %u bytes at offset %llu, past the end of the %llu-byte file",
                   what, field, *len, es, (unsigned long long)pos, (unsigned long long)fb->n);
    return 0;
}

/* A vector field: *len = 0 when absent. */
static int field_vector(const Fb *fb, const Table *t, int id, uint32_t es, const char *what, const char *field,
                        uint32_t *len, uint64_t *elems)
{
    uint64_t pos;
    *len = 0, *elems = 0;
    int rc = field_ref(fb, t, id, what, field, &pos);
    if (rc || !pos) return rc;
    return vector_at(fb, pos, es, what, field, len, elems);
}

/* A string field copied into *out (malloc'd; "" when absent). */
static int field_string(const Fb *fb, const Table *t, int id, const char *what, const char *field, char **out)
{
    uint32_t len;
    uint64_t at;
    *out = NULL;
    int rc = field_vector(fb, t, id, 1, what, field, &len, &at);
    if (rc) return rc;
    if (at && !in_file(fb, at + len, 1))
        return bad(fb, "%s: string '%s' of %u bytes has no NUL terminator inside the file", what, field, len);
    if (at && fb->p[at + len] != 0)
        return bad(fb, "%s: string '%s' of %u bytes is not NUL-terminated", what, field, len);
    if (at && memchr(fb->p + at, 0, len))
        return bad(fb, "%s: string '%s' contains a NUL byte", what, field);
    if ((rc = spend(fb, (uint64_t)len + 1, what))) return rc;
    *out = malloc((size_t)len + 1);
    if (!*out) {
        sac_error("%s: out of memory", fb->path);
        return SAC_ERR_NOMEM;
    }
    if (len) memcpy(*out, fb->p + at, len);
    (*out)[len] = '\0';
    return 0;
}

/* Element i of a vector of tables. */
static int vector_table(const Fb *fb, uint64_t elems, uint32_t i, const char *what, Table *t)
{
    uint64_t pos = 0;
    int rc = follow(fb, elems + 4ull * i, what, "element", &pos);
    return rc ? rc : table_at(fb, pos, what, t);
}

/* ---- names ---- */

static const char *const builtin_names[] = {
#include "tflite_names.inc"
};

const char *tflite_builtin_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(builtin_names) / sizeof(builtin_names[0]))) return "unknown builtin";
    return builtin_names[code];
}

static const char *const type_names[TFLITE_TYPE_COUNT] = {
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64", "INT8",
    "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4", "BFLOAT16"};
static const uint8_t type_sizes[TFLITE_TYPE_COUNT] = {4, 2, 4, 1, 8, 0, 1, 2, 8, 1, 8, 16, 8, 0, 0, 4, 2, 0, 2};

const char *tflite_type_name(int type) { return type >= 0 && type < TFLITE_TYPE_COUNT ? type_names[type] : "?"; }
size_t tflite_type_size(int type) { return type >= 0 && type < TFLITE_TYPE_COUNT ? type_sizes[type] : 0; }

const char *tflite_activation_name(int act)
{
    static const char *const names[] = {"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"};
    return act >= 0 && act < 6 ? names[act] : "?";
}

int tflite_is_tflite(const void *data, size_t size)
{
    return size >= 8 && memcmp((const uint8_t *)data + 4, "TFL3", 4) == 0;
}

/* ---- the model ---- */

static void shape_text(char *buf, size_t cap, int ndim, const int32_t *shape)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static int parse_buffers(const Fb *fb, const Table *model, BufView **out, int *count)
{
    uint32_t n;
    uint64_t elems;
    int rc = field_vector(fb, model, 4, 4, "model", "buffers", &n, &elems);
    if (rc || (rc = count_ok(fb, n, "buffers")) || (rc = spend(fb, (uint64_t)n * sizeof(BufView), "buffers")))
        return rc;
    BufView *b = *out = sac_calloc(n ? n : 1, sizeof(*b));
    if (!b) return SAC_ERR_NOMEM;
    *count = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        char what[64];
        Table t;
        uint32_t len;
        uint64_t at, off, size;
        snprintf(what, sizeof(what), "buffer %u", i);
        if ((rc = vector_table(fb, elems, i, what, &t)) || (rc = field_vector(fb, &t, 0, 1, what, "data", &len, &at)) ||
            (rc = field_u64(fb, &t, 1, what, "offset", &off)) || (rc = field_u64(fb, &t, 2, what, "size", &size)))
            return rc;
        if (off > 1) {
            if (len) return bad(fb, "%s has both inline data (%u bytes) and an external offset %llu", what, len,
                                (unsigned long long)off);
            if (!in_file(fb, off, size))
                return bad(fb, "%s: external data at offset %llu (%llu bytes) runs past the end of the %llu-byte file",
                           what, (unsigned long long)off, (unsigned long long)size, (unsigned long long)fb->n);
            b[i] = (BufView){fb->p + off, size};
        } else if (len) {
            b[i] = (BufView){fb->p + at, len};
        }
    }
    return 0;
}

static int parse_quantization(const Fb *fb, const Table *q, const char *what, TfliteTensor *t)
{
    uint32_t n_min, n_max, n_scale, n_zp;
    uint64_t at_min, at_max, at_scale, at_zp;
    int details, rc;
    if ((rc = field_vector(fb, q, 0, 4, what, "quantization.min", &n_min, &at_min)) ||
        (rc = field_vector(fb, q, 1, 4, what, "quantization.max", &n_max, &at_max)) ||
        (rc = field_vector(fb, q, 2, 4, what, "quantization.scale", &n_scale, &at_scale)) ||
        (rc = field_vector(fb, q, 3, 8, what, "quantization.zero_point", &n_zp, &at_zp)) ||
        (rc = field_u8(fb, q, 4, what, "quantization.details_type", 0, &details)) ||
        (rc = field_i32(fb, q, 6, what, "quantization.quantized_dimension", 0, &t->quantized_dimension)))
        return rc;
    if (details) return bad(fb, "%s: custom quantization details (type %d) are not supported", what, details);
    if (n_zp && n_zp != n_scale)
        return bad(fb, "%s: quantization has %u zero points for %u scales, expected as many", what, n_zp, n_scale);
    if (n_scale > 1 && (t->quantized_dimension < 0 || t->quantized_dimension >= t->ndim ||
                        (uint32_t)t->shape[t->quantized_dimension] != n_scale))
        return bad(fb, "%s: %u per-channel scales along dimension %d do not match its shape", what, n_scale,
                   t->quantized_dimension);
    if (!n_scale) return 0;
    if ((rc = spend(fb, (uint64_t)n_scale * (sizeof(float) + sizeof(int64_t)), what))) return rc;
    t->scale = malloc(sizeof(float) * n_scale);
    t->zero_point = calloc(n_scale, sizeof(int64_t));
    if (!t->scale || !t->zero_point) {
        sac_error("%s: out of memory", fb->path);
        return SAC_ERR_NOMEM;
    }
    t->n_scale = (int)n_scale;
    for (uint32_t i = 0; i < n_scale; i++) {
        uint32_t u = ld32(fb->p + at_scale + 4ull * i);
        memcpy(&t->scale[i], &u, 4);
        if (!isfinite(t->scale[i])) return bad(fb, "%s: quantization scale %u is not finite", what, i);
        if (n_zp) t->zero_point[i] = (int64_t)ld64(fb->p + at_zp + 8ull * i);
    }
    return 0;
}

static int parse_tensor(const Fb *fb, const Table *t, int index, const BufView *bufs, int n_buffers,
                        TfliteTensor *out)
{
    char what[384];
    uint32_t ndim;
    uint64_t at_shape, at_q, at_sparsity;
    int rc;
    snprintf(what, sizeof(what), "tensor %d", index);
    if ((rc = field_string(fb, t, 3, what, "name", &out->name))) return rc;
    snprintf(what, sizeof(what), "tensor %d '%.300s'", index, out->name);
    if ((rc = field_vector(fb, t, 0, 4, what, "shape", &ndim, &at_shape)) ||
        (rc = field_i8(fb, t, 1, what, "type", 0, &out->type)) ||
        (rc = field_u32(fb, t, 2, what, "buffer", 0, &out->buffer)) ||
        (rc = field_ref(fb, t, 4, what, "quantization", &at_q)) ||
        (rc = field_u8(fb, t, 5, what, "is_variable", 0, &out->is_variable)) ||
        (rc = field_ref(fb, t, 6, what, "sparsity", &at_sparsity)))
        return rc;
    if (ndim > TFLITE_MAX_DIMS) return bad(fb, "%s has rank %u, at most %d supported", what, ndim, TFLITE_MAX_DIMS);
    out->ndim = (int)ndim;
    for (uint32_t i = 0; i < ndim; i++) out->shape[i] = (int32_t)ld32(fb->p + at_shape + 4ull * i);
    char shape[128];
    shape_text(shape, sizeof(shape), out->ndim, out->shape);
    for (int i = 0; i < out->ndim; i++)
        if (out->shape[i] < 0) return bad(fb, "%s has shape %s: dimension %d is negative", what, shape, i);
    if (out->type < 0 || out->type >= TFLITE_TYPE_COUNT)
        return bad(fb, "%s has type %d, expected a TensorType 0..%d", what, out->type, TFLITE_TYPE_COUNT - 1);
    if (at_sparsity) return bad(fb, "%s is sparse; sparse tensors are not supported", what);
    if (out->buffer >= (uint32_t)n_buffers)
        return bad(fb, "%s names buffer %u, file has %d buffers", what, out->buffer, n_buffers);
    const BufView *b = &bufs[out->buffer];
    if (b->len) {
        /* elements, saturated at UINT64_MAX once past the file size (no data can be that big) */
        uint64_t es = tflite_type_size(out->type), elems = 1;
        for (int i = 0; i < out->ndim; i++) {
            if (out->shape[i] && elems > fb->n / (uint64_t)out->shape[i]) {
                elems = UINT64_MAX;
                break;
            }
            elems *= (uint64_t)out->shape[i];
        }
        if (es && (elems == UINT64_MAX || elems * es != b->len))
            return bad(fb, "%s has %llu bytes of data in buffer %u, expected %s%llu (shape %s x %llu-byte %s)", what,
                       (unsigned long long)b->len, out->buffer, elems == UINT64_MAX ? "more than " : "",
                       (unsigned long long)(elems == UINT64_MAX ? fb->n : elems * es), shape,
                       (unsigned long long)es, tflite_type_name(out->type));
        out->data = b->data;
        out->nbytes = (size_t)b->len;
    }
    if (at_q) {
        Table q;
        if ((rc = table_at(fb, at_q, what, &q)) || (rc = parse_quantization(fb, &q, what, out))) return rc;
    }
    return 0;
}

static int parse_operator_codes(const Fb *fb, const Table *model, TfliteModel *m)
{
    uint32_t n;
    uint64_t elems;
    int rc = field_vector(fb, model, 1, 4, "model", "operator_codes", &n, &elems);
    if (rc || (rc = count_ok(fb, n, "operator codes")) ||
        (rc = spend(fb, (uint64_t)n * sizeof(TfliteOperatorCode), "operator codes")))
        return rc;
    if (!(m->operator_codes = sac_calloc(n ? n : 1, sizeof(*m->operator_codes)))) return SAC_ERR_NOMEM;
    m->n_operator_codes = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        TfliteOperatorCode *c = &m->operator_codes[i];
        char what[64];
        Table t;
        uint64_t at_custom;
        snprintf(what, sizeof(what), "operator code %u", i);
        if ((rc = vector_table(fb, elems, i, what, &t)) ||
            (rc = field_i8(fb, &t, 0, what, "deprecated_builtin_code", 0, &c->deprecated_code)) ||
            (rc = field_ref(fb, &t, 1, what, "custom_code", &at_custom)) ||
            (rc = field_i32(fb, &t, 2, what, "version", 1, &c->version)) ||
            (rc = field_i32(fb, &t, 3, what, "builtin_code", 0, &c->builtin_code)))
            return rc;
        if (at_custom && (rc = field_string(fb, &t, 1, what, "custom_code", &c->custom_code))) return rc;
        if (c->deprecated_code < 0)
            return bad(fb, "%s: deprecated_builtin_code %d is negative", what, c->deprecated_code);
        if (c->builtin_code < 0 || c->builtin_code > TFLITE_MAX_BUILTIN)
            return bad(fb, "%s: builtin_code %d, expected 0..%d", what, c->builtin_code, TFLITE_MAX_BUILTIN);
        /* schema.fbs: the byte field serves codes below 127, the int field the rest; TFLite's
         * GetBuiltinCode takes the larger of the two */
        c->builtin = SAC_MAX(c->builtin_code, c->deprecated_code);
    }
    return 0;
}

/* Which BuiltinOptions type each decoded operator must carry (or none). */
static int options_type_for(int builtin)
{
    switch (builtin) {
    case TFLITE_OP_CONV_2D: return TFLITE_OPT_CONV_2D;
    case TFLITE_OP_DEPTHWISE_CONV_2D: return TFLITE_OPT_DEPTHWISE_CONV_2D;
    case TFLITE_OP_AVERAGE_POOL_2D:
    case TFLITE_OP_MAX_POOL_2D: return TFLITE_OPT_POOL_2D;
    case TFLITE_OP_SOFTMAX: return TFLITE_OPT_SOFTMAX;
    case TFLITE_OP_ADD: return TFLITE_OPT_ADD;
    case TFLITE_OP_RESHAPE: return TFLITE_OPT_RESHAPE;
    default: return -1;
    }
}

static const char *options_name(int type)
{
    switch (type) {
    case TFLITE_OPT_NONE: return "no options";
    case TFLITE_OPT_CONV_2D: return "Conv2DOptions";
    case TFLITE_OPT_DEPTHWISE_CONV_2D: return "DepthwiseConv2DOptions";
    case TFLITE_OPT_POOL_2D: return "Pool2DOptions";
    case TFLITE_OPT_SOFTMAX: return "SoftmaxOptions";
    case TFLITE_OPT_ADD: return "AddOptions";
    case TFLITE_OPT_RESHAPE: return "ReshapeOptions";
    default: return "other options";
    }
}

static int parse_options(const Fb *fb, const Table *t, int type, const char *what, TfliteOptions *o)
{
    int rc = 0;
    int32_t dw = 1, dh = 1, sw = 0, sh = 0, fw = 0, fh = 0, dm = 0;
    switch (type) {
    case TFLITE_OPT_CONV_2D:
        if ((rc = field_i8(fb, t, 0, what, "padding", 0, &o->padding)) ||
            (rc = field_i32(fb, t, 1, what, "stride_w", 0, &sw)) || (rc = field_i32(fb, t, 2, what, "stride_h", 0, &sh)) ||
            (rc = field_i8(fb, t, 3, what, "fused_activation_function", 0, &o->activation)) ||
            (rc = field_i32(fb, t, 4, what, "dilation_w_factor", 1, &dw)) ||
            (rc = field_i32(fb, t, 5, what, "dilation_h_factor", 1, &dh)))
            return rc;
        break;
    case TFLITE_OPT_DEPTHWISE_CONV_2D:
        if ((rc = field_i8(fb, t, 0, what, "padding", 0, &o->padding)) ||
            (rc = field_i32(fb, t, 1, what, "stride_w", 0, &sw)) || (rc = field_i32(fb, t, 2, what, "stride_h", 0, &sh)) ||
            (rc = field_i32(fb, t, 3, what, "depth_multiplier", 0, &dm)) ||
            (rc = field_i8(fb, t, 4, what, "fused_activation_function", 0, &o->activation)) ||
            (rc = field_i32(fb, t, 5, what, "dilation_w_factor", 1, &dw)) ||
            (rc = field_i32(fb, t, 6, what, "dilation_h_factor", 1, &dh)))
            return rc;
        break;
    case TFLITE_OPT_POOL_2D:
        if ((rc = field_i8(fb, t, 0, what, "padding", 0, &o->padding)) ||
            (rc = field_i32(fb, t, 1, what, "stride_w", 0, &sw)) || (rc = field_i32(fb, t, 2, what, "stride_h", 0, &sh)) ||
            (rc = field_i32(fb, t, 3, what, "filter_width", 0, &fw)) ||
            (rc = field_i32(fb, t, 4, what, "filter_height", 0, &fh)) ||
            (rc = field_i8(fb, t, 5, what, "fused_activation_function", 0, &o->activation)))
            return rc;
        if (fw < 1 || fh < 1) return bad(fb, "%s: pool filter %dx%d, expected >= 1", what, fw, fh);
        break;
    case TFLITE_OPT_ADD:
        if ((rc = field_i8(fb, t, 0, what, "fused_activation_function", 0, &o->activation))) return rc;
        break;
    case TFLITE_OPT_SOFTMAX:
        if ((rc = field_f32(fb, t, 0, what, "beta", 0.0f, &o->beta))) return rc;
        if (!isfinite(o->beta)) return bad(fb, "%s: softmax beta is not finite", what);
        break;
    case TFLITE_OPT_RESHAPE: {
        uint32_t n;
        uint64_t at;
        if ((rc = field_vector(fb, t, 0, 4, what, "new_shape", &n, &at))) return rc;
        if (!at) break;
        if (n > TFLITE_MAX_DIMS) return bad(fb, "%s: new_shape has %u dims, at most %d", what, n, TFLITE_MAX_DIMS);
        o->n_new_shape = (int)n;
        for (uint32_t i = 0; i < n; i++) {
            o->new_shape[i] = (int32_t)ld32(fb->p + at + 4ull * i);
            if (o->new_shape[i] < -1) return bad(fb, "%s: new_shape[%u] = %d, expected >= -1", what, i, o->new_shape[i]);
        }
        break;
    }
    default: return 0;
    }
    if (type == TFLITE_OPT_CONV_2D || type == TFLITE_OPT_DEPTHWISE_CONV_2D || type == TFLITE_OPT_POOL_2D) {
        if (o->padding != TFLITE_PADDING_SAME && o->padding != TFLITE_PADDING_VALID)
            return bad(fb, "%s: padding %d, expected 0 (SAME) or 1 (VALID)", what, o->padding);
        if (sw < 1 || sh < 1) return bad(fb, "%s: stride %dx%d, expected >= 1", what, sw, sh);
        if (dw < 1 || dh < 1) return bad(fb, "%s: dilation %dx%d, expected >= 1", what, dw, dh);
        if (dm < 0) return bad(fb, "%s: depth_multiplier %d, expected >= 0", what, dm);
    }
    if (o->activation < TFLITE_ACT_NONE || o->activation > TFLITE_ACT_SIGN_BIT)
        return bad(fb, "%s: fused_activation_function %d, expected 0..5", what, o->activation);
    o->stride_w = sw, o->stride_h = sh, o->dilation_w = dw, o->dilation_h = dh;
    o->depth_multiplier = dm, o->filter_w = fw, o->filter_h = fh;
    return 0;
}

/* An int vector of tensor indices into *out (malloc'd); -1 allowed when `optional`. */
static int parse_indices(const Fb *fb, const Table *t, int id, const char *what, const char *field, int n_tensors,
                         int optional, int32_t **out, int *count)
{
    uint32_t n;
    uint64_t at;
    int rc = field_vector(fb, t, id, 4, what, field, &n, &at);
    if (rc || (rc = count_ok(fb, n, field)) || (rc = spend(fb, 4ull * n, what))) return rc;
    if (!(*out = sac_malloc(sizeof(int32_t) * (n ? n : 1)))) return SAC_ERR_NOMEM;
    *count = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        int32_t v = (int32_t)ld32(fb->p + at + 4ull * i);
        if (v >= n_tensors || v < (optional ? -1 : 0))
            return bad(fb, "%s: %s[%u] = %d, expected a tensor index in 0..%d%s", what, field, i, v, n_tensors - 1,
                       optional ? " or -1" : "");
        (*out)[i] = v;
    }
    return 0;
}

static int parse_operator(const Fb *fb, const Table *t, int index, TfliteModel *m, TfliteOperator *op)
{
    char what[64];
    uint64_t at_opt;
    int rc;
    snprintf(what, sizeof(what), "operator %d", index);
    if ((rc = field_u32(fb, t, 0, what, "opcode_index", 0, &op->opcode_index))) return rc;
    if (op->opcode_index >= (uint32_t)m->n_operator_codes)
        return bad(fb, "%s names operator code %u, file has %d", what, op->opcode_index, m->n_operator_codes);
    const TfliteOperatorCode *code = &m->operator_codes[op->opcode_index];
    op->builtin = code->builtin;
    op->op_version = code->version;
    op->custom_code = code->custom_code;
    snprintf(what, sizeof(what), "operator %d (%s)", index, tflite_builtin_name(op->builtin));
    if ((rc = parse_indices(fb, t, 1, what, "inputs", m->n_tensors, 1, &op->inputs, &op->n_inputs)) ||
        (rc = parse_indices(fb, t, 2, what, "outputs", m->n_tensors, 0, &op->outputs, &op->n_outputs)) ||
        (rc = field_u8(fb, t, 3, what, "builtin_options_type", 0, &op->options_type)) ||
        (rc = field_ref(fb, t, 4, what, "builtin_options", &at_opt)))
        return rc;
    op->opt = (TfliteOptions){.dilation_w = 1, .dilation_h = 1, .n_new_shape = -1};
    int want = options_type_for(op->builtin);
    if (want >= 0 && op->options_type != want && op->options_type != TFLITE_OPT_NONE)
        return bad(fb, "%s carries %s (union type %d), expected %s", what, options_name(op->options_type),
                   op->options_type, options_name(want));
    if (op->options_type != TFLITE_OPT_NONE && at_opt) {
        Table ot;
        if ((rc = table_at(fb, at_opt, what, &ot)) || (rc = parse_options(fb, &ot, op->options_type, what, &op->opt)))
            return rc;
        op->has_options = strcmp(options_name(op->options_type), "other options") != 0;
    }
    return 0;
}

static int parse_subgraph(const Fb *fb, const Table *model, const BufView *bufs, TfliteModel *m)
{
    uint32_t n;
    uint64_t elems;
    Table sg;
    int rc = field_vector(fb, model, 2, 4, "model", "subgraphs", &n, &elems);
    if (rc) return rc;
    if (n == 0) return bad(fb, "the model has no subgraph");
    m->n_subgraphs = n > INT32_MAX ? INT32_MAX : (int)n;
    if ((rc = vector_table(fb, elems, 0, "subgraph 0", &sg))) return rc;

    if ((rc = field_vector(fb, &sg, 0, 4, "subgraph 0", "tensors", &n, &elems)) || (rc = count_ok(fb, n, "tensors")) ||
        (rc = spend(fb, (uint64_t)n * sizeof(TfliteTensor), "tensors")))
        return rc;
    if (!(m->tensors = sac_calloc(n ? n : 1, sizeof(*m->tensors)))) return SAC_ERR_NOMEM;
    m->n_tensors = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        Table t;
        char what[32];
        snprintf(what, sizeof(what), "tensor %u", i);
        if ((rc = vector_table(fb, elems, i, what, &t)) ||
            (rc = parse_tensor(fb, &t, (int)i, bufs, m->n_buffers, &m->tensors[i])))
            return rc;
    }
    if ((rc = parse_indices(fb, &sg, 1, "subgraph 0", "inputs", m->n_tensors, 0, &m->inputs, &m->n_inputs)) ||
        (rc = parse_indices(fb, &sg, 2, "subgraph 0", "outputs", m->n_tensors, 0, &m->outputs, &m->n_outputs)))
        return rc;
    if ((rc = field_vector(fb, &sg, 3, 4, "subgraph 0", "operators", &n, &elems)) ||
        (rc = count_ok(fb, n, "operators")) || (rc = spend(fb, (uint64_t)n * sizeof(TfliteOperator), "operators")))
        return rc;
    if (!(m->operators = sac_calloc(n ? n : 1, sizeof(*m->operators)))) return SAC_ERR_NOMEM;
    m->n_operators = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        Table t;
        char what[32];
        snprintf(what, sizeof(what), "operator %u", i);
        if ((rc = vector_table(fb, elems, i, what, &t)) || (rc = parse_operator(fb, &t, (int)i, m, &m->operators[i])))
            return rc;
    }
    return 0;
}

static int parse_model(TfliteModel *m)
{
    uint64_t spent = 0;
    const Fb fb = {m->path, m->file, m->size, &spent};
    Table model;
    BufView *bufs = NULL;
    int rc;
    if (m->size < 8)
        return bad(&fb, "%zu bytes, too short for a TFLite file (root offset and identifier: 8 bytes)", m->size);
    if (!tflite_is_tflite(m->file, m->size)) {
        char found[20];
        for (int i = 0; i < 4; i++) found[i] = (char)(m->file[4 + i] >= 32 && m->file[4 + i] < 127 ? m->file[4 + i] : '?');
        found[4] = '\0';
        return bad(&fb, "not a TFLite file: expected the identifier 'TFL3' at byte 4, found '%s'", found);
    }
    if ((rc = table_at(&fb, ld32(m->file), "model", &model)) ||
        (rc = field_u32(&fb, &model, 0, "model", "version", 0, &m->version)))
        return rc;
    if (m->version != TFLITE_SCHEMA_VERSION)
        return bad(&fb, "schema version %u, expected %d", m->version, TFLITE_SCHEMA_VERSION);
    if ((rc = field_string(&fb, &model, 3, "model", "description", &m->description)) ||
        (rc = parse_buffers(&fb, &model, &bufs, &m->n_buffers)) || (rc = parse_operator_codes(&fb, &model, m)) ||
        (rc = parse_subgraph(&fb, &model, bufs, m))) {
        free(bufs);
        return rc;
    }
    free(bufs);
    return 0;
}

TfliteModel *tflite_parse(const char *name, const void *data, size_t size)
{
    TfliteModel *m = sac_calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->path = strdup(name);
    m->file = malloc(size ? size : 1);
    m->size = size;
    if (!m->path || !m->file) {
        sac_error("%s: out of memory", name);
        tflite_free(m);
        return NULL;
    }
    if (size) memcpy(m->file, data, size);
    if (parse_model(m)) {
        tflite_free(m);
        return NULL;
    }
    return m;
}

TfliteModel *tflite_read(const char *path, size_t max_bytes)
{
    uint8_t *buf;
    size_t len;
    if (sac_read_file(path, max_bytes ? max_bytes : TFLITE_DEFAULT_MAX_BYTES, &buf, &len)) return NULL;
    TfliteModel *m = sac_calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        sac_error("%s: out of memory", path);
        free(buf);
        free(m);
        return NULL;
    }
    m->file = buf;
    m->size = len;
    if (parse_model(m)) {
        tflite_free(m);
        return NULL;
    }
    return m;
}

void tflite_free(TfliteModel *m)
{
    if (!m) return;
    for (int i = 0; m->tensors && i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].scale);
        free(m->tensors[i].zero_point);
    }
    for (int i = 0; m->operators && i < m->n_operators; i++) {
        free(m->operators[i].inputs);
        free(m->operators[i].outputs);
    }
    for (int i = 0; m->operator_codes && i < m->n_operator_codes; i++) free(m->operator_codes[i].custom_code);
    free(m->tensors);
    free(m->operators);
    free(m->operator_codes);
    free(m->inputs);
    free(m->outputs);
    free(m->description);
    free(m->file);
    free(m->path);
    free(m);
}
