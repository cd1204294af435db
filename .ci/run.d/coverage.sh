#!/usr/bin/env bash
# CI: line coverage of autograd/, layers/ and optim/ (gcov + lcov) must stay at or above 95%.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v lcov >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lcov >/dev/null
fi
tests/coverage.sh --min 95 "$@"
