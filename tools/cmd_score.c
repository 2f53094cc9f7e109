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
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "dataset.h"
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

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "saccade score: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) free(buf);
        buf = nb, cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "saccade score: cannot read %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

/* Item index of each result, in results order. */
typedef struct {
    int n;
    int *item;      /* (n) */
    char **caption; /* (n) normalized */
} Matched;

static void matched_free(Matched *mt)
{
    for (int i = 0; mt->caption && i < mt->n; i++) free(mt->caption[i]);
    free(mt->item), free(mt->caption);
}

typedef struct {
    int64_t id;
    int item;
} IdIndex;

static int cmp_id(const void *a, const void *b)
{
    int64_t x = ((const IdIndex *)a)->id, y = ((const IdIndex *)b)->id;
    return (x > y) - (x < y);
}

/* Append " <id>" to the list of unknown ids shown in the error (first few only). */
static void note_unknown(char *list, size_t size, int *count, const char *id)
{
    if (++*count <= 8) {
        size_t l = strlen(list);
        snprintf(list + l, size - l, "%s%s", l ? ", " : "", id);
    }
}

/* Parse the results and match them to reference items; 0 or a CLI_* status (reported). */
static int match_results(const char *path, const char *text, const Dataset *ds, Matched *mt)
{
    memset(mt, 0, sizeof(*mt));
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
        fprintf(stderr, "saccade score: %s: line %d: not valid JSON, expected a COCO results array\n", path, line);
        return CLI_FAILED;
    }
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) == 0) {
        fprintf(stderr, "saccade score: %s: expected a non-empty JSON array of {\"image_id\", \"caption\"}, found %s\n",
                path, cJSON_IsArray(root) ? "an empty array" : "another JSON value");
        cJSON_Delete(root);
        return CLI_FAILED;
    }
    const int n = cJSON_GetArraySize(root);
    IdIndex *ids = sac_malloc(sizeof(IdIndex) * (ds->n_items ? ds->n_items : 1));
    int *seen = sac_calloc(ds->n_items ? ds->n_items : 1, sizeof(int)); /* result index + 1 */
    mt->item = sac_malloc(sizeof(int) * n);
    mt->caption = sac_calloc(n, sizeof(char *));
    int rc = ids && seen && mt->item && mt->caption ? CLI_OK : CLI_FAILED;
    int n_ids = 0;
    for (int i = 0; !rc && i < ds->n_items; i++)
        if (ds->items[i].image_id >= 0) ids[n_ids++] = (IdIndex){ds->items[i].image_id, i};
    if (!rc) qsort(ids, n_ids, sizeof(IdIndex), cmp_id);
    char unknown[512] = "";
    int n_unknown = 0, k = 0;
    for (cJSON *o = root->child; o && !rc; o = o->next, k++) {
        cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "image_id");
        cJSON *jcap = cJSON_GetObjectItemCaseSensitive(o, "caption");
        char idtext[64];
        int item = -1;
        if (!cJSON_IsObject(o) || !jid || !cJSON_IsString(jcap)) {
            fprintf(stderr, "saccade score: %s: [%d]: expected an object with \"image_id\" and a string \"caption\"\n",
                    path, k);
            rc = CLI_FAILED;
            break;
        }
        if (cJSON_IsNumber(jid)) {
            double v = jid->valuedouble;
            if (v != floor(v) || fabs(v) > 9007199254740992.0) {
                fprintf(stderr, "saccade score: %s: [%d].image_id: %g is not an integer\n", path, k, v);
                rc = CLI_FAILED;
                break;
            }
            IdIndex key = {(int64_t)v, 0}, *hit = bsearch(&key, ids, n_ids, sizeof(IdIndex), cmp_id);
            item = hit ? hit->item : -1;
            snprintf(idtext, sizeof(idtext), "%lld", (long long)key.id);
        } else if (cJSON_IsString(jid)) {
            item = dataset_find(ds, jid->valuestring);
            snprintf(idtext, sizeof(idtext), "\"%.60s\"", jid->valuestring);
        } else {
            fprintf(stderr, "saccade score: %s: [%d].image_id: expected an integer or a file name string\n", path, k);
            rc = CLI_FAILED;
            break;
        }
        if (item < 0) {
            note_unknown(unknown, sizeof(unknown), &n_unknown, idtext);
            continue;
        }
        if (seen[item]) {
            fprintf(stderr, "saccade score: %s: [%d]: a second result for image %s (the first is [%d]): expected one "
                    "caption per image\n", path, k, idtext, seen[item] - 1);
            rc = CLI_FAILED;
            break;
        }
        seen[item] = k + 1;
        mt->item[mt->n] = item;
        if (!(mt->caption[mt->n++] = sac_caption_normalize(jcap->valuestring))) rc = CLI_FAILED;
    }
    if (!rc && n_unknown) {
        fprintf(stderr, "saccade score: %s: %d result%s name%s images that are not in the references: %s%s\n", path,
                n_unknown, n_unknown == 1 ? "" : "s", n_unknown == 1 ? "s" : "", unknown, n_unknown > 8 ? ", ..." : "");
        rc = CLI_FAILED;
    }
    free(ids), free(seen);
    cJSON_Delete(root);
    return rc;
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

    char *text = read_text(results);
    if (!text) return CLI_FAILED;
    Dataset *ds = dataset_open(refs, split, NULL);
    if (!ds) {
        free(text);
        return CLI_FAILED;
    }
    Matched mt;
    int rc = match_results(results, text, ds, &mt);
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
    matched_free(&mt);
    dataset_free(ds);
    return rc;
}
