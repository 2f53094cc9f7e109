#!/bin/sh
# test_batch_shard.sh - `saccade batch` across machines: --shard auto from the launcher's
# environment (Open MPI, Slurm job arrays, Slurm tasks, both combined), {shard} in -o, and
# --merge of the shards' jsonl into jsonl, tsv and coco equal to one run over the whole tree;
# the errors (no launcher, an array with gaps, a missing or repeated shard, a torn line). With
# mpirun present, `mpirun -np 3 saccade batch --shard auto` too.
#
# usage: test_batch_shard.sh SACCADE BATCH_TESTTOOL [MPIRUN]
set -eu
S=$1
T=$2
MPIRUN=${3:-}
W=$(mktemp -d "${TMPDIR:-/tmp}/saccade-shard.XXXXXX")
trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1
# no launcher variables from the environment the test runs in
unset OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE PMI_RANK PMI_SIZE SLURM_PROCID SLURM_NTASKS SLURM_STEP_NUM_TASKS \
    SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX SLURM_ARRAY_TASK_STEP || true
fails=0
check() { # check "what" COMMAND...
    what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
same() { cmp -s "$1" "$2" || { diff "$1" "$2" | head -10; return 1; }; }
status() { # status N COMMAND...: exit status is N (stderr kept in $W/status.err)
    want=$1
    shift
    set +e
    "$@" >"$W/status.out" 2>"$W/status.err"
    got=$?
    set -e
    [ "$got" = "$want" ] || { echo "  exit status $got, expected $want: $*"; cat "$W/status.err"; return 1; }
}
says() { grep -q "$1" "$W/status.err" || { echo "  stderr lacks \"$1\":"; cat "$W/status.err"; return 1; }; }

# ---- a tiny model and a tree with a broken file ----
mkdir "$W/train"
"$T" images "$W/train" 6 24 png,jpg t
i=0
for f in t000.png t001.jpg t002.png t003.jpg t004.png t005.jpg; do
    case $((i % 2)) in 0) c="a red striped square" ;; *) c="a blue square with lines" ;; esac
    printf '%s\t%s\n' "$f" "$c" >>"$W/train/captions.tsv"
    i=$((i + 1))
done
M=$W/tiny.safetensors
"$S" train --data "$W/train" --dev-split none --train-split all --epochs 3 --image-size 24 --conv 8s2,16p,16 \
    --att 16 --hidden 32 --embed 16 --max-len 8 --no-augment --batch 6 --min-count 1 --threads 1 --quiet --out "$M"
P=$W/photos
mkdir -p "$P/sub"
"$T" images "$P" 7 40 png,jpg,bmp a
"$T" images "$P/sub" 5 33 jpg,png b
echo "not an image" >"$P/fake.jpg"
B="$S batch $P --model $M --threads 1 --quiet"

# ---- one run over the whole tree: the reference ----
$B -o "$W/all.jsonl" 2>/dev/null || true
$B -o "$W/all.tsv" 2>/dev/null || true
$B --format coco -o "$W/all.json" 2>/dev/null || true
sort "$W/all.jsonl" >"$W/all.sorted"
sort "$W/all.tsv" >"$W/all.tsv.sorted"
check "reference run: 13 records, one error" sh -c '[ "$(wc -l <"$0")" = 13 ] && [ "$(grep -c "\"error\"" "$0")" = 1 ]' "$W/all.jsonl"

# ---- --shard auto under Open MPI's variables ----
mkdir -p "$W/ompi"
for i in 0 1 2; do
    OMPI_COMM_WORLD_RANK=$i OMPI_COMM_WORLD_SIZE=3 $B --shard auto -o "$W/ompi/c.{shard}.jsonl" 2>/dev/null || true
done
check "OMPI rank/size: three files named 0-of-3 .. 2-of-3" \
    test -s "$W/ompi/c.0-of-3.jsonl" -a -s "$W/ompi/c.1-of-3.jsonl" -a -s "$W/ompi/c.2-of-3.jsonl"
for i in 0 1 2; do
    $B --shard $i/3 -o "$W/explicit.$i.jsonl" 2>/dev/null || true
    check "OMPI rank $i of 3 is --shard $i/3" sh -c 'sort "$0" >"$0.s"; sort "$1" >"$1.s"; cmp -s "$0.s" "$1.s"' \
        "$W/ompi/c.$i-of-3.jsonl" "$W/explicit.$i.jsonl"
done
cat "$W"/ompi/c.*-of-3.jsonl | sort >"$W/ompi.union"
check "the union of the shards is the whole run" same "$W/ompi.union" "$W/all.sorted"

# ---- merge: jsonl, tsv, coco ----
check "merge to jsonl: exit 0" status 0 "$S" batch --merge --quiet -o "$W/m.jsonl" "$W"/ompi/c.*-of-3.jsonl
check "merge to jsonl: sorted by path" sh -c 'cut -d\" -f4 "$0" | sort -c' "$W/m.jsonl"
sort "$W/m.jsonl" >"$W/m.sorted"
check "merge to jsonl: the records of the whole run" same "$W/m.sorted" "$W/all.sorted"
check "merge to tsv: exit 0" status 0 "$S" batch --merge --quiet -o "$W/m.tsv" "$W"/ompi/c.*-of-3.jsonl
sort "$W/m.tsv" >"$W/m.tsv.sorted"
check "merge to tsv: the lines of the whole run" same "$W/m.tsv.sorted" "$W/all.tsv.sorted"
check "merge to coco: exit 0" status 0 "$S" batch --merge --quiet --format coco -o "$W/m.json" "$W"/ompi/c.*-of-3.jsonl
check "merge to coco: byte for byte the whole run's" same "$W/m.json" "$W/all.json"
check "merge to stdout" sh -c '"$0" batch --merge "$1"/c.*-of-3.jsonl | sort | cmp -s - "$2"' "$S" "$W/ompi" \
    "$W/all.sorted"

# ---- Slurm: a job array numbered from 1, srun tasks, and both ----
mkdir "$W/array" "$W/tasks" "$W/both"
for id in 1 2 3; do
    SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 SLURM_ARRAY_TASK_COUNT=3 \
        $B --shard auto -o "$W/array/{shard}.jsonl" 2>/dev/null || true
done
for i in 0 1 2; do
    check "array task $((i + 1)) (ids 1..3) is shard $i/3" sh -c 'sort "$0" | cmp -s - "$1.s"' \
        "$W/array/$i-of-3.jsonl" "$W/explicit.$i.jsonl"
done
for i in 0 1 2; do
    SLURM_PROCID=$i SLURM_NTASKS=3 SLURM_STEP_NUM_TASKS=3 $B --shard auto -o "$W/tasks/{shard}.jsonl" 2>/dev/null || true
done
check "SLURM_PROCID/NTASKS: shard 1/3" sh -c 'sort "$0" | cmp -s - "$1.s"' "$W/tasks/1-of-3.jsonl" "$W/explicit.1.jsonl"
for a in 0 1; do
    for t in 0 1 2; do
        SLURM_ARRAY_TASK_ID=$a SLURM_ARRAY_TASK_COUNT=2 SLURM_PROCID=$t SLURM_NTASKS=3 SLURM_STEP_NUM_TASKS=3 \
            $B --shard auto -o "$W/both/{shard}.jsonl" 2>/dev/null || true
    done
done
check "array x tasks: six files, 0-of-6 .. 5-of-6" sh -c '[ "$(ls "$0" | wc -l)" = 6 ] && [ -e "$0/5-of-6.jsonl" ]' "$W/both"
$B --shard 4/6 -o "$W/explicit.4of6.jsonl" 2>/dev/null || true
check "array task 1, srun task 1 of 3 is shard 4/6" sh -c 'sort "$0" >"$0.s"; sort "$1" | cmp -s - "$0.s"' \
    "$W/explicit.4of6.jsonl" "$W/both/4-of-6.jsonl"
check "merge of the six: the whole run" sh -c '"$0" batch --merge --quiet "$1"/*.jsonl | sort | cmp -s - "$2"' \
    "$S" "$W/both" "$W/all.sorted"

# ---- errors ----
check "--shard auto without a launcher: exit 2" status 2 $B --shard auto -o "$W/x.{shard}.jsonl"
check "... naming the variables it looked for" says "SLURM_ARRAY_TASK_ID"
check "--shard auto, 3 shards, -o without {shard}: exit 2" \
    status 2 env OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=3 $B --shard auto -o "$W/x.jsonl"
check "... says -o needs {shard}" says "{shard}"
check "rank >= size: exit 2" status 2 env OMPI_COMM_WORLD_RANK=3 OMPI_COMM_WORLD_SIZE=3 $B --shard auto -o "$W/x{shard}"
check "rank not a number: exit 2" status 2 env SLURM_PROCID=x SLURM_NTASKS=3 SLURM_STEP_NUM_TASKS=3 $B --shard auto -o "$W/x{shard}"
check "a batch script's own SLURM_PROCID=0/NTASKS=4 (no srun step) is no shard: exit 2" \
    status 2 env SLURM_PROCID=0 SLURM_NTASKS=4 $B --shard auto -o "$W/x{shard}"
check "a job array in steps of 2: exit 2" status 2 env SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=0 \
    SLURM_ARRAY_TASK_MAX=4 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_STEP=2 $B --shard auto -o "$W/x{shard}"
check "... asks for a contiguous range" says "contiguous"
check "a job array with gaps (1,5,7): exit 2" status 2 env SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=1 \
    SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_COUNT=3 $B --shard auto -o "$W/x{shard}"
check "merge with shard 1-of-3 missing: exit 2" status 2 "$S" batch --merge -o "$W/x.jsonl" \
    "$W/ompi/c.0-of-3.jsonl" "$W/ompi/c.2-of-3.jsonl"
check "... names the missing shard" says "1-of-3 is missing"
cp "$W/ompi/c.0-of-3.jsonl" "$W/copy.jsonl"
cp "$W/ompi/c.0-of-3.jsonl" "$W/first.jsonl"
check "merge with an image twice: exit 2" status 2 "$S" batch --merge -o "$W/x.jsonl" "$W/first.jsonl" "$W/copy.jsonl"
check "... names both files" says "copy.jsonl"
head -c 50 "$W/ompi/c.1-of-3.jsonl" >"$W/torn.jsonl"
check "merge of a torn shard: exit 1" status 1 "$S" batch --merge -o "$W/x.jsonl" "$W/torn.jsonl"
check "... says to --resume it" says "resume"
echo '{"image": "a.png"}' >"$W/bad.jsonl"
check "merge of a line that is not a record: exit 1" status 1 "$S" batch --merge -o "$W/x.jsonl" "$W/bad.jsonl"
check "... names the file and line" says "bad.jsonl: line 1"
check "merge to html: exit 2" status 2 "$S" batch --merge -o "$W/x.html" "$W/ompi/c.0-of-3.jsonl"
check "merge onto one of its inputs: exit 2" status 2 "$S" batch --merge -o "$W/copy.jsonl" "$W/copy.jsonl"
check "... its input intact" same "$W/copy.jsonl" "$W/ompi/c.0-of-3.jsonl"

# ---- a real launcher ----
if [ -n "$MPIRUN" ] && command -v "$MPIRUN" >/dev/null 2>&1; then
    mkdir "$W/mpirun"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$MPIRUN" --oversubscribe -np 3 \
        $B --shard auto -o "$W/mpirun/{shard}.jsonl" >"$W/mpirun.out" 2>&1 || true
    check "mpirun -np 3 --shard auto, merged: the whole run" \
        sh -c '"$0" batch --merge --quiet "$1"/*-of-3.jsonl | sort | cmp -s - "$2"' "$S" "$W/mpirun" "$W/all.sorted" ||
        cat "$W/mpirun.out"
else
    echo "skip: no mpirun (Debian openmpi-bin): the real launcher is not tried"
fi

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all batch shard checks passed"
