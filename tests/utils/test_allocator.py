from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Twenty training steps of the tutorial network at batch 32 in a fresh process (after five
# warm-up steps); prints whether malloc was tuned and the page faults per step.
_PROBE = """
import resource, sys, torch
from tripletlab import Embedder
from tripletlab.config import LossConfig
from tripletlab.losses import build_loss
from tripletlab.utils.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else False
torch.manual_seed(0)
model, loss_fn = Embedder(), build_loss(LossConfig(name="semihard", margin=1.0))
optimizer = torch.optim.Adam(model.parameters())
images = torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8)
labels = torch.arange(32) % 10
def step():
    optimizer.zero_grad()
    loss_fn(model(images), labels).backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _probe(mode: str, **env: str) -> tuple[str, float]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], env={**environment, **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tuned, faults = result.stdout.split()
    return tuned, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_malloc_stops_training_steps_from_faulting_their_memory_in():
    tuned, faults = _probe("tune")
    # glibc's starting threshold (128 KiB) held fixed: what the first epoch used to run with.
    untuned, untuned_faults = _probe("plain", MALLOC_MMAP_THRESHOLD_="131072")
    assert (tuned, untuned) == ("True", "False")
    assert untuned_faults > 1_000  # measured: ~11,000 page faults per step
    assert faults < 200  # measured: 0.2 to 40 (and 2,500 to 4,900 with glibc left alone)


def test_opt_out_leaves_malloc_alone():
    assert _probe("tune", TRIPLETLAB_TUNE_MALLOC="0")[0] == "False"
    assert _probe("tune", MALLOC_MMAP_THRESHOLD_="65536")[0] == "False"
