#!/usr/bin/env bash
# setup.sh - install what is missing, build saccade, and caption the sample photos.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
saccade_install_deps
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
echo "built build/tools/saccade" >&2
if [ -f models/flickr8k.safetensors ]; then
    build/tools/saccade caption models/samples/*.jpg
else
    build/tools/saccade --help
fi
