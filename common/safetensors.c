/*
 * safetensors.c - safetensors reader (validates everything, then serves tensors as float32 or
 * raw bytes), atomic writer, and IEEE half-precision conversion.
 *
 * Sizes: no size letters; tensors are opaque row-major shapes here.
 * Reference: huggingface/safetensors README "Format" and safetensors/src/tensor.rs
 * (header limit 100,000,000 bytes, tensors must tile the buffer in offset order, the writer
 * sorts by dtype (widest first) then name and pads the header with spaces to 8 bytes).
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "output.h"
#include "sac.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "safetensors.c assumes a little-endian host (tensor bytes are copied as they are)"
#endif

#define HEADER_MAX 100000000u          /* the reference implementation's limit */
#define JSON_INT_MAX 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

static const char *const dtype_names[SAC_DTYPE_COUNT] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
    "BF16", "I32", "U32", "F32", "F64", "I64", "U64"};
static const unsigned char dtype_sizes[SAC_DTYPE_COUNT] = {1, 1, 1, 1, 1, 2, 2, 2,
                                                           2, 4, 4, 4, 8, 8, 8};

const char *sac_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < SAC_DTYPE_COUNT ? dtype_names[dtype] : NULL;
}

size_t sac_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < SAC_DTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

static int dtype_parse(const char *s)
{
    for (int i = 0; i < SAC_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) return i;
    return -1;
}

/* ---- half precision ---- */

float sac_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);            /* inf, or NaN keeping its payload */
    } else if (e) {
        x = sign | ((e + 112) << 23) | (m << 13);      /* rebias 15 -> 127 */
    } else {
        float f = (float)m * 0x1p-24f;                 /* zero or subnormal: m * 2^-24, exact */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Shift right by s (1..31) rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t v, int s)
{
    uint32_t q = v >> s, rem = v & ((1u << s) - 1), half = 1u << (s - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t sac_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); /* quiet NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00;  /* >= 65520 (halfway past 65504) and inf */
    if (ax >= 0x38800000u)                         /* >= 2^-14: normal half */
        return sign | (uint16_t)shift_round_even(ax - (112u << 23), 13); /* carry may bump e */
    int e = (int)(ax >> 23);                       /* subnormal half: m * 2^(e-150) / 2^-24 */
    if (e < 102) return sign;                      /* below 2^-25: rounds to zero */
    return sign | (uint16_t)shift_round_even((ax & 0x7fffffu) | 0x800000u, 126 - e);
}

float sac_bf16_to_float(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void sac_half_to_float_array(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = sac_half_to_float(src[i]);
}

void sac_float_to_half_array(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = sac_float_to_half(src[i]);
}

/* ---- reading ---- */

struct SafeTensors {
    char *path;
    uint8_t *file;       /* the whole file */
    size_t size;
    cJSON *header;       /* owns the tensor names and metadata strings */
    const cJSON *meta;   /* the "__metadata__" object, or NULL */
    SafeTensor *tensors; /* sorted by name */
    int n_tensors;
};

/* "<file>: <what was wrong>", SAC_ERR_FORMAT */
#define bad(st, ...) sac_error_at(SAC_ERR_FORMAT, (st)->path, __VA_ARGS__)

static int utf8_valid(const uint8_t *s, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000}; /* rejects overlong forms */
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || len > (int)(n - i)) return 0;
        uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= JSON_INT_MAX) || (double)(uint64_t)d != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static const char *json_kind(const cJSON *j)
{
    return cJSON_IsString(j)   ? "a string"
           : cJSON_IsNumber(j) ? "a number"
           : cJSON_IsArray(j)  ? "an array"
           : cJSON_IsObject(j) ? "an object"
           : cJSON_IsBool(j)   ? "a boolean"
                               : "null";
}

static void shape_format(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? "," : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Fill t from one header entry; data_offsets are checked against the buffer of buf_size. */
static int tensor_parse(const SafeTensors *st, const cJSON *item, SafeTensor *t,
                        const uint8_t *buf, size_t buf_size)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return bad(st, "tensor '%s' is %s, expected an object", name, json_kind(item));
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *v[3];
    for (int k = 0; k < 3; k++) {
        v[k] = cJSON_GetObjectItemCaseSensitive(item, keys[k]);
        if (!v[k]) return bad(st, "tensor '%s' has no \"%s\"", name, keys[k]);
        if (k == 0 ? !cJSON_IsString(v[k]) : !cJSON_IsArray(v[k]))
            return bad(st, "tensor '%s': \"%s\" is %s, expected %s", name, keys[k], json_kind(v[k]),
                       k == 0 ? "a string" : "an array of integers");
    }
    t->name = name;
    t->dtype = dtype_parse(v[0]->valuestring);
    if (t->dtype < 0) return bad(st, "tensor '%s' has unknown dtype '%s'", name, v[0]->valuestring);
    t->ndim = cJSON_GetArraySize(v[1]);
    if (t->ndim > SAFETENSORS_MAX_DIMS) {
        bad(st, "tensor '%s' has %d dims, this build reads at most %d", name, t->ndim,
            SAFETENSORS_MAX_DIMS);
        return SAC_ERR_UNSUPPORTED;
    }
    uint64_t count = 1, u, off[2];
    int i = 0, overflow = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, v[1]) {
        if (!json_uint(d, &u))
            return bad(st, "tensor '%s': shape[%d] is not a non-negative integer", name, i);
        t->shape[i++] = (int64_t)u;
        if (u && count > UINT64_MAX / u) overflow = 1;
        count *= u;
    }
    size_t esize = dtype_sizes[t->dtype];
    if (overflow || count > UINT64_MAX / esize)
        return bad(st, "tensor '%s': shape overflows a 64-bit byte count", name);
    i = 0;
    cJSON_ArrayForEach(d, v[2]) {
        if (i == 2 || !json_uint(d, &off[i]))
            return bad(st, "tensor '%s': data_offsets must be two non-negative integers", name);
        i++;
    }
    if (i != 2) return bad(st, "tensor '%s': data_offsets must be two non-negative integers", name);
    if (off[0] > off[1] || off[1] > buf_size)
        return bad(st, "tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] are %s the %zu-byte "
                   "data buffer", name, off[0], off[1],
                   off[0] > off[1] ? "reversed in" : "past the end of", buf_size);
    if (off[1] - off[0] != count * esize) {
        char s[256];
        shape_format(s, sizeof(s), t->ndim, t->shape);
        return bad(st, "tensor '%s' (%s %s) needs %" PRIu64 " bytes but data_offsets [%" PRIu64
                   ",%" PRIu64 "] span %" PRIu64, name, dtype_names[t->dtype], s, count * esize,
                   off[0], off[1], off[1] - off[0]);
    }
    t->nbytes = (size_t)(off[1] - off[0]);
    t->data = buf + off[0];
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const SafeTensor *x = a, *y = b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const SafeTensor *)a)->name, ((const SafeTensor *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int meta_parse(SafeTensors *st, const cJSON *m)
{
    if (st->meta) return bad(st, "\"__metadata__\" appears twice");
    if (!cJSON_IsObject(m))
        return bad(st, "\"__metadata__\" is %s, expected an object of strings", json_kind(m));
    int n = cJSON_GetArraySize(m), i = 0, rc = 0;
    const char **keys = sac_malloc(sizeof(*keys) * (size_t)n);
    if (!keys) return SAC_ERR_NOMEM;
    const cJSON *c;
    cJSON_ArrayForEach(c, m) {
        if (!cJSON_IsString(c)) {
            rc = bad(st, "__metadata__ value of '%s' is %s, expected a string", c->string,
                     json_kind(c));
            goto done;
        }
        keys[i++] = c->string;
    }
    qsort(keys, (size_t)n, sizeof(*keys), cmp_str);
    for (i = 1; i < n && !rc; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            rc = bad(st, "__metadata__ key '%s' appears twice", keys[i]);
    st->meta = m;
done:
    free(keys);
    return rc;
}

static int header_parse(SafeTensors *st)
{
    if (st->size < 8)
        return bad(st, "file is %zu bytes, shorter than the 8-byte header length", st->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | st->file[i];
    if (n > HEADER_MAX)
        return bad(st, "header length %" PRIu64 " exceeds the %u-byte limit (corrupt or not a "
                   "safetensors file)", n, HEADER_MAX);
    if (n > st->size - 8)
        return bad(st, "header length %" PRIu64 " runs past the end of the %zu-byte file "
                   "(truncated?)", n, st->size);
    const char *h = (const char *)st->file + 8, *end = NULL;
    if (n < 2 || h[0] != '{') return bad(st, "header does not begin with '{'");
    if (!utf8_valid((const uint8_t *)h, n)) return bad(st, "header is not valid UTF-8");
    st->header = cJSON_ParseWithLengthOpts(h, n, &end, 0);
    if (!st->header)
        return bad(st, "header is not valid JSON (error near byte %td of %" PRIu64 ")",
                   end ? end - h : 0, n);
    for (; end < h + n; end++)
        if (!strchr(" \t\r\n", *end) || !*end)
            return bad(st, "header has trailing bytes after the JSON object at byte %td", end - h);

    const uint8_t *buf = st->file + 8 + n;
    size_t buf_size = st->size - 8 - (size_t)n;
    int count = cJSON_GetArraySize(st->header), rc;
    st->tensors = sac_calloc((size_t)count, sizeof(SafeTensor));
    if (!st->tensors) return SAC_ERR_NOMEM;
    const cJSON *item;
    cJSON_ArrayForEach(item, st->header) {
        if (!strcmp(item->string, "__metadata__")) rc = meta_parse(st, item);
        else rc = tensor_parse(st, item, &st->tensors[st->n_tensors++], buf, buf_size);
        if (rc) return rc;
    }
    /* In offset order the tensors must tile [0, buf_size) exactly. */
    SafeTensor *t = st->tensors;
    qsort(t, (size_t)st->n_tensors, sizeof(*t), cmp_offset);
    size_t pos = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        size_t begin = (size_t)(t[i].data - buf);
        if (begin < pos)
            return bad(st, "tensors '%s' and '%s' overlap in the data buffer (bytes %zu..%zu)",
                       t[i - 1].name, t[i].name, begin, pos);
        if (begin > pos)
            return bad(st, "data buffer bytes %zu..%zu before tensor '%s' belong to no tensor "
                       "(the buffer must be fully indexed)", pos, begin, t[i].name);
        pos = begin + t[i].nbytes;
    }
    if (pos != buf_size)
        return bad(st, "data buffer bytes %zu..%zu belong to no tensor (the buffer must be fully "
                   "indexed)", pos, buf_size);
    qsort(t, (size_t)st->n_tensors, sizeof(*t), cmp_name);
    for (int i = 1; i < st->n_tensors; i++)
        if (!strcmp(t[i - 1].name, t[i].name))
            return bad(st, "tensor '%s' appears twice", t[i].name);
    return 0;
}

SafeTensors *safetensors_read(const char *path)
{
    SafeTensors *st = sac_calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->path = strdup(path);
    /* a regular file only: a FIFO given as --model is refused at once instead of blocking */
    if (!st->path || sac_read_file(path, 0, &st->file, &st->size) || header_parse(st)) {
        safetensors_free(st);
        return NULL;
    }
    return st;
}

SafeTensors *safetensors_read_memory(const void *data, size_t len, const char *name)
{
    SafeTensors *st = sac_calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->path = strdup(name ? name : "<memory>");
    st->file = sac_malloc(len + 1);
    if (!st->path || !st->file) goto fail;
    if (len) memcpy(st->file, data, len);
    st->size = len;
    if (header_parse(st)) goto fail;
    return st;
fail:
    safetensors_free(st);
    return NULL;
}

void safetensors_free(SafeTensors *st)
{
    if (!st) return;
    cJSON_Delete(st->header);
    free(st->tensors);
    free(st->file);
    free(st->path);
    free(st);
}

const char *safetensors_path(const SafeTensors *st) { return st->path; }

int safetensors_count(const SafeTensors *st) { return st->n_tensors; }

const SafeTensor *safetensors_at(const SafeTensors *st, int i)
{
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const SafeTensor *safetensors_find(const SafeTensors *st, const char *name)
{
    SafeTensor key = {.name = name};
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof(key), cmp_name);
}

const char *safetensors_meta(const SafeTensors *st, const char *key)
{
    const cJSON *v = st->meta ? cJSON_GetObjectItemCaseSensitive(st->meta, key) : NULL;
    return v ? v->valuestring : NULL;
}

int safetensors_meta_count(const SafeTensors *st)
{
    return st->meta ? cJSON_GetArraySize(st->meta) : 0;
}

int safetensors_meta_at(const SafeTensors *st, int i, const char **key, const char **value)
{
    const cJSON *c = st->meta && i >= 0 ? cJSON_GetArrayItem(st->meta, i) : NULL;
    if (!c) return SAC_ERR_INVALID;
    *key = c->string;
    *value = c->valuestring;
    return 0;
}

static uint16_t u16_le(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The named tensor if present with exactly this shape; otherwise log and NULL (*rc set). */
static const SafeTensor *tensor_expect(const SafeTensors *st, const char *name, int ndim,
                                       const int64_t *shape, int *rc)
{
    const SafeTensor *t = safetensors_find(st, name);
    *rc = SAC_ERR_NOTFOUND;
    if (!t) {
        sac_error("%s: tensor '%s' is missing", st->path, name);
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[256], want[256];
        shape_format(got, sizeof(got), t->ndim, t->shape);
        shape_format(want, sizeof(want), ndim, shape);
        sac_error("%s: tensor '%s' has shape %s, expected %s", st->path, name, got, want);
        *rc = SAC_ERR_FORMAT;
        return NULL;
    }
    *rc = 0;
    return t;
}

int safetensors_load_f32(const SafeTensors *st, const char *name, float *dst, int ndim,
                         const int64_t *shape)
{
    int rc;
    const SafeTensor *t = tensor_expect(st, name, ndim, shape, &rc);
    if (!t) return rc;
    size_t n = t->nbytes / dtype_sizes[t->dtype];
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case SAC_DTYPE_F32:
        if (n) memcpy(dst, p, t->nbytes);
        break;
    case SAC_DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = sac_half_to_float(u16_le(p + 2 * i));
        break;
    case SAC_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = sac_bf16_to_float(u16_le(p + 2 * i));
        break;
    case SAC_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        sac_error("%s: tensor '%s' has dtype %s, expected a float type (F32, F16, BF16 or F64)",
                  st->path, name, dtype_names[t->dtype]);
        return SAC_ERR_FORMAT;
    }
    return 0;
}

int safetensors_load_raw(const SafeTensors *st, const char *name, int dtype, void *dst,
                         int ndim, const int64_t *shape)
{
    int rc;
    const SafeTensor *t = tensor_expect(st, name, ndim, shape, &rc);
    if (!t) return rc;
    if (t->dtype != dtype) {
        sac_error("%s: tensor '%s' has dtype %s, expected %s", st->path, name,
                  dtype_names[t->dtype], sac_dtype_name(dtype) ? sac_dtype_name(dtype) : "?");
        return SAC_ERR_FORMAT;
    }
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return 0;
}

/* ---- writing ---- */

typedef struct {
    char *name;
    int dtype, ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t nbytes;
    uint8_t *data;
} WriterTensor;

struct SafeTensorsWriter {
    WriterTensor *t;
    int n, n_meta;
    size_t cap, cap_meta;
    struct { char *key, *value; } *meta;
};

SafeTensorsWriter *safetensors_writer_create(void)
{
    return sac_calloc(1, sizeof(SafeTensorsWriter));
}

void safetensors_writer_free(SafeTensorsWriter *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name), free(w->t[i].data);
    for (int i = 0; i < w->n_meta; i++) free(w->meta[i].key), free(w->meta[i].value);
    free(w->t);
    free(w->meta);
    free(w);
}

/* Validate and append an entry with an uninitialised data buffer of the right size. */
static WriterTensor *writer_append(SafeTensorsWriter *w, const char *name, int dtype, int ndim,
                                   const int64_t *shape, int *rc)
{
    *rc = SAC_ERR_INVALID;
    if (!name || !*name || !strcmp(name, "__metadata__")) {
        sac_error("safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
        return NULL;
    }
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) {
            sac_error("safetensors writer: tensor '%s' added twice", name);
            return NULL;
        }
    if (!sac_dtype_name(dtype) || ndim < 0 || ndim > SAFETENSORS_MAX_DIMS) {
        sac_error("safetensors writer: tensor '%s' has dtype %d and %d dims, expected a SacDtype "
                  "and 0..%d dims", name, dtype, ndim, SAFETENSORS_MAX_DIMS);
        return NULL;
    }
    size_t bytes = dtype_sizes[dtype];
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && bytes > SIZE_MAX / (uint64_t)shape[i])) {
            sac_error("safetensors writer: tensor '%s' has invalid shape[%d] = %" PRId64, name, i,
                      shape[i]);
            return NULL;
        }
        bytes *= (size_t)shape[i];
    }
    WriterTensor *t = sac_grow(w->t, &w->cap, (size_t)w->n + 1, sizeof(*w->t));
    if (!t) {
        sac_error("safetensors writer: out of memory adding tensor '%s'", name);
        *rc = SAC_ERR_NOMEM;
        return NULL;
    }
    w->t = t;
    t = &w->t[w->n];
    *t = (WriterTensor){.name = strdup(name), .dtype = dtype, .ndim = ndim, .nbytes = bytes,
                        .data = malloc(bytes ? bytes : 1)};
    if (!t->name || !t->data) {
        free(t->name), free(t->data);
        sac_error("safetensors writer: out of memory adding tensor '%s' (%zu bytes)", name, bytes);
        *rc = SAC_ERR_NOMEM;
        return NULL;
    }
    if (ndim) memcpy(t->shape, shape, sizeof(*shape) * (size_t)ndim);
    w->n++;
    *rc = 0;
    return t;
}

int safetensors_writer_add_f32(SafeTensorsWriter *w, const char *name, int ndim,
                               const int64_t *shape, const float *data, int store_dtype)
{
    if (store_dtype != SAC_DTYPE_F32 && store_dtype != SAC_DTYPE_F16) {
        sac_error("safetensors writer: tensor '%s' cannot be stored as dtype %d, expected "
                  "SAC_DTYPE_F32 or SAC_DTYPE_F16", name ? name : "(null)", store_dtype);
        return SAC_ERR_INVALID;
    }
    int rc;
    WriterTensor *t = writer_append(w, name, store_dtype, ndim, shape, &rc);
    if (!t) return rc;
    if (store_dtype == SAC_DTYPE_F32) {
        if (t->nbytes) memcpy(t->data, data, t->nbytes);
    } else {
        for (size_t i = 0; i < t->nbytes / 2; i++) {
            uint16_t h = sac_float_to_half(data[i]);
            t->data[2 * i] = (uint8_t)h, t->data[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    return 0;
}

int safetensors_writer_add_raw(SafeTensorsWriter *w, const char *name, int dtype, int ndim,
                               const int64_t *shape, const void *data)
{
    int rc;
    WriterTensor *t = writer_append(w, name, dtype, ndim, shape, &rc);
    if (t && t->nbytes) memcpy(t->data, data, t->nbytes);
    return rc;
}

int safetensors_writer_meta(SafeTensorsWriter *w, const char *key, const char *value)
{
    char *v = strdup(value), *k = NULL;
    void *p = NULL;
    if (!v) goto nomem;
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[i].key, key)) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    if (!(k = strdup(key))) goto nomem;
    if (!(p = sac_grow(w->meta, &w->cap_meta, (size_t)w->n_meta + 1, sizeof(*w->meta)))) goto nomem;
    w->meta = p;
    w->meta[w->n_meta].key = k, w->meta[w->n_meta].value = v;
    w->n_meta++;
    return 0;
nomem:
    free(v), free(k);
    sac_error("safetensors writer: out of memory setting metadata '%s'", key);
    return SAC_ERR_NOMEM;
}

/* File order: dtype descending (widest first, as the reference writer), then name. */
static int cmp_write_order(const void *a, const void *b)
{
    const WriterTensor *x = *(const WriterTensor *const *)a, *y = *(const WriterTensor *const *)b;
    return x->dtype != y->dtype ? y->dtype - x->dtype : strcmp(x->name, y->name);
}

/* The JSON header for tensors in `order`, or NULL. */
static char *header_build(const SafeTensorsWriter *w, WriterTensor **order)
{
    cJSON *root = cJSON_CreateObject(), *meta = NULL;
    char *json = NULL;
    if (!root) return NULL;
    if (w->n_meta && !(meta = cJSON_AddObjectToObject(root, "__metadata__"))) goto done;
    for (int i = 0; i < w->n_meta; i++)
        if (!cJSON_AddStringToObject(meta, w->meta[i].key, w->meta[i].value)) goto done;
    double offset = 0; /* exact: a file below 2^53 bytes */
    for (int i = 0; i < w->n; i++) {
        const WriterTensor *t = order[i];
        double shape[SAFETENSORS_MAX_DIMS], offs[2] = {offset, offset + (double)t->nbytes};
        for (int d = 0; d < t->ndim; d++) shape[d] = (double)t->shape[d];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        if (!e || !cJSON_AddStringToObject(e, "dtype", dtype_names[t->dtype])) goto done;
        if (!cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, t->ndim))) goto done;
        if (!cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2))) goto done;
        offset = offs[1];
    }
    json = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return json;
}

int safetensors_writer_write(SafeTensorsWriter *w, const char *path)
{
    char *json = NULL;
    WriterTensor **order = malloc(sizeof(*order) * (size_t)(w->n ? w->n : 1));
    if (!order) goto nomem;
    for (int i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, (size_t)w->n, sizeof(*order), cmp_write_order);
    if (!(json = header_build(w, order))) goto nomem;
    size_t len = strlen(json), pad = (8 - len % 8) % 8;
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)(len + pad) >> (8 * i));

    /* the output layer: a regular file is replaced atomically (temporary file in the same
     * directory, fsync, rename, directory fsync), a link's target is written, a device is written
     * directly and never replaced; every write is checked and a failure names the file */
    int rc = SAC_ERR_IO;
    SacOutput *out = sac_output_open(path, 0);
    if (out) {
        FILE *f = sac_output_stream(out);
        fwrite(n8, 1, 8, f);
        fwrite(json, 1, len, f);
        fwrite("        ", 1, pad, f);
        for (int i = 0; i < w->n; i++) fwrite(order[i]->data, 1, order[i]->nbytes, f);
        rc = sac_output_close(out);
    }
    free(order);
    free(json);
    return rc;
nomem:
    sac_error("%s: out of memory preparing the safetensors file", path);
    free(order);
    free(json);
    return SAC_ERR_NOMEM;
}
