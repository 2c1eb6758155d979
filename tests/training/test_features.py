"""Feature extraction: a phase with a frozen backbone trains the head on cached backbone
outputs, with the same gradients as running the backbone every step."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.models import set_train_mode
from tripletlab.training import Trainer
from tripletlab.training.features import FeatureCache


@pytest.fixture(scope="module")
def train_images():
    return load_mnist("train").subset(np.arange(512))


def _config(backbone="seed_cnn", loss="semihard", **model):
    return merge(RunConfig(), {
        "model": {"backbone": backbone, "embedding_dim": 16, **model},
        "loss": {"name": loss},
        "train": {"batch_size": 32},
        "phases": [{"epochs": 1, "lr": 1e-3, "freeze": "backbone"}, {"epochs": 1, "lr": 1e-5}],
    })  # fmt: skip


@pytest.mark.parametrize("backbone", ["seed_cnn", "resnet_small"])  # dropout / BatchNorm
def test_cached_features_give_the_head_the_same_gradients(train_images, backbone):
    trainer = Trainer(_config(backbone))
    trainer.train_set = train_images
    trainer.start_phase(trainer.config.phases[0], 1)
    assert trainer.features is not None and len(trainer.features) == 512
    set_train_mode(trainer.model, trainer.bn_train)
    trainer.model.backbone.eval()  # as run_epoch does in such a phase
    images = torch.from_numpy(train_images.images)
    labels = torch.from_numpy(train_images.labels)
    batch = torch.arange(40, 72)
    head = list(trainer.model.head.parameters())
    cached = torch.autograd.grad(trainer.compute_loss(images, labels, batch), head)
    trainer.features = None
    direct = torch.autograd.grad(trainer.compute_loss(images, labels, batch), head)
    for a, b in zip(cached, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(float(g.abs().max()) > 0 for g in cached)


def test_a_phase_trained_from_the_cache_ends_with_the_same_weights(train_images, tmp_path):
    weights = []
    for cache in (True, False):
        config = merge(_config(loss="semihard+ce", classes=list(range(10)),
                               class_names=[str(d) for d in range(10)]),
                       {"train": {"feature_cache": cache}})  # fmt: skip
        trainer = Trainer(config)
        trainer.fit(train_images, run_dir=tmp_path / str(cache))
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=1e-4, atol=1e-5, msg=key)


def test_no_cache_where_the_backbone_trains_or_the_model_augments(train_images):
    trainer = Trainer(_config())
    trainer.train_set = train_images
    trainer.start_phase(trainer.config.phases[1], 2)  # freeze: none
    assert trainer.features is None
    augmenting = Trainer(_config(rotation=10.0))
    augmenting.train_set = train_images
    augmenting.start_phase(augmenting.config.phases[0], 1)
    assert augmenting.features is None


def test_features_too_large_for_memory_go_to_a_memory_mapped_file(train_images):
    trainer = Trainer(_config())
    trainer.model.eval()
    images = torch.from_numpy(train_images.images[:100])
    in_memory = FeatureCache(trainer.model, images, 32)
    seen = []
    on_disk = FeatureCache(trainer.model, images, 32, lambda d, t: seen.append(d), 0)
    assert on_disk.on_disk and not in_memory.on_disk and seen[-1] == 100
    path = on_disk.features.filename
    index = torch.tensor([3, 99, 0])
    assert torch.equal(on_disk[index], in_memory[index])
    on_disk.close()
    assert not os.path.exists(path)


def _sharded_worker(rank: int, world_size: int, folder: str, batch_size: int,
                    in_memory_bytes: int) -> None:  # fmt: skip
    """Rank `rank` of a gloo group on this machine: a FeatureCache of the first 37 MNIST
    images, saved with the number of images this rank's backbone ran on."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world_size)  # fmt: skip
    torch.set_num_threads(1)
    try:
        model = Trainer(_config("resnet_small")).model
        encoded = []
        model.backbone.register_forward_hook(lambda m, args, out: encoded.append(len(args[0])))
        images = torch.from_numpy(load_mnist("train").images[:37])
        done = []
        cache = FeatureCache(model, images, batch_size, lambda d, t: done.append((d, t)),
                             in_memory_bytes)  # fmt: skip
        assert cache.on_disk == (in_memory_bytes == 0)
        np.savez(Path(folder) / f"rank{rank}.npz", features=cache.features,
                 encoded=np.array(sum(encoded)), done=np.array(done))  # fmt: skip
        dist.barrier()
    finally:
        dist.destroy_process_group()


# 3 x 4: a last chunk with empty parts; 0 bytes in memory: features in memory-mapped files.
@pytest.mark.parametrize("setting", [(2, 8, 2 << 30), (3, 4, 0)])
def test_ranks_share_the_feature_pass_and_each_gets_every_feature(tmp_path, setting):
    world_size, batch_size, in_memory_bytes = setting
    mp.spawn(_sharded_worker, args=(world_size, str(tmp_path), batch_size, in_memory_bytes),
             nprocs=world_size, join=True)  # fmt: skip
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world_size)]
    model = Trainer(_config("resnet_small")).model
    alone = FeatureCache(model, torch.from_numpy(load_mnist("train").images[:37]), batch_size)
    assert alone.features.std() > 0
    for result in ranks:
        np.testing.assert_allclose(result["features"], alone.features, rtol=1e-5, atol=1e-5)
        assert result["done"][-1].tolist() == [37, 37]
    encoded = [int(result["encoded"]) for result in ranks]
    assert sum(encoded) == 37 and max(encoded) - min(encoded) <= batch_size
