/*
 * test_dataset.c - every dataset reader on tiny files written into a mkdtemp directory:
 * Flickr token file + split lists, Karpathy JSON with split filters, COCO captions JSON,
 * the captions.tsv folder and datasets built in code; format detection by dataset_open;
 * dropping images whose file is missing/empty/unreadable with one report; errors naming
 * the file and line; a 40k-line token file parsed well under a second.
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "checkrun.h"
#include "dataset.h"
#include "sac.h"
#include "vocab.h"

/* ---- log capture ---- */

static char log_text[16384];
static int log_errors, log_warnings;

static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_ERROR) log_errors++;
    if (level == SAC_LOG_WARN) log_warnings++;
    size_t l = strlen(log_text);
    snprintf(log_text + l, sizeof(log_text) - l, "%s\n", msg);
}

static void log_capture(void)
{
    log_text[0] = '\0';
    log_errors = log_warnings = 0;
    sac_log_set_sink(log_sink, NULL);
}

static void log_release(void) { sac_log_set_sink(NULL, NULL); }

#define ck_assert_log_has(s) \
    ck_assert_msg(strstr(log_text, (s)) != NULL, "'%s' not in log: %s", (s), log_text)

/* ---- a temporary directory per test ---- */

static char tmp_dir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void tmp_setup(void)
{
    strcpy(tmp_dir, "/tmp/sac_test_dataset_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void tmp_teardown(void)
{
    nftw(tmp_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    log_release();
}

/* tmp_dir/rel, in a static ring of buffers so a few can be alive at once. */
static const char *tmp_path(const char *rel)
{
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tmp_dir, rel);
    return b;
}

static void write_file(const char *rel, const char *text)
{
    FILE *f = fopen(tmp_path(rel), "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *rel) { ck_assert_int_eq(mkdir(tmp_path(rel), 0755), 0); }

/* A 3x2 RGB PNG. */
static void write_png(const char *rel)
{
    unsigned char px[3 * 2 * 3];
    for (int i = 0; i < (int)sizeof(px); i++) px[i] = (unsigned char)(i * 13);
    ck_assert_int_ne(stbi_write_png(tmp_path(rel), 3, 2, 3, px, 3 * 3), 0);
}

static void expect_captions(const DatasetItem *it, const char *name, int n, const char *const *caps)
{
    ck_assert_str_eq(it->name, name);
    ck_assert_int_eq(it->n_captions, n);
    for (int i = 0; i < n; i++) ck_assert_str_eq(it->captions[i], caps[i]);
}

/* ---- Flickr ---- */

static const char *FLICKR_TOKENS =
    "a.jpg#0\tA dog runs .\n"
    "a.jpg#1\tA brown dog .\r\n"
    "b.jpg#0\tTwo cats sit .\n"
    "\n"
    "c.jpg#0\t A child plays . \n"
    "b.jpg#1\tCats on a mat .\n"
    "c.jpg#1\t   \n";

START_TEST(test_flickr_split_list_order)
{
    write_file("tokens.txt", FLICKR_TOKENS);
    write_file("list.txt", "c.jpg\r\n\nb.jpg\n  a.jpg  \nb.jpg\n");
    log_capture();
    Dataset *ds = dataset_load_flickr(tmp_path("tokens.txt"), tmp_path("list.txt"), "/imgs");
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->format, SAC_DATASET_FLICKR);
    ck_assert_int_eq(ds->n_items, 3);
    const char *cc[] = {"A child plays ."}, *cb[] = {"Two cats sit .", "Cats on a mat ."};
    const char *ca[] = {"A dog runs .", "A brown dog ."};
    expect_captions(&ds->items[0], "c.jpg", 1, cc);
    expect_captions(&ds->items[1], "b.jpg", 2, cb);
    expect_captions(&ds->items[2], "a.jpg", 2, ca);
    ck_assert_str_eq(ds->items[0].image_path, "/imgs/c.jpg");
    ck_assert_int_eq(ds->items[0].image_id, -1);
    ck_assert_int_eq(dataset_n_captions(ds), 5);
    ck_assert_int_eq(dataset_find(ds, "a.jpg"), 2);
    ck_assert_int_eq(dataset_find(ds, "zzz.jpg"), -1);
    /* one report for the repeated list entry, one for the empty caption */
    ck_assert_int_eq(log_warnings, 2);
    ck_assert_log_has("listed twice");
    ck_assert_log_has("tokens.txt: skipped 1 empty caption(s) (first on line 7)");
    dataset_free(ds);

    /* a list naming an image without captions: dropped with a report */
    write_file("list2.txt", "b.jpg\nghost.jpg\n");
    log_capture();
    ds = dataset_load_flickr(tmp_path("tokens.txt"), tmp_path("list2.txt"), NULL);
    ck_assert_int_eq(ds->n_items, 1);
    ck_assert_str_eq(ds->items[0].image_path, "b.jpg");
    ck_assert_log_has("ghost.jpg");
    dataset_free(ds);

    /* without a list: every image, in order of first appearance */
    ds = dataset_load_flickr(tmp_path("tokens.txt"), NULL, NULL);
    ck_assert_int_eq(ds->n_items, 3);
    ck_assert_str_eq(ds->items[0].name, "a.jpg");
    ck_assert_str_eq(ds->items[1].name, "b.jpg");
    ck_assert_str_eq(ds->items[2].name, "c.jpg");
    dataset_free(ds);
    dataset_free(NULL);
}
END_TEST

START_TEST(test_flickr_open_dir_splits)
{
    write_file("Flickr8k.token.txt", FLICKR_TOKENS);
    write_file("Flickr_8k.trainImages.txt", "a.jpg\nb.jpg\n");
    write_file("Flickr_8k.devImages.txt", "c.jpg\n");
    make_dir("images");
    log_capture();
    Dataset *ds = dataset_open(tmp_dir, "train", NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, 2);
    ck_assert_str_eq(ds->items[1].image_path, tmp_path("images/b.jpg"));
    dataset_free(ds);
    ds = dataset_open(tmp_path("Flickr8k.token.txt"), "val", NULL);
    ck_assert_int_eq(ds->n_items, 1);
    ck_assert_str_eq(ds->items[0].name, "c.jpg");
    dataset_free(ds);
    ds = dataset_open(tmp_dir, "all", "/else");
    ck_assert_int_eq(ds->n_items, 3);
    ck_assert_str_eq(ds->items[0].image_path, "/else/a.jpg");
    dataset_free(ds);
    /* a split given as a list file beside the token file */
    write_file("mine.txt", "b.jpg\n");
    ds = dataset_open(tmp_dir, "mine.txt", NULL);
    ck_assert_int_eq(ds->n_items, 1);
    dataset_free(ds);

    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_dir, "bogus", NULL));
    ck_assert_log_has("Flickr8k.token.txt: unknown split 'bogus'");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_dir, "test", NULL));
    ck_assert_log_has("Flickr_8k.testImages.txt");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

START_TEST(test_flickr_malformed)
{
    write_file("t1.txt", "a.jpg#0\tok .\na.jpg#1 no tab here\n");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("t1.txt"), NULL, NULL));
    ck_assert_log_has("t1.txt:2: expected '<image>#<n><TAB><caption>', found 'a.jpg#1 no tab");
    write_file("t2.txt", "\n\na.jpg\tno hash\n");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("t2.txt"), NULL, NULL));
    ck_assert_log_has("t2.txt:3:");
    write_file("t3.txt", "a.jpg#x\tnot a number\n");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("t3.txt"), NULL, NULL));
    ck_assert_log_has("t3.txt:1:");
    write_file("t4.txt", "\n \n");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("t4.txt"), NULL, NULL));
    ck_assert_log_has("t4.txt: expected");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("missing.txt"), NULL, NULL));
    ck_assert_log_has("missing.txt: no such file");
    write_file("t5.txt", "a.jpg#0\tok\n");
    write_file("empty_list.txt", "\n\n");
    log_capture();
    ck_assert_ptr_null(dataset_load_flickr(tmp_path("t5.txt"), tmp_path("empty_list.txt"), NULL));
    ck_assert_log_has("empty_list.txt: expected image names");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("nowhere"), NULL, NULL));
    ck_assert_log_has("nowhere: cannot open dataset");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_dir, NULL, NULL)); /* a folder with no known file */
    ck_assert_log_has("captions.tsv, Flickr8k.token.txt");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

START_TEST(test_check_images_drops_missing)
{
    /* as in the shared Flickr8k: keys whose image does not exist ("x.jpg" and "x.jpg.1"),
     * plus an empty file and a file that is no image */
    make_dir("images");
    write_png("images/a.png");
    write_png("images/b.png");
    write_png("images/d.png");
    write_file("images/empty.png", "");
    write_file("images/text.png", "this is not a png at all");
    write_file("Flickr8k.token.txt",
               "a.png#0\tone .\nx.jpg.1#0\tghost one .\nx.jpg#1\tghost two .\nx.jpg#2\tghost 3\n"
               "b.png#0\ttwo .\nempty.png#0\tzero bytes\ntext.png#0\ttext\nd.png#0\tfour .\n");
    Dataset *ds = dataset_open(tmp_dir, NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, 7);
    log_capture();
    ck_assert_int_eq(dataset_check_images(ds), 4);
    ck_assert_int_eq(log_warnings, 1);
    ck_assert_int_eq(log_errors, 0);
    ck_assert_log_has("dropped 4 of 7 images (5 captions)");
    ck_assert_log_has("x.jpg.1 (missing), x.jpg (missing), empty.png (empty file), "
                      "text.png (not a readable image)");
    ck_assert_int_eq(ds->n_items, 3);
    ck_assert_str_eq(ds->items[0].name, "a.png");
    ck_assert_str_eq(ds->items[1].name, "b.png");
    ck_assert_str_eq(ds->items[2].name, "d.png");
    ck_assert_int_eq(dataset_find(ds, "d.png"), 2);
    ck_assert_int_eq(dataset_find(ds, "x.jpg"), -1);
    /* a second check finds nothing and says nothing */
    log_capture();
    ck_assert_int_eq(dataset_check_images(ds), 0);
    ck_assert_int_eq(log_warnings, 0);
    dataset_free(ds);
}
END_TEST

START_TEST(test_check_images_report_is_short)
{
    Dataset *ds = dataset_create(NULL, tmp_dir);
    char name[32];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "gone%02d.jpg", i);
        int idx = dataset_add_item(ds, name, i);
        ck_assert_int_eq(idx, i);
        ck_assert_int_eq(dataset_add_caption(ds, idx, "a caption"), 0);
    }
    log_capture();
    ck_assert_int_eq(dataset_check_images(ds), 50);
    ck_assert_int_eq(log_warnings, 1);
    ck_assert_log_has("gone04.jpg (missing), ...");
    ck_assert_ptr_null(strstr(log_text, "gone05.jpg"));
    ck_assert_int_eq(ds->n_items, 0);
    dataset_free(ds);
}
END_TEST

START_TEST(test_flickr_parse_speed)
{
    /* 8,000 images x 5 captions = 40,000 lines, the size of Flickr8k.token.txt */
    FILE *f = fopen(tmp_path("big.token.txt"), "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8000; i++)
        for (int k = 0; k < 5; k++)
            fprintf(f, "%010d_%04x.jpg#%d\tA dog number %d runs across the green grass with a "
                       "red ball in its mouth .\n", i * 7919, i, k, k);
    fclose(f);
    double t0 = sac_time();
    Dataset *ds = dataset_open(tmp_path("big.token.txt"), NULL, "/img");
    double dt = sac_time() - t0;
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, 8000);
    ck_assert_int_eq(dataset_n_captions(ds), 40000);
    ck_assert_int_eq(ds->items[7999].n_captions, 5);
    printf("parsed 40,000 token lines in %.3f s\n", dt);
    /* real time is ~0.015 s; the bound catches quadratic grouping, not noise */
    ck_assert_msg(dt < 1.0, "parsing 40k lines took %.3f s", dt);
    dataset_free(ds);
}
END_TEST

/* ---- Karpathy ---- */

static const char *KARPATHY_JSON =
    "{\"dataset\": \"coco\", \"images\": [\n"
    " {\"filepath\": \"val2014\", \"filename\": \"v1.jpg\", \"split\": \"val\", \"cocoid\": 42,\n"
    "  \"imgid\": 0, \"sentences\": [{\"raw\": \"A cat .\", \"tokens\": [\"a\", \"cat\"]},\n"
    "  {\"raw\": \" Cat on a bed \", \"tokens\": []}]},\n"
    " {\"filepath\": \"train2014\", \"filename\": \"t1.jpg\", \"split\": \"train\", \"imgid\": 1,\n"
    "  \"sentences\": [{\"tokens\": [\"a\", \"dog\", \"runs\"]}]},\n"
    " {\"filename\": \"r1.jpg\", \"split\": \"restval\", \"imgid\": 2,\n"
    "  \"sentences\": [{\"raw\": \"Rest .\"}]},\n"
    " {\"filename\": \"x1.jpg\", \"split\": \"test\", \"imgid\": 3,\n"
    "  \"sentences\": [{\"raw\": \"Test one .\"}, {\"raw\": \"Test two .\"}]}\n"
    "]}\n";

START_TEST(test_karpathy_splits)
{
    write_file("dataset_coco.json", KARPATHY_JSON);
    const char *path = tmp_path("dataset_coco.json");
    Dataset *ds = dataset_open(path, "val", "/coco");
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->format, SAC_DATASET_KARPATHY);
    ck_assert_int_eq(ds->n_items, 1);
    const char *cv[] = {"A cat .", "Cat on a bed"};
    expect_captions(&ds->items[0], "val2014/v1.jpg", 2, cv);
    ck_assert_str_eq(ds->items[0].image_path, "/coco/val2014/v1.jpg");
    ck_assert_int_eq(ds->items[0].image_id, 42); /* cocoid wins over imgid */
    dataset_free(ds);

    ds = dataset_load_karpathy(path, "train+restval", "/coco");
    ck_assert_int_eq(ds->n_items, 2);
    const char *ct[] = {"a dog runs"}; /* no "raw": the tokens joined */
    expect_captions(&ds->items[0], "train2014/t1.jpg", 1, ct);
    ck_assert_int_eq(ds->items[0].image_id, 1);
    ck_assert_str_eq(ds->items[1].image_path, "/coco/r1.jpg");
    dataset_free(ds);

    ds = dataset_load_karpathy(path, NULL, NULL);
    ck_assert_int_eq(ds->n_items, 4);
    ck_assert_int_eq(dataset_n_captions(ds), 6);
    dataset_free(ds);

    /* default image dir: the JSON's directory, or its images/ when that exists */
    ds = dataset_open(path, "test", NULL);
    ck_assert_str_eq(ds->items[0].image_path, tmp_path("x1.jpg"));
    dataset_free(ds);
    make_dir("images");
    ds = dataset_open(path, "test", NULL);
    ck_assert_str_eq(ds->items[0].image_path, tmp_path("images/x1.jpg"));
    dataset_free(ds);

    log_capture();
    ck_assert_ptr_null(dataset_open(path, "training", NULL));
    ck_assert_log_has("dataset_coco.json: unknown split 'training'");
    log_capture();
    ck_assert_ptr_null(dataset_load_karpathy(path, "train+", NULL));
    ck_assert_log_has("unknown split 'train+'");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

START_TEST(test_karpathy_malformed)
{
    write_file("k1.json", "{\"images\": [\n {\"filename\": \"a.jpg\",\n  \"split\": train}\n]}\n");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("k1.json"), NULL, NULL));
    ck_assert_log_has("k1.json:3:");
    ck_assert_log_has("JSON");
    write_file("k2.json", "{\"images\": [{\"filename\": \"a.jpg\", \"split\": \"train\", "
                          "\"sentences\": [{\"raw\": \"x\"}]}, {\"split\": \"train\"}]}");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("k2.json"), "train", NULL));
    ck_assert_log_has("k2.json: images[1]: expected a string 'filename'");
    write_file("k3.json", "{\"images\": [{\"filename\": \"a.jpg\", \"split\": \"val\", "
                          "\"sentences\": [{\"raw\": \"x\"}, {\"words\": 1}]}]}");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("k3.json"), NULL, NULL));
    ck_assert_log_has("k3.json: images[0].sentences[1]");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("k3.json"), "train", NULL));
    ck_assert_log_has("k3.json: expected images with captions in split 'train', found none");
    write_file("k4.json", "[1, 2]");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("k4.json"), NULL, NULL));
    ck_assert_log_has("k4.json: expected a COCO captions file");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

/* ---- COCO ---- */

START_TEST(test_coco_captions)
{
    write_file("captions_val2014.json",
               "{\"info\": {}, \"images\": [{\"id\": 5, \"file_name\": \"b.jpg\"},\n"
               " {\"id\": 7, \"file_name\": \"a.jpg\"}, {\"id\": 9, \"file_name\": \"n.jpg\"}],\n"
               " \"annotations\": [{\"image_id\": 7, \"id\": 1, \"caption\": \"A one.\\n\"},\n"
               "  {\"image_id\": 5, \"id\": 2, \"caption\": \"B one.\"},\n"
               "  {\"image_id\": 99, \"id\": 3, \"caption\": \"nobody\"},\n"
               "  {\"image_id\": 7, \"id\": 4, \"caption\": \"A two.\"}]}\n");
    const char *path = tmp_path("captions_val2014.json");
    log_capture();
    Dataset *ds = dataset_open(path, "val", "/coco/val2014");
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->format, SAC_DATASET_COCO);
    ck_assert_int_eq(ds->n_items, 2); /* n.jpg has no caption */
    const char *cb[] = {"B one."}, *ca[] = {"A one.", "A two."};
    expect_captions(&ds->items[0], "b.jpg", 1, cb);
    expect_captions(&ds->items[1], "a.jpg", 2, ca);
    ck_assert_int_eq(ds->items[0].image_id, 5);
    ck_assert_int_eq(ds->items[1].image_id, 7);
    ck_assert_str_eq(ds->items[1].image_path, "/coco/val2014/a.jpg");
    ck_assert_int_eq(log_warnings, 2);
    ck_assert_log_has("1 caption(s) whose image_id is not in 'images' (first: 99)");
    ck_assert_log_has("1 image(s) have no captions, skipped: n.jpg");
    dataset_free(ds);
    ds = dataset_load_coco(path, NULL);
    ck_assert_int_eq(ds->n_items, 2);
    ck_assert_str_eq(ds->items[0].image_path, "b.jpg");
    dataset_free(ds);

    log_capture();
    ck_assert_ptr_null(dataset_open(path, "train", NULL));
    ck_assert_log_has("captions_val2014.json: unknown split 'train'");
    write_file("c2.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}], "
                          "\"annotations\": [{\"image_id\": \"1\", \"caption\": \"x\"}]}");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("c2.json"), NULL, NULL));
    ck_assert_log_has("c2.json: annotations[0].image_id: expected an integer id in 0..2^53, "
                      "found a string");
    write_file("c3.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}, {\"id\": 1, "
                          "\"file_name\": \"b.jpg\"}], \"annotations\": []}");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("c3.json"), NULL, NULL));
    ck_assert_log_has("c3.json: images[1]: id 1 repeats images[0]");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

/* ---- plain folder ---- */

START_TEST(test_tsv_folder)
{
    make_dir("photos");
    write_file("captions.tsv", "# my photos\n"
                               "photos/one.png\tA red ball .\r\n"
                               "\n"
                               "two.png\tA blue cup\n"
                               "photos/one.png\t A ball on grass\n"
                               "two.png\t\n");
    log_capture();
    Dataset *ds = dataset_open(tmp_dir, NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->format, SAC_DATASET_TSV);
    ck_assert_int_eq(ds->n_items, 2);
    const char *c1[] = {"A red ball .", "A ball on grass"}, *c2[] = {"A blue cup"};
    expect_captions(&ds->items[0], "photos/one.png", 2, c1);
    expect_captions(&ds->items[1], "two.png", 1, c2);
    ck_assert_str_eq(ds->items[0].image_path, tmp_path("photos/one.png"));
    ck_assert_log_has("skipped 1 empty caption(s) (first on line 6)");
    dataset_free(ds);
    /* the file itself, or another image dir */
    ds = dataset_open(tmp_path("captions.tsv"), "all", "/else");
    ck_assert_str_eq(ds->items[1].image_path, "/else/two.png");
    dataset_free(ds);

    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_dir, "train", NULL));
    ck_assert_log_has("unknown split 'train'");
    write_file("bad.tsv", "a.png\tok\nb.png no tab\n");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("bad.tsv"), NULL, NULL));
    ck_assert_log_has("bad.tsv:2: expected '<image path><TAB><caption>', found 'b.png no tab'");
    write_file("bad2.tsv", "\t caption without a path\n");
    log_capture();
    ck_assert_ptr_null(dataset_load_tsv(tmp_path("bad2.tsv"), NULL));
    ck_assert_log_has("bad2.tsv:1:");
    ck_assert_int_eq(log_errors, 1);
}
END_TEST

/* ---- built in code ---- */

START_TEST(test_memory_dataset)
{
    Dataset *ds = dataset_create("unit", "/root/");
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(dataset_add_item(ds, "a.png", 3), 0);
    ck_assert_int_eq(dataset_add_item(ds, "/abs/b.png", -1), 1);
    ck_assert_int_eq(dataset_add_caption(ds, 0, "The dog's ball."), 0);
    ck_assert_int_eq(dataset_add_caption(ds, 0, "a dog"), 0);
    ck_assert_int_eq(dataset_add_caption(ds, 1, "A ball"), 0);
    ck_assert_str_eq(ds->items[0].image_path, "/root/a.png");
    ck_assert_str_eq(ds->items[1].image_path, "/abs/b.png");
    log_capture();
    ck_assert_int_eq(dataset_add_item(ds, "a.png", 4), SAC_ERR_INVALID);
    ck_assert_log_has("unit: image 'a.png' is already in the dataset");
    ck_assert_int_eq(dataset_add_item(ds, "", 4), SAC_ERR_INVALID);
    ck_assert_int_eq(dataset_add_caption(ds, 2, "x"), SAC_ERR_INVALID);
    log_release();
    /* many items: the name index grows */
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "n%d.png", i);
        ck_assert_int_eq(dataset_add_item(ds, name, i), i + 2);
    }
    ck_assert_int_eq(dataset_find(ds, "n777.png"), 779);
    ck_assert_int_eq(dataset_find(ds, "/abs/b.png"), 1);

    WordCounts *wc = word_counts_create();
    ck_assert_int_eq(dataset_count_words(ds, wc), 0);
    ck_assert_int_eq(word_counts_get(wc, "ball"), 2);
    ck_assert_int_eq(word_counts_get(wc, "dog"), 2);
    ck_assert_int_eq(word_counts_get(wc, "'s"), 1);
    ck_assert_int_eq(word_counts_size(wc), 5);
    word_counts_free(wc);
    ck_assert_str_eq(dataset_format_name(ds->format), "memory");
    dataset_free(ds);
}
END_TEST

/* ---- hostile captions and ids (issue 11) ---- */

/* A caption with invalid UTF-8 or a control character is skipped with a warning naming the
 * file and line (JSON: the element), counted in a summary; the other captions stay. Before,
 * such captions went into the vocabulary and made the model header invalid UTF-8, or aborted
 * training with no file or line named. */
START_TEST(test_bad_caption_text_skipped)
{
    write_file("t.txt", "a.jpg#0\tA dog runs .\n"
                        "a.jpg#1\tA caf\xe9 dog .\n"     /* Latin-1 */
                        "b.jpg#0\tTwo\x07 cats .\n"      /* BEL */
                        "b.jpg#1\tCats sit .\n"
                        "c.jpg#0\t\x1b[31mred\x1b[0m\n"); /* ANSI escapes only */
    log_capture();
    Dataset *ds = dataset_load_flickr(tmp_path("t.txt"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, 2);
    expect_captions(&ds->items[0], "a.jpg", 1, (const char *[]){"A dog runs ."});
    expect_captions(&ds->items[1], "b.jpg", 1, (const char *[]){"Cats sit ."});
    ck_assert_log_has("t.txt:2: caption skipped: expected UTF-8 text without control characters, "
                      "found invalid UTF-8 at byte 5");
    ck_assert_log_has("t.txt:3: caption skipped: expected UTF-8 text without control characters, "
                      "found a control character at byte 3");
    ck_assert_log_has("t.txt:5: caption skipped");
    ck_assert_log_has("t.txt: skipped 3 caption(s) with invalid UTF-8 or control characters "
                      "(first at ");
    ck_assert_log_has("1 image(s) have no usable captions, skipped: c.jpg");
    ck_assert_int_eq(log_errors, 0);
    dataset_free(ds);

    write_file("c.tsv", "x.png\tfine caption\nx.png\tbad \xff byte\ny.png\t\x01\n");
    log_capture();
    ds = dataset_open(tmp_path("c.tsv"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, 1);
    ck_assert_int_eq(ds->items[0].n_captions, 1);
    ck_assert_log_has("c.tsv:2: caption skipped");
    ck_assert_log_has("c.tsv:3: caption skipped");
    dataset_free(ds);

    write_file("k.json", "{\"images\": [{\"filename\": \"a.jpg\", \"split\": \"train\", \"sentences\": "
                         "[{\"raw\": \"good\"}, {\"raw\": \"ctl \\u0002 x\"}, "
                         "{\"tokens\": [\"bad\", \"\xc0\xaf\"]}]}]}");
    log_capture();
    ds = dataset_open(tmp_path("k.json"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->items[0].n_captions, 1);
    ck_assert_log_has("k.json: images[0].sentences[1].raw: caption skipped");
    ck_assert_log_has("k.json: images[0].sentences[2].tokens: caption skipped");
    dataset_free(ds);

    write_file("captions_x.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}], "
                                  "\"annotations\": [{\"image_id\": 1, \"caption\": \"ok\"}, "
                                  "{\"image_id\": 1, \"caption\": \"\\u001b[2J\"}]}");
    log_capture();
    ds = dataset_open(tmp_path("captions_x.json"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->items[0].n_captions, 1);
    ck_assert_log_has("captions_x.json: annotations[1].caption: caption skipped");
    dataset_free(ds);

    /* a file with nothing valid is an error */
    write_file("bad.tsv", "x.png\t\xfe\xff\n");
    log_capture();
    ck_assert_ptr_null(dataset_open(tmp_path("bad.tsv"), NULL, NULL));
    ck_assert_log_has("bad.tsv: expected '<image path><TAB><caption>' lines, found none");

    /* built in code: refused with the image named */
    ds = dataset_create("mem", NULL);
    int it = dataset_add_item(ds, "m.jpg", -1);
    log_capture();
    ck_assert_int_eq(dataset_add_caption(ds, it, "bad \x80"), SAC_ERR_INVALID);
    ck_assert_log_has("mem: image 'm.jpg': expected UTF-8 caption text");
    dataset_free(ds);
}
END_TEST

/* Ids of 1e300, -5, 1.5 or a string are refused naming the file and element (1e300 was
 * converted to int64_t: undefined behaviour). */
START_TEST(test_bad_ids_rejected)
{
    static const char *const ids[] = {"1e300", "-5", "1.5", "\"7\"", "9007199254740993e3"};
    static const char *const found[] = {"found 1.0000000000000001e+300", "found -5", "found 1.5",
                                        "found a string", "found 9.007199254740993e+18"};
    for (int k = 0; k < 5; k++) {
        char text[512];
        snprintf(text, sizeof(text), "{\"images\": [{\"id\": 3, \"file_name\": \"a.jpg\"}, "
                 "{\"id\": %s, \"file_name\": \"b.jpg\"}], \"annotations\": []}", ids[k]);
        write_file("captions_i.json", text);
        log_capture();
        ck_assert_ptr_null(dataset_open(tmp_path("captions_i.json"), NULL, NULL));
        ck_assert_log_has("captions_i.json: images[1].id: expected an integer id in 0..2^53");
        ck_assert_log_has(found[k]);
        snprintf(text, sizeof(text), "{\"images\": [{\"id\": 3, \"file_name\": \"a.jpg\"}], "
                 "\"annotations\": [{\"image_id\": 3, \"caption\": \"x\"}, "
                 "{\"image_id\": %s, \"caption\": \"y\"}]}", ids[k]);
        write_file("captions_a.json", text);
        log_capture();
        ck_assert_ptr_null(dataset_open(tmp_path("captions_a.json"), NULL, NULL));
        ck_assert_log_has("captions_a.json: annotations[1].image_id: expected an integer id");
        snprintf(text, sizeof(text), "{\"images\": [{\"filename\": \"a.jpg\", \"cocoid\": %s, "
                 "\"sentences\": [{\"raw\": \"x\"}]}]}", ids[k]);
        write_file("k.json", text);
        log_capture();
        ck_assert_ptr_null(dataset_open(tmp_path("k.json"), NULL, NULL));
        ck_assert_log_has("k.json: images[0].cocoid: expected an integer id in 0..2^53");
        ck_assert_log_has(found[k]);
    }
    /* the largest exact id is accepted */
    write_file("captions_m.json", "{\"images\": [{\"id\": 9007199254740992, \"file_name\": "
                                  "\"a.jpg\"}], \"annotations\": [{\"image_id\": "
                                  "9007199254740992, \"caption\": \"x\"}]}");
    log_capture();
    Dataset *ds = dataset_open(tmp_path("captions_m.json"), NULL, NULL);
    ck_assert_ptr_nonnull(ds);
    ck_assert(ds->items[0].image_id == 9007199254740992ll);
    dataset_free(ds);
}
END_TEST

/* A FIFO named as the dataset is refused at once, not waited on. */
START_TEST(test_fifo_dataset)
{
    ck_assert_int_eq(mkfifo(tmp_path("captions.tsv"), 0600), 0);
    alarm(10);
    log_capture();
    ck_assert_ptr_null(dataset_load_tsv(tmp_path("captions.tsv"), NULL));
    ck_assert_log_has("captions.tsv: is a FIFO (named pipe), expected a regular file");
    alarm(0);
}
END_TEST

/* dataset_check_images refuses a JPEG whose Huffman table would overrun stb_image's arrays
 * (it called stbi_info, which builds the tables) and a FIFO (never opened). */
START_TEST(test_check_images_hostile)
{
    write_png("ok.png");
    FILE *f = fopen(tmp_path("dht.jpg"), "wb");
    ck_assert_ptr_nonnull(f);
    fwrite("\xff\xd8\xff\xc4\xff\xc4\x00\x15\xff", 1, 9, f);
    fclose(f);
    ck_assert_int_eq(mkfifo(tmp_path("pipe.png"), 0600), 0);
    Dataset *ds = dataset_create("mem", tmp_dir);
    const char *names[3] = {"ok.png", "dht.jpg", "pipe.png"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(dataset_add_caption(ds, dataset_add_item(ds, names[i], -1), "x"), 0);
    log_capture();
    alarm(10);
    ck_assert_int_eq(dataset_check_images(ds), 2);
    alarm(0);
    ck_assert_int_eq(ds->n_items, 1);
    ck_assert_str_eq(ds->items[0].name, "ok.png");
    ck_assert_log_has("dht.jpg (corrupt JPEG header)");
    ck_assert_log_has("pipe.png (not a regular file)");
    dataset_free(ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset");
    const TTest *tests[] = {test_flickr_split_list_order, test_flickr_open_dir_splits, test_flickr_malformed,
        test_check_images_drops_missing, test_check_images_report_is_short, test_flickr_parse_speed,
        test_karpathy_splits, test_karpathy_malformed, test_coco_captions, test_tsv_folder, test_memory_dataset,
        test_bad_caption_text_skipped, test_bad_ids_rejected, test_fifo_dataset, test_check_images_hostile, NULL};
    TCase *tc = check_case(s, "dataset", 0, tests);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    return check_run(s);
}
