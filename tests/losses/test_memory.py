"""Peak memory of the mined losses at N = 8192, D = 128: O(N^2), under 2 GB, in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = r"""
import re, sys, torch


def peak_bytes():
    # VmHWM is this process's own high-water mark; ru_maxrss would keep the parent's after exec.
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


from tripletlab.config import LossConfig
from tripletlab.losses import build_loss
torch.manual_seed(0)
n, name = 8192, sys.argv[1]
x = torch.nn.functional.normalize(torch.randn(n, 128), dim=1).requires_grad_()
labels = torch.randint(0, n // 4, (n,))
before = peak_bytes()
loss = build_loss(LossConfig(name=name))(x, labels)
loss.backward()
assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
print(peak_bytes(), before)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["semihard", "hard", "batch-all"])
def test_forward_backward_at_8192_stays_under_2_gb(name):
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, name], capture_output=True, text=True, check=True
    )
    peak, _ = map(int, done.stdout.split())
    # A naive O(N^3) version needs 8192^3 * 4 bytes = 2 TB; the (N, N) float32 matrix is 256 MiB.
    assert peak < 2 * 1024**3, f"{name}: peak RSS {peak / 2**20:.0f} MiB"
