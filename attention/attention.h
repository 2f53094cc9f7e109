/*
 * attention.h - soft (additive) attention over the encoder's feature grid,
 * Show, Attend and Tell (Xu et al. 2015), eqs. 4-6 with the f_beta gate (sec. 4.2.1):
 *
 *   att1  = feats @ enc_w^T + enc_b                    (Bi, P, A)  once per image
 *   att2  = h @ dec_w^T + dec_b                        (B, A)      every step
 *   s     = tanh(att1[img] + att2)                     (B, P, A)
 *   e     = s @ full_w + full_b                        (B, P)
 *   alpha = softmax_P(e)                               (B, P)
 *   z     = sum_p alpha_p * feats[img]_p               (B, E)
 *   gate  = sigmoid(h @ beta_w^T + beta_b)             (B, E)
 *   zg    = gate * z                                   (B, E)      the context fed to the LSTM
 *
 * and the doubly stochastic penalty lambda * sum_p (1 - sum_t alpha_tp)^2 (eq. 14).
 * Tensor names follow the PyTorch peer (encoder_att, decoder_att, full_att, f_beta).
 *
 * Size letters: B captions in the batch, Bi images, P grid positions, E encoder channels,
 * A attention dim, D LSTM hidden size. img[b] says which image caption b belongs to
 * (several captions share one encoder pass); NULL means img[b] = b.
 */
#ifndef SACCADE_ATTENTION_H
#define SACCADE_ATTENTION_H

#include <stddef.h>

typedef struct AttentionParams {
    float *enc_w;  /* (A, E)  encoder_att.weight */
    float *enc_b;  /* (A) */
    float *dec_w;  /* (A, D)  decoder_att.weight */
    float *dec_b;  /* (A) */
    float *full_w; /* (A)     full_att.weight, stored (1, A) */
    float *full_b; /* (1) */
    float *beta_w; /* (E, D)  f_beta.weight */
    float *beta_b; /* (E) */
} AttentionParams;

typedef struct AttentionSizes {
    int P, E, A, D;
} AttentionSizes;

/* What one step keeps for its backward; memory owned by the caller. */
typedef struct AttentionCache {
    float *s;     /* (B, P, A) tanh(att1 + att2) */
    float *alpha; /* (B, P) */
    float *z;     /* (B, E) context before the gate */
    float *gate;  /* (B, E) sigmoid(f_beta h) */
} AttentionCache;

/* att1 (Bi, P, A) = feats (Bi, P, E) @ enc_w^T + enc_b. */
void attention_project_forward(float *att1, const float *feats, const AttentionParams *p, int Bi,
                               const AttentionSizes *sz);
/* Backward of the line above; accumulates dfeats (may be NULL), grads->enc_w, grads->enc_b. */
void attention_project_backward(float *dfeats, AttentionParams *grads, const float *datt1,
                                const float *feats, const AttentionParams *p, int Bi,
                                const AttentionSizes *sz);

/* Scratch floats that attention_step_forward/backward need for B captions. */
size_t attention_scratch_floats(int B, const AttentionSizes *sz);

/* One decoding step for B captions: zg (B, E) from h (B, D). Fills the cache. */
void attention_step_forward(float *zg, AttentionCache *cache, const float *h, const float *feats,
                            const float *att1, const int *img, const AttentionParams *p, int B,
                            const AttentionSizes *sz, float *scratch);

/* Backward of one step. dzg (B, E) is dL/dzg; dalpha_extra (B, P) is an additional
 * dL/dalpha (the penalty's), may be NULL. Accumulates (+=) into dh (B, D), dfeats (Bi, P, E),
 * datt1 (Bi, P, A) and grads (dec_*, full_*, beta_*). Any of dh, dfeats may be NULL. */
void attention_step_backward(float *dh, float *dfeats, float *datt1, AttentionParams *grads,
                             const float *dzg, const float *dalpha_extra, const AttentionCache *cache,
                             const float *h, const float *feats, const int *img,
                             const AttentionParams *p, int B, const AttentionSizes *sz, float *scratch);

/* The per-caption part of attention_step_backward, for callers that batch the weight
 * gradients of att2 = h @ dec_w^T + dec_b and gpre = h @ beta_w^T + beta_b over many steps:
 * writes datt2 (B, A) = dL/datt2 and dgpre (B, E) = dL/dgpre, accumulates dfeats, datt1 (either
 * may be NULL) and grads->full_w, grads->full_b; leaves dh and the dec_* / beta_* gradients to
 * the caller. scratch: 2 B P floats. Runs on the thread pool, chunked by image. */
void attention_step_backward_rows(float *datt2, float *dgpre, float *dfeats, float *datt1, AttentionParams *grads,
                                  const float *dzg, const float *dalpha_extra, const AttentionCache *cache,
                                  const float *feats, const int *img, const AttentionParams *p, int B,
                                  const AttentionSizes *sz, float *scratch);

/* Doubly stochastic penalty for B captions: alpha_sum (B, P) = sum over each caption's steps
 * of alpha. Returns sum_b sum_p (1 - alpha_sum_bp)^2 and writes
 * dalpha (B, P) = scale * d/dalpha_tp of that sum = -2 * scale * (1 - alpha_sum_bp),
 * the same for every step t of caption b. dalpha may be NULL. */
double attention_penalty(float *dalpha, const float *alpha_sum, int B, int P, float scale);

#endif
