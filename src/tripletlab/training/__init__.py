"""Training: the `Trainer`, callbacks, and whole runs."""

from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.divergence import TrainingDivergedError, is_collapsed
from tripletlab.training.history import History, is_better
from tripletlab.training.run import RunResult, train_run
from tripletlab.training.tensorboard import TensorBoardCallback
from tripletlab.training.trainer import Trainer

__all__ = [
    "Callback",
    "History",
    "ProgressCallback",
    "RunResult",
    "TensorBoardCallback",
    "Trainer",
    "TrainingDivergedError",
    "is_better",
    "is_collapsed",
    "train_run",
]
