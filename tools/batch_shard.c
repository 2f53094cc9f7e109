/*
 * batch_shard.c - `saccade batch` across machines, see batch_shard.h: --shard auto from the
 * launcher's environment (Open MPI, MPICH, Slurm tasks and job arrays), per-shard output names
 * and --merge of the shards' results.
 *
 * Size letters: none.
 */
#include "batch_shard.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cli.h"
#include "fileio.h"
#include "output.h"
#include "sac.h"

#define PLACEHOLDER "{shard}"

/* ---------------------------------------------------------------- --shard auto */

/* An environment variable as an integer >= lo: 1 when set and valid, 0 when unset, -1 (message
 * printed) when set to something else. */
static int env_number(const char *name, long lo, long *out)
{
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || !isdigit((unsigned char)s[0]) || v < lo || v > INT_MAX) {
        cli_message("batch", "--shard auto: %s is \"%s\", expected an integer >= %ld", name, s, lo);
        return -1;
    }
    *out = v;
    return 1;
}

/* One level of sharding: a rank variable and a count variable, both set or neither. */
static int env_pair(const char *rank_var, const char *count_var, long *rank, long *count)
{
    int a = env_number(rank_var, 0, rank), b = env_number(count_var, 1, count);
    if (a < 0 || b < 0) return -1;
    if (a != b) {
        cli_message("batch", "--shard auto: %s is set but %s is not: expected both", a ? rank_var : count_var,
                    a ? count_var : rank_var);
        return -1;
    }
    if (a && *rank >= *count) {
        cli_message("batch", "--shard auto: %s=%ld is not below %s=%ld", rank_var, *rank, count_var, *count);
        return -1;
    }
    return a;
}

int batch_shard_from_env(int *index, int *count, const char **source)
{
    static const char *const tasks[][3] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK/SIZE"},
        {"PMI_RANK", "PMI_SIZE", "PMI_RANK/PMI_SIZE"},
        {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_PROCID/SLURM_NTASKS"},
    };
    long t = 0, nt = 1, a = 0, na = 1;
    const char *task_src = NULL, *array_src = NULL;
    for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]) && !task_src; i++) {
        /* a batch script has SLURM_PROCID=0 and SLURM_NTASKS of the whole allocation too: only
         * the tasks of an srun step (SLURM_STEP_NUM_TASKS set) are shards */
        if (!strcmp(tasks[i][0], "SLURM_PROCID") && !getenv("SLURM_STEP_NUM_TASKS")) continue;
        int r = env_pair(tasks[i][0], tasks[i][1], &t, &nt);
        if (r < 0) return CLI_USAGE;
        if (r) task_src = tasks[i][2];
    }
    long id, n, lo = 0, hi, step = 1;
    int has_id = env_number("SLURM_ARRAY_TASK_ID", 0, &id), has_n = env_number("SLURM_ARRAY_TASK_COUNT", 1, &n);
    int has_lo = env_number("SLURM_ARRAY_TASK_MIN", 0, &lo), has_hi = env_number("SLURM_ARRAY_TASK_MAX", 0, &hi);
    int has_step = env_number("SLURM_ARRAY_TASK_STEP", 1, &step);
    if (has_id < 0 || has_n < 0 || has_lo < 0 || has_hi < 0 || has_step < 0) return CLI_USAGE;
    if (has_id) {
        if (!has_n) {
            cli_message("batch", "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
            return CLI_USAGE;
        }
        /* --array=1-8 numbers its tasks 1..8; --array=0-15:2 or 1,5,7 leave gaps that would leave
         * shards without a task */
        if (step != 1 || id < lo || id - lo >= n || (has_hi && hi - lo + 1 != n)) {
            cli_message("batch", "--shard auto: job array task %ld of %ld tasks, ids from %ld to %ld in steps of %ld: "
                        "expected a contiguous range (sbatch --array=A-B), or give --shard I/N", id, n, lo,
                        has_hi ? hi : -1, step);
            return CLI_USAGE;
        }
        a = id - lo, na = n, array_src = "SLURM_ARRAY_TASK_ID-MIN/COUNT";
    }
    if (!task_src && !array_src) {
        cli_message("batch", "--shard auto: no shard in the environment: expected OMPI_COMM_WORLD_RANK/SIZE "
                    "(mpirun), PMI_RANK/PMI_SIZE (mpiexec), SLURM_ARRAY_TASK_ID/COUNT (sbatch --array) or "
                    "SLURM_PROCID/SLURM_NTASKS (in an srun step); or give --shard I/N");
        return CLI_USAGE;
    }
    if (na * nt > CLI_MAX_SHARDS) {
        cli_message("batch", "--shard auto: %ld array tasks x %ld tasks is more than %d shards", na, nt, CLI_MAX_SHARDS);
        return CLI_USAGE;
    }
    *index = (int)(a * nt + t), *count = (int)(na * nt);
    *source = task_src && array_src ? "SLURM_ARRAY_TASK_ID-MIN/COUNT x tasks" : task_src ? task_src : array_src;
    return CLI_OK;
}

int batch_shard_has_placeholder(const char *path) { return path && strstr(path, PLACEHOLDER) != NULL; }

char *batch_shard_path(const char *path, int index, int count)
{
    char tag[32];
    int width = snprintf(NULL, 0, "%d", count);
    snprintf(tag, sizeof(tag), "%0*d-of-%d", width, index, count);
    size_t n = 0;
    for (const char *p = strstr(path, PLACEHOLDER); p; p = strstr(p + 1, PLACEHOLDER)) n++;
    const size_t len = strlen(path) + n * strlen(tag) + 1;
    char *out = sac_malloc(len), *o = out;
    if (!out) return NULL;
    for (const char *p = path; *p;) {
        if (!strncmp(p, PLACEHOLDER, strlen(PLACEHOLDER))) {
            o += sprintf(o, "%s", tag);
            p += strlen(PLACEHOLDER);
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

/* ---------------------------------------------------------------- --merge */

typedef struct {
    char *image, *caption, *error; /* caption or error is NULL */
    double logprob;
    int input;                     /* which input file it came from */
} MergeRecord;

typedef struct {
    MergeRecord *r;
    size_t n, cap;
} MergeList;

static void merge_list_free(MergeList *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->r[i].image), free(l->r[i].caption), free(l->r[i].error);
    free(l->r);
}

static int cmp_record(const void *a, const void *b)
{
    const MergeRecord *x = a, *y = b;
    int c = strcmp(x->image, y->image);
    return c ? c : x->input - y->input;
}

static char *dup_string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* One line of a shard's results as a record; 0, or -1 (message printed) when it is not one. */
static int parse_line(const char *path, long line_no, char *line, int input, MergeRecord *r)
{
    cJSON *o = cJSON_Parse(line);
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(o, "logprob");
    memset(r, 0, sizeof(*r));
    r->input = input;
    if (cJSON_IsObject(o)) {
        r->image = dup_string(o, "image");
        r->caption = dup_string(o, "caption");
        r->error = dup_string(o, "error");
        r->logprob = cJSON_IsNumber(lp) ? lp->valuedouble : 0.0;
    }
    int ok = r->image && (r->caption ? !r->error && cJSON_IsNumber(lp) : r->error != NULL);
    cJSON_Delete(o);
    if (!ok) {
        free(r->image), free(r->caption), free(r->error);
        cli_message("batch", "%s: line %ld is not a batch record: expected {\"image\": PATH, \"caption\": TEXT, "
                    "\"logprob\": X} or {\"image\": PATH, \"error\": TEXT} (--merge reads the jsonl that "
                    "`saccade batch -o FILE.jsonl` writes)", path, line_no);
        return -1;
    }
    return 0;
}

static int read_shard(const char *path, int input, MergeList *l)
{
    uint8_t *buf;
    size_t len;
    if (sac_read_file(path, 0, &buf, &len)) return -1;
    int st = 0;
    long line_no = 0;
    char *p = (char *)buf, *end = p + len;
    while (p < end && !st) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        line_no++;
        if (!nl) {
            cli_message("batch", "%s: line %ld has no end (the shard's run was interrupted: finish it with the same "
                        "command and --resume, then merge)", path, line_no);
            st = -1;
            break;
        }
        *nl = 0;
        if (*p) {
            MergeRecord *r = sac_grow(l->r, &l->cap, l->n + 1, sizeof(*r));
            if (!r) {
                cli_message("batch", "out of memory reading %s", path);
                st = -1;
                break;
            }
            l->r = r;
            st = parse_line(path, line_no, p, input, &l->r[l->n]);
            if (!st) l->n++;
        }
        p = nl + 1;
    }
    free(buf);
    return st;
}

/* Inputs named "...I-of-N..." (batch_shard_path): all of one N, each of 0..N-1 once. Inputs
 * without such a name are not checked. */
static int check_shard_names(const char *const *inputs, int n)
{
    long count = -1;
    char *seen = NULL;
    int st = 0, named = 0;
    for (int i = 0; i < n && !st; i++) {
        const char *base = strrchr(inputs[i], '/') ? strrchr(inputs[i], '/') + 1 : inputs[i];
        const char *of = strstr(base, "-of-");
        const char *d = of;
        while (d > base && isdigit((unsigned char)d[-1])) d--;
        if (!of || d == of || !isdigit((unsigned char)of[4])) continue;
        long idx = strtol(d, NULL, 10), cnt = strtol(of + 4, NULL, 10);
        named++;
        if (count < 0) {
            count = cnt;
            if (cnt < 1 || cnt > CLI_MAX_SHARDS || !(seen = calloc((size_t)cnt, 1))) {
                cli_message("batch", "%s: shard count %ld in the name is not usable", inputs[i], cnt);
                st = -1;
                break;
            }
        }
        if (cnt != count || idx < 0 || idx >= count) {
            cli_message("batch", "%s: shard %ld-of-%ld, expected one of 0..%ld of %ld (shards of different runs?)",
                        inputs[i], idx, cnt, count - 1, count);
            st = -1;
        } else if (seen[idx]++) {
            cli_message("batch", "%s: shard %ld-of-%ld is given twice", inputs[i], idx, cnt);
            st = -1;
        }
    }
    if (!st && named && named != count) {
        long missing = 0;
        while (missing < count && seen[missing]) missing++;
        cli_message("batch", "--merge: %d of %ld shards given, shard %ld-of-%ld is missing", named, count, missing,
                    count);
        st = -1;
    }
    free(seen);
    return st;
}

int batch_merge(const char *const *inputs, int n_inputs, const char *out_path, int fmt, int quiet)
{
    if (fmt != BATCH_JSONL && fmt != BATCH_TSV && fmt != BATCH_COCO)
        return cli_usage_error("batch", "--merge writes jsonl, tsv or coco (a gallery needs the images: run batch "
                               "--format html on the whole tree)");
    if (n_inputs < 1) return cli_usage_error("batch", "--merge: give the shards' result files (jsonl)");
    if (check_shard_names(inputs, n_inputs)) return CLI_USAGE;
    int rc = CLI_FAILED;
    MergeList l = {0};
    SacLock *lock = NULL;
    BatchOutput *out = NULL;
    size_t errors = 0;
    if (out_path && sac_output_check_inputs(out_path, "-o", inputs, n_inputs)) return CLI_USAGE;
    for (int i = 0; i < n_inputs; i++)
        if (read_shard(inputs[i], i, &l)) goto done;
    qsort(l.r, l.n, sizeof(*l.r), cmp_record);
    for (size_t i = 0; i < l.n; i++) {
        if (i && !strcmp(l.r[i].image, l.r[i - 1].image)) {
            cli_message("batch", "--merge: %s has a record in %s and in %s: expected each image in one shard (the "
                        "same shard given twice, or shards of different runs?)", l.r[i].image,
                        inputs[l.r[i - 1].input], inputs[l.r[i].input]);
            rc = CLI_USAGE;
            goto done;
        }
        errors += l.r[i].error != NULL;
    }
    if (out_path) {
        int busy;
        if (!(lock = sac_lock_acquire(out_path, NULL, &busy))) {
            rc = busy ? CLI_USAGE : CLI_FAILED;
            goto done;
        }
    }
    if (!(out = batch_output_open(out_path, (BatchFormat)fmt, 0)) || batch_output_start(out)) goto done;
    for (size_t i = 0; i < l.n; i++) {
        const MergeRecord *m = &l.r[i];
        BatchRecord r = {m->image, m->caption, m->logprob, m->error, NULL, NULL, (long)i};
        if (batch_output_write(out, &r)) goto done;
    }
    BatchOutput *o = out;
    out = NULL;
    if (batch_output_close(o, 1)) goto done;
    if (!quiet)
        sac_info("merged %zu records (%zu errors) from %d file(s)%s%s", l.n, errors, n_inputs, out_path ? " -> " : "",
                 out_path ? out_path : "");
    rc = CLI_OK;
done:
    if (out) batch_output_close(out, 0);
    sac_lock_release(lock);
    merge_list_free(&l);
    return rc;
}
