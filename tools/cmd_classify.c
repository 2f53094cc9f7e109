/*
 * cmd_classify.c - `saccade classify`: the ImageNet classes of image files by the pretrained
 * MobileNetV2 of a backbone file (encoder/mobilenet.h), as a check of the backbone and its
 * forward: `path<TAB>rank<TAB>probability<TAB>label` lines, best first.
 *
 * Each image is read with sac_image_load, squashed to the file's input size and normalised with
 * its "mean"/"std" metadata (sac_image_preprocess, as training and captioning do); the padding
 * mode comes from its "padding" metadata, the labels from "labels". Images go through the
 * network CLASSIFY_BATCH at a time. A file that cannot be read is reported and skipped; the
 * exit status is then 1.
 *
 * Size letters: B images in a batch, S input side, N classes, K classes printed (--top).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_file.h"
#include "cli.h"
#include "image.h"
#include "mobilenet.h"
#include "sac.h"
#include "safetensors.h"
#include "threadpool.h"

#define CLASSIFY_BATCH 8

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade classify --backbone FILE [options] IMAGE...\n\n"
            "Classify image files with the ImageNet MobileNetV2 of a backbone file (made by saccade import).\n"
            "Prints K lines per image, best first:\n"
            "  IMAGE<TAB>rank<TAB>probability<TAB>label\n"
            "Files that cannot be read are reported on stderr and skipped; the exit status is then 1.\n\n"
            "options:\n"
            "  --backbone FILE  the backbone file (default: $SACCADE_BACKBONE)\n"
            "  --top K          classes per image (default 5)\n"
            "  --threads N      threads (default 0 = all cores)\n"
            "  --quiet          only errors on stderr\n"
            "  -h, --help       this text\n");
}

/* The network of the backbone file, weights copied out of st. NULL (logged) on failure. */
static MobileNetInfer *open_network(const SafeTensors *st, const BackboneInfo *info, int max_batch)
{
    MobileNetConfig cfg;
    mobilenet_config_default(&cfg);
    cfg.grid = MOBILENET_CLASSIFY;
    cfg.pad_same = info->padding_same;
    cfg.image_size = info->input_size;
    cfg.n_classes = info->n_classes;
    MobileNetSpec specs[MOBILENET_MAX_SPECS];
    const int n = mobilenet_specs(&cfg, specs, MOBILENET_MAX_SPECS);
    if (n < 1) return NULL;
    float *t[MOBILENET_MAX_SPECS] = {0};
    MobileNetInfer *net = NULL;
    int i = 0;
    for (; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < specs[i].ndim; d++) numel *= (size_t)specs[i].shape[d];
        t[i] = sac_alloc_floats(numel);
        if (!t[i] || safetensors_load_f32(st, specs[i].name, t[i], specs[i].ndim, specs[i].shape)) break;
    }
    if (i == n) net = mobilenet_infer_create(&cfg, (const float *const *)t, max_batch);
    for (int k = 0; k < n; k++) free(t[k]);
    return net;
}

/* Softmax of logits (N) into prob, then the K best as (index, probability) in order. */
static void top_k(const float *logits, int N, int K, float *prob, int *idx)
{
    double mx = logits[0], sum = 0.0;
    for (int c = 1; c < N; c++) mx = fmax(mx, logits[c]);
    for (int c = 0; c < N; c++) sum += exp((double)logits[c] - mx);
    for (int c = 0; c < N; c++) prob[c] = (float)(exp((double)logits[c] - mx) / sum);
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int c = 0; c < N; c++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= idx[j] == c;
            if (!taken && (best < 0 || prob[c] > prob[best])) best = c;
        }
        idx[k] = best;
    }
}

enum { O_BACKBONE = 256, O_TOP };

int cmd_classify(int argc, char **argv)
{
    static const struct option longopts[] = {{"backbone", 1, 0, O_BACKBONE},   {"top", 1, 0, O_TOP},
                                             {"threads", 1, 0, CLI_OPT_THREADS}, {"quiet", 0, 0, CLI_OPT_QUIET},
                                             {"help", 0, 0, CLI_OPT_HELP},       {0, 0, 0, 0}};
    const char *path = getenv("SACCADE_BACKBONE");
    long top = 5, threads = 0;
    int quiet = 0, c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_BACKBONE: path = optarg; break;
        case O_TOP:
            if (cli_parse_int("--top", optarg, 1, 100000, &top)) return CLI_USAGE;
            break;
        default:
            if ((rc = cli_common_option("classify", c, argv, help, &threads, &quiet)) != CLI_MORE) return rc;
        }
    }
    if (!path || !*path) return cli_usage_error("classify", "--backbone FILE is required (or set SACCADE_BACKBONE)");
    if (optind >= argc) return cli_usage_error("classify", "expected image files");
    if (quiet) sac_log_set_level(SAC_LOG_ERROR);
    sac_threads_set((int)threads);

    BackboneInfo info;
    SafeTensors *st = backbone_file_open(path, &info);
    if (!st) return CLI_FAILED;
    const int n_images = argc - optind, max_b = SAC_MIN(CLASSIFY_BATCH, n_images);
    const int S = info.input_size, N = info.n_classes, K = (int)SAC_MIN(top, (long)N);
    MobileNetInfer *net = open_network(st, &info, max_b);
    float *images = sac_alloc_floats((size_t)max_b * 3 * S * S), *logits = sac_alloc_floats((size_t)max_b * N);
    float *prob = sac_alloc_floats((size_t)N);
    int *idx = sac_malloc(sizeof(int) * (size_t)K);
    const char **names = sac_malloc(sizeof(char *) * (size_t)max_b);
    int status = CLI_OK;
    if (!net || !images || !logits || !prob || !idx || !names) {
        status = CLI_FAILED;
        goto done;
    }
    const double t0 = sac_time();
    int done_images = 0;
    for (int next = optind; next < argc;) {
        int B = 0;
        for (; next < argc && B < max_b; next++) {
            SacImage img = {0};
            if (sac_image_load(argv[next], &img, 0) ||
                sac_image_preprocess(&img, S, info.mean, info.std, images + (size_t)B * 3 * S * S)) {
                sac_image_free(&img);
                status = CLI_FAILED; /* the reason is logged */
                continue;
            }
            sac_image_free(&img);
            names[B++] = argv[next];
        }
        if (B == 0) continue;
        if (mobilenet_infer_classify(net, logits, NULL, images, B)) {
            status = CLI_FAILED;
            goto done;
        }
        for (int b = 0; b < B; b++) {
            top_k(logits + (size_t)b * N, N, K, prob, idx);
            for (int k = 0; k < K; k++) {
                char label[256];
                if (backbone_file_label(st, idx[k], label, sizeof(label)))
                    snprintf(label, sizeof(label), "class %d", idx[k]);
                cli_put_tsv_path(stdout, names[b]); /* tab, newline, CR, backslash escaped as caption does */
                printf("\t%d\t%.4f\t%s\n", k + 1, prob[idx[k]], label);
            }
        }
        done_images += B;
    }
    if (!quiet)
        fprintf(stderr, "saccade classify: %d of %d images in %.2f s (%s padding, %d classes)\n", done_images, n_images,
                sac_time() - t0, info.padding_same ? "same" : "symmetric", N);
done:
    mobilenet_infer_free(net);
    safetensors_free(st);
    free(images), free(logits), free(prob), free(idx), free(names);
    return status;
}
