/*
 * fileio.c - open and read input files safely (regular files only, never blocking on a FIFO).
 * See fileio.h.
 *
 * Size letters: none.
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sac.h"

/* What a stat mode is, for messages; NULL for a regular file. */
static const char *file_kind(mode_t m)
{
    if (S_ISREG(m)) return NULL;
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

static int open_error(const char *path, int e)
{
    if (e == ENOENT || e == ENOTDIR) {
        sac_error("%s: no such file, expected a regular file", path);
        return SAC_ERR_NOTFOUND;
    }
    sac_error("%s: cannot open: %s", path, strerror(e));
    return SAC_ERR_IO;
}

int sac_open_regular(const char *path)
{
    if (!path || !*path) {
        sac_error("empty path, expected the name of a regular file");
        return SAC_ERR_NOTFOUND;
    }
    struct stat st;
    if (stat(path, &st) != 0) return open_error(path, errno);
    const char *kind = file_kind(st.st_mode);
    if (kind) {
        sac_error("%s: is %s, expected a regular file", path, kind);
        return SAC_ERR_IO;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return open_error(path, errno);
    if (fstat(fd, &st) != 0 || (kind = file_kind(st.st_mode)) != NULL) {
        sac_error("%s: is %s, expected a regular file", path, kind ? kind : "unreadable");
        close(fd);
        return SAC_ERR_IO;
    }
    return fd;
}

int sac_read_file(const char *path, size_t max_bytes, uint8_t **buf_out, size_t *len_out)
{
    *buf_out = NULL;
    *len_out = 0;
    if (max_bytes == 0 || max_bytes > SIZE_MAX / 2) max_bytes = SIZE_MAX / 2;
    int fd = sac_open_regular(path);
    if (fd < 0) return fd;
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if ((uint64_t)st.st_size > max_bytes) {
        sac_error("%s: %lld bytes, expected at most %zu", path, (long long)st.st_size, max_bytes);
        close(fd);
        return SAC_ERR_UNSUPPORTED;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = SAC_OK;
    for (;;) {
        if (!buf || n + 1 >= cap) { /* keep one byte for the NUL */
            if (buf) cap = cap > max_bytes ? max_bytes + 2 : cap * 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                sac_error("%s: out of memory reading %zu bytes", path, cap);
                rc = SAC_ERR_NOMEM;
                break;
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            sac_error("%s: read failed after %zu bytes: %s", path, n, strerror(errno));
            rc = SAC_ERR_IO;
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max_bytes) {
            sac_error("%s: larger than %zu bytes, expected at most that", path, max_bytes);
            rc = SAC_ERR_UNSUPPORTED;
            break;
        }
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *buf_out = buf;
    *len_out = n;
    return SAC_OK;
}
