"""How far each backbone stage moved from its starting weights: ``||w - w0|| / ||w0||``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tl_experiments.stages.stage import Stage

__all__ = ["snapshot_weights", "weight_drift"]


def snapshot_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model.state_dict()``: the starting point ``w0`` of the run."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def weight_drift(stages: Sequence[Stage], w0: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative distance of every stage but the head from ``w0`` (0 = unchanged).

    Parameters only (BatchNorm running statistics are buffers and left out, as in L2-SP).
    The head is left out too: it is a new classifier whose ``w0`` is zero or random, so the
    ratio says nothing about forgetting. A stage that never trained gives exactly 0.

    Args:
        stages: the backbone's stages (their ``param_names`` key ``w0``).
        w0: the backbone's state dict at the start of the run (see :func:`snapshot_weights`).
    """
    out = {}
    for stage in stages[:-1]:
        diff = ref = 0.0
        for name, p in zip(stage.param_names, stage.params, strict=True):
            start = w0[name].to(torch.float64)
            diff += float((p.detach().cpu().to(torch.float64) - start).pow(2).sum())
            ref += float(start.pow(2).sum())
        out[stage.name] = (diff**0.5) / max(ref**0.5, 1e-12)
    return out
