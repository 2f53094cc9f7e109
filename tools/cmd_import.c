/*
 * cmd_import.c - `saccade import`: convert ImageNet-pretrained MobileNetV2 weights (Google's
 * TFLite model or a torchvision state dict in safetensors) into a backbone file for the encoder
 * (format in common/backbone_file.h, conversion in common/backbone_import.h).
 *
 * Size letters: none (the conversion lives in common/backbone_import.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "backbone_import.h"
#include "cli.h"
#include "sac.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade import SRC -o OUT [--labels FILE] [--license TEXT]\n\n"
            "Convert ImageNet-pretrained MobileNetV2 (width 1.0, 224x224) weights into a saccade backbone file\n"
            "(float32 safetensors, batchnorm folded into every convolution, torchvision tensor names).\n\n"
            "SRC is detected by its contents:\n"
            "  TFLite     Google's uint8-quantized mobilenet_v2_1.0_224_quant.tflite: the graph is matched to\n"
            "             MobileNetV2 layer by layer and the weights dequantized (1001 classes, TF SAME padding,\n"
            "             input scaled to [-1, 1])\n"
            "  safetensors  a torchvision mobilenet_v2 state dict (batchnorm folded with eps 1e-5; symmetric\n"
            "             padding, ImageNet mean/std)\n\n"
            "options:\n"
            "  -o, --out FILE     the backbone file to write (atomically; never over SRC)\n"
            "  --labels FILE      class names, one a line, as many as the model has classes (stored in the\n"
            "                     file's metadata)\n"
            "  --license TEXT     licence of the weights (default: Apache-2.0 for TFLite, else\n"
            "                     \"unknown, see source\")\n"
            "  -q, --quiet        no summary line\n"
            "  -h, --help         this text\n\n"
            "On success one line on stderr gives the tensors, parameters and the source's sha256.\n"
            "Exit status: 0 written, 1 the conversion failed (OUT untouched), 2 usage error.\n");
}

enum { O_LABELS = 256, O_LICENSE, O_HELP };

int cmd_import(int argc, char **argv)
{
    static const struct option longopts[] = {{"out", 1, 0, 'o'},        {"labels", 1, 0, O_LABELS},
                                             {"license", 1, 0, O_LICENSE}, {"quiet", 0, 0, 'q'},
                                             {"help", 0, 0, O_HELP},     {0, 0, 0, 0}};
    BackboneImportOptions opt = {0};
    const char *out = NULL;
    int quiet = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_LABELS: opt.labels_path = optarg; break;
        case O_LICENSE: opt.license = optarg; break;
        case 'q': quiet = 1; break;
        case 'h':
        case O_HELP: help(stdout); return CLI_OK;
        default: return cli_option_error("import", c, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("import", "expected a source file (TFLite or safetensors)");
    if (optind + 1 < argc) return cli_usage_error("import", "unexpected argument '%s'", argv[optind + 1]);
    if (!out || !*out) return cli_usage_error("import", "-o OUT is required");
    if (opt.license && !*opt.license) return cli_usage_error("import", "--license must not be empty");
    const char *src = argv[optind];
    if (!strcmp(src, out)) return cli_usage_error("import", "OUT is SRC: refusing to overwrite the source");

    BackboneImportReport rep;
    if (backbone_import(src, out, &opt, &rep)) {
        fprintf(stderr, "saccade import: %s was not written\n", out);
        return CLI_FAILED;
    }
    if (!quiet) {
        fprintf(stderr, "saccade import: wrote %s: %d tensors, %lld parameters, %d classes, from %s %s (sha256 %s)",
                out, rep.n_tensors, (long long)rep.n_params, rep.n_classes, rep.kind, src, rep.sha256);
        if (!strcmp(rep.kind, "tflite"))
            fprintf(stderr, "; %d operators, %d convolutions, %d/%d bias scales = input x weight scale", rep.n_operators,
                    rep.n_convs, rep.n_bias_checked - rep.n_bias_mismatch, rep.n_bias_checked);
        fprintf(stderr, "\n");
    }
    return CLI_OK;
}
