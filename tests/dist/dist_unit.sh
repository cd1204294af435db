#!/bin/sh
# dist_unit.sh MPIRUN BIN: tests/dist/dist_unit.c alone (no MPI_Init), then under mpirun -np 1..4,
# each under timeout(1). Open MPI as root / with more ranks than cores: flags added here.
set -u
MPIRUN=$1 BIN=$2
flags=""
if "$MPIRUN" --version 2>&1 | grep -Eq "Open MPI|OpenRTE"; then
    flags="--oversubscribe"
    [ "$(id -u)" = 0 ] && flags="$flags --allow-run-as-root"
fi
timeout 60 "$BIN" --solo || { echo "FAIL: dist_unit --solo"; exit 1; }
for np in 1 2 3 4; do
    timeout 120 "$MPIRUN" $flags -np $np "$BIN" || { echo "FAIL: dist_unit at np $np"; exit 1; }
done
