#!/usr/bin/env bash
# Line coverage of the library (autograd/, layers/, optim/) by the test suite (issue 7 item 7).
#   tests/coverage.sh [--build DIR] [--html DIR] [--min PERCENT]
# Builds with gcov instrumentation and runs the whole suite through README's test command
# (tests/run.sh --coverage), then reports with lcov: per file and the total. With --min, fails when
# the total is below PERCENT. --html writes a browsable report (genhtml).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/test-coverage html="" min=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift ;;
    --html) html=$2; shift ;;
    --min) min=$2; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "coverage.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v lcov >/dev/null || { echo "coverage.sh: lcov is missing (apt-get install lcov)" >&2; exit 1; }

# stale counters from an earlier run would add up
[ -d "$build" ] && find "$build" -name '*.gcda' -delete
tests/run.sh --coverage --build "$build"

info=$build/coverage.info
lcov --quiet --capture --directory "$build" --output-file "$info.all" --rc lcov_branch_coverage=0 2>/dev/null
src=$(pwd)
lcov --quiet --extract "$info.all" "$src/autograd/*" "$src/layers/*" "$src/optim/*" --output-file "$info" 2>/dev/null
echo
echo "== line coverage of autograd/, layers/, optim/"
lcov --list "$info" 2>/dev/null | sed -n '/^[^=]*|/p' | grep -v '^ *|' || true
total=$(lcov --summary "$info" 2>&1 | sed -n 's/^ *lines\.*: *\([0-9.]*\)%.*/\1/p')
echo "coverage: lines ${total}% of autograd/, layers/ and optim/"
[ -n "$html" ] && command -v genhtml >/dev/null && genhtml --quiet "$info" --output-directory "$html" && echo "html: $html/index.html"
if [ -n "$min" ]; then
  awk -v t="$total" -v m="$min" 'BEGIN { exit !(t + 0 >= m + 0) }' || { echo "coverage.sh: ${total}% is below ${min}%" >&2; exit 1; }
fi
