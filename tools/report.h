/*
 * report.h - the metric block that `saccade eval` and `saccade score` print: BLEU-1..4,
 * ROUGE-L, CIDEr-D (as coco-caption computes them) and the diversity of the captions.
 */
#ifndef SACCADE_REPORT_H
#define SACCADE_REPORT_H

#include <stdio.h>

#include "metrics.h"

typedef struct ReportBlock {
    SacScores scores;
    int n_images;
    int n_distinct;  /* distinct captions */
    int vocab_used;  /* distinct words over all captions */
    double mean_len; /* words per caption */
    int att_P;       /* grid positions when the attention sharpness below is known (eval), else 0 */
    double att_max;  /* mean over words of the largest attention weight (1/P: uniform) */
    double att_entropy; /* mean over words of the map's entropy / log(P) (1: uniform) */
} ReportBlock;

/* Text: one "name value" line per metric. JSON: one object on one line, with coco-caption's
 * key names (Bleu_1..Bleu_4, ROUGE_L, CIDEr: coco-caption's "CIDEr" is CIDEr-D) plus the BLEU
 * totals and the diversity fields. Returns 0, or -1 when out of memory (JSON). */
int report_print(FILE *f, const ReportBlock *r, int json);

/* Fill the diversity fields from n tokenized captions (single spaces between tokens). */
int report_diversity(ReportBlock *r, const char *const *captions, int n);

#endif
