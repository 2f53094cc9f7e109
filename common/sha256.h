/*
 * sha256.h - SHA-256 (FIPS 180-4), for naming the exact bytes a file was converted from.
 *
 * Sizes: none (a byte stream in, 32 bytes out).
 */
#ifndef SACCADE_SHA256_H
#define SACCADE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t n_bytes;   /* total fed so far */
    uint8_t block[64];  /* pending partial block */
    size_t n_block;
} SacSha256;

void sac_sha256_init(SacSha256 *s);
void sac_sha256_update(SacSha256 *s, const void *data, size_t n);
/* Finish and write the 32-byte digest; s must be re-initialised before reuse. */
void sac_sha256_final(SacSha256 *s, uint8_t digest[32]);
/* Digest of one buffer as 64 lowercase hex digits plus NUL. */
void sac_sha256_hex(const void *data, size_t n, char hex[65]);

#endif
