/*
 * threadpool.c - the one pool of compute threads, see threadpool.h.
 *
 * One loop at a time on the pool (the dispatcher holds `dispatch`). The dispatcher publishes
 * fn/ctx/n/chunks and then one 64-bit `claim` word = generation | chunk count | next chunk;
 * it and every worker take chunks by compare-and-swap on that word until none is left, so a
 * worker that the (shared, noisy) machine has descheduled never holds the loop up: the
 * others take its chunks. Chunk c always covers the same items, whoever runs it. A worker
 * reads the job's fields only after winning a chunk of that generation, and the dispatcher
 * does not return (nor publish the next job) before every chunk is done, so the fields are
 * stable while anyone reads them.
 *
 * Idle workers spin for SPIN_NS and then sleep on `wake`; the dispatcher waiting for chunks
 * still running elsewhere does the same on `done`. The sleeper counts and the words they
 * guard are seq_cst atomics checked in opposite orders, so no wake-up is lost.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sac.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle side spins before sleeping. */
#define SPIN_NS 50000.0

/* claim word: generation (24 bits) | chunks (20 bits) | next chunk (20 bits) */
#define CLAIM_GEN(v) ((uint32_t)((v) >> 40))
#define CLAIM_CHUNKS(v) ((int)(((v) >> 20) & 0xFFFFF))
#define CLAIM_NEXT(v) ((int)((v)&0xFFFFF))
#define CLAIM_MAKE(gen, chunks) (((uint64_t)((gen)&0xFFFFFF) << 40) | ((uint64_t)(chunks) << 20))

/* OpenBLAS's own pool: kept at one thread (matmul.c splits products across ours). */
void openblas_set_num_threads(int num_threads);

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* workers wait here for a new generation */
    pthread_cond_t done_cv;   /* the dispatcher waits here for the last chunks */
    pthread_mutex_t dispatch; /* one loop on the pool at a time */
    pthread_t tid[SAC_MAX_THREADS];
    int started;              /* workers 1..started exist */
    uint32_t gen;             /* generation of the last job (dispatcher only) */
    atomic_int size;          /* pool size, caller included */
    /* the current job */
    SacTaskFn fn;
    void *ctx;
    int n;
    _Atomic uint64_t claim;
    atomic_int done;          /* chunks finished */
    atomic_int sleeping;      /* workers in (or about to enter) the wait on `wake` */
    atomic_int main_sleeping;
    atomic_int quit_from;     /* workers with index >= quit_from exit */
} Pool;

static Pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                    .wake = PTHREAD_COND_INITIALIZER,
                    .done_cv = PTHREAD_COND_INITIALIZER,
                    .dispatch = PTHREAD_MUTEX_INITIALIZER,
                    .quit_from = SAC_MAX_THREADS};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static _Thread_local int tl_in_task;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > SAC_MAX_THREADS ? SAC_MAX_THREADS : (int)n;
}

static int env_threads(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 1 ? 0 : v > SAC_MAX_THREADS ? SAC_MAX_THREADS : (int)v;
}

static void stop_workers_from(int first);

static void pool_shutdown(void)
{
    pthread_mutex_lock(&pool.dispatch);
    stop_workers_from(1);
    pthread_mutex_unlock(&pool.dispatch);
}

/* A forked child has only the forking thread: it starts with no workers (and fresh locks, as
 * the fork may have caught one held). */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.dispatch, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done_cv, NULL);
    pool.started = 0;
    atomic_store(&pool.sleeping, 0);
    atomic_store(&pool.main_sleeping, 0);
    atomic_store(&pool.quit_from, SAC_MAX_THREADS);
    tl_in_task = 0;
}

static void pool_init(void)
{
    openblas_set_num_threads(1);
    pthread_atfork(NULL, NULL, pool_after_fork);
    int n = env_threads("SACCADE_THREADS");
    if (!n) n = env_threads("OPENBLAS_NUM_THREADS");
    atomic_store(&pool.size, n ? n : online_cores());
    atexit(pool_shutdown);
}

static void chunk_range(int n, int chunks, int c, int *b, int *e)
{
    *b = (int)((long long)n * c / chunks);
    *e = (int)((long long)n * (c + 1) / chunks);
}

/* Take the next chunk of generation gen; -1 when none is left (or the job is gone). */
static int claim_chunk(uint32_t gen)
{
    uint64_t v = atomic_load(&pool.claim);
    for (;;) {
        if (CLAIM_GEN(v) != (gen & 0xFFFFFF) || CLAIM_NEXT(v) >= CLAIM_CHUNKS(v)) return -1;
        if (atomic_compare_exchange_weak(&pool.claim, &v, v + 1)) return CLAIM_NEXT(v);
    }
}

/* Run chunks of the current job until none is left. */
static void run_claimed(uint32_t gen)
{
    int c;
    while ((c = claim_chunk(gen)) >= 0) {
        /* winning a chunk means the job is live until this chunk is marked done */
        const int chunks = CLAIM_CHUNKS(atomic_load(&pool.claim));
        int b, e;
        chunk_range(pool.n, chunks, c, &b, &e);
        pool.fn(pool.ctx, b, e, c);
        if (atomic_fetch_add(&pool.done, 1) + 1 == chunks && atomic_load(&pool.main_sleeping)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done_cv);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void *worker_main(void *arg)
{
    const int w = (int)(intptr_t)arg;
    tl_in_task = 1;
    uint32_t seen = CLAIM_GEN(atomic_load(&pool.claim));
    for (;;) {
        /* wait for a new job: spin, then sleep */
        uint32_t g = CLAIM_GEN(atomic_load(&pool.claim));
        if (g == seen) {
            double t0 = now_ns();
            for (int i = 0; (g = CLAIM_GEN(atomic_load(&pool.claim))) == seen && w < atomic_load(&pool.quit_from);
                 i++) {
                cpu_relax();
                if ((i & 127) == 127 && now_ns() - t0 > SPIN_NS) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleeping, 1);
            while ((g = CLAIM_GEN(atomic_load(&pool.claim))) == seen && w < atomic_load(&pool.quit_from))
                pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        if (w >= atomic_load(&pool.quit_from)) return NULL;
        seen = g;
        run_claimed(g);
    }
}

/* Caller holds dispatch. */
static void stop_workers_from(int first)
{
    if (first >= pool.started + 1) return;
    atomic_store(&pool.quit_from, first);
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int w = first; w <= pool.started; w++) pthread_join(pool.tid[w], NULL);
    pool.started = first - 1;
    atomic_store(&pool.quit_from, SAC_MAX_THREADS);
}

/* Caller holds dispatch. Starts workers up to want threads in all (caller included). */
static void start_workers(int want)
{
    while (pool.started + 1 < want) {
        int w = pool.started + 1;
        if (pthread_create(&pool.tid[w], NULL, worker_main, (void *)(intptr_t)w)) {
            sac_warn("threadpool: cannot start worker thread %d; continuing with %d", w, w);
            atomic_store(&pool.size, w);
            return;
        }
        pool.started = w;
    }
}

void sac_threads_set(int n)
{
    pthread_once(&pool_once, pool_init);
    if (n <= 0) n = online_cores();
    if (n > SAC_MAX_THREADS) n = SAC_MAX_THREADS;
    pthread_mutex_lock(&pool.dispatch);
    atomic_store(&pool.size, n);
    stop_workers_from(n);
    pthread_mutex_unlock(&pool.dispatch);
}

int sac_threads(void)
{
    pthread_once(&pool_once, pool_init);
    return atomic_load(&pool.size);
}

int sac_parallel_chunks(int n, int grain)
{
    if (n <= 1) return 1;
    if (grain < 1) grain = 1;
    int k = sac_threads();
    int by_grain = n / grain;
    if (by_grain < k) k = by_grain;
    return k < 1 ? 1 : k;
}

int sac_in_parallel(void) { return tl_in_task; }

static void run_serial(int n, int chunks, SacTaskFn fn, void *ctx)
{
    for (int c = 0; c < chunks; c++) {
        int b, e;
        chunk_range(n, chunks, c, &b, &e);
        fn(ctx, b, e, c);
    }
}

static void run_chunks(int n, int chunks, SacTaskFn fn, void *ctx)
{
    if (chunks <= 1 || tl_in_task || pthread_mutex_trylock(&pool.dispatch)) {
        run_serial(n, chunks, fn, ctx);
        return;
    }
    start_workers(atomic_load(&pool.size));
    if (pool.started == 0) {
        pthread_mutex_unlock(&pool.dispatch);
        run_serial(n, chunks, fn, ctx);
        return;
    }
    pool.fn = fn, pool.ctx = ctx, pool.n = n;
    atomic_store(&pool.done, 0);
    const uint32_t gen = ++pool.gen;
    atomic_store(&pool.claim, CLAIM_MAKE(gen, chunks));
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    tl_in_task = 1;
    run_claimed(gen);
    tl_in_task = 0;
    if (atomic_load(&pool.done) < chunks) {
        double t0 = now_ns();
        for (int i = 0; atomic_load(&pool.done) < chunks; i++) {
            cpu_relax();
            if ((i & 127) == 127 && now_ns() - t0 > SPIN_NS) break;
        }
        if (atomic_load(&pool.done) < chunks) {
            pthread_mutex_lock(&pool.lock);
            atomic_store(&pool.main_sleeping, 1);
            while (atomic_load(&pool.done) < chunks) pthread_cond_wait(&pool.done_cv, &pool.lock);
            atomic_store(&pool.main_sleeping, 0);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    pthread_mutex_unlock(&pool.dispatch);
}

void sac_parallel_for(int n, int grain, SacTaskFn fn, void *ctx)
{
    if (n <= 0) return;
    run_chunks(n, sac_parallel_chunks(n, grain), fn, ctx);
}

typedef struct {
    int n, block;
    SacTaskFn fn;
    void *ctx;
} Blocks;

static void blocks_task(void *p, int b0, int b1, int chunk)
{
    (void)chunk;
    const Blocks *bl = p;
    for (int b = b0; b < b1; b++) {
        int e = (b + 1) * bl->block;
        bl->fn(bl->ctx, b * bl->block, e < bl->n ? e : bl->n, b);
    }
}

void sac_parallel_blocks(int n, int block, SacTaskFn fn, void *ctx)
{
    if (n <= 0) return;
    if (block < 1) block = 1;
    Blocks bl = {n, block, fn, ctx};
    const int nb = (n + block - 1) / block;
    sac_parallel_for(nb, 1, blocks_task, &bl);
}
