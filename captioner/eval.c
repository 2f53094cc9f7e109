/*
 * eval.c - decoding a split and scoring it, see eval.h.
 *
 * Size letters: B images, S input side, P grid positions, V vocabulary.
 */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_cache.h"
#include "sac.h"
#include "vocab.h"

void eval_result_clear(EvalResult *r)
{
    if (!r) return;
    for (int i = 0; r->captions && i < r->n_images; i++) free(r->captions[i]);
    free(r->captions), free(r->image_ids), free(r->names);
    memset(r, 0, sizeof(*r));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int eval_cached(const Model *m, Captioner *cap, const DataCache *c, const FeatCache *fc, const Dataset *ds,
                const SearchOptions *opt, int keep, EvalResult *out)
{
    memset(out, 0, sizeof(*out));
    enum { chunk = 64 };
    const int S = c->S, n = c->n;
    float *images = sac_alloc_floats(fc ? (size_t)chunk * fc->per : (size_t)chunk * 3 * S * S);
    Caption *caps = sac_calloc((size_t)chunk * opt->nbest, sizeof(Caption));
    char **cands = sac_calloc(n, sizeof(char *));
    char ***refs = NULL;
    int *n_refs = NULL;
    char *used = sac_calloc(m->cfg.V, 1);
    int st = (images && caps && cands && used) ? SAC_OK : SAC_ERR_NOMEM;
    long words = 0;
    double att_max = 0, att_ent = 0; /* sums over words: largest weight, entropy */
    SearchOptions o = *opt;
    o.want_alphas = 1; /* for the attention sharpness */
    opt = &o;
    const int P = m->P;
    for (int i0 = 0; i0 < n && !st; i0 += chunk) {
        int B = n - i0 < chunk ? n - i0 : chunk;
        int item[chunk];
        for (int b = 0; b < B; b++) item[b] = i0 + b;
        if (fc) {
            feat_cache_gather(fc, item, NULL, B, images);
            st = captioner_run_features(cap, images, B, opt, caps, NULL);
        } else {
            data_cache_images(c, item, NULL, B, &m->cfg, NULL, images);
            st = captioner_run_preprocessed(cap, images, B, opt, caps, NULL);
        }
        for (int b = 0; b < B && !st; b++) {
            Caption *best = &caps[(size_t)b * opt->nbest];
            cands[i0 + b] = captioner_text(m, best);
            if (!cands[i0 + b]) st = SAC_ERR_NOMEM;
            words += best->n;
            for (int w = 0; w < best->n; w++) {
                used[best->tokens[w]] = 1;
                const float *a = best->alphas + (size_t)w * P;
                float mx = 0;
                double ent = 0;
                for (int q = 0; q < P; q++) {
                    mx = a[q] > mx ? a[q] : mx;
                    if (a[q] > 0) ent -= a[q] * log(a[q]);
                }
                att_max += mx, att_ent += ent;
            }
        }
        for (int b = 0; b < B * opt->nbest; b++) caption_clear(&caps[b]);
    }
    if (!st) st = data_cache_refs(c, ds, &refs, &n_refs);
    if (!st) st = metrics_score((const char *const *)cands, (const char *const *const *)refs, n_refs, n, &out->scores);
    if (!st) {
        out->n_images = n;
        out->mean_len = (double)words / n;
        out->att_max = words ? att_max / words : 0;
        out->att_entropy = words && P > 1 ? att_ent / words / log(P) : 0;
        for (int v = 0; v < m->cfg.V; v++) out->vocab_used += used[v];
        char **sorted = sac_malloc(sizeof(char *) * n);
        if (sorted) {
            memcpy(sorted, cands, sizeof(char *) * n);
            qsort(sorted, n, sizeof(char *), cmp_str);
            for (int i = 0; i < n; i++) out->n_distinct += i == 0 || strcmp(sorted[i], sorted[i - 1]);
            free(sorted);
        }
        if (keep) {
            out->captions = cands;
            cands = NULL;
            out->image_ids = sac_malloc(sizeof(int64_t) * n);
            out->names = sac_malloc(sizeof(char *) * n);
            for (int i = 0; i < n && out->image_ids && out->names; i++) {
                out->image_ids[i] = ds->items[c->item[i]].image_id;
                out->names[i] = ds->items[c->item[i]].name;
            }
        }
    }
    for (int i = 0; cands && i < n; i++) free(cands[i]);
    data_cache_refs_free(refs, n_refs, n);
    free(images), free(caps), free(cands), free(used);
    return st;
}

int eval_dataset(const Model *m, const Dataset *ds, const SearchOptions *opt, int max_images, int keep_captions,
                 EvalResult *out)
{
    DataCache c;
    int st = data_cache_build(&c, ds, max_images, NULL, m->cfg.enc.image_size, m->cfg.T, ds->source);
    if (st) return st;
    Captioner *cap = captioner_create(m, 64, opt->beam);
    st = cap ? eval_cached(m, cap, &c, NULL, ds, opt, keep_captions, out) : SAC_ERR_NOMEM;
    captioner_free(cap);
    data_cache_free(&c);
    return st;
}
