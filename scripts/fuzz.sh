#!/usr/bin/env bash
# fuzz.sh [seconds] [target...] - build the libFuzzer targets (clang, meson -Dfuzzing=true,
# in build-fuzz/ or $SACCADE_FUZZ_BUILD) and run each for `seconds` (default 60), one after
# the other, at low priority, starting from its seed corpus (fuzz/corpus/<target>) and
# regression corpus (fuzz/regress/<target>). New inputs go to a scratch corpus per target
# ($SACCADE_FUZZ_WORK, default build-fuzz/corpus/<target>), crash and timeout files to
# build-fuzz/findings/<target>/. Ends with one line per target: executions, execs/s, corpus
# size, and FOUND when this run wrote a crash, leak, timeout or sanitizer report.
# Exit status: 0 when no target found anything, 1 otherwise, 2 on a usage or build error.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
case $secs in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [seconds] [target...]" >&2; exit 2 ;; esac
build=${SACCADE_FUZZ_BUILD:-build-fuzz}
work=${SACCADE_FUZZ_WORK:-$build/corpus}
all="image safetensors flickr karpathy coco tsv vocab coco_results batch_resume tflite"
targets=${*:-$all}
if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is needed for libFuzzer (Debian: apt-get install clang)" >&2
    exit 2
fi
if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzzing=true -Dtests=false --buildtype=debugoptimized >/dev/null || exit 2
fi
if ! nice -n 10 ninja -C "$build" $(for t in $targets; do echo "fuzz/fuzz_$t"; done) >"$build/fuzz-build.log" 2>&1; then
    tail -20 "$build/fuzz-build.log" >&2
    echo "fuzz.sh: build failed (log: $build/fuzz-build.log)" >&2
    exit 2
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
summary=""
found=0
for t in $targets; do
    mkdir -p "$work/$t" "$build/findings/$t"
    stamp="$build/findings/$t/.start"
    touch "$stamp"
    seeds=()
    for d in fuzz/corpus/$t fuzz/regress/$t; do [ -d "$d" ] && seeds+=("$d"); done
    log="$build/findings/$t/fuzz.log"
    echo "fuzz.sh: $t for ${secs}s" >&2
    nice -n 10 "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/findings/$t/" \
        "$work/$t" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
    rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log" | tail -1)
    units=$(ls "$work/$t" | wc -l)
    status=ok
    new=$(find "$build/findings/$t" -newer "$stamp" -name '*-*' ! -name fuzz.log | head -1)
    if [ $rc -ne 0 ] || [ -n "$new" ]; then
        status="FOUND (see $log and $build/findings/$t/)"
        found=1
    fi
    summary+=$(printf '%-14s %12s execs %8s/s  corpus %5s  %s' "$t" "${execs:-?}" "${rate:-?}" "$units" "$status")$'\n'
done
printf '%s' "$summary"
exit $found
