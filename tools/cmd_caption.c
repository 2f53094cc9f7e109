/*
 * cmd_caption.c - `saccade caption`: caption image files, one result line per image (or per
 * hypothesis with --nbest), as TSV or JSON lines.
 *
 * Images are read (sac_image_load_scaled: every stb_image format, EXIF orientation, pixel limit;
 * a large JPEG decoded at 1/2, 1/4 or 1/8 size, still at least the model's input side) and
 * preprocessed one at a time into a batch of up to CAPTION_BATCH model inputs, so memory stays
 * bounded whatever the photos' sizes. A file that cannot be read is reported on stderr with its
 * name and skipped; the others are still captioned and the exit status is 1.
 *
 * Decoding: --greedy decodes the batch together (captioner_run); --beam K (K >= 1, also K = 1)
 * beam-searches each image with beam_search_run, so `--beam 1` and `--greedy` are two code paths
 * that must print the same captions (the test suite checks it).
 *
 * Size letters: B images in a batch, S input side, P grid positions, E encoder channels, K beam.
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

#include "captioner.h"
#include "cli.h"
#include "matmul.h"
#include "output.h"
#include "sac.h"

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
            "  --model FILE     model file (default: $SACCADE_MODEL, then the installed model)\n"
            "  --beam K         beam width (default 3); --beam 1 equals --greedy\n"
            "  --greedy         greedy decoding, images batched together (fastest)\n"
            "  --nbest N        print the N best distinct captions of the beam (1..K, default 1;\n"
            "                   fewer when the beam found fewer)\n"
            "  --max-len N      most words + <end> (default: the model's T)\n"
            "  --len-norm A     beam score = logprob / steps^A (default 0.7; 0 = raw logprob)\n"
            "  --no-repeat      never the same word twice in a row\n"
            "  --no-repeat-bigram  never the same two words twice in one caption (the default)\n"
            "  --repeats           allow both (plain beam search)\n"
            "  --json           JSON lines {\"image\", \"caption\", \"logprob\", \"tokens\" (the words),\n"
            "                   \"ended\" (false when the caption ran out of steps)}, plus \"rank\"\n"
            "                   with --nbest > 1\n"
            "  --threads N      BLAS threads (default 0 = all cores)\n"
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
    const Model *m;
    Captioner *cap;
    DecoderInfer *dec; /* beam search rows: the captioner's (borrowed) */
    SearchOptions opt;
    int greedy, json;
    int S;
    float *images; /* (CAPTION_BATCH, 3, S, S) */
    float *feats;  /* (CAPTION_BATCH, P, E) */
    Caption *caps; /* (CAPTION_BATCH, nbest) */
    int counts[CAPTION_BATCH];
    char *paths[CAPTION_BATCH];
    int n;         /* images waiting in the batch */
    long failed, done;
    int stdout_failed; /* a result could not be written: the rest is not decoded */
} Run;

static double round6(double x) { return round(x * 1e6) / 1e6; }

static int print_caption(const Run *r, const char *path, const Caption *c, int rank)
{
    char *text = captioner_text(r->m, c);
    if (!text) return SAC_ERR_NOMEM;
    if (!r->json) {
        cli_put_tsv_path(stdout, path);
        if (r->opt.nbest > 1) printf("\t%d\t%s\n", rank, text);
        else printf("\t%s\n", text);
        free(text);
        return SAC_OK;
    }
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_CreateArray();
    char *image = sac_utf8_escape(path); /* JSON is UTF-8: other bytes become \xHH text */
    int ok = o && toks && image;
    if (ok) {
        cJSON_AddItemToObject(o, "image", cJSON_CreateString(image));
        if (r->opt.nbest > 1) cJSON_AddItemToObject(o, "rank", cJSON_CreateNumber(rank));
        cJSON_AddItemToObject(o, "caption", cJSON_CreateString(text));
        cJSON_AddItemToObject(o, "logprob", cJSON_CreateNumber(round6(c->logprob)));
        for (int i = 0; i < c->n; i++) cJSON_AddItemToArray(toks, cJSON_CreateString(vocab_word(r->m->vocab, c->tokens[i])));
        cJSON_AddItemToObject(o, "tokens", toks);
        toks = NULL;
        cJSON_AddItemToObject(o, "ended", cJSON_CreateBool(c->ended));
    }
    char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (line) printf("%s\n", line);
    free(line);
    cJSON_Delete(o);
    cJSON_Delete(toks);
    free(image);
    free(text);
    return line ? SAC_OK : SAC_ERR_NOMEM;
}

/* Decode and print the waiting batch, then empty it. */
static void run_flush(Run *r)
{
    const int B = r->n, nb = r->opt.nbest;
    if (B == 0) return;
    const size_t PE = (size_t)r->m->P * r->m->cfg.E;
    int st;
    memset(r->caps, 0, sizeof(Caption) * B * nb);
    if (r->greedy) {
        st = captioner_run_preprocessed(r->cap, r->images, B, &r->opt, r->caps, r->counts);
    } else {
        st = captioner_encode(r->cap, r->images, B, r->feats);
        for (int b = 0; b < B && !st; b++) {
            int n = beam_search_run(r->caps + (size_t)b * nb, r->dec, r->feats + b * PE, &r->m->p.dec, &r->opt);
            if (n < 0) st = n;
            else r->counts[b] = n;
        }
    }
    if (st) {
        cli_message("caption", "decoding failed (%s) for %d image%s starting with %s", sac_strerror(st), B,
                  B == 1 ? "" : "s", r->paths[0]);
        r->failed += B;
    }
    for (int b = 0; b < B && !st; b++) {
        for (int k = 0; k < r->counts[b] && k < nb; k++) {
            if (print_caption(r, r->paths[b], &r->caps[(size_t)b * nb + k], k + 1)) {
                cli_message("caption", "%s: out of memory printing the caption", r->paths[b]);
                r->failed++;
                break;
            }
        }
        r->done++;
    }
    for (int i = 0; i < B * nb; i++) caption_clear(&r->caps[i]);
    for (int b = 0; b < B; b++) free(r->paths[b]), r->paths[b] = NULL;
    r->n = 0;
    if (sac_stdout_flush()) r->stdout_failed = 1; /* reported once, at exit */
}

/* Read and preprocess one image into the batch (reporting a failure), decoding when full. */
static void run_add(Run *r, const char *path)
{
    if (r->stdout_failed) return; /* the results could not be written: stop */
    SacImage img = {0};
    const ModelConfig *cfg = &r->m->cfg;
    int st = sac_image_load_scaled(path, r->S, &img, 0);
    if (!st) st = sac_image_preprocess(&img, r->S, cfg->mean, cfg->std, r->images + (size_t)r->n * 3 * r->S * r->S);
    sac_image_free(&img);
    if (!st && !(r->paths[r->n] = strdup(path))) st = SAC_ERR_NOMEM;
    if (st) {
        /* sac_image_load has already said why, naming the file */
        cli_message("caption", "%s: skipped", path);
        r->failed++;
        return;
    }
    if (++r->n == CAPTION_BATCH) run_flush(r);
}

enum {
    O_MODEL = 256, O_BEAM, O_GREEDY, O_NBEST, O_MAX_LEN, O_LEN_NORM, O_JSON, O_THREADS, O_QUIET, O_NO_REPEAT,
    O_NO_REPEAT_BIGRAM, O_REPEATS, O_HELP
};

int cmd_caption(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", 1, 0, O_MODEL}, {"beam", 1, 0, O_BEAM}, {"greedy", 0, 0, O_GREEDY}, {"nbest", 1, 0, O_NBEST},
        {"max-len", 1, 0, O_MAX_LEN}, {"len-norm", 1, 0, O_LEN_NORM}, {"json", 0, 0, O_JSON},
        {"threads", 1, 0, O_THREADS}, {"quiet", 0, 0, O_QUIET}, {"no-repeat", 0, 0, O_NO_REPEAT},
        {"no-repeat-bigram", 0, 0, O_NO_REPEAT_BIGRAM}, {"repeats", 0, 0, O_REPEATS}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model_path = NULL;
    long beam = 3, nbest = 1, max_len = 0, threads = 0;
    double len_norm = 0.7;
    int greedy = 0, json = 0, quiet = 0, beam_given = 0, no_repeat = 0, no_repeat_bigram = 1, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_BEAM:
            if (cli_parse_int("--beam", optarg, 1, 64, &beam)) return CLI_USAGE;
            beam_given = 1;
            break;
        case O_GREEDY: greedy = 1; break;
        case O_NBEST:
            if (cli_parse_int("--nbest", optarg, 1, 64, &nbest)) return CLI_USAGE;
            break;
        case O_MAX_LEN:
            if (cli_parse_int("--max-len", optarg, 1, 256, &max_len)) return CLI_USAGE;
            break;
        case O_LEN_NORM:
            if (cli_parse_float("--len-norm", optarg, 0, 10, &len_norm)) return CLI_USAGE;
            break;
        case O_JSON: json = 1; break;
        case O_NO_REPEAT: no_repeat = 1; break;
        case O_NO_REPEAT_BIGRAM: no_repeat_bigram = 1; break;
        case O_REPEATS: no_repeat = no_repeat_bigram = 0; break;
        case O_THREADS:
            if (cli_parse_int("--threads", optarg, 0, 1024, &threads)) return CLI_USAGE;
            break;
        case O_QUIET: quiet = 1; break;
        case 'h':
        case O_HELP: help(stdout); return CLI_OK;
        default: return cli_option_error("caption", c, argv);
        }
    }
    if (greedy && beam_given && beam != 1) return cli_usage_error("caption", "--greedy and --beam %ld contradict", beam);
    if (greedy) beam = 1;
    if (nbest > beam)
        return cli_usage_error("caption", "--nbest %ld exceeds the beam width %ld: expected 1..%ld", nbest, beam, beam);
    if (optind >= argc) return cli_usage_error("caption", "no images given (IMAGE... or - for paths on stdin)");
    int from_stdin = 0;
    for (int i = optind; i < argc; i++) from_stdin |= !strcmp(argv[i], "-");
    if (from_stdin && argc - optind > 1) return cli_usage_error("caption", "'-' (paths on stdin) must be the only argument");

    int status;
    Model *m = cli_open_model("caption", model_path, argv[0], quiet, threads, max_len, &status);
    if (!m) return status;
    DecoderSizes sz = model_decoder_sizes(m);
    Run r = {0};
    r.m = m;
    r.greedy = greedy, r.json = json;
    r.S = m->cfg.enc.image_size;
    r.opt = search_default_options(&sz);
    r.opt.beam = (int)beam, r.opt.nbest = (int)nbest, r.opt.len_norm = (float)len_norm;
    r.opt.no_repeat = no_repeat, r.opt.no_repeat_bigram = no_repeat_bigram;
    if (max_len) r.opt.max_len = (int)max_len;
    r.cap = captioner_create(m, CAPTION_BATCH, (int)beam);
    r.dec = greedy || !r.cap ? NULL : captioner_decoder(r.cap);
    r.images = sac_alloc_floats((size_t)CAPTION_BATCH * 3 * r.S * r.S);
    r.feats = sac_alloc_floats((size_t)CAPTION_BATCH * m->P * m->cfg.E);
    r.caps = sac_calloc((size_t)CAPTION_BATCH * nbest, sizeof(Caption));
    int rc = CLI_OK;
    if (!r.cap || (!greedy && !r.dec) || !r.images || !r.feats || !r.caps) {
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
    free(r.caps), free(r.images), free(r.feats);
    captioner_free(r.cap);
    model_free(m);
    return rc;
}
