"""Checkpoints: a folder with `model.safetensors` and `config.json`, written atomically (into
a temporary sibling folder, renamed into place) and read without any pickle."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from tripletlab.runs.files import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_INDEX,
    CHECKPOINTS,
    WEIGHTS,
    read_json,
)
from tripletlab.utils.io import atomic_folder, sha256_file


def load_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; a truncated, damaged or non-safetensors file (a
    pickle renamed, say) is a ValueError naming the file, never an unpickle."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from None


def write_checkpoint(
    directory: Path,
    state: dict[str, Tensor],
    config: dict[str, Any],
    files: dict[str, bytes] | None = None,
) -> Path:
    """Write weights, config and `files` (name -> content, e.g. a training state) into a new
    folder `directory` (replacing one of that name).

    The files are written into a temporary sibling folder that is renamed into place at the end:
    a reader, or a process resuming after a kill, only ever sees whole checkpoints.
    """
    with atomic_folder(Path(directory)) as temp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, temp / WEIGHTS)
        (temp / CHECKPOINT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for name, content in (files or {}).items():
            (temp / name).write_bytes(content)
    # The rename reached the disk (atomic_folder syncs the parent) before any index names it.
    return Path(directory)


def checkpoint_sha256(path: str | os.PathLike, which: str = "best") -> str:
    """SHA-256 of the weights of the checkpoint at `path` (see `resolve_checkpoint`): what an
    index records of the model that made its vectors."""
    return sha256_file(resolve_checkpoint(path, which) / WEIGHTS)


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint folder for a run folder (its `which` one, else `last`, whichever exists)
    or a checkpoint folder itself.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: a damaged index (not a mapping of names of folders inside checkpoints/).
    """
    path = Path(path)
    if (path / WEIGHTS).is_file() and (path / CHECKPOINT_CONFIG).is_file():
        return path
    index_file = path / CHECKPOINTS / CHECKPOINT_INDEX
    if index_file.is_file():
        index = read_index(index_file)
        for name in (index.get(which), index.get("last")):
            if name and (path / CHECKPOINTS / name / WEIGHTS).is_file():
                return path / CHECKPOINTS / name
        if index.get("resume"):
            raise FileNotFoundError(
                f"{path} has no finished epoch yet, only a checkpoint to resume from: "
                f"tripletlab train --resume {shlex.quote(str(path))}"
            )
    raise FileNotFoundError(
        f"no checkpoint in {path}: expected a run folder (with {CHECKPOINTS}/{CHECKPOINT_INDEX}) "
        f"or a folder holding {WEIGHTS} and {CHECKPOINT_CONFIG}"
    )


def read_index(index_file: Path) -> dict[str, str]:
    """A checkpoint index: entry (`last`, `best`, `resume`) -> folder name in the same folder.

    Raises:
        ValueError: not such a mapping; a name that is not a plain folder name (a path that
            leads elsewhere included).
    """
    index = read_json(index_file)
    valid = isinstance(index, dict) and all(
        isinstance(name, str) and name and "/" not in name and "\\" not in name
        and not name.startswith(".")
        for name in index.values()
    )  # fmt: skip
    if not valid:
        raise ValueError(f"{index_file} is damaged: expected names of checkpoint folders")
    return index


def read_checkpoint(
    path: str | os.PathLike, which: str = "best"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Weights and config of the checkpoint at `path` (see `resolve_checkpoint`)."""
    directory = resolve_checkpoint(path, which)
    config = read_json(directory / CHECKPOINT_CONFIG)
    return load_tensors(directory / WEIGHTS), config
