/*
 * saccade.c - the `saccade` program: dispatch to one subcommand per file (cmd_*.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cpu.h"
#include "matmul.h"
#include "output.h"
#include "version.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"caption", cmd_caption, "caption image files (or paths on stdin)"},
    {"attend", cmd_attend, "draw where the model looked for each word (PNG, HTML)"},
    {"batch", cmd_batch, "caption every image under directories (JSON Lines, TSV, COCO, HTML)"},
    {"train", cmd_train, "train a model on a captioned dataset"},
    {"eval", cmd_eval, "decode a dataset split and score it (BLEU, ROUGE-L, CIDEr-D)"},
    {"score", cmd_score, "score a COCO results file against reference captions"},
    {"import", cmd_import, "convert pretrained MobileNetV2 weights (TFLite, torchvision) to a backbone file"},
    {"classify", cmd_classify, "the ImageNet classes of images by a backbone file's MobileNetV2"},
    {"report", cmd_report, "a training log (train --log) as an HTML page of charts"},
};

static void usage(FILE *f)
{
    fprintf(f, "saccade %s - image captioning with visual attention (Show, Attend and Tell) in C\n\n", sac_version());
    fprintf(f, "usage: saccade COMMAND [options] [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  help      this text; 'saccade COMMAND --help' for a command's options\n");
    fprintf(f, "\nThe default model (models/flickr8k.safetensors, trained by saccade on Flickr8k) is found\n"
               "without flags; --model FILE or SACCADE_MODEL=FILE choose another.\n");
}

/* Results go to stdout: a write error there (a full disk) fails the command. */
static int finish(int rc)
{
    return sac_stdout_close() && rc == CLI_OK ? CLI_FAILED : rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (!strcmp(argv[2], commands[i].name)) {
                    char *args[] = {argv[2], "--help", NULL};
                    return finish(commands[i].run(2, args));
                }
            }
        }
        usage(stdout);
        return finish(CLI_OK);
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("saccade %s\n", sac_version());
        /* the kernel path (common/cpu.h), capped by SACCADE_KERNELS: what a bug report needs */
        printf("kernels: %s (this CPU: %s)\n", sac_kernel_name(sac_kernel()), sac_kernel_name(sac_kernel_cpu()));
        printf("blas: OpenBLAS, %s kernels\n", sac_blas_core());
        return finish(CLI_OK);
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(cmd, commands[i].name)) return finish(commands[i].run(argc - 1, argv + 1));
    fprintf(stderr, "saccade: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_USAGE;
}
