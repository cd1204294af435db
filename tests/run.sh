#!/usr/bin/env bash
# Build tapegrad and run its test suite: the README's test command.
#   tests/run.sh [--double] [--sanitize] [--valgrind] [--clang] [--coverage] [--build DIR]
# Installs cmake, make, a C compiler, the C library headers (libc6-dev), pkg-config, Check and the
# Fashion-MNIST data set with apt-get when run as root on Debian; otherwise says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

double=OFF sanitize=OFF valgrind=OFF coverage=OFF cc=${CC:-cc} build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --double) double=ON ;;
    --sanitize) sanitize=ON ;;
    --valgrind) valgrind=ON ;;
    --coverage) coverage=ON ;;
    --clang) cc=clang ;;
    --build) [ $# -ge 2 ] || { echo "tests/run.sh: --build needs a directory" >&2; exit 2; }; build=$2; shift ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v make >/dev/null || need+=(make)   # cmake's default generator (Unix Makefiles)
command -v "$cc" >/dev/null || need+=("$([ "$cc" = clang ] && echo clang || echo gcc)")
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)   # the C library headers (Debian's path)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists check 2>/dev/null || need+=(check)
# fashion_mnist_real trains on it; without it that test is skipped on a fresh machine
d=/usr/share/datasets/fashion-mnist
[ -e $d/train-images-idx3-ubyte.gz ] || [ -e $d/train-images-idx3-ubyte ] || need+=(dataset-fashion-mnist)
# clang's sanitizer runtimes are their own package on Debian (libclang-rt-<major>-dev)
if [ "$cc" = clang ] && [ "$sanitize" = ON ] && command -v clang >/dev/null; then
  compgen -G "$(clang -print-runtime-dir 2>/dev/null)/libclang_rt.asan*" >/dev/null ||
    need+=("libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev")
fi
[ "$valgrind" = ON ] && ! command -v valgrind >/dev/null && need+=(valgrind)
[ "$coverage" = ON ] && ! command -v lcov >/dev/null && need+=(lcov)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${need[*]}; install with:" >&2
    if command -v sudo >/dev/null; then
      echo "    sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    else   # a minimal Debian has no sudo
      echo "    su -c 'apt-get update && apt-get install -y ${need[*]}'" >&2
    fi
    exit 1
  fi
fi

if [ -z "$build" ]; then
  build=build/test
  [ "$double" = ON ] && build=$build-double
  [ "$sanitize" = ON ] && build=$build-asan
  [ "$valgrind" = ON ] && build=$build-valgrind
  [ "$coverage" = ON ] && build=$build-coverage
  [ "$cc" = clang ] && build=$build-clang
fi
type=Release
[ "$sanitize" = ON ] || [ "$valgrind" = ON ] || [ "$coverage" = ON ] && type=Debug
CC=$cc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=$type -DAG_DOUBLE=$double -DAG_SANITIZE=$sanitize \
  -DAG_VALGRIND=$valgrind -DAG_COVERAGE=$coverage -DAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)"
