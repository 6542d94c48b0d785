"""What kind of parameter each one is: a bias, a normalisation layer's affine parameter, a
LoRA adapter's, or other. Strategies that train only some kinds inside a stage (BitFit,
norm tuning, LoRA) select by these names (``strategy.param_kinds``)."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["PARAM_KINDS", "param_kinds"]

# ``all`` trains every parameter of a trainable stage; the others only those of that kind.
PARAM_KINDS = ("all", "bias", "norm", "lora")

# Normalisation layers by type; timm's own (BatchNormAct2d, LayerNorm2d, RmsNorm,
# GroupNorm1, FrozenBatchNorm2d...) subclass these or carry "Norm" in their class name.
_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORMS) or "Norm" in type(module).__name__


def param_kinds(model: nn.Module) -> dict[str, frozenset[str]]:
    """Kinds of every parameter of ``model``, by name.

    A bias is any parameter named ``bias`` (BitFit, Zaken et al. 2022, trains all of them,
    normalisation biases included); ``norm`` is the weight and bias of a normalisation
    layer; ``lora`` a parameter inside a peft LoRA adapter (``lora_A``, ``lora_B``...).
    """
    kinds: dict[str, frozenset[str]] = {}
    for path, module in model.named_modules():
        norm = _is_norm(module)
        for leaf, _ in module.named_parameters(recurse=False):
            name = f"{path}.{leaf}" if path else leaf
            found = set()
            if leaf == "bias":
                found.add("bias")
            if norm:
                found.add("norm")
            if ".lora_" in f".{name}":
                found.add("lora")
            kinds[name] = frozenset(found)
    return kinds
