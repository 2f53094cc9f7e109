#!/bin/bash
# test_backbone.sh - end to end: a captioner on a frozen MobileNetV2 backbone, through the
# command line.
#
#   test_backbone.sh SACCADE CLI_HELPER BACKBONE_HELPER
#
# Hermetic: backbone_helper writes a backbone file with random weights (the grid-14 network),
# cli_helper writes 6 small PNG images with one caption each; `saccade train --backbone`
# trains a tiny decoder on the cached features until it overfits, so the captions of the
# training images are known exactly, from `caption` (greedy and beam), `batch` and `eval`;
# `attend` draws its 4x4 maps. With ../shared/pretrained present, `saccade import` converts the
# real TFLite model and `train --backbone` accepts it (a few steps).

set -u
SACCADE=${1:?usage: test_backbone.sh SACCADE CLI_HELPER BACKBONE_HELPER}
HELPER=${2:?}
BBHELPER=${3:?}
case $SACCADE in /*) ;; *) SACCADE=$PWD/$SACCADE ;; esac
case $HELPER in /*) ;; *) HELPER=$PWD/$HELPER ;; esac
case $BBHELPER in /*) ;; *) BBHELPER=$PWD/$BBHELPER ;; esac
SHARED=${SACCADE_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
export OPENBLAS_NUM_THREADS=1

TMP=$(mktemp -d /tmp/saccade-test-backbone.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh" || exit 1

cd "$TMP" || exit 1
mkdir data
"$HELPER" data data || { echo "FAIL cli_helper data"; exit 1; }
"$BBHELPER" bb.safetensors 3 || { echo "FAIL backbone_helper"; exit 1; }
cd data || exit 1

"$SACCADE" train --data . --dev-split none --train-split all --backbone ../bb.safetensors --grid 14 --proj 32 \
    --image-size 64 --epochs 300 --att 16 --hidden 48 --embed 16 --max-len 8 --dropout 0 --no-augment --lambda 0 \
    --lr 5e-3 --lr-encoder 3e-3 --batch 6 --min-count 1 --threads 1 --quiet --out "$TMP/m.safetensors" \
    >"$TMP/train.out" 2>"$TMP/train.err"
rc=$?
expect_eq "train on a frozen backbone (exit status)" "$rc" 0
[ $rc -eq 0 ] || { cat "$TMP/train.err"; exit 1; }
M=(--model "$TMP/m.safetensors" --threads 1)

expect_eq "caption --greedy: every training caption" "$("$SACCADE" caption "${M[@]}" --greedy "${HELPER_IMAGES[@]}" 2>&1)" "$HELPER_CAPTIONS"
expect_eq "caption --beam 3: every training caption" "$("$SACCADE" caption "${M[@]}" --beam 3 "${HELPER_IMAGES[@]}" 2>&1)" "$HELPER_CAPTIONS"

"$SACCADE" eval "${M[@]}" --data . --split all --beam 3 --json >"$TMP/eval.json" 2>"$TMP/eval.err"
expect_eq "eval (exit status)" "$?" 0
grep -q '"CIDEr"' "$TMP/eval.json" && grep -q '"attention_max"' "$TMP/eval.json" &&
    pass "eval reports scores and attention sharpness" || fail "eval output" "$(cat "$TMP/eval.json" "$TMP/eval.err")"
grep -Eq '"Bleu_4":[ ]*0\.99999' "$TMP/eval.json" && grep -Eq '"CIDEr":[ ]*10[,}]' "$TMP/eval.json" &&
    pass "eval: BLEU-4 1 and CIDEr-D 10 on the training images" ||
    fail "eval BLEU-4" "$(cat "$TMP/eval.json")"

"$SACCADE" attend "${M[@]}" red.png -o "$TMP/red-att.png" >/dev/null 2>"$TMP/attend.err"
rc=$?
[ $rc -eq 0 ] && [ -s "$TMP/red-att.png" ] && pass "attend draws the 4x4 maps" || fail "attend" "$(cat "$TMP/attend.err")"

mkdir "$TMP/tree"
cp "${HELPER_IMAGES[@]}" "$TMP/tree/"
"$SACCADE" batch "${M[@]}" "$TMP/tree" -o "$TMP/b.tsv" --format tsv >/dev/null 2>"$TMP/batch.err"
expect_eq "batch (exit status)" "$?" 0
expect_eq "batch: the same captions" "$(sed "s|^$TMP/tree/||" "$TMP/b.tsv" | sort)" "$(sort <<<"$HELPER_CAPTIONS")"

# a model file whose backbone tensor is damaged is refused, naming the tensor
"$SACCADE" caption --model ../bb.safetensors red.png >/dev/null 2>"$TMP/bad.err"
rc=$?
[ $rc -ne 0 ] && grep -q 'format' "$TMP/bad.err" && pass "a backbone file is not a captioning model (refused)" ||
    fail "backbone file as a model" "exit $rc" "$(cat "$TMP/bad.err")"

# train's outputs: never one of its inputs; one run per checkpoint; a failed log write fails
T=(--data . --dev-split none --train-split all --backbone ../bb.safetensors --grid 14 --proj 8 --image-size 64
    --att 8 --hidden 8 --embed 8 --max-len 8 --batch 3 --min-count 1 --threads 1 --quiet)
"$SACCADE" train "${T[@]}" --epochs 1 --out captions.tsv >/dev/null 2>"$TMP/same.err"
rc=$?
[ $rc -ne 0 ] && grep -q 'is also the input' "$TMP/same.err" && [ -s captions.tsv ] &&
    pass "train --out naming the dataset is refused, the dataset intact" || fail "train --out = input" "exit $rc" "$(cat "$TMP/same.err")"
"$SACCADE" train "${T[@]}" --epochs 1 --out "$TMP/l.safetensors" --log /dev/full >/dev/null 2>"$TMP/full.err"
rc=$?
[ $rc -eq 1 ] && grep -q '/dev/full' "$TMP/full.err" && pass "train --log onto a full device: exit 1 naming it" ||
    fail "train --log /dev/full" "exit $rc" "$(cat "$TMP/full.err")"
"$SACCADE" train "${T[@]}" --epochs 2 --dev-split all --out "$TMP/r.safetensors" --log "$TMP/r.jsonl" \
    --report "$TMP/r.html" >/dev/null 2>"$TMP/report.err"
rc=$?
[ $rc -eq 0 ] && grep -q '<svg' "$TMP/r.html" && [ "$(grep -c '"dev"' "$TMP/r.jsonl")" = 2 ] &&
    pass "train --report writes the report after each epoch" || fail "train --report" "exit $rc" "$(cat "$TMP/report.err")"
"$SACCADE" train "${T[@]}" --epochs 400 --out "$TMP/k.safetensors" >/dev/null 2>&1 &
first=$!
for _ in $(seq 50); do [ -e "$TMP/k.safetensors.ckpt.lock" ] && break; sleep 0.1; done
"$SACCADE" train "${T[@]}" --epochs 1 --out "$TMP/k.safetensors" >/dev/null 2>"$TMP/busy.err"
rc=$?
kill "$first" 2>/dev/null
wait "$first" 2>/dev/null
[ $rc -eq 2 ] && grep -q 'in use by another run' "$TMP/busy.err" &&
    pass "a second train on the same checkpoint: exit 2 naming the holder" || fail "train lock" "exit $rc" "$(cat "$TMP/busy.err")"

# the real ImageNet weights, where ../shared has them
TFLITE=$SHARED/pretrained/mobilenet_v2_1.0_224_quant.tflite
if [ -r "$TFLITE" ]; then
    "$SACCADE" import "$TFLITE" -o "$TMP/mnv2.safetensors" 2>"$TMP/import.err"
    expect_eq "import the TFLite MobileNetV2 (exit status)" "$?" 0
    "$SACCADE" train --data . --dev-split none --train-split all --backbone "$TMP/mnv2.safetensors" --grid 7 \
        --proj 16 --max-steps 2 --att 16 --hidden 32 --embed 16 --max-len 8 --batch 3 --min-count 1 --threads 1 \
        --quiet --out "$TMP/real.safetensors" >/dev/null 2>"$TMP/real.err"
    rc=$?
    [ $rc -eq 1 ] && grep -q 'resume' "$TMP/real.err" && pass "train --backbone with the ImageNet weights (2 steps)" ||
        fail "train on the ImageNet backbone" "exit $rc" "$(cat "$TMP/real.err")"
else
    echo "skip the ImageNet weights: $TFLITE not found"
fi

checks_done
