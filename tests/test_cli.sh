#!/bin/bash
# test_cli.sh - end to end test of the saccade command line (caption, attend, eval, score).
#
#   test_cli.sh SACCADE CLI_HELPER          the command-line checks
#   test_cli.sh SACCADE CLI_HELPER html     the attend HTML page rendered by headless Chromium
#                                           (exit 77 = skipped when chromium is absent)
#
# Hermetic: cli_helper writes 6 small PNG images with one caption each (plus bad files) into a
# temporary directory, and the test trains a tiny model on them through `saccade train`. The
# tiny model overfits, so its captions of the training images are known exactly.
# Every failed check is printed with what was expected and found; the exit status is 1 when
# any check failed.

set -u
SACCADE=${1:?usage: test_cli.sh SACCADE CLI_HELPER [html]}
HELPER=${2:?usage: test_cli.sh SACCADE CLI_HELPER [html]}
MODE=${3:-cli}
case $SACCADE in /*) ;; *) SACCADE=$PWD/$SACCADE ;; esac
case $HELPER in /*) ;; *) HELPER=$PWD/$HELPER ;; esac
export OPENBLAS_NUM_THREADS=1

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ "$MODE" = html ] && [ ! -x "$CHROMIUM" ]; then
    echo "skipped: $CHROMIUM not found (apt-get install chromium to run this test)"
    exit 77
fi

TMP=$(mktemp -d /tmp/saccade-test-cli.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh" || exit 1
out() { cat "$TMP/$1.out"; }

cd "$TMP" || exit 1
mkdir data
"$HELPER" data data || { echo "FAIL cli_helper data"; exit 1; }
cd data || exit 1

t0=$(date +%s%N)
"$SACCADE" train --data . --dev-split none --train-split all --epochs 200 --image-size 24 --conv 8s2,16p,16 \
    --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --no-augment --lr 3e-3 --lr-encoder 3e-3 --batch 6 \
    --min-count 1 --threads 1 --quiet --out "$TMP/tiny.safetensors" >"$TMP/train.out" 2>"$TMP/train.err"
rc=$?
expect_eq "train a tiny model (exit status)" "$rc" 0
[ $rc -eq 0 ] || { cat "$TMP/train.err"; exit 1; }
echo "     trained in $((($(date +%s%N) - t0) / 1000000)) ms"
M=(--model "$TMP/tiny.safetensors" --threads 1)

# ------------------------------------------------------------------------- html (chromium)
if [ "$MODE" = html ]; then
    run attend attend "${M[@]}" red.png --html "$TMP/red.html"
    expect_eq "attend --html (exit status)" "$rc" 0
    shot() { # shot URL OUT.png
        local profile
        profile=$(mktemp -d "$TMP/chromium.XXXXXX")
        timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
            --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
            --force-device-scale-factor=1 --window-size=900,1000 --user-data-dir="$profile" \
            --screenshot="$2" "$1" >"$TMP/chromium.log" 2>&1
    }
    shot "file://$TMP/red.html" "$TMP/shot-photo.png"
    shot "file://$TMP/red.html#w1" "$TMP/shot-word1.png"
    for s in photo word1; do
        if [ -s "$TMP/shot-$s.png" ]; then pass "chromium screenshot ($s)"; else fail "chromium screenshot ($s)" "$(tail -5 "$TMP/chromium.log")"; fi
    done
    # the photo's red square (230, 20, 20) is about 250 x 250 CSS pixels on the page (a 512 px photo);
    # with word 1 shown the heat overlay replaces it, and the word's highlight colour (#8fd0ff, which
    # the map and its colour bar never take) appears
    red0=$("$HELPER" count "$TMP/shot-photo.png" 230 20 20 30)
    red1=$("$HELPER" count "$TMP/shot-word1.png" 230 20 20 30)
    hl0=$("$HELPER" count "$TMP/shot-photo.png" 143 208 255 8)
    hl1=$("$HELPER" count "$TMP/shot-word1.png" 143 208 255 8)
    echo "     red pixels: $red0 photo, $red1 word 1; highlight pixels: $hl0 photo, $hl1 word 1"
    if [ "${red0:-0}" -gt 15000 ]; then pass "the page shows the photo"; else fail "the page shows the photo" "red pixels $red0, expected > 15000"; fi
    if [ "${red1:-0}" -lt $((red0 / 4)) ]; then pass "#w1 shows word 1's map over the photo"; else fail "#w1 shows word 1's map over the photo" "red pixels $red1, expected < $((red0 / 4))"; fi
    if [ "${hl0:-1}" -eq 0 ] && [ "${hl1:-0}" -gt 200 ]; then pass "#w1 highlights word 1"; else fail "#w1 highlights word 1" "highlight pixels $hl0 / $hl1, expected 0 / > 200"; fi
    checks_done
    exit
fi

# ------------------------------------------------------------------------- help
for cmd in caption attend eval score; do
    run help "$cmd" --help
    if [ $rc -eq 0 ] && grep -q "^usage: saccade $cmd" "$TMP/help.out" && [ ! -s "$TMP/help.err" ]; then
        pass "$cmd --help on stdout, exit 0"
    else
        fail "$cmd --help on stdout, exit 0" "exit $rc" "$(head -3 "$TMP/help.out")"
    fi
done

# ------------------------------------------------------------------------- caption
run cap caption "${M[@]}" "${HELPER_IMAGES[@]}"
expect_eq "caption: exit status" "$rc" 0
expect_eq "caption: exact captions of the training images (beam 3)" "$(out cap)" "$HELPER_CAPTIONS"

run greedy caption "${M[@]}" --greedy "${HELPER_IMAGES[@]}"
expect_eq "caption --greedy: exact captions" "$(out greedy)" "$HELPER_CAPTIONS"
# --greedy decodes the 6 images as one batch; --beam 1 beam-searches each image with K = 1
run greedyj caption "${M[@]}" --greedy --json "${HELPER_IMAGES[@]}" red.bmp red.jpg
run beam1j caption "${M[@]}" --beam 1 --json "${HELPER_IMAGES[@]}" red.bmp red.jpg
strip_logprob() { sed -E 's/"logprob":[-0-9.e]+,//' "$TMP/$1.out"; }
expect_eq "caption --beam 1 == --greedy (words, ended)" "$(strip_logprob beam1j)" "$(strip_logprob greedyj)"
# logprobs agree to 1e-4 (batched and single-row matrix products may round differently)
lp_g=$(grep -oE '"logprob":[-0-9.e]+' "$TMP/greedyj.out" | cut -d: -f2 | tr '\n' ' ')
lp_b=$(grep -oE '"logprob":[-0-9.e]+' "$TMP/beam1j.out" | cut -d: -f2 | tr '\n' ' ')
close=$(awk -v a="$lp_g" -v b="$lp_b" 'BEGIN { n = split(a, x, " "); m = split(b, y, " "); ok = n == m && n == 8;
    for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d > 1e-4 || d < -1e-4) ok = 0 } print ok ? "yes" : "no" }')
expect_eq "caption --beam 1 logprobs == --greedy logprobs" "$close" yes

run json caption "${M[@]}" --json red.png blue.png
expect_eq "caption --json: exit status" "$rc" 0
expect_eq "caption --json: one line per image" "$(out json | wc -l)" 2
expect_grep "caption --json: fields of red.png" "$TMP/json.out" \
    '^\{"image":"red.png","caption":"a red square on black","logprob":-[0-9.]+(e-?[0-9]+)?,"tokens":\["a","red","square","on","black"\],"ended":true\}$'
expect_grep "caption --json: fields of blue.png" "$TMP/json.out" \
    '^\{"image":"blue.png","caption":"blue stripes on white","logprob":-[0-9.]+(e-?[0-9]+)?,"tokens":\["blue","stripes","on","white"\],"ended":true\}$'

run nbest caption "${M[@]}" --beam 4 --nbest 3 red.png checker.png
expect_eq "caption --nbest 3: 3 lines per image" "$(out nbest | wc -l)" 6
expect_eq "caption --nbest 3: ranks" "$(out nbest | cut -f1,2 | tr '\t\n' ': ')" \
    "red.png:1 red.png:2 red.png:3 checker.png:1 checker.png:2 checker.png:3 "
expect_eq "caption --nbest 3: rank 1 is the caption" "$(out nbest | awk -F'\t' '$2 == 1 {print $1 "\t" $3}')" \
    $'red.png\ta red square on black\nchecker.png\ta purple checker board'
expect_eq "caption --nbest 3: hypotheses differ" "$(out nbest | cut -f3 | sort -u | wc -l)" 6
run nbestj caption "${M[@]}" --nbest 2 --json green.png
expect_eq "caption --nbest 2 --json: ranks" "$(grep -oE '"rank":[0-9]+' "$TMP/nbestj.out" | tr '\n' ' ')" '"rank":1 "rank":2 '

printf 'red.png\n\ngreen.png\r\nblue.png\nyellow.png\ncross.png\nchecker.png' | "$SACCADE" caption "${M[@]}" - \
    >"$TMP/stdin.out" 2>"$TMP/stdin.err"
expect_eq "caption -: paths from stdin (blank line, CRLF, no final newline)" "$(out stdin)" "$HELPER_CAPTIONS"

run formats caption "${M[@]}" red.bmp red.jpg
expect_eq "caption: BMP and JPEG inputs" "$(out formats)" $'red.bmp\ta red square on black\nred.jpg\ta red square on black'

run bad caption "${M[@]}" red.png missing.png empty.png truncated.png notes.png green.png
expect_eq "caption with bad inputs: exit status 1" "$rc" 1
expect_eq "caption with bad inputs: the good images are captioned" "$(out bad)" \
    $'red.png\ta red square on black\ngreen.png\ta green circle on white'
for f in missing.png empty.png truncated.png notes.png; do
    expect_grep "caption with bad inputs: $f reported on stderr" "$TMP/bad.err" "$f"
done
expect_grep "caption with bad inputs: summary" "$TMP/bad.err" "4 of 6 images failed"
printf 'red.png\nmissing.png\n' | "$SACCADE" caption "${M[@]}" - >"$TMP/badin.out" 2>"$TMP/badin.err"
rc=$?
expect_eq "caption - with a missing file: exit 1, the rest captioned" "$rc:$(out badin)" $'1:red.png\ta red square on black'

# usage errors: exit 2, the option named
usage() { # DESCRIPTION EXPECTED-IN-STDERR ARGS...
    local desc=$1 what=$2
    shift 2
    run usage "$@"
    if [ $rc -eq 2 ] && grep -qF -- "$what" "$TMP/usage.err" && [ ! -s "$TMP/usage.out" ]; then
        pass "usage error: $desc"
    else
        fail "usage error: $desc" "exit $rc, expected 2 with '$what' on stderr:" "$(cat "$TMP/usage.err")"
    fi
}
usage "caption --beam x3" "--beam" caption "${M[@]}" --beam x3 red.png
usage "caption --beam 0" "--beam" caption "${M[@]}" --beam 0 red.png
usage "caption --nbest above the beam" "--nbest" caption "${M[@]}" --beam 2 --nbest 3 red.png
usage "caption --max-len above the model's T" "--max-len" caption "${M[@]}" --max-len 9 red.png
usage "caption --len-norm abc" "--len-norm" caption "${M[@]}" --len-norm abc red.png
usage "caption --threads -1" "--threads" caption "${M[@]}" --threads -1 red.png
usage "caption unknown option" "--bogus" caption "${M[@]}" --bogus red.png
usage "caption --beam without a value" "--beam" caption red.png --beam
usage "caption without images" "no images" caption "${M[@]}"
usage "caption - with other paths" "'-'" caption "${M[@]}" - red.png
usage "attend without -o or --html" "-o" attend "${M[@]}" red.png
usage "attend two images" "one image" attend "${M[@]}" -o x.png red.png green.png
usage "attend --panel 8" "--panel" attend "${M[@]}" --panel 8 -o x.png red.png
usage "attend --columns 0" "--columns" attend "${M[@]}" --columns 0 -o x.png red.png
usage "eval without --data" "--data" eval "${M[@]}"
usage "eval --max-images -3" "--max-images" eval "${M[@]}" --data . --max-images -3
usage "score without --refs" "--refs" score --results x.json
usage "score without --results" "--results" score --refs x.json
[ -e x.png ] && fail "usage errors write nothing" "x.png was written"

run nomodel caption --model "$TMP/none.safetensors" red.png
if [ $rc -eq 1 ] && grep -q "none.safetensors" "$TMP/nomodel.err"; then pass "caption with a missing model: exit 1, named"; else fail "caption with a missing model: exit 1, named" "exit $rc" "$(cat "$TMP/nomodel.err")"; fi

# ------------------------------------------------------------------------- attend
# attention_draw_size (square test images: panels PANEL x PANEL): n = T + 1 panels,
# c = min(columns, n), r = ceil(n / c), s = clamp(panel / 16, 12, 40), L = 3s/2, G = 2s + 8 (legend),
# w = c * panel + (c + 1) * 8, h = r * (panel + L) + (r + 1) * 8 + G
figure_size() { # T PANEL COLUMNS
    local n=$(($1 + 1)) p=$2 c=$3 s
    [ $c -gt $n ] && c=$n
    local r=$(((n + c - 1) / c))
    s=$((p / 16)); [ $s -lt 12 ] && s=12; [ $s -gt 40 ] && s=40
    echo "$((c * p + (c + 1) * 8)) $((r * (p + 3 * s / 2) + (r + 1) * 8 + 2 * s + 8))"
}
run att attend "${M[@]}" red.png -o "$TMP/att.png"
expect_eq "attend: exit status and caption on stdout" "$rc:$(out att)" $'0:red.png\ta red square on black'
expect_eq "attend: PNG size for 5 words, default panel 256, 6 columns" "$("$HELPER" size "$TMP/att.png")" "$(figure_size 5 256 6)"
run att2 attend "${M[@]}" checker.png -o "$TMP/att2.png" --panel 64 --columns 3 --beam 1
expect_eq "attend --panel 64 --columns 3 --beam 1: PNG size for 4 words" "$("$HELPER" size "$TMP/att2.png")" "$(figure_size 4 64 3)"
run att3 attend "${M[@]}" yellow.png --html "$TMP/yellow.html" -o "$TMP/att3.png" --panel 40 --columns 2
expect_eq "attend --html: exit status" "$rc" 0
expect_eq "attend --panel 40 --columns 2: PNG size" "$("$HELPER" size "$TMP/att3.png")" "$(figure_size 4 40 2)"
H="$TMP/yellow.html"
expect_eq "attend --html: one word entry per word, in order" \
    "$(grep -oE '<span class="word" id="w[0-9]+" [^>]*data-word="[^"]*"' "$H" | sed -E 's/.*data-word="([^"]*)"/\1/' | tr '\n' ' ')" \
    "yellow on the left "
expect_eq "attend --html: one attention map per word" "$(grep -c '<img class="map" id="map-' "$H")" 4
expect_eq "attend --html: photo + maps inlined as PNG data URIs" "$(grep -o 'src="data:image/png;base64,' "$H" | wc -l)" 5
expect_eq "attend --html: nothing loaded from elsewhere" "$(grep -cE '(src|href)="(https?:|//|file:)' "$H")" 0
expect_grep "attend --html: a complete page" "$H" '^</html>$'
run attbad attend "${M[@]}" notes.png -o "$TMP/attbad.png"
if [ $rc -eq 1 ] && grep -q notes.png "$TMP/attbad.err" && [ ! -e "$TMP/attbad.png" ]; then pass "attend with a text file: exit 1, named"; else fail "attend with a text file: exit 1, named" "exit $rc" "$(cat "$TMP/attbad.err")"; fi

# ------------------------------------------------------------------------- attend --json, --probs, --font
run attj attend "${M[@]}" red.png --json "$TMP/red.json"
expect_eq "attend --json: exit status, caption on stdout" "$rc:$(out attj)" $'0:red.png\ta red square on black'
"$HELPER" json "$TMP/red.json" >"$TMP/red.json.images" 2>"$TMP/red.json.check"
expect_eq "attend --json: one valid JSON object naming the image" "$?:$(cat "$TMP/red.json.images")" "0:red.png"
expect_grep "attend --json: caption, grid 6 x 6" "$TMP/red.json" '"caption":"a red square on black",.*"grid":\[6,6\]'
expect_eq "attend --json: the words in order" "$(grep -oE '"word":"[^"]*"' "$TMP/red.json" | cut -d'"' -f4 | tr '\n' ' ')" \
    "a red square on black "
# each word's map: 6 rows of 6 weights summing to 1; the words' log-probabilities and <end>'s sum
# to the caption's
maps=$(grep -oE '"attention":\[(\[[^]]*\],?){6}\]' "$TMP/red.json" | awk -F'[][,]+' '{ n = 0; s = 0;
    for (i = 2; i <= NF; i++) if ($i != "" && $i !~ /attention/) { n++; s += $i } printf "%d:%.4f ", n, s }')
expect_eq "attend --json: 5 maps of 36 weights summing to 1" "$maps" "36:1.0000 36:1.0000 36:1.0000 36:1.0000 36:1.0000 "
lps=$(grep -oE '"(end_)?logprob":-?[0-9.e-]+' "$TMP/red.json" | cut -d: -f2 | tr '\n' ' ')
expect_eq "attend --json: word log-probabilities (+ <end>) sum to the caption's" \
    "$(awk -v l="$lps" 'BEGIN { n = split(l, x, " "); s = 0; for (i = 2; i <= n; i++) s += x[i];
        d = s - x[1]; print (n == 7 && d < 1e-4 && d > -1e-4) ? "yes" : "no: " l }')" yes
run attjs attend "${M[@]}" green.png --json - -o "$TMP/green.png"
expect_eq "attend --json -: the JSON alone on stdout" "$rc:$(out attjs | head -c 19)" '0:{"image":"green.png'
expect_eq "attend --json -: one line" "$(out attjs | wc -l)" 1
run attp attend "${M[@]}" red.png -o "$TMP/attp.png" --probs --panel 64
read -r pw ph <<<"$(figure_size 5 64 6)"
expect_eq "attend --probs: labels 5s/4 taller" "$("$HELPER" size "$TMP/attp.png")" "$pw $((ph + 15))"
run attf attend "${M[@]}" red.png -o "$TMP/attf.png" --font builtin
expect_eq "attend --font builtin: the bitmap font, same layout" "$rc:$("$HELPER" size "$TMP/attf.png")" "0:$(figure_size 5 256 6)"
run attnf attend "${M[@]}" red.png -o "$TMP/attnf.png" --font "$TMP/no-such-font.ttf"
if [ $rc -eq 1 ] && grep -q "no-such-font.ttf" "$TMP/attnf.err" && [ ! -e "$TMP/attnf.png" ]; then pass "attend --font MISSING: exit 1, named"; else fail "attend --font MISSING: exit 1, named" "exit $rc" "$(cat "$TMP/attnf.err")"; fi
usage "attend -o and --json naming one file" "different files" attend "${M[@]}" red.png -o "$TMP/same.x" --json "$TMP/same.x"
usage "attend --html -" "stdout" attend "${M[@]}" red.png --html -
write_fails_early() { # attend --json /dev/full: exit 1, named
    run jfull attend "${M[@]}" red.png --json /dev/full
    if [ $rc -eq 1 ] && grep -q "/dev/full" "$TMP/jfull.err"; then pass "attend --json /dev/full: exit 1, named"; else fail "attend --json /dev/full: exit 1, named" "exit $rc" "$(cat "$TMP/jfull.err")"; fi
}
write_fails_early

# ------------------------------------------------------------------------- eval
BLOCK=$'images        6
BLEU-1        1.000000
BLEU-2        1.000000
BLEU-3        1.000000
BLEU-4        1.000000
ROUGE-L       1.000000
CIDEr-D       10.000000
distinct      6 / 6 captions (1.000)
vocabulary    17 words used
mean length   4.50 words'
run eval eval "${M[@]}" --data . --split all --results "$TMP/results.json"
expect_eq "eval: exit status" "$rc" 0
expect_eq "eval: the metric block (exact captions score 1 / CIDEr-D 10)" "$(out eval | head -10)" "$BLOCK"
expect_grep "eval: the attention sharpness line" "$TMP/eval.out" \
    '^attention     largest weight [0-9.]+ \([0-9.]+x uniform over [0-9]+\), entropy [0-9.]+ of uniform$'
expect_eq "eval --results: COCO results, the file name as image_id" "$(cat "$TMP/results.json")" \
'[{"image_id":"red.png","caption":"a red square on black"},
 {"image_id":"green.png","caption":"a green circle on white"},
 {"image_id":"blue.png","caption":"blue stripes on white"},
 {"image_id":"yellow.png","caption":"yellow on the left"},
 {"image_id":"cross.png","caption":"a white cross on black"},
 {"image_id":"checker.png","caption":"a purple checker board"}]'
run evalj eval "${M[@]}" --data captions.tsv --split all --beam 1 --max-images 2 --json
expect_grep "eval --json --max-images 2" "$TMP/evalj.out" \
    '^\{"images":2,"Bleu_1":[01][0-9.e-]*,"Bleu_2":[0-9.e-]+,"Bleu_3":[0-9.e-]+,"Bleu_4":[0-9.e-]+,"ROUGE_L":1,"CIDEr":[0-9.e-]+,"bleu_counts":\{"testlen":10,"reflen":10,"guess":\[10,8,6,4\],"correct":\[10,8,6,4\]\},"distinct":2,"distinct_ratio":1,"vocab_used":8,"mean_len":5,"attention_max":[0-9.e-]+,"attention_entropy":[0-9.e-]+\}$'
run evalsplit eval "${M[@]}" --data .
if [ $rc -eq 1 ] && grep -q "split" "$TMP/evalsplit.err"; then pass "eval: a split the data lacks is an error"; else fail "eval: a split the data lacks is an error" "exit $rc"; fi
mkdir -p "$TMP/data2"
cp ./*.png "$TMP/data2/" && cp captions.tsv "$TMP/data2/"
printf 'gone.png\ta caption of a missing image\n' >>"$TMP/data2/captions.tsv"
run evalmiss eval "${M[@]}" --data "$TMP/data2" --split all
expect_eq "eval with a missing image: exit 1, the others scored" "$rc:$(out evalmiss | head -1)" "1:images        6"
expect_grep "eval with a missing image: named" "$TMP/evalmiss.err" "gone.png"

# ------------------------------------------------------------------------- score
run score_rt score --refs captions.tsv --results "$TMP/results.json"
expect_eq "score: eval's results against the same references give eval's block" "$rc:$(out score_rt)" "0:$BLOCK"

# DESIGN.md's two-image test vector, as COCO files (case and punctuation exercise the tokenizer,
# image 2 is named by file name, image 3 has no result)
cat >"$TMP/refs.json" <<'EOF'
{"info": {"description": "test"}, "images": [{"id": 1, "file_name": "one.jpg"}, {"id": 2, "file_name": "two.jpg"},
  {"id": 3, "file_name": "three.jpg"}],
 "annotations": [
  {"image_id": 1, "id": 10, "caption": "This is one reference sentence for sentence1."},
  {"image_id": 1, "id": 11, "caption": "this is one more reference sentence for sentence1"},
  {"image_id": 2, "id": 12, "caption": "this is a reference sentence for sentence2 which was generated by your model"},
  {"image_id": 2, "id": 13, "caption": "This is the second reference sentence for sentence2"},
  {"image_id": 3, "id": 14, "caption": "an image without a result"}]}
EOF
cat >"$TMP/res2.json" <<'EOF'
[{"image_id": 1, "caption": "this is the model generated sentence1 which seems good enough"},
 {"image_id": "two.jpg", "caption": "This is sentence2, which has been generated by your model."}]
EOF
run score score --refs "$TMP/refs.json" --results "$TMP/res2.json"
expect_eq "score: exit status" "$rc" 0
expect_eq "score: DESIGN.md two-image vector" "$(out score | head -7)" $'images        2
BLEU-1        0.550000
BLEU-2        0.428174
BLEU-3        0.284043
BLEU-4        0.201143
ROUGE-L       0.522104
CIDEr-D       1.242192'
expect_grep "score: images without results are named in a note" "$TMP/score.err" "1 of 3 reference images have no result"
run scorej score --refs "$TMP/refs.json" --results "$TMP/res2.json" --json
expect_grep "score --json: BLEU totals" "$TMP/scorej.out" \
    '"bleu_counts":\{"testlen":20,"reflen":16,"guess":\[20,18,16,14\],"correct":\[11,6,2,1\]\}'
expect_grep "score --json: CIDEr" "$TMP/scorej.out" '"CIDEr":1\.24219'

printf '[{"image_id": 7, "caption": "x"}, {"image_id": "nope.jpg", "caption": "y"}, {"image_id": 1, "caption": "z"}]' >"$TMP/bad1.json"
run bad1 score --refs "$TMP/refs.json" --results "$TMP/bad1.json"
if [ $rc -eq 1 ] && grep -q '7, "nope.jpg"' "$TMP/bad1.err" && [ ! -s "$TMP/bad1.out" ]; then pass "score: unknown image ids are an error naming them"; else fail "score: unknown image ids are an error naming them" "exit $rc" "$(cat "$TMP/bad1.err")"; fi
printf '[{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]' >"$TMP/bad2.json"
run bad2 score --refs "$TMP/refs.json" --results "$TMP/bad2.json"
if [ $rc -eq 1 ] && grep -q 'second result for image 1' "$TMP/bad2.err"; then pass "score: two results for one image are an error"; else fail "score: two results for one image are an error" "exit $rc" "$(cat "$TMP/bad2.err")"; fi
printf '[{"image_id": 1, "caption": "x"},\n {"image_id": 2 "caption": "y"}]' >"$TMP/bad3.json"
run bad3 score --refs "$TMP/refs.json" --results "$TMP/bad3.json"
if [ $rc -eq 1 ] && grep -q 'bad3.json: line 2' "$TMP/bad3.err"; then pass "score: invalid JSON named with its line"; else fail "score: invalid JSON named with its line" "exit $rc" "$(cat "$TMP/bad3.err")"; fi
printf '[{"image_id": 1.5, "caption": "x"}]' >"$TMP/bad4.json"
run bad4 score --refs "$TMP/refs.json" --results "$TMP/bad4.json"
if [ $rc -eq 1 ] && grep -q 'image_id: 1.5 is not an integer' "$TMP/bad4.err"; then pass "score: a fractional image_id is an error"; else fail "score: a fractional image_id is an error" "exit $rc" "$(cat "$TMP/bad4.err")"; fi
run bad5 score --refs "$TMP/refs.json" --results "$TMP/absent.json"
if [ $rc -eq 1 ] && grep -q 'absent.json' "$TMP/bad5.err"; then pass "score: a missing results file is named"; else fail "score: a missing results file is named" "exit $rc"; fi

# ------------------------------------------------------------------------- signals
# Ctrl-C stops a run after a checkpoint; a second signal, while that is under way, ends the
# process at once. Deterministic: the process is stopped, both signals wait, then it goes on.
SIGRUN=(train --data . --dev-split none --train-split all --image-size 24 --conv 8s2,16p,16 --att 16 --hidden 32
    --embed 16 --max-len 8 --batch 6 --min-count 1 --threads 1 --quiet)
sigtrain() { # sigtrain NAME SIGNALS...: a long run, SIGSTOPped once its checkpoint exists, then sent SIGNALS
    local name=$1 pid i
    shift
    "$SACCADE" "${SIGRUN[@]}" --epochs 100000 --out "$TMP/$name.safetensors" >/dev/null 2>"$TMP/$name.err" &
    pid=$!
    for i in $(seq 200); do [ -s "$TMP/$name.safetensors.ckpt" ] && break; sleep 0.05; done
    kill -STOP $pid
    for s in "$@"; do kill -"$s" $pid; done
    kill -CONT $pid
    wait $pid
    rc=$?
}
sigtrain int1 INT
expect_eq "train: Ctrl-C stops after a checkpoint (exit 1)" "$rc" 1
expect_grep "... and says how to resume" "$TMP/int1.err" "training stopped; resume with the same command and --resume"
sigtrain int2 INT TERM
expect_eq "train: a second signal ends it at once (killed by SIGINT or SIGTERM)" "$( [ $rc -eq 130 ] || [ $rc -eq 143 ] && echo killed || echo "exit $rc")" killed
expect_grep "... after saying it would" "$TMP/int2.err" "interrupt again to quit at once"
expect_eq "... and leaves no temporary file beside its outputs" "$(cd "$TMP" && ls -A | grep '^\.int2' || true)" ""
run sigresume "${SIGRUN[@]}" --epochs 1 --out "$TMP/int2.safetensors" --resume
expect_eq "... and its last checkpoint still resumes (exit 0)" "$rc" 0

# ------------------------------------------------------------------------- never lose a user's file
# Device nodes of our own in $TMP (as root): a regression that renames over a device then replaces
# the test's node, never the machine's /dev/null. Without root, /dev/full is used for the write
# errors (an unprivileged process cannot replace it) and the device checks are skipped.
FULL=/dev/full NULLDEV=
if [ "$(id -u)" = 0 ] && mknod "$TMP/full" c 1 7 2>/dev/null && mknod "$TMP/null" c 1 3 2>/dev/null; then
    FULL=$TMP/full NULLDEV=$TMP/null
else
    echo "     (not root: the checks on a device node of our own are skipped)"
fi
# write_fails DESCRIPTION WHAT-IN-STDERR ARGS...: exit 1, the file and the reason named on stderr
write_fails() {
    local desc=$1 what=$2
    shift 2
    run wfail "$@"
    if [ $rc -eq 1 ] && grep -qF -- "$what" "$TMP/wfail.err" && grep -q "No space left on device" "$TMP/wfail.err"; then
        pass "$desc"
    else
        fail "$desc" "exit $rc, expected 1 with '$what' and the reason on stderr:" "$(cat "$TMP/wfail.err")"
    fi
}
"$SACCADE" caption "${M[@]}" red.png >/dev/full 2>"$TMP/full.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "stdout: write error (No space left on device)" "$TMP/full.err"; then
    pass "caption > /dev/full: exit 1, stdout: write error"
else
    fail "caption > /dev/full: exit 1, stdout: write error" "exit $rc" "$(cat "$TMP/full.err")"
fi
"$SACCADE" caption "${M[@]}" --json red.png green.png >/dev/full 2>"$TMP/full.err"
expect_eq "caption --json > /dev/full: exit 1" "$?" 1
"$SACCADE" score --refs "$TMP/refs.json" --results "$TMP/res2.json" >/dev/full 2>"$TMP/full.err"
rc=$?
expect_eq "score > /dev/full: exit 1 with stdout's write error" "$rc:$(grep -c 'stdout: write error' "$TMP/full.err")" "1:1"
"$SACCADE" eval "${M[@]}" --data . --split all --json >/dev/full 2>"$TMP/full.err"
rc=$?
expect_eq "eval > /dev/full: exit 1 with stdout's write error" "$rc:$(grep -c 'stdout: write error' "$TMP/full.err")" "1:1"
"$SACCADE" attend "${M[@]}" red.png -o "$TMP/ok.png" >/dev/full 2>"$TMP/full.err"
expect_eq "attend > /dev/full: exit 1" "$?" 1
write_fails "eval --results FULL: exit 1, named" "$FULL" eval "${M[@]}" --data . --split all --results "$FULL"
write_fails "attend -o FULL: exit 1, named" "$FULL" attend "${M[@]}" red.png -o "$FULL"
write_fails "attend --html FULL: exit 1, named" "$FULL" attend "${M[@]}" red.png --html "$FULL"
[ -c "$FULL" ] && pass "FULL is still a character device" || fail "FULL is still a character device" "$(ls -l "$FULL")"
if [ -n "$NULLDEV" ]; then
    ln -s "$NULLDEV" "$TMP/to-null"
    run devnull attend "${M[@]}" red.png --html "$NULLDEV" -o "$TMP/to-null"
    expect_eq "attend --html NULL -o LINK-TO-NULL: exit 0" "$rc" 0
    if [ -c "$NULLDEV" ] && [ -L "$TMP/to-null" ] && [ -z "$(ls -A "$TMP" | grep -E '^\.|null\.tmp')" ]; then
        pass "attend --html NULL: the device is written, not replaced (no temporary file left)"
    else
        fail "attend --html NULL: the device is written, not replaced" "$(ls -la "$TMP" | grep -i null)"
    fi
    run devnull2 eval "${M[@]}" --data . --split all --results "$NULLDEV"
    expect_eq "eval --results NULL: exit 0, still a device" "$rc:$([ -c "$NULLDEV" ] && echo dev)" "0:dev"
fi
mkfifo "$TMP/fifo"
cat "$TMP/fifo" >"$TMP/fifo.out" &
reader=$!
run fifo attend "${M[@]}" red.png --html "$TMP/fifo"
for _ in $(seq 50); do kill -0 $reader 2>/dev/null || break; sleep 0.1; done
kill $reader 2>/dev/null # still waiting: the FIFO was replaced and never written
wait $reader 2>/dev/null
if [ $rc -eq 0 ] && [ -p "$TMP/fifo" ] && grep -q '^</html>$' "$TMP/fifo.out"; then
    pass "attend --html FIFO: the page goes through the FIFO, which stays one"
else
    fail "attend --html FIFO: the page goes through the FIFO, which stays one" "exit $rc" "$(ls -l "$TMP/fifo")"
fi
mkdir "$TMP/real"
echo old >"$TMP/real/page.html"
ln -s real/page.html "$TMP/page-link.html"
ln -s real/made.png "$TMP/png-link.png"
run link attend "${M[@]}" red.png --html "$TMP/page-link.html" -o "$TMP/png-link.png"
if [ $rc -eq 0 ] && [ -L "$TMP/page-link.html" ] && [ -L "$TMP/png-link.png" ] && grep -q '^</html>$' "$TMP/real/page.html" &&
    [ "$("$HELPER" size "$TMP/real/made.png")" = "$(figure_size 5 256 6)" ]; then
    pass "attend through symbolic links: the targets are written, the links stay"
else
    fail "attend through symbolic links: the targets are written, the links stay" "exit $rc" "$(ls -la "$TMP" "$TMP/real")"
fi

# an output that is one of the inputs is refused (exit 2) and left alone
mkdir "$TMP/data3"
cp red.png green.png captions.tsv "$TMP/data3/"
cp captions.tsv "$TMP/captions.orig"
run same1 eval "${M[@]}" --data "$TMP/data3" --split all --results "$TMP/data3/captions.tsv"
expect_eq "eval --results naming its --data file: exit 2, the dataset intact" \
    "$rc:$(cmp -s "$TMP/data3/captions.tsv" "$TMP/captions.orig" && echo intact)" "2:intact"
expect_grep "eval --results naming its --data file: said so" "$TMP/same1.err" "is also the input"
run same2 eval "${M[@]}" --data "$TMP/data3/captions.tsv" --split all --results "$TMP/tiny.safetensors"
expect_eq "eval --results naming the model: exit 2" "$rc" 2
cp red.png "$TMP/keep.png"
run same3 attend "${M[@]}" "$TMP/keep.png" -o "$TMP/keep.png"
expect_eq "attend -o naming its image: exit 2, the image intact" "$rc:$(cmp -s "$TMP/keep.png" red.png && echo intact)" "2:intact"
run same4 attend "${M[@]}" red.png -o "$TMP/twice.html" --html "$TMP/twice.html"
expect_eq "attend -o and --html naming one file: exit 2" "$rc" 2

# escaping: paths in the TSV-like output, valid JSON for any file name, no control characters on stderr
cp red.png "$TMP/tab	name.png"
cp red.png "$TMP/back\\slash.png"
cp red.png "$TMP/$(printf 'caf\351.png')"
printf 'not an image' >"$TMP/$(printf '\033[31mevil.png')"
run esc caption "${M[@]}" "$TMP/tab	name.png" "$TMP/back\\slash.png"
expect_eq "caption: tab and backslash in a path are escaped" "$(out esc)" \
    "$TMP/tab\\tname.png	a red square on black
$TMP/back\\\\slash.png	a red square on black"
run escatt attend "${M[@]}" "$TMP/tab	name.png" -o "$TMP/escatt.png"
expect_eq "attend: the path on stdout is escaped too" "$(out escatt)" "$TMP/tab\\tname.png	a red square on black"
run escj caption "${M[@]}" --json "$TMP/$(printf 'caf\351.png')" "$TMP/tab	name.png"
expect_eq "caption --json: exit 0" "$rc" 0
"$HELPER" json "$TMP/escj.out" >"$TMP/escj.images" 2>"$TMP/escj.check"
expect_eq "caption --json with a non-UTF-8 file name: valid JSON, the byte written as \\xe9" \
    "$?:$(cat "$TMP/escj.images")" "0:$TMP/caf\\xe9.png
$TMP/tab	name.png"
run evil caption "${M[@]}" "$TMP/$(printf '\033[31mevil.png')" red.png
if [ $rc -eq 1 ] && grep -q 'evil.png' "$TMP/evil.err" && ! grep -q "$(printf '\033')" "$TMP/evil.err"; then
    pass "caption: an escape sequence in a file name does not reach the terminal"
else
    fail "caption: an escape sequence in a file name does not reach the terminal" "exit $rc" "$(od -c "$TMP/evil.err" | head -5)"
fi
run escaped_help caption --help
expect_grep "caption --help documents the escaping" "$TMP/escaped_help.out" '\\t'

checks_done
