#!/bin/bash
# test_report.sh - end to end test of `saccade report`: training logs written here (a clean run,
# a resumed run whose steps go back, a log still being written, stray lines, an empty log) turned
# into pages whose charts are counted through their data-* attributes; a real log and model from
# a tiny `saccade train` run with the attention figures of two photos; usage and write errors.
#
#   test_report.sh SACCADE CLI_HELPER
#
# Hermetic: cli_helper writes the tiny captioned images; no browser is needed (tests/test_pages.sh
# renders the pages in Chromium). Every failed check is printed; exit 1 when any failed.

set -u
SACCADE=${1:?usage: test_report.sh SACCADE CLI_HELPER}
HELPER=${2:?usage: test_report.sh SACCADE CLI_HELPER}
case $SACCADE in /*) ;; *) SACCADE=$PWD/$SACCADE ;; esac
case $HELPER in /*) ;; *) HELPER=$PWD/$HELPER ;; esac
export OPENBLAS_NUM_THREADS=1
TMP=$(mktemp -d /tmp/saccade-test-report.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh" || exit 1
# attr FILE ELEMENT-ID ATTR: the attribute's value on the element with that id
attr() { grep -oE "id=\"$2\"[^>]*" "$1" | head -1 | grep -oE " $3=\"[^\"]*\"" | cut -d'"' -f2; }
# chart_points FILE CHART-ID CLASS: circles of class "pt" inside <g class="CLASS"> of that chart
chart_points() {
    awk -v id="id=\"$2\"" -v g="<g class=\"$3" 'index($0, id) { on = 1 } on && index($0, "</svg>") { on = 0 }
        on && index($0, g) { n += gsub(/<circle class="pt"/, "") } END { print n + 0 }' "$1"
}

# step_lines FROM TO BY [LOSS-OFFSET]: step lines as captioner/trainer.c writes them
step_lines() {
    awk -v a="$1" -v b="$2" -v d="$3" -v o="${4:-0}" 'BEGIN { for (s = a; s <= b; s += d)
        printf "{\"step\":%d,\"epoch\":%d,\"loss\":%.4f,\"ce\":%.4f,\"lr\":0.0004,\"lr_enc\":0.0001,\"grad_norm\":%.3f,\"images_per_s\":%.1f,\"time\":%.3f}\n",
            s, int((s - 1) / 100) + 1, 5 - s / 200 + o, 4 - s / 200 + o, 1 + (s % 30) / 10, 40 + s % 7, 1000 + s }'
}
# epoch_line EPOCH STEP BLEU4 CIDER DISTINCT BEST
epoch_line() {
    printf '{"epoch":%d,"step":%d,"dev":{"bleu1":0.5,"bleu2":0.3,"bleu3":0.2,"bleu4":%s,"rouge_l":0.4,"cider_d":%s,"distinct":%s,"vocab_used":300,"mean_len":9.5,"att_max":0.2,"att_entropy":0.8},"best":%s,"epoch_seconds":60.5}\n' "$@"
}

# ------------------------------------------------------------------------- a clean run
{
    for e in 1 2 3 4 5; do
        step_lines $(((e - 1) * 100 + 10)) $((e * 100)) 10
        case $e in 1) epoch_line 1 100 0.05 0.20 0.30 true ;; 2) epoch_line 2 200 0.08 0.31 0.35 true ;;
        3) epoch_line 3 300 0.07 0.29 0.36 false ;; 4) epoch_line 4 400 0.10 0.40 0.41 true ;;
        5) epoch_line 5 500 0.09 0.38 0.44 false ;; esac
    done
} >"$TMP/clean.jsonl"
run clean report "$TMP/clean.jsonl" -o "$TMP/clean.html"
R=$TMP/clean.html
expect_eq "clean log: exit 0" "$rc" 0
expect_eq "clean log: 50 steps, 5 epochs on the summary" "$(attr "$R" steps data-n):$(attr "$R" epochs data-n)" "50:5"
expect_eq "clean log: the chosen epoch is the last 'best' one (4)" "$(attr "$R" chosen data-epoch)" 4
for c in chart-loss chart-grad chart-ips; do
    expect_eq "clean log: $c has 50 points, x from 10 to 500" \
        "$(attr "$R" $c data-n):$(chart_points "$R" $c raw):$(attr "$R" $c data-x-min):$(attr "$R" $c data-x-max)" "50:50:10:500"
done
expect_eq "clean log: the loss chart's y axis covers the losses (2.5 .. 4.95)" \
    "$(awk -v lo="$(attr "$R" chart-loss data-y-min)" -v hi="$(attr "$R" chart-loss data-y-max)" 'BEGIN { print (lo <= 2.5 && hi >= 4.95 && lo > 2 && hi < 5.5) ? "yes" : lo " " hi }')" yes
expect_eq "clean log: the learning-rate chart is log-scaled with two series of 50" \
    "$(attr "$R" chart-lr data-log-y):$(grep -c 'data-series="decoder" data-n="50"' "$R"):$(grep -c 'data-series="encoder" data-n="50"' "$R")" "1:1:1"
for c in chart-bleu4 chart-cider chart-distinct; do
    expect_eq "clean log: $c has one dot per epoch (5), x 1..5, the chosen epoch marked" \
        "$(attr "$R" $c data-n):$(chart_points "$R" $c dots):$(attr "$R" $c data-x-min):$(attr "$R" $c data-x-max):$(awk -v id="id=\"$c\"" 'index($0, id) { on = 1 } on && /<g class="best"/ { match($0, /data-x="[^"]*"/); print substr($0, RSTART + 8, RLENGTH - 9); exit }' "$R")" \
        "5:5:1:5:4"
done
expect_eq "clean log: dev CIDEr-D values in epoch order" \
    "$(awk 'index($0, "id=\"chart-cider\"") { on = 1 } on && /<g class="dots/ { s = $0; while (match(s, /data-y="[^"]*"/)) { printf "%s ", substr(s, RSTART + 8, RLENGTH - 9); s = substr(s, RSTART + RLENGTH) } exit }' "$R")" \
    "0.2 0.31 0.29 0.4 0.38 "
expect_eq "clean log: the loss chart marks the chosen epoch's step (400)" \
    "$(grep -A400 'id="chart-loss"' "$R" | grep -oE '<g class="best" data-x="[^"]*"' | head -1 | cut -d'"' -f4)" 400
expect_eq "clean log: self-contained (no script, nothing fetched)" \
    "$(grep -ciE '<script|(src|href)="(https?:|//)' "$R")" 0
expect_eq "clean log: a complete page" "$(tail -1 "$R")" "</html>"
expect_eq "clean log: no resume, partial or skipped notes" "$(grep -cE 'id="(resumed|partial|skipped)"' "$R")" 0

# ------------------------------------------------------------------------- a resumed run
# the first run logged steps 10..300 and epochs 1..3, then died; its checkpoint was at step 200,
# so the resumed run logs steps 210..500 again (new values) and epoch 3 again (new scores)
{
    step_lines 10 100 10; epoch_line 1 100 0.05 0.20 0.30 true
    step_lines 110 200 10; epoch_line 2 200 0.08 0.31 0.35 true
    step_lines 210 300 10; epoch_line 3 300 0.07 0.29 0.36 false
    step_lines 210 300 10 0.5; epoch_line 3 300 0.09 0.33 0.37 true
    step_lines 310 400 10 0.5; epoch_line 4 400 0.10 0.40 0.41 true
    step_lines 410 500 10 0.5; epoch_line 5 500 0.09 0.38 0.44 false
} >"$TMP/resumed.jsonl"
run resumed report "$TMP/resumed.jsonl" -o "$TMP/resumed.html"
R=$TMP/resumed.html
expect_eq "resumed log: exit 0, 50 steps, 5 epochs" "$rc:$(attr "$R" steps data-n):$(attr "$R" epochs data-n)" "0:50:5"
expect_eq "resumed log: 10 step lines and 1 epoch line replaced, said so" "$(attr "$R" resumed data-n)" 11
expect_eq "resumed log: the loss chart has 50 points from 10 to 500" \
    "$(chart_points "$R" chart-loss raw):$(attr "$R" chart-loss data-x-min):$(attr "$R" chart-loss data-x-max)" "50:10:500"
expect_eq "resumed log: epoch 3 keeps the resumed run's CIDEr-D (0.33)" \
    "$(awk 'index($0, "id=\"chart-cider\"") { on = 1 } on && /<g class="dots/ { s = $0; while (match(s, /data-y="[^"]*"/)) { printf "%s ", substr(s, RSTART + 8, RLENGTH - 9); s = substr(s, RSTART + RLENGTH) } exit }' "$R")" \
    "0.2 0.31 0.33 0.4 0.38 "

# ------------------------------------------------------------------------- a log still being written
cp "$TMP/clean.jsonl" "$TMP/partial.jsonl"
printf '{"step":510,"epoch":6,"loss":2.4,"ce":2.' >>"$TMP/partial.jsonl"
run partial report "$TMP/partial.jsonl" -o "$TMP/partial.html"
expect_eq "partial last line: exit 0, left out (50 steps), noted on the page" \
    "$rc:$(attr "$TMP/partial.html" steps data-n):$(grep -c 'id="partial"' "$TMP/partial.html")" "0:50:1"
expect_eq "partial last line: said on stderr" "$(grep -c 'last line is incomplete' "$TMP/partial.err")" 1
# a complete object without its newline yet counts
cp "$TMP/clean.jsonl" "$TMP/nonl.jsonl"
step_lines 510 510 10 | tr -d '\n' >>"$TMP/nonl.jsonl"
run nonl report "$TMP/nonl.jsonl" -o "$TMP/nonl.html"
expect_eq "a complete last line without its newline: kept (51 steps)" "$rc:$(attr "$TMP/nonl.html" steps data-n)" "0:51"

# ------------------------------------------------------------------------- stray lines
{ head -3 "$TMP/clean.jsonl"; echo 'not json at all'; echo '{"note":"an object of another kind"}'; echo; tail -n +4 "$TMP/clean.jsonl"; } >"$TMP/stray.jsonl"
run stray report "$TMP/stray.jsonl" -o "$TMP/stray.html"
expect_eq "stray lines: exit 0, skipped (2, the first at line 4), the rest charted" \
    "$rc:$(attr "$TMP/stray.html" skipped data-n):$(grep -c 'line 4' "$TMP/stray.err"):$(attr "$TMP/stray.html" steps data-n)" "0:2:1:50"

# ------------------------------------------------------------------------- errors
: >"$TMP/empty.jsonl"
run empty report "$TMP/empty.jsonl" -o "$TMP/empty.html"
expect_eq "empty log: exit 1, named, nothing written" \
    "$rc:$(grep -c 'empty.jsonl' "$TMP/empty.err"):$([ -e "$TMP/empty.html" ] && echo written)" "1:1:"
run missing report "$TMP/none.jsonl" -o "$TMP/none.html"
expect_eq "missing log: exit 1, named" "$rc:$(grep -c 'none.jsonl' "$TMP/missing.err")" "1:1"
usage() { # DESCRIPTION EXPECTED-IN-STDERR ARGS...
    local desc=$1 what=$2
    shift 2
    run usage "$@"
    if [ $rc -eq 2 ] && grep -qF -- "$what" "$TMP/usage.err"; then pass "usage error: $desc"; else fail "usage error: $desc" "exit $rc" "$(cat "$TMP/usage.err")"; fi
}
usage "no -o" "-o" report "$TMP/clean.jsonl"
usage "no log" "no training log" report -o "$TMP/x.html"
usage "--model without --images" "--images" report "$TMP/clean.jsonl" -o "$TMP/x.html" --model m.safetensors
usage "-o naming the log" "is also the input" report "$TMP/clean.jsonl" -o "$TMP/clean.jsonl"
usage "--max-photos 0" "--max-photos" report "$TMP/clean.jsonl" -o "$TMP/x.html" --max-photos 0
expect_eq "the log named as -o is left intact" "$(cmp -s "$TMP/clean.jsonl" <(cat "$TMP/clean.jsonl") && wc -l <"$TMP/clean.jsonl")" 55
run full report "$TMP/clean.jsonl" -o /dev/full
expect_eq "-o /dev/full: exit 1, the write error named" "$rc:$(grep -c '/dev/full' "$TMP/full.err")" "1:1"
run stdout report "$TMP/clean.jsonl" -o - --quiet
expect_eq "-o -: the page on stdout" "$rc:$(head -1 "$TMP/stdout.out"):$(tail -1 "$TMP/stdout.out")" "0:<!DOCTYPE html>:</html>"

# ------------------------------------------------------------------------- a real run
mkdir "$TMP/data"
"$HELPER" data "$TMP/data" >/dev/null || { echo "FAIL cli_helper data"; exit 1; }
(cd "$TMP/data" && "$SACCADE" train --data . --dev-split all --train-split all --epochs 6 --patience 0 --image-size 24 \
    --conv 8s2,16p,16 --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --no-augment --lr 3e-3 --lr-encoder 3e-3 \
    --batch 3 --min-count 1 --threads 1 --quiet --out "$TMP/tiny.safetensors" --log "$TMP/train.jsonl" >"$TMP/train.out" 2>"$TMP/train.err")
expect_eq "train --log: exit 0" "$?" 0
n_steps=$(grep -c '"loss"' "$TMP/train.jsonl")
n_epochs=$(grep -c '"dev"' "$TMP/train.jsonl")
run real report "$TMP/train.jsonl" -o "$TMP/real.html" --model "$TMP/tiny.safetensors" --images "$TMP/data/red.png" \
    --images "$TMP/data" --max-photos 3 --threads 1
R=$TMP/real.html
expect_eq "real log: exit 0" "$rc" 0
expect_eq "real log: as many steps and epochs as train logged ($n_steps, $n_epochs)" \
    "$(attr "$R" steps data-n):$(chart_points "$R" chart-loss raw):$(attr "$R" epochs data-n):$(chart_points "$R" chart-cider dots)" \
    "$n_steps:$n_steps:$n_epochs:$n_epochs"
expect_eq "real log: 3 photos (red.png, then the folder's first by name), each with its figure" \
    "$(attr "$R" photos data-n):$(grep -c '<figure class="photo">.*src="data:image/png;base64,' "$R")" "3:3"
expect_eq "real log: red.png's caption over its figure" "$(grep -cE '<b>[a-z ]+</b> &middot; red.png &middot; log-probability -[0-9.]+</figcaption>' "$R")" 1
run badimg report "$TMP/train.jsonl" -o "$TMP/badimg.html" --model "$TMP/tiny.safetensors" --images "$TMP/data/notes.png"
expect_eq "a photo that does not decode: exit 1, named, the page still written" \
    "$rc:$(grep -q 'notes.png' "$TMP/badimg.err" && echo named):$(tail -1 "$TMP/badimg.html")" "1:named:</html>"

checks_done
