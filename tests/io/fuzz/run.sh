#!/usr/bin/env bash
# Fuzz the IDX and model-file loaders and the gzip decoder with libFuzzer (issue 7 item 3).
#   tests/io/fuzz/run.sh [seconds per harness, default 300] [--build DIR] [--jobs N]
# Builds the harnesses with clang (-DAG_FUZZ=ON: libFuzzer + ASan + UBSan) in DIR (default
# build/fuzz), then runs fuzz_idx, fuzz_model and (when zlib1g-dev is installed: it compares with
# zlib) fuzz_gunzip for the given time each, starting from the
# committed seeds (tests/io/fuzz/corpus/<harness>) in a scratch corpus. Prints executions and corpus
# size. A crash is copied into tests/io/fuzz/corpus/<harness>/ as crash-<sha1> (a regression input that
# test_fuzz_regress replays from then on) and the script fails.
# CI runs a 60-second smoke run (.ci/run.d/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=300 build=build/fuzz
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) secs=$1 ;;
  esac
  shift
done
command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DAG_FUZZ=ON -DAG_BUILD_EXAMPLES=OFF \
  -DAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_idx fuzz_model >/dev/null
harnesses="idx model"
targets=$(cmake --build "$build" --target help)
if [[ $targets == *fuzz_gunzip* ]]; then
  cmake --build "$build" -j "$(nproc)" --target fuzz_gunzip >/dev/null
  harnesses="$harnesses gunzip"
else
  echo "fuzz: zlib1g-dev not installed: fuzz_gunzip (ag__gunzip against zlib) skipped" >&2
fi

work=$(mktemp -d /tmp/ag_fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
for h in $harnesses; do
  mkdir -p "$work/$h" "$work/art-$h"
  log=$work/$h.log
  set +e
  "$build/tests/fuzz_$h" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$work/art-$h/" "$work/$h" "tests/io/fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  size=$(ls "$work/$h" | wc -l)
  seeds=$(ls "tests/io/fuzz/corpus/$h" | wc -l)
  echo "fuzz_$h: ${secs}s, ${execs:-?} executions, corpus ${size} inputs (from ${seeds} seeds), exit $rc"
  if [ "$rc" -ne 0 ]; then
    fail=1
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -20 >&2 || true
    for f in "$work/art-$h"/*; do
      [ -e "$f" ] || continue
      dst="tests/io/fuzz/corpus/$h/crash-$(sha1sum "$f" | cut -c1-16)"
      cp "$f" "$dst"
      echo "fuzz_$h: crashing input saved as $dst (commit it with the fix)" >&2
    done
  fi
done
exit $fail
