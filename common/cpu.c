/*
 * cpu.c - the kernel path, chosen once from the CPU's features and SACCADE_KERNELS; see cpu.h.
 */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"

#if SAC_KERNEL_X86
#include <cpuid.h>
#endif

static int cpu_path = SAC_KERNEL_C;  /* the CPU's best */
static int used_path = SAC_KERNEL_C; /* capped by SACCADE_KERNELS */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static int detect(void)
{
#if SAC_KERNEL_X86
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know it); the OS saves the
     * ymm state whenever "avx2" is reported */
    unsigned a, b, c = 0, d;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return avx512 ? SAC_KERNEL_AVX512 : avx2 ? SAC_KERNEL_AVX2 : SAC_KERNEL_C;
#else
    return SAC_KERNEL_C;
#endif
}

int sac_kernel_parse(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "auto")) return SAC_KERNEL_AUTO;
    if (!strcmp(name, "c") || !strcmp(name, "scalar")) return SAC_KERNEL_C;
    if (!strcmp(name, "avx2")) return SAC_KERNEL_AVX2;
    if (!strcmp(name, "avx512")) return SAC_KERNEL_AVX512;
    return -1;
}

static void cpu_init(void)
{
    cpu_path = used_path = detect();
    const char *env = getenv("SACCADE_KERNELS");
    if (!env || !*env) return;
    const int want = sac_kernel_parse(env);
    if (want < 0)
        sac_warn("SACCADE_KERNELS=%s: expected c, scalar, avx2, avx512 or auto; using %s", env,
                 sac_kernel_name(cpu_path));
    else if (want > cpu_path)
        sac_warn("SACCADE_KERNELS=%s: this %s lacks it; using %s", env, SAC_KERNEL_X86 ? "CPU" : "build",
                 sac_kernel_name(cpu_path));
    else if (want != SAC_KERNEL_AUTO)
        used_path = want;
}

_Atomic int sac_kernel_chosen;

int sac_kernel_init(void)
{
    pthread_once(&cpu_once, cpu_init);
    atomic_store_explicit(&sac_kernel_chosen, used_path, memory_order_relaxed);
    return used_path;
}

int sac_kernel_cpu(void)
{
    pthread_once(&cpu_once, cpu_init);
    return cpu_path;
}

int sac_kernel_supported(int k) { return k == SAC_KERNEL_AUTO || (k >= SAC_KERNEL_C && k <= sac_kernel()); }

const char *sac_kernel_name(int k)
{
    static const char *const names[] = {"auto", "c", "avx2", "avx512"};
    return k >= 0 && k <= SAC_KERNEL_AVX512 ? names[k] : "?";
}
