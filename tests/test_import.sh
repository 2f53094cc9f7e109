#!/bin/bash
# test_import.sh - end to end test of `saccade import` on the command line: exit codes (0, 1, 2),
# the messages, OUT left untouched by every failure, and (when ../shared/pretrained has it) the
# real TFLite MobileNetV2 converted with its one-line summary.
#
#   test_import.sh SACCADE DATA_DIR SHARED_DIR
#
# Every failed check is printed with what was expected and found; exit 1 when any failed.

set -u
SACCADE=${1:?usage: test_import.sh SACCADE DATA_DIR SHARED_DIR}
DATA=${2:?usage: test_import.sh SACCADE DATA_DIR SHARED_DIR}
SHARED=${3:-}
case $SACCADE in /*) ;; *) SACCADE=$PWD/$SACCADE ;; esac

TMP=$(mktemp -d /tmp/saccade-test-import.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# run WANT_STATUS ARGS...: run saccade with ARGS, stdout to $TMP/out, stderr to $TMP/err
run() {
    local want=$1
    shift
    "$SACCADE" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "saccade $*: exit $rc, expected $want; stderr: $(cat "$TMP/err")"
}
has() { grep -qF -- "$2" "$TMP/$1" || fail "expected $1 to contain '$2', got: $(cat "$TMP/$1")"; }

run 0 import --help
has out "usage: saccade import SRC -o OUT"
run 0 help import
has out "usage: saccade import SRC -o OUT"
run 2 import
has err "saccade import: expected a source file"
run 2 import "$DATA/tiny.tflite"
has err "-o OUT is required"
run 2 import --bogus
has err "unknown option '--bogus'"
run 2 import a b -o c
has err "unexpected argument 'b'"
run 2 import same -o same
has err "refusing to overwrite the source"
run 2 import "$DATA/tiny.tflite" -o "$TMP/x" --license ""
has err "--license must not be empty"

run 1 import "$TMP/missing.tflite" -o "$TMP/out.safetensors"
has err "missing.tflite: no such file"
[ ! -e "$TMP/out.safetensors" ] || fail "a failed import created its output"

# the tiny fixture is valid TFLite but not MobileNetV2: refused, and OUT keeps its old contents
echo "old contents" >"$TMP/keep.safetensors"
run 1 import "$DATA/tiny.tflite" -o "$TMP/keep.safetensors"
has err "tiny.tflite: operator 0 (CONV_2D, input): input tensor 0 'input' has shape [1,4,4,3], expected [1,224,224,3]"
has err "saccade import: $TMP/keep.safetensors was not written"
[ "$(cat "$TMP/keep.safetensors")" = "old contents" ] || fail "a failed import changed its output"
ls "$TMP" | grep -q importing && fail "a temporary file was left behind: $(ls "$TMP")"

run 1 import "$DATA/tiny_tflite.json" -o "$TMP/out.safetensors"
has err "neither a TFLite file (identifier 'TFL3' at byte 4) nor a readable safetensors state dict"

REAL=$SHARED/pretrained/mobilenet_v2_1.0_224_quant.tflite
LABELS=$SHARED/pretrained/imagenet_labels.txt
if [ -n "$SHARED" ] && [ -r "$REAL" ] && [ -r "$LABELS" ]; then
    run 0 import "$REAL" --labels "$LABELS" -o "$TMP/mnv2.safetensors"
    has err "saccade import: wrote $TMP/mnv2.safetensors: 106 tensors, 3489097 parameters, 1001 classes, from tflite"
    has err "(sha256 7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776); 66 operators, 53 convolutions, 53/53 bias scales"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "expected one line on stderr, got: $(cat "$TMP/err")"
    [ ! -s "$TMP/out" ] || fail "expected nothing on stdout, got: $(cat "$TMP/out")"
    run 0 import -q "$REAL" -o "$TMP/quiet.safetensors"
    [ ! -s "$TMP/err" ] || fail "--quiet printed: $(cat "$TMP/err")"
    # the output named through a link to the source is the source: refused
    ln -s "$TMP/mnv2.safetensors" "$TMP/link.safetensors"
    run 1 import "$TMP/link.safetensors" -o "$TMP/mnv2.safetensors"
    has err "is also the input $TMP/link.safetensors; refusing to overwrite it"
    run 1 import "$REAL" --labels "$SHARED/pretrained/LICENSE" -o "$TMP/mnv2.safetensors"
    has err "lines, expected one name for each of the model's 1001 classes"
    # a backbone file is not a state dict (its convs have biases, it has no batchnorm)
    run 1 import "$TMP/mnv2.safetensors" -o "$TMP/again.safetensors"
    has err "unexpected tensor 'features.0.0.bias': not part of torchvision's mobilenet_v2"
else
    echo "note: $REAL not found; the real model's import is not checked"
fi

if [ "$fails" -gt 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all import checks passed"
