"""The benchmark scripts run from any working directory, as their docstrings show them
(`python benchmarks/NAME.py`), including the measurements they make in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_a_fresh_interpreter_finds_the_benchmarks_own_modules(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.chdir(tmp_path)  # not the benchmarks folder
    from _common import in_fresh_process

    assert in_fresh_process("_common", "_format", 1234.5) == "1,234"
    with pytest.raises(RuntimeError, match="No module named 'nothing_here'"):
        in_fresh_process("nothing_here", "f")


@pytest.mark.slow
def test_training_benchmark_runs_outside_its_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "training.py"), "--steps", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plain eager port" in result.stdout
    assert result.stdout.count("tripletlab Trainer") == 3
    too_many = subprocess.run(
        [sys.executable, str(BENCHMARKS / "training.py"), "--steps", "1900"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert too_many.returncode == 2 and "--steps must be 1 to 1700" in too_many.stderr
