/*
 * test_api.c - libsaccade's public API (include/saccade.h), linked against the shared library
 * as a user would: bad arguments give SACCADE_ERR_INVALID and a message (never a crash),
 * corrupt model bytes an error code and a message, the caption of a photo's pixels equals the
 * caption of its file and of its bytes in memory, n-best captions are distinct, attention maps
 * sum to 1 and the words' log-probabilities sum to the caption's, captioners on two threads
 * sharing one model give the captions of one thread.
 *
 * Uses the shipped model and sample photos (argv[1]: the model file, argv[2]: the samples
 * directory), committed in models/.
 *
 * Size letters: P grid positions (rows x cols).
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "saccade.h"

static const char *model_path, *samples;
static saccade_model *model; /* loaded once, shared by the tests (read-only) */

static char *photo(const char *name)
{
    static char buf[4][4096];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%s", samples, name);
    return p;
}

static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc((size_t)len + 1);
    ck_assert(data != NULL);
    ck_assert_int_eq(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return data;
}

/* Messages logged, for the check that failures are also logged. */
static char last_log[2048];
static int n_logged;

static void capture_log(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SACCADE_LOG_ERROR) snprintf(last_log, sizeof(last_log), "%s", msg), n_logged++;
}

static void setup(void)
{
    saccade_set_log(capture_log, NULL);
    saccade_set_threads(1);
    char err[512];
    int st = saccade_model_load(model_path, &model, err, sizeof(err));
    ck_assert_msg(st == SACCADE_OK, "%s: %s", model_path, err);
}

static void teardown(void)
{
    saccade_model_free(model);
    model = NULL;
    saccade_set_log(NULL, NULL);
}

START_TEST(test_version)
{
    ck_assert(strlen(saccade_version()) > 0);
    ck_assert_uint_eq(saccade_api_version(), (unsigned)SACCADE_API_VERSION_MAJOR << 16 |
                                                 SACCADE_API_VERSION_MINOR << 8 | SACCADE_API_VERSION_PATCH);
    ck_assert_str_eq(saccade_strerror(SACCADE_OK), "success");
    ck_assert_str_eq(saccade_strerror(SACCADE_ERR_INVALID), "invalid argument");
    ck_assert(saccade_strerror(12345) != NULL);
}
END_TEST

/* The defaults saccade.h documents (what `saccade caption` does without options). */
START_TEST(test_options_default)
{
    saccade_options o;
    memset(&o, 0x5a, sizeof(o));
    saccade_options_default(&o);
    ck_assert_int_eq(o.beam, 3);
    ck_assert_int_eq(o.nbest, 1);
    ck_assert_int_eq(o.max_length, 0);
    ck_assert(fabsf(o.length_norm - 0.7f) < 1e-7f);
    ck_assert_int_eq(o.no_repeat_word, 0);
    ck_assert_int_eq(o.no_repeat_bigram, 1);
    ck_assert_int_eq(o.details, 0);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(o.reserved[i], 0);
}
END_TEST

START_TEST(test_model_info)
{
    int rows, cols;
    saccade_model_grid(model, &rows, &cols);
    ck_assert_int_eq(rows, 7);
    ck_assert_int_eq(cols, 7);
    ck_assert_int_eq(saccade_model_input_size(model), 224);
    ck_assert_int_ge(saccade_model_max_length(model), 10);
    saccade_model_grid(NULL, &rows, &cols);
    ck_assert_int_eq(rows + cols, 0);
    ck_assert_int_eq(saccade_model_input_size(NULL), 0);
}
END_TEST

/* Every NULL and every out-of-range option: SACCADE_ERR_INVALID with a message. */
START_TEST(test_bad_arguments)
{
    char err[512] = "x";
    saccade_model *m = (saccade_model *)1;
    ck_assert_int_eq(saccade_model_load(NULL, &m, err, sizeof(err)), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err, "path is NULL"), "message: %s", err);
    ck_assert_int_eq(saccade_model_load(model_path, NULL, err, sizeof(err)), SACCADE_ERR_INVALID);
    ck_assert_int_eq(saccade_model_load_memory(NULL, 10, &m, NULL, 0), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(saccade_captioner_create(NULL));
    saccade_result *r = (saccade_result *)1;
    ck_assert_int_eq(saccade_caption_file(NULL, photo("rocket.jpg"), NULL, &r), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(saccade_captioner_error(NULL), "");

    saccade_captioner *c = saccade_captioner_create(model);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(saccade_caption_file(c, NULL, NULL, &r), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(saccade_captioner_error(c), "path is NULL"), "message: %s", saccade_captioner_error(c));
    ck_assert_int_eq(saccade_caption_file(c, photo("rocket.jpg"), NULL, NULL), SACCADE_ERR_INVALID);
    ck_assert_int_eq(saccade_caption_memory(c, NULL, 5, NULL, &r), SACCADE_ERR_INVALID);
    ck_assert_int_eq(saccade_caption_image(c, NULL, NULL, &r), SACCADE_ERR_INVALID);

    struct {
        const char *field;
        saccade_options o;
    } bad[6];
    for (int i = 0; i < 6; i++) saccade_options_default(&bad[i].o);
    bad[0].field = "beam", bad[0].o.beam = 0;
    bad[1].field = "beam", bad[1].o.beam = 65;
    bad[2].field = "nbest", bad[2].o.nbest = 4; /* > beam 3 */
    bad[3].field = "max_length", bad[3].o.max_length = saccade_model_max_length(model) + 1;
    bad[4].field = "length_norm", bad[4].o.length_norm = NAN;
    bad[5].field = "details", bad[5].o.details = 2;
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(saccade_caption_file(c, photo("rocket.jpg"), &bad[i].o, &r), SACCADE_ERR_INVALID);
        ck_assert_ptr_null(r);
        ck_assert_msg(strstr(saccade_captioner_error(c), bad[i].field), "case %d: %s", i, saccade_captioner_error(c));
    }

    uint8_t px[4 * 3 * 2] = {0};
    saccade_image img = {px, 4, 2, 11}; /* stride < 3 * width */
    ck_assert_int_eq(saccade_caption_image(c, &img, NULL, &r), SACCADE_ERR_INVALID);
    ck_assert_msg(strstr(saccade_captioner_error(c), "stride"), "%s", saccade_captioner_error(c));
    img.stride = 0, img.width = 0;
    ck_assert_int_eq(saccade_caption_image(c, &img, NULL, &r), SACCADE_ERR_INVALID);
    img.width = 4, img.rgb = NULL;
    ck_assert_int_eq(saccade_caption_image(c, &img, NULL, &r), SACCADE_ERR_INVALID);

    saccade_input *in = (saccade_input *)1;
    ck_assert_int_eq(saccade_input_create(model, &img, &in, err, sizeof(err)), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(in);
    saccade_result *rs[2];
    ck_assert_int_eq(saccade_caption_inputs(c, NULL, 1, NULL, rs), SACCADE_ERR_INVALID);
    ck_assert_int_eq(saccade_caption_inputs(c, (const saccade_input *const *)&in, 0, NULL, rs), SACCADE_ERR_INVALID);
    const saccade_input *none[1] = {NULL};
    ck_assert_int_eq(saccade_caption_inputs(c, none, 1, NULL, rs), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(rs[0]);

    saccade_image out;
    ck_assert_int_eq(saccade_image_load(photo("rocket.jpg"), -1, &out, err, sizeof(err)), SACCADE_ERR_INVALID);
    ck_assert_ptr_null(out.rgb);

    /* accessors of no result or a rank out of range */
    ck_assert_int_eq(saccade_result_count(NULL), 0);
    ck_assert_ptr_null(saccade_result_text(NULL, 0));
    ck_assert(isnan(saccade_result_logprob(NULL, 0)));
    ck_assert_ptr_null(saccade_result_word(NULL, 0, 0));
    ck_assert_ptr_null(saccade_result_attention(NULL, 0, 0));

    saccade_result_free(NULL);
    saccade_input_free(NULL);
    saccade_image_free(NULL);
    saccade_model_free(NULL);
    saccade_captioner_free(NULL);
    saccade_captioner_free(c);
}
END_TEST

/* A model file's bytes cut short or changed: an error code and a message, never a crash. */
START_TEST(test_corrupt_model)
{
    size_t n;
    uint8_t *data = slurp(model_path, &n);
    char err[512];
    saccade_model *m;
    ck_assert_int_eq(saccade_model_load_memory(data, n, &m, err, sizeof(err)), SACCADE_OK);
    ck_assert_str_eq(err, "");
    saccade_model_free(m);

    const size_t cuts[] = {0, 7, 8, 100, n / 2, n - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        n_logged = 0;
        int st = saccade_model_load_memory(data, cuts[i], &m, err, sizeof(err));
        ck_assert_msg(st == SACCADE_ERR_FORMAT, "cut at %zu: status %d (%s)", cuts[i], st, err);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(err, "<memory>"), "cut at %zu: message '%s' does not name the source", cuts[i], err);
        ck_assert_int_ge(n_logged, 1); /* also logged */
    }
    /* the header's JSON and length changed */
    uint8_t *bad = malloc(n);
    ck_assert(bad != NULL);
    memcpy(bad, data, n);
    bad[8] = '[';
    ck_assert_int_eq(saccade_model_load_memory(bad, n, &m, err, sizeof(err)), SACCADE_ERR_FORMAT);
    ck_assert(strlen(err) > 10);
    memcpy(bad, data, n);
    bad[7] = 0x7f;
    ck_assert_int_eq(saccade_model_load_memory(bad, n, &m, err, sizeof(err)), SACCADE_ERR_FORMAT);
    ck_assert(strlen(err) > 10);
    free(bad);
    free(data);

    ck_assert_int_eq(saccade_model_load("/nonexistent/model.safetensors", &m, err, sizeof(err)),
                     SACCADE_ERR_NOTFOUND);
    ck_assert_msg(strstr(err, "/nonexistent/model.safetensors"), "%s", err);
    /* an image file is not a model */
    ck_assert_int_eq(saccade_model_load(photo("rocket.jpg"), &m, err, sizeof(err)), SACCADE_ERR_FORMAT);
    ck_assert_msg(strstr(err, "rocket.jpg"), "%s", err);
}
END_TEST

START_TEST(test_bad_image)
{
    saccade_captioner *c = saccade_captioner_create(model);
    saccade_result *r;
    ck_assert_int_eq(saccade_caption_file(c, "/nonexistent.jpg", NULL, &r), SACCADE_ERR_NOTFOUND);
    ck_assert_msg(strstr(saccade_captioner_error(c), "/nonexistent.jpg"), "%s", saccade_captioner_error(c));
    ck_assert_int_eq(saccade_caption_file(c, model_path, NULL, &r), SACCADE_ERR_FORMAT);
    ck_assert_msg(strstr(saccade_captioner_error(c), model_path), "%s", saccade_captioner_error(c));
    const uint8_t junk[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3};
    ck_assert_int_eq(saccade_caption_memory(c, junk, sizeof(junk), NULL, &r), SACCADE_ERR_FORMAT);
    ck_assert_msg(strstr(saccade_captioner_error(c), "<memory>"), "%s", saccade_captioner_error(c));
    /* a success clears the message */
    ck_assert_int_eq(saccade_caption_file(c, photo("rocket.jpg"), NULL, &r), SACCADE_OK);
    ck_assert_str_eq(saccade_captioner_error(c), "");
    saccade_result_free(r);
    saccade_captioner_free(c);
}
END_TEST

/* The same photo as a file, as bytes in memory, as pixels (packed and with padded rows) and as
 * a prepared input: the same caption and log-probability. */
START_TEST(test_pixels_equal_file)
{
    saccade_captioner *c = saccade_captioner_create(model);
    const char *names[] = {"rocket.jpg", "chelsea.jpg"};
    for (int i = 0; i < 2; i++) {
        const char *path = photo(names[i]);
        saccade_result *rf, *rm, *rp, *rs, *ri;
        ck_assert_int_eq(saccade_caption_file(c, path, NULL, &rf), SACCADE_OK);
        size_t n;
        void *bytes = slurp(path, &n);
        ck_assert_int_eq(saccade_caption_memory(c, bytes, n, NULL, &rm), SACCADE_OK);
        free(bytes);
        saccade_image img;
        char err[512];
        ck_assert_int_eq(saccade_image_load(path, saccade_model_input_size(model), &img, err, sizeof(err)), SACCADE_OK);
        ck_assert(img.width >= 1 && img.height >= 1 && img.stride == 3 * img.width);
        ck_assert_int_eq(saccade_caption_image(c, &img, NULL, &rp), SACCADE_OK);
        /* the same pixels in rows padded to 3 * width + 5 bytes */
        saccade_image padded = {malloc((size_t)(3 * img.width + 5) * img.height), img.width, img.height, 3 * img.width + 5};
        for (int y = 0; y < img.height; y++)
            memcpy(padded.rgb + (size_t)y * padded.stride, img.rgb + (size_t)y * 3 * img.width, 3 * (size_t)img.width);
        ck_assert_int_eq(saccade_caption_image(c, &padded, NULL, &rs), SACCADE_OK);
        saccade_input *in;
        ck_assert_int_eq(saccade_input_create(model, &padded, &in, err, sizeof(err)), SACCADE_OK);
        ck_assert_int_eq(saccade_caption_inputs(c, (const saccade_input *const *)&in, 1, NULL, &ri), SACCADE_OK);
        const saccade_result *all[] = {rm, rp, rs, ri};
        for (int k = 0; k < 4; k++) {
            ck_assert_str_eq(saccade_result_text(all[k], 0), saccade_result_text(rf, 0));
            ck_assert(saccade_result_logprob(all[k], 0) == saccade_result_logprob(rf, 0));
        }
        ck_assert(strlen(saccade_result_text(rf, 0)) > 5);
        saccade_result_free(rf), saccade_result_free(rm), saccade_result_free(rp), saccade_result_free(rs);
        saccade_result_free(ri);
        saccade_input_free(in);
        free(padded.rgb);
        saccade_image_free(&img);
        ck_assert_ptr_null(img.rgb);
    }
    saccade_captioner_free(c);
}
END_TEST

START_TEST(test_nbest_distinct)
{
    saccade_captioner *c = saccade_captioner_create(model);
    saccade_options o;
    saccade_options_default(&o);
    o.beam = 5, o.nbest = 5;
    saccade_result *r;
    ck_assert_int_eq(saccade_caption_file(c, photo("astronaut.jpg"), &o, &r), SACCADE_OK);
    int n = saccade_result_count(r);
    ck_assert_int_ge(n, 2);
    ck_assert_int_le(n, 5);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(saccade_result_text(r, i));
        for (int j = 0; j < i; j++) ck_assert_str_ne(saccade_result_text(r, i), saccade_result_text(r, j));
        /* the text is the words joined by spaces */
        char joined[1024] = "";
        for (int t = 0; t < saccade_result_words(r, i); t++)
            snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s", t ? " " : "",
                     saccade_result_word(r, i, t));
        ck_assert_str_eq(joined, saccade_result_text(r, i));
    }
    ck_assert_ptr_null(saccade_result_text(r, n));
    ck_assert_ptr_null(saccade_result_text(r, -1));
    /* the best of the n-best is the 1-best */
    saccade_result *one;
    o.nbest = 1;
    ck_assert_int_eq(saccade_caption_file(c, photo("astronaut.jpg"), &o, &one), SACCADE_OK);
    ck_assert_int_eq(saccade_result_count(one), 1);
    ck_assert_str_eq(saccade_result_text(one, 0), saccade_result_text(r, 0));
    saccade_result_free(one);
    saccade_result_free(r);
    saccade_captioner_free(c);
}
END_TEST

/* With details: each word's map is rows x cols non-negative weights summing to 1, and the
 * words' log-probabilities (and the end's) sum to the caption's. Without: none. */
START_TEST(test_attention_maps)
{
    saccade_captioner *c = saccade_captioner_create(model);
    saccade_options o;
    saccade_options_default(&o);
    saccade_result *plain;
    ck_assert_int_eq(saccade_caption_file(c, photo("coffee.jpg"), &o, &plain), SACCADE_OK);
    ck_assert_ptr_null(saccade_result_attention(plain, 0, 0));
    ck_assert(isnan(saccade_result_word_logprob(plain, 0, 0)));
    for (int beam = 1; beam <= 3; beam += 2) {
        o.beam = beam, o.details = 1;
        saccade_result *r;
        ck_assert_int_eq(saccade_caption_file(c, photo("coffee.jpg"), &o, &r), SACCADE_OK);
        int rows, cols, n = saccade_result_words(r, 0);
        saccade_result_grid(r, &rows, &cols);
        ck_assert_int_eq(rows * cols, 49);
        ck_assert_int_ge(n, 3);
        double lp = 0;
        for (int t = 0; t < n; t++) {
            const float *a = saccade_result_attention(r, 0, t);
            ck_assert_ptr_nonnull(a);
            double s = 0;
            for (int p = 0; p < rows * cols; p++) {
                ck_assert(a[p] >= 0);
                s += a[p];
            }
            ck_assert_msg(fabs(s - 1) < 1e-4, "beam %d word %d: map sums to %.7f", beam, t, s);
            double w = saccade_result_word_logprob(r, 0, t);
            ck_assert(w <= 0);
            lp += w;
        }
        ck_assert_ptr_null(saccade_result_attention(r, 0, n));
        lp += saccade_result_word_logprob(r, 0, n); /* the end (0 when not ended) */
        ck_assert_msg(fabs(lp - saccade_result_logprob(r, 0)) < 1e-3, "beam %d: words sum to %.5f, caption %.5f", beam,
                      lp, saccade_result_logprob(r, 0));
        if (beam == 3) ck_assert_str_eq(saccade_result_text(r, 0), saccade_result_text(plain, 0));
        saccade_result_free(r);
    }
    saccade_result_free(plain);
    saccade_captioner_free(c);
}
END_TEST

/* Captioners on two threads sharing the model: the captions of one captioner alone. */
typedef struct {
    const char *path;
    char text[512];
    double logprob;
    int st;
} Job;

static void *caption_thread(void *arg)
{
    Job *jobs = arg;
    saccade_captioner *c = saccade_captioner_create(model);
    for (int i = 0; i < 2; i++) {
        saccade_result *r;
        jobs[i].st = saccade_caption_file(c, jobs[i].path, NULL, &r);
        if (!jobs[i].st) {
            snprintf(jobs[i].text, sizeof(jobs[i].text), "%s", saccade_result_text(r, 0));
            jobs[i].logprob = saccade_result_logprob(r, 0);
        }
        saccade_result_free(r);
    }
    saccade_captioner_free(c);
    return NULL;
}

START_TEST(test_threads_share_model)
{
    Job serial[2] = {{photo("rocket.jpg"), "", 0, 0}, {photo("chelsea.jpg"), "", 0, 0}};
    Job a[2], b[2];
    memcpy(a, serial, sizeof(a));
    memcpy(b, serial, sizeof(b));
    caption_thread(serial);
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, caption_thread, a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, caption_thread, b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(serial[i].st, SACCADE_OK);
        ck_assert_int_eq(a[i].st, SACCADE_OK);
        ck_assert_int_eq(b[i].st, SACCADE_OK);
        ck_assert_str_eq(a[i].text, serial[i].text);
        ck_assert_str_eq(b[i].text, serial[i].text);
        ck_assert(a[i].logprob == serial[i].logprob && b[i].logprob == serial[i].logprob);
    }
}
END_TEST

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_api MODEL SAMPLES_DIR\n");
        return 2;
    }
    model_path = argv[1], samples = argv[2];
    Suite *s = suite_create("api");
    const TTest *tests[] = {test_version, test_options_default, test_model_info, test_bad_arguments,
        test_corrupt_model, test_bad_image, test_pixels_equal_file, test_nbest_distinct, test_attention_maps,
        test_threads_share_model, NULL};
    TCase *tc = check_case(s, "api", 300, tests);
    tcase_add_checked_fixture(tc, setup, teardown);
    return check_run(s);
}
