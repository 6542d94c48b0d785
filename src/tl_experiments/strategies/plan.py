"""A strategy compiled once for one model and run length: which stages train in each
epoch, at which learning rate, and with which BatchNorm policy.

The module (what trains at the start), the schedule callback (what trains each epoch),
the feature cache (whether anything below the head ever trains), early stopping (when the
last phase starts) and the run summary (each stage's lr) all read the same
:class:`StrategyPlan`; ``requires_grad`` is set by :func:`set_trainable` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tl_experiments.errors import UserError
from tl_experiments.stages import Stage
from tl_experiments.stages.stage import select_stages
from tl_experiments.strategies.schedule import Phase, build_phases, ever_trained, phase_at
from tl_experiments.strategies.strategy import Strategy, stage_lrs

__all__ = ["StrategyPlan", "compile_plan", "set_trainable", "unreached_note"]


@dataclass(frozen=True)
class StrategyPlan:
    """What a strategy does on one model over ``max_epochs`` (see :func:`compile_plan`)."""

    strategy: Strategy
    max_epochs: int | None  # None: compiled outside a fit, phase 0 only
    phases: tuple[Phase, ...]  # phase 0 is strategy.trainable, from epoch 0
    lrs: tuple[float, ...]  # each stage's base lr, stem to head (before schedules)
    unreached: tuple[Phase, ...] = ()  # phases that would start at or after max_epochs

    @property
    def scheduled(self) -> bool:
        """Whether the strategy has a schedule (later phases, gradual unfreezing)."""
        s = self.strategy
        return bool(s.phases or s.unfreeze_every_n_epochs or s.unfreeze_milestones)

    @property
    def schedule_runs(self) -> bool:
        """Whether a later phase starts within the run (assumed when its length is unknown)."""
        return self.scheduled and (self.max_epochs is None or len(self.phases) > 1)

    @property
    def changes(self) -> bool:
        """Whether the set of training stages changes during the run."""
        return len({p.trainable for p in self.phases}) > 1

    @property
    def ever_trained(self) -> frozenset[int]:
        """Stages that train in some phase."""
        return ever_trained(self.phases)

    @property
    def last_start(self) -> int:
        """The epoch the last phase starts (0 without a schedule)."""
        return self.phases[-1].start

    def trainable_at(self, epoch: int) -> frozenset[int]:
        """Stages that train during ``epoch``."""
        return phase_at(self.phases, epoch).trainable


def compile_plan(
    strategy: Strategy, stages: Sequence[Stage], max_epochs: int | None
) -> StrategyPlan:
    """Resolve the strategy's stage names, fractions of the run and lr factors for these
    stages and this many epochs; raises UserError for a schedule that does not fit.

    ``max_epochs=None`` (a module built outside a fit: eval, predict, export) compiles
    phase 0 alone; the schedule callback compiles the whole plan when a fit starts.
    """
    lrs = tuple(stage_lrs(strategy, len(stages)))
    if max_epochs is not None and max_epochs <= 0:
        raise UserError(f"trainer.max_epochs={max_epochs} must be positive.")
    if max_epochs is None:
        first = Phase(0, frozenset(s.index for s in select_stages(stages, strategy.trainable)))
        return StrategyPlan(strategy, None, (first,), lrs)
    phases = build_phases(strategy, stages, max_epochs)
    reached = tuple(p for p in phases if p.start < max_epochs)
    unreached = tuple(p for p in phases if p.start >= max_epochs)
    return StrategyPlan(strategy, max_epochs, reached, lrs, unreached)


def unreached_note(plan: StrategyPlan, stages: Sequence[Stage]) -> str | None:
    """One line when phases of ``plan`` never start: which, what the run trains instead,
    and the fix (the schedule callback says it when a fit starts); else None."""
    if not plan.unreached:
        return None
    names = ", ".join(s.name for s in stages if s.index in plan.ever_trained)
    starts = ", ".join(str(p.start) for p in plan.unreached)
    return (
        f"Strategy {plan.strategy.name}: its phase(s) from epoch {starts} never start in "
        f"trainer.max_epochs={plan.max_epochs} epochs, so the run trains only {names}; raise "
        f"trainer.max_epochs to at least {plan.unreached[-1].start + 1} to run them."
    )


def set_trainable(stages: Sequence[Stage], trainable: Iterable[int], kinds: Sequence[str]) -> None:
    """Set ``requires_grad`` of every parameter: the one place that decides what trains.

    A parameter trains when its stage is in ``trainable`` and, below the head, when it is of
    one of ``kinds`` (``all``, or ``bias``, ``norm``, ``lora``: stages/kinds.py). The head, a
    new classifier, always trains whole when chosen: a bias alone could learn only class
    priors.
    """
    chosen, every, head = set(trainable), "all" in kinds, stages[-1].index
    for s in stages:
        on = s.index in chosen
        for p, own in zip(s.params, s.kinds or [frozenset()] * len(s.params), strict=True):
            p.requires_grad_(on and (every or s.index == head or bool(own & set(kinds))))
