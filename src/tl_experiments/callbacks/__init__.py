"""Lightning callbacks of every run: epoch history and early stopping (the strategy's
schedule is strategies/apply.py; core sharing between parallel jobs is run/core_share.py)."""

from tl_experiments.callbacks.early_stop import early_stopping
from tl_experiments.callbacks.history import EpochHistory
from tl_experiments.callbacks.rung import RandomState, StopAtEpoch

__all__ = ["EpochHistory", "RandomState", "StopAtEpoch", "early_stopping"]
