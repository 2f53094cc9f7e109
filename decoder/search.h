/*
 * search.h - turning the decoder (infer.h) into captions: greedy decoding over a batch of
 * images, sampling (self-critical training), and beam search with length normalisation over
 * one image or a batch of images decoded together.
 *
 * Greedy decoding and beam search never emit <pad>, <start> or <unk>; sampling never <pad> or
 * <start> (an <unk> it draws costs it in the reward). Beam width 1 gives exactly the greedy
 * caption.
 * The repetition guard (SearchOptions.no_repeat, no_repeat_bigram) removes words from the
 * choice at a step: the previous word (no word twice in a row), and every word w such that
 * (previous word, w) already occurs in the caption (no bigram twice); <end> is never removed,
 * so a caption always has a way to finish. A caption's logprob stays the model's own
 * log-probability of its words (the guard does not renormalise).
 * A hypothesis that never emits <end> within max_len steps still yields a caption (the
 * most common crash of other captioners).
 *
 * Size letters: B images, P grid positions, E encoder channels, V vocabulary,
 * T steps (max_len), K beam width.
 */
#ifndef SACCADE_SEARCH_H
#define SACCADE_SEARCH_H

#include "infer.h"

typedef struct Caption {
    int n;          /* words, without <end> */
    int *tokens;    /* (n) word ids */
    int ended;      /* 1 when the decoder emitted <end>, 0 when it ran out of steps */
    float logprob;  /* sum of log-probabilities of the words and (if ended) <end> */
    float score;    /* logprob / steps^len_norm: what beam search ranks by */
    float *alphas;  /* (n, P) attention of each word's step, or NULL when not asked for */
} Caption;

/* Releases tokens and alphas; no-op on NULL. */
void caption_clear(Caption *c);

typedef struct SearchOptions {
    int beam;         /* K >= 1 */
    int nbest;        /* 1..K captions to return */
    int max_len;      /* most steps, <end> included, 1..T */
    float len_norm;   /* score = logprob / steps^len_norm; 0 ranks by raw logprob */
    int want_alphas;  /* fill Caption.alphas */
    int f32;          /* captioner: decode with fp32 step weights (default fp16) */
    int no_repeat;        /* never the same word twice in a row */
    int no_repeat_bigram; /* never the same two-word sequence twice in a caption */
} SearchOptions;

/* Defaults: beam 3, nbest 1, max_len = T, len_norm 0.7, no alphas, no repeated bigram. */
SearchOptions search_default_options(const DecoderSizes *sz);

/* Greedy captions for B images: out[b] (caller provides B Captions, zeroed; free with
 * caption_clear). inf must have room for B rows and B images. */
int greedy_decode(Caption *out, DecoderInfer *inf, const float *feats /* (B, P, E) */, int B,
                  const DecoderParams *p, const SearchOptions *opt);

/* Multinomial sampling at temperature 1 of R captions: row r describes image img[r] of feats
 * (n_images, P, E) (img NULL: row r is image r); out[r] (caller provides R Captions; free with
 * caption_clear). At each step every live row, in row order, draws one sac_rng_uniform from
 * rng and takes the word from the softmax over the allowed words (banned ones and, with
 * the guard, repeated ones left out, the rest renormalised): the captions depend on the seed
 * alone, not on the thread count (the logits do not). A caption that draws no <end> within
 * max_len steps ends there (ended 0). logprob is the sum over its drawn tokens (<end>
 * included) of the model's log-softmax; score as greedy. inf must have room for R rows and
 * n_images images. SAC_OK or a negative status (then every out is cleared). */
int sample_decode(Caption *out, DecoderInfer *inf, const float *feats, int n_images, const int *img, int R,
                  const DecoderParams *p, const SearchOptions *opt, SacRng *rng);

/* Beam search for one image: writes min(nbest, found) captions to out, best first, and
 * returns how many (>= 1), or a negative status. The captions are distinct word sequences
 * (a hypothesis equal to a better one is skipped). inf must have room for K rows. */
int beam_search_run(Caption *out, DecoderInfer *inf, const float *feats /* (1, P, E) */,
                    const DecoderParams *p, const SearchOptions *opt);

/* Beam search for B images at once, their beams decoded together (rows of finished images
 * leave the batch): image b's captions go to out[b * nbest ...], best first, counts[b] (may be
 * NULL) says how many (the rest of its nbest slots are zeroed). The same captions, bit for
 * bit, as beam_search_run one image at a time. inf must have room for K * B rows and B
 * images. SAC_OK or a negative status (then every out is cleared). */
int beam_search_batch(Caption *out, int *counts, DecoderInfer *inf, const float *feats /* (B, P, E) */, int B,
                      const DecoderParams *p, const SearchOptions *opt);

#endif
