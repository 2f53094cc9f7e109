/*
 * cmd_score.c - `saccade score`: score a COCO results file ([{"image_id", "caption"}]) against
 * COCO reference captions (captions_*.json), as coco-caption's BLEU / ROUGE-L / CIDEr-D do, in C
 * without Java: both sides are tokenized with sac_caption_normalize (the stand-in for
 * coco-caption's PTB tokenizer), and the images scored are the images of the results, as
 * coco-caption's COCOEvalCap does (it evaluates cocoRes.getImgIds()).
 *
 * Like coco-caption's loadRes, a result whose image is not among the references is an error
 * (the ids are named), and so is a second result for the same image (coco-caption's BLEU
 * asserts one hypothesis per image).
 *
 * Size letters: none (no tensors here).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "coco_results.h"
#include "dataset.h"
#include "fileio.h"
#include "report.h"
#include "sac.h"
#include "vocab.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade score --refs captions.json --results results.json [options]\n\n"
            "Score a COCO results file [{\"image_id\", \"caption\"}, ...] against reference captions:\n"
            "BLEU-1..4, ROUGE-L and CIDEr-D computed as coco-caption computes them (a drop-in for its\n"
            "BLEU/ROUGE-L/CIDEr without Java; METEOR and SPICE are not computed). Both sides are\n"
            "tokenized like coco-caption's PTB tokenizer (lowercased, punctuation removed).\n\n"
            "Only the images that have a result are scored, as coco-caption does; reference images\n"
            "without a result are counted in a note on stderr. A result for an image that is not in\n"
            "the references, or two results for one image, is an error.\n\n"
            "options:\n"
            "  --refs FILE       reference captions: COCO captions_*.json (\"images\" + \"annotations\");\n"
            "                    also any dataset `saccade train` reads (Karpathy json, Flickr token\n"
            "                    file, captions.tsv)\n"
            "  --split NAME      split of a --refs dataset that has splits (default: all)\n"
            "  --results FILE    COCO results JSON. \"image_id\" is the integer COCO id, or a string:\n"
            "                    the image's file name as the references name it (what `saccade eval\n"
            "                    --results` writes for Flickr and captions.tsv data)\n"
            "  --json            print the scores as one JSON object (coco-caption's key names)\n"
            "  -h, --help        this text\n");
}

enum { O_REFS = 256, O_SPLIT, O_RESULTS, O_JSON, O_HELP };

int cmd_score(int argc, char **argv)
{
    static const struct option longopts[] = {{"refs", 1, 0, O_REFS},       {"split", 1, 0, O_SPLIT},
                                             {"results", 1, 0, O_RESULTS}, {"json", 0, 0, O_JSON},
                                             {"help", 0, 0, O_HELP},       {0, 0, 0, 0}};
    const char *refs = NULL, *results = NULL, *split = NULL;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_REFS: refs = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_RESULTS: results = optarg; break;
        case O_JSON: json = 1; break;
        case 'h':
        case O_HELP: help(stdout); return CLI_OK;
        default: return cli_option_error("score", c, argv);
        }
    }
    if (optind < argc) return cli_usage_error("score", "unexpected argument '%s'", argv[optind]);
    if (!refs) return cli_usage_error("score", "--refs is required");
    if (!results) return cli_usage_error("score", "--results is required");

    uint8_t *text;
    size_t text_len;
    if (sac_read_file(results, 0, &text, &text_len)) return CLI_FAILED;
    Dataset *ds = dataset_open(refs, split, NULL);
    if (!ds) {
        free(text);
        return CLI_FAILED;
    }
    CocoResults mt;
    int rc = coco_results_match(results, (const char *)text, text_len, ds, &mt) ? CLI_FAILED : CLI_OK;
    free(text);
    const char ***rf = NULL;
    int *n_refs = NULL;
    if (!rc) {
        rf = sac_calloc(mt.n, sizeof(*rf));
        n_refs = sac_calloc(mt.n, sizeof(int));
        if (!rf || !n_refs) rc = CLI_FAILED;
    }
    for (int i = 0; !rc && i < mt.n; i++) {
        const DatasetItem *it = &ds->items[mt.item[i]];
        if (!(rf[i] = sac_calloc(it->n_captions, sizeof(char *)))) rc = CLI_FAILED;
        for (int j = 0; !rc && j < it->n_captions; j++, n_refs[i]++)
            if (!(rf[i][j] = sac_caption_normalize(it->captions[j]))) rc = CLI_FAILED;
    }
    ReportBlock rb = {0};
    if (!rc && mt.n < ds->n_items)
        fprintf(stderr, "saccade score: note: %d of %d reference images have no result and are not scored "
                "(as coco-caption, the images of the results are evaluated)\n", ds->n_items - mt.n, ds->n_items);
    if (!rc && metrics_score((const char *const *)mt.caption, (const char *const *const *)rf, n_refs, mt.n, &rb.scores))
        rc = CLI_FAILED;
    if (!rc) {
        rb.n_images = mt.n;
        if (report_diversity(&rb, (const char *const *)mt.caption, mt.n) || report_print(stdout, &rb, json)) {
            fprintf(stderr, "saccade score: out of memory\n");
            rc = CLI_FAILED;
        }
    }
    for (int i = 0; rf && i < mt.n; i++) {
        for (int j = 0; rf[i] && j < n_refs[i]; j++) free((char *)rf[i][j]);
        free(rf[i]);
    }
    free(rf), free(n_refs);
    coco_results_free(&mt);
    dataset_free(ds);
    return rc;
}
