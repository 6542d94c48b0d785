"""Lightning callbacks: epoch history, the fine-tuning schedules, core sharing, early stopping."""

from tl_experiments.callbacks.core_share import CoreShare
from tl_experiments.callbacks.early_stop import early_stopping
from tl_experiments.callbacks.history import EpochHistory
from tl_experiments.callbacks.unfreeze import StageSchedule

__all__ = ["CoreShare", "EpochHistory", "StageSchedule", "early_stopping"]
