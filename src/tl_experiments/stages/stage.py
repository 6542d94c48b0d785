"""A backbone's stages, from timm's own ``group_matcher(coarse=True)``; never per-model lists.

For resnet50 that gives stem (conv1), layer1..layer4 and the classifier: the lesson's
conv1, conv2_x..conv5_x and fc. Every strategy speaks in stages, so it works on any timm
architecture without per-model code. The head is the new classifier only: pretrained
layers timm groups with it (VGG's pre-logits MLP, MobileNetV3's conv_head, a ConvNeXt's
or ViT's final norm) are a stage of their own, the ``neck``, frozen or trained like any
other. Each stage owns exactly the modules its parameters and buffers live in
(:mod:`tl_experiments.stages.groups`). ``scripts/check_zoo.py`` checks all of this
on one model of every timm family (docs/architectures.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch.nn as nn

from tl_experiments.errors import UserError
from tl_experiments.stages.groups import (
    classifier_modules,
    coarse_groups,
    named_tensors,
    owned_modules,
)
from tl_experiments.stages.kinds import param_kinds

__all__ = [
    "Stage",
    "batch_norms",
    "classifier_modules",
    "get_stages",
    "select_stages",
    "stage_summary",
]


@dataclass
class Stage:
    """One stage of a backbone: ``stem``, ``stage1``.., ``neck`` (pretrained layers between
    the last feature stage and the classifier, where a model has them), ``head`` (the new
    classifier only)."""

    name: str
    index: int
    param_names: list[str]
    params: list[nn.Parameter] = field(repr=False)
    modules: list[nn.Module] = field(repr=False)  # the submodules this stage owns
    module_names: list[str] = field(default_factory=list)  # their paths in the model
    tensor_paths: list[str] = field(default_factory=list, repr=False)  # those holding tensors
    kinds: list[frozenset[str]] = field(default_factory=list, repr=False)  # per param

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def num_trainable(self) -> int:
        """Parameters that train now (all, or only some kinds: BitFit, LoRA...)."""
        return sum(p.numel() for p in self.params if p.requires_grad)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.params)

    @property
    def prefixes(self) -> str:
        """Where the stage lives, e.g. ``layer1`` or ``blocks.6, conv_head, bn2``: the
        paths of its modules that hold tensors (runs of siblings as ``blocks.0-3``)."""
        return _compact(self.tensor_paths or self.param_names)


def get_stages(model: nn.Module) -> list[Stage]:
    """Split ``model`` into ordered stages: timm's coarse groups, the new classifier taken
    out of them as the ``head``, and what else its group held as the ``neck``.

    Raises:
        UserError: when the model's stages cannot be told apart (see the message).
    """
    groups, head = _split_head(model)
    named = dict(model.named_parameters())
    names = [f"stage{i}" for i in range(len(groups))]
    names[0] = "stem"
    if head[1]:
        names[-1] = "neck"
    groups.append(head[0])
    names.append("head")
    owner = _tensor_owner(model, {n: i for i, g in enumerate(groups) for n in g})
    paths = owned_modules(model, owner)
    holding = {p for p, _ in named_tensors(model)}
    kinds = param_kinds(model)
    stages = []
    for i, (name, group) in enumerate(zip(names, groups, strict=True)):
        own = paths.get(i, [])
        tensor_paths = [p for p in own if any(h == p or h.startswith(p + ".") for h in holding)]
        stage = Stage(name, i, group, [named[n] for n in group], [], own, tensor_paths)
        stage.kinds = [kinds.get(n, frozenset()) for n in group]
        stage.modules = [model.get_submodule(p) for p in own]
        stages.append(stage)
    return stages


def _split_head(model: nn.Module) -> tuple[list[list[str]], tuple[list[str], bool]]:
    """The coarse groups without the classifier, and (the classifier's parameter names,
    whether the last group held more than the classifier: then that rest is the neck)."""
    try:
        head_ids = {id(p) for m in classifier_modules(model) for p in m.parameters()}
    except (AttributeError, NotImplementedError):
        head_ids = set()
    if not head_ids:
        raise UserError(
            f"{type(model).__name__} has no classifier with parameters (get_classifier()); "
            "this family cannot be fine-tuned here: pick a model that classifies."
        )
    named = dict(model.named_parameters())
    groups = coarse_groups(model)
    head = [n for g in groups for n in g if id(named[n]) in head_ids]
    # A neck: the last group held the classifier and more.
    neck = {id(named[n]) in head_ids for n in groups[-1]} == {True, False}
    rest = [[n for n in g if id(named[n]) not in head_ids] for g in groups]
    rest = [g for g in rest if g]
    if not rest:
        raise UserError(
            f"{type(model).__name__} has no parameters besides its classifier; "
            "pick a model with a backbone."
        )
    return rest, (head, neck)


def _tensor_owner(model: nn.Module, param_stage: dict[str, int]) -> dict[str, int]:
    """Stage of every parameter (as grouped) and buffer: a buffer belongs to the stage of
    the parameters nearest to it in the module tree (its own module's, or the closest
    ancestor's; the lowest stage when that ancestor holds several, e.g. a top-level
    position-embedding buffer goes with the stem)."""
    under: dict[str, set[int]] = defaultdict(set)
    for name, stage in param_stage.items():
        parts = name.split(".")[:-1]
        for k in range(len(parts) + 1):
            under[".".join(parts[:k])].add(stage)
    owner = dict(param_stage)
    for path, name in named_tensors(model):
        if name in owner:
            continue
        parts = path.split(".") if path else []
        while ".".join(parts) not in under:
            parts.pop()
        owner[name] = min(under[".".join(parts)])
    return owner


def _compact(paths: Sequence[str]) -> str:
    """``blocks.0, blocks.1, blocks.2, norm`` -> ``blocks.0-2, norm``."""
    out: list[list] = []  # [parent, first, last] for numeric runs, [path] otherwise
    for path in paths:
        parent, _, last = path.rpartition(".")
        run = out[-1] if out and len(out[-1]) == 3 else None
        if last.isdigit() and run and run[0] == parent and int(last) == run[2] + 1:
            run[2] = int(last)
        elif last.isdigit() and parent:
            out.append([parent, int(last), int(last)])
        else:
            out.append([path])
    return ", ".join(
        e[0] if len(e) == 1 else f"{e[0]}.{e[1]}" + (f"-{e[2]}" if e[2] > e[1] else "") for e in out
    )


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
    trainable: Sequence[int] | None = None,
) -> str:
    """The lesson's model summary, measured: one row per stage, totals, trainable share;
    with ``lrs`` each stage's learning rate, with ``weights`` where they came from, with
    ``trainable`` each stage's count of parameters that train (else: those that require
    grad now)."""
    counts = list(trainable) if trainable is not None else [s.num_trainable for s in stages]
    total = sum(s.num_params for s in stages)
    trainable_total = sum(counts)
    width = max(len(s.prefixes) for s in stages)
    width = min(max(width, 7), 40)
    lines = [f"Model: {title}"]
    lines += [f"Weights: {weights}"] if weights else []
    lines += [
        f"Total parameters: {total:,}",
        "",
        f"  {'stage':8s} {'modules':{width}s} {'params':>12s}  status    {'trainable':>10s}"
        + ("     lr" if lrs else ""),
    ]
    for i, s in enumerate(stages):
        status = "trainable" if counts[i] else "frozen   "
        lr = f"  {lrs[i]:.2g}" if lrs else ""
        row = (
            f"  {s.name:8s} {s.prefixes[:width]:{width}s} {s.num_params:>12,}  {status} "
            f"{counts[i]:>10,}{lr}"
        )
        lines.append(row.rstrip())
    share = 100.0 * trainable_total / max(total, 1)
    lines += ["", f"Trainable parameters: {trainable_total:,} of {total:,} ({share:.1f}%)"]
    return "\n".join(lines)


def batch_norms(stage: Stage) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers inside a stage's modules (timm's BatchNormAct2d included)."""
    found = {id(m): m for top in stage.modules for m in top.modules()}
    return [m for m in found.values() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
