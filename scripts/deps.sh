# deps.sh - sourced by setup.sh and test.sh: install the Debian packages saccade needs
# (only those missing), as root or through sudo.
# fonts-dejavu-core: the attention figures' labels (found at run time; a bitmap font otherwise);
# chromium: the page tests (attend --html, the batch gallery, saccade report) run headless in it.
# openmpi-bin, libopenmpi-dev: data-parallel training (mpirun -np N saccade train; meson option mpi).
# valgrind: test.sh's end to end caption under memcheck.
SACCADE_DEBS="gcc meson ninja-build pkg-config libopenblas-dev libcjson-dev check libstb-dev libturbojpeg0-dev fonts-dejavu-core chromium openmpi-bin libopenmpi-dev valgrind"
saccade_install_deps() {
    local missing="" p
    for p in $SACCADE_DEBS "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
