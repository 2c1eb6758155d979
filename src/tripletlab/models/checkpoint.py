"""Checkpoints: a folder with `model.safetensors` and `config.json`, written atomically.

A run keeps its checkpoints in `RUN_DIR/checkpoints/<name>/` and an `index.json` naming the
`last` and `best` ones; the index is replaced atomically after a new folder is complete, so a
reader always finds a whole checkpoint. Loading needs no pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from tripletlab.utils.io import atomic_write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
INDEX = "index.json"


def write_checkpoint(directory: Path, state: dict[str, Tensor], config: dict[str, Any]) -> Path:
    """Write weights and config into a new folder `directory` (replacing one of that name).

    The files are written into a temporary sibling folder that is renamed into place at the end.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, temp / WEIGHTS)
        (temp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for name in (WEIGHTS, CONFIG):
            with open(temp / name, "rb") as handle:
                os.fsync(handle.fileno())
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(temp, directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return directory


def resolve_checkpoint(path: Path, which: str = "best") -> Path:
    """The checkpoint folder for a run folder (its `best`, else `last`) or a checkpoint folder.

    Raises:
        FileNotFoundError: no checkpoint there.
    """
    path = Path(path)
    if (path / WEIGHTS).is_file() and (path / CONFIG).is_file():
        return path
    index_file = path / "checkpoints" / INDEX
    if index_file.is_file():
        index = json.loads(index_file.read_text())
        name = index.get(which) or index.get("last")
        if name and (path / "checkpoints" / name / WEIGHTS).is_file():
            return path / "checkpoints" / name
    raise FileNotFoundError(
        f"no checkpoint in {path}: expected a run folder (with checkpoints/index.json) "
        f"or a folder holding {WEIGHTS} and {CONFIG}"
    )


def read_checkpoint(path: Path, which: str = "best") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Weights and config of the checkpoint at `path` (see `resolve_checkpoint`)."""
    directory = resolve_checkpoint(path, which)
    config = json.loads((directory / CONFIG).read_text())
    return load_file(directory / WEIGHTS), config


def update_index(run_dir: Path, **entries: str) -> None:
    """Point `last` / `best` at checkpoint folders, atomically, and delete unreferenced ones."""
    folder = Path(run_dir) / "checkpoints"
    index_file = folder / INDEX
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    index.update(entries)
    atomic_write_json(index_file, index)
    keep = set(index.values())
    for child in folder.iterdir():
        if child.is_dir() and child.name not in keep and not child.name.startswith("."):
            shutil.rmtree(child)
