#!/bin/sh
# test_mpi.sh - data-parallel training over MPI (issue 13), end to end on tiny drawn data:
#   1. `mpirun -np 1 saccade train` is the program without mpirun, bit for bit;
#   2. `mpirun -np 2` (and -np 3) with the same global batch gives the same parameters as one
#      process, within float summation order (tolerance below);
#   3. a run stopped by --max-steps and resumed under `mpirun -np 2` ends with the checkpoint of
#      an uninterrupted `mpirun -np 2` run, bit for bit (also with dropout, whose masks each rank
#      draws from its own stream); resumed with -np 1 instead, the same within the tolerance of 2.;
#      on a frozen backbone (cached features and their mirror images, held 1/N per rank), -np 2
#      equals -np 1 within that tolerance too; so does self-critical training (--scst) with beam
#      captions, and with samples a stopped and resumed -np 2 run is the uninterrupted one;
#   4. SIGTERM to one rank stops both ranks (no hang) with a checkpoint; resuming it ends where
#      an uninterrupted run ends; SIGUSR1 to mpirun stops both with a checkpoint;
#   5. the log (written by rank 0 only) records the communication per step;
#   6. a failure on rank 0 (its log cannot be opened, or a write to it fails mid-run) or on rank 1
#      alone (its --data cannot be read) ends both ranks with exit 1, never a hang; a task of srun
#      without an MPI plugin refuses to train alone.
# Skips (exit 77) when saccade was built without MPI or mpirun is missing.
#
# usage: test_mpi.sh SACCADE MODEL_DIFF BATCH_TESTTOOL BACKBONE_HELPER yes|no [MPIRUN]
set -u
S=$1
D=$2
T=$3
BB=$4
HAVE_MPI=$5
MPIRUN=${6:-mpirun}
if [ "$HAVE_MPI" != yes ]; then
    echo "skip: saccade was built without MPI (meson -Dmpi=enabled, Debian libopenmpi-dev)"
    exit 77
fi
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "skip: no $MPIRUN (Debian openmpi-bin)"; exit 77; }
W=$(mktemp -d "${TMPDIR:-/tmp}/saccade-mpi.XXXXXX")
trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1
# CI runs as root; --oversubscribe: two ranks on however few cores the machine has
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="timeout 300 $MPIRUN --oversubscribe --bind-to none"
fails=0
check() { # check "what" COMMAND...
    what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

# ---- tiny data: 20 drawn images, two captions each (so the caption picks are exercised) ----
mkdir "$W/data"
"$T" images "$W/data" 20 24 png t >/dev/null
for i in $(seq 0 19); do
    f=$(printf 't%03d.png' "$i")
    case $((i % 4)) in
    0) a="a red striped square" b="red stripes on a square" ;;
    1) a="a blue square with lines" b="blue lines in a square" ;;
    2) a="a green pattern of stripes" b="green stripes" ;;
    *) a="a small yellow square" b="yellow on the square" ;;
    esac
    printf '%s\t%s\n%s\t%s\n' "$f" "$a" "$f" "$b" >>"$W/data/captions.tsv"
done
# global batch 8 images x 2 captions: 3 steps an epoch (8 + 8 + 4 images); the dev split is the
# training set (rank 0 evaluates it every epoch, and keeps the best model)
FLAGS="--data $W/data --train-split all --dev-split all --eval-beam 1 --image-size 24 --conv 8s2,16p,16
    --no-batchnorm --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --lambda 0.5 --lr 3e-3 --lr-encoder 3e-3
    --batch 8 --min-count 1 --threads 1 --quiet --seed 7 --f32"
train() { # train NAME LAUNCHER... -- FLAGS...: run into $W/NAME.*, exit status in $W/NAME.rc
    name=$1
    shift
    "$@" --out "$W/$name.safetensors" --log "$W/$name.jsonl" >"$W/$name.out" 2>"$W/$name.err"
    echo $? >"$W/$name.rc"
}
rc() { cat "$W/$1.rc"; }
children() { # children PID: the processes whose parent is PID (from /proc: no procps needed)
    for f in /proc/[0-9]*/stat; do
        read -r pid comm state ppid rest 2>/dev/null <"$f" || continue
        [ "$ppid" = "$1" ] && echo "$pid"
    done
}
show() { echo "  exit status $(rc "$1")"; head -20 "$W/$1.err"; }

# ---- 1. one rank = the program ----
train plain "$S" train $FLAGS --epochs 2
train np1 $MPI -np 1 "$S" train $FLAGS --epochs 2
check "the program trains (6 steps)" test "$(rc plain)" = 0 || show plain
check "mpirun -np 1 trains" test "$(rc np1)" = 0 || show np1
check "mpirun -np 1: checkpoint bit for bit the program's" "$D" "$W/plain.safetensors.ckpt" "$W/np1.safetensors.ckpt" exact
check "mpirun -np 1: model bit for bit the program's" "$D" "$W/plain.safetensors" "$W/np1.safetensors" exact

# ---- 2. two ranks, the same global batch ----
# Tolerance. Each rank sums its share of the batch and MPI_Allreduce adds the partial sums, so
# every gradient element is the same sum of the same float terms in another order: a relative
# difference d of a few float epsilons (1.2e-7), more where terms cancel; say d < 1e-4. Adam
# divides each element by its own running magnitude, so d becomes an update difference of about
# lr * d per step: after 6 steps at lr 3e-3, under 2e-6 (seen: 9.4e-7). Allowed
# |a - b| <= 1e-5 + 1e-4 |b|: five times that estimate, and 300 times smaller than what one
# step moves a parameter (up to lr = 3e-3), so a lost or doubled share or a skipped all-reduce
# cannot pass. A gradient off by one common factor would (Adam does not see scale): the log's
# gradient norm and loss are compared below for that.
# Left out: decoder.full_att.bias, the attention scores' bias, whose true gradient is exactly 0
# (a softmax over positions does not change when every score moves by the same amount): its
# computed gradient is rounding noise, which Adam turns into steps of +-lr whose sign depends on
# the summation order. And Adam's moments ("optim.", one flat buffer that includes that bias);
# they are compared bit for bit in the resume checks of 3.
TOL="1e-5 1e-4"
SKIP="--skip decoder.full_att.bias,optim."
train np2 $MPI -np 2 "$S" train $FLAGS --epochs 2
check "mpirun -np 2 trains" test "$(rc np2)" = 0 || show np2
check "mpirun -np 2: the checkpoint's parameters equal one process's within $TOL" \
    "$D" $SKIP "$W/np2.safetensors.ckpt" "$W/np1.safetensors.ckpt" $TOL
check "mpirun -np 2: the best model equals one process's within $TOL" \
    "$D" $SKIP "$W/np2.safetensors" "$W/np1.safetensors" $TOL
check "mpirun -np 2: one log, written by rank 0 (2 epochs, 2 dev lines)" \
    test "$(grep -c '"dev"' "$W/np2.jsonl")" = 2
check "the log records the communication of each step (seconds and bytes)" \
    sh -c 'grep "\"step\"" "$0" | grep -q "\"comm_s\".*\"comm_bytes\""' "$W/np2.jsonl"
train np3 $MPI -np 3 "$S" train $FLAGS --epochs 2
check "mpirun -np 3 (uneven shares: 3+3+2 of 8 images, 7+7+6 photos held) equals one process within $TOL" \
    "$D" $SKIP "$W/np3.safetensors.ckpt" "$W/np1.safetensors.ckpt" $TOL
same_in_log() { # same_in_log KEY [RUN2 RUN1]: the last value of KEY in the logs of -np 2 and -np 1 (np2, np1),
    # to 1e-4 relative
    a=$(grep -o "\"$1\":[0-9.e+-]*" "$W/${2:-np2}.jsonl" | tail -1 | cut -d: -f2)
    b=$(grep -o "\"$1\":[0-9.e+-]*" "$W/${3:-np1}.jsonl" | tail -1 | cut -d: -f2)
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * b) }' ||
        { echo "  $1: $a (${2:-np2}) vs $b (${3:-np1})"; return 1; }
}
check "the training loss of -np 2 equals -np 1's (1e-4 relative)" same_in_log loss
check "the gradient norm of -np 2 equals -np 1's (1e-4 relative)" same_in_log grad_norm
check "the dev CIDEr-D of -np 2 equals -np 1's" same_in_log cider_d

# ---- 3. resume under MPI ----
train r2 $MPI -np 2 "$S" train $FLAGS --epochs 2 --max-steps 4
check "-np 2 --max-steps 4 stops with a checkpoint (exit 1, says resume)" \
    sh -c '[ "$(cat "$0")" = 1 ] && grep -q resume "$1"' "$W/r2.rc" "$W/r2.err"
cp "$W/r2.safetensors.ckpt" "$W/r1.safetensors.ckpt" # the same checkpoint, resumed by one process below
train r2 $MPI -np 2 "$S" train $FLAGS --epochs 2 --resume
check "-np 2 --resume finishes" test "$(rc r2)" = 0 || show r2
check "-np 2 stopped + resumed: checkpoint bit for bit the uninterrupted -np 2 run's" \
    "$D" "$W/r2.safetensors.ckpt" "$W/np2.safetensors.ckpt" exact
check "-np 2 stopped + resumed: the best model bit for bit the uninterrupted run's" \
    "$D" "$W/r2.safetensors" "$W/np2.safetensors" exact
train r1 "$S" train $FLAGS --epochs 2 --resume
check "a -np 2 checkpoint resumed by one process finishes" test "$(rc r1)" = 0 || show r1
check "... within $TOL of the uninterrupted runs" "$D" $SKIP "$W/r1.safetensors.ckpt" "$W/np1.safetensors.ckpt" $TOL

# dropout: each rank's masks come from a stream derived from the run's (train_dist_rank_rng),
# so results depend on N, but a stopped and resumed run is still the uninterrupted one
DROP=$(echo "$FLAGS" | sed 's/--dropout 0/--dropout 0.3/')
train d2 $MPI -np 2 "$S" train $DROP --epochs 2
train dr2 $MPI -np 2 "$S" train $DROP --epochs 2 --max-steps 4
train dr2 $MPI -np 2 "$S" train $DROP --epochs 2 --resume
check "dropout 0.3, -np 2 stopped + resumed: bit for bit the uninterrupted run" \
    "$D" "$W/dr2.safetensors.ckpt" "$W/d2.safetensors.ckpt" exact

# a frozen backbone (random weights, grid 14 at 64x64: 4x4 positions), features of the images
# and their mirror images cached by the rank that holds them
"$BB" "$W/bb.safetensors" 5 || { echo "FAIL: backbone_helper"; exit 1; }
BFLAGS="--data $W/data --train-split all --dev-split all --eval-beam 1 --backbone $W/bb.safetensors --grid 14
    --proj 16 --image-size 64 --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --lambda 0.5 --lr 3e-3
    --lr-encoder 3e-3 --batch 8 --min-count 1 --threads 1 --quiet --seed 7 --f32 --epochs 2"
train b1 $MPI -np 1 "$S" train $BFLAGS
train b2 $MPI -np 2 "$S" train $BFLAGS
check "frozen backbone: -np 1 and -np 2 train" test "$(rc b1)$(rc b2)" = 00 || { show b1; show b2; }
check "frozen backbone: -np 2 equals -np 1 within $TOL" "$D" $SKIP "$W/b2.safetensors.ckpt" "$W/b1.safetensors.ckpt" $TOL

# self-critical training from the -np 1 model: each rank decodes and rewards the captions of its
# share's photos, its weights normalised over the whole batch. Beam captions do not depend on N:
# -np 2 equals one process within $TOL (and the log's gradient norm and sampled CIDEr-D agree, so
# a share weighted by the wrong factor cannot pass). Multinomial samples come from each rank's
# stream (train_dist_rank_rng), so they depend on N, but a stopped and resumed run is the
# uninterrupted one bit for bit.
SFLAGS="--data $W/data --train-split all --dev-split all --eval-beam 1 --threads 1 --quiet --seed 7 --f32
    --batch 8 --lr 3e-3 --lr-encoder 3e-3 --epochs 2 --scst --init $W/np1.safetensors --scst-baseline mean"
train sb1 "$S" train $SFLAGS --scst-sample beam
train sb2 $MPI -np 2 "$S" train $SFLAGS --scst-sample beam
check "--scst, beam captions: one process and -np 2 train" test "$(rc sb1)$(rc sb2)" = 00 || { show sb1; show sb2; }
moved() { # moved RUN: its log's last gradient norm is above 1e-6 (the step changed the parameters)
    awk -v g="$(grep -o '"grad_norm":[0-9.e+-]*' "$W/$1.jsonl" | tail -1 | cut -d: -f2)" \
        'BEGIN { exit !(g != "" && g > 1e-6) }'
}
check "--scst, beam captions: the steps change the parameters (gradient norm > 0)" moved sb1
check "--scst, beam captions: -np 2 equals one process within $TOL" \
    "$D" $SKIP "$W/sb2.safetensors.ckpt" "$W/sb1.safetensors.ckpt" $TOL
check "--scst, beam captions: the gradient norm of -np 2 equals one process's" same_in_log grad_norm sb2 sb1
check "--scst, beam captions: the captions' CIDEr-D of -np 2 equals one process's" same_in_log sample_cider sb2 sb1
train sm2 $MPI -np 2 "$S" train $SFLAGS
train smr2 $MPI -np 2 "$S" train $SFLAGS --max-steps 4
train smr2 $MPI -np 2 "$S" train $SFLAGS --resume
check "--scst, samples: -np 2 trains, stopped and resumed too" test "$(rc sm2)$(rc smr2)" = 00 || { show sm2; show smr2; }
check "--scst, samples: the steps change the parameters" moved sm2
check "--scst, samples, -np 2 stopped + resumed: bit for bit the uninterrupted run" \
    "$D" "$W/smr2.safetensors.ckpt" "$W/sm2.safetensors.ckpt" exact

# ---- failures on one rank end every rank (exit 1), never a hang (timeout's 124) ----
$MPI -np 2 "$S" train $FLAGS --epochs 2 --out "$W/fs.safetensors" --log "$W/no/such/dir/log.jsonl" \
    >"$W/fs.out" 2>"$W/fs.err"
fs_rc=$?
check "rank 0 cannot open the log (setup): both ranks end, exit $fs_rc" test $fs_rc = 1 || head -20 "$W/fs.err"
check "... rank 0 names the file" grep -q "no/such/dir/log.jsonl" "$W/fs.err"
$MPI -np 2 "$S" train $FLAGS --epochs 3 --out "$W/full.safetensors" --log /dev/full >"$W/full.out" 2>"$W/full.err"
full_rc=$?
check "rank 0's log write fails mid-run (/dev/full): both ranks end, exit $full_rc" test $full_rc = 1 ||
    head -20 "$W/full.err"
check "... rank 1 says another rank failed" grep -q "rank 0 failed\|other rank" "$W/full.err"

# rank 1 alone cannot read the data (mpirun's MPMD form: one command line per rank)
$MPI -np 1 "$S" train $FLAGS --epochs 2 --out "$W/mp.safetensors" : \
    -np 1 "$S" train $FLAGS --epochs 2 --out "$W/mp.safetensors" --data "$W/no-such-data" >"$W/mp.out" 2>"$W/mp.err"
mp_rc=$?
check "rank 1 alone cannot open the data (setup): both ranks end, exit $mp_rc" test $mp_rc = 1 || head -20 "$W/mp.err"
check "... rank 0 says another rank failed" grep -q "rank 0 of 2: stopping: 1 other rank" "$W/mp.err"

SLURM_STEP_NUM_TASKS=4 "$S" train $FLAGS --epochs 1 --out "$W/lone.safetensors" >"$W/lone.out" 2>"$W/lone.err"
lone_rc=$?
check "one of 4 srun tasks that is no MPI rank (srun without --mpi) refuses to train alone: exit $lone_rc" \
    sh -c '[ "$0" = 1 ] && grep -q "srun --mpi=pmix" "$1" && [ ! -e "$2" ]' $lone_rc "$W/lone.err" "$W/lone.safetensors"

# ---- 4. a signal to one rank stops both, with a checkpoint ----
LONG="--epochs 100000 --dev-split none --checkpoint-every 100000"
$MPI -np 2 "$S" train $FLAGS $LONG --out "$W/sig.safetensors" >"$W/sig.out" 2>"$W/sig.err" &
mpirun_pid=$!
i=0
while [ $i -lt 600 ] && [ ! -s "$W/sig.safetensors.ckpt" ]; do # the first epoch's checkpoint (or 60 s)
    sleep 0.1
    i=$((i + 1))
done
victim=""
for p in $(children $mpirun_pid); do # timeout's child mpirun, whose children are the ranks
    for q in $(children "$p"); do
        case $(cat "/proc/$q/comm" 2>/dev/null) in saccade*) victim=$q ;; esac
    done
done
if [ -n "$victim" ]; then
    kill -TERM "$victim"
    wait $mpirun_pid
    sig_rc=$?
    check "SIGTERM to one rank: mpirun ends without a hang (exit $sig_rc, not timeout's 124)" test $sig_rc -ne 124
    check "... the run stopped and said so (rank 0 speaks for it)" test "$(grep -c "training stopped" "$W/sig.err")" = 1 ||
        head -20 "$W/sig.err"
    step=$("$D" step "$W/sig.safetensors.ckpt")
    check "... a checkpoint was written after the first epoch (step $step)" test "${step:-0}" -ge 3
    to=$((${step:-0} + 5))
    $MPI -np 2 "$S" train $FLAGS $LONG --resume --max-steps $to --out "$W/sig.safetensors" >>"$W/sig.out" 2>>"$W/sig.err"
    train long $MPI -np 2 "$S" train $FLAGS $LONG --max-steps $to
    check "... resumed to step $to: the checkpoint of an uninterrupted run to step $to, bit for bit" \
        "$D" "$W/sig.safetensors.ckpt" "$W/long.safetensors.ckpt" exact
else
    kill -TERM $mpirun_pid 2>/dev/null
    wait $mpirun_pid
    echo "FAIL: no rank of mpirun ($mpirun_pid) found to signal"
    fails=$((fails + 1))
fi

# ---- SIGUSR1 to mpirun (which forwards it to every rank) stops the run with a checkpoint ----
$MPI -np 2 "$S" train $FLAGS $LONG --out "$W/usr.safetensors" >"$W/usr.out" 2>"$W/usr.err" &
timeout_pid=$!
i=0
while [ $i -lt 600 ] && [ ! -s "$W/usr.safetensors.ckpt" ]; do
    sleep 0.1
    i=$((i + 1))
done
mpirun_pid=$(children $timeout_pid | head -1)
if [ -n "$mpirun_pid" ]; then
    kill -USR1 "$mpirun_pid"
    wait $timeout_pid
    usr_rc=$?
    check "SIGUSR1 to mpirun: it ends (exit $usr_rc, not timeout's 124)" test $usr_rc -ne 124
    check "... the run stopped and said so" test "$(grep -c "training stopped" "$W/usr.err")" = 1 ||
        head -20 "$W/usr.err"
    check "... with a checkpoint" test "$("$D" step "$W/usr.safetensors.ckpt")" -ge 3
else
    kill -TERM $timeout_pid 2>/dev/null
    wait $timeout_pid
    echo "FAIL: no mpirun under timeout ($timeout_pid) found to signal"
    fails=$((fails + 1))
fi

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all MPI checks passed"
