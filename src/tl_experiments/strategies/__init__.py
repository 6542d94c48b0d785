"""Transfer strategies as data, and the one code path that applies any of them."""

from tl_experiments.strategies.l2sp import L2SP
from tl_experiments.strategies.plan import StrategyPlan, compile_plan, set_trainable
from tl_experiments.strategies.strategy import Strategy, param_groups, stage_lrs

__all__ = [
    "L2SP",
    "Strategy",
    "StrategyPlan",
    "compile_plan",
    "param_groups",
    "set_trainable",
    "stage_lrs",
]
