"""L2-SP (Li et al. 2018): keep the backbone near its starting point, not near zero.

The paper adds ``alpha/2 ||w - w0||^2`` to the loss under SGD. Under Adam a penalty in the
loss is divided by the gradient's running scale like every other gradient, so it barely
pulls (the same reason AdamW decouples weight decay: Loshchilov & Hutter 2019): at the
paper's alpha = 0.01 the weights drift exactly as far as without it. Here the pull is
decoupled the same way AdamW's decay is: before each optimizer step every trainable
backbone weight moves toward ``w0`` by ``lr * alpha * (w - w0)``, with its group's lr.
``alpha`` is therefore in AdamW's ``weight_decay`` units (per unit of lr, per step).

``w0`` lives in buffers (saved in checkpoints, moved with the module, never in the
optimizer), so a resumed run pulls toward the same point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.optim import Optimizer

from tl_experiments.stages.stage import Stage

__all__ = ["L2SP"]


class L2SP(nn.Module):
    """The decoupled pull toward ``w0`` and the drift ``||w - w0|| / ||w0||`` per stage.

    Args:
        stages: the backbone's stages; all but the last (the head) get a copy of ``w0``.
        alpha: strength of the pull, per unit of lr and per step (AdamW's decay units).
    """

    def __init__(self, stages: Sequence[Stage], alpha: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.stages = list(stages)  # a plain list: the params stay the backbone's
        for s in stages[:-1]:
            for name, p in zip(s.param_names, s.params, strict=True):
                self.register_buffer(_key(name), p.detach().clone())

    def attach(self, optimizer: Optimizer) -> None:
        """Pull before every step of ``optimizer`` (whose groups are one per stage)."""
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.pull(opt))

    @torch.no_grad()
    def pull(self, optimizer: Optimizer) -> None:
        """``w -= lr * alpha * (w - w0)`` for each backbone weight that has a gradient."""
        head = self.stages[-1].index
        for group in optimizer.param_groups:
            stage = self.stages[group["stage"]]
            if stage.index == head:
                continue
            rate = group["lr"] * self.alpha
            for name, p in zip(stage.param_names, group["params"], strict=True):
                if p.grad is not None:  # frozen now: no step, no pull (as torch skips it)
                    p.lerp_(self.get_buffer(_key(name)).to(p.dtype), rate)

    def _sq_dist(self, stage: Stage) -> torch.Tensor:
        return sum(
            (p - self.get_buffer(_key(n))).pow(2).sum()
            for n, p in zip(stage.param_names, stage.params, strict=True)
        )

    @torch.no_grad()
    def drift(self, stages: Sequence[Stage]) -> dict[str, float]:
        """``||w - w0|| / ||w0||`` per backbone stage (0 = unchanged)."""
        out = {}
        for s in stages[:-1]:
            ref = sum(self.get_buffer(_key(n)).pow(2).sum() for n in s.param_names)
            out[s.name] = float(self._sq_dist(s).sqrt() / ref.sqrt().clamp_min(1e-12))
        return out


def _key(param_name: str) -> str:
    # Buffer names may not contain dots.
    return "w0__" + param_name.replace(".", "__")
