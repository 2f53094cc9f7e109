/*
 * kernel_select.h - which SIMD kernel a layer runs, chosen at run time (dav1d's cpu.c idea): the
 * AVX2 and AVX-512 kernels are compiled with target attributes whatever -march says, and run only
 * where __builtin_cpu_supports says the CPU has them, so one binary runs on any x86-64; elsewhere
 * only the portable C kernels exist. Used by depthwise.c and pointwise.c; the tests run every
 * kernel the CPU supports against the same reference.
 */
#ifndef SACCADE_KERNEL_SELECT_H
#define SACCADE_KERNEL_SELECT_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SAC_KERNEL_X86 1
#else
#define SAC_KERNEL_X86 0
#endif

enum { SAC_KERNEL_AUTO = 0, SAC_KERNEL_C = 1, SAC_KERNEL_AVX2 = 2, SAC_KERNEL_AVX512 = 3 };

/* 1 when this build and CPU can run kernel k (SAC_KERNEL_AUTO and SAC_KERNEL_C always). */
static inline int sac_kernel_supported(int k)
{
    switch (k) {
    case SAC_KERNEL_AUTO:
    case SAC_KERNEL_C: return 1;
#if SAC_KERNEL_X86
    case SAC_KERNEL_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SAC_KERNEL_AVX512: return __builtin_cpu_supports("avx512f");
#endif
    default: return 0;
    }
}

/* The fastest kernel this CPU runs (never SAC_KERNEL_AUTO). */
static inline int sac_kernel_best(void)
{
    if (sac_kernel_supported(SAC_KERNEL_AVX512)) return SAC_KERNEL_AVX512;
    if (sac_kernel_supported(SAC_KERNEL_AVX2)) return SAC_KERNEL_AVX2;
    return SAC_KERNEL_C;
}

/* "auto", "c", "avx2", "avx512". */
static inline const char *sac_kernel_name(int k)
{
    static const char *const names[] = {"auto", "c", "avx2", "avx512"};
    return k >= 0 && k <= SAC_KERNEL_AVX512 ? names[k] : "?";
}

#endif
