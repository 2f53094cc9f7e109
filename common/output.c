/*
 * output.c - writing the files a user named without losing them; see output.h.
 *
 * The stream handed out is a stdio cookie stream over the file descriptor, so that every write
 * is checked (partial writes retried, EINTR retried) and the first failure's errno is kept:
 * stdio alone forgets why a buffered write failed by the time the caller flushes or closes.
 *
 * Size letters: none.
 */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sac.h"

enum { KIND_STDOUT, KIND_ATOMIC, KIND_INPLACE, KIND_DIRECT };

struct SacOutput {
    char *name;   /* as given */
    char *target; /* the file finally written (links followed); NULL for stdout */
    char *tmp;    /* atomic: the temporary file, renamed over target at close */
    int kind, fd;
    int err;      /* errno of the first failed write, 0 while all went well */
    int reported; /* the failure has been logged */
    int slot;     /* atomic: its entry in live_temps, -1 when none was free */
    FILE *f;
};

/* ---- the temporary files being written, for a process that must end at once ----
 * A fixed table (a signal handler may read it: no allocation, no lock): a writer claims a free
 * entry, copies its path in, then marks it live; sac_output_remove_temps unlinks the live ones. */
enum { LIVE_TEMPS = 32, LIVE_FREE = 0, LIVE_CLAIMED = 1, LIVE_READY = 2 };
static struct {
    atomic_int state;
    char path[PATH_MAX];
} live_temps[LIVE_TEMPS];

static int temp_register(const char *path)
{
    if (strlen(path) >= PATH_MAX) return -1;
    for (int i = 0; i < LIVE_TEMPS; i++) {
        int expect = LIVE_FREE;
        if (atomic_compare_exchange_strong(&live_temps[i].state, &expect, LIVE_CLAIMED)) {
            strcpy(live_temps[i].path, path);
            atomic_store(&live_temps[i].state, LIVE_READY);
            return i;
        }
    }
    return -1; /* more than LIVE_TEMPS at once: that one is not removed by a forced quit */
}

static void temp_unregister(int slot)
{
    if (slot >= 0) atomic_store(&live_temps[slot].state, LIVE_FREE);
}

void sac_output_remove_temps(void)
{
    for (int i = 0; i < LIVE_TEMPS; i++)
        if (atomic_load(&live_temps[i].state) == LIVE_READY) unlink(live_temps[i].path);
}

/* ---- paths ---- */

/* The directory part of path ("." when it has none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Follow the chain of symbolic links starting at path to the name that does not exist yet (a
 * dangling link's final target). NULL with errno set on failure (ELOOP after 40 links). */
static char *follow_dangling(const char *path)
{
    char *cur = strdup(path);
    for (int hops = 0; cur && hops < 40; hops++) {
        struct stat sb;
        if (lstat(cur, &sb) || !S_ISLNK(sb.st_mode)) return cur;
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof(link) - 1);
        if (n < 0) {
            free(cur);
            return NULL;
        }
        link[n] = 0;
        char *next;
        if (link[0] == '/') {
            next = strdup(link);
        } else {
            char *dir = dir_of(cur);
            size_t len = (dir ? strlen(dir) : 0) + strlen(link) + 2;
            next = dir ? malloc(len) : NULL;
            if (next) snprintf(next, len, "%s/%s", dir, link);
            free(dir);
        }
        free(cur);
        cur = next;
    }
    if (cur) {
        free(cur);
        errno = ELOOP;
    } else {
        errno = ENOMEM;
    }
    return NULL;
}

/* What path names: KIND_ATOMIC for a regular file or a name to create (*target: the file, links
 * followed; *existing: 1 with *sb filled when it exists), KIND_DIRECT for anything else (written
 * through path itself). -1 (logged) when it is a directory or cannot be looked at. */
static int resolve(const char *path, char **target, struct stat *sb, int *existing)
{
    *target = NULL;
    *existing = 0;
    if (stat(path, sb) == 0) {
        if (S_ISDIR(sb->st_mode)) {
            sac_error("%s: is a directory, expected a file to write", path);
            return -1;
        }
        if (!S_ISREG(sb->st_mode)) return KIND_DIRECT;
        if (access(path, W_OK)) { /* a file the user may not write is not replaced behind their back */
            sac_error("%s: cannot write (%s)", path, strerror(errno));
            return -1;
        }
        *existing = 1;
        *target = realpath(path, NULL);
        if (!*target) *target = strdup(path);
    } else if (errno == ENOENT) {
        *target = follow_dangling(path);
        if (!*target && errno != ENOMEM) {
            sac_error("%s: cannot follow its symbolic links (%s)", path, strerror(errno));
            return -1;
        }
    } else {
        sac_error("%s: cannot write (%s)", path, strerror(errno));
        return -1;
    }
    if (!*target) {
        sac_error("%s: out of memory", path);
        return -1;
    }
    return KIND_ATOMIC;
}

static mode_t umask_value;
static void umask_read(void)
{
    umask_value = umask(0); /* umask can only be read by setting it */
    umask(umask_value);
}

/* The mode a new file gets: 0666 & ~umask (read once, before any worker thread writes). */
static mode_t new_file_mode(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, umask_read);
    return 0666 & ~umask_value;
}

/* ---- stdout's error record ---- */

static int stdout_errno;    /* the first write error seen on stdout; -1 when its cause is unknown */
static int stdout_reported; /* logged already */

static int stdout_report(void)
{
    if (!stdout_reported)
        sac_error("stdout: write error (%s)", stdout_errno > 0 ? strerror(stdout_errno) : "an earlier write failed");
    stdout_reported = 1;
    return SAC_ERR_IO;
}

/* ---- the checked stream ---- */

static ssize_t cookie_write(void *cookie, const char *buf, size_t n)
{
    SacOutput *o = cookie;
    if (o->err) return 0; /* glibc: 0 marks the stream as failed */
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(o->fd, buf + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            o->err = k < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)k;
    }
    return (ssize_t)n;
}

static void output_free(SacOutput *o)
{
    temp_unregister(o->slot);
    free(o->name), free(o->target), free(o->tmp);
    free(o);
}

/* Report the write error of o (logged once) and return SAC_ERR_IO. */
static int write_error(SacOutput *o, int err)
{
    if (!o->err) o->err = err ? err : EIO;
    if (!o->reported) sac_error("%s: write error (%s)", o->name, strerror(o->err));
    o->reported = 1;
    return SAC_ERR_IO;
}

/* A temporary file next to target: "<dir>/.<base>.XXXXXX" (base cut so the name fits). */
static int make_temp(SacOutput *o, mode_t mode, const struct stat *old)
{
    char *dir = dir_of(o->target);
    const char *slash = strrchr(o->target, '/'), *base = slash ? slash + 1 : o->target;
    size_t len = (dir ? strlen(dir) : 0) + strlen(base) + 16;
    o->tmp = dir ? malloc(len) : NULL;
    if (!o->tmp) {
        free(dir);
        sac_error("%s: out of memory", o->name);
        return SAC_ERR_NOMEM;
    }
    snprintf(o->tmp, len, "%s/.%.200s.XXXXXX", dir, base);
    o->fd = mkstemp(o->tmp);
    if (o->fd >= 0) o->slot = temp_register(o->tmp);
    if (o->fd < 0) {
        sac_error("%s: cannot create a temporary file in %s to write it (%s)", o->name, dir, strerror(errno));
        free(dir);
        free(o->tmp), o->tmp = NULL;
        return SAC_ERR_IO;
    }
    free(dir);
    /* the replacement keeps the replaced file's mode (and owner, when allowed) */
    if (old && (old->st_uid != geteuid() || old->st_gid != getegid()) &&
        fchown(o->fd, old->st_uid, old->st_gid) && errno != EPERM)
        sac_warn("%s: the new file cannot get the owner of the old one (%s)", o->name, strerror(errno));
    if (fchmod(o->fd, mode)) {
        sac_error("%s: cannot set the mode of %s (%s)", o->name, o->tmp, strerror(errno));
        return SAC_ERR_IO;
    }
    return SAC_OK;
}

SacOutput *sac_output_open(const char *path, int flags)
{
    SacOutput *o = sac_calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->fd = -1, o->slot = -1;
    if (!(o->name = strdup(path))) goto nomem;
    if (!strcmp(path, "-")) {
        o->kind = KIND_STDOUT;
        o->f = stdout;
        return o;
    }
    struct stat sb;
    int existing;
    int kind = resolve(path, &o->target, &sb, &existing);
    if (kind < 0) goto fail;
    if (kind == KIND_DIRECT) {
        o->kind = KIND_DIRECT;
        o->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC | (flags & SAC_OUTPUT_APPEND ? O_APPEND : 0));
        if (o->fd < 0) {
            sac_error("%s: cannot open for writing (%s)", path, strerror(errno));
            goto fail;
        }
    } else if (flags & (SAC_OUTPUT_INPLACE | SAC_OUTPUT_APPEND)) {
        o->kind = KIND_INPLACE;
        int mode = flags & SAC_OUTPUT_APPEND ? O_APPEND : O_TRUNC;
        o->fd = open(o->target, O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC | mode, 0666);
        if (o->fd < 0) {
            sac_error("%s: cannot open for writing (%s)", path, strerror(errno));
            goto fail;
        }
    } else {
        o->kind = KIND_ATOMIC;
        if (make_temp(o, existing ? sb.st_mode & 07777 : new_file_mode(), existing ? &sb : NULL)) goto fail;
    }
    static const cookie_io_functions_t io = {NULL, cookie_write, NULL, NULL};
    if (!(o->f = fopencookie(o, "w", io))) goto nomem;
    setvbuf(o->f, NULL, _IOFBF, 1 << 16);
    return o;
nomem:
    sac_error("%s: out of memory", path);
fail:
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    output_free(o);
    return NULL;
}

FILE *sac_output_stream(SacOutput *o) { return o->f; }
const char *sac_output_name(const SacOutput *o) { return o->name; }
int sac_output_is_atomic(const SacOutput *o) { return o->kind == KIND_ATOMIC; }

int sac_output_flush(SacOutput *o)
{
    if (o->kind == KIND_STDOUT) {
        return sac_stdout_flush() ? stdout_report() : SAC_OK;
    }
    int failed = fflush(o->f) != 0 || ferror(o->f);
    if (failed || o->err) return write_error(o, o->err);
    return SAC_OK;
}

/* fsync the directory that holds path, so that a rename into it survives a crash. 0, or the
 * errno of the failure (file systems that cannot sync a directory, EINVAL, are fine). */
static int dir_sync(const char *path)
{
    char *dir = dir_of(path);
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int err = !dir ? ENOMEM : fd < 0 ? errno : fsync(fd) && errno != EINVAL ? errno : 0;
    if (fd >= 0) close(fd);
    free(dir);
    return err;
}

int sac_output_close(SacOutput *o)
{
    if (!o) return SAC_OK;
    if (o->kind == KIND_STDOUT) {
        int st = sac_output_flush(o);
        output_free(o);
        return st;
    }
    int st = SAC_OK, err = 0;
    if (fflush(o->f) || ferror(o->f) || o->err) err = o->err ? o->err : errno;
    fclose(o->f); /* the cookie has no close: the descriptor stays ours */
    if (!err && o->kind != KIND_DIRECT && fsync(o->fd) && errno != EINVAL) err = errno;
    if (close(o->fd) && !err && errno != EINTR) err = errno;
    if (err) st = write_error(o, err);
    if (o->kind == KIND_ATOMIC) {
        if (!st && rename(o->tmp, o->target)) {
            sac_error("%s: cannot replace it with the new file %s (%s)", o->name, o->tmp, strerror(errno));
            st = SAC_ERR_IO;
        }
        int derr = st ? 0 : dir_sync(o->target);
        if (st) unlink(o->tmp);
        else if (derr) sac_warn("%s: written, but its directory could not be synced (%s)", o->name, strerror(derr));
    }
    output_free(o);
    return st;
}

void sac_output_discard(SacOutput *o)
{
    if (!o) return;
    if (o->kind != KIND_STDOUT) {
        o->err = o->err ? o->err : ECANCELED; /* nothing more reaches the file */
        fclose(o->f);
        close(o->fd);
        if (o->tmp) unlink(o->tmp);
    }
    output_free(o);
}

int sac_output_write_file(const char *path, const void *data, size_t n, int flags)
{
    SacOutput *o = sac_output_open(path, flags);
    if (!o) return SAC_ERR_IO;
    (void)fwrite(data, 1, n, o->f); /* a failure is kept by the stream and reported by the close */
    return sac_output_close(o);
}

/* ---- outputs that are inputs ---- */

int sac_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) || stat(b, &sb)) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int sac_output_check_inputs(const char *output, const char *what, const char *const *inputs, int n)
{
    struct stat so;
    if (!output || !strcmp(output, "-") || stat(output, &so) || !S_ISREG(so.st_mode)) return SAC_OK;
    for (int i = 0; i < n; i++) {
        struct stat si;
        if (!inputs[i] || stat(inputs[i], &si)) continue;
        if (si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            sac_error("%s: is also the input %s; refusing to overwrite it (choose another %s)", output, inputs[i],
                      what ? what : "output");
            return SAC_ERR_INVALID;
        }
    }
    return SAC_OK;
}

/* ---- locks ---- */

struct SacLock {
    int fd;     /* -1: nothing to lock */
    char *path; /* the sidecar */
};

/* This process's command line, arguments joined by spaces (at most size - 1 bytes). */
static void own_command_line(char *buf, size_t size)
{
    buf[0] = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0) return;
    while (n > 0 && buf[n - 1] == 0) n--;
    for (ssize_t i = 0; i < n; i++)
        if (!buf[i]) buf[i] = ' ';
    buf[n] = 0;
}

SacLock *sac_lock_acquire(const char *path, const char *holder, int *busy)
{
    *busy = 0;
    SacLock *l = sac_calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->fd = -1;
    struct stat sb;
    int existing;
    char *target = NULL;
    if (!strcmp(path, "-") || (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))) return l;
    if (resolve(path, &target, &sb, &existing) != KIND_ATOMIC) goto fail;
    size_t len = strlen(target) + sizeof(".lock");
    if (!(l->path = malloc(len))) goto fail;
    snprintf(l->path, len, "%s.lock", target);
    free(target);
    target = NULL;
    for (int attempt = 0; attempt < 100; attempt++) {
        l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0666);
        if (l->fd < 0) {
            sac_error("%s: cannot create the lock file %s (%s)", path, l->path, strerror(errno));
            goto fail;
        }
        if (flock(l->fd, LOCK_EX | LOCK_NB)) {
            if (errno != EWOULDBLOCK) {
                sac_error("%s: cannot lock %s (%s)", path, l->path, strerror(errno));
                goto fail;
            }
            char who[512];
            ssize_t n = pread(l->fd, who, sizeof(who) - 1, 0);
            who[n > 0 ? n : 0] = 0;
            who[strcspn(who, "\n")] = 0;
            sac_term_clean(who);
            sac_error("%s is in use by another run (%s); wait for it to finish or choose another output", path,
                      who[0] ? who : "its process is unknown");
            *busy = 1;
            goto fail;
        }
        /* the holder before us may have removed the file between our open and our lock: then the
         * lock is on a file nobody else can find, so take it again on the one at the path */
        struct stat sf, sp;
        if (fstat(l->fd, &sf) == 0 && stat(l->path, &sp) == 0 && sf.st_dev == sp.st_dev && sf.st_ino == sp.st_ino)
            break;
        close(l->fd);
        l->fd = -1;
    }
    if (l->fd < 0) {
        sac_error("%s: cannot lock %s (it keeps being replaced)", path, l->path);
        goto fail;
    }
    char cmd[1024];
    if (!holder) own_command_line(cmd, sizeof(cmd));
    char line[1200];
    int n = snprintf(line, sizeof(line), "pid %ld: %s\n", (long)getpid(), holder ? holder : cmd[0] ? cmd : "?");
    if (n > (int)sizeof(line) - 1) n = (int)sizeof(line) - 1;
    if (ftruncate(l->fd, 0) || pwrite(l->fd, line, (size_t)n, 0) != n)
        sac_warn("%s: cannot record who holds the lock in %s (%s)", path, l->path, strerror(errno));
    return l;
fail:
    free(target);
    if (l->fd >= 0) close(l->fd);
    free(l->path);
    free(l);
    return NULL;
}

void sac_lock_release(SacLock *l)
{
    if (!l) return;
    if (l->fd >= 0) {
        unlink(l->path); /* while still holding it: see the inode check in sac_lock_acquire */
        close(l->fd);
    }
    free(l->path);
    free(l);
}

/* ---- stdout ---- */

int sac_stdout_flush(void)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return SAC_OK;
    if (!stdout_errno) stdout_errno = errno ? errno : -1;
    if (stdout_errno > 0) errno = stdout_errno;
    return SAC_ERR_IO;
}

int sac_stdout_close(void)
{
    int st = sac_stdout_flush();
    errno = 0;
    if (fclose(stdout) && !st) {
        stdout_errno = errno ? errno : -1;
        st = SAC_ERR_IO;
    }
    return st ? stdout_report() : SAC_OK;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p does not start one. */
static int utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xc2) return 0; /* continuation byte or overlong 2-byte form */
    if (c < 0xe0) return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
        if (c == 0xed && p[1] >= 0xa0) return 0; /* surrogates */
        return 3;
    }
    if (c < 0xf5) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        if (c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xf4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

int sac_utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

char *sac_utf8_escape(const char *s)
{
    size_t bad = 0, len = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        bad += n == 0;
        p += n ? n : 1;
        len += n ? n : 1;
    }
    char *out = malloc(len + 3 * bad + 1), *o = out;
    if (!out) return NULL;
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (n) {
            memcpy(o, p, (size_t)n);
            o += n, p += n;
        } else {
            *o++ = '\\', *o++ = 'x', *o++ = hex[*p >> 4], *o++ = hex[*p & 15];
            p++;
        }
    }
    *o = 0;
    return out;
}

char *sac_term_clean(char *s)
{
    unsigned char *w = (unsigned char *)s;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (n == 0 || *p < 0x20 || *p == 0x7f || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
            *w++ = '?';
            p += n ? n : 1;
        } else {
            memmove(w, p, (size_t)n);
            w += n, p += n;
        }
    }
    *w = 0;
    return s;
}
