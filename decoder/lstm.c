/*
 * lstm.c - LSTM cell forward/backward, see lstm.h (torch.nn.LSTMCell semantics).
 * Size letters: B batch, I input size, D hidden size.
 */
#include "lstm.h"

#include <math.h>
#include <stddef.h>

#include "fastmath.h"
#include "matmul.h"
#include "threadpool.h"

/* Rows are independent: the pool splits them (lstm_cell_forward / _backward below). */
typedef struct {
    float *h_out, *c_out, *act, *dpre, *dc_prev;
    const float *c_prev, *dh, *dc, *cact, *cc_out;
    int D;
} CellTask;

/* The activations of one row in place (simple loops, so they vectorise), then the cell. */
static void cell_forward_row(float *restrict h, float *restrict c, float *restrict a, const float *restrict cp, int D)
{
    for (int d = 0; d < 2 * D; d++) a[d] = sac_sigmoidf(a[d]); /* i, f */
    for (int d = 2 * D; d < 3 * D; d++) a[d] = sac_tanhf(a[d]); /* g */
    for (int d = 3 * D; d < 4 * D; d++) a[d] = sac_sigmoidf(a[d]); /* o */
    const float *ai = a, *af = a + D, *ag = a + 2 * D, *ao = a + 3 * D;
    for (int d = 0; d < D; d++) {
        const float cn = af[d] * cp[d] + ai[d] * ag[d];
        c[d] = cn;
        h[d] = ao[d] * sac_tanhf(cn);
    }
}

static void cell_forward_rows(float *h_out, float *c_out, float *act, const float *c_prev, int b0, int b1, int D)
{
    for (int b = b0; b < b1; b++)
        cell_forward_row(h_out + (size_t)b * D, c_out + (size_t)b * D, act + (size_t)b * 4 * D, c_prev + (size_t)b * D,
                         D);
}

static void cell_forward_task(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const CellTask *t = p;
    cell_forward_rows(t->h_out, t->c_out, t->act, t->c_prev, b0, b1, t->D);
}

void lstm_cell_forward(float *h_out, float *c_out, float *act, const float *c_prev, int B, int D)
{
    CellTask t = {.h_out = h_out, .c_out = c_out, .act = act, .c_prev = c_prev, .D = D};
    sac_parallel_for(B, 1, cell_forward_task, &t);
}

/* One row; has_dc / has_dcp are constants at each call, so every variant's loop vectorises. */
static inline __attribute__((always_inline)) void
cell_backward_row(float *restrict dp, float *restrict dcp, const float *restrict dhb, const float *restrict dcb,
                  const float *restrict a, const float *restrict cp, const float *restrict cn, int D, const int has_dc,
                  const int has_dcp)
{
    const float *ai = a, *af = a + D, *ag = a + 2 * D, *ao = a + 3 * D;
    for (int d = 0; d < D; d++) {
        /* h' = o * tanh(c') */
        float tc = sac_tanhf(cn[d]);
        float dcn = dhb[d] * ao[d] * (1.0f - tc * tc);
        if (has_dc) dcn += dcb[d];
        float d_o = dhb[d] * tc;
        /* c' = f * c + i * g */
        float d_i = dcn * ag[d], d_f = dcn * cp[d], d_g = dcn * ai[d];
        if (has_dcp) dcp[d] += dcn * af[d];
        dp[d] = d_i * ai[d] * (1.0f - ai[d]);
        dp[D + d] = d_f * af[d] * (1.0f - af[d]);
        dp[2 * D + d] = d_g * (1.0f - ag[d] * ag[d]);
        dp[3 * D + d] = d_o * ao[d] * (1.0f - ao[d]);
    }
}

static void cell_backward_rows(float *dpre, float *dc_prev, const float *dh, const float *dc, const float *act,
                               const float *c_prev, const float *c_out, int b0, int b1, int D)
{
    for (int b = b0; b < b1; b++) {
        const size_t r = (size_t)b * D;
        float *dp = dpre + 4 * r, *dcp = dc_prev ? dc_prev + r : NULL;
        const float *dcb = dc ? dc + r : NULL, *a = act + 4 * r;
        if (dc && dc_prev) cell_backward_row(dp, dcp, dh + r, dcb, a, c_prev + r, c_out + r, D, 1, 1);
        else if (dc) cell_backward_row(dp, dcp, dh + r, dcb, a, c_prev + r, c_out + r, D, 1, 0);
        else if (dc_prev) cell_backward_row(dp, dcp, dh + r, dcb, a, c_prev + r, c_out + r, D, 0, 1);
        else cell_backward_row(dp, dcp, dh + r, dcb, a, c_prev + r, c_out + r, D, 0, 0);
    }
}

static void cell_backward_task(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const CellTask *t = p;
    cell_backward_rows(t->dpre, t->dc_prev, t->dh, t->dc, t->cact, t->c_prev, t->cc_out, b0, b1, t->D);
}

void lstm_cell_backward(float *dpre, float *dc_prev, const float *dh, const float *dc, const float *act,
                        const float *c_prev, const float *c_out, int B, int D)
{
    CellTask t = {.dpre = dpre, .dc_prev = dc_prev, .dh = dh, .dc = dc, .cact = act, .c_prev = c_prev,
                  .cc_out = c_out, .D = D};
    sac_parallel_for(B, 1, cell_backward_task, &t);
}

void lstm_forward(float *h_out, float *c_out, float *act, const float *x, const float *h_prev,
                  const float *c_prev, const float *w_ih, const float *w_hh, const float *b_ih,
                  const float *b_hh, int B, int I, int D)
{
    const int G = 4 * D;
    linear_forward(act, x, w_ih, b_ih, B, I, G);
    sac_gemm(0, 1, B, G, D, 1.0f, h_prev, D, w_hh, D, 1.0f, act, G);
    if (b_hh)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < G; k++) act[(size_t)b * G + k] += b_hh[k];
    lstm_cell_forward(h_out, c_out, act, c_prev, B, D);
}

void lstm_backward(float *dx, float *dh_prev, float *dc_prev, float *dw_ih, float *dw_hh, float *db_ih,
                   float *db_hh, float *dpre, const float *dh, const float *dc, const float *act,
                   const float *x, const float *h_prev, const float *c_prev, const float *c_out,
                   const float *w_ih, const float *w_hh, int B, int I, int D)
{
    lstm_cell_backward(dpre, dc_prev, dh, dc, act, c_prev, c_out, B, D);
    /* pre = x @ w_ih^T + b_ih + h_prev @ w_hh^T + b_hh */
    linear_backward(dx, dw_ih, db_ih, dpre, x, w_ih, B, I, 4 * D);
    linear_backward(dh_prev, dw_hh, db_hh, dpre, h_prev, w_hh, B, D, 4 * D);
}
