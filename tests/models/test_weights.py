from __future__ import annotations

import importlib.util
import logging

import pytest
import torch
from safetensors.torch import save_file

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.models.weights import load_backbone_weights, read_backbone_state


def _pair():
    torch.manual_seed(1)
    source = Embedder(ModelConfig(backbone="resnet_small", embedding_dim=8))
    torch.manual_seed(2)
    target = Embedder(ModelConfig(backbone="resnet_small", embedding_dim=8))
    return source, target


def test_load_from_a_run_checkpoint_folder(tmp_path):
    source, target = _pair()
    source.save(tmp_path / "ckpt")
    report = load_backbone_weights(target.backbone, tmp_path / "ckpt", strict=True)
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(target.backbone.state_dict()[key], value)


def test_safetensors_and_torch_files_with_missing_and_extra_keys(tmp_path, caplog):
    source, target = _pair()
    state = dict(source.backbone.state_dict())
    state.pop("layer3.conv2.weight")
    state["extra.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        with caplog.at_level(logging.WARNING):
            report = load_backbone_weights(target.backbone, tmp_path / name)
        assert report["missing"] == ["layer3.conv2.weight"]
        assert report["unexpected"] == ["extra.weight"]
        assert "missing: layer3.conv2.weight" in caplog.text
        with pytest.raises(ValueError, match="do not fit"):
            load_backbone_weights(target.backbone, tmp_path / name, strict=True)


def test_shape_mismatch_is_reported_and_left_untouched(tmp_path):
    source, target = _pair()
    state = dict(source.backbone.state_dict())
    state["stem.0.weight"] = torch.zeros(32, 3, 3, 3)  # a colour stem for a grey backbone
    save_file(state, tmp_path / "w.safetensors")
    before = target.backbone.stem[0].weight.clone()
    report = load_backbone_weights(target.backbone, tmp_path / "w.safetensors")
    assert report["mismatched"] == ["stem.0.weight"]
    torch.testing.assert_close(target.backbone.stem[0].weight, before)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(2), "thing": logging.getLogger("x")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a plain PyTorch state dict"):
        read_backbone_state(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        read_backbone_state(tmp_path / "absent.pt")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a run folder"):
        read_backbone_state(tmp_path / "w.txt")


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18"])
def test_optional_adapters_say_what_to_install_when_missing(name):
    from tripletlab.models import build_backbone

    package = name.split(":")[0]
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here: the adapter itself is tested")
    with pytest.raises(ValueError, match=f"{package} is not installed"):
        build_backbone(name, channels=3)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18"])
def test_optional_adapters_build_pooled_features(name):
    from tripletlab.models import build_backbone

    package = name.split(":")[0]
    pytest.importorskip(package, reason=f"{package} does not install beside this CPU torch")
    backbone = build_backbone(name, channels=3)
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 512)
