"""A transfer strategy is data: which stages train, at which learning rate, how BN behaves,
when stages unfreeze (see :mod:`tl_experiments.strategies.schedule`) and which regulariser applies.
Hydra checks a strategy file's keys and their types (``StrategySchema``,
:mod:`tl_experiments.config_schema`); :class:`Strategy` checks the values.

The code that applies a strategy never branches on its name, so a new strategy is a new
YAML file in ``conf/strategy/``, not new code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from tl_experiments.errors import UserError, require_number
from tl_experiments.stages.kinds import PARAM_KINDS

__all__ = ["BN_POLICIES", "Strategy"]

# BatchNorm of the stages that train: ``train`` normalises with batch statistics and
# updates the running averages (torch's default); ``frozen`` keeps the pretrained
# statistics (eval mode; the affine scale and shift still train); ``reestimate`` recomputes
# the statistics on the training images when the stage starts training, then keeps them.
BN_POLICIES = ("train", "frozen", "reestimate")


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
        trainable_bn: BatchNorm of the stages that train, one of :data:`BN_POLICIES`.
        phases: later changes to ``trainable`` (which holds from epoch 0): mappings with
            ``start`` (an epoch, or a fraction of ``trainer.max_epochs`` below 1),
            ``trainable`` (a stage spec) and ``lr_scale`` (multiplies every stage's lr from
            then on, default 1). LP-FT is one phase: ``{start: 0.25, trainable: all,
            lr_scale: 0.1}``.
        unfreeze_every_n_epochs: gradual unfreezing: one more frozen stage, from the top,
            every n epochs (ULMFiT: 1). Generates the phases; excludes ``phases``.
        unfreeze_milestones: gradual unfreezing at these epochs (or fractions), one stage each.
        unfreeze_warmup_epochs: a stage unfrozen mid-run ramps its lr over this many epochs:
            ``(k + 1) / (n + 1)`` of its lr in its k-th epoch after unfreezing; 0 = none.
        l2sp_alpha: L2-SP (Li et al. 2018), decoupled as AdamW decouples weight decay: each
            step moves every trainable backbone weight toward its starting (pretrained)
            value ``w0`` by ``lr * l2sp_alpha * (w - w0)``, in place of weight decay on the
            backbone (the head keeps ``weight_decay``: the paper's beta); 0 = off.
        param_kinds: which parameters train inside the trainable stages below the head:
            ``all``, or one or more of ``bias`` (BitFit), ``norm`` (normalisation affine
            parameters), ``lora`` (the adapters of ``lora_rank``). The head (the new
            classifier) always trains whole (``StrategyPlan.trains``).
        lora_rank: LoRA (Hu et al. 2022, through Hugging Face peft): the rank r of the
            adapters added to the modules ``lora_targets`` names; 0 = no adapters.
        lora_alpha: LoRA's scale numerator: the update is ``(alpha / r) * B A``.
        lora_dropout: dropout on the adapters' input.
        lora_targets: a regular expression that must match a module's whole name
            (``blocks.1.0.conv_pw``); of those, the linear layers and ungrouped
            convolutions outside the head get adapters (:mod:`tl_experiments.strategies.lora`).
        search: the strategy's own search space, as ``(key, values)`` pairs: each key a
            strategy key (``lr``, ``backbone_lr_scale``, ``phases.0.start``...), the grid
            the tuned comparison tries (``tune.enabled``, :mod:`tl_experiments.tuning`).
            Data in the strategy's YAML file, never in a script.
    """

    name: str
    pretrained: bool = True
    trainable: str | Sequence[int | str] = "all"
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0
    lr_decay: float = 1.0
    weight_decay: float = 0.01
    train_bn: bool = False
    trainable_bn: str = "train"
    phases: tuple[dict, ...] = ()
    unfreeze_every_n_epochs: int | None = None
    unfreeze_milestones: tuple[int | float, ...] = ()
    unfreeze_warmup_epochs: int = 0
    l2sp_alpha: float = 0.0
    param_kinds: str | tuple[str, ...] = "all"
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = ""
    search: tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self) -> None:
        for key in ("lr", "backbone_lr_scale", "lr_decay", "weight_decay", "l2sp_alpha"):
            require_number(f"strategy.{key}", getattr(self, key))
        for key in ("lr", "backbone_lr_scale", "lr_decay"):
            if not getattr(self, key) > 0:
                raise UserError(
                    f"strategy.{key}={getattr(self, key):g} must be positive; set "
                    f"strategy.{key} to a value above 0."
                )
        if self.weight_decay < 0:
            raise UserError(f"strategy.weight_decay={self.weight_decay:g} must be >= 0.")
        if self.l2sp_alpha < 0:
            raise UserError(f"strategy.l2sp_alpha={self.l2sp_alpha:g} must be >= 0 (0 = off).")
        if self.trainable_bn not in BN_POLICIES:
            raise UserError(
                f"strategy.trainable_bn={self.trainable_bn!r} is not one of "
                f"{', '.join(BN_POLICIES)}; pick one of them."
            )
        self._check_kinds()
        self._check_search()
        gradual = self.unfreeze_every_n_epochs is not None or bool(self.unfreeze_milestones)
        if gradual and self.phases:
            raise UserError(
                "strategy.phases and strategy.unfreeze_* both set; describe the "
                "schedule with one of them (unfreeze_* generates the phases)."
            )

    def _check_kinds(self) -> None:
        kinds = self.kinds
        bad = [k for k in kinds if k not in PARAM_KINDS] or (len(kinds) > 1 and "all" in kinds)
        if bad or not kinds:
            raise UserError(
                f"strategy.param_kinds={self.param_kinds!r} is not 'all' or a list of "
                f"{', '.join(PARAM_KINDS[1:])}; e.g. strategy.param_kinds=[bias,norm]."
            )
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int):
            raise UserError(f"strategy.lora_rank={self.lora_rank!r} must be an integer.")
        if self.lora_rank < 0 or ("lora" in kinds) != (self.lora_rank > 0):
            raise UserError(
                f"strategy.lora_rank={self.lora_rank} with param_kinds={list(kinds)}: LoRA "
                "needs both a rank above 0 and 'lora' in strategy.param_kinds (or neither)."
            )
        if self.lora_rank and not self.lora_targets:
            raise UserError("strategy.lora_targets is empty; give a regex over module names.")
        if not 0 <= self.lora_dropout < 1:
            raise UserError(f"strategy.lora_dropout={self.lora_dropout} must be in [0, 1).")

    def _check_search(self) -> None:
        known = {f.name for f in fields(self)} - {"name", "search"}
        for key, values in self.search:
            if key.split(".", 1)[0] not in known:
                raise UserError(
                    f"strategy.search names '{key}', which is not a strategy key; search "
                    f"over one of {', '.join(sorted(known))}."
                )
            if not values or any(isinstance(v, dict | list | tuple) for v in values):
                raise UserError(
                    f"strategy.search.{key}={list(values)} must be a non-empty list of "
                    f"values, e.g. strategy.search.{key}=[1e-3,3e-3,1e-2]."
                )

    @property
    def kinds(self) -> tuple[str, ...]:
        """``param_kinds`` as a tuple (``("all",)`` for every parameter)."""
        k = self.param_kinds
        return (k,) if isinstance(k, str) else tuple(k)

    @property
    def parameter_efficient(self) -> bool:
        """Only some kinds of parameters train below the head (BitFit, norm tuning, LoRA)."""
        return self.kinds != ("all",)

    @property
    def scheduled(self) -> bool:
        """Whether which stages train changes during a run (phases, gradual unfreezing)."""
        return bool(self.phases or self.unfreeze_every_n_epochs or self.unfreeze_milestones)

    @property
    def uses_l2sp(self) -> bool:
        return self.l2sp_alpha > 0

    @classmethod
    def from_dict(cls, cfg: dict) -> Strategy:
        """Build from a resolved ``strategy`` config (its keys and types are checked when
        Hydra composes it: ``StrategySchema`` in :mod:`tl_experiments.config_schema`)."""
        cfg = dict(cfg)
        if not isinstance(cfg.get("trainable", "all"), str):
            cfg["trainable"] = tuple(cfg["trainable"])
        # Tuples, so that the (frozen) strategy holds no mutable lists.
        cfg["phases"] = tuple(_phase(p) for p in cfg.get("phases") or ())
        cfg["unfreeze_milestones"] = tuple(cfg.get("unfreeze_milestones") or ())
        if not isinstance(cfg.get("param_kinds", "all"), str):
            cfg["param_kinds"] = tuple(cfg["param_kinds"])
        search = cfg.get("search") or {}
        cfg["search"] = tuple(
            (str(k), tuple(v) if isinstance(v, list | tuple) else (v,)) for k, v in search.items()
        )
        return cls(**cfg)


def _phase(p: dict) -> dict:
    unknown = sorted(set(p) - {"start", "trainable", "lr_scale"})
    if unknown or "start" not in p:
        raise UserError(
            f"strategy.phases entry {p} needs 'start' and allows only 'trainable' "
            "and 'lr_scale' besides; e.g. {start: 2, trainable: all, lr_scale: 0.1}."
        )
    p = dict(p)
    if not isinstance(p.get("trainable", "all"), str):
        p["trainable"] = tuple(p["trainable"])
    return p
