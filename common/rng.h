/*
 * rng.h - explicit-state random numbers (PCG32, O'Neill 2014). Every random choice in
 * saccade (init, dropout, shuffling, augmentation) takes a SacRng the caller seeded:
 * no rand(), no hidden global state, so runs are reproducible and checkpointable.
 */
#ifndef SACCADE_RNG_H
#define SACCADE_RNG_H

#include <stdint.h>

typedef struct SacRng {
    uint64_t state;
    uint64_t inc;
} SacRng;

void sac_rng_seed(SacRng *r, uint64_t seed, uint64_t stream);
uint32_t sac_rng_u32(SacRng *r);
/* Uniform in [0, 1). */
float sac_rng_uniform(SacRng *r);
/* Uniform integer in [0, n), n > 0, unbiased. */
uint32_t sac_rng_below(SacRng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float sac_rng_normal(SacRng *r);
/* Fisher-Yates shuffle of n ints. */
void sac_rng_shuffle(SacRng *r, int *a, int n);

#endif
