"""A small trained run shared by the command-line tests that need one."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.runs import RunDir


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> RunDir:
    """300 MNIST training images, one epoch, no report: enough for commands that use a run."""
    folder = tmp_path_factory.mktemp("small") / "run"
    result = CliRunner().invoke(app, ["train", "--limit", "300", "--epochs", "1", "--no-report",
                                      "--run-dir", str(folder)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return RunDir(folder)
