/*
 * batch_output.c - the result files of `saccade batch`: JSON Lines, TSV, COCO results JSON and
 * an HTML gallery; one record per line, each flushed as it is written, and --resume reading
 * them back. See batch.h.
 *
 * Line formats (one record per line, so a kill tears at most the last line, which resume cuts):
 *   jsonl  {"image": PATH, "caption": TEXT, "logprob": X}  or  {"image": PATH, "error": TEXT}
 *   tsv    PATH<TAB>CAPTION  or  PATH<TAB><TAB>error=TEXT; in PATH '\', TAB, LF, CR are written
 *          as \\ \t \n \r; in TEXT tabs and line breaks become spaces
 *   coco   PATH.partial holds jsonl lines while running; at the end PATH gets
 *          [{"image_id": ID, "caption": TEXT}, ...] sorted by path (COCO results, what
 *          coco-caption reads) and PATH.partial is removed. ID is the number of a COCO-named file
 *          (COCO_val2014_000000391895.jpg, 000000391895.jpg -> 391895), else the file name, else
 *          (two files of one name) the path. Failed images are left out of PATH.
 *   html   a header, then per record one line `<!--{jsonl record}--><figure>...</figure>` (the
 *          comment is what resume reads; '>' inside it is written \u003e), then a footer line.
 *
 * Size letters: none.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <stb_image_write.h>

#include "batch.h"
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

/* A JSON string literal. in_comment: also escape '>' so "-->" cannot end an HTML comment. */
static void buf_json(Buf *b, const char *s, int in_comment)
{
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f || (in_comment && *p == '>')) buf_printf(b, "\\u%04x", *p);
            else buf_put(b, (const char *)p, 1);
        }
    }
    buf_put(b, "\"", 1);
}

static void buf_html(Buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': buf_puts(b, "&amp;"); break;
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        default: buf_put(b, p, 1);
        }
    }
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

static void buf_json_record(Buf *b, const BatchRecord *r, int in_comment)
{
    buf_puts(b, "{\"image\": ");
    buf_json(b, r->image, in_comment);
    if (r->error) {
        buf_puts(b, ", \"error\": ");
        buf_json(b, r->error, in_comment);
    } else {
        buf_puts(b, ", \"caption\": ");
        buf_json(b, r->caption, in_comment);
        buf_printf(b, ", \"logprob\": %.4f", r->logprob);
    }
    buf_puts(b, "}");
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
    "<style>body{font-family:sans-serif;margin:16px;background:#fafafa}"
    ".g{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
    "figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;max-width:100%}"
    "figure img.t{display:block;max-width:160px;max-height:160px}"
    "figure img.a{display:block;max-width:100%;margin-top:6px}"
    "figcaption{max-width:320px;font-size:14px;margin-top:4px;overflow-wrap:anywhere}"
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
    char *file_path; /* the file written while running (path, or path.partial for coco) */
    FILE *f;
    pthread_mutex_t lock;
    char **done;     /* (n_done) images read by --resume, sorted */
    size_t n_done, done_errors;
    CocoItem *coco;  /* (n_coco) successes, for the final COCO file */
    size_t n_coco, cap_coco;
};

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
    if (!path) {
        o->f = fmt == BATCH_COCO ? NULL : stdout; /* coco: kept in memory, printed at the end */
        if (fmt == BATCH_HTML) fputs(html_header, o->f), fflush(o->f);
        return o;
    }
    o->path = strdup(path);
    size_t len = strlen(path) + sizeof(".partial");
    o->file_path = malloc(len);
    if (!o->path || !o->file_path) goto fail;
    snprintf(o->file_path, len, "%s%s", path, fmt == BATCH_COCO ? ".partial" : "");
    const char *fp = o->file_path;
    long keep = 0;
    if (resume) {
        FILE *f = fopen(fp, "r");
        if (!f && errno != ENOENT) {
            sac_error("%s: cannot read it to resume (%s)", fp, strerror(errno));
            goto fail;
        }
        if (f) {
            int st = resume_read(o, f, fp, &keep);
            fclose(f);
            if (st) goto fail;
            if (truncate(fp, keep)) {
                sac_error("%s: cannot cut it to %ld bytes to resume (%s)", fp, keep, strerror(errno));
                goto fail;
            }
        } else if (fmt == BATCH_COCO && access(path, F_OK) == 0) {
            sac_warn("%s: no %s to resume from: captioning everything again", path, fp);
        }
    }
    struct stat sb;
    if (!resume && stat(fp, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0)
        sac_info("%s exists: replacing it (--resume would continue it instead)", fp);
    o->f = fopen(fp, resume ? "a" : "w");
    if (!o->f) {
        sac_error("%s: cannot open for writing (%s)", fp, strerror(errno));
        goto fail;
    }
    if (fmt == BATCH_HTML && keep == 0) fputs(html_header, o->f);
    if (fflush(o->f)) {
        sac_error("%s: write error (%s)", fp, strerror(errno));
        fclose(o->f);
        goto fail;
    }
    return o;
fail:
    output_free(o);
    return NULL;
}

int batch_output_has(const BatchOutput *o, const char *image)
{
    return o->n_done && bsearch(&image, o->done, o->n_done, sizeof(*o->done), cmp_strp) != NULL;
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
    if (b.oom) {
        free(b.s);
        sac_error("out of memory formatting the record of %s", r->image);
        return SAC_ERR_NOMEM;
    }
    int st = SAC_OK;
    pthread_mutex_lock(&o->lock);
    if (o->f && (fwrite(b.s, 1, b.n, o->f) != b.n || fflush(o->f))) {
        sac_error("%s: write error (%s)", o->file_path ? o->file_path : "stdout", strerror(errno));
        st = SAC_ERR_IO;
    } else if (o->fmt == BATCH_COCO && !r->error && coco_add(o, r->image, r->caption)) {
        sac_error("out of memory keeping the caption of %s", r->image);
        st = SAC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&o->lock);
    free(b.s);
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
    if (n == 0 || n > 18) return -1;
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
    Buf b = {0};
    buf_puts(&b, "[");
    int st = SAC_OK;
    for (size_t i = 0; i < n && st == SAC_OK; i++) {
        const char *name = base_name(o->coco[i].image);
        long long num = dup[i] ? -1 : coco_number(name);
        buf_puts(&b, i ? ",\n " : "\n ");
        buf_puts(&b, "{\"image_id\": ");
        if (num >= 0) buf_printf(&b, "%lld", num);
        else buf_json(&b, dup[i] ? o->coco[i].image : name, 0);
        buf_puts(&b, ", \"caption\": ");
        buf_json(&b, o->coco[i].caption, 0);
        buf_puts(&b, "}");
        if (b.oom) st = SAC_ERR_NOMEM;
        else if (b.n > (1 << 16)) {
            if (fwrite(b.s, 1, b.n, f) != b.n) st = SAC_ERR_IO;
            b.n = 0;
        }
    }
    buf_puts(&b, n ? "\n]\n" : "]\n");
    if (st == SAC_OK && b.oom) st = SAC_ERR_NOMEM;
    if (st == SAC_OK && fwrite(b.s, 1, b.n, f) != b.n) st = SAC_ERR_IO;
    free(b.s), free(dup), free(idx);
    return st;
}

int batch_output_close(BatchOutput *o, int complete)
{
    if (!o) return SAC_OK;
    const char *fp = o->file_path ? o->file_path : "stdout";
    int st = SAC_OK;
    if (o->f) {
        if (complete && o->fmt == BATCH_HTML && fputs(html_footer, o->f) < 0) st = SAC_ERR_IO;
        if (fflush(o->f)) st = SAC_ERR_IO;
        if (o->f != stdout && fclose(o->f)) st = SAC_ERR_IO;
    }
    if (st) sac_error("%s: write error (%s)", fp, strerror(errno));
    if (st == SAC_OK && complete && o->fmt == BATCH_COCO) {
        if (!o->path) {
            st = coco_write(o, stdout);
            if (st == SAC_OK && fflush(stdout)) st = SAC_ERR_IO;
            if (st) sac_error("stdout: write error (%s)", st == SAC_ERR_NOMEM ? "out of memory" : strerror(errno));
        } else {
            size_t len = strlen(o->path) + 5;
            char *tmp = malloc(len);
            FILE *f = tmp ? (snprintf(tmp, len, "%s.tmp", o->path), fopen(tmp, "w")) : NULL;
            if (!f) {
                sac_error("%s: cannot write (%s)", tmp ? tmp : o->path, strerror(errno));
                st = SAC_ERR_IO;
            } else {
                st = coco_write(o, f);
                if (fclose(f) && st == SAC_OK) st = SAC_ERR_IO;
                if (st == SAC_OK && rename(tmp, o->path)) st = SAC_ERR_IO;
                if (st) {
                    sac_error("%s: cannot write the COCO results (%s); the records are kept in %s",
                              o->path, st == SAC_ERR_NOMEM ? "out of memory" : strerror(errno), fp);
                    unlink(tmp);
                } else {
                    unlink(o->file_path);
                }
            }
            free(tmp);
        }
    }
    output_free(o);
    return st;
}

/* ---- PNG as base64 ---- */

static void png_sink(void *context, void *data, int size) { buf_put(context, data, (size_t)size); }

char *batch_png_base64(const SacImage *img)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    Buf png = {0};
    if (!stbi_write_png_to_func(png_sink, &png, img->w, img->h, 3, img->rgb, img->w * 3) || png.oom) {
        free(png.s);
        sac_error("cannot encode a %dx%d PNG", img->w, img->h);
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)png.s;
    size_t n = png.n;
    char *out = sac_malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) {
        free(png.s);
        return NULL;
    }
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[v >> 12 & 63], *o++ = tab[v >> 6 & 63], *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = tab[v >> 18], *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = 0;
    free(png.s);
    return out;
}
