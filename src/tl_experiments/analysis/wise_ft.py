"""WiSE-FT (Wortsman et al. 2022): the weight-space interpolations
``(1 - a) * pretrained + a * fine-tuned`` of the backbone, evaluated after a fine-tuning run.

The new head is kept from the fine-tuned model at every ``a``, as the authors advise when
the head is new (interpolating toward a zero or random head means nothing). Buffers
(BatchNorm statistics) are interpolated like the weights; integer buffers (batch counters)
are the fine-tuned ones. LoRA adapters are merged first on both ends (the pretrained end has
``B = 0``, so it is the base), so the interpolation is in the plain model's weight space.
``a`` is picked on validation (ties go to the larger ``a``, the plain fine-tuned model at
the top), and the curve on the clean and shifted test sets is reported for every ``a``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from tl_experiments.analysis.shifts import shift_accuracy
from tl_experiments.stages.stage import get_stages
from tl_experiments.strategies.lora import merge_lora

__all__ = ["ALPHAS", "interpolate", "log_curve", "plain_ends", "wise_ft_curve"]

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def plain_ends(backbone: nn.Module, w0: Mapping[str, torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    """Copies of the backbone at its start (``w0``) and as trained, adapters merged in."""
    start, end = copy.deepcopy(backbone), copy.deepcopy(backbone)
    start.load_state_dict(w0)
    return merge_lora(start).eval(), merge_lora(end).eval()


def interpolate(
    start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], alpha: float, keep: set
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * end`` of every floating-point entry but ``keep``
    (taken from ``end``). Exact at both ends: ``alpha`` 0 gives ``start``, 1 gives ``end``."""
    return {
        k: v if k in keep or not v.is_floating_point() else start[k] * (1 - alpha) + v * alpha
        for k, v in end.items()
    }


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> float:
    device = next(model.parameters()).device
    hits = sum(
        int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
        for xb, yb in zip(x.split(batch), y.split(batch), strict=True)
    )
    return hits / max(len(y), 1)


def wise_ft_curve(
    backbone: nn.Module,
    w0: Mapping[str, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    data_cfg: Mapping,
    shifts: Sequence[str],
    alphas: Sequence[float] = ALPHAS,
) -> dict:
    """Validation and (clean and shifted) test accuracy of the interpolations at ``alphas``.

    Returns:
        ``alphas``, ``val_acc`` (one per alpha), ``test_acc`` (``clean`` and each shift,
        one list each), ``best_alpha`` (picked on validation) and the image counts.
    """
    start, end = plain_ends(backbone, w0)
    keep = set(get_stages(end)[-1].param_names)  # the new head: the fine-tuned one
    # Copies: load_state_dict below writes into the very tensors state_dict() returns.
    ends = tuple({k: v.detach().clone() for k, v in m.state_dict().items()} for m in (start, end))
    out = {"alphas": list(alphas), "val_acc": [], "test_acc": {}}
    for a in alphas:
        end.load_state_dict(interpolate(*ends, a, keep))
        out["val_acc"].append(_accuracy(end, *val))
        if shifts:
            accs = shift_accuracy(end, *test, data_cfg["mean"], data_cfg["std"], shifts)
        else:
            accs = {"clean": _accuracy(end, *test)}
        for name, acc in accs.items():
            out["test_acc"].setdefault(name, []).append(acc)
    best = max(range(len(alphas)), key=lambda i: (out["val_acc"][i], alphas[i]))
    out |= {"best_alpha": alphas[best], "val_images": len(val[1]), "test_images": len(test[1])}
    return out


def log_curve(loggers, curve: dict) -> None:
    """To every logger: each curve over alpha in percent (the step axis), and the pick."""
    for i, a in enumerate(curve["alphas"]):
        scalars = {"wise_ft/val_acc": curve["val_acc"][i]}
        scalars |= {f"wise_ft/test_{name}": accs[i] for name, accs in curve["test_acc"].items()}
        for logger in loggers:
            logger.log_metrics(scalars, step=round(100 * a))
    for logger in loggers:
        logger.log_metrics({"wise_ft/best_alpha": curve["best_alpha"]}, step=0)
