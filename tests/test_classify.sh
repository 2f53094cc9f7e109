#!/bin/bash
# test_classify.sh - end to end: Google's pretrained MobileNetV2 through `saccade import` and
# `saccade classify` (encoder/mobilenet.c) on the sample photos.
#
#   test_classify.sh SACCADE SOURCE_ROOT
#
# Needs ../shared/pretrained next to the source tree (the TFLite model and its labels); exit 77
# (skipped) where it is absent. Converts the model itself into a temporary backbone file.
# Expected classes: the float network's top classes from ../shared/pretrained/README.md. Its
# probabilities there come from a bilinear resize; saccade squashes with stb's filters
# (image.h), which moves them by up to 0.04 (measured 0.858 / 0.948 / 0.393 for the cat, the
# espresso and the missile; on the same 224 x 224 pixels saccade and torch agree to 1e-4), so
# the checks below allow that.

set -u
SACCADE=${1:?usage: test_classify.sh SACCADE SOURCE_ROOT}
ROOT=${2:?usage: test_classify.sh SACCADE SOURCE_ROOT}
PRE=$ROOT/../shared/pretrained
TFLITE=$PRE/mobilenet_v2_1.0_224_quant.tflite
if [ ! -r "$TFLITE" ] || [ ! -r "$PRE/imagenet_labels.txt" ]; then
    echo "skipped: $TFLITE or its labels not found"
    exit 77
fi
TMP=$(mktemp -d /tmp/saccade-test-classify.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
export OPENBLAS_NUM_THREADS=1

"$SACCADE" import "$TFLITE" --labels "$PRE/imagenet_labels.txt" -o "$TMP/bb.safetensors" || { echo "FAIL: import"; exit 1; }
S=$ROOT/models/samples
"$SACCADE" classify --quiet --backbone "$TMP/bb.safetensors" --top 3 "$S/chelsea.jpg" "$S/coffee.jpg" "$S/rocket.jpg" \
    > "$TMP/out.tsv" || { echo "FAIL: classify exited $?"; exit 1; }
cat "$TMP/out.tsv"

fails=0
# expect IMAGE RANK LABEL MIN MAX: that line's label and a probability in [MIN, MAX]
expect() {
    local line
    line=$(awk -F'\t' -v img="$S/$1" -v rank="$2" '$1 == img && $2 == rank' "$TMP/out.tsv")
    local label prob
    label=$(printf '%s' "$line" | cut -f4)
    prob=$(printf '%s' "$line" | cut -f3)
    if [ "$label" != "$3" ] || ! awk -v p="$prob" -v lo="$4" -v hi="$5" 'BEGIN { exit !(p >= lo && p <= hi) }'; then
        echo "FAIL: $1 rank $2: expected '$3' with probability in [$4, $5], found '$label' $prob"
        fails=$((fails + 1))
    fi
}
expect chelsea.jpg 1 "Egyptian cat" 0.83 0.90
expect chelsea.jpg 2 "tabby, tabby cat" 0.04 0.10
expect chelsea.jpg 3 "tiger cat" 0.04 0.10
expect coffee.jpg 1 "espresso" 0.90 0.97
expect rocket.jpg 1 "missile" 0.36 0.47
expect rocket.jpg 2 "projectile, missile" 0.20 0.34
[ "$(wc -l < "$TMP/out.tsv")" -eq 9 ] || { echo "FAIL: expected 9 lines"; fails=$((fails + 1)); }
# a tab in a path is escaped as caption escapes it: still 4 fields on one line
cp "$S/chelsea.jpg" "$TMP/a	b.jpg"
"$SACCADE" classify --quiet --backbone "$TMP/bb.safetensors" --top 1 "$TMP/a	b.jpg" >"$TMP/tab.tsv"
[ "$(cut -f1 "$TMP/tab.tsv")" = "$TMP/a\\tb.jpg" ] && [ "$(cut -f4 "$TMP/tab.tsv")" = "Egyptian cat" ] ||
    { echo "FAIL: a path with a tab: $(cat "$TMP/tab.tsv")"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "ok: classify" || echo "$fails checks failed"
exit $((fails > 0))
