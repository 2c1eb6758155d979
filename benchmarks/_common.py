"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
HERE = Path(__file__).resolve().parent


def in_fresh_process(module: str, function: str, *args: object) -> Any:
    """`module.function(*args)` (a script in this folder) in a new interpreter; its JSON result.

    Each measurement starts from a clean heap, and glibc's malloc starts untuned, as in a user's
    own script. The folder is put on the path, so this works from any working directory.

    Args:
        module: a module of this folder, by name ("training").
        function: its function to call; it returns what `json.dumps` takes.
        args: literals whose `repr` rebuilds them (numbers, strings, lists of them).
    Returns:
        The function's result, read back from JSON.
    Raises:
        RuntimeError: the new interpreter failed (the end of its stderr in the message).
    """
    call = f"{function}({', '.join(repr(a) for a in args)})"
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from {module} import {function}; "
        f"print(json.dumps({call}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{call}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def timed(function: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `function()` in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _format(value: object) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def show(title: str, columns: list[str], rows: list[list[object]]) -> None:
    """Print a table."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(_format(v) for v in row))
    console.print(table)
