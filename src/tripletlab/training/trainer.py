"""The `Trainer`: optimisation steps, the epoch loop, validation and checkpoints."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tripletlab.config import PhaseConfig, RunConfig
from tripletlab.data import ImageSet, build_sampler
from tripletlab.evaluation.retrieval import retrieval_metrics
from tripletlab.losses import TripletMarginLoss, build_loss
from tripletlab.models import Embedder, TripletNet
from tripletlab.models.freezing import freeze, set_train_mode, unfreeze
from tripletlab.models.weights import load_backbone_weights
from tripletlab.runs import RunDir
from tripletlab.training.callbacks import Callback
from tripletlab.training.divergence import (
    COLLAPSE_PROBE,
    TrainingDivergedError,
    check_collapse,
    check_finite,
)
from tripletlab.training.ema import WeightAverage
from tripletlab.training.history import History, is_better
from tripletlab.training.phases import build_optimizer, build_scheduler
from tripletlab.training.state import TrainingState, restore, restore_optimizer, state_files
from tripletlab.utils.allocator import tune_malloc


class Trainer:
    """Trains an `Embedder` and checkpoints it into a run folder.

    Mode "online" feeds batches of images to an in-batch loss (semi-hard, hard, batch-all);
    mode "triplets" feeds explicit (anchor, positive, negative) batches through a `TripletNet`
    sharing the embedder, with the triplet margin loss. Building a trainer builds the model and
    loads backbone weights (not when `backbone_weights` is False: a resumed run has its own),
    and writes nothing; `fit` writes into the run folder.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        callbacks: list[Callback] | None = None,
        backbone_weights: bool = True,
    ) -> None:
        tune_malloc()  # small-batch steps otherwise re-fault their memory: about 2x slower
        self.config = config
        self.run: RunDir | None = None  # set by `fit`
        self.train_set: ImageSet | None = None  # set by `fit`
        self.callbacks = callbacks or []
        torch.manual_seed(config.train.seed)
        self.model = Embedder(config.model)
        self.triplet_net: TripletNet | None = None
        if config.train.mode == "triplets":
            self.triplet_net = TripletNet(self.model)
            self.loss_fn = TripletMarginLoss(config.loss.margin, config.loss.distance)
        else:
            self.loss_fn = build_loss(config.loss)
        self.weights_report: dict[str, list] | None = None
        if config.model.backbone_weights and backbone_weights:
            self.weights_report = load_backbone_weights(
                self.model.backbone, Path(config.model.backbone_weights)
            )
        bn_train = config.train.bn_train
        # Transfer learning keeps the loaded BatchNorm statistics unless told otherwise.
        self.bn_train = bn_train if bn_train is not None else not config.model.backbone_weights
        self.phase: PhaseConfig | None = None
        self.phase_number = 1
        self.epoch_partial: tuple[int, float] = (0, 0.0)  # images and loss sum of this epoch
        self.lr = 0.0  # the learning rate of the last step
        self.optimizer = build_optimizer(self.model, config.resolved_phases()[0])
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.steps_per_epoch = 1
        self.history = History()
        self.ema: WeightAverage | None = None
        if config.train.ema is not None:
            self.ema = WeightAverage(self.model, config.train.ema)

    @property
    def ema_model(self) -> Embedder | None:
        """The weight average (None without `train.ema`)."""
        return self.ema.model if self.ema is not None else None

    @property
    def evaluated_model(self) -> Embedder:
        """The model validated and checkpointed: the weight average if there is one."""
        return self.ema.model if self.ema is not None else self.model

    def update_ema(self) -> None:
        """Move the weight average (if any) towards the current weights."""
        if self.ema is not None:
            self.ema.update(self.model)

    def start_phase(self, phase: PhaseConfig, number: int = 1) -> None:
        """Freeze or unfreeze the backbone as phase `number` says, then rebuild the optimizer."""
        self.phase_number = number
        if phase.freeze == "backbone":
            freeze(self.model.backbone)
        else:
            unfreeze(self.model)
        self.phase = phase
        self.optimizer = build_optimizer(self.model, phase)
        self.scheduler = build_scheduler(self.optimizer, phase, self.steps_per_epoch)

    def compute_loss(self, images: Tensor, labels: Tensor, batch: Tensor) -> Tensor:
        """Loss of one batch of indices into `images` / `labels`: (B,) online, (B, 3) triplets."""
        if self.triplet_net is not None:
            anchor, positive, negative = (images[batch[:, i]] for i in range(3))
            return self.loss_fn(self.triplet_net(anchor, positive, negative))
        return self.loss_fn(self.model(images[batch]), labels[batch])

    def train_step(self, images: Tensor, labels: Tensor, batch: Tensor) -> float:
        """One optimisation step: uint8 images (N, H, W[, C]), labels (N,), batch indices."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(images, labels, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the loss became {value} at step {len(self.history.step_losses) + 1}; "
                f"training stopped, {self._kept()} (try a lower --lr)"
            )
        loss.backward()
        self.lr = self.optimizer.param_groups[0]["lr"]  # the one this step uses
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.update_ema()
        return value

    def run_epoch(
        self, epoch: int, images: Tensor, labels: Tensor, sampler: Any, start_step: int = 0
    ) -> dict[str, Any]:
        """Train one epoch (from batch `start_step` when resuming: the sampler was told with
        `resume_at`); returns its loss, duration and throughput. Writes a resumable checkpoint
        every `train.checkpoint_every` steps."""
        set_train_mode(self.model, bn_train=self.bn_train)
        sampler.set_epoch(epoch)
        for callback in self.callbacks:
            callback.on_epoch_start(epoch, len(sampler))
        start = time.perf_counter()
        seen, total = self.epoch_partial if start_step else (0, 0.0)
        seen_before, every = seen, self.config.train.checkpoint_every
        for step, batch in enumerate(sampler, start=start_step + 1):
            value = self.train_step(images, labels, torch.from_numpy(batch))
            self.history.step_losses.append(value)
            seen += batch.size  # images: three per explicit triplet
            total += value * batch.size
            self.epoch_partial = (seen, total)
            speed = (seen - seen_before) / max(time.perf_counter() - start, 1e-9)
            for callback in self.callbacks:
                callback.on_step_end(len(self.history.step_losses), value, speed)
            if every and len(self.history.step_losses) % every == 0 and step < len(sampler):
                self.checkpoint_step(epoch, step, sampler)
        self.epoch_partial = (0, 0.0)
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch + 1,
            "loss": total / max(seen, 1),
            "seconds": seconds,
            "images_per_second": (seen - seen_before) / max(seconds, 1e-9),
        }

    def _kept(self) -> str:
        """What is left after training stops: the checkpoints written before, or none."""
        if self.run is None or not self.run.has_checkpoint():
            return "no checkpoint was written"
        return f"the checkpoints written before in {self.run} are intact"

    def check_health(self, epoch: int, val: ImageSet | None) -> dict[str, float]:
        """Refuse weights that are not finite and an embedding that collapsed to one point,
        before anything of this epoch is saved; returns the validation metrics (none without
        validation images). Raises `TrainingDivergedError`."""
        model = self.evaluated_model
        check_finite(model, epoch, self._kept())
        probe = val if val is not None and len(val) > 1 else None
        images = probe.images if probe is not None else self.train_set.images[:COLLAPSE_PROBE]
        # Single views: the test-time views of `model.tta_shift` would make each epoch's check
        # five times longer.
        try:
            embeddings = model.embed(
                images, batch_size=self.config.train.eval_batch_size, views=False
            )
        except ValueError as error:  # finite weights whose embeddings overflow
            raise TrainingDivergedError(
                f"{error} in epoch {epoch + 1}; training stopped, {self._kept()}"
            ) from None
        what = "validation" if probe is not None else "probed training"
        check_collapse(embeddings, epoch, what, self._kept())
        if probe is None:
            return {}
        metrics = retrieval_metrics(embeddings, probe.labels)
        return {f"val_{k}": v for k, v in metrics.items() if k != "num_queries"}

    def checkpoint(self, epoch: int, logs: dict[str, Any]) -> None:
        """Save this epoch with the state to resume after it; point `last` (and `resume`) at
        it, and `best` too if it `is_better` than the best so far."""
        name = f"epoch-{epoch + 1:04d}"
        best = self.history.best_epoch
        entries = {"last": name, "resume": name}
        if is_better(logs, None if best is None else self.history.epochs[best - 1]):
            entries["best"] = name
            self.history.best_epoch = epoch + 1
        extra = {"run": self.config.to_dict(), "epoch": epoch + 1, "logs": logs}
        files = state_files(self, epoch + 1, 0)  # before the next epoch: no sampler state
        self.evaluated_model.save(self.run.checkpoints / name, extra, files)
        self.run.point_checkpoints(**entries)

    def checkpoint_step(self, epoch: int, step: int, sampler: Any) -> None:
        """Save a resumable checkpoint after batch `step` of `epoch` (not validated: never the
        best one); point `resume` at it."""
        check_finite(self.evaluated_model, epoch, self._kept())
        name = f"step-{len(self.history.step_losses):07d}"
        extra = {"run": self.config.to_dict(), "epoch": epoch + 1, "step": step}
        files = state_files(self, epoch, step, sampler)
        self.evaluated_model.save(self.run.checkpoints / name, extra, files)
        self.run.point_checkpoints(resume=name)

    def fit(
        self,
        train: ImageSet,
        val: ImageSet | None = None,
        *,
        run_dir: str | Path | RunDir,
        resume: TrainingState | None = None,
    ) -> History:
        """Train for the configured phases; validate, checkpoint and log each epoch.

        Args:
            train: the training images.
            val: validation images (None or fewer than two: no validation; the best epoch is
                then the one with the lowest training loss).
            run_dir: the run folder the checkpoints and `history.json` go to.
            resume: the state of a run that stopped (`tripletlab.training.state.load_state`):
                go on from there, with the same result as a run that never stopped.
        """
        images, labels, sampler = self._setup(train, run_dir, resume)
        schedule = [(n, p) for n, p in enumerate(self.config.resolved_phases(), 1)
                    for _ in range(p.epochs)]  # fmt: skip
        first = resume.epoch if resume is not None else 0
        start = time.perf_counter() - self.history.train_seconds
        for callback in self.callbacks:
            callback.on_train_start(self)
        try:
            for epoch in range(first, len(schedule)):
                number, phase = schedule[epoch]
                if epoch == first or schedule[epoch - 1][0] != number:
                    self.start_phase(phase, number)
                    if resume is not None and epoch == first and resume.phase == number:
                        restore_optimizer(self, resume)
                step = resume.step if resume is not None and epoch == first else 0
                logs = self.run_epoch(epoch, images, labels, sampler, step)
                logs.update(phase=number, lr=phase.lr)
                self._end_epoch(epoch, logs, val, start)
        finally:
            for callback in self.callbacks:
                callback.on_train_end()
        return self.history

    def _setup(
        self, train: ImageSet, run_dir: str | Path | RunDir, resume: TrainingState | None
    ) -> tuple[Tensor, Tensor, Any]:
        """The run folder, the training tensors and the sampler, restored when resuming."""
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run.remove_partial_writes()  # left by a process killed while writing
        self.train_set = train
        eval_batch = self.config.train.eval_batch_size
        sampler = build_sampler(
            self.config,
            train.labels,
            lambda: self.model.embed(train.images, batch_size=eval_batch, views=False),
        )
        self.steps_per_epoch = len(sampler)
        if resume is not None:
            restore(self, resume, sampler)
            # A kill between a checkpoint and history.json leaves the latter behind.
            self.run.write_history(self.history.to_dict())
        return torch.from_numpy(train.images), torch.from_numpy(train.labels).long(), sampler

    def _end_epoch(
        self, epoch: int, logs: dict[str, Any], val: ImageSet | None, start: float
    ) -> None:
        """Check, validate, checkpoint and log a finished epoch."""
        logs.update(self.check_health(epoch, val))
        self.history.epochs.append(logs)
        self.history.train_seconds = time.perf_counter() - start
        self.checkpoint(epoch, logs)
        self.run.write_history(self.history.to_dict())
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
