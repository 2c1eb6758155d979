"""`resnet18` and `resnet50`: ImageNet ResNets whose state-dict names and shapes are
torchvision's (and timm's), so that their published weight files load offline.

The layout is "Deep Residual Learning for Image Recognition" (He et al., 2015) as torchvision
builds it (v1.5: a bottleneck's stride is on its 3x3 convolution): `conv1` 7x7/2, `bn1`,
`relu`, `maxpool` 3x3/2, `layer1` .. `layer4` of blocks (`conv1`, `bn1`, `conv2`, `bn2`[,
`conv3`, `bn3`], `downsample.0` conv 1x1 and `downsample.1` BatchNorm where the shape
changes), `avgpool`, `fc`. As a backbone the classifier `fc` is left out (the embedder's head
replaces it) and the network returns pooled features: (N, C, H, W) -> (N, 512) for resnet18,
(N, 2048) for resnet50. A downloaded `resnet18-f37072fd.pth` loads with
`--backbone-weights FILE` (read with `weights_only=True`): its `fc.*` tensors are dropped, and
for grey images its first convolution is summed over the RGB channels (timm does the same).
"""

from __future__ import annotations

from torch import Tensor, nn

from tripletlab.models.registry import register_backbone


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (resnet18/34). (N, C, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here) -> 1x1 x4 (resnet50/101/152). (N, C, H, W) -> (N, 4 planes,
    H/s, W/s)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class ResNet(nn.Module):
    """An ImageNet ResNet with torchvision's names; `num_classes=0` leaves `fc` out and returns
    the pooled features (N, 512 * expansion); otherwise logits (N, num_classes)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        channels: int = 3,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = channels
        self.conv1 = nn.Conv2d(channels, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        inplanes = 64
        for number, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            stride = 1 if number == 0 else 2
            blocks = []
            for index in range(depth):
                blocks.append(block(inplanes, planes, stride if index == 0 else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{number + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = inplanes
        self.fc: nn.Module = nn.Linear(inplanes, num_classes) if num_classes else nn.Identity()
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def upgrade_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision / timm state dict fitted to this backbone: the ImageNet classifier
        (`fc.*`) dropped when this network has none, and an RGB first convolution summed over
        its input channels for grey images (what timm's `adapt_input_conv` does)."""
        if isinstance(self.fc, nn.Identity):
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        weight = state.get("conv1.weight")
        grey = self.in_channels == 1
        if grey and weight is not None and weight.ndim == 4 and weight.shape[1] == 3:
            state = {**state, "conv1.weight": weight.sum(dim=1, keepdim=True)}
        return state


@register_backbone("resnet18")
def resnet18(channels: int, image_size: tuple[int, int]) -> ResNet:
    """ResNet-18 (11,176,512 parameters without `fc`); any image size of 32 px or more."""
    return ResNet(BasicBlock, (2, 2, 2, 2), channels)


@register_backbone("resnet50")
def resnet50(channels: int, image_size: tuple[int, int]) -> ResNet:
    """ResNet-50 (23,508,032 parameters without `fc`); any image size of 32 px or more."""
    return ResNet(Bottleneck, (3, 4, 6, 3), channels)
