/*
 * cmd_batch.c - `saccade batch`: caption every image under some directories with one model
 * loaded once and a fixed set of worker threads, each with its own Captioner (the Model is
 * shared read-only). Each result is written and flushed as it completes, so a killed run loses
 * nothing and --resume carries on from the file.
 *
 * The list is cut into groups of --batch images (fixed slices of the sorted list). The workers
 * are the process's one pool of compute threads (the library's pool is set to one thread
 * meanwhile) and share two kinds of work: decoding one image of the next groups into a ring
 * of group slots (a large JPEG decoded scaled: sac_image_load_scaled), and running the model
 * on the next fully decoded group. A worker takes the model step when the next group is ready,
 * else decodes ahead, so while one worker encodes and decodes group k the others decode group
 * k + 1 (and, with few groups, every core decodes the one group instead of one worker alone).
 * A group's failed files are recorded when its model step runs, before its captions, as when
 * one worker did everything, so with one thread the records come in the same order as before.
 *
 * Each image is captioned alone (a batch of 1), so its caption does not depend on the thread
 * count, the shard or what was resumed: the same file always gets the same caption.
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
#include "captioner.h"
#include "cli.h"
#include "draw.h"
#include "matmul.h"
#include "output.h"
#include "sac.h"

#define THUMB_SIDE 160  /* gallery thumbnails: longest side, pixels */
#define PANEL_SIDE 96   /* gallery attention panels */
#define PANEL_COLUMNS 6
#define BATCH_GROUP 16 /* images a worker captions together (default of --batch) */

#define ERR_LEN 1024 /* an error record's message */

/* One group's decoded images, filled ahead of its model step (a ring of Batch.n_slots). */
typedef struct {
    size_t group;          /* the group this slot holds or waits for (slot = group % n_slots) */
    int claimed, decoded;  /* its images handed out to decode, and decoded (or failed) */
    float *input;          /* (G, 3, S, S) preprocessed images, at their positions in the group */
    SacImage *thumbs;      /* (G) gallery thumbnails (html only) */
    int *st;               /* (G) each image's decoding status */
    char (*errs)[ERR_LEN]; /* (G) the message logged when one failed */
} Slot;

typedef struct Batch {
    const Model *m;
    SearchOptions opt;
    BatchFormat fmt;
    int attention;
    int group; /* images captioned together by one worker */
    const BatchFileList *files;
    const size_t *todo; /* (n_todo) indices into files */
    size_t n_todo;
    BatchOutput *out;
    size_t n_groups;
    Slot *slots; /* (n_slots) */
    int n_slots;
    /* shared by the workers and the progress loop, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the progress loop waits here */
    pthread_cond_t work; /* workers wait here for a decoded group or a free slot */
    size_t next_model;   /* the next group to run through the model */
    size_t next_decode;  /* the first group with images not yet handed out to decode */
    size_t done, failed;
    int running, stop, write_failed;
    /* stderr: log messages and the progress bar take turns */
    pthread_mutex_t err_lock;
    int tty, quiet, bar_shown;
} Batch;

typedef struct {
    Batch *b;
    Captioner *c;
    pthread_t tid;
    Caption *caps; /* (G) one group's captions */
    int *idx;      /* (G) the positions in the group of the images decoded */
} Worker;

/* The worker's capture of the first error logged while it handles one image: the error record. */
static _Thread_local char *tl_err;

static void log_sink(int level, const char *msg, void *user)
{
    Batch *b = user;
    if (level == SAC_LOG_ERROR && tl_err && !tl_err[0]) snprintf(tl_err, ERR_LEN, "%s", msg);
    if (level > (b->quiet ? SAC_LOG_WARN : SAC_LOG_INFO)) return;
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
            "  --model FILE        (default: models/flickr8k.safetensors or $SACCADE_MODEL)\n"
            "  --beam K            beam width, 1 = greedy (default 3)\n"
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
 * figure, drawn over the thumbnail (the panels are smaller than it). */
static int gallery_images(const Batch *b, const SacImage *thumb, const Caption *cap, char **thumb64,
                          char **att64)
{
    int st = SAC_OK;
    if (!(*thumb64 = batch_png_base64(thumb))) return SAC_ERR_NOMEM;
    if (b->attention) {
        SacImage fig = {0};
        const char **words = sac_calloc((size_t)cap->n + 1, sizeof(*words));
        if (!words) return SAC_ERR_NOMEM;
        for (int t = 0; t < cap->n; t++) words[t] = vocab_word(b->m->vocab, cap->tokens[t]);
        st = attention_draw(thumb, cap->alphas, cap->n, b->m->grid_h, b->m->grid_w, words, PANEL_SIDE,
                            SAC_MIN(cap->n + 1, PANEL_COLUMNS), &fig);
        if (!st && !(*att64 = batch_png_base64(&fig))) st = SAC_ERR_NOMEM;
        free(words);
        sac_image_free(&fig);
    }
    return st;
}

/* Write the record of todo[i]: its caption when st == SAC_OK, else the error (err: the message
 * logged when it failed, may be empty), and count it. Returns the write's status. */
static int finish_one(Worker *w, size_t i, const SacImage *thumb, const Caption *cap, int st, const char *err)
{
    Batch *b = w->b;
    const char *path = b->files->files[b->todo[i]].path;
    char err2[ERR_LEN] = "";
    char *text = NULL, *thumb64 = NULL, *att64 = NULL;
    tl_err = err2;
    if (!st && !(text = captioner_text(b->m, cap))) st = SAC_ERR_NOMEM;
    if (!st && b->fmt == BATCH_HTML) st = gallery_images(b, thumb, cap, &thumb64, &att64);
    if (st && !err[0] && !err2[0]) sac_error("%s: %s", path, sac_strerror(st));
    tl_err = NULL;
    BatchRecord r = {path, text, st ? 0.0 : cap->logprob, NULL, thumb64, att64, (long)b->todo[i]};
    if (st) {
        r.caption = r.thumb_b64 = r.attention_b64 = NULL;
        r.error = err[0] ? err : err2[0] ? err2 : sac_strerror(st);
    }
    int wst = batch_output_write(b->out, &r);
    free(text), free(thumb64), free(att64);
    pthread_mutex_lock(&b->lock);
    b->done++;
    b->failed += st != SAC_OK;
    if (wst) {
        b->stop = b->write_failed = 1;
        pthread_cond_broadcast(&b->work);
    }
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return wst;
}

/* Images in group g. */
static int group_size(const Batch *b, size_t g)
{
    return (int)SAC_MIN((size_t)b->group, b->n_todo - g * (size_t)b->group);
}

/* Decode image k of group g into its slot: the model's input (and a thumbnail for the gallery),
 * the full-size photo let go at once; a failure is kept with its message for run_group. */
static void decode_one(Batch *b, Slot *s, size_t g, int k)
{
    const ModelConfig *cfg = &b->m->cfg;
    const int S = cfg->enc.image_size;
    char *err = s->errs[k];
    err[0] = 0;
    tl_err = err;
    SacImage img = {0};
    int st = sac_image_load_scaled(b->files->files[b->todo[g * b->group + k]].path, S, &img, 0);
    if (!st) st = sac_image_preprocess(&img, S, cfg->mean, cfg->std, s->input + (size_t)k * 3 * S * S);
    if (!st && b->fmt == BATCH_HTML) st = make_thumbnail(&img, &s->thumbs[k]);
    tl_err = NULL;
    sac_image_free(&img);
    if (st) sac_image_free(&s->thumbs[k]);
    s->st[k] = st;
}

/* Caption group g, whose images slot s holds decoded: the failures' records first, then one
 * captioner_run for the images that decoded (moved together at the front of the slot). */
static void run_group(Worker *w, Slot *s, size_t g)
{
    Batch *b = w->b;
    const ModelConfig *cfg = &b->m->cfg;
    const size_t in_size = (size_t)3 * cfg->enc.image_size * cfg->enc.image_size;
    const size_t i0 = g * (size_t)b->group;
    const int n = group_size(b, g);
    int nv = 0, st = SAC_OK, stopped = 0;
    for (int k = 0; k < n && !stopped; k++) {
        if (s->st[k]) {
            stopped = finish_one(w, i0 + k, NULL, NULL, s->st[k], s->errs[k]) != SAC_OK;
            continue;
        }
        if (nv != k) {
            memcpy(s->input + nv * in_size, s->input + k * in_size, in_size * sizeof(float));
            s->thumbs[nv] = s->thumbs[k];
            s->thumbs[k] = (SacImage){0};
        }
        w->idx[nv++] = k;
    }
    if (nv && !stopped) {
        char err[ERR_LEN] = "";
        tl_err = err;
        /* A lone image goes through as two copies: the encoder tiles one image differently from
         * a group (bands of rows instead of images side by side), which may round differently,
         * and the captions should not depend on how the list fell into groups (which changes
         * with --resume and --shard). */
        int pad = nv == 1 && b->group > 1;
        if (pad) memcpy(s->input + in_size, s->input, in_size * sizeof(float));
        st = captioner_run_preprocessed(w->c, s->input, nv + pad, &b->opt, w->caps, NULL);
        if (pad) caption_clear(&w->caps[1]);
        tl_err = NULL;
        for (int k = 0; k < nv && !stopped; k++) {
            int stk = st;
            char *errk = s->errs[w->idx[k]];
            if (st && nv > 1) { /* one at a time, so that one image cannot fail the others */
                errk[0] = 0;
                tl_err = errk;
                stk = captioner_run_preprocessed(w->c, s->input + k * in_size, 1, &b->opt, &w->caps[k], NULL);
                tl_err = NULL;
            }
            stopped = finish_one(w, i0 + (size_t)w->idx[k], &s->thumbs[k], &w->caps[k], stk,
                                 st && nv > 1 ? errk : err);
        }
    }
    for (int k = 0; k < n; k++) {
        if (k < nv) caption_clear(&w->caps[k]);
        sac_image_free(&s->thumbs[k]);
    }
}

/* Take work until none is left: the model step of the next group when it is decoded (groups in
 * order, fixed slices of the list, whoever takes them: the captions do not depend on the
 * number of threads), else the next image to decode whose group has a slot, else wait. */
static void *worker_main(void *arg)
{
    Worker *w = arg;
    Batch *b = w->b;
    pthread_mutex_lock(&b->lock);
    while (!b->stop && b->next_model < b->n_groups) {
        size_t g = b->next_model;
        Slot *s = &b->slots[g % (size_t)b->n_slots];
        if (s->group == g && s->decoded == group_size(b, g)) {
            b->next_model++;
            pthread_mutex_unlock(&b->lock);
            run_group(w, s, g);
            pthread_mutex_lock(&b->lock);
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
            pthread_mutex_unlock(&b->lock);
            decode_one(b, s, g, k);
            pthread_mutex_lock(&b->lock);
            if (++s->decoded == group_size(b, g)) pthread_cond_broadcast(&b->work);
            continue;
        }
        pthread_cond_wait(&b->work, &b->lock);
    }
    b->running--;
    pthread_cond_broadcast(&b->work); /* a stop: the others leave too */
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void worker_free(Worker *w)
{
    captioner_free(w->c);
    free(w->caps), free(w->idx);
}

static int worker_init(Worker *w, Batch *b)
{
    const int G = b->group;
    w->b = b;
    w->c = captioner_create(b->m, G, b->opt.beam);
    w->caps = sac_calloc((size_t)G, sizeof(*w->caps));
    w->idx = sac_calloc((size_t)G, sizeof(*w->idx));
    return w->c && w->caps && w->idx ? SAC_OK : SAC_ERR_NOMEM;
}

static void slots_free(Batch *b)
{
    for (int i = 0; b->slots && i < b->n_slots; i++) {
        Slot *s = &b->slots[i];
        for (int k = 0; s->thumbs && k < b->group; k++) sac_image_free(&s->thumbs[k]);
        free(s->input), free(s->thumbs), free(s->st), free(s->errs);
    }
    free(b->slots);
    b->slots = NULL;
}

/* n slots of G images each (slot i waits for group i). */
static int slots_init(Batch *b, int n)
{
    const int S = b->m->cfg.enc.image_size, G = b->group;
    if (!(b->slots = sac_calloc((size_t)n, sizeof(*b->slots)))) return SAC_ERR_NOMEM;
    b->n_slots = n;
    for (int i = 0; i < n; i++) {
        Slot *s = &b->slots[i];
        s->group = (size_t)i;
        s->input = sac_alloc_floats((size_t)G * 3 * S * S);
        s->thumbs = sac_calloc((size_t)G, sizeof(*s->thumbs));
        s->st = sac_calloc((size_t)G, sizeof(*s->st));
        s->errs = sac_calloc((size_t)G, sizeof(*s->errs));
        if (!s->input || !s->thumbs || !s->st || !s->errs) return SAC_ERR_NOMEM;
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
static int batch_run(Batch *b, Worker *w, int n_threads)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->work, NULL);
    double t0 = sac_time(), period = b->tty ? 0.25 : 10.0, next_draw = t0 + period;
    int started = 0, st = SAC_OK;
    pthread_mutex_lock(&b->lock);
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
        pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (cli_interrupted && !b->stop) {
            b->stop = 1;
            pthread_cond_broadcast(&b->work);
        }
        double now = sac_time();
        if (!b->quiet && now >= next_draw && b->running > 0) {
            size_t done = b->done, failed = b->failed;
            pthread_mutex_unlock(&b->lock);
            progress_draw(b, done, failed, now - t0, 0);
            pthread_mutex_lock(&b->lock);
            next_draw = now + period;
        }
    }
    pthread_mutex_unlock(&b->lock);
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

enum { O_FORMAT = 256, O_MODEL, O_BEAM, O_BATCH, O_THREADS, O_RESUME, O_SHARD, O_ATTENTION, O_QUIET, O_MERGE };

int cmd_batch(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", 1, 0, 'o'}, {"format", 1, 0, O_FORMAT}, {"model", 1, 0, O_MODEL},
        {"beam", 1, 0, O_BEAM}, {"batch", 1, 0, O_BATCH}, {"threads", 1, 0, O_THREADS}, {"resume", 0, 0, O_RESUME},
        {"shard", 1, 0, O_SHARD}, {"attention", 0, 0, O_ATTENTION}, {"quiet", 0, 0, O_QUIET},
        {"merge", 0, 0, O_MERGE}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *out_path = NULL, *model_path = NULL;
    int fmt = -1, resume = 0, attention = 0, quiet = 0, shard_i = 0, shard_n = 1, shard_auto = 0, merge = 0, c;
    long beam = 3, threads = 0, group = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case O_FORMAT:
            if ((fmt = batch_format_parse(optarg)) < 0)
                return cli_usage_error("batch", "invalid value \"%s\" for --format: expected jsonl, tsv, coco or html",
                                       optarg);
            break;
        case O_MODEL: model_path = optarg; break;
        case O_BEAM:
            if (cli_parse_int("--beam", optarg, 1, 64, &beam)) return CLI_USAGE;
            break;
        case O_BATCH:
            if (cli_parse_int("--batch", optarg, 1, 1024, &group)) return CLI_USAGE;
            break;
        case O_THREADS:
            if (cli_parse_int("--threads", optarg, 0, 1024, &threads)) return CLI_USAGE;
            break;
        case O_RESUME: resume = 1; break;
        case O_SHARD:
            shard_auto = !strcmp(optarg, "auto");
            if (!shard_auto && cli_parse_shard("--shard", optarg, &shard_i, &shard_n)) return CLI_USAGE;
            break;
        case O_MERGE: merge = 1; break;
        case O_ATTENTION: attention = 1; break;
        case O_QUIET: quiet = 1; break;
        case 'h': help(stdout); return CLI_OK;
        default: return cli_option_error("batch", c, argv);
        }
    }
    if (fmt < 0) fmt = out_path && batch_format_from_path(out_path) >= 0 ? batch_format_from_path(out_path) : BATCH_JSONL;
    if (out_path && !strcmp(out_path, "-")) out_path = NULL; /* stdout */
    if (merge) /* batch_shard.c */
        return batch_merge((const char *const *)argv + optind, argc - optind, out_path, fmt, quiet);
    if (optind >= argc) return cli_usage_error("batch", "give at least one directory of images");
    const char *shard_src = NULL;
    if (shard_auto && batch_shard_from_env(&shard_i, &shard_n, &shard_src)) return CLI_USAGE;
    if (resume && !out_path) return cli_usage_error("batch", "--resume needs -o FILE to continue");
    if (attention && fmt != BATCH_HTML) return cli_usage_error("batch", "--attention needs --format html");
    char *shard_path = NULL; /* -o with {shard} replaced */
    if (shard_auto && shard_n > 1 && !batch_shard_has_placeholder(out_path))
        return cli_usage_error("batch", "--shard auto gave shard %d/%d (%s): -o needs {shard} in its name, so that "
                               "each shard writes its own file", shard_i, shard_n, shard_src);
    if (batch_shard_has_placeholder(out_path)) {
        if (!(shard_path = batch_shard_path(out_path, shard_i, shard_n))) return CLI_FAILED;
        out_path = shard_path;
    }

    Batch b;
    memset(&b, 0, sizeof(b));
    b.fmt = (BatchFormat)fmt, b.attention = attention, b.quiet = quiet, b.tty = cli_stderr_is_tty();
    pthread_mutex_init(&b.lock, NULL);
    pthread_mutex_init(&b.err_lock, NULL);
    sac_log_set_sink(log_sink, &b);

    int rc = CLI_FAILED;
    BatchFileList files = {0};
    SacLock *lock = NULL;
    size_t *todo = NULL;
    Model *m = NULL;
    Worker *w = NULL;
    int n_threads = 0, complete = 0;
    size_t n_shard = 0, n_todo = 0, resumed = 0, resumed_errors = 0, foreign = 0, first_foreign = 0;
    if (batch_walk((const char *const *)argv + optind, argc - optind, &files)) goto done;
    if (out_path) {
        int busy;
        if (output_is_input(out_path, b.fmt, &files, model_path)) {
            rc = CLI_USAGE;
            goto done;
        }
        if (!(lock = sac_lock_acquire(out_path, NULL, &busy))) { /* a second run on FILE: says who has it */
            rc = busy ? CLI_USAGE : CLI_FAILED;
            goto done;
        }
    }
    b.out = batch_output_open(out_path, b.fmt, resume);
    if (!b.out) goto done;
    todo = sac_malloc((files.n ? files.n : 1) * sizeof(*todo));
    if (!todo) goto done;
    for (size_t i = 0; i < files.n; i++) {
        int has = batch_output_has(b.out, files.files[i].path);
        if (batch_shard_of(files.files[i].rel, shard_n) != shard_i) {
            if (has && !foreign++) first_foreign = i;
            continue;
        }
        n_shard++;
        if (!has) todo[n_todo++] = i;
    }
    if (foreign) {
        sac_error("%s holds records of %zu image(s) that are not in shard %d/%d (the first: %s): it was made with "
                  "another --shard; resume it with that --shard, or write this shard to another file",
                  out_path, foreign, shard_i, shard_n, files.files[first_foreign].path);
        rc = CLI_USAGE;
        goto done;
    }
    resumed = batch_output_resumed(b.out, &resumed_errors);
    b.files = &files, b.todo = todo, b.n_todo = n_todo;
    if (!quiet) {
        char shard[64] = "";
        if (shard_n > 1) snprintf(shard, sizeof(shard), " (shard %d/%d of %zu)", shard_i, shard_n, files.n);
        sac_info("%zu images%s%s", n_shard, shard, n_shard ? "" : ": nothing to do");
        if (resume && resumed) sac_info("%zu already in %s, %zu to go", n_shard - n_todo, out_path, n_todo);
    }
    if (n_todo && !(m = cli_load_model(model_path, argv[0]))) goto done; /* before FILE is touched */
    if (batch_output_start(b.out)) goto done;
    if (n_todo) {
        DecoderSizes sz = model_decoder_sizes(m);
        b.m = m;
        b.opt = search_default_options(&sz);
        b.opt.beam = (int)beam;
        b.opt.want_alphas = attention;
        n_threads = threads > 0 ? (int)threads : cli_cores();
        if ((size_t)n_threads > n_todo) n_threads = (int)n_todo;
        w = sac_calloc((size_t)n_threads, sizeof(*w));
        if (!w) goto done;
        b.group = group > 0 ? (int)group : BATCH_GROUP;
        b.n_groups = (n_todo + (size_t)b.group - 1) / (size_t)b.group;
        for (int i = 0; i < n_threads; i++)
            if (worker_init(&w[i], &b)) goto done;
        /* a group per worker in its model step and one more decoding ahead */
        if (slots_init(&b, (int)SAC_MIN((size_t)n_threads + 1, b.n_groups))) goto done;
        int blas_threads = sac_blas_threads();
        sac_blas_set_threads(1); /* the workers are the one pool */
        cli_catch_signals();
        double t0 = sac_time();
        int st = batch_run(&b, w, n_threads);
        double dt = sac_time() - t0;
        sac_blas_set_threads(blas_threads);
        if (st) goto done;
        if (!quiet)
            sac_info("%zu images in %.1f s (%.1f img/s, %d threads, beam %ld): %zu captioned, %zu failed%s%s",
                     b.done, dt, dt > 0 ? b.done / dt : 0.0, n_threads, beam, b.done - b.failed, b.failed,
                     out_path ? " -> " : "", out_path ? out_path : "");
    }
    complete = !b.stop && !b.write_failed;
    BatchOutput *out = b.out;
    b.out = NULL;
    if (batch_output_close(out, complete) || b.write_failed) goto done;
    if (!complete) {
        sac_error("interrupted after %zu of %zu images; run the same command with --resume to continue", b.done,
                  n_todo);
        goto done;
    }
    rc = CLI_OK;
    if (b.failed + resumed_errors) {
        sac_warn("%zu image(s) could not be captioned%s (see the error records)", b.failed + resumed_errors,
                 resumed_errors ? ", counting the earlier run's" : "");
        rc = CLI_FAILED;
    }
    if (files.skipped) {
        sac_warn("%zu unreadable director%s, file(s) or dangling link(s) skipped (see above)", files.skipped,
                 files.skipped == 1 ? "y" : "ies");
        rc = CLI_FAILED;
    }
done:
    if (b.out) batch_output_close(b.out, 0);
    sac_lock_release(lock);
    for (int i = 0; w && i < n_threads; i++) worker_free(&w[i]);
    free(w);
    slots_free(&b);
    model_free(m);
    free(todo);
    batch_files_free(&files);
    sac_log_set_sink(NULL, NULL);
    pthread_mutex_destroy(&b.lock);
    pthread_mutex_destroy(&b.err_lock);
    free(shard_path);
    return rc;
}
