/*
 * batch_output.c - the result files of `saccade batch`: JSON Lines, TSV, COCO results JSON and
 * an HTML gallery; one record per line, each flushed as it is written, and --resume reading
 * them back. Every byte goes through common/output.c (checked writes, devices written directly,
 * links followed, the final COCO file replaced atomically). See batch.h.
 *
 * Line formats (one record per line, so a kill tears at most the last line, which resume cuts):
 *   jsonl  {"image":PATH,"caption":TEXT,"logprob":X}  or  {"image":PATH,"error":TEXT}, written by
 *          cJSON; bytes of PATH (and TEXT) that are not valid UTF-8 are written as the text \xHH
 *          (sac_utf8_escape), so every line is valid JSON
 *   tsv    PATH<TAB>CAPTION  or  PATH<TAB><TAB>error=TEXT; in PATH '\', TAB, LF, CR are written
 *          as \\ \t \n \r (other bytes as they are); in TEXT tabs and line breaks become spaces
 *   coco   PATH.partial holds jsonl lines while running; at the end PATH gets
 *          [{"image_id": ID, "caption": TEXT}, ...] sorted by path (COCO results, what
 *          coco-caption reads) and PATH.partial is removed. ID is the number of a COCO-named file
 *          (COCO_val2014_000000391895.jpg, 000000391895.jpg -> 391895), else the file name, else
 *          (two files of one name) the path. Failed images are left out of PATH. When PATH is
 *          not a regular file (a device, a FIFO) or stdout, the records are kept in memory.
 *   html   a header, then per record one line `<!--{jsonl record}--><figure>...</figure>` (the
 *          comment is what resume reads; '>' inside it is written \u003e), then a footer line.
 *
 * Size letters: none.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "batch.h"
#include "fileio.h"
#include "cli.h"
#include "output.h"
#include "sac.h"

/* ---- a growable string ---- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void buf_printf(Buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* TSV text: tabs and line breaks would split the record, so they become spaces. */
static void buf_tsv_text(Buf *b, const char *s)
{
    for (const char *p = s; *p; p++) buf_put(b, strchr("\t\r\n", *p) ? " " : p, 1);
}

static void buf_tsv_path(Buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\': buf_puts(b, "\\\\"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        default: buf_put(b, p, 1);
        }
    }
}

/* The inverse of buf_tsv_path, in place. */
static void tsv_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *o++ = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

/* The record as one line of JSON (cJSON; names made valid UTF-8). in_comment: '>' written as
 * \u003e, so that the text cannot end the HTML comment that holds it. */
static void buf_json_record(Buf *b, const BatchRecord *r, int in_comment)
{
    cJSON *o = cJSON_CreateObject();
    char *image = sac_utf8_escape(r->image);
    char *text = sac_utf8_escape(r->error ? r->error : r->caption);
    char *line = NULL;
    if (o && image && text && cJSON_AddStringToObject(o, "image", image) &&
        cJSON_AddStringToObject(o, r->error ? "error" : "caption", text) &&
        (r->error || cJSON_AddNumberToObject(o, "logprob", round(r->logprob * 1e4) / 1e4)))
        line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(image), free(text);
    if (!line) {
        b->oom = 1;
        return;
    }
    for (const char *p = line; *p; p++) {
        if (in_comment && *p == '>') buf_puts(b, "\\u003e"); /* only inside strings: JSON has no '>' */
        else buf_put(b, p, 1);
    }
    free(line);
}

/* s for HTML text, its bytes made valid UTF-8 first. */
static void buf_html(Buf *b, const char *s)
{
    char *h = cli_html_escape(s);
    if (h) buf_puts(b, h);
    else b->oom = 1;
    free(h);
}

static void format_record(Buf *b, BatchFormat fmt, const BatchRecord *r)
{
    switch (fmt) {
    case BATCH_JSONL:
    case BATCH_COCO: buf_json_record(b, r, 0); break;
    case BATCH_TSV:
        buf_tsv_path(b, r->image);
        buf_puts(b, r->error ? "\t\terror=" : "\t");
        buf_tsv_text(b, r->error ? r->error : r->caption);
        break;
    case BATCH_HTML:
        buf_puts(b, "<!--");
        buf_json_record(b, r, 1);
        buf_printf(b, "--><figure%s style=\"order:%ld\">", r->error ? " class=\"err\"" : "", r->order);
        if (r->thumb_b64) {
            buf_puts(b, "<img class=\"t\" alt=\"\" src=\"data:image/png;base64,");
            buf_puts(b, r->thumb_b64);
            buf_puts(b, "\">");
        }
        buf_puts(b, "<figcaption>");
        if (r->error) {
            buf_puts(b, "<b>failed:</b> ");
            buf_html(b, r->error);
        } else {
            buf_puts(b, "<b>");
            buf_html(b, r->caption);
            buf_printf(b, "</b> <small>(log p %.2f)</small>", r->logprob);
        }
        buf_puts(b, "<br><small>");
        buf_html(b, r->image);
        buf_puts(b, "</small></figcaption>");
        if (r->attention_b64) {
            buf_puts(b, "<img class=\"a\" alt=\"attention\" src=\"data:image/png;base64,");
            buf_puts(b, r->attention_b64);
            buf_puts(b, "\">");
        }
        buf_puts(b, "</figure>");
        break;
    }
    buf_puts(b, "\n");
}

static const char html_header[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>saccade batch</title>\n"
    "<style>body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:16px;background:#fafafa;color:#111}"
    ".g{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
    "figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;max-width:100%}"
    "figure img.t{display:block;max-width:160px;max-height:160px}"
    "figure img.a{display:block;max-width:100%;margin-top:6px}"
    "figcaption{max-width:360px;font-size:17px;line-height:1.35;margin-top:6px;overflow-wrap:anywhere}"
    "figcaption small{font-size:13px;color:#555}"
    "figure.err{background:#fee}</style></head>\n"
    "<body><h1>saccade batch</h1>\n<div class=\"g\">\n";
static const char html_footer[] = "</div></body></html>\n";

/* ---- formats by name ---- */

int batch_format_parse(const char *name)
{
    static const char *const names[] = {"jsonl", "tsv", "coco", "html"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

int batch_format_from_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return -1;
    if (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".ndjson")) return BATCH_JSONL;
    if (!strcasecmp(dot, ".tsv")) return BATCH_TSV;
    if (!strcasecmp(dot, ".json")) return BATCH_COCO;
    if (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm")) return BATCH_HTML;
    return -1;
}

/* ---- the writer ---- */

typedef struct {
    char *image, *caption;
} CocoItem;

struct BatchOutput {
    BatchFormat fmt;
    char *path;      /* the final file; NULL for stdout */
    char *file_path; /* the file the records stream to while running: path, path.partial (coco),
                      * NULL (stdout, or coco kept in memory) */
    int regular;     /* path is a regular file, or will be one */
    int resume, resumed_file; /* --resume; file_path existed and was read */
    long keep;       /* resume: bytes of file_path to keep */
    SacOutput *out;  /* the record stream (NULL: none) */
    pthread_mutex_t lock;
    char **done;     /* (n_done) images read by --resume (JSON formats: as written), sorted */
    size_t n_done, done_errors;
    CocoItem *coco;  /* (n_coco) successes (image as written), for the final COCO file */
    size_t n_coco, cap_coco;
};

/* 1 for the formats whose records are JSON (their image names are sac_utf8_escape'd). */
static int json_format(BatchFormat fmt) { return fmt != BATCH_TSV; }

static int coco_add(BatchOutput *o, const char *image, const char *caption)
{
    if (o->n_coco == o->cap_coco) {
        size_t cap = o->cap_coco ? 2 * o->cap_coco : 256;
        CocoItem *p = realloc(o->coco, cap * sizeof(*p));
        if (!p) return SAC_ERR_NOMEM;
        o->coco = p, o->cap_coco = cap;
    }
    CocoItem it = {strdup(image), strdup(caption)};
    if (!it.image || !it.caption) {
        free(it.image), free(it.caption);
        return SAC_ERR_NOMEM;
    }
    o->coco[o->n_coco++] = it;
    return SAC_OK;
}

/* A JSON record (jsonl line or html comment): image and caption (NULL for an error record).
 * 1 when it is one, 0 when not. The strings are copies the caller frees. */
static int parse_json_record(const char *text, char **image, char **caption)
{
    cJSON *j = cJSON_Parse(text);
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "image");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(j, "caption");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    int ok = cJSON_IsObject(j) && cJSON_IsString(im) && (cJSON_IsString(cap) || cJSON_IsString(err));
    if (ok) {
        *image = strdup(im->valuestring);
        *caption = cJSON_IsString(cap) ? strdup(cap->valuestring) : NULL;
        if (!*image || (cJSON_IsString(cap) && !*caption)) ok = -1;
    }
    cJSON_Delete(j);
    return ok;
}

/* One complete line (newline stripped) of an existing file: 1 record (image, caption set),
 * 0 markup to keep (html), 2 the html footer, -1 not a record. */
static int parse_line(BatchFormat fmt, char *line, char **image, char **caption)
{
    *image = *caption = NULL;
    switch (fmt) {
    case BATCH_JSONL:
    case BATCH_COCO: return parse_json_record(line, image, caption) == 1 ? 1 : -1;
    case BATCH_TSV: {
        char *tab = strchr(line, '\t');
        if (!tab || tab == line) return -1;
        *tab = 0;
        tsv_unescape(line);
        *image = strdup(line);
        if (tab[1] != '\t') *caption = strdup(tab + 1);
        else if (strncmp(tab + 2, "error=", 6)) return free(*image), *image = NULL, -1;
        return *image ? 1 : -1;
    }
    case BATCH_HTML: {
        if (!strcmp(line, "</div></body></html>")) return 2;
        if (strncmp(line, "<!--{", 5)) return 0;
        char *end = strstr(line, "}-->");
        if (!end) return -1;
        end[1] = 0;
        return parse_json_record(line + 4, image, caption) == 1 ? 1 : -1;
    }
    }
    return -1;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Read an existing file for --resume: collect its records and find where to append (after the
 * last complete record line; before an HTML footer). *keep = bytes to keep. */
static int resume_read(BatchOutput *o, FILE *f, const char *path, long *keep)
{
    char *line = NULL;
    size_t cap = 0, cap_done = 0;
    long off = 0, lineno = 0;
    ssize_t len;
    int st = SAC_OK;
    *keep = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') {
            sac_warn("%s: line %ld is incomplete (the previous run was killed while writing it); it "
                     "is dropped and its image captioned again", path, lineno);
            break;
        }
        line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        char *image, *caption;
        int kind = len == 0 && o->fmt != BATCH_HTML ? 0 : parse_line(o->fmt, line, &image, &caption);
        if (kind == 2) break; /* html footer: rewritten at the end */
        if (kind == 0 && o->fmt == BATCH_HTML) {
            /* markup is only our own header; anything else is someone else's page */
            long end = ftell(f);
            if (end > (long)sizeof(html_header) - 1 || memcmp(html_header + off, line, (size_t)len)) {
                sac_error("%s: line %ld is not part of a saccade batch gallery; not resuming onto it "
                          "(check -o and --format)", path, lineno);
                st = SAC_ERR_FORMAT;
                break;
            }
        }
        if (kind < 0) {
            sac_error("%s: line %ld is not a %s record of saccade batch; not resuming onto it "
                      "(check -o and --format)", path, lineno, o->fmt == BATCH_TSV ? "TSV" : "JSON");
            st = SAC_ERR_FORMAT;
            break;
        }
        off = ftell(f);
        if (kind == 0) continue;
        if (o->n_done == cap_done) {
            cap_done = cap_done ? 2 * cap_done : 1024;
            char **d = realloc(o->done, cap_done * sizeof(*d));
            if (!d) {
                st = SAC_ERR_NOMEM;
                free(image), free(caption);
                break;
            }
            o->done = d;
        }
        o->done[o->n_done++] = image;
        o->done_errors += caption == NULL;
        if (o->fmt == BATCH_COCO && caption && coco_add(o, image, caption)) st = SAC_ERR_NOMEM;
        free(caption);
        if (st) break;
    }
    free(line);
    if (st == SAC_OK && ferror(f)) {
        sac_error("%s: read error (%s)", path, strerror(errno));
        st = SAC_ERR_IO;
    }
    if (st == SAC_ERR_NOMEM) sac_error("%s: out of memory reading %zu records", path, o->n_done);
    if (o->n_done) qsort(o->done, o->n_done, sizeof(*o->done), cmp_strp);
    *keep = off;
    return st;
}

static void output_free(BatchOutput *o)
{
    if (!o) return;
    sac_output_discard(o->out);
    for (size_t i = 0; i < o->n_done; i++) free(o->done[i]);
    for (size_t i = 0; i < o->n_coco; i++) free(o->coco[i].image), free(o->coco[i].caption);
    free(o->done), free(o->coco);
    free(o->path), free(o->file_path);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

BatchOutput *batch_output_open(const char *path, BatchFormat fmt, int resume)
{
    BatchOutput *o = sac_calloc(1, sizeof(*o));
    if (!o) return NULL;
    pthread_mutex_init(&o->lock, NULL);
    o->fmt = fmt;
    o->resume = resume;
    if (!path) return o; /* stdout */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        sac_error("%s: is a directory, expected a file for the results", path);
        goto fail;
    }
    o->regular = stat(path, &sb) != 0 || S_ISREG(sb.st_mode);
    if (!(o->path = strdup(path))) goto nomem;
    if (!o->regular && resume) {
        sac_error("%s: not a regular file, so there is nothing to resume", path);
        goto fail;
    }
    if (o->regular || fmt != BATCH_COCO) { /* coco onto a device: kept in memory, written at the end */
        size_t len = strlen(path) + sizeof(".partial");
        if (!(o->file_path = malloc(len))) goto nomem;
        snprintf(o->file_path, len, "%s%s", path, fmt == BATCH_COCO ? ".partial" : "");
    }
    if (resume) {
        const char *fp = o->file_path;
        struct stat fsb;
        FILE *f = NULL;
        if (lstat(fp, &fsb) == 0 || errno != ENOENT) { /* there is something: a regular file, or refused */
            const int fd = sac_open_regular(fp);     /* O_NONBLOCK: a FIFO is refused, never waited on */
            if (fd < 0 || !(f = fdopen(fd, "r"))) {
                if (fd >= 0) close(fd);
                sac_error("%s: cannot read it to resume", fp);
                goto fail;
            }
        }
        if (f) {
            int st = resume_read(o, f, fp, &o->keep);
            fclose(f);
            if (st) goto fail;
            o->resumed_file = 1;
        } else if (fmt == BATCH_COCO && access(path, F_OK) == 0) {
            sac_warn("%s: no %s to resume from: captioning everything again", path, fp);
        }
    }
    return o;
nomem:
    sac_error("%s: out of memory", path);
fail:
    output_free(o);
    return NULL;
}

int batch_output_start(BatchOutput *o)
{
    const char *fp = o->file_path;
    if (!o->path) {
        if (o->fmt != BATCH_COCO && !(o->out = sac_output_open("-", 0))) return SAC_ERR_IO;
    } else if (fp && o->regular) {
        struct stat sb;
        if (o->resumed_file && truncate(fp, o->keep)) {
            sac_error("%s: cannot cut it to %ld bytes to resume (%s)", fp, o->keep, strerror(errno));
            return SAC_ERR_IO;
        }
        if (!o->resume && stat(fp, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0)
            sac_info("%s exists: replacing it (--resume would continue it instead)", fp);
        /* in place, not via a temporary file: each record is flushed as it is written, and a
         * killed run leaves them there for --resume */
        if (!(o->out = sac_output_open(fp, o->resume ? SAC_OUTPUT_APPEND : SAC_OUTPUT_INPLACE))) return SAC_ERR_IO;
    } else if (fp) {
        if (!(o->out = sac_output_open(fp, 0))) return SAC_ERR_IO; /* a device or FIFO: written directly */
    }
    if (o->out && o->fmt == BATCH_HTML && o->keep == 0) {
        fputs(html_header, sac_output_stream(o->out));
        return sac_output_flush(o->out);
    }
    return SAC_OK;
}

int batch_output_has(const BatchOutput *o, const char *image)
{
    if (!o->n_done) return 0;
    char *key = json_format(o->fmt) ? sac_utf8_escape(image) : NULL;
    const char *k = key ? key : image;
    int found = bsearch(&k, o->done, o->n_done, sizeof(*o->done), cmp_strp) != NULL;
    free(key);
    return found;
}

size_t batch_output_resumed(const BatchOutput *o, size_t *errors)
{
    if (errors) *errors = o->done_errors;
    return o->n_done;
}

int batch_output_write(BatchOutput *o, const BatchRecord *r)
{
    Buf b = {0};
    format_record(&b, o->fmt, r);
    char *image = o->fmt == BATCH_COCO && !r->error ? sac_utf8_escape(r->image) : NULL;
    if (b.oom || (o->fmt == BATCH_COCO && !r->error && !image)) {
        free(b.s), free(image);
        sac_error("out of memory formatting the record of %s", r->image);
        return SAC_ERR_NOMEM;
    }
    int st = SAC_OK;
    pthread_mutex_lock(&o->lock);
    if (o->out) {
        fwrite(b.s, 1, b.n, sac_output_stream(o->out));
        st = sac_output_flush(o->out); /* a failure is logged, naming the file */
    }
    if (!st && image && coco_add(o, image, r->caption)) {
        sac_error("out of memory keeping the caption of %s", r->image);
        st = SAC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&o->lock);
    free(b.s), free(image);
    return st;
}

/* ---- the final COCO file ---- */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The COCO number of COCO_<split>_<digits>.<ext> or <digits>.<ext>, else -1. */
static long long coco_number(const char *name)
{
    const char *p = name;
    if (!strncmp(p, "COCO_", 5)) {
        const char *u = strchr(p + 5, '_');
        if (!u) return -1;
        p = u + 1;
    }
    const char *dot = strrchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n == 0 || n > 15) return -1; /* exact as a JSON number (below 2^53) */
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i])) return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int cmp_coco(const void *a, const void *b)
{
    return strcmp(((const CocoItem *)a)->image, ((const CocoItem *)b)->image);
}

static const CocoItem *sort_items;
static int cmp_by_base(const void *a, const void *b)
{
    int c = strcmp(base_name(sort_items[*(const size_t *)a].image), base_name(sort_items[*(const size_t *)b].image));
    return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

static int coco_write(BatchOutput *o, FILE *f)
{
    size_t n = o->n_coco;
    if (n) qsort(o->coco, n, sizeof(*o->coco), cmp_coco);
    /* file names used by two images: those get their path as id */
    unsigned char *dup = sac_calloc(n ? n : 1, 1);
    size_t *idx = sac_calloc(n ? n : 1, sizeof(*idx));
    if (!dup || !idx) {
        free(dup), free(idx);
        return SAC_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    sort_items = o->coco; /* single-threaded here: the writers have finished */
    if (n) qsort(idx, n, sizeof(*idx), cmp_by_base);
    size_t n_dup = 0;
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(base_name(o->coco[idx[i - 1]].image), base_name(o->coco[idx[i]].image))) {
            n_dup += !dup[idx[i - 1]] + !dup[idx[i]];
            dup[idx[i - 1]] = dup[idx[i]] = 1;
        }
    }
    if (n_dup) sac_warn("%zu images share a file name with another; their image_id is their path", n_dup);
    int st = SAC_OK;
    fputs(n ? "[" : "[]\n", f);
    for (size_t i = 0; i < n && st == SAC_OK; i++) {
        const char *name = base_name(o->coco[i].image);
        long long num = dup[i] ? -1 : coco_number(name);
        cJSON *it = cJSON_CreateObject();
        char *line = NULL;
        if (it && (num >= 0 ? cJSON_AddNumberToObject(it, "image_id", (double)num)
                            : cJSON_AddStringToObject(it, "image_id", dup[i] ? o->coco[i].image : name)) &&
            cJSON_AddStringToObject(it, "caption", o->coco[i].caption))
            line = cJSON_PrintUnformatted(it);
        cJSON_Delete(it);
        if (!line) st = SAC_ERR_NOMEM;
        else fprintf(f, "%s%s%s", i ? ",\n " : "\n ", line, i + 1 == n ? "\n]\n" : "");
        free(line);
    }
    free(dup), free(idx);
    return st;
}

/* The final COCO file (or stdout); SAC_OK or a logged status. */
static int coco_finish(BatchOutput *o)
{
    SacOutput *fin = sac_output_open(o->path ? o->path : "-", 0); /* a regular file: atomically */
    if (!fin) return SAC_ERR_IO;
    int st = coco_write(o, sac_output_stream(fin));
    if (st) {
        sac_error("%s: out of memory writing the COCO results", o->path ? o->path : "stdout");
        sac_output_discard(fin);
    } else {
        st = sac_output_close(fin); /* a write error is logged, naming the file */
    }
    if (st && o->file_path && o->regular) sac_error("%s: the records are kept in %s", o->path, o->file_path);
    else if (!st && o->file_path && o->regular) unlink(o->file_path);
    return st;
}

int batch_output_close(BatchOutput *o, int complete)
{
    if (!o) return SAC_OK;
    int st = SAC_OK;
    if (o->out) {
        if (complete && o->fmt == BATCH_HTML) fputs(html_footer, sac_output_stream(o->out));
        st = sac_output_close(o->out); /* flushed and fsynced; a write error is logged, naming the file */
        o->out = NULL;
    }
    if (st == SAC_OK && complete && o->fmt == BATCH_COCO) st = coco_finish(o);
    output_free(o);
    return st;
}
