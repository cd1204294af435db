#!/usr/bin/env bash
# ThreadSanitizer over the suites that run the thread pool: GEMM (every path, 1-4 threads, user
# threads calling at once), the tile-by-tile GEMM, the fused optimizer step and the models trained
# on several user threads (test_layers). Quick mode (AG_TEST_QUICK=1): TSan is 5-15x slower.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build/test-tsan
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="-fsanitize=thread" \
  -DAG_BUILD_BENCH=OFF -DAG_BUILD_EXAMPLES=OFF >/dev/null
suites="test_gemm test_gemm_tiles test_sink test_layers"
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $suites >/dev/null
for s in $suites; do
  echo "-- $s"
  # halt_on_error: the first report fails the run, as the other sanitizers do
  TSAN_OPTIONS="halt_on_error=1 exitcode=66" AG_TEST_QUICK=1 "$build/tests/$s"
done
