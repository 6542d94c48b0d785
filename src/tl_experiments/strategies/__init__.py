"""Transfer strategies as data, and the one code path that applies any of them."""

from tl_experiments.strategies.l2sp import L2SP
from tl_experiments.strategies.strategy import Strategy, apply_trainable, param_groups, stage_lrs

__all__ = ["L2SP", "Strategy", "apply_trainable", "param_groups", "stage_lrs"]
