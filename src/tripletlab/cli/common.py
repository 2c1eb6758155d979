"""What the commands share: user errors as one line, and the metrics table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tripletlab.training import TrainingDivergedError
from tripletlab.training.distributed import RankStoppedError
from tripletlab.utils.io import shown_name

# No rich markup in anything printed: paths, class names and messages are the user's text
# (a folder called "[x]" must print as such). Lines are not wrapped either, so that a printed
# path can be copied whole.
console = Console(markup=False, emoji=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, emoji=False, soft_wrap=True)

# Commands that use an index with a run's model: --force takes another model's index.
ForceOption = Annotated[
    bool, typer.Option("--force", help="Use an index built by another model than the run's.")
]

METRIC_LABELS = {
    "precision_at_1": "Precision@1",
    "r_precision": "R-Precision",
    "map_at_r": "MAP@R",
    "knn_accuracy": "1-NN accuracy (test vs train + val)",
    "accuracy": "classifier accuracy",
    "embeddings_per_second": "embeddings / s",
    "train_seconds": "train seconds",
}


def echo_json(payload: dict[str, Any]) -> None:
    """One JSON line of a command's --json output, ASCII whatever the locale; the bytes of
    file names that are not UTF-8 shown as U+FFFD (as the service does), and no NaN or
    Infinity."""
    typer.echo(json.dumps(_shown(payload), allow_nan=False))


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return shown_name(value)
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(item) for item in value]
    return value


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line on stderr and exit status 1: bad settings
    and inputs (ValueError), missing or unwritable files and folders (OSError, e.g. a read-only
    --run-dir), training that diverged, and a rank of a torchrun job stopped by another's
    error."""
    try:
        yield
    except (
        ValueError,
        OSError,
        TrainingDivergedError,
        RankStoppedError,
    ) as error:  # OSError: unwritable places
        line = Text.assemble(("error:", "bold red"), " ", str(error))
        err_console.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """The headline metrics as a two-column table."""
    table = Table(title=Text(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in METRIC_LABELS.items():
        if key in metrics:
            table.add_row(
                label, f"{metrics[key]:.4f}" if key != "train_seconds" else f"{metrics[key]:.1f}"
            )
    return table
