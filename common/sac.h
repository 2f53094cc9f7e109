/*
 * sac.h - status codes, logging and invariant checks shared by every saccade module.
 *
 * Library code never calls exit(): fallible calls return 0 (SAC_OK) or a negative
 * status, constructors return NULL, and both log why (with the path and what was
 * expected and found) through sac_log. A broken internal invariant aborts with
 * file:line through SAC_ASSERT, in release builds too. User input is never checked
 * with SAC_ASSERT or assert().
 */
#ifndef SACCADE_SAC_H
#define SACCADE_SAC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SAC_OK = 0,
    SAC_ERR_NOMEM = -1,      /* allocation failed */
    SAC_ERR_IO = -2,         /* open/read/write failed */
    SAC_ERR_FORMAT = -3,     /* a file's contents are malformed */
    SAC_ERR_INVALID = -4,    /* an argument or configuration is out of range */
    SAC_ERR_NOTFOUND = -5,   /* a named thing (file, tensor, word) is absent */
    SAC_ERR_CANCELLED = -6,  /* a progress callback asked to stop */
    SAC_ERR_UNSUPPORTED = -7 /* valid input that this build cannot handle */
};

/* Text for a status code; never NULL. */
const char *sac_strerror(int status);

enum { SAC_LOG_ERROR = 0, SAC_LOG_WARN = 1, SAC_LOG_INFO = 2, SAC_LOG_DEBUG = 3 };

/* Log a message (printf format, no trailing newline needed) to the current sink.
 * The default sink writes "saccade: <msg>\n" to stderr for levels <= the current level. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void sac_log(int level, const char *fmt, ...);

typedef void (*SacLogFn)(int level, const char *msg, void *user);
/* Replace the sink (NULL restores stderr). Used by tests to capture messages. */
void sac_log_set_sink(SacLogFn fn, void *user);
/* Messages above this level are dropped (default SAC_LOG_INFO). */
void sac_log_set_level(int level);
/* On the calling thread only: from now on copy the first error message logged into buf (size
 * bytes, NUL-terminated; set to "" here), besides sending it to the sink as usual. NULL stops.
 * How the library (lib/saccade.c) and `saccade batch` keep the message of one failed call. */
void sac_log_capture(char *buf, size_t size);

/* Log "<where>: <message>" as an error and return status: how the validating readers (the
 * safetensors, TFLite and backbone files) report what a file got wrong, in one line. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int sac_error_at(int status, const char *where, const char *fmt, ...);
/* The same with a va_list, for helpers that build `where` themselves. */
int sac_verror_at(int status, const char *where, const char *fmt, va_list ap);

#define sac_error(...) sac_log(SAC_LOG_ERROR, __VA_ARGS__)
#define sac_warn(...) sac_log(SAC_LOG_WARN, __VA_ARGS__)
#define sac_info(...) sac_log(SAC_LOG_INFO, __VA_ARGS__)

void sac_abort(const char *file, int line, const char *expr);
#define SAC_ASSERT(x) \
    do { \
        if (!(x)) sac_abort(__FILE__, __LINE__, #x); \
    } while (0)

/* malloc/calloc that log on failure and return NULL. */
void *sac_malloc(size_t size);
void *sac_calloc(size_t n, size_t size);
/* Room for at least need elements of elem bytes in the array p of *cap elements: p when it has
 * room, else p reallocated to max(need, 2 * *cap, 16) elements and *cap updated. NULL when out
 * of memory or the size overflows: p is then untouched and still the caller's, and nothing is
 * logged (the caller says what it was growing). */
void *sac_grow(void *p, size_t *cap, size_t need, size_t elem);
/* 64-byte aligned allocation for tensors; release with free(). */
float *sac_alloc_floats(size_t n);

/* Monotonic seconds. */
double sac_time(void);

#define SAC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SAC_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
