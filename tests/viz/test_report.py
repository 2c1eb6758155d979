"""The report on test parts of every size the run's checks let through."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.viz.report import umap_2d


@pytest.mark.parametrize("count", [2, 3, 6])
def test_umap_of_a_few_points(count):
    points = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    layout = umap_2d(points)
    assert layout.shape == (count, 2) and np.isfinite(layout).all()


@pytest.mark.slow
def test_a_test_part_of_six_images_gets_its_report(tmp_path):
    """The neighbour grid asked for 8 neighbours of 6 images: `train` printed an error and
    `report` could never succeed."""
    run = tmp_path / "run"
    args = ["train", "--limit", "300", "--epochs", "1", "--run-dir", str(run),
            "--set", "data.classes=[3,5]", "--set", "data.test_split=test[:6]"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "error" not in result.output, result.output
    assert (run / "report.md").is_file() and (run / "plots" / "neighbours.png").is_file()
