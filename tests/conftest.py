from __future__ import annotations

import importlib.util
import os

import pytest

# Runs inside tests evaluate on a stratified fifth of MNIST's test split (2,000 images): a fifth
# of each evaluation's time. tests/training/test_trainer.py keeps one run on all 10,000.
TEST_PART = "test[:20%]"
SET_TEST_PART = ["--set", f"data.test_split={TEST_PART}"]


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    # Two cores on CI: keep intra-op threads at the core count (PyTorch's default may be higher).
    # `make test-keras` runs tests/keras where PyTorch is not installed.
    if importlib.util.find_spec("torch") is None:
        return
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def run_04(tmp_path_factory):
    """A run trained on MNIST digits 0-4 (4,000 images, 2 epochs, no report): the model for
    searching a gallery and telling the digits it never saw (5-9) as unknown."""
    from typer.testing import CliRunner

    from tripletlab.cli.main import app
    from tripletlab.runs import RunDir

    folder = tmp_path_factory.mktemp("digits04") / "run"
    args = ["train", "--limit", "4000", "--epochs", "2", "--no-report", "--run-dir", str(folder),
            "--set", "data.classes=[0,1,2,3,4]", *SET_TEST_PART]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return RunDir(folder)
