"""Semi-hard triplet loss, forward + backward: tripletlab against two references, same run.

References: a straightforward O(N^3) implementation of the same TF Addons semantics (small N
only: it needs N^3 floats), and pytorch-metric-learning's semi-hard miner + TripletMarginLoss
(install with `pip install -e '.[bench]'`). Also the peak memory of tripletlab's kernel at
N = 16,384, in a fresh process. Run: `make bench` or `python benchmarks/losses.py`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch
from _common import show, timed

from tripletlab.losses import pairwise_distance, triplet_semihard_loss


def naive_semihard(x: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """TF Addons' semantics with (N, N, N) tensors, as its tiling does."""
    d = pairwise_distance(x)
    same = labels[:, None] == labels[None, :]
    negative = ~same
    positive = same & ~torch.eye(len(x), dtype=torch.bool)
    farther = negative[:, None, :] & (d[:, None, :] > d[:, :, None])  # (a, p, n)
    outside = torch.where(farther, d[:, None, :], torch.inf).amin(-1)
    inside = torch.where(negative, d, -torch.inf).amax(-1, keepdim=True).expand_as(d)
    chosen = torch.where(farther.any(-1), outside, inside)
    loss = (d - chosen + margin).clamp_min(0) * positive
    return loss.sum() / positive.sum()


def _data(n: int, dim: int = 128, per_class: int = 4):
    generator = torch.Generator().manual_seed(n)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = torch.arange(n) // per_class
    return x, labels[torch.randperm(n, generator=generator)]


def _step(function, x, labels):
    def run():
        embeddings = x.clone().requires_grad_(True)
        function(embeddings, labels).backward()

    return run


def _pml():
    try:
        from pytorch_metric_learning import losses, miners
    except ImportError:
        return None
    miner = miners.TripletMarginMiner(margin=1.0, type_of_triplets="semihard")
    loss = losses.TripletMarginLoss(margin=1.0)
    return lambda e, y: loss(e, y, miner(e, y))


_PEAK = r"""
import re, sys, torch


def peak_bytes():
    # VmHWM is this process's own high-water mark; ru_maxrss would keep the parent's after exec.
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


from tripletlab.losses import triplet_semihard_loss
n = int(sys.argv[1])
x = torch.nn.functional.normalize(torch.randn(n, 128), dim=1).requires_grad_()
before = peak_bytes()
triplet_semihard_loss(x, torch.randint(0, n // 4, (n,))).backward()
print(peak_bytes(), before)
"""


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    pml = _pml()
    rows = []
    for n in (256, 512, 1024, 4096, 8192):
        x, labels = _data(n)
        ours = timed(_step(triplet_semihard_loss, x, labels), repeats=3 if n > 1024 else 5)
        naive = timed(_step(naive_semihard, x, labels), repeats=3) if n <= 512 else None
        if naive is not None:  # same semantics: the values must agree
            assert torch.allclose(
                triplet_semihard_loss(x, labels), naive_semihard(x, labels), atol=1e-5
            )
        theirs = timed(_step(pml, x, labels), repeats=1) if pml and n <= 4096 else None
        rows.append(
            [
                n,
                ours * 1e3,
                naive * 1e3 if naive else "-",
                f"{naive / ours:.1f}x" if naive else "-",
                theirs * 1e3 if theirs else "-",
                f"{theirs / ours:.1f}x" if theirs else "-",
            ]
        )
    title = "semi-hard loss, forward + backward, D = 128, 4 per class (ms; ratio = ref / ours)"
    show(
        title,
        ["N", "tripletlab", "O(N^3) reference", "ratio", "pytorch-metric-learning", "ratio"],
        rows,
    )
    if pml is None:
        print("pytorch-metric-learning is not installed: pip install -e '.[bench]'")
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, "16384"], capture_output=True, text=True, check=True
    )
    peak, before = map(int, done.stdout.split())
    print(
        f"peak RSS at N = 16,384: {peak / 2**30:.2f} GiB "
        f"(process before the loss: {before / 2**30:.2f} GiB; goal: under 4 GiB)"
    )


if __name__ == "__main__":
    main()
