/*
 * safetensors.h - read and write safetensors files (huggingface/safetensors format), the model
 * and checkpoint format of saccade, plus IEEE half-precision conversion.
 *
 * Sizes: no size letters here; a tensor is any row-major shape of up to SAFETENSORS_MAX_DIMS
 * dims (B T P E A D M V K as in the rest of the project are just what callers pass as shapes).
 *
 * File layout (https://github.com/huggingface/safetensors, README "Format"):
 *   8 bytes   N, little-endian u64, the header length (at most 100,000,000, as the reference)
 *   N bytes   UTF-8 JSON object, beginning with '{', optionally padded with trailing spaces:
 *             {"__metadata__": {"key": "value", ...},
 *              "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *   rest      the byte buffer; offsets are relative to its start, tensors are little-endian,
 *             row-major, and must cover the buffer exactly (no holes, no overlaps).
 *
 * The reader validates every name, dtype, shape and offset against the file size before
 * exposing anything; a file that fails any check is rejected with a message naming the path
 * and the problem. Host byte order must be little-endian (checked at compile time).
 */
#ifndef SACCADE_SAFETENSORS_H
#define SACCADE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* Element types, in the reference implementation's order (the writer sorts by it). */
typedef enum {
    SAC_DTYPE_BOOL,
    SAC_DTYPE_U8,
    SAC_DTYPE_I8,
    SAC_DTYPE_F8_E5M2,
    SAC_DTYPE_F8_E4M3,
    SAC_DTYPE_I16,
    SAC_DTYPE_U16,
    SAC_DTYPE_F16,
    SAC_DTYPE_BF16,
    SAC_DTYPE_I32,
    SAC_DTYPE_U32,
    SAC_DTYPE_F32,
    SAC_DTYPE_F64,
    SAC_DTYPE_I64,
    SAC_DTYPE_U64,
    SAC_DTYPE_COUNT
} SacDtype;

/* The format has no rank limit; this implementation rejects tensors of higher rank. */
#define SAFETENSORS_MAX_DIMS 8

/* Name as written in files ("F32"), or NULL for an out-of-range value. */
const char *sac_dtype_name(int dtype);
/* Bytes per element, or 0 for an out-of-range value. */
size_t sac_dtype_size(int dtype);

/* ---- reading ---- */

typedef struct {
    const char *name;
    int dtype;                            /* SacDtype */
    int ndim;                             /* 0 for a scalar */
    int64_t shape[SAFETENSORS_MAX_DIMS];  /* each >= 0 */
    size_t nbytes;                        /* product(shape) * sac_dtype_size(dtype) */
    const uint8_t *data;                  /* little-endian, NOT necessarily aligned */
} SafeTensor;

typedef struct SafeTensors SafeTensors;

/* Read and validate a whole file, which must be a regular file (a FIFO, device or directory
 * is refused without blocking: fileio.h). Returns NULL and logs "<path>: <problem>" on any
 * failure.
 * The caller owns the result; free with safetensors_free. */
SafeTensors *safetensors_read(const char *path);
/* As safetensors_read, from len bytes at data (copied; the caller keeps data). name is used
 * in messages and returned by safetensors_path (NULL: "<memory>"). */
SafeTensors *safetensors_read_memory(const void *data, size_t len, const char *name);
/* No-op on NULL. Invalidates every pointer obtained from st. */
void safetensors_free(SafeTensors *st);

/* The path given to safetensors_read. */
const char *safetensors_path(const SafeTensors *st);
/* Tensors in name order: count and the i-th (0 <= i < count). */
int safetensors_count(const SafeTensors *st);
const SafeTensor *safetensors_at(const SafeTensors *st, int i);
/* The named tensor, or NULL (silently) when absent. */
const SafeTensor *safetensors_find(const SafeTensors *st, const char *name);

/* The value of a "__metadata__" key, or NULL when absent. Owned by st. */
const char *safetensors_meta(const SafeTensors *st, const char *key);
/* Metadata entries in file order: count, and the i-th key/value (returns 0, or
 * SAC_ERR_INVALID for an index out of range). */
int safetensors_meta_count(const SafeTensors *st);
int safetensors_meta_at(const SafeTensors *st, int i, const char **key, const char **value);

/* Copy tensor `name` into dst as float32, converting from F32, F16, BF16 or F64. The tensor
 * must exist and have exactly the given shape (ndim dims). dst holds product(shape) floats.
 * Returns 0, or logs and returns SAC_ERR_NOTFOUND (missing), SAC_ERR_FORMAT (shape or dtype
 * mismatch), e.g. "model.safetensors: tensor 'decoder.fc.weight' has shape [9000,512],
 * expected [2531,512]". */
int safetensors_load_f32(const SafeTensors *st, const char *name, float *dst, int ndim,
                         const int64_t *shape);
/* Copy tensor `name`'s bytes into dst, requiring exactly this dtype and shape (for integer
 * state such as step counters and RNG state). Same return codes as safetensors_load_f32. */
int safetensors_load_raw(const SafeTensors *st, const char *name, int dtype, void *dst, int ndim,
                         const int64_t *shape);

/* ---- writing ---- */

typedef struct SafeTensorsWriter SafeTensorsWriter;

/* An empty writer, or NULL when out of memory. Free with safetensors_writer_free. */
SafeTensorsWriter *safetensors_writer_create(void);
/* No-op on NULL. */
void safetensors_writer_free(SafeTensorsWriter *w);

/* Add a float tensor, stored as SAC_DTYPE_F32 or SAC_DTYPE_F16 (round to nearest even; values
 * beyond the half range become +-inf). `data` (product(shape) floats) is copied.
 * Returns 0, or SAC_ERR_INVALID (empty, reserved or duplicate name, bad shape or store_dtype)
 * or SAC_ERR_NOMEM, logged. */
int safetensors_writer_add_f32(SafeTensorsWriter *w, const char *name, int ndim,
                               const int64_t *shape, const float *data, int store_dtype);
/* Add a tensor of any dtype from its little-endian bytes (product(shape) * dtype size bytes,
 * copied). Same return codes. */
int safetensors_writer_add_raw(SafeTensorsWriter *w, const char *name, int dtype, int ndim,
                               const int64_t *shape, const void *data);
/* Set a "__metadata__" entry (both strings copied; setting a key again replaces its value). */
int safetensors_writer_meta(SafeTensorsWriter *w, const char *key, const char *value);
/* Write the file through common/output.h: a regular file is replaced atomically (a temporary
 * file in the same directory is written, fsynced and renamed over `path`, so `path` is either
 * untouched or complete), a symbolic link's target is written, a device or FIFO is written
 * directly and never replaced. Tensors are
 * laid out as the reference implementation does (by dtype, widest first, then by name), so
 * each starts at a multiple of its element size; the header is space-padded to a multiple of
 * 8 so the buffer starts 8-byte aligned. The writer stays usable. Returns 0, or logs and
 * returns SAC_ERR_IO / SAC_ERR_NOMEM. */
int safetensors_writer_write(SafeTensorsWriter *w, const char *path);

/* ---- half precision ---- */

/* IEEE 754 binary16 <-> binary32. float->half rounds to nearest even, overflows to inf,
 * produces subnormals and signed zeros, and keeps NaN a (quiet) NaN. */
float sac_half_to_float(uint16_t h);
uint16_t sac_float_to_half(float f);
/* bfloat16 (upper half of a float32) -> float, exact. */
float sac_bf16_to_float(uint16_t b);
void sac_half_to_float_array(float *dst, const uint16_t *src, size_t n);
void sac_float_to_half_array(uint16_t *dst, const float *src, size_t n);

#endif
