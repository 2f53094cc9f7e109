/*
 * lstm.h - LSTM cell, as torch.nn.LSTMCell: gates in torch order i, f, g, o,
 *
 *   pre = x @ w_ih^T + b_ih + h @ w_hh^T + b_hh          (B, 4D)
 *   i = sigmoid(pre_i), f = sigmoid(pre_f), g = tanh(pre_g), o = sigmoid(pre_o)
 *   c' = f * c + i * g;  h' = o * tanh(c')
 *
 * Size letters: B batch, I input size, D hidden size.
 * The cell (nonlinearities) and the matmuls are separate so that the decoder can compute the
 * x-side product for all time steps in one matmul; lstm_forward/backward do the whole cell.
 */
#ifndef SACCADE_LSTM_H
#define SACCADE_LSTM_H

/* act (B, 4D): in: pre-activations, out: activated gates i, f, g, o (kept for backward).
 * Writes c_out (B, D), h_out (B, D). */
void lstm_cell_forward(float *h_out, float *c_out, float *act, const float *c_prev, int B, int D);
/* dpre (B, 4D) = dL/dpre (overwritten); dc_prev (B, D) += dL/dc_prev (may be NULL).
 * dh (B, D) = dL/dh', dc (B, D) = dL/dc' from later steps (may be NULL). */
void lstm_cell_backward(float *dpre, float *dc_prev, const float *dh, const float *dc,
                        const float *act, const float *c_prev, const float *c_out, int B, int D);

/* The whole cell: act (B, 4D) is the cache for lstm_backward. */
void lstm_forward(float *h_out, float *c_out, float *act, const float *x, const float *h_prev,
                  const float *c_prev, const float *w_ih, const float *w_hh, const float *b_ih,
                  const float *b_hh, int B, int I, int D);
/* Accumulates dx (B, I), dh_prev, dc_prev (B, D) (any may be NULL) and the four parameter
 * gradients; dpre (B, 4D) is scratch. */
void lstm_backward(float *dx, float *dh_prev, float *dc_prev, float *dw_ih, float *dw_hh, float *db_ih,
                   float *db_hh, float *dpre, const float *dh, const float *dc, const float *act,
                   const float *x, const float *h_prev, const float *c_prev, const float *c_out,
                   const float *w_ih, const float *w_hh, int B, int I, int D);

#endif
