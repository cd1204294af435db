#!/bin/sh
# consumer_test.sh - tapegrad used from a program outside its tree, the ways README describes:
#   1. installed (cmake --install of this build), then find_package(tapegrad) + tapegrad::tapegrad;
#   2. installed, then pkg-config (also after moving the installed tree elsewhere);
#   3. add_subdirectory of the source tree: only the library is configured (no Check needed, no
#      tests), and the parent's CMAKE_BUILD_TYPE is left alone;
#   4. a program compiled with the other ag_real (-DAG_DOUBLE or not) fails to link.
# Usage: consumer_test.sh SOURCE_DIR BUILD_DIR C_COMPILER DOUBLE(ON|OFF) WORK_DIR [CFLAGS]
#   CFLAGS: what the library was built with that a program must share (sanitizers, coverage)
set -eu
src=$1 build=$2 cc=$3 double=$4 work=$5 cflags=${6:-}
app=$src/tests/consumer
rm -rf "$work"
mkdir -p "$work"
fail() { echo "consumer_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/prefix" >/dev/null || fail "cmake --install failed"

echo "== 1. find_package"
cmake -S "$app" -B "$work/fp" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null ||
  fail "configuring with find_package failed"
cmake --build "$work/fp" >/dev/null || fail "building with find_package failed"
"$work/fp/app" "$work/fp.safetensors"

echo "== 2. pkg-config"
if command -v pkg-config >/dev/null; then
  pc_build() {   # $1 prefix, $2 output, $3 extra cflags
    pcdir=$(dirname "$(find "$1" -name tapegrad.pc | head -n 1)")
    # shellcheck disable=SC2046
    "$cc" -std=c11 -Wall -Wextra -Werror $cflags $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags tapegrad) $3 \
      "$app/app.c" -o "$2" $(PKG_CONFIG_PATH=$pcdir pkg-config --libs tapegrad)
  }
  pc_build "$work/prefix" "$work/app_pc" "" || fail "building with pkg-config failed"
  "$work/app_pc" "$work/pc.safetensors"
  mv "$work/prefix" "$work/moved"
  pc_build "$work/moved" "$work/app_moved" "" || fail "pkg-config after moving the installed tree failed"
  "$work/app_moved" "$work/moved.safetensors"

  echo "== 4. the other ag_real"
  if [ "$double" = ON ]; then other=-UAG_DOUBLE want=ag_library_real_is_float
  else other=-DAG_DOUBLE want=ag_library_real_is_double; fi
  if pc_build "$work/moved" "$work/app_other" "$other" 2>"$work/other.log"; then
    fail "a program built with $other linked against the $( [ "$double" = ON ] && echo double || echo float) library"
  fi
  grep -q "$want" "$work/other.log" || { cat "$work/other.log" >&2; fail "the link error does not name $want"; }
  echo "refused at link time: undefined $want"
else
  echo "pkg-config not installed: skipped"
fi

echo "== 3. add_subdirectory"
# PKG_CONFIG_PATH pointing nowhere would not hide Check; what shows that tests stay off is that no
# test target is generated.
dbl=""
[ "$double" = ON ] && dbl=-DAG_DOUBLE=ON
cmake -S "$app" -B "$work/sub" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DTAPEGRAD_SRC="$src" \
  $dbl >/dev/null ||
  fail "configuring with add_subdirectory failed"
grep -q '^CMAKE_BUILD_TYPE:STRING=$' "$work/sub/CMakeCache.txt" || fail "tapegrad set the parent's CMAKE_BUILD_TYPE"
if cmake --build "$work/sub" --target help | grep -q 'test_tape'; then fail "tapegrad's tests were configured"; fi
cmake --build "$work/sub" -j 2 >/dev/null || fail "building with add_subdirectory failed"
"$work/sub/app" "$work/sub.safetensors"
rm -rf "$work"
