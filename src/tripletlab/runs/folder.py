"""`RunDir`: a run folder, where each of its files lives, creating and opening runs."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tripletlab.config import RunConfig, load_yaml, upgrade_saved
from tripletlab.runs.checkpoints import read_index, resolve_checkpoint
from tripletlab.runs.files import (
    AUGMENT_FILE,
    CHECKPOINT_INDEX,
    CHECKPOINTS,
    CONFIG_FILE,
    HISTORY_FILE,
    INDEX,
    LOCK_FILE,
    METRICS_FILE,
    ONNX_FILE,
    PLOTS,
    PROJECTOR,
    REPORT_FILE,
    SAMPLES_FILE,
    TENSORBOARD,
    new_run_folder,
    quantized_path,
    read_json,
)
from tripletlab.utils.io import atomic_write_bytes, atomic_write_json, restore_interrupted


class RunDir:
    """A run folder: where each of its files lives, and reading and writing them.

    `RunDir.create` makes a new run (folder and `config.yaml`), `RunDir.open` an existing one.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def create(
        cls, config: RunConfig, path: str | os.PathLike | None = None, base: Path = Path("runs")
    ) -> RunDir:
        """Make a run folder and write `config.yaml` into it.

        The folder is `path` if given (it must be empty or absent), else a new
        `base/<time>-<backbone>-<loss>` that never reuses an existing name.

        Raises:
            ValueError: `path` already holds something, or no new name could be made.
        """
        if path is not None:
            folder = Path(path)
            cls.check_new(folder)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = new_run_folder(config, Path(base))
        run = cls(folder)
        atomic_write_bytes(
            run.config_file, yaml.safe_dump(config.to_dict(), sort_keys=False).encode()
        )
        return run

    @classmethod
    @contextmanager
    def start(
        cls, config: RunConfig, path: str | os.PathLike | None = None, base: Path = Path("runs")
    ) -> Iterator[RunDir]:
        """`create` a run under its lock, held until the block ends: of two trainings started
        into one folder at once, one claims it and the other stops with nothing written.

        Raises:
            ValueError: `path` already holds something, or another process holds it.
        """
        existed = path is not None and Path(path).exists()
        folder = Path(path) if path is not None else new_run_folder(config, Path(base))
        locked = (folder / LOCK_FILE).exists()
        with cls(folder).lock():
            try:
                run = cls.create(config, folder)
            except BaseException:  # refused: leave the folder as it was found
                if not locked:
                    (folder / LOCK_FILE).unlink(missing_ok=True)
                if not existed:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            yield run

    @staticmethod
    def check_new(path: str | os.PathLike | None) -> None:
        """Refuse a run folder that already holds something (None: a new one will be named).

        Raises:
            ValueError: `path` is not empty.
        """
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise ValueError(f"run folder {path} is a file; choose another --run-dir")
        if (
            path is not None
            and Path(path).exists()
            and any(  # a killed write, or the lock of a start
                not (child.name.startswith(".") and child.name.endswith(".tmp"))
                and child.name != LOCK_FILE
                for child in Path(path).iterdir()
            )
        ):
            raise ValueError(
                f"run folder {path} is not empty; choose another --run-dir or remove it"
            )

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run folder.

        Raises:
            FileNotFoundError: `path` holds no `config.yaml`.
        """
        run = cls(path)
        if not run.config_file.is_file():
            raise FileNotFoundError(f"{run.path} is not a tripletlab run folder (no {CONFIG_FILE})")
        return run

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def augment_file(self) -> Path:
        return self.path / AUGMENT_FILE

    @property
    def samples_file(self) -> Path:
        return self.path / PLOTS / SAMPLES_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def projector(self) -> Path:
        return self.path / PROJECTOR

    @property
    def index(self) -> Path:
        """Where a gallery index of the run's embeddings goes (`index/`)."""
        return self.path / INDEX

    def onnx_file(self, quantized: str | None = None) -> Path:
        """`model.onnx`, or `model.<quantized>.onnx` (e.g. int8)."""
        path = self.path / ONNX_FILE
        return quantized_path(path, quantized) if quantized else path

    @cached_property
    def config(self) -> RunConfig:
        """The resolved config the run was trained with (read once)."""
        return self.read_config()

    def read_config(self) -> RunConfig:
        """The resolved config the run was trained with, read from `config.yaml`.

        Raises:
            FileNotFoundError: no `config.yaml`.
            ValueError: it is not a valid run config.
        """
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a tripletlab run folder (no {CONFIG_FILE})"
            )
        return RunConfig.from_dict(upgrade_saved(load_yaml(self.config_file)))

    def read_metrics(self) -> dict[str, Any]:
        """`metrics.json` (empty when there is none yet)."""
        return read_json(self.metrics_file) if self.metrics_file.is_file() else {}

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Merge `metrics` into `metrics.json` (other keys kept), atomically; returns the whole."""
        merged = {**self.read_metrics(), **metrics}
        atomic_write_json(self.metrics_file, merged)
        return merged

    def read_history(self) -> dict[str, Any]:
        """`history.json` (empty when there is none)."""
        return read_json(self.history_file) if self.history_file.is_file() else {}

    def write_history(self, history: dict[str, Any]) -> None:
        """Replace `history.json`, atomically."""
        atomic_write_json(self.history_file, history)

    @contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run for one training process: a second `train --resume` of a run still
        training would race it on the checkpoints and delete its partial writes.

        Raises:
            ValueError: another process holds the run.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(
                    f"{self.path} is being trained by another tripletlab process"
                ) from None
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has_checkpoint(self) -> bool:
        """Whether a whole checkpoint has been written (its index exists)."""
        return (self.checkpoints / CHECKPOINT_INDEX).is_file()

    def checkpoint(self, which: str = "best") -> Path:
        """The folder of the `best` (else `last`) or `last` checkpoint.

        Raises:
            FileNotFoundError: the run has no checkpoint yet.
        """
        return resolve_checkpoint(self.path, which)

    def remove_partial_writes(self) -> list[Path]:
        """Delete what an interrupted atomic write left behind (hidden temporary checkpoint
        folders and `.*.tmp` files); only the one process training a run writes into it.
        Returns what was removed."""
        removed = []
        if self.checkpoints.is_dir():  # a checkpoint swap cut halfway: the old one back first
            for child in list(self.checkpoints.iterdir()):
                if child.name.startswith(".") and ".old." in child.name and child.is_dir():
                    restore_interrupted(self.checkpoints / child.name[1:].split(".old.")[0])
        for folder in (self.path, self.checkpoints):
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if not child.name.startswith("."):
                    continue
                if child.is_dir() and folder == self.checkpoints:
                    shutil.rmtree(child, ignore_errors=True)
                elif child.is_file() and child.name.endswith(".tmp"):
                    child.unlink(missing_ok=True)
                else:
                    continue
                removed.append(child)
        return removed

    def point_checkpoints(self, **entries: str) -> None:
        """Point `last`, `best` and `resume` at checkpoint folders, atomically, and delete the
        folders no entry names any more."""
        index_file = self.checkpoints / CHECKPOINT_INDEX
        index = read_index(index_file) if index_file.is_file() else {}
        index.update(entries)
        atomic_write_json(index_file, index)
        keep = set(index.values())
        for child in self.checkpoints.iterdir():
            unnamed = child.name not in keep and not child.name.startswith(".")
            if unnamed and child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
