/*
 * backbone_import.c - TFLite / torchvision MobileNetV2 -> backbone file, see backbone_import.h.
 *
 * Sizes: N classes, C channels, H x W the spatial size of the activation being followed.
 */
#include "backbone_import.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backbone_file.h"
#include "fileio.h"
#include "output.h"
#include "sac.h"
#include "saccade_config.h"
#include "sha256.h"

#define BN_EPS 1e-5         /* torch.nn.BatchNorm2d's default, what torchvision's mobilenet_v2 uses */
#define BIAS_SCALE_RTOL 1e-6

static int add_tensor(SafeTensorsWriter *w, BackboneImportReport *rep, const char *name, int ndim,
                      const int64_t *shape, const float *data)
{
    int rc = safetensors_writer_add_f32(w, name, ndim, shape, data, SAC_DTYPE_F32);
    if (rc) return rc;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    rep->n_tensors++;
    rep->n_params += n;
    return 0;
}

/* ---- TFLite ---- */

typedef struct {
    const TfliteModel *m;
    SafeTensorsWriter *w;
    BackboneImportReport *rep;
    int k;          /* index of the operator being matched */
    int cur;        /* tensor holding the current activation */
    int h, wd;      /* its spatial size */
    const char *layer; /* what the operator should be, for messages */
} Walk;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int op_bad(const Walk *wk, const char *fmt, ...)
{
    const char *op = wk->k < wk->m->n_operators ? tflite_builtin_name(wk->m->operators[wk->k].builtin) : "end";
    char where[1024];
    snprintf(where, sizeof(where), "%s: operator %d (%s, %s)", wk->m->path, wk->k, op, wk->layer);
    va_list ap;
    va_start(ap, fmt);
    sac_verror_at(SAC_ERR_FORMAT, where, fmt, ap);
    va_end(ap);
    return SAC_ERR_FORMAT;
}

static const TfliteTensor *tensor(const Walk *wk, int i) { return &wk->m->tensors[i]; }

static void shape_text(char *buf, size_t cap, int ndim, const int32_t *shape)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Tensor t has exactly this type and shape (and data when `constant`). */
static int expect_tensor(const Walk *wk, int t, const char *role, int type, int constant, int ndim,
                         const int32_t *shape)
{
    const TfliteTensor *x = tensor(wk, t);
    char want[96], got[96];
    shape_text(want, sizeof(want), ndim, shape);
    shape_text(got, sizeof(got), x->ndim, x->shape);
    if (x->type != type)
        return op_bad(wk, "%s tensor %d '%.160s' is %s, expected %s", role, t, x->name, tflite_type_name(x->type),
                      tflite_type_name(type));
    if (strcmp(want, got))
        return op_bad(wk, "%s tensor %d '%.160s' has shape %s, expected %s", role, t, x->name, got, want);
    if (constant && !x->data)
        return op_bad(wk, "%s tensor %d '%.160s' has no data, expected constant %s", role, t, x->name, role);
    if (!constant && x->data)
        return op_bad(wk, "%s tensor %d '%.160s' is a constant, expected an activation", role, t, x->name);
    return 0;
}

/* Per-tensor quantization of tensor t: one finite scale > 0. */
static int quant1(const Walk *wk, int t, const char *role, double *scale, int64_t *zp)
{
    const TfliteTensor *x = tensor(wk, t);
    if (x->n_scale != 1)
        return op_bad(wk, "%s tensor %d '%.160s' has %d quantization scales, expected one (per-tensor)", role, t,
                      x->name, x->n_scale);
    if (!(x->scale[0] > 0))
        return op_bad(wk, "%s tensor %d '%.160s' has quantization scale %g, expected > 0", role, t, x->name,
                      x->scale[0]);
    *scale = x->scale[0];
    *zp = x->zero_point[0];
    return 0;
}

/* The operator at wk->k must be `builtin`, reading the current activation as input 0 (or, when
 * `either` is 1, as input 0 or 1: ADD commutes). */
static const TfliteOperator *expect_op(Walk *wk, int builtin, const char *layer, int either)
{
    wk->layer = layer;
    if (wk->k >= wk->m->n_operators) {
        op_bad(wk, "the graph ends after %d operators, expected %s", wk->m->n_operators, tflite_builtin_name(builtin));
        return NULL;
    }
    const TfliteOperator *op = &wk->m->operators[wk->k];
    if (op->builtin != builtin) {
        op_bad(wk, "expected %s", tflite_builtin_name(builtin));
        return NULL;
    }
    if (op->n_outputs != 1) {
        op_bad(wk, "%d outputs, expected 1", op->n_outputs);
        return NULL;
    }
    if (op->n_inputs < 1 || (op->inputs[0] != wk->cur && !(either && op->n_inputs > 1 && op->inputs[1] == wk->cur))) {
        int t = op->n_inputs ? op->inputs[0] : -1;
        op_bad(wk, "reads tensor %d '%.160s', expected tensor %d '%.160s' (the previous layer's output)", t,
               t >= 0 ? tensor(wk, t)->name : "", wk->cur, tensor(wk, wk->cur)->name);
        return NULL;
    }
    return op;
}

/* A CONV_2D / DEPTHWISE_CONV_2D for layer L: check it, dequantize, transpose, add to the file. */
static int take_conv(Walk *wk, BackboneLayer *L)
{
    const TfliteOperator *op = expect_op(wk, L->depthwise ? TFLITE_OP_DEPTHWISE_CONV_2D : TFLITE_OP_CONV_2D, L->name, 0);
    if (!op) return SAC_ERR_FORMAT;
    const TfliteOptions *o = &op->opt;
    if (op->n_inputs != 3 || op->inputs[1] < 0 || op->inputs[2] < 0)
        return op_bad(wk, "%d inputs, expected 3 (input, weights, bias)", op->n_inputs);
    if (!op->has_options) return op_bad(wk, "no %s options", L->depthwise ? "DepthwiseConv2D" : "Conv2D");
    if (o->padding != TFLITE_PADDING_SAME) return op_bad(wk, "padding VALID, expected SAME");
    if (o->stride_w != L->stride || o->stride_h != L->stride)
        return op_bad(wk, "stride %dx%d, expected %d", o->stride_w, o->stride_h, L->stride);
    if (o->dilation_w != 1 || o->dilation_h != 1)
        return op_bad(wk, "dilation %dx%d, expected 1", o->dilation_w, o->dilation_h);
    if (L->depthwise && o->depth_multiplier != 1)
        return op_bad(wk, "depth_multiplier %d, expected 1", o->depth_multiplier);
    int want_act = L->relu6 ? TFLITE_ACT_RELU6 : TFLITE_ACT_NONE;
    if (o->activation != want_act)
        return op_bad(wk, "fused activation %s, expected %s", tflite_activation_name(o->activation),
                      tflite_activation_name(want_act));

    const int wt = op->inputs[1], bt = op->inputs[2], ot = op->outputs[0], k = L->k;
    if (L->role == BACKBONE_CLASSIFIER) { /* the class count comes from the file */
        const TfliteTensor *x = tensor(wk, wt);
        if (x->ndim != 4 || x->shape[0] < 1)
            return op_bad(wk, "weights tensor %d '%.160s' has rank %d, expected [classes,1,1,%d]", wt, x->name,
                          x->ndim, BACKBONE_FEATURES);
        L->cout = x->shape[0];
        L->wshape[0] = L->cout;
    }
    const int32_t wshape_dw[4] = {1, k, k, L->cout}, wshape_conv[4] = {L->cout, k, k, L->cin};
    const int32_t bshape[1] = {L->cout};
    const int ho = (wk->h + L->stride - 1) / L->stride, wo = (wk->wd + L->stride - 1) / L->stride; /* SAME */
    const int32_t oshape[4] = {1, ho, wo, L->cout};
    int rc;
    if ((rc = expect_tensor(wk, wt, "weights", TFLITE_UINT8, 1, 4, L->depthwise ? wshape_dw : wshape_conv)) ||
        (rc = expect_tensor(wk, bt, "bias", TFLITE_INT32, 1, 1, bshape)) ||
        (rc = expect_tensor(wk, ot, "output", TFLITE_UINT8, 0, 4, oshape)))
        return rc;
    double in_s = 0, w_s = 0, b_s = 0;
    int64_t in_zp = 0, w_zp = 0, b_zp = 0;
    if ((rc = quant1(wk, wk->cur, "input", &in_s, &in_zp)) || (rc = quant1(wk, wt, "weights", &w_s, &w_zp)) ||
        (rc = quant1(wk, bt, "bias", &b_s, &b_zp)))
        return rc;
    if (w_zp < 0 || w_zp > 255) return op_bad(wk, "weights zero point %lld, expected 0..255", (long long)w_zp);
    if (b_zp != 0) return op_bad(wk, "bias zero point %lld, expected 0", (long long)b_zp);
    const double bias_s = in_s * w_s, rel = fabs(b_s - bias_s) / bias_s;
    wk->rep->n_bias_checked++;
    if (rel > BIAS_SCALE_RTOL) {
        wk->rep->n_bias_mismatch++;
        sac_warn("%s: operator %d (%s, %s): bias scale %.9g differs from input scale x weight scale = %.9g by %.2g "
                 "(relative, tolerance %g); dequantizing the biases with the product", wk->m->path, wk->k,
                 tflite_builtin_name(op->builtin), L->name, b_s, bias_s, rel, BIAS_SCALE_RTOL);
    }

    const size_t n_w = (size_t)L->cout * (size_t)(L->depthwise ? 1 : L->cin) * (size_t)(k * k);
    float *w = sac_malloc(sizeof(float) * n_w), *b = sac_malloc(sizeof(float) * (size_t)L->cout);
    if (!w || !b) {
        free(w), free(b);
        return SAC_ERR_NOMEM;
    }
    const uint8_t *q = tensor(wk, wt)->data, *qb = tensor(wk, bt)->data;
    if (L->depthwise) { /* [1, k, k, C] -> (C, 1, k, k) */
        for (int c = 0; c < L->cout; c++)
            for (int yx = 0; yx < k * k; yx++)
                w[(size_t)c * k * k + yx] = (float)(w_s * (double)(q[(size_t)yx * L->cout + c] - w_zp));
    } else { /* OHWI [cout, k, k, cin] -> OIHW (cout, cin, k, k) */
        for (int oc = 0; oc < L->cout; oc++)
            for (int i = 0; i < L->cin; i++)
                for (int yx = 0; yx < k * k; yx++)
                    w[((size_t)oc * L->cin + i) * k * k + yx] =
                        (float)(w_s * (double)(q[((size_t)oc * k * k + yx) * L->cin + i] - w_zp));
    }
    for (int oc = 0; oc < L->cout; oc++) {
        const uint8_t *p = qb + 4 * (size_t)oc;
        int32_t v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        b[oc] = (float)(bias_s * v);
    }
    char name[48];
    const int64_t bs64[1] = {L->cout};
    snprintf(name, sizeof(name), "%s.weight", L->name);
    rc = add_tensor(wk->w, wk->rep, name, L->wndim, L->wshape, w);
    snprintf(name, sizeof(name), "%s.bias", L->name);
    if (!rc) rc = add_tensor(wk->w, wk->rep, name, 1, bs64, b);
    free(w), free(b);
    wk->rep->n_convs++;
    wk->cur = ot, wk->h = ho, wk->wd = wo;
    wk->k++;
    return rc;
}

/* The residual ADD after a projection: the projection output plus the block input. */
static int take_add(Walk *wk, const BackboneLayer *L, int block_in)
{
    char layer[64];
    snprintf(layer, sizeof(layer), "residual add of features.%d", L->feature);
    const TfliteOperator *op = expect_op(wk, TFLITE_OP_ADD, layer, 1);
    if (!op) return SAC_ERR_FORMAT;
    const int other = op->n_inputs == 2 ? op->inputs[op->inputs[0] == wk->cur ? 1 : 0] : -1;
    if (other != block_in)
        return op_bad(wk, "adds tensor %d, expected tensor %d '%.160s' (the block's input)", other, block_in,
                      tensor(wk, block_in)->name);
    if (op->opt.activation != TFLITE_ACT_NONE)
        return op_bad(wk, "fused activation %s, expected NONE (the residual add is linear)",
                      tflite_activation_name(op->opt.activation));
    const int32_t shape[4] = {1, wk->h, wk->wd, L->cout};
    int rc = expect_tensor(wk, op->outputs[0], "output", TFLITE_UINT8, 0, 4, shape);
    if (rc) return rc;
    wk->cur = op->outputs[0];
    wk->k++;
    return 0;
}

static int take_pool(Walk *wk)
{
    const TfliteOperator *op = expect_op(wk, TFLITE_OP_AVERAGE_POOL_2D, "global average pool", 0);
    if (!op) return SAC_ERR_FORMAT;
    if (!op->has_options) return op_bad(wk, "no Pool2D options");
    if (op->opt.filter_w != wk->wd || op->opt.filter_h != wk->h)
        return op_bad(wk, "filter %dx%d, expected the whole %dx%d input", op->opt.filter_w, op->opt.filter_h,
                      wk->wd, wk->h);
    if (op->opt.activation != TFLITE_ACT_NONE)
        return op_bad(wk, "fused activation %s, expected NONE", tflite_activation_name(op->opt.activation));
    const int32_t shape[4] = {1, 1, 1, BACKBONE_FEATURES};
    int rc = expect_tensor(wk, op->outputs[0], "output", TFLITE_UINT8, 0, 4, shape);
    if (rc) return rc;
    wk->cur = op->outputs[0], wk->h = wk->wd = 1;
    wk->k++;
    return 0;
}

/* RESHAPE to [1, N] then SOFTMAX, ending the graph at its output. */
static int take_tail(Walk *wk, int n_classes)
{
    const int32_t shape[2] = {1, n_classes};
    const TfliteOperator *op = expect_op(wk, TFLITE_OP_RESHAPE, "reshape of the logits", 0);
    int rc;
    if (!op) return SAC_ERR_FORMAT;
    if ((rc = expect_tensor(wk, op->outputs[0], "output", TFLITE_UINT8, 0, 2, shape))) return rc;
    wk->cur = op->outputs[0];
    wk->k++;
    if (!(op = expect_op(wk, TFLITE_OP_SOFTMAX, "softmax", 0))) return SAC_ERR_FORMAT;
    if (op->has_options && op->opt.beta != 1.0f) return op_bad(wk, "beta %g, expected 1", op->opt.beta);
    if ((rc = expect_tensor(wk, op->outputs[0], "output", TFLITE_UINT8, 0, 2, shape))) return rc;
    wk->cur = op->outputs[0];
    wk->k++;
    if (wk->k < wk->m->n_operators) {
        wk->layer = "after the softmax";
        return op_bad(wk, "expected the graph to end at the softmax");
    }
    if (wk->m->n_outputs != 1 || wk->m->outputs[0] != wk->cur)
        return sac_error("%s: the graph's output is not the softmax output (tensor %d)", wk->m->path, wk->cur),
               SAC_ERR_FORMAT;
    return 0;
}

int backbone_from_tflite(const TfliteModel *m, SafeTensorsWriter *w, BackboneImportReport *rep)
{
    BackboneImportReport local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof(*rep));
    rep->kind = "tflite";
    rep->n_operators = m->n_operators;
    static const int allowed[] = {TFLITE_OP_CONV_2D, TFLITE_OP_DEPTHWISE_CONV_2D, TFLITE_OP_ADD,
                                  TFLITE_OP_AVERAGE_POOL_2D, TFLITE_OP_RESHAPE, TFLITE_OP_SOFTMAX};
    for (int i = 0; i < m->n_operators; i++) {
        int ok = 0;
        for (int j = 0; j < 6; j++) ok |= m->operators[i].builtin == allowed[j];
        if (!ok) {
            sac_error("%s: operator %d is %s (builtin %d%s%s): a MobileNetV2 import handles only CONV_2D, "
                      "DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, RESHAPE and SOFTMAX", m->path, i,
                      tflite_builtin_name(m->operators[i].builtin), m->operators[i].builtin,
                      m->operators[i].custom_code ? ", custom code " : "",
                      m->operators[i].custom_code ? m->operators[i].custom_code : "");
            return SAC_ERR_UNSUPPORTED;
        }
    }
    if (m->n_inputs != 1) return sac_error("%s: %d graph inputs, expected 1 image", m->path, m->n_inputs), SAC_ERR_FORMAT;
    Walk wk = {m, w, rep, 0, m->inputs[0], BACKBONE_INPUT_SIZE, BACKBONE_INPUT_SIZE, "input"};
    const int32_t in_shape[4] = {1, BACKBONE_INPUT_SIZE, BACKBONE_INPUT_SIZE, 3};
    double in_s = 0;
    int64_t in_zp = 0;
    int rc;
    if ((rc = expect_tensor(&wk, wk.cur, "input", TFLITE_UINT8, 0, 4, in_shape)) ||
        (rc = quant1(&wk, wk.cur, "input", &in_s, &in_zp)))
        return rc;
    /* the metadata says the network expects rgb/127.5 - 1; the file's input quantization must agree */
    const double lo = in_s * (0 - (double)in_zp), hi = in_s * (255 - (double)in_zp);
    if (fabs(lo + 1) > 0.01 || fabs(hi - 1) > 0.01)
        return op_bad(&wk, "the input quantization maps 0..255 to [%g, %g], expected about [-1, 1]", lo, hi);

    BackboneLayer L[BACKBONE_N_LAYERS];
    backbone_layers(L, 1);
    int block_in = wk.cur;
    for (int i = 0; i < BACKBONE_N_LAYERS; i++) {
        if (L[i].role == BACKBONE_CLASSIFIER && (rc = take_pool(&wk))) return rc;
        if ((L[i].role == BACKBONE_EXPAND || (L[i].role == BACKBONE_DEPTHWISE && L[i].feature == 1)))
            block_in = wk.cur;
        if ((rc = take_conv(&wk, &L[i]))) return rc;
        if (L[i].residual && (rc = take_add(&wk, &L[i], block_in))) return rc;
    }
    rep->n_classes = L[BACKBONE_N_LAYERS - 1].cout;
    if ((rc = take_tail(&wk, rep->n_classes))) return rc;
    if ((rc = safetensors_writer_meta(w, "padding", "same")) ||
        (rc = safetensors_writer_meta(w, "mean", "[0.5,0.5,0.5]")) ||
        (rc = safetensors_writer_meta(w, "std", "[0.5,0.5,0.5]")))
        return rc;
    return 0;
}

/* ---- torchvision state dict ---- */

static int fold_layer(const SafeTensors *st, const BackboneLayer *L, SafeTensorsWriter *w, BackboneImportReport *rep)
{
    const size_t n_w = (size_t)L->wshape[0] * (size_t)L->wshape[1] * (size_t)(L->k * L->k);
    const int C = L->cout;
    const int64_t cshape[1] = {C};
    float *wt = sac_malloc(sizeof(float) * n_w), *bn = sac_malloc(sizeof(float) * 4 * (size_t)C);
    float *b = sac_malloc(sizeof(float) * (size_t)C);
    char name[64];
    int rc = wt && bn && b ? 0 : SAC_ERR_NOMEM;
    static const char *const bn_keys[4] = {"weight", "bias", "running_mean", "running_var"};
    snprintf(name, sizeof(name), "%s.weight", L->name);
    if (!rc) rc = safetensors_load_f32(st, name, wt, L->wndim, L->wshape);
    for (int j = 0; j < 4 && !rc; j++) {
        snprintf(name, sizeof(name), "%s.%s", L->bn, bn_keys[j]);
        rc = safetensors_load_f32(st, name, bn + (size_t)j * C, 1, cshape);
    }
    for (int c = 0; c < C && !rc; c++) {
        const double gamma = bn[c], beta = bn[C + c], mean = bn[2 * C + c], var = bn[3 * C + c];
        if (!(var >= 0) || !isfinite(var) || !isfinite(gamma) || !isfinite(beta) || !isfinite(mean)) {
            sac_error("%s: '%s' channel %d: gamma %g, beta %g, mean %g, var %g; expected finite values, var >= 0",
                      safetensors_path(st), L->bn, c, gamma, beta, mean, var);
            rc = SAC_ERR_FORMAT;
            break;
        }
        const double s = gamma / sqrt(var + BN_EPS);
        const size_t per = n_w / (size_t)C;
        for (size_t i = 0; i < per; i++) wt[(size_t)c * per + i] = (float)(wt[(size_t)c * per + i] * s);
        b[c] = (float)(beta - mean * s);
    }
    snprintf(name, sizeof(name), "%s.weight", L->name);
    if (!rc) rc = add_tensor(w, rep, name, L->wndim, L->wshape, wt);
    snprintf(name, sizeof(name), "%s.bias", L->name);
    if (!rc) rc = add_tensor(w, rep, name, 1, cshape, b);
    free(wt), free(bn), free(b);
    return rc;
}

/* 1 when `name` is a tensor of torchvision's mobilenet_v2 state dict. */
static int state_dict_name(const BackboneLayer *L, const char *name)
{
    static const char *const bn_keys[5] = {".weight", ".bias", ".running_mean", ".running_var",
                                           ".num_batches_tracked"};
    for (int i = 0; i < BACKBONE_N_LAYERS; i++) {
        size_t len = strlen(L[i].name), blen = strlen(L[i].bn);
        if (!strncmp(name, L[i].name, len) &&
            (!strcmp(name + len, ".weight") || (L[i].role == BACKBONE_CLASSIFIER && !strcmp(name + len, ".bias"))))
            return 1;
        for (int j = 0; blen && j < 5; j++)
            if (!strncmp(name, L[i].bn, blen) && !strcmp(name + blen, bn_keys[j])) return 1;
    }
    return 0;
}

int backbone_from_state_dict(const SafeTensors *st, SafeTensorsWriter *w, BackboneImportReport *rep)
{
    BackboneImportReport local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof(*rep));
    rep->kind = "torchvision state dict";
    const SafeTensor *cw = safetensors_find(st, "classifier.1.weight");
    if (!cw) {
        sac_error("%s: no tensor 'classifier.1.weight': not a torchvision mobilenet_v2 state dict",
                  safetensors_path(st));
        return SAC_ERR_FORMAT;
    }
    if (cw->ndim != 2 || cw->shape[1] != BACKBONE_FEATURES || cw->shape[0] < 1 || cw->shape[0] > 1000000) {
        sac_error("%s: tensor 'classifier.1.weight' has rank %d, expected (classes, %d)", safetensors_path(st),
                  cw->ndim, BACKBONE_FEATURES);
        return SAC_ERR_FORMAT;
    }
    BackboneLayer L[BACKBONE_N_LAYERS];
    backbone_layers(L, (int)cw->shape[0]);
    rep->n_classes = (int)cw->shape[0];
    for (int i = 0; i < safetensors_count(st); i++) {
        const char *name = safetensors_at(st, i)->name;
        if (!state_dict_name(L, name)) {
            sac_error("%s: unexpected tensor '%s': not part of torchvision's mobilenet_v2 (width 1.0) state dict",
                      safetensors_path(st), name);
            return SAC_ERR_FORMAT;
        }
    }
    int rc = 0;
    for (int i = 0; i < BACKBONE_N_LAYERS - 1 && !rc; i++) rc = fold_layer(st, &L[i], w, rep);
    const BackboneLayer *c = &L[BACKBONE_N_LAYERS - 1];
    const int64_t bshape[1] = {c->cout};
    float *cwt = sac_malloc(sizeof(float) * (size_t)c->cout * BACKBONE_FEATURES);
    float *cb = sac_malloc(sizeof(float) * (size_t)c->cout);
    if (!rc && (!cwt || !cb)) rc = SAC_ERR_NOMEM;
    if (!rc) rc = safetensors_load_f32(st, "classifier.1.weight", cwt, 2, c->wshape);
    if (!rc) rc = safetensors_load_f32(st, "classifier.1.bias", cb, 1, bshape);
    if (!rc) rc = add_tensor(w, rep, "classifier.1.weight", 2, c->wshape, cwt);
    if (!rc) rc = add_tensor(w, rep, "classifier.1.bias", 1, bshape, cb);
    free(cwt), free(cb);
    if (!rc && ((rc = safetensors_writer_meta(w, "padding", "symmetric")) ||
                (rc = safetensors_writer_meta(w, "mean", "[0.485,0.456,0.406]")) ||
                (rc = safetensors_writer_meta(w, "std", "[0.229,0.224,0.225]"))))
        return rc;
    return rc;
}

/* ---- the whole import ---- */

/* The labels file as a JSON array string with exactly n_classes names (malloc'd), or NULL. */
static char *labels_json(const char *path, int n_classes)
{
    size_t size;
    uint8_t *text;
    if (sac_read_file(path, (size_t)64 << 20, &text, &size)) return NULL;
    if (memchr(text, '\0', size)) {
        sac_error("%s: contains a NUL byte, expected one class name a line", path);
        free(text);
        return NULL;
    }
    if (!sac_utf8_valid((const char *)text)) {
        sac_error("%s: not valid UTF-8 text, expected one class name a line", path);
        free(text);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    int n = 0, ok = arr != NULL;
    char *line = (char *)text, *end = (char *)text + size;
    while (ok && line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line)), *stop = nl ? nl : end;
        if (stop > line && stop[-1] == '\r') stop--;
        *stop = '\0';
        cJSON *s = cJSON_CreateString(line);
        ok = s && cJSON_AddItemToArray(arr, s);
        n++;
        line = nl ? nl + 1 : end;
    }
    char *json = NULL;
    if (ok && n != n_classes)
        sac_error("%s: %d lines, expected one name for each of the model's %d classes", path, n, n_classes);
    else if (ok && !(json = cJSON_PrintUnformatted(arr)))
        sac_error("%s: out of memory", path);
    cJSON_Delete(arr);
    free(text);
    return json;
}

int backbone_import(const char *src, const char *out, const BackboneImportOptions *opt, BackboneImportReport *rep)
{
    BackboneImportReport local;
    BackboneImportOptions no_opt = {0};
    if (!rep) rep = &local;
    if (!opt) opt = &no_opt;
    memset(rep, 0, sizeof(*rep));
    if (sac_output_check_inputs(out, "-o", &src, 1)) return SAC_ERR_INVALID;
    size_t size = 0;
    uint8_t *data = NULL;
    int rc = sac_read_file(src, BACKBONE_IMPORT_MAX_BYTES, &data, &size);
    if (rc) return rc;
    char sha[65];
    sac_sha256_hex(data, size, sha);
    SafeTensorsWriter *w = safetensors_writer_create();
    TfliteModel *m = NULL;
    SafeTensors *st = NULL;
    char *labels = NULL, *tmp = NULL;
    if (!w) rc = SAC_ERR_NOMEM;
    if (!rc && tflite_is_tflite(data, size)) {
        if (!(m = tflite_parse(src, data, size))) rc = SAC_ERR_FORMAT;
        if (!rc) rc = backbone_from_tflite(m, w, rep);
    } else if (!rc) {
        if (!(st = safetensors_read_memory(data, size, src))) {
            sac_error("%s: neither a TFLite file (identifier 'TFL3' at byte 4) nor a readable safetensors state dict",
                      src);
            rc = SAC_ERR_FORMAT;
        }
        if (!rc) rc = backbone_from_state_dict(st, w, rep);
    }
    free(data);
    tflite_free(m);
    safetensors_free(st);
    snprintf(rep->sha256, sizeof(rep->sha256), "%s", sha);
    if (!rc && opt->labels_path && !(labels = labels_json(opt->labels_path, rep->n_classes))) rc = SAC_ERR_FORMAT;
    const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
    const char *license = opt->license ? opt->license : !strcmp(rep->kind ? rep->kind : "", "tflite")
                                                            ? "Apache-2.0" : "unknown, see source";
    char n_classes[32];
    snprintf(n_classes, sizeof(n_classes), "%d", rep->n_classes);
    const char *meta[][2] = {{"format", BACKBONE_FORMAT},   {"arch", BACKBONE_ARCH},
                             {"width", "1.0"},              {"input_size", "224"},
                             {"n_classes", n_classes},      {"labels", labels ? labels : "[]"},
                             {"source", base},              {"source_sha256", sha},
                             {"license", license},          {"converted_by", "saccade " SACCADE_VERSION}};
    for (size_t i = 0; !rc && i < sizeof(meta) / sizeof(meta[0]); i++) rc = safetensors_writer_meta(w, meta[i][0], meta[i][1]);
    /* write a temporary file beside out, check what was written, then hand the checked bytes to
     * the output layer (atomic replace, links followed): out only ever gets a checked file */
    if (!rc && !(tmp = malloc(strlen(out) + 16))) rc = SAC_ERR_NOMEM;
    if (!rc) {
        sprintf(tmp, "%s.importing", out);
        int written = !(rc = safetensors_writer_write(w, tmp));
        SafeTensors *check = rc ? NULL : backbone_file_open(tmp, NULL);
        uint8_t *bytes = NULL;
        size_t n_bytes = 0;
        if (!rc && !check) rc = SAC_ERR_FORMAT;
        safetensors_free(check);
        if (!rc) rc = sac_read_file(tmp, 0, &bytes, &n_bytes);
        if (!rc) rc = sac_output_write_file(out, bytes, n_bytes, 0);
        free(bytes);
        if (written) unlink(tmp);
    }
    free(tmp);
    free(labels);
    safetensors_writer_free(w);
    return rc;
}
