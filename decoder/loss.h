/*
 * loss.h - softmax and cross-entropy over the vocabulary with padding masked
 * (llm.c crossentropy_forward / crossentropy_softmax_backward).
 * Size letters: N rows (caption tokens), V vocabulary.
 */
#ifndef SACCADE_LOSS_H
#define SACCADE_LOSS_H

/* probs (N, V) = softmax(logits) row-wise; probs may alias logits. */
void softmax_forward(float *probs, const float *logits, int N, int V);
/* losses (N) = -log probs[n, targets[n]]; rows with targets[n] < 0 are masked (loss 0).
 * Returns the sum of the unmasked losses. */
double crossentropy_forward(float *losses, const float *probs, const int *targets, int N, int V);
/* dlogits (N, V) += dloss * (probs - onehot(target)) for unmasked rows; dlogits may alias probs
 * (then it is overwritten instead of accumulated, and masked rows are zeroed). */
void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets, float dloss,
                                   int N, int V);

#endif
