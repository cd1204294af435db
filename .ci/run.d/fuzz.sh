#!/usr/bin/env bash
# CI smoke run of the libFuzzer harnesses (issue 7 item 3): 60 seconds each.
# Longer runs: tests/io/fuzz/run.sh SECONDS.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/io/fuzz/run.sh "${AG_FUZZ_SECONDS:-60}" "$@"
