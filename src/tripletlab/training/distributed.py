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
That holds for networks whose forward pass of one image does not depend on the others; the
BatchNorm layers of a distributed run are converted to `GlobalBatchNorm`
(`tripletlab.training.global_layers`), whose batch
statistics are those of the global batch (PyTorch's `SyncBatchNorm` refuses CPU tensors).
Random draws per row (augmentation, dropout) are made equal to the global batch's by
`tripletlab.models.batch_part`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from tripletlab.data.sharding import part_sizes


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside `torch.distributed`."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes (the run folder, logs, progress): rank 0, or no job."""
    return world()[0] == 0


def launched_world_size() -> int:
    """The number of processes torchrun started for this job (`WORLD_SIZE`; 1 without it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


# What gloo and NCCL say when a collective's peer has exited.
_PEER_GONE = ("closed by peer", "reset by peer", "Broken pipe", "communicator was aborted")


class RankStoppedError(RuntimeError):
    """A collective failed because another rank of the job exited (after its own error)."""


@contextmanager
def process_group(device: torch.device | None = None) -> Iterator[None]:
    """Join the job torchrun launched this process in, for the block (nothing when it was not
    launched by torchrun with more than one process, or already joined).

    The backend follows the device: gloo on the CPU (what tripletlab trains on), NCCL for a
    CUDA device; the rendezvous is torchrun's (`env://`). On leaving normally the ranks meet
    at a barrier and the group is closed. On an error it is left as it is: the other ranks
    may be blocked in a collective, and torchrun stops them when this process exits with the
    error; a rank whose collective failed because a peer exited raises `RankStoppedError`.
    """
    if launched_world_size() == 1 or dist.is_initialized():
        yield
        return
    device = device or torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    # Long enough for rank 0 to decode a large image folder while the others wait (`main_first`):
    # a rank that exits is seen at once anyway, and torchrun stops the others.
    dist.init_process_group(backend, timeout=timedelta(hours=3))
    try:
        yield
        dist.barrier()  # without it gloo can abort in the teardown of a rank that finished first
    except RuntimeError as error:
        if not any(sign in str(error) for sign in _PEER_GONE):
            raise
        raise RankStoppedError(
            "another process of this torchrun job stopped (its error is above), so this one "
            f"stops too: {str(error).splitlines()[0][:200]}"
        ) from None
    dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing outside `torch.distributed`)."""
    if world()[1] > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first, then the other ranks (e.g. loading data: rank 0 decodes a
    folder into the cache, the others then read the cache). Outside a job: the block."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def embed_sharded(
    model: nn.Module, images: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """`model.embed_and_classify(images, batch_size, views=False)`, each rank embedding its
    part of the images and all ranks receiving all rows (in order): float32 (N, D) and
    (N, classes) or None. Outside `torch.distributed`, the call itself."""
    rank, size = world()
    if size == 1:
        return model.embed_and_classify(images, batch_size=batch_size, views=False)
    rows = part_sizes(len(images), size)
    start = sum(rows[:rank])
    embeddings, probabilities = model.embed_and_classify(
        images[start : start + rows[rank]], batch_size=batch_size, views=False
    )
    gathered = all_gather_rows(torch.from_numpy(embeddings), rows).numpy()
    if probabilities is None:
        return gathered, None
    return gathered, all_gather_rows(torch.from_numpy(probabilities), rows).numpy()


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


def data_parallel(module: nn.Module, find_unused: bool = False) -> nn.Module:
    """`module` in `DistributedDataParallel` under `torch.distributed` (which averages the
    gradients of the ranks in backward), else itself; and itself when nothing in it trains.
    Call again after changing which parameters train: DDP reduces those it was built with.
    Drop the wrapper before the process group is closed: gloo can abort the process (SIGABRT,
    2 of 30 two-process runs here) when a live DDP outlives the group's teardown."""
    if world()[1] == 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    # The buffers (BatchNorm's statistics) are the same on every rank: no broadcast each step.
    return DistributedDataParallel(module, find_unused_parameters=find_unused,
                                   forward_sync_buffers=False)  # fmt: skip
