#!/usr/bin/python3
"""PyTorch twin of tapegrad's time-to-88% benchmark (issue 6).

Trains the `modern` net (784-512-256-10 ReLU, cross-entropy, SGD momentum
0.9, He init, zero biases; see torch_train.py) on Fashion-MNIST with 1 thread
until the accuracy on the full 10k test set reaches the target (0.88). The
test set is evaluated after every epoch and, with --eval-every N, also every N
steps. Defaults (bench_train --time-to-acc's recipe): constant lr 0.05, batch
128, no L2, inputs x / 255, the last partial batch dropped.

The main job's `modern` preset (examples/fashion_mnist; bench/vs_torch passes
it): --lr 0.02 --batch 32 --schedule cosine --epochs 4 --weight-decay 1e-4
--normalize standard --keep-last-batch, i.e. lr 0.02 (1 + cos(pi t / T)) / 2
with T the steps of 4 epochs, L2 lambda on the weights only (SGD weight_decay,
as the main job's --l2 optimizer: the same gradient as lambda/2 sum W^2 in the
cost), inputs (x / 255 - mean) / std with the training set's pixel mean and
std, and every epoch's last partial batch trained on. Wall clock counts from
process start and therefore includes importing torch and loading the data.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_time_to_acc.py

Prints exactly one line on stdout:

    torch_time_to_acc target=0.88 seconds=<wall from process start> epochs=<e> \
        train_seconds=<...>

seconds: from the first line of this script (time.time(), taken before any
import) to the evaluation that reached the target. epochs: epochs run, counting
a partial epoch as a fraction when --eval-every stops it early. train_seconds:
time spent in training steps and evaluations only (no imports, no data
loading). stderr ("# " lines) also gives the time since exec() from
/proc/self/stat, which adds the interpreter's own start-up (10 ms resolution).
Exits 77 with "skipped: ..." when torch, numpy or the data set is absent, and
1 when the target is not reached within --max-epochs.
"""

# Taken before importing anything, torch included, so that `seconds` covers the
# whole process as the C side's wall clock does.
import time
T_START = time.time()

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import torch_train as tt  # noqa: E402  (same directory; numpy/torch are imported lazily)


def seconds_since_exec():
    """Time since the kernel started this process: /proc/uptime minus field 22
    (starttime, clock ticks since boot) of /proc/self/stat; 10 ms resolution."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 overall; fields[0] is field 3
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=0.88)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate every N steps (0: only after each epoch)")
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                    help="cosine: lr (1 + cos(pi t / T)) / 2, T = the steps of --epochs epochs")
    ap.add_argument("--epochs", type=int, default=15, help="the cosine schedule's horizon in epochs")
    ap.add_argument("--weight-decay", type=float, default=0.0,
                    help="L2 lambda on the weights only (never biases)")
    ap.add_argument("--normalize", choices=["none", "standard"], default="none",
                    help="standard: (x / 255 - mean) / std with the training set's pixel mean and std "
                         "(population), as the main job's --normalize standard")
    ap.add_argument("--keep-last-batch", action="store_true",
                    help="train on each epoch's last partial batch too (the main job does)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tune-malloc", action="store_true",
                    help="as in torch_train.py")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="as in torch_train.py")
    ap.add_argument("--pre-convert", action="store_true",
                    help="convert (and standardise) the training and test sets to float32 once, before "
                         "training; counted in seconds (wall clock), not in train_seconds")
    ap.add_argument("--data-dir", default=tt.DEFAULT_DATA_DIR)
    args = ap.parse_args()

    tt.check_env(args.threads)
    if args.tune_malloc:
        tt.tune_malloc()
    torch = tt.import_torch()
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    t_import = time.time()

    x_u8, y = tt.load_split(args.data_dir, "train")
    xt_u8, yt = tt.load_split(args.data_dir, "test")
    n = x_u8.shape[0]
    if args.normalize == "standard":
        # exact, as ag_dataset_pixel_stats: from the byte histogram, in float64
        hist = torch.bincount(x_u8.reshape(-1), minlength=256).double()
        v = torch.arange(256, dtype=torch.float64)
        cnt = hist.sum()
        mb = (hist * v).sum() / cnt
        in_mean = float(mb / 255.0)
        in_std = float(((hist * v * v).sum() / cnt - mb * mb).sqrt() / 255.0)
    else:
        in_mean, in_std = 0.0, 1.0

    def to_input(xb_u8):
        if xb_u8.is_floating_point():  # --pre-convert: done once
            return xb_u8
        x = xb_u8.float().div_(255.0)
        if args.normalize == "standard":
            x.sub_(in_mean).div_(in_std)
        return x
    if args.pre_convert:
        x_u8, xt_u8 = to_input(x_u8), to_input(xt_u8)
    model, layers = tt.build_net(torch, "modern", args.seed)
    F = torch.nn.functional
    weights = [l.weight for l in layers]
    biases = [l.bias for l in layers]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": args.weight_decay},
                           {"params": biases, "weight_decay": 0.0}], lr=args.lr, momentum=args.momentum)

    def step(xb_u8, yb):
        x = to_input(xb_u8)
        loss = F.cross_entropy(model(x), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    gen = torch.Generator().manual_seed(args.seed)
    t_data = time.time()
    tt.note("torch %s, num_threads %d, BLAS: %s" % (torch.__version__, torch.get_num_threads(),
                                                   tt.blas_info()))
    tt.note("import %.2f s, data + net %.2f s" % (t_import - T_START, t_data - t_import))
    if args.normalize == "standard":
        tt.note("inputs standardised: (x / 255 - %.4f) / %.4f" % (in_mean, in_std))

    def test_accuracy():
        correct = 0
        with torch.no_grad():
            for s in range(0, xt_u8.shape[0], 2000):
                logits = model(to_input(xt_u8[s:s + 2000]))
                correct += (logits.argmax(1) == yt[s:s + 2000]).sum().item()
        return correct / xt_u8.shape[0]

    # the last incomplete batch of each epoch is dropped unless --keep-last-batch
    nbatches = (n + args.batch - 1) // args.batch if args.keep_last_batch else n // args.batch
    total_steps = nbatches * args.epochs
    train_seconds = 0.0
    steps = 0
    reached = None
    acc = 0.0
    for epoch in range(args.max_epochs):
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        for i in range(nbatches):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            if args.schedule == "cosine":  # as ag_schedule_lr: t steps taken, T total
                lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(steps, total_steps) / total_steps))
                for g in opt.param_groups:
                    g["lr"] = lr
            step(x_u8.index_select(0, idx), y.index_select(0, idx))
            steps += 1
            if args.eval_every and steps % args.eval_every == 0 and i + 1 < nbatches:
                acc = test_accuracy()
                if acc >= args.target:
                    reached = epoch + (i + 1) / nbatches
                    break
        if reached is None:
            acc = test_accuracy()
            if acc >= args.target:
                reached = epoch + 1
        t1 = time.time()
        train_seconds += t1 - t0
        tt.note("epoch %d: test accuracy %.4f, %.2f s, %.2f s since start"
                % (epoch + 1, acc, t1 - t0, t1 - T_START))
        if reached is not None:
            break

    t_end = time.time()
    if reached is None:
        print("error: test accuracy %.4f < %.2f after %d epochs"
              % (acc, args.target, args.max_epochs), file=sys.stderr)
        return 1
    tt.note("accuracy %.4f after %d steps; %.2f s since exec() (/proc/self/stat)"
            % (acc, steps, seconds_since_exec()))
    epochs = ("%d" % reached) if reached == int(reached) else ("%.3f" % reached)
    print("torch_time_to_acc target=%g seconds=%.2f epochs=%s train_seconds=%.2f"
          % (args.target, t_end - T_START, epochs, train_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
