/*
 * decoder.h - the LSTM decoder with soft attention, trained with teacher forcing
 * (Show, Attend and Tell, Xu et al. 2015; PyTorch peer: ../shared/peer/sat_ref.py Decoder).
 *
 *   mean  = mean_p feats[img]                         h0 = init_h(mean), c0 = init_c(mean)
 *   step t: zg_t = attention(feats[img], h_{t-1})      (attention.h)
 *           (h_t, c_t) = LSTMCell([embed(w_t); zg_t], (h_{t-1}, c_{t-1}))
 *   logits_t = fc(dropout(h_t))
 *   loss = mean over caption tokens of CE(logits_t, w_{t+1})
 *        + lambda * mean over captions of sum_p (1 - sum_t alpha_tp)^2
 * With per-caption weights w_k (DecoderBatch.weight, for self-critical training) the
 * cross-entropy term becomes
 *   sum_k w_k * (sum over caption k's steps of CE) / Bc
 * (normalised by the number of captions, not tokens: with w_k = r_k - b its gradient is the
 * REINFORCE estimate -1/Bc sum_k (r_k - b) grad log p(caption_k)); weights may be negative.
 * The penalty term is unchanged (self-critical training passes lambda 0).
 *
 * A caption of n words runs len = n + 1 steps (inputs <start> w_1..w_n, targets w_1..w_n <end>);
 * no step runs past a caption's end, so padding never reaches the loss or the penalty.
 * Internally captions are sorted by length, so the captions alive at step t are a prefix.
 *
 * Size letters: Bc captions, Bi images, T steps, P positions, E encoder channels,
 * A attention dim, D hidden, M embedding dim, V vocabulary, R = sum of caption lengths.
 */
#ifndef SACCADE_DECODER_H
#define SACCADE_DECODER_H

#include "attention.h"
#include "rng.h"

typedef struct DecoderParams {
    float *embed;    /* (V, M)     embed.weight */
    float *init_h_w; /* (D, E)     init_h.weight */
    float *init_h_b; /* (D) */
    float *init_c_w; /* (D, E) */
    float *init_c_b; /* (D) */
    AttentionParams att;
    float *w_ih; /* (4D, M + E) lstm.weight_ih: input [embed; context], gates i, f, g, o */
    float *w_hh; /* (4D, D)     lstm.weight_hh */
    float *b_ih; /* (4D) */
    float *b_hh; /* (4D) */
    float *fc_w; /* (V, D)      fc.weight */
    float *fc_b; /* (V) */
} DecoderParams;

typedef struct DecoderSizes {
    int P, E, A, D, M, V;
    int T; /* most steps a caption may take (words + <end>) */
} DecoderSizes;

typedef struct DecoderBatch {
    int n_caps;        /* Bc */
    int n_images;      /* Bi */
    const int *img;    /* (Bc) which image each caption describes, 0..Bi-1 */
    const int *tokens; /* (Bc, T + 1): <start> w_1 .. w_n <end>, anything after */
    const int *lens;   /* (Bc) n + 1, in 1..T */
    const float *weight; /* (Bc) per-caption loss weights, or NULL: the mean over tokens (see above) */
} DecoderBatch;

typedef struct DecoderLoss {
    double ce;      /* mean cross-entropy per target token; with weights sum_k w_k CE_k / Bc */
    double penalty; /* mean over captions of sum_p (1 - sum_t alpha_tp)^2 */
    double loss;    /* ce + lambda * penalty: what backward differentiates */
    int n_tokens;
} DecoderLoss;

typedef struct DecoderActs DecoderActs;

/* Activation arena for batches of up to max_caps captions of max_images images. */
DecoderActs *decoder_acts_create(const DecoderSizes *sz, int max_caps, int max_images);
void decoder_acts_free(DecoderActs *a);

/* Teacher-forced forward of a batch. dropout_rng NULL disables dropout (evaluation).
 * Returns SAC_OK, or SAC_ERR_INVALID (logged) for a batch that does not fit the arena or
 * has a token / length out of range. */
int decoder_forward(DecoderLoss *loss, DecoderActs *a, const float *feats /* (Bi, P, E) */,
                    const DecoderBatch *batch, const DecoderParams *p, const DecoderSizes *sz,
                    float dropout, float lambda, SacRng *dropout_rng);

/* Backward of the last decoder_forward: accumulates into every tensor of grads and into
 * dfeats (Bi, P, E) (may be NULL). */
void decoder_backward(DecoderParams *grads, float *dfeats, DecoderActs *a, const float *feats,
                      const DecoderParams *p, const DecoderSizes *sz);

/* mean (R, E): the mean over positions of image img[r]'s features feats (images, P, E), what
 * init_h and init_c read (teacher-forced and step-by-step decoding alike). */
void decoder_mean_features(float *mean, const float *feats, const int *img, int R, int P, int E);

/* Attention weights of the last forward in batch order: out (Bc, T, P), zero past each
 * caption's length. */
void decoder_get_alphas(const DecoderActs *a, float *out, const DecoderSizes *sz);
/* Softmax of the logits of the last forward (before any backward), out (Bc, T, V), likewise. */
void decoder_get_probs(const DecoderActs *a, float *out, const DecoderSizes *sz);

#endif
