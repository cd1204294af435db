#!/usr/bin/env bash
# README's fresh-machine claim, rerun: the two commands of README.md (the main job and the test
# command) in a fresh Debian bookworm made by debootstrap, as root, each installing what it needs.
#   tests/fresh_machine.sh [--keep] [--base DIR] [--order main-first|tests-first]
# --base DIR: an existing `debootstrap --variant=minbase bookworm DIR` to copy (made once, reused:
# the copy is what runs, so DIR stays fresh); without it one is made in a temporary directory.
# Needs root (chroot, mount) and debootstrap; takes a few minutes and downloads packages. Opt-in:
# not part of ctest or CI. The clone is of HEAD (committed work only), as CI clones main.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0 base="" order=main-first
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --base) base=$2; shift ;;
    --order) order=$2; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "fresh_machine.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "fresh_machine.sh: needs root (chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh_machine.sh: apt-get install -y debootstrap" >&2; exit 1; }

work=$(mktemp -d /tmp/tapegrad-fresh.XXXXXX)
root=$work/root
cleanup() {
  for m in proc dev/pts dev; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  [ "$keep" = 1 ] && echo "kept $root" || rm -rf "$work"
}
trap cleanup EXIT
if [ -n "$base" ]; then
  cp -a "$base" "$root"
else
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
fi
git clone -q . "$root/src/tapegrad"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

main_job() { chroot "$root" /bin/bash -c 'cd /src/tapegrad && examples/fashion_mnist/run.sh' | tail -n 3; }
test_cmd() { chroot "$root" /bin/bash -c 'cd /src/tapegrad && tests/run.sh' | tail -n 4; }
start=$(date +%s)
if [ "$order" = main-first ]; then
  echo "== main job (examples/fashion_mnist/run.sh)"; main_job
  echo "== tests (tests/run.sh)"; test_cmd
else
  echo "== tests (tests/run.sh)"; test_cmd
  echo "== main job (examples/fashion_mnist/run.sh)"; main_job
fi
echo "== both commands passed in a fresh bookworm in $(( $(date +%s) - start )) s"
