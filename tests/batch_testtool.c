/*
 * batch_testtool.c - helper of tests/test_batch.sh: writes small test images and reads back the
 * result files of `saccade batch`, so the shell test needs neither network nor Python.
 *
 *   batch_testtool images DIR COUNT SIZE EXT[,EXT...] [PREFIX]
 *       writes DIR/PREFIX%03d.EXT (COUNT images, SIZE x SIZE, formats png/jpg/bmp/tga cycling),
 *       each a different pattern of colours
 *   batch_testtool read jsonl|tsv|coco|html FILE
 *       checks every record and prints one line per record: "ok<TAB>KEY<TAB>CAPTION" or
 *       "err<TAB>KEY" (KEY: the image path; coco: the image_id); exit 1 when the file is malformed
 *       (jsonl, coco, html: also when it is not valid UTF-8, as JSON must be).
 *       html: every inlined data:image/png;base64 picture must decode; prints "pictures<TAB>N" last.
 *
 * Size letters: none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <stb_image.h>
#include <stb_image_write.h>

#include "helperutil.h"

static int fail(const char *file, long line, const char *why)
{
    fprintf(stderr, "batch_testtool: %s:%ld: %s\n", file, line, why);
    return 1;
}

static int make_images(const char *dir, int count, int size, const char *exts, const char *prefix)
{
    char ext[8][8];
    int n_ext = 0;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", exts);
    for (char *t = strtok(buf, ","); t && n_ext < 8; t = strtok(NULL, ",")) snprintf(ext[n_ext++], 8, "%s", t);
    unsigned char *px = malloc((size_t)size * size * 3);
    if (!px || n_ext == 0) return 1;
    for (int i = 0; i < count; i++) {
        /* a few colour / stripe patterns so that captions can differ */
        unsigned r = (unsigned)(37 * i + 11) % 256, g = (unsigned)(91 * i + 53) % 256, b = (unsigned)(53 * i) % 256;
        int stripe = 2 + i % 5;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                unsigned char *p = px + ((size_t)y * size + x) * 3;
                int on = ((i % 2 ? x : y) / stripe) % 2;
                p[0] = (unsigned char)(on ? r : 255 - r), p[1] = (unsigned char)(on ? g : b),
                p[2] = (unsigned char)(on ? b : g);
            }
        const char *e = ext[i % n_ext];
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s%03d.%s", dir, prefix, i, e);
        int ok = !strcmp(e, "png")   ? stbi_write_png(path, size, size, 3, px, size * 3)
                 : !strcmp(e, "jpg") ? stbi_write_jpg(path, size, size, 3, px, 90)
                 : !strcmp(e, "bmp") ? stbi_write_bmp(path, size, size, 3, px)
                 : !strcmp(e, "tga") ? stbi_write_tga(path, size, size, 3, px)
                                     : 0;
        if (!ok) {
            fprintf(stderr, "batch_testtool: cannot write %s\n", path);
            free(px);
            return 1;
        }
    }
    free(px);
    return 0;
}

/* Decode base64 and check it is a PNG stb_image reads. */
static int png_ok(const char *b64, size_t n)
{
    unsigned char *out = malloc(n / 4 * 3 + 3);
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n && b64[i] != '='; i++) {
        const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = strchr(tab, b64[i]);
        if (!p || !b64[i]) return free(out), 0;
        v = v << 6 | (unsigned)(p - tab), bits += 6;
        if (bits >= 8) out[o++] = (unsigned char)(v >> (bits - 8)), bits -= 8;
    }
    int w, h, c;
    unsigned char *img = stbi_load_from_memory(out, (int)o, &w, &h, &c, 3);
    int ok = img && o > 8 && !memcmp(out, "\x89PNG", 4) && w > 0 && h > 0;
    stbi_image_free(img);
    free(out);
    return ok;
}

/* A JSON record of jsonl (or an html comment): print it. */
static int print_json_record(const char *file, long ln, const char *text)
{
    cJSON *j = cJSON_Parse(text);
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "image");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(j, "caption");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "logprob");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    int rc = 0;
    if (!cJSON_IsObject(j) || !cJSON_IsString(im)) rc = fail(file, ln, "not an object with a string \"image\"");
    else if (cJSON_IsString(err) && !cap && !lp && err->valuestring[0]) printf("err\t%s\n", im->valuestring);
    else if (cJSON_IsString(cap) && cJSON_IsNumber(lp) && !err && lp->valuedouble <= 0)
        printf("ok\t%s\t%s\n", im->valuestring, cap->valuestring);
    else rc = fail(file, ln, "expected caption + logprob <= 0, or a non-empty error");
    cJSON_Delete(j);
    return rc;
}

static int read_results(const char *fmt, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) return fail(file, 0, "cannot open");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long ln = 0, pictures = 0;
    int rc = 0, footer = 0, header = 0;
    if (!strcmp(fmt, "coco")) {
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *text = malloc((size_t)n + 1);
        size_t got = fread(text, 1, (size_t)n, f);
        text[got] = 0;
        cJSON *j = cJSON_Parse(text);
        if (!utf8_ok((const unsigned char *)text, got)) rc = fail(file, 0, "not valid UTF-8");
        else if (!cJSON_IsArray(j)) rc = fail(file, 0, "not a JSON array");
        const cJSON *el;
        cJSON_ArrayForEach(el, j)
        {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(el, "image_id");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(el, "caption");
            if (cJSON_GetArraySize(el) != 2 || !cJSON_IsString(c) || !(cJSON_IsString(id) || cJSON_IsNumber(id))) {
                rc = fail(file, 0, "element is not {\"image_id\", \"caption\"}");
                break;
            }
            if (cJSON_IsString(id)) printf("ok\t%s\t%s\n", id->valuestring, c->valuestring);
            else printf("ok\t%.0f\t%s\n", id->valuedouble, c->valuestring);
        }
        cJSON_Delete(j);
        free(text);
        fclose(f);
        return rc;
    }
    while (!rc && (len = getline(&line, &cap, f)) > 0) {
        ln++;
        if (line[len - 1] != '\n') {
            rc = fail(file, ln, "last line has no newline");
            break;
        }
        line[--len] = 0;
        if (strcmp(fmt, "tsv") && !utf8_ok((const unsigned char *)line, (size_t)len)) {
            rc = fail(file, ln, "not valid UTF-8");
            break;
        }
        if (!strcmp(fmt, "jsonl")) {
            rc = print_json_record(file, ln, line);
        } else if (!strcmp(fmt, "tsv")) {
            char *t = strchr(line, '\t');
            if (!t || t == line) rc = fail(file, ln, "no path<TAB>");
            else if (t[1] == '\t' && !strncmp(t + 2, "error=", 6) && t[8]) printf("err\t%.*s\n", (int)(t - line), line);
            else if (t[1] != '\t' && !strchr(t + 1, '\t')) printf("ok\t%.*s\t%s\n", (int)(t - line), line, t + 1);
            else rc = fail(file, ln, "expected path<TAB>caption or path<TAB><TAB>error=...");
        } else if (!strcmp(fmt, "html")) {
            if (footer) rc = fail(file, ln, "text after the footer");
            if (!strcmp(line, "</div></body></html>")) footer = 1;
            else if (!strncmp(line, "<!--{", 5)) {
                char *end = strstr(line, "}-->");
                if (!end || !header) {
                    rc = fail(file, ln, "record comment without end or before the header");
                    break;
                }
                end[1] = 0;
                rc = print_json_record(file, ln, line + 4);
                const char *key = "src=\"data:image/png;base64,";
                for (char *p = strstr(end + 2, key); p && !rc; p = strstr(p, key)) {
                    p += strlen(key);
                    char *q = strchr(p, '"');
                    if (!q || !png_ok(p, (size_t)(q - p))) rc = fail(file, ln, "an inlined PNG does not decode");
                    pictures++;
                }
                if (!strstr(end + 2, "<figure") || !strstr(end + 2, "</figure>")) rc = fail(file, ln, "no <figure>");
            } else if (strstr(line, "<div class=\"g\">")) {
                header = 1;
            }
        } else {
            rc = fail(file, ln, "unknown format");
        }
    }
    if (!rc && !strcmp(fmt, "html")) {
        if (!footer) rc = fail(file, ln, "no footer");
        printf("pictures\t%ld\n", pictures);
    }
    free(line);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && !strcmp(argv[1], "images"))
        return make_images(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5], argc > 6 ? argv[6] : "img");
    if (argc == 4 && !strcmp(argv[1], "read")) return read_results(argv[2], argv[3]);
    fprintf(stderr, "usage: batch_testtool images DIR COUNT SIZE EXTS [PREFIX] | read FORMAT FILE\n");
    return 2;
}
