"""Torch twins of the normalisation and dropout records (tests/ops/records/norm.c, op_records_norm).

Each fn(xs, labels) gets the inputs of the record's FIRST layout at its speed shape and computes the
op with torch's own op, with that layout's parameters: layer_norm over the last axis with gamma and
beta ("RxC gamma beta", 32 x 512), rms_norm over the last axis with gamma ("RxC gamma"; F.rms_norm
where this torch has it, else the formula), batch_norm in training mode with gamma, beta and running
statistics, momentum 0.1 ("NxCxL train gamma beta running", 32 x 64 x 256), dropout p = 0.1 in
training mode ("RxC p=0.1", 32 x 2048). eps 1e-5 throughout.

    python3 bench/torch_ops/norm.py     # times each twin here, forward + backward, 1 thread
"""
import torch
import torch.nn.functional as F

EPS, MOMENTUM, P_DROP = 1e-5, 0.1, 0.1


def _rms_norm(xs, labels):
    x, g = xs[0], xs[1]
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), g, EPS)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * g


def _batch_norm(xs, labels):  # running statistics are buffers: no gradient, updated in place
    x, g, b, rm, rv = xs
    return F.batch_norm(x, rm.detach(), rv.detach(), g, b, training=True, momentum=MOMENTUM, eps=EPS)


OPS = {
    "layer_norm": lambda xs, labels: F.layer_norm(xs[0], (xs[0].shape[-1],), xs[1], xs[2], EPS),
    "rms_norm": _rms_norm,
    "batch_norm": _batch_norm,
    "dropout": lambda xs, labels: F.dropout(xs[0], p=P_DROP, training=True),
}

# the first layouts' shapes (records' speed_r x speed_c x speed_k)
SHAPES = {
    "layer_norm": [(32, 512), (512,), (512,)],
    "rms_norm": [(32, 512), (512,)],
    "batch_norm": [(32, 64, 256), (64,), (64,), (64,), (64,)],
    "dropout": [(32, 2048)],
}

if __name__ == "__main__":
    import time

    torch.set_num_threads(1)
    for name, fn in OPS.items():
        xs = [(torch.rand(s) * 2 - 1).requires_grad_(True) for s in SHAPES[name]]
        seed = torch.randn(SHAPES[name][0])
        best = []
        for rep in range(7):
            n = 200
            t0 = time.perf_counter()
            for _ in range(n):
                for x in xs:
                    x.grad = None
                fn(xs, None).backward(seed)
            best.append((time.perf_counter() - t0) / n * 1e3)
        best.sort()
        print(f"torch op={name} total_ms={best[len(best) // 2]:.4f} min={best[0]:.4f}")
