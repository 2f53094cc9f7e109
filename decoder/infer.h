/*
 * infer.h - step-by-step decoding with the decoder of decoder.h, for greedy decoding
 * (rows = images), sampling, and beam search (rows = the beams of one or many images): the
 * state of every row, the attention projection computed once per image, and the step weights
 * packed once (matmul.h sac_pack). search.h drives it.
 *
 * Size letters as in decoder.h; R rows.
 */
#ifndef SACCADE_INFER_H
#define SACCADE_INFER_H

#include "decoder.h"

typedef struct DecoderInfer DecoderInfer;

/* State for up to max_rows rows over up to max_images images. */
DecoderInfer *decoder_infer_create(const DecoderSizes *sz, int max_rows, int max_images);
void decoder_infer_free(DecoderInfer *inf);

/* Start R rows: row r describes image img[r] of feats (n_images, P, E) (img NULL: row r is
 * image r). Computes the attention projection once per image and h0, c0 for every row.
 * feats must stay valid until the last step. Returns SAC_OK or SAC_ERR_INVALID (logged; also
 * when p is not the parameters last prepared). A row's logits are the same bits whatever R,
 * its place among the rows, or the thread count. */
int decoder_infer_start(DecoderInfer *inf, const float *feats, int n_images, const int *img, int R,
                        const DecoderParams *p);
/* One step for rows 0..R-1 fed tokens (R): returns logits (R, V); *alphas (if not NULL) is set
 * to the attention weights of this step (R, P). Both stay valid until the next call. */
const float *decoder_infer_step(DecoderInfer *inf, const int *tokens, int R, const DecoderParams *p,
                                const float **alphas);
/* Beam search bookkeeping: new row r continues old row parent[r] (h, c and image). */
void decoder_infer_reorder(DecoderInfer *inf, const int *parent, int R);
/* The sizes inf was created with. */
const DecoderSizes *decoder_infer_sizes(const DecoderInfer *inf);
/* Pack p's step weights (fc, decoder_att, f_beta, the LSTM; init_h, init_c and encoder_att for
 * decoder_infer_start) into panels (matmul.h sac_pack): in fp16 when half
 * (half the bytes each step reads; falls back to fp32, with a warning, when a weight is beyond
 * fp16's range), else fp32. Required before decoder_infer_start with this p, and again after
 * p's values change. SAC_OK or SAC_ERR_NOMEM. */
int decoder_infer_prepare(DecoderInfer *inf, const DecoderParams *p, int half);
#endif
