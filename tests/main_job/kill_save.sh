#!/usr/bin/env bash
# Crash safety of model saving (issue 7 item 6): start a process that saves a model over and over
# to the same path (tests/main_job/crash_saver.c, through ag_model_save), SIGKILL it after a random delay,
# and check that the file is always intact and loadable (CRC, names, shapes) and holds one whole
# generation, never older than the last one seen. Repeat KILLS times.
#   tests/main_job/kill_save.sh CRASH_SAVER [KILLS, default 200] [ELEMENTS, default 65536]
# ctest runs the smoke run (kill_save); the target kill_save_long, or AG_KILLS=N, a longer one.
set -euo pipefail
saver=$1
kills=${AG_KILLS:-${2:-200}}
elems=${3:-65536}
dir=$(mktemp -d /tmp/ag_kill_save.XXXXXX)
trap 'rm -rf "$dir"' EXIT
path=$dir/model.safetensors

"$saver" once "$path" "$elems"
last=$("$saver" check "$path" "$elems")
survived=0 midwrite=0
for i in $(seq 1 "$kills"); do
  "$saver" save "$path" "$elems" &
  pid=$!
  # 0..24 ms: process start-up, a few whole saves, and a kill somewhere inside one
  sleep "0.0$(printf '%02d' $((RANDOM % 25)))"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null && { echo "kill_save: the saver exited on its own" >&2; exit 1; } || true
  if ! g=$("$saver" check "$path" "$elems"); then
    echo "kill_save: after kill $i the model file is broken" >&2
    exit 1
  fi
  if [ "$g" -lt "$last" ]; then
    echo "kill_save: after kill $i the file went back from generation $last to $g" >&2
    exit 1
  fi
  # a temporary file left behind means the kill landed inside a save
  if ls "$dir"/.model.safetensors.tmp-* >/dev/null 2>&1 || ls "$dir"/*.tmp* >/dev/null 2>&1; then
    midwrite=$((midwrite + 1))
    rm -f "$dir"/.*.tmp-* "$dir"/*.tmp* 2>/dev/null || true
  fi
  last=$g
  survived=$((survived + 1))
done
echo "kill_save: $survived kills survived ($midwrite inside a save, leaving a temporary file), last generation $last"
