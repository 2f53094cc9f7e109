/*
 * cmd_caption.c - `saccade caption`: caption image files, one result line per image (or per
 * hypothesis with --nbest), as TSV or JSON lines.
 *
 * Everything goes through libsaccade (saccade.h). Images are read (saccade_image_load: every
 * format the library reads, EXIF orientation, pixel limit; a large JPEG decoded at 1/2, 1/4 or
 * 1/8 size, still at least the model's input side) and prepared one at a time
 * (saccade_input_create) into a batch of up to CAPTION_BATCH model inputs, so memory stays
 * bounded whatever the photos' sizes; the batch is captioned together (saccade_caption_inputs:
 * greedy for --greedy or --beam 1, else beam search over the batch). A file that cannot be read
 * is reported on stderr with its name and skipped; the others are still captioned and the exit
 * status is 1.
 *
 * Size letters: B images in a batch, K beam.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "output.h"
#include "saccade.h"

#define CAPTION_BATCH 16

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade caption [options] IMAGE...\n"
            "       saccade caption [options] -        (image paths on stdin, one per line)\n\n"
            "Caption image files (JPEG, PNG, BMP, GIF, TGA, PSD, HDR, PNM). Prints one line per image:\n"
            "  IMAGE<TAB>caption\n"
            "or with --nbest N > 1, up to N lines per image, best first:\n"
            "  IMAGE<TAB>rank<TAB>caption\n"
            "In IMAGE a backslash, tab, newline and carriage return are written \\\\ \\t \\n \\r, so each\n"
            "result is one line. In --json output each byte of a path that is not part of valid UTF-8\n"
            "is written as the four characters \\xHH (its value in hex), so the JSON stays valid.\n"
            "Files that cannot be read are reported on stderr and skipped; the exit status is then 1.\n\n"
            "options:\n"
            "  --model FILE     model file (default: $SACCADE_MODEL, then the installed model)\n");
    cli_decode_help(f, CLI_DEC_ALL, 17);
    fprintf(f,
            "  --json           JSON lines {\"image\", \"caption\", \"logprob\", \"tokens\" (the words),\n"
            "                   \"ended\" (false when the caption ran out of steps)}, plus \"rank\"\n"
            "                   with --nbest > 1\n"
            "  --threads N      threads (default 0 = all cores)\n"
            "  --quiet          only errors on stderr\n"
            "  -h, --help       this text\n");
}

/* ---- reading paths from stdin: a line reader that can tell "nothing available yet" ---- */

typedef struct {
    int fd, eof;
    char *buf;
    size_t len, pos, cap;
} LineReader;

/* The next non-empty line (NUL-terminated in the reader's buffer, valid until the next call),
 * or NULL: at end of input (*eof = 1), or when !block and no complete line is ready. */
static char *line_next(LineReader *r, int block, int *eof)
{
    *eof = 0;
    for (;;) {
        char *start = r->buf + r->pos, *nl = r->len > r->pos ? memchr(start, '\n', r->len - r->pos) : NULL;
        if (nl || (r->eof && r->len > r->pos)) {
            char *end = nl ? nl : r->buf + r->len;
            r->pos = nl ? (size_t)(nl - r->buf) + 1 : r->len;
            *end = 0;
            if (end > start && end[-1] == '\r') end[-1] = 0;
            if (*start) return start;
            continue;
        }
        if (r->eof) {
            *eof = 1;
            return NULL;
        }
        if (!block) {
            struct pollfd pfd = {r->fd, POLLIN, 0};
            if (poll(&pfd, 1, 0) <= 0) return NULL;
        }
        if (r->pos > 0) { /* keep only the unfinished line */
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos, r->pos = 0;
        }
        if (r->cap - r->len < 4096) {
            size_t cap = r->cap ? r->cap * 2 : 65536;
            char *nb = realloc(r->buf, cap + 1);
            if (!nb) {
                fprintf(stderr, "saccade caption: out of memory reading stdin\n");
                r->eof = 1;
                continue;
            }
            r->buf = nb, r->cap = cap;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fprintf(stderr, "saccade caption: reading stdin: %s\n", strerror(errno));
        if (n <= 0) r->eof = 1;
        else r->len += (size_t)n;
    }
}

/* ---- decoding and printing ---- */

typedef struct {
    const saccade_model *m;
    saccade_captioner *cap;
    saccade_options opt;
    int json;
    int S;                                 /* the model's input side: what images are decoded for */
    saccade_input *inputs[CAPTION_BATCH];  /* the waiting batch */
    saccade_result *results[CAPTION_BATCH];
    char *paths[CAPTION_BATCH];
    int n;         /* images waiting in the batch */
    long failed, done;
    int stdout_failed; /* a result could not be written: the rest is not decoded */
} Run;

static double round6(double x) { return round(x * 1e6) / 1e6; }

/* Print caption k of r (rank k + 1). */
static int print_caption(const Run *r, const char *path, const saccade_result *res, int k)
{
    const char *text = saccade_result_text(res, k);
    if (!r->json) {
        cli_put_tsv_path(stdout, path);
        if (r->opt.nbest > 1) printf("\t%d\t%s\n", k + 1, text);
        else printf("\t%s\n", text);
        return SACCADE_OK;
    }
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_CreateArray();
    char *image = sac_utf8_escape(path); /* JSON is UTF-8: other bytes become \xHH text */
    int ok = o && toks && image;
    if (ok) {
        cJSON_AddItemToObject(o, "image", cJSON_CreateString(image));
        if (r->opt.nbest > 1) cJSON_AddItemToObject(o, "rank", cJSON_CreateNumber(k + 1));
        cJSON_AddItemToObject(o, "caption", cJSON_CreateString(text));
        cJSON_AddItemToObject(o, "logprob", cJSON_CreateNumber(round6(saccade_result_logprob(res, k))));
        for (int t = 0; t < saccade_result_words(res, k); t++)
            cJSON_AddItemToArray(toks, cJSON_CreateString(saccade_result_word(res, k, t)));
        cJSON_AddItemToObject(o, "tokens", toks);
        toks = NULL;
        cJSON_AddItemToObject(o, "ended", cJSON_CreateBool(saccade_result_ended(res, k)));
    }
    char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (line) printf("%s\n", line);
    free(line);
    cJSON_Delete(o);
    cJSON_Delete(toks);
    free(image);
    return line ? SACCADE_OK : SACCADE_ERR_NOMEM;
}

/* Decode and print the waiting batch, then empty it. */
static void run_flush(Run *r)
{
    const int B = r->n;
    if (B == 0) return;
    int st = saccade_caption_inputs(r->cap, (const saccade_input *const *)r->inputs, B, &r->opt, r->results);
    if (st) {
        cli_message("caption", "decoding failed (%s) for %d image%s starting with %s", saccade_strerror(st), B,
                    B == 1 ? "" : "s", r->paths[0]);
        r->failed += B;
    }
    for (int b = 0; b < B && !st; b++) {
        for (int k = 0; k < saccade_result_count(r->results[b]) && k < r->opt.nbest; k++) {
            if (print_caption(r, r->paths[b], r->results[b], k)) {
                cli_message("caption", "%s: out of memory printing the caption", r->paths[b]);
                r->failed++;
                break;
            }
        }
        r->done++;
    }
    for (int b = 0; b < B; b++) {
        saccade_result_free(r->results[b]), r->results[b] = NULL;
        saccade_input_free(r->inputs[b]), r->inputs[b] = NULL;
        free(r->paths[b]), r->paths[b] = NULL;
    }
    r->n = 0;
    if (sac_stdout_flush()) r->stdout_failed = 1; /* reported once, at exit */
}

/* Read and prepare one image into the batch (reporting a failure), decoding when full. */
static void run_add(Run *r, const char *path)
{
    if (r->stdout_failed) return; /* the results could not be written: stop */
    saccade_image img;
    int st = saccade_image_load(path, r->S, &img, NULL, 0);
    if (!st) st = saccade_input_create(r->m, &img, &r->inputs[r->n], NULL, 0);
    saccade_image_free(&img);
    if (!st && !(r->paths[r->n] = strdup(path))) st = SACCADE_ERR_NOMEM;
    if (st) {
        /* the library has already said why, naming the file */
        saccade_input_free(r->inputs[r->n]), r->inputs[r->n] = NULL;
        cli_message("caption", "%s: skipped", path);
        r->failed++;
        return;
    }
    if (++r->n == CAPTION_BATCH) run_flush(r);
}

enum { O_MODEL = 256, O_JSON };

int cmd_caption(int argc, char **argv)
{
    struct option longopts[8 + CLI_DEC_MAX_OPTIONS] = {
        {"model", 1, 0, O_MODEL}, {"json", 0, 0, O_JSON}, {"threads", 1, 0, CLI_OPT_THREADS},
        {"quiet", 0, 0, CLI_OPT_QUIET}, {"help", 0, 0, CLI_OPT_HELP}};
    cli_decode_longopts(CLI_DEC_ALL, longopts + 5);
    const char *model_path = NULL;
    long threads = 0;
    CliDecode dec;
    cli_decode_defaults(&dec);
    int json = 0, quiet = 0, c, status;
    optind = 1;
    opterr = 0;
    while ((c = cli_getopt(argc, argv, ":h", longopts, &dec)) != -1) {
        switch (c) {
        case CLI_DEC_USAGE: return CLI_USAGE;
        case O_MODEL: model_path = optarg; break;
        case O_JSON: json = 1; break;
        default:
            if ((status = cli_common_option("caption", c, argv, help, &threads, &quiet)) != CLI_MORE) return status;
        }
    }
    if (cli_decode_check("caption", &dec)) return CLI_USAGE;
    if (optind >= argc) return cli_usage_error("caption", "no images given (IMAGE... or - for paths on stdin)");
    int from_stdin = 0;
    for (int i = optind; i < argc; i++) from_stdin |= !strcmp(argv[i], "-");
    if (from_stdin && argc - optind > 1) return cli_usage_error("caption", "'-' (paths on stdin) must be the only argument");

    saccade_model *m = cli_model_open("caption", model_path, argv[0], quiet, threads, dec.max_len, &status);
    if (!m) return status;
    Run r = {0};
    r.m = m;
    r.json = json;
    r.S = saccade_model_input_size(m);
    cli_decode_options(&dec, &r.opt);
    r.cap = saccade_captioner_create(m);
    int rc = CLI_OK;
    if (!r.cap) {
        cli_message("caption", "out of memory setting up the captioner");
        rc = CLI_FAILED;
        goto done;
    }
    if (from_stdin) {
        LineReader lr = {STDIN_FILENO, 0, NULL, 0, 0, 0};
        int eof = 0;
        while (!eof) {
            /* block only when nothing is waiting, so lines typed one at a time get answers */
            char *line = line_next(&lr, r.n == 0, &eof);
            if (line) run_add(&r, line);
            else run_flush(&r);
        }
        free(lr.buf);
    } else {
        for (int i = optind; i < argc; i++) run_add(&r, argv[i]);
    }
    run_flush(&r);
    if (r.failed) {
        cli_message("caption", "%ld of %ld image%s failed", r.failed, r.failed + r.done, r.failed + r.done == 1 ? "" : "s");
        rc = CLI_FAILED;
    }
    if (r.stdout_failed) rc = CLI_FAILED;
done:
    saccade_captioner_free(r.cap);
    saccade_model_free(m);
    return rc;
}
