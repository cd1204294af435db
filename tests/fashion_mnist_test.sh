#!/bin/sh
# fashion_mnist_test.sh - integration tests of examples/fashion_mnist (run by ctest, see fashion_mnist.cmake).
#   fashion_mnist_test.sh resume BIN SYNTH WORKDIR   tiny synthetic data: same seed -> same model bytes,
#                                                    resume == uninterrupted, NaN stops and keeps the checkpoint
#   fashion_mnist_test.sh real BIN WORKDIR           brief training on the installed data set (exit 77 if absent)
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }

mode=$1
if [ "$mode" = resume ]; then
    BIN=$2 SYNTH=$3 W=$4
    rm -rf "$W" && mkdir -p "$W/data" || fail "cannot create $W"
    "$SYNTH" "$W/data" || fail "synthetic data"
    command -v gzip >/dev/null && gzip -nf "$W/data/train-images-idx3-ubyte" "$W/data/train-labels-idx1-ubyte"
    cd "$W" || exit 1
    for optim in momentum adam; do
        common="--data $W/data --arch 784-32-16-10 --optim $optim --lr 0.01 --batch 24 --seed 11 --schedule cosine --metrics m.csv --plot m.svg"
        [ $optim = momentum ] && common="$common --lr 0.05"
        # uninterrupted, 2 threads
        "$BIN" $common --epochs 4 --threads 2 --model a.st --checkpoint a.ck > a.log 2>&1 || { cat a.log; fail "$optim: run a"; }
        # same seed, 1 thread: same bytes
        "$BIN" $common --epochs 4 --threads 1 --model c.st --checkpoint c.ck > c.log 2>&1 || { cat c.log; fail "$optim: run c"; }
        cmp a.st c.st || fail "$optim: same seed gave a different model"
        # interrupted after 2 epochs, then resumed to 4
        "$BIN" $common --epochs 4 --stop-after 2 --threads 1 --model b2.st --checkpoint b.ck > b.log 2>&1 || { cat b.log; fail "$optim: run b"; }
        cp b.ck b2.ck
        "$BIN" --resume b.ck --epochs 4 --data "$W/data" --model b.st --checkpoint b.ck --metrics b.csv --plot b.svg > r.log 2>&1 || { cat r.log; fail "$optim: resume"; }
        grep -q "resuming from b.ck at epoch 3/4" r.log || { cat r.log; fail "$optim: resume message"; }
        cmp a.st b.st || fail "$optim: resumed run differs from the uninterrupted one"
        cmp a.ck b.ck >/dev/null 2>&1 || true   # checkpoints hold timings; models must match
        [ "$(wc -l < b.csv)" -eq 5 ] || fail "$optim: metrics CSV after resume has $(wc -l < b.csv) lines"
        grep -q '<svg' m.svg || fail "no SVG plot"
        tail -1 a.log | grep -Eq '^final test_accuracy=[0-9.]+ epochs=4 train_seconds=[0-9.]+ samples_per_second=[0-9]+$' \
            || { tail -3 a.log; fail "$optim: last line"; }
        acc=$(tail -1 a.log | sed 's/.*test_accuracy=\([0-9.]*\).*/\1/')
        awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' || fail "$optim: synthetic accuracy $acc"
        # --eval of the saved model agrees with training
        "$BIN" --eval a.st --data "$W/data" > e.log 2>&1 || { cat e.log; fail "$optim: eval"; }
        grep -q "eval test_accuracy=$acc" e.log || { cat e.log; fail "$optim: eval accuracy differs from $acc"; }
        # numerical blow-up: stops with a message, exit 3, last good checkpoint kept intact
        "$BIN" --resume b2.ck --epochs 4 --lr 1e300 --data "$W/data" --model n.st --checkpoint b2.ck > n.log 2>&1
        rc=$?
        [ $rc -eq 3 ] || { cat n.log; fail "$optim: blow-up exit status $rc, want 3"; }
        grep -q "numerical blow-up" n.log || { cat n.log; fail "$optim: blow-up message"; }
        grep -q "last good checkpoint is b2.ck" n.log || { cat n.log; fail "$optim: checkpoint message"; }
        cmp b2.ck b.ck >/dev/null 2>&1 && fail "unexpected"   # b.ck was advanced by the resume
        "$BIN" --resume b2.ck --stop-after 3 --data "$W/data" --model n.st --checkpoint x.ck > k.log 2>&1 || { cat k.log; fail "$optim: checkpoint unusable after blow-up"; }
        [ -e n.st ] || fail "n.st"
        rm -f ./*.st ./*.ck ./*.log
        ls -a | grep -q 'tmp-' && fail "temporary files left: $(ls -a)"
    done
    # bad input: a clear message, no crash
    "$BIN" --data "$W/nowhere" --epochs 1 > x.log 2>&1 && fail "missing data accepted"
    grep -q "no such file" x.log || { cat x.log; fail "missing data message"; }
    "$BIN" --eval "$W/nowhere.st" > x.log 2>&1 && fail "missing model accepted"
    grep -q "no such file" x.log || { cat x.log; fail "missing model message"; }
    "$BIN" --bogus 1 > x.log 2>&1 && fail "unknown flag accepted"
    "$BIN" --help | grep -q -- "--resume" || fail "help"
    echo "resume test passed"
    exit 0
fi

if [ "$mode" = real ]; then
    BIN=$2 W=$3
    D=/usr/share/datasets/fashion-mnist
    [ -e "$D/train-images-idx3-ubyte.gz" ] || [ -e "$D/train-images-idx3-ubyte" ] || { echo "SKIP: $D not installed (apt-get install dataset-fashion-mnist)"; exit 77; }
    rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
    "$BIN" --arch 784-128-10 --epochs 1 --limit 20000 --seed 1 > out.log 2>&1 || { cat out.log; fail "training"; }
    cat out.log
    acc=$(tail -1 out.log | sed -n 's/^final test_accuracy=\([0-9.]*\) .*/\1/p')
    [ -n "$acc" ] || fail "no final line"
    awk -v a="$acc" 'BEGIN { exit !(a > 0.70) }' || fail "accuracy $acc is not far above chance (0.10)"
    echo "real data test passed: test accuracy $acc after 1 epoch on 20000 images"
    exit 0
fi
fail "unknown mode $mode"
