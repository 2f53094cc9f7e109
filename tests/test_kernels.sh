#!/bin/bash
# test_kernels.sh - every SIMD kernel path gives the same results: the shipped model captions the
# sample photos under SACCADE_KERNELS=c, avx2 and avx512 (each path this CPU has; common/cpu.h),
# with beam search (3 rows per photo) and with greedy decoding of the four photos together (4
# rows), and every path must match the one committed reference, tests/data/kernels_captions.tsv:
# the same words, and each caption's log-probability within 1e-4. Where ../shared has Google's
# MobileNetV2, `saccade classify` must also give the same classes on every path, probabilities
# within 1e-4 of the C path's.
#
#   test_kernels.sh SACCADE SOURCE_ROOT
#
# Why a tolerance: the paths sum in the same order, but the C path rounds after each multiply
# and each add where AVX2/AVX-512 fuse them (one rounding), so activations differ in the last
# bits; a caption's log-probability (a sum of ~15 word log-probabilities) moved by at most
# 1.2e-5 between paths when this test was written. 1e-4 leaves room for other compilers while a
# changed word or a wrong kernel moves it by far more. The reference was written on the avx512
# path:
#   for m in beam greedy; do ... done  (the loop below, with SACCADE_KERNELS=avx512, > the file)
# and must be rewritten when the shipped model changes.
set -u
SACCADE=${1:?usage: test_kernels.sh SACCADE SOURCE_ROOT}
ROOT=${2:?usage: test_kernels.sh SACCADE SOURCE_ROOT}
MODEL=$ROOT/models/flickr8k.safetensors
REF=$ROOT/tests/data/kernels_captions.tsv
[ -r "$MODEL" ] || { echo "skipped: $MODEL not found"; exit 77; }
TMP=$(mktemp -d /tmp/saccade-test-kernels.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
export OPENBLAS_NUM_THREADS=1
unset SACCADE_MODEL
fail=0
S=$ROOT/models/samples
PHOTOS=("$S/astronaut.jpg" "$S/chelsea.jpg" "$S/coffee.jpg" "$S/rocket.jpg")

cpu=$("$SACCADE" --version | sed -n 's/^kernels: .*(this CPU: \(.*\))$/\1/p')
case $cpu in
c) paths="c" ;;
avx2) paths="c avx2" ;;
avx512) paths="c avx2 avx512" ;;
*) echo "FAIL: saccade --version names no kernel path"; exit 1 ;;
esac
echo "this CPU: $cpu; paths tested: $paths"

# MODE<TAB>PHOTO<TAB>LOGPROB<TAB>CAPTION per photo, from caption --json
captions() {
    local mode=$1; shift
    "$SACCADE" caption --json --quiet --threads 1 "$@" "${PHOTOS[@]}" |
        sed -n 's|^{"image":"[^"]*/\([^/"]*\)","caption":"\([^"]*\)","logprob":\([-0-9.e]*\),.*|'"$mode"'\t\1\t\3\t\2|p'
}

for k in $paths; do
    got=$(SACCADE_KERNELS=$k "$SACCADE" --version | sed -n 's/^kernels: \([a-z0-9]*\) .*/\1/p')
    if [ "$got" != "$k" ]; then echo "FAIL: SACCADE_KERNELS=$k runs '$got'"; fail=1; continue; fi
    { SACCADE_KERNELS=$k captions beam; SACCADE_KERNELS=$k captions greedy --greedy; } > "$TMP/$k.tsv"
    if [ "$(wc -l < "$TMP/$k.tsv")" -ne 8 ]; then echo "FAIL: $k: expected 8 captions"; cat "$TMP/$k.tsv"; fail=1; continue; fi
    if ! paste "$REF" "$TMP/$k.tsv" | awk -F'\t' -v k=$k '
        { d = $3 - $7; if (d < 0) d = -d
          if ($1 != $5 || $2 != $6 || $4 != $8 || d > 1e-4) {
              printf "FAIL: %s %s %s: \"%s\" (%s), expected \"%s\" (%s)\n", k, $1, $2, $8, $7, $4, $3; bad = 1 }
          if (d > worst) worst = d }
        END { if (!bad) printf "ok: %s: 8 captions as the reference, log-probabilities within %.1e\n", k, worst
              exit bad }'; then fail=1; fi
done

TFLITE=$ROOT/../shared/pretrained/mobilenet_v2_1.0_224_quant.tflite
if [ -r "$TFLITE" ]; then
    "$SACCADE" import --quiet "$TFLITE" --labels "$ROOT/../shared/pretrained/imagenet_labels.txt" \
        -o "$TMP/bb.safetensors" || { echo "FAIL: import"; exit 1; }
    for k in $paths; do
        SACCADE_KERNELS=$k "$SACCADE" classify --quiet --threads 1 --backbone "$TMP/bb.safetensors" --top 3 \
            "${PHOTOS[@]}" > "$TMP/classify_$k.tsv" || { echo "FAIL: classify on $k"; fail=1; }
        if ! paste "$TMP/classify_c.tsv" "$TMP/classify_$k.tsv" | awk -F'\t' -v k=$k '
            { d = $3 - $7; if (d < 0) d = -d
              if ($1 != $5 || $2 != $6 || $4 != $8 || d > 1e-4) { printf "FAIL: classify %s: %s\n", k, $0; bad = 1 }
              if (d > worst) worst = d; n++ }
            END { if (!bad) printf "ok: classify %s: %d classes as the c path, probabilities within %.1e\n", k, n, worst
                  exit bad || n != 12 }'; then fail=1; fi
    done
else
    echo "(no $TFLITE: classify not compared)"
fi
exit $fail
