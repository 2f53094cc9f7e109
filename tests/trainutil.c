/*
 * trainutil.c - see trainutil.h.
 */
#include "trainutil.h"

#include "testutil.h"

TrainOptions shapes_train_options(const char *out)
{
    TrainOptions o;
    train_default_options(&o);
    o.data = scratch_path("captions.tsv");
    o.train_split = NULL;
    o.dev_split = NULL;
    o.out = out;
    o.min_count = 1;
    o.batch_images = 3; /* 8 images: batches of 3, 3, 2 */
    o.epochs = 3;
    o.checkpoint_every = 2;
    o.report_every_s = 1e9;
    o.cfg.E = 8, o.cfg.A = 8, o.cfg.D = 12, o.cfg.M = 6, o.cfg.T = 7;
    o.cfg.dropout = 0.2f;
    return o;
}

int keep_best_dev(const TrainProgress *p, void *user)
{
    DevKept *k = user;
    if (p->evaluated && (k->n_evaluated++ == 0 || p->dev.cider_d > k->best.cider_d)) k->best = p->dev;
    return 0;
}
