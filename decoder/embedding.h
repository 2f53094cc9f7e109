/*
 * embedding.h - word embedding lookup (torch.nn.Embedding).
 * Size letters: N tokens, V vocabulary, M embedding dim.
 */
#ifndef SACCADE_EMBEDDING_H
#define SACCADE_EMBEDDING_H

/* out (N, M) = table (V, M) [ids (N)] */
void embedding_forward(float *out, const int *ids, const float *table, int N, int M);
/* dtable (V, M) [ids[n]] += dout[n] */
void embedding_backward(float *dtable, const float *dout, const int *ids, int N, int M);

#endif
