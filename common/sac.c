/*
 * sac.c - status text, the log sink, aborts with file:line, checked allocation.
 */
#include "sac.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "output.h"

const char *sac_strerror(int status)
{
    switch (status) {
    case SAC_OK: return "success";
    case SAC_ERR_NOMEM: return "out of memory";
    case SAC_ERR_IO: return "input/output error";
    case SAC_ERR_FORMAT: return "malformed file";
    case SAC_ERR_INVALID: return "invalid argument";
    case SAC_ERR_NOTFOUND: return "not found";
    case SAC_ERR_CANCELLED: return "cancelled";
    case SAC_ERR_UNSUPPORTED: return "unsupported";
    default: return "unknown error";
    }
}

static SacLogFn log_fn;
static void *log_user;
static int log_level = SAC_LOG_INFO;

void sac_log_set_sink(SacLogFn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void sac_log_set_level(int level) { log_level = level; }

static _Thread_local char *capture_buf;
static _Thread_local size_t capture_size;

void sac_log_capture(char *buf, size_t size)
{
    capture_buf = buf && size ? buf : NULL;
    capture_size = size;
    if (capture_buf) capture_buf[0] = 0;
}

void sac_log(int level, const char *fmt, ...)
{
    int capture = level == SAC_LOG_ERROR && capture_buf && !capture_buf[0];
    if (level > log_level && !log_fn && !capture) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (capture) snprintf(capture_buf, capture_size, "%s", msg);
    if (level > log_level && !log_fn) return;
    if (log_fn) {
        log_fn(level, msg, log_user);
        return;
    }
    static const char *prefix[] = {"error: ", "warning: ", "", ""};
    sac_term_clean(msg); /* a file name's control characters (ANSI escapes) do not reach the terminal */
    fprintf(stderr, "saccade: %s%s\n", prefix[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

int sac_verror_at(int status, const char *where, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    sac_term_clean(msg); /* what a file says about itself: no escape sequences, for any sink */
    sac_error("%s: %s", where, msg);
    return status;
}

int sac_error_at(int status, const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sac_verror_at(status, where, fmt, ap);
    va_end(ap);
    return status;
}

void sac_abort(const char *file, int line, const char *expr)
{
    fprintf(stderr, "saccade: internal error at %s:%d: assertion '%s' failed\n", file, line, expr);
    fflush(stderr);
    abort();
}

void *sac_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) sac_error("out of memory allocating %zu bytes", size);
    return p;
}

void *sac_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t c = *cap > SIZE_MAX / 2 ? need : SAC_MAX(2 * *cap, need);
    c = SAC_MAX(c, 16);
    if (!elem || c > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, c * elem);
    if (q) *cap = c;
    return q;
}

void *sac_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sac_error("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

float *sac_alloc_floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) sac_error("out of memory allocating %zu floats", n);
    return p;
}

double sac_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
