#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite: every suite in a
# release build (portable: run-time kernel choice; warnings are errors), the installed tree
# (meson install --destdir), the unit suite again under AddressSanitizer + UBSan, and one end to
# end caption under valgrind. Ends with one line "N passed, N failed, N skipped" over all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
saccade_install_deps
log=$(mktemp)
trap 'rm -f "$log"' EXIT
[ -d build ] || meson setup build --buildtype=release >/dev/null
meson configure build -Dwerror=true -Dnative=false # CI: no warning passes; the portable binary
ninja -C build
meson test -C build --print-errorlogs 2>&1 | tee -a "$log"
# libsaccade as a user gets it: installed into a scratch root, examples/caption.c compiled
# through pkg-config against the installed header and library, its caption = saccade caption's.
inst=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$inst"' EXIT
meson install -C build --destdir "$inst" --quiet >/dev/null
photo=models/samples/rocket.jpg
want=$(build/tools/saccade caption --model models/flickr8k.safetensors --quiet $photo)
got=$(export PKG_CONFIG_PATH=$(dirname "$(find "$inst" -name saccade.pc | head -n 1)") PKG_CONFIG_SYSROOT_DIR=$inst
      cc -std=c11 -Wall -Wextra -Werror examples/caption.c -o "$inst/caption" $(pkg-config --cflags --libs saccade) &&
      LD_LIBRARY_PATH=$(pkg-config --variable=libdir saccade) "$inst/caption" models/flickr8k.safetensors $photo |
      cut -f 1,2) || true
if [ -n "$got" ] && [ "$got" = "$want" ]; then echo "Ok: 1 (examples/caption.c against the installed libsaccade)" | tee -a "$log"
else echo "Fail: 1 (examples/caption.c against the installed libsaccade: '$got', expected '$want')" | tee -a "$log"; fi
# What meson install puts where (prefix /usr/local under a scratch root): the program, which finds
# the installed model from its own directory; the model card, man page and completion; no path
# of this source tree inside the installed binaries.
( root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  meson install -C build --destdir "$root" --quiet >/dev/null
  p=$root/usr/local; bad=""
  for f in bin/saccade share/saccade/flickr8k.safetensors share/saccade/flickr8k.md share/man/man1/saccade.1 \
           share/bash-completion/completions/saccade; do [ -f "$p/$f" ] || bad="$bad missing:$f"; done
  for f in "$p"/bin/* $(find "$p/lib"* -name 'libsaccade*' 2>/dev/null); do
      ! strings "$f" | grep -qF "$PWD" || bad="$bad $PWD-in:${f#"$p"/}"; done
  "$p/bin/saccade" --version | grep -q "^saccade [0-9]" || bad="$bad --version"
  cap=$(env -u SACCADE_MODEL "$p/bin/saccade" caption --quiet models/samples/rocket.jpg | cut -f 2) || true
  [ "$cap" = "$(build/tools/saccade caption --quiet models/samples/rocket.jpg | cut -f 2)" ] && [ -n "$cap" ] ||
      bad="$bad installed-caption:'$cap'"
  ! command -v groff >/dev/null || [ -z "$(groff -man -ww -z "$p/share/man/man1/saccade.1" 2>&1)" ] || bad="$bad man-warnings"
  bash -n "$p/share/bash-completion/completions/saccade" || bad="$bad completion-syntax"
  if [ -z "$bad" ]; then echo "Ok: 1 (meson install: program, model, card, man page, completion; no source path)"
  else echo "Fail: 1 (meson install:$bad)"; fi ) 2>&1 | tee -a "$log"
[ -d build-asan ] || meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --suite unit --print-errorlogs 2>&1 | tee -a "$log"
# One end to end run under valgrind (memcheck), on the portable build: a tiny model trained on
# drawn shapes (tests/cli_helper, as test_cli.sh), then `saccade caption` with beam search and
# greedy on two of its photos; about a second of CPU under valgrind. Valgrind's virtual CPU has
# no AVX-512, so this runs the AVX2 kernels (C where the host lacks AVX2).
( vg=$(mktemp -d)
  trap 'rm -rf "$vg"' EXIT
  build/tests/cli_helper data "$vg" >/dev/null
  build/tools/saccade train --data "$vg" --dev-split none --train-split all --epochs 200 --image-size 24 \
      --conv 8s2,16p,16 --att 16 --hidden 32 --embed 16 --max-len 8 --dropout 0 --no-augment --lr 3e-3 \
      --lr-encoder 3e-3 --batch 6 --min-count 1 --threads 1 --quiet --out "$vg/tiny.safetensors"
  run_vg() { OPENBLAS_NUM_THREADS=1 valgrind -q --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect build/tools/saccade caption --model "$vg/tiny.safetensors" \
      --threads 1 --quiet "$@" "$vg/red.png" "$vg/cross.png" | cut -f 2 | tr '\n' '|'; }
  want="a red square on black|a white cross on black|"
  beam=$(run_vg 2>"$vg/beam.err") || true
  greedy=$(run_vg --greedy 2>"$vg/greedy.err") || true
  if [ "$beam" = "$want" ] && [ "$greedy" = "$want" ] && [ ! -s "$vg/beam.err" ] && [ ! -s "$vg/greedy.err" ]; then
      echo "Ok: 1 (valgrind: saccade caption, beam and greedy, no error or leak)"
  else
      echo "Fail: 1 (valgrind: beam '$beam', greedy '$greedy', expected '$want' twice)"; cat "$vg"/*.err
  fi ) 2>&1 | tee -a "$log"
count() { awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }' "$log"; }
echo "$(count Ok:) passed, $(( $(count Fail:) + $(count Timeout:) )) failed, $(count Skipped:) skipped"
