/*
 * fuzz_vocab.c - the tokenizer, word counting, the vocabulary string parser and encode/decode.
 * The input is used twice: as a caption (tokenized, normalized, counted, encoded with a
 * vocabulary built from it and decoded again) and as a serialised vocabulary
 * (vocab_from_string, then a round trip through vocab_to_string). Properties: tokens are
 * non-empty without whitespace; valid text gives valid tokens; whatever vocab_from_string
 * accepts round-trips exactly.
 * Size letters: V vocabulary size, T caption steps.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sac.h"
#include "vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* the C string ends at the first NUL, as captions do */
    int valid = sac_text_problem(text, strlen(text), NULL) == NULL;

    SacTokens t = {0};
    int n = sac_tokenize(&t, text);
    for (int i = 0; i < n; i++) {
        const char *w = t.tok[i];
        if (!*w) fuzz_fail("empty token");
        for (const char *c = w; *c; c++)
            if ((unsigned char)*c <= ' ' || *c == 0x7f) fuzz_fail("whitespace in a token");
        if (valid && sac_text_problem(w, strlen(w), NULL)) fuzz_fail("valid text, bad token");
    }
    sac_tokens_free(&t);
    free(sac_caption_normalize(text));

    WordCounts *wc = word_counts_create();
    if (wc && word_counts_add_caption(wc, text) >= 0) {
        Vocab *v = vocab_build(wc, 1);
        if (v) {
            enum { T = 16 };
            int ids[T];
            int m = vocab_encode(v, text, T, ids, NULL);
            if (m < 0 || m > T) fuzz_fail("encode");
            free(vocab_decode(v, ids, m));
        }
        vocab_free(v);
    } else if (wc && valid) {
        fuzz_fail("valid text refused by word counting");
    }
    word_counts_free(wc);

    Vocab *v = vocab_from_string(text, "fuzz");
    if (v) {
        char *s = vocab_to_string(v);
        Vocab *back = s ? vocab_from_string(s, "fuzz round trip") : NULL;
        if (s && !back) fuzz_fail("vocabulary string round trip");
        for (int id = 0; back && id < vocab_size(v); id++)
            if (strcmp(vocab_word(v, id), vocab_word(back, id)) != 0) fuzz_fail("word changed");
        vocab_free(back), free(s);
    }
    vocab_free(v);
    free(text);
    return 0;
}
