"""Lightning callbacks: epoch history, core sharing, early stopping (the strategy's
schedule is strategies/unfreeze.py)."""

from tl_experiments.callbacks.core_share import CoreShare
from tl_experiments.callbacks.early_stop import early_stopping
from tl_experiments.callbacks.history import EpochHistory

__all__ = ["CoreShare", "EpochHistory", "early_stopping"]
