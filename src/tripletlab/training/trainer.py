"""The `Trainer`: optimisation steps, the epoch loop, validation and checkpoints."""

from __future__ import annotations

import gc
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.config import PhaseConfig, RunConfig
from tripletlab.data import ImageSet, RankShard
from tripletlab.data.pixel_cache import RowReader
from tripletlab.losses import TripletMarginLoss, build_loss
from tripletlab.models import Embedder
from tripletlab.models.batch_part import batch_part
from tripletlab.models.freezing import apply_phase_freeze, check_phase_freezes, set_train_mode
from tripletlab.models.weights import load_backbone_weights
from tripletlab.runs import RunDir
from tripletlab.training.callbacks import Callback
from tripletlab.training.distributed import GlobalBatchLoss, data_parallel, world
from tripletlab.training.divergence import TrainingDivergedError
from tripletlab.training.ema import WeightAverage
from tripletlab.training.epoch_end import end_epoch, kept, save_step
from tripletlab.training.features import FeatureCache, caches_features
from tripletlab.training.global_layers import for_global_batch
from tripletlab.training.history import History
from tripletlab.training.phases import build_optimizer, build_scheduler
from tripletlab.training.preparation import prepare_fit
from tripletlab.training.state import TrainingState, restore_optimizer
from tripletlab.training.step import StepForward
from tripletlab.training.validation import phase_stopped, resolve_monitor, validates
from tripletlab.utils.allocator import tune_malloc
from tripletlab.utils.pages import release_pages

Images = Tensor | RowReader  # uint8 (N, H, W[, C]); indexing by (B,) indices gives (B, ...)


class Trainer:
    """Trains an `Embedder` and checkpoints it into a run folder.

    Mode "online" feeds batches of images to an in-batch loss (semi-hard, hard, batch-all);
    mode "triplets" feeds explicit (anchor, positive, negative) batches through a `TripletNet`
    sharing the embedder, with the triplet margin loss. Losses with cross-entropy also train
    the model's classifier (`model.classes` must be set: `train_run` sets it from the data).
    A phase that freezes the whole backbone runs it in inference mode and, where nothing is
    augmented, trains on its cached outputs (`FeatureCache`). Building a trainer builds the
    model, checks every phase's freezing against it and loads backbone weights (not when
    `backbone_weights` is False: a resumed run has its own), and writes nothing; `fit` writes
    into the run folder.

    Under `torch.distributed` (torchrun) each rank trains on its part of every global batch
    (`RankShard`), the loss is that of the global batch (`GlobalBatchLoss`), BatchNorm uses the
    global batch's statistics and DDP averages the gradients: the same steps as one process on
    the global batch. Only rank 0 writes (its `run_dir`; the others' is ignored).
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
        if config.loss.classifies and not config.model.classes:
            raise ValueError(
                f"loss {config.loss.name} trains a classifier: set model.classes (and "
                "model.class_names), which train_run takes from the training data"
            )
        torch.manual_seed(config.train.seed)
        self.model = Embedder(config.model)
        if world()[1] > 1:
            for_global_batch(self.model)
        self.step_forward = StepForward(
            self.model, config.train.mode == "triplets", config.train.precision
        )
        self.triplet_net = self.step_forward.triplet_net
        self.forward_step: torch.nn.Module = self.step_forward  # in DDP under torchrun
        if config.train.mode == "triplets":
            self.loss_fn = TripletMarginLoss(config.loss.margin, config.loss.distance)
        else:
            self.loss_fn = build_loss(config.loss, config.model.classes)
        self.step_loss = GlobalBatchLoss(self.loss_fn)  # the loss of the global batch
        self.classifies = config.loss.classifies
        check_phase_freezes(self.model, [phase.freeze for phase in config.resolved_phases()])
        self.features: FeatureCache | None = None  # the frozen backbone's, in such a phase
        # Per-triplet values of the last validation, by tag (`val/triplet_diff`, ...), for plots.
        self.triplet_values: dict[str, np.ndarray] = {}
        self.monitor = resolve_monitor(config, True)  # set again by `fit`, knowing the data
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
        """Freeze what phase `number` freezes, cache the backbone's features where that
        applies, then rebuild the optimizer.

        Raises:
            ValueError: `freeze: until:<layer>` naming no layer of the backbone.
        """
        self.phase_number = number
        apply_phase_freeze(self.model, phase.freeze)
        self.phase = phase
        if self.features is not None:
            self.features.close()
            self.features = None
        if caches_features(self.config, self.model, phase) and self.train_set is not None:
            self.features = FeatureCache(
                self.model, torch.from_numpy(self.train_set.images),
                self.config.train.eval_batch_size, self._cache_progress,
            )  # fmt: skip
        self.optimizer = build_optimizer(self.model, phase)
        self.scheduler = build_scheduler(self.optimizer, phase, self.steps_per_epoch)
        self.forward_step = self.step_forward  # DDP reduces what trains: a new one each phase
        unused = self.model.classifier is not None and not self.classifies
        self.forward_step = data_parallel(self.step_forward, find_unused=unused)

    def _cache_progress(self, done: int, total: int) -> None:
        for callback in self.callbacks:
            callback.on_progress("backbone features", done, total)

    def compute_loss(self, images: Images, labels: Tensor, batch: Tensor) -> Tensor:
        """Loss of one batch of indices into `images` / `labels`: (B,) online, (B, 3) triplets
        (under torchrun: this rank's part of the global batch; the global batch's loss times
        the world size)."""
        cached = self.features is not None
        source = self.features if cached else images
        picks = [batch[:, i] for i in range(3)] if self.triplet_net is not None else [batch]
        inputs = [source[p].to(self.model.head_device) if cached else source[p] for p in picks]
        embeddings, logits = self.forward_step(*inputs, cached=cached)
        if self.triplet_net is not None:
            return self.step_loss(embeddings)
        if self.classifies:
            return self.step_loss(embeddings, logits, labels[batch])
        return self.step_loss(embeddings, labels[batch])

    def train_step(self, images: Images, labels: Tensor, batch: Tensor) -> float:
        """One optimisation step: uint8 images (N, H, W[, C]), labels (N,), batch indices."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(images, labels, batch)
        value = GlobalBatchLoss.unscaled(float(loss.detach()))
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the loss became {value} at step {len(self.history.step_losses) + 1}; "
                f"training stopped, {kept(self)} (try a lower --lr)"
            )
        loss.backward()
        self.lr = self.optimizer.param_groups[0]["lr"]  # the one this step uses
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.update_ema()
        return value

    def run_epoch(
        self, epoch: int, images: Images, labels: Tensor, sampler: Any, start_step: int = 0
    ) -> dict[str, Any]:
        """Train one epoch (from batch `start_step` when resuming: the sampler was told with
        `resume_at`); returns its loss, duration and throughput. Writes a resumable checkpoint
        every `train.checkpoint_every` steps."""
        set_train_mode(self.model, bn_train=self.bn_train)
        if self.phase is not None and self.phase.freeze == "backbone":
            self.model.backbone.eval()  # Keras' training=False: BatchNorm and dropout too
        sampler.set_epoch(epoch)
        for callback in self.callbacks:
            callback.on_epoch_start(epoch, len(sampler) - start_step)  # what is left to run
        start = time.perf_counter()
        seen, total = self.epoch_partial if start_step else (0, 0.0)
        seen_before, every = seen, self.config.train.checkpoint_every
        sharded = isinstance(sampler, RankShard)
        for step, batch in enumerate(sampler, start=start_step + 1):
            whole = sampler.batch if sharded else batch  # the global batch
            with batch_part(sampler.start, len(whole)) if sharded else nullcontext():
                value = self.train_step(images, labels, torch.from_numpy(batch))
            self.history.step_losses.append(value)
            if step % 64 == 0:  # memory-mapped images: the pages read leave memory
                release_pages(self.train_set.images)
            seen += whole.size  # images: three per explicit triplet
            total += value * whole.size
            self.epoch_partial = (seen, total)
            speed = (seen - seen_before) / max(time.perf_counter() - start, 1e-9)
            for callback in self.callbacks:
                callback.on_step_end(len(self.history.step_losses), value, speed)
            if every and len(self.history.step_losses) % every == 0 and step < len(sampler):
                save_step(self, epoch, step, sampler)
        self.epoch_partial = (0, 0.0)
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch + 1,
            "loss": total / max(seen, 1),
            "seconds": seconds,
            "images_per_second": (seen - seen_before) / max(seconds, 1e-9),
        }

    def fit(
        self,
        train: ImageSet,
        val: ImageSet | None = None,
        *,
        run_dir: str | Path | RunDir | None,
        resume: TrainingState | None = None,
    ) -> History:
        """Train for the configured phases; validate, checkpoint and log each epoch.

        Args:
            train: the training images.
            val: validation images (None or fewer than two: no validation; the best epoch is
                then the one with the lowest training loss). Its retrieval metrics need a
                class with two images.
            run_dir: the run folder the checkpoints and `history.json` go to (ignored on the
                ranks but 0 of a distributed run, which write nothing).
            resume: the state of a run that stopped (`tripletlab.training.state.load_state`):
                go on from there, with the same result as a run that never stopped.
        """
        self.monitor = resolve_monitor(self.config, validates(val))
        images, labels, sampler = prepare_fit(self, train, run_dir, resume)
        schedule = [(n, p) for n, p in enumerate(self.config.resolved_phases(), 1)
                    for _ in range(p.epochs)]  # fmt: skip
        first = resume.epoch if resume is not None else 0
        self.started = start = time.perf_counter() - self.history.train_seconds
        for callback in self.callbacks:
            callback.on_train_start(self)
        try:
            for epoch in range(first, len(schedule)):
                number, phase = schedule[epoch]
                if self._stopped(number):
                    continue
                if epoch == first or schedule[epoch - 1][0] != number:
                    self.start_phase(phase, number)
                    if resume is not None and epoch == first and resume.phase == number:
                        restore_optimizer(self, resume)
                step = resume.step if resume is not None and epoch == first else 0
                logs = self.run_epoch(epoch, images, labels, sampler, step)
                logs.update(phase=number, lr=self.lr)  # its last step's (cosine: not the phase's)
                end_epoch(self, epoch, logs, val, start)
                last_of_phase = epoch + 1 == len(schedule) or schedule[epoch + 1][0] != number
                if self._stopped(number) and not last_of_phase:
                    self._note_stop(number, epoch)
        finally:
            self.forward_step = self.step_forward  # no DDP outlives the process group
            gc.collect()
            if self.features is not None:
                self.features.close()
                self.features = None
            for callback in self.callbacks:
                callback.on_train_end()
        return self.history

    def _stopped(self, number: int) -> bool:
        patience = self.config.train.patience
        return phase_stopped(self.history.epochs, number, patience, self.monitor)

    def _note_stop(self, number: int, epoch: int) -> None:
        patience = self.config.train.patience
        text = (f"{self.monitor} has not improved for {patience} epoch{'s' * (patience != 1)}: "
                f"phase {number} stops early after epoch {epoch + 1}")  # fmt: skip
        for callback in self.callbacks:
            callback.on_note(text)
