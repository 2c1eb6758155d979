"""Progress bars of long work outside training (decoding a folder, building an index)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)


def progress_bar(*columns: ProgressColumn) -> Progress:
    """A transient rich progress bar on stderr, shown only on a terminal: a log file or a pipe
    gets neither the bar nor the empty line a stopped bar leaves.

    Args:
        columns: what follows each task's description (default: a bar, the percentage done
            and the time left). The description is shown as plain text, never read as rich
            markup: a folder's path such as `photos[/x]` is printed as it is.
    Returns:
        The `rich.progress.Progress`, to use as a context manager.
    """
    console = Console(stderr=True)
    shown = columns or (BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    return Progress(TextColumn("{task.description}", markup=False), *shown, console=console,
                    transient=True, disable=not console.is_terminal)  # fmt: skip
