/*
 * metrics.c - BLEU-1..4, ROUGE-L and CIDEr-D as coco-caption computes them (the formulas
 * are stated in metrics.h; references: pycocoevalcap bleu/bleu_scorer.py, rouge/rouge.py,
 * cider/cider_scorer.py).
 *
 * Sizes: I images, R_i references of image i. No tensors (B T P E A D M V K unused).
 *
 * Every token is interned to a word id and every k-gram (k = 1..4) to a gram id through
 * open-addressing hash tables, so each sentence becomes a list of (gram id, count) pairs
 * sorted by id. Clipped counts, document frequencies and the CIDEr dot products are then
 * linear passes over those lists; nothing compares strings twice.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"

#define BLEU_TINY 1e-15  /* bleu_scorer.py: "so that if guess is 0 still return 0" */
#define BLEU_SMALL 1e-9
#define ROUGE_BETA 1.2
#define CIDER_SIGMA 6.0
#define GRAM_PAD UINT32_MAX /* unused word slot of a gram shorter than SAC_BLEU_N */
#define ID_LIMIT (UINT32_MAX / 4)

/* A growable array of uint32_t. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} U32Vec;

static int u32vec_push(U32Vec *a, uint32_t x)
{
    uint32_t *v = sac_grow(a->v, &a->cap, a->n + 1, sizeof(*v));
    if (!v) {
        sac_error("metrics: out of memory growing an array past %zu entries", a->n);
        return SAC_ERR_NOMEM;
    }
    a->v = v;
    a->v[a->n++] = x;
    return SAC_OK;
}

/* Open-addressing table of ids, linear probing. A slot holds id + 1 in its low 32 bits
 * (0: empty) and the key's hash >> 32 in its high bits, so a probe rarely touches the
 * keys, which live with the caller (WordTable, GramTable). */
typedef struct {
    uint64_t *slots;
    size_t mask; /* number of slots - 1, a power of two minus one */
    uint32_t n;  /* ids stored */
} IdTable;

static int idtable_init(IdTable *t, size_t want)
{
    size_t n = 1024;
    while (n < 2 * want) n *= 2;
    t->slots = sac_calloc(n, sizeof(*t->slots));
    t->mask = n - 1, t->n = 0;
    return t->slots ? SAC_OK : SAC_ERR_NOMEM;
}

/* Words: token (pointer into the caller's strings, byte length) -> word id. */
typedef struct {
    IdTable tab;
    const char **str;
    uint32_t *len;
    uint64_t *hash; /* full hash of each id, to rebuild the slots when growing */
    uint32_t cap;
} WordTable;

/* Grams: up to SAC_BLEU_N word ids (GRAM_PAD after the last) -> gram id. */
typedef struct {
    IdTable tab;
    uint32_t *words; /* (n grams, SAC_BLEU_N) */
    uint8_t *order;  /* k of each gram, 1..SAC_BLEU_N */
    uint64_t *hash; /* full hash of each id, to rebuild the slots when growing */
    uint32_t cap;
} GramTable;

/* One sentence: its str.split() length, its grams, its str.split(" ") tokens. */
typedef struct {
    uint32_t n_tokens;
    uint32_t n_grams;  /* distinct grams: pairs at gram_off .. gram_off + n_grams */
    size_t gram_off;
    uint32_t n_rtokens; /* ROUGE tokens at rtok_off */
    size_t rtok_off;
} Sentence;

typedef struct {
    WordTable words;
    GramTable grams;
    Sentence *sents;
    U32Vec gram_id, gram_count; /* parallel: the (id, count) pairs of every sentence */
    U32Vec rtok;                /* ROUGE token word ids of every sentence */
    U32Vec scratch_tok, scratch_gram;
} Cooked;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_gram(const uint32_t *w)
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < SAC_BLEU_N; k++) {
        h = (h ^ w[k]) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static uint64_t slot_make(uint64_t hash, uint32_t id)
{
    return (hash & 0xffffffff00000000ull) | (id + 1u);
}

/* Rebuild the slots at twice the size from the stored hashes. */
static int idtable_grow(IdTable *t, const uint64_t *hashes)
{
    size_t n = 2 * (t->mask + 1);
    uint64_t *slots = sac_calloc(n, sizeof(*slots));
    if (!slots) return SAC_ERR_NOMEM;
    for (uint32_t id = 0; id < t->n; id++) {
        size_t i = hashes[id] & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = slot_make(hashes[id], id);
    }
    free(t->slots);
    t->slots = slots, t->mask = n - 1;
    return SAC_OK;
}

static int grow_arrays(void **arrs[], const size_t *elem, int n_arrs, uint32_t *cap)
{
    uint32_t ncap = *cap ? 2 * *cap : 1024;
    for (int a = 0; a < n_arrs; a++) {
        void *p = realloc(*arrs[a], (size_t)ncap * elem[a]);
        if (!p) {
            sac_error("metrics: out of memory growing a table to %u entries", ncap);
            return SAC_ERR_NOMEM;
        }
        *arrs[a] = p;
    }
    *cap = ncap;
    return SAC_OK;
}

/* The id of token s[0..n), adding it if new; negative status on failure. */
static int64_t word_intern(WordTable *w, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n);
    size_t i = h & w->tab.mask;
    for (uint64_t slot; (slot = w->tab.slots[i]) != 0; i = (i + 1) & w->tab.mask) {
        uint32_t id = (uint32_t)slot - 1;
        if ((slot ^ h) >> 32 == 0 && w->len[id] == n && memcmp(w->str[id], s, n) == 0) return id;
    }
    if (w->tab.n >= ID_LIMIT) {
        sac_error("metrics: more than %u distinct tokens, expected fewer", (unsigned)ID_LIMIT);
        return SAC_ERR_UNSUPPORTED;
    }
    if (w->tab.n == w->cap) {
        void **arrs[] = {(void **)&w->str, (void **)&w->len, (void **)&w->hash};
        const size_t elem[] = {sizeof(*w->str), sizeof(*w->len), sizeof(*w->hash)};
        int err = grow_arrays(arrs, elem, 3, &w->cap);
        if (err) return err;
    }
    uint32_t id = w->tab.n++;
    w->str[id] = s, w->len[id] = (uint32_t)n, w->hash[id] = h;
    w->tab.slots[i] = slot_make(h, id);
    if (2 * (size_t)w->tab.n > w->tab.mask) {
        int err = idtable_grow(&w->tab, w->hash);
        if (err) return err;
    }
    return id;
}

/* The id of gram key[0..SAC_BLEU_N) (GRAM_PAD-padded) of order k, adding it if new. */
static int64_t gram_intern(GramTable *g, const uint32_t *key, int k)
{
    uint64_t h = hash_gram(key);
    size_t i = h & g->tab.mask;
    for (uint64_t slot; (slot = g->tab.slots[i]) != 0; i = (i + 1) & g->tab.mask) {
        uint32_t id = (uint32_t)slot - 1;
        if ((slot ^ h) >> 32 == 0 && memcmp(g->words + (size_t)id * SAC_BLEU_N, key,
                                       SAC_BLEU_N * sizeof(*key)) == 0)
            return id;
    }
    if (g->tab.n >= ID_LIMIT) {
        sac_error("metrics: more than %u distinct n-grams, expected fewer", (unsigned)ID_LIMIT);
        return SAC_ERR_UNSUPPORTED;
    }
    if (g->tab.n == g->cap) {
        void **arrs[] = {(void **)&g->words, (void **)&g->order, (void **)&g->hash};
        const size_t elem[] = {SAC_BLEU_N * sizeof(*g->words), sizeof(*g->order), sizeof(*g->hash)};
        int err = grow_arrays(arrs, elem, 3, &g->cap);
        if (err) return err;
    }
    uint32_t id = g->tab.n++;
    memcpy(g->words + (size_t)id * SAC_BLEU_N, key, SAC_BLEU_N * sizeof(*key));
    g->order[id] = (uint8_t)k, g->hash[id] = h;
    g->tab.slots[i] = slot_make(h, id);
    if (2 * (size_t)g->tab.n > g->tab.mask) {
        int err = idtable_grow(&g->tab, g->hash);
        if (err) return err;
    }
    return id;
}

/* Python's str.split() separators for ASCII text. */
static int is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Ascending sort; a caption has a few dozen grams, where insertion sort beats qsort. */
static void sort_u32(uint32_t *v, size_t n)
{
    if (n > 64) {
        qsort(v, n, sizeof(*v), cmp_u32);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Tokenize one sentence both ways and append its sorted (gram id, count) pairs. */
static int sentence_cook(Cooked *ck, const char *s, Sentence *out)
{
    U32Vec *tok = &ck->scratch_tok, *gr = &ck->scratch_gram;
    int err;
    int64_t id;
    tok->n = 0, gr->n = 0;
    /* str.split(): BLEU and CIDEr tokens */
    for (const char *p = s;;) {
        while (*p && is_space((unsigned char)*p)) p++;
        if (!*p) break;
        const char *b = p;
        while (*p && !is_space((unsigned char)*p)) p++;
        if ((id = word_intern(&ck->words, b, (size_t)(p - b))) < 0) return (int)id;
        if ((err = u32vec_push(tok, (uint32_t)id))) return err;
    }
    if (tok->n > UINT32_MAX / SAC_BLEU_N) {
        sac_error("metrics: a sentence has %zu tokens, expected fewer", tok->n);
        return SAC_ERR_UNSUPPORTED;
    }
    out->n_tokens = (uint32_t)tok->n;
    for (int k = 1; k <= SAC_BLEU_N; k++) {
        for (size_t i = 0; i + k <= tok->n; i++) {
            uint32_t key[SAC_BLEU_N];
            for (int j = 0; j < SAC_BLEU_N; j++) key[j] = j < k ? tok->v[i + j] : GRAM_PAD;
            if ((id = gram_intern(&ck->grams, key, k)) < 0) return (int)id;
            if ((err = u32vec_push(gr, (uint32_t)id))) return err;
        }
    }
    sort_u32(gr->v, gr->n);
    out->gram_off = ck->gram_id.n;
    for (size_t i = 0; i < gr->n;) {
        size_t j = i;
        while (j < gr->n && gr->v[j] == gr->v[i]) j++;
        if ((err = u32vec_push(&ck->gram_id, gr->v[i]))) return err;
        if ((err = u32vec_push(&ck->gram_count, (uint32_t)(j - i)))) return err;
        i = j;
    }
    out->n_grams = (uint32_t)(ck->gram_id.n - out->gram_off);
    /* str.split(" "): ROUGE-L tokens, empty ones included */
    out->rtok_off = ck->rtok.n;
    for (const char *p = s;; p++) {
        const char *b = p;
        while (*p && *p != ' ') p++;
        if ((id = word_intern(&ck->words, b, (size_t)(p - b))) < 0) return (int)id;
        if ((err = u32vec_push(&ck->rtok, (uint32_t)id))) return err;
        if (!*p) break;
    }
    out->n_rtokens = (uint32_t)(ck->rtok.n - out->rtok_off);
    return SAC_OK;
}

static void cooked_free(Cooked *ck)
{
    free(ck->words.tab.slots), free(ck->words.str), free(ck->words.len), free(ck->words.hash);
    free(ck->grams.tab.slots), free(ck->grams.words), free(ck->grams.order);
    free(ck->grams.hash);
    free(ck->sents);
    free(ck->gram_id.v), free(ck->gram_count.v), free(ck->rtok.v);
    free(ck->scratch_tok.v), free(ck->scratch_gram.v);
}

/* my_lcs: length of the longest common subsequence, one DP row of nb + 1 entries. */
static uint32_t lcs_length(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb,
                           uint32_t *row)
{
    memset(row, 0, (nb + 1) * sizeof(*row));
    for (uint32_t i = 0; i < na; i++) {
        uint32_t diag = 0; /* lengths[i][j - 1] */
        for (uint32_t j = 1; j <= nb; j++) {
            uint32_t up = row[j]; /* lengths[i][j] */
            row[j] = a[i] == b[j - 1] ? diag + 1 : SAC_MAX(row[j], row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

/* rouge.py calc_score for one image. */
static double rouge_image(const Cooked *ck, const Sentence *c, const Sentence *refs, int n_refs,
                          uint32_t *row)
{
    const uint32_t *tc = ck->rtok.v + c->rtok_off;
    double prec_max = 0.0, rec_max = 0.0;
    for (int j = 0; j < n_refs; j++) {
        const uint32_t *tr = ck->rtok.v + refs[j].rtok_off;
        double lcs = lcs_length(tc, c->n_rtokens, tr, refs[j].n_rtokens, row);
        prec_max = SAC_MAX(prec_max, lcs / c->n_rtokens);
        rec_max = SAC_MAX(rec_max, lcs / refs[j].n_rtokens);
    }
    if (prec_max == 0.0 || rec_max == 0.0) return 0.0;
    double b2 = ROUGE_BETA * ROUGE_BETA;
    return (1 + b2) * prec_max * rec_max / (rec_max + b2 * prec_max);
}

/* cook_refs + cook_test for one image: add its clipped counts to the totals. maxc is a
 * zeroed scratch array over gram ids and is left zeroed. */
static void bleu_image(const Cooked *ck, const Sentence *c, const Sentence *refs, int n_refs,
                       uint32_t *maxc, SacBleuCounts *tot)
{
    int64_t testlen = c->n_tokens, reflen = refs[0].n_tokens;
    for (int j = 0; j < n_refs; j++) {
        int64_t l = refs[j].n_tokens;
        int64_t d = llabs(l - testlen), best = llabs(reflen - testlen);
        if (d < best || (d == best && l < reflen)) reflen = l; /* min((|l - T|, l)) */
        for (uint32_t p = 0; p < refs[j].n_grams; p++) {
            uint32_t id = ck->gram_id.v[refs[j].gram_off + p];
            maxc[id] = SAC_MAX(maxc[id], ck->gram_count.v[refs[j].gram_off + p]);
        }
    }
    for (uint32_t p = 0; p < c->n_grams; p++) {
        uint32_t id = ck->gram_id.v[c->gram_off + p];
        tot->correct[ck->grams.order[id] - 1] += SAC_MIN(ck->gram_count.v[c->gram_off + p], maxc[id]);
    }
    for (int j = 0; j < n_refs; j++)
        for (uint32_t p = 0; p < refs[j].n_grams; p++) maxc[ck->gram_id.v[refs[j].gram_off + p]] = 0;
    tot->testlen += testlen;
    tot->reflen += reflen;
    for (int k = 0; k < SAC_BLEU_N; k++) tot->guess[k] += SAC_MAX(0, testlen - k);
}

/* counts2vec's norms: sqrt of the summed squared tf-idf weights per order. */
static void cider_norms(const Cooked *ck, const Sentence *s, const double *idf,
                        double norm[SAC_BLEU_N])
{
    for (int k = 0; k < SAC_BLEU_N; k++) norm[k] = 0.0;
    for (uint32_t p = 0; p < s->n_grams; p++) {
        uint32_t id = ck->gram_id.v[s->gram_off + p];
        double v = ck->gram_count.v[s->gram_off + p] * idf[id];
        norm[ck->grams.order[id] - 1] += v * v;
    }
    for (int k = 0; k < SAC_BLEU_N; k++) norm[k] = sqrt(norm[k]);
}

/* One reference's part of compute_cider: the summed products val per order made cosine
 * similarities (divided by the norms), times the Gaussian penalty on the length difference,
 * added to score. */
static void cider_add_ref(double score[SAC_BLEU_N], double val[SAC_BLEU_N], const double norm_c[SAC_BLEU_N],
                          const double norm_r[SAC_BLEU_N], int64_t len_c, const Sentence *r)
{
    int64_t len_r = r->n_tokens > 1 ? r->n_tokens - 1 : 0;
    double delta = (double)(len_c - len_r);
    double penalty = exp(-(delta * delta) / (2 * CIDER_SIGMA * CIDER_SIGMA));
    for (int k = 0; k < SAC_BLEU_N; k++) {
        if (norm_c[k] != 0 && norm_r[k] != 0) val[k] /= norm_c[k] * norm_r[k];
        score[k] += val[k] * penalty;
    }
}

/* CIDEr-D from the summed scores of n_refs references: 10 * their mean over orders / n_refs. */
static double cider_final(const double score[SAC_BLEU_N], double n_refs)
{
    double mean = 0.0;
    for (int k = 0; k < SAC_BLEU_N; k++) mean += score[k];
    mean /= SAC_BLEU_N;
    return mean / n_refs * 10.0;
}

/* compute_cider for one image: 10 * mean over orders of the summed sims / n_refs. */
static double cider_image(const Cooked *ck, const Sentence *c, const Sentence *refs, int n_refs,
                          const double *idf)
{
    double norm_c[SAC_BLEU_N], norm_r[SAC_BLEU_N], score[SAC_BLEU_N] = {0};
    /* "length" in counts2vec sums the term frequencies of bigrams */
    int64_t len_c = c->n_tokens > 1 ? c->n_tokens - 1 : 0;
    cider_norms(ck, c, idf, norm_c);
    const uint32_t *cid = ck->gram_id.v + c->gram_off, *ccnt = ck->gram_count.v + c->gram_off;
    for (int j = 0; j < n_refs; j++) {
        const Sentence *r = &refs[j];
        const uint32_t *rid = ck->gram_id.v + r->gram_off, *rcnt = ck->gram_count.v + r->gram_off;
        double val[SAC_BLEU_N] = {0};
        cider_norms(ck, r, idf, norm_r);
        /* both lists are sorted by gram id: walk them together */
        for (uint32_t p = 0, q = 0; p < c->n_grams && q < r->n_grams;) {
            if (cid[p] < rid[q]) {
                p++;
            } else if (cid[p] > rid[q]) {
                q++;
            } else {
                double vc = ccnt[p] * idf[cid[p]], vr = rcnt[q] * idf[rid[q]];
                val[ck->grams.order[cid[p]] - 1] += SAC_MIN(vc, vr) * vr;
                p++, q++;
            }
        }
        cider_add_ref(score, val, norm_c, norm_r, len_c, r);
    }
    return cider_final(score, n_refs);
}

void metrics_bleu_from_counts(const SacBleuCounts *counts, double bleu[SAC_BLEU_N])
{
    double ratio = (counts->testlen + BLEU_TINY) / (counts->reflen + BLEU_SMALL);
    for (int nn = 1; nn <= SAC_BLEU_N; nn++) {
        double b = 1.0;
        for (int k = 0; k < nn; k++)
            b *= (counts->correct[k] + BLEU_TINY) / (counts->guess[k] + BLEU_SMALL);
        bleu[nn - 1] = pow(b, 1.0 / nn);
        if (ratio < 1) bleu[nn - 1] *= exp(1 - 1 / ratio);
    }
}

static int validate(const char *const *cands, const char *const *const *refs, const int *n_refs,
                    int n_images, const SacScores *out, size_t *n_sents)
{
    if (!cands || !refs || !n_refs || !out) {
        sac_error("metrics_score: expected non-NULL cands, refs, n_refs and out, found %s NULL",
                  !cands ? "cands" : !refs ? "refs" : !n_refs ? "n_refs" : "out");
        return SAC_ERR_INVALID;
    }
    if (n_images < 1) {
        sac_error("metrics_score: expected at least 1 image, found %d", n_images);
        return SAC_ERR_INVALID;
    }
    size_t n = 0;
    for (int i = 0; i < n_images; i++) {
        if (n_refs[i] < 1) {
            sac_error("metrics_score: image %d has %d references, expected at least 1", i,
                      n_refs[i]);
            return SAC_ERR_INVALID;
        }
        if (!cands[i] || !refs[i]) {
            sac_error("metrics_score: image %d: expected a candidate and references, found NULL %s",
                      i, !cands[i] ? "candidate" : "reference list");
            return SAC_ERR_INVALID;
        }
        for (int j = 0; j < n_refs[i]; j++) {
            if (!refs[i][j]) {
                sac_error("metrics_score: image %d: reference %d is NULL, expected a string", i, j);
                return SAC_ERR_INVALID;
            }
        }
        n += 1 + (size_t)n_refs[i];
    }
    *n_sents = n;
    return SAC_OK;
}

int metrics_score_per_image(const char *const *cands, const char *const *const *refs,
                            const int *n_refs, int n_images, SacScores *out, double *rouge_l,
                            double *cider_d)
{
    size_t n_sents;
    int err = validate(cands, refs, n_refs, n_images, out, &n_sents);
    if (err) return err;

    Cooked ck = {0};
    uint32_t *maxc = NULL, *row = NULL, *df = NULL, *seen = NULL;
    double *idf = NULL;
    err = SAC_ERR_NOMEM;
    if (!(ck.sents = sac_calloc(n_sents, sizeof(*ck.sents)))) goto fail;
    if (idtable_init(&ck.words.tab, 4096) || idtable_init(&ck.grams.tab, 4 * n_sents)) goto fail;
    /* sentence 0 of image i is its candidate, 1 .. n_refs[i] its references */
    uint32_t max_rtokens = 0;
    size_t s = 0;
    for (int i = 0; i < n_images; i++) {
        for (int j = -1; j < n_refs[i]; j++, s++) {
            if ((err = sentence_cook(&ck, j < 0 ? cands[i] : refs[i][j], &ck.sents[s]))) goto fail;
            max_rtokens = SAC_MAX(max_rtokens, ck.sents[s].n_rtokens);
        }
    }
    err = SAC_ERR_NOMEM;
    uint32_t n_grams = ck.grams.tab.n;
    maxc = sac_calloc(n_grams + 1, sizeof(*maxc));
    df = sac_calloc(n_grams + 1, sizeof(*df));
    seen = sac_calloc(n_grams + 1, sizeof(*seen)); /* image + 1 that last counted the gram */
    idf = sac_malloc((n_grams + 1) * sizeof(*idf));
    row = sac_malloc(((size_t)max_rtokens + 1) * sizeof(*row));
    if (!maxc || !df || !seen || !idf || !row) goto fail;

    /* compute_doc_freq: each image counts a gram once, over the union of its references */
    s = 0;
    for (int i = 0; i < n_images; i++) {
        s++;
        for (int j = 0; j < n_refs[i]; j++, s++) {
            for (uint32_t p = 0; p < ck.sents[s].n_grams; p++) {
                uint32_t id = ck.gram_id.v[ck.sents[s].gram_off + p];
                if (seen[id] != (uint32_t)i + 1) seen[id] = (uint32_t)i + 1, df[id]++;
            }
        }
    }
    double ref_len = log((double)n_images);
    for (uint32_t id = 0; id < n_grams; id++) idf[id] = ref_len - log(SAC_MAX(1.0, (double)df[id]));

    SacScores sc = {0};
    double rouge_sum = 0.0, cider_sum = 0.0;
    s = 0;
    for (int i = 0; i < n_images; i++) {
        const Sentence *c = &ck.sents[s], *r = &ck.sents[s + 1];
        bleu_image(&ck, c, r, n_refs[i], maxc, &sc.counts);
        double ri = rouge_image(&ck, c, r, n_refs[i], row);
        double ci = cider_image(&ck, c, r, n_refs[i], idf);
        if (rouge_l) rouge_l[i] = ri;
        if (cider_d) cider_d[i] = ci;
        rouge_sum += ri, cider_sum += ci;
        s += 1 + (size_t)n_refs[i];
    }
    metrics_bleu_from_counts(&sc.counts, sc.bleu);
    sc.rouge_l = rouge_sum / n_images;
    sc.cider_d = cider_sum / n_images;
    *out = sc;
    err = SAC_OK;
fail:
    if (err == SAC_ERR_NOMEM) sac_error("metrics_score: out of memory scoring %d images", n_images);
    free(maxc), free(df), free(seen), free(idf), free(row);
    cooked_free(&ck);
    return err;
}

int metrics_score(const char *const *cands, const char *const *const *refs, const int *n_refs,
                  int n_images, SacScores *out)
{
    return metrics_score_per_image(cands, refs, n_refs, n_images, out, NULL, NULL);
}

/* ---------------------------------------------------------------- CIDEr-D as a reward */

struct SacCider {
    Cooked ck;         /* every reference of every image, in order */
    char *text;        /* the references' bytes, which the word table points into */
    int n_images;
    size_t *ref_off;   /* (n_images + 1) first sentence of image i */
    double *idf;       /* (grams) L - log(max(1, df)) */
    double *norm;      /* (sentences, SAC_BLEU_N) tf-idf norms */
    double log_n;      /* L */
};

void metrics_cider_free(SacCider *c)
{
    if (!c) return;
    cooked_free(&c->ck);
    free(c->text), free(c->ref_off), free(c->idf), free(c->norm);
    free(c);
}

SacCider *metrics_cider_create(const char *const *const *refs, const int *n_refs, int n_images)
{
    SacCider *c = NULL;
    uint32_t *df = NULL, *seen = NULL;
    size_t n_sents = 0, bytes = 0;
    if (!refs || !n_refs || n_images < 1) {
        sac_error("metrics_cider_create: expected references of at least 1 image, found %s",
                  !refs || !n_refs ? "NULL" : "none");
        return NULL;
    }
    for (int i = 0; i < n_images; i++) {
        if (n_refs[i] < 1 || !refs[i]) {
            sac_error("metrics_cider_create: image %d has %d references, expected at least 1", i, n_refs[i]);
            return NULL;
        }
        for (int j = 0; j < n_refs[i]; j++) {
            if (!refs[i][j]) {
                sac_error("metrics_cider_create: image %d: reference %d is NULL, expected a string", i, j);
                return NULL;
            }
            bytes += strlen(refs[i][j]) + 1;
        }
        n_sents += (size_t)n_refs[i];
    }
    if (!(c = sac_calloc(1, sizeof(*c)))) goto fail;
    c->n_images = n_images;
    c->text = sac_malloc(bytes);
    c->ref_off = sac_malloc(sizeof(size_t) * ((size_t)n_images + 1));
    c->ck.sents = sac_calloc(n_sents, sizeof(*c->ck.sents));
    c->norm = sac_calloc(n_sents * SAC_BLEU_N, sizeof(double));
    if (!c->text || !c->ref_off || !c->ck.sents || !c->norm) goto fail;
    if (idtable_init(&c->ck.words.tab, 4096) || idtable_init(&c->ck.grams.tab, 4 * n_sents)) goto fail;
    char *dst = c->text;
    size_t s = 0;
    for (int i = 0; i < n_images; i++) {
        c->ref_off[i] = s;
        for (int j = 0; j < n_refs[i]; j++, s++) {
            const size_t n = strlen(refs[i][j]) + 1;
            memcpy(dst, refs[i][j], n);
            if (sentence_cook(&c->ck, dst, &c->ck.sents[s])) goto fail;
            dst += n;
        }
    }
    c->ref_off[n_images] = s;
    const uint32_t n_grams = c->ck.grams.tab.n;
    df = sac_calloc(n_grams + 1, sizeof(*df));
    seen = sac_calloc(n_grams + 1, sizeof(*seen));
    c->idf = sac_malloc((n_grams + 1) * sizeof(double));
    if (!df || !seen || !c->idf) goto fail;
    /* compute_doc_freq, as metrics_score_per_image */
    for (int i = 0; i < n_images; i++)
        for (size_t q = c->ref_off[i]; q < c->ref_off[i + 1]; q++)
            for (uint32_t p = 0; p < c->ck.sents[q].n_grams; p++) {
                uint32_t id = c->ck.gram_id.v[c->ck.sents[q].gram_off + p];
                if (seen[id] != (uint32_t)i + 1) seen[id] = (uint32_t)i + 1, df[id]++;
            }
    c->log_n = log((double)n_images);
    for (uint32_t id = 0; id < n_grams; id++) c->idf[id] = c->log_n - log(SAC_MAX(1.0, (double)df[id]));
    for (size_t q = 0; q < n_sents; q++) cider_norms(&c->ck, &c->ck.sents[q], c->idf, c->norm + q * SAC_BLEU_N);
    free(df), free(seen);
    return c;
fail:
    sac_error("metrics_cider_create: out of memory for the references of %d images", n_images);
    free(df), free(seen);
    metrics_cider_free(c);
    return NULL;
}

int metrics_cider_n_images(const SacCider *c) { return c ? c->n_images : 0; }

/* Read-only lookups: the id of a word / gram, or -1 when the references never had it. */
static int64_t word_find(const WordTable *w, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n);
    for (size_t i = h & w->tab.mask;; i = (i + 1) & w->tab.mask) {
        uint64_t slot = w->tab.slots[i];
        if (!slot) return -1;
        uint32_t id = (uint32_t)slot - 1;
        if ((slot ^ h) >> 32 == 0 && w->len[id] == n && memcmp(w->str[id], s, n) == 0) return id;
    }
}

static int64_t gram_find(const GramTable *g, const uint32_t *key)
{
    uint64_t h = hash_gram(key);
    for (size_t i = h & g->tab.mask;; i = (i + 1) & g->tab.mask) {
        uint64_t slot = g->tab.slots[i];
        if (!slot) return -1;
        uint32_t id = (uint32_t)slot - 1;
        if ((slot ^ h) >> 32 == 0 && memcmp(g->words + (size_t)id * SAC_BLEU_N, key, SAC_BLEU_N * sizeof(*key)) == 0)
            return id;
    }
}

typedef struct {
    uint32_t id, count, order; /* id >= the table's grams: an n-gram no reference has */
} CandGram;

static int cmp_cand_gram(const void *a, const void *b)
{
    const CandGram *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int metrics_cider_score(const SacCider *c, int image, const char *cand, double *score)
{
    if (!c || !cand || !score || image < 0 || image >= c->n_images) {
        sac_error("metrics_cider_score: image %d, candidate %s: expected an image in 0..%d and a candidate", image,
                  cand ? "given" : "NULL", c ? c->n_images - 1 : -1);
        return SAC_ERR_INVALID;
    }
    const Cooked *ck = &c->ck;
    const uint32_t n_words = ck->words.tab.n, n_grams = ck->grams.tab.n;
    /* tokens as word ids; a word no reference has gets a fresh id n_words + j */
    size_t cap = 16, n = 0;
    for (const char *p = cand; *p; p++) cap += is_space((unsigned char)*p);
    uint32_t *tok = sac_malloc(sizeof(uint32_t) * cap);
    const char **new_s = sac_malloc(sizeof(char *) * cap);
    size_t *new_n = sac_malloc(sizeof(size_t) * cap);
    CandGram *g = sac_malloc(sizeof(CandGram) * cap * SAC_BLEU_N);
    uint32_t *new_keys = sac_malloc(sizeof(uint32_t) * SAC_BLEU_N * cap * SAC_BLEU_N);
    if (!tok || !new_s || !new_n || !g || !new_keys) {
        free(tok), free(new_s), free(new_n), free(g), free(new_keys);
        sac_error("metrics_cider_score: out of memory");
        return SAC_ERR_NOMEM;
    }
    uint32_t n_new = 0;
    for (const char *p = cand;;) {
        while (*p && is_space((unsigned char)*p)) p++;
        if (!*p) break;
        const char *b = p;
        while (*p && !is_space((unsigned char)*p)) p++;
        const size_t len = (size_t)(p - b);
        int64_t id = word_find(&ck->words, b, len);
        if (id < 0) {
            uint32_t j = 0;
            while (j < n_new && !(new_n[j] == len && !memcmp(new_s[j], b, len))) j++;
            if (j == n_new) new_s[n_new] = b, new_n[n_new++] = len;
            id = (int64_t)n_words + j;
        }
        tok[n++] = (uint32_t)id;
    }
    /* its n-grams, counted; one unknown to the references gets a fresh id n_grams + j */
    size_t ng = 0;
    uint32_t n_new_g = 0;
    for (int k = 1; k <= SAC_BLEU_N; k++) {
        for (size_t i = 0; i + k <= n; i++) {
            uint32_t key[SAC_BLEU_N];
            int known = 1;
            for (int j = 0; j < SAC_BLEU_N; j++) {
                key[j] = j < k ? tok[i + j] : GRAM_PAD;
                if (j < k && tok[i + j] >= n_words) known = 0;
            }
            int64_t id = known ? gram_find(&ck->grams, key) : -1;
            if (id < 0) {
                uint32_t j = 0;
                while (j < n_new_g && memcmp(new_keys + (size_t)j * SAC_BLEU_N, key, sizeof(key))) j++;
                if (j == n_new_g) memcpy(new_keys + (size_t)n_new_g++ * SAC_BLEU_N, key, sizeof(key));
                id = (int64_t)n_grams + j;
            }
            g[ng++] = (CandGram){(uint32_t)id, 1, (uint32_t)k};
        }
    }
    qsort(g, ng, sizeof(CandGram), cmp_cand_gram);
    size_t nd = 0;
    for (size_t i = 0; i < ng; i++) {
        if (nd && g[nd - 1].id == g[i].id)
            g[nd - 1].count++;
        else
            g[nd++] = g[i];
    }
    /* cider_image with the references' norms precomputed */
    double norm_c[SAC_BLEU_N] = {0}, sc[SAC_BLEU_N] = {0};
    for (size_t p = 0; p < nd; p++) {
        const double v = g[p].count * (g[p].id < n_grams ? c->idf[g[p].id] : c->log_n);
        norm_c[g[p].order - 1] += v * v;
    }
    for (int k = 0; k < SAC_BLEU_N; k++) norm_c[k] = sqrt(norm_c[k]);
    const int64_t len_c = n > 1 ? (int64_t)n - 1 : 0;
    const size_t r0 = c->ref_off[image], r1 = c->ref_off[image + 1];
    for (size_t q = r0; q < r1; q++) {
        const Sentence *r = &ck->sents[q];
        const uint32_t *rid = ck->gram_id.v + r->gram_off, *rcnt = ck->gram_count.v + r->gram_off;
        const double *norm_r = c->norm + q * SAC_BLEU_N;
        double val[SAC_BLEU_N] = {0};
        for (size_t p = 0, u = 0; p < nd && u < r->n_grams;) {
            if (g[p].id < rid[u]) {
                p++;
            } else if (g[p].id > rid[u]) {
                u++;
            } else {
                double vc = g[p].count * c->idf[g[p].id], vr = rcnt[u] * c->idf[rid[u]];
                val[g[p].order - 1] += SAC_MIN(vc, vr) * vr;
                p++, u++;
            }
        }
        cider_add_ref(sc, val, norm_c, norm_r, len_c, r);
    }
    *score = cider_final(sc, (double)(r1 - r0));
    free(tok), free(new_s), free(new_n), free(g), free(new_keys);
    return SAC_OK;
}
