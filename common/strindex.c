/*
 * strindex.c - see strindex.h.
 */
#include "strindex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding s, or the empty slot where it would go (nslots > 0). */
static size_t strindex_slot(const StrIndex *x, const char *s, StrIndexKey key, const void *ctx)
{
    size_t mask = x->nslots - 1, i = (size_t)str_hash(s) & mask;
    while (x->slots[i] >= 0 && strcmp(key(ctx, x->slots[i]), s) != 0) i = (i + 1) & mask;
    return i;
}

int strindex_find(const StrIndex *x, const char *s, StrIndexKey key, const void *ctx)
{
    if (x->nslots == 0) return -1;
    return x->slots[strindex_slot(x, s, key, ctx)];
}

void strindex_add(StrIndex *x, const char *s, int pos, StrIndexKey key, const void *ctx)
{
    x->slots[strindex_slot(x, s, key, ctx)] = pos;
}

int strindex_rebuild(StrIndex *x, size_t nslots, int n, StrIndexKey key, const void *ctx)
{
    int *slots = sac_malloc(nslots * sizeof(int));
    if (!slots) return SAC_ERR_NOMEM;
    for (size_t i = 0; i < nslots; i++) slots[i] = -1;
    free(x->slots);
    x->slots = slots;
    x->nslots = nslots;
    for (int k = 0; k < n; k++) strindex_add(x, key(ctx, k), k, key, ctx);
    return SAC_OK;
}

void strindex_free(StrIndex *x)
{
    free(x->slots);
    x->slots = NULL;
    x->nslots = 0;
}
