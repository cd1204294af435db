#!/usr/bin/python3
"""PyTorch twin of bench/bench_tape: autograd overhead per recorded op.

A chain of N (default 100,000) links x = tanh(x*a + b) on 1-element float32
tensors; a and b require grad, x starts as a leaf that requires grad. One
repeat = build the chain (forward) + x.backward(); time per recorded op =
(forward + backward) / (3 * N), 3 ops per link (mul, add, tanh). Median of
--repeats (default 7, at least 5) after one untimed warm-up repeat.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_tape.py

Prints exactly one line on stdout:

    torch_tape ops=<n> ns_per_op=<median> min=<x> max=<x>

stderr ("# " lines) has the forward/backward split and the memory the graph
holds per recorded op (RSS growth across the first, untimed forward: a rough
figure that includes the saved tensors and the allocator's slack).

torch's autograd engine walks the graph iteratively in C++, so a 100,000-link
chain hits no Python recursion limit, and torch >= 1.x frees long graphs
without deep destructor recursion; the script checks the gradients anyway.
Exits 77 with "skipped: ..." when torch is absent.
"""

import argparse
import gc
import math
import os
import sys
import time

SKIP = 77


def note(msg):
    print("# " + msg, file=sys.stderr)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print("warning: %s=%s is set; the reference environment unsets it"
                  % (var, os.environ[var]), file=sys.stderr)
    try:
        import torch
    except ImportError as e:
        print("skipped: torch not importable by %s (%s); on Debian: apt-get install "
              "python3-torch" % (sys.executable, e))
        return SKIP
    torch.set_num_threads(args.threads)

    n = args.links
    ops = 3 * n
    a0, b0, x00 = 0.9, 0.05, 0.3

    def one():
        a = torch.tensor([a0], requires_grad=True)
        b = torch.tensor([b0], requires_grad=True)
        x0 = torch.tensor([x00], requires_grad=True)
        gc.collect()
        r0 = rss_bytes()
        t0 = time.perf_counter()
        x = x0
        for _ in range(n):
            x = torch.tanh(x * a + b)
        t1 = time.perf_counter()
        r1 = rss_bytes()
        x.backward()
        t2 = time.perf_counter()
        val = x.item()
        grads = (a.grad.item(), b.grad.item(), x0.grad.item())
        del x  # free the graph outside the timed region
        return t1 - t0, t2 - t1, r1 - r0, val, grads

    first_mem = one()[2]  # warm-up; its RSS growth is the graph's (later runs reuse freed memory)
    fwd, bwd, tot = [], [], []
    for _ in range(args.repeats):
        f, bk, _, val, grads = one()
        fwd.append(f)
        bwd.append(bk)
        tot.append(f + bk)

    # Check against a float64 reference of the same chain.
    x, dxa, dxb, dx0 = x00, 0.0, 0.0, 1.0
    for _ in range(n):
        y = math.tanh(x * a0 + b0)
        d = 1.0 - y * y
        dxa, dxb, dx0 = d * (x + a0 * dxa), d * (1.0 + a0 * dxb), d * a0 * dx0
        x = y
    ok = abs(val - x) < 1e-4 and abs(grads[0] - dxa) < 1e-2 * max(1.0, abs(dxa)) \
        and abs(grads[1] - dxb) < 1e-2 * max(1.0, abs(dxb))
    note("torch %s, %d links, %d recorded ops, %d repeats" % (torch.__version__, n, ops,
                                                           args.repeats))
    note("forward %.1f ns/op, backward %.1f ns/op (medians)"
         % (1e9 * median(fwd) / ops, 1e9 * median(bwd) / ops))
    note("graph memory ~%.0f bytes per recorded op (RSS growth over the first forward)"
         % (first_mem / ops))
    note("x=%.6f ref %.6f; da=%.6g ref %.6g; db=%.6g ref %.6g; dx0=%.3g ref %.3g: %s"
         % (val, x, grads[0], dxa, grads[1], dxb, grads[2], dx0, "ok" if ok else "MISMATCH"))
    if not ok:
        print("error: torch chain disagrees with the float64 reference", file=sys.stderr)
        return 1
    print("torch_tape ops=%d ns_per_op=%.1f min=%.1f max=%.1f"
          % (ops, 1e9 * median(tot) / ops, 1e9 * min(tot) / ops, 1e9 * max(tot) / ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
