"""Progress bars of long work outside training (decoding a folder, building an index)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, ProgressColumn


def progress_bar(*columns: str | ProgressColumn) -> Progress:
    """A transient rich progress bar on stderr, shown only on a terminal: a log file or a pipe
    gets neither the bar nor the empty line a stopped bar leaves (`columns`: rich's default
    ones when none are given)."""
    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
