/*
 * cmd_eval.c - `saccade eval`: decode a dataset split with a model (greedy or beam, never
 * teacher-forced) and score the captions against the split's references: BLEU-1..4, ROUGE-L,
 * CIDEr-D as coco-caption computes them, plus caption diversity. Optionally writes the captions
 * as a COCO results file, which `saccade score` (or coco-caption) reads back.
 *
 * Size letters: none (no tensors here).
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "matmul.h"
#include "output.h"
#include "report.h"
#include "sac.h"
#include "eval.h"

/* The decoding options eval takes (cli.h's table). */
#define EVAL_DECODING (CLI_DEC_BEAM | CLI_DEC_MAX_LEN | CLI_DEC_LEN_NORM | CLI_DEC_REPEATS)

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade eval --data PATH [options]\n\n"
            "Caption every image of a dataset split with the model and score the captions against the\n"
            "split's references. Prints BLEU-1..4, ROUGE-L and CIDEr-D (computed as coco-caption does,\n"
            "references tokenized like its PTB tokenizer), the number of distinct captions, the words\n"
            "used and the mean caption length. Images that cannot be read are reported, left out of the\n"
            "scores, and make the exit status 1.\n\n"
            "options:\n"
            "  --model FILE        model file (default: $SACCADE_MODEL, then the installed model)\n"
            "  --data PATH         Flickr8k/30k dir or token file, Karpathy dataset_*.json, COCO\n"
            "                      captions_*.json, or a folder with captions.tsv\n"
            "  --split NAME        (default dev; 'all' for everything, the only choice for captions.tsv)\n"
            "  --images DIR        image directory (default: from the dataset)\n");
    cli_decode_help(f, EVAL_DECODING, 20);
    fprintf(f,
            "  --max-images N      only the first N images of the split (default 0 = all)\n"
            "  --results FILE      write the captions as COCO results JSON [{\"image_id\", \"caption\"}].\n"
            "                      Datasets without integer ids (Flickr token files, captions.tsv) use\n"
            "                      the image file name, as the dataset names it, as a string \"image_id\";\n"
            "                      `saccade score` matches such ids against the references' file names.\n"
            "  --json              print the scores as one JSON object (coco-caption's key names)\n"
            "  --f32               decode with fp32 decoder weights (default: fp16 copies, half the\n"
            "                      memory traffic; the same captions on Flickr8k dev)\n"
            "  --threads N         threads (default 0 = all cores)\n"
            "  --quiet             only errors on stderr\n"
            "  -h, --help          this text\n");
}

/* Write [{"image_id", "caption"}], one result per line, to path (through the output layer: a
 * regular file is replaced atomically, a device written directly). A file name id that is not
 * UTF-8 is written with \xHH for its other bytes (sac_utf8_escape). */
static int write_results(const char *path, const EvalResult *r)
{
    SacOutput *out = sac_output_open(path, 0);
    if (!out) return SAC_ERR_IO; /* logged, naming the file */
    FILE *f = sac_output_stream(out);
    int st = SAC_OK;
    if (r->n_images == 0) fputs("[]\n", f);
    for (int i = 0; i < r->n_images && !st; i++) {
        cJSON *o = cJSON_CreateObject();
        char *name = r->image_ids[i] >= 0 ? NULL : sac_utf8_escape(r->names[i]);
        if (o && r->image_ids[i] >= 0) cJSON_AddNumberToObject(o, "image_id", (double)r->image_ids[i]);
        else if (o && name) cJSON_AddStringToObject(o, "image_id", name);
        if (o) cJSON_AddStringToObject(o, "caption", r->captions[i]);
        char *line = o && (r->image_ids[i] >= 0 || name) ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        free(name);
        if (!line) st = SAC_ERR_NOMEM;
        else fprintf(f, "%s%s%s", i ? ",\n " : "[", line, i == r->n_images - 1 ? "]\n" : "");
        free(line);
    }
    if (st) {
        cli_message("eval", "cannot write %s: %s", path, sac_strerror(st));
        sac_output_discard(out);
        return st;
    }
    return sac_output_close(out); /* a write error is logged, naming the file */
}

enum { O_MODEL = 256, O_DATA, O_SPLIT, O_IMAGES, O_MAX_IMAGES, O_RESULTS, O_JSON, O_F32 };

int cmd_eval(int argc, char **argv)
{
    struct option longopts[12 + CLI_DEC_MAX_OPTIONS] = {
        {"model", 1, 0, O_MODEL}, {"data", 1, 0, O_DATA}, {"split", 1, 0, O_SPLIT}, {"images", 1, 0, O_IMAGES},
        {"max-images", 1, 0, O_MAX_IMAGES}, {"results", 1, 0, O_RESULTS}, {"json", 0, 0, O_JSON},
        {"threads", 1, 0, CLI_OPT_THREADS}, {"quiet", 0, 0, CLI_OPT_QUIET}, {"f32", 0, 0, O_F32},
        {"help", 0, 0, CLI_OPT_HELP}};
    cli_decode_longopts(EVAL_DECODING, longopts + 11);
    const char *model_path = NULL, *data = NULL, *split = "dev", *images = NULL, *results = NULL;
    long max_images = 0, threads = 0;
    CliDecode dec;
    cli_decode_defaults(&dec);
    int json = 0, quiet = 0, f32 = 0, c, status;
    optind = 1;
    opterr = 0;
    while ((c = cli_getopt(argc, argv, ":h", longopts, &dec)) != -1) {
        switch (c) {
        case CLI_DEC_USAGE: return CLI_USAGE;
        case O_MODEL: model_path = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_IMAGES: images = optarg; break;
        case O_MAX_IMAGES:
            if (cli_parse_int("--max-images", optarg, 0, INT_MAX, &max_images)) return CLI_USAGE;
            break;
        case O_RESULTS: results = optarg; break;
        case O_JSON: json = 1; break;
        case O_F32: f32 = 1; break;
        default:
            if ((status = cli_common_option("eval", c, argv, help, &threads, &quiet)) != CLI_MORE) return status;
        }
    }
    if (optind < argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!data) return cli_usage_error("eval", "--data is required");
    if (results) { /* the results must not replace an input: the dataset, the model */
        if (!(model_path = cli_find_model(model_path, argv[0]))) return CLI_FAILED;
        const char *inputs[] = {data, model_path};
        if (sac_output_check_inputs(results, "--results", inputs, 2)) return CLI_USAGE;
    }

    Model *m = cli_open_model("eval", model_path, argv[0], quiet, threads, dec.max_len, &status);
    if (!m) return status;
    DecoderSizes sz = model_decoder_sizes(m);
    Dataset *ds = dataset_open(data, split, images);
    if (!ds) {
        model_free(m);
        return CLI_FAILED;
    }
    if (results && sac_output_check_inputs(results, "--results", &ds->source, 1)) { /* a file in a --data dir */
        dataset_free(ds);
        model_free(m);
        return CLI_USAGE;
    }
    SearchOptions opt = search_default_options(&sz);
    opt.beam = (int)dec.beam, opt.len_norm = (float)dec.len_norm, opt.f32 = f32;
    opt.no_repeat = dec.no_repeat, opt.no_repeat_bigram = dec.no_repeat_bigram;
    if (dec.max_len) opt.max_len = (int)dec.max_len;
    const int wanted = max_images > 0 && max_images < ds->n_items ? (int)max_images : ds->n_items;
    EvalResult er;
    double t0 = sac_time();
    int st = eval_dataset(m, ds, &opt, wanted, results != NULL, &er);
    int rc = CLI_OK;
    if (st) {
        fprintf(stderr, "saccade eval: evaluation failed: %s\n", sac_strerror(st));
        rc = CLI_FAILED;
        goto done;
    }
    if (!quiet)
        cli_message("eval", "%s split '%s': %d images, beam %ld, %.1f s", ds->source, split, er.n_images, dec.beam,
                  sac_time() - t0);
    ReportBlock rb = {er.scores, er.n_images, er.n_distinct, er.vocab_used, er.mean_len, m->P, er.att_max,
                      er.att_entropy};
    if (report_print(stdout, &rb, json)) {
        fprintf(stderr, "saccade eval: out of memory printing the scores\n");
        rc = CLI_FAILED;
    }
    fflush(stdout);
    if (results) {
        if (!er.captions || !er.image_ids || !er.names) {
            cli_message("eval", "out of memory keeping the captions for %s", results);
            rc = CLI_FAILED;
        } else if (write_results(results, &er)) {
            rc = CLI_FAILED;
        } else if (!quiet) {
            cli_message("eval", "wrote %d captions to %s", er.n_images, results);
        }
    }
    if (er.n_images < wanted) {
        fprintf(stderr, "saccade eval: %d of %d images could not be read and are not scored (see above)\n",
                wanted - er.n_images, wanted);
        rc = CLI_FAILED;
    }
    eval_result_clear(&er);
done:
    dataset_free(ds);
    model_free(m);
    return rc;
}
