/*
 * test_safetensors.c - half-precision conversion, safetensors write/read round trips, a file
 * built byte by byte as the reference (Python/Rust) safetensors writes it, rejection of
 * malformed files with messages naming the path and the problem, and a deterministic fuzz loop.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkrun.h"
#include "rng.h"
#include "sac.h"
#include "safetensors.h"

/* ---- helpers: a scratch directory, captured log, raw files ---- */

static char tmpdir[64];
static char logbuf[1 << 14];

static void log_capture(int level, const char *msg, void *user)
{
    (void)level, (void)user;
    size_t len = strlen(logbuf);
    snprintf(logbuf + len, sizeof(logbuf) - len, "%s\n", msg);
}

static void log_reset(void)
{
    logbuf[0] = '\0';
    sac_log_set_sink(log_capture, NULL);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][384];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *p = malloc(*n + 1);
    ck_assert_uint_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

/* A file: 8-byte LE length of `header` (as given, unpadded), header, data_len bytes 0,1,2.. */
static void write_st(const char *path, const char *header, size_t data_len)
{
    size_t n = strlen(header);
    uint8_t *p = malloc(8 + n + data_len);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(p + 8, header, n);
    for (size_t i = 0; i < data_len; i++) p[8 + n + i] = (uint8_t)i;
    write_bytes(path, p, 8 + n + data_len);
    free(p);
}

/* Reading `path` fails, logging a message that names the path and contains `what`. */
static void expect_reject(const char *path, const char *what)
{
    log_reset();
    SafeTensors *st = safetensors_read(path);
    ck_assert_msg(st == NULL, "%s was accepted, expected rejection for '%s'", path, what);
    ck_assert_msg(strstr(logbuf, path) && strstr(logbuf, what),
                  "expected a message naming %s and containing '%s', got: %s", path, what, logbuf);
}

static int files_in_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static float bits_float(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- half precision ---- */

START_TEST(test_half_table)
{
    static const struct { float f; uint16_t h; } table[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800},
        {65504.0f, 0x7bff}, {65519.0f, 0x7bff},      /* below the halfway point to 65536 */
        {65520.0f, 0x7c00}, {-65520.0f, 0xfc00},     /* halfway, ties to even = inf */
        {1e6f, 0x7c00}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
        {0.1f, 0x2e66}, {0x1p-14f, 0x0400},          /* smallest normal */
        {0x1p-24f, 0x0001}, {-0x1p-24f, 0x8001},     /* smallest subnormal */
        {0x1p-25f, 0x0000},                          /* tie between 0 and 2^-24 -> even 0 */
        {0x1.8p-24f, 0x0002},                        /* tie between 1 and 2 units -> 2 */
        {0x1.8p-25f, 0x0001}, {1e-7f, 0x0002},       /* 1e-7 = 1.68 units -> 2 */
        {1e-8f, 0x0000}, {-1e-8f, 0x8000},           /* 0.17 units -> signed zero */
        {0x1.ff8p-15f, 0x03ff},                      /* largest subnormal */
        {0x1p-14f - 0x1p-25f, 0x0400},               /* 1023.5 units: tie -> 1024, a normal */
        {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x3p-11f, 0x3c02}, /* ties to even mantissa */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},        /* just above a tie rounds up */
        {2047.0f, 0x67ff}, {2049.0f, 0x6800}, {2051.0f, 0x6802},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        uint16_t h = sac_float_to_half(table[i].f);
        ck_assert_msg(h == table[i].h, "float_to_half(%a) = 0x%04x, expected 0x%04x", table[i].f, h,
                      table[i].h);
    }
    uint16_t qn = sac_float_to_half(NAN), sn = sac_float_to_half(bits_float(0xff800001u));
    ck_assert_msg((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff), "NaN -> 0x%04x", qn);
    ck_assert_msg((sn & 0xfc00) == 0xfc00 && (sn & 0x200), "signalling -NaN -> 0x%04x", sn);
    ck_assert(isnan(sac_half_to_float(0x7e00)) && isnan(sac_half_to_float(0xfc01)));
    ck_assert(sac_half_to_float(0x7c00) == INFINITY && sac_half_to_float(0xfc00) == -INFINITY);
    ck_assert(sac_half_to_float(0x8000) == 0.0f && signbit(sac_half_to_float(0x8000)));
    ck_assert(sac_half_to_float(0x0001) == 0x1p-24f && sac_half_to_float(0x03ff) == 0x1.ff8p-15f);
    ck_assert(sac_half_to_float(0x7bff) == 65504.0f && sac_half_to_float(0x3555) == 0x1.554p-2f);
    ck_assert(sac_bf16_to_float(0x3f80) == 1.0f && sac_bf16_to_float(0xc040) == -3.0f);
}
END_TEST

START_TEST(test_half_exhaustive)
{
    /* every half survives half -> float -> half; NaNs stay NaN */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sac_half_to_float((uint16_t)h);
        uint16_t back = sac_float_to_half(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) ck_assert(isnan(f) && (back & 0x3ff));
        else ck_assert_msg(back == h, "0x%04x -> %a -> 0x%04x", h, f, back);
    }
    /* random floats across the whole half range round to the nearest half, ties to even */
    SacRng rng;
    sac_rng_seed(&rng, 7, 3);
    for (int i = 0; i < 200000; i++) {
        float f = ldexpf(1.0f + sac_rng_uniform(&rng), -26 + (int)(sac_rng_u32(&rng) % 42));
        if (f >= 65504.0f) continue;
        uint16_t h = sac_float_to_half(f);
        double v = sac_half_to_float(h), err = fabs((double)f - v);
        double lo = h ? sac_half_to_float((uint16_t)(h - 1)) : -1.0;
        double hi = sac_half_to_float((uint16_t)(h + 1));
        double elo = fabs((double)f - lo), ehi = fabs((double)f - hi);
        ck_assert_msg(err <= elo && err <= ehi, "%a -> 0x%04x is not the nearest half", f, h);
        if (err == elo || err == ehi) ck_assert_msg(!(h & 1), "%a: tie not to even (0x%04x)", f, h);
    }
    float src[5] = {1.0f, -0.5f, 65520.0f, 0x1p-24f, 3.0f}, dst[5];
    uint16_t hv[5];
    sac_float_to_half_array(hv, src, 5);
    sac_half_to_float_array(dst, hv, 5);
    ck_assert(dst[0] == 1.0f && dst[1] == -0.5f && isinf(dst[2]) && dst[3] == 0x1p-24f);
    ck_assert(dst[4] == 3.0f);
}
END_TEST

/* ---- round trips ---- */

START_TEST(test_roundtrip)
{
    const char *path = tmp_path("roundtrip.safetensors");
    SacRng rng;
    sac_rng_seed(&rng, 1, 1);
    float w[6], hv[40], scalar = -3.25f;
    for (int i = 0; i < 6; i++) w[i] = sac_rng_uniform(&rng) * 2 - 1;
    for (int i = 0; i < 40; i++) hv[i] = (sac_rng_uniform(&rng) * 2 - 1) * 100.0f;
    hv[0] = 0.5f, hv[1] = -1024.0f, hv[2] = 65504.0f, hv[3] = 0x1p-24f; /* exact in half */
    int64_t steps[3] = {1, -2, (int64_t)1 << 40};
    uint8_t mask[5] = {1, 0, 1, 1, 0};
    int64_t s23[2] = {2, 3}, s40[3] = {2, 4, 5}, s3[1] = {3}, s5[1] = {5}, s04[2] = {0, 4};

    SafeTensorsWriter *wr = safetensors_writer_create();
    ck_assert_int_eq(safetensors_writer_add_f32(wr, "encoder.fc.weight", 2, s23, w, SAC_DTYPE_F32),
                     0);
    ck_assert_int_eq(safetensors_writer_add_f32(wr, "decoder.embed", 3, s40, hv, SAC_DTYPE_F16), 0);
    ck_assert_int_eq(safetensors_writer_add_f32(wr, "scale", 0, NULL, &scalar, SAC_DTYPE_F32), 0);
    ck_assert_int_eq(safetensors_writer_add_f32(wr, "empty", 2, s04, NULL, SAC_DTYPE_F16), 0);
    ck_assert_int_eq(safetensors_writer_add_raw(wr, "optim.step", SAC_DTYPE_I64, 1, s3, steps), 0);
    ck_assert_int_eq(safetensors_writer_add_raw(wr, "mask", SAC_DTYPE_U8, 1, s5, mask), 0);
    const char *config = "{\"D\": 512, \"name\": \"caf\xc3\xa9\\n\"}"; /* needs escaping */
    ck_assert_int_eq(safetensors_writer_meta(wr, "config", config), 0);
    ck_assert_int_eq(safetensors_writer_meta(wr, "vocab_size", "9000"), 0);
    ck_assert_int_eq(safetensors_writer_meta(wr, "vocab_size", "2531"), 0); /* replaces */
    ck_assert_int_eq(safetensors_writer_write(wr, path), 0);
    safetensors_writer_free(wr);

    log_reset();
    SafeTensors *st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(logbuf, "");
    ck_assert_int_eq(safetensors_count(st), 6);
    ck_assert_str_eq(safetensors_at(st, 0)->name, "decoder.embed"); /* name order */
    ck_assert_str_eq(safetensors_meta(st, "config"), config);
    ck_assert_str_eq(safetensors_meta(st, "vocab_size"), "2531");
    ck_assert_ptr_null(safetensors_meta(st, "absent"));
    ck_assert_int_eq(safetensors_meta_count(st), 2);
    const char *k, *v;
    ck_assert_int_eq(safetensors_meta_at(st, 1, &k, &v), 0);
    ck_assert_str_eq(k, "vocab_size");
    ck_assert_int_eq(safetensors_meta_at(st, 2, &k, &v), SAC_ERR_INVALID);

    float got[40];
    ck_assert_int_eq(safetensors_load_f32(st, "encoder.fc.weight", got, 2, s23), 0);
    for (int i = 0; i < 6; i++) ck_assert(got[i] == w[i]); /* F32 is bit exact */
    ck_assert_int_eq(safetensors_load_f32(st, "decoder.embed", got, 3, s40), 0);
    ck_assert(got[0] == 0.5f && got[1] == -1024.0f && got[2] == 65504.0f && got[3] == 0x1p-24f);
    for (int i = 4; i < 40; i++) /* half's unit roundoff: relative error <= 2^-11 */
        ck_assert_msg(fabsf(got[i] - hv[i]) <= ldexpf(fabsf(hv[i]), -11), "[%d] %g vs %g", i,
                      got[i], hv[i]);
    ck_assert_int_eq(safetensors_load_f32(st, "scale", got, 0, NULL), 0);
    ck_assert(got[0] == -3.25f);
    ck_assert_int_eq(safetensors_load_f32(st, "empty", got, 2, s04), 0);
    int64_t steps2[3];
    uint8_t mask2[5];
    ck_assert_int_eq(safetensors_load_raw(st, "optim.step", SAC_DTYPE_I64, steps2, 1, s3), 0);
    ck_assert(steps2[0] == 1 && steps2[1] == -2 && steps2[2] == (int64_t)1 << 40);
    ck_assert_int_eq(safetensors_load_raw(st, "mask", SAC_DTYPE_U8, mask2, 1, s5), 0);
    ck_assert_mem_eq(mask2, mask, 5);
    const SafeTensor *t = safetensors_find(st, "decoder.embed");
    ck_assert(t && t->dtype == SAC_DTYPE_F16 && t->ndim == 3 && t->shape[2] == 5);
    ck_assert_uint_eq(t->nbytes, 80);
    safetensors_free(st);
    safetensors_free(NULL);

    /* layout: header padded with spaces to 8 bytes, widest dtype first then by name, each
     * tensor at a multiple of its element size, offsets contiguous */
    size_t n;
    uint8_t *raw = read_bytes(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert(raw[8] == '{' && raw[8 + hlen - 1] == ' ');
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, hlen);
    ck_assert_ptr_nonnull(h);
    static const char *order[] = {"__metadata__", "optim.step", "encoder.fc.weight", "scale",
                                  "decoder.embed", "empty", "mask"};
    int i = 0;
    double end = 0;
    for (cJSON *e = h->child; e; e = e->next, i++) {
        ck_assert_str_eq(e->string, order[i]);
        if (!i) continue;
        cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
        double b = cJSON_GetArrayItem(off, 0)->valuedouble;
        ck_assert(b == end);
        end = cJSON_GetArrayItem(off, 1)->valuedouble;
        size_t es = 0;
        const char *dtype = cJSON_GetObjectItem(e, "dtype")->valuestring;
        for (int d = 0; d < SAC_DTYPE_COUNT; d++)
            if (!strcmp(sac_dtype_name(d), dtype)) es = sac_dtype_size(d);
        ck_assert_uint_ne(es, 0);
        ck_assert_uint_eq((uint64_t)b % es, 0);
    }
    ck_assert_int_eq(i, 7);
    ck_assert(8 + hlen + (size_t)end == n);
    cJSON_Delete(h);
    free(raw);
}
END_TEST

/* The bytes safetensors (Python save_file / Rust serialize) writes for
 * {"attn0": float32 tensor [[[[0,1,2],[3,4,5]]]]}; from safetensors/src/tensor.rs's tests. */
static const uint8_t reference_file[] = {
    72, 0, 0, 0, 0, 0, 0, 0,                          /* header length 72, u64 LE */
    '{', '"', 'a', 't', 't', 'n', '0', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e', '"', ':',
    '"', 'F', '3', '2', '"', ',', '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '1', ',', '1',
    ',', '2', ',', '3', ']', ',', '"', 'd', 'a', 't', 'a', '_', 'o', 'f', 'f', 's', 'e', 't',
    's', '"', ':', '[', '0', ',', '2', '4', ']', '}', '}',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ',                /* padding to a multiple of 8 */
    0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64,           /* 0.0f 1.0f 2.0f */
    0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};      /* 3.0f 4.0f 5.0f */

START_TEST(test_reference_bytes)
{
    const char *path = tmp_path("reference.safetensors"), *mine = tmp_path("mine.safetensors");
    write_bytes(path, reference_file, sizeof(reference_file));
    SafeTensors *st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    int64_t shape[4] = {1, 1, 2, 3};
    float got[6];
    ck_assert_int_eq(safetensors_load_f32(st, "attn0", got, 4, shape), 0);
    for (int i = 0; i < 6; i++) ck_assert(got[i] == (float)i);
    ck_assert_int_eq(safetensors_meta_count(st), 0);
    safetensors_free(st);

    /* our writer produces the same bytes */
    SafeTensorsWriter *w = safetensors_writer_create();
    ck_assert_int_eq(safetensors_writer_add_f32(w, "attn0", 4, shape, got, SAC_DTYPE_F32), 0);
    ck_assert_int_eq(safetensors_writer_write(w, mine), 0);
    safetensors_writer_free(w);
    size_t n;
    uint8_t *raw = read_bytes(mine, &n);
    ck_assert_uint_eq(n, sizeof(reference_file));
    ck_assert_mem_eq(raw, reference_file, n);
    free(raw);

    /* no tensors: "{}" + 6 spaces, N = 8 */
    w = safetensors_writer_create();
    ck_assert_int_eq(safetensors_writer_write(w, mine), 0);
    safetensors_writer_free(w);
    raw = read_bytes(mine, &n);
    ck_assert_uint_eq(n, 16);
    ck_assert_mem_eq(raw, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(raw);

    /* and for metadata only: {"__metadata__":{"framework":"pt"}} + 5 spaces, N = 40 */
    static const char meta_only[] = "(\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    w = safetensors_writer_create();
    ck_assert_int_eq(safetensors_writer_meta(w, "framework", "pt"), 0);
    ck_assert_int_eq(safetensors_writer_write(w, mine), 0);
    safetensors_writer_free(w);
    raw = read_bytes(mine, &n);
    ck_assert_uint_eq(n, sizeof(meta_only) - 1);
    ck_assert_mem_eq(raw, meta_only, n);
    free(raw);
    st = safetensors_read(mine);
    ck_assert(st && safetensors_count(st) == 0);
    ck_assert_str_eq(safetensors_meta(st, "framework"), "pt");
    safetensors_free(st);
}
END_TEST

START_TEST(test_float_dtypes)
{
    const char *path = tmp_path("dtypes.safetensors");
    uint16_t bf[3] = {0x3f80, 0xc040, 0x7f80}; /* 1, -3, inf */
    double f64[2] = {0.25, -1e300};
    int32_t i32[2] = {7, -7};
    int64_t s3[1] = {3}, s2[1] = {2};
    SafeTensorsWriter *w = safetensors_writer_create();
    ck_assert_int_eq(safetensors_writer_add_raw(w, "bf", SAC_DTYPE_BF16, 1, s3, bf), 0);
    ck_assert_int_eq(safetensors_writer_add_raw(w, "f64", SAC_DTYPE_F64, 1, s2, f64), 0);
    ck_assert_int_eq(safetensors_writer_add_raw(w, "i32", SAC_DTYPE_I32, 1, s2, i32), 0);
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    safetensors_writer_free(w);
    SafeTensors *st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    float got[3];
    ck_assert_int_eq(safetensors_load_f32(st, "bf", got, 1, s3), 0);
    ck_assert(got[0] == 1.0f && got[1] == -3.0f && got[2] == INFINITY);
    ck_assert_int_eq(safetensors_load_f32(st, "f64", got, 1, s2), 0);
    ck_assert(got[0] == 0.25f && got[1] == -INFINITY);
    log_reset();
    ck_assert_int_eq(safetensors_load_raw(st, "i32", SAC_DTYPE_I64, got, 1, s2), SAC_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(logbuf, "tensor 'i32' has dtype I32, expected I64"));
    safetensors_free(st);
}
END_TEST

/* ---- rejection ---- */

START_TEST(test_reject_file_level)
{
    const char *path = tmp_path("bad.safetensors");
    write_bytes(path, reference_file, 5);
    expect_reject(path, "shorter than the 8-byte header length");
    write_bytes(path, reference_file, 0);
    expect_reject(path, "file is 0 bytes");
    /* every truncation of a valid file is rejected */
    for (size_t n = 8; n < sizeof(reference_file); n++) {
        write_bytes(path, reference_file, n);
        expect_reject(path, n < 80 ? "runs past the end of the"
                                   : "data_offsets [0,24] are past the end");
    }
    uint8_t big[16] = {0xe8, 0x03}; /* header length 1000 in a 16-byte file */
    write_bytes(path, big, sizeof(big));
    expect_reject(path, "header length 1000 runs past the end of the 16-byte file");
    uint8_t absurd[16] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* 2^63 */
    write_bytes(path, absurd, sizeof(absurd));
    expect_reject(path, "header length 9223372036854775808 exceeds the 100000000-byte limit");
    uint8_t extra[sizeof(reference_file) + 4];
    memcpy(extra, reference_file, sizeof(reference_file));
    memset(extra + sizeof(reference_file), 0, 4);
    write_bytes(path, extra, sizeof(extra));
    expect_reject(path, "bytes 24..28 belong to no tensor");
    expect_reject(tmp_path("does-not-exist.safetensors"), "no such file");
    expect_reject(tmpdir, "is a directory, expected a regular file");
    /* a FIFO given as --model is refused at once (it blocked in fopen until a writer came) */
    const char *fifo = tmp_path("model.fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    expect_reject(fifo, "is a FIFO (named pipe), expected a regular file");
    expect_reject("/dev/zero", "is a character device");
    alarm(0);
    /* from memory: the same checks, the name in messages */
    log_reset();
    SafeTensors *st = safetensors_read_memory(reference_file, sizeof(reference_file), "mem");
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(safetensors_path(st), "mem");
    safetensors_free(st);
    ck_assert_ptr_null(safetensors_read_memory(reference_file, 20, "cut"));
    ck_assert_msg(strstr(logbuf, "cut: ") != NULL, "got: %s", logbuf);
    ck_assert_ptr_null(safetensors_read_memory(NULL, 0, NULL));
}
END_TEST

START_TEST(test_reject_header)
{
    /* E(name, dtype, shape, offsets): one header entry */
#define E(n, dt, sh, off) "\"" n "\":{\"dtype\":" dt ",\"shape\":" sh ",\"data_offsets\":" off "}"
    static const struct { const char *header; size_t data; const char *what; } cases[] = {
        {"{\"a\":", 0, "not valid JSON"},
        {"{" E("a", "\"F32\"", "[1]", "[0,4]") ",}", 4, "not valid JSON"},
        {"[1,2]", 0, "does not begin with '{'"},
        {" {}", 0, "does not begin with '{'"},
        {"{} x", 0, "trailing bytes"},
        {"{\"caf\xe9\":1}", 0, "not valid UTF-8"},
        {"{\"a\":3}", 0, "tensor 'a' is a number, expected an object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' has no \"data_offsets\""},
        {"{" E("a", "32", "[1]", "[0,4]") "}", 4, "\"dtype\" is a number, expected a string"},
        {"{" E("a", "\"F32\"", "\"1\"", "[0,4]") "}", 4, "\"shape\" is a string"},
        {"{" E("a", "\"F33\"", "[1]", "[0,4]") "}", 4, "unknown dtype 'F33'"},
        {"{" E("a", "\"F32\"", "[-1]", "[0,4]") "}", 4, "shape[0] is not a non-negative integer"},
        {"{" E("a", "\"F32\"", "[1.5]", "[0,4]") "}", 4, "shape[0] is not a non-negative integer"},
        {"{" E("a", "\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "has 9 dims"},
        {"{" E("a", "\"F32\"", "[4294967296,4294967296]", "[0,4]") "}", 4, "overflows"},
        {"{" E("a", "\"F32\"", "[1]", "[0]") "}", 4, "two non-negative integers"},
        {"{" E("a", "\"F32\"", "[1]", "[0,4,8]") "}", 8, "two non-negative integers"},
        {"{" E("a", "\"F32\"", "[1]", "[-4,0]") "}", 4, "two non-negative integers"},
        {"{" E("a", "\"F32\"", "[2,3]", "[0,20]") "}", 20,
         "tensor 'a' (F32 [2,3]) needs 24 bytes but data_offsets [0,20] span 20"},
        {"{" E("a", "\"F32\"", "[4]", "[0,16]") "}", 8,
         "data_offsets [0,16] are past the end of the 8-byte data buffer"},
        {"{" E("a", "\"F32\"", "[0]", "[4,0]") "}", 4, "reversed"},
        {"{" E("a", "\"F32\"", "[2]", "[0,8]") "," E("b", "\"F32\"", "[2]", "[4,12]") "}", 12,
         "tensors 'a' and 'b' overlap"},
        {"{" E("a", "\"F32\"", "[2]", "[0,8]") "," E("b", "\"F32\"", "[2]", "[0,8]") "}", 8,
         "tensors 'a' and 'b' overlap"},
        {"{" E("a", "\"F32\"", "[2]", "[0,8]") "," E("b", "\"F32\"", "[2]", "[16,24]") "}", 24,
         "bytes 8..16 before tensor 'b' belong to no tensor"},
        {"{" E("a", "\"U8\"", "[2]", "[2,4]") "}", 4, "bytes 0..2 before tensor 'a'"},
        {"{" E("a", "\"F32\"", "[1]", "[0,4]") "," E("a", "\"F32\"", "[1]", "[4,8]") "}", 8,
         "tensor 'a' appears twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' is a number, expected a string"},
        {"{\"__metadata__\":[\"k\"]}", 0, "\"__metadata__\" is an array, expected an object"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "__metadata__ key 'k' appears twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "header%zu.safetensors", i);
        const char *path = tmp_path(name);
        write_st(path, cases[i].header, cases[i].data);
        expect_reject(path, cases[i].what);
    }
    /* accepted edge cases: empty header, zero-size tensors, a scalar, JSON whitespace padding */
    const char *path = tmp_path("edge.safetensors");
    write_st(path, "{}", 0);
    SafeTensors *st = safetensors_read(path);
    ck_assert(st && safetensors_count(st) == 0);
    safetensors_free(st);
    write_st(path, "{ " E("e", "\"I8\"", "[3,0]", "[2,2]") ", " E("s", "\"I16\"", "[]", "[0,2]")
                   "}  \n", 2);
#undef E
    st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    ck_assert(safetensors_find(st, "e")->nbytes == 0 && safetensors_find(st, "s")->ndim == 0);
    ck_assert_ptr_null(safetensors_find(st, "x"));
    safetensors_free(st);
}
END_TEST

START_TEST(test_reject_load)
{
    const char *path = tmp_path("model.safetensors");
    float w[8] = {0};
    int64_t file_shape[2] = {4, 2}, s32[2] = {3, 2}, s6[1] = {8}, s1[1] = {1};
    int64_t step = 5;
    SafeTensorsWriter *wr = safetensors_writer_create();
    ck_assert_int_eq(
        safetensors_writer_add_f32(wr, "decoder.fc.weight", 2, file_shape, w, SAC_DTYPE_F16), 0);
    ck_assert_int_eq(safetensors_writer_add_raw(wr, "step", SAC_DTYPE_I64, 1, s1, &step), 0);
    ck_assert_int_eq(safetensors_writer_write(wr, path), 0);
    safetensors_writer_free(wr);
    SafeTensors *st = safetensors_read(path);
    ck_assert_ptr_nonnull(st);
    char want[512];
    float got[8];

    log_reset();
    ck_assert_int_eq(safetensors_load_f32(st, "decoder.fc.weight", got, 2, s32), SAC_ERR_FORMAT);
    snprintf(want, sizeof(want),
             "%s: tensor 'decoder.fc.weight' has shape [4,2], expected [3,2]\n", path);
    ck_assert_str_eq(logbuf, want);

    log_reset();
    ck_assert_int_eq(safetensors_load_f32(st, "decoder.fc.weight", got, 1, s6), SAC_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(logbuf, "has shape [4,2], expected [8]"));

    log_reset();
    ck_assert_int_eq(safetensors_load_f32(st, "decoder.fc.bias", got, 1, s1), SAC_ERR_NOTFOUND);
    snprintf(want, sizeof(want), "%s: tensor 'decoder.fc.bias' is missing\n", path);
    ck_assert_str_eq(logbuf, want);

    log_reset();
    ck_assert_int_eq(safetensors_load_f32(st, "step", got, 1, s1), SAC_ERR_FORMAT);
    snprintf(want, sizeof(want), "%s: tensor 'step' has dtype I64, expected a float type "
             "(F32, F16, BF16 or F64)\n", path);
    ck_assert_str_eq(logbuf, want);
    safetensors_free(st);
}
END_TEST

/* ---- writer errors and atomicity ---- */

START_TEST(test_writer_errors)
{
    float x[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4}, neg[1] = {-1};
    SafeTensorsWriter *w = safetensors_writer_create();
    log_reset();
    ck_assert_int_eq(safetensors_writer_add_f32(w, "a", 1, s4, x, SAC_DTYPE_F32), 0);
    ck_assert_int_eq(safetensors_writer_add_f32(w, "a", 1, s4, x, SAC_DTYPE_F32), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(logbuf, "tensor 'a' added twice"));
    ck_assert_int_eq(safetensors_writer_add_f32(w, "__metadata__", 1, s4, x, SAC_DTYPE_F32),
                     SAC_ERR_INVALID);
    ck_assert_int_eq(safetensors_writer_add_f32(w, "", 1, s4, x, SAC_DTYPE_F32), SAC_ERR_INVALID);
    ck_assert_int_eq(safetensors_writer_add_f32(w, "b", 1, neg, x, SAC_DTYPE_F32), SAC_ERR_INVALID);
    ck_assert_int_eq(safetensors_writer_add_f32(w, "b", 1, s4, x, SAC_DTYPE_I32), SAC_ERR_INVALID);
    ck_assert_int_eq(safetensors_writer_add_raw(w, "b", SAC_DTYPE_COUNT, 1, s4, x),
                     SAC_ERR_INVALID);
    ck_assert_int_eq(safetensors_writer_add_raw(w, "b", SAC_DTYPE_I32, 9, s4, x), SAC_ERR_INVALID);

    /* a failed write leaves nothing behind; a good one leaves exactly the target */
    int before = files_in_tmpdir();
    log_reset();
    const char *nodir = tmp_path("no/such/dir/m.safetensors");
    ck_assert_int_lt(safetensors_writer_write(w, nodir), 0);
    ck_assert_ptr_nonnull(strstr(logbuf, nodir));
    const char *dir = tmp_path("a_directory");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    log_reset();
    ck_assert_int_eq(safetensors_writer_write(w, dir), SAC_ERR_IO); /* rename onto a directory */
    ck_assert_ptr_nonnull(strstr(logbuf, dir));
    ck_assert_int_eq(files_in_tmpdir(), before + 1);
    rmdir(dir);
    const char *path = tmp_path("atomic.safetensors");
    write_bytes(path, "old contents", 12);
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    ck_assert_int_eq(files_in_tmpdir(), before + 1);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_ne(sb.st_mode & 0044, 0); /* not mkstemp's 0600 under the usual umask 022 */
    SafeTensors *st = safetensors_read(path);
    ck_assert(st && safetensors_count(st) == 1);
    safetensors_free(st);
    unlink(path);
    safetensors_writer_free(w);
    safetensors_writer_free(NULL);
}
END_TEST

/* ---- fuzz ---- */

/* Read must never crash; on success every tensor must load as itself. */
static int read_and_touch(const char *path)
{
    SafeTensors *st = safetensors_read(path);
    if (!st) return 0;
    for (int i = 0; i < safetensors_count(st); i++) {
        const SafeTensor *t = safetensors_at(st, i);
        float *dst = malloc(t->nbytes * sizeof(float) + sizeof(float));
        safetensors_load_f32(st, t->name, dst, t->ndim, t->shape);
        ck_assert_int_eq(safetensors_load_raw(st, t->name, t->dtype, dst, t->ndim, t->shape), 0);
        free(dst);
    }
    for (int i = 0; i < safetensors_meta_count(st); i++) {
        const char *k, *v;
        ck_assert_int_eq(safetensors_meta_at(st, i, &k, &v), 0);
        ck_assert_ptr_eq(safetensors_meta(st, k), v);
    }
    safetensors_free(st);
    return 1;
}

START_TEST(test_fuzz)
{
    const char *path = tmp_path("fuzz_src.safetensors"), *mut = tmp_path("fuzz.safetensors");
    float a[4] = {1, -2, 3, 0.5f}, b[3] = {7, 8, 9};
    int64_t s22[2] = {2, 2}, s3[1] = {3}, s1[1] = {1}, c = 42;
    SafeTensorsWriter *w = safetensors_writer_create();
    safetensors_writer_add_f32(w, "a", 2, s22, a, SAC_DTYPE_F32);
    safetensors_writer_add_f32(w, "b", 1, s3, b, SAC_DTYPE_F16);
    safetensors_writer_add_raw(w, "c", SAC_DTYPE_I64, 1, s1, &c);
    safetensors_writer_meta(w, "k", "v");
    ck_assert_int_eq(safetensors_writer_write(w, path), 0);
    safetensors_writer_free(w);
    size_t n;
    uint8_t *src = read_bytes(path, &n), *buf = malloc(n);
    log_reset();
    ck_assert_int_eq(read_and_touch(path), 1);
    for (size_t len = 0; len < n; len++) { /* every truncation */
        write_bytes(mut, src, len);
        ck_assert_msg(!read_and_touch(mut), "truncation to %zu bytes accepted", len);
    }
    SacRng rng;
    sac_rng_seed(&rng, 99, 5);
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, src, n);
        int flips = 1 + (int)(sac_rng_u32(&rng) % 3);
        for (int f = 0; f < flips; f++) {
            size_t pos = sac_rng_u32(&rng) % n;
            uint8_t bit = (uint8_t)(1u << (sac_rng_u32(&rng) % 8)); /* odd iters: a random byte */
            buf[pos] = (iter & 1) ? (uint8_t)sac_rng_u32(&rng) : buf[pos] ^ bit;
        }
        write_bytes(mut, buf, n);
        log_reset();
        accepted += read_and_touch(mut);
    }
    /* flips in the data buffer (and some in names) keep the file valid; most others do not */
    ck_assert_int_gt(accepted, 100);
    ck_assert_int_lt(accepted, 2900);
    free(src);
    free(buf);
}
END_TEST

static void tmpdir_remove(void)
{
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') unlink(tmp_path(e->d_name));
    if (d) closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("safetensors");
    const TTest *tests[] = {test_half_table, test_half_exhaustive, test_roundtrip, test_reference_bytes,
        test_float_dtypes, test_reject_file_level, test_reject_header, test_reject_load, test_writer_errors,
        test_fuzz, NULL};
    check_case(s, "core", 60, tests);
    const int status = check_run(s);
    tmpdir_remove();
    return status;
}
