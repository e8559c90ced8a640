# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/demo and scripts/bench. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   flaxpp_cd_root          # cd to the repository root (scripts work from any cwd)
#   flaxpp_install_deps     # apt-get install whatever Debian packages are missing
#   flaxpp_install_packages P...  # the same for other packages (FLAXPP_CLANG_PACKAGES)
#   flaxpp_configure        # cmake -S . -B build, only when build/ is not configured yet
#   flaxpp_is_configured D [S]  # whether D/ holds a finished configure of source tree S
#   flaxpp_sanitizer_env    # ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS as every script sets them
#   flaxpp_build            # cmake --build build -j$(nproc)
#
# Environment:
#   FLAXPP_BUILD_DIR         build directory, relative to the repo root (default: build)
#   FLAXPP_JOBS              parallel build jobs (default: nproc)
#   FLAXPP_CMAKE_ARGS        extra arguments for the first configure, e.g. "-DFLAXPP_NATIVE=OFF"
#   FLAXPP_ASSUME_NONROOT=1  act as if not root (tests the "print the sudo command" path)

# Everything flaxpp needs to build, test and benchmark on Debian 12. Build tools are listed too:
# a fresh Debian base image has no compiler.
FLAXPP_DEBIAN_PACKAGES=(
  cmake g++ make
  xtensor-dev xtl-dev libxsimd-dev libopenblas-dev nlohmann-json3-dev
  doctest-dev libcli11-dev libbenchmark-dev zlib1g-dev
  # Data and plots for examples/train_*.cpp and their smoke test (tests/examples).
  fortunes dataset-fashion-mnist gnuplot-nox
  # The MPI component flaxpp::mpi and its 2-rank ctest (tests/mpi).
  libopenmpi-dev openmpi-bin
)

FLAXPP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
FLAXPP_BUILD_DIR="${FLAXPP_BUILD_DIR:-build}"

flaxpp_log() { echo "flaxpp: $*" >&2; }
flaxpp_die() {
  flaxpp_log "$*"
  exit 1
}

flaxpp_cd_root() {
  cd "$FLAXPP_ROOT" || exit 1
}

flaxpp_jobs() {
  echo "${FLAXPP_JOBS:-$(nproc 2>/dev/null || echo 2)}"
}

# Packages only the CI matrix and the clang checks need (.ci/run, scripts/isa_matrix with
# CXX=clang++, scripts/fuzz): installed by flaxpp_install_packages "${FLAXPP_CLANG_PACKAGES[@]}".
FLAXPP_CLANG_PACKAGES=(clang-14 libclang-rt-14-dev)

# Prints the packages among "$@" that dpkg does not report as installed.
flaxpp_missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
      echo "$pkg"
    fi
  done
}

# apt-get installs whichever of "$@" are missing (as root), or prints the command and exits.
flaxpp_install_packages() {
  command -v dpkg-query >/dev/null || flaxpp_die "no dpkg-query: flaxpp's scripts expect Debian 12" \
    "(elsewhere install the equivalents of: $*)"
  local missing
  mapfile -t missing < <(flaxpp_missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" != 0 || "${FLAXPP_ASSUME_NONROOT:-0}" == 1 ]]; then
    flaxpp_log "missing Debian packages: ${missing[*]}"
    flaxpp_log "install them as root, then run this again:"
    echo "sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  flaxpp_log "installing missing Debian packages: ${missing[*]}"
  # Lock::Timeout: wait for another apt/dpkg instead of failing at once.
  local apt_opts=(-q -o DPkg::Lock::Timeout=600)
  apt-get "${apt_opts[@]}" update
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
    "${missing[@]}"
}

flaxpp_install_deps() {
  flaxpp_install_packages "${FLAXPP_DEBIAN_PACKAGES[@]}"
}

# Configures build/ unless it already is. An existing cache is respected (its build type and
# options stay); `cmake --build` re-runs cmake by itself when CMakeLists.txt or globs change.
# True when DIR holds a finished configure of SOURCE (default: the current directory). A
# configure that failed (e.g. a missing package) leaves a cache but no build system; a cache of
# another source tree is an error.
flaxpp_is_configured() {
  local dir="$1" source="${2:-.}" cache="$1/CMakeCache.txt"
  [[ -f "$cache" ]] || return 1
  local home
  home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
  if [[ -n "$home" && "$(cd "$home" 2>/dev/null && pwd -P)" != "$(cd "$source" && pwd -P)" ]]; then
    flaxpp_die "$dir/ was configured for another source tree ($home): remove $dir/ and rerun"
  fi
  [[ -f "$dir/Makefile" || -f "$dir/build.ninja" ]]
}

# The sanitizer runtime options every script uses: leak checks on, UBSan reports fatal (gcc's
# -fsanitize=undefined recovers by default), TSan stops at the first race.
flaxpp_sanitizer_env() {
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:check_initialization_order=1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
}

flaxpp_configure() {
  local dir="$FLAXPP_BUILD_DIR"
  if flaxpp_is_configured "$dir"; then
    return 0
  fi
  local extra=()
  if [[ -n "${FLAXPP_CMAKE_ARGS:-}" ]]; then
    read -r -a extra <<<"$FLAXPP_CMAKE_ARGS"
  fi
  flaxpp_log "configuring $dir/"
  cmake -S . -B "$dir" "${extra[@]}"
}

flaxpp_build() {
  cmake --build "$FLAXPP_BUILD_DIR" -j"$(flaxpp_jobs)"
}

# The three steps every script starts with.
flaxpp_setup() {
  flaxpp_cd_root
  flaxpp_install_deps
  flaxpp_configure
  flaxpp_build
}
