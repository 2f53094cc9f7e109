/*
 * cmd_batch.c - `saccade batch`: caption every image under some directories with one model
 * loaded once and a fixed set of worker threads, each with its own captioner (libsaccade,
 * saccade.h: the model is shared read-only). Each result is written and flushed as it
 * completes, so a killed run loses nothing and --resume carries on from the file.
 *
 * The list is cut into groups of --batch images (fixed slices of the sorted list). The workers
 * are the process's one pool of compute threads (the library's pool is set to one thread
 * meanwhile) and share two kinds of work: decoding one image of the next groups into a ring
 * of group slots (saccade_image_load, a large JPEG decoded scaled, then saccade_input_create),
 * and running the model on the next fully decoded group (saccade_caption_inputs, the group's
 * images encoded together). A worker takes the model step when the next group is ready, else
 * decodes ahead, so while one worker encodes and decodes group k the others decode group
 * k + 1 (and, with few groups, every core decodes the one group instead of one worker alone).
 * A group's failed files are recorded when its model step runs, before its captions, as when
 * one worker did everything, so with one thread the records come in the same order.
 *
 * A group is a fixed slice of the sorted list and a lone image is encoded as a group of two
 * (run_group), so a file's caption does not depend on the thread count: the same run gives the
 * same captions with any --threads.
 *
 * The run's state is one struct, Batch; cmd_batch goes through parse_args, batch_select (walk
 * the tree, lock and open the results, choose what is left to do), batch_setup (model,
 * workers, slots), batch_caption (the workers, progress), batch_finish (close the results,
 * the exit status) and batch_teardown.
 *
 * Size letters: P grid positions (attention maps), T words.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "batch.h"
#include "batch_shard.h"
#include "cli.h"
#include "draw.h"
#include "image.h"
#include "output.h"
#include "sac.h"
#include "saccade.h"

#define THUMB_SIDE 160  /* gallery thumbnails: longest side, pixels */
#define PANEL_SIDE 96   /* gallery attention panels */
#define PANEL_COLUMNS 6
#define BATCH_GROUP 16 /* images a worker captions together (default of --batch) */
/* The decoding options batch takes (cli.h's table). */
#define BATCH_DECODING (CLI_DEC_BEAM | CLI_DEC_MAX_LEN | CLI_DEC_LEN_NORM | CLI_DEC_REPEATS)

#define ERR_LEN 1024 /* an error record's message */

/* One group's decoded images, filled ahead of its model step (a ring of Batch.n_slots). */
typedef struct {
    size_t group;           /* the group this slot holds or waits for (slot = group % n_slots) */
    int claimed, decoded;   /* its images handed out to decode, and decoded (or failed) */
    saccade_input **inputs; /* (G) the images prepared for the model, at their positions in the group */
    SacImage *thumbs;       /* (G) gallery thumbnails (html only) */
    int *st;                /* (G) each image's decoding status */
    char (*errs)[ERR_LEN];  /* (G) the message when one failed */
} Slot;

typedef struct Batch Batch;

typedef struct {
    Batch *b;
    saccade_captioner *c;
    pthread_t tid;
    const saccade_input **in; /* (G + 1) one group's decoded inputs (+ the copy of a lone one) */
    saccade_result **res;     /* (G + 1) their captions */
    int *idx;                 /* (G) the positions in the group of the images decoded */
} Worker;

struct Batch {
    /* the command line */
    const char *const *roots; /* (n_roots) the DIR arguments */
    int n_roots;
    const char *argv0, *out_path, *model_path; /* out_path NULL: stdout */
    char *shard_path;         /* -o with {shard} replaced (owned), or NULL */
    int resume, attention, quiet, shard_i, shard_n;
    long threads, group_opt;
    CliDecode dec;
    BatchFormat fmt;
    /* what there is to do */
    BatchFileList files;
    size_t *todo;              /* (n_todo) indices into files */
    size_t n_todo, n_shard, resumed, resumed_errors;
    BatchOutput *out;
    SacLock *lock;
    /* the model and the workers */
    saccade_model *m;
    saccade_options opt;
    int input_side, grid_h, grid_w;
    int group;                 /* images captioned together by one worker */
    Worker *w;                 /* (n_threads) */
    int n_threads;
    size_t n_groups;
    Slot *slots;               /* (n_slots) */
    int n_slots;
    double seconds;            /* the captioning's wall time */
    /* shared by the workers and the progress loop, under lock */
    pthread_mutex_t lock_m;
    pthread_cond_t cond; /* the progress loop waits here */
    pthread_cond_t work; /* workers wait here for a decoded group or a free slot */
    size_t next_model;   /* the next group to run through the model */
    size_t next_decode;  /* the first group with images not yet handed out to decode */
    size_t done, failed;
    int running, stop, write_failed;
    /* stderr: log messages and the progress bar take turns */
    pthread_mutex_t err_lock;
    int tty, bar_shown;
};

/* Every message goes through here (saccade_set_log): the progress bar is cleared first. */
static void log_sink(int level, const char *msg, void *user)
{
    Batch *b = user;
    if (level > (b->quiet ? SACCADE_LOG_WARN : SACCADE_LOG_INFO)) return;
    static const char *prefix[] = {"error: ", "warning: ", "", ""};
    char text[2048];
    snprintf(text, sizeof(text), "%s", msg);
    sac_term_clean(text); /* a file name's control characters (ANSI escapes) do not reach the terminal */
    pthread_mutex_lock(&b->err_lock);
    if (b->bar_shown) fputs("\r\033[K", stderr);
    b->bar_shown = 0;
    fprintf(stderr, "saccade: %s%s\n", prefix[level < 0 ? 0 : level > 3 ? 3 : level], text);
    pthread_mutex_unlock(&b->err_lock);
}

static void help(FILE *f)
{
    fprintf(f,
            "usage: saccade batch DIR... [-o FILE] [options]\n\n"
            "Caption every image under the DIRs (recursively; files may be given too). The model is\n"
            "loaded once and the images are captioned in parallel, one worker thread per core.\n"
            "Images are chosen by extension (jpg jpeg png gif bmp tga psd hdr pic pnm ppm pgm ...) or,\n"
            "whatever their name, by content (JPEG, PNG, GIF, BMP, PSD, HDR, PNM); names starting with\n"
            "'.' are skipped, symbolic links are followed and each directory is entered once.\n"
            "A file that cannot be read or decoded is reported and gets an error record; the batch\n"
            "goes on. Exit status: 0 all captioned, 1 some failed, or a directory, a dangling link or\n"
            "a file could not be read (each is reported), or a runtime error; 2 usage, also when FILE\n"
            "is in use by another run (a lock, FILE.lock, names it) or is one of the inputs.\n\n"
            "options:\n"
            "  -o, --output FILE   results (default or '-': stdout); each record is written and flushed as\n"
            "                      its image completes (in completion order). A symbolic link is\n"
            "                      followed; a device or FIFO is written directly\n"
            "  --format F          jsonl (default; or from FILE's extension .jsonl .tsv .json .html):\n"
            "      jsonl  {\"image\": PATH, \"caption\": TEXT, \"logprob\": X} per line, or\n"
            "             {\"image\": PATH, \"error\": MESSAGE}; bytes of PATH that are not valid\n"
            "             UTF-8 are written as the text \\xHH (also in coco and html)\n"
            "      tsv    PATH<TAB>CAPTION, or PATH<TAB><TAB>error=MESSAGE (\\ TAB LF CR in PATH\n"
            "             written as \\\\ \\t \\n \\r)\n"
            "      coco   COCO results [{\"image_id\": ID, \"caption\": TEXT}] sorted by path, as\n"
            "             coco-caption reads them; ID is the number of COCO_*_<n>.jpg / <n>.jpg files,\n"
            "             else the file name (the path when two files share a name); failures are\n"
            "             left out. The JSON is written at the end; meanwhile every record goes to\n"
            "             FILE.partial (jsonl), which --resume continues and which is removed once\n"
            "             FILE is complete. To stdout, everything is printed at the end.\n"
            "      html   a gallery: thumbnails inlined as PNG, captions, failures; with --attention\n"
            "             also each word's attention map over the photo\n"
            "  --model FILE        (default: models/flickr8k.safetensors or $SACCADE_MODEL)\n");
    cli_decode_help(f, BATCH_DECODING, 20);
    fprintf(f,
            "  --threads N         worker threads (default 0 = all cores)\n"
            "  --batch N           images each worker captions together (default %d); groups are\n"
            "                      fixed slices of the sorted list, so the captions do not depend\n"
            "                      on --threads\n"
            "  --resume            continue FILE: images already in it (captioned or failed) are\n"
            "                      skipped, a line torn by a kill is cut off and redone; refused\n"
            "                      when FILE holds records of images outside this run's --shard\n"
            "  --shard I/N         caption only shard I of N (0 <= I < N <= 1000000), by a stable hash\n"
            "                      of each file's path below its DIR: N machines running shards\n"
            "                      0..N-1 of one directory cover it exactly once\n"
            "  --shard auto        the shard from the launcher: OMPI_COMM_WORLD_RANK/SIZE (mpirun),\n"
            "                      SLURM_ARRAY_TASK_ID/COUNT (sbatch --array), SLURM_PROCID/NTASKS (srun);\n"
            "                      with more than one shard, -o needs {shard} in its name, which\n"
            "                      becomes I-of-N (also with --shard I/N)\n"
            "  --merge             saccade batch --merge -o FILE SHARD.jsonl...: one result file\n"
            "                      (jsonl, tsv or coco, sorted by path) from the shards' jsonl\n"
            "  --attention         html: draw where the model looked for each word\n"
            "  --quiet             no progress or summary on stderr (errors are still reported)\n"
            "  -h, --help\n",
            BATCH_GROUP);
}

/* The thumbnail of a photo: at most THUMB_SIDE on its longer side, aspect kept. */
static int make_thumbnail(const SacImage *img, SacImage *thumb)
{
    int side = SAC_MAX(img->w, img->h), tw = img->w, th = img->h;
    if (side > THUMB_SIDE) {
        tw = SAC_MAX(1, (int)((long)img->w * THUMB_SIDE / side));
        th = SAC_MAX(1, (int)((long)img->h * THUMB_SIDE / side));
    }
    return sac_image_resize(img, tw, th, thumb);
}

/* The gallery's pictures as base64 PNGs: the thumbnail and (with --attention) the attention
 * figure of the best caption, drawn over the thumbnail (the panels are smaller than it). */
static int gallery_images(const Batch *b, const SacImage *thumb, const saccade_result *res, char **thumb64,
                          char **att64)
{
    if (!(*thumb64 = cli_png_base64(thumb->rgb, thumb->w, thumb->h, 3, 3 * thumb->w))) return SAC_ERR_NOMEM;
    if (!b->attention) return SAC_OK;
    const int n = saccade_result_words(res, 0);
    const size_t P = (size_t)b->grid_h * b->grid_w;
    SacImage fig = {0};
    const char **words = sac_calloc((size_t)n + 1, sizeof(*words));
    float *alphas = sac_malloc(sizeof(float) * ((size_t)n * P + 1)); /* (n, P) */
    int st = words && alphas ? SAC_OK : SAC_ERR_NOMEM;
    for (int t = 0; t < n && !st; t++) {
        words[t] = saccade_result_word(res, 0, t);
        memcpy(alphas + t * P, saccade_result_attention(res, 0, t), sizeof(float) * P);
    }
    if (!st)
        st = attention_draw(thumb, alphas, n, b->grid_h, b->grid_w, words, PANEL_SIDE, SAC_MIN(n + 1, PANEL_COLUMNS),
                            &fig);
    if (!st && !(*att64 = cli_png_base64(fig.rgb, fig.w, fig.h, 3, 3 * fig.w))) st = SAC_ERR_NOMEM;
    free(words), free(alphas);
    sac_image_free(&fig);
    return st;
}

/* Write the record of todo[i]: its caption when st == SAC_OK, else the error (err: the message
 * of the failure, may be empty), and count it. Returns the write's status. */
static int finish_one(Worker *w, size_t i, const SacImage *thumb, const saccade_result *res, int st, const char *err)
{
    Batch *b = w->b;
    const char *path = b->files.files[b->todo[i]].path;
    char err2[ERR_LEN] = "";
    char *thumb64 = NULL, *att64 = NULL;
    sac_log_capture(err2, sizeof(err2));
    if (!st && b->fmt == BATCH_HTML) st = gallery_images(b, thumb, res, &thumb64, &att64);
    if (st && !err[0] && !err2[0]) sac_error("%s: %s", path, sac_strerror(st));
    sac_log_capture(NULL, 0);
    BatchRecord r = {path, NULL, 0.0, NULL, thumb64, att64, (long)b->todo[i]};
    if (st) {
        r.thumb_b64 = r.attention_b64 = NULL;
        r.error = err[0] ? err : err2[0] ? err2 : sac_strerror(st);
    } else {
        r.caption = saccade_result_text(res, 0);
        r.logprob = saccade_result_logprob(res, 0);
    }
    int wst = batch_output_write(b->out, &r);
    free(thumb64), free(att64);
    pthread_mutex_lock(&b->lock_m);
    b->done++;
    b->failed += st != SAC_OK;
    if (wst) {
        b->stop = b->write_failed = 1;
        pthread_cond_broadcast(&b->work);
    }
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock_m);
    return wst;
}

/* Images in group g. */
static int group_size(const Batch *b, size_t g)
{
    return (int)SAC_MIN((size_t)b->group, b->n_todo - g * (size_t)b->group);
}

/* Decode image k of group g into its slot: the model's input (and a thumbnail for the gallery),
 * the decoded photo let go at once; a failure is kept with its message for run_group. */
static void decode_one(Batch *b, Slot *s, size_t g, int k)
{
    char *err = s->errs[k];
    saccade_image img;
    int st = saccade_image_load(b->files.files[b->todo[g * b->group + k]].path, b->input_side, &img, err, ERR_LEN);
    if (!st) st = saccade_input_create(b->m, &img, &s->inputs[k], err, ERR_LEN);
    if (!st && b->fmt == BATCH_HTML) {
        const SacImage view = {img.width, img.height, img.rgb}; /* rows of 3 * width bytes */
        sac_log_capture(err, ERR_LEN);
        st = make_thumbnail(&view, &s->thumbs[k]);
        sac_log_capture(NULL, 0);
    }
    saccade_image_free(&img);
    if (st) {
        sac_image_free(&s->thumbs[k]);
        saccade_input_free(s->inputs[k]);
        s->inputs[k] = NULL;
    }
    s->st[k] = st;
}

/* Caption group g, whose images slot s holds decoded: the failures' records first, then one
 * saccade_caption_inputs for the images that decoded. */
static void run_group(Worker *w, Slot *s, size_t g)
{
    Batch *b = w->b;
    const size_t i0 = g * (size_t)b->group;
    const int n = group_size(b, g);
    int nv = 0, stopped = 0;
    for (int k = 0; k < n && !stopped; k++) {
        if (s->st[k]) {
            stopped = finish_one(w, i0 + k, NULL, NULL, s->st[k], s->errs[k]) != SAC_OK;
            continue;
        }
        w->in[nv] = s->inputs[k];
        w->idx[nv++] = k;
    }
    if (nv && !stopped) {
        /* A lone image goes through as two copies: the encoder tiles one image differently from
         * a group (bands of rows instead of images side by side), which may round differently,
         * and the captions should not depend on how the list fell into groups (which changes
         * with --resume and --shard). */
        int pad = nv == 1 && b->group > 1;
        if (pad) w->in[1] = w->in[0];
        int st = saccade_caption_inputs(w->c, w->in, nv + pad, &b->opt, w->res);
        if (pad) saccade_result_free(w->res[1]), w->res[1] = NULL;
        char err[ERR_LEN];
        snprintf(err, sizeof(err), "%s", st ? saccade_captioner_error(w->c) : "");
        for (int k = 0; k < nv && !stopped; k++) {
            int stk = st;
            char *errk = s->errs[w->idx[k]];
            if (st && nv > 1) { /* one at a time, so that one image cannot fail the others */
                stk = saccade_caption_inputs(w->c, &w->in[k], 1, &b->opt, &w->res[k]);
                snprintf(errk, ERR_LEN, "%s", stk ? saccade_captioner_error(w->c) : "");
            }
            stopped = finish_one(w, i0 + (size_t)w->idx[k], &s->thumbs[w->idx[k]], w->res[k], stk,
                                 st && nv > 1 ? errk : err);
        }
    }
    for (int k = 0; k < nv; k++) saccade_result_free(w->res[k]), w->res[k] = NULL;
    for (int k = 0; k < n; k++) {
        sac_image_free(&s->thumbs[k]);
        saccade_input_free(s->inputs[k]);
        s->inputs[k] = NULL;
    }
}

/* Take work until none is left: the model step of the next group when it is decoded (groups in
 * order, fixed slices of the list, whoever takes them: the captions do not depend on the
 * number of threads), else the next image to decode whose group has a slot, else wait. */
static void *worker_main(void *arg)
{
    Worker *w = arg;
    Batch *b = w->b;
    pthread_mutex_lock(&b->lock_m);
    while (!b->stop && b->next_model < b->n_groups) {
        size_t g = b->next_model;
        Slot *s = &b->slots[g % (size_t)b->n_slots];
        if (s->group == g && s->decoded == group_size(b, g)) {
            b->next_model++;
            pthread_mutex_unlock(&b->lock_m);
            run_group(w, s, g);
            pthread_mutex_lock(&b->lock_m);
            s->group += (size_t)b->n_slots; /* free for the group n_slots further on */
            s->claimed = s->decoded = 0;
            pthread_cond_broadcast(&b->work);
            continue;
        }
        g = b->next_decode;
        s = g < b->n_groups ? &b->slots[g % (size_t)b->n_slots] : NULL;
        if (s && s->group == g) {
            int k = s->claimed++;
            if (s->claimed == group_size(b, g)) b->next_decode++;
            pthread_mutex_unlock(&b->lock_m);
            decode_one(b, s, g, k);
            pthread_mutex_lock(&b->lock_m);
            if (++s->decoded == group_size(b, g)) pthread_cond_broadcast(&b->work);
            continue;
        }
        pthread_cond_wait(&b->work, &b->lock_m);
    }
    b->running--;
    pthread_cond_broadcast(&b->work); /* a stop: the others leave too */
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock_m);
    return NULL;
}

static void worker_free(Worker *w)
{
    saccade_captioner_free(w->c);
    free(w->in), free(w->res), free(w->idx);
}

static int worker_init(Worker *w, Batch *b)
{
    const int G = b->group;
    w->b = b;
    w->c = saccade_captioner_create(b->m);
    w->in = sac_calloc((size_t)G + 1, sizeof(*w->in));
    w->res = sac_calloc((size_t)G + 1, sizeof(*w->res));
    w->idx = sac_calloc((size_t)G, sizeof(*w->idx));
    return w->c && w->in && w->res && w->idx ? SAC_OK : SAC_ERR_NOMEM;
}

static void slots_free(Batch *b)
{
    for (int i = 0; b->slots && i < b->n_slots; i++) {
        Slot *s = &b->slots[i];
        for (int k = 0; k < b->group; k++) {
            if (s->thumbs) sac_image_free(&s->thumbs[k]);
            if (s->inputs) saccade_input_free(s->inputs[k]);
        }
        free(s->inputs), free(s->thumbs), free(s->st), free(s->errs);
    }
    free(b->slots);
    b->slots = NULL;
}

/* n slots of G images each (slot i waits for group i). */
static int slots_init(Batch *b, int n)
{
    const int G = b->group;
    if (!(b->slots = sac_calloc((size_t)n, sizeof(*b->slots)))) return SAC_ERR_NOMEM;
    b->n_slots = n;
    for (int i = 0; i < n; i++) {
        Slot *s = &b->slots[i];
        s->group = (size_t)i;
        s->inputs = sac_calloc((size_t)G, sizeof(*s->inputs));
        s->thumbs = sac_calloc((size_t)G, sizeof(*s->thumbs));
        s->st = sac_calloc((size_t)G, sizeof(*s->st));
        s->errs = sac_calloc((size_t)G, sizeof(*s->errs));
        if (!s->inputs || !s->thumbs || !s->st || !s->errs) return SAC_ERR_NOMEM;
    }
    return SAC_OK;
}

/* One progress line: bar, done/total, rate, ETA, failures. */
static void progress_draw(Batch *b, size_t done, size_t failed, double elapsed, int final)
{
    enum { WIDTH = 24 };
    double frac = b->n_todo ? (double)done / (double)b->n_todo : 1.0;
    double rate = elapsed > 0 ? done / elapsed : 0.0;
    char bar[WIDTH + 1];
    int fill = (int)(frac * WIDTH);
    for (int k = 0; k < WIDTH; k++) bar[k] = k < fill ? '#' : '.';
    bar[WIDTH] = 0;
    char eta[32] = "--:--";
    if (rate > 0 && done < b->n_todo) {
        long s = (long)((double)(b->n_todo - done) / rate + 0.5);
        if (s >= 3600) snprintf(eta, sizeof(eta), "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
        else snprintf(eta, sizeof(eta), "%ld:%02ld", s / 60, s % 60);
    } else if (done >= b->n_todo) {
        snprintf(eta, sizeof(eta), "0:00");
    }
    pthread_mutex_lock(&b->err_lock);
    fprintf(stderr, "%s[%s] %zu/%zu %3.0f%%  %.1f img/s  ETA %s  %zu failed%s", b->tty ? "\r\033[K" : "", bar, done,
            b->n_todo, 100.0 * frac, rate, eta, failed, b->tty && !final ? "" : "\n");
    b->bar_shown = b->tty && !final;
    fflush(stderr);
    pthread_mutex_unlock(&b->err_lock);
}

/* Start the workers, show progress until they have all stopped. SAC_OK or a negative status. */
static int workers_run(Batch *b)
{
    Worker *w = b->w;
    const int n_threads = b->n_threads;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->work, NULL);
    double t0 = sac_time(), period = b->tty ? 0.25 : 10.0, next_draw = t0 + period;
    int started = 0, st = SAC_OK;
    pthread_mutex_lock(&b->lock_m);
    for (; started < n_threads; started++) {
        w[started].b = b;
        if (pthread_create(&w[started].tid, NULL, worker_main, &w[started])) {
            sac_error("cannot start worker thread %d", started + 1);
            b->stop = 1;
            st = SAC_ERR_NOMEM;
            break;
        }
        b->running++;
    }
    while (b->running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&b->cond, &b->lock_m, &ts);
        if (cli_interrupted && !b->stop) {
            b->stop = 1;
            pthread_cond_broadcast(&b->work);
        }
        double now = sac_time();
        if (!b->quiet && now >= next_draw && b->running > 0) {
            size_t done = b->done, failed = b->failed;
            pthread_mutex_unlock(&b->lock_m);
            progress_draw(b, done, failed, now - t0, 0);
            pthread_mutex_lock(&b->lock_m);
            next_draw = now + period;
        }
    }
    pthread_mutex_unlock(&b->lock_m);
    for (int i = 0; i < started; i++) pthread_join(w[i].tid, NULL);
    if (!b->quiet) progress_draw(b, b->done, b->failed, sac_time() - t0, 1);
    pthread_cond_destroy(&b->cond);
    pthread_cond_destroy(&b->work);
    return st;
}

/* 1 (logged) when the results (or coco's FILE.partial) would overwrite one of the images or the
 * model. */
static int output_is_input(const char *out_path, BatchFormat fmt, const BatchFileList *files, const char *model)
{
    char partial[4096];
    snprintf(partial, sizeof(partial), "%s.partial", out_path);
    const char *outs[2] = {out_path, fmt == BATCH_COCO ? partial : NULL};
    if (!model) model = getenv("SACCADE_MODEL");
    for (int k = 0; k < 2 && outs[k]; k++) {
        struct stat sb;
        if (stat(outs[k], &sb) || !S_ISREG(sb.st_mode)) continue;
        for (size_t i = 0; i < files->n; i++) {
            if (files->files[i].dev == sb.st_dev && files->files[i].ino == sb.st_ino) {
                sac_error("%s: is also the input %s; refusing to overwrite it (choose another -o)", outs[k],
                          files->files[i].path);
                return 1;
            }
        }
        const char *inputs[] = {model};
        if (sac_output_check_inputs(outs[k], "-o", inputs, 1)) return 1;
    }
    return 0;
}

enum { O_FORMAT = 256, O_MODEL, O_BATCH, O_RESUME, O_SHARD, O_ATTENTION, O_MERGE };

/* The command line into b. Returns -1 to go on, else the exit status (help, a usage error, or
 * --merge done). */
static int parse_args(Batch *b, int argc, char **argv)
{
    struct option longopts[12 + CLI_DEC_MAX_OPTIONS] = {
        {"output", 1, 0, 'o'}, {"format", 1, 0, O_FORMAT}, {"model", 1, 0, O_MODEL}, {"batch", 1, 0, O_BATCH},
        {"threads", 1, 0, CLI_OPT_THREADS}, {"resume", 0, 0, O_RESUME}, {"shard", 1, 0, O_SHARD},
        {"attention", 0, 0, O_ATTENTION}, {"quiet", 0, 0, CLI_OPT_QUIET}, {"merge", 0, 0, O_MERGE},
        {"help", 0, 0, CLI_OPT_HELP}};
    cli_decode_longopts(BATCH_DECODING, longopts + 11);
    int fmt = -1, shard_auto = 0, merge = 0, c, rc;
    b->shard_n = 1;
    cli_decode_defaults(&b->dec);
    optind = 1;
    opterr = 0;
    while ((c = cli_getopt(argc, argv, ":ho:", longopts, &b->dec)) != -1) {
        switch (c) {
        case CLI_DEC_USAGE: return CLI_USAGE;
        case 'o': b->out_path = optarg; break;
        case O_FORMAT:
            if ((fmt = batch_format_parse(optarg)) < 0)
                return cli_usage_error("batch", "invalid value \"%s\" for --format: expected jsonl, tsv, coco or html",
                                       optarg);
            break;
        case O_MODEL: b->model_path = optarg; break;
        case O_BATCH:
            if (cli_parse_int("--batch", optarg, 1, 1024, &b->group_opt)) return CLI_USAGE;
            break;
        case O_RESUME: b->resume = 1; break;
        case O_SHARD:
            shard_auto = !strcmp(optarg, "auto");
            if (!shard_auto && cli_parse_shard("--shard", optarg, &b->shard_i, &b->shard_n)) return CLI_USAGE;
            break;
        case O_MERGE: merge = 1; break;
        case O_ATTENTION: b->attention = 1; break;
        default:
            if ((rc = cli_common_option("batch", c, argv, help, &b->threads, &b->quiet)) != CLI_MORE) return rc;
        }
    }
    const char *out_path = b->out_path;
    if (fmt < 0) fmt = out_path && batch_format_from_path(out_path) >= 0 ? batch_format_from_path(out_path) : BATCH_JSONL;
    if (out_path && !strcmp(out_path, "-")) out_path = NULL; /* stdout */
    b->fmt = (BatchFormat)fmt, b->out_path = out_path;
    if (merge) /* batch_shard.c */
        return batch_merge((const char *const *)argv + optind, argc - optind, out_path, fmt, b->quiet);
    if (optind >= argc) return cli_usage_error("batch", "give at least one directory of images");
    if (cli_decode_check("batch", &b->dec)) return CLI_USAGE;
    b->roots = (const char *const *)argv + optind, b->n_roots = argc - optind, b->argv0 = argv[0];
    const char *shard_src = NULL;
    if (shard_auto && batch_shard_from_env(&b->shard_i, &b->shard_n, &shard_src)) return CLI_USAGE;
    if (b->resume && !out_path) return cli_usage_error("batch", "--resume needs -o FILE to continue");
    if (b->attention && fmt != BATCH_HTML) return cli_usage_error("batch", "--attention needs --format html");
    if (shard_auto && b->shard_n > 1 && !batch_shard_has_placeholder(out_path))
        return cli_usage_error("batch", "--shard auto gave shard %d/%d (%s): -o needs {shard} in its name, so that "
                               "each shard writes its own file", b->shard_i, b->shard_n, shard_src);
    if (batch_shard_has_placeholder(out_path)) { /* -o with {shard} replaced */
        if (!(b->shard_path = batch_shard_path(out_path, b->shard_i, b->shard_n))) return CLI_FAILED;
        b->out_path = b->shard_path;
    }
    return -1;
}

/* Find the images, take the results file (lock, open, read what --resume keeps) and choose the
 * images of this shard still to do. -1 to go on, else the exit status. */
static int batch_select(Batch *b)
{
    const char *out_path = b->out_path;
    if (batch_walk(b->roots, b->n_roots, &b->files)) return CLI_FAILED;
    if (out_path) {
        int busy;
        if (output_is_input(out_path, b->fmt, &b->files, b->model_path)) return CLI_USAGE;
        if (!(b->lock = sac_lock_acquire(out_path, NULL, &busy))) /* a second run on FILE: says who has it */
            return busy ? CLI_USAGE : CLI_FAILED;
    }
    if (!(b->out = batch_output_open(out_path, b->fmt, b->resume))) return CLI_FAILED;
    const BatchFileList *files = &b->files;
    if (!(b->todo = sac_malloc((files->n ? files->n : 1) * sizeof(*b->todo)))) return CLI_FAILED;
    size_t foreign = 0, first_foreign = 0;
    for (size_t i = 0; i < files->n; i++) {
        int has = batch_output_has(b->out, files->files[i].path);
        if (batch_shard_of(files->files[i].rel, b->shard_n) != b->shard_i) {
            if (has && !foreign++) first_foreign = i;
            continue;
        }
        b->n_shard++;
        if (!has) b->todo[b->n_todo++] = i;
    }
    if (foreign) {
        sac_error("%s holds records of %zu image(s) that are not in shard %d/%d (the first: %s): it was made with "
                  "another --shard; resume it with that --shard, or write this shard to another file",
                  out_path, foreign, b->shard_i, b->shard_n, files->files[first_foreign].path);
        return CLI_USAGE;
    }
    b->resumed = batch_output_resumed(b->out, &b->resumed_errors);
    if (!b->quiet) {
        char shard[64] = "";
        if (b->shard_n > 1) snprintf(shard, sizeof(shard), " (shard %d/%d of %zu)", b->shard_i, b->shard_n, files->n);
        sac_info("%zu images%s%s", b->n_shard, shard, b->n_shard ? "" : ": nothing to do");
        if (b->resume && b->resumed) sac_info("%zu already in %s, %zu to go", b->n_shard - b->n_todo, out_path, b->n_todo);
    }
    return -1;
}

/* Load the model (before the results file is touched), start the results, make the workers
 * and the slots. -1 to go on, else the exit status. */
static int batch_setup(Batch *b)
{
    if (b->n_todo) {
        int status;
        if (!(b->m = cli_model_open("batch", b->model_path, b->argv0, b->quiet, b->threads, b->dec.max_len, &status)))
            return status;
    }
    if (batch_output_start(b->out)) return CLI_FAILED;
    if (!b->n_todo) return -1;
    cli_decode_options(&b->dec, &b->opt);
    b->opt.details = b->attention; /* the maps of the gallery */
    b->input_side = saccade_model_input_size(b->m);
    saccade_model_grid(b->m, &b->grid_h, &b->grid_w);
    b->n_threads = b->threads > 0 ? (int)b->threads : cli_cores();
    if ((size_t)b->n_threads > b->n_todo) b->n_threads = (int)b->n_todo;
    b->group = b->group_opt > 0 ? (int)b->group_opt : BATCH_GROUP;
    b->n_groups = (b->n_todo + (size_t)b->group - 1) / (size_t)b->group;
    if (!(b->w = sac_calloc((size_t)b->n_threads, sizeof(*b->w)))) return CLI_FAILED;
    for (int i = 0; i < b->n_threads; i++)
        if (worker_init(&b->w[i], b)) return CLI_FAILED;
    /* a group per worker in its model step and one more decoding ahead */
    if (slots_init(b, (int)SAC_MIN((size_t)b->n_threads + 1, b->n_groups))) return CLI_FAILED;
    return -1;
}

/* Caption what is to do with the workers, the library's pool at one thread meanwhile. -1 to go
 * on, else the exit status. */
static int batch_caption(Batch *b)
{
    if (!b->n_todo) return -1;
    int pool = saccade_threads();
    saccade_set_threads(1); /* the workers are the one pool */
    cli_catch_signals();
    double t0 = sac_time();
    int st = workers_run(b);
    b->seconds = sac_time() - t0;
    saccade_set_threads(pool);
    if (st) return CLI_FAILED;
    if (!b->quiet)
        sac_info("%zu images in %.1f s (%.1f img/s, %d threads, beam %d): %zu captioned, %zu failed%s%s", b->done,
                 b->seconds, b->seconds > 0 ? b->done / b->seconds : 0.0, b->n_threads, b->opt.beam,
                 b->done - b->failed, b->failed, b->out_path ? " -> " : "", b->out_path ? b->out_path : "");
    return -1;
}

/* Close the results (complete, or ready for --resume) and say how it went: the exit status. */
static int batch_finish(Batch *b)
{
    int complete = !b->stop && !b->write_failed;
    BatchOutput *out = b->out;
    b->out = NULL;
    if (batch_output_close(out, complete) || b->write_failed) return CLI_FAILED;
    if (!complete) {
        sac_error("interrupted after %zu of %zu images; run the same command with --resume to continue", b->done,
                  b->n_todo);
        return CLI_FAILED;
    }
    int rc = CLI_OK;
    if (b->failed + b->resumed_errors) {
        sac_warn("%zu image(s) could not be captioned%s (see the error records)", b->failed + b->resumed_errors,
                 b->resumed_errors ? ", counting the earlier run's" : "");
        rc = CLI_FAILED;
    }
    if (b->files.skipped) {
        sac_warn("%zu unreadable director%s, file(s) or dangling link(s) skipped (see above)", b->files.skipped,
                 b->files.skipped == 1 ? "y" : "ies");
        rc = CLI_FAILED;
    }
    return rc;
}

static void batch_teardown(Batch *b)
{
    if (b->out) batch_output_close(b->out, 0); /* an early stop: what was written stays for --resume */
    sac_lock_release(b->lock);
    for (int i = 0; b->w && i < b->n_threads; i++) worker_free(&b->w[i]);
    free(b->w);
    slots_free(b);
    saccade_model_free(b->m);
    free(b->todo);
    batch_files_free(&b->files);
    free(b->shard_path);
}

int cmd_batch(int argc, char **argv)
{
    Batch b;
    memset(&b, 0, sizeof(b));
    int rc = parse_args(&b, argc, argv);
    if (rc >= 0) {
        free(b.shard_path);
        return rc;
    }
    b.tty = cli_stderr_is_tty();
    pthread_mutex_init(&b.lock_m, NULL);
    pthread_mutex_init(&b.err_lock, NULL);
    saccade_set_log(log_sink, &b);
    if ((rc = batch_select(&b)) < 0 && (rc = batch_setup(&b)) < 0 && (rc = batch_caption(&b)) < 0) rc = batch_finish(&b);
    batch_teardown(&b);
    saccade_set_log(NULL, NULL);
    pthread_mutex_destroy(&b.lock_m);
    pthread_mutex_destroy(&b.err_lock);
    return rc;
}
