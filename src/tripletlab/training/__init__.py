"""Training: the `Trainer`, callbacks, and whole runs."""

from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.run import RunResult, train_run
from tripletlab.training.tensorboard import TensorBoardCallback
from tripletlab.training.trainer import History, Trainer, TrainingDivergedError, is_better

__all__ = [
    "Callback",
    "History",
    "ProgressCallback",
    "RunResult",
    "TensorBoardCallback",
    "Trainer",
    "TrainingDivergedError",
    "is_better",
    "train_run",
]
