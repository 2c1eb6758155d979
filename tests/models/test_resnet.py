"""resnet18 / resnet50: torchvision's state-dict layout, checked against the published
architecture (He et al. 2015, torchvision's v1.5 bottleneck), and loading such a file."""

from __future__ import annotations

import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.models import build_backbone
from tripletlab.models.resnet import BasicBlock, Bottleneck, ResNet
from tripletlab.models.weights import load_backbone_weights


def _bn(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.{k}": (channels,) for k in ("weight", "bias", "running_mean", "running_var")}


def published_layout(depths: tuple[int, ...], bottleneck: bool) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of torchvision's ResNet with the 1,000-class head,
    written out from the paper's table (without `num_batches_tracked`)."""
    layout = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
        for block in range(depth):
            name = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            if bottleneck:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for number, (out, into, size) in enumerate(convs, 1):
                layout[f"{name}.conv{number}.weight"] = (out, into, size, size)
                layout |= _bn(f"{name}.bn{number}", out)
            if block == 0 and (stride != 1 or inplanes != planes * expansion):
                layout[f"{name}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                layout |= _bn(f"{name}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    layout |= {"fc.weight": (1000, inplanes), "fc.bias": (1000,)}
    return layout


@pytest.mark.parametrize(
    ("block", "depths", "parameters"),
    [(BasicBlock, (2, 2, 2, 2), 11_689_512), (Bottleneck, (3, 4, 6, 3), 25_557_032)],
)
def test_layout_equals_the_published_architecture(block, depths, parameters):
    model = ResNet(block, depths, channels=3, num_classes=1000)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # fmt: skip
    assert state == published_layout(depths, block is Bottleneck)
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_a_torchvision_weights_file_loads_with_no_missing_or_unexpected_key(tmp_path, name):
    block, depths = (BasicBlock, (2, 2, 2, 2)) if name == "resnet18" else (Bottleneck, (3, 4, 6, 3))
    torch.manual_seed(1)
    published = ResNet(block, depths, channels=3, num_classes=1000)  # a "downloaded" file
    path = tmp_path / f"{name}-weights.pth"
    torch.save(published.state_dict(), path)
    backbone = build_backbone(name, channels=3, image_size=(64, 64))
    report = load_backbone_weights(backbone, path, strict=True)
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    assert torch.equal(backbone.layer4[0].conv1.weight, published.layer4[0].conv1.weight)
    published.eval()
    backbone.eval()
    images = torch.rand(2, 3, 64, 64)
    features = backbone(images)
    assert features.shape == (2, 512 if name == "resnet18" else 2048)
    # The features are what the published network's classifier reads.
    expected = published.fc(features)
    assert torch.allclose(expected, published(images), atol=1e-5)


def test_grey_images_sum_the_rgb_filters():
    torch.manual_seed(2)
    rgb = ResNet(BasicBlock, (2, 2, 2, 2), channels=3, num_classes=1000)
    grey = build_backbone("resnet18", channels=1, image_size=(32, 32))
    fitted = grey.upgrade_state_dict(rgb.state_dict())
    assert "fc.weight" not in fitted
    assert torch.equal(fitted["conv1.weight"], rgb.conv1.weight.sum(1, keepdim=True))
    assert grey.load_state_dict(fitted, strict=False).missing_keys == []


def test_resnet18_embedder_gets_imagenet_scaling_and_small_images():
    model = Embedder(ModelConfig(backbone="resnet18", channels=3, image_size=(32, 32),
                                 embedding_dim=8))  # fmt: skip
    assert model.scaling.mode == "mean-std"
    out = model.embed(torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8).numpy())
    assert out.shape == (3, 8)


def test_the_torchvision_adapter_has_the_same_layout():
    models = pytest.importorskip(
        "torchvision.models", reason="torchvision does not install beside this CPU torch"
    )
    theirs = {k: tuple(v.shape) for k, v in models.resnet18().state_dict().items()}
    ours = ResNet(BasicBlock, (2, 2, 2, 2), 3, 1000).state_dict()
    assert theirs == {k: tuple(v.shape) for k, v in ours.items()}
