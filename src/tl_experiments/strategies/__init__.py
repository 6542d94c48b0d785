"""Transfer strategies as data, and the one code path that applies any of them."""

from tl_experiments.strategies.strategy import Strategy, apply_trainable, param_groups, stage_lrs

__all__ = ["Strategy", "apply_trainable", "param_groups", "stage_lrs"]
