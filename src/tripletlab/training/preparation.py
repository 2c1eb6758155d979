"""What `Trainer.fit` sets up before the first epoch: run folder, tensors, sampler, state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tripletlab.data import ImageSet, RankShard, build_sampler
from tripletlab.data.pixel_cache import training_rows
from tripletlab.runs import RunDir
from tripletlab.training.distributed import embed_sharded, is_main, world
from tripletlab.training.state import TrainingState, restore


def prepare_fit(
    trainer: Any, train: ImageSet, run_dir: str | Path | RunDir | None,
    resume: TrainingState | None,
) -> tuple[Any, Tensor, Any]:  # fmt: skip
    """The run folder (rank 0 only), the training images (a tensor, or a `RowReader` of a
    memory-mapped file: each indexes to a (B, ...) tensor), the labels (N,), and the sampler
    (this rank's part of every global batch under torchrun), restored when resuming.

    Raises:
        ValueError: no run folder for the process that writes.
    """
    trainer.run = None
    if is_main():
        if run_dir is None:
            raise ValueError("Trainer.fit needs a run_dir to write the run into")
        trainer.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        trainer.run.remove_partial_writes()  # left by a process killed while writing
    trainer.train_set = train
    eval_batch = trainer.config.train.eval_batch_size
    sampler = build_sampler(
        trainer.config,
        train.labels,
        lambda: embed_sharded(trainer.model, train.images, eval_batch)[0],
    )
    rank, size = world()
    if size > 1:  # every rank draws the global batches and trains on its part
        sampler = RankShard(sampler, rank, size)
    trainer.steps_per_epoch = len(sampler)
    if resume is not None:
        restore(trainer, resume, sampler)
        if trainer.run is not None:  # a kill between a checkpoint and history.json
            trainer.run.write_history(trainer.history.to_dict())
    # Mapped images are read row by row: mapping scattered rows maps far more than them.
    images = training_rows(train.images)
    return images, torch.from_numpy(train.labels).long(), sampler
