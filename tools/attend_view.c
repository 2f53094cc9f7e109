/*
 * attend_view.c - caption one photo with attention and per-word log-probabilities through
 * libsaccade, and the numbers as JSON (see attend_view.h).
 *
 * Size letters: T caption words (n), P grid positions.
 */
#include "attend_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "sac.h"

int attend_view_run(saccade_captioner *c, const saccade_image *photo, const saccade_options *opt, AttendView *v)
{
    memset(v, 0, sizeof(*v));
    saccade_options o = *opt;
    o.details = 1, o.nbest = 1;
    int st = saccade_caption_image(c, photo, &o, &v->res);
    if (st) return st;
    const int n = v->n = saccade_result_words(v->res, 0);
    saccade_result_grid(v->res, &v->grid_h, &v->grid_w);
    const size_t P = (size_t)v->grid_h * v->grid_w;
    v->ended = saccade_result_ended(v->res, 0);
    v->logprob = saccade_result_logprob(v->res, 0);
    v->text = saccade_result_text(v->res, 0);
    v->words = sac_calloc((size_t)n + 1, sizeof(*v->words));
    v->word_logprob = sac_calloc((size_t)n + 1, sizeof(float));
    v->alphas = sac_malloc(sizeof(float) * ((size_t)n * P + 1));
    if (!v->words || !v->word_logprob || !v->alphas) {
        attend_view_clear(v);
        return SACCADE_ERR_NOMEM;
    }
    for (int t = 0; t <= n; t++) {
        v->word_logprob[t] = (float)saccade_result_word_logprob(v->res, 0, t);
        if (t == n) break;
        v->words[t] = saccade_result_word(v->res, 0, t);
        memcpy(v->alphas + t * P, saccade_result_attention(v->res, 0, t), sizeof(float) * P);
    }
    return SACCADE_OK;
}

void attend_view_clear(AttendView *v)
{
    saccade_result_free(v->res);
    free(v->word_logprob);
    free(v->words);
    free(v->alphas);
    memset(v, 0, sizeof(*v));
}

/* Add a UTF-8-safe string; 0 when out of memory. */
static int add_text(cJSON *o, const char *key, const char *s)
{
    char *u = sac_utf8_escape(s ? s : "");
    int ok = u && cJSON_AddStringToObject(o, key, u);
    free(u);
    return ok;
}

/* A number rounded to 6 significant digits, so the file stays small and reads as written. */
static double round6(double x)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.6g", x);
    return strtod(buf, NULL);
}

cJSON *attend_view_json(const char *image, const AttendView *v)
{
    const int Hg = v->grid_h, Wg = v->grid_w, n = v->n;
    cJSON *o = cJSON_CreateObject(), *grid = NULL, *words = NULL;
    int ok = o && add_text(o, "image", image) && add_text(o, "caption", v->text) &&
             cJSON_AddNumberToObject(o, "logprob", round6(v->logprob)) &&
             cJSON_AddBoolToObject(o, "ended", v->ended) && (grid = cJSON_AddArrayToObject(o, "grid"));
    ok = ok && cJSON_AddItemToArray(grid, cJSON_CreateNumber(Hg)) && cJSON_AddItemToArray(grid, cJSON_CreateNumber(Wg));
    ok = ok && (words = cJSON_AddArrayToObject(o, "words"));
    for (int t = 0; t < n && ok; t++) {
        cJSON *w = cJSON_CreateObject(), *att = NULL;
        ok = w && cJSON_AddItemToArray(words, w) && add_text(w, "word", v->words[t]) &&
             cJSON_AddNumberToObject(w, "logprob", round6(v->word_logprob[t])) &&
             (att = cJSON_AddArrayToObject(w, "attention"));
        const float *a = v->alphas + (size_t)t * Hg * Wg;
        for (int i = 0; i < Hg && ok; i++) {
            cJSON *row = cJSON_CreateArray();
            ok = row && cJSON_AddItemToArray(att, row);
            for (int j = 0; j < Wg && ok; j++) ok = cJSON_AddItemToArray(row, cJSON_CreateNumber(round6(a[i * Wg + j])));
        }
    }
    if (ok && v->ended) ok = cJSON_AddNumberToObject(o, "end_logprob", round6(v->word_logprob[n])) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
