/*
 * coco_results.c - read a COCO results file and match it to reference images (coco_results.h).
 * Moved from tools/cmd_score.c so the parser can be fuzzed (fuzz/fuzz_coco_results.c).
 *
 * Size letters: none.
 */
#include "coco_results.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"
#include "vocab.h"

typedef struct {
    int64_t id;
    int item;
} IdIndex;

static int cmp_id(const void *a, const void *b)
{
    int64_t x = ((const IdIndex *)a)->id, y = ((const IdIndex *)b)->id;
    return (x > y) - (x < y);
}

/* Append " <id>" to the list of unknown ids shown in the error (first few only). */
static void note_unknown(char *list, size_t size, int *count, const char *id)
{
    if (++*count <= 8) {
        size_t l = strlen(list);
        snprintf(list + l, size - l, "%s%s", l ? ", " : "", id);
    }
}

void coco_results_free(CocoResults *r)
{
    if (!r) return;
    for (int i = 0; r->caption && i < r->n; i++) free(r->caption[i]);
    free(r->item), free(r->caption);
    memset(r, 0, sizeof(*r));
}

int coco_results_match(const char *path, const char *text, size_t len, const Dataset *ds,
                       CocoResults *mt)
{
    memset(mt, 0, sizeof(*mt));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        int line = 1;
        for (const char *p = text; end && p < end && p < text + len; p++) line += *p == '\n';
        sac_error("%s: line %d: not valid JSON, expected a COCO results array", path, line);
        return SAC_ERR_FORMAT;
    }
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) == 0) {
        sac_error("%s: expected a non-empty JSON array of {\"image_id\", \"caption\"}, found %s",
                  path, cJSON_IsArray(root) ? "an empty array" : "another JSON value");
        cJSON_Delete(root);
        return SAC_ERR_FORMAT;
    }
    const int n = cJSON_GetArraySize(root);
    IdIndex *ids = sac_malloc(sizeof(IdIndex) * (ds->n_items ? ds->n_items : 1));
    int *seen = sac_calloc(ds->n_items ? ds->n_items : 1, sizeof(int)); /* result index + 1 */
    mt->item = sac_malloc(sizeof(int) * n);
    mt->caption = sac_calloc(n, sizeof(char *));
    int rc = ids && seen && mt->item && mt->caption ? SAC_OK : SAC_ERR_NOMEM;
    int n_ids = 0;
    for (int i = 0; !rc && i < ds->n_items; i++)
        if (ds->items[i].image_id >= 0) ids[n_ids++] = (IdIndex){ds->items[i].image_id, i};
    if (!rc) qsort(ids, n_ids, sizeof(IdIndex), cmp_id);
    char unknown[512] = "";
    int n_unknown = 0, k = 0;
    for (cJSON *o = root->child; o && !rc; o = o->next, k++) {
        cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "image_id");
        cJSON *jcap = cJSON_GetObjectItemCaseSensitive(o, "caption");
        char idtext[64];
        int item = -1;
        if (!cJSON_IsObject(o) || !jid || !cJSON_IsString(jcap)) {
            sac_error("%s: [%d]: expected an object with \"image_id\" and a string \"caption\"",
                      path, k);
            rc = SAC_ERR_FORMAT;
            break;
        }
        if (cJSON_IsNumber(jid)) {
            double v = jid->valuedouble;
            if (v != floor(v) || fabs(v) > 9007199254740992.0) { /* also NaN */
                sac_error("%s: [%d].image_id: %g is not an integer", path, k, v);
                rc = SAC_ERR_FORMAT;
                break;
            }
            IdIndex key = {(int64_t)v, 0}, *hit = bsearch(&key, ids, n_ids, sizeof(IdIndex), cmp_id);
            item = hit ? hit->item : -1;
            snprintf(idtext, sizeof(idtext), "%lld", (long long)key.id);
        } else if (cJSON_IsString(jid)) {
            item = dataset_find(ds, jid->valuestring);
            snprintf(idtext, sizeof(idtext), "\"%.60s\"", jid->valuestring);
        } else {
            sac_error("%s: [%d].image_id: expected an integer or a file name string", path, k);
            rc = SAC_ERR_FORMAT;
            break;
        }
        if (item < 0) {
            note_unknown(unknown, sizeof(unknown), &n_unknown, idtext);
            continue;
        }
        if (seen[item]) {
            sac_error("%s: [%d]: a second result for image %s (the first is [%d]): expected one "
                      "caption per image", path, k, idtext, seen[item] - 1);
            rc = SAC_ERR_FORMAT;
            break;
        }
        seen[item] = k + 1;
        mt->item[mt->n] = item;
        if (!(mt->caption[mt->n++] = sac_caption_normalize(jcap->valuestring))) rc = SAC_ERR_NOMEM;
    }
    if (!rc && n_unknown) {
        sac_error("%s: %d result%s name%s images that are not in the references: %s%s", path,
                  n_unknown, n_unknown == 1 ? "" : "s", n_unknown == 1 ? "s" : "", unknown,
                  n_unknown > 8 ? ", ..." : "");
        rc = SAC_ERR_FORMAT;
    }
    free(ids), free(seen);
    cJSON_Delete(root);
    if (rc) coco_results_free(mt);
    return rc;
}
