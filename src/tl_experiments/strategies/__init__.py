"""Transfer strategies as data, compiled into a plan, and the one callback that applies it."""

from tl_experiments.strategies.l2sp import L2SP
from tl_experiments.strategies.plan import StrategyPlan, compile_plan, stage_lrs
from tl_experiments.strategies.strategy import Strategy

__all__ = ["L2SP", "Strategy", "StrategyPlan", "compile_plan", "stage_lrs"]
