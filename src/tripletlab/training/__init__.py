"""Training: the `Trainer`, callbacks, and whole runs."""

from tripletlab.training.callbacks import Callback, ProgressCallback
from tripletlab.training.distributed import GlobalBatchLoss, all_gather_rows
from tripletlab.training.divergence import TrainingDivergedError, is_collapsed
from tripletlab.training.history import History, is_better
from tripletlab.training.run import RunResult, resume_run, train_run
from tripletlab.training.state import TrainingState, load_state
from tripletlab.training.tensorboard import TensorBoardCallback
from tripletlab.training.trainer import Trainer

__all__ = [
    "Callback",
    "GlobalBatchLoss",
    "History",
    "ProgressCallback",
    "RunResult",
    "TensorBoardCallback",
    "Trainer",
    "TrainingDivergedError",
    "TrainingState",
    "all_gather_rows",
    "is_better",
    "is_collapsed",
    "load_state",
    "resume_run",
    "train_run",
]
