/*
 * test_search.c - decoding on a tiny random decoder: multinomial sampling (reproducible from
 * the seed whatever the thread count, drawn from the model's softmax, log-probability as the
 * model's), the repetition guard (no word twice in a row, no bigram twice) in greedy, beam
 * and sampling, greedy == beam 1 with the guard, and n-best captions that are distinct.
 *
 * Size letters: B images, P positions, E encoder channels, A attention dim, D hidden,
 * M embedding dim, V vocabulary, T steps.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "search.h"
#include "sac.h"
#include "testutil.h"
#include "threadpool.h"
#include "vocab.h"

enum { B = 3, P = 4, E = 3, A = 5, D = 6, M = 4, V = 9, T = 8 };
static const DecoderSizes dsz = {P, E, A, D, M, V, T};
static const size_t n_params = V * M + 2 * (D * E + D) + A * E + A + A * D + A + A + 1 + E * D + E +
                               4 * D * (M + E) + 4 * D * D + 8 * D + V * D + V;

typedef struct {
    float *buf;
    DecoderParams p;
    float feats[B * P * E];
    DecoderInfer *inf;
} Net;

static void net_init(Net *n, uint64_t seed, float scale)
{
    SacRng rng;
    sac_rng_seed(&rng, seed, 1);
    n->buf = calloc(n_params, sizeof(float));
    float *c = n->buf;
    DecoderParams *p = &n->p;
#define TAKE(field, k) (p->field = c, c += (k))
    TAKE(embed, V * M), TAKE(init_h_w, D * E), TAKE(init_h_b, D), TAKE(init_c_w, D * E), TAKE(init_c_b, D);
    TAKE(att.enc_w, A * E), TAKE(att.enc_b, A), TAKE(att.dec_w, A * D), TAKE(att.dec_b, A), TAKE(att.full_w, A);
    TAKE(att.full_b, 1), TAKE(att.beta_w, E * D), TAKE(att.beta_b, E), TAKE(w_ih, 4 * D * (M + E));
    TAKE(w_hh, 4 * D * D), TAKE(b_ih, 4 * D), TAKE(b_hh, 4 * D), TAKE(fc_w, V * D), TAKE(fc_b, V);
#undef TAKE
    fill_uniform(n->buf, n_params, -scale, scale, &rng);
    fill_uniform(n->feats, B * P * E, -1, 1, &rng);
    n->inf = decoder_infer_create(&dsz, 64, B);
    ck_assert_ptr_nonnull(n->inf);
}

static void net_prepare(Net *n) { ck_assert_int_eq(decoder_infer_prepare(n->inf, &n->p, 0), SAC_OK); }

static void net_free(Net *n)
{
    decoder_infer_free(n->inf);
    free(n->buf);
}

/* Plain search (no repetition guard: the tests below turn it on where they test it). */
static SearchOptions options(int beam)
{
    SearchOptions o = search_default_options(&dsz);
    ck_assert_int_eq(o.no_repeat_bigram, 1); /* what the commands decode with by default */
    o.beam = beam;
    o.no_repeat = o.no_repeat_bigram = 0;
    return o;
}

static int same_caption(const Caption *a, const Caption *b)
{
    return a->n == b->n && a->ended == b->ended && !memcmp(a->tokens, b->tokens, sizeof(int) * a->n) &&
           a->logprob == b->logprob;
}

/* K samples of each of B images: the same seed gives the same captions with 1 and 2 threads;
 * another seed other captions; never <pad> or <start>; each logprob is the model's. */
START_TEST(test_sample_reproducible)
{
    Net n;
    net_init(&n, 21, 0.8f);
    net_prepare(&n);
    enum { K = 5, R = B * K };
    int img[R];
    for (int r = 0; r < R; r++) img[r] = r / K;
    SearchOptions o = options(1);
    Caption a[R], b[R], c[R];
    SacRng r1, r2, r3;
    sac_rng_seed(&r1, 5, 9), sac_rng_seed(&r2, 5, 9), sac_rng_seed(&r3, 6, 9);
    sac_threads_set(1);
    ck_assert_int_eq(sample_decode(a, n.inf, n.feats, B, img, R, &n.p, &o, &r1), SAC_OK);
    sac_threads_set(2);
    ck_assert_int_eq(sample_decode(b, n.inf, n.feats, B, img, R, &n.p, &o, &r2), SAC_OK);
    ck_assert_int_eq(sample_decode(c, n.inf, n.feats, B, img, R, &n.p, &o, &r3), SAC_OK);
    sac_threads_set(1);
    ck_assert(r1.state == r2.state); /* the same number of draws */
    int differ = 0, lengths_differ = 0;
    for (int r = 0; r < R; r++) {
        ck_assert(same_caption(&a[r], &b[r]));
        differ |= !same_caption(&a[r], &c[r]);
        lengths_differ |= a[r].n != a[0].n;
        for (int t = 0; t < a[r].n; t++) {
            ck_assert(a[r].tokens[t] > SAC_VOCAB_END); /* never <pad>, <start> or <end> */
            ck_assert_int_lt(a[r].tokens[t], V);
        }
        /* the logprob, recomputed by stepping the decoder along the sampled caption */
        int tok = SAC_VOCAB_START, im = img[r];
        ck_assert_int_eq(decoder_infer_start(n.inf, n.feats, B, &im, 1, &n.p), SAC_OK);
        double lp = 0.0;
        for (int t = 0; t < a[r].n + a[r].ended; t++) {
            const float *l = decoder_infer_step(n.inf, &tok, 1, &n.p, NULL);
            const int w = t < a[r].n ? a[r].tokens[t] : SAC_VOCAB_END;
            double s = 0.0;
            for (int v = 0; v < V; v++) s += exp(l[v]);
            lp += l[w] - log(s);
            tok = w;
        }
        ck_assert_double_eq_tol(a[r].logprob, lp, 1e-4);
        caption_clear(&a[r]), caption_clear(&b[r]), caption_clear(&c[r]);
    }
    ck_assert(differ);
    ck_assert(lengths_differ);
    net_free(&n);
}
END_TEST

/* One step (max_len 1), many samples of one image: the frequency of each first word matches
 * the model's softmax without <pad> and <start> (renormalised): <unk> is drawn at its own
 * probability, as self-critical training's gradient assumes. */
START_TEST(test_sample_distribution)
{
    Net n;
    net_init(&n, 22, 0.8f);
    n.p.fc_b[SAC_VOCAB_END] = -1.0f; /* spread the mass over the words */
    net_prepare(&n);
    enum { R = 60, ROUNDS = 200 };
    int img[R] = {0}, count[V] = {0};
    SearchOptions o = options(1);
    o.max_len = 1;
    SacRng rng;
    sac_rng_seed(&rng, 7, 7);
    Caption c[R];
    for (int k = 0; k < ROUNDS; k++) {
        ck_assert_int_eq(sample_decode(c, n.inf, n.feats, B, img, R, &n.p, &o, &rng), SAC_OK);
        for (int r = 0; r < R; r++) {
            count[c[r].n ? c[r].tokens[0] : SAC_VOCAB_END]++;
            caption_clear(&c[r]);
        }
    }
    int tok = SAC_VOCAB_START, im = 0;
    ck_assert_int_eq(decoder_infer_start(n.inf, n.feats, B, &im, 1, &n.p), SAC_OK);
    const float *l = decoder_infer_step(n.inf, &tok, 1, &n.p, NULL);
    double s = 0.0, q[V] = {0};
    for (int v = 0; v < V; v++)
        if (v != SAC_VOCAB_PAD && v != SAC_VOCAB_START) s += q[v] = exp(l[v]); /* <unk> included */
    const double N = (double)R * ROUNDS;
    for (int v = 0; v < V; v++) {
        const double expect = N * q[v] / s, sd = sqrt(expect * (1 - q[v] / s)) + 1;
        printf("word %d: drawn %d, expected %.1f\n", v, count[v], expect);
        ck_assert_double_le(fabs(count[v] - expect), 5 * sd); /* 5 standard deviations */
    }
    ck_assert_int_eq(count[SAC_VOCAB_PAD] + count[SAC_VOCAB_START], 0);
    ck_assert_int_gt(count[SAC_VOCAB_UNK], 0); /* drawn at its probability, as the gradient assumes */
    net_free(&n);
}
END_TEST

static int repeats_word(const Caption *c)
{
    for (int t = 1; t < c->n; t++)
        if (c->tokens[t] == c->tokens[t - 1]) return 1;
    return 0;
}

static int repeats_bigram(const Caption *c)
{
    for (int i = 0; i + 1 < c->n; i++)
        for (int j = i + 1; j + 1 < c->n; j++)
            if (c->tokens[i] == c->tokens[j] && c->tokens[i + 1] == c->tokens[j + 1]) return 1;
    return 0;
}

/* A decoder that wants word 5 at every step (then 6): unguarded, greedy writes "5 5 5 ...";
 * with no_repeat no word follows itself, with no_repeat_bigram no bigram comes twice, in
 * greedy, beam and sampling; greedy == beam 1 with the guard on. */
START_TEST(test_repetition_guard)
{
    Net n;
    net_init(&n, 23, 0.3f);
    n.p.fc_b[5] = 6.0f, n.p.fc_b[6] = 5.0f, n.p.fc_b[SAC_VOCAB_END] = -4.0f;
    net_prepare(&n);
    SearchOptions o = options(1);
    Caption g[B];
    ck_assert_int_eq(greedy_decode(g, n.inf, n.feats, B, &n.p, &o), SAC_OK);
    for (int b = 0; b < B; b++) {
        ck_assert(repeats_word(&g[b]) && repeats_bigram(&g[b]));
        caption_clear(&g[b]);
    }
    for (int mode = 0; mode < 2; mode++) {
        o = options(1);
        if (mode == 0) o.no_repeat = 1;
        else o.no_repeat_bigram = 1;
        ck_assert_int_eq(greedy_decode(g, n.inf, n.feats, B, &n.p, &o), SAC_OK);
        for (int b = 0; b < B; b++) {
            ck_assert_int_gt(g[b].n, 2);
            ck_assert(mode ? !repeats_bigram(&g[b]) : !repeats_word(&g[b]));
            /* greedy == beam 1 under the guard */
            Caption one;
            ck_assert_int_eq(beam_search_run(&one, n.inf, n.feats + b * P * E, &n.p, &o), 1);
            ck_assert_int_eq(one.n, g[b].n);
            ck_assert_mem_eq(one.tokens, g[b].tokens, sizeof(int) * one.n);
            caption_clear(&one);
            /* beam 3, its 3 best: guarded too */
            SearchOptions bo = o;
            bo.beam = 3, bo.nbest = 3;
            Caption best[3];
            const int k = beam_search_run(best, n.inf, n.feats + b * P * E, &n.p, &bo);
            ck_assert_int_ge(k, 1);
            for (int i = 0; i < k; i++) {
                ck_assert(mode ? !repeats_bigram(&best[i]) : !repeats_word(&best[i]));
                caption_clear(&best[i]);
            }
            caption_clear(&g[b]);
        }
        /* sampling */
        enum { R = 16 };
        int img[R];
        for (int r = 0; r < R; r++) img[r] = r % B;
        SacRng rng;
        sac_rng_seed(&rng, 3, 3);
        Caption s[R];
        ck_assert_int_eq(sample_decode(s, n.inf, n.feats, B, img, R, &n.p, &o, &rng), SAC_OK);
        for (int r = 0; r < R; r++) {
            ck_assert(mode ? !repeats_bigram(&s[r]) : !repeats_word(&s[r]));
            caption_clear(&s[r]);
        }
    }
    net_free(&n);
}
END_TEST

/* n-best: up to N captions, best first, no two the same word sequence. */
START_TEST(test_nbest_distinct)
{
    for (int seed = 0; seed < 4; seed++) {
        Net n;
        net_init(&n, 30 + seed, 0.9f);
        net_prepare(&n);
        SearchOptions o = options(5);
        o.nbest = 5;
        o.max_len = 4;
        Caption out[B * 5];
        int counts[B];
        ck_assert_int_eq(beam_search_batch(out, counts, n.inf, n.feats, B, &n.p, &o), SAC_OK);
        for (int b = 0; b < B; b++) {
            ck_assert_int_ge(counts[b], 1);
            for (int i = 0; i < counts[b]; i++) {
                const Caption *x = &out[b * 5 + i];
                if (i) ck_assert(x->score <= out[b * 5 + i - 1].score);
                for (int j = 0; j < i; j++) {
                    const Caption *y = &out[b * 5 + j];
                    ck_assert(!(x->n == y->n && !memcmp(x->tokens, y->tokens, sizeof(int) * x->n)));
                }
            }
        }
        for (int i = 0; i < B * 5; i++) caption_clear(&out[i]);
        net_free(&n);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("search");
    const TTest *tests[] = {test_sample_reproducible, test_sample_distribution, test_repetition_guard,
        test_nbest_distinct, NULL};
    check_case(s, "search", 120, tests);
    return check_run(s);
}
