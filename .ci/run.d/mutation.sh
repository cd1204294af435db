#!/usr/bin/env bash
# Mutation smoke run: every pattern of tests/mutation/mutants.tsv still in the sources, and 6 of
# the planted bugs (spread over the table) each fail the test suite. The full run (140 mutants,
# about an hour) is opt-in: tests/mutation/run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tests/mutation/run.py --check | tail -1
python3 tests/mutation/run.py --sample 6
