/*
 * test_tflite.c - the TFLite reader, the backbone file and `saccade import`'s conversions.
 *
 * Unit suite (no arguments):
 *   - tests/data/tiny.tflite (tests/pyref/make_tflite_fixture.py) parsed and every value
 *     compared with what the script wrote (tests/data/tiny_tflite.json);
 *   - rejection: every truncation, seeded random byte changes (parsed safely or rejected; a
 *     parsed mutant is walked whole so ASan sees any bad pointer), hand-made bad files (offsets,
 *     vtables, vector lengths, buffer and tensor indices, negative dims, unknown types) with the
 *     message each must give; the file size limit;
 *   - SHA-256 against FIPS 180-4 examples; the MobileNetV2 layer table;
 *   - the torchvision path: a full-size state dict of seeded random values (random batchnorm
 *     statistics) written here, imported, and the folding of a few tensors recomputed
 *     independently; bad state dicts and bad backbone files rejected with named messages.
 * Pretrained suite (argument "pretrained"; exit 77 when $SACCADE_SHARED_DIR/pretrained has no
 *   mobilenet_v2_1.0_224_quant.tflite): the real file's sha256, operators and tensors, its
 *   conversion (53 convolutions, every bias scale = input x weight scale, dequantized values
 *   recomputed by hand from the raw bytes) and graphs edited to break the match.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backbone_file.h"
#include "backbone_import.h"
#include "checkrun.h"
#include "rng.h"
#include "sac.h"
#include "safetensors.h"
#include "sha256.h"
#include "tflite.h"

/* ---- helpers ---- */

static char tmpdir[64];
static char logbuf[1 << 15];

static void log_capture(int level, const char *msg, void *user)
{
    (void)user;
    if (level > SAC_LOG_WARN) return;
    size_t len = strlen(logbuf);
    snprintf(logbuf + len, sizeof(logbuf) - len, "%s\n", msg);
}

static void log_reset(void)
{
    logbuf[0] = '\0';
    sac_log_set_sink(log_capture, NULL);
}

#define ck_assert_log_has(s) ck_assert_msg(strstr(logbuf, s), "expected the log to contain '%s', got: %s", s, logbuf)

static const char *tmp_path(const char *name)
{
    static char buf[4][384];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *p = malloc(*n + 1);
    ck_assert_uint_eq(fread(p, 1, *n, f), *n);
    p[*n] = 0;
    fclose(f);
    return p;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static const char *data_path(const char *name)
{
    static char buf[512];
    const char *dir = getenv("SACCADE_TEST_DATA");
    snprintf(buf, sizeof(buf), "%s/%s", dir ? dir : "tests/data", name);
    return buf;
}

static uint8_t *fixture(size_t *n) { return read_bytes(data_path("tiny.tflite"), n); }

static cJSON *facts(void)
{
    size_t n;
    char *text = (char *)read_bytes(data_path("tiny_tflite.json"), &n);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "tiny_tflite.json is not valid JSON");
    return j;
}

static int jint(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "JSON key '%s' missing", key);
    return v->valueint;
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "JSON key '%s' missing", key);
    return v->valuedouble;
}

static const cJSON *jget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(v != NULL, "JSON key '%s' missing", key);
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Touch every byte the model exposes (so ASan sees a pointer outside the file). */
static unsigned walk_model(const TfliteModel *m)
{
    unsigned sum = m->version + (unsigned)strlen(m->description) + (unsigned)strlen(m->path);
    for (int i = 0; i < m->n_operator_codes; i++)
        sum += (unsigned)m->operator_codes[i].builtin + (m->operator_codes[i].custom_code ? (unsigned)strlen(m->operator_codes[i].custom_code) : 0);
    for (int i = 0; i < m->n_tensors; i++) {
        const TfliteTensor *t = &m->tensors[i];
        sum += (unsigned)strlen(t->name) + (unsigned)t->type + t->buffer;
        for (int d = 0; d < t->ndim; d++) sum += (unsigned)t->shape[d];
        for (size_t b = 0; b < t->nbytes; b++) sum += t->data[b];
        for (int q = 0; q < t->n_scale; q++) sum += (unsigned)(t->zero_point[q] + (t->scale[q] > 0));
    }
    for (int i = 0; i < m->n_operators; i++) {
        const TfliteOperator *op = &m->operators[i];
        ck_assert(op->opcode_index < (uint32_t)m->n_operator_codes);
        for (int k = 0; k < op->n_inputs; k++) {
            ck_assert(op->inputs[k] >= -1 && op->inputs[k] < m->n_tensors);
            if (op->inputs[k] >= 0) sum += (unsigned)strlen(m->tensors[op->inputs[k]].name);
        }
        for (int k = 0; k < op->n_outputs; k++) {
            ck_assert(op->outputs[k] >= 0 && op->outputs[k] < m->n_tensors);
            sum += (unsigned)m->tensors[op->outputs[k]].ndim;
        }
        sum += (unsigned)op->opt.stride_w + (unsigned)op->opt.n_new_shape;
    }
    for (int i = 0; i < m->n_inputs; i++) ck_assert(m->inputs[i] >= 0 && m->inputs[i] < m->n_tensors);
    for (int i = 0; i < m->n_outputs; i++) ck_assert(m->outputs[i] >= 0 && m->outputs[i] < m->n_tensors);
    return sum;
}

/* ---- the fixture, parsed ---- */

static void check_against_facts(const TfliteModel *m, const cJSON *j)
{
    ck_assert_uint_eq(m->size, (size_t)jint(j, "size"));
    ck_assert_uint_eq(m->version, (unsigned)jint(j, "version"));
    ck_assert_str_eq(m->description, jget(j, "description")->valuestring);
    ck_assert_int_eq(m->n_subgraphs, jint(j, "n_subgraphs"));
    ck_assert_int_eq(m->n_buffers, jint(j, "n_buffers"));

    const cJSON *codes = jget(j, "operator_codes");
    ck_assert_int_eq(m->n_operator_codes, cJSON_GetArraySize(codes));
    int i = 0;
    for (const cJSON *c = codes->child; c; c = c->next, i++) {
        const TfliteOperatorCode *oc = &m->operator_codes[i];
        ck_assert_int_eq(oc->deprecated_code, jint(c, "deprecated"));
        ck_assert_int_eq(oc->builtin_code, jint(c, "builtin_code"));
        ck_assert_int_eq(oc->version, jint(c, "version"));
        ck_assert_int_eq(oc->builtin, jint(c, "builtin"));
        const cJSON *custom = jget(c, "custom");
        if (cJSON_IsString(custom)) ck_assert_str_eq(oc->custom_code, custom->valuestring);
        else ck_assert_ptr_null(oc->custom_code);
    }

    const cJSON *tensors = jget(j, "tensors");
    ck_assert_int_eq(m->n_tensors, cJSON_GetArraySize(tensors));
    i = 0;
    for (const cJSON *t = tensors->child; t; t = t->next, i++) {
        const TfliteTensor *x = &m->tensors[i];
        ck_assert_str_eq(x->name, jget(t, "name")->valuestring);
        ck_assert_int_eq(x->type, jint(t, "type"));
        const cJSON *shape = jget(t, "shape");
        ck_assert_int_eq(x->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < x->ndim; d++) ck_assert_int_eq(x->shape[d], cJSON_GetArrayItem(shape, d)->valueint);
        ck_assert_uint_eq(x->buffer, (unsigned)jint(t, "buffer"));
        ck_assert_uint_eq(x->nbytes, (size_t)jint(t, "nbytes"));
        const cJSON *data = jget(t, "data");
        ck_assert_int_eq((int)x->nbytes, cJSON_GetArraySize(data));
        if (x->nbytes == 0) ck_assert_ptr_null(x->data);
        int b = 0;
        for (const cJSON *v = data->child; v; v = v->next, b++) ck_assert_int_eq(x->data[b], v->valueint);
        const cJSON *scale = jget(t, "scale"), *zp = jget(t, "zero_point");
        ck_assert_int_eq(x->n_scale, cJSON_GetArraySize(scale));
        for (int q = 0; q < x->n_scale; q++) {
            ck_assert_msg(x->scale[q] == (float)cJSON_GetArrayItem(scale, q)->valuedouble,
                          "tensor %d scale %d: %.9g vs %.9g", i, q, x->scale[q], cJSON_GetArrayItem(scale, q)->valuedouble);
            ck_assert_int_eq(x->zero_point[q], cJSON_GetArrayItem(zp, q)->valueint);
        }
        if (x->n_scale > 1) ck_assert_int_eq(x->quantized_dimension, jint(t, "quantized_dimension"));
        ck_assert_int_eq(x->is_variable, jint(t, "is_variable"));
    }

    const cJSON *ins = jget(j, "inputs"), *outs = jget(j, "outputs");
    ck_assert_int_eq(m->n_inputs, cJSON_GetArraySize(ins));
    ck_assert_int_eq(m->inputs[0], ins->child->valueint);
    ck_assert_int_eq(m->n_outputs, cJSON_GetArraySize(outs));
    ck_assert_int_eq(m->outputs[0], outs->child->valueint);

    const cJSON *ops = jget(j, "operators");
    ck_assert_int_eq(m->n_operators, cJSON_GetArraySize(ops));
    i = 0;
    for (const cJSON *o = ops->child; o; o = o->next, i++) {
        const TfliteOperator *op = &m->operators[i];
        ck_assert_uint_eq(op->opcode_index, (unsigned)jint(o, "opcode_index"));
        ck_assert_int_eq(op->builtin, jint(o, "builtin"));
        const cJSON *oi = jget(o, "inputs"), *oo = jget(o, "outputs");
        ck_assert_int_eq(op->n_inputs, cJSON_GetArraySize(oi));
        for (int k = 0; k < op->n_inputs; k++) ck_assert_int_eq(op->inputs[k], cJSON_GetArrayItem(oi, k)->valueint);
        ck_assert_int_eq(op->n_outputs, cJSON_GetArraySize(oo));
        for (int k = 0; k < op->n_outputs; k++) ck_assert_int_eq(op->outputs[k], cJSON_GetArrayItem(oo, k)->valueint);
        ck_assert_int_eq(op->options_type, jint(o, "options_type"));
        ck_assert_int_eq(op->has_options, 1);
        const cJSON *opt = jget(o, "options");
        static const char *const ikeys[] = {"padding", "stride_w", "stride_h", "dilation_w", "dilation_h",
                                            "depth_multiplier", "filter_w", "filter_h", "activation"};
        const int ivals[] = {op->opt.padding, op->opt.stride_w, op->opt.stride_h, op->opt.dilation_w,
                             op->opt.dilation_h, op->opt.depth_multiplier, op->opt.filter_w, op->opt.filter_h,
                             op->opt.activation};
        for (int k = 0; k < 9; k++)
            if (cJSON_GetObjectItemCaseSensitive(opt, ikeys[k]))
                ck_assert_msg(ivals[k] == jint(opt, ikeys[k]), "operator %d %s = %d, expected %d", i, ikeys[k],
                              ivals[k], jint(opt, ikeys[k]));
        if (cJSON_GetObjectItemCaseSensitive(opt, "beta")) ck_assert(op->opt.beta == (float)jnum(opt, "beta"));
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(opt, "new_shape");
        if (ns) {
            ck_assert_int_eq(op->opt.n_new_shape, cJSON_GetArraySize(ns));
            for (int k = 0; k < op->opt.n_new_shape; k++)
                ck_assert_int_eq(op->opt.new_shape[k], cJSON_GetArrayItem(ns, k)->valueint);
        } else {
            ck_assert_int_eq(op->opt.n_new_shape, -1);
        }
    }
}

START_TEST(test_fixture_parsed)
{
    cJSON *j = facts();
    log_reset();
    TfliteModel *m = tflite_read(data_path("tiny.tflite"), 0);
    ck_assert_msg(m != NULL, "tiny.tflite rejected: %s", logbuf);
    check_against_facts(m, j);
    /* what the script's docstring says, independently of its JSON */
    ck_assert_int_eq(m->n_operators, 6);
    const int kinds[6] = {TFLITE_OP_CONV_2D, TFLITE_OP_DEPTHWISE_CONV_2D, TFLITE_OP_ADD, TFLITE_OP_AVERAGE_POOL_2D,
                          TFLITE_OP_RESHAPE, TFLITE_OP_SOFTMAX};
    for (int i = 0; i < 6; i++) ck_assert_str_eq(tflite_builtin_name(m->operators[i].builtin), tflite_builtin_name(kinds[i]));
    const TfliteTensor *w = &m->tensors[m->operators[0].inputs[1]];
    ck_assert_int_eq(w->type, TFLITE_UINT8);
    for (size_t i = 0; i < w->nbytes; i++) ck_assert_int_eq(w->data[i], (7 * i + 3) % 256);
    const TfliteTensor *dw = &m->tensors[m->operators[1].inputs[1]];
    for (size_t i = 0; i < dw->nbytes; i++) ck_assert_int_eq(dw->data[i], (11 * i + 5) % 256);
    ck_assert_int_eq(m->operator_codes[6].builtin, 150); /* extended code through builtin_code */
    ck_assert_str_eq(tflite_builtin_name(150), "GELU");
    ck_assert_int_eq(m->operators[0].opt.activation, TFLITE_ACT_RELU6);
    ck_assert_int_eq(m->operators[3].opt.padding, TFLITE_PADDING_VALID);
    ck_assert_int_eq(m->tensors[12].n_scale, 2);
    ck_assert_int_eq(m->tensors[12].zero_point[1], -1);
    ck_assert_int_eq(m->tensors[13].is_variable, 1);
    walk_model(m);

    /* the same bytes from memory */
    size_t n;
    uint8_t *bytes = fixture(&n);
    TfliteModel *m2 = tflite_parse("mem.tflite", bytes, n);
    ck_assert_ptr_nonnull(m2);
    check_against_facts(m2, j);
    ck_assert_str_eq(m2->path, "mem.tflite");
    tflite_free(m2);
    free(bytes);
    tflite_free(m);
    tflite_free(NULL);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(tflite_builtin_name(TFLITE_OP_CONV_2D), "CONV_2D");
    ck_assert_str_eq(tflite_builtin_name(TFLITE_OP_DEPTHWISE_CONV_2D), "DEPTHWISE_CONV_2D");
    ck_assert_str_eq(tflite_builtin_name(TFLITE_OP_SOFTMAX), "SOFTMAX");
    ck_assert_str_eq(tflite_builtin_name(TFLITE_OP_QUANTIZE), "QUANTIZE");
    ck_assert_str_eq(tflite_builtin_name(161), "RIGHT_SHIFT");
    ck_assert_str_eq(tflite_builtin_name(162), "unknown builtin");
    ck_assert_str_eq(tflite_builtin_name(-1), "unknown builtin");
    ck_assert_str_eq(tflite_type_name(TFLITE_UINT8), "UINT8");
    ck_assert_str_eq(tflite_type_name(TFLITE_BFLOAT16), "BFLOAT16");
    ck_assert_str_eq(tflite_type_name(99), "?");
    ck_assert_uint_eq(tflite_type_size(TFLITE_INT32), 4);
    ck_assert_uint_eq(tflite_type_size(TFLITE_STRING), 0);
    ck_assert_str_eq(tflite_activation_name(TFLITE_ACT_RELU6), "RELU6");
}
END_TEST

/* ---- rejection ---- */

START_TEST(test_every_truncation)
{
    size_t n;
    uint8_t *bytes = fixture(&n);
    for (size_t len = 0; len < n; len++) {
        log_reset();
        uint8_t *copy = malloc(len ? len : 1); /* exact size so ASan sees a read past the end */
        memcpy(copy, bytes, len);
        TfliteModel *m = tflite_parse("cut.tflite", copy, len);
        ck_assert_msg(m == NULL, "the fixture cut to %zu of %zu bytes was accepted", len, n);
        ck_assert_msg(strstr(logbuf, "cut.tflite: "), "no message naming the file for length %zu: %s", len, logbuf);
        free(copy);
    }
    free(bytes);
}
END_TEST

START_TEST(test_random_changes)
{
    size_t n;
    uint8_t *bytes = fixture(&n), *copy = malloc(n);
    SacRng rng;
    sac_rng_seed(&rng, 20261130, 7);
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(copy, bytes, n);
        int flips = 1 + (int)sac_rng_below(&rng, 4);
        for (int f = 0; f < flips; f++) {
            size_t at = sac_rng_below(&rng, (uint32_t)n);
            /* half the time a bit flip, else a byte from a set that makes offsets and lengths extreme */
            static const uint8_t extreme[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe};
            if (sac_rng_below(&rng, 2)) copy[at] ^= (uint8_t)(1u << sac_rng_below(&rng, 8));
            else copy[at] = extreme[sac_rng_below(&rng, sizeof(extreme))];
        }
        log_reset();
        TfliteModel *m = tflite_parse("mutant.tflite", copy, n);
        if (m) {
            walk_model(m);
            accepted++;
        } else {
            ck_assert_msg(strstr(logbuf, "mutant.tflite: "), "rejection without a message naming the file");
            rejected++;
        }
        tflite_free(m);
    }
    printf("random changes: %d parsed, %d rejected\n", accepted, rejected);
    ck_assert_int_gt(rejected, 100); /* the mutations reach fields the reader checks */
    ck_assert_int_gt(accepted, 100); /* and many land in data bytes the reader need not reject */
    free(copy);
    free(bytes);
}
END_TEST

typedef struct {
    const char *what;
    const char *pos_key; /* position in tiny_tflite.json "positions", or NULL for an absolute offset */
    long add;            /* added to the position */
    int width;           /* 1 or 4 bytes */
    long value;          /* written there; a value of LONG_MIN means "file size + add2" */
    const char *message; /* must appear in the error */
} Patch;

START_TEST(test_hand_made_bad_files)
{
    cJSON *j = facts();
    const cJSON *pos = jget(j, "positions");
    size_t n;
    uint8_t *bytes = fixture(&n);
    const long size = (long)n;
    const long t1 = jint(pos, "tensor1");
    const Patch patches[] = {
        {"root offset past the end", NULL, 0, 4, size + 8, "table at offset"},
        {"identifier", NULL, 4, 1, 'X', "expected the identifier 'TFL3' at byte 4, found 'XFL3'"},
        {"tensor name offset past the end", "tensor1.name", 0, 4, size, "tensor 1: 'name' points to offset"},
        {"vtable past the end", "tensor1", 0, 4, t1 - size - 64, "tensor 1: vtable at offset"},
        {"vtable before the start", "tensor1", 0, 4, t1 + 4, "tensor 1: vtable at offset -4"},
        {"tensors vector length overflow", "tensors", 0, 4, 0xffffffffL, "'tensors' has 4294967295 elements"},
        {"tensors vector length past the end", "tensors", 0, 4, 0x100000L, "'tensors' has 1048576 elements"},
        {"buffer index out of range", "tensor1.buffer", 0, 4, 300,
         "tensor 1 'conv/weights' names buffer 300, file has 8 buffers"},
        {"negative dim", "tensor1.shape", 4, 4, -3, "tensor 1 'conv/weights' has shape [-3,3,3,3]: dimension 0 is negative"},
        {"rank too high", "tensor1.shape", 0, 4, 9, "tensor 1 'conv/weights' has rank 9, at most 8 supported"},
        {"schema version 2", "model.version", 0, 4, 2, "schema version 2, expected 3"},
        {"unknown tensor type", "tensor1.type", 0, 1, 99, "tensor 1 'conv/weights' has type 99, expected a TensorType"},
        {"data size mismatch", "tensor1.type", 0, 1, TFLITE_INT32,
         "tensor 1 'conv/weights' has 108 bytes of data in buffer 1, expected 432 (shape [4,3,3,3] x 4-byte INT32)"},
        {"opcode index out of range", "op1.opcode_index", 0, 4, 99, "operator 1 names operator code 99, file has 8"},
        {"operator input out of range", "op1.inputs", 4, 4, 500,
         "operator 1 (DEPTHWISE_CONV_2D): inputs[0] = 500, expected a tensor index in 0..13 or -1"},
        {"operator input below -1", "op1.inputs", 4, 4, -2, "inputs[0] = -2"},
        {"stride 0", "op0.options.stride_w", 0, 4, 0, "operator 0 (CONV_2D): stride 0x2, expected >= 1"},
        {"activation out of range", "op0.options.activation", 0, 1, 9,
         "operator 0 (CONV_2D): fused_activation_function 9"},
        {"negative builtin code", "opcode1.builtin_code", 0, 4, -5, "operator code 1: builtin_code -5"},
        {"negative deprecated code", "opcode1.deprecated", 0, 1, 0xf0, "deprecated_builtin_code -16 is negative"},
        {"description without NUL", "description", 0, 4, 28, "has no NUL terminator inside the file"},
    };
    for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
        const Patch *p = &patches[i];
        uint8_t *copy = malloc(n);
        memcpy(copy, bytes, n);
        long at = (p->pos_key ? jint(pos, p->pos_key) : 0) + p->add;
        ck_assert_msg(at >= 0 && at + p->width <= size, "%s: bad patch position %ld", p->what, at);
        if (p->width == 4) put32(copy + at, (uint32_t)p->value);
        else copy[at] = (uint8_t)p->value;
        const char *path = tmp_path("bad.tflite");
        write_bytes(path, copy, n);
        log_reset();
        TfliteModel *m = tflite_read(path, 0);
        ck_assert_msg(m == NULL, "%s: accepted", p->what);
        ck_assert_msg(strstr(logbuf, path) && strstr(logbuf, p->message), "%s: expected '%s: ... %s', got: %s",
                      p->what, path, p->message, logbuf);
        free(copy);
    }
    /* a name with an escape character is printed without it */
    uint8_t *copy = malloc(n);
    memcpy(copy, bytes, n);
    const long name_field = jint(pos, "tensor1.name");
    copy[name_field + get32(bytes + name_field) + 4] = 0x1b;
    copy[jint(pos, "tensor1.type")] = 99;
    log_reset();
    ck_assert_ptr_null(tflite_parse("esc.tflite", copy, n));
    ck_assert_log_has("esc.tflite: tensor 1 '?onv/weights' has type 99");
    ck_assert_msg(!strchr(logbuf, 0x1b), "an escape character reached the message");
    free(copy);
    /* the patched field really is what the positions say: the unpatched values */
    ck_assert_uint_eq(get32(bytes + jint(pos, "tensor1.buffer")), 1);
    ck_assert_uint_eq(get32(bytes + jint(pos, "op1.opcode_index")), 1);
    free(bytes);
    cJSON_Delete(j);
}
END_TEST

/* FlatBuffers lets every element of a vector point at one shared table: 100,000 tensors sharing
 * one 1000-byte name would make a 400 KB file ask for 100 MB. The reader caps what a file may
 * make it allocate (8 x its size + 1 MiB). */
START_TEST(test_shared_table_amplification)
{
    cJSON *j = facts();
    size_t n;
    uint8_t *bytes = fixture(&n);
    const uint32_t count = 100000, name_len = 1000;
    size_t vec = (n + 3) & ~(size_t)3, vt = vec + 4 + 4 * (size_t)count, table = vt + 12, str = table + 8;
    size_t total = str + 4 + name_len + 1;
    uint8_t *big = calloc(total, 1);
    memcpy(big, bytes, n);
    put32(big + vec, count);
    for (uint32_t i = 0; i < count; i++) put32(big + vec + 4 + 4 * i, (uint32_t)(table - (vec + 4 + 4 * i)));
    const uint16_t vtable[6] = {12, 8, 0, 0, 0, 4}; /* vtable size, table size, fields 0..3: only the name */
    for (int i = 0; i < 6; i++) big[vt + 2 * i] = (uint8_t)vtable[i], big[vt + 2 * i + 1] = (uint8_t)(vtable[i] >> 8);
    put32(big + table, (uint32_t)(table - vt));
    put32(big + table + 4, (uint32_t)(str - (table + 4)));
    put32(big + str, name_len);
    memset(big + str + 4, 'a', name_len);
    /* the subgraph's tensors field now points at the new vector */
    const size_t field = (size_t)jint(jget(j, "positions"), "subgraph.tensors");
    put32(big + field, (uint32_t)(vec - field));
    log_reset();
    ck_assert_ptr_null(tflite_parse("shared.tflite", big, total));
    ck_assert_log_has("shared.tflite: ");
    ck_assert_log_has("the file describes more than");
    /* the same file with 100 tensors is fine: the construction itself is valid */
    put32(big + vec, 100);
    log_reset();
    TfliteModel *m = tflite_parse("shared.tflite", big, total);
    ck_assert_msg(m != NULL, "%s", logbuf);
    ck_assert_int_eq(m->n_tensors, 100);
    ck_assert_uint_eq(strlen(m->tensors[99].name), name_len);
    tflite_free(m);
    free(big);
    free(bytes);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_read_limits)
{
    size_t n;
    uint8_t *bytes = fixture(&n);
    log_reset();
    ck_assert_ptr_null(tflite_read(data_path("tiny.tflite"), n - 1));
    ck_assert_log_has("bytes, expected at most");
    TfliteModel *m = tflite_read(data_path("tiny.tflite"), n);
    ck_assert_ptr_nonnull(m);
    tflite_free(m);
    log_reset();
    ck_assert_ptr_null(tflite_read(tmpdir, 0));
    ck_assert_log_has("expected a regular file");
    log_reset();
    ck_assert_ptr_null(tflite_read(tmp_path("missing.tflite"), 0));
    ck_assert_log_has("missing.tflite: no such file");
    log_reset();
    ck_assert_ptr_null(tflite_parse("short.tflite", bytes, 7));
    ck_assert_log_has("short.tflite: 7 bytes, too short");
    free(bytes);
}
END_TEST

START_TEST(test_fixture_is_not_mobilenet)
{
    log_reset();
    TfliteModel *m = tflite_read(data_path("tiny.tflite"), 0);
    ck_assert_ptr_nonnull(m);
    SafeTensorsWriter *w = safetensors_writer_create();
    BackboneImportReport rep;
    ck_assert_int_ne(backbone_from_tflite(m, w, &rep), 0);
    ck_assert_log_has("operator 0 (CONV_2D, input): input tensor 0 'input' has shape [1,4,4,3], expected [1,224,224,3]");
    /* an op outside the six kinds is refused by name before anything else */
    m->operators[4].builtin = TFLITE_OP_MUL;
    log_reset();
    ck_assert_int_eq(backbone_from_tflite(m, w, &rep), SAC_ERR_UNSUPPORTED);
    ck_assert_log_has("tiny.tflite: operator 4 is MUL (builtin 18): a MobileNetV2 import handles only CONV_2D");
    safetensors_writer_free(w);
    tflite_free(m);
}
END_TEST

/* ---- sha256, the layer table ---- */

START_TEST(test_sha256)
{
    char hex[65];
    sac_sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sac_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sac_sha256_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces */
    SacSha256 s;
    uint8_t d[32];
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sac_sha256_init(&s);
    for (size_t at = 0, step = 1; at < 1000000; at += step, step = step * 3 % 1000 + 1)
        sac_sha256_update(&s, a + at, at + step > 1000000 ? 1000000 - at : step);
    sac_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}
END_TEST

START_TEST(test_layer_table)
{
    BackboneLayer L[BACKBONE_N_LAYERS];
    backbone_layers(L, 1000);
    int roles[6] = {0}, residual = 0, stride2 = 0;
    int64_t params = 0;
    for (int i = 0; i < BACKBONE_N_LAYERS; i++) {
        roles[L[i].role]++;
        residual += L[i].residual;
        stride2 += L[i].stride == 2;
        int64_t n = L[i].cout;
        for (int d = 0; d < L[i].wndim; d++) n *= L[i].wshape[d];
        params += n / L[i].cout + L[i].cout; /* weights + bias */
        if (i > 0 && L[i].role != BACKBONE_CLASSIFIER) ck_assert_int_eq(L[i].cin, L[i - 1].cout);
    }
    ck_assert_int_eq(roles[BACKBONE_FIRST], 1);
    ck_assert_int_eq(roles[BACKBONE_EXPAND], 16);
    ck_assert_int_eq(roles[BACKBONE_DEPTHWISE], 17);
    ck_assert_int_eq(roles[BACKBONE_PROJECT], 17);
    ck_assert_int_eq(roles[BACKBONE_LAST], 1);
    ck_assert_int_eq(roles[BACKBONE_CLASSIFIER], 1);
    ck_assert_int_eq(residual, 10);
    ck_assert_int_eq(stride2, 5); /* 224 -> 7 */
    /* torchvision mobilenet_v2: 3,504,872 parameters, of which 2 x 17,056 batchnorm scales and shifts
     * (34,112) go and 17,056 conv biases come with folding: 3,504,872 - 17,056 = 3,487,816 */
    ck_assert_int_eq(params, 3487816);
    ck_assert_str_eq(L[0].name, "features.0.0");
    ck_assert_str_eq(L[0].bn, "features.0.1");
    ck_assert_str_eq(L[1].name, "features.1.conv.0.0");
    ck_assert_str_eq(L[2].name, "features.1.conv.1");
    ck_assert_str_eq(L[2].bn, "features.1.conv.2");
    ck_assert_str_eq(L[3].name, "features.2.conv.0.0");
    ck_assert_str_eq(L[4].name, "features.2.conv.1.0");
    ck_assert_str_eq(L[5].name, "features.2.conv.2");
    ck_assert_str_eq(L[5].bn, "features.2.conv.3");
    ck_assert_int_eq(L[5].cout, 24);
    ck_assert_int_eq(L[8].residual, 1); /* features.3: 24 -> 24, stride 1 */
    ck_assert_str_eq(L[51].name, "features.18.0");
    ck_assert_str_eq(L[52].name, "classifier.1");
    ck_assert_int_eq(L[52].wshape[0], 1000);
    ck_assert_int_eq(L[52].wshape[1], 1280);
}
END_TEST

/* ---- the torchvision path ---- */

typedef struct {
    float *w, *gamma, *beta, *mean, *var;
} RefLayer;

/* A full-size torchvision mobilenet_v2 state dict of seeded random values at `path`; the layer
 * values are kept in ref (caller frees). `mutate`: 0 none, 1 an extra tensor, 2 no running_var in
 * features.5, 3 a negative variance. */
static void write_state_dict(const char *path, RefLayer ref[BACKBONE_N_LAYERS], int mutate)
{
    BackboneLayer L[BACKBONE_N_LAYERS];
    backbone_layers(L, 1000);
    SafeTensorsWriter *w = safetensors_writer_create();
    SacRng rng;
    sac_rng_seed(&rng, 42, 3);
    char name[64];
    for (int i = 0; i < BACKBONE_N_LAYERS; i++) {
        const int C = L[i].cout;
        size_t n = (size_t)C;
        for (int d = 1; d < L[i].wndim; d++) n *= (size_t)L[i].wshape[d];
        RefLayer *r = &ref[i];
        r->w = malloc(sizeof(float) * n);
        for (size_t k = 0; k < n; k++) r->w[k] = 0.2f * sac_rng_normal(&rng);
        snprintf(name, sizeof(name), "%.31s.weight", L[i].name);
        ck_assert_int_eq(safetensors_writer_add_f32(w, name, L[i].wndim, L[i].wshape, r->w, SAC_DTYPE_F32), 0);
        const int64_t cs[1] = {C};
        r->gamma = malloc(sizeof(float) * C), r->beta = malloc(sizeof(float) * C);
        r->mean = malloc(sizeof(float) * C), r->var = malloc(sizeof(float) * C);
        for (int c = 0; c < C; c++) {
            r->gamma[c] = 0.5f + sac_rng_uniform(&rng);
            r->beta[c] = sac_rng_normal(&rng);
            r->mean[c] = 0.3f * sac_rng_normal(&rng);
            r->var[c] = 0.01f + 2 * sac_rng_uniform(&rng);
        }
        if (L[i].role == BACKBONE_CLASSIFIER) {
            ck_assert_int_eq(safetensors_writer_add_f32(w, "classifier.1.bias", 1, cs, r->beta, SAC_DTYPE_F32), 0);
            continue;
        }
        if (mutate == 3 && i == 10) r->var[3] = -0.5f;
        const float *vals[4] = {r->gamma, r->beta, r->mean, r->var};
        static const char *const keys[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int k = 0; k < 4; k++) {
            if (mutate == 2 && k == 3 && !strcmp(L[i].bn, "features.5.conv.0.1")) continue;
            snprintf(name, sizeof(name), "%s.%s", L[i].bn, keys[k]);
            ck_assert_int_eq(safetensors_writer_add_f32(w, name, 1, cs, vals[k], SAC_DTYPE_F32), 0);
        }
        int64_t tracked = 1234;
        snprintf(name, sizeof(name), "%s.num_batches_tracked", L[i].bn);
        ck_assert_int_eq(safetensors_writer_add_raw(w, name, SAC_DTYPE_I64, 0, NULL, &tracked), 0);
    }
    if (mutate == 1) {
        const int64_t s[1] = {4};
        const float v[4] = {0};
        ck_assert_int_eq(safetensors_writer_add_f32(w, "features.19.0.weight", 1, s, v, SAC_DTYPE_F32), 0);
    }
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    safetensors_writer_free(w);
}

static void free_ref(RefLayer ref[BACKBONE_N_LAYERS])
{
    for (int i = 0; i < BACKBONE_N_LAYERS; i++)
        free(ref[i].w), free(ref[i].gamma), free(ref[i].beta), free(ref[i].mean), free(ref[i].var);
}

static float tensor_at(const SafeTensors *st, const char *name, size_t i)
{
    const SafeTensor *t = safetensors_find(st, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    ck_assert_uint_lt(i, t->nbytes / 4);
    float v;
    memcpy(&v, t->data + 4 * i, 4);
    return v;
}

START_TEST(test_state_dict_import)
{
    RefLayer ref[BACKBONE_N_LAYERS];
    char src[400], out[400], labels[400]; /* tmp_path's buffers are reused */
    snprintf(src, sizeof(src), "%s", tmp_path("tv.safetensors"));
    snprintf(out, sizeof(out), "%s", tmp_path("tv_backbone.safetensors"));
    snprintf(labels, sizeof(labels), "%s", tmp_path("labels.txt"));
    write_state_dict(src, ref, 0);
    FILE *f = fopen(labels, "w");
    for (int i = 0; i < 1000; i++) fprintf(f, "class %d\r\n", i);
    fclose(f);
    BackboneImportOptions opt = {labels, NULL};
    BackboneImportReport rep;
    log_reset();
    ck_assert_msg(backbone_import(src, out, &opt, &rep) == 0, "import failed: %s", logbuf);
    ck_assert_str_eq(rep.kind, "torchvision state dict");
    ck_assert_int_eq(rep.n_tensors, 2 * BACKBONE_N_LAYERS);
    ck_assert_int_eq(rep.n_params, 3487816);
    ck_assert_int_eq(rep.n_classes, 1000);
    size_t n;
    uint8_t *srcbytes = read_bytes(src, &n);
    char hex[65];
    sac_sha256_hex(srcbytes, n, hex);
    free(srcbytes);
    ck_assert_str_eq(rep.sha256, hex);

    BackboneInfo info;
    SafeTensors *st = backbone_file_open(out, &info);
    ck_assert_msg(st != NULL, "the written file fails its check: %s", logbuf);
    ck_assert_int_eq(info.n_classes, 1000);
    ck_assert_int_eq(info.padding_same, 0);
    ck_assert_int_eq(info.n_labels, 1000);
    ck_assert_int_eq(info.input_size, 224);
    ck_assert(info.mean[0] == 0.485f && info.mean[2] == 0.406f && info.std[1] == 0.224f);
    ck_assert_str_eq(safetensors_meta(st, "padding"), "symmetric");
    ck_assert_str_eq(safetensors_meta(st, "license"), "unknown, see source");
    ck_assert_str_eq(safetensors_meta(st, "source"), "tv.safetensors");
    ck_assert_str_eq(safetensors_meta(st, "source_sha256"), hex);
    ck_assert_str_eq(safetensors_meta(st, "format"), "saccade-backbone-1");
    ck_assert(!strncmp(safetensors_meta(st, "converted_by"), "saccade ", 8));
    char label[64];
    ck_assert_int_eq(backbone_file_label(st, 999, label, sizeof(label)), 0);
    ck_assert_str_eq(label, "class 999"); /* the \r went */
    ck_assert_int_eq(backbone_file_label(st, 1000, label, sizeof(label)), SAC_ERR_NOTFOUND);

    /* folding, recomputed here in double: w' = w g / sqrt(v + 1e-5), b' = beta - mean g / sqrt(v + 1e-5) */
    BackboneLayer L[BACKBONE_N_LAYERS];
    backbone_layers(L, 1000);
    const int layers[] = {0, 1, 2, 4, 17, 50, 51};
    SacRng rng;
    sac_rng_seed(&rng, 5, 5);
    for (size_t li = 0; li < sizeof(layers) / sizeof(layers[0]); li++) {
        const BackboneLayer *l = &L[layers[li]];
        const RefLayer *r = &ref[layers[li]];
        const size_t per = (size_t)(l->wshape[1] * l->wshape[2] * l->wshape[3]);
        char wn[64], bn[64];
        snprintf(wn, sizeof(wn), "%s.weight", l->name);
        snprintf(bn, sizeof(bn), "%s.bias", l->name);
        for (int k = 0; k < 20; k++) {
            const int c = (int)sac_rng_below(&rng, (uint32_t)l->cout);
            const size_t e = (size_t)c * per + sac_rng_below(&rng, (uint32_t)per);
            const double s = (double)r->gamma[c] / sqrt((double)r->var[c] + 1e-5);
            const double want_w = r->w[e] * s, want_b = r->beta[c] - (double)r->mean[c] * s;
            const float got_w = tensor_at(st, wn, e), got_b = tensor_at(st, bn, (size_t)c);
            ck_assert_msg(fabs(got_w - want_w) <= 1e-6 * fabs(want_w) + 1e-9, "%s[%zu] = %.9g, expected %.9g", wn, e,
                          got_w, want_w);
            ck_assert_msg(fabs(got_b - want_b) <= 1e-6 * fabs(want_b) + 1e-9, "%s[%d] = %.9g, expected %.9g", bn, c,
                          got_b, want_b);
        }
    }
    /* the classifier is copied as it is */
    ck_assert(tensor_at(st, "classifier.1.weight", 12345) == ref[52].w[12345]);
    ck_assert(tensor_at(st, "classifier.1.bias", 999) == ref[52].beta[999]);
    safetensors_free(st);

    /* --license, and the output over the source is refused */
    BackboneImportOptions lic = {NULL, "CC-BY-4.0"};
    ck_assert_int_eq(backbone_import(src, out, &lic, &rep), 0);
    st = backbone_file_open(out, &info);
    ck_assert_str_eq(safetensors_meta(st, "license"), "CC-BY-4.0");
    ck_assert_str_eq(safetensors_meta(st, "labels"), "[]");
    ck_assert_int_eq(info.n_labels, 0);
    safetensors_free(st);
    log_reset();
    ck_assert_int_eq(backbone_import(src, src, NULL, &rep), SAC_ERR_INVALID);
    ck_assert_log_has("refusing to overwrite it");
    ck_assert_int_eq(access(tmp_path("tv_backbone.safetensors.importing"), F_OK), -1);

    /* wrong number of labels */
    f = fopen(labels, "w");
    fprintf(f, "one\ntwo\n");
    fclose(f);
    log_reset();
    ck_assert_int_ne(backbone_import(src, tmp_path("never.safetensors"), &opt, &rep), 0);
    ck_assert_log_has("labels.txt: 2 lines, expected one name for each of the model's 1000 classes");
    ck_assert_int_eq(access(tmp_path("never.safetensors"), F_OK), -1);
    free_ref(ref);
}
END_TEST

START_TEST(test_state_dict_rejects)
{
    static const char *const messages[] = {
        "unexpected tensor 'features.19.0.weight': not part of torchvision's mobilenet_v2",
        "features.5.conv.0.1.running_var",
        "'features.4.conv.1.1' channel 3: gamma",
    };
    for (int mutate = 1; mutate <= 3; mutate++) {
        RefLayer ref[BACKBONE_N_LAYERS];
        char src[400], out[400];
        snprintf(src, sizeof(src), "%s", tmp_path("bad_tv.safetensors"));
        snprintf(out, sizeof(out), "%s", tmp_path("bad_backbone.safetensors"));
        write_state_dict(src, ref, mutate);
        log_reset();
        ck_assert_int_ne(backbone_import(src, out, NULL, NULL), 0);
        ck_assert_msg(strstr(logbuf, "bad_tv.safetensors") && strstr(logbuf, messages[mutate - 1]),
                      "mutation %d: expected '%s', got %s", mutate, messages[mutate - 1], logbuf);
        ck_assert_int_eq(access(out, F_OK), -1);
        free_ref(ref);
    }
    log_reset();
    ck_assert_int_ne(backbone_import(data_path("tiny_tflite.json"), tmp_path("x.safetensors"), NULL, NULL), 0);
    ck_assert_log_has("neither a TFLite file");
}
END_TEST

/* Copy a backbone file into `path` with one change: drop tensor `drop`, put a NaN into `nan`,
 * or set metadata key to value. */
static void rewrite(const SafeTensors *st, const char *path, const char *drop, const char *nan, const char *key,
                    const char *value)
{
    SafeTensorsWriter *w = safetensors_writer_create();
    for (int i = 0; i < safetensors_count(st); i++) {
        const SafeTensor *t = safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        float *v = malloc(t->nbytes);
        memcpy(v, t->data, t->nbytes);
        if (nan && !strcmp(t->name, nan)) v[7] = NAN;
        ck_assert_int_eq(safetensors_writer_add_f32(w, t->name, t->ndim, t->shape, v, SAC_DTYPE_F32), 0);
        free(v);
    }
    for (int i = 0; i < safetensors_meta_count(st); i++) {
        const char *k, *v;
        safetensors_meta_at(st, i, &k, &v);
        ck_assert_int_eq(safetensors_writer_meta(w, k, key && !strcmp(k, key) ? value : v), 0);
    }
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    safetensors_writer_free(w);
}

START_TEST(test_backbone_check_rejects)
{
    RefLayer ref[BACKBONE_N_LAYERS];
    char src[400], good[400];
    snprintf(src, sizeof(src), "%s", tmp_path("tv2.safetensors"));
    snprintf(good, sizeof(good), "%s", tmp_path("good.safetensors"));
    write_state_dict(src, ref, 0);
    free_ref(ref);
    ck_assert_int_eq(backbone_import(src, good, NULL, NULL), 0);
    SafeTensors *st = backbone_file_open(good, NULL);
    ck_assert_ptr_nonnull(st);
    static const struct {
        const char *drop, *nan, *key, *value, *message;
    } cases[] = {
        {"features.7.conv.1.0.bias", NULL, NULL, NULL, "tensor 'features.7.conv.1.0.bias' is missing"},
        {NULL, "features.3.conv.2.weight", NULL, NULL, "tensor 'features.3.conv.2.weight' element 7 is nan"},
        {NULL, NULL, "format", "saccade-backbone-0", "metadata \"format\" is \"saccade-backbone-0\", expected \"saccade-backbone-1\""},
        {NULL, NULL, "padding", "valid", "metadata \"padding\" is \"valid\", expected \"same\" or \"symmetric\""},
        {NULL, NULL, "std", "[0.5,0,0.5]", "metadata \"std\" is \"[0.5,0,0.5]\", expected a JSON array of 3 finite numbers > 0"},
        {NULL, NULL, "n_classes", "1001", "tensor 'classifier.1.weight' has shape [1000,1280], expected [1001,1280]"},
        {NULL, NULL, "labels", "[\"a\",\"b\"]", "metadata \"labels\" has 2 names, expected 1000 (n_classes) or none"},
        {NULL, NULL, "source_sha256", "abc", "metadata \"source_sha256\" is \"abc\", expected 64 lowercase hex digits"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = tmp_path("broken.safetensors");
        rewrite(st, path, cases[i].drop, cases[i].nan, cases[i].key, cases[i].value);
        log_reset();
        ck_assert_ptr_null(backbone_file_open(path, NULL));
        ck_assert_msg(strstr(logbuf, path) && strstr(logbuf, cases[i].message), "case %zu: expected '%s', got %s", i,
                      cases[i].message, logbuf);
    }
    /* an extra tensor */
    SafeTensorsWriter *w = safetensors_writer_create();
    for (int i = 0; i < safetensors_count(st); i++) {
        const SafeTensor *t = safetensors_at(st, i);
        safetensors_writer_add_raw(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int i = 0; i < safetensors_meta_count(st); i++) {
        const char *k, *v;
        safetensors_meta_at(st, i, &k, &v);
        safetensors_writer_meta(w, k, v);
    }
    const int64_t s1[1] = {1};
    const float one = 1;
    safetensors_writer_add_f32(w, "features.0.1.weight", 1, s1, &one, SAC_DTYPE_F32);
    ck_assert_int_eq(safetensors_writer_write(w, tmp_path("extra.safetensors")), 0);
    safetensors_writer_free(w);
    log_reset();
    ck_assert_ptr_null(backbone_file_open(tmp_path("extra.safetensors"), NULL));
    ck_assert_log_has("unexpected tensor 'features.0.1.weight'");
    safetensors_free(st);
}
END_TEST

/* ---- the real model (pretrained suite) ---- */

static char real_path[512], labels_path[512];

static TfliteModel *real_model(void)
{
    log_reset();
    TfliteModel *m = tflite_read(real_path, 0);
    ck_assert_msg(m != NULL, "%s rejected: %s", real_path, logbuf);
    return m;
}

START_TEST(test_real_parse)
{
    size_t n;
    uint8_t *bytes = read_bytes(real_path, &n);
    char hex[65];
    sac_sha256_hex(bytes, n, hex);
    free(bytes);
    ck_assert_str_eq(hex, "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776");
    TfliteModel *m = real_model();
    ck_assert_uint_eq(m->version, 3);
    ck_assert_int_eq(m->n_subgraphs, 1);
    ck_assert_int_eq(m->n_operators, 66);
    ck_assert_int_eq(m->n_tensors, 174);
    ck_assert_int_eq(m->n_buffers, 177);
    int count[200] = {0};
    for (int i = 0; i < m->n_operators; i++) count[m->operators[i].builtin]++;
    ck_assert_int_eq(count[TFLITE_OP_CONV_2D] + count[TFLITE_OP_DEPTHWISE_CONV_2D], 53);
    ck_assert_int_eq(count[TFLITE_OP_DEPTHWISE_CONV_2D], 17);
    ck_assert_int_eq(count[TFLITE_OP_ADD], 10);
    ck_assert_int_eq(count[TFLITE_OP_AVERAGE_POOL_2D] + count[TFLITE_OP_RESHAPE] + count[TFLITE_OP_SOFTMAX], 3);
    const TfliteTensor *in = &m->tensors[m->inputs[0]];
    ck_assert_int_eq(in->type, TFLITE_UINT8);
    ck_assert_int_eq(in->ndim, 4);
    ck_assert_int_eq(in->shape[1], 224);
    ck_assert(in->n_scale == 1 && in->scale[0] == 0.0078125f && in->zero_point[0] == 128);
    /* the first conv's weights, as a hex dump of the file shows them */
    const TfliteTensor *w0 = &m->tensors[m->operators[0].inputs[1]];
    ck_assert_str_eq(w0->name, "MobilenetV2/Conv/Conv2D_Fold;MobilenetV2/Conv/weights_quant/FakeQuantWithMinMaxVars");
    ck_assert_int_eq(w0->shape[0], 32);
    ck_assert_int_eq(w0->shape[3], 3);
    ck_assert_uint_eq(w0->nbytes, 864);
    ck_assert_int_eq(w0->zero_point[0], 122);
    ck_assert_msg(fabs(w0->scale[0] - 0.0339689255) < 1e-9, "scale %.9g", w0->scale[0]);
    ck_assert_int_eq(m->operators[0].opt.stride_w, 2);
    ck_assert_int_eq(m->operators[0].opt.activation, TFLITE_ACT_RELU6);
    ck_assert_int_eq(m->operators[2].opt.activation, TFLITE_ACT_NONE);
    walk_model(m);
    tflite_free(m);
}
END_TEST

static int32_t i32_at(const uint8_t *p) { return (int32_t)get32(p); }

START_TEST(test_real_convert)
{
    TfliteModel *m = real_model();
    SafeTensorsWriter *w = safetensors_writer_create();
    BackboneImportReport rep;
    log_reset();
    ck_assert_msg(backbone_from_tflite(m, w, &rep) == 0, "conversion failed: %s", logbuf);
    ck_assert_int_eq(rep.n_operators, 66);
    ck_assert_int_eq(rep.n_convs, 53);
    ck_assert_int_eq(rep.n_bias_checked, 53);
    ck_assert_int_eq(rep.n_bias_mismatch, 0);
    ck_assert_int_eq(rep.n_classes, 1001);
    ck_assert_int_eq(rep.n_tensors, 106);
    ck_assert_int_eq(rep.n_params, 3487816 - 1000 * 1281 + 1001 * 1281);
    ck_assert_msg(!strstr(logbuf, "bias scale"), "unexpected warning: %s", logbuf);
    const char *path = tmp_path("real.safetensors");
    safetensors_writer_meta(w, "format", BACKBONE_FORMAT);
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    safetensors_writer_free(w);
    SafeTensors *st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(safetensors_meta(st, "padding"), "same");
    ck_assert_str_eq(safetensors_meta(st, "mean"), "[0.5,0.5,0.5]");

    /* dequantized by hand from the raw bytes: first conv (OHWI [32,3,3,3] -> OIHW) */
    const TfliteOperator *op0 = &m->operators[0];
    const TfliteTensor *w0 = &m->tensors[op0->inputs[1]], *b0 = &m->tensors[op0->inputs[2]];
    const int o = 5, i = 2, y = 1, x = 0;
    double want = w0->scale[0] * ((int)w0->data[((o * 3 + y) * 3 + x) * 3 + i] - (int)w0->zero_point[0]);
    ck_assert_msg(fabs(tensor_at(st, "features.0.0.weight", (size_t)((o * 3 + i) * 3 + y) * 3 + x) - want) < 1e-7,
                  "features.0.0.weight[5,2,1,0]");
    /* its bias: int32 x input scale (1/128) x weight scale */
    want = i32_at(b0->data + 4 * 3) * (1.0 / 128) * w0->scale[0];
    ck_assert_msg(fabs(tensor_at(st, "features.0.0.bias", 3) - want) <= 1e-6 * fabs(want), "features.0.0.bias[3]");
    /* block 1 depthwise ([1,3,3,32] -> (32,1,3,3)), channel 7, y 2, x 1 */
    const TfliteTensor *w1 = &m->tensors[m->operators[1].inputs[1]];
    want = w1->scale[0] * ((int)w1->data[(2 * 3 + 1) * 32 + 7] - (int)w1->zero_point[0]);
    ck_assert_msg(fabs(tensor_at(st, "features.1.conv.0.0.weight", 7 * 9 + 2 * 3 + 1) - want) < 1e-7,
                  "features.1.conv.0.0.weight[7,0,2,1]");
    /* the classifier, from the Logits conv (operator 63) [1001,1,1,1280] */
    const TfliteTensor *wc = &m->tensors[m->operators[63].inputs[1]];
    ck_assert_int_eq(wc->shape[0], 1001);
    want = wc->scale[0] * ((int)wc->data[(size_t)1000 * 1280 + 1279] - (int)wc->zero_point[0]);
    ck_assert_msg(fabs(tensor_at(st, "classifier.1.weight", (size_t)1000 * 1280 + 1279) - want) < 1e-7,
                  "classifier.1.weight[1000,1279]");
    want = wc->scale[0] * ((int)wc->data[285 * 1280 + 17] - (int)wc->zero_point[0]);
    ck_assert_msg(fabs(tensor_at(st, "classifier.1.weight", 285 * 1280 + 17) - want) < 1e-7, "classifier[285,17]");
    /* features.18 (Conv_1, operator 61): [1280,1,1,320] */
    const TfliteTensor *wl = &m->tensors[m->operators[61].inputs[1]];
    ck_assert_int_eq(wl->shape[0], 1280);
    want = wl->scale[0] * ((int)wl->data[(size_t)77 * 320 + 300] - (int)wl->zero_point[0]);
    ck_assert_msg(fabs(tensor_at(st, "features.18.0.weight", (size_t)77 * 320 + 300) - want) < 1e-7,
                  "features.18.0.weight[77,300]");
    /* the file's own bias scales agree with input x weight to 1e-6 (what n_bias_mismatch = 0 says) */
    const TfliteTensor *in = &m->tensors[m->inputs[0]];
    ck_assert(fabs(b0->scale[0] - (double)in->scale[0] * w0->scale[0]) <= 1e-6 * b0->scale[0]);
    safetensors_free(st);
    tflite_free(m);
}
END_TEST

/* Edit one thing in the parsed real graph; the conversion must fail with `message`. */
static void expect_edit_rejected(void (*edit)(TfliteModel *), const char *message)
{
    TfliteModel *m = real_model();
    const int n_operators = m->n_operators;
    edit(m);
    SafeTensorsWriter *w = safetensors_writer_create();
    log_reset();
    ck_assert_int_ne(backbone_from_tflite(m, w, NULL), 0);
    ck_assert_msg(strstr(logbuf, "mobilenet_v2_1.0_224_quant.tflite: ") && strstr(logbuf, message),
                  "expected '%s', got %s", message, logbuf);
    safetensors_writer_free(w);
    m->n_operators = n_operators; /* edit_tail hides the last operator: free it too */
    tflite_free(m);
}

static void edit_project_relu6(TfliteModel *m) { m->operators[2].opt.activation = TFLITE_ACT_RELU6; }
static void edit_expand_linear(TfliteModel *m) { m->operators[3].opt.activation = TFLITE_ACT_NONE; }
static void edit_dw_stride(TfliteModel *m) { m->operators[4].opt.stride_w = 1; }
static void edit_valid(TfliteModel *m) { m->operators[7].opt.padding = TFLITE_PADDING_VALID; }
static void edit_add_input(TfliteModel *m) { m->operators[9].inputs[1] = m->operators[9].inputs[0]; }
static void edit_add_relu(TfliteModel *m) { m->operators[9].opt.activation = TFLITE_ACT_RELU; }
static void edit_order(TfliteModel *m)
{
    TfliteOperator t = m->operators[10];
    m->operators[10] = m->operators[11];
    m->operators[11] = t;
}
static void edit_mul(TfliteModel *m) { m->operators[9].builtin = TFLITE_OP_MUL; }
static void edit_weight_type(TfliteModel *m) { m->tensors[m->operators[6].inputs[1]].type = TFLITE_INT8; }
static void edit_per_channel(TfliteModel *m) { m->tensors[m->operators[6].inputs[1]].n_scale = 2; }
static void edit_tail(TfliteModel *m) { m->n_operators = 65; }

START_TEST(test_real_edits_rejected)
{
    expect_edit_rejected(edit_project_relu6,
                         "operator 2 (CONV_2D, features.1.conv.1): fused activation RELU6, expected NONE");
    expect_edit_rejected(edit_expand_linear,
                         "operator 3 (CONV_2D, features.2.conv.0.0): fused activation NONE, expected RELU6");
    expect_edit_rejected(edit_dw_stride, "operator 4 (DEPTHWISE_CONV_2D, features.2.conv.1.0): stride 1x2, expected 2");
    expect_edit_rejected(edit_valid, "operator 7 (DEPTHWISE_CONV_2D, features.3.conv.1.0): padding VALID, expected SAME");
    expect_edit_rejected(edit_add_input, "operator 9 (ADD, residual add of features.3): adds tensor");
    expect_edit_rejected(edit_add_relu, "operator 9 (ADD, residual add of features.3): fused activation RELU");
    expect_edit_rejected(edit_order, "operator 10 (DEPTHWISE_CONV_2D, features.4.conv.0.0): expected CONV_2D");
    expect_edit_rejected(edit_mul, "operator 9 is MUL (builtin 18)");
    expect_edit_rejected(edit_weight_type, "weights tensor");
    expect_edit_rejected(edit_per_channel, "has 2 quantization scales, expected one (per-tensor)");
    expect_edit_rejected(edit_tail, "the graph ends after 65 operators, expected SOFTMAX");
}
END_TEST

/* Random changes to the real file's structure (bytes outside every tensor's data): each mutant
 * is rejected by the reader, or parsed and then converted or refused by the importer, never
 * crashing (the suite runs under ASan + UBSan in CI). */
START_TEST(test_real_mutants)
{
    size_t n;
    uint8_t *bytes = read_bytes(real_path, &n);
    TfliteModel *m = real_model();
    uint8_t *is_data = calloc(n, 1);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].data) memset(is_data + (m->tensors[i].data - m->file), 1, m->tensors[i].nbytes);
    tflite_free(m);
    size_t n_struct = 0;
    size_t *where = malloc(sizeof(size_t) * n);
    for (size_t i = 0; i < n; i++)
        if (!is_data[i]) where[n_struct++] = i;
    ck_assert_uint_gt(n_struct, 1000);
    SacRng rng;
    sac_rng_seed(&rng, 99, 1);
    int rejected = 0, refused = 0, converted = 0;
    for (int iter = 0; iter < 100; iter++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, bytes, n);
        for (int f = 0; f < 2; f++) {
            size_t at = where[sac_rng_below(&rng, (uint32_t)n_struct)];
            copy[at] ^= (uint8_t)(1u + sac_rng_below(&rng, 255));
        }
        log_reset();
        TfliteModel *mm = tflite_parse("mutant.tflite", copy, n);
        free(copy);
        if (!mm) {
            rejected++;
            continue;
        }
        walk_model(mm);
        SafeTensorsWriter *w = safetensors_writer_create();
        if (backbone_from_tflite(mm, w, NULL)) refused++;
        else converted++;
        safetensors_writer_free(w);
        tflite_free(mm);
    }
    printf("real-file mutants: %d rejected by the reader, %d refused by the importer, %d converted\n", rejected,
           refused, converted);
    ck_assert_int_gt(rejected + refused, 20);
    free(where);
    free(is_data);
    free(bytes);
}
END_TEST

START_TEST(test_real_add_either_order)
{
    TfliteModel *m = real_model();
    int32_t *in = m->operators[9].inputs, t = in[0];
    in[0] = in[1], in[1] = t;
    SafeTensorsWriter *w = safetensors_writer_create();
    log_reset();
    ck_assert_msg(backbone_from_tflite(m, w, NULL) == 0, "ADD with swapped inputs refused: %s", logbuf);
    safetensors_writer_free(w);
    tflite_free(m);
}
END_TEST

START_TEST(test_real_bias_scale_warning)
{
    TfliteModel *m = real_model();
    TfliteTensor *b = &m->tensors[m->operators[3].inputs[2]];
    const float exact = b->scale[0];
    b->scale[0] = exact * 1.01f;
    SafeTensorsWriter *w = safetensors_writer_create();
    BackboneImportReport rep;
    log_reset();
    ck_assert_int_eq(backbone_from_tflite(m, w, &rep), 0);
    ck_assert_int_eq(rep.n_bias_checked, 53);
    ck_assert_int_eq(rep.n_bias_mismatch, 1);
    ck_assert_log_has("operator 3 (CONV_2D, features.2.conv.0.0): bias scale");
    ck_assert_log_has("dequantizing the biases with the product");
    safetensors_writer_free(w);
    tflite_free(m);
}
END_TEST

START_TEST(test_real_import)
{
    const char *out = tmp_path("mnv2.safetensors");
    BackboneImportOptions opt = {labels_path, NULL};
    BackboneImportReport rep;
    log_reset();
    ck_assert_msg(backbone_import(real_path, out, &opt, &rep) == 0, "import failed: %s", logbuf);
    ck_assert_str_eq(rep.sha256, "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776");
    BackboneInfo info;
    SafeTensors *st = backbone_file_open(out, &info);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(info.n_classes, 1001);
    ck_assert_int_eq(info.n_labels, 1001);
    ck_assert_int_eq(info.padding_same, 1);
    ck_assert(info.mean[0] == 0.5f && info.std[2] == 0.5f);
    ck_assert_str_eq(safetensors_meta(st, "license"), "Apache-2.0");
    ck_assert_str_eq(safetensors_meta(st, "source"), "mobilenet_v2_1.0_224_quant.tflite");
    char label[64];
    ck_assert_int_eq(backbone_file_label(st, 0, label, sizeof(label)), 0);
    ck_assert_str_eq(label, "background");
    ck_assert_int_eq(backbone_file_label(st, 286, label, sizeof(label)), 0);
    ck_assert_str_eq(label, "Egyptian cat");
    const SafeTensor *t = safetensors_find(st, "features.17.conv.2.weight");
    ck_assert(t && t->ndim == 4 && t->shape[0] == 320 && t->shape[1] == 960 && t->shape[2] == 1);
    t = safetensors_find(st, "features.14.conv.1.0.weight");
    ck_assert(t && t->shape[0] == 576 && t->shape[1] == 1 && t->shape[2] == 3);
    safetensors_free(st);
}
END_TEST

/* ---- main ---- */

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sac_tflite_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(int argc, char **argv)
{
    const int pretrained = argc > 1 && !strcmp(argv[1], "pretrained");
    if (pretrained) {
        const char *shared = getenv("SACCADE_SHARED_DIR");
        snprintf(real_path, sizeof(real_path), "%s/pretrained/mobilenet_v2_1.0_224_quant.tflite", shared ? shared : "../shared");
        snprintf(labels_path, sizeof(labels_path), "%s/pretrained/imagenet_labels.txt", shared ? shared : "../shared");
        if (access(real_path, R_OK) || access(labels_path, R_OK)) {
            printf("skipped: %s not found\n", real_path);
            return 77;
        }
    }
    Suite *s = suite_create("tflite");
    const TTest *real[] = {test_real_parse, test_real_convert, test_real_edits_rejected, test_real_mutants,
        test_real_add_either_order, test_real_bias_scale_warning, test_real_import, NULL};
    const TTest *fixtures[] = {test_fixture_parsed, test_names, test_every_truncation, test_random_changes,
        test_hand_made_bad_files, test_shared_table_amplification, test_read_limits, test_fixture_is_not_mobilenet,
        test_sha256, test_layer_table, test_state_dict_import, test_state_dict_rejects, test_backbone_check_rejects,
        NULL};
    TCase *tc = check_case(s, "core", 600, pretrained ? real : fixtures);
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    return check_run(s);
}
