/*
 * cpu.h - which SIMD kernels run, chosen once at run time by CPU feature (dav1d's cpu.c idea),
 * so one binary built for the x86-64 baseline runs on any x86-64 and still uses AVX2 or AVX-512
 * where the CPU has them.
 *
 * Paths, each a superset of the one before:
 *   c       portable C (the only path on other architectures)
 *   avx2    AVX2 + FMA + F16C (Haswell, Zen 1 and later)
 *   avx512  AVX-512 F/BW/VL/DQ on top of avx2 (Skylake-SP, Ice Lake, Zen 4 and later)
 *
 * The one dispatch mechanism: a file with kernels compiles each variant with SAC_TARGET_AVX2 /
 * SAC_TARGET_AVX512 (GCC/clang target attributes, whatever -march says) and names them f_c,
 * f_avx2, f_avx512; a table `static const F f_fns[] = SAC_KERNEL_TABLE(f);` indexed by
 * sac_kernel() picks one per call (on other architectures every entry is f_c). Plain C loops
 * that only need the wider vectors (no intrinsics) are stamped out per path by SAC_CLONES
 * around an always_inline body. A layer that takes a kernel argument (pointwise, depthwise,
 * MobileNetV2) uses the same SAC_KERNEL_* numbers, SAC_KERNEL_AUTO meaning sac_kernel().
 *
 * SACCADE_KERNELS=c|scalar|avx2|avx512 (read once, at the first call) caps the path, as if the
 * CPU lacked the rest: the tests use it to run every path against the same reference. A path
 * the CPU lacks, or an unknown value, is reported once through sac_log and ignored.
 */
#ifndef SACCADE_CPU_H
#define SACCADE_CPU_H

#include <stdatomic.h>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SAC_KERNEL_X86 1
#define SAC_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SAC_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#else
#define SAC_KERNEL_X86 0
#define SAC_TARGET_AVX2
#define SAC_TARGET_AVX512
#endif

enum { SAC_KERNEL_AUTO = 0, SAC_KERNEL_C = 1, SAC_KERNEL_AVX2 = 2, SAC_KERNEL_AVX512 = 3 };

/* The path every dispatched function takes: the best this CPU runs, capped by SACCADE_KERNELS
 * (never SAC_KERNEL_AUTO). Thread-safe; the first call decides (sac_kernel_init), later calls
 * are one relaxed load, cheap enough for inner loops. */
extern _Atomic int sac_kernel_chosen; /* 0 before the first call */
int sac_kernel_init(void);
static inline int sac_kernel(void)
{
    const int k = atomic_load_explicit(&sac_kernel_chosen, memory_order_relaxed);
    return k ? k : sac_kernel_init();
}

/* 1 when kernel k may run: SAC_KERNEL_AUTO and SAC_KERNEL_C always, the others when this build
 * has them, the CPU has their features and SACCADE_KERNELS does not exclude them. */
int sac_kernel_supported(int k);

/* The same as sac_kernel() (the name the layers' kernel arguments use). */
static inline int sac_kernel_best(void) { return sac_kernel(); }

/* "auto", "c", "avx2", "avx512" ("?" for anything else). */
const char *sac_kernel_name(int k);

/* SAC_KERNEL_* for "c" (or "scalar"), "avx2", "avx512", "auto"; -1 for anything else. */
int sac_kernel_parse(const char *name);

/* The best path of the CPU alone, SACCADE_KERNELS ignored (for messages). */
int sac_kernel_cpu(void);

/* The dispatch table of function f: f_c, f_avx2, f_avx512 indexed by SAC_KERNEL_*. */
#if SAC_KERNEL_X86
#define SAC_KERNEL_TABLE(f) {f##_c, f##_c, f##_avx2, f##_avx512}
#else
#define SAC_KERNEL_TABLE(f) {f##_c, f##_c, f##_c, f##_c}
#endif

/* f_c, f_avx2, f_avx512 (static, returning void, parameters `params`) each an inlined copy of
 * `static inline SAC_ALWAYS_INLINE void f_body params`, called with `args`; the compiler
 * vectorises each copy for its own path. */
#define SAC_ALWAYS_INLINE __attribute__((always_inline))
#if SAC_KERNEL_X86
#define SAC_CLONES(f, params, args)                                                                                   \
    static void f##_c params { f##_body args; }                                                                       \
    SAC_TARGET_AVX2 static void f##_avx2 params { f##_body args; }                                                    \
    SAC_TARGET_AVX512 static void f##_avx512 params { f##_body args; }
#else
#define SAC_CLONES(f, params, args) static void f##_c params { f##_body args; }
#endif

#endif
