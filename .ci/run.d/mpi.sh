#!/usr/bin/env bash
# The MPI build (-DAG_MPI=ON) and its tests under mpirun, np 1-4 (ctest -L mpi): tapegrad_dist's
# calls, fashion_mnist --dist writing the one-process reference's model byte for byte, resumes
# across process counts, mismatched / killed / hung ranks. Installs Open MPI with apt-get as root;
# otherwise says what to install. Every mpirun in the tests runs under timeout(1).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "mpi.sh: installing openmpi-bin libopenmpi-dev"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
  else
    echo "mpi.sh: Open MPI is missing; install with: sudo apt-get install -y openmpi-bin libopenmpi-dev" >&2
    exit 1
  fi
fi
build=build/test-mpi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DAG_MPI=ON -DAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target fashion_mnist fashion_mnist_synth dist_unit >/dev/null
cd "$build"
ctest --output-on-failure -L mpi
