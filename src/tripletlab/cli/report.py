"""`tripletlab report`: the run's report and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.runs import RunDir
from tripletlab.viz import build_report


def report(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Write RUN_DIR/report.md and RUN_DIR/plots/ (loss, distances, UMAP, neighbours)."""
    with user_errors():
        path = build_report(run_dir)
    console.print(f"report written to {path} (plots in {RunDir(run_dir).plots})")
