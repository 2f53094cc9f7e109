/*
 * report.c - the metric block of `saccade eval` and `saccade score`, see report.h.
 * Size letters: none (no tensors here).
 */
#include "report.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sac.h"

int report_print(FILE *f, const ReportBlock *r, int json)
{
    const SacScores *s = &r->scores;
    const double ratio = r->n_images ? (double)r->n_distinct / r->n_images : 0.0;
    if (!json) {
        fprintf(f, "images        %d\n", r->n_images);
        for (int k = 0; k < SAC_BLEU_N; k++) fprintf(f, "BLEU-%d        %.6f\n", k + 1, s->bleu[k]);
        fprintf(f, "ROUGE-L       %.6f\n", s->rouge_l);
        fprintf(f, "CIDEr-D       %.6f\n", s->cider_d);
        fprintf(f, "distinct      %d / %d captions (%.3f)\n", r->n_distinct, r->n_images, ratio);
        fprintf(f, "vocabulary    %d words used\n", r->vocab_used);
        fprintf(f, "mean length   %.2f words\n", r->mean_len);
        if (r->att_P)
            fprintf(f, "attention     largest weight %.4f (%.1fx uniform over %d), entropy %.3f of uniform\n",
                    r->att_max, r->att_max * r->att_P, r->att_P, r->att_entropy);
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    static const char *const bleu_keys[SAC_BLEU_N] = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"};
    cJSON_AddNumberToObject(o, "images", r->n_images);
    for (int k = 0; k < SAC_BLEU_N; k++) cJSON_AddNumberToObject(o, bleu_keys[k], s->bleu[k]);
    cJSON_AddNumberToObject(o, "ROUGE_L", s->rouge_l);
    cJSON_AddNumberToObject(o, "CIDEr", s->cider_d);
    cJSON *counts = cJSON_AddObjectToObject(o, "bleu_counts");
    if (counts) {
        double guess[SAC_BLEU_N], correct[SAC_BLEU_N];
        for (int k = 0; k < SAC_BLEU_N; k++) guess[k] = (double)s->counts.guess[k], correct[k] = (double)s->counts.correct[k];
        cJSON_AddNumberToObject(counts, "testlen", (double)s->counts.testlen);
        cJSON_AddNumberToObject(counts, "reflen", (double)s->counts.reflen);
        cJSON_AddItemToObject(counts, "guess", cJSON_CreateDoubleArray(guess, SAC_BLEU_N));
        cJSON_AddItemToObject(counts, "correct", cJSON_CreateDoubleArray(correct, SAC_BLEU_N));
    }
    cJSON_AddNumberToObject(o, "distinct", r->n_distinct);
    cJSON_AddNumberToObject(o, "distinct_ratio", ratio);
    cJSON_AddNumberToObject(o, "vocab_used", r->vocab_used);
    cJSON_AddNumberToObject(o, "mean_len", r->mean_len);
    if (r->att_P) {
        cJSON_AddNumberToObject(o, "attention_max", r->att_max);
        cJSON_AddNumberToObject(o, "attention_entropy", r->att_entropy);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return -1;
    fprintf(f, "%s\n", text);
    free(text);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Number of distinct strings among n (sorted copy of the pointers). */
static int count_distinct(const char **v, int n)
{
    qsort(v, n, sizeof(*v), cmp_str);
    int d = 0;
    for (int i = 0; i < n; i++) d += i == 0 || strcmp(v[i], v[i - 1]);
    return d;
}

int report_diversity(ReportBlock *r, const char *const *captions, int n)
{
    r->n_distinct = r->vocab_used = 0;
    r->mean_len = 0.0;
    if (n < 1) return SAC_OK;
    const char **caps = sac_malloc(sizeof(char *) * n);
    size_t chars = 0;
    for (int i = 0; i < n; i++) chars += strlen(captions[i]) + 1;
    char *buf = sac_malloc(chars);
    const char **words = sac_malloc(sizeof(char *) * (chars / 2 + 1));
    if (!caps || !buf || !words) {
        free(caps), free(buf), free(words);
        return SAC_ERR_NOMEM;
    }
    memcpy(caps, captions, sizeof(char *) * n);
    r->n_distinct = count_distinct(caps, n);
    int nw = 0;
    char *p = buf;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(captions[i]);
        memcpy(p, captions[i], len + 1);
        for (char *save = NULL, *w = strtok_r(p, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
            words[nw++] = w;
        p += len + 1;
    }
    r->mean_len = (double)nw / n;
    r->vocab_used = count_distinct(words, nw);
    free(caps), free(buf), free(words);
    return SAC_OK;
}
