/*
 * backbone_file.c - the MobileNetV2 layer table and the backbone file check, see
 * backbone_file.h for the format.
 *
 * Sizes: N classes, C channels.
 */
#include "backbone_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"

/* torchvision.models.mobilenet_v2's inverted_residual_setting: t, c, n, s. */
static const int block_setting[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                        {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};

static BackboneLayer *layer_add(BackboneLayer *L, int *n, int role, int feature, const char *name, const char *bn,
                                int cin, int cout, int k, int stride)
{
    BackboneLayer *l = &L[(*n)++];
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    snprintf(l->bn, sizeof(l->bn), "%s", bn);
    l->role = role, l->feature = feature, l->cin = cin, l->cout = cout, l->k = k, l->stride = stride;
    l->depthwise = role == BACKBONE_DEPTHWISE;
    l->relu6 = role != BACKBONE_PROJECT && role != BACKBONE_CLASSIFIER;
    l->wndim = 4;
    l->wshape[0] = cout, l->wshape[1] = l->depthwise ? 1 : cin, l->wshape[2] = k, l->wshape[3] = k;
    return l;
}

void backbone_layers(BackboneLayer L[BACKBONE_N_LAYERS], int n_classes)
{
    int n = 0, cin = 32, f = 1;
    char name[32], bn[32];
    layer_add(L, &n, BACKBONE_FIRST, 0, "features.0.0", "features.0.1", 3, 32, 3, 2);
    for (int b = 0; b < 7; b++) {
        const int t = block_setting[b][0], c = block_setting[b][1];
        for (int r = 0; r < block_setting[b][2]; r++, f++) {
            const int stride = r == 0 ? block_setting[b][3] : 1, hidden = cin * t;
            int sub = 0; /* index inside features.f.conv */
            if (t != 1) {
                snprintf(name, sizeof(name), "features.%d.conv.0.0", f);
                snprintf(bn, sizeof(bn), "features.%d.conv.0.1", f);
                layer_add(L, &n, BACKBONE_EXPAND, f, name, bn, cin, hidden, 1, 1);
                sub = 1;
            }
            snprintf(name, sizeof(name), "features.%d.conv.%d.0", f, sub);
            snprintf(bn, sizeof(bn), "features.%d.conv.%d.1", f, sub);
            layer_add(L, &n, BACKBONE_DEPTHWISE, f, name, bn, hidden, hidden, 3, stride);
            snprintf(name, sizeof(name), "features.%d.conv.%d", f, sub + 1);
            snprintf(bn, sizeof(bn), "features.%d.conv.%d", f, sub + 2);
            layer_add(L, &n, BACKBONE_PROJECT, f, name, bn, hidden, c, 1, 1)->residual = stride == 1 && cin == c;
            cin = c;
        }
    }
    layer_add(L, &n, BACKBONE_LAST, 18, "features.18.0", "features.18.1", 320, BACKBONE_FEATURES, 1, 1);
    BackboneLayer *cls = layer_add(L, &n, BACKBONE_CLASSIFIER, 19, "classifier.1", "", BACKBONE_FEATURES,
                                   n_classes, 1, 1);
    cls->wndim = 2;
    cls->wshape[0] = n_classes, cls->wshape[1] = BACKBONE_FEATURES, cls->wshape[2] = cls->wshape[3] = 0;
    SAC_ASSERT(n == BACKBONE_N_LAYERS);
}

/* ---- the check ---- */

/* "<file>: <what was wrong>", SAC_ERR_FORMAT */
#define bad(st, ...) sac_error_at(SAC_ERR_FORMAT, safetensors_path(st), __VA_ARGS__)

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* A metadata value that must be present; NULL (logged) when absent. */
static const char *meta_need(const SafeTensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    if (!v) bad(st, "metadata has no \"%s\" (a %s file must have it)", key, BACKBONE_FORMAT);
    return v;
}

static int meta_equals(const SafeTensors *st, const char *key, const char *want)
{
    const char *v = meta_need(st, key);
    if (!v) return SAC_ERR_FORMAT;
    if (strcmp(v, want)) return bad(st, "metadata \"%s\" is \"%.80s\", expected \"%s\"", key, v, want);
    return 0;
}

/* A JSON array of 3 finite numbers (std: each > 0). */
static int meta_triple(const SafeTensors *st, const char *key, int positive, float out[3])
{
    const char *v = meta_need(st, key);
    if (!v) return SAC_ERR_FORMAT;
    cJSON *j = cJSON_Parse(v);
    int ok = cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3;
    for (int i = 0; ok && i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(j, i);
        ok = cJSON_IsNumber(e) && isfinite(e->valuedouble) && (!positive || e->valuedouble > 0);
        if (ok) out[i] = (float)e->valuedouble;
    }
    cJSON_Delete(j);
    if (!ok)
        return bad(st, "metadata \"%s\" is \"%.80s\", expected a JSON array of 3 finite numbers%s", key, v,
                   positive ? " > 0" : "");
    return 0;
}

static int meta_int(const SafeTensors *st, const char *key, long lo, long hi, int *out)
{
    const char *v = meta_need(st, key);
    if (!v) return SAC_ERR_FORMAT;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return bad(st, "metadata \"%s\" is \"%.80s\", expected an integer in %ld..%ld", key, v, lo, hi);
    *out = (int)x;
    return 0;
}

static int check_metadata(const SafeTensors *st, BackboneInfo *info)
{
    int rc;
    if ((rc = meta_equals(st, "format", BACKBONE_FORMAT)) || (rc = meta_equals(st, "arch", BACKBONE_ARCH)) ||
        (rc = meta_equals(st, "width", "1.0")) ||
        (rc = meta_int(st, "input_size", BACKBONE_INPUT_SIZE, BACKBONE_INPUT_SIZE, &info->input_size)) ||
        (rc = meta_int(st, "n_classes", 1, 1000000, &info->n_classes)) ||
        (rc = meta_triple(st, "mean", 0, info->mean)) || (rc = meta_triple(st, "std", 1, info->std)))
        return rc;
    const char *pad = meta_need(st, "padding");
    if (!pad) return SAC_ERR_FORMAT;
    if (strcmp(pad, "same") && strcmp(pad, "symmetric"))
        return bad(st, "metadata \"padding\" is \"%.80s\", expected \"same\" or \"symmetric\"", pad);
    info->padding_same = !strcmp(pad, "same");
    static const char *const nonempty[] = {"source", "license", "converted_by"};
    for (int i = 0; i < 3; i++) {
        const char *v = meta_need(st, nonempty[i]);
        if (!v) return SAC_ERR_FORMAT;
        if (!*v) return bad(st, "metadata \"%s\" is empty", nonempty[i]);
    }
    const char *sha = meta_need(st, "source_sha256");
    if (!sha) return SAC_ERR_FORMAT;
    int hex = strlen(sha) == 64;
    for (int i = 0; hex && i < 64; i++) hex = (sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f');
    if (!hex) return bad(st, "metadata \"source_sha256\" is \"%.80s\", expected 64 lowercase hex digits", sha);
    const char *labels = meta_need(st, "labels");
    if (!labels) return SAC_ERR_FORMAT;
    cJSON *j = cJSON_Parse(labels);
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1, bad_item = -1, k = 0;
    for (const cJSON *e = j ? j->child : NULL; n > 0 && e; e = e->next, k++)
        if (!cJSON_IsString(e) && bad_item < 0) bad_item = k;
    cJSON_Delete(j);
    if (n < 0) return bad(st, "metadata \"labels\" is not a JSON array");
    if (bad_item >= 0) return bad(st, "metadata \"labels\"[%d] is not a string", bad_item);
    if (n != 0 && n != info->n_classes)
        return bad(st, "metadata \"labels\" has %d names, expected %d (n_classes) or none", n, info->n_classes);
    info->n_labels = n;
    return 0;
}

static int check_tensor(const SafeTensors *st, const char *name, int ndim, const int64_t *shape)
{
    const SafeTensor *t = safetensors_find(st, name);
    char want[96], got[96];
    if (!t) return bad(st, "tensor '%s' is missing", name);
    shape_text(want, sizeof(want), ndim, shape);
    shape_text(got, sizeof(got), t->ndim, t->shape);
    if (t->dtype != SAC_DTYPE_F32)
        return bad(st, "tensor '%s' is %s, expected F32", name, sac_dtype_name(t->dtype));
    if (strcmp(want, got)) return bad(st, "tensor '%s' has shape %s, expected %s", name, got, want);
    size_t n = t->nbytes / 4;
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        if (!isfinite(v)) return bad(st, "tensor '%s' element %zu is %g, expected a finite value", name, i, v);
    }
    return 0;
}

int backbone_file_check(const SafeTensors *st, BackboneInfo *info)
{
    BackboneInfo local;
    BackboneLayer L[BACKBONE_N_LAYERS];
    char name[48];
    int rc;
    if (!info) info = &local;
    memset(info, 0, sizeof(*info));
    if ((rc = check_metadata(st, info))) return rc;
    backbone_layers(L, info->n_classes);
    for (int i = 0; i < BACKBONE_N_LAYERS; i++) {
        int64_t bshape[1] = {L[i].cout};
        snprintf(name, sizeof(name), "%.31s.weight", L[i].name);
        if ((rc = check_tensor(st, name, L[i].wndim, L[i].wshape))) return rc;
        snprintf(name, sizeof(name), "%.31s.bias", L[i].name);
        if ((rc = check_tensor(st, name, 1, bshape))) return rc;
    }
    if (safetensors_count(st) != 2 * BACKBONE_N_LAYERS) {
        for (int k = 0; k < safetensors_count(st); k++) {
            const char *tn = safetensors_at(st, k)->name;
            int known = 0;
            for (int i = 0; i < BACKBONE_N_LAYERS && !known; i++) {
                size_t len = strlen(L[i].name);
                known = !strncmp(tn, L[i].name, len) && (!strcmp(tn + len, ".weight") || !strcmp(tn + len, ".bias"));
            }
            if (!known) return bad(st, "unexpected tensor '%s': a %s file has only the %d conv and classifier "
                                       "weights and biases", tn, BACKBONE_FORMAT, 2 * BACKBONE_N_LAYERS);
        }
    }
    return 0;
}

SafeTensors *backbone_file_open(const char *path, BackboneInfo *info)
{
    SafeTensors *st = safetensors_read(path);
    if (st && backbone_file_check(st, info)) {
        safetensors_free(st);
        return NULL;
    }
    return st;
}

int backbone_file_label(const SafeTensors *st, int i, char *buf, int cap)
{
    const char *labels = safetensors_meta(st, "labels");
    cJSON *j = labels ? cJSON_Parse(labels) : NULL;
    const cJSON *e = cJSON_IsArray(j) && i >= 0 ? cJSON_GetArrayItem(j, i) : NULL;
    int rc = cJSON_IsString(e) && cap > 0 ? 0 : SAC_ERR_NOTFOUND;
    if (!rc) snprintf(buf, (size_t)cap, "%s", e->valuestring);
    cJSON_Delete(j);
    return rc;
}
