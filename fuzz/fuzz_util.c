/*
 * fuzz_util.c - helpers of fuzz.h: a quiet log sink, memfd-backed input files, a scratch
 * directory. Size letters: none.
 */
#include "fuzz.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sac.h"

static void drop(int level, const char *msg, void *user)
{
    (void)level, (void)msg, (void)user;
}

void fuzz_quiet(void)
{
    if (!getenv("SACCADE_FUZZ_VERBOSE")) sac_log_set_sink(drop, NULL);
}

void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz: property broken: %s\n", what);
    abort();
}

const char *fuzz_file(int slot, const uint8_t *data, size_t size)
{
    static int fds[4] = {-1, -1, -1, -1};
    static char paths[4][64];
    if (slot < 0 || slot > 3) fuzz_fail("fuzz_file slot out of range");
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("saccade-fuzz", MFD_CLOEXEC);
        if (fds[slot] < 0) fuzz_fail("memfd_create failed");
        snprintf(paths[slot], sizeof(paths[slot]), "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) fuzz_fail("ftruncate failed");
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fds[slot], data + done, size - done, (off_t)done);
        if (w <= 0) fuzz_fail("pwrite failed");
        done += (size_t)w;
    }
    return paths[slot];
}

static char dir[256];

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", dir);
}

const char *fuzz_dir_path(const char *name)
{
    static char path[512];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/saccade-fuzz-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(dir)) fuzz_fail("mkdtemp failed");
        atexit(remove_dir);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}
