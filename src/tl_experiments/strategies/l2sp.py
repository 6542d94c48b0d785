"""L2-SP (Li et al. 2018): keep the backbone near its starting point, not near zero.

``alpha/2 ||w - w0||^2`` over the backbone (every stage but the head) pulls fine-tuned
weights toward the pretrained ones ``w0``; ``beta/2 ||w||^2`` is plain L2 on the new head.
``w0`` lives in buffers (saved in checkpoints, moved with the module, never in the
optimizer), so a resumed run pulls toward the same point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tl_experiments.models.stages import Stage

__all__ = ["L2SP"]


class L2SP(nn.Module):
    """The L2-SP penalty and the drift ``||w - w0|| / ||w0||`` of each backbone stage.

    Args:
        stages: the backbone's stages; all but the last (the head) get a copy of ``w0``.
        alpha: weight of the pull toward ``w0`` on the backbone.
        beta: weight of the L2 penalty on the head.
    """

    def __init__(self, stages: Sequence[Stage], alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        for s in stages[:-1]:
            for name, p in zip(s.param_names, s.params, strict=True):
                self.register_buffer(_key(name), p.detach().clone())

    def forward(self, stages: Sequence[Stage]) -> torch.Tensor:
        """The penalty for the current weights; frozen stages add nothing (no gradient)."""
        backbone = sum(
            (self._sq_dist(s) for s in stages[:-1] if s.trainable),
            torch.zeros((), device=stages[-1].params[0].device),
        )
        head = sum(p.pow(2).sum() for p in stages[-1].params)
        return 0.5 * self.alpha * backbone + 0.5 * self.beta * head

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
