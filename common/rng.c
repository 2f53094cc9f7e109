/*
 * rng.c - PCG32 (XSH RR), see rng.h.
 */
#include "rng.h"

#include <math.h>

void sac_rng_seed(SacRng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    sac_rng_u32(r);
    r->state += seed;
    sac_rng_u32(r);
}

uint32_t sac_rng_u32(SacRng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

float sac_rng_uniform(SacRng *r) { return (sac_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

uint32_t sac_rng_below(SacRng *r, uint32_t n)
{
    uint32_t threshold = -n % n;
    for (;;) {
        uint32_t x = sac_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

float sac_rng_normal(SacRng *r)
{
    float u1 = sac_rng_uniform(r), u2 = sac_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

void sac_rng_shuffle(SacRng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sac_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
