"""Torch twins of the losses (tests/ops/records/losses.c, op_records_losses), reduction='mean'.

Each fn(xs, labels) gets the inputs of the record's FIRST layout at its speed shape (see
bench/torch_ops.py): bce_with_logits, l1_loss, huber_loss on 32 x 2048 pairs (huber delta 1,
HUBER_LAYOUT); cross_entropy_ex on 4 x 64 x 1024 logits with no options ("4xRxC", CEX_PLAIN): the
classes are the last axis, so torch sees the logits as rows x V, one label per row.
"""
import torch
import torch.nn.functional as F

_labels = {}


def _rows_labels(x, labels):
    """One int64 label per row of x (every axis but the last): the harness's, else made once."""
    rows, classes = x.numel() // x.shape[-1], x.shape[-1]
    if labels is not None and labels.numel() == rows:
        return labels.reshape(-1)
    if rows not in _labels:
        g = torch.Generator().manual_seed(1)
        _labels[rows] = torch.randint(0, classes, (rows,), generator=g)
    return _labels[rows]


def _cross_entropy_ex(xs, labels):
    x = xs[0]
    return F.cross_entropy(x.reshape(-1, x.shape[-1]), _rows_labels(x, labels))


OPS = {
    "bce_with_logits": lambda xs, labels: F.binary_cross_entropy_with_logits(xs[0], xs[1]),
    "cross_entropy_ex": _cross_entropy_ex,
    "l1_loss": lambda xs, labels: F.l1_loss(xs[0], xs[1]),
    "huber_loss": lambda xs, labels: F.huber_loss(xs[0], xs[1], delta=1.0),
}
