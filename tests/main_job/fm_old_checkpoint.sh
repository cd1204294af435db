#!/bin/sh
# fm_old_checkpoint.sh - the files of examples/fashion_mnist written at commit f799a42 (before the
# checkpoint library and the header CRC; tests/main_job/fixtures/fm_f799a42.*) still work: --resume of the
# checkpoint (784-4-10, momentum, 1 of 2 epochs on the synthetic set, --limit 48 --test-limit 20
# --batch 16 --seed 3) ends in the very model the old program's uninterrupted run wrote, and --eval
# of the old model shows the accuracy saved with it. A double build refuses the F32 files by name.
#   fm_old_checkpoint.sh BIN SYNTH FIXTURES WORKDIR DOUBLE(ON|OFF)
set -u
BIN=$1 SYNTH=$2 FX=$3 W=$4 DOUBLE=$5
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$W" && mkdir -p "$W/data" || fail "cannot create $W"
"$SYNTH" "$W/data" >/dev/null || fail "synthetic data"
cd "$W" || exit 1
cp "$FX/fm_f799a42.ckpt.safetensors" old.ck && chmod u+w old.ck
"$BIN" --resume old.ck --epochs 2 --data "$W/data" --threads 1 --model r.st --checkpoint r.ck --metrics "" --plot "" > r.log 2>&1
rc=$?
if [ "$DOUBLE" = ON ]; then
    [ $rc -eq 1 ] && grep -q "is F32 in the file but this build stores F64" r.log || { cat r.log; fail "double build: status $rc"; }
    echo "old checkpoint refused by the double build, by name"
    exit 0
fi
[ $rc -eq 0 ] || { cat r.log; fail "resume of the f799a42 checkpoint"; }
grep -q "resuming from old.ck at epoch 2/2" r.log || { cat r.log; fail "resume message"; }
# the weights (the data section: 3190 float32 at the end) equal; the headers differ by header_crc32.
# The old run used the avx512 kernels: another path (forced portable, avx2, aarch64) sums the products
# in another order, so its bits are its own and only the resume itself is checked there.
if grep -q "(avx512 kernels)" r.log; then
    tail -c 12760 r.st > r.data && tail -c 12760 "$FX/fm_f799a42.resumed.safetensors" > old.data || fail "tail"
    cmp r.data old.data || fail "the resumed model's weights differ from the old program's uninterrupted run"
else
    echo "not the avx512 kernels: the bit comparison with the old run is skipped"
fi
"$BIN" --eval "$FX/fm_f799a42.model.safetensors" --data "$W/data" --test-limit 20 > e.log 2>&1 || { cat e.log; fail "--eval of the f799a42 model"; }
acc=$(sed -n 's/.*eval test_accuracy=\([0-9.]*\) .*/\1/p' e.log)
grep -q "saved test_accuracy $acc on 20 images" e.log || { cat e.log; fail "eval accuracy $acc differs from the saved one"; }
"$BIN" --resume r.ck --epochs 3 --data "$W/data" --threads 1 --model r3.st --metrics "" --plot "" > r3.log 2>&1 || { cat r3.log; fail "resume of the new checkpoint"; }
echo "f799a42 checkpoint resumed to the old uninterrupted model; its model evaluates as saved"
