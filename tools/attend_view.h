/*
 * attend_view.h - one photo captioned with its attention, for `saccade attend` and
 * `saccade report`: the caption, the attention of each word, and each word's log-probability
 * (the caption teacher-forced through the same step decoder, so they sum to the caption's
 * log-probability), and the per-word numbers as JSON.
 *
 * Size letters: T caption words (n), P grid positions.
 */
#ifndef SACCADE_ATTEND_VIEW_H
#define SACCADE_ATTEND_VIEW_H

#include <cJSON.h>

#include "captioner.h"

typedef struct AttendView {
    Caption cap;         /* words, alphas (n, P), logprob */
    float *word_logprob; /* (n + 1): log p(word t | words < t, photo); [n] is <end>'s (0 when not ended) */
    char *text;          /* the words joined by spaces */
    const char **words;  /* (n) borrowed from the model's vocabulary */
} AttendView;

/* Caption photo with opt (want_alphas is set here) and fill v (zeroed first; free with
 * attend_view_clear). cp must be a captioner of m for 1 image. SAC_OK or a status (logged). */
int attend_view_run(Captioner *cp, const Model *m, const SacImage *photo, const SearchOptions *opt,
                    AttendView *v);
void attend_view_clear(AttendView *v);

/* {"image", "caption", "logprob", "ended", "grid": [Hg, Wg], "words": [{"word", "logprob",
 * "attention": [[Hg rows of Wg weights]]}...], "end_logprob"} (caller frees with cJSON_Delete).
 * Text is made valid UTF-8 (sac_utf8_escape). NULL when out of memory. */
cJSON *attend_view_json(const char *image, const Model *m, const AttendView *v);

#endif
