"""Which tensors and modules of a timm model form each stage, for any naming.

Three questions :func:`tl_experiments.stages.stage.get_stages` asks of any timm model:

- the coarse groups of its parameters: timm's ``group_matcher(coarse=True)``; its fine
  matcher where timm has no coarse one (RDNet); the top-level children where the model
  has no matcher at all (MetaFormer, PiT, CSATv2);
- its new classifier: ``get_classifier()``, one module or several (LeViT, EfficientFormer
  and SwiftFormer carry a distillation head beside the class head, CrossViT one per branch,
  VOLO an auxiliary token-labelling head);
- the modules a stage owns: the largest submodules whose parameters and buffers all
  belong to it, whatever their names (numeric or not, nested), so that ``eval()`` on a
  frozen stage reaches its BatchNorm, dropout and drop-path, and nothing else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch.nn as nn
from timm.layers import DropPath, PatchDropout
from timm.models import group_parameters

__all__ = ["classifier_modules", "coarse_groups", "named_tensors", "owned_modules"]

# Parameter-free modules that act on what the next module receives: dropout before a
# classifier is the classifier's (timm's drop_rate), so it trains with the head.
_FEEDS_NEXT = (nn.modules.dropout._DropoutNd, DropPath, PatchDropout)


def classifier_modules(model: nn.Module) -> list[nn.Module]:
    """The model's new classifier: ``get_classifier()``, as a list (some models have two,
    as a tuple or, CrossViT's one per branch, a ``ModuleList``), and any other top-level
    linear layer with one output per class, which timm's ``reset_classifier`` replaces as
    well (VOLO's token-labelling ``aux_head``, added to the logits)."""
    head = model.get_classifier()
    heads = list(head) if isinstance(head, tuple | list | nn.ModuleList) else [head]
    n = getattr(model, "num_classes", 0)
    extra = [
        m
        for m in model.children()
        if isinstance(m, nn.Linear) and m.out_features == n and all(m is not h for h in heads)
    ]
    return heads + extra


def coarse_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names in coarse groups, bottom to top (timm's grouping where it has one)."""
    matcher = getattr(model, "group_matcher", None)
    for coarse in (True, False):  # RDNet asserts on coarse=True; its fine groups are stages
        if matcher is None:
            break
        try:
            groups = group_parameters(model, matcher(coarse=coarse))
        except (AssertionError, NotImplementedError):
            continue
        return [groups[k] for k in sorted(groups)]
    return _top_level_groups(model)


def _top_level_groups(model: nn.Module) -> list[list[str]]:
    """Without a matcher: one group per top-level child, in definition order, and one per
    element of a top-level ``Sequential``/``ModuleList`` that does not hold the classifier
    (MetaFormer's and PiT's ``stages``), which is how timm's own matchers split them."""
    head = {id(p) for m in classifier_modules(model) for p in m.parameters()}
    groups: list[list[str]] = [[n for n, _ in model.named_parameters(recurse=False)]]
    for name, child in model.named_children():
        params = list(child.parameters())
        split = isinstance(child, nn.Sequential | nn.ModuleList) and not any(
            id(p) in head for p in params
        )
        parts = child.named_children() if split else [("", child)]
        for sub, module in parts:
            prefix = f"{name}.{sub}" if sub else name
            groups.append([f"{prefix}.{n}" for n, _ in module.named_parameters()])
    # Bare top-level parameters (a cls_token) embed the input: they join the first group.
    groups = [g for g in groups if g]
    if len(groups) > 1 and groups[0] and "." not in groups[0][0]:
        groups[1] = groups[0] + groups[1]
        groups = groups[1:]
    return groups


def named_tensors(model: nn.Module) -> Iterator[tuple[str, str]]:
    """``(module path, tensor name)`` of every parameter and buffer, in definition order."""
    for path, module in model.named_modules():
        for kind in (module._parameters, module._buffers):
            for name, t in kind.items():
                if t is not None:
                    yield path, f"{path}.{name}" if path else name


def owned_modules(model: nn.Module, owner: dict[str, int]) -> dict[int, list[str]]:
    """Stage index -> paths of the modules it owns, in definition order.

    A module belongs to a stage when every parameter and buffer under it does; the
    largest such modules are taken. A module that holds no tensors (activation, pooling,
    flatten, dropout) goes with its neighbour: dropout with the module it feeds, anything
    else with the module it follows (it finishes that module's output).

    Args:
        model: the backbone.
        owner: tensor name (parameter or buffer) -> stage index, for every tensor.
    """
    below: dict[str, list[int]] = defaultdict(list)  # module path -> stages, in order
    for path, name in named_tensors(model):
        parts = path.split(".") if path else []
        for k in range(len(parts) + 1):
            below[".".join(parts[:k])].append(owner[name])
    out: dict[int, list[str]] = defaultdict(list)
    _assign(model, "", below, out)
    return out


def _assign(
    module: nn.Module, path: str, below: dict[str, list[int]], out: dict[int, list[str]]
) -> None:
    children = [(f"{path}.{n}" if path else n, c) for n, c in module.named_children()]
    for i, (child_path, child) in enumerate(children):
        stages = set(below.get(child_path, ()))
        if len(stages) > 1:
            _assign(child, child_path, below, out)
        elif stages:
            out[stages.pop()].append(child_path)
        else:
            out[_neighbour_stage(children, i, below, path)].append(child_path)


def _neighbour_stage(
    children: list[tuple[str, nn.Module]], i: int, below: dict[str, list[int]], parent: str
) -> int:
    feeds_next = any(isinstance(m, _FEEDS_NEXT) for m in children[i][1].modules())
    after = [below[p][0] for p, _ in children[i + 1 :] if p in below]
    before = [below[p][-1] for p, _ in children[:i] if p in below]
    if feeds_next:
        return (after or before[::-1] or below[parent])[0]
    return (before[::-1] or after or below[parent])[0]
