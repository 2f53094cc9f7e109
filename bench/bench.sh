#!/bin/sh
# bench.sh - saccade and the PyTorch peer (../shared/peer/sat_ref.py) on the same sizes, side by
# side in one run, and one table of both numbers and their ratio.
#
#   bench/bench.sh [BUILD_DIR] [PEER_SCRIPT]        (also run by `meson benchmark`)
#
# BUILD_DIR holds bench/bench_saccade and tools/saccade (default: ./build). The peer is run
# with Debian's /usr/bin/python3 and skipped, with a note, when that python has no torch or the
# script is missing. Both sides use BENCH_THREADS threads (default 2) and the peer's fastest
# setup (--omp-passive; it sets glibc's malloc thresholds itself) with batchnorm (--bn, as
# saccade's default encoder). The machine may be shared: the steps alternate between the two
# programs so both see the same load, and the ratios, not the absolute times, are the result.
#
# What runs, each saccade step next to the peer's:
#   - the from-scratch model at the peer's default sizes: training (1 and 5 captions/image),
#     inference (bench_saccade --infer / the peer's inference timings), `saccade caption` RSS;
#   - end to end on real files: `saccade batch DIR --beam 1` against `sat_ref.py --images DIR`
#     (both read, decode and resize every JPEG, encode and decode greedily 20 steps; the model
#     file bench_saccade writes has the peer's sizes and never ends a caption early, as the
#     peer does not). DIR holds the first BENCH_E2E_COUNT (256) photos of
#     ../shared/data/flickr8k/images, copied to a temporary folder, or is BENCH_IMAGES=DIR;
#     skipped with a note when there are no photos. Each side runs BENCH_E2E_RUNS times (3);
#     the rate is saccade's own "img/s" (the captioning, without loading the model) and the
#     peer's files_images_per_s (likewise after building its model);
#   - end to end on phone photos: the same, on 16 JPEGs of 4000 x 3000 (12 MP) the bench makes
#     (bench/make_photos: the 4 sample photos in models/samples upscaled, in 4 variants, with
#     +-12 levels of grain so they compress like camera files, ~3 MB each, quality 90, 4:2:0),
#     for both models; saccade decodes them scaled (libjpeg-turbo at 1/8: 500 x 375), the peer
#     in full (torchvision.io.decode_image, then an antialiased resize). BENCH_BIG=0 skips them;
#   - the MobileNetV2 model (bench_saccade --mnv2 against --encoder mnv2 --grid 14, 224 input,
#     14x14x576 grid, no projection): inference, frozen-backbone training (--frozen-encoder),
#     end to end on the same photos, and `saccade caption` RSS.
#
# BENCH_QUICK=1 runs a few iterations of everything (a smoke test of the bench, not a
# measurement). BENCH_KEEP=DIR keeps the JSON files, logs and captions there.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
peer=${2:-${SACCADE_PEER:-$here/../../shared/peer/sat_ref.py}}
threads=${BENCH_THREADS:-2}
python=${BENCH_PYTHON:-/usr/bin/python3}
quick=${BENCH_QUICK:-0}
photos=${BENCH_PHOTOS:-$here/../../shared/data/flickr8k/images}
e2e_count=${BENCH_E2E_COUNT:-256}
big_rows=${BENCH_BIG:-1}
e2e_runs=${BENCH_E2E_RUNS:-3}
bench="$build/bench/bench_saccade"
saccade="$build/tools/saccade"

if [ ! -x "$bench" ]; then
    echo "bench.sh: $bench not found (build it: ninja -C $build bench/bench_saccade)" >&2
    exit 2
fi
out=${BENCH_KEEP:-$(mktemp -d /tmp/saccade-bench.XXXXXX)}
mkdir -p "$out" || exit 2
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$out"' EXIT
# a kept directory may hold an earlier run's results: the report must not mix them in
rm -f "$out"/peer*.json "$out"/sac_*.json "$out"/*.rss
: >"$out/rss.txt"

sac_q=""
peer_q=""
if [ "$quick" = 1 ]; then
    sac_q="--quick"
    peer_q="--warmup 1 --iters 3 --infer-iters 5"
    e2e_runs=1
    echo "bench.sh: BENCH_QUICK=1: few iterations, a smoke test, not a measurement" >&2
fi

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
# sac NAME ARGS...: one bench_saccade run; stops the bench when it fails
sac() {
    name=$1
    shift
    echo "== saccade: $name" >&2
    run "$name" "$bench" --threads "$threads" $sac_q "$@" --json "$out/$name.json" || {
        echo "bench.sh: bench_saccade $* failed" >&2
        exit 1
    }
}

# ---- the from-scratch model, the peer's default sizes
peer_run peer1 --skip-infer $peer_q
sac sac_train1 --train 1
peer_run peer5 --caps-per-image 5 --skip-infer $peer_q
sac sac_train5 --train 5
sac sac_scst5 --scst 5 # self-critical step: no peer
peer_run peer_infer --skip-train $peer_q
sac sac_infer --infer
have_saccade=0
if [ -x "$saccade" ]; then
    have_saccade=1
    echo "== saccade caption: one image, peak memory" >&2
    "$bench" --write-model "$out/model.safetensors" --write-image "$out/image.png" || exit 1
    run sac_caption "$saccade" caption --model "$out/model.safetensors" --threads "$threads" "$out/image.png" \
        >"$out/caption.txt" 2>"$out/caption.log" || echo "bench.sh: saccade caption failed, see $out/caption.log" >&2
else
    echo "bench.sh: $saccade not found: no \`saccade caption\` or end-to-end rows (ninja -C $build tools/saccade)" >&2
fi

# ---- end to end on a folder of JPEGs
images=""
if [ $have_saccade = 1 ]; then
    if [ -n "${BENCH_IMAGES:-}" ]; then
        images=$BENCH_IMAGES
        [ -d "$images" ] || { echo "bench.sh: BENCH_IMAGES=$images is not a directory" >&2; exit 2; }
    elif [ -d "$photos" ]; then
        images="$out/images"
        mkdir -p "$images" || exit 1
        find "$photos" -maxdepth 1 -type f -name '*.jpg' | LC_ALL=C sort | head -n "$e2e_count" |
            while IFS= read -r f; do cp "$f" "$images/" || exit 1; done || exit 1
        [ -n "$(ls "$images")" ] || images=""
    fi
    [ -n "$images" ] || echo "bench.sh: no photos ($photos is absent; BENCH_IMAGES=DIR names a folder): no end-to-end rows" >&2
fi

# e2e_sac NAME MODEL [DIR]: caption the folder (default: the photos above) with `saccade batch`,
# greedy; OUT/NAME.json gets {"files": {"images": N, "images_per_s": X}} from its summary line,
# like the peer's
e2e_sac() {
    name=$1
    echo "== saccade batch: $name" >&2
    run "$name" "$saccade" batch --model "$2" --beam 1 --threads "$threads" -o "$out/$name.jsonl" "${3:-$images}" \
        2>"$out/$name.log"
    st=$?
    # "saccade: 256 images in 1.3 s (195.2 img/s, 2 threads, beam 1): 256 captioned, 0 failed -> FILE"
    line=$(grep ' images in .* img/s' "$out/$name.log" | tail -n 1)
    n=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9]*\) captioned, 0 failed.*/\1/p')
    ips=$(printf '%s\n' "$line" | sed -n 's/.* s (\([0-9.][0-9.]*\) img\/s.*/\1/p')
    if [ $st != 0 ] || [ -z "$n" ] || [ -z "$ips" ]; then
        echo "bench.sh: saccade batch failed or reported no rate, see $out/$name.log" >&2
        return 0
    fi
    words=$(head -n 1 "$out/$name.jsonl" | sed -n 's/.*"caption": *"\([^"]*\)".*/\1/p' | wc -w)
    [ "$words" = 20 ] || echo "bench.sh: $name: the first caption has $words words, expected 20 (the peer's fixed length)" >&2
    printf '{"files": {"images": %s, "images_per_s": %s}}\n' "$n" "$ips" >"$out/$name.json"
}

if [ -n "$images" ]; then
    i=1
    while [ $i -le "$e2e_runs" ]; do
        peer_run "peer_e2e_$i" --skip-train --skip-infer --images "$images"
        e2e_sac "sac_e2e_$i" "$out/model.safetensors"
        i=$((i + 1))
    done
fi

# ---- end to end on 16 phone-sized JPEGs (4000 x 3000) made here
big=""
if [ $have_saccade = 1 ] && [ "$big_rows" = 1 ]; then
    big="$out/photos_12mp"
    echo "== making 16 JPEGs of 4000 x 3000 in $big" >&2
    mkdir -p "$big" && "$build/bench/make_photos" "$big" 4000 3000 90 12 "$here"/../models/samples/*.jpg || {
        echo "bench.sh: $build/bench/make_photos failed: no 12 MP rows" >&2
        big=""
    }
fi
if [ -n "$big" ]; then
    i=1
    while [ $i -le "$e2e_runs" ]; do
        peer_run "peer_e2e_12mp_$i" --skip-train --skip-infer --images "$big"
        e2e_sac "sac_e2e_12mp_$i" "$out/model.safetensors" "$big"
        i=$((i + 1))
    done
fi

# ---- MobileNetV2, grid 14 (the peer: --encoder mnv2 --grid 14)
mnv2_peer="--encoder mnv2 --grid 14"
peer_run peer_mnv2_train1 $mnv2_peer --frozen-encoder --skip-infer $peer_q
sac sac_mnv2_train1 --mnv2 --train 1
peer_run peer_mnv2_train5 $mnv2_peer --frozen-encoder --caps-per-image 5 --skip-infer $peer_q
sac sac_mnv2_train5 --mnv2 --train 5
sac sac_mnv2_scst5 --mnv2 --scst 5
sac sac_mnv2_scst5b --mnv2 --scst 5 --scst-beam
peer_run peer_mnv2_infer $mnv2_peer --skip-train $peer_q
sac sac_mnv2_infer --mnv2 --infer
if [ $have_saccade = 1 ]; then
    echo "== saccade caption: one image, MobileNetV2, peak memory" >&2
    "$bench" --mnv2 --write-model "$out/model_mnv2.safetensors" --write-image "$out/image224.png" || exit 1
    run sac_caption_mnv2 "$saccade" caption --model "$out/model_mnv2.safetensors" --threads "$threads" \
        "$out/image224.png" >"$out/caption_mnv2.txt" 2>"$out/caption_mnv2.log" ||
        echo "bench.sh: saccade caption failed, see $out/caption_mnv2.log" >&2
fi
if [ -n "$images" ]; then
    i=1
    while [ $i -le "$e2e_runs" ]; do
        peer_run "peer_e2e_mnv2_$i" $mnv2_peer --skip-train --skip-infer --images "$images"
        e2e_sac "sac_e2e_mnv2_$i" "$out/model_mnv2.safetensors"
        i=$((i + 1))
    done
fi
if [ -n "$big" ]; then
    i=1
    while [ $i -le "$e2e_runs" ]; do
        peer_run "peer_e2e_mnv2_12mp_$i" $mnv2_peer --skip-train --skip-infer --images "$big"
        e2e_sac "sac_e2e_mnv2_12mp_$i" "$out/model_mnv2.safetensors" "$big"
        i=$((i + 1))
    done
fi

[ "$quick" = 1 ] && echo "(BENCH_QUICK=1: few iterations; a smoke test, not a measurement)"
"$bench" --report "$out"
