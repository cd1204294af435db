#!/usr/bin/env bash
# The rooms' rules (README, "Where things live"), checked on the sources' #include lines:
#  1. layers/, optim/, dist/, examples/ and bench/ include only public headers (<tapegrad/...>) and their
#     own files: never internal.h, base.h or another private header of autograd/;
#  2. the lower rooms know nothing of the higher ones: autograd/kernels/ and autograd/io/ include
#     neither the engine's internal.h nor autograd/ops/, layers/ or optim/ files;
#  3. public headers include only public headers; the core (autograd/, layers/, optim/) never
#     includes dist/ (the optional MPI module);
#  4. no include cycle between files (tsort finds none).
#   tests/rooms.sh [SOURCE_DIR]      prints each violation; exit 1 if there is any
set -u
src=${1:-$(dirname "$0")/..}
cd "$src" || exit 2

# edges "from to", both relative to the top; a quoted include is resolved against the including
# file's folder, then autograd/ (the library's private include path), then the rooms' include/
resolve() { # $1 including file, $2 included name
  local d c
  d=$(dirname "$1")
  for c in "$d/$2" "autograd/$2" "autograd/include/$2" "layers/include/$2" "optim/include/$2" "dist/include/$2"; do
    [ -f "$c" ] && { realpath --relative-to=. "$c"; return; }
  done
}
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
while IFS= read -r f; do
  grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]*("[^"]+"|<tapegrad/[^>]+>)' "$f" |
    sed -E 's/.*include[[:space:]]*["<]([^">]+)[">].*/\1/' |
    while IFS= read -r inc; do
      to=$(resolve "$f" "$inc")
      [ -n "$to" ] && echo "$f $to"
    done
done < <(find autograd layers optim dist examples bench -name '*.[ch]' | sort) > "$edges"

bad=0
flag() { echo "rooms: $*"; bad=1; }
private='^autograd/(internal\.h|base\.h|ops/|kernels/|io/|[a-z_]+\.c$)'
while read -r from to; do
  case "$from" in
  layers/*|optim/*|dist/*|examples/*|bench/*)
    [[ "$to" =~ $private ]] && flag "$from includes the private $to" ;;
  esac
  case "$from" in
  autograd/kernels/*|autograd/io/*)
    [[ "$to" =~ ^(autograd/internal\.h|autograd/ops/|layers/|optim/) ]] &&
      flag "$from (a lower room) includes $to" ;;
  esac
  case "$from" in # the core library never depends on the optional distributed module
  autograd/*|layers/*|optim/*)
    [[ "$to" =~ ^dist/ ]] && flag "$from (the core library) includes $to of dist/" ;;
  esac
  case "$from" in
  */include/tapegrad/*)
    [[ "$to" =~ /include/tapegrad/ ]] || flag "public header $from includes the private $to" ;;
  esac
done < "$edges"

if ! tsort "$edges" >/dev/null 2>/tmp/rooms_tsort.$$; then
  flag "include cycle: $(grep -v 'input contains a loop' /tmp/rooms_tsort.$$ | sed 's/^tsort: //' | tr '\n' ' ')"
fi
rm -f /tmp/rooms_tsort.$$
n=$(wc -l < "$edges")
[ "$bad" = 0 ] && echo "rooms: $n include edges, every rule holds"
exit "$bad"
