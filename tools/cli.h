/*
 * cli.h - what the saccade subcommands share: option value parsing with errors that name the
 * option, the exit codes, finding the default model, and terminal-aware progress output.
 *
 * Exit codes: 0 success, 1 runtime failure (some inputs failed), 2 usage error.
 */
#ifndef SACCADE_CLI_H
#define SACCADE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"

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
/* s with & < > " ' as HTML character references (caller frees); NULL when out of memory. */
char *cli_html_escape(const char *s);
/* The w x h pixels at px (channels 3: RGB, 4: RGBA; row stride in bytes) as a PNG file in
 * memory (*png, *len; the caller frees *png). SAC_OK or SAC_ERR_NOMEM (logged). */
int cli_png_encode(const uint8_t *px, int w, int h, int channels, int stride, uint8_t **png, size_t *len);
/* The n bytes at data as base64 text (caller frees); NULL when out of memory. */
char *cli_base64(const uint8_t *data, size_t n);

/* The model file to use: explicit path, else $SACCADE_MODEL, else the installed data dir,
 * else models/ next to the binary (or its parent, for the build tree), else the source tree's
 * models/. Returns a path (static storage) or NULL with a message listing where it looked. */
const char *cli_find_model(const char *explicit_path, const char *argv0);
/* Load the model found above; NULL (message printed) on failure. */
Model *cli_load_model(const char *explicit_path, const char *argv0);

/* What caption, attend and eval do before their work: --quiet, --threads (0 = all cores) for the
 * one pool, load the model, check --max-len (0 = the model's T) against it. Returns the model,
 * or NULL with *status set to CLI_FAILED (no usable model) or CLI_USAGE (bad --max-len, named). */
Model *cli_open_model(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                      long max_len, int *status);

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
