/*
 * cmd_attend.c - `saccade attend`: caption one image and show where the model looked for each
 * word: a PNG figure (attention_draw: the photo, then one heat panel per word with the word under
 * it) and/or a self-contained HTML page where hovering or clicking a word shows its map over the
 * photo.
 *
 * The HTML inlines every picture as a base64 PNG data URI: the photo at its own aspect ratio and,
 * per word, the heat panel attention_draw makes (square, the squashed view the model saw),
 * displayed stretched back to the photo's aspect ratio, which is exact because the attention
 * grid covers the whole squashed photo.
 *
 * Size letters: T caption words, P grid positions.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "captioner.h"
#include "cli.h"
#include "draw.h"
#include "matmul.h"
#include "sac.h"

#define HTML_SIDE 320 /* the longest side of the photo on the HTML page, in CSS pixels */

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade attend IMAGE -o OUT.png [--html OUT.html] [options]\n\n"
            "Caption IMAGE and draw where the model looked for each word. Prints IMAGE<TAB>caption.\n"
            "  -o, --output FILE   PNG figure: the photo as the model saw it (squashed to a square), then\n"
            "                      one panel per word with its attention map and the word under it\n"
            "  --html FILE         one self-contained HTML page (images inlined): hover or click a word\n"
            "                      to see its map over the photo; FILE#wN opens with word N (0-based) shown\n"
            "At least one of -o and --html is required.\n\n"
            "options:\n"
            "  --model FILE        model file (default: $SACCADE_MODEL, then the installed model)\n"
            "  --beam K            beam width (default 3; 1 = greedy)\n"
            "  --max-len N         most words + <end> (default: the model's T)\n"
            "  --len-norm A        beam score = logprob / steps^A (default 0.7)\n"
            "  --panel PX          panel side in the PNG, 16..1024 (default 128)\n"
            "  --columns N         panels per row in the PNG (default 6)\n"
            "  --threads N         BLAS threads (default 0 = all cores)\n"
            "  --quiet             only errors on stderr\n"
            "  -h, --help          this text\n");
}

/* ---- in-memory PNG + base64 ---- */

typedef struct {
    unsigned char *data;
    size_t len, cap;
    int failed;
} Bytes;

static void bytes_append(void *ctx, void *data, int size)
{
    Bytes *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = (b->len + (size_t)size) * 2;
        unsigned char *nd = realloc(b->data, cap);
        if (!nd) {
            b->failed = 1;
            return;
        }
        b->data = nd, b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

/* Write "data:image/png;base64,..." of the w x h RGB region at rgb (row stride in bytes) to f. */
static int write_png_uri(FILE *f, const uint8_t *rgb, int w, int h, int stride)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    Bytes b = {0};
    if (!stbi_write_png_to_func(bytes_append, &b, w, h, 3, rgb, stride) || b.failed) {
        free(b.data);
        return SAC_ERR_NOMEM;
    }
    fputs("data:image/png;base64,", f);
    for (size_t i = 0; i < b.len; i += 3) {
        unsigned v = (unsigned)b.data[i] << 16;
        if (i + 1 < b.len) v |= (unsigned)b.data[i + 1] << 8;
        if (i + 2 < b.len) v |= b.data[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < b.len ? tab[(v >> 6) & 63] : '=',
                     i + 2 < b.len ? tab[v & 63] : '='};
        fwrite(q, 1, 4, f);
    }
    free(b.data);
    return SAC_OK;
}

static void write_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char html_style[] =
    "body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#111}\n"
    "h1{font-size:22px;font-weight:600;margin:0 0 4px}\n"
    "p.meta{color:#666;font-size:13px;margin:0 0 14px}\n"
    ".view{position:relative;display:inline-block;line-height:0;box-shadow:0 1px 4px #0004}\n"
    ".view img{display:block}\n"
    ".view img.map{position:absolute;left:0;top:0;visibility:hidden}\n"
    ".view img.map.on{visibility:visible}\n"
    ".words{margin:14px 0;font-size:20px;line-height:2}\n"
    ".word{padding:3px 8px;margin:0 2px;border-radius:5px;background:#e6e6e6;cursor:pointer;user-select:none}\n"
    ".word.on{background:#ffc83d}\n";

static const char html_script[] =
    "(function(){\n"
    "  var words=document.querySelectorAll('.word'), maps=document.querySelectorAll('.map'), pinned=-1;\n"
    "  function show(i){\n"
    "    for(var k=0;k<maps.length;k++){maps[k].classList.toggle('on',k===i);words[k].classList.toggle('on',k===i);}\n"
    "  }\n"
    "  words.forEach(function(w,i){\n"
    "    w.addEventListener('mouseenter',function(){show(i);});\n"
    "    w.addEventListener('mouseleave',function(){show(pinned);});\n"
    "    w.addEventListener('click',function(){pinned=pinned===i?-1:i;show(pinned);});\n"
    "    w.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();"
    "pinned=pinned===i?-1:i;show(pinned);}});\n"
    "  });\n"
    "  var m=/^#w(\\d+)$/.exec(location.hash);\n"
    "  if(m&&+m[1]<maps.length){pinned=+m[1];show(pinned);}\n"
    "})();\n";

/* The HTML page: photo (aspect kept) with the T heat panels of attention_draw stacked on it. */
static int write_html(const char *path, const char *image_name, const SacImage *photo, const Model *m,
                      const Caption *cap, const char *text, const char *const *words, int beam)
{
    const int T = cap->n;
    int W = photo->w >= photo->h ? HTML_SIDE : (int)((double)HTML_SIDE * photo->w / photo->h + 0.5);
    int H = photo->h >= photo->w ? HTML_SIDE : (int)((double)HTML_SIDE * photo->h / photo->w + 0.5);
    W = W < 1 ? 1 : W, H = H < 1 ? 1 : H;
    SacImage view = {0}, fig = {0};
    int st = sac_image_resize(photo, W, H, &view);
    /* all panels in one row; panel k sits at (m + k * (side + m), m) */
    if (!st) st = attention_draw(photo, cap->alphas, T, m->grid_h, m->grid_w, NULL, HTML_SIDE, T + 1, &fig);
    char *tmp = sac_malloc(strlen(path) + 5);
    FILE *f = NULL;
    if (!st && !tmp) st = SAC_ERR_NOMEM;
    if (!st) {
        sprintf(tmp, "%s.tmp", path);
        if (!(f = fopen(tmp, "wb"))) {
            fprintf(stderr, "saccade attend: cannot create %s: %s\n", tmp, strerror(errno));
            st = SAC_ERR_IO;
        }
    }
    if (!st) {
        const char *base = strrchr(image_name, '/');
        base = base ? base + 1 : image_name;
        fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>saccade attend: ", f);
        write_escaped(f, base);
        fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", html_style);
        write_escaped(f, text);
        fputs("</h1>\n<p class=\"meta\">", f);
        write_escaped(f, base);
        fprintf(f, " &middot; %dx%d &middot; beam %d &middot; log-probability %.3f%s &middot; hover or click a word "
                   "to see where the model looked</p>\n<div class=\"view\">\n<img id=\"photo\" alt=\"photo\" "
                   "width=\"%d\" height=\"%d\" src=\"",
                photo->w, photo->h, beam, cap->logprob, cap->ended ? "" : " (no &lt;end&gt;)", W, H);
        st = write_png_uri(f, view.rgb, W, H, W * 3);
        fputs("\">\n", f);
        const int mg = ATTENTION_DRAW_MARGIN;
        for (int t = 0; t < T && !st; t++) {
            fprintf(f, "<img class=\"map\" id=\"map-%d\" width=\"%d\" height=\"%d\" alt=\"attention for ", t, W, H);
            write_escaped(f, words[t]);
            fputs("\" src=\"", f);
            const uint8_t *panel = fig.rgb + ((size_t)mg * fig.w + mg + (size_t)(t + 1) * (HTML_SIDE + mg)) * 3;
            st = write_png_uri(f, panel, HTML_SIDE, HTML_SIDE, fig.w * 3);
            fputs("\">\n", f);
        }
        fputs("</div>\n<div class=\"words\">", f);
        for (int t = 0; t < T; t++) {
            fprintf(f, "<span class=\"word\" id=\"w%d\" tabindex=\"0\">", t);
            write_escaped(f, words[t]);
            fputs("</span> ", f);
        }
        fprintf(f, "</div>\n<script>\n%s</script>\n</body>\n</html>\n", html_script);
        if (ferror(f)) st = SAC_ERR_IO;
        if (fclose(f) && !st) st = SAC_ERR_IO;
        if (!st && rename(tmp, path)) st = SAC_ERR_IO;
        if (st) {
            fprintf(stderr, "saccade attend: cannot write %s: %s\n", path, st == SAC_ERR_IO ? strerror(errno) : sac_strerror(st));
            remove(tmp);
        }
    }
    free(tmp);
    sac_image_free(&view);
    sac_image_free(&fig);
    return st;
}

enum { O_MODEL = 256, O_BEAM, O_MAX_LEN, O_LEN_NORM, O_PANEL, O_COLUMNS, O_HTML, O_THREADS, O_QUIET, O_HELP };

int cmd_attend(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", 1, 0, O_MODEL}, {"beam", 1, 0, O_BEAM}, {"max-len", 1, 0, O_MAX_LEN},
        {"len-norm", 1, 0, O_LEN_NORM}, {"panel", 1, 0, O_PANEL}, {"columns", 1, 0, O_COLUMNS},
        {"output", 1, 0, 'o'}, {"html", 1, 0, O_HTML}, {"threads", 1, 0, O_THREADS}, {"quiet", 0, 0, O_QUIET},
        {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model_path = NULL, *out_png = NULL, *out_html = NULL;
    long beam = 3, max_len = 0, panel = 128, columns = 6, threads = 0;
    double len_norm = 0.7;
    int quiet = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_BEAM:
            if (cli_parse_int("--beam", optarg, 1, 64, &beam)) return CLI_USAGE;
            break;
        case O_MAX_LEN:
            if (cli_parse_int("--max-len", optarg, 1, 256, &max_len)) return CLI_USAGE;
            break;
        case O_LEN_NORM:
            if (cli_parse_float("--len-norm", optarg, 0, 10, &len_norm)) return CLI_USAGE;
            break;
        case O_PANEL:
            if (cli_parse_int("--panel", optarg, 16, 1024, &panel)) return CLI_USAGE;
            break;
        case O_COLUMNS:
            if (cli_parse_int("--columns", optarg, 1, 256, &columns)) return CLI_USAGE;
            break;
        case 'o': out_png = optarg; break;
        case O_HTML: out_html = optarg; break;
        case O_THREADS:
            if (cli_parse_int("--threads", optarg, 0, 1024, &threads)) return CLI_USAGE;
            break;
        case O_QUIET: quiet = 1; break;
        case 'h':
        case O_HELP: help(stdout); return CLI_OK;
        default: return cli_option_error("attend", c, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("attend", "no image given");
    if (argc - optind > 1) return cli_usage_error("attend", "one image at a time, found %d", argc - optind);
    if (!out_png && !out_html) return cli_usage_error("attend", "nothing to write: give -o OUT.png and/or --html OUT.html");
    const char *image = argv[optind];

    int status;
    Model *m = cli_open_model("attend", model_path, argv[0], quiet, threads, max_len, &status);
    if (!m) return status;
    DecoderSizes sz = model_decoder_sizes(m);
    SearchOptions opt = search_default_options(&sz);
    opt.beam = (int)beam, opt.len_norm = (float)len_norm, opt.want_alphas = 1;
    if (max_len) opt.max_len = (int)max_len;

    int rc = CLI_FAILED;
    SacImage photo = {0}, fig = {0};
    Caption cap = {0};
    char *text = NULL;
    const char **words = NULL;
    Captioner *cp = NULL;
    if (sac_image_load(image, &photo, 0)) goto done; /* the message names the file */
    if (!(cp = captioner_create(m, 1, (int)beam))) goto done;
    int st = captioner_run(cp, &photo, 1, &opt, &cap, NULL);
    if (st) {
        fprintf(stderr, "saccade attend: %s: decoding failed: %s\n", image, sac_strerror(st));
        goto done;
    }
    text = captioner_text(m, &cap);
    words = sac_calloc(cap.n ? cap.n : 1, sizeof(char *));
    if (!text || !words) goto done;
    for (int t = 0; t < cap.n; t++) words[t] = vocab_word(m->vocab, cap.tokens[t]);
    if (out_png) {
        st = attention_draw(&photo, cap.alphas, cap.n, m->grid_h, m->grid_w, words, (int)panel, (int)columns, &fig);
        if (!st) st = sac_image_write_png(out_png, &fig);
        if (st) {
            fprintf(stderr, "saccade attend: cannot write %s: %s\n", out_png, sac_strerror(st));
            goto done;
        }
    }
    if (out_html && write_html(out_html, image, &photo, m, &cap, text, words, (int)beam)) goto done;
    printf("%s\t%s\n", image, text);
    rc = CLI_OK;
done:
    free(words);
    free(text);
    caption_clear(&cap);
    sac_image_free(&fig);
    sac_image_free(&photo);
    captioner_free(cp);
    model_free(m);
    return rc;
}
