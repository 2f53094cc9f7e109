/*
 * cmd_train.c - `saccade train`: train a captioning model, choosing it on the dev split.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "output.h"
#include "sac.h"
#include "threadpool.h"
#include "trainer.h"

static void help(FILE *f, const TrainOptions *d)
{
    fprintf(f,
            "usage: saccade train --data PATH --out MODEL.safetensors [options]\n\n"
            "Train an image captioning model, from scratch or on a frozen ImageNet MobileNetV2 (--backbone).\n"
            "After each epoch the dev split is decoded and\n"
            "scored; the best model by dev CIDEr-D (or BLEU-4) is written to --out. A checkpoint\n"
            "(model, optimizer, data order, RNG state) is written atomically every --checkpoint-every\n"
            "steps and at each epoch end; --resume continues a killed run from it. Ctrl-C writes a\n"
            "checkpoint and stops.\n\n"
            "Started by mpirun or srun (N ranks, one per machine), training is data-parallel: each rank\n"
            "caches 1/N of the photos and computes 1/N of every batch, all take the same step, rank 0\n"
            "evaluates and writes the files. --batch is the global batch; the results do not depend on\n"
            "N up to float rounding, except through dropout masks and --scst's multinomial samples\n"
            "(each rank draws its own) and the from-scratch encoder's batchnorm (each rank's share).\n"
            "SIGUSR1 to mpirun (or SIGTERM to any rank) writes a checkpoint and stops every rank.\n\n"
            "data:\n"
            "  --data PATH           Flickr8k/30k dir or token file, Karpathy dataset_*.json, COCO\n"
            "                        captions_*.json, or a folder with captions.tsv\n"
            "  --images DIR          image directory (default: from the dataset)\n"
            "  --train-split NAME    (default %s)\n"
            "  --dev-split NAME      (default %s; 'none' to skip evaluation)\n"
            "  --min-count N         vocabulary: words seen at least N times (default %d)\n"
            "  --no-augment          no flips / jitter\n"
            "model:\n"
            "  --backbone FILE       a frozen pretrained MobileNetV2 (made by saccade import) as the encoder;\n"
            "                        its features are computed once per photo (and its mirror image)\n"
            "  --grid 7|14           with --backbone: 7x7x1280 (last conv, default) or 14x14x576 (block 14)\n"
            "  --proj E              with --backbone: project its channels to E per position (default 256;\n"
            "                        0 = feed them to the decoder as they are)\n"
            "  --finetune-from N     with --backbone: train MobileNetV2's blocks features.N up to the grid\n"
            "                        (N = the first trained block: 2..17 for grid 7, e.g. 17 = the last block\n"
            "                        and the 1x1 conv to 1280; 2..13 for grid 14, e.g. 13); the blocks below\n"
            "                        stay frozen and their output is what is cached (default: all frozen)\n"
            "  --image-size S        input side (default %d; 224 with --backbone)\n"
            "  --conv SPEC           encoder layers, e.g. 32s2,64p,128p,256p,256 (s2 stride 2, p pool)\n"
            "  --no-batchnorm\n"
            "  --att A --hidden D --embed M --max-len T   (defaults %d %d %d %d)\n"
            "  --dropout P           (default %g)   --lambda L  attention penalty (default %g)\n"
            "optimisation:\n"
            "  --epochs N (%d)  --batch IMAGES (%d)  --caps-per-image K (0 = all, default %d)\n"
            "  --lr X (%g)  --lr-encoder X (%g)  --lr-decay F per epoch (%g)\n"
            "  --lr-backbone X       the fine-tuned backbone blocks (default: --lr-encoder / 10)\n"
            "  --clip NORM (%g)  --weight-decay W (%g)  --patience N epochs (%d, 0 = never stop early)\n"
            "  --seed N (%llu)  --threads N (0 = all cores)  --max-steps N (0 = no limit)\n"
            "output:\n"
            "  --out FILE            best model (fp16 safetensors unless --f32)\n"
            "  --checkpoint FILE     (default: OUT.ckpt)   --checkpoint-every N steps (%d)\n"
            "  --log FILE            JSON lines: step, loss, lr, grad norm, time; dev scores per epoch\n"
            "  --report FILE         rewrite the training report (saccade report) after each epoch\n"
            "  --resume              continue from the checkpoint\n"
            "  --eval-beam K (%d)  --eval-max N images (0 = all)  --select cider|bleu4 (%s)\n"
            "self-critical training (Rennie et al. 2017), after cross-entropy training:\n"
            "  --scst --init MODEL   fine-tune MODEL on CIDEr-D: per photo, sample K captions and decode the\n"
            "                        greedy one; each sample's reward is its CIDEr-D (document frequencies\n"
            "                        from the training references) minus the greedy caption's. The model\n"
            "                        flags come from MODEL; the dev score of MODEL is the one to beat.\n"
            "                        --lr and --lr-encoder default to 5e-05 here\n"
            "  --scst-samples K      captions sampled per photo (default %d)\n"
            "  --scst-baseline B     greedy (default: the greedy caption's CIDEr-D, as Rennie et al.) or\n"
            "                        mean (the photo's other samples' mean CIDEr-D, Luo 2020): each photo's\n"
            "                        weights then sum to zero; steadier when the greedy caption is far\n"
            "                        better than the samples (a model that has memorised its training set)\n"
            "  --scst-sample S       multinomial (default) or beam: the K best distinct captions of a beam\n"
            "                        search of width K instead of K samples (Cornia et al. 2020; biased,\n"
            "                        but it trains on the captions beam search chooses between)\n"
            "  --quiet\n",
            d->train_split, d->dev_split, d->min_count, d->cfg.enc.image_size, d->cfg.A, d->cfg.D, d->cfg.M,
            d->cfg.T, d->cfg.dropout, d->cfg.lambda, d->epochs, d->batch_images, d->caps_per_image, d->lr,
            d->lr_enc, d->lr_decay, d->clip, d->weight_decay, d->patience, (unsigned long long)d->seed,
            d->checkpoint_every, d->eval_beam, d->select_metric, d->scst_samples);
}

static int parse_conv(const char *s, EncoderConfig *enc)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == SAC_MAX_CONV) return -1;
        char *end;
        long c = strtol(tok, &end, 10);
        if (c < 1 || c > 4096) return -1;
        ConvSpec sp = {(int)c, 1, 0};
        for (; *end; end++) {
            if (*end == 'p') sp.pool = 1;
            else if (*end == 's' && end[1] == '2') sp.stride = 2, end++;
            else return -1;
        }
        enc->conv[n++] = sp;
    }
    if (n == 0) return -1;
    enc->n_conv = n;
    return 0;
}

typedef struct {
    int quiet, tty;
    const char *log, *report; /* --report: rewritten from the log after each evaluation */
} Printer;

static void on_usr1(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

static int on_progress(const TrainProgress *p, void *user)
{
    Printer *pr = user;
    if (!pr->quiet && !p->evaluated) {
        int eta = (int)p->eta_s;
        if (p->scst)
            fprintf(stderr, "%sepoch %d/%d  batch %d/%d  step %ld  reward %+.4f (CIDEr-D sample %.3f, greedy %.3f)  "
                    "%.1f img/s  eta %d:%02d%s", pr->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->batch, p->batches,
                    p->step, p->reward, p->sample_cider, p->greedy_cider, p->images_per_s, eta / 60, eta % 60,
                    pr->tty ? "" : "\n");
        else
            fprintf(stderr, "%sepoch %d/%d  batch %d/%d  step %ld  loss %.4f (ce %.4f)  %.1f img/s  eta %d:%02d%s",
                    pr->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->batch, p->batches, p->step, p->loss, p->ce,
                    p->images_per_s, eta / 60, eta % 60, pr->tty ? "" : "\n");
        if (pr->tty && p->batch == p->batches) fputc('\n', stderr);
        fflush(stderr);
    }
    if (p->evaluated && pr->report && cmd_report_write(pr->log, pr->report, 1))
        fprintf(stderr, "saccade train: could not write the report %s (training goes on)\n", pr->report);
    return cli_interrupted;
}

enum {
    O_DATA = 256, O_IMAGES, O_TRAIN_SPLIT, O_DEV_SPLIT, O_MIN_COUNT, O_NO_AUGMENT, O_IMAGE_SIZE, O_CONV, O_NO_BN,
    O_ATT, O_HIDDEN, O_EMBED, O_MAX_LEN, O_DROPOUT, O_LAMBDA, O_EPOCHS, O_BATCH, O_CAPS, O_LR, O_LR_ENC, O_LR_DECAY,
    O_CLIP, O_WD, O_PATIENCE, O_SEED, O_THREADS, O_MAX_STEPS, O_OUT, O_CKPT, O_CKPT_EVERY, O_LOG, O_RESUME,
    O_EVAL_BEAM, O_EVAL_MAX, O_SELECT, O_QUIET, O_F32, O_BACKBONE, O_GRID, O_PROJ, O_REPORT, O_SCST, O_INIT, O_SCST_SAMPLES,
    O_SCST_BASELINE, O_SCST_SAMPLE, O_FINETUNE_FROM, O_LR_BACKBONE, O_HELP
};

/* The command line: the run's options and what the command decides from the rest. */
typedef struct {
    TrainOptions o;
    const char *report;
    long threads, grid, proj, image_size, finetune_from;
    int quiet, lr_given, lr_enc_given, baseline_given, sample_given;
} TrainArgs;

/* argv into a. Returns CLI_MORE to go on, else the exit status (the help, a usage error). */
static int parse_args(TrainArgs *a, int argc, char **argv)
{
    *a = (TrainArgs){.grid = 7, .proj = 256};
    TrainOptions *o = &a->o;
    train_default_options(o);
    static const struct option longopts[] = {
        {"data", 1, 0, O_DATA}, {"images", 1, 0, O_IMAGES}, {"train-split", 1, 0, O_TRAIN_SPLIT},
        {"dev-split", 1, 0, O_DEV_SPLIT}, {"min-count", 1, 0, O_MIN_COUNT}, {"no-augment", 0, 0, O_NO_AUGMENT},
        {"image-size", 1, 0, O_IMAGE_SIZE}, {"conv", 1, 0, O_CONV}, {"no-batchnorm", 0, 0, O_NO_BN},
        {"att", 1, 0, O_ATT}, {"hidden", 1, 0, O_HIDDEN}, {"embed", 1, 0, O_EMBED}, {"max-len", 1, 0, O_MAX_LEN},
        {"dropout", 1, 0, O_DROPOUT}, {"lambda", 1, 0, O_LAMBDA}, {"epochs", 1, 0, O_EPOCHS},
        {"batch", 1, 0, O_BATCH}, {"caps-per-image", 1, 0, O_CAPS}, {"lr", 1, 0, O_LR},
        {"lr-encoder", 1, 0, O_LR_ENC}, {"lr-decay", 1, 0, O_LR_DECAY}, {"clip", 1, 0, O_CLIP},
        {"weight-decay", 1, 0, O_WD}, {"patience", 1, 0, O_PATIENCE}, {"seed", 1, 0, O_SEED},
        {"threads", 1, 0, O_THREADS}, {"max-steps", 1, 0, O_MAX_STEPS}, {"out", 1, 0, O_OUT},
        {"checkpoint", 1, 0, O_CKPT}, {"checkpoint-every", 1, 0, O_CKPT_EVERY}, {"log", 1, 0, O_LOG},
        {"resume", 0, 0, O_RESUME}, {"eval-beam", 1, 0, O_EVAL_BEAM}, {"eval-max", 1, 0, O_EVAL_MAX},
        {"select", 1, 0, O_SELECT}, {"quiet", 0, 0, O_QUIET}, {"f32", 0, 0, O_F32}, {"backbone", 1, 0, O_BACKBONE},
        {"grid", 1, 0, O_GRID}, {"proj", 1, 0, O_PROJ}, {"report", 1, 0, O_REPORT}, {"scst", 0, 0, O_SCST}, {"init", 1, 0, O_INIT},
        {"scst-samples", 1, 0, O_SCST_SAMPLES}, {"scst-baseline", 1, 0, O_SCST_BASELINE},
        {"scst-sample", 1, 0, O_SCST_SAMPLE},
        {"finetune-from", 1, 0, O_FINETUNE_FROM}, {"lr-backbone", 1, 0, O_LR_BACKBONE}, {"help", 0, 0, O_HELP},
        {0, 0, 0, 0}};
    long v;
    double x;
    int c;
    optind = 1;
    opterr = 0;
#define INT(opt, lo, hi, dst) \
    do { \
        if (cli_parse_int(opt, optarg, lo, hi, &v)) return CLI_USAGE; \
        dst = v; \
    } while (0)
#define FLT(opt, lo, hi, dst) \
    do { \
        if (cli_parse_float(opt, optarg, lo, hi, &x)) return CLI_USAGE; \
        dst = x; \
    } while (0)
/* a two-valued option: dst = 0 for a, 1 for b (the enums' order) */
    _Static_assert(SCST_BASELINE_GREEDY == 0 && SCST_BASELINE_MEAN == 1 && SCST_SAMPLE_MULTINOMIAL == 0 &&
                       SCST_SAMPLE_BEAM == 1, "CHOICE maps the first name to 0");
#define CHOICE(opt, a, b, dst, given) \
    do { \
        if (strcmp(optarg, a) && strcmp(optarg, b)) \
            return cli_usage_error("train", opt ": expected " a " or " b ", found '%s'", optarg); \
        dst = !strcmp(optarg, b), given = 1; \
    } while (0)
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DATA: o->data = optarg; break;
        case O_IMAGES: o->image_dir = optarg; break;
        case O_TRAIN_SPLIT: o->train_split = optarg; break;
        case O_DEV_SPLIT: o->dev_split = strcmp(optarg, "none") ? optarg : NULL; break;
        case O_MIN_COUNT: INT("--min-count", 1, INT_MAX, o->min_count); break;
        case O_NO_AUGMENT: o->augment = 0; break;
        case O_IMAGE_SIZE: INT("--image-size", 8, 1024, a->image_size); break;
        case O_BACKBONE: o->backbone = optarg; break;
        case O_GRID:
            if (cli_parse_int("--grid", optarg, 7, 14, &a->grid)) return CLI_USAGE;
            if (a->grid != 7 && a->grid != 14)
                return cli_usage_error("train", "invalid value \"%s\" for --grid: expected 7 or 14", optarg);
            break;
        case O_PROJ: INT("--proj", 0, 8192, a->proj); break;
        case O_FINETUNE_FROM: INT("--finetune-from", 2, 17, a->finetune_from); break;
        case O_LR_BACKBONE: FLT("--lr-backbone", 0, 10, o->lr_backbone); break;
        case O_REPORT: a->report = optarg; break;
        case O_CONV:
            if (parse_conv(optarg, &o->cfg.enc))
                return cli_usage_error("train", "invalid value \"%s\" for --conv: expected e.g. 32s2,64p,128p,256", optarg);
            o->cfg.E = o->cfg.enc.conv[o->cfg.enc.n_conv - 1].cout;
            break;
        case O_NO_BN: o->cfg.enc.batchnorm = 0; break;
        case O_ATT: INT("--att", 1, 8192, o->cfg.A); break;
        case O_HIDDEN: INT("--hidden", 1, 8192, o->cfg.D); break;
        case O_EMBED: INT("--embed", 1, 8192, o->cfg.M); break;
        case O_MAX_LEN: INT("--max-len", 2, 256, o->cfg.T); break;
        case O_DROPOUT: FLT("--dropout", 0, 0.95, o->cfg.dropout); break;
        case O_LAMBDA: FLT("--lambda", 0, 100, o->cfg.lambda); break;
        case O_EPOCHS: INT("--epochs", 1, 100000, o->epochs); break;
        case O_BATCH: INT("--batch", 1, 4096, o->batch_images); break;
        case O_CAPS: INT("--caps-per-image", 0, 1000, o->caps_per_image); break;
        case O_LR: FLT("--lr", 0, 10, o->lr); a->lr_given = 1; break;
        case O_LR_ENC: FLT("--lr-encoder", 0, 10, o->lr_enc); a->lr_enc_given = 1; break;
        case O_SCST: o->scst = 1; break;
        case O_INIT: o->init = optarg; break;
        case O_SCST_SAMPLES: INT("--scst-samples", 1, 64, o->scst_samples); break;
        case O_SCST_BASELINE: CHOICE("--scst-baseline", "greedy", "mean", o->scst_baseline, a->baseline_given); break;
        case O_SCST_SAMPLE: CHOICE("--scst-sample", "multinomial", "beam", o->scst_sample, a->sample_given); break;
        case O_LR_DECAY: FLT("--lr-decay", 0.01, 1, o->lr_decay); break;
        case O_CLIP: FLT("--clip", 0, 1e9, o->clip); break;
        case O_WD: FLT("--weight-decay", 0, 1, o->weight_decay); break;
        case O_PATIENCE: INT("--patience", 0, 100000, o->patience); break;
        case O_SEED: INT("--seed", 0, LONG_MAX, o->seed); break;
        case O_THREADS: INT("--threads", 0, 1024, a->threads); break;
        case O_MAX_STEPS: INT("--max-steps", 0, LONG_MAX, o->max_steps); break;
        case O_OUT: o->out = optarg; break;
        case O_CKPT: o->checkpoint = optarg; break;
        case O_CKPT_EVERY: INT("--checkpoint-every", 0, LONG_MAX, o->checkpoint_every); break;
        case O_LOG: o->log = optarg; break;
        case O_RESUME: o->resume = 1; break;
        case O_EVAL_BEAM: INT("--eval-beam", 1, 64, o->eval_beam); break;
        case O_EVAL_MAX: INT("--eval-max", 0, INT_MAX, o->eval_max_images); break;
        case O_SELECT:
            if (strcmp(optarg, "cider") && strcmp(optarg, "bleu4"))
                return cli_usage_error("train", "invalid value \"%s\" for --select: expected cider or bleu4", optarg);
            o->select_metric = optarg;
            break;
        case O_QUIET: a->quiet = 1; break;
        case O_F32: o->store_f16 = 0; break;
        case 'h':
        case O_HELP: help(stdout, o); return CLI_OK;
        default: return cli_option_error("train", c, argv);
        }
    }
#undef INT
#undef FLT
#undef CHOICE
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    return CLI_MORE;
}

/* The option combinations a parsed, and the model configuration they imply. Returns CLI_MORE
 * to go on, else the exit status. */
static int check_args(TrainArgs *a)
{
    TrainOptions *o = &a->o;
    if (!o->data) return cli_usage_error("train", "--data is required");
    if (!o->out) return cli_usage_error("train", "--out is required");
    if (o->scst && !o->init) /* also with --resume: the checkpoint records it */
        return cli_usage_error("train", "--scst needs the model to start from: --init MODEL");
    if (!o->scst && o->init) return cli_usage_error("train", "--init MODEL is for self-critical training: add --scst");
    if (a->baseline_given && !o->scst)
        return cli_usage_error("train", "--scst-baseline is for self-critical training: add --scst");
    if (a->sample_given && !o->scst)
        return cli_usage_error("train", "--scst-sample is for self-critical training: add --scst");
    if (o->scst && o->scst_baseline == SCST_BASELINE_MEAN && o->scst_samples < 2)
        return cli_usage_error("train", "--scst-baseline mean needs at least 2 samples per photo, found --scst-samples %d",
                               o->scst_samples);
    if (o->scst && o->backbone)
        return cli_usage_error("train", "--scst takes the model (and its backbone) from --init, not --backbone");
    if (a->finetune_from && !o->backbone)
        return cli_usage_error("train", "--finetune-from needs a pretrained backbone (--backbone FILE)");
    if (a->finetune_from > (a->grid == 14 ? 13 : 17))
        return cli_usage_error("train", "invalid value \"%ld\" for --finetune-from with --grid %ld: expected 2..%d",
                               a->finetune_from, a->grid, a->grid == 14 ? 13 : 17);
    if (o->scst) {
        if (!a->lr_given) o->lr = 5e-5f;
        if (!a->lr_enc_given) o->lr_enc = 5e-5f;
    }
    if (o->backbone) {
        /* the padding convention comes from the backbone file (train checks the rest); a
         * checkpoint holds the weights, so --resume does not read it */
        if (o->resume)
            o->cfg.bb.kind = SAC_BACKBONE_MOBILENET_V2;
        else if (model_backbone_config(o->backbone, &o->cfg.bb) != SAC_OK)
            return CLI_FAILED;
        o->cfg.bb.grid = (int)a->grid;
        o->cfg.bb.channels = a->grid == 14 ? 576 : 1280;
        o->cfg.bb.proj = a->proj > 0;
        o->cfg.bb.finetune_from = (int)a->finetune_from;
        o->cfg.E = a->proj > 0 ? (int)a->proj : o->cfg.bb.channels;
        o->cfg.enc.image_size = a->image_size ? (int)a->image_size : 224;
    } else {
        if (a->image_size) o->cfg.enc.image_size = (int)a->image_size;
        o->cfg.E = o->cfg.enc.conv[o->cfg.enc.n_conv - 1].cout;
    }
    if (a->report && !o->log) return cli_usage_error("train", "--report needs --log (the report is drawn from it)");
    return CLI_MORE;
}

/* Train as a says: one process, or one rank of a data-parallel run; the exit status. */
static int run(TrainArgs *a, int argc, char **argv)
{
    TrainOptions *o = &a->o;
    /* under mpirun or srun, one rank of a data-parallel run (captioner/dist.h); else one process */
    if (sac_dist_init(&argc, &argv)) return CLI_FAILED;
    const int rank = sac_dist_rank();
    /* the machine's cores are shared by its ranks */
    sac_threads_set(a->threads > 0 ? (int)a->threads : SAC_MAX(1, cli_cores() / sac_dist_local_size()));
    if (a->quiet || rank > 0) sac_log_set_level(SAC_LOG_WARN); /* rank 0 speaks for the run */
    Printer pr = {a->quiet, cli_stderr_is_tty(), o->log, a->report};
    o->progress = rank == 0 ? on_progress : NULL;
    o->user = &pr;
    o->cancel = &cli_interrupted;
    o->report_every_s = pr.tty ? 1.0 : 30.0;
    cli_catch_signals();
    /* SIGUSR1 stops the run with a checkpoint too: mpirun forwards it to every rank (SIGTERM to
     * mpirun kills the ranks a second later), so `kill -USR1 MPIRUN_PID` stops a data-parallel run */
    struct sigaction usr1;
    memset(&usr1, 0, sizeof(usr1));
    usr1.sa_handler = on_usr1;
    sigemptyset(&usr1.sa_mask);
    sigaction(SIGUSR1, &usr1, NULL);
    /* one run per checkpoint: a second one on the same files would interleave their writes */
    char ckpt[4096];
    snprintf(ckpt, sizeof(ckpt), "%s%s", o->checkpoint ? o->checkpoint : o->out, o->checkpoint ? "" : ".ckpt");
    int busy = 0;
    SacLock *lock = rank == 0 ? sac_lock_acquire(ckpt, NULL, &busy) : NULL; /* rank 0 writes for the run */
    int st = sac_dist_agree(rank == 0 && !lock ? SAC_ERR_IO : SAC_OK);
    if (!st) st = train_run(o);
    sac_lock_release(lock);
    if (st == SAC_ERR_CANCELLED && rank == 0) { /* before MPI_Finalize: mpirun may end the job after it */
        if (access(ckpt, F_OK) == 0)
            fprintf(stderr, "saccade: training stopped; resume with the same command and --resume\n");
        else /* stopped while caching the data, before the first step */
            fprintf(stderr, "saccade: training stopped before its first step; nothing was written\n");
    }
    sac_dist_finalize();
    if (rank == 0 && !lock) return busy ? CLI_USAGE : CLI_FAILED;
    return st ? CLI_FAILED : CLI_OK;
}

int cmd_train(int argc, char **argv)
{
    TrainArgs a;
    int st = parse_args(&a, argc, argv);
    if (st == CLI_MORE) st = check_args(&a);
    return st == CLI_MORE ? run(&a, argc, argv) : st;
}
