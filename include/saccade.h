/*
 * saccade.h - libsaccade: caption photos in C. The public, stable interface of saccade: the
 * program `saccade` captions, attends and batches through this header alone.
 *
 * A model (MobileNetV2 or conv encoder -> soft attention -> LSTM decoder, one safetensors file)
 * is loaded once; captioners made from it turn images into captions by beam search with length
 * normalisation, optionally with each word's log-probability and attention map (where the
 * model looked for it, on a grid of rows x cols cells over the whole, squashed, photo).
 *
 *     saccade_model *m;
 *     char err[256];
 *     if (saccade_model_load("flickr8k.safetensors", &m, err, sizeof(err))) { puts(err); ... }
 *     saccade_captioner *c = saccade_captioner_create(m);
 *     saccade_result *r;
 *     if (saccade_caption_file(c, "photo.jpg", NULL, &r) == SACCADE_OK)
 *         printf("%s\n", saccade_result_text(r, 0));
 *     else
 *         printf("%s\n", saccade_captioner_error(c));
 *     saccade_result_free(r);
 *     saccade_captioner_free(c);
 *     saccade_model_free(m);
 *
 * Conventions. Every name starts with saccade_ / SACCADE_. Handles are opaque. Fallible calls
 * return SACCADE_OK (0) or a negative SACCADE_ERR_* code, which saccade_strerror turns into
 * text; the message saying what went wrong (naming the file, what was expected and what was
 * found) is kept in the captioner (saccade_captioner_error) or, for calls that have no object
 * yet, written into the caller's err buffer (err may be NULL). Arguments are validated: a NULL
 * handle or pointer, a size out of range or inconsistent options give SACCADE_ERR_INVALID,
 * never a crash. Nothing here calls exit() or abort() on bad input. Every object returned is
 * owned by the caller and freed with its *_free function; *_free(NULL) does nothing.
 *
 * Thread-safety. A saccade_model is read-only once loaded: any number of captioners, on any
 * threads, may share one model (it must outlive them). A saccade_captioner holds the buffers of
 * one decoding at a time: use one captioner per thread (or guard it with a lock). Results,
 * inputs and images are plain data, usable from any thread. The process-wide settings
 * (saccade_set_threads, saccade_set_log, saccade_set_log_level) are meant to be set before
 * captioning starts, not while other threads caption.
 *
 * Threads. Each call runs its matrix work on one process-wide pool of compute threads (by
 * default as many as cores, or $SACCADE_THREADS). Captions do not depend on the pool size.
 * When several threads each run a captioner, set the pool to 1 (saccade_set_threads(1)): the
 * threads are then the parallelism (a call made while another occupies the pool runs serially
 * in its own thread anyway, with the same results).
 *
 * Messages. Errors and warnings are also logged: by default to stderr as "saccade: error: ...",
 * at most up to the level set by saccade_set_log_level, or to a callback (saccade_set_log) that
 * receives every message and decides itself.
 *
 * Versioning: SACCADE_API_VERSION_* below; the shared library's soname changes with the major.
 */
#ifndef SACCADE_H
#define SACCADE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SACCADE_API_VERSION_MAJOR 1
#define SACCADE_API_VERSION_MINOR 0
#define SACCADE_API_VERSION_PATCH 0

/* The library's version text, e.g. "0.1.0" (the saccade release it was built from). */
const char *saccade_version(void);
/* The API version the library implements: major << 16 | minor << 8 | patch. */
unsigned saccade_api_version(void);

/* ---- status codes ---- */

enum {
    SACCADE_OK = 0,
    SACCADE_ERR_NOMEM = -1,      /* out of memory */
    SACCADE_ERR_IO = -2,         /* a file could not be opened or read */
    SACCADE_ERR_FORMAT = -3,     /* a file's contents are malformed (model, image) */
    SACCADE_ERR_INVALID = -4,    /* an argument is out of range or NULL */
    SACCADE_ERR_NOTFOUND = -5,   /* a file does not exist */
    SACCADE_ERR_UNSUPPORTED = -7 /* valid input this build cannot handle (an image too large) */
};

/* A short text for a status code ("out of memory", ...); never NULL. */
const char *saccade_strerror(int status);

/* ---- messages ---- */

enum { SACCADE_LOG_NONE = -1, SACCADE_LOG_ERROR = 0, SACCADE_LOG_WARN = 1, SACCADE_LOG_INFO = 2, SACCADE_LOG_DEBUG = 3 };

/* A log callback: level SACCADE_LOG_*, the message (no newline; valid only during the call). */
typedef void (*saccade_log_fn)(int level, const char *message, void *user);
/* Send every message to fn (with user) instead of stderr; NULL restores stderr. Process-wide;
 * fn may be called from any thread that calls into the library. */
void saccade_set_log(saccade_log_fn fn, void *user);
/* stderr shows messages up to this level (default SACCADE_LOG_INFO; SACCADE_LOG_NONE silences
 * it: the messages of failed calls are still kept, see saccade_captioner_error). Process-wide. */
void saccade_set_log_level(int level);

/* ---- threads ---- */

/* Size the compute pool: n >= 1 threads, n <= 0 all online cores. Process-wide; not while a
 * caption is being computed. */
void saccade_set_threads(int n);
/* The pool's size. */
int saccade_threads(void);

/* ---- models ---- */

typedef struct saccade_model saccade_model;

/* Load a model file (safetensors written by `saccade train`). On success *model is set and
 * SACCADE_OK returned; else *model = NULL, a negative code, and the reason in err (up to
 * err_size bytes, NUL-terminated; err may be NULL). */
int saccade_model_load(const char *path, saccade_model **model, char *err, size_t err_size);
/* As saccade_model_load, from size bytes at data (copied: the buffer may be freed after). */
int saccade_model_load_memory(const void *data, size_t size, saccade_model **model, char *err,
                              size_t err_size);
/* Free a model; every captioner made from it must be freed first. NULL: nothing. */
void saccade_model_free(saccade_model *model);

/* The side in pixels of the square the model sees (photos are squashed to it); 0 on NULL. */
int saccade_model_input_size(const saccade_model *model);
/* The attention grid: rows x cols cells covering the squashed photo (0 x 0 on NULL). */
void saccade_model_grid(const saccade_model *model, int *rows, int *cols);
/* Most decoding steps (words + the end of the caption); 0 on NULL. */
int saccade_model_max_length(const saccade_model *model);

/* ---- decoding options ---- */

typedef struct saccade_options {
    int beam;             /* beam width, 1..64 (default 3); 1 = greedy decoding */
    int nbest;            /* distinct captions to return, 1..beam (default 1) */
    int max_length;       /* most steps, words + end, 1..saccade_model_max_length; 0 = that (default) */
    float length_norm;    /* beam score = log-probability / steps^length_norm, 0..10 (default 0.7) */
    int no_repeat_word;   /* 1: never the same word twice in a row (default 0) */
    int no_repeat_bigram; /* 1: never the same two words twice in one caption (default 1) */
    int details;          /* 1: also each word's log-probability and attention map (default 0) */
    int reserved[8];      /* zero (saccade_options_default sets them) */
} saccade_options;

/* The defaults above: what `saccade caption` does without options. */
void saccade_options_default(saccade_options *opt);

/* ---- images ---- */

/* 8-bit RGB pixels, interleaved, rows top to bottom. */
typedef struct saccade_image {
    uint8_t *rgb;      /* height rows of width R, G, B bytes */
    int width, height; /* >= 1 */
    int stride;        /* bytes from one row to the next (>= 3 * width); 0 = 3 * width */
} saccade_image;

/* Decode an image file (JPEG, PNG, BMP, GIF's first frame, TGA, PSD, HDR, PNM) to RGB, EXIF
 * orientation applied, alpha composited over white. min_side >= 1 allows a large JPEG to be
 * decoded at 1/2, 1/4 or 1/8 of its size while both sides stay >= min_side (what captioning
 * does with saccade_model_input_size); 0 decodes at full size. On success out->rgb is owned by
 * the caller (saccade_image_free); on failure *out is zeroed and err says why. */
int saccade_image_load(const char *path, int min_side, saccade_image *out, char *err, size_t err_size);
/* As saccade_image_load, from size encoded bytes at data. */
int saccade_image_load_memory(const void *data, size_t size, int min_side, saccade_image *out, char *err,
                              size_t err_size);
/* Free out->rgb (of an image from saccade_image_load*) and zero *img. NULL: nothing. */
void saccade_image_free(saccade_image *img);

/* An image prepared for one model: squashed to its input size and normalised (a few hundred
 * KB, whatever the photo's size). Prepare images on other threads while a captioner runs. */
typedef struct saccade_input saccade_input;

/* Prepare image for model. SACCADE_OK and *input (free with saccade_input_free), or a code
 * and the reason in err. Thread-safe for a shared model. */
int saccade_input_create(const saccade_model *model, const saccade_image *image, saccade_input **input,
                         char *err, size_t err_size);
void saccade_input_free(saccade_input *input);

/* ---- captioning ---- */

typedef struct saccade_captioner saccade_captioner;
typedef struct saccade_result saccade_result;

/* A captioner for model (borrowed: it must outlive the captioner). NULL when out of memory
 * or model is NULL. Its buffers grow to the largest beam and batch asked for. */
saccade_captioner *saccade_captioner_create(const saccade_model *model);
void saccade_captioner_free(saccade_captioner *c);
/* The message of the captioner's last failed call ("" after a success, or for NULL). Valid
 * until the next call on c. */
const char *saccade_captioner_error(const saccade_captioner *c);

/* Caption one image file / encoded image in memory / RGB pixels. opt NULL: the defaults. On
 * success *result is set (free with saccade_result_free); on failure *result = NULL, a code is
 * returned and saccade_captioner_error(c) says why. */
int saccade_caption_file(saccade_captioner *c, const char *path, const saccade_options *opt,
                         saccade_result **result);
int saccade_caption_memory(saccade_captioner *c, const void *data, size_t size, const saccade_options *opt,
                           saccade_result **result);
int saccade_caption_image(saccade_captioner *c, const saccade_image *image, const saccade_options *opt,
                          saccade_result **result);
/* Caption n (1..1024) prepared inputs together (their pictures are encoded as one batch: the
 * fastest way through many photos); results[i] gets input i's result. All or nothing: on
 * failure every results[i] is NULL. */
int saccade_caption_inputs(saccade_captioner *c, const saccade_input *const *inputs, int n,
                           const saccade_options *opt, saccade_result **results);

/* ---- results: up to nbest captions of one image, best first ---- */

void saccade_result_free(saccade_result *r);
/* Captions held (1..nbest: fewer when the beam found fewer distinct ones); 0 on NULL. */
int saccade_result_count(const saccade_result *r);
/* The attention grid of the maps (as saccade_model_grid). */
void saccade_result_grid(const saccade_result *r, int *rows, int *cols);

/* For caption k (0 = best) of r; out of range k (or NULL r) gives NULL / 0 / NAN: */
/* its words joined by spaces (owned by r). */
const char *saccade_result_text(const saccade_result *r, int k);
/* log p(caption | photo): the sum of its words' and (when it ended) the end's log-probabilities. */
double saccade_result_logprob(const saccade_result *r, int k);
/* 1 when the model ended the caption, 0 when it ran out of steps (max_length). */
int saccade_result_ended(const saccade_result *r, int k);
/* How many words. */
int saccade_result_words(const saccade_result *r, int k);
/* Word t (0-based; owned by r). */
const char *saccade_result_word(const saccade_result *r, int k, int t);
/* With details: log p(word t | the words before it, photo); t == saccade_result_words gives the
 * end's (0 when the caption did not end). NAN without details. */
double saccade_result_word_logprob(const saccade_result *r, int k, int t);
/* With details: word t's attention map, rows * cols weights row by row, summing to 1 (owned by
 * r). NULL without details. */
const float *saccade_result_attention(const saccade_result *r, int k, int t);

#ifdef __cplusplus
}
#endif

#endif
