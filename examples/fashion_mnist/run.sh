#!/bin/sh
# run.sh - README's first command: on a fresh Debian machine, install what is missing (the
# Fashion-MNIST data set, cmake, make, a C compiler, the C library headers), build tapegrad
# (Release) and train the default preset. Extra arguments go to the program, e.g.
#   examples/fashion_mnist/run.sh --preset seed
# Not root: prints the exact apt-get commands and exits with status 1. BUILD_DIR overrides ./build.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
DATA=/usr/share/datasets/fashion-mnist

# The data package is needed unless the arguments name another directory (--data) or ask for help;
# the program itself says when a --data directory lacks the files.
want_data=1
for a in "$@"; do
    case "$a" in
    --data | --data=* | --help | -h) want_data=0 ;;
    esac
done
need=""
if [ $want_data = 1 ]; then
    [ -e "$DATA/train-images-idx3-ubyte.gz" ] || [ -e "$DATA/train-images-idx3-ubyte" ] || need="$need dataset-fashion-mnist"
fi
command -v cmake >/dev/null 2>&1 || need="$need cmake"
command -v make >/dev/null 2>&1 || need="$need make"   # cmake's default generator (Unix Makefiles)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need="$need gcc"
[ -e /usr/include/stdio.h ] || need="$need libc6-dev"   # the C library headers (Debian's path)
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing:$need"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need
    else
        echo "run.sh: missing:$need" >&2
        echo "run.sh: install it with:" >&2
        if [ "$(id -u)" = 0 ]; then # root without apt-get: not Debian, say what Debian calls it
            echo "    apt-get update && apt-get install -y$need   (Debian package names)" >&2
        elif command -v sudo >/dev/null 2>&1; then
            echo "    sudo apt-get update && sudo apt-get install -y$need" >&2
        else # a minimal Debian has no sudo
            echo "    su -c 'apt-get update && apt-get install -y$need'" >&2
        fi
        echo "then run $0 again." >&2
        exit 1
    fi
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    # a fresh build: the unit tests need the Check framework, which training does not
    tests=OFF
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists check; then tests=ON; fi
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAG_BUILD_TESTS=$tests -DAG_BUILD_BENCH=OFF
fi
cmake --build "$BUILD" --target fashion_mnist -j "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
exec "$BUILD/examples/fashion_mnist" "$@"
