#!/bin/sh
# dist_test.sh - fashion_mnist --dist under mpirun (ctest, -DAG_MPI=ON; see tests/dist.cmake).
#   dist_test.sh bits   MPIRUN BIN SYNTH WORKDIR   np 1-4 write the model of the one-process reference
#                                                  (--dist-shards 12) byte for byte; the same train losses;
#                                                  a run stopped at np 2 resumes at np 3 and in one process
#   dist_test.sh faults MPIRUN BIN SYNTH WORKDIR   ranks started with other options are refused; a rank
#                                                  killed mid-run ends the job (non-zero, < 30 s) and the
#                                                  last checkpoint resumes; a stopped (hung) rank makes the
#                                                  others give up after --dist-timeout; SIGTERM stops
#                                                  every rank after one same step
# Every mpirun runs under timeout(1): nothing can hang CI. As root, and with more ranks than cores,
# Open MPI needs --allow-run-as-root and --oversubscribe (added here; MPICH needs neither).
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
mode=$1 MPIRUN=$2 BIN=$3 SYNTH=$4 W=$5
flags=""
if "$MPIRUN" --version 2>&1 | grep -Eq "Open MPI|OpenRTE"; then
    flags="--oversubscribe"
    [ "$(id -u)" = 0 ] && flags="$flags --allow-run-as-root"
fi
mpi() { np=$1; shift; timeout 120 "$MPIRUN" $flags -np "$np" "$@"; }
rm -rf "$W" && mkdir -p "$W/data" || fail "cannot create $W"
"$SYNTH" "$W/data" || fail "synthetic data"
cd "$W" || exit 1
D="--data $W/data --threads 1"

if [ "$mode" = bits ]; then
    # two recipes: momentum with the L2 in the optimizer, Adam with the L2 term in the cost and clipping
    for recipe in "--optim momentum --lr 0.05" "--optim adam --lr 0.003 --l2 cost --clip 1"; do
        c="$D --arch 784-24-16-10 --batch 20 --epochs 3 --seed 5 --schedule cosine $recipe"
        "$BIN" $c --dist-shards 12 --model ref.st --checkpoint ref.ck --metrics ref.csv --plot "" > ref.log 2>&1 ||
            { cat ref.log; fail "reference run ($recipe)"; }
        grep -q "micro-shards: 12 per batch of 20" ref.log || { head -5 ref.log; fail "reference: no micro-shard line"; }
        for np in 1 2 3 4; do
            mpi $np "$BIN" --dist $c --model np$np.st --checkpoint np$np.ck --metrics np$np.csv --plot np$np.svg \
                > np$np.log 2>&1 || { cat np$np.log; fail "np $np ($recipe)"; }
            cmp ref.st np$np.st || fail "np $np wrote another model than the reference ($recipe)"
            # the train loss is summed in fixed point too: the same CSV columns but the timings
            [ "$(cut -d, -f1-5 ref.csv)" = "$(cut -d, -f1-5 np$np.csv)" ] || fail "np $np: other losses ($recipe)"
            grep -q "distributed: $np rank" np$np.log || { head -5 np$np.log; fail "np $np: no distributed line"; }
            [ "$(grep -c '^final test_accuracy' np$np.log)" = 1 ] || fail "np $np: rank 0 alone prints the summary"
        done
        ls | grep -q '^tmp-\|\.tmp' && fail "temporary files left: $(ls)"
        # stopped at np 2 after one epoch, resumed at np 3 (and again, the checkpoint written at np 3,
        # in one process): the reference's model
        mpi 2 "$BIN" --dist $c --stop-after 1 --model a.st --checkpoint a.ck --metrics "" --plot "" > a.log 2>&1 ||
            { cat a.log; fail "np 2 stop-after ($recipe)"; }
        cp a.ck a1.ck
        mpi 3 "$BIN" --dist --resume a.ck $D --stop-after 2 --model b.st --metrics "" --plot "" > b.log 2>&1 ||
            { cat b.log; fail "resume at np 3 ($recipe)"; }
        grep -q "resuming from a.ck at epoch 2/3" b.log || { cat b.log; fail "resume message"; }
        "$BIN" --resume a.ck $D --model c.st --metrics "" --plot "" > c.log 2>&1 || { cat c.log; fail "resume in one process"; }
        grep -q "micro-shards: 12 per batch" c.log || { head -5 c.log; fail "the resumed run forgot --dist-shards"; }
        cmp ref.st c.st || fail "np 2 -> np 3 -> one process differs from the reference ($recipe)"
        mpi 4 "$BIN" --dist --resume a1.ck $D --model d.st --metrics "" --plot "" > d.log 2>&1 || { cat d.log; fail "resume at np 4"; }
        cmp ref.st d.st || fail "np 2 -> np 4 differs from the reference ($recipe)"
        rm -f ./*.st ./*.ck ./*.csv ./*.svg ./*.log
    done
    # --dist-shards 5 (fewer shards than the 4 ranks need not divide): still the reference's bits
    c="$D --arch 784-16-10 --batch 32 --epochs 2 --seed 9 --metrics= --plot="
    "$BIN" $c --dist-shards 5 --model r5.st --checkpoint "" > r5.log 2>&1 || { cat r5.log; fail "reference, 5 shards"; }
    mpi 4 "$BIN" --dist $c --dist-shards 5 --model p5.st --checkpoint "" > p5.log 2>&1 || { cat p5.log; fail "np 4, 5 shards"; }
    cmp r5.st p5.st || fail "np 4 with 5 shards differs from the reference"
    echo "dist bits: np 1-4 and resumes across np give the reference's model byte for byte"
    exit 0
fi

[ "$mode" = faults ] || fail "unknown mode $mode"
c="$D --arch 784-16-10 --batch 24 --seed 2 --metrics= --plot="
# 1. other options on one rank (MPMD launch): refused before training, nothing written
t0=$(date +%s)
mpi 1 "$BIN" --dist $c --epochs 2 --model x.st --checkpoint x.ck : -np 1 "$BIN" --dist $c --epochs 2 --lr 0.5 \
    --model x.st --checkpoint x.ck > x.log 2>&1
rc=$?
[ $rc -ne 0 ] || { cat x.log; fail "ranks with different --lr were accepted"; }
[ $rc -ne 124 ] || fail "mismatch: mpirun had to be killed by timeout"
grep -q "of rank 1 differ from rank 0's" x.log || { cat x.log; fail "mismatch message"; }
[ -e x.st ] || [ -e x.ck ] && fail "a refused run wrote its outputs"
# another architecture on one rank: refused as well
mpi 1 "$BIN" --dist $c --epochs 2 --model x.st --checkpoint x.ck : -np 1 "$BIN" --dist $c --epochs 2 --arch 784-17-10 \
    --model x.st --checkpoint x.ck > x.log 2>&1 && { cat x.log; fail "ranks with different --arch were accepted"; }
grep -q "differ from rank 0's" x.log || { cat x.log; fail "arch mismatch message"; }

# 2. a rank killed mid-run: the job ends, non-zero, well within 30 s; the last checkpoint resumes
start_run() { # $1 tag, $2 extra flags: a long run in the background, its pids found by its tag
    ( mpi 3 "$BIN" --dist $c --epochs 100000 --model "$1.st" --checkpoint "$1.ck" $2 > "$1.log" 2>&1
      echo $? > "$1.rc" ) &
}
rank_pid() { # $1 tag, $2 rank: the pid of that rank's process (Open MPI and MPICH name the rank in its environment)
    for p in $(pgrep -f "fashion_mnist --dist .*--checkpoint $1.ck"); do
        tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -Eq "^(OMPI_COMM_WORLD_RANK|PMI_RANK)=$2\$" && { echo $p; return; }
    done
}
wait_for() { # $1 file, $2 seconds
    i=0; while [ ! -e "$1" ] && [ $i -lt $(( $2 * 10 )) ]; do sleep 0.1; i=$((i + 1)); done; [ -e "$1" ]
}
start_run k ""
wait_for k.ck 60 || { cat k.log; fail "no checkpoint within 60 s"; }
sleep 1
victim=$(rank_pid k 1)
[ -n "$victim" ] || fail "rank 1's process not found"
t0=$(date +%s)
kill -KILL "$victim"
wait_for k.rc 40 || fail "the job went on for 40 s after rank 1 was killed"
dt=$(( $(date +%s) - t0 ))
rc=$(cat k.rc)
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { tail k.log; fail "killed rank: exit status $rc"; }
[ $dt -le 30 ] || fail "killed rank: $dt s to stop"
grep -Eqi "rank 1|killed|no answer" k.log || { tail k.log; fail "killed rank: no message"; }
epochs=$(sed -n 's/.*epoch \([0-9]*\)\/100000 .*/\1/p' k.log | tail -1)
"$BIN" --resume k.ck $D --epochs $((epochs + 1)) --model k2.st --metrics "" --plot "" > k2.log 2>&1 ||
    { cat k2.log; fail "the checkpoint left by the killed job does not resume"; }
echo "killed rank: exit $rc after $dt s; the checkpoint of epoch $epochs resumed"

# 3. a hung rank (SIGSTOP): the others give up after --dist-timeout with a message, not a hang
start_run h "--dist-timeout 3"
wait_for h.ck 60 || { cat h.log; fail "no checkpoint within 60 s"; }
victim=$(rank_pid h 2)
[ -n "$victim" ] || fail "rank 2's process not found"
t0=$(date +%s)
kill -STOP "$victim"
wait_for h.rc 30 || { kill -CONT "$victim"; fail "the job went on for 30 s after rank 2 stopped"; }
kill -CONT "$victim" 2>/dev/null
dt=$(( $(date +%s) - t0 ))
rc=$(cat h.rc)
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { tail h.log; fail "hung rank: exit status $rc"; }
grep -q "no answer from the other ranks within 3 s" h.log || { tail h.log; fail "hung rank: no timeout message"; }
echo "hung rank: exit $rc after $dt s with the timeout message"

# 4. SIGTERM to mpirun (which passes it on): every rank stops after the same step, the checkpoint resumes
start_run s ""
wait_for s.ck 60 || { cat s.log; fail "no checkpoint within 60 s"; }
launcher=$(pgrep -f "^[^ ]*(mpirun|mpiexec)[^ ]* .*--checkpoint s\.ck" | head -1)
[ -n "$launcher" ] || fail "mpirun's process not found"
kill -TERM "$launcher"
wait_for s.rc 30 || fail "SIGTERM: the job went on for 30 s"
n=$(grep -c "interrupted (SIGTERM) at epoch" s.log)
at=$(sed -n 's/.*interrupted (SIGTERM) \(at epoch [0-9]* step [0-9]*\).*/\1/p' s.log | sort -u | wc -l)
[ "$n" -ge 2 ] && [ "$at" = 1 ] || { grep interrupted s.log; fail "SIGTERM: the ranks did not stop at one step"; }
grep -q "the last good checkpoint is s.ck" s.log || { tail s.log; fail "SIGTERM: rank 0 did not name the checkpoint"; }
"$BIN" --resume s.ck $D --epochs 100000 --stop-after "$(( $(sed -n 's/.*(epoch \([0-9]*\)).*/\1/p' s.log | head -1) + 1 ))" \
    --model s2.st --metrics= --plot= > s2.log 2>&1 || { cat s2.log; fail "SIGTERM: the checkpoint does not resume"; }
echo "SIGTERM: $n ranks stopped $(sed -n 's/.*interrupted (SIGTERM) \(at epoch [0-9]* step [0-9]*\).*/\1/p' s.log | head -1); resumed"
exit 0
