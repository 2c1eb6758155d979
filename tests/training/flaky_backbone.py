"""A backbone for `tripletlab --import flaky_backbone`: the tutorial's `seed_cnn` (same
layers, names and initial weights) that raises once, on rank 1 of a distributed run, in its
12th training forward pass, unless the file named by `FLAKY_MARKER` exists (it writes that
file when it raises): a rank failing in the middle of an epoch, once."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from tripletlab.models.registry import build_backbone, register_backbone
from tripletlab.training.distributed import world

FAIL_AT = 12


def _flaky_class(base: type) -> type:
    class Flaky(base):
        calls = 0

        def forward(self, x: Tensor) -> Tensor:
            if self.training:
                type(self).calls += 1
                marker = Path(os.environ.get("FLAKY_MARKER", "/nonexistent/marker"))
                if world()[0] == 1 and type(self).calls == FAIL_AT and not marker.exists():
                    marker.write_text("failed once\n")
                    raise RuntimeError("rank 1 failed on purpose (flaky_backbone)")
            return super().forward(x)

    return Flaky


@register_backbone("flaky_seed_cnn", replace=True)
def _flaky_seed_cnn(channels: int, image_size: tuple[int, int]):
    network = build_backbone("seed_cnn", channels=channels, image_size=image_size)
    network.__class__ = _flaky_class(type(network))
    return network
