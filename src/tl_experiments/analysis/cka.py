"""Linear CKA (Kornblith et al. 2019): how similar two representations of the same inputs are.

1 means the same representation up to rotation and isotropic scaling; about 0 means
unrelated. Invariant to orthogonal transforms and scale, not to arbitrary linear maps, so
it compares a layer before and after fine-tuning even though individual units permute.
"""

from __future__ import annotations

import torch

__all__ = ["linear_cka"]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between ``x`` (n, p) and ``y`` (n, q), rows = the same n inputs.

    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc, Yc``
    (Kornblith et al. 2019, eq. 5 in the feature-space form), in float64.

    Raises:
        ValueError: if the two representations cover a different number of inputs.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"CKA needs the same inputs on both sides: {x.shape[0]} vs {y.shape[0]} rows."
        )
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if norm <= 0:  # a constant representation (e.g. a dead layer) carries no information
        return 0.0
    return float(cross / norm)
