"""When stages train and how their learning rates scale over a run: phases, as data.

A strategy's schedule compiles to a list of :class:`Phase` (epoch -> trainable stages, lr
scale). Gradual unfreezing (ULMFiT), LP-FT (Kumar et al. 2022) and a static strategy are
all such lists, so one mechanism applies every one of them.

The learning-rate mechanism. Every stage's group sits in the optimizer from the start
(fastai's design). At an epoch start the lr of group ``g`` becomes::

    lr_g(step) = base_g * scale_g(epoch) * unit(step)

``base_g`` is :func:`stage_lrs`, ``unit`` the torch scheduler's own shape for an lr of 1
(cosine to 0, OneCycle, constant) and ``scale_g`` = the phase's ``lr_scale`` times the
warm-up ramp of a newly unfrozen stage. :func:`rescale_lrs` changes ``scale_g`` by
multiplying every value a torch scheduler computes the lr from: the group's ``lr``
(CosineAnnealingLR is recursive in it), ``initial_lr`` and the scheduler's ``base_lrs``
(closed forms, resume), and OneCycleLR's ``max_lr``/``min_lr``. Those schedulers' lr is
proportional to these values, so the product above holds exactly at every later step, with
no custom key and nothing appended mid-run. A frozen group keeps its scheduled lr but gets
no gradient (``requires_grad=False``), so torch's optimizers skip it entirely (no update,
no weight decay, no Adam state): a scale of 0 could not be multiplied back up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from tl_experiments.errors import UserError
from tl_experiments.stages.stage import Stage, select_stages
from tl_experiments.strategies.strategy import Strategy

__all__ = ["Phase", "build_phases", "phase_at", "stage_scales", "ever_trained", "rescale_lrs"]

# Values of a param group that a torch scheduler derives the lr from (OneCycleLR: all four).
_LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


@dataclass(frozen=True)
class Phase:
    """From epoch ``start`` on, exactly ``trainable`` (stage indices) train at ``lr_scale``."""

    start: int
    trainable: frozenset[int]
    lr_scale: float = 1.0


def build_phases(strategy: Strategy, stages: Sequence[Stage], max_epochs: int) -> list[Phase]:
    """Compile the strategy's schedule; phase 0 (epoch 0) is ``strategy.trainable``."""
    first = Phase(0, _indices(stages, strategy.trainable))
    if strategy.unfreeze_every_n_epochs is not None or strategy.unfreeze_milestones:
        return [first, *_gradual(strategy, first.trainable, len(stages), max_epochs)]
    phases = [first]
    for p in strategy.phases:
        scale = float(p.get("lr_scale", 1.0))
        if not scale > 0:
            raise UserError(f"strategy.phases lr_scale={scale} must be positive.")
        start = _epoch(p["start"], max_epochs, "strategy.phases start")
        phases.append(Phase(start, _indices(stages, p.get("trainable", "all")), scale))
    _check_order(phases)
    return phases


def _gradual(
    strategy: Strategy, start_set: frozenset[int], n_stages: int, max_epochs: int
) -> list[Phase]:
    """One more frozen stage, top first, at each milestone (ULMFiT's gradual unfreezing)."""
    frozen = [i for i in reversed(range(n_stages)) if i not in start_set]
    every = strategy.unfreeze_every_n_epochs
    if every is not None:
        if every < 1:
            raise UserError(f"strategy.unfreeze_every_n_epochs={every} must be >= 1.")
        epochs = [every * (k + 1) for k in range(len(frozen))]
    else:
        epochs = [
            _epoch(m, max_epochs, "strategy.unfreeze_milestones")
            for m in strategy.unfreeze_milestones[: len(frozen)]
        ]
    phases, current = [], set(start_set)
    for epoch, stage in zip(epochs, frozen, strict=False):
        current.add(stage)
        phases.append(Phase(epoch, frozenset(current)))
    _check_order([Phase(0, start_set), *phases])
    return phases


def _indices(stages: Sequence[Stage], spec) -> frozenset[int]:
    return frozenset(s.index for s in select_stages(stages, spec))


def _epoch(value: int | float, max_epochs: int, what: str) -> int:
    """An epoch: an int as given, a float below 1 as that fraction of ``max_epochs``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{what}={value!r} must be an epoch (int) or a fraction below 1.")
    if isinstance(value, int):
        return value
    if not 0 < value < 1:
        raise UserError(
            f"{what}={value} is ambiguous: write an integer epoch (e.g. 2) or a "
            "fraction of trainer.max_epochs between 0 and 1 (e.g. 0.25)."
        )
    # Rounded, and never 0 (epoch 0 belongs to strategy.trainable).
    return max(1, math.floor(value * max_epochs + 0.5))


def _check_order(phases: Sequence[Phase]) -> None:
    starts = [p.start for p in phases]
    if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
        raise UserError(
            f"Schedule phases start at epochs {starts} (after fractions of "
            "trainer.max_epochs are resolved); they must increase strictly and "
            "start after epoch 0: use later epochs or more trainer.max_epochs."
        )


def phase_at(phases: Sequence[Phase], epoch: int) -> Phase:
    """The phase in force during ``epoch``."""
    return [p for p in phases if p.start <= epoch][-1]


def ever_trained(phases: Sequence[Phase]) -> frozenset[int]:
    """Stages that train in some phase (DDP must register them before the first epoch)."""
    return frozenset().union(*(p.trainable for p in phases))


def stage_scales(
    phases: Sequence[Phase], epoch: int, n_stages: int, warmup_epochs: int = 0
) -> list[float]:
    """``scale_g(epoch)`` of every stage: the phase's lr_scale times the warm-up ramp."""
    current = phase_at(phases, epoch)
    scales = []
    for g in range(n_stages):
        ramp = 1.0
        if warmup_epochs and g in current.trainable:
            since = _trained_since(phases, epoch, g)
            if since > 0:  # stages that train from epoch 0 have no warm-up
                ramp = min(1.0, (epoch - since + 1) / (warmup_epochs + 1))
        scales.append(current.lr_scale * ramp)
    return scales


def _trained_since(phases: Sequence[Phase], epoch: int, g: int) -> int:
    """First epoch of the unbroken run of phases, up to ``epoch``, in which stage g trains."""
    since = epoch
    for p in reversed([p for p in phases if p.start <= epoch]):
        if g not in p.trainable:
            break
        since = p.start
    return since


def rescale_lrs(
    optimizer: Optimizer, schedulers: Sequence[LRScheduler], ratios: Sequence[float]
) -> None:
    """Multiply the lr of stage i's group, now and in every later step, by ``ratios[i]``
    (module doc)."""
    for i, group in enumerate(optimizer.param_groups):
        r = ratios[group.get("stage", i)]  # groups of older checkpoints lack "stage"
        if r == 1.0:
            continue
        for key in _LR_KEYS:
            if key in group:
                group[key] *= r
        for sched in schedulers:
            sched.base_lrs[i] *= r
