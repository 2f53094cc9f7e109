/*
 * model.c - model config, the parameter table, init, and the model file. See model.h.
 *
 * Size letters: S input side, P grid positions, E encoder channels, A attention dim,
 * D LSTM hidden, M embedding dim, V vocabulary, T most caption steps.
 */
#include "model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mobilenet.h"
#include "sac.h"
#include "safetensors.h"

#define MODEL_FORMAT "saccade-model-1"

void model_config_default(ModelConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enc.image_size = 128;
    cfg->enc.batchnorm = 1;
    const ConvSpec convs[] = {{32, 2, 0}, {64, 1, 1}, {128, 1, 1}, {256, 1, 1}, {256, 1, 0}};
    cfg->enc.n_conv = 5;
    memcpy(cfg->enc.conv, convs, sizeof(convs));
    cfg->E = 256, cfg->A = 256, cfg->D = 512, cfg->M = 256, cfg->V = 0, cfg->T = 20;
    cfg->dropout = 0.5f;
    cfg->lambda = 1.0f;
    /* ImageNet statistics: a convention, harmless for a network trained from scratch */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(cfg->mean, mean, sizeof(mean));
    memcpy(cfg->std, std, sizeof(std));
}

static int backbone_validate(const ModelConfig *cfg, int *gh, int *gw)
{
    const BackboneConfig *bb = &cfg->bb;
    const int S = cfg->enc.image_size;
    if (bb->kind != SAC_BACKBONE_MOBILENET_V2) {
        sac_error("config: backbone kind %d, expected MobileNetV2", bb->kind);
        return SAC_ERR_INVALID;
    }
    if (bb->grid != 7 && bb->grid != 14) {
        sac_error("config: backbone grid %d, expected 14 (14x14x576 at 224) or 7 (7x7x1280)", bb->grid);
        return SAC_ERR_INVALID;
    }
    if (S < 32 || S > 1024 || S % 32) {
        sac_error("config: image_size %d, expected a multiple of 32 in 32..1024 with a MobileNetV2 backbone", S);
        return SAC_ERR_INVALID;
    }
    const int Eb = bb->grid == 14 ? 576 : 1280;
    if (bb->channels != Eb) {
        sac_error("config: backbone channels %d, expected %d for grid %d", bb->channels, Eb, bb->grid);
        return SAC_ERR_INVALID;
    }
    if (!bb->proj && cfg->E != Eb) {
        sac_error("config: E is %d, expected the backbone's %d channels (no projection)", cfg->E, Eb);
        return SAC_ERR_INVALID;
    }
    if (cfg->E < 1 || cfg->E > 65536) {
        sac_error("config: E is %d, expected 1..65536", cfg->E);
        return SAC_ERR_INVALID;
    }
    const int last = bb->grid == 14 ? 13 : 17; /* the last inverted residual block before the grid */
    if (bb->finetune_from != 0 && (bb->finetune_from < 2 || bb->finetune_from > last)) {
        sac_error("config: backbone finetune_from %d, expected 0 (frozen) or a block 2..%d for grid %d",
                  bb->finetune_from, last, bb->grid);
        return SAC_ERR_INVALID;
    }
    *gh = *gw = S / (bb->grid == 14 ? 16 : 32);
    return SAC_OK;
}

int model_config_validate(const ModelConfig *cfg, int *grid_h, int *grid_w)
{
    ConvShape shapes[SAC_MAX_CONV];
    int gh, gw;
    if (cfg->bb.kind != SAC_BACKBONE_NONE) {
        if (backbone_validate(cfg, &gh, &gw) != SAC_OK) return SAC_ERR_INVALID;
    } else {
        if (encoder_shapes(&cfg->enc, shapes, &gh, &gw) != SAC_OK) return SAC_ERR_INVALID;
        const int last = cfg->enc.conv[cfg->enc.n_conv - 1].cout;
        if (cfg->E != last) {
            sac_error("config: E is %d, expected the last conv's output channels (%d)", cfg->E, last);
            return SAC_ERR_INVALID;
        }
    }
    const struct {
        const char *name;
        int v, lo, hi;
    } r[] = {{"A", cfg->A, 1, 65536}, {"D", cfg->D, 1, 65536}, {"M", cfg->M, 1, 65536},
             {"V", cfg->V, 5, 1 << 22}, {"T", cfg->T, 1, 1024}};
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        if (r[i].v < r[i].lo || r[i].v > r[i].hi) {
            sac_error("config: %s is %d, expected %d..%d", r[i].name, r[i].v, r[i].lo, r[i].hi);
            return SAC_ERR_INVALID;
        }
    }
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f) || !(cfg->lambda >= 0.0f)) {
        sac_error("config: dropout %g / lambda %g, expected [0, 1) / >= 0", cfg->dropout, cfg->lambda);
        return SAC_ERR_INVALID;
    }
    for (int c = 0; c < 3; c++) {
        if (!(cfg->std[c] > 0.0f) || !isfinite(cfg->mean[c])) {
            sac_error("config: preprocessing mean/std of channel %d is %g/%g, expected finite/positive", c,
                      cfg->mean[c], cfg->std[c]);
            return SAC_ERR_INVALID;
        }
    }
    if (grid_h) *grid_h = gh;
    if (grid_w) *grid_w = gw;
    return SAC_OK;
}

/* ---- the parameter table ---- */

typedef struct {
    Model *m;
    ModelParams tmpl; /* only its field addresses are used */
    int cap;
    int trainable_pass;
} TableBuilder;

static int table_add(TableBuilder *tb, float **field, int trainable, const char *name, int ndim, int64_t d0,
                     int64_t d1, int64_t d2, int64_t d3)
{
    if (trainable != tb->trainable_pass) return SAC_OK;
    Model *m = tb->m;
    if (m->n_specs == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        ParamSpec *s = realloc(m->specs, sizeof(ParamSpec) * cap);
        if (!s) return SAC_ERR_NOMEM;
        m->specs = s, tb->cap = cap;
    }
    ParamSpec *s = &m->specs[m->n_specs++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    s->numel = 1;
    for (int i = 0; i < ndim; i++) s->shape[i] = d[i], s->numel *= (size_t)d[i];
    s->offset = m->n_floats;
    m->n_floats += (s->numel + 15) / 16 * 16; /* 64-byte aligned tensors */
    s->field = (size_t)((char *)field - (char *)&tb->tmpl);
    s->trainable = trainable;
    return SAC_OK;
}

/* The one list of every tensor: called twice, trainable tensors first, then buffers. */
static int table_list(TableBuilder *tb)
{
    const ModelConfig *c = &tb->m->cfg;
    ModelParams *t = &tb->tmpl;
    ConvShape sh[SAC_MAX_CONV];
    char n[64];
    int st = 0;
#define ADD(field, tr, ndim, ...) st |= table_add(tb, &(field), tr, n, ndim, __VA_ARGS__)
#define NAME(...) snprintf(n, sizeof(n), __VA_ARGS__)
    if (c->bb.kind != SAC_BACKBONE_NONE) {
        MobileNetConfig mc;
        model_mobilenet_config(c, &mc);
        MobileNetSpec specs[SAC_MAX_BACKBONE_TENSORS];
        const int ns = mobilenet_specs(&mc, specs, SAC_MAX_BACKBONE_TENSORS);
        if (ns < 1) return SAC_ERR_INVALID;
        tb->m->n_backbone = ns;
        const int first = model_backbone_first_trained(tb->m);
        for (int i = 0; i < ns; i++) { /* frozen below the fine-tuned blocks: stored, not trained */
            const int64_t *d = specs[i].shape;
            NAME("backbone.%.*s", MOBILENET_NAME_MAX - 1, specs[i].name),
                ADD(t->backbone[i], i >= first, specs[i].ndim, d[0], d[1], d[2], d[3]);
        }
        if (c->bb.proj) {
            NAME("encoder.proj.weight"), ADD(t->proj_w, 1, 2, c->E, c->bb.channels, 0, 0);
            NAME("encoder.proj.bias"), ADD(t->proj_b, 1, 1, c->E, 0, 0, 0);
        }
    } else {
        encoder_shapes(&c->enc, sh, NULL, NULL);
    }
    for (int i = 0; c->bb.kind == SAC_BACKBONE_NONE && i < c->enc.n_conv; i++) {
        ConvLayerParams *L = &t->enc.conv[i];
        const int64_t co = sh[i].cout, ci = sh[i].cin;
        NAME("encoder.conv%d.weight", i + 1), ADD(L->weight, 1, 4, co, ci, 3, 3);
        if (c->enc.batchnorm) {
            NAME("encoder.bn%d.weight", i + 1), ADD(L->bn_gamma, 1, 1, co, 0, 0, 0);
            NAME("encoder.bn%d.bias", i + 1), ADD(L->bn_beta, 1, 1, co, 0, 0, 0);
            NAME("encoder.bn%d.running_mean", i + 1), ADD(L->bn_mean, 0, 1, co, 0, 0, 0);
            NAME("encoder.bn%d.running_var", i + 1), ADD(L->bn_var, 0, 1, co, 0, 0, 0);
        } else {
            NAME("encoder.conv%d.bias", i + 1), ADD(L->bias, 1, 1, co, 0, 0, 0);
        }
    }
    DecoderParams *d = &t->dec;
    const int64_t E = c->E, A = c->A, D = c->D, M = c->M, V = c->V;
    NAME("decoder.embed.weight"), ADD(d->embed, 1, 2, V, M, 0, 0);
    NAME("decoder.encoder_att.weight"), ADD(d->att.enc_w, 1, 2, A, E, 0, 0);
    NAME("decoder.encoder_att.bias"), ADD(d->att.enc_b, 1, 1, A, 0, 0, 0);
    NAME("decoder.decoder_att.weight"), ADD(d->att.dec_w, 1, 2, A, D, 0, 0);
    NAME("decoder.decoder_att.bias"), ADD(d->att.dec_b, 1, 1, A, 0, 0, 0);
    NAME("decoder.full_att.weight"), ADD(d->att.full_w, 1, 2, 1, A, 0, 0);
    NAME("decoder.full_att.bias"), ADD(d->att.full_b, 1, 1, 1, 0, 0, 0);
    NAME("decoder.init_h.weight"), ADD(d->init_h_w, 1, 2, D, E, 0, 0);
    NAME("decoder.init_h.bias"), ADD(d->init_h_b, 1, 1, D, 0, 0, 0);
    NAME("decoder.init_c.weight"), ADD(d->init_c_w, 1, 2, D, E, 0, 0);
    NAME("decoder.init_c.bias"), ADD(d->init_c_b, 1, 1, D, 0, 0, 0);
    NAME("decoder.f_beta.weight"), ADD(d->att.beta_w, 1, 2, E, D, 0, 0);
    NAME("decoder.f_beta.bias"), ADD(d->att.beta_b, 1, 1, E, 0, 0, 0);
    NAME("decoder.lstm.weight_ih"), ADD(d->w_ih, 1, 2, 4 * D, M + E, 0, 0);
    NAME("decoder.lstm.weight_hh"), ADD(d->w_hh, 1, 2, 4 * D, D, 0, 0);
    NAME("decoder.lstm.bias_ih"), ADD(d->b_ih, 1, 1, 4 * D, 0, 0, 0);
    NAME("decoder.lstm.bias_hh"), ADD(d->b_hh, 1, 1, 4 * D, 0, 0, 0);
    NAME("decoder.fc.weight"), ADD(d->fc_w, 1, 2, V, D, 0, 0);
    NAME("decoder.fc.bias"), ADD(d->fc_b, 1, 1, V, 0, 0, 0);
#undef ADD
#undef NAME
    return st;
}

void model_point(const Model *m, float *buf, ModelParams *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < m->n_specs; i++) {
        float **field = (float **)((char *)out + m->specs[i].field);
        *field = buf + m->specs[i].offset;
    }
}

void model_free(Model *m)
{
    if (!m) return;
    free(m->backbone_info);
    free(m->specs);
    free(m->data);
    vocab_free(m->vocab);
    free(m);
}

Model *model_create(const ModelConfig *cfg)
{
    int gh, gw;
    if (model_config_validate(cfg, &gh, &gw) != SAC_OK) return NULL;
    Model *m = sac_calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->cfg = *cfg;
    m->grid_h = gh, m->grid_w = gw, m->P = gh * gw;
    TableBuilder tb = {.m = m};
    tb.trainable_pass = 1;
    if (table_list(&tb) != SAC_OK) goto fail;
    m->n_trainable = m->n_floats;
    tb.trainable_pass = 0;
    if (table_list(&tb) != SAC_OK) goto fail;
    m->data = sac_alloc_floats(m->n_floats);
    if (!m->data) goto fail;
    memset(m->data, 0, sizeof(float) * m->n_floats);
    model_point(m, m->data, &m->p);
    return m;
fail:
    sac_error("model: out of memory building the parameter table");
    model_free(m);
    return NULL;
}

static void fill_uniform(float *x, size_t n, float bound, SacRng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = bound * (2.0f * sac_rng_uniform(rng) - 1.0f);
}

void model_init(Model *m, SacRng *rng)
{
    memset(m->data, 0, sizeof(float) * m->n_floats);
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        float *x = m->data + s->offset;
        const char *n = s->name;
        size_t len = strlen(n);
        int is_bias = len > 5 && (!strcmp(n + len - 5, ".bias") || strstr(n, ".bias_"));
        if (!strncmp(n, "backbone.", 9)) {
            continue; /* pretrained: model_load_backbone fills it */
        } else if (!strncmp(n, "encoder.bn", 10)) {
            if (strstr(n, ".weight") || strstr(n, "running_var"))
                for (size_t k = 0; k < s->numel; k++) x[k] = 1.0f;
            /* bias and running_mean stay 0 */
        } else if (!strncmp(n, "encoder.conv", 12)) {
            size_t fan_in = s->ndim == 4 ? (size_t)(s->shape[1] * 9) : 1;
            if (!is_bias) fill_uniform(x, s->numel, sqrtf(6.0f / fan_in), rng); /* He, for ReLU */
        } else if (!strcmp(n, "decoder.embed.weight") || !strcmp(n, "decoder.fc.weight")) {
            fill_uniform(x, s->numel, 0.1f, rng);
        } else if (!strcmp(n, "decoder.fc.bias")) {
            /* zero */
        } else if (!strncmp(n, "decoder.lstm.", 13)) {
            fill_uniform(x, s->numel, 1.0f / sqrtf((float)m->cfg.D), rng);
        } else {
            /* nn.Linear: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
            const ParamSpec *w = is_bias ? s - 1 : s;
            fill_uniform(x, s->numel, 1.0f / sqrtf((float)w->shape[1]), rng);
        }
    }
}

DecoderSizes model_decoder_sizes(const Model *m)
{
    const ModelConfig *c = &m->cfg;
    return (DecoderSizes){.P = m->P, .E = c->E, .A = c->A, .D = c->D, .M = c->M, .V = c->V, .T = c->T};
}

/* ---- config as JSON ---- */

char *model_config_to_json(const ModelConfig *cfg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "image_size", cfg->enc.image_size);
    if (cfg->bb.kind != SAC_BACKBONE_NONE) {
        cJSON *b = cJSON_AddObjectToObject(o, "backbone");
        cJSON_AddStringToObject(b, "arch", "mobilenet_v2");
        cJSON_AddNumberToObject(b, "grid", cfg->bb.grid);
        cJSON_AddStringToObject(b, "padding", cfg->bb.pad_same ? "same" : "symmetric");
        cJSON_AddNumberToObject(b, "channels", cfg->bb.channels);
        cJSON_AddBoolToObject(b, "proj", cfg->bb.proj);
        cJSON_AddBoolToObject(b, "frozen", !cfg->bb.finetune_from);
        if (cfg->bb.finetune_from) cJSON_AddNumberToObject(b, "finetune_from", cfg->bb.finetune_from);
    } else {
        cJSON_AddBoolToObject(o, "batchnorm", cfg->enc.batchnorm);
        cJSON *convs = cJSON_AddArrayToObject(o, "conv");
        for (int i = 0; i < cfg->enc.n_conv; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddNumberToObject(c, "out", cfg->enc.conv[i].cout);
            cJSON_AddNumberToObject(c, "stride", cfg->enc.conv[i].stride);
            cJSON_AddBoolToObject(c, "pool", cfg->enc.conv[i].pool);
            cJSON_AddItemToArray(convs, c);
        }
    }
    cJSON_AddNumberToObject(o, "E", cfg->E);
    cJSON_AddNumberToObject(o, "A", cfg->A);
    cJSON_AddNumberToObject(o, "D", cfg->D);
    cJSON_AddNumberToObject(o, "M", cfg->M);
    cJSON_AddNumberToObject(o, "V", cfg->V);
    cJSON_AddNumberToObject(o, "T", cfg->T);
    cJSON_AddNumberToObject(o, "dropout", cfg->dropout);
    cJSON_AddNumberToObject(o, "lambda", cfg->lambda);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_int(const cJSON *o, const char *key, int *out, const char *source)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) {
        sac_error("%s: config field '%s' is %s, expected an integer", source, key, v ? "not an integer" : "missing");
        return SAC_ERR_FORMAT;
    }
    *out = (int)v->valuedouble;
    return SAC_OK;
}

static int json_float(const cJSON *o, const char *key, float *out, const char *source)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) {
        sac_error("%s: config field '%s' is %s, expected a number", source, key, v ? "not a number" : "missing");
        return SAC_ERR_FORMAT;
    }
    *out = (float)v->valuedouble;
    return SAC_OK;
}

static int json_bool(const cJSON *o, const char *key, int *out, const char *source)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v)) {
        sac_error("%s: config field '%s' is %s, expected true or false", source, key, v ? "not a boolean" : "missing");
        return SAC_ERR_FORMAT;
    }
    *out = cJSON_IsTrue(v);
    return SAC_OK;
}

int model_config_from_json(ModelConfig *cfg, const char *json, const char *source)
{
    ModelConfig c;
    model_config_default(&c);
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        sac_error("%s: config is not a JSON object", source);
        cJSON_Delete(o);
        return SAC_ERR_FORMAT;
    }
    int st = SAC_OK;
    st = st ? st : json_int(o, "image_size", &c.enc.image_size, source);
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(o, "backbone");
    if (bb) {
        const cJSON *arch = cJSON_GetObjectItemCaseSensitive(bb, "arch");
        const cJSON *pad = cJSON_GetObjectItemCaseSensitive(bb, "padding");
        int frozen = 0;
        if (!cJSON_IsObject(bb) || !cJSON_IsString(arch) || strcmp(arch->valuestring, "mobilenet_v2") ||
            !cJSON_IsString(pad) || (strcmp(pad->valuestring, "same") && strcmp(pad->valuestring, "symmetric"))) {
            sac_error("%s: config field 'backbone' is not {\"arch\": \"mobilenet_v2\", \"padding\": \"same\" or "
                      "\"symmetric\", ...}", source);
            st = SAC_ERR_FORMAT;
        }
        c.bb.kind = SAC_BACKBONE_MOBILENET_V2;
        c.bb.pad_same = !st && !strcmp(pad->valuestring, "same");
        st = st ? st : json_int(bb, "grid", &c.bb.grid, source);
        st = st ? st : json_int(bb, "channels", &c.bb.channels, source);
        st = st ? st : json_bool(bb, "proj", &c.bb.proj, source);
        st = st ? st : json_bool(bb, "frozen", &frozen, source);
        /* not frozen: its blocks from finetune_from on were fine-tuned (the inference is the same) */
        if (!st && !frozen) st = json_int(bb, "finetune_from", &c.bb.finetune_from, source);
    }
    const cJSON *convs = bb ? NULL : cJSON_GetObjectItemCaseSensitive(o, "conv");
    if (!bb) st = st ? st : json_bool(o, "batchnorm", &c.enc.batchnorm, source);
    if (!st && !bb && (!cJSON_IsArray(convs) || cJSON_GetArraySize(convs) < 1 || cJSON_GetArraySize(convs) > SAC_MAX_CONV)) {
        sac_error("%s: config field 'conv' must be an array of 1..%d layers", source, SAC_MAX_CONV);
        st = SAC_ERR_FORMAT;
    }
    if (!st && !bb) {
        c.enc.n_conv = cJSON_GetArraySize(convs);
        for (int i = 0; i < c.enc.n_conv && !st; i++) {
            const cJSON *l = cJSON_GetArrayItem(convs, i);
            st = st ? st : json_int(l, "out", &c.enc.conv[i].cout, source);
            st = st ? st : json_int(l, "stride", &c.enc.conv[i].stride, source);
            st = st ? st : json_bool(l, "pool", &c.enc.conv[i].pool, source);
        }
    }
    st = st ? st : json_int(o, "E", &c.E, source);
    st = st ? st : json_int(o, "A", &c.A, source);
    st = st ? st : json_int(o, "D", &c.D, source);
    st = st ? st : json_int(o, "M", &c.M, source);
    st = st ? st : json_int(o, "V", &c.V, source);
    st = st ? st : json_int(o, "T", &c.T, source);
    st = st ? st : json_float(o, "dropout", &c.dropout, source);
    st = st ? st : json_float(o, "lambda", &c.lambda, source);
    cJSON_Delete(o);
    if (st) return st;
    *cfg = c;
    return SAC_OK;
}

static char *preprocess_to_json(const ModelConfig *cfg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "resize", "squash");
    cJSON_AddNumberToObject(o, "size", cfg->enc.image_size);
    cJSON_AddItemToObject(o, "mean", cJSON_CreateFloatArray(cfg->mean, 3));
    cJSON_AddItemToObject(o, "std", cJSON_CreateFloatArray(cfg->std, 3));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int preprocess_from_json(ModelConfig *cfg, const char *json, const char *source)
{
    cJSON *o = cJSON_Parse(json);
    int st = SAC_ERR_FORMAT;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "resize");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(o, "mean");
    const cJSON *std = cJSON_GetObjectItemCaseSensitive(o, "std");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
    if (!cJSON_IsObject(o) || !cJSON_IsString(rs) || strcmp(rs->valuestring, "squash") ||
        !cJSON_IsArray(mean) || cJSON_GetArraySize(mean) != 3 || !cJSON_IsArray(std) ||
        cJSON_GetArraySize(std) != 3 || !cJSON_IsNumber(size) || size->valueint != cfg->enc.image_size) {
        sac_error("%s: 'preprocess' metadata is not {\"resize\":\"squash\",\"size\":%d,\"mean\":[3],\"std\":[3]}",
                  source, cfg->enc.image_size);
        goto done;
    }
    for (int c = 0; c < 3; c++) {
        const cJSON *m = cJSON_GetArrayItem(mean, c), *s = cJSON_GetArrayItem(std, c);
        if (!cJSON_IsNumber(m) || !cJSON_IsNumber(s)) {
            sac_error("%s: 'preprocess' mean/std must be numbers", source);
            goto done;
        }
        cfg->mean[c] = (float)m->valuedouble, cfg->std[c] = (float)s->valuedouble;
    }
    st = SAC_OK;
done:
    cJSON_Delete(o);
    return st;
}

/* ---- the model file ---- */

int model_write_to(const Model *m, SafeTensorsWriter *w, int store_f16)
{
    if (!m->vocab) {
        sac_error("model: cannot save a model without a vocabulary");
        return SAC_ERR_INVALID;
    }
    char *cfg = model_config_to_json(&m->cfg), *pre = preprocess_to_json(&m->cfg);
    char *voc = vocab_to_string(m->vocab);
    int st = (cfg && pre && voc) ? SAC_OK : SAC_ERR_NOMEM;
    st = st ? st : safetensors_writer_meta(w, "format", MODEL_FORMAT);
    st = st ? st : safetensors_writer_meta(w, "config", cfg);
    st = st ? st : safetensors_writer_meta(w, "preprocess", pre);
    st = st ? st : safetensors_writer_meta(w, "vocab", voc);
    if (m->backbone_info) st = st ? st : safetensors_writer_meta(w, "backbone", m->backbone_info);
    free(cfg), free(pre), free(voc);
    for (int i = 0; i < m->n_specs && !st; i++) {
        const ParamSpec *s = &m->specs[i];
        /* fp16 only where every value fits: a batchnorm running variance can exceed 65504 */
        int half = store_f16;
        for (size_t k = 0; half && k < s->numel; k++) half = fabsf(m->data[s->offset + k]) <= 65504.0f;
        st = safetensors_writer_add_f32(w, s->name, s->ndim, s->shape, m->data + s->offset,
                                        half ? SAC_DTYPE_F16 : SAC_DTYPE_F32);
    }
    return st;
}

int model_save(const Model *m, const char *path, int store_f16)
{
    SafeTensorsWriter *w = safetensors_writer_create();
    if (!w) return SAC_ERR_NOMEM;
    int st = model_write_to(m, w, store_f16);
    if (!st) st = safetensors_writer_write(w, path);
    safetensors_writer_free(w);
    return st;
}

Model *model_from_safetensors(const SafeTensors *st)
{
    const char *path = safetensors_path(st);
    const char *format = safetensors_meta(st, "format");
    if (!format || strcmp(format, MODEL_FORMAT)) {
        sac_error("%s: metadata 'format' is %s%s%s, expected \"%s\" (not a saccade model?)", path,
                  format ? "\"" : "", format ? format : "missing", format ? "\"" : "", MODEL_FORMAT);
        return NULL;
    }
    const char *cfg_json = safetensors_meta(st, "config");
    const char *pre_json = safetensors_meta(st, "preprocess");
    const char *voc_text = safetensors_meta(st, "vocab");
    if (!cfg_json || !pre_json || !voc_text) {
        sac_error("%s: metadata '%s' is missing", path, !cfg_json ? "config" : !pre_json ? "preprocess" : "vocab");
        return NULL;
    }
    ModelConfig cfg;
    if (model_config_from_json(&cfg, cfg_json, path) != SAC_OK) return NULL;
    if (preprocess_from_json(&cfg, pre_json, path) != SAC_OK) return NULL;
    Vocab *voc = vocab_from_string(voc_text, path);
    if (!voc) return NULL;
    if (vocab_size(voc) != cfg.V) {
        sac_error("%s: vocabulary has %d words, expected V = %d from the config", path, vocab_size(voc), cfg.V);
        vocab_free(voc);
        return NULL;
    }
    Model *m = model_create(&cfg);
    if (!m) {
        sac_error("%s: the config above is not a valid model", path);
        vocab_free(voc);
        return NULL;
    }
    m->vocab = voc;
    const char *bb_info = safetensors_meta(st, "backbone");
    if (cfg.bb.kind != SAC_BACKBONE_NONE && bb_info && !(m->backbone_info = strdup(bb_info))) {
        model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (safetensors_load_f32(st, s->name, m->data + s->offset, s->ndim, s->shape) != SAC_OK) {
            model_free(m);
            return NULL;
        }
        const float *x = m->data + s->offset;
        for (size_t k = 0; k < s->numel; k++) {
            if (!isfinite(x[k])) {
                sac_error("%s: tensor '%s' has a non-finite value at index %zu", path, s->name, k);
                model_free(m);
                return NULL;
            }
        }
    }
    return m;
}

Model *model_load(const char *path)
{
    SafeTensors *st = safetensors_read(path);
    if (!st) return NULL;
    Model *m = model_from_safetensors(st);
    safetensors_free(st);
    return m;
}

/* ---- the pretrained backbone ---- */

int model_backbone_first_trained(const Model *m)
{
    MobileNetConfig mc;
    MobileNetBlockShape sh;
    if (m->cfg.bb.kind == SAC_BACKBONE_NONE || !m->cfg.bb.finetune_from) return m->n_backbone;
    model_mobilenet_config(&m->cfg, &mc);
    if (mobilenet_block_shape(&mc, m->cfg.bb.finetune_from, &sh)) return m->n_backbone; /* validated before */
    return sh.first_spec;
}

void model_mobilenet_config(const ModelConfig *cfg, MobileNetConfig *out)
{
    mobilenet_config_default(out);
    out->grid = cfg->bb.grid;
    out->pad_same = cfg->bb.pad_same;
    out->image_size = cfg->enc.image_size;
}

static int meta_floats3(const SafeTensors *st, const char *key, float out[3])
{
    const char *v = safetensors_meta(st, key);
    cJSON *a = v ? cJSON_Parse(v) : NULL;
    int ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3;
    for (int c = 0; ok && c < 3; c++) {
        const cJSON *x = cJSON_GetArrayItem(a, c);
        ok = cJSON_IsNumber(x) && isfinite(x->valuedouble);
        if (ok) out[c] = (float)x->valuedouble;
    }
    cJSON_Delete(a);
    if (!ok) sac_error("%s: metadata '%s' is %s, expected a JSON array of 3 numbers", safetensors_path(st), key,
                       v ? "not that" : "missing");
    return ok ? SAC_OK : SAC_ERR_FORMAT;
}

int model_backbone_config(const char *path, BackboneConfig *bb)
{
    SafeTensors *st = safetensors_read(path);
    if (!st) return SAC_ERR_IO;
    const char *format = safetensors_meta(st, "format"), *arch = safetensors_meta(st, "arch");
    const char *pad = safetensors_meta(st, "padding");
    int r = SAC_ERR_FORMAT;
    if (!format || strcmp(format, "saccade-backbone-1") || !arch || strcmp(arch, "mobilenet_v2"))
        sac_error("%s: not a MobileNetV2 backbone file (metadata format %s, arch %s); make one with saccade import",
                  path, format ? format : "missing", arch ? arch : "missing");
    else if (!pad || (strcmp(pad, "same") && strcmp(pad, "symmetric")))
        sac_error("%s: metadata 'padding' is %s, expected \"same\" or \"symmetric\"", path, pad ? pad : "missing");
    else {
        bb->kind = SAC_BACKBONE_MOBILENET_V2;
        bb->pad_same = !strcmp(pad, "same");
        r = SAC_OK;
    }
    safetensors_free(st);
    return r;
}

int model_load_backbone(Model *m, const char *path, int round_f16)
{
    if (m->cfg.bb.kind == SAC_BACKBONE_NONE) {
        sac_error("%s: the model has no backbone to load", path);
        return SAC_ERR_INVALID;
    }
    SafeTensors *st = safetensors_read(path);
    if (!st) return SAC_ERR_IO;
    int r = SAC_ERR_FORMAT;
    const char *format = safetensors_meta(st, "format"), *arch = safetensors_meta(st, "arch");
    const char *pad = safetensors_meta(st, "padding");
    const char *want_pad = m->cfg.bb.pad_same ? "same" : "symmetric";
    float mean[3], stdv[3];
    if (!format || strcmp(format, "saccade-backbone-1")) {
        sac_error("%s: metadata 'format' is %s, expected \"saccade-backbone-1\" (make one with saccade import)", path,
                  format ? format : "missing");
        goto done;
    }
    if (!arch || strcmp(arch, "mobilenet_v2")) {
        sac_error("%s: metadata 'arch' is %s, expected \"mobilenet_v2\"", path, arch ? arch : "missing");
        goto done;
    }
    if (!pad || strcmp(pad, want_pad)) {
        sac_error("%s: metadata 'padding' is %s, expected \"%s\"", path, pad ? pad : "missing", want_pad);
        goto done;
    }
    if (meta_floats3(st, "mean", mean) || meta_floats3(st, "std", stdv)) goto done;
    for (int c = 0; c < 3; c++) {
        if (!(stdv[c] > 0.0f)) {
            sac_error("%s: metadata 'std' has %g, expected > 0", path, stdv[c]);
            goto done;
        }
    }
    for (int i = 0; i < m->n_specs; i++) {
        const ParamSpec *s = &m->specs[i];
        if (strncmp(s->name, "backbone.", 9)) continue;
        float *x = m->data + s->offset;
        if (safetensors_load_f32(st, s->name + 9, x, s->ndim, s->shape) != SAC_OK) goto done;
        for (size_t k = 0; k < s->numel; k++) {
            if (!isfinite(x[k]) || (round_f16 && fabsf(x[k]) > 65504.0f)) {
                sac_error("%s: tensor '%s' has %g at index %zu, expected a finite value%s", path, s->name + 9, x[k],
                          k, round_f16 ? " within fp16's range" : "");
                goto done;
            }
            if (round_f16) x[k] = sac_half_to_float(sac_float_to_half(x[k]));
        }
    }
    memcpy(m->cfg.mean, mean, sizeof(mean));
    memcpy(m->cfg.std, stdv, sizeof(stdv));
    /* provenance, carried into every model trained on it */
    cJSON *info = cJSON_CreateObject();
    const char *keys[] = {"arch", "padding", "source", "source_sha256", "license", "converted_by"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const char *v = safetensors_meta(st, keys[k]);
        if (v) cJSON_AddStringToObject(info, keys[k], v);
    }
    free(m->backbone_info);
    m->backbone_info = cJSON_PrintUnformatted(info);
    cJSON_Delete(info);
    r = m->backbone_info ? SAC_OK : SAC_ERR_NOMEM;
done:
    safetensors_free(st);
    return r;
}
