"""Training callbacks: hooks the trainer calls; the progress bar is one of them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Callback:
    """Base class; every hook is optional."""

    def on_train_start(self, trainer: Any) -> None:
        """Called once before the first epoch with the `Trainer` (its model, optimizer, config)."""

    def on_epoch_start(self, epoch: int, num_steps: int) -> None:
        """Called before the first step of `epoch` (0-based), which runs `num_steps` steps
        (the steps left of it when a run resumes in its middle)."""

    def on_step_end(self, step: int, loss: float, images_per_second: float) -> None:
        """Called after every optimisation step with the step's loss."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        """Called after validation and checkpointing of `epoch`, with its logs."""

    def on_train_end(self) -> None:
        """Called once when training stops, normally or not."""

    def on_progress(self, what: str, done: int, total: int) -> None:
        """Called during work outside the steps (caching backbone features): `done` of `total`."""

    def on_note(self, text: str) -> None:
        """Called with a line worth showing (a phase that stops early)."""


class ProgressCallback(Callback):
    """A rich progress bar per epoch with running loss and images/s, and one line per epoch."""

    def __init__(self, console: Console | None = None, num_epochs: int = 1) -> None:
        self.console = console or Console(stderr=True)
        self.num_epochs = num_epochs
        self.progress: Progress | None = None
        self.task = None
        self.running_loss: float | None = None

    def on_epoch_start(self, epoch: int, num_steps: int) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.num_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            refresh_per_second=4,
            # No live bar when output goes to a file or a CI log: the epoch lines say it all.
            disable=not self.console.is_terminal,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=num_steps, loss="-", speed="-")
        self.running_loss = None

    def on_step_end(self, step: int, loss: float, images_per_second: float) -> None:
        # Exponential moving average, as Keras' progress bar shows a running mean.
        if self.running_loss is None:
            self.running_loss = loss
        else:
            self.running_loss = 0.98 * self.running_loss + 0.02 * loss
        self.progress.update(
            self.task,
            advance=1,
            loss=f"{self.running_loss:.4f}",
            speed=f"{images_per_second:,.0f}",
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._stop()
        parts = [f"epoch {epoch + 1}/{self.num_epochs}", f"loss {logs['loss']:.4f}"]
        if "val_precision_at_1" in logs:
            parts.append(f"val P@1 {logs['val_precision_at_1']:.4f}")
            parts.append(f"val MAP@R {logs['val_map_at_r']:.4f}")
        if "val_loss" in logs:
            parts.append(f"val loss {logs['val_loss']:.4f}")
        if "val_accuracy" in logs:
            parts.append(f"val accuracy {logs['val_accuracy']:.4f}")
        parts.append(f"{logs['seconds']:.1f}s")
        parts.append(f"{logs['images_per_second']:,.0f} img/s")
        self.console.print("  ".join(parts))

    def on_train_end(self) -> None:
        self._stop()

    def on_progress(self, what: str, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=True, disable=not self.console.is_terminal,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(what, total=total)
        self.progress.update(self.task, completed=done)
        if done >= total:
            self._stop()
            self.console.print(f"{what}: {total:,} images")

    def on_note(self, text: str) -> None:
        self.console.print(text)

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
