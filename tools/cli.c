/*
 * cli.c - shared command-line helpers, see cli.h.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "model.h"
#include "output.h"
#include "sac.h"
#include "saccade_config.h"
#include "threadpool.h"

/* Print "saccade[ CMD]: <formatted message>" with control characters replaced, then `tail`. */
static void print_clean(const char *cmd, const char *tail, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    sac_term_clean(msg);
    fprintf(stderr, "saccade%s%s: %s\n%s", cmd ? " " : "", cmd ? cmd : "", msg, tail);
}

void cli_message(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_clean(cmd, "", fmt, ap);
    va_end(ap);
}

/* The same without a command name: "saccade: <message>". */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void plain_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_clean(NULL, "", fmt, ap);
    va_end(ap);
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        if (hi == LONG_MAX)
            plain_error("invalid value \"%s\" for %s: expected an integer >= %ld", s, opt, lo);
        else
            plain_error("invalid value \"%s\" for %s: expected an integer in %ld..%ld", s, opt, lo, hi);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        plain_error("invalid value \"%s\" for %s: expected a number in [%g, %g]", s, opt, lo, hi);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_parse_shard(const char *opt, const char *s, int *index, int *count)
{
    char *slash, *end;
    errno = 0;
    long i = strtol(s, &slash, 10), n = -1;
    int ok = slash != s && *slash == '/' && !errno && isdigit((unsigned char)s[0]);
    if (ok) {
        n = strtol(slash + 1, &end, 10);
        ok = end != slash + 1 && !*end && !errno && isdigit((unsigned char)slash[1]);
    }
    if (!ok || n < 1 || n > CLI_MAX_SHARDS || i < 0 || i >= n) {
        plain_error("invalid value \"%s\" for %s: expected I/N with 0 <= I < N <= %d", s, opt, CLI_MAX_SHARDS);
        return CLI_USAGE;
    }
    *index = (int)i, *count = (int)n;
    return CLI_OK;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char tail[128];
    snprintf(tail, sizeof(tail), "Try 'saccade %s --help'.\n", cmd);
    va_list ap;
    va_start(ap, fmt);
    print_clean(cmd, tail, fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

void cli_put_tsv_path(FILE *f, const char *path)
{
    for (const char *p = path; *p; p++) {
        switch (*p) {
        case '\\': fputs("\\\\", f); break;
        case '\t': fputs("\\t", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        default: putc(*p, f);
        }
    }
}

char *cli_html_escape(const char *text)
{
    char *s = sac_utf8_escape(text); /* the page is UTF-8: other bytes become \xHH text */
    if (!s) return NULL;
    size_t len = 1;
    for (const char *p = s; *p; p++) len += strchr("&<>\"'", *p) ? 6 : 1;
    char *out = malloc(len), *o = out;
    for (const char *p = s; out && *p; p++) {
        const char *rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '"' ? "&quot;"
                        : *p == '\'' ? "&#39;" : NULL;
        if (rep) o = stpcpy(o, rep);
        else *o++ = *p;
    }
    if (out) *o = 0;
    free(s);
    return out;
}

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} Bytes;

static void bytes_append(void *ctx, void *data, int size)
{
    Bytes *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = (b->len + (size_t)size) * 2;
        uint8_t *nd = realloc(b->data, cap);
        if (!nd) {
            b->failed = 1;
            return;
        }
        b->data = nd, b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

int cli_png_encode(const uint8_t *px, int w, int h, int channels, int stride, uint8_t **png, size_t *len)
{
    Bytes b = {0};
    if (!stbi_write_png_to_func(bytes_append, &b, w, h, channels, px, stride) || b.failed) {
        free(b.data);
        *png = NULL, *len = 0;
        sac_error("out of memory encoding a %dx%d PNG", w, h);
        return SAC_ERR_NOMEM;
    }
    *png = b.data, *len = b.len;
    return SAC_OK;
}

char *cli_base64(const uint8_t *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[v >> 12 & 63], *o++ = tab[v >> 6 & 63], *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = tab[v >> 18], *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = 0;
    return out;
}

char *cli_png_base64(const uint8_t *px, int w, int h, int channels, int stride)
{
    uint8_t *png;
    size_t len;
    if (cli_png_encode(px, w, h, channels, stride, &png, &len)) return NULL; /* logged */
    char *out = cli_base64(png, len);
    free(png);
    if (!out) sac_error("out of memory encoding a %dx%d PNG", w, h);
    return out;
}

int cli_option_error(const char *cmd, int c, char **argv)
{
    const char *arg = argv[optind - 1];
    if (c == ':') return cli_usage_error(cmd, "option '%s' needs a value", arg);
    if (optopt && arg[0] == '-' && arg[1] != '-') return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, "unknown option '%s'", arg);
}

int cli_common_option(const char *cmd, int c, char **argv, void (*help)(FILE *), long *threads, int *quiet)
{
    switch (c) {
    case CLI_OPT_THREADS: return cli_parse_int("--threads", optarg, 0, 1024, threads) ? CLI_USAGE : CLI_MORE;
    case CLI_OPT_QUIET: *quiet = 1; return CLI_MORE;
    case 'h':
    case CLI_OPT_HELP: help(stdout); return CLI_OK;
    default: return cli_option_error(cmd, c, argv);
    }
}

static int readable(const char *p) { return access(p, R_OK) == 0; }

const char *cli_find_model(const char *explicit_path, const char *argv0)
{
    static char buf[PATH_MAX + 64];
    if (explicit_path) return explicit_path;
    const char *env = getenv("SACCADE_MODEL");
    if (env && *env) return env;
    const char *name = "flickr8k.safetensors";
    snprintf(buf, sizeof(buf), "%s/%s", SACCADE_DATADIR, name);
    if (readable(buf)) return buf;
    /* next to the binary: <dir>/models; <dir>/../models (build tree: build/tools/saccade and the
     * copy models/meson.build makes), <dir>/../../models (the source tree around an in-tree
     * build); an installed tree moved elsewhere (meson install --destdir): <bindir>/../share/saccade */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0 && argv0) {
        snprintf(exe, sizeof(exe), "%s", argv0);
        n = (ssize_t)strlen(exe);
    }
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"models", "../models", "../../models", SACCADE_DATADIR_FROM_BINDIR};
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            snprintf(buf, sizeof(buf), "%s/%s/%s", slash ? exe : ".", rel[i], name);
            if (readable(buf)) return buf;
        }
    }
    fprintf(stderr,
            "saccade: no model found: give --model FILE or set SACCADE_MODEL (looked in %s, and in models/, "
            "../models, ../../models and %s from the program's directory)\n",
            SACCADE_DATADIR, SACCADE_DATADIR_FROM_BINDIR);
    return NULL;
}

/* What both ways of opening the model do first: --quiet and --threads. */
static void open_settings(int quiet, long threads)
{
    if (quiet) saccade_set_log_level(SACCADE_LOG_WARN);
    saccade_set_threads(threads > 0 ? (int)threads : cli_cores());
}

/* --max-len against the model's T: CLI_OK or the usage error. */
static int check_max_len(const char *cmd, long max_len, int T)
{
    if (max_len <= T) return CLI_OK;
    return cli_usage_error(cmd, "invalid value \"%ld\" for --max-len: expected an integer in 1..%d (this model's T)",
                           max_len, T);
}

Model *cli_open_model(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                      long max_len, int *status)
{
    open_settings(quiet, threads);
    const char *path = cli_find_model(model_path, argv0);
    Model *m = path ? model_load(path) : NULL;
    if (path && !m) plain_error("cannot use model %s (see above)", path);
    *status = m ? check_max_len(cmd, max_len, m->cfg.T) : CLI_FAILED;
    if (*status) model_free(m);
    return *status ? NULL : m;
}

saccade_model *cli_model_open(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                              long max_len, int *status)
{
    open_settings(quiet, threads);
    const char *path = cli_find_model(model_path, argv0);
    saccade_model *m = NULL;
    if (path && saccade_model_load(path, &m, NULL, 0)) /* the reason is logged, naming the file */
        plain_error("cannot use model %s (see above)", path);
    *status = m ? check_max_len(cmd, max_len, saccade_model_max_length(m)) : CLI_FAILED;
    if (*status) saccade_model_free(m);
    return *status ? NULL : m;
}

/* ---- the decoding options ---- */

typedef struct {
    const char *name, *arg; /* arg NULL: a flag */
    unsigned group;
    const char *help;       /* lines after the first start with '\n' */
} DecodeOption;

static const DecodeOption decode_options[] = {
    {"beam", "K", CLI_DEC_BEAM, "beam width, 1..64 (default 3); 1 = greedy"},
    {"greedy", NULL, CLI_DEC_GREEDY, "greedy decoding, images batched together (= --beam 1)"},
    {"nbest", "N", CLI_DEC_NBEST, "the N best distinct captions of the beam (1..K, default 1;\nfewer when the beam found fewer)"},
    {"max-len", "N", CLI_DEC_MAX_LEN, "most words + <end> (default: the model's T)"},
    {"len-norm", "A", CLI_DEC_LEN_NORM, "beam score = logprob / steps^A (default 0.7; 0 = raw logprob)"},
    {"no-repeat", NULL, CLI_DEC_REPEATS, "never the same word twice in a row"},
    {"no-repeat-bigram", NULL, CLI_DEC_REPEATS, "never the same two words twice in one caption (the default)"},
    {"repeats", NULL, CLI_DEC_REPEATS, "allow both (plain beam search)"},
};
enum { N_DECODE = sizeof(decode_options) / sizeof(decode_options[0]) };
_Static_assert(N_DECODE <= CLI_DEC_MAX_OPTIONS, "CLI_DEC_MAX_OPTIONS");

void cli_decode_defaults(CliDecode *d)
{
    saccade_options o;
    saccade_options_default(&o); /* the library's defaults are the program's */
    memset(d, 0, sizeof(*d));
    d->beam = o.beam, d->nbest = o.nbest, d->max_len = o.max_length, d->len_norm = o.length_norm;
    d->no_repeat = o.no_repeat_word, d->no_repeat_bigram = o.no_repeat_bigram;
}

int cli_decode_longopts(unsigned mask, struct option *out)
{
    int n = 0;
    for (int i = 0; i < N_DECODE; i++)
        if (decode_options[i].group & mask)
            out[n++] = (struct option){decode_options[i].name, decode_options[i].arg ? 1 : 0, 0, CLI_DEC_ID + i};
    return n;
}

/* When c is one of the table's ids: parse arg into d and return 1 (*status CLI_OK, or
 * CLI_USAGE with the error printed); else 0. */
static int decode_parse(int c, const char *arg, CliDecode *d, int *status)
{
    if (c < CLI_DEC_ID || c >= CLI_DEC_ID + N_DECODE) return 0;
    const char *name = decode_options[c - CLI_DEC_ID].name;
    char opt[32];
    snprintf(opt, sizeof(opt), "--%s", name);
    *status = CLI_OK;
    if (!strcmp(name, "beam")) {
        *status = cli_parse_int(opt, arg, 1, 64, &d->beam);
        d->beam_given = 1;
    } else if (!strcmp(name, "greedy")) {
        d->greedy = 1;
    } else if (!strcmp(name, "nbest")) {
        *status = cli_parse_int(opt, arg, 1, 64, &d->nbest);
    } else if (!strcmp(name, "max-len")) {
        *status = cli_parse_int(opt, arg, 1, 256, &d->max_len);
    } else if (!strcmp(name, "len-norm")) {
        *status = cli_parse_float(opt, arg, 0, 10, &d->len_norm);
    } else if (!strcmp(name, "no-repeat")) {
        d->no_repeat = 1;
    } else if (!strcmp(name, "no-repeat-bigram")) {
        d->no_repeat_bigram = 1;
    } else { /* repeats */
        d->no_repeat = d->no_repeat_bigram = 0;
    }
    return 1;
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, CliDecode *d)
{
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, longopts, NULL), status;
        if (!decode_parse(c, optarg, d, &status)) return c;
        if (status) return CLI_DEC_USAGE;
    }
}

void cli_decode_help(FILE *f, unsigned mask, int width)
{
    for (int i = 0; i < N_DECODE; i++) {
        const DecodeOption *o = &decode_options[i];
        if (!(o->group & mask)) continue;
        char name[64];
        snprintf(name, sizeof(name), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        int w = (int)strlen(name) + 2 > width ? (int)strlen(name) + 2 : width;
        fprintf(f, "  %-*s", w, name);
        for (const char *p = o->help; *p; p++) {
            if (*p == '\n') fprintf(f, "\n  %-*s", width, "");
            else putc(*p, f);
        }
        putc('\n', f);
    }
}

int cli_decode_check(const char *cmd, CliDecode *d)
{
    if (d->greedy && d->beam_given && d->beam != 1)
        return cli_usage_error(cmd, "--greedy and --beam %ld contradict", d->beam);
    if (d->greedy) d->beam = 1;
    if (d->nbest > d->beam)
        return cli_usage_error(cmd, "--nbest %ld exceeds the beam width %ld: expected 1..%ld", d->nbest, d->beam, d->beam);
    return CLI_OK;
}

void cli_decode_options(const CliDecode *d, saccade_options *opt)
{
    saccade_options_default(opt);
    opt->beam = (int)d->beam, opt->nbest = (int)d->nbest, opt->max_length = (int)d->max_len;
    opt->length_norm = (float)d->len_norm;
    opt->no_repeat_word = d->no_repeat, opt->no_repeat_bigram = d->no_repeat_bigram;
}

int cli_stderr_is_tty(void) { return isatty(STDERR_FILENO); }

volatile int cli_interrupted;

/* The first SIGINT/SIGTERM asks the command to stop cleanly (train: after a checkpoint; batch:
 * after the images in flight); a second one, while that is still under way, ends the process at
 * once, as the signal's default would: the atomic writes leave no torn file, and their temporary
 * files are removed. */
static void on_signal(int sig)
{
    if (cli_interrupted) {
        sac_output_remove_temps(); /* no hidden half-written file left beside the user's */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    cli_interrupted = 1;
    static const char msg[] = "\nsaccade: stopping cleanly; interrupt again to quit at once\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)n;
}

void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask); /* one handler at a time: the second signal sees the first's flag */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
