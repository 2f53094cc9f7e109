/*
 * metrics.h - BLEU-1..4, ROUGE-L and CIDEr-D of generated captions, computed exactly as
 * coco-caption computes them (github.com/tylin/coco-caption, pycocoevalcap:
 * bleu/bleu_scorer.py with option 'closest', rouge/rouge.py, cider/cider_scorer.py), so
 * that saccade's printed numbers agree with it digit for digit.
 *
 * Sizes: I images, image i has one candidate and R_i >= 1 references. No tensors here
 * (the project's size letters B T P E A D M V K are not used).
 *
 * Input is already tokenized: tokens are separated by whitespace and compared byte for
 * byte (case kept). Like the Python, BLEU and CIDEr-D split with str.split() (runs of
 * ASCII whitespace, ends ignored) while ROUGE-L splits with str.split(" "): every single
 * space separates, so "" is one empty token and "a  b" is three tokens. The two agree
 * on the single-spaced text a tokenizer produces.
 *
 * g_k(s) counts the k-grams of token sequence s, k = 1..4; |s| is its token count.
 *
 * BLEU (bleu_scorer.py). Per image i with candidate c and references r_1..r_R:
 *   guess_k   = max(0, |c| - k + 1)
 *   correct_k = sum_g min(g_k(c)[g], max_j g_k(r_j)[g])           (clipped counts)
 *   reflen    = the |r_j| minimizing ||r_j| - |c||, ties to the shorter ("closest")
 * Corpus totals T = sum |c|, R = sum reflen, G_k = sum guess_k, C_k = sum correct_k, then
 *   BLEU_n = (prod_{k=1..n} (C_k + 1e-15) / (G_k + 1e-9))^(1/n) * BP,
 *   ratio  = (T + 1e-15) / (R + 1e-9),  BP = exp(1 - 1/ratio) if ratio < 1, else 1.
 *
 * ROUGE-L (rouge.py), beta = 1.2. Per image, with LCS the longest common subsequence:
 *   P = max_j LCS(c, r_j) / |c|,  Rc = max_j LCS(c, r_j) / |r_j|   (maxima taken apart)
 *   score = (1 + beta^2) P Rc / (Rc + beta^2 P) if P != 0 and Rc != 0, else 0;
 * ROUGE-L is the mean of the scores over images.
 *
 * CIDEr-D (cider_scorer.py), n = 1..4, sigma = 6. Over the I images being scored:
 *   df(g) = number of images whose reference set contains g,  L = log(I)
 *   v_k(s)[g] = g_k(s)[g] * (L - log(max(1, df(g))))                  (tf-idf)
 *   len(s) = number of bigrams of s = max(0, |s| - 1)      (what the Python counts)
 *   sim_k(c, r) = sum_g min(v_k(c)[g], v_k(r)[g]) v_k(r)[g] / (||v_k(c)|| ||v_k(r)||)
 *                 (the division skipped when either norm is 0)
 *                 * exp(-(len(c) - len(r))^2 / (2 sigma^2))
 *   score_i = 10 / R_i * sum_j (1/4) sum_k sim_k(c, r_j);
 * CIDEr-D is the mean of score_i over images. It depends on the whole set of images
 * scored together (through df and L): a single image always scores 0.
 */
#ifndef SACCADE_METRICS_H
#define SACCADE_METRICS_H

#include <stdint.h>

#define SAC_BLEU_N 4

/* The corpus totals BLEU is computed from (what bleu_scorer.py prints with verbose=1). */
typedef struct {
    int64_t testlen;               /* T: candidate tokens */
    int64_t reflen;                /* R: closest reference lengths */
    int64_t guess[SAC_BLEU_N];     /* G_k: candidate k-grams */
    int64_t correct[SAC_BLEU_N];   /* C_k: clipped matching k-grams */
} SacBleuCounts;

typedef struct {
    double bleu[SAC_BLEU_N];       /* BLEU-1..4 */
    double rouge_l;
    double cider_d;
    SacBleuCounts counts;          /* the totals behind bleu[] */
} SacScores;

/*
 * Score n_images candidates against their references.
 *   cands[i]     candidate of image i (NUL-terminated, tokenized)
 *   refs[i][j]   reference j of image i, j < n_refs[i]; n_refs[i] >= 1
 * Returns SAC_OK and fills *out, or SAC_ERR_INVALID (NULL pointer, n_images < 1, an
 * image without references; logged) or SAC_ERR_NOMEM. The strings are only read.
 * Time and memory are linear in the total number of tokens (n-grams are hashed), plus
 * |c| * |r| per reference for the LCS.
 */
int metrics_score(const char *const *cands, const char *const *const *refs, const int *n_refs,
                  int n_images, SacScores *out);

/* As metrics_score, also writing each image's ROUGE-L and CIDEr-D score to
 * rouge_l[i] and cider_d[i] (caller-owned arrays of n_images; either may be NULL). */
int metrics_score_per_image(const char *const *cands, const char *const *const *refs,
                            const int *n_refs, int n_images, SacScores *out, double *rouge_l,
                            double *cider_d);

/* BLEU-1..4 from corpus totals, the last step of bleu_scorer.py's compute_score. */
void metrics_bleu_from_counts(const SacBleuCounts *counts, double bleu[SAC_BLEU_N]);

/*
 * CIDEr-D as a reward (self-critical training): the document frequencies of a fixed set of
 * references (the training split's), and each reference's tf-idf norms, computed once; then
 * one candidate is scored against one image's references in time linear in its n-grams.
 * score(c, i) is score_i of the formula above with df and L = log(I) taken over the
 * references given here (a candidate's n-gram found in none of them has df 0, idf L); scoring
 * the candidates of exactly those images gives metrics_score_per_image's cider_d[i].
 * The object is read-only after creation: scoring from several threads at once is safe.
 */
typedef struct SacCider SacCider;

/* refs[i][j], j < n_refs[i] (>= 1), as metrics_score; the strings are copied. NULL on a bad
 * argument or out of memory (logged). Free with metrics_cider_free. */
SacCider *metrics_cider_create(const char *const *const *refs, const int *n_refs, int n_images);
void metrics_cider_free(SacCider *c);
/* CIDEr-D of candidate cand (tokenized, as metrics_score) against image's references into
 * *score. SAC_OK, SAC_ERR_INVALID (image out of range, cand NULL; logged) or SAC_ERR_NOMEM. */
int metrics_cider_score(const SacCider *c, int image, const char *cand, double *score);
int metrics_cider_n_images(const SacCider *c);

#endif
