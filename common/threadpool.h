/*
 * threadpool.h - saccade's one pool of compute threads.
 *
 * A fixed set of worker pthreads (the caller of a parallel loop is worker 0) runs
 * sac_parallel_for loops with static chunking: the chunks of a loop depend only on its
 * length, its grain and the pool size, never on timing, so code that keeps one partial
 * result per chunk and reduces them in chunk order is deterministic for a fixed thread count
 * (and for every thread count when the chunks are fixed-size blocks, see sac_parallel_blocks).
 * Idle workers spin briefly (tens of microseconds, so the back-to-back loops of one training
 * step do not pay a wake-up each) and then sleep on a condition variable.
 *
 * BLAS (OpenBLAS) is kept at one thread for the whole process: matmul.c splits large
 * products across this pool itself, each chunk a serial BLAS call. So there is never a second
 * pool spinning on the same cores.
 *
 * Nesting and concurrency: a loop started inside a pool task, or while another thread's loop
 * occupies the pool, or with a pool of size 1, runs its chunks one after another in the
 * calling thread (same chunks, same results). Several threads may therefore call into the
 * library at once; code that runs its own worker threads (`saccade batch`) sets the pool to
 * size 1 for their lifetime so that the two never compete.
 *
 * The initial size is $SACCADE_THREADS when set, else $OPENBLAS_NUM_THREADS when set (the
 * test suites set it to 1), else the number of online cores; sac_threads_set changes it.
 */
#ifndef SACCADE_THREADPOOL_H
#define SACCADE_THREADPOOL_H

/* Most threads the pool will run (larger requests are clamped). */
#define SAC_MAX_THREADS 64

/* The body of a parallel loop: handle items [begin, end) as chunk `chunk`
 * (0 <= chunk < the loop's chunk count). */
typedef void (*SacTaskFn)(void *ctx, int begin, int end, int chunk);

/* Set the pool size: n >= 1 threads (the caller included), n <= 0 means all online cores.
 * Not to be called while a parallel loop runs. Workers are started on first use. */
void sac_threads_set(int n);
/* The current pool size (>= 1). */
int sac_threads(void);

/* How many chunks sac_parallel_for(n, grain, ...) uses: min(pool size, n / grain), at least 1
 * (n >= 1). Within a pool task it is still this number (the chunks then run serially). */
int sac_parallel_chunks(int n, int grain);

/* Run fn over [0, n) split into sac_parallel_chunks(n, grain) contiguous chunks, chunk c being
 * [c * n / k, (c + 1) * n / k). Returns when every chunk has finished. n <= 0 does nothing. */
void sac_parallel_for(int n, int grain, SacTaskFn fn, void *ctx);

/* Run fn over [0, n) in fixed blocks of `block` items (the last may be shorter): chunk c is
 * block c, whatever the pool size, so per-block partial results reduced in block order give
 * the same bits for every thread count. Blocks are dealt to the threads in contiguous runs. */
void sac_parallel_blocks(int n, int block, SacTaskFn fn, void *ctx);

/* 1 inside a pool task (where further loops run serially), else 0. */
int sac_in_parallel(void);

#endif
