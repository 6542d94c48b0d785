"""Transforms from the backbone's own pretrained config (timm), at a chosen image size."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch.nn as nn
from timm.data import create_transform, resolve_data_config

__all__ = ["build_transforms", "smallest_size"]

log = logging.getLogger(__name__)


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
    _warn_small(backbone, img_size)
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


def smallest_size(backbone: nn.Module) -> tuple[int, str]:
    """The smallest input side (px) ``backbone`` is meant for, and why: its pretrained
    config's ``min_input_size``, or its total stride (timm's ``feature_info`` reduction of
    the last feature map, below which that map is more padding than image); 1 if unknown."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    info = getattr(backbone, "feature_info", None)
    last = info[-1] if isinstance(info, list) and info and isinstance(info[-1], dict) else {}
    stride = int(last.get("reduction", 1))
    least = int(cfg["min_input_size"][-1]) if cfg.get("min_input_size") else 1
    if least > stride:
        return least, "its pretrained config's min_input_size"
    return stride, f"its last feature map is 1/{stride} of the input"


def _warn_small(backbone: nn.Module, img_size: int) -> None:
    least, why = smallest_size(backbone)
    if isinstance(img_size, int) and 0 < img_size < least:
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        trained = f", pretrained at {cfg['input_size'][-1]} px" if cfg.get("input_size") else ""
        name = cfg.get("architecture", type(backbone).__name__)
        log.warning(
            f"model.img_size={img_size} is below what {name} is meant for (at least {least} "
            f"px: {why}{trained}); set model.img_size to {least} or more."
        )
