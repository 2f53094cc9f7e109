/*
 * fileio.h - opening an input file safely: the one place where saccade opens files it reads
 * whole (images, model files, datasets, results).
 *
 * Size letters: none.
 *
 * An input must be a regular file. The path is checked with stat() first, so a FIFO, a device,
 * a socket or a directory is refused without being opened (opening a FIFO for reading blocks
 * until a writer appears; opening some devices has side effects), then opened with
 * O_NONBLOCK | O_CLOEXEC and checked again with fstat() on the descriptor, so a path swapped
 * for a FIFO between the two checks cannot block either. Files are read to the end (a file that
 * grows while being read is read up to max_bytes).
 */
#ifndef SACCADE_FILEIO_H
#define SACCADE_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Open path for reading, as described above. Returns a descriptor (>= 0) the caller closes, or
 * a negative status, logged with the path and what was found:
 *   SAC_ERR_NOTFOUND  no such file (or a path component is not a directory)
 *   SAC_ERR_IO        cannot be opened (permissions, ...) or is not a regular file (a directory,
 *                     FIFO, character or block device, socket) */
int sac_open_regular(const char *path);

/* Read the whole regular file at path into a new buffer: *buf holds *len bytes plus a
 * terminating NUL (so text can be parsed in place); the caller frees it with free().
 * max_bytes: refuse files larger than this (0 = no limit). On failure *buf is NULL, *len 0,
 * and the status is logged with the path: those of sac_open_regular, SAC_ERR_IO (read error),
 * SAC_ERR_UNSUPPORTED (larger than max_bytes), SAC_ERR_NOMEM. */
int sac_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len);

#endif
