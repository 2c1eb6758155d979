"""The names of the files of a run folder, reading its JSON files, and naming a new one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tripletlab.config import RunConfig

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
CHECKPOINT_INDEX = "index.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS = "plots"
AUGMENT_FILE = "augment.png"
SAMPLES_FILE = "samples.png"  # in plots/
TENSORBOARD = "tensorboard"
PROJECTOR = "projector"
# TensorBoard's projector reads this file in a log folder (projector/ and tensorboard/).
PROJECTOR_CONFIG = "projector_config.pbtxt"
ONNX_FILE = "model.onnx"
INDEX = "index"
# Held (flock) by the process training the run.
LOCK_FILE = ".lock"
# Inside a checkpoint folder: the weights, their config, and (runs trained since resuming was
# added) what `tripletlab train --resume` needs to continue exactly: tensors and the rest.
WEIGHTS = "model.safetensors"
CHECKPOINT_CONFIG = "config.json"
STATE_TENSORS = "state.safetensors"
STATE_META = "state.json"


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object of a run file; a damaged one (or one that is not an object, such as
    `[]`) is a ValueError naming the file."""
    try:
        payload = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is damaged: expected a JSON object, got {type(payload).__name__}")
    return payload


def quantized_path(onnx_file: Path, quantized: str) -> Path:
    """Where the `quantized` (e.g. int8) version of an ONNX model goes: `model.int8.onnx`."""
    onnx_file = Path(onnx_file)
    return onnx_file.with_name(f"{onnx_file.stem}.{quantized}{onnx_file.suffix}")


def new_run_folder(config: RunConfig, base: Path) -> Path:
    """A new, empty `base/<time>-<backbone>-<loss>` folder that reuses no existing name.

    Raises:
        ValueError: no new name could be made.
    """
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model.backbone}-{config.loss.name}"
    for attempt in range(1000):
        candidate = base / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise ValueError(f"could not create a new run folder under {base}")
