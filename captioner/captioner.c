/*
 * captioner.c - images in, captions out. See captioner.h.
 *
 * Size letters: B images, S input side, P grid positions, E encoder channels, K beam width.
 */
#include "captioner.h"

#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "mobilenet.h"
#include "sac.h"

struct Captioner {
    const Model *m;
    int max_batch, max_beam;
    EncoderInfer *enc;   /* the from-scratch conv stack, or */
    MobileNetInfer *bb;  /* the pretrained backbone (then encoder.proj, if any) */
    float *bfeats;       /* (max_batch, P, Eb) backbone features, with a backbone */
    DecoderInfer *dec;
    float *images; /* (max_batch, 3, S, S) */
    float *feats;  /* (max_batch, P, E) */
    int half;      /* the decoder's step weights are fp16 */
};

void captioner_free(Captioner *c)
{
    if (!c) return;
    encoder_infer_free(c->enc);
    mobilenet_infer_free(c->bb);
    decoder_infer_free(c->dec);
    free(c->images), free(c->feats), free(c->bfeats);
    free(c);
}

Captioner *captioner_create(const Model *m, int max_batch, int max_beam)
{
    if (max_batch < 1 || max_beam < 1) {
        sac_error("captioner: batch %d / beam %d, expected >= 1", max_batch, max_beam);
        return NULL;
    }
    Captioner *c = sac_calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->m = m, c->max_batch = max_batch, c->max_beam = max_beam, c->half = 1;
    const int S = m->cfg.enc.image_size;
    DecoderSizes sz = model_decoder_sizes(m);
    if (m->cfg.bb.kind != SAC_BACKBONE_NONE) {
        MobileNetConfig mc;
        model_mobilenet_config(&m->cfg, &mc);
        c->bb = mobilenet_infer_create(&mc, (const float *const *)m->p.backbone, max_batch);
        c->bfeats = sac_alloc_floats((size_t)max_batch * m->P * m->cfg.bb.channels);
        if (!c->bb || !c->bfeats) {
            captioner_free(c);
            return NULL;
        }
    } else {
        c->enc = encoder_infer_create(&m->cfg.enc, &m->p.enc, max_batch);
        if (!c->enc) {
            captioner_free(c);
            return NULL;
        }
    }
    const int rows = max_batch * max_beam; /* every image's beams decode together */
    c->dec = decoder_infer_create(&sz, rows, max_batch);
    c->images = sac_alloc_floats((size_t)max_batch * 3 * S * S);
    c->feats = sac_alloc_floats((size_t)max_batch * m->P * m->cfg.E);
    if (!c->dec || !c->images || !c->feats || decoder_infer_prepare(c->dec, &m->p.dec, 1)) {
        captioner_free(c);
        return NULL;
    }
    return c;
}

int captioner_refresh(Captioner *c)
{
    if (c->enc) encoder_infer_update(c->enc, &c->m->p.enc); /* a backbone is frozen: nothing to refold */
    return decoder_infer_prepare(c->dec, &c->m->p.dec, c->half);
}

DecoderInfer *captioner_decoder(Captioner *c) { return c->dec; }

/* feats (B, P, E) = encoder.proj(bfeats (B, P, Eb)), or a copy without a projection. */
static void project(const Model *m, float *feats, const float *bfeats, int B)
{
    const int N = B * m->P, Eb = m->cfg.bb.channels, E = m->cfg.E;
    if (m->cfg.bb.proj)
        linear_forward(feats, bfeats, m->p.proj_w, m->p.proj_b, N, Eb, E);
    else if (feats != bfeats)
        memcpy(feats, bfeats, sizeof(float) * N * E);
}

int captioner_encode(Captioner *c, const float *images, int B, float *feats)
{
    if (!c->bb) return encoder_infer_forward(c->enc, feats, images, B);
    if (B < 1 || B > c->max_batch) {
        sac_error("captioner: %d images, expected 1..%d", B, c->max_batch);
        return SAC_ERR_INVALID;
    }
    int st = mobilenet_infer_forward(c->bb, c->bfeats, images, B);
    if (!st) project(c->m, feats, c->bfeats, B);
    return st;
}

int captioner_backbone_features(Captioner *c, const float *images, int B, float *bfeats)
{
    if (!c->bb) {
        sac_error("captioner: the model has no pretrained backbone");
        return SAC_ERR_INVALID;
    }
    return mobilenet_infer_forward(c->bb, bfeats, images, B);
}

static int decode(Captioner *c, int B, const SearchOptions *opt, Caption *out, int *counts);

int captioner_run_preprocessed(Captioner *c, const float *images, int B, const SearchOptions *opt,
                               Caption *out, int *counts)
{
    if (B < 1 || B > c->max_batch || opt->beam > c->max_beam) {
        sac_error("captioner: %d images / beam %d, expected 1..%d / 1..%d", B, opt->beam, c->max_batch, c->max_beam);
        return SAC_ERR_INVALID;
    }
    int st = captioner_encode(c, images, B, c->feats);
    return st ? st : decode(c, B, opt, out, counts);
}

int captioner_run_features(Captioner *c, const float *bfeats, int B, const SearchOptions *opt, Caption *out,
                           int *counts)
{
    if (B < 1 || B > c->max_batch || opt->beam > c->max_beam || !c->bb) {
        sac_error("captioner: %d images / beam %d, expected 1..%d / 1..%d, and a model with a backbone", B, opt->beam,
                  c->max_batch, c->max_beam);
        return SAC_ERR_INVALID;
    }
    project(c->m, c->feats, bfeats, B);
    return decode(c, B, opt, out, counts);
}

/* Greedy or beam search on the B feature grids in c->feats. */
static int decode(Captioner *c, int B, const SearchOptions *opt, Caption *out, int *counts)
{
    const Model *m = c->m;
    int st = SAC_OK;
    if (c->half != !opt->f32) { /* the precision asked for changed: repack */
        c->half = !opt->f32;
        st = decoder_infer_prepare(c->dec, &m->p.dec, c->half);
    }
    if (st) return st;
    const int nb = opt->nbest;
    memset(out, 0, sizeof(Caption) * B * nb);
    if (opt->beam == 1) {
        Caption *tmp = nb == 1 ? out : sac_calloc(B, sizeof(Caption));
        if (!tmp) return SAC_ERR_NOMEM;
        st = greedy_decode(tmp, c->dec, c->feats, B, &m->p.dec, opt);
        if (nb != 1) {
            for (int b = 0; b < B; b++) out[b * nb] = tmp[b];
            free(tmp);
        }
        if (counts)
            for (int b = 0; b < B; b++) counts[b] = st ? 0 : 1;
        return st;
    }
    return beam_search_batch(out, counts, c->dec, c->feats, B, &m->p.dec, opt);
}

int captioner_run(Captioner *c, const SacImage *imgs, int B, const SearchOptions *opt, Caption *out, int *counts)
{
    const ModelConfig *cfg = &c->m->cfg;
    const int S = cfg->enc.image_size;
    if (B < 1 || B > c->max_batch) {
        sac_error("captioner: %d images, expected 1..%d", B, c->max_batch);
        return SAC_ERR_INVALID;
    }
    for (int b = 0; b < B; b++) {
        int st = sac_image_preprocess(&imgs[b], S, cfg->mean, cfg->std, c->images + (size_t)b * 3 * S * S);
        if (st) return st;
    }
    return captioner_run_preprocessed(c, c->images, B, opt, out, counts);
}

char *captioner_text(const Model *m, const Caption *cap)
{
    size_t len = 1;
    for (int i = 0; i < cap->n; i++) len += strlen(vocab_word(m->vocab, cap->tokens[i])) + 1;
    char *s = sac_malloc(len);
    if (!s) return NULL;
    char *p = s;
    for (int i = 0; i < cap->n; i++) {
        const char *w = vocab_word(m->vocab, cap->tokens[i]);
        size_t n = strlen(w);
        if (i) *p++ = ' ';
        memcpy(p, w, n);
        p += n;
    }
    *p = 0;
    return s;
}
