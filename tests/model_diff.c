/*
 * model_diff.c - compare the tensors of two safetensors files (models or training checkpoints),
 * for tests/test_mpi.sh.
 *
 *   model_diff A B exact          every tensor byte for byte, the same names, dtypes and shapes
 *   model_diff A B ATOL RTOL      F32 tensors: |a - b| <= ATOL + RTOL |b| element by element;
 *                                 other dtypes byte for byte
 *   model_diff step CKPT          print a training checkpoint's step (train.counters[0])
 *   model_diff --skip P1,P2 A B ...  the same, leaving out the tensors whose names start with
 *                                 one of the prefixes
 *
 * Prints the worst element (tensor, index, both values, |a - b|) and exits 0 when every check
 * holds, 1 when one does not, 2 on a usage or read error.
 *
 * Size letters: n elements of a tensor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static float f32_at(const uint8_t *p, size_t i)
{
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

/* 1 when name starts with one of the comma-separated prefixes in list (NULL: none). */
static int skipped(const char *list, const char *name)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && !strncmp(name, p, n)) return 1;
        p = e ? e + 1 : p + n;
    }
    return 0;
}

static int print_step(const char *path)
{
    SafeTensors *f = safetensors_read(path);
    const int64_t six = 6;
    int64_t counters[6];
    int st = f ? safetensors_load_raw(f, "train.counters", SAC_DTYPE_I64, counters, 1, &six) : -1;
    if (!st) printf("%lld\n", (long long)counters[0]);
    safetensors_free(f);
    return st ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "step")) return print_step(argv[2]);
    const char *skip = NULL; /* --skip P1,P2: tensors whose names start with these are left out */
    if (argc > 2 && !strcmp(argv[1], "--skip")) skip = argv[2], argc -= 2, argv += 2;
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: model_diff [--skip P1,P2] A B exact | model_diff [--skip P1,P2] A B ATOL RTOL | model_diff step CKPT\n");
        return 2;
    }
    const int exact = argc == 4;
    if (exact && strcmp(argv[3], "exact")) {
        fprintf(stderr, "model_diff: expected \"exact\" or ATOL RTOL, found \"%s\"\n", argv[3]);
        return 2;
    }
    const double atol = exact ? 0 : atof(argv[3]), rtol = exact ? 0 : atof(argv[4]);
    SafeTensors *a = safetensors_read(argv[1]), *b = safetensors_read(argv[2]);
    if (!a || !b) {
        safetensors_free(a), safetensors_free(b);
        return 2;
    }
    int bad = safetensors_count(a) != safetensors_count(b), bad_shape = bad;
    if (bad) printf("%s has %d tensors, %s has %d\n", argv[1], safetensors_count(a), argv[2], safetensors_count(b));
    double worst = 0, worst_excess = -1, worst_a = 0, worst_b = 0;
    const char *worst_name = "-";
    size_t worst_i = 0, n_values = 0, n_differ = 0;
    for (int t = 0; t < safetensors_count(a) && !bad_shape; t++) {
        const SafeTensor *x = safetensors_at(a, t), *y = safetensors_find(b, x->name);
        if (!y || y->dtype != x->dtype || y->nbytes != x->nbytes || y->ndim != x->ndim) {
            printf("tensor %s: missing from %s or of another dtype or shape\n", x->name, argv[2]);
            bad = bad_shape = 1;
            break;
        }
        if (skipped(skip, x->name)) continue;
        if (exact || x->dtype != SAC_DTYPE_F32) {
            if (memcmp(x->data, y->data, x->nbytes)) {
                printf("tensor %s (%s): the bytes differ\n", x->name, sac_dtype_name(x->dtype));
                bad = 1;
            }
            continue;
        }
        for (size_t i = 0; i < x->nbytes / 4; i++) {
            const double va = f32_at(x->data, i), vb = f32_at(y->data, i), d = fabs(va - vb);
            const double excess = d - (atol + rtol * fabs(vb));
            n_values++;
            n_differ += d > 0;
            if (!(d <= atol + rtol * fabs(vb))) bad = 1;
            if (excess > worst_excess || isnan(d)) {
                worst_excess = isnan(d) ? INFINITY : excess;
                worst = d, worst_a = va, worst_b = vb, worst_name = x->name, worst_i = i;
            }
        }
    }
    if (!exact)
        printf("%zu float values, %zu differ; worst against the tolerance: %s[%zu] %.9g vs %.9g (|a - b| = %.3g, "
               "allowed %.3g)\n", n_values, n_differ, worst_name, worst_i, worst_a, worst_b, worst,
               atol + rtol * fabs(worst_b));
    safetensors_free(a), safetensors_free(b);
    return bad;
}
