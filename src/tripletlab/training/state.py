"""Resumable training state: everything a run needs to go on exactly where it stopped.

Written into each checkpoint folder beside the weights, in the same atomic write: tensors in
`state.safetensors` (the raw weights, the weight average, the optimizer's moments, PyTorch's
random generator, the current epoch's explicit triplets) and the rest in `state.json`
(position, phase, scheduler, history, the triplet sampler's NumPy generator). No pickle.
Samplers of shuffled and PK batches need no state: an epoch's batches depend only on the seed
and the epoch, so a resumed epoch skips the batches already done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import save
from torch import Tensor

from tripletlab.data import TripletBatchSampler
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


def state_files(trainer: Any, epoch: int, step: int, sampler: Any) -> dict[str, bytes]:
    """The state files of `trainer` at batch `step` of `epoch` (step 0: before the epoch)."""
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
    meta: dict[str, Any] = {
        "version": STATE_VERSION,
        "epoch": epoch,
        "step": step,
        "phase": trainer.phase_number,
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars},
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "ema_steps": trainer.ema.steps if trainer.ema is not None else 0,
        "history": trainer.history.to_dict(),
        "epoch_partial": list(trainer.epoch_partial),
        "sampler": None,
    }
    if step and isinstance(sampler, TripletBatchSampler):
        triplets, generator = sampler.snapshot()
        tensors["sampler.triplets"] = torch.from_numpy(triplets)
        meta["sampler"] = {"rng": generator}
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    return {STATE_TENSORS: save(contiguous), STATE_META: json.dumps(meta).encode()}


def load_state(run: RunDir) -> TrainingState:
    """The state of the run's latest resumable checkpoint.

    Raises:
        FileNotFoundError: the run has no checkpoint yet.
        ValueError: its checkpoint holds no training state (written before resuming existed)
            or a damaged one.
    """
    folder = run.checkpoint("resume")
    if not (folder / STATE_TENSORS).is_file() or not (folder / STATE_META).is_file():
        raise ValueError(
            f"{folder} holds no training state to resume from (a run trained by an older "
            "tripletlab); start a new run, e.g. with --backbone-weights pointing at it"
        )
    meta = read_json(folder / STATE_META)
    if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION:
        raise ValueError(f"{folder / STATE_META}: not a training state this version can read")
    tensors = load_tensors(folder / STATE_TENSORS)
    return TrainingState(int(meta["epoch"]), int(meta["step"]), int(meta["phase"]), tensors, meta)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def restore_weights(trainer: Any, state: TrainingState) -> None:
    """Weights, weight average, history and PyTorch's generator as they were."""
    trainer.model.load_state_dict(_prefixed(state.tensors, "model."))
    if trainer.ema is not None:
        trainer.ema.model.load_state_dict(_prefixed(state.tensors, "ema."))
        trainer.ema.steps = int(state.meta["ema_steps"])
    history = state.meta["history"]
    trainer.history.step_losses = list(history["step_losses"])
    trainer.history.epochs = list(history["epochs"])
    trainer.history.best_epoch = history["best_epoch"]
    trainer.history.train_seconds = float(history["train_seconds"])
    trainer.epoch_partial = tuple(state.meta["epoch_partial"])
    torch.set_rng_state(state.tensors["rng.torch"])


def restore_optimizer(trainer: Any, state: TrainingState) -> None:
    """The optimizer's and the scheduler's state, into those `start_phase` just built."""
    saved = state.meta["optimizer"]
    moments: dict[int, dict[str, Any]] = {}
    for key, value in _prefixed(state.tensors, "optimizer.").items():
        index, name = key.split(".", 1)
        moments.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        moments.setdefault(int(index), {}).update(values)
    trainer.optimizer.load_state_dict({"state": moments, "param_groups": saved["param_groups"]})
    if trainer.scheduler is not None and state.meta["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state.meta["scheduler"])


def restore_sampler(sampler: Any, state: TrainingState) -> None:
    """Put an explicit-triplet sampler back at the triplets and generator it had mid-epoch."""
    if isinstance(sampler, TripletBatchSampler) and state.meta["sampler"] is not None:
        triplets = state.tensors["sampler.triplets"].numpy().astype(np.int64)
        sampler.resume_at(state.step, triplets, state.meta["sampler"]["rng"])
