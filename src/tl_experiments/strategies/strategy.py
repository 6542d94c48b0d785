"""A transfer strategy is data: which stages train, at which learning rate, how BN behaves.

The code that applies a strategy never branches on its name, so a new strategy is a new
YAML file in ``conf/strategy/``, not new code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from tl_experiments.errors import UserError
from tl_experiments.models.stages import Stage, select_stages

__all__ = ["Strategy", "apply_trainable", "param_groups", "stage_lrs"]


@dataclass(frozen=True)
class Strategy:
    """How to reuse a pretrained backbone.

    Attributes:
        name: the strategy's config name (for logs and reports only, never for branching).
        pretrained: start from pretrained weights (else random init).
        trainable: stages that train, in the syntax of :func:`select_stages`
            (``all``, ``head``, ``from:K``, or a list of names / indices).
        lr: learning rate of the head (the classifier stage).
        backbone_lr_scale: lr of the stage just below the head = ``lr * backbone_lr_scale``.
        lr_decay: each stage further down gets this factor once more (ULMFiT's 1/2.6 per
            stage, BEiT's layer decay 0.65-0.8); 1.0 = the same lr for the whole backbone.
        weight_decay: AdamW's decoupled weight decay.
        train_bn: whether BatchNorm layers of frozen stages update their running statistics;
            ``False`` keeps frozen stages in eval mode, so their statistics stay fixed.
    """

    name: str
    pretrained: bool = True
    trainable: str | Sequence[int | str] = "all"
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0
    lr_decay: float = 1.0
    weight_decay: float = 0.01
    train_bn: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("lr", "backbone_lr_scale", "lr_decay"):
            if not getattr(self, key) > 0:
                raise UserError(f"strategy.{key}={getattr(self, key)} must be positive; set "
                                f"strategy.{key} to a value above 0.")
        if self.weight_decay < 0:
            raise UserError(f"strategy.weight_decay={self.weight_decay} must be >= 0.")

    @classmethod
    def from_dict(cls, cfg: dict) -> Strategy:
        """Build from a config mapping; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise UserError(f"Unknown strategy key(s) {', '.join(unknown)}; known keys are "
                            f"{', '.join(sorted(known))}.")
        cfg = dict(cfg)
        if not isinstance(cfg.get("trainable", "all"), str):
            cfg["trainable"] = tuple(cfg["trainable"])
        return cls(**cfg)


def stage_lrs(strategy: Strategy, n_stages: int) -> list[float]:
    """Learning rate of each stage, bottom (stem) to top (head)."""
    lrs = []
    for i in range(n_stages):
        depth = n_stages - 1 - i  # 0 for the head, 1 for the stage just below it
        scale = 1.0 if depth == 0 else strategy.backbone_lr_scale * strategy.lr_decay ** (depth - 1)
        lrs.append(strategy.lr * scale)
    return lrs


def apply_trainable(stages: Sequence[Stage], spec: str | Sequence[int | str]) -> list[Stage]:
    """Set ``requires_grad`` so that exactly the stages in ``spec`` train; return them."""
    chosen = select_stages(stages, spec)
    chosen_ids = {s.index for s in chosen}
    for s in stages:
        for p in s.params:
            p.requires_grad_(s.index in chosen_ids)
    return chosen


def param_groups(stages: Sequence[Stage], strategy: Strategy) -> list[dict]:
    """One optimizer group per stage, frozen ones included (fastai's design).

    Freezing later only flips ``requires_grad`` (a param without grad is skipped by torch
    optimizers), so schedulers and checkpoints always see the same groups.
    """
    lrs = stage_lrs(strategy, len(stages))
    return [
        {"params": s.params, "lr": lr, "name": s.name, "weight_decay": strategy.weight_decay}
        for s, lr in zip(stages, lrs, strict=True)
    ]
