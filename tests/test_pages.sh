#!/bin/bash
# test_pages.sh - the HTML pages saccade writes, loaded in headless Chromium:
#
#   test_pages.sh SACCADE SRCROOT attend   attend --html: #word=N shows word N's map; a click, the
#                                          arrow keys, Home/End and "play" switch the map; no
#                                          script errors (and a deliberate one is caught, so the
#                                          check can fail); a screenshot of a word's map
#   test_pages.sh SACCADE SRCROOT batch    the batch gallery with attention figures: one figure
#                                          per photo, no console errors
#   test_pages.sh SACCADE SRCROOT report   saccade report: the charts' points and axes in the
#                                          rendered DOM match the log; no console errors
#
# Exit 77 (skipped) when Chromium is absent ($CHROMIUM, default /usr/bin/chromium). Uses the
# shipped model (models/flickr8k.safetensors) and sample photos. Screenshots are kept in
# $SACCADE_PAGES_KEEP when set (taken only then, for a person to look at).

set -u
SACCADE=${1:?usage: test_pages.sh SACCADE SRCROOT attend|batch|report}
SRC=${2:?usage: test_pages.sh SACCADE SRCROOT attend|batch|report}
MODE=${3:?usage: test_pages.sh SACCADE SRCROOT attend|batch|report}
case $SACCADE in /*) ;; *) SACCADE=$PWD/$SACCADE ;; esac
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    echo "skipped: $CHROMIUM not found (apt-get install chromium to run this test)"
    exit 77
fi
MODEL=$SRC/models/flickr8k.safetensors
PHOTO=$SRC/models/samples/chelsea.jpg
export OPENBLAS_NUM_THREADS=1
TMP=$(mktemp -d /tmp/saccade-test-pages.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh" || exit 1

# chromium NAME URL [ARGS...]: headless Chromium on URL with console messages logged to NAME.log
chromium() {
    local name=$1 url=$2 profile
    shift 2
    profile=$(mktemp -d "$TMP/profile.XXXXXX")
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars --force-device-scale-factor=1 \
        --user-data-dir="$profile" --enable-logging=stderr --v=0 "$@" "$url" >"$TMP/$name.dom" 2>"$TMP/$name.log"
}
# console_errors NAME: the page's uncaught errors and console errors that Chromium logged
console_errors() { grep -E 'CONSOLE.*"(Uncaught|Error)' "$TMP/$1.log"; }
no_console_errors() { # DESCRIPTION NAME
    local errs
    errs=$(console_errors "$2")
    if [ -z "$errs" ] && ! grep -q 'data-js-error="' "$TMP/$2.dom"; then pass "$1"; else fail "$1" "$errs" "$(grep -o 'data-js-error="[^"]*"' "$TMP/$2.dom")"; fi
}
# screenshot NAME URL W,H FILE.png: only with $SACCADE_PAGES_KEEP (for a person to look at; the
# checks above read the DOM, and test_cli.sh html counts pixels), to keep the test fast
screenshot() {
    [ -n "${SACCADE_PAGES_KEEP:-}" ] || return 0
    chromium "$1" "$2" --window-size="$3" --screenshot="$TMP/$4"
    if [ -s "$TMP/$4" ]; then pass "screenshot $4"; else fail "screenshot $4" "$(tail -3 "$TMP/$1.log")"; fi
}
# count NAME REGEX: matches of an extended regex in the dumped DOM
count() { grep -oE -- "$2" "$TMP/$1.dom" | wc -l; }

case $MODE in
# ------------------------------------------------------------------------- attend --html
attend)
    "$SACCADE" attend --model "$MODEL" --threads 1 --quiet "$PHOTO" --html "$TMP/a.html" --json "$TMP/a.json" >"$TMP/a.out" 2>&1
    expect_eq "attend --html: exit 0" "$?" 0
    T=$(grep -o '"word":' "$TMP/a.json" | wc -l)
    [ "$T" -ge 5 ] || { fail "the caption has at least 5 words" "found $T"; exit 1; }
    # a test script appended to a copy of the page drives it as a person would and writes what it
    # saw into the DOM; then a deliberate error shows that both error checks can fail
    cp "$TMP/a.html" "$TMP/drive.html"
    cat >>"$TMP/drive.html" <<'EOF'
<script>
(function(){
  var log=[], b=document.body;
  function note(what){log.push(what+'='+b.getAttribute('data-word')+':'+document.querySelectorAll('.map.on').length);}
  function key(k){document.dispatchEvent(new KeyboardEvent('keydown',{key:k,bubbles:true}));}
  note('hash');
  document.getElementById('w4').click(); note('click4');
  document.getElementById('w4').click(); note('click4again');
  key('ArrowRight'); key('ArrowRight'); key('ArrowRight'); note('right3');
  key('ArrowLeft'); note('left');
  key('End'); note('end');
  key('Home'); note('home');
  key('Escape'); note('escape');
  document.getElementById('next').click(); note('next');
  document.getElementById('play').click(); note('play');
  setTimeout(function(){note('play+2s');b.setAttribute('data-test-log',log.join(' '));
    setTimeout(function(){throw new Error('saccade-test-deliberate');},10);},2000);
})();
</script>
EOF
    chromium drive "file://$TMP/drive.html#word=3" --virtual-time-budget=5000 --dump-dom
    last=$((T - 1))
    expect_eq "attend page driven: #word=3, click, keys, next, play (word shown : maps shown)" \
        "$(grep -oE 'data-test-log="[^"]*"' "$TMP/drive.dom" | cut -d'"' -f2)" \
        "hash=3:1 click4=4:1 click4again=-1:0 right3=2:1 left=1:1 end=$last:1 home=0:1 escape=-1:0 next=0:1 play=0:1 play+2s=2:1"
    expect_eq "attend page: the page's script ran to the end" "$(count drive 'data-ready="1"')" 1
    expect_eq "attend page: the deliberate error is seen by both checks (so they can fail)" \
        "$(console_errors drive | grep -c saccade-test-deliberate):$(count drive 'data-js-error="[^"]*saccade-test-deliberate')" "1:1"
    expect_eq "attend page: no other console error" "$(console_errors drive | grep -vc saccade-test-deliberate)" 0
    chromium plain "file://$TMP/a.html#word=2" --dump-dom
    no_console_errors "attend page #word=2: no console errors" plain
    expect_eq "attend page #word=2: word 2's map and word shown, alone" \
        "$(count plain '<body data-word="2"'):$(count plain 'class="map on" id="map-2"'):$(count plain 'class="map on"'):$(count plain 'class="word on" id="w2"')" "1:1:1:1"
    expect_eq "attend page: one map and one word per word of the caption ($T)" \
        "$(count plain '<img class="map[a-z ]*" id="map-[0-9]+"'):$(count plain '<span class="word[a-z ]*" id="w[0-9]+"')" "$T:$T"
    screenshot shot "file://$TMP/a.html#word=2" 900,820 attend-word2.png
    ;;
# ------------------------------------------------------------------------- batch gallery
batch)
    mkdir "$TMP/photos"
    cp "$SRC"/models/samples/*.jpg "$TMP/photos/"
    n=$(ls "$TMP/photos" | wc -l)
    "$SACCADE" batch "$TMP/photos" --model "$MODEL" --threads 1 --quiet --attention -o "$TMP/g.html" >"$TMP/g.out" 2>&1
    expect_eq "batch --attention -o g.html: exit 0" "$?" 0
    chromium gallery "file://$TMP/g.html" --dump-dom
    no_console_errors "batch gallery: no console errors" gallery
    expect_eq "batch gallery: $n figures, each with a thumbnail, a caption and an attention figure" \
        "$(count gallery '<figure[ >]'):$(count gallery '<img class="t"'):$(count gallery '<figcaption><b>[a-z ]+</b>'):$(count gallery '<img class="a"')" \
        "$n:$n:$n:$n"
    screenshot gshot "file://$TMP/g.html" 1100,900 gallery.png
    ;;
# ------------------------------------------------------------------------- training report
report)
    # 40 step lines (steps 25..1000), 4 epochs with epoch 3 the last best
    awk 'BEGIN { for (s = 25; s <= 1000; s += 25) {
            printf "{\"step\":%d,\"epoch\":%d,\"loss\":%.4f,\"ce\":%.4f,\"lr\":%.6f,\"lr_enc\":0.0001,\"grad_norm\":%.3f,\"images_per_s\":%.1f,\"time\":%d}\n",
                s, int((s - 1) / 250) + 1, 4 + 3 * exp(-s / 300) + (s % 75) / 300, 3.5 + 3 * exp(-s / 300), 0.0004 * (1 - s / 2000), 2 + (s % 100) / 50, 40 + s % 9, 1000 + s
            if (s % 250 == 0) { e = s / 250
                printf "{\"epoch\":%d,\"step\":%d,\"dev\":{\"bleu1\":0.5,\"bleu2\":0.3,\"bleu3\":0.2,\"bleu4\":%.3f,\"rouge_l\":0.4,\"cider_d\":%.3f,\"distinct\":%.3f,\"vocab_used\":300,\"mean_len\":9.5,\"att_max\":0.2,\"att_entropy\":0.8},\"best\":%s,\"epoch_seconds\":60}\n",
                    e, s, 0.05 + 0.02 * e - (e == 4) * 0.03, 0.2 + 0.05 * e - (e == 4) * 0.1, 0.3 + 0.05 * e, e == 4 ? "false" : "true" } } }' >"$TMP/train.jsonl"
    "$SACCADE" report "$TMP/train.jsonl" -o "$TMP/report.html" --model "$MODEL" --images "$PHOTO" --threads 1 --quiet >"$TMP/r.out" 2>&1
    expect_eq "report: exit 0" "$?" 0
    chromium report "file://$TMP/report.html" --dump-dom
    no_console_errors "report: no console errors" report
    R=$TMP/report.dom
    # the rendered DOM: one <svg> per chart, their points, axes and the chosen epoch
    expect_eq "report: 7 charts rendered as SVG" "$(count report '<svg id="chart-[a-z0-9]+" class="chart"')" 7
    for c in chart-loss chart-grad chart-ips; do
        expect_eq "report: $c has the log's 40 steps as points, x axis 25 .. 1000" \
            "$(grep -oE "<svg id=\"$c\"[^>]*" "$R" | grep -oE 'data-(n|x-min|x-max)="[^"]*"' | cut -d'"' -f2 | tr '\n' ' ')$(awk -v id="<svg id=\"$c\"" 'index($0, id) { on = 1 } on && /<g class="raw"/ { n += gsub(/<circle class="pt"/, "") } on && /<\/svg>/ { on = 0 } END { print n + 0 }' "$R")" \
            "40 25 1000 40"
    done
    for c in chart-bleu4 chart-cider chart-distinct; do
        expect_eq "report: $c has 4 epochs as dots, epoch 3 marked as chosen" \
            "$(awk -v id="<svg id=\"$c\"" 'index($0, id) { on = 1 } on && /<g class="dots/ { n += gsub(/<circle class="pt"/, "") } on && /<g class="best"/ { match($0, /<g class="best" data-x="[^"]*"/); b = substr($0, RSTART + 24, RLENGTH - 25) } on && /<\/svg>/ { on = 0 } END { print n + 0 ":" b }' "$R")" \
            "4:3"
    done
    expect_eq "report: the loss chart's x axis has ticks at 200 .. 1000" \
        "$(awk 'index($0, "<svg id=\"chart-loss\"") { on = 1 } on && /<g class="axis x"/ { a = 1 } a && /<text x=/ { s = $0; sub(/<\/text>.*/, "", s); sub(/.*>/, "", s); printf "%s ", s } a && /<\/g>/ { exit }' "$R")" \
        "200 400 600 800 1000 "
    expect_eq "report: the summary names the chosen epoch (3) and the 40 steps" \
        "$(grep -oE 'id="chosen" data-epoch="[0-9]+"' "$R" | cut -d'"' -f4):$(grep -oE 'id="steps" data-n="[0-9]+"' "$R" | cut -d'"' -f4)" "3:40"
    expect_eq "report: one photo with its attention figure" "$(count report '<figure class="photo"><figcaption><b>[a-z ]+</b>')" 1
    screenshot rshot "file://$TMP/report.html" 1300,1900 report.png
    ;;
*)
    echo "test_pages.sh: unknown mode '$MODE' (attend, batch or report)"
    exit 2
    ;;
esac
if [ -n "${SACCADE_PAGES_KEEP:-}" ]; then
    mkdir -p "$SACCADE_PAGES_KEEP" && cp "$TMP"/*.png "$TMP"/*.html "$SACCADE_PAGES_KEEP"/ 2>/dev/null
fi
checks_done
