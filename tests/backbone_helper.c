/*
 * backbone_helper.c - writes a backbone file (the format `saccade import` writes, see
 * common/backbone_file.h) with seeded random weights for the grid-14 MobileNetV2, for tests
 * that must not depend on ../shared/pretrained:
 *
 *   backbone_helper OUT.safetensors [SEED]
 *
 * Weights are uniform with variance-keeping bounds and biases are zero, so activations stay O(1)
 * through the 14 blocks and different images give different features. Exit status 0, or 1 (message).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mobilenet.h"
#include "rng.h"
#include "sac.h"
#include "safetensors.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: backbone_helper OUT.safetensors [SEED]\n");
        return 1;
    }
    MobileNetConfig mc;
    mobilenet_config_default(&mc);
    mc.grid = MOBILENET_GRID14;
    MobileNetSpec specs[MOBILENET_MAX_SPECS];
    const int n = mobilenet_specs(&mc, specs, MOBILENET_MAX_SPECS);
    SafeTensorsWriter *w = safetensors_writer_create();
    if (n < 1 || !w) return 1;
    SacRng rng;
    sac_rng_seed(&rng, argc == 3 ? strtoull(argv[2], NULL, 10) : 1, 11);
    int st = SAC_OK;
    for (int i = 0; i < n && !st; i++) {
        size_t numel = 1;
        for (int d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        float *x = malloc(sizeof(float) * numel);
        if (!x) return 1;
        const int64_t *s = specs[i].shape;
        /* linear projections (features.N.conv.2, features.1.conv.1) keep the variance with
         * 3 / fan_in, layers before a ReLU6 with 6 / fan_in; no biases, which would otherwise
         * swamp the image's signal deep in the network */
        const char *nm = specs[i].name;
        const int linear = strstr(nm, "conv.2.weight") || !strcmp(nm, "features.1.conv.1.weight");
        const float bound = specs[i].ndim == 4 ? sqrtf((linear ? 3.0f : 6.0f) / (float)(s[1] * s[2] * s[3])) : 0.0f;
        for (size_t k = 0; k < numel; k++) x[k] = bound * (2.0f * sac_rng_uniform(&rng) - 1.0f);
        st = safetensors_writer_add_f32(w, specs[i].name, specs[i].ndim, specs[i].shape, x, SAC_DTYPE_F32);
        free(x);
    }
    const char *meta[][2] = {{"format", "saccade-backbone-1"}, {"arch", "mobilenet_v2"}, {"width", "1.0"},
                             {"input_size", "224"}, {"padding", "same"}, {"mean", "[0.5,0.5,0.5]"},
                             {"std", "[0.5,0.5,0.5]"}, {"n_classes", "0"}, {"labels", "[]"},
                             {"source", "backbone_helper (random weights)"}, {"license", "none"}};
    for (size_t k = 0; k < sizeof(meta) / sizeof(meta[0]) && !st; k++) st = safetensors_writer_meta(w, meta[k][0], meta[k][1]);
    if (!st) st = safetensors_writer_write(w, argv[1]);
    safetensors_writer_free(w);
    if (st) fprintf(stderr, "backbone_helper: cannot write %s\n", argv[1]);
    return st ? 1 : 0;
}
