#!/bin/sh
# test_batch.sh - end to end test of `saccade batch`: a tree of tiny PNG/JPEG/BMP/TGA images with
# a broken file, an empty file, a text file named .jpg, hidden files, a dangling link and link
# loops; a tiny model trained by `saccade train`; every output format; --resume after SIGKILL
# and after a torn last line; shards; the same captions whatever the thread count; exit codes.
#
# usage: test_batch.sh SACCADE BATCH_TESTTOOL
set -eu
S=$1
T=$2
W=$(mktemp -d "${TMPDIR:-/tmp}/saccade-batch.XXXXXX")
trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1
fails=0
check() { # check "what" COMMAND...: run a test command, count failures
    what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
same() { # same FILE_A FILE_B: equal contents, else show the difference
    cmp -s "$1" "$2" || { diff "$1" "$2" | head -10; return 1; }
}
status() { # status N COMMAND...: exit status is N
    want=$1
    shift
    set +e
    "$@" >"$W/status.out" 2>"$W/status.err"
    got=$?
    set -e
    [ "$got" = "$want" ] || { echo "  exit status $got, expected $want: $*"; cat "$W/status.err"; return 1; }
}

# ---- a tiny model, trained through the real command line ----
mkdir "$W/train"
"$T" images "$W/train" 12 24 png,jpg,bmp t
i=0
for f in t000.png t001.jpg t002.bmp t003.png t004.jpg t005.bmp t006.png t007.jpg t008.bmp t009.png t010.jpg t011.bmp; do
    case $((i % 3)) in
    0) c="a red striped square" ;; 1) c="a blue square with lines" ;; *) c="a green pattern of stripes" ;;
    esac
    printf '%s\t%s\n' "$f" "$c" >>"$W/train/captions.tsv"
    i=$((i + 1))
done
M=$W/tiny.safetensors
"$S" train --data "$W/train" --dev-split none --train-split all --epochs 20 --image-size 24 --conv 8s2,16p,16 \
    --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --no-augment --lr 3e-3 --lr-encoder 3e-3 --batch 6 \
    --min-count 1 --threads 1 --quiet --out "$M"
check "tiny model trained" test -s "$M"

# ---- the tree ----
P=$W/photos
mkdir -p "$P/sub/deeper" "$P/.hidden"
"$T" images "$P" 6 40 png,jpg,bmp a
"$T" images "$P/sub" 4 33 jpg,png b
"$T" images "$P/sub/deeper" 3 50 bmp,tga c
"$T" images "$P/.hidden" 1 20 png h
cp "$P/a000.png" "$P/no-extension"          # chosen by content
echo "just text" >"$P/notes.txt"            # not chosen
echo "not an image" >"$P/fake.jpg"          # chosen by name, fails
: >"$P/empty.png"                           # chosen by name, fails
head -c 300 "$P/a001.jpg" >"$P/broken.jpg"  # truncated JPEG, fails
ln -s .. "$P/sub/loop"                      # link loops
ln -s ../.. "$P/sub/deeper/up"
ln -s nowhere "$P/dangling.jpg"
cat >"$W/expected" <<EOF
$P/a000.png
$P/a001.jpg
$P/a002.bmp
$P/a003.png
$P/a004.jpg
$P/a005.bmp
$P/broken.jpg
$P/empty.png
$P/fake.jpg
$P/no-extension
$P/sub/b000.jpg
$P/sub/b001.png
$P/sub/b002.jpg
$P/sub/b003.png
$P/sub/deeper/c000.bmp
$P/sub/deeper/c001.tga
$P/sub/deeper/c002.bmp
EOF
printf '%s\n' "$P/broken.jpg" "$P/empty.png" "$P/fake.jpg" >"$W/expected.err"

keys() { cut -f2 "$1" | sort; } # the image of each record, sorted (duplicates kept)

# ---- jsonl to stdout: one record per image, errors recorded, exit 1 ----
check "jsonl run exits 1 (3 broken files)" status 1 "$S" batch "$P" --model "$M"
cp "$W/status.out" "$W/all.jsonl"
cp "$W/status.err" "$W/all.err"
check "jsonl parses" sh -c '"$0" read jsonl "$1" >"$2"' "$T" "$W/all.jsonl" "$W/all.rec"
keys "$W/all.rec" >"$W/all.keys"
check "every image exactly once, nothing else" same "$W/all.keys" "$W/expected"
grep '^err' "$W/all.rec" | cut -f2 | sort >"$W/all.errkeys"
check "the 3 broken files are error records" same "$W/all.errkeys" "$W/expected.err"
check "the broken files are reported on stderr" sh -c '[ "$(grep -c "error: .*\(broken\|empty\|fake\)" "$0")" = 3 ]' "$W/all.err"
check "progress without a terminal: plain lines (no carriage returns)" sh -c 'grep -q "17/17 100%.*img/s.*3 failed" "$0" && ! grep -q "$(printf "\r")" "$0"' "$W/all.err"
check "--quiet prints no progress" sh -c '"$0" batch "$1" --model "$2" --quiet 2>"$3" >/dev/null; ! grep -q "img/s" "$3" && grep -q fake.jpg "$3"' "$S" "$P" "$M" "$W/quiet.err"

# ---- the same captions whatever the thread count ----
sort "$W/all.jsonl" >"$W/all.sorted"
for n in 1 3; do
    "$S" batch "$P" --model "$M" --threads $n --quiet -o "$W/t$n.jsonl" 2>/dev/null || true
    sort "$W/t$n.jsonl" >"$W/t$n.sorted"
    check "--threads $n gives the same records as all cores" same "$W/t$n.sorted" "$W/all.sorted"
done

"$S" batch "$P" --model "$M" --beam 1 --batch 4 --threads 1 --quiet -o "$W/g1.jsonl" 2>/dev/null || true
"$S" batch "$P" --model "$M" --beam 1 --batch 4 --threads 3 --quiet -o "$W/g3.jsonl" 2>/dev/null || true
sort "$W/g1.jsonl" >"$W/g1.sorted"
sort "$W/g3.jsonl" >"$W/g3.sorted"
check "greedy in groups of 4: --threads 1 and 3 give the same records" same "$W/g1.sorted" "$W/g3.sorted"
check "greedy in groups: every image once" sh -c '"$0" read jsonl "$1" | cut -f2 | sort | cmp -s - "$2"' "$T" "$W/g3.jsonl" "$W/expected"

# ---- tsv, coco, html ----
"$S" batch "$P" --model "$M" --quiet -o "$W/all.tsv" 2>/dev/null || true
check "tsv parses" sh -c '"$0" read tsv "$1" >"$2"' "$T" "$W/all.tsv" "$W/tsv.rec"
sort "$W/tsv.rec" >"$W/tsv.sorted"
sort "$W/all.rec" >"$W/all.recsorted"
check "tsv has the jsonl's records" same "$W/tsv.sorted" "$W/all.recsorted"
"$S" batch "$P" --model "$M" --quiet --format coco -o "$W/all.coco" 2>/dev/null || true
check "coco parses" sh -c '"$0" read coco "$1" >"$2"' "$T" "$W/all.coco" "$W/coco.rec"
check "coco: no .partial left" test ! -e "$W/all.coco.partial"
grep '^ok' "$W/all.rec" | sed 's|\t.*/|\t|' | sort >"$W/all.okbase"
sort "$W/coco.rec" >"$W/coco.sorted"
check "coco: successes only, image_id = file name" same "$W/coco.sorted" "$W/all.okbase"
"$S" batch "$P" --model "$M" --quiet --attention -o "$W/all.html" 2>/dev/null || true
check "html parses, every inlined PNG decodes" sh -c '"$0" read html "$1" >"$2"' "$T" "$W/all.html" "$W/html.rec"
check "html: thumbnail + attention figure per captioned image" grep -qx "pictures.28" "$W/html.rec"
grep -v '^pictures' "$W/html.rec" | sort >"$W/html.sorted"
check "html has the jsonl's records" same "$W/html.sorted" "$W/all.recsorted"

"$S" batch "$P" --model "$M" --quiet --attention --beam 1 --batch 4 -o "$W/g.html" 2>/dev/null || true
check "html, greedy in groups of 4: parses, 14 thumbnails + 14 attention figures" sh -c \
    '"$0" read html "$1" >"$2" && grep -qx "pictures.28" "$2" && [ "$(grep -c "^ok" "$2")" = 14 ]' "$T" "$W/g.html" "$W/g.rec"

# ---- shards: disjoint, covering ----
: >"$W/shards.keys"
for i in 0 1 2; do
    "$S" batch "$P" --model "$M" --quiet --shard $i/3 -o "$W/shard$i.jsonl" 2>/dev/null || true
    "$T" read jsonl "$W/shard$i.jsonl" | cut -f2 >>"$W/shards.keys"
    check "shard $i/3 is not empty" test -s "$W/shard$i.jsonl"
done
sort "$W/shards.keys" >"$W/shards.sorted"
check "shards 0..2 of 3: disjoint and covering" same "$W/shards.sorted" "$W/expected"
cat "$W/shard0.jsonl" "$W/shard1.jsonl" "$W/shard2.jsonl" | sort >"$W/shards.union"
check "shard records equal the whole run's" same "$W/shards.union" "$W/all.sorted"

# ---- resume after SIGKILL (jsonl) and after a torn last line ----
mkdir "$W/many"
"$T" images "$W/many" 400 64 png,jpg,bmp m
"$S" batch "$W/many" --model "$M" --beam 64 --quiet -o "$W/many.ref.jsonl"
check "all 400 captioned: exit 0" test "$(wc -l <"$W/many.ref.jsonl")" = 400
sort "$W/many.ref.jsonl" >"$W/many.ref"
signal_after() { # signal_after SIG FILE LINES COMMAND...: signal the command once FILE has LINES lines
    sig=$1 file=$2 lines=$3
    shift 3
    "$@" 2>"$W/signalled.err" &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        [ "$(cat "$file" 2>/dev/null | wc -l)" -ge "$lines" ] && break
        sleep 0.01
    done
    kill -$sig $pid 2>/dev/null || true
    set +e
    wait $pid 2>/dev/null
    signalled_status=$?
    set -e
}
signal_after KILL "$W/k.jsonl" 20 "$S" batch "$W/many" --model "$M" --beam 64 --threads 1 --quiet -o "$W/k.jsonl"
n=$(wc -l <"$W/k.jsonl")
check "killed mid-run ($n of 400 lines written)" test "$n" -ge 20 -a "$n" -lt 400
printf '{"image": "%s/many/m399.bmp", "capt' "$W" >>"$W/k.jsonl" # a torn last line
check "--resume finishes: exit 0" status 0 "$S" batch "$W/many" --model "$M" --beam 64 -o "$W/k.jsonl" --resume
check "--resume tells what it skipped" grep -q "already in" "$W/status.err"
check "--resume warns about the torn line" grep -q "incomplete" "$W/status.err"
check "resumed file parses" sh -c '"$0" read jsonl "$1" >/dev/null' "$T" "$W/k.jsonl"
sort "$W/k.jsonl" >"$W/k.sorted"
check "after kill + resume: no record lost or duplicated, captions as one clean run" same "$W/k.sorted" "$W/many.ref"
check "--resume of a finished file adds nothing: exit 0" status 0 "$S" batch "$W/many" --model "$M" -o "$W/k.jsonl" --resume
check "... and leaves it unchanged" sh -c 'sort "$0" | cmp -s - "$1"' "$W/k.jsonl" "$W/many.ref"

# ---- resume: coco after SIGKILL (the .partial carries on) ----
signal_after KILL "$W/k.coco.partial" 20 "$S" batch "$W/many" --model "$M" --beam 64 --threads 1 --quiet --format coco -o "$W/k.coco"
check "coco killed: .partial kept, no final file" test -s "$W/k.coco.partial" -a ! -e "$W/k.coco"
check "coco --resume: exit 0" status 0 "$S" batch "$W/many" --model "$M" --beam 64 --format coco -o "$W/k.coco" --resume
"$T" read coco "$W/k.coco" | sort >"$W/kcoco.sorted"
"$T" read jsonl "$W/many.ref.jsonl" | sed 's|\t.*/|\t|' | sort >"$W/many.okbase"
check "coco after kill + resume: every image once" same "$W/kcoco.sorted" "$W/many.okbase"
check "coco: .partial removed when done" test ! -e "$W/k.coco.partial"

# ---- SIGTERM: the workers finish their images, the gallery is left ready for --resume ----
signal_after TERM "$W/s.html" 20 "$S" batch "$W/many" --model "$M" --beam 64 --threads 2 -o "$W/s.html"
n=$(grep -c '^<!--{' "$W/s.html" || true)
check "SIGTERM: exit 1 after $n of 400 records" test "$signalled_status" = 1 -a "$n" -lt 400
check "SIGTERM: says how to continue" grep -q "interrupted after.*--resume" "$W/signalled.err"
check "SIGTERM: no torn line" sh -c '[ "$(tail -c 1 "$0" | od -An -c | tr -d " ")" = "\\n" ]' "$W/s.html"
"$S" batch "$W/many" --model "$M" --beam 64 --quiet -o "$W/s.html" --resume
"$T" read html "$W/s.html" | grep -v '^pictures' | sort >"$W/s.sorted"
"$T" read jsonl "$W/many.ref.jsonl" | sort >"$W/many.rec"
check "SIGTERM + --resume: the whole gallery, every record once" same "$W/s.sorted" "$W/many.rec"

# ---- resume: tsv and html cut short with a torn line (an error record is kept, not redone) ----
head -n 5 "$W/all.tsv" >"$W/r.tsv"
printf '%s\t\terror=an earlier failure\n' "$P/sub/b000.jpg" >>"$W/r.tsv"
printf '%s\ta tor' "$P/sub/b001.png" >>"$W/r.tsv"
check "tsv --resume: exit 1 (failures)" status 1 "$S" batch "$P" --model "$M" -o "$W/r.tsv" --resume
"$T" read tsv "$W/r.tsv" | cut -f2 | sort >"$W/r.keys"
check "tsv resumed: every image once" same "$W/r.keys" "$W/expected"
check "tsv resumed: the earlier error record is kept" grep -q "error=an earlier failure" "$W/r.tsv"
head -n 12 "$W/all.html" >"$W/r.html" # header + some records, no footer
printf '<!--{"image": "%s/a000.png", "caption": "a' "$P" >>"$W/r.html"
check "html --resume: exit 1 (failures)" status 1 "$S" batch "$P" --model "$M" --attention -o "$W/r.html" --resume
"$T" read html "$W/r.html" | grep -v '^pictures' | sort >"$W/rhtml.sorted"
check "html resumed: every record once, one footer" same "$W/rhtml.sorted" "$W/all.recsorted"
check "html --resume of a finished gallery adds nothing" sh -c '"$0" batch "$1" --model "$2" --attention --quiet -o "$3" --resume 2>/dev/null; "$4" read html "$3" | grep -v "^pictures" | sort | cmp -s - "$5"' \
    "$S" "$P" "$M" "$W/r.html" "$T" "$W/all.recsorted"
echo "not a record" >"$W/other.jsonl"
check "--resume refuses a file that is not ours: exit 1, file unchanged" sh -c \
    '"$0" batch "$1" --model "$2" -o "$3" --resume 2>/dev/null; [ $? = 1 ] && [ "$(cat "$3")" = "not a record" ]' \
    "$S" "$P" "$M" "$W/other.jsonl"

# ---- command line ----
check "--help: stdout, exit 0" sh -c '"$0" batch --help | grep -q "usage: saccade batch"' "$S"
check "bad --beam: exit 2" status 2 "$S" batch "$P" --beam x3
check "bad --beam names the option" grep -q 'invalid value "x3" for --beam' "$W/status.err"
check "unknown option: exit 2" status 2 "$S" batch "$P" --bogus
check "unknown option is named" grep -q "unknown option '--bogus'" "$W/status.err"
check "missing value: exit 2" status 2 "$S" batch "$P" -o
check "bad --shard: exit 2" status 2 "$S" batch "$P" --shard 3/3
check "bad --format: exit 2" status 2 "$S" batch "$P" --format xml
check "no directory: exit 2" status 2 "$S" batch --model "$M"
check "--resume without -o: exit 2" status 2 "$S" batch "$P" --resume
check "--attention without html: exit 2" status 2 "$S" batch "$P" --attention
check "missing directory: exit 1" status 1 "$S" batch "$W/nonexistent" --model "$M"
check "coco to stdout: printed at the end, as the file" sh -c '"$0" batch "$1" --model "$2" --format coco 2>/dev/null | cmp -s - "$3"' "$S" "$P" "$M" "$W/all.coco"
check "an empty directory: exit 0, empty COCO array" sh -c 'mkdir "$0/empty" && "$1" batch "$0/empty" --format coco --quiet | grep -qx "\[\]"' "$W" "$S"

# ---- never lose a user's file ----
# Device nodes of our own in $W (as root), so that a regression that renames over a device
# replaces the test's node, never the machine's /dev/null; else /dev/full and no device checks.
FULL=/dev/full NULLDEV=
if [ "$(id -u)" = 0 ] && mknod "$W/full" c 1 7 2>/dev/null && mknod "$W/null" c 1 3 2>/dev/null; then
    FULL=$W/full NULLDEV=$W/null
fi
G=$W/good # a tree where every image is fine
mkdir "$G"
"$T" images "$G" 3 24 png,jpg g

# a second run on the same output says who holds it and exits 2; the first completes
"$S" batch "$W/many" --model "$M" --beam 64 --threads 1 --quiet -o "$W/lock.jsonl" 2>"$W/lock1.err" &
first=$!
n=0
while [ ! -s "$W/lock.jsonl.lock" ] && [ $n -lt 3000 ]; do sleep 0.01; n=$((n + 1)); done
check "a second batch on the same output: exit 2" status 2 "$S" batch "$W/many" --model "$M" -o "$W/lock.jsonl"
check "... it names the run that holds it" grep -q "lock.jsonl is in use by another run (pid $first: .*batch" "$W/status.err"
ln -s lock.jsonl "$W/lock-alias.jsonl"
check "... also through another name of the file, and with --resume" status 2 "$S" batch "$W/many" --model "$M" -o "$W/lock-alias.jsonl" --resume
set +e
wait $first
first_status=$?
set -e
check "the first run completes: exit 0" test "$first_status" = 0
check "... every record once, as one clean run" sh -c 'sort "$0" | cmp -s - "$1"' "$W/lock.jsonl" "$W/many.ref"
check "... and removes its lock file" test ! -e "$W/lock.jsonl.lock"

# --shard ranges and --resume with another shard
check "--shard 0/99999999999: exit 2" status 2 "$S" batch "$G" --model "$M" --shard 0/99999999999
check "... names the range" grep -q 'expected I/N with 0 <= I < N <= 1000000' "$W/status.err"
check "--shard 0/1000001: exit 2" status 2 "$S" batch "$G" --model "$M" --shard 0/1000001
check "--shard -1/3: exit 2" status 2 "$S" batch "$G" --model "$M" --shard -1/3
check "--shard 1/3x: exit 2" status 2 "$S" batch "$G" --model "$M" --shard 1/3x
check "--shard 999999/1000000: accepted" status 0 "$S" batch "$G" --model "$M" --shard 999999/1000000 --quiet
"$S" batch "$P" --model "$M" --quiet --shard 0/3 -o "$W/sh.jsonl" 2>/dev/null || true
cp "$W/sh.jsonl" "$W/sh.orig"
check "--resume of a shard 0/3 output with --shard 1/3: exit 2" status 2 "$S" batch "$P" --model "$M" --shard 1/3 -o "$W/sh.jsonl" --resume
check "... says which shard its records belong to" grep -q "not in shard 1/3" "$W/status.err"
check "... and leaves the output alone" same "$W/sh.jsonl" "$W/sh.orig"
check "--resume of it with --shard 0/3: accepted" status 1 "$S" batch "$P" --model "$M" --shard 0/3 -o "$W/sh.jsonl" --resume
check "... adds nothing" same "$W/sh.jsonl" "$W/sh.orig"

# skipped files and directories make the exit status 1
mkdir "$W/skip"
cp "$G/g000.png" "$W/skip/"
ln -s nowhere "$W/skip/dangling.png"
check "a dangling link: exit 1" status 1 "$S" batch "$W/skip" --model "$M" --quiet
check "... the good image is still captioned" sh -c '[ "$(grep -c g000.png "$0")" = 1 ]' "$W/status.out"
check "... the link is named" grep -q "dangling.png" "$W/status.err"
if [ "$(id -u)" != 0 ]; then
    mkdir "$W/skip2" "$W/skip2/locked"
    cp "$G/g000.png" "$W/skip2/"
    chmod 000 "$W/skip2/locked"
    check "an unreadable directory: exit 1" status 1 "$S" batch "$W/skip2" --model "$M" --quiet
    chmod 755 "$W/skip2/locked"
fi

# outputs: write errors, devices, links, an output that is an input
check "--format coco -o FULL: exit 1" status 1 "$S" batch "$G" --model "$M" --quiet --format coco -o "$FULL"
check "... the file and the reason named" grep -q "$FULL: write error (No space left on device)" "$W/status.err"
check "... FULL is still a device, no .partial beside it" test -c "$FULL" -a ! -e "$FULL.partial"
check "-o FULL (jsonl): exit 1" status 1 "$S" batch "$G" --model "$M" --quiet -o "$FULL"
check "--format coco to stdout > /dev/full: exit 1" sh -c '"$0" batch "$1" --model "$2" --quiet --format coco >/dev/full 2>"$3"; [ $? = 1 ] && grep -q "stdout: write error" "$3"' "$S" "$G" "$M" "$W/cocofull.err"
if [ -n "$NULLDEV" ]; then
    check "--format coco -o NULL: exit 0" status 0 "$S" batch "$G" --model "$M" --quiet --format coco -o "$NULLDEV"
    check "--format html -o NULL: exit 0" status 0 "$S" batch "$G" --model "$M" --quiet --format html -o "$NULLDEV"
    check "... NULL is still a device" test -c "$NULLDEV"
fi
mkdir "$W/outdir"
ln -s outdir/results.json "$W/res-link.json"
check "--format coco -o LINK: exit 0" status 0 "$S" batch "$G" --model "$M" --quiet --format coco -o "$W/res-link.json"
check "... the link stays a link, its target has the results" sh -c 'test -L "$0" && "$1" read coco "$2" | grep -c "^ok" | grep -qx 3' \
    "$W/res-link.json" "$T" "$W/outdir/results.json"
ln -s outdir/gallery.html "$W/gal-link.html"
check "-o LINK.html: exit 0, the link stays, the target is the gallery" sh -c '"$0" batch "$1" --model "$2" --quiet -o "$3" && test -L "$3" && "$4" read html "$5" >/dev/null' \
    "$S" "$G" "$M" "$W/gal-link.html" "$T" "$W/outdir/gallery.html"
cp "$G/g000.png" "$W/g000.orig"
check "-o naming one of the images: exit 2" status 2 "$S" batch "$G" --model "$M" -o "$G/g000.png"
check "... the image intact" same "$G/g000.png" "$W/g000.orig"
check "-o naming the model: exit 2" status 2 "$S" batch "$G" --model "$M" -o "$M"

# file names: valid JSON whatever the bytes, no control characters on the terminal
U=$W/names
mkdir "$U"
cp "$G/g000.png" "$U/$(printf 'caf\351.png')"
cp "$G/g001.jpg" "$U/tab	name.jpg"
printf 'not an image' >"$U/$(printf '\033[31mevil.jpg')"
check "names: exit 1 (one broken file)" status 1 "$S" batch "$U" --model "$M" -o "$W/names.jsonl"
check "... no escape sequence reaches the terminal" sh -c '! grep -q "$(printf "\033")" "$0" && grep -q "evil.jpg" "$0"' "$W/status.err"
check "... jsonl is valid UTF-8 JSON" sh -c '"$0" read jsonl "$1" >"$2"' "$T" "$W/names.jsonl" "$W/names.rec"
check "... the non-UTF-8 byte is written as \\xe9" grep -qF "	$U/caf\\xe9.png	" "$W/names.rec"
check "--resume of it adds nothing" status 1 "$S" batch "$U" --model "$M" -o "$W/names.jsonl" --resume
check "... still one record per image" test "$(wc -l <"$W/names.jsonl")" = 3
for fmt in html coco; do
    "$S" batch "$U" --model "$M" --quiet --format $fmt -o "$W/names.$fmt" 2>/dev/null || true
    check "names: $fmt is valid UTF-8" sh -c '"$0" read "$1" "$2" >/dev/null' "$T" $fmt "$W/names.$fmt"
done

# --resume reads its .partial without waiting on a FIFO; a Softimage PIC is not an image name
mkfifo "$W/fifo.json.partial"
check "--resume --format coco with a FIFO as its .partial: exit 1 at once" status 1 timeout 20 "$S" batch "$U" \
    --model "$M" --quiet --format coco -o "$W/fifo.json" --resume
mkdir "$W/pics"
cp "$G/g000.png" "$W/pics/a.png"
printf 'S\200\3664 not really a picture' >"$W/pics/b.pic"
check "a .pic file is not taken for an image: exit 0" status 0 "$S" batch "$W/pics" --model "$M" --quiet -o "$W/pics.jsonl"
check "... one record" test "$(wc -l <"$W/pics.jsonl")" = 1

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
