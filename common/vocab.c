/*
 * vocab.c - the caption tokenizer (a PTB approximation, rule in vocab.h), word counting and
 * the vocabulary: an array of words in id order plus an index from word to id (strindex.h:
 * open addressing, FNV-1a, linear probing; a power-of-two table at most half full).
 *
 * Size letters (project legend): V vocabulary size, T caption steps.
 */
#include "vocab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sac.h"
#include "strindex.h"

/* ------------------------------------------------------------------------------------ */
/* text validity */

const char *sac_text_problem(const char *text, size_t n, size_t *at)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000}; /* rejects overlong forms */
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        const char *why = NULL;
        uint32_t cp = c;
        if (!len || (size_t)len > n - i) {
            why = "invalid UTF-8";
        } else {
            cp = len == 1 ? c : c & (0x7fu >> len);
            for (int k = 1; k < len && !why; k++) {
                if ((s[i + k] & 0xc0) != 0x80) why = "invalid UTF-8";
                cp = cp << 6 | (s[i + k] & 0x3f);
            }
            if (!why && (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
                why = "invalid UTF-8";
            if (!why && (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) && cp != '\t' && cp != '\n' &&
                cp != '\r')
                why = "a control character";
        }
        if (why) {
            if (at) *at = i;
            return why;
        }
        i += (size_t)len;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* tokenizer */

enum { CH_SEP, CH_SYM, CH_WORD };

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
static int is_space(unsigned char c) { return c <= ' ' || c == 0x7f; } /* and controls */

/* Class of s[i] given its neighbours (rule steps 2-4 in vocab.h). */
static int char_class(const unsigned char *s, size_t i, size_t m)
{
    unsigned char c = s[i];
    unsigned char prev = i > 0 ? s[i - 1] : 0, next = i + 1 < m ? s[i + 1] : 0;
    if (is_space(c)) return CH_SEP;
    switch (c) {
    case '!': case '?': case ';': case '"': case '(': case ')':
    case '[': case ']': case '{': case '}': case '`':
        return CH_SEP;
    case ',': case ':':
        return is_digit(prev) && is_digit(next) ? CH_WORD : CH_SEP;
    case '.':
        return is_alnum(prev) && is_alnum(next) ? CH_WORD : CH_SEP;
    case '-':
        return prev == '-' || next == '-' ? CH_SEP : CH_WORD;
    case '#': case '$': case '%':
        return CH_SYM;
    case '&':
        return is_alnum(prev) && is_alnum(next) ? CH_WORD : CH_SYM;
    default:
        return CH_WORD;
    }
}

typedef struct {
    SacTokens *t;
    char *out; /* write position in t->buf */
} Emitter;

static void emit(Emitter *e, const char *s, size_t len)
{
    memcpy(e->out, s, len);
    e->out[len] = '\0';
    e->t->tok[e->t->n++] = e->out;
    e->out += len + 1;
}

static int is_joiner(char c) { return c == '\'' || c == '-'; }

static const char *const CLITICS[] = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"};
static const size_t CLITIC_LEN[] = {3, 2, 3, 3, 3, 2, 2};
enum { N_CLITICS = sizeof(CLITICS) / sizeof(CLITICS[0]) };

/* PTB's split assimilations: word -> first part length. */
static const struct {
    const char *word;
    size_t split;
} ASSIMILATIONS[] = {{"cannot", 3}, {"gonna", 3}, {"gotta", 3},
                     {"wanna", 3},  {"gimme", 3}, {"lemme", 3}};

/* A word stem: strip joiners at both ends, then emit (splitting assimilations). */
static void emit_word(Emitter *e, const char *s, size_t len)
{
    while (len > 0 && is_joiner(s[0])) s++, len--;
    while (len > 0 && is_joiner(s[len - 1])) len--;
    if (len == 0) return;
    size_t n_assim = len == 5 || len == 6 ? sizeof(ASSIMILATIONS) / sizeof(ASSIMILATIONS[0]) : 0;
    for (size_t a = 0; a < n_assim; a++) {
        const char *w = ASSIMILATIONS[a].word;
        if (strlen(w) == len && memcmp(w, s, len) == 0) {
            size_t k = ASSIMILATIONS[a].split;
            emit(e, s, k);
            emit(e, s + k, len - k);
            return;
        }
    }
    emit(e, s, len);
}

/* A maximal run of word characters (rule step 5). */
static void emit_piece(Emitter *e, const char *s, size_t len)
{
    while (len > 0 && is_joiner(s[len - 1])) len--;
    while (len > 0 && s[0] == '-') s++, len--;
    if (len == 0) return;
    if (!memchr(s, '\'', len)) {
        emit_word(e, s, len);
        return;
    }
    for (int c = 0; c < N_CLITICS; c++) {
        size_t cl = CLITIC_LEN[c];
        if (len == cl && memcmp(s, CLITICS[c], cl) == 0) {
            emit(e, s, len);
            return;
        }
    }
    for (int c = 0; c < N_CLITICS; c++) {
        size_t cl = CLITIC_LEN[c];
        if (len > cl && memcmp(s + len - cl, CLITICS[c], cl) == 0) {
            emit_word(e, s, len - cl);
            emit(e, s + len - cl, cl);
            return;
        }
    }
    emit_word(e, s, len);
}

int sac_tokenize(SacTokens *t, const char *text)
{
    if (!text) text = "";
    size_t len = strlen(text);
    /* scratch (len + 1) then output: tokens are disjoint substrings of the scratch (or split
     * parts of one) plus a NUL each, so at most 2 * len + 1 bytes. */
    size_t need = (len + 1) + (2 * len + 1);
    if (t->cap_buf < need) {
        char *nb = realloc(t->buf, need);
        if (!nb) {
            sac_error("out of memory tokenizing a caption of %zu bytes", len);
            return SAC_ERR_NOMEM;
        }
        t->buf = nb;
        t->cap_buf = need;
    }
    if ((size_t)t->cap_tok < len + 1) {
        if (len + 1 > (size_t)INT32_MAX) {
            sac_error("caption of %zu bytes is too long to tokenize", len);
            return SAC_ERR_INVALID;
        }
        char **nt = realloc(t->tok, (len + 1) * sizeof(char *));
        if (!nt) {
            sac_error("out of memory tokenizing a caption of %zu bytes", len);
            return SAC_ERR_NOMEM;
        }
        t->tok = nt;
        t->cap_tok = (int)(len + 1);
    }
    /* step 1: lowercase ASCII, map typographic quotes and dashes */
    unsigned char *sc = (unsigned char *)t->buf;
    const unsigned char *in = (const unsigned char *)text;
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
        if (c >= 'A' && c <= 'Z') {
            sc[m++] = (unsigned char)(c - 'A' + 'a');
        } else if (c == 0xE2 && i + 2 < len && in[i + 1] == 0x80 &&
                   (in[i + 2] == 0x98 || in[i + 2] == 0x99 || in[i + 2] == 0x9C ||
                    in[i + 2] == 0x9D || in[i + 2] == 0x93 || in[i + 2] == 0x94)) {
            unsigned char k = in[i + 2];
            sc[m++] = k == 0x98 || k == 0x99 ? '\'' : k == 0x9C || k == 0x9D ? '"' : ' ';
            i += 2;
        } else {
            sc[m++] = c;
        }
    }
    sc[m] = '\0';

    Emitter e = {t, t->buf + len + 1};
    t->n = 0;
    size_t i = 0;
    while (i < m) {
        int cls = char_class(sc, i, m);
        if (cls == CH_SEP) {
            i++;
        } else if (cls == CH_SYM) {
            emit(&e, (const char *)sc + i, 1);
            i++;
        } else {
            size_t j = i + 1;
            while (j < m && char_class(sc, j, m) == CH_WORD) j++;
            emit_piece(&e, (const char *)sc + i, j - i);
            i = j;
        }
    }
    return t->n;
}

void sac_tokens_free(SacTokens *t)
{
    if (!t) return;
    free(t->tok);
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

char *sac_tokens_join(const SacTokens *t)
{
    size_t total = 1;
    for (int i = 0; i < t->n; i++) total += strlen(t->tok[i]) + 1;
    char *s = sac_malloc(total);
    if (!s) return NULL;
    char *p = s;
    for (int i = 0; i < t->n; i++) {
        if (i) *p++ = ' ';
        size_t l = strlen(t->tok[i]);
        memcpy(p, t->tok[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

char *sac_caption_normalize(const char *text)
{
    SacTokens t = {0};
    char *s = sac_tokenize(&t, text) < 0 ? NULL : sac_tokens_join(&t);
    sac_tokens_free(&t);
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* string table: words in insertion order + hash index */

typedef struct {
    char **words; /* (n) */
    int *counts;  /* (n) */
    int n, cap;
    StrIndex index; /* words -> their indices */
} StrTable;

/* The index's key: word w (ctx: the table). */
static const char *table_word(const void *ctx, int w) { return ((const StrTable *)ctx)->words[w]; }

static int table_find(const StrTable *tb, const char *word)
{
    return strindex_find(&tb->index, word, table_word, tb);
}

/* Append a word known to be absent; returns its index or a negative status. */
static int table_add(StrTable *tb, const char *word, int count)
{
    if ((size_t)(tb->n + 1) * 2 > tb->index.nslots) {
        int st = strindex_rebuild(&tb->index, tb->index.nslots ? tb->index.nslots * 2 : 64, tb->n, table_word, tb);
        if (st < 0) return st;
    }
    if (tb->n == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        char **nw = realloc(tb->words, (size_t)cap * sizeof(char *));
        if (nw) tb->words = nw;
        int *nc = nw ? realloc(tb->counts, (size_t)cap * sizeof(int)) : NULL;
        if (nc) tb->counts = nc;
        if (!nw || !nc) {
            sac_error("out of memory growing a word table to %d words", cap);
            return SAC_ERR_NOMEM;
        }
        tb->cap = cap;
    }
    char *copy = strdup(word);
    if (!copy) {
        sac_error("out of memory copying a word");
        return SAC_ERR_NOMEM;
    }
    tb->words[tb->n] = copy;
    tb->counts[tb->n] = count;
    strindex_add(&tb->index, copy, tb->n, table_word, tb);
    return tb->n++;
}

static void table_clear(StrTable *tb)
{
    for (int i = 0; i < tb->n; i++) free(tb->words[i]);
    free(tb->words);
    free(tb->counts);
    strindex_free(&tb->index);
    memset(tb, 0, sizeof(*tb));
}

/* ------------------------------------------------------------------------------------ */
/* word counts */

struct WordCounts {
    StrTable tb;
    SacTokens toks;
};

WordCounts *word_counts_create(void) { return sac_calloc(1, sizeof(WordCounts)); }

void word_counts_free(WordCounts *wc)
{
    if (!wc) return;
    table_clear(&wc->tb);
    sac_tokens_free(&wc->toks);
    free(wc);
}

static int has_space(const char *w)
{
    for (; *w; w++)
        if ((unsigned char)*w < 0x20 || *w == ' ' || *w == 0x7f) return 1;
    return 0;
}

int word_counts_add(WordCounts *wc, const char *word, int n)
{
    if (!word || !*word || has_space(word) || n < 1) {
        sac_error("word_counts_add: expected a non-empty word without whitespace and a count "
                  ">= 1, found '%s' x %d", word ? word : "(null)", n);
        return SAC_ERR_INVALID;
    }
    size_t at;
    const char *why = sac_text_problem(word, strlen(word), &at);
    if (why) {
        sac_error("word_counts_add: expected a UTF-8 word, found %s at byte %zu", why, at);
        return SAC_ERR_INVALID;
    }
    int idx = table_find(&wc->tb, word);
    if (idx >= 0) {
        int *c = &wc->tb.counts[idx];
        *c = *c > INT32_MAX - n ? INT32_MAX : *c + n; /* saturate */
        return SAC_OK;
    }
    idx = table_add(&wc->tb, word, n);
    return idx < 0 ? idx : SAC_OK;
}

int word_counts_add_caption(WordCounts *wc, const char *caption)
{
    int n = sac_tokenize(&wc->toks, caption);
    for (int i = 0; i < n; i++) {
        int st = word_counts_add(wc, wc->toks.tok[i], 1);
        if (st < 0) return st;
    }
    return n;
}

int word_counts_size(const WordCounts *wc) { return wc->tb.n; }

int word_counts_get(const WordCounts *wc, const char *word)
{
    int idx = word ? table_find(&wc->tb, word) : -1;
    return idx < 0 ? 0 : wc->tb.counts[idx];
}

/* ------------------------------------------------------------------------------------ */
/* vocabulary */

struct Vocab {
    StrTable tb; /* words in id order; counts unused (0) */
};

static const char *const SPECIALS[SAC_VOCAB_NSPECIAL] = {"<pad>", "<start>", "<end>", "<unk>"};

void vocab_free(Vocab *v)
{
    if (!v) return;
    table_clear(&v->tb);
    free(v);
}

static Vocab *vocab_with_specials(void)
{
    Vocab *v = sac_calloc(1, sizeof(Vocab));
    if (!v) return NULL;
    for (int i = 0; i < SAC_VOCAB_NSPECIAL; i++) {
        if (table_add(&v->tb, SPECIALS[i], 0) < 0) {
            vocab_free(v);
            return NULL;
        }
    }
    return v;
}

typedef struct {
    const char *word;
    int count;
} WordCount;

static int word_count_cmp(const void *a, const void *b)
{
    const WordCount *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

Vocab *vocab_build(const WordCounts *wc, int min_count)
{
    if (min_count < 1) min_count = 1;
    const StrTable *src = &wc->tb;
    WordCount *list = sac_malloc((size_t)(src->n ? src->n : 1) * sizeof(WordCount));
    Vocab *v = vocab_with_specials();
    if (!list || !v) goto fail;
    int n = 0;
    for (int i = 0; i < src->n; i++) {
        if (src->counts[i] < min_count || table_find(&v->tb, src->words[i]) >= 0) continue;
        list[n++] = (WordCount){src->words[i], src->counts[i]};
    }
    qsort(list, (size_t)n, sizeof(WordCount), word_count_cmp);
    for (int i = 0; i < n; i++)
        if (table_add(&v->tb, list[i].word, 0) < 0) goto fail;
    free(list);
    return v;
fail:
    free(list);
    vocab_free(v);
    return NULL;
}

int vocab_size(const Vocab *v) { return v->tb.n; }

int vocab_id(const Vocab *v, const char *word)
{
    int id = word ? table_find(&v->tb, word) : -1;
    return id < 0 ? SAC_VOCAB_UNK : id;
}

const char *vocab_word(const Vocab *v, int id)
{
    return id >= 0 && id < v->tb.n ? v->tb.words[id] : NULL;
}

int vocab_encode(const Vocab *v, const char *caption, int max_len, int *ids_out, int *truncated)
{
    if (max_len < 0) {
        sac_error("vocab_encode: expected max_len >= 0, found %d", max_len);
        return SAC_ERR_INVALID;
    }
    SacTokens t = {0};
    int n = sac_tokenize(&t, caption);
    if (n < 0) return n;
    int w = SAC_MIN(n, max_len);
    for (int i = 0; i < w; i++) ids_out[i] = vocab_id(v, t.tok[i]);
    if (truncated) *truncated = n > max_len;
    sac_tokens_free(&t);
    return w;
}

char *vocab_decode(const Vocab *v, const int *ids, int n)
{
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->tb.n) {
            sac_error("vocab_decode: id %d at position %d is outside the vocabulary (0..%d)",
                      ids[i], i, v->tb.n - 1);
            return NULL;
        }
        if (ids[i] == SAC_VOCAB_END) break;
        total += strlen(v->tb.words[ids[i]]) + 1;
    }
    char *s = sac_malloc(total);
    if (!s) return NULL;
    char *p = s;
    for (int i = 0; i < n && ids[i] != SAC_VOCAB_END; i++) {
        if (ids[i] < SAC_VOCAB_NSPECIAL) continue;
        const char *w = v->tb.words[ids[i]];
        size_t l = strlen(w);
        if (p != s) *p++ = ' ';
        memcpy(p, w, l);
        p += l;
    }
    *p = '\0';
    return s;
}

char *vocab_to_string(const Vocab *v)
{
    size_t total = 1;
    for (int i = 0; i < v->tb.n; i++) total += strlen(v->tb.words[i]) + 1;
    char *s = sac_malloc(total);
    if (!s) return NULL;
    char *p = s;
    for (int i = 0; i < v->tb.n; i++) {
        size_t l = strlen(v->tb.words[i]);
        memcpy(p, v->tb.words[i], l);
        p += l;
        *p++ = '\n';
    }
    *p = '\0';
    return s;
}

Vocab *vocab_from_string(const char *s, const char *source)
{
    if (!source) source = "vocabulary";
    if (!s) {
        sac_error("%s: expected a vocabulary string, found none", source);
        return NULL;
    }
    Vocab *v = sac_calloc(1, sizeof(Vocab));
    char *word = NULL;
    if (!v) return NULL;
    const char *p = s;
    int line = 0;
    while (*p) {
        line++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *next = nl ? nl + 1 : p + len;
        if (len > 0 && p[len - 1] == '\r') len--;
        free(word);
        word = strndup(p, len);
        if (!word) {
            sac_error("%s: out of memory reading the vocabulary", source);
            goto fail;
        }
        if (len == 0) {
            sac_error("%s: vocabulary line %d: expected a word, found an empty line", source, line);
            goto fail;
        }
        if (has_space(word)) {
            sac_error("%s: vocabulary line %d: expected a word without whitespace or control "
                      "characters, found '%s'", source, line, word);
            goto fail;
        }
        size_t at;
        const char *why = sac_text_problem(word, len, &at);
        if (why) {
            sac_error("%s: vocabulary line %d: expected a UTF-8 word, found %s at byte %zu",
                      source, line, why, at);
            goto fail;
        }
        if (line <= SAC_VOCAB_NSPECIAL && strcmp(word, SPECIALS[line - 1]) != 0) {
            sac_error("%s: vocabulary line %d: expected the special word '%s' (id %d), found '%s'",
                      source, line, SPECIALS[line - 1], line - 1, word);
            goto fail;
        }
        int prev = table_find(&v->tb, word);
        if (prev >= 0) {
            sac_error("%s: vocabulary line %d: word '%s' repeats line %d", source, line, word,
                      prev + 1);
            goto fail;
        }
        if (table_add(&v->tb, word, 0) < 0) goto fail;
        p = next;
    }
    if (v->tb.n < SAC_VOCAB_NSPECIAL) {
        sac_error("%s: expected at least the %d special words <pad> <start> <end> <unk>, found %d "
                  "line(s)", source, SAC_VOCAB_NSPECIAL, v->tb.n);
        goto fail;
    }
    free(word);
    return v;
fail:
    free(word);
    vocab_free(v);
    return NULL;
}
