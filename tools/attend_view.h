/*
 * attend_view.h - one photo captioned with its attention, for `saccade attend` and
 * `saccade report`, through libsaccade (saccade.h, with details): the caption, the attention
 * of each word, and each word's log-probability (the caption fed back through the decoder, so
 * they sum to the caption's log-probability), and the per-word numbers as JSON.
 *
 * Size letters: T caption words (n), P grid positions (grid_h x grid_w).
 */
#ifndef SACCADE_ATTEND_VIEW_H
#define SACCADE_ATTEND_VIEW_H

#include <cJSON.h>

#include "saccade.h"

typedef struct AttendView {
    saccade_result *res;  /* the caption (owned) */
    int n;                /* words */
    int ended;            /* 1 when the model ended the caption */
    double logprob;       /* of the caption */
    int grid_h, grid_w;   /* the attention grid */
    const char *text;     /* the words joined by spaces (in res) */
    const char **words;   /* (n) in res */
    float *word_logprob;  /* (n + 1): log p(word t | words < t, photo); [n] is the end's (0 when not ended) */
    float *alphas;        /* (n, P) each word's attention map, rows of grid_w */
} AttendView;

/* Caption photo with opt (details and nbest 1 are set here) and fill v (zeroed first; free
 * with attend_view_clear). SACCADE_OK, or a status with the reason in
 * saccade_captioner_error(c) (also logged). */
int attend_view_run(saccade_captioner *c, const saccade_image *photo, const saccade_options *opt, AttendView *v);
void attend_view_clear(AttendView *v);

/* {"image", "caption", "logprob", "ended", "grid": [Hg, Wg], "words": [{"word", "logprob",
 * "attention": [[Hg rows of Wg weights]]}...], "end_logprob"} (caller frees with cJSON_Delete).
 * Text is made valid UTF-8 (sac_utf8_escape). NULL when out of memory. */
cJSON *attend_view_json(const char *image, const AttendView *v);

#endif
