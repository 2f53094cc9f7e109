/*
 * maxpool.h - 2x2 max pooling, stride 2, no padding (torch.nn.MaxPool2d(2)).
 *
 * Size letters: N planes (B * C), H W input side, Ho = H / 2, Wo = W / 2 (floor: an odd last
 * row or column is dropped, as torch).
 * The argmax cache holds, per output, the position of the max in its window: 0 top-left,
 * 1 top-right, 2 bottom-left, 3 bottom-right. Ties go to the first max in that order, as torch.
 */
#ifndef SACCADE_MAXPOOL_H
#define SACCADE_MAXPOOL_H

#include <stdint.h>

/* out (N, Ho, Wo) = max over each 2x2 window of inp (N, H, W); argmax (N, Ho, Wo) or NULL
 * (inference). */
void maxpool_forward(float *out, uint8_t *argmax, const float *inp, int N, int H, int W);

/* dinp (N, H, W) += dout (N, Ho, Wo) routed to each window's argmax. */
void maxpool_backward(float *dinp, const float *dout, const uint8_t *argmax, int N, int H, int W);

#endif
