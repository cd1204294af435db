#!/usr/bin/python3
"""PyTorch twin of bench/bench_train: steady-state training throughput.

PyTorch is a benchmark-only peer of tapegrad (issue 6); nothing in the library
depends on it. Run it with Debian's interpreter and a pinned environment:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_train.py --net seed --batch 32

Prints exactly one line on stdout:

    torch_train net=<n> batch=<B> threads=<N> samples_per_second=<median> \
        min=<x> max=<x> windows=<n> peak_rss_mb=<x>

Diagnostics (BLAS core, losses, window details) go to stderr, prefixed "# ".
Exits 77 with "skipped: ..." when torch, numpy or the data set is absent.

The two nets are defined to match the C side exactly:
  seed   784-256-10, sigmoid hidden and output, loss = mean over the batch of
         1/2 ||h - y||^2 (y one-hot, NOT divided by the 10 outputs) plus
         lambda/2 * sum(W^2) over the weights only (biases not decayed),
         plain SGD lr 0.5, lambda 1e-4; init N(0, 0.01^2), zero biases.
  modern 784-512-256-10, ReLU hidden, linear output, cross-entropy,
         SGD momentum 0.9 lr 0.05; He (kaiming-normal, fan_in) init, zero biases.
Weights use nn.Linear's (out x in) layout, which is also the C side's.
The seed net's L2 term is applied by default as SGD weight_decay on the weights
(exactly the same gradient, lambda * W, and the form a torch user would write;
it is ~1.3x faster than building the term in the graph); --l2 loss builds it
in the autograd graph instead, as the C side does.

This module also serves bench/torch_time_to_acc.py (data loading, nets).
"""

import argparse
import gzip
import math
import os
import resource
import struct
import sys
import time

SKIP = 77
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_MAGIC = 0x00000803  # IDX: unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # IDX: unsigned byte, 1 dimension


def skip(msg):
    print("skipped: " + msg)
    sys.stdout.flush()
    sys.exit(SKIP)


def note(msg):
    print("# " + msg, file=sys.stderr)


def import_torch():
    """Import numpy and torch, or exit 77 with a clear message."""
    try:
        import numpy  # noqa: F401
    except ImportError as e:
        skip("numpy not importable by %s (%s)" % (sys.executable, e))
    try:
        import torch
    except ImportError as e:
        skip("torch not importable by %s (%s); on Debian: apt-get install python3-torch"
             % (sys.executable, e))
    return torch


def check_env(threads):
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print("warning: %s=%s is set; the reference environment unsets it "
                  "(env -u %s)" % (var, os.environ[var], var), file=sys.stderr)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var)
        if val != str(threads):
            print("warning: %s=%s but --threads %d; the reference environment sets %s=%d"
                  % (var, val, threads, var, threads), file=sys.stderr)


def tune_malloc():
    """Stop glibc from returning freed tensor memory to the kernel.

    torch frees and re-allocates the same few hundred-KB buffers every step;
    with glibc's defaults these go through mmap/munmap or heap trimming, and the
    page faults that follow cost up to a third of a small-batch step. This is
    what MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ in the environment would
    do; jemalloc/tcmalloc users get a similar effect. Off by default (stock torch).
    """
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = libc.mallopt(M_MMAP_THRESHOLD, 64 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
    return bool(ok)


def blas_info():
    """Name the OpenBLAS core torch runs on, if torch links OpenBLAS."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return "%s core=%s threads=%d" % (lib.openblas_get_config().decode(),
                                          lib.openblas_get_corename().decode(),
                                          lib.openblas_get_num_threads())
    except (OSError, AttributeError) as e:
        return "unknown (%s)" % e


# ---------------------------------------------------------------- data ----

def _read_idx(path, magic, ndim):
    """Read a gzipped IDX file into a flat uint8 numpy array (no extra copy)."""
    import numpy as np
    with gzip.open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
        if len(head) != 4 + 4 * ndim:
            raise ValueError("%s: truncated header" % path)
        got = struct.unpack(">I", head[:4])[0]
        if got != magic:
            raise ValueError("%s: bad IDX magic 0x%08x, expected 0x%08x" % (path, got, magic))
        dims = struct.unpack(">%dI" % ndim, head[4:])
        n = 1
        for d in dims:
            n *= d
        out = np.empty(n, dtype=np.uint8)
        view = memoryview(out)
        filled = 0
        while filled < n:
            k = f.readinto(view[filled:])
            if not k:
                raise ValueError("%s: truncated data (%d of %d bytes)" % (path, filled, n))
            filled += k
        if f.read(1):
            raise ValueError("%s: trailing bytes after %d items" % (path, n))
    return out, dims


def load_split(data_dir, split):
    """Return (images uint8 tensor [n, 784], labels int64 tensor [n])."""
    import torch
    prefix = "train" if split == "train" else "t10k"
    ipath = os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % prefix)
    lpath = os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % prefix)
    for p in (ipath, lpath):
        if not os.path.exists(p):
            skip("Fashion-MNIST file %s not found (Debian: apt-get install "
                 "dataset-fashion-mnist, or pass --data-dir)" % p)
    images, idims = _read_idx(ipath, IMAGE_MAGIC, 3)
    labels, ldims = _read_idx(lpath, LABEL_MAGIC, 1)
    if idims[0] != ldims[0] or idims[1:] != (28, 28):
        raise ValueError("%s: shape %s does not match labels %s" % (split, idims, ldims))
    if labels.max() > 9:
        raise ValueError("%s: label out of range" % split)
    x = torch.from_numpy(images).view(idims[0], 28 * 28)
    y = torch.from_numpy(labels).long()
    return x, y


# ---------------------------------------------------------------- nets ----

def build_net(torch, net, seed):
    """Return (model, layers) with the C side's init, drawn from a seeded generator."""
    nn = torch.nn
    g = torch.Generator().manual_seed(seed)
    if net == "seed":
        layers = [nn.Linear(784, 256), nn.Linear(256, 10)]
        model = nn.Sequential(layers[0], nn.Sigmoid(), layers[1], nn.Sigmoid())
        stds = [0.01, 0.01]
    elif net == "modern":
        layers = [nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 10)]
        model = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
        stds = [math.sqrt(2.0 / l.in_features) for l in layers]  # He / kaiming-normal, fan_in
    else:
        raise ValueError("unknown net %r" % net)
    with torch.no_grad():
        for layer, std in zip(layers, stds):
            layer.weight.normal_(0.0, std, generator=g)
            layer.bias.zero_()
    return model, layers


def make_step(torch, net, model, layers, lr, lam, momentum, l2_mode):
    """Return (optimizer, step(xb_u8, yb) -> loss tensor).

    step converts the uint8 batch to float32 in [0,1] itself, because the C
    side converts bytes to floats per batch inside its timed loop too; a float
    batch (--pre-convert: the data set converted once) is used as it is.
    """
    F = torch.nn.functional
    weights = [l.weight for l in layers]
    biases = [l.bias for l in layers]
    if net == "seed":
        if l2_mode == "optimizer":
            # Same gradient as the loss term, applied by SGD's weight_decay.
            opt = torch.optim.SGD([{"params": weights, "weight_decay": lam},
                                   {"params": biases, "weight_decay": 0.0}],
                                  lr=lr, momentum=momentum)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        eye = torch.eye(10)

        def step(xb_u8, yb):
            x = xb_u8 if xb_u8.is_floating_point() else xb_u8.float().div_(255.0)  # --pre-convert: float
            h = model(x)
            loss = 0.5 * (h - eye[yb]).pow(2).sum(1).mean()
            if l2_mode == "loss" and lam != 0.0:
                loss = loss + (0.5 * lam) * sum(w.pow(2).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

        def step(xb_u8, yb):
            x = xb_u8 if xb_u8.is_floating_point() else xb_u8.float().div_(255.0)  # --pre-convert: float
            loss = F.cross_entropy(model(x), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
    return opt, step


NET_DEFAULTS = {"seed": {"lr": 0.5, "momentum": 0.0},
                "modern": {"lr": 0.05, "momentum": 0.9}}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


# ---------------------------------------------------------------- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=("seed", "modern"), default="seed")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup-steps", type=int, default=20,
                    help="at least this many warm-up steps (default 20)")
    ap.add_argument("--warmup-seconds", type=float, default=0.5,
                    help="and at least this long (default 0.5)")
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--window-seconds", type=float, default=1.0,
                    help="target window length; the step count per window is "
                         "fixed from the warm-up rate so every window does the same work")
    ap.add_argument("--lr", type=float, default=None,
                    help="default 0.5 (seed) / 0.05 (modern)")
    ap.add_argument("--lambda", dest="lam", type=float, default=1e-4,
                    help="L2 on weights, seed net only (default 1e-4)")
    ap.add_argument("--momentum", type=float, default=None,
                    help="default 0 (seed) / 0.9 (modern)")
    ap.add_argument("--l2", choices=("loss", "optimizer"), default="optimizer",
                    help="seed net: L2 as SGD weight_decay on the weights (default: the "
                         "idiomatic and faster torch form) or as an autograd loss term "
                         "(literal twin of the C graph); the gradient is the same")
    ap.add_argument("--tune-malloc", action="store_true",
                    help="mallopt() so glibc keeps freed memory (see tune_malloc)")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True) (FTZ/DAZ); see README")
    ap.add_argument("--pre-convert", action="store_true",
                    help="convert the whole training set to float32 x/255 once, before the timed "
                         "loop (a tuned torch user's choice; the default converts each batch, as the C side)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = ap.parse_args()
    if args.batch < 1 or args.windows < 1 or args.threads < 1:
        ap.error("--batch, --windows and --threads must be >= 1")

    check_env(args.threads)
    if args.tune_malloc and not tune_malloc():
        print("warning: mallopt failed", file=sys.stderr)
    torch = import_torch()
    torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        print("warning: set_flush_denormal is not supported on this CPU", file=sys.stderr)
    torch.manual_seed(args.seed)
    lr = args.lr if args.lr is not None else NET_DEFAULTS[args.net]["lr"]
    momentum = args.momentum if args.momentum is not None else NET_DEFAULTS[args.net]["momentum"]

    x_u8, y = load_split(args.data_dir, "train")
    if args.pre_convert:  # once, untimed: 188 MB of float32 instead of 47 MB of bytes
        x_u8 = x_u8.float().div_(255.0)
    n = x_u8.shape[0]
    if args.batch > n:
        ap.error("--batch larger than the training set")
    # One fixed shuffle, reused every epoch, so no reshuffle lands inside a window.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    nbatches = n // args.batch  # the last incomplete batch is dropped
    idx = [perm[i * args.batch:(i + 1) * args.batch] for i in range(nbatches)]

    model, layers = build_net(torch, args.net, args.seed)
    _, step = make_step(torch, args.net, model, layers, lr, args.lam, momentum, args.l2)
    note("torch %s, num_threads %d, BLAS: %s" % (torch.__version__, torch.get_num_threads(),
                                                blas_info()))
    note("net %s lr %g momentum %g%s tune_malloc %s flush_denormal %s pre_convert %s" % (
        args.net, lr, momentum,
        " lambda %g (l2 as %s)" % (args.lam, args.l2) if args.net == "seed" else "",
        args.tune_malloc, args.flush_denormal, args.pre_convert))

    cursor = [0]

    def run(steps):
        # Timed work: gather the uint8 batch by index, convert to float in
        # step(), forward, loss, backward, SGD update -- as the C side does
        # (--pre-convert: gather float rows, no conversion).
        c = cursor[0]
        loss = None
        for _ in range(steps):
            i = idx[c]
            loss = step(x_u8.index_select(0, i), y.index_select(0, i))
            c += 1
            if c == nbatches:
                c = 0
        cursor[0] = c
        return loss

    first_loss = run(1).item()
    t0 = time.perf_counter()
    done = 1
    t_half = None
    half_steps = 0
    while done < args.warmup_steps or time.perf_counter() - t0 < args.warmup_seconds:
        run(1)
        done += 1
        if t_half is None and time.perf_counter() - t0 >= 0.5 * args.warmup_seconds \
                and done >= args.warmup_steps // 2:
            t_half, half_steps = time.perf_counter(), done
    t1 = time.perf_counter()
    if t_half is not None and done > half_steps:
        rate = (done - half_steps) / (t1 - t_half)  # steps/s over the warm-up's second half
    else:
        rate = done / (t1 - t0)
    steps_per_window = max(1, int(round(args.window_seconds * rate)))
    note("warm-up %d steps in %.3f s; %d steps per window" % (done, t1 - t0, steps_per_window))

    results = []
    for w in range(args.windows):
        ts = time.perf_counter()
        loss = run(steps_per_window)
        loss_value = loss.item()  # synchronous on CPU anyway; keeps the loss honest
        te = time.perf_counter()
        results.append(steps_per_window * args.batch / (te - ts))
        note("window %d: %.1f samples/s, loss %.4f" % (w, results[-1], loss_value))
    note("loss first step %.4f, last window %.4f" % (first_loss, loss_value))

    print("torch_train net=%s batch=%d threads=%d samples_per_second=%.1f min=%.1f max=%.1f "
          "windows=%d peak_rss_mb=%.1f data=%s" % (args.net, args.batch, args.threads, median(results),
                                                   min(results), max(results), len(results),
                                                   peak_rss_mb(), "float" if args.pre_convert else "uint8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
