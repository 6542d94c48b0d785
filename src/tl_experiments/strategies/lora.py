"""LoRA (Hu et al. 2022) through Hugging Face peft: adapters on a timm backbone, merged away
before a model leaves training (eval, predict, export, WiSE-FT).

``strategy.lora_targets`` is a regular expression over module names (``re.fullmatch``, as
peft applies a string ``target_modules``); of the modules it names, those peft can adapt
*and merge* get adapters: linear layers and ungrouped convolutions (peft cannot merge a
depthwise convolution). The new classifier never gets one: it trains whole. The list of
adapted names is resolved here and handed to peft explicitly, so the checkpoint stores
exactly which modules were adapted.
"""

from __future__ import annotations

import re

import torch.nn as nn

from tl_experiments.errors import UserError
from tl_experiments.stages.groups import classifier_modules

__all__ = ["adapters_for", "add_lora", "has_lora", "lora_targets", "merge_lora"]


def lora_targets(model: nn.Module, pattern: str) -> list[str]:
    """Names of the modules of ``model`` that ``pattern`` names and LoRA can adapt."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise UserError(f"strategy.lora_targets={pattern!r} is not a regex ({e}).") from None
    heads = {id(m) for h in classifier_modules(model) for m in h.modules()}
    names = []
    for name, m in model.named_modules():
        if id(m) in heads or not regex.fullmatch(name):
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            names.append(name)
    return names


def add_lora(
    model: nn.Module, rank: int, alpha: float, dropout: float, targets: str | list[str]
) -> list[str]:
    """Inject peft LoRA adapters in place into ``targets`` (a regex, or exact names);
    return the adapted module names. ``B`` starts at zero, so the model's outputs do not
    change until it trains."""
    from peft import LoraConfig, inject_adapter_in_model

    names = lora_targets(model, targets) if isinstance(targets, str) else list(targets)
    if not names:
        layers = sorted({type(m).__name__ for m in model.modules() if not list(m.children())})
        raise UserError(
            f"strategy.lora_targets={targets!r} names no linear layer or ungrouped "
            f"convolution of {type(model).__name__} (outside its head); its leaf layer "
            f"types are {', '.join(layers[:8])}: print(dict(model.named_modules()).keys()) "
            "and write a regex for the names to adapt."
        )
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names)
    inject_adapter_in_model(config, model)
    return names


def has_lora(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the base layer back (what peft's
    ``merge_and_unload`` does, for a model ``inject_adapter_in_model`` changed): the result
    has the original architecture and state-dict names. In place; returns ``model``."""
    if not any(".lora_" in f".{n}" for n, _ in model.named_parameters()):
        return model  # no adapters: peft (and the transformers it imports) is not loaded
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import _get_submodules

    layers = [name for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name in layers:
        parent, layer, leaf = _get_submodules(model, name)
        layer.merge(safe_merge=True)  # safe: refuses adapters that would write NaNs
        setattr(parent, leaf, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def adapters_for(model: nn.Module, strategy) -> dict | None:
    """Add the strategy's LoRA adapters to ``model`` (none when ``lora_rank`` is 0); return
    what a checkpoint needs to add them again (``meta["lora"]``), or None."""
    if not strategy.lora_rank:
        return None
    spec = {"rank": strategy.lora_rank, "alpha": strategy.lora_alpha}
    spec["dropout"] = strategy.lora_dropout
    spec["targets"] = add_lora(model, **spec, targets=strategy.lora_targets)
    return spec
