/*
 * saccade.c - libsaccade, the public API of include/saccade.h, over the captioner layer
 * (captioner/captioner.h: encoder + attention + decoder) and common/image.h.
 *
 * Every entry point validates its arguments before anything else, and keeps the first error
 * message logged while it runs (sac_log_capture) in the captioner or the caller's buffer; the
 * messages still go to the log sink as everywhere in saccade. Nothing here exits.
 *
 * A captioner owns one Captioner (its buffers sized for the largest batch and beam asked for
 * so far, recreated larger when a call needs more), the batch of preprocessed images and their
 * features. Captions of n inputs: the n images encoded as one batch (captioner_encode), then
 * greedy decoding (beam 1) or beam search over the batch (beam_search_batch, the captions one
 * image at a time would get); with details, each caption is fed back through the step decoder
 * for its words' log-probabilities (the same features, so they sum to the caption's).
 *
 * Size letters: B images, S input side, P grid positions, E encoder channels, V vocabulary,
 * K beam width, T words of a caption.
 */
#include "saccade.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "captioner.h"
#include "image.h"
#include "infer.h"
#include "model.h"
#include "sac.h"
#include "safetensors.h"
#include "saccade_config.h"
#include "search.h"
#include "threadpool.h"
#include "vocab.h"

#define MAX_INPUTS 1024 /* inputs of one saccade_caption_inputs call */
#define MAX_BEAM 64
#define MAX_LENGTH_NORM 10.0f
#define ERR_LEN 1024

/* SAC_* and SACCADE_* codes are the same numbers: the public names of the internal codes. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(SACCADE_ERR_NOMEM, SAC_ERR_NOMEM) && SAME(SACCADE_ERR_IO, SAC_ERR_IO) &&
                   SAME(SACCADE_ERR_FORMAT, SAC_ERR_FORMAT) && SAME(SACCADE_ERR_INVALID, SAC_ERR_INVALID) &&
                   SAME(SACCADE_ERR_NOTFOUND, SAC_ERR_NOTFOUND) && SAME(SACCADE_ERR_UNSUPPORTED, SAC_ERR_UNSUPPORTED),
               "status codes");
_Static_assert(SAME(SACCADE_LOG_ERROR, SAC_LOG_ERROR) && SAME(SACCADE_LOG_DEBUG, SAC_LOG_DEBUG), "log levels");
#undef SAME

struct saccade_model {
    Model *m;
};

struct saccade_input {
    const saccade_model *model;
    float *x; /* (3, S, S) */
};

struct saccade_captioner {
    const saccade_model *model;
    Captioner *cap;         /* for max_batch images and beams up to max_beam */
    int max_batch, max_beam;
    float *images;          /* (max_batch, 3, S, S) */
    float *feats;           /* (max_batch, P, E) */
    char err[ERR_LEN];
};

typedef struct {
    char *text;       /* the words joined by spaces */
    char *word_text;  /* the words, each NUL-terminated (words[t] point into it) */
    const char **words; /* (n) */
    int n, ended;
    double logprob;
    float *word_lp;   /* (n + 1) or NULL without details */
    float *alphas;    /* (n, P) or NULL without details */
} Hypothesis;

struct saccade_result {
    int count;
    int rows, cols;
    Hypothesis *h; /* (count) */
};

/* ---- version, codes, messages, threads ---- */

const char *saccade_version(void) { return SACCADE_VERSION; }

unsigned saccade_api_version(void)
{
    return (unsigned)SACCADE_API_VERSION_MAJOR << 16 | SACCADE_API_VERSION_MINOR << 8 | SACCADE_API_VERSION_PATCH;
}

const char *saccade_strerror(int status) { return sac_strerror(status); }

void saccade_set_log(saccade_log_fn fn, void *user) { sac_log_set_sink(fn, user); }

void saccade_set_log_level(int level) { sac_log_set_level(level); }

void saccade_set_threads(int n) { sac_threads_set(n); }

int saccade_threads(void) { return sac_threads(); }

/* Log an error (captured by the call's sac_log_capture) and return status. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(int status, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sac_error("%s", msg);
    return status;
}

/* Capture a call's first error into err (a buffer of n bytes, may be NULL): a local buffer,
 * copied out by end_capture. */
typedef struct {
    char buf[ERR_LEN];
    char *err;
    size_t n;
} Capture;

static void begin_capture(Capture *c, char *err, size_t n)
{
    c->err = err, c->n = n;
    sac_log_capture(c->buf, sizeof(c->buf));
    if (err && n) err[0] = 0;
}

static int end_capture(Capture *c, int status)
{
    sac_log_capture(NULL, 0);
    if (status && !c->buf[0]) snprintf(c->buf, sizeof(c->buf), "%s", sac_strerror(status));
    if (c->err && c->n) snprintf(c->err, c->n, "%s", status ? c->buf : "");
    return status;
}

/* ---- models ---- */

static int model_wrap(Model *mm, saccade_model **model)
{
    if (!mm) return SAC_ERR_FORMAT; /* the cause was logged; NOMEM and IO are told apart below */
    saccade_model *m = sac_calloc(1, sizeof(*m));
    if (!m) {
        model_free(mm);
        return SAC_ERR_NOMEM;
    }
    m->m = mm;
    *model = m;
    return SAC_OK;
}

/* The status of a load that failed, from what was logged (model_load returns NULL whatever
 * went wrong; its messages say what). */
static int load_status(const char *msg, int fallback)
{
    if (strstr(msg, "out of memory")) return SAC_ERR_NOMEM;
    if (strstr(msg, "cannot open") || strstr(msg, "cannot read") || strstr(msg, "read error") ||
        strstr(msg, "not a regular file") || strstr(msg, "Permission denied"))
        return SAC_ERR_IO;
    return fallback;
}

int saccade_model_load(const char *path, saccade_model **model, char *err, size_t err_size)
{
    Capture cap;
    begin_capture(&cap, err, err_size);
    if (model) *model = NULL;
    if (!path || !model) return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_model_load: %s is NULL", !path ? "path" : "model"));
    int st = model_wrap(model_load(path), model);
    if (st == SAC_ERR_FORMAT) st = access(path, F_OK) && errno == ENOENT ? SAC_ERR_NOTFOUND : load_status(cap.buf, st);
    return end_capture(&cap, st);
}

int saccade_model_load_memory(const void *data, size_t size, saccade_model **model, char *err, size_t err_size)
{
    Capture cap;
    begin_capture(&cap, err, err_size);
    if (model) *model = NULL;
    if (!data || !model)
        return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_model_load_memory: %s is NULL", !data ? "data" : "model"));
    SafeTensors *st = safetensors_read_memory(data, size, "<memory>");
    int status = st ? model_wrap(model_from_safetensors(st), model) : SAC_ERR_FORMAT;
    safetensors_free(st);
    if (status == SAC_ERR_FORMAT) status = load_status(cap.buf, SAC_ERR_FORMAT);
    return end_capture(&cap, status);
}

void saccade_model_free(saccade_model *model)
{
    if (!model) return;
    model_free(model->m);
    free(model);
}

int saccade_model_input_size(const saccade_model *model) { return model ? model->m->cfg.enc.image_size : 0; }

void saccade_model_grid(const saccade_model *model, int *rows, int *cols)
{
    if (rows) *rows = model ? model->m->grid_h : 0;
    if (cols) *cols = model ? model->m->grid_w : 0;
}

int saccade_model_max_length(const saccade_model *model) { return model ? model->m->cfg.T : 0; }

/* ---- options ---- */

void saccade_options_default(saccade_options *opt)
{
    if (!opt) return;
    const DecoderSizes none = {0}; /* max_len 0: the model's T */
    const SearchOptions d = search_default_options(&none); /* the one place the defaults live */
    memset(opt, 0, sizeof(*opt));
    opt->beam = d.beam, opt->nbest = d.nbest, opt->max_length = d.max_len, opt->length_norm = d.len_norm;
    opt->no_repeat_word = d.no_repeat, opt->no_repeat_bigram = d.no_repeat_bigram;
    opt->details = d.want_alphas;
}

/* opt (NULL: the defaults) as SearchOptions for model m; SAC_ERR_INVALID (logged) when a field
 * is out of range. */
static int search_options(const Model *m, const saccade_options *opt, SearchOptions *so)
{
    saccade_options d;
    if (!opt) {
        saccade_options_default(&d);
        opt = &d;
    }
    const int T = m->cfg.T;
    if (opt->beam < 1 || opt->beam > MAX_BEAM)
        return fail(SAC_ERR_INVALID, "options: beam is %d, expected 1..%d", opt->beam, MAX_BEAM);
    if (opt->nbest < 1 || opt->nbest > opt->beam)
        return fail(SAC_ERR_INVALID, "options: nbest is %d, expected 1..%d (the beam)", opt->nbest, opt->beam);
    if (opt->max_length < 0 || opt->max_length > T)
        return fail(SAC_ERR_INVALID, "options: max_length is %d, expected 0..%d (this model's most steps)",
                    opt->max_length, T);
    if (!(opt->length_norm >= 0 && opt->length_norm <= MAX_LENGTH_NORM))
        return fail(SAC_ERR_INVALID, "options: length_norm is %g, expected 0..%g", (double)opt->length_norm,
                    (double)MAX_LENGTH_NORM);
    if ((opt->no_repeat_word | opt->no_repeat_bigram | opt->details) & ~1)
        return fail(SAC_ERR_INVALID, "options: no_repeat_word, no_repeat_bigram and details must be 0 or 1");
    DecoderSizes sz = model_decoder_sizes(m);
    *so = search_default_options(&sz);
    so->beam = opt->beam, so->nbest = opt->nbest, so->len_norm = opt->length_norm;
    if (opt->max_length) so->max_len = opt->max_length;
    so->no_repeat = opt->no_repeat_word, so->no_repeat_bigram = opt->no_repeat_bigram;
    so->want_alphas = opt->details;
    return SAC_OK;
}

/* ---- images and inputs ---- */

int saccade_image_load(const char *path, int min_side, saccade_image *out, char *err, size_t err_size)
{
    Capture cap;
    begin_capture(&cap, err, err_size);
    if (out) memset(out, 0, sizeof(*out));
    if (!path || !out) return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_image_load: %s is NULL", !path ? "path" : "out"));
    if (min_side < 0) return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_image_load: min_side is %d, expected >= 0", min_side));
    SacImage img = {0};
    int st = sac_image_load_scaled(path, min_side, &img, 0);
    if (!st) *out = (saccade_image){img.rgb, img.w, img.h, 3 * img.w};
    return end_capture(&cap, st);
}

int saccade_image_load_memory(const void *data, size_t size, int min_side, saccade_image *out, char *err,
                              size_t err_size)
{
    Capture cap;
    begin_capture(&cap, err, err_size);
    if (out) memset(out, 0, sizeof(*out));
    if (!data || !out)
        return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_image_load_memory: %s is NULL", !data ? "data" : "out"));
    if (min_side < 0)
        return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_image_load_memory: min_side is %d, expected >= 0", min_side));
    SacImage img = {0};
    int st = sac_image_load_memory_scaled(data, size, "<memory>", min_side, &img, 0);
    if (!st) *out = (saccade_image){img.rgb, img.w, img.h, 3 * img.w};
    return end_capture(&cap, st);
}

void saccade_image_free(saccade_image *img)
{
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof(*img));
}

/* Check a caller's image; SAC_ERR_INVALID (logged) when it cannot be one. */
static int image_check(const char *fn, const saccade_image *image)
{
    if (!image) return fail(SAC_ERR_INVALID, "%s: image is NULL", fn);
    if (!image->rgb) return fail(SAC_ERR_INVALID, "%s: image->rgb is NULL", fn);
    if (image->width < 1 || image->height < 1 || image->width > (1 << 20) || image->height > (1 << 20) ||
        (size_t)image->width * image->height > SAC_IMAGE_DEFAULT_MAX_PIXELS)
        return fail(SAC_ERR_INVALID, "%s: image is %d x %d pixels, expected 1..%zu pixels in all", fn, image->width,
                    image->height, SAC_IMAGE_DEFAULT_MAX_PIXELS);
    if (image->stride != 0 && image->stride < 3 * image->width)
        return fail(SAC_ERR_INVALID, "%s: image->stride is %d, expected 0 or >= %d (3 x width)", fn, image->stride,
                    3 * image->width);
    return SAC_OK;
}

/* The model input (3, S, S) of a checked image into x. */
static int image_prepare(const Model *m, const saccade_image *image, float *x)
{
    const int S = m->cfg.enc.image_size, w = image->width, h = image->height;
    SacImage img = {w, h, image->rgb}, packed = {0};
    if (image->stride && image->stride != 3 * w) { /* sac_image_* take rows without padding */
        int st = sac_image_alloc(&packed, w, h, 0);
        if (st) return st;
        for (int y = 0; y < h; y++) memcpy(packed.rgb + (size_t)y * 3 * w, image->rgb + (size_t)y * image->stride, 3 * (size_t)w);
        img = packed;
    }
    int st = sac_image_preprocess(&img, S, m->cfg.mean, m->cfg.std, x);
    sac_image_free(&packed);
    return st;
}

int saccade_input_create(const saccade_model *model, const saccade_image *image, saccade_input **input, char *err,
                         size_t err_size)
{
    Capture cap;
    begin_capture(&cap, err, err_size);
    if (input) *input = NULL;
    if (!model || !input)
        return end_capture(&cap, fail(SAC_ERR_INVALID, "saccade_input_create: %s is NULL", !model ? "model" : "input"));
    int st = image_check("saccade_input_create", image);
    if (st) return end_capture(&cap, st);
    const int S = model->m->cfg.enc.image_size;
    saccade_input *in = sac_calloc(1, sizeof(*in));
    if (in) in->x = sac_alloc_floats((size_t)3 * S * S);
    st = in && in->x ? image_prepare(model->m, image, in->x) : SAC_ERR_NOMEM;
    if (st) {
        saccade_input_free(in);
        return end_capture(&cap, st);
    }
    in->model = model;
    *input = in;
    return end_capture(&cap, SAC_OK);
}

void saccade_input_free(saccade_input *input)
{
    if (!input) return;
    free(input->x);
    free(input);
}

/* ---- results ---- */

static void hypothesis_clear(Hypothesis *h)
{
    free(h->text), free(h->word_text), free(h->words), free(h->word_lp), free(h->alphas);
    memset(h, 0, sizeof(*h));
}

void saccade_result_free(saccade_result *r)
{
    if (!r) return;
    for (int k = 0; k < r->count; k++) hypothesis_clear(&r->h[k]);
    free(r->h);
    free(r);
}

static const Hypothesis *hyp(const saccade_result *r, int k) { return r && k >= 0 && k < r->count ? &r->h[k] : NULL; }

int saccade_result_count(const saccade_result *r) { return r ? r->count : 0; }

void saccade_result_grid(const saccade_result *r, int *rows, int *cols)
{
    if (rows) *rows = r ? r->rows : 0;
    if (cols) *cols = r ? r->cols : 0;
}

const char *saccade_result_text(const saccade_result *r, int k)
{
    const Hypothesis *h = hyp(r, k);
    return h ? h->text : NULL;
}

double saccade_result_logprob(const saccade_result *r, int k)
{
    const Hypothesis *h = hyp(r, k);
    return h ? h->logprob : NAN;
}

int saccade_result_ended(const saccade_result *r, int k)
{
    const Hypothesis *h = hyp(r, k);
    return h ? h->ended : 0;
}

int saccade_result_words(const saccade_result *r, int k)
{
    const Hypothesis *h = hyp(r, k);
    return h ? h->n : 0;
}

const char *saccade_result_word(const saccade_result *r, int k, int t)
{
    const Hypothesis *h = hyp(r, k);
    return h && t >= 0 && t < h->n ? h->words[t] : NULL;
}

double saccade_result_word_logprob(const saccade_result *r, int k, int t)
{
    const Hypothesis *h = hyp(r, k);
    return h && h->word_lp && t >= 0 && t <= h->n ? h->word_lp[t] : NAN;
}

const float *saccade_result_attention(const saccade_result *r, int k, int t)
{
    const Hypothesis *h = hyp(r, k);
    return h && h->alphas && t >= 0 && t < h->n ? h->alphas + (size_t)t * r->rows * r->cols : NULL;
}

/* ---- captioning ---- */

saccade_captioner *saccade_captioner_create(const saccade_model *model)
{
    if (!model) {
        sac_error("saccade_captioner_create: model is NULL");
        return NULL;
    }
    saccade_captioner *c = sac_calloc(1, sizeof(*c));
    if (c) c->model = model;
    return c;
}

void saccade_captioner_free(saccade_captioner *c)
{
    if (!c) return;
    captioner_free(c->cap);
    free(c->images), free(c->feats);
    free(c);
}

const char *saccade_captioner_error(const saccade_captioner *c) { return c ? c->err : ""; }

/* Room for B images and beam K: a larger Captioner and buffers when the present ones are too
 * small. SAC_OK or SAC_ERR_NOMEM. */
static int ensure_capacity(saccade_captioner *c, int B, int K)
{
    if (c->cap && B <= c->max_batch && K <= c->max_beam) return SAC_OK;
    const Model *m = c->model->m;
    const int S = m->cfg.enc.image_size;
    B = SAC_MAX(B, c->max_batch), K = SAC_MAX(K, c->max_beam);
    captioner_free(c->cap);
    free(c->images), free(c->feats);
    c->cap = captioner_create(m, B, K);
    c->images = sac_alloc_floats((size_t)B * 3 * S * S);
    c->feats = sac_alloc_floats((size_t)B * m->P * m->cfg.E);
    c->max_batch = B, c->max_beam = K;
    if (c->cap && c->images && c->feats) return SAC_OK;
    captioner_free(c->cap);
    free(c->images), free(c->feats);
    c->cap = NULL, c->images = c->feats = NULL, c->max_batch = c->max_beam = 0;
    return SAC_ERR_NOMEM;
}

/* log p(target) of one row of logits (V): logits[target] - log sum exp(logits). */
static float token_logprob(const float *logits, int V, int target)
{
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)(logits[v] - mx));
    return (float)((double)logits[target] - mx - log(s));
}

/* Teacher-force <start> w_1 .. w_n through the step decoder on one image's features (P, E):
 * lp[t] = log p(w_{t+1} | ...), lp[n] = log p(<end> | ...) when the caption ended, else 0. */
static int word_logprobs(saccade_captioner *c, const float *feats, const Caption *cap, float *lp)
{
    const Model *m = c->model->m;
    DecoderInfer *inf = captioner_decoder(c->cap);
    int st = decoder_infer_start(inf, feats, 1, NULL, 1, &m->p.dec);
    int tok = SAC_VOCAB_START;
    for (int t = 0; t < cap->n + cap->ended && !st; t++) {
        const float *logits = decoder_infer_step(inf, &tok, 1, &m->p.dec, NULL);
        int target = t < cap->n ? cap->tokens[t] : SAC_VOCAB_END;
        lp[t] = token_logprob(logits, m->cfg.V, target);
        tok = target;
    }
    return st;
}

/* Hypothesis from a caption: text, words, numbers; the alphas are taken over. */
static int hypothesis_fill(Hypothesis *h, const Model *m, Caption *cap)
{
    memset(h, 0, sizeof(*h));
    h->n = cap->n, h->ended = cap->ended, h->logprob = cap->logprob;
    h->text = captioner_text(m, cap);
    h->word_text = h->text ? strdup(h->text) : NULL;
    h->words = sac_calloc((size_t)cap->n + 1, sizeof(*h->words));
    if (!h->text || !h->word_text || !h->words) return SAC_ERR_NOMEM;
    char *p = h->word_text;
    for (int t = 0; t < cap->n; t++) { /* the text is the words joined by single spaces */
        h->words[t] = p;
        p += strlen(vocab_word(m->vocab, cap->tokens[t]));
        *p++ = 0;
    }
    h->alphas = cap->alphas;
    cap->alphas = NULL;
    return SAC_OK;
}

/* Caption the B preprocessed images in c->images into results (B). */
static int caption_batch(saccade_captioner *c, int B, const SearchOptions *so, saccade_result **results)
{
    const Model *m = c->model->m;
    const int nb = so->nbest;
    const size_t PE = (size_t)m->P * m->cfg.E;
    Caption *caps = sac_calloc((size_t)B * nb, sizeof(*caps));
    int *counts = sac_calloc((size_t)B, sizeof(*counts));
    int st = caps && counts ? captioner_encode(c->cap, c->images, B, c->feats) : SAC_ERR_NOMEM;
    if (!st && so->beam == 1) { /* greedy: the batch decoded together, one caption each (nbest <= beam) */
        st = greedy_decode(caps, captioner_decoder(c->cap), c->feats, B, &m->p.dec, so);
        for (int b = 0; b < B; b++) counts[b] = st ? 0 : 1;
    } else if (!st) {
        st = beam_search_batch(caps, counts, captioner_decoder(c->cap), c->feats, B, &m->p.dec, so);
    }
    for (int b = 0; b < B && !st; b++) {
        saccade_result *r = sac_calloc(1, sizeof(*r));
        if (r) r->h = sac_calloc((size_t)SAC_MAX(counts[b], 1), sizeof(*r->h));
        if (!r || !r->h) {
            saccade_result_free(r);
            st = SAC_ERR_NOMEM;
            break;
        }
        r->rows = m->grid_h, r->cols = m->grid_w;
        results[b] = r;
        for (int k = 0; k < counts[b] && !st; k++) {
            Caption *cap = &caps[(size_t)b * nb + k];
            r->count = k + 1;
            st = hypothesis_fill(&r->h[k], m, cap);
            if (!st && so->want_alphas) {
                r->h[k].word_lp = sac_calloc((size_t)cap->n + 1, sizeof(float));
                st = r->h[k].word_lp ? word_logprobs(c, c->feats + b * PE, cap, r->h[k].word_lp) : SAC_ERR_NOMEM;
            }
        }
    }
    for (size_t i = 0; caps && i < (size_t)B * nb; i++) caption_clear(&caps[i]);
    free(caps), free(counts);
    if (st)
        for (int b = 0; b < B; b++) saccade_result_free(results[b]), results[b] = NULL;
    return st;
}

/* The common start of a caption call: c valid, results cleared, the options converted. */
static int caption_begin(saccade_captioner *c, const char *fn, saccade_result **results, int n,
                         const saccade_options *opt, SearchOptions *so)
{
    if (!results) return fail(SAC_ERR_INVALID, "%s: result is NULL", fn);
    for (int i = 0; i < n; i++) results[i] = NULL;
    return search_options(c->model->m, opt, so);
}

int saccade_caption_inputs(saccade_captioner *c, const saccade_input *const *inputs, int n,
                           const saccade_options *opt, saccade_result **results)
{
    if (!c) {
        for (int i = 0; results && i < n && i <= MAX_INPUTS; i++) results[i] = NULL;
        return fail(SAC_ERR_INVALID, "saccade_caption_inputs: captioner is NULL");
    }
    sac_log_capture(c->err, sizeof(c->err));
    SearchOptions so;
    int st = n < 1 || n > MAX_INPUTS ? fail(SAC_ERR_INVALID, "saccade_caption_inputs: n is %d, expected 1..%d", n, MAX_INPUTS)
                                     : caption_begin(c, "saccade_caption_inputs", results, n, opt, &so);
    if (!st && !inputs) st = fail(SAC_ERR_INVALID, "saccade_caption_inputs: inputs is NULL");
    for (int i = 0; i < n && !st; i++) {
        if (!inputs[i]) st = fail(SAC_ERR_INVALID, "saccade_caption_inputs: inputs[%d] is NULL", i);
        else if (inputs[i]->model != c->model)
            st = fail(SAC_ERR_INVALID, "saccade_caption_inputs: inputs[%d] was prepared for another model", i);
    }
    if (!st) st = ensure_capacity(c, n, so.beam);
    const int S = c->model->m->cfg.enc.image_size;
    for (int i = 0; i < n && !st; i++)
        memcpy(c->images + (size_t)i * 3 * S * S, inputs[i]->x, sizeof(float) * 3 * S * S);
    if (!st) st = caption_batch(c, n, &so, results);
    sac_log_capture(NULL, 0);
    if (st && !c->err[0]) snprintf(c->err, sizeof(c->err), "%s", sac_strerror(st));
    return st;
}

/* Caption one image (a checked image, or one decoded here) into *result. */
static int caption_one(saccade_captioner *c, const SacImage *img, const SearchOptions *so, saccade_result **result)
{
    const Model *m = c->model->m;
    int st = ensure_capacity(c, 1, so->beam);
    if (!st) st = sac_image_preprocess(img, m->cfg.enc.image_size, m->cfg.mean, m->cfg.std, c->images);
    return st ? st : caption_batch(c, 1, so, result);
}

enum { FROM_FILE, FROM_MEMORY, FROM_PIXELS };

/* What the three single-image calls share: decode (path or bytes) or take the pixels. */
static int caption_single(saccade_captioner *c, int from, const char *path, const void *data, size_t size,
                          const saccade_image *image, const saccade_options *opt, saccade_result **result)
{
    static const char *const names[] = {"saccade_caption_file", "saccade_caption_memory", "saccade_caption_image"};
    const char *fn = names[from];
    if (!c) {
        if (result) *result = NULL;
        return fail(SAC_ERR_INVALID, "%s: captioner is NULL", fn);
    }
    sac_log_capture(c->err, sizeof(c->err));
    SearchOptions so;
    int st = caption_begin(c, fn, result, 1, opt, &so);
    const Model *m = c->model->m;
    const int S = m->cfg.enc.image_size;
    SacImage img = {0};
    if (!st && from == FROM_PIXELS) {
        st = image_check(fn, image);
        if (!st) st = ensure_capacity(c, 1, so.beam);
        if (!st) st = image_prepare(m, image, c->images);
        if (!st) st = caption_batch(c, 1, &so, result);
    } else if (!st) {
        if (from == FROM_FILE)
            st = path ? sac_image_load_scaled(path, S, &img, 0) : fail(SAC_ERR_INVALID, "%s: path is NULL", fn);
        else
            st = data ? sac_image_load_memory_scaled(data, size, "<memory>", S, &img, 0)
                      : fail(SAC_ERR_INVALID, "%s: data is NULL", fn);
        if (!st) st = caption_one(c, &img, &so, result);
    }
    sac_image_free(&img);
    sac_log_capture(NULL, 0);
    if (st && !c->err[0]) snprintf(c->err, sizeof(c->err), "%s", sac_strerror(st));
    return st;
}

int saccade_caption_file(saccade_captioner *c, const char *path, const saccade_options *opt, saccade_result **result)
{
    return caption_single(c, FROM_FILE, path, NULL, 0, NULL, opt, result);
}

int saccade_caption_memory(saccade_captioner *c, const void *data, size_t size, const saccade_options *opt,
                           saccade_result **result)
{
    return caption_single(c, FROM_MEMORY, NULL, data, size, NULL, opt, result);
}

int saccade_caption_image(saccade_captioner *c, const saccade_image *image, const saccade_options *opt,
                          saccade_result **result)
{
    return caption_single(c, FROM_PIXELS, NULL, NULL, 0, image, opt, result);
}
