/*
 * helperutil.h - what the test helper programs (cli_helper, batch_testtool) share. Like them it
 * is independent of saccade's own code, so a bug there cannot hide itself in the checks.
 */
#ifndef SACCADE_HELPERUTIL_H
#define SACCADE_HELPERUTIL_H

#include <stddef.h>

/* 1 when the n bytes at s are valid UTF-8 (no overlong forms, surrogates or values > U+10FFFF). */
int utf8_ok(const unsigned char *s, size_t n);

#endif
