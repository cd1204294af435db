"""PyTorch twins of the views family (tests/ops/records/views.c), for bench/ops_vs_torch.

OPS maps a record name to fn(xs, labels): xs are the float32 inputs at the record's first layout
(requires_grad set), labels unused. Each twin returns the same result with the same parameters.

Where torch's op is a strided view (permute, transpose, expand, narrow) but tapegrad's result is a
dense copy, the twin ends in .contiguous(), so both sides do the same work (a dense result, and its
gradient sent back). tapegrad's zero-copy views (squeeze, unsqueeze, flatten, the leading-axis
slice) are views in torch too. split and chunk: the record joins the pieces back in reverse order
(torch.cat), and so does the twin.
"""
import torch
import torch.nn.functional as F


def _third(x, dim):
    n = x.shape[dim] // 3
    return n


OPS = {
    "squeeze": lambda xs, labels: xs[0].squeeze(1),                      # R x 1 x C
    "unsqueeze": lambda xs, labels: xs[0].unsqueeze(1),                  # R x C
    "flatten": lambda xs, labels: xs[0].flatten(1, -1),                  # R x C x K
    "permute": lambda xs, labels: xs[0].permute(0, 2, 1, 3).contiguous(),  # B x T x H x D
    "transpose_axes": lambda xs, labels: xs[0].transpose(1, 2).contiguous(),
    "broadcast_to": lambda xs, labels: xs[0].expand(xs[0].shape[0], 8, xs[0].shape[2]).contiguous(),
    "slice": lambda xs, labels: xs[0].narrow(-1, _third(xs[0], -1), _third(xs[0], -1)).contiguous(),
    "split": lambda xs, labels: torch.cat(list(reversed(torch.split(xs[0], xs[0].shape[-1] // 4, -1))), -1),
    "chunk": lambda xs, labels: torch.cat(list(reversed(torch.chunk(xs[0], 4, 1))), 1),
    "concat": lambda xs, labels: torch.cat(xs, 1),
    "stack": lambda xs, labels: torch.stack(xs, 1),
    "pad": lambda xs, labels: F.pad(xs[0], (1, 1, 1, 1), value=0.0),
}
