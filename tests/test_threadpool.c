/*
 * test_threadpool.c - the thread pool (chunking, nesting, concurrent callers, resizing), the
 * products split across it (sac_gemm, sac_gemv, sac_colsum, sac_matvecs against references and
 * across thread counts), step-by-step decoding (the few-rows path against the matmul path, fp16
 * weights against fp32), and a whole training step: the same bytes twice with the same thread
 * count, close results with another.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkrun.h"
#include "matmul.h"
#include "model.h"
#include "rng.h"
#include "sac.h"
#include "safetensors.h"
#include "testutil.h"
#include "threadpool.h"
#include "trainer.h"

/* ---- the pool itself ---- */

typedef struct {
    int n;
    int *hits;        /* (n) times each item was visited */
    int *chunk_of;    /* (n) the chunk that visited it */
    int nested_ok;
} Cover;

static void cover_task(void *p, int b, int e, int chunk)
{
    Cover *c = p;
    for (int i = b; i < e; i++) {
        __atomic_fetch_add(&c->hits[i], 1, __ATOMIC_RELAXED);
        c->chunk_of[i] = chunk;
    }
}

static void check_cover(int threads, int n, int grain)
{
    sac_threads_set(threads);
    Cover c = {n, calloc(n, sizeof(int)), calloc(n, sizeof(int)), 0};
    sac_parallel_for(n, grain, cover_task, &c);
    const int k = sac_parallel_chunks(n, grain);
    ck_assert_int_ge(k, 1);
    ck_assert_int_le(k, threads);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(c.hits[i], 1);
        /* static chunks: chunk ch is [ch n / k, (ch + 1) n / k), whoever runs it */
        const long long ch = c.chunk_of[i];
        ck_assert(ch >= 0 && ch < k);
        ck_assert(i >= (long long)n * ch / k && i < (long long)n * (ch + 1) / k);
    }
    free(c.hits), free(c.chunk_of);
}

START_TEST(test_parallel_for_covers_once)
{
    const int threads[] = {1, 2, 3, 4};
    const int ns[] = {1, 2, 3, 7, 64, 1000, 4097};
    for (size_t t = 0; t < 4; t++)
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
            for (int grain = 1; grain <= 64; grain *= 8) check_cover(threads[t], ns[i], grain);
    /* the chunk count follows the pool size and the grain */
    sac_threads_set(4);
    ck_assert_int_eq(sac_threads(), 4);
    ck_assert_int_eq(sac_parallel_chunks(1000, 1), 4);
    ck_assert_int_eq(sac_parallel_chunks(1000, 400), 2);
    ck_assert_int_eq(sac_parallel_chunks(10, 100), 1);
    ck_assert_int_eq(sac_parallel_chunks(1, 1), 1);
    sac_parallel_for(0, 1, cover_task, NULL); /* nothing to do: fn never called */
}
END_TEST

typedef struct {
    int n, block;
    int *block_of; /* (n) */
    int bad;
} BlockCheck;

static void block_task(void *p, int b, int e, int block)
{
    BlockCheck *c = p;
    if (b != block * c->block || e != SAC_MIN(b + c->block, c->n)) c->bad = 1;
    for (int i = b; i < e; i++) c->block_of[i] = block;
}

START_TEST(test_parallel_blocks_fixed)
{
    for (int threads = 1; threads <= 3; threads++) {
        sac_threads_set(threads);
        BlockCheck c = {1000, 64, malloc(sizeof(int) * 1000), 0};
        sac_parallel_blocks(c.n, c.block, block_task, &c);
        ck_assert_int_eq(c.bad, 0);
        for (int i = 0; i < c.n; i++) ck_assert_int_eq(c.block_of[i], i / 64);
        free(c.block_of);
    }
}
END_TEST

typedef struct {
    int *hits;
    int inner_n;
    int outer_saw_parallel, inner_ok;
} Nest;

static void inner_task(void *p, int b, int e, int chunk)
{
    (void)chunk;
    int *hits = p;
    for (int i = b; i < e; i++) __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
}

static void outer_task(void *p, int b, int e, int chunk)
{
    (void)chunk;
    Nest *ns = p;
    if (sac_in_parallel()) __atomic_store_n(&ns->outer_saw_parallel, 1, __ATOMIC_RELAXED);
    for (int i = b; i < e; i++) sac_parallel_for(ns->inner_n, 1, inner_task, ns->hits + (size_t)i * ns->inner_n);
}

START_TEST(test_nested_loops_run_serially)
{
    sac_threads_set(3);
    ck_assert_int_eq(sac_in_parallel(), 0);
    Nest ns = {calloc(6 * 50, sizeof(int)), 50, 0, 0};
    sac_parallel_for(6, 1, outer_task, &ns);
    ck_assert_int_eq(ns.outer_saw_parallel, 1);
    for (int i = 0; i < 6 * 50; i++) ck_assert_int_eq(ns.hits[i], 1);
    ck_assert_int_eq(sac_in_parallel(), 0);
    free(ns.hits);
}
END_TEST

typedef struct {
    int id, ok;
} Caller;

static void *caller_main(void *p)
{
    Caller *c = p;
    c->ok = 1;
    for (int rep = 0; rep < 200; rep++) {
        int n = 100 + c->id * 37 + rep;
        Cover cv = {n, calloc(n, sizeof(int)), calloc(n, sizeof(int)), 0};
        sac_parallel_for(n, 1, cover_task, &cv);
        for (int i = 0; i < n; i++)
            if (cv.hits[i] != 1) c->ok = 0;
        free(cv.hits), free(cv.chunk_of);
    }
    return NULL;
}

START_TEST(test_concurrent_callers)
{
    /* several threads of the program use the library at once: one gets the pool, the others
     * run their loops serially; every loop completes exactly */
    sac_threads_set(2);
    pthread_t tid[3];
    Caller c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (Caller){i, 0};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, caller_main, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(c[i].ok, 1);
    /* shrinking and growing the pool between loops */
    for (int t = 4; t >= 1; t--) check_cover(t, 999, 1);
    for (int t = 1; t <= 4; t++) check_cover(t, 999, 1);
}
END_TEST

/* ---- products split across the pool ---- */

static float *frand(size_t n, SacRng *rng)
{
    float *x = sac_alloc_floats(n ? n : 1);
    fill_uniform(x, n, -1, 1, rng);
    return x;
}

START_TEST(test_split_products)
{
    SacRng rng;
    sac_rng_seed(&rng, 3, 1);
    /* big enough to be split; odd sizes so chunks end mid-block */
    const int M = 133, N = 301, K = 217;
    float *A = frand((size_t)M * K, &rng), *B = frand((size_t)K * N, &rng), *C0 = frand((size_t)M * N, &rng);
    float *ref = sac_alloc_floats((size_t)M * N), *got[4];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int lda = ta ? M : K, ldb = tb ? K : N;
            memcpy(ref, C0, sizeof(float) * M * N);
            sac_gemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, ref, N);
            for (int t = 1; t <= 3; t++) {
                sac_threads_set(t);
                got[t] = sac_alloc_floats((size_t)M * N);
                memcpy(got[t], C0, sizeof(float) * M * N);
                sac_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, got[t], N);
                char name[64];
                snprintf(name, sizeof(name), "gemm ta%d tb%d threads %d", ta, tb, t);
                ck_assert_int_eq(check_tensor(name, got[t], ref, (size_t)M * N, 1e-5, 1e-4), 0);
            }
            for (int t = 1; t <= 3; t++) free(got[t]);
        }
    /* the one-row (gemv) path, both orientations */
    const int R = 700, Cc = 300;
    float *W = frand((size_t)R * Cc, &rng), *x = frand(R > Cc ? R : Cc, &rng);
    float *y1 = sac_alloc_floats(R), *y2 = sac_alloc_floats(R), *yr = sac_alloc_floats(R);
    for (int ta = 0; ta < 2; ta++) {
        const int n_out = ta ? Cc : R, n_in = ta ? R : Cc;
        /* reference: y = op(W) x */
        for (int o = 0; o < n_out; o++) {
            double acc = 0;
            for (int i = 0; i < n_in; i++) acc += (double)(ta ? W[(size_t)i * Cc + o] : W[(size_t)o * Cc + i]) * x[i];
            yr[o] = (float)acc;
        }
        sac_threads_set(1);
        sac_gemv(ta, R, Cc, 1.0f, W, Cc, x, 0.0f, y1);
        sac_threads_set(3);
        sac_gemv(ta, R, Cc, 1.0f, W, Cc, x, 0.0f, y2);
        ck_assert_int_eq(check_tensor("gemv, 1 thread", y1, yr, n_out, 1e-5, 1e-4), 0);
        ck_assert_int_eq(check_tensor("gemv, 3 threads", y2, yr, n_out, 1e-5, 1e-4), 0);
    }
    /* column sums: chunks own columns and add rows in order, the same bits for any count */
    float *s1 = calloc(Cc, sizeof(float)), *s3 = calloc(Cc, sizeof(float));
    double *sr = calloc(Cc, sizeof(double));
    sac_threads_set(1);
    sac_colsum(s1, W, R, Cc);
    sac_threads_set(3);
    sac_colsum(s3, W, R, Cc);
    for (int i = 0; i < R; i++)
        for (int k = 0; k < Cc; k++) sr[k] += W[(size_t)i * Cc + k];
    for (int k = 0; k < Cc; k++) ck_assert_double_eq_tol(s3[k], sr[k], 1e-3);
    ck_assert_mem_eq(s1, s3, sizeof(float) * Cc);
    free(A), free(B), free(C0), free(ref), free(W), free(x), free(y1), free(y2), free(yr), free(s1), free(s3),
        free(sr);
}
END_TEST

/* y (R, O) = x @ W^T through packed W, in two panel ranges */
static void packed_product(float *y, const float *W, const float *x, int O, int K, int R, int half, int cut)
{
    void *buf = aligned_alloc(64, (sac_packed_bytes(O, K, half) + 63) / 64 * 64);
    SacPacked pk;
    ck_assert_int_eq(sac_pack(&pk, buf, W, K, O, K, half), 1);
    sac_packed_matmul(y, O, &pk, 0, cut, x, K, R, 0);
    sac_packed_matmul(y, O, &pk, cut, (O + SAC_PANEL - 1) / SAC_PANEL, x, K, R, 0);
    free(buf);
}

START_TEST(test_packed)
{
    SacRng rng;
    sac_rng_seed(&rng, 4, 1);
    const int O = 37, K = 517, R = 13; /* a partial panel, odd K, every row-block tail */
    float *W = frand((size_t)O * K, &rng), *x = frand((size_t)R * K, &rng);
    float *y = sac_alloc_floats((size_t)R * O), *ref = sac_alloc_floats((size_t)R * O), *one = sac_alloc_floats(O);
    sac_gemm_ref(0, 1, R, O, K, 1.0f, x, K, W, K, 0.0f, ref, O);
    packed_product(y, W, x, O, K, R, 0, 1);
    ck_assert_int_eq(check_tensor("packed fp32", y, ref, (size_t)R * O, 1e-5, 1e-4), 0);
    /* a row's result does not depend on how many rows go with it, or where the panels are cut */
    for (int n = 1; n <= 7; n++)
        for (int r = 0; r + n <= R; r += 5) {
            float *part = sac_alloc_floats((size_t)n * O);
            packed_product(part, W, x + (size_t)r * K, O, K, n, 0, n % 3);
            ck_assert_mem_eq(part, y + (size_t)r * O, sizeof(float) * n * O);
            free(part);
        }
    /* accumulate adds */
    void *buf = aligned_alloc(64, (sac_packed_bytes(O, K, 0) + 63) / 64 * 64);
    SacPacked pk;
    sac_pack(&pk, buf, W, K, O, K, 0);
    memcpy(ref, y, sizeof(float) * R * O);
    sac_packed_matmul(y, O, &pk, 0, 3, x, K, R, 1);
    for (int i = 0; i < R * O; i++) ck_assert_float_eq(y[i], ref[i] + ref[i]);
    /* fp16: exactly the fp32 kernel on the rounded weights */
    uint16_t *Wh = malloc(sizeof(uint16_t) * O * K);
    float *Wr = sac_alloc_floats((size_t)O * K);
    sac_float_to_half_array(Wh, W, (size_t)O * K);
    sac_half_to_float_array(Wr, Wh, (size_t)O * K);
    packed_product(ref, Wr, x, O, K, R, 0, 2);
    packed_product(y, W, x, O, K, R, 1, 2);
    ck_assert_mem_eq(y, ref, sizeof(float) * R * O);
    /* a weight beyond fp16's range is reported */
    W[5] = 1e6f;
    void *hb = aligned_alloc(64, (sac_packed_bytes(O, K, 1) + 63) / 64 * 64);
    ck_assert_int_eq(sac_pack(&pk, hb, W, K, O, K, 1), 0);
    free(W), free(x), free(y), free(ref), free(one), free(buf), free(Wh), free(Wr), free(hb);
}
END_TEST

/* ---- decoding: rows, threads, fp16 ---- */

static Model *tiny_model(void);

/* Start rows 0..R-1 on images 0..R-1 and take two steps; logits of the second into out (R, V). */
static void two_steps(DecoderInfer *inf, const float *feats, int R, const DecoderParams *p, float *out, int V)
{
    int tok[12];
    ck_assert_int_eq(decoder_infer_start(inf, feats, R, NULL, R, p), SAC_OK);
    for (int r = 0; r < R; r++) tok[r] = 1;
    decoder_infer_step(inf, tok, R, p, NULL);
    for (int r = 0; r < R; r++) tok[r] = 4 + r % 7;
    memcpy(out, decoder_infer_step(inf, tok, R, p, NULL), sizeof(float) * R * V);
}

START_TEST(test_decode_paths)
{
    Model *m = tiny_model();
    DecoderSizes sz = model_decoder_sizes(m);
    const int V = sz.V, R = 12, few = 5;
    SacRng rng;
    sac_rng_seed(&rng, 10, 1);
    float *feats = frand((size_t)R * sz.P * sz.E, &rng);
    float *all = sac_alloc_floats((size_t)R * V), *f1 = sac_alloc_floats((size_t)few * V),
          *f3 = sac_alloc_floats((size_t)few * V), *h = sac_alloc_floats((size_t)few * V);
    DecoderInfer *inf = decoder_infer_create(&sz, R, R);
    ck_assert_ptr_nonnull(inf);
    ck_assert_int_eq(decoder_infer_start(inf, feats, R, NULL, R, &m->p.dec), SAC_ERR_INVALID); /* unprepared */
    ck_assert_int_eq(decoder_infer_prepare(inf, &m->p.dec, 0), SAC_OK);
    sac_threads_set(2);
    two_steps(inf, feats, R, &m->p.dec, all, V);
    sac_threads_set(1);
    two_steps(inf, feats, few, &m->p.dec, f1, V);
    sac_threads_set(3);
    two_steps(inf, feats, few, &m->p.dec, f3, V);
    /* a row's logits do not depend on the other rows or the thread count */
    ck_assert_mem_eq(f1, all, sizeof(float) * few * V);
    ck_assert_mem_eq(f1, f3, sizeof(float) * few * V);
    /* and they are the teacher-forced decoder's (the matmul path) */
    {
        const int T = sz.T, L = T + 1; /* tokens (few, T + 1) */
        int tokens[5 * 32], lens[5], img[5];
        ck_assert_int_le(few * L, 5 * 32);
        for (int r = 0; r < few; r++) {
            for (int k = 0; k < L; k++) tokens[r * L + k] = 0;
            tokens[r * L] = 1, tokens[r * L + 1] = 4 + r % 7, tokens[r * L + 2] = 2, lens[r] = 2, img[r] = r;
        }
        DecoderBatch b = {few, few, img, tokens, lens, NULL};
        DecoderActs *a = decoder_acts_create(&sz, few, few);
        DecoderLoss loss;
        ck_assert_int_eq(decoder_forward(&loss, a, feats, &b, &m->p.dec, &sz, 0.0f, 0.0f, NULL), SAC_OK);
        float *pr = sac_alloc_floats((size_t)few * T * V), *sm = sac_alloc_floats(V);
        decoder_get_probs(a, pr, &sz);
        for (int r = 0; r < few; r++) {
            const float *l = f1 + (size_t)r * V;
            double mx = l[0], sum = 0;
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
            for (int v = 0; v < V; v++) sm[v] = (float)(exp(l[v] - mx) / sum);
            ck_assert_int_eq(check_tensor("step probabilities vs teacher-forced", sm, pr + ((size_t)r * T + 1) * V, V,
                                          1e-6, 1e-4), 0);
        }
        free(pr), free(sm);
        decoder_acts_free(a);
    }
    ck_assert_int_eq(decoder_infer_prepare(inf, &m->p.dec, 1), SAC_OK);
    two_steps(inf, feats, few, &m->p.dec, h, V);
    /* fp16 weights: relative rounding 2^-11 per weight */
    ck_assert_int_eq(check_tensor("fp16 weights vs fp32", h, f1, (size_t)few * V, 1e-3, 1e-2), 0);
    int same = 1;
    for (int i = 0; i < few * V; i++) same &= h[i] == f1[i];
    ck_assert_int_eq(same, 0); /* and they were used */
    ck_assert_int_eq(decoder_infer_prepare(inf, &m->p.dec, 0), SAC_OK);
    two_steps(inf, feats, few, &m->p.dec, h, V);
    ck_assert_mem_eq(h, f3, sizeof(float) * few * V);
    decoder_infer_free(inf);
    free(feats), free(all), free(f1), free(f3), free(h);
    model_free(m);
}
END_TEST

/* ---- a training step ---- */

static Model *tiny_model(void)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.enc.image_size = 16;
    cfg.enc.n_conv = 2;
    cfg.enc.conv[0] = (ConvSpec){6, 2, 0};
    cfg.enc.conv[1] = (ConvSpec){8, 1, 1};
    cfg.E = 8, cfg.A = 8, cfg.D = 12, cfg.M = 6, cfg.T = 7, cfg.V = 20;
    Model *m = model_create(&cfg);
    SacRng rng;
    sac_rng_seed(&rng, 9, 1);
    model_init(m, &rng);
    return m;
}

/* Two gradient + Adam steps on a fixed batch; returns the parameters after, and the gradient of
 * the first step in *grad0 (caller frees both). */
static float *train_two_steps(int threads, size_t *n, float **grad0)
{
    sac_threads_set(threads);
    Model *m = tiny_model();
    const int Bi = 6, caps = 3, Bc = Bi * caps, T = m->cfg.T, S = m->cfg.enc.image_size;
    TrainStep *ts = train_step_create(m, Bi, Bc);
    ck_assert_ptr_nonnull(ts);
    SacRng rng;
    sac_rng_seed(&rng, 5, 1);
    float *images = frand((size_t)Bi * 3 * S * S, &rng);
    int img[18], lens[18], tokens[18 * 8];
    for (int c = 0; c < Bc; c++) {
        img[c] = c / caps;
        lens[c] = 1 + (int)sac_rng_below(&rng, T);
        tokens[c * (T + 1)] = 1;
        for (int t = 1; t <= T; t++) tokens[c * (T + 1) + t] = 4 + (int)sac_rng_below(&rng, 16);
    }
    DecoderBatch batch = {Bc, Bi, img, tokens, lens, NULL};
    SacRng drop;
    sac_rng_seed(&drop, 6, 1);
    for (int step = 0; step < 2; step++) {
        DecoderLoss loss;
        ck_assert_int_eq(train_step_grad(ts, images, &batch, &drop, &loss), SAC_OK);
        ck_assert(isfinite(loss.loss));
        if (step == 0) {
            *grad0 = malloc(sizeof(float) * m->n_trainable);
            memcpy(*grad0, train_step_grads(ts), sizeof(float) * m->n_trainable);
        }
        train_step_adam(ts, 1e-2f, 1e-2f, 1.0f, 0.0f);
    }
    *n = m->n_trainable;
    float *out = malloc(sizeof(float) * m->n_floats);
    memcpy(out, m->data, sizeof(float) * m->n_floats);
    free(images);
    train_step_free(ts);
    model_free(m);
    return out;
}

START_TEST(test_training_step_deterministic)
{
    size_t n1, n2, n3;
    float *ga, *gb, *gc;
    float *a = train_two_steps(2, &n1, &ga), *b = train_two_steps(2, &n2, &gb), *c = train_two_steps(1, &n3, &gc);
    ck_assert_uint_eq(n1, n2);
    ck_assert_uint_eq(n1, n3);
    /* the same thread count: the same bytes (the trainer's resume test relies on it) */
    ck_assert_mem_eq(ga, gb, sizeof(float) * n1);
    ck_assert_mem_eq(a, b, sizeof(float) * n1);
    /* another thread count: partial sums meet in another order, so the gradient is close, not
     * equal (and Adam's normalised steps amplify differences in near-zero gradients) */
    ck_assert_int_eq(check_tensor("gradient, 2 threads vs 1", ga, gc, n1, 1e-6, 1e-3), 0);
    free(a), free(b), free(c), free(ga), free(gb), free(gc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threadpool");
    const TTest *tests[] = {test_parallel_for_covers_once, test_parallel_blocks_fixed,
        test_nested_loops_run_serially, test_concurrent_callers, test_split_products, test_packed,
        test_decode_paths, test_training_step_deterministic, NULL};
    check_case(s, "core", 0, tests);
    return check_run(s);
}
