from __future__ import annotations

import pytest
import torch
from torch import nn

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.models import (
    build_backbone,
    freeze,
    parameter_counts,
    set_train_mode,
    summary,
    unfreeze,
)


def _resnet() -> Embedder:
    torch.manual_seed(0)
    return Embedder(ModelConfig(backbone="resnet_small", embedding_dim=32))


def test_freeze_counts_like_keras_and_blocks_gradients():
    model = _resnet()
    total_params = sum(p.numel() for p in model.parameters())
    bn_stats = sum(m.running_mean.numel() * 2 for m in model.modules()
                   if isinstance(m, nn.BatchNorm2d))  # fmt: skip
    assert parameter_counts(model) == (total_params, bn_stats)
    freeze(model.backbone)
    head = sum(p.numel() for p in model.head.parameters())
    assert parameter_counts(model) == (head, total_params - head + bn_stats)
    model(torch.randint(0, 255, (4, 28, 28), dtype=torch.uint8)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None


def test_unfreeze_from_a_layer_keeps_the_earlier_ones_frozen():
    model = _resnet()
    freeze(model)
    unfreeze(model.backbone, from_layer="layer3")
    trainable = {
        name.split(".")[0] for name, p in model.backbone.named_parameters() if p.requires_grad
    }
    assert trainable == {"layer3"}
    unfreeze(model.backbone, from_layer=-3)  # layer2, layer3, pool
    assert any(p.requires_grad for p in model.backbone.layer2.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    with pytest.raises(ValueError, match="children are stem, layer1"):
        unfreeze(model.backbone, from_layer="layer9")
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("frozen", [True, False])
def test_batchnorm_statistics_do_not_change_in_inference_mode(frozen):
    model = _resnet()
    if frozen:
        freeze(model.backbone)
        set_train_mode(model, bn_train=True)  # frozen BatchNorm stays in inference mode anyway
    else:
        set_train_mode(model, bn_train=False)  # fine-tuning with BatchNorm in inference mode
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randint(0, 255, (8, 28, 28), dtype=torch.uint8)).sum().backward()
        optimizer.step()
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    assert model.head.training and not model.backbone.stem[1].training


def test_embedding_in_the_middle_of_training_leaves_every_layer_in_its_mode():
    """Offline mining embeds the training set mid-epoch: a frozen backbone's BatchNorm (in
    inference mode) must not come back in training mode (`model.train(True)` did that)."""
    model = _resnet()
    freeze(model.backbone)
    set_train_mode(model)
    modes = [layer.training for layer in model.modules()]
    assert model.training and not all(modes)
    model.embed(torch.randint(0, 255, (4, 28, 28), dtype=torch.uint8).numpy())
    assert [layer.training for layer in model.modules()] == modes
    summary(model, torch.zeros(1, 28, 28, dtype=torch.uint8), print_fn=lambda line: None)
    assert [layer.training for layer in model.modules()] == modes


def test_batchnorm_statistics_do_change_when_training_normally():
    model = _resnet()
    set_train_mode(model, bn_train=True)
    before = model.backbone.stem[1].running_mean.clone()
    model(torch.randint(0, 255, (8, 28, 28), dtype=torch.uint8))
    assert not torch.equal(model.backbone.stem[1].running_mean, before)


def test_summary_lists_layers_and_totals():
    model = _resnet()
    freeze(model.backbone)
    lines = []
    text = summary(model, torch.zeros(1, 28, 28, dtype=torch.uint8), print_fn=lines.append)
    assert lines == [text]
    assert "head" in text and "Linear" in text and "(1, 32)" in text
    assert "backbone.stem.0" in text and "(1, 32, 28, 28)" in text
    trainable, frozen = parameter_counts(model)
    assert f"Trainable params: {trainable:,}" in text
    assert f"Non-trainable params: {frozen:,}" in text


@pytest.mark.parametrize("size", [(28, 28), (64, 64), (224, 224)])
@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_small_from_28_to_224_pixels(size, channels):
    model = Embedder(ModelConfig(backbone="resnet_small", channels=channels, image_size=size,
                                 embedding_dim=16)).eval()  # fmt: skip
    shape = (2, *size) if channels == 1 else (2, *size, 3)
    assert model(torch.zeros(shape, dtype=torch.uint8)).shape == (2, 16)


def test_resnet_small_computes_channels_last_but_saves_plain_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    backbone = build_backbone("resnet_small").eval()
    assert backbone.layer2.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    # The same weights in the standard layout give the same features.
    standard = build_backbone("resnet_small").eval()
    standard.load_state_dict(backbone.state_dict())
    standard.to(memory_format=torch.contiguous_format)
    standard.forward = lambda x: standard.pool(  # skip the channels-last conversion
        standard.layer3(standard.layer2(standard.layer1(standard.stem(x))))
    )
    images = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(backbone(images), standard(images), atol=1e-5, rtol=1e-5)
    state = backbone.state_dict()
    assert all(tensor.is_contiguous() for tensor in state.values())
    save_file(state, tmp_path / "w.safetensors")  # refuses non-contiguous tensors
    assert torch.equal(load_file(tmp_path / "w.safetensors")["layer2.conv1.weight"],
                       backbone.layer2.conv1.weight)  # fmt: skip


def test_phase_freeze_until_a_layer_trains_that_layer_and_the_ones_after_it():
    from tripletlab.models.freezing import apply_phase_freeze

    model = _resnet()
    names = [name for name, _ in model.backbone.named_children()]
    start = names.index("layer3")
    apply_phase_freeze(model, "until:layer3")
    for position, (name, child) in enumerate(model.backbone.named_children()):
        trainable = [p.requires_grad for p in child.parameters()]
        if trainable:
            assert all(trainable) if position >= start else not any(trainable), name
    assert all(p.requires_grad for p in model.head.parameters())
    apply_phase_freeze(model, "none")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="backbone has no layer 'layer9'; children are stem"):
        apply_phase_freeze(model, "until:layer9")


def test_phases_from_yaml_accept_until(tmp_path):
    from tripletlab.config import RunConfig, load_yaml

    path = tmp_path / "run.yaml"
    path.write_text("phases:\n  - {epochs: 1, freeze: backbone}\n"
                    "  - {epochs: 1, freeze: {until: layer3}, lr: 1.0e-5}\n"
                    "  - {epochs: 1, freeze: 'until: layer2'}\n")  # fmt: skip
    config = RunConfig.from_dict(load_yaml(path))
    assert [p.freeze for p in config.phases] == ["backbone", "until:layer3", "until:layer2"]
    assert config.phases[1].until == "layer3"
    assert RunConfig.from_dict(config.to_dict()).phases == config.phases  # saved and read again
