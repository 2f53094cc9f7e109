/*
 * batch_walk.c - finding the images of `saccade batch`: a recursive walk that survives link
 * loops, choosing files by extension or by their first bytes; and the stable shard hash.
 * See batch.h.
 *
 * Size letters: none.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "sac.h"

int batch_is_image_name(const char *name)
{
    static const char *const ext[] = {"jpg", "jpeg", "jpe", "jfif", "png", "gif", "bmp", "dib", "tga", "icb",
                                      "vda", "vst", "psd", "hdr", "rgbe", "pnm", "ppm", "pgm", "pbm"}; /* no Softimage PIC: refused */
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || strchr(dot, '/')) return 0;
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

int batch_sniff(const uint8_t *h, size_t n)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && h[0] == 0xff && h[1] == 0xd8 && h[2] == 0xff) return 1;
    if (n >= 8 && !memcmp(h, png, 8)) return 1;
    if (n >= 4 && !memcmp(h, "GIF8", 4)) return 1;
    if (n >= 14 && h[0] == 'B' && h[1] == 'M') return 1;
    if (n >= 4 && !memcmp(h, "8BPS", 4)) return 1;
    if (n >= 10 && !memcmp(h, "#?RADIANCE", 10)) return 1;
    if (n >= 6 && !memcmp(h, "#?RGBE", 6)) return 1;
    if (n >= 3 && h[0] == 'P' && (h[1] == '5' || h[1] == '6') && strchr(" \t\r\n", h[2]) && h[2]) return 1;
    return 0;
}

int batch_shard_of(const char *rel, int count)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return count <= 1 ? 0 : (int)(h % (uint64_t)count);
}

/* ---- the set of directories entered: (device, inode), open addressing ---- */

typedef struct {
    dev_t dev;
    ino_t ino;
    int used;
} DirKey;

typedef struct {
    DirKey *slots; /* (cap), cap a power of two */
    size_t n, cap;
} DirSet;

static size_t dirset_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ h >> 29);
}

/* 1 when newly added, 0 when already present, SAC_ERR_NOMEM. */
static int dirset_add(DirSet *s, dev_t dev, ino_t ino)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        DirKey *slots = sac_calloc(cap, sizeof(*slots));
        if (!slots) return SAC_ERR_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i].used) continue;
            size_t j = dirset_hash(s->slots[i].dev, s->slots[i].ino) & (cap - 1);
            while (slots[j].used) j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots, s->cap = cap;
    }
    size_t j = dirset_hash(dev, ino) & (s->cap - 1);
    for (; s->slots[j].used; j = (j + 1) & (s->cap - 1))
        if (s->slots[j].dev == dev && s->slots[j].ino == ino) return 0;
    s->slots[j] = (DirKey){dev, ino, 1};
    s->n++;
    return 1;
}

/* ---- the walk ---- */

typedef struct {
    BatchFileList *list;
    DirSet seen;
} Walk;

static int list_add(BatchFileList *l, const char *path, size_t rel_off, const struct stat *sb)
{
    BatchFile *f = sac_grow(l->files, &l->cap, l->n + 1, sizeof(*f));
    if (!f) {
        sac_error("out of memory listing more than %zu files", l->n);
        return SAC_ERR_NOMEM;
    }
    l->files = f;
    char *p = strdup(path);
    if (!p) return SAC_ERR_NOMEM;
    l->files[l->n].path = p;
    l->files[l->n].rel = p + rel_off;
    l->files[l->n].dev = sb->st_dev;
    l->files[l->n].ino = sb->st_ino;
    l->n++;
    return SAC_OK;
}

/* 1 when the file is an image by name or content, 0 when not, -1 (warned) when it cannot be
 * read to tell. */
static int is_image_file(const char *path, const char *name)
{
    if (batch_is_image_name(name)) return 1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    uint8_t head[16];
    ssize_t n = fd < 0 ? -1 : read(fd, head, sizeof(head));
    int err = errno;
    if (fd >= 0) close(fd);
    if (n < 0) {
        sac_warn("%s: cannot read it to tell whether it is an image (%s); skipped", path, strerror(err));
        return -1;
    }
    return n > 0 && batch_sniff(head, (size_t)n);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk_dir(Walk *w, const char *dir, size_t rel_off)
{
    DIR *d = opendir(dir);
    if (!d) {
        sac_warn("%s: cannot read directory (%s); skipped", dir, strerror(errno));
        w->list->skipped++;
        return SAC_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int st = SAC_OK;
    for (struct dirent *e; (errno = 0, e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden files and folders */
        char **nn = sac_grow(names, &cap, n + 1, sizeof(*nn));
        if (!nn) {
            st = SAC_ERR_NOMEM;
            break;
        }
        names = nn;
        if (!(names[n] = strdup(e->d_name))) {
            st = SAC_ERR_NOMEM;
            break;
        }
        n++;
    }
    if (errno && st == SAC_OK) {
        sac_warn("%s: cannot read the whole directory (%s); the rest of it skipped", dir, strerror(errno));
        w->list->skipped++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof(*names), cmp_str);
    size_t dlen = strlen(dir);
    int slash = dlen > 0 && dir[dlen - 1] == '/';
    for (size_t i = 0; i < n && st == SAC_OK; i++) {
        size_t len = dlen + 1 + strlen(names[i]) + 1;
        char *path = sac_malloc(len);
        if (!path) {
            st = SAC_ERR_NOMEM;
            break;
        }
        snprintf(path, len, "%s%s%s", dir, slash ? "" : "/", names[i]);
        struct stat sb;
        int image;
        if (stat(path, &sb)) {
            sac_warn("%s: %s%s; skipped", path, strerror(errno), errno == ENOENT ? " (a dangling link)" : "");
            w->list->skipped++;
        } else if (S_ISDIR(sb.st_mode)) {
            int added = dirset_add(&w->seen, sb.st_dev, sb.st_ino);
            if (added < 0) st = added;
            else if (added) st = walk_dir(w, path, rel_off);
        } else if (S_ISREG(sb.st_mode) && (image = is_image_file(path, names[i])) != 0) {
            if (image > 0) st = list_add(w->list, path, rel_off, &sb);
            else w->list->skipped++;
        }
        free(path);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st == SAC_ERR_NOMEM) sac_error("out of memory walking %s", dir);
    return st;
}

static int cmp_file(const void *a, const void *b)
{
    const BatchFile *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->rel, y->rel); /* the same file named by two roots: keep one, always the same */
}

int batch_walk(const char *const *roots, int n_roots, BatchFileList *out)
{
    memset(out, 0, sizeof(*out));
    Walk w = {out, {0}};
    int st = SAC_OK;
    for (int r = 0; r < n_roots && st == SAC_OK; r++) {
        const char *root = roots[r];
        struct stat sb;
        if (stat(root, &sb)) {
            int e = errno;
            sac_error("%s: %s", root, strerror(e));
            st = e == ENOENT || e == ENOTDIR ? SAC_ERR_NOTFOUND : SAC_ERR_IO;
        } else if (S_ISDIR(sb.st_mode)) {
            /* below a root, rel starts after "root/" */
            size_t len = strlen(root);
            size_t rel_off = len + (len > 0 && root[len - 1] == '/' ? 0 : 1);
            int added = dirset_add(&w.seen, sb.st_dev, sb.st_ino);
            if (added < 0) st = added;
            else if (added) st = walk_dir(&w, root, rel_off);
        } else if (S_ISREG(sb.st_mode)) {
            const char *base = strrchr(root, '/');
            st = list_add(out, root, base ? (size_t)(base + 1 - root) : 0, &sb);
        } else {
            sac_error("%s: not a directory or a regular file", root);
            st = SAC_ERR_IO;
        }
    }
    free(w.seen.slots);
    if (st) {
        batch_files_free(out);
        return st;
    }
    if (out->n) qsort(out->files, out->n, sizeof(*out->files), cmp_file);
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (k && !strcmp(out->files[k - 1].path, out->files[i].path)) {
            free(out->files[i].path);
            continue;
        }
        out->files[k++] = out->files[i];
    }
    out->n = k;
    return SAC_OK;
}

void batch_files_free(BatchFileList *list)
{
    if (!list) return;
    for (size_t i = 0; i < list->n; i++) free(list->files[i].path);
    free(list->files);
    memset(list, 0, sizeof(*list));
}
