/*
 * fuzz.h - what the fuzz targets share: the libFuzzer entry point, a quiet log, and a file whose
 * contents are the input (for readers that take a path).
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput. Built with clang and
 * -fsanitize=fuzzer (meson -Dfuzzing=true) it is a libFuzzer program; linked with replay.c
 * (any compiler, no libFuzzer) it replays the files of directories: the seed corpus and the
 * regression corpus, as the unit tests 'fuzz-<target>' under ASan + UBSan in CI.
 * Size letters: none.
 */
#ifndef SACCADE_FUZZ_H
#define SACCADE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Drop every log message (the readers explain each rejection; a fuzzer makes millions). */
void fuzz_quiet(void);

/* The path of a regular file holding exactly data[0..size): a memfd reached through
 * /proc/self/fd, rewritten on every call (one per slot 0..3). Aborts when it cannot be made. */
const char *fuzz_file(int slot, const uint8_t *data, size_t size);

/* A private directory (made once, removed at exit) for readers that create files beside their
 * input; returns "DIR/name". */
const char *fuzz_dir_path(const char *name);

/* Abort with a message: a property of the input-side code was broken. */
void fuzz_fail(const char *what);

#endif
