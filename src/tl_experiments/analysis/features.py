"""Per-stage features of a backbone: each stage's output, pooled to one vector per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tl_experiments.stages.stage import Stage

__all__ = ["pool", "stage_features"]


def pool(output: torch.Tensor) -> torch.Tensor:
    """One vector per image: global average over space (N, C, H, W) or tokens (N, T, C)."""
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    if output.dim() == 3:
        return output.mean(dim=1)
    return output.reshape(output.shape[0], -1)


@torch.no_grad()
def stage_features(
    backbone: nn.Module, stages: Sequence[Stage], images: torch.Tensor, batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """Pooled output of every stage but the head, for ``images``, in eval mode.

    A stage's output is that of the last of its modules to run (forward hooks on all of
    them): for a ResNet ``layer2``, for MobileNetV3's neck the activation after
    ``conv_head``. The head is left out: it has no pretrained counterpart.

    Returns:
        Stage name -> float tensor (n_images, channels), on the CPU.
    """
    caught: dict[str, list[torch.Tensor]] = {s.name: [] for s in stages[:-1]}
    latest: dict[str, torch.Tensor] = {}  # per batch: the last output seen of each stage
    hooks = [
        m.register_forward_hook(_catcher(latest, s.name)) for s in stages[:-1] for m in s.modules
    ]
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    try:
        for batch in images.split(batch_size):
            latest.clear()
            backbone(batch.to(device))
            for name, out in latest.items():
                caught[name].append(pool(out).float().cpu())
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    return {name: torch.cat(parts) for name, parts in caught.items() if parts}


def _catcher(latest: dict[str, torch.Tensor], name: str):
    def hook(module: nn.Module, args, output) -> None:
        out = output[0] if isinstance(output, tuple | list) else output
        if isinstance(out, torch.Tensor):
            latest[name] = out

    return hook
