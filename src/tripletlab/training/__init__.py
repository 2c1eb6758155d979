"""Training: the `Trainer`, callbacks, and whole runs."""

from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.run import RunResult, check_config, evaluate_run, new_run_dir, train_run
from tripletlab.training.trainer import History, Trainer, TrainingDivergedError

__all__ = [
    "Callback",
    "History",
    "ProgressCallback",
    "RunResult",
    "Trainer",
    "TrainingDivergedError",
    "check_config",
    "evaluate_run",
    "new_run_dir",
    "train_run",
]
