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
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "captioner.h"
#include "cli.h"
#include "draw.h"
#include "matmul.h"
#include "output.h"
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

/* ---- pieces of the page ---- */

/* Write "data:image/png;base64,..." of the w x h RGB region at rgb (row stride in bytes) to f. */
static int put_png_uri(FILE *f, const uint8_t *rgb, int w, int h, int stride)
{
    uint8_t *png;
    size_t len;
    int st = cli_png_encode(rgb, w, h, stride, &png, &len);
    if (st) return st;
    char *b64 = cli_base64(png, len);
    free(png);
    if (!b64) return SAC_ERR_NOMEM;
    fputs("data:image/png;base64,", f);
    fputs(b64, f);
    free(b64);
    return SAC_OK;
}

/* Write s HTML-escaped; SAC_ERR_NOMEM when out of memory. */
static int put_html(FILE *f, const char *s)
{
    char *e = cli_html_escape(s);
    if (!e) return SAC_ERR_NOMEM;
    fputs(e, f);
    free(e);
    return SAC_OK;
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
    if (st) cli_message("attend", "cannot draw the page %s: %s", path, sac_strerror(st));
    SacOutput *out = NULL;
    if (!st && !(out = sac_output_open(path, 0))) st = SAC_ERR_IO; /* logged, naming the file */
    if (!st) {
        FILE *f = sac_output_stream(out);
        const char *base = strrchr(image_name, '/');
        base = base ? base + 1 : image_name;
        fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>saccade attend: ", f);
        if (!st) st = put_html(f, base);
        fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", html_style);
        if (!st) st = put_html(f, text);
        fputs("</h1>\n<p class=\"meta\">", f);
        if (!st) st = put_html(f, base);
        fprintf(f, " &middot; %dx%d &middot; beam %d &middot; log-probability %.3f%s &middot; hover or click a word "
                   "to see where the model looked</p>\n<div class=\"view\">\n<img id=\"photo\" alt=\"photo\" "
                   "width=\"%d\" height=\"%d\" src=\"",
                photo->w, photo->h, beam, cap->logprob, cap->ended ? "" : " (no &lt;end&gt;)", W, H);
        if (!st) st = put_png_uri(f, view.rgb, W, H, W * 3);
        fputs("\">\n", f);
        const int mg = ATTENTION_DRAW_MARGIN;
        for (int t = 0; t < T && !st; t++) {
            fprintf(f, "<img class=\"map\" id=\"map-%d\" width=\"%d\" height=\"%d\" alt=\"attention for ", t, W, H);
            st = put_html(f, words[t]);
            fputs("\" src=\"", f);
            const uint8_t *panel = fig.rgb + ((size_t)mg * fig.w + mg + (size_t)(t + 1) * (HTML_SIDE + mg)) * 3;
            if (!st) st = put_png_uri(f, panel, HTML_SIDE, HTML_SIDE, fig.w * 3);
            fputs("\">\n", f);
        }
        fputs("</div>\n<div class=\"words\">", f);
        for (int t = 0; t < T && !st; t++) {
            fprintf(f, "<span class=\"word\" id=\"w%d\" tabindex=\"0\">", t);
            st = put_html(f, words[t]);
            fputs("</span> ", f);
        }
        fprintf(f, "</div>\n<script>\n%s</script>\n</body>\n</html>\n", html_script);
        if (st) {
            cli_message("attend", "cannot write %s: %s", path, sac_strerror(st));
            sac_output_discard(out);
        } else {
            st = sac_output_close(out); /* a write error is logged, naming the file */
        }
    }
    sac_image_free(&view);
    sac_image_free(&fig);
    return st;
}

/* 1 when a and b name one regular file (existing, or not yet: the same name). Two names of a
 * device (/dev/null) are fine. */
static int same_output(const char *a, const char *b)
{
    struct stat sb;
    if (stat(a, &sb) == 0) return S_ISREG(sb.st_mode) && sac_same_file(a, b);
    return !strcmp(a, b);
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
    if (out_png && out_html && same_output(out_png, out_html))
        return cli_usage_error("attend", "-o and --html name the same file %s", out_png);
    if (!(model_path = cli_find_model(model_path, argv[0]))) return CLI_FAILED;
    const char *inputs[] = {image, model_path};
    if (sac_output_check_inputs(out_png, "-o", inputs, 2) || sac_output_check_inputs(out_html, "--html", inputs, 2))
        return CLI_USAGE;

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
        cli_message("attend", "%s: decoding failed: %s", image, sac_strerror(st));
        goto done;
    }
    text = captioner_text(m, &cap);
    words = sac_calloc(cap.n ? cap.n : 1, sizeof(char *));
    if (!text || !words) goto done;
    for (int t = 0; t < cap.n; t++) words[t] = vocab_word(m->vocab, cap.tokens[t]);
    if (out_png) {
        uint8_t *png = NULL;
        size_t len = 0;
        st = attention_draw(&photo, cap.alphas, cap.n, m->grid_h, m->grid_w, words, (int)panel, (int)columns, &fig);
        if (!st) st = cli_png_encode(fig.rgb, fig.w, fig.h, fig.w * 3, &png, &len);
        if (st) cli_message("attend", "cannot draw %s: %s", out_png, sac_strerror(st));
        else st = sac_output_write_file(out_png, png, len, 0); /* a write error is logged, naming the file */
        free(png);
        if (st) goto done;
    }
    if (out_html && write_html(out_html, image, &photo, m, &cap, text, words, (int)beam)) goto done;
    cli_put_tsv_path(stdout, image);
    printf("\t%s\n", text);
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
