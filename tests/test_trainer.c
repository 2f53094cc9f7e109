/*
 * test_trainer.c - the training run end to end on a tiny dataset the test draws itself:
 * a run killed part-way and resumed from its checkpoint ends with exactly the model of an
 * uninterrupted run; the run is deterministic for a fixed seed; a dataset entry whose image is
 * missing is reported and skipped; the dev evaluation and best-model file work.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "matmul.h"
#include "model.h"
#include "sac.h"
#include "safetensors.h"
#include "trainer.h"

static char dir[64];

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

/* Eight 20x20 PNGs: a coloured square or stripe on gray, and a captions.tsv with two captions
 * each, plus one line naming an image that does not exist. */
static void make_dataset(void)
{
    snprintf(dir, sizeof(dir), "/tmp/saccade_trainer_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *colour[4] = {"red", "green", "blue", "yellow"};
    const unsigned char rgb[4][3] = {{220, 20, 20}, {20, 200, 20}, {20, 20, 220}, {230, 230, 20}};
    FILE *tsv = fopen(path("captions.tsv"), "w");
    ck_assert_ptr_nonnull(tsv);
    for (int i = 0; i < 8; i++) {
        unsigned char px[20 * 20 * 3];
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++) {
                int in = i < 4 ? (x > 5 && x < 14 && y > 5 && y < 14) : (y > 8 && y < 12);
                for (int c = 0; c < 3; c++) px[(y * 20 + x) * 3 + c] = in ? rgb[i % 4][c] : 128;
            }
        char name[32];
        snprintf(name, sizeof(name), "img%d.png", i);
        ck_assert(stbi_write_png(path(name), 20, 20, 3, px, 60));
        fprintf(tsv, "%s\ta %s %s\n%s\tthe %s %s on gray\n", name, colour[i % 4], i < 4 ? "square" : "stripe", name,
                colour[i % 4], i < 4 ? "square" : "stripe");
    }
    fprintf(tsv, "missing.png\ta picture that is not there\n");
    fclose(tsv);
}

static TrainOptions tiny_options(const char *out)
{
    TrainOptions o;
    train_default_options(&o);
    o.data = path("captions.tsv");
    o.train_split = NULL;
    o.dev_split = NULL;
    o.out = out;
    o.min_count = 1;
    o.batch_images = 3; /* 8 images: batches of 3, 3, 2 */
    o.epochs = 3;
    o.lr = o.lr_enc = 3e-3f;
    o.augment = 1;
    o.checkpoint_every = 2;
    o.store_f16 = 0;
    o.report_every_s = 1e9;
    o.cfg.enc.image_size = 16;
    o.cfg.enc.n_conv = 2;
    o.cfg.enc.conv[0] = (ConvSpec){6, 2, 0};
    o.cfg.enc.conv[1] = (ConvSpec){8, 1, 1};
    o.cfg.E = 8, o.cfg.A = 8, o.cfg.D = 12, o.cfg.M = 6, o.cfg.T = 7;
    o.cfg.dropout = 0.2f;
    return o;
}

static void *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*n);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    void *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

static int warnings;
static void count_warnings(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_WARN) {
        warnings++;
        printf("warning: %s\n", msg);
    }
}

START_TEST(test_resume_equals_uninterrupted)
{
    sac_blas_set_threads(1);
    make_dataset();
    sac_log_set_sink(count_warnings, NULL);
    /* uninterrupted */
    TrainOptions a = tiny_options(path("a.safetensors"));
    ck_assert_int_eq(train_run(&a), SAC_OK);
    ck_assert_int_eq(warnings, 1); /* missing.png, reported once */
    /* the same seed again: the same bytes */
    TrainOptions a2 = tiny_options(path("a2.safetensors"));
    ck_assert_int_eq(train_run(&a2), SAC_OK);
    ck_assert(same_file(path("a.safetensors"), path("a2.safetensors")));
    /* killed after 4 steps (mid-epoch 2), then resumed twice more after further kills */
    TrainOptions b = tiny_options(path("b.safetensors"));
    b.max_steps = 4;
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    ck_assert_int_eq(access(path("b.safetensors.ckpt"), R_OK), 0);
    b.resume = 1;
    b.max_steps = 6; /* the end of epoch 2: stops right after its checkpoint */
    ck_assert_int_eq(train_run(&b), SAC_ERR_CANCELLED);
    b.max_steps = 0;
    ck_assert_int_eq(train_run(&b), SAC_OK);
    ck_assert(same_file(path("a.safetensors"), path("b.safetensors")));
    ck_assert(same_file(path("a.safetensors.ckpt"), path("b.safetensors.ckpt")));
    /* a different seed gives a different model */
    TrainOptions c = tiny_options(path("c.safetensors"));
    c.seed = 2;
    ck_assert_int_eq(train_run(&c), SAC_OK);
    ck_assert(!same_file(path("a.safetensors"), path("c.safetensors")));
    /* the result is a valid model with the tiny vocabulary */
    Model *m = model_load(path("a.safetensors"));
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(vocab_size(m->vocab), 4 + 10); /* specials; a the on gray square stripe; 4 colours */
    model_free(m);
    sac_log_set_sink(NULL, NULL);
}
END_TEST

START_TEST(test_dev_evaluation_and_resume_refusal)
{
    sac_blas_set_threads(1);
    make_dataset();
    TrainOptions o = tiny_options(path("d.safetensors"));
    o.dev_split = "all"; /* evaluate on the training images: exercises decoding + scoring */
    o.epochs = 2;
    o.log = path("log.jsonl");
    ck_assert_int_eq(train_run(&o), SAC_OK);
    size_t n;
    char *log = slurp(path("log.jsonl"), &n);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "\"cider_d\""));
    ck_assert_ptr_nonnull(strstr(log, "\"grad_norm\""));
    free(log);
    /* resuming with a checkpoint that is not one fails cleanly */
    FILE *f = fopen(path("bad.ckpt"), "w");
    fputs("not a checkpoint", f);
    fclose(f);
    o.resume = 1;
    o.checkpoint = path("bad.ckpt");
    sac_log_set_level(-1);
    ck_assert_int_lt(train_run(&o), 0);
    sac_log_set_level(SAC_LOG_INFO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_resume_equals_uninterrupted);
    tcase_add_test(tc, test_dev_evaluation_and_resume_refusal);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
