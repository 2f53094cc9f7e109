/*
 * cli_helper.c - tiny tools for the command-line test (test_cli.sh), independent of saccade:
 *
 *   cli_helper data DIR            write 6 small distinct PNG images and DIR/captions.tsv
 *                                  (one caption each), plus bad inputs (empty.png, truncated.png,
 *                                  notes.png: text) and the first image again as BMP and JPEG
 *   cli_helper size FILE           print "W H" of an image file
 *   cli_helper count FILE R G B D  print how many pixels have every channel within D of (R, G, B)
 *   cli_helper json FILE           check that every line of FILE is valid UTF-8 and one JSON object
 *                                  (cJSON); print each object's "image" string, one per line
 *
 * Exit status 0 on success, 1 on failure (message on stderr).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <stb_image.h>
#include <stb_image_write.h>

#include "helperutil.h"

#define SIDE 32

typedef struct {
    const char *file, *caption;
} Sample;

static const Sample samples[] = {
    {"red.png", "A red square on black."},
    {"green.png", "a green circle on white"},
    {"blue.png", "blue stripes on white"},
    {"yellow.png", "yellow on the left"},
    {"cross.png", "a white cross on black"},
    {"checker.png", "a purple checker board"},
};
#define N_SAMPLES (int)(sizeof(samples) / sizeof(samples[0]))

static void put(uint8_t *img, int x, int y, int r, int g, int b)
{
    uint8_t *p = img + (y * SIDE + x) * 3;
    p[0] = (uint8_t)r, p[1] = (uint8_t)g, p[2] = (uint8_t)b;
}

/* Pixel (x, y) of sample k. */
static void paint(uint8_t *img, int k)
{
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < SIDE; x++) {
            int dx = x - SIDE / 2, dy = y - SIDE / 2;
            switch (k) {
            case 0: /* red square on black */
                if (x >= 8 && x < 24 && y >= 8 && y < 24) put(img, x, y, 230, 20, 20);
                else put(img, x, y, 0, 0, 0);
                break;
            case 1: /* green circle on white */
                if (dx * dx + dy * dy < 100) put(img, x, y, 20, 200, 40);
                else put(img, x, y, 255, 255, 255);
                break;
            case 2: /* blue stripes on white */
                if ((y / 4) % 2) put(img, x, y, 20, 40, 220);
                else put(img, x, y, 255, 255, 255);
                break;
            case 3: /* yellow left half */
                if (x < SIDE / 2) put(img, x, y, 240, 220, 20);
                else put(img, x, y, 0, 0, 0);
                break;
            case 4: /* white cross on black */
                if (abs(dx) < 3 || abs(dy) < 3) put(img, x, y, 255, 255, 255);
                else put(img, x, y, 0, 0, 0);
                break;
            default: /* purple / cyan checker board */
                if (((x / 8) + (y / 8)) % 2) put(img, x, y, 160, 30, 200);
                else put(img, x, y, 40, 220, 220);
                break;
            }
        }
    }
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "cli_helper: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

static int make_data(const char *dir)
{
    char path[4096];
    uint8_t img[SIDE * SIDE * 3];
    snprintf(path, sizeof(path), "%s/captions.tsv", dir);
    FILE *tsv = fopen(path, "w");
    if (!tsv) {
        fprintf(stderr, "cli_helper: cannot write %s\n", path);
        return 1;
    }
    fprintf(tsv, "# image<TAB>caption\n");
    for (int k = 0; k < N_SAMPLES; k++) {
        paint(img, k);
        snprintf(path, sizeof(path), "%s/%s", dir, samples[k].file);
        if (!stbi_write_png(path, SIDE, SIDE, 3, img, SIDE * 3)) {
            fprintf(stderr, "cli_helper: cannot write %s\n", path);
            fclose(tsv);
            return 1;
        }
        fprintf(tsv, "%s\t%s\n", samples[k].file, samples[k].caption);
    }
    if (fclose(tsv)) return 1;

    /* the first image in two more formats */
    paint(img, 0);
    snprintf(path, sizeof(path), "%s/red.bmp", dir);
    if (!stbi_write_bmp(path, SIDE, SIDE, 3, img)) return 1;
    snprintf(path, sizeof(path), "%s/red.jpg", dir);
    if (!stbi_write_jpg(path, SIDE, SIDE, 3, img, 95)) return 1;

    /* bad inputs: empty, truncated PNG (first 60 bytes of a real one), text named .png */
    snprintf(path, sizeof(path), "%s/empty.png", dir);
    if (write_file(path, "", 0)) return 1;
    snprintf(path, sizeof(path), "%s/green.png", dir);
    FILE *f = fopen(path, "rb");
    unsigned char head[60];
    size_t n = f ? fread(head, 1, sizeof(head), f) : 0;
    if (f) fclose(f);
    snprintf(path, sizeof(path), "%s/truncated.png", dir);
    if (n != sizeof(head) || write_file(path, head, n)) return 1;
    snprintf(path, sizeof(path), "%s/notes.png", dir);
    const char *text = "this is a text file, not an image\n";
    return write_file(path, text, strlen(text));
}

static int check_json_lines(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cli_helper: cannot open %s\n", path);
        return 1;
    }
    char line[65536];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        ln++;
        size_t n = strlen(line);
        if (!utf8_ok((const unsigned char *)line, n)) {
            fprintf(stderr, "cli_helper: %s:%d: not valid UTF-8\n", path, ln);
            rc = 1;
            continue;
        }
        cJSON *j = cJSON_Parse(line);
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "image");
        if (!cJSON_IsObject(j) || !cJSON_IsString(im)) {
            fprintf(stderr, "cli_helper: %s:%d: not a JSON object with an \"image\" string\n", path, ln);
            rc = 1;
        } else {
            printf("%s\n", im->valuestring);
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "json")) return check_json_lines(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "data")) return make_data(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "size")) {
        int w, h, c;
        if (!stbi_info(argv[2], &w, &h, &c)) {
            fprintf(stderr, "cli_helper: %s: not an image\n", argv[2]);
            return 1;
        }
        printf("%d %d\n", w, h);
        return 0;
    }
    if (argc == 7 && !strcmp(argv[1], "count")) {
        int w, h, c;
        uint8_t *px = stbi_load(argv[2], &w, &h, &c, 3);
        if (!px) {
            fprintf(stderr, "cli_helper: %s: not an image\n", argv[2]);
            return 1;
        }
        int ref[3] = {atoi(argv[3]), atoi(argv[4]), atoi(argv[5])}, d = atoi(argv[6]);
        long count = 0;
        for (long i = 0; i < (long)w * h; i++)
            count += abs(px[i * 3] - ref[0]) <= d && abs(px[i * 3 + 1] - ref[1]) <= d && abs(px[i * 3 + 2] - ref[2]) <= d;
        stbi_image_free(px);
        printf("%ld\n", count);
        return 0;
    }
    fprintf(stderr, "usage: cli_helper data DIR | size FILE | count FILE R G B D | json FILE\n");
    return 2;
}
