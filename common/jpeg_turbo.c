/*
 * jpeg_turbo.c - scaled JPEG decoding through libjpeg-turbo's TurboJPEG API (see jpeg_turbo.h).
 *
 * Only the power-of-two factors 1/2, 1/4 and 1/8 are used: their scaled IDCTs (4x4, 2x2, 1x1)
 * are the SIMD-accelerated ones, and the odd factors (3/8, 5/8, ...) would change the pixels
 * of photos just above the model's size for little gain. Decoding stops at libjpeg's first
 * warning (TJFLAG_STOPONWARNING): a file libjpeg finds damaged goes back to stb_image, which
 * accepts or refuses it as it always has. Default flags otherwise: accurate integer IDCT,
 * smooth ("fancy") chroma upsampling.
 *
 * Size letters: none.
 */
#include "jpeg_turbo.h"

#include <stdio.h>
#include <string.h>

#include <turbojpeg.h>

#include "sac.h"

static void set_why(char *why, size_t why_len, const char *text)
{
    if (why && why_len) snprintf(why, why_len, "%s", text);
}

/* The factor 1/denom from TurboJPEG's list, or NULL when it does not offer it. */
static const tjscalingfactor *find_factor(int denom)
{
    int n = 0;
    const tjscalingfactor *f = tjGetScalingFactors(&n);
    for (int i = 0; f && i < n; i++)
        if (f[i].num == 1 && f[i].denom == denom) return &f[i];
    return NULL;
}

int sac_jpeg_scale_denom(int w, int h, int min_side)
{
    if (min_side < 1 || w < 1 || h < 1) return 1;
    for (int d = 8; d >= 2; d /= 2) {
        const tjscalingfactor *f = find_factor(d);
        if (!f) continue;
        const tjscalingfactor sf = *f;
        if (TJSCALED(w, sf) >= min_side && TJSCALED(h, sf) >= min_side) return d;
    }
    return 1;
}

int sac_jpeg_turbo_decode(const uint8_t *buf, size_t len, int w, int h, int min_side, SacImage *out,
                          char *why, size_t why_len)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    set_why(why, why_len, "");
    int d = sac_jpeg_scale_denom(w, h, min_side);
    if (d == 1) {
        set_why(why, why_len, "no scale below 1 keeps both sides at the requested minimum");
        return SAC_ERR_UNSUPPORTED;
    }
    const tjscalingfactor sf = *find_factor(d); /* d came from the list */
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        set_why(why, why_len, "cannot create a TurboJPEG decompressor (out of memory)");
        return SAC_ERR_NOMEM;
    }
    int st = SAC_OK, tw = 0, th = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &tw, &th, &sub, &cs) != 0) {
        set_why(why, why_len, tjGetErrorStr2(tj));
        st = SAC_ERR_FORMAT;
        goto done;
    }
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        set_why(why, why_len, "a CMYK/YCCK JPEG (decoded by stb_image)");
        st = SAC_ERR_UNSUPPORTED;
        goto done;
    }
    if (tw != w || th != h) {
        char text[160];
        snprintf(text, sizeof(text), "libjpeg-turbo reads a %d x %d header where stb_image read %d x %d", tw, th,
                 w, h);
        set_why(why, why_len, text);
        st = SAC_ERR_UNSUPPORTED;
        goto done;
    }
    int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    st = sac_image_alloc(out, sw, sh, 0);
    if (st) goto done;
    if (tjDecompress2(tj, buf, (unsigned long)len, out->rgb, sw, sw * 3, sh, TJPF_RGB,
                      TJFLAG_STOPONWARNING) != 0) {
        set_why(why, why_len, tjGetErrorStr2(tj));
        sac_image_free(out);
        st = SAC_ERR_FORMAT;
    }
done:
    tjDestroy(tj);
    return st;
}
