"""The training step's forward pass in float32 and under bfloat16 autocast."""

from __future__ import annotations

import torch

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.models import Embedder
from tripletlab.training import Trainer
from tripletlab.training.step import StepForward


def _model(**model) -> Embedder:
    torch.manual_seed(0)
    config = merge(RunConfig(), {"model": {"backbone": "resnet_small", "embedding_dim": 32,
                                           "classes": [0, 1, 2], "class_names": ["a", "b", "c"],
                                           **model}})  # fmt: skip
    return Embedder(config.model).train()


def test_bfloat16_outputs_are_float32_and_near_the_float32_ones():
    images = torch.from_numpy(load_mnist("test").images[:64])
    model = _model()
    exact, logits = StepForward(model, triplets=False)(images)
    low, low_logits = StepForward(model, triplets=False, precision="bfloat16")(images)
    assert low.dtype == low_logits.dtype == torch.float32
    assert exact.shape == low.shape and logits.shape == low_logits.shape
    # bfloat16 keeps 8 bits of mantissa: unit embeddings agree to about 1e-2, not to 1e-6.
    error = (low - exact).norm(dim=1).max().item()
    assert 1e-6 < error < 0.05
    # The head and L2 normalisation ran in float32 (under autocast they were off by 4e-3).
    assert torch.allclose(low.norm(dim=1), torch.ones(64), atol=1e-6)


def test_bfloat16_gradients_are_float32_and_point_the_same_way():
    images = torch.from_numpy(load_mnist("test").images[:64])
    weights = torch.randn(64, 32, generator=torch.Generator().manual_seed(2))
    grads = {}
    for precision in ("float32", "bfloat16"):
        model = _model()
        torch.manual_seed(1)
        embeddings, _ = StepForward(model, triplets=False, precision=precision)(images)
        # A smooth function of the embeddings: a mined loss would pick other triplets from
        # rounded distances, which is not what this compares.
        (embeddings * weights).sum().backward()
        grads[precision] = torch.cat([p.grad.flatten() for p in model.backbone.parameters()])
        assert all(p.grad.dtype == torch.float32 for p in model.backbone.parameters())
    cosine = torch.nn.functional.cosine_similarity(grads["float32"], grads["bfloat16"], dim=0)
    assert cosine > 0.97  # measured 0.988 (rounding to 8 bits of mantissa, through BatchNorm)


def test_a_bfloat16_run_trains(tmp_path):
    """Augmentation inside the model runs under autocast too; the weights stay float32."""
    config = merge(RunConfig(), {"data": {"limit": 600},
                                 "model": {"backbone": "resnet_small", "embedding_dim": 32,
                                           "rotation": 10.0, "translate": 0.1},
                                 "train": {"precision": "bfloat16", "epochs": 2,
                                           "batch_size": 64}})  # fmt: skip
    train = load_mnist("train")
    trainer = Trainer(config)
    trainer.fit(train.subset(range(500)), train.subset(range(500, 600)), run_dir=tmp_path)
    assert trainer.step_forward.precision == "bfloat16"
    losses = trainer.history.step_losses
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) < sum(losses[:4])  # the last steps against the first
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bfloat16_in_triplet_mode_and_from_cached_features():
    images = torch.from_numpy(load_mnist("test").images[:96])
    anchor, positive, negative = images[:32], images[32:64], images[64:]
    model = _model()
    exact, _ = StepForward(model, triplets=True)(anchor, positive, negative)
    low, _ = StepForward(model, triplets=True, precision="bfloat16")(anchor, positive, negative)
    assert low.dtype == torch.float32 and low.shape == exact.shape == (32, 96)
    assert 1e-6 < (low - exact).abs().max().item() < 0.05
    with torch.no_grad():
        features = model.encode(anchor)  # (32, F): what a frozen-backbone phase caches
    exact, _ = StepForward(model, triplets=False)(features, cached=True)
    low, logits = StepForward(model, triplets=False, precision="bfloat16")(features, cached=True)
    assert logits.dtype == torch.float32 and torch.equal(low, exact)  # the head: float32
