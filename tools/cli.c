/*
 * cli.c - shared command-line helpers, see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "matmul.h"
#include "sac.h"
#include "saccade_config.h"

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        if (hi == LONG_MAX)
            fprintf(stderr, "saccade: invalid value \"%s\" for %s: expected an integer >= %ld\n", s, opt, lo);
        else
            fprintf(stderr, "saccade: invalid value \"%s\" for %s: expected an integer in %ld..%ld\n", s, opt, lo, hi);
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
        fprintf(stderr, "saccade: invalid value \"%s\" for %s: expected a number in [%g, %g]\n", s, opt, lo, hi);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_parse_shard(const char *opt, const char *s, int *index, int *count)
{
    int i, n, len = 0;
    if (sscanf(s, "%d/%d%n", &i, &n, &len) != 2 || s[len] || n < 1 || i < 0 || i >= n) {
        fprintf(stderr, "saccade: invalid value \"%s\" for %s: expected I/N with 0 <= I < N\n", s, opt);
        return CLI_USAGE;
    }
    *index = i, *count = n;
    return CLI_OK;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "saccade %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'saccade %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_option_error(const char *cmd, int c, char **argv)
{
    const char *arg = argv[optind - 1];
    if (c == ':') return cli_usage_error(cmd, "option '%s' needs a value", arg);
    if (optopt && arg[0] == '-' && arg[1] != '-') return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, "unknown option '%s'", arg);
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
    /* next to the binary: <dir>/models, <dir>/../models (build tree: build/tools/saccade) */
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
        const char *rel[] = {"models", "../models", "../../models"};
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            snprintf(buf, sizeof(buf), "%s/%s/%s", slash ? exe : ".", rel[i], name);
            if (readable(buf)) return buf;
        }
    }
    snprintf(buf, sizeof(buf), "%s/%s", SACCADE_SOURCE_MODELDIR, name);
    if (readable(buf)) return buf;
    fprintf(stderr,
            "saccade: no model found: give --model FILE or set SACCADE_MODEL (looked in %s, models/ next to the "
            "program, and %s)\n",
            SACCADE_DATADIR, SACCADE_SOURCE_MODELDIR);
    return NULL;
}

Model *cli_load_model(const char *explicit_path, const char *argv0)
{
    const char *path = cli_find_model(explicit_path, argv0);
    if (!path) return NULL;
    Model *m = model_load(path);
    if (!m) fprintf(stderr, "saccade: cannot use model %s (see above)\n", path);
    return m;
}

Model *cli_open_model(const char *cmd, const char *model_path, const char *argv0, int quiet, long threads,
                      long max_len, int *status)
{
    if (quiet) sac_log_set_level(SAC_LOG_WARN);
    sac_blas_set_threads(threads > 0 ? (int)threads : cli_cores());
    Model *m = cli_load_model(model_path, argv0);
    if (!m) {
        *status = CLI_FAILED;
        return NULL;
    }
    if (max_len > m->cfg.T) {
        *status = cli_usage_error(cmd, "invalid value \"%ld\" for --max-len: expected an integer in 1..%d (this model's T)",
                                  max_len, m->cfg.T);
        model_free(m);
        return NULL;
    }
    return m;
}

int cli_stderr_is_tty(void) { return isatty(STDERR_FILENO); }

volatile int cli_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
