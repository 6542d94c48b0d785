"""Lightning callbacks: epoch history, and the fine-tuning schedules."""

from tl_experiments.callbacks.history import EpochHistory
from tl_experiments.callbacks.unfreeze import StageSchedule

__all__ = ["EpochHistory", "StageSchedule"]
