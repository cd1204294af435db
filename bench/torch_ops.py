"""PyTorch side of the per-op benchmark (issue 22): forward + backward of each op record's twin.

PyTorch is a benchmark-only peer of tapegrad; nothing in the library depends on it. Run it with
Debian's interpreter and a pinned environment (bench/ops_vs_torch does):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
        /usr/bin/python3 bench/torch_ops.py --bench-ops build-perf-vs/bench/bench_ops [--op NAME]

The twins: every bench/torch_ops/<family>.py defines OPS = {"<record name>": fn, ...}; fn(xs, labels)
gets the list of float32 input tensors (the shapes of the record's FIRST layout at its speed shape, as
`bench_ops --list-shapes` prints them, values uniform in the record's domain, requires_grad=True) and
labels (an int64 tensor, one label per row in [0, classes), or None) and returns the op's output computed
with torch's own op(s). A twin may make its own integer or mask side inputs (once, outside fn, or cached).

One iteration, as training runs it: the inputs' .grad set to None, y = fn(xs, labels), then
y.backward(seed) with a fixed N(0, 1) seed of y's shape (bench_ops's ag_backward_seed). Warm-up: at
least 3 iterations and 50 ms; then the iteration count that fills --seconds, from the time of at
least 2 more iterations and 20 ms (as bench_ops --serve); a repeat is the mean time
of that many iterations. Configuration (default, "tuned"): glibc's allocator tuned with mallopt as
torch_train.py --tune-malloc does, denormals flushed (torch.set_flush_denormal(True)), 1 thread
(torch.set_num_threads(1)). --stock keeps glibc's defaults; --no-flush-denormal keeps denormals.

Modes:
  (default)   prints `torch_ops op=<name> shape=<in> us=<median> min=<x> max=<x> repeats=<n> iters=<n>`
              per op with a twin, `torch_ops op=<name> skipped=no_twin` for the others;
  --serve     for bench/ops_vs_torch: reads commands on stdin, one answer line each:
                twins                 -> `twins <name> <name> ...`
                run <name> <seconds>  -> `op=<name> iters=<n> us=<mean us per iteration>` or `error <why>`
              (the protocol of bench_ops --serve);
  --list      the twins found, one per line, and the file each comes from.
The shapes come from `--bench-ops PATH` (runs PATH --list-shapes) or `--shapes FILE` ('-': stdin).
Exits 77 with `skipped: <reason>` when torch is not importable.
"""

import argparse
import glob
import importlib.util
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TWIN_DIR = os.path.join(HERE, "torch_ops")
sys.path.insert(0, HERE)
from torch_train import check_env, import_torch, note, tune_malloc  # noqa: E402  (stdlib-only at import)


def load_twins(only=None):
    """{name: (fn, file)} from bench/torch_ops/*.py."""
    twins = {}
    for path in sorted(glob.glob(os.path.join(TWIN_DIR, "*.py"))):
        base = os.path.splitext(os.path.basename(path))[0]
        if base.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location("tapegrad_torch_ops_" + base, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # one broken family must not take the others down
            note("warning: %s does not load (%s: %s); its twins are skipped" % (path, type(e).__name__, e))
            continue
        ops = getattr(mod, "OPS", None)
        if not isinstance(ops, dict):
            note("warning: %s defines no OPS dict; ignored" % path)
            continue
        for name, fn in ops.items():
            if name in twins:
                note("warning: twin %s defined in %s and %s; the first is used" % (name, twins[name][1], path))
                continue
            twins[name] = (fn, os.path.relpath(path, HERE))
    return twins


def parse_shapes(text):
    """Lines of `bench_ops --list-shapes` -> {name: {"in": [shape tuples], "domain": [(lo, hi)], ...}}."""
    recs = {}
    for line in text.splitlines():
        if not line.startswith("op="):
            continue
        f = {}
        # layout="..." may hold spaces: take it out first
        pre, q, rest = line.partition('layout="')
        label, _, post = rest.partition('"')
        for kv in (pre + post).split():
            if "=" in kv:
                k, v = kv.split("=", 1)
                f[k] = v
        shapes = []
        for s in f["in"].split(","):
            shapes.append(() if s == "scalar" else tuple(int(d) for d in s.split("x")))
        doms = [tuple(float(x) for x in d.split(":")) for d in f["domain"].split(",")]
        labels = None if f.get("labels", "none") == "none" else tuple(int(x) for x in f["labels"].split("x"))
        recs[f["op"]] = {"in": shapes, "domain": doms, "labels": labels, "layout": label, "shape": f["shape"],
                         "in_text": f["in"]}
    return recs


def read_shapes(args):
    if args.shapes:
        text = sys.stdin.read() if args.shapes == "-" else open(args.shapes).read()
    elif args.bench_ops:
        p = subprocess.run([args.bench_ops, "--list-shapes"], stdout=subprocess.PIPE, universal_newlines=True)
        if p.returncode:
            sys.exit("torch_ops: %s --list-shapes failed (%d)" % (args.bench_ops, p.returncode))
        text = p.stdout
    else:
        sys.exit("torch_ops: give --bench-ops PATH or --shapes FILE")
    return parse_shapes(text)


class Case:
    """One op's inputs, seed and timing state."""

    def __init__(self, torch, name, rec, fn, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.torch, self.name, self.fn = torch, name, fn
        self.xs = []
        for shp, (lo, hi) in zip(rec["in"], rec["domain"]):
            x = torch.empty(shp, dtype=torch.float32).uniform_(lo, hi, generator=g)
            self.xs.append(x.requires_grad_())
        self.labels = None
        if rec["labels"]:
            rows, classes = rec["labels"]
            self.labels = torch.randint(0, classes, (rows,), generator=g, dtype=torch.int64)
        y = fn(self.xs, self.labels)
        self.seed = torch.randn(y.shape, generator=g, dtype=y.dtype)
        y.backward(self.seed)
        for x in self.xs:
            if x.grad is None:
                note("warning: %s: input of shape %s got no gradient" % (name, tuple(x.shape)))
        self.iters = None

    def loop(self, n):
        xs, fn, labels, seed = self.xs, self.fn, self.labels, self.seed
        t0 = time.perf_counter()
        for _ in range(n):
            for x in xs:
                x.grad = None
            fn(xs, labels).backward(seed)
        return time.perf_counter() - t0

    def run(self, seconds):
        """Mean us per iteration of one repeat; the first call warms up and picks the count."""
        if self.iters is None:
            n, el = 0, 0.0
            while n < 3 or el < 0.05:
                el += self.loop(1)
                n += 1
            n, el = 0, 0.0  # the count from warm iterations only: at least 2 and 20 ms more
            while n < 2 or el < 0.02:
                el += self.loop(1)
                n += 1
            self.iters = max(1, min(1000000, int(seconds / (el / n))))
        return self.loop(self.iters) * 1e6 / self.iters


def setup_torch(args):
    torch = import_torch()
    check_env(args.threads)
    tuned = False
    if not args.stock:
        tuned = tune_malloc()
        if not tuned:
            note("warning: mallopt failed; torch runs with glibc's defaults")
    torch.set_num_threads(args.threads)
    if not args.no_flush_denormal and not torch.set_flush_denormal(True):
        note("warning: set_flush_denormal is not supported on this CPU")
    note("torch %s, %d thread(s), malloc %s, denormals %s" % (
        torch.__version__, torch.get_num_threads(), "tuned (mallopt)" if tuned else "stock",
        "kept" if args.no_flush_denormal else "flushed"))
    return torch


def serve(torch, recs, twins):
    cases = {}
    cur = None
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "twins":
            print("twins " + " ".join(n for n in twins if n in recs), flush=True)
            continue
        if w[0] != "run" or len(w) != 3:
            print("error bad command (want: twins | run <name> <seconds>)", flush=True)
            continue
        name = w[1]
        try:
            secs = float(w[2])
            if name not in twins:
                raise KeyError("no torch twin for %s" % name)
            if name not in recs:
                raise KeyError("no op record named %s" % name)
            if cur != name:  # one op's tensors alive at a time, as bench_ops --serve
                cases.clear()
                cases[name] = Case(torch, name, recs[name], twins[name][0])
                cur = name
            c = cases[name]
            us = c.run(secs)
            print("op=%s iters=%d us=%.4f" % (name, c.iters, us), flush=True)
        except Exception as e:  # a broken twin must not stop the others
            msg = str(e).replace("\n", " ")[:300]
            print("error %s: %s: %s" % (name, type(e).__name__, msg), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-ops", help="bench_ops binary (its --list-shapes gives the shapes)")
    ap.add_argument("--shapes", help="a saved `bench_ops --list-shapes` output ('-': stdin)")
    ap.add_argument("--op", action="append", help="only this op (repeatable)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.1, help="time per repeat (default 0.1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stock", action="store_true", help="glibc malloc defaults (no mallopt)")
    ap.add_argument("--no-flush-denormal", action="store_true")
    ap.add_argument("--serve", action="store_true", help="commands on stdin (bench/ops_vs_torch)")
    ap.add_argument("--list", action="store_true", help="list the twins and exit")
    args = ap.parse_args()
    if args.list:
        for name, (_, path) in load_twins().items():
            print("%s %s" % (name, path))
        return 0
    if args.serve and args.shapes == "-":
        ap.error("--serve reads commands on stdin: give the shapes with --bench-ops or a file")
    torch = setup_torch(args)
    twins = load_twins()
    recs = read_shapes(args)
    if args.serve:
        serve(torch, recs, twins)
        return 0
    names = [n for n in recs if not args.op or n in args.op]
    for name in names:
        if name not in twins:
            print("torch_ops op=%s skipped=no_twin" % name, flush=True)
            continue
        c = Case(torch, name, recs[name], twins[name][0])
        ts = [c.run(args.seconds) for _ in range(args.repeats)]
        print("torch_ops op=%s shape=%s us=%.3f min=%.3f max=%.3f repeats=%d iters=%d" % (
            name, recs[name]["in_text"], statistics.median(ts), min(ts), max(ts), len(ts), c.iters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
