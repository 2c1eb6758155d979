"""Global-batch losses under `torch.distributed`: every rank mines the whole global batch.

A rank that mined only its own slice would see fewer positives and negatives than one process
on the same global batch. Instead each rank all-gathers the embeddings, labels (and logits)
of every rank in rank order, the same order everywhere, and computes the loss on the
concatenation; its own slice is the local tensor itself, so it keeps its autograd graph, the
other slices carry no gradient. The loss is multiplied by the world size W: rank r's
backward then yields W * g_r, where g_r is the gradient of the global loss through rank r's
images, and DDP's averaging gives (1 / W) * sum_r W * g_r = sum_r g_r, exactly the gradient
of one process on the concatenated batch (pytorch-metric-learning's `DistributedLossWrapper`
had the scaling wrong, its issue #363, and gathered in a different order on each rank, #639).
Exactly, that is, for networks whose forward pass of one image does not depend on the others:
BatchNorm's batch statistics are per rank unless converted to `SyncBatchNorm`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside `torch.distributed`."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_rows(local: Tensor) -> list[int]:
    """N_r of every rank, in rank order, for this rank's (N_r, ...) `local` (one all-gather)."""
    counts = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(world()[1])]
    dist.all_gather(counts, torch.tensor([len(local)], device=local.device))
    return [int(c.item()) for c in counts]


def all_gather_rows(local: Tensor, rows: list[int] | None = None) -> Tensor:
    """Every rank's (N_r, ...) rows concatenated in rank order: (sum N_r, ...).

    Ranks may hold different numbers of rows (the last batch of an epoch); `rows` are those
    numbers when known (`rank_rows`), else they are gathered first. This rank's rows are
    `local` itself (its gradient flows); the others are detached copies.
    """
    rank, size = world()
    if size == 1:
        return local
    rows = rank_rows(local) if rows is None else rows
    padded = local.detach().contiguous()
    if len(local) < max(rows):
        filler = local.new_zeros((max(rows) - len(local), *local.shape[1:]))
        padded = torch.cat([padded, filler])
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    parts = [part[:n] for part, n in zip(parts, rows, strict=True)]
    parts[rank] = local
    return torch.cat(parts)


class GlobalBatchLoss(nn.Module):
    """Wraps an in-batch loss `loss(*tensors) -> scalar` (embeddings and labels; or embeddings,
    logits and labels; or explicit triplets (B, 3D)) so that under `torch.distributed` it is
    computed on the rows of every rank, times the world size (see the module's docstring).
    Outside `torch.distributed` it is the loss itself.

    `unscaled(value)` turns the returned value back into the global batch's loss, for logs.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, *tensors: Tensor) -> Tensor:
        """This rank's rows of each input (N_r, ...) -> the loss of all ranks' rows, times
        the world size (a scalar)."""
        _, size = world()
        if size == 1:
            return self.loss(*tensors)
        rows = rank_rows(tensors[0])  # the inputs are rows of the same images: gathered once
        return self.loss(*(all_gather_rows(t, rows) for t in tensors)) * size

    @staticmethod
    def unscaled(value: float) -> float:
        """The global batch's loss from what `forward` returned."""
        return value / world()[1]
