"""The benchmark scripts run as their docstrings say (`python benchmarks/NAME.py`), from any
working directory, including the ones that measure in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_training_benchmark_runs_outside_its_folder(tmp_path):
    # Its measurements run in fresh interpreters, which must find the script's own module.
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "training.py"), "--steps", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plain eager port" in result.stdout
    assert result.stdout.count("tripletlab Trainer") == 3
