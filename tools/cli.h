/*
 * cli.h - what the saccade subcommands share: option value parsing with errors that name the
 * option, the exit codes, finding the default model, and terminal-aware progress output.
 *
 * Exit codes: 0 success, 1 runtime failure (some inputs failed), 2 usage error.
 */
#ifndef SACCADE_CLI_H
#define SACCADE_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "saccade.h"

typedef struct Model Model; /* captioner/model.h, for eval, train, classify */

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Parse an integer / float option value in [lo, hi]; on error print
 * `saccade: invalid value "x3" for --beam: expected an integer in 1..64` and return CLI_USAGE. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out);
/* "I/N" with 0 <= I < N <= CLI_MAX_SHARDS. */
#define CLI_MAX_SHARDS 1000000
int cli_parse_shard(const char *opt, const char *s, int *index, int *count);

/* For getopt_long run with opterr = 0 and an optstring starting with ':': report the option
 * getopt rejected (c is what it returned: ':' for a missing value, '?' for an unknown option)
 * as `saccade CMD: unknown option '--bogus'`; returns CLI_USAGE. */
int cli_option_error(const char *cmd, int c, char **argv);

/* The options caption, attend, batch, classify, eval and report take alike, at these getopt_long
 * ids: --threads N (0 = all cores), --quiet, --help (and -h). */
enum { CLI_OPT_THREADS = 900, CLI_OPT_QUIET, CLI_OPT_HELP };
#define CLI_MORE (-1)
/* For the default of a command's getopt switch: --threads N (0..1024) into *threads, --quiet into
 * *quiet, -h/--help printed to stdout by help; anything else reported by cli_option_error.
 * Returns CLI_MORE when parsing goes on, else the exit status (CLI_OK after the help, CLI_USAGE). */
int cli_common_option(const char *cmd, int c, char **argv, void (*help)(FILE *), long *threads, int *quiet);

/* Print "saccade CMD: <message>\nTry 'saccade CMD --help'." to stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Print "saccade CMD: <message>\n" (an error or a note) to stderr with control characters (an ANSI escape in a file
 * name, a newline) replaced by '?' (sac_term_clean): what reaches the terminal is text. */
void cli_message(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Write a path into a TSV-like line (PATH<TAB>...): backslash, TAB, LF and CR are written as
 * \\ \t \n \r, so one record stays one line and the path can be read back. */
void cli_put_tsv_path(FILE *f, const char *path);
/* text for HTML (caller frees): its bytes made valid UTF-8 (sac_utf8_escape: others become the
 * text \xHH), then & < > " ' as character references. NULL when out of memory. */
char *cli_html_escape(const char *text);
/* The w x h pixels at px (channels 3: RGB, 4: RGBA; row stride in bytes) as a PNG file in
 * memory (*png, *len; the caller frees *png). SAC_OK or SAC_ERR_NOMEM (logged). */
int cli_png_encode(const uint8_t *px, int w, int h, int channels, int stride, uint8_t **png, size_t *len);
/* The n bytes at data as base64 text (caller frees); NULL when out of memory. */
char *cli_base64(const uint8_t *data, size_t n);
/* The pixels as cli_png_encode takes them, as a base64 PNG (caller frees): what an HTML page
 * inlines after "data:image/png;base64,". NULL (logged) when out of memory. */
char *cli_png_base64(const uint8_t *px, int w, int h, int channels, int stride);

/* The model file to use: explicit path, else $SACCADE_MODEL, else the installed data dir,
 * else models/ next to the binary (or its parent, for the build tree), else the source tree's
 * models/. Returns a path (static storage) or NULL with a message listing where it looked. */
const char *cli_find_model(const char *explicit_path, const char *argv0);
/* What eval does before its work (the captioner layer's Model, for its evaluation): as
 * cli_model_open below. */
Model *cli_open_model(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                      long max_len, int *status);

/* What caption, attend, batch and report do before their work, through libsaccade: --quiet
 * (only warnings and errors on stderr), --threads N (0 = all cores) for the one pool, find and
 * load the model (cli_find_model), check --max-len (0 = the model's T) against it. Returns the
 * model, or NULL with *status set to CLI_FAILED (no usable model: the reason printed) or
 * CLI_USAGE (bad --max-len, named). */
saccade_model *cli_model_open(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                              long max_len, int *status);

/* ---- the decoding options: one table for caption, attend, eval and batch ---- */

/* Groups of the table, chosen per command: */
enum {
    CLI_DEC_BEAM = 1,     /* --beam K */
    CLI_DEC_GREEDY = 2,   /* --greedy */
    CLI_DEC_NBEST = 4,    /* --nbest N */
    CLI_DEC_MAX_LEN = 8,  /* --max-len N */
    CLI_DEC_LEN_NORM = 16, /* --len-norm A */
    CLI_DEC_REPEATS = 32, /* --no-repeat, --no-repeat-bigram, --repeats */
    CLI_DEC_ALL = 63
};
/* getopt_long ids of the table's options (CLI_DEC_ID + index; subcommands use ids below). */
#define CLI_DEC_ID 1000
#define CLI_DEC_MAX_OPTIONS 8

typedef struct CliDecode {
    long beam, nbest, max_len; /* max_len 0: the model's T */
    double len_norm;
    int greedy, beam_given;
    int no_repeat, no_repeat_bigram;
} CliDecode;

/* The defaults: beam 3, nbest 1, max_len 0, len_norm 0.7, the bigram guard on. */
void cli_decode_defaults(CliDecode *d);
/* Copy the getopt_long entries of the groups in mask to out (room for CLI_DEC_MAX_OPTIONS);
 * returns how many. */
int cli_decode_longopts(unsigned mask, struct option *out);
/* getopt_long (after optind = 1, opterr = 0) that parses the table's options into d itself:
 * returns the next other option, -1 at the end, or CLI_DEC_USAGE when a table option's value
 * was wrong (the error printed). */
#define CLI_DEC_USAGE (CLI_DEC_ID - 1)
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, CliDecode *d);
/* The help lines of the groups in mask, the option column `width` wide. */
void cli_decode_help(FILE *f, unsigned mask, int width);
/* After parsing: --greedy against --beam, --nbest against the beam (usage errors naming cmd).
 * CLI_OK or CLI_USAGE. */
int cli_decode_check(const char *cmd, CliDecode *d);
/* d as library options. */
void cli_decode_options(const CliDecode *d, saccade_options *opt);

/* 1 when stderr is a terminal (progress may redraw with '\r'). */
int cli_stderr_is_tty(void);

/* Set once a SIGINT/SIGTERM arrives (installed by cli_catch_signals). */
extern volatile int cli_interrupted;
void cli_catch_signals(void);

/* Threads: --threads N (0 = all cores) for the single pool. */
int cli_cores(void);

/* Subcommands: argc/argv start at the subcommand name. */
int cmd_train(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_attend(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* saccade report's page (charts only) for a training log: what train --report refreshes each
 * epoch. A CLI_* status; errors are logged naming the file. */
int cmd_report_write(const char *log_path, const char *out_path, int quiet);

#endif
