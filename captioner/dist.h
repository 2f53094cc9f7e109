/*
 * dist.h - the processes of one data-parallel run: a thin layer over MPI (Open MPI from Debian)
 * that the trainer calls for its few collective operations, so that no other file includes
 * <mpi.h>.
 *
 * A build without MPI (meson -Dmpi=disabled, or MPI not found) compiles the same calls to their
 * single-process meaning: rank 0 of 1, an all-reduce leaves the buffer as it is, a broadcast
 * and a barrier do nothing. A build with MPI also runs as one process when it was not started
 * by an MPI launcher (mpirun, srun): sac_dist_init only initialises MPI when the environment
 * names a rank (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE), so the plain program never starts
 * MPI's runtime.
 *
 * Every collective must be entered by every rank in the same order (MPI's rule): a rank that
 * fails must still enter the next collective with its failure in the data (see the trainer's
 * status all-reduce), never skip it, or the others wait for ever.
 *
 * Thread-safety: MPI is initialised with MPI_THREAD_FUNNELED; call these functions from the
 * thread that called sac_dist_init only. Errors are logged (naming the operation) and
 * returned as SAC_* status codes; nothing here exits except sac_dist_abort, which only the
 * program (tools/) calls, as a last resort.
 *
 * Size letters: n elements of a buffer.
 */
#ifndef SACCADE_DIST_H
#define SACCADE_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SAC_DIST_SUM = 0, SAC_DIST_MAX, SAC_DIST_MIN } SacDistOp;

/* Communication counters since sac_dist_init (all-reduce, broadcast and barrier calls). */
typedef struct SacDistStats {
    double seconds;  /* wall time spent inside MPI calls */
    uint64_t bytes;  /* payload bytes handed to them (per rank; a ring all-reduce sends and
                        receives 2 (N - 1) / N times its payload) */
    long calls;
} SacDistStats;

/* 1 when this build can run over MPI. */
int sac_dist_available(void);
/* Join the run: MPI_Init_thread when started by an MPI launcher, else one process. Idempotent.
 * SAC_OK, SAC_ERR_IO (logged) when MPI could not start, or SAC_ERR_INVALID (logged) for one of
 * several srun tasks that are not MPI ranks (srun without --mpi=pmix: they would each run alone). */
int sac_dist_init(int *argc, char ***argv);
/* Leave it (MPI_Finalize after a barrier); a no-op when MPI was not started. */
void sac_dist_finalize(void);
/* This process's rank (0..size-1) and the number of processes; 0 and 1 before sac_dist_init
 * or without MPI. */
int sac_dist_rank(void);
int sac_dist_size(void);
/* Ranks on this machine (OMPI_COMM_WORLD_LOCAL_SIZE or SLURM_NTASKS_PER_NODE when set, else 1):
 * for dividing the cores among them. */
int sac_dist_local_size(void);

/* In place, element-wise over all ranks: every rank ends with the same n values. SAC_OK or
 * SAC_ERR_IO (logged). */
int sac_dist_allreduce_f32(float *buf, size_t n, SacDistOp op);
int sac_dist_allreduce_f64(double *buf, size_t n, SacDistOp op);
int sac_dist_allreduce_i64(int64_t *buf, size_t n, SacDistOp op);
/* Personalised exchange (MPI_Alltoallv of bytes): this rank sends send_bytes[r] bytes to rank r,
 * taken in rank order from send, and receives recv_bytes[r] bytes from rank r, stored in rank
 * order in recv; the counts must match the other ranks' (each below 2 GB). */
int sac_dist_alltoallv(const void *send, const size_t *send_bytes, void *recv, const size_t *recv_bytes);
/* bytes of buf from rank root to every other rank. */
int sac_dist_bcast(void *buf, size_t bytes, int root);
int sac_dist_barrier(void);
/* SAC_OK when buf (bytes) holds the same bytes on every rank, else SAC_ERR_INVALID, logged
 * with `what` ("the parameters after step 200"): a check that data-parallel ranks did not
 * drift apart. */
int sac_dist_check_same(const void *buf, size_t bytes, const char *what);
/* Agree on a status after a phase that may fail on some ranks only: returns the local status when
 * it is an error, else SAC_ERR_CANCELLED when another rank's is (logged once, "another rank
 * failed"), else SAC_OK; with one process, status itself. Every rank must call it at the same
 * point. A failed collective returns its own error. */
int sac_dist_agree(int status);
/* Stop every rank at once (MPI_Abort) with exit status code. Does not return under MPI; returns
 * (doing nothing) in a single-process run, whose caller then returns its error as usual. */
void sac_dist_abort(int code);

void sac_dist_stats(SacDistStats *out);

#endif
