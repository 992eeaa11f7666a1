# shellcheck shell=bash
# Shared by scripts/demo, scripts/test and scripts/bench: install what is missing, configure
# and build. Source it; it sets KAKUNIN_ROOT and works from there.

KAKUNIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export KAKUNIN_ROOT

# Debian 12 packages the project builds, tests and benchmarks with.
KAKUNIN_PACKAGES=(
    cmake ninja-build g++ pkg-config git ca-certificates
    libbotan-2-dev libpq-dev nlohmann-json3-dev catch2 libbenchmark-dev libcli11-dev
    libcurl4-openssl-dev libp11-kit-dev softhsm2 postgresql openssl clang chromium
    python3 python3-dev python3-venv python3-pip python3-setuptools python3-wheel
    pybind11-dev python3-pybind11 python3-pytest
    prometheus-cpp-dev prometheus
)

# Debian's interpreter: the Python module is built for it, and its python3-pytest runs the tests
# (another python3 earlier on PATH, e.g. a version manager's, has neither).
KAKUNIN_PYTHON="${KAKUNIN_PYTHON:-/usr/bin/python3}"
export KAKUNIN_PYTHON

kakunin_log() { printf '\n==> %s\n' "$*"; }

# Installs whichever of KAKUNIN_PACKAGES (plus any extra names given) are missing.
kakunin_install_deps() {
    local missing=() p
    for p in "${KAKUNIN_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    kakunin_log "installing missing packages: ${missing[*]}"
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# kakunin_build DIR [cmake args...]: configure (once) and build everything in DIR.
kakunin_build() {
    local dir="$1"
    shift
    cmake -S "$KAKUNIN_ROOT" -B "$dir" -G Ninja "$@" >/dev/null
    cmake --build "$dir" -j "$(nproc)"
}
