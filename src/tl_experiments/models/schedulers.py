"""The learning-rate schedules of ``conf/scheduler/``, one function each.

Each YAML file names one of these by ``_target_`` (``_partial_: true``); the module calls
it with the optimizer, the fit's optimizer steps and each group's peak lr, once the fit's
length is known. A new schedule is a function here (or anywhere importable) and a YAML
file, not a branch. Every one is stepped per optimizer step; the unfreezing schedule scales
the values it derives the lr from (``strategies/schedule.py``, docs/schedules.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR

__all__ = ["SchedulerFactory", "constant", "cosine", "onecycle"]

# (optimizer, total_steps, max_lrs) -> a per-step scheduler, or None for a constant lr.
SchedulerFactory = Callable[[Optimizer, int, Sequence[float]], LRScheduler | None]


def cosine(optimizer: Optimizer, total_steps: int, max_lrs: Sequence[float]) -> LRScheduler:
    """Cosine annealing from each group's lr to 0 over ``total_steps``."""
    return CosineAnnealingLR(optimizer, T_max=total_steps)


def onecycle(optimizer: Optimizer, total_steps: int, max_lrs: Sequence[float]) -> LRScheduler:
    """One cycle (Smith & Topin 2019): warm-up to ``max_lrs``, then annealing, torch's defaults."""
    return OneCycleLR(optimizer, max_lr=list(max_lrs), total_steps=total_steps)


def constant(optimizer: Optimizer, total_steps: int, max_lrs: Sequence[float]) -> None:
    """No scheduler: each group keeps its lr."""
    return None
