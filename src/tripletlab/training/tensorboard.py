"""TensorBoard under `RUN_DIR/tensorboard/`: the model graph, scalars (loss, learning rate,
images/s, validation metrics) and per-epoch histograms of the validation triplets' values."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from tripletlab.models import evaluating, layer_by_layer
from tripletlab.training.callbacks import Callback

log = logging.getLogger(__name__)


class TensorBoardCallback(Callback):
    """Writes the model's graph once; `train/loss`, `train/lr`, `train/images_per_second`
    every `every` steps; the epoch logs (`epoch/loss`, `val/precision_at_1`, `val/map_at_r`,
    `val/loss`, ...) and histograms of the validation triplets' `val/triplet_diff` (d(a,p)^2 -
    d(a,n)^2, as the triplet-loss MNIST project plotted it) and `val/triplet_loss` every epoch.

    Args:
        log_dir: where the event files go (default: the run's `tensorboard/` folder).
        every: steps between two points of the step scalars.
    """

    def __init__(self, log_dir: Path | None = None, every: int = 10) -> None:
        self.log_dir = log_dir
        self.every = max(1, every)
        self.writer = None
        self.trainer = None
        self.loss_sum, self.count = 0.0, 0

    def on_train_start(self, trainer: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.trainer = trainer
        # A resumed run: drop what the stopped process logged past its last checkpoint.
        done = len(trainer.history.step_losses)
        self.writer = SummaryWriter(log_dir=str(self.log_dir or trainer.run.tensorboard),
                                    purge_step=done + 1 if done else None)  # fmt: skip
        window = trainer.history.step_losses[done - done % self.every :]  # the points' windows
        self.loss_sum, self.count = float(sum(window)), len(window)
        if not done:
            self.add_graph(trainer.model)

    def add_graph(self, model: Any) -> None:
        """The embedder's graph (traced in eval mode on one blank image, layer by layer). A
        model that cannot be traced is logged and skipped: training goes on."""
        config = model.config
        shape = (1, *config.image_size) + ((config.channels,) if config.channels > 1 else ())
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            with layer_by_layer(model), warnings.catch_warnings(), evaluating(model):
                warnings.simplefilter("ignore")  # tracer warnings about Python control flow
                self.writer.add_graph(model, torch.zeros(shape, dtype=torch.uint8, device=device))
        except Exception as error:  # tracing fails on some custom modules; not fatal
            log.warning("the model graph was not written to TensorBoard: %s", error)

    def on_step_end(self, step: int, loss: float, images_per_second: float) -> None:
        self.loss_sum += loss
        self.count += 1
        if step % self.every:
            return
        self.writer.add_scalar("train/loss", self.loss_sum / self.count, step)
        self.writer.add_scalar("train/images_per_second", images_per_second, step)
        # The rate the step used (each phase builds its own optimizer; a schedule changes it).
        self.writer.add_scalar("train/lr", self.trainer.lr, step)
        self.loss_sum, self.count = 0.0, 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            if key == "epoch" or not isinstance(value, (int, float)):
                continue
            tag = f"val/{key[4:]}" if key.startswith("val_") else f"epoch/{key}"
            self.writer.add_scalar(tag, value, epoch + 1)
        for tag, values in getattr(self.trainer, "triplet_values", {}).items():
            if len(values):
                self.writer.add_histogram(tag, values, epoch + 1)
        self.writer.flush()

    def on_train_end(self) -> None:
        if self.writer is not None:
            self.writer.close()
