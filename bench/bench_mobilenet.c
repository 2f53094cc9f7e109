/*
 * bench_mobilenet.c - time the MobileNetV2 forward (encoder/mobilenet.c) at 224 x 224: one image
 * and a batch, grid 14 and grid 7, random weights (speed does not depend on them). Prints the
 * median and minimum of each as one line per measure; compare with the PyTorch peer in the same
 * run, e.g.
 *     nice build/bench/bench_mobilenet --threads 2
 *     nice /usr/bin/python3 ../shared/peer/sat_ref.py --threads 2 --omp-passive --encoder mnv2 \
 *         --grid 14 --skip-train --caption-batch 64     (its encoder_1img / encoder_64img lines)
 *
 * Size letters: B batch, S input side, P grid positions, E grid channels.
 */
#include <getopt.h>
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "mobilenet.h"
#include "rng.h"
#include "sac.h"
#include "threadpool.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Median and min wall-clock milliseconds of `iters` forwards of B images after one warm-up, and
 * the median CPU milliseconds of the process (all threads, idle spinning of the pool included):
 * on a shared machine the CPU time moves much less than the wall clock. */
static void time_forward(MobileNetInfer *net, float *feats, const float *images, int B, int iters, double *median,
                         double *min, double *cpu)
{
    double *t = malloc(sizeof(double) * (size_t)iters), *c = malloc(sizeof(double) * (size_t)iters);
    mobilenet_infer_forward(net, feats, images, B);
    for (int i = 0; i < iters; i++) {
        const double t0 = sac_time(), c0 = cpu_seconds();
        mobilenet_infer_forward(net, feats, images, B);
        t[i] = (sac_time() - t0) * 1e3;
        c[i] = (cpu_seconds() - c0) * 1e3;
    }
    qsort(t, (size_t)iters, sizeof(double), cmp_double);
    qsort(c, (size_t)iters, sizeof(double), cmp_double);
    *median = t[iters / 2], *min = t[0], *cpu = c[iters / 2];
    free(t), free(c);
}

int main(int argc, char **argv)
{
    int threads = 0, batch = 64, iters1 = 30, itersb = 5, S = 224, kernel = SAC_KERNEL_AUTO;
    static const struct option opts[] = {{"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
                                         {"iters", required_argument, 0, 'i'}, {"size", required_argument, 0, 's'},
                                         {"kernel", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "t:b:i:s:k:h", opts, NULL)) != -1;) {
        switch (c) {
        case 't': threads = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'i': iters1 = atoi(optarg); break;
        case 's': S = atoi(optarg); break;
        case 'k':
            kernel = !strcmp(optarg, "c") ? SAC_KERNEL_C : !strcmp(optarg, "avx2") ? SAC_KERNEL_AVX2
                     : !strcmp(optarg, "avx512")                    ? SAC_KERNEL_AVX512
                                                                    : -1;
            if (kernel < 0 || !sac_kernel_supported(kernel)) {
                fprintf(stderr, "bench_mobilenet: --kernel %s: expected c, avx2 or avx512 (supported here)\n", optarg);
                return 2;
            }
            break;
        default:
            printf("usage: bench_mobilenet [--threads N (0 = all cores)] [--batch B] [--iters N] [--size S]\n"
                   "                       [--kernel c|avx2|avx512 (default: the best here)]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (batch < 1 || iters1 < 1 || S < 32 || S % 32) {
        fprintf(stderr, "bench_mobilenet: --batch, --iters must be >= 1, --size a multiple of 32\n");
        return 2;
    }
    sac_threads_set(threads);
    printf("bench_mobilenet: S %d, %d threads, kernels %s\n", S, sac_threads(),
           sac_kernel_name(kernel == SAC_KERNEL_AUTO ? sac_kernel_best() : kernel));
    SacRng rng;
    sac_rng_seed(&rng, 1, 1);
    float *images = sac_alloc_floats((size_t)batch * 3 * S * S);
    for (size_t i = 0; i < (size_t)batch * 3 * S * S; i++) images[i] = 2.0f * sac_rng_uniform(&rng) - 1.0f;
    const int grids[2] = {MOBILENET_GRID14, MOBILENET_GRID7};
    for (int g = 0; g < 2; g++) {
        MobileNetConfig cfg;
        mobilenet_config_default(&cfg);
        cfg.grid = grids[g], cfg.image_size = S;
        MobileNetSpec specs[MOBILENET_MAX_SPECS];
        const int n = mobilenet_specs(&cfg, specs, MOBILENET_MAX_SPECS);
        float *t[MOBILENET_MAX_SPECS];
        for (int i = 0; i < n; i++) {
            size_t numel = 1;
            double fan_in = 1.0;
            for (int d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
            for (int d = 1; d < specs[i].ndim; d++) fan_in *= (double)specs[i].shape[d];
            const float a = specs[i].ndim == 1 ? 0.1f : (float)sqrt(3.0 / fan_in);
            t[i] = sac_alloc_floats(numel);
            for (size_t k = 0; k < numel; k++) t[i][k] = a * (2.0f * sac_rng_uniform(&rng) - 1.0f);
        }
        MobileNetInfer *net = mobilenet_infer_create(&cfg, (const float *const *)t, batch);
        if (!net || mobilenet_infer_set_kernel(net, kernel)) return 1;
        const int side = mobilenet_grid_side(&cfg);
        float *feats = sac_alloc_floats((size_t)batch * side * side * mobilenet_grid_channels(&cfg));
        double med, mn, cpu;
        time_forward(net, feats, images, 1, iters1, &med, &mn, &cpu);
        printf("grid %2d  1 image   median %7.2f ms  min %7.2f ms  cpu %7.2f ms\n", cfg.grid, med, mn, cpu);
        time_forward(net, feats, images, batch, itersb, &med, &mn, &cpu);
        printf("grid %2d  %d images  median %7.1f ms  min %7.1f ms  cpu %7.1f ms  (%.2f ms per image)\n", cfg.grid,
               batch, med, mn, cpu, med / batch);
        fflush(stdout);
        mobilenet_infer_free(net);
        free(feats);
        for (int i = 0; i < n; i++) free(t[i]);
    }
    free(images);
    return 0;
}
