#!/bin/sh
# fashion_mnist_test.sh - integration tests of examples/fashion_mnist (run by ctest, see fashion_mnist.cmake).
#   fashion_mnist_test.sh resume BIN SYNTH WORKDIR   tiny synthetic data: same seed -> same model bytes,
#                                                    resume == uninterrupted, NaN stops and keeps the checkpoint,
#                                                    refused outputs, damaged metadata, SIGTERM, --resume defaults
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
        # lambda as an L2 term in the cost or as the optimizer's (coupled) weight decay: the same
        # updates, so the same bytes; only the train loss shown differs (it includes the term)
        "$BIN" $common --epochs 4 --threads 1 --l2 cost --model l.st --checkpoint l.ck > l.log 2>&1 || { cat l.log; fail "$optim: --l2 cost"; }
        grep -q "lambda 0.0001 (in the cost)" l.log || { head -2 l.log; fail "$optim: --l2 cost not reported"; }
        cmp a.st l.st || fail "$optim: --l2 cost and --l2 optimizer gave different models"
        cmp -s a.log l.log && fail "$optim: the train loss should include the cost's L2 term"
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
        n_test=$(sed -n 's/.* images=\([0-9]*\) .*/\1/p' e.log)
        grep -q "saved test_accuracy $acc on $n_test images" e.log || { cat e.log; fail "$optim: saved accuracy not shown"; }
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
    "$BIN" --data "$W/data" --l2 both > x.log 2>&1 && fail "--l2 both accepted"
    grep -q 'unknown --l2 "both" (cost, optimizer)' x.log || { cat x.log; fail "--l2 message"; }
    # outputs: colliding paths are refused up front, naming both flags; a target that is not a
    # regular file (FIFO, directory) is refused and left alone; a symbolic link is written through
    q="--data $W/data --arch 784-16-10 --batch 32 --epochs 1 --threads 1"
    for pair in "--model x.st --checkpoint x.st" "--metrics a.out --plot ./a.out" "--checkpoint c.x --plot c.x"; do
        "$BIN" $q $pair > x.log 2>&1 && fail "colliding outputs accepted: $pair"
        f1=${pair%% *} rest=${pair#* * } f2=${rest%% *}
        grep -q -- "$f1 .* and $f2 .* name the same file" x.log || { cat x.log; fail "collision message for $pair"; }
    done
    [ -e x.st ] || [ -e a.out ] || [ -e c.x ] && fail "a refused run wrote an output"
    mkfifo fifo.csv || fail "mkfifo"
    "$BIN" $q --metrics fifo.csv > x.log 2>&1 && fail "a FIFO as --metrics accepted"
    grep -q -- "--metrics fifo.csv: exists and is a FIFO" x.log || { cat x.log; fail "FIFO message"; }
    [ -p fifo.csv ] || fail "the FIFO was replaced"
    mkdir dir.svg
    "$BIN" $q --plot dir.svg > x.log 2>&1 && fail "a directory as --plot accepted"
    grep -q -- "--plot dir.svg: exists and is a directory" x.log || { cat x.log; fail "directory message"; }
    echo old > real.csv && ln -s real.csv link.csv
    "$BIN" $q --metrics link.csv --plot p.svg --model q.st --checkpoint q.ck > x.log 2>&1 || { cat x.log; fail "metrics through a link"; }
    [ -L link.csv ] && grep -q '^epoch,' real.csv || fail "the link was replaced or its file not written"
    # sizes: a batch larger than the data is the whole data; --epochs is not allocated up front
    "$BIN" $q --batch 1000000000 --model q.st --checkpoint q.ck --metrics q.csv --plot q.svg > x.log 2>&1 || { cat x.log; fail "--batch 1000000000"; }
    "$BIN" $q --epochs 1000000000 --stop-after 1 --model q.st --checkpoint q.ck --metrics q.csv --plot q.svg > x.log 2>&1 \
        || { cat x.log; fail "--epochs 1000000000 --stop-after 1"; }
    "$BIN" $q --target-acc 1.5 > x.log 2>&1 && fail "--target-acc 1.5 accepted"
    # --resume without --checkpoint goes on writing the resumed file; the settings line says so
    rm -f fashion_mnist.ckpt.safetensors
    "$BIN" $q --epochs 2 --stop-after 1 --model q.st --checkpoint my.ck --metrics q.csv --plot q.svg > x.log 2>&1 || { cat x.log; fail "run to resume"; }
    cp my.ck my1.ck
    "$BIN" --resume my.ck --data "$W/data" --threads 1 --model r.st --metrics q.csv --plot q.svg > x.log 2>&1 || { cat x.log; fail "resume without --checkpoint"; }
    [ -e fashion_mnist.ckpt.safetensors ] && fail "--resume my.ck wrote the default checkpoint"
    cp x.log resumed.log
    grep -q "^checkpoint: my.ck" x.log && grep -q "resumed from my.ck: 784-16-10 relu" x.log || { cat x.log; fail "resumed checkpoint path or settings line"; }
    cmp -s my.ck my1.ck && fail "my.ck was not advanced by the resumed run"
    "$BIN" --resume my1.ck --preset seed --data "$W/data" > x.log 2>&1 && fail "--preset with --resume accepted"
    "$BIN" --resume my1.ck --act tanh --data "$W/data" > x.log 2>&1 && fail "--act conflicting with the checkpoint accepted"
    grep -q -- "--act tanh conflicts with my1.ck" x.log || { cat x.log; fail "conflict message"; }
    # input standardisation (the modern preset's): the training set's statistics, saved with the model and
    # the checkpoint, applied by --eval, kept by --resume (a model fitted to them cannot switch)
    grep -q "inputs: standardised, (pixel / 255 - 0\.[0-9]*) / 0\.[0-9]* (the training set's mean and std, as saved in the checkpoint)" resumed.log \
        || { cat resumed.log; fail "resumed standardisation line"; }
    "$BIN" --eval r.st --data "$W/data" > x.log 2>&1 || { cat x.log; fail "eval of a standardised model"; }
    grep -q "; inputs standardised, (pixel / 255 - 0\.[0-9]*) / 0\.[0-9]*$" x.log || { cat x.log; fail "eval standardisation line"; }
    "$BIN" --resume my1.ck --normalize none --data "$W/data" > x.log 2>&1 && fail "--normalize conflicting with the checkpoint accepted"
    grep -q -- "--normalize none conflicts with my1.ck, saved with cfg.normalize standard" x.log || { cat x.log; fail "normalize conflict message"; }
    "$BIN" $q --normalize none --epochs 1 --model n0.st --checkpoint n0.ck --metrics q.csv --plot q.svg > x.log 2>&1 || { cat x.log; fail "--normalize none"; }
    grep -q "^inputs: pixel / 255 (--normalize none)$" x.log || { cat x.log; fail "--normalize none line"; }
    grep -q "input_mean" n0.st && fail "a --normalize none model holds input_mean"
    "$BIN" --eval n0.st --data "$W/data" > x.log 2>&1 || { cat x.log; fail "eval of an unstandardised model"; }
    grep -q "standardised" x.log && { cat x.log; fail "an unstandardised model was evaluated standardised"; }
    # files from before --normalize (no such entries): pixels / 255; a model with half the pair, or a bad
    # number, is refused
    # (keys renamed through the synth helper, which keeps the header's CRC sound; sed would now be refused as corrupt)
    "$SYNTH" --rename-meta my1.ck old1.ck cfg.normalize cfg.normalizX && "$SYNTH" --rename-meta old1.ck old2.ck input_mean input_meaX \
        && "$SYNTH" --rename-meta old2.ck old.ck input_std input_stX && rm -f old1.ck old2.ck || fail "rename-meta"
    "$BIN" --resume old.ck --data "$W/data" --threads 1 --model o.st --checkpoint o.ck --metrics q.csv --plot q.svg > x.log 2>&1 \
        || { cat x.log; fail "resume of a checkpoint from before --normalize"; }
    grep -q "^inputs: pixel / 255 (--normalize none)$" x.log || { cat x.log; fail "old checkpoint: inputs line"; }
    "$SYNTH" --rename-meta r.st half.st input_std input_stX || fail "rename-meta"
    "$BIN" --eval half.st --data "$W/data" > x.log 2>&1 && fail "a model with input_mean alone accepted"
    grep -q "half.st: the model has input_mean but not input_std" x.log || { cat x.log; fail "half pair message"; }
    "$SYNTH" --set-meta r.st sd.st input_std -1 && "$BIN" --eval sd.st --data "$W/data" > x.log 2>&1 && fail "input_std -1 accepted"
    grep -q 'sd.st: input_std "-1" in the model is not a standard deviation in (0, 1\]' x.log || { cat x.log; fail "input_std message"; }
    rm -f n0.st n0.ck old.ck o.st o.ck half.st sd.st resumed.log
    # --eval of a checkpoint; model and checkpoint metadata checked before anything is built from them
    "$BIN" --eval my1.ck --data "$W/data" > x.log 2>&1 && fail "--eval of a checkpoint accepted"
    grep -q "my1.ck is a training checkpoint, not a model" x.log || { cat x.log; fail "--eval checkpoint message"; }
    "$SYNTH" --set-meta r.st big.st arch 784-2000000-10 || fail "set-meta"
    "$BIN" --eval big.st --data "$W/data" > x.log 2>&1 && fail "an edited arch accepted"
    grep -q "big.st: arch 784-2000000-10 in the file does not match its tensors" x.log || { cat x.log; fail "arch message"; }
    "$SYNTH" --set-meta r.st act.st activation foo && "$BIN" --eval act.st --data "$W/data" > x.log 2>&1 && fail "activation foo accepted"
    grep -q 'act.st: activation "foo" in the file is unknown' x.log || { cat x.log; fail "activation message"; }
    "$SYNTH" --set-meta my1.ck e.ck epoch abc && "$BIN" --resume e.ck --data "$W/data" > x.log 2>&1 && fail "epoch abc accepted"
    grep -q 'e.ck: epoch "abc" in the checkpoint' x.log || { cat x.log; fail "epoch message"; }
    "$SYNTH" --set-meta my1.ck b0.ck cfg.batch 0 && "$BIN" --resume b0.ck --data "$W/data" > x.log 2>&1 && fail "cfg.batch 0 accepted"
    grep -q 'b0.ck: cfg.batch 0 in the checkpoint must be at least 1' x.log || { cat x.log; fail "cfg.batch message"; }
    "$SYNTH" --set-meta my1.ck a.ck cfg.arch 784-2000000-10 && "$BIN" --resume a.ck --data "$W/data" > x.log 2>&1 && fail "cfg.arch edited accepted"
    grep -q 'a.ck: cfg.arch 784-2000000-10 in the file does not match' x.log || { cat x.log; fail "cfg.arch message"; }
    # SIGTERM (as SIGINT; a background job of sh ignores SIGINT): stops after the current step,
    # names the last checkpoint, exits 128+15, leaves no temporary file; the checkpoint resumes
    "$BIN" $q --arch 784-128-10 --epochs 1000 --model t.st --checkpoint t.ck --metrics t.csv --plot t.svg > t.log 2>&1 &
    pid=$!
    i=0
    while [ ! -e t.ck ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -TERM $pid 2>/dev/null
    wait $pid
    rc=$?
    [ $rc -eq 143 ] || { cat t.log; fail "SIGTERM: exit status $rc, want 143"; }
    grep -q "interrupted (SIGTERM) .*the last good checkpoint is t.ck (epoch [0-9]*): continue with --resume t.ck" t.log || { cat t.log; fail "SIGTERM message"; }
    ls -a | grep -q 'tmp-' && fail "temporary files left after SIGTERM: $(ls -a)"
    [ -e t.st ] && fail "an interrupted run wrote the final model"
    "$BIN" --resume t.ck --epochs 1 --data "$W/data" --threads 1 --model t.st --metrics t.csv --plot t.svg > x.log 2>&1 \
        || { cat x.log; fail "resume after SIGTERM"; }
    rm -rf ./*.st ./*.ck ./*.csv ./*.svg ./*.log fifo.csv dir.svg

    # a long run: the checkpoint's history outgrows one 64 KiB metadata value (about 700 epochs)
    # and is kept in pieces; the resumed run's metrics still begin with every earlier epoch
    long="--data $W/data --arch 784-4-10 --limit 48 --test-limit 20 --batch 48 --threads 1 --epochs 760"
    "$BIN" $long --stop-after 750 --model h.st --checkpoint h.ck --metrics h.csv > h.log 2>&1 || { tail -3 h.log; fail "long run"; }
    "$BIN" --resume h.ck --epochs 760 --data "$W/data" --model h.st --metrics h2.csv > x.log 2>&1 || { tail -3 x.log; fail "resume of a long run"; }
    [ "$(wc -l < h2.csv)" -eq 761 ] || fail "long run: metrics after resume have $(wc -l < h2.csv) lines"
    # every column, the timings included: the checkpoint keeps them to the last digit
    head -751 h2.csv | cmp -s - h.csv || fail "long run: history changed on resume"
    rm -f h.st h.ck h.csv h2.csv h.log x.log

    # bad input: a clear message, no crash
    "$BIN" --data "$W/nowhere" --epochs 1 > x.log 2>&1 && fail "missing data accepted"
    grep -q -- "--data \"$W/nowhere\": no such directory" x.log || { cat x.log; fail "missing data message"; }
    "$BIN" --data "$W/data/t10k-labels-idx1-ubyte" --epochs 1 > x.log 2>&1 && fail "a file as --data accepted"
    grep -q "not a directory" x.log || { cat x.log; fail "--data file message"; }
    "$BIN" --eval "$W/nowhere.st" > x.log 2>&1 && fail "missing model accepted"
    grep -q "no such file" x.log || { cat x.log; fail "missing model message"; }
    "$BIN" --bogus 1 > x.log 2>&1 && fail "unknown flag accepted"
    # refused before any training, nothing written: an output directory that cannot take the file,
    # an empty --eval or --resume (an unset variable), --momentum 0 (the library's "default" 0.9),
    # a training flag with --eval
    outs="--checkpoint q.ck --metrics q.csv --plot q.svg"
    "$BIN" $q --model "$W/nowhere/m.st" $outs > x.log 2>&1 && fail "an output in a missing directory accepted"
    grep -q -- "--model $W/nowhere/m.st: cannot write in $W/nowhere: No such file" x.log || { cat x.log; fail "output directory message"; }
    "$BIN" --eval "" --data "$W/data" > x.log 2>&1 && fail "--eval \"\" accepted"
    grep -q -- "--eval needs the model file" x.log || { cat x.log; fail "--eval empty message"; }
    "$BIN" --resume "" --data "$W/data" > x.log 2>&1 && fail "--resume \"\" accepted"
    grep -q -- "--resume needs the checkpoint file" x.log || { cat x.log; fail "--resume empty message"; }
    "$BIN" $q --momentum 0 --model q.st $outs > x.log 2>&1 && fail "--momentum 0 accepted"
    grep -q -- "--momentum 0: give a value in (0, 1)" x.log || { cat x.log; fail "--momentum 0 message"; }
    "$BIN" --eval q.st --epochs 5 --data "$W/data" > x.log 2>&1 && fail "--epochs with --eval accepted"
    grep -q -- "--epochs has no effect with --eval" x.log || { cat x.log; fail "--eval conflict message"; }
    [ -e q.st ] || [ -e q.ck ] || [ -e q.csv ] || [ -e q.svg ] && fail "a refused run wrote an output"
    # a resume with fewer steps per epoch (--limit) under the cosine schedule: the schedule spans the
    # steps done and those to come, so the last epoch still trains (it ran at lr 0 before)
    cos="--data $W/data --arch 784-8-10 --batch 24 --threads 1 --schedule cosine --epochs 3"
    "$BIN" $cos --limit 192 --stop-after 2 --model q.st --checkpoint q.ck --metrics q.csv > x.log 2>&1 || { cat x.log; fail "run to resume with another --limit"; }
    in1=$(sed -n 's/^inputs: standardised, \(.*\) (the training.*/\1/p' x.log)
    "$BIN" --resume q.ck --limit 48 --data "$W/data" --model q.st --metrics q.csv > x.log 2>&1 || { cat x.log; fail "resume with another --limit"; }
    in2=$(sed -n 's/^inputs: standardised, \(.*\) (the training.*as saved in the checkpoint)$/\1/p' x.log)
    [ -n "$in1" ] && [ "$in1" = "$in2" ] || { cat x.log; fail "resume with another --limit: input statistics \"$in1\", then \"$in2\""; }
    l2=$(sed -n 3p q.csv | cut -d, -f3) l3=$(sed -n 4p q.csv | cut -d, -f3)
    [ -n "$l3" ] && [ "$l2" != "$l3" ] || { cat q.csv; fail "the resumed epoch did not train (test loss $l2 then $l3)"; }
    # exit status: 2 for any bad command line (unparsable or out of range), 1 for a missing file
    for args in "--bogus 1" "--epochs" "--epochs -1" "--epochs 0" "--lr 0" "--momentum 2" "--threads -3" \
                "--eval q.st --epochs 5" "--target-acc 2" "--normalize foo" "--act foo" "--l2 both"; do
        "$BIN" --data "$W/data" $args > x.log 2>&1
        rc=$?
        [ $rc -eq 2 ] || { cat x.log; fail "$args: exit status $rc, want 2"; }
    done
    "$BIN" --epochs --model m.st > x.log 2>&1 && fail "--epochs --model accepted"
    grep -q -- "--epochs needs a value (the next argument is the flag --model)" x.log || { cat x.log; fail "missing value message"; }
    "$BIN" --eval "$W/nowhere.st" > x.log 2>&1
    rc=$?
    [ $rc -eq 1 ] || { cat x.log; fail "missing model: exit status $rc, want 1"; }
    rm -f q.st q.ck q.csv x.log
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
