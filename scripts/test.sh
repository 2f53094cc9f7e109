#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite: every suite in a
# release build, then the unit suite again under AddressSanitizer + UBSan. Ends with one line
# "N passed, N failed, N skipped" over both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
saccade_install_deps
log=$(mktemp)
trap 'rm -f "$log"' EXIT
[ -d build ] || meson setup build --buildtype=release >/dev/null
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
[ -d build-asan ] || meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --suite unit --print-errorlogs 2>&1 | tee -a "$log"
count() { awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }' "$log"; }
echo "$(count Ok:) passed, $(( $(count Fail:) + $(count Timeout:) )) failed, $(count Skipped:) skipped"
