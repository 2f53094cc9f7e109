/*
 * fuzz_safetensors.c - the safetensors reader from memory (safetensors_read_memory): header
 * parsing and validation, then every accessor on what was accepted: each tensor's float copy
 * (F32/F16/BF16/F64, at most 1 MiB each) and raw copy, and the metadata.
 * Size letters: none.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sac.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    SafeTensors *st = safetensors_read_memory(data, size, "fuzz");
    if (!st) return 0;
    for (int i = 0; i < safetensors_count(st); i++) {
        const SafeTensor *t = safetensors_at(st, i);
        if (!t || safetensors_find(st, t->name) != t) fuzz_fail("tensor lookup");
        if (t->nbytes > (1u << 20)) continue;
        void *dst = malloc(t->nbytes ? t->nbytes * 4 : 4); /* F16 -> f32 doubles the bytes */
        if (!dst) continue;
        safetensors_load_f32(st, t->name, dst, t->ndim, t->shape);
        if (safetensors_load_raw(st, t->name, t->dtype, dst, t->ndim, t->shape) != SAC_OK)
            fuzz_fail("raw copy of an accepted tensor failed");
        free(dst);
    }
    for (int i = 0; i < safetensors_meta_count(st); i++) {
        const char *k, *v;
        if (safetensors_meta_at(st, i, &k, &v) != SAC_OK || !k || !v) fuzz_fail("metadata");
        if (strcmp(safetensors_meta(st, k), v) != 0) fuzz_fail("metadata lookup");
    }
    safetensors_free(st);
    return 0;
}
