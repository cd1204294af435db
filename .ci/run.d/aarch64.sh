#!/usr/bin/env bash
# The library on a non-x86 target: cross-compiled for aarch64 (Debian's gcc-aarch64-linux-gnu,
# -Werror as everywhere) and its tests run under qemu-user, so only the portable kernels exist: the
# Check suites through CMAKE_CROSSCOMPILING_EMULATOR, the shell-script tests (main job, kill and
# resume) through the wrappers of tests/emulated.cmake. Quick mode. Left out: consumer, which builds
# another project with the host's compiler.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ -e /usr/lib/aarch64-linux-gnu/pkgconfig/check.pc ] || need+=(check:arm64)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "aarch64.sh: missing ${need[*]}; as root on Debian: dpkg --add-architecture arm64 &&" \
      "apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
build=build/test-aarch64
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/.ci/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
# e_machine of the ELF header, little-endian 0x00b7 = EM_AARCH64
[ "$(od -An -tx1 -j18 -N2 "$build/tests/test_ops" | tr -d ' ')" = b700 ] ||
  { echo "aarch64.sh: $build/tests/test_ops is not an aarch64 program" >&2; exit 1; }
(cd "$build" && AG_TEST_QUICK=1 ctest -j "$(nproc)" --timeout 600 \
  -E '^consumer$')
