"""Checkpoints of parameter-efficient runs (BitFit, norm tuning, LoRA) hold only what
trained: the frozen base weights are left out and named by a digest instead, and are
rebuilt from the run's weights source (``model.weights``) when the checkpoint is loaded.
A checkpoint refuses to load over base weights with another digest.

Only where the base can be rebuilt: with ``model.weights=none`` (random init) the frozen
weights exist nowhere else, so those checkpoints stay whole. Buffers (BatchNorm statistics)
are always kept: they are small, and a BatchNorm policy may update them.
"""

from __future__ import annotations

import torch

from tl_experiments.errors import UserError
from tl_experiments.models.weights import weights_digest

__all__ = ["base_digest", "fill_base", "frozen_base_keys", "strip_base"]

KEY = "base_weights"  # in the checkpoint's "tl_experiments" entry: the base's digest


def frozen_base_keys(module: torch.nn.Module) -> set[str]:
    """State-dict keys of the module's parameters that do not train."""
    return {k for k, p in module.named_parameters() if not p.requires_grad}


def base_digest(state: dict[str, torch.Tensor], keys: set[str]) -> str:
    """Digest of ``state``'s ``keys``, named relative to the backbone (the module's state
    says ``backbone.conv_stem.weight``, the bare backbone's ``conv_stem.weight``)."""
    return weights_digest({k.removeprefix("backbone."): state[k] for k in keys})


def strip_base(module: torch.nn.Module, checkpoint: dict) -> None:
    """Drop the frozen base from ``checkpoint`` (written by Lightning) and record its digest."""
    keys = frozen_base_keys(module)
    state = checkpoint["state_dict"]
    checkpoint["tl_experiments"][KEY] = base_digest(state, keys)
    checkpoint["state_dict"] = {k: v for k, v in state.items() if k not in keys}


def fill_base(stored: dict[str, torch.Tensor], current: dict[str, torch.Tensor], digest: str):
    """``stored`` (a checkpoint's state without its base) completed with ``current``'s base,
    after checking that base is the one the checkpoint was trained over.

    Raises:
        UserError: when the base weights differ (another ``model.weights`` or file).
    """
    missing = set(current) - set(stored)
    found = base_digest(current, missing)
    if found != digest:
        raise UserError(
            "This checkpoint holds only the weights a parameter-efficient run trained; it "
            f"was trained over base weights {digest}, but the weights it would load over "
            f"are {found}: rebuild with the same model.weights (and weights file) as "
            "that run."
        )
    return {**{k: current[k] for k in missing}, **stored}
