/*
 * batch_shard.h - `saccade batch` across machines (batch_shard.c): the shard of this process
 * taken from the launcher's environment (--shard auto), each shard's own output file (a
 * {shard} placeholder in -o), and merging the shards' JSON-lines results into one output equal
 * to a single-machine run (--merge).
 *
 * Size letters: none; no tensors pass through this interface.
 */
#ifndef SACCADE_BATCH_SHARD_H
#define SACCADE_BATCH_SHARD_H

/* The shard of this process, from the first of these that is set (a job array and the tasks of
 * one array element combine: index = array index x tasks + task, count = array count x tasks):
 *   tasks:  OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (mpirun), else PMI_RANK / PMI_SIZE
 *           (MPICH's mpiexec), else SLURM_PROCID / SLURM_NTASKS in an srun step
 *           (SLURM_STEP_NUM_TASKS set: a batch script's own SLURM_PROCID / NTASKS are not shards);
 *   array:  SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT (sbatch --array
 *           with a contiguous range, step 1).
 * *source names the variables used (static text). CLI_OK, or CLI_USAGE with a message naming
 * what was expected and found (none set, not numbers, an index outside its count, an array
 * with gaps). */
int batch_shard_from_env(int *index, int *count, const char **source);

/* path with every "{shard}" replaced by "I-of-N" (I zero-padded to the width of N, so the
 * files sort in shard order); NULL (message printed) when out of memory. The caller frees.
 * A path without the placeholder is copied. */
char *batch_shard_path(const char *path, int index, int count);
/* 1 when path contains "{shard}". */
int batch_shard_has_placeholder(const char *path);

/* `saccade batch --merge -o OUT SHARD.jsonl...`: read the shards' JSON-lines results (records as
 * `batch` writes them; a torn last line, a duplicate image, a record that is not one are errors
 * naming the file and line), check that inputs named "...I-of-N..." are shards 0..N-1 of one N,
 * and write every record, sorted by image path, to out_path (NULL: stdout) in format fmt
 * (jsonl, tsv or coco: what one `batch` run over the whole tree writes, up to the order of
 * jsonl/tsv records, which a run writes as they complete). Returns a CLI_* exit code. */
int batch_merge(const char *const *inputs, int n_inputs, const char *out_path, int fmt, int quiet);

#endif
