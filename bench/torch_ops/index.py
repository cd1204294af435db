"""Torch twins of the index family's records (tests/ops/records/index.c) for bench/ops_vs_torch:
OPS[record name](xs, labels) computes the record's first layout with torch's own op. xs are the
float32 inputs at that layout's shapes (requires_grad set); labels is the int64 index tensor the
harness drew (or None), replaced here by indices of the right count and range when absent."""
import torch


def _idx(labels, count, high):
    if labels is not None and labels.numel() == count:
        return labels.long()
    return torch.randint(0, high, (count,))


def gather_rows(xs, labels):  # embedding lookup: 2048 rows of a 10000 x 128 table
    table = xs[0]
    return torch.nn.functional.embedding(_idx(labels, 2048, table.shape[0]), table)


def index_select(xs, labels):  # axis -1, 512 entries
    x = xs[0]
    return torch.index_select(x, -1, _idx(labels, 512, x.shape[-1]))


def take_along(xs, labels):  # axis -1, k 16
    x = xs[0]
    idx = _idx(labels, x.shape[0] * 16, x.shape[-1]).view(x.shape[0], 16)
    return torch.take_along_dim(x, idx, dim=-1)


def one_hot(xs, labels):  # 2048 of 1000 classes, no gradient
    return torch.nn.functional.one_hot(_idx(labels, 2048, 1000), 1000).float()


OPS = {"gather_rows": gather_rows, "index_select": index_select, "take_along": take_along, "one_hot": one_hot}
