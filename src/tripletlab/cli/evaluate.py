"""`tripletlab evaluate`: recompute a run's test metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, metrics_table, user_errors
from tripletlab.evaluation import evaluate_run


def evaluate(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Recompute the test metrics of a run's best checkpoint and rewrite metrics.json."""
    with user_errors():
        metrics = evaluate_run(run_dir)
    console.print(metrics_table(metrics, f"{run_dir}: test set ({metrics['num_test']:,} images)"))
