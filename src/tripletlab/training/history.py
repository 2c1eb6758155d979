"""What training produced, and which epoch is the best."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tripletlab.training.validation import improves


@dataclass
class History:
    """What training produced: the loss of every step and the logs of every epoch."""

    step_losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    train_seconds: float = 0.0

    def epoch_logs(self, number: int) -> dict[str, Any]:
        """The logs of epoch `number` (1-based; epochs a phase skipped by stopping early have
        none).

        Raises:
            KeyError: no such epoch was trained.
        """
        for logs in self.epochs:
            if logs.get("epoch") == number:
                return logs
        raise KeyError(f"no logs of epoch {number}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_losses": self.step_losses,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
        }


def is_better(logs: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether the epoch with `logs` beats the best epoch so far (`best`, None if none).

    With validation, a higher validation MAP@R wins; without, a lower training loss. A tie
    keeps the earlier epoch. This is `train.monitor: auto` for the triplet losses; the trainer
    itself uses `validation.improves` with the run's monitor.
    """
    monitor = "val_map_at_r" if "val_map_at_r" in logs else "loss"
    return improves(logs, best, monitor)
