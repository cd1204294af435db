"""Torch twins of the records of family bmm (tests/ops/records/bmm.c), for the speed comparison
(bench/ops_vs_torch): each takes the float32 inputs at the record's first layout (requires_grad set)
and the labels (None), and returns the output of torch's own op with the record's parameters."""
import torch


def bmm(xs, labels):
    # layout "Rx4xCxC Rx4xCxC": 32x4x64x64 @ 32x4x64x64 (128 products of 64^3), no transposes
    return torch.matmul(xs[0], xs[1])


def add_bias(xs, labels):
    # layout "RxCxKxK,Cx1x1": 32x32x28x28 + a per-channel bias of shape [32, 1, 1]
    return xs[0] + xs[1]


OPS = {"bmm": bmm, "add_bias": add_bias}
