#!/bin/sh
# Crash safety of training (issue 7 item 6): SIGKILL examples/fashion_mnist at random points of a
# run that checkpoints every epoch, resume it from the checkpoint with --resume, and check that the
# final model is byte-identical to an uninterrupted run. The data is the tiny synthetic set of
# tests/main_job/fashion_mnist_synth.c (the main job's helper). Several kills in the smoke run.
#   tests/main_job/kill_resume.sh FASHION_MNIST SYNTH WORKDIR [KILLS, default 4]
set -u
BIN=$1 SYNTH=$2 W=$3 KILLS=${AG_RESUME_KILLS:-${4:-4}}
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$W" && mkdir -p "$W/data" || fail "cannot create $W"
"$SYNTH" "$W/data" >/dev/null || fail "synthetic data"
cd "$W" || exit 1
common="--data $W/data --arch 784-24-10 --optim adam --lr 0.01 --batch 16 --seed 5 --epochs 6 --threads 1"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(now_ms)
"$BIN" $common --model a.st --checkpoint a.ck > a.log 2>&1 || { cat a.log; fail "uninterrupted run"; }
t=$(( $(now_ms) - t0 ))
[ "$t" -ge 1 ] || t=1
resumed=0 restarted=0
i=0
while [ $i -lt "$KILLS" ]; do
    i=$((i + 1))
    rm -f b.st b.ck .b.* 2>/dev/null
    # kill at a random point of the run (1..95% of its duration)
    delay_ms=$(( (t * (1 + $(od -An -N2 -tu2 /dev/urandom) % 95)) / 100 ))
    "$BIN" $common --model b.st --checkpoint b.ck > b.log 2>&1 &
    pid=$!
    sleep "$(awk -v d="$delay_ms" 'BEGIN { printf "%.3f", d / 1000 }')"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    # resume until done (a run may also have finished before the kill)
    if [ -e b.ck ]; then
        "$BIN" --resume b.ck --epochs 6 --data "$W/data" --model b.st --checkpoint b.ck > r.log 2>&1 || {
            grep -q "nothing to train" r.log || { cat r.log; fail "resume after kill $i (at ${delay_ms} ms)"; }
        }
        resumed=$((resumed + 1))
    else
        # killed before the first checkpoint: start again
        "$BIN" $common --model b.st --checkpoint b.ck > r.log 2>&1 || { cat r.log; fail "restart after kill $i"; }
        restarted=$((restarted + 1))
    fi
    [ -e b.st ] || "$BIN" --resume b.ck --epochs 6 --data "$W/data" --model b.st --checkpoint b.ck >/dev/null 2>&1
    cmp a.st b.st || fail "kill $i at ${delay_ms} ms of ${t} ms: the resumed model differs from the uninterrupted one"
done
echo "kill_resume: $KILLS kills of a ${t} ms training run ($resumed resumed from a checkpoint, $restarted before the first one): every final model equals the uninterrupted run's"
