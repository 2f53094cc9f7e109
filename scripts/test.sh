#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite: every suite in a
# release build, then the unit suite again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
saccade_install_deps
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build
meson test -C build --print-errorlogs
[ -d build-asan ] || meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --suite unit --print-errorlogs
