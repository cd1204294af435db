"""Torch twins of the first wave's op records (tests/ops/op_records.c, op_records_first_wave).

Each fn(xs, labels) gets the inputs of the record's FIRST layout at its speed shape (see
bench/torch_ops.py) and computes the op with torch's own op(s), with that layout's parameters:
scale 1.7 and add_scalar -0.3 (SCALE_LAYOUT, SHIFT_LAYOUT), pow p = 2.5 (POW_LAYOUTS[0]), matmul_ex
a b^T ("nt RxK CxK"), linear_act relu with a bias ("relu b"), sum_axis and mean_axis over axis 0,
softmax/log_softmax over the last axis, reshape to one dimension ("RxC to R*C"), l2 lambda 0.01 (L2_H).
"""
import torch
import torch.nn.functional as F

SCALE, SHIFT, POW_P, L2_LAMBDA = 1.7, -0.3, 2.5, 0.01


def _l2(xs, labels):  # lambda/2 * sum_i sum w_i^2
    return (0.5 * L2_LAMBDA) * sum(w.pow(2).sum() for w in xs)


OPS = {
    "add": lambda xs, labels: xs[0] + xs[1],
    "sub": lambda xs, labels: xs[0] - xs[1],
    "mul": lambda xs, labels: xs[0] * xs[1],
    "div": lambda xs, labels: xs[0] / xs[1],
    "neg": lambda xs, labels: -xs[0],
    "scale": lambda xs, labels: xs[0] * SCALE,
    "add_scalar": lambda xs, labels: xs[0] + SHIFT,
    "exp": lambda xs, labels: torch.exp(xs[0]),
    "log": lambda xs, labels: torch.log(xs[0]),
    "square": lambda xs, labels: torch.square(xs[0]),
    "pow": lambda xs, labels: torch.pow(xs[0], POW_P),
    "sqrt": lambda xs, labels: torch.sqrt(xs[0]),
    "sigmoid": lambda xs, labels: torch.sigmoid(xs[0]),
    "tanh": lambda xs, labels: torch.tanh(xs[0]),
    "relu": lambda xs, labels: torch.relu(xs[0]),
    "matmul": lambda xs, labels: xs[0] @ xs[1],
    "matmul_ex": lambda xs, labels: xs[0] @ xs[1].t(),
    "linear": lambda xs, labels: F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None),
    "linear_act": lambda xs, labels: torch.relu(F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None)),
    "sum": lambda xs, labels: xs[0].sum(),
    "mean": lambda xs, labels: xs[0].mean(),
    "sum_axis": lambda xs, labels: xs[0].sum(0),
    "mean_axis": lambda xs, labels: xs[0].mean(0),
    "softmax": lambda xs, labels: torch.softmax(xs[0], -1),
    "log_softmax": lambda xs, labels: torch.log_softmax(xs[0], -1),
    "reshape": lambda xs, labels: xs[0].reshape(-1),
    "transpose": lambda xs, labels: xs[0].t(),
    "squared_error": lambda xs, labels: 0.5 * (xs[0] - xs[1]).pow(2).sum(1).mean(),
    "l2": _l2,
    "cross_entropy": lambda xs, labels: F.cross_entropy(xs[0], labels),
}
