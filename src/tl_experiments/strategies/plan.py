"""A strategy compiled once for one model and run length: the single owner of what a run
trains, at which learning rate, with which BatchNorm behaviour, in every phase, and of what
its checkpoints keep.

Everything that needs one of these decisions reads the :class:`StrategyPlan`: the
optimizer (:meth:`StrategyPlan.param_groups`), the one callback that applies the plan
during a fit (``strategies/apply.py``: ``requires_grad``, module modes, lr scales,
BatchNorm re-estimation), the feature cache (:attr:`StrategyPlan.head_only`), early
stopping (:attr:`StrategyPlan.last_start`), the checkpoints (:attr:`StrategyPlan.keeps_base`)
and the run summary (:meth:`StrategyPlan.trains`, :attr:`StrategyPlan.lrs`). Nothing
recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tl_experiments.errors import UserError
from tl_experiments.stages import Stage
from tl_experiments.stages.stage import select_stages
from tl_experiments.strategies.schedule import (
    Phase,
    build_phases,
    ever_trained,
    phase_at,
    stage_scales,
)
from tl_experiments.strategies.strategy import Strategy

__all__ = ["StrategyPlan", "compile_plan", "stage_lrs", "unreached_note"]


@dataclass(frozen=True)
class StrategyPlan:
    """What a strategy does on one model over ``max_epochs`` (see :func:`compile_plan`).

    BatchNorm: ``frozen_bn_trains`` (``strategy.train_bn``) says whether the BatchNorm of
    frozen stages updates its statistics; ``trainable_bn`` (``train``, ``frozen`` or
    ``reestimate``: strategies/strategy.py) what the BatchNorm of training stages does.
    """

    strategy: Strategy
    max_epochs: int | None  # None: compiled outside a fit, phase 0 only
    phases: tuple[Phase, ...]  # phase 0 is strategy.trainable, from epoch 0
    lrs: tuple[float, ...]  # each stage's base lr, stem to head (before schedules)
    weight_decays: tuple[float, ...]  # each stage's AdamW weight decay
    kinds: tuple[str, ...]  # which parameters train below the head (all, bias, norm, lora)
    frozen_bn_trains: bool
    trainable_bn: str
    keeps_base: bool = True  # False: checkpoints leave out the frozen base (base_weights.py)
    unreached: tuple[Phase, ...] = ()  # phases that would start at or after max_epochs

    @property
    def scheduled(self) -> bool:
        """Whether the strategy has a schedule (later phases, gradual unfreezing)."""
        return self.strategy.scheduled

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
    def head_only(self) -> bool:
        """Whether nothing below the head ever trains in this run (the feature cache's
        first condition)."""
        head = len(self.lrs) - 1
        return self.ever_trained <= {head} and not self.schedule_runs

    @property
    def last_start(self) -> int:
        """The epoch the last phase starts (0 without a schedule)."""
        return self.phases[-1].start

    def trainable_at(self, epoch: int) -> frozenset[int]:
        """Stages that train during ``epoch``."""
        return phase_at(self.phases, epoch).trainable

    def scales_at(self, epoch: int) -> list[float]:
        """Each stage's lr scale during ``epoch`` (schedule.py's ``scale_g``)."""
        warmup = self.strategy.unfreeze_warmup_epochs
        return stage_scales(self.phases, epoch, len(self.lrs), warmup)

    def started_at(self, epoch: int) -> frozenset[int]:
        """Stages that start training at ``epoch`` (0: those of phase 0)."""
        now = self.trainable_at(epoch)
        return now - self.trainable_at(epoch - 1) if epoch > 0 else now

    def reestimates_at(self, epoch: int) -> frozenset[int]:
        """Stages whose BatchNorm statistics are re-estimated when ``epoch`` starts: those
        that start training then (phase 0's at epoch 0), under ``trainable_bn: reestimate``."""
        return self.started_at(epoch) if self.trainable_bn == "reestimate" else frozenset()

    def trains(self, stage: Stage, trainable: frozenset[int]) -> list[bool]:
        """Whether each parameter of ``stage`` trains while ``trainable`` stages do: its
        stage trains and, below the head, it is of one of the plan's kinds. The head, a new
        classifier, always trains whole when chosen (a bias alone could learn only class
        priors)."""
        if stage.index not in trainable:
            return [False] * len(stage.params)
        if "all" in self.kinds or stage.index == len(self.lrs) - 1:
            return [True] * len(stage.params)
        kinds = set(self.kinds)
        return [bool(own & kinds) for own in stage.kinds or [frozenset()] * len(stage.params)]

    def trainable_counts(self, stages: Sequence[Stage], epoch: int) -> list[int]:
        """How many parameters of each stage train during ``epoch`` (the run summary)."""
        chosen = self.trainable_at(epoch)
        return [
            sum(p.numel() for p, on in zip(s.params, self.trains(s, chosen), strict=True) if on)
            for s in stages
        ]

    def bn_frozen(self, stage_trains: bool) -> bool:
        """Whether the BatchNorm of a stage keeps its statistics (eval mode) while it does
        (``stage_trains``) or does not train."""
        return self.trainable_bn != "train" if stage_trains else not self.frozen_bn_trains

    def param_groups(
        self, stages: Sequence[Stage], only: Sequence[int] | None = None
    ) -> list[dict]:
        """The optimizer's groups: one per stage (``only``: those stages), frozen ones
        included (fastai's design). Freezing later only flips ``requires_grad`` (a param
        without grad is skipped by torch optimizers), so schedulers and checkpoints always
        see the same groups."""
        chosen = range(len(stages)) if only is None else only
        return [
            {
                "params": stages[i].params,
                "lr": self.lrs[i],
                "name": stages[i].name,
                "stage": stages[i].index,
                "weight_decay": self.weight_decays[i],
            }
            for i in chosen
        ]


def stage_lrs(strategy: Strategy, n_stages: int) -> list[float]:
    """Learning rate of each stage, bottom (stem) to top (head): the head's is
    ``strategy.lr``, the stage below it ``lr * backbone_lr_scale``, each further one
    ``lr_decay`` times the one above."""
    lrs = []
    for i in range(n_stages):
        depth = n_stages - 1 - i  # 0 for the head, 1 for the stage just below it
        scale = 1.0 if depth == 0 else strategy.backbone_lr_scale * strategy.lr_decay ** (depth - 1)
        lrs.append(strategy.lr * scale)
    return lrs


def compile_plan(
    strategy: Strategy,
    stages: Sequence[Stage],
    max_epochs: int | None,
    base_rebuildable: bool = False,
) -> StrategyPlan:
    """Resolve the strategy's stage names, fractions of the run and lr factors for these
    stages and this many epochs; raises UserError for a schedule that does not fit.

    ``max_epochs=None`` (a module built outside a fit: eval, predict, export) compiles
    phase 0 alone; the plan's callback compiles the whole plan when a fit starts.
    ``base_rebuildable``: the starting weights can be loaded again (not a random init), so
    a parameter-efficient run's checkpoints may leave out its fixed base.
    """
    if max_epochs is not None and max_epochs <= 0:
        raise UserError(f"trainer.max_epochs={max_epochs} must be positive.")
    n = len(stages)
    # Under L2-SP the pull toward w0 replaces weight decay (a pull toward 0) on the backbone.
    decays = tuple(
        0.0 if strategy.uses_l2sp and i < n - 1 else strategy.weight_decay for i in range(n)
    )
    common = {
        "lrs": tuple(stage_lrs(strategy, n)),
        "weight_decays": decays,
        "kinds": strategy.kinds,
        "frozen_bn_trains": strategy.train_bn,
        "trainable_bn": strategy.trainable_bn,
        "keeps_base": not (
            strategy.parameter_efficient and base_rebuildable and not strategy.scheduled
        ),
    }
    if max_epochs is None:
        first = Phase(0, frozenset(s.index for s in select_stages(stages, strategy.trainable)))
        return StrategyPlan(strategy, None, (first,), **common)
    phases = build_phases(strategy, stages, max_epochs)
    reached = tuple(p for p in phases if p.start < max_epochs)
    unreached = tuple(p for p in phases if p.start >= max_epochs)
    return StrategyPlan(strategy, max_epochs, reached, **common, unreached=unreached)


def unreached_note(plan: StrategyPlan, stages: Sequence[Stage]) -> str | None:
    """One line when phases of ``plan`` never start: which, what the run trains instead,
    and the fix (the plan's callback says it when a fit starts); else None."""
    if not plan.unreached:
        return None
    names = ", ".join(s.name for s in stages if s.index in plan.ever_trained)
    starts = ", ".join(str(p.start) for p in plan.unreached)
    return (
        f"Strategy {plan.strategy.name}: its phase(s) from epoch {starts} never start in "
        f"trainer.max_epochs={plan.max_epochs} epochs, so the run trains only {names}; raise "
        f"trainer.max_epochs to at least {plan.unreached[-1].start + 1} to run them."
    )
