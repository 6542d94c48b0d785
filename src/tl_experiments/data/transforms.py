"""Transforms from the backbone's own pretrained config (timm), at a chosen image size."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn
from timm.data import create_transform, resolve_data_config

__all__ = ["build_transforms"]


def build_transforms(
    backbone: nn.Module,
    img_size: int,
    augment: bool,
    crop_pct: float = 1.0,
    scale: tuple[float, float] = (0.7, 1.0),
    hflip: float = 0.0,
    color_jitter: float = 0.0,
) -> tuple[Callable, Callable, dict]:
    """Train and eval transforms plus the resolved data config (mean, std, interpolation...).

    Mean, std and interpolation come from the model's pretrained config, so an
    ImageNet-normalised backbone and ``tf_efficientnet_lite0`` (mean = std = 0.5) each get
    theirs. ``crop_pct=1.0`` keeps the whole image: small datasets are usually framed
    tightly (digits, patches), unlike ImageNet photos. Augmentation defaults are mild
    (scale 0.7-1, no flip) because flips change the meaning of digits and text.
    """
    cfg = resolve_data_config(
        {"input_size": (3, img_size, img_size), "crop_pct": crop_pct}, model=backbone
    )
    eval_tf = create_transform(**cfg, is_training=False)
    if not augment:
        return eval_tf, eval_tf, cfg
    train_tf = create_transform(
        input_size=cfg["input_size"],
        is_training=True,
        scale=tuple(scale),
        hflip=hflip,
        color_jitter=color_jitter,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
    )
    return train_tf, eval_tf, cfg
