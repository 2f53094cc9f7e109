#!/bin/sh
# test_exports.sh LIBSACCADE.so SACCADE.H: the shared library exports the functions saccade.h
# declares and nothing else (the internal sac_*, model_*, captioner_* ... stay local: the
# version script lib/saccade.map).
lib=$1 header=$2
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$syms" ] || { echo "$lib: exports nothing"; exit 1; }
other=$(echo "$syms" | grep -v '^saccade_')
[ -z "$other" ] || { echo "$lib: exports besides saccade_*:"; echo "$other"; exit 1; }
declared=$(grep -o 'saccade_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
for f in $declared; do
    echo "$syms" | grep -qx "$f" || { echo "$lib: $f (declared in saccade.h) is not exported"; exit 1; }
done
for f in $syms; do
    echo "$declared" | grep -qx "$f" || { echo "$lib: exports $f, which saccade.h does not declare"; exit 1; }
done
echo "$lib: $(echo "$syms" | wc -l) symbols, all saccade_* and declared in saccade.h"
