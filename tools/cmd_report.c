/*
 * cmd_report.c - `saccade report train.jsonl -o report.html`: the training log `saccade train
 * --log` writes, as one self-contained HTML page with inline SVG charts (no script, nothing
 * fetched): training loss (raw points faint, a debiased exponential moving average over them),
 * gradient norm, learning rates, throughput, and dev BLEU-4 / CIDEr-D / distinct captions per
 * epoch with the chosen epoch (the last one the log marks "best") marked; with --model and
 * --images, a few photos captioned by that model with their attention figures (base64 PNG).
 *
 * The log (captioner/trainer.c): step lines {"step", "epoch", "loss", "ce", "lr", "lr_enc",
 * "grad_norm", "images_per_s", "time"} and epoch lines {"epoch", "step", "dev": {"bleu1".."bleu4",
 * "rouge_l", "cider_d", "distinct", "vocab_used", "mean_len", "att_max", "att_entropy"},
 * "best", "epoch_seconds"}.
 * - A log still being written may end in a partial line: it is left out (and said so).
 * - A resumed run repeats steps or goes back to its checkpoint: a step line whose step is not
 *   beyond the last kept one drops the kept lines at or after it (the run that was resumed
 *   left them), so each step keeps its last value; epoch lines likewise by epoch.
 * - Other lines that are not JSON objects are skipped with a message naming the line.
 *
 * Every chart carries data-* attributes (data-n, data-x-min, ...) and one element per point,
 * so a test can count them in the rendered page.
 *
 * Size letters: none (no tensors here).
 */
#include <cJSON.h>
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attend_view.h"
#include "batch.h"
#include "cli.h"
#include "draw.h"
#include "fileio.h"
#include "image.h"
#include "output.h"
#include "sac.h"
#include "saccade.h"

#define REPORT_MAX_LOG ((size_t)1 << 30) /* largest log read */
#define REPORT_MAX_RAW 2000              /* raw points drawn per chart (every k-th beyond) */
#define REPORT_PANEL 192                 /* attention figure panel side */

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade report LOG.jsonl -o REPORT.html [--model FILE --images PATH...]\n\n"
            "Turn the log of `saccade train --log LOG.jsonl` into one self-contained HTML page with\n"
            "SVG charts: training loss (raw and smoothed), gradient norm, learning rate, throughput,\n"
            "and dev BLEU-4, CIDEr-D and distinct captions per epoch with the chosen epoch marked.\n"
            "A log still being written (a partial last line) and a resumed run (steps repeated or\n"
            "going back) are fine: each step keeps its last value.\n\n"
            "options:\n"
            "  -o, --output FILE   the page ('-' = stdout); required\n"
            "  --model FILE        with --images: caption these photos with this model (the one train\n"
            "                      kept: the chosen epoch's) and show where it looked for each word\n"
            "  --images PATH       a photo, or a directory (its first --max-photos photos by name);\n"
            "                      may be repeated\n"
            "  --max-photos N      photos shown, 1..32 (default 4)\n"
            "  --title TEXT        the page's title (default: the log's file name)\n"
            "  --threads N         threads for --model (default 0 = all cores)\n"
            "  --quiet             only errors on stderr\n"
            "  -h, --help          this text\n");
}

/* ---- the log ---- */

enum { S_LOSS, S_CE, S_LR, S_LR_ENC, S_GRAD, S_IPS, S_TIME, S_N };
static const char *const step_keys[S_N] = {"loss", "ce", "lr", "lr_enc", "grad_norm", "images_per_s", "time"};
enum { D_BLEU4, D_CIDER, D_DISTINCT, D_BLEU1, D_ROUGE, D_ATT_MAX, D_N };
static const char *const dev_keys[D_N] = {"bleu4", "cider_d", "distinct", "bleu1", "rouge_l", "att_max"};

typedef struct {
    double step, epoch;
    double v[S_N]; /* NAN when absent */
} StepRec;

typedef struct {
    double epoch, step, seconds;
    int best;
    double v[D_N];
} EpochRec;

typedef struct {
    StepRec *steps;
    size_t n_steps, cap_steps;
    EpochRec *epochs;
    size_t n_epochs, cap_epochs;
    size_t lines, skipped, superseded;
    int partial_last; /* the last line had no newline and was not a complete object */
    long first_bad_line;
} TrainLog;

static double num(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) ? x->valuedouble : NAN;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return SAC_OK;
    size_t nc = *cap ? *cap * 2 : 256;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return SAC_ERR_NOMEM;
    *p = np, *cap = nc;
    return SAC_OK;
}

/* One parsed line: a step line or an epoch line (anything else is skipped). */
static int log_add(TrainLog *L, const cJSON *o, long line_no)
{
    double step = num(o, "step"), epoch = num(o, "epoch");
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(o, "dev");
    if (cJSON_IsObject(dev) && isfinite(epoch)) {
        while (L->n_epochs > 0 && L->epochs[L->n_epochs - 1].epoch >= epoch) L->n_epochs--, L->superseded++;
        if (grow((void **)&L->epochs, &L->cap_epochs, L->n_epochs + 1, sizeof(EpochRec))) return SAC_ERR_NOMEM;
        EpochRec *e = &L->epochs[L->n_epochs++];
        e->epoch = epoch, e->step = step, e->seconds = num(o, "epoch_seconds");
        e->best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "best"));
        for (int k = 0; k < D_N; k++) e->v[k] = num(dev, dev_keys[k]);
        return SAC_OK;
    }
    if (isfinite(step) && cJSON_GetObjectItemCaseSensitive(o, "loss")) {
        while (L->n_steps > 0 && L->steps[L->n_steps - 1].step >= step) L->n_steps--, L->superseded++;
        if (grow((void **)&L->steps, &L->cap_steps, L->n_steps + 1, sizeof(StepRec))) return SAC_ERR_NOMEM;
        StepRec *r = &L->steps[L->n_steps++];
        r->step = step, r->epoch = epoch;
        for (int k = 0; k < S_N; k++) r->v[k] = num(o, step_keys[k]);
        return SAC_OK;
    }
    L->skipped++;
    if (!L->first_bad_line) L->first_bad_line = line_no;
    return SAC_OK;
}

static int log_read(const char *path, TrainLog *L)
{
    memset(L, 0, sizeof(*L));
    uint8_t *buf;
    size_t len;
    int st = sac_read_file(path, REPORT_MAX_LOG, &buf, &len); /* logged, naming the file */
    if (st) return st;
    char *s = (char *)buf, *end = s + len;
    long line_no = 0;
    while (s < end && !st) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        int complete = nl != NULL;
        if (nl) *nl = 0;
        line_no++;
        char *p = s;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p) {
            L->lines++;
            cJSON *o = cJSON_Parse(p);
            if (cJSON_IsObject(o)) {
                st = log_add(L, o, line_no);
            } else if (!complete) {
                L->partial_last = 1; /* being written */
            } else {
                L->skipped++;
                if (!L->first_bad_line) L->first_bad_line = line_no;
            }
            cJSON_Delete(o);
        }
        s = nl ? nl + 1 : end;
    }
    free(buf);
    return st;
}

static void log_free(TrainLog *L)
{
    free(L->steps);
    free(L->epochs);
}

/* ---- charts ---- */

typedef struct {
    double x, y;
} Pt;

typedef struct {
    const char *name;  /* legend text */
    const char *cls;   /* CSS class of the line */
    const Pt *pts;
    size_t n;
    int dots;          /* a circle on every point (per-epoch series) */
} Series;

typedef struct {
    const char *id, *title, *xlabel, *ylabel;
    const Pt *raw;     /* faint points, or NULL */
    size_t n_raw;
    Series s[2];
    int n_series;
    int log_y;         /* logarithmic y axis (learning rates) */
    int has_mark;      /* a vertical marker at mark_x */
    double mark_x;
    const char *mark_label;
} Chart;

enum { CW = 600, CH = 270, ML = 70, MR = 20, MT = 34, MB = 46 };

/* Ticks at a "nice" step (1, 2, 5 x 10^k) covering [lo, hi]; returns the count (<= 12). */
static int nice_ticks(double lo, double hi, double *ticks)
{
    double range = hi - lo, raw = range / 5, mag = pow(10, floor(log10(raw))), step = mag;
    if (raw / mag > 5) step = 10 * mag;
    else if (raw / mag > 2) step = 5 * mag;
    else if (raw / mag > 1) step = 2 * mag;
    int n = 0;
    for (double t = ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9 && n < 12; t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0 : t;
    return n;
}

static void fmt_num(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.4g", v);
}

static void chart_svg(FILE *f, const Chart *c)
{
    /* data ranges over everything drawn */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t n_pts = c->n_raw;
#define SPAN(p)                                                                 \
    do {                                                                        \
        if (isfinite((p).x) && isfinite((p).y) && (!c->log_y || (p).y > 0)) {   \
            x0 = fmin(x0, (p).x), x1 = fmax(x1, (p).x);                         \
            double yy = c->log_y ? log10((p).y) : (p).y;                        \
            y0 = fmin(y0, yy), y1 = fmax(y1, yy);                               \
        }                                                                       \
    } while (0)
    for (size_t i = 0; i < c->n_raw; i++) SPAN(c->raw[i]);
    for (int k = 0; k < c->n_series; k++) {
        for (size_t i = 0; i < c->s[k].n; i++) SPAN(c->s[k].pts[i]);
        if (!c->raw) n_pts += c->s[k].n;
    }
#undef SPAN
    fprintf(f, "<figure class=\"chart\">\n<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
               "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"%s\" data-n=\"%zu\"",
            c->id, CW, CH, CW, CH, c->title, c->raw ? c->n_raw : (c->n_series ? c->s[0].n : 0));
    if (!isfinite(x0)) {
        fprintf(f, " data-empty=\"1\">\n<text x=\"%d\" y=\"%d\" class=\"empty\">%s: nothing logged yet</text>\n"
                   "</svg>\n</figure>\n", CW / 2, CH / 2, c->title);
        return;
    }
    if (x1 == x0) x0 -= 0.5, x1 += 0.5;
    if (y1 == y0) y0 -= fabs(y0) * 0.1 + 0.5, y1 += fabs(y1) * 0.1 + 0.5;
    double pad = (y1 - y0) * 0.06;
    y0 -= pad, y1 += pad;
    if (c->log_y) fprintf(f, " data-log-y=\"1\"");
    fprintf(f, " data-x-min=\"%.6g\" data-x-max=\"%.6g\" data-y-min=\"%.6g\" data-y-max=\"%.6g\">\n", x0, x1,
            c->log_y ? pow(10, y0) : y0, c->log_y ? pow(10, y1) : y1);
    const double pw = CW - ML - MR, ph = CH - MT - MB;
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + ph - (((c->log_y ? log10(y) : (y)) - y0) / (y1 - y0)) * ph)
    fprintf(f, "<text class=\"title\" x=\"%d\" y=\"20\">%s</text>\n", ML, c->title);
    /* axes and ticks */
    double ticks[12];
    char lab[32];
    int nt = nice_ticks(x0, x1, ticks);
    fprintf(f, "<g class=\"axis x\" data-ticks=\"%d\">\n<line x1=\"%d\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>\n", nt, ML,
            MT + ph, ML + pw, MT + ph);
    for (int i = 0; i < nt; i++) {
        fmt_num(lab, sizeof(lab), ticks[i]);
        fprintf(f, "<line class=\"tick\" x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\"/><text x=\"%.1f\" y=\"%g\" "
                   "text-anchor=\"middle\">%s</text>\n",
                PX(ticks[i]), MT + ph, PX(ticks[i]), MT + ph + 5, PX(ticks[i]), MT + ph + 18, lab);
    }
    fprintf(f, "<text class=\"label\" x=\"%g\" y=\"%d\" text-anchor=\"middle\">%s</text>\n</g>\n", ML + pw / 2, CH - 6,
            c->xlabel);
    if (c->log_y) { /* decades */
        nt = 0;
        for (double d = ceil(y0 - 1e-9); d <= y1 + 1e-9 && nt < 12; d++) ticks[nt++] = pow(10, d);
        if (nt < 2) { /* less than a decade: linear ticks in the log space's range */
            nt = nice_ticks(pow(10, y0), pow(10, y1), ticks);
        }
    } else {
        nt = nice_ticks(y0, y1, ticks);
    }
    fprintf(f, "<g class=\"axis y\" data-ticks=\"%d\">\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%g\"/>\n", nt, ML, MT,
            ML, MT + ph);
    for (int i = 0; i < nt; i++) {
        if (c->log_y && !(ticks[i] > 0)) continue;
        fmt_num(lab, sizeof(lab), ticks[i]);
        double y = PY(ticks[i]);
        fprintf(f, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" "
                   "text-anchor=\"end\">%s</text>\n",
                ML, y, ML + pw, y, ML - 6, y + 4, lab);
    }
    fprintf(f, "<text class=\"label\" transform=\"translate(14,%g) rotate(-90)\" text-anchor=\"middle\">%s</text>\n</g>\n",
            MT + ph / 2, c->ylabel);
    /* the chosen epoch */
    if (c->has_mark && isfinite(c->mark_x)) {
        int right = PX(c->mark_x) > ML + pw * 0.7; /* label left of the line near the right edge */
        fprintf(f, "<g class=\"best\" data-x=\"%.6g\"><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%g\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%s</text></g>\n",
                c->mark_x, PX(c->mark_x), MT, PX(c->mark_x), MT + ph, PX(c->mark_x) + (right ? -5 : 5), MT + 12,
                right ? "end" : "start", c->mark_label);
    }
    /* raw points: faint dots (every k-th beyond REPORT_MAX_RAW) */
    if (c->raw) {
        size_t every = c->n_raw > REPORT_MAX_RAW ? (c->n_raw + REPORT_MAX_RAW - 1) / REPORT_MAX_RAW : 1, drawn = 0;
        for (size_t i = 0; i < c->n_raw; i += every) drawn += isfinite(c->raw[i].y) && (!c->log_y || c->raw[i].y > 0);
        fprintf(f, "<g class=\"raw\" data-drawn=\"%zu\">", drawn);
        for (size_t i = 0; i < c->n_raw; i += every) {
            const Pt *p = &c->raw[i];
            if (!isfinite(p->y) || (c->log_y && p->y <= 0)) continue;
            fprintf(f, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"1.8\"/>", PX(p->x), PY(p->y));
        }
        fputs("</g>\n", f);
    }
    for (int k = 0; k < c->n_series; k++) {
        const Series *s = &c->s[k];
        fprintf(f, "<path class=\"line %s\" data-series=\"%s\" data-n=\"%zu\" d=\"", s->cls, s->name, s->n);
        int pen = 0;
        for (size_t i = 0; i < s->n; i++) {
            const Pt *p = &s->pts[i];
            if (!isfinite(p->y) || (c->log_y && p->y <= 0)) {
                pen = 0;
                continue;
            }
            fprintf(f, "%c%.1f %.1f ", pen ? 'L' : 'M', PX(p->x), PY(p->y));
            pen = 1;
        }
        fputs("\"/>\n", f);
        if (s->dots) {
            fprintf(f, "<g class=\"dots %s\">", s->cls);
            for (size_t i = 0; i < s->n; i++) {
                const Pt *p = &s->pts[i];
                if (!isfinite(p->y)) continue;
                fprintf(f, "<circle class=\"pt\" data-x=\"%.6g\" data-y=\"%.6g\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\">"
                           "<title>%s %.6g: %.4f</title></circle>",
                        p->x, p->y, PX(p->x), PY(p->y), c->xlabel, p->x, p->y);
            }
            fputs("</g>\n", f);
        }
        if (c->n_series > 1 || c->raw)
            fprintf(f, "<text class=\"key %s\" x=\"%g\" y=\"20\" text-anchor=\"end\">%s</text>\n", s->cls,
                    ML + pw - (c->n_series > 1 && k == 0 ? 150 : 0), s->name);
    }
#undef PX
#undef PY
    (void)n_pts;
    fputs("</svg>\n</figure>\n", f);
}

/* Debiased exponential moving average (TensorBoard's smoothing) of ys, span n / 10 in 1..50. */
static void smooth(const Pt *in, size_t n, Pt *out)
{
    double span = fmin(50.0, fmax(1.0, (double)n / 10.0)), w = 1.0 - 2.0 / (span + 1.0), acc = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].x = in[i].x;
        if (isfinite(in[i].y)) acc = w * acc + (1 - w) * in[i].y, norm = w * norm + (1 - w);
        out[i].y = norm > 0 ? acc / norm : NAN;
    }
}

/* ---- the photos ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append PATH (a photo) or the photos of directory PATH (by name) to list, up to max. */
static int collect_photos(const char *path, char ***list, int *n, int max)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (*n < max) {
            char *d = strdup(path);
            if (!d) return SAC_ERR_NOMEM;
            (*list)[(*n)++] = d;
        }
        return SAC_OK;
    }
    DIR *dir = opendir(path);
    if (!dir) {
        cli_message("report", "%s: cannot read the directory", path);
        return SAC_ERR_IO;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    int st = SAC_OK;
    struct dirent *e;
    while ((e = readdir(dir)) && !st) {
        if (e->d_name[0] == '.' || !batch_is_image_name(e->d_name)) continue;
        if (grow((void **)&names, &cap, nn + 1, sizeof(char *))) st = SAC_ERR_NOMEM;
        else if (!(names[nn] = malloc(strlen(path) + strlen(e->d_name) + 2))) st = SAC_ERR_NOMEM;
        else sprintf(names[nn++], "%s/%s", path, e->d_name);
    }
    closedir(dir);
    if (nn) qsort(names, nn, sizeof(char *), cmp_str);
    for (size_t i = 0; i < nn; i++) {
        if (!st && *n < max) (*list)[(*n)++] = names[i];
        else free(names[i]);
    }
    free(names);
    return st;
}

/* Caption each photo with the model and write a <figure> with its attention figure. */
static int write_photos(FILE *f, const char *model_path, char **photos, int n, const char *argv0, int quiet,
                        long threads, int *failed)
{
    int status;
    saccade_model *m = cli_model_open("report", model_path, argv0, quiet, threads, 0, &status);
    if (!m) return SAC_ERR_IO;
    saccade_captioner *cp = saccade_captioner_create(m);
    if (!cp) {
        saccade_model_free(m);
        return SAC_ERR_NOMEM;
    }
    saccade_options opt;
    saccade_options_default(&opt);
    AttentionDrawOptions dopt = attention_draw_defaults();
    dopt.panel_size = REPORT_PANEL, dopt.columns = 5;
    int st = SAC_OK;
    fprintf(f, "<section id=\"photos\" data-n=\"%d\">\n<h2>Where the model looked</h2>\n<p class=\"note\">Captions by "
               "<code>", n);
    char *e = cli_html_escape(model_path);
    if (!e) st = SAC_ERR_NOMEM;
    else fputs(e, f);
    free(e);
    fprintf(f, "</code> (the model train kept: the chosen epoch's), beam %d. Each panel: one word's attention, "
               "smoothed, scaled to its own peak; p is the word's probability.</p>\n", opt.beam);
    for (int i = 0; i < n && !st; i++) {
        saccade_image photo = {0};
        SacImage fig = {0};
        AttendView v = {0};
        char *b64 = NULL;
        int pst = saccade_image_load(photos[i], 0, &photo, NULL, 0); /* logged, naming the file */
        if (!pst) pst = attend_view_run(cp, &photo, &opt, &v);
        if (!pst) {
            const SacImage shown = {photo.width, photo.height, photo.rgb};
            dopt.word_logprob = v.word_logprob;
            pst = attention_draw_figure(&shown, v.alphas, v.n, v.grid_h, v.grid_w, v.words, &dopt, &fig);
        }
        if (!pst && !(b64 = cli_png_base64(fig.rgb, fig.w, fig.h, 3, fig.w * 3))) pst = SAC_ERR_NOMEM;
        const char *base = strrchr(photos[i], '/');
        char *name = cli_html_escape(base ? base + 1 : photos[i]);
        char *cap = pst ? NULL : cli_html_escape(v.text);
        if (!name || (!pst && !cap)) {
            st = SAC_ERR_NOMEM;
        } else if (pst) {
            (*failed)++;
            cli_message("report", "%s: not shown: %s", photos[i], sac_strerror(pst));
        } else {
            fprintf(f, "<figure class=\"photo\"><figcaption><b>%s</b> &middot; %s &middot; log-probability "
                       "%.3f</figcaption><img alt=\"attention of each word for %s\" width=\"%d\" height=\"%d\" "
                       "src=\"data:image/png;base64,%s\"></figure>\n",
                    cap, name, v.logprob, name, fig.w, fig.h, b64);
        }
        free(name), free(cap), free(b64);
        attend_view_clear(&v);
        sac_image_free(&fig);
        saccade_image_free(&photo);
    }
    fputs("</section>\n", f);
    saccade_captioner_free(cp);
    saccade_model_free(m);
    return st;
}

/* ---- the page ---- */

static const char page_style[] =
    "body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;"
    "background:#fafafa;color:#111}\n"
    "h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:28px 0 8px}\n"
    "p.note{color:#555;font-size:14px}\n"
    "table.summary{border-collapse:collapse;font-size:15px;margin:10px 0}\n"
    "table.summary td,table.summary th{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}\n"
    "table.summary th{color:#555;font-weight:normal}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}\n"
    "figure.chart{margin:0;background:#fff;box-shadow:0 1px 3px #0003;border-radius:4px}\n"
    "svg.chart{font-size:12px;display:block}\n"
    "svg.chart .title{font-size:15px;font-weight:600}\n"
    "svg.chart .label{fill:#444}\n"
    "svg.chart .axis line{stroke:#333}\n"
    "svg.chart line.grid{stroke:#e4e4e4}\n"
    "svg.chart .raw circle{fill:#1f77b4;opacity:.28}\n"
    "svg.chart path.line{fill:none;stroke-width:2.2}\n"
    "svg.chart .c0{stroke:#1f77b4;fill:#1f77b4}svg.chart .c1{stroke:#d62728;fill:#d62728}\n"
    "svg.chart path.c1{stroke-dasharray:7 5}\n"
    "svg.chart text.key{stroke:none;font-size:13px}\n"
    "svg.chart .dots circle{stroke:#fff;stroke-width:1.5}\n"
    "svg.chart .best line{stroke:#2ca02c;stroke-width:2;stroke-dasharray:5 4}\n"
    "svg.chart .best text{fill:#2ca02c;font-weight:600}\n"
    "svg.chart .empty{fill:#888;text-anchor:middle}\n"
    "figure.photo{margin:0 0 18px}figure.photo img{max-width:100%;height:auto;background:#fff}\n"
    "figure.photo figcaption{font-size:18px;margin:4px 0}\n";

static int write_page(FILE *f, const char *title, const TrainLog *L, int *chosen_epoch)
{
    const size_t n = L->n_steps, ne = L->n_epochs;
    Pt *raw = sac_calloc(n + 1, sizeof(Pt)), *sm = sac_calloc(n + 1, sizeof(Pt)), *p2 = sac_calloc(n + 1, sizeof(Pt));
    Pt *dev = sac_calloc(ne + 1, sizeof(Pt));
    if (!raw || !sm || !p2 || !dev) {
        free(raw), free(sm), free(p2), free(dev);
        return SAC_ERR_NOMEM;
    }
    const EpochRec *best = NULL;
    for (size_t i = 0; i < ne; i++)
        if (L->epochs[i].best) best = &L->epochs[i];
    *chosen_epoch = best ? (int)best->epoch : -1;
    char *t = cli_html_escape(title);
    if (!t) {
        free(raw), free(sm), free(p2), free(dev);
        return SAC_ERR_NOMEM;
    }
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>saccade training report: %s"
               "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>Training report: %s</h1>\n",
            t, page_style, t);
    free(t);
    /* summary */
    fputs("<table class=\"summary\" id=\"summary\">\n", f);
    if (n) {
        const StepRec *a = &L->steps[0], *z = &L->steps[n - 1];
        fprintf(f, "<tr><th>steps logged</th><td id=\"steps\" data-n=\"%zu\">%zu (steps %.0f to %.0f)</td></tr>\n", n, n,
                a->step, z->step);
        if (isfinite(z->v[S_LOSS])) fprintf(f, "<tr><th>last loss</th><td>%.4f (epoch %.0f)</td></tr>\n", z->v[S_LOSS], z->epoch);
        if (isfinite(a->v[S_TIME]) && isfinite(z->v[S_TIME]))
            fprintf(f, "<tr><th>time between the first and last step line</th><td>%.1f min</td></tr>\n",
                    (z->v[S_TIME] - a->v[S_TIME]) / 60.0);
    } else {
        fputs("<tr><th>steps logged</th><td id=\"steps\" data-n=\"0\">none yet</td></tr>\n", f);
    }
    fprintf(f, "<tr><th>epochs evaluated on dev</th><td id=\"epochs\" data-n=\"%zu\">%zu</td></tr>\n", ne, ne);
    if (best)
        fprintf(f, "<tr><th>chosen epoch (best dev score)</th><td id=\"chosen\" data-epoch=\"%.0f\">%.0f: BLEU-4 %.4f, "
                   "CIDEr-D %.4f, distinct %.1f%%</td></tr>\n",
                best->epoch, best->epoch, best->v[D_BLEU4], best->v[D_CIDER], 100 * best->v[D_DISTINCT]);
    if (L->partial_last)
        fputs("<tr><th>note</th><td id=\"partial\">the log ends in a partial line (still being written?): left "
              "out</td></tr>\n", f);
    if (L->superseded)
        fprintf(f, "<tr><th>note</th><td id=\"resumed\" data-n=\"%zu\">resumed run: %zu lines replaced by the lines "
                   "of the run that resumed</td></tr>\n", L->superseded, L->superseded);
    if (L->skipped)
        fprintf(f, "<tr><th>note</th><td id=\"skipped\" data-n=\"%zu\">%zu lines that are neither step nor epoch "
                   "lines were skipped (the first: line %ld)</td></tr>\n", L->skipped, L->skipped, L->first_bad_line);
    fputs("</table>\n<h2>Training</h2>\n<div class=\"charts\">\n", f);

    char mark[64];
    snprintf(mark, sizeof(mark), "chosen: epoch %d", *chosen_epoch);
    double best_step = best ? best->step : NAN;
    /* loss */
    for (size_t i = 0; i < n; i++) raw[i] = (Pt){L->steps[i].step, L->steps[i].v[S_LOSS]};
    smooth(raw, n, sm);
    Chart c = {"chart-loss", "Training loss", "step", "loss", raw, n,
               {{"smoothed", "c0", sm, n, 0}}, 1, 0, best != NULL, best_step, mark};
    chart_svg(f, &c);
    /* gradient norm */
    for (size_t i = 0; i < n; i++) raw[i] = (Pt){L->steps[i].step, L->steps[i].v[S_GRAD]};
    smooth(raw, n, sm);
    c = (Chart){"chart-grad", "Gradient norm (before clipping)", "step", "L2 norm", raw, n,
                {{"smoothed", "c0", sm, n, 0}}, 1, 0, 0, NAN, NULL};
    chart_svg(f, &c);
    /* learning rates */
    for (size_t i = 0; i < n; i++) {
        sm[i] = (Pt){L->steps[i].step, L->steps[i].v[S_LR]};
        p2[i] = (Pt){L->steps[i].step, L->steps[i].v[S_LR_ENC]};
    }
    c = (Chart){"chart-lr", "Learning rate", "step", "learning rate (log scale)", NULL, 0,
                {{"decoder", "c0", sm, n, 0}, {"encoder", "c1", p2, n, 0}}, 2, 1, 0, NAN, NULL};
    chart_svg(f, &c);
    /* throughput */
    for (size_t i = 0; i < n; i++) raw[i] = (Pt){L->steps[i].step, L->steps[i].v[S_IPS]};
    smooth(raw, n, sm);
    c = (Chart){"chart-ips", "Throughput", "step", "images per second", raw, n, {{"smoothed", "c0", sm, n, 0}}, 1, 0, 0,
                NAN, NULL};
    chart_svg(f, &c);
    fputs("</div>\n<h2>Dev scores per epoch</h2>\n<div class=\"charts\">\n", f);
    static const struct {
        const char *id, *title, *ylabel;
        int key;
        double scale;
    } devc[] = {{"chart-bleu4", "Dev BLEU-4", "BLEU-4", D_BLEU4, 1},
                {"chart-cider", "Dev CIDEr-D", "CIDEr-D", D_CIDER, 1},
                {"chart-distinct", "Distinct captions (% of dev photos)", "% distinct", D_DISTINCT, 100}};
    for (size_t k = 0; k < sizeof(devc) / sizeof(devc[0]); k++) {
        for (size_t i = 0; i < ne; i++) dev[i] = (Pt){L->epochs[i].epoch, L->epochs[i].v[devc[k].key] * devc[k].scale};
        c = (Chart){devc[k].id, devc[k].title, "epoch", devc[k].ylabel, NULL, 0, {{devc[k].ylabel, "c0", dev, ne, 1}}, 1,
                    0, best != NULL, best ? best->epoch : NAN, mark};
        chart_svg(f, &c);
    }
    fputs("</div>\n", f);
    free(raw), free(sm), free(p2), free(dev);
    return SAC_OK;
}

/* The page for log_path into out_path, with the photos of image_args (n_args paths: photos or
 * directories, at most max_photos) captioned by model_path when given. A CLI_* status. */
static int report_run(const char *log_path, const char *out_path, const char *title, const char *model_path,
                      const char *const *image_args, int n_image_args, int max_photos, const char *argv0, int quiet,
                      long threads)
{
    int rc = CLI_FAILED;
    TrainLog L;
    char **photos = NULL;
    int n_photos = 0, failed = 0, chosen = -1;
    SacOutput *out = NULL;
    if (log_read(log_path, &L)) goto done; /* logged, naming the file */
    if (L.skipped && !quiet)
        cli_message("report", "%s: %zu lines are neither step nor epoch lines, skipped (the first: line %ld)", log_path,
                    L.skipped, L.first_bad_line);
    if (L.partial_last && !quiet)
        cli_message("report", "%s: the last line is incomplete (still being written?): left out", log_path);
    if (L.n_steps == 0 && L.n_epochs == 0) {
        cli_message("report", "%s: no step or epoch lines (expected the JSON lines of saccade train --log)", log_path);
        goto done;
    }
    photos = sac_calloc((size_t)max_photos + 1, sizeof(char *));
    if (!photos) goto done;
    for (int i = 0; i < n_image_args; i++)
        if (collect_photos(image_args[i], &photos, &n_photos, max_photos)) goto done;
    if (!(out = sac_output_open(out_path, 0))) goto done; /* logged, naming the file */
    FILE *f = sac_output_stream(out);
    const char *base = strrchr(log_path, '/');
    int st = write_page(f, title ? title : base ? base + 1 : log_path, &L, &chosen);
    if (!st && n_photos) st = write_photos(f, model_path, photos, n_photos, argv0, quiet, threads, &failed);
    else if (!st && model_path) cli_message("report", "no photos found in --images");
    if (!st)
        fprintf(f, "<p class=\"note\">Made by saccade report from %zu log lines. Raw points faint, the line a "
                   "debiased exponential moving average.</p>\n</body>\n</html>\n", L.lines);
    if (st) {
        cli_message("report", "cannot write %s: %s", out_path, sac_strerror(st));
        sac_output_discard(out);
        goto done;
    }
    if (sac_output_close(out)) goto done; /* logged, naming the file */
    if (!quiet)
        cli_message("report", "%s: %zu steps, %zu epochs%s%s", out_path, L.n_steps, L.n_epochs,
                    chosen >= 0 ? ", chosen epoch marked" : "", failed ? ", some photos not shown" : "");
    rc = failed || (model_path && n_photos == 0) ? CLI_FAILED : CLI_OK;
done:
    log_free(&L);
    for (int i = 0; photos && i < n_photos; i++) free(photos[i]);
    free(photos);
    return rc;
}

int cmd_report_write(const char *log_path, const char *out_path, int quiet)
{
    return report_run(log_path, out_path, NULL, NULL, NULL, 0, 1, NULL, quiet, 0);
}

enum { O_MODEL = 256, O_IMAGES, O_MAX_PHOTOS, O_TITLE };

int cmd_report(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", 1, 0, 'o'}, {"model", 1, 0, O_MODEL}, {"images", 1, 0, O_IMAGES}, {"max-photos", 1, 0, O_MAX_PHOTOS},
        {"title", 1, 0, O_TITLE}, {"threads", 1, 0, CLI_OPT_THREADS}, {"quiet", 0, 0, CLI_OPT_QUIET},
        {"help", 0, 0, CLI_OPT_HELP},
        {0, 0, 0, 0}};
    const char *out_path = NULL, *model_path = NULL, *title = NULL;
    const char **image_args = sac_calloc((size_t)argc + 1, sizeof(char *));
    int n_image_args = 0, quiet = 0, c, opt_rc;
    long max_photos = 4, threads = 0;
    if (!image_args) return CLI_FAILED;
    optind = 1;
    opterr = 0;
    int rc = CLI_USAGE;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case O_MODEL: model_path = optarg; break;
        case O_IMAGES: image_args[n_image_args++] = optarg; break;
        case O_MAX_PHOTOS:
            if (cli_parse_int("--max-photos", optarg, 1, 32, &max_photos)) goto out;
            break;
        case O_TITLE: title = optarg; break;
        default:
            if ((opt_rc = cli_common_option("report", c, argv, help, &threads, &quiet)) == CLI_MORE) break;
            rc = opt_rc;
            goto out;
        }
    }
    if (optind >= argc) {
        rc = cli_usage_error("report", "no training log given");
        goto out;
    }
    if (argc - optind > 1) {
        rc = cli_usage_error("report", "one log at a time, found %d", argc - optind);
        goto out;
    }
    if (!out_path) {
        rc = cli_usage_error("report", "no output: give -o REPORT.html");
        goto out;
    }
    if (!!model_path != !!n_image_args) {
        rc = cli_usage_error("report", "--model and --images go together");
        goto out;
    }
    const char *log_path = argv[optind];
    const char *inputs[] = {log_path, model_path};
    if (sac_output_check_inputs(out_path, "-o", inputs, 2)) goto out;
    for (int i = 0; i < n_image_args; i++)
        if (sac_output_check_inputs(out_path, "-o", &image_args[i], 1)) goto out;

    rc = report_run(log_path, out_path, title, model_path, image_args, n_image_args, (int)max_photos, argv[0],
                    quiet, threads);
out:
    free(image_args);
    return rc;
}
