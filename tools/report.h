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
} ReportBlock;

/* Text: one "name value" line per metric. JSON: one object on one line, with coco-caption's
 * key names (Bleu_1..Bleu_4, ROUGE_L, CIDEr: coco-caption's "CIDEr" is CIDEr-D) plus the BLEU
 * totals and the diversity fields. Returns 0, or -1 when out of memory (JSON). */
int report_print(FILE *f, const ReportBlock *r, int json);

/* Fill the diversity fields from n tokenized captions (single spaces between tokens). */
int report_diversity(ReportBlock *r, const char *const *captions, int n);

#endif
