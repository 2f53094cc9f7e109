/*
 * dataset.c - readers for Flickr8k/30k token files, Karpathy's dataset_*.json, COCO
 * captions_*.json and the plain captions.tsv folder, all into one Dataset (dataset.h).
 *
 * Size letters (project legend): none of the tensor sizes appear here.
 *
 * Strings live in a chunked arena owned by the dataset; an index (strindex.h: open addressing,
 * FNV-1a, linear probing) maps image names to item indices, so grouping 40k Flickr caption
 * lines is one hash lookup per line.
 */
#include "dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "image.h"
#include "sac.h"
#include "strindex.h"

enum { REPORT_NAMES = 5 }; /* names listed in a once-per-load report */

/* ------------------------------------------------------------------------------------ */
/* storage: string arena and name index */

typedef struct ArenaBlock {
    struct ArenaBlock *next;
    size_t used, cap;
    char data[];
} ArenaBlock;

struct DatasetPriv {
    ArenaBlock *arena;
    int cap_items;
    StrIndex names; /* item names -> item indices */
};

static char *arena_strndup(DatasetPriv *pv, const char *s, size_t len)
{
    ArenaBlock *b = pv->arena;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        b = sac_malloc(sizeof(ArenaBlock) + cap);
        if (!b) return NULL;
        b->next = pv->arena;
        b->used = 0;
        b->cap = cap;
        pv->arena = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    p[len] = '\0';
    b->used += len + 1;
    return p;
}

/* The name index's key: item k's name (ctx: the dataset). */
static const char *item_name(const void *ctx, int k) { return ((const Dataset *)ctx)->items[k].name; }

static int index_rebuild(Dataset *ds, size_t nslots)
{
    return strindex_rebuild(&ds->priv->names, nslots, ds->n_items, item_name, ds);
}

int dataset_find(const Dataset *ds, const char *name)
{
    if (!name) return -1;
    return strindex_find(&ds->priv->names, name, item_name, ds);
}

/* ------------------------------------------------------------------------------------ */
/* building */

static char *path_join(const char *dir, const char *name)
{
    if (!dir || !*dir || name[0] == '/') return strdup(name);
    size_t ld = strlen(dir), ln = strlen(name);
    int slash = dir[ld - 1] != '/';
    char *p = malloc(ld + slash + ln + 1);
    if (!p) return NULL;
    memcpy(p, dir, ld);
    if (slash) p[ld] = '/';
    memcpy(p + ld + slash, name, ln + 1);
    return p;
}

Dataset *dataset_create(const char *source, const char *image_dir)
{
    Dataset *ds = sac_calloc(1, sizeof(Dataset));
    if (!ds) return NULL;
    ds->priv = sac_calloc(1, sizeof(DatasetPriv));
    if (!ds->priv) goto fail;
    if (!source) source = "memory";
    if (!image_dir) image_dir = "";
    ds->source = arena_strndup(ds->priv, source, strlen(source));
    ds->image_dir = arena_strndup(ds->priv, image_dir, strlen(image_dir));
    if (!ds->source || !ds->image_dir || index_rebuild(ds, 64) < 0) goto fail;
    ds->format = SAC_DATASET_MEMORY;
    return ds;
fail:
    dataset_free(ds);
    return NULL;
}

void dataset_free(Dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->n_items; i++) free(ds->items[i].captions);
    free(ds->items);
    if (ds->priv) {
        ArenaBlock *b = ds->priv->arena;
        while (b) {
            ArenaBlock *next = b->next;
            free(b);
            b = next;
        }
        strindex_free(&ds->priv->names);
        free(ds->priv);
    }
    free(ds);
}

int dataset_add_item(Dataset *ds, const char *name, int64_t image_id)
{
    DatasetPriv *pv = ds->priv;
    if (!name || !*name) {
        sac_error("%s: expected an image name, found an empty one", ds->source);
        return SAC_ERR_INVALID;
    }
    if (dataset_find(ds, name) >= 0) {
        sac_error("%s: image '%s' is already in the dataset", ds->source, name);
        return SAC_ERR_INVALID;
    }
    if ((size_t)(ds->n_items + 1) * 2 > pv->names.nslots && index_rebuild(ds, pv->names.nslots * 2) < 0)
        return SAC_ERR_NOMEM;
    if (ds->n_items == pv->cap_items) {
        int cap = pv->cap_items ? pv->cap_items * 2 : 256;
        DatasetItem *items = realloc(ds->items, (size_t)cap * sizeof(DatasetItem));
        if (!items) {
            sac_error("out of memory growing a dataset to %d images", cap);
            return SAC_ERR_NOMEM;
        }
        ds->items = items;
        pv->cap_items = cap;
    }
    char *joined = path_join(ds->image_dir, name);
    DatasetItem it = {0};
    it.name = arena_strndup(pv, name, strlen(name));
    it.image_path = joined ? arena_strndup(pv, joined, strlen(joined)) : NULL;
    it.image_id = image_id;
    free(joined);
    if (!it.name || !it.image_path) {
        sac_error("out of memory adding image '%s'", name);
        return SAC_ERR_NOMEM;
    }
    int idx = ds->n_items++;
    ds->items[idx] = it;
    strindex_add(&pv->names, it.name, idx, item_name, ds);
    return idx;
}

static int add_caption_n(Dataset *ds, int item, const char *caption, size_t len)
{
    DatasetItem *it = &ds->items[item];
    if (it->n_captions == it->cap_captions) {
        int cap = it->cap_captions ? it->cap_captions * 2 : 5;
        const char **c = realloc(it->captions, (size_t)cap * sizeof(char *));
        if (!c) {
            sac_error("out of memory adding a caption to '%s'", it->name);
            return SAC_ERR_NOMEM;
        }
        it->captions = c;
        it->cap_captions = cap;
    }
    const char *copy = arena_strndup(ds->priv, caption, len);
    if (!copy) return SAC_ERR_NOMEM;
    it->captions[it->n_captions++] = copy;
    return SAC_OK;
}

int dataset_add_caption(Dataset *ds, int item, const char *caption)
{
    if (item < 0 || item >= ds->n_items || !caption) {
        sac_error("%s: expected an item index in 0..%d and a caption, found %d and %s",
                  ds->source, ds->n_items - 1, item, caption ? "a caption" : "NULL");
        return SAC_ERR_INVALID;
    }
    size_t at;
    const char *why = sac_text_problem(caption, strlen(caption), &at);
    if (why) {
        sac_error("%s: image '%s': expected UTF-8 caption text without control characters, "
                  "found %s at byte %zu", ds->source, ds->items[item].name, why, at);
        return SAC_ERR_INVALID;
    }
    return add_caption_n(ds, item, caption, strlen(caption));
}

static int is_ws(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Trim s[0..len) in place (pointer and length). */
static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_ws((*s)[0])) (*s)++, (*len)--;
    while (*len > 0 && is_ws((*s)[*len - 1])) (*len)--;
}

/* Captions skipped because their text is not valid UTF-8 or holds control characters: the
 * first few are reported one by one with file:line (or JSON element), then a summary. */
typedef struct {
    int n;
    char first[192];
} BadText;

enum { CAPTION_EMPTY = 0, CAPTION_ADDED = 1, CAPTION_BAD = 2 };

/* Add a caption trimmed: CAPTION_ADDED, CAPTION_EMPTY, CAPTION_BAD (invalid text, skipped and
 * reported as at `where`, a printf format completed by the arguments), or a negative status. */
#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static int add_caption_trimmed(Dataset *ds, int item, const char *s, size_t len, BadText *bad,
                               const char *where, ...)
{
    trim(&s, &len);
    if (len == 0) return CAPTION_EMPTY;
    size_t at;
    const char *why = sac_text_problem(s, len, &at);
    if (why) {
        char loc[160];
        va_list ap;
        va_start(ap, where);
        vsnprintf(loc, sizeof(loc), where, ap);
        va_end(ap);
        if (bad->n < REPORT_NAMES)
            sac_warn("%s: caption skipped: expected UTF-8 text without control characters, "
                     "found %s at byte %zu", loc, why, at);
        if (bad->n++ == 0) snprintf(bad->first, sizeof(bad->first), "%s", loc);
        return CAPTION_BAD;
    }
    int st = add_caption_n(ds, item, s, len);
    return st < 0 ? st : CAPTION_ADDED;
}

static void report_bad_text(const Dataset *ds, const BadText *bad)
{
    if (bad->n > 0)
        sac_warn("%s: skipped %d caption(s) with invalid UTF-8 or control characters (first at "
                 "%s)", ds->source, bad->n, bad->first);
}

/* Remove the items with drop[i] set, keeping order, and re-index. */
static int drop_items(Dataset *ds, const unsigned char *drop)
{
    int w = 0;
    for (int i = 0; i < ds->n_items; i++) {
        if (drop[i])
            free(ds->items[i].captions);
        else
            ds->items[w++] = ds->items[i];
    }
    ds->n_items = w;
    return index_rebuild(ds, ds->priv->names.nslots);
}

/* Append "name" to a comma-separated report of at most REPORT_NAMES names. */
static void report_add(char *report, size_t cap, int shown, const char *name, const char *reason)
{
    size_t l = strlen(report);
    if (shown >= REPORT_NAMES || l + 8 >= cap) return;
    snprintf(report + l, cap - l, "%s%s%s%s%s", shown ? ", " : "", name, reason ? " (" : "",
             reason ? reason : "", reason ? ")" : "");
}

/* Drop items without captions, reporting once. `why` completes "N image(s) ...". */
static int drop_captionless(Dataset *ds, const char *why)
{
    unsigned char *drop = sac_calloc((size_t)ds->n_items + 1, 1);
    if (!drop) return SAC_ERR_NOMEM;
    char report[512] = "";
    int n = 0;
    for (int i = 0; i < ds->n_items; i++) {
        if (ds->items[i].n_captions > 0) continue;
        report_add(report, sizeof(report), n, ds->items[i].name, NULL);
        drop[i] = 1;
        n++;
    }
    int st = SAC_OK;
    if (n > 0) {
        sac_warn("%s: %d image(s) %s, skipped: %s%s", ds->source, n, why, report,
                 n > REPORT_NAMES ? ", ..." : "");
        st = drop_items(ds, drop);
    }
    free(drop);
    return st;
}

static void report_empty_captions(const Dataset *ds, int n_empty, int first_line)
{
    if (n_empty > 0)
        sac_warn("%s: skipped %d empty caption(s) (first on line %d)", ds->source, n_empty,
                 first_line);
}

/* ------------------------------------------------------------------------------------ */
/* files and lines */

/* Whole file, NUL-terminated, a UTF-8 BOM removed; a regular file only (fileio.h). The
 * caller frees. */
static char *file_read(const char *path, size_t *len_out)
{
    uint8_t *buf;
    size_t len;
    if (sac_read_file(path, 0, &buf, &len)) return NULL;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        memmove(buf, buf + 3, len - 2);
        len -= 3;
    }
    if (len_out) *len_out = len;
    return (char *)buf;
}

typedef struct {
    char *p, *end;
    int line;
} LineReader;

/* Next line, NUL-terminated in place without its "\n" / "\r\n"; NULL at the end. */
static char *line_next(LineReader *r, size_t *len)
{
    if (r->p >= r->end) return NULL;
    char *s = r->p;
    char *nl = memchr(s, '\n', (size_t)(r->end - s));
    char *e = nl ? nl : r->end;
    r->p = nl ? nl + 1 : r->end;
    if (e > s && e[-1] == '\r') e--;
    *e = '\0';
    *len = (size_t)(e - s);
    r->line++;
    return s;
}

/* Next line that is not blank (nor, with comments, a '#' line), as line_next. */
static char *line_next_text(LineReader *r, size_t *len, int comments)
{
    char *line;
    while ((line = line_next(r, len))) {
        const char *s = line;
        size_t ls = *len;
        trim(&s, &ls);
        if (ls > 0 && !(comments && s[0] == '#')) return line;
    }
    return NULL;
}

/* The captions of a file read line by line (token file, captions.tsv): the lines, and the
 * captions skipped as empty (how many, the first's line) or as invalid text. */
typedef struct {
    LineReader r;
    int n_empty, first_empty;
    BadText bad;
} CaptionLines;

/* The caption after the tab of the current line (len bytes) for item idx, trimmed: an empty
 * one counted, an invalid one reported as at ds->source:line. SAC_OK or a negative status. */
static int lines_add_caption(Dataset *ds, CaptionLines *cl, int idx, const char *line, size_t len, const char *tab)
{
    const char *text = tab + 1;
    int st = add_caption_trimmed(ds, idx, text, len - (size_t)(text - line), &cl->bad, "%s:%d", ds->source,
                                 cl->r.line);
    if (st == CAPTION_EMPTY && !cl->n_empty++) cl->first_empty = cl->r.line;
    return st < 0 ? st : SAC_OK;
}

/* After the last line: the skipped captions reported, the images left without one dropped
 * (`why` as drop_captionless says). */
static int lines_finish(Dataset *ds, const CaptionLines *cl, const char *why)
{
    report_empty_captions(ds, cl->n_empty, cl->first_empty);
    report_bad_text(ds, &cl->bad);
    return drop_captionless(ds, why);
}

static int file_exists(const char *path, int want_dir)
{
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

/* Directory part of a path ("." when it has none). The caller frees. */
static char *path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* ------------------------------------------------------------------------------------ */
/* Flickr8k/30k token file */

Dataset *dataset_load_flickr(const char *token_path, const char *split_list,
                             const char *image_dir)
{
    Dataset *ds = dataset_create(token_path, image_dir);
    char *buf = NULL, *lbuf = NULL;
    if (!ds) return NULL;
    ds->format = SAC_DATASET_FLICKR;
    size_t len, n;
    char *line;
    if (split_list) {
        if (!(lbuf = file_read(split_list, &len))) goto fail;
        LineReader lr = {lbuf, lbuf + len, 0};
        int dups = 0, first_dup = 0;
        while ((line = line_next_text(&lr, &n, 0))) {
            const char *s = line;
            trim(&s, &n);
            ((char *)s)[n] = '\0';
            if (dataset_find(ds, s) >= 0) {
                if (!dups++) first_dup = lr.line;
                continue;
            }
            if (dataset_add_item(ds, s, -1) < 0) goto fail;
        }
        if (dups)
            sac_warn("%s: %d image name(s) listed twice were read once (first on line %d)",
                     split_list, dups, first_dup);
        if (ds->n_items == 0) {
            sac_error("%s: expected image names, one per line, found none", split_list);
            goto fail;
        }
    }
    if (!(buf = file_read(token_path, &len))) goto fail;
    CaptionLines cl = {{buf, buf + len, 0}, 0, 0, {0}};
    while ((line = line_next_text(&cl.r, &n, 0))) {
        char *tab = memchr(line, '\t', n);
        char *hash = NULL;
        if (tab) {
            *tab = '\0';
            hash = strrchr(line, '#');
        }
        int ok = hash && hash > line && hash[1] != '\0';
        for (char *d = hash ? hash + 1 : NULL; ok && *d; d++) ok = *d >= '0' && *d <= '9';
        if (!ok) {
            if (tab) *tab = '\t';
            sac_error("%s:%d: expected '<image>#<n><TAB><caption>', found '%.80s'", token_path,
                      cl.r.line, line);
            goto fail;
        }
        *hash = '\0';
        const char *name = line;
        size_t ln = (size_t)(hash - line);
        trim(&name, &ln);
        ((char *)name)[ln] = '\0';
        int idx = dataset_find(ds, name);
        if (idx < 0) {
            if (split_list) continue;
            if ((idx = dataset_add_item(ds, name, -1)) < 0) goto fail;
        }
        if (lines_add_caption(ds, &cl, idx, line, n, tab) < 0) goto fail;
    }
    if (lines_finish(ds, &cl, split_list ? "of the split list have no usable captions in the token file"
                                         : "have no usable captions") < 0)
        goto fail;
    if (ds->n_items == 0) {
        sac_error("%s: expected '<image>#<n><TAB><caption>' lines%s, found none", token_path,
                  split_list ? " for the images of the split list" : "");
        goto fail;
    }
    free(buf);
    free(lbuf);
    return ds;
fail:
    free(buf);
    free(lbuf);
    dataset_free(ds);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* plain captions.tsv */

Dataset *dataset_load_tsv(const char *tsv_path, const char *image_dir)
{
    Dataset *ds = dataset_create(tsv_path, image_dir);
    char *buf = NULL;
    if (!ds) return NULL;
    ds->format = SAC_DATASET_TSV;
    size_t len, n;
    if (!(buf = file_read(tsv_path, &len))) goto fail;
    CaptionLines cl = {{buf, buf + len, 0}, 0, 0, {0}};
    char *line;
    while ((line = line_next_text(&cl.r, &n, 1))) {
        char *tab = memchr(line, '\t', n);
        const char *name = line;
        size_t ln = tab ? (size_t)(tab - line) : 0;
        trim(&name, &ln);
        if (!tab || ln == 0) {
            sac_error("%s:%d: expected '<image path><TAB><caption>', found '%.80s'", tsv_path,
                      cl.r.line, line);
            goto fail;
        }
        ((char *)name)[ln] = '\0';
        int idx = dataset_find(ds, name);
        if (idx < 0 && (idx = dataset_add_item(ds, name, -1)) < 0) goto fail;
        if (lines_add_caption(ds, &cl, idx, line, n, tab) < 0) goto fail;
    }
    if (lines_finish(ds, &cl, "have no usable captions") < 0) goto fail;
    if (ds->n_items == 0) {
        sac_error("%s: expected '<image path><TAB><caption>' lines, found none", tsv_path);
        goto fail;
    }
    free(buf);
    return ds;
fail:
    free(buf);
    dataset_free(ds);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* JSON formats */

static cJSON *json_read(const char *path)
{
    size_t len;
    char *buf = file_read(path, &len);
    if (!buf) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        int line = 1, col = 1;
        if (!end || end < buf || end > buf + len) end = buf;
        for (const char *p = buf; p < end; p++) {
            if (*p == '\n') line++, col = 1;
            else col++;
        }
        sac_error("%s:%d:%d: expected valid JSON, found a syntax error near '%.30s'", path, line,
                  col, end);
    }
    free(buf);
    return root;
}

static const char *json_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Ids are non-negative integers that a double holds exactly: 0..2^53. */
#define JSON_ID_MAX 9007199254740992.0

/* Id member: 1 and *out set, 0 when absent, -1 when present but not an integer in
 * 0..2^53 (*found then describes it, e.g. "1e+300", "-5", "1.5", "a string"). The range is
 * checked before converting (a double beyond int64_t made the conversion undefined). */
static int json_id(const cJSON *obj, const char *key, int64_t *out, char *found, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) {
        snprintf(found, cap, "%s", cJSON_IsString(v)   ? "a string"
                                   : cJSON_IsArray(v)  ? "an array"
                                   : cJSON_IsObject(v) ? "an object"
                                   : cJSON_IsBool(v)   ? "a boolean"
                                                       : "null");
        return -1;
    }
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= JSON_ID_MAX) || d != floor(d)) {
        snprintf(found, cap, "%.17g", d);
        return -1;
    }
    *out = (int64_t)d;
    return 1;
}

enum { SPLIT_TRAIN = 1, SPLIT_VAL = 2, SPLIT_TEST = 4, SPLIT_RESTVAL = 8, SPLIT_ALL = 15 };
static const char *const KARPATHY_SPLITS[] = {"train", "val", "test", "restval"};

static int karpathy_split_bit(const char *name, size_t len)
{
    for (int i = 0; i < 4; i++)
        if (strlen(KARPATHY_SPLITS[i]) == len && strncmp(KARPATHY_SPLITS[i], name, len) == 0)
            return 1 << i;
    return 0;
}

/* Split filter mask from "train+restval"; 0 (logged) when a name is unknown. */
static int karpathy_split_mask(const char *split, const char *path)
{
    if (!split || strcmp(split, "all") == 0) return SPLIT_ALL;
    int mask = 0;
    const char *p = split;
    for (;;) {
        const char *plus = strchr(p, '+');
        size_t l = plus ? (size_t)(plus - p) : strlen(p);
        int bit = karpathy_split_bit(p, l);
        if (!bit) {
            sac_error("%s: unknown split '%s': expected train, val, test, restval, all or a '+' "
                      "combination such as train+restval", path, split);
            return 0;
        }
        mask |= bit;
        if (!plus) break;
        p = plus + 1;
    }
    return mask;
}

static Dataset *karpathy_from_json(const cJSON *root, const char *path, const char *split,
                                   const char *image_dir)
{
    int mask = karpathy_split_mask(split, path);
    if (!mask) return NULL;
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    if (!cJSON_IsArray(images)) {
        sac_error("%s: expected an object with an array 'images', found none", path);
        return NULL;
    }
    Dataset *ds = dataset_create(path, image_dir);
    char *name = NULL;
    if (!ds) return NULL;
    ds->format = SAC_DATASET_KARPATHY;
    int i = -1, n_empty = 0;
    BadText bad = {0};
    const cJSON *img;
    cJSON_ArrayForEach(img, images) {
        i++;
        const char *fname = json_string(img, "filename");
        const char *fpath = json_string(img, "filepath");
        const char *isplit = json_string(img, "split");
        const cJSON *sents = cJSON_GetObjectItemCaseSensitive(img, "sentences");
        if (!fname || !*fname) {
            sac_error("%s: images[%d]: expected a string 'filename', found none", path, i);
            goto fail;
        }
        if (cJSON_GetObjectItemCaseSensitive(img, "filepath") && !fpath) {
            sac_error("%s: images[%d]: expected 'filepath' to be a string", path, i);
            goto fail;
        }
        if (!isplit && mask != SPLIT_ALL) {
            sac_error("%s: images[%d]: expected a string 'split', found none", path, i);
            goto fail;
        }
        if (mask != SPLIT_ALL && !(karpathy_split_bit(isplit, strlen(isplit)) & mask)) continue;
        if (!cJSON_IsArray(sents)) {
            sac_error("%s: images[%d]: expected an array 'sentences', found none", path, i);
            goto fail;
        }
        int64_t id = -1;
        char found[64];
        const char *key = "cocoid";
        int has = json_id(img, key, &id, found, sizeof(found));
        if (has == 0) has = json_id(img, key = "imgid", &id, found, sizeof(found));
        if (has < 0) {
            sac_error("%s: images[%d].%s: expected an integer id in 0..2^53, found %s", path, i,
                      key, found);
            goto fail;
        }
        free(name);
        name = fpath && *fpath ? path_join(fpath, fname) : strdup(fname);
        if (!name) goto fail;
        int prev = dataset_find(ds, name);
        if (prev >= 0) {
            sac_error("%s: images[%d]: image '%s' is listed twice", path, i, name);
            goto fail;
        }
        int idx = dataset_add_item(ds, name, id);
        if (idx < 0) goto fail;
        int j = -1;
        const cJSON *sent;
        cJSON_ArrayForEach(sent, sents) {
            j++;
            const char *raw = json_string(sent, "raw");
            int st;
            if (raw) {
                st = add_caption_trimmed(ds, idx, raw, strlen(raw), &bad,
                                         "%s: images[%d].sentences[%d].raw", path, i, j);
            } else {
                const cJSON *toks = cJSON_GetObjectItemCaseSensitive(sent, "tokens");
                if (!cJSON_IsArray(toks)) {
                    sac_error("%s: images[%d].sentences[%d]: expected a string 'raw' or an array "
                              "'tokens', found neither", path, i, j);
                    goto fail;
                }
                size_t total = 1;
                const cJSON *t;
                cJSON_ArrayForEach(t, toks) {
                    if (!cJSON_IsString(t)) {
                        sac_error("%s: images[%d].sentences[%d].tokens: expected strings", path,
                                  i, j);
                        goto fail;
                    }
                    total += strlen(t->valuestring) + 1;
                }
                char *joined = sac_malloc(total), *p = joined;
                if (!joined) goto fail;
                cJSON_ArrayForEach(t, toks) {
                    size_t l = strlen(t->valuestring);
                    if (p != joined) *p++ = ' ';
                    memcpy(p, t->valuestring, l);
                    p += l;
                }
                *p = '\0';
                st = add_caption_trimmed(ds, idx, joined, strlen(joined), &bad,
                                         "%s: images[%d].sentences[%d].tokens", path, i, j);
                free(joined);
            }
            if (st < 0) goto fail;
            n_empty += st == CAPTION_EMPTY;
        }
    }
    if (n_empty) sac_warn("%s: skipped %d empty caption(s)", path, n_empty);
    report_bad_text(ds, &bad);
    if (drop_captionless(ds, "have no captions") < 0) goto fail;
    if (ds->n_items == 0) {
        sac_error("%s: expected images with captions in split '%s', found none", path,
                  split ? split : "all");
        goto fail;
    }
    free(name);
    return ds;
fail:
    free(name);
    dataset_free(ds);
    return NULL;
}

/* image id -> item index, open addressing (only while loading COCO annotations). */
typedef struct {
    int64_t *keys;
    int *vals; /* -1 = empty */
    size_t mask;
} IdMap;

static size_t id_slot(const IdMap *m, int64_t id)
{
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & m->mask;
    while (m->vals[i] >= 0 && m->keys[i] != id) i = (i + 1) & m->mask;
    return i;
}

static Dataset *coco_from_json(const cJSON *root, const char *path, const char *image_dir)
{
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(images)) {
        sac_error("%s: expected an object with an array 'images', found none", path);
        return NULL;
    }
    if (!cJSON_IsArray(anns)) {
        sac_error("%s: expected an array 'annotations' of captions, found none (an image_info "
                  "file holds no captions)", path);
        return NULL;
    }
    int n_img = cJSON_GetArraySize(images);
    size_t nslots = 64;
    while (nslots < (size_t)n_img * 2) nslots *= 2;
    IdMap map = {sac_malloc(nslots * sizeof(int64_t)), sac_malloc(nslots * sizeof(int)),
                 nslots - 1};
    Dataset *ds = dataset_create(path, image_dir);
    if (!map.keys || !map.vals || !ds) goto fail;
    for (size_t s = 0; s < nslots; s++) map.vals[s] = -1;
    ds->format = SAC_DATASET_COCO;
    int i = -1;
    const cJSON *el;
    cJSON_ArrayForEach(el, images) {
        i++;
        int64_t id;
        char found[64] = "none";
        const char *fname = json_string(el, "file_name");
        if (json_id(el, "id", &id, found, sizeof(found)) != 1) {
            sac_error("%s: images[%d].id: expected an integer id in 0..2^53, found %s", path, i,
                      found);
            goto fail;
        }
        if (!fname || !*fname) {
            sac_error("%s: images[%d]: expected a string 'file_name', found none", path, i);
            goto fail;
        }
        size_t slot = id_slot(&map, id);
        if (map.vals[slot] >= 0) {
            sac_error("%s: images[%d]: id %lld repeats images[%d]", path, i, (long long)id,
                      map.vals[slot]);
            goto fail;
        }
        if (dataset_find(ds, fname) >= 0) {
            sac_error("%s: images[%d]: file_name '%s' is listed twice", path, i, fname);
            goto fail;
        }
        int idx = dataset_add_item(ds, fname, id);
        if (idx < 0) goto fail;
        map.keys[slot] = id;
        map.vals[slot] = idx;
    }
    int unknown = 0, n_empty = 0;
    int64_t first_unknown = 0;
    BadText bad = {0};
    i = -1;
    cJSON_ArrayForEach(el, anns) {
        i++;
        int64_t id;
        char found[64] = "none";
        const char *cap = json_string(el, "caption");
        if (json_id(el, "image_id", &id, found, sizeof(found)) != 1) {
            sac_error("%s: annotations[%d].image_id: expected an integer id in 0..2^53, found %s",
                      path, i, found);
            goto fail;
        }
        if (!cap) {
            sac_error("%s: annotations[%d]: expected a string 'caption', found none", path, i);
            goto fail;
        }
        int idx = map.vals[id_slot(&map, id)];
        if (idx < 0) {
            if (!unknown++) first_unknown = id;
            continue;
        }
        int st = add_caption_trimmed(ds, idx, cap, strlen(cap), &bad,
                                     "%s: annotations[%d].caption", path, i);
        if (st < 0) goto fail;
        n_empty += st == CAPTION_EMPTY;
    }
    if (unknown)
        sac_warn("%s: skipped %d caption(s) whose image_id is not in 'images' (first: %lld)", path,
                 unknown, (long long)first_unknown);
    if (n_empty) sac_warn("%s: skipped %d empty caption(s)", path, n_empty);
    report_bad_text(ds, &bad);
    if (drop_captionless(ds, "have no captions") < 0) goto fail;
    if (ds->n_items == 0) {
        sac_error("%s: expected images with captions, found none", path);
        goto fail;
    }
    free(map.keys);
    free(map.vals);
    return ds;
fail:
    free(map.keys);
    free(map.vals);
    dataset_free(ds);
    return NULL;
}

Dataset *dataset_load_karpathy(const char *json_path, const char *split, const char *image_dir)
{
    if (!karpathy_split_mask(split, json_path)) return NULL;
    cJSON *root = json_read(json_path);
    if (!root) return NULL;
    Dataset *ds = karpathy_from_json(root, json_path, split, image_dir);
    cJSON_Delete(root);
    return ds;
}

Dataset *dataset_load_coco(const char *json_path, const char *image_dir)
{
    cJSON *root = json_read(json_path);
    if (!root) return NULL;
    Dataset *ds = coco_from_json(root, json_path, image_dir);
    cJSON_Delete(root);
    return ds;
}

/* ------------------------------------------------------------------------------------ */
/* format detection */

static int split_is_all(const char *split) { return !split || strcmp(split, "all") == 0; }

/* First existing directory among dir/candidates[i], else dir. The caller frees. */
static char *default_image_dir(const char *dir, const char *const *candidates, int n)
{
    for (int i = 0; i < n; i++) {
        char *p = path_join(dir, candidates[i]);
        if (!p || file_exists(p, 1)) return p;
        free(p);
    }
    return strdup(dir);
}

static Dataset *flickr_open(const char *token_path, const char *dir, const char *split,
                            const char *image_dir)
{
    static const char *const img_dirs[] = {"images", "Flicker8k_Dataset", "Flickr8k_Dataset",
                                           "flickr30k-images"};
    char *list = NULL, *def_dir = NULL;
    Dataset *ds = NULL;
    if (!split_is_all(split)) {
        const char *std = strcmp(split, "train") == 0                              ? "train"
                          : strcmp(split, "dev") == 0 || strcmp(split, "val") == 0 ? "dev"
                          : strcmp(split, "test") == 0                             ? "test"
                                                                                   : NULL;
        if (std) {
            char fname[64];
            snprintf(fname, sizeof(fname), "Flickr_8k.%sImages.txt", std);
            list = path_join(dir, fname);
            if (list && !file_exists(list, 0)) {
                sac_error("%s: split '%s' expects the image list %s, which does not exist",
                          token_path, split, list);
                goto done;
            }
        } else if (file_exists(split, 0)) {
            list = strdup(split);
        } else {
            list = path_join(dir, split);
            if (list && !file_exists(list, 0)) {
                sac_error("%s: unknown split '%s': expected all, train, dev (or val), test, or "
                          "the path of an image list file", token_path, split);
                goto done;
            }
        }
        if (!list) goto done;
    }
    if (!image_dir) {
        def_dir = default_image_dir(dir, img_dirs, 4);
        if (!def_dir) goto done;
    }
    ds = dataset_load_flickr(token_path, list, image_dir ? image_dir : def_dir);
done:
    free(list);
    free(def_dir);
    return ds;
}

Dataset *dataset_open(const char *path, const char *split, const char *image_dir)
{
    static const char *const token_names[] = {"Flickr8k.token.txt", "results_20130124.token"};
    static const char *const json_img_dirs[] = {"images"};
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        sac_error("%s: cannot open dataset: %s", path ? path : "(null)",
                  path ? strerror(errno) : "no path given");
        return NULL;
    }
    Dataset *ds = NULL;
    char *dir = NULL, *file = NULL, *def_dir = NULL;
    cJSON *root = NULL;
    if (S_ISDIR(st.st_mode)) {
        if (!(dir = strdup(path)) || !(file = path_join(dir, "captions.tsv"))) goto done;
        if (file_exists(file, 0)) {
            if (!split_is_all(split)) {
                sac_error("%s: unknown split '%s': a captions.tsv folder has no splits (use all)",
                          file, split);
                goto done;
            }
            ds = dataset_load_tsv(file, image_dir ? image_dir : dir);
            goto done;
        }
        for (int i = 0; i < 2; i++) {
            free(file);
            if (!(file = path_join(dir, token_names[i]))) goto done;
            if (file_exists(file, 0)) {
                ds = flickr_open(file, dir, split, image_dir);
                goto done;
            }
        }
        sac_error("%s: expected a dataset folder holding captions.tsv, Flickr8k.token.txt or "
                  "results_20130124.token, found none of them", path);
        goto done;
    }
    if (!(dir = path_dir(path))) goto done;
    if (ends_with(path, ".tsv")) {
        if (!split_is_all(split)) {
            sac_error("%s: unknown split '%s': a captions TSV has no splits (use all)", path,
                      split);
            goto done;
        }
        ds = dataset_load_tsv(path, image_dir ? image_dir : dir);
    } else if (ends_with(path, ".json")) {
        if (!(root = json_read(path))) goto done;
        if (!image_dir && !(def_dir = default_image_dir(dir, json_img_dirs, 1))) goto done;
        const char *idir = image_dir ? image_dir : def_dir;
        if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "annotations"))) {
            const char *base = strrchr(path, '/');
            base = base ? base + 1 : path;
            if (!split_is_all(split) && !strstr(base, split)) {
                sac_error("%s: unknown split '%s': a COCO captions file holds one split; pass "
                          "the file of split '%s' (or split all)", path, split, split);
                goto done;
            }
            ds = coco_from_json(root, path, idir);
        } else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "images"))) {
            ds = karpathy_from_json(root, path, split, idir);
        } else {
            sac_error("%s: expected a COCO captions file ('images' and 'annotations') or a "
                      "Karpathy split file ('images' with 'sentences'), found neither", path);
        }
    } else {
        ds = flickr_open(path, dir, split, image_dir);
    }
done:
    cJSON_Delete(root);
    free(dir);
    free(file);
    free(def_dir);
    return ds;
}

/* ------------------------------------------------------------------------------------ */
/* queries and checks */

int dataset_n_captions(const Dataset *ds)
{
    int n = 0;
    for (int i = 0; i < ds->n_items; i++) n += ds->items[i].n_captions;
    return n;
}

int dataset_count_words(const Dataset *ds, WordCounts *wc)
{
    for (int i = 0; i < ds->n_items; i++) {
        for (int c = 0; c < ds->items[i].n_captions; c++) {
            int st = word_counts_add_caption(wc, ds->items[i].captions[c]);
            if (st < 0) return st;
        }
    }
    return SAC_OK;
}

const char *dataset_format_name(DatasetFormat f)
{
    switch (f) {
    case SAC_DATASET_FLICKR: return "flickr";
    case SAC_DATASET_KARPATHY: return "karpathy";
    case SAC_DATASET_COCO: return "coco";
    case SAC_DATASET_TSV: return "tsv";
    default: return "memory";
    }
}

/* Why an image cannot be used, or NULL when it looks fine: sac_image_probe, which checks a
 * JPEG's Huffman tables before stbi_info builds them and never opens a FIFO. */
static const char *image_problem(const char *path)
{
    int w, h;
    return sac_image_probe(path, &w, &h);
}

int dataset_check_images(Dataset *ds)
{
    unsigned char *drop = sac_calloc((size_t)ds->n_items + 1, 1);
    if (!drop) return SAC_ERR_NOMEM;
    char report[768] = "";
    int n_drop = 0, n_caps = 0, n_before = ds->n_items;
    for (int i = 0; i < ds->n_items; i++) {
        const char *why = image_problem(ds->items[i].image_path);
        if (!why) continue;
        report_add(report, sizeof(report), n_drop, ds->items[i].name, why);
        drop[i] = 1;
        n_drop++;
        n_caps += ds->items[i].n_captions;
    }
    if (n_drop > 0) {
        sac_warn("%s: dropped %d of %d images (%d captions) whose file is missing or unreadable "
                 "under '%s': %s%s", ds->source, n_drop, n_before, n_caps, ds->image_dir, report,
                 n_drop > REPORT_NAMES ? ", ..." : "");
        if (drop_items(ds, drop) < 0) n_drop = SAC_ERR_NOMEM;
    }
    free(drop);
    return n_drop;
}
