/*
 * vocab.h - caption tokenizer and the word <-> id vocabulary.
 *
 * Size letters (project legend): V vocabulary size, T caption steps.
 *
 * Tokenizer (sac_tokenize): an approximation in C of what coco-caption feeds its metrics,
 * i.e. Stanford CoreNLP's PTBTokenizer (-lowerCase) followed by pycocoevalcap's removal of the
 * punctuation tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
 * (tylin/coco-caption, pycocoevalcap/tokenizer/ptbtokenizer.py). The rule, in order:
 *   1. ASCII letters are lowercased; bytes >= 0x80 (UTF-8) are kept as they are, except that
 *      the typographic quotes U+2018/U+2019 become ' and U+201C/U+201D become ", and the
 *      dashes U+2013/U+2014 separate words.
 *   2. Whitespace separates words; so do the other ASCII control characters (U+0001..U+001F,
 *      U+007F), which valid captions do not hold (sac_text_problem).
 *   3. These characters separate words and are dropped:  ! ? ; " ( ) [ ] { } `
 *      ',' and ':' too, except between two digits ("1,000", "3:30" stay one token);
 *      '.' too, except between two letters/digits ("3.5", "statefarm.com", "d.c" stay);
 *      a run of two or more '-' too ("up--down" -> "up down").
 *   4. '#', '$' and '%' become tokens of their own and are kept ("#25" -> "# 25",
 *      "50%" -> "50 %"), as are '&' unless it sits between two letters/digits ("at&t" stays).
 *      Every other character (letters, digits, / _ + = * @ ...) is part of a word.
 *   5. In each remaining piece, a trailing apostrophe and leading/trailing hyphens are
 *      removed, then the clitics n't 's 're 've 'll 'd 'm are split off as tokens of their
 *      own: "dog's" -> "dog 's", "don't" -> "do n't", "can't" -> "ca n't", "they're" ->
 *      "they 're"; a piece that already is a clitic ("'s" in "dog 's") stays one.
 *      Then leading apostrophes/hyphens of the word are removed ("'slide" -> "slide") and
 *      internal ones kept ("t-shirt", "o'clock", "4-wheeler").
 *   6. As PTB does, "cannot gonna gotta wanna gimme lemme" become "can not", "gon na",
 *      "got ta", "wan na", "gim me", "lem me".
 *   7. Pieces left empty (pure punctuation such as "-", "'", "...") are dropped.
 * Known differences from PTB + coco-caption:
 *   - PTB keeps an abbreviation's final period ("mr.", "d.c.", "s.c.u.b.a."); here it is
 *     stripped ("mr", "d.c", "s.c.u.b.a").
 *   - PTB turns brackets into -lrb- -rrb- -lsb- -rsb- (with -lowerCase the lowercase forms
 *     escape coco-caption's filter, which lists only the uppercase ones); here all brackets
 *     are dropped.
 *   - PTB splits a plural possessive "dogs'" into "dogs '" and coco drops "'": same result.
 *     Quoted words "'devil'" become "devil" here; PTB gives "` devil '" -> "devil": same.
 *   - Other PTB special cases (emoticons, URLs, "o'" names, "'tis", numbers with
 *     fractions like "1\/2", "+" and "=" split as symbols) are not reproduced.
 *   - Non-ASCII letters are not lowercased.
 *
 * Vocabulary: ids 0..3 are <pad> <start> <end> <unk>; ordinary words follow, sorted by
 * descending training count, ties alphabetically (strcmp), so a build is deterministic.
 * Serialised form (for a model file's metadata): the words in id order, each followed by
 * '\n'.
 */
#ifndef SACCADE_VOCAB_H
#define SACCADE_VOCAB_H

#include <stddef.h>

enum {
    SAC_VOCAB_PAD = 0,
    SAC_VOCAB_START = 1,
    SAC_VOCAB_END = 2,
    SAC_VOCAB_UNK = 3,
    SAC_VOCAB_NSPECIAL = 4
};

/* ---- text validity ---- */

/* Why s[0..len) cannot be caption text or a vocabulary word, or NULL when it is fine: it must
 * be valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF) without control
 * characters (U+0000..U+001F, U+007F..U+009F) except tab, line feed and carriage return, which
 * captions may hold as whitespace. When a reason is returned, *at (if not NULL) is the byte
 * offset of the offending sequence. Words and captions that pass can go into a model file's
 * JSON header unchanged. */
const char *sac_text_problem(const char *s, size_t len, size_t *at);

/* ---- tokenizer ---- */

/* A token list. Zero-initialise (`SacTokens t = {0};`), pass to sac_tokenize as often as
 * needed (its buffers are reused, so tokenizing many captions allocates rarely), then
 * release with sac_tokens_free. tok[i] are NUL-terminated and point into the list's own
 * buffer: they stay valid until the next sac_tokenize on the same list or sac_tokens_free. */
typedef struct SacTokens {
    char **tok; /* (n) */
    int n;
    int cap_tok;
    char *buf;
    size_t cap_buf;
} SacTokens;

/* Tokenize `text` (NULL is treated as "") by the rule above into `t`, replacing what it held.
 * Returns the number of tokens (>= 0) or SAC_ERR_NOMEM. */
int sac_tokenize(SacTokens *t, const char *text);
/* Release the list's buffers and reset it to empty; NULL is a no-op. */
void sac_tokens_free(SacTokens *t);
/* The tokens joined by single spaces ("" for none). The caller frees the result with free();
 * NULL on allocation failure. */
char *sac_tokens_join(const SacTokens *t);
/* sac_tokenize + sac_tokens_join: the canonical form of a caption used for metrics
 * ("A dog's ball." -> "a dog 's ball"). The caller frees the result with free(). */
char *sac_caption_normalize(const char *text);

/* ---- word counts (the input of vocab_build) ---- */

typedef struct WordCounts WordCounts;

/* An empty counter, or NULL (logged) when out of memory. Free with word_counts_free. */
WordCounts *word_counts_create(void);
void word_counts_free(WordCounts *wc);
/* Add n occurrences of one word (n >= 1, word non-empty, without whitespace, valid text for
 * sac_text_problem). Returns 0 or a negative SAC_ERR_* (SAC_ERR_INVALID logged). */
int word_counts_add(WordCounts *wc, const char *word, int n);
/* Tokenize a caption and count each token once. Returns the number of tokens or SAC_ERR_*. */
int word_counts_add_caption(WordCounts *wc, const char *caption);
/* Number of distinct words counted. */
int word_counts_size(const WordCounts *wc);
/* Count of `word`, 0 when never seen. */
int word_counts_get(const WordCounts *wc, const char *word);

/* ---- vocabulary ---- */

typedef struct Vocab Vocab;

/* Build a vocabulary from the specials plus every counted word seen at least `min_count`
 * times (values below 1 act as 1), ordered by descending count then strcmp. Words spelled
 * like a special ("<unk>") are not added twice. Returns NULL (logged) when out of memory.
 * The caller owns the result; free with vocab_free. */
Vocab *vocab_build(const WordCounts *wc, int min_count);
/* NULL is a no-op. */
void vocab_free(Vocab *v);
/* V, including the 4 specials. */
int vocab_size(const Vocab *v);
/* Id of `word`, or SAC_VOCAB_UNK when it is not in the vocabulary (or is NULL). */
int vocab_id(const Vocab *v, const char *word);
/* Word of `id`, or NULL when id is outside 0..V-1. Owned by the vocabulary. */
const char *vocab_word(const Vocab *v, int id);

/* Tokenize `caption` and write at most max_len ids (no <start>/<end>: the caller adds them)
 * to ids_out (max_len); words not in the vocabulary become SAC_VOCAB_UNK. *truncated (when
 * not NULL) is set to 1 when the caption had more than max_len tokens, else 0.
 * Returns the number of ids written, or SAC_ERR_INVALID (max_len < 0) / SAC_ERR_NOMEM. */
int vocab_encode(const Vocab *v, const char *caption, int max_len, int *ids_out, int *truncated);
/* Words of ids[0..n) joined by single spaces, stopping at the first SAC_VOCAB_END and
 * skipping the other specials (<pad> <start> <unk>). Returns NULL (logged) when an id is
 * outside 0..V-1 or on allocation failure. The caller frees the result with free(). */
char *vocab_decode(const Vocab *v, const int *ids, int n);

/* Serialise: the V words in id order, each followed by '\n'. The caller frees with free(). */
char *vocab_to_string(const Vocab *v);
/* Parse a string written by vocab_to_string (a final '\n' is optional, "\r\n" is accepted).
 * Validates: lines 1..4 are exactly <pad> <start> <end> <unk>; no empty word; no space, tab or
 * other control character inside a word; every word valid UTF-8; no word twice. `source` names the origin in error
 * messages ("model.safetensors: vocabulary line 7: ..."); NULL means "vocabulary".
 * Returns NULL (logged) on any violation. The caller frees with vocab_free. */
Vocab *vocab_from_string(const char *s, const char *source);

#endif
