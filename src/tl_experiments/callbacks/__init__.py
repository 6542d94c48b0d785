"""Lightning callbacks: epoch history, and the fine-tuning schedules."""

from tl_experiments.callbacks.history import EpochHistory

__all__ = ["EpochHistory"]
