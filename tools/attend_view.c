/*
 * attend_view.c - caption one photo with attention and per-word log-probabilities, and the
 * numbers as JSON (see attend_view.h).
 *
 * Size letters: T caption words (n), P grid positions, E encoder channels, V vocabulary.
 */
#include "attend_view.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "sac.h"

/* log p(target) of one row of logits (V): logits[target] - log sum exp(logits). */
static float token_logprob(const float *logits, int V, int target)
{
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)(logits[v] - mx));
    return (float)((double)logits[target] - mx - log(s));
}

/* Teacher-force <start> w_1 .. w_n through the step decoder; lp[t] = log p(w_{t+1} | ...), and
 * lp[n] = log p(<end> | ...) when the caption ended. */
static int word_logprobs(Captioner *cp, const Model *m, const SacImage *photo, const Caption *cap, float *lp)
{
    const ModelConfig *cfg = &m->cfg;
    const int S = cfg->enc.image_size;
    DecoderSizes sz = model_decoder_sizes(m);
    float *img = sac_malloc(sizeof(float) * 3 * (size_t)S * S), *feats = sac_malloc(sizeof(float) * (size_t)sz.P * sz.E);
    int st = img && feats ? SAC_OK : SAC_ERR_NOMEM;
    if (!st) st = sac_image_preprocess(photo, S, cfg->mean, cfg->std, img);
    if (!st) st = captioner_encode(cp, img, 1, feats);
    DecoderInfer *inf = captioner_decoder(cp);
    if (!st) st = decoder_infer_start(inf, feats, 1, NULL, 1, &m->p.dec);
    int tok = SAC_VOCAB_START;
    for (int t = 0; t < cap->n + cap->ended && !st; t++) {
        const float *logits = decoder_infer_step(inf, &tok, 1, &m->p.dec, NULL);
        int target = t < cap->n ? cap->tokens[t] : SAC_VOCAB_END;
        lp[t] = token_logprob(logits, sz.V, target);
        tok = target;
    }
    free(img), free(feats);
    return st;
}

int attend_view_run(Captioner *cp, const Model *m, const SacImage *photo, const SearchOptions *opt, AttendView *v)
{
    memset(v, 0, sizeof(*v));
    SearchOptions o = *opt;
    o.want_alphas = 1, o.nbest = 1;
    int st = captioner_run(cp, photo, 1, &o, &v->cap, NULL);
    if (st) return st;
    const int n = v->cap.n;
    v->word_logprob = sac_calloc((size_t)n + 1, sizeof(float));
    v->words = sac_calloc((size_t)n + 1, sizeof(char *));
    v->text = captioner_text(m, &v->cap);
    if (!v->word_logprob || !v->words || !v->text) st = SAC_ERR_NOMEM;
    for (int t = 0; t < n && !st; t++) v->words[t] = vocab_word(m->vocab, v->cap.tokens[t]);
    if (!st) st = word_logprobs(cp, m, photo, &v->cap, v->word_logprob);
    if (st) attend_view_clear(v);
    return st;
}

void attend_view_clear(AttendView *v)
{
    caption_clear(&v->cap);
    free(v->word_logprob);
    free(v->text);
    free(v->words);
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

cJSON *attend_view_json(const char *image, const Model *m, const AttendView *v)
{
    const int Hg = m->grid_h, Wg = m->grid_w, P = m->P, n = v->cap.n;
    cJSON *o = cJSON_CreateObject(), *grid = NULL, *words = NULL;
    int ok = o && add_text(o, "image", image) && add_text(o, "caption", v->text) &&
             cJSON_AddNumberToObject(o, "logprob", round6(v->cap.logprob)) &&
             cJSON_AddBoolToObject(o, "ended", v->cap.ended) && (grid = cJSON_AddArrayToObject(o, "grid"));
    ok = ok && cJSON_AddItemToArray(grid, cJSON_CreateNumber(Hg)) && cJSON_AddItemToArray(grid, cJSON_CreateNumber(Wg));
    ok = ok && (words = cJSON_AddArrayToObject(o, "words"));
    for (int t = 0; t < n && ok; t++) {
        cJSON *w = cJSON_CreateObject(), *att = NULL;
        ok = w && cJSON_AddItemToArray(words, w) && add_text(w, "word", v->words[t]) &&
             cJSON_AddNumberToObject(w, "logprob", round6(v->word_logprob[t])) &&
             (att = cJSON_AddArrayToObject(w, "attention"));
        const float *a = v->cap.alphas + (size_t)t * P;
        for (int i = 0; i < Hg && ok; i++) {
            cJSON *row = cJSON_CreateArray();
            ok = row && cJSON_AddItemToArray(att, row);
            for (int j = 0; j < Wg && ok; j++) ok = cJSON_AddItemToArray(row, cJSON_CreateNumber(round6(a[i * Wg + j])));
        }
    }
    if (ok && v->cap.ended) ok = cJSON_AddNumberToObject(o, "end_logprob", round6(v->word_logprob[n])) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
