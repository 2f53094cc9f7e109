/*
 * test_vocab.c - the caption tokenizer (case, punctuation, clitics, hyphens, numbers,
 * whitespace, empty input), word counting, vocabulary build order and min_count,
 * encode/decode with <unk> and truncation, and the metadata string round trip with the
 * rejection of malformed vocabulary strings (messages naming the source and line).
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "sac.h"
#include "vocab.h"

/* ---- log capture ---- */

static char log_text[8192];
static int log_errors;

static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    if (level == SAC_LOG_ERROR) log_errors++;
    size_t l = strlen(log_text);
    snprintf(log_text + l, sizeof(log_text) - l, "%s\n", msg);
}

static void log_capture(void)
{
    log_text[0] = '\0';
    log_errors = 0;
    sac_log_set_sink(log_sink, NULL);
}

/* Tokenize and join: the canonical form, compared as a whole string. */
static void expect_norm(const char *in, const char *want)
{
    char *got = sac_caption_normalize(in);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strcmp(got, want) == 0, "normalize(\"%s\") = \"%s\", expected \"%s\"", in, got,
                  want);
    free(got);
}

START_TEST(test_tokenize_case_punct_space)
{
    expect_norm("A Dog RUNS.", "a dog runs");
    expect_norm("  two   dogs\t\tplay\n in  the snow .  ", "two dogs play in the snow");
    expect_norm("Wow!! Is it? yes; no: maybe, \"quoted\" (paren) [sq] {cu} `tick`",
                "wow is it yes no maybe quoted paren sq cu tick");
    expect_norm("wait ... what", "wait what");
    expect_norm(" . , ; - -- ' ... ", "");
    expect_norm("", "");
    expect_norm(NULL, "");
    /* typographic quotes and dashes */
    expect_norm("Dog\xE2\x80\x99s \xE2\x80\x9C" "ball\xE2\x80\x9D x\xE2\x80\x94y",
                "dog 's ball x y");
    /* non-ASCII bytes pass through */
    expect_norm("Caf\xC3\xA9 open", "caf\xC3\xA9 open");
}
END_TEST

START_TEST(test_tokenize_clitics)
{
    expect_norm("The dog's ball", "the dog 's ball");
    expect_norm("I don't know", "i do n't know");
    expect_norm("It can't. Won't!", "it ca n't wo n't");
    expect_norm("They're here, we've gone, you'll see, he'd go, I'm in",
                "they 're here we 've gone you 'll see he 'd go i 'm in");
    /* already split as in Flickr8k, upper case clitic */
    expect_norm("a man 's hat , DOG 'S", "a man 's hat dog 's");
    expect_norm("n't", "n't");
    /* plural possessive and quoted words lose the apostrophes */
    expect_norm("the dogs' park", "the dogs park");
    expect_norm("a ' devil ' outfit", "a devil outfit");
    expect_norm("an 'old' car", "an old car");
    /* an internal apostrophe that is no clitic stays */
    expect_norm("five o'clock", "five o'clock");
    /* PTB's split assimilations */
    expect_norm("I cannot, gonna", "i can not gon na");
}
END_TEST

START_TEST(test_tokenize_hyphens_numbers_symbols)
{
    expect_norm("a T-shirt and a 4-wheeler", "a t-shirt and a 4-wheeler");
    expect_norm("up--down - left -right- x", "up down left right x");
    expect_norm("1,000 people at 3:30, 3.5 miles", "1,000 people at 3:30 3.5 miles");
    expect_norm("Washington D.C. and statefarm.com", "washington d.c and statefarm.com");
    expect_norm("#25 costs $5, 50% off", "# 25 costs $ 5 50 % off");
    expect_norm("AT&T black & white", "at&t black & white");
    expect_norm("and/or x_y", "and/or x_y");
}
END_TEST

START_TEST(test_tokenize_list_reuse)
{
    SacTokens t = {0};
    ck_assert_int_eq(sac_tokenize(&t, "One TWO three's"), 4);
    ck_assert_str_eq(t.tok[0], "one");
    ck_assert_str_eq(t.tok[1], "two");
    ck_assert_str_eq(t.tok[2], "three");
    ck_assert_str_eq(t.tok[3], "'s");
    char *j = sac_tokens_join(&t);
    ck_assert_str_eq(j, "one two three 's");
    free(j);
    /* a longer text then a shorter one in the same list */
    char long_text[3000];
    for (int i = 0; i < 1000; i++) memcpy(long_text + 3 * i, "ab ", 3);
    long_text[2999] = '\0';
    ck_assert_int_eq(sac_tokenize(&t, long_text), 1000);
    ck_assert_str_eq(t.tok[999], "ab");
    ck_assert_int_eq(sac_tokenize(&t, "x"), 1);
    ck_assert_str_eq(t.tok[0], "x");
    ck_assert_int_eq(sac_tokenize(&t, "  "), 0);
    j = sac_tokens_join(&t);
    ck_assert_str_eq(j, "");
    free(j);
    sac_tokens_free(&t);
    ck_assert_ptr_null(t.buf);
    ck_assert_int_eq(t.n, 0);
    sac_tokens_free(NULL);
}
END_TEST

static Vocab *build_from(const char *const *captions, int n, int min_count)
{
    WordCounts *wc = word_counts_create();
    ck_assert_ptr_nonnull(wc);
    for (int i = 0; i < n; i++) ck_assert_int_ge(word_counts_add_caption(wc, captions[i]), 0);
    Vocab *v = vocab_build(wc, min_count);
    word_counts_free(wc);
    ck_assert_ptr_nonnull(v);
    return v;
}

START_TEST(test_vocab_build_order_min_count)
{
    /* counts: a 4, dog 3, the 3, cat 2, runs 1, sits 1 */
    const char *caps[] = {"A dog runs.", "The dog, a cat.", "THE dog", "a cat sits", "the a"};
    Vocab *v = build_from(caps, 5, 2);
    ck_assert_int_eq(vocab_size(v), 4 + 4);
    const char *want[] = {"<pad>", "<start>", "<end>", "<unk>", "a", "dog", "the", "cat"};
    for (int i = 0; i < 8; i++) ck_assert_str_eq(vocab_word(v, i), want[i]);
    ck_assert_int_eq(vocab_id(v, "dog"), 5);
    ck_assert_int_eq(vocab_id(v, "runs"), SAC_VOCAB_UNK); /* below min_count */
    ck_assert_int_eq(vocab_id(v, "zebra"), SAC_VOCAB_UNK);
    ck_assert_int_eq(vocab_id(v, NULL), SAC_VOCAB_UNK);
    ck_assert_int_eq(vocab_id(v, "<end>"), SAC_VOCAB_END);
    ck_assert_ptr_null(vocab_word(v, 8));
    ck_assert_ptr_null(vocab_word(v, -1));
    vocab_free(v);

    /* min_count 1 (and 0, which acts as 1) keeps every word */
    v = build_from(caps, 5, 0);
    ck_assert_int_eq(vocab_size(v), 4 + 6);
    ck_assert_str_eq(vocab_word(v, 8), "runs"); /* ties at 1: alphabetical */
    ck_assert_str_eq(vocab_word(v, 9), "sits");
    vocab_free(v);
    vocab_free(NULL);
}
END_TEST

START_TEST(test_vocab_build_deterministic)
{
    /* the same counts inserted in two different orders give the same vocabulary */
    WordCounts *a = word_counts_create(), *b = word_counts_create();
    const char *w[] = {"kiwi", "apple", "fig", "date", "plum", "pear", "lime"};
    const int c[] = {2, 5, 2, 9, 2, 5, 1};
    for (int i = 0; i < 7; i++) ck_assert_int_eq(word_counts_add(a, w[i], c[i]), 0);
    for (int i = 6; i >= 0; i--)
        for (int k = 0; k < c[i]; k++) ck_assert_int_eq(word_counts_add(b, w[i], 1), 0);
    ck_assert_int_eq(word_counts_size(a), 7);
    ck_assert_int_eq(word_counts_get(b, "date"), 9);
    ck_assert_int_eq(word_counts_get(b, "nope"), 0);
    /* a counted special is not added twice; a bad word is refused */
    ck_assert_int_eq(word_counts_add(a, "<unk>", 50), 0);
    log_capture();
    ck_assert_int_eq(word_counts_add(a, "two words", 1), SAC_ERR_INVALID);
    ck_assert_int_eq(word_counts_add(a, "", 1), SAC_ERR_INVALID);
    ck_assert_int_eq(word_counts_add(a, "x", 0), SAC_ERR_INVALID);
    sac_log_set_sink(NULL, NULL);
    Vocab *va = vocab_build(a, 2), *vb = vocab_build(b, 2);
    char *sa = vocab_to_string(va), *sb = vocab_to_string(vb);
    ck_assert_str_eq(sa, "<pad>\n<start>\n<end>\n<unk>\ndate\napple\npear\nfig\nkiwi\nplum\n");
    ck_assert_str_eq(sa, sb);
    free(sa), free(sb);
    vocab_free(va), vocab_free(vb);
    word_counts_free(a), word_counts_free(b);
    word_counts_free(NULL);
}
END_TEST

START_TEST(test_vocab_encode_decode)
{
    const char *caps[] = {"the dog 's toy", "the dog"};
    Vocab *v = build_from(caps, 2, 1); /* dog the (2 each), 's toy (1 each) -> 4..7 */
    ck_assert_int_eq(vocab_id(v, "dog"), 4);
    ck_assert_int_eq(vocab_id(v, "the"), 5);
    ck_assert_int_eq(vocab_id(v, "'s"), 6);
    ck_assert_int_eq(vocab_id(v, "toy"), 7);
    int ids[8], trunc = -1;
    ck_assert_int_eq(vocab_encode(v, "The dog's BALL!", 8, ids, &trunc), 4);
    ck_assert_int_eq(trunc, 0);
    const int want[] = {5, 4, 6, SAC_VOCAB_UNK};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(ids[i], want[i]);
    /* exactly max_len tokens is not a truncation; one more is */
    ck_assert_int_eq(vocab_encode(v, "the dog 's ball", 4, ids, &trunc), 4);
    ck_assert_int_eq(trunc, 0);
    ids[2] = -7;
    ck_assert_int_eq(vocab_encode(v, "the dog 's ball", 2, ids, &trunc), 2);
    ck_assert_int_eq(trunc, 1);
    ck_assert_int_eq(ids[0], 5);
    ck_assert_int_eq(ids[1], 4);
    ck_assert_int_eq(ids[2], -7); /* nothing written past max_len */
    ck_assert_int_eq(vocab_encode(v, "", 4, ids, &trunc), 0);
    ck_assert_int_eq(trunc, 0);
    ck_assert_int_eq(vocab_encode(v, "dog", 0, ids, &trunc), 0);
    ck_assert_int_eq(trunc, 1);
    ck_assert_int_eq(vocab_encode(v, "dog", 4, ids, NULL), 1);
    log_capture();
    ck_assert_int_eq(vocab_encode(v, "dog", -1, ids, NULL), SAC_ERR_INVALID);
    sac_log_set_sink(NULL, NULL);

    /* decode: skips <pad> <start> <unk>, stops at <end> */
    const int seq[] = {SAC_VOCAB_START, 5, 4, SAC_VOCAB_UNK, 6, 7, SAC_VOCAB_END, 5, 5};
    char *s = vocab_decode(v, seq, 9);
    ck_assert_str_eq(s, "the dog 's toy");
    free(s);
    const int pad[] = {SAC_VOCAB_PAD, SAC_VOCAB_PAD};
    s = vocab_decode(v, pad, 2);
    ck_assert_str_eq(s, "");
    free(s);
    s = vocab_decode(v, seq, 0);
    ck_assert_str_eq(s, "");
    free(s);
    const int bad[] = {4, 8};
    log_capture();
    ck_assert_ptr_null(vocab_decode(v, bad, 2));
    ck_assert_int_eq(log_errors, 1);
    ck_assert_ptr_nonnull(strstr(log_text, "id 8"));
    sac_log_set_sink(NULL, NULL);
    vocab_free(v);
}
END_TEST

START_TEST(test_vocab_string_round_trip)
{
    const char *caps[] = {"A t-shirt, a dog's o'clock caf\xC3\xA9 #1", "a dog"};
    Vocab *v = build_from(caps, 2, 1);
    char *s = vocab_to_string(v);
    Vocab *w = vocab_from_string(s, "model.safetensors");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(vocab_size(w), vocab_size(v));
    for (int i = 0; i < vocab_size(v); i++) {
        ck_assert_str_eq(vocab_word(w, i), vocab_word(v, i));
        ck_assert_int_eq(vocab_id(w, vocab_word(v, i)), i);
    }
    char *s2 = vocab_to_string(w);
    ck_assert_str_eq(s, s2);
    free(s2);
    vocab_free(w);
    free(s);
    vocab_free(v);

    /* no final newline, CRLF line ends, only the specials */
    w = vocab_from_string("<pad>\r\n<start>\r\n<end>\r\n<unk>\r\nzebra", NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(vocab_size(w), 5);
    ck_assert_int_eq(vocab_id(w, "zebra"), 4);
    vocab_free(w);
    w = vocab_from_string("<pad>\n<start>\n<end>\n<unk>\n", NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(vocab_size(w), 4);
    vocab_free(w);
}
END_TEST

/* from_string(s) must fail with one error message containing every `needles` string. */
static void expect_rejected(const char *s, const char *n1, const char *n2)
{
    log_capture();
    Vocab *v = vocab_from_string(s, "m.safetensors");
    sac_log_set_sink(NULL, NULL);
    ck_assert_msg(v == NULL, "accepted bad vocabulary \"%s\"", s ? s : "(null)");
    ck_assert_int_eq(log_errors, 1);
    ck_assert_msg(strstr(log_text, "m.safetensors") != NULL, "no source in: %s", log_text);
    ck_assert_msg(!n1 || strstr(log_text, n1), "'%s' not in: %s", n1, log_text);
    ck_assert_msg(!n2 || strstr(log_text, n2), "'%s' not in: %s", n2, log_text);
}

START_TEST(test_vocab_string_rejects)
{
    expect_rejected(NULL, "found none", NULL);
    expect_rejected("", "special", "found 0");
    expect_rejected("<pad>\n<start>\n<end>\n", "special", "found 3");
    expect_rejected("<start>\n<pad>\n<end>\n<unk>\n", "line 1", "'<pad>'");
    expect_rejected("<pad>\n<start>\n<end>\nunk\ndog\n", "line 4", "'<unk>'");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\ndog\ncat\ndog\n", "line 7", "repeats line 5");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\n<unk>\n", "line 5", "repeats line 4");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\ndog\n\ncat\n", "line 6", "empty");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\ndog\n\n", "line 6", "empty");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\nhot dog\n", "line 5", "'hot dog'");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\nhot\tdog\n", "line 5", "whitespace");
    expect_rejected("<pad>\n<start>\n<end>\n<unk>\ndog \n", "line 5", "whitespace");
}
END_TEST

/* ---- hostile text (issue 11): invalid UTF-8 and control characters ---- */

START_TEST(test_text_problem)
{
    static const struct {
        const char *s;
        const char *why; /* NULL: valid */
        size_t at;
    } cases[] = {
        {"a dog", NULL, 0},
        {"caf\xc3\xa9 \xe2\x80\x9cquoted\xe2\x80\x9d \xf0\x9f\x90\x95", NULL, 0},
        {"tab\there\r\nnewline", NULL, 0},
        {"caf\xe9", "invalid UTF-8", 3},          /* Latin-1 */
        {"ab\xc0\x80", "invalid UTF-8", 2},       /* overlong NUL */
        {"x\xed\xa0\x80", "invalid UTF-8", 1},    /* surrogate */
        {"x\xf4\x90\x80\x80", "invalid UTF-8", 1}, /* above U+10FFFF */
        {"cut \xe2\x82", "invalid UTF-8", 4},     /* sequence cut short */
        {"bell\x07", "a control character", 4},
        {"\x1b[31mred", "a control character", 0}, /* ANSI escape */
        {"del\x7f", "a control character", 3},
        {"csi\xc2\x9b", "a control character", 3}, /* U+009B */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t at = 999;
        const char *why = sac_text_problem(cases[k].s, strlen(cases[k].s), &at);
        if (!cases[k].why) {
            ck_assert_msg(why == NULL, "case %zu: '%s' at %zu, expected valid", k, why, at);
        } else {
            ck_assert_msg(why && strcmp(why, cases[k].why) == 0, "case %zu: got %s, expected %s",
                          k, why ? why : "valid", cases[k].why);
            ck_assert_uint_eq(at, cases[k].at);
        }
    }
}
END_TEST

/* No word that would make a model file's JSON header invalid gets into a vocabulary. */
START_TEST(test_vocab_words_always_valid)
{
    log_capture();
    WordCounts *wc = word_counts_create();
    /* a control character separates words (it used to make a word word_counts_add refused,
     * which aborted training with no file or line named) */
    ck_assert_int_eq(word_counts_add_caption(wc, "a\x01" "dog\x1b[0m runs"), 4);
    ck_assert_int_eq(word_counts_get(wc, "dog"), 1);
    ck_assert_int_eq(word_counts_get(wc, "0m"), 1); /* "[" separates words too */
    /* a word that is not UTF-8 is refused (it used to go into the vocabulary) */
    ck_assert_int_eq(word_counts_add(wc, "caf\xe9", 1), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(log_text, "invalid UTF-8 at byte 3"));
    ck_assert_int_eq(word_counts_add_caption(wc, "un caf\xe9"), SAC_ERR_INVALID);
    /* random bytes: whatever is accepted is valid text */
    uint64_t x = 88172645463325252ull;
    char cap[24];
    int accepted = 0;
    for (int k = 0; k < 4000; k++) {
        for (int i = 0; i < 23; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned b = (unsigned)(x >> 24) & 255;
            cap[i] = (char)(b == 0 ? 'a' : k % 2 ? b : (b & 0x7f ? b & 0x7f : 'z')); /* odd: any */
        }
        cap[23] = 0;
        accepted += word_counts_add_caption(wc, cap) >= 0;
    }
    ck_assert_int_gt(accepted, 100);
    Vocab *v = vocab_build(wc, 1);
    ck_assert_ptr_nonnull(v);
    for (int id = 0; id < vocab_size(v); id++) {
        const char *w = vocab_word(v, id);
        size_t at;
        ck_assert_msg(!sac_text_problem(w, strlen(w), &at), "word %d has bad text at %zu", id,
                      at);
        for (const char *c = w; *c; c++) ck_assert((unsigned char)*c > ' ' && *c != 0x7f);
    }
    char *s = vocab_to_string(v);
    Vocab *back = vocab_from_string(s, "round trip");
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(vocab_size(back), vocab_size(v));
    vocab_free(back), vocab_free(v), free(s);
    word_counts_free(wc);
    /* a vocabulary string with a non-UTF-8 word is refused, naming the line */
    log_capture();
    ck_assert_ptr_null(vocab_from_string("<pad>\n<start>\n<end>\n<unk>\ndog\ncaf\xe9\n", "m.st"));
    ck_assert_ptr_nonnull(strstr(log_text, "m.st: vocabulary line 6: expected a UTF-8 word"));
    sac_log_set_sink(NULL, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vocab");
    const TTest *tests[] = {test_tokenize_case_punct_space, test_tokenize_clitics,
        test_tokenize_hyphens_numbers_symbols, test_tokenize_list_reuse, test_vocab_build_order_min_count,
        test_vocab_build_deterministic, test_vocab_encode_decode, test_vocab_string_round_trip,
        test_vocab_string_rejects, test_text_problem, test_vocab_words_always_valid, NULL};
    check_case(s, "vocab", 0, tests);
    return check_run(s);
}
