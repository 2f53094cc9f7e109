/*
 * cmd_attend.c - `saccade attend`: caption one image and show where the model looked for each
 * word: a PNG figure (attention_draw_figure: the photo at its own aspect ratio, then one smoothed
 * heat panel per word with the word, optionally its probability, under it, and a colour bar),
 * a self-contained HTML page (the photo large, a word list to click, arrow keys to step, a
 * "play" button that walks through the words), and/or the numbers as JSON (per word: the word,
 * its log-probability, the grid and the attention map).
 *
 * The HTML inlines every picture as a base64 PNG data URI: the photo at its own aspect ratio and,
 * per word, an RGBA overlay of the smoothed map that reproduces attention_overlay's blend
 * exactly when the browser lays it over the photo, stretched to the photo's aspect ratio, which
 * is exact because the attention grid covers the whole squashed photo the model saw.
 *
 * The caption, its words' log-probabilities and attention maps come from libsaccade (saccade.h,
 * attend_view.c); this file draws and writes them.
 *
 * Size letters: T caption words, P grid positions.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attend_view.h"
#include "cli.h"
#include "draw.h"
#include "image.h"
#include "output.h"
#include "sac.h"
#include "saccade.h"

#define HTML_SIDE 512 /* the longest side of the photo on the HTML page, in CSS pixels */
/* The decoding options attend takes (cli.h's table). */
#define ATTEND_DECODING (CLI_DEC_BEAM | CLI_DEC_MAX_LEN | CLI_DEC_LEN_NORM | CLI_DEC_REPEATS)
#define MAP_SIDE 256  /* the longest side of each word's overlay PNG (the browser stretches it) */

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade attend IMAGE [-o OUT.png] [--html OUT.html] [--json OUT.json] [options]\n\n"
            "Caption IMAGE and show where the model looked for each word. Prints IMAGE<TAB>caption\n"
            "(unless --json writes to stdout).\n"
            "  -o, --output FILE   PNG figure: the photo at its own aspect ratio, then one panel per word\n"
            "                      with its attention map (smoothed; colour bar: low to high, each map\n"
            "                      scaled to its own peak) and the word under it\n"
            "  --html FILE         one self-contained HTML page (images inlined): click a word, or use the\n"
            "                      arrow keys, or press play to step through the words; FILE#word=N (or #wN)\n"
            "                      opens with word N (0-based) shown, FILE#play plays\n"
            "  --json FILE         the numbers ('-' = stdout): caption, log-probability, grid [rows, cols],\n"
            "                      and per word: word, logprob (log p(word | earlier words, photo)),\n"
            "                      attention (rows of weights, summing to 1)\n"
            "At least one of -o, --html and --json is required.\n\n"
            "options:\n"
            "  --model FILE        model file (default: $SACCADE_MODEL, then the installed model)\n");
    cli_decode_help(f, ATTEND_DECODING, 20);
    fprintf(f,
            "  --panel PX          long side of a panel in the PNG, 16..1024 (default 256)\n"
            "  --columns N         panels per row in the PNG (default 6)\n"
            "  --probs             write each word's probability under its panel\n"
            "  --font FILE         TrueType font for the PNG's labels (default: DejaVu Sans from\n"
            "                      /usr/share/fonts/truetype/dejavu; 'builtin': the bitmap font)\n"
            "  --threads N         threads (default 0 = all cores)\n"
            "  --quiet             only errors on stderr\n"
            "  -h, --help          this text\n");
}

/* ---- pieces of the page ---- */

/* Write "data:image/png;base64,..." of the w x h region at px (channels 3: RGB, 4: RGBA; row
 * stride in bytes) to f. */
static int put_png_uri(FILE *f, const uint8_t *px, int w, int h, int channels, int stride)
{
    char *b64 = cli_png_base64(px, w, h, channels, stride);
    if (!b64) return SAC_ERR_NOMEM;
    fputs("data:image/png;base64,", f);
    fputs(b64, f);
    free(b64);
    return SAC_OK;
}

/* Word t's overlay as an RGBA PNG data URI, w x h: straight alpha A = 1 - (1 - m/2)(0.3 + 0.7 m)
 * and colour C = (m/2) colour(m) / A, so that the browser's "C over photo" gives
 * attention_overlay's (1 - m/2) v (0.3 + 0.7 m) + (m/2) colour(m). */
static int put_overlay_uri(FILE *f, const float *alpha /* (Hg, Wg) */, int grid_h, int grid_w, int w, int h)
{
    float *m = sac_malloc(sizeof(float) * (size_t)w * h);
    uint8_t *rgba = sac_malloc((size_t)w * h * 4);
    int st = m && rgba ? SAC_OK : SAC_ERR_NOMEM;
    if (!st) st = attention_smooth_map(alpha, grid_h, grid_w, m, h, w);
    for (size_t k = 0; !st && k < (size_t)w * h; k++) {
        float a = m[k], A = 1.0f - (1.0f - 0.5f * a) * (0.3f + 0.7f * a);
        uint8_t c[3];
        attention_colour(a, c);
        for (int ch = 0; ch < 3; ch++) {
            float v = 0.5f * a * c[ch] / A;
            rgba[k * 4 + ch] = (uint8_t)(v > 255 ? 255 : v + 0.5f);
        }
        rgba[k * 4 + 3] = (uint8_t)(255.0f * A + 0.5f);
    }
    if (!st) st = put_png_uri(f, rgba, w, h, 4, w * 4);
    free(m), free(rgba);
    return st;
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
    "body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:24px;background:#fafafa;color:#111}\n"
    "h1{font-size:26px;font-weight:600;margin:0 0 4px}\n"
    "p.meta{color:#555;font-size:14px;margin:0 0 14px}\n"
    ".view{position:relative;display:inline-block;line-height:0;box-shadow:0 1px 4px #0004;background:#000}\n"
    ".view img{display:block}\n"
    ".view img.map{position:absolute;left:0;top:0;visibility:hidden}\n"
    ".view img.map.on{visibility:visible}\n"
    ".legend{font-size:13px;color:#444;margin:8px 0 0;display:flex;align-items:center;gap:8px}\n"
    ".legend .bar{display:inline-block;width:180px;height:12px;border:1px solid #8884}\n"
    ".controls{margin:14px 0 4px;display:flex;align-items:center;gap:8px;font-size:16px}\n"
    ".controls button{font-size:16px;padding:4px 12px;border-radius:6px;border:1px solid #bbb;background:#fff;"
    "cursor:pointer}\n"
    "#current{margin-left:8px;color:#333}\n"
    ".words{margin:10px 0;font-size:22px;line-height:2.2;max-width:900px}\n"
    ".word{padding:3px 9px;margin:0 2px;border-radius:6px;background:#e6e6e6;cursor:pointer;user-select:none;"
    "white-space:nowrap}\n"
    ".word small{font-size:12px;color:#666;margin-left:5px}\n"
    ".word.on{background:#8fd0ff}\n" /* not a colour of the map or its bar */
    ".word:focus{outline:2px solid #333}\n"
    ".help{color:#666;font-size:13px}\n";

/* window.onerror records any script error in the DOM (the browser test reads it). */
static const char html_guard[] =
    "window.onerror=function(m){document.documentElement.setAttribute('data-js-error',String(m));};\n";

static const char html_script[] =
    "(function(){\n"
    "  var words=document.querySelectorAll('.word'), maps=document.querySelectorAll('.map');\n"
    "  var cur=document.getElementById('current'), play=document.getElementById('play'), shown=-1, timer=null;\n"
    "  function show(i){\n"
    "    if(i<-1||i>=maps.length) i=-1;\n"
    "    shown=i;\n"
    "    for(var k=0;k<maps.length;k++){maps[k].classList.toggle('on',k===i);words[k].classList.toggle('on',k===i);}\n"
    "    document.body.setAttribute('data-word',String(i));\n"
    "    cur.textContent=i<0?'the photo':'word '+(i+1)+' of '+maps.length+': '+words[i].getAttribute('data-word')+"
    "' (p = '+words[i].getAttribute('data-p')+')';\n"
    "  }\n"
    "  function stop(){if(timer){clearInterval(timer);timer=null;play.textContent='\\u25b6 play';}}\n"
    "  function step(d){stop();var n=shown+d;if(n<0)n=maps.length-1;if(n>=maps.length)n=-1;show(n);}\n"
    "  function start(){\n"
    "    if(timer){stop();return;}\n"
    "    play.textContent='\\u275a\\u275a pause';show(0);\n"
    "    timer=setInterval(function(){if(shown+1>=maps.length){stop();show(-1);}else show(shown+1);},900);\n"
    "  }\n"
    "  words.forEach(function(w,i){\n"
    "    w.addEventListener('click',function(){stop();show(shown===i?-1:i);});\n"
    "    w.addEventListener('keydown',function(e){if(e.key==='Enter'){e.preventDefault();stop();show(shown===i?-1:i);}});\n"
    "  });\n"
    "  play.addEventListener('click',start);\n"
    "  document.getElementById('prev').addEventListener('click',function(){step(-1);});\n"
    "  document.getElementById('next').addEventListener('click',function(){step(1);});\n"
    "  document.addEventListener('keydown',function(e){\n"
    "    if(e.key==='ArrowRight'){e.preventDefault();step(1);}\n"
    "    else if(e.key==='ArrowLeft'){e.preventDefault();step(-1);}\n"
    "    else if(e.key==='Home'){e.preventDefault();stop();show(0);}\n"
    "    else if(e.key==='End'){e.preventDefault();stop();show(maps.length-1);}\n"
    "    else if(e.key==='Escape'){stop();show(-1);}\n"
    "    else if(e.key===' '&&e.target===document.body){e.preventDefault();start();}\n"
    "  });\n"
    "  function fromHash(){if(location.hash==='#play'){stop();start();return;}\n"
    "    var m=/^#(?:w|word=)(\\d+)$/.exec(location.hash);stop();show(m?+m[1]:-1);}\n"
    "  window.addEventListener('hashchange',fromHash);\n"
    "  fromHash();\n"
    "  document.body.setAttribute('data-ready','1');\n"
    "})();\n";

/* The colour bar as a CSS gradient of attention_colour. */
static void put_gradient(FILE *f)
{
    fputs("linear-gradient(to right", f);
    for (int i = 0; i <= 8; i++) {
        uint8_t c[3];
        attention_colour(i / 8.0f, c);
        fprintf(f, ",rgb(%d,%d,%d)", c[0], c[1], c[2]);
    }
    fputs(")", f);
}

/* The HTML page: the photo (aspect kept) with one overlay per word stacked on it. */
static int write_html(const char *path, const char *image_name, const SacImage *photo, const AttendView *v, int beam)
{
    const int T = v->n, P = v->grid_h * v->grid_w;
    int W, H, mw, mh;
    attention_panel_size(photo->w, photo->h, HTML_SIDE, &W, &H);
    attention_panel_size(photo->w, photo->h, MAP_SIDE, &mw, &mh);
    SacImage view = {0};
    int st = sac_image_resize(photo, W, H, &view);
    if (st) cli_message("attend", "cannot draw the page %s: %s", path, sac_strerror(st));
    SacOutput *out = NULL;
    if (!st && !(out = sac_output_open(path, 0))) st = SAC_ERR_IO; /* logged, naming the file */
    if (!st) {
        FILE *f = sac_output_stream(out);
        const char *base = strrchr(image_name, '/');
        base = base ? base + 1 : image_name;
        fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<script>\n%s</script>\n"
                   "<title>saccade attend: ", html_guard);
        if (!st) st = put_html(f, base);
        fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body data-word=\"-1\">\n<h1>", html_style);
        if (!st) st = put_html(f, v->text);
        fputs("</h1>\n<p class=\"meta\">", f);
        if (!st) st = put_html(f, base);
        fprintf(f, " &middot; %dx%d &middot; %dx%d attention grid &middot; beam %d &middot; log-probability %.3f%s</p>\n"
                   "<div class=\"view\" style=\"width:%dpx;height:%dpx\">\n<img id=\"photo\" alt=\"photo\" "
                   "width=\"%d\" height=\"%d\" src=\"",
                photo->w, photo->h, v->grid_h, v->grid_w, beam, v->logprob, v->ended ? "" : " (no &lt;end&gt;)",
                W, H, W, H);
        if (!st) st = put_png_uri(f, view.rgb, W, H, 3, W * 3);
        fputs("\">\n", f);
        for (int t = 0; t < T && !st; t++) {
            fprintf(f, "<img class=\"map\" id=\"map-%d\" data-index=\"%d\" width=\"%d\" height=\"%d\" alt=\"attention for ",
                    t, t, W, H);
            st = put_html(f, v->words[t]);
            fputs("\" src=\"", f);
            if (!st) st = put_overlay_uri(f, v->alphas + (size_t)t * P, v->grid_h, v->grid_w, mw, mh);
            fputs("\">\n", f);
        }
        fputs("</div>\n<div class=\"legend\">attention: low <span class=\"bar\" style=\"background:", f);
        put_gradient(f);
        fputs("\"></span> high <span class=\"help\">(each word's map scaled to its own peak)</span></div>\n"
              "<div class=\"controls\"><button id=\"prev\" title=\"previous word (&larr;)\">&larr;</button>"
              "<button id=\"play\" title=\"step through the words (space)\">&#9654; play</button>"
              "<button id=\"next\" title=\"next word (&rarr;)\">&rarr;</button>"
              "<span id=\"current\">the photo</span></div>\n<div class=\"words\">",
              f);
        for (int t = 0; t < T && !st; t++) {
            double p = exp((double)v->word_logprob[t]);
            fprintf(f, "<span class=\"word\" id=\"w%d\" data-index=\"%d\" data-p=\"%.2f\" data-word=\"", t, t, p);
            st = put_html(f, v->words[t]);
            fprintf(f, "\" tabindex=\"0\" title=\"log-probability %.3f\">", (double)v->word_logprob[t]);
            if (!st) st = put_html(f, v->words[t]);
            fprintf(f, "<small>%.2f</small></span> ", p);
        }
        fprintf(f, "</div>\n<p class=\"help\">Click a word, or use &larr; &rarr; (Home, End, Escape) to step; space "
                   "plays. Small numbers: each word's probability given the words before it.</p>\n"
                   "<script>\n%s</script>\n</body>\n</html>\n",
                html_script);
        if (st) {
            cli_message("attend", "cannot write %s: %s", path, sac_strerror(st));
            sac_output_discard(out);
        } else {
            st = sac_output_close(out); /* a write error is logged, naming the file */
        }
    }
    sac_image_free(&view);
    return st;
}

/* The numbers as JSON (one object, pretty-printed) to path ("-" = stdout). */
static int write_json(const char *path, const char *image, const AttendView *v)
{
    cJSON *o = attend_view_json(image, v);
    char *text = o ? cJSON_PrintBuffered(o, 1 << 16, 0) : NULL;
    cJSON_Delete(o);
    if (!text) {
        cli_message("attend", "cannot write %s: %s", path, sac_strerror(SAC_ERR_NOMEM));
        return SAC_ERR_NOMEM;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the terminator: the buffer is written by length */
    int st = sac_output_write_file(path, text, n + 1, 0); /* a write error is logged, naming the file */
    free(text);
    return st;
}

/* 1 when a and b name one regular file (existing, or not yet: the same name). Two names of a
 * device (/dev/null) are fine. */
static int same_output(const char *a, const char *b)
{
    struct stat sb;
    if (!a || !b || !strcmp(a, "-") || !strcmp(b, "-")) return 0;
    if (stat(a, &sb) == 0) return S_ISREG(sb.st_mode) && sac_same_file(a, b);
    return !strcmp(a, b);
}

enum { O_MODEL = 256, O_PANEL, O_COLUMNS, O_HTML, O_JSON, O_PROBS, O_FONT };

int cmd_attend(int argc, char **argv)
{
    struct option longopts[13 + CLI_DEC_MAX_OPTIONS] = {
        {"model", 1, 0, O_MODEL}, {"panel", 1, 0, O_PANEL}, {"columns", 1, 0, O_COLUMNS},
        {"output", 1, 0, 'o'}, {"html", 1, 0, O_HTML}, {"json", 1, 0, O_JSON}, {"probs", 0, 0, O_PROBS},
        {"font", 1, 0, O_FONT}, {"threads", 1, 0, CLI_OPT_THREADS}, {"quiet", 0, 0, CLI_OPT_QUIET},
        {"help", 0, 0, CLI_OPT_HELP}};
    cli_decode_longopts(ATTEND_DECODING, longopts + 11);
    const char *model_path = NULL, *out_png = NULL, *out_html = NULL, *out_json = NULL, *font_path = NULL;
    long panel = 256, columns = 6, threads = 0;
    CliDecode dec;
    cli_decode_defaults(&dec);
    int quiet = 0, probs = 0, c, status;
    optind = 1;
    opterr = 0;
    while ((c = cli_getopt(argc, argv, ":ho:", longopts, &dec)) != -1) {
        switch (c) {
        case CLI_DEC_USAGE: return CLI_USAGE;
        case O_MODEL: model_path = optarg; break;
        case O_PANEL:
            if (cli_parse_int("--panel", optarg, 16, 1024, &panel)) return CLI_USAGE;
            break;
        case O_COLUMNS:
            if (cli_parse_int("--columns", optarg, 1, 256, &columns)) return CLI_USAGE;
            break;
        case 'o': out_png = optarg; break;
        case O_HTML: out_html = optarg; break;
        case O_JSON: out_json = optarg; break;
        case O_PROBS: probs = 1; break;
        case O_FONT: font_path = optarg; break;
        default:
            if ((status = cli_common_option("attend", c, argv, help, &threads, &quiet)) != CLI_MORE) return status;
        }
    }
    if (optind >= argc) return cli_usage_error("attend", "no image given");
    if (argc - optind > 1) return cli_usage_error("attend", "one image at a time, found %d", argc - optind);
    if (!out_png && !out_html && !out_json)
        return cli_usage_error("attend", "nothing to write: give -o OUT.png, --html OUT.html and/or --json OUT.json");
    const char *image = argv[optind];
    if (same_output(out_png, out_html) || same_output(out_png, out_json) || same_output(out_html, out_json))
        return cli_usage_error("attend", "-o, --html and --json must name different files");
    if ((out_png && !strcmp(out_png, "-")) || (out_html && !strcmp(out_html, "-")))
        return cli_usage_error("attend", "only --json may write to stdout ('-')");
    if (!(model_path = cli_find_model(model_path, argv[0]))) return CLI_FAILED;
    const char *inputs[] = {image, model_path, font_path};
    if (sac_output_check_inputs(out_png, "-o", inputs, 3) || sac_output_check_inputs(out_html, "--html", inputs, 3) ||
        sac_output_check_inputs(out_json, "--json", inputs, 3))
        return CLI_USAGE;

    AttentionFont *own_font = NULL;
    AttentionDrawOptions dopt = attention_draw_defaults();
    dopt.panel_size = (int)panel, dopt.columns = (int)columns;
    if (font_path && !strcmp(font_path, "builtin")) {
        dopt.font = NULL;
    } else if (font_path) {
        if (!(own_font = attention_font_load(font_path))) return CLI_FAILED; /* logged, naming the file */
        dopt.font = own_font;
    } else if (out_png && !dopt.font && !quiet) {
        cli_message("attend", "note: %s", attention_font_default_note());
    }

    saccade_model *m = cli_model_open("attend", model_path, argv[0], quiet, threads, dec.max_len, &status);
    if (!m) {
        attention_font_free(own_font);
        return status;
    }
    saccade_options opt;
    cli_decode_options(&dec, &opt);

    int rc = CLI_FAILED;
    saccade_image photo = {0}, input = {0};
    SacImage fig = {0};
    AttendView v = {0};
    saccade_captioner *cp = NULL;
    /* The model's input decoded as `saccade caption` decodes it (a large JPEG at 1/2, 1/4 or 1/8
     * size), so the caption is the same; the photo shown is at least the page's or a panel's
     * side, from the same decode when it is large enough, else decoded again less scaled. */
    const int view_side = SAC_MAX(HTML_SIDE, (int)panel);
    if (saccade_image_load(image, saccade_model_input_size(m), &input, NULL, 0)) goto done; /* logged, naming the file */
    if (input.width >= view_side && input.height >= view_side) photo = input, input = (saccade_image){0};
    else if (saccade_image_load(image, view_side, &photo, NULL, 0)) goto done;
    if (!(cp = saccade_captioner_create(m))) goto done;
    int st = attend_view_run(cp, input.rgb ? &input : &photo, &opt, &v);
    if (st) {
        cli_message("attend", "%s: decoding failed: %s", image, saccade_strerror(st));
        goto done;
    }
    const SacImage shown = {photo.width, photo.height, photo.rgb}; /* rows of 3 * width bytes */
    if (out_png) {
        uint8_t *png = NULL;
        size_t len = 0;
        if (probs) dopt.word_logprob = v.word_logprob;
        st = attention_draw_figure(&shown, v.alphas, v.n, v.grid_h, v.grid_w, v.words, &dopt, &fig);
        if (!st) st = cli_png_encode(fig.rgb, fig.w, fig.h, 3, fig.w * 3, &png, &len);
        if (st) cli_message("attend", "cannot draw %s: %s", out_png, sac_strerror(st));
        else st = sac_output_write_file(out_png, png, len, 0); /* a write error is logged, naming the file */
        free(png);
        if (st) goto done;
    }
    if (out_html && write_html(out_html, image, &shown, &v, opt.beam)) goto done;
    if (out_json && write_json(out_json, image, &v)) goto done;
    if (!out_json || strcmp(out_json, "-")) {
        cli_put_tsv_path(stdout, image);
        printf("\t%s\n", v.text);
    }
    rc = CLI_OK;
done:
    attend_view_clear(&v);
    sac_image_free(&fig);
    saccade_image_free(&photo);
    saccade_image_free(&input);
    saccade_captioner_free(cp);
    saccade_model_free(m);
    attention_font_free(own_font);
    return rc;
}
