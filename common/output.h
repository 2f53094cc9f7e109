/*
 * output.h - the one way saccade writes a file a user named: never lose the user's data.
 *
 * - A regular file (or a path that does not exist yet) is replaced atomically: the bytes go to a
 *   temporary file made with mkstemp in the same directory as the target, every write is
 *   checked, the file is fsynced, renamed over the target and the directory is fsynced. The
 *   target is either untouched or complete. The new file keeps the mode of the file it replaces
 *   (a new file gets 0666 & ~umask); a file this process may not write is refused, not replaced.
 *   Other hard links to the old file keep the old contents.
 * - A symbolic link is followed (the whole chain, also when it dangles) and its TARGET is
 *   written; the link itself stays.
 * - Anything that is not a regular file (a device such as /dev/null or /dev/full, a FIFO, a
 *   socket, and "-" meaning stdout) is written directly: never renamed over, never truncated
 *   by a rename.
 * - SAC_OUTPUT_INPLACE writes a regular file in place instead (truncated, or appended to with
 *   SAC_OUTPUT_APPEND): for record streams that must keep what was written when killed (batch
 *   results, a training log). The close fsyncs it.
 * - A failed write, flush, fsync, close or rename is an error that names the file and the
 *   reason: "/dev/full: write error (No space left on device)".
 *
 * Also here: the check that an output is not one of the inputs, an exclusive advisory lock for
 * an output that a long run owns, checking stdout at exit, and text made safe for JSON (valid
 * UTF-8) and for the terminal (no control characters).
 *
 * Errors are logged through sac_log (naming the file) and returned as SAC_* status codes.
 * Thread-safety: one SacOutput is used by one thread at a time (callers that share one lock
 * around it); the functions keep no global state except the stdout error record.
 * Size letters: none.
 */
#ifndef SACCADE_OUTPUT_H
#define SACCADE_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

enum {
    SAC_OUTPUT_INPLACE = 1, /* write a regular file in place (truncated), not via temp + rename */
    SAC_OUTPUT_APPEND = 2   /* in place, appending (created when missing); implies INPLACE */
};

typedef struct SacOutput SacOutput;

/* Open `path` for writing as described above ("-" is stdout). Returns NULL (logged, naming the
 * path) when the path is a directory, its directory cannot be written, or out of memory.
 * Nothing visible changes at the target until sac_output_close (atomic mode). */
SacOutput *sac_output_open(const char *path, int flags);
/* The stream to write to (owned by the SacOutput; do not fclose it). */
FILE *sac_output_stream(SacOutput *o);
/* The path as given to sac_output_open (for messages). */
const char *sac_output_name(const SacOutput *o);
/* 1 when the target is a regular file written atomically (temp + rename). */
int sac_output_is_atomic(const SacOutput *o);
/* Push what was written so far out to the file (not fsynced). SAC_OK, or SAC_ERR_IO logged as
 * "<path>: write error (<reason>)" when any write so far failed. */
int sac_output_flush(SacOutput *o);
/* Finish: flush, fsync, close and (atomic mode) rename over the target and fsync the
 * directory. Always frees o. SAC_OK, or SAC_ERR_IO logged with the path; on error the target is
 * left as it was (atomic mode) and the temporary file removed. No-op SAC_OK on NULL. */
int sac_output_close(SacOutput *o);
/* Give up: atomic mode removes the temporary file and leaves the target untouched; otherwise
 * the stream is closed. Frees o; no-op on NULL. */
void sac_output_discard(SacOutput *o);
/* Write n bytes to path in one go (open, write, close as above). SAC_OK or a logged status. */
int sac_output_write_file(const char *path, const void *data, size_t n, int flags);

/* Unlink the temporary files of the atomic outputs open now (their targets stay as they were).
 * Async-signal-safe: for a handler that ends the process at once (tools/cli.c). */
void sac_output_remove_temps(void);

/* 1 when paths a and b name the same existing file (same st_dev and st_ino, links followed),
 * else 0. */
int sac_same_file(const char *a, const char *b);
/* Refuse an output that is one of the inputs: for each of the n inputs (NULL entries are
 * skipped) that is the same file as `output`, logs "<output>: is also the input <input>;
 * refusing to overwrite it (choose another <what>)" and returns SAC_ERR_INVALID. SAC_OK when
 * the output does not exist yet or is none of them. `what` names the option, e.g. "--results". */
int sac_output_check_inputs(const char *output, const char *what, const char *const *inputs, int n);

/* ---- an exclusive lock on an output that a run owns ---- */

typedef struct SacLock SacLock;

/* Take an exclusive advisory lock (flock, LOCK_EX | LOCK_NB) on the sidecar "<target>.lock",
 * where target is `path` with symbolic links followed (so two names of one file share a lock),
 * and write "pid <pid>: <holder>\n" into it. holder: the command that holds it (NULL: this
 * process's command line). When another process holds it, logs "<path> is in use by another
 * run (pid N: saccade batch ...); wait for it to finish or choose another output", sets
 * *busy = 1 and returns NULL; other failures log, set *busy = 0 and return NULL. "-" and paths
 * that are not regular files need no lock: a lock that does nothing is returned. The lock goes
 * with the process: a run killed with SIGKILL leaves the sidecar behind, and the next run simply
 * takes it (nobody holds the flock). */
SacLock *sac_lock_acquire(const char *path, const char *holder, int *busy);
/* Release the lock and remove the sidecar. No-op on NULL. */
void sac_lock_release(SacLock *l);

/* ---- stdout ---- */

/* fflush(stdout), remembering the first write error (what a later sac_stdout_close reports).
 * SAC_OK or SAC_ERR_IO (not logged: sac_stdout_close reports it once). */
int sac_stdout_flush(void);
/* At exit: flush and close stdout; any write error since the start (or a failed close) is
 * logged once as "stdout: write error (No space left on device)" and returns SAC_ERR_IO. */
int sac_stdout_close(void);

/* ---- text for JSON and for the terminal ---- */

/* A copy of s that is valid UTF-8, for JSON: each byte that is not part of a valid UTF-8
 * sequence becomes the 4 characters "\xHH" (backslash, x, two lowercase hex digits); valid
 * text, including backslashes, is copied unchanged. NULL when out of memory; caller frees. */
char *sac_utf8_escape(const char *s);
/* 1 when s is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
int sac_utf8_valid(const char *s);
/* Make s safe to print on a terminal, in place: control characters (C0 except none, DEL, the
 * C1 range U+0080..U+009F, so ESC and every ANSI sequence's introducer) and bytes that are not
 * valid UTF-8 become '?'. Returns s. */
char *sac_term_clean(char *s);

#endif
