"""Resumable training state: everything a run needs to go on exactly where it stopped.

Written into each checkpoint folder beside the weights, in the same atomic write: tensors in
`state.safetensors` (the raw weights, the weight average, the optimizer's moments, PyTorch's
random generator, the current epoch's explicit triplets) and the rest in `state.json`
(position, phase, scheduler, history, the triplet sampler's NumPy generator). No pickle.
Samplers of shuffled and PK batches need no state: an epoch's batches depend only on the seed
and the epoch, so a resumed epoch skips the batches already done (`ResumableSampler`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor

from tripletlab.runs import STATE_META, STATE_TENSORS, RunDir, load_tensors, read_json

STATE_VERSION = 1


@dataclass
class TrainingState:
    """Where training stopped: epoch `epoch` (0-based) has done `step` batches (0: it has not
    started); the optimizer state saved is that of phase number `phase`."""

    epoch: int
    step: int
    phase: int
    tensors: dict[str, Tensor]
    meta: dict[str, Any]


def state_files(trainer: Any, epoch: int, step: int, sampler: Any = None) -> dict[str, bytes]:
    """The state files of `trainer` at batch `step` of `epoch` (step 0: before the epoch; a
    mid-epoch state also needs the `sampler`, for its snapshot)."""
    tensors = {f"model.{k}": v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    if trainer.ema is not None:
        tensors |= {f"ema.{k}": v.detach().cpu() for k, v in trainer.ema.model.state_dict().items()}
    optimizer = trainer.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    history = trainer.history.to_dict()
    # Binary, not JSON: a long run with frequent checkpoints writes it often.
    tensors["history.step_losses"] = torch.tensor(history.pop("step_losses"), dtype=torch.float64)
    meta: dict[str, Any] = {
        "version": STATE_VERSION,
        "epoch": epoch,
        "step": step,
        "phase": trainer.phase_number,
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars},
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "ema_steps": trainer.ema.steps if trainer.ema is not None else 0,
        "history": history,
        "epoch_partial": list(trainer.epoch_partial),
        "sampler": None,
    }
    snapshot = sampler.snapshot() if step else None
    if snapshot is not None:  # explicit triplets: the epoch's triplets and NumPy generator
        tensors["sampler.triplets"] = torch.from_numpy(snapshot["triplets"])
        meta["sampler"] = {"rng": snapshot["rng"]}
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    return {STATE_TENSORS: save(contiguous), STATE_META: json.dumps(meta).encode()}


def load_state(run: RunDir) -> TrainingState:
    """The state of the run's latest resumable checkpoint, its form checked.

    Raises:
        FileNotFoundError: the run has no checkpoint yet.
        ValueError: its checkpoint holds no training state (written before resuming existed)
            or a damaged one (the message names the file).
    """
    folder = run.checkpoint("resume")
    if not (folder / STATE_TENSORS).is_file() or not (folder / STATE_META).is_file():
        raise ValueError(
            f"{folder} holds no training state to resume from (a run trained by an older "
            "tripletlab); start a new run, e.g. with --backbone-weights pointing at it"
        )
    meta = read_json(folder / STATE_META)
    if not _meta_is_valid(meta):
        raise ValueError(f"{folder / STATE_META} is damaged: not a training state of version "
                         f"{STATE_VERSION}")  # fmt: skip
    tensors = load_tensors(folder / STATE_TENSORS)
    for key in ("rng.torch", "history.step_losses"):
        if key not in tensors:
            raise ValueError(f"{folder / STATE_TENSORS} is damaged: it lacks {key}")
    return TrainingState(meta["epoch"], meta["step"], meta["phase"], tensors, meta)


def _meta_is_valid(meta: Any) -> bool:
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION:
        return False
    history, optimizer, partial = (
        meta.get("history"),
        meta.get("optimizer"),
        meta.get("epoch_partial"),
    )
    return (
        all(count(meta.get(key)) for key in ("epoch", "step", "phase", "ema_steps"))
        and isinstance(history, dict) and isinstance(history.get("epochs"), list)
        and isinstance(optimizer, dict) and isinstance(optimizer.get("param_groups"), list)
        and isinstance(optimizer.get("scalars"), dict)
        and isinstance(partial, list) and len(partial) == 2
        and isinstance(meta.get("scheduler"), (dict, type(None)))
        and isinstance(meta.get("sampler"), (dict, type(None)))
    )  # fmt: skip


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def restore(trainer: Any, state: TrainingState, sampler: Any) -> None:
    """Weights, weight average, history, PyTorch's generator and the sampler's position as
    they were. A state that does not fit this run (damaged, or another model) is a ValueError.
    """
    try:
        trainer.model.load_state_dict(_prefixed(state.tensors, "model."))
        if trainer.ema is not None:
            trainer.ema.model.load_state_dict(_prefixed(state.tensors, "ema."))
            trainer.ema.steps = state.meta["ema_steps"]
        history = state.meta["history"]
        trainer.history.step_losses = state.tensors["history.step_losses"].tolist()
        trainer.history.epochs = list(history["epochs"])
        trainer.history.best_epoch = history.get("best_epoch")
        trainer.history.train_seconds = float(history.get("train_seconds", 0.0))
        trainer.epoch_partial = (int(state.meta["epoch_partial"][0]),
                                 float(state.meta["epoch_partial"][1]))  # fmt: skip
        torch.set_rng_state(state.tensors["rng.torch"])
        snapshot = None
        if state.meta["sampler"] is not None:
            snapshot = {"triplets": state.tensors["sampler.triplets"].numpy(),
                        "rng": state.meta["sampler"]["rng"]}  # fmt: skip
        sampler.resume_at(state.step, snapshot)
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"the training state does not fit this run ({_short(error)})") from None


def restore_optimizer(trainer: Any, state: TrainingState) -> None:
    """The optimizer's and the scheduler's state, into those `start_phase` just built."""
    saved = state.meta["optimizer"]
    moments: dict[int, dict[str, Any]] = {}
    try:
        for key, value in _prefixed(state.tensors, "optimizer.").items():
            index, name = key.split(".", 1)
            moments.setdefault(int(index), {})[name] = value
        for index, values in saved["scalars"].items():
            moments.setdefault(int(index), {}).update(values)
        trainer.optimizer.load_state_dict({"state": moments, "param_groups": saved["param_groups"]})
        if trainer.scheduler is not None and state.meta["scheduler"] is not None:
            trainer.scheduler.load_state_dict(state.meta["scheduler"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"the optimizer state does not fit this run ({_short(error)})") from None


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:197] + "..."
