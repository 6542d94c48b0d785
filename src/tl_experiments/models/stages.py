"""A backbone's stages, from timm's own ``group_matcher(coarse=True)``; never per-model lists.

For resnet50 that gives stem (conv1), layer1..layer4 and the classifier: the seed's
conv1, conv2_x..conv5_x and fc. Every strategy speaks in stages, so it works on any timm
architecture without per-model code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch.nn as nn
from timm.models import group_parameters

from tl_experiments.errors import UserError

__all__ = ["Stage", "batch_norms", "get_stages", "select_stages", "stage_summary"]


@dataclass
class Stage:
    """One coarse group of a backbone: ``stem``, ``stage1``.., ``head`` (holds the classifier)."""

    name: str
    index: int
    param_names: list[str]
    params: list[nn.Parameter] = field(repr=False)
    modules: list[nn.Module] = field(repr=False)  # the submodules this stage is made of

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.params)

    @property
    def prefixes(self) -> str:
        """Where the stage lives in the model, e.g. ``layer1`` or ``blocks.6, conv_head, bn2``."""
        # Collapse to the top-level name when a stage holds several of its children
        # (layer1.0, layer1.1 -> layer1), keep the child when it is one (blocks.6).
        by_top: dict[str, dict[str, None]] = {}
        for n in self.param_names:
            parts = n.split(".")
            child = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
            by_top.setdefault(parts[0], {})[child] = None
        return ", ".join(next(iter(c)) if len(c) == 1 else top for top, c in by_top.items())


def get_stages(model: nn.Module) -> list[Stage]:
    """Split ``model`` into ordered stages with timm's coarse group matcher."""
    groups = group_parameters(model, model.group_matcher(coarse=True))
    named = dict(model.named_parameters())
    head_params = {id(p) for p in model.get_classifier().parameters()}
    ids = sorted(groups)
    stages = []
    for i, gid in enumerate(ids):
        names = list(groups[gid])
        params = [named[n] for n in names]
        if i == len(ids) - 1:
            name = "head"
            if not head_params <= {id(p) for p in params}:
                raise RuntimeError(
                    f"{type(model).__name__}: the classifier is not in the last "
                    "parameter group of group_matcher(coarse=True)."
                )
        else:
            name = "stem" if i == 0 else f"stage{i}"
        stage = Stage(name, i, names, params, [])
        # Whole submodules (with their dropout and drop-path), so eval() covers everything.
        stage.modules = [
            m
            for path in stage.prefixes.split(", ")
            if isinstance(m := _submodule(model, path), nn.Module)
        ]
        stages.append(stage)
    return stages


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:  # a bare parameter such as a ViT's cls_token
        return None


def select_stages(stages: Sequence[Stage], spec: str | Sequence[int | str]) -> list[Stage]:
    """Stages named by ``spec``.

    ``spec`` is ``all``, ``head`` (the classifier only), ``none``, ``from:K`` (stage K and
    everything above it, counting the stem as 0), or a list of stage names (``stem``,
    ``stage2``, ``head``) and indices (negative counts from the head: -1 is the head).
    """
    if isinstance(spec, str):
        if spec == "all":
            return list(stages)
        if spec == "none":
            return []
        if spec == "head":
            return [stages[-1]]
        if spec.startswith("from:"):
            k = _index(stages, spec[5:])
            return list(stages[k:])
        spec = [spec]
    return [stages[_index(stages, s)] for s in spec]


def _index(stages: Sequence[Stage], item: int | str) -> int:
    names = [s.name for s in stages]
    if isinstance(item, str) and item in names:
        return names.index(item)
    try:
        k = int(item)
    except ValueError:
        raise UserError(
            f"Unknown stage '{item}'; this model's stages are "
            f"{', '.join(names)} (or their indices 0..{len(names) - 1})."
        ) from None
    if not -len(stages) <= k < len(stages):
        raise UserError(
            f"Stage index {k} is out of range: this model has {len(stages)} stages "
            f"({', '.join(names)}); pick an index from 0 to {len(stages) - 1}."
        )
    return k % len(stages)


def stage_summary(
    stages: Sequence[Stage],
    title: str,
    lrs: Sequence[float] | None = None,
    weights: str | None = None,
) -> str:
    """The seed's model summary, measured: one row per stage, totals, trainable share;
    with ``lrs`` each stage's learning rate, with ``weights`` where they came from."""
    total = sum(s.num_params for s in stages)
    trainable = sum(s.num_params for s in stages if s.trainable)
    width = max(len(s.prefixes) for s in stages)
    width = min(max(width, 7), 40)
    lines = [f"Model: {title}"]
    lines += [f"Weights: {weights}"] if weights else []
    lines += [
        f"Total parameters: {total:,}",
        "",
        f"  {'stage':8s} {'modules':{width}s} {'params':>12s}  status" + ("     lr" if lrs else ""),
    ]
    for i, s in enumerate(stages):
        status = "trainable" if s.trainable else "frozen   "
        lr = f"  {lrs[i]:.2g}" if lrs else ""
        row = f"  {s.name:8s} {s.prefixes[:width]:{width}s} {s.num_params:>12,}  {status}{lr}"
        lines.append(row.rstrip())
    share = 100.0 * trainable / max(total, 1)
    lines += ["", f"Trainable parameters: {trainable:,} of {total:,} ({share:.1f}%)"]
    return "\n".join(lines)


def batch_norms(stage: Stage) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers inside a stage's modules (timm's BatchNormAct2d included)."""
    found = {id(m): m for top in stage.modules for m in top.modules()}
    return [m for m in found.values() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
