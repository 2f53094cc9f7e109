#!/bin/sh
# version.sh SRCDIR VERSION - the version `saccade --version` prints (meson's vcs_tag runs this at
# build time): `git describe` of SRCDIR's checkout with a vX.Y.Z tag as X.Y.Z[-N-gHASH][-dirty],
# without a tag VERSION-gHASH[-dirty]. Outside a git checkout it fails and meson uses VERSION.
d=$(git -C "$1" describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) && { echo "${d#v}"; exit 0; }
h=$(git -C "$1" describe --always --dirty 2>/dev/null) || exit 1
echo "$2-g$h"
