"""Torch twins of the element-wise functions (tests/ops/records/functions.c, op_records_functions).

Each fn(xs, labels) gets the input of the record's FIRST layout at its speed shape (32 x 2048; see
bench/torch_ops.py) and computes the function with torch's own op, with that layout's parameter:
leaky_relu slope 0.01 (LEAKY_LAYOUT), elu alpha 1 (ELU_LAYOUT); gelu is torch's approximate='tanh',
gelu_erf its default (exact) gelu.
"""
import torch
import torch.nn.functional as F

OPS = {
    "softplus": lambda xs, labels: F.softplus(xs[0]),
    "log_sigmoid": lambda xs, labels: F.logsigmoid(xs[0]),
    "log1p": lambda xs, labels: torch.log1p(xs[0]),
    "expm1": lambda xs, labels: torch.expm1(xs[0]),
    "gelu": lambda xs, labels: F.gelu(xs[0], approximate="tanh"),
    "gelu_erf": lambda xs, labels: F.gelu(xs[0]),
    "silu": lambda xs, labels: F.silu(xs[0]),
    "leaky_relu": lambda xs, labels: F.leaky_relu(xs[0], 0.01),
    "elu": lambda xs, labels: F.elu(xs[0], 1.0),
    "sin": lambda xs, labels: torch.sin(xs[0]),
    "cos": lambda xs, labels: torch.cos(xs[0]),
    "reciprocal": lambda xs, labels: torch.reciprocal(xs[0]),
    "rsqrt": lambda xs, labels: torch.rsqrt(xs[0]),
}
