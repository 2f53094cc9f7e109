/*
 * search.c - greedy decoding, multinomial sampling and beam search, with the repetition
 * guard, see search.h.
 *
 * Size letters: B images, R rows, P grid positions, V vocabulary, T steps, K beam width.
 */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastmath.h"
#include "sac.h"
#include "vocab.h"

void caption_clear(Caption *c)
{
    if (!c) return;
    free(c->tokens);
    free(c->alphas);
    memset(c, 0, sizeof(*c));
}

SearchOptions search_default_options(const DecoderSizes *sz)
{
    /* no_repeat_bigram on: on the Flickr8k dev split it raised beam-3 CIDEr-D of the MobileNetV2
     * model from 0.495 to 0.506 and removed captions such as "a man is sitting on a rock rock" */
    return (SearchOptions){.beam = 3, .nbest = 1, .max_len = sz->T, .len_norm = 0.7f, .want_alphas = 0,
                           .no_repeat_bigram = 1};
}

static int banned(int v) { return v == SAC_VOCAB_PAD || v == SAC_VOCAB_START || v == SAC_VOCAB_UNK; }

/* The repetition guard: the words a caption tokens[0..n) may not take next, into out (room
 * for n + 1); returns how many. */
static int guard_words(int *out, const int *tokens, int n, const SearchOptions *o)
{
    int k = 0;
    if (n == 0) return 0;
    const int last = tokens[n - 1];
    if (o->no_repeat) out[k++] = last;
    if (o->no_repeat_bigram)
        for (int i = 0; i + 1 < n; i++)
            if (tokens[i] == last) out[k++] = tokens[i + 1];
    return k;
}

static int allowed(int v, const int *guard, int n_guard)
{
    if (banned(v)) return 0;
    for (int i = 0; i < n_guard; i++)
        if (guard[i] == v) return 0;
    return 1;
}

/* What sampling may draw: every word but <pad> and <start> (never a training target, so their
 * probability is ~0). <unk> stays: self-critical training differentiates the model's own full
 * softmax, and samples drawn from anything else bias that gradient by the advantage times the
 * left-out mass. With the greedy baseline most advantages are negative, so leaving <unk> out
 * raised its logit and flattened every other word's step after step, until greedy captions
 * fell apart (dev CIDEr-D of the greedy captions 0.82 -> 0.32 in 150 steps at lr 1e-5). A
 * sample's <unk> costs it in the reward instead. */
static int sample_allowed(int v, const int *guard, int n_guard)
{
    if (v == SAC_VOCAB_PAD || v == SAC_VOCAB_START) return 0;
    for (int i = 0; i < n_guard; i++)
        if (guard[i] == v) return 0;
    return 1;
}

/* log-softmax normaliser of one row: log sum exp, in 8 independent lanes (so the loops
 * vectorise; sac_expf is within 3e-7 of exp) added up in double */
static float log_sum_exp(const float *l, int V)
{
    const float m = sac_max_lanes(l, V);
    float acc[8] = {0};
    int v;
    for (v = 0; v + 8 <= V; v += 8)
        for (int j = 0; j < 8; j++) acc[j] += sac_expf(l[v + j] - m);
    double s = 0.0;
    for (int j = 0; j < 8; j++) s += acc[j];
    for (; v < V; v++) s += sac_expf(l[v] - m);
    return m + (float)log(s);
}

static int check_options(const SearchOptions *o, const DecoderSizes *sz)
{
    if (o->beam < 1 || o->nbest < 1 || o->nbest > o->beam || o->max_len < 1 || o->max_len > sz->T ||
        !(o->len_norm >= 0.0f)) {
        sac_error("search: beam %d, nbest %d, max_len %d, len_norm %g: expected beam >= 1, 1 <= nbest <= beam, "
                  "1 <= max_len <= %d, len_norm >= 0",
                  o->beam, o->nbest, o->max_len, o->len_norm, sz->T);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}

static float norm_score(float logprob, int steps, float len_norm)
{
    return len_norm == 0.0f ? logprob : logprob / powf((float)steps, len_norm);
}

/* Greedy: the most likely allowed word of logits l (V). */
static int pick_greedy(const float *l, int V, const int *guard, int ng)
{
    int best = -1;
    for (int v = 0; v < V; v++)
        if (allowed(v, guard, ng) && (best < 0 || l[v] > l[best])) best = v;
    return best;
}

/* Sampling: one draw from the softmax of l (V) over the words sampling allows; prob (V) scratch. */
static int pick_sample(const float *l, int V, const int *guard, int ng, double *prob, SacRng *rng)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (sample_allowed(v, guard, ng) && l[v] > mx) mx = l[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        prob[v] = sample_allowed(v, guard, ng) ? exp((double)l[v] - mx) : 0.0;
        sum += prob[v];
    }
    /* the first word whose cumulative probability exceeds u * sum */
    const double u = sac_rng_uniform(rng) * sum;
    int w = -1;
    double acc = 0.0;
    for (int v = 0; v < V; v++) {
        if (prob[v] == 0.0) continue;
        w = v; /* the last allowed word takes what rounding leaves over */
        acc += prob[v];
        if (acc > u) break;
    }
    return w;
}

/* greedy_decode (rng NULL) and sample_decode: R rows, row r describing image img[r] of feats
 * (img NULL: image r), one word per row and step. Rows are the captions still going (row_c[i]
 * is row i's caption): finished ones are dropped from the decoder (a row's logits do not
 * depend on the others), so a step costs what its live captions need. */
static int decode_rows(Caption *out, DecoderInfer *inf, const float *feats, int n_images, const int *img, int R,
                       const DecoderParams *p, const SearchOptions *opt, SacRng *rng)
{
    const DecoderSizes *sz = decoder_infer_sizes(inf);
    const int V = sz->V, P = sz->P, T = opt->max_len;
    int st = decoder_infer_start(inf, feats, n_images, img, R, p);
    if (st) return st;
    int *tok = sac_malloc(sizeof(int) * R), *row_c = sac_malloc(sizeof(int) * R), *parent = sac_malloc(sizeof(int) * R);
    int *guard = sac_malloc(sizeof(int) * (T + 1));
    double *prob = rng ? sac_malloc(sizeof(double) * V) : NULL;
    if (!tok || !row_c || !parent || !guard || (rng && !prob)) st = SAC_ERR_NOMEM;
    for (int r = 0; r < R; r++) {
        memset(&out[r], 0, sizeof(Caption));
        if (st) continue;
        out[r].tokens = sac_malloc(sizeof(int) * T);
        out[r].alphas = opt->want_alphas ? sac_malloc(sizeof(float) * T * P) : NULL;
        if (!out[r].tokens || (opt->want_alphas && !out[r].alphas)) st = SAC_ERR_NOMEM;
        tok[r] = SAC_VOCAB_START, row_c[r] = r;
    }
    int live = R;
    for (int t = 0; t < T && live > 0 && !st; t++) {
        const float *alphas;
        const float *logits = decoder_infer_step(inf, tok, live, p, &alphas);
        int alive = 0;
        for (int r = 0; r < live; r++) {
            const float *l = logits + (size_t)r * V;
            Caption *c = &out[row_c[r]];
            const int ng = guard_words(guard, c->tokens, c->n, opt);
            const int w = rng ? pick_sample(l, V, guard, ng, prob, rng) : pick_greedy(l, V, guard, ng);
            c->logprob += l[w] - log_sum_exp(l, V);
            if (w == SAC_VOCAB_END) {
                c->ended = 1;
                continue;
            }
            if (c->alphas) memcpy(c->alphas + (size_t)c->n * P, alphas + (size_t)r * P, sizeof(float) * P);
            c->tokens[c->n++] = w;
            parent[alive] = r, row_c[alive] = row_c[r], tok[alive] = w;
            alive++;
        }
        if (alive < live && alive > 0) decoder_infer_reorder(inf, parent, alive);
        live = alive;
    }
    for (int r = 0; r < R && !st; r++)
        out[r].score = norm_score(out[r].logprob, out[r].n + out[r].ended, opt->len_norm);
    free(tok), free(row_c), free(parent), free(guard), free(prob);
    if (st)
        for (int r = 0; r < R; r++) caption_clear(&out[r]);
    return st;
}

int greedy_decode(Caption *out, DecoderInfer *inf, const float *feats, int B, const DecoderParams *p,
                  const SearchOptions *opt)
{
    const int st = check_options(opt, decoder_infer_sizes(inf));
    return st ? st : decode_rows(out, inf, feats, B, NULL, B, p, opt, NULL);
}

int sample_decode(Caption *out, DecoderInfer *inf, const float *feats, int n_images, const int *img, int R,
                  const DecoderParams *p, const SearchOptions *opt, SacRng *rng)
{
    int st = check_options(opt, decoder_infer_sizes(inf));
    if (st) return st;
    if (R < 1 || !rng) {
        sac_error("sample_decode: %d rows, rng %s: expected at least 1 row and a generator", R, rng ? "set" : "NULL");
        return SAC_ERR_INVALID;
    }
    return decode_rows(out, inf, feats, n_images, img, R, p, opt, rng);
}

/* A beam: its words so far, their attention, and the running log-probability. */
typedef struct {
    int n;
    float logprob;
    int *tokens;   /* (T) */
    float *alphas; /* (T, P) */
} Beam;

typedef struct {
    float logprob;
    int row, word;
} Candidate;

static int cmp_candidate(const void *x, const void *y)
{
    const Candidate *a = x, *b = y;
    if (a->logprob != b->logprob) return a->logprob < b->logprob ? 1 : -1;
    if (a->row != b->row) return a->row - b->row; /* ties: the earlier beam, then the lower id */
    return a->word - b->word;
}

static int cmp_caption_score(const void *x, const void *y)
{
    const Caption *a = x, *b = y;
    if (a->score != b->score) return a->score < b->score ? 1 : -1;
    return 0;
}

static int caption_from_beam(Caption *c, const Beam *b, int ended, int P, float len_norm, int want_alphas)
{
    memset(c, 0, sizeof(*c));
    c->n = b->n, c->ended = ended, c->logprob = b->logprob;
    c->score = norm_score(b->logprob, b->n + ended, len_norm);
    c->tokens = sac_malloc(sizeof(int) * (b->n ? b->n : 1));
    if (!c->tokens) return SAC_ERR_NOMEM;
    memcpy(c->tokens, b->tokens, sizeof(int) * b->n);
    if (want_alphas) {
        c->alphas = sac_malloc(sizeof(float) * (b->n ? b->n : 1) * P);
        if (!c->alphas) return SAC_ERR_NOMEM;
        memcpy(c->alphas, b->alphas, sizeof(float) * b->n * P);
    }
    return SAC_OK;
}

/* The best `keep` extensions of beam r (in cmp_candidate order) into out; returns how many. */
static int row_best(Candidate *out, const float *l, int V, int r, float base, float lse, int keep,
                    const int *guard, int n_guard)
{
    int n = 0;
    for (int v = 0; v < V && keep > 0; v++) {
        if (!allowed(v, guard, n_guard)) continue;
        const Candidate c = {base + (l[v] - lse), r, v};
        if (n == keep && cmp_candidate(&c, &out[n - 1]) >= 0) continue;
        int i = n < keep ? n++ : n - 1; /* insert, dropping the worst when full */
        while (i > 0 && cmp_candidate(&c, &out[i - 1]) < 0) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = c;
    }
    return n;
}

/* One image's search: its beams (current and next generation), finished captions, and where
 * its live beams sit among the decoder's rows this step. */
typedef struct {
    Beam *cur, *next;
    Caption *done; /* (2K) */
    int n_alive, n_done, row0;
} Search;

int beam_search_batch(Caption *out, int *counts, DecoderInfer *inf, const float *feats, int B,
                      const DecoderParams *p, const SearchOptions *opt)
{
    const DecoderSizes *sz = decoder_infer_sizes(inf);
    const int V = sz->V, P = sz->P, T = opt->max_len, K = opt->beam;
    int st = check_options(opt, sz);
    if (st) return st;
    memset(out, 0, sizeof(Caption) * B * opt->nbest);
    st = decoder_infer_start(inf, feats, B, NULL, B, p); /* row b: image b's first beam */
    if (st) return st;

    Search *sr = sac_calloc(B, sizeof(Search));
    Beam *beams = sac_calloc((size_t)2 * K * B, sizeof(Beam));
    Caption *done = sac_calloc((size_t)2 * K * B, sizeof(Caption));
    Candidate *cand = sac_malloc(sizeof(Candidate) * (size_t)K * K);
    int *tok = sac_malloc(sizeof(int) * K * B), *parent = sac_malloc(sizeof(int) * K * B);
    int *guard = sac_malloc(sizeof(int) * (T + 1));
    if (!sr || !beams || !done || !cand || !tok || !parent || !guard) st = SAC_ERR_NOMEM;
    for (int i = 0; i < 2 * K * B && !st; i++) {
        beams[i].tokens = sac_malloc(sizeof(int) * T);
        beams[i].alphas = sac_malloc(sizeof(float) * T * P);
        if (!beams[i].tokens || !beams[i].alphas) st = SAC_ERR_NOMEM;
    }
    for (int b = 0; b < B && !st; b++) {
        sr[b] = (Search){beams + (size_t)2 * K * b, beams + (size_t)2 * K * b + K, done + (size_t)2 * K * b, 1, 0, b};
        tok[b] = SAC_VOCAB_START;
    }
    int R = B; /* live beams of all images: the decoder's rows */
    for (int t = 0; t < T && R > 0 && !st; t++) {
        const float *alphas;
        const float *logits = decoder_infer_step(inf, tok, R, p, &alphas);
        int n_rows = 0;
        for (int b = 0; b < B && !st; b++) {
            Search *s = &sr[b];
            const int row0 = s->row0;
            s->row0 = n_rows;
            if (s->n_alive == 0) continue;
            /* every (beam, word) extension, ranked by total log-probability; only the best
             * keep = K - n_done can matter, and those are among the best `keep` of each beam */
            int keep = K - s->n_done, nc = 0;
            for (int r = 0; r < s->n_alive; r++) {
                const float *l = logits + (size_t)(row0 + r) * V;
                const int ng = guard_words(guard, s->cur[r].tokens, s->cur[r].n, opt);
                nc += row_best(cand + nc, l, V, r, s->cur[r].logprob, log_sum_exp(l, V), keep, guard, ng);
            }
            for (int i = 0; i < keep && i < nc; i++) {
                int best = i;
                for (int j = i + 1; j < nc; j++)
                    if (cmp_candidate(&cand[j], &cand[best]) < 0) best = j;
                Candidate tmp = cand[i];
                cand[i] = cand[best], cand[best] = tmp;
            }
            int n_next = 0;
            for (int i = 0; i < keep && i < nc && !st; i++) {
                const Candidate *c = &cand[i];
                const Beam *from = &s->cur[c->row];
                if (c->word == SAC_VOCAB_END) {
                    Beam fin = *from;
                    fin.logprob = c->logprob;
                    st = caption_from_beam(&s->done[s->n_done++], &fin, 1, P, opt->len_norm, opt->want_alphas);
                    continue;
                }
                Beam *nb = &s->next[n_next++];
                nb->n = from->n + 1;
                nb->logprob = c->logprob;
                memcpy(nb->tokens, from->tokens, sizeof(int) * from->n);
                nb->tokens[from->n] = c->word;
                memcpy(nb->alphas, from->alphas, sizeof(float) * from->n * P);
                memcpy(nb->alphas + (size_t)from->n * P, alphas + (size_t)(row0 + c->row) * P, sizeof(float) * P);
                parent[n_rows] = row0 + c->row;
                tok[n_rows] = c->word;
                n_rows++;
            }
            Beam *tmp = s->cur;
            s->cur = s->next, s->next = tmp;
            s->n_alive = n_next;
        }
        R = n_rows;
        if (R > 0 && !st) decoder_infer_reorder(inf, parent, R);
    }
    for (int b = 0; b < B && !st; b++) {
        Search *s = &sr[b];
        /* beams still alive at max_len end without <end>: they are captions too */
        for (int r = 0; r < s->n_alive && !st && s->n_done < 2 * K; r++)
            st = caption_from_beam(&s->done[s->n_done++], &s->cur[r], 0, P, opt->len_norm, opt->want_alphas);
        if (st) break;
        qsort(s->done, s->n_done, sizeof(Caption), cmp_caption_score);
        /* the best nbest distinct word sequences (a hypothesis equal to a better one adds nothing) */
        int n_out = 0;
        for (int i = 0; i < s->n_done && n_out < opt->nbest; i++) {
            int dup = 0;
            for (int j = 0; j < n_out && !dup; j++) {
                const Caption *x = &out[(size_t)b * opt->nbest + j];
                dup = x->n == s->done[i].n && !memcmp(x->tokens, s->done[i].tokens, sizeof(int) * x->n);
            }
            if (dup) continue;
            out[(size_t)b * opt->nbest + n_out++] = s->done[i];
            memset(&s->done[i], 0, sizeof(Caption)); /* moved */
        }
        for (int i = n_out; i < opt->nbest; i++) memset(&out[(size_t)b * opt->nbest + i], 0, sizeof(Caption));
        if (counts) counts[b] = n_out;
    }
    for (int i = 0; st && i < B * opt->nbest; i++) caption_clear(&out[i]);
    for (int i = 0; done && i < 2 * K * B; i++) caption_clear(&done[i]);
    for (int i = 0; beams && i < 2 * K * B; i++) free(beams[i].tokens), free(beams[i].alphas);
    free(sr), free(beams), free(done), free(cand), free(tok), free(parent), free(guard);
    return st;
}

int beam_search_run(Caption *out, DecoderInfer *inf, const float *feats, const DecoderParams *p,
                    const SearchOptions *opt)
{
    Caption *tmp = sac_calloc(opt->nbest, sizeof(Caption));
    if (!tmp) return SAC_ERR_NOMEM;
    int n = 0;
    int st = beam_search_batch(tmp, &n, inf, feats, 1, p, opt);
    if (!st) memcpy(out, tmp, sizeof(Caption) * n);
    free(tmp);
    return st ? st : n;
}
