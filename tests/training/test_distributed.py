"""Global-batch losses under torch.distributed: two real gloo processes on this machine, a
DDP-wrapped model in float64, against one process on the concatenated batch."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tripletlab.losses import (
    ClassificationLoss,
    TripletBatchAllLoss,
    TripletHardLoss,
    TripletMarginLoss,
    TripletSemiHardLoss,
)
from tripletlab.training.distributed import (
    GlobalBatchLoss,
    all_gather_rows,
    data_parallel,
    world,
)
from tripletlab.training.global_layers import for_global_batch

LOSSES = ("semihard", "hard", "batch-all", "semihard+ce", "explicit-triplets")


class _Net(nn.Module):
    """A linear embedding (N, 8) -> (N, 6), and with `classify` a linear classifier on it
    -> (N, 4) logits (only then: DDP needs every parameter to get a gradient)."""

    def __init__(self, classify: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 6).double()
        self.classify = nn.Linear(6, 4).double() if classify else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        vectors = self.embed(x)
        return vectors, self.classify(vectors) if self.classify is not None else None


class _BatchNormNet(nn.Module):
    """Images (N, 2, 3, 3) -> conv -> BatchNorm2d -> ReLU -> mean pool -> BatchNorm1d ->
    (N, 5): a forward pass whose rows depend on each other through the batch statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(2, 4, 2).double()
        self.norm = nn.Sequential(nn.BatchNorm2d(4).double(), nn.ReLU())
        self.embed = nn.Linear(4, 5).double()
        self.norm1d = nn.BatchNorm1d(5, momentum=None).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm1d(self.embed(self.norm(self.conv(x)).mean((2, 3))))


def _images(total: int) -> torch.Tensor:
    return torch.randn(total, 2, 3, 3, generator=torch.Generator().manual_seed(4),
                       dtype=torch.float64) * 3 + 1  # fmt: skip


def _loss(name: str) -> nn.Module:
    return {
        "semihard": TripletSemiHardLoss(margin=0.5),
        "hard": TripletHardLoss(margin=0.5),
        "batch-all": TripletBatchAllLoss(margin=0.5),
        "semihard+ce": ClassificationLoss((0, 1, 2, 3), TripletSemiHardLoss(margin=0.5), 0.7),
        "explicit-triplets": TripletMarginLoss(margin=1.0),
    }[name]


def _data(total: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(total, 8, generator=generator, dtype=torch.float64)
    return x, torch.arange(total) % 4  # every class has positives


def _step(model: nn.Module, loss_fn: nn.Module, name: str, x: torch.Tensor, labels: torch.Tensor):
    if name == "explicit-triplets":  # each row's anchor, positive and negative: x, a roll, -x
        vectors = model(torch.cat([x, x.roll(1, dims=1), -x]))[0]  # one forward pass for DDP
        return loss_fn(torch.cat(vectors.chunk(3), dim=1))  # (N, 3 * 6)
    vectors, logits = model(x)
    return loss_fn(vectors, logits, labels) if name == "semihard+ce" else loss_fn(vectors, labels)


def _worker(rank: int, sizes: tuple[int, ...], folder: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # this machine alone, no network needed
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=len(sizes))  # fmt: skip
    torch.set_num_threads(1)
    try:
        x, labels = _data(sum(sizes))
        start = sum(sizes[:rank])
        mine = slice(start, start + sizes[rank])
        gathered = all_gather_rows(x[mine].clone().requires_grad_())
        results = {"gathered": gathered.detach().numpy(), "world": np.array(world())}
        for name in LOSSES:
            model = DistributedDataParallel(_Net(classify=name == "semihard+ce"))
            loss_fn = GlobalBatchLoss(_loss(name))
            loss = _step(model, loss_fn, name, x[mine], labels[mine])
            loss.backward()
            results[f"{name}-loss"] = np.array(GlobalBatchLoss.unscaled(loss.item()))
            for key, parameter in model.module.named_parameters():
                results[f"{name}-{key}"] = parameter.grad.numpy()
        net = for_global_batch(_BatchNormNet())
        model = data_parallel(net)
        loss = GlobalBatchLoss(TripletSemiHardLoss(margin=0.5))(model(_images(sum(sizes))[mine]),
                                                                 labels[mine])  # fmt: skip
        loss.backward()
        results["batchnorm-loss"] = np.array(GlobalBatchLoss.unscaled(loss.item()))
        for key, value in [*net.named_parameters(), *net.named_buffers()]:
            results[f"batchnorm-{key}"] = (value.grad if value.requires_grad else value).numpy()
        # bfloat16 rows, as under autocast: statistics in float32, output in bfloat16.
        norm = for_global_batch(nn.Sequential(nn.BatchNorm2d(2)))
        out = norm(_images(sum(sizes))[mine].to(torch.bfloat16))
        results["bf16-is-bf16"] = np.array(out.dtype == torch.bfloat16)
        results["bf16-out"] = out.detach().float().numpy()
        results["bf16-running_var"] = norm[0].running_var.numpy()
        np.savez(Path(folder) / f"rank{rank}.npz", **results)
        del model  # a DDP alive at the group's teardown can abort gloo
        gc.collect()
        dist.barrier()  # no rank tears gloo down while another is still in a collective
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sizes", [(6, 6), (5, 7)], ids=["equal", "unequal"])
def test_two_processes_equal_one_process_on_the_global_batch(sizes, tmp_path):
    mp.spawn(_worker, args=(sizes, str(tmp_path)), nprocs=len(sizes), join=True)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(len(sizes))]
    x, labels = _data(sum(sizes))
    for result in ranks:  # every rank sees every row, in rank order
        np.testing.assert_array_equal(result["gathered"], x.numpy())
    assert [tuple(r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    for name in LOSSES:
        model = _Net(classify=name == "semihard+ce")
        loss = _step(model, _loss(name), name, x, labels)
        loss.backward()
        for result in ranks:
            assert abs(float(result[f"{name}-loss"]) - loss.item()) < 1e-10, name
            for key, parameter in model.named_parameters():
                np.testing.assert_allclose(
                    result[f"{name}-{key}"], parameter.grad.numpy(), rtol=0, atol=1e-10,
                    err_msg=f"{name}: {key}",
                )  # fmt: skip
    net = _BatchNormNet()  # nn.BatchNorm2d on the global batch
    loss = TripletSemiHardLoss(margin=0.5)(net(_images(sum(sizes))), labels)
    loss.backward()
    for result in ranks:  # GlobalBatchNorm: statistics of the global batch, on every rank
        assert abs(float(result["batchnorm-loss"]) - loss.item()) < 1e-10
        for key, value in [*net.named_parameters(), *net.named_buffers()]:
            expected = (value.grad if value.requires_grad else value).numpy()
            np.testing.assert_allclose(result[f"batchnorm-{key}"], expected, rtol=0, atol=1e-10,
                                       err_msg=key)  # fmt: skip
    norm = nn.BatchNorm2d(2)  # PyTorch's, on the global batch of bfloat16 rows
    out = norm(_images(sum(sizes)).to(torch.bfloat16)).float().detach().numpy()
    for rank, result in enumerate(ranks):
        mine = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        assert result["bf16-is-bf16"]
        np.testing.assert_allclose(result["bf16-out"], out[mine], rtol=0, atol=0.05)  # 8-bit
        np.testing.assert_allclose(result["bf16-running_var"], norm.running_var.numpy(),
                                   rtol=1e-2)  # fmt: skip


def test_outside_torch_distributed_the_loss_is_unchanged():
    x, labels = _data(12)
    vectors = _Net(classify=False)(x)[0]
    assert world() == (0, 1) and all_gather_rows(vectors) is vectors
    wrapped = GlobalBatchLoss(TripletSemiHardLoss(margin=0.5))
    expected = TripletSemiHardLoss(margin=0.5)(vectors, labels)
    assert wrapped(vectors, labels).item() == expected.item()


@pytest.mark.parametrize("shape", [(7, 10), (7, 3, 4, 5)])
def test_global_dropout_masks_parts_as_torch_masks_the_whole_batch(shape):
    from tripletlab.models.batch_part import batch_part
    from tripletlab.training.global_layers import GlobalDropout, for_global_batch

    layer = for_global_batch(nn.Sequential(nn.Dropout(0.25))).train()
    assert isinstance(layer[0], GlobalDropout)
    x = torch.randn(shape)
    state = torch.get_rng_state()
    whole = nn.Dropout(0.25).train()(x)
    after = torch.rand(2)
    parts = []
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        torch.set_rng_state(state)
        with batch_part(start, 7):
            parts.append(layer(x[start:stop]))
        assert torch.equal(torch.rand(2), after)  # the ranks' generators stay in step
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)
