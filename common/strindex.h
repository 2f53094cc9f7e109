/*
 * strindex.h - an index from strings to their positions in an array its owner keeps (the
 * dataset's image names, the vocabulary's words): open addressing over a power-of-two number
 * of slots, FNV-1a hashes, linear probing. The index holds positions only; every call reads the
 * strings through the owner's key function (key(ctx, i): the string at position i), so they
 * are stored once.
 *
 * Size letters (project legend): none of the tensor sizes appear here.
 */
#ifndef SACCADE_STRINDEX_H
#define SACCADE_STRINDEX_H

#include <stddef.h>

typedef const char *(*StrIndexKey)(const void *ctx, int i);

typedef struct {
    int *slots;    /* (nslots) a position, -1 = empty */
    size_t nslots; /* 0 (nothing indexed yet) or a power of two */
} StrIndex;

/* The position of s, or -1 when it is not indexed. */
int strindex_find(const StrIndex *x, const char *s, StrIndexKey key, const void *ctx);
/* Index position pos under s, which is not indexed yet; the owner keeps a free slot (it
 * rebuilds with twice the slots before they are half full). */
void strindex_add(StrIndex *x, const char *s, int pos, StrIndexKey key, const void *ctx);
/* New slots (nslots, a power of two) holding positions 0..n-1. SAC_OK, or SAC_ERR_NOMEM with
 * the index unchanged. */
int strindex_rebuild(StrIndex *x, size_t nslots, int n, StrIndexKey key, const void *ctx);
/* Release the slots: the index is empty again. */
void strindex_free(StrIndex *x);

#endif
