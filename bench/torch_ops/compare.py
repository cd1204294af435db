"""Torch twins of the compare family's records (tests/ops/records/compare.c) for bench/ops_vs_torch:
OPS[record name](xs, labels) computes the record's first layout with torch's own op (xs: the float32
inputs at that layout's shapes, requires_grad set; masks are inputs made boolean with != 0)."""
import torch


def where(xs, labels):  # mask, a, b: 32 x 2048 each
    return torch.where(xs[0].detach() != 0, xs[1], xs[2])


def masked_fill(xs, labels):  # 32 x 4 x 64 x 64 scores, a 64 x 64 mask, value -3 (the record's)
    return xs[0].masked_fill(xs[1].detach() != 0, -3.0)


def maximum(xs, labels):
    return torch.maximum(xs[0], xs[1])


def minimum(xs, labels):
    return torch.minimum(xs[0], xs[1])


def clamp(xs, labels):
    return torch.clamp(xs[0], -0.5, 0.6)


def max_axis(xs, labels):  # axis -1
    return torch.max(xs[0], dim=-1).values  # the gradient to the index picked, as ag_max_axis


def min_axis(xs, labels):
    return torch.min(xs[0], dim=-1).values


def abs_(xs, labels):
    return torch.abs(xs[0])


def sign(xs, labels):
    return torch.sign(xs[0])


OPS = {"where": where, "masked_fill": masked_fill, "maximum": maximum, "minimum": minimum, "clamp": clamp,
       "max_axis": max_axis, "min_axis": min_axis, "abs": abs_, "sign": sign}
