"""Each model at an input size it accepts.

``model.img_size`` left at its default is the size timm made the model for (its pretrained
config's ``input_size``: 224 for ``vit_tiny_patch16_224``, 299 for ``inception_v3``; the
``${tl_model_default:...}`` resolver in conf/model, commands/resolvers.py). An explicit size
is honoured where the model can take it: a model with a fixed input size (ViTs, Swin, LeViT...) is
built for that size through timm's ``img_size`` argument (hub weights get their position
embeddings resampled by timm; a weights file must match); any model is then checked with
one forward pass at the size, so a size it cannot take ends before training, in one
sentence that names ``model.img_size`` and sizes it does take.
"""

from __future__ import annotations

from collections.abc import Callable

import timm
import torch
import torch.nn as nn

from tl_experiments.errors import UserError

__all__ = [
    "accepted_sizes",
    "describe",
    "forward_problem",
    "own_img_size",
    "size_error",
    "size_kwargs",
]


def _pretrained_cfg(arch: str):
    try:
        return timm.models.get_pretrained_cfg(arch)
    except Exception:  # an unknown name: the build says so, in its own words
        return None


def own_img_size(arch: str) -> int | None:
    """The input size ``arch`` was made for (timm's pretrained config); None if unknown."""
    size = getattr(_pretrained_cfg(arch), "input_size", None)
    return int(size[-1]) if size else None


def size_kwargs(arch: str, img_size: int) -> list[dict]:
    """``timm.create_model`` arguments to try, in order, for ``arch`` at ``img_size``.

    A fixed-size model asked for another size is built for it (``img_size``); timm's
    plain build comes second, for models that resize their input themselves (CrossViT).
    """
    cfg = _pretrained_cfg(arch)
    if cfg is not None and cfg.fixed_input_size and img_size != own_img_size(arch):
        return [{"img_size": img_size}, {}]
    return [{}]


def forward_problem(model: nn.Module, img_size: int) -> str | None:
    """Why ``model`` cannot take one ``img_size`` x ``img_size`` image, or None if it can."""
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size))
    except Exception as e:  # timm's assertions, shape mismatches, too-small feature maps
        return describe(e)
    finally:
        model.train(training)
    return None


def describe(e: Exception) -> str:
    """An exception in a few words: its type and the first line of its message."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:100].rstrip('.')}" if lines else type(e).__name__


def accepted_sizes(arch: str, img_size: int, build: Callable[[dict], nn.Module]) -> list[int]:
    """The sizes near ``img_size`` (the multiples of 32 around it) and the model's own that
    ``arch`` runs at, built by ``build(create_model kwargs)``: examples for the error
    message, not every size."""
    low = max(32, img_size // 32 * 32)
    own = own_img_size(arch)
    candidates = {low, low + 32} | ({own} if own else set())
    return sorted(s for s in candidates - {img_size} if _fits(arch, s, build))


def _fits(arch: str, img_size: int, build: Callable[[dict], nn.Module]) -> bool:
    for extra in size_kwargs(arch, img_size):
        try:
            model = build(extra)
        except Exception:
            continue
        if forward_problem(model, img_size) is None:
            return True
    return False


def size_error(arch: str, img_size: int, problem: str, accepted: list[int]) -> UserError:
    """One sentence: the size, why it does not fit, and sizes that do."""
    own = own_img_size(arch)
    sizes = ", ".join(str(s) for s in accepted[:-1]) + " and " * (len(accepted) > 1)
    sizes = f"{sizes}{accepted[-1]}" if accepted else "none of the sizes tried"
    leave = f", or drop the override for its own {own} px" if own in accepted else ""
    return UserError(
        f"model.img_size={img_size} does not fit {arch} ({problem}); sizes it takes include "
        f"{sizes} px: set model.img_size to one of them{leave}."
    )
