#!/bin/sh
# bench.sh - saccade and the PyTorch peer (../shared/peer/sat_ref.py) on the same sizes, side by
# side in one run, and one table of both numbers and their ratio.
#
#   bench/bench.sh [BUILD_DIR] [PEER_SCRIPT]        (also run by `meson benchmark`)
#
# BUILD_DIR holds bench/bench_saccade and tools/saccade (default: ./build). The peer is run
# with Debian's /usr/bin/python3 and skipped, with a note, when that python has no torch or the
# script is missing. Both sides use BENCH_THREADS threads (default 2) and the peer's fastest
# setup (--omp-passive) with batchnorm (--bn, as saccade's default encoder). The machine may be
# shared: the steps alternate between the two programs so both see the same load, and the
# ratios, not the absolute times, are the result. BENCH_KEEP=DIR keeps the JSON files there.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
peer=${2:-${SACCADE_PEER:-$here/../../shared/peer/sat_ref.py}}
threads=${BENCH_THREADS:-2}
python=${BENCH_PYTHON:-/usr/bin/python3}
bench="$build/bench/bench_saccade"
saccade="$build/tools/saccade"

if [ ! -x "$bench" ]; then
    echo "bench.sh: $bench not found (build it: ninja -C $build bench/bench_saccade)" >&2
    exit 2
fi
out=${BENCH_KEEP:-$(mktemp -d /tmp/saccade-bench.XXXXXX)}
mkdir -p "$out"
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$out"' EXIT
: >"$out/rss.txt"

# run NAME CMD...: run CMD, append "NAME peak-RSS-kB" to rss.txt when /usr/bin/time is there
run() {
    name=$1
    shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%M" -o "$out/$name.rss" "$@"
        st=$?
        [ -s "$out/$name.rss" ] && echo "$name $(tail -n 1 "$out/$name.rss")" >>"$out/rss.txt"
        return $st
    fi
    "$@"
}

have_peer=0
if [ -f "$peer" ] && "$python" -c "import torch" >/dev/null 2>&1; then
    have_peer=1
else
    echo "bench.sh: skipping the PyTorch peer ($python has no torch, or $peer is missing)" >&2
fi
peer_args="--threads $threads --omp-passive --bn"

echo "bench.sh: $threads threads; results in $out" >&2
# peer NAME ARGS...: one peer run (skipped without torch)
peer_run() {
    [ $have_peer = 1 ] || return 0
    name=$1
    shift
    echo "== peer: $name" >&2
    run "$name" "$python" "$peer" $peer_args "$@" --json "$out/$name.json" >"$out/$name.log" 2>&1 ||
        echo "bench.sh: the peer failed, see $out/$name.log" >&2
}
peer_run peer1 --skip-infer
echo "== saccade: training (1 caption/image)" >&2
run sac_train1 "$bench" --threads "$threads" --train 1 --json "$out/sac_train1.json" || exit 1
peer_run peer5 --caps-per-image 5 --skip-infer
echo "== saccade: training (5 captions/image)" >&2
run sac_train5 "$bench" --threads "$threads" --train 5 --json "$out/sac_train5.json" || exit 1
peer_run peer_infer --skip-train
echo "== saccade: inference" >&2
run sac_infer "$bench" --threads "$threads" --infer --json "$out/sac_infer.json" || exit 1
if [ -x "$saccade" ]; then
    echo "== saccade caption: one image, peak memory" >&2
    "$bench" --write-model "$out/model.safetensors" --write-image "$out/image.png" || exit 1
    run sac_caption "$saccade" caption --model "$out/model.safetensors" --threads "$threads" "$out/image.png" \
        >"$out/caption.txt" 2>"$out/caption.log" || echo "bench.sh: saccade caption failed, see $out/caption.log" >&2
fi
"$bench" --report "$out"
