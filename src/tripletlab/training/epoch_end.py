"""The end of an epoch: health checks, validation scores and checkpoints of a `Trainer`."""

from __future__ import annotations

import time
from typing import Any

from tripletlab.data import ImageSet
from tripletlab.evaluation.retrieval import retrieval_metrics
from tripletlab.training.distributed import embed_sharded, world
from tripletlab.training.divergence import (
    COLLAPSE_PROBE,
    TrainingDivergedError,
    check_collapse,
    check_finite,
)
from tripletlab.training.state import state_files
from tripletlab.training.validation import improves, triplet_values, validation_scores


def kept(trainer: Any) -> str:
    """What is left after training stops: the checkpoints written before, or none."""
    if trainer.run is None and world()[1] > 1:
        return "rank 0 keeps the checkpoints it wrote before"
    if trainer.run is None or not trainer.run.has_checkpoint():
        return "no checkpoint was written"
    return f"the checkpoints written before in {trainer.run} are intact"


def check_health(trainer: Any, epoch: int, val: ImageSet | None) -> dict[str, float]:
    """Refuse weights that are not finite and an embedding that collapsed to one point,
    before anything of this epoch is saved; returns the validation metrics (none without
    validation images). Raises `TrainingDivergedError`."""
    model = trainer.evaluated_model
    check_finite(model, epoch, kept(trainer))
    probe = val if val is not None and len(val) > 1 else None
    images = probe.images if probe is not None else trainer.train_set.images[:COLLAPSE_PROBE]
    # Single views: the test-time views of `model.tta_shift` and `tta_flip` would make each
    # epoch's check up to ten times longer.
    try:  # each rank of a distributed run embeds a part
        embeddings, probabilities = embed_sharded(
            model, images, trainer.config.train.eval_batch_size
        )
    except ValueError as error:  # finite weights whose embeddings overflow
        raise TrainingDivergedError(
            f"{error} in epoch {epoch + 1}; training stopped, {kept(trainer)}"
        ) from None
    what = "validation" if probe is not None else "probed training"
    check_collapse(embeddings, epoch, what, kept(trainer))
    labels = probe.labels if probe is not None else trainer.train_set.labels[:COLLAPSE_PROBE]
    values = triplet_values(trainer.config, embeddings, labels)
    part = "val" if probe is not None else "train"  # without validation: the probed images
    trainer.triplet_values = {f"{part}/triplet_{name}": v for name, v in values.items()}
    if probe is None:
        return {}
    metrics = retrieval_metrics(embeddings, probe.labels)
    scores = {f"val_{k}": v for k, v in metrics.items() if k != "num_queries"}
    return scores | validation_scores(
        trainer.config, trainer.loss_fn, embeddings, probabilities, probe.labels
    )


def end_epoch(
    trainer: Any, epoch: int, logs: dict[str, Any], val: ImageSet | None, start: float
) -> None:
    """Check, validate, checkpoint and log a finished epoch (`start`: when training began,
    `time.perf_counter()`)."""
    logs.update(check_health(trainer, epoch, val))
    trainer.history.epochs.append(logs)
    trainer.history.train_seconds = time.perf_counter() - start
    save_epoch(trainer, epoch, logs)
    if trainer.run is not None:
        trainer.run.write_history(trainer.history.to_dict())
    for callback in trainer.callbacks:
        callback.on_epoch_end(epoch, logs)


def save_epoch(trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
    """Save this epoch with the state to resume after it; point `last` (and `resume`) at
    it, and `best` too if it improves on the best so far (`trainer.monitor`). The best epoch
    is tracked on every rank of a distributed run; only the one with a run folder writes."""
    name = f"epoch-{epoch + 1:04d}"
    best = trainer.history.best_epoch
    entries = {"last": name, "resume": name}
    best_logs = None if best is None else trainer.history.epoch_logs(best)
    if improves(logs, best_logs, trainer.monitor):
        entries["best"] = name
        trainer.history.best_epoch = epoch + 1
    if trainer.run is None:
        return
    extra = {"run": trainer.config.to_dict(), "epoch": epoch + 1, "logs": logs}
    files = state_files(trainer, epoch + 1, 0)  # before the next epoch: no sampler state
    trainer.evaluated_model.save(trainer.run.checkpoints / name, extra, files)
    trainer.run.point_checkpoints(**entries)


def save_step(trainer: Any, epoch: int, step: int, sampler: Any) -> None:
    """Save a resumable checkpoint after batch `step` of `epoch` (not validated: never the
    best one); point `resume` at it. Only the process with a run folder writes."""
    check_finite(trainer.evaluated_model, epoch, kept(trainer))
    if trainer.run is None:
        return
    name = f"step-{len(trainer.history.step_losses):07d}"
    extra = {"run": trainer.config.to_dict(), "epoch": epoch + 1, "step": step}
    # The time trained so far, as a resumed run goes on counting from it (else the time
    # since the last epoch's end was lost from metrics.json's train_seconds).
    trainer.history.train_seconds = time.perf_counter() - trainer.started
    files = state_files(trainer, epoch, step, sampler)
    trainer.evaluated_model.save(trainer.run.checkpoints / name, extra, files)
    trainer.run.point_checkpoints(resume=name)
