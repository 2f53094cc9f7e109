/*
 * dist.c - the processes of a data-parallel run over MPI, see dist.h. Built with
 * SACCADE_MPI=1 when meson found MPI (option mpi), else every call is its single-process
 * meaning.
 *
 * Size letters: n elements of a buffer.
 */
#include "dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sac.h"

#if SACCADE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_started = 0;
static SacDistStats g_stats;

int sac_dist_available(void) { return SACCADE_MPI; }
int sac_dist_rank(void) { return g_rank; }
int sac_dist_size(void) { return g_size; }
void sac_dist_stats(SacDistStats *out) { *out = g_stats; }

static int env_int(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 1 || v > INT_MAX ? 0 : (int)v;
}

int sac_dist_local_size(void)
{
    int n = env_int("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!n) n = env_int("MPI_LOCALNRANKS"); /* MPICH's Hydra */
    if (!n && g_size > 1) n = env_int("SLURM_NTASKS_PER_NODE");
    return n > 0 ? n : 1;
}

/* 1 when an MPI launcher started this process: it names the rank's world in the environment. */
static int launched_by_mpi(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

/* srun starts N tasks without making them MPI ranks unless told to (--mpi=pmix): each would train
 * alone, writing the same files. SAC_OK, or SAC_ERR_INVALID (logged) for such a task. */
static int check_not_lone_task(void)
{
    const int n = env_int("SLURM_STEP_NUM_TASKS");
    if (n > 1 && !launched_by_mpi()) {
        sac_error("started by srun as one of %d tasks, but not as an MPI rank (no PMI variables): each task would "
                  "run alone and write the same files; use srun --mpi=pmix (or pmi2), or mpirun", n);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}

#if SACCADE_MPI

static int check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return SAC_OK;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    sac_error("MPI (rank %d of %d): %s failed: %s", g_rank, g_size, what, msg);
    return SAC_ERR_IO;
}

int sac_dist_init(int *argc, char ***argv)
{
    if (g_started) return SAC_OK;
    if (!launched_by_mpi()) return check_not_lone_task();
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            sac_error("MPI: MPI_Init_thread failed (error %d)", rc);
            return SAC_ERR_IO;
        }
    }
    /* errors come back as codes (logged, returned), not MPI's default abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_started = 1;
    return SAC_OK;
}

void sac_dist_finalize(void)
{
    if (!g_started) return;
    MPI_Finalize();
    g_started = 0;
    g_rank = 0, g_size = 1;
}

/* Wait for a non-blocking collective without holding a core: MPI_Test, and after the first
 * millisecond a 0.5 ms sleep between tests. For the waits on rank 0 (its evaluation, its
 * checkpoint), which take seconds: a blocking MPI call spins at 100% CPU meanwhile, taking a
 * core from rank 0 when ranks share a machine. */
static int wait_politely(MPI_Request *req, const char *what)
{
    const double t0 = sac_time();
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return check(rc, what);
        if (done) return SAC_OK;
        if (sac_time() - t0 > 1e-3) {
            struct timespec pause = {0, 500000};
            nanosleep(&pause, NULL);
        }
    }
}

static MPI_Op mpi_op(SacDistOp op) { return op == SAC_DIST_MAX ? MPI_MAX : op == SAC_DIST_MIN ? MPI_MIN : MPI_SUM; }

/* MPI counts are ints: large buffers go in slices of at most 2^30 elements. */
#define SLICE ((size_t)1 << 30)

static int allreduce(void *buf, size_t n, size_t elem, MPI_Datatype type, SacDistOp op, const char *what)
{
    if (!g_started || g_size == 1) return SAC_OK;
    double t0 = sac_time();
    int st = SAC_OK;
    for (size_t i = 0; i < n && !st; i += SLICE) {
        const size_t k = SAC_MIN(SLICE, n - i);
        st = check(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * elem, (int)k, type, mpi_op(op), MPI_COMM_WORLD),
                   what);
    }
    g_stats.seconds += sac_time() - t0;
    g_stats.bytes += n * elem;
    g_stats.calls++;
    return st;
}

int sac_dist_allreduce_f32(float *buf, size_t n, SacDistOp op)
{
    return allreduce(buf, n, sizeof(float), MPI_FLOAT, op, "MPI_Allreduce (float)");
}

int sac_dist_allreduce_f64(double *buf, size_t n, SacDistOp op)
{
    return allreduce(buf, n, sizeof(double), MPI_DOUBLE, op, "MPI_Allreduce (double)");
}

int sac_dist_allreduce_i64(int64_t *buf, size_t n, SacDistOp op)
{
    return allreduce(buf, n, sizeof(int64_t), MPI_INT64_T, op, "MPI_Allreduce (int64)");
}

int sac_dist_alltoallv(const void *send, const size_t *send_bytes, void *recv, const size_t *recv_bytes)
{
    if (!g_started || g_size == 1) {
        if (send_bytes[0]) memcpy(recv, send, send_bytes[0]);
        return SAC_OK;
    }
    int *v = malloc(sizeof(int) * 4 * (size_t)g_size); /* send counts, send offsets, receive counts, offsets */
    if (!v) {
        sac_error("MPI (rank %d of %d): out of memory for an exchange", g_rank, g_size);
        return SAC_ERR_NOMEM;
    }
    size_t so = 0, ro = 0, total = 0;
    for (int r = 0; r < g_size; r++) {
        SAC_ASSERT(send_bytes[r] < INT_MAX && recv_bytes[r] < INT_MAX && so < INT_MAX && ro < INT_MAX);
        v[r] = (int)send_bytes[r], v[g_size + r] = (int)so, v[2 * g_size + r] = (int)recv_bytes[r];
        v[3 * g_size + r] = (int)ro;
        so += send_bytes[r], ro += recv_bytes[r];
    }
    total = so;
    double t0 = sac_time();
    int st = check(MPI_Alltoallv(send, v, v + g_size, MPI_BYTE, recv, v + 2 * g_size, v + 3 * g_size, MPI_BYTE,
                                 MPI_COMM_WORLD), "MPI_Alltoallv");
    g_stats.seconds += sac_time() - t0;
    g_stats.bytes += total;
    g_stats.calls++;
    free(v);
    return st;
}

int sac_dist_bcast(void *buf, size_t bytes, int root)
{
    if (!g_started || g_size == 1) return SAC_OK;
    double t0 = sac_time();
    int st = SAC_OK;
    for (size_t i = 0; i < bytes && !st; i += SLICE) {
        MPI_Request req;
        st = check(MPI_Ibcast((char *)buf + i, (int)SAC_MIN(SLICE, bytes - i), MPI_BYTE, root, MPI_COMM_WORLD, &req),
                   "MPI_Ibcast");
        if (!st) st = wait_politely(&req, "MPI_Ibcast");
    }
    g_stats.seconds += sac_time() - t0;
    g_stats.bytes += bytes;
    g_stats.calls++;
    return st;
}

int sac_dist_barrier(void)
{
    if (!g_started || g_size == 1) return SAC_OK;
    double t0 = sac_time();
    int st = check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    g_stats.seconds += sac_time() - t0;
    g_stats.calls++;
    return st;
}

void sac_dist_abort(int code)
{
    if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

/* The sum of *n over the ranks, waiting politely (sac_dist_agree: ranks wait there for rank 0). */
static int agree_sum(int64_t *n)
{
    double t0 = sac_time();
    MPI_Request req;
    int st = check(MPI_Iallreduce(MPI_IN_PLACE, n, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req), "MPI_Iallreduce");
    if (!st) st = wait_politely(&req, "MPI_Iallreduce");
    g_stats.seconds += sac_time() - t0;
    g_stats.bytes += sizeof(*n);
    g_stats.calls++;
    return st;
}

#else /* no MPI in this build: one process */

int sac_dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (check_not_lone_task()) return SAC_ERR_INVALID;
    if (launched_by_mpi() && !g_started)
        sac_warn("started by an MPI launcher, but this saccade was built without MPI (meson -Dmpi=enabled "
                 "with libopenmpi-dev): every process runs alone");
    g_started = 1;
    return SAC_OK;
}

void sac_dist_finalize(void) { g_started = 0; }

int sac_dist_allreduce_f32(float *buf, size_t n, SacDistOp op)
{
    (void)buf, (void)n, (void)op;
    return SAC_OK;
}

int sac_dist_allreduce_f64(double *buf, size_t n, SacDistOp op)
{
    (void)buf, (void)n, (void)op;
    return SAC_OK;
}

int sac_dist_allreduce_i64(int64_t *buf, size_t n, SacDistOp op)
{
    (void)buf, (void)n, (void)op;
    return SAC_OK;
}

int sac_dist_alltoallv(const void *send, const size_t *send_bytes, void *recv, const size_t *recv_bytes)
{
    (void)recv_bytes;
    if (send_bytes[0]) memcpy(recv, send, send_bytes[0]); /* rank 0 of 1 sends to itself */
    return SAC_OK;
}

int sac_dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf, (void)bytes, (void)root;
    return SAC_OK;
}

int sac_dist_barrier(void) { return SAC_OK; }

void sac_dist_abort(int code) { (void)code; }

static int agree_sum(int64_t *n)
{
    (void)n;
    return SAC_OK;
}

#endif

int sac_dist_agree(int status)
{
    if (g_size == 1) return status;
    int64_t failed = status != SAC_OK;
    int st = agree_sum(&failed);
    if (st) return st;
    if (status) return status;
    if (failed) {
        sac_error("rank %d of %d: stopping: %lld other rank(s) failed (see their messages)", g_rank, g_size,
                  (long long)failed);
        return SAC_ERR_CANCELLED;
    }
    return SAC_OK;
}

/* FNV-1a 64 of the bytes, then the minimum and maximum over the ranks. */
int sac_dist_check_same(const void *buf, size_t bytes, const char *what)
{
    if (g_size == 1) return SAC_OK;
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = buf;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ull;
    /* as int64 halves, so a signed MIN/MAX compares them exactly */
    int64_t lo[2] = {(int64_t)(h >> 32), (int64_t)(h & 0xffffffffu)}, hi[2] = {lo[0], lo[1]};
    int st = sac_dist_allreduce_i64(lo, 2, SAC_DIST_MIN);
    if (!st) st = sac_dist_allreduce_i64(hi, 2, SAC_DIST_MAX);
    if (st) return st;
    if (lo[0] != hi[0] || lo[1] != hi[1]) {
        sac_error("rank %d of %d: %s differ between the ranks (expected the same bytes on every rank)", g_rank,
                  g_size, what);
        return SAC_ERR_INVALID;
    }
    return SAC_OK;
}
