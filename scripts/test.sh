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
[ -d build-asan ] || meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --suite unit --print-errorlogs 2>&1 | tee -a "$log"
count() { awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }' "$log"; }
echo "$(count Ok:) passed, $(( $(count Fail:) + $(count Timeout:) )) failed, $(count Skipped:) skipped"
